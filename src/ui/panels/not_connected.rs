//! The clusters never reached: each with its state and why, and what was found about them.

use super::*;

pub(super) fn not_connected(theme: &Theme, app: &App) -> Body {
    let t = &app.topology;
    let mut lines = vec![
        Line::styled(
            "never live: nothing says which mesh they belong to until they answer",
            theme.muted(),
        ),
        Line::raw(""),
        heading(theme, "Clusters"),
    ];
    for c in &t.not_connected {
        let mut spans = vec![
            Span::styled(format!("  {} ", c.health.glyph()), theme.health(c.health)),
            Span::styled(format!("{:<14} ", c.label()), theme.base()),
            Span::styled(c.connection.label().to_string(), theme.health(c.health)),
        ];
        if let Some(why) = c.connection.reason() {
            spans.push(Span::styled(format!(" · {why}"), theme.muted()));
        }
        for (topic, note) in &c.notes {
            spans.push(Span::styled(format!(" · {topic}: {note}"), theme.muted()));
        }
        lines.push(Line::from(spans));
    }
    lines.extend(findings_list(theme, t.findings.iter(), true));
    Body::Lines(lines)
}
