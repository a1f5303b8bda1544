//! Istio's (and Kubernetes') names for labels, annotations, objects and settings, in one place:
//! derivation reads them, the failover plan rewrites them, the simulator writes them.

/// The namespace Istio's control plane and its mesh-wide settings live in.
pub const SYSTEM_NAMESPACE: &str = "istio-system";

/// Namespace label: the network of the cluster (on the system namespace) or of a gateway.
pub const LABEL_NETWORK: &str = "topology.istio.io/network";
/// System-namespace annotation: the cluster ids of the control planes serving a remote.
pub const ANNOTATION_CONTROL_PLANE_CLUSTERS: &str = "topology.istio.io/controlPlaneClusters";
/// Namespace label: the revision that injects it.
pub const LABEL_REV: &str = "istio.io/rev";
/// Namespace label: `enabled` / `disabled` injection of the default revision.
pub const LABEL_INJECTION: &str = "istio-injection";
/// Namespace label: `ambient` for the sidecar-less data plane.
pub const LABEL_DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Secret label that marks a remote secret.
pub const LABEL_MULTICLUSTER: &str = "istio/multiCluster";
/// Remote-secret annotation: the cluster it gives access to.
pub const ANNOTATION_REMOTE_CLUSTER: &str = "networking.istio.io/cluster";
/// Pod label that overrides its node's locality (`region.zone.subzone`).
pub const LABEL_LOCALITY: &str = "istio-locality";
/// Node label: the subzone part of a locality.
pub const LABEL_SUBZONE: &str = "topology.istio.io/subzone";
/// Pod annotation the injector writes.
pub const ANNOTATION_SIDECAR_STATUS: &str = "sidecar.istio.io/status";
/// Gateway label whose value says what kind of gateway it is (`eastwestgateway`, ...).
pub const LABEL_ISTIO: &str = "istio";

/// Kubernetes' well-known labels.
pub const LABEL_APP: &str = "app";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// `app=istiod` marks a control plane's Deployment.
pub const ISTIOD_APP: &str = "istiod";
/// Service (and Deployment) name of the default revision's istiod.
pub const ISTIOD: &str = "istiod";
/// The sidecar container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// istiod env: the cluster id it configures.
pub const ENV_CLUSTER_ID: &str = "CLUSTER_ID";
/// istiod env: may serve remote clusters.
pub const ENV_EXTERNAL_ISTIOD: &str = "EXTERNAL_ISTIOD";
/// Sidecar env: the cluster id of its pod.
pub const ENV_PROXY_CLUSTER_ID: &str = "ISTIO_META_CLUSTER_ID";
/// `CLUSTER_ID` when istiod does not set one.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// The revision without a name.
pub const DEFAULT_REVISION: &str = "default";
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// ConfigMap `istio[-<rev>]` with keys `mesh` and `meshNetworks`.
pub const CONFIGMAP_MESH: &str = "istio";
pub const KEY_MESH: &str = "mesh";
pub const KEY_MESH_NETWORKS: &str = "meshNetworks";
/// ConfigMap `istio-sidecar-injector[-<rev>]` with key `values` (JSON).
pub const CONFIGMAP_INJECTOR: &str = "istio-sidecar-injector";
pub const KEY_VALUES: &str = "values";
/// ConfigMap with the mesh's root certificate.
pub const CONFIGMAP_ROOT_CERT: &str = "istio-ca-root-cert";
pub const KEY_ROOT_CERT: &str = "root-cert.pem";
/// MutatingWebhookConfiguration `istio-sidecar-injector[-<rev>]`.
pub const INJECTOR_WEBHOOK: &str = "istio-sidecar-injector";
/// Path segments of an injector URL that name the cluster and the network.
/// Path prefix of istiod's injection endpoint.
pub const INJECT_PATH: &str = "/inject";
pub const INJECT_URL_CLUSTER: &str = "/inject/cluster/";
pub const INJECT_URL_NETWORK: &str = "/net/";
/// Ports an east-west gateway opens to expose istiod to remotes (xDS, webhook).
pub const PORT_ISTIOD_XDS: i32 = 15012;
pub const PORT_ISTIOD_WEBHOOK: i32 = 15017;

/// istiod env: extra roots (`caCertificates`) count only with this set to `true`.
pub const ENV_MULTIROOT_MESH: &str = "ISTIO_MULTIROOT_MESH";
/// istiod env: accept any trust domain.
pub const ENV_SKIP_VALIDATE_TRUST_DOMAIN: &str = "PILOT_SKIP_VALIDATE_TRUST_DOMAIN";
/// istiod env: roots in a ClusterTrustBundle instead of the `istio-ca-root-cert` ConfigMap.
pub const ENV_CLUSTER_TRUST_BUNDLE_API: &str = "ENABLE_CLUSTER_TRUST_BUNDLE_API";

/// API groups and kinds of the Istio resources federation reads.
pub const GROUP_NETWORKING: &str = "networking.istio.io/";
pub const GROUP_SECURITY: &str = "security.istio.io/";
pub const KIND_GATEWAY: &str = "Gateway";
pub const KIND_SERVICE_ENTRY: &str = "ServiceEntry";
pub const KIND_DESTINATION_RULE: &str = "DestinationRule";
pub const KIND_AUTHORIZATION_POLICY: &str = "AuthorizationPolicy";
pub const KIND_PEER_AUTHENTICATION: &str = "PeerAuthentication";
/// Gateway `tls.mode`s that carry mesh mTLS through (what an export uses).
pub const TLS_AUTO_PASSTHROUGH: &str = "AUTO_PASSTHROUGH";
pub const TLS_ISTIO_MUTUAL: &str = "ISTIO_MUTUAL";
/// Endpoint label that turns auto mTLS on for a ServiceEntry endpoint.
pub const LABEL_TLS_MODE: &str = "security.istio.io/tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";

/// Namespaces that hold infrastructure, not tenants.
pub const INFRA_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    "istio-ingress",
    "istio-gateways",
    "external-istiod",
    "local-path-storage",
];

/// `istiod` for the default revision, else `istiod-<rev>`.
pub fn istiod_service(revision: &str) -> String {
    if revision == DEFAULT_REVISION {
        ISTIOD.to_string()
    } else {
        format!("{ISTIOD}-{revision}")
    }
}

/// The revision an istiod Service name stands for.
pub fn revision_of_istiod_service(service: &str) -> &str {
    service.strip_prefix("istiod-").unwrap_or(DEFAULT_REVISION)
}

/// Whether a name is `base` or `base-<suffix>` (revisioned objects).
pub fn is_revisioned(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('-'))
}
