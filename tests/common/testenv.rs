//! Access to the local multi-cluster Istio test environment (`testenv/`).
//!
//! [`testenv()`] brings the environment up once per test process (or reuses one that is
//! already running: `testenv/env` answers while it runs, and `testenv/up` itself takes a file
//! lock, so concurrent test binaries do not race). If the binaries are not built yet, it runs
//! `testenv/build` first, which on a fresh machine takes tens of minutes.
//!
//! Everything it hands out points at 127.0.0.1.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// istiod endpoints serving one context (for a remote cluster: its primary's istiod).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstiodUrls {
    /// Name of the cluster (context) that runs the istiod serving this context.
    pub control_plane_cluster: String,
    /// `CLUSTER_ID` of that istiod (its config cluster: itself for a primary).
    pub cluster_id: String,
    /// The cluster whose API that istiod reads config and remote secrets from.
    pub config_cluster: String,
    /// `primary`, `remote`, `external` (an external control plane's host cluster) or
    /// `config` (the config cluster of an external control plane).
    pub role: String,
    pub network: String,
    /// The context's API server (https://127.0.0.1:PORT).
    pub apiserver: String,
    /// Base URL of the monitoring port (15014): `/debug/*`, `/metrics`, `/version`.
    pub debug: String,
    pub metrics: String,
    /// Base URL of the HTTP port (8080).
    pub http: String,
    /// Readiness URL (`/ready` on the HTTP port).
    pub ready: String,
    /// Webhook port (15017), HTTPS with the testenv CA.
    pub webhook: String,
    /// Plaintext xDS (15010), `127.0.0.1:PORT`.
    #[serde(default)]
    pub xds: String,
    /// The istiods of other revisions installed in this context's cluster (`testenv/up
    /// --revisions canary`: every primary), by revision name. Empty without the knob.
    #[serde(default)]
    pub revisions: BTreeMap<String, RevisionUrls>,
}

/// The local istiod of one more revision of a primary (`istiod.json`: `revisions.<rev>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionUrls {
    /// Its Service (and Deployment) in istio-system: `istiod-<rev>`.
    pub service: String,
    /// Base URL of its monitoring port (15014).
    pub debug: String,
    pub metrics: String,
    pub http: String,
    pub ready: String,
    /// Its webhook port (the revision's injector webhooks point here).
    pub webhook: String,
    /// Plaintext xDS, `127.0.0.1:PORT`.
    pub xds: String,
}

#[derive(Debug, Clone)]
pub struct TestEnv {
    /// One kubeconfig with a context per cluster; context name = cluster id.
    pub kubeconfig: PathBuf,
    /// The state directory (kubeconfig, istiod.json, logs).
    pub state_dir: PathBuf,
    /// Context names, in topology order.
    pub contexts: Vec<String>,
    /// Context name -> istiod URLs.
    pub istiod: BTreeMap<String, IstiodUrls>,
}

impl TestEnv {
    /// Contexts of clusters that host an istiod (primaries and external control planes).
    pub fn primaries(&self) -> Vec<String> {
        self.with_role(&["primary", "external"])
    }

    /// Contexts of remote clusters (configured by another cluster's istiod), including the
    /// config cluster of an external control plane.
    pub fn remotes(&self) -> Vec<String> {
        self.with_role(&["remote", "config"])
    }

    /// Contexts of clusters in the data plane (all but external control plane hosts).
    pub fn data_plane(&self) -> Vec<String> {
        self.with_role(&["primary", "remote", "config"])
    }

    fn with_role(&self, roles: &[&str]) -> Vec<String> {
        self.contexts
            .iter()
            .filter(|c| roles.contains(&self.istiod[*c].role.as_str()))
            .cloned()
            .collect()
    }

    /// A kube-rs client for one context of the testenv kubeconfig.
    pub async fn client(&self, context: &str) -> Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let opts = kube::config::KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await?;
        if cfg.cluster_url.host() != Some("127.0.0.1") {
            bail!(
                "testenv context {context} does not point at 127.0.0.1: {}",
                cfg.cluster_url
            );
        }
        Ok(kube::Client::try_from(cfg)?)
    }
}

