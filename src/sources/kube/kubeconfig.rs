//! Which clusters to watch, read as kubectl reads them: `--kubeconfig`, else every file of
//! `KUBECONFIG` merged (the first file to name a context wins), else `~/.kube/config`; every
//! context by default, or those picked on the command line or in the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::config::{ExecInteractiveMode, KubeConfigOptions, Kubeconfig};

use crate::config::ClusterSettings;

/// One cluster to watch.
pub struct Target {
    /// The kubeconfig context (what the dashboard calls the cluster).
    pub context: String,
    /// The client configuration, or why it could not be built (shown on the cluster's node).
    pub config: Result<kube::Config, String>,
    /// istiod's monitoring URL, when the config file names one (control plane elsewhere).
    pub istiod_url: Option<String>,
    /// Shown instead of the context (config file).
    pub display_name: Option<String>,
    /// Istio's cluster id of this context, when the config file says it.
    pub cluster_id: Option<String>,
    /// The context's kubeconfig user (a name, never its credentials).
    pub user: String,
}

/// What the user asked for that cannot be had: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What meshtop calls itself to API servers (their audit logs show it).
pub const USER_AGENT: &str = concat!("meshtop/", env!("CARGO_PKG_VERSION"));

/// The kubeconfig files in the order kubectl reads them.
pub fn files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    dirs::home_dir()
        .map(|h| vec![h.join(".kube").join("config")])
        .unwrap_or_default()
}

/// Reads and merges the files. A file that does not parse is reported by name and line and
/// skipped, so the contexts of the other files still work; missing files are skipped like
/// kubectl does, unless the one file was named explicitly.
pub fn load(files: &[PathBuf], explicit: bool) -> (Kubeconfig, Vec<String>) {
    let mut merged: Option<Kubeconfig> = None;
    let mut problems = Vec::new();
    for path in files {
        let read = match Kubeconfig::read_from(path) {
            Ok(k) => k,
            Err(e) => {
                let missing = !path.exists();
                if !missing || explicit {
                    problems.push(format!(
                        "kubeconfig {}: {}",
                        path.display(),
                        error_chain(&e)
                    ));
                }
                continue;
            }
        };
        merged = Some(match merged {
            None => read,
            Some(m) => match m.clone().merge(read) {
                Ok(k) => k,
                Err(e) => {
                    problems.push(format!(
                        "kubeconfig {}: {}",
                        path.display(),
                        error_chain(&e)
                    ));
                    m
                }
            },
        });
    }
    (merged.unwrap_or_default(), problems)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// The clusters to watch, in kubeconfig order. `wanted` (command line, else config file) picks
/// contexts; `clusters` adds per-context settings (skip, istiod URL).
pub async fn resolve(
    explicit: Option<&Path>,
    wanted: &[String],
    clusters: &BTreeMap<String, ClusterSettings>,
) -> Result<(Vec<Target>, Vec<String>), UsageError> {
    let paths = files(explicit);
    let (mut kubeconfig, problems) = load(&paths, explicit.is_some());
    if kubeconfig.contexts.is_empty() {
        let mut msg = match paths.as_slice() {
            [] => "no kubeconfig: set KUBECONFIG or pass --kubeconfig (or try --demo)".to_string(),
            _ => format!(
                "no contexts in {} (or try --demo)",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        for p in &problems {
            msg.push_str(&format!("\n  {p}"));
        }
        return Err(UsageError(msg));
    }
    // Credential plugins must never prompt or write on the dashboard's terminal.
    for auth in &mut kubeconfig.auth_infos {
        if let Some(exec) = auth.auth_info.as_mut().and_then(|a| a.exec.as_mut()) {
            exec.interactive_mode = Some(ExecInteractiveMode::Never);
        }
    }
    let available: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let unknown: Vec<&String> = wanted.iter().filter(|w| !available.contains(w)).collect();
    if !unknown.is_empty() {
        return Err(UsageError(format!(
            "unknown context{} {}: the kubeconfig has {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            available.join(", ")
        )));
    }
    let mut targets = Vec::new();
    for context in available {
        if !wanted.is_empty() && !wanted.contains(&context) {
            continue;
        }
        let settings = clusters.get(&context);
        if settings.is_some_and(|s| s.skip) {
            continue;
        }
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
            .await
            .map(|mut c| {
                // kube-rs sends no User-Agent: with one, an API server's audit log can tell
                // meshtop's requests from every other client's.
                c.headers.push((
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(USER_AGENT),
                ));
                c
            })
            .map_err(|e| format!("kubeconfig: {}", error_chain(&e)));
        let user = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| "unknown".into());
        targets.push(Target {
            user,
            context,
            config,
            istiod_url: settings.and_then(|s| s.istiod_url.clone()),
            display_name: settings.and_then(|s| s.display_name.clone()),
            cluster_id: settings.and_then(|s| s.cluster_id.clone()),
        });
    }
    if targets.is_empty() {
        return Err(UsageError(
            "every context is skipped by the config file".into(),
        ));
    }
    Ok((targets, problems))
}
