//! A failover is a plan: the exact object changes, computed purely from the topology, that can
//! be printed, checked, applied, audited and inverted.

use serde::{Deserialize, Serialize};

use crate::topology::istio::{
    ANNOTATION_CONTROL_PLANE_CLUSTERS, DEFAULT_REVISION, LABEL_INJECTION, LABEL_REV,
};
use crate::topology::model::{Cluster, ClusterRole, ControlPlane, Injection, SyncStatus, Topology};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The JSON pointer this change writes.
    pub fn path(&self) -> String {
        match &self.op {
            Op::Set { path, .. } => path.clone(),
            Op::Restart => format!(
                "/spec/template/metadata/annotations/{}",
                pointer_escape(RESTARTED_AT)
            ),
        }
    }

    /// The RFC 6902 patch for the object as it is now (`before`): a `test` of the old value
    /// first, so a change made by someone else in the meantime fails the step instead of being
    /// overwritten; missing parent maps are created; with `guard`, also a `test` of the
    /// object's resourceVersion (nothing else changed since `before` was read).
    pub fn patch(&self, before: &serde_json::Value, now: &str, guard: bool) -> json_patch::Patch {
        use serde_json::json;
        let mut ops = Vec::new();
        if guard {
            if let Some(rv) = before.pointer("/metadata/resourceVersion") {
                ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
            }
        }
        let path = self.path();
        let (from, to) = match &self.op {
            Op::Set { from, to, .. } => (from.clone(), to.clone()),
            Op::Restart => (None, Some(now.to_string())),
        };
        if to.is_some() {
            // Parents that do not exist yet (e.g. the first annotation of an object).
            let segments: Vec<&str> = path.split('/').skip(1).collect();
            let mut prefix = String::new();
            for segment in &segments[..segments.len().saturating_sub(1)] {
                prefix.push('/');
                prefix.push_str(segment);
                if before.pointer(&prefix).is_none() {
                    ops.push(json!({"op": "add", "path": prefix, "value": {}}));
                }
            }
        }
        if let (Op::Set { .. }, Some(from)) = (&self.op, &from) {
            ops.push(json!({"op": "test", "path": path, "value": from}));
        }
        // `replace` where the value exists: `add` at an array index would insert beside it.
        match (&to, before.pointer(&path).is_some()) {
            (Some(to), true) => ops.push(json!({"op": "replace", "path": path, "value": to})),
            (Some(to), false) => ops.push(json!({"op": "add", "path": path, "value": to})),
            (None, true) => ops.push(json!({"op": "remove", "path": path})),
            (None, false) => {}
        }
        serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default()
    }

    /// The value this change expects to find before it writes (`None`: absent; a restart
    /// expects nothing).
    pub fn expects(&self) -> Option<Option<&str>> {
        match &self.op {
            Op::Set { from, .. } => Some(from.as_deref()),
            Op::Restart => None,
        }
    }

    /// The value this change leaves (`None`: absent); a restart leaves a new timestamp.
    pub fn leaves(&self) -> Option<Option<&str>> {
        match &self.op {
            Op::Set { to, .. } => Some(to.as_deref()),
            Op::Restart => None,
        }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Point a remote cluster at another primary's control plane.
    RepointRemote,
    /// Move a cluster's namespaces to another revision.
    SwitchRevision,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

    /// Printable form for `--dry-run`.
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
/// `namespaces` limits a revision switch to those namespaces of a primary.
pub fn plan(
    topology: &Topology,
    subject: &Subject,
    target: Option<&str>,
    namespaces: Option<&[String]>,
) -> Result<Plan, String> {
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
    if target.id == current.id {
        return Err(format!("{} already serves {}", target.id, cluster.name));
    }
    match cluster.role {
        ClusterRole::Primary => switch_revision(cluster, current, target, namespaces),
        ClusterRole::Remote | ClusterRole::ExternalControlPlane if namespaces.is_some() => {
            Err(format!(
                "{} is a {}: its namespaces cannot move one by one (namespaces apply to a revision switch on a primary)",
                cluster.name,
                cluster.role.label()
            ))
        }
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
        match (wiring.address_kind.as_deref(), &wiring.istiod_slice) {
            (Some("ExternalName"), _) => changes.push(Change {
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
            (Some("EndpointSlice"), Some(slice)) => changes.push(Change {
                cluster: cluster.name.clone(),
                kind: "EndpointSlice".into(),
                namespace: Some(ns.clone()),
                name: slice.clone(),
                op: Op::Set {
                    path: "/endpoints/0/addresses/0".into(),
                    from: wiring.istiod_address.clone(),
                    to: Some(new_address.clone()),
                },
            }),
            (other, _) => {
                return Err(format!(
                    "Service {ns}/{svc}: repointing an address of kind {} is not supported yet",
                    other.unwrap_or("unknown")
                ))
            }
        }
    }
    // The API server calls the injector: the target's own injector URL when its cluster calls
    // it by URL, else its east-west gateway on the webhook port.
    let injector_base = target
        .injector_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{new_address}:{INJECTOR_PORT}"));
    for hook in &wiring.hooks {
        let new_url = replace_base(&hook.url, &injector_base);
        if new_url == hook.url {
            continue;
        }
        changes.push(Change {
            cluster: cluster.name.clone(),
            kind: "MutatingWebhookConfiguration".into(),
            namespace: None,
            name: hook.configuration.clone(),
            op: Op::Set {
                path: format!("/webhooks/{}/clientConfig/url", hook.index),
                from: Some(hook.url.clone()),
                to: Some(new_url),
            },
        });
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

/// istiod's webhook port, where an east-west gateway exposes the injector.
const INJECTOR_PORT: u16 = 15017;

/// `https://host:15017/inject/...` with another `scheme://host:port`, path kept.
fn replace_base(url: &str, base: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path_start = rest.find('/').unwrap_or(rest.len());
    format!("{}{}", base.trim_end_matches('/'), &rest[path_start..])
}

fn switch_revision(
    cluster: &Cluster,
    current: &ControlPlane,
    target: &ControlPlane,
    only: Option<&[String]>,
) -> Result<Plan, String> {
    if let Some(only) = only {
        for wanted in only {
            if !cluster.namespaces.iter().any(|ns| &ns.name == wanted) {
                return Err(format!("{} has no namespace {wanted}", cluster.name));
            }
        }
    }
    let mut changes = Vec::new();
    let mut moved = Vec::new();
    for ns in cluster.namespaces.iter() {
        if only.is_some_and(|o| !o.contains(&ns.name)) {
            continue;
        }
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
    if let Some(only) = only {
        if let Some(other) = only.iter().find(|n| !moved.contains(n)) {
            return Err(format!(
                "namespace {other} of {} is not served by revision {}",
                cluster.name, current.revision
            ));
        }
    }
    if moved.is_empty() {
        return Err(format!(
            "no namespace of {} uses revision {}",
            cluster.name, current.revision
        ));
    }
    changes.extend(restarts(cluster, Some(&moved)));
    Ok(Plan {
        kind: PlanKind::SwitchRevision,
        cluster: cluster.name.clone(),
        cluster_id: cluster.cluster_id.clone(),
        from: current.id.clone(),
        to: target.id.clone(),
        changes,
        undo_of: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_replaced_and_path_kept() {
        assert_eq!(
            replace_base(
                "https://eastwest.east-1.example:15017/inject/cluster/east-2/net/network-east",
                "https://eastwest.west-1.example:15017"
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
        let before = serde_json::json!({"metadata": {"labels": {"istio-injection": "enabled"}}});
        let patch = serde_json::to_value(c.patch(&before, "now", false)).unwrap();
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[1]["op"], "remove");
        assert_eq!(patch.as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_array_element_is_replaced_not_inserted() {
        let c = Change {
            cluster: "c".into(),
            kind: "EndpointSlice".into(),
            namespace: Some("istio-system".into()),
            name: "istiod".into(),
            op: Op::Set {
                path: "/endpoints/0/addresses/0".into(),
                from: Some("192.0.2.10".into()),
                to: Some("192.0.2.12".into()),
            },
        };
        let mut doc = serde_json::json!({"endpoints": [{"addresses": ["192.0.2.10"]}]});
        let patch = c.patch(&doc.clone(), "now", false);
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc["endpoints"][0]["addresses"],
            serde_json::json!(["192.0.2.12"])
        );
    }

    #[test]
    fn patch_creates_missing_parents_and_guards_the_version() {
        let c = Change {
            cluster: "c".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "istio-system".into(),
            op: Op::Set {
                path: "/metadata/annotations/topology.istio.io~1controlPlaneClusters".into(),
                from: None,
                to: Some("primary".into()),
            },
        };
        let before =
            serde_json::json!({"metadata": {"name": "istio-system", "resourceVersion": "7"}});
        let patch = c.patch(&before, "now", true);
        let mut doc = before.clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc["metadata"]["annotations"]["topology.istio.io/controlPlaneClusters"],
            "primary"
        );
        // Someone else wrote the object since it was read: the guard refuses.
        let mut moved = before.clone();
        moved["metadata"]["resourceVersion"] = "8".into();
        assert!(json_patch::patch(&mut moved, &patch).is_err());
    }
}
