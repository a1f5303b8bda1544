//! The detail panel for the selected node: one function per kind of node.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::app::state::App;
use crate::app::tree::NodeRef;
use crate::theme::Theme;
use crate::topology::model::*;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme();
    let t = &app.topology;
    let (title, body) = match app.selected() {
        None => (
            "Details".to_string(),
            Body::Lines(vec![Line::styled("select a node", theme.muted())]),
        ),
        Some(node) => match node {
            NodeRef::Mesh(id) => match t.meshes.iter().find(|m| &m.id == id) {
                Some(m) => (format!("Mesh {}", m.id), mesh(theme, app, m)),
                None => gone(theme),
            },
            NodeRef::Network(mesh_id, name) => {
                match t
                    .meshes
                    .iter()
                    .find(|m| &m.id == mesh_id)
                    .and_then(|m| m.networks.iter().find(|n| &n.name == name).map(|n| (m, n)))
                {
                    Some((m, n)) => (format!("Network {}", n.name), network(theme, m, n)),
                    None => gone(theme),
                }
            }
            NodeRef::Cluster(c)
            | NodeRef::ControlPlanes(c)
            | NodeRef::Gateways(c)
            | NodeRef::Namespaces(c)
            | NodeRef::Served(_, c) => match t.cluster(c) {
                Some(cl) => (format!("Cluster {}", cl.name), cluster(theme, app, cl)),
                None => gone(theme),
            },
            NodeRef::ControlPlane(id) => match t.control_plane(id) {
                Some(cp) => (
                    format!("Control plane {}/{}", cp.namespace, cp.name),
                    control_plane(theme, t, cp),
                ),
                None => gone(theme),
            },
            NodeRef::Gateway(id) => match t
                .clusters()
                .flat_map(|c| c.gateways.iter())
                .find(|g| &g.id == id)
            {
                Some(g) => (
                    format!("Gateway {}/{}", g.namespace, g.name),
                    gateway(theme, t, g),
                ),
                None => gone(theme),
            },
            NodeRef::Namespace(c, ns) => match t.mesh_of_cluster(c) {
                Some(m) => (format!("Tenant {ns}"), tenant(theme, m, ns)),
                None => gone(theme),
            },
            NodeRef::Service(c, ns, name) => match t
                .mesh_of_cluster(c)
                .and_then(|m| m.service(ns, name).map(|s| (m, s)))
            {
                Some((m, s)) => (format!("Service {ns}/{name}"), service(theme, m, s)),
                None => (
                    format!("Service {ns}/{name}"),
                    Body::Lines(vec![Line::styled(
                        "cluster-local: this service never merges across clusters",
                        theme.muted(),
                    )]),
                ),
            },
        },
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(format!(" {title} "), theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match body {
        Body::Lines(lines) => frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .style(theme.base()),
            inner,
        ),
        Body::Split(top, table, bottom) => {
            let table_height = (table.rows + 2) as u16;
            let [a, b, c] = Layout::vertical([
                Constraint::Length(top.len() as u16),
                Constraint::Length(table_height),
                Constraint::Min(0),
            ])
            .areas(inner);
            frame.render_widget(Paragraph::new(top).style(theme.base()), a);
            frame.render_widget(table.table, b);
            frame.render_widget(
                Paragraph::new(bottom)
                    .wrap(Wrap { trim: false })
                    .style(theme.base()),
                c,
            );
        }
    }
}

enum Body {
    Lines(Vec<Line<'static>>),
    /// Lines, a table, more lines.
    Split(Vec<Line<'static>>, Box<Tab>, Vec<Line<'static>>),
}

struct Tab {
    table: Table<'static>,
    rows: usize,
}

fn gone(theme: &Theme) -> (String, Body) {
    (
        "Details".into(),
        Body::Lines(vec![Line::styled(
            "this node is gone from the latest data",
            theme.muted(),
        )]),
    )
}

fn kv(theme: &Theme, key: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{key:<20} "), theme.muted()),
        Span::styled(value.into(), theme.base()),
    ])
}

fn status_span(theme: &Theme, h: Health) -> Span<'static> {
    Span::styled(format!("{} {}", h.glyph(), h.label()), theme.health(h))
}

