//! Overlays: help (generated from the key map), messages, and the failover modal.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, clear};
use crate::app::action::{hints, key, keys, keys_label, Action, Context, Scope, KEYMAP};
use crate::app::state::{FailoverModal, Phase, StepView};
use crate::failover::audit::Attempt;
use crate::failover::plan::Op;
use crate::failover::preflight::Verdict;
use crate::theme::Theme;
use crate::topology::model::Health;

fn frame_block(theme: &Theme, title: &str) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(Span::styled(format!(" {title} "), theme.title()))
        .style(theme.base())
}

pub fn help(frame: &mut Frame, theme: &Theme, area: Rect) {
    let width = 88.min(area.width);
    let inner = width.saturating_sub(2).max(1) as usize;
    let mut lines = vec![Line::styled(
        "Keys",
        theme.accent().add_modifier(Modifier::BOLD),
    )];
    for (scope, title) in [
        (Scope::Main, None),
        (Scope::Failover, Some("In the failover window")),
        (
            Scope::Confirm,
            Some("Confirming a live failover (type the cluster's name)"),
        ),
        (Scope::Pending, Some("When a failover was interrupted")),
        (Scope::Filter, Some("While typing a filter")),
        (
            Scope::Overlay,
            Some("In help and messages (any other key closes)"),
        ),
    ] {
        if let Some(t) = title {
            lines.push(Line::raw(""));
            lines.push(Line::styled(t, theme.accent().add_modifier(Modifier::BOLD)));
        }
        let bindings = KEYMAP.iter().filter(|b| b.scope == scope);
        if scope == Scope::Main {
            for b in bindings {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {:<16}", keys_label(b)), theme.accent()),
                    Span::styled(b.help, theme.base()),
                ]));
            }
            continue;
        }
        // Windows and prompts: their keys side by side, packed so that no binding is split
        // across lines and help fits a small terminal.
        let mut spans: Vec<Span> = vec![Span::raw("  ")];
        let mut used = 2;
        for b in bindings {
            let (keys, help) = (keys_label(b), format!(" {}", b.help));
            let width = keys.chars().count() + help.chars().count() + 3;
            if used > 2 && used + width > inner {
                lines.push(Line::from(std::mem::replace(
                    &mut spans,
                    vec![Span::raw("  ")],
                )));
                used = 2;
            } else if used > 2 {
                spans.push(Span::styled(" · ", theme.muted()));
            }
            spans.push(Span::styled(keys, theme.accent()));
            spans.push(Span::styled(help, theme.base()));
            used += width;
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Glyphs: ✔ healthy  ▲ degraded  ✖ down  ? unknown  !N findings",
        theme.muted(),
    ));
    lines.push(Line::styled("Any key closes this help.", theme.muted()));
    // Wrapped lines count too.
    let h: u16 = lines
        .iter()
        .map(|l| l.width().div_ceil(inner).max(1) as u16)
        .sum::<u16>()
        + 2;
    let rect = centered(area, width, h);
    clear(frame, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .block(frame_block(theme, "Help"))
            .wrap(Wrap { trim: false }),
        rect,
    );
}

