//! A failover is a plan: the exact object changes, computed purely from the topology, that can
//! be printed, checked, applied, audited and inverted.

use serde::Serialize;

use crate::topology::istio::{
    ANNOTATION_CONTROL_PLANE_CLUSTERS, DEFAULT_REVISION, LABEL_INJECTION, LABEL_REV,
};
use crate::topology::model::{Cluster, ClusterRole, ControlPlane, Injection, SyncStatus, Topology};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Set the string at a JSON pointer; `None` means absent.
    Set {
        path: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Rollout restart: stamp the pod template's `restartedAt` annotation.
    Restart,
}

/// One change to one object in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Kubeconfig context.
    pub cluster: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Change {
    pub fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub fn describe(&self) -> String {
        match &self.op {
            Op::Set { path, from, to } => format!(
                "{}: {} {}  {} → {}",
                self.cluster,
                self.object(),
                path.replace("~1", "/").replace("~0", "~"),
                from.as_deref().unwrap_or("(absent)"),
                to.as_deref().unwrap_or("(absent)")
            ),
            Op::Restart => format!("{}: rollout restart {}", self.cluster, self.object()),
        }
    }

    /// The RFC 6902 patch: a `test` of the old value first, so a change made by someone else
    /// in the meantime fails the step instead of being overwritten.
    pub fn json_patch(&self, now: &str) -> json_patch::Patch {
        let ops = match &self.op {
            Op::Set { path, from, to } => {
                let mut ops = Vec::new();
                if let Some(from) = from {
                    ops.push(serde_json::json!({"op": "test", "path": path, "value": from}));
                }
                match (from, to) {
                    (_, Some(to)) => {
                        ops.push(serde_json::json!({"op": "add", "path": path, "value": to}))
                    }
                    (Some(_), None) => ops.push(serde_json::json!({"op": "remove", "path": path})),
                    (None, None) => {}
                }
                ops
            }
            Op::Restart => vec![serde_json::json!({
                "op": "add",
                "path": format!("/spec/template/metadata/annotations/{}", pointer_escape(RESTARTED_AT)),
                "value": now,
            })],
        };
        serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default()
    }

    pub fn inverse(&self) -> Change {
        let op = match &self.op {
            Op::Set { path, from, to } => Op::Set {
                path: path.clone(),
                from: to.clone(),
                to: from.clone(),
            },
            Op::Restart => Op::Restart,
        };
        Change { op, ..self.clone() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Point a remote cluster at another primary's control plane.
    RepointRemote,
    /// Move a cluster's namespaces to another revision.
    SwitchRevision,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub kind: PlanKind,
    /// Context of the cluster whose proxies move.
    pub cluster: String,
    pub cluster_id: String,
    /// Control plane ids.
    pub from: String,
    pub to: String,
    pub changes: Vec<Change>,
    /// Set on the plan that undoes another.
    pub undo_of: Option<String>,
}

impl Plan {
    pub fn title(&self) -> String {
        let what = match self.kind {
            PlanKind::RepointRemote => "repoint",
            PlanKind::SwitchRevision => "switch revision of",
        };
        let prefix = if self.undo_of.is_some() { "undo: " } else { "" };
        format!(
            "{prefix}{what} {} : {} → {}",
            self.cluster, self.from, self.to
        )
    }

    /// The plan that restores what this one changed (restarts are re-done so proxies reconnect).
    pub fn inverse(&self) -> Plan {
        let mut changes: Vec<Change> = self
            .changes
            .iter()
            .rev()
            .filter(|c| c.op != Op::Restart)
            .map(Change::inverse)
            .collect();
        changes.extend(self.changes.iter().filter(|c| c.op == Op::Restart).cloned());
        Plan {
            kind: self.kind,
            cluster: self.cluster.clone(),
            cluster_id: self.cluster_id.clone(),
            from: self.to.clone(),
            to: self.from.clone(),
            changes,
            undo_of: Some(self.title()),
        }
    }

    /// Printable form for `--dry-run` and the audit log.
    pub fn render_text(&self) -> String {
        let mut out = format!("{}\n", self.title());
        for (i, c) in self.changes.iter().enumerate() {
            out.push_str(&format!("  {:>2}. {}\n", i + 1, c.describe()));
        }
        out
    }
}

/// What a key press on a node can fail over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Cluster(String),
    ControlPlane(String),
}

/// Control planes a subject could move to, best first.
pub fn targets(topology: &Topology, subject: &Subject) -> Vec<String> {
    let Some((cluster, current)) = resolve(topology, subject) else {
        return Vec::new();
    };
    match cluster.role {
        ClusterRole::Primary => cluster
            .control_planes
            .iter()
            .filter(|cp| !cp.external && cp.id != current.id)
            .map(|cp| cp.id.clone())
            .collect(),
        ClusterRole::Remote | ClusterRole::ExternalControlPlane => {
            let mut candidates: Vec<&ControlPlane> = topology
                .control_planes()
                .filter(|cp| !cp.external && cp.id != current.id && cp.cluster != cluster.name)
                .filter(|cp| {
                    topology.mesh_of_cluster(&cp.cluster).map(|m| &m.id)
                        == topology.mesh_of_cluster(&cluster.name).map(|m| &m.id)
                })
                .collect();
            // Ready, EXTERNAL_ISTIOD and already synced with the cluster come first.
            candidates.sort_by_key(|cp| {
                let synced = cp
                    .remote_clusters
                    .iter()
                    .any(|r| r.id == cluster.cluster_id && r.status == SyncStatus::Synced);
                (!cp.ready, !cp.external_istiod, !synced, cp.id.clone())
            });
            candidates.into_iter().map(|cp| cp.id.clone()).collect()
        }
        ClusterRole::Unknown => Vec::new(),
    }
}

/// The cluster whose proxies move and the control plane that serves it now.
fn resolve<'a>(
    topology: &'a Topology,
    subject: &Subject,
) -> Option<(&'a Cluster, &'a ControlPlane)> {
    match subject {
        Subject::Cluster(context) => {
            let cluster = topology.cluster(context)?;
            let current = cluster
                .served_by
                .iter()
                .filter_map(|id| topology.control_plane(id))
                .find(|cp| cp.revision == "default" || cluster.role != ClusterRole::Primary)
                .or_else(|| {
                    cluster
                        .served_by
                        .first()
                        .and_then(|id| topology.control_plane(id))
                })?;
            Some((cluster, current))
        }
        Subject::ControlPlane(id) => {
            let cp = topology.control_plane(id)?;
            // A control plane's failover moves the first remote it serves, or its own cluster's
            // namespaces to another revision.
            let served = topology
                .clusters()
                .find(|c| c.name != cp.cluster && c.served_by.contains(&cp.id))
                .or_else(|| topology.cluster(&cp.cluster).filter(|_| !cp.external))?;
            Some((served, cp))
        }
    }
}

