//! The grid at one commit, as `status` and `dashboard` show it.
//!
//! Reading is sized for big grids: one `ls-tree` per directory, and all the
//! blobs that are read at all in one `cat-file --batch` per directory, so
//! 50,000 results cost a few processes, not 50,000. Results are parsed into
//! a small struct that skips their output (`stdout` is never needed here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::git::GitError;
use crate::git::{Blob, EntryMode, GridRepo, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::schedule::{self, NodeLabels};
use crate::grid::task::EntryKind;
use crate::grid::{Class, Id, NodeRecord, Task, TaskRules, layout};
use crate::ledger::deps::{BlockedAt, ResultIndex};
use crate::ledger::queue::QueueAt;
use crate::ledger::routing;
use crate::time::{self, Timestamp};

use super::throughput;
pub use super::throughput::{BUCKETS, Bucket, Throughput};

/// How many recent results and failures are listed.
pub const RECENT: usize = 50;
/// The tail of a failure's stderr that is shown with it.
const STDERR_TAIL: usize = 400;

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
    pub running: Vec<RunningView>,
    pub completed: usize,
    pub failed: usize,
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
    pub checked: usize,
    pub attested: usize,
    pub not_attested: usize,
    /// Signed by their node, but the clone lacks the claim's commit.
    pub unchecked: usize,
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
    pub priority: Option<u8>,
    pub requires: Vec<String>,
    pub path: String,
    /// Set when the file cannot be read as a task.
    pub error: Option<String>,
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
}

/// The fields of a result file the views need; the rest is skipped.
#[derive(Deserialize)]
struct ResultLite {
    #[serde(default)]
    task_id: String,
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ResultWithStderr {
    #[serde(default)]
    stderr: String,
}

fn files(entries: Vec<TreeEntry>) -> Vec<TreeEntry> {
    entries
        .into_iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes())
        .collect()
}