/// The repository root (where `testenv/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static ENV: OnceLock<TestEnv> = OnceLock::new();

/// The running test environment, brought up on first use.
pub fn testenv() -> &'static TestEnv {
    ENV.get_or_init(|| match ensure_up() {
        Ok(env) => env,
        Err(e) => panic!("meshtop testenv could not be brought up: {e:#}"),
    })
}

fn kubeconfig_from_export(out: &str) -> Option<PathBuf> {
    out.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("export KUBECONFIG=")
            .map(PathBuf::from)
    })
}

fn ensure_up() -> Result<TestEnv> {
    let root = repo_root();
    let tdir = root.join("testenv");
    // Reuse a running environment.
    let env_out = Command::new(tdir.join("env"))
        .stderr(Stdio::null())
        .output()
        .context("running testenv/env")?;
    let kubeconfig = match kubeconfig_from_export(&String::from_utf8_lossy(&env_out.stdout)) {
        Some(p) if env_out.status.success() => p,
        _ => {
            let have = Command::new(tdir.join("build"))
                .arg("--print")
                .stdout(Stdio::null())
                .status()?;
            if !have.success() {
                eprintln!("testenv: binaries missing; running testenv/build (a cold build takes tens of minutes)");
                let st = Command::new(tdir.join("build"))
                    .stdout(Stdio::null())
                    .status()?;
                if !st.success() {
                    bail!("testenv/build failed");
                }
            }
            // up's progress goes to stderr (shown on failure); its summary ends with the export
            // line. One retry: `up` picks free ports just before starting the components, and
            // another process on the machine may take one in between (up then tears down).
            let mut attempt = 0;
            loop {
                attempt += 1;
                let out = Command::new(tdir.join("up"))
                    .stderr(Stdio::inherit())
                    .output()
                    .context("running testenv/up")?;
                let stdout = String::from_utf8_lossy(&out.stdout).to_string();
                if out.status.success() {
                    break kubeconfig_from_export(&stdout)
                        .ok_or_else(|| anyhow!("testenv/up printed no export line: {stdout}"))?;
                }
                if attempt >= 2 {
                    bail!("testenv/up failed ({}): {stdout}", out.status);
                }
                eprintln!("testenv: up failed ({}); trying once more", out.status);
            }
        }
    };
    load(&kubeconfig)
}

pub fn load(kubeconfig: &Path) -> Result<TestEnv> {
    let state_dir = kubeconfig
        .parent()
        .ok_or_else(|| anyhow!("kubeconfig has no parent dir"))?
        .to_path_buf();
    let istiod: BTreeMap<String, IstiodUrls> = serde_json::from_slice(
        &std::fs::read(state_dir.join("istiod.json")).context("reading istiod.json")?,
    )?;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let contexts: Vec<String> = kc.contexts.iter().map(|c| c.name.clone()).collect();
    for c in &contexts {
        if !istiod.contains_key(c) {
            bail!("istiod.json has no entry for context {c}");
        }
    }
    Ok(TestEnv {
        kubeconfig: kubeconfig.to_path_buf(),
        state_dir,
        contexts,
        istiod,
    })
}

/// An environment of its own, brought up by [`OwnEnv::up`] in the state directory
/// `<default state dir>-<suffix>` with extra `testenv/up` arguments (a topology, knobs such as
/// `--revisions canary`), and torn down (`testenv/down`) when dropped, pass or fail.
pub struct OwnEnv {
    pub state: PathBuf,
    pub env: TestEnv,
}

/// The state directory tests use by default: `$MESHTOP_TESTENV_STATE`, else
/// `~/.cache/meshtop-testenv/state` (as `testenv/up` picks it).
pub fn default_state_dir() -> Result<PathBuf> {
    std::env::var_os("MESHTOP_TESTENV_STATE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshtop-testenv/state"))
        })
        .context("no state directory (neither MESHTOP_TESTENV_STATE nor HOME is set)")
}

