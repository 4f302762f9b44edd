//! Landing the outbox: each result or requeue ends the claim it was made
//! under, and only that claim (this node, that `claimed_at`), so that a
//! task reaped and taken by another node in the meantime keeps one result.

use std::collections::BTreeSet;

use super::{Draft, admit, status_word};
use crate::git::Edit;
use crate::git::GitError;
use crate::git::{Blob, GridRepo};
use crate::grid::claim::ClaimedTask;
use crate::grid::orphan;
use crate::grid::{Id, TaskRules, layout};
use crate::ledger::queue;
use crate::ledger::result_index::ResultIndex;
use crate::ledger::results::{PendingResult, abandoned, attempts};
use crate::ledger::room::GiveWay;
use crate::service::outbox::{Finish, OutboxEntry};

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

/// Is the claim in `in_progress` the one `entry` was made under? For a
/// result, also one a peer took over from that claim (`Claim::taken_from`):
/// the node had started the task after all, and the first result of the
/// two runs lands. Not a requeue: the claim is the peer's to run now.
pub(super) fn is_ours(
    entry: &OutboxEntry,
    node: &Id,
    in_progress: Option<&[u8]>,
    rules: &TaskRules,
) -> bool {
    let Some(c) = in_progress
        .and_then(|b| ClaimedTask::parse(&format!("{}.json", entry.task_id), b, rules).ok())
    else {
        return false;
    };
    match entry.finish {
        Finish::Result { .. } => c.claim.made_by(node, &entry.claimed_at),
        _ => &c.claim.node_id == node && c.claim.claimed_at == entry.claimed_at,
    }
}

fn landing(
    entry: &OutboxEntry,
    node: &Id,
    in_progress: Option<&[u8]>,
    queued: bool,
    delivered: Option<&[u8]>,
    rules: &TaskRules,
) -> Landing {
    let ours = is_ours(entry, node, in_progress, rules);
    match (&entry.finish, ours, queued) {
        (_, true, _) => Landing::FromClaim,
        (Finish::Result { .. }, false, true) => Landing::FromQueue,
        (Finish::Requeue { .. } | Finish::Retry { .. }, false, _) => Landing::Moot,
        // Our own push delivered it already (its answer was lost, then the
        // worker restarted): nothing left to do.
        (Finish::Result { result, signed }, false, false)
            if delivered
                == Some(
                    &signed
                        .as_ref()
                        .map_or_else(|| result.to_bytes(), |s| s.clone().into_bytes())[..],
                ) =>
        {
            Landing::Moot
        }
        (Finish::Result { .. }, false, false) => Landing::Superseded,
    }
}