fn kv_health(theme: &Theme, key: &str, h: Health, extra: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{key:<20} "), theme.muted()),
        status_span(theme, h),
        Span::styled(extra, theme.base()),
    ])
}

fn heading(theme: &Theme, text: &str) -> Line<'static> {
    Line::styled(
        text.to_string(),
        theme.accent().add_modifier(Modifier::BOLD),
    )
}

fn findings_lines<'a>(
    theme: &Theme,
    findings: impl Iterator<Item = &'a Finding>,
) -> Vec<Line<'static>> {
    findings_list(theme, findings, false)
}

/// Findings; `with_subject` prefixes each with the node it concerns (for mesh-wide lists).
fn findings_list<'a>(
    theme: &Theme,
    findings: impl Iterator<Item = &'a Finding>,
    with_subject: bool,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for f in findings {
        if lines.is_empty() {
            lines.push(Line::raw(""));
            lines.push(heading(theme, "Findings"));
        }
        let h = match f.severity {
            Severity::Error => Health::Down,
            Severity::Warning => Health::Degraded,
            Severity::Info => Health::Unknown,
        };
        let mut spans = vec![Span::styled(
            format!("{} ", f.severity.glyph()),
            theme.health(h),
        )];
        if with_subject {
            spans.push(Span::styled(
                format!("{}: ", NodeId::describe(&f.node)),
                theme.accent(),
            ));
        }
        spans.push(Span::styled(f.message.clone(), theme.base()));
        lines.push(Line::from(spans));
    }
    lines
}

fn table(
    theme: &Theme,
    header: &[&str],
    rows: Vec<Vec<Cell<'static>>>,
    widths: Vec<Constraint>,
) -> Tab {
    let n = rows.len();
    let header = Row::new(header.iter().map(|h| Cell::from(h.to_string())))
        .style(theme.muted().add_modifier(Modifier::BOLD));
    let table = Table::new(rows.into_iter().map(Row::new), widths)
        .header(header)
        .style(theme.base())
        .column_spacing(1);
    Tab { table, rows: n }
}

fn hcell(theme: &Theme, h: Health, text: String) -> Cell<'static> {
    Cell::from(Line::from(vec![
        Span::styled(format!("{} ", h.glyph()), theme.health(h)),
        Span::styled(text, theme.base()),
    ]))
}

fn mesh(theme: &Theme, app: &App, m: &Mesh) -> Body {
    let nets: Vec<String> = m
        .networks
        .iter()
        .map(|n| {
            format!(
                "{}{}",
                n.name,
                if n.reachable { "" } else { " (unreachable)" }
            )
        })
        .collect();
    let top = vec![
        kv_health(theme, "status", m.health, String::new()),
        kv(theme, "mesh id", m.id.clone()),
        kv(theme, "trust domain", m.trust_domain.clone()),
        kv(theme, "networks", nets.join(", ")),
        kv(
            theme,
            "services / tenants",
            format!("{} / {}", m.services.len(), m.tenants.len()),
        ),
        Line::raw(""),
        heading(theme, "Cluster health"),
    ];
    let cps: Vec<&ControlPlane> = m.clusters().flat_map(|c| c.control_planes.iter()).collect();
    let rows: Vec<Vec<Cell<'static>>> = m
        .clusters()
        .map(|c| {
            let api = crate::topology::health::connection(&c.connection);
            let cp = c
                .served_by
                .iter()
                .filter_map(|id| cps.iter().find(|cp| &cp.id == id).map(|cp| cp.health))
                .fold(None, |acc: Option<Health>, h| {
                    Some(acc.map_or(h, |a| a.worst(h)))
                })
                .unwrap_or(Health::Down);
            let gw = c
                .gateways
                .iter()
                .map(|g| g.health)
                .fold(Health::Healthy, Health::worst);
            let gw_text = if c.gateways.is_empty() {
                "-".to_string()
            } else {
                format!("{}", c.gateways.iter().filter(|g| g.healthy).count())
            };
            let ep = if c.endpoints_total == 0 {
                Health::Unknown
            } else if c.endpoints_ready == c.endpoints_total {
                Health::Healthy
            } else if c.endpoints_ready == 0 {
                Health::Down
            } else {
                Health::Degraded
            };
            vec![
                hcell(theme, c.health, c.name.clone()),
                Cell::from(c.role.label().to_string()),
                hcell(theme, api, super::age(app.now, c.last_update)),
                hcell(theme, cp, String::new()),
                hcell(
                    theme,
                    if c.gateways.is_empty() {
                        Health::Unknown
                    } else {
                        gw
                    },
                    gw_text,
                ),
                hcell(
                    theme,
                    ep,
                    format!("{}/{}", c.endpoints_ready, c.endpoints_total),
                ),
            ]
        })
        .collect();
    let tab = table(
        theme,
        &[
            "cluster",
            "role",
            "API",
            "ctrl plane",
            "gateways",
            "endpoints",
        ],
        rows,
        vec![
            Constraint::Length(12),
            Constraint::Length(22),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(11),
        ],
    );
    Body::Split(
        top,
        Box::new(tab),
        findings_list(theme, m.findings.iter().take(12), true),
    )
}

