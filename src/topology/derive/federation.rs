//! Multi-mesh federation: what each cluster says about trust, exports, imports and policies
//! ([`federation_facts`], per cluster), and the join of the meshes ([`federate`]): which mesh
//! trusts which, what crosses the boundary, and the findings when something is broken.
//!
//! Rules (see `DOMAIN.md`, "Multi-mesh federation"): mesh A trusts mesh B when a current root of
//! B is among A's anchors (its own roots, plus `caCertificates` when istiod runs with
//! `ISTIO_MULTIROOT_MESH=true`) and B's trust domain is among those A accepts (its own, aliases,
//! `caCertificates[].trustDomains`). An import is a ServiceEntry whose endpoints are another
//! mesh's gateway address (or network); an export is a Gateway server in AUTO_PASSTHROUGH or
//! ISTIO_MUTUAL mode.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::cluster::ClusterFacts;
use super::mesh_config::MeshSettings;
use super::objects::container_env;
use super::roots::parse_bundle;
use crate::topology::federation::*;
use crate::topology::istio::*;
use crate::topology::model::{Finding, Health, Mesh, NodeId, Severity};
use crate::topology::snapshot::ClusterSnapshot;

/// Roots that expire within this many seconds get a finding.
const EXPIRY_WARNING_SECS: u64 = 30 * 86_400;

/// What one cluster says about federation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FederationFacts {
    pub aliases: Vec<String>,
    pub ca_certificates: Vec<ExtraRoot>,
    /// `istio-ca-root-cert` in the system namespace.
    pub roots: Vec<RootCert>,
    /// `ISTIO_MULTIROOT_MESH` of its istiod Deployments (None: none here).
    pub multi_root: Option<bool>,
    pub skip_validate_trust_domain: bool,
    pub cluster_trust_bundle_api: bool,
    pub exports: Vec<Export>,
    /// Every ServiceEntry with endpoints; attributed to a peer (or dropped) by [`federate`].
    pub imports: Vec<Import>,
    pub policies: Vec<PeerPolicy>,
    pub problems: Vec<(Severity, String)>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn env_true(s: &ClusterSnapshot, var: &str) -> Option<bool> {
    let mut seen = None;
    for d in s.deployments.values() {
        if d.metadata.labels.as_ref().and_then(|l| l.get(LABEL_APP)) != Some(&ISTIOD_APP.into()) {
            continue;
        }
        let on = container_env(d, var).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        seen = Some(seen.unwrap_or(true) && on);
    }
    seen
}

/// Istio objects of a kind whose apiVersion is in `group`.
fn istio_objects<'a>(
    s: &'a ClusterSnapshot,
    kind: &'a str,
    group: &'a str,
) -> impl Iterator<Item = &'a kube::api::DynamicObject> {
    s.istio_of_kind(kind).filter(move |o| {
        o.types
            .as_ref()
            .is_some_and(|t| t.api_version.starts_with(group))
    })
}

