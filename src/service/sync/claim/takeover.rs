//! Taking over a peer's claim for this node, as the steal does of a busy
//! peer's line and `unanswered.rs` of claims a peer left unanswered: the
//! claim renamed, naming the peer's (`Claim::taken_from`).

use std::collections::BTreeSet;

use super::judge::{Verdict, handed_back};
use super::take::take;
use crate::git::{GitError, GridRepo};
use crate::grid::claim::{ClaimedTask, TakenFrom};
use crate::grid::{Id, layout};
use crate::service::sync::Draft;

/// Take over the claim `c` (of task `id`) for this node, naming the
/// peer's claim it was (`Claim::taken_from`), if this node would claim the
/// task from the queue: judged as it judges what is queued (its labels,
/// its trust); not a task that reads inputs, which a claim from the lanes
/// gathers. What this node's claims have queued before it, if taken.
pub(super) fn take_over(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
    (id, c): (&Id, &ClaimedTask),
    queued_before: chrono::Duration,
) -> Result<Option<chrono::Duration>, GitError> {
    let Some(candidate) = handed_back(repo, d, c, c.requeued(c.claim.attempt))? else {
        return Ok(None);
    };
    let Some(Verdict::Claimable(task)) = candidate.judged else {
        return Ok(None);
    };
    if !task.after().is_empty() {
        return Ok(None);
    }
    let from = layout::in_progress_file(id).into_bytes();
    let was = TakenFrom {
        node_id: c.claim.node_id.clone(),
        claimed_at: c.claim.claimed_at.clone(),
    };
    let at = (&from[..], Some(was));
    let queued_before = take(d, at, task, c.arrival(), Vec::new(), queued_before);
    touched.insert(id.clone());
    Ok(Some(queued_before))
}
