//! Pre-flight checks: pure, from the facts sources already gathered (istiod probes, gateways,
//! ConfigMaps). Any `Fail` blocks the plan.

use serde::Serialize;

use super::plan::{Plan, PlanKind};
use crate::topology::model::{GatewayKind, SyncStatus, Topology};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn glyph(self) -> &'static str {
        match self {
            Verdict::Pass => "✔",
            Verdict::Warn => "▲",
            Verdict::Fail => "✖",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub reason: String,
}

fn check(name: &str, verdict: Verdict, reason: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        reason: reason.into(),
    }
}

/// `1.28.2` → `(1, 28)`; anything else → `None`.
fn minor(version: &str) -> Option<(u32, u32)> {
    let v = version.trim_start_matches('v');
    let mut parts = v.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn preflight(topology: &Topology, plan: &Plan, read_only: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    if read_only {
        checks.push(check(
            "writes allowed",
            Verdict::Fail,
            "meshtop runs with --read-only: the plan can be shown, not applied",
        ));
    }
    let (Some(target), Some(source)) = (
        topology.control_plane(&plan.to),
        topology.control_plane(&plan.from),
    ) else {
        checks.push(check(
            "control planes known",
            Verdict::Fail,
            format!("{} or {} is no longer in the topology", plan.from, plan.to),
        ));
        return checks;
    };

    checks.push(if target.ready && target.ready_replicas > 0 {
        check(
            "target ready",
            Verdict::Pass,
            format!(
                "{} /ready ok, {}/{} pods ready",
                target.name, target.ready_replicas, target.replicas
            ),
        )
    } else {
        check(
            "target ready",
            Verdict::Fail,
            format!(
                "{} is not ready ({}/{} pods{})",
                target.id,
                target.ready_replicas,
                target.replicas,
                target
                    .probe_error
                    .as_ref()
                    .map(|e| format!("; probe: {e}"))
                    .unwrap_or_default()
            ),
        )
    });

    if plan.kind == PlanKind::RepointRemote {
        let sync = target
            .remote_clusters
            .iter()
            .find(|r| r.id == plan.cluster_id);
        checks.push(match sync {
            Some(r) if r.status == SyncStatus::Synced => check(
                "target synced with cluster",
                Verdict::Pass,
                format!("/debug/clusterz lists {} as synced", plan.cluster_id),
            ),
            Some(r) => check(
                "target synced with cluster",
                Verdict::Fail,
                format!("/debug/clusterz lists {} as {}", plan.cluster_id, r.status),
            ),
            None => check(
                "target synced with cluster",
                Verdict::Fail,
                format!(
                    "{} has no remote secret for {}: every proxy would be rejected (\"client claims to be in cluster {}\")",
                    target.name, plan.cluster_id, plan.cluster_id
                ),
            ),
        });
        checks.push(if target.external_istiod {
            check(
                "target may serve remotes",
                Verdict::Pass,
                "EXTERNAL_ISTIOD=true",
            )
        } else {
            check(
                "target may serve remotes",
                Verdict::Fail,
                format!("{} does not run with EXTERNAL_ISTIOD=true", target.id),
            )
        });
        let gateway = topology.cluster(&target.cluster).and_then(|c| {
            c.gateways
                .iter()
                .find(|g| g.kind == GatewayKind::EastWest && g.exposes_istiod)
        });
        checks.push(match gateway {
            Some(g) if g.healthy => check(
                "east-west gateway healthy",
                Verdict::Pass,
                format!(
                    "{} at {} ({}/{} pods)",
                    g.name,
                    g.address.as_deref().unwrap_or("?"),
                    g.ready_pods,
                    g.pods
                ),
            ),
            Some(g) => check(
                "east-west gateway healthy",
                Verdict::Fail,
                format!(
                    "{} is unhealthy (address {}, {}/{} pods)",
                    g.name,
                    g.address.as_deref().unwrap_or("none"),
                    g.ready_pods,
                    g.pods
                ),
            ),
            None => check(
                "east-west gateway healthy",
                Verdict::Fail,
                format!("no east-west gateway in {} exposes istiod", target.cluster),
            ),
        });
        let service = topology
            .cluster(&plan.cluster)
            .and_then(|c| c.wiring.as_ref())
            .and_then(|w| w.istiod_service.clone());
        let wanted = if target.revision == "default" {
            "istiod".to_string()
        } else {
            format!("istiod-{}", target.revision)
        };
        checks.push(match service {
            Some(s) if s == wanted => check(
                "Service name matches",
                Verdict::Pass,
                format!("{} serves revision {}", s, target.revision),
            ),
            Some(s) => check(
                "Service name matches",
                Verdict::Warn,
                format!("remote has Service {s}, target revision wants {wanted}"),
            ),
            None => check(
                "Service name matches",
                Verdict::Warn,
                "the remote cluster has no istiod Service",
            ),
        });
    }

    checks.push(if target.trust_domain == source.trust_domain {
        check(
            "same trust domain",
            Verdict::Pass,
            target.trust_domain.clone(),
        )
    } else {
        check(
            "same trust domain",
            Verdict::Fail,
            format!("{} vs {}", source.trust_domain, target.trust_domain),
        )
    });

    checks.push(match (&source.root_cert, &target.root_cert) {
        (Some(a), Some(b)) if a == b => check(
            "same root certificate",
            Verdict::Pass,
            "istio-ca-root-cert matches",
        ),
        (Some(_), Some(_)) => check(
            "same root certificate",
            Verdict::Fail,
            "istio-ca-root-cert differs: mTLS between old and new proxies would break",
        ),
        _ => check(
            "same root certificate",
            Verdict::Warn,
            "istio-ca-root-cert not readable on both sides",
        ),
    });

    let versions = (
        source.version.as_deref().and_then(minor),
        target.version.as_deref().and_then(minor),
    );
    checks.push(match versions {
        (Some(s), Some(t)) if t < s => check(
            "version skew",
            Verdict::Fail,
            format!(
                "target {} would trail the data plane ({})",
                target.version.as_deref().unwrap_or("?"),
                source.version.as_deref().unwrap_or("?")
            ),
        ),
        (Some(s), Some(t)) if t.0 == s.0 && t.1 > s.1 + 1 => check(
            "version skew",
            Verdict::Warn,
            "target leads the data plane by more than one minor",
        ),
        (Some(_), Some(_)) => check(
            "version skew",
            Verdict::Pass,
            format!(
                "{} → {}",
                source.version.as_deref().unwrap_or("?"),
                target.version.as_deref().unwrap_or("?")
            ),
        ),
        _ => check("version skew", Verdict::Warn, "version unknown"),
    });
    checks
}

pub fn blocking(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::minor;

    #[test]
    fn minor_versions_parse() {
        assert_eq!(minor("1.28.2"), Some((1, 28)));
        assert_eq!(minor("v1.29.0-beta.1"), Some((1, 29)));
        assert_eq!(minor("latest"), None);
    }
}
