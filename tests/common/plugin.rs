//! Credential plugins and kubeconfig files for tests and benchmarks: a real plugin process
//! (a shell script) that hands out a real ServiceAccount token of the test environment, slowly,
//! never, or with a short life; kubeconfig files that split the environment's contexts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_yaml::Value as Yaml;

use super::testenv::TestEnv;

/// A scratch directory of this test process, removed at the end.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("meshtop-kubeconfig-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn full_kubeconfig(env: &TestEnv) -> Result<Yaml> {
    Ok(serde_yaml::from_str(&std::fs::read_to_string(
        &env.kubeconfig,
    )?)?)
}

/// The entry named `name` of a kubeconfig list (`clusters`, `users`, `contexts`).
pub fn entry(full: &Yaml, list: &str, name: &str) -> Result<Yaml> {
    full[list]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some(name))
        .cloned()
        .with_context(|| format!("{list} entry {name}"))
}

pub fn write_yaml(path: &Path, value: &Yaml) -> Result<()> {
    std::fs::write(path, serde_yaml::to_string(value)?)?;
    Ok(())
}

/// A kubeconfig of one context `name` reaching `context`'s cluster with `user`.
pub fn one_context(
    full: &Yaml,
    context: &str,
    name: &str,
    cluster: Yaml,
    user: Yaml,
) -> Result<Yaml> {
    let _ = entry(full, "contexts", context)?;
    Ok(serde_yaml::from_str::<Yaml>(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {name:?}\n\
         contexts:\n- name: {name:?}\n  context:\n    cluster: c-{context}\n    user: u-{context}\n"
    ))
    .map(|mut k| {
        let mut c = cluster;
        c["name"] = format!("c-{context}").into();
        let mut u = user;
        u["name"] = format!("u-{context}").into();
        k["clusters"] = Yaml::Sequence(vec![c]);
        k["users"] = Yaml::Sequence(vec![u]);
        k
    })?)
}

/// The environment's kubeconfig without `context` (its cluster is reached another way).
pub fn without(full: &Yaml, context: &str) -> Yaml {
    let mut k = full.clone();
    if let Some(list) = k["contexts"].as_sequence_mut() {
        list.retain(|c| c["name"].as_str() != Some(context));
    }
    k
}

/// A ServiceAccount token (1 h) that may read everything: what the plugins hand out.
pub async fn token(env: &TestEnv, context: &str) -> Result<String> {
    super::testenv::service_account_token(env, context, "meshtop-plugin", "cluster-admin").await
}

/// How a test plugin behaves. Every run appends a line to `runs` in its directory and writes
/// [`STDERR_MARKER`] to stderr; runs from `slow_from` on sleep `delay` seconds first.
pub struct Plugin {
    pub delay: u64,
    pub slow_from: u32,
    /// Seconds until the token it hands out expires (0: no expiry).
    pub life: u64,
}

pub const STDERR_MARKER: &str = "PLUGIN-STDERR-MARKER";
/// In every plugin's command line (its `sleep`), so its processes can be found.
pub const SLEEP_MARKER: &str = "7777";

const PLUGIN_SCRIPT: &str = r#"#!/bin/sh
echo "PLUGIN-STDERR-MARKER: a plugin's chatter, maybe a credential" >&2
echo run >> "$PLUGIN_DIR/runs"
n=$(wc -l < "$PLUGIN_DIR/runs")
if [ "$n" -ge "$PLUGIN_SLOW_FROM" ]; then sleep "$PLUGIN_DELAY.7777"; fi
exp=""
if [ "$PLUGIN_LIFE" -gt 0 ]; then
  exp=$(date -u -d "+$PLUGIN_LIFE seconds" +%Y-%m-%dT%H:%M:%SZ)
  exp=",\"expirationTimestamp\":\"$exp\""
fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"%s}}' "$(cat "$PLUGIN_DIR/token")" "$exp"
"#;

impl Plugin {
    /// Writes the plugin into `dir` and returns the kubeconfig user that runs it.
    pub fn install(&self, dir: &Path, token: &str) -> Result<Yaml> {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("plugin.sh");
        std::fs::write(&script, PLUGIN_SCRIPT)?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
        std::fs::write(dir.join("token"), token)?;
        std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o600))?;
        let env = |k: &str, v: String| serde_json::json!({"name": k, "value": v});
        let user = serde_json::json!({
            "name": "plugin",
            "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": script.display().to_string(),
                "interactiveMode": "Never",
                "env": [
                    env("PLUGIN_DIR", dir.display().to_string()),
                    env("PLUGIN_DELAY", self.delay.to_string()),
                    env("PLUGIN_SLOW_FROM", self.slow_from.to_string()),
                    env("PLUGIN_LIFE", self.life.to_string()),
                ],
            }}
        });
        Ok(serde_json::from_value(user)?)
    }
}

pub fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Live processes (not zombies) of test plugins whose directory is `dir`.
pub fn plugin_processes(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let environ = std::fs::read(e.path().join("environ"))
            .map(|t| String::from_utf8_lossy(&t).contains(&needle))
            .unwrap_or(false);
        if (text.contains(&needle) || (environ && text.contains(SLEEP_MARKER)))
            && !text.contains("cargo")
        {
            out.push(text);
        }
    }
    out
}

pub fn wait_no_plugin_processes(dir: &Path, within: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let left = plugin_processes(dir);
        if left.is_empty() {
            return Ok(());
        }
        if t0.elapsed() > within {
            bail!("plugin processes left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The environment split in two files, the last context reached through `plugin`: the main
/// file (every other context) and the plugin's file. Returns (main, plugin file, plugin dir,
/// the plugin's context).
pub async fn with_plugin(
    env: &TestEnv,
    scratch: &Scratch,
    plugin: Plugin,
) -> Result<(PathBuf, PathBuf, PathBuf, String)> {
    let full = full_kubeconfig(env)?;
    let context = env.contexts.last().cloned().context("a context")?;
    let dir = scratch.path("plugin");
    std::fs::create_dir_all(&dir)?;
    let user = plugin.install(&dir, &token(env, &context).await?)?;
    let cluster_name = entry(&full, "contexts", &context)?["context"]["cluster"].clone();
    let cluster = entry(&full, "clusters", cluster_name.as_str().unwrap_or(""))?;
    let main = scratch.path("main.yaml");
    write_yaml(&main, &without(&full, &context))?;
    let file = scratch.path("plugin.yaml");
    write_yaml(
        &file,
        &one_context(&full, &context, &context, cluster, user)?,
    )?;
    Ok((main, file, dir, context))
}

pub fn kubeconfig_var(files: &[&Path]) -> String {
    std::env::join_paths(files)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