/// End the claims the outbox holds results or requeues for. Returns the
/// tasks touched, which the later steps must leave alone.
pub(super) fn land_outbox(repo: &GridRepo, d: &mut Draft<'_>) -> Result<BTreeSet<Id>, GitError> {
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
                matches!(&e.finish, Finish::Result { result, .. } if result.status.is_success());
            let delivered = layout::result_file(success, d.req.node, e.task_id.as_str());
            [
                format!("{tip}:{}", layout::in_progress_file(&e.task_id)),
                format!("{tip}:{delivered}"),
            ]
        })
        .collect();
    // Our claim is a task file; our delivered result is a result.
    let caps: Vec<u64> = (0..specs.len())
        .map(|i| match i % 2 {
            0 => d.req.rules.max_file_bytes as u64,
            _ => layout::MAX_RESULT_BYTES,
        })
        .collect();
    let blobs = repo.read_objects_capped(&specs, &caps)?;
    // Where each queued task is, looked up only if a claim is not ours any
    // more (it may have been reaped and requeued: in a lane, by its fields).
    let mut queued: Option<std::collections::BTreeMap<Id, Vec<u8>>> = None;
    let mut results: Option<ResultIndex> = None;
    for (entry, found) in d.req.outbox.iter().zip(blobs.chunks(2)) {
        let id = &entry.task_id;
        let (in_progress, delivered) = (&found[0], &found[1]);
        // Too big to be ours is "not ours"; not read for lack of budget is
        // "not known yet": decide in a later round.
        if [in_progress, delivered]
            .iter()
            .any(|b| matches!(b, Blob::Deferred { .. }))
        {
            continue;
        }
        let ours = is_ours(entry, d.req.node, in_progress.data(), d.req.rules);
        let queue_path = if ours {
            None
        } else {
            if queued.is_none() {
                queued = Some(d.queue(repo)?.paths());
            }
            queued.as_ref().and_then(|q| q.get(id)).cloned()
        };
        let source = match landing(
            entry,
            d.req.node,
            in_progress.data(),
            queue_path.is_some(),
            delivered.data(),
            d.req.rules,
        ) {
            Landing::FromClaim => layout::in_progress_file(id).into_bytes(),
            Landing::FromQueue => queue_path.unwrap_or_default(),
            Landing::Moot => {
                d.report.landed.push(id.clone());
                continue;
            }
            Landing::Superseded
                if in_progress.data().is_none()
                    && matches!(entry.finish, Finish::Result { .. })
                    && admit::enforced(d.req)
                    && !answered(repo, d, id, &mut results)? =>
            {
                // No claim holds the task, and no node's signed result
                // answers it: a pusher ended this node's claim (deleted
                // it, or wrote a result no node signed, by hand or in a
                // forged outbox). Its own result lands, beside any other.
                tracing::warn!(task = %id, "trust: the claim of this task was ended by no node's signed result; this node's own result lands");
                Vec::new()
            }
            Landing::Superseded => {
                d.report.superseded.push(id.clone());
                continue;
            }
        };
        touched.insert(id.clone());
        if !source.is_empty() {
            d.edits.insert(source.clone(), Edit::Delete);
        }
        match &entry.finish {
            Finish::Result { result, signed } => {
                d.summary
                    .push(format!("{} {id}", status_word(result.status)));
                d.results.push(PendingResult {
                    node: d.req.node.clone(),
                    stem: id.to_string(),
                    result: result.clone(),
                    signed: signed.as_ref().map(|s| s.clone().into_bytes()),
                });
            }
            Finish::Requeue { reason, .. } => {
                let claimed = ClaimedTask::parse(
                    &format!("{id}.json"),
                    in_progress.data().unwrap_or(b""),
                    d.req.rules,
                );
                if let Ok(c) = claimed {
                    let Some(to) = requeue_place(repo, d, &c, c.claim.attempt)? else {
                        match ended_for_copies(repo, d, &c)? {
                            true => d.report.landed.push(id.clone()),
                            false => stay_claimed(d, &mut touched, &source, id),
                        }
                        continue;
                    };
                    d.edits
                        .insert(to.into_bytes(), Edit::Put(c.requeued(c.claim.attempt)));
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
                // It ran here: an attempt spent, answered or not.
                match orphan::disposition(&c.answered().claim, d.req.policy) {
                    orphan::Disposition::Requeue { attempt } => {
                        let Some(to) = requeue_place(repo, d, &c, attempt)? else {
                            match ended_for_copies(repo, d, &c)? {
                                true => d.report.landed.push(id.clone()),
                                false => stay_claimed(d, &mut touched, &source, id),
                            }
                            continue;
                        };
                        d.edits
                            .insert(to.into_bytes(), Edit::Put(c.requeued(attempt)));
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
                        d.results.push(PendingResult::unsigned(
                            d.req.node.clone(),
                            id.to_string(),
                            result,
                        ));
                    }
                }
            }
        }
        d.report.landed.push(id.clone());
    }
    Ok(touched)
}

