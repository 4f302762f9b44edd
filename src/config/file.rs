//! worker.toml as written: every table denies unknown keys, so a typo is
//! an error at start, not a setting silently ignored; values keep their
//! place in the text, for errors that name the line.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, budget, trust};
use crate::grid::Id;
use crate::sandbox::EngineKind;

/// The file as written. Every section denies unknown keys, so a typo is an
/// error at start, not a setting silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) node_id: Option<Id>,
    pub(super) repo_url: Option<Spanned<String>>,
    pub(super) branch: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) git_username: Option<Spanned<String>>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) pull_interval: Option<NonZeroU64>,
    pub(super) heartbeat_interval: Option<NonZeroU64>,
    pub(super) stale_after: Option<NonZeroU64>,
    pub(super) claim_grace: Option<u64>,
    pub(super) max_attempts: Option<std::num::NonZeroU32>,
    pub(super) concurrency: Option<Spanned<std::num::NonZeroU32>>,
    pub(super) claim_ahead: Option<u32>,
    pub(super) drain_timeout: Option<u64>,
    pub(super) log_level: Option<String>,
    pub(super) status_listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) sandbox: SandboxFile,
    #[serde(default)]
    pub(super) git: GitFile,
    #[serde(default)]
    pub(super) tasks: TasksFile,
    #[serde(default)]
    pub(super) trust: trust::TrustFile,
    pub(super) labels: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) exclusive: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) budget: budget::BudgetFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SandboxFile {
    pub(super) engine: Option<EngineKind>,
    pub(super) image: Option<String>,
    pub(super) memory_mb: Option<NonZeroU64>,
    pub(super) cpus: Option<f64>,
    pub(super) pids_limit: Option<std::num::NonZeroU32>,
    pub(super) output_limit_bytes: Option<NonZeroU64>,
    pub(super) allow_unenforced_limits: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitFile {
    pub(super) binary: Option<PathBuf>,
    pub(super) timeout: Option<NonZeroU64>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    pub(super) ssh_key_file: Option<Spanned<PathBuf>>,
    pub(super) known_hosts: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TasksFile {
    pub(super) max_timeout_seconds: Option<Spanned<NonZeroU64>>,
}

pub(super) fn parse_file(text: &str, path: &Path) -> Result<File, ConfigError> {
    let mut file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    file.trust.locate(text);
    Ok(file)
}
