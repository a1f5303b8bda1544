//! Pure derivation from YAML fixtures: real Kubernetes object shapes in, model out. No network.

use std::path::Path;
use std::time::SystemTime;

use meshtop::topology::derive::derive;
use meshtop::topology::model::*;
use meshtop::topology::snapshot::{Connection, KubeObject, Store, Update};
use serde::Deserialize;

/// Loads `tests/fixtures/<scenario>/<context>.yaml` (multi-document) in the given order, each
/// cluster live.
fn load(scenario: &str, contexts: &[&str]) -> Store {
    let mut store = Store::default();
    for context in contexts {
        store.apply(
            Update::Connection {
                context: context.to_string(),
                connection: meshtop::topology::snapshot::Connection::Live,
            },
            SystemTime::UNIX_EPOCH,
        );
        add_objects(&mut store, scenario, context);
    }
    store
}

/// Applies the objects of `tests/fixtures/<scenario>/<context>.yaml` to `context`, whatever
/// its connection.
fn add_objects(store: &mut Store, scenario: &str, context: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(scenario)
        .join(format!("{context}.yaml"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        let object = KubeObject::from_value(value).expect("known object");
        store.apply(
            Update::Apply {
                context: context.to_string(),
                object: Box::new(object),
            },
            SystemTime::UNIX_EPOCH,
        );
    }
}

fn set_connection(store: &mut Store, context: &str, connection: Connection) {
    store.apply(
        Update::Connection {
            context: context.into(),
            connection,
        },
        SystemTime::UNIX_EPOCH,
    );
}

fn topology() -> Topology {
    derive(&load("primary-remote", &["primary", "remote", "west"]))
}

#[test]
fn roles_and_cluster_ids_come_from_istio_objects_not_context_names() {
    let t = topology();
    let primary = t.cluster("primary").unwrap();
    assert_eq!(primary.role, ClusterRole::Primary);
    assert_eq!(primary.cluster_id, "cluster-a");
    let remote = t.cluster("remote").unwrap();
    assert_eq!(remote.role, ClusterRole::Remote);
    assert_eq!(remote.cluster_id, "cluster-b", "read from the injector URL");
    assert_eq!(
        remote.served_by,
        vec!["primary/istio-system/istiod".to_string()]
    );
    let wiring = remote.wiring.as_ref().unwrap();
    assert_eq!(
        wiring.istiod_address.as_deref(),
        Some("ew.cluster-a.example")
    );
    assert_eq!(wiring.control_plane_clusters, vec!["cluster-a".to_string()]);
}

#[test]
fn mesh_id_is_read_from_primaries_and_inherited_by_remotes() {
    let t = topology();
    assert_eq!(t.meshes.len(), 1);
    let mesh = &t.meshes[0];
    assert_eq!(mesh.id, "mesh1");
    assert_eq!(mesh.trust_domain, "cluster.local");
    assert_eq!(mesh.clusters().count(), 3);
}

#[test]
fn networks_group_clusters_by_the_system_namespace_label() {
    let t = topology();
    let nets: Vec<(String, Vec<String>)> = t.meshes[0]
        .networks
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.clusters.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        nets,
        vec![
            ("network-1".into(), vec!["primary".into(), "remote".into()]),
            ("network-2".into(), vec!["west".into()]),
        ]
    );
}

#[test]
fn same_name_and_namespace_merge_into_one_service() {
    let t = topology();
    let api = t.meshes[0]
        .service("payments", "api")
        .expect("merged service");
    let clusters: Vec<&str> = api.endpoints.iter().map(|e| &*e.cluster).collect();
    assert_eq!(clusters, vec!["primary", "remote", "west"]);
    assert_eq!(api.ready(), 4);
    assert_eq!(api.total(), 5);
    let remote = api
        .endpoints
        .iter()
        .find(|e| &*e.cluster == "remote")
        .unwrap();
    assert_eq!((remote.ready, remote.not_ready), (1, 1));
    assert_eq!(
        &*remote.locality, "region-1/zone-b",
        "locality from the node labels"
    );
    assert_eq!(&*remote.network, "network-1");
}

