//! The live source: one task per kubeconfig context, all started at once. Each cluster gets
//! one client, one watch per kind (trimmed at the door), a heartbeat that tells "quiet" from
//! "gone", and istiod probes over port-forward. Everything leaves as `Update`s; nothing here
//! draws a conclusion, and no cluster waits for another.

pub mod connect;
pub mod credentials;
pub mod kubeconfig;
pub mod probe;
pub mod stats;
pub mod status;
mod trim;
mod watch;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::config::ExecConfig;
use kube::core::TypeMeta;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use credentials::{Bearer, Credential};
pub use kubeconfig::{resolve, Target};
use stats::Counters;
use status::{Api as ApiState, Shared};
use watch::Kind;

use crate::topology::istio::{
    KIND_AUTHORIZATION_POLICY, KIND_DESTINATION_RULE, KIND_GATEWAY, KIND_PEER_AUTHENTICATION,
    KIND_SERVICE_ENTRY,
};
use crate::topology::snapshot::{Connection, KubeObject, ObjectKind, Update};

/// How often each API server is asked something tiny (`GET /version`).
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long the heartbeat waits for the answer before the cluster counts as not answering.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// The system namespace: where Istio's ConfigMaps and remote secrets live.
const SYSTEM_NAMESPACE: &str = "istio-system";
/// The note topic of a credential plugin's progress and failures.
pub use crate::topology::snapshot::CREDENTIALS_NOTE as CREDENTIALS;
/// A token refresh is shown on the cluster only when it runs longer than this.
const REFRESH_QUIET: Duration = Duration::from_secs(10);
/// At least this long between two plugin runs asked for by 401s.
const KICK_GAP: Duration = Duration::from_secs(30);
/// Objects per page of an initial LIST: bounds the memory of one response.
const PAGE_SIZE: u32 = 250;

/// Starts every target at once. Clusters are registered in kubeconfig order before any of them
/// is asked anything, so the dashboard lists them in that order whatever answers first.
pub fn start(targets: Vec<Target>, tx: UnboundedSender<Vec<Update>>) -> JoinSet<()> {
    let _ = tx.send(
        targets
            .iter()
            .map(|t| Update::Connection {
                context: t.context.clone(),
                connection: Connection::Connecting,
            })
            .collect(),
    );
    let mut set = JoinSet::new();
    let started = Instant::now();
    for target in targets {
        set.spawn(run_cluster(target, tx.clone(), started));
    }
    set
}

