//! Smoke tests of the local multi-cluster Istio test environment (`testenv/`): real
//! kube-apiservers, controllers, kwok nodes and a real istiod per primary, on 127.0.0.1.
//! The environment is brought up on first use (see `tests/common/testenv.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Result};
use common::testenv::{get_local, testenv, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

const SYSTEM_NS: &str = "istio-system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_context_lists_namespaces() -> Result<()> {
    let env = testenv();
    assert!(
        env.contexts.len() >= 2,
        "expected several contexts, got {:?}",
        env.contexts
    );
    for ctx in &env.contexts {
        let client = env.client(ctx).await?;
        let names: BTreeSet<String> = Api::<Namespace>::all(client)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        for want in ["default", "kube-system", SYSTEM_NS, "shop", "payments"] {
            assert!(
                names.contains(want),
                "context {ctx}: namespace {want} missing from {names:?}"
            );
        }
    }
    Ok(())
}

/// `/debug/clusterz` rows: `[{id, secretName, syncStatus}]` (pilot/pkg/xds/debug.go).
async fn clusterz(debug_base: &str) -> Result<Vec<serde_json::Value>> {
    let (status, body) = get_local(&format!("{debug_base}/debug/clusterz")).await?;
    if status != 200 {
        bail!("clusterz answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_istiod_lists_remote_as_synced() -> Result<()> {
    let env = testenv();
    // (cluster, istiod that must list it): each remote with its control plane; in a topology
    // without remotes (all primaries), every primary with every other primary.
    let mut pairs: Vec<(String, String)> = env
        .remotes()
        .into_iter()
        .map(|r| (r.clone(), env.istiod[&r].control_plane_cluster.clone()))
        .collect();
    if pairs.is_empty() {
        for p in env.primaries() {
            pairs.extend(
                env.primaries()
                    .into_iter()
                    .filter(|o| *o != p)
                    .map(|o| (o, p.clone())),
            );
        }
    }
    assert!(
        !pairs.is_empty(),
        "a multi-cluster topology is expected, got {:?}",
        env.contexts
    );
    for (remote, primary) in &pairs {
        let (remote, primary) = (remote.as_str(), primary.as_str());
        let urls = &env.istiod[primary];
        let (st, _) = get_local(&urls.ready).await?;
        assert_eq!(st, 200, "istiod of {primary} not ready");
        let rows = clusterz(&urls.debug).await?;
        let row = rows
            .iter()
            .find(|r| r["id"] == remote)
            .unwrap_or_else(|| panic!("{primary} clusterz does not list {remote}: {rows:?}"));
        assert_eq!(
            row["syncStatus"], "synced",
            "{remote} in {primary} clusterz: {row}"
        );
    }
    Ok(())
}

async fn ready_endpoints(slices: &Api<EndpointSlice>, service: &str) -> Result<usize> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut n = 0;
    for s in slices.list(&lp).await?.items {
        for e in s.endpoints.into_iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false) {
                n += 1;
            }
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_deployment_changes_its_endpointslices() -> Result<()> {
    let env = testenv();
    // The remote cluster if there is one: its pods pass the primary's injector too.
    let ctx = env
        .remotes()
        .into_iter()
        .next()
        .unwrap_or_else(|| env.contexts[0].clone());
    let client = env.client(&ctx).await?;
    let ns = "legacy";
    let name = "smoke-scale";
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply("meshtop-testenv-smoke").force();
    let labels = json!({"app": name});
    services
        .patch(name, &pp, &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })))
        .await?;
    deployments
        .patch(name, &pp, &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/smoke:v1",
                                                           "ports": [{"containerPort": 8080}]}]}}}
        })))
        .await?;
    let deadline = Duration::from_secs(60);
    wait_for("1 ready endpoint", deadline, || async {
        Ok((ready_endpoints(&slices, name).await? == 1).then_some(()))
    })
    .await?;
    for replicas in [3usize, 1] {
        deployments
            .patch_scale(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await?;
        wait_for(
            &format!("{replicas} ready endpoints in {ctx}"),
            deadline,
            || async { Ok((ready_endpoints(&slices, name).await? == replicas).then_some(())) },
        )
        .await?;
    }
    deployments.delete(name, &DeleteParams::default()).await?;
    services.delete(name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_remote_clusters_agree_with_remote_secrets() -> Result<()> {
    let env = testenv();
    for host in env.primaries() {
        // The istiod on `host` runs as cluster `primary` (its CLUSTER_ID) and reads its remote
        // secrets there (for an external control plane: from its config cluster).
        let primary = env.istiod[&host].cluster_id.clone();
        let client = env.client(&env.istiod[&host].config_cluster).await?;
        let secrets: Api<Secret> = Api::namespaced(client, SYSTEM_NS);
        // cluster id -> secret name, from the data KEYS only (values hold credentials).
        let mut from_secrets = BTreeMap::new();
        for s in secrets
            .list(&ListParams::default().labels("istio/multiCluster=true"))
            .await?
            .items
        {
            let name = s.metadata.name.clone().unwrap_or_default();
            for key in s.data.unwrap_or_default().into_keys() {
                from_secrets.insert(key, name.clone());
            }
        }
        let want: BTreeSet<String> = env
            .data_plane()
            .into_iter()
            .filter(|c| *c != primary)
            .collect();
        assert_eq!(
            from_secrets.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "remote secret keys in {primary}"
        );

        // What `istioctl remote-clusters` shows: istiod's /debug/clusterz, minus its own cluster.
        let rows = clusterz(&env.istiod[&host].debug).await?;
        let mut from_istiod = BTreeMap::new();
        for r in &rows {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            if id != primary {
                // istiod keys secrets as "<namespace>/<name>".
                let secret = r["secretName"].as_str().unwrap_or_default();
                from_istiod.insert(
                    id,
                    secret.rsplit('/').next().unwrap_or_default().to_string(),
                );
            }
        }
        assert_eq!(
            from_istiod, from_secrets,
            "istiod {primary} remote clusters vs remote secrets"
        );
        for r in &rows {
            assert_eq!(r["syncStatus"], "synced", "{primary}: {r}");
        }

        // And the real `istioctl remote-clusters` (it port-forwards to the istiod pod).
        let out = std::process::Command::new(common::testenv::bin_dir()?.join("istioctl"))
            .args(["remote-clusters", "--context", &host, "--kubeconfig"])
            .arg(&env.kubeconfig)
            .output()?;
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "istioctl remote-clusters --context {host}: {table} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut from_istioctl = BTreeMap::new();
        for line in table.lines().skip(1) {
            // NAME SECRET STATUS ISTIOD REVISION; the local cluster has no SECRET.
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 5 {
                assert_eq!(f[2], "synced", "{host}: {line}");
                from_istioctl.insert(
                    f[0].to_string(),
                    f[1].rsplit('/').next().unwrap_or_default().to_string(),
                );
            }
        }
        assert_eq!(
            from_istioctl, from_secrets,
            "istioctl remote-clusters --context {host} vs remote secrets"
        );
    }
    Ok(())
}

/// The network rule: testenv components listen on and talk to 127.0.0.0/8 only. A snapshot of
/// every TCP socket of every process `up` started (after the other checks made them busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testenv_processes_use_loopback_only() -> Result<()> {
    let env = testenv();
    // Make some traffic first: API calls and an istiod debug call.
    for ctx in &env.contexts {
        Api::<Namespace>::all(env.client(ctx).await?)
            .list(&ListParams::default())
            .await?;
    }
    for p in env.primaries() {
        clusterz(&env.istiod[&p].debug).await?;
    }
    let sockets = env.tcp_sockets()?;
    assert!(
        sockets.iter().any(|s| s.state == "0A"),
        "found no listening socket of testenv processes"
    );
    assert!(
        sockets.iter().any(|s| s.state == "01"),
        "found no connection of testenv processes"
    );
    // The simulated sidecars hold their xDS streams to istiod (checked like all the others).
    assert!(
        sockets
            .iter()
            .any(|s| s.process == "sidecars" && s.state == "01"),
        "the sidecars process holds no connection"
    );
    let bad: Vec<_> = sockets
        .iter()
        .filter(|s| {
            !common::testenv::is_loopback(s.local.ip())
                || (s.state != "0A" && !common::testenv::is_loopback(s.remote.ip()))
        })
        .collect();
    assert!(bad.is_empty(), "sockets outside 127.0.0.0/8: {bad:#?}");
    Ok(())
}

/// A port-forward to an istiod pod (what istioctl and meshtop do to reach 15014) goes
/// API server -> kwok (the node's kubelet endpoint on 127.0.0.1) -> the real local istiod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_to_istiod_pod_reaches_real_istiod() -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = testenv();
    for host in env.primaries() {
        let pods: Api<Pod> = Api::namespaced(env.client(&host).await?, SYSTEM_NS);
        let lp = ListParams::default().labels("app=istiod");
        let pod = wait_for(
            &format!("a Running istiod pod in {host}"),
            Duration::from_secs(30),
            || async {
                Ok(pods.list(&lp).await?.items.into_iter().find_map(|p| {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    running.then(|| p.metadata.name.clone()).flatten()
                }))
            },
        )
        .await?;
        let mut pf = pods.portforward(&pod, &[15014]).await?;
        let mut stream = pf.take_stream(15014).expect("stream for port 15014");
        stream
            .write_all(b"GET /debug/clusterz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        // The port-forward stream does not always report the remote close as EOF: read
        // until the response is complete (Content-Length), with a deadline.
        let mut resp = Vec::new();
        let complete = |resp: &[u8]| {
            let text = String::from_utf8_lossy(resp);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                return false;
            };
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .is_some_and(|n| body.len() >= n)
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 8192];
            while !complete(&resp) {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                resp.extend_from_slice(&buf[..n]);
            }
            anyhow::Ok(())
        })
        .await??;
        drop(stream);
        pf.abort();
        let text = String::from_utf8_lossy(&resp);
        assert!(
            text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
            "{host}: {text}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let rows: Vec<serde_json::Value> = serde_json::from_str(body)?;
        let id = &env.istiod[&host].cluster_id;
        assert!(
            rows.iter().any(|r| r["id"] == id.as_str()),
            "{host}: clusterz via port-forward: {body}"
        );
    }
    Ok(())
}

