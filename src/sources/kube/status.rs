//! The state of one cluster's connection, from what its watches and its heartbeat report:
//! connecting, live, stale, down, forbidden or auth error. Published as `Update::Connection`
//! (only when it changes) and per-kind `Update::Note`s for what could not be read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

use super::stats::Counters;
use crate::topology::snapshot::{Connection, Update};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindState {
    Syncing,
    Synced,
    Forbidden(String),
    Absent(String),
    Failing(String),
}

/// What the last heartbeat (`GET /version`) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Api {
    Unknown,
    Answering,
    Unreachable(String),
    Unauthorized(String),
}

#[derive(Debug)]
struct State {
    kinds: BTreeMap<&'static str, (bool, KindState)>,
    api: Api,
    was_live: bool,
    published: Option<Connection>,
}

impl State {
    fn connection(&self) -> Connection {
        let essential: Vec<&KindState> = self
            .kinds
            .values()
            .filter(|(e, _)| *e)
            .map(|(_, s)| s)
            .collect();
        match &self.api {
            Api::Unauthorized(m) => return Connection::AuthError(m.clone()),
            Api::Unreachable(m) if self.was_live => return Connection::Stale(m.clone()),
            Api::Unreachable(m) => return Connection::Down(m.clone()),
            Api::Unknown | Api::Answering => {}
        }
        let forbidden: Vec<&String> = essential
            .iter()
            .filter_map(|s| match s {
                KindState::Forbidden(m) => Some(m),
                _ => None,
            })
            .collect();
        if !essential.is_empty() && forbidden.len() == essential.len() {
            return Connection::Forbidden(forbidden[0].clone());
        }
        // Live once every kind has its first answer (a 403 or an absent CRD is an answer):
        // the mesh config, remote secrets and webhooks decide roles as much as the pods do.
        let synced = self
            .kinds
            .values()
            .all(|(_, s)| !matches!(s, KindState::Syncing | KindState::Failing(_)));
        if synced && self.api == Api::Answering {
            Connection::Live
        } else if self.was_live {
            // A watch restarted after the cluster was live (a relist, a reconnect): the data
            // shown is still the last known state until the kind syncs again.
            Connection::Live
        } else {
            Connection::Connecting
        }
    }
}

/// Shared by every task of one cluster (watches, heartbeat, istiod probes).
#[derive(Clone)]
pub struct Shared {
    context: Arc<str>,
    tx: UnboundedSender<Vec<Update>>,
    state: Arc<Mutex<State>>,
    stats: Arc<Counters>,
}

impl Shared {
    pub fn new(context: &str, tx: UnboundedSender<Vec<Update>>) -> Shared {
        Shared {
            context: context.into(),
            tx,
            state: Arc::new(Mutex::new(State {
                kinds: BTreeMap::new(),
                api: Api::Unknown,
                was_live: false,
                published: None,
            })),
            stats: super::stats::counters(context),
        }
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// Sends one update; false when nobody listens any more (the app is quitting).
    pub fn send(&self, update: Update) -> bool {
        self.tx.send(vec![update]).is_ok()
    }

    /// Sends updates as one batch: the engine applies them together and derives once.
    pub fn send_all(&self, updates: Vec<Update>) -> bool {
        updates.is_empty() || self.tx.send(updates).is_ok()
    }

    /// Sets (or, with `None`, clears) a note on the cluster: what could not be read, or what
    /// is still under way (a credential plugin).
    pub fn note(&self, topic: &str, note: Option<String>) -> bool {
        self.send(Update::Note {
            context: self.context.to_string(),
            topic: topic.to_string(),
            note,
        })
    }

    /// What this cluster's source asked of its API server so far.
    pub fn stats(&self) -> &Counters {
        &self.stats
    }

    pub fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn register(&self, kind: &'static str, essential: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.kinds.insert(kind, (essential, KindState::Syncing));
        }
    }

    pub fn set_kind(&self, kind: &'static str, essential: bool, state: KindState) {
        let note = match &state {
            KindState::Forbidden(m) | KindState::Absent(m) => Some(m.clone()),
            _ => None,
        };
        let previous = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.kinds.insert(kind, (essential, state.clone())));
        let had_note = matches!(
            previous,
            Some((_, KindState::Forbidden(_) | KindState::Absent(_)))
        );
        if note.is_some() || had_note {
            if note.is_some() {
                tracing::warn!(context = %self.context, kind, note = ?note, "cannot read");
            }
            self.send(Update::Note {
                context: self.context.to_string(),
                topic: kind.to_string(),
                note,
            });
        }
        self.publish();
    }

    pub fn set_api(&self, api: Api) {
        if let Ok(mut s) = self.state.lock() {
            s.api = api;
        }
        self.publish();
    }

    /// Sends the connection state when it changed.
    pub fn publish(&self) {
        let changed = self.state.lock().ok().and_then(|mut s| {
            let c = s.connection();
            if c == Connection::Live {
                s.was_live = true;
            }
            (s.published.as_ref() != Some(&c)).then(|| {
                s.published = Some(c.clone());
                c
            })
        });
        if let Some(connection) = changed {
            let since_start_ms = crate::logging::since_start().as_millis() as u64;
            tracing::info!(context = %self.context, state = connection.label(), reason = ?connection.reason(), since_start_ms, "cluster state");
            self.send(Update::Connection {
                context: self.context.to_string(),
                connection,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn last_connection(rx: &mut mpsc::UnboundedReceiver<Vec<Update>>) -> Option<Connection> {
        let mut last = None;
        while let Ok(batch) = rx.try_recv() {
            for u in batch {
                if let Update::Connection { connection, .. } = u {
                    last = Some(connection);
                }
            }
        }
        last
    }

    #[test]
    fn live_needs_every_essential_kind_and_an_answer() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let s = Shared::new("c", tx);
        s.register("Pods", true);
        s.register("Secrets", false);
        s.set_api(Api::Answering);
        assert_eq!(last_connection(&mut rx), Some(Connection::Connecting));
        s.set_kind("Secrets", false, KindState::Forbidden("403".into()));
        assert_eq!(
            last_connection(&mut rx),
            None,
            "optional kinds do not decide"
        );
        s.set_kind("Pods", true, KindState::Synced);
        assert_eq!(last_connection(&mut rx), Some(Connection::Live));
        s.set_api(Api::Unreachable("timeout".into()));
        assert_eq!(
            last_connection(&mut rx),
            Some(Connection::Stale("timeout".into()))
        );
        s.set_api(Api::Answering);
        assert_eq!(last_connection(&mut rx), Some(Connection::Live));
    }

    #[test]
    fn never_live_is_down_and_all_forbidden_is_forbidden() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let s = Shared::new("c", tx);
        s.register("Pods", true);
        s.set_api(Api::Unreachable("connection refused".into()));
        assert_eq!(
            last_connection(&mut rx),
            Some(Connection::Down("connection refused".into()))
        );
        s.set_api(Api::Answering);
        s.set_kind("Pods", true, KindState::Forbidden("forbidden (403)".into()));
        assert_eq!(
            last_connection(&mut rx),
            Some(Connection::Forbidden("forbidden (403)".into()))
        );
    }
}