/// Enforcing trust: does a result signed by a node the policy lists
/// answer task `id` at the tip (the one that stands: a completed result
/// that counts, else a failed one)? One not read yet counts, as before.
/// The result directories are listed once a plan (`results`): a node back
/// from an outage may hold many results superseded.
fn answered(
    repo: &GridRepo,
    d: &Draft<'_>,
    id: &Id,
    results: &mut Option<ResultIndex>,
) -> Result<bool, GitError> {
    if results.is_none() {
        *results = Some(ResultIndex::list(repo, d.tip)?);
    }
    let index = results.as_ref().expect("listed above");
    let counts = |task: &Id, bytes: &[u8]| admit::result_counts(d.req, task, bytes);
    let found = index.find_counted(repo, std::slice::from_ref(id), Some(&counts))?;
    let Some(r) = found.get(id) else {
        return Ok(false);
    };
    if r.completed {
        return Ok(r.counted);
    }
    let read = repo.read_objects(std::slice::from_ref(&r.oid), layout::MAX_RESULT_BYTES)?;
    Ok(match read.first().and_then(Blob::data) {
        Some(bytes) => admit::answers::attested(d.req, bytes, id),
        None => true,
    })
}

/// Where the claim `c` goes back to the queue as attempt `attempt`
/// (`ledger::queue::requeue_place`), the rejection of a file that gave way
/// to it planned; `None` where nowhere is free now.
fn requeue_place(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    c: &ClaimedTask,
    attempt: u32,
) -> Result<Option<String>, GitError> {
    let give_way = super::admit::give_way(d.req, d.tip);
    let give_way = give_way.as_ref().map(|g| g as &dyn GiveWay);
    let (node, now) = (d.req.node, d.req.now);
    let plans = [&d.edits];
    let found = queue::requeue_place(repo, d.tip, &plans, give_way, c, attempt, node, now)?;
    Ok(found.map(|(to, given_way)| {
        if let Some(r) = given_way {
            d.rejected(r);
        }
        to
    }))
}

/// A requeue with nowhere to go, where each of its seven places holds a
/// task of its id (copies pushed again, which the claim holds back: a copy
/// of a claimed task is not claimed): the claim ends as `abandoned`, as
/// the reap ends an orphaned claim so, and the copies run. Kept, it would
/// hold them back, and the node's `--drain`, for good. Whether it ended.
fn ended_for_copies(repo: &GridRepo, d: &mut Draft<'_>, c: &ClaimedTask) -> Result<bool, GitError> {
    let id = &c.task.task_id;
    let places = queue::requeue_places(&c.task, c.arrival());
    let rules = d.req.rules;
    if !queue::all_hold_tasks_of(repo, d.tip, &[&d.edits], &places, id, rules)? {
        return Ok(false);
    }
    let error = format!(
        "abandoned after {}, the last on {}: it cannot go back to the queue, as its lane, the inbox and the next minutes of its lane each hold another task of its id, which run instead",
        attempts(c.claim.attempt),
        d.req.node
    );
    let result = abandoned(c, d.req.node, d.req.now, error);
    d.summary.push(format!("abandon {id}"));
    d.results.push(PendingResult::unsigned(
        d.req.node.clone(),
        id.to_string(),
        result,
    ));
    Ok(true)
}

/// A requeue with nowhere to go now (`queue::requeue_to`: copies pushed
/// again hold each place it may take): the claim stays, and the outbox
/// entry waits for a later sync.
fn stay_claimed(d: &mut Draft<'_>, touched: &mut BTreeSet<Id>, source: &[u8], id: &Id) {
    d.edits.remove(source);
    touched.remove(id);
    d.report.requeues_waiting += 1;
    tracing::warn!(task_id = %id, "the requeue waits: each place it may take holds another file of its id");
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
            ran: None,
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
            signed: None,
        });
        let requeue = entry(Finish::Requeue {
            reason: "engine".into(),
            preempted: false,
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
        let Finish::Result { result: r, .. } = &result.finish else {
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
                Finish::Result { result: invalid_result("t.json", &me_id, &stamp(0), "x"), signed: None }
            } else {
                Finish::Requeue { reason: "r".into(), preempted: false }
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
}
