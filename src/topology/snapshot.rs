//! Raw facts per cluster: the latest Kubernetes objects a source saw and the latest istiod probe
//! results. Everything here is what a source reported, trimmed of managedFields and of every
//! Secret value; no conclusion is drawn here (that is `derive`'s job).

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use serde::{Deserialize, Serialize};

/// `(namespace, name)`; cluster-scoped objects use an empty namespace.
pub type ObjectKey = (String, String);

/// One Kubernetes object as a source reports it.
#[derive(Clone, Debug)]
pub enum KubeObject {
    Namespace(Namespace),
    Node(Node),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Deployment(Deployment),
    ConfigMap(ConfigMap),
    Secret(Secret),
    MutatingWebhook(MutatingWebhookConfiguration),
    /// Istio and Gateway API resources (AuthorizationPolicy, PeerAuthentication, Gateway, ...).
    Istio(DynamicObject),
}

/// The kinds a snapshot stores, used to address deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Namespace,
    Node,
    Pod,
    Service,
    EndpointSlice,
    Deployment,
    ConfigMap,
    Secret,
    MutatingWebhook,
    Istio,
}

impl KubeObject {
    /// Reads one object from its JSON/YAML form, dispatching on `kind` (fixtures, dumps).
    pub fn from_value(value: serde_json::Value) -> Result<KubeObject, String> {
        fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        let kind = value["kind"].as_str().unwrap_or("").to_string();
        let object = match kind.as_str() {
            "Namespace" => KubeObject::Namespace(parse(value)?),
            "Node" => KubeObject::Node(parse(value)?),
            "Pod" => KubeObject::Pod(parse(value)?),
            "Service" => KubeObject::Service(parse(value)?),
            "EndpointSlice" => KubeObject::EndpointSlice(parse(value)?),
            "Deployment" => KubeObject::Deployment(parse(value)?),
            "ConfigMap" => KubeObject::ConfigMap(parse(value)?),
            "Secret" => KubeObject::Secret(parse(value)?),
            "MutatingWebhookConfiguration" => KubeObject::MutatingWebhook(parse(value)?),
            "" => return Err("object without kind".into()),
            _ => KubeObject::Istio(parse(value)?),
        };
        Ok(object)
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            KubeObject::Namespace(_) => ObjectKind::Namespace,
            KubeObject::Node(_) => ObjectKind::Node,
            KubeObject::Pod(_) => ObjectKind::Pod,
            KubeObject::Service(_) => ObjectKind::Service,
            KubeObject::EndpointSlice(_) => ObjectKind::EndpointSlice,
            KubeObject::Deployment(_) => ObjectKind::Deployment,
            KubeObject::ConfigMap(_) => ObjectKind::ConfigMap,
            KubeObject::Secret(_) => ObjectKind::Secret,
            KubeObject::MutatingWebhook(_) => ObjectKind::MutatingWebhook,
            KubeObject::Istio(_) => ObjectKind::Istio,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            KubeObject::Namespace(o) => &o.metadata,
            KubeObject::Node(o) => &o.metadata,
            KubeObject::Pod(o) => &o.metadata,
            KubeObject::Service(o) => &o.metadata,
            KubeObject::EndpointSlice(o) => &o.metadata,
            KubeObject::Deployment(o) => &o.metadata,
            KubeObject::ConfigMap(o) => &o.metadata,
            KubeObject::Secret(o) => &o.metadata,
            KubeObject::MutatingWebhook(o) => &o.metadata,
            KubeObject::Istio(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            KubeObject::Namespace(o) => &mut o.metadata,
            KubeObject::Node(o) => &mut o.metadata,
            KubeObject::Pod(o) => &mut o.metadata,
            KubeObject::Service(o) => &mut o.metadata,
            KubeObject::EndpointSlice(o) => &mut o.metadata,
            KubeObject::Deployment(o) => &mut o.metadata,
            KubeObject::ConfigMap(o) => &mut o.metadata,
            KubeObject::Secret(o) => &mut o.metadata,
            KubeObject::MutatingWebhook(o) => &mut o.metadata,
            KubeObject::Istio(o) => &mut o.metadata,
        }
    }