#[test]
fn cluster_local_services_never_merge() {
    let t = topology();
    assert!(t.meshes[0].service("internal", "cache").is_none());
    assert_eq!(t.meshes[0].services.len(), 1);
}

#[test]
fn a_gateway_without_address_makes_its_network_unreachable() {
    let t = topology();
    let west = t.cluster("west").unwrap();
    let gw = &west.gateways[0];
    assert_eq!(gw.kind, GatewayKind::EastWest);
    assert_eq!(gw.address, None);
    assert!(!gw.healthy);
    assert_eq!(gw.health, Health::Down);
    let primary_gw = &t.cluster("primary").unwrap().gateways[0];
    assert!(primary_gw.healthy);
    assert!(primary_gw.exposes_istiod);
    let mesh = &t.meshes[0];
    let net2 = mesh
        .networks
        .iter()
        .find(|n| n.name == "network-2")
        .unwrap();
    assert!(!net2.reachable);
    let finding = mesh
        .findings
        .iter()
        .find(|f| f.node == NodeId::network("mesh1", "network-2"))
        .expect("unreachable network is a finding");
    assert_eq!(finding.severity, Severity::Error);
    assert!(
        finding.message.contains("has no address"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("(1 services)"),
        "{}",
        finding.message
    );
    let api = mesh.service("payments", "api").unwrap();
    assert_eq!(
        api.health,
        Health::Degraded,
        "endpoints behind the broken gateway degrade it"
    );
}

#[test]
fn remote_clusters_come_from_secret_keys_without_their_values() {
    let store = load("primary-remote", &["primary", "remote", "west"]);
    let secret = store.clusters[0].secrets.values().next().unwrap();
    assert!(secret
        .data
        .as_ref()
        .unwrap()
        .values()
        .all(|v| v.0.is_empty()));
    let t = derive(&store);
    let cp = t.control_plane("primary/istio-system/istiod").unwrap();
    assert_eq!(cp.remote_clusters.len(), 1);
    assert_eq!(cp.remote_clusters[0].id, "cluster-b");
    assert_eq!(
        cp.remote_clusters[0].status,
        SyncStatus::Unknown,
        "no probe yet"
    );
    assert!(cp.external_istiod);
    assert_eq!(cp.exposed_at.as_deref(), Some("ew.cluster-a.example"));
}

#[test]
fn injection_that_differs_between_clusters_is_a_tenant_finding() {
    let t = topology();
    let tenant = t.meshes[0].tenant("payments").unwrap();
    let injections: Vec<String> = tenant
        .clusters
        .iter()
        .map(|c| c.injection.to_string())
        .collect();
    assert_eq!(injections, vec!["enabled", "enabled", "rev:canary"]);
    assert!(t.meshes[0]
        .findings
        .iter()
        .any(|f| f.node == NodeId::tenant("mesh1", "payments")
            && f.message.contains("injection differs")));
}

#[test]
fn a_remote_whose_only_control_plane_is_unready_is_down() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let primary = store.cluster_mut("primary");
    let key = ("istio-system".to_string(), "istiod".to_string());
    let mut istiod = primary.deployments.get(&key).unwrap().clone();
    istiod.status.as_mut().unwrap().ready_replicas = Some(0);
    primary.apply(KubeObject::Deployment(istiod));
    let t = derive(&store);
    let remote = t.cluster("remote").unwrap();
    assert_eq!(remote.health, Health::Down);
    assert!(t
        .findings_for(&NodeId::cluster("remote"))
        .any(|f| f.message.contains("only control plane")));
}

