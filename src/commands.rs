//! `meshtop failover` and `meshtop undo`: the failover engine on the command line. The same
//! sources, derivation, plan, pre-flight, writer, executor and audit log as the dashboard;
//! only the confirmation (typed on stdin) and the progress (printed lines) differ.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::cli::{FailoverArgs, UndoArgs};
use crate::failover::apply::{self, Progress, Run};
use crate::failover::audit::{self, AuditLog};
use crate::failover::plan::{self, Plan, Subject};
use crate::failover::preflight::{self, Check, Verdict};
use crate::failover::writer::Writer;
use crate::runtime::{self, Sources};
use crate::sources::kube::kubeconfig::UsageError;
use crate::topology::model::{ControlPlane, Topology};
use crate::topology::snapshot::Connection;

/// How the commands run: the audit log, what to wait for, whether writes are allowed.
pub struct Options {
    pub audit: AuditLog,
    pub read_only: bool,
    /// How long to wait for the clusters to sync before planning.
    pub sync_within: Duration,
    pub verify_within: Duration,
}

/// `meshtop failover --list`: the audit log, newest first.
pub fn list(audit: &AuditLog) -> anyhow::Result<ExitCode> {
    let attempts = audit.attempts().map_err(anyhow::Error::msg)?;
    if attempts.is_empty() {
        println!(
            "no failover recorded in {}",
            audit
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the audit log".into())
        );
    }
    let pending: Vec<String> = audit::pending(&attempts)
        .iter()
        .map(|a| a.id.clone())
        .collect();
    for a in attempts.iter().rev() {
        let mark = if pending.contains(&a.id) {
            "  ← unfinished: meshtop failover --resume ID, or meshtop undo ID"
        } else {
            ""
        };
        println!("{}{mark}", a.summary());
    }
    Ok(ExitCode::SUCCESS)
}

