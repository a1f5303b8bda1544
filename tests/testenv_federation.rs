//! Two federated meshes in the test environment (`testenv/up --topology federation`): each
//! mesh has its own root (plug-in CA), trusts the other's root (`caCertificates` in its mesh
//! config, `ISTIO_MULTIROOT_MESH=true`), one mesh exports one service through its east-west
//! gateway, the other imports it with a ServiceEntry, and an AuthorizationPolicy admits the
//! importing mesh's principal.
//!
//! The test brings up an environment of its own in `<state dir>-federation` and tears it down
//! at the end. Everything it asserts comes from the environment's own description
//! (`federation.json`, `istiod.json`) checked against the real objects: the API servers and the
//! real istiods' `/debug/mesh` (HTTP to 127.0.0.1). No names are constants here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::testenv::{get_local, pem_sha256, wait_for, Federation, OwnEnv, TestEnv};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

const SYSTEM_NS: &str = "istio-system";
const EASTWEST_SERVICE: &str = "istio-eastwestgateway";
const WAIT: Duration = Duration::from_secs(60);

fn split_ns_name(s: &str) -> Result<(&str, &str)> {
    s.split_once('/')
        .with_context(|| format!("{s:?} is not <namespace>/<name>"))
}

fn istio_api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// The root PEM in `istio-system/istio-ca-root-cert` of a context (istiod's namespace
/// controller writes it).
async fn published_root(env: &TestEnv, ctx: &str) -> Result<Option<String>> {
    let cms: Api<ConfigMap> = Api::namespaced(env.client(ctx).await?, SYSTEM_NS);
    Ok(cms
        .get_opt("istio-ca-root-cert")
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("root-cert.pem").cloned()))
}

/// The `istio-eastwestgateway` Service's load-balancer address in a context.
async fn eastwest_address(env: &TestEnv, ctx: &str) -> Result<Option<String>> {
    let svcs: Api<Service> = Api::namespaced(env.client(ctx).await?, SYSTEM_NS);
    Ok(svcs
        .get(EASTWEST_SERVICE)
        .await?
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|i| i.into_iter().next())
        .and_then(|i| i.ip))
}

