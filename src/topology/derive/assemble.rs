//! Assembly of the model: who serves whom, which mesh and network each cluster is in, tenants,
//! services (through the join) and the health rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::cluster::ClusterFacts;
use super::join::{join_services, JoinCache, JoinMember};
use super::mesh_config::host_pattern_matches;
use crate::topology::health;
use crate::topology::istio::*;
use crate::topology::model::*;

/// A cluster with the mesh, network and findings it was placed in.
type Placed = (Cluster, Option<String>, Option<String>, Vec<Finding>);

/// Joins clusters: serving relations, meshes, networks, merged services and tenants.
pub fn assemble(facts: &[Arc<ClusterFacts>]) -> Topology {
    assemble_with(facts, &mut JoinCache::default())
}

/// [`assemble`] with the services of unchanged clusters reused from `cache`.
pub(super) fn assemble_with(facts: &[Arc<ClusterFacts>], cache: &mut JoinCache) -> Topology {
    let hosts = external_hosts(facts);
    let facts: Vec<Arc<ClusterFacts>> = facts
        .iter()
        .map(|f| {
            if !hosts.contains(f.context.as_str()) {
                return f.clone();
            }
            // It runs an istiod whose CLUSTER_ID is another cluster's: it hosts an external
            // control plane; its own cluster id is not known from the data.
            let mut host = (**f).clone();
            host.role = ClusterRole::ExternalControlPlane;
            host.cluster_id = f.context.clone();
            host.wiring = None;
            for cp in &mut host.control_planes {
                cp.external = true;
            }
            Arc::new(host)
        })
        .collect();
    let facts = facts.as_slice();
    // Control planes by the cluster id they configure.
    let id_to_context: HashMap<&str, &str> = facts
        .iter()
        .map(|f| (f.cluster_id.as_str(), f.context.as_str()))
        .collect();
    let all_cps: Vec<&ControlPlane> = facts.iter().flat_map(|f| f.control_planes.iter()).collect();

    let mut clusters: Vec<Placed> = Vec::new();
    for f in facts {
        let mut findings = Vec::new();
        let node = NodeId::cluster(&f.context);
        for (severity, message) in &f.problems {
            findings.push(Finding {
                severity: *severity,
                node: node.clone(),
                message: message.clone(),
            });
        }
        let served_by: Vec<String> = match f.role {
            ClusterRole::Primary => f
                .control_planes
                .iter()
                .filter(|cp| !cp.external)
                .map(|cp| cp.id.clone())
                .collect(),
            _ => served_by_remote(f, &all_cps, &id_to_context, &mut findings),
        };
        // Mesh and trust domain: a primary's own; a remote inherits from whoever serves it.
        let server_facts = served_by.first().and_then(|id| {
            facts
                .iter()
                .find(|o| o.control_planes.iter().any(|cp| &cp.id == id))
        });
        let trust_domain = f
            .trust_domain
            .clone()
            .or_else(|| server_facts.and_then(|o| o.trust_domain.clone()));
        let mesh_id = f
            .mesh_id
            .clone()
            .or_else(|| server_facts.and_then(|o| o.mesh_id.clone()))
            .or_else(|| trust_domain.clone());
        let network = f.network.clone().or_else(|| {
            facts.iter().find_map(|o| {
                o.mesh_networks
                    .iter()
                    .find(|(_, ids)| ids.contains(&f.cluster_id))
                    .map(|(net, _)| net.clone())
            })
        });
        let (endpoints_ready, endpoints_total) = (f.endpoints_ready, f.endpoints_total);
        let namespaces = f.namespaces.clone();
        let cluster = Cluster {
            name: f.context.clone(),
            display_name: f.display_name.clone(),
            cluster_id: f.cluster_id.clone(),
            role: f.role,
            health: Health::Unknown,
            served_by,
            connection: f.connection.clone(),
            notes: f.notes.clone(),
            last_update: f.last_update,
            region: f.region.clone(),
            control_planes: f.control_planes.clone(),
            gateways: f.gateways.clone(),
            namespaces,
            wiring: f.wiring.clone(),
            endpoints_ready,
            endpoints_total,
            injected_workloads: f.injected_workloads.clone(),
        };
        clusters.push((cluster, mesh_id, network, findings));
    }

    // Each cluster belongs to exactly one mesh, or to none: it is moved, not copied.
    let mut clusters: Vec<Option<Placed>> = clusters.into_iter().map(Some).collect();
    // A cluster never reached has no mesh: nothing it holds says which (and a guess would put
    // down clusters in a mesh of their own). It waits apart, with why.
    let mut not_connected = Vec::new();
    let mut loose_findings = Vec::new();
    for (slot, f) in clusters.iter_mut().zip(facts) {
        if f.reached {
            continue;
        }
        if let Some((mut cluster, _, _, findings)) = slot.take() {
            loose_findings.extend(findings);
            health::not_connected(&mut cluster, &mut loose_findings);
            not_connected.push(cluster);
        }
    }
    loose_findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.node.cmp(&b.node)));
    // While a cluster syncs, a control plane it runs may not be known yet.
    let any_connecting = facts.iter().any(|f| f.connection == Connection::Connecting);

    // Group into meshes (first appearance order) and networks (sorted).
    let mesh_of: Vec<Option<String>> = clusters
        .iter()
        .map(|c| {
            c.as_ref()
                .map(|(_, m, _, _)| m.clone().unwrap_or_else(|| "unknown".into()))
        })
        .collect();
    let mut mesh_order: Vec<&String> = Vec::new();
    for id in mesh_of.iter().flatten() {
        if !mesh_order.contains(&id) {
            mesh_order.push(id);
        }
    }
    let mut meshes = Vec::new();
    for mesh_id in mesh_order {
        let mesh_id = mesh_id.clone();
        let members: Vec<usize> = (0..clusters.len())
            .filter(|&i| mesh_of[i].as_ref() == Some(&mesh_id))
            .collect();
        let member_clusters: Vec<&Placed> = members
            .iter()
            .filter_map(|&i| clusters[i].as_ref())
            .collect();
        let trust_domain = members
            .iter()
            .zip(&member_clusters)
            .find_map(|(&i, c)| {
                facts[i]
                    .trust_domain
                    .clone()
                    .or_else(|| c.0.control_planes.first().map(|cp| cp.trust_domain.clone()))
            })
            .unwrap_or_else(|| "cluster.local".into());
        // Tenants: same-named namespaces (read before the clusters move into networks).
        let mut tenants: BTreeMap<String, Vec<TenantCluster>> = BTreeMap::new();
        for c in &member_clusters {
            let cluster = &c.0;
            for ns in cluster.namespaces.iter() {
                tenants
                    .entry(ns.name.clone())
                    .or_default()
                    .push(TenantCluster {
                        cluster: cluster.name.clone(),
                        injection: ns.injection.clone(),
                        revision: ns.revision.clone(),
                        services: ns.services.len() as u32,
                        authorization_policies: ns.authorization_policies,
                        peer_authentication: ns.peer_authentication.clone(),
                    });
            }
        }
        let tenants: Vec<Tenant> = tenants
            .into_iter()
            .map(|(namespace, clusters)| Tenant {
                namespace,
                clusters,
            })
            .collect();

        // Services: same namespace + name in several clusters = one service, except hosts the
        // mesh config (read from the primaries) keeps cluster-local. Keys are borrowed and
        // names shared, so a re-derivation allocates per service, not per endpoint group.
        let cluster_local: BTreeSet<&str> = members
            .iter()
            .flat_map(|&i| facts[i].cluster_local_hosts.iter().map(String::as_str))
            .collect();
        let joined: Vec<JoinMember> = members
            .iter()
            .zip(&member_clusters)
            .map(|(&i, c)| JoinMember {
                facts: facts[i].clone(),
                cluster: Arc::from(facts[i].context.as_str()),
                network: Arc::from(c.2.as_deref().unwrap_or("unknown")),
            })
            .collect();
        let cluster_local_owned: BTreeSet<String> =
            cluster_local.iter().map(|s| s.to_string()).collect();
        let mut join = join_services(cache.meshes.remove(&mesh_id), joined, cluster_local_owned);

        drop(member_clusters);
        let mut findings = Vec::new();
        let mut networks: BTreeMap<String, Vec<Cluster>> = BTreeMap::new();
        for &i in &members {
            let Some((cluster, _, network, cluster_findings)) = clusters[i].take() else {
                continue;
            };
            findings.extend(cluster_findings);
            networks
                .entry(network.unwrap_or_else(|| "unknown".into()))
                .or_default()
                .push(cluster);
        }
        let networks: Vec<Network> = networks
            .into_iter()
            .map(|(name, clusters)| Network {
                name,
                clusters,
                reachable: false,
                health: Health::Unknown,
            })
            .collect();

        // A service is judged again only when its endpoints (a new `Joined`) or the rules
        // changed: a re-derivation does not walk every service's endpoints.
        let rules = health::ServiceRules::new(&mesh_id, &networks, &tenants);
        if join.rules != rules {
            for j in join.groups.values_mut() {
                j.judged = None;
            }
            join.rules = rules;
        }
        let domains = [trust_domain.as_str(), "cluster.local"];
        let mut service_findings = Vec::new();
        // Whether a service is cluster-local is decided once per service, then remembered.
        let services = join
            .groups
            .values_mut()
            .filter_map(|j| {
                let local = *j.cluster_local.get_or_insert_with(|| {
                    cluster_local
                        .iter()
                        .any(|p| host_pattern_matches(p, &j.name, &j.namespace, &domains))
                });
                if local {
                    return None;
                }
                let mut service = Service {
                    namespace: j.namespace.clone(),
                    name: j.name.clone(),
                    endpoints: j.groups.clone(),
                    health: Health::Unknown,
                };
                let (health, found) = j.judged.get_or_insert_with(|| {
                    let mut found = Vec::new();
                    health::service(&mut service, &join.rules, &mut found);
                    (service.health, found)
                });
                service.health = *health;
                service_findings.extend(found.iter().cloned());
                Some(service)
            })
            .collect();
        cache.meshes.insert(mesh_id.clone(), join);

        let mut mesh = Mesh {
            id: mesh_id,
            trust_domain,
            networks,
            services,
            tenants,
            findings,
            health: Health::Unknown,
        };
        health::mesh(&mut mesh, service_findings, any_connecting);
        meshes.push(mesh);
    }
    // Expiry is judged as of the latest data, so the same snapshots give the same model.
    let now = facts
        .iter()
        .filter_map(|f| f.last_update)
        .max()
        .unwrap_or(0);
    let federation = super::federation::federate(facts, &mut meshes, now);
    Topology {
        meshes,
        not_connected,
        findings: loose_findings,
        federation,
    }
}

