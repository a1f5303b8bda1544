//! How the app reacts to keys, mouse, new topologies and failover progress. Pure state
//! changes; anything that touches a cluster is returned as a [`Command`].

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::action::{action_for, Action, Context, Scope};
use super::state::*;
use super::tree::{self, NodeRef};
use crate::engine::LogEntry;
use crate::failover::apply::Progress;
use crate::failover::audit::Attempt;
use crate::failover::plan::{self, Plan, Subject};
use crate::failover::preflight::{self, Verdict};
use crate::topology::model::{NodeId, Severity, Topology};

impl App {
    /// Rebuilds the tree items when the topology, filter, theme or open nodes changed.
    pub fn refresh_tree(&mut self) {
        if !self.tree_dirty {
            return;
        }
        self.tree_dirty = false;
        if !self.filter.is_empty() && self.opened_before_filter.is_none() {
            self.opened_before_filter = Some(self.tree_state.opened().iter().cloned().collect());
        }
        if self.filter.is_empty() {
            if let Some(opened) = self.opened_before_filter.take() {
                // Back to the user's own open nodes (the way to the cursor is reopened below).
                self.tree_state.close_all();
                for path in opened {
                    self.tree_state.open(path);
                }
            }
        }
        // Find the cursor's node in the new model first (it may have moved, e.g. a cluster
        // re-parented under its new control plane), so the build includes the way to it.
        let selected = self.tree_state.selected().to_vec();
        let target = selected
            .last()
            .and_then(|id| tree::path_of(&self.topology, id))
            .unwrap_or_else(|| self.relocate(&selected));
        for i in 1..target.len() {
            self.tree_state.open(target[..i].to_vec());
        }
        let model = tree::build(
            &self.topology,
            self.tree_index.get(&self.topology),
            &self.filter,
            &self.themes[self.theme_index],
            self.tree_state.opened(),
        );
        self.tree_items = model.items;
        self.nodes = model.nodes;
        if self.filter.is_empty() {
            self.tree_state.select(target);
        } else {
            for path in tree::all_parent_paths(&self.tree_items) {
                self.tree_state.open(path);
            }
            let shown = tree::contains_path(&self.tree_items, &target);
            if shown {
                self.tree_state.select(target);
            } else {
                let first = self
                    .tree_items
                    .first()
                    .map(|i| vec![i.identifier().clone()]);
                self.tree_state.select(first.unwrap_or_default());
            }
        }
    }

    /// Selects a node by id, opening the way to it.
    pub fn select_node(&mut self, id: &str) -> bool {
        let Some(path) = tree::path_of(&self.topology, id) else {
            return false;
        };
        for i in 1..path.len() {
            self.tree_state.open(path[..i].to_vec());
        }
        self.tree_state.select(path);
        self.tree_dirty = true;
        self.refresh_tree();
        true
    }

    /// Where the cursor goes when its node vanished: the same cluster under its new control
    /// plane, else the nearest ancestor left, else the top (the first mesh, else the clusters
    /// not connected).
    fn relocate(&self, old: &[String]) -> Vec<String> {
        let t = &self.topology;
        if let Some(context) = old.last().and_then(|id| NodeId::served_context(id)) {
            let moved = t
                .cluster(context)
                .and_then(|c| c.served_by.first())
                .and_then(|cp| tree::path_of(t, &NodeId::served(cp, context)));
            if let Some(path) = moved {
                return path;
            }
        }
        for i in (1..old.len()).rev() {
            if let Some(path) = tree::path_of(t, &old[i - 1]) {
                return path;
            }
        }
        match t.meshes.first() {
            Some(m) => vec![NodeId::mesh(&m.id)],
            None if !t.not_connected.is_empty() => vec![NodeId::not_connected()],
            None => Vec::new(),
        }
    }

