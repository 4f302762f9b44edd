//! The grid's view: what `status` prints, `dashboard` renders and both
//! give as JSON (grid.json), one struct per part of the grid. Plain data:
//! the reading is the folder's other files, the rendering `tools::text`
//! and `tools::html`, and the trust marks `tools::attest`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tools::throughput::Throughput;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridView {
    pub generated_at: String,
    pub commit: String,
    pub nodes: Vec<NodeView>,
    /// Queued tasks, in the order nodes claim them (the inbox, not filed
    /// yet, last).
    pub queue: Vec<QueuedView>,
    /// Tasks waiting for others to complete.
    pub waiting: Vec<WaitingView>,
    /// Classes of queued tasks that no live node serves.
    pub unservable: Vec<UnservableView>,
    /// Entries below `tasks/lanes/` that are no place for a task (the next
    /// node to claim moves them to `failed/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misplaced: Vec<MisplacedView>,
    pub running: Vec<RunningView>,
    pub completed: usize,
    pub failed: usize,
    /// Results moved to the archive branch, where the repository read has
    /// it (`archive`; the grid's workflow runs it): not in the figures
    /// above, which are `main`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<ArchivedView>,
    /// Results by `status` (completed, failed, timeout, invalid, abandoned).
    pub by_status: BTreeMap<String, usize>,
    pub recent: Vec<ResultView>,
    pub failures: Vec<ResultView>,
    pub throughput: Throughput,
    /// Which of the results listed are attested, when the grid has a
    /// policy (`tools::attest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustView>,
}