#[test]
fn a_malformed_mesh_config_is_reported_and_nothing_else_is_lost() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let west = store.cluster_mut("west");
    let key = ("istio-system".to_string(), "istio".to_string());
    let mut cm = west.config_maps.get(&key).unwrap().clone();
    cm.data
        .as_mut()
        .unwrap()
        .insert("mesh".into(), "defaultConfig: [unclosed".into());
    west.apply(KubeObject::ConfigMap(cm));
    let t = derive(&store);
    assert!(t.findings_for(&NodeId::cluster("west")).any(
        |f| f.severity == Severity::Error && f.message.contains("ConfigMap istio-system/istio")
    ));
    // Its services are still there.
    assert!(t.cluster("west").unwrap().endpoints_total > 0);
}

#[test]
fn a_failed_connection_is_shown_per_cluster() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    store.apply(
        Update::Connection {
            context: "west".into(),
            connection: meshtop::topology::snapshot::Connection::Down("403 Forbidden".into()),
        },
        SystemTime::UNIX_EPOCH,
    );
    let t = derive(&store);
    let west = t.cluster("west").unwrap();
    assert_eq!(west.health, Health::Down);
    assert_eq!(west.connection.reason(), Some("403 Forbidden"));
    assert_eq!(
        t.cluster("primary").unwrap().connection,
        Connection::Live,
        "others unaffected"
    );
}

#[test]
fn incremental_derivation_equals_a_fresh_one() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let mut deriver = meshtop::topology::derive::Deriver::default();
    let _ = deriver.derive(&store);
    let remote = store.cluster_mut("remote");
    let key = ("payments".to_string(), "api-def".to_string());
    let mut slice = remote.endpoint_slices.get(&key).unwrap().clone();
    slice.endpoints.as_mut().unwrap()[1]
        .conditions
        .as_mut()
        .unwrap()
        .ready = Some(true);
    remote.apply(KubeObject::EndpointSlice(slice));
    let incremental = deriver.derive(&store);
    assert_eq!(incremental, derive(&store));
    assert_eq!(
        incremental.meshes[0]
            .service("payments", "api")
            .unwrap()
            .ready(),
        5
    );
}

#[test]
fn cached_endpoint_counts_follow_node_label_changes() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let mut deriver = meshtop::topology::derive::Deriver::default();
    let _ = deriver.derive(&store);
    let remote = store.cluster_mut("remote");
    let key = (String::new(), "node-b".to_string());
    let mut node = remote.nodes.get(&key).unwrap().clone();
    node.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("topology.kubernetes.io/zone".into(), "zone-moved".into());
    remote.apply(KubeObject::Node(node));
    let incremental = deriver.derive(&store);
    assert_eq!(incremental, derive(&store));
    let api = incremental.meshes[0].service("payments", "api").unwrap();
    assert!(api
        .endpoints
        .iter()
        .any(|e| &*e.locality == "region-1/zone-moved"));
}

#[test]
fn incremental_join_follows_services_that_appear_and_disappear() {
    use meshtop::topology::snapshot::ObjectKind;
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let mut deriver = meshtop::topology::derive::Deriver::default();
    let _ = deriver.derive(&store);
    // west loses payments/api: the merged service keeps the other clusters only.
    let west = store.cluster_mut("west");
    west.delete(ObjectKind::Service, &("payments".into(), "api".into()));
    west.delete(
        ObjectKind::EndpointSlice,
        &("payments".into(), "api-ghi".into()),
    );
    let after_delete = deriver.derive(&store);
    assert_eq!(after_delete, derive(&store));
    let api = after_delete.meshes[0].service("payments", "api").unwrap();
    assert!(api.endpoints.iter().all(|e| &*e.cluster != "west"));
    // A service only west has comes and goes as its own merged service.
    let mut svc = store.cluster_mut("primary").services[&("payments".into(), "api".into())].clone();
    svc.metadata.name = Some("only-west".into());
    store.cluster_mut("west").apply(KubeObject::Service(svc));
    let with_new = deriver.derive(&store);
    assert_eq!(with_new, derive(&store));
    assert!(with_new.meshes[0]
        .service("payments", "only-west")
        .is_some());
    store.cluster_mut("west").delete(
        ObjectKind::Service,
        &("payments".into(), "only-west".into()),
    );
    let without = deriver.derive(&store);
    assert_eq!(without, derive(&store));
    assert!(without.meshes[0].service("payments", "only-west").is_none());
}

