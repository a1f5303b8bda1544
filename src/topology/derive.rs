//! Pure derivation: snapshots (raw objects + probe results) in, [`Topology`] out.
//!
//! Two stages. `cluster_facts` reads one cluster's objects and is cached per snapshot version,
//! so one endpoint change re-reads one cluster only. `assemble` joins the clusters: who serves
//! whom, which mesh and network each cluster is in, services merged by namespace sameness.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::health;
use super::model::*;
use super::snapshot::{ClusterSnapshot, Connection, ProbeHistory, Store};

pub const SYSTEM_NAMESPACE: &str = "istio-system";
pub const LABEL_NETWORK: &str = "topology.istio.io/network";
pub const ANNOTATION_CONTROL_PLANE_CLUSTERS: &str = "topology.istio.io/controlPlaneClusters";
pub const LABEL_REV: &str = "istio.io/rev";
pub const LABEL_INJECTION: &str = "istio-injection";
pub const LABEL_MULTICLUSTER: &str = "istio/multiCluster";

/// Namespaces that hold infrastructure, not tenants.
const INFRA_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    "istio-ingress",
    "istio-gateways",
    "external-istiod",
    "local-path-storage",
];

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

/// locality → (ready, not ready)
pub type Localities = BTreeMap<Arc<str>, (u32, u32)>;

/// A cluster with the mesh, network and findings it was placed in.
type Placed = (Cluster, Option<String>, Option<String>, Vec<Finding>);

/// One Service in one cluster with its endpoints grouped by locality.
#[derive(Clone, Debug)]
pub struct ClusterService {
    pub namespace: String,
    pub name: String,
    /// locality → (ready, not ready)
    pub localities: Localities,
}

/// Derives the topology from scratch. Pure: same snapshots, same model.
pub fn derive(store: &Store) -> Topology {
    Deriver::default().derive(store)
}

/// Endpoints of one EndpointSlice counted per locality, remembered with the slice version and
/// the locality version they were computed at.
#[derive(Clone, Debug)]
struct SliceCounts {
    slice_version: u64,
    locality_version: u64,
    counts: Vec<(Arc<str>, u32, u32)>,
}

/// Per-slice counts of one cluster, so one endpoint change recounts one slice.
#[derive(Default)]
pub struct SliceCache {
    slices: HashMap<(String, String), SliceCounts>,
}

/// Keeps per-cluster facts between derivations, keyed by snapshot version, and per-slice
/// endpoint counts within each cluster.
#[derive(Default)]
pub struct Deriver {
    cache: HashMap<String, (u64, Arc<ClusterFacts>)>,
    slices: HashMap<String, SliceCache>,
    join: JoinCache,
}

