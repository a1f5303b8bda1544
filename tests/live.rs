//! Live mode against the real API servers and real istiod of `testenv/`: the derived topology
//! equals the environment's own description, changes arrive within deadlines, a blackholed
//! API server turns only its own cluster stale, real RBAC degrades only what it forbids, and no
//! secret value reaches the output or the log.
//!
//! The assertions read the environment's description (`istiod.json`, the kubeconfig, the API)
//! rather than constants, so they hold for any topology `testenv/up --topology` brings up.
//! Tests that stop or change the environment hold the write side of [`ENV_LOCK`]; the others
//! hold the read side, so a stopped API server never surprises another test.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::time::Instant;

use common::live::{
    all_live, cluster, clusters, model_ready, restricted_kubeconfig, secret_values, summary, Live,
};
use common::testenv::{get_local, signal, testenv, wait_for, Resume, TestEnv};

static ENV_LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    ENV_LOCK.read().await
}

async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    ENV_LOCK.write().await
}

/// Ready endpoints of a Service in one cluster, read from the API's EndpointSlices.
async fn api_ready(env: &TestEnv, context: &str, ns: &str, name: &str) -> Result<u64> {
    let slices: Api<EndpointSlice> = Api::namespaced(env.client(context).await?, ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    Ok(slices
        .list(&lp)
        .await?
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .count() as u64)
}

/// The environment's mesh id, read from the mesh config of the first primary.
async fn mesh_id(env: &TestEnv) -> Result<String> {
    let primary = env.primaries().into_iter().next().context("no primary")?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client(&primary).await?, "istio-system");
    let cm = cms.get("istio").await?;
    let mesh = cm
        .data
        .unwrap_or_default()
        .remove("mesh")
        .unwrap_or_default();
    let v: serde_yaml::Value = serde_yaml::from_str(&mesh)?;
    Ok(v["defaultConfig"]["meshId"]
        .as_str()
        .context("mesh config without meshId")?
        .to_string())
}

