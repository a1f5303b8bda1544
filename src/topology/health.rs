//! Health rules and findings: where the multi-cluster rules (see the README's findings) become
//! healths and warnings. Pure functions over the model.

use std::collections::{BTreeMap, BTreeSet};

use super::model::*;

/// Gateway: pods Ready, an address (without one every cross-network call breaks), probe passes.
pub fn gateway(g: &mut Gateway) {
    let probe_ok = g.probe != Some(false);
    g.healthy = g.ready_pods > 0 && g.address.is_some() && probe_ok;
    g.health = if g.pods == 0 || g.ready_pods == 0 || !probe_ok {
        Health::Down
    } else if g.address.is_none() {
        match g.kind {
            GatewayKind::EastWest => Health::Down,
            _ => Health::Degraded,
        }
    } else if g.ready_pods < g.pods {
        Health::Degraded
    } else {
        Health::Healthy
    };
}

pub fn control_plane(cp: &mut ControlPlane) {
    cp.health = if !cp.ready {
        Health::Down
    } else if cp.ready_replicas < cp.replicas
        || cp.probe_error.is_some()
        || cp.remote_clusters.iter().any(|r| r.status.is_problem())
    {
        Health::Degraded
    } else {
        Health::Healthy
    };
}

/// The API server connection: live is healthy, connecting unknown, stale degraded (the data
/// may be old), any failure down.
pub fn connection(c: &Connection) -> Health {
    match c {
        Connection::Live => Health::Healthy,
        Connection::Connecting => Health::Unknown,
        Connection::Stale(_) => Health::Degraded,
        Connection::Down(_) | Connection::Forbidden(_) | Connection::AuthError(_) => Health::Down,
    }
}

/// The finding for a connection that is not live, if any.
fn connection_finding(c: &Connection) -> Option<(Severity, String)> {
    let reason = c.reason().unwrap_or("");
    match c {
        Connection::Live | Connection::Connecting => None,
        Connection::Stale(_) => Some((
            Severity::Warning,
            format!("API server not answering: {reason}, data may be old"),
        )),
        Connection::Down(_) => Some((Severity::Error, format!("API server unreachable: {reason}"))),
        Connection::Forbidden(_) => Some((
            Severity::Error,
            format!("API server forbids reading: {reason}"),
        )),
        Connection::AuthError(_) => Some((
            Severity::Error,
            format!("API server refused the credentials: {reason}"),
        )),
    }
}

/// Endpoints of one service: none ready is down, some not ready is degraded.
pub fn endpoints<'a>(counts: impl Iterator<Item = &'a (u32, u32)>) -> Health {
    let (ready, not_ready) = counts.fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
    endpoint_counts(ready, not_ready)
}