impl Deriver {
    pub fn derive(&mut self, store: &Store) -> Topology {
        let mut facts = Vec::with_capacity(store.clusters.len());
        for snapshot in &store.clusters {
            let cached = self
                .cache
                .get(&snapshot.context)
                .filter(|(version, _)| *version == snapshot.version)
                .map(|(_, f)| f.clone());
            let f = match cached {
                Some(f) => f,
                None => {
                    let slices = self.slices.entry(snapshot.context.clone()).or_default();
                    let f = Arc::new(cluster_facts_cached(snapshot, slices));
                    self.cache
                        .insert(snapshot.context.clone(), (snapshot.version, f.clone()));
                    f
                }
            };
            facts.push(f);
        }
        self.cache
            .retain(|context, _| store.clusters.iter().any(|c| &c.context == context));
        self.slices
            .retain(|context, _| store.clusters.iter().any(|c| &c.context == context));
        assemble_with(&facts, &mut self.join)
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespace(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

fn container_env(deployment: &Deployment, var: &str) -> Option<String> {
    let spec = deployment.spec.template.spec.as_ref()?;
    spec.containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == var)
        .and_then(|e| e.value.clone())
}

fn image_tag(deployment: &Deployment) -> Option<String> {
    let spec = deployment.spec.template.spec.as_ref()?;
    let image = spec.containers.first()?.image.as_ref()?;
    let tag = image.rsplit_once(':')?.1;
    (!tag.contains('/')).then(|| tag.to_string())
}

/// Settings read from the `mesh` key of ConfigMap `istio[-<rev>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeshConfig {
    trust_domain: Option<String>,
    default_config: Option<ProxyConfig>,
    #[serde(default)]
    service_settings: Vec<ServiceSetting>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyConfig {
    mesh_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSetting {
    #[serde(default)]
    settings: ServiceSettingFlags,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSettingFlags {
    #[serde(default)]
    cluster_local: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct MeshNetworks {
    #[serde(default)]
    networks: BTreeMap<String, MeshNetwork>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct MeshNetwork {
    #[serde(default)]
    endpoints: Vec<MeshNetworkEndpoint>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeshNetworkEndpoint {
    from_registry: Option<String>,
}

thread_local! {
    /// Parsed mesh configs by their text: the same ConfigMap is not re-parsed on every
    /// endpoint change. A memo of a pure function, so derivation stays pure.
    static MESH_CONFIGS: RefCell<HashMap<String, Result<MeshConfig, String>>> = RefCell::new(HashMap::new());
    static MESH_NETWORKS: RefCell<HashMap<String, Result<MeshNetworks, String>>> = RefCell::new(HashMap::new());
}

/// Parses YAML through a per-thread memo keyed by the text.
fn memo_parse<T: Clone + serde::de::DeserializeOwned>(
    memo: &'static std::thread::LocalKey<RefCell<HashMap<String, Result<T, String>>>>,
    text: &str,
) -> Result<T, String> {
    memo.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(parsed) = memo.get(text) {
            return parsed.clone();
        }
        let parsed = serde_yaml::from_str::<T>(text).map_err(|e| e.to_string());
        if memo.len() > 64 {
            memo.clear();
        }
        memo.insert(text.to_string(), parsed.clone());
        parsed
    })
}

fn parse_mesh_networks(text: &str) -> Result<MeshNetworks, String> {
    memo_parse(&MESH_NETWORKS, text)
}

fn parse_mesh_config(text: &str) -> Result<MeshConfig, String> {
    memo_parse(&MESH_CONFIGS, text)
}

/// Whether `<name>.<ns>.svc.<domain>` matches a host pattern, for any of `domains`, without
/// building the host string.
fn host_pattern_matches(pattern: &str, name: &str, ns: &str, domains: &[&str]) -> bool {
    domains.iter().any(|domain| {
        let parts = [name, ".", ns, ".svc.", domain];
        match pattern.strip_prefix('*') {
            // Suffix match: compare from the end, part by part.
            Some(suffix) => {
                let total: usize = parts.iter().map(|p| p.len()).sum();
                if suffix.len() > total {
                    return false;
                }
                let mut rest = suffix;
                for part in parts.iter().rev() {
                    if rest.is_empty() {
                        return true;
                    }
                    let take = part.len().min(rest.len());
                    if !part.ends_with(&rest[rest.len() - take..]) {
                        return false;
                    }
                    rest = &rest[..rest.len() - take];
                }
                rest.is_empty()
            }
            None => {
                let mut rest = pattern;
                for part in parts {
                    match rest.strip_prefix(part) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
        }
    })
}

/// Reads one cluster's snapshot. Pure and independent of every other cluster.
pub fn cluster_facts(s: &ClusterSnapshot) -> ClusterFacts {
    cluster_facts_cached(s, &mut SliceCache::default())
}

/// [`cluster_facts`] reusing the endpoint counts of slices that did not change.
fn cluster_facts_cached(s: &ClusterSnapshot, slice_cache: &mut SliceCache) -> ClusterFacts {
    let mut problems = Vec::new();
    let system_ns = s
        .namespaces
        .get(&(String::new(), SYSTEM_NAMESPACE.to_string()));

    // Mesh-wide settings from ConfigMap istio (any revision); the default revision wins.
    let mut trust_domain = None;
    let mut mesh_id = None;
    let mut cluster_local_hosts: Vec<String> = vec![
        "*.kube-system.svc.cluster.local".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    let mut mesh_networks = BTreeMap::new();
    let mut mesh_config_by_ns: HashMap<String, String> = HashMap::new();
    for ((ns, cm_name), cm) in &s.config_maps {
        if cm_name != "istio" && !cm_name.starts_with("istio-") {
            continue;
        }
        let Some(data) = cm.data.as_ref() else {
            continue;
        };
        if cm_name == "istio" || (cm_name.starts_with("istio-") && data.contains_key("mesh")) {
            if let Some(text) = data.get("mesh") {
                match parse_mesh_config(text) {
                    Ok(mc) => {
                        let td = mc.trust_domain.unwrap_or_else(|| "cluster.local".into());
                        if cm_name == "istio" || trust_domain.is_none() {
                            trust_domain = Some(td.clone());
                        }
                        mesh_config_by_ns.entry(ns.clone()).or_insert(td);
                        if let Some(id) = mc.default_config.and_then(|d| d.mesh_id) {
                            if cm_name == "istio" || mesh_id.is_none() {
                                mesh_id = Some(id);
                            }
                        }
                        for setting in mc.service_settings {
                            if setting.settings.cluster_local {
                                cluster_local_hosts.extend(setting.hosts);
                            }
                        }
                    }
                    Err(e) => problems.push((
                        Severity::Error,
                        format!(
                            "ConfigMap {ns}/{cm_name}: key `mesh` is not valid mesh config: {e}"
                        ),
                    )),
                }
            }
            if let Some(text) = data.get("meshNetworks") {
                match parse_mesh_networks(text) {
                    Ok(mn) => {
                        for (net, n) in mn.networks {
                            let ids = n.endpoints.into_iter().filter_map(|e| e.from_registry);
                            mesh_networks
                                .entry(net)
                                .or_insert_with(Vec::new)
                                .extend(ids);
                        }
                    }
                    Err(e) => problems.push((
                        Severity::Error,
                        format!("ConfigMap {ns}/{cm_name}: key `meshNetworks` is malformed: {e}"),
                    )),
                }
            }
        }
        if mesh_id.is_none() && cm_name.starts_with("istio-sidecar-injector") {
            if let Some(values) = data.get("values") {
                match serde_json::from_str::<serde_json::Value>(values) {
                    Ok(v) => {
                        mesh_id = v["global"]["meshID"].as_str().map(str::to_string);
                    }
                    Err(e) => problems.push((
                        Severity::Warning,
                        format!("ConfigMap {ns}/{cm_name}: key `values` is not JSON: {e}"),
                    )),
                }
            }
        }
    }

    let root_cert = s
        .config_maps
        .get(&(
            SYSTEM_NAMESPACE.to_string(),
            "istio-ca-root-cert".to_string(),
        ))
        .and_then(|cm| cm.data.as_ref()?.get("root-cert.pem").cloned())
        .map(|pem| fingerprint(pem.as_bytes()));

    // Control planes: every app=istiod Deployment.
    let istiods: Vec<&Deployment> = s
        .deployments
        .values()
        .filter(|d| label(&d.metadata, "app") == Some("istiod"))
        .collect();
    let own_istiod = istiods
        .iter()
        .find(|d| namespace(&d.metadata) == SYSTEM_NAMESPACE);

    // Injector webhook (URL-based on remotes and external control planes).
    let injector = s
        .webhooks
        .values()
        .filter(|w| {
            let n = name(&w.metadata);
            n == "istio-sidecar-injector" || n.starts_with("istio-sidecar-injector-")
        })
        .find_map(|w| {
            let hooks = w.webhooks.as_ref()?;
            let url = hooks.iter().find_map(|h| h.client_config.url.clone())?;
            let count = hooks
                .iter()
                .take_while(|h| h.client_config.url.is_some())
                .count();
            Some((name(&w.metadata), url, count))
        });
    let url_cluster_id = injector.as_ref().and_then(|(_, url, _)| {
        let rest = url.split("/inject/cluster/").nth(1)?;
        Some(rest.split('/').next()?.to_string())
    });
    let url_network = injector.as_ref().and_then(|(_, url, _)| {
        let rest = url.split("/net/").nth(1)?;
        Some(rest.split('/').next()?.to_string())
    });

    let proxy_cluster_id = s.pods.values().find_map(|p| {
        let spec = p.spec.as_ref()?;
        spec.containers
            .iter()
            .filter(|c| c.name == "istio-proxy")
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == "ISTIO_META_CLUSTER_ID")
            .and_then(|e| e.value.clone())
    });

    let cluster_id = own_istiod
        .map(|d| container_env(d, "CLUSTER_ID").unwrap_or_else(|| "Kubernetes".into()))
        .or(url_cluster_id)
        .or(proxy_cluster_id)
        .unwrap_or_else(|| s.context.clone());

    // Nodes give localities and the region.
    let node_locality: FxHashMap<&str, Arc<str>> = s
        .nodes
        .values()
        .filter_map(|n| {
            let region = label(&n.metadata, "topology.kubernetes.io/region").unwrap_or("");
            let zone = label(&n.metadata, "topology.kubernetes.io/zone").unwrap_or("");
            let subzone = label(&n.metadata, "topology.istio.io/subzone");
            let mut loc = format!("{region}/{zone}");
            if let Some(sz) = subzone {
                loc.push('/');
                loc.push_str(sz);
            }
            Some((n.metadata.name.as_deref()?, Arc::from(loc)))
        })
        .collect();
    let unknown_locality: Arc<str> = Arc::from("unknown");
    let region = s
        .nodes
        .values()
        .find_map(|n| label(&n.metadata, "topology.kubernetes.io/region"))
        .map(str::to_string);
    // Only pods that override their locality need a lookup (the store keeps that index).
    let pod_locality: FxHashMap<(&str, &str), &str> = s
        .pod_localities
        .iter()
        .map(|((ns, name), loc)| ((ns.as_str(), name.as_str()), loc.as_str()))
        .collect();

    // Network: the system namespace label; else an east-west gateway's; else the webhook URL.
    let network = system_ns
        .and_then(|n| label(&n.metadata, LABEL_NETWORK))
        .map(str::to_string)
        .or_else(|| {
            s.services
                .values()
                .find_map(|svc| label(&svc.metadata, LABEL_NETWORK).map(str::to_string))
        })
        .or(url_network);

    // Gateways.
    let mut gateways = Vec::new();
    for ((ns, svc_name), svc) in &s.services {
        let istio_label = label(&svc.metadata, "istio").unwrap_or("");
        let kind = if istio_label.contains("eastwest") {
            GatewayKind::EastWest
        } else if istio_label.contains("ingress") {
            GatewayKind::Ingress
        } else if istio_label.contains("egress") {
            GatewayKind::Egress
        } else {
            continue;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        let pods: Vec<&Pod> = if selector.is_empty() {
            Vec::new()
        } else {
            s.pods
                .range((ns.clone(), String::new())..)
                .take_while(|((pns, _), _)| pns == ns)
                .map(|(_, p)| p)
                .filter(|p| {
                    let labels = p.metadata.labels.as_ref();
                    selector
                        .iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                })
                .collect()
        };
        let ready_pods = pods.iter().filter(|p| pod_ready(p)).count() as u32;
        let address = svc
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|ing| ing.iter().find_map(|i| i.ip.clone().or(i.hostname.clone())))
            .or_else(|| {
                spec.external_ips
                    .as_ref()
                    .and_then(|ips| ips.first().cloned())
            });
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        let probe = s
            .gateway_probes
            .get(&format!("{ns}/{svc_name}"))
            .map(|p| p.ready);
        let exposes_istiod = ports.contains(&15012) && ports.contains(&15017);
        let gw_network = label(&svc.metadata, LABEL_NETWORK)
            .map(str::to_string)
            .or_else(|| network.clone())
            .unwrap_or_default();
        let mut gw = Gateway {
            id: format!("{}/{ns}/{svc_name}", s.context),
            name: svc_name.clone(),
            namespace: ns.clone(),
            cluster: s.context.clone(),
            kind,
            network: gw_network,
            ready_pods,
            pods: pods.len() as u32,
            address,
            ports,
            probe,
            exposes_istiod,
            healthy: false,
            health: Health::Unknown,
        };
        health::gateway(&mut gw);
        gateways.push(gw);
    }

    // Control planes.
    let mut control_planes = Vec::new();
    for d in &istiods {
        let ns = namespace(&d.metadata);
        let dep_name = name(&d.metadata);
        let cp_cluster_id = container_env(d, "CLUSTER_ID").unwrap_or_else(|| "Kubernetes".into());
        let revision = label(&d.metadata, LABEL_REV)
            .unwrap_or("default")
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
            revision,
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
            external_istiod: container_env(d, "EXTERNAL_ISTIOD").as_deref() == Some("true"),
            external,
            exposed_at: None,
            trust_domain: mesh_config_by_ns
                .get(&ns)
                .cloned()
                .or_else(|| trust_domain.clone())
                .unwrap_or_else(|| "cluster.local".into()),
            root_cert: root_cert.clone(),
            probe_error: latest.and_then(|p| p.error.clone()),
            health: Health::Unknown,
        };
        cp.ready = cp.ready_replicas > 0 && latest.and_then(|p| p.ready) != Some(false);
        cp.exposed_at = gateways
            .iter()
            .find(|g| g.exposes_istiod && !external)
            .and_then(|g| g.address.clone());
        health::control_plane(&mut cp);
        control_planes.push(cp);
    }
    control_planes.sort_by(|a, b| a.id.cmp(&b.id));

    let role = if control_planes.iter().any(|cp| !cp.external) {
        ClusterRole::Primary
    } else if !control_planes.is_empty() {
        ClusterRole::ExternalControlPlane
    } else if injector.is_some()
        || system_ns
            .map(|n| annotation(&n.metadata, ANNOTATION_CONTROL_PLANE_CLUSTERS).is_some())
            .unwrap_or(false)
    {
        ClusterRole::Remote
    } else {
        ClusterRole::Unknown
    };

    // How this cluster reaches its control plane (remotes; harmless on primaries).
    let wiring = (role != ClusterRole::Primary && role != ClusterRole::Unknown)
        .then(|| remote_wiring(s, injector.clone()));

    // Namespaces (tenants).
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
            labels.get("istio.io/dataplane-mode").map(String::as_str),
        ) {
            (Some(v), _, _) => v.to_string(),
            (None, Some(r), _) => format!("rev:{r}"),
            (None, None, Some("ambient")) => "ambient".into(),
            _ => "none".into(),
        };
        let services: Vec<String> = s
            .services
            .range((ns_name.clone(), String::new())..)
            .take_while(|((sns, _), _)| sns == ns_name)
            .map(|((_, n), _)| n.clone())
            .collect();
        let authz = s
            .istio_of_kind("AuthorizationPolicy")
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

    // Services and their endpoints, grouped by locality.
    // Keys borrow from the snapshot; names are copied once, into the result.
    let mut services: BTreeMap<(&str, &str), Localities> = s
        .services
        .keys()
        .filter(|(ns, _)| !INFRA_NAMESPACES.contains(&ns.as_str()))
        .map(|(ns, name)| ((ns.as_str(), name.as_str()), BTreeMap::new()))
        .collect();
    slice_cache
        .slices
        .retain(|key, _| s.endpoint_slices.contains_key(key));
    for (key, slice) in &s.endpoint_slices {
        let Some(svc_name) = label(&slice.metadata, "kubernetes.io/service-name") else {
            continue;
        };
        let ns = slice.metadata.namespace.as_deref().unwrap_or("");
        let Some(localities) = services.get_mut(&(ns, svc_name)) else {
            continue;
        };
        let slice_version = s.slice_versions.get(key).copied().unwrap_or(0);
        if let Some(cached) = slice_cache.slices.get(key).filter(|c| {
            c.slice_version == slice_version && c.locality_version == s.locality_version
        }) {
            for (locality, r, n) in &cached.counts {
                let c = localities.entry(locality.clone()).or_insert((0, 0));
                c.0 += r;
                c.1 += n;
            }
            continue;
        }
        // Count per locality with shared keys first: no allocation per endpoint.
        let mut counts: Vec<(Arc<str>, u32, u32)> = Vec::new();
        for ep in slice.endpoints.iter().flatten() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let pod_loc = ep
                .target_ref
                .as_ref()
                .and_then(|r| pod_locality.get(&(r.namespace.as_deref()?, r.name.as_deref()?)));
            let locality: Arc<str> = match pod_loc {
                Some(l) => Arc::from(*l),
                None => match ep.node_name.as_deref().and_then(|n| node_locality.get(n)) {
                    Some(l) => l.clone(),
                    None => match &ep.zone {
                        Some(z) => Arc::from(format!("?/{z}")),
                        None => unknown_locality.clone(),
                    },
                },
            };
            let (r, n) = if ready { (1, 0) } else { (0, 1) };
            match counts.iter_mut().find(|(l, _, _)| *l == locality) {
                Some(c) => {
                    c.1 += r;
                    c.2 += n;
                }
                None => counts.push((locality, r, n)),
            }
        }
        for (locality, r, n) in &counts {
            let c = localities.entry(locality.clone()).or_insert((0, 0));
            c.0 += r;
            c.1 += n;
        }
        slice_cache.slices.insert(
            key.clone(),
            SliceCounts {
                slice_version,
                locality_version: s.locality_version,
                counts,
            },
        );
    }

    // A namespace is as healthy as its services' endpoints in this cluster.
    for ns in &mut namespaces {
        ns.health = services
            .range((ns.name.as_str(), "")..)
            .take_while(|((sns, _), _)| *sns == ns.name)
            .map(|(_, localities)| health::endpoints(localities.values()))
            .fold(Health::Healthy, Health::worst);
    }

    let injected_workloads: Vec<String> = s
        .deployments
        .values()
        .filter(|d| {
            let ns = d.metadata.namespace.as_deref().unwrap_or("");
            namespaces
                .iter()
                .any(|n| n.name == ns && n.injection != "none" && n.injection != "disabled")
        })
        .map(|d| format!("{}/{}", namespace(&d.metadata), name(&d.metadata)))
        .collect();

    let (endpoints_ready, endpoints_total) = services
        .values()
        .flat_map(|localities| localities.values())
        .fold((0u64, 0u64), |(r, t), (ready, not)| {
            (r + u64::from(*ready), t + u64::from(*ready + *not))
        });

    ClusterFacts {
        context: s.context.clone(),
        connection: s.connection.clone(),
        last_update: s
            .last_update
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        cluster_id,
        network,
        mesh_id,
        trust_domain,
        role,
        region,
        control_planes,
        gateways,
        namespaces: Arc::new(namespaces),
        services: services
            .into_iter()
            .map(|((namespace, name), localities)| ClusterService {
                namespace: namespace.to_string(),
                name: name.to_string(),
                localities,
            })
            .collect(),
        endpoints_ready,
        endpoints_total,
        wiring,
        mesh_networks,
        cluster_local_hosts,
        injected_workloads: Arc::new(injected_workloads),
        problems,
    }
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
                status: r.sync_status.clone(),
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
                status: "unknown".into(),
                secret,
            })
            .collect(),
    }
}

fn remote_wiring(s: &ClusterSnapshot, injector: Option<(String, String, usize)>) -> RemoteWiring {
    let system_ns = s
        .namespaces
        .get(&(String::new(), SYSTEM_NAMESPACE.to_string()));
    let control_plane_clusters = system_ns
        .and_then(|n| annotation(&n.metadata, ANNOTATION_CONTROL_PLANE_CLUSTERS))
        .map(|v| {
            v.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let istiod = s
        .services
        .range((SYSTEM_NAMESPACE.to_string(), String::new())..)
        .take_while(|((ns, _), _)| ns == SYSTEM_NAMESPACE)
        .find(|((_, n), _)| n == "istiod" || n.starts_with("istiod-"))
        .map(|((_, n), svc)| (n.clone(), svc));
    let (istiod_service, istiod_address, address_kind) = match istiod {
        Some((svc_name, svc)) => {
            let spec = svc.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() == Some("ExternalName") {
                (
                    Some(svc_name),
                    spec.external_name,
                    Some("ExternalName".into()),
                )
            } else {
                let slice = s.endpoint_slices.values().find(|sl| {
                    sl.metadata.namespace.as_deref() == Some(SYSTEM_NAMESPACE)
                        && label(&sl.metadata, "kubernetes.io/service-name") == Some(&svc_name)
                });
                let addr =
                    slice.and_then(|sl| sl.endpoints.as_ref()?.first()?.addresses.first().cloned());
                (Some(svc_name), addr, slice.map(|_| "EndpointSlice".into()))
            }
        }
        None => (None, None, None),
    };
    RemoteWiring {
        istiod_service,
        istiod_address,
        address_kind,
        injector_webhook: injector.as_ref().map(|(n, _, _)| n.clone()),
        injector_hooks: injector.as_ref().map(|(_, _, c)| *c).unwrap_or(0),
        injector_url: injector.map(|(_, u, _)| u),
        control_plane_clusters,
        system_namespace: SYSTEM_NAMESPACE.into(),
    }
}

fn peer_auth_mode(s: &ClusterSnapshot, ns: &str) -> Option<String> {
    s.istio_of_kind("PeerAuthentication")
        .filter(|o| o.metadata.namespace.as_deref() == Some(ns))
        .find(|o| o.data["spec"]["selector"].is_null())
        .and_then(|o| o.data["spec"]["mtls"]["mode"].as_str().map(str::to_string))
}

/// FNV-1a, hex: compares root certificates without keeping them.
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Joins clusters: serving relations, meshes, networks, merged services and tenants.
pub fn assemble(facts: &[Arc<ClusterFacts>]) -> Topology {
    assemble_with(facts, &mut JoinCache::default())
}

/// One member cluster of a mesh, as the service join sees it.
#[derive(Clone)]
struct JoinMember {
    facts: Arc<ClusterFacts>,
    cluster: Arc<str>,
    network: Arc<str>,
}

/// One merged service as the join keeps it: shared names, whether the mesh config keeps it
/// cluster-local, and its endpoint groups.
#[derive(Clone)]
struct Joined {
    namespace: Arc<str>,
    name: Arc<str>,
    cluster_local: Option<bool>,
    groups: Arc<Vec<EndpointGroup>>,
}

impl Joined {
    fn new(ns: &str, name: &str, groups: Vec<EndpointGroup>) -> Joined {
        Joined {
            namespace: Arc::from(ns),
            name: Arc::from(name),
            cluster_local: None,
            groups: Arc::new(groups),
        }
    }
}

/// A mesh's merged services, kept between derivations.
struct MeshJoin {
    members: Vec<JoinMember>,
    cluster_local: BTreeSet<String>,
    groups: BTreeMap<(String, String), Joined>,
}

/// The merged services of every mesh, so a change in one cluster re-merges only the services
/// that cluster has (or had).
#[derive(Default)]
pub struct JoinCache {
    meshes: HashMap<String, MeshJoin>,
}

/// The endpoint groups of one service across the members, in member order.
fn groups_for(ns: &str, name: &str, members: &[JoinMember]) -> Option<Vec<EndpointGroup>> {
    let mut found = false;
    let mut groups = Vec::new();
    for m in members {
        let services = &m.facts.services;
        let Ok(i) =
            services.binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(ns, name)))
        else {
            continue;
        };
        found = true;
        for (locality, (ready, not_ready)) in &services[i].localities {
            groups.push(EndpointGroup {
                cluster: m.cluster.clone(),
                network: m.network.clone(),
                locality: locality.clone(),
                ready: *ready,
                not_ready: *not_ready,
            });
        }
    }
    found.then_some(groups)
}

/// Services merged by namespace sameness. Reuses `previous` when the same clusters sit in the
/// same networks: only services of clusters whose facts changed are merged again.
fn join_services(
    previous: Option<MeshJoin>,
    members: Vec<JoinMember>,
    cluster_local: BTreeSet<String>,
) -> MeshJoin {
    let same_shape = |p: &MeshJoin| {
        p.cluster_local == cluster_local
            && p.members.len() == members.len()
            && p.members
                .iter()
                .zip(&members)
                .all(|(a, b)| a.facts.context == b.facts.context && a.network == b.network)
    };
    match previous.filter(same_shape) {
        Some(mut join) => {
            let mut affected: BTreeSet<(&str, &str)> = BTreeSet::new();
            for (old, new) in join.members.iter().zip(&members) {
                if Arc::ptr_eq(&old.facts, &new.facts) {
                    continue;
                }
                for s in old.facts.services.iter().chain(new.facts.services.iter()) {
                    affected.insert((s.namespace.as_str(), s.name.as_str()));
                }
            }
            let changed: Vec<usize> = (0..members.len())
                .filter(|&k| !Arc::ptr_eq(&join.members[k].facts, &members[k].facts))
                .collect();
            if let [k] = changed[..] {
                // One cluster changed (the common case): splice its groups into each affected
                // service instead of merging all members again.
                let position: HashMap<&str, usize> = members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (&*m.cluster, i))
                    .collect();
                for (ns, name) in affected {
                    let key = (ns.to_string(), name.to_string());
                    let mut fresh = groups_for(ns, name, std::slice::from_ref(&members[k]));
                    let present_here = fresh.is_some();
                    let old = join.groups.get(&key).map(|j| &j.groups);
                    let mut groups = Vec::with_capacity(old.map(|o| o.len()).unwrap_or(0) + 4);
                    for g in old.iter().flat_map(|o| o.iter()) {
                        let at = position.get(&*g.cluster).copied().unwrap_or(usize::MAX);
                        if at == k {
                            continue;
                        }
                        if at > k {
                            groups.extend(fresh.take().into_iter().flatten());
                        }
                        groups.push(g.clone());
                    }
                    groups.extend(fresh.take().into_iter().flatten());
                    // Without groups elsewhere the service may still exist (no endpoints).
                    let exists = present_here
                        || !groups.is_empty()
                        || groups_for(ns, name, &members).is_some();
                    if exists {
                        join.groups.insert(key, Joined::new(ns, name, groups));
                    } else {
                        join.groups.remove(&key);
                    }
                }
                join.members = members;
                return join;
            }
            for (ns, name) in affected {
                let key = (ns.to_string(), name.to_string());
                match groups_for(ns, name, &members) {
                    Some(groups) => {
                        join.groups.insert(key, Joined::new(ns, name, groups));
                    }
                    None => {
                        join.groups.remove(&key);
                    }
                }
            }
            join.members = members;
            join
        }
        None => {
            let mut keys: BTreeSet<(&str, &str)> = BTreeSet::new();
            for m in &members {
                for s in &m.facts.services {
                    keys.insert((s.namespace.as_str(), s.name.as_str()));
                }
            }
            let groups = keys
                .into_iter()
                .filter_map(|(ns, name)| {
                    let groups = groups_for(ns, name, &members)?;
                    Some((
                        (ns.to_string(), name.to_string()),
                        Joined::new(ns, name, groups),
                    ))
                })
                .collect();
            MeshJoin {
                members,
                cluster_local,
                groups,
            }
        }
    }
}

