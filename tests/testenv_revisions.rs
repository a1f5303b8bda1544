//! A second istiod revision in the test environment (`testenv/up --revisions canary`): every
//! primary also runs the real `istiod-canary` (its manifests from `istioctl manifest generate
//! --set revision=canary`, a second local `pilot-discovery` with `REVISION=canary`).
//!
//! These tests bring up an environment of their own in `<state dir>-revisions` (the default
//! environment stays as it is) and tear it down at the end. Everything they reach is on
//! 127.0.0.1 (istiod.json URLs, the API servers, port-forwards through kwok).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::testenv::{
    get_local, injected_pods_by_revision, port_forward_get, wait_for, OwnEnv, TestEnv,
};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde::Deserialize;
use serde_json::{json, Value};

const SYSTEM_NS: &str = "istio-system";
const REV: &str = "canary";
/// The two namespaces that move: one selected by `istio-injection=enabled`, one by
/// `istio.io/rev=default`.
const MOVED: [&str; 2] = ["shop", "payments"];
/// The revision tag of the environment (`istio-revision-tag-prod`, -> `default`) and the
/// namespace that uses it.
const TAG: &str = "prod";
const TAGGED: [&str; 1] = ["checkout"];

/// `<pod>.<namespace>` rows of an istiod's `/debug/syncz`.
async fn syncz_proxies(debug_base: &str) -> Result<BTreeSet<String>> {
    Ok(common::testenv::syncz(debug_base)
        .await?
        .into_iter()
        .filter_map(|r| r["proxy"].as_str().map(str::to_string))
        .collect())
}

/// `<pod>.<namespace>` rows of an istiod's `/debug/syncz` with cluster id `cluster`.
async fn syncz_proxies_of(debug_base: &str, cluster: &str) -> Result<BTreeSet<String>> {
    Ok(common::testenv::syncz(debug_base)
        .await?
        .into_iter()
        .filter(|r| r["cluster_id"] == cluster)
        .filter_map(|r| r["proxy"].as_str().map(str::to_string))
        .collect())
}

async fn clusterz_synced(debug_base: &str) -> Result<BTreeSet<String>> {
    let (status, body) = get_local(&format!("{debug_base}/debug/clusterz")).await?;
    if status != 200 {
        bail!("clusterz answered {status}");
    }
    Ok(serde_json::from_str::<Vec<Value>>(&body)?
        .into_iter()
        .filter(|r| r["syncStatus"] == "synced")
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect())
}

/// Every istiod's syncz (default and revision) equals the injected pods of the clusters it
/// serves that its revision injected. Returns, per primary, the expected (default, revision)
/// proxy sets.
async fn wait_proxies_where_injected(
    env: &TestEnv,
) -> Result<BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>> {
    wait_for(
        "every istiod's /debug/syncz = the injected pods of its revision",
        Duration::from_secs(90),
        || async {
            let mut want: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = env
                .primaries()
                .into_iter()
                .map(|p| (p, Default::default()))
                .collect();
            for ctx in &env.contexts {
                let host = env.istiod[ctx].control_plane_cluster.clone();
                for (pod, rev) in injected_pods_by_revision(env.client(ctx).await?).await? {
                    let w = want.entry(host.clone()).or_default();
                    match rev.as_str() {
                        "default" => w.0.insert(pod),
                        REV => w.1.insert(pod),
                        other => bail!("{ctx}: pod {pod} injected by unknown revision {other}"),
                    };
                }
            }
            for (host, (def, rev)) in &want {
                let urls = &env.istiod[host];
                let have_def = syncz_proxies(&urls.debug).await?;
                if &have_def != def {
                    return Ok(None);
                }
                if let Some(r) = urls.revisions.get(REV) {
                    if &syncz_proxies(&r.debug).await? != rev {
                        return Ok(None);
                    }
                } else if !rev.is_empty() {
                    bail!("{host} has pods of revision {REV} but no such istiod");
                }
            }
            Ok(Some(want))
        },
    )
    .await
}

