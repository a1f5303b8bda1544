//! One cluster's facts, read from its snapshot alone: who it is (cluster id, network, role),
//! then its objects by kind (see the sibling modules).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::control_planes::{control_planes, own_cluster_id};
use super::endpoints::{self, node_localities, EndpointCounter, NodeLocalities};
use super::federation::{federation_facts, FederationFacts};
use super::gateways::gateways;
use super::mesh_config::{mesh_settings, MeshSettings};
use super::namespaces;
use super::objects::label;
use super::wiring::{control_plane_clusters, injector, remote_wiring, Injector};
use crate::topology::clock::unix_secs;
use crate::topology::istio::*;
use crate::topology::model::*;
use crate::topology::snapshot::{ClusterSnapshot, Connection};

pub use super::endpoints::{ClusterService, Localities};

/// One cluster's facts, read from its snapshot alone.
#[derive(Clone, Debug)]
pub struct ClusterFacts {
    pub context: String,
    pub display_name: Option<String>,
    pub connection: Connection,
    /// Ever live: placed in a mesh; else listed as not connected.
    pub reached: bool,
    /// What could not be read, by topic.
    pub notes: BTreeMap<String, String>,
    pub last_update: Option<u64>,
    pub cluster_id: String,
    pub network: Option<String>,
    pub mesh_id: Option<String>,
    pub trust_domain: Option<String>,
    pub role: ClusterRole,
    pub region: Option<String>,
    pub control_planes: Vec<ControlPlane>,
    pub gateways: Vec<Gateway>,
    pub namespaces: Arc<Vec<ClusterNamespace>>,
    /// Tenant Services, sorted by namespace and name; shared while they do not change.
    pub services: Arc<Vec<ClusterService>>,
    pub endpoints_ready: u64,
    pub endpoints_total: u64,
    pub wiring: Option<RemoteWiring>,
    /// `meshNetworks` of this primary: network → cluster ids listed `fromRegistry`.
    pub mesh_networks: BTreeMap<String, Vec<String>>,
    /// `serviceSettings` hosts marked clusterLocal (plus the built-ins); primaries only.
    pub cluster_local_hosts: Vec<String>,
    pub injected_workloads: Arc<Vec<String>>,
    /// Trust, exports, imports and policies (see `federation`).
    pub federation: Arc<FederationFacts>,
    /// Problems found while reading this cluster's objects (malformed ConfigMaps, ...).
    pub problems: Vec<(Severity, String)>,
}

/// Reads one cluster's snapshot. Pure and independent of every other cluster.
pub fn cluster_facts(s: &ClusterSnapshot) -> ClusterFacts {
    ClusterReader::default().read(s)
}

/// The cluster id a sidecar was injected with, when nothing else names the cluster.
fn proxy_cluster_id(s: &ClusterSnapshot) -> Option<String> {
    s.pods.values().find_map(|p| {
        let spec = p.spec.as_ref()?;
        spec.containers
            .iter()
            .filter(|c| c.name == PROXY_CONTAINER)
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == ENV_PROXY_CLUSTER_ID)
            .and_then(|e| e.value.clone())
    })
}

/// A part of a cluster's facts with the versions of the kinds it was read from.
struct Memo<K, T> {
    key: Option<K>,
    value: Option<Arc<T>>,
    /// Bumped on every read, so parts read from this one can name the version they used.
    generation: u64,
}

impl<K, T> Default for Memo<K, T> {
    fn default() -> Self {
        Memo {
            key: None,
            value: None,
            generation: 0,
        }
    }
}

impl<K: PartialEq, T> Memo<K, T> {
    /// The part read at `key`, reading it again only when `key` changed.
    fn get(&mut self, key: K, read: impl FnOnce() -> T) -> Arc<T> {
        match &self.value {
            Some(v) if self.key.as_ref() == Some(&key) => v.clone(),
            _ => {
                let v = Arc::new(read());
                self.generation += 1;
                self.key = Some(key);
                self.value = Some(v.clone());
                v
            }
        }
    }
}

/// Deployments, istiod probes, Secrets, ConfigMaps, webhooks versions; cluster id; gateways
/// generation.
type ControlPlanesKey = (u64, u64, u64, u64, u64, String, u64);

/// Who a cluster is: its cluster id and network.
struct Identity {
    cluster_id: String,
    network: Option<String>,
}

/// Reads a cluster's snapshot again and again, re-reading only the kinds of object that
/// changed since (one endpoint change recounts one EndpointSlice and nothing else).
#[derive(Default)]
pub(super) struct ClusterReader {
    settings: Memo<u64, MeshSettings>,
    injector: Memo<u64, Option<Injector>>,
    nodes: Memo<u64, NodeLocalities>,
    identity: Memo<(u64, u64, u64, u64, u64, u64), Identity>,
    gateways: Memo<(u64, u64, u64, Option<String>), Vec<Gateway>>,
    control_planes: Memo<ControlPlanesKey, Vec<ControlPlane>>,
    wiring: Memo<(u64, u64, u64, u64), RemoteWiring>,
    namespaces: Memo<(u64, u64, u64), Vec<ClusterNamespace>>,
    with_health: Memo<(u64, Vec<Health>), Vec<ClusterNamespace>>,
    injected: Memo<(u64, u64), Vec<String>>,
    federation: Memo<(u64, u64, u64, u64), FederationFacts>,
    endpoints: EndpointCounter,
}

