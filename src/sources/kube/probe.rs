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
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use super::stats::Counters;
use super::status::Shared;
use crate::sources::istiod;
use crate::topology::snapshot::{IstiodProbe, Update};

pub const MONITORING_PORT: u16 = 15014;
pub const HTTP_PORT: u16 = 8080;
/// How often each istiod is asked.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long one whole probe (port-forward and every request) may take before the control plane
/// shows as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a probe that missed [`PROBE_TIMEOUT`] may still finish on its connection (which is
/// then kept) before both are given up.
pub const PROBE_GIVE_UP: Duration = Duration::from_secs(30);
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

/// One probe's reading: what istiod answered, and whether a connection broke on the way.
struct Reading {
    probe: IstiodProbe,
    /// A request failed below HTTP (the stream closed, a body cut off or over the limit): the
    /// connection is not good for another request. An HTTP error status or a body that does not
    /// parse leaves it as good as it was.
    broken: Option<String>,
}

/// Reads every endpoint meshtop shows from one istiod's monitoring connection; `ready` from the
/// HTTP connection when there is one.
async fn read_istiod(monitoring: &mut Http, http: Option<&mut Http>, at_secs: f64) -> Reading {
    let mut probe = IstiodProbe {
        at_secs,
        ..Default::default()
    };
    let mut errors = Vec::new();
    let mut broken = None;
    let mut transport = |path: &str, e: anyhow::Error, errors: &mut Vec<String>| {
        let e = format!("{path}: {e}");
        broken.get_or_insert_with(|| e.clone());
        errors.push(e);
    };
    match monitoring.get("/version").await {
        Ok((200, body)) => probe.version = version_from_body(&body),
        Ok((code, _)) => errors.push(format!("/version: HTTP {code}")),
        Err(e) => transport("/version", e, &mut errors),
    }
    match monitoring.get("/metrics").await {
        Ok((200, body)) => {
            if probe.version.is_none() {
                probe.version = istiod::metrics_version(&body);
            }
            probe.metrics = Some(istiod::parse_metrics(&body));
        }
        Ok((code, _)) => errors.push(format!("/metrics: HTTP {code}")),
        Err(e) => transport("/metrics", e, &mut errors),
    }
    match monitoring.get("/debug/clusterz").await {
        Ok((200, body)) => match istiod::parse_clusterz(&body) {
            Ok(rows) => probe.clusterz = Some(rows),
            Err(e) => errors.push(e),
        },
        Ok((code, _)) => errors.push(format!("/debug/clusterz: HTTP {code}")),
        Err(e) => transport("/debug/clusterz", e, &mut errors),
    }
    match monitoring.get("/debug/syncz").await {
        Ok((200, body)) => match istiod::parse_syncz(&body) {
            Ok(rows) => probe.syncz = Some(rows),
            Err(e) => errors.push(e),
        },
        Ok((code, _)) => errors.push(format!("/debug/syncz: HTTP {code}")),
        Err(e) => transport("/debug/syncz", e, &mut errors),
    }
    if let Some(http) = http {
        match http.get("/ready").await {
            Ok((code, _)) => probe.ready = Some(code == 200),
            Err(e) => transport("/ready", e, &mut errors),
        }
    }
    if !errors.is_empty() {
        probe.error = Some(errors.join("; "));
    }
    Reading { probe, broken }
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
    /// Opens a port-forward (one `CONNECT` at the API server); `why` goes to the log.
    async fn open(pods: &Api<Pod>, pod: &str, shared: &Shared, why: &str) -> Result<PodConnection> {
        Counters::add(&shared.stats().port_forwards);
        tracing::info!(context = shared.context(), pod, why, "port-forward opened");
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
/// changed). Returns the connection when it is still good for the next probe: an istiod that
/// answers an error keeps its connection; only a broken one is replaced.
async fn probe_pod(
    pods: &Api<Pod>,
    pod: &str,
    kept: Option<PodConnection>,
    at_secs: f64,
    shared: &Shared,
) -> (Result<IstiodProbe>, Option<PodConnection>) {
    let why = match &kept {
        None => "no connection kept (first probe, or the last one failed or timed out)",
        Some(c) if c.pod != pod => "another pod of the Deployment",
        Some(_) => "",
    };
    let (mut conn, fresh) = match kept.filter(|c| c.pod == pod) {
        Some(c) => (c, false),
        None => match PodConnection::open(pods, pod, shared, why).await {
            Ok(c) => (c, true),
            Err(e) => return (Err(e), None),
        },
    };
    let reading = read_istiod(&mut conn.monitoring, Some(&mut conn.http), at_secs).await;
    match reading.broken {
        None => (Ok(reading.probe), Some(conn)),
        Some(e) if !fresh => {
            // A kept connection that broke (istiod restarted, the stream closed): once more on
            // a new one before reporting the error.
            drop(conn);
            let why = format!("the kept connection broke: {e}");
            match PodConnection::open(pods, pod, shared, &why).await {
                Ok(mut c) => {
                    let reading = read_istiod(&mut c.monitoring, Some(&mut c.http), at_secs).await;
                    let keep = reading.broken.is_none().then_some(c);
                    (Ok(reading.probe), keep)
                }
                Err(e) => (Err(e), None),
            }
        }
        Some(_) => (Ok(reading.probe), None),
    }
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
    let mut probe = read_istiod(&mut monitoring, None, at_secs).await.probe;
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
/// pods (or the configured URL): one task per Deployment, all at once, so a slow istiod delays
/// nothing else.
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
    // One prober per namespace/deployment; it learns which pod to ask through its channel.
    let mut probers: BTreeMap<String, (watch::Sender<String>, AbortOnDrop)> = BTreeMap::new();
    loop {
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
        // Probers (and their connections) of Deployments that are gone stop here.
        probers.retain(|key, _| targets.contains_key(key));
        for (key, (ns, pod)) in targets {
            if let Some((pod_tx, _)) = probers.get(&key) {
                // Still on the same pod when it runs: the prober keeps its connection.
                pod_tx.send_if_modified(|p| std::mem::replace(p, pod.clone()) != pod);
                continue;
            }
            let (pod_tx, pod_rx) = watch::channel(pod);
            let prober = Prober {
                key: key.clone(),
                pods: Api::namespaced(client.clone(), &ns),
                pod: pod_rx,
                url: url.clone(),
                shared: shared.clone(),
                started,
            };
            let task = AbortOnDrop(tokio::spawn(prober.run()));
            probers.insert(key, (pod_tx, task));
        }
        // The probers tick on their own; this only follows the istiod pods.
        tick.tick().await;
    }
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes one istiod Deployment every [`INTERVAL`], one probe at a time, on a connection kept
/// between probes.
struct Prober {
    /// `namespace/deployment`
    key: String,
    pods: Api<Pod>,
    /// The running pod to ask.
    pod: watch::Receiver<String>,
    url: Option<String>,
    shared: Shared,
    started: Instant,
}

impl Prober {
    async fn run(self) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<PodConnection> = None;
        let mut sent = Sent::default();
        loop {
            tick.tick().await;
            if self.shared.closed() {
                return;
            }
            let at_secs = self.started.elapsed().as_secs_f64();
            let pod = self.pod.borrow().clone();
            let kept = conn.take();
            let attempt = async {
                match &self.url {
                    Some(u) => (probe_url(u, at_secs).await, None),
                    None => probe_pod(&self.pods, &pod, kept, at_secs, &self.shared).await,
                }
            };
            tokio::pin!(attempt);
            let mut late = false;
            let outcome = match timeout(PROBE_TIMEOUT, &mut attempt).await {
                Ok(outcome) => Some(outcome),
                Err(_) => {
                    // Not answering in time is news at once; but a request cut off mid-way
                    // leaves its connection unusable, and opening another one every probe is
                    // what a loaded API server and istiod need least: let the answer finish
                    // (up to a limit) and keep the connection.
                    let error = format!("no answer within {} s", PROBE_TIMEOUT.as_secs());
                    late = true;
                    if !self.send(sent.next(failed(at_secs, error))) {
                        return;
                    }
                    timeout(PROBE_GIVE_UP - PROBE_TIMEOUT, &mut attempt)
                        .await
                        .ok()
                }
            };
            let probe = match outcome {
                Some((Ok(probe), kept)) => {
                    conn = kept;
                    probe
                }
                Some((Err(e), _)) => failed(at_secs, format!("{e:#}")),
                // Given up: the connection goes with the request.
                None => failed(
                    at_secs,
                    format!("no answer within {} s", PROBE_GIVE_UP.as_secs()),
                ),
            };
            if late {
                tracing::debug!(context = self.shared.context(), control_plane = %self.key, answered = probe.error.is_none(), "istiod answered late");
            }
            if let Some(e) = &probe.error {
                tracing::debug!(context = self.shared.context(), control_plane = %self.key, error = %e, "istiod probe");
            }
            if !self.send(sent.next(probe)) {
                return;
            }
        }
    }

    /// Sends what is due of this control plane's probes; false when nobody listens any more.
    fn send(&self, due: Vec<IstiodProbe>) -> bool {
        let stats = self.shared.stats();
        Counters::add(if due.is_empty() {
            &stats.probes_unchanged
        } else {
            &stats.probes_sent
        });
        self.shared.send_all(
            due.into_iter()
                .map(|probe| Update::IstiodProbe {
                    context: self.shared.context().to_string(),
                    control_plane: self.key.clone(),
                    probe,
                })
                .collect(),
        )
    }
}

/// What was last sent of one control plane's probes, so that a probe showing nothing new is not
/// sent: each one sent costs a derivation and a frame, every few seconds per istiod.
#[derive(Default)]
struct Sent {
    /// The last probe sent.
    last: Option<IstiodProbe>,
    /// The last probe sent showed the same as the one before it: rates (pushes per minute) are
    /// already at rest, and another equal probe would change nothing shown.
    settled: bool,
    /// The latest probe not sent (equal to `last` but for its time): sent just before the next
    /// one that differs, so that rates are taken over one probe period, not the quiet spell.
    held: Option<IstiodProbe>,
}

impl Sent {
    /// The probes to send now for this result, oldest first (none when nothing changed).
    fn next(&mut self, probe: IstiodProbe) -> Vec<IstiodProbe> {
        let same = self.last.as_ref().is_some_and(|l| same_but_time(l, &probe));
        if same && self.settled {
            self.held = Some(probe);
            return Vec::new();
        }
        self.settled = same;
        self.last = Some(probe.clone());
        let mut out: Vec<IstiodProbe> = self.held.take().into_iter().collect();
        out.push(probe);
        out
    }
}

/// Two probes that tell the same, whenever they were taken.
fn same_but_time(a: &IstiodProbe, b: &IstiodProbe) -> bool {
    IstiodProbe {
        at_secs: b.at_secs,
        ..a.clone()
    } == *b
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

    fn probe(at_secs: f64, pushes: f64) -> IstiodProbe {
        IstiodProbe {
            at_secs,
            ready: Some(true),
            metrics: Some(crate::topology::snapshot::IstiodMetrics {
                pushes,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn times(probes: &[IstiodProbe]) -> Vec<f64> {
        probes.iter().map(|p| p.at_secs).collect()
    }

    #[test]
    fn a_probe_that_shows_nothing_new_is_not_sent() {
        let mut sent = Sent::default();
        assert_eq!(
            times(&sent.next(probe(0.0, 10.0))),
            [0.0],
            "the first is sent"
        );
        // The first equal one is sent: it brings the push rate to rest.
        assert_eq!(times(&sent.next(probe(5.0, 10.0))), [5.0]);
        assert!(sent.next(probe(10.0, 10.0)).is_empty(), "then nothing new");
        assert!(sent.next(probe(15.0, 10.0)).is_empty());
        // A change is sent at once, after the last quiet probe, so that the rate spans one
        // probe period (15 s -> 20 s), not the whole quiet spell.
        assert_eq!(times(&sent.next(probe(20.0, 13.0))), [15.0, 20.0]);
        assert_eq!(times(&sent.next(probe(25.0, 13.0))), [25.0]);
        assert!(sent.next(probe(30.0, 13.0)).is_empty());
        // An error is a change too.
        let mut failed = probe(35.0, 13.0);
        failed.error = Some("/ready: connection closed".into());
        assert_eq!(times(&sent.next(failed)), [30.0, 35.0]);
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
