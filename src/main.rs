//! meshtop: parse the command line, then hand over.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::level_filters::LevelFilter;

use meshtop::app::state::App;
use meshtop::cli::{Cli, Output};
use meshtop::failover::audit::AuditLog;
use meshtop::failover::writer::{Refuse, Writer};
use meshtop::runtime::{self, Sources};
use meshtop::sources::demo;
use meshtop::sources::kube::kubeconfig::UsageError;
use meshtop::topology::model::Topology;
use meshtop::topology::snapshot::Connection;
use meshtop::{config, logging, output, sources};

fn main() -> ExitCode {
    logging::mark_start();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshtop: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn log_level(text: &str) -> Result<LevelFilter> {
    text.parse::<LevelFilter>().map_err(|_| {
        UsageError(format!(
            "unknown log level {text:?}: choose error, warn, info, debug or trace"
        ))
        .into()
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let settings = config::settings(&cli, no_color)?;
    for warning in &settings.theme_warnings {
        eprintln!("meshtop: theme skipped: {warning}");
    }
    let level = log_level(
        cli.log_level
            .as_deref()
            .or(settings.file.log_level.as_deref())
            .unwrap_or("info"),
    )?;
    let log_file = cli
        .log_file
        .clone()
        .or(settings.file.log_file.clone())
        .or_else(logging::default_path);
    if let Some(path) = &log_file {
        // The dashboard works without a log; say so before the screen is taken.
        if let Err(e) = logging::init(path, level) {
            eprintln!("meshtop: no log file: {e:#}");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async_main(cli, settings))
}

/// Every cluster synced and every control plane probed once: what --once waits for.
fn settled(t: &Topology) -> bool {
    t.clusters().all(|c| c.connection == Connection::Live)
        && t.clusters()
            .flat_map(|c| c.control_planes.iter())
            .all(|cp| cp.connected_proxies.is_some() || cp.probe_error.is_some())
}

async fn async_main(cli: Cli, settings: config::Settings) -> Result<ExitCode> {
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    if cli.demo {
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let tick = Duration::from_millis(cli.tick_ms.max(10));
        let sources = Sources {
            updates: updates_rx,
            tasks: vec![demo::run(cli.seed, tick, updates_tx, writes_rx).boxed()],
            writer: demo::DemoWriter::new(writes_tx),
        };
        let label = format!("demo · seed {}", cli.seed);
        let read_only = settings.read_only;
        return serve(cli, settings, sources, label, "demo", read_only).await;
    }
    let wanted = if cli.contexts.is_empty() {
        settings.file.contexts.clone()
    } else {
        cli.contexts.clone()
    };
    let (targets, problems) =
        sources::kube::resolve(cli.kubeconfig.as_deref(), &wanted, &settings.file.clusters).await?;
    for p in &problems {
        tracing::warn!("{p}");
        if cli.once {
            eprintln!("meshtop: {p}");
        }
    }
    let label = format!("live · {} clusters", targets.len());
    let task = async move {
        let mut set = sources::kube::start(targets, updates_tx);
        while set.join_next().await.is_some() {}
    };
    let sources = Sources {
        updates: updates_rx,
        tasks: vec![task.boxed()],
        // Applying a failover to real clusters is not built yet: live mode shows plans and
        // pre-flight checks only.
        writer: Refuse,
    };
    serve(cli, settings, sources, label, "live", true).await
}

/// Runs the dashboard (or `--once`) on the given sources.
async fn serve<W: Writer>(
    cli: Cli,
    settings: config::Settings,
    sources: Sources<W>,
    label: String,
    mode: &'static str,
    read_only: bool,
) -> Result<ExitCode> {
    if cli.once {
        let deadline = Duration::from_secs_f64(cli.timeout.max(0.1));
        let (topology, ok) = runtime::once(sources, deadline, settled).await;
        match cli.output {
            Output::Json => println!("{}", output::json(&topology)),
            Output::Table => print!("{}", output::table(&topology)),
        }
        if !ok {
            tracing::info!("--once: not every cluster settled within {deadline:?}");
        }
        let all_live = topology
            .clusters()
            .all(|c| c.connection == Connection::Live);
        return Ok(if all_live {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let app = App::new(settings.themes, settings.theme_index, label, read_only);
    let audit = AuditLog {
        path: settings.audit_log,
        mode,
    };
    runtime::run(app, sources, audit).await?;
    Ok(ExitCode::SUCCESS)
}