impl ClusterReader {
    pub fn read(&mut self, s: &ClusterSnapshot) -> ClusterFacts {
        let k = s.kinds;
        let settings = self.settings.get(k.config_maps, || mesh_settings(s));
        let injector = self.injector.get(k.webhooks, || injector(s));
        let nodes = self.nodes.get(k.nodes, || node_localities(s));

        let identity_key = (
            k.deployments,
            k.webhooks,
            k.pods,
            k.namespaces,
            k.services,
            k.identity,
        );
        let identity = self.identity.get(identity_key, || {
            let cluster_id = s
                .cluster_id_override
                .clone()
                .or_else(|| own_cluster_id(s))
                .or_else(|| injector.as_ref().as_ref().and_then(|i| i.cluster_id()))
                .or_else(|| proxy_cluster_id(s))
                .unwrap_or_else(|| s.context.clone());
            // Network: the system namespace label; else an east-west gateway's; else the
            // webhook URL.
            let network = s
                .namespaces
                .get(&(String::new(), SYSTEM_NAMESPACE.to_string()))
                .and_then(|n| label(&n.metadata, LABEL_NETWORK))
                .map(str::to_string)
                .or_else(|| {
                    s.services
                        .values()
                        .find_map(|svc| label(&svc.metadata, LABEL_NETWORK).map(str::to_string))
                })
                .or_else(|| injector.as_ref().as_ref().and_then(|i| i.network()));
            Identity {
                cluster_id,
                network,
            }
        });

        let gateways_key = (
            k.services,
            k.pods,
            k.gateway_probes,
            identity.network.clone(),
        );
        let gateways = self
            .gateways
            .get(gateways_key, || gateways(s, identity.network.as_deref()));
        let cp_key = (
            k.deployments,
            k.istiod_probes,
            k.secrets,
            k.config_maps,
            k.webhooks,
            identity.cluster_id.clone(),
            // Where each control plane is exposed follows the gateways.
            self.gateways.generation,
        );
        let control_planes = self.control_planes.get(cp_key, || {
            control_planes(s, &identity.cluster_id, &settings, &gateways)
        });
        let role = if control_planes.iter().any(|cp| !cp.external) {
            ClusterRole::Primary
        } else if !control_planes.is_empty() {
            ClusterRole::ExternalControlPlane
        } else if injector.is_some() || control_plane_clusters(s).is_some() {
            ClusterRole::Remote
        } else {
            ClusterRole::Unknown
        };
        // How this cluster reaches its control plane (remotes; harmless on primaries).
        let wiring = (role != ClusterRole::Primary && role != ClusterRole::Unknown).then(|| {
            let key = (k.namespaces, k.services, k.endpoint_slices, k.webhooks);
            (*self
                .wiring
                .get(key, || remote_wiring(s, injector.as_ref().as_ref())))
            .clone()
        });

        let tenant_namespaces = self
            .namespaces
            .get((k.namespaces, k.services, k.istio), || {
                namespaces::namespaces(s)
            });
        let services = self.endpoints.count(s, &nodes, self.nodes.generation);
        let healths = namespaces::healths(&tenant_namespaces, &services);
        let namespaces_key = (self.namespaces.generation, healths);
        let with_health = self.with_health.get(namespaces_key.clone(), || {
            namespaces::with_health(&tenant_namespaces, &namespaces_key.1)
        });
        let injected_workloads = self
            .injected
            .get((k.deployments, self.namespaces.generation), || {
                namespaces::injected_workloads(s, &tenant_namespaces)
            });
        let (endpoints_ready, endpoints_total) = endpoints::totals(&services);
        let federation = self
            .federation
            .get((k.config_maps, k.deployments, k.istio, k.services), || {
                federation_facts(s, &settings)
            });
        let mut problems = settings.problems.clone();
        problems.extend(federation.problems.iter().cloned());

        ClusterFacts {
            context: s.context.clone(),
            display_name: s.display_name.clone(),
            connection: s.connection.clone(),
            reached: s.reached,
            notes: s.notes.clone(),
            last_update: s.last_update.and_then(unix_secs),
            cluster_id: identity.cluster_id.clone(),
            network: identity.network.clone(),
            mesh_id: settings.mesh_id.clone(),
            trust_domain: settings.trust_domain.clone(),
            role,
            region: nodes.region.clone(),
            control_planes: (*control_planes).clone(),
            gateways: (*gateways).clone(),
            namespaces: with_health,
            services,
            endpoints_ready,
            endpoints_total,
            wiring,
            mesh_networks: settings.mesh_networks.clone(),
            cluster_local_hosts: settings.cluster_local_hosts.clone(),
            injected_workloads,
            federation,
            problems,
        }
    }
}
