//! The built-in simulated multi-cluster mesh. It emits the very objects real sources emit
//! (k8s-openapi types, Istio resources as dynamic objects, istiod probe results), so demo mode
//! runs the same derivation and UI as real clusters. Deterministic for a seed: every change
//! comes from the tick count and a seeded generator, never from the wall clock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::failover::plan::{Change, Op};
use crate::failover::writer::Writer;
use crate::topology::clock::rfc3339_now;
use crate::topology::istio::*;
use crate::topology::snapshot::{
    ClusterzEntry, GatewayProbe, IstiodMetrics, IstiodProbe, KubeObject, ObjectKind, Store,
    SynczEntry, Update,
};

/// SplitMix64: small, seedable, good enough for a simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Builds a k8s-openapi object from a JSON literal written in this file.
fn obj<T: DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(o) => o,
        Err(e) => panic!("demo object literal does not match its type: {e}"),
    }
}

#[derive(Clone, Debug)]
struct SimCluster {
    context: String,
    cluster_id: String,
    network: String,
    region: String,
    mesh: String,
    trust_domain: String,
    index: usize,
}

#[derive(Clone, Debug)]
struct Workload {
    context: String,
    namespace: String,
    name: String,
    replicas: u32,
    generation: u32,
    /// Pod index → tick until which it stays unready.
    unready_until: BTreeMap<u32, u64>,
    cluster_index: usize,
    index: usize,
}

#[derive(Clone, Debug)]
struct SimControlPlane {
    context: String,
    namespace: String,
    name: String,
    revision: String,
    cluster_id: String,
    version: String,
    replicas: i32,
    pushes: f64,
    convergence_sum: f64,
    convergence_count: f64,
}

/// The size of a generated mesh (the benchmark uses a big one).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub clusters: usize,
    pub services: usize,
    pub endpoints_per_service_cluster: u32,
    pub clusters_per_service: usize,
}

pub struct DemoSim {
    rng: Rng,
    pub tick: u64,
    world: Store,
    clusters: Vec<SimCluster>,
    workloads: Vec<Workload>,
    control_planes: Vec<SimControlPlane>,
    pending: Vec<Update>,
    /// Gateway hostname → (context, `namespace/deployment` of the istiod it exposes).
    exposed: BTreeMap<String, (String, String)>,
    incidents: bool,
}

const EAST_GW: &str = "eastwest.east-1.mesh.example";
const WEST_GW: &str = "eastwest.west-1.mesh.example";
const EXTERNAL_GW: &str = "external-istiod.west-1.mesh.example";
const ROOT_ALPHA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIDemoAlphaRootCA\n-----END CERTIFICATE-----\n";
const ROOT_BETA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIDemoBetaRootCA\n-----END CERTIFICATE-----\n";

/// namespace → [(context, injection labels)], services.
struct TenantSpec {
    namespace: &'static str,
    clusters: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    services: &'static [&'static str],
}

const ENABLED: &[(&str, &str)] = &[(LABEL_INJECTION, "enabled")];
const CANARY: &[(&str, &str)] = &[(LABEL_REV, "canary")];
const REV_DEFAULT: &[(&str, &str)] = &[(LABEL_REV, "default")];
const NO_LABEL: &[(&str, &str)] = &[];
const DISABLED: &[(&str, &str)] = &[(LABEL_INJECTION, "disabled")];

const TENANTS: &[TenantSpec] = &[
    TenantSpec {
        namespace: "payments",
        clusters: &[
            ("east-1", ENABLED),
            ("east-2", ENABLED),
            ("west-1", ENABLED),
        ],
        services: &[
            "api",
            "ledger",
            "fraud-check",
            "billing-worker",
            "refunds",
            "statements",
        ],
    },
    TenantSpec {
        namespace: "checkout",
        clusters: &[("east-1", CANARY), ("west-1", ENABLED)],
        services: &["cart", "pricing", "tax", "promotions"],
    },
    TenantSpec {
        namespace: "catalog",
        clusters: &[
            ("east-1", ENABLED),
            ("east-2", ENABLED),
            ("west-2", ENABLED),
        ],
        services: &[
            "products",
            "inventory",
            "images",
            "reviews",
            "recommendations",
        ],
    },
    TenantSpec {
        namespace: "search",
        clusters: &[("west-1", ENABLED), ("west-2", ENABLED)],
        services: &["query", "indexer", "suggest", "ranking"],
    },
    TenantSpec {
        namespace: "identity",
        clusters: &[("east-1", ENABLED), ("west-1", ENABLED)],
        services: &["auth", "users", "tokens", "sessions", "mfa"],
    },
    TenantSpec {
        namespace: "analytics",
        clusters: &[("west-2", REV_DEFAULT)],
        services: &["collector", "etl", "dashboards"],
    },
    TenantSpec {
        namespace: "legacy",
        clusters: &[("east-2", NO_LABEL)],
        services: &["soap-gateway", "mainframe-bridge"],
    },
    TenantSpec {
        namespace: "ops-tools",
        clusters: &[("east-1", DISABLED), ("west-1", DISABLED)],
        services: &["grafana", "alertmanager"],
    },
    TenantSpec {
        namespace: "storefront",
        clusters: &[("beta-1", ENABLED)],
        services: &["web", "assets", "cms"],
    },
    TenantSpec {
        namespace: "orders",
        clusters: &[("beta-1", ENABLED)],
        services: &["orders", "fulfilment", "shipping"],
    },
];

