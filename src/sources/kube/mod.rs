//! The live source: one task per kubeconfig context, all started at once. Each cluster gets
//! one client, one watch per kind (trimmed at the door), a heartbeat that tells "quiet" from
//! "gone", and istiod probes over port-forward. Everything leaves as `Update`s; nothing here
//! draws a conclusion, and no cluster waits for another.

pub mod kubeconfig;
pub mod probe;
pub mod stats;
pub mod status;
mod trim;
mod watch;

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::core::TypeMeta;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

pub use kubeconfig::{resolve, Target};
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

/// Everything one cluster does, until nobody listens any more.
pub async fn run_cluster(target: Target, tx: UnboundedSender<Vec<Update>>, started: Instant) {
    let shared = Shared::new(&target.context, tx);
    if target.display_name.is_some() || target.cluster_id.is_some() {
        shared.send(Update::Identity {
            context: target.context.clone(),
            display_name: target.display_name.clone(),
            cluster_id: target.cluster_id.clone(),
        });
    }
    let client = match target
        .config
        .and_then(|c| Client::try_from(c).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(context = %target.context, error = %e, "cannot build a client");
            shared.send(Update::Connection {
                context: target.context.clone(),
                connection: Connection::Down(e),
            });
            return;
        }
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(heartbeat(client.clone(), shared.clone()));

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
async fn heartbeat(client: Client, shared: Shared) {
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
                ApiState::Unauthorized(format!("unauthorized (401): {}", s.message))
            }
            // An exec plugin's failure text carries its command line, environment and output,
            // which may hold credentials: only the fact reaches the screen and the log.
            Ok(Err(kube::Error::Auth(_))) => ApiState::Unauthorized(
                "credentials could not be obtained (exec plugin, token or certificate): \
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

/// The innermost cause of a client error: "Connection refused (os error 111)" rather than
/// three layers of wrappers.
pub fn short_error(e: &kube::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
