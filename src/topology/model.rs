//! The derived model: Mesh → Network → Cluster → {control planes, gateways, namespaces}, plus
//! mesh-wide services, tenants and findings. Plain data, serialisable as the `-o json` schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use super::federation::Federation;
pub use super::snapshot::Connection;

/// Health of any node. Always shown with a glyph, never by colour alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Down,
    #[default]
    Unknown,
}

impl Health {
    pub fn glyph(self) -> &'static str {
        match self {
            Health::Healthy => "✔",
            Health::Degraded => "▲",
            Health::Down => "✖",
            Health::Unknown => "?",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }

    /// The worst of several healths (see [`Health::worst`]); `Healthy` when there are none.
    pub fn worst_of(healths: impl IntoIterator<Item = Health>) -> Health {
        healths.into_iter().fold(Health::Healthy, Health::worst)
    }

    /// The worse of two healths; `Unknown` only wins over `Healthy`.
    pub fn worst(self, other: Health) -> Health {
        fn rank(h: Health) -> u8 {
            match h {
                Health::Healthy => 0,
                Health::Unknown => 1,
                Health::Degraded => 2,
                Health::Down => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn glyph(self) -> &'static str {
        match self {
            Severity::Info => "i",
            Severity::Warning => "▲",
            Severity::Error => "✖",
        }
    }
}

/// A broken multi-cluster rule, attached to the tree node it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A node id (see [`NodeId`]).
    pub node: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// Runs its own istiod.
    Primary,
    /// Served by a primary's istiod through that primary's east-west gateway.
    Remote,
    /// Configured by an istiod that runs outside it (external control plane).
    ExternalControlPlane,
    Unknown,
}

impl ClusterRole {
    pub fn label(self) -> &'static str {
        match self {
            ClusterRole::Primary => "primary",
            ClusterRole::Remote => "remote",
            ClusterRole::ExternalControlPlane => "external control plane",
            ClusterRole::Unknown => "unknown",
        }
    }
}

/// How an istiod's view of a remote cluster stands (`/debug/clusterz` `syncStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    Synced,
    Syncing,
    /// Not probed: known from a remote secret only.
    Unknown,
    /// Whatever else istiod says (`timeout`, `closed`, ...).
    Other(String),
}

impl SyncStatus {
    pub fn from_clusterz(status: &str) -> SyncStatus {
        match status {
            "synced" => SyncStatus::Synced,
            "syncing" => SyncStatus::Syncing,
            "unknown" => SyncStatus::Unknown,
            other => SyncStatus::Other(other.to_string()),
        }
    }

    pub fn label(&self) -> &str {
        match self {
            SyncStatus::Synced => "synced",
            SyncStatus::Syncing => "syncing",
            SyncStatus::Unknown => "unknown",
            SyncStatus::Other(s) => s,
        }
    }

