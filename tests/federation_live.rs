//! Federation on real API servers: `testenv/up --topology federation` (two meshes, each with
//! its own root, trusting each other, one service exported and imported, one policy admitting
//! the peer). meshtop's live source and engine run in this process; what they derive is
//! compared with the environment's own description (`federation.json`), then each thing the
//! findings name is broken through the API and repaired: the finding appears within seconds
//! and goes away.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::live::Live;
use common::testenv::{Federation, OwnEnv};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{json, Value};

const SYSTEM_NS: &str = "istio-system";
/// A change on an API server shows in the model within this (watch + derivation).
const SECONDS: Duration = Duration::from_secs(20);

struct Env {
    own: OwnEnv,
    fed: Federation,
}

async fn env() -> Result<Env> {
    let own =
        tokio::task::spawn_blocking(|| OwnEnv::up("federation", &["--topology", "federation"]))
            .await??;
    let fed = own
        .federation()?
        .context("the federation topology wrote no federation.json")?;
    Ok(Env { own, fed })
}

fn split(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or(("", s))
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

/// Every finding message of the model, with its node.
fn findings(model: &Value) -> Vec<(String, String)> {
    model["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["findings"].as_array().into_iter().flatten())
        .map(|f| {
            (
                f["node"].as_str().unwrap_or("").to_string(),
                f["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Federation findings only (on pair, import and mesh nodes, raised by federation rules).
fn federation_findings(model: &Value) -> Vec<(String, String)> {
    findings(model)
        .into_iter()
        .filter(|(node, message)| {
            node.starts_with("fedpair:")
                || node.starts_with("fedimp:")
                || (node.starts_with("mesh:")
                    && (message.contains("AUTO_PASSTHROUGH") || message.contains(" root ")))
        })
        .collect()
}

fn istio_api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let group = if kind == "AuthorizationPolicy" {
        "security.istio.io"
    } else {
        "networking.istio.io"
    };
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Waits until a finding whose node starts with `node` and whose message contains `needle`
/// is there (`present`) or gone.
async fn wait_finding(live: &mut Live, node: &str, needle: &str, present: bool) -> Result<()> {
    let what = format!(
        "a finding on {node}* containing {needle:?} to be {}",
        if present { "there" } else { "gone" }
    );
    let result = live
        .wait(&what, SECONDS, |m| {
            let found = findings(m)
                .iter()
                .any(|(n, msg)| n.starts_with(node) && msg.contains(needle));
            (found == present).then_some(())
        })
        .await;
    if result.is_err() {
        eprintln!("findings now: {:#?}", findings(&live.json()));
    }
    result
}

/// Edits the `mesh` key of a cluster's `istio-system/istio` ConfigMap; returns the text before.
async fn edit_mesh_config(
    client: &kube::Client,
    edit: impl FnOnce(&mut serde_yaml::Mapping),
) -> Result<String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NS);
    let cm = cms.get("istio").await?;
    let before = cm
        .data
        .as_ref()
        .and_then(|d| d.get("mesh"))
        .cloned()
        .context("ConfigMap istio has no `mesh` key")?;
    let mut mesh: serde_yaml::Mapping = serde_yaml::from_str(&before)?;
    edit(&mut mesh);
    let after = serde_yaml::to_string(&mesh)?;
    set_mesh_config(client, &after).await?;
    Ok(before)
}

async fn set_mesh_config(client: &kube::Client, text: &str) -> Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NS);
    cms.patch(
        "istio",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mesh": text}})),
    )
    .await?;
    Ok(())
}

/// Merge-patches an Istio object's spec; returns the spec before.
async fn patch_spec(api: &Api<DynamicObject>, name: &str, patch: Value) -> Result<Value> {
    let before = api.get(name).await?.data["spec"].clone();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": patch})),
    )
    .await?;
    Ok(before)
}

/// Puts a spec back as it was (a JSON patch replacing the whole spec, so removed keys return
/// and added ones go).
async fn restore_spec(api: &Api<DynamicObject>, name: &str, spec: Value) -> Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::<Value>::Json(serde_json::from_value(
            json!([{"op": "replace", "path": "/spec", "value": spec}]),
        )?),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn federation_is_derived_as_set_up_then_each_break_is_found_and_repaired() -> Result<()> {
    let Env { own, fed } = env().await?;
    let kubeconfig = own.env.kubeconfig.clone();
    let contexts: Vec<String> = fed.meshes.iter().flat_map(|m| m.clusters.clone()).collect();
    let mut live = Live::start(&kubeconfig).await?;
    live.wait_all_live(&contexts).await?;

    // 1. The derived federation equals the description.
    let import = fed
        .imports
        .first()
        .context("no import in federation.json")?;
    let export = fed
        .exports
        .first()
        .context("no export in federation.json")?;
    let policy = fed
        .policies
        .first()
        .context("no policy in federation.json")?;
    let model = live
        .wait(
            "the import attributed to its exporting mesh",
            SECONDS,
            |m| {
                let pairs = m["federation"]["pairs"].as_array()?;
                let ok = pairs.len() == 1
                    && m["federation"]["meshes"]
                        .as_array()?
                        .iter()
                        .flat_map(|t| t["imports"].as_array().into_iter().flatten())
                        .any(|i| i["exported_by"].is_string() && i["runs_in"].is_array());
                ok.then(|| m.clone())
            },
        )
        .await?;
    let fm = &model["federation"];
    for want in &fed.meshes {
        let got = fm["meshes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["mesh"] == want.id.as_str())
            .with_context(|| format!("mesh {} not derived", want.id))?;
        assert_eq!(got["trust_domain"], want.trust_domain.as_str());
        assert_eq!(
            strings(&got["trust_domain_aliases"]),
            want.trust_domain_aliases
        );
        let roots: Vec<&str> = got["roots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["sha256"].as_str())
            .collect();
        assert_eq!(
            roots,
            vec![want.root.sha256.as_str()],
            "{}'s roots",
            want.id
        );
        let root = &got["roots"][0];
        assert_eq!(root["not_after"], want.root.not_after.as_str());
        // openssl prints `O = x, CN = y`; RFC 4514 order is reversed and without spaces.
        let cn = want.root.subject.rsplit("CN = ").next().unwrap_or("");
        assert!(
            root["subject"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("CN={cn}")),
            "subject {} vs {}",
            root["subject"],
            want.root.subject
        );
        assert_eq!(got["multi_root"], want.multi_root);
        let mut extra: Vec<(String, Vec<String>)> = got["ca_certificates"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                let tds = strings(&c["trust_domains"]);
                c["roots"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |r| (r["sha256"].as_str().unwrap_or("").to_string(), tds.clone()))
            })
            .collect();
        extra.sort();
        let mut want_extra: Vec<(String, Vec<String>)> = want
            .ca_certificates
            .iter()
            .map(|c| (c.sha256.clone(), c.trust_domains.clone()))
            .collect();
        want_extra.sort();
        assert_eq!(extra, want_extra, "{}'s caCertificates", want.id);
    }
    let exporting = fm["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["mesh"] == export.mesh.as_str())
        .context("exporting mesh")?;
    let e = exporting["exports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["gateway"] == export.gateway.as_str())
        .context("the export's Gateway is not derived")?;
    assert_eq!(e["cluster"], export.cluster.as_str());
    assert_eq!(strings(&e["hosts"]), export.hosts);
    assert_eq!(e["port"], export.port);
    assert_eq!(e["mode"], export.mode.as_str());
    assert_eq!(e["address"], export.address.as_str());
    assert_eq!(strings(&e["imported_by"]), vec![import.mesh.clone()]);
    let importing = fm["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["mesh"] == import.mesh.as_str())
        .context("importing mesh")?;
    let imports = importing["imports"].as_array().context("imports")?;
    assert_eq!(imports.len(), 1, "{imports:#?}");
    let i = &imports[0];
    assert_eq!(i["cluster"], import.cluster.as_str());
    assert_eq!(i["service_entry"], import.service_entry.as_str());
    assert_eq!(strings(&i["hosts"]), import.hosts);
    assert_eq!(i["from"], import.from.as_str());
    assert_eq!(strings(&i["addresses"]), import.addresses);
    assert_eq!(i["location"], import.location.as_str());
    assert_eq!(strings(&i["subject_alt_names"]), import.subject_alt_names);
    assert_eq!(
        i["exported_by"],
        format!("{}: {}", export.cluster, export.gateway).as_str()
    );
    // Where it really runs: the exporting mesh's endpoints of the service the host names.
    let host = &import.hosts[0];
    let mut parts = host.split('.');
    let (svc, ns) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert_eq!(i["service"], format!("{ns}/{svc}").as_str());
    let runs_in = i["runs_in"].as_array().context("runs_in")?;
    assert!(!runs_in.is_empty());
    assert!(
        runs_in
            .iter()
            .all(|g| g["cluster"] == export.cluster.as_str()),
        "{runs_in:?}"
    );
    let pair = &fm["pairs"][0];
    let (to_exporter, to_importer) = if pair["a"] == import.mesh.as_str() {
        (&pair["a_to_b"], &pair["b_to_a"])
    } else {
        (&pair["b_to_a"], &pair["a_to_b"])
    };
    for d in [to_exporter, to_importer] {
        assert_eq!(d["root"], "trusted", "{d:#?}");
        assert_eq!(d["trust_domain"], "ca_certificates", "{d:#?}");
    }
    assert_eq!(
        strings(&to_exporter["imports"]),
        vec![format!("{}: {}", import.cluster, import.service_entry)]
    );
    assert_eq!(
        strings(&to_importer["policies"]),
        vec![format!("{}: {}", policy.cluster, policy.policy)]
    );
    assert_eq!(
        federation_findings(&model),
        vec![],
        "a sound federation has no findings"
    );

    // 2. Break each thing through the API; the finding appears, and goes when repaired.
    let importer = own.env.client(&import.cluster).await?;
    let exporter = own.env.client(&export.cluster).await?;
    let (m_in, m_out) = (import.mesh.as_str(), import.from.as_str());
    let td_out = fed
        .meshes
        .iter()
        .find(|m| m.id == m_out)
        .map(|m| m.trust_domain.clone())
        .context("exporting mesh's trust domain")?;
    let pair_node = "fedpair:";
    let import_node = format!("fedimp:{m_in}/{}/{}", import.cluster, import.service_entry);

    // The imported root removed from the importer's mesh config.
    let before = edit_mesh_config(&importer, |m| {
        m.remove("caCertificates");
    })
    .await?;
    wait_finding(
        &mut live,
        pair_node,
        &format!("{m_in} holds none of {m_out}'s roots"),
        true,
    )
    .await?;
    wait_finding(
        &mut live,
        pair_node,
        &format!("does not accept trust domain {td_out}"),
        true,
    )
    .await?;
    set_mesh_config(&importer, &before).await?;
    wait_finding(&mut live, pair_node, "holds none of", false).await?;

    // The peer's trust domain added as an alias.
    let before = edit_mesh_config(&importer, |m| {
        m.insert("trustDomainAliases".into(), vec![td_out.clone()].into());
    })
    .await?;
    wait_finding(
        &mut live,
        pair_node,
        &format!("{td_out} is an alias in {m_in}"),
        true,
    )
    .await?;
    set_mesh_config(&importer, &before).await?;
    wait_finding(&mut live, pair_node, "is an alias", false).await?;

    // The exported hosts widened to everything.
    let (gw_ns, gw_name) = split(&export.gateway);
    let gateways = istio_api(&exporter, gw_ns, "Gateway", "gateways");
    let spec = gateways.get(gw_name).await?.data["spec"].clone();
    let mut wide = spec.clone();
    for server in wide["servers"].as_array_mut().into_iter().flatten() {
        server["hosts"] = json!(["*.local"]);
    }
    let before = patch_spec(&gateways, gw_name, json!({"servers": wide["servers"]})).await?;
    let mesh_node = format!("mesh:{m_out}");
    wait_finding(
        &mut live,
        &mesh_node,
        "exports *.local with AUTO_PASSTHROUGH",
        true,
    )
    .await?;
    restore_spec(&gateways, gw_name, before).await?;
    wait_finding(&mut live, &mesh_node, "AUTO_PASSTHROUGH", false).await?;

    // The import made MESH_EXTERNAL, without subjectAltNames, under another host.
    let (se_ns, se_name) = split(&import.service_entry);
    let entries = istio_api(&importer, se_ns, "ServiceEntry", "serviceentries");
    let before = patch_spec(&entries, se_name, json!({"location": "MESH_EXTERNAL"})).await?;
    wait_finding(&mut live, &import_node, "is MESH_EXTERNAL", true).await?;
    restore_spec(&entries, se_name, before.clone()).await?;
    wait_finding(&mut live, &import_node, "MESH_EXTERNAL", false).await?;

    patch_spec(&entries, se_name, json!({"subjectAltNames": null})).await?;
    wait_finding(&mut live, &import_node, "has no subjectAltNames", true).await?;
    restore_spec(&entries, se_name, before.clone()).await?;
    wait_finding(&mut live, &import_node, "subjectAltNames", false).await?;

    let renamed = format!("{svc}.{ns}.{m_out}.global");
    patch_spec(&entries, se_name, json!({"hosts": [renamed]})).await?;
    wait_finding(
        &mut live,
        &import_node,
        &format!("imports {renamed} from {m_out}, but no Gateway of {m_out} exports it"),
        true,
    )
    .await?;
    restore_spec(&entries, se_name, before).await?;
    wait_finding(&mut live, &import_node, "no Gateway", false).await?;

    let model = live.json();
    assert_eq!(federation_findings(&model), vec![], "everything repaired");
    drop(live);
    drop(own);
    Ok(())
}
