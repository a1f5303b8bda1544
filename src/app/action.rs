//! Actions and the one key map that feeds input handling, the status bar, the help screen, the
//! filter prompt and the failover window's prompts, so a key is never written twice. Each
//! binding knows when it is available (like gitui's `commands()`): a hint is shown only where
//! its key would do something.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    Collapse,
    Expand,
    Toggle,
    PageUp,
    PageDown,
    First,
    Last,
    Filter,
    Escape,
    Help,
    Theme,
    Failover,
    Undo,
    Quit,
    // In the failover modal.
    Confirm,
    NextTarget,
    /// Deletes the last character typed to confirm.
    DeleteChar,
    /// Finishes an attempt that stopped half-way.
    Resume,
    // While typing a filter.
    FilterKeep,
    FilterClear,
    FilterDelete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Code(KeyCode),
    Ctrl(char),
}

impl Key {
    pub fn label(&self) -> String {
        match self {
            Key::Char(' ') => "Space".into(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Key::Code(code) => match code {
                KeyCode::Up => "↑".into(),
                KeyCode::Down => "↓".into(),
                KeyCode::Left => "←".into(),
                KeyCode::Right => "→".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::PageDown => "PgDn".into(),
                KeyCode::Home => "Home".into(),
                KeyCode::End => "End".into(),
                KeyCode::Enter => "Enter".into(),
                KeyCode::Esc => "Esc".into(),
                KeyCode::Tab => "Tab".into(),
                other => format!("{other:?}"),
            },
        }
    }

    fn matches(&self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        match (self, event.code) {
            (Key::Ctrl(c), KeyCode::Char(e)) => ctrl && e.eq_ignore_ascii_case(c),
            (Key::Char(c), KeyCode::Char(e)) => !ctrl && *c == e,
            (Key::Code(code), e) => *code == e,
            _ => false,
        }
    }
}

/// Where a binding applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Main,
    Failover,
    /// Typing the cluster's name to confirm a live failover: other characters are typed.
    Confirm,
    /// An attempt stopped half-way is offered for resume or rollback.
    Pending,
    /// Typing a filter: other characters go into the filter.
    Filter,
    /// Help or a message on screen: other keys close it.
    Overlay,
}

/// What decides whether a binding is available now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The selected node is a cluster or a control plane, or lies in a cluster.
    pub failover_subject: bool,
    /// A failover was applied in this session.
    pub can_undo: bool,
    /// The failover window reviews a plan that may be applied (not read-only, not blocked).
    pub can_apply: bool,
    /// The failover window reviews a plan with another target to try.
    pub other_target: bool,
}

/// When a binding does something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    FailoverSubject,
    CanUndo,
    CanApply,
    OtherTarget,
}

impl When {
    pub fn holds(self, c: &Context) -> bool {
        match self {
            When::Always => true,
            When::FailoverSubject => c.failover_subject,
            When::CanUndo => c.can_undo,
            When::CanApply => c.can_apply,
            When::OtherTarget => c.other_target,
        }
    }
}

pub struct Binding {
    pub keys: &'static [Key],
    pub action: Action,
    pub help: &'static str,
    /// Short label for the status bar, when it earns a place there.
    pub hint: Option<&'static str>,
    pub scope: Scope,
    /// When its hint is shown.
    pub when: When,
}

use Key::*;

