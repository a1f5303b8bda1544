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
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

const SYSTEM_NS: &str = "istio-system";
const REV: &str = "canary";
/// The two namespaces that move: one selected by `istio-injection=enabled`, one by
/// `istio.io/rev=default`.
const MOVED: [&str; 2] = ["shop", "payments"];

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
    Ok(())
}