pub fn message(frame: &mut Frame, theme: &Theme, area: Rect, title: &str, body: &str) {
    let rect = centered(area, 64, 7);
    clear(frame, rect);
    let lines = vec![
        Line::raw(body.to_string()),
        Line::raw(""),
        Line::styled("Any key closes this.", theme.muted()),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(frame_block(theme, title))
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn step_lines(theme: &Theme, steps: &[StepView]) -> Vec<Line<'static>> {
    // Restarts are many and alike: one line with a count; the others one line each.
    let (restarts, others): (Vec<_>, Vec<_>) = steps
        .iter()
        .enumerate()
        .partition(|(_, s)| s.description.contains(": rollout restart "));
    let mut lines = step_rows(theme, others);
    if !restarts.is_empty() {
        let done = restarts
            .iter()
            .filter(|(_, s)| matches!(s.result, Some(Ok(()))))
            .count();
        let failed: Vec<String> = restarts
            .iter()
            .filter_map(|(_, s)| match &s.result {
                Some(Err(e)) => Some(format!("{}: {e}", s.description)),
                _ => None,
            })
            .collect();
        let h = if !failed.is_empty() {
            Health::Down
        } else if done == restarts.len() {
            Health::Healthy
        } else {
            Health::Unknown
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {} ", h.glyph()), theme.health(h)),
            Span::styled(
                format!("rollout restarts: {done}/{} done", restarts.len()),
                theme.base(),
            ),
        ]));
        for f in failed {
            lines.push(Line::styled(format!("   {f}"), theme.health(Health::Down)));
        }
    }
    lines
}

fn step_rows(theme: &Theme, steps: Vec<(usize, &StepView)>) -> Vec<Line<'static>> {
    steps
        .into_iter()
        .map(|(i, s): (usize, &StepView)| {
            let (glyph, h, err) = match &s.result {
                None => ("·", Health::Unknown, None),
                Some(Ok(())) => ("✔", Health::Healthy, None),
                Some(Err(e)) => ("✖", Health::Down, Some(e.clone())),
            };
            let mut spans = vec![
                Span::styled(format!(" {glyph} "), theme.health(h)),
                Span::styled(format!("{:>2}. {}", i + 1, s.description), theme.base()),
            ];
            if let Some(e) = err {
                spans.push(Span::styled(format!("  {e}"), theme.health(Health::Down)));
            }
            Line::from(spans)
        })
        .collect()
}

