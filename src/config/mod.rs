//! Configuration: `/etc/dgrid/worker.toml` (or `--config`), then environment
//! variables on top. Unknown keys and bad values are errors that name the
//! key, the file and the line; the environment names keep those of the
//! original worker (`NODE_ID`, `DGRID_REPO_URL`, `GIT_TOKEN`, `PULL_INTERVAL`,
//! `LOG_LEVEL`) and add `DGRID_*` for the rest.

pub mod budget;
pub mod defaults;
mod file;
pub mod trust;
mod values;

use file::{File, parse_file};
use values::{check_readable, default_node_id, parse_engine, parse_listen, parse_positive};

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::git::auth::{self, Access};
use crate::grid::orphan::OrphanPolicy;
use crate::grid::{Id, TaskRules};
use crate::sandbox::SandboxConfig;

pub use defaults::{
    DEFAULT_CLAIM_AHEAD, DEFAULT_HEARTBEAT_SECS, DEFAULT_PATH, DEFAULT_STALE_SECS,
    DEFAULT_STATUS_LISTEN,
};

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub node_id: Id,
    pub repo_url: String,
    pub branch: String,
    /// How git reaches the grid: token, CA, SSH key and pinned host keys.
    pub access: Access,
    pub state_dir: PathBuf,
    pub pull_interval: Duration,
    pub heartbeat_interval: Duration,
    pub stale_after: Duration,
    pub claim_grace: Duration,
    pub max_attempts: u32,
    pub concurrency: u32,
    /// At most this many tasks claimed beyond the free slots (while busy or
    /// while the queue is deep), started the moment a slot frees; how many
    /// is measured (`service::pace`).
    pub claim_ahead: u32,
    pub drain_timeout: Duration,
    pub log_level: String,
    /// Where the local status page listens; none when it is off.
    pub status_listen: Option<std::net::SocketAddr>,
    /// Nobody chose `status_listen`: if another worker on this host has the
    /// default port, this one takes a free port instead.
    pub status_listen_is_default: bool,
    pub git_binary: PathBuf,
    pub git_timeout: Duration,
    pub sandbox: SandboxConfig,
    pub task_rules: TaskRules,
    /// `[trust]`: the pinned roots and how strictly tasks are checked.
    pub trust: trust::TrustConfig,
    /// `labels`, `exclusive` and `[budget]`: what the node routes by and
    /// what its volunteer gives.
    pub scheduling: budget::Scheduling,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message already says "at line N, column M", names the key and
    /// shows the line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
    #[error("{origin}: `{key}` {reason}")]
    Invalid {
        origin: String,
        key: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error("`{key}` is not set: set it in {file} or with {var}")]
    Missing {
        key: &'static str,
        file: String,
        var: &'static str,
    },
}

/// Environment lookups, injectable so tests need not touch the process's.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;

    /// Is there a file at `path`? (Where a default file is looked for.)
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// No environment at all, for tests: no variable, and none of the host's
/// files (a node key the host may have).
#[cfg(test)]
pub(crate) struct NoEnv;

#[cfg(test)]
impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
    fn exists(&self, _: &Path) -> bool {
        false
    }
}

impl Config {
    /// The orphan rule as this node applies it (PROTOCOL.md, Orphans).
    pub fn orphan_policy(&self) -> OrphanPolicy {
        let at_most = |d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        OrphanPolicy {
            stale_after: at_most(self.stale_after),
            max_attempts: self.max_attempts,
            claim_grace: at_most(self.claim_grace),
        }
    }

