//! The standard demo's clusters and tenants, and the generated mesh of the benchmarks.

use super::*;

pub(super) const EAST_GW: &str = "eastwest.east-1.mesh.example";
pub(super) const WEST_GW: &str = "eastwest.west-1.mesh.example";
pub(super) const EXTERNAL_GW: &str = "external-istiod.west-1.mesh.example";
pub(super) use super::federation::{BETA_GW, ROOT_ALPHA, ROOT_BETA};

/// namespace → [(context, injection labels)], services.
pub(super) struct TenantSpec {
    namespace: &'static str,
    clusters: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    services: &'static [&'static str],
}

pub(super) const ENABLED: &[(&str, &str)] = &[(LABEL_INJECTION, "enabled")];
pub(super) const CANARY: &[(&str, &str)] = &[(LABEL_REV, "canary")];
pub(super) const REV_DEFAULT: &[(&str, &str)] = &[(LABEL_REV, "default")];
pub(super) const NO_LABEL: &[(&str, &str)] = &[];
pub(super) const DISABLED: &[(&str, &str)] = &[(LABEL_INJECTION, "disabled")];

pub(super) const TENANTS: &[TenantSpec] = &[
    TenantSpec {
        namespace: "payments",
        clusters: &[
            ("east-1", ENABLED),
            ("east-2", ENABLED),
            ("west-1", ENABLED),
        ],
        services: &[
            "api",
            "ledger",
            "fraud-check",
            "billing-worker",
            "refunds",
            "statements",
        ],
    },
    TenantSpec {
        namespace: "checkout",
        clusters: &[("east-1", CANARY), ("west-1", ENABLED)],
        services: &["cart", "pricing", "tax", "promotions"],
    },
    TenantSpec {
        namespace: "catalog",
        clusters: &[
            ("east-1", ENABLED),
            ("east-2", ENABLED),
            ("west-2", ENABLED),
        ],
        services: &[
            "products",
            "inventory",
            "images",
            "reviews",
            "recommendations",
        ],
    },
    TenantSpec {
        namespace: "search",
        clusters: &[("west-1", ENABLED), ("west-2", ENABLED)],
        services: &["query", "indexer", "suggest", "ranking"],
    },
    TenantSpec {
        namespace: "identity",
        clusters: &[("east-1", ENABLED), ("west-1", ENABLED)],
        services: &["auth", "users", "tokens", "sessions", "mfa"],
    },
    TenantSpec {
        namespace: "analytics",
        clusters: &[("west-2", REV_DEFAULT)],
        services: &["collector", "etl", "dashboards"],
    },
    TenantSpec {
        namespace: "legacy",
        clusters: &[("east-2", NO_LABEL)],
        services: &["soap-gateway", "mainframe-bridge"],
    },
    TenantSpec {
        namespace: "ops-tools",
        clusters: &[("east-1", DISABLED), ("west-1", DISABLED)],
        services: &["grafana", "alertmanager"],
    },
    TenantSpec {
        namespace: "storefront",
        clusters: &[("beta-1", ENABLED)],
        services: &["web", "assets", "cms"],
    },
    TenantSpec {
        namespace: "orders",
        clusters: &[("beta-1", ENABLED)],
        services: &["orders", "fulfilment", "shipping"],
    },
];

