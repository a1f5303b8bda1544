//! Application state: the latest model, the tree's selection, modals, the event log. No I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use tui_tree_widget::{TreeItem, TreeState};

use super::tree::{IndexCache, NodeRef};
use crate::engine::LogEntry;
use crate::failover::apply::Run;
use crate::failover::audit::Attempt;
use crate::failover::plan::{Plan, Subject};
use crate::failover::preflight::Check;
use crate::theme::Theme;
use crate::topology::model::Topology;

pub const LOG_CAPACITY: usize = 500;

#[derive(Clone, Debug, PartialEq)]
pub struct StepView {
    pub description: String,
    pub result: Option<Result<(), String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Review,
    Running {
        steps: Vec<StepView>,
        note: Option<String>,
    },
    Done {
        ok: bool,
        message: String,
        steps: Vec<StepView>,
    },
}

#[derive(Clone, Debug)]
pub struct FailoverModal {
    pub subject: Option<Subject>,
    pub targets: Vec<String>,
    pub target: usize,
    pub plan: Plan,
    /// Checks on the facts the topology holds (re-run on every new topology).
    pub checks: Vec<Check>,
    /// Checks the writer asks the API servers (permissions, lock); `None` while asking.
    pub access: Option<Vec<Check>>,
    pub phase: Phase,
    pub is_undo: bool,
    /// The attempt this plan finishes or reverts (from the audit log).
    pub resumes: Option<String>,
    pub undoes: Option<String>,
    /// Live mode: the name the operator must type to confirm; the demo confirms with a key.
    pub confirm_name: Option<String>,
    pub typed: String,
}

impl FailoverModal {
    pub fn new(plan: Plan, checks: Vec<Check>, confirm: bool) -> FailoverModal {
        FailoverModal {
            subject: None,
            targets: vec![plan.to.clone()],
            target: 0,
            confirm_name: confirm.then(|| plan.cluster.clone()),
            plan,
            checks,
            access: None,
            phase: Phase::Review,
            is_undo: false,
            resumes: None,
            undoes: None,
            typed: String::new(),
        }
    }

    /// Every check shown: the topology's, then the API's.
    pub fn all_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().chain(self.access.iter().flatten())
    }

    /// Nothing blocks, the API has answered, and (live) the name is typed.
    pub fn may_apply(&self) -> bool {
        self.phase == Phase::Review
            && self.access.is_some()
            && !self
                .all_checks()
                .any(|c| c.verdict == crate::failover::preflight::Verdict::Fail)
            && self
                .confirm_name
                .as_ref()
                .is_none_or(|name| &self.typed == name)
    }

    pub fn run(&self) -> Run {
        Run {
            resumes: self.resumes.clone(),
            undoes: self.undoes.clone(),
            ..Run::new(self.plan.clone())
        }
    }
}

#[derive(Clone, Debug)]
pub enum Modal {
    Help,
    Message {
        title: String,
        body: String,
    },
    Failover(Box<FailoverModal>),
    /// An attempt the audit log shows stopped half-way: resume it or roll it back.
    Pending(Box<Attempt>),
}

/// What the runtime must do on the app's behalf (quitting is `App::quit`).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Apply a plan.
    Execute(Run),
    /// Ask the API servers what the plan needs (permissions, lock); answered by
    /// `Progress::Checked`.
    Access(Plan),
}

pub struct App {
    pub topology: Arc<Topology>,
    /// e.g. `demo · seed 7` or `kubeconfig: 3 contexts`
    pub source_label: String,
    pub tree_items: Vec<TreeItem<'static, String>>,
    /// What tree rebuilds read of the current topology, made once per topology.
    pub tree_index: IndexCache,
    pub nodes: crate::app::tree::NodeMap,
    pub tree_state: TreeState<String>,
    pub tree_dirty: bool,
    pub filter: String,
    pub filter_editing: bool,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    pub modal: Option<Modal>,
    pub log: VecDeque<LogEntry>,
    pub read_only: bool,
    /// Live clusters: a failover is confirmed by typing the cluster's name.
    pub typed_confirmation: bool,
    /// Unix seconds, advanced by ticks; rendering reads time only from here.
    pub now: u64,
    /// The newest failover that wrote something and is not undone: its attempt id and the
    /// changes it applied (what `u` reverts).
    pub last_applied: Option<(String, Plan)>,
    pub quit: bool,
    /// Rows of the tree viewport at the last draw, for PgUp/PgDn.
    pub page: usize,
    /// Mesh and network nodes seen so far: each opens once, when it first appears.
    pub seen_groups: std::collections::HashSet<String>,
    /// A topology has arrived (until then the tree says it is waiting).
    pub received_first: bool,
    /// The tree's open nodes before a filter opened everything, restored when it clears.
    pub opened_before_filter: Option<Vec<Vec<String>>>,
}

impl App {
    pub fn new(
        themes: Vec<Theme>,
        theme_index: usize,
        source_label: String,
        read_only: bool,
    ) -> App {
        let themes = if themes.is_empty() {
            vec![Theme::dark()]
        } else {
            themes
        };
        App {
            topology: Arc::new(Topology::default()),
            source_label,
            tree_items: Vec::new(),
            tree_index: IndexCache::default(),
            nodes: Default::default(),
            tree_state: TreeState::default(),
            tree_dirty: true,
            filter: String::new(),
            filter_editing: false,
            theme_index: theme_index.min(themes.len() - 1),
            themes,
            modal: None,
            log: VecDeque::new(),
            read_only,
            typed_confirmation: false,
            now: 0,
            last_applied: None,
            quit: false,
            page: 10,
            seen_groups: Default::default(),
            received_first: false,
            opened_before_filter: None,
        }
    }

    pub fn theme(&self) -> &Theme {
        &self.themes[self.theme_index]
    }

    /// The node under the cursor.
    pub fn selected(&self) -> Option<NodeRef> {
        crate::app::tree::resolve(&self.nodes, self.tree_state.selected())
    }

    pub fn push_log(&mut self, entry: LogEntry) {
        self.log.push_front(entry);
        self.log.truncate(LOG_CAPACITY);
    }
}
