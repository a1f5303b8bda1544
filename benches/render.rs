//! Speed, measured: a full frame at 200×60, re-derivation after one endpoint change and a filter
//! keystroke (the app's whole key handler, then the frame that shows it), on a generated mesh of
//! 20 clusters, 2,000 services and 100,000 endpoints.
//!
//! `cargo bench --bench render` prints criterion's figures (time per iteration).

use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshtop::app::state::App;
use meshtop::app::tree;
use meshtop::sources::demo::{DemoSim, Scale};
use meshtop::theme;
use meshtop::topology::derive::{derive, Deriver};
use meshtop::topology::snapshot::{KubeObject, Store, Update};
use meshtop::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const SCALE: Scale = Scale {
    clusters: 20,
    services: 2_000,
    endpoints_per_service_cluster: 10,
    clusters_per_service: 5,
};

fn big_store() -> Store {
    let mut sim = DemoSim::scaled(42, SCALE);
    let _ = sim.drain();
    sim.world().clone()
}

fn count_endpoints(store: &Store) -> usize {
    store
        .clusters
        .iter()
        .flat_map(|c| c.endpoint_slices.values())
        .map(|s| s.endpoints.as_ref().map(Vec::len).unwrap_or(0))
        .sum()
}

/// Flips the readiness of one endpoint in one cluster: the smallest change a watch delivers.
fn flip_one_endpoint(store: &mut Store, ready: bool) {
    let cluster = &store.clusters[7];
    let (_, slice) = cluster
        .endpoint_slices
        .iter()
        .next()
        .expect("the big mesh has endpoint slices");
    let mut slice = slice.clone();
    if let Some(ep) = slice.endpoints.as_mut().and_then(|e| e.first_mut()) {
        ep.conditions.get_or_insert_with(Default::default).ready = Some(ready);
    }
    let context = cluster.context.clone();
    store.apply(
        Update::Apply {
            context,
            object: Box::new(KubeObject::EndpointSlice(slice)),
        },
        SystemTime::now(),
    );
}

/// An app showing `topology`.
fn app_with(topology: &Arc<meshtop::topology::model::Topology>) -> App {
    let (themes, _) = theme::discover(None);
    let mut app = App::new(themes, 0, "bench".into(), false);
    app.on_topology(topology.clone(), Vec::new());
    app
}

fn benches(c: &mut Criterion) {
    let mut store = big_store();
    let endpoints = count_endpoints(&store);
    let topology = derive(&store);
    let services: usize = topology.meshes.iter().map(|m| m.services.len()).sum();
    println!(
        "model: {} clusters, {services} services, {endpoints} endpoints",
        store.clusters.len()
    );

    c.bench_function("derive/from scratch (100k endpoints)", |b| {
        b.iter(|| derive(&store))
    });

    let mut deriver = Deriver::default();
    let _ = deriver.derive(&store);
    let mut ready = false;
    c.bench_function("derive/after one endpoint change", |b| {
        b.iter(|| {
            ready = !ready;
            flip_one_endpoint(&mut store, ready);
            deriver.derive(&store)
        })
    });

    let mut app = app_with(&Arc::new(topology));
    // Open a cluster and a namespace, select a service: the richest panel.
    let c07 = app.topology.cluster("c07").expect("cluster c07");
    let ns = c07.namespaces.first().expect("a namespace in c07");
    let target = format!("svc:c07/{}/{}", ns.name, ns.services[0]);
    assert!(app.select_node(&target), "service node exists");
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("test backend");
    c.bench_function("render/full frame 200x60", |b| {
        b.iter(|| {
            terminal
                .draw(|f| ui::draw(f, &mut app))
                .expect("draw to test backend");
        })
    });

    // A new topology: its tree index is made once, then the items are built.
    c.bench_function("tree/rebuild items after a topology change", |b| {
        b.iter(|| {
            let mut index = tree::TreeIndex::new(&app.topology);
            tree::build(
                &app.topology,
                &mut index,
                "",
                app.theme(),
                app.tree_state.opened(),
            )
        })
    });
    // A filter keystroke as the app handles it (`/` opens the prompt; the handler rebuilds the
    // tree, opens every match and moves the cursor to the first): alternately typing `1` after
    // `svc-0` and deleting it again.
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    let mut typing = app_with(&app.topology);
    typing.on_key(key(KeyCode::Char('/')));
    for c in "svc-0".chars() {
        typing.on_key(key(KeyCode::Char(c)));
    }
    let mut typed = false;
    c.bench_function("filter/keystroke (key handler, svc-0 ⇄ svc-01)", |b| {
        b.iter(|| {
            typed = !typed;
            typing.on_key(key(if typed {
                KeyCode::Char('1')
            } else {
                KeyCode::Backspace
            }))
        })
    });
    // The frame after it: every match open.
    typing.on_key(key(KeyCode::Char('1')));
    c.bench_function("filter/full frame 200x60 with svc-01 typed", |b| {
        b.iter(|| {
            terminal
                .draw(|f| ui::draw(f, &mut typing))
                .expect("draw to test backend");
        })
    });

    // The tree build alone with a filter: same topology, so the index is kept (as the app keeps it).
    let mut index = tree::TreeIndex::new(&app.topology);
    c.bench_function("tree/rebuild with a filter (every node visited)", |b| {
        b.iter(|| {
            tree::build(
                &app.topology,
                &mut index,
                "svc-01",
                app.theme(),
                app.tree_state.opened(),
            )
        })
    });
}

criterion_group! {
    name = render;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(render);
