//! Applying a plan: one step at a time through a writer, reporting progress, then verifying in
//! the live topology that the cluster really moved. Runs as a task; the UI only sees events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::audit::AuditLog;
use super::plan::{Plan, PlanKind};
use super::writer::Writer;
use crate::topology::model::Topology;

#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Step {
        index: usize,
        total: usize,
        description: String,
        result: Result<(), String>,
    },
    Verifying(String),
    Done {
        ok: bool,
        message: String,
        /// The changes that were applied: what an undo must revert.
        applied: Box<Plan>,
    },
}

/// Applies `plan`, step by step, then waits (with a deadline) for the topology to show it.
pub async fn execute<W: Writer>(
    plan: Plan,
    writer: W,
    mut topology: watch::Receiver<Arc<Topology>>,
    audit: AuditLog,
    verify_within: Duration,
    progress: mpsc::UnboundedSender<Progress>,
) {
    let send = |p: Progress| {
        let _ = progress.send(p);
    };
    let audit_note = |event: &str, plan: &Plan, detail: &str| {
        if let Err(e) = audit.record(event, plan, detail) {
            let _ = progress.send(Progress::Verifying(format!("audit log not written: {e}")));
        }
    };
    audit_note("start", &plan, "");
    let total = plan.changes.len();
    let mut applied = Plan {
        changes: Vec::new(),
        ..plan.clone()
    };
    for (index, change) in plan.changes.iter().enumerate() {
        let result = writer.apply(change).await;
        send(Progress::Step {
            index,
            total,
            description: change.describe(),
            result: result.clone(),
        });
        if let Err(e) = result {
            let message = format!("step {} failed: {e}", index + 1);
            audit_note("failed", &applied, &message);
            send(Progress::Done {
                ok: false,
                message,
                applied: Box::new(applied),
            });
            return;
        }
        applied.changes.push(change.clone());
    }

    send(Progress::Verifying(format!(
        "waiting for {} to report {} as served by {}",
        plan.to, plan.cluster, plan.to
    )));
    let deadline = tokio::time::Instant::now() + verify_within;
    let verified = loop {
        let outcome = verify(&topology.borrow(), &plan);
        if let Ok(message) = outcome {
            break Ok(message);
        }
        match tokio::time::timeout_at(deadline, topology.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => break Err("topology stopped updating".to_string()),
            Err(_) => {
                break outcome
                    .map_err(|why| format!("not verified within {verify_within:?}: {why}"))
            }
        }
    };
    let (ok, message) = match verified {
        Ok(m) => (true, m),
        Err(m) => (false, m),
    };
    audit_note(
        if ok { "verified" } else { "unverified" },
        &applied,
        &message,
    );
    send(Progress::Done {
        ok,
        message,
        applied: Box::new(applied),
    });
}

/// The cluster is served by the target, and for a repoint the target sees its proxies.
pub fn verify(topology: &Topology, plan: &Plan) -> Result<String, String> {
    let cluster = topology
        .cluster(&plan.cluster)
        .ok_or_else(|| format!("{} is gone", plan.cluster))?;
    if !cluster.served_by.contains(&plan.to) {
        return Err(format!(
            "{} is still served by {}",
            plan.cluster,
            cluster.served_by.join(", ")
        ));
    }
    if plan.kind == PlanKind::RepointRemote {
        let target = topology
            .control_plane(&plan.to)
            .ok_or_else(|| format!("{} is gone", plan.to))?;
        let proxies = target
            .proxies_by_cluster
            .get(&plan.cluster_id)
            .copied()
            .unwrap_or(0);
        if proxies == 0 {
            return Err(format!(
                "{} lists no proxy of {} in /debug/syncz yet",
                plan.to, plan.cluster_id
            ));
        }
        return Ok(format!(
            "{} now serves {}: {proxies} proxies connected",
            plan.to, plan.cluster
        ));
    }
    Ok(format!("{} now serves {}", plan.to, plan.cluster))
}