    /// Neither synced nor simply not known: worth a warning.
    pub fn is_problem(&self) -> bool {
        !matches!(self, SyncStatus::Synced | SyncStatus::Unknown)
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for SyncStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteClusterSync {
    pub id: String,
    pub status: SyncStatus,
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlPlane {
    /// `<context>/<namespace>/<deployment>`, unique across the whole model.
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// Context of the cluster it runs in.
    pub cluster: String,
    /// `CLUSTER_ID` of the istiod: the cluster it configures.
    pub cluster_id: String,
    pub revision: String,
    pub ready: bool,
    pub ready_replicas: i32,
    pub replicas: i32,
    pub version: Option<String>,
    pub connected_proxies: Option<u64>,
    /// xDS pushes per minute between the two latest probes.
    pub push_rate: Option<f64>,
    /// Mean `pilot_proxy_convergence_time`, in milliseconds.
    pub convergence_ms: Option<f64>,
    pub remote_clusters: Vec<RemoteClusterSync>,
    /// Connected proxies per cluster id, from `/debug/syncz`.
    pub proxies_by_cluster: BTreeMap<String, u64>,
    /// Env `EXTERNAL_ISTIOD=true`: may serve remote clusters.
    pub external_istiod: bool,
    /// Runs outside the cluster it configures.
    pub external: bool,
    /// Address of the east-west gateway that exposes this istiod to remotes.
    pub exposed_at: Option<String>,
    /// `scheme://host:port` of its injector when its own cluster's webhook calls it by URL
    /// (an API server can reach it there); `None` when that webhook calls a Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injector_endpoint: Option<String>,
    pub trust_domain: String,
    pub root_cert: Option<String>,
    pub probe_error: Option<String>,
    pub health: Health,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayKind {
    EastWest,
    Ingress,
    Egress,
}

impl GatewayKind {
    pub fn label(self) -> &'static str {
        match self {
            GatewayKind::EastWest => "east-west",
            GatewayKind::Ingress => "ingress",
            GatewayKind::Egress => "egress",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// Context of the cluster it runs in.
    pub cluster: String,
    pub kind: GatewayKind,
    pub network: String,
    pub ready_pods: u32,
    pub pods: u32,
    pub address: Option<String>,
    pub ports: Vec<i32>,
    /// `GET :15021/healthz/ready`, when it could be asked.
    pub probe: Option<bool>,
    /// Exposes istiod (ports 15012 + 15017) to remote clusters.
    pub exposes_istiod: bool,
    pub healthy: bool,
    pub health: Health,
}

/// How a namespace's pods get a data plane.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Injection {
    /// `istio-injection=enabled`.
    Enabled,
    /// `istio-injection=disabled`.
    Disabled,
    /// `istio.io/rev=<r>` without `istio-injection`.
    Revision(String),
    /// `istio.io/dataplane-mode=ambient`.
    Ambient,
    /// No label.
    None,
    /// Another value of `istio-injection`.
    Other(String),
}

impl Injection {
    /// Whether the namespace's workloads carry a sidecar (and restart in a failover).
    pub fn injected(&self) -> bool {
        !matches!(self, Injection::None | Injection::Disabled)
    }
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Injection::Enabled => f.write_str("enabled"),
            Injection::Disabled => f.write_str("disabled"),
            Injection::Revision(r) => write!(f, "rev:{r}"),
            Injection::Ambient => f.write_str("ambient"),
            Injection::None => f.write_str("none"),
            Injection::Other(v) => f.write_str(v),
        }
    }
}

impl Serialize for Injection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A namespace as it is in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterNamespace {
    pub id: String,
    pub name: String,
    pub injection: Injection,
    pub revision: Option<String>,
    pub services: Vec<String>,
    pub authorization_policies: u32,
    pub peer_authentication: Option<String>,
    pub health: Health,
}

/// How a remote cluster finds its control plane; the facts a failover plan rewrites.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteWiring {
    /// Service `istiod[-rev]` in the system namespace.
    pub istiod_service: Option<String>,
    pub istiod_address: Option<String>,
    /// `ExternalName`, `EndpointSlice` or `Endpoints`.
    pub address_kind: Option<String>,
    /// The injector webhook and its URL, when URL-based.
    pub injector_webhook: Option<String>,
    pub injector_url: Option<String>,
    /// Webhooks in the injector configuration that carry that URL.
    pub injector_hooks: usize,
    /// Every URL-based injection webhook of the cluster (injector and revision tags): what a
    /// repoint rewrites.
    pub hooks: Vec<WebhookHook>,
    /// The EndpointSlice that gives a selector-less istiod Service its address.
    pub istiod_slice: Option<String>,
    /// Annotation `topology.istio.io/controlPlaneClusters` on the system namespace.
    pub control_plane_clusters: Vec<String>,
    pub system_namespace: String,
}

/// One webhook of a MutatingWebhookConfiguration that calls an injector by URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookHook {
    pub configuration: String,
    /// Position in the configuration's `webhooks` list.
    pub index: usize,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// The kubeconfig context.
    pub name: String,
    /// What the config file says to show instead of the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Istio's cluster id (`CLUSTER_ID`), which need not equal the context.
    pub cluster_id: String,
    pub role: ClusterRole,
    #[serde(rename = "status")]
    pub health: Health,
    /// Ids of the control planes that configure this cluster.
    pub served_by: Vec<String>,
    /// Shown in JSON as `connection` (its label) and `error` (its reason).
    #[serde(flatten, serialize_with = "connection_fields")]
    pub connection: Connection,
    /// What could not be read, by topic: that part of the cluster is missing.
    pub notes: BTreeMap<String, String>,
    /// Unix seconds of the latest fact from this cluster.
    pub last_update: Option<u64>,
    pub region: Option<String>,
    pub control_planes: Vec<ControlPlane>,
    pub gateways: Vec<Gateway>,
    /// Shared with the cached per-cluster facts: re-deriving does not copy them.
    pub namespaces: Arc<Vec<ClusterNamespace>>,
    pub wiring: Option<RemoteWiring>,
    pub endpoints_ready: u64,
    pub endpoints_total: u64,
    /// Workloads that would restart in a failover: `namespace/deployment` of injected workloads.
    pub injected_workloads: Arc<Vec<String>>,
}

