//! A task's end as the tasks waiting for it see it: the result a plan
//! writes ([`Finished`]), and the result of a waiting task that will never
//! run ([`never_ran`]).

use crate::grid::Id;
use crate::grid::{ResultStatus, Task, TaskResult};
use crate::time::{self, Timestamp};

use super::results::PendingResult;

/// A result this plan writes, as dependants see it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub success: bool,
    pub status: String,
    /// Where it lands (for the error of a dependant).
    pub file: String,
    /// Judged, not run: `invalid` (the file broke a rule) or
    /// `dependency_failed`. Such a result is of a file, and ends its task
    /// only where no other file of the id is still to run; a run's end
    /// (or an abandoned claim) ends the task.
    pub judged: bool,
}

impl Finished {
    pub fn of(r: &PendingResult) -> Finished {
        Finished {
            success: r.result.status.is_success(),
            status: status_name(r.result.status),
            file: r.path(),
            judged: matches!(
                r.result.status,
                ResultStatus::Invalid | ResultStatus::DependencyFailed
            ),
        }
    }

    /// Whether this result ends its task for the dependants, given
    /// whether another file of the id is still to run.
    pub(super) fn ends_task(&self, copy_survives: impl FnOnce() -> bool) -> bool {
        self.success || !self.judged || !copy_survives()
    }
}

pub(super) fn status_name(s: ResultStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The result of a waiting task that will never run: `dependency_failed`
/// (a parent did not complete) or `invalid` (its `after` can never be
/// met).
pub fn never_ran(
    task: &Task,
    node: &Id,
    now: Timestamp,
    status: ResultStatus,
    error: String,
) -> TaskResult {
    TaskResult {
        task_id: task.task_id.to_string(),
        node_id: node.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        timestamp: time::format(now),
        status,
        started_at: None,
        duration_ms: None,
        attempt: task.attempt,
        truncated: false,
        error: Some(error),
    }
}
