//! Credential plugins (`users[].user.exec` in a kubeconfig), run by meshtop itself rather than
//! by kube-client. kube-client runs a plugin with blocking `std::process::Command` when a client
//! is built (twice: for the token and for a client certificate) and on every refresh; a plugin
//! that waits for a browser login would hold a runtime thread, and a hung one could never be
//! stopped. Here a plugin is an async child process in a process group of its own, with no
//! terminal (stdin and stderr closed: its text may carry credentials), a deadline, progress the
//! cluster can show, and a guard that kills the whole group when meshtop stops waiting.
//! The token reaches requests through [`Bearer`], a header the cluster's refresh task replaces
//! while requests keep flowing with the old one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{header::AUTHORIZATION, HeaderValue, Request};
use k8s_openapi::jiff::Timestamp;
use kube::config::ExecConfig;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long one run of a plugin may take before meshtop gives up on it (and kills it).
pub const PLUGIN_LIMIT: Duration = Duration::from_secs(60);
/// How often a running plugin's elapsed time is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a plugin handed back. Values are never logged or shown.
pub struct Credential {
    /// A bearer token.
    pub token: Option<String>,
    /// A client certificate and key (PEM), for plugins that return those instead.
    pub identity: Option<(String, String)>,
    /// When the plugin says to ask again.
    pub expires: Option<Timestamp>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("identity", &self.identity.as_ref().map(|_| "…"))
            .field("expires", &self.expires)
            .finish()
    }
}

/// Why a plugin gave no credential, in words safe to show: never its output or its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginError {
    NoCommand,
    Start(String, String),
    Failed(String, Option<i32>),
    Unreadable(String, String),
    Empty(String),
    TimedOut(String, Duration),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::NoCommand => f.write_str("the exec credential plugin names no command"),
            PluginError::Start(cmd, e) => {
                write!(f, "credential plugin `{cmd}` could not be started: {e}")
            }
            PluginError::Failed(cmd, Some(code)) => write!(
                f,
                "credential plugin `{cmd}` failed (exit status {code}); its output is not shown \
                 (it may hold credentials): try kubectl with this context"
            ),
            PluginError::Failed(cmd, None) => {
                write!(f, "credential plugin `{cmd}` was killed by a signal")
            }
            PluginError::Unreadable(cmd, why) => write!(
                f,
                "credential plugin `{cmd}` printed no ExecCredential meshtop can read ({why})"
            ),
            PluginError::Empty(cmd) => write!(
                f,
                "credential plugin `{cmd}` returned neither a token nor a client certificate"
            ),
            PluginError::TimedOut(cmd, limit) => write!(
                f,
                "credential plugin `{cmd}` gave no answer within {} s and was stopped",
                limit.as_secs()
            ),
        }
    }
}

