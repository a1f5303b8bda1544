//! The hierarchy as tree items: Mesh → Network → Cluster → {Control planes → served clusters,
//! Gateways, Namespaces → Services}, then the clusters never reached (not connected) and the
//! federation. Rebuilt on a topology, filter, theme or open/close change,
//! and only below open nodes (a closed node gets one hidden placeholder child so it still shows
//! ▶): the cost follows what is on screen, not the size of the mesh. With a filter, every node
//! is visited but only matches and their ancestors get a line. What every rebuild reads of a
//! topology (findings per node, lowercase names) is computed once per topology ([`TreeIndex`]).

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;

use ratatui::text::{Line, Span};
use tui_tree_widget::TreeItem;

use crate::theme::Theme;
use crate::topology::federation::{Acceptance, RootTrust};
use crate::topology::model::*;

/// What a tree node stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRef {
    Mesh(String),
    Network(String, String),
    Cluster(String),
    ControlPlanes(String),
    Gateways(String),
    Namespaces(String),
    ControlPlane(String),
    /// A cluster listed under the control plane that serves it: (control plane id, context).
    Served(String, String),
    Gateway(String),
    Namespace(String, String),
    /// (context, namespace, name)
    Service(String, String, String),
    /// The clusters never reached, in no mesh.
    NotConnected,
    /// The federation of the meshes.
    Federation,
    /// A pair of meshes (its id, see `NodeId::federation_pair`).
    FederationPair(String),
    /// An import: (importing mesh, context, ServiceEntry `namespace/name`).
    FederationImport(String, String, String),
}

impl NodeRef {
    /// The cluster a node belongs to, for actions such as failover.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            NodeRef::Cluster(c)
            | NodeRef::ControlPlanes(c)
            | NodeRef::Gateways(c)
            | NodeRef::Namespaces(c)
            | NodeRef::Served(_, c)
            | NodeRef::Namespace(c, _)
            | NodeRef::Service(c, _, _) => Some(c),
            _ => None,
        }
    }
}

/// What each built node id stands for, except service rows: a filter can show thousands of
/// them, so they are resolved from their parent namespace when asked ([`resolve`]).
pub type NodeMap = FxHashMap<String, NodeRef>;

/// What the node at `path` (ids from the root) stands for.
pub fn resolve(nodes: &NodeMap, path: &[String]) -> Option<NodeRef> {
    let (id, parents) = path.split_last()?;
    if let Some(node) = nodes.get(id) {
        return Some(node.clone());
    }
    match nodes.get(parents.last()?)? {
        NodeRef::Namespace(context, namespace) => {
            let name = id.strip_prefix(&NodeId::service(context, namespace, ""))?;
            Some(NodeRef::Service(
                context.clone(),
                namespace.clone(),
                name.to_string(),
            ))
        }
        _ => None,
    }
}

/// Whether the items hold a node at `path`.
pub fn contains_path(items: &[TreeItem<'static, String>], path: &[String]) -> bool {
    let mut level = items;
    for id in path {
        match level.iter().find(|i| i.identifier() == id) {
            Some(item) => level = item.children(),
            None => return false,
        }
    }
    !path.is_empty()
}

pub struct TreeModel {
    pub items: Vec<TreeItem<'static, String>>,
    pub nodes: NodeMap,
}

/// Id of the hidden child that makes a closed node expandable.
fn placeholder(parent: &str) -> TreeItem<'static, String> {
    TreeItem::new_leaf(format!("…{parent}"), "…")
}

/// What every rebuild of the tree reads of one topology, computed once per topology: the
/// number of findings of each node (a rebuild asks for every node it shows) and the service
/// names, lowercased once, with the matches of the filter typed so far. A keystroke that
/// extends the filter searches only the names the shorter filter matched; Backspace goes back
/// to the matches kept for the shorter filter.
#[derive(Debug, Default)]
pub struct TreeIndex {
    findings: FxHashMap<String, usize>,
    /// Distinct service names, lowercased.
    names: Vec<String>,
    /// Per namespace node (in tree order: meshes, networks, clusters, namespaces) the name ids
    /// of its services, in order.
    services: Vec<Vec<u32>>,
    /// The first namespace node of each cluster (by context).
    first_namespace: HashMap<String, usize>,
    /// Filters typed so far, each extending the one before, with the ids of the names that
    /// contain it.
    typed: Vec<(String, Vec<u32>)>,
    /// Whether each name contains the current filter.
    matching: Vec<bool>,
    /// Whether the name part above is built (on the first filter).
    names_built: bool,
}

