//! A volunteer's limits counted across restarts: the runs of the last hour,
//! kept in the node's state directory. Without them, `systemctl restart`
//! (a config change, an upgrade, a crash and `Restart=on-failure`) would
//! begin a new hour's count, and a node capped at 100 tasks an hour could
//! run 100 more at once. Kept only where an hourly limit is set, as tasks
//! start and end (`Worker::keep_budget`), when the node reaches a limit
//! and as it stops. A file that is missing, unreadable or nonsense counts
//! nothing, as before.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Worker;
use crate::service::kept;
use crate::time::{self, Timestamp};

/// How often, at most, what the budget counts is kept while tasks run,
/// where what changed is not what a limit counts (`Keep`).
const KEEP_BUDGET_EVERY: Duration = Duration::from_secs(10);

/// What changed in what the budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// A task started (or a start was taken back): kept at once under a
    /// cap of tasks an hour, which counts starts.
    Started,
    /// A task ended: kept at once under a cap of task time, which counts
    /// it whole only now.
    Ended,
    /// At a limit, or stopping: kept at once.
    Now,
}

impl Worker {
    /// Where an hourly limit is set, keep what it counts for a restart:
    /// at once when what changed is what a limit counts (`Keep`), else at
    /// most every [`KEEP_BUDGET_EVERY`]. Kept every 10 s alone, a crash
    /// lost the starts since the last write: a tester's node capped at 8
    /// an hour had started 5 and kept 1, and after `kill -9` and a restart
    /// ran 12 in the hour. A write is a small file renamed into place
    /// (no fsync: what it guards against is the process's crash), and
    /// costs nothing a drain can measure (docs/scheduling.md).
    pub(super) fn keep_budget(&mut self, what: Keep) {
        let limits = self.budget.limits();
        if !limits.counts_the_hour() {
            return;
        }
        let at_once = match what {
            Keep::Now => true,
            Keep::Started => limits.tasks_per_hour.is_some(),
            Keep::Ended => limits.task_seconds_per_hour.is_some(),
        };
        if !at_once
            && self
                .budget_kept_at
                .is_some_and(|t| t.elapsed() < KEEP_BUDGET_EVERY)
        {
            return;
        }
        self.budget_kept_at = Some(Instant::now());
        let runs = self.budget.kept(time::now(), MAX_RUNS);
        save(&self.cfg.state_dir, &runs);
    }
}

const FILE: &str = "budget.json";

/// At most this many runs are kept (the newest): a cap of more tasks an
/// hour than this is counted from this many after a restart.
pub(super) const MAX_RUNS: usize = 2048;

/// The file is the node's own, but read no more than it ever writes (a
/// run is two numbers of 13 digits).
const MAX_BYTES: u64 = 40 * MAX_RUNS as u64 + 64;

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    /// (started, ended), in milliseconds since the epoch.
    runs: Vec<(i64, i64)>,
}

/// The runs the last run of this node kept, as `(started, ended)`.
pub(super) fn load(state_dir: &Path) -> Vec<(Timestamp, Timestamp)> {
    match kept::read::<Kept>(state_dir, FILE, MAX_BYTES) {
        Ok(k) => k
            .map(|k| k.runs)
            .unwrap_or_default()
            .iter()
            .filter_map(|(s, e)| Some((at(*s)?, at(*e)?)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the runs of the last hour kept by the last run");
            Vec::new()
        }
    }
}

fn at(ms: i64) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp_millis(ms)
}

/// Keep `runs` for the next run.
pub(super) fn save(state_dir: &Path, runs: &[(Timestamp, Timestamp)]) {
    let file = Kept {
        runs: runs
            .iter()
            .map(|(s, e)| (s.timestamp_millis(), e.timestamp_millis()))
            .collect(),
    };
    if let Err(e) = kept::write(state_dir, FILE, &file) {
        tracing::warn!(error = %e, "cannot keep the runs of the last hour; a restart would count the hour anew");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        crate::time::parse(s).unwrap()
    }

    #[test]
    fn runs_are_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty(), "none kept");
        let runs = vec![
            (t("2026-12-01T10:00:00.123Z"), t("2026-12-01T10:04:00Z")),
            (t("2026-12-01T10:10:00Z"), t("2026-12-01T10:10:00Z")),
        ];
        save(dir.path(), &runs);
        assert_eq!(load(dir.path()), runs);
        let most: Vec<_> = (0..MAX_RUNS)
            .map(|_| (t("2026-12-01T10:00:00.123Z"), t("2026-12-01T10:59:59.999Z")))
            .collect();
        save(dir.path(), &most);
        assert_eq!(load(dir.path()).len(), MAX_RUNS, "the most it writes, read");
    }

    #[test]
    fn nonsense_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE);
        for text in [
            "not json".to_owned(),
            r#"{"runs": [["a", 1]]}"#.to_owned(),
            format!(
                r#"{{"runs": [], "pad": "{}"}}"#,
                "x".repeat(MAX_BYTES as usize)
            ),
        ] {
            std::fs::write(&file, &text).unwrap();
            assert!(load(dir.path()).is_empty(), "{text:.40}");
        }
        std::fs::write(
            &file,
            r#"{"runs": [[1764583200000, 1764583260000], [1e30, 0]]}"#,
        )
        .unwrap();
        assert!(
            load(dir.path()).is_empty(),
            "a number out of range: the file is nonsense"
        );
        std::fs::write(&file, r#"{"runs": [[1764583200000, 1764583260000]]}"#).unwrap();
        assert_eq!(load(dir.path()).len(), 1);
    }
}