/// Clusters that run an istiod whose `CLUSTER_ID` names another cluster of the kubeconfig, one
/// without a control plane of its own: hosts of an external control plane.
fn external_hosts(facts: &[Arc<ClusterFacts>]) -> BTreeSet<&str> {
    facts
        .iter()
        .filter(|f| f.role == ClusterRole::Primary)
        .filter(|f| {
            facts.iter().any(|o| {
                o.context != f.context
                    && o.cluster_id == f.cluster_id
                    && o.control_planes.iter().all(|cp| cp.external)
            })
        })
        .map(|f| f.context.as_str())
        .collect()
}

/// Which control planes serve a remote or externally controlled cluster.
fn served_by_remote(
    f: &ClusterFacts,
    all_cps: &[&ControlPlane],
    id_to_context: &HashMap<&str, &str>,
    findings: &mut Vec<Finding>,
) -> Vec<String> {
    // An external control plane names this cluster as its CLUSTER_ID.
    let external: Vec<String> = all_cps
        .iter()
        .filter(|cp| cp.external && cp.cluster_id == f.cluster_id)
        .map(|cp| cp.id.clone())
        .collect();
    if !external.is_empty() {
        return external;
    }
    let Some(wiring) = &f.wiring else {
        return Vec::new();
    };
    let revision = wiring
        .istiod_service
        .as_deref()
        .and_then(|n| n.strip_prefix("istiod-"))
        .unwrap_or("default");
    let by_annotation: Vec<String> = wiring
        .control_plane_clusters
        .iter()
        .flat_map(|id| {
            // An external istiod serves the remotes its config cluster's secrets name too.
            all_cps.iter().filter(move |cp| {
                (id == "*" || &cp.cluster_id == id)
                    && id_to_context.contains_key(cp.cluster_id.as_str())
            })
        })
        .filter(|cp| cp.revision == revision)
        .map(|cp| cp.id.clone())
        .collect();
    let by_address: Vec<String> = wiring
        .istiod_address
        .as_ref()
        .map(|addr| {
            all_cps
                .iter()
                .filter(|cp| cp.exposed_at.as_ref() == Some(addr) && cp.revision == revision)
                .map(|cp| cp.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if !by_annotation.is_empty()
        && !by_address.is_empty()
        && !by_address.iter().any(|id| by_annotation.contains(id))
    {
        findings.push(Finding {
            severity: Severity::Error,
            node: NodeId::cluster(&f.context),
            message: format!(
                "Service {}/{} points at {} ({}) but {} names {}",
                wiring.system_namespace,
                wiring.istiod_service.as_deref().unwrap_or("istiod"),
                wiring.istiod_address.as_deref().unwrap_or("?"),
                by_address.join(", "),
                ANNOTATION_CONTROL_PLANE_CLUSTERS,
                wiring.control_plane_clusters.join(",")
            ),
        });
    }
    if by_annotation.is_empty() {
        by_address
    } else {
        by_annotation
    }
}