fn connection_fields<S: Serializer>(c: &Connection, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("connection", c.label())?;
    map.serialize_entry("error", &c.reason())?;
    map.end()
}

impl Cluster {
    /// The name shown: the configured display name, else the context.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Network {
    pub name: String,
    pub clusters: Vec<Cluster>,
    /// Another network can send traffic here: a healthy east-west gateway with an address.
    pub reachable: bool,
    pub health: Health,
}

/// Endpoints of one service in one cluster and locality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointGroup {
    /// Context of the cluster. Shared, not copied: one service's groups repeat the same few
    /// names many times.
    pub cluster: Arc<str>,
    pub network: Arc<str>,
    pub locality: Arc<str>,
    pub ready: u32,
    pub not_ready: u32,
}

/// Same namespace + name in several clusters of one mesh = one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// Shared between derivations while the service does not change.
    pub endpoints: Arc<Vec<EndpointGroup>>,
    pub health: Health,
}

impl Service {
    pub fn ready(&self) -> u32 {
        self.endpoints.iter().map(|e| e.ready).sum()
    }
    pub fn total(&self) -> u32 {
        self.endpoints.iter().map(|e| e.ready + e.not_ready).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TenantCluster {
    /// Context of the cluster.
    pub cluster: String,
    pub injection: Injection,
    pub revision: Option<String>,
    pub services: u32,
    pub authorization_policies: u32,
    pub peer_authentication: Option<String>,
}

/// Same-named namespaces across the clusters of one mesh: one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub namespace: String,
    pub clusters: Vec<TenantCluster>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mesh {
    pub id: String,
    pub trust_domain: String,
    pub networks: Vec<Network>,
    pub services: Vec<Service>,
    pub tenants: Vec<Tenant>,
    pub findings: Vec<Finding>,
    pub health: Health,
}

impl Mesh {
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.networks.iter().flat_map(|n| n.clusters.iter())
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| (&*s.namespace, &*s.name).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.services[i])
    }

    /// The services of one namespace (a run of the sorted list), sorted by name.
    pub fn services_in(&self, namespace: &str) -> &[Service] {
        let start = self.services.partition_point(|s| &*s.namespace < namespace);
        let len = self.services[start..].partition_point(|s| &*s.namespace == namespace);
        &self.services[start..start + len]
    }

    pub fn tenant(&self, namespace: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.namespace == namespace)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Topology {
    pub meshes: Vec<Mesh>,
    /// Clusters never reached (never live), in kubeconfig order: nothing says which mesh they
    /// belong to, so they are in none until they answer. Their connection says why.
    pub not_connected: Vec<Cluster>,
    /// Findings about the not-connected clusters (they belong to no mesh).
    pub findings: Vec<Finding>,
    /// How the meshes trust each other and what crosses between them.
    pub federation: Federation,
}

impl Topology {
    /// Every cluster: those of the meshes, then the not-connected ones.
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.meshes
            .iter()
            .flat_map(|m| m.clusters())
            .chain(self.not_connected.iter())
    }

    pub fn cluster(&self, context: &str) -> Option<&Cluster> {
        self.clusters().find(|c| c.name == context)
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &ControlPlane> {
        self.clusters().flat_map(|c| c.control_planes.iter())
    }

    pub fn control_plane(&self, id: &str) -> Option<&ControlPlane> {
        self.control_planes().find(|cp| cp.id == id)
    }

    pub fn mesh_of_cluster(&self, context: &str) -> Option<&Mesh> {
        self.meshes
            .iter()
            .find(|m| m.clusters().any(|c| c.name == context))
    }

    /// Every finding: the meshes', then those of the not-connected clusters.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.meshes
            .iter()
            .flat_map(|m| m.findings.iter())
            .chain(self.findings.iter())
    }

    pub fn findings_for(&self, node: &str) -> impl Iterator<Item = &Finding> {
        let node = node.to_string();
        self.findings().filter(move |f| f.node == node)
    }
}

/// `parts` joined, allocated once (the tree builds an id per row; `format!` costs more).
fn concat(parts: &[&str]) -> String {
    let mut id = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        id.push_str(part);
    }
    id
}