/// [`assemble`] with the services of unchanged clusters reused from `cache`.
fn assemble_with(facts: &[Arc<ClusterFacts>], cache: &mut JoinCache) -> Topology {
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
        let connection = f.connection.label().to_string();
        let error = f.connection.reason().map(str::to_string);
        let namespaces = f.namespaces.clone();
        let cluster = Cluster {
            name: f.context.clone(),
            cluster_id: f.cluster_id.clone(),
            role: f.role,
            status: Health::Unknown,
            served_by,
            connection,
            error,
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

    // Group into meshes (first appearance order) and networks (sorted).
    let mut mesh_order: Vec<String> = Vec::new();
    for (_, mesh_id, _, _) in &clusters {
        let id = mesh_id.clone().unwrap_or_else(|| "unknown".into());
        if !mesh_order.contains(&id) {
            mesh_order.push(id);
        }
    }
    let mut meshes = Vec::new();
    let mesh_of: Vec<String> = clusters
        .iter()
        .map(|(_, m, _, _)| m.clone().unwrap_or_else(|| "unknown".into()))
        .collect();
    // Each cluster belongs to exactly one mesh: it is moved, not copied, into that mesh.
    let mut clusters: Vec<Option<_>> = clusters.into_iter().map(Some).collect();
    for mesh_id in mesh_order {
        let members: Vec<usize> = (0..clusters.len())
            .filter(|&i| mesh_of[i] == mesh_id)
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
        let tenants = tenants
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
        let domains = [trust_domain.as_str(), "cluster.local"];
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
                (!local).then(|| Service {
                    namespace: j.namespace.clone(),
                    name: j.name.clone(),
                    endpoints: j.groups.clone(),
                    health: Health::Unknown,
                })
            })
            .collect();
        cache.meshes.insert(mesh_id.clone(), join);

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

        let mut mesh = Mesh {
            id: mesh_id,
            trust_domain,
            networks,
            services,
            tenants,
            findings,
            health: Health::Unknown,
        };
        health::mesh(&mut mesh);
        meshes.push(mesh);
    }
    Topology { meshes }
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
            all_cps.iter().filter(move |cp| {
                !cp.external
                    && (id == "*" || &cp.cluster_id == id)
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

#[cfg(test)]
mod host_tests {
    use super::host_pattern_matches;

    /// The plain reading of `*.kube-system.svc.cluster.local` style patterns.
    fn host_matches(pattern: &str, host: &str) -> bool {
        match pattern.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix),
            None => pattern == host,
        }
    }

    #[test]
    fn structured_host_match_agrees_with_the_string_match() {
        let patterns = [
            "*.kube-system.svc.cluster.local",
            "kubernetes.default.svc.cluster.local",
            "*.svc.cluster.local",
            "*cache.internal.svc.cluster.local",
            "cache.internal.svc.example.org",
            "*",
            "*.local",
            "*x",
        ];
        let services = [
            ("cache", "internal"),
            ("kubernetes", "default"),
            ("dns", "kube-system"),
            ("api", "payments"),
        ];
        for p in patterns {
            for (name, ns) in services {
                for domains in [
                    ["cluster.local", "cluster.local"],
                    ["example.org", "cluster.local"],
                ] {
                    let expected = domains
                        .iter()
                        .any(|d| host_matches(p, &format!("{name}.{ns}.svc.{d}")));
                    assert_eq!(
                        host_pattern_matches(p, name, ns, &domains),
                        expected,
                        "{p} {name}.{ns} {domains:?}"
                    );
                }
            }
        }
    }
}