fn network(theme: &Theme, m: &Mesh, n: &Network) -> Body {
    let mut lines = vec![
        kv_health(theme, "status", n.health, String::new()),
        kv(theme, "mesh", m.id.clone()),
        kv(
            theme,
            "reachable",
            if n.reachable {
                "yes: other networks reach it through a healthy east-west gateway".to_string()
            } else {
                "NO: no healthy east-west gateway with an address".to_string()
            },
        ),
        Line::raw(""),
        heading(theme, "Clusters"),
    ];
    for c in &n.clusters {
        lines.push(Line::from(vec![
            Span::styled(format!("  {} ", c.health.glyph()), theme.health(c.health)),
            Span::styled(format!("{:<14}", c.name), theme.base()),
            Span::styled(c.role.label().to_string(), theme.muted()),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(heading(theme, "East-west gateways"));
    let gws: Vec<&Gateway> = n
        .clusters
        .iter()
        .flat_map(|c| c.gateways.iter())
        .filter(|g| g.kind == GatewayKind::EastWest)
        .collect();
    if gws.is_empty() {
        lines.push(Line::styled("  none", theme.muted()));
    }
    for g in gws {
        lines.push(Line::from(vec![
            Span::styled(format!("  {} ", g.health.glyph()), theme.health(g.health)),
            Span::styled(format!("{}/{} ", g.cluster, g.name), theme.base()),
            match &g.address {
                Some(a) => Span::styled(a.clone(), theme.muted()),
                None => Span::styled("no address", theme.health(Health::Down)),
            },
            Span::styled(format!("  {}/{} pods", g.ready_pods, g.pods), theme.muted()),
        ]));
    }
    let node = NodeId::network(&m.id, &n.name);
    lines.extend(findings_lines(
        theme,
        m.findings.iter().filter(|f| f.node == node),
    ));
    Body::Lines(lines)
}

fn cluster(theme: &Theme, app: &App, c: &Cluster) -> Body {
    let t = &app.topology;
    let mut lines = vec![
        kv_health(theme, "status", c.health, String::new()),
        kv(theme, "role", c.role.label()),
        kv(theme, "cluster id", c.cluster_id.clone()),
        kv(
            theme,
            "network",
            t.meshes
                .iter()
                .flat_map(|m| m.networks.iter())
                .find(|n| n.clusters.iter().any(|x| x.name == c.name))
                .map(|n| n.name.clone())
                .unwrap_or_default(),
        ),
        kv(
            theme,
            "region",
            c.region.clone().unwrap_or_else(|| "?".into()),
        ),
        kv(
            theme,
            "connection",
            format!(
                "{} · data age {}",
                c.connection.label(),
                super::age(app.now, c.last_update)
            ),
        ),
    ];
    if let Some(e) = c.connection.reason() {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<20} ", "error"), theme.muted()),
            Span::styled(e.to_string(), theme.health(Health::Down)),
        ]));
    }
    for (topic, note) in &c.notes {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<20} ", "not read"), theme.muted()),
            Span::styled(format!("{topic}: {note}"), theme.health(Health::Degraded)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(heading(theme, "Served by"));
    if c.served_by.is_empty() {
        lines.push(Line::styled(
            "  no control plane",
            theme.health(Health::Down),
        ));
    }
    for id in &c.served_by {
        match t.control_plane(id) {
            Some(cp) => lines.push(Line::from(vec![
                Span::styled(format!("  {} ", cp.health.glyph()), theme.health(cp.health)),
                Span::styled(id.clone(), theme.base()),
                Span::styled(
                    format!(
                        "  rev {} · {} · {}/{} ready",
                        cp.revision,
                        cp.version.as_deref().unwrap_or("?"),
                        cp.ready_replicas,
                        cp.replicas
                    ),
                    theme.muted(),
                ),
            ])),
            None => lines.push(Line::raw(format!("  {id}"))),
        }
    }
    if let Some(w) = &c.wiring {
        lines.push(Line::raw(""));
        lines.push(heading(theme, "Control plane wiring"));
        lines.push(kv(
            theme,
            "istiod Service",
            format!(
                "{} → {} ({})",
                w.istiod_service.as_deref().unwrap_or("none"),
                w.istiod_address.as_deref().unwrap_or("no address"),
                w.address_kind.as_deref().unwrap_or("-")
            ),
        ));
        lines.push(kv(
            theme,
            "injector URL",
            w.injector_url.clone().unwrap_or_else(|| "-".into()),
        ));
        lines.push(kv(
            theme,
            "controlPlaneClusters",
            if w.control_plane_clusters.is_empty() {
                "-".to_string()
            } else {
                w.control_plane_clusters.join(",")
            },
        ));
    }
    let services: usize = c.namespaces.iter().map(|n| n.services.len()).sum();
    lines.push(Line::raw(""));
    lines.push(heading(theme, "Counts"));
    lines.push(kv(
        theme,
        "control planes",
        format!("{}", c.control_planes.len()),
    ));
    lines.push(kv(
        theme,
        "gateways",
        format!(
            "{} ({} healthy)",
            c.gateways.len(),
            c.gateways.iter().filter(|g| g.healthy).count()
        ),
    ));
    lines.push(kv(
        theme,
        "namespaces",
        format!("{} · {services} services", c.namespaces.len()),
    ));
    lines.push(kv(
        theme,
        "endpoints",
        format!("{}/{} ready", c.endpoints_ready, c.endpoints_total),
    ));
    lines.extend(findings_lines(
        theme,
        t.findings_for(&NodeId::cluster(&c.name)),
    ));
    Body::Lines(lines)
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map(|v| format!("{v}{unit}"))
        .unwrap_or_else(|| "?".into())
}

fn control_plane(theme: &Theme, t: &Topology, cp: &ControlPlane) -> Body {
    let mut top = vec![
        kv_health(
            theme,
            "status",
            cp.health,
            if cp.ready {
                "  /ready ok".into()
            } else {
                "  not ready".into()
            },
        ),
        kv(
            theme,
            "cluster",
            format!("{} (CLUSTER_ID {})", cp.cluster, cp.cluster_id),
        ),
        kv(theme, "revision", cp.revision.clone()),
        kv(
            theme,
            "version",
            cp.version.clone().unwrap_or_else(|| "?".into()),
        ),
        kv(
            theme,
            "replicas",
            format!("{}/{} ready", cp.ready_replicas, cp.replicas),
        ),
        kv(theme, "connected proxies", opt(cp.connected_proxies, "")),
        kv(
            theme,
            "push rate",
            opt(cp.push_rate.map(|r| format!("{r:.0}")), "/min"),
        ),
        kv(
            theme,
            "convergence",
            opt(cp.convergence_ms.map(|r| format!("{r:.1}")), " ms (mean)"),
        ),
        kv(
            theme,
            "serves remotes",
            if cp.external_istiod {
                "allowed (EXTERNAL_ISTIOD=true)"
            } else {
                "no"
            },
        ),
        kv(
            theme,
            "exposed at",
            cp.exposed_at.clone().unwrap_or_else(|| "-".into()),
        ),
        kv(theme, "trust domain", cp.trust_domain.clone()),
    ];
    if cp.external {
        top.push(kv(
            theme,
            "external",
            format!("runs in {}, configures {}", cp.cluster, cp.cluster_id),
        ));
    }
    if let Some(e) = &cp.probe_error {
        top.push(Line::styled(
            format!("probe error: {e}"),
            theme.health(Health::Degraded),
        ));
    }
    let served: Vec<String> = t
        .clusters()
        .filter(|c| c.served_by.contains(&cp.id))
        .map(|c| c.name.clone())
        .collect();
    top.push(kv(theme, "serves clusters", served.join(", ")));
    top.push(Line::raw(""));
    top.push(heading(theme, "Remote clusters (/debug/clusterz)"));
    let rows: Vec<Vec<Cell<'static>>> = cp
        .remote_clusters
        .iter()
        .map(|r| {
            let h = match r.status {
                SyncStatus::Synced => Health::Healthy,
                SyncStatus::Syncing | SyncStatus::Unknown => Health::Unknown,
                SyncStatus::Other(_) => Health::Down,
            };
            vec![
                Cell::from(r.id.clone()),
                hcell(theme, h, r.status.to_string()),
                Cell::from(r.secret.clone()),
                Cell::from(format!(
                    "{}",
                    cp.proxies_by_cluster.get(&r.id).copied().unwrap_or(0)
                )),
            ]
        })
        .collect();
    let tab = table(
        theme,
        &["cluster id", "sync", "secret", "proxies"],
        rows,
        vec![
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(30),
            Constraint::Length(8),
        ],
    );
    let mut bottom = Vec::new();
    if let Some(local) = cp.proxies_by_cluster.get(&cp.cluster_id) {
        bottom.push(kv(theme, "local proxies", format!("{local}")));
    }
    bottom.extend(findings_lines(
        theme,
        t.findings_for(&NodeId::control_plane(&cp.id)),
    ));
    Body::Split(top, Box::new(tab), bottom)
}

fn gateway(theme: &Theme, t: &Topology, g: &Gateway) -> Body {
    let mut lines = vec![
        kv_health(theme, "status", g.health, String::new()),
        kv(theme, "kind", g.kind.label()),
        kv(theme, "cluster", g.cluster.clone()),
        kv(theme, "network", g.network.clone()),
        kv(theme, "pods", format!("{}/{} ready", g.ready_pods, g.pods)),
    ];
    lines.push(match &g.address {
        Some(a) => kv(theme, "address", a.clone()),
        None => Line::from(vec![
            Span::styled(format!("{:<20} ", "address"), theme.muted()),
            Span::styled(
                "✖ no address: cross-network traffic through it fails".to_string(),
                theme.health(Health::Down),
            ),
        ]),
    });
    lines.push(kv(
        theme,
        "ports",
        g.ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ));
    lines.push(kv(
        theme,
        "health probe",
        match g.probe {
            Some(true) => ":15021/healthz/ready ok".to_string(),
            Some(false) => ":15021/healthz/ready FAILED".to_string(),
            None => "not probed".to_string(),
        },
    ));
    lines.push(kv(
        theme,
        "exposes istiod",
        if g.exposes_istiod {
            "yes (15012, 15017)"
        } else {
            "no"
        },
    ));
    lines.extend(findings_lines(
        theme,
        t.findings_for(&NodeId::gateway(&g.id)),
    ));
    Body::Lines(lines)
}

fn tenant(theme: &Theme, m: &Mesh, ns: &str) -> Body {
    let Some(tenant) = m.tenant(ns) else {
        return Body::Lines(vec![Line::styled("not a tenant namespace", theme.muted())]);
    };
    let top = vec![
        kv(theme, "mesh", m.id.clone()),
        kv(theme, "clusters", format!("{}", tenant.clusters.len())),
        Line::raw(""),
        heading(theme, "Across clusters"),
    ];
    let rows = tenant
        .clusters
        .iter()
        .map(|c| {
            vec![
                Cell::from(c.cluster.clone()),
                Cell::from(c.injection.to_string()),
                Cell::from(c.revision.clone().unwrap_or_else(|| "-".into())),
                Cell::from(format!("{}", c.services)),
                Cell::from(format!("{}", c.authorization_policies)),
                Cell::from(c.peer_authentication.clone().unwrap_or_else(|| "-".into())),
            ]
        })
        .collect();
    let tab = table(
        theme,
        &[
            "cluster",
            "injection",
            "revision",
            "svcs",
            "authz",
            "peer auth",
        ],
        rows,
        vec![
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Min(10),
        ],
    );
    let bottom = findings_lines(
        theme,
        m.findings
            .iter()
            .filter(|f| f.node == NodeId::tenant(&m.id, ns)),
    );
    Body::Split(top, Box::new(tab), bottom)
}

/// `█` for ready, `░` for not ready, scaled to `width` for `max` endpoints.
fn bar(theme: &Theme, ready: u32, not_ready: u32, max: u32, width: usize) -> Vec<Span<'static>> {
    let max = max.max(1) as usize;
    let scale = |n: u32| -> usize {
        let n = n as usize;
        if n == 0 {
            0
        } else {
            (n * width).div_ceil(max).max(1)
        }
    };
    let r = scale(ready);
    let n = scale(not_ready).min(width.saturating_sub(r));
    vec![
        Span::styled("█".repeat(r), Style::new().fg(theme.bar_ready)),
        Span::styled("░".repeat(n), Style::new().fg(theme.bar_not_ready)),
        Span::raw(" ".repeat(width.saturating_sub(r + n))),
    ]
}