    pub fn on_topology(&mut self, topology: Arc<Topology>, log: Vec<LogEntry>) {
        self.topology = topology;
        self.tree_dirty = true;
        for entry in log {
            self.push_log(entry);
        }
        self.received_first = true;
        // Meshes, networks and the clusters not connected open the first time they appear
        // (live clusters find their mesh only once they sync); what the user closed afterwards
        // stays closed.
        if !self.topology.not_connected.is_empty() {
            let id = NodeId::not_connected();
            if self.seen_groups.insert(id.clone()) {
                self.tree_state.open(vec![id]);
            }
        }
        for mesh in &self.topology.meshes {
            let mesh_id = NodeId::mesh(&mesh.id);
            if self.seen_groups.insert(mesh_id.clone()) {
                self.tree_state.open(vec![mesh_id.clone()]);
            }
            for net in &mesh.networks {
                let net_id = NodeId::network(&mesh.id, &net.name);
                if self.seen_groups.insert(net_id.clone()) {
                    self.tree_state.open(vec![mesh_id.clone(), net_id]);
                }
            }
        }
        self.refresh_tree();
        // Preflight of an open review is re-run so what is shown is never stale.
        let read_only = self.read_only;
        let topology = self.topology.clone();
        if let Some(Modal::Failover(m)) = &mut self.modal {
            if m.phase == Phase::Review {
                m.checks = preflight::preflight(&topology, &m.plan, read_only);
            }
        }
    }

    pub fn on_mouse(&mut self, event: MouseEvent) {
        match event.kind {
            MouseEventKind::ScrollDown => {
                self.tree_state.scroll_down(3);
            }
            MouseEventKind::ScrollUp => {
                self.tree_state.scroll_up(3);
            }
            MouseEventKind::Down(_) => {
                self.tree_dirty |= self
                    .tree_state
                    .click_at(ratatui::layout::Position::new(event.column, event.row));
            }
            _ => {}
        }
    }

    /// Where keys go now: the scope whose bindings apply and whose hints are shown.
    pub fn key_scope(&self) -> Scope {
        if self.filter_editing {
            return Scope::Filter;
        }
        match &self.modal {
            Some(Modal::Failover(m)) if m.phase == Phase::Review && m.confirm_name.is_some() => {
                Scope::Confirm
            }
            Some(Modal::Failover(_)) => Scope::Failover,
            Some(Modal::Pending(_)) => Scope::Pending,
            Some(Modal::Help) | Some(Modal::Message { .. }) => Scope::Overlay,
            None => Scope::Main,
        }
    }

