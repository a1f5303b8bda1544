//! Command-line definitions.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

/// A terminal dashboard for multi-cluster Istio service meshes.
#[derive(Debug, Parser)]
#[command(name = "meshtop", version, about)]
pub struct Cli {
    /// Run on the built-in simulated multi-cluster mesh (no cluster needed).
    #[arg(long)]
    pub demo: bool,

    /// Seed of the simulated mesh: the same seed gives the same mesh and the same story.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Milliseconds between two steps of the simulated mesh.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub tick_ms: u64,

    /// Print the derived topology once and exit (no terminal UI).
    #[arg(long)]
    pub once: bool,

    /// Output format for --once.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Colour theme: a built-in name (dark, light, high-contrast, colorblind, mono), a theme
    /// from the user theme directory, or a path to a .toml file. NO_COLOR forces mono.
    #[arg(long, value_name = "NAME|PATH")]
    pub theme: Option<String>,

    /// Never write to a cluster: failover plans are shown but cannot be applied.
    #[arg(long)]
    pub read_only: bool,

    /// Where failover attempts are recorded (JSON lines).
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,

    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Contexts to watch (repeatable or comma-separated; default: every context).
    #[arg(long = "context", value_name = "NAME", value_delimiter = ',')]
    pub contexts: Vec<String>,

    /// With --once on live clusters: how long to wait for every cluster to sync.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,

    /// Log level of the log file: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log file (default: $XDG_STATE_HOME/meshtop/meshtop.log).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Configuration file (default: $XDG_CONFIG_HOME/meshtop/config.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}
