//! One watch per kind: a kube-runtime watcher turned into `Update`s. A relist (`Init` …
//! `InitDone`) is buffered and sent as one `Replace`, so the store swaps a whole kind at once,
//! the way kube-runtime's reflector store does: no ghosts, no duplicates.

use std::fmt::Debug;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};

use super::stats::Counters;
use super::status::{KindState, Shared};
use crate::topology::snapshot::{KubeObject, ObjectKind, Update};

/// What one watch covers.
pub struct Kind {
    /// Shown in notes and the log: `Pods`, `Secrets`, `AuthorizationPolicy` …
    pub label: &'static str,
    pub kind: ObjectKind,
    /// For Istio resources: the resource kind the `Replace` narrows to.
    pub istio_kind: Option<&'static str>,
    /// Kinds without which the cluster cannot be called live.
    pub essential: bool,
}

/// How long to wait before retrying a watch that failed, by failure.
fn retry_delay(failure: &Failure, attempt: u32) -> Duration {
    match failure {
        Failure::Forbidden(_) | Failure::Absent(_) => Duration::from_secs(60),
        Failure::Other(_) => Duration::from_millis((500u64 << attempt.min(6)).min(30_000)),
    }
}

pub enum Failure {
    Forbidden(String),
    Absent(String),
    Other(String),
}

fn classify(e: &watcher::Error) -> Failure {
    if let watcher::Error::InitialListFailed(kube::Error::Auth(_))
    | watcher::Error::WatchStartFailed(kube::Error::Auth(_))
    | watcher::Error::WatchFailed(kube::Error::Auth(_)) = e
    {
        // The text of an exec plugin's failure may carry credentials: never log it.
        return Failure::Other("credentials could not be obtained".into());
    }
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    match status {
        Some(s) if s.code == 403 => Failure::Forbidden(format!("forbidden (403): {}", s.message)),
        Some(s) if s.code == 404 => Failure::Absent("not served by this API server (404)".into()),
        Some(s) if s.code == 401 => Failure::Other(format!("unauthorized (401): {}", s.message)),
        _ => Failure::Other(e.to_string()),
    }
}

/// Drives one watcher until the receiving side is gone. `wrap` trims an object at the door
/// (and may drop it). Retries with backoff; a 403 or 404 retries slowly and leaves a note.
pub async fn run<T, S>(
    kind: Kind,
    make_stream: impl Fn() -> S,
    wrap: impl Fn(T) -> Option<KubeObject>,
    shared: Shared,
) where
    T: Debug + Send + 'static,
    S: Stream<Item = watcher::Result<Event<T>>> + Send,
{
    let context = shared.context().to_string();
    let mut stream = Box::pin(make_stream());
    let mut buffer: Vec<KubeObject> = Vec::new();
    let mut attempt: u32 = 0;
    // Whether this kind has synced once: a LIST after that is a relist.
    let mut synced_once = false;
    loop {
        let Some(item) = stream.next().await else {
            // The watcher never ends by itself; start it again.
            stream = Box::pin(make_stream());
            continue;
        };
        let update = match item {
            Ok(Event::Init) => {
                // With the ListWatch strategy every `Init` starts a LIST.
                Counters::add(&shared.stats().lists);
                if synced_once {
                    Counters::add(&shared.stats().relists);
                    tracing::info!(%context, kind = kind.label, "relisting (a LIST after the initial sync)");
                }
                buffer.clear();
                None
            }
            Ok(Event::InitApply(o)) => {
                buffer.extend(wrap(o));
                None
            }
            Ok(Event::InitDone) => {
                attempt = 0;
                synced_once = true;
                shared.set_kind(kind.label, kind.essential, KindState::Synced);
                tracing::debug!(%context, kind = kind.label, objects = buffer.len(), "synced");
                Some(Update::Replace {
                    context: context.clone(),
                    kind: kind.kind,
                    istio_kind: kind.istio_kind.map(str::to_string),
                    objects: std::mem::take(&mut buffer),
                })
            }
            Ok(Event::Apply(o)) => wrap(o).map(|object| Update::Apply {
                context: context.clone(),
                object: Box::new(object),
            }),
            Ok(Event::Delete(o)) => wrap(o).map(|object| Update::Delete {
                context: context.clone(),
                kind: object.kind(),
                key: object.key(),
            }),
            Err(e) => {
                let failure = classify(&e);
                let delay = retry_delay(&failure, attempt);
                attempt = attempt.saturating_add(1);
                match &failure {
                    Failure::Forbidden(m) => {
                        shared.set_kind(kind.label, kind.essential, KindState::Forbidden(m.clone()))
                    }
                    Failure::Absent(m) => {
                        shared.set_kind(kind.label, kind.essential, KindState::Absent(m.clone()))
                    }
                    Failure::Other(m) => {
                        tracing::info!(%context, kind = kind.label, error = %m, "watch failed; retrying");
                        shared.set_kind(kind.label, kind.essential, KindState::Failing(m.clone()))
                    }
                }
                if shared.closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                None
            }
        };
        if let Some(u) = update {
            if !shared.send(u) {
                return;
            }
        }
    }
}
