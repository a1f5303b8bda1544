//! The hierarchy as tree items: Mesh → Network → Cluster → {Control planes → served clusters,
//! Gateways, Namespaces → Services}. Built once per topology, filter or theme change; the
//! widget then renders only the rows in view.

use std::collections::HashMap;

use ratatui::text::{Line, Span};
use tui_tree_widget::TreeItem;

use super::theme::Theme;
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

pub struct TreeModel {
    pub items: Vec<TreeItem<'static, String>>,
    pub nodes: HashMap<String, NodeRef>,
}

struct Builder<'a> {
    theme: &'a Theme,
    filter: String,
    nodes: HashMap<String, NodeRef>,
    topology: &'a Topology,
}

/// One tree node under construction; children that fail the filter are dropped.
struct Node {
    id: String,
    reference: NodeRef,
    line: Line<'static>,
    matches: bool,
    children: Vec<Node>,
}

impl Builder<'_> {
    fn line(&self, health: Health, name: &str, detail: String, findings: usize) -> Line<'static> {
        let mut spans = vec![
            Span::styled(health.glyph().to_string(), self.theme.health(health)),
            Span::raw(" "),
            Span::styled(name.to_string(), self.theme.base()),
        ];
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

    fn findings(&self, node: &str) -> usize {
        self.topology.findings_for(node).count()
    }

    fn node(
        &self,
        id: String,
        reference: NodeRef,
        name: &str,
        line: Line<'static>,
        children: Vec<Node>,
    ) -> Node {
        let matches = self.filter.is_empty() || name.to_lowercase().contains(&self.filter);
        Node {
            id,
            reference,
            line,
            matches,
            children,
        }
    }

    /// Keeps a node when it or a descendant matches the filter.
    fn keep(&self, mut node: Node) -> Option<Node> {
        if self.filter.is_empty() || node.matches {
            return Some(node);
        }
        node.children = std::mem::take(&mut node.children)
            .into_iter()
            .filter_map(|c| self.keep(c))
            .collect();
        (!node.children.is_empty()).then_some(node)
    }

    fn finish(&mut self, node: Node) -> TreeItem<'static, String> {
        self.nodes.insert(node.id.clone(), node.reference);
        let children: Vec<TreeItem<'static, String>> =
            node.children.into_iter().map(|c| self.finish(c)).collect();
        if children.is_empty() {
            TreeItem::new_leaf(node.id, node.line)
        } else {
            // Ids are unique by construction; fall back to a leaf rather than fail a frame.
            let line = node.line.clone();
            TreeItem::new(node.id.clone(), node.line, children)
                .unwrap_or_else(|_| TreeItem::new_leaf(node.id, line))
        }
    }

    fn cluster(&self, mesh: &Mesh, c: &Cluster) -> Node {
        let cp_nodes: Vec<Node> = c
            .control_planes
            .iter()
            .map(|cp| {
                let served: Vec<Node> = self
                    .topology
                    .clusters()
                    .filter(|o| o.served_by.contains(&cp.id))
                    .map(|o| {
                        let id = format!("serves:{}:{}", cp.id, o.name);
                        let line = self.line(o.status, &o.name, format!("↳ {}", o.role.label()), 0);
                        self.node(
                            id,
                            NodeRef::Served(cp.id.clone(), o.name.clone()),
                            &o.name,
                            line,
                            vec![],
                        )
                    })
                    .collect();
                let detail = format!(
                    "{} {}/{}{}",
                    cp.revision,
                    cp.ready_replicas,
                    cp.replicas,
                    if cp.external { " external" } else { "" }
                );
                let label = format!("{}/{}", cp.namespace, cp.name);
                let id = NodeId::control_plane(&cp.id);
                let line = self.line(cp.health, &label, detail, self.findings(&id));
                self.node(
                    id,
                    NodeRef::ControlPlane(cp.id.clone()),
                    &label,
                    line,
                    served,
                )
            })
            .collect();
        let gw_nodes: Vec<Node> = c
            .gateways
            .iter()
            .map(|g| {
                let detail = format!("{} {}/{}", g.kind.label(), g.ready_pods, g.pods);
                let id = NodeId::gateway(&g.id);
                let line = self.line(g.health, &g.name, detail, self.findings(&id));
                self.node(id, NodeRef::Gateway(g.id.clone()), &g.name, line, vec![])
            })
            .collect();
        let ns_nodes: Vec<Node> = c
            .namespaces
            .iter()
            .map(|ns| {
                let services: Vec<Node> = ns
                    .services
                    .iter()
                    .map(|svc| {
                        let (health, detail, findings) = match mesh.service(&ns.name, svc) {
                            Some(s) => {
                                let here: (u32, u32) = s
                                    .endpoints
                                    .iter()
                                    .filter(|e| *e.cluster == *c.name)
                                    .fold((0, 0), |(r, t), e| {
                                        (r + e.ready, t + e.ready + e.not_ready)
                                    });
                                let counts = [(here.0, here.1 - here.0)];
                                (
                                    crate::topology::health::endpoints(counts.iter()),
                                    format!("{}/{}", here.0, here.1),
                                    self.findings(&NodeId::mesh_service(&mesh.id, &ns.name, svc)),
                                )
                            }
                            None => (Health::Unknown, "cluster-local".to_string(), 0),
                        };
                        let id = NodeId::service(&c.name, &ns.name, svc);
                        let line = self.line(health, svc, detail, findings);
                        self.node(
                            id,
                            NodeRef::Service(c.name.clone(), ns.name.clone(), svc.clone()),
                            svc,
                            line,
                            vec![],
                        )
                    })
                    .collect();
                let id = NodeId::namespace(&c.name, &ns.name);
                let findings = self.findings(&NodeId::tenant(&mesh.id, &ns.name));
                let line = self.line(ns.health, &ns.name, ns.injection.clone(), findings);
                self.node(
                    id,
                    NodeRef::Namespace(c.name.clone(), ns.name.clone()),
                    &ns.name,
                    line,
                    services,
                )
            })
            .collect();
        let group =
            |kind: &str, label: &str, reference: NodeRef, children: Vec<Node>, health: Health| {
                let id = format!("grp:{kind}:{}", c.name);
                let line = self.line(health, label, format!("({})", children.len()), 0);
                self.node(id, reference, label, line, children)
            };
        let cp_health = c
            .control_planes
            .iter()
            .map(|cp| cp.health)
            .fold(Health::Healthy, Health::worst);
        let gw_health = c
            .gateways
            .iter()
            .map(|g| g.health)
            .fold(Health::Healthy, Health::worst);
        let ns_health = c
            .namespaces
            .iter()
            .map(|n| n.health)
            .fold(Health::Healthy, Health::worst);
        let mut children = Vec::new();
        if !cp_nodes.is_empty() {
            children.push(group(
                "cp",
                "Control planes",
                NodeRef::ControlPlanes(c.name.clone()),
                cp_nodes,
                cp_health,
            ));
        }
        if !gw_nodes.is_empty() {
            children.push(group(
                "gw",
                "Gateways",
                NodeRef::Gateways(c.name.clone()),
                gw_nodes,
                gw_health,
            ));
        }
        if !ns_nodes.is_empty() {
            children.push(group(
                "ns",
                "Namespaces",
                NodeRef::Namespaces(c.name.clone()),
                ns_nodes,
                ns_health,
            ));
        }
        let served = c
            .served_by
            .iter()
            .filter_map(|id| self.topology.control_plane(id))
            .filter(|cp| cp.cluster != c.name || cp.external)
            .map(|cp| format!(" ← {}", cp.cluster))
            .next()
            .unwrap_or_default();
        let detail = format!(
            "{}{served} {}/{}",
            c.role.label(),
            c.endpoints_ready,
            c.endpoints_total
        );
        let id = NodeId::cluster(&c.name);
        let line = self.line(c.status, &c.name, detail, self.findings(&id));
        self.node(
            id,
            NodeRef::Cluster(c.name.clone()),
            &c.name,
            line,
            children,
        )
    }
}