/// The guard of every cache in `Deriver`: the simulator's own life plus random changes, several
/// clusters at once, over many seeds; the incremental result must equal a fresh derivation at
/// every step.
#[test]
fn incremental_derivation_equals_a_fresh_one_over_random_histories() {
    use meshtop::sources::demo::{DemoSim, Rng, Scale};
    use meshtop::topology::derive::Deriver;

    let small = Scale {
        clusters: 6,
        services: 30,
        endpoints_per_service_cluster: 3,
        clusters_per_service: 2,
    };
    for seed in 0..16u64 {
        let mut sim = if seed % 4 == 3 {
            DemoSim::scaled(seed, small)
        } else {
            DemoSim::new(seed)
        };
        let mut store = Store::default();
        for update in sim.drain() {
            store.apply(update, SystemTime::UNIX_EPOCH);
        }
        // A context never reached, until a random change makes it live.
        set_connection(
            &mut store,
            "never-reached",
            Connection::Down("connection refused".into()),
        );
        let mut rng = Rng::new(seed * 7919 + 1);
        let mut deriver = Deriver::default();
        assert_eq!(deriver.derive(&store), derive(&store), "seed {seed}, start");
        for step in 0..40 {
            for update in sim.step() {
                store.apply(update, SystemTime::UNIX_EPOCH);
            }
            let changing = 1 + rng.below(3) as usize;
            for _ in 0..changing {
                let i = rng.below(store.clusters.len() as u64) as usize;
                random_change(&mut store, i, &mut rng);
            }
            // Sometimes derive only every other step, so changes pile up between derivations.
            if rng.chance(80) {
                assert_eq!(
                    deriver.derive(&store),
                    derive(&store),
                    "seed {seed}, step {step}"
                );
            }
        }
    }

    fn pick<K: Clone, V: Clone>(
        map: &std::collections::BTreeMap<K, V>,
        rng: &mut Rng,
    ) -> Option<(K, V)> {
        if map.is_empty() {
            return None;
        }
        let n = rng.below(map.len() as u64) as usize;
        map.iter().nth(n).map(|(k, v)| (k.clone(), v.clone()))
    }

    fn random_change(store: &mut Store, i: usize, rng: &mut Rng) {
        use meshtop::topology::snapshot::ObjectKind;
        let context = store.clusters[i].context.clone();
        let now = SystemTime::UNIX_EPOCH;
        let apply = |store: &mut Store, object: KubeObject| {
            store.apply(
                Update::Apply {
                    context: context.clone(),
                    object: Box::new(object),
                },
                now,
            )
        };
        let c = &store.clusters[i];
        match rng.below(12) {
            0 | 1 => {
                // Flip the readiness of one endpoint.
                if let Some((_, mut slice)) = pick(&c.endpoint_slices, rng) {
                    if let Some(ep) = slice.endpoints.as_mut().and_then(|e| e.first_mut()) {
                        let cond = ep.conditions.get_or_insert_with(Default::default);
                        cond.ready = Some(!cond.ready.unwrap_or(true));
                    }
                    apply(store, KubeObject::EndpointSlice(slice));
                }
            }
            2 => {
                if let Some((key, _)) = pick(&c.endpoint_slices, rng) {
                    store
                        .cluster_mut(&context)
                        .delete(ObjectKind::EndpointSlice, &key);
                }
            }
            3 => {
                if let Some((key, svc)) = pick(&c.services, rng) {
                    if rng.chance(50) {
                        store
                            .cluster_mut(&context)
                            .delete(ObjectKind::Service, &key);
                    } else {
                        let mut svc = svc;
                        svc.metadata.name = Some(format!("{}-copy", key.1));
                        apply(store, KubeObject::Service(svc));
                    }
                }
            }
            4 => {
                // A node moves zone: localities change for every endpoint on it.
                if let Some((_, mut node)) = pick(&c.nodes, rng) {
                    let zone = format!("zone-{}", rng.below(3));
                    node.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert("topology.kubernetes.io/zone".into(), zone);
                    apply(store, KubeObject::Node(node));
                }
            }
            5 => {
                // A pod overrides (or stops overriding) its locality.
                if let Some((_, mut pod)) = pick(&c.pods, rng) {
                    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
                    if labels.remove("istio-locality").is_none() {
                        labels.insert("istio-locality".into(), "r.z.s".into());
                    }
                    apply(store, KubeObject::Pod(pod));
                }
            }
            6 => {
                // A tenant changes its injection.
                if let Some((_, mut ns)) = pick(&c.namespaces, rng) {
                    let labels = ns.metadata.labels.get_or_insert_with(Default::default);
                    if labels.remove("istio-injection").is_none() {
                        labels.insert("istio-injection".into(), "enabled".into());
                    }
                    apply(store, KubeObject::Namespace(ns));
                }
            }
            7 => {
                let connection = match rng.below(6) {
                    0 => Connection::Stale("timeout".into()),
                    1 => Connection::Down("connection refused".into()),
                    2 => Connection::Forbidden("403".into()),
                    3 => Connection::Connecting,
                    _ => Connection::Live,
                };
                store.apply(
                    Update::Connection {
                        context: context.clone(),
                        connection,
                    },
                    now,
                );
            }
            8 => {
                // A relist that lost some slices.
                let kept: Vec<KubeObject> = c
                    .endpoint_slices
                    .values()
                    .filter(|_| rng.chance(80))
                    .map(|s| KubeObject::EndpointSlice(s.clone()))
                    .collect();
                store.apply(
                    Update::Replace {
                        context: context.clone(),
                        kind: ObjectKind::EndpointSlice,
                        istio_kind: None,
                        objects: kept,
                    },
                    now,
                );
            }
            9 => {
                // An istiod becomes unready or ready again.
                if let Some((_, mut d)) = pick(&c.deployments, rng) {
                    let status = d.status.get_or_insert_with(Default::default);
                    status.ready_replicas = Some(if status.ready_replicas == Some(0) {
                        1
                    } else {
                        0
                    });
                    apply(store, KubeObject::Deployment(d));
                }
            }
            10 => {
                let note = rng.chance(50).then(|| "403 forbidden".to_string());
                store.apply(
                    Update::Note {
                        context: context.clone(),
                        topic: "Secrets".into(),
                        note,
                    },
                    now,
                );
            }
            _ => {
                // Services move between clusters' networks or change ports.
                if let Some((key, _)) = pick(&c.config_maps, rng) {
                    if rng.chance(20) {
                        store
                            .cluster_mut(&context)
                            .delete(ObjectKind::ConfigMap, &key);
                    }
                }
            }
        }
    }
}

