//! Every panel, rendered through the real drawing code into ratatui's TestBackend and compared
//! with reviewed snapshots (insta). Run `cargo insta review` after an intended change.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshtop::app::state::App;
use meshtop::sources::demo::DemoSim;
use meshtop::theme::{self, Theme};
use meshtop::topology::derive::derive;
use meshtop::topology::model::Topology;
use meshtop::ui;
use ratatui::backend::TestBackend;
use ratatui::style::Modifier;
use ratatui::Terminal;

fn app(theme_name: &str) -> App {
    let mut sim = DemoSim::new(3);
    let _ = sim.drain();
    let topology = Arc::new(derive(sim.world()));
    let (themes, _) = theme::discover(None);
    let index = themes.iter().position(|t| t.name == theme_name).unwrap();
    let mut app = App::new(themes, index, "demo · seed 3".into(), false);
    app.on_topology(topology, Vec::new());
    app.now = 0;
    app
}

fn select(app: &mut App, id: &str) {
    assert!(app.select_node(id), "no node {id}");
}

/// A key press, with what the runtime would answer: the simulator's access checks.
fn key(app: &mut App, c: char) {
    use meshtop::app::state::Command;
    use meshtop::failover::apply::Progress;
    use meshtop::failover::preflight::{Check, Verdict};
    if let Some(Command::Access(plan)) =
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    {
        app.on_progress(Progress::Checked {
            plan,
            checks: vec![Check {
                name: "writes permitted".into(),
                verdict: Verdict::Pass,
                reason: "simulated mesh: every write is allowed".into(),
            }],
        });
    }
}

fn render(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    render(app, width, height).backend().to_string()
}

#[test]
fn mesh_panel_shows_the_cluster_health_matrix() {
    let mut app = app("dark");
    select(&mut app, "mesh:mesh-alpha");
    insta::assert_snapshot!(screen(&mut app, 140, 40));
}

#[test]
fn network_panel() {
    let mut app = app("dark");
    select(&mut app, "net:mesh-alpha/network-west");
    insta::assert_snapshot!(screen(&mut app, 140, 36));
}

#[test]
fn cluster_panel_of_a_remote_shows_its_wiring() {
    let mut app = app("dark");
    select(&mut app, "cluster:east-2");
    insta::assert_snapshot!(screen(&mut app, 140, 40));
}

#[test]
fn control_plane_panel() {
    let mut app = app("dark");
    select(&mut app, "cp:east-1/istio-system/istiod");
    insta::assert_snapshot!(screen(&mut app, 140, 40));
}

#[test]
fn gateway_panel() {
    let mut app = app("dark");
    select(&mut app, "gw:west-1/istio-system/istio-eastwestgateway");
    insta::assert_snapshot!(screen(&mut app, 140, 36));
}

#[test]
fn namespace_panel_compares_the_tenant_across_clusters() {
    let mut app = app("dark");
    select(&mut app, "ns:east-1/checkout");
    insta::assert_snapshot!(screen(&mut app, 140, 36));
}

#[test]
fn service_panel_shows_endpoint_distribution() {
    let mut app = app("dark");
    select(&mut app, "svc:east-1/payments/api");
    insta::assert_snapshot!(screen(&mut app, 140, 40));
}

#[test]
fn failover_modal_shows_plan_and_preflight() {
    let mut app = app("dark");
    select(&mut app, "cluster:east-2");
    key(&mut app, 'f');
    insta::assert_snapshot!(screen(&mut app, 140, 44));
}

#[test]
fn help_is_generated_from_the_key_map() {
    let mut app = app("dark");
    key(&mut app, '?');
    let text = screen(&mut app, 120, 40);
    for binding in meshtop::app::action::KEYMAP {
        assert!(
            text.contains(binding.help),
            "help lacks {:?}:\n{text}",
            binding.help
        );
    }
    insta::assert_snapshot!(text);
}

#[test]
fn filter_keeps_matches_and_their_ancestors() {
    let mut app = app("dark");
    key(&mut app, '/');
    for c in "fraud".chars() {
        key(&mut app, c);
    }
    let text = screen(&mut app, 120, 30);
    assert!(text.contains("fraud-check"));
    assert!(!text.contains("ledger"), "non-matching services are hidden");
    assert!(
        text.contains("Service payments/fraud-check"),
        "cursor lands on the first match"
    );
}

#[test]
fn small_terminals_get_a_compact_layout_or_a_clear_message() {
    let mut app = app("dark");
    let compact = screen(&mut app, 40, 10);
    assert!(compact.contains("mesh-alpha"), "{compact}");
    insta::assert_snapshot!("compact_40x10", compact);
    let tiny = screen(&mut app, 20, 5);
    assert!(tiny.contains("too small"), "{tiny}");
    // Degenerate sizes must not panic either.
    for (w, h) in [(1, 1), (0, 0), (80, 3), (3, 80)] {
        let _ = render(&mut app, w, h);
    }
}