/// Meshes: distinct roots, each published in every cluster of its mesh; each istiod's mesh
/// config trusts the other meshes' roots (the very PEMs they publish) with their trust domains.
async fn check_meshes(env: &TestEnv, fed: &Federation) -> Result<()> {
    ensure!(
        fed.meshes.len() == 2,
        "want two meshes, got {:?}",
        fed.meshes.iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    let roots: BTreeSet<&str> = fed.meshes.iter().map(|m| m.root.sha256.as_str()).collect();
    ensure!(
        roots.len() == fed.meshes.len(),
        "the meshes share a root: {roots:?}"
    );
    let tds: BTreeSet<&str> = fed.meshes.iter().map(|m| m.trust_domain.as_str()).collect();
    ensure!(
        tds.len() == fed.meshes.len(),
        "the meshes share a trust domain: {tds:?}"
    );
    let mut all_clusters = BTreeSet::new();
    for m in &fed.meshes {
        ensure!(!m.clusters.is_empty(), "mesh {} has no cluster", m.id);
        for c in &m.clusters {
            ensure!(
                env.contexts.contains(c),
                "mesh {}: cluster {c} is no context",
                m.id
            );
            ensure!(
                all_clusters.insert(c.clone()),
                "cluster {c} is in two meshes"
            );
        }
        ensure!(
            m.root.sha256.len() == 64
                && m.root
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "mesh {}: root sha256 {:?} is not lowercase hex",
            m.id,
            m.root.sha256
        );
        ensure!(
            m.root.subject.contains(&m.id),
            "mesh {}: root subject {:?} does not name the mesh",
            m.id,
            m.root.subject
        );
        ensure!(
            m.root.not_after.ends_with('Z') && m.root.not_after.len() == 20,
            "mesh {}: notAfter {:?} is not RFC 3339 UTC",
            m.id,
            m.root.not_after
        );
        ensure!(m.multi_root, "mesh {}: multiRoot is false", m.id);
    }
    ensure!(
        all_clusters == env.contexts.iter().cloned().collect::<BTreeSet<_>>(),
        "the meshes' clusters {all_clusters:?} are not the contexts {:?}",
        env.contexts
    );

    // Each cluster publishes its mesh's root (wait: the namespace controller runs in istiod).
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    for m in &fed.meshes {
        for ctx in &m.clusters {
            let pem = wait_for(
                &format!("{ctx}: istio-system/istio-ca-root-cert = root of {}", m.id),
                WAIT,
                || async {
                    let Some(pem) = published_root(env, ctx).await? else {
                        return Ok(None);
                    };
                    Ok((pem_sha256(&pem)? == m.root.sha256).then_some(pem))
                },
            )
            .await?;
            published.insert(m.id.clone(), pem);
        }
    }

    for m in &fed.meshes {
        let others: Vec<_> = fed.meshes.iter().filter(|o| o.id != m.id).collect();
        // federation.json: the other meshes' roots, with their trust domains.
        for o in &others {
            let ca = m
                .ca_certificates
                .iter()
                .find(|c| c.sha256 == o.root.sha256)
                .with_context(|| {
                    format!(
                        "mesh {}: no caCertificates entry with the root of {}",
                        m.id, o.id
                    )
                })?;
            ensure!(
                ca.trust_domains == vec![o.trust_domain.clone()],
                "mesh {}: the root of {} has trustDomains {:?}",
                m.id,
                o.id,
                ca.trust_domains
            );
        }
        ensure!(
            m.ca_certificates.iter().all(|c| c.sha256 != m.root.sha256),
            "mesh {} imports its own root",
            m.id
        );
        for ctx in &m.clusters {
            let urls = &env.istiod[ctx];
            ensure!(
                urls.role == "primary",
                "{ctx}: role {} (want primary)",
                urls.role
            );
            // The istiod Deployment carries the multi-root switch (meshtop reads it there).
            let deps: Api<Deployment> = Api::namespaced(env.client(ctx).await?, SYSTEM_NS);
            let dep = deps.get("istiod").await?;
            let multiroot = dep
                .spec
                .template
                .spec
                .and_then(|s| s.containers.into_iter().next())
                .and_then(|c| c.env)
                .unwrap_or_default()
                .into_iter()
                .any(|e| e.name == "ISTIO_MULTIROOT_MESH" && e.value.as_deref() == Some("true"));
            ensure!(
                multiroot,
                "{ctx}: Deployment istiod has no ISTIO_MULTIROOT_MESH=true"
            );
            // The real istiod's active mesh config.
            let mesh: Value = wait_for(
                &format!("{ctx}: istiod /debug/mesh trusts the other meshes' roots"),
                WAIT,
                || async {
                    let (status, body) = get_local(&format!("{}/debug/mesh", urls.debug)).await?;
                    if status != 200 {
                        bail!("/debug/mesh answered {status}");
                    }
                    let mesh: Value = serde_json::from_str(&body)?;
                    let cas = mesh["caCertificates"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let all = others.iter().all(|o| {
                        let want = published[&o.id].trim();
                        cas.iter().any(|c| {
                            c["pem"].as_str().map(str::trim) == Some(want)
                                && c["trustDomains"]
                                    .as_array()
                                    .is_some_and(|t| t.iter().any(|t| t == o.trust_domain.as_str()))
                        })
                    });
                    Ok(all.then_some(mesh))
                },
            )
            .await?;
            ensure!(
                mesh["trustDomain"] == m.trust_domain.as_str(),
                "{ctx}: /debug/mesh trustDomain {} (want {})",
                mesh["trustDomain"],
                m.trust_domain
            );
            let own = published[&m.id].trim();
            ensure!(
                !mesh["caCertificates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["pem"].as_str().map(str::trim) == Some(own)),
                "{ctx}: /debug/mesh lists its own root in caCertificates"
            );
        }
    }

    // No remote secrets across meshes (metadata only; values are never read).
    let mesh_of: BTreeMap<&str, &str> = fed
        .meshes
        .iter()
        .flat_map(|m| m.clusters.iter().map(move |c| (c.as_str(), m.id.as_str())))
        .collect();
    for ctx in &env.contexts {
        let secrets: Api<Secret> = Api::namespaced(env.client(ctx).await?, SYSTEM_NS);
        for s in secrets
            .list_metadata(&ListParams::default().labels("istio/multiCluster=true"))
            .await?
            .items
        {
            let named = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("networking.istio.io/cluster"))
                .cloned()
                .unwrap_or_default();
            ensure!(
                mesh_of.get(named.as_str()) == mesh_of.get(ctx.as_str()),
                "{ctx}: remote secret {:?} for cluster {named} of another mesh",
                s.metadata.name
            );
        }
    }
    Ok(())
}

/// `<name>.<namespace>.svc.cluster.local` -> (namespace, name).
fn service_of_host(host: &str) -> Result<(&str, &str)> {
    let rest = host
        .strip_suffix(".svc.cluster.local")
        .with_context(|| format!("{host} is not a cluster.local service host"))?;
    let (name, ns) = rest
        .split_once('.')
        .with_context(|| format!("{host} has no namespace"))?;
    Ok((ns, name))
}

async fn check_exports(env: &TestEnv, fed: &Federation) -> Result<()> {
    ensure!(!fed.exports.is_empty(), "no exports");
    for e in &fed.exports {
        let mesh = fed
            .meshes
            .iter()
            .find(|m| m.id == e.mesh)
            .context("export of an unknown mesh")?;
        ensure!(
            mesh.clusters.contains(&e.cluster),
            "export: {} is not in {}",
            e.cluster,
            e.mesh
        );
        let client = env.client(&e.cluster).await?;
        let (gns, gname) = split_ns_name(&e.gateway)?;
        ensure!(
            gns == SYSTEM_NS,
            "export gateway {} is not in {SYSTEM_NS}",
            e.gateway
        );
        ensure!(
            e.port == 15443 && e.mode == "AUTO_PASSTHROUGH",
            "export {e:?}"
        );
        ensure!(
            !e.hosts.is_empty() && e.hosts.iter().all(|h| !h.contains('*')),
            "export hosts {:?} are not named services",
            e.hosts
        );
        let gws = istio_api(
            &client,
            SYSTEM_NS,
            "networking.istio.io",
            "Gateway",
            "gateways",
        );
        let gw = gws.get(gname).await?;
        ensure!(
            gw.data["spec"]["selector"]["istio"] == "eastwestgateway",
            "{}: selector {}",
            e.gateway,
            gw.data["spec"]["selector"]
        );
        let servers = gw.data["spec"]["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let server = servers
            .iter()
            .find(|s| s["port"]["number"] == e.port)
            .with_context(|| format!("{}: no server on {}", e.gateway, e.port))?;
        ensure!(
            server["tls"]["mode"] == e.mode.as_str(),
            "{}: tls mode {}",
            e.gateway,
            server["tls"]["mode"]
        );
        let hosts: Vec<String> = serde_json::from_value(server["hosts"].clone())?;
        ensure!(
            hosts == e.hosts,
            "{}: hosts {hosts:?} (federation.json: {:?})",
            e.gateway,
            e.hosts
        );
        // Nothing else passes every service through (no expose-services `*.local`).
        for g in gws.list(&ListParams::default()).await?.items {
            for s in g.data["spec"]["servers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if s["tls"]["mode"] == "AUTO_PASSTHROUGH" {
                    ensure!(
                        !s["hosts"]
                            .as_array()
                            .unwrap_or(&vec![])
                            .iter()
                            .any(|h| h.as_str().is_some_and(|h| h.contains('*'))),
                        "{}: Gateway {:?} passes wildcard hosts {}",
                        e.cluster,
                        g.metadata.name,
                        s["hosts"]
                    );
                }
            }
        }
        // The exported service exists there, the address is the east-west gateway's.
        for h in &e.hosts {
            let (ns, name) = service_of_host(h)?;
            Api::<Service>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .with_context(|| format!("{}: exported service {ns}/{name}", e.cluster))?;
        }
        ensure!(
            eastwest_address(env, &e.cluster).await?.as_deref() == Some(e.address.as_str()),
            "{}: {EASTWEST_SERVICE} address is not {}",
            e.cluster,
            e.address
        );
    }
    Ok(())
}

async fn check_imports(env: &TestEnv, fed: &Federation) -> Result<()> {
    ensure!(!fed.imports.is_empty(), "no imports");
    for i in &fed.imports {
        ensure!(
            i.mesh != i.from,
            "import {} from its own mesh",
            i.service_entry
        );
        let from = fed
            .meshes
            .iter()
            .find(|m| m.id == i.from)
            .context("import from an unknown mesh")?;
        let export = fed
            .exports
            .iter()
            .find(|e| e.mesh == i.from && e.hosts == i.hosts)
            .with_context(|| {
                format!(
                    "{}: {:?} is exported by no cluster of {}",
                    i.service_entry, i.hosts, i.from
                )
            })?;
        let client = env.client(&i.cluster).await?;
        let (ns, name) = split_ns_name(&i.service_entry)?;
        let se = istio_api(
            &client,
            ns,
            "networking.istio.io",
            "ServiceEntry",
            "serviceentries",
        )
        .get(name)
        .await?;
        let spec = &se.data["spec"];
        let hosts: Vec<String> = serde_json::from_value(spec["hosts"].clone())?;
        ensure!(hosts == i.hosts, "{}: hosts {hosts:?}", i.service_entry);
        ensure!(
            spec["location"] == "MESH_INTERNAL" && i.location == "MESH_INTERNAL",
            "{}: location {}",
            i.service_entry,
            spec["location"]
        );
        ensure!(
            spec["resolution"] == "STATIC",
            "{}: resolution {}",
            i.service_entry,
            spec["resolution"]
        );
        let sans: Vec<String> = serde_json::from_value(spec["subjectAltNames"].clone())?;
        ensure!(
            sans == i.subject_alt_names,
            "{}: subjectAltNames {sans:?}",
            i.service_entry
        );
        let port_name = spec["ports"][0]["name"]
            .as_str()
            .context("no port")?
            .to_string();
        let eps = spec["endpoints"].as_array().cloned().unwrap_or_default();
        let addrs: Vec<String> = eps
            .iter()
            .filter_map(|e| e["address"].as_str().map(str::to_string))
            .collect();
        ensure!(
            addrs == i.addresses && addrs == vec![export.address.clone()],
            "{}: endpoint addresses {addrs:?} (import {:?}, exporter's gateway {})",
            i.service_entry,
            i.addresses,
            export.address
        );
        let from_network = &env.istiod[&export.cluster].network;
        for e in &eps {
            ensure!(
                e["ports"][&port_name] == i.port && i.port == export.port,
                "{}: endpoint port {}",
                i.service_entry,
                e["ports"]
            );
            ensure!(
                e["network"] == from_network.as_str(),
                "{}: endpoint network {} (want {from_network})",
                i.service_entry,
                e["network"]
            );
            ensure!(
                e["labels"]["security.istio.io/tlsMode"] == "istio",
                "{}: endpoint labels {}",
                i.service_entry,
                e["labels"]
            );
        }
        // The SAN is the exported workload's real identity in the exporting mesh.
        for h in &i.hosts {
            let (sns, sname) = service_of_host(h)?;
            let exporter = env.client(&export.cluster).await?;
            let svc = Api::<Service>::namespaced(exporter.clone(), sns)
                .get(sname)
                .await?;
            let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
            let sel = selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let pods = Api::<Pod>::namespaced(exporter, sns)
                .list(&ListParams::default().labels(&sel))
                .await?
                .items;
            let sas: BTreeSet<String> = pods
                .iter()
                .filter_map(|p| p.spec.as_ref()?.service_account_name.clone())
                .collect();
            ensure!(
                !sas.is_empty(),
                "{}: no pods behind {sns}/{sname}",
                export.cluster
            );
            let want: Vec<String> = sas
                .iter()
                .map(|sa| format!("spiffe://{}/ns/{sns}/sa/{sa}", from.trust_domain))
                .collect();
            ensure!(
                want == i.subject_alt_names,
                "{}: subjectAltNames {:?}, the exported pods are {want:?}",
                i.service_entry,
                i.subject_alt_names
            );
            // The imported host is no Service of the importing cluster: it exists only there.
            ensure!(
                Api::<Service>::namespaced(client.clone(), sns)
                    .get_opt(sname)
                    .await?
                    .is_none(),
                "{}: {sns}/{sname} also exists as a Service",
                i.cluster
            );
        }
    }
    Ok(())
}

async fn check_policies(env: &TestEnv, fed: &Federation) -> Result<()> {
    ensure!(!fed.policies.is_empty(), "no policies");
    for p in &fed.policies {
        let client = env.client(&p.cluster).await?;
        let (ns, name) = split_ns_name(&p.policy)?;
        let ap = istio_api(
            &client,
            ns,
            "security.istio.io",
            "AuthorizationPolicy",
            "authorizationpolicies",
        )
        .get(name)
        .await?;
        let spec = &ap.data["spec"];
        ensure!(
            spec["action"].as_str().unwrap_or("ALLOW") == "ALLOW",
            "{}: action {}",
            p.policy,
            spec["action"]
        );
        let principals: Vec<String> = spec["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["from"].as_array().cloned().unwrap_or_default())
            .flat_map(|f| {
                f["source"]["principals"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        ensure!(
            principals == p.principals,
            "{}: principals {principals:?}",
            p.policy
        );
        // It selects the exported workload.
        let sel: BTreeMap<String, String> =
            serde_json::from_value(spec["selector"]["matchLabels"].clone())?;
        ensure!(!sel.is_empty(), "{}: no selector", p.policy);
        let selector = sel
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        ensure!(!pods.is_empty(), "{}: selects no pod", p.policy);
        // Each principal is a real client of another mesh: <td>/ns/<ns>/sa/<sa> with pods there.
        for pr in &p.principals {
            let parts: Vec<&str> = pr.split('/').collect();
            ensure!(
                parts.len() == 5 && parts[1] == "ns" && parts[3] == "sa",
                "principal {pr}"
            );
            let m = fed
                .meshes
                .iter()
                .find(|m| m.trust_domain == parts[0])
                .with_context(|| {
                    format!("principal {pr}: no mesh with trust domain {}", parts[0])
                })?;
            ensure!(m.id != p.mesh, "principal {pr} is of the policy's own mesh");
            let mut found = false;
            for ctx in &m.clusters {
                let pods = Api::<Pod>::namespaced(env.client(ctx).await?, parts[2])
                    .list(&ListParams::default())
                    .await?
                    .items;
                found |= pods.iter().any(|pod| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.as_deref())
                        .unwrap_or("default")
                        == parts[4]
                        && pod
                            .metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("sidecar.istio.io/status"))
                });
            }
            ensure!(
                found,
                "principal {pr}: no injected pod with that service account in {}",
                m.id
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshes_with_own_roots_trust_each_other_and_share_one_service() -> Result<()> {
    let t0 = Instant::now();
    let own =
        tokio::task::spawn_blocking(|| OwnEnv::up("federation", &["--topology", "federation"]))
            .await??;
    eprintln!(
        "federation environment up in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let env = &own.env;
    let fed = own
        .federation()?
        .context("the federation topology wrote no federation.json")?;
    check_meshes(env, &fed).await?;
    check_exports(env, &fed).await?;
    check_imports(env, &fed).await?;
    check_policies(env, &fed).await?;
    eprintln!(
        "federation checks done at {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