impl TreeIndex {
    pub fn new(topology: &Topology) -> TreeIndex {
        let mut findings: FxHashMap<String, usize> = FxHashMap::default();
        for f in topology.findings() {
            match findings.get_mut(f.node.as_str()) {
                Some(n) => *n += 1,
                None => {
                    findings.insert(f.node.clone(), 1);
                }
            }
        }
        TreeIndex {
            findings,
            ..TreeIndex::default()
        }
    }

    /// The service names part, built the first time a filter is set on this topology (a new
    /// topology arrives on every change; most of them are never filtered).
    fn index_names(&mut self, topology: &Topology) {
        if self.names_built {
            return;
        }
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut services = Vec::new();
        let mut first_namespace = HashMap::new();
        for c in topology.clusters() {
            first_namespace
                .entry(c.name.clone())
                .or_insert(services.len());
            for ns in c.namespaces.iter() {
                let of_ns = ns
                    .services
                    .iter()
                    .map(|svc| {
                        *ids.entry(svc.as_str()).or_insert_with(|| {
                            names.push(svc.to_lowercase());
                            names.len() as u32 - 1
                        })
                    })
                    .collect();
                services.push(of_ns);
            }
        }
        self.matching = vec![false; names.len()];
        self.names = names;
        self.services = services;
        self.first_namespace = first_namespace;
        self.names_built = true;
    }

    /// How many findings point at `node` (as `Topology::findings_for(node).count()`).
    pub fn findings(&self, node: &str) -> usize {
        self.findings.get(node).copied().unwrap_or(0)
    }

    /// Matches the service names against `filter` (lowercase, not empty), searching only the
    /// matches of the longest filter typed before that it extends.
    fn set_filter(&mut self, topology: &Topology, filter: &str) {
        self.index_names(topology);
        while self
            .typed
            .last()
            .is_some_and(|(f, _)| !filter.starts_with(f.as_str()))
        {
            self.typed.pop();
        }
        if self.typed.last().map(|(f, _)| f.as_str()) != Some(filter) {
            let names = &self.names;
            let found: Vec<u32> = match self.typed.last() {
                Some((_, before)) => before
                    .iter()
                    .copied()
                    .filter(|&i| names[i as usize].contains(filter))
                    .collect(),
                None => (0..names.len() as u32)
                    .filter(|&i| names[i as usize].contains(filter))
                    .collect(),
            };
            self.typed.push((filter.to_string(), found));
        }
        self.matching.fill(false);
        for &i in self
            .typed
            .last()
            .map(|(_, ids)| ids.as_slice())
            .unwrap_or(&[])
        {
            self.matching[i as usize] = true;
        }
    }

    /// The name ids of the services of namespace `namespace` of cluster `context`, looked up
    /// once per namespace (a filter keystroke visits every namespace); `None` if the index does
    /// not know it.
    fn namespace_services(&self, context: &str, namespace: usize) -> Option<&[u32]> {
        let node = self.first_namespace.get(context)? + namespace;
        self.services.get(node).map(Vec::as_slice)
    }

    /// Whether service `position` of a namespace whose name ids are `ids` matches the current
    /// filter; `None` if the index does not know it.
    fn service_matches(&self, ids: Option<&[u32]>, position: usize) -> Option<bool> {
        let id = *ids?.get(position)?;
        self.matching.get(id as usize).copied()
    }
}

/// The [`TreeIndex`] of the topology the tree was last built from.
#[derive(Debug, Default)]
pub struct IndexCache {
    /// Held weakly: the index is made again for another topology.
    of: std::sync::Weak<Topology>,
    index: TreeIndex,
}

impl IndexCache {
    /// The index of `topology`, made on first use.
    pub fn get(&mut self, topology: &std::sync::Arc<Topology>) -> &mut TreeIndex {
        if !std::sync::Weak::ptr_eq(&self.of, &std::sync::Arc::downgrade(topology)) {
            self.of = std::sync::Arc::downgrade(topology);
            self.index = TreeIndex::new(topology);
        }
        &mut self.index
    }
}

struct Builder<'a> {
    theme: &'a Theme,
    filter: String,
    opened: &'a HashSet<Vec<String>>,
    nodes: NodeMap,
    topology: &'a Topology,
    index: &'a TreeIndex,
    /// Ids from the root to the node being built (one stack, not a copy per node).
    path: Vec<String>,
    filter_ascii: bool,
    /// A reused buffer for ids looked up, not kept (findings of a mesh service).
    scratch: String,
}

