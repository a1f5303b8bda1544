//! End to end on real clusters: `meshtop` (no flags) in a real terminal (tmux) on the test
//! environment's kubeconfig, as an operator runs it. The screen fills in live, a scale shows up,
//! a blackholed API server neither freezes the keys nor delays a fresh start's first frame, and
//! the cluster recovers by itself.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};

use common::testenv::{testenv, TestEnv};
use common::tmux::Tmux;

/// Both tests stop or change the environment: one at a time.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn apiserver_pid(env: &TestEnv, context: &str) -> Result<String> {
    let path = env
        .state_dir
        .join("pids")
        .join(format!("kube-apiserver-{context}.pid"));
    let text = std::fs::read_to_string(&path)?;
    Ok(text.lines().next().context("pid")?.trim().to_string())
}

struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

/// The tree line of one cluster (`▶ ✔ remote remote ← primary 12/12`).
fn tree_line<'a>(screen: &'a str, context: &str) -> Option<&'a str> {
    let needle = format!(" {context} ");
    screen
        .lines()
        .map(|l| l.split('│').nth(1).unwrap_or(""))
        .find(|l| l.contains(&needle) && (l.contains('▶') || l.contains('▼')))
}

/// `ready/total` at the end of a cluster's tree line.
fn endpoints(line: &str) -> Option<(u64, u64)> {
    let last = line.split_whitespace().last()?;
    let (r, t) = last.split_once('/')?;
    Some((r.parse().ok()?, t.parse().ok()?))
}