    /// Istio resources are stored under `Kind/namespace` so that names of different kinds never
    /// collide.
    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        match self {
            KubeObject::Istio(o) => {
                let kind = o.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("");
                (format!("{kind}/{ns}"), name)
            }
            _ => (ns, name),
        }
    }

    /// Drops what meshtop must never keep: managedFields (noise) and Secret values (credentials).
    /// Every object passes through here before it is stored.
    pub fn trimmed(mut self) -> Self {
        self.meta_mut().managed_fields = None;
        if let KubeObject::Secret(secret) = &mut self {
            if let Some(data) = secret.data.as_mut() {
                for value in data.values_mut() {
                    value.0.clear();
                }
            }
            secret.string_data = None;
            if let Some(annotations) = secret.metadata.annotations.as_mut() {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        }
        self
    }
}

/// How the source's connection to a cluster's API server stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Connection {
    /// Not synced yet: the first LISTs are under way.
    #[default]
    Connecting,
    /// Synced, and the API server answers.
    Live,
    /// Synced before, but the API server stopped answering: the data shown is getting old.
    Stale(String),
    /// Never synced, or the API server refuses connections.
    Down(String),
    /// The API server answers 403 to what meshtop must read.
    Forbidden(String),
    /// The credentials were refused (401) or could not be obtained (exec plugin, expired).
    AuthError(String),
}

/// The topic of the note a cluster carries while its kubeconfig's credential plugin runs
/// ("credential plugin running for 12 s"): shown after `connecting` on its tree line.
pub const CREDENTIALS_NOTE: &str = "credentials";

/// The topic of what the kubeconfig files say about a cluster (a context of the same name in
/// another file, another context reaching the same API server): information, not a fault.
pub const KUBECONFIG_NOTE: &str = "kubeconfig";

impl Connection {
    /// The word shown for the state.
    pub fn label(&self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Stale(_) => "stale",
            Connection::Down(_) => "down",
            Connection::Forbidden(_) => "forbidden",
            Connection::AuthError(_) => "auth error",
        }
    }

    /// Why the state is not live, when it says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Connection::Connecting | Connection::Live => None,
            Connection::Stale(r)
            | Connection::Down(r)
            | Connection::Forbidden(r)
            | Connection::AuthError(r) => Some(r),
        }
    }
}

/// One row of istiod's `/debug/clusterz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterzEntry {
    #[serde(rename = "id", alias = "ID")]
    pub id: String,
    #[serde(rename = "secretName", alias = "SecretName", default)]
    pub secret_name: String,
    #[serde(rename = "syncStatus", alias = "SyncStatus", default)]
    pub sync_status: String,
}

/// One row of istiod's `/debug/syncz`: one connected proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynczEntry {
    pub proxy: String,
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub istio_version: String,
}

/// The few istiod metrics meshtop reads from `:15014/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IstiodMetrics {
    /// `pilot_xds`: connected proxies.
    pub xds_clients: f64,
    /// Sum over `pilot_xds_pushes{type}`.
    pub pushes: f64,
    pub convergence_sum: f64,
    pub convergence_count: f64,
    pub xds_rejects: f64,
}

/// One probe of one istiod (pod or explicit URL): what each endpoint answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IstiodProbe {
    /// Seconds since the source started; used to turn counters into rates.
    pub at_secs: f64,
    pub ready: Option<bool>,
    pub version: Option<String>,
    pub clusterz: Option<Vec<ClusterzEntry>>,
    pub syncz: Option<Vec<SynczEntry>>,
    pub metrics: Option<IstiodMetrics>,
    pub error: Option<String>,
}