/// Builds the plan that moves `subject` to control plane `target` (or the best target).
pub fn plan(topology: &Topology, subject: &Subject, target: Option<&str>) -> Result<Plan, String> {
    let (cluster, current) = resolve(topology, subject).ok_or_else(|| {
        "nothing to fail over here: select a cluster or a control plane".to_string()
    })?;
    let candidates = targets(topology, subject);
    let target_id = match target {
        Some(t) => t.to_string(),
        None => candidates
            .first()
            .cloned()
            .ok_or_else(|| format!("no other control plane can serve {}", cluster.name))?,
    };
    let target = topology
        .control_plane(&target_id)
        .ok_or_else(|| format!("unknown control plane {target_id}"))?;
    match cluster.role {
        ClusterRole::Primary => Ok(switch_revision(cluster, current, target)),
        ClusterRole::Remote | ClusterRole::ExternalControlPlane => {
            repoint_remote(cluster, current, target)
        }
        ClusterRole::Unknown => Err(format!("{} runs no Istio", cluster.name)),
    }
}

fn restarts(cluster: &Cluster, namespaces: Option<&[String]>) -> Vec<Change> {
    cluster
        .injected_workloads
        .iter()
        .filter_map(|w| w.split_once('/'))
        .filter(|(ns, _)| {
            namespaces
                .map(|n| n.iter().any(|x| x == ns))
                .unwrap_or(true)
        })
        .map(|(ns, name)| Change {
            cluster: cluster.name.clone(),
            kind: "Deployment".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            op: Op::Restart,
        })
        .collect()
}

fn repoint_remote(
    cluster: &Cluster,
    current: &ControlPlane,
    target: &ControlPlane,
) -> Result<Plan, String> {
    let wiring = cluster
        .wiring
        .as_ref()
        .ok_or_else(|| format!("{}: no istiod Service or injector to repoint", cluster.name))?;
    let new_address = target.exposed_at.clone().ok_or_else(|| {
        format!(
            "{} is not exposed through an east-west gateway with an address",
            target.id
        )
    })?;
    let mut changes = Vec::new();
    let ns = wiring.system_namespace.clone();
    if let Some(svc) = &wiring.istiod_service {
        match wiring.address_kind.as_deref() {
            Some("ExternalName") => changes.push(Change {
                cluster: cluster.name.clone(),
                kind: "Service".into(),
                namespace: Some(ns.clone()),
                name: svc.clone(),
                op: Op::Set {
                    path: "/spec/externalName".into(),
                    from: wiring.istiod_address.clone(),
                    to: Some(new_address.clone()),
                },
            }),
            other => {
                return Err(format!(
                    "Service {ns}/{svc}: repointing an address of kind {} is not supported yet",
                    other.unwrap_or("unknown")
                ))
            }
        }
    }
    if let (Some(webhook), Some(url)) = (&wiring.injector_webhook, &wiring.injector_url) {
        let new_url = replace_host(url, &new_address);
        for i in 0..wiring.injector_hooks.max(1) {
            changes.push(Change {
                cluster: cluster.name.clone(),
                kind: "MutatingWebhookConfiguration".into(),
                namespace: None,
                name: webhook.clone(),
                op: Op::Set {
                    path: format!("/webhooks/{i}/clientConfig/url"),
                    from: Some(url.clone()),
                    to: Some(new_url.clone()),
                },
            });
        }
    }
    changes.push(Change {
        cluster: cluster.name.clone(),
        kind: "Namespace".into(),
        namespace: None,
        name: ns,
        op: Op::Set {
            path: format!(
                "/metadata/annotations/{}",
                pointer_escape(ANNOTATION_CONTROL_PLANE_CLUSTERS)
            ),
            from: (!wiring.control_plane_clusters.is_empty())
                .then(|| wiring.control_plane_clusters.join(",")),
            to: Some(target.cluster_id.clone()),
        },
    });
    changes.extend(restarts(cluster, None));
    Ok(Plan {
        kind: PlanKind::RepointRemote,
        cluster: cluster.name.clone(),
        cluster_id: cluster.cluster_id.clone(),
        from: current.id.clone(),
        to: target.id.clone(),
        changes,
        undo_of: None,
    })
}