    /// Load from `path` (the default path may be absent; an explicit one must
    /// exist) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, &ProcessEnv)
    }

    pub fn load_with(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => Some(p),
            None if Path::new(DEFAULT_PATH).exists() => Some(Path::new(DEFAULT_PATH)),
            None => None,
        };
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Config::from_str_with(&text, p, env)
            }
            None => Config::resolve(File::default(), None, "", env),
        }
    }

    /// Parse a configuration from text (for tests and `check`).
    pub fn from_str_with(text: &str, path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = parse_file(text, path)?;
        Config::resolve(file, Some(path.to_owned()), text, env)
    }

    fn resolve(
        file: File,
        source: Option<PathBuf>,
        text: &str,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        let origin = source
            .as_ref()
            .map_or("configuration".to_owned(), |p| p.display().to_string());
        // "FILE line N" for a value read from the file, as toml's own
        // errors give it.
        let at = |span: std::ops::Range<usize>| {
            let line = text.get(..span.start).unwrap_or("").matches('\n').count() + 1;
            format!("{origin} line {line}")
        };
        let file_name = source
            .as_ref()
            .map_or(DEFAULT_PATH.to_owned(), |p| p.display().to_string());

        let node_id = match env.get("NODE_ID") {
            Some(v) => Id::parse(&v).map_err(|e| ConfigError::Env {
                var: "NODE_ID",
                reason: e.to_string(),
            })?,
            None => match file.node_id {
                Some(id) => id,
                None => default_node_id(),
            },
        };
        // Where repo_url was set, for an error found later (the token's).
        let mut repo_url_at = None;
        let repo_url = match env.get("DGRID_REPO_URL") {
            Some(url) => {
                auth::check_url(&url).map_err(|e| ConfigError::Env {
                    var: "DGRID_REPO_URL",
                    reason: e.to_string(),
                })?;
                url
            }
            None => {
                let url = file.repo_url.ok_or(ConfigError::Missing {
                    key: "repo_url",
                    file: file_name.clone(),
                    var: "DGRID_REPO_URL",
                })?;
                auth::check_url(url.get_ref()).map_err(|e| ConfigError::Invalid {
                    origin: at(url.span()),
                    key: "repo_url",
                    reason: format!("is refused: {e}"),
                })?;
                repo_url_at = Some(at(url.span()));
                url.into_inner()
            }
        };
        let branch = env
            .get("DGRID_BRANCH")
            .or(file.branch)
            .unwrap_or_else(|| "main".into());

        let get = |name: &str| env.get(name);
        let token = auth::load_token(&get, file.token_file.as_deref())?;
        auth::check_transport(&repo_url, token.as_ref()).map_err(|e| match repo_url_at.take() {
            Some(origin) => ConfigError::Invalid {
                origin,
                key: "repo_url",
                reason: format!("is refused: {e}"),
            },
            None => ConfigError::Env {
                var: "DGRID_REPO_URL",
                reason: e.to_string(),
            },
        })?;
        let git_username = match (env.get("DGRID_GIT_USERNAME"), file.git_username) {
            (Some(user), _) if user.contains(char::is_control) => {
                return Err(ConfigError::Env {
                    var: "DGRID_GIT_USERNAME",
                    reason: "contains a control character (a line break?)".into(),
                });
            }
            (Some(user), _) => Some(user),
            (None, Some(user)) if user.get_ref().contains(char::is_control) => {
                return Err(ConfigError::Invalid {
                    origin: at(user.span()),
                    key: "git_username",
                    reason: "contains a control character (a line break?)".into(),
                });
            }
            (None, other) => other.map(Spanned::into_inner),
        };
        let path_setting = |key: &'static str,
                            var: &'static str,
                            from_file: Option<Spanned<PathBuf>>,
                            credential: Option<&str>|
         -> Result<Option<PathBuf>, ConfigError> {
            if let Some(p) = env.get(var) {
                let p = PathBuf::from(p);
                check_readable(key, &p).map_err(|reason| ConfigError::Env { var, reason })?;
                return Ok(Some(p));
            }
            if let Some(p) = from_file {
                check_readable(key, p.get_ref()).map_err(|reason| ConfigError::Invalid {
                    origin: at(p.span()),
                    key,
                    reason,
                })?;
                return Ok(Some(p.into_inner()));
            }
            Ok(credential.and_then(|name| auth::credential_path(&get, name)))
        };
        let access = Access {
            token,
            username: git_username,
            ca_file: path_setting("git.ca_file", "DGRID_CA_FILE", file.git.ca_file, None)?,
            ssh_key_file: path_setting(
                "git.ssh_key_file",
                "DGRID_SSH_KEY_FILE",
                file.git.ssh_key_file,
                Some(auth::SSH_KEY_CREDENTIAL),
            )?,
            known_hosts: path_setting(
                "git.known_hosts",
                "DGRID_KNOWN_HOSTS",
                file.git.known_hosts,
                None,
            )?,
            // The worker opens it at its start (it empties a directory).
            ssh_shared: None,
        };

        let secs = |var: &'static str,
                    from_file: Option<NonZeroU64>,
                    default: u64|
         -> Result<Duration, ConfigError> {
            match env.get(var) {
                Some(v) => parse_positive(var, &v).map(Duration::from_secs),
                None => Ok(Duration::from_secs(
                    from_file.map_or(default, NonZeroU64::get),
                )),
            }
        };
        let pull_interval = secs(
            "PULL_INTERVAL",
            file.pull_interval,
            defaults::PULL_INTERVAL_SECS,
        )?;
        let heartbeat_interval = secs(
            "DGRID_HEARTBEAT_INTERVAL",
            file.heartbeat_interval,
            DEFAULT_HEARTBEAT_SECS,
        )?;
        let stale_after = secs(
            "DGRID_STALE_AFTER",
            file.stale_after,
            heartbeat_interval
                .as_secs()
                .saturating_mul(defaults::STALE_AFTER_HEARTBEATS),
        )?;
        if stale_after <= heartbeat_interval {
            return Err(ConfigError::Invalid {
                origin,
                key: "stale_after",
                reason: format!(
                    "is {}s but must be longer than heartbeat_interval ({}s), or live nodes would be reaped",
                    stale_after.as_secs(),
                    heartbeat_interval.as_secs()
                ),
            });
        }
        let concurrency = values::concurrency(env.get("DGRID_CONCURRENCY"), file.concurrency, &at)?;
        let claim_ahead = match env.get("DGRID_CLAIM_AHEAD") {
            Some(v) => v.trim().parse::<u32>().map_err(|_| ConfigError::Env {
                var: "DGRID_CLAIM_AHEAD",
                reason: format!("expected a whole number, got {v:?}"),
            })?,
            None => file.claim_ahead.unwrap_or(DEFAULT_CLAIM_AHEAD),
        };
        let state_dir = env
            .get("DGRID_STATE_DIR")
            .map(PathBuf::from)
            .or(file.state_dir)
            .or_else(|| env.get("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| defaults::STATE_DIR.into());

        let engine = match env.get("DGRID_ENGINE") {
            Some(v) => parse_engine(&v)?,
            None => file.sandbox.engine.unwrap_or_default(),
        };
        let image = env
            .get("DGRID_IMAGE")
            .or(file.sandbox.image.clone())
            .unwrap_or_else(|| defaults::IMAGE.into());
        let limits = values::sandbox_limits(&file.sandbox, &origin)?;
        let log_level = env
            .get("LOG_LEVEL")
            .or(file.log_level)
            .unwrap_or_else(|| defaults::LOG_LEVEL.into());
        values::check_log_level(&log_level).map_err(|reason| match env.get("LOG_LEVEL") {
            Some(_) => ConfigError::Env {
                var: "LOG_LEVEL",
                reason,
            },
            None => ConfigError::Invalid {
                origin: origin.clone(),
                key: "log_level",
                reason,
            },
        })?;

        let status_listen_is_default =
            env.get("DGRID_STATUS_LISTEN").is_none() && file.status_listen.is_none();
        let status_listen = match (env.get("DGRID_STATUS_LISTEN"), file.status_listen) {
            (Some(v), _) => parse_listen(&v).map_err(|reason| ConfigError::Env {
                var: "DGRID_STATUS_LISTEN",
                reason,
            })?,
            (None, Some(v)) => {
                parse_listen(v.get_ref()).map_err(|reason| ConfigError::Invalid {
                    origin: at(v.span()),
                    key: "status_listen",
                    reason,
                })?
            }
            (None, None) => parse_listen(DEFAULT_STATUS_LISTEN).expect("the default parses"),
        };

        let ceiling = crate::grid::task::TIMEOUT_CEILING;
        let max_timeout_seconds = match file.tasks.max_timeout_seconds {
            None => TaskRules::default().max_timeout_seconds,
            Some(v) if v.get_ref().get() > ceiling => {
                return Err(ConfigError::Invalid {
                    origin: at(v.span()),
                    key: "tasks.max_timeout_seconds",
                    reason: format!(
                        "is {} seconds; at most {ceiling} (a week): no task may be longer on any node",
                        v.get_ref()
                    ),
                });
            }
            Some(v) => v.into_inner().get(),
        };
        let trust = trust::resolve(file.trust, &origin, env)?;
        let at_maybe = |span: Option<std::ops::Range<usize>>| span.map_or(origin.clone(), at);
        let engine_name = match engine {
            crate::sandbox::EngineKind::Auto => None,
            crate::sandbox::EngineKind::Podman => Some("podman"),
            crate::sandbox::EngineKind::Docker => Some("docker"),
            crate::sandbox::EngineKind::Shell => Some("shell"),
        };
        let scheduling = budget::resolve(
            file.labels,
            file.exclusive,
            file.budget,
            env,
            &at_maybe,
            engine_name,
        )?;

        let cfg = Config {
            scheduling,
            trust,
            status_listen,
            status_listen_is_default,
            source,
            node_id,
            repo_url,
            branch,
            access,
            state_dir,
            pull_interval,
            heartbeat_interval,
            stale_after,
            claim_grace: Duration::from_secs(
                file.claim_grace.unwrap_or(defaults::CLAIM_GRACE_SECS),
            ),
            max_attempts: file
                .max_attempts
                .map_or(defaults::MAX_ATTEMPTS, |n| n.get()),
            concurrency,
            claim_ahead,
            drain_timeout: Duration::from_secs(
                file.drain_timeout.unwrap_or(defaults::DRAIN_TIMEOUT_SECS),
            ),
            log_level,
            git_binary: file
                .git
                .binary
                .unwrap_or_else(|| defaults::GIT_BINARY.into()),
            git_timeout: Duration::from_secs(
                file.git
                    .timeout
                    .map_or(defaults::GIT_TIMEOUT_SECS, NonZeroU64::get),
            ),
            sandbox: SandboxConfig {
                engine,
                image,
                limits,
                allow_unenforced_limits: file.sandbox.allow_unenforced_limits.unwrap_or(false),
                engine_call_timeout: Duration::from_secs(60),
            },
            task_rules: TaskRules {
                max_timeout_seconds,
                ..TaskRules::default()
            },
        };
        cfg.check_durations(&origin, env)?;
        Ok(cfg)
    }

    /// Every span of time the worker adds to a clock must fit: an interval
    /// of 2^63 seconds would pass parsing and then panic the loop on its
    /// first `Instant + Duration`. Ten years is past any sane setting.
    /// A span set by a variable is named by it, not by the file.
    fn check_durations(&self, origin: &str, env: &dyn Env) -> Result<(), ConfigError> {
        let from_env = [
            ("pull_interval", "PULL_INTERVAL"),
            ("heartbeat_interval", "DGRID_HEARTBEAT_INTERVAL"),
            ("stale_after", "DGRID_STALE_AFTER"),
        ];
        let spans = [
            ("pull_interval", self.pull_interval.as_secs()),
            ("heartbeat_interval", self.heartbeat_interval.as_secs()),
            ("stale_after", self.stale_after.as_secs()),
            ("claim_grace", self.claim_grace.as_secs()),
            ("drain_timeout", self.drain_timeout.as_secs()),
            ("git.timeout", self.git_timeout.as_secs()),
            (
                "tasks.max_timeout_seconds",
                self.task_rules.max_timeout_seconds,
            ),
        ];
        for (key, secs) in spans {
            if secs > MAX_SECONDS {
                let reason =
                    format!("is {secs} seconds; at most {MAX_SECONDS} (ten years) are allowed");
                let var = from_env.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                return Err(match var.filter(|v| env.get(v).is_some()) {
                    Some(var) => ConfigError::Env { var, reason },
                    None => ConfigError::Invalid {
                        origin: origin.to_owned(),
                        key,
                        reason,
                    },
                });
            }
        }
        Ok(())
    }
}

/// The longest span of time any setting may give.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

#[cfg(test)]
mod tests;