/// [`endpoints`] of one count of ready and not-ready endpoints.
pub fn endpoint_counts(ready: u32, not_ready: u32) -> Health {
    if ready + not_ready == 0 {
        Health::Unknown
    } else if ready == 0 {
        Health::Down
    } else if not_ready > 0 {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

fn push(findings: &mut Vec<Finding>, severity: Severity, node: String, message: String) {
    findings.push(Finding {
        severity,
        node,
        message,
    });
}

fn east_west(clusters: &[Cluster]) -> impl Iterator<Item = &Gateway> {
    clusters
        .iter()
        .flat_map(|c| c.gateways.iter())
        .filter(|g| g.kind == GatewayKind::EastWest)
}

/// Whether other networks can reach `net`: through a healthy east-west gateway. With one
/// network there is no other network that needs to reach it.
fn reachable(net: &Network, multi_network: bool) -> bool {
    !multi_network || east_west(&net.clusters).any(|g| g.healthy)
}

/// What the health and findings of a mesh's services depend on besides their endpoints: a
/// service is judged again only when its endpoints or these change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRules {
    pub mesh_id: String,
    /// Networks that no other network can reach.
    pub unreachable: BTreeSet<String>,
    /// Tenant namespace → how many clusters have it.
    pub tenant_spread: BTreeMap<String, usize>,
}

impl ServiceRules {
    pub fn new(mesh_id: &str, networks: &[Network], tenants: &[Tenant]) -> ServiceRules {
        let multi_network = networks.len() > 1;
        ServiceRules {
            mesh_id: mesh_id.to_string(),
            unreachable: networks
                .iter()
                .filter(|n| !reachable(n, multi_network))
                .map(|n| n.name.clone())
                .collect(),
            tenant_spread: tenants
                .iter()
                .map(|t| (t.namespace.clone(), t.clusters.len()))
                .collect(),
        }
    }
}

/// What a cluster's connection and notes say, as findings on its node (none while it
/// connects: its data is partial, a half-read cluster is not "down").
fn connection_findings(c: &Cluster, findings: &mut Vec<Finding>) {
    if c.connection == Connection::Connecting {
        return;
    }
    let node = NodeId::cluster(&c.name);
    if let Some((severity, message)) = connection_finding(&c.connection) {
        push(findings, severity, node.clone(), message);
    }
    for (topic, note) in &c.notes {
        // A credential plugin that runs long is no part of the cluster left unread.
        let (severity, message) = match topic.as_str() {
            super::snapshot::CREDENTIALS_NOTE => (Severity::Warning, format!("{topic}: {note}")),
            super::snapshot::KUBECONFIG_NOTE => (Severity::Info, format!("{topic}: {note}")),
            _ => (
                Severity::Warning,
                format!("{topic} could not be read: {note}"),
            ),
        };
        push(findings, severity, node.clone(), message);
    }
}

/// A cluster never reached: its connection is its whole status (unknown while connecting,
/// down when refused), and why it is not connected is its finding.
pub fn not_connected(c: &mut Cluster, findings: &mut Vec<Finding>) {
    c.health = connection(&c.connection);
    connection_findings(c, findings);
}

/// Statuses of networks and clusters, and the mesh-wide findings. Services are judged
/// already ([`service`]); their findings come in `service_findings`. `any_connecting`: some
/// cluster of the topology (in this mesh or not yet in any) has not answered yet.
pub fn mesh(m: &mut Mesh, service_findings: Vec<Finding>, any_connecting: bool) {
    let mut findings = std::mem::take(&mut m.findings);
    let multi_network = m.networks.len() > 1;

    // Networks: reachable through a healthy east-west gateway.
    for net in &mut m.networks {
        net.reachable = reachable(net, multi_network);
        let east_west: Vec<&Gateway> = east_west(&net.clusters).collect();
        let endpoints: u64 = net.clusters.iter().map(|c| c.endpoints_total).sum();
        net.health = if multi_network && !net.reachable {
            Health::Down
        } else if east_west.iter().any(|g| !g.healthy) {
            Health::Degraded
        } else {
            Health::Healthy
        };
        if multi_network && !net.reachable {
            let why = match east_west.first() {
                None => "has no east-west gateway".to_string(),
                Some(g) if g.address.is_none() => {
                    format!("east-west gateway {}/{} has no address", g.cluster, g.name)
                }
                Some(g) => format!(
                    "east-west gateway {}/{} is not ready ({}/{} pods)",
                    g.cluster, g.name, g.ready_pods, g.pods
                ),
            };
            if endpoints > 0 {
                push(
                    &mut findings,
                    Severity::Error,
                    NodeId::network(&m.id, &net.name),
                    format!(
                        "{why}: its {endpoints} endpoints ({services} services) are unreachable from other networks",
                        services = m
                            .services
                            .iter()
                            .filter(|s| s.endpoints.iter().any(|e| *e.network == *net.name))
                            .count()
                    ),
                );
            }
        }
    }

    // Control planes by id, for cluster statuses.
    let cps: BTreeMap<String, (Health, bool, String)> = m
        .clusters()
        .flat_map(|c| c.control_planes.iter())
        .map(|cp| (cp.id.clone(), (cp.health, cp.ready, cp.cluster.clone())))
        .collect();
    let mut serving: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in m.clusters() {
        for id in &c.served_by {
            serving
                .entry(id.clone())
                .or_default()
                .insert(c.name.clone());
        }
    }

    // While a cluster syncs, a control plane it runs may not be known yet: whom it serves is
    // decided once every cluster has answered.
    for net in &mut m.networks {
        for c in &mut net.clusters {
            if c.connection == Connection::Connecting {
                // Its watches are still syncing: the data is partial, so no verdict and no
                // finding yet (a half-read cluster is not "down").
                c.health = Health::Unknown;
                continue;
            }
            let node = NodeId::cluster(&c.name);
            let mut status = connection(&c.connection);
            connection_findings(c, &mut findings);
            let served: Vec<&(Health, bool, String)> =
                c.served_by.iter().filter_map(|id| cps.get(id)).collect();
            if c.role != ClusterRole::Unknown && c.role != ClusterRole::ExternalControlPlane {
                if served.is_empty() && any_connecting {
                    status = status.worst(Health::Unknown);
                } else if served.is_empty() {
                    status = status.worst(Health::Down);
                    push(
                        &mut findings,
                        Severity::Error,
                        node.clone(),
                        "no control plane serves this cluster".into(),
                    );
                } else if served.iter().all(|(_, ready, _)| !ready) {
                    status = status.worst(Health::Down);
                    if c.role != ClusterRole::Primary {
                        push(
                            &mut findings,
                            Severity::Error,
                            node.clone(),
                            format!(
                                "{} cluster's only control plane ({}) is not ready: proxies get no config and new pods are not injected",
                                c.role.label(),
                                c.served_by.join(", ")
                            ),
                        );
                    }
                } else if served.iter().any(|(h, _, _)| *h != Health::Healthy) {
                    status = status.worst(Health::Degraded);
                }
            }
            for cp in &c.control_planes {
                status = status.worst(match cp.health {
                    Health::Down => Health::Degraded,
                    h => h,
                });
                if cp.replicas == 1 && serving.get(&cp.id).map(|s| s.len()).unwrap_or(0) > 1 {
                    push(
                        &mut findings,
                        Severity::Warning,
                        NodeId::control_plane(&cp.id),
                        format!(
                            "runs 1 replica but serves {} clusters",
                            serving.get(&cp.id).map(|s| s.len()).unwrap_or(0)
                        ),
                    );
                }
                for r in &cp.remote_clusters {
                    if r.status.is_problem() {
                        push(
                            &mut findings,
                            Severity::Warning,
                            NodeId::control_plane(&cp.id),
                            format!(
                                "remote cluster {} is {} (secret {})",
                                r.id, r.status, r.secret
                            ),
                        );
                    }
                }
                if let Some(err) = &cp.probe_error {
                    push(
                        &mut findings,
                        Severity::Warning,
                        NodeId::control_plane(&cp.id),
                        format!("probe failed: {err}"),
                    );
                }
            }
            for g in &c.gateways {
                if !g.healthy {
                    status = status.worst(Health::Degraded);
                    let why = if g.address.is_none() {
                        "has no address".to_string()
                    } else if g.probe == Some(false) {
                        "fails its readiness probe".to_string()
                    } else {
                        format!("has {}/{} pods ready", g.ready_pods, g.pods)
                    };
                    push(
                        &mut findings,
                        if g.kind == GatewayKind::EastWest {
                            Severity::Error
                        } else {
                            Severity::Warning
                        },
                        NodeId::gateway(&g.id),
                        format!("{} gateway {why}", g.kind.label()),
                    );
                }
            }
            if c.namespaces.iter().any(|n| n.health == Health::Down) {
                status = status.worst(Health::Degraded);
            }
            c.health = status;
        }
    }

    // One control plane for several clusters: no HA.
    let cluster_count = m.clusters().count();
    let distinct_cps: BTreeSet<&String> = m.clusters().flat_map(|c| c.served_by.iter()).collect();
    if cluster_count > 1 && distinct_cps.len() == 1 {
        push(
            &mut findings,
            Severity::Warning,
            NodeId::mesh(&m.id),
            format!(
                "one control plane ({}) serves all {cluster_count} clusters: no HA",
                distinct_cps
                    .iter()
                    .next()
                    .map(|s| s.as_str())
                    .unwrap_or("?")
            ),
        );
    }

    // Tenants: the same namespace behaving differently in different clusters.
    for t in &m.tenants {
        let kinds: BTreeSet<&Injection> = t.clusters.iter().map(|c| &c.injection).collect();
        if kinds.len() > 1 {
            let detail: Vec<String> = t
                .clusters
                .iter()
                .map(|c| format!("{} {}", c.cluster, c.injection))
                .collect();
            push(
                &mut findings,
                Severity::Warning,
                NodeId::tenant(&m.id, &t.namespace),
                format!(
                    "injection differs between clusters ({}): the same tenant behaves differently",
                    detail.join(", ")
                ),
            );
        }
    }

    findings.extend(service_findings);
    m.health = Health::worst_of(m.clusters().map(|c| c.health));
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.node.cmp(&b.node)));
    m.findings = findings;
}

