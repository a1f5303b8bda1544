//! Federation: the meshes' trust (roots, trust domains), each pair both ways, and each import
//! with where the imported service really runs.

use super::service::bar;
use super::*;
use crate::topology::federation::*;

fn root_trust_health(r: RootTrust) -> Health {
    match r {
        RootTrust::Trusted => Health::Healthy,
        // Meant to trust and does not: as broken as not trusting at all.
        RootTrust::NotCounted | RootTrust::Stale | RootTrust::No => Health::Down,
    }
}

fn acceptance_health(a: Acceptance) -> Health {
    match a {
        Acceptance::Same | Acceptance::CaCertificates => Health::Healthy,
        Acceptance::Alias | Acceptance::NotValidated => Health::Degraded,
        Acceptance::No => Health::Down,
    }
}

fn roots_text(roots: &[RootCert]) -> String {
    if roots.is_empty() {
        return "?".into();
    }
    roots
        .iter()
        .map(|r| {
            format!(
                "{} (to {})",
                r.short(),
                &r.not_after[..10.min(r.not_after.len())]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The federation node: one row per mesh.
pub(super) fn federation(theme: &Theme, t: &Topology) -> Body {
    let fed = &t.federation;
    let rows = fed
        .meshes
        .iter()
        .map(|m| {
            let multi = match m.multi_root {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            };
            vec![
                Cell::from(m.mesh.clone()),
                Cell::from(m.trust_domain.clone()),
                Cell::from(roots_text(&m.roots)),
                Cell::from(format!(
                    "{}",
                    m.ca_certificates
                        .iter()
                        .map(|c| c.roots.len())
                        .sum::<usize>()
                )),
                Cell::from(multi.to_string()),
                Cell::from(format!("{}", m.exports.len())),
                Cell::from(format!("{}", m.imports.len())),
            ]
        })
        .collect();
    let top = vec![
        kv(theme, "meshes", format!("{}", fed.meshes.len())),
        kv(theme, "federated pairs", format!("{}", fed.pairs.len())),
        Line::raw(""),
    ];
    let table = table(
        theme,
        &[
            "mesh",
            "trust domain",
            "root (sha-256, expiry)",
            "extra",
            "multi-root",
            "exports",
            "imports",
        ],
        rows,
        vec![
            Constraint::Length(12),
            Constraint::Length(14),
            Constraint::Min(20),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    );
    let mut bottom = Vec::new();
    let ids: Vec<String> = std::iter::once(NodeId::federation())
        .chain(fed.pairs.iter().map(|p| p.id.clone()))
        .chain(fed.meshes.iter().map(|m| NodeId::mesh(&m.mesh)))
        .collect();
    let all = t
        .meshes
        .iter()
        .flat_map(|m| m.findings.iter())
        .filter(|f| ids.contains(&f.node) || f.node.starts_with("fedimp:"))
        .filter(|f| !f.node.starts_with("mesh:") || is_federation_message(&f.message));
    bottom.extend(findings_list(theme, all, true));
    Body::Split(top, Box::new(table), bottom)
}

/// Mesh-node findings that federation raised (roots, exports), not the mesh's own rules.
fn is_federation_message(message: &str) -> bool {
    message.contains("root") || message.contains("AUTO_PASSTHROUGH")
}

fn direction_lines(theme: &Theme, fed: &Federation, d: &Direction) -> Vec<Line<'static>> {
    let mut lines = vec![heading(theme, &format!("{} → {}", d.mesh, d.peer))];
    let peer = fed.mesh(&d.peer);
    lines.push(Line::from(vec![
        Span::styled(format!("{:<20} ", "trusts root"), theme.muted()),
        status_span(theme, root_trust_health(d.root)),
        Span::styled(
            format!(
                "  {}{}",
                d.root.label(),
                peer.map(|p| format!(" · {}'s root {}", p.mesh, roots_text(&p.roots)))
                    .unwrap_or_default()
            ),
            theme.base(),
        ),
    ]));
    lines.push(Line::from(vec![
        Span::styled(format!("{:<20} ", "accepts domain"), theme.muted()),
        status_span(theme, acceptance_health(d.trust_domain)),
        Span::styled(
            format!(
                "  {} · {}",
                peer.map(|p| p.trust_domain.clone()).unwrap_or_default(),
                d.trust_domain.label()
            ),
            theme.base(),
        ),
    ]));
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    lines.push(kv(theme, "imports from it", list(&d.imports)));
    lines.push(kv(theme, "admits it (policies)", list(&d.policies)));
    if let Some(m) = fed.mesh(&d.mesh) {
        let exported: Vec<String> = m
            .exports
            .iter()
            .filter(|e| e.imported_by.contains(&d.peer))
            .map(|e| {
                format!(
                    "{} ({}: {}, {})",
                    e.hosts.join(" "),
                    e.cluster,
                    e.gateway,
                    e.mode
                )
            })
            .collect();
        lines.push(kv(theme, "exports to it", list(&exported)));
    }
    lines
}

/// A pair of meshes, both directions.
pub(super) fn pair(theme: &Theme, t: &Topology, p: &Pair) -> Body {
    let fed = &t.federation;
    let mut lines = vec![
        kv_health(theme, "status", p.health, String::new()),
        Line::raw(""),
    ];
    lines.extend(direction_lines(theme, fed, &p.a_to_b));
    lines.push(Line::raw(""));
    lines.extend(direction_lines(theme, fed, &p.b_to_a));
    let imports: Vec<String> = fed
        .imports_of(p)
        .map(|(m, i)| NodeId::federation_import(m, &i.cluster, &i.service_entry))
        .collect();
    let found = t
        .meshes
        .iter()
        .flat_map(|m| m.findings.iter())
        .filter(|f| f.node == p.id || imports.contains(&f.node));
    lines.extend(findings_list(theme, found, true));
    Body::Lines(lines)
}

/// One import: the ServiceEntry, and where the imported service really runs.
pub(super) fn import(theme: &Theme, t: &Topology, mesh: &str, imp: &Import) -> Body {
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut lines = vec![
        kv_health(theme, "status", imp.health, String::new()),
        kv(
            theme,
            "ServiceEntry",
            format!("{}: {}", imp.cluster, imp.service_entry),
        ),
        kv(theme, "in mesh", mesh.to_string()),
        kv(theme, "hosts", imp.hosts.join(", ")),
        kv(
            theme,
            "from mesh",
            imp.from.clone().unwrap_or_else(|| "?".into()),
        ),
        kv(theme, "location", imp.location.clone()),
        kv(theme, "resolution", imp.resolution.clone()),
        kv(
            theme,
            "endpoints",
            format!(
                "{} ports {} network {}",
                or_none(&imp.addresses),
                imp.ports
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                or_none(&imp.networks)
            ),
        ),
        kv(
            theme,
            "tlsMode istio",
            if imp.tls_mode_istio { "yes" } else { "no" },
        ),
        kv(theme, "subjectAltNames", or_none(&imp.subject_alt_names)),
        kv(
            theme,
            "DestinationRule",
            imp.destination_rule
                .as_ref()
                .map(|r| {
                    format!(
                        "{} tls {} sni {}",
                        r.name,
                        r.tls_mode.as_deref().unwrap_or("-"),
                        r.sni.as_deref().unwrap_or("-")
                    )
                })
                .unwrap_or_else(|| "none".into()),
        ),
        kv(
            theme,
            "exported by",
            imp.exported_by
                .clone()
                .unwrap_or_else(|| "no matching export".into()),
        ),
        Line::raw(""),
    ];
    match (&imp.service, &imp.runs_in) {
        (Some(service), Some(groups)) => {
            lines.push(heading(
                theme,
                &format!(
                    "Where it runs: {service} in {}",
                    imp.from.as_deref().unwrap_or("?")
                ),
            ));
            let max = groups
                .iter()
                .map(|g| g.ready + g.not_ready)
                .max()
                .unwrap_or(1);
            for g in groups.iter() {
                let mut spans = vec![Span::styled(
                    format!(
                        "  {:<12} {:<14} {:<18} ",
                        &*g.network, &*g.cluster, &*g.locality
                    ),
                    theme.base(),
                )];
                spans.extend(bar(theme, g.ready, g.not_ready, max, 20));
                spans.push(Span::styled(
                    format!(" {}/{}", g.ready, g.ready + g.not_ready),
                    theme.muted(),
                ));
                lines.push(Line::from(spans));
            }
            if groups.is_empty() {
                lines.push(Line::styled(
                    "  no endpoints in the exporting mesh",
                    theme.health(Health::Down),
                ));
            }
        }
        _ => lines.push(Line::styled(
            "where it runs: not known (the host names no service of the exporting mesh)",
            theme.muted(),
        )),
    }
    let node = NodeId::federation_import(mesh, &imp.cluster, &imp.service_entry);
    lines.extend(findings_lines(theme, t.findings_for(&node)));
    Body::Lines(lines)
}

/// Lines for a service's panel: the meshes that import it.
pub(super) fn imported_by(
    theme: &Theme,
    t: &Topology,
    mesh: &str,
    service: &str,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for m in &t.federation.meshes {
        for imp in &m.imports {
            if imp.from.as_deref() == Some(mesh) && imp.service.as_deref() == Some(service) {
                if lines.is_empty() {
                    lines.push(Line::raw(""));
                    lines.push(heading(theme, "Exported to"));
                }
                lines.push(Line::from(vec![
                    Span::styled(format!("{} ", imp.health.glyph()), theme.health(imp.health)),
                    Span::styled(
                        format!(
                            "{} (ServiceEntry {}: {}, via {})",
                            m.mesh,
                            imp.cluster,
                            imp.service_entry,
                            imp.exported_by.as_deref().unwrap_or("?")
                        ),
                        theme.base(),
                    ),
                ]));
            }
        }
    }
    lines
}
