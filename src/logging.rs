//! The log file: set up once at start, never the terminal while the TUI runs.
//!
//! `$XDG_STATE_HOME/meshtop/meshtop.log` (or `--log-file`), level from `--log-level`. kube-rs's
//! own events (watch restarts, TLS errors) go there too. Nothing logged here carries a secret
//! value: sources log kinds, names and error messages, never object bodies or credentials.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

static START: OnceLock<Instant> = OnceLock::new();

/// Marks the start of the process (call first thing in `main`); later calls change nothing.
pub fn mark_start() {
    START.get_or_init(Instant::now);
}

/// Time since [`mark_start`]: the clock the log's `since_start_ms` fields use.
pub fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// The default log file: `$XDG_STATE_HOME/meshtop/meshtop.log`.
pub fn default_path() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("meshtop").join("meshtop.log"))
}

/// Opens (appends to) the log file and installs the global subscriber.
pub fn init(path: &Path, level: LevelFilter) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    // Other crates (kube, hyper, rustls) log at most at info: their debug and trace output
    // describes requests and TLS in detail, which a log file has no need to keep.
    let filter = Targets::new()
        .with_default(level.min(LevelFilter::INFO))
        .with_target("meshtop", level)
        // It logs every failed request with the error's full text, which for a failed exec
        // credential plugin includes the plugin's command, environment and output: meshtop
        // logs those failures itself, without the text.
        .with_target("kube_client::client::builder", LevelFilter::OFF);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(false)
        .with_target(true)
        .with_writer(Mutex::new(file))
        .finish()
        .with(filter);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "meshtop started");
    Ok(())
}
