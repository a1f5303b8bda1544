//! meshtop: parse the command line, then hand over.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::level_filters::LevelFilter;

use meshtop::app::state::App;
use meshtop::cli::{Cli, Command, Output};
use meshtop::engine::LogEntry;
use meshtop::failover::audit::AuditLog;
use meshtop::failover::kube::KubeWriter;
use meshtop::failover::writer::Writer;
use meshtop::runtime::{self, Sources};
use meshtop::sources::demo;
use meshtop::sources::kube::kubeconfig::UsageError;
use meshtop::topology::model::{Severity, Topology};
use meshtop::topology::snapshot::Connection;
use meshtop::{commands, config, logging, output, sources};

fn main() -> ExitCode {
    logging::mark_start();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: with the terminal gone it would panic.
            let _ = writeln!(std::io::stderr(), "meshtop: {e:#}");
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
    let result = rt.block_on(async_main(cli, settings));
    // Every source task is dropped here (a running credential plugin is killed with its
    // process group); a file read stuck on the blocking pool is not waited for.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// Every cluster synced and every control plane probed once: what --once waits for.
fn settled(t: &Topology) -> bool {
    t.clusters().all(|c| c.connection == Connection::Live)
        && t.clusters()
            .flat_map(|c| c.control_planes.iter())
            .all(|cp| cp.connected_proxies.is_some() || cp.probe_error.is_some())
}

async fn async_main(cli: Cli, settings: config::Settings) -> Result<ExitCode> {
    let mode = if cli.demo { "demo" } else { "live" };
    let audit = AuditLog::new(settings.audit_log.clone(), mode);
    if let Some(Command::Failover(args)) = &cli.command {
        if args.list {
            return commands::list(&audit);
        }
    }
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
        return serve(cli, settings, sources, label, audit, read_only, Vec::new()).await;
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
        if cli.once || cli.command.is_some() {
            eprintln!("meshtop: {p}");
        }
    }
    let label = format!("live · {} clusters", targets.len());
    // The writer uses each cluster's own client, once its task has built it: nothing here
    // builds a client or runs a credential plugin (either may take seconds, or hang).
    let write_targets = targets.iter().map(|t| t.writer_target()).collect();
    let writer = KubeWriter::new(write_targets, settings.read_only);
    let task = async move {
        let mut set = sources::kube::start(targets, updates_tx);
        while set.join_next().await.is_some() {}
    };
    let sources = Sources {
        updates: updates_rx,
        tasks: vec![task.boxed()],
        writer,
    };
    let read_only = settings.read_only;
    serve(cli, settings, sources, label, audit, read_only, problems).await
}

/// Runs the dashboard, `--once`, or a failover command on the given sources.
async fn serve<W: Writer>(
    cli: Cli,
    settings: config::Settings,
    sources: Sources<W>,
    label: String,
    audit: AuditLog,
    read_only: bool,
    notices: Vec<String>,
) -> Result<ExitCode> {
    let live = !cli.demo;
    // Real clusters take longer to show a move than the simulator (probes every few seconds,
    // rollouts).
    let verify_within = Duration::from_secs(if live { 90 } else { 15 });
    let options = || commands::Options {
        audit: audit.clone(),
        read_only,
        sync_within: Duration::from_secs_f64(cli.timeout.max(0.1)),
        verify_within,
    };
    match cli.command {
        Some(Command::Failover(args)) => return commands::failover(args, sources, options()).await,
        Some(Command::Undo(args)) => return commands::undo(args, sources, options()).await,
        None => {}
    }
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
    let mut app = App::new(settings.themes, settings.theme_index, label, read_only);
    // What the kubeconfig files said (a missing file skipped, contexts shown once): in the
    // event log, since the terminal belongs to the dashboard.
    for message in notices {
        app.push_log(LogEntry {
            at: meshtop::engine::unix_now(),
            severity: Severity::Warning,
            message,
        });
    }
    app.typed_confirmation = live;
    runtime::run(app, sources, audit, verify_within).await?;
    Ok(ExitCode::SUCCESS)
}
