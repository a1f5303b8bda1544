//! The detail panel for the selected node: one file per kind of node, shared helpers here.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

mod cluster;
mod control_plane;
mod federation;
mod gateway;
mod mesh;
mod network;
mod not_connected;
mod service;
mod tenant;

use cluster::cluster;
use control_plane::control_plane;
use gateway::gateway;
use mesh::mesh;
use network::network;
use not_connected::not_connected;
use service::service;
use tenant::tenant;

use crate::app::state::App;
use crate::app::tree::NodeRef;
use crate::theme::Theme;
use crate::topology::model::*;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme();
    let t = &app.topology;
    let selected = app.selected();
    let (title, body) = match selected.as_ref() {
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
            NodeRef::NotConnected => ("Not connected".to_string(), not_connected(theme, app)),
            NodeRef::Federation => ("Federation".to_string(), federation::federation(theme, t)),
            NodeRef::FederationPair(id) => match t.federation.pair(id) {
                Some(p) => (
                    format!("Federation {} ⇄ {}", p.a, p.b),
                    federation::pair(theme, t, p),
                ),
                None => gone(theme),
            },
            NodeRef::FederationImport(mesh, c, se) => match t.federation.mesh(mesh).and_then(|m| {
                m.imports
                    .iter()
                    .find(|i| &i.cluster == c && &i.service_entry == se)
            }) {
                Some(imp) => (
                    format!("Import {se} in {c}"),
                    federation::import(theme, t, mesh, imp),
                ),
                None => gone(theme),
            },
            NodeRef::Service(c, ns, name) => match t
                .mesh_of_cluster(c)
                .and_then(|m| m.service(ns, name).map(|s| (m, s)))
            {
                Some((m, s)) => (
                    format!("Service {ns}/{name}"),
                    service(
                        theme,
                        m,
                        s,
                        federation::imported_by(theme, t, &m.id, &format!("{ns}/{name}")),
                    ),
                ),
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

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map(|v| format!("{v}{unit}"))
        .unwrap_or_else(|| "?".into())
}
