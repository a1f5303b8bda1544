//! Where the changes of a plan go: the simulator (`sources::demo::DemoWriter`) or the
//! clusters' API servers (`failover::kube::KubeWriter`). Both read an object before writing
//! it, so the executor can check, snapshot and audit the same way for both.

use std::future::Future;

use futures::future::BoxFuture;
use serde_json::Value;

use super::plan::{Change, Plan};
use super::preflight::Check;

/// An object as it was read, without managedFields (and, for a Deployment, without its pod
/// spec: containers may carry values that are none of meshtop's business).
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot(pub Value);

impl Snapshot {
    /// The string at a JSON pointer (`None`: absent or not a string).
    pub fn value_at(&self, path: &str) -> Option<String> {
        self.0
            .pointer(path)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Removes what a snapshot must not keep.
    pub fn trimmed(mut object: Value) -> Snapshot {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        if let Some(template) = object
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
        {
            template.remove("spec");
        }
        Snapshot(object)
    }
}

/// The failover lock of one cluster while it is held; renewed in the background until
/// released (or dropped, when it expires on its own).
pub struct Lock {
    pub holder: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
    release: Option<BoxFuture<'static, Result<(), String>>>,
}

impl Lock {
    /// A lock that guards nothing (the simulator runs in this process only).
    pub fn local() -> Lock {
        Lock {
            holder: "this process".into(),
            renewer: None,
            release: None,
        }
    }

    pub fn new(
        holder: String,
        renewer: tokio::task::JoinHandle<()>,
        release: BoxFuture<'static, Result<(), String>>,
    ) -> Lock {
        Lock {
            holder,
            renewer: Some(renewer),
            release: Some(release),
        }
    }

    pub async fn release(mut self) -> Result<(), String> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        match self.release.take() {
            Some(release) => release.await,
            None => Ok(()),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

/// Reads and writes the objects of a plan, the way the API server does.
pub trait Writer: Clone + Send + Sync + 'static {
    /// What the API says before anything is written: may the user make every write of the
    /// plan, and is the cluster free of other failovers. One check per question.
    fn access(&self, plan: &Plan) -> impl Future<Output = Vec<Check>> + Send;

    /// Takes the failover lock of the plan's cluster for `attempt`, or says who holds it.
    /// `resuming`: the attempt being resumed or rolled back, whose lock may be taken over
    /// from a process that is gone.
    fn lock(
        &self,
        plan: &Plan,
        attempt: &str,
        resuming: Option<&str>,
    ) -> impl Future<Output = Result<Lock, String>> + Send;

    /// Reads the object a change touches.
    fn read(&self, change: &Change) -> impl Future<Output = Result<Snapshot, String>> + Send;

    /// Writes one change to the object read as `before`; returns the object after.
    fn write(
        &self,
        change: &Change,
        before: &Snapshot,
    ) -> impl Future<Output = Result<Snapshot, String>> + Send;

    /// Whether a restarted Deployment has rolled out (every replica updated and ready).
    fn rolled_out(&self, change: &Change) -> impl Future<Output = Result<bool, String>> + Send;
}
