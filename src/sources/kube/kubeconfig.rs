//! Which clusters to watch, read from the files kubectl reads (`--kubeconfig`, else every file
//! of `KUBECONFIG`, else `~/.kube/config`), every context by default or those picked on the
//! command line or in the config file.
//!
//! Where kubectl's merge would hide something, meshtop does not: a context name defined in
//! several files (kubeadm's `kubernetes-admin@kubernetes`, k3s's `default`) is watched once per
//! distinct API server, the later ones named `name (file)`; a context's cluster and user are
//! looked up in its own file first. Two contexts that reach the same API server are one cluster
//! (the first), and the other is named in a note. Nothing here connects or runs a credential
//! plugin: that happens in the cluster's own task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::config::{AuthInfo, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

use super::connect::ClientSlot;
use crate::config::ClusterSettings;
use crate::topology::snapshot::{Connection, KUBECONFIG_NOTE};

/// One cluster to watch.
pub struct Target {
    /// What the dashboard calls the cluster: the context's name, made unique (`admin (b.yaml)`).
    pub context: String,
    /// A kubeconfig holding just this context, its cluster and its user; or, when the
    /// kubeconfig cannot work, the state to show for the cluster instead.
    pub kubeconfig: Result<Kubeconfig, Connection>,
    /// istiod's monitoring URL, when the config file names one (control plane elsewhere).
    pub istiod_url: Option<String>,
    /// Shown instead of the context (config file).
    pub display_name: Option<String>,
    /// Istio's cluster id of this context, when the config file says it.
    pub cluster_id: Option<String>,
    /// The context's kubeconfig user (a name, never its credentials).
    pub user: String,
    /// What the dashboard should know about how this context was read (topic → text).
    pub notes: Vec<(String, String)>,
    /// The client, once the cluster's task has built it; shared with the failover writer.
    pub client: ClientSlot,
}

impl Target {
    /// The failover writer's view of this cluster: the same client, once there is one.
    pub fn writer_target(&self) -> crate::failover::kube::Target {
        crate::failover::kube::Target {
            context: self.context.clone(),
            client: self.client.clone(),
            user: self.user.clone(),
        }
    }
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

/// The kubeconfig files in the order kubectl reads them (a file listed twice counts once).
pub fn files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in std::env::split_paths(&list) {
            if !p.as_os_str().is_empty() && !out.contains(&p) {
                out.push(p);
            }
        }
        return out;
    }
    dirs::home_dir()
        .map(|h| vec![h.join(".kube").join("config")])
        .unwrap_or_default()
}

/// One kubeconfig file as read.
pub struct File {
    pub path: PathBuf,
    pub config: Kubeconfig,
}

