//! A gateway: kind, pods, address, ports, probe.

use super::*;

pub(super) fn gateway(theme: &Theme, t: &Topology, g: &Gateway) -> Body {
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
