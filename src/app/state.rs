//! Application state: the latest model, the tree's selection, modals, the event log. No I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tui_tree_widget::{TreeItem, TreeState};

use super::tree::{IndexCache, NodeRef};
use crate::engine::LogEntry;
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
    pub checks: Vec<Check>,
    pub phase: Phase,
    pub is_undo: bool,
}

#[derive(Clone, Debug)]
pub enum Modal {
    Help,
    Message { title: String, body: String },
    Failover(Box<FailoverModal>),
}

/// What the runtime must do on the app's behalf (quitting is `App::quit`).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Execute(Plan),
}

pub struct App {
    pub topology: Arc<Topology>,
    /// e.g. `demo · seed 7` or `kubeconfig: 3 contexts`
    pub source_label: String,
    pub tree_items: Vec<TreeItem<'static, String>>,
    /// What tree rebuilds read of the current topology, made once per topology.
    pub tree_index: IndexCache,
    pub nodes: HashMap<String, NodeRef>,
    pub tree_state: TreeState<String>,
    pub tree_dirty: bool,
    pub filter: String,
    pub filter_editing: bool,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    pub modal: Option<Modal>,
    pub log: VecDeque<LogEntry>,
    pub read_only: bool,
    /// Unix seconds, advanced by ticks; rendering reads time only from here.
    pub now: u64,
    pub last_applied: Option<Plan>,
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
            nodes: HashMap::new(),
            tree_state: TreeState::default(),
            tree_dirty: true,
            filter: String::new(),
            filter_editing: false,
            theme_index: theme_index.min(themes.len() - 1),
            themes,
            modal: None,
            log: VecDeque::new(),
            read_only,
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
    pub fn selected(&self) -> Option<&NodeRef> {
        self.tree_state
            .selected()
            .last()
            .and_then(|id| self.nodes.get(id))
    }

    pub fn push_log(&mut self, entry: LogEntry) {
        self.log.push_front(entry);
        self.log.truncate(LOG_CAPACITY);
    }
}
