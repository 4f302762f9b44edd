//! Moving on the tasks that wait for others (`ledger::deps`), in the plan
//! that writes their parents' results: a result landed, an entry rejected
//! as invalid, a claim abandoned, a waiting task failed in turn. The tasks
//! this plan files under `blocked/` itself are looked at with those waiting
//! at the tip, so that a parent and its dependant pushed by hand in one
//! commit are settled in one commit.

use std::collections::{BTreeMap, BTreeSet};

use super::Draft;
use crate::git::{Edit, EntryMode, GitError, GridRepo};
use crate::grid::Id;
use crate::ledger::deps::{self, Finished};
use crate::ledger::room::GiveWay;

/// Move on the tasks waiting for those this plan writes results of (and,
/// with a reap, sweep every waiting task whose parent is gone).
pub(super) fn release(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(), GitError> {
    if d.results.is_empty() && !d.req.reap && d.waiting.is_empty() {
        return Ok(());
    }
    // Failures named first: a dependant failed now names the file its
    // parent's result lands in (a suffixed name where another file has
    // its own). A completed parent is named by no dependant, and a drain
    // of tasks that complete asks git nothing more.
    let mut failures: Vec<_> = d
        .results
        .iter_mut()
        .filter(|r| !r.result.status.is_success())
        .collect();
    crate::ledger::results::name_results(repo, d.tip, d.req.now, &mut failures)?;
    // In `enforce`, a completed result lands here as it counts anywhere:
    // signed by a node the policy lists. This node's own, once its key is
    // revoked, released the task after it here (a helper's trust session),
    // where no other enforcing node would.
    let enforced = super::admit::enforced(d.req);
    let counts_here = |id: &Id, r: &crate::ledger::results::PendingResult| {
        !enforced
            || !r.result.status.is_success()
            || r.signed
                .as_deref()
                .is_some_and(|b| super::admit::result_counts(d.req, id, b))
    };
    let finished: BTreeMap<Id, Finished> = d
        .results
        .iter()
        .filter_map(|r| Some((Id::parse(&r.result.task_id).ok()?, r)))
        .filter(|(id, r)| counts_here(id, r))
        .map(|(id, r)| (id, Finished::of(r)))
        .collect();
    let claimed: BTreeSet<Id> = d
        .report
        .claimed
        .iter()
        .map(|c| c.task.task_id.clone())
        .collect();
    let queue = d.queue(repo)?;
    let req = d.req;
    let counts = |id: &Id, bytes: &[u8]| super::admit::result_counts(req, id, bytes);
    let give_way = super::admit::give_way(req, d.tip);
    let input = deps::ReleaseInput {
        node: d.req.node,
        now: d.req.now,
        rules: d.req.rules,
        finished: &finished,
        queue: &queue,
        claimed: &claimed,
        filed: &d.waiting,
        sweep: d.req.reap,
        counts: req.trust.is_some().then_some(&counts),
        earlier: &d.edits,
        give_way: give_way.as_ref().map(|g| g as &dyn GiveWay),
    };
    let planned = deps::release(repo, d.tip, &input)?;
    // What it made ready: the waiting tasks' blobs put in their lanes.
    let lanes = format!("{}/", crate::grid::layout::LANES);
    d.ready
        .extend(planned.edits.iter().filter_map(|(path, e)| match e {
            Edit::Object {
                mode: EntryMode::File,
                oid,
            } if path.starts_with(lanes.as_bytes()) => Some((path.clone(), oid.clone())),
            _ => None,
        }));
    // A task this very plan filed under `blocked/` and moves on now: the
    // delete replaces the filing (fast-import ignores the delete of a path
    // the tip does not have, and removes one it does: a file of the same
    // name pushed there by hand).
    d.fold(planned);
    Ok(())
}

/// The tasks this node holds (claimed before, or in this plan) that others
/// wait for under `blocked/` at the tip or in this plan: their results go
/// at once, not with the node's next claim (`Worker::others_wait`), as
/// each link of a graph would otherwise wait that long. One listing of
/// `blocked/`'s top, and only by a node holding something.
pub(super) fn awaited(repo: &GridRepo, d: &Draft<'_>) -> Result<BTreeSet<Id>, GitError> {
    let claimed = d.report.claimed.iter().map(|c| &c.task.task_id);
    let held: BTreeSet<&Id> = d.req.held.iter().chain(claimed).collect();
    if held.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut parents: BTreeSet<Id> = repo
        .list_dir(d.tip, crate::grid::layout::BLOCKED)?
        .iter()
        .filter(|e| e.mode == crate::git::EntryMode::Tree)
        .filter_map(|e| Id::parse(std::str::from_utf8(&e.name).ok()?).ok())
        .collect();
    parents.extend(d.waiting.iter().map(|b| b.parent.clone()));
    parents.retain(|p| held.contains(p));
    Ok(parents)
}
