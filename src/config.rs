//! User configuration (`$XDG_CONFIG_HOME/meshtop/config.toml`) and theme selection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cli::Cli;
use crate::sources::kube::kubeconfig::UsageError;
use crate::theme::{self, Theme};

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub theme: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    pub audit_log: Option<PathBuf>,
    /// Contexts to watch (default: every context of the kubeconfig).
    #[serde(default)]
    pub contexts: Vec<String>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    /// Per-context settings, keyed by context name.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterSettings>,
}

/// `[clusters.<context>]` in the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Shown instead of the context name.
    pub display_name: Option<String>,
    /// Istio's cluster id of this context, when the cluster's own objects do not tell it.
    pub cluster_id: Option<String>,
    /// istiod's monitoring URL (`http://host:15014`) for a control plane outside the cluster.
    pub istiod_url: Option<String>,
    /// Do not watch this context.
    #[serde(default)]
    pub skip: bool,
}

pub fn config_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("meshtop"))
}

impl FileConfig {
    /// A missing file is an empty config; a broken one is an error that names the file.
    pub fn load(path: &Path) -> Result<FileConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                anyhow::Error::new(UsageError(format!("{} is not valid: {e}", path.display())))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// The effective settings: command line over config file over defaults.
pub struct Settings {
    pub file: FileConfig,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    pub theme_warnings: Vec<String>,
    pub read_only: bool,
    pub audit_log: Option<PathBuf>,
}

pub fn settings(cli: &Cli, no_color: bool) -> Result<Settings> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => match config_dir() {
            Some(d) => FileConfig::load(&d.join("config.toml"))?,
            None => FileConfig::default(),
        },
    };
    let user_dir = config_dir().map(|d| d.join("themes"));
    let (mut themes, theme_warnings) = theme::discover(user_dir.as_deref());
    let wanted = if no_color {
        Some("mono".to_string())
    } else {
        cli.theme.clone().or(file.theme.clone())
    };
    let theme_index = match wanted {
        None => themes.iter().position(|t| t.name == "dark").unwrap_or(0),
        Some(w) => match themes.iter().position(|t| t.name == w) {
            Some(i) => i,
            None => {
                let path = Path::new(&w);
                if w.ends_with(".toml") || path.exists() {
                    let t = Theme::load(path).map_err(anyhow::Error::msg)?;
                    themes.retain(|x| x.name != t.name);
                    themes.push(t);
                    themes.len() - 1
                } else {
                    let names: Vec<&str> = themes.iter().map(|t| t.name.as_str()).collect();
                    return Err(UsageError(format!(
                        "unknown theme {w:?}: choose one of {} or give a .toml path",
                        names.join(", ")
                    ))
                    .into());
                }
            }
        },
    };
    let audit_log = cli
        .audit_log
        .clone()
        .or(file.audit_log.clone())
        .or_else(crate::failover::audit::AuditLog::default_path);
    Ok(Settings {
        read_only: cli.read_only || file.read_only,
        file,
        themes,
        theme_index,
        theme_warnings,
        audit_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn no_color_forces_mono_even_over_an_explicit_theme() {
        let cli = Cli::parse_from(["meshtop", "--demo", "--theme", "light"]);
        let s = settings(&cli, true).unwrap();
        assert_eq!(s.themes[s.theme_index].name, "mono");
        let s = settings(&cli, false).unwrap();
        assert_eq!(s.themes[s.theme_index].name, "light");
    }

    #[test]
    fn config_with_unknown_key_names_the_file() {
        let dir = std::env::temp_dir().join(format!("meshtop-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "theme = \"light\"\ncolour = 3\n").unwrap();
        let err = format!("{:#}", FileConfig::load(&path).unwrap_err());
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("line 2") && err.contains("colour"), "{err}");
        std::fs::write(&path, "theme = \"light\"\nread_only = true\n").unwrap();
        let ok = FileConfig::load(&path).unwrap();
        assert_eq!(ok.theme.as_deref(), Some("light"));
        assert!(ok.read_only);
        assert_eq!(
            FileConfig::load(&dir.join("missing.toml")).unwrap(),
            FileConfig::default()
        );
    }
}
