//! The federation part of the model: how separate meshes trust each other and what crosses the
//! boundary. Plain data, serialised as the `federation` section of `-o json`.
//!
//! Everything here is read from objects of the watched clusters (mesh config, root ConfigMaps,
//! istiod Deployments' env, Gateways, ServiceEntries, DestinationRules, AuthorizationPolicies);
//! see `derive/federation.rs` for the rules and `DOMAIN.md` ("Multi-mesh federation").

use std::sync::Arc;

use serde::Serialize;

use super::model::{EndpointGroup, Health};

/// A root certificate, by fingerprint (SHA-256 over the DER, lowercase hex). Never a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootCert {
    pub sha256: String,
    /// RFC 4514 subject.
    pub subject: String,
    /// RFC 3339 UTC.
    pub not_after: String,
    #[serde(skip)]
    pub not_after_secs: u64,
}

impl RootCert {
    /// The first 16 hex digits, for screens.
    pub fn short(&self) -> &str {
        &self.sha256[..self.sha256.len().min(16)]
    }
}

/// One `meshConfig.caCertificates[]` entry: extra roots a mesh is told to trust.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtraRoot {
    /// The certificates of its `pem` (empty for a `spiffeBundleUrl` entry).
    pub roots: Vec<RootCert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_bundle_url: Option<String>,
    /// Trust domains these roots are for (empty: any).
    pub trust_domains: Vec<String>,
    /// Where it was read: `<context>: ConfigMap istio-system/istio`.
    pub source: String,
}

/// A host a mesh exports through one of its gateways (`tls.mode` AUTO_PASSTHROUGH or
/// ISTIO_MUTUAL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Export {
    /// Context of the cluster the Gateway object is in.
    pub cluster: String,
    /// `namespace/name` of the Gateway object.
    pub gateway: String,
    pub hosts: Vec<String>,
    pub port: u32,
    pub mode: String,
    /// The address of the gateway Service its selector picks (LoadBalancer ingress).
    pub address: Option<String>,
    /// Meshes that import through it.
    pub imported_by: Vec<String>,
}

/// A DestinationRule for an imported host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportRule {
    /// `namespace/name`.
    pub name: String,
    pub tls_mode: Option<String>,
    pub sni: Option<String>,
}

/// A ServiceEntry that sends traffic to another mesh's gateway.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Import {
    /// Context of the cluster the ServiceEntry is in.
    pub cluster: String,
    /// `namespace/name` of the ServiceEntry.
    pub service_entry: String,
    pub hosts: Vec<String>,
    pub location: String,
    pub resolution: String,
    /// Endpoint addresses (the peer gateway's) and their ports.
    pub addresses: Vec<String>,
    pub ports: Vec<u32>,
    pub networks: Vec<String>,
    /// Every endpoint carries `security.istio.io/tlsMode: istio`.
    pub tls_mode_istio: bool,
    pub subject_alt_names: Vec<String>,
    pub destination_rule: Option<ImportRule>,
    /// The mesh whose gateway the endpoints are (None: not a federation import).
    pub from: Option<String>,
    /// The exporting Gateway (`context: namespace/name`) whose hosts match, if any.
    pub exported_by: Option<String>,
    /// `namespace/name` of the exporting mesh's service the host names.
    pub service: Option<String>,
    /// Where it really runs: the exporting mesh's endpoints of that service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_in: Option<Arc<Vec<EndpointGroup>>>,
    /// From its findings.
    pub health: Health,
}

/// An AuthorizationPolicy that names identities of other trust domains, or namespaces of any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerPolicy {
    pub cluster: String,
    /// `namespace/name`.
    pub policy: String,
    pub action: String,
    pub principals: Vec<String>,
    /// `source.namespaces` (match any trust domain).
    pub namespaces: Vec<String>,
    /// `source.trustDomains` (Istio 1.30.2+).
    pub trust_domains: Vec<String>,
}

/// What one mesh trusts, exports, imports and admits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeshTrust {
    pub mesh: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
    /// The mesh's own roots (`istio-ca-root-cert` of its clusters).
    pub roots: Vec<RootCert>,
    /// `caCertificates`: extra roots, counted only with `ISTIO_MULTIROOT_MESH=true`.
    pub ca_certificates: Vec<ExtraRoot>,
    /// Every istiod Deployment of the mesh sets `ISTIO_MULTIROOT_MESH=true` (None: no istiod
    /// Deployment seen).
    pub multi_root: Option<bool>,
    pub skip_validate_trust_domain: bool,
    pub cluster_trust_bundle_api: bool,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    pub policies: Vec<PeerPolicy>,
}