    /// What the key map needs to know to tell which bindings are available now.
    pub fn key_context(&self) -> Context {
        let review = match &self.modal {
            Some(Modal::Failover(m)) if m.phase == Phase::Review => Some(m),
            _ => None,
        };
        Context {
            failover_subject: self.subject().is_some(),
            can_undo: self.last_applied.is_some(),
            can_apply: review.is_some_and(|m| m.may_apply()),
            other_target: review.is_some_and(|m| !m.is_undo && m.targets.len() > 1),
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if self.filter_editing {
            return self.on_filter_key(key);
        }
        match &self.modal {
            Some(Modal::Failover(_)) => return self.on_failover_key(key),
            Some(Modal::Pending(_)) => return self.on_pending_key(key),
            Some(Modal::Help) | Some(Modal::Message { .. }) => {
                if action_for(Scope::Overlay, &key) == Some(Action::Quit) {
                    self.quit = true;
                    return None;
                }
                // Any other key closes an informational overlay; `?` toggles help.
                self.modal = None;
                return None;
            }
            None => {}
        }
        let action = action_for(Scope::Main, &key)?;
        self.on_action(action)
    }

    fn on_action(&mut self, action: Action) -> Option<Command> {
        match action {
            Action::Up => self.move_cursor(-1),
            Action::Down => self.move_cursor(1),
            // Opening or closing changes which items exist: rebuild before the next frame.
            Action::Collapse => {
                self.tree_dirty |= self.tree_state.key_left();
            }
            Action::Expand => {
                self.tree_dirty |= self.tree_state.key_right();
            }
            Action::Toggle => {
                self.tree_dirty |= self.tree_state.toggle_selected();
            }
            Action::PageUp => self.move_cursor(-(self.page.max(1) as isize)),
            Action::PageDown => self.move_cursor(self.page.max(1) as isize),
            Action::First => self.move_cursor(isize::MIN),
            Action::Last => self.move_cursor(isize::MAX),
            Action::Filter => {
                self.filter_editing = true;
            }
            Action::Escape => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.tree_dirty = true;
                    self.refresh_tree();
                }
            }
            Action::Help => self.modal = Some(Modal::Help),
            Action::Theme => {
                self.theme_index = (self.theme_index + 1) % self.themes.len();
                self.tree_dirty = true;
                self.refresh_tree();
            }
            Action::Failover => return self.open_failover(),
            Action::Undo => return self.open_undo(),
            Action::Quit => self.quit = true,
            Action::Confirm
            | Action::NextTarget
            | Action::Resume
            | Action::DeleteChar
            | Action::FilterKeep
            | Action::FilterClear
            | Action::FilterDelete => {}
        }
        None
    }

    /// Moves the cursor over the rows currently visible. Computed from the items and the open
    /// set, not from the last frame, so keys typed faster than frames still land right.
    fn move_cursor(&mut self, delta: isize) {
        let rows: Vec<Vec<String>> = self
            .tree_state
            .flatten(&self.tree_items)
            .into_iter()
            .map(|f| f.identifier)
            .collect();
        if rows.is_empty() {
            return;
        }
        let current = rows
            .iter()
            .position(|r| r.as_slice() == self.tree_state.selected());
        let last = rows.len() as isize - 1;
        let next = match current {
            None => 0,
            Some(c) => (c as isize).saturating_add(delta).clamp(0, last),
        };
        self.tree_state.select(rows[next as usize].clone());
    }

    fn on_filter_key(&mut self, key: KeyEvent) -> Option<Command> {
        match (action_for(Scope::Filter, &key), key.code) {
            (Some(Action::FilterClear), _) => {
                self.filter_editing = false;
                self.filter.clear();
            }
            (Some(Action::FilterKeep), _) => self.filter_editing = false,
            (Some(Action::FilterDelete), _) => {
                self.filter.pop();
            }
            (Some(Action::Quit), _) => {
                self.quit = true;
                return None;
            }
            (Some(Action::Down), _) => {
                self.move_cursor(1);
                return None;
            }
            (Some(Action::Up), _) => {
                self.move_cursor(-1);
                return None;
            }
            (None, KeyCode::Char(c)) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c)
            }
            _ => return None,
        }
        self.tree_dirty = true;
        self.refresh_tree();
        // Put the cursor on the first match so Enter lands somewhere useful.
        if !self.filter.is_empty() {
            let filter = self.filter.to_lowercase();
            if let Some(path) = first_match(&self.tree_items, &filter, &self.nodes) {
                self.tree_state.select(path);
            }
        }
        None
    }

    fn subject(&self) -> Option<Subject> {
        match self.selected()? {
            NodeRef::ControlPlane(id) => Some(Subject::ControlPlane(id.clone())),
            // A cluster never reached: nothing is known of what serves it.
            NodeRef::Cluster(c) if self.not_connected(&c) => None,
            other => other.cluster().map(|c| Subject::Cluster(c.to_string())),
        }
    }

    fn not_connected(&self, context: &str) -> bool {
        self.topology
            .not_connected
            .iter()
            .any(|c| c.name == context)
    }

    fn open_failover(&mut self) -> Option<Command> {
        if let Some(NodeRef::Cluster(c)) = self.selected() {
            if self.not_connected(&c) {
                self.modal = Some(Modal::Message {
                    title: "Failover".into(),
                    body: format!(
                        "Cannot fail over: {c} was never reached, so nothing is known of what serves it."
                    ),
                });
                return None;
            }
        }
        let Some(subject) = self.subject() else {
            self.modal = Some(Modal::Message {
                title: "Failover".into(),
                body: "Select a cluster or a control plane first.".into(),
            });
            return None;
        };
        let targets = plan::targets(&self.topology, &subject);
        match plan::plan(
            &self.topology,
            &subject,
            targets.first().map(String::as_str),
            None,
        ) {
            Ok(p) => {
                let checks = preflight::preflight(&self.topology, &p, self.read_only);
                let mut m = FailoverModal::new(p.clone(), checks, self.typed_confirmation);
                m.subject = Some(subject);
                m.targets = targets;
                self.modal = Some(Modal::Failover(Box::new(m)));
                Some(Command::Access(p))
            }
            Err(e) => {
                self.modal = Some(Modal::Message {
                    title: "Failover".into(),
                    body: format!("Cannot fail over: {e}"),
                });
                None
            }
        }
    }

    /// Opens the review of a plan that finishes or reverts an earlier attempt.
    fn open_review(
        &mut self,
        plan: crate::failover::plan::Plan,
        resumes: Option<String>,
        undoes: Option<String>,
    ) -> Option<Command> {
        let checks = preflight::preflight(&self.topology, &plan, self.read_only);
        let mut m = FailoverModal::new(plan.clone(), checks, self.typed_confirmation);
        m.is_undo = undoes.is_some();
        m.resumes = resumes;
        m.undoes = undoes;
        self.modal = Some(Modal::Failover(Box::new(m)));
        Some(Command::Access(plan))
    }

    fn open_undo(&mut self) -> Option<Command> {
        let Some((attempt, last)) = &self.last_applied else {
            self.modal = Some(Modal::Message {
                title: "Undo".into(),
                body: "No failover to undo.".into(),
            });
            return None;
        };
        let mut undo = last.inverse();
        undo.undo_of = Some(attempt.clone());
        let attempt = attempt.clone();
        self.open_review(undo, None, Some(attempt))
    }

    fn on_pending_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Some(Modal::Pending(attempt)) = &self.modal else {
            return None;
        };
        let attempt = (**attempt).clone();
        match action_for(Scope::Pending, &key)? {
            Action::Quit => self.quit = true,
            Action::Resume => {
                return self.open_review(attempt.plan.clone(), Some(attempt.id.clone()), None)
            }
            Action::Undo => {
                return self.open_review(attempt.rollback(), None, Some(attempt.id.clone()))
            }
            Action::Escape => self.modal = None,
            _ => {}
        }
        None
    }

    /// Typing the cluster's name to confirm a live failover.
    fn on_confirm_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Some(Modal::Failover(m)) = &mut self.modal else {
            return None;
        };
        match action_for(Scope::Confirm, &key) {
            Some(Action::DeleteChar) => {
                m.typed.pop();
                None
            }
            Some(action) => self.on_failover_action(action),
            None => {
                if let KeyCode::Char(c) = key.code {
                    if !key.modifiers.contains(KeyModifiers::CONTROL) {
                        m.typed.push(c);
                    }
                }
                None
            }
        }
    }

    fn on_failover_key(&mut self, key: KeyEvent) -> Option<Command> {
        let (done, typing) = match &self.modal {
            Some(Modal::Failover(m)) => (
                matches!(m.phase, Phase::Done { .. }),
                m.phase == Phase::Review && m.confirm_name.is_some(),
            ),
            _ => return None,
        };
        if typing {
            return self.on_confirm_key(key);
        }
        let Some(action) = action_for(Scope::Failover, &key) else {
            // Once a failover is done, its window steps aside for any main key (e.g. `u`).
            if done {
                self.modal = None;
                return self.on_key(key);
            }
            return None;
        };
        self.on_failover_action(action)
    }

    fn on_failover_action(&mut self, action: Action) -> Option<Command> {
        let read_only = self.read_only;
        let topology = self.topology.clone();
        let Some(Modal::Failover(m)) = &mut self.modal else {
            return None;
        };
        match (action, &m.phase) {
            (Action::Quit, _) => {
                self.quit = true;
                return None;
            }
            (Action::Escape, Phase::Running { .. }) => {
                // The plan keeps running; progress continues in the event log.
                self.modal = None;
            }
            (Action::Escape, _) => self.modal = None,
            (Action::NextTarget, Phase::Review) if !m.is_undo && m.targets.len() > 1 => {
                m.target = (m.target + 1) % m.targets.len();
                if let Some(subject) = &m.subject {
                    match plan::plan(&topology, subject, Some(&m.targets[m.target]), None) {
                        Ok(p) => {
                            m.checks = preflight::preflight(&topology, &p, read_only);
                            m.confirm_name = m.confirm_name.as_ref().map(|_| p.cluster.clone());
                            m.plan = p.clone();
                            m.access = None;
                            return Some(Command::Access(p));
                        }
                        Err(e) => {
                            m.checks = vec![preflight::Check {
                                name: "plan".into(),
                                verdict: Verdict::Fail,
                                reason: e,
                            }];
                        }
                    }
                }
            }
            (Action::Confirm, Phase::Review) => {
                // Checks run again on the latest facts right before applying.
                m.checks = preflight::preflight(&topology, &m.plan, read_only);
                if !m.may_apply() {
                    return None;
                }
                let steps = m
                    .plan
                    .changes
                    .iter()
                    .map(|c| StepView {
                        description: c.describe(),
                        result: None,
                    })
                    .collect();
                m.phase = Phase::Running { steps, note: None };
                let run = m.run();
                let now = self.now;
                self.push_log(LogEntry {
                    at: now,
                    severity: Severity::Info,
                    message: format!("failover started: {}", run.plan.title()),
                });
                return Some(Command::Execute(run));
            }
            _ => {}
        }
        None
    }

    /// Attempts the audit log shows stopped half-way, and the newest undoable one: what the
    /// runtime found at start.
    pub fn on_history(&mut self, pending: Vec<Attempt>, undoable: Option<(String, Plan)>) {
        if self.last_applied.is_none() {
            self.last_applied = undoable;
        }
        if let Some(first) = pending.into_iter().next() {
            if self.modal.is_none() {
                self.modal = Some(Modal::Pending(Box::new(first)));
            }
        }
    }

    pub fn on_progress(&mut self, progress: Progress) {
        let now = self.now;
        if let Progress::Checked { plan, checks } = &progress {
            if let Some(Modal::Failover(m)) = &mut self.modal {
                if m.phase == Phase::Review && &m.plan == plan {
                    m.access = Some(checks.clone());
                }
            }
            return;
        }
        if let Progress::Done {
            ok,
            message,
            applied,
            attempt,
        } = &progress
        {
            let title = applied.title();
            self.push_log(LogEntry {
                at: now,
                severity: if *ok { Severity::Info } else { Severity::Error },
                message: format!(
                    "failover {}: {title}: {message}",
                    if *ok { "done" } else { "FAILED" }
                ),
            });
            let was_undo = applied.undo_of.is_some();
            if was_undo && !applied.changes.is_empty() {
                self.last_applied = None;
            } else if !applied.changes.is_empty() {
                self.last_applied = Some((attempt.clone(), (**applied).clone()));
            }
        }
        let Some(Modal::Failover(m)) = &mut self.modal else {
            return;
        };
        let steps = match &mut m.phase {
            Phase::Running { steps, .. } => steps,
            _ => return,
        };
        match progress {
            Progress::Step { index, result, .. } => {
                if let Some(step) = steps.get_mut(index) {
                    step.result = Some(result);
                }
            }
            Progress::Note(note) => {
                if let Phase::Running { note: n, .. } = &mut m.phase {
                    *n = Some(note);
                }
            }
            Progress::Done { ok, message, .. } => {
                let steps = std::mem::take(steps);
                m.phase = Phase::Done { ok, message, steps };
            }
            Progress::Checked { .. } => {}
        }
    }
}

