//! Renders the real screens (the same `ui::draw` the terminal uses, into ratatui's TestBackend)
//! and rasterises each cell with DejaVu Sans Mono into a PNG under `screenshots/`.
//!
//! Run through `screenshots/make.sh` (or `cargo run --example screenshots`).

use std::path::Path;
use std::sync::Arc;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshtop::app::state::{App, Command};
use meshtop::engine::{diff, LogEntry};
use meshtop::failover::apply::Progress;
use meshtop::failover::preflight::{Check, Verdict};
use meshtop::sources::demo::DemoSim;
use meshtop::theme;
use meshtop::topology::derive::derive;
use meshtop::topology::model::Topology;
use meshtop::ui;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

const FONT_DIR: &str = "/usr/share/fonts/truetype/dejavu";
const CELL_W: u32 = 9;
const CELL_H: u32 = 18;
const PX: f32 = 15.0;

struct Fonts<'a> {
    regular: FontRef<'a>,
    bold: FontRef<'a>,
    fallback: FontRef<'a>,
}

fn xterm(i: u8) -> [u8; 3] {
    const BASE: [[u8; 3]; 16] = [
        [0, 0, 0],
        [205, 49, 49],
        [13, 188, 121],
        [229, 229, 16],
        [36, 114, 200],
        [188, 63, 188],
        [17, 168, 205],
        [229, 229, 229],
        [102, 102, 102],
        [241, 76, 76],
        [35, 209, 139],
        [245, 245, 67],
        [59, 142, 234],
        [214, 112, 214],
        [41, 184, 219],
        [255, 255, 255],
    ];
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let i = i - 16;
            let v = |x: u8| if x == 0 { 0 } else { 55 + x * 40 };
            [v(i / 36), v((i / 6) % 6), v(i % 6)]
        }
        _ => {
            let g = 8 + (i - 232) * 10;
            [g, g, g]
        }
    }
}

fn rgb(color: Color, default: [u8; 3]) -> [u8; 3] {
    match color {
        Color::Reset => default,
        Color::Black => xterm(0),
        Color::Red => xterm(1),
        Color::Green => xterm(2),
        Color::Yellow => xterm(3),
        Color::Blue => xterm(4),
        Color::Magenta => xterm(5),
        Color::Cyan => xterm(6),
        Color::Gray => xterm(7),
        Color::DarkGray => xterm(8),
        Color::LightRed => xterm(9),
        Color::LightGreen => xterm(10),
        Color::LightYellow => xterm(11),
        Color::LightBlue => xterm(12),
        Color::LightMagenta => xterm(13),
        Color::LightCyan => xterm(14),
        Color::White => xterm(15),
        Color::Indexed(i) => xterm(i),
        Color::Rgb(r, g, b) => [r, g, b],
    }
}

fn rasterise(
    buffer: &Buffer,
    fonts: &Fonts,
    default_fg: [u8; 3],
    default_bg: [u8; 3],
    path: &Path,
) {
    let (cols, rows) = (buffer.area.width as u32, buffer.area.height as u32);
    let (w, h) = (cols * CELL_W, rows * CELL_H);
    let mut img = vec![0u8; (w * h * 3) as usize];
    let scale = PxScale::from(PX);
    for y in 0..rows {
        for x in 0..cols {
            let cell = &buffer[(x as u16, y as u16)];
            let mut fg = rgb(cell.fg, default_fg);
            let mut bg = rgb(cell.bg, default_bg);
            if cell.modifier.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            for py in 0..CELL_H {
                for px in 0..CELL_W {
                    let i = (((y * CELL_H + py) * w + x * CELL_W + px) * 3) as usize;
                    img[i..i + 3].copy_from_slice(&bg);
                }
            }
            let Some(ch) = cell.symbol().chars().next() else {
                continue;
            };
            if ch == ' ' {
                continue;
            }
            if box_drawing(&mut img, w, x * CELL_W, y * CELL_H, ch, fg) {
                continue;
            }
            let font = if cell.modifier.contains(Modifier::BOLD) {
                &fonts.bold
            } else {
                &fonts.regular
            };
            let font = if font.glyph_id(ch).0 == 0 {
                &fonts.fallback
            } else {
                font
            };
            let scaled = font.as_scaled(scale);
            let glyph = font.glyph_id(ch).with_scale_and_position(
                scale,
                ab_glyph::point(
                    (x * CELL_W) as f32,
                    (y * CELL_H) as f32 + scaled.ascent() + 1.0,
                ),
            );
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + gx as i64;
                let py = bounds.min.y as i64 + gy as i64;
                if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 {
                    return;
                }
                let i = ((py as u32 * w + px as u32) * 3) as usize;
                for c in 0..3 {
                    let base = img[i + c] as f32;
                    img[i + c] = (base + (fg[c] as f32 - base) * coverage.min(1.0)) as u8;
                }
            });
        }
    }
    let file = std::fs::File::create(path).expect("create png");
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(&img).expect("png data");
    println!("wrote {}", path.display());
}