async fn cluster_ready_endpoints(env: &TestEnv, context: &str) -> Result<u64> {
    let slices: Api<EndpointSlice> = Api::all(env.client(context).await?);
    let mut n = 0;
    for s in slices.list(&ListParams::default()).await?.items {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == "kube-system" || ns == "default" || ns == "istio-system" {
            continue;
        }
        n += s
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .count() as u64;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_dashboard_in_a_terminal() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let kubeconfig = env.kubeconfig.display().to_string();
    let log = std::env::temp_dir().join(format!("meshtop-e2e-live-{}.log", std::process::id()));
    let command = format!(
        "{} --log-file {}; echo MESHTOP-EXIT:$?; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        log.display()
    );
    let tmux = Tmux::start("main", &command, &[("KUBECONFIG", &kubeconfig)]);
    let (screen, took) = tmux.wait("every cluster in the tree", Duration::from_secs(20), |s| {
        env.contexts.iter().all(|c| tree_line(s, c).is_some())
    });
    eprintln!("every cluster on screen after {took:?}");
    assert!(
        screen.contains("live"),
        "the header says live mode:\n{screen}"
    );

    // Select a data-plane cluster: its panel says live.
    let target = env
        .data_plane()
        .last()
        .cloned()
        .context("a data-plane cluster")?;
    select(&tmux, &target);
    tmux.wait("the cluster panel, live", Duration::from_secs(10), |s| {
        s.contains(&format!("Cluster {target}")) && s.contains("live · data age")
    });

    // Scale a Deployment: the cluster's endpoint count on screen follows within 2 s of the API.
    let (screen, _) = tmux.wait("endpoint counts", Duration::from_secs(10), |s| {
        tree_line(s, &target).and_then(endpoints).is_some()
    });
    let before = tree_line(&screen, &target)
        .and_then(endpoints)
        .context("count")?;
    let deployments: Api<Deployment> = Api::namespaced(env.client(&target).await?, "shop");
    let cart = deployments.get("cart").await?;
    let replicas = cart.spec.replicas.unwrap_or(1);
    let api_before = cluster_ready_endpoints(env, &target).await?;
    let scale = |n: i32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "cart",
                    &PatchParams::default(),
                    &Patch::Merge(&serde_json::json!({"spec": {"replicas": n}})),
                )
                .await
        }
    };
    scale(replicas + 2).await?;
    let want = api_before + 2;
    common::testenv::wait_for("the API's endpoints", Duration::from_secs(60), || async {
        Ok((cluster_ready_endpoints(env, &target).await? == want).then_some(()))
    })
    .await?;
    let (_, took) = tmux.wait("the new count on screen", Duration::from_secs(2), |s| {
        tree_line(s, &target)
            .and_then(endpoints)
            .is_some_and(|(r, _)| r == before.0 + 2)
    });
    eprintln!("scale: API -> screen {took:?}");
    scale(replicas).await?;

    // Blackhole one API server: keys still answer at once, the cluster turns stale.
    let victim = env
        .remotes()
        .first()
        .cloned()
        .unwrap_or_else(|| target.clone());
    let pid = apiserver_pid(env, &victim)?;
    let status = Command::new("kill").args(["-STOP", &pid]).status()?;
    assert!(status.success());
    let resume = Resume(pid);
    select(&tmux, &victim);
    tmux.key("?");
    let (_, took) = tmux.wait(
        "help while a server is blackholed",
        Duration::from_secs(1),
        |s| s.contains("Keys"),
    );
    eprintln!("key -> screen with a blackholed server: {took:?}");
    tmux.key("Escape");
    tmux.wait(&format!("{victim} stale"), Duration::from_secs(12), |s| {
        s.contains(&format!("Cluster {victim}")) && s.contains("stale")
    });

    // A fresh start meanwhile: the first frame is there at once, the others go live.
    let t0 = Instant::now();
    let fresh = Tmux::start(
        "fresh",
        &format!(
            "{} --log-file {}",
            env!("CARGO_BIN_EXE_meshtop"),
            log.display()
        ),
        &[("KUBECONFIG", &kubeconfig)],
    );
    fresh.wait("the first frame", Duration::from_secs(2), |s| {
        s.contains("meshtop")
    });
    eprintln!("fresh start, first frame captured after {:?}", t0.elapsed());
    let others: Vec<&String> = env.contexts.iter().filter(|c| **c != victim).collect();
    fresh.wait("the other clusters", Duration::from_secs(10), |s| {
        others.iter().all(|c| tree_line(s, c).is_some())
    });
    drop(fresh);

    drop(resume);
    tmux.wait(
        &format!("{victim} live again"),
        Duration::from_secs(20),
        |s| s.contains(&format!("Cluster {victim}")) && s.contains("live · data age"),
    );

    // The cluster panel of a primary names its remote secrets; no value may reach the screen.
    let primary = env.primaries().first().cloned().context("a primary")?;
    select(&tmux, &primary);
    let screen = tmux.capture();
    for secret in common::live::secret_values(env).await? {
        assert!(!screen.contains(&secret), "a secret value on screen");
    }

    tmux.key("q");
    tmux.wait("a clean exit", Duration::from_secs(5), |s| {
        s.contains("MESHTOP-EXIT:0")
    });
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("cluster state"),
        "the log file records states"
    );
    let _ = std::fs::remove_file(log);
    Ok(())
}

