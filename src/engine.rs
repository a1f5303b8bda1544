//! The engine task: applies source updates to the store, re-derives the topology (cached per
//! cluster), publishes it, and turns what changed into event-log entries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::topology::derive::Deriver;
use crate::topology::model::{Health, Severity, Topology};
use crate::topology::snapshot::{Store, Update};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix seconds.
    pub at: u64,
    pub severity: Severity,
    pub message: String,
}

pub use crate::topology::clock::unix_now;

/// At most this many service lines per change, so a big rollout does not flood the log.
const MAX_SERVICE_LINES: usize = 6;

/// What changed between two topologies, as log lines (newest concerns first).
pub fn diff(old: &Topology, new: &Topology, at: u64) -> Vec<LogEntry> {
    let mut out = Vec::new();
    let mut log = |severity: Severity, message: String| {
        out.push(LogEntry {
            at,
            severity,
            message,
        })
    };
    for c in new.clusters() {
        let Some(o) = old.cluster(&c.name) else {
            log(
                Severity::Info,
                format!("{}: discovered ({})", c.name, c.role.label()),
            );
            continue;
        };
        if o.health != c.health {
            let severity = match c.health {
                Health::Down => Severity::Error,
                Health::Degraded => Severity::Warning,
                _ => Severity::Info,
            };
            log(
                severity,
                format!("{}: {} → {}", c.name, o.health.label(), c.health.label()),
            );
        }
        if o.served_by != c.served_by {
            log(
                Severity::Info,
                format!("{}: now served by {}", c.name, c.served_by.join(", ")),
            );
        }
        for cp in &c.control_planes {
            if let Some(ocp) = o.control_planes.iter().find(|x| x.id == cp.id) {
                if ocp.ready != cp.ready {
                    let (sev, word) = if cp.ready {
                        (Severity::Info, "ready again")
                    } else {
                        (Severity::Error, "NOT ready")
                    };
                    log(sev, format!("control plane {}: {word}", cp.id));
                }
            }
        }
        for g in &c.gateways {
            if let Some(og) = o.gateways.iter().find(|x| x.id == g.id) {
                if og.address != g.address {
                    match &g.address {
                        Some(a) => log(Severity::Info, format!("gateway {}: address {a}", g.id)),
                        None => log(
                            Severity::Error,
                            format!("gateway {}: lost its address", g.id),
                        ),
                    }
                } else if og.ready_pods != g.ready_pods {
                    log(
                        Severity::Warning,
                        format!("gateway {}: {}/{} pods ready", g.id, g.ready_pods, g.pods),
                    );
                }
            }
        }
    }
    for c in old.clusters() {
        if new.cluster(&c.name).is_none() {
            log(Severity::Warning, format!("{}: gone", c.name));
        }
    }
    // Federation: a pair's health, and each federation finding as it appears or goes.
    for p in &new.federation.pairs {
        let before = old.federation.pair(&p.id).map(|o| o.health);
        if before.is_some_and(|h| h != p.health) {
            let severity = match p.health {
                Health::Down => Severity::Error,
                Health::Degraded => Severity::Warning,
                _ => Severity::Info,
            };
            log(
                severity,
                format!(
                    "federation {} ⇄ {}: {} → {}",
                    p.a,
                    p.b,
                    before.map(|h| h.label()).unwrap_or("?"),
                    p.health.label()
                ),
            );
        }
    }
    let federation_findings = |t: &Topology| -> Vec<crate::topology::model::Finding> {
        t.meshes
            .iter()
            .flat_map(|m| m.findings.iter())
            .filter(|f| f.node.starts_with("fedpair:") || f.node.starts_with("fedimp:"))
            .cloned()
            .collect()
    };
    if !old.meshes.is_empty() {
        let (before, after) = (federation_findings(old), federation_findings(new));
        for f in after.iter().filter(|f| !before.contains(f)) {
            log(f.severity, f.message.clone());
        }
        for f in before.iter().filter(|f| !after.contains(f)) {
            log(Severity::Info, format!("resolved: {}", f.message));
        }
    }
    let mut service_lines = 0;
    for m in &new.meshes {
        let Some(om) = old.meshes.iter().find(|x| x.id == m.id) else {
            continue;
        };
        for s in &m.services {
            let Some(os) = om.service(&s.namespace, &s.name) else {
                continue;
            };
            // Shared endpoints (the service did not change) need no counting.
            if Arc::ptr_eq(&os.endpoints, &s.endpoints)
                || (os.ready() == s.ready() && os.total() == s.total())
            {
                continue;
            }
            if service_lines == MAX_SERVICE_LINES {
                log(Severity::Info, "… more endpoint changes".into());
                service_lines += 1;
                continue;
            } else if service_lines > MAX_SERVICE_LINES {
                continue;
            }
            service_lines += 1;
            let per_cluster = |svc: &crate::topology::model::Service| {
                let mut m: BTreeMap<String, (u32, u32)> = BTreeMap::new();
                for e in svc.endpoints.iter() {
                    let v = m.entry(e.cluster.to_string()).or_default();
                    v.0 += e.ready;
                    v.1 += e.ready + e.not_ready;
                }
                m
            };
            let (before, after) = (per_cluster(os), per_cluster(s));
            let clusters: Vec<String> = after
                .iter()
                .filter(|(c, v)| before.get(*c) != Some(v))
                .map(|(c, v)| format!("{c} {}/{}", v.0, v.1))
                .collect();
            let severity = if s.ready() < os.ready() {
                Severity::Warning
            } else {
                Severity::Info
            };
            log(
                severity,
                format!(
                    "{}/{}: ready {}/{} → {}/{} ({})",
                    s.namespace,
                    s.name,
                    os.ready(),
                    os.total(),
                    s.ready(),
                    s.total(),
                    clusters.join(", ")
                ),
            );
        }
    }
    out
}

