//! The demo's federation: mesh-alpha and mesh-beta trust each other's roots, mesh-beta exports
//! `orders` through its east-west gateway and mesh-alpha imports it; the story rotates
//! mesh-beta's root (mesh-alpha catches up later) and widens the export for a while.

use super::*;

/// Roots of the demo's meshes: real self-signed certificates (their keys were thrown away).
pub(super) const ROOT_ALPHA: &str = include_str!("roots/mesh-alpha.pem");
pub(super) const ROOT_BETA: &str = include_str!("roots/mesh-beta.pem");
/// mesh-beta's next root, which the story rotates to.
pub(super) const ROOT_BETA_NEXT: &str = include_str!("roots/mesh-beta-2027.pem");
pub(super) const BETA_GW: &str = "eastwest.beta-1.mesh.example";
/// The exported host and where mesh-alpha imports it.
const EXPORTED: &str = "orders.orders.svc.cluster.local";
const IMPORT_CLUSTER: &str = "east-1";
const IMPORT_NAMESPACE: &str = "checkout";

/// Where the federation stands in the story.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FederationState {
    /// mesh-beta serves its next root.
    pub beta_rotated: bool,
    /// mesh-alpha holds mesh-beta's next root too.
    pub alpha_has_next: bool,
    /// mesh-beta's gateway exports `*.local`.
    pub wide_export: bool,
}

impl DemoSim {
    /// The mesh config of a primary, with the roots its mesh imports.
    pub(super) fn mesh_config(&mut self, context: &str) {
        let c = self.cluster(context);
        let mut mesh = format!(
            "defaultConfig:\n  meshId: {}\n  proxyMetadata: {{}}\ntrustDomain: {}\nrootNamespace: istio-system\nserviceSettings:\n- settings:\n    clusterLocal: true\n  hosts:\n  - \"mainframe-bridge.legacy.svc.cluster.local\"\n",
            c.mesh, c.trust_domain
        );
        let imported: Vec<(&str, &str)> = match c.mesh.as_str() {
            "mesh-alpha" if self.federation.alpha_has_next => vec![
                (ROOT_BETA, "beta.example"),
                (ROOT_BETA_NEXT, "beta.example"),
            ],
            "mesh-alpha" => vec![(ROOT_BETA, "beta.example")],
            "mesh-beta" => vec![(ROOT_ALPHA, "cluster.local")],
            _ => Vec::new(),
        };
        if !imported.is_empty() {
            mesh.push_str("caCertificates:\n");
            for (pem, td) in imported {
                mesh.push_str("- pem: |\n");
                for line in pem.lines() {
                    mesh.push_str("    ");
                    mesh.push_str(line);
                    mesh.push('\n');
                }
                mesh.push_str(&format!("  trustDomains:\n  - {td}\n"));
            }
        }
        self.config_map(
            context,
            SYSTEM_NAMESPACE,
            CONFIGMAP_MESH,
            json!({KEY_MESH: mesh, KEY_MESH_NETWORKS: "networks: {}"}),
        );
    }

    fn export_gateway(&mut self) {
        let hosts = if self.federation.wide_export {
            "*.local"
        } else {
            EXPORTED
        };
        self.cross_network_gateway("beta-1", &[hosts]);
    }

    fn beta_root(&mut self) {
        let root = if self.federation.beta_rotated {
            ROOT_BETA_NEXT
        } else {
            ROOT_BETA
        };
        self.config_map(
            "beta-1",
            SYSTEM_NAMESPACE,
            CONFIGMAP_ROOT_CERT,
            json!({KEY_ROOT_CERT: root}),
        );
    }

    /// The objects that federate the two meshes (after both are built).
    pub(super) fn federate(&mut self) {
        self.export_gateway();
        let import = obj(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "orders-mesh-beta", "namespace": IMPORT_NAMESPACE},
            "spec": {
                "hosts": [EXPORTED],
                "location": "MESH_INTERNAL",
                "resolution": "DNS",
                "ports": [{"number": 8080, "name": "http", "protocol": "HTTP"}],
                "endpoints": [{"address": BETA_GW, "network": "beta-net",
                               "ports": {"http": 15443},
                               "labels": {LABEL_TLS_MODE: TLS_MODE_ISTIO}}],
                "subjectAltNames": ["spiffe://beta.example/ns/orders/sa/orders"],
            },
        }));
        self.emit(IMPORT_CLUSTER, KubeObject::Istio(import));
        let policy = obj(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "orders-from-mesh-alpha", "namespace": "orders"},
            "spec": {"action": "ALLOW", "selector": {"matchLabels": {"app": "orders"}},
                     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/checkout/sa/cart"]}}]}]},
        }));
        self.emit("beta-1", KubeObject::Istio(policy));
    }

    /// The federation part of one second of the story (phase = tick mod 180).
    pub(super) fn federation_step(&mut self, phase: u64) {
        let next = FederationState {
            // mesh-beta rotates its root at 20; mesh-alpha imports the new one at 40; the loop
            // starts over with the old root.
            beta_rotated: phase >= 20,
            alpha_has_next: phase >= 40,
            // Someone exports everything for a while.
            wide_export: (120..135).contains(&phase),
        };
        let before = self.federation;
        self.federation = next;
        if next.alpha_has_next != before.alpha_has_next {
            for c in ["east-1", "west-1"] {
                self.mesh_config(c);
            }
        }
        if next.beta_rotated != before.beta_rotated {
            self.beta_root();
        }
        if next.wide_export != before.wide_export {
            self.export_gateway();
        }
    }
}
