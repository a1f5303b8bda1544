//! The service join across the clusters of a mesh: same namespace + name = one service. Kept
//! between derivations, so a change in one cluster re-merges only the services it has (or had).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::cluster::{ClusterFacts, ClusterService};
use crate::topology::health::ServiceRules;
use crate::topology::model::{EndpointGroup, Finding, Health};

/// One member cluster of a mesh, as the service join sees it.
#[derive(Clone)]
pub(super) struct JoinMember {
    pub facts: Arc<ClusterFacts>,
    pub cluster: Arc<str>,
    pub network: Arc<str>,
}

/// One merged service as the join keeps it: shared names, whether the mesh config keeps it
/// cluster-local, and its endpoint groups.
#[derive(Clone)]
pub(super) struct Joined {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub cluster_local: Option<bool>,
    pub groups: Arc<Vec<EndpointGroup>>,
    /// Its health and findings under the mesh's [`MeshJoin::rules`], once judged.
    pub judged: Option<(Health, Vec<Finding>)>,
}

impl Joined {
    fn new(ns: &str, name: &str, groups: Vec<EndpointGroup>) -> Joined {
        Joined {
            namespace: Arc::from(ns),
            name: Arc::from(name),
            cluster_local: None,
            groups: Arc::new(groups),
            judged: None,
        }
    }
}

/// A mesh's merged services, kept between derivations.
pub(super) struct MeshJoin {
    pub members: Vec<JoinMember>,
    pub cluster_local: BTreeSet<String>,
    pub groups: BTreeMap<(String, String), Joined>,
    /// The rules the services were judged under.
    pub rules: ServiceRules,
}

/// The merged services of every mesh, so a change in one cluster re-merges only the services
/// that cluster has (or had).
#[derive(Default)]
pub(super) struct JoinCache {
    pub meshes: HashMap<String, MeshJoin>,
}

/// The endpoint groups of one service across the members, in member order.
fn groups_for(ns: &str, name: &str, members: &[JoinMember]) -> Option<Vec<EndpointGroup>> {
    let mut found = false;
    let mut groups = Vec::new();
    for m in members {
        let services = &m.facts.services;
        let Ok(i) = services.binary_search_by(|s| (&*s.namespace, &*s.name).cmp(&(ns, name)))
        else {
            continue;
        };
        found = true;
        for (locality, (ready, not_ready)) in services[i].localities.iter() {
            groups.push(EndpointGroup {
                cluster: m.cluster.clone(),
                network: m.network.clone(),
                locality: locality.clone(),
                ready: *ready,
                not_ready: *not_ready,
            });
        }
    }
    found.then_some(groups)
}

/// Adds the services whose endpoints differ between two readings of one cluster (both sorted
/// by namespace and name): only those need merging again.
fn changed_services<'a>(
    old: &'a Arc<Vec<ClusterService>>,
    new: &'a Arc<Vec<ClusterService>>,
    affected: &mut BTreeSet<(&'a str, &'a str)>,
) {
    if Arc::ptr_eq(old, new) {
        return;
    }
    let key = |s: &'a ClusterService| (&*s.namespace, &*s.name);
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                affected.insert(key(x));
                a.next();
            }
            (None, Some(y)) => {
                affected.insert(key(y));
                b.next();
            }
            (Some(x), Some(y)) => match key(x).cmp(&key(y)) {
                std::cmp::Ordering::Less => {
                    affected.insert(key(x));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    affected.insert(key(y));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(&x.localities, &y.localities) && x.localities != y.localities {
                        affected.insert(key(x));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Services merged by namespace sameness. Reuses `previous` when the same clusters sit in the
/// same networks: only services of clusters whose facts changed are merged again.
pub(super) fn join_services(
    previous: Option<MeshJoin>,
    members: Vec<JoinMember>,
    cluster_local: BTreeSet<String>,
) -> MeshJoin {
    let same_shape = |p: &MeshJoin| {
        p.cluster_local == cluster_local
            && p.members.len() == members.len()
            && p.members
                .iter()
                .zip(&members)
                .all(|(a, b)| a.facts.context == b.facts.context && a.network == b.network)
    };
    match previous.filter(same_shape) {
        Some(mut join) => {
            let mut affected: BTreeSet<(&str, &str)> = BTreeSet::new();
            for (old, new) in join.members.iter().zip(&members) {
                if Arc::ptr_eq(&old.facts, &new.facts) {
                    continue;
                }
                changed_services(&old.facts.services, &new.facts.services, &mut affected);
            }
            let changed: Vec<usize> = (0..members.len())
                .filter(|&k| !Arc::ptr_eq(&join.members[k].facts, &members[k].facts))
                .collect();
            if let [k] = changed[..] {
                // One cluster changed (the common case): splice its groups into each affected
                // service instead of merging all members again.
                let position: HashMap<&str, usize> = members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (&*m.cluster, i))
                    .collect();
                for (ns, name) in affected {
                    let key = (ns.to_string(), name.to_string());
                    let mut fresh = groups_for(ns, name, std::slice::from_ref(&members[k]));
                    let present_here = fresh.is_some();
                    let old = join.groups.get(&key).map(|j| &j.groups);
                    let mut groups = Vec::with_capacity(old.map(|o| o.len()).unwrap_or(0) + 4);
                    for g in old.iter().flat_map(|o| o.iter()) {
                        let at = position.get(&*g.cluster).copied().unwrap_or(usize::MAX);
                        if at == k {
                            continue;
                        }
                        if at > k {
                            groups.extend(fresh.take().into_iter().flatten());
                        }
                        groups.push(g.clone());
                    }
                    groups.extend(fresh.take().into_iter().flatten());
                    // Without groups elsewhere the service may still exist (no endpoints).
                    let exists = present_here
                        || !groups.is_empty()
                        || groups_for(ns, name, &members).is_some();
                    if exists {
                        join.groups.insert(key, Joined::new(ns, name, groups));
                    } else {
                        join.groups.remove(&key);
                    }
                }
                join.members = members;
                return join;
            }
            for (ns, name) in affected {
                let key = (ns.to_string(), name.to_string());
                match groups_for(ns, name, &members) {
                    Some(groups) => {
                        join.groups.insert(key, Joined::new(ns, name, groups));
                    }
                    None => {
                        join.groups.remove(&key);
                    }
                }
            }
            join.members = members;
            join
        }
        None => {
            let mut keys: BTreeSet<(&str, &str)> = BTreeSet::new();
            for m in &members {
                for s in m.facts.services.iter() {
                    keys.insert((&*s.namespace, &*s.name));
                }
            }
            let groups = keys
                .into_iter()
                .filter_map(|(ns, name)| {
                    let groups = groups_for(ns, name, &members)?;
                    Some((
                        (ns.to_string(), name.to_string()),
                        Joined::new(ns, name, groups),
                    ))
                })
                .collect();
            MeshJoin {
                members,
                cluster_local,
                groups,
                rules: ServiceRules::default(),
            }
        }
    }
}
