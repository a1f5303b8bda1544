//! The mesh: status, ids, networks, the cluster health matrix, findings.

use super::*;

pub(super) fn mesh(theme: &Theme, app: &App, m: &Mesh) -> Body {
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
            let gw = Health::worst_of(c.gateways.iter().map(|g| g.health));
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
                hcell(theme, api, crate::ui::age(app.now, c.last_update)),
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