#[test]
fn connection_states_decide_cluster_health_and_notes_become_findings() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    let set = |store: &mut Store, context: &str, connection: Connection| {
        store.apply(
            Update::Connection {
                context: context.into(),
                connection,
            },
            SystemTime::UNIX_EPOCH,
        )
    };
    set(&mut store, "west", Connection::Stale("timeout".into()));
    set(
        &mut store,
        "remote",
        Connection::AuthError("token expired".into()),
    );
    store.apply(
        Update::Note {
            context: "primary".into(),
            topic: "Secrets".into(),
            note: Some("403 forbidden".into()),
        },
        SystemTime::UNIX_EPOCH,
    );
    let t = derive(&store);
    let west = t.cluster("west").unwrap();
    assert_eq!(west.health, Health::Degraded);
    assert!(t
        .findings_for(&NodeId::cluster("west"))
        .any(|f| f.severity == Severity::Warning
            && f.message == "API server not answering: timeout, data may be old"));
    assert_eq!(t.cluster("remote").unwrap().health, Health::Down);
    assert!(t
        .findings_for(&NodeId::cluster("remote"))
        .any(|f| f.severity == Severity::Error && f.message.contains("token expired")));
    let primary = t.cluster("primary").unwrap();
    assert_eq!(
        primary.notes.get("Secrets").map(String::as_str),
        Some("403 forbidden")
    );
    assert!(t.findings_for(&NodeId::cluster("primary")).any(
        |f| f.severity == Severity::Warning && f.message.contains("Secrets could not be read")
    ));
    set(&mut store, "primary", Connection::Connecting);
    let t = derive(&store);
    assert_eq!(t.cluster("primary").unwrap().health, Health::Unknown);
    // A cluster whose watches are still syncing gets no verdict and no finding: its remote
    // must not read as "down" because its control plane is not known yet.
    assert_eq!(
        t.findings_for(&NodeId::cluster("primary")).count(),
        0,
        "no finding while connecting"
    );
}