impl DemoSim {
    /// The standard demo: mesh-alpha (2 networks, 4 clusters) and mesh-beta (1 cluster).
    pub fn new(seed: u64) -> Self {
        let mut sim = DemoSim::empty(seed, true);
        let specs = [
            (
                "east-1",
                "network-east",
                "us-east-1",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "east-2",
                "network-east",
                "us-east-2",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "west-1",
                "network-west",
                "eu-west-1",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "west-2",
                "network-west",
                "eu-west-2",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "beta-1",
                "beta-net",
                "ap-south-1",
                "mesh-beta",
                "beta.example",
            ),
        ];
        for (i, (ctx, net, region, mesh, td)) in specs.iter().enumerate() {
            sim.clusters.push(SimCluster {
                context: ctx.to_string(),
                cluster_id: ctx.to_string(),
                network: net.to_string(),
                region: region.to_string(),
                mesh: mesh.to_string(),
                trust_domain: td.to_string(),
                index: i,
            });
        }
        for c in sim.clusters.clone() {
            sim.add_nodes(&c, 3);
            sim.connect(&c.context);
        }
        // east-1: primary with a canary revision, exposes istiod to remotes.
        sim.primary("east-1", &["east-2", "west-1"], ROOT_ALPHA);
        sim.control_plane(
            "east-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "east-1",
            "1.28.2",
            2,
            true,
        );
        sim.control_plane(
            "east-1",
            SYSTEM_NAMESPACE,
            "istiod-canary",
            "canary",
            "east-1",
            "1.29.0",
            1,
            false,
        );
        sim.east_west_gateway("east-1", Some(EAST_GW));
        sim.ingress_gateway("east-1", "ingress.east-1.mesh.example");
        // east-2: remote of east-1 on the same network.
        sim.remote("east-2", "east-1", EAST_GW, ROOT_ALPHA);
        // west-1: primary on the other network, standby for east-2, hosts an external istiod.
        sim.primary("west-1", &["east-1", "east-2"], ROOT_ALPHA);
        sim.control_plane(
            "west-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "west-1",
            "1.28.2",
            2,
            true,
        );
        sim.east_west_gateway("west-1", Some(WEST_GW));
        sim.ingress_gateway("west-1", "ingress.west-1.mesh.example");
        sim.external_control_plane("west-1", "west-2");
        // west-2: configured by the external istiod in west-1.
        sim.remote_of_external("west-2", "west-1", ROOT_ALPHA);
        // beta-1: a cluster that is its own mesh.
        sim.primary("beta-1", &[], ROOT_BETA);
        sim.control_plane(
            "beta-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "beta-1",
            "1.27.3",
            1,
            false,
        );
        sim.ingress_gateway("beta-1", "ingress.beta-1.mesh.example");

        let mut workload_index = 0;
        for t in TENANTS {
            for (ctx, labels) in t.clusters {
                sim.tenant_namespace(ctx, t.namespace, labels);
                for (si, svc) in t.services.iter().enumerate() {
                    // identity/tokens lives in one cluster only: a finding worth showing.
                    if t.namespace == "identity" && *svc == "tokens" && *ctx != "east-1" {
                        continue;
                    }
                    let replicas = 1 + sim.rng.below(4) as u32;
                    sim.add_workload(ctx, t.namespace, svc, replicas, workload_index + si);
                }
            }
            workload_index += t.services.len();
        }
        sim.policies();
        sim.probe_all();
        sim
    }

    /// A generated mesh of the given size (for benchmarks): one network per 5 clusters.
    pub fn scaled(seed: u64, scale: Scale) -> Self {
        let mut sim = DemoSim::empty(seed, false);
        for i in 0..scale.clusters {
            let c = SimCluster {
                context: format!("c{i:02}"),
                cluster_id: format!("c{i:02}"),
                network: format!("net-{}", i / 5),
                region: format!("region-{}", i % 4),
                mesh: "mesh-big".into(),
                trust_domain: "cluster.local".into(),
                index: i,
            };
            sim.clusters.push(c.clone());
            sim.add_nodes(&c, 3);
            sim.connect(&c.context);
            sim.primary(&c.context, &[], ROOT_ALPHA);
            sim.control_plane(
                &c.context,
                SYSTEM_NAMESPACE,
                "istiod",
                "default",
                &c.context,
                "1.28.2",
                2,
                true,
            );
            sim.east_west_gateway(
                &c.context,
                Some(&format!("eastwest.{}.mesh.example", c.context)),
            );
        }
        for s in 0..scale.services {
            let ns = format!("tenant-{:02}", s % 40);
            for k in 0..scale.clusters_per_service {
                let ctx = format!("c{:02}", (s + k * 3) % scale.clusters);
                if !sim
                    .world
                    .cluster_mut(&ctx)
                    .namespaces
                    .contains_key(&(String::new(), ns.clone()))
                {
                    sim.tenant_namespace(&ctx, &ns, ENABLED);
                }
                sim.add_workload(
                    &ctx,
                    &ns,
                    &format!("svc-{s:04}"),
                    scale.endpoints_per_service_cluster,
                    s,
                );
            }
        }
        sim.probe_all();
        sim
    }

