//! Federation derived from object fixtures (pure, no network): two meshes, each one primary
//! cluster, built as real Kubernetes/Istio object shapes; each test changes one thing and checks
//! the finding it must raise (or not).

use std::time::{Duration, SystemTime};

use meshtop::topology::derive::derive;
use meshtop::topology::federation::*;
use meshtop::topology::model::*;
use meshtop::topology::snapshot::{Connection, KubeObject, Store, Update};
use serde_json::{json, Value};

const ROOT_A: &str = include_str!("fixtures/federation/root-a.pem");
const ROOT_B: &str = include_str!("fixtures/federation/root-b.pem");
const ROOT_B_NEXT: &str = include_str!("fixtures/federation/root-b-next.pem");
const GW_B: &str = "192.0.2.21";
const HOST: &str = "reviews.bookinfo.svc.cluster.local";

/// One mesh's primary cluster.
#[derive(Clone)]
struct MeshSpec {
    context: &'static str,
    mesh: &'static str,
    td: &'static str,
    network: &'static str,
    root: &'static str,
    /// caCertificates: (pem, trust domains).
    imports_roots: Vec<(&'static str, Vec<&'static str>)>,
    aliases: Vec<&'static str>,
    multi_root: bool,
}

fn alpha() -> MeshSpec {
    MeshSpec {
        context: "alpha",
        mesh: "mesh-a",
        td: "mesh-a.local",
        network: "network-a",
        root: ROOT_A,
        imports_roots: vec![(ROOT_B, vec!["mesh-b.local"])],
        aliases: vec![],
        multi_root: true,
    }
}

fn beta() -> MeshSpec {
    MeshSpec {
        context: "beta",
        mesh: "mesh-b",
        td: "mesh-b.local",
        network: "network-b",
        root: ROOT_B,
        imports_roots: vec![(ROOT_A, vec!["mesh-a.local"])],
        aliases: vec![],
        multi_root: true,
    }
}

fn mesh_objects(m: &MeshSpec) -> Vec<Value> {
    let mut mesh = json!({
        "trustDomain": m.td,
        "defaultConfig": {"meshId": m.mesh},
        "trustDomainAliases": m.aliases,
        "caCertificates": m.imports_roots.iter().map(|(pem, tds)| json!({"pem": pem, "trustDomains": tds})).collect::<Vec<_>>(),
    });
    if m.aliases.is_empty() {
        mesh.as_object_mut().unwrap().remove("trustDomainAliases");
    }
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", "labels": {"topology.istio.io/network": m.network}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bookinfo", "labels": {"istio-injection": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
               "data": {"mesh": serde_yaml::to_string(&mesh).unwrap()}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert", "namespace": "istio-system"},
               "data": {"root-cert.pem": m.root}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod"}},
                        "template": {"metadata": {"labels": {"app": "istiod"}},
                                     "spec": {"containers": [{"name": "discovery", "image": "istio/pilot:1.28.0",
                                        "env": [{"name": "CLUSTER_ID", "value": m.context},
                                                {"name": "ISTIO_MULTIROOT_MESH", "value": m.multi_root.to_string()}]}]}}},
               "status": {"replicas": 1, "readyReplicas": 1}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                            "labels": {"istio": "eastwestgateway", "topology.istio.io/network": m.network}},
               "spec": {"type": "LoadBalancer", "selector": {"istio": "eastwestgateway"}, "ports": [{"port": 15443}]},
               "status": {"loadBalancer": {"ingress": [{"ip": if m.context == "beta" { GW_B } else { "192.0.2.20" }}]}}}),
    ]
}

/// beta exports `reviews` and runs it; alpha imports it; beta admits alpha's principal.
fn federation_objects() -> (Vec<Value>, Vec<Value>) {
    let beta = vec![
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "export", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "eastwestgateway"},
                        "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                     "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": [HOST]}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "reviews-1", "namespace": "bookinfo", "labels": {"kubernetes.io/service-name": "reviews"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.2.0.5"], "conditions": {"ready": true}},
                             {"addresses": ["10.2.0.6"], "conditions": {"ready": true}}]}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "reviews-from-mesh-a", "namespace": "bookinfo"},
               "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"principals": ["mesh-a.local/ns/shop/sa/default"]}}]}]}}),
    ];
    let alpha = vec![service_entry(json!({}))];
    (alpha, beta)
}

