//! Configuration: `/etc/dgrid/worker.toml` (or `--config`), then environment
//! variables on top. Unknown keys and bad values are errors that name the
//! key, the file and the line; the environment names keep those of the
//! original worker (`NODE_ID`, `DGRID_REPO_URL`, `GIT_TOKEN`, `PULL_INTERVAL`,
//! `LOG_LEVEL`) and add `DGRID_*` for the rest.

pub mod budget;
pub mod trust;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::git::auth::{self, Secret};
use crate::grid::{Id, TaskRules};
use crate::sandbox::{EngineKind, Limits, SandboxConfig};

pub const DEFAULT_PATH: &str = "/etc/dgrid/worker.toml";

/// Seconds between heartbeats of an idle node. Every heartbeat is a commit:
/// at 40 minutes, 100 idle nodes add 150 commits an hour to the grid, and a
/// busy node needs none (its heartbeat rides along with its claims).
pub const DEFAULT_HEARTBEAT_SECS: u64 = 2400;

/// A node silent this long is presumed dead: three missed heartbeats. The
/// grid tools (`status`, `reap`) default to the same, so that they and the
/// workers agree on who is alive.
pub const DEFAULT_STALE_SECS: u64 = 3 * DEFAULT_HEARTBEAT_SECS;
/// The most tasks a node claims ahead of its free slots. In steady state
/// it claims that many only when tasks are far shorter than a sync
/// (`service::pace`); a node that has timed no task yet claims a batch this
/// big from a deep queue. Each node that takes part in draining a queue
/// costs at least two commits on the one ref, so bigger first batches mean
/// fewer nodes take part in a drain of short tasks: measured on 500 tasks,
/// 8 workers ran at 0.90 of one worker's rate with 64 and at 1.5-2.0 with
/// 128 (BENCHMARKS.md). Long tasks claimed in such a batch go back within
/// seconds (`pace::surplus`).
pub const DEFAULT_CLAIM_AHEAD: u32 = 128;