impl Builder<'_> {
    fn line(&self, health: Health, name: &str, detail: String, findings: usize) -> Line<'static> {
        let mut spans = Vec::with_capacity(5);
        spans.extend([
            Span::styled(health.glyph(), self.theme.health(health)),
            Span::raw(" "),
            Span::styled(name.to_string(), self.theme.base()),
        ]);
        if !detail.is_empty() {
            spans.push(Span::styled(format!(" {detail}"), self.theme.muted()));
        }
        if findings > 0 {
            spans.push(Span::styled(
                format!(" !{findings}"),
                self.theme.health(Health::Degraded),
            ));
        }
        Line::from(spans)
    }

    /// Whether a name contains the (lowercased) filter, ignoring case, without allocating
    /// for ASCII names: a filter keystroke visits every node.
    fn matches(&self, name: &str) -> bool {
        let f = self.filter.as_bytes();
        if self.filter_ascii && name.is_ascii() {
            f.is_empty()
                || name
                    .as_bytes()
                    .windows(f.len())
                    .any(|w| w.eq_ignore_ascii_case(f))
        } else {
            name.to_lowercase().contains(&self.filter)
        }
    }

    fn findings(&self, node: &str) -> usize {
        self.index.findings(node)
    }

    /// One node, below the nodes on `self.path`. `children` runs only when the node is open
    /// (or a filter is active), with the node on `self.path`; `line` only when it is shown.
    fn node(
        &mut self,
        id: String,
        reference: Option<NodeRef>,
        name: &str,
        has_children: bool,
        line: impl FnOnce(&Self) -> Line<'static>,
        children: impl FnOnce(&mut Self) -> Vec<TreeItem<'static, String>>,
    ) -> Option<TreeItem<'static, String>> {
        let filtering = !self.filter.is_empty();
        self.path.push(id);
        let kids = if has_children && (filtering || self.opened.contains(&self.path)) {
            children(self)
        } else {
            Vec::new()
        };
        let id = self.path.pop().unwrap_or_default();
        if filtering && kids.is_empty() && !self.matches(name) {
            return None;
        }
        let line = line(self);
        if let Some(reference) = reference {
            self.nodes.insert(id.clone(), reference);
        }
        let kids = if kids.is_empty() && has_children && !filtering {
            vec![placeholder(&id)]
        } else {
            kids
        };
        if kids.is_empty() {
            return Some(TreeItem::new_leaf(id, line));
        }
        // Ids are unique by construction; fall back to a leaf rather than fail a frame.
        Some(
            TreeItem::new(id.clone(), line.clone(), kids)
                .unwrap_or_else(|_| TreeItem::new_leaf(id, line)),
        )
    }

    /// The federation node: one child per pair of meshes, one grandchild per import.
    fn federation(&mut self) -> Option<TreeItem<'static, String>> {
        let fed = &self.topology.federation;
        if fed.pairs.is_empty() {
            return None;
        }
        let id = NodeId::federation();
        self.node(
            id.clone(),
            Some(NodeRef::Federation),
            "federation",
            true,
            |b| {
                let health = Health::worst_of(fed.pairs.iter().map(|p| p.health));
                let n = fed.pairs.len();
                let detail = format!("{n} pair{}", if n == 1 { "" } else { "s" });
                b.line(health, "federation", detail, b.findings(&id))
            },
            |b| {
                fed.pairs
                    .iter()
                    .filter_map(|pair| {
                        let name = format!("{} ⇄ {}", pair.a, pair.b);
                        let imports: Vec<(&str, &crate::topology::federation::Import)> =
                            fed.imports_of(pair).collect();
                        b.node(
                            pair.id.clone(),
                            Some(NodeRef::FederationPair(pair.id.clone())),
                            &name,
                            !imports.is_empty(),
                            |b| {
                                let trust = |d: &crate::topology::federation::Direction| {
                                    d.root == RootTrust::Trusted && d.trust_domain != Acceptance::No
                                };
                                let detail = match (trust(&pair.a_to_b), trust(&pair.b_to_a)) {
                                    (true, true) => "trust both ways",
                                    (true, false) => "one-way trust",
                                    (false, true) => "one-way trust",
                                    (false, false) => "no trust",
                                };
                                let detail = format!(
                                    "{detail} · {} import{}",
                                    imports.len(),
                                    if imports.len() == 1 { "" } else { "s" }
                                );
                                b.line(pair.health, &name, detail, b.findings(&pair.id))
                            },
                            |b| {
                                imports
                                    .iter()
                                    .filter_map(|(mesh, imp)| {
                                        let id = NodeId::federation_import(
                                            mesh,
                                            &imp.cluster,
                                            &imp.service_entry,
                                        );
                                        let host = imp.hosts.first().cloned().unwrap_or_default();
                                        b.node(
                                            id.clone(),
                                            Some(NodeRef::FederationImport(
                                                mesh.to_string(),
                                                imp.cluster.clone(),
                                                imp.service_entry.clone(),
                                            )),
                                            &host,
                                            false,
                                            |b| {
                                                let detail = format!(
                                                    "{} ← {} · {}",
                                                    mesh,
                                                    imp.from.as_deref().unwrap_or("?"),
                                                    imp.cluster
                                                );
                                                b.line(imp.health, &host, detail, b.findings(&id))
                                            },
                                            |_| Vec::new(),
                                        )
                                    })
                                    .collect()
                            },
                        )
                    })
                    .collect()
            },
        )
    }

    fn cluster(&mut self, mesh: &Mesh, c: &Cluster) -> Option<TreeItem<'static, String>> {
        let served = c
            .served_by
            .iter()
            .filter_map(|id| self.topology.control_plane(id))
            .filter(|cp| cp.cluster != c.name || cp.external)
            .map(|cp| format!(" ← {}", cp.cluster))
            .next()
            .unwrap_or_default();
        let id = NodeId::cluster(&c.name);
        let has_children =
            !c.control_planes.is_empty() || !c.gateways.is_empty() || !c.namespaces.is_empty();
        self.node(
            id.clone(),
            Some(NodeRef::Cluster(c.name.clone())),
            &c.name,
            has_children,
            |b| {
                let state = match c.connection {
                    Connection::Live => String::new(),
                    _ => format!(" · {}", connection_state(c, false)),
                };
                let detail = format!(
                    "{}{served} {}/{}{state}",
                    c.role.label(),
                    c.endpoints_ready,
                    c.endpoints_total
                );
                b.line(c.health, c.label(), detail, b.findings(&id))
            },
            |b| {
                let mut groups = Vec::new();
                groups.extend(b.control_plane_group(c));
                groups.extend(b.gateway_group(c));
                groups.extend(b.namespace_group(mesh, c));
                groups
            },
        )
    }

    /// The clusters never reached, each with why; leaves (nothing of theirs is known yet).
    fn not_connected(&mut self) -> Option<TreeItem<'static, String>> {
        let clusters = &self.topology.not_connected;
        if clusters.is_empty() {
            return None;
        }
        let id = NodeId::not_connected();
        let name = "not connected";
        self.node(
            id.clone(),
            Some(NodeRef::NotConnected),
            name,
            true,
            |b| {
                // Never healthy: unknown while they connect, down once refused.
                let health = Health::worst_of(clusters.iter().map(|c| c.health));
                let n = clusters.len();
                let detail = format!("{n} cluster{}", if n == 1 { "" } else { "s" });
                b.line(health, name, detail, b.findings(&id))
            },
            |b| {
                clusters
                    .iter()
                    .filter_map(|c| {
                        let id = NodeId::cluster(&c.name);
                        b.node(
                            id.clone(),
                            Some(NodeRef::Cluster(c.name.clone())),
                            &c.name,
                            false,
                            |b| {
                                b.line(
                                    c.health,
                                    c.label(),
                                    connection_state(c, true),
                                    b.findings(&id),
                                )
                            },
                            |_| Vec::new(),
                        )
                    })
                    .collect()
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn group(
        &mut self,
        kind: &str,
        label: &str,
        reference: NodeRef,
        count: usize,
        health: Health,
        children: impl FnOnce(&mut Self) -> Vec<TreeItem<'static, String>>,
    ) -> Option<TreeItem<'static, String>> {
        if count == 0 {
            return None;
        }
        let context = reference.cluster().unwrap_or_default().to_string();
        self.node(
            NodeId::group(kind, &context),
            Some(reference),
            label,
            true,
            |b| b.line(health, label, format!("({count})"), 0),
            children,
        )
    }

    fn control_plane_group(&mut self, c: &Cluster) -> Option<TreeItem<'static, String>> {
        let health = Health::worst_of(c.control_planes.iter().map(|cp| cp.health));
        self.group(
            "cp",
            "Control planes",
            NodeRef::ControlPlanes(c.name.clone()),
            c.control_planes.len(),
            health,
            |b| {
                c.control_planes
                    .iter()
                    .filter_map(|cp| b.control_plane(cp))
                    .collect()
            },
        )
    }

    fn control_plane(&mut self, cp: &ControlPlane) -> Option<TreeItem<'static, String>> {
        let topology = self.topology;
        let served: Vec<&Cluster> = topology
            .clusters()
            .filter(|o| o.served_by.contains(&cp.id))
            .collect();
        let label = format!("{}/{}", cp.namespace, cp.name);
        let id = NodeId::control_plane(&cp.id);
        self.node(
            id.clone(),
            Some(NodeRef::ControlPlane(cp.id.clone())),
            &label,
            !served.is_empty(),
            |b| {
                let detail = format!(
                    "{} {}/{}{}",
                    cp.revision,
                    cp.ready_replicas,
                    cp.replicas,
                    if cp.external { " external" } else { "" }
                );
                b.line(cp.health, &label, detail, b.findings(&id))
            },
            |b| {
                served
                    .iter()
                    .filter_map(|o| {
                        b.node(
                            NodeId::served(&cp.id, &o.name),
                            Some(NodeRef::Served(cp.id.clone(), o.name.clone())),
                            &o.name,
                            false,
                            |b| b.line(o.health, &o.name, format!("↳ {}", o.role.label()), 0),
                            |_| Vec::new(),
                        )
                    })
                    .collect()
            },
        )
    }

    fn gateway_group(&mut self, c: &Cluster) -> Option<TreeItem<'static, String>> {
        let health = Health::worst_of(c.gateways.iter().map(|g| g.health));
        self.group(
            "gw",
            "Gateways",
            NodeRef::Gateways(c.name.clone()),
            c.gateways.len(),
            health,
            |b| {
                c.gateways
                    .iter()
                    .filter_map(|g| {
                        let id = NodeId::gateway(&g.id);
                        b.node(
                            id.clone(),
                            Some(NodeRef::Gateway(g.id.clone())),
                            &g.name,
                            false,
                            |b| {
                                let detail =
                                    format!("{} {}/{}", g.kind.label(), g.ready_pods, g.pods);
                                b.line(g.health, &g.name, detail, b.findings(&id))
                            },
                            |_| Vec::new(),
                        )
                    })
                    .collect()
            },
        )
    }

    fn namespace_group(&mut self, mesh: &Mesh, c: &Cluster) -> Option<TreeItem<'static, String>> {
        let health = Health::worst_of(c.namespaces.iter().map(|n| n.health));
        self.group(
            "ns",
            "Namespaces",
            NodeRef::Namespaces(c.name.clone()),
            c.namespaces.len(),
            health,
            |b| {
                c.namespaces
                    .iter()
                    .enumerate()
                    .filter_map(|(i, ns)| b.namespace(mesh, c, i, ns))
                    .collect()
            },
        )
    }

    fn namespace(
        &mut self,
        mesh: &Mesh,
        c: &Cluster,
        position: usize,
        ns: &ClusterNamespace,
    ) -> Option<TreeItem<'static, String>> {
        // With a filter, skip a namespace with no match below it before building its id.
        let index: &TreeIndex = self.index;
        let ids = if self.filter.is_empty() {
            None
        } else {
            index.namespace_services(&c.name, position)
        };
        let service_matches = |b: &Self, i: usize, svc: &str| {
            b.index
                .service_matches(ids, i)
                .unwrap_or_else(|| b.matches(svc))
        };
        if !self.filter.is_empty()
            && !self.matches(&ns.name)
            && !(ns.services.iter().enumerate()).any(|(i, svc)| service_matches(self, i, svc))
        {
            return None;
        }
        self.node(
            NodeId::namespace(&c.name, &ns.name),
            Some(NodeRef::Namespace(c.name.clone(), ns.name.clone())),
            &ns.name,
            !ns.services.is_empty(),
            |b| {
                let findings = b.findings(&NodeId::tenant(&mesh.id, &ns.name));
                b.line(ns.health, &ns.name, ns.injection.to_string(), findings)
            },
            |b| {
                let mut items = Vec::new();
                let merged = mesh.services_in(&ns.name);
                // Both lists are sorted by name: the next service is usually the next one.
                let mut next = 0;
                for (i, svc) in ns.services.iter().enumerate() {
                    // Most services do not match a filter: skip them before building ids.
                    if b.filter.is_empty() || service_matches(b, i, svc) {
                        let at = match merged.get(next) {
                            Some(s) if *s.name == **svc => Some(next),
                            _ => merged.binary_search_by(|s| (*s.name).cmp(svc)).ok(),
                        };
                        next = at.map_or(next, |i| i + 1);
                        items.extend(b.service(mesh, at.map(|i| &merged[i]), c, ns, svc));
                    }
                }
                items
            },
        )
    }

    /// A service row; `found` is the mesh's merged service of that name, if it has one.
    fn service(
        &mut self,
        mesh: &Mesh,
        found: Option<&Service>,
        c: &Cluster,
        ns: &ClusterNamespace,
        svc: &str,
    ) -> Option<TreeItem<'static, String>> {
        let findings = match found {
            Some(_) => {
                let mut key = std::mem::take(&mut self.scratch);
                NodeId::write_mesh_service(&mut key, &mesh.id, &ns.name, svc);
                let n = self.findings(&key);
                self.scratch = key;
                n
            }
            None => 0,
        };
        self.node(
            NodeId::service(&c.name, &ns.name, svc),
            // Not in the node map: resolved from its namespace when selected (see `resolve`).
            None,
            svc,
            false,
            |b| {
                let (health, detail, findings) = match found {
                    Some(s) => {
                        let (ready, not_ready) = s
                            .endpoints
                            .iter()
                            .filter(|e| *e.cluster == *c.name)
                            .fold((0, 0), |(r, n), e| (r + e.ready, n + e.not_ready));
                        (
                            crate::topology::health::endpoint_counts(ready, not_ready),
                            format!("{ready}/{}", ready + not_ready),
                            findings,
                        )
                    }
                    None => (Health::Unknown, "cluster-local".to_string(), 0),
                };
                b.line(health, svc, detail, findings)
            },
            |_| Vec::new(),
        )
    }
}

