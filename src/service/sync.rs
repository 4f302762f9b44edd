//! One sync: the transaction that carries everything this node has to say to
//! the grid in a single commit: results and requeues from the outbox, new
//! claims, invalid queue entries moved to `failed/`, orphaned claims reaped,
//! and the node's heartbeat riding along. Folding them into one commit is
//! what keeps commits per task near one and pushes per task low.
//!
//! The plan is made afresh from each fetched tip, so every precondition
//! ("the task is still queued", "this claim is still mine") is checked
//! against the state the push will be judged on.

use std::collections::BTreeSet;

use crate::git::repo::{Blob, EntryMode, GridRepo, Oid, TreeEntry};
use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::orphan::{self, OrphanPolicy};
use crate::grid::task::EntryKind;
use crate::grid::{Id, NodeRecord, NodeStatus, ResultStatus, Task, TaskResult, TaskRules, layout};
use crate::ledger::reap;
use crate::ledger::results::{self, PendingResult, Rejection};
use crate::service::outbox::{Finish, OutboxEntry};
use crate::service::pace;
use crate::time::Timestamp;

pub struct SyncRequest<'a> {
    pub node: &'a Id,
    pub now: Timestamp,
    pub outbox: &'a [OutboxEntry],
    /// How many tasks to claim.
    pub want_claims: usize,
    /// How many of those start at once (the rest are claimed ahead and
    /// wait for a slot): only these are listed as running.
    pub start_now: usize,
    /// Look for orphaned claims this round.
    pub reap: bool,
    /// Tasks this node is running or has results for: its claims on them
    /// are alive. Any other claim naming this node is left from a crash.
    pub held: &'a BTreeSet<Id>,
    /// Write the node record even if nothing else changes.
    pub heartbeat: bool,
    /// The record to write (with `last_heartbeat` = now).
    pub record: &'a NodeRecord,
    pub rules: &'a TaskRules,
    pub policy: &'a OrphanPolicy,
    pub claim_grace: chrono::Duration,
    /// The queue was empty at this tip: skip listing it again.
    pub queue_empty_at: Option<&'a Oid>,
    /// Claim at least this node's fair share of the queue, up to this many
    /// tasks: the queue divided among the nodes taking work, by their
    /// slots (`pace::fair_share`). 0: just `want_claims`.
    pub share_up_to: usize,
    /// This node's slots (its concurrency), for its share.
    pub slots: u32,
    /// Look at the queue and the peers even when claiming nothing: the
    /// report's `queue_left` and `idle_peer_slots` tell a node holding
    /// claims it has not started whether idle peers wait for work.
    pub survey: bool,
    /// The outbox may wait for a task still running: commit its entries only
    /// if this sync has more to say (claims, a reap, a heartbeat).
    pub defer_results: bool,
}

#[derive(Debug, Default)]
pub struct SyncReport {
    pub tip: Option<Oid>,
    pub claimed: Vec<ClaimedTask>,
    /// Outbox entries that are done with: landed now, or found moot.
    pub landed: Vec<Id>,
    /// Outbox results the grid no longer wants (another node owns the task).
    pub superseded: Vec<Id>,
    /// Queue entries moved to `failed/` as invalid: (entry name, reason).
    pub invalid: Vec<(String, String)>,
    /// Orphaned claims handled: (task, what was done and why).
    pub reaped: Vec<(String, String)>,
    /// Queue entries left after this plan (valid or not yet looked at), when
    /// the queue was looked at (claiming or surveying).
    pub queue_left: usize,
    /// Slots of the peers that are idle and taking work at this tip, when
    /// the queue was looked at.
    pub idle_peer_slots: u32,
    /// This node's fair share when it claimed (0: not computed).
    pub fair_share: usize,
    pub wrote_heartbeat: bool,
    /// Tasks this commit puts back in the queue (requeues from the outbox).
    pub requeued: usize,
}

const KEEP: &[u8] = layout::KEEP_FILE.as_bytes();

fn is_file(mode: EntryMode) -> bool {
    matches!(mode, EntryMode::File | EntryMode::Executable)
}

fn entry_kind(mode: EntryMode) -> EntryKind {
    match mode {
        EntryMode::File => EntryKind::File,
        EntryMode::Executable => EntryKind::Executable,
        EntryMode::Symlink => EntryKind::Symlink,
        EntryMode::Tree => EntryKind::Directory,
        EntryMode::Submodule => EntryKind::Submodule,
    }
}