/// The import, with `patch` merged into its spec.
fn service_entry(patch: Value) -> Value {
    let mut se = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "reviews-mesh-b", "namespace": "bookinfo"},
        "spec": {"hosts": [HOST], "location": "MESH_INTERNAL", "resolution": "STATIC",
                 "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                 "endpoints": [{"address": GW_B, "network": "network-b", "ports": {"http": 15443},
                                "labels": {"security.istio.io/tlsMode": "istio"}}],
                 "subjectAltNames": ["spiffe://mesh-b.local/ns/bookinfo/sa/reviews"]}});
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            se["spec"].as_object_mut().unwrap().remove(k);
        } else {
            se["spec"][k] = v.clone();
        }
    }
    se
}

fn store_at(clusters: &[(&str, Vec<Value>)], at: SystemTime) -> Store {
    let mut store = Store::default();
    for (context, objects) in clusters {
        store.apply(
            Update::Connection {
                context: context.to_string(),
                connection: Connection::Live,
            },
            at,
        );
        for o in objects {
            let object = KubeObject::from_value(o.clone()).expect("known object");
            store.apply(
                Update::Apply {
                    context: context.to_string(),
                    object: Box::new(object),
                },
                at,
            );
        }
    }
    store
}

/// 2026-11-01, well before the fixtures' roots expire (2036).
fn today() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

fn derive_with(
    a: MeshSpec,
    b: MeshSpec,
    alpha_extra: Vec<Value>,
    beta_extra: Vec<Value>,
) -> Topology {
    derive_at(a, b, alpha_extra, beta_extra, today())
}

fn derive_at(
    a: MeshSpec,
    b: MeshSpec,
    alpha_extra: Vec<Value>,
    beta_extra: Vec<Value>,
    at: SystemTime,
) -> Topology {
    let (alpha_fed, beta_fed) = federation_objects();
    let mut alpha_objects = mesh_objects(&a);
    alpha_objects.extend(alpha_fed);
    alpha_objects.extend(alpha_extra);
    let mut beta_objects = mesh_objects(&b);
    beta_objects.extend(beta_fed);
    beta_objects.extend(beta_extra);
    derive(&store_at(
        &[("alpha", alpha_objects), ("beta", beta_objects)],
        at,
    ))
}

fn federation_findings(t: &Topology) -> Vec<&Finding> {
    t.meshes
        .iter()
        .flat_map(|m| m.findings.iter())
        .filter(|f| {
            f.node.starts_with("fedpair:")
                || f.node.starts_with("fedimp:")
                || (f.node.starts_with("mesh:")
                    && (f.message.contains(" root ") || f.message.contains("AUTO_PASSTHROUGH")))
        })
        .collect()
}

fn has(t: &Topology, severity: Severity, needle: &str) -> bool {
    federation_findings(t)
        .iter()
        .any(|f| f.severity == severity && f.message.contains(needle))
}

#[test]
fn a_sound_federation_is_derived_with_no_findings() {
    let t = derive_with(alpha(), beta(), vec![], vec![]);
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
    let fed = &t.federation;
    assert_eq!(fed.pairs.len(), 1);
    let p = &fed.pairs[0];
    assert_eq!((p.a.as_str(), p.b.as_str()), ("mesh-a", "mesh-b"));
    assert_eq!(p.a_to_b.root, RootTrust::Trusted);
    assert_eq!(p.a_to_b.trust_domain, Acceptance::CaCertificates);
    assert_eq!(p.b_to_a.root, RootTrust::Trusted);
    assert_eq!(
        p.a_to_b.imports,
        vec!["alpha: bookinfo/reviews-mesh-b".to_string()]
    );
    assert_eq!(
        p.b_to_a.policies,
        vec!["beta: bookinfo/reviews-from-mesh-a".to_string()]
    );
    assert_eq!(p.health, Health::Healthy);
    let a = fed.mesh("mesh-a").unwrap();
    assert_eq!(
        a.roots[0].sha256,
        include_str!("fixtures/federation/root-a.sha256").trim()
    );
    assert_eq!(a.multi_root, Some(true));
    let imp = &a.imports[0];
    assert_eq!(imp.from.as_deref(), Some("mesh-b"));
    assert_eq!(
        imp.exported_by.as_deref(),
        Some("beta: istio-system/export")
    );
    assert_eq!(imp.service.as_deref(), Some("bookinfo/reviews"));
    let runs_in = imp.runs_in.as_ref().unwrap();
    assert_eq!(runs_in.iter().map(|g| g.ready).sum::<u32>(), 2);
    assert!(runs_in.iter().all(|g| &*g.cluster == "beta"));
    let b = fed.mesh("mesh-b").unwrap();
    assert_eq!(b.exports[0].imported_by, vec!["mesh-a".to_string()]);
    assert_eq!(b.exports[0].address.as_deref(), Some(GW_B));
}