/// Builds the items below `opened` nodes only (every node when `filter` is set). `index` is
/// [`TreeIndex::new`] of `topology`.
pub fn build(
    topology: &Topology,
    index: &mut TreeIndex,
    filter: &str,
    theme: &Theme,
    opened: &HashSet<Vec<String>>,
) -> TreeModel {
    let filter = filter.to_lowercase();
    if !filter.is_empty() {
        index.set_filter(topology, &filter);
    }
    let mut b = Builder {
        theme,
        filter_ascii: filter.is_ascii(),
        filter,
        opened,
        nodes: NodeMap::default(),
        topology,
        index,
        path: Vec::new(),
        scratch: String::new(),
    };
    let mut items = Vec::new();
    for mesh in &topology.meshes {
        let id = NodeId::mesh(&mesh.id);
        let item = b.node(
            id.clone(),
            Some(NodeRef::Mesh(mesh.id.clone())),
            &mesh.id,
            !mesh.networks.is_empty(),
            |b| {
                let detail = format!("{} · {} services", mesh.trust_domain, mesh.services.len());
                b.line(mesh.health, &mesh.id, detail, b.findings(&id))
            },
            |b| {
                mesh.networks
                    .iter()
                    .filter_map(|net| {
                        let id = NodeId::network(&mesh.id, &net.name);
                        b.node(
                            id.clone(),
                            Some(NodeRef::Network(mesh.id.clone(), net.name.clone())),
                            &net.name,
                            !net.clusters.is_empty(),
                            |b| {
                                let detail = format!(
                                    "{} cluster{}{}",
                                    net.clusters.len(),
                                    if net.clusters.len() == 1 { "" } else { "s" },
                                    if net.reachable { "" } else { " · unreachable" }
                                );
                                b.line(net.health, &net.name, detail, b.findings(&id))
                            },
                            |b| {
                                net.clusters
                                    .iter()
                                    .filter_map(|c| b.cluster(mesh, c))
                                    .collect()
                            },
                        )
                    })
                    .collect()
            },
        );
        items.extend(item);
    }
    items.extend(b.not_connected());
    items.extend(b.federation());
    TreeModel {
        items,
        nodes: b.nodes,
    }
}

