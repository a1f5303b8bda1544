//! The built-in simulated multi-cluster mesh. It emits the very objects real sources emit
//! (k8s-openapi types, Istio resources as dynamic objects, istiod probe results), so demo mode
//! runs the same derivation and UI as real clusters. Deterministic for a seed: every change
//! comes from the tick count and a seeded generator, never from the wall clock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::failover::plan::{Change, Op, Plan};
use crate::failover::preflight::{Check, Verdict};
use crate::failover::writer::{Lock, Snapshot, Writer};
use crate::topology::clock::rfc3339_now;
use crate::topology::istio::*;
use crate::topology::snapshot::{
    ClusterzEntry, GatewayProbe, IstiodMetrics, IstiodProbe, KubeObject, ObjectKind, Store,
    SynczEntry, Update,
};

mod builders;
mod federation;
mod patch;
mod probes;
mod rng;
mod scenario;
mod story;

pub use rng::Rng;
use scenario::*;

/// Builds a k8s-openapi object from a JSON literal written in this file.
fn obj<T: DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(o) => o,
        Err(e) => panic!("demo object literal does not match its type: {e}"),
    }
}

#[derive(Clone, Debug)]
struct SimCluster {
    context: String,
    cluster_id: String,
    network: String,
    region: String,
    mesh: String,
    trust_domain: String,
    index: usize,
}

#[derive(Clone, Debug)]
struct Workload {
    context: String,
    namespace: String,
    name: String,
    replicas: u32,
    generation: u32,
    /// Pod index → tick until which it stays unready.
    unready_until: BTreeMap<u32, u64>,
    cluster_index: usize,
    index: usize,
}

#[derive(Clone, Debug)]
struct SimControlPlane {
    context: String,
    namespace: String,
    name: String,
    revision: String,
    cluster_id: String,
    version: String,
    replicas: i32,
    pushes: f64,
    convergence_sum: f64,
    convergence_count: f64,
}

/// The size of a generated mesh (the benchmark uses a big one).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub clusters: usize,
    pub services: usize,
    pub endpoints_per_service_cluster: u32,
    pub clusters_per_service: usize,
}

pub struct DemoSim {
    rng: Rng,
    pub tick: u64,
    world: Store,
    clusters: Vec<SimCluster>,
    workloads: Vec<Workload>,
    control_planes: Vec<SimControlPlane>,
    pending: Vec<Update>,
    /// Gateway hostname → (context, `namespace/deployment` of the istiod it exposes).
    exposed: BTreeMap<String, (String, String)>,
    incidents: bool,
    federation: federation::FederationState,
}

impl DemoSim {
    fn empty(seed: u64, incidents: bool) -> Self {
        DemoSim {
            rng: Rng::new(seed),
            tick: 0,
            world: Store::default(),
            clusters: Vec::new(),
            workloads: Vec::new(),
            control_planes: Vec::new(),
            pending: Vec::new(),
            exposed: BTreeMap::new(),
            incidents,
            federation: Default::default(),
        }
    }

    /// The simulated clusters' current objects, as a source's store would hold them.
    pub fn world(&self) -> &Store {
        &self.world
    }

    /// Updates produced since the last call (the initial state after construction).
    pub fn drain(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.pending)
    }

    fn cluster(&self, context: &str) -> SimCluster {
        self.clusters
            .iter()
            .find(|c| c.context == context)
            .cloned()
            .unwrap_or_else(|| panic!("demo cluster {context} is not defined"))
    }

    fn emit(&mut self, context: &str, object: KubeObject) {
        let now = SystemTime::now();
        // Sources trim at the source too: no Secret value travels in an update.
        let update = Update::Apply {
            context: context.to_string(),
            object: Box::new(object.trimmed()),
        };
        self.world.apply(update.clone(), now);
        self.pending.push(update);
    }

    fn delete(&mut self, context: &str, kind: ObjectKind, namespace: &str, name: &str) {
        let update = Update::Delete {
            context: context.to_string(),
            kind,
            key: (namespace.to_string(), name.to_string()),
        };
        self.world.apply(update.clone(), SystemTime::now());
        self.pending.push(update);
    }

    fn connect(&mut self, context: &str) {
        let update = Update::Connection {
            context: context.into(),
            connection: crate::topology::snapshot::Connection::Live,
        };
        self.world.apply(update.clone(), SystemTime::now());
        self.pending.push(update);
    }
}

/// A request to the simulated mesh: read the object a change touches, or apply the change.
pub struct DemoWrite {
    pub change: Change,
    pub apply: bool,
    pub reply: oneshot::Sender<Result<Value, String>>,
}

/// Sends failover reads and writes to the simulator task ([`run`]).
#[derive(Clone)]
pub struct DemoWriter(mpsc::UnboundedSender<DemoWrite>);

impl DemoWriter {
    pub fn new(writes: mpsc::UnboundedSender<DemoWrite>) -> DemoWriter {
        DemoWriter(writes)
    }

    async fn ask(&self, change: &Change, apply: bool) -> Result<Snapshot, String> {
        let (reply, rx) = oneshot::channel();
        self.0
            .send(DemoWrite {
                change: change.clone(),
                apply,
                reply,
            })
            .map_err(|_| "the simulated mesh has stopped".to_string())?;
        rx.await
            .map_err(|_| "the simulated mesh dropped the request".to_string())?
            .map(Snapshot::trimmed)
    }
}

impl Writer for DemoWriter {
    async fn access(&self, _plan: &Plan) -> Vec<Check> {
        vec![Check {
            name: "writes permitted".into(),
            verdict: Verdict::Pass,
            reason: "simulated mesh: every write is allowed".into(),
        }]
    }

    async fn lock(
        &self,
        _plan: &Plan,
        _attempt: &str,
        _resuming: Option<&str>,
    ) -> Result<Lock, String> {
        Ok(Lock::local())
    }

    async fn read(&self, change: &Change) -> Result<Snapshot, String> {
        self.ask(change, false).await
    }

    async fn write(&self, change: &Change, _before: &Snapshot) -> Result<Snapshot, String> {
        self.ask(change, true).await
    }

    async fn rolled_out(&self, _change: &Change) -> Result<bool, String> {
        // The simulator replaces pods at once.
        Ok(true)
    }
}

/// Runs the simulator as a source: initial state, then one step per `tick`, and failover
/// writes as they come. Stops when the receiver of updates is gone.
pub async fn run(
    seed: u64,
    tick: Duration,
    updates: mpsc::UnboundedSender<Vec<Update>>,
    mut writes: mpsc::UnboundedReceiver<DemoWrite>,
) {
    let mut sim = DemoSim::new(seed);
    if updates.send(sim.drain()).is_err() {
        return;
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if updates.send(sim.step()).is_err() {
                    return;
                }
            }
            Some(write) = writes.recv() => {
                let reply = if write.apply {
                    match sim.write(&write.change) {
                        Ok((batch, after)) => {
                            if updates.send(batch).is_err() {
                                return;
                            }
                            Ok(after)
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    sim.read(&write.change)
                };
                let _ = write.reply.send(reply);
            }
        }
    }
}
