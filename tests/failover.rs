//! Failover on the simulated mesh: the plan, its pre-flight checks, applying it through the same
//! JSON patches the API server would apply, verification and undo.

use meshtop::failover::apply::verify;
use meshtop::failover::plan::{plan, targets, Op, PlanKind, Subject};
use meshtop::failover::preflight::{blocking, preflight, Verdict};
use meshtop::sources::demo::DemoSim;
use meshtop::topology::derive::derive;

fn sim() -> DemoSim {
    let mut sim = DemoSim::new(11);
    let _ = sim.drain();
    sim
}

#[test]
fn repointing_a_remote_plans_service_webhook_annotation_and_restarts() {
    let sim = sim();
    let t = derive(sim.world());
    let subject = Subject::Cluster("east-2".into());
    assert_eq!(
        targets(&t, &subject)[0],
        "west-1/istio-system/istiod",
        "synced standby first"
    );
    let p = plan(&t, &subject, None, None).unwrap();
    assert_eq!(p.kind, PlanKind::RepointRemote);
    assert_eq!(p.from, "east-1/istio-system/istiod");
    let svc = &p.changes[0];
    assert_eq!(
        (svc.kind.as_str(), svc.name.as_str()),
        ("Service", "istiod")
    );
    assert!(matches!(&svc.op, Op::Set { path, to: Some(to), .. }
        if path == "/spec/externalName" && to == "eastwest.west-1.mesh.example"));
    let hooks = p
        .changes
        .iter()
        .filter(|c| c.kind == "MutatingWebhookConfiguration")
        .count();
    assert_eq!(hooks, 2, "every injector webhook with a URL");
    assert!(p.changes.iter().any(|c| c.kind == "Namespace"
        && matches!(&c.op, Op::Set { to: Some(to), .. } if to == "west-1")));
    assert!(p.changes.iter().any(|c| c.op == Op::Restart));
    let checks = preflight(&t, &p, false);
    assert!(!blocking(&checks), "{checks:#?}");
}

#[test]
fn a_target_without_the_remote_secret_fails_preflight() {
    let sim = sim();
    let t = derive(sim.world());
    // west-2 is served by the external istiod; east-1 holds no remote secret for it.
    let p = plan(
        &t,
        &Subject::Cluster("west-2".into()),
        Some("east-1/istio-system/istiod"),
        None,
    )
    .unwrap();
    let checks = preflight(&t, &p, false);
    let synced = checks
        .iter()
        .find(|c| c.name == "target synced with cluster")
        .unwrap();
    assert_eq!(synced.verdict, Verdict::Fail);
    assert!(
        synced
            .reason
            .contains("client claims to be in cluster west-2"),
        "{}",
        synced.reason
    );
    assert!(blocking(&checks));
}

#[test]
fn read_only_blocks_every_plan() {
    let sim = sim();
    let t = derive(sim.world());
    let p = plan(&t, &Subject::Cluster("east-2".into()), None, None).unwrap();
    let checks = preflight(&t, &p, true);
    assert!(checks
        .iter()
        .any(|c| c.name == "writes allowed" && c.verdict == Verdict::Fail));
}

#[test]
fn applying_moves_the_cluster_and_undo_restores_every_object() {
    let mut sim = sim();
    let before = derive(sim.world());
    let p = plan(&before, &Subject::Cluster("east-2".into()), None, None).unwrap();
    let objects_before = sim.world().clusters[1].clone();
    assert_eq!(objects_before.context, "east-2");
    for change in &p.changes {
        sim.write(change).unwrap();
    }
    let after = derive(sim.world());
    assert_eq!(
        after.cluster("east-2").unwrap().served_by,
        vec![p.to.clone()]
    );
    let msg = verify(&after, &p).expect("verified");
    assert!(msg.contains("proxies connected"), "{msg}");
    assert!(
        verify(&before, &p).is_err(),
        "verification fails when nothing moved"
    );

    let undo = p.inverse();
    assert!(!blocking(&preflight(&after, &undo, false)));
    for change in &undo.changes {
        sim.write(change).unwrap();
    }
    let restored = derive(sim.world());
    assert_eq!(
        restored.cluster("east-2").unwrap().served_by,
        vec![p.from.clone()]
    );
    let now = &sim.world().clusters[1];
    assert_eq!(now.services, objects_before.services);
    assert_eq!(now.namespaces, objects_before.namespaces);
    assert_eq!(now.webhooks, objects_before.webhooks);
}

#[test]
fn a_change_made_meanwhile_by_someone_else_fails_the_step() {
    let mut sim = sim();
    let t = derive(sim.world());
    let p = plan(&t, &Subject::Cluster("east-2".into()), None, None).unwrap();
    sim.write(&p.changes[0]).unwrap();
    // Applying the same step again: its `test` of the old value no longer holds.
    let err = sim.write(&p.changes[0]).unwrap_err();
    assert!(err.contains("patch rejected"), "{err}");
}

#[test]
fn switching_revision_relabels_namespaces_of_a_primary() {
    let mut sim = sim();
    let t = derive(sim.world());
    let p = plan(
        &t,
        &Subject::ControlPlane("east-1/istio-system/istiod-canary".into()),
        None,
        None,
    )
    .unwrap();
    assert_eq!(p.kind, PlanKind::SwitchRevision);
    assert_eq!(p.to, "east-1/istio-system/istiod");
    // checkout (istio.io/rev=canary) moves to the default revision.
    assert!(p.changes.iter().any(|c| c.name == "checkout"
        && matches!(&c.op, Op::Set { from: Some(f), to: Some(t), .. } if f == "canary" && t == "default")));
    for change in &p.changes {
        sim.write(change).unwrap();
    }
    let after = derive(sim.world());
    let ns = after
        .cluster("east-1")
        .unwrap()
        .namespaces
        .iter()
        .find(|n| n.name == "checkout")
        .unwrap();
    assert_eq!(ns.revision.as_deref(), Some("default"));
}

#[test]
fn the_demo_story_loses_east_1s_istiod_and_its_remote_goes_down() {
    let mut sim = sim();
    for _ in 0..145 {
        let _ = sim.step();
    }
    let t = derive(sim.world());
    let east2 = t.cluster("east-2").unwrap();
    assert_eq!(east2.health, meshtop::topology::model::Health::Down);
    assert!(t
        .findings_for(&meshtop::topology::model::NodeId::cluster("east-2"))
        .any(|f| f.message.contains("only control plane")));
    // The way out: fail over to west-1, whose checks pass.
    let p = plan(&t, &Subject::Cluster("east-2".into()), None, None).unwrap();
    assert_eq!(p.to, "west-1/istio-system/istiod");
    assert!(!blocking(&preflight(&t, &p, false)));
}

#[test]
fn the_simulator_never_sends_a_secret_value() {
    use meshtop::topology::snapshot::{KubeObject, Update};
    let mut sim = DemoSim::new(2);
    let mut updates = sim.drain();
    updates.extend(sim.step());
    let secrets: Vec<_> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Apply { object, .. } => match object.as_ref() {
                KubeObject::Secret(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(!secrets.is_empty(), "the demo has remote secrets");
    for s in secrets {
        let data = s.data.unwrap_or_default();
        assert!(!data.is_empty(), "keys are kept");
        assert!(
            data.values().all(|v| v.0.is_empty()),
            "{:?}",
            s.metadata.name
        );
    }
}
