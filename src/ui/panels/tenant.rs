//! A tenant namespace across the clusters of its mesh.

use super::*;

pub(super) fn tenant(theme: &Theme, m: &Mesh, ns: &str) -> Body {
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