/// A cluster's connection in words for its tree line: the state, what a connecting cluster
/// waits for (a credential plugin that runs), and with `reason` why it failed (first line).
fn connection_state(c: &Cluster, reason: bool) -> String {
    let mut state = c.connection.label().to_string();
    let why = match c.connection {
        Connection::Connecting => c
            .notes
            .get(crate::topology::snapshot::CREDENTIALS_NOTE)
            .map(String::as_str),
        _ if reason => c.connection.reason(),
        _ => None,
    };
    if let Some(why) = why.and_then(|w| w.lines().next()).filter(|w| !w.is_empty()) {
        state.push_str(" · ");
        state.push_str(why);
    }
    state
}

/// Every path to a node with children: opening all of them shows every filter match.
pub fn all_parent_paths(items: &[TreeItem<'static, String>]) -> Vec<Vec<String>> {
    fn walk(
        items: &[TreeItem<'static, String>],
        prefix: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        for item in items {
            if !item.children().is_empty() {
                prefix.push(item.identifier().clone());
                out.push(prefix.clone());
                walk(item.children(), prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(items, &mut Vec::new(), &mut out);
    out
}

/// The path (ids from the root) of a node, from the model: it need not be built (its
/// ancestors may be closed). Open every prefix of it to show the node.
pub fn path_of(topology: &Topology, id: &str) -> Option<Vec<String>> {
    let fed = NodeId::federation();
    if id == fed {
        return Some(vec![fed]);
    }
    let unreached = NodeId::not_connected();
    if !topology.not_connected.is_empty() {
        if id == unreached {
            return Some(vec![unreached]);
        }
        let context = id.strip_prefix("cluster:");
        if topology
            .not_connected
            .iter()
            .any(|c| Some(c.name.as_str()) == context)
        {
            return Some(vec![unreached, id.to_string()]);
        }
    }
    for pair in &topology.federation.pairs {
        if pair.id == id {
            return Some(vec![fed, pair.id.clone()]);
        }
        for (mesh, imp) in topology.federation.imports_of(pair) {
            if NodeId::federation_import(mesh, &imp.cluster, &imp.service_entry) == id {
                return Some(vec![fed, pair.id.clone(), id.to_string()]);
            }
        }
    }
    for mesh in &topology.meshes {
        let mesh_id = NodeId::mesh(&mesh.id);
        if mesh_id == id {
            return Some(vec![mesh_id]);
        }
        for net in &mesh.networks {
            let net_id = NodeId::network(&mesh.id, &net.name);
            let base = vec![mesh_id.clone(), net_id.clone()];
            if net_id == id {
                return Some(base);
            }
            for c in &net.clusters {
                let mut path = base.clone();
                path.push(NodeId::cluster(&c.name));
                if path[2] == id {
                    return Some(path);
                }
                // Every id below a cluster names its context first: skip the others without
                // formatting their nodes' ids (this runs on the UI thread per topology).
                let rest = id.split_once(':').map(|(_, r)| r).unwrap_or("");
                let below_this = rest
                    .strip_prefix(c.name.as_str())
                    .is_some_and(|r| r.starts_with('/'))
                    || NodeId::group_context(id) == Some(c.name.as_str());
                if !below_this {
                    continue;
                }
                let with = |mut p: Vec<String>, more: &[String]| {
                    p.extend_from_slice(more);
                    Some(p)
                };
                let grp = |kind: &str| NodeId::group(kind, &c.name);
                for kind in ["cp", "gw", "ns"] {
                    if grp(kind) == id {
                        return with(path, &[grp(kind)]);
                    }
                }
                for cp in &c.control_planes {
                    let cp_id = NodeId::control_plane(&cp.id);
                    if cp_id == id {
                        return with(path, &[grp("cp"), cp_id]);
                    }
                    if let Some(ctx) = NodeId::served_by_context(id, &cp.id) {
                        if topology
                            .cluster(ctx)
                            .is_some_and(|o| o.served_by.contains(&cp.id))
                        {
                            return with(path, &[grp("cp"), cp_id, id.to_string()]);
                        }
                    }
                }
                for g in &c.gateways {
                    if NodeId::gateway(&g.id) == id {
                        return with(path, &[grp("gw"), id.to_string()]);
                    }
                }
                for ns in c.namespaces.iter() {
                    let ns_id = NodeId::namespace(&c.name, &ns.name);
                    if ns_id == id {
                        return with(path, &[grp("ns"), ns_id]);
                    }
                    for svc in &ns.services {
                        if NodeId::service(&c.name, &ns.name, svc) == id {
                            return with(path, &[grp("ns"), ns_id, id.to_string()]);
                        }
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::demo::{DemoSim, Rng, Scale};
    use crate::topology::derive::derive;

    fn topology(seed: u64) -> Topology {
        let mut sim = DemoSim::scaled(
            seed,
            Scale {
                clusters: 4,
                services: 60,
                endpoints_per_service_cluster: 2,
                clusters_per_service: 2,
            },
        );
        let _ = sim.drain();
        derive(sim.world())
    }

    /// Ids of the items, depth first, with their depth.
    fn ids(items: &[TreeItem<'static, String>], depth: usize, out: &mut Vec<(usize, String)>) {
        for item in items {
            out.push((depth, item.identifier().clone()));
            ids(item.children(), depth + 1, out);
        }
    }

    /// The path of every built node, in tree order.
    fn paths(items: &[TreeItem<'static, String>]) -> Vec<Vec<String>> {
        fn walk(
            items: &[TreeItem<'static, String>],
            at: &mut Vec<String>,
            out: &mut Vec<Vec<String>>,
        ) {
            for item in items {
                at.push(item.identifier().clone());
                out.push(at.clone());
                walk(item.children(), at, out);
                at.pop();
            }
        }
        let mut out = Vec::new();
        walk(items, &mut Vec::new(), &mut out);
        out
    }

    /// Rows as (depth, id), and what each row stands for.
    type Shape = (Vec<(usize, String)>, Vec<(String, Option<NodeRef>)>);

    fn shape(model: &TreeModel) -> Shape {
        let mut out = Vec::new();
        ids(&model.items, 0, &mut out);
        let mut nodes: Vec<_> = paths(&model.items)
            .into_iter()
            .filter(|p| !p.last().is_some_and(|id| id.starts_with('…')))
            .map(|p| {
                (
                    p.last().cloned().unwrap_or_default(),
                    resolve(&model.nodes, &p),
                )
            })
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        (out, nodes)
    }

    /// Every built row resolves to what it stands for; a service row to its service.
    #[test]
    fn every_built_row_resolves_to_its_node() {
        let t = topology(2);
        let theme = Theme::dark();
        let model = build(&t, &mut TreeIndex::new(&t), "svc", &theme, &HashSet::new());
        let mut services = 0;
        for path in paths(&model.items) {
            let node = resolve(&model.nodes, &path).unwrap_or_else(|| panic!("{path:?}"));
            if let NodeRef::Service(c, ns, name) = &node {
                assert_eq!(path.last(), Some(&NodeId::service(c, ns, name)));
                assert!(t.cluster(c).is_some_and(|c| c
                    .namespaces
                    .iter()
                    .any(|n| &n.name == ns && n.services.contains(name))));
                services += 1;
            }
        }
        assert!(services > 0, "the filter shows services");
    }

    #[test]
    fn the_index_counts_findings_as_the_topology_does() {
        let t = topology(3);
        let index = TreeIndex::new(&t);
        for f in t.findings() {
            assert_eq!(index.findings(&f.node), t.findings_for(&f.node).count());
        }
        assert_eq!(index.findings("cluster:nowhere"), 0);
    }

    /// The guard of the incremental filter: typing and deleting at random, the tree built with
    /// the kept index equals the tree built with a fresh one at every keystroke.
    #[test]
    fn incremental_filter_equals_a_fresh_filter_over_random_keystrokes() {
        let theme = Theme::dark();
        let alphabet: Vec<char> = "svc-0123456tenaSVC-Té".chars().collect();
        for seed in 0..6u64 {
            let t = topology(seed);
            let mut kept = TreeIndex::new(&t);
            let mut rng = Rng::new(seed + 11);
            let opened = HashSet::new();
            let mut filter = String::new();
            for step in 0..120 {
                match rng.below(10) {
                    0..=2 => {
                        filter.pop();
                    }
                    3 if !filter.is_empty() => filter.clear(),
                    _ => filter.push(alphabet[rng.below(alphabet.len() as u64) as usize]),
                }
                let incremental = build(&t, &mut kept, &filter, &theme, &opened);
                let fresh = build(&t, &mut TreeIndex::new(&t), &filter, &theme, &opened);
                assert_eq!(
                    shape(&incremental),
                    shape(&fresh),
                    "seed {seed}, step {step}, filter {filter:?}"
                );
            }
        }
    }

    /// The index against the plain rule it replaces: a service is shown for a filter when its
    /// name contains the filter, ignoring case.
    #[test]
    fn filtered_services_are_those_whose_names_contain_the_filter() {
        let t = topology(5);
        let theme = Theme::dark();
        for filter in ["svc-00", "SVC-001", "0005", "nothing-matches"] {
            let model = build(&t, &mut TreeIndex::new(&t), filter, &theme, &HashSet::new());
            let mut shown: Vec<String> = paths(&model.items)
                .iter()
                .filter_map(|path| match resolve(&model.nodes, path) {
                    Some(NodeRef::Service(_, _, s)) => Some(s),
                    _ => None,
                })
                .collect();
            shown.sort();
            let mut expected: Vec<String> = t
                .clusters()
                .flat_map(|c| c.namespaces.iter().flat_map(|ns| ns.services.iter()))
                .filter(|s| s.to_lowercase().contains(&filter.to_lowercase()))
                .cloned()
                .collect();
            expected.sort();
            assert_eq!(shown, expected, "filter {filter}");
        }
    }
}