/// A service's health and findings: its endpoints (none ready is down, some not ready
/// degraded), ready endpoints stranded in an unreachable network, all ready endpoints in one
/// cluster of a tenant spread over several.
pub fn service(svc: &mut Service, rules: &ServiceRules, findings: &mut Vec<Finding>) {
    let (ready, not_ready) = svc
        .endpoints
        .iter()
        .fold((0, 0), |(r, n), e| (r + e.ready, n + e.not_ready));
    svc.health = endpoint_counts(ready, not_ready);
    // Built only when a finding needs it: most services have none.
    let node = || NodeId::mesh_service(&rules.mesh_id, &svc.namespace, &svc.name);
    let mut ready_in = svc
        .endpoints
        .iter()
        .filter(|e| e.ready > 0)
        .map(|e| &*e.cluster);
    let first_ready = ready_in.next();
    let single_cluster = first_ready.is_some() && ready_in.all(|c| Some(c) == first_ready);
    let total = ready + not_ready;
    let spread = rules
        .tenant_spread
        .get(&*svc.namespace)
        .copied()
        .unwrap_or(0);
    if single_cluster && spread > 1 {
        push(
            findings,
            Severity::Warning,
            node(),
            format!(
                "every ready endpoint ({ready}) sits in {}: no cross-cluster failover",
                first_ready.unwrap_or("?")
            ),
        );
    }
    let stranded: u32 = if rules.unreachable.is_empty() {
        0
    } else {
        svc.endpoints
            .iter()
            .filter(|e| rules.unreachable.contains(&*e.network))
            .map(|e| e.ready)
            .sum()
    };
    // The network carries the finding; its services show it as degraded health and in their
    // endpoint distribution, rather than one warning each.
    if stranded > 0 {
        svc.health = svc.health.worst(Health::Degraded);
    }
    if total > 0 && ready == 0 {
        push(
            findings,
            Severity::Error,
            node(),
            format!("no ready endpoint in any cluster ({total} not ready)"),
        );
    }
}
