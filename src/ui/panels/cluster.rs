//! A cluster: role, ids, serving control planes, connection, notes, remote wiring.

use super::*;

pub(super) fn cluster(theme: &Theme, app: &App, c: &Cluster) -> Body {
    let t = &app.topology;
    // Never reached: in no mesh, so no network and nothing known of who serves it.
    let reached = !t.not_connected.iter().any(|x| x.name == c.name);
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
                .unwrap_or_else(|| if reached { "" } else { "none: not connected" }.to_string()),
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
                crate::ui::age(app.now, c.last_update)
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
        // A credential plugin still running is no part of the cluster left unread.
        let key = if topic == crate::topology::snapshot::CREDENTIALS_NOTE {
            "waiting for"
        } else {
            "not read"
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{key:<20} "), theme.muted()),
            Span::styled(format!("{topic}: {note}"), theme.health(Health::Degraded)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(heading(theme, "Served by"));
    if c.served_by.is_empty() && !reached {
        lines.push(Line::styled(
            "  not known until the cluster answers",
            theme.muted(),
        ));
    } else if c.served_by.is_empty() {
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
