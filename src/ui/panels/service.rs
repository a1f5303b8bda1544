//! A service: endpoint distribution per network, cluster and locality.

use super::*;

/// `█` for ready, `░` for not ready, scaled to `width` for `max` endpoints.
pub(super) fn bar(
    theme: &Theme,
    ready: u32,
    not_ready: u32,
    max: u32,
    width: usize,
) -> Vec<Span<'static>> {
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

/// `exported` lists the meshes that import the service (empty when none do).
pub(super) fn service(theme: &Theme, m: &Mesh, s: &Service, exported: Vec<Line<'static>>) -> Body {
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
            let h = crate::topology::health::endpoint_counts(e.ready, e.not_ready);
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
    lines.extend(exported);
    Body::Lines(lines)
}
