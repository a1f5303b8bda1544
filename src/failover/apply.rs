//! Applying a plan: lock the cluster, check that every object still holds what the plan
//! expects (else write nothing), then one step at a time through a writer (snapshot, write,
//! audit), wait for restarted workloads, and verify in the live topology that the cluster
//! really moved. Runs as a task; the UI only sees [`Progress`] events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::audit::{self, AuditLog, Event, Outcome};
use super::plan::{Change, Op, Plan, PlanKind};
use super::writer::{Lock, Writer};
use crate::topology::istio::LABEL_REV;
use crate::topology::model::{SyncStatus, Topology};

#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Step {
        index: usize,
        total: usize,
        description: String,
        result: Result<(), String>,
    },
    /// What the run is doing between steps (locking, checking, rolling out, verifying).
    Note(String),
    /// What the API servers said about a plan before it runs (permissions, lock).
    Checked {
        plan: Plan,
        checks: Vec<super::preflight::Check>,
    },
    Done {
        ok: bool,
        message: String,
        /// The changes that were applied: what an undo must revert.
        applied: Box<Plan>,
        attempt: String,
    },
}

/// One run of a plan: a new attempt, possibly finishing or reverting an earlier one.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub plan: Plan,
    pub attempt: String,
    pub resumes: Option<String>,
    pub undoes: Option<String>,
}

impl Run {
    pub fn new(plan: Plan) -> Run {
        Run {
            plan,
            attempt: audit::new_attempt_id(),
            resumes: None,
            undoes: None,
        }
    }

    /// Finishes the unfinished attempt `of` (steps already written are recorded as such).
    pub fn resume(of: &audit::Attempt) -> Run {
        Run {
            resumes: Some(of.id.clone()),
            ..Run::new(of.plan.clone())
        }
    }

    /// Reverts what attempt `of` wrote.
    pub fn undo(of: &audit::Attempt) -> Run {
        Run {
            undoes: Some(of.id.clone()),
            ..Run::new(of.rollback())
        }
    }
}

/// What the object holds at the change's path, against what the plan expects there. A run
/// that finishes or reverts an earlier attempt also accepts a step already done.
fn mismatch(change: &Change, current: Option<&str>, resuming: bool) -> Option<String> {
    let expected = change.expects()?;
    if current == expected || (resuming && change.leaves() == Some(current)) {
        return None;
    }
    Some(format!(
        "{} in {}: {} is {}, the plan expected {}",
        change.object(),
        change.cluster,
        change.path().replace("~1", "/").replace("~0", "~"),
        current.map(|v| format!("{v:?}")).unwrap_or("absent".into()),
        expected
            .map(|v| format!("{v:?}"))
            .unwrap_or("absent".into()),
    ))
}

