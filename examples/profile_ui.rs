//! A fixed amount of UI work on the benchmark's big mesh, for `perf record`, printing the UI
//! thread's own CPU time per round (other load on the machine inflates criterion's wall-clock
//! times, much less this): `MODE=keys` types `1` after `svc-0` and deletes it again, ROUNDS
//! times; `MODE=frame` draws ROUNDS frames at 200×60 with a service selected.
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshtop::app::state::App;
use meshtop::sources::demo::{DemoSim, Scale};
use meshtop::theme;
use meshtop::topology::derive::derive;
use meshtop::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_ns;

fn main() {
    let scale = Scale {
        clusters: 20,
        services: 2_000,
        endpoints_per_service_cluster: 10,
        clusters_per_service: 5,
    };
    let mut sim = DemoSim::scaled(42, scale);
    let _ = sim.drain();
    let topology = Arc::new(derive(sim.world()));
    let (themes, _) = theme::discover(None);
    let mut app = App::new(themes, 0, "profile".into(), false);
    app.on_topology(topology, Vec::new());
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("test backend");
    let (started, cpu) = (std::time::Instant::now(), cpu_ns());
    match std::env::var("MODE").as_deref() {
        Ok("frame") => {
            let c07 = app.topology.cluster("c07").expect("cluster c07");
            let ns = c07.namespaces.first().expect("a namespace");
            let target = format!("svc:c07/{}/{}", ns.name, ns.services[0]);
            assert!(app.select_node(&target));
            for _ in 0..rounds {
                terminal.draw(|f| ui::draw(f, &mut app)).expect("draw");
            }
        }
        _ => {
            app.on_key(key(KeyCode::Char('/')));
            for c in "svc-0".chars() {
                app.on_key(key(KeyCode::Char(c)));
            }
            for i in 0..rounds {
                app.on_key(key(if i % 2 == 0 {
                    KeyCode::Char('1')
                } else {
                    KeyCode::Backspace
                }));
            }
        }
    }
    println!(
        "{rounds} rounds: {:.3} ms cpu, {:.3} ms wall each",
        (cpu_ns() - cpu) as f64 / 1e6 / rounds as f64,
        started.elapsed().as_secs_f64() * 1e3 / rounds as f64
    );
}