/// What becomes of one outbox entry at this tip.
#[derive(Debug, PartialEq)]
enum Landing {
    /// Our claim is there: end it.
    FromClaim,
    /// The claim was reaped and the task requeued, nobody holds it: finish
    /// it from the queue (the result still exists exactly once).
    FromQueue,
    /// Nothing to do (a requeue whose claim is gone already).
    Moot,
    /// Someone else holds or has finished the task.
    Superseded,
}

fn landing(
    entry: &OutboxEntry,
    node: &Id,
    in_progress: Option<&[u8]>,
    queued: bool,
    delivered: Option<&[u8]>,
    rules: &TaskRules,
) -> Landing {
    let ours = in_progress
        .and_then(|b| ClaimedTask::parse(&format!("{}.json", entry.task_id), b, rules).ok())
        .is_some_and(|c| &c.claim.node_id == node && c.claim.claimed_at == entry.claimed_at);
    match (&entry.finish, ours, queued) {
        (_, true, _) => Landing::FromClaim,
        (Finish::Result { .. }, false, true) => Landing::FromQueue,
        (Finish::Requeue { .. } | Finish::Retry { .. }, false, _) => Landing::Moot,
        // Our own push delivered it already (its answer was lost, then the
        // worker restarted): nothing left to do.
        (Finish::Result { result }, false, false) if delivered == Some(&result.to_bytes()[..]) => {
            Landing::Moot
        }
        (Finish::Result { .. }, false, false) => Landing::Superseded,
    }
}

/// The commit being planned: its edits, the results it will write, the
/// words of its message, and the report for the loop.
struct Draft<'a> {
    req: &'a SyncRequest<'a>,
    tip: &'a str,
    edits: Edits,
    results: Vec<PendingResult>,
    summary: Vec<String>,
    report: SyncReport,
}

impl Draft<'_> {
    /// Move an entry that breaks the rules out of `dir` into `failed/`,
    /// with the reason naming the file.
    fn reject(&mut self, dir: &str, entry: &TreeEntry, error: &dyn std::fmt::Display) {
        let r = Rejection::of(dir, entry, error, self.req.node, self.req.now);
        self.edits.insert(r.path, Edit::Delete);
        self.summary.push(format!("reject {}", r.result.stem));
        self.results.push(r.result);
        self.report.invalid.push(r.invalid);
    }
}

pub fn plan(txn: &Txn<'_>, req: &SyncRequest<'_>) -> Result<Plan<SyncReport>, GitError> {
    let repo = txn.repo;
    let Some(tip) = txn.tip.as_deref() else {
        // An empty remote: nothing to read; registering creates the grid.
        let mut edits = Edits::new();
        if req.heartbeat {
            edits.insert(
                layout::node_file(req.node).into_bytes(),
                Edit::Put(req.record.to_bytes()),
            );
        }
        let report = SyncReport {
            wrote_heartbeat: req.heartbeat,
            ..SyncReport::default()
        };
        return Ok(Plan {
            edits,
            message: format!("{}: register", req.node),
            value: report,
        });
    };
    let mut d = Draft {
        req,
        tip,
        edits: Edits::new(),
        results: Vec::new(),
        summary: Vec::new(),
        report: SyncReport {
            tip: Some(tip.to_owned()),
            ..SyncReport::default()
        },
    };
    let touched = land_outbox(repo, &mut d)?;
    let landing_only = d.edits.len();
    claim(repo, &mut d, &touched)?;
    if req.reap {
        reap(repo, &mut d, &touched)?;
    }
    if req.defer_results && !req.heartbeat && d.edits.len() == landing_only {
        // Nothing to claim after all, and a task of the batch still runs:
        // its result is near, and both go in one commit.
        return Ok(Plan {
            edits: Edits::new(),
            message: String::new(),
            value: SyncReport {
                tip: Some(tip.to_owned()),
                queue_left: d.report.queue_left,
                idle_peer_slots: d.report.idle_peer_slots,
                ..SyncReport::default()
            },
        });
    }
    write_results(repo, &mut d)?;

    // The heartbeat rides along with any change, or goes alone when due.
    if !d.edits.is_empty() || req.heartbeat {
        // The record as it will be once this commit lands: with the tasks
        // just claimed among those running.
        let mut record = req.record.clone();
        let starting = d.report.claimed.iter().take(req.start_now);
        record
            .running
            .extend(starting.map(|c| c.task.task_id.to_string()));
        if record.status == NodeStatus::Idle && !record.running.is_empty() {
            record.status = NodeStatus::Busy;
        }
        d.edits.insert(
            layout::node_file(req.node).into_bytes(),
            Edit::Put(record.to_bytes()),
        );
        d.report.wrote_heartbeat = true;
        if d.summary.is_empty() {
            d.summary.push("heartbeat".into());
        }
    }
    Ok(Plan {
        message: commit_message(req.node, &d.summary),
        edits: d.edits,
        value: d.report,
    })
}

