//! The node's measured task length, kept in its state directory across
//! restarts. Restarted (an upgrade restarts every node of a fleet), a node
//! would meet its next drain blind: it would claim nothing ahead, its
//! record would give its peers no length to reckon with, and the first
//! claim of the drain would give every idle peer its blind share
//! (`sync/claim/assign.rs`). A hint, not a record: a file that is missing,
//! unreadable, older than [`KEPT_FOR`] or nonsense is not used.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::kept;
use crate::time::{self, Timestamp};

const FILE: &str = "pace.json";

/// Older than this, the grid's tasks may have changed: not used.
const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The file is the node's own, but read no more than it ever writes.
const MAX_BYTES: u64 = 1024;

/// A task length of more than a day is nonsense (as in a node record).
const LONGEST_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    task_ms: u64,
    at: String,
}

/// The task length kept by the last run, in seconds, if it is fit to use
/// at `now`.
pub(super) fn load(state_dir: &Path, now: Timestamp) -> Option<f64> {
    let file: Kept = match kept::read(state_dir, FILE, MAX_BYTES) {
        Ok(k) => k?,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the task length kept by the last run");
            return None;
        }
    };
    let at = time::parse(&file.at)?;
    let age = (now - at).to_std().ok()?;
    (age <= KEPT_FOR && file.task_ms <= LONGEST_MS).then(|| file.task_ms as f64 / 1000.0)
}

/// Keep `task_secs` for the next run.
pub(super) fn save(state_dir: &Path, task_secs: f64, now: Timestamp) {
    let file = Kept {
        task_ms: (task_secs * 1000.0).round().clamp(0.0, LONGEST_MS as f64) as u64,
        at: time::format(now),
    };
    if let Err(e) = kept::write(state_dir, FILE, &file) {
        tracing::debug!(error = %e, "cannot keep the task length");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        time::parse(s).unwrap()
    }

    #[test]
    fn a_task_length_is_kept_for_a_day() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(dir.path(), at("2026-12-01T10:00:00Z")),
            None,
            "none kept"
        );
        save(dir.path(), 1.2345, at("2026-12-01T10:00:00Z"));
        assert_eq!(load(dir.path(), at("2026-12-01T12:00:00Z")), Some(1.235));
        assert_eq!(
            load(dir.path(), at("2026-12-02T11:00:00Z")),
            None,
            "a day and more: the tasks may have changed"
        );
        assert_eq!(
            load(dir.path(), at("2026-11-30T10:00:00Z")),
            None,
            "written in the future: the clock moved"
        );
    }

    #[test]
    fn nonsense_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-12-01T10:00:00Z");
        let file = dir.path().join(FILE);
        for text in [
            "not json".to_owned(),
            r#"{"task_ms": 5}"#.to_owned(),
            r#"{"task_ms": 99999999999, "at": "2026-12-01T09:00:00Z"}"#.to_owned(),
            r#"{"task_ms": 5, "at": "yesterday"}"#.to_owned(),
            format!(
                r#"{{"task_ms": 5, "at": "2026-12-01T09:00:00Z", "pad": "{}"}}"#,
                "x".repeat(2000)
            ),
        ] {
            std::fs::write(&file, &text).unwrap();
            assert_eq!(load(dir.path(), now), None, "{text:.60}");
        }
    }
}