/// Applies the run's plan, step by step, then waits (with a deadline) for the topology to
/// show it. Every outcome ends with one `Progress::Done` and one audit `end` entry.
pub async fn execute<W: Writer>(
    run: Run,
    writer: W,
    mut topology: watch::Receiver<Arc<Topology>>,
    audit: AuditLog,
    verify_within: Duration,
    progress: mpsc::UnboundedSender<Progress>,
) {
    let Run {
        plan,
        attempt,
        resumes,
        undoes,
    } = run;
    let send = |p: Progress| {
        let _ = progress.send(p);
    };
    let record = |event: Event| {
        if let Err(e) = audit.record(&attempt, &plan.cluster, event) {
            let _ = progress.send(Progress::Note(format!("audit log not written: {e}")));
        }
    };
    let mut applied = Plan {
        changes: Vec::new(),
        ..plan.clone()
    };
    record(Event::Start {
        plan: plan.clone(),
        resumes: resumes.clone(),
        undoes: undoes.clone(),
    });
    let finish = |outcome: Outcome, message: String, applied: Plan| {
        record(Event::End {
            outcome,
            message: message.clone(),
        });
        send(Progress::Done {
            ok: outcome == Outcome::Verified,
            message,
            applied: Box::new(applied),
            attempt: attempt.clone(),
        });
    };

    send(Progress::Note(format!("locking {}", plan.cluster)));
    let takes_over = resumes.as_deref().or(undoes.as_deref());
    let lock = match writer.lock(&plan, &attempt, takes_over).await {
        Ok(lock) => lock,
        Err(e) => return finish(Outcome::Refused, format!("nothing written: {e}"), applied),
    };

    // Every object must still hold what the plan expects, before anything is written.
    send(Progress::Note(
        "checking every object against the plan".into(),
    ));
    for change in &plan.changes {
        let found = match writer.read(change).await {
            Ok(s) => s,
            Err(e) => {
                release(lock).await;
                return finish(
                    Outcome::Refused,
                    format!(
                        "nothing written: {} in {}: {e}",
                        change.object(),
                        change.cluster
                    ),
                    applied,
                );
            }
        };
        let current = found.value_at(&change.path());
        if let Some(why) = mismatch(change, current.as_deref(), takes_over.is_some()) {
            release(lock).await;
            return finish(
                Outcome::Refused,
                format!("nothing written: changed since the plan: {why}"),
                applied,
            );
        }
    }

    let total = plan.changes.len();
    let deadline = tokio::time::Instant::now() + verify_within;
    let mut batch: Vec<&Change> = Vec::new();
    let mut rollout: Result<(), String> = Ok(());
    for (index, change) in plan.changes.iter().enumerate() {
        let path = change.path();
        let step = |result: Result<(), String>| {
            send(Progress::Step {
                index,
                total,
                description: change.describe(),
                result,
            })
        };
        let before = match writer.read(change).await {
            Ok(b) => b,
            Err(e) => {
                record(Event::Step {
                    index,
                    object: change.object(),
                    path,
                    before: None,
                    after: None,
                    result: e.clone(),
                    snapshot: None,
                });
                step(Err(e.clone()));
                release(lock).await;
                return finish(
                    Outcome::Failed,
                    format!("step {} failed: {e}", index + 1),
                    applied,
                );
            }
        };
        let old = before.value_at(&path);
        if takes_over.is_some()
            && change.op != Op::Restart
            && change.leaves() == Some(old.as_deref())
        {
            record(Event::Step {
                index,
                object: change.object(),
                path,
                before: old.clone(),
                after: old,
                result: "ok: already applied".into(),
                snapshot: None,
            });
            step(Ok(()));
            applied.changes.push(change.clone());
            continue;
        }
        let snapshot = match audit.save_snapshot(&attempt, index, change, &before) {
            Ok(p) => p,
            Err(e) => {
                // No snapshot, no write: an undo must be able to rely on it.
                step(Err(format!("snapshot not saved: {e}")));
                release(lock).await;
                return finish(
                    Outcome::Failed,
                    format!("step {}: snapshot not saved: {e}", index + 1),
                    applied,
                );
            }
        };
        let result = writer.write(change, &before).await;
        let (after, outcome) = match &result {
            Ok(after) => (after.value_at(&path), "ok".to_string()),
            Err(e) => (None, e.clone()),
        };
        record(Event::Step {
            index,
            object: change.object(),
            path,
            before: old,
            after,
            result: outcome,
            snapshot,
        });
        match result {
            Ok(_) => {
                step(Ok(()));
                applied.changes.push(change.clone());
                // Restarts go in batches, as an operator would: the next batch starts once
                // this one has rolled out (or the deadline has passed).
                if change.op == Op::Restart {
                    batch.push(change);
                    let last_restart = plan.changes[index + 1..]
                        .iter()
                        .all(|c| c.op != Op::Restart);
                    if batch.len() == RESTART_BATCH || last_restart {
                        let waited = wait_rollouts(&writer, &batch, deadline, &send).await;
                        rollout = rollout.and(waited);
                        batch.clear();
                    }
                }
            }
            Err(e) => {
                step(Err(e.clone()));
                release(lock).await;
                return finish(
                    Outcome::Failed,
                    format!("step {} failed: {e}", index + 1),
                    applied,
                );
            }
        }
    }

    send(Progress::Note(format!(
        "waiting for {} to report {} as served by {}",
        plan.to, plan.cluster, plan.to
    )));
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
    release(lock).await;
    let (outcome, mut message) = match verified {
        Ok(m) => (Outcome::Verified, m),
        Err(m) => (Outcome::Unverified, m),
    };
    if let Err(why) = rollout {
        message.push_str(&format!("; {why}"));
    }
    finish(outcome, message, applied);
}

async fn release(lock: Lock) {
    match tokio::time::timeout(Duration::from_secs(3), lock.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("failover lock not released: {e}"),
        Err(_) => tracing::warn!("failover lock not released within 3 s: it expires on its own"),
    }
}