/// End the claims the outbox holds results or requeues for. Returns the
/// tasks touched, which the later steps must leave alone.
fn land_outbox(repo: &GridRepo, d: &mut Draft<'_>) -> Result<BTreeSet<Id>, GitError> {
    let mut touched = BTreeSet::new();
    if d.req.outbox.is_empty() {
        return Ok(touched);
    }
    let tip = d.tip;
    let specs: Vec<String> = d
        .req
        .outbox
        .iter()
        .flat_map(|e| {
            let success =
                matches!(&e.finish, Finish::Result { result } if result.status.is_success());
            let delivered = layout::result_file(success, d.req.node, e.task_id.as_str());
            [
                format!("{tip}:{}", layout::in_progress_file(&e.task_id)),
                format!("{tip}:{}", layout::queue_file(&e.task_id)),
                format!("{tip}:{delivered}"),
            ]
        })
        .collect();
    // Our claim is a task file; the queue entry only has to be there (never
    // read); our delivered result is a result.
    let caps: Vec<u64> = (0..specs.len())
        .map(|i| match i % 3 {
            0 => d.req.rules.max_file_bytes as u64,
            1 => 0,
            _ => layout::MAX_RESULT_BYTES,
        })
        .collect();
    let blobs = repo.read_objects_capped(&specs, &caps)?;
    for (entry, found) in d.req.outbox.iter().zip(blobs.chunks(3)) {
        let id = &entry.task_id;
        let (in_progress, queued, delivered) = (&found[0], &found[1], &found[2]);
        // Too big to be ours is "not ours"; not read for lack of budget is
        // "not known yet": decide in a later round.
        if [in_progress, delivered]
            .iter()
            .any(|b| matches!(b, Blob::Deferred { .. }))
        {
            continue;
        }
        let source = match landing(
            entry,
            d.req.node,
            in_progress.data(),
            queued.exists(),
            delivered.data(),
            d.req.rules,
        ) {
            Landing::FromClaim => layout::in_progress_file(id),
            Landing::FromQueue => layout::queue_file(id),
            Landing::Moot => {
                d.report.landed.push(id.clone());
                continue;
            }
            Landing::Superseded => {
                d.report.superseded.push(id.clone());
                continue;
            }
        };
        touched.insert(id.clone());
        d.edits.insert(source.into_bytes(), Edit::Delete);
        match &entry.finish {
            Finish::Result { result } => {
                d.summary
                    .push(format!("{} {id}", status_word(result.status)));
                d.results.push(PendingResult {
                    node: d.req.node.clone(),
                    stem: id.to_string(),
                    result: result.clone(),
                });
            }
            Finish::Requeue { reason } => {
                let claimed = ClaimedTask::parse(
                    &format!("{id}.json"),
                    in_progress.data().unwrap_or(b""),
                    d.req.rules,
                );
                if let Ok(c) = claimed {
                    d.edits.insert(
                        layout::queue_file(id).into_bytes(),
                        Edit::Put(c.requeued(c.claim.attempt)),
                    );
                }
                d.summary.push(format!("requeue {id} ({reason})"));
                d.report.requeued += 1;
            }
            Finish::Retry { reason } => {
                // Landing::FromClaim: the claim is ours, so it parses.
                let Ok(c) = ClaimedTask::parse(
                    &format!("{id}.json"),
                    in_progress.data().unwrap_or(b""),
                    d.req.rules,
                ) else {
                    continue;
                };
                match orphan::disposition(&c.claim, d.req.policy) {
                    orphan::Disposition::Requeue { attempt } => {
                        d.edits.insert(
                            layout::queue_file(id).into_bytes(),
                            Edit::Put(c.requeued(attempt)),
                        );
                        d.summary
                            .push(format!("requeue {id} (attempt {attempt}: {reason})"));
                        d.report.requeued += 1;
                    }
                    orphan::Disposition::Abandon => {
                        let result = abandoned(
                            &c,
                            d.req.node,
                            d.req.now,
                            format!(
                                "abandoned after {} attempts; the last, on {}, failed: {reason}",
                                c.claim.attempt, d.req.node
                            ),
                        );
                        d.summary.push(format!("abandon {id}"));
                        d.results.push(PendingResult {
                            node: d.req.node.clone(),
                            stem: id.to_string(),
                            result,
                        });
                    }
                }
            }
        }
        d.report.landed.push(id.clone());
    }
    Ok(touched)
}

