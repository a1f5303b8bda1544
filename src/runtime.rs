//! The interactive loop: one task per source, the engine task, and the UI on this task.
//! The UI only awaits its event sources (keys, derived topologies, progress, ticks); it never
//! awaits a cluster.

use std::io::stdout;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream, KeyEventKind};
use crossterm::execute;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use futures::future::BoxFuture;

use crate::app::state::{App, Command};
use crate::engine::{self, unix_now};
use crate::failover::apply;
use crate::failover::audit::{self, AuditLog};
use crate::failover::writer::Writer;
use crate::topology::model::Topology;
use crate::topology::snapshot::Update;

/// Frames are drawn at most this often; bursts of events coalesce into one frame.
const FRAME: Duration = Duration::from_millis(33);

/// What feeds the dashboard: the source tasks (each sends on the channel whose receiver is
/// `updates`), and the writer failovers go through.
pub struct Sources<W: Writer> {
    pub updates: mpsc::UnboundedReceiver<Vec<Update>>,
    pub tasks: Vec<BoxFuture<'static, ()>>,
    pub writer: W,
}

/// Spawns the sources and the engine; returns the latest topology and the UI's event stream.
fn start(
    sources: Vec<BoxFuture<'static, ()>>,
    updates: mpsc::UnboundedReceiver<Vec<Update>>,
) -> (
    watch::Receiver<Arc<Topology>>,
    mpsc::UnboundedReceiver<engine::Derived>,
) {
    let (topology_tx, topology_rx) = watch::channel(Arc::new(Topology::default()));
    let (derived_tx, derived_rx) = mpsc::unbounded_channel();
    for task in sources {
        tokio::spawn(task);
    }
    tokio::spawn(engine::run(updates, topology_tx, derived_tx));
    (topology_rx, derived_rx)
}

/// Headless and open-ended (the `failover` and `undo` commands): the same sources and engine,
/// running until the process ends; returns the latest topology.
pub fn headless<W: Writer>(sources: Sources<W>) -> (watch::Receiver<Arc<Topology>>, W) {
    let (topology_rx, derived) = start(sources.tasks, sources.updates);
    // Nobody reads the event log here: drain it so it does not grow.
    tokio::spawn(async move {
        let mut derived = derived;
        while derived.recv().await.is_some() {}
    });
    (topology_rx, sources.writer)
}

/// Waits until `done` holds for the topology, or the deadline passes.
pub async fn wait_for(
    topology: &mut watch::Receiver<Arc<Topology>>,
    deadline: Duration,
    done: impl Fn(&Topology) -> bool,
) -> bool {
    let wait = async {
        loop {
            {
                let t = topology.borrow_and_update();
                if !t.meshes.is_empty() && done(&t) {
                    return true;
                }
            }
            if topology.changed().await.is_err() {
                return false;
            }
        }
    };
    tokio::time::timeout(deadline, wait).await.unwrap_or(false)
}

/// Headless: runs the same sources and engine until `done` holds for the derived topology or
/// the deadline passes; returns the last topology and whether `done` held.
pub async fn once<W: Writer>(
    sources: Sources<W>,
    deadline: Duration,
    done: impl Fn(&Topology) -> bool,
) -> (Arc<Topology>, bool) {
    let (mut topology_rx, _derived) = start(sources.tasks, sources.updates);
    let wait = async {
        loop {
            if topology_rx.changed().await.is_err() {
                return;
            }
            let t = topology_rx.borrow_and_update().clone();
            if !t.meshes.is_empty() && done(&t) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(deadline, wait).await;
    let t = topology_rx.borrow().clone();
    let ok = !t.meshes.is_empty() && done(&t);
    (t, ok)
}

pub async fn run<W: Writer>(
    mut app: App,
    sources: Sources<W>,
    audit: AuditLog,
    verify_within: Duration,
) -> Result<()> {
    let (topology_rx, mut derived_rx) = start(sources.tasks, sources.updates);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let writer = sources.writer;
    // What the audit log remembers: an attempt stopped half-way, the last undoable one.
    match audit.attempts() {
        Ok(attempts) => {
            let pending = audit::pending(&attempts).into_iter().cloned().collect();
            let undoable =
                audit::latest_undoable(&attempts).map(|a| (a.id.clone(), a.applied_plan()));
            app.on_history(pending, undoable);
        }
        Err(e) => tracing::warn!("audit log not read: {e}"),
    }

    let mut terminal = ratatui::init();
    let _ = execute!(stdout(), EnableMouseCapture);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(stdout(), DisableMouseCapture);
        previous_hook(info);
    }));

    let mut events = EventStream::new();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut dirty = true;
    let mut first_frame = true;
    let mut last_draw = Instant::now() - FRAME;
    app.now = unix_now();

    let result: Result<()> = loop {
        if dirty && last_draw.elapsed() >= FRAME {
            if let Err(e) = terminal.draw(|f| crate::ui::draw(f, &mut app)) {
                break Err(e.into());
            }
            if first_frame {
                first_frame = false;
                let since_start_ms = crate::logging::since_start().as_millis() as u64;
                tracing::info!(since_start_ms, "first frame");
            }
            dirty = false;
            last_draw = Instant::now();
        }
        let next_frame = last_draw + FRAME;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    match app.on_key(key) {
                        Some(Command::Execute(run)) => {
                            tokio::spawn(apply::execute(
                                run,
                                writer.clone(),
                                topology_rx.clone(),
                                audit.clone(),
                                verify_within,
                                progress_tx.clone(),
                            ));
                        }
                        Some(Command::Access(plan)) => {
                            let (writer, tx) = (writer.clone(), progress_tx.clone());
                            tokio::spawn(async move {
                                let checks = writer.access(&plan).await;
                                let _ = tx.send(apply::Progress::Checked { plan, checks });
                            });
                        }
                        None => {}
                    }
                    dirty = true;
                }
                Some(Ok(Event::Mouse(m))) => { app.on_mouse(m); dirty = true; }
                Some(Ok(Event::Resize(_, _))) => {
                    // Resizing is drawn at once, not on the next frame slot.
                    last_draw = Instant::now() - FRAME;
                    dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e.into()),
                None => break Ok(()),
            },
            Some(derived) = derived_rx.recv() => {
                app.on_topology(derived.topology, derived.log);
                dirty = true;
            }
            Some(progress) = progress_rx.recv() => {
                app.on_progress(progress);
                dirty = true;
            }
            _ = clock.tick() => {
                app.now = unix_now();
                dirty = true;
            }
            _ = tokio::time::sleep_until(next_frame), if dirty => {}
            _ = terminate.recv() => app.quit = true,
            _ = hangup.recv() => app.quit = true,
        }
        if app.quit {
            break Ok(());
        }
    };
    let _ = execute!(stdout(), DisableMouseCapture);
    // The terminal may be gone (a closed window, a dropped SSH session: SIGHUP). Restoring it
    // must not print then: a failed write to stderr panics, a second one in the terminal's
    // drop aborts, and an aborted process never drops its sources (nor kills a running
    // credential plugin with them).
    if ratatui::try_restore().is_ok() && terminal.show_cursor().is_ok() {
        drop(terminal);
    } else {
        std::mem::forget(terminal);
    }
    result
}
