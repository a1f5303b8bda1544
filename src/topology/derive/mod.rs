//! Pure derivation: snapshots (raw objects + probe results) in, [`Topology`] out.
//!
//! Two stages. Per-cluster facts ([`cluster_facts`]) are read from one cluster's snapshot alone,
//! one module per kind of object (`mesh_config`, `control_planes`, `gateways`, `namespaces`,
//! `endpoints`, `wiring`), and kept between derivations. [`assemble`] joins the clusters: who
//! serves whom, which mesh and network each cluster is in, services merged by namespace
//! sameness (`join`).

mod assemble;
mod cluster;
mod control_planes;
mod endpoints;
mod federation;
mod gateways;
mod join;
mod mesh_config;
mod namespaces;
mod objects;
pub(crate) mod roots;
mod wiring;

use std::collections::HashMap;
use std::sync::Arc;

pub use assemble::assemble;
pub use cluster::{cluster_facts, ClusterFacts, ClusterService, Localities};

use super::model::Topology;
use super::snapshot::Store;
use cluster::ClusterReader;
use join::JoinCache;

/// Derives the topology from scratch. Pure: same snapshots, same model.
pub fn derive(store: &Store) -> Topology {
    Deriver::default().derive(store)
}

/// One cluster's facts as of a snapshot version, and the reader that keeps what it can reuse.
#[derive(Default)]
struct CachedCluster {
    version: Option<u64>,
    facts: Option<Arc<ClusterFacts>>,
    reader: ClusterReader,
}

/// Keeps per-cluster facts between derivations, keyed by snapshot version, and the merged
/// services of every mesh.
#[derive(Default)]
pub struct Deriver {
    clusters: HashMap<String, CachedCluster>,
    join: JoinCache,
}

impl Deriver {
    pub fn derive(&mut self, store: &Store) -> Topology {
        let mut facts = Vec::with_capacity(store.clusters.len());
        for snapshot in &store.clusters {
            let cached = self.clusters.entry(snapshot.context.clone()).or_default();
            let f = match &cached.facts {
                Some(f) if cached.version == Some(snapshot.version) => f.clone(),
                _ => {
                    let f = Arc::new(cached.reader.read(snapshot));
                    cached.version = Some(snapshot.version);
                    cached.facts = Some(f.clone());
                    f
                }
            };
            facts.push(f);
        }
        self.clusters
            .retain(|context, _| store.clusters.iter().any(|c| &c.context == context));
        assemble::assemble_with(&facts, &mut self.join)
    }
}
