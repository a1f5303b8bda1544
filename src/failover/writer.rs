//! Where the changes of a plan go. The simulator implements it today; a kube-API writer next.

use std::future::Future;

use super::plan::Change;

/// Applies one change of a plan, the way the API server would (JSON patch with its `test`).
pub trait Writer: Clone + Send + Sync + 'static {
    fn apply(&self, change: &Change) -> impl Future<Output = Result<(), String>> + Send;
}

/// Refuses every change: live mode until the kube-API writer exists (the app is read-only there,
/// so nothing should reach it; if something does, it fails the step with this reason).
#[derive(Clone, Copy, Debug, Default)]
pub struct Refuse;

impl Writer for Refuse {
    async fn apply(&self, _change: &Change) -> Result<(), String> {
        Err("applying a failover to live clusters is not available yet (read-only)".into())
    }
}