/// The latest and the previous probe of one istiod, so that counters become rates.
#[derive(Clone, Debug, Default)]
pub struct ProbeHistory {
    pub latest: IstiodProbe,
    pub previous: Option<IstiodProbe>,
    /// Index kept on record: connected proxies per cluster id in the latest `/debug/syncz`.
    pub proxies_by_cluster: BTreeMap<String, u64>,
}

/// Result of `GET :15021/healthz/ready` on a gateway, as far as it could be asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayProbe {
    pub ready: bool,
    pub detail: String,
}

/// Everything meshtop currently knows about one cluster (one kubeconfig context).
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    pub context: String,
    /// Shown instead of the context (config file).
    pub display_name: Option<String>,
    /// The Istio cluster id the config file gives this context; wins over what the data says.
    pub cluster_id_override: Option<String>,
    pub connection: Connection,
    /// Whether the cluster was ever live (or stale, which follows live): only then is what it
    /// holds a whole cluster that belongs in a mesh. Until then it is "not connected".
    pub reached: bool,
    /// What could not be read, by topic (e.g. `Secrets`: "403 forbidden"): that part of the
    /// cluster is missing, the rest is shown.
    pub notes: BTreeMap<String, String>,
    pub last_update: Option<SystemTime>,
    /// Bumped on every change, so derived per-cluster facts can be cached.
    pub version: u64,
    /// Bumped per kind of fact, so facts that read some kinds are re-read only when they change.
    pub kinds: KindVersions,
    pub namespaces: BTreeMap<ObjectKey, Namespace>,
    pub nodes: BTreeMap<ObjectKey, Node>,
    pub pods: BTreeMap<ObjectKey, Pod>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub deployments: BTreeMap<ObjectKey, Deployment>,
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    pub secrets: BTreeMap<ObjectKey, Secret>,
    pub webhooks: BTreeMap<ObjectKey, MutatingWebhookConfiguration>,
    pub istio: BTreeMap<ObjectKey, DynamicObject>,
    /// Keyed by `namespace/deployment` of the istiod probed.
    pub istiod_probes: BTreeMap<String, ProbeHistory>,
    /// Keyed by `namespace/service` of the gateway probed.
    pub gateway_probes: BTreeMap<String, GatewayProbe>,
    /// Index kept on apply: pods whose label `istio-locality` overrides their node's locality.
    pub pod_localities: BTreeMap<ObjectKey, String>,
    /// The snapshot version at which each EndpointSlice last changed.
    pub slice_versions: BTreeMap<ObjectKey, u64>,
    /// Bumped when anything that decides an endpoint's locality changes (nodes, pod labels).
    pub locality_version: u64,
}

/// One change counter per kind of fact a snapshot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindVersions {
    /// The configured identity (display name, cluster id override).
    pub identity: u64,
    pub namespaces: u64,
    pub nodes: u64,
    pub pods: u64,
    pub services: u64,
    pub endpoint_slices: u64,
    pub deployments: u64,
    pub config_maps: u64,
    pub secrets: u64,
    pub webhooks: u64,
    pub istio: u64,
    pub istiod_probes: u64,
    pub gateway_probes: u64,
}

impl KindVersions {
    pub fn bump(&mut self, kind: ObjectKind) {
        let counter = match kind {
            ObjectKind::Namespace => &mut self.namespaces,
            ObjectKind::Node => &mut self.nodes,
            ObjectKind::Pod => &mut self.pods,
            ObjectKind::Service => &mut self.services,
            ObjectKind::EndpointSlice => &mut self.endpoint_slices,
            ObjectKind::Deployment => &mut self.deployments,
            ObjectKind::ConfigMap => &mut self.config_maps,
            ObjectKind::Secret => &mut self.secrets,
            ObjectKind::MutatingWebhook => &mut self.webhooks,
            ObjectKind::Istio => &mut self.istio,
        };
        *counter += 1;
    }
}