/// Everything one cluster does, until nobody listens any more. Nothing here blocks a runtime
/// thread: files are read and the client built on the blocking pool, a credential plugin runs
/// as an async child process, so a slow or hung one costs this cluster and nothing else.
pub async fn run_cluster(target: Target, tx: UnboundedSender<Vec<Update>>, started: Instant) {
    let shared = Shared::new(&target.context, tx);
    if target.display_name.is_some() || target.cluster_id.is_some() {
        shared.send(Update::Identity {
            context: target.context.clone(),
            display_name: target.display_name.clone(),
            cluster_id: target.cluster_id.clone(),
        });
    }
    for (topic, note) in &target.notes {
        shared.note(topic, Some(note.clone()));
    }
    let kubeconfig = match target.kubeconfig {
        Ok(k) => k,
        Err(state) => {
            tracing::warn!(context = %target.context, reason = ?state.reason(), "cannot use this context");
            shared.send(Update::Connection {
                context: target.context.clone(),
                connection: state,
            });
            return;
        }
    };
    let prepared = match connect::prepare(&target.context, kubeconfig).await {
        Ok(p) => p,
        Err(e) => return give_up(&shared, e),
    };
    let bearer = Bearer::default();
    let credential = match &prepared.plugin {
        Some(exec) => match obtain(exec, &shared).await {
            Some(c) => Some(c),
            None => return,
        },
        None => None,
    };
    let client = match connect::build(prepared.config, credential.as_ref(), &bearer).await {
        Ok(c) => c,
        Err(e) => return give_up(&shared, e),
    };
    target.client.set(client.clone());
    let kick = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    if let (Some(exec), Some(c)) = (prepared.plugin, credential) {
        if c.token.is_some() {
            tasks.spawn(refresh_tokens(
                exec,
                c.expires,
                bearer,
                shared.clone(),
                kick.clone(),
            ));
        }
    }
    tasks.spawn(heartbeat(
        client.clone(),
        shared.clone(),
        prepared.certificate_expires,
        kick,
    ));

    let all = |label, kind, essential| Kind {
        label,
        kind,
        istio_kind: None,
        essential,
    };
    let cfg = || watcher::Config::default().page_size(PAGE_SIZE);
    spawn_watch(
        &mut tasks,
        &shared,
        all("Namespaces", ObjectKind::Namespace, true),
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        cfg(),
        |o| Some(trim::namespace(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("Nodes", ObjectKind::Node, false),
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        cfg(),
        |o| Some(trim::node(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("Pods", ObjectKind::Pod, true),
        Api::<Pod>::all(client.clone()),
        cfg(),
        |o| Some(trim::pod(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("Services", ObjectKind::Service, true),
        Api::<Service>::all(client.clone()),
        cfg(),
        |o| Some(trim::service(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("EndpointSlices", ObjectKind::EndpointSlice, true),
        Api::<EndpointSlice>::all(client.clone()),
        cfg(),
        |o| Some(trim::endpoint_slice(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("Deployments", ObjectKind::Deployment, true),
        Api::<Deployment>::all(client.clone()),
        cfg(),
        |o| Some(trim::deployment(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("ConfigMaps", ObjectKind::ConfigMap, false),
        Api::<ConfigMap>::all(client.clone()),
        cfg(),
        |o| trim::config_map(o, SYSTEM_NAMESPACE),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all("Secrets", ObjectKind::Secret, false),
        Api::<Secret>::all(client.clone()),
        cfg().labels("istio/multiCluster=true"),
        |o| Some(trim::secret(o)),
    );
    spawn_watch(
        &mut tasks,
        &shared,
        all(
            "MutatingWebhookConfigurations",
            ObjectKind::MutatingWebhook,
            false,
        ),
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        cfg(),
        |o| Some(trim::webhook(o)),
    );
    for (group, version, kind, plural) in [
        (
            "security.istio.io",
            "v1",
            KIND_AUTHORIZATION_POLICY,
            "authorizationpolicies",
        ),
        (
            "security.istio.io",
            "v1",
            KIND_PEER_AUTHENTICATION,
            "peerauthentications",
        ),
        // Federation: exports, imports and their TLS settings.
        ("networking.istio.io", "v1", KIND_GATEWAY, "gateways"),
        (
            "networking.istio.io",
            "v1",
            KIND_SERVICE_ENTRY,
            "serviceentries",
        ),
        (
            "networking.istio.io",
            "v1",
            KIND_DESTINATION_RULE,
            "destinationrules",
        ),
    ] {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let types = TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        };
        spawn_watch(
            &mut tasks,
            &shared,
            Kind {
                label: kind,
                kind: ObjectKind::Istio,
                istio_kind: Some(kind),
                essential: false,
            },
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            cfg(),
            move |mut o: DynamicObject| {
                // LIST items carry no apiVersion/kind; the store keys Istio objects by kind.
                o.types = Some(types.clone());
                Some(trim::istio(o))
            },
        );
    }

    // istiod pods for the probes: a small labelled watch of its own (owner references and
    // names are what the probe needs, and the trimmed pods above drop them).
    let (reader, writer) = reflector::store::<Pod>();
    let istiod_pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels("app=istiod"),
    )
    .default_backoff()
    .reflect(writer);
    let probe_shared = shared.clone();
    tasks.spawn(async move {
        let mut stream = Box::pin(istiod_pods);
        while stream.next().await.is_some() {
            if probe_shared.closed() {
                return;
            }
        }
    });
    tasks.spawn(probe::run(
        client.clone(),
        reader,
        target.istiod_url.clone(),
        shared.clone(),
        started,
    ));
    while tasks.join_next().await.is_some() {}
}

fn spawn_watch<K, W>(
    tasks: &mut JoinSet<()>,
    shared: &Shared,
    kind: Kind,
    api: Api<K>,
    config: watcher::Config,
    wrap: W,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Send + Sync,
    W: Fn(K) -> Option<KubeObject> + Send + Sync + 'static,
{
    shared.register(kind.label, kind.essential);
    let shared = shared.clone();
    tasks.spawn(async move {
        watch::run(
            kind,
            move || watcher(api.clone(), config.clone()),
            wrap,
            shared,
        )
        .await
    });
}

/// Asks the API server something tiny every few seconds, so a silent watch can be told from a
/// dead server: a blackholed server turns the cluster stale within one period plus the timeout.
/// A 401 asks for new credentials (`kick`) and, when the kubeconfig's client certificate has
/// expired, says when.
async fn heartbeat(
    client: Client,
    shared: Shared,
    certificate_expires: Option<Timestamp>,
    kick: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.closed() {
            return;
        }
        let state = match timeout(HEARTBEAT_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => ApiState::Answering,
            Ok(Err(kube::Error::Api(s))) if s.code == 401 => {
                kick.notify_one();
                ApiState::Unauthorized(match certificate_expires {
                    Some(t) if t <= Timestamp::now() => format!(
                        "the client certificate expired at {}: the API server refuses it (401)",
                        t.strftime("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    _ => format!("unauthorized (401): {}", s.message),
                })
            }
            // An exec plugin's failure text carries its command line, environment and output,
            // which may hold credentials: only the fact reaches the screen and the log.
            Ok(Err(kube::Error::Auth(_))) => ApiState::Unauthorized(
                "credentials could not be obtained (token or certificate): \
                 try kubectl with this context"
                    .into(),
            ),
            // It answered, if only to refuse: the server is there.
            Ok(Err(kube::Error::Api(_))) => ApiState::Answering,
            Ok(Err(e)) => ApiState::Unreachable(short_error(&e)),
            Err(_) => ApiState::Unreachable(format!(
                "no answer within {} s",
                HEARTBEAT_TIMEOUT.as_secs()
            )),
        };
        let answering = state == ApiState::Answering;
        shared.set_api(state);
        if answering
            && !shared.send(Update::Alive {
                context: shared.context().to_string(),
            })
        {
            return;
        }
    }
}

/// The cluster cannot be reached with this kubeconfig: said once, on the cluster.
fn give_up(shared: &Shared, reason: String) {
    tracing::warn!(context = %shared.context(), error = %reason, "cannot build a client");
    shared.send(Update::Connection {
        context: shared.context().to_string(),
        connection: Connection::Down(reason),
    });
}

/// How long to wait before running a failed credential plugin again.
fn plugin_backoff(attempt: u32) -> Duration {
    Duration::from_secs((5u64 << attempt.min(6)).min(300))
}

/// Runs the plugin once; after `quiet`, the cluster says every second for how long it has run
/// (`suffix` says why), and the note goes when it ends.
async fn run_plugin(
    exec: &ExecConfig,
    shared: &Shared,
    quiet: Duration,
    suffix: &str,
) -> Result<Credential, credentials::PluginError> {
    let cmd = credentials::command_name(exec);
    let mut reported = false;
    let result = credentials::run(exec, credentials::PLUGIN_LIMIT, |elapsed| {
        if elapsed >= quiet {
            reported = true;
            shared.note(
                CREDENTIALS,
                Some(format!(
                    "credential plugin `{cmd}` running for {} s{suffix}",
                    elapsed.as_secs()
                )),
            );
        }
    })
    .await;
    if reported {
        shared.note(CREDENTIALS, None);
    }
    result
}

/// Runs the plugin until it gives a credential: while it runs the cluster says for how long;
/// when it fails or overruns its limit the cluster is `auth error` with the reason, and it is
/// tried again later. `None` when nobody listens any more.
async fn obtain(exec: &ExecConfig, shared: &Shared) -> Option<Credential> {
    let cmd = credentials::command_name(exec);
    let mut attempt = 0;
    loop {
        let since = crate::logging::since_start().as_millis() as u64;
        tracing::info!(context = %shared.context(), plugin = %cmd, since_start_ms = since, "running the credential plugin");
        match run_plugin(exec, shared, Duration::ZERO, "").await {
            Ok(c) => return Some(c),
            Err(e) => {
                let delay = plugin_backoff(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(context = %shared.context(), error = %e, "credential plugin");
                shared.set_api(ApiState::Unauthorized(format!(
                    "{e}; trying again in {} s",
                    delay.as_secs()
                )));
                if shared.closed() {
                    return None;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Asks the plugin for a new token ahead of the old one's expiry (or when the API server
/// answers 401), while requests keep the old token: a slow refresh pauses nothing.
async fn refresh_tokens(
    exec: ExecConfig,
    mut expires: Option<Timestamp>,
    bearer: Bearer,
    shared: Shared,
    kick: Arc<Notify>,
) {
    let cmd = credentials::command_name(&exec);
    let mut obtained = Timestamp::now();
    let mut attempt = 0;
    let mut last_run = tokio::time::Instant::now();
    loop {
        let wait = expires
            .map(|e| {
                let at = credentials::refresh_at(obtained, e);
                at.duration_since(Timestamp::now())
                    .try_into()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400 * 365))) => {}
            _ = kick.notified() => {
                // A 401 on every heartbeat must not run the plugin every 3 s.
                let since = last_run.elapsed();
                if since < KICK_GAP {
                    tokio::time::sleep(KICK_GAP - since).await;
                }
            }
        }
        if shared.closed() {
            return;
        }
        last_run = tokio::time::Instant::now();
        tracing::info!(context = %shared.context(), plugin = %cmd, "refreshing the token");
        // A refresh runs while the old token works: said only when it takes long.
        match run_plugin(&exec, &shared, REFRESH_QUIET, " (token refresh)").await {
            Ok(c) => {
                attempt = 0;
                if let Some(t) = &c.token {
                    bearer.set(t);
                }
                obtained = Timestamp::now();
                expires = c.expires;
                Counters::add(&shared.stats().token_refreshes);
                tracing::info!(context = %shared.context(), "token refreshed");
            }
            Err(e) => {
                let delay = plugin_backoff(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(context = %shared.context(), error = %e, "token refresh failed");
                shared.note(
                    CREDENTIALS,
                    Some(format!(
                        "token refresh failed: {e}; trying again in {} s",
                        delay.as_secs()
                    )),
                );
                tokio::time::sleep(delay).await;
                // Ask again at once after the pause.
                expires = Some(Timestamp::now());
                obtained = Timestamp::now();
            }
        }
    }
}

/// The innermost cause of a client error: "Connection refused (os error 111)" rather than
/// three layers of wrappers.
pub fn short_error(e: &kube::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