#[test]
fn meshes_that_do_not_federate_make_no_pair() {
    let mut a = alpha();
    a.imports_roots.clear();
    let mut b = beta();
    b.imports_roots.clear();
    let (alpha_fed, _) = federation_objects();
    let mut alpha_objects = mesh_objects(&a);
    alpha_objects.extend(
        alpha_fed
            .into_iter()
            .filter(|o| o["kind"] != "ServiceEntry"),
    );
    let t = derive(&store_at(
        &[("alpha", alpha_objects), ("beta", mesh_objects(&b))],
        today(),
    ));
    assert!(t.federation.pairs.is_empty());
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
}

#[test]
fn an_import_without_the_peer_root_is_an_error_and_names_the_import() {
    let mut a = alpha();
    a.imports_roots.clear();
    let t = derive_with(a, beta(), vec![], vec![]);
    assert!(has(&t, Severity::Error, "mesh-a imports from mesh-b (alpha: bookinfo/reviews-mesh-b), but mesh-a holds none of mesh-b's roots"));
    assert!(has(
        &t,
        Severity::Error,
        "mesh-a does not accept trust domain mesh-b.local"
    ));
    assert_eq!(t.federation.pairs[0].a_to_b.root, RootTrust::No);
    assert_eq!(t.federation.pairs[0].health, Health::Down);
}

#[test]
fn extra_roots_without_multi_root_do_not_count() {
    let mut a = alpha();
    a.multi_root = false;
    let t = derive_with(a, beta(), vec![], vec![]);
    assert_eq!(t.federation.pairs[0].a_to_b.root, RootTrust::NotCounted);
    assert!(has(
        &t,
        Severity::Error,
        "without ISTIO_MULTIROOT_MESH=true"
    ));
}

#[test]
fn a_rotated_root_not_yet_imported_is_named_as_such() {
    let mut b = beta();
    b.root = ROOT_B_NEXT;
    let t = derive_with(alpha(), b, vec![], vec![]);
    assert_eq!(t.federation.pairs[0].a_to_b.root, RootTrust::Stale);
    assert!(has(&t, Severity::Error, "mesh-b's root was rotated"));
    // Importing the new root repairs it.
    let mut a = alpha();
    a.imports_roots.push((ROOT_B_NEXT, vec!["mesh-b.local"]));
    let mut b = beta();
    b.root = ROOT_B_NEXT;
    let t = derive_with(a, b, vec![], vec![]);
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
}

#[test]
fn an_alias_for_the_peer_trust_domain_is_a_warning() {
    let mut a = alpha();
    a.aliases = vec!["mesh-b.local"];
    let t = derive_with(a, beta(), vec![], vec![]);
    assert_eq!(t.federation.pairs[0].a_to_b.trust_domain, Acceptance::Alias);
    assert!(has(
        &t,
        Severity::Warning,
        "mesh-b's trust domain mesh-b.local is an alias in mesh-a"
    ));
}

#[test]
fn an_allow_by_namespace_admits_a_trusted_peer_with_that_namespace() {
    let policy = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-shop", "namespace": "bookinfo"},
        "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["shop"]}}]}]}});
    let t = derive_with(alpha(), beta(), vec![], vec![policy]);
    assert!(has(&t, Severity::Warning, "AuthorizationPolicy beta: bookinfo/allow-shop allows source.namespaces shop, which mesh-a also has"));
    // A namespace the peer does not have is fine.
    let policy = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-ops", "namespace": "bookinfo"},
        "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["ops"]}}]}]}});
    let t = derive_with(alpha(), beta(), vec![], vec![policy]);
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
}