#[test]
fn a_remote_is_not_judged_while_its_primary_is_still_connecting() {
    let mut store = load("primary-remote", &["remote", "west"]);
    let connect = |store: &mut Store, connection: Connection| {
        store.apply(
            Update::Connection {
                context: "primary".into(),
                connection,
            },
            SystemTime::UNIX_EPOCH,
        )
    };
    connect(&mut store, Connection::Connecting);
    let t = derive(&store);
    let remote = t.cluster("remote").unwrap();
    assert_ne!(
        remote.health,
        Health::Down,
        "not down before its primary answered"
    );
    assert!(!t
        .findings_for(&NodeId::cluster("remote"))
        .any(|f| f.message.contains("no control plane serves")));
    // Once every cluster has answered, a remote nobody serves is down, with the finding.
    connect(&mut store, Connection::Live);
    let t = derive(&store);
    assert_eq!(t.cluster("remote").unwrap().health, Health::Down);
    assert!(t
        .findings_for(&NodeId::cluster("remote"))
        .any(|f| f.message.contains("no control plane serves")));
}

/// The guard of the endpoint counter's incremental path: long runs of EndpointSlice changes
/// only (readiness flips, a slice moving to another Service, slices added and removed), one or
/// two per derivation; the incremental result equals a fresh derivation after every one.
#[test]
fn incremental_endpoint_counts_equal_fresh_ones_over_slice_changes() {
    use meshtop::sources::demo::{DemoSim, Rng, Scale};
    use meshtop::topology::derive::Deriver;
    use meshtop::topology::snapshot::ObjectKind;

    let scale = Scale {
        clusters: 4,
        services: 24,
        endpoints_per_service_cluster: 3,
        clusters_per_service: 2,
    };
    for seed in 0..6u64 {
        let mut sim = DemoSim::scaled(seed, scale);
        let _ = sim.drain();
        let mut store = sim.world().clone();
        let mut rng = Rng::new(seed * 31 + 7);
        let mut deriver = Deriver::default();
        assert_eq!(deriver.derive(&store), derive(&store), "seed {seed}, start");
        for step in 0..80 {
            for _ in 0..1 + rng.below(2) {
                let i = rng.below(store.clusters.len() as u64) as usize;
                let c = &store.clusters[i];
                let context = c.context.clone();
                let slices: Vec<_> = c.endpoint_slices.iter().collect();
                if slices.is_empty() {
                    continue;
                }
                let (key, slice) = slices[rng.below(slices.len() as u64) as usize];
                let (key, mut slice) = (key.clone(), slice.clone());
                let other_service = c
                    .services
                    .keys()
                    .nth(rng.below(c.services.len() as u64) as usize)
                    .map(|(_, name)| name.clone());
                match rng.below(10) {
                    0 => {
                        store
                            .cluster_mut(&context)
                            .delete(ObjectKind::EndpointSlice, &key);
                        continue;
                    }
                    1 => {
                        // A second slice for the same Service.
                        slice.metadata.name = Some(format!("{}-extra{step}", key.1));
                    }
                    2 => {
                        // The slice now belongs to another Service (or one of another namespace).
                        if let Some(name) = other_service {
                            slice
                                .metadata
                                .labels
                                .get_or_insert_with(Default::default)
                                .insert("kubernetes.io/service-name".into(), name);
                        }
                    }
                    _ => {
                        let n = slice.endpoints.as_ref().map(Vec::len).unwrap_or(0);
                        if let Some(ep) = slice
                            .endpoints
                            .as_mut()
                            .and_then(|e| e.get_mut(rng.below(n.max(1) as u64) as usize))
                        {
                            let cond = ep.conditions.get_or_insert_with(Default::default);
                            cond.ready = Some(!cond.ready.unwrap_or(true));
                        }
                    }
                }
                store.apply(
                    Update::Apply {
                        context,
                        object: Box::new(KubeObject::EndpointSlice(slice)),
                    },
                    SystemTime::UNIX_EPOCH,
                );
            }
            assert_eq!(
                deriver.derive(&store),
                derive(&store),
                "seed {seed}, step {step}"
            );
        }
    }
}

