//! Tenant namespaces as one cluster has them: injection, revision, services, policies. Reads
//! namespaces, Services and Istio security resources.

use super::endpoints::ClusterService;
use super::objects::{name, namespace};
use crate::topology::health;
use crate::topology::istio::*;
use crate::topology::model::{ClusterNamespace, Health, Injection, NodeId};
use crate::topology::snapshot::ClusterSnapshot;

/// The tenant namespaces, their health still unknown (see [`with_health`]).
pub(super) fn namespaces(s: &ClusterSnapshot) -> Vec<ClusterNamespace> {
    let mut namespaces = Vec::new();
    let mesh_peer_auth = peer_auth_mode(s, SYSTEM_NAMESPACE).map(|m| format!("{m} (mesh)"));
    for ((_, ns_name), ns) in &s.namespaces {
        if INFRA_NAMESPACES.contains(&ns_name.as_str()) {
            continue;
        }
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let revision = labels.get(LABEL_REV).cloned();
        let injection = match (
            labels.get(LABEL_INJECTION).map(String::as_str),
            revision.as_deref(),
            labels.get(LABEL_DATAPLANE_MODE).map(String::as_str),
        ) {
            (Some("enabled"), _, _) => Injection::Enabled,
            (Some("disabled"), _, _) => Injection::Disabled,
            (Some(v), _, _) => Injection::Other(v.to_string()),
            (None, Some(r), _) => Injection::Revision(r.to_string()),
            (None, None, Some("ambient")) => Injection::Ambient,
            _ => Injection::None,
        };
        let services: Vec<String> = s
            .services
            .range((ns_name.clone(), String::new())..)
            .take_while(|((sns, _), _)| sns == ns_name)
            .map(|((_, n), _)| n.clone())
            .collect();
        let authz = s
            .istio_of_kind(KIND_AUTHORIZATION_POLICY)
            .filter(|o| o.metadata.namespace.as_deref() == Some(ns_name))
            .count() as u32;
        namespaces.push(ClusterNamespace {
            id: NodeId::namespace(&s.context, ns_name),
            name: ns_name.clone(),
            // istio-injection beats istio.io/rev: the revision only counts without it.
            revision: if labels.contains_key(LABEL_INJECTION) {
                None
            } else {
                revision
            },
            injection,
            services,
            authorization_policies: authz,
            peer_authentication: peer_auth_mode(s, ns_name).or_else(|| mesh_peer_auth.clone()),
            health: Health::Unknown,
        });
    }
    namespaces
}

/// The health of each namespace: as healthy as its services' endpoints in this cluster.
/// `services` are sorted by namespace and name.
pub(super) fn healths(namespaces: &[ClusterNamespace], services: &[ClusterService]) -> Vec<Health> {
    namespaces
        .iter()
        .map(|ns| {
            let start = services.partition_point(|s| *s.namespace < *ns.name);
            Health::worst_of(
                services[start..]
                    .iter()
                    .take_while(|s| *s.namespace == *ns.name)
                    .map(|s| health::endpoints(s.localities.values())),
            )
        })
        .collect()
}

/// `namespaces` with the given healths.
pub(super) fn with_health(
    namespaces: &[ClusterNamespace],
    healths: &[Health],
) -> Vec<ClusterNamespace> {
    namespaces
        .iter()
        .zip(healths)
        .map(|(ns, h)| ClusterNamespace {
            health: *h,
            ..ns.clone()
        })
        .collect()
}

/// Workloads that would restart in a failover: `namespace/deployment` in injected namespaces.
/// Reads Deployments.
pub(super) fn injected_workloads(
    s: &ClusterSnapshot,
    namespaces: &[ClusterNamespace],
) -> Vec<String> {
    s.deployments
        .values()
        .filter(|d| {
            let ns = d.metadata.namespace.as_deref().unwrap_or("");
            namespaces
                .iter()
                .any(|n| n.name == ns && n.injection.injected())
        })
        .map(|d| format!("{}/{}", namespace(&d.metadata), name(&d.metadata)))
        .collect()
}

fn peer_auth_mode(s: &ClusterSnapshot, ns: &str) -> Option<String> {
    s.istio_of_kind(KIND_PEER_AUTHENTICATION)
        .filter(|o| o.metadata.namespace.as_deref() == Some(ns))
        .find(|o| o.data["spec"]["selector"].is_null())
        .and_then(|o| o.data["spec"]["mtls"]["mode"].as_str().map(str::to_string))
}