impl DemoSim {
    /// The standard demo: mesh-alpha (2 networks, 4 clusters) and mesh-beta (1 cluster).
    pub fn new(seed: u64) -> Self {
        let mut sim = DemoSim::empty(seed, true);
        let specs = [
            (
                "east-1",
                "network-east",
                "us-east-1",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "east-2",
                "network-east",
                "us-east-2",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "west-1",
                "network-west",
                "eu-west-1",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "west-2",
                "network-west",
                "eu-west-2",
                "mesh-alpha",
                "cluster.local",
            ),
            (
                "beta-1",
                "beta-net",
                "ap-south-1",
                "mesh-beta",
                "beta.example",
            ),
        ];
        for (i, (ctx, net, region, mesh, td)) in specs.iter().enumerate() {
            sim.clusters.push(SimCluster {
                context: ctx.to_string(),
                cluster_id: ctx.to_string(),
                network: net.to_string(),
                region: region.to_string(),
                mesh: mesh.to_string(),
                trust_domain: td.to_string(),
                index: i,
            });
        }
        for c in sim.clusters.clone() {
            sim.add_nodes(&c, 3);
            sim.connect(&c.context);
        }
        // east-1: primary with a canary revision, exposes istiod to remotes.
        sim.primary("east-1", &["east-2", "west-1"], ROOT_ALPHA);
        sim.control_plane(
            "east-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "east-1",
            "1.28.2",
            2,
            true,
        );
        sim.control_plane(
            "east-1",
            SYSTEM_NAMESPACE,
            "istiod-canary",
            "canary",
            "east-1",
            "1.29.0",
            1,
            false,
        );
        sim.east_west_gateway("east-1", Some(EAST_GW));
        sim.ingress_gateway("east-1", "ingress.east-1.mesh.example");
        // east-2: remote of east-1 on the same network.
        sim.remote("east-2", "east-1", EAST_GW, ROOT_ALPHA);
        // west-1: primary on the other network, standby for east-2, hosts an external istiod.
        sim.primary("west-1", &["east-1", "east-2"], ROOT_ALPHA);
        sim.control_plane(
            "west-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "west-1",
            "1.28.2",
            2,
            true,
        );
        sim.east_west_gateway("west-1", Some(WEST_GW));
        sim.ingress_gateway("west-1", "ingress.west-1.mesh.example");
        sim.external_control_plane("west-1", "west-2");
        // west-2: configured by the external istiod in west-1.
        sim.remote_of_external("west-2", "west-1", ROOT_ALPHA);
        // beta-1: a cluster that is its own mesh.
        sim.primary("beta-1", &[], ROOT_BETA);
        sim.control_plane(
            "beta-1",
            SYSTEM_NAMESPACE,
            "istiod",
            "default",
            "beta-1",
            "1.27.3",
            1,
            false,
        );
        sim.ingress_gateway("beta-1", "ingress.beta-1.mesh.example");
        sim.east_west_gateway("beta-1", Some(BETA_GW));

        let mut workload_index = 0;
        for t in TENANTS {
            for (ctx, labels) in t.clusters {
                sim.tenant_namespace(ctx, t.namespace, labels);
                for (si, svc) in t.services.iter().enumerate() {
                    // identity/tokens lives in one cluster only: a finding worth showing.
                    if t.namespace == "identity" && *svc == "tokens" && *ctx != "east-1" {
                        continue;
                    }
                    let replicas = 1 + sim.rng.below(4) as u32;
                    sim.add_workload(ctx, t.namespace, svc, replicas, workload_index + si);
                }
            }
            workload_index += t.services.len();
        }
        sim.policies();
        sim.federate();
        sim.probe_all();
        sim
    }

    /// A generated mesh of the given size (for benchmarks): one network per 5 clusters.
    pub fn scaled(seed: u64, scale: Scale) -> Self {
        let mut sim = DemoSim::empty(seed, false);
        for i in 0..scale.clusters {
            let c = SimCluster {
                context: format!("c{i:02}"),
                cluster_id: format!("c{i:02}"),
                network: format!("net-{}", i / 5),
                region: format!("region-{}", i % 4),
                mesh: "mesh-big".into(),
                trust_domain: "cluster.local".into(),
                index: i,
            };
            sim.clusters.push(c.clone());
            sim.add_nodes(&c, 3);
            sim.connect(&c.context);
            sim.primary(&c.context, &[], ROOT_ALPHA);
            sim.control_plane(
                &c.context,
                SYSTEM_NAMESPACE,
                "istiod",
                "default",
                &c.context,
                "1.28.2",
                2,
                true,
            );
            sim.east_west_gateway(
                &c.context,
                Some(&format!("eastwest.{}.mesh.example", c.context)),
            );
        }
        for s in 0..scale.services {
            let ns = format!("tenant-{:02}", s % 40);
            for k in 0..scale.clusters_per_service {
                let ctx = format!("c{:02}", (s + k * 3) % scale.clusters);
                if !sim
                    .world
                    .cluster_mut(&ctx)
                    .namespaces
                    .contains_key(&(String::new(), ns.clone()))
                {
                    sim.tenant_namespace(&ctx, &ns, ENABLED);
                }
                sim.add_workload(
                    &ctx,
                    &ns,
                    &format!("svc-{s:04}"),
                    scale.endpoints_per_service_cluster,
                    s,
                );
            }
        }
        sim.probe_all();
        sim
    }
}
