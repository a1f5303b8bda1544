//! Append-only audit log of every failover attempt, one JSON object per line, and the
//! snapshots of the objects each step wrote. The log is also how an interrupted attempt is
//! found again (resume or roll back) and how `undo` knows what to restore. It never holds a
//! secret value: plans touch Namespaces, Services, EndpointSlices, webhook configurations and
//! Deployments (whose pod specs are dropped from snapshots).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{Change, Op, Plan};
use super::writer::Snapshot;

#[derive(Clone, Debug)]
pub struct AuditLog {
    pub path: Option<PathBuf>,
    pub mode: &'static str,
    /// `<os user>@<host>`.
    pub user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied, and the clusters and istiod show it.
    Verified,
    /// Applied, but not shown within the deadline.
    Unverified,
    /// A step failed: the steps before it are applied.
    Failed,
    /// Nothing was written (lock held, an object changed since the plan, ...).
    Refused,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Unverified => "unverified",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        plan: Plan,
        /// The attempt this one finishes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumes: Option<String>,
        /// The attempt this one reverts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undoes: Option<String>,
    },
    Step {
        index: usize,
        object: String,
        path: String,
        before: Option<String>,
        after: Option<String>,
        /// `ok`, `ok: already applied` or the error.
        result: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<PathBuf>,
    },
    End {
        outcome: Outcome,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: u64,
    pub attempt: String,
    pub user: String,
    pub mode: String,
    pub context: String,
    #[serde(flatten)]
    pub event: Event,
}

/// One attempt as the log tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: String,
    pub time: u64,
    pub user: String,
    pub context: String,
    pub plan: Plan,
    pub resumes: Option<String>,
    pub undoes: Option<String>,
    /// Indices of the steps that were written (or found already written).
    pub applied: BTreeSet<usize>,
    /// The step that failed and why.
    pub failed: Option<(usize, String)>,
    pub end: Option<(Outcome, String)>,
}

impl Attempt {
    pub fn status(&self) -> String {
        match &self.end {
            Some((o, _)) => o.label().to_string(),
            None => "interrupted".into(),
        }
    }

    /// Stopped with part of its plan written: needs a resume or a rollback.
    pub fn unfinished(&self) -> bool {
        match &self.end {
            None => true,
            Some((Outcome::Failed, _)) => !self.applied.is_empty(),
            Some(_) => false,
        }
    }

    /// The plan that reverts what this attempt wrote, newest write first; restarts are done
    /// again at the end so that proxies reconnect where they were.
    ///
    /// The step that failed is reverted too: a write whose answer was lost (an API server that
    /// stopped mid-request) may still have landed. Each step of a rollback that finds its
    /// object already as it should be is recorded as such, so either way ends right.
    pub fn rollback(&self) -> Plan {
        let mut written = self.applied_plan();
        if let Some((i, _)) = &self.failed {
            if let Some(c) = self.plan.changes.get(*i).filter(|c| c.op != Op::Restart) {
                written.changes.push(c.clone());
            }
        }
        let mut undo = written.inverse();
        undo.undo_of = Some(self.id.clone());
        undo
    }

    /// The plan restricted to the steps that were written.
    pub fn applied_plan(&self) -> Plan {
        Plan {
            changes: self
                .plan
                .changes
                .iter()
                .enumerate()
                .filter(|(i, _)| self.applied.contains(i))
                .map(|(_, c)| c.clone())
                .collect(),
            ..self.plan.clone()
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{}  {}  {}  {}  {}/{} steps  {}",
            self.id,
            crate::topology::clock::rfc3339(self.time),
            self.status(),
            self.plan.title(),
            self.applied.len(),
            self.plan.changes.len(),
            self.end.as_ref().map(|(_, m)| m.as_str()).unwrap_or(""),
        )
    }
}

/// A new attempt id: time first, so ids sort by age.
pub fn new_attempt_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = k8s_openapi::jiff::Timestamp::from_second(now.as_secs() as i64)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| now.as_secs().to_string());
    format!(
        "{stamp}-{:04x}",
        (now.subsec_nanos() ^ std::process::id()) & 0xffff
    )
}