impl MeshTrust {
    /// Trust domains its sidecars accept: its own, its aliases, `caCertificates[].trustDomains`.
    pub fn accepted_trust_domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.trust_domain.as_str())
            .chain(self.trust_domain_aliases.iter().map(String::as_str))
            .chain(
                self.ca_certificates
                    .iter()
                    .flat_map(|c| c.trust_domains.iter().map(String::as_str)),
            )
    }

    /// Roots that count as anchors: its own, plus `caCertificates` when multi-root is on.
    pub fn anchors(&self) -> impl Iterator<Item = &RootCert> {
        let extra = self.multi_root == Some(true);
        self.roots.iter().chain(
            self.ca_certificates
                .iter()
                .filter(move |_| extra)
                .flat_map(|c| c.roots.iter()),
        )
    }
}

/// How a mesh accepts a peer's trust domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Acceptance {
    /// The peer uses the same trust domain.
    Same,
    /// Listed in `trustDomainAliases`: the peer's identities equal local ones.
    Alias,
    /// Listed in `caCertificates[].trustDomains`.
    CaCertificates,
    /// `PILOT_SKIP_VALIDATE_TRUST_DOMAIN=true`: any trust domain.
    NotValidated,
    No,
}

impl Acceptance {
    pub fn label(self) -> &'static str {
        match self {
            Acceptance::Same => "same trust domain",
            Acceptance::Alias => "alias",
            Acceptance::CaCertificates => "caCertificates",
            Acceptance::NotValidated => "not validated",
            Acceptance::No => "no",
        }
    }
}

/// Whether a mesh holds a peer's current root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootTrust {
    /// A current root of the peer is an anchor.
    Trusted,
    /// Held in `caCertificates`, but `ISTIO_MULTIROOT_MESH` is not on.
    NotCounted,
    /// Holds an older root for the peer's trust domain, not the current one.
    Stale,
    No,
}

impl RootTrust {
    pub fn label(self) -> &'static str {
        match self {
            RootTrust::Trusted => "trusted",
            RootTrust::NotCounted => "held, not counted",
            RootTrust::Stale => "old root only",
            RootTrust::No => "no",
        }
    }
}

/// One direction of a pair: what `mesh` thinks of `peer`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Direction {
    pub mesh: String,
    pub peer: String,
    pub root: RootTrust,
    pub trust_domain: Acceptance,
    /// `context: namespace/name` of the ServiceEntries in `mesh` importing from `peer`.
    pub imports: Vec<String>,
    /// `context: namespace/name` of the policies in `mesh` admitting `peer`'s identities.
    pub policies: Vec<String>,
}

/// A pair of meshes (ids in order) and both directions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pair {
    /// Tree node id (`NodeId::federation_pair`).
    pub id: String,
    pub a: String,
    pub b: String,
    pub a_to_b: Direction,
    pub b_to_a: Direction,
    /// From the findings of the pair and of its imports.
    pub health: Health,
}

impl Pair {
    /// Whether anything joins the two: a trusted root, an import or a policy either way.
    pub fn federated(&self) -> bool {
        [&self.a_to_b, &self.b_to_a].iter().any(|d| {
            d.root == RootTrust::Trusted || !d.imports.is_empty() || !d.policies.is_empty()
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Federation {
    pub meshes: Vec<MeshTrust>,
    pub pairs: Vec<Pair>,
}

impl Federation {
    pub fn mesh(&self, id: &str) -> Option<&MeshTrust> {
        self.meshes.iter().find(|m| m.mesh == id)
    }

    pub fn pair(&self, id: &str) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.id == id)
    }

    /// The imports of a pair, both directions, with the importing mesh.
    pub fn imports_of<'a>(&'a self, pair: &'a Pair) -> impl Iterator<Item = (&'a str, &'a Import)> {
        self.meshes
            .iter()
            .filter(move |m| m.mesh == pair.a || m.mesh == pair.b)
            .flat_map(move |m| {
                let peer = if m.mesh == pair.a { &pair.b } else { &pair.a };
                m.imports
                    .iter()
                    .filter(move |i| i.from.as_deref() == Some(peer.as_str()))
                    .map(move |i| (m.mesh.as_str(), i))
            })
    }
}
