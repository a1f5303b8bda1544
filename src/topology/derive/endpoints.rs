//! Endpoints of each Service grouped by locality. Reads Services, EndpointSlices, nodes (their
//! localities) and the pods that override theirs; recounts only the slices that changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::objects::label;
use crate::topology::istio::*;
use crate::topology::snapshot::{ClusterSnapshot, ObjectKey};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// locality → (ready, not ready)
pub type Localities = BTreeMap<Arc<str>, (u32, u32)>;

/// One Service in one cluster with its endpoints grouped by locality. Names and localities are
/// shared, so a reading that changes one service copies pointers for the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterService {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub localities: Arc<Localities>,
}

/// The locality of every node, and the cluster's region. Reads nodes only.
#[derive(Clone, Debug, Default)]
pub(super) struct NodeLocalities {
    by_node: FxHashMap<String, Arc<str>>,
    pub region: Option<String>,
}

pub(super) fn node_localities(s: &ClusterSnapshot) -> NodeLocalities {
    let by_node = s
        .nodes
        .values()
        .filter_map(|n| {
            let region = label(&n.metadata, LABEL_REGION).unwrap_or("");
            let zone = label(&n.metadata, LABEL_ZONE).unwrap_or("");
            let subzone = label(&n.metadata, LABEL_SUBZONE);
            let mut loc = format!("{region}/{zone}");
            if let Some(sz) = subzone {
                loc.push('/');
                loc.push_str(sz);
            }
            Some((n.metadata.name.clone()?, Arc::from(loc)))
        })
        .collect();
    let region = s
        .nodes
        .values()
        .find_map(|n| label(&n.metadata, LABEL_REGION))
        .map(str::to_string);
    NodeLocalities { by_node, region }
}

/// Endpoints of one EndpointSlice counted per locality, remembered with the slice version and
/// the locality version they were computed at, and the service (its index in the last result)
/// they were added to.
#[derive(Clone, Debug)]
struct SliceCounts {
    slice_version: u64,
    locality_version: u64,
    service: Option<usize>,
    counts: Vec<(Arc<str>, u32, u32)>,
}

/// The versions a count was made at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Basis {
    services: u64,
    endpoint_slices: u64,
    locality_version: u64,
    nodes: u64,
    /// The snapshot version: slices changed since have a higher one in `slice_versions`.
    version: u64,
}

impl Basis {
    /// Same Services and localities: only EndpointSlices may differ.
    fn same_services(&self, other: &Basis) -> bool {
        self.services == other.services
            && self.locality_version == other.locality_version
            && self.nodes == other.nodes
    }
}

/// Per-slice counts of one cluster and the last result, so one endpoint change recounts one
/// slice and touches only the service it belongs to.
#[derive(Default)]
pub(super) struct EndpointCounter {
    /// Every EndpointSlice of the last count, counted into a service or not.
    slices: HashMap<ObjectKey, SliceCounts>,
    last: Option<(Basis, Arc<Vec<ClusterService>>)>,
}

/// Pods that override their node's locality (the store keeps that index).
fn pod_localities(s: &ClusterSnapshot) -> FxHashMap<(&str, &str), &str> {
    s.pod_localities
        .iter()
        .map(|((ns, name), loc)| ((ns.as_str(), name.as_str()), loc.as_str()))
        .collect()
}

/// The endpoints of one slice counted per locality, with shared keys: no allocation per
/// endpoint.
fn count_slice(
    slice: &EndpointSlice,
    pod_locality: &FxHashMap<(&str, &str), &str>,
    nodes: &NodeLocalities,
    unknown_locality: &Arc<str>,
) -> Vec<(Arc<str>, u32, u32)> {
    let mut counts: Vec<(Arc<str>, u32, u32)> = Vec::new();
    for ep in slice.endpoints.iter().flatten() {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let pod_loc = ep
            .target_ref
            .as_ref()
            .and_then(|r| pod_locality.get(&(r.namespace.as_deref()?, r.name.as_deref()?)));
        let locality: Arc<str> = match pod_loc {
            Some(l) => Arc::from(*l),
            None => match ep.node_name.as_deref().and_then(|n| nodes.by_node.get(n)) {
                Some(l) => l.clone(),
                None => match &ep.zone {
                    Some(z) => Arc::from(format!("?/{z}")),
                    None => unknown_locality.clone(),
                },
            },
        };
        let (r, n) = if ready { (1, 0) } else { (0, 1) };
        match counts.iter_mut().find(|(l, _, _)| *l == locality) {
            Some(c) => {
                c.1 += r;
                c.2 += n;
            }
            None => counts.push((locality, r, n)),
        }
    }
    counts
}

/// The index of the service a slice belongs to (`kubernetes.io/service-name`), in services
/// sorted by namespace and name.
fn service_of(slice: &EndpointSlice, keys: &[(&str, &str)]) -> Option<usize> {
    let name = label(&slice.metadata, LABEL_SERVICE_NAME)?;
    let ns = slice.metadata.namespace.as_deref().unwrap_or("");
    keys.binary_search(&(ns, name)).ok()
}

