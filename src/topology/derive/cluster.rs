//! One cluster's facts, read from its snapshot alone: who it is (cluster id, network, role),
//! then its objects by kind (see the sibling modules).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::control_planes::{control_planes, own_cluster_id};
use super::endpoints::{self, node_localities, EndpointCounter};
use super::gateways::gateways;
use super::mesh_config::mesh_settings;
use super::namespaces;
use super::objects::label;
use super::wiring::{control_plane_clusters, injector, remote_wiring};
use crate::topology::clock::unix_secs;
use crate::topology::istio::*;
use crate::topology::model::*;
use crate::topology::snapshot::{ClusterSnapshot, Connection};

pub use super::endpoints::{ClusterService, Localities};

/// One cluster's facts, read from its snapshot alone.
#[derive(Clone, Debug)]
pub struct ClusterFacts {
    pub context: String,
    pub connection: Connection,
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
    /// Tenant Services, sorted by namespace and name.
    pub services: Vec<ClusterService>,
    pub endpoints_ready: u64,
    pub endpoints_total: u64,
    pub wiring: Option<RemoteWiring>,
    /// `meshNetworks` of this primary: network → cluster ids listed `fromRegistry`.
    pub mesh_networks: BTreeMap<String, Vec<String>>,
    /// `serviceSettings` hosts marked clusterLocal (plus the built-ins); primaries only.
    pub cluster_local_hosts: Vec<String>,
    pub injected_workloads: Arc<Vec<String>>,
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

/// Reads a cluster's snapshot again and again, reusing what did not change.
#[derive(Default)]
pub(super) struct ClusterReader {
    endpoints: EndpointCounter,
}

impl ClusterReader {
    pub fn read(&mut self, s: &ClusterSnapshot) -> ClusterFacts {
        let settings = mesh_settings(s);
        let injector = injector(s);
        let nodes = node_localities(s);

        let cluster_id = own_cluster_id(s)
            .or_else(|| injector.as_ref().and_then(|i| i.cluster_id()))
            .or_else(|| proxy_cluster_id(s))
            .unwrap_or_else(|| s.context.clone());
        // Network: the system namespace label; else an east-west gateway's; else the webhook URL.
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
            .or_else(|| injector.as_ref().and_then(|i| i.network()));

        let gateways = gateways(s, network.as_deref());
        let control_planes = control_planes(s, &cluster_id, &settings, &gateways);
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
        let wiring = (role != ClusterRole::Primary && role != ClusterRole::Unknown)
            .then(|| remote_wiring(s, injector.as_ref()));

        let tenant_namespaces = namespaces::namespaces(s);
        let services = self.endpoints.count(s, &nodes);
        let healths = namespaces::healths(&tenant_namespaces, &services);
        let injected_workloads = namespaces::injected_workloads(s, &tenant_namespaces);
        let (endpoints_ready, endpoints_total) = endpoints::totals(&services);

        ClusterFacts {
            context: s.context.clone(),
            connection: s.connection.clone(),
            last_update: s.last_update.and_then(unix_secs),
            cluster_id,
            network,
            mesh_id: settings.mesh_id,
            trust_domain: settings.trust_domain,
            role,
            region: nodes.region,
            control_planes,
            gateways,
            namespaces: Arc::new(namespaces::with_health(&tenant_namespaces, &healths)),
            services,
            endpoints_ready,
            endpoints_total,
            wiring,
            mesh_networks: settings.mesh_networks,
            cluster_local_hosts: settings.cluster_local_hosts,
            injected_workloads: Arc::new(injected_workloads),
            problems: settings.problems,
        }
    }
}
