//! `[trust]` in worker.toml: what a node pins, and how strictly it checks.
//!
//! ```toml
//! [trust]
//! mode = "enforce"                  # off (default), warn, enforce
//! grid_id = "g7"                    # the grid these roots are for
//! roots = "/etc/dgrid/trust-roots"  # a file of public keys, one a line ...
//! # roots = ["ssh-ed25519 AAAA… owner"]   # ... or the keys themselves
//! threshold = 1                     # root signatures a policy needs
//! node_key = "/etc/dgrid/node-key"  # default: the credential `node-key`
//! ```
//!
//! The roots are never taken from the grid: a grid that could name its own
//! roots could name anyone.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::defaults::DEFAULT_NODE_KEY;
use super::{ConfigError, Env};
use crate::grid::Id;
use crate::trust::Mode;
use crate::trust::keys;
use crate::trust::policy::Pinned;

/// The roots as written: a path, or the keys inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Roots {
    File(PathBuf),
    Inline(Vec<String>),
}

/// The `[trust]` section as written; `line_starts` (set by the config
/// parser from the text) turns spans into line numbers for errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    mode: Option<Mode>,
    grid_id: Option<Spanned<String>>,
    roots: Option<Spanned<Roots>>,
    threshold: Option<NonZeroUsize>,
    min_policy_version: Option<u64>,
    node_key: Option<PathBuf>,
    #[serde(skip)]
    line_starts: Vec<usize>,
}

impl TrustFile {
    /// Remember where lines start in the configuration's text.
    pub fn locate(&mut self, text: &str) {
        self.line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
    }

    fn line_of(&self, offset: usize) -> Option<usize> {
        if self.line_starts.is_empty() {
            return None;
        }
        Some(self.line_starts.partition_point(|&s| s <= offset))
    }
}

/// The effective `[trust]` settings.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    pub mode: Mode,
    /// The grid id and roots; none only when the mode is `off` and none
    /// were given.
    pub pinned: Option<Pinned>,
    /// This node's private key, to sign its results.
    pub node_key: Option<PathBuf>,
}

/// The credential name the unit passes the node key under
/// (`LoadCredential=node-key:…`).
pub const NODE_KEY_CREDENTIAL: &str = "node-key";