/// `https://host:15017/inject/...` with another host, path kept.
fn replace_host(url: &str, host: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let path_start = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..path_start];
    let port = authority
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("15017");
    format!("{scheme}://{host}:{port}{}", &rest[path_start..])
}

fn switch_revision(cluster: &Cluster, current: &ControlPlane, target: &ControlPlane) -> Plan {
    let mut changes = Vec::new();
    let mut moved = Vec::new();
    for ns in cluster.namespaces.iter() {
        let effective = match (&ns.injection, &ns.revision) {
            (Injection::Enabled, _) => DEFAULT_REVISION.to_string(),
            (_, Some(r)) => r.clone(),
            _ => continue,
        };
        if effective != current.revision {
            continue;
        }
        moved.push(ns.name.clone());
        let label_path = |key: &str| format!("/metadata/labels/{}", pointer_escape(key));
        if ns.injection == Injection::Enabled {
            changes.push(Change {
                cluster: cluster.name.clone(),
                kind: "Namespace".into(),
                namespace: None,
                name: ns.name.clone(),
                op: Op::Set {
                    path: label_path(LABEL_INJECTION),
                    from: Some("enabled".into()),
                    to: None,
                },
            });
        }
        changes.push(Change {
            cluster: cluster.name.clone(),
            kind: "Namespace".into(),
            namespace: None,
            name: ns.name.clone(),
            op: Op::Set {
                path: label_path(LABEL_REV),
                from: ns.revision.clone(),
                to: Some(target.revision.clone()),
            },
        });
    }
    changes.extend(restarts(cluster, Some(&moved)));
    Plan {
        kind: PlanKind::SwitchRevision,
        cluster: cluster.name.clone(),
        cluster_id: cluster.cluster_id.clone(),
        from: current.id.clone(),
        to: target.id.clone(),
        changes,
        undo_of: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_replaced_and_path_kept() {
        assert_eq!(
            replace_host(
                "https://eastwest.east-1.example:15017/inject/cluster/east-2/net/network-east",
                "eastwest.west-1.example"
            ),
            "https://eastwest.west-1.example:15017/inject/cluster/east-2/net/network-east"
        );
    }

    #[test]
    fn inverse_swaps_values_and_keeps_restarts_last() {
        let set = Change {
            cluster: "c".into(),
            kind: "Service".into(),
            namespace: Some("istio-system".into()),
            name: "istiod".into(),
            op: Op::Set {
                path: "/spec/externalName".into(),
                from: Some("a".into()),
                to: Some("b".into()),
            },
        };
        let restart = Change {
            op: Op::Restart,
            kind: "Deployment".into(),
            ..set.clone()
        };
        let plan = Plan {
            kind: PlanKind::RepointRemote,
            cluster: "c".into(),
            cluster_id: "c".into(),
            from: "x".into(),
            to: "y".into(),
            changes: vec![set.clone(), restart.clone()],
            undo_of: None,
        };
        let undo = plan.inverse();
        assert_eq!(undo.from, "y");
        assert_eq!(undo.changes[0], set.inverse());
        assert_eq!(undo.changes[1], restart);
        assert!(
            matches!(&undo.changes[0].op, Op::Set { from: Some(f), to: Some(t), .. } if f == "b" && t == "a")
        );
    }

    #[test]
    fn json_patch_tests_old_value_first() {
        let c = Change {
            cluster: "c".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "payments".into(),
            op: Op::Set {
                path: "/metadata/labels/istio-injection".into(),
                from: Some("enabled".into()),
                to: None,
            },
        };
        let patch = serde_json::to_value(c.json_patch("now")).unwrap();
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[1]["op"], "remove");
    }
}
