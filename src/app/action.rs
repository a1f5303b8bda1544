//! Actions and the one key map that feeds input handling, the status bar and the help screen,
//! so a key hint is never written twice.

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
}

pub struct Binding {
    pub keys: &'static [Key],
    pub action: Action,
    pub help: &'static str,
    /// Short label for the status bar, when it earns a place there.
    pub hint: Option<&'static str>,
    pub scope: Scope,
}

use Key::*;

pub const KEYMAP: &[Binding] = &[
    Binding {
        keys: &[Code(KeyCode::Up), Char('k')],
        action: Action::Up,
        help: "move up",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Down), Char('j')],
        action: Action::Down,
        help: "move down",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Left), Char('h')],
        action: Action::Collapse,
        help: "collapse / go to parent",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Right), Char('l')],
        action: Action::Expand,
        help: "expand",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Enter), Char(' ')],
        action: Action::Toggle,
        help: "expand / collapse",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::PageUp)],
        action: Action::PageUp,
        help: "page up",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::PageDown)],
        action: Action::PageDown,
        help: "page down",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Home), Char('g')],
        action: Action::First,
        help: "first node",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::End), Char('G')],
        action: Action::Last,
        help: "last node",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('/')],
        action: Action::Filter,
        help: "filter the tree by name (Enter keeps, Esc clears)",
        hint: Some("filter"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Code(KeyCode::Esc)],
        action: Action::Escape,
        help: "clear filter / close",
        hint: None,
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('f')],
        action: Action::Failover,
        help: "fail over the selected cluster or control plane",
        hint: Some("failover"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('u')],
        action: Action::Undo,
        help: "undo the last failover",
        hint: Some("undo"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('t')],
        action: Action::Theme,
        help: "next colour theme",
        hint: Some("theme"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('?')],
        action: Action::Help,
        help: "this help",
        hint: Some("help"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('q'), Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: Some("quit"),
        scope: Scope::Main,
    },
    Binding {
        keys: &[Char('y'), Code(KeyCode::Enter)],
        action: Action::Confirm,
        help: "apply the plan",
        hint: Some("apply"),
        scope: Scope::Failover,
    },
    Binding {
        keys: &[Code(KeyCode::Tab)],
        action: Action::NextTarget,
        help: "next target control plane",
        hint: Some("target"),
        scope: Scope::Failover,
    },
    Binding {
        keys: &[Code(KeyCode::Esc), Char('n')],
        action: Action::Escape,
        help: "cancel / close",
        hint: Some("close"),
        scope: Scope::Failover,
    },
    Binding {
        keys: &[Ctrl('c')],
        action: Action::Quit,
        help: "quit",
        hint: None,
        scope: Scope::Failover,
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

/// `key label` pairs for the status bar of a scope.
pub fn hints(scope: Scope) -> Vec<(String, &'static str)> {
    KEYMAP
        .iter()
        .filter(|b| b.scope == scope)
        .filter_map(|b| b.hint.map(|h| (b.keys[0].label(), h)))
        .collect()
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
    }
}