/// Claim up to `want_claims` valid tasks, or the node's fair share if more;
/// invalid entries met on the way go to `failed/`. Surveying only, look at
/// the queue and the peers and claim nothing.
fn claim(repo: &GridRepo, d: &mut Draft<'_>, touched: &BTreeSet<Id>) -> Result<(), GitError> {
    let req = d.req;
    let claiming = req.want_claims > 0 && req.queue_empty_at.is_none_or(|t| t != d.tip);
    if !claiming && !req.survey {
        return Ok(());
    }
    let mut queue: Vec<TreeEntry> = repo
        .list_dir(d.tip, layout::QUEUE)?
        .into_iter()
        .filter(|e| e.name != KEEP)
        .filter(|e| {
            let id = layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok());
            !id.is_some_and(|id| touched.contains(&id))
        })
        .collect();
    let peers = if queue.is_empty() && !req.survey {
        Peers::default()
    } else {
        peers(repo, d.tip, req)?
    };
    d.report.idle_peer_slots = peers.idle_slots;
    if !claiming {
        d.report.queue_left = queue.len();
        return Ok(());
    }
    // A random pick spreads racing nodes over the queue a little; the real
    // contention is on the ref, which the transaction's backoff handles.
    fastrand::shuffle(&mut queue);
    let want = if req.share_up_to > 0 {
        let share = pace::fair_share(queue.len(), req.slots, peers.live_slots);
        d.report.fair_share = share;
        req.want_claims.max(share.min(req.share_up_to))
    } else {
        req.want_claims
    };
    let sample = queue.len().min(want * 2 + 4);
    let (looked_at, rest) = queue.split_at(sample);
    // Only files are read, and none bigger than a task may be: a bigger one
    // is refused by its size alone.
    let files: Vec<&TreeEntry> = looked_at.iter().filter(|e| is_file(e.mode)).collect();
    let mut blobs = repo
        .read_objects(
            &files.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
            req.rules.max_file_bytes as u64,
        )?
        .into_iter();
    let mut left = rest.len();
    // A task claimed ahead waits for a slot: for the tasks claimed before
    // it in this batch (the wait for tasks already running or waiting is in
    // `claim_grace`). Its deadline allows for their timeouts, so that a
    // healthy node's batch is never taken for orphaned.
    let mut queued_before = chrono::Duration::zero();
    for entry in looked_at {
        // Symlinks, trees and submodules are refused by their kind, unread.
        let blob = if is_file(entry.mode) {
            blobs.next().unwrap_or(Blob::Missing)
        } else {
            Blob::Data(Vec::new())
        };
        let content = match blob {
            Blob::Data(b) => b,
            Blob::TooBig { size, cap } => {
                let e = crate::grid::TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(cap).unwrap_or(usize::MAX),
                };
                d.reject(layout::QUEUE, entry, &e);
                continue;
            }
            // Not read this round (budget spent, or gone): next time.
            _ => {
                left += 1;
                continue;
            }
        };
        match Task::from_entry(
            &entry.name_lossy(),
            entry_kind(entry.mode),
            &content,
            req.rules,
        ) {
            Ok(task) if d.report.claimed.len() < want => {
                let grace = if d.report.claimed.len() < req.start_now {
                    req.claim_grace
                } else {
                    req.claim_grace + queued_before
                };
                // Validated: at most max_timeout_seconds.
                queued_before += chrono::Duration::seconds(task.timeout_seconds as i64);
                let claimed = ClaimedTask::new(task, req.node, req.now, grace);
                d.edits.insert(
                    results::entry_path(layout::QUEUE, &entry.name),
                    Edit::Delete,
                );
                d.edits.insert(
                    layout::in_progress_file(&claimed.task.task_id).into_bytes(),
                    Edit::Put(claimed.to_bytes()),
                );
                d.summary.push(format!("claim {}", claimed.task.task_id));
                d.report.claimed.push(claimed);
            }
            Ok(_) => left += 1,
            Err(e) => d.reject(layout::QUEUE, entry, &e),
        }
    }
    d.report.queue_left = left;
    Ok(())
}

