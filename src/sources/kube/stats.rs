//! What each cluster's source asked of its API server since the process started: LISTs (the
//! initial one per kind and any after it), port-forwards opened to istiod, and istiod probe
//! results sent on or skipped as unchanged. The same facts go to the log at info level (the
//! live benchmark counts them there); tests read them here, by context.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Counters of one context. Every field only grows.
#[derive(Debug, Default)]
pub struct Counters {
    /// LISTs started by the watches (a paged LIST counts once).
    pub lists: AtomicU64,
    /// LISTs of a kind that had synced before: a relist (a `410 Gone`, a watch that could not
    /// be resumed).
    pub relists: AtomicU64,
    /// Port-forwards opened to istiod pods (each one a `CONNECT` at the API server).
    pub port_forwards: AtomicU64,
    /// istiod probe results sent on to the engine.
    pub probes_sent: AtomicU64,
    /// istiod probe results not sent because they showed nothing new.
    pub probes_unchanged: AtomicU64,
    /// Tokens a credential plugin gave after the first one.
    pub token_refreshes: AtomicU64,
}

/// A copy of one context's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub lists: u64,
    pub relists: u64,
    pub port_forwards: u64,
    pub probes_sent: u64,
    pub probes_unchanged: u64,
    pub token_refreshes: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            lists: get(&self.lists),
            relists: get(&self.relists),
            port_forwards: get(&self.port_forwards),
            probes_sent: get(&self.probes_sent),
            probes_unchanged: get(&self.probes_unchanged),
            token_refreshes: get(&self.token_refreshes),
        }
    }
}

fn registry() -> &'static Mutex<BTreeMap<String, Arc<Counters>>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<String, Arc<Counters>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The counters of one context (created on first use; two sources of the same context name in
/// one process share them).
pub fn counters(context: &str) -> Arc<Counters> {
    let mut map = match registry().lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(context.to_string()).or_default().clone()
}

/// One context's counters now (zeros for a context never started).
pub fn snapshot(context: &str) -> Snapshot {
    counters(context).snapshot()
}
