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

use crate::git::repo::{EntryMode, GridRepo, Oid, TreeEntry};
use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::orphan::OrphanPolicy;
use crate::grid::task::EntryKind;
use crate::grid::{Id, NodeRecord, ResultStatus, Task, TaskResult, TaskRules, layout};
use crate::service::outbox::{Finish, OutboxEntry};
use crate::time::{self, Timestamp};

pub struct SyncRequest<'a> {
    pub node: &'a Id,
    pub now: Timestamp,
    pub outbox: &'a [OutboxEntry],
    /// How many tasks to claim (free slots).
    pub want_claims: usize,
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
    /// Queue entries left after this plan (valid or not yet looked at).
    pub queue_left: usize,
    pub wrote_heartbeat: bool,
}

const KEEP: &[u8] = layout::KEEP_FILE.as_bytes();

fn path(dir: &str, name: &[u8]) -> Vec<u8> {
    let mut p = format!("{dir}/").into_bytes();
    p.extend_from_slice(name);
    p
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
    rules: &TaskRules,
) -> Landing {
    let ours = in_progress
        .and_then(|b| ClaimedTask::parse(&format!("{}.json", entry.task_id), b, rules).ok())
        .is_some_and(|c| &c.claim.node_id == node && c.claim.claimed_at == entry.claimed_at);
    match (&entry.finish, ours, queued) {
        (_, true, _) => Landing::FromClaim,
        (Finish::Result { .. }, false, true) => Landing::FromQueue,
        (Finish::Requeue { .. }, false, _) => Landing::Moot,
        (Finish::Result { .. }, false, false) => Landing::Superseded,
    }
}

/// Results to write: (path, bytes). Paths are unique per node and task; a
/// clash (the same id submitted again later) gets a time suffix instead of
/// overwriting the earlier result.
struct ResultWrites(Vec<(bool, Id, String, TaskResult)>);

pub fn plan(txn: &Txn<'_>, req: &SyncRequest<'_>) -> Result<Plan<SyncReport>, GitError> {
    let repo = txn.repo;
    let mut report = SyncReport {
        tip: txn.tip.clone(),
        ..SyncReport::default()
    };
    let mut edits = Edits::new();
    let mut results = ResultWrites(Vec::new());
    let mut summary: Vec<String> = Vec::new();
    let Some(tip) = txn.tip.as_deref() else {
        // An empty remote: nothing to read; registering creates the grid.
        if req.heartbeat {
            edits.insert(
                layout::node_file(req.node).into_bytes(),
                Edit::Put(req.record.to_bytes()),
            );
            report.wrote_heartbeat = true;
        }
        return Ok(Plan {
            edits,
            message: format!("{}: register", req.node),
            value: report,
        });
    };
    let now_s = time::format(req.now);

    // 1. The outbox.
    let mut touched: BTreeSet<Id> = BTreeSet::new();
    if !req.outbox.is_empty() {
        let specs: Vec<String> = req
            .outbox
            .iter()
            .flat_map(|e| {
                [
                    format!("{tip}:{}", layout::in_progress_file(&e.task_id)),
                    format!("{tip}:{}", layout::queue_file(&e.task_id)),
                ]
            })
            .collect();
        let blobs = repo.read_objects(&specs)?;
        for (entry, pair) in req.outbox.iter().zip(blobs.chunks(2)) {
            let how = landing(
                entry,
                req.node,
                pair[0].as_deref(),
                pair[1].is_some(),
                req.rules,
            );
            let id = &entry.task_id;
            let source = match how {
                Landing::FromClaim => layout::in_progress_file(id),
                Landing::FromQueue => layout::queue_file(id),
                Landing::Moot => {
                    report.landed.push(id.clone());
                    continue;
                }
                Landing::Superseded => {
                    report.superseded.push(id.clone());
                    continue;
                }
            };
            touched.insert(id.clone());
            edits.insert(source.into_bytes(), Edit::Delete);
            match &entry.finish {
                Finish::Result { result } => {
                    summary.push(format!("{} {id}", status_word(result.status)));
                    results.0.push((
                        result.status.is_success(),
                        req.node.clone(),
                        id.to_string(),
                        result.clone(),
                    ));
                }
                Finish::Requeue { reason } => {
                    let claimed = ClaimedTask::parse(
                        &format!("{id}.json"),
                        pair[0].as_deref().unwrap_or(b""),
                        req.rules,
                    );
                    if let Ok(c) = claimed {
                        edits.insert(
                            layout::queue_file(id).into_bytes(),
                            Edit::Put(c.requeued(c.claim.attempt)),
                        );
                    }
                    summary.push(format!("requeue {id} ({reason})"));
                }
            }
            report.landed.push(id.clone());
        }
    }

    // 2. New claims, and invalid entries met on the way.
    let skip_queue = req.queue_empty_at.is_some_and(|t| t == tip);
    if req.want_claims > 0 && !skip_queue {
        let mut queue: Vec<TreeEntry> = repo
            .list_dir(tip, layout::QUEUE)?
            .into_iter()
            .filter(|e| e.name != KEEP)
            .filter(|e| {
                let stem = layout::json_stem(&e.name_lossy()).map(str::to_owned);
                !stem
                    .and_then(|s| Id::parse(&s).ok())
                    .is_some_and(|id| touched.contains(&id))
            })
            .collect();
        // A random pick spreads racing nodes over the queue a little; the
        // real contention is on the ref (DESIGN.md 7), which the backoff
        // handles.
        fastrand::shuffle(&mut queue);
        let sample = queue.len().min(req.want_claims * 2 + 4);
        let (looked_at, rest) = queue.split_at(sample);
        let reads: Vec<String> = looked_at.iter().map(|e| e.oid.clone()).collect();
        let blobs = repo.read_objects(&reads)?;
        let mut left = rest.len();
        for (entry, blob) in looked_at.iter().zip(blobs) {
            let name = entry.name_lossy();
            let bytes = blob.unwrap_or_default();
            // Trees and submodules are not read as files.
            let content: &[u8] = if matches!(entry.mode, EntryMode::Tree | EntryMode::Submodule) {
                b""
            } else {
                &bytes
            };
            match Task::from_entry(&name, entry_kind(entry.mode), content, req.rules) {
                Ok(task) if report.claimed.len() < req.want_claims => {
                    let claimed = ClaimedTask::new(task, req.node, req.now, req.claim_grace);
                    edits.insert(path(layout::QUEUE, &entry.name), Edit::Delete);
                    edits.insert(
                        layout::in_progress_file(&claimed.task.task_id).into_bytes(),
                        Edit::Put(claimed.to_bytes()),
                    );
                    summary.push(format!("claim {}", claimed.task.task_id));
                    report.claimed.push(claimed);
                }
                Ok(_) => left += 1,
                Err(e) => {
                    let reason = format!("{}/{name}: {e}", layout::QUEUE);
                    edits.insert(path(layout::QUEUE, &entry.name), Edit::Delete);
                    let stem = layout::result_stem_for_entry(&name);
                    results.0.push((
                        false,
                        req.node.clone(),
                        stem.clone(),
                        invalid_result(&name, req.node, &now_s, &reason),
                    ));
                    summary.push(format!("reject {stem}"));
                    report.invalid.push((name, reason));
                }
            }
        }
        report.queue_left = left;
    }

    // 3. Orphaned claims.
    if req.reap {
        reap(
            repo,
            tip,
            req,
            &touched,
            &mut edits,
            &mut results,
            &mut report,
            &mut summary,
        )?;
    }

    // 4. Results, at paths that do not exist yet.
    if !results.0.is_empty() {
        let paths: Vec<String> = results
            .0
            .iter()
            .map(|(ok, node, stem, _)| layout::result_file(*ok, node, stem))
            .collect();
        let specs: Vec<String> = paths.iter().map(|p| format!("{tip}:{p}")).collect();
        let existing = repo.read_objects(&specs)?;
        for ((p, exists), (ok, node, stem, result)) in
            paths.into_iter().zip(existing).zip(results.0)
        {
            let p = if exists.is_some() {
                layout::result_file(ok, &node, &format!("{stem}-{}", req.now.timestamp_millis()))
            } else {
                p
            };
            edits.insert(p.into_bytes(), Edit::Put(result.to_bytes()));
        }
    }

    // 5. The heartbeat rides along with any change, or goes alone when due.
    if !edits.is_empty() || req.heartbeat {
        edits.insert(
            layout::node_file(req.node).into_bytes(),
            Edit::Put(req.record.to_bytes()),
        );
        report.wrote_heartbeat = true;
        if summary.is_empty() {
            summary.push("heartbeat".into());
        }
    }
    let message = commit_message(req.node, &summary);
    Ok(Plan {
        edits,
        message,
        value: report,
    })
}

