//! End to end: the real binary in a real terminal (tmux), driven by keys, read from the screen.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        // Unique per terminal: tests run in parallel threads of one process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("meshtop-e2e-{}-{n}", std::process::id());
        let t = Tmux {
            socket: id.clone(),
            session: id,
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &t.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                &t.session,
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        t
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-t",
                &self.session,
            ])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends keys one call at a time: Escape followed at once by a letter would read as Alt+letter.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", &self.session, k])
                .status()
                .expect("tmux send-keys");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Waits until the screen satisfies `pred`, or fails with the last screen.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn audit_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshtop-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn navigate_filter_help_fail_over_undo_and_quit() {
    let audit = audit_path("audit.jsonl");
    let command = format!(
        "{} --demo --seed 5 --audit-log {}; echo MESHTOP-EXIT:$?; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        audit.display()
    );
    let tmux = Tmux::start(&command, 150, 46);
    tmux.wait_text("mesh-alpha");
    tmux.wait_text("connected: 5 clusters in 2 meshes");

    // Navigate down the tree to a service and see its endpoint distribution.
    tmux.keys(&["j", "j", "l", "j", "j", "j", "l", "j", "l", "j"]);
    let screen = tmux.wait_text("Endpoint distribution");
    assert!(screen.contains("Service catalog/"), "{screen}");

    // Help overlay, generated from the key map; any key closes it.
    tmux.keys(&["?"]);
    tmux.wait_text("fail over the selected cluster or control plane");
    tmux.keys(&["x"]);
    tmux.wait_for("help closed", |s| !s.contains("Any key closes this help"));

    // Filter, incremental; the cursor lands on the first match.
    tmux.keys(&["/", "f", "r", "a", "u", "d"]);
    tmux.wait_text("Service payments/fraud-check");
    tmux.keys(&["Enter"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("filter cleared", |s| !s.contains("filter: fraud"));

    // Fail over the remote cluster east-2 to west-1's control plane.
    tmux.keys(&["/", "e", "a", "s", "t", "-", "2", "Enter"]);
    tmux.keys(&["Escape"]);
    tmux.keys(&["f"]);
    tmux.wait_text("Pre-flight checks");
    tmux.wait_text("Apply this plan?");
    tmux.keys(&["y"]);
    let done = tmux.wait_text("Failover complete");
    assert!(
        done.contains("west-1/istio-system/istiod now serves east-2"),
        "{done}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_text("east-2 remote ← west-1");

    // Undo puts it back under east-1.
    tmux.keys(&["u"]);
    tmux.wait_text("Undo failover");
    tmux.keys(&["y"]);
    tmux.wait_text("Failover complete");
    tmux.keys(&["Escape"]);
    tmux.wait_text("east-2 remote ← east-1");

    // Quit restores the terminal and exits 0.
    tmux.keys(&["q"]);
    let screen = tmux.wait_text("MESHTOP-EXIT:");
    assert!(screen.contains("MESHTOP-EXIT:0"), "{screen}");
    assert!(
        !screen.contains("mesh-alpha"),
        "alternate screen left: {screen}"
    );

    let log = std::fs::read_to_string(&audit).expect("audit log written");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|k| *k != "step")
        .collect();
    assert_eq!(kinds, vec!["start", "end", "start", "end"], "{log}");
    let ends: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "end").collect();
    assert!(ends.iter().all(|e| e["outcome"] == "verified"), "{log}");
    let starts: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "start").collect();
    assert!(
        starts[1]["plan"]["undo_of"].is_string(),
        "the second is the undo"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step" && e["result"] == "ok"),
        "each step is recorded"
    );
}

#[test]
fn read_only_shows_the_plan_but_cannot_apply_it() {
    let audit = audit_path("audit-ro.jsonl");
    let command = format!(
        "{} --demo --seed 5 --read-only --audit-log {}; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        audit.display()
    );
    let tmux = Tmux::start(&command, 140, 44);
    tmux.wait_text("read-only");
    tmux.keys(&["/", "e", "a", "s", "t", "-", "2", "Enter"]);
    tmux.keys(&["Escape"]);
    tmux.keys(&["f"]);
    tmux.wait_text("Read-only: this plan cannot be applied");
    tmux.keys(&["y"]);
    // Keys are handled in order: once Esc has closed the window, `y` has been handled.
    tmux.keys(&["Escape"]);
    let screen = tmux.wait_for("the failover window to close", |s| {
        !s.contains("Read-only: this plan cannot be applied")
    });
    assert!(!screen.contains("failover started"), "{screen}");
    assert!(!screen.contains("Failover complete"), "{screen}");
    assert!(!audit.exists(), "nothing was attempted, nothing audited");
}

#[test]
fn resizing_to_a_tiny_terminal_and_back_never_breaks() {
    let command = format!(
        "{} --demo --seed 2; echo MESHTOP-EXIT:$?; sleep 30",
        env!("CARGO_BIN_EXE_meshtop")
    );
    let tmux = Tmux::start(&command, 120, 40);
    tmux.wait_text("mesh-alpha");
    let resize = |w: u16, h: u16| {
        Command::new("tmux")
            .args(["-L", &tmux.socket, "resize-window", "-t", &tmux.session])
            .args(["-x", &w.to_string(), "-y", &h.to_string()])
            .status()
            .unwrap();
    };
    resize(20, 6);
    tmux.wait_text("too small");
    resize(40, 10);
    tmux.wait_text("mesh-alpha");
    resize(120, 40);
    tmux.wait_text("Events (newest first)");
    // Ctrl-C quits cleanly too: exit 0 and the normal screen is back.
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_text("MESHTOP-EXIT:");
    assert!(screen.contains("MESHTOP-EXIT:0"), "{screen}");
    assert!(!screen.contains("Events (newest first)"), "{screen}");
}

#[test]
fn the_federation_view_follows_a_root_rotation_in_the_story() {
    // 100 ms per step: mesh-beta rotates its root at step 20, mesh-alpha imports it at 40.
    let command = format!(
        "{} --demo --seed 5 --tick-ms 100; sleep 30",
        env!("CARGO_BIN_EXE_meshtop")
    );
    let tmux = Tmux::start(&command, 150, 46);
    tmux.wait_text("connected: 5 clusters in 2 meshes");
    // The federation node is the last top-level node: End, open, down to the pair, open, down
    // to the import.
    tmux.keys(&["G", "l", "j"]);
    let screen = tmux.wait_text("Federation mesh-alpha ⇄ mesh-beta");
    assert!(screen.contains("mesh-alpha → mesh-beta"), "{screen}");
    assert!(screen.contains("mesh-beta → mesh-alpha"), "{screen}");
    // The story breaks the federation (the pair is degraded to begin with: a policy admits a
    // namespace both meshes have), the panel and the event log say so, then it is repaired.
    tmux.wait_text("mesh-beta's root was rotated");
    tmux.wait_text("federation mesh-alpha ⇄ mesh-beta: degraded → down");
    tmux.wait_text("federation mesh-alpha ⇄ mesh-beta: down → degraded");
    tmux.keys(&["l", "j"]);
    let screen = tmux.wait_text("Where it runs: orders/orders in mesh-beta");
    assert!(screen.contains("exported by"), "{screen}");
    tmux.keys(&["q"]);
}
