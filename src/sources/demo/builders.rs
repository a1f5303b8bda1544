//! Object builders: the Kubernetes and Istio objects of simulated clusters, as JSON literals.

use super::*;

impl DemoSim {
    pub(super) fn add_nodes(&mut self, c: &SimCluster, count: usize) {
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

    pub(super) fn system_namespace(&mut self, context: &str, annotations: Value) {
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

    pub(super) fn config_map(&mut self, context: &str, namespace: &str, name: &str, data: Value) {
        let cm = obj(json!({
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }));
        self.emit(context, KubeObject::ConfigMap(cm));
    }

    pub(super) fn primary(&mut self, context: &str, remotes: &[&str], root: &str) {
        let c = self.cluster(context);
        self.system_namespace(context, json!({}));
        self.mesh_config(context);
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
    pub(super) fn remote_secret(&mut self, context: &str, namespace: &str, remote: &str) {
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
    pub(super) fn control_plane(
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
                            {"name": ENV_MULTIROOT_MESH, "value": "true"},
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

    pub(super) fn gateway_pods(
        &mut self,
        context: &str,
        namespace: &str,
        app: &str,
        istio: &str,
        count: u32,
    ) {
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

    pub(super) fn east_west_gateway(&mut self, context: &str, hostname: Option<&str>) {
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
        self.cross_network_gateway(context, &["*.local"]);
        self.gateway_probe(context, "istio-system/istio-eastwestgateway", true);
    }

    /// The east-west gateway's `cross-network-gateway`: AUTO_PASSTHROUGH on 15443 for `hosts`.
    pub(super) fn cross_network_gateway(&mut self, context: &str, hosts: &[&str]) {
        let gw = obj(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": SYSTEM_NAMESPACE},
            "spec": {"selector": {LABEL_ISTIO: "eastwestgateway"},
                     "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                  "tls": {"mode": TLS_AUTO_PASSTHROUGH}, "hosts": hosts}]},
        }));
        self.emit(context, KubeObject::Istio(gw));
    }

    pub(super) fn ingress_gateway(&mut self, context: &str, hostname: &str) {
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

    pub(super) fn gateway_probe(&mut self, context: &str, gateway: &str, ready: bool) {
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

    pub(super) fn injector_webhook(
        &mut self,
        context: &str,
        host: &str,
        cluster_id: &str,
        network: &str,
    ) {
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

    pub(super) fn remote(&mut self, context: &str, primary: &str, gateway_host: &str, root: &str) {
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

    pub(super) fn external_control_plane(&mut self, host: &str, serves: &str) {
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

    pub(super) fn remote_of_external(&mut self, context: &str, _host: &str, root: &str) {
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

    pub(super) fn namespace(
        &mut self,
        context: &str,
        name: &str,
        labels: Value,
        annotations: Value,
    ) {
        let ns =
            obj(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}}));
        self.emit(context, KubeObject::Namespace(ns));
    }

    pub(super) fn tenant_namespace(&mut self, context: &str, name: &str, labels: &[(&str, &str)]) {
        let mut l = json!({LABEL_NAMESPACE_NAME: name});
        for (k, v) in labels {
            l[*k] = json!(v);
        }
        self.namespace(context, name, l, json!({}));
    }

    pub(super) fn policies(&mut self) {
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

    pub(super) fn add_workload(
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

    pub(super) fn namespace_injected(&self, context: &str, namespace: &str) -> bool {
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
    pub(super) fn render_workload(&mut self, i: usize, old_replicas: u32) {
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
}
