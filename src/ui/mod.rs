//! Rendering: reads the app state, never awaits, never does I/O.

pub mod modal;
pub mod panels;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use tui_tree_widget::Tree;

use crate::app::action::{hints, key, Action, Scope};
use crate::app::state::{App, Modal};
use crate::topology::model::{Connection, Health, Severity};

/// Below this the screen says so instead of drawing a broken layout.
pub const MIN_WIDTH: u16 = 30;
pub const MIN_HEIGHT: u16 = 8;

pub fn draw(frame: &mut Frame, app: &mut App) {
    app.refresh_tree();
    let area = frame.area();
    let theme = app.theme().clone();
    frame.render_widget(Block::new().style(theme.base()), area);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = Paragraph::new(vec![
            Line::from(Span::styled("meshtop", theme.title())),
            Line::from(format!(
                "terminal too small ({}×{})",
                area.width, area.height
            )),
            Line::from(format!("needs {MIN_WIDTH}×{MIN_HEIGHT}")),
        ])
        .wrap(Wrap { trim: true })
        .style(theme.base());
        frame.render_widget(msg, area);
        return;
    }
    let compact = area.width < 80 || area.height < 20;
    let [header, body, log_area, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(if compact {
            0
        } else {
            (area.height / 5).clamp(4, 9)
        }),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_header(frame, app, header);
    if compact {
        draw_tree(frame, app, body);
    } else {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)])
                .areas(body);
        draw_tree(frame, app, left);
        panels::draw(frame, app, right);
        draw_log(frame, app, log_area);
    }
    draw_status(frame, app, status);

    match &app.modal {
        Some(Modal::Help) => modal::help(frame, &theme, area),
        Some(Modal::Message { title, body }) => modal::message(frame, &theme, area, title, body),
        Some(Modal::Failover(m)) => {
            modal::failover(frame, &theme, area, m, app.read_only, &app.key_context())
        }
        Some(Modal::Pending(a)) => modal::pending(frame, &theme, area, a),
        None => {}
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme();
    let t = &app.topology;
    // Clusters never reached are counted apart: they are in no mesh.
    let clusters: usize = t.meshes.iter().map(|m| m.clusters().count()).sum();
    let unreached = Health::worst_of(t.not_connected.iter().map(|c| c.health));
    let worst = Health::worst_of(t.meshes.iter().map(|m| m.health)).worst(unreached);
    let mut spans = vec![
        Span::styled(" meshtop ", theme.title().add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(worst.glyph(), theme.health(worst)),
        Span::styled(
            format!(
                " {} mesh{} · {clusters} cluster{}",
                t.meshes.len(),
                if t.meshes.len() == 1 { "" } else { "es" },
                if clusters == 1 { "" } else { "s" },
            ),
            theme.base(),
        ),
    ];
    if !t.not_connected.is_empty() {
        spans.push(Span::styled(" · ", theme.base()));
        spans.push(Span::styled(
            format!("{} not connected", t.not_connected.len()),
            theme.health(unreached),
        ));
    }
    spans.push(Span::styled(
        format!(" · {}", app.source_label),
        theme.base(),
    ));
    if app.read_only {
        spans.push(Span::styled(" · read-only", theme.health(Health::Degraded)));
    }
    spans.push(Span::styled(
        format!(" · theme {}", theme.name),
        theme.muted(),
    ));
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.base()), area);
}

fn draw_tree(frame: &mut Frame, app: &mut App, area: Rect) {
    let theme = app.theme().clone();
    let title = if app.filter_editing {
        format!(" Mesh  /{}▏", app.filter)
    } else if !app.filter.is_empty() {
        format!(
            " Mesh  filter: {} ({} clears) ",
            app.filter,
            key(Scope::Filter, Action::FilterClear)
        )
    } else {
        " Mesh ".to_string()
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(title, theme.title()));
    app.page = area.height.saturating_sub(2) as usize;
    if app.tree_items.is_empty() {
        let text = if app.received_first {
            if app.filter.is_empty() {
                "no clusters".to_string()
            } else {
                format!("nothing matches \"{}\"", app.filter)
            }
        } else {
            "connecting…".to_string()
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, theme.muted())).block(block),
            area,
        );
        return;
    }
    match Tree::new(&app.tree_items) {
        Ok(tree) => {
            let tree = tree
                .block(block)
                .style(theme.base())
                .highlight_style(theme.selection())
                .highlight_symbol("");
            frame.render_stateful_widget(tree, area, &mut app.tree_state);
        }
        Err(e) => frame.render_widget(
            Paragraph::new(format!("tree error: {e}")).block(block),
            area,
        ),
    }
}

pub fn format_clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = app.theme();
    let rows = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .take(rows)
        .map(|e| {
            let health = match e.severity {
                Severity::Error => Health::Down,
                Severity::Warning => Health::Degraded,
                Severity::Info => Health::Healthy,
            };
            Line::from(vec![
                Span::styled(format!("{} ", format_clock(e.at)), theme.muted()),
                Span::styled(format!("{} ", e.severity.glyph()), theme.health(health)),
                Span::styled(e.message.clone(), theme.base()),
            ])
        })
        .collect();
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(" Events (newest first) ", theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Seconds since a cluster's latest fact, as a short age.
pub fn age(now: u64, then: Option<u64>) -> String {
    match then {
        None => "never".into(),
        Some(t) => {
            let d = now.saturating_sub(t);
            if d < 60 {
                format!("{d}s")
            } else if d < 3600 {
                format!("{}m", d / 60)
            } else {
                format!("{}h", d / 3600)
            }
        }
    }
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme();
    let scope = app.key_scope();
    let mut spans = Vec::new();
    let context = app.key_context();
    if app.filter_editing {
        let keys: Vec<String> = hints(Scope::Filter, &context)
            .into_iter()
            .map(|(k, l)| format!("{k} {l}"))
            .collect();
        spans.push(Span::styled(
            format!(" type to filter · {} ", keys.join(" · ")),
            theme.accent(),
        ));
    } else {
        for (key, label) in hints(scope, &context) {
            spans.push(Span::styled(
                format!(" {key}"),
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(format!(" {label} "), theme.muted()));
        }
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let mut ages = String::new();
    for c in app.topology.clusters() {
        let state = match c.connection {
            Connection::Live => String::new(),
            ref other => format!(" {}", other.label()),
        };
        ages.push_str(&format!(
            " {}{state} {}",
            c.label(),
            age(app.now, c.last_update)
        ));
    }
    let room = (area.width as usize).saturating_sub(used + 1);
    if room > 8 && !ages.is_empty() {
        let text: String = if ages.chars().count() > room {
            let mut t: String = ages.chars().take(room.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            format!("{ages:>room$}")
        };
        spans.push(Span::styled(text, theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.base()), area);
}

/// Centred rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub fn clear(frame: &mut Frame, area: Rect) {
    frame.render_widget(Clear, area);
}
