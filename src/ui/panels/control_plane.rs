//! A control plane: revision, replicas, proxies, push rate, remote clusters.

use super::*;

pub(super) fn control_plane(theme: &Theme, t: &Topology, cp: &ControlPlane) -> Body {
    let mut top = vec![
        kv_health(
            theme,
            "status",
            cp.health,
            if cp.ready {
                "  /ready ok".into()
            } else {
                "  not ready".into()
            },
        ),
        kv(
            theme,
            "cluster",
            format!("{} (CLUSTER_ID {})", cp.cluster, cp.cluster_id),
        ),
        kv(theme, "revision", cp.revision.clone()),
        kv(
            theme,
            "version",
            cp.version.clone().unwrap_or_else(|| "?".into()),
        ),
        kv(
            theme,
            "replicas",
            format!("{}/{} ready", cp.ready_replicas, cp.replicas),
        ),
        kv(theme, "connected proxies", opt(cp.connected_proxies, "")),
        kv(
            theme,
            "push rate",
            opt(cp.push_rate.map(|r| format!("{r:.0}")), "/min"),
        ),
        kv(
            theme,
            "convergence",
            opt(cp.convergence_ms.map(|r| format!("{r:.1}")), " ms (mean)"),
        ),
        kv(
            theme,
            "serves remotes",
            if cp.external_istiod {
                "allowed (EXTERNAL_ISTIOD=true)"
            } else {
                "no"
            },
        ),
        kv(
            theme,
            "exposed at",
            cp.exposed_at.clone().unwrap_or_else(|| "-".into()),
        ),
        kv(theme, "trust domain", cp.trust_domain.clone()),
    ];
    if cp.external {
        top.push(kv(
            theme,
            "external",
            format!("runs in {}, configures {}", cp.cluster, cp.cluster_id),
        ));
    }
    if let Some(e) = &cp.probe_error {
        top.push(Line::styled(
            format!("probe error: {e}"),
            theme.health(Health::Degraded),
        ));
    }
    let served: Vec<String> = t
        .clusters()
        .filter(|c| c.served_by.contains(&cp.id))
        .map(|c| c.name.clone())
        .collect();
    top.push(kv(theme, "serves clusters", served.join(", ")));
    top.push(Line::raw(""));
    top.push(heading(theme, "Remote clusters (/debug/clusterz)"));
    let rows: Vec<Vec<Cell<'static>>> = cp
        .remote_clusters
        .iter()
        .map(|r| {
            let h = match r.status {
                SyncStatus::Synced => Health::Healthy,
                SyncStatus::Syncing | SyncStatus::Unknown => Health::Unknown,
                SyncStatus::Other(_) => Health::Down,
            };
            vec![
                Cell::from(r.id.clone()),
                hcell(theme, h, r.status.to_string()),
                Cell::from(r.secret.clone()),
                Cell::from(format!(
                    "{}",
                    cp.proxies_by_cluster.get(&r.id).copied().unwrap_or(0)
                )),
            ]
        })
        .collect();
    let tab = table(
        theme,
        &["cluster id", "sync", "secret", "proxies"],
        rows,
        vec![
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(30),
            Constraint::Length(8),
        ],
    );
    let mut bottom = Vec::new();
    if let Some(local) = cp.proxies_by_cluster.get(&cp.cluster_id) {
        bottom.push(kv(theme, "local proxies", format!("{local}")));
    }
    bottom.extend(findings_lines(
        theme,
        t.findings_for(&NodeId::control_plane(&cp.id)),
    ));
    Body::Split(top, Box::new(tab), bottom)
}