/// Stable ids of tree nodes; findings point at them and the UI selects them.
pub struct NodeId;

impl NodeId {
    pub fn mesh(mesh: &str) -> String {
        format!("mesh:{mesh}")
    }
    pub fn network(mesh: &str, network: &str) -> String {
        format!("net:{mesh}/{network}")
    }
    pub fn cluster(context: &str) -> String {
        format!("cluster:{context}")
    }
    pub fn control_plane(id: &str) -> String {
        format!("cp:{id}")
    }
    pub fn gateway(id: &str) -> String {
        format!("gw:{id}")
    }
    pub fn namespace(context: &str, namespace: &str) -> String {
        concat(&["ns:", context, "/", namespace])
    }
    pub fn service(context: &str, namespace: &str, name: &str) -> String {
        concat(&["svc:", context, "/", namespace, "/", name])
    }
    pub fn mesh_service(mesh: &str, namespace: &str, name: &str) -> String {
        let mut id = String::new();
        NodeId::write_mesh_service(&mut id, mesh, namespace, name);
        id
    }
    /// [`NodeId::mesh_service`] into a reused buffer (the tree asks it for every service row).
    pub fn write_mesh_service(buf: &mut String, mesh: &str, namespace: &str, name: &str) {
        buf.clear();
        for part in ["msvc:", mesh, "/", namespace, "/", name] {
            buf.push_str(part);
        }
    }
    pub fn tenant(mesh: &str, namespace: &str) -> String {
        format!("tenant:{mesh}/{namespace}")
    }
    /// The group of the clusters never reached (one per model).
    pub fn not_connected() -> String {
        "unreached".to_string()
    }
    /// The federation node (one per model, above the pairs).
    pub fn federation() -> String {
        "fed".to_string()
    }
    /// A pair of meshes (in the order given; callers pass them sorted as the model lists them).
    pub fn federation_pair(a: &str, b: &str) -> String {
        format!("fedpair:{a}|{b}")
    }
    /// An import: a ServiceEntry (`namespace/name`) in a cluster of `mesh`.
    pub fn federation_import(mesh: &str, context: &str, service_entry: &str) -> String {
        format!("fedimp:{mesh}/{context}/{service_entry}")
    }
    /// The group node of a cluster's control planes (`cp`), gateways (`gw`) or namespaces (`ns`).
    pub fn group(kind: &str, context: &str) -> String {
        format!("grp:{kind}:{context}")
    }
    /// The context of a group node's id.
    pub fn group_context(id: &str) -> Option<&str> {
        id.strip_prefix("grp:")?.split_once(':').map(|(_, c)| c)
    }
    /// A cluster listed under the control plane that serves it.
    pub fn served(control_plane: &str, context: &str) -> String {
        format!("serves:{control_plane}:{context}")
    }
    /// The context of a served-cluster node's id.
    pub fn served_context(id: &str) -> Option<&str> {
        id.strip_prefix("serves:")?.rsplit_once(':').map(|(_, c)| c)
    }
    /// The context of a served-cluster node's id under one control plane.
    pub fn served_by_context<'a>(id: &'a str, control_plane: &str) -> Option<&'a str> {
        id.strip_prefix("serves:")?
            .strip_prefix(control_plane)?
            .strip_prefix(':')
    }

    /// A node id for people: `service payments/api`, `cluster east-2`, ...
    pub fn describe(id: &str) -> String {
        let (kind, rest) = id.split_once(':').unwrap_or((id, ""));
        let after_mesh = || {
            rest.split_once('/')
                .map(|(_, r)| r)
                .unwrap_or(rest)
                .to_string()
        };
        match kind {
            "mesh" => format!("mesh {rest}"),
            "net" => format!("network {}", after_mesh()),
            "cluster" => format!("cluster {rest}"),
            "cp" => format!("control plane {rest}"),
            "gw" => format!("gateway {rest}"),
            "msvc" => format!("service {}", after_mesh()),
            "tenant" => format!("tenant {}", after_mesh()),
            "unreached" => "not connected".to_string(),
            "fed" => "federation".to_string(),
            "fedpair" => format!("federation {}", rest.replace('|', " ⇄ ")),
            "fedimp" => {
                let mut parts = rest.splitn(3, '/');
                let (_, context, se) = (parts.next(), parts.next(), parts.next());
                format!("import {} in {}", se.unwrap_or(""), context.unwrap_or(""))
            }
            _ => id.to_string(),
        }
    }
}