fn service(theme: &Theme, m: &Mesh, s: &Service) -> Body {
    let clusters: std::collections::BTreeSet<&str> =
        s.endpoints.iter().map(|e| &*e.cluster).collect();
    let mut lines = vec![
        kv_health(theme, "status", s.health, String::new()),
        kv(
            theme,
            "endpoints",
            format!(
                "{}/{} ready in {} cluster(s)",
                s.ready(),
                s.total(),
                clusters.len()
            ),
        ),
        Line::raw(""),
        Line::from(vec![
            Span::styled(
                "Endpoint distribution  ",
                theme.accent().add_modifier(Modifier::BOLD),
            ),
            Span::styled("█", Style::new().fg(theme.bar_ready)),
            Span::styled(" ready  ", theme.muted()),
            Span::styled("░", Style::new().fg(theme.bar_not_ready)),
            Span::styled(" not ready", theme.muted()),
        ]),
    ];
    let max = s
        .endpoints
        .iter()
        .map(|e| e.ready + e.not_ready)
        .max()
        .unwrap_or(1);
    let mut networks: Vec<&str> = s.endpoints.iter().map(|e| &*e.network).collect();
    networks.dedup();
    networks.sort();
    networks.dedup();
    for net in networks {
        let reachable = m
            .networks
            .iter()
            .find(|n| n.name == net)
            .map(|n| n.reachable || m.networks.len() == 1)
            .unwrap_or(true);
        let mut head = vec![Span::styled(format!("▸ {net}"), theme.title())];
        if !reachable {
            head.push(Span::styled(
                "  ▲ east-west gateway unhealthy: unreachable from other networks",
                theme.health(Health::Degraded),
            ));
        }
        lines.push(Line::from(head));
        let mut last_cluster = "";
        for e in s.endpoints.iter().filter(|e| &*e.network == net) {
            let cluster = if &*e.cluster == last_cluster {
                String::new()
            } else {
                e.cluster.to_string()
            };
            last_cluster = &e.cluster;
            let h = crate::topology::health::endpoints([(e.ready, e.not_ready)].iter());
            let mut spans = vec![
                Span::styled(format!("  {:<9}", cluster), theme.base()),
                Span::styled(format!("{:<22}", e.locality), theme.muted()),
                Span::styled(format!("{} ", h.glyph()), theme.health(h)),
            ];
            spans.extend(bar(theme, e.ready, e.not_ready, max, 16));
            spans.push(Span::styled(
                format!(" {}/{}", e.ready, e.ready + e.not_ready),
                theme.base(),
            ));
            lines.push(Line::from(spans));
        }
    }
    let node = NodeId::mesh_service(&m.id, &s.namespace, &s.name);
    lines.extend(findings_lines(
        theme,
        m.findings.iter().filter(|f| f.node == node),
    ));
    Body::Lines(lines)
}