/// Events the engine sends to the UI.
pub struct Derived {
    pub topology: Arc<Topology>,
    pub log: Vec<LogEntry>,
}

/// Runs until every source is gone. Batches whatever arrived together, then derives once.
pub async fn run(
    mut updates: mpsc::UnboundedReceiver<Vec<Update>>,
    topology_tx: watch::Sender<Arc<Topology>>,
    events: mpsc::UnboundedSender<Derived>,
) {
    let mut store = Store::default();
    let mut deriver = Deriver::default();
    let mut current = Arc::new(Topology::default());
    let mut first = true;
    while let Some(batch) = updates.recv().await {
        let now = SystemTime::now();
        let before: Vec<u64> = store.clusters.iter().map(|c| c.version).collect();
        for u in batch {
            store.apply(u, now);
        }
        // Coalesce whatever queued up meanwhile: one derivation per burst.
        while let Ok(batch) = updates.try_recv() {
            for u in batch {
                store.apply(u, now);
            }
        }
        let after: Vec<u64> = store.clusters.iter().map(|c| c.version).collect();
        if !first && before == after {
            continue;
        }
        let next = Arc::new(deriver.derive(&store));
        let log = if first {
            first = false;
            vec![LogEntry {
                at: unix_now(),
                severity: Severity::Info,
                message: {
                    let n = next.clusters().count();
                    let plural = |n: usize| if n == 1 { "" } else { "es" };
                    // Live clusters are still syncing at the first derivation: their meshes are
                    // not known yet.
                    if next.clusters().any(|c| {
                        matches!(c.connection, crate::topology::model::Connection::Connecting)
                    }) {
                        format!("watching {n} cluster{}", if n == 1 { "" } else { "s" })
                    } else {
                        let m = next.meshes.len();
                        let apart = next.not_connected.len();
                        let placed = n - apart;
                        let mut line =
                            format!("connected: {placed} clusters in {m} mesh{}", plural(m));
                        if apart > 0 {
                            line.push_str(&format!(", {apart} not connected"));
                        }
                        line
                    }
                },
            }]
        } else {
            diff(&current, &next, unix_now())
        };
        current = next.clone();
        let _ = topology_tx.send(next.clone());
        if events
            .send(Derived {
                topology: next,
                log,
            })
            .is_err()
        {
            return;
        }
        // A small pause caps derivations at ~20 per second under a flood of updates.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
