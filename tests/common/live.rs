//! meshtop's live source and engine in the test process, observed through the documented JSON
//! schema of `--once -o json` (so tests do not depend on the model's Rust types).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use super::testenv::TestEnv;
use meshtop::config::ClusterSettings;
use meshtop::topology::model::Topology;

/// meshtop's live source and engine, in this process, on a kubeconfig.
pub struct Live {
    pub topology: watch::Receiver<Arc<Topology>>,
    pub tasks: JoinSet<()>,
}

impl Live {
    pub async fn start(kubeconfig: &Path) -> Result<Live> {
        Live::start_with(kubeconfig, &[], &BTreeMap::new()).await
    }

    /// Only `contexts` (all when empty), with per-context settings as the config file gives them.
    pub async fn start_with(
        kubeconfig: &Path,
        contexts: &[String],
        settings: &BTreeMap<String, ClusterSettings>,
    ) -> Result<Live> {
        let (targets, problems) =
            meshtop::sources::kube::resolve(Some(kubeconfig), contexts, settings).await?;
        if !problems.is_empty() {
            bail!("kubeconfig problems: {problems:?}");
        }
        Ok(Live::from_targets(targets))
    }

    /// The live source and engine on targets already resolved.
    pub fn from_targets(targets: Vec<meshtop::sources::kube::Target>) -> Live {
        let (tx, rx) = mpsc::unbounded_channel();
        let (topology_tx, topology) = watch::channel(Arc::new(Topology::default()));
        let (derived_tx, mut derived_rx) = mpsc::unbounded_channel();
        let mut tasks = meshtop::sources::kube::start(targets, tx);
        tasks.spawn(meshtop::engine::run(rx, topology_tx, derived_tx));
        tasks.spawn(async move { while derived_rx.recv().await.is_some() {} });
        Live { topology, tasks }
    }

    /// The latest model in its JSON form (the documented schema of `--once -o json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&meshtop::output::json(&self.topology.borrow())).unwrap_or_default()
    }

    /// Waits until every one of `contexts` is live (20 s at most).
    pub async fn wait_all_live(&mut self, contexts: &[String]) -> Result<()> {
        self.wait("every cluster live", Duration::from_secs(20), |m| {
            all_live(m, contexts).then_some(())
        })
        .await
    }

    /// Waits until `f` finds what it wants in the model.
    pub async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let model = self.json();
            if let Some(v) = f(&model) {
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; model clusters: {}",
                    summary(&model)
                );
            }
            let _ = tokio::time::timeout(left, self.topology.changed()).await;
        }
    }
}

/// Every cluster of the model: those of the meshes' networks, then the not-connected ones.
pub fn clusters(model: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for m in model["meshes"].as_array().into_iter().flatten() {
        for n in m["networks"].as_array().into_iter().flatten() {
            out.extend(n["clusters"].as_array().into_iter().flatten());
        }
    }
    out.extend(model["not_connected"].as_array().into_iter().flatten());
    out
}

pub fn cluster<'a>(model: &'a Value, context: &str) -> Option<&'a Value> {
    clusters(model).into_iter().find(|c| c["name"] == context)
}

pub fn summary(model: &Value) -> String {
    clusters(model)
        .iter()
        .map(|c| {
            format!(
                "{}={} {}",
                c["name"].as_str().unwrap_or("?"),
                c["connection"].as_str().unwrap_or("?"),
                c["error"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn all_live(model: &Value, contexts: &[String]) -> bool {
    contexts
        .iter()
        .all(|c| cluster(model, c).is_some_and(|c| c["connection"] == "live"))
}

/// Ready endpoints of `ns/name` per cluster in the model's merged service.
pub fn model_ready(model: &Value, ns: &str, name: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in model["meshes"].as_array().into_iter().flatten() {
        for s in m["services"].as_array().into_iter().flatten() {
            if s["namespace"] == ns && s["name"] == name {
                for e in s["endpoints"].as_array().into_iter().flatten() {
                    let c = e["cluster"].as_str().unwrap_or("").to_string();
                    *out.entry(c).or_insert(0) += e["ready"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    out
}

/// Distinctive pieces of every remote secret's values (the kubeconfigs inside carry client
/// keys and tokens), and of the admin kubeconfig's credentials.
pub async fn secret_values(env: &TestEnv) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for context in &env.contexts {
        let secrets: Api<Secret> = Api::all(env.client(context).await?);
        let lp = ListParams::default().labels("istio/multiCluster=true");
        for s in secrets.list(&lp).await?.items {
            for v in s.data.unwrap_or_default().into_values() {
                let text = String::from_utf8_lossy(&v.0).to_string();
                for line in text.lines() {
                    if let Some((_, value)) = line.split_once(": ") {
                        let value = value.trim();
                        if value.len() >= 40 {
                            out.push(value[..40].to_string());
                        }
                    }
                }
            }
        }
    }
    let kubeconfig = std::fs::read_to_string(&env.kubeconfig)?;
    for line in kubeconfig.lines() {
        if let Some((k, value)) = line.split_once(": ") {
            if k.trim().ends_with("-data") && value.trim().len() >= 40 {
                out.push(value.trim()[..40].to_string());
            }
        }
    }
    if out.is_empty() {
        bail!("found no secret values to look for: the check would prove nothing");
    }
    Ok(out)
}

/// A kubeconfig for a ServiceAccount that may read everything meshtop reads except Secrets.
pub async fn restricted_kubeconfig(env: &TestEnv, context: &str) -> Result<std::path::PathBuf> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let client = env.client(context).await?;
    let pp = kube::api::PatchParams::apply("meshtop-tests").force();
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "meshtop-no-secrets"},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "nodes", "pods", "services", "configmaps"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["security.istio.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create", "get"]}
        ]
    }))?;
    kube::Api::<ClusterRole>::all(client.clone())
        .patch("meshtop-no-secrets", &pp, &kube::api::Patch::Apply(&role))
        .await?;
    let token =
        super::testenv::service_account_token(env, context, "meshtop-viewer", "meshtop-no-secrets")
            .await?;
    let full: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&env.kubeconfig)?)?;
    let cluster = full["clusters"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == context)
        .cloned()
        .context("the context's cluster entry")?;
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [serde_json::to_value(&cluster)?],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "viewer"}}],
        "current-context": context,
    });
    let path = std::env::temp_dir().join(format!("meshtop-viewer-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
    Ok(path)
}
