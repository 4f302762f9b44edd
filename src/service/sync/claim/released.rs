//! The tasks this very plan releases, claimed in it: where the node has
//! room and nothing else queued to take, a dependant whose last parent's
//! result the plan lands starts with that commit, not a round later. Each
//! link of a chain took two pushes (`complete c2, release c3`, then
//! `claim c3`): behind a forge 100 ms away, 1.5 s from one link's end to
//! the next one's start, for tasks of 1 s.

use super::{Verdict, consider, inputs_of, take};
use crate::git::{Blob, EntryMode, GitError, GridRepo, TreeEntry};
use crate::grid::Id;
use crate::grid::layout::{self, Place};
use crate::ledger::result_index::ResultIndex;
use crate::service::sync::{Draft, admit};

/// Claim what this plan released (`Draft::ready`), up to the room the
/// node asked to claim and did not fill from the queue.
pub(in crate::service::sync) fn claim_released(
    repo: &GridRepo,
    d: &mut Draft<'_>,
) -> Result<(), GitError> {
    let req = d.req;
    let mut room = req.want_claims.saturating_sub(d.report.claimed.len());
    // Holding claims not started, or taking some from the queue in this
    // plan, below what this plan released (the next link of a chain of
    // higher work, released by this node's own result): as many as those,
    // to start before them (`Slots::sort_waiting`). Else each link waited
    // out a low task (a helper's sweep: one node, a chain of p90 beside
    // p10 work, started `h2 low0 h3 low1 h4`).
    let claimed_low = (d.report.claimed.iter())
        .map(|c| c.effective_priority(req.now))
        .min();
    let below = req.preempt_below.into_iter().chain(claimed_low).min();
    let above = below.filter(|_| room == 0 || d.report.queue_left > 0);
    if above.is_some() {
        room = room.max(req.preempt_up_to + d.report.claimed.len());
    }
    // Something else left queued: the claim's order chose it over these.
    if room == 0 || d.ready.is_empty() || (above.is_none() && d.report.queue_left > 0) {
        return Ok(());
    }
    let ready = std::mem::take(&mut d.ready);
    let mut index: Option<ResultIndex> = None;
    for (path, oid) in ready {
        if room == 0 {
            break;
        }
        let rel = path.strip_prefix(format!("{}/", layout::LANES).as_bytes());
        let Some(Ok((place, name))) = rel.map(Place::parse) else {
            continue;
        };
        if req.labels.serves(&place.class).is_err()
            || above.is_some_and(|held| super::level_of(&place, req) <= held)
        {
            continue;
        }
        let entry = TreeEntry {
            mode: EntryMode::File,
            oid: oid.clone(),
            name: name.to_vec(),
        };
        let blob = repo
            .read_objects(&[oid], req.rules.max_file_bytes as u64)?
            .pop()
            .unwrap_or(Blob::Missing);
        let Verdict::Claimable(task) = consider(repo, d, &entry, name, blob)? else {
            continue;
        };
        if index.is_none() {
            index = Some(ResultIndex::list(repo, d.tip)?);
        }
        let counts = |id: &Id, bytes: &[u8]| admit::result_counts(req, id, bytes);
        let Ok(inputs) = inputs_of(
            repo,
            index.as_ref().expect("listed above"),
            &task,
            req.trust.is_some().then_some(&counts),
            &d.results,
        )?
        else {
            continue;
        };
        let before = d
            .report
            .claimed
            .iter()
            .map(|c| chrono::Duration::seconds(c.task.timeout_seconds as i64))
            .sum();
        take(d, (&path, None), task, place.batch.minute, inputs, before);
        room -= 1;
    }
    Ok(())
}