impl ClusterSnapshot {
    pub fn new(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            ..Default::default()
        }
    }

    pub fn apply(&mut self, object: KubeObject) {
        let object = object.trimmed();
        let key = object.key();
        // An update that changes nothing meshtop keeps (a node's heartbeat, a status field
        // trimmed away) changes no version, so nothing is derived or drawn again.
        let unchanged = match &object {
            KubeObject::Namespace(o) => self.namespaces.get(&key) == Some(o),
            KubeObject::Node(o) => self.nodes.get(&key) == Some(o),
            KubeObject::Pod(o) => self.pods.get(&key) == Some(o),
            KubeObject::Service(o) => self.services.get(&key) == Some(o),
            KubeObject::EndpointSlice(o) => self.endpoint_slices.get(&key) == Some(o),
            KubeObject::Deployment(o) => self.deployments.get(&key) == Some(o),
            KubeObject::ConfigMap(o) => self.config_maps.get(&key) == Some(o),
            KubeObject::Secret(o) => self.secrets.get(&key) == Some(o),
            KubeObject::MutatingWebhook(o) => self.webhooks.get(&key) == Some(o),
            KubeObject::Istio(o) => self.istio.get(&key) == Some(o),
        };
        if unchanged {
            return;
        }
        self.kinds.bump(object.kind());
        match object {
            KubeObject::Namespace(o) => {
                self.namespaces.insert(key, o);
            }
            KubeObject::Node(o) => {
                self.nodes.insert(key, o);
                self.locality_version += 1;
            }
            KubeObject::Pod(o) => {
                let wanted = o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("istio-locality"))
                    .map(|loc| loc.replace('.', "/"));
                let changed = match wanted {
                    Some(loc) => self.pod_localities.insert(key.clone(), loc.clone()) != Some(loc),
                    None => self.pod_localities.remove(&key).is_some(),
                };
                if changed {
                    self.locality_version += 1;
                }
                self.pods.insert(key, o);
            }
            KubeObject::Service(o) => {
                self.services.insert(key, o);
            }
            KubeObject::EndpointSlice(o) => {
                self.slice_versions.insert(key.clone(), self.version + 1);
                self.endpoint_slices.insert(key, o);
            }
            KubeObject::Deployment(o) => {
                self.deployments.insert(key, o);
            }
            KubeObject::ConfigMap(o) => {
                self.config_maps.insert(key, o);
            }
            KubeObject::Secret(o) => {
                self.secrets.insert(key, o);
            }
            KubeObject::MutatingWebhook(o) => {
                self.webhooks.insert(key, o);
            }
            KubeObject::Istio(o) => {
                self.istio.insert(key, o);
            }
        }
        self.version += 1;
    }

    pub fn delete(&mut self, kind: ObjectKind, key: &ObjectKey) {
        let removed = match kind {
            ObjectKind::Namespace => self.namespaces.remove(key).is_some(),
            ObjectKind::Node => {
                self.locality_version += 1;
                self.nodes.remove(key).is_some()
            }
            ObjectKind::Pod => {
                if self.pod_localities.remove(key).is_some() {
                    self.locality_version += 1;
                }
                self.pods.remove(key).is_some()
            }
            ObjectKind::Service => self.services.remove(key).is_some(),
            ObjectKind::EndpointSlice => {
                self.slice_versions.remove(key);
                self.endpoint_slices.remove(key).is_some()
            }
            ObjectKind::Deployment => self.deployments.remove(key).is_some(),
            ObjectKind::ConfigMap => self.config_maps.remove(key).is_some(),
            ObjectKind::Secret => self.secrets.remove(key).is_some(),
            ObjectKind::MutatingWebhook => self.webhooks.remove(key).is_some(),
            ObjectKind::Istio => self.istio.remove(key).is_some(),
        };
        if removed {
            self.kinds.bump(kind);
            self.version += 1;
        }
    }

    /// Replaces every stored object of one kind (of one Istio kind, for `ObjectKind::Istio`) by
    /// `objects` at once, as after a relist: what the server no longer has is gone, nothing
    /// appears twice.
    pub fn replace(
        &mut self,
        kind: ObjectKind,
        istio_kind: Option<&str>,
        objects: Vec<KubeObject>,
    ) {
        match kind {
            ObjectKind::Namespace => self.namespaces.clear(),
            ObjectKind::Node => {
                self.nodes.clear();
                self.locality_version += 1;
            }
            ObjectKind::Pod => {
                self.pods.clear();
                if !self.pod_localities.is_empty() {
                    self.pod_localities.clear();
                    self.locality_version += 1;
                }
            }
            ObjectKind::Service => self.services.clear(),
            ObjectKind::EndpointSlice => {
                self.endpoint_slices.clear();
                self.slice_versions.clear();
            }
            ObjectKind::Deployment => self.deployments.clear(),
            ObjectKind::ConfigMap => self.config_maps.clear(),
            ObjectKind::Secret => self.secrets.clear(),
            ObjectKind::MutatingWebhook => self.webhooks.clear(),
            ObjectKind::Istio => match istio_kind {
                Some(k) => self
                    .istio
                    .retain(|_, o| o.types.as_ref().map(|t| t.kind.as_str()) != Some(k)),
                None => self.istio.clear(),
            },
        }
        for object in objects {
            if object.kind() == kind {
                self.apply(object);
            }
        }
        self.version += 1;
    }

    pub fn record_probe(&mut self, key: String, probe: IstiodProbe) {
        let history = self.istiod_probes.entry(key).or_default();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for row in probe.syncz.iter().flatten() {
            *counts.entry(row.cluster_id.as_str()).or_insert(0) += 1;
        }
        history.proxies_by_cluster = counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let previous = std::mem::replace(&mut history.latest, probe);
        history.previous = Some(previous);
        self.kinds.istiod_probes += 1;
        self.version += 1;
    }

    /// Istio resources of one kind (e.g. `AuthorizationPolicy`).
    pub fn istio_of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a DynamicObject> {
        self.istio
            .values()
            .filter(move |o| o.types.as_ref().map(|t| t.kind == kind).unwrap_or(false))
    }
}

