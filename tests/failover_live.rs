//! Failover on real clusters: `testenv/`'s API servers, istiod processes and simulated
//! sidecars. A remote is repointed to another primary and back; the objects change exactly as
//! planned, the sidecars move to the target istiod, undo restores every object; pre-flight
//! blocks with its reasons; the Lease refuses a second failover; an object changed since the
//! plan stops everything; an API server stopped mid-apply leaves an attempt that is resumed or
//! rolled back.
//!
//! Every test changes the environment, so they hold one lock; each puts the environment back
//! as it found it (undo), and a guard undoes what a failing test left behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use common::live::{restricted_kubeconfig, Live};
use common::testenv::{get_local, injected_pods, syncz, testenv, wait_for, TestEnv};
use meshtop::failover::apply::{execute, Progress, Run};
use meshtop::failover::audit::{self, AuditLog};
use meshtop::failover::kube::{KubeWriter, Target, LEASE_NAME};
use meshtop::failover::plan::{self, Change, Plan, Subject};
use meshtop::failover::preflight::Check;
use meshtop::failover::writer::{Lock, Snapshot, Writer};
use meshtop::topology::model::Topology;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The remote cluster, the context of the istiod serving it, and another primary to move to.
fn roles(env: &TestEnv) -> Result<(String, String, String)> {
    // (`istiod.json` calls the default topology's remote `config`: `remotes()` takes both.)
    let remote = env
        .remotes()
        .into_iter()
        .find(|c| env.istiod[c].control_plane_cluster != *c)
        .context("the environment has a remote cluster")?;
    let home = env.istiod[&remote].control_plane_cluster.clone();
    let target = env
        .contexts
        .iter()
        .find(|c| env.istiod[*c].role == "primary" && **c != home)
        .cloned()
        .context("another primary")?;
    Ok((remote, home, target))
}