/// Lines and blocks drawn exactly to the cell, so borders join and bars are solid.
fn box_drawing(img: &mut [u8], w: u32, x0: u32, y0: u32, ch: char, fg: [u8; 3]) -> bool {
    // (left, right, up, down) arms from the cell centre; or a shaded block.
    let arms = match ch {
        '─' => (true, true, false, false),
        '│' => (false, false, true, true),
        '┌' => (false, true, false, true),
        '┐' => (true, false, false, true),
        '└' => (false, true, true, false),
        '┘' => (true, false, true, false),
        '├' => (false, true, true, true),
        '┤' => (true, false, true, true),
        '┬' => (true, true, false, true),
        '┴' => (true, true, true, false),
        '┼' => (true, true, true, true),
        '█' | '░' | '▏' => {
            for py in 0..CELL_H {
                for px in 0..CELL_W {
                    let on = match ch {
                        '█' => true,
                        '░' => (px + py) % 3 == 0,
                        _ => px < 2,
                    };
                    if on {
                        let i = (((y0 + py) * w + x0 + px) * 3) as usize;
                        img[i..i + 3].copy_from_slice(&fg);
                    }
                }
            }
            return true;
        }
        _ => return false,
    };
    let (cx, cy) = (x0 + CELL_W / 2, y0 + CELL_H / 2);
    let mut put = |px: u32, py: u32| {
        let i = ((py * w + px) * 3) as usize;
        img[i..i + 3].copy_from_slice(&fg);
    };
    // Two pixels thick, so borders survive downscaling.
    if arms.0 {
        (x0..=cx + 1).for_each(|px| (cy..cy + 2).for_each(|py| put(px, py)));
    }
    if arms.1 {
        (cx..x0 + CELL_W).for_each(|px| (cy..cy + 2).for_each(|py| put(px, py)));
    }
    if arms.2 {
        (y0..=cy + 1).for_each(|py| (cx..cx + 2).for_each(|px| put(px, py)));
    }
    if arms.3 {
        (cy..y0 + CELL_H).for_each(|py| (cx..cx + 2).for_each(|px| put(px, py)));
    }
    true
}

/// The demo after `ticks` simulated seconds, with the event log those seconds produced.
fn demo_at(seed: u64, ticks: u64) -> (Arc<Topology>, Vec<LogEntry>) {
    let mut sim = DemoSim::new(seed);
    let _ = sim.drain();
    let start = 1_795_600_000;
    let mut previous = derive(sim.world());
    let mut log = Vec::new();
    for t in 1..=ticks {
        let _ = sim.step();
        let next = derive(sim.world());
        log.extend(diff(&previous, &next, start + t));
        previous = next;
    }
    (Arc::new(previous), log)
}

fn app(topology: Arc<Topology>, log: Vec<LogEntry>, theme_name: &str) -> App {
    let (themes, _) = theme::discover(None);
    let index = themes
        .iter()
        .position(|t| t.name == theme_name)
        .expect("theme exists");
    let mut app = App::new(themes, index, "demo · seed 7".into(), false);
    app.on_topology(topology, log);
    app.now = app
        .topology
        .clusters()
        .filter_map(|c| c.last_update)
        .max()
        .unwrap_or(0);
    app
}

fn select(app: &mut App, id: &str) {
    assert!(app.select_node(id), "no node {id}");
}