fn full_name(o: &kube::api::DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or(""),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

/// Reads one cluster's federation facts: mesh config extras and root (from `settings`),
/// istiod env, Gateways, ServiceEntries, DestinationRules, AuthorizationPolicies.
pub(super) fn federation_facts(s: &ClusterSnapshot, settings: &MeshSettings) -> FederationFacts {
    let mut f = FederationFacts {
        aliases: settings.trust_domain_aliases.clone(),
        ..Default::default()
    };
    let source = format!(
        "{}: ConfigMap {SYSTEM_NAMESPACE}/{CONFIGMAP_MESH}",
        s.context
    );
    for ca in &settings.ca_certificates {
        let roots = match &ca.pem {
            Some(pem) => match parse_bundle(pem) {
                Ok(r) => r,
                Err(e) => {
                    f.problems.push((
                        Severity::Error,
                        format!("{source}: a caCertificates pem is not readable: {e}"),
                    ));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        f.ca_certificates.push(ExtraRoot {
            roots,
            spiffe_bundle_url: ca.spiffe_bundle_url.clone(),
            trust_domains: ca.trust_domains.clone(),
            source: source.clone(),
        });
    }
    if let Some(pem) = &settings.root_bundle {
        match parse_bundle(pem) {
            Ok(r) => f.roots = r,
            Err(e) => f.problems.push((
                Severity::Warning,
                format!(
                    "ConfigMap {SYSTEM_NAMESPACE}/{CONFIGMAP_ROOT_CERT}: `{KEY_ROOT_CERT}` is not readable: {e}"
                ),
            )),
        }
    }
    f.multi_root = env_true(s, ENV_MULTIROOT_MESH);
    f.skip_validate_trust_domain = env_true(s, ENV_SKIP_VALIDATE_TRUST_DOMAIN) == Some(true);
    f.cluster_trust_bundle_api = env_true(s, ENV_CLUSTER_TRUST_BUNDLE_API) == Some(true);

    // Exports: Gateway servers that pass mTLS through, with the address of the Service whose
    // pods the Gateway's selector picks.
    for gw in istio_objects(s, KIND_GATEWAY, GROUP_NETWORKING) {
        let spec = &gw.data["spec"];
        let selector: BTreeMap<String, String> = spec["selector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let address = gateway_address(s, &selector);
        for server in spec["servers"].as_array().into_iter().flatten() {
            let mode = server["tls"]["mode"].as_str().unwrap_or("");
            if mode != TLS_AUTO_PASSTHROUGH && mode != TLS_ISTIO_MUTUAL {
                continue;
            }
            f.exports.push(Export {
                cluster: s.context.clone(),
                gateway: full_name(gw),
                hosts: strings(&server["hosts"]),
                port: server["port"]["number"].as_u64().unwrap_or(0) as u32,
                mode: mode.to_string(),
                address: address.clone(),
                imported_by: Vec::new(),
            });
        }
    }

    // DestinationRules by host (for the imports' sni).
    let mut rules: BTreeMap<String, ImportRule> = BTreeMap::new();
    for dr in istio_objects(s, KIND_DESTINATION_RULE, GROUP_NETWORKING) {
        let spec = &dr.data["spec"];
        let Some(host) = spec["host"].as_str() else {
            continue;
        };
        let tls = &spec["trafficPolicy"]["tls"];
        let port_tls = spec["trafficPolicy"]["portLevelSettings"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["tls"].is_object()))
            .map(|p| &p["tls"]);
        let tls = if tls.is_object() {
            tls
        } else {
            port_tls.unwrap_or(tls)
        };
        rules.entry(host.to_string()).or_insert(ImportRule {
            name: full_name(dr),
            tls_mode: tls["mode"].as_str().map(str::to_string),
            sni: tls["sni"].as_str().map(str::to_string),
        });
    }

    for se in istio_objects(s, KIND_SERVICE_ENTRY, GROUP_NETWORKING) {
        let spec = &se.data["spec"];
        let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
        if endpoints.is_empty() {
            continue;
        }
        let hosts = strings(&spec["hosts"]);
        let mut addresses = Vec::new();
        let mut ports = BTreeSet::new();
        let mut networks = BTreeSet::new();
        let mut tls_mode_istio = true;
        for e in &endpoints {
            if let Some(a) = e["address"].as_str() {
                addresses.push(a.to_string());
            }
            for p in e["ports"].as_object().into_iter().flat_map(|m| m.values()) {
                if let Some(p) = p.as_u64() {
                    ports.insert(p as u32);
                }
            }
            if let Some(n) = e["network"].as_str() {
                networks.insert(n.to_string());
            }
            if e["labels"][LABEL_TLS_MODE].as_str() != Some(TLS_MODE_ISTIO) {
                tls_mode_istio = false;
            }
        }
        if ports.is_empty() {
            for p in spec["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["targetPort"].as_u64().or(p["number"].as_u64()) {
                    ports.insert(n as u32);
                }
            }
        }
        let destination_rule = hosts.iter().find_map(|h| rules.get(h).cloned());
        f.imports.push(Import {
            cluster: s.context.clone(),
            service_entry: full_name(se),
            hosts,
            location: spec["location"]
                .as_str()
                .unwrap_or("MESH_EXTERNAL")
                .to_string(),
            resolution: spec["resolution"].as_str().unwrap_or("NONE").to_string(),
            addresses,
            ports: ports.into_iter().collect(),
            networks: networks.into_iter().collect(),
            tls_mode_istio,
            subject_alt_names: strings(&spec["subjectAltNames"]),
            destination_rule,
            from: None,
            exported_by: None,
            service: None,
            runs_in: None,
            health: Health::Healthy,
        });
    }

    // AuthorizationPolicies that name identities by trust domain or by namespace.
    for ap in istio_objects(s, KIND_AUTHORIZATION_POLICY, GROUP_SECURITY) {
        let spec = &ap.data["spec"];
        let mut p = PeerPolicy {
            cluster: s.context.clone(),
            policy: full_name(ap),
            action: spec["action"].as_str().unwrap_or("ALLOW").to_string(),
            principals: Vec::new(),
            namespaces: Vec::new(),
            trust_domains: Vec::new(),
        };
        for rule in spec["rules"].as_array().into_iter().flatten() {
            for from in rule["from"].as_array().into_iter().flatten() {
                let source = &from["source"];
                p.principals.extend(strings(&source["principals"]));
                p.namespaces.extend(strings(&source["namespaces"]));
                p.trust_domains.extend(strings(&source["trustDomains"]));
            }
        }
        if !p.principals.is_empty() || !p.namespaces.is_empty() || !p.trust_domains.is_empty() {
            f.policies.push(p);
        }
    }
    f
}

/// The LoadBalancer address of the Service that selects the pods a Gateway selector picks.
fn gateway_address(s: &ClusterSnapshot, selector: &BTreeMap<String, String>) -> Option<String> {
    if selector.is_empty() {
        return None;
    }
    s.services.values().find_map(|svc| {
        let spec = svc.spec.as_ref()?;
        let picks = |map: Option<&BTreeMap<String, String>>| {
            map.is_some_and(|m| selector.iter().all(|(k, v)| m.get(k) == Some(v)))
        };
        if !(picks(spec.selector.as_ref()) || picks(svc.metadata.labels.as_ref())) {
            return None;
        }
        svc.status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .iter()
            .find_map(|i| i.ip.clone().or(i.hostname.clone()))
    })
}

/// Whether a Gateway host (`[ns/]host`, `*`, `*.suffix`) matches a host.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.rsplit_once('/').map(|(_, h)| h).unwrap_or(pattern);
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The host an SNI of the form `outbound_.<port>_.<subset>_.<host>` routes to.
fn sni_host(sni: &str) -> &str {
    let mut rest = sni;
    if let Some(r) = rest.strip_prefix("outbound_.") {
        rest = r;
        for _ in 0..2 {
            match rest.split_once("_.") {
                Some((_, r)) => rest = r,
                None => return sni,
            }
        }
    }
    rest
}

/// `(namespace, name)` of a `name.namespace.svc.<domain>` host.
fn service_of_host(host: &str) -> Option<(&str, &str)> {
    let (name, rest) = host.split_once('.')?;
    let (ns, rest) = rest.split_once('.')?;
    rest.starts_with("svc.").then_some((ns, name))
}

fn finding(severity: Severity, node: &str, message: String) -> Finding {
    Finding {
        severity,
        node: node.to_string(),
        message,
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// Joins the meshes: their trust, exports, imports and policies, the pairs that federate, and
/// the findings (added to the mesh whose configuration would need the fix). `now` is the time
/// of the latest data (Unix seconds), for expiry.
pub(super) fn federate(facts: &[Arc<ClusterFacts>], meshes: &mut [Mesh], now: u64) -> Federation {
    let mesh_of_context: BTreeMap<&str, usize> = meshes
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.clusters().map(move |c| (c.name.as_str(), i)))
        .collect();
    let mut trusts: Vec<MeshTrust> = meshes
        .iter()
        .map(|m| MeshTrust {
            mesh: m.id.clone(),
            trust_domain: m.trust_domain.clone(),
            trust_domain_aliases: Vec::new(),
            roots: Vec::new(),
            ca_certificates: Vec::new(),
            multi_root: None,
            skip_validate_trust_domain: false,
            cluster_trust_bundle_api: false,
            exports: Vec::new(),
            imports: Vec::new(),
            policies: Vec::new(),
        })
        .collect();
    for f in facts {
        let Some(&i) = mesh_of_context.get(f.context.as_str()) else {
            continue;
        };
        let fed = &f.federation;
        let t = &mut trusts[i];
        for a in &fed.aliases {
            push_unique(&mut t.trust_domain_aliases, a.clone());
        }
        for r in &fed.roots {
            if !t.roots.iter().any(|o| o.sha256 == r.sha256) {
                t.roots.push(r.clone());
            }
        }
        for ca in &fed.ca_certificates {
            let same = |o: &ExtraRoot| {
                o.roots == ca.roots
                    && o.spiffe_bundle_url == ca.spiffe_bundle_url
                    && o.trust_domains == ca.trust_domains
            };
            if !t.ca_certificates.iter().any(same) {
                t.ca_certificates.push(ca.clone());
            }
        }
        if let Some(on) = fed.multi_root {
            t.multi_root = Some(t.multi_root.unwrap_or(true) && on);
        }
        t.skip_validate_trust_domain |= fed.skip_validate_trust_domain;
        t.cluster_trust_bundle_api |= fed.cluster_trust_bundle_api;
        t.exports.extend(fed.exports.iter().cloned());
        t.imports.extend(fed.imports.iter().cloned());
        t.policies.extend(fed.policies.iter().cloned());
    }

    attribute_imports(&mut trusts, meshes);

    // Pairs: every two meshes that something joins (or an alias confuses).
    let mut pairs = Vec::new();
    for a in 0..trusts.len() {
        for b in a + 1..trusts.len() {
            let pair = Pair {
                id: NodeId::federation_pair(&trusts[a].mesh, &trusts[b].mesh),
                a: trusts[a].mesh.clone(),
                b: trusts[b].mesh.clone(),
                a_to_b: direction(&trusts[a], &trusts[b]),
                b_to_a: direction(&trusts[b], &trusts[a]),
                health: Health::Healthy,
            };
            let alias = [&pair.a_to_b, &pair.b_to_a]
                .iter()
                .any(|d| d.trust_domain == Acceptance::Alias);
            if pair.federated() || alias {
                pairs.push(pair);
            }
        }
    }

    let mut findings: Vec<(usize, Finding)> = Vec::new();
    let index_of = |id: &str| trusts.iter().position(|t| t.mesh == id).unwrap_or(0);
    for pair in &pairs {
        let ia = index_of(&pair.a);
        let ib = index_of(&pair.b);
        let imports = !pair.a_to_b.imports.is_empty() || !pair.b_to_a.imports.is_empty();
        for (x, y, d) in [(ia, ib, &pair.a_to_b), (ib, ia, &pair.b_to_a)] {
            let (mx, my) = (&trusts[x], &trusts[y]);
            let peer_namespaces: BTreeSet<&str> = meshes[y]
                .tenants
                .iter()
                .map(|t| t.namespace.as_str())
                .collect();
            for f in direction_findings(mx, my, d, imports, &pair.id, &peer_namespaces) {
                findings.push((x, f));
            }
        }
    }
    // Per mesh: exports open to everything, imports that cannot work, roots that expire.
    let federated: BTreeSet<&str> = pairs
        .iter()
        .filter(|p| p.federated())
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    for (i, t) in trusts.iter().enumerate() {
        let mesh_node = NodeId::mesh(&t.mesh);
        if federated.contains(t.mesh.as_str()) {
            for e in &t.exports {
                if e.mode == TLS_AUTO_PASSTHROUGH
                    && e.hosts.iter().any(|h| h.contains('*'))
                    && !e.imported_by.is_empty()
                {
                    findings.push((
                        i,
                        finding(
                            Severity::Warning,
                            &mesh_node,
                            format!(
                                "Gateway {}: {} exports {} with AUTO_PASSTHROUGH to {}: every matching service is reachable from there; list the exported hosts",
                                e.cluster,
                                e.gateway,
                                e.hosts.join(", "),
                                e.imported_by.join(", ")
                            ),
                        ),
                    ));
                }
            }
        }
        for imp in &t.imports {
            findings.extend(import_findings(t, imp, &trusts).into_iter().map(|f| (i, f)));
        }
        let mut roots: Vec<(&RootCert, &str)> = t.roots.iter().map(|r| (r, "its root")).collect();
        roots.extend(
            t.ca_certificates
                .iter()
                .flat_map(|c| c.roots.iter().map(|r| (r, "an imported root"))),
        );
        for (r, what) in roots {
            if now == 0 || r.not_after_secs > now + EXPIRY_WARNING_SECS {
                continue;
            }
            let (severity, when) = if r.not_after_secs <= now {
                (Severity::Error, format!("expired {}", r.not_after))
            } else {
                let days = (r.not_after_secs - now) / 86_400;
                (
                    Severity::Warning,
                    format!("expires {} (in {days} days)", r.not_after),
                )
            };
            findings.push((
                i,
                finding(
                    severity,
                    &mesh_node,
                    format!(
                        "{what} {} ({}) {when}: rotate it and import the new one in every peer",
                        r.subject,
                        r.short()
                    ),
                ),
            ));
        }
    }
    // Health of pairs and imports from their findings.
    let health_of = |node: &str| {
        Health::worst_of(
            findings
                .iter()
                .filter(|(_, f)| f.node == node)
                .map(|(_, f)| match f.severity {
                    Severity::Error => Health::Down,
                    Severity::Warning => Health::Degraded,
                    Severity::Info => Health::Healthy,
                }),
        )
    };
    for t in &mut trusts {
        for imp in &mut t.imports {
            imp.health = health_of(&NodeId::federation_import(
                &t.mesh,
                &imp.cluster,
                &imp.service_entry,
            ));
        }
    }
    for pair in &mut pairs {
        let imports = trusts
            .iter()
            .filter(|t| t.mesh == pair.a || t.mesh == pair.b)
            .flat_map(|t| t.imports.iter())
            .filter(|i| {
                i.from.as_deref() == Some(pair.a.as_str())
                    || i.from.as_deref() == Some(pair.b.as_str())
            })
            .map(|i| i.health);
        pair.health = health_of(&pair.id).worst(Health::worst_of(imports));
    }
    for (i, f) in findings {
        if let Some(m) = meshes.get_mut(i) {
            if !m.findings.contains(&f) {
                m.findings.push(f);
            }
        }
    }
    Federation {
        meshes: trusts,
        pairs,
    }
}

/// Gives each import its peer mesh (by the peer's gateway address or network), the exporting
/// Gateway whose hosts match, and where the service really runs; drops ServiceEntries that point
/// at no other mesh (not federation).
fn attribute_imports(trusts: &mut [MeshTrust], meshes: &[Mesh]) {
    let networks: Vec<BTreeSet<&str>> = meshes
        .iter()
        .map(|m| m.networks.iter().map(|n| n.name.as_str()).collect())
        .collect();
    let mut imported_by: Vec<(usize, usize, String)> = Vec::new();
    for a in 0..trusts.len() {
        let mut imports = std::mem::take(&mut trusts[a].imports);
        imports.retain_mut(|imp| {
            let by_address = (0..trusts.len()).find(|&b| {
                b != a
                    && trusts[b].exports.iter().any(|e| {
                        e.address
                            .as_ref()
                            .is_some_and(|addr| imp.addresses.contains(addr))
                    })
            });
            let by_network = || {
                (0..trusts.len()).find(|&b| {
                    b != a
                        && !networks[a]
                            .iter()
                            .any(|n| imp.networks.iter().any(|x| x == n))
                        && imp
                            .networks
                            .iter()
                            .any(|n| networks[b].contains(n.as_str()))
                })
            };
            let Some(b) = by_address.or_else(by_network) else {
                return false;
            };
            imp.from = Some(trusts[b].mesh.clone());
            let hosts: Vec<&str> =
                match imp.destination_rule.as_ref().and_then(|r| r.sni.as_deref()) {
                    Some(sni) => vec![sni_host(sni)],
                    None => imp.hosts.iter().map(String::as_str).collect(),
                };
            // Prefer a Gateway at the address the endpoints name.
            let mut candidates: Vec<(usize, &Export)> =
                trusts[b].exports.iter().enumerate().collect();
            candidates.sort_by_key(|(_, e)| {
                !e.address
                    .as_ref()
                    .is_some_and(|addr| imp.addresses.contains(addr))
            });
            let matched = candidates.into_iter().find_map(|(ei, e)| {
                let host = hosts
                    .iter()
                    .find(|h| e.hosts.iter().any(|p| host_matches(p, h)))?;
                Some((ei, e, *host))
            });
            if let Some((ei, e, host)) = matched {
                imp.exported_by = Some(format!("{}: {}", e.cluster, e.gateway));
                imported_by.push((b, ei, trusts[a].mesh.clone()));
                if let Some((ns, name)) = service_of_host(host) {
                    if let Some(svc) = meshes[b].service(ns, name) {
                        imp.service = Some(format!("{ns}/{name}"));
                        imp.runs_in = Some(svc.endpoints.clone());
                    }
                }
            }
            true
        });
        trusts[a].imports = imports;
    }
    for (b, ei, mesh) in imported_by {
        push_unique(&mut trusts[b].exports[ei].imported_by, mesh);
    }
}

/// What `mesh` thinks of `peer`.
fn direction(mesh: &MeshTrust, peer: &MeshTrust) -> Direction {
    let peer_roots: BTreeSet<&str> = peer.roots.iter().map(|r| r.sha256.as_str()).collect();
    let root = if mesh
        .anchors()
        .any(|r| peer_roots.contains(r.sha256.as_str()))
    {
        RootTrust::Trusted
    } else if mesh
        .ca_certificates
        .iter()
        .flat_map(|c| c.roots.iter())
        .any(|r| peer_roots.contains(r.sha256.as_str()))
    {
        RootTrust::NotCounted
    } else if mesh
        .ca_certificates
        .iter()
        .any(|c| !c.roots.is_empty() && c.trust_domains.iter().any(|t| t == &peer.trust_domain))
    {
        RootTrust::Stale
    } else {
        RootTrust::No
    };
    let td = peer.trust_domain.as_str();
    let trust_domain = if mesh.trust_domain == td {
        Acceptance::Same
    } else if mesh.trust_domain_aliases.iter().any(|a| a == td) {
        Acceptance::Alias
    } else if mesh
        .ca_certificates
        .iter()
        .any(|c| c.trust_domains.iter().any(|t| t == td))
    {
        Acceptance::CaCertificates
    } else if mesh.skip_validate_trust_domain {
        Acceptance::NotValidated
    } else {
        Acceptance::No
    };
    let imports = mesh
        .imports
        .iter()
        .filter(|i| i.from.as_deref() == Some(peer.mesh.as_str()))
        .map(|i| format!("{}: {}", i.cluster, i.service_entry))
        .collect();
    let prefix = format!("{td}/");
    let policies = mesh
        .policies
        .iter()
        .filter(|p| {
            p.principals.iter().any(|x| x.starts_with(&prefix))
                || p.trust_domains.iter().any(|t| t == td)
        })
        .map(|p| format!("{}: {}", p.cluster, p.policy))
        .collect();
    Direction {
        mesh: mesh.mesh.clone(),
        peer: peer.mesh.clone(),
        root,
        trust_domain,
        imports,
        policies,
    }
}

/// Findings of one direction of a pair (added to `mesh`).
fn direction_findings(
    mesh: &MeshTrust,
    peer: &MeshTrust,
    d: &Direction,
    imports: bool,
    node: &str,
    peer_namespaces: &BTreeSet<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let (m, p) = (&mesh.mesh, &peer.mesh);
    let why = if !d.imports.is_empty() {
        format!("{m} imports from {p} ({})", d.imports.join(", "))
    } else {
        format!("{p} imports from {m}")
    };
    if imports && !peer.roots.is_empty() {
        let current = peer
            .roots
            .iter()
            .map(|r| r.short())
            .collect::<Vec<_>>()
            .join(", ");
        let message = match d.root {
            RootTrust::Trusted => None,
            RootTrust::No => Some(format!(
                "{why}, but {m} holds none of {p}'s roots ({current}): add {p}'s root to caCertificates in {m}'s mesh config"
            )),
            RootTrust::NotCounted => Some(format!(
                "{why}; {m} holds {p}'s root in caCertificates, but its istiod runs without ISTIO_MULTIROOT_MESH=true, so it does not count"
            )),
            RootTrust::Stale => {
                let old: Vec<&str> = mesh
                    .ca_certificates
                    .iter()
                    .filter(|c| c.trust_domains.iter().any(|t| t == &peer.trust_domain))
                    .flat_map(|c| c.roots.iter().map(|r| r.short()))
                    .collect();
                Some(format!(
                    "{why}, but {p}'s root was rotated (now {current}) and {m} still holds only the old one ({}): import the new root in {m}'s caCertificates",
                    old.join(", ")
                ))
            }
        };
        if let Some(message) = message {
            out.push(finding(Severity::Error, node, message));
        }
    }
    if imports && d.trust_domain == Acceptance::No {
        out.push(finding(
            Severity::Error,
            node,
            format!(
                "{why}, but {m} does not accept trust domain {} (not its own, an alias or in caCertificates[].trustDomains): {p}'s identities are rejected",
                peer.trust_domain
            ),
        ));
    }
    if d.trust_domain == Acceptance::Alias {
        out.push(finding(
            Severity::Warning,
            node,
            format!(
                "{p}'s trust domain {} is an alias in {m}: {p}'s identities equal {m}'s in every AuthorizationPolicy; list it in caCertificates[].trustDomains instead",
                peer.trust_domain
            ),
        ));
    }
    // source.namespaces matches any trust domain: a same-named namespace of a trusted peer is
    // admitted too.
    if d.root == RootTrust::Trusted {
        for policy in mesh.policies.iter().filter(|p| p.action == "ALLOW") {
            let shared: Vec<&str> = policy
                .namespaces
                .iter()
                .filter(|n| peer_namespaces.iter().any(|pn| host_matches(n, pn)))
                .map(String::as_str)
                .collect();
            if !shared.is_empty() {
                out.push(finding(
                    Severity::Warning,
                    node,
                    format!(
                        "AuthorizationPolicy {}: {} allows source.namespaces {}, which {p} also has: {p}'s workloads there are admitted too; name principals with the trust domain",
                        policy.cluster,
                        policy.policy,
                        shared.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// Findings of one import (added to the importing mesh).
fn import_findings(mesh: &MeshTrust, imp: &Import, trusts: &[MeshTrust]) -> Vec<Finding> {
    let mut out = Vec::new();
    let node = NodeId::federation_import(&mesh.mesh, &imp.cluster, &imp.service_entry);
    let Some(from) = imp.from.as_deref() else {
        return out;
    };
    let name = format!("ServiceEntry {}: {}", imp.cluster, imp.service_entry);
    if imp.exported_by.is_none() {
        let exported: Vec<String> = trusts
            .iter()
            .filter(|t| t.mesh == from)
            .flat_map(|t| t.exports.iter().flat_map(|e| e.hosts.iter().cloned()))
            .collect();
        let sni = imp
            .destination_rule
            .as_ref()
            .and_then(|r| r.sni.clone())
            .map(|s| format!(" (DestinationRule sni {s})"))
            .unwrap_or_default();
        out.push(finding(
            Severity::Error,
            &node,
            format!(
                "{name} imports {}{sni} from {from}, but no Gateway of {from} exports it (it exports: {}); name the host as exported or set a DestinationRule tls.sni",
                imp.hosts.join(", "),
                if exported.is_empty() { "nothing".to_string() } else { exported.join(", ") }
            ),
        ));
    }
    if imp.location == "MESH_EXTERNAL" {
        out.push(finding(
            Severity::Error,
            &node,
            format!(
                "{name} is MESH_EXTERNAL: no auto mTLS to {from}'s gateway; make it MESH_INTERNAL"
            ),
        ));
    }
    if !imp.tls_mode_istio {
        out.push(finding(
            Severity::Error,
            &node,
            format!(
                "{name}: endpoints lack the label {LABEL_TLS_MODE}: {TLS_MODE_ISTIO}: plaintext to {from}'s TLS gateway"
            ),
        ));
    }
    if imp.subject_alt_names.is_empty() {
        out.push(finding(
            Severity::Warning,
            &node,
            format!(
                "{name} has no subjectAltNames: {from}'s identity would be read in {}'s trust domain",
                mesh.mesh
            ),
        ));
    } else if let Some(peer) = trusts.iter().find(|t| t.mesh == from) {
        let prefix = format!("spiffe://{}/", peer.trust_domain);
        if !imp.subject_alt_names.iter().any(|s| s.starts_with(&prefix)) {
            out.push(finding(
                Severity::Warning,
                &node,
                format!(
                    "{name}: subjectAltNames {} name no identity of {from} (trust domain {})",
                    imp.subject_alt_names.join(", "),
                    peer.trust_domain
                ),
            ));
        }
    }
    out
}
