//! Control planes: every `app=istiod` Deployment, with what its probes say and the remote
//! clusters it manages. Reads Deployments, istiod probes and remote Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::mesh_config::MeshSettings;
use super::objects::{container_env, image_tag, label, name, namespace};
use crate::topology::health;
use crate::topology::istio::*;
use crate::topology::model::{ControlPlane, Gateway, Health, RemoteClusterSync, SyncStatus};
use crate::topology::snapshot::{ClusterSnapshot, ProbeHistory};

/// Every istiod Deployment of the cluster.
pub(super) fn istiods(s: &ClusterSnapshot) -> impl Iterator<Item = &Deployment> {
    s.deployments
        .values()
        .filter(|d| label(&d.metadata, LABEL_APP) == Some(ISTIOD_APP))
}

/// `CLUSTER_ID` of the istiod in the system namespace: the cluster id of a primary.
pub(super) fn own_cluster_id(s: &ClusterSnapshot) -> Option<String> {
    istiods(s)
        .find(|d| namespace(&d.metadata) == SYSTEM_NAMESPACE)
        .map(istiod_cluster_id)
}

fn istiod_cluster_id(d: &Deployment) -> String {
    container_env(d, ENV_CLUSTER_ID).unwrap_or_else(|| DEFAULT_CLUSTER_ID.into())
}

/// The control planes of one cluster, sorted by id. `gateways` tell where each is exposed.
pub(super) fn control_planes(
    s: &ClusterSnapshot,
    cluster_id: &str,
    settings: &MeshSettings,
    gateways: &[Gateway],
) -> Vec<ControlPlane> {
    let mut control_planes = Vec::new();
    for d in istiods(s) {
        let ns = namespace(&d.metadata);
        let dep_name = name(&d.metadata);
        let cp_cluster_id = istiod_cluster_id(d);
        let revision = label(&d.metadata, LABEL_REV)
            .unwrap_or(DEFAULT_REVISION)
            .to_string();
        let probe = s.istiod_probes.get(&format!("{ns}/{dep_name}"));
        let external = cp_cluster_id != cluster_id;
        let replicas = d.spec.replicas.unwrap_or(1);
        let ready_replicas = d
            .status
            .as_ref()
            .and_then(|st| st.ready_replicas)
            .unwrap_or(0);
        let mut remote_clusters = remote_clusters(s, &ns, &cp_cluster_id, probe);
        remote_clusters.sort_by(|a, b| a.id.cmp(&b.id));
        let latest = probe.map(|p| &p.latest);
        let metrics = latest.and_then(|p| p.metrics.as_ref());
        let push_rate = probe.and_then(|p| {
            let prev = p.previous.as_ref()?;
            let (m1, m0) = (p.latest.metrics.as_ref()?, prev.metrics.as_ref()?);
            let dt = p.latest.at_secs - prev.at_secs;
            (dt > 0.0).then(|| ((m1.pushes - m0.pushes).max(0.0)) / dt * 60.0)
        });
        let proxies_by_cluster = probe
            .map(|p| p.proxies_by_cluster.clone())
            .unwrap_or_default();
        let mut cp = ControlPlane {
            id: format!("{}/{ns}/{dep_name}", s.context),
            name: dep_name.clone(),
            namespace: ns.clone(),
            cluster: s.context.clone(),
            cluster_id: cp_cluster_id,
            revision: revision.clone(),
            ready: false,
            ready_replicas,
            replicas,
            version: latest
                .and_then(|p| p.version.clone())
                .or_else(|| image_tag(d)),
            connected_proxies: metrics.map(|m| m.xds_clients.max(0.0) as u64),
            push_rate,
            convergence_ms: metrics
                .filter(|m| m.convergence_count > 0.0)
                .map(|m| m.convergence_sum / m.convergence_count * 1000.0),
            remote_clusters,
            proxies_by_cluster,
            external_istiod: container_env(d, ENV_EXTERNAL_ISTIOD).as_deref() == Some("true"),
            external,
            exposed_at: None,
            injector_endpoint: (!external)
                .then(|| super::wiring::injector_endpoint(s, &revision))
                .flatten(),
            trust_domain: settings
                .trust_domain_by_namespace
                .get(&ns)
                .cloned()
                .or_else(|| settings.trust_domain.clone())
                .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.into()),
            root_cert: settings.root_cert.clone(),
            probe_error: latest.and_then(|p| p.error.clone()),
            health: Health::Unknown,
        };
        // Ready pods, and istiod itself says so: a probe that got no answer at all (an istiod
        // that hangs) does not count as ready; one not probed yet goes by its pods.
        cp.ready = cp.ready_replicas > 0
            && latest.is_none_or(|p| match p.ready {
                Some(ready) => ready,
                None => p.error.is_none(),
            });
        cp.exposed_at = gateways
            .iter()
            .find(|g| g.exposes_istiod && !external)
            .and_then(|g| g.address.clone());
        health::control_plane(&mut cp);
        control_planes.push(cp);
    }
    control_planes.sort_by(|a, b| a.id.cmp(&b.id));
    control_planes
}

/// Remote clusters an istiod manages: `/debug/clusterz` when probed, else the data keys of its
/// remote secrets (never their values).
fn remote_clusters(
    s: &ClusterSnapshot,
    ns: &str,
    own_id: &str,
    probe: Option<&ProbeHistory>,
) -> Vec<RemoteClusterSync> {
    let mut from_secrets: BTreeMap<String, String> = BTreeMap::new();
    for ((sns, secret_name), secret) in &s.secrets {
        if sns != ns || label(&secret.metadata, LABEL_MULTICLUSTER) != Some("true") {
            continue;
        }
        for key in secret.data.iter().flat_map(|d| d.keys()) {
            from_secrets.insert(key.clone(), secret_name.clone());
        }
    }
    match probe.and_then(|p| p.latest.clusterz.as_ref()) {
        Some(rows) => rows
            .iter()
            .filter(|r| r.id != own_id)
            .map(|r| RemoteClusterSync {
                id: r.id.clone(),
                status: SyncStatus::from_clusterz(&r.sync_status),
                secret: if r.secret_name.is_empty() {
                    from_secrets.get(&r.id).cloned().unwrap_or_default()
                } else {
                    r.secret_name.clone()
                },
            })
            .collect(),
        None => from_secrets
            .into_iter()
            .map(|(id, secret)| RemoteClusterSync {
                id,
                status: SyncStatus::Unknown,
                secret,
            })
            .collect(),
    }
}