fn shoot(app: &mut App, fonts: &Fonts, name: &str) {
    let mut terminal = Terminal::new(TestBackend::new(160, 46)).expect("backend");
    terminal.draw(|f| ui::draw(f, app)).expect("draw");
    let t = app.theme();
    let default_bg = if t.name == "light" {
        [250, 250, 250]
    } else {
        [24, 24, 28]
    };
    let default_fg = if t.name == "light" {
        [32, 32, 32]
    } else {
        [208, 208, 208]
    };
    rasterise(
        terminal.backend().buffer(),
        fonts,
        default_fg,
        default_bg,
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("screenshots")
            .join(name),
    );
}

fn main() {
    let read = |f: &str| {
        std::fs::read(Path::new(FONT_DIR).join(f))
            .unwrap_or_else(|e| panic!("{FONT_DIR}/{f}: {e} (apt-get install fonts-dejavu-core)"))
    };
    let (regular, bold, fallback) = (
        read("DejaVuSansMono.ttf"),
        read("DejaVuSansMono-Bold.ttf"),
        read("DejaVuSans.ttf"),
    );
    let fonts = Fonts {
        regular: FontRef::try_from_slice(&regular).expect("font"),
        bold: FontRef::try_from_slice(&bold).expect("font"),
        fallback: FontRef::try_from_slice(&fallback).expect("font"),
    };

    // Overview: the mesh health matrix while west-1's gateway has lost its address.
    let (topology, log) = demo_at(7, 50);
    let mut overview = app(topology.clone(), log.clone(), "dark");
    select(&mut overview, "mesh:mesh-alpha");
    shoot(&mut overview, &fonts, "overview.png");

    // A service's endpoint distribution across networks and localities.
    let mut service = app(topology.clone(), log.clone(), "dark");
    select(&mut service, "svc:east-1/payments/api");
    shoot(&mut service, &fonts, "service.png");

    // The failover modal: plan and pre-flight checks for the remote east-2.
    let (calm, calm_log) = demo_at(7, 10);
    let mut failover = app(calm, calm_log, "dark");
    select(&mut failover, "cluster:east-2");
    if let Some(Command::Access(plan)) =
        failover.on_key(KeyEvent::new(KeyCode::Char('f'), KeyModifiers::NONE))
    {
        // What the simulator's writer answers (the runtime would ask it).
        failover.on_progress(Progress::Checked {
            plan,
            checks: vec![Check {
                name: "writes permitted".into(),
                verdict: Verdict::Pass,
                reason: "simulated mesh: every write is allowed".into(),
            }],
        });
    }
    shoot(&mut failover, &fonts, "failover.png");

    // The light theme.
    let mut light = app(topology, log, "light");
    select(&mut light, "cp:east-1/istio-system/istiod");
    shoot(&mut light, &fonts, "light.png");

    // Live mode on real clusters (the local test environment, when make.sh finds it running).
    if let Some(kubeconfig) = std::env::var_os("MESHTOP_SCREENSHOT_KUBECONFIG") {
        let (topology, log) = live(Path::new(&kubeconfig));
        let mut live = app(topology, log, "dark");
        live.source_label = format!("live · {} clusters", live.topology.clusters().count());
        let remote = live
            .topology
            .clusters()
            .find(|c| c.wiring.is_some())
            .or_else(|| live.topology.clusters().next())
            .map(|c| c.name.clone())
            .expect("a live cluster");
        select(&mut live, &format!("cluster:{remote}"));
        shoot(&mut live, &fonts, "live.png");

        // A live failover being confirmed: the checks the API server answered, the name typed.
        live.typed_confirmation = true;
        if let Some(Command::Access(plan)) =
            live.on_key(KeyEvent::new(KeyCode::Char('f'), KeyModifiers::NONE))
        {
            let checks = access(Path::new(&kubeconfig), &plan);
            live.on_progress(Progress::Checked { plan, checks });
        }
        for c in remote.chars() {
            live.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        shoot(&mut live, &fonts, "live-failover.png");
    }

    // Kubeconfigs as operators have them (make.sh writes them beside the test environment's):
    // one context behind a credential plugin that never answers, one whose server refuses.
    if let Some(files) = std::env::var_os("MESHTOP_SCREENSHOT_PLUGIN_KUBECONFIG") {
        let files: Vec<std::path::PathBuf> = std::env::split_paths(&files).collect();
        let (topology, log) = live_on(&files, std::time::Duration::from_secs(6));
        let mut shot = app(topology, log, "dark");
        shot.source_label = format!("live · {} clusters", shot.topology.clusters().count());
        let waiting = shot
            .topology
            .not_connected
            .first()
            .map(|c| c.name.clone())
            .expect("a cluster not connected");
        select(&mut shot, &format!("cluster:{waiting}"));
        shoot(&mut shot, &fonts, "live-not-connected.png");
    }

    // Two federated meshes on real clusters (`testenv/up --topology federation`, when make.sh
    // finds it running): the pair, both directions.
    if let Some(kubeconfig) = std::env::var_os("MESHTOP_SCREENSHOT_FEDERATION_KUBECONFIG") {
        let (topology, log) = live(Path::new(&kubeconfig));
        let mut fed = app(topology, log, "dark");
        fed.source_label = format!("live · {} clusters", fed.topology.clusters().count());
        let pair = fed
            .topology
            .federation
            .pairs
            .first()
            .map(|p| p.id.clone())
            .expect("a federated pair on the federation topology");
        select(&mut fed, &pair);
        shoot(&mut fed, &fonts, "live-federation.png");
    }
}

/// What the API servers answer about a plan (permissions, lock), as the dashboard asks them.
fn access(kubeconfig: &Path, plan: &meshtop::failover::plan::Plan) -> Vec<Check> {
    use meshtop::failover::kube::{KubeWriter, Target};
    use meshtop::failover::writer::Writer;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (targets, _) =
            meshtop::sources::kube::resolve(Some(kubeconfig), &[], &Default::default())
                .await
                .expect("kubeconfig");
        // The writer's clients are built by the clusters' own tasks: run them, wait for live.
        let writers: Vec<Target> = targets.iter().map(|t| t.writer_target()).collect();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let slots: Vec<_> = targets.iter().map(|t| t.client.clone()).collect();
        let _sources = meshtop::sources::kube::start(targets, tx);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while slots.iter().any(|s| s.get().is_err()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        KubeWriter::new(writers, false).access(plan).await
    })
}