impl EndpointCounter {
    /// The tenant Services of the cluster with their endpoints, sorted by namespace and name.
    /// The same `Arc` while nothing they are read from changed; when only EndpointSlices
    /// changed, only those slices are recounted and only their services' localities copied.
    pub fn count(
        &mut self,
        s: &ClusterSnapshot,
        nodes: &NodeLocalities,
        nodes_generation: u64,
    ) -> Arc<Vec<ClusterService>> {
        let basis = Basis {
            services: s.kinds.services,
            endpoint_slices: s.kinds.endpoint_slices,
            locality_version: s.locality_version,
            nodes: nodes_generation,
            version: s.version,
        };
        if let Some((last, services)) = &self.last {
            if last.same_services(&basis) && last.endpoint_slices == basis.endpoint_slices {
                return services.clone();
            }
        }
        let recounted = match self.last.take() {
            Some((last, services)) if last.same_services(&basis) && last.version <= s.version => {
                self.recount_changed(s, nodes, last.version, &services)
            }
            _ => None,
        };
        let services = match recounted {
            Some(services) => services,
            None => Arc::new(self.count_all(s, nodes)),
        };
        self.last = Some((basis, services.clone()));
        services
    }

    /// Recounts the slices changed since snapshot version `since` into a copy of `old`; `None`
    /// when a slice was removed (or anything else a full count must settle).
    fn recount_changed(
        &mut self,
        s: &ClusterSnapshot,
        nodes: &NodeLocalities,
        since: u64,
        old: &Arc<Vec<ClusterService>>,
    ) -> Option<Arc<Vec<ClusterService>>> {
        let changed: Vec<&ObjectKey> = s
            .slice_versions
            .iter()
            .filter(|(_, v)| **v > since)
            .map(|(k, _)| k)
            .collect();
        let added = changed
            .iter()
            .filter(|k| !self.slices.contains_key(**k))
            .count();
        if s.slice_versions.len() != s.endpoint_slices.len()
            || s.endpoint_slices.len() != self.slices.len() + added
        {
            return None;
        }
        let unknown_locality: Arc<str> = Arc::from("unknown");
        let pod_locality = pod_localities(s);
        let keys: Vec<(&str, &str)> = old.iter().map(|c| (&*c.namespace, &*c.name)).collect();
        let mut services: Vec<ClusterService> = (**old).clone();
        for key in changed {
            let slice = s.endpoint_slices.get(key)?;
            let service = service_of(slice, &keys);
            let counts = count_slice(slice, &pod_locality, nodes, &unknown_locality);
            if let Some(i) = self.slices.get(key).and_then(|c| c.service) {
                let previous = &self.slices[key].counts;
                subtract(Arc::make_mut(&mut services[i].localities), previous);
            }
            if let Some(i) = service {
                add(Arc::make_mut(&mut services[i].localities), &counts);
            }
            self.slices.insert(
                key.clone(),
                SliceCounts {
                    slice_version: s.slice_versions.get(key).copied().unwrap_or(0),
                    locality_version: s.locality_version,
                    service,
                    counts,
                },
            );
        }
        Some(Arc::new(services))
    }

    /// Counts every slice (reusing the counts of slices unchanged since they were counted).
    fn count_all(&mut self, s: &ClusterSnapshot, nodes: &NodeLocalities) -> Vec<ClusterService> {
        let unknown_locality: Arc<str> = Arc::from("unknown");
        let pod_locality = pod_localities(s);
        // Keys borrow from the snapshot; names are copied once, into the result.
        let keys: Vec<(&str, &str)> = s
            .services
            .keys()
            .filter(|(ns, _)| !INFRA_NAMESPACES.contains(&ns.as_str()))
            .map(|(ns, name)| (ns.as_str(), name.as_str()))
            .collect();
        let mut localities: Vec<Localities> = vec![BTreeMap::new(); keys.len()];
        self.slices
            .retain(|key, _| s.endpoint_slices.contains_key(key));
        for (key, slice) in &s.endpoint_slices {
            let service = service_of(slice, &keys);
            let slice_version = s.slice_versions.get(key).copied().unwrap_or(0);
            let cached = self.slices.get_mut(key).filter(|c| {
                c.slice_version == slice_version && c.locality_version == s.locality_version
            });
            let entry = match cached {
                Some(c) => {
                    c.service = service;
                    c
                }
                None => {
                    let counts = count_slice(slice, &pod_locality, nodes, &unknown_locality);
                    self.slices.insert(
                        key.clone(),
                        SliceCounts {
                            slice_version,
                            locality_version: s.locality_version,
                            service,
                            counts,
                        },
                    );
                    self.slices.get_mut(key).expect("just inserted")
                }
            };
            if let Some(i) = service {
                add(&mut localities[i], &entry.counts);
            }
        }
        keys.into_iter()
            .zip(localities)
            .map(|((namespace, name), localities)| ClusterService {
                namespace: Arc::from(namespace),
                name: Arc::from(name),
                localities: Arc::new(localities),
            })
            .collect()
    }
}

fn add(localities: &mut Localities, counts: &[(Arc<str>, u32, u32)]) {
    for (locality, r, n) in counts {
        let c = localities.entry(locality.clone()).or_insert((0, 0));
        c.0 += r;
        c.1 += n;
    }
}

/// Takes counts added before away again; a locality left with no endpoint is dropped, as if
/// they had never been added.
fn subtract(localities: &mut Localities, counts: &[(Arc<str>, u32, u32)]) {
    for (locality, r, n) in counts {
        if let Some(c) = localities.get_mut(locality) {
            c.0 = c.0.saturating_sub(*r);
            c.1 = c.1.saturating_sub(*n);
            if *c == (0, 0) {
                localities.remove(locality);
            }
        }
    }
}

/// Ready and total endpoints of a cluster.
pub(super) fn totals(services: &[ClusterService]) -> (u64, u64) {
    services
        .iter()
        .flat_map(|s| s.localities.values())
        .fold((0u64, 0u64), |(r, t), (ready, not)| {
            (r + u64::from(*ready), t + u64::from(*ready + *not))
        })
}