/// The operator's failover, as they would do it: select the remote, `f`, read the plan and
/// the checks the API server answered, type the cluster's name, watch the steps, see the tree
/// re-parent the cluster under its new control plane (when istiod says so), then `u` and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_undo_in_the_terminal() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let remote = env
        .remotes()
        .into_iter()
        .find(|c| env.istiod[c].control_plane_cluster != *c)
        .context("a remote cluster")?;
    let home = env.istiod[&remote].control_plane_cluster.clone();
    let target = env
        .primaries()
        .into_iter()
        .find(|c| *c != home && env.istiod[c].role == "primary")
        .context("another primary")?;
    let dir = std::env::temp_dir().join(format!("meshtop-e2e-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let audit = dir.join("audit.jsonl");
    let command = format!(
        "{} --log-file {} --audit-log {}; echo MESHTOP-EXIT:$?; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        dir.join("meshtop.log").display(),
        audit.display()
    );
    let kubeconfig = env.kubeconfig.display().to_string();
    let tmux = Tmux::start("failover", &command, &[("KUBECONFIG", &kubeconfig)]);
    let _restore = UndoOnDrop(audit.clone());
    tmux.wait("every cluster in the tree", Duration::from_secs(20), |s| {
        env.contexts.iter().all(|c| tree_line(s, c).is_some())
    });
    let served_by =
        |s: &str, cp: &str| tree_line(s, &remote).is_some_and(|l| l.contains(&format!("← {cp}")));
    tmux.wait(
        "the remote under its primary",
        Duration::from_secs(20),
        |s| served_by(s, &home),
    );
    select(&tmux, &remote);

    // `f`: the plan, the checks (the API server's answers too), and the typed confirmation.
    tmux.key("f");
    let (screen, _) = tmux.wait("the plan, checked", Duration::from_secs(20), |s| {
        s.contains("Type the cluster's name") && s.contains("writes permitted")
    });
    assert!(screen.contains(&format!("repoint {remote}")), "{screen}");
    assert!(screen.contains(&target), "the target is named:\n{screen}");
    tmux.key("Enter");
    let (screen, _) = tmux.wait("still reviewing", Duration::from_secs(2), |s| {
        s.contains("Type the cluster's name")
    });
    assert!(!screen.contains("Applying"), "Enter alone applies nothing");
    for ch in remote.chars() {
        tmux.key(&ch.to_string());
    }
    tmux.wait("the name typed", Duration::from_secs(2), |s| {
        s.contains(&format!("cluster name › {remote}"))
    });
    tmux.key("Enter");
    let (screen, took) = tmux.wait("the failover verified", Duration::from_secs(90), |s| {
        s.contains("Failover complete")
    });
    eprintln!("failover in the terminal: {took:?}");
    assert!(screen.contains("now serves"), "{screen}");
    // Esc closes the window, Esc again clears the filter: the whole tree.
    tmux.key("Escape");
    tmux.key("Escape");
    tmux.wait("the remote re-parented", Duration::from_secs(20), |s| {
        served_by(s, &target)
    });
    let on_target = common::testenv::syncz(&env.istiod[&target].debug).await?;
    assert!(
        on_target.iter().any(|r| r["cluster_id"] == remote.as_str()),
        "the target istiod serves the remote's proxies"
    );

    // `u`: the same review, typed again, and back home.
    tmux.key("u");
    tmux.wait("the undo plan, checked", Duration::from_secs(20), |s| {
        s.contains("Undo failover") && s.contains("writes permitted")
    });
    for ch in remote.chars() {
        tmux.key(&ch.to_string());
    }
    tmux.key("Enter");
    tmux.wait("the undo verified", Duration::from_secs(90), |s| {
        s.contains("Failover complete")
    });
    tmux.key("Escape");
    tmux.key("Escape");
    tmux.wait("the remote home again", Duration::from_secs(20), |s| {
        served_by(s, &home)
    });
    tmux.key("q");
    tmux.wait("a clean exit", Duration::from_secs(5), |s| {
        s.contains("MESHTOP-EXIT:0")
    });
    let text = std::fs::read_to_string(&audit)?;
    let attempts = meshtop::failover::audit::attempts_of(&text);
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts.iter().all(|a| a.status() == "verified"),
        "{attempts:#?}"
    );
    assert!(attempts[1].undoes.as_deref() == Some(attempts[0].id.as_str()));
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Undoes whatever a failing test left applied (the audit log knows).
struct UndoOnDrop(std::path::PathBuf);

impl Drop for UndoOnDrop {
    fn drop(&mut self) {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        let attempts = meshtop::failover::audit::attempts_of(&text);
        if meshtop::failover::audit::latest_undoable(&attempts).is_some() {
            let _ = Command::new(env!("CARGO_BIN_EXE_meshtop"))
                .env("KUBECONFIG", &testenv().kubeconfig)
                .arg("--audit-log")
                .arg(&self.0)
                .args(["undo", "--yes"])
                .stdin(std::process::Stdio::null())
                .output();
        }
    }
}

/// Moves the selection to a cluster by filtering the tree for its name.
fn select(tmux: &Tmux, context: &str) {
    // Esc clears an earlier filter; then `/` starts a new one.
    tmux.key("Escape");
    tmux.wait("no filter", Duration::from_secs(5), |s| {
        !s.contains("Esc clears")
    });
    tmux.key("/");
    for ch in context.chars() {
        tmux.key(&ch.to_string());
    }
    tmux.key("Enter");
    tmux.wait(
        &format!("{context} selected"),
        Duration::from_secs(5),
        |s| s.contains(&format!("Cluster {context}")),
    );
}