#[test]
fn light_theme_renders_the_same_content() {
    let mut dark = app("dark");
    let mut light = app("light");
    select(&mut dark, "svc:east-1/payments/api");
    select(&mut light, "svc:east-1/payments/api");
    // Everything but the header line (which names the theme) is identical.
    let body = |s: String| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        body(screen(&mut dark, 140, 40)),
        body(screen(&mut light, 140, 40))
    );
}

#[test]
fn mono_selection_is_visible_without_colour() {
    let mut app = app("mono");
    select(&mut app, "mesh:mesh-alpha");
    let terminal = render(&mut app, 120, 30);
    let buffer = terminal.backend().buffer();
    // Row 2 is the first tree row (header, border): the selected mesh node.
    let cell = &buffer[(3, 2)];
    assert!(cell.modifier.contains(Modifier::REVERSED), "{cell:?}");
    let mono = Theme::builtin("mono").unwrap();
    assert!(mono.reverse_selection);
}

/// An attempt the audit log shows stopped half-way is offered at start: resume or roll back,
/// each through the same review.
#[test]
fn an_unfinished_failover_is_offered_for_resume_or_rollback() {
    use meshtop::app::state::{Command, Modal};
    use meshtop::failover::plan::{self, Subject};
    let mut sim = DemoSim::new(3);
    let _ = sim.drain();
    let t = derive(sim.world());
    let p = plan::plan(&t, &Subject::Cluster("east-2".into()), None, None).unwrap();
    let log = [
        serde_json::json!({"time": 1, "attempt": "A1", "user": "ops@host", "mode": "live",
            "context": "east-2", "event": "start", "plan": p}),
        serde_json::json!({"time": 2, "attempt": "A1", "user": "ops@host", "mode": "live",
            "context": "east-2", "event": "step", "index": 0, "object": "x", "path": "/p",
            "before": "a", "after": "b", "result": "ok"}),
        serde_json::json!({"time": 3, "attempt": "A1", "user": "ops@host", "mode": "live",
            "context": "east-2", "event": "step", "index": 1, "object": "x", "path": "/p",
            "before": null, "after": null, "result": "the API server did not answer within 10s"}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let attempts = meshtop::failover::audit::attempts_of(&log);
    let pending: Vec<_> = meshtop::failover::audit::pending(&attempts)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(pending.len(), 1);

    let mut app = app("dark");
    app.on_history(pending.clone(), None);
    let text = screen(&mut app, 140, 40);
    assert!(text.contains("Unfinished failover"), "{text}");
    assert!(text.contains("stopped after 1 of"), "{text}");
    assert!(text.contains("Step 2 failed"), "{text}");
    let resume = app.on_key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE));
    assert!(matches!(resume, Some(Command::Access(_))));
    match &app.modal {
        Some(Modal::Failover(m)) => {
            assert_eq!(m.resumes.as_deref(), Some("A1"));
            assert_eq!(m.plan, p);
        }
        _ => panic!("the review of the resume"),
    }

    let mut app = app_with_history(pending);
    let rollback = app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::NONE));
    assert!(matches!(rollback, Some(Command::Access(_))));
    match &app.modal {
        Some(Modal::Failover(m)) => {
            assert_eq!(m.undoes.as_deref(), Some("A1"));
            assert!(m.is_undo);
            // The written step and the failed one (its write may have landed), reverted.
            assert_eq!(m.plan.changes[0], p.changes[1].inverse());
            assert_eq!(m.plan.changes[1], p.changes[0].inverse());
        }
        _ => panic!("the review of the rollback"),
    }
}

fn app_with_history(pending: Vec<meshtop::failover::audit::Attempt>) -> App {
    let mut app = app("dark");
    app.on_history(pending, None);
    app
}

/// The dashboard on `topology`, dark theme, clock at 0.
fn app_on(topology: Arc<Topology>) -> App {
    let (themes, _) = theme::discover(None);
    let index = themes.iter().position(|t| t.name == "dark").unwrap();
    let mut app = App::new(themes, index, "demo · seed 3".into(), false);
    app.on_topology(topology, Vec::new());
    app.now = 0;
    app
}

/// The demo after `steps` seconds of its story.
fn app_after(steps: u64) -> App {
    let mut sim = DemoSim::new(3);
    for _ in 0..steps {
        sim.step();
    }
    let _ = sim.drain();
    let topology = Arc::new(derive(sim.world()));
    app_on(topology)
}

#[test]
fn federation_pair_panel_shows_both_directions_and_a_rotated_root() {
    // At 25 s mesh-beta has rotated its root and mesh-alpha has not imported the new one yet.
    let mut app = app_after(25);
    select(&mut app, "fedpair:mesh-alpha|mesh-beta");
    let s = screen(&mut app, 150, 44);
    assert!(s.contains("old root only"), "{s}");
    assert!(s.contains("mesh-beta's root was rotated"), "{s}");
    insta::assert_snapshot!(s);
}