#[test]
fn a_wildcard_auto_passthrough_export_is_a_warning_on_the_exporting_mesh() {
    let wide = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "export", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "eastwestgateway"},
                 "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                              "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]}});
    let t = derive_with(alpha(), beta(), vec![], vec![wide]);
    let f = federation_findings(&t);
    assert!(
        f.iter().any(|f| f.node == "mesh:mesh-b" && f.message.contains("Gateway beta: istio-system/export exports *.local with AUTO_PASSTHROUGH to mesh-a")),
        "{f:#?}"
    );
}

#[test]
fn an_import_host_needs_a_matching_export_or_a_destination_rule_sni() {
    let renamed = "reviews.bookinfo.mesh-b.global";
    let se = service_entry(json!({"hosts": [renamed]}));
    let t = derive_with(alpha(), beta(), vec![se.clone()], vec![]);
    assert!(has(&t, Severity::Error, &format!("imports {renamed} from mesh-b, but no Gateway of mesh-b exports it (it exports: {HOST})")));
    let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews-mesh-b", "namespace": "bookinfo"},
        "spec": {"host": renamed, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": format!("outbound_.9080_._.{HOST}")}}}});
    let t = derive_with(alpha(), beta(), vec![se, dr], vec![]);
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
    let imp = &t.federation.mesh("mesh-a").unwrap().imports[0];
    assert_eq!(imp.service.as_deref(), Some("bookinfo/reviews"));
    assert_eq!(
        imp.destination_rule.as_ref().unwrap().tls_mode.as_deref(),
        Some("ISTIO_MUTUAL")
    );
}

#[test]
fn an_import_must_be_mesh_internal_with_tls_mode_and_peer_identities() {
    let t = derive_with(
        alpha(),
        beta(),
        vec![service_entry(json!({"location": "MESH_EXTERNAL"}))],
        vec![],
    );
    assert!(has(&t, Severity::Error, "is MESH_EXTERNAL"));
    let no_label =
        service_entry(json!({"endpoints": [{"address": GW_B, "ports": {"http": 15443}}]}));
    let t = derive_with(alpha(), beta(), vec![no_label], vec![]);
    assert!(has(
        &t,
        Severity::Error,
        "endpoints lack the label security.istio.io/tlsMode: istio"
    ));
    let t = derive_with(
        alpha(),
        beta(),
        vec![service_entry(json!({"subjectAltNames": null}))],
        vec![],
    );
    assert!(has(&t, Severity::Warning, "has no subjectAltNames"));
    let local =
        service_entry(json!({"subjectAltNames": ["spiffe://mesh-a.local/ns/bookinfo/sa/reviews"]}));
    let t = derive_with(alpha(), beta(), vec![local], vec![]);
    assert!(has(&t, Severity::Warning, "name no identity of mesh-b"));
    let imp_node = "fedimp:mesh-a/alpha/bookinfo/reviews-mesh-b";
    assert!(t.findings_for(imp_node).count() >= 1);
}

#[test]
fn a_root_close_to_expiry_is_a_warning_and_an_expired_one_an_error() {
    let t = derive_with(alpha(), beta(), vec![], vec![]);
    let not_after = t.federation.mesh("mesh-b").unwrap().roots[0].not_after_secs;
    let soon = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after - 10 * 86_400);
    let t = derive_at(alpha(), beta(), vec![], vec![], soon);
    assert!(has(&t, Severity::Warning, "(in 10 days)"));
    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after + 86_400);
    let t = derive_at(alpha(), beta(), vec![], vec![], late);
    assert!(has(&t, Severity::Error, "expired"));
}

#[test]
fn a_key_in_the_root_config_map_is_never_kept() {
    let mut b = beta();
    let with_key = format!(
        "-----BEGIN PRIVATE KEY-----\nTUVTSFRPUC1TRUNSRVQ=\n-----END PRIVATE KEY-----\n{ROOT_B}"
    );
    b.root = Box::leak(with_key.into_boxed_str());
    let t = derive_with(alpha(), b, vec![], vec![]);
    let json = meshtop::output::json(&t);
    assert!(!json.contains("TUVTSFRPUC1TRUNSRVQ"));
    assert!(!json.contains("PRIVATE KEY"));
    assert!(
        !json.contains("BEGIN CERTIFICATE"),
        "roots are shown by fingerprint only"
    );
    assert_eq!(federation_findings(&t), Vec::<&Finding>::new());
}