fn first_match(
    items: &[tui_tree_widget::TreeItem<'static, String>],
    filter: &str,
    nodes: &crate::app::tree::NodeMap,
) -> Option<Vec<String>> {
    fn name_of(node: &NodeRef) -> &str {
        match node {
            NodeRef::Mesh(m) => m,
            NodeRef::Network(_, n) => n,
            NodeRef::Cluster(c) => c,
            NodeRef::ControlPlanes(_) => "control planes",
            NodeRef::Gateways(_) => "gateways",
            NodeRef::Namespaces(_) => "namespaces",
            NodeRef::ControlPlane(id) | NodeRef::Gateway(id) => id,
            NodeRef::Served(_, c) => c,
            NodeRef::Namespace(_, n) => n,
            NodeRef::Service(_, _, s) => s,
            NodeRef::NotConnected => "not connected",
            NodeRef::Federation => "federation",
            NodeRef::FederationPair(id) => id,
            NodeRef::FederationImport(_, _, se) => se,
        }
    }
    /// Depth first from `path` (the ids above `items`).
    fn search(
        items: &[tui_tree_widget::TreeItem<'static, String>],
        filter: &str,
        nodes: &crate::app::tree::NodeMap,
        path: &mut Vec<String>,
    ) -> bool {
        for item in items {
            path.push(item.identifier().clone());
            if tree::resolve(nodes, path)
                .is_some_and(|n| name_of(&n).to_lowercase().contains(filter))
                || search(item.children(), filter, nodes, path)
            {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = Vec::new();
    search(items, filter, nodes, &mut path).then_some(path)
}