/// The other nodes' slots at a tip, as their records say.
#[derive(Debug, Default, Clone, Copy)]
struct Peers {
    /// Of the nodes taking work (idle or busy, heartbeat fresh).
    live_slots: u32,
    /// Of those among them that are idle.
    idle_slots: u32,
}

fn peers(repo: &GridRepo, tip: &str, req: &SyncRequest<'_>) -> Result<Peers, GitError> {
    let others: Vec<TreeEntry> = repo
        .list_dir(tip, layout::NODES)?
        .into_iter()
        .filter(|e| e.mode == EntryMode::File && e.name != KEEP)
        .filter(|e| layout::json_stem(&e.name_lossy()) != Some(req.node.as_str()))
        .collect();
    let records = repo.read_objects(
        &others.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
        layout::MAX_NODE_RECORD_BYTES,
    )?;
    // A record too big to read, or one that names another node than its
    // file does, is no record: that node is not counted.
    let mut peers = Peers::default();
    for n in records
        .iter()
        .zip(&others)
        .filter_map(|(b, e)| Some((b.data()?, e)))
        .filter_map(|(b, e)| {
            NodeRecord::parse(b)
                .ok()
                .filter(|r| layout::json_stem(&e.name_lossy()) == Some(r.node_id.as_str()))
        })
    {
        if !n.takes_work(req.now, req.policy.stale_after) {
            continue;
        }
        // A record without the field (an older worker) has one slot.
        let slots = n.concurrency.clamp(1, 1024);
        peers.live_slots = peers.live_slots.saturating_add(slots);
        if n.status == NodeStatus::Idle {
            peers.idle_slots = peers.idle_slots.saturating_add(slots);
        }
    }
    Ok(peers)
}

/// Requeue (or abandon) claims whose owner is gone. The rule itself lives
/// in ledger::reap, shared with `dgrid-worker reap`.
fn reap(repo: &GridRepo, d: &mut Draft<'_>, touched: &BTreeSet<Id>) -> Result<(), GitError> {
    let input = reap::ReapInput {
        node: d.req.node,
        now: d.req.now,
        held: d.req.held,
        skip: touched,
        rules: d.req.rules,
        policy: d.req.policy,
    };
    let planned = reap::plan(repo, d.tip, &input)?;
    d.edits.extend(planned.edits);
    d.results.extend(planned.results);
    d.summary.extend(planned.summary);
    d.report.invalid.extend(planned.invalid);
    d.report.reaped.extend(planned.reaped);
    Ok(())
}

/// Put the results at paths that do not exist yet.
fn write_results(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(), GitError> {
    if d.results.is_empty() {
        return Ok(());
    }
    let results = std::mem::take(&mut d.results);
    d.edits
        .extend(results::place_results(repo, d.tip, d.req.now, results)?);
    Ok(())
}

/// The `abandoned` result of a claimed task that will not be tried again.
pub(crate) fn abandoned(c: &ClaimedTask, node: &Id, now: Timestamp, error: String) -> TaskResult {
    TaskResult {
        task_id: c.task.task_id.to_string(),
        node_id: node.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        timestamp: crate::time::format(now),
        status: ResultStatus::Abandoned,
        started_at: Some(c.claim.claimed_at.clone()),
        duration_ms: None,
        attempt: c.claim.attempt,
        truncated: false,
        error: Some(error),
    }
}

fn status_word(s: ResultStatus) -> &'static str {
    match s {
        ResultStatus::Completed => "complete",
        ResultStatus::Failed => "fail",
        ResultStatus::Timeout => "time out",
        ResultStatus::Invalid => "reject",
        ResultStatus::Abandoned => "abandon",
    }
}