/// Sets (or removes, with `None`) namespace labels.
async fn label_namespace(
    client: &kube::Client,
    ns: &str,
    labels: &BTreeMap<&str, Option<&str>>,
) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    Ok(())
}

/// `kubectl rollout restart` of every Deployment in the namespaces.
async fn rollout_restart(client: &kube::Client, namespaces: &[&str]) -> Result<()> {
    let now = format!("{:?}", std::time::SystemTime::now());
    for ns in namespaces {
        let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for d in deps.list(&ListParams::default()).await?.items {
            deps.patch(
                &d.metadata.name.unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now}}}}})),
            )
            .await?;
        }
    }
    Ok(())
}

/// The pods of the namespaces once a rollout is complete (none terminating, every
/// Deployment's replicas updated and running): `<pod>.<ns>` -> injecting revision.
async fn settled_pods(
    client: &kube::Client,
    namespaces: &[&str],
) -> Result<Option<BTreeMap<String, String>>> {
    let mut want_running = 0;
    for ns in namespaces {
        for d in Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            want_running += d.spec.replicas.unwrap_or(1) as usize;
        }
    }
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for p in Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            if p.metadata.deletion_timestamp.is_some()
                || p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
            {
                return Ok(None);
            }
            let status = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("sidecar.istio.io/status"))
                .with_context(|| format!("{ns}/{:?} not injected", p.metadata.name))?;
            let rev = serde_json::from_str::<Value>(status)?["revision"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            out.insert(format!("{}.{ns}", p.metadata.name.unwrap_or_default()), rev);
        }
    }
    Ok((out.len() == want_running).then_some(out))
}

/// The name of a Running pod of istio-system with these labels.
async fn running_pod(client: &kube::Client, labels: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    wait_for(
        &format!("a Running {labels} pod"),
        Duration::from_secs(30),
        || async {
            Ok(pods
                .list(&ListParams::default().labels(labels))
                .await?
                .items
                .into_iter()
                .find_map(|p| {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    (running && p.metadata.deletion_timestamp.is_none())
                        .then(|| p.metadata.name.clone())
                        .flatten()
                }))
        },
    )
    .await
}

/// Proxies listed by `/debug/syncz` through a port-forward to an istiod pod.
async fn syncz_via_port_forward(client: &kube::Client, pod: &str) -> Result<BTreeSet<String>> {
    let (code, body) = port_forward_get(client.clone(), SYSTEM_NS, pod, 15014, "/debug/syncz")
        .await
        .with_context(|| format!("port-forward to {pod}:15014"))?;
    if code != 200 {
        bail!("{pod}: /debug/syncz via port-forward answered {code}: {body}");
    }
    Ok(serde_json::from_str::<Option<Vec<Value>>>(&body)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r["proxy"].as_str().map(str::to_string))
        .collect())
}