/// Same-named services merge across clusters: each istiod holds endpoint shards of
/// `frontend.shop` from every data-plane cluster, with real localities from the node labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_a_service_merge_across_clusters() -> Result<()> {
    let env = testenv();
    let want: BTreeSet<String> = env
        .data_plane()
        .into_iter()
        .map(|c| format!("Kubernetes/{c}"))
        .collect();
    for host in env.primaries() {
        let url = format!("{}/debug/endpointShardz", env.istiod[&host].debug);
        let shards = wait_for(
            &format!("{host}: frontend.shop shards from {want:?}"),
            Duration::from_secs(30),
            || async {
                let (status, body) = get_local(&url).await?;
                if status != 200 {
                    bail!("endpointShardz answered {status}");
                }
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let shards = v["frontend.shop.svc.cluster.local"]["shop"]["Shards"].clone();
                let have: BTreeSet<String> = shards
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                Ok((have == want).then_some(shards))
            },
        )
        .await?;
        for (shard, eps) in shards.as_object().unwrap() {
            for ep in eps.as_array().unwrap() {
                let locality = ep["Locality"]["Label"].as_str().unwrap_or_default();
                assert!(
                    locality.starts_with("region"),
                    "{host} {shard}: endpoint without locality: {ep}"
                );
            }
        }
    }
    Ok(())
}