/// Clusters whose API server was never reached are in no mesh: listed apart, in kubeconfig
/// order, with why; the mesh of the reachable clusters is exactly what it is without them.
#[test]
fn clusters_never_reached_are_listed_apart_not_as_a_mesh() {
    let contexts = ["primary", "remote", "west"];
    let baseline = derive(&load("primary-remote", &contexts));
    let mut store = Store::default();
    set_connection(
        &mut store,
        "dead",
        Connection::Down("connection refused".into()),
    );
    for context in contexts {
        set_connection(&mut store, context, Connection::Live);
        add_objects(&mut store, "primary-remote", context);
    }
    set_connection(
        &mut store,
        "expired",
        Connection::AuthError("token expired".into()),
    );
    let t = derive(&store);

    assert_eq!(
        t.meshes.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["mesh1"],
        "no mesh `unknown` for the clusters never reached"
    );
    assert!(t
        .meshes
        .iter()
        .flat_map(|m| m.networks.iter())
        .all(|n| n.name != "unknown"));
    assert_eq!(
        t.meshes, baseline.meshes,
        "the reachable mesh is unaffected"
    );
    assert_eq!(t.federation, baseline.federation);

    let apart: Vec<(&str, &str, Health)> = t
        .not_connected
        .iter()
        .map(|c| (c.name.as_str(), c.connection.label(), c.health))
        .collect();
    assert_eq!(
        apart,
        vec![
            ("dead", "down", Health::Down),
            ("expired", "auth error", Health::Down)
        ],
        "kubeconfig order, never healthy"
    );
    assert_eq!(
        t.cluster("dead").and_then(|c| c.connection.reason()),
        Some("connection refused")
    );
    // Every cluster is still seen by those who walk them all (exit status, status bar).
    let all: Vec<&str> = t.clusters().map(|c| c.name.as_str()).collect();
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all.contains(&"dead") && all.contains(&"expired"));
    assert!(t.mesh_of_cluster("dead").is_none());
    // Why each is not connected is a finding on its node, outside any mesh.
    assert!(t
        .findings_for(&NodeId::cluster("dead"))
        .any(|f| f.severity == Severity::Error
            && f.message == "API server unreachable: connection refused"));
    assert!(t
        .findings_for(&NodeId::cluster("expired"))
        .any(|f| f.severity == Severity::Error && f.message.contains("token expired")));
    assert!(t.meshes.iter().all(|m| m
        .findings
        .iter()
        .all(|f| f.node != NodeId::cluster("dead") && f.node != NodeId::cluster("expired"))));
    assert_eq!(t.findings.len(), 2, "{:?}", t.findings);
}

