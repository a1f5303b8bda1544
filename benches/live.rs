//! Live mode against `testenv/` (real API servers, real istiod): prints figures, asserts nothing.
//!
//!   cargo bench --bench live
//!
//! Brings the environment up if it is not running. Measures, with the release binary in a real
//! terminal (tmux) where the figure is about the program a user runs:
//! - time from process start to every cluster live, and to the first frame (from meshtop's own
//!   log, which stamps both against the process start);
//! - the first frame with one API server blackholed (SIGSTOP);
//! - the first frame and the other clusters with one context behind a credential plugin that
//!   takes 5 s (a second kubeconfig file, as in `tests/kubeconfig_live.rs`);
//! - resident memory after sync, CPU seconds over an idle window, and the API requests the API
//!   servers counted meanwhile (their own `apiserver_request_total`), against a window without
//!   meshtop, so LISTs after the initial sync can be told apart from other clients';
//! - the LISTs and port-forwards meshtop itself logged over that idle window (its log names
//!   every relist and every port-forward it opens);
//! - in this process: a Deployment scale → the model, from the moment the API's EndpointSlice
//!   has the new endpoint to the moment the derived model has it (p50/p95).
//!
//! `MESHTOP_BENCH_IDLE_SECS` sets the idle window (default 60), `MESHTOP_BENCH_SCALES` the
//! number of scale steps (default 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;

use common::live::{model_ready, Live};
use common::testenv::{testenv, TestEnv};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn release_binary() -> Result<PathBuf> {
    let st = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "meshtop"])
        .status()?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::testenv::repo_root().join("target"));
    Ok(target.join("release/meshtop"))
}

struct Tui {
    socket: String,
    log: PathBuf,
}

impl Tui {
    fn start(bin: &Path, env: &TestEnv, name: &str) -> Result<Tui> {
        Tui::start_on(bin, &env.kubeconfig.display().to_string(), name)
    }