/// The derived topology equals what the environment says it is. The model names each cluster
/// `<prefix><context>` (see [`TestEnv::renamed_kubeconfig`]).
async fn check_topology(env: &TestEnv, model: &Value, prefix: &str) -> Result<()> {
    let named = |c: &str| format!("{prefix}{c}");
    let mesh = mesh_id(env).await?;
    // Clusters appear in kubeconfig order within each network, whatever answered first.
    for m in model["meshes"].as_array().into_iter().flatten() {
        assert_eq!(m["id"], mesh.as_str(), "mesh id of {}", m["id"]);
        for n in m["networks"].as_array().into_iter().flatten() {
            let names: Vec<&str> = n["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let order: Vec<String> = env
                .contexts
                .iter()
                .map(|c| named(c))
                .filter(|c| names.contains(&c.as_str()))
                .collect();
            assert_eq!(
                names, order,
                "clusters of {} in kubeconfig order",
                n["name"]
            );
        }
    }
    for context in &env.contexts {
        let truth = &env.istiod[context];
        let name = named(context);
        let c = cluster(model, &name).with_context(|| format!("{name} in the model"))?;
        assert_eq!(c["connection"], "live", "{context}: {c}");
        let network = model["meshes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["networks"].as_array().into_iter().flatten())
            .find(|n| {
                n["clusters"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|x| x["name"] == name.as_str()))
            })
            .map(|n| n["name"].clone());
        assert_eq!(network, Some(json!(truth.network)), "{context}: network");
        // testenv's roles: a data-plane cluster configured by another cluster's istiod is a
        // remote to meshtop whether testenv calls it `remote` or `config`; `external` hosts an
        // external istiod.
        let role = match truth.role.as_str() {
            "remote" | "config" => "remote",
            "external" => "external_control_plane",
            other => other,
        };
        assert_eq!(c["role"], role, "{context}: role");
        if truth.role != "external" {
            // Served by the istiod the environment says serves it.
            let served: Vec<&str> = c["served_by"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let want = format!("{}/", named(&truth.control_plane_cluster));
            assert!(
                served.iter().any(|s| s.starts_with(&want)),
                "{context}: served by {served:?}, want a control plane of {}",
                truth.control_plane_cluster
            );
        }
        // The cluster id comes from the data (istiod CLUSTER_ID, remote secrets), not the context.
        let cluster_id = if truth.role == "primary" {
            truth.cluster_id.clone()
        } else {
            context.clone()
        };
        assert_eq!(
            c["cluster_id"],
            cluster_id.as_str(),
            "{context}: cluster id"
        );
    }
    // Every control plane was probed through a port-forward: its version and its view of the
    // remote clusters are what the real istiod answers on its debug port.
    for host in env.primaries() {
        let truth = &env.istiod[&host];
        let (_, clusterz) = get_local(&format!("{}/debug/clusterz", truth.debug)).await?;
        let clusterz: Vec<Value> = serde_json::from_str(&clusterz)?;
        let c = cluster(model, &named(&host)).with_context(|| format!("{host} in the model"))?;
        let cp = c["control_planes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|cp| cp["probe_error"].is_null() && cp["connected_proxies"].is_u64())
            .with_context(|| format!("{host}: a probed control plane in {c}"))?;
        let (_, version) = get_local(&format!("{}/version", truth.debug)).await?;
        assert!(
            version.starts_with(cp["version"].as_str().unwrap_or("-")),
            "{host}: version {} vs istiod's {version}",
            cp["version"]
        );
        for row in &clusterz {
            let id = row["id"].as_str().unwrap_or("");
            if id == truth.cluster_id {
                continue;
            }
            let shown = cp["remote_clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == id)
                .with_context(|| format!("{host}: remote {id} in {}", cp["remote_clusters"]))?;
            assert_eq!(shown["status"], row["syncStatus"], "{host}: sync of {id}");
        }
    }
    // Endpoints of a service present in every data-plane cluster, per cluster, as the API has them.
    let counts = model_ready(model, "shop", "frontend");
    for context in env.data_plane() {
        let want = api_ready(env, &context, "shop", "frontend").await?;
        assert_eq!(
            counts.get(&named(&context)).copied().unwrap_or(0),
            want,
            "shop/frontend ready endpoints in {context}: model {counts:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_model_equals_the_default_environment() -> Result<()> {
    let env = testenv();
    let _g = shared().await;
    let kubeconfig = env.renamed_kubeconfig("ctx-")?;
    let renamed: Vec<String> = env.contexts.iter().map(|c| format!("ctx-{c}")).collect();
    let mut live = Live::start(&kubeconfig).await?;
    let t0 = Instant::now();
    live.wait_all_live(&renamed).await?;
    eprintln!("all clusters live after {:?}", t0.elapsed());
    // The probes come a moment after the watches: wait for every control plane's first answer.
    let model = live
        .wait("every control plane probed", Duration::from_secs(20), |m| {
            let probed = clusters(m).iter().all(|c| {
                c["control_planes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|cp| cp["connected_proxies"].is_u64() || cp["probe_error"].is_string())
            });
            probed.then(|| m.clone())
        })
        .await?;
    check_topology(env, &model, "ctx-").await
}

/// The same through the binary, as a user runs it: `meshtop --once -o json` on the
/// environment's kubeconfig exits 0 with every cluster live and no secret value in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_on_the_environment() -> Result<()> {
    let env = testenv();
    let _g = shared().await;
    let log = std::env::temp_dir().join(format!("meshtop-once-{}.log", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args([
            "--once",
            "-o",
            "json",
            "--timeout",
            "20",
            "--log-level",
            "debug",
        ])
        .arg("--log-file")
        .arg(&log)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let model: Value = serde_json::from_str(&stdout)?;
    assert!(all_live(&model, &env.contexts), "{}", summary(&model));
    check_topology(env, &model, "").await?;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("cluster state"), "the log records states");
    for secret in secret_values(env).await? {
        assert!(
            !stdout.contains(&secret),
            "a secret value reached the JSON output"
        );
        assert!(
            !log_text.contains(&secret),
            "a secret value reached the log file"
        );
    }
    let _ = std::fs::remove_file(log);
    Ok(())
}

/// Scaling a Deployment shows in the model within 2 s of the API having the new endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_deployment_reaches_the_model() -> Result<()> {
    let env = testenv();
    let _g = exclusive().await;
    let context = env
        .data_plane()
        .last()
        .cloned()
        .context("a data-plane cluster")?;
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;
    let deployments: Api<Deployment> = Api::namespaced(env.client(&context).await?, "shop");
    let before = api_ready(env, &context, "shop", "cart").await?;
    let mut latencies = Vec::new();
    for replicas in [before + 2, before] {
        let patch = json!({"spec": {"replicas": replicas}});
        deployments
            .patch("cart", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        wait_for(
            &format!("{replicas} ready cart endpoints in the API"),
            Duration::from_secs(60),
            || async {
                Ok((api_ready(env, &context, "shop", "cart").await? == replicas).then_some(()))
            },
        )
        .await?;
        let seen = Instant::now();
        live.wait(
            &format!("{replicas} ready cart endpoints in the model"),
            Duration::from_secs(2),
            |m| (model_ready(m, "shop", "cart").get(&context) == Some(&replicas)).then_some(()),
        )
        .await?;
        latencies.push(seen.elapsed());
    }
    eprintln!("API -> model: {latencies:?}");
    Ok(())
}

/// A blackholed API server (SIGSTOP: connections hang, nothing is refused) turns its own
/// cluster stale within 10 s while the others stay live, and a fresh start is not held up by
/// it; after SIGCONT the cluster is live again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_api_server_turns_only_its_cluster_stale() -> Result<()> {
    let env = testenv();
    let _g = exclusive().await;
    let victim = env
        .remotes()
        .first()
        .cloned()
        .unwrap_or_else(|| env.contexts[0].clone());
    let others: Vec<String> = env
        .contexts
        .iter()
        .filter(|c| **c != victim)
        .cloned()
        .collect();
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;

    let pid = env.pid_of(&format!("kube-apiserver-{victim}"))?;
    signal(pid, "-STOP")?;
    let resume = Resume(pid);
    let stopped = Instant::now();
    live.wait(&format!("{victim} stale"), Duration::from_secs(10), |m| {
        (cluster(m, &victim)?["connection"] == "stale").then_some(())
    })
    .await?;
    eprintln!("{victim} stale after {:?}", stopped.elapsed());
    let model = live.json();
    assert!(
        all_live(&model, &others),
        "others stay live: {}",
        summary(&model)
    );

    // A fresh start while the server is blackholed: the others go live as fast as ever and the
    // victim is reported down, not waited for.
    let t0 = Instant::now();
    let mut fresh = Live::start(&env.kubeconfig).await?;
    fresh
        .wait("the other clusters live", Duration::from_secs(5), |m| {
            all_live(m, &others).then_some(())
        })
        .await?;
    eprintln!("fresh start, others live after {:?}", t0.elapsed());
    fresh
        .wait(&format!("{victim} down"), Duration::from_secs(10), |m| {
            (cluster(m, &victim)?["connection"] == "down").then_some(())
        })
        .await?;

    drop(resume);
    live.wait(
        &format!("{victim} live again"),
        Duration::from_secs(20),
        |m| all_live(m, &env.contexts).then_some(()),
    )
    .await?;
    fresh
        .wait(
            &format!("{victim} live in the fresh start"),
            Duration::from_secs(30),
            |m| all_live(m, &env.contexts).then_some(()),
        )
        .await?;
    Ok(())
}

/// A user who may not read Secrets still gets the dashboard, with a note saying what could not
/// be read; real RBAC on the real API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_secret_rights_gets_the_rest() -> Result<()> {
    let env = testenv();
    let _g = shared().await;
    let context = env.primaries().first().cloned().context("a primary")?;
    let kubeconfig = restricted_kubeconfig(env, &context).await?;
    let mut live = Live::start(&kubeconfig).await?;
    let c = live
        .wait(
            "the restricted cluster live",
            Duration::from_secs(20),
            |m| {
                cluster(m, &context)
                    .filter(|c| c["connection"] == "live")
                    .cloned()
            },
        )
        .await?;
    let text = c.to_string();
    assert!(
        text.contains("Secrets") && text.contains("403"),
        "a note names what could not be read: {text}"
    );
    let model = live.json();
    assert!(
        model_ready(&model, "shop", "frontend")
            .get(&context)
            .copied()
            .unwrap_or(0)
            > 0,
        "the rest is shown"
    );
    Ok(())
}

/// A context whose server refuses connections is down with the reason; the others are live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_context_is_down_and_the_others_live() -> Result<()> {
    let env = testenv();
    let _g = shared().await;
    let mut full: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&env.kubeconfig)?)?;
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let first_cluster = full["clusters"][0].clone();
    let mut dead = first_cluster.clone();
    dead["name"] = "dead".into();
    dead["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    let user = full["contexts"][0]["context"]["user"].clone();
    full["clusters"]
        .as_sequence_mut()
        .context("clusters")?
        .push(dead);
    let ctx: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{name: dead, context: {{cluster: dead, user: {}}}}}",
        user.as_str().unwrap_or("")
    ))?;
    full["contexts"]
        .as_sequence_mut()
        .context("contexts")?
        .push(ctx);
    let path = std::env::temp_dir().join(format!("meshtop-dead-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml::to_string(&full)?)?;
    let mut live = Live::start(&path).await?;
    live.wait("the dead context down", Duration::from_secs(10), |m| {
        let c = cluster(m, "dead")?;
        (c["connection"] == "down" && c["error"].as_str()?.contains("refused")).then_some(())
    })
    .await?;
    live.wait("every real cluster live", Duration::from_secs(20), |m| {
        all_live(m, &env.contexts).then_some(())
    })
    .await?;
    Ok(())
}

/// A malformed mesh ConfigMap gives a finding on that cluster's node; repairing it clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_mesh_config_is_a_finding_on_its_cluster() -> Result<()> {
    let env = testenv();
    let _g = exclusive().await;
    let context = env.primaries().first().cloned().context("a primary")?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client(&context).await?, "istio-system");
    let original = cms.get("istio").await?;
    let mesh = original
        .data
        .clone()
        .unwrap_or_default()
        .remove("mesh")
        .unwrap_or_default();
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;
    let node = format!("cluster:{context}");
    let broken = json!({"data": {"mesh": "defaultConfig: [unclosed"}});
    cms.patch("istio", &PatchParams::default(), &Patch::Merge(&broken))
        .await?;
    let restore = json!({"data": {"mesh": mesh}});
    let result = live
        .wait("a finding on the cluster", Duration::from_secs(5), |m| {
            m["meshes"]
                .as_array()?
                .iter()
                .flat_map(|m| m["findings"].as_array().into_iter().flatten())
                .find(|f| {
                    f["node"].as_str().is_some_and(|n| n.starts_with(&node))
                        && f["message"].as_str().is_some_and(|t| t.contains("mesh"))
                })
                .cloned()
        })
        .await;
    cms.patch("istio", &PatchParams::default(), &Patch::Merge(&restore))
        .await?;
    let finding = result?;
    eprintln!("finding: {finding}");
    live.wait("the finding gone", Duration::from_secs(5), |m| {
        let any = m["meshes"]
            .as_array()?
            .iter()
            .flat_map(|m| m["findings"].as_array().into_iter().flatten())
            .any(|f| f == &finding);
        (!any).then_some(())
    })
    .await?;
    Ok(())
}

