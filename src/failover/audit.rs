//! Append-only audit log of every failover attempt, one JSON object per line.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::plan::Plan;

#[derive(Clone, Debug)]
pub struct AuditLog {
    pub path: Option<PathBuf>,
    pub mode: &'static str,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: u64,
    user: String,
    mode: &'a str,
    event: &'a str,
    plan: String,
    changes: Vec<String>,
    detail: &'a str,
}

impl AuditLog {
    /// Default place: `$XDG_STATE_HOME/meshtop/audit.jsonl`.
    pub fn default_path() -> Option<PathBuf> {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|d| d.join("meshtop").join("audit.jsonl"))
    }

    /// Records one event; a log that cannot be written is reported, never fatal.
    pub fn record(&self, event: &str, plan: &Plan, detail: &str) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let entry = Entry {
            time: crate::topology::clock::unix_now(),
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            mode: self.mode,
            event,
            plan: plan.title(),
            changes: plan.changes.iter().map(|c| c.describe()).collect(),
            detail,
        };
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(file, "{line}").map_err(|e| format!("{}: {e}", path.display()))
    }
}