#[test]
fn federation_node_and_import_panel_show_trust_and_where_the_service_runs() {
    let mut app = app("dark");
    select(&mut app, "fed");
    let s = screen(&mut app, 150, 36);
    assert!(
        s.contains("mesh-alpha") && s.contains("beta.example"),
        "{s}"
    );
    insta::assert_snapshot!("federation_node", s);
    select(
        &mut app,
        "fedimp:mesh-alpha/east-1/checkout/orders-mesh-beta",
    );
    let s = screen(&mut app, 150, 36);
    assert!(
        s.contains("Where it runs: orders/orders in mesh-beta"),
        "{s}"
    );
    insta::assert_snapshot!("federation_import", s);
    // The exported service's own panel names who imports it.
    select(&mut app, "svc:beta-1/orders/orders");
    let s = screen(&mut app, 150, 36);
    assert!(
        s.contains("mesh-alpha (ServiceEntry east-1: checkout/orders-mesh-beta"),
        "{s}"
    );
}

/// The demo with three more contexts that never answered: one refuses connections, one's
/// credentials are refused, one waits for its credential plugin.
fn app_with_unreached() -> App {
    use meshtop::topology::snapshot::{Connection, Update, CREDENTIALS_NOTE};
    let mut sim = DemoSim::new(3);
    let _ = sim.drain();
    let mut store = sim.world().clone();
    let at = std::time::SystemTime::UNIX_EPOCH;
    for (context, connection) in [
        ("dead", Connection::Down("connection refused".into())),
        (
            "expired",
            Connection::AuthError("certificate expired on 2025-01-31".into()),
        ),
        ("slow", Connection::Connecting),
    ] {
        let context = context.to_string();
        store.apply(
            Update::Connection {
                context,
                connection,
            },
            at,
        );
    }
    store.apply(
        Update::Note {
            context: "slow".into(),
            topic: CREDENTIALS_NOTE.into(),
            note: Some("credential plugin running for 12 s".into()),
        },
        at,
    );
    let topology = Arc::new(derive(&store));
    app_on(topology)
}

#[test]
fn clusters_never_reached_are_a_group_of_their_own_with_why() {
    let mut app = app_with_unreached();
    let in_meshes: usize = app
        .topology
        .meshes
        .iter()
        .map(|m| m.clusters().count())
        .sum();
    select(&mut app, "unreached");
    let s = screen(&mut app, 160, 40);
    assert!(
        s.contains(&format!(
            " 2 meshes · {in_meshes} clusters · 3 not connected · demo"
        )),
        "counted apart in the header:\n{s}"
    );
    assert!(s.contains("not connected 3 clusters"), "{s}");
    assert!(s.contains("dead down · connection refused"), "{s}");
    assert!(
        s.contains("expired auth error · certificate expired on 2025-01-31"),
        "{s}"
    );
    assert!(
        s.contains("slow connecting · credential plugin running for 12 s"),
        "{s}"
    );
    assert!(!s.contains("unknown"), "no mesh or network `unknown`:\n{s}");
    insta::assert_snapshot!(s);
    // A cluster of the group shows the cluster panel, with why it is not connected.
    select(&mut app, "cluster:dead");
    let s = screen(&mut app, 160, 40);
    assert!(s.contains("Cluster dead"), "{s}");
    assert!(
        s.contains("API server unreachable: connection refused"),
        "{s}"
    );
    assert!(!s.contains("f failover"), "nothing to fail over: {s}");
    insta::assert_snapshot!("not_connected_cluster_panel", s);
    key(&mut app, 'f');
    let s = screen(&mut app, 160, 40);
    assert!(s.contains("dead was never reached"), "{s}");
}

/// A cluster selected while it connects stays selected when it goes live and moves into its
/// mesh; the group goes when it is empty.
#[test]
fn a_connecting_cluster_keeps_the_cursor_when_it_joins_its_mesh() {
    use meshtop::app::tree::NodeRef;
    use meshtop::topology::snapshot::{Connection, Update};
    let mut sim = DemoSim::new(3);
    let _ = sim.drain();
    let mut store = sim.world().clone();
    // beta-1 as at start: its first LISTs under way, never live yet.
    let beta = store.cluster_mut("beta-1");
    beta.connection = Connection::Connecting;
    beta.reached = false;
    beta.version += 1;
    let mut app = app("dark");
    app.on_topology(Arc::new(derive(&store)), Vec::new());
    assert!(app.topology.meshes.iter().all(|m| m.id != "mesh-beta"));
    select(&mut app, "cluster:beta-1");
    let s = screen(&mut app, 140, 40);
    assert!(s.contains("1 mesh · 4 clusters · 1 not connected"), "{s}");
    assert!(s.contains("beta-1 connecting"), "{s}");

    store.apply(
        Update::Connection {
            context: "beta-1".into(),
            connection: Connection::Live,
        },
        std::time::SystemTime::UNIX_EPOCH,
    );
    app.on_topology(Arc::new(derive(&store)), Vec::new());
    let s = screen(&mut app, 140, 40);
    assert_eq!(app.selected(), Some(NodeRef::Cluster("beta-1".into())));
    assert_eq!(
        app.tree_state.selected(),
        ["mesh:mesh-beta", "net:mesh-beta/beta-net", "cluster:beta-1"]
    );
    assert!(s.contains("2 meshes · 5 clusters · demo"), "{s}");
    assert!(!s.contains("not connected"), "{s}");
}