/// A fact as a source emits it. Sources never send conclusions.
#[derive(Clone, Debug)]
pub enum Update {
    Connection {
        context: String,
        connection: Connection,
    },
    /// The API server answered: what is shown of this cluster is current as of now.
    Alive { context: String },
    /// What the user's configuration says about a cluster: a name to show, an Istio cluster id.
    Identity {
        context: String,
        display_name: Option<String>,
        cluster_id: Option<String>,
    },
    Apply {
        context: String,
        object: Box<KubeObject>,
    },
    Delete {
        context: String,
        kind: ObjectKind,
        key: ObjectKey,
    },
    /// Every object of one kind at once (after a LIST or a relist); `istio_kind` narrows
    /// `ObjectKind::Istio` to one resource kind.
    Replace {
        context: String,
        kind: ObjectKind,
        istio_kind: Option<String>,
        objects: Vec<KubeObject>,
    },
    /// What could not be read about one topic of a cluster; `None` clears the note.
    Note {
        context: String,
        topic: String,
        note: Option<String>,
    },
    IstiodProbe {
        context: String,
        /// `namespace/deployment`
        control_plane: String,
        probe: IstiodProbe,
    },
    GatewayProbe {
        context: String,
        /// `namespace/service`
        gateway: String,
        probe: GatewayProbe,
    },
}

/// How finely `Update::Alive` refreshes a cluster's data age: a heartbeat re-derives a quiet
/// cluster at most this often.
pub const ALIVE_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(5);

/// The latest facts of every cluster, in order of first arrival (the live source registers
/// clusters in kubeconfig order).
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub clusters: Vec<ClusterSnapshot>,
}

