//! Endpoints of each Service grouped by locality. Reads Services, EndpointSlices, nodes (their
//! localities) and the pods that override theirs; recounts only the slices that changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::objects::label;
use crate::topology::istio::*;
use crate::topology::snapshot::{ClusterSnapshot, ObjectKey};

/// locality → (ready, not ready)
pub type Localities = BTreeMap<Arc<str>, (u32, u32)>;

/// One Service in one cluster with its endpoints grouped by locality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterService {
    pub namespace: String,
    pub name: String,
    pub localities: Localities,
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
/// the locality version they were computed at.
#[derive(Clone, Debug)]
struct SliceCounts {
    slice_version: u64,
    locality_version: u64,
    counts: Vec<(Arc<str>, u32, u32)>,
}

/// Per-slice counts of one cluster, so one endpoint change recounts one slice.
#[derive(Default)]
pub(super) struct EndpointCounter {
    slices: HashMap<ObjectKey, SliceCounts>,
}

impl EndpointCounter {
    /// The tenant Services of the cluster with their endpoints, sorted by namespace and name.
    pub fn count(&mut self, s: &ClusterSnapshot, nodes: &NodeLocalities) -> Vec<ClusterService> {
        let unknown_locality: Arc<str> = Arc::from("unknown");
        // Only pods that override their locality need a lookup (the store keeps that index).
        let pod_locality: FxHashMap<(&str, &str), &str> = s
            .pod_localities
            .iter()
            .map(|((ns, name), loc)| ((ns.as_str(), name.as_str()), loc.as_str()))
            .collect();
        // Keys borrow from the snapshot; names are copied once, into the result.
        let mut services: BTreeMap<(&str, &str), Localities> = s
            .services
            .keys()
            .filter(|(ns, _)| !INFRA_NAMESPACES.contains(&ns.as_str()))
            .map(|(ns, name)| ((ns.as_str(), name.as_str()), BTreeMap::new()))
            .collect();
        self.slices
            .retain(|key, _| s.endpoint_slices.contains_key(key));
        for (key, slice) in &s.endpoint_slices {
            let Some(svc_name) = label(&slice.metadata, LABEL_SERVICE_NAME) else {
                continue;
            };
            let ns = slice.metadata.namespace.as_deref().unwrap_or("");
            let Some(localities) = services.get_mut(&(ns, svc_name)) else {
                continue;
            };
            let slice_version = s.slice_versions.get(key).copied().unwrap_or(0);
            if let Some(cached) = self.slices.get(key).filter(|c| {
                c.slice_version == slice_version && c.locality_version == s.locality_version
            }) {
                add(localities, &cached.counts);
                continue;
            }
            // Count per locality with shared keys first: no allocation per endpoint.
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
            add(localities, &counts);
            self.slices.insert(
                key.clone(),
                SliceCounts {
                    slice_version,
                    locality_version: s.locality_version,
                    counts,
                },
            );
        }
        services
            .into_iter()
            .map(|((namespace, name), localities)| ClusterService {
                namespace: namespace.to_string(),
                name: name.to_string(),
                localities,
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

/// Ready and total endpoints of a cluster.
pub(super) fn totals(services: &[ClusterService]) -> (u64, u64) {
    services
        .iter()
        .flat_map(|s| s.localities.values())
        .fold((0u64, 0u64), |(r, t), (ready, not)| {
            (r + u64::from(*ready), t + u64::from(*ready + *not))
        })
}