/// An istiod URL (config file) that answers garbage: the control plane shows the error, the
/// cluster stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istiod_that_answers_garbage_is_an_error_on_its_control_plane() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = testenv();
    let _g = shared().await;
    let context = env.primaries().first().cloned().context("a primary")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let body = "<<this is not json>>";
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    let mut settings = BTreeMap::new();
    settings.insert(
        context.clone(),
        meshtop::config::ClusterSettings {
            istiod_url: Some(format!("http://{addr}")),
            ..Default::default()
        },
    );
    let mut live =
        Live::start_with(&env.kubeconfig, std::slice::from_ref(&context), &settings).await?;
    let cp = live
        .wait(
            "a probe error on the control plane of a live cluster",
            Duration::from_secs(20),
            |m| {
                let c = cluster(m, &context)?;
                // The probe may answer before every kind has synced: wait for both.
                if c["connection"] != "live" {
                    return None;
                }
                c["control_planes"]
                    .as_array()?
                    .iter()
                    .find(|cp| {
                        cp["probe_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("clusterz"))
                    })
                    .cloned()
            },
        )
        .await?;
    eprintln!("control plane: {}", cp["probe_error"]);
    let model = live.json();
    assert_eq!(
        cluster(&model, &context).map(|c| c["connection"].clone()),
        Some(json!("live"))
    );
    Ok(())
}

