//! Colour themes: TOML files, built-ins embedded from `themes/`, user files from the XDG
//! config dir, or a path. Status is never colour alone: glyphs carry it in every theme.

use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::topology::model::Health;

pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../themes/dark.toml")),
    ("light", include_str!("../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../themes/high-contrast.toml"),
    ),
    ("colorblind", include_str!("../themes/colorblind.toml")),
    ("mono", include_str!("../themes/mono.toml")),
];

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub bg: Color,
    pub fg: Color,
    pub muted: Color,
    pub accent: Color,
    pub border: Color,
    pub title: Color,
    pub selection_bg: Color,
    pub selection_fg: Color,
    pub healthy: Color,
    pub degraded: Color,
    pub down: Color,
    pub unknown: Color,
    pub bar_ready: Color,
    pub bar_not_ready: Color,
    pub reverse_selection: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    #[serde(default)]
    reverse_selection: bool,
    colors: ThemeColors,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeColors {
    bg: String,
    fg: String,
    muted: String,
    accent: String,
    border: String,
    title: String,
    selection_bg: String,
    selection_fg: String,
    healthy: String,
    degraded: String,
    down: String,
    unknown: String,
    bar_ready: String,
    bar_not_ready: String,
}

fn color(field: &str, value: &str) -> Result<Color, String> {
    value
        .parse::<Color>()
        .map_err(|_| format!("colour `{field}` = {value:?} is not a colour name or #rrggbb"))
}

impl Theme {
    pub fn parse(text: &str) -> Result<Theme, String> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let c = &file.colors;
        Ok(Theme {
            name: file.name,
            bg: color("bg", &c.bg)?,
            fg: color("fg", &c.fg)?,
            muted: color("muted", &c.muted)?,
            accent: color("accent", &c.accent)?,
            border: color("border", &c.border)?,
            title: color("title", &c.title)?,
            selection_bg: color("selection_bg", &c.selection_bg)?,
            selection_fg: color("selection_fg", &c.selection_fg)?,
            healthy: color("healthy", &c.healthy)?,
            degraded: color("degraded", &c.degraded)?,
            down: color("down", &c.down)?,
            unknown: color("unknown", &c.unknown)?,
            bar_ready: color("bar_ready", &c.bar_ready)?,
            bar_not_ready: color("bar_not_ready", &c.bar_not_ready)?,
            reverse_selection: file.reverse_selection,
        })
    }

    pub fn load(path: &Path) -> Result<Theme, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Theme::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn builtin(name: &str) -> Option<Theme> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| Theme::parse(text).ok())
    }

    pub fn dark() -> Theme {
        Theme::builtin("dark").unwrap_or_else(Theme::fallback)
    }

    /// Used only if an embedded theme failed to parse (a test guards against that).
    fn fallback() -> Theme {
        Theme {
            name: "fallback".into(),
            bg: Color::Reset,
            fg: Color::Reset,
            muted: Color::Reset,
            accent: Color::Reset,
            border: Color::Reset,
            title: Color::Reset,
            selection_bg: Color::Reset,
            selection_fg: Color::Reset,
            healthy: Color::Reset,
            degraded: Color::Reset,
            down: Color::Reset,
            unknown: Color::Reset,
            bar_ready: Color::Reset,
            bar_not_ready: Color::Reset,
            reverse_selection: true,
        }
    }

    pub fn base(&self) -> Style {
        Style::new().fg(self.fg).bg(self.bg)
    }
    pub fn muted(&self) -> Style {
        Style::new().fg(self.muted)
    }
    pub fn accent(&self) -> Style {
        Style::new().fg(self.accent)
    }
    pub fn border(&self) -> Style {
        Style::new().fg(self.border)
    }
    pub fn title(&self) -> Style {
        Style::new().fg(self.title).add_modifier(Modifier::BOLD)
    }
    pub fn selection(&self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.reverse_selection {
            s.add_modifier(Modifier::REVERSED)
        } else {
            s.fg(self.selection_fg).bg(self.selection_bg)
        }
    }
    pub fn health(&self, h: Health) -> Style {
        let c = match h {
            Health::Healthy => self.healthy,
            Health::Degraded => self.degraded,
            Health::Down => self.down,
            Health::Unknown => self.unknown,
        };
        let s = Style::new().fg(c);
        if h == Health::Down {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }
}

/// All themes available: built-ins, then `*.toml` in the user theme dir (same name overrides).
/// Unreadable user themes are reported, not fatal.
pub fn discover(user_dir: Option<&Path>) -> (Vec<Theme>, Vec<String>) {
    let mut themes: Vec<Theme> = BUILTIN
        .iter()
        .filter_map(|(_, text)| Theme::parse(text).ok())
        .collect();
    let mut errors = Vec::new();
    if let Some(dir) = user_dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
                .collect();
            paths.sort();
            for path in paths {
                match Theme::load(&path) {
                    Ok(t) => {
                        themes.retain(|x| x.name != t.name);
                        themes.push(t);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    (themes, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_parses() {
        for (name, text) in BUILTIN {
            let theme = Theme::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&theme.name, name);
        }
    }

    #[test]
    fn bad_colour_is_named_in_the_error() {
        let text = BUILTIN[0]
            .1
            .replace("#5fd75f\"\ndegraded", "not-a-colour\"\ndegraded");
        let err = Theme::parse(&text).unwrap_err();
        assert!(err.contains("healthy"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = format!("{}\nsparkle = \"red\"\n", BUILTIN[0].1);
        assert!(Theme::parse(&text).is_err());
    }
}