/// The plugin's program name, without its directory or arguments (arguments may hold secrets).
pub fn command_name(exec: &ExecConfig) -> String {
    exec.command
        .as_deref()
        .map(|c| {
            std::path::Path::new(c)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| c.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[derive(Deserialize)]
struct ExecCredential {
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    token: Option<String>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
    expiration_timestamp: Option<String>,
}

/// Reads a plugin's stdout: JSON, or YAML (client-go accepts both).
fn parse(cmd: &str, out: &[u8]) -> Result<Credential, PluginError> {
    let parsed: ExecCredential = match serde_json::from_slice(out) {
        Ok(p) => p,
        Err(_) => serde_yaml::from_slice(out)
            .map_err(|_| PluginError::Unreadable(cmd.into(), "not JSON or YAML".into()))?,
    };
    let status = parsed
        .status
        .ok_or_else(|| PluginError::Unreadable(cmd.into(), "no status".into()))?;
    let expires = match status.expiration_timestamp.as_deref() {
        Some(t) => Some(t.parse::<Timestamp>().map_err(|_| {
            PluginError::Unreadable(cmd.into(), format!("expirationTimestamp {t:?}"))
        })?),
        None => None,
    };
    let identity = status.client_certificate_data.zip(status.client_key_data);
    let token = status.token.filter(|t| !t.is_empty());
    if token.is_none() && identity.is_none() {
        return Err(PluginError::Empty(cmd.into()));
    }
    Ok(Credential {
        token,
        identity,
        expires,
    })
}

/// Kills the plugin's whole process group (a shell script's `sleep` too) unless disarmed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Runs the plugin once. `waiting` is called every second with the time it has run so far.
/// Dropping the returned future (meshtop quits, the cluster is dropped) kills the plugin.
pub async fn run(
    exec: &ExecConfig,
    limit: Duration,
    mut waiting: impl FnMut(Duration),
) -> Result<Credential, PluginError> {
    let cmd = command_name(exec);
    let program = exec.command.as_deref().ok_or(PluginError::NoCommand)?;
    let mut command = Command::new(program);
    command.args(exec.args.iter().flatten());
    for pair in exec.env.iter().flatten() {
        if let (Some(name), Some(value)) = (pair.get("name"), pair.get("value")) {
            command.env(name, value);
        }
    }
    for name in exec.drop_env.iter().flatten() {
        command.env_remove(name);
    }
    let info = serde_json::json!({
        "apiVersion": exec.api_version.as_deref()
            .unwrap_or("client.authentication.k8s.io/v1"),
        "kind": "ExecCredential",
        "spec": {
            "interactive": false,
            "cluster": if exec.provide_cluster_info { serde_json::to_value(&exec.cluster).ok() } else { None },
        },
    });
    command
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // Never on the dashboard's terminal, never in the log: it may print credentials.
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| PluginError::Start(cmd.clone(), e.kind().to_string()))?;
    let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    let mut stdout = child.stdout.take();
    let started = tokio::time::Instant::now();
    let finish = async {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            // At most 1 MiB: an ExecCredential is small; a runaway plugin must not fill memory.
            let _ = s.take(1 << 20).read_to_end(&mut out).await;
        }
        let status = child.wait().await;
        (status, out)
    };
    tokio::pin!(finish);
    let mut tick = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let (status, out) = loop {
        tokio::select! {
            done = &mut finish => break done,
            _ = tick.tick() => waiting(started.elapsed()),
            _ = &mut deadline => return Err(PluginError::TimedOut(cmd, limit)),
        }
    };
    let status = status.map_err(|e| PluginError::Start(cmd.clone(), e.kind().to_string()))?;
    // It finished by itself: whatever it left running in its group is its own business, as
    // with kubectl.
    guard.0 = None;
    if !status.success() {
        return Err(PluginError::Failed(cmd, status.code()));
    }
    parse(&cmd, &out)
}

/// When to ask the plugin again: ahead of the expiry by a minute, or by half the token's
/// life when that is shorter, so a slow plugin refreshes while the old token still works.
pub fn refresh_at(obtained: Timestamp, expires: Timestamp) -> Timestamp {
    let life = expires.duration_since(obtained);
    let ahead = std::cmp::min(k8s_openapi::jiff::SignedDuration::from_secs(60), life / 2)
        .max(k8s_openapi::jiff::SignedDuration::ZERO);
    expires - ahead
}

/// The `Authorization` header of one cluster's requests, replaced when a refresh lands.
#[derive(Clone, Default)]
pub struct Bearer(Arc<RwLock<Option<HeaderValue>>>);

impl Bearer {
    pub fn set(&self, token: &str) {
        let Ok(mut value) = HeaderValue::try_from(format!("Bearer {token}")) else {
            return;
        };
        value.set_sensitive(true);
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(value);
        }
    }

    /// Puts the current header on a request (called for every request of the client).
    pub fn apply<B>(&self, mut request: Request<B>) -> Request<B> {
        if let Some(value) = self.0.read().ok().and_then(|v| v.clone()) {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_yaml_and_refuses_empty() {
        let json = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
            "status":{"token":"t0k","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        let c = parse("p", json).unwrap();
        assert_eq!(c.token.as_deref(), Some("t0k"));
        assert_eq!(c.expires.unwrap().to_string(), "2030-01-01T00:00:00Z");
        let yaml = b"apiVersion: client.authentication.k8s.io/v1\nkind: ExecCredential\nstatus:\n  clientCertificateData: CERT\n  clientKeyData: KEY\n";
        assert!(parse("p", yaml).unwrap().identity.is_some());
        assert_eq!(
            parse("p", br#"{"status":{}}"#).unwrap_err(),
            PluginError::Empty("p".into())
        );
        assert!(matches!(
            parse("p", b"\x00\x01 not a credential"),
            Err(PluginError::Unreadable(..))
        ));
    }

    #[test]
    fn refreshes_ahead_of_expiry() {
        let t0: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let hour = t0 + k8s_openapi::jiff::SignedDuration::from_secs(3600);
        assert_eq!(
            refresh_at(t0, hour),
            hour - k8s_openapi::jiff::SignedDuration::from_secs(60)
        );
        let short = t0 + k8s_openapi::jiff::SignedDuration::from_secs(4);
        assert_eq!(
            refresh_at(t0, short),
            t0 + k8s_openapi::jiff::SignedDuration::from_secs(2)
        );
    }

    fn plugin(script: &str) -> ExecConfig {
        ExecConfig {
            api_version: Some("client.authentication.k8s.io/v1".into()),
            command: Some("/bin/sh".into()),
            args: Some(vec!["-c".into(), script.into()]),
            env: None,
            drop_env: None,
            install_hint: None,
            interactive_mode: None,
            provide_cluster_info: false,
            cluster: None,
            other: Default::default(),
        }
    }

    /// Live processes (not zombies) whose command line holds `marker`.
    fn running(marker: &str) -> usize {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(marker))
                    .unwrap_or(false)
            })
            .count()
    }

    async fn until_gone(marker: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if running(marker) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_plugin_answers_with_its_stderr_discarded_and_sees_exec_info() {
        let exec = plugin(
            r#"echo "stderr text" >&2; case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) ;; *) exit 3;; esac
               printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"abc"}}'"#,
        );
        let c = run(&exec, Duration::from_secs(5), |_| {}).await.unwrap();
        assert_eq!(c.token.as_deref(), Some("abc"));
        let failing = plugin("echo 'secret-ish text' >&2; exit 7");
        let e = run(&failing, Duration::from_secs(5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(e, PluginError::Failed("sh".into(), Some(7)));
        assert!(!e.to_string().contains("secret-ish"));
    }

    #[tokio::test]
    async fn a_hung_plugin_is_stopped_at_its_limit_with_everything_it_started() {
        let marker = "987650";
        let exec = plugin(&format!("sleep {marker} & sleep {marker}; wait"));
        let mut progress = Vec::new();
        let e = run(&exec, Duration::from_millis(2500), |d| {
            progress.push(d.as_secs())
        })
        .await
        .unwrap_err();
        assert_eq!(
            e,
            PluginError::TimedOut("sh".into(), Duration::from_millis(2500))
        );
        assert_eq!(progress, [1, 2], "progress every second");
        assert!(
            until_gone(marker).await,
            "the plugin's processes are left running"
        );
    }

    #[tokio::test]
    async fn dropping_the_wait_kills_the_plugin() {
        let marker = "987651";
        let exec = plugin(&format!("sleep {marker} & sleep {marker}; wait"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let task = tokio::spawn(async move {
            run(&exec, Duration::from_secs(600), |_| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            })
            .await
        });
        rx.await.unwrap();
        assert_eq!(running(marker), 3, "the shell and its two sleeps");
        task.abort();
        assert!(
            until_gone(marker).await,
            "the plugin's processes are left running"
        );
    }

    #[test]
    fn a_credential_debug_print_shows_no_value() {
        let c = Credential {
            token: Some("s3cret-token".into()),
            identity: Some(("CERT".into(), "KEY-s3cret".into())),
            expires: None,
        };
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