/// What the grid's policy says of the results listed (`recent` and
/// `failures`): each is checked as `dgrid-worker verify` does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrustView {
    pub grid_id: String,
    /// Where the roots the policy was checked against came from: pinned
    /// (`--roots`) or the grid's own `.dgrid/roots`, which anyone who can
    /// push could have rewritten.
    pub roots: String,
    pub policy_version: Option<u64>,
    /// Why the policy could not be used; nothing is attested then.
    pub error: Option<String>,
    /// Why the branch tip's policy is refused, when the results were
    /// checked against the newest version in the branch's history that
    /// the roots signed (`policy_version`), as the nodes that took it do.
    #[serde(default)]
    pub tip_refused: Option<String>,
    pub checked: usize,
    pub attested: usize,
    /// Of those attested, how many answer a task that was not signed.
    #[serde(default)]
    pub attested_unsigned: usize,
    pub not_attested: usize,
    /// Signed by their node, but the clone lacks the claim's commit.
    pub unchecked: usize,
    /// Results of tasks that never ran (`invalid`, `abandoned`,
    /// `dependency_failed`): no node signs those.
    #[serde(default)]
    pub never_ran: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: String,
    pub status: String,
    pub last_heartbeat: String,
    /// Seconds since the last heartbeat (none if it cannot be read).
    pub heartbeat_age_s: Option<i64>,
    /// The heartbeat is older than the stale limit: the node is presumed
    /// dead and its claims are orphans.
    pub stale: bool,
    pub hostname: String,
    pub version: String,
    pub engine: String,
    pub running: Vec<String>,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub problem: Option<String>,
    /// Its labels, and those it is exclusive to.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub exclusive: Vec<String>,
    /// Why it takes no work now (its volunteer's limits).
    #[serde(default)]
    pub paused: Option<String>,
    /// It starts claims a peer makes for it (`takes_assigned`).
    #[serde(default)]
    pub takes_assigned: bool,
    /// When a peer's reap found a claim made for it unanswered, and marked
    /// it as taking no more until it writes its record again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered_at: Option<String>,
    /// When a peer's reap found a claim of its past its deadline, and
    /// marked it as taking no claims made for it until it writes its
    /// record again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_at: Option<String>,
    /// Set when the file is not a node record.
    pub error: Option<String>,
    /// The fingerprint of the key the node says it signs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the grid's policy does not let that key sign the node's results
    /// (not listed, revoked, another node's); none when it does, or when
    /// there is no policy to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_problem: Option<String>,
    /// The key itself, as the record gives it (not shown; for checking).
    #[serde(skip)]
    pub key_line: Option<String>,
    /// Why a node enforcing the grid's policy leaves this record out of
    /// its reckoning (unsigned, or signed by a key the policy does not
    /// list as this node's: `trust::record`); none when it counts, or
    /// when there is no policy to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_problem: Option<String>,
    /// The record's bytes (not shown; for checking its signature).
    #[serde(skip)]
    pub record_bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedView {
    pub task_id: String,
    /// Its priority (none: in the inbox, not filed into a lane yet).
    pub priority: Option<u8>,
    /// As it counts now, with its age.
    pub effective_priority: Option<u8>,
    /// The labels a node needs to run it.
    pub requires: Vec<String>,
    pub submitter: Option<String>,
    /// The minute it arrived.
    pub queued_at: Option<String>,
    pub path: String,
    /// Set when no live node serves it: why.
    pub unservable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitingView {
    pub task_id: String,
    /// The tasks it runs after that have not completed yet.
    pub waits_for: Vec<String>,
    /// Set when that is none (its file names no `after`, or every task it
    /// names completed): what holds it all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Set when a task it runs after ended without completing: it never
    /// runs, and is failed when the task it waits under finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fails: Option<String>,
    /// The task `fails` names, where its result was judged (`invalid`):
    /// no failure while a copy of it is still to run, as nodes judge it.
    #[serde(skip)]
    pub failed_parent: Option<String>,
    pub priority: Option<u8>,
    pub requires: Vec<String>,
    /// Set when no live node serves its labels: what they lack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unservable: Option<String>,
    /// Set when a task it waits for, or one that task waits for in turn,
    /// is one no live node serves: which, and what the nodes lack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    pub path: String,
    /// Set when the file cannot be read as a task.
    pub error: Option<String>,
    /// The results of the tasks it runs after that completed, by path:
    /// where trust is checked, one not attested holds it on every node
    /// that enforces trust (`attest`).
    #[serde(skip)]
    pub parent_results: Vec<String>,
}

impl WaitingView {
    /// What it waits for, in words: the tasks, or what holds it.
    pub fn waits(&self) -> String {
        if let Some(fails) = &self.fails {
            return fails.clone();
        }
        match &self.held {
            Some(held) if self.waits_for.is_empty() => held.clone(),
            _ => format!("waits for {}", self.waits_for.join(", ")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MisplacedView {
    pub path: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnservableView {
    /// The labels its tasks require.
    pub requires: Vec<String>,
    /// How many queued tasks are of it, and the first of them.
    pub tasks: usize,
    pub task_ids: Vec<String>,
    /// What the live nodes lack.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningView {
    pub task_id: String,
    pub node_id: String,
    pub claimed_at: String,
    pub age_s: Option<i64>,
    pub deadline: String,
    pub attempt: u32,
    /// Its priority (the task's, or the default).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Its node's record lists it among the tasks it runs. A claim that
    /// is not is claimed ahead (it starts at one of its node's next free
    /// slots), or started since the record was written, or its node's.
    #[serde(default)]
    pub started: bool,
    /// A claim another node made for this one, not answered yet: who made
    /// it, and by when the node must answer (PROTOCOL.md, Assigned claims).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assigned_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub answer_by: Option<String>,
    /// Set when the claim file cannot be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultView {
    pub file: String,
    pub task_id: String,
    pub node_id: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub timestamp: String,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub stderr_tail: Option<String>,
    /// `attested` (then `attested_by` names the node), `unchecked`, or why
    /// it is not attested (`unsigned`, `wrong-node`, `claim-not-held`, ...);
    /// none when the grid has no policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_error: Option<String>,
    /// Of an attested result: `false` when its task was not signed (run by
    /// a node in mode `off`), not a signed task's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_signed: Option<bool>,
}

/// The results on the archive branch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArchivedView {
    pub branch: String,
    pub completed: usize,
    pub failed: usize,
}