impl Store {
    pub fn cluster_mut(&mut self, context: &str) -> &mut ClusterSnapshot {
        let index = match self.clusters.iter().position(|c| c.context == context) {
            Some(i) => i,
            None => {
                self.clusters.push(ClusterSnapshot::new(context));
                self.clusters.len() - 1
            }
        };
        &mut self.clusters[index]
    }

    /// Applies one update; `now` stamps the cluster's data age.
    pub fn apply(&mut self, update: Update, now: SystemTime) {
        match update {
            Update::Connection {
                context,
                connection,
            } => {
                let cluster = self.cluster_mut(&context);
                if cluster.connection != connection {
                    cluster.reached |=
                        matches!(connection, Connection::Live | Connection::Stale(_));
                    cluster.connection = connection;
                    cluster.version += 1;
                }
            }
            Update::Alive { context } => {
                let cluster = self.cluster_mut(&context);
                // Only an age that would show moves the cluster's version (and re-derives it).
                let shown_age = cluster
                    .last_update
                    .and_then(|t| now.duration_since(t).ok())
                    .is_none_or(|age| age >= ALIVE_RESOLUTION);
                if shown_age {
                    cluster.last_update = Some(now);
                    cluster.version += 1;
                }
            }
            Update::Identity {
                context,
                display_name,
                cluster_id,
            } => {
                let cluster = self.cluster_mut(&context);
                cluster.display_name = display_name;
                cluster.cluster_id_override = cluster_id;
                cluster.version += 1;
                cluster.kinds.identity += 1;
            }
            Update::Apply { context, object } => {
                let cluster = self.cluster_mut(&context);
                cluster.apply(*object);
                cluster.last_update = Some(now);
            }
            Update::Delete { context, kind, key } => {
                let cluster = self.cluster_mut(&context);
                cluster.delete(kind, &key);
                cluster.last_update = Some(now);
            }
            Update::Replace {
                context,
                kind,
                istio_kind,
                objects,
            } => {
                let cluster = self.cluster_mut(&context);
                cluster.replace(kind, istio_kind.as_deref(), objects);
                cluster.last_update = Some(now);
            }
            Update::Note {
                context,
                topic,
                note,
            } => {
                let cluster = self.cluster_mut(&context);
                let changed = match note {
                    Some(n) => cluster.notes.insert(topic, n.clone()).as_ref() != Some(&n),
                    None => cluster.notes.remove(&topic).is_some(),
                };
                if changed {
                    cluster.version += 1;
                }
            }
            Update::IstiodProbe {
                context,
                control_plane,
                probe,
            } => {
                let cluster = self.cluster_mut(&context);
                cluster.record_probe(control_plane, probe);
                cluster.last_update = Some(now);
            }
            Update::GatewayProbe {
                context,
                gateway,
                probe,
            } => {
                let cluster = self.cluster_mut(&context);
                if cluster.gateway_probes.get(&gateway) != Some(&probe) {
                    cluster.gateway_probes.insert(gateway, probe);
                    cluster.kinds.gateway_probes += 1;
                    cluster.version += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn secret_values_never_reach_the_store() {
        let mut secret = Secret::default();
        secret.metadata.name = Some("istio-remote-secret-east-2".into());
        secret.metadata.namespace = Some("istio-system".into());
        secret.data = Some(
            [(
                "east-2".to_string(),
                ByteString(b"apiVersion: v1\nusers: [{token: s3cr3t}]".to_vec()),
            )]
            .into(),
        );
        let mut store = Store::default();
        store.apply(
            Update::Apply {
                context: "c".into(),
                object: Box::new(KubeObject::Secret(secret)),
            },
            SystemTime::UNIX_EPOCH,
        );
        let stored = &store.clusters[0].secrets;
        let data = stored.values().next().and_then(|s| s.data.clone());
        let data = data.expect("keys are kept");
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["east-2"]);
        assert!(
            data.values().all(|v| v.0.is_empty()),
            "values must be dropped"
        );
    }
}
