//! Result files: what a task produced, as `tasks/completed/` or
//! `tasks/failed/` record it.

use serde::{Deserialize, Serialize};

use super::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Ran and exited 0.
    Completed,
    /// Ran and exited non-zero.
    Failed,
    /// Killed at its timeout.
    Timeout,
    /// Never ran: the task file broke the rules.
    Invalid,
    /// Never finished: its claims were orphaned more often than allowed.
    Abandoned,
    /// Never ran: a task it runs `after` did not complete (`error` names it).
    DependencyFailed,
}

impl ResultStatus {
    /// The name written in result files (and log lines).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Invalid => "invalid",
            ResultStatus::Abandoned => "abandoned",
            ResultStatus::DependencyFailed => "dependency_failed",
        }
    }
}

impl std::fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ResultStatus {
    pub fn is_success(self) -> bool {
        self == ResultStatus::Completed
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task's id, or for an invalid entry the raw file stem it had.
    pub task_id: String,
    pub node_id: Id,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// When the result was made (RFC 3339 UTC).
    pub timestamp: String,
    pub status: ResultStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    pub attempt: u32,
    pub truncated: bool,
    /// Why the task never ran or never finished.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl TaskResult {
    pub fn to_bytes(&self) -> Vec<u8> {
        super::claim::pretty(&serde_json::to_value(self).expect("results always serialise"))
    }
}