impl File {
    /// The file's name as a user would say it (`k3s-b.yaml`).
    fn short_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Reads the files. A file that does not parse is reported by name and skipped, so the
/// contexts of the other files still work; a missing file of `KUBECONFIG` is skipped as
/// kubectl skips it, and said so; a missing file named with `--kubeconfig` is an error.
pub fn load(paths: &[PathBuf], explicit: bool) -> (Vec<File>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if !explicit && !path.exists() {
            problems.push(format!(
                "kubeconfig {} does not exist: skipped (as kubectl does)",
                path.display()
            ));
            continue;
        }
        match Kubeconfig::read_from(path) {
            Ok(config) => files.push(File {
                path: path.clone(),
                config,
            }),
            Err(e) => problems.push(format!(
                "kubeconfig {}: {}",
                path.display(),
                error_chain(&e)
            )),
        }
    }
    (files, problems)
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
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

/// One context as found, before selection: its unique name and what it resolves to.
pub struct Found {
    pub name: String,
    /// The name it has in its file.
    pub original: String,
    pub file: usize,
    pub context: Context,
    /// The cluster entry (own file first, then the others in order).
    pub cluster: Option<NamedCluster>,
    /// The user entry, likewise; `None` inside when the context names no user.
    pub user: Option<Option<NamedAuthInfo>>,
    pub notes: Vec<(String, String)>,
}

impl Found {
    /// The API server this context reaches (its cluster's `server`, normalised).
    pub fn server(&self) -> Option<String> {
        let server = self.cluster.as_ref()?.cluster.as_ref()?.server.as_deref()?;
        Some(server.trim_end_matches('/').to_ascii_lowercase())
    }
}

fn find_in<'a, T>(
    files: &'a [File],
    own: usize,
    name: &str,
    list: impl Fn(&'a Kubeconfig) -> &'a [T],
    named: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    std::iter::once(own)
        .chain((0..files.len()).filter(|&i| i != own))
        .find_map(|i| list(&files[i].config).iter().find(|x| named(x) == name))
}

/// Every distinct context of the files, in file order. A name seen before gets its file's name
/// added (and a number if that is taken too); one that reaches the same API server under the
/// same name as an earlier one is dropped, with a note on the earlier one.
pub fn contexts(files: &[File]) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        for named in &file.config.contexts {
            let Some(context) = named.context.clone() else {
                continue;
            };
            let cluster = find_in(
                files,
                i,
                &context.cluster,
                |k| &k.clusters,
                |c: &NamedCluster| &c.name,
            )
            .cloned();
            let user = context.user.as_deref().map(|u| {
                find_in(files, i, u, |k| &k.auth_infos, |a: &NamedAuthInfo| &a.name).cloned()
            });
            let mut entry = Found {
                name: named.name.clone(),
                original: named.name.clone(),
                file: i,
                context,
                cluster,
                user,
                notes: Vec::new(),
            };
            if let Some(first) = found.iter_mut().find(|f| f.original == named.name) {
                if first.server().is_some() && first.server() == entry.server() {
                    first.notes.push((
                        KUBECONFIG_NOTE.into(),
                        format!(
                            "context {:?} is also defined in {} for the same API server: shown once",
                            named.name,
                            file.path.display()
                        ),
                    ));
                    continue;
                }
                let first_file = files[first.file].path.display().to_string();
                let mut name = format!("{} ({})", named.name, file.short_name());
                let mut n = 2;
                while found.iter().any(|f| f.name == name) {
                    name = format!("{} ({} #{n})", named.name, file.short_name());
                    n += 1;
                }
                entry.notes.push((
                    KUBECONFIG_NOTE.into(),
                    format!(
                        "context {:?} of {} (kubectl sees only the one of {first_file})",
                        named.name,
                        file.path.display()
                    ),
                ));
                entry.name = name;
            }
            found.push(entry);
        }
    }
    found
}

/// The clusters to watch, in kubeconfig order, and what the user should know about the files.
/// `wanted` (command line, else config file) picks contexts by their shown names; `clusters`
/// adds per-context settings (skip, istiod URL, names).
pub async fn resolve(
    explicit: Option<&Path>,
    wanted: &[String],
    clusters: &BTreeMap<String, ClusterSettings>,
) -> Result<(Vec<Target>, Vec<String>), UsageError> {
    match explicit {
        Some(_) => resolve_in(&files(explicit), true, wanted, clusters),
        None => resolve_files(&files(None), wanted, clusters),
    }
}

/// [`resolve`] on a list of files read as `KUBECONFIG`'s are (a missing one is skipped).
pub fn resolve_files(
    paths: &[PathBuf],
    wanted: &[String],
    clusters: &BTreeMap<String, ClusterSettings>,
) -> Result<(Vec<Target>, Vec<String>), UsageError> {
    resolve_in(paths, false, wanted, clusters)
}

