//! A network: its clusters and east-west gateways, whether others can reach it.

use super::*;

pub(super) fn network(theme: &Theme, m: &Mesh, n: &Network) -> Body {
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