pub fn build(topology: &Topology, filter: &str, theme: &Theme) -> TreeModel {
    let mut b = Builder {
        theme,
        filter: filter.to_lowercase(),
        nodes: HashMap::new(),
        topology,
    };
    let mut items = Vec::new();
    for mesh in &topology.meshes {
        let networks: Vec<Node> = mesh
            .networks
            .iter()
            .map(|net| {
                let clusters: Vec<Node> = net.clusters.iter().map(|c| b.cluster(mesh, c)).collect();
                let id = NodeId::network(&mesh.id, &net.name);
                let detail = format!(
                    "{} cluster{}{}",
                    net.clusters.len(),
                    if net.clusters.len() == 1 { "" } else { "s" },
                    if net.reachable { "" } else { " · unreachable" }
                );
                let line = b.line(net.health, &net.name, detail, b.findings(&id));
                b.node(
                    id,
                    NodeRef::Network(mesh.id.clone(), net.name.clone()),
                    &net.name,
                    line,
                    clusters,
                )
            })
            .collect();
        let id = NodeId::mesh(&mesh.id);
        let detail = format!("{} · {} services", mesh.trust_domain, mesh.services.len());
        let line = b.line(mesh.health, &mesh.id, detail, b.findings(&id));
        let node = b.node(id, NodeRef::Mesh(mesh.id.clone()), &mesh.id, line, networks);
        if let Some(node) = b.keep(node) {
            let item = b.finish(node);
            items.push(item);
        }
    }
    TreeModel {
        items,
        nodes: b.nodes,
    }
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

/// The path (ids from the root) of the first node with this id.
pub fn path_to(items: &[TreeItem<'static, String>], id: &str) -> Option<Vec<String>> {
    for item in items {
        if item.identifier() == id {
            return Some(vec![item.identifier().clone()]);
        }
        if let Some(mut rest) = path_to(item.children(), id) {
            rest.insert(0, item.identifier().clone());
            return Some(rest);
        }
    }
    None
}