pub const KEYMAP: &[Binding] = &[
    Binding {
        keys: &[Code(KeyCode::Up), Char('k')],
        action: Action::Up,
        help: "move up",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Down), Char('j')],
        action: Action::Down,
        help: "move down",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Left), Char('h')],
        action: Action::Collapse,
        help: "collapse / go to parent",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Right), Char('l')],
        action: Action::Expand,
        help: "expand",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Enter), Char(' ')],
        action: Action::Toggle,
        help: "expand / collapse",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::PageUp)],
        action: Action::PageUp,
        help: "page up",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::PageDown)],
        action: Action::PageDown,
        help: "page down",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Home), Char('g')],
        action: Action::First,
        help: "first node",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::End), Char('G')],
        action: Action::Last,
        help: "last node",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Char('/')],
        action: Action::Filter,
        help: "filter the tree by name (Enter keeps, Esc clears)",
        hint: Some("filter"),
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Esc)],
        action: Action::Escape,
        help: "clear filter / close",
        hint: None,
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Char('f')],
        action: Action::Failover,
        help: "fail over the selected cluster or control plane",
        hint: Some("failover"),
        scope: Scope::Main,
        when: When::FailoverSubject,
    },
    Binding {
        keys: &[Char('u')],
        action: Action::Undo,
        help: "undo the last failover",
        hint: Some("undo"),
        scope: Scope::Main,
        // Always hinted: `u` explains itself when there is nothing to undo.
        when: When::Always,
    },
    Binding {
        keys: &[Char('t')],
        action: Action::Theme,
        help: "next colour theme",
        hint: Some("theme"),
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Char('?')],
        action: Action::Help,
        help: "this help",
        hint: Some("help"),
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Char('q'), Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: Some("quit"),
        scope: Scope::Main,
        when: When::Always,
    },
    Binding {
        keys: &[Char('y'), Code(KeyCode::Enter)],
        action: Action::Confirm,
        help: "apply the plan",
        hint: Some("apply"),
        scope: Scope::Failover,
        when: When::CanApply,
    },
    Binding {
        keys: &[Code(KeyCode::Tab)],
        action: Action::NextTarget,
        help: "next target control plane",
        hint: Some("target"),
        scope: Scope::Failover,
        when: When::OtherTarget,
    },
    Binding {
        keys: &[Code(KeyCode::Esc), Char('n')],
        action: Action::Escape,
        help: "cancel / close",
        hint: Some("close"),
        scope: Scope::Failover,
        when: When::Always,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Failover,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Enter)],
        action: Action::Confirm,
        help: "apply the plan, once the cluster's name is typed",
        hint: Some("apply"),
        scope: Scope::Confirm,
        when: When::CanApply,
    },
    Binding {
        keys: &[Code(KeyCode::Backspace)],
        action: Action::DeleteChar,
        help: "delete the last character typed",
        hint: None,
        scope: Scope::Confirm,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Tab)],
        action: Action::NextTarget,
        help: "next target control plane",
        hint: Some("target"),
        scope: Scope::Confirm,
        when: When::OtherTarget,
    },
    Binding {
        keys: &[Code(KeyCode::Esc)],
        action: Action::Escape,
        help: "cancel",
        hint: Some("cancel"),
        scope: Scope::Confirm,
        when: When::Always,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Confirm,
        when: When::Always,
    },
    Binding {
        keys: &[Char('r')],
        action: Action::Resume,
        help: "resume the interrupted failover",
        hint: Some("resume"),
        scope: Scope::Pending,
        when: When::Always,
    },
    Binding {
        keys: &[Char('u')],
        action: Action::Undo,
        help: "roll back what it wrote",
        hint: Some("roll back"),
        scope: Scope::Pending,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Esc)],
        action: Action::Escape,
        help: "decide later",
        hint: Some("later"),
        scope: Scope::Pending,
        when: When::Always,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Pending,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Enter)],
        action: Action::FilterKeep,
        help: "keep the filter",
        hint: Some("keep"),
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Esc)],
        action: Action::FilterClear,
        help: "clear the filter",
        hint: Some("clear"),
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Backspace)],
        action: Action::FilterDelete,
        help: "delete a character",
        hint: None,
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Up)],
        action: Action::Up,
        help: "move up",
        hint: None,
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Code(KeyCode::Down)],
        action: Action::Down,
        help: "move down",
        hint: None,
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Filter,
        when: When::Always,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Overlay,
        when: When::Always,
    },
];

pub fn action_for(scope: Scope, event: &KeyEvent) -> Option<Action> {
    KEYMAP
        .iter()
        .filter(|b| b.scope == scope)
        .find(|b| b.keys.iter().any(|k| k.matches(event)))
        .map(|b| b.action)
}

pub fn keys_label(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(Key::label)
        .collect::<Vec<_>>()
        .join("/")
}

/// `key label` pairs for the status bar of a scope, for the bindings available now.
pub fn hints(scope: Scope, context: &Context) -> Vec<(String, &'static str)> {
    KEYMAP
        .iter()
        .filter(|b| b.scope == scope && b.when.holds(context))
        .filter_map(|b| b.hint.map(|h| (b.keys[0].label(), h)))
        .collect()
}

/// The binding of an action in a scope.
pub fn binding(scope: Scope, action: Action) -> Option<&'static Binding> {
    KEYMAP
        .iter()
        .find(|b| b.scope == scope && b.action == action)
}

/// The first key of an action in a scope, for prompts (`Esc closes`).
pub fn key(scope: Scope, action: Action) -> String {
    binding(scope, action)
        .map(|b| b.keys[0].label())
        .unwrap_or_default()
}

/// Every key of an action in a scope, for prompts (`[Esc/n] cancel`).
pub fn keys(scope: Scope, action: Action) -> String {
    binding(scope, action).map(keys_label).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions() {
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(action_for(Scope::Main, &key('j')), Some(Action::Down));
        assert_eq!(action_for(Scope::Main, &key('q')), Some(Action::Quit));
        assert_eq!(
            action_for(Scope::Failover, &key('y')),
            Some(Action::Confirm)
        );
        assert_eq!(action_for(Scope::Failover, &key('j')), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Scope::Main, &ctrl_c), Some(Action::Quit));
        assert_eq!(action_for(Scope::Failover, &ctrl_c), Some(Action::Quit));
        assert_eq!(action_for(Scope::Filter, &ctrl_c), Some(Action::Quit));
        assert_eq!(action_for(Scope::Overlay, &ctrl_c), Some(Action::Quit));
        assert_eq!(action_for(Scope::Filter, &key('q')), None, "q is typed");
    }

    #[test]
    fn hints_follow_what_is_available() {
        let none = Context::default();
        let labels = |scope, c: &Context| -> Vec<&str> {
            hints(scope, c).into_iter().map(|(_, l)| l).collect()
        };
        assert!(!labels(Scope::Main, &none).contains(&"failover"));
        assert!(!labels(Scope::Failover, &none).contains(&"apply"));
        let all = Context {
            failover_subject: true,
            can_undo: true,
            can_apply: true,
            other_target: true,
        };
        assert!(labels(Scope::Main, &all).contains(&"failover"));
        assert!(labels(Scope::Failover, &all).contains(&"apply"));
        assert_eq!(labels(Scope::Filter, &none), vec!["keep", "clear"]);
    }
}
