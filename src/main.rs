//! meshtop: parse the command line, then hand over.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use meshtop::app::state::App;
use meshtop::cli::{Cli, Output};
use meshtop::failover::audit::AuditLog;
use meshtop::sources::demo::DemoSim;
use meshtop::topology::derive::derive;
use meshtop::{config, output, runtime};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let settings = config::settings(&cli, no_color)?;
    for warning in &settings.theme_warnings {
        eprintln!("meshtop: theme skipped: {warning}");
    }
    if !cli.demo {
        bail!(
            "live clusters are not wired in yet: this version runs on the built-in simulated mesh only. \
             Try `meshtop --demo` (see README.md)"
        );
    }
    if cli.once {
        let mut sim = DemoSim::new(cli.seed);
        let _ = sim.drain();
        let topology = derive(sim.world());
        match cli.output {
            Output::Json => println!("{}", output::json(&topology)),
            Output::Table => print!("{}", output::table(&topology)),
        }
        return Ok(());
    }
    let app = App::new(
        settings.themes,
        settings.theme_index,
        format!("demo · seed {}", cli.seed),
        settings.read_only,
    );
    let options = runtime::DemoOptions {
        seed: cli.seed,
        tick: Duration::from_millis(cli.tick_ms.max(10)),
        audit: AuditLog {
            path: settings.audit_log,
            mode: "demo",
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(runtime::run_demo(app, options))
}