/// The file as written. Every section denies unknown keys, so a typo is an
/// error at start, not a setting silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    node_id: Option<Id>,
    repo_url: Option<String>,
    branch: Option<String>,
    token_file: Option<PathBuf>,
    git_username: Option<String>,
    state_dir: Option<PathBuf>,
    pull_interval: Option<NonZeroU64>,
    heartbeat_interval: Option<NonZeroU64>,
    stale_after: Option<NonZeroU64>,
    claim_grace: Option<u64>,
    max_attempts: Option<std::num::NonZeroU32>,
    concurrency: Option<std::num::NonZeroU32>,
    claim_ahead: Option<u32>,
    drain_timeout: Option<u64>,
    log_level: Option<String>,
    status_listen: Option<String>,
    #[serde(default)]
    sandbox: SandboxFile,
    #[serde(default)]
    git: GitFile,
    #[serde(default)]
    tasks: TasksFile,
    #[serde(default)]
    trust: trust::TrustFile,
    labels: Option<toml::Spanned<Vec<String>>>,
    exclusive: Option<toml::Spanned<Vec<String>>>,
    #[serde(default)]
    budget: budget::BudgetFile,
    /// Where lines start in the file's text, for errors that name a line.
    #[serde(skip)]
    line_starts: Vec<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxFile {
    engine: Option<EngineKind>,
    image: Option<String>,
    memory_mb: Option<NonZeroU64>,
    cpus: Option<f64>,
    pids_limit: Option<std::num::NonZeroU32>,
    output_limit_bytes: Option<NonZeroU64>,
    allow_unenforced_limits: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitFile {
    binary: Option<PathBuf>,
    timeout: Option<NonZeroU64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    max_timeout_seconds: Option<NonZeroU64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub node_id: Id,
    pub repo_url: String,
    pub branch: String,
    pub token: Option<Secret>,
    pub git_username: Option<String>,
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
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Load from `path` (the default path may be absent; an explicit one must
    /// exist) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, &ProcessEnv)
    }

    pub fn load_with(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let (file, source) = match path {
            Some(p) => (read_file(p)?, Some(p.to_owned())),
            None if Path::new(DEFAULT_PATH).exists() => (
                read_file(Path::new(DEFAULT_PATH))?,
                Some(DEFAULT_PATH.into()),
            ),
            None => (File::default(), None),
        };
        Config::resolve(file, source, env)
    }

    /// Parse a configuration from text (for tests and `check`).
    pub fn from_str_with(text: &str, path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = parse_file(text, path)?;
        Config::resolve(file, Some(path.to_owned()), env)
    }

    fn resolve(file: File, source: Option<PathBuf>, env: &dyn Env) -> Result<Config, ConfigError> {
        let origin = source
            .as_ref()
            .map_or("configuration".to_owned(), |p| p.display().to_string());
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
        let repo_url = env
            .get("DGRID_REPO_URL")
            .or(file.repo_url)
            .ok_or(ConfigError::Missing {
                key: "repo_url",
                file: file_name.clone(),
                var: "DGRID_REPO_URL",
            })?;
        auth::check_url(&repo_url).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            key: "repo_url",
            reason: e.to_string(),
        })?;
        let branch = env
            .get("DGRID_BRANCH")
            .or(file.branch)
            .unwrap_or_else(|| "main".into());

        // The token: GIT_TOKEN, else a token file (DGRID_TOKEN_FILE,
        // token_file), else systemd's credential `git-token` if the unit
        // passed one with LoadCredential=.
        let token_file = env
            .get("DGRID_TOKEN_FILE")
            .map(PathBuf::from)
            .or(file.token_file)
            .or_else(|| {
                env.get("CREDENTIALS_DIRECTORY")
                    .map(|d| Path::new(&d).join("git-token"))
                    .filter(|p| p.exists())
            });
        let token = match env.get("GIT_TOKEN") {
            Some(t) => Some(Secret::new(t.trim())),
            None => match token_file {
                Some(p) => Some(Secret::new(
                    std::fs::read_to_string(&p)
                        .map_err(|source| ConfigError::Read {
                            path: p.clone(),
                            source,
                        })?
                        .trim(),
                )),
                None => None,
            },
        }
        .filter(|t| !t.expose().is_empty());

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
        let pull_interval = secs("PULL_INTERVAL", file.pull_interval, 10)?;
        let heartbeat_interval = secs(
            "DGRID_HEARTBEAT_INTERVAL",
            file.heartbeat_interval,
            DEFAULT_HEARTBEAT_SECS,
        )?;
        let stale_after = secs(
            "DGRID_STALE_AFTER",
            file.stale_after,
            heartbeat_interval.as_secs().saturating_mul(3),
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
        let concurrency = match env.get("DGRID_CONCURRENCY") {
            Some(v) => parse_positive("DGRID_CONCURRENCY", &v)? as u32,
            None => file.concurrency.map_or(1, |n| n.get()),
        };
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
            .unwrap_or_else(|| "/var/lib/dgrid-worker".into());

        let engine = match env.get("DGRID_ENGINE") {
            Some(v) => parse_engine(&v)?,
            None => file.sandbox.engine.unwrap_or_default(),
        };
        let image = env
            .get("DGRID_IMAGE")
            .or(file.sandbox.image)
            .unwrap_or_else(|| "docker.io/library/python:3.11-alpine".into());
        let cpus = file.sandbox.cpus.unwrap_or(1.0);
        if !(cpus > 0.0 && cpus <= 1024.0) {
            return Err(ConfigError::Invalid {
                origin,
                key: "sandbox.cpus",
                reason: format!("is {cpus}; it must be above 0"),
            });
        }
        let limits = Limits {
            memory_mb: file.sandbox.memory_mb.map_or(256, NonZeroU64::get),
            cpus,
            pids: file.sandbox.pids_limit.map_or(128, |n| n.get()),
            output_bytes: file
                .sandbox
                .output_limit_bytes
                .map_or(10 * 1024, NonZeroU64::get) as usize,
        };
        let log_level = env
            .get("LOG_LEVEL")
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            key: "log_level",
            reason: e.to_string(),
        })?;

        let status_listen = match env.get("DGRID_STATUS_LISTEN") {
            Some(v) => parse_listen(&v).map_err(|reason| ConfigError::Env {
                var: "DGRID_STATUS_LISTEN",
                reason,
            })?,
            None => parse_listen(
                file.status_listen
                    .as_deref()
                    .unwrap_or(DEFAULT_STATUS_LISTEN),
            )
            .map_err(|reason| ConfigError::Invalid {
                origin: origin.clone(),
                key: "status_listen",
                reason,
            })?,
        };

        let trust = trust::resolve(file.trust, &origin, env)?;
        let line_starts = file.line_starts;
        let at = |span: Option<std::ops::Range<usize>>| match span {
            Some(s) if !line_starts.is_empty() => format!(
                "{origin}, line {}",
                line_starts.partition_point(|&l| l <= s.start)
            ),
            _ => origin.clone(),
        };
        let scheduling = budget::resolve(file.labels, file.exclusive, file.budget, env, &at)?;

        let cfg = Config {
            scheduling,
            trust,
            status_listen,
            source,
            node_id,
            repo_url,
            branch,
            token,
            git_username: file.git_username,
            state_dir,
            pull_interval,
            heartbeat_interval,
            stale_after,
            claim_grace: Duration::from_secs(file.claim_grace.unwrap_or(300)),
            max_attempts: file.max_attempts.map_or(3, |n| n.get()),
            concurrency,
            claim_ahead,
            drain_timeout: Duration::from_secs(file.drain_timeout.unwrap_or(60)),
            log_level,
            git_binary: file.git.binary.unwrap_or_else(|| "git".into()),
            git_timeout: Duration::from_secs(file.git.timeout.map_or(120, NonZeroU64::get)),
            sandbox: SandboxConfig {
                engine,
                image,
                limits,
                allow_unenforced_limits: file.sandbox.allow_unenforced_limits.unwrap_or(false),
                engine_call_timeout: Duration::from_secs(60),
            },
            task_rules: TaskRules {
                max_timeout_seconds: file.tasks.max_timeout_seconds.map_or(3600, NonZeroU64::get),
                ..TaskRules::default()
            },
        };
        cfg.check_durations(&origin)?;
        Ok(cfg)
    }

    /// Every span of time the worker adds to a clock must fit: an interval
    /// of 2^63 seconds would pass parsing and then panic the loop on its
    /// first `Instant + Duration`. Ten years is past any sane setting.
    fn check_durations(&self, origin: &str) -> Result<(), ConfigError> {
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
                return Err(ConfigError::Invalid {
                    origin: origin.to_owned(),
                    key,
                    reason: format!(
                        "is {secs} seconds; at most {MAX_SECONDS} (ten years) are allowed"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The longest span of time any setting may give.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

fn read_file(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text, path)
}

fn parse_file(text: &str, path: &Path) -> Result<File, ConfigError> {
    let mut file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    file.trust.locate(text);
    file.line_starts = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    Ok(file)
}

/// The status page is on by default, on loopback only (DESIGN.md 4).
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8000";

/// `host:port`, or `""`/`off` for no status page.
fn parse_listen(v: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        format!("is {v:?}; expected an address and port such as 127.0.0.1:8000, or \"off\"")
    })
}

fn parse_positive(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::Env {
            var,
            reason: format!("expected a whole number above 0, got {v:?}"),
        }),
    }
}

