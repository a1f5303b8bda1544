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

use crate::app::state::{App, Command};
use crate::engine::{self, unix_now};
use crate::failover::apply;
use crate::failover::audit::AuditLog;
use crate::sources::demo;
use crate::topology::model::Topology;

/// Frames are drawn at most this often; bursts of events coalesce into one frame.
const FRAME: Duration = Duration::from_millis(33);

pub struct DemoOptions {
    pub seed: u64,
    pub tick: Duration,
    pub audit: AuditLog,
}

pub async fn run_demo(mut app: App, options: DemoOptions) -> Result<()> {
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (writes_tx, writes_rx) = mpsc::unbounded_channel();
    let (topology_tx, topology_rx) = watch::channel(Arc::new(Topology::default()));
    let (derived_tx, mut derived_rx) = mpsc::unbounded_channel();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    tokio::spawn(demo::run(options.seed, options.tick, updates_tx, writes_rx));
    tokio::spawn(engine::run(updates_rx, topology_tx, derived_tx));
    let writer = demo::DemoWriter::new(writes_tx);

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
    let mut last_draw = Instant::now() - FRAME;
    app.now = unix_now();

    let result: Result<()> = loop {
        if dirty && last_draw.elapsed() >= FRAME {
            if let Err(e) = terminal.draw(|f| crate::ui::draw(f, &mut app)) {
                break Err(e.into());
            }
            dirty = false;
            last_draw = Instant::now();
        }
        let next_frame = last_draw + FRAME;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    if let Some(Command::Execute(plan)) = app.on_key(key) {
                        tokio::spawn(apply::execute(
                            plan,
                            writer.clone(),
                            topology_rx.clone(),
                            options.audit.clone(),
                            Duration::from_secs(15),
                            progress_tx.clone(),
                        ));
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
    ratatui::restore();
    result
}