/// At start every cluster connects: none is in a mesh until it is live, none gets a verdict or
/// a finding, and a live one moves into its mesh while another still connects.
#[test]
fn a_connecting_cluster_waits_apart_until_it_is_live() {
    let mut store = Store::default();
    for context in ["primary", "remote"] {
        set_connection(&mut store, context, Connection::Connecting);
        // Its first LISTs are under way: some objects are in, the cluster is not live yet.
        add_objects(&mut store, "primary-remote", context);
    }
    store.apply(
        Update::Note {
            context: "remote".into(),
            topic: meshtop::topology::snapshot::CREDENTIALS_NOTE.into(),
            note: Some("credential plugin running for 12 s".into()),
        },
        SystemTime::UNIX_EPOCH,
    );
    let mut deriver = meshtop::topology::derive::Deriver::default();
    let t = deriver.derive(&store);
    assert!(t.meshes.is_empty(), "{:?}", t.meshes);
    assert_eq!(
        t.not_connected
            .iter()
            .map(|c| (c.name.as_str(), c.health))
            .collect::<Vec<_>>(),
        vec![("primary", Health::Unknown), ("remote", Health::Unknown)]
    );
    assert!(t.findings.is_empty(), "no finding while connecting");

    set_connection(&mut store, "primary", Connection::Live);
    let t = deriver.derive(&store);
    assert_eq!(t, derive(&store), "incremental equals fresh");
    assert_eq!(t.meshes.len(), 1);
    assert_eq!(t.meshes[0].id, "mesh1");
    assert_eq!(
        t.meshes[0]
            .clusters()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["primary"]
    );
    assert_eq!(t.not_connected.len(), 1);
    assert_eq!(t.not_connected[0].name, "remote");

    set_connection(&mut store, "remote", Connection::Live);
    let t = deriver.derive(&store);
    assert_eq!(t, derive(&store), "incremental equals fresh");
    assert!(t.not_connected.is_empty());
    assert_eq!(t.meshes[0].clusters().count(), 2);
    assert_eq!(
        t.cluster("remote").map(|c| c.served_by.clone()),
        Some(vec!["primary/istio-system/istiod".to_string()])
    );
    // A credential plugin still running (a slow token refresh) reads as what it is, not as
    // a part of the cluster left unread.
    let credentials: Vec<&str> = t
        .findings_for(&NodeId::cluster("remote"))
        .filter(|f| f.message.contains("credential plugin"))
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        credentials,
        vec!["credentials: credential plugin running for 12 s"]
    );
}

/// A cluster that was live keeps its last data and its place in its mesh when it stops
/// answering or its credentials stop working.
#[test]
fn a_cluster_that_was_live_keeps_its_place_when_it_fails() {
    let mut store = load("primary-remote", &["primary", "remote", "west"]);
    set_connection(&mut store, "west", Connection::Stale("timeout".into()));
    set_connection(
        &mut store,
        "remote",
        Connection::AuthError("token expired".into()),
    );
    let t = derive(&store);
    assert!(t.not_connected.is_empty(), "{:?}", t.not_connected);
    let mesh = t.mesh_of_cluster("west").map(|m| m.id.as_str());
    assert_eq!(mesh, Some("mesh1"));
    assert_eq!(t.mesh_of_cluster("remote").map(|m| m.id.as_str()), mesh);
    assert_eq!(t.cluster("west").map(|c| c.health), Some(Health::Degraded));
    assert_eq!(t.cluster("remote").map(|c| c.health), Some(Health::Down));
    assert!(
        t.cluster("west").is_some_and(|c| c.endpoints_total > 0),
        "its last data stays"
    );
}