fn blob_ids(entries: &[TreeEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .map(|e| e.oid.clone())
        .collect()
}

fn age(now: Timestamp, s: &str) -> Option<i64> {
    time::parse(s).map(|t| (now - t).num_seconds())
}

impl GridView {
    /// Read the grid at `commit`, as of `now`.
    pub fn load(
        repo: &GridRepo,
        commit: &str,
        now: Timestamp,
        stale_after_s: i64,
    ) -> Result<GridView, GitError> {
        let mut nodes = node_views(repo, commit, now)?;
        for n in &mut nodes {
            n.stale = n.heartbeat_age_s.is_none_or(|a| a > stale_after_s);
        }
        let (queue, unservable) = queue_views(repo, commit, now, &nodes)?;
        let waiting = waiting_views(repo, commit)?;
        let running = running_views(repo, commit, now)?;
        let mut all = Vec::new();
        let completed = read_results(repo, commit, layout::COMPLETED, false, &mut all)?;
        let failed = read_results(repo, commit, layout::FAILED, true, &mut all)?;
        let mut by_status = BTreeMap::new();
        for r in &all {
            *by_status.entry(r.status.clone()).or_insert(0) += 1;
        }
        let throughput = throughput::of(
            all.iter()
                .map(|r| (r.timestamp.as_str(), r.status == "completed")),
        );
        // Newest first; RFC 3339 UTC strings with `Z` sort as times.
        all.sort_by(|a, b| b.timestamp.cmp(&a.timestamp));
        let failures: Vec<ResultView> = all
            .iter()
            .filter(|r| r.status != "completed")
            .take(RECENT)
            .cloned()
            .collect();
        all.truncate(RECENT);
        for r in &mut all {
            r.stderr_tail = None;
        }
        Ok(GridView {
            generated_at: time::format(now),
            commit: commit.to_owned(),
            nodes,
            queue,
            waiting,
            unservable,
            running,
            completed,
            failed,
            by_status,
            recent: all,
            failures,
            throughput,
            trust: None,
        })
    }
}

fn node_views(repo: &GridRepo, commit: &str, now: Timestamp) -> Result<Vec<NodeView>, GitError> {
    let entries = files(repo.list_dir(commit, layout::NODES)?);
    let blobs = repo.read_objects(&blob_ids(&entries), layout::MAX_NODE_RECORD_BYTES)?;
    let mut blobs = blobs.into_iter();
    let mut out = Vec::new();
    for e in &entries {
        let name = e.name_lossy();
        let id = layout::json_stem(&name).unwrap_or(&name).to_owned();
        let parsed = if matches!(e.mode, EntryMode::File | EntryMode::Executable) {
            match blobs.next().unwrap_or(Blob::Missing) {
                Blob::Data(b) => Some(NodeRecord::parse(&b).map_err(|e| e.to_string())),
                other => Some(Err(other
                    .why_unread()
                    .unwrap_or_else(|| "is gone".to_owned()))),
            }
        } else {
            None
        };
        // A record that names another node than its file mimics it: shown
        // under its file's name, as an error, never as that node.
        let parsed = match parsed {
            Some(Ok(r)) if r.node_id.as_str() != id => Some(Err(format!(
                "names node {:?}, but the file is named for {:?}",
                r.node_id.as_str(),
                id
            ))),
            other => other,
        };
        out.push(match parsed {
            Some(Ok(r)) => NodeView {
                node_id: r.node_id.to_string(),
                status: serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                heartbeat_age_s: age(now, &r.last_heartbeat),
                stale: false,
                last_heartbeat: r.last_heartbeat,
                hostname: r.hostname,
                version: r.version,
                engine: r.engine,
                running: r.running,
                tasks_completed: r.tasks_completed,
                tasks_failed: r.tasks_failed,
                problem: r.problem,
                labels: r.labels,
                exclusive: r.exclusive,
                paused: r.paused,
                error: None,
                key: r.node_key.as_deref().map(|k| {
                    crate::trust::keys::parse_public(k)
                        .map(|k| crate::trust::keys::fingerprint(&k))
                        .unwrap_or_else(|e| format!("unreadable: {e}"))
                }),
                key_problem: None,
                key_line: r.node_key,
            },
            other => NodeView {
                node_id: id,
                status: "unknown".into(),
                last_heartbeat: String::new(),
                heartbeat_age_s: None,
                stale: false,
                hostname: String::new(),
                version: String::new(),
                engine: String::new(),
                running: Vec::new(),
                tasks_completed: 0,
                tasks_failed: 0,
                problem: None,
                labels: Vec::new(),
                exclusive: Vec::new(),
                paused: None,
                key: None,
                key_problem: None,
                key_line: None,
                error: Some(match other {
                    Some(Err(e)) => format!("{}/{name}: not a node record: {e}", layout::NODES),
                    _ => format!("{}/{name}: not a regular file", layout::NODES),
                }),
            },
        });
    }
    Ok(out)
}

/// The queue in claim order, from the paths alone (nothing is read), and
/// the classes no live node serves, with what each node lacks. A node
/// counts as live by its heartbeat (`nodes` were marked stale or not), a
/// paused one too: it comes back.
fn queue_views(
    repo: &GridRepo,
    commit: &str,
    now: Timestamp,
    nodes: &[NodeView],
) -> Result<(Vec<QueuedView>, Vec<UnservableView>), GitError> {
    let q = QueueAt::list(repo, commit)?;
    let live: Vec<(&str, NodeLabels)> = nodes
        .iter()
        .filter(|n| n.error.is_none() && !n.stale && matches!(n.status.as_str(), "idle" | "busy"))
        .map(|n| {
            (
                n.node_id.as_str(),
                NodeLabels::from_record(&n.labels, &n.exclusive),
            )
        })
        .collect();
    let refs: Vec<(&str, &NodeLabels)> = live.iter().map(|(n, l)| (*n, l)).collect();
    let unserved = routing::unserved(&q, &refs);
    let why: BTreeMap<&Class, &str> = unserved
        .iter()
        .map(|u| (&u.class, u.why.as_str()))
        .collect();
    let places: Vec<schedule::Queued<'_>> = q
        .lanes
        .iter()
        .map(|l| schedule::Queued {
            place: &l.place,
            name: l.file_name(),
        })
        .collect();
    let mut queue = Vec::with_capacity(q.len());
    for (i, level) in schedule::order(&places, now) {
        let l = &q.lanes[i];
        let name = String::from_utf8_lossy(l.file_name()).into_owned();
        let task_id = layout::json_stem(&name).unwrap_or(&name).to_owned();
        let requires: Vec<String> = l.place.class.labels().map(ToString::to_string).collect();
        let lacking = why.get(&l.place.class).map(|w| (*w).to_owned());
        queue.push(QueuedView {
            task_id,
            priority: Some(l.place.priority),
            effective_priority: Some(level),
            requires,
            submitter: l.place.batch.submitter.as_ref().map(Id::to_string),
            queued_at: Some(time::format(l.place.batch.minute)),
            path: String::from_utf8_lossy(&l.path()).into_owned(),
            unservable: lacking,
        });
    }
    for e in &q.inbox {
        let n = e.name_lossy();
        queue.push(QueuedView {
            task_id: layout::json_stem(&n).unwrap_or(&n).to_owned(),
            priority: None,
            effective_priority: None,
            requires: Vec::new(),
            submitter: None,
            queued_at: None,
            path: format!("{}/{n}", layout::QUEUE),
            unservable: None,
        });
    }
    let unservable = unserved
        .into_iter()
        .map(|u| UnservableView {
            requires: u.class.labels().map(ToString::to_string).collect(),
            tasks: u.tasks,
            task_ids: u.task_ids,
            why: u.why,
        })
        .collect();
    Ok((queue, unservable))
}

/// The tasks waiting for others, each with those it still waits for (its
/// `after` less those with a completed result).
fn waiting_views(repo: &GridRepo, commit: &str) -> Result<Vec<WaitingView>, GitError> {
    let blocked = BlockedAt::list(repo, commit)?;
    if blocked.entries.is_empty() {
        return Ok(Vec::new());
    }
    let rules = TaskRules::default();
    let files: Vec<String> = blocked
        .entries
        .iter()
        .filter(|b| matches!(b.entry.mode, EntryMode::File | EntryMode::Executable))
        .map(|b| b.entry.oid.clone())
        .collect();
    let mut blobs = repo
        .read_objects(&files, rules.max_file_bytes as u64)?
        .into_iter();
    let mut parsed = Vec::new();
    for b in &blocked.entries {
        let path = String::from_utf8_lossy(&b.path()).into_owned();
        let task = if matches!(b.entry.mode, EntryMode::File | EntryMode::Executable) {
            match blobs.next().unwrap_or(Blob::Missing) {
                Blob::Data(bytes) => {
                    Task::from_entry(&b.file_name(), EntryKind::File, &bytes, &rules)
                        .map_err(|e| e.to_string())
                }
                other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
            }
        } else {
            Err("is not a regular file".to_owned())
        };
        parsed.push((b, path, task));
    }
    let parents: Vec<Id> = parsed
        .iter()
        .filter_map(|(_, _, t)| t.as_ref().ok())
        .flat_map(|t| t.after().iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let done = ResultIndex::list(repo, commit)?.find(repo, &parents)?;
    Ok(parsed
        .into_iter()
        .map(|(b, path, task)| match task {
            Ok(t) => WaitingView {
                task_id: t.task_id.to_string(),
                waits_for: t
                    .after()
                    .iter()
                    .filter(|p| !done.get(*p).is_some_and(|r| r.completed))
                    .map(Id::to_string)
                    .collect(),
                priority: Some(t.priority()),
                requires: t.class().labels().map(ToString::to_string).collect(),
                path,
                error: None,
            },
            Err(e) => WaitingView {
                task_id: b
                    .child()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| b.file_name()),
                waits_for: vec![b.parent.to_string()],
                priority: None,
                requires: Vec::new(),
                error: Some(format!("{path}: {e}")),
                path,
            },
        })
        .collect())
}

fn running_views(
    repo: &GridRepo,
    commit: &str,
    now: Timestamp,
) -> Result<Vec<RunningView>, GitError> {
    let entries: Vec<TreeEntry> = files(repo.list_dir(commit, layout::IN_PROGRESS)?)
        .into_iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .collect();
    let rules = TaskRules::default();
    let blobs = repo.read_objects(&blob_ids(&entries), rules.max_file_bytes as u64)?;
    Ok(entries
        .iter()
        .zip(blobs)
        .map(|(e, b)| {
            let name = e.name_lossy();
            let parsed = match &b {
                Blob::Data(bytes) => {
                    ClaimedTask::parse(&name, bytes, &rules).map_err(|e| e.to_string())
                }
                other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
            };
            match parsed {
                Ok(c) => RunningView {
                    task_id: c.task.task_id.to_string(),
                    node_id: c.claim.node_id.to_string(),
                    age_s: age(now, &c.claim.claimed_at),
                    claimed_at: c.claim.claimed_at,
                    deadline: c.claim.deadline,
                    attempt: c.claim.attempt,
                    error: None,
                },
                Err(err) => RunningView {
                    task_id: layout::json_stem(&name).unwrap_or(&name).to_owned(),
                    node_id: String::new(),
                    claimed_at: String::new(),
                    age_s: None,
                    deadline: String::new(),
                    attempt: 0,
                    error: Some(format!("{}/{name}: {err}", layout::IN_PROGRESS)),
                },
            }
        })
        .collect())
}

/// Read every result of `dir` into `out`; returns how many files it holds.
fn read_results(
    repo: &GridRepo,
    commit: &str,
    dir: &str,
    keep_stderr: bool,
    out: &mut Vec<ResultView>,
) -> Result<usize, GitError> {
    let entries: Vec<TreeEntry> = files(repo.list_dir(commit, dir)?)
        .into_iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .collect();
    let blobs = repo.read_objects(&blob_ids(&entries), layout::MAX_RESULT_BYTES)?;
    let default_status = if dir == layout::COMPLETED {
        "completed"
    } else {
        "failed"
    };
    for (e, b) in entries.iter().zip(blobs) {
        let file = format!("{dir}/{}", e.name_lossy());
        let parsed = match &b {
            Blob::Data(bytes) => serde_json::from_slice::<ResultLite>(bytes)
                .map_err(|e| format!("not a result file: {e}")),
            other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
        };
        let bytes = b.data().unwrap_or_default();
        let view = match parsed {
            Ok(r) => ResultView {
                file,
                task_id: r.task_id,
                node_id: r.node_id,
                status: r.status.unwrap_or_else(|| default_status.to_owned()),
                exit_code: r.exit_code,
                timestamp: r.timestamp,
                duration_ms: r.duration_ms,
                error: r.error,
                stderr_tail: keep_stderr
                    .then(|| serde_json::from_slice::<ResultWithStderr>(bytes).ok())
                    .flatten()
                    .map(|s| tail(&s.stderr, STDERR_TAIL))
                    .filter(|s| !s.is_empty()),
                trust: None,
                attested_by: None,
                trust_error: None,
            },
            Err(err) => ResultView {
                error: Some(format!("{file}: {err}")),
                file,
                task_id: String::new(),
                node_id: String::new(),
                status: "unreadable".into(),
                exit_code: None,
                timestamp: String::new(),
                duration_ms: None,
                stderr_tail: None,
                trust: None,
                attested_by: None,
                trust_error: None,
            },
        };
        out.push(view);
    }
    Ok(entries.len())
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// "3s", "4m", "2h", "5d": ages at a glance.
pub fn human_age(secs: Option<i64>) -> String {
    match secs {
        None => "?".into(),
        Some(s) if s < 0 => "0s".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 2 * 86400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(Some(5)), "5s");
        assert_eq!(human_age(Some(600)), "10m");
        assert_eq!(human_age(Some(3 * 3600)), "3h");
        assert_eq!(human_age(Some(3 * 86400)), "3d");
        assert_eq!(human_age(None), "?");
        assert_eq!(tail("abcdef", 3), "…def");
    }
}
