//! A real terminal for end-to-end tests: the binary runs in a tmux session of its own server
//! (one `-L` socket per terminal), read with `capture-pane`, driven with `send-keys`.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn start(name: &str, command: &str, env: &[(&str, &str)]) -> Tmux {
        let socket = format!("meshtop-live-{}-{name}", std::process::id());
        let mut cmd = Command::new("tmux");
        cmd.args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "s",
        ])
        .args(["-x", "160", "-y", "45"])
        .arg(command)
        .env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let status = cmd
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    pub fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "s"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn key(&self, key: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "s", key])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen satisfies `pred`; returns the screen and how long it took.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (String, Duration) {
        let t0 = Instant::now();
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return (screen, t0.elapsed());
            }
            if t0.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

impl Tmux {
    /// Records every byte the program writes to the terminal into `path` (tmux `pipe-pane`).
    pub fn record(&self, path: &std::path::Path) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "pipe-pane", "-t", "s", "-o"])
            .arg(format!("cat >> '{}'", path.display()))
            .status()
            .expect("tmux pipe-pane");
        assert!(status.success(), "tmux pipe-pane failed");
    }
}