/// The topology of real clusters once every one is live and every istiod answered (20 s at
/// most), through the same live source and engine as `meshtop`.
fn live(kubeconfig: &Path) -> (Arc<Topology>, Vec<LogEntry>) {
    live_on(
        &[kubeconfig.to_path_buf()],
        std::time::Duration::from_secs(20),
    )
}

/// [`live`] on the files of a `KUBECONFIG` list, waiting at most `wait` for every cluster.
fn live_on(
    files: &[std::path::PathBuf],
    wait: std::time::Duration,
) -> (Arc<Topology>, Vec<LogEntry>) {
    use meshtop::sources::kube;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (targets, notices) =
            kube::kubeconfig::resolve_files(files, &[], &Default::default()).expect("kubeconfig");
        let log = Arc::new(std::sync::Mutex::new(
            notices
                .into_iter()
                .map(|message| LogEntry {
                    at: meshtop::engine::unix_now(),
                    severity: meshtop::topology::model::Severity::Warning,
                    message,
                })
                .collect::<Vec<_>>(),
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (topology_tx, mut topology_rx) =
            tokio::sync::watch::channel(Arc::new(Topology::default()));
        let (derived_tx, mut derived_rx) = tokio::sync::mpsc::unbounded_channel();
        let _sources = kube::start(targets, tx);
        tokio::spawn(meshtop::engine::run(rx, topology_tx, derived_tx));
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(d) = derived_rx.recv().await {
                if let Ok(mut l) = sink.lock() {
                    l.extend(d.log);
                }
            }
        });
        let settled = |t: &Topology| {
            t.clusters().count() > 0
                && t.clusters()
                    .all(|c| c.connection == meshtop::topology::model::Connection::Live)
                && t.clusters()
                    .flat_map(|c| c.control_planes.iter())
                    .all(|cp| cp.connected_proxies.is_some())
        };
        let _ = tokio::time::timeout(wait, async {
            while !settled(&topology_rx.borrow_and_update()) {
                if topology_rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        // One more probe round, so push rates have two samples.
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        let t = topology_rx.borrow().clone();
        let entries = log.lock().map(|l| l.clone()).unwrap_or_default();
        (t, entries)
    })
}