/// `<os user>@<host>`.
pub fn local_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", hostname())
}

/// The name of this process's user in /etc/passwd.
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl AuditLog {
    /// Default place: `$XDG_STATE_HOME/meshtop/audit.jsonl`.
    pub fn default_path() -> Option<PathBuf> {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|d| d.join("meshtop").join("audit.jsonl"))
    }

    pub fn new(path: Option<PathBuf>, mode: &'static str) -> AuditLog {
        AuditLog {
            path,
            mode,
            user: local_user(),
        }
    }

    /// Records one event; a log that cannot be written is reported to the caller.
    pub fn record(&self, attempt: &str, context: &str, event: Event) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let entry = Entry {
            time: crate::topology::clock::unix_now(),
            attempt: attempt.to_string(),
            user: self.user.clone(),
            mode: self.mode.to_string(),
            context: context.to_string(),
            event,
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

    /// Saves the state of an object before step `index` of `attempt` writes it.
    pub fn save_snapshot(
        &self,
        attempt: &str,
        index: usize,
        change: &Change,
        snapshot: &Snapshot,
    ) -> Result<Option<PathBuf>, String> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let dir = path
            .parent()
            .unwrap_or(Path::new("."))
            .join("snapshots")
            .join(attempt);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!(
            "{index:03}-{}-{}-{}{}.json",
            change.cluster,
            change.kind,
            change
                .namespace
                .as_ref()
                .map(|ns| format!("{ns}-"))
                .unwrap_or_default(),
            change.name.replace('/', "_")
        ));
        let text = serde_json::to_string_pretty(&snapshot.0).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Some(file))
    }

    /// Every attempt in the log, oldest first. Lines that do not parse are skipped.
    pub fn attempts(&self) -> Result<Vec<Attempt>, String> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(attempts_of(&text))
    }
}

pub fn attempts_of(text: &str) -> Vec<Attempt> {
    let mut attempts: Vec<Attempt> = Vec::new();
    for entry in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
    {
        if let Event::Start {
            plan,
            resumes,
            undoes,
        } = entry.event
        {
            attempts.push(Attempt {
                id: entry.attempt,
                time: entry.time,
                user: entry.user,
                context: entry.context,
                plan,
                resumes,
                undoes,
                applied: BTreeSet::new(),
                failed: None,
                end: None,
            });
            continue;
        }
        let Some(a) = attempts.iter_mut().rev().find(|a| a.id == entry.attempt) else {
            continue;
        };
        match entry.event {
            Event::Step { index, result, .. } => {
                if result.starts_with("ok") {
                    a.applied.insert(index);
                } else {
                    a.failed = Some((index, result));
                }
            }
            Event::End { outcome, message } => a.end = Some((outcome, message)),
            Event::Start { .. } => {}
        }
    }
    attempts
}

/// Attempts stopped half-way that no later attempt resumed or rolled back, newest first.
pub fn pending(attempts: &[Attempt]) -> Vec<&Attempt> {
    attempts
        .iter()
        .rev()
        .filter(|a| a.unfinished())
        .filter(|a| {
            !attempts.iter().any(|b| {
                b.resumes.as_deref() == Some(a.id.as_str())
                    || b.undoes.as_deref() == Some(a.id.as_str())
            })
        })
        .collect()
}

/// The newest attempt `undo` reverts by default: it wrote something, is not an undo itself,
/// has not been undone, and was not finished by a resume (the resume covers its writes).
pub fn latest_undoable(attempts: &[Attempt]) -> Option<&Attempt> {
    attempts.iter().rev().find(|a| {
        !a.applied.is_empty()
            && a.undoes.is_none()
            && !attempts.iter().any(|b| {
                (b.undoes.as_deref() == Some(a.id.as_str()) && b.end.is_some())
                    || b.resumes.as_deref() == Some(a.id.as_str())
            })
    })
}

/// Restarts in a plan, for progress and rollout waits.
pub fn restarts(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.changes.iter().filter(|c| c.op == Op::Restart)
}