impl OwnEnv {
    /// Runs `MESHTOP_TESTENV_STATE=<default state dir>-<suffix> testenv/up ARGS...` (blocking:
    /// call it from `spawn_blocking` in async tests). Builds the binaries first if needed. An
    /// environment already running there with the same knobs is reused (and still torn down on
    /// drop); one with other knobs is torn down and brought up again.
    pub fn up(suffix: &str, args: &[&str]) -> Result<OwnEnv> {
        let base = default_state_dir()?;
        let state = PathBuf::from(format!("{}-{suffix}", base.display()));
        let root = repo_root();
        let have = Command::new(root.join("testenv/build"))
            .arg("--print")
            .stdout(Stdio::null())
            .status()?;
        if !have.success() {
            let st = Command::new(root.join("testenv/build"))
                .stdout(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("testenv/build failed");
            }
        }
        let run_up = || -> Result<std::process::Output> {
            Ok(Command::new(root.join("testenv/up"))
                .args(args)
                .env("MESHTOP_TESTENV_STATE", &state)
                .stderr(Stdio::inherit())
                .output()?)
        };
        let down = || {
            let _ = Command::new(root.join("testenv/down"))
                .env("MESHTOP_TESTENV_STATE", &state)
                .status();
        };
        let mut out = run_up()?;
        if !out.status.success() {
            // Exit 3: running with other knobs (a leftover): replace it. Otherwise one retry, as
            // testenv() does: `up` picks free ports just before starting the components, and
            // another process on the machine may take one in between.
            eprintln!(
                "testenv: up {args:?} failed ({}); trying once more",
                out.status
            );
            down();
            out = run_up()?;
        }
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            down();
            bail!(
                "testenv/up {args:?} in {} failed ({}): {stdout}",
                state.display(),
                out.status
            );
        }
        let loaded = kubeconfig_from_export(&stdout)
            .ok_or_else(|| anyhow!("testenv/up printed no export line: {stdout}"))
            .and_then(|k| load(&k));
        match loaded {
            Ok(env) => Ok(OwnEnv { state, env }),
            Err(e) => {
                down();
                Err(e)
            }
        }
    }
}

impl Drop for OwnEnv {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("testenv/down"))
            .env("MESHTOP_TESTENV_STATE", &self.state)
            .status();
    }
}

/// The directory of the testenv binaries (istioctl, kubectl, ...), from `testenv/build --print`.
pub fn bin_dir() -> Result<PathBuf> {
    let out = Command::new(repo_root().join("testenv/build"))
        .arg("--print")
        .output()?;
    if !out.status.success() {
        bail!("testenv binaries are not built (run testenv/build)");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(
        text.lines().last().unwrap_or_default().trim(),
    ))
}