pub fn failover(
    frame: &mut Frame,
    theme: &Theme,
    area: Rect,
    m: &FailoverModal,
    read_only: bool,
    context: &Context,
) {
    let close = key(Scope::Failover, Action::Escape);
    let next = key(Scope::Failover, Action::NextTarget);
    let rect = centered(
        area,
        area.width.saturating_sub(4).min(120),
        area.height.saturating_sub(2),
    );
    clear(frame, rect);
    let title = if m.is_undo {
        "Undo failover"
    } else {
        "Failover"
    };
    let mut lines = vec![
        Line::styled(m.plan.title(), theme.title()),
        Line::from(vec![
            Span::styled("from ", theme.muted()),
            Span::styled(m.plan.from.clone(), theme.base()),
            Span::styled("  to ", theme.muted()),
            Span::styled(
                m.plan.to.clone(),
                theme.accent().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                if m.targets.len() > 1 && m.phase == Phase::Review {
                    format!(
                        "   (target {}/{}, {next} for next)",
                        m.target + 1,
                        m.targets.len()
                    )
                } else {
                    String::new()
                },
                theme.muted(),
            ),
        ]),
        Line::raw(""),
    ];
    // What the operator must see to act stays at the bottom, whatever the plan's length.
    let mut footer: Vec<Line> = Vec::new();
    match &m.phase {
        Phase::Review => {
            lines.push(Line::styled(
                format!("Plan: {} change(s)", m.plan.changes.len()),
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            let restarts: Vec<String> = m
                .plan
                .changes
                .iter()
                .filter(|c| c.op == Op::Restart)
                .map(|c| format!("{}/{}", c.namespace.as_deref().unwrap_or(""), c.name))
                .collect();
            for line in plan_lines(&m.plan) {
                lines.push(Line::styled(line, theme.base()));
            }
            if !restarts.is_empty() {
                let first = m.plan.changes.len() - restarts.len() + 1;
                lines.push(Line::from(vec![Span::styled(
                    format!(
                        "  {first:>2}.–{}. {}: rollout restart {} Deployment(s) so proxies reconnect: {}",
                        m.plan.changes.len(),
                        m.plan.cluster,
                        restarts.len(),
                        restarts.join(", ")
                    ),
                    theme.base(),
                )]));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "Pre-flight checks",
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            for c in m.all_checks() {
                let h = match c.verdict {
                    Verdict::Pass => Health::Healthy,
                    Verdict::Warn => Health::Degraded,
                    Verdict::Fail => Health::Down,
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {} {:<5}", c.verdict.glyph(), c.verdict.label()),
                        theme.health(h),
                    ),
                    Span::styled(format!("{:<28}", c.name), theme.base()),
                    Span::styled(c.reason.clone(), theme.muted()),
                ]));
            }
            if m.access.is_none() {
                lines.push(Line::styled(
                    "  ⧗ asking the API server: permissions (SelfSubjectAccessReview), failover lock",
                    theme.muted(),
                ));
            }
            let blocked = m.all_checks().any(|c| c.verdict == Verdict::Fail);
            if blocked {
                footer.push(Line::styled(
                    if read_only {
                        format!("Read-only: this plan cannot be applied. {close} closes.")
                    } else {
                        format!("Blocked: a pre-flight check fails. {next} tries another target, {close} closes.")
                    },
                    theme.health(Health::Down),
                ));
            } else if let Some(name) = &m.confirm_name {
                footer.push(Line::styled(
                    format!(
                        "This writes to {name}. Type the cluster's name to apply, then {}; {} cancels.",
                        key(Scope::Confirm, Action::Confirm),
                        key(Scope::Confirm, Action::Escape)
                    ),
                    theme.health(Health::Degraded).add_modifier(Modifier::BOLD),
                ));
                let matches = &m.typed == name;
                footer.push(Line::from(vec![
                    Span::styled("  cluster name › ", theme.muted()),
                    Span::styled(
                        format!("{}█", m.typed),
                        if matches {
                            theme.health(Health::Healthy).add_modifier(Modifier::BOLD)
                        } else {
                            theme.base()
                        },
                    ),
                ]));
            } else {
                footer.push(Line::styled(
                    format!(
                        "Apply this plan? [{}] apply  [{}] cancel",
                        key(Scope::Failover, Action::Confirm),
                        keys(Scope::Failover, Action::Escape)
                    ),
                    theme.health(Health::Degraded).add_modifier(Modifier::BOLD),
                ));
            }
        }
        Phase::Running { steps, note } => {
            lines.push(Line::styled(
                "Applying…",
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            lines.extend(step_lines(theme, steps));
            if let Some(n) = note {
                lines.push(Line::raw(""));
                lines.push(Line::styled(format!("⧗ {n}"), theme.muted()));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                format!("{close} hides this window; progress goes on in the event log."),
                theme.muted(),
            ));
        }
        Phase::Done { ok, message, steps } => {
            lines.extend(step_lines(theme, steps));
            lines.push(Line::raw(""));
            let (h, word) = if *ok {
                (Health::Healthy, "✔ Failover complete")
            } else {
                (Health::Down, "✖ Failover failed")
            };
            lines.push(Line::styled(
                word,
                theme.health(h).add_modifier(Modifier::BOLD),
            ));
            lines.push(Line::raw(message.clone()));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                format!(
                    "Recorded in the audit log. {close} closes; {} undoes the last failover.",
                    key(Scope::Main, Action::Undo)
                ),
                theme.muted(),
            ));
        }
    }
    let scope = if m.phase == Phase::Review && m.confirm_name.is_some() {
        Scope::Confirm
    } else {
        Scope::Failover
    };
    let hint: String = hints(scope, context)
        .into_iter()
        .map(|(k, l)| format!("{k} {l}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let block =
        frame_block(theme, title).title_bottom(Span::styled(format!(" {hint} "), theme.muted()));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    // Word wrapping may take a line more than the characters need: count one spare per line.
    let width = inner.width.max(1) as usize;
    let footer_height: u16 = footer
        .iter()
        .map(|l| {
            let w = l.width();
            (w.div_ceil(width).max(1) + usize::from(w > width)) as u16
        })
        .sum();
    let [body, bottom] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Min(1),
        ratatui::layout::Constraint::Length(footer_height.min(inner.height.saturating_sub(1))),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
    frame.render_widget(Paragraph::new(footer).wrap(Wrap { trim: false }), bottom);
}

/// The plan's non-restart changes, one line each, with repeated writes of one value to
/// several places of one object (the webhooks of a configuration) folded into one line.
fn plan_lines(plan: &crate::failover::plan::Plan) -> Vec<String> {
    let sets: Vec<(usize, &crate::failover::plan::Change)> = plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.op != Op::Restart)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sets.len() {
        let (first, c) = sets[i];
        let same = |d: &crate::failover::plan::Change| match (&c.op, &d.op) {
            (
                Op::Set {
                    from: f1, to: t1, ..
                },
                Op::Set {
                    from: f2, to: t2, ..
                },
            ) => {
                d.cluster == c.cluster
                    && d.kind == c.kind
                    && d.name == c.name
                    && f1 == f2
                    && t1 == t2
            }
            _ => false,
        };
        let mut j = i + 1;
        while j < sets.len() && same(sets[j].1) {
            j += 1;
        }
        if j - i == 1 {
            out.push(format!("  {:>2}. {}", first + 1, c.describe()));
        } else {
            let (last, _) = sets[j - 1];
            let paths: Vec<String> = sets[i..j].iter().map(|(_, d)| d.path()).collect();
            let (from, to) = match &c.op {
                Op::Set { from, to, .. } => (from.clone(), to.clone()),
                Op::Restart => (None, None),
            };
            out.push(format!(
                "  {:>2}.–{}. {}: {} at {} places ({})  {} → {}",
                first + 1,
                last + 1,
                c.cluster,
                c.object(),
                j - i,
                common_pattern(&paths),
                from.as_deref().unwrap_or("(absent)"),
                to.as_deref().unwrap_or("(absent)")
            ));
        }
        i = j;
    }
    out
}