    fn empty(seed: u64, incidents: bool) -> Self {
        DemoSim {
            rng: Rng::new(seed),
            tick: 0,
            world: Store::default(),
            clusters: Vec::new(),
            workloads: Vec::new(),
            control_planes: Vec::new(),
            pending: Vec::new(),
            exposed: BTreeMap::new(),
            incidents,
        }
    }

    /// The simulated clusters' current objects, as a source's store would hold them.
    pub fn world(&self) -> &Store {
        &self.world
    }

    /// Updates produced since the last call (the initial state after construction).
    pub fn drain(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.pending)
    }

    fn cluster(&self, context: &str) -> SimCluster {
        self.clusters
            .iter()
            .find(|c| c.context == context)
            .cloned()
            .unwrap_or_else(|| panic!("demo cluster {context} is not defined"))
    }

    fn emit(&mut self, context: &str, object: KubeObject) {
        let now = SystemTime::now();
        // Sources trim at the source too: no Secret value travels in an update.
        let update = Update::Apply {
            context: context.to_string(),
            object: Box::new(object.trimmed()),
        };
        self.world.apply(update.clone(), now);
        self.pending.push(update);
    }

    fn delete(&mut self, context: &str, kind: ObjectKind, namespace: &str, name: &str) {
        let update = Update::Delete {
            context: context.to_string(),
            kind,
            key: (namespace.to_string(), name.to_string()),
        };
        self.world.apply(update.clone(), SystemTime::now());
        self.pending.push(update);
    }

    fn connect(&mut self, context: &str) {
        let update = Update::Connection {
            context: context.into(),
            connection: crate::topology::snapshot::Connection::Live,
        };
        self.world.apply(update.clone(), SystemTime::now());
        self.pending.push(update);
    }

    fn add_nodes(&mut self, c: &SimCluster, count: usize) {
        for z in 0..count {
            let zone = format!("{}{}", c.region, (b'a' + z as u8) as char);
            let node = obj(json!({
                "metadata": {
                    "name": format!("{}-node-{z}", c.context),
                    "labels": {
                        LABEL_REGION: c.region,
                        LABEL_ZONE: zone,
                        "type": "kwok",
                    }
                },
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }));
            self.emit(&c.context, KubeObject::Node(node));
        }
    }

    fn system_namespace(&mut self, context: &str, annotations: Value) {
        let c = self.cluster(context);
        let ns = obj(json!({
            "metadata": {
                "name": SYSTEM_NAMESPACE,
                "labels": {LABEL_NETWORK: c.network},
                "annotations": annotations,
            }
        }));
        self.emit(context, KubeObject::Namespace(ns));
    }

    fn config_map(&mut self, context: &str, namespace: &str, name: &str, data: Value) {
        let cm = obj(json!({
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }));
        self.emit(context, KubeObject::ConfigMap(cm));
    }

    fn primary(&mut self, context: &str, remotes: &[&str], root: &str) {
        let c = self.cluster(context);
        self.system_namespace(context, json!({}));
        let mesh = format!(
            "defaultConfig:\n  meshId: {}\n  proxyMetadata: {{}}\ntrustDomain: {}\nrootNamespace: istio-system\nserviceSettings:\n- settings:\n    clusterLocal: true\n  hosts:\n  - \"mainframe-bridge.legacy.svc.cluster.local\"\n",
            c.mesh, c.trust_domain
        );
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_MESH,
            json!({KEY_MESH: mesh, KEY_MESH_NETWORKS: "networks: {}"}),
        );
        let values = json!({"global": {"meshID": c.mesh, "network": c.network, "multiCluster": {"clusterName": c.cluster_id}}});
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_INJECTOR,
            json!({"values": values.to_string(), "config": "policy: enabled"}),
        );
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_ROOT_CERT,
            json!({KEY_ROOT_CERT: root}),
        );
        for remote in remotes {
            self.remote_secret(context, SYSTEM_NAMESPACE, remote);
        }
        let peer = obj(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": SYSTEM_NAMESPACE},
            "spec": {"mtls": {"mode": "STRICT"}},
        }));
        self.emit(context, KubeObject::Istio(peer));
    }

    /// A remote secret as `istioctl create-remote-secret` makes it. The value is a stand-in:
    /// sources trim every Secret value before storing, real or simulated.
    fn remote_secret(&mut self, context: &str, namespace: &str, remote: &str) {
        let secret = obj(json!({
            "metadata": {
                "name": format!("istio-remote-secret-{remote}"),
                "namespace": namespace,
                "labels": {LABEL_MULTICLUSTER: "true"},
                "annotations": {ANNOTATION_REMOTE_CLUSTER: remote},
            },
            "data": {remote: "ZGVtbw=="},
        }));
        self.emit(context, KubeObject::Secret(secret));
    }

    #[allow(clippy::too_many_arguments)]
    fn control_plane(
        &mut self,
        context: &str,
        namespace: &str,
        name: &str,
        revision: &str,
        cluster_id: &str,
        version: &str,
        replicas: i32,
        external_istiod: bool,
    ) {
        let c = self.cluster(context);
        let mut labels = json!({LABEL_APP: ISTIOD_APP, LABEL_ISTIO: "pilot"});
        if revision != "default" {
            labels[LABEL_REV] = json!(revision);
        }
        let deployment = obj(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "istiod", LABEL_REV: revision}},
                "template": {
                    "metadata": {"labels": {"app": "istiod", LABEL_REV: revision}},
                    "spec": {"containers": [{
                        "name": "discovery",
                        "image": format!("docker.io/istio/pilot:{version}"),
                        "env": [
                            {"name": ENV_CLUSTER_ID, "value": cluster_id},
                            {"name": ENV_EXTERNAL_ISTIOD, "value": external_istiod.to_string()},
                            {"name": "PILOT_ENABLE_ANALYSIS", "value": "false"},
                        ],
                    }]},
                },
            },
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
        }));
        self.emit(context, KubeObject::Deployment(deployment));
        let svc_name = if revision == "default" {
            "istiod".to_string()
        } else {
            format!("istiod-{revision}")
        };
        if namespace == SYSTEM_NAMESPACE {
            let svc = obj(json!({
                "metadata": {"name": svc_name, "namespace": namespace, "labels": {"app": "istiod", LABEL_REV: revision}},
                "spec": {
                    "selector": {"app": "istiod", LABEL_REV: revision},
                    "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012},
                              {"name": "https-webhook", "port": 443}, {"name": "http-monitoring", "port": 15014}],
                },
            }));
            self.emit(context, KubeObject::Service(svc));
        }
        self.control_planes.push(SimControlPlane {
            context: context.into(),
            namespace: namespace.into(),
            name: name.into(),
            revision: revision.into(),
            cluster_id: cluster_id.into(),
            version: version.into(),
            replicas,
            pushes: 1000.0 * (c.index as f64 + 1.0),
            convergence_sum: 0.0,
            convergence_count: 0.0,
        });
        for i in 0..replicas {
            let pod = obj(json!({
                "metadata": {"name": format!("{name}-7f9c-{i}"), "namespace": namespace,
                             "labels": {"app": "istiod", LABEL_REV: revision}},
                "spec": {"nodeName": format!("{context}-node-{}", i % 3), "containers": [{"name": "discovery"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }));
            self.emit(context, KubeObject::Pod(pod));
        }
    }

    fn gateway_pods(&mut self, context: &str, namespace: &str, app: &str, istio: &str, count: u32) {
        let c = self.cluster(context);
        for i in 0..count {
            let pod = obj(json!({
                "metadata": {"name": format!("{app}-5d8b-{i}"), "namespace": namespace,
                             "labels": {"app": app, LABEL_ISTIO: istio, LABEL_NETWORK: c.network}},
                "spec": {"nodeName": format!("{context}-node-{}", i % 3), "containers": [{
                    "name": PROXY_CONTAINER,
                    "env": [{"name": ENV_PROXY_CLUSTER_ID, "value": c.cluster_id}],
                }]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }));
            self.emit(context, KubeObject::Pod(pod));
        }
    }

    fn east_west_gateway(&mut self, context: &str, hostname: Option<&str>) {
        let c = self.cluster(context);
        self.gateway_pods(
            context,
            SYSTEM_NAMESPACE,
            "istio-eastwestgateway",
            "eastwestgateway",
            2,
        );
        let mut svc = json!({
            "metadata": {"name": "istio-eastwestgateway", "namespace": SYSTEM_NAMESPACE,
                         "labels": {"app": "istio-eastwestgateway", LABEL_ISTIO: "eastwestgateway",
                                    LABEL_NETWORK: c.network}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "istio-eastwestgateway", LABEL_ISTIO: "eastwestgateway"},
                "ports": [{"name": "status-port", "port": 15021}, {"name": "tls", "port": 15443},
                          {"name": "tls-istiod", "port": 15012}, {"name": "tls-webhook", "port": 15017}],
            },
            "status": {"loadBalancer": {}},
        });
        if let Some(h) = hostname {
            svc["status"]["loadBalancer"] = json!({"ingress": [{"hostname": h}]});
            self.exposed.insert(
                h.to_string(),
                (context.to_string(), "istio-system/istiod".to_string()),
            );
        }
        self.emit(context, KubeObject::Service(obj(svc)));
        let gw = obj(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": SYSTEM_NAMESPACE},
            "spec": {"selector": {LABEL_ISTIO: "eastwestgateway"},
                     "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                  "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]},
        }));
        self.emit(context, KubeObject::Istio(gw));
        self.gateway_probe(context, "istio-system/istio-eastwestgateway", true);
    }

    fn ingress_gateway(&mut self, context: &str, hostname: &str) {
        self.namespace(context, "istio-ingress", json!({}), json!({}));
        self.gateway_pods(
            context,
            "istio-ingress",
            "istio-ingressgateway",
            "ingressgateway",
            2,
        );
        let svc = obj(json!({
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-ingress",
                         "labels": {"app": "istio-ingressgateway", LABEL_ISTIO: "ingressgateway"}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "istio-ingressgateway", LABEL_ISTIO: "ingressgateway"},
                "ports": [{"name": "status-port", "port": 15021}, {"name": "http2", "port": 80},
                          {"name": "https", "port": 443}],
            },
            "status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}},
        }));
        self.emit(context, KubeObject::Service(svc));
        self.gateway_probe(context, "istio-ingress/istio-ingressgateway", true);
    }

    fn gateway_probe(&mut self, context: &str, gateway: &str, ready: bool) {
        let update = Update::GatewayProbe {
            context: context.into(),
            gateway: gateway.into(),
            probe: GatewayProbe {
                ready,
                detail: if ready { "200 OK".into() } else { "503".into() },
            },
        };
        self.world.apply(update.clone(), SystemTime::now());
        self.pending.push(update);
    }

    fn injector_webhook(&mut self, context: &str, host: &str, cluster_id: &str, network: &str) {
        let url = format!("https://{host}:15017/inject/cluster/{cluster_id}/net/{network}");
        let hook = |name: &str| {
            json!({"name": name, "clientConfig": {"url": url, "caBundle": ""},
                   "sideEffects": "None", "admissionReviewVersions": ["v1"]})
        };
        let webhook = obj(json!({
            "metadata": {"name": INJECTOR_WEBHOOK, "labels": {"app": "sidecar-injector"}},
            "webhooks": [hook("rev.namespace.sidecar-injector.istio.io"),
                         hook("namespace.sidecar-injector.istio.io")],
        }));
        self.emit(context, KubeObject::MutatingWebhook(webhook));
    }

    fn remote(&mut self, context: &str, primary: &str, gateway_host: &str, root: &str) {
        let c = self.cluster(context);
        self.system_namespace(context, json!({ANNOTATION_CONTROL_PLANE_CLUSTERS: primary}));
        let svc = obj(json!({
            "metadata": {"name": "istiod", "namespace": SYSTEM_NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": gateway_host,
                     "ports": [{"name": "tls-istiod", "port": 15012}, {"name": "tls-webhook", "port": 15017}]},
        }));
        self.emit(context, KubeObject::Service(svc));
        self.injector_webhook(context, gateway_host, &c.cluster_id, &c.network);
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_ROOT_CERT,
            json!({KEY_ROOT_CERT: root}),
        );
    }

    fn external_control_plane(&mut self, host: &str, serves: &str) {
        self.namespace(host, "external-istiod", json!({}), json!({}));
        self.control_plane(
            host,
            "external-istiod",
            "istiod",
            "default",
            serves,
            "1.28.2",
            1,
            false,
        );
        let secret = obj(json!({
            "metadata": {"name": "istio-kubeconfig", "namespace": "external-istiod"},
            "data": {"config": "ZGVtbw=="},
        }));
        self.emit(host, KubeObject::Secret(secret));
        self.exposed.insert(
            EXTERNAL_GW.to_string(),
            (host.to_string(), "external-istiod/istiod".to_string()),
        );
    }

    fn remote_of_external(&mut self, context: &str, _host: &str, root: &str) {
        let c = self.cluster(context);
        self.system_namespace(context, json!({}));
        let svc = obj(json!({
            "metadata": {"name": "istiod", "namespace": SYSTEM_NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": EXTERNAL_GW,
                     "ports": [{"name": "tls-istiod", "port": 15012}, {"name": "tls-webhook", "port": 15017}]},
        }));
        self.emit(context, KubeObject::Service(svc));
        self.injector_webhook(context, EXTERNAL_GW, &c.cluster_id, &c.network);
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_ROOT_CERT,
            json!({KEY_ROOT_CERT: root}),
        );
    }

    fn namespace(&mut self, context: &str, name: &str, labels: Value, annotations: Value) {
        let ns =
            obj(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}}));
        self.emit(context, KubeObject::Namespace(ns));
    }

    fn tenant_namespace(&mut self, context: &str, name: &str, labels: &[(&str, &str)]) {
        let mut l = json!({LABEL_NAMESPACE_NAME: name});
        for (k, v) in labels {
            l[*k] = json!(v);
        }
        self.namespace(context, name, l, json!({}));
    }

    fn policies(&mut self) {
        for (ctx, ns, name) in [
            ("east-1", "payments", "allow-checkout"),
            ("east-1", "payments", "deny-external"),
            ("east-2", "payments", "allow-checkout"),
            ("west-1", "payments", "allow-checkout"),
            ("west-1", "payments", "deny-external"),
            ("east-1", "identity", "allow-mesh"),
            ("beta-1", "orders", "allow-storefront"),
        ] {
            let policy = obj(json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["checkout"]}}]}]},
            }));
            self.emit(ctx, KubeObject::Istio(policy));
        }
        let permissive = obj(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "checkout"},
            "spec": {"mtls": {"mode": "PERMISSIVE"}},
        }));
        self.emit("west-1", KubeObject::Istio(permissive));
    }

    fn add_workload(
        &mut self,
        context: &str,
        namespace: &str,
        name: &str,
        replicas: u32,
        index: usize,
    ) {
        let c = self.cluster(context);
        let svc = obj(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]},
        }));
        self.emit(context, KubeObject::Service(svc));
        let w = Workload {
            context: context.into(),
            namespace: namespace.into(),
            name: name.into(),
            replicas,
            generation: 1,
            unready_until: BTreeMap::new(),
            cluster_index: c.index,
            index,
        };
        self.workloads.push(w);
        let i = self.workloads.len() - 1;
        self.render_workload(i, 0);
    }

    fn namespace_injected(&self, context: &str, namespace: &str) -> bool {
        let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == context) else {
            return false;
        };
        let Some(ns) = snapshot
            .namespaces
            .get(&(String::new(), namespace.to_string()))
        else {
            return false;
        };
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        match labels.get(LABEL_INJECTION).map(String::as_str) {
            Some("enabled") => true,
            Some(_) => false,
            None => labels.contains_key(LABEL_REV),
        }
    }

    /// (Re)writes a workload's Deployment, pods and EndpointSlice; `old_replicas`/generation
    /// tell which pods to delete.
    fn render_workload(&mut self, i: usize, old_replicas: u32) {
        let w = self.workloads[i].clone();
        let c = self.cluster(&w.context);
        let injected = self.namespace_injected(&w.context, &w.namespace);
        let tick = self.tick;
        let ready_count = (0..w.replicas)
            .filter(|p| w.unready_until.get(p).map(|t| *t <= tick).unwrap_or(true))
            .count();
        let deployment = obj(json!({
            "metadata": {"name": w.name, "namespace": w.namespace, "labels": {"app": w.name}},
            "spec": {
                "replicas": w.replicas,
                "selector": {"matchLabels": {"app": w.name}},
                "template": {"metadata": {"labels": {"app": w.name}, "annotations": {}},
                             "spec": {"containers": [{"name": "app", "image": format!("registry.example/{}:v1", w.name)}]}},
            },
            "status": {"replicas": w.replicas, "readyReplicas": ready_count},
        }));
        self.emit(&w.context, KubeObject::Deployment(deployment));
        for p in w.replicas..old_replicas {
            let pod_name = format!("{}-{:04x}-{p}", w.name, w.generation);
            self.delete(&w.context, ObjectKind::Pod, &w.namespace, &pod_name);
        }
        let mut endpoints = Vec::new();
        for p in 0..w.replicas {
            let pod_name = format!("{}-{:04x}-{p}", w.name, w.generation);
            let ready = w.unready_until.get(&p).map(|t| *t <= tick).unwrap_or(true);
            let node = (w.index + p as usize) % 3;
            let node_name = format!("{}-node-{node}", w.context);
            let zone = format!("{}{}", c.region, (b'a' + node as u8) as char);
            let address = format!("2001:db8:{:x}:{:x}::{:x}", w.cluster_index, w.index, p);
            let mut containers = vec![json!({"name": "app"})];
            let mut annotations = json!({});
            if injected {
                containers.push(json!({"name": PROXY_CONTAINER, "env": [
                    {"name": ENV_PROXY_CLUSTER_ID, "value": c.cluster_id},
                    {"name": "ISTIO_META_NETWORK", "value": c.network}]}));
                annotations[ANNOTATION_SIDECAR_STATUS] =
                    json!("{\"containers\":[\"istio-proxy\"]}");
            }
            let pod = obj(json!({
                "metadata": {"name": pod_name, "namespace": w.namespace, "labels": {"app": w.name},
                             "annotations": annotations},
                "spec": {"nodeName": node_name, "containers": containers},
                "status": {"phase": "Running", "podIPs": [{"ip": address}],
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
            }));
            self.emit(&w.context, KubeObject::Pod(pod));
            endpoints.push(json!({
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": node_name,
                "zone": zone,
                "targetRef": {"kind": "Pod", "namespace": w.namespace, "name": pod_name},
            }));
        }
        let slice = obj(json!({
            "metadata": {"name": format!("{}-x7k2p", w.name), "namespace": w.namespace,
                         "labels": {LABEL_SERVICE_NAME: w.name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv6",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }));
        self.emit(&w.context, KubeObject::EndpointSlice(slice));
    }

    /// Which istiod a cluster's proxies dial: the address of its istiod Service (remotes), or
    /// the revision of their namespace (primaries).
    fn serving(&self, context: &str, namespace: Option<&str>) -> Option<(String, String)> {
        let snapshot = self.world.clusters.iter().find(|c| c.context == context)?;
        let own = self
            .control_planes
            .iter()
            .filter(|cp| cp.context == context && cp.namespace == SYSTEM_NAMESPACE)
            .collect::<Vec<_>>();
        if own.is_empty() {
            let svc = snapshot
                .services
                .get(&(SYSTEM_NAMESPACE.to_string(), "istiod".to_string()))?;
            let host = svc.spec.as_ref()?.external_name.clone()?;
            return self.exposed.get(&host).cloned();
        }
        let revision = namespace
            .and_then(|ns| snapshot.namespaces.get(&(String::new(), ns.to_string())))
            .and_then(|ns| {
                let labels = ns.metadata.labels.as_ref()?;
                if labels.get(LABEL_INJECTION).map(String::as_str) == Some("enabled") {
                    Some("default".to_string())
                } else {
                    labels.get(LABEL_REV).cloned()
                }
            })
            .unwrap_or_else(|| "default".into());
        own.iter()
            .find(|cp| cp.revision == revision)
            .or(own.first())
            .map(|cp| (context.to_string(), format!("{}/{}", cp.namespace, cp.name)))
    }

    fn cp_ready(&self, cp: &SimControlPlane) -> bool {
        let phase = self.tick % 180;
        let down = self.incidents
            && cp.context == "east-1"
            && cp.namespace == SYSTEM_NAMESPACE
            && ((cp.name == "istiod-canary" && (100..120).contains(&phase))
                || (cp.name == "istiod" && (140..165).contains(&phase)));
        !down
    }

    /// Probes every istiod: /ready, /version, /debug/clusterz, /debug/syncz, /metrics.
    fn probe_all(&mut self) {
        // Proxies: every injected pod and gateway pod, attributed to the istiod it dials.
        let mut rows: BTreeMap<(String, String), Vec<SynczEntry>> = BTreeMap::new();
        for snapshot in &self.world.clusters {
            let c = self.cluster(&snapshot.context);
            for ((ns, pod_name), pod) in &snapshot.pods {
                let has_proxy = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().any(|c| c.name == PROXY_CONTAINER))
                    .unwrap_or(false);
                if !has_proxy {
                    continue;
                }
                if let Some(key) = self.serving(&snapshot.context, Some(ns)) {
                    rows.entry(key).or_default().push(SynczEntry {
                        proxy: format!("{pod_name}.{ns}"),
                        cluster_id: c.cluster_id.clone(),
                        istio_version: String::new(),
                    });
                }
            }
        }
        let at_secs = self.tick as f64;
        let cps = self.control_planes.clone();
        for (i, cp) in cps.iter().enumerate() {
            let key = (cp.context.clone(), format!("{}/{}", cp.namespace, cp.name));
            let mut syncz = rows.remove(&key).unwrap_or_default();
            for row in &mut syncz {
                row.istio_version = cp.version.clone();
            }
            let ready = self.cp_ready(cp);
            let mut clusterz = vec![ClusterzEntry {
                id: cp.cluster_id.clone(),
                secret_name: String::new(),
                sync_status: "synced".into(),
            }];
            if let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == cp.context) {
                for ((ns, secret_name), secret) in &snapshot.secrets {
                    if ns != &cp.namespace
                        || secret
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_MULTICLUSTER))
                            != Some(&"true".to_string())
                    {
                        continue;
                    }
                    for id in secret.data.iter().flat_map(|d| d.keys()) {
                        clusterz.push(ClusterzEntry {
                            id: id.clone(),
                            secret_name: secret_name.clone(),
                            sync_status: "synced".into(),
                        });
                    }
                }
            }
            let pushes = 5 + self.rng.below(40) + syncz.len() as u64 / 4;
            let sim_cp = &mut self.control_planes[i];
            sim_cp.pushes += pushes as f64;
            sim_cp.convergence_count += pushes as f64;
            sim_cp.convergence_sum += pushes as f64 * (0.004 + (cp.replicas as f64) * 0.001);
            let probe = IstiodProbe {
                at_secs,
                ready: Some(ready),
                version: Some(cp.version.clone()),
                clusterz: Some(clusterz),
                metrics: Some(IstiodMetrics {
                    xds_clients: syncz.len() as f64,
                    pushes: sim_cp.pushes,
                    convergence_sum: sim_cp.convergence_sum,
                    convergence_count: sim_cp.convergence_count,
                    xds_rejects: 0.0,
                }),
                syncz: Some(syncz),
                error: None,
            };
            let update = Update::IstiodProbe {
                context: cp.context.clone(),
                control_plane: format!("{}/{}", cp.namespace, cp.name),
                probe,
            };
            self.world.apply(update.clone(), SystemTime::now());
            self.pending.push(update);
        }
    }

    fn set_deployment_ready(&mut self, context: &str, namespace: &str, name: &str, ready: i32) {
        let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == context) else {
            return;
        };
        let Some(mut d) = snapshot
            .deployments
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
        else {
            return;
        };
        let status = d.status.get_or_insert_with(Default::default);
        if status.ready_replicas != Some(ready) {
            status.ready_replicas = Some(ready);
            self.emit(context, KubeObject::Deployment(d));
        }
    }

    fn set_gateway_address(&mut self, context: &str, host: Option<&str>) {
        let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == context) else {
            return;
        };
        let key = (
            SYSTEM_NAMESPACE.to_string(),
            "istio-eastwestgateway".to_string(),
        );
        let Some(mut svc) = snapshot.services.get(&key).cloned() else {
            return;
        };
        let ingress = host.map(|h| json!([{"hostname": h}])).unwrap_or(json!([]));
        let lb = obj(json!({"ingress": ingress}));
        let status = svc.status.get_or_insert_with(Default::default);
        if status.load_balancer.as_ref() != Some(&lb) {
            status.load_balancer = Some(lb);
            self.emit(context, KubeObject::Service(svc));
        }
    }

    /// One second of simulated life.
    pub fn step(&mut self) -> Vec<Update> {
        self.tick += 1;
        let phase = self.tick % 180;
        if self.incidents {
            // A gateway loses its load-balancer address for a while.
            let west_host = (!(45..75).contains(&phase)).then_some(WEST_GW);
            self.set_gateway_address("west-1", west_host);
            // The canary control plane becomes unready and recovers.
            let canary_ready = if (100..120).contains(&phase) { 0 } else { 1 };
            self.set_deployment_ready("east-1", SYSTEM_NAMESPACE, "istiod-canary", canary_ready);
            // Then east-1's main istiod fails: its remote east-2 loses its only control plane,
            // the moment to fail east-2 over to west-1.
            let main_ready = if (140..165).contains(&phase) { 0 } else { 2 };
            self.set_deployment_ready("east-1", SYSTEM_NAMESPACE, "istiod", main_ready);
        }
        if !self.workloads.is_empty() {
            if self.rng.chance(40) {
                let i = self.rng.below(self.workloads.len() as u64) as usize;
                let old = self.workloads[i].replicas;
                let up = self.rng.chance(50);
                let new = if up {
                    (old + 1).min(6)
                } else {
                    old.saturating_sub(1).max(1)
                };
                if new != old {
                    self.workloads[i].replicas = new;
                    self.render_workload(i, old);
                }
            }
            if self.rng.chance(25) {
                let i = self.rng.below(self.workloads.len() as u64) as usize;
                let pod = self.rng.below(u64::from(self.workloads[i].replicas)) as u32;
                let until = self.tick + 3 + self.rng.below(10);
                self.workloads[i].unready_until.insert(pod, until);
                let old = self.workloads[i].replicas;
                self.render_workload(i, old);
            }
            // Pods whose unready spell ended become ready again.
            let tick = self.tick;
            let recovering: Vec<usize> = self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| w.unready_until.values().any(|t| *t == tick))
                .map(|(i, _)| i)
                .collect();
            for i in recovering {
                self.workloads[i].unready_until.retain(|_, t| *t > tick);
                let old = self.workloads[i].replicas;
                self.render_workload(i, old);
            }
        }
        self.probe_all();
        self.drain()
    }

    /// Applies one failover change to the simulated clusters, exactly as the API server would
    /// apply the change's JSON patch (including its `test` of the old value).
    pub fn write(&mut self, change: &Change) -> Result<Vec<Update>, String> {
        let snapshot = self
            .world
            .clusters
            .iter()
            .find(|c| c.context == change.cluster)
            .ok_or_else(|| format!("no cluster {}", change.cluster))?;
        let key = (
            change.namespace.clone().unwrap_or_default(),
            change.name.clone(),
        );
        let not_found = || format!("{} not found in {}", change.object(), change.cluster);
        let patch = change.json_patch(&rfc3339_now());
        fn patched<T: serde::Serialize + DeserializeOwned>(
            object: &T,
            patch: &json_patch::Patch,
        ) -> Result<T, String> {
            let mut doc = serde_json::to_value(object).map_err(|e| e.to_string())?;
            json_patch::patch(&mut doc, patch).map_err(|e| format!("patch rejected: {e}"))?;
            serde_json::from_value(doc).map_err(|e| e.to_string())
        }
        let object = match change.kind.as_str() {
            "Service" => KubeObject::Service(patched(
                snapshot.services.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "Namespace" => KubeObject::Namespace(patched(
                snapshot.namespaces.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "MutatingWebhookConfiguration" => KubeObject::MutatingWebhook(patched(
                snapshot.webhooks.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "Deployment" => {
                let d = snapshot
                    .deployments
                    .get(&key)
                    .ok_or_else(not_found)?
                    .clone();
                if change.op == Op::Restart {
                    // A restart replaces every pod: new generation, same replicas.
                    let i = self
                        .workloads
                        .iter()
                        .position(|w| {
                            w.context == change.cluster
                                && Some(&w.namespace) == change.namespace.as_ref()
                                && w.name == change.name
                        })
                        .ok_or_else(not_found)?;
                    let old = self.workloads[i].replicas;
                    for p in 0..old {
                        let w = &self.workloads[i];
                        let pod_name = format!("{}-{:04x}-{p}", w.name, w.generation);
                        let (ctx, ns) = (w.context.clone(), w.namespace.clone());
                        self.delete(&ctx, ObjectKind::Pod, &ns, &pod_name);
                    }
                    self.workloads[i].generation += 1;
                    self.render_workload(i, 0);
                    self.probe_all();
                    return Ok(self.drain());
                }
                KubeObject::Deployment(patched(&d, &patch)?)
            }
            other => return Err(format!("the demo cannot patch {other}")),
        };
        self.emit(&change.cluster, object);
        self.probe_all();
        Ok(self.drain())
    }
}

/// A request to the simulated mesh to apply one change.
pub struct DemoWrite {
    pub change: Change,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Sends failover changes to the simulator task ([`run`]).
#[derive(Clone)]
pub struct DemoWriter(mpsc::UnboundedSender<DemoWrite>);

impl DemoWriter {
    pub fn new(writes: mpsc::UnboundedSender<DemoWrite>) -> DemoWriter {
        DemoWriter(writes)
    }
}

impl Writer for DemoWriter {
    async fn apply(&self, change: &Change) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.0
            .send(DemoWrite {
                change: change.clone(),
                reply,
            })
            .map_err(|_| "the simulated mesh has stopped".to_string())?;
        rx.await
            .map_err(|_| "the simulated mesh dropped the request".to_string())?
    }
}

/// Runs the simulator as a source: initial state, then one step per `tick`, and failover
/// writes as they come. Stops when the receiver of updates is gone.
pub async fn run(
    seed: u64,
    tick: Duration,
    updates: mpsc::UnboundedSender<Vec<Update>>,
    mut writes: mpsc::UnboundedReceiver<DemoWrite>,
) {
    let mut sim = DemoSim::new(seed);
    if updates.send(sim.drain()).is_err() {
        return;
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if updates.send(sim.step()).is_err() {
                    return;
                }
            }
            Some(write) = writes.recv() => {
                let result = sim.write(&write.change);
                let reply = match result {
                    Ok(batch) => {
                        if updates.send(batch).is_err() {
                            return;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = write.reply.send(reply);
            }
        }
    }
}
