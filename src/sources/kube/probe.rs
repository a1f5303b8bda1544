//! istiod probes the way istioctl reaches istiod: a port-forward through the cluster's API
//! server to the pod's monitoring port (15014: `/version`, `/metrics`, `/debug/*`) and HTTP port
//! (8080: `/ready`), or a plain-HTTP URL from the config file for a control plane outside the
//! cluster. One probe in flight per control plane, bounded by a timeout; a slow istiod delays
//! nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::Store;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout, Instant};

use super::status::Shared;
use crate::sources::istiod;
use crate::topology::snapshot::{IstiodProbe, Update};

pub const MONITORING_PORT: u16 = 15014;
pub const HTTP_PORT: u16 = 8080;
/// How often each istiod is asked.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The most one whole probe (port-forward and every request) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// Bodies larger than this are refused (a huge `/debug/syncz` must not eat memory).
const BODY_LIMIT: usize = 32 << 20;

/// One HTTP/1.1 connection over any byte stream (a port-forward stream, a TCP socket).
struct Http {
    sender: SendRequest<Empty<Bytes>>,
}

impl Http {
    async fn over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> Result<Http> {
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http { sender })
    }

    async fn get(&mut self, path: &str) -> Result<(u16, String)> {
        self.sender.ready().await?;
        let request = http::Request::get(path)
            .header("Host", "localhost")
            .body(Empty::<Bytes>::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| anyhow!("{path}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// istiod's `/version` answers `version.Info.String()`: `<version>-<git revision>-…`; the
/// version itself may contain dashes (`1.31-dev`), so it ends before the git revision.
pub fn version_from_body(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let parts: Vec<&str> = body.split('-').collect();
    let end = parts
        .iter()
        .position(|p| p.len() >= 7 && p.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or(1)
        .max(1);
    Some(parts[..end].join("-"))
}

/// Reads every endpoint meshtop shows from one istiod's monitoring connection; `ready` from the
/// HTTP connection when there is one.
async fn read_istiod(monitoring: &mut Http, http: Option<&mut Http>, at_secs: f64) -> IstiodProbe {
    let mut probe = IstiodProbe {
        at_secs,
        ..Default::default()
    };
    let mut errors = Vec::new();
    match monitoring.get("/version").await {
        Ok((200, body)) => probe.version = version_from_body(&body),
        Ok((code, _)) => errors.push(format!("/version: HTTP {code}")),
        Err(e) => errors.push(format!("/version: {e}")),
    }
    match monitoring.get("/metrics").await {
        Ok((200, body)) => {
            if probe.version.is_none() {
                probe.version = istiod::metrics_version(&body);
            }
            probe.metrics = Some(istiod::parse_metrics(&body));
        }
        Ok((code, _)) => errors.push(format!("/metrics: HTTP {code}")),
        Err(e) => errors.push(format!("/metrics: {e}")),
    }
    match monitoring.get("/debug/clusterz").await {
        Ok((200, body)) => match istiod::parse_clusterz(&body) {
            Ok(rows) => probe.clusterz = Some(rows),
            Err(e) => errors.push(e),
        },
        Ok((code, _)) => errors.push(format!("/debug/clusterz: HTTP {code}")),
        Err(e) => errors.push(format!("/debug/clusterz: {e}")),
    }
    match monitoring.get("/debug/syncz").await {
        Ok((200, body)) => match istiod::parse_syncz(&body) {
            Ok(rows) => probe.syncz = Some(rows),
            Err(e) => errors.push(e),
        },
        Ok((code, _)) => errors.push(format!("/debug/syncz: HTTP {code}")),
        Err(e) => errors.push(format!("/debug/syncz: {e}")),
    }
    if let Some(http) = http {
        match http.get("/ready").await {
            Ok((code, _)) => probe.ready = Some(code == 200),
            Err(e) => errors.push(format!("/ready: {e}")),
        }
    }
    if !errors.is_empty() {
        probe.error = Some(errors.join("; "));
    }
    probe
}

/// A port-forward to one istiod pod with an HTTP connection on each port, kept between probes:
/// opening a port-forward costs a TLS handshake and an upgrade at the API server, every time.
struct PodConnection {
    pod: String,
    pf: kube::api::Portforwarder,
    monitoring: Http,
    http: Http,
}

impl PodConnection {
    async fn open(pods: &Api<Pod>, pod: &str) -> Result<PodConnection> {
        let mut pf = pods
            .portforward(pod, &[MONITORING_PORT, HTTP_PORT])
            .await
            .with_context(|| format!("port-forward to {pod}"))?;
        let monitoring = pf
            .take_stream(MONITORING_PORT)
            .ok_or_else(|| anyhow!("no stream for port {MONITORING_PORT}"))?;
        let http = pf
            .take_stream(HTTP_PORT)
            .ok_or_else(|| anyhow!("no stream for port {HTTP_PORT}"))?;
        Ok(PodConnection {
            pod: pod.to_string(),
            pf,
            monitoring: Http::over(monitoring).await?,
            http: Http::over(http).await?,
        })
    }
}

impl Drop for PodConnection {
    fn drop(&mut self) {
        self.pf.abort();
    }
}

/// Probes one istiod pod through its port-forward, opening one when there is none (or the pod
/// changed). Returns the connection when it is still good for the next probe.
async fn probe_pod(
    pods: &Api<Pod>,
    pod: &str,
    kept: Option<PodConnection>,
    at_secs: f64,
) -> (Result<IstiodProbe>, Option<PodConnection>) {
    let reused = kept.filter(|c| c.pod == pod);
    let fresh = reused.is_none();
    let mut conn = match reused {
        Some(c) => c,
        None => match PodConnection::open(pods, pod).await {
            Ok(c) => c,
            Err(e) => return (Err(e), None),
        },
    };
    let probe = read_istiod(&mut conn.monitoring, Some(&mut conn.http), at_secs).await;
    if probe.error.is_some() && !fresh {
        // A kept connection that broke (istiod restarted, the stream closed): once more on a
        // new one before reporting the error.
        drop(conn);
        return match PodConnection::open(pods, pod).await {
            Ok(mut c) => {
                let probe = read_istiod(&mut c.monitoring, Some(&mut c.http), at_secs).await;
                let keep = probe.error.is_none().then_some(c);
                (Ok(probe), keep)
            }
            Err(e) => (Err(e), None),
        };
    }
    let keep = probe.error.is_none().then_some(conn);
    (Ok(probe), keep)
}

/// Probes an istiod at an explicit `http://host:port` monitoring URL (config file).
async fn probe_url(url: &str, at_secs: f64) -> Result<IstiodProbe> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("istiod_url {url:?}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connect to {authority}"))?;
    let mut monitoring = Http::over(stream).await?;
    let mut probe = read_istiod(&mut monitoring, None, at_secs).await;
    // Ready when the monitoring port answers /version: the best a URL can tell.
    probe.ready = Some(probe.version.is_some());
    Ok(probe)
}

/// The Deployment an istiod pod belongs to: its ReplicaSet's name minus the pod-template hash.
pub fn deployment_of(pod: &Pod) -> Option<String> {
    let rs = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "ReplicaSet")?;
    let hash = pod.metadata.labels.as_ref()?.get("pod-template-hash")?;
    rs.name
        .strip_suffix(&format!("-{hash}"))
        .map(str::to_string)
}

fn running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Every few seconds, probes each istiod Deployment of the cluster through one of its running
/// pods (or the configured URL), all at once, each bounded by [`PROBE_TIMEOUT`].
pub async fn run(
    client: kube::Client,
    istiod_pods: Store<Pod>,
    url: Option<String>,
    shared: Shared,
    started: Instant,
) {
    // The first round as soon as the istiod pods are known, not one interval later.
    if istiod_pods.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Port-forwards kept between rounds, by namespace/deployment.
    let mut kept: BTreeMap<String, PodConnection> = BTreeMap::new();
    loop {
        tick.tick().await;
        if shared.closed() {
            return;
        }
        // namespace/deployment -> (namespace, a running pod)
        let mut targets: BTreeMap<String, (String, String)> = BTreeMap::new();
        for pod in istiod_pods.state() {
            if !running(&pod) {
                continue;
            }
            let (Some(ns), Some(name), Some(dep)) = (
                pod.metadata.namespace.clone(),
                pod.metadata.name.clone(),
                deployment_of(&pod),
            ) else {
                continue;
            };
            targets.entry(format!("{ns}/{dep}")).or_insert((ns, name));
        }
        let at_secs = started.elapsed().as_secs_f64();
        // Connections of Deployments that are gone close here.
        kept.retain(|key, _| targets.contains_key(key));
        let probes = targets.into_iter().map(|(key, (ns, pod))| {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let url = url.clone();
            let conn = kept.remove(&key);
            async move {
                let attempt = async {
                    match &url {
                        Some(u) => (probe_url(u, at_secs).await, None),
                        None => probe_pod(&pods, &pod, conn, at_secs).await,
                    }
                };
                let (probe, conn) = match timeout(PROBE_TIMEOUT, attempt).await {
                    Ok((Ok(p), conn)) => (p, conn),
                    Ok((Err(e), _)) => (failed(at_secs, format!("{e:#}")), None),
                    Err(_) => (
                        failed(
                            at_secs,
                            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
                        ),
                        None,
                    ),
                };
                (key, probe, conn)
            }
        });
        for (key, probe, conn) in futures::future::join_all(probes).await {
            if let Some(conn) = conn {
                kept.insert(key.clone(), conn);
            }
            if let Some(e) = &probe.error {
                tracing::debug!(context = shared.context(), control_plane = %key, error = %e, "istiod probe");
            }
            let sent = shared.send(Update::IstiodProbe {
                context: shared.context().to_string(),
                control_plane: key,
                probe,
            });
            if !sent {
                return;
            }
        }
    }
}

fn failed(at_secs: f64, error: String) -> IstiodProbe {
    IstiodProbe {
        at_secs,
        error: Some(error),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_stops_before_the_git_revision() {
        assert_eq!(
            version_from_body("1.31-dev-eed52ebb66ad-go1.26-Clean").as_deref(),
            Some("1.31-dev")
        );
        assert_eq!(
            version_from_body("1.28.2-8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b-Clean").as_deref(),
            Some("1.28.2")
        );
        assert_eq!(version_from_body("").as_deref(), None);
    }

    #[test]
    fn deployment_comes_from_the_replica_set() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "istiod-canary-7d9f8-abcde",
                "labels": {"pod-template-hash": "7d9f8"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "istiod-canary-7d9f8", "uid": "u"}]
            }
        }))
        .unwrap();
        assert_eq!(deployment_of(&pod).as_deref(), Some("istiod-canary"));
    }
}
