//! Live mode at rest, against the real API servers and istiods of `testenv/`: after the initial
//! sync an idle meshtop LISTs nothing, opens no port-forward, and passes on no istiod probe that
//! shows nothing new; an istiod that stalls past the probe timeout shows as not answering, then
//! answers on the port-forward it had (a new one per probe is what a loaded API server and
//! istiod need least).
//!
//! The counts come from meshtop's own counters per context (`sources::kube::stats`); each test
//! renames the contexts so that its counters are its own.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use common::live::{cluster, Live};
use common::testenv::{signal, testenv, Resume, TestEnv};
use meshtop::sources::kube::{probe, stats};

/// One test at a time: a stalled istiod must not show in the idle test's window.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The control planes of one cluster in the model.
fn control_planes<'a>(model: &'a Value, context: &str) -> Vec<&'a Value> {
    cluster(model, context)
        .and_then(|c| c["control_planes"].as_array())
        .into_iter()
        .flatten()
        .collect()
}

/// Every control plane of `contexts` has answered its probe.
fn all_answered(model: &Value, contexts: &[String]) -> bool {
    contexts.iter().all(|c| {
        control_planes(model, c)
            .iter()
            .all(|cp| cp["probe_error"].is_null() && cp["connected_proxies"].is_u64())
    })
}

/// Starts meshtop's live source on the environment with contexts renamed `<prefix><context>`
/// and waits until every cluster is live and every istiod has answered.
async fn start(env: &TestEnv, prefix: &str) -> Result<(Live, Vec<String>)> {
    let kubeconfig = env.renamed_kubeconfig(prefix)?;
    let contexts: Vec<String> = env
        .contexts
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect();
    let mut live = Live::start(&kubeconfig).await?;
    live.wait_all_live(&contexts).await?;
    live.wait("every istiod answering", Duration::from_secs(30), |m| {
        all_answered(m, &contexts).then_some(())
    })
    .await?;
    Ok((live, contexts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_meshtop_lists_nothing_and_keeps_its_port_forwards() -> Result<()> {
    let env = testenv();
    let _g = ENV_LOCK.lock().await;
    let (live, contexts) = start(env, "idle-").await?;
    let primaries: Vec<String> = env
        .primaries()
        .iter()
        .map(|c| format!("idle-{c}"))
        .collect();
    let before: Vec<stats::Snapshot> = contexts.iter().map(|c| stats::snapshot(c)).collect();
    for (c, s) in contexts.iter().zip(&before) {
        assert_eq!(s.relists, 0, "{c}: relisted while syncing: {s:?}");
    }
    for p in &primaries {
        let s = stats::snapshot(p);
        assert!(
            s.port_forwards >= 1,
            "{p}: its istiod answered without a port-forward? {s:?}"
        );
    }
    // Three probe periods at rest: a kept port-forward is asked three times, and a LIST or a
    // relist of any kind in this window would be one too many.
    tokio::time::sleep(probe::INTERVAL * 3 + Duration::from_secs(1)).await;
    let model = live.json();
    assert!(
        all_answered(&model, &contexts),
        "an istiod stopped answering in the idle window"
    );
    for (c, b) in contexts.iter().zip(&before) {
        let a = stats::snapshot(c);
        assert_eq!(
            (a.lists, a.relists),
            (b.lists, 0),
            "{c}: LISTs after the initial sync (before {b:?}, after {a:?})"
        );
        assert_eq!(
            a.port_forwards, b.port_forwards,
            "{c}: a port-forward opened while idle (before {b:?}, after {a:?})"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_an_idle_istiod_that_show_nothing_new_are_not_passed_on() -> Result<()> {
    let env = testenv();
    let _g = ENV_LOCK.lock().await;
    let (_live, _) = start(env, "quiet-").await?;
    // An istiod at rest answers the same every time (its /debug/syncz rows in another order
    // each time, which must not count as news): within a few probe periods, probes are held
    // back. The first two are always passed on (the second brings rates to rest).
    for primary in env.primaries() {
        let context = format!("quiet-{primary}");
        common::testenv::wait_for(
            "a probe of an idle istiod held back",
            probe::INTERVAL * 6,
            || {
                let s = stats::snapshot(&context);
                async move { Ok((s.probes_unchanged > 0).then_some(())) }
            },
        )
        .await
        .with_context(|| format!("{context}: {:?}", stats::snapshot(&context)))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_istiod_answers_late_on_the_same_port_forward() -> Result<()> {
    let env = testenv();
    let _g = ENV_LOCK.lock().await;
    let (mut live, _) = start(env, "stall-").await?;
    let primary = env.primaries().into_iter().next().context("a primary")?;
    let context = format!("stall-{primary}");
    let before = stats::snapshot(&context);
    let pid = env.pid_of(&format!("istiod-{primary}"))?;
    signal(pid, "-STOP")?;
    let resume = Resume(pid);
    // Stalled past the probe timeout: the control plane shows as not answering.
    let error = live
        .wait(
            "the stalled istiod shown as not answering",
            probe::INTERVAL + probe::PROBE_TIMEOUT + Duration::from_secs(5),
            |m| {
                control_planes(m, &context)
                    .iter()
                    .find_map(|cp| cp["probe_error"].as_str().map(str::to_string))
            },
        )
        .await?;
    assert!(error.contains("no answer"), "unexpected error: {error}");
    drop(resume);
    live.wait("the resumed istiod answering", probe::PROBE_GIVE_UP, |m| {
        all_answered(m, std::slice::from_ref(&context)).then_some(())
    })
    .await?;
    let after = stats::snapshot(&context);
    assert_eq!(
        after.port_forwards, before.port_forwards,
        "the stalled istiod's connection was dropped and another port-forward opened \
         (before {before:?}, after {after:?})"
    );
    Ok(())
}