/// Resolve `[trust]`: `origin` names the configuration file; the
/// environment may set the mode (`DGRID_TRUST_MODE`) and provides
/// `$CREDENTIALS_DIRECTORY`.
pub fn resolve(file: TrustFile, origin: &str, env: &dyn Env) -> Result<TrustConfig, ConfigError> {
    let at = |span: Option<std::ops::Range<usize>>| match span.and_then(|s| file.line_of(s.start)) {
        Some(line) => format!("{origin}, line {line}"),
        None => origin.to_owned(),
    };
    let invalid = |where_: String, key: &'static str, reason: String| ConfigError::Invalid {
        origin: where_,
        key,
        reason,
    };
    let mode = match env.get("DGRID_TRUST_MODE") {
        Some(v) => Mode::parse(v.trim()).ok_or_else(|| ConfigError::Env {
            var: "DGRID_TRUST_MODE",
            reason: format!("expected off, warn or enforce, got {v:?}"),
        })?,
        None => file.mode.unwrap_or_default(),
    };
    let grid_id = match &file.grid_id {
        Some(g) => Some(
            Id::parse(g.get_ref())
                .map_err(|e| invalid(at(Some(g.span())), "trust.grid_id", e.to_string()))?,
        ),
        None => None,
    };
    let roots = match &file.roots {
        None => None,
        Some(r) => {
            let where_ = at(Some(r.span()));
            Some(match r.get_ref() {
                Roots::File(path) => keys::read_public_list(path)
                    .map_err(|e| invalid(where_, "trust.roots", e.to_string()))?,
                Roots::Inline(lines) => lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        keys::parse_public(l).map_err(|e| {
                            invalid(
                                where_.clone(),
                                "trust.roots",
                                format!("entry {} {e}", i + 1),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            })
        }
    };
    let pinned = match (grid_id, roots) {
        (Some(grid_id), Some(roots)) => {
            if roots.is_empty() {
                return Err(invalid(
                    at(file.roots.as_ref().map(Spanned::span)),
                    "trust.roots",
                    "holds no key".into(),
                ));
            }
            let threshold = file
                .threshold
                .map_or(super::defaults::TRUST_THRESHOLD, NonZeroUsize::get);
            if threshold > roots.len() {
                return Err(invalid(
                    origin.to_owned(),
                    "trust.threshold",
                    format!("is {threshold} but only {} roots are pinned", roots.len()),
                ));
            }
            Some(Pinned {
                grid_id,
                roots,
                threshold,
                min_version: file.min_policy_version.unwrap_or(0),
            })
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err(invalid(
                origin.to_owned(),
                "trust.grid_id",
                "is not set; roots are pinned for one grid, named by its id".into(),
            ));
        }
        (Some(_), None) => {
            return Err(invalid(
                origin.to_owned(),
                "trust.roots",
                "is not set; give the grid owner's root public keys (a file or a list)".into(),
            ));
        }
    };
    if mode != Mode::Off && pinned.is_none() {
        return Err(invalid(
            origin.to_owned(),
            "trust.mode",
            format!(
                "is {} but no trust is pinned: set trust.grid_id and trust.roots",
                mode.word()
            ),
        ));
    }
    // The unit's credential; else, run by hand (`check`, or the worker in
    // a shell), the file the package made, which only root can read.
    let node_key = file.node_key.or_else(|| {
        env.get("CREDENTIALS_DIRECTORY")
            .map(|d| Path::new(&d).join(NODE_KEY_CREDENTIAL))
            .or_else(|| Some(PathBuf::from(DEFAULT_NODE_KEY)))
            .filter(|p| env.exists(p))
    });
    // A node that checks tasks signs its results: without a key, its work
    // would count for nothing in a grid that checks them.
    if mode != Mode::Off && node_key.is_none() {
        return Err(invalid(
            origin.to_owned(),
            "trust.node_key",
            format!(
                "is not set, and there is neither a credential `{NODE_KEY_CREDENTIAL}` nor {DEFAULT_NODE_KEY}, but mode {} signs this node's results: \
                 make a key with `dgrid-worker keygen -f {DEFAULT_NODE_KEY}` (the package makes one at install)",
                mode.word()
            ),
        ));
    }
    Ok(TrustConfig {
        mode,
        pinned,
        node_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NoEnv};

    fn load(trust: &str) -> Result<Config, ConfigError> {
        let text = format!("repo_url = \"/g\"\n\n[trust]\n{trust}");
        Config::from_str_with(&text, Path::new("/etc/dgrid/worker.toml"), &NoEnv)
    }

    #[test]
    fn trust_is_off_unless_pinned_and_pinned_roots_are_keys() {
        let c = load("").unwrap();
        assert_eq!(c.trust.mode, Mode::Off);
        assert!(c.trust.pinned.is_none());

        let key = keys::generate("owner");
        let line = key.public_key().to_openssh().unwrap();
        let c = load(&format!(
            "mode = \"enforce\"\ngrid_id = \"g7\"\nroots = [\"{line}\"]\nnode_key = \"/k\"\n"
        ))
        .unwrap();
        assert_eq!(c.trust.mode, Mode::Enforce);
        let p = c.trust.pinned.unwrap();
        assert_eq!(p.grid_id.as_str(), "g7");
        assert_eq!(p.roots[0].key_data(), key.public_key().key_data());
        assert_eq!(p.threshold, 1);
        assert_eq!(p.min_version, 0, "any version, unless set");
        let c = load(&format!(
            "grid_id = \"g7\"\nroots = [\"{line}\"]\nmin_policy_version = 7\n"
        ))
        .unwrap();
        assert_eq!(c.trust.pinned.unwrap().min_version, 7);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roots");
        std::fs::write(&file, format!("# the owner\n{line}\n")).unwrap();
        let c = load(&format!(
            "grid_id = \"g7\"\nroots = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(c.trust.pinned.unwrap().roots.len(), 1);
    }

    #[test]
    fn trust_errors_name_key_file_and_line() {
        let e = load("mode = \"enforce\"\n").unwrap_err().to_string();
        assert!(
            e.contains("`trust.mode` is enforce but no trust is pinned"),
            "{e}"
        );
        let e = load("mode = \"strict\"\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("strict"), "{e}");
        let e = load("grid_id = \"g7\"\nroots = [\"ssh-ed25519 AAAA\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/dgrid/worker.toml, line 5")
                && e.contains("`trust.roots` entry 1 is not an OpenSSH public key"),
            "{e}"
        );
        let e = load("grid_id = \"../g\"\nroots = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("trust.grid_id"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roots");
        std::fs::write(&file, "# ok\nnot a key\n").unwrap();
        let e = load(&format!(
            "grid_id = \"g7\"\nroots = \"{}\"\n",
            file.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("{}: line 2", file.display())) && e.contains("trust.roots"),
            "{e}"
        );
        let key = keys::generate("owner").public_key().to_openssh().unwrap();
        let e = load(&format!(
            "grid_id = \"g7\"\nroots = [\"{key}\"]\nthreshold = 2\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`trust.threshold` is 2 but only 1 roots"), "{e}");
        let e = load(&format!("roots = [\"{key}\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`trust.grid_id` is not set"), "{e}");
        let e = load(&format!(
            "mode = \"warn\"\ngrid_id = \"g7\"\nroots = [\"{key}\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`trust.node_key` is not set, and there is neither a credential `node-key` nor /etc/dgrid/node-key"),
            "{e}"
        );
        let e = load("nodekey = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("nodekey"), "{e}");
    }
}