/// `n1: complete t1, claim t2, claim t3`, shortened past a few items: the
/// log stays readable in `git log --oneline`.
fn commit_message(node: &Id, items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut subject = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        subject.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    let mut msg = format!("{node}: {subject}\n");
    if items.len() > SHOWN {
        msg.push('\n');
        for item in items {
            msg.push_str(item);
            msg.push('\n');
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::results::invalid_result;

    fn entry(finish: Finish) -> OutboxEntry {
        OutboxEntry {
            task_id: Id::parse("t").unwrap(),
            attempt: 1,
            claimed_at: "2026-01-01T00:00:00.000Z".into(),
            finish,
        }
    }

    fn claim_bytes(node: &str, claimed_at: &str) -> Vec<u8> {
        format!(
            r#"{{"task_id":"t","script":"x","timeout_seconds":5,"claim":{{"node_id":"{node}","claimed_at":"{claimed_at}","deadline":"2026-01-01T01:00:00.000Z","attempt":1}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn an_outbox_entry_lands_only_on_its_own_claim() {
        let me = Id::parse("me").unwrap();
        let rules = TaskRules::default();
        let result = entry(Finish::Result {
            result: invalid_result("t.json", &me, "2026-01-01T00:00:00.000Z", "x"),
        });
        let requeue = entry(Finish::Requeue {
            reason: "engine".into(),
        });
        let mine = claim_bytes("me", "2026-01-01T00:00:00.000Z");
        let mine_later = claim_bytes("me", "2026-01-01T00:09:00.000Z");
        let theirs = claim_bytes("other", "2026-01-01T00:00:00.000Z");
        assert_eq!(
            landing(&result, &me, Some(&mine), false, None, &rules),
            Landing::FromClaim
        );
        assert_eq!(
            landing(&result, &me, Some(&mine_later), false, None, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&result, &me, Some(&theirs), false, None, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&result, &me, None, true, None, &rules),
            Landing::FromQueue
        );
        assert_eq!(
            landing(&result, &me, None, false, None, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&requeue, &me, Some(&mine), false, None, &rules),
            Landing::FromClaim
        );
        assert_eq!(
            landing(&requeue, &me, Some(&theirs), false, None, &rules),
            Landing::Moot
        );
        assert_eq!(
            landing(&requeue, &me, None, true, None, &rules),
            Landing::Moot
        );
        // Our own result already at its path (a push whose answer was lost).
        let Finish::Result { result: r } = &result.finish else {
            unreachable!()
        };
        let delivered = r.to_bytes();
        assert_eq!(
            landing(&result, &me, None, false, Some(&delivered), &rules),
            Landing::Moot
        );
        assert_eq!(
            landing(&result, &me, None, false, Some(b"{}"), &rules),
            Landing::Superseded
        );
    }

    proptest::proptest! {
        /// An outbox entry ends a claim only if that very claim (this node,
        /// this claimed_at) is there; a result goes in from the queue only
        /// when nobody holds the task; a requeue never writes anything
        /// unless its claim is there.
        #[test]
        fn landing_is_decided_by_the_claim_itself(
            me in "[a-z]{1,3}", them in "[a-z]{1,3}", mine_at in 0u8..3, at in 0u8..3,
            file in 0u8..4, queued in proptest::bool::ANY, is_result in proptest::bool::ANY,
        ) {
            let me_id = Id::parse(&me).unwrap();
            let stamp = |i: u8| format!("2026-01-01T00:0{i}:00.000Z");
            let mut e = entry(if is_result {
                Finish::Result { result: invalid_result("t.json", &me_id, &stamp(0), "x") }
            } else {
                Finish::Requeue { reason: "r".into() }
            });
            e.claimed_at = stamp(mine_at);
            let bytes = match file {
                0 => None,
                1 => Some(claim_bytes(&me, &stamp(at))),
                2 => Some(claim_bytes(&them, &stamp(at))),
                _ => Some(b"{garbage".to_vec()),
            };
            let got = landing(&e, &me_id, bytes.as_deref(), queued, None, &TaskRules::default());
            let ours = (file == 1 || (file == 2 && them == me)) && at == mine_at;
            let want = match (ours, is_result, queued) {
                (true, _, _) => Landing::FromClaim,
                (false, true, true) => Landing::FromQueue,
                (false, true, false) => Landing::Superseded,
                (false, false, _) => Landing::Moot,
            };
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn commit_messages_stay_short() {
        let me = Id::parse("n1").unwrap();
        assert_eq!(commit_message(&me, &["claim a".into()]), "n1: claim a\n");
        let many: Vec<String> = (0..8).map(|i| format!("claim t{i}")).collect();
        let msg = commit_message(&me, &many);
        assert!(msg.starts_with(
            "n1: claim t0, claim t1, claim t2, claim t3, claim t4, claim t5 and 2 more\n\n"
        ));
    }
}