/// Deployments restarted at once before waiting for them to roll out.
pub const RESTART_BATCH: usize = 5;

/// Waits until every Deployment of a batch of restarts has rolled out, reporting how many
/// have.
async fn wait_rollouts<W: Writer>(
    writer: &W,
    restarts: &[&Change],
    deadline: tokio::time::Instant,
    send: &impl Fn(Progress),
) -> Result<(), String> {
    if restarts.is_empty() {
        return Ok(());
    }
    let mut pending: Vec<&Change> = restarts.to_vec();
    let mut last_done = usize::MAX;
    loop {
        let mut still = Vec::new();
        for change in pending {
            match writer.rolled_out(change).await {
                Ok(true) => {}
                _ => still.push(change),
            }
        }
        pending = still;
        let done = restarts.len() - pending.len();
        if done != last_done {
            send(Progress::Note(format!(
                "rolled out {done}/{} Deployments of this batch",
                restarts.len()
            )));
            last_done = done;
        }
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not rolled out in time: {}",
                pending
                    .iter()
                    .map(|c| c.object())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What shows that the plan took effect, from the derived topology: for a repoint, the cluster
/// is served by the target, the target's `/debug/clusterz` lists it synced, its `/debug/syncz`
/// lists the cluster's proxies and the old control plane's lists none; for a revision switch,
/// the namespaces carry the target revision and the target lists the cluster's proxies.
pub fn verify(topology: &Topology, plan: &Plan) -> Result<String, String> {
    let cluster = topology
        .cluster(&plan.cluster)
        .ok_or_else(|| format!("{} is gone", plan.cluster))?;
    let target = topology
        .control_plane(&plan.to)
        .ok_or_else(|| format!("{} is gone", plan.to))?;
    let proxies = |cp: &crate::topology::model::ControlPlane| {
        cp.proxies_by_cluster
            .get(&plan.cluster_id)
            .copied()
            .unwrap_or(0)
    };
    let restarted = audit::restarts(plan).count();
    match plan.kind {
        PlanKind::RepointRemote => {
            if !cluster.served_by.contains(&plan.to) {
                return Err(format!(
                    "{} is still served by {}",
                    plan.cluster,
                    cluster.served_by.join(", ")
                ));
            }
            let sync = target
                .remote_clusters
                .iter()
                .find(|r| r.id == plan.cluster_id);
            if sync.map(|r| &r.status) != Some(&SyncStatus::Synced) {
                return Err(format!(
                    "{}'s /debug/clusterz does not list {} as synced",
                    plan.to, plan.cluster_id
                ));
            }
            if restarted > 0 && proxies(target) == 0 {
                return Err(format!(
                    "{} lists no proxy of {} in /debug/syncz yet",
                    plan.to, plan.cluster_id
                ));
            }
            let left = topology.control_plane(&plan.from).map(proxies).unwrap_or(0);
            if left > 0 {
                return Err(format!(
                    "{} still lists {left} proxies of {} in /debug/syncz",
                    plan.from, plan.cluster_id
                ));
            }
            Ok(format!(
                "{} now serves {}: {} proxies connected, none left on {}",
                plan.to,
                plan.cluster,
                proxies(target),
                plan.from
            ))
        }
        PlanKind::SwitchRevision => {
            let rev_label = format!("/metadata/labels/{}", LABEL_REV.replace('/', "~1"));
            for change in &plan.changes {
                let Op::Set { path, to, .. } = &change.op else {
                    continue;
                };
                if change.kind != "Namespace" || path != &rev_label {
                    continue;
                }
                let ns = cluster.namespaces.iter().find(|n| n.name == change.name);
                if ns.and_then(|n| n.revision.as_ref()) != to.as_ref() {
                    return Err(format!(
                        "namespace {} does not show revision {} yet",
                        change.name,
                        to.as_deref().unwrap_or("(none)")
                    ));
                }
            }
            if restarted > 0 && proxies(target) == 0 {
                return Err(format!(
                    "{} lists no proxy of {} in /debug/syncz yet",
                    plan.to, plan.cluster_id
                ));
            }
            Ok(format!(
                "{} now serves the moved namespaces of {}: {} proxies of {} connected",
                plan.to,
                plan.cluster,
                proxies(target),
                plan.cluster_id
            ))
        }
    }
}