fn parse_engine(v: &str) -> Result<EngineKind, ConfigError> {
    match v {
        "auto" => Ok(EngineKind::Auto),
        "podman" => Ok(EngineKind::Podman),
        "docker" => Ok(EngineKind::Docker),
        "shell" => Ok(EngineKind::Shell),
        _ => Err(ConfigError::Env {
            var: "DGRID_ENGINE",
            reason: format!("expected auto, podman, docker or shell, got {v:?}"),
        }),
    }
}

/// The host name, made into a valid id: a node that is not named explicitly
/// is named after its machine.
fn default_node_id() -> Id {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(crate::grid::id::MAX_LEN)
        .collect();
    Id::parse(&cleaned).unwrap_or_else(|_| Id::parse("node").expect("a literal id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn spans_of_time_are_bounded() {
        // Found by fuzzing: 3 * heartbeat_interval overflowed, and a huge
        // interval would panic the loop at its first Instant + Duration.
        for text in [
            "repo_url = \"/g\"\nheartbeat_interval = 9000000000000000000\n",
            "repo_url = \"/g\"\npull_interval = 9000000000000000000\n",
            "repo_url = \"/g\"\ndrain_timeout = 18446744073709551615\n",
            "repo_url = \"/g\"\n[tasks]\nmax_timeout_seconds = 400000000\n",
        ] {
            let e = Config::from_str_with(text, Path::new("w.toml"), &env(&[])).unwrap_err();
            assert!(e.to_string().contains("at most 315360000"), "{text}: {e}");
        }
    }

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }
    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }
    fn load(text: &str, e: &MapEnv) -> Result<Config, ConfigError> {
        Config::from_str_with(text, Path::new("/etc/dgrid/worker.toml"), e)
    }

    #[test]
    fn file_then_environment() {
        let text = "node_id = \"n1\"\nrepo_url = \"/srv/grid.git\"\npull_interval = 5\n[sandbox]\nengine = \"podman\"\nimage = \"img\"\n";
        let c = load(text, &env(&[])).unwrap();
        assert_eq!(c.node_id.as_str(), "n1");
        assert_eq!(c.pull_interval, Duration::from_secs(5));
        assert_eq!(c.sandbox.engine, EngineKind::Podman);
        let c = load(
            text,
            &env(&[
                ("NODE_ID", "n2"),
                ("PULL_INTERVAL", "1"),
                ("DGRID_ENGINE", "shell"),
                ("GIT_TOKEN", "t0k"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node_id.as_str(), "n2");
        assert_eq!(c.pull_interval, Duration::from_secs(1));
        assert_eq!(c.sandbox.engine, EngineKind::Shell);
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("t0k"));
        assert!(!format!("{c:?}").contains("t0k"));
    }

    #[test]
    fn errors_name_key_file_and_line() {
        let e = load("repo_url = \"/g\"\n\npul_interval = 5\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/dgrid/worker.toml")
                && e.contains("line 3")
                && e.contains("pul_interval"),
            "{e}"
        );
        let e = load("repo_url = \"/g\"\n[sandbox]\nmemory_mb = 0\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("memory_mb"), "{e}");
        let e = load("repo_url = \"/g\"\nnode_id = \"../x\"\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("node_id"), "{e}");
        let e = load("repo_url = \"/g\"\n", &env(&[("PULL_INTERVAL", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PULL_INTERVAL") && e.contains("soon"), "{e}");
        let e = load("", &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("repo_url") && e.contains("DGRID_REPO_URL"),
            "{e}"
        );
        let e = load("repo_url = \"https://tok@github.com/o/g\"\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repo_url") && e.contains("credentials"), "{e}");
    }

    #[test]
    fn labels_exclusive_and_budget_are_checked_with_the_line() {
        let text = "repo_url = \"/g\"\nlabels = [\"gpu\", \"zone=eu\"]\nexclusive = [\"gpu\"]\n[budget]\ntasks_per_hour = 10\ntask_seconds_per_hour = 600\nquiet_hours = [\"22:00-07:00\"]\n";
        let c = load(text, &env(&[])).unwrap();
        let names: Vec<&str> = c.scheduling.labels.iter().map(|l| l.as_str()).collect();
        assert_eq!(names, ["gpu", "zone=eu"]);
        assert_eq!(c.scheduling.exclusive.len(), 1);
        assert_eq!(c.scheduling.budget.tasks_per_hour, Some(10));
        assert_eq!(c.scheduling.budget.task_seconds_per_hour, Some(600));
        assert_eq!(c.scheduling.budget.quiet_hours.len(), 1);
        let c = load("repo_url = \"/g\"\n", &env(&[])).unwrap();
        assert!(c.scheduling.labels.is_empty() && c.scheduling.budget.is_unlimited());

        let e = load("repo_url = \"/g\"\n\nlabels = [\"GPU\"]\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("labels") && e.contains("\"GPU\""),
            "{e}"
        );
        let e = load(
            "repo_url = \"/g\"\nlabels = [\"gpu\"]\nexclusive = [\"fpga\"]\n",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 3") && e.contains("exclusive") && e.contains("fpga"),
            "{e}"
        );
        let e = load(
            "repo_url = \"/g\"\n[budget]\nquiet_hours = [\"25:00-07:00\"]\n",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 3") && e.contains("budget.quiet_hours"),
            "{e}"
        );
        let e = load(
            "repo_url = \"/g\"\n[budget]\ntasks_per_hour = 0\n",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("tasks_per_hour"), "{e}");
        let c = load(
            "repo_url = \"/g\"\n",
            &env(&[("DGRID_LABELS", "gpu, arch=arm64")]),
        )
        .unwrap();
        assert_eq!(c.scheduling.labels.len(), 2);
        let e = load("repo_url = \"/g\"\n", &env(&[("DGRID_LABELS", "a/b")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("DGRID_LABELS") && e.contains("a/b"), "{e}");
    }

    #[test]
    fn every_key_the_conffile_documents_parses() {
        // Uncomment each `#key = value` line of the packaged worker.toml:
        // what it documents is what the worker takes.
        let text: String = include_str!("../../packaging/worker.toml")
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = load(&text, &env(&[])).unwrap();
        assert_eq!(c.scheduling.exclusive.len(), 1);
        assert_eq!(c.scheduling.budget.tasks_per_hour, Some(100));
        assert_eq!(c.scheduling.budget.quiet_hours.len(), 1);
    }
}