/// The control plane `--to` names: an id, `context/deployment`, or a context with one
/// control plane of the wanted kind.
pub fn resolve_target(topology: &Topology, text: &str) -> Result<String, UsageError> {
    let all: Vec<&ControlPlane> = topology.control_planes().collect();
    if let Some(cp) = all.iter().find(|cp| cp.id == text) {
        return Ok(cp.id.clone());
    }
    let matching: Vec<&&ControlPlane> = all
        .iter()
        .filter(|cp| format!("{}/{}", cp.cluster, cp.name) == text || cp.cluster == text)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(UsageError(format!(
            "no control plane {text:?}: known are {}",
            all.iter()
                .map(|cp| cp.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(UsageError(format!(
            "{text:?} names {} control planes: pick one of {}",
            many.len(),
            many.iter()
                .map(|cp| cp.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn settled(t: &Topology) -> bool {
    t.clusters().all(|c| c.connection == Connection::Live)
        && t.clusters()
            .flat_map(|c| c.control_planes.iter())
            .all(|cp| cp.connected_proxies.is_some() || cp.probe_error.is_some())
}

fn print_plan(plan: &Plan, checks: &[Check]) {
    print!("{}", plan.render_text());
    println!("pre-flight:");
    for c in checks {
        println!(
            "  {} {:<5} {:<28} {}",
            c.verdict.glyph(),
            c.verdict.label(),
            c.name,
            c.reason
        );
    }
}

/// Asks on the terminal; the cluster's name must be typed back.
fn confirmed(cluster: &str) -> bool {
    print!("This writes to {cluster}. Type the cluster's name to apply: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim() == cluster
}

/// Shows, checks, confirms, applies and verifies one run. Exit 0 only when verified.
async fn carry_out<W: Writer>(
    run: Run,
    writer: W,
    topology: watch::Receiver<Arc<Topology>>,
    options: &Options,
    dry_run: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let mut checks = preflight::preflight(&topology.borrow(), &run.plan, options.read_only);
    checks.extend(writer.access(&run.plan).await);
    print_plan(&run.plan, &checks);
    if dry_run {
        println!("dry run: nothing written");
        return Ok(if preflight::blocking(&checks) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    if preflight::blocking(&checks) {
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.name.as_str())
            .collect();
        eprintln!(
            "meshtop: blocked by pre-flight ({}): nothing written",
            failed.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if !yes && !confirmed(&run.plan.cluster) {
        eprintln!("meshtop: not confirmed: nothing written");
        return Ok(ExitCode::FAILURE);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    println!("attempt {}", run.attempt);
    tokio::spawn(apply::execute(
        run,
        writer,
        topology,
        options.audit.clone(),
        options.verify_within,
        tx,
    ));
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Step {
                index,
                total,
                description,
                result,
            } => match result {
                Ok(()) => println!("  [{}/{total}] ✔ {description}", index + 1),
                Err(e) => println!("  [{}/{total}] ✖ {description}: {e}", index + 1),
            },
            Progress::Note(n) => println!("  ⧗ {n}"),
            Progress::Checked { .. } => {}
            Progress::Done { ok, message, .. } => {
                if ok {
                    println!("✔ verified: {message}");
                    return Ok(ExitCode::SUCCESS);
                }
                println!("✖ {message}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    eprintln!("meshtop: the failover task stopped without a result");
    Ok(ExitCode::FAILURE)
}

async fn synced<W: Writer>(
    sources: Sources<W>,
    options: &Options,
) -> anyhow::Result<(watch::Receiver<Arc<Topology>>, W)> {
    let (mut topology, writer) = runtime::headless(sources);
    if !runtime::wait_for(&mut topology, options.sync_within, settled).await {
        let t = topology.borrow().clone();
        let not_live: Vec<String> = t
            .clusters()
            .filter(|c| c.connection != Connection::Live)
            .map(|c| format!("{} ({})", c.name, c.connection.label()))
            .collect();
        if !not_live.is_empty() {
            eprintln!(
                "meshtop: not every cluster synced within {:?}: {}; planning on what is known",
                options.sync_within,
                not_live.join(", ")
            );
        }
    }
    Ok((topology, writer))
}

pub async fn failover<W: Writer>(
    args: FailoverArgs,
    sources: Sources<W>,
    options: Options,
) -> anyhow::Result<ExitCode> {
    let (topology, writer) = synced(sources, &options).await?;
    let run = if let Some(id) = &args.resume {
        let attempts = options.audit.attempts().map_err(anyhow::Error::msg)?;
        let attempt = attempts
            .iter()
            .rev()
            .find(|a| &a.id == id)
            .ok_or_else(|| UsageError(format!("no attempt {id} in the audit log")))?;
        if !attempt.unfinished() {
            return Err(UsageError(format!(
                "attempt {id} is {}: nothing to resume",
                attempt.status()
            ))
            .into());
        }
        Run::resume(attempt)
    } else {
        let cluster = args.cluster.clone().unwrap_or_default();
        let t = topology.borrow().clone();
        if t.cluster(&cluster).is_none() {
            return Err(UsageError(format!(
                "no cluster {cluster:?}: known are {}",
                t.clusters()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        let target = args
            .to
            .as_deref()
            .map(|to| resolve_target(&t, to))
            .transpose()?;
        let namespaces = (!args.namespaces.is_empty()).then_some(args.namespaces.as_slice());
        let plan = plan::plan(
            &t,
            &Subject::Cluster(cluster),
            target.as_deref(),
            namespaces,
        )
        .map_err(|e| UsageError(format!("cannot plan: {e}")))?;
        Run::new(plan)
    };
    carry_out(run, writer, topology, &options, args.dry_run, args.yes).await
}

pub async fn undo<W: Writer>(
    args: UndoArgs,
    sources: Sources<W>,
    options: Options,
) -> anyhow::Result<ExitCode> {
    let attempts = options.audit.attempts().map_err(anyhow::Error::msg)?;
    let attempt = match &args.id {
        Some(id) => attempts.iter().rev().find(|a| &a.id == id),
        None => audit::latest_undoable(&attempts),
    }
    .ok_or_else(|| {
        UsageError(match &args.id {
            Some(id) => format!("no attempt {id} in the audit log"),
            None => "no failover to undo in the audit log".into(),
        })
    })?;
    if attempt.applied.is_empty() {
        return Err(UsageError(format!("attempt {} wrote nothing", attempt.id)).into());
    }
    let run = Run::undo(attempt);
    let (topology, writer) = synced(sources, &options).await?;
    carry_out(run, writer, topology, &options, args.dry_run, args.yes).await
}
