//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    #[arg(long, global = true)]
    pub demo: bool,

    /// Seed of the simulated mesh: the same seed gives the same mesh and the same story.
    #[arg(long, default_value_t = 1, global = true)]
    pub seed: u64,

    /// Milliseconds between two steps of the simulated mesh.
    #[arg(long, default_value_t = 1000, value_name = "MS", global = true)]
    pub tick_ms: u64,

    /// Print the derived topology once and exit (no terminal UI).
    #[arg(long)]
    pub once: bool,

    /// Output format for --once.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Colour theme: a built-in name (dark, light, high-contrast, colorblind, mono), a theme
    /// from the user theme directory, or a path to a .toml file. NO_COLOR forces mono.
    #[arg(long, value_name = "NAME|PATH", global = true)]
    pub theme: Option<String>,

    /// Never write to a cluster: failover plans are shown but cannot be applied.
    #[arg(long, global = true)]
    pub read_only: bool,

    /// Where failover attempts are recorded (JSON lines).
    #[arg(long, value_name = "PATH", global = true)]
    pub audit_log: Option<PathBuf>,

    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Contexts to watch (repeatable or comma-separated; default: every context).
    #[arg(
        long = "context",
        value_name = "NAME",
        value_delimiter = ',',
        global = true
    )]
    pub contexts: Vec<String>,

    /// With --once on live clusters: how long to wait for every cluster to sync.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, global = true)]
    pub timeout: f64,

    /// Log level of the log file: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Log file (default: $XDG_STATE_HOME/meshtop/meshtop.log).
    #[arg(long, value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (default: $XDG_CONFIG_HOME/meshtop/config.toml).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move a cluster (or namespaces of a primary) to another control plane: prints the plan
    /// and the pre-flight checks, asks, applies, verifies. Exits 0 only when verified.
    Failover(FailoverArgs),
    /// Revert a failover recorded in the audit log (default: the newest one not undone).
    Undo(UndoArgs),
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The cluster (kubeconfig context) whose proxies move.
    #[arg(long, value_name = "CONTEXT", required_unless_present_any = ["list", "resume"])]
    pub cluster: Option<String>,

    /// The control plane to move to: its id (`context/namespace/deployment`), or a context
    /// with a single control plane, or `context/deployment`. Default: the best candidate.
    #[arg(long, value_name = "CONTROL_PLANE")]
    pub to: Option<String>,

    /// Only these namespaces (a revision switch on a primary).
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    pub namespaces: Vec<String>,

    /// Print the plan and the checks; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,

    /// List the failover attempts of the audit log, newest first, and exit.
    #[arg(long)]
    pub list: bool,

    /// Finish an attempt that stopped half-way (its id from --list).
    #[arg(long, value_name = "ID", conflicts_with_all = ["cluster", "to", "namespaces"])]
    pub resume: Option<String>,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The attempt to revert (from `meshtop failover --list`); default: the newest one that
    /// wrote something and is not undone. An interrupted attempt is rolled back this way.
    pub id: Option<String>,

    /// Print the plan and the checks; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}