/// `testenv/up` on a running environment reuses it (same kubeconfig, quickly) and
/// `testenv/env` prints the same export line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_again_reuses_the_running_environment() -> Result<()> {
    let env = testenv();
    let want = format!("export KUBECONFIG={}", env.kubeconfig.display());
    let root = common::testenv::repo_root();
    let started = std::time::Instant::now();
    let up = std::process::Command::new(root.join("testenv/up")).output()?;
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "reusing took {:?}",
        started.elapsed()
    );
    let last = String::from_utf8_lossy(&up.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert_eq!(last, want);
    let envout = std::process::Command::new(root.join("testenv/env")).output()?;
    assert!(envout.status.success());
    assert_eq!(String::from_utf8_lossy(&envout.stdout).trim(), want);
    Ok(())
}

// --------------------------------------------------------------------------------------------
// Simulated sidecars (testenv/tools/sidecars): one real xDS client per injected pod.

/// Tests that add, remove or move proxies hold this lock, so that the exact-count checks of
/// the others do not see a scale or a failover half done.
static PROXIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `<pod>.<namespace>` -> cluster id, from an istiod's `/debug/syncz`.
async fn syncz_proxies(debug_base: &str) -> Result<BTreeMap<String, String>> {
    Ok(common::testenv::syncz(debug_base)
        .await?
        .into_iter()
        .map(|r| {
            (
                r["proxy"].as_str().unwrap_or_default().to_string(),
                r["cluster_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Wait until every istiod's syncz equals what the pods say it must serve; return that.
async fn wait_for_expected_proxies(
    env: &common::testenv::TestEnv,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    wait_for(
        "every primary's /debug/syncz = the injected pods of the clusters it serves",
        Duration::from_secs(60),
        || async {
            let want = env.expected_proxies().await?;
            for (host, w) in &want {
                let have = syncz_proxies(&env.istiod[host].debug).await?;
                if &have != w {
                    bail!("{host}: syncz has {have:?}, pods say {w:?}");
                }
            }
            Ok(Some(want))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primary_serves_exactly_the_injected_pods_of_its_clusters() -> Result<()> {
    let env = testenv();
    let _guard = PROXIES.lock().await;
    let want = wait_for_expected_proxies(env).await?;
    let total: usize = want.values().map(|w| w.len()).sum();
    assert!(
        total >= env.data_plane().len() * 4,
        "expected the tenants' injected pods to have proxies: {want:?}"
    );
    for (host, w) in &want {
        let urls = &env.istiod[host];
        assert!(!w.is_empty(), "{host} serves no proxy");
        // Every proxy got and acked its clusters, with the pinned Istio version.
        for row in common::testenv::syncz(&urls.debug).await? {
            assert!(
                row["cluster_acked"].as_str().is_some_and(|s| !s.is_empty())
                    && row["istio_version"].as_str().is_some_and(|s| !s.is_empty()),
                "{host}: {row}"
            );
        }
        // pilot_xds counts the same connections.
        wait_for(
            &format!("{host}: pilot_xds = {}", w.len()),
            Duration::from_secs(30),
            || async {
                let n = common::testenv::pilot_xds(&urls.metrics).await?;
                Ok((n == w.len() as u64).then_some(()))
            },
        )
        .await?;

        // And the real `istioctl proxy-status` (through a port-forward to the istiod pod: 15012
        // with a service-account token). An external control plane checks tokens against its
        // config cluster and refuses one issued by its own cluster, and its plaintext port
        // refuses unauthenticated debug requests, so istioctl has no way in there.
        if urls.role == "external" {
            eprintln!("{host}: external control plane, istioctl proxy-status not compared");
            continue;
        }
        let out = std::process::Command::new(common::testenv::bin_dir()?.join("istioctl"))
            .args(["proxy-status", "--context", host, "--kubeconfig"])
            .arg(&env.kubeconfig)
            .output()?;
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "istioctl proxy-status --context {host}: {table} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // NAME CLUSTER ...
        let from_istioctl: BTreeMap<String, String> = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect();
        assert_eq!(&from_istioctl, w, "istioctl proxy-status --context {host}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_an_injected_deployment_connects_and_disconnects_proxies() -> Result<()> {
    let env = testenv();
    let _guard = PROXIES.lock().await;
    // A remote cluster if there is one (its pods find the primary through its istiod Service).
    let ctx = env
        .remotes()
        .into_iter()
        .next()
        .unwrap_or_else(|| env.data_plane()[0].clone());
    let host = env.istiod[&ctx].control_plane_cluster.clone();
    let client = env.client(&ctx).await?;
    let (ns, name) = ("shop", "smoke-sidecars");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let labels = json!({"app": name});
    deployments
        .patch(name, &PatchParams::apply("meshtop-testenv-smoke").force(), &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/smoke:v1",
                                                           "ports": [{"containerPort": 8080}]}]}}}
        })))
        .await?;
    let debug = env.istiod[&host].debug.clone();
    let lp = ListParams::default().labels(&format!("app={name}"));
    let result = async {
        for replicas in [1usize, 3, 1, 0] {
            deployments
                .patch_scale(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
            wait_for(
                &format!("{replicas} {ns}/{name} proxies of {ctx} in {host} syncz"),
                Duration::from_secs(60),
                || async {
                    // The Deployment's running pods (all of them injected) ...
                    let mut want = BTreeSet::new();
                    for p in pods.list(&lp).await?.items {
                        let st = p.status.as_ref();
                        let annotated = p
                            .metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("sidecar.istio.io/status"));
                        if p.metadata.deletion_timestamp.is_none()
                            && st.and_then(|s| s.phase.as_deref()) == Some("Running")
                        {
                            assert!(annotated, "{ns}/{:?} not injected", p.metadata.name);
                            want.insert(format!("{}.{ns}", p.metadata.name.unwrap_or_default()));
                        }
                    }
                    // ... and exactly those in the serving istiod, as cluster `ctx`.
                    let have: BTreeSet<String> = syncz_proxies(&debug)
                        .await?
                        .into_iter()
                        .filter(|(p, id)| p.starts_with(&format!("{name}-")) && *id == ctx)
                        .map(|(p, _)| p)
                        .collect();
                    Ok((want.len() == replicas && have == want).then_some(()))
                },
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    deployments.delete(name, &DeleteParams::default()).await?;
    result
}

/// The failover a meshtop operator performs: repoint a remote cluster's `istiod` Service
/// (its hand-written EndpointSlice) at another primary's east-west gateway, restart its
/// workloads; its proxies leave the old istiod and arrive at the new one. Then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repointing_a_remote_moves_its_proxies_to_the_other_primary() -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let env = testenv();
    let _guard = PROXIES.lock().await;
    // A cluster configured by another cluster's istiod through its istiod Service (a
    // remote, or the config cluster of an external control plane).
    let Some(remote) = env.remotes().into_iter().next() else {
        eprintln!("topology without a remote cluster: nothing to repoint");
        return Ok(());
    };
    let old = env.istiod[&remote].control_plane_cluster.clone();
    // Another primary that already has the remote synced (it holds its remote secret).
    let mut new = None;
    for p in env.primaries() {
        if p != old
            && env.istiod[&p].role == "primary"
            && clusterz(&env.istiod[&p].debug)
                .await?
                .iter()
                .any(|r| r["id"] == remote.as_str() && r["syncStatus"] == "synced")
        {
            new = Some(p);
            break;
        }
    }
    let Some(new) = new else {
        eprintln!("no second primary has {remote} synced: nothing to fail over to");
        return Ok(());
    };
    wait_for_expected_proxies(env).await?;

    // The new primary's east-west gateway address, as its cluster publishes it.
    let gw: Service = Api::namespaced(env.client(&new).await?, SYSTEM_NS)
        .get("istio-eastwestgateway")
        .await?;
    let new_addr = gw
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|i| i.into_iter().find_map(|i| i.ip))
        .expect("east-west gateway address");

    let rclient = env.client(&remote).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(rclient.clone(), SYSTEM_NS);
    let namespaces: Api<Namespace> = Api::all(rclient.clone());
    let istiod_slices = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=istiod"))
        .await?
        .items;
    assert!(
        !istiod_slices.is_empty(),
        "{remote}: no istiod EndpointSlice"
    );
    let annotation = "topology.istio.io/controlPlaneClusters";
    let old_annotation = namespaces
        .get(SYSTEM_NS)
        .await?
        .metadata
        .annotations
        .and_then(|a| a.get(annotation).cloned());

    let repoint = |addr: Option<String>, cp: Option<String>| {
        let (slices, namespaces, istiod_slices) =
            (slices.clone(), namespaces.clone(), istiod_slices.clone());
        async move {
            for s in &istiod_slices {
                let mut endpoints = s.endpoints.clone();
                if let Some(a) = &addr {
                    for e in endpoints.iter_mut().flatten() {
                        e.addresses = vec![a.clone()];
                    }
                }
                let name = s.metadata.name.clone().unwrap_or_default();
                slices
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"endpoints": endpoints})),
                    )
                    .await?;
            }
            namespaces
                .patch(
                    SYSTEM_NS,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {annotation: cp}}})),
                )
                .await?;
            anyhow::Ok(())
        }
    };
    // Rollout restart of every Deployment in the remote's injected namespaces.
    let restart = || async {
        let now = format!("{:?}", std::time::SystemTime::now());
        for ns in ["shop", "payments", "checkout"] {
            let deps: Api<Deployment> = Api::namespaced(rclient.clone(), ns);
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
        anyhow::Ok(())
    };
    // Where the remote's proxies are: (rows with cluster id `remote` at old, at new).
    let where_are = || async {
        let of = |m: BTreeMap<String, String>| -> BTreeSet<String> {
            m.into_iter()
                .filter(|(_, id)| *id == remote)
                .map(|(p, _)| p)
                .collect()
        };
        let at_old = of(syncz_proxies(&env.istiod[&old].debug).await?);
        let at_new = of(syncz_proxies(&env.istiod[&new].debug).await?);
        anyhow::Ok((at_old, at_new))
    };

    let result = async {
        repoint(Some(new_addr.clone()), Some(new.clone())).await?;
        restart().await?;
        wait_for(
            &format!("{remote}'s proxies to leave {old} and arrive at {new} ({new_addr})"),
            Duration::from_secs(90),
            || async {
                let pods = common::testenv::injected_pods(rclient.clone()).await?;
                // The restarted pods only: none left from before the restart.
                let all: Api<Pod> = Api::all(rclient.clone());
                let stale = all
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .any(|p| {
                        p.metadata.deletion_timestamp.is_some()
                            && ["shop", "payments", "checkout"]
                                .contains(&p.metadata.namespace.as_deref().unwrap_or_default())
                    });
                let (at_old, at_new) = where_are().await?;
                Ok(
                    (!stale && !pods.is_empty() && at_old.is_empty() && at_new == pods)
                        .then_some(()),
                )
            },
        )
        .await?;

        // An address the sidecars cannot map (no istiod behind it in their table): they
        // disconnect, say so in their log, and dial nothing (the loopback check stays green).
        let nowhere = "192.0.2.250".to_string();
        repoint(Some(nowhere.clone()), Some(new.clone())).await?;
        let log = env.state_dir.join("logs/sidecars.log");
        wait_for(
            &format!("{remote}'s proxies gone from both istiods, {nowhere} logged as unmappable"),
            Duration::from_secs(60),
            || async {
                let (at_old, at_new) = where_are().await?;
                let logged = std::fs::read_to_string(&log)?.lines().any(|l| {
                    l.contains(&format!("cluster {remote}:"))
                        && l.contains(&nowhere)
                        && l.contains("not in the address table")
                });
                Ok((at_old.is_empty() && at_new.is_empty() && logged).then_some(()))
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    // Back to the original control plane, whatever happened. No restart this time: the
    // sidecars follow a change of their istiod Service's address by themselves (a real proxy
    // would at its next reconnect).
    repoint(None, old_annotation.clone()).await?;
    wait_for_expected_proxies(env).await?;
    result
}