/// Points the revision tag `prod` of a cluster at `revision`, as `istioctl tag set prod
/// --revision <revision> --overwrite` would, but without letting the API server dial a Service:
/// the real `istioctl tag generate` output with every webhook's `clientConfig` rewritten to the
/// revision's 127.0.0.1 webhook URL (`webhook`), applied with the field manager `up` used.
fn move_tag(
    env: &TestEnv,
    ctx: &str,
    revision: &str,
    webhook: &str,
    ca_bundle: &str,
) -> Result<()> {
    let bin = common::testenv::bin_dir()?;
    let out = std::process::Command::new(bin.join("istioctl"))
        .args([
            "tag",
            "generate",
            TAG,
            "--revision",
            revision,
            "--overwrite",
            "--context",
            ctx,
        ])
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()?;
    if !out.status.success() {
        bail!(
            "istioctl tag generate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_slice(&out.stdout) {
        let mut v = Value::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        let hooks = v.get_mut("webhooks").and_then(Value::as_array_mut);
        for wh in hooks.into_iter().flatten() {
            let cc = &wh["clientConfig"];
            let path = cc["service"]["path"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    let url = cc["url"].as_str()?;
                    let rest = url.split_once("://")?.1;
                    Some(
                        rest.find('/')
                            .map(|i| rest[i..].to_string())
                            .unwrap_or("/".into()),
                    )
                })
                .unwrap_or_else(|| "/".into());
            wh["clientConfig"] = json!({"url": format!("{webhook}{path}"), "caBundle": ca_bundle});
        }
        docs.push(serde_yaml::to_string(&v)?);
    }
    let bad = docs.iter().any(|d| d.contains("service:"));
    assert!(!bad, "a webhook still names a Service: {docs:?}");
    let mut child = std::process::Command::new(bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args([
            "--context",
            ctx,
            "apply",
            "--server-side",
            "--force-conflicts",
        ])
        .args(["--field-manager=meshtop-testenv", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(docs.join("---\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("kubectl apply of the tag webhooks failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_revision_takes_over_two_namespaces_and_gives_them_back() -> Result<()> {
    let own =
        tokio::task::spawn_blocking(|| OwnEnv::up("revisions", &["--revisions", REV])).await??;
    let env = &own.env;

    // --- The canary istiod of every primary is ready and reads the same remote secrets.
    let primaries: Vec<String> = env
        .primaries()
        .into_iter()
        .filter(|p| env.istiod[p].role == "primary")
        .collect();
    assert!(!primaries.is_empty(), "no primary in {:?}", env.contexts);
    for p in &primaries {
        let urls = &env.istiod[p];
        let canary = urls
            .revisions
            .get(REV)
            .with_context(|| format!("istiod.json: {p} has no revisions.{REV}: {urls:?}"))?;
        assert_eq!(canary.service, format!("istiod-{REV}"));
        assert_ne!(
            canary.debug, urls.debug,
            "{p}: the canary has its own ports"
        );
        let (status, _) = get_local(&canary.ready).await?;
        assert_eq!(status, 200, "{p}: canary /ready");
        let want: BTreeSet<String> = env.data_plane().into_iter().collect();
        wait_for(
            &format!("{p}'s canary istiod has every data-plane cluster synced"),
            Duration::from_secs(30),
            || async {
                let have = clusterz_synced(&canary.debug).await?;
                Ok(want.is_subset(&have).then_some(()))
            },
        )
        .await?;
    }
    // Without namespaces on the canary, every proxy is at its default istiod.
    let before = wait_proxies_where_injected(env).await?;
    for (host, (_, rev)) in &before {
        assert!(
            rev.is_empty(),
            "{host}: canary proxies before any move: {rev:?}"
        );
    }

    // --- Move two namespaces of the first primary to the canary.
    let ctx = primaries[0].clone();
    let client = env.client(&ctx).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut original = BTreeMap::new();
    for ns in MOVED {
        let labels = namespaces
            .get(ns)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        original.insert(ns, labels);
    }
    let to_canary: BTreeMap<&str, Option<&str>> =
        [("istio-injection", None), ("istio.io/rev", Some(REV))].into();
    let canary_debug = env.istiod[&ctx].revisions[REV].debug.clone();
    let default_debug = env.istiod[&ctx].debug.clone();

    let result = async {
        for ns in MOVED {
            label_namespace(&client, ns, &to_canary).await?;
        }
        rollout_restart(&client, &MOVED).await?;
        let moved = wait_for(
            &format!("{ctx}: {MOVED:?} restarted, their pods injected by {REV}, at istiod-{REV}"),
            Duration::from_secs(120),
            || async {
                let Some(pods) = settled_pods(&client, &MOVED).await? else {
                    return Ok(None);
                };
                if pods.is_empty() || pods.values().any(|r| r != REV) {
                    return Ok(None);
                }
                let pods: BTreeSet<String> = pods.into_keys().collect();
                let at_canary = syncz_proxies(&canary_debug).await?;
                // (The default istiod also serves the remote cluster, whose namespaces of the
                // same names did not move.)
                let at_default = syncz_proxies_of(&default_debug, &ctx).await?;
                let of_moved = |s: &BTreeSet<String>| -> BTreeSet<String> {
                    s.iter()
                        .filter(|p| MOVED.iter().any(|ns| p.ends_with(&format!(".{ns}"))))
                        .cloned()
                        .collect()
                };
                Ok((at_canary == pods && of_moved(&at_default).is_empty()).then_some(pods))
            },
        )
        .await?;
        // Every istiod, of both revisions, has exactly what its revision injected (the other
        // namespaces and clusters stayed at their default istiod).
        let now = wait_proxies_where_injected(env).await?;
        assert_eq!(now[&ctx].1, moved, "{ctx}: canary proxies");
        // The injected pods carry the canary's discovery address and its revision.
        for ns in MOVED {
            for p in Api::<Pod>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items
            {
                let status: Value = serde_json::from_str(
                    &p.metadata.annotations.unwrap_or_default()["sidecar.istio.io/status"],
                )?;
                assert_eq!(status["revision"], REV, "{ns}: {status}");
                let spec = p.spec.context("pod without spec")?;
                let proxy = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == "istio-proxy")
                    .context("no istio-proxy container")?;
                let pc = proxy
                    .env
                    .iter()
                    .flatten()
                    .find(|e| e.name == "PROXY_CONFIG")
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default();
                assert!(
                    pc.contains(&format!("istiod-{REV}.{SYSTEM_NS}.svc:15012")),
                    "{ns}: PROXY_CONFIG {pc}"
                );
            }
        }
        // kwok's port-forward tells the two istiod pods apart: istiod-canary-* reaches the
        // canary istiod (it has the moved proxies), istiod-* the default one (it has not).
        let canary_pod = running_pod(&client, &format!("app=istiod,istio.io/rev={REV}")).await?;
        let default_pod = running_pod(&client, "app=istiod,istio.io/rev=default").await?;
        let via_canary = syncz_via_port_forward(&client, &canary_pod).await?;
        assert_eq!(via_canary, moved, "port-forward to {canary_pod}");
        let via_default = syncz_via_port_forward(&client, &default_pod).await?;
        assert!(
            via_default.is_disjoint(&moved) && !via_default.is_empty(),
            "port-forward to {default_pod}: {via_default:?}"
        );
        anyhow::Ok(())
    }
    .await;

    // --- Back to the labels they had, whatever happened; another rollout restart.
    for (ns, labels) in &original {
        let mut patch: BTreeMap<&str, Option<&str>> =
            [("istio-injection", None), ("istio.io/rev", None)].into();
        for (k, v) in labels {
            patch.insert(k.as_str(), Some(v.as_str()));
        }
        label_namespace(&client, ns, &patch).await?;
    }
    rollout_restart(&client, &MOVED).await?;
    result?;
    wait_for(
        &format!("{ctx}: {MOVED:?} back on the default revision, the canary's syncz empty"),
        Duration::from_secs(120),
        || async {
            let Some(pods) = settled_pods(&client, &MOVED).await? else {
                return Ok(None);
            };
            let at_canary = syncz_proxies(&canary_debug).await?;
            Ok((pods.values().all(|r| r == "default") && at_canary.is_empty()).then_some(()))
        },
    )
    .await?;
    let after = wait_proxies_where_injected(env).await?;
    for (host, (def, rev)) in &after {
        assert!(
            rev.is_empty(),
            "{host}: canary proxies after moving back: {rev:?}"
        );
        assert_eq!(
            def.len(),
            before[host].0.len(),
            "{host}: as many default proxies as before"
        );
    }

    // --- Move the revision tag `prod` (namespace checkout) to the canary, then back.
    let ca_bundle = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&format!("istio-revision-tag-{TAG}"))
        .await?
        .webhooks
        .into_iter()
        .flatten()
        .find_map(|w| w.client_config.ca_bundle)
        .context("tag webhook without caBundle")?;
    let ca_bundle = String::from_utf8_lossy(
        &std::process::Command::new("base64")
            .args(["-w0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(&ca_bundle.0)?;
                c.wait_with_output()
            })?
            .stdout,
    )
    .to_string();
    let canary_webhook = env.istiod[&ctx].revisions[REV].webhook.clone();
    let default_webhook = env.istiod[&ctx].webhook.clone();
    let tag_result = async {
        move_tag(env, &ctx, REV, &canary_webhook, &ca_bundle)?;
        rollout_restart(&client, &TAGGED).await?;
        wait_for(
            &format!("{ctx}: {TAGGED:?} (tag {TAG}) restarted onto {REV}, at istiod-{REV}"),
            Duration::from_secs(120),
            || async {
                let Some(pods) = settled_pods(&client, &TAGGED).await? else {
                    return Ok(None);
                };
                let at_canary = syncz_proxies(&canary_debug).await?;
                let keys: BTreeSet<String> = pods.keys().cloned().collect();
                Ok(
                    (!pods.is_empty() && pods.values().all(|r| r == REV) && at_canary == keys)
                        .then_some(()),
                )
            },
        )
        .await?;
        wait_proxies_where_injected(env).await?;
        anyhow::Ok(())
    }
    .await;
    move_tag(env, &ctx, "default", &default_webhook, &ca_bundle)?;
    rollout_restart(&client, &TAGGED).await?;
    tag_result?;
    wait_for(
        &format!("{ctx}: {TAGGED:?} back on the default revision through tag {TAG}"),
        Duration::from_secs(120),
        || async {
            let Some(pods) = settled_pods(&client, &TAGGED).await? else {
                return Ok(None);
            };
            let at_canary = syncz_proxies(&canary_debug).await?;
            Ok((pods.values().all(|r| r == "default") && at_canary.is_empty()).then_some(()))
        },
    )
    .await?;
    wait_proxies_where_injected(env).await?;

    // --- A rollout restart of istiod-canary: the new pod gets its kwok PortForward (the old
    // one's goes), and a port-forward to it reaches the canary istiod.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM_NS);
    let old_pod = running_pod(&client, &format!("app=istiod,istio.io/rev={REV}")).await?;
    deps.patch(
        &format!("istiod-{REV}"),
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": format!("{:?}", std::time::SystemTime::now())}}}}})),
    )
    .await?;
    let pfs = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        SYSTEM_NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "PortForward"),
            "portforwards",
        ),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    let new_pod = wait_for(
        "a new istiod-canary pod with its kwok PortForward, the old one's deleted",
        Duration::from_secs(60),
        || async {
            let lp = ListParams::default().labels(&format!("app=istiod,istio.io/rev={REV}"));
            let names: Vec<String> = pods
                .list(&lp)
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            let have: BTreeSet<String> = pfs
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            Ok(match names.as_slice() {
                [one] if *one != old_pod && have.contains(one) && !have.contains(&old_pod) => {
                    Some(one.clone())
                }
                _ => None,
            })
        },
    )
    .await?;
    let (code, body) =
        port_forward_get(client.clone(), SYSTEM_NS, &new_pod, 8080, "/ready").await?;
    assert_eq!(code, 200, "{new_pod}:8080/ready via port-forward: {body}");

    // --- `up` again: the same knobs reuse it, other knobs are refused (exit 3).
    let up = |args: &[&str]| {
        std::process::Command::new(common::testenv::repo_root().join("testenv/up"))
            .args(args)
            .env("MESHTOP_TESTENV_STATE", &own.state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    };
    let st = tokio::task::block_in_place(|| up(&["--revisions", REV]))?;
    assert!(st.success(), "up --revisions {REV} again: {st}");
    let st = tokio::task::block_in_place(|| up(&["--revisions", "other"]))?;
    assert_eq!(st.code(), Some(3), "up with other revisions");

    // --- Every socket of every process (both istiods per primary included) on loopback.
    let sockets = env.tcp_sockets()?;
    assert!(
        sockets
            .iter()
            .any(|s| s.process.ends_with(&format!(".{REV}")) && s.state == "0A"),
        "no listening socket of a {REV} istiod among {sockets:?}"
    );
    for s in sockets {
        let remote_ok =
            s.remote.ip().is_unspecified() || common::testenv::is_loopback(s.remote.ip());
        assert!(
            common::testenv::is_loopback(s.local.ip()) && remote_ok,
            "{} (pid {}) has a socket off loopback: {} -> {}",
            s.process,
            s.pid,
            s.local,
            s.remote
        );
    }
    Ok(())
}