#[allow(clippy::too_many_arguments)]
fn reap(
    repo: &GridRepo,
    tip: &str,
    req: &SyncRequest<'_>,
    touched: &BTreeSet<Id>,
    edits: &mut Edits,
    results: &mut ResultWrites,
    report: &mut SyncReport,
    summary: &mut Vec<String>,
) -> Result<(), GitError> {
    // The rule itself lives in service::reap, shared with `dgrid-worker reap`.
    let input = super::reap::ReapInput {
        node: req.node,
        now: req.now,
        held: req.held,
        skip: touched,
        rules: req.rules,
        policy: req.policy,
    };
    let planned = super::reap::plan(repo, tip, &input)?;
    edits.extend(planned.edits);
    results.0.extend(
        planned
            .results
            .into_iter()
            .map(|r| (r.success, r.node, r.stem, r.result)),
    );
    report.invalid.extend(planned.invalid);
    report.reaped.extend(planned.reaped);
    summary.extend(planned.summary);
    Ok(())
}

pub(crate) fn invalid_result(name: &str, node: &Id, now: &str, reason: &str) -> TaskResult {
    TaskResult {
        task_id: layout::json_stem(name).unwrap_or(name).to_owned(),
        node_id: node.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        timestamp: now.to_owned(),
        status: ResultStatus::Invalid,
        started_at: None,
        duration_ms: None,
        attempt: 1,
        truncated: false,
        error: Some(reason.to_owned()),
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
            landing(&result, &me, Some(&mine), false, &rules),
            Landing::FromClaim
        );
        assert_eq!(
            landing(&result, &me, Some(&mine_later), false, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&result, &me, Some(&theirs), false, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&result, &me, None, true, &rules),
            Landing::FromQueue
        );
        assert_eq!(
            landing(&result, &me, None, false, &rules),
            Landing::Superseded
        );
        assert_eq!(
            landing(&requeue, &me, Some(&mine), false, &rules),
            Landing::FromClaim
        );
        assert_eq!(
            landing(&requeue, &me, Some(&theirs), false, &rules),
            Landing::Moot
        );
        assert_eq!(landing(&requeue, &me, None, true, &rules), Landing::Moot);
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