/// The pid of a testenv process (first line of its pid file).
fn pid_of(env: &TestEnv, name: &str) -> Result<String> {
    let path = env.state_dir.join("pids").join(format!("{name}.pid"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| l.parse::<u32>().is_ok())
        .with_context(|| format!("no pid in {}", path.display()))
}

/// A scratch directory per test: its audit log, snapshots and meshtop's log.
struct Scratch {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Scratch {
    fn new(env: &TestEnv, name: &str) -> Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("meshtop-failover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch {
            dir,
            kubeconfig: env.kubeconfig.clone(),
        })
    }

    fn audit(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn log(&self) -> AuditLog {
        AuditLog::new(Some(self.audit()), "live")
    }

    /// Runs the meshtop binary with this scratch's audit log.
    fn meshtop(&self, args: &[&str]) -> Output {
        self.meshtop_with(&self.kubeconfig.display().to_string(), args)
    }

    fn meshtop_with(&self, kubeconfig: &str, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_meshtop"))
            .env("KUBECONFIG", kubeconfig)
            .arg("--audit-log")
            .arg(self.audit())
            .arg("--log-file")
            .arg(self.dir.join("meshtop.log"))
            .args(["--timeout", "20"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("meshtop runs");
        eprintln!(
            "$ meshtop {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Undoes, newest first, every attempt of this scratch's audit log that is not undone yet: a
/// failing test leaves the environment as it found it for the next one.
impl Drop for Scratch {
    fn drop(&mut self) {
        for _ in 0..4 {
            let attempts = self.log().attempts().unwrap_or_default();
            if audit::latest_undoable(&attempts).is_none() {
                return;
            }
            let out = self.meshtop(&["undo", "--yes"]);
            if !out.status.success() {
                return;
            }
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a test compares: an object without what the API server changes on any write.
fn normalized(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.remove("generation");
    }
    v
}

/// A Deployment without its status, revision and the restart stamp (restarts are redone on
/// undo, so proxies reconnect; they cannot be "restored").
fn normalized_deployment(d: &Deployment) -> Value {
    let mut v = normalized(serde_json::to_value(d).unwrap_or_default());
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(a) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove("deployment.kubernetes.io/revision");
    }
    if let Some(a) = v
        .pointer_mut("/spec/template/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove("kubectl.kubernetes.io/restartedAt");
    }
    // The map a first restart created to hold its stamp is part of the restart too.
    if let Some(meta) = v
        .pointer_mut("/spec/template/metadata")
        .and_then(Value::as_object_mut)
    {
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.is_empty())
        {
            meta.remove("annotations");
        }
    }
    v
}

/// Every object a repoint may touch in a cluster, by `Kind namespace/name`.
async fn objects(env: &TestEnv, context: &str) -> Result<BTreeMap<String, Value>> {
    let client = env.client(context).await?;
    let mut out = BTreeMap::new();
    let lp = ListParams::default();
    for o in Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&lp)
        .await?
    {
        out.insert(
            format!(
                "MutatingWebhookConfiguration {}",
                o.metadata.name.clone().unwrap_or_default()
            ),
            normalized(serde_json::to_value(&o)?),
        );
    }
    let ns = Api::<Namespace>::all(client.clone())
        .get("istio-system")
        .await?;
    out.insert(
        "Namespace istio-system".into(),
        normalized(serde_json::to_value(&ns)?),
    );
    for o in Api::<EndpointSlice>::namespaced(client.clone(), "istio-system")
        .list(&lp)
        .await?
    {
        out.insert(
            format!(
                "EndpointSlice istio-system/{}",
                o.metadata.name.clone().unwrap_or_default()
            ),
            normalized(serde_json::to_value(&o)?),
        );
    }
    for o in Api::<Service>::namespaced(client.clone(), "istio-system")
        .list(&lp)
        .await?
    {
        out.insert(
            format!(
                "Service istio-system/{}",
                o.metadata.name.clone().unwrap_or_default()
            ),
            normalized(serde_json::to_value(&o)?),
        );
    }
    for d in Api::<Deployment>::all(client).list(&lp).await? {
        out.insert(
            format!(
                "Deployment {}/{}",
                d.metadata.namespace.clone().unwrap_or_default(),
                d.metadata.name.clone().unwrap_or_default()
            ),
            normalized_deployment(&d),
        );
    }
    Ok(out)
}

/// The resourceVersion of every object a failover could write in a cluster (and whether the
/// failover Lease exists): equal before and after means nothing was written.
async fn resource_versions(env: &TestEnv, context: &str) -> Result<BTreeMap<String, String>> {
    fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
        meta.resource_version.clone().unwrap_or_default()
    }
    fn id(kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
        format!(
            "{kind} {}/{}",
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default()
        )
    }
    let client = env.client(context).await?;
    let lp = ListParams::default();
    let mut out = BTreeMap::new();
    for o in Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&lp)
        .await?
    {
        out.insert(
            id("MutatingWebhookConfiguration", &o.metadata),
            rv(&o.metadata),
        );
    }
    for o in Api::<Namespace>::all(client.clone()).list(&lp).await? {
        out.insert(id("Namespace", &o.metadata), rv(&o.metadata));
    }
    for o in Api::<EndpointSlice>::all(client.clone()).list(&lp).await? {
        out.insert(id("EndpointSlice", &o.metadata), rv(&o.metadata));
    }
    for o in Api::<Service>::all(client.clone()).list(&lp).await? {
        out.insert(id("Service", &o.metadata), rv(&o.metadata));
    }
    for o in Api::<Deployment>::all(client.clone()).list(&lp).await? {
        out.insert(id("Deployment", &o.metadata), rv(&o.metadata));
    }
    for o in Api::<Lease>::namespaced(client, "istio-system")
        .list(&lp)
        .await?
    {
        out.insert(id("Lease", &o.metadata), rv(&o.metadata));
    }
    Ok(out)
}

/// Writes `to` (or removes, with `None`) at a JSON pointer, creating maps on the way: the
/// test's own reading of what a planned change means.
fn set_pointer(doc: &mut Value, pointer: &str, to: Option<&str>) {
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = keys.split_last().expect("a pointer");
    let mut node = doc;
    for k in parents {
        node = match node {
            Value::Array(a) => &mut a[k.parse::<usize>().expect("an index")],
            other => {
                if other.get(k).is_none() {
                    other[k.as_str()] = json!({});
                }
                &mut other[k.as_str()]
            }
        };
    }
    match (node, to) {
        (Value::Array(a), Some(v)) => a[last.parse::<usize>().expect("an index")] = json!(v),
        (Value::Object(o), Some(v)) => {
            o.insert(last.clone(), json!(v));
        }
        (Value::Object(o), None) => {
            o.remove(last);
            if o.is_empty() {
                // The API server drops an empty map.
            }
        }
        (other, _) => panic!("cannot set {pointer} in {other}"),
    }
}

/// The key [`objects`] uses for a change's object.
fn key_of(c: &Change) -> String {
    match &c.namespace {
        Some(ns) => format!("{} {ns}/{}", c.kind, c.name),
        None => format!("{} {}", c.kind, c.name),
    }
}

/// The first plan recorded in an audit log.
fn recorded_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)?;
    audit::attempts_of(&text)
        .into_iter()
        .next()
        .map(|a| a.plan)
        .context("no attempt in the audit log")
}

/// `<pod>.<namespace>` of the proxies an istiod lists for one cluster id.
async fn proxies_of(debug: &str, cluster_id: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = syncz(debug)
        .await?
        .iter()
        .filter(|r| r["cluster_id"] == cluster_id)
        .filter_map(|r| r["proxy"].as_str().map(str::to_string))
        .collect();
    out.sort();
    Ok(out)
}

/// Waits until the istiod serving `home` lists every injected pod of `cluster` and the other
/// lists none.
async fn proxies_on(env: &TestEnv, cluster: &str, on: &str, off: &str) -> Result<()> {
    let on_debug = env.istiod[on].debug.clone();
    let off_debug = env.istiod[off].debug.clone();
    let client = env.client(cluster).await?;
    wait_for(
        &format!("the proxies of {cluster} on {on}'s istiod and none on {off}'s"),
        Duration::from_secs(30),
        || {
            let (on_debug, off_debug, client) =
                (on_debug.clone(), off_debug.clone(), client.clone());
            let cluster = cluster.to_string();
            async move {
                let pods: Vec<String> = injected_pods(client).await?.into_iter().collect();
                let on = proxies_of(&on_debug, &cluster).await?;
                let off = proxies_of(&off_debug, &cluster).await?;
                Ok((!pods.is_empty() && on == pods && off.is_empty()).then_some(()))
            }
        },
    )
    .await
}

/// A kube writer for every context of the environment, as the admin user.
async fn kube_writer(env: &TestEnv) -> Result<KubeWriter> {
    let mut targets = Vec::new();
    for ctx in &env.contexts {
        targets.push(Target {
            context: ctx.clone(),
            client: env.client(ctx).await?.into(),
            user: "admin".into(),
        });
    }
    Ok(KubeWriter::new(targets, false))
}

/// meshtop's live model in this process, synced, with every control plane probed.
async fn live_synced(env: &TestEnv) -> Result<Live> {
    let mut live = Live::start(&env.kubeconfig).await?;
    live.wait_all_live(&env.contexts).await?;
    live.wait("every control plane probed", Duration::from_secs(20), |m| {
        let cps: Vec<&Value> = common::live::clusters(m)
            .into_iter()
            .flat_map(|c| c["control_planes"].as_array().into_iter().flatten())
            .collect();
        (!cps.is_empty() && cps.iter().all(|cp| !cp["connected_proxies"].is_null())).then_some(())
    })
    .await?;
    Ok(live)
}

/// The plan meshtop makes from the live model to move `remote` to `target`'s control plane.
fn repoint_plan(live: &Live, remote: &str, target: &str) -> Result<Plan> {
    let topology = live.topology.borrow().clone();
    let target_id =
        meshtop::commands::resolve_target(&topology, target).map_err(|e| anyhow::anyhow!("{e}"))?;
    plan::plan(
        &topology,
        &Subject::Cluster(remote.to_string()),
        Some(&target_id),
        None,
    )
    .map_err(anyhow::Error::msg)
}

/// Runs a plan through the executor; returns its last progress event.
async fn run_plan<W: Writer>(
    run: Run,
    writer: W,
    topology: watch::Receiver<Arc<Topology>>,
    log: AuditLog,
) -> (bool, String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(execute(
        run,
        writer,
        topology,
        log,
        Duration::from_secs(60),
        tx,
    ));
    while let Some(p) = rx.recv().await {
        if let Progress::Done { ok, message, .. } = p {
            return (ok, message);
        }
    }
    (false, "no result".into())
}

/// The remote repointed to the other primary: objects change exactly as planned, its sidecars
/// move to the target istiod, meshtop's model shows it served by the target; undo restores every
/// object field by field and the sidecars come home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repointing_a_remote_moves_its_proxies_and_undo_restores_every_object() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let (remote, home, target) = roles(env)?;
    let scratch = Scratch::new(env, "repoint")?;
    let before = objects(env, &remote).await?;

    let out = scratch.meshtop(&["failover", "--cluster", &remote, "--to", &target, "--yes"]);
    assert!(out.status.success(), "failover verified");
    assert!(stdout(&out).contains("✔ verified"), "{}", stdout(&out));

    // Objects changed exactly as the recorded plan says, and nothing else did.
    let plan = recorded_plan(&scratch.audit())?;
    assert!(
        plan.changes.iter().any(|c| c.kind == "EndpointSlice")
            && plan
                .changes
                .iter()
                .any(|c| c.kind == "MutatingWebhookConfiguration")
            && plan.changes.iter().any(|c| c.kind == "Namespace"),
        "{plan:#?}"
    );
    let mut expected = before.clone();
    for c in &plan.changes {
        if let meshtop::failover::plan::Op::Set { path, to, .. } = &c.op {
            let doc = expected
                .get_mut(&key_of(c))
                .context("planned object exists")?;
            set_pointer(doc, path, to.as_deref());
        }
    }
    let after = objects(env, &remote).await?;
    for (key, want) in &expected {
        assert_eq!(after.get(key), Some(want), "{key} after the failover");
    }
    assert_eq!(
        after.len(),
        expected.len(),
        "no object appeared or vanished"
    );

    // The sidecars moved (the istiods' own /debug/syncz), and meshtop says who serves it.
    proxies_on(env, &remote, &target, &home).await?;
    let once = scratch.meshtop(&["--once", "-o", "json"]);
    let model: Value = serde_json::from_slice(&once.stdout)?;
    let served =
        common::live::cluster(&model, &remote).context("remote in the model")?["served_by"].clone();
    assert!(
        served.to_string().contains(&format!("\"{target}/")),
        "served by the target: {served}"
    );

    // Undo restores every object, field by field.
    let out = scratch.meshtop(&["undo", "--yes"]);
    assert!(out.status.success(), "undo verified");
    let restored = objects(env, &remote).await?;
    for (key, want) in &before {
        assert_eq!(restored.get(key), Some(want), "{key} after undo");
    }
    assert_eq!(restored.len(), before.len());
    proxies_on(env, &remote, &home, &target).await?;

    // The audit log has both attempts, newest first in --list, and never a secret value.
    let list = stdout(&scratch.meshtop(&["failover", "--list"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines().next().unwrap_or_default().contains("undo:"),
        "{list}"
    );
    let audit_text = std::fs::read_to_string(scratch.audit())?;
    for secret in common::live::secret_values(env).await? {
        assert!(
            !audit_text.contains(&secret),
            "a secret value in the audit log"
        );
    }
    Ok(())
}

/// Pre-flight blocks, each with its reason, and then nothing is written: --read-only, a user
/// without patch rights (real RBAC), a target without the remote secret, a target istiod that
/// does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_blocks_with_its_reason_and_nothing_is_written() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let (remote, _home, target) = roles(env)?;
    let scratch = Scratch::new(env, "preflight")?;
    let before = objects(env, &remote).await?;
    let args = [
        "failover",
        "--cluster",
        remote.as_str(),
        "--to",
        target.as_str(),
        "--yes",
    ];
    let blocked = |out: &Output, check: &str, reason: &str| {
        let text = stdout(out);
        let line = text
            .lines()
            .find(|l| l.contains("✖ fail") && l.contains(check))
            .unwrap_or_else(|| panic!("no failing {check:?} check in:\n{text}"));
        assert!(line.contains(reason), "{check}: {line}");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing written"));
    };

    // --dry-run prints the plan and the checks and writes nothing: every resourceVersion holds.
    let versions = resource_versions(env, &remote).await?;
    let out = scratch.meshtop(&[
        "failover",
        "--cluster",
        &remote,
        "--to",
        &target,
        "--dry-run",
    ]);
    assert!(out.status.success(), "a plan that may be applied");
    assert!(stdout(&out).contains("dry run: nothing written"));
    assert!(
        stdout(&out).contains("✔ pass  writes permitted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        resource_versions(env, &remote).await?,
        versions,
        "--dry-run wrote something"
    );

    let out = scratch.meshtop(&[&["--read-only"][..], &args[..]].concat());
    blocked(&out, "writes allowed", "--read-only");

    // A ServiceAccount that may read but not patch: the API server says so.
    let restricted = restricted_kubeconfig(env, &remote).await?;
    let kubeconfig = format!("{}:{}", restricted.display(), env.kubeconfig.display());
    let out = scratch.meshtop_with(&kubeconfig, &args);
    blocked(
        &out,
        "writes permitted",
        "patch EndpointSlice istio-system/istiod",
    );

    // The target without the remote secret of the cluster.
    let target_client = env.client(&target).await?;
    let secrets: Api<Secret> = Api::namespaced(target_client.clone(), "istio-system");
    let secret = secrets
        .list(&ListParams::default().labels("istio/multiCluster=true"))
        .await?
        .items
        .into_iter()
        .find(|s| s.data.as_ref().is_some_and(|d| d.contains_key(&remote)))
        .context("the target's remote secret for the remote")?;
    let name = secret.metadata.name.clone().context("secret name")?;
    secrets.delete(&name, &DeleteParams::default()).await?;
    let clusterz = format!("{}/debug/clusterz", env.istiod[&target].debug);
    let result = async {
        wait_for(
            "the target istiod to drop the remote",
            Duration::from_secs(30),
            || {
                let (url, remote) = (clusterz.clone(), remote.clone());
                async move {
                    let (_, body) = get_local(&url).await?;
                    Ok((!body.contains(&format!("\"id\":\"{remote}\""))).then_some(()))
                }
            },
        )
        .await?;
        let out = scratch.meshtop(&args);
        blocked(
            &out,
            "target synced with cluster",
            "has no remote secret for",
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let mut restore = secret.clone();
    restore.metadata.resource_version = None;
    restore.metadata.uid = None;
    restore.metadata.creation_timestamp = None;
    restore.metadata.managed_fields = None;
    secrets.create(&PostParams::default(), &restore).await?;
    result?;
    wait_for(
        "the target istiod to sync the remote again",
        Duration::from_secs(30),
        || {
            let (url, remote) = (clusterz.clone(), remote.clone());
            async move {
                let (_, body) = get_local(&url).await?;
                let rows: Value = serde_json::from_str(&body)?;
                Ok(rows
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["id"] == remote.as_str() && r["syncStatus"] == "synced")
                    .then_some(()))
            }
        },
    )
    .await?;

    // A target istiod that does not answer (stopped): not ready.
    let pid = pid_of(env, &format!("istiod-{target}"))?;
    Command::new("kill").args(["-STOP", &pid]).status()?;
    let out = scratch.meshtop(&args);
    Command::new("kill").args(["-CONT", &pid]).status()?;
    blocked(&out, "target ready", "is not ready");

    assert_eq!(objects(env, &remote).await?, before, "nothing was written");
    assert!(!scratch.audit().exists(), "blocked plans leave no attempt");
    Ok(())
}

/// The Lease: a failover held by someone else is refused with their name; of two meshtops
/// started at once on the same cluster, one wins and the other is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_lets_one_failover_through() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let (remote, _home, target) = roles(env)?;
    let scratch = Scratch::new(env, "lease")?;
    let leases: Api<Lease> = Api::namespaced(env.client(&remote).await?, "istio-system");
    let held: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE_NAME, "annotations": {"meshtop.io/plan": "repoint remote : a → b"}},
        "spec": {"holderIdentity": "alice@ops-laptop pid 4242", "leaseDurationSeconds": 60,
                 "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())}
    }))?;
    leases.create(&PostParams::default(), &held).await?;
    let out = scratch.meshtop(&["failover", "--cluster", &remote, "--to", &target, "--yes"]);
    leases.delete(LEASE_NAME, &DeleteParams::default()).await?;
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.contains("✖ fail")
            && l.contains("no other failover")
            && l.contains("alice@ops-laptop")),
        "{text}"
    );

    // Two at once: each process gets its own audit log; exactly one verifies.
    let second = Scratch::new(env, "lease-2")?;
    let spawn = |s: &Scratch| {
        Command::new(env!("CARGO_BIN_EXE_meshtop"))
            .env("KUBECONFIG", &env.kubeconfig)
            .arg("--audit-log")
            .arg(s.audit())
            .arg("--log-file")
            .arg(s.dir.join("meshtop.log"))
            .args([
                "--timeout",
                "20",
                "failover",
                "--cluster",
                &remote,
                "--to",
                &target,
                "--yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let (a, b) = (spawn(&scratch)?, spawn(&second)?);
    let (a, b) = (a.wait_with_output()?, b.wait_with_output()?);
    let texts = [stdout(&a), stdout(&b)];
    assert_eq!(
        [a.status.success(), b.status.success()]
            .iter()
            .filter(|ok| **ok)
            .count(),
        1,
        "exactly one wins:\n{}\n---\n{}",
        texts[0],
        texts[1]
    );
    let loser = if a.status.success() {
        &texts[1]
    } else {
        &texts[0]
    };
    assert!(
        loser.contains("Lease istio-system/meshtop-failover") && loser.contains("held by")
            || loser.contains("another failover holds"),
        "the loser says who holds the lock:\n{loser}"
    );
    // The winner's guard undoes the failover; the loser wrote nothing.
    Ok(())
}

/// A change made by someone else between plan and apply: nothing is written, and the message
/// names the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_since_the_plan_stops_everything() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let (remote, _home, target) = roles(env)?;
    let scratch = Scratch::new(env, "changed")?;
    let live = live_synced(env).await?;
    let plan = repoint_plan(&live, &remote, &target)?;
    let before = objects(env, &remote).await?;

    // Someone else sets the annotation the plan is about to set.
    let namespaces: Api<Namespace> = Api::all(env.client(&remote).await?);
    let annotate = |v: Value| {
        let namespaces = namespaces.clone();
        async move {
            let patch =
                json!({"metadata": {"annotations": {"topology.istio.io/controlPlaneClusters": v}}});
            namespaces
                .patch(
                    "istio-system",
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
        }
    };
    annotate(json!("someone-else")).await?;
    let changed = objects(env, &remote).await?;
    let (ok, message) = run_plan(
        Run::new(plan),
        kube_writer(env).await?,
        live.topology.clone(),
        scratch.log(),
    )
    .await;
    annotate(Value::Null).await?;
    assert!(!ok);
    assert!(
        message.contains("nothing written")
            && message.contains("Namespace istio-system")
            && message.contains("someone-else"),
        "{message}"
    );
    assert_eq!(objects(env, &remote).await?.len(), changed.len());
    for (key, was) in &changed {
        if key != "Namespace istio-system" {
            assert_eq!(&objects(env, &remote).await?[key], was, "{key} untouched");
        }
    }
    assert_eq!(
        objects(env, &remote).await?,
        before,
        "only the other writer's change came and went"
    );
    let attempts = scratch.log().attempts().map_err(anyhow::Error::msg)?;
    assert_eq!(attempts[0].status(), "refused");
    Ok(())
}

/// Delegates to the kube writer, and stops (SIGSTOP) the cluster's API server just before the
/// write of step `stop_at`: the real API server stops mid-apply.
#[derive(Clone)]
struct StopsMidway {
    inner: KubeWriter,
    writes: Arc<AtomicUsize>,
    stop_at: usize,
    apiserver_pid: String,
}

impl Writer for StopsMidway {
    async fn access(&self, plan: &Plan) -> Vec<Check> {
        self.inner.access(plan).await
    }
    async fn lock(
        &self,
        plan: &Plan,
        attempt: &str,
        resuming: Option<&str>,
    ) -> Result<Lock, String> {
        self.inner.lock(plan, attempt, resuming).await
    }
    async fn read(&self, change: &Change) -> Result<Snapshot, String> {
        self.inner.read(change).await
    }
    async fn write(&self, change: &Change, before: &Snapshot) -> Result<Snapshot, String> {
        if self.writes.fetch_add(1, Ordering::SeqCst) == self.stop_at {
            let _ = Command::new("kill")
                .args(["-STOP", &self.apiserver_pid])
                .status();
        }
        self.inner.write(change, before).await
    }
    async fn rolled_out(&self, change: &Change) -> Result<bool, String> {
        self.inner.rolled_out(change).await
    }
}

/// The API server stops in the middle of a failover: the audit log shows where it stopped,
/// `--list` offers it, and both a resume and a rollback end with every object right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_stopped_mid_apply_is_resumed_or_rolled_back() -> Result<()> {
    let _g = LOCK.lock().await;
    let env = testenv();
    let (remote, home, target) = roles(env)?;
    let scratch = Scratch::new(env, "interrupted")?;
    let pid = pid_of(env, &format!("kube-apiserver-{remote}"))?;
    let before = objects(env, &remote).await?;
    let live = live_synced(env).await?;
    let plan = repoint_plan(&live, &remote, &target)?;
    let stopping = StopsMidway {
        inner: kube_writer(env).await?,
        writes: Arc::new(AtomicUsize::new(0)),
        stop_at: 3,
        apiserver_pid: pid.clone(),
    };

    let interrupt = |run: Run| {
        let (stopping, topology, log, pid) = (
            stopping.clone(),
            live.topology.clone(),
            scratch.log(),
            pid.clone(),
        );
        async move {
            stopping.writes.store(0, Ordering::SeqCst);
            let outcome = run_plan(run, stopping, topology, log).await;
            Command::new("kill").args(["-CONT", &pid]).status()?;
            Ok::<_, anyhow::Error>(outcome)
        }
    };

    // 1. Interrupted, then resumed.
    let (ok, message) = interrupt(Run::new(plan.clone())).await?;
    assert!(!ok && message.contains("step 4 failed"), "{message}");
    let attempts = scratch.log().attempts().map_err(anyhow::Error::msg)?;
    let stopped = audit::pending(&attempts)
        .first()
        .cloned()
        .cloned()
        .context("an unfinished attempt")?;
    assert_eq!(
        stopped.applied.len(),
        3,
        "three steps written before the stop"
    );
    assert_eq!(stopped.failed.as_ref().map(|f| f.0), Some(3));
    let list = stdout(&scratch.meshtop(&["failover", "--list"]));
    assert!(
        list.contains(&stopped.id) && list.contains("unfinished"),
        "{list}"
    );
    let writer = kube_writer(env).await?;
    let (ok, message) = run_plan(
        Run::resume(&stopped),
        writer.clone(),
        live.topology.clone(),
        scratch.log(),
    )
    .await;
    assert!(ok, "resumed and verified: {message}");
    proxies_on(env, &remote, &target, &home).await?;
    let attempts = scratch.log().attempts().map_err(anyhow::Error::msg)?;
    assert!(
        audit::pending(&attempts).is_empty(),
        "nothing left unfinished"
    );
    let resumed = attempts.last().cloned().context("the resume")?;
    let (ok, message) = run_plan(
        Run::undo(&resumed),
        writer.clone(),
        live.topology.clone(),
        scratch.log(),
    )
    .await;
    assert!(ok, "undone: {message}");
    assert_eq!(objects(env, &remote).await?, before, "back as before");

    // 2. Interrupted, then rolled back from the snapshots.
    let (ok, _) = interrupt(Run::new(plan.clone())).await?;
    assert!(!ok);
    let attempts = scratch.log().attempts().map_err(anyhow::Error::msg)?;
    let stopped = audit::pending(&attempts)
        .first()
        .cloned()
        .cloned()
        .context("an unfinished attempt")?;
    let (ok, message) = run_plan(
        Run::undo(&stopped),
        writer,
        live.topology.clone(),
        scratch.log(),
    )
    .await;
    assert!(ok, "rolled back and verified: {message}");
    assert_eq!(
        objects(env, &remote).await?,
        before,
        "every object as before"
    );
    proxies_on(env, &remote, &home, &target).await?;
    let attempts = scratch.log().attempts().map_err(anyhow::Error::msg)?;
    assert!(audit::pending(&attempts).is_empty());
    // Nothing for the guard to undo: every attempt is resumed, undone or rolled back.
    assert!(audit::latest_undoable(&attempts).is_none(), "{attempts:#?}");
    Ok(())
}

/// A primary's two namespaces switched to another revision (the environment brought up with
/// `--revisions canary`, in a state directory of its own): labels change, workloads restart,
/// the new pods carry the target revision and their sidecars connect to its istiod and leave
/// the default one; undo puts the labels back and the sidecars home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_namespaces_to_another_revision_moves_their_sidecars() -> Result<()> {
    let _g = LOCK.lock().await;
    let own = tokio::task::spawn_blocking(|| {
        common::testenv::OwnEnv::up("failover-revisions", &["--revisions", "canary"])
    })
    .await??;
    let env = &own.env;
    let primary = env.primaries().first().cloned().context("a primary")?;
    let canary = env.istiod[&primary]
        .revisions
        .get("canary")
        .cloned()
        .context("the canary istiod of the primary")?;
    let default_debug = env.istiod[&primary].debug.clone();
    let scratch = Scratch::new(env, "revision")?;
    let client = env.client(&primary).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = |ns: Namespace| ns.metadata.labels.unwrap_or_default();
    let before: BTreeMap<String, BTreeMap<String, String>> = [
        ("shop", labels(namespaces.get("shop").await?)),
        ("payments", labels(namespaces.get("payments").await?)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let to = format!("{primary}/{}", canary.service);
    let out = scratch.meshtop(&[
        "failover",
        "--cluster",
        &primary,
        "--to",
        &to,
        "--namespaces",
        "shop,payments",
        "--yes",
    ]);
    assert!(out.status.success(), "switch verified");
    for ns in ["shop", "payments"] {
        let l = labels(namespaces.get(ns).await?);
        assert_eq!(
            l.get("istio.io/rev").map(String::as_str),
            Some("canary"),
            "{ns}: {l:?}"
        );
        assert!(!l.contains_key("istio-injection"), "{ns}: {l:?}");
    }
    // checkout (the `prod` tag) and legacy were not asked to move.
    assert_eq!(
        labels(namespaces.get("checkout").await?)
            .get("istio.io/rev")
            .map(String::as_str),
        Some("prod")
    );

    // New pods carry the canary revision; the canary istiod serves them, the default does not.
    let moved = |by_rev: &BTreeMap<String, String>, rev: &str| {
        by_rev
            .iter()
            .filter(|(pod, r)| (pod.ends_with(".shop") || pod.ends_with(".payments")) && *r == rev)
            .map(|(pod, _)| pod.clone())
            .collect::<Vec<_>>()
    };
    let (canary_debug, client2) = (canary.debug.clone(), client.clone());
    let cluster_id = primary.clone();
    wait_for(
        "the moved sidecars on the canary istiod",
        Duration::from_secs(60),
        || {
            let (canary_debug, default_debug, client, cluster_id) = (
                canary_debug.clone(),
                default_debug.clone(),
                client2.clone(),
                cluster_id.clone(),
            );
            async move {
                let by_rev = common::testenv::injected_pods_by_revision(client).await?;
                let on_canary: Vec<String> = moved(&by_rev, "canary");
                let stale: Vec<String> = moved(&by_rev, "default");
                let canary_proxies = proxies_of(&canary_debug, &cluster_id).await?;
                let default_proxies = proxies_of(&default_debug, &cluster_id).await?;
                Ok((!on_canary.is_empty()
                    && stale.is_empty()
                    && on_canary.iter().all(|p| canary_proxies.contains(p))
                    && on_canary.iter().all(|p| !default_proxies.contains(p)))
                .then_some(()))
            }
        },
    )
    .await?;

    let out = scratch.meshtop(&["undo", "--yes"]);
    assert!(out.status.success(), "undo verified");
    for (ns, was) in &before {
        assert_eq!(
            &labels(namespaces.get(ns).await?),
            was,
            "{ns} labels restored"
        );
    }
    let (canary_debug, default_debug) = (canary.debug.clone(), env.istiod[&primary].debug.clone());
    wait_for(
        "the sidecars home on the default istiod",
        Duration::from_secs(60),
        || {
            let (canary_debug, default_debug, client, cluster_id) = (
                canary_debug.clone(),
                default_debug.clone(),
                client.clone(),
                primary.clone(),
            );
            async move {
                let by_rev = common::testenv::injected_pods_by_revision(client).await?;
                let home = moved(&by_rev, "default");
                let canary_proxies = proxies_of(&canary_debug, &cluster_id).await?;
                let default_proxies = proxies_of(&default_debug, &cluster_id).await?;
                Ok((!home.is_empty()
                    && moved(&by_rev, "canary").is_empty()
                    && home.iter().all(|p| default_proxies.contains(p))
                    && home.iter().all(|p| !canary_proxies.contains(p)))
                .then_some(()))
            }
        },
    )
    .await?;
    drop(scratch);
    drop(own);
    Ok(())
}
