//! Headless output: `--once -o json|table`.

use std::fmt::Write;

use crate::topology::model::Topology;

pub fn json(topology: &Topology) -> String {
    serde_json::to_string_pretty(topology).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn table(topology: &Topology) -> String {
    let mut out = String::new();
    for m in &topology.meshes {
        let _ = writeln!(
            out,
            "MESH {} {} (trust domain {}, {} services, {} tenants)",
            m.health.glyph(),
            m.id,
            m.trust_domain,
            m.services.len(),
            m.tenants.len()
        );
        for n in &m.networks {
            let _ = writeln!(
                out,
                "  NETWORK {} {}{}",
                n.health.glyph(),
                n.name,
                if n.reachable { "" } else { " (unreachable)" }
            );
            for c in &n.clusters {
                let _ = writeln!(
                    out,
                    "    CLUSTER {} {:<10} {:<22} served by {:<40} endpoints {}/{}",
                    c.health.glyph(),
                    c.name,
                    c.role.label(),
                    c.served_by.join(","),
                    c.endpoints_ready,
                    c.endpoints_total
                );
                for cp in &c.control_planes {
                    let _ = writeln!(
                        out,
                        "      CONTROL PLANE {} {}/{} rev {} {} {}/{} ready, {} proxies",
                        cp.health.glyph(),
                        cp.namespace,
                        cp.name,
                        cp.revision,
                        cp.version.as_deref().unwrap_or("?"),
                        cp.ready_replicas,
                        cp.replicas,
                        cp.connected_proxies
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "?".into())
                    );
                }
                for g in &c.gateways {
                    let _ = writeln!(
                        out,
                        "      GATEWAY {} {}/{} {} {}/{} pods, address {}",
                        g.health.glyph(),
                        g.namespace,
                        g.name,
                        g.kind.label(),
                        g.ready_pods,
                        g.pods,
                        g.address.as_deref().unwrap_or("NONE")
                    );
                }
            }
        }
        findings(&mut out, &m.findings);
    }
    if !topology.not_connected.is_empty() {
        let _ = writeln!(out, "NOT CONNECTED");
        for c in &topology.not_connected {
            let _ = writeln!(
                out,
                "  CLUSTER {} {:<10} {}{}",
                c.health.glyph(),
                c.name,
                c.connection.label(),
                c.connection
                    .reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        findings(&mut out, &topology.findings);
    }
    for p in &topology.federation.pairs {
        let _ = writeln!(out, "FEDERATION {} {} ⇄ {}", p.health.glyph(), p.a, p.b);
        for d in [&p.a_to_b, &p.b_to_a] {
            let _ = writeln!(
                out,
                "  {} → {}: root {}, trust domain {}, imports {}, policies {}",
                d.mesh,
                d.peer,
                d.root.label(),
                d.trust_domain.label(),
                if d.imports.is_empty() {
                    "none".to_string()
                } else {
                    d.imports.join(", ")
                },
                if d.policies.is_empty() {
                    "none".to_string()
                } else {
                    d.policies.join(", ")
                },
            );
        }
    }
    out
}

fn findings(out: &mut String, findings: &[crate::topology::model::Finding]) {
    for f in findings {
        let _ = writeln!(
            out,
            "  FINDING {} {}: {}",
            f.severity.glyph(),
            crate::topology::model::NodeId::describe(&f.node),
            f.message
        );
    }
}
