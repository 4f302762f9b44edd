//! The edits of a candidate decided: taking a task (out of the queue, into
//! `in_progress/` with a claim block, and the results it runs after as its
//! inputs), or moving a queue file unchanged to where it belongs (its lane,
//! or to wait under `blocked/`).

use crate::git::write::blob_id;
use crate::git::{Edit, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::claim::{ClaimedTask, TakenFrom};
use crate::grid::{Id, Task, layout};
use crate::ledger::blocked::BlockedEntry;
use crate::ledger::result_index::{Counts, ResultIndex};
use crate::ledger::results::PendingResult;
use crate::ledger::room::{Mover, Room, room_for};
use crate::service::sync::Draft;

/// Move the file at `from` (blob `oid`, unchanged: a signed task stays
/// signed) to `to`, if `to` is free (`ledger::room::is_free`): a file of
/// its id there is another copy of the task, which it must not replace,
/// and a file where one of its directories goes would be replaced too.
/// Else it stays where it is, for a later plan. Whether it moved.
pub(super) fn move_to(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    from: &[u8],
    to: &str,
    oid: &Oid,
    word: &str,
) -> Result<bool, GitError> {
    if !d.is_free(repo, to)? && !made_way(repo, d, to, oid)? {
        tracing::debug!(to = %crate::escape::Untrusted(to), "not moved: its place, or a directory of it, holds another file");
        return Ok(false);
    }
    d.edits.insert(from.to_vec(), Edit::Delete);
    d.edits.insert(
        to.as_bytes().to_vec(),
        Edit::Object {
            mode: EntryMode::File,
            oid: oid.clone(),
        },
    );
    let name = to.rsplit('/').next().unwrap_or(to);
    d.summary.push(format!(
        "{word} {}",
        layout::json_stem(name).unwrap_or(name)
    ));
    Ok(true)
}

/// Where `to` is taken: does the file there give way to the file `oid`
/// (`ledger::room::GiveWay`: this node enforces trust, runs `oid` and
/// would never run the other)? Then it is rejected in this plan, and
/// `to` is free.
fn made_way(repo: &GridRepo, d: &mut Draft<'_>, to: &str, oid: &Oid) -> Result<bool, GitError> {
    let Some(give_way) = super::super::admit::give_way(d.req, d.tip) else {
        return Ok(false);
    };
    let mover = || Mover::read(repo, oid, d.req.rules.max_file_bytes);
    let (node, now) = (d.req.node, d.req.now);
    let room = room_for(
        repo,
        d.tip,
        &[&d.edits],
        to,
        Some(&give_way),
        mover,
        node,
        now,
    )?;
    Ok(match room {
        Room::GivenWay(r) => {
            d.rejected(*r);
            true
        }
        Room::Free | Room::Taken => false,
    })
}

/// Move the task `id` (the file at `from`, blob `oid`) to wait under
/// `parent` in `blocked/`; the plan's release looks at it there
/// (`ledger::deps`).
pub(super) fn wait_under(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    from: &[u8],
    parent: &Id,
    id: &Id,
    oid: &Oid,
) -> Result<(), GitError> {
    let to = layout::blocked_file(parent, id);
    if !move_to(repo, d, from, &to, oid, "wait")? {
        return Ok(());
    }
    let name = format!("{parent}/{id}.json").into_bytes();
    d.waiting.push(BlockedEntry {
        entry: TreeEntry {
            mode: EntryMode::File,
            oid: oid.clone(),
            name,
        },
        parent: parent.clone(),
        filed_from: Some(from.to_vec()),
    });
    Ok(())
}

/// The results of the tasks `task` runs after, to mount as its inputs, if
/// every one completed (with a result that `counts`); else the first that
/// has not. A parent's completed result among `written` (what this plan
/// writes: a dependant claimed in the commit that releases it) is named
/// by the blob id the commit writes it under; the others are the tip's.
pub(super) fn inputs_of(
    repo: &GridRepo,
    index: &ResultIndex,
    task: &Task,
    counts: Option<Counts<'_>>,
    written: &[PendingResult],
) -> Result<Result<Vec<(Id, Oid)>, Id>, GitError> {
    let here = |p: &Id| {
        written
            .iter()
            .find(|r| r.result.task_id == p.as_str() && r.result.status.is_success())
    };
    let at_tip: Vec<Id> = task
        .after()
        .iter()
        .filter(|p| here(p).is_none())
        .cloned()
        .collect();
    let found = index.find_counted(repo, &at_tip, counts)?;
    Ok(task
        .after()
        .iter()
        .map(|p| match (here(p), found.get(p)) {
            (Some(r), _) => Ok((p.clone(), blob_id(&r.to_bytes()))),
            (None, Some(r)) if r.completed && r.counted => Ok((p.clone(), r.oid.clone())),
            _ => Err(p.clone()),
        })
        .collect())
}

/// Claim `task` (the queue file at `from`, or a peer's claim taken over
/// from it, `taken_from`): out of the queue, into `in_progress/` with a
/// claim block naming this node and the task's arrival. `queued_before`
/// is the time the tasks claimed before it in this batch may take;
/// returns it with this task's.
pub(super) fn take(
    d: &mut Draft<'_>,
    (from, taken_from): (&[u8], Option<TakenFrom>),
    task: Task,
    arrival: crate::time::Timestamp,
    inputs: Vec<(Id, Oid)>,
    queued_before: chrono::Duration,
) -> chrono::Duration {
    let req = d.req;
    let grace = if d.report.claimed.len() < req.start_now {
        req.claim_grace
    } else {
        req.claim_grace + queued_before
    };
    // Validated: at most max_timeout_seconds.
    let queued_before = queued_before + chrono::Duration::seconds(task.timeout_seconds as i64);
    let mut claimed = ClaimedTask::new(task, req.node, req.now, grace).arrived(arrival);
    claimed.claim.taken_from = taken_from;
    d.edits.insert(from.to_vec(), Edit::Delete);
    d.edits.insert(
        layout::in_progress_file(&claimed.task.task_id).into_bytes(),
        Edit::Put(claimed.to_bytes()),
    );
    d.summary.push(format!("claim {}", claimed.task.task_id));
    if !inputs.is_empty() {
        d.report.inputs.insert(claimed.task.task_id.clone(), inputs);
    }
    d.report.claimed.push(claimed);
    queued_before
}