/// GET a URL on 127.0.0.1 (istiod debug/ready endpoints); refuses any other host.
pub async fn get_local(url: &str) -> Result<(u16, String)> {
    if !url.starts_with("http://127.0.0.1:") {
        bail!("refusing to fetch a non-loopback URL: {url}");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let resp = client.get(url).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Poll `f` until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: std::time::Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last error: {last_err:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// One TCP socket held by a process that `testenv/up` started.
#[derive(Debug, Clone)]
pub struct TcpSocket {
    pub process: String,
    pub pid: u32,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    /// Kernel state number (0A = LISTEN, 01 = ESTABLISHED, ...), as in /proc/net/tcp.
    pub state: String,
}

fn parse_proc_addr(s: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.swap_bytes()).into(),
        32 => {
            let mut b = [0u8; 16];
            for w in 0..4 {
                let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16)
                    .ok()?
                    .swap_bytes();
                b[w * 4..w * 4 + 4].copy_from_slice(&word.to_be_bytes());
            }
            std::net::Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// Whether an address is on loopback (127.0.0.0/8, ::1, or IPv4-mapped 127.x).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

impl TestEnv {
    /// Every TCP socket (listening or connected) of every process `up` started (pid files in
    /// the state dir), read from /proc. Linux only.
    pub fn tcp_sockets(&self) -> Result<Vec<TcpSocket>> {
        let mut inode_owner = BTreeMap::new();
        for entry in std::fs::read_dir(self.state_dir.join("pids"))? {
            let entry = entry?;
            let text = std::fs::read_to_string(entry.path())?;
            let Some(pid) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let name = entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".pid")
                .to_string();
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    let t = target.to_string_lossy();
                    if let Some(inode) =
                        t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                    {
                        inode_owner.insert(inode.to_string(), (name.clone(), pid));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 10 {
                    continue;
                }
                if let Some((process, pid)) = inode_owner.get(f[9]) {
                    if let (Some(local), Some(remote)) =
                        (parse_proc_addr(f[1]), parse_proc_addr(f[2]))
                    {
                        out.push(TcpSocket {
                            process: process.clone(),
                            pid: *pid,
                            local,
                            remote,
                            state: f[3].to_string(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `/debug/syncz` rows of an istiod (`pilot/pkg/xds/debug.go` `SyncStatus`: `proxy` =
/// `<pod>.<namespace>`, `cluster_id`, `proxy_type`, `istio_version`, `*_sent`/`*_acked`).
pub async fn syncz(debug_base: &str) -> Result<Vec<serde_json::Value>> {
    let (status, body) = get_local(&format!("{debug_base}/debug/syncz")).await?;
    if status != 200 {
        bail!("syncz answered {status}: {body}");
    }
    Ok(serde_json::from_str::<Option<Vec<serde_json::Value>>>(&body)?.unwrap_or_default())
}

/// The `pilot_xds` gauge (connected proxies), summed over its series, from istiod's /metrics.
pub async fn pilot_xds(metrics_url: &str) -> Result<u64> {
    let (status, body) = get_local(metrics_url).await?;
    if status != 200 {
        bail!("metrics answered {status}");
    }
    let mut n = 0.0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("pilot_xds") else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            n += v;
        }
    }
    Ok(n as u64)
}

/// Running injected pods (annotation `sidecar.istio.io/status`, an IP, not terminating) of one
/// cluster, named as istiod names their proxies: `<pod>.<namespace>`.
pub async fn injected_pods(client: kube::Client) -> Result<BTreeSet<String>> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let mut out = BTreeSet::new();
    for p in pods.list(&kube::api::ListParams::default()).await?.items {
        let md = &p.metadata;
        let injected = md
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("sidecar.istio.io/status"));
        let status = p.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && status.and_then(|s| s.pod_ip.as_deref()).is_some();
        if injected && running && md.deletion_timestamp.is_none() {
            out.insert(format!(
                "{}.{}",
                md.name.as_deref().unwrap_or_default(),
                md.namespace.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(out)
}

impl TestEnv {
    /// The cluster id the proxies of a context carry (`ISTIO_META_CLUSTER_ID`): the context
    /// itself, except an external control plane host, installed as its config cluster.
    pub fn proxy_cluster_id(&self, context: &str) -> String {
        let urls = &self.istiod[context];
        if urls.role == "external" {
            urls.cluster_id.clone()
        } else {
            context.to_string()
        }
    }

    /// For every control plane host (context running an istiod): the proxies it must serve,
    /// as `<pod>.<namespace>` -> cluster id, i.e. the injected pods of every context whose
    /// `istiod.json` entry names it as control plane (as `up` configured them).
    pub async fn expected_proxies(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = self
            .primaries()
            .into_iter()
            .map(|p| (p, BTreeMap::new()))
            .collect();
        for ctx in &self.contexts {
            let host = self.istiod[ctx].control_plane_cluster.clone();
            let id = self.proxy_cluster_id(ctx);
            for pod in injected_pods(self.client(ctx).await?).await? {
                out.entry(host.clone()).or_default().insert(pod, id.clone());
            }
        }
        Ok(out)
    }
}

/// Running injected pods of one cluster (as [`injected_pods`]), each with the revision whose
/// injector injected it (`revision` in its `sidecar.istio.io/status`; `default` if absent).
pub async fn injected_pods_by_revision(client: kube::Client) -> Result<BTreeMap<String, String>> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let mut out = BTreeMap::new();
    for p in pods.list(&kube::api::ListParams::default()).await?.items {
        let md = &p.metadata;
        let Some(status) = md
            .annotations
            .as_ref()
            .and_then(|a| a.get("sidecar.istio.io/status"))
        else {
            continue;
        };
        let st = p.status.as_ref();
        let running = st.and_then(|s| s.phase.as_deref()) == Some("Running")
            && st.and_then(|s| s.pod_ip.as_deref()).is_some();
        if !running || md.deletion_timestamp.is_some() {
            continue;
        }
        let rev = serde_json::from_str::<serde_json::Value>(status)
            .ok()
            .and_then(|v| v["revision"].as_str().map(str::to_string))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "default".to_string());
        out.insert(
            format!(
                "{}.{}",
                md.name.as_deref().unwrap_or_default(),
                md.namespace.as_deref().unwrap_or_default()
            ),
            rev,
        );
    }
    Ok(out)
}

/// `GET path` (HTTP/1.0) through a Kubernetes port-forward to `port` of a pod (API server ->
/// kwok -> the local process kwok forwards that pod's port to); returns the status line's code
/// and the body.
pub async fn port_forward_get(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<(u16, String)> {
    use k8s_openapi::api::core::v1::Pod;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
    let mut pf = pods.portforward(pod, &[port]).await?;
    let mut stream = pf
        .take_stream(port)
        .ok_or_else(|| anyhow!("no stream for port {port}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    // The stream does not always report the remote close as EOF: read until the response is
    // complete, with a deadline. Complete: its Content-Length is there; or, for a body too
    // large for Go's server to set one (it then ends an HTTP/1.0 response by closing), the
    // body so far is a whole JSON document (istiod's debug endpoints answer JSON).
    let complete = |resp: &[u8]| {
        let text = String::from_utf8_lossy(resp);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        match length {
            Some(n) => body.len() >= n,
            None => {
                !body.trim().is_empty() && serde_json::from_str::<serde_json::Value>(body).is_ok()
            }
        }
    };
    let mut resp = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
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
    .await
    .context("port-forward response timed out")??;
    drop(stream);
    pf.abort();
    let text = String::from_utf8_lossy(&resp).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("no HTTP status line in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    Ok((code, body.to_string()))
}

/// `federation.json` of an environment brought up with `testenv/up --topology federation`
/// (testenv/README.md, "Federation topology"): the meshes with their roots and imported roots,
/// and what one mesh exports, the other imports, and the policy admitting it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Federation {
    pub meshes: Vec<FederationMesh>,
    #[serde(default)]
    pub exports: Vec<FederationExport>,
    #[serde(default)]
    pub imports: Vec<FederationImport>,
    #[serde(default)]
    pub policies: Vec<FederationPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationMesh {
    pub id: String,
    pub trust_domain: String,
    #[serde(default)]
    pub trust_domain_aliases: Vec<String>,
    /// Contexts (clusters) of this mesh.
    pub clusters: Vec<String>,
    /// Its istiod Deployment runs with `ISTIO_MULTIROOT_MESH=true`.
    pub multi_root: bool,
    pub root: FederationRoot,
    /// The other meshes' roots in its mesh config (`caCertificates`).
    #[serde(default)]
    pub ca_certificates: Vec<FederationCaCertificate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationRoot {
    /// Lowercase hex SHA-256 over the root's DER.
    pub sha256: String,
    pub subject: String,
    /// RFC 3339, UTC.
    pub not_after: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationCaCertificate {
    pub sha256: String,
    #[serde(default)]
    pub trust_domains: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationExport {
    pub mesh: String,
    pub cluster: String,
    /// `<namespace>/<name>` of the Gateway on the east-west gateway.
    pub gateway: String,
    pub hosts: Vec<String>,
    pub port: u16,
    pub mode: String,
    /// The east-west gateway Service's load-balancer address (192.0.2.x, data only).
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationImport {
    pub mesh: String,
    pub cluster: String,
    /// `<namespace>/<name>` of the ServiceEntry.
    pub service_entry: String,
    pub hosts: Vec<String>,
    /// The exporting mesh.
    pub from: String,
    pub addresses: Vec<String>,
    pub port: u16,
    pub location: String,
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationPolicy {
    pub mesh: String,
    pub cluster: String,
    /// `<namespace>/<name>` of the AuthorizationPolicy.
    pub policy: String,
    pub principals: Vec<String>,
}

impl TestEnv {
    /// `federation.json` of the state directory; `None` for a topology without federation.
    pub fn federation(&self) -> Result<Option<Federation>> {
        let path = self.state_dir.join("federation.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_slice(&std::fs::read(&path)?)
                .with_context(|| format!("parsing {}", path.display()))?,
        ))
    }
}

impl OwnEnv {
    /// `federation.json` of this environment (see [`TestEnv::federation`]).
    pub fn federation(&self) -> Result<Option<Federation>> {
        self.env.federation()
    }
}

/// Lowercase hex SHA-256 over the DER of the first certificate in `pem` (by `openssl x509
/// -fingerprint -sha256`, colons removed).
impl TestEnv {
    /// The environment's kubeconfig with every context renamed `<prefix><name>`: context
    /// names that differ from Istio's cluster ids, as in most real kubeconfigs. Written to a
    /// temporary file of this process.
    pub fn renamed_kubeconfig(&self, prefix: &str) -> Result<PathBuf> {
        let mut kc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig)?)?;
        for c in kc["contexts"].as_sequence_mut().into_iter().flatten() {
            let name = format!("{prefix}{}", c["name"].as_str().unwrap_or(""));
            c["name"] = name.into();
        }
        if let Some(cur) = kc["current-context"].as_str() {
            kc["current-context"] = format!("{prefix}{cur}").into();
        }
        let path =
            std::env::temp_dir().join(format!("meshtop-{prefix}{}.yaml", std::process::id()));
        std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
        Ok(path)
    }

    /// The pid testenv recorded for one of its processes (`kube-apiserver-<context>`,
    /// `istiod-<context>`, ...).
    pub fn pid_of(&self, process: &str) -> Result<i32> {
        let path = self.state_dir.join("pids").join(format!("{process}.pid"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| anyhow!("no pid in {}", path.display()))
    }
}

/// Sends `sig` (`-STOP`, `-CONT`, `-TERM`) to a process.
pub fn signal(pid: i32, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

/// Resumes a stopped process even when the test fails half-way.
pub struct Resume(pub i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

pub fn pem_sha256(pem: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl")?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(pem.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "openssl x509 -fingerprint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fp = text
        .trim()
        .split_once('=')
        .map(|x| x.1)
        .ok_or_else(|| anyhow!("no fingerprint in {text:?}"))?;
    Ok(fp.replace(':', "").to_lowercase())
}

/// A token (1 h) of ServiceAccount `default/<name>`, created if needed and bound to the
/// ClusterRole `cluster_role` (binding named like the account).
pub async fn service_account_token(
    env: &TestEnv,
    context: &str,
    name: &str,
    cluster_role: &str,
) -> Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let client = env.client(context).await?;
    let pp = kube::api::PatchParams::apply("meshtop-tests").force();
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "default"}
    }))?;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), "default");
    sas.patch(name, &pp, &kube::api::Patch::Apply(&sa)).await?;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]
    }))?;
    kube::Api::<ClusterRoleBinding>::all(client)
        .patch(name, &pp, &kube::api::Patch::Apply(&binding))
        .await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    wait_for(
        &format!("a token for {name}"),
        std::time::Duration::from_secs(20),
        || {
            let sas = sas.clone();
            let request = request.clone();
            async move {
                let r = sas
                    .create_token_request(name, &Default::default(), &request)
                    .await?;
                Ok(r.status.and_then(|s| s.token))
            }
        },
    )
    .await
}