/// `meshtop` refuses a kubeconfig that does not parse with a message naming the file, exit 2.
#[test]
fn a_kubeconfig_that_does_not_parse_names_the_file() -> Result<()> {
    let path = std::env::temp_dir().join(format!("meshtop-broken-{}.yaml", std::process::id()));
    std::fs::write(&path, "apiVersion: v1\nclusters: [unclosed\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args(["--once", "--kubeconfig"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// The config file's per-context settings reach the model: a display name and an Istio cluster
/// id that wins over what the cluster's objects say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_names_and_cluster_ids_reach_the_model() -> Result<()> {
    let env = testenv();
    let _g = shared().await;
    let context = env
        .remotes()
        .first()
        .cloned()
        .unwrap_or_else(|| env.contexts[0].clone());
    let mut settings = BTreeMap::new();
    settings.insert(
        context.clone(),
        meshtop::config::ClusterSettings {
            display_name: Some("Remote (eu)".into()),
            cluster_id: Some("configured-id".into()),
            ..Default::default()
        },
    );
    let mut live =
        Live::start_with(&env.kubeconfig, std::slice::from_ref(&context), &settings).await?;
    let c = live
        .wait("the configured identity", Duration::from_secs(20), |m| {
            cluster(m, &context)
                .filter(|c| c["connection"] == "live")
                .cloned()
        })
        .await?;
    assert_eq!(c["display_name"], "Remote (eu)", "{c}");
    assert_eq!(c["cluster_id"], "configured-id", "{c}");
    Ok(())
}

/// A second environment of another topology (its own state directory), brought down when the
/// test ends, pass or fail.
struct SecondEnv {
    state: PathBuf,
    env: TestEnv,
}

impl SecondEnv {
    fn up(topology: &str) -> Result<SecondEnv> {
        let base = std::env::var_os("MESHTOP_TESTENV_STATE")
            .map(PathBuf::from)
            .or_else(|| dirs_home().map(|h| h.join(".cache/meshtop-testenv/state")))
            .context("no state directory")?;
        let state = PathBuf::from(format!("{}-{topology}", base.display()));
        let root = common::testenv::repo_root();
        let out = Command::new(root.join("testenv/up"))
            .args(["--topology", topology])
            .env("MESHTOP_TESTENV_STATE", &state)
            .stderr(Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let guard_state = state.clone();
        let down = move || {
            let _ = Command::new(root.join("testenv/down"))
                .env("MESHTOP_TESTENV_STATE", &guard_state)
                .status();
        };
        if !out.status.success() {
            down();
            bail!("testenv/up --topology {topology} failed: {stdout}");
        }
        let kubeconfig = stdout
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
            .map(PathBuf::from)
            .context("no export line")?;
        match common::testenv::load(&kubeconfig) {
            Ok(env) => Ok(SecondEnv { state, env }),
            Err(e) => {
                down();
                Err(e)
            }
        }
    }
}

impl Drop for SecondEnv {
    fn drop(&mut self) {
        let _ = Command::new(common::testenv::repo_root().join("testenv/down"))
            .env("MESHTOP_TESTENV_STATE", &self.state)
            .status();
    }
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The same ground-truth comparison on a second topology: an external control plane (istiod
/// in one cluster configuring two others, across two networks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_model_equals_an_external_control_plane_environment() -> Result<()> {
    // Bringing a second environment up loads the machine: the timing tests wait for it.
    let _g = exclusive().await;
    let second =
        tokio::task::spawn_blocking(|| SecondEnv::up("external-istiod-multicluster")).await??;
    let env = &second.env;
    let mut live = Live::start(&env.kubeconfig).await?;
    let model = live
        .wait(
            "every cluster live and probed",
            Duration::from_secs(30),
            |m| {
                let probed = clusters(m).iter().all(|c| {
                    c["control_planes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .all(|cp| cp["connected_proxies"].is_u64() || cp["probe_error"].is_string())
                });
                (all_live(m, &env.contexts) && probed).then(|| m.clone())
            },
        )
        .await?;
    check_topology(env, &model, "").await
}

/// Kills an API server (SIGKILL, as a crash would) and starts it again exactly as testenv started it (same
/// binary, arguments, environment and directory; the pid file follows), then waits for it.
async fn restart_apiserver(env: &TestEnv, context: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let pid_path = env
        .state_dir
        .join("pids")
        .join(format!("kube-apiserver-{context}.pid"));
    let pid = env.pid_of(&format!("kube-apiserver-{context}"))?;
    let exe = std::fs::read_to_string(&pid_path)?
        .lines()
        .nth(1)
        .context("exe in the pid file")?
        .to_string();
    let split = |b: Vec<u8>| -> Vec<String> {
        b.split(|c| *c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let argv = split(std::fs::read(format!("/proc/{pid}/cmdline"))?);
    let environ = split(std::fs::read(format!("/proc/{pid}/environ"))?);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
    signal(pid, "-TERM")?;
    // A killed process can take a while to release its port on a loaded machine: wait until
    // the port can be bound again.
    let port: u16 = argv
        .iter()
        .find_map(|a| a.strip_prefix("--secure-port="))
        .and_then(|p| p.parse().ok())
        .context("--secure-port in the API server's arguments")?;
    wait_for(
        "the API server's port free",
        Duration::from_secs(120),
        || async move {
            Ok(std::net::TcpListener::bind(("127.0.0.1", port))
                .ok()
                .map(drop))
        },
    )
    .await?;
    let log = std::fs::OpenOptions::new().append(true).create(true).open(
        env.state_dir
            .join("logs")
            .join(format!("kube-apiserver-{context}.log")),
    )?;
    let child = Command::new(&exe)
        .args(&argv[1..])
        .env_clear()
        .envs(environ.iter().filter_map(|kv| kv.split_once('=')))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    std::fs::write(&pid_path, format!("{}\n{exe}\n", child.id()))?;
    let client = env.client(context).await?;
    wait_for(
        "the API server ready again",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                Ok(client.request_text(req).await.ok().filter(|t| t == "ok"))
            }
        },
    )
    .await?;
    Ok(())
}

/// The cluster's part of the model, without what moves by itself (data age).
fn cluster_view(model: &Value, context: &str) -> Value {
    let mut c = cluster(model, context).cloned().unwrap_or_default();
    if let Some(o) = c.as_object_mut() {
        o.remove("last_update");
    }
    let services: BTreeMap<String, u64> = model["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["services"].as_array().into_iter().flatten())
        .filter_map(|s| {
            let ready = model_ready(model, s["namespace"].as_str()?, s["name"].as_str()?);
            Some((
                format!("{}/{}", s["namespace"].as_str()?, s["name"].as_str()?),
                ready.get(context).copied().unwrap_or(0),
            ))
        })
        .collect();
    json!({"cluster": c, "ready_by_service": services})
}

/// An API server killed and started again while objects change around it: afterwards the
/// long-running model equals a fresh read of the cluster (no ghosts, nothing missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_api_server_leaves_the_model_equal_to_a_fresh_read() -> Result<()> {
    let env = testenv();
    let _g = exclusive().await;
    let victim = env
        .remotes()
        .first()
        .cloned()
        .unwrap_or_else(|| env.contexts[0].clone());
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;
    restart_apiserver(env, &victim).await?;
    // Changes while meshtop's watches are still reconnecting.
    let client = env.client(&victim).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let cart = deployments.get("cart").await?;
    let replicas = cart.spec.replicas.unwrap_or(1);
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    deployments
        .patch(
            "cart",
            &PatchParams::default(),
            &Patch::Merge(&scale(replicas + 1)),
        )
        .await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let relabel = |v: &str| json!({"metadata": {"labels": {"istio-injection": v}}});
    namespaces
        .patch(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(&relabel("enabled")),
        )
        .await?;
    let result = async {
        wait_for(
            "the new cart endpoint in the API",
            Duration::from_secs(60),
            || async {
                Ok(
                    (api_ready(env, &victim, "shop", "cart").await? == replicas as u64 + 1)
                        .then_some(()),
                )
            },
        )
        .await?;
        live.wait(
            &format!("{victim} live again"),
            Duration::from_secs(30),
            |m| all_live(m, &env.contexts).then_some(()),
        )
        .await?;
        let mut fresh = Live::start(&env.kubeconfig).await?;
        let want = fresh
            .wait("a fresh read", Duration::from_secs(20), |m| {
                all_live(m, &env.contexts).then(|| cluster_view(m, &victim))
            })
            .await?;
        live.wait(
            "the long-running model to equal a fresh read",
            Duration::from_secs(10),
            |m| (cluster_view(m, &victim) == want).then_some(()),
        )
        .await
        .with_context(|| {
            format!(
                "fresh read: {want}\nlong-running: {}",
                cluster_view(&live.json(), &victim)
            )
        })
    }
    .await;
    deployments
        .patch(
            "cart",
            &PatchParams::default(),
            &Patch::Merge(&scale(replicas)),
        )
        .await?;
    namespaces
        .patch(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(&relabel("disabled")),
        )
        .await?;
    result
}