/// `/webhooks/*/clientConfig/url` for `/webhooks/0/clientConfig/url`, `/webhooks/1/...`.
fn common_pattern(paths: &[String]) -> String {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
    let n = split.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|k| {
            let first = split[0].get(k).copied().unwrap_or("");
            if split.iter().all(|s| s.get(k).copied() == Some(first)) {
                first.to_string()
            } else {
                "*".to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An attempt the audit log shows stopped half-way.
pub fn pending(frame: &mut Frame, theme: &Theme, area: Rect, a: &Attempt) {
    let rect = centered(area, area.width.saturating_sub(4).min(110), 16);
    clear(frame, rect);
    let mut lines = vec![
        Line::styled(a.plan.title(), theme.title()),
        Line::raw(""),
        Line::styled(
            format!(
                "Attempt {} by {} stopped after {} of {} steps ({}).",
                a.id,
                a.user,
                a.applied.len(),
                a.plan.changes.len(),
                a.status()
            ),
            theme.health(Health::Degraded).add_modifier(Modifier::BOLD),
        ),
    ];
    if let Some((i, why)) = &a.failed {
        lines.push(Line::styled(
            format!("Step {} failed: {why}", i + 1),
            theme.muted(),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw(format!(
        "[{}] resume: check every object again and write the steps still missing",
        key(Scope::Pending, Action::Resume)
    )));
    lines.push(Line::raw(format!(
        "[{}] roll back: restore what it wrote from the snapshots",
        key(Scope::Pending, Action::Undo)
    )));
    lines.push(Line::raw(format!(
        "[{}] decide later (`meshtop failover --list` shows it)",
        key(Scope::Pending, Action::Escape)
    )));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Either way you see the plan and its checks first.",
        theme.muted(),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(frame_block(theme, "Unfinished failover"))
            .wrap(Wrap { trim: false }),
        rect,
    );
}
