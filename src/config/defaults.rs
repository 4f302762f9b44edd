//! Every default of worker.toml, in one place. The configuration, the
//! grid tools' flags that must agree with the workers, the shipped
//! `packaging/worker.toml` and README's table all take them from here; a
//! test holds the last two to [`documented`].
//!
//! Defaults that belong to a lower layer are defined there and named here:
//! the sandbox's limits (`sandbox::Limits::default`), a task's longest
//! timeout (`grid::TaskRules::default`), the attempts of a task
//! (`grid::orphan::DEFAULT_MAX_ATTEMPTS`), the token's user name
//! (`git::auth::DEFAULT_GIT_USERNAME`).

use crate::grid::TaskRules;
use crate::sandbox::Limits;

pub const DEFAULT_PATH: &str = "/etc/dgrid/worker.toml";

/// Seconds between polls of an empty queue (and of a grid that cannot be
/// reached).
pub const PULL_INTERVAL_SECS: u64 = 10;

/// Seconds between heartbeats of an idle node. Every heartbeat is a commit:
/// at 40 minutes, 100 idle nodes add 150 commits an hour to the grid, and a
/// busy node needs none (its heartbeat rides along with its claims).
pub const DEFAULT_HEARTBEAT_SECS: u64 = 2400;

/// A node silent this many heartbeat intervals is presumed dead.
pub const STALE_AFTER_HEARTBEATS: u64 = 3;

/// A node silent this long is presumed dead: three missed heartbeats. The
/// grid tools (`status`, `reap`) default to the same, so that they and the
/// workers agree on who is alive.
pub const DEFAULT_STALE_SECS: u64 = STALE_AFTER_HEARTBEATS * DEFAULT_HEARTBEAT_SECS;

/// Seconds added to a task's timeout for its claim's deadline: time to
/// push the result after the task ends.
pub const CLAIM_GRACE_SECS: u64 = 300;

pub const MAX_ATTEMPTS: u32 = crate::grid::orphan::DEFAULT_MAX_ATTEMPTS;

pub const CONCURRENCY: u32 = 1;

/// The most tasks a node claims beyond its free slots. It claims that many
/// only when tasks are far shorter than a sync (`service::pace`): then a
/// batch of 128 takes a few syncs' time, and bigger batches mean fewer
/// nodes take part in a drain of short tasks, fewer commits on the one ref
/// (BENCHMARKS.md, Contention).
pub const DEFAULT_CLAIM_AHEAD: u32 = 128;

/// Seconds running tasks get after SIGTERM before they are killed and
/// requeued.
pub const DRAIN_TIMEOUT_SECS: u64 = 60;

pub const LOG_LEVEL: &str = "info";

/// Where the clone and the outbox live when systemd gives no
/// `$STATE_DIRECTORY`.
pub const STATE_DIR: &str = "/var/lib/dgrid-worker";

pub const IMAGE: &str = "docker.io/library/python:3.11-alpine";

pub const GIT_BINARY: &str = "git";

/// Seconds each git call may take, for the worker and the tools alike.
pub const GIT_TIMEOUT_SECS: u64 = 120;

/// The status page is on by default, on loopback only: it says what the
/// node runs, which is nobody else's business.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8000";

/// Where the package makes the node key and `keygen` writes it, and
/// where `[trust] node_key` looks when there is no credential `node-key`.
pub const DEFAULT_NODE_KEY: &str = "/etc/dgrid/node-key";

/// Root signatures a policy needs, unless `[trust] threshold` says more.
pub const TRUST_THRESHOLD: usize = 1;

/// `(key, default as worker.toml writes it)` for every key that has a
/// default: what the shipped worker.toml's commented lines and README's
/// configuration table must say.
pub fn documented() -> Vec<(&'static str, String)> {
    let limits = Limits::default();
    let quoted = |s: &str| format!("{s:?}");
    vec![
        ("branch", quoted("main")),
        ("state_dir", quoted(STATE_DIR)),
        ("pull_interval", PULL_INTERVAL_SECS.to_string()),
        ("heartbeat_interval", DEFAULT_HEARTBEAT_SECS.to_string()),
        ("stale_after", DEFAULT_STALE_SECS.to_string()),
        ("claim_grace", CLAIM_GRACE_SECS.to_string()),
        ("max_attempts", MAX_ATTEMPTS.to_string()),
        ("concurrency", CONCURRENCY.to_string()),
        ("claim_ahead", DEFAULT_CLAIM_AHEAD.to_string()),
        ("drain_timeout", DRAIN_TIMEOUT_SECS.to_string()),
        ("log_level", quoted(LOG_LEVEL)),
        (
            "git_username",
            quoted(crate::git::auth::DEFAULT_GIT_USERNAME),
        ),
        ("status_listen", quoted(DEFAULT_STATUS_LISTEN)),
        ("sandbox.engine", quoted("auto")),
        ("sandbox.image", quoted(IMAGE)),
        ("sandbox.memory_mb", limits.memory_mb.to_string()),
        ("sandbox.cpus", format!("{:.1}", limits.cpus)),
        ("sandbox.pids_limit", limits.pids.to_string()),
        (
            "sandbox.output_limit_bytes",
            limits.output_bytes.to_string(),
        ),
        ("sandbox.allow_unenforced_limits", "false".into()),
        ("git.binary", quoted(GIT_BINARY)),
        ("git.timeout", GIT_TIMEOUT_SECS.to_string()),
        (
            "tasks.max_timeout_seconds",
            TaskRules::default().max_timeout_seconds.to_string(),
        ),
        ("trust.mode", quoted(crate::trust::Mode::default().word())),
        ("trust.threshold", TRUST_THRESHOLD.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `#key = value` lines of the shipped worker.toml, as `section.key`.
    fn shipped() -> Vec<(String, String)> {
        let mut section = String::new();
        let mut out = Vec::new();
        for line in include_str!("../../packaging/worker.toml").lines() {
            // A table commented out as a whole (`#[trust]`) is a table too.
            let header = line.strip_prefix('#').unwrap_or(line);
            if let Some(name) = header.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((key, value)) =
                line.strip_prefix('#').and_then(|l| l.split_once(" = "))
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                out.push((format!("{section}{key}"), value.trim().to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_shipped_worker_toml_says_what_the_code_does() {
        let shipped = shipped();
        for (key, value) in documented() {
            let found: Vec<&String> = shipped
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(found, [&value], "packaging/worker.toml, `{key}`");
        }
    }

    /// README's configuration table: each key's row names the default.
    #[test]
    fn the_readme_table_says_what_the_code_does() {
        let readme = include_str!("../../README.md");
        for (key, value) in documented() {
            let (section, name) = match key.split_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, key),
            };
            let row = readme
                .lines()
                .filter(|l| l.starts_with("| "))
                .find(|l| {
                    let first = l.split('|').nth(1).unwrap_or("");
                    section.is_none_or(|s| first.contains(&format!("[{s}]")))
                        && (first.contains(&format!("`{name}`"))
                            || first.contains(&format!("] {name}`")))
                })
                .unwrap_or_else(|| panic!("README has no row for `{key}`"));
            let cell = row.split('|').nth(3).unwrap_or("");
            let words: Vec<&str> = cell
                .split(|c: char| !(c.is_ascii_alphanumeric() || "._:/$-".contains(c)))
                .collect();
            let want = value.trim_matches('"');
            assert!(
                words.contains(&want),
                "README's default for `{key}` is {cell:?}, the code's {want}"
            );
        }
    }
}