    /// On the files of a `KUBECONFIG` value.
    fn start_on(bin: &Path, kubeconfig: &str, name: &str) -> Result<Tui> {
        let socket = format!("meshtop-bench-{}-{name}", std::process::id());
        let log = std::env::temp_dir().join(format!("{socket}.log"));
        let _ = std::fs::remove_file(&log);
        let st = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "s",
            ])
            .args(["-x", "200", "-y", "60"])
            .arg(format!(
                "exec {} --log-file {} --log-level info",
                bin.display(),
                log.display()
            ))
            .env("KUBECONFIG", kubeconfig)
            .env("TERM", "xterm-256color")
            .status()?;
        if !st.success() {
            bail!("tmux failed");
        }
        Ok(Tui { socket, log })
    }

    fn pid(&self) -> Result<u32> {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "display",
                "-p",
                "-t",
                "s",
                "#{pane_pid}",
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }

    /// `since_start_ms` of the first log line containing every one of `needles`.
    fn logged_ms(&self, needles: &[&str]) -> Option<u64> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))?;
        let rest = &line[line.find("since_start_ms=")? + "since_start_ms=".len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Log lines containing `needle`.
    fn count_logged(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    /// Waits until every context has logged `state="live"`; returns the latest of those times.
    fn all_live_ms(&self, contexts: &[String], timeout: Duration) -> Result<u64> {
        let t0 = Instant::now();
        loop {
            let times: Vec<Option<u64>> = contexts
                .iter()
                .map(|c| self.logged_ms(&[&format!("context={c} "), "state=\"live\""]))
                .collect();
            if times.iter().all(Option::is_some) {
                return Ok(times.into_iter().flatten().max().unwrap_or(0));
            }
            if t0.elapsed() > timeout {
                bail!("not every cluster went live within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn first_frame_ms(&self, timeout: Duration) -> Result<u64> {
        let t0 = Instant::now();
        loop {
            if let Some(ms) = self.logged_ms(&["first frame"]) {
                return Ok(ms);
            }
            if t0.elapsed() > timeout {
                bail!("no first frame within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// The API servers' own request counters, summed over clusters: verb -> count.
async fn api_requests(env: &TestEnv) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for context in &env.contexts {
        let client = env.client(context).await?;
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = client.request_text(req).await?;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some(verb) = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("verb=\""))
                .and_then(|v| v.strip_suffix('"').or(Some(v)))
            else {
                continue;
            };
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            *out.entry(verb.trim_end_matches('"').to_string())
                .or_insert(0.0) += value;
        }
    }
    Ok(out)
}

fn delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let env = testenv();
    let bin = release_binary()?;
    let idle = Duration::from_secs(env_num("MESHTOP_BENCH_IDLE_SECS", 60));
    println!(
        "meshtop live benchmark: {} clusters ({}), release binary, 2-core machine",
        env.contexts.len(),
        env.contexts.join(", ")
    );

    // Start to live and to the first frame, five starts.
    let mut live_ms = Vec::new();
    let mut frame_ms = Vec::new();
    for i in 0..5 {
        let tui = Tui::start(&bin, env, &format!("start{i}"))?;
        frame_ms.push(tui.first_frame_ms(Duration::from_secs(5))?);
        live_ms.push(tui.all_live_ms(&env.contexts, Duration::from_secs(20))?);
    }
    live_ms.sort_unstable();
    frame_ms.sort_unstable();
    println!(
        "start -> every cluster live: median {} ms, max {} ms (target < 500 ms)",
        live_ms[2], live_ms[4]
    );
    println!(
        "start -> first frame: median {} ms, max {} ms (target < 100 ms)",
        frame_ms[2], frame_ms[4]
    );

    // With one API server blackholed.
    let victim = env.contexts.last().cloned().context("a cluster")?;
    let pid_path = env
        .state_dir
        .join("pids")
        .join(format!("kube-apiserver-{victim}.pid"));
    let apiserver = std::fs::read_to_string(&pid_path)?
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Command::new("kill").args(["-STOP", &apiserver]).status()?;
    let blackholed = (|| -> Result<(u64, u64)> {
        let tui = Tui::start(&bin, env, "blackholed")?;
        let frame = tui.first_frame_ms(Duration::from_secs(5))?;
        let others: Vec<String> = env
            .contexts
            .iter()
            .filter(|c| **c != victim)
            .cloned()
            .collect();
        let live = tui.all_live_ms(&others, Duration::from_secs(20))?;
        Ok((frame, live))
    })();
    Command::new("kill").args(["-CONT", &apiserver]).status()?;
    let (frame, live) = blackholed?;
    println!(
        "with {victim}'s API server blackholed: first frame {frame} ms, the other clusters live {live} ms"
    );

    // With one context behind a credential plugin that answers after 5 s.
    let scratch = common::plugin::Scratch::new("bench")?;
    let plugin = common::plugin::Plugin {
        delay: 5,
        slow_from: 1,
        life: 0,
    };
    let (main_file, plugin_file, _, slow) =
        common::plugin::with_plugin(env, &scratch, plugin).await?;
    {
        let kubeconfig = common::plugin::kubeconfig_var(&[&main_file, &plugin_file]);
        let tui = Tui::start_on(&bin, &kubeconfig, "plugin")?;
        let frame = tui.first_frame_ms(Duration::from_secs(5))?;
        let others: Vec<String> = env
            .contexts
            .iter()
            .filter(|c| **c != slow)
            .cloned()
            .collect();
        let live = tui.all_live_ms(&others, Duration::from_secs(20))?;
        let own = tui.all_live_ms(std::slice::from_ref(&slow), Duration::from_secs(20))?;
        println!(
            "with {slow} behind a 5 s credential plugin: first frame {frame} ms, the other clusters live {live} ms, {slow} live {own} ms"
        );
    }

    // Idle: memory, CPU, API requests; first a window without meshtop.
    let window = idle.min(Duration::from_secs(30));
    let a = api_requests(env).await?;
    tokio::time::sleep(window).await;
    let b = api_requests(env).await?;
    let baseline = delta(&a, &b);
    let tui = Tui::start(&bin, env, "idle")?;
    tui.all_live_ms(&env.contexts, Duration::from_secs(20))?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pid = tui.pid()?;
    let rss_synced = rss_kib(pid)?;
    let a = api_requests(env).await?;
    // meshtop's own count (its log, info level): what it asked, whoever else asks meanwhile.
    let (pf0, relists0) = (
        tui.count_logged("port-forward opened"),
        tui.count_logged("relisting"),
    );
    let c0 = cpu_ticks(pid)?;
    tokio::time::sleep(idle).await;
    let c1 = cpu_ticks(pid)?;
    let (pf1, relists1) = (
        tui.count_logged("port-forward opened"),
        tui.count_logged("relisting"),
    );
    let b = api_requests(env).await?;
    let rss_idle = rss_kib(pid)?;
    let with = delta(&a, &b);
    let ticks = c1 - c0;
    let cpu_s = ticks as f64 / 100.0;
    println!(
        "resident memory: {:.1} MB after sync, {:.1} MB after {} s idle (target <= 30 MB)",
        rss_synced as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        idle.as_secs()
    );
    println!(
        "idle CPU: {cpu_s:.2} CPU-s in {} s = {:.2} % of a core (target <= 0.3 %)",
        idle.as_secs(),
        cpu_s * 100.0 / idle.as_secs_f64()
    );
    let per_min = |m: &BTreeMap<String, f64>, w: Duration| -> String {
        m.iter()
            .map(|(k, v)| format!("{k} {:.0}", v * 60.0 / w.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "API requests per minute, all API servers, without meshtop: {}",
        per_min(&baseline, window)
    );
    println!(
        "API requests per minute, all API servers, with meshtop idle: {}",
        per_min(&with, idle)
    );
    let lists = |m: &BTreeMap<String, f64>, w: Duration| {
        m.get("LIST").copied().unwrap_or(0.0) * 60.0 / w.as_secs_f64()
    };
    println!(
        "LISTs per minute attributable to meshtop after the initial sync: {:.1} (target 0)",
        (lists(&with, idle) - lists(&baseline, window)).max(0.0)
    );
    println!(
        "meshtop's own log over the idle window: {} LISTs after the initial sync (relists), {} port-forwards opened (target 0 and 0)",
        relists1 - relists0,
        pf1 - pf0
    );
    drop(tui);

    // Scale -> model, in this process.
    let steps = env_num("MESHTOP_BENCH_SCALES", 20) as usize;
    let context = env
        .data_plane()
        .last()
        .cloned()
        .context("a data-plane cluster")?;
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;
    let client = env.client(&context).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "shop");
    let (api_tx, mut api_rx) = tokio::sync::mpsc::unbounded_channel();
    let slice_watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().labels("kubernetes.io/service-name=cart");
        let mut stream = Box::pin(watcher(slices, cfg));
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(s)) = ev {
                let ready = s
                    .endpoints
                    .iter()
                    .flatten()
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                    .count() as u64;
                let _ = api_tx.send((Instant::now(), ready));
            }
        }
    });
    let base = model_ready(&live.json(), "shop", "cart")
        .get(&context)
        .copied()
        .unwrap_or(1);
    let mut latencies = Vec::new();
    for i in 0..steps {
        let want = if i % 2 == 0 { base + 1 } else { base };
        deployments
            .patch(
                "cart",
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({"spec": {"replicas": want}})),
            )
            .await?;
        // The moment the API's EndpointSlice says `want` ready endpoints.
        let api_at = loop {
            let (at, ready) = tokio::time::timeout(Duration::from_secs(60), api_rx.recv())
                .await?
                .context("slice watch ended")?;
            if ready == want {
                break at;
            }
        };
        live.wait("the model", Duration::from_secs(10), |m| {
            (model_ready(m, "shop", "cart").get(&context) == Some(&want)).then_some(())
        })
        .await?;
        latencies.push(api_at.elapsed());
    }
    slice_watch.abort();
    latencies.sort();
    println!(
        "Deployment scale -> model ({steps} steps, from the API's EndpointSlice): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (target p95 < 150 ms)",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    Ok(())
}