fn resolve_in(
    paths: &[PathBuf],
    explicit: bool,
    wanted: &[String],
    clusters: &BTreeMap<String, ClusterSettings>,
) -> Result<(Vec<Target>, Vec<String>), UsageError> {
    let (files, mut problems) = load(paths, explicit);
    let found = contexts(&files);
    if found.is_empty() {
        let mut msg = match paths {
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
    let available: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| !available.contains(&w.as_str()))
        .collect();
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
    let mut chosen: Vec<Found> = found
        .into_iter()
        .filter(|f| wanted.is_empty() || wanted.contains(&f.name))
        .filter(|f| !clusters.get(&f.name).is_some_and(|s| s.skip))
        .collect();
    if chosen.is_empty() {
        return Err(UsageError(
            "every context is skipped by the config file".into(),
        ));
    }
    // One API server is one cluster, whatever the contexts that reach it are called.
    let mut i = 0;
    while i < chosen.len() {
        let server = chosen[i].server();
        let same = server.is_some() && chosen[..i].iter().any(|earlier| earlier.server() == server);
        if same {
            let dropped = chosen.remove(i);
            if let Some(first) = chosen[..i].iter_mut().find(|e| e.server() == server) {
                let text = format!(
                    "context {:?} reaches the same API server: shown once, as {:?}",
                    dropped.name, first.name
                );
                problems.push(text.clone());
                first.notes.push((KUBECONFIG_NOTE.into(), text));
            }
        } else {
            i += 1;
        }
    }
    let targets = chosen
        .into_iter()
        .map(|f| {
            let settings = clusters.get(&f.name);
            target(f, &files, settings)
        })
        .collect();
    Ok((targets, problems))
}

fn target(f: Found, files: &[File], settings: Option<&ClusterSettings>) -> Target {
    let user = f.context.user.clone().unwrap_or_else(|| "unknown".into());
    let kubeconfig = single(&f, files);
    Target {
        context: f.name,
        kubeconfig,
        istiod_url: settings.and_then(|s| s.istiod_url.clone()),
        display_name: settings.and_then(|s| s.display_name.clone()),
        cluster_id: settings.and_then(|s| s.cluster_id.clone()),
        user,
        notes: f.notes,
        client: ClientSlot::default(),
    }
}

/// A kubeconfig of one context, its cluster and its user, or why the context cannot work.
fn single(f: &Found, files: &[File]) -> Result<Kubeconfig, Connection> {
    let file = files[f.file].path.display();
    let cluster = f.cluster.clone().ok_or_else(|| {
        Connection::Down(format!(
            "context {:?} of {file} names cluster {:?}, which no kubeconfig file defines",
            f.original, f.context.cluster
        ))
    })?;
    let auth_info: Option<AuthInfo> = match &f.user {
        None => None,
        Some(Some(named)) => named.auth_info.clone(),
        Some(None) => {
            return Err(Connection::AuthError(format!(
                "context {:?} of {file} names user {:?}, which no kubeconfig file defines",
                f.original,
                f.context.user.as_deref().unwrap_or("")
            )))
        }
    };
    let mut context = f.context.clone();
    context.cluster = "cluster".into();
    context.user = auth_info.is_some().then(|| "user".to_string());
    Ok(Kubeconfig {
        clusters: vec![NamedCluster {
            name: "cluster".into(),
            cluster: cluster.cluster,
            ..Default::default()
        }],
        auth_infos: auth_info
            .map(|a| NamedAuthInfo {
                name: "user".into(),
                auth_info: Some(a),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        contexts: vec![NamedContext {
            name: f.name.clone(),
            context: Some(context),
            ..Default::default()
        }],
        current_context: Some(f.name.clone()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, yaml: &str) -> File {
        File {
            path: PathBuf::from(path),
            config: Kubeconfig::from_yaml(yaml).unwrap(),
        }
    }

    fn k3s(server: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: {server}\n\
             users:\n- name: default\n  user:\n    token: t\n\
             contexts:\n- name: default\n  context:\n    cluster: default\n    user: default\n"
        )
    }

    #[test]
    fn the_same_context_name_in_two_files_is_two_clusters_each_with_its_own_entries() {
        let files = [
            file("/k/k3s-a.yaml", &k3s("https://127.0.0.1:6443")),
            file("/k/k3s-b.yaml", &k3s("https://127.0.0.1:7443")),
        ];
        let found = contexts(&files);
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["default", "default (k3s-b.yaml)"]);
        assert_eq!(found[1].server().as_deref(), Some("https://127.0.0.1:7443"));
        assert!(found[1].notes[0].1.contains("kubectl sees only"));
    }

    #[test]
    fn the_same_server_under_the_same_name_is_one_cluster_with_a_note() {
        let files = [
            file("/k/a.yaml", &k3s("https://127.0.0.1:6443")),
            file("/k/b.yaml", &k3s("https://127.0.0.1:6443/")),
        ];
        let found = contexts(&files);
        assert_eq!(found.len(), 1);
        assert!(found[0].notes[0].1.contains("same API server"));
    }

    #[test]
    fn a_context_naming_a_missing_cluster_or_user_says_which() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n\
                    contexts:\n- name: a\n  context:\n    cluster: nowhere\n    user: nobody\n";
        let files = [file("/k/c.yaml", yaml)];
        let found = contexts(&files);
        match single(&found[0], &files) {
            Err(Connection::Down(m)) => assert!(m.contains("\"nowhere\""), "{m}"),
            other => panic!("{:?}", other.err()),
        }
        let yaml = yaml.replace(
            "clusters: []",
            "clusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1",
        );
        let files = [file("/k/c.yaml", &yaml)];
        let found = contexts(&files);
        match single(&found[0], &files) {
            Err(Connection::AuthError(m)) => assert!(m.contains("\"nobody\""), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }
}
