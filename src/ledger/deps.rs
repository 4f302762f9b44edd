//! Tasks that run `after` others, over a fetched tip: where they wait, and
//! what releases them. Shared by the worker's sync and the grid tools.
//!
//! A waiting task sits at `tasks/blocked/<parent>/<task>.json`, under the
//! first of its parents not finished yet; no node lists `blocked/` to
//! claim, so it cannot run early. Two things move it on:
//!
//! - **The parent's result** (the fast path): any plan that writes a result
//!   (a worker landing one, a reject, an abandon) looks at
//!   `blocked/<that task>/` in the same commit and moves each task found
//!   there on: to its lane when every parent completed, under its next
//!   unfinished parent, or to `failed/` as `dependency_failed` naming the
//!   parent that did not complete (as `invalid`, where its `after` names a
//!   task not on the grid). A task failed so releases its own waiting
//!   tasks in turn. A result that did not complete also looks at the
//!   tasks waiting under other parents: any of them may run after it.
//!   A failure while another copy of the parent is still to run
//!   (queued, running, waiting, claimed or written in this commit:
//!   `ledger::blocked::Copies`) is the end of that copy, not of the task:
//!   an invalid file pushed under a queued task's id would otherwise fail
//!   the task's dependants. Tasks the plan files under `blocked/` itself
//!   (from the inbox) are looked at as if there already, and at once, by
//!   all of their parents (one not on the grid makes a task invalid
//!   wherever it stands in `after`); cycles through them are invalid, and
//!   so are the tasks of a loop that a move under the next parent would
//!   close, each of them in that plan. A copy of a queued or running task
//!   closes no cycle.
//! - **The sweep** (the safety net), with each reap: every `blocked/<p>/`
//!   whose `p` is no longer queued, waiting or running is looked at the
//!   same way (a result written by an older worker, a task pushed under a
//!   finished parent by hand), and waiting tasks that wait for each other
//!   in a cycle are invalid, naming it.
//!
//! Both are bounded: at most [`MAX_PER_PLAN`] waiting tasks are looked at in
//! one plan; the rest are left for the next.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::git::{Blob, EntryMode, GridRepo, TreeEntry};
use crate::git::{Edit, Edits, GitError};
use crate::grid::deps::{self, Next, Parent};
use crate::grid::task::EntryKind;
use crate::grid::{Id, ResultStatus, Task, TaskRules, layout};
use crate::time::Timestamp;

use super::Moves;
use super::blocked::{BlockedAt, BlockedEntry, Copies};
use super::finished::status_name;
pub use super::finished::{Finished, never_ran};
use super::queue::{QueueAt, requeue_path};
use super::result_index::{Counts, ResultIndex};
use super::results::{PendingResult, Rejection};
use super::room::{GiveWay, Mover, Room, room_for};

/// Waiting tasks looked at in one plan, at most.
pub const MAX_PER_PLAN: usize = 512;

/// Who moves waiting tasks on, and what it knows.
pub struct ReleaseInput<'a> {
    pub node: &'a Id,
    pub now: Timestamp,
    pub rules: &'a TaskRules,
    /// Results this plan writes, by task.
    pub finished: &'a BTreeMap<Id, Finished>,
    /// The queue at the tip (for what is pending).
    pub queue: &'a QueueAt,
    /// Tasks this plan takes out of the queue or `in_progress/` without a
    /// result yet (claims): still pending.
    pub claimed: &'a BTreeSet<Id>,
    /// Tasks this plan files under `blocked/` (from the inbox, or a lane
    /// by hand), not at the tip yet: judged with those there, and at once
    /// if their parent is not pending (it has a result, or none is coming).
    pub filed: &'a [BlockedEntry],
    /// Also look at every waiting task whose parent is no longer pending,
    /// and for cycles (the reap's sweep).
    pub sweep: bool,
    /// Whether a completed result counts (a node's trust, enforced): one
    /// that does not is no result, and its task is as good as pending.
    pub counts: Option<Counts<'a>>,
    /// The edits of the commit's plans before this one: a move writes over
    /// none of theirs either.
    pub earlier: &'a Edits,
    /// A node's say over a file that holds the place a task is released
    /// to (`room::GiveWay`); the tools have none.
    pub give_way: Option<&'a dyn GiveWay>,
}

/// What the grid's branch says of tasks, for [`Parent`].
struct Ledger {
    pending: BTreeSet<Id>,
    /// id -> its result: completed?, its file, and how it ended (read for
    /// those that did not complete).
    results: BTreeMap<Id, (bool, String, Option<String>)>,
}

/// Move on the waiting tasks of the parents in `input.finished` (and, in a
/// sweep, of every parent no longer pending).
pub fn release(repo: &GridRepo, tip: &str, input: &ReleaseInput<'_>) -> Result<Moves, GitError> {
    let mut out = Moves::default();
    if input.finished.is_empty() && !input.sweep && input.filed.is_empty() {
        return Ok(out);
    }
    // The cheap look first: which parents have anything waiting at all.
    let top: Vec<TreeEntry> = repo
        .list_dir(tip, layout::BLOCKED)?
        .into_iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes())
        .collect();
    let parents: BTreeSet<Id> = top
        .iter()
        .filter(|e| e.mode == EntryMode::Tree)
        .filter_map(|e| {
            std::str::from_utf8(&e.name)
                .ok()
                .and_then(|n| Id::parse(n).ok())
        })
        .chain(input.filed.iter().map(|b| b.parent.clone()))
        .collect();
    let relevant = parents.iter().any(|id| input.finished.contains_key(id))
        || input.finished.values().any(|f| !f.success);
    // A cycle through a task filed now needs something waiting for it.
    let cycles = input.sweep
        || input
            .filed
            .iter()
            .any(|f| f.child().is_some_and(|c| parents.contains(&c)));
    if input.filed.is_empty() && (top.is_empty() || (!relevant && !input.sweep)) {
        return Ok(out);
    }
    let mut blocked = BlockedAt::list(repo, tip)?;
    let filed: BTreeSet<&[u8]> = input.filed.iter().map(|f| &f.entry.name[..]).collect();
    blocked
        .entries
        .retain(|b| !filed.contains(&b.entry.name[..]));
    blocked.entries.extend(input.filed.iter().cloned());
    let waiting = blocked.children();
    // Under whom each waits, as this plan moves them.
    let mut under: BTreeMap<Id, Id> = blocked
        .entries
        .iter()
        .filter_map(|b| Some((b.child()?, b.parent.clone())))
        .collect();
    let running = repo.list_dir(tip, layout::IN_PROGRESS)?;
    let mut pending: BTreeSet<Id> = input.queue.paths().into_keys().collect();
    pending.extend(
        running
            .iter()
            .filter_map(|e| layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok())),
    );
    pending.extend(input.claimed.iter().cloned());
    pending.extend(waiting.iter().cloned());
    let copies = Copies::new(
        input.queue,
        &running,
        &blocked,
        input.claimed,
        input.earlier,
    );
    // A file judged invalid ends its task only where no other copy of it
    // is still to run: a file pushed under a queued task's id fails that
    // file, and the task's dependants wait for the task.
    let finished: BTreeMap<Id, Finished> = input
        .finished
        .iter()
        .filter(|(id, f)| f.ends_task(|| copies.survives(id, &Edits::new())))
        .map(|(id, f)| (id.clone(), f.clone()))
        .collect();
    for id in finished.keys() {
        pending.remove(id);
    }

    // Whose waiting tasks to look at: the parents finished now, in a sweep
    // every parent that is not pending, and every task filed now, by all
    // of its parents: filed under the first, one it names that is not on
    // the grid (or that failed) went unseen until the first had finished
    // (a helper's sweep: `after: ["P", "ghost"]` waited for P, where
    // `["ghost", "P"]` was invalid at once).
    let looks = |b: &&BlockedEntry| {
        filed.contains(&b.entry.name[..])
            || finished.contains_key(&b.parent)
            || (input.sweep && !pending.contains(&b.parent))
    };
    let mut work: Vec<&BlockedEntry> = blocked.entries.iter().filter(looks).collect();
    // A task ended now without completing ends the tasks after it, which
    // may wait under another parent still running (under the first of
    // their parents not finished): the others waiting are looked at too,
    // after those above, within the plan's bound. Else a map-reduce whose
    // one map failed waits for its longest map to fail.
    if finished.values().any(|f| !f.success) {
        work.extend(blocked.entries.iter().filter(|b| !looks(b)));
    }
    // Waiting for each other: each waits under one parent, so a cycle is a
    // loop of waiting tasks; none of them can ever run.
    // One text a cycle, shared by its members.
    let mut cycle_of: BTreeMap<Id, Rc<str>> = BTreeMap::new();
    if cycles {
        // A file under `blocked/` of a task that also waits in the queue
        // or runs (a copy pushed there) closes no loop: the task runs.
        let outside = copies.outside_blocked();
        let owned: Vec<(Id, Id)> = blocked
            .entries
            .iter()
            .filter_map(|b| Some((b.child()?, b.parent.clone())))
            .filter(|(c, _)| !outside.contains(c))
            .collect();
        let refs: BTreeMap<&Id, Vec<&Id>> = owned.iter().map(|(c, p)| (c, vec![p])).collect();
        for cycle in deps::cycles(&refs) {
            let error: Rc<str> = deps::GraphError::Cycle(cycle.clone()).to_string().into();
            for id in cycle {
                cycle_of.insert(id, error.clone());
            }
        }
        work.extend(blocked.entries.iter().filter(|b| {
            b.child().is_some_and(|c| cycle_of.contains_key(&c))
                && !finished.contains_key(&b.parent)
                && pending.contains(&b.parent)
        }));
    }
    for entry in &blocked.misplaced {
        if out.invalid.len() >= MAX_PER_PLAN {
            out.more = true;
            break;
        }
        let why = "is not where a waiting task can be: tasks/blocked/<the task it waits for>/<task>.json is";
        reject(&mut out, entry, why, input);
    }
    if work.is_empty() {
        return Ok(out);
    }

    let mut ledger = Ledger {
        pending,
        results: BTreeMap::new(),
    };
    let index = ResultIndex::list(repo, tip)?;
    // Parents to look up among the results: those not pending and not
    // finished in this plan.
    let mut unknown_parents: BTreeSet<Id> = BTreeSet::new();
    let mut failed_now = finished;
    let mut done: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut queue: std::collections::VecDeque<BlockedEntry> = work.into_iter().cloned().collect();
    let mut looked = 0;
    while let Some(b) = queue.pop_front() {
        if looked >= MAX_PER_PLAN {
            out.more = true;
            break;
        }
        if !done.insert(b.entry.name.clone()) {
            continue;
        }
        looked += 1;
        let blob = if matches!(b.entry.mode, EntryMode::File | EntryMode::Executable) {
            repo.read_objects(
                std::slice::from_ref(&b.entry.oid),
                input.rules.max_file_bytes as u64,
            )?
            .pop()
            .unwrap_or(Blob::Missing)
        } else {
            Blob::Data(Vec::new())
        };
        let bytes = match blob {
            Blob::Data(d) => d,
            Blob::TooBig { size, cap } => {
                let e = crate::grid::TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(cap).unwrap_or(usize::MAX),
                };
                reject(&mut out, &b.entry, &e.to_string(), input);
                continue;
            }
            _ => continue,
        };
        let task = match Task::from_entry(
            &b.file_name(),
            EntryKind::from(b.entry.mode),
            &bytes,
            &input.rules.to_read_by(),
        ) {
            Ok(t) => t,
            Err(e) => {
                reject(&mut out, &b.entry, &e.to_string(), input);
                continue;
            }
        };
        let id = task.task_id.clone();
        // Moved under another parent earlier in this plan, and looked at
        // again (that parent failed since): this decision replaces that
        // move.
        if let Some(q) = under.get(&id).filter(|q| **q != b.parent) {
            out.edits.remove(layout::blocked_file(q, &id).as_bytes());
            // Its file stays where it is unless this decision moves it:
            // every decision below that moves it deletes it again.
            out.edits.remove(&b.path());
            out.moved.retain(|(t, _)| t != id.as_str());
        }
        let next = match cycle_of.get(&id) {
            Some(error) => Next::Invalid {
                error: error.to_string(),
            },
            None => {
                // Look the parents up among the results once, together.
                let lookup: Vec<Id> = task
                    .after()
                    .iter()
                    .filter(|p| {
                        !failed_now.contains_key(*p)
                            && !ledger.pending.contains(*p)
                            && !ledger.results.contains_key(*p)
                            && !unknown_parents.contains(*p)
                    })
                    .cloned()
                    .collect();
                if !lookup.is_empty() {
                    let found = index.find_counted(repo, &lookup, input.counts)?;
                    for p in lookup {
                        match found.get(&p) {
                            // Not attested: as if still to finish.
                            Some(r) if !r.counted => {
                                ledger.pending.insert(p);
                            }
                            Some(r) => {
                                let status = r.status.map(status_name);
                                ledger
                                    .results
                                    .insert(p, (r.completed, r.file.clone(), status));
                            }
                            None => {
                                unknown_parents.insert(p);
                            }
                        }
                    }
                }
                deps::next(task.after(), |p| {
                    if let Some(f) = failed_now.get(p) {
                        return if f.success {
                            Parent::Completed
                        } else {
                            Parent::Failed {
                                status: Some(f.status.clone()),
                                file: f.file.clone(),
                            }
                        };
                    }
                    if ledger.pending.contains(p) {
                        return Parent::Pending;
                    }
                    match ledger.results.get(p) {
                        Some((true, ..)) => Parent::Completed,
                        Some((false, file, status)) => Parent::Failed {
                            status: status.clone(),
                            file: file.clone(),
                        },
                        None => Parent::Unknown,
                    }
                })
            }
        };
        // A move under another parent that closes a loop of waiting tasks
        // (the loop the `after`s of tasks pushed by hand made, found only
        // as they move on): none of them can ever run.
        let next = match next {
            Next::Wait(p) if p != b.parent => match deps::loop_through(&under, &id, &p) {
                Some(cycle) => {
                    let error = deps::GraphError::Cycle(cycle.clone()).to_string();
                    let shared: Rc<str> = error.as_str().into();
                    cycle_of.extend(cycle.into_iter().map(|c| (c, shared.clone())));
                    Next::Invalid { error }
                }
                None => Next::Wait(p),
            },
            next => next,
        };
        // A move never writes over a file: one of its id where it goes is
        // another copy of it (pushed again), which would vanish. It stays
        // where it is until that place is free, and a later plan moves it.
        let to = match &next {
            Next::Ready => Some(requeue_path(&task, input.now)),
            Next::Wait(p) if p != &b.parent => Some(layout::blocked_file(p, &id)),
            _ => None,
        };
        let room = match &to {
            Some(to) => {
                let mover = || {
                    Ok(Mover {
                        blob: Some(b.entry.oid.clone()),
                        bytes: bytes.clone(),
                    })
                };
                let plans = [input.earlier, &out.edits];
                let (node, now) = (input.node, input.now);
                room_for(repo, tip, &plans, to, input.give_way, mover, node, now)?
            }
            None => Room::Free,
        };
        match room {
            Room::Free => {}
            Room::GivenWay(r) => out.reject(*r),
            Room::Taken => {
                let to = to.as_deref().unwrap_or_default();
                out.moved.push((
                    id.to_string(),
                    format!(
                        "left under `{}`: {to} holds another file of its id",
                        b.parent
                    ),
                ));
                ledger.pending.insert(id);
                continue;
            }
        }
        match &next {
            Next::Wait(p) => under.insert(id.clone(), p.clone()),
            _ => under.remove(&id),
        };
        // A task not waiting for the parent it is filed under (pushed
        // there by hand) is judged all the same: by its own `after`.
        let invalid = matches!(next, Next::Invalid { .. });
        match next {
            Next::Ready => {
                out.edits.insert(b.path(), Edit::Delete);
                let to = to.expect("a lane path, free");
                out.edits.insert(
                    to.clone().into_bytes(),
                    Edit::Object {
                        mode: EntryMode::File,
                        oid: b.entry.oid.clone(),
                    },
                );
                out.summary.push(format!("release {id}"));
                out.moved.push((
                    id.to_string(),
                    format!("queued at {to}: every dependency completed"),
                ));
                ledger.pending.insert(id);
            }
            Next::Wait(p) if p == b.parent => {}
            Next::Wait(p) => {
                out.edits.insert(b.path(), Edit::Delete);
                out.edits.insert(
                    to.expect("a place under `p`, free").into_bytes(),
                    Edit::Object {
                        mode: EntryMode::File,
                        oid: b.entry.oid.clone(),
                    },
                );
                out.moved
                    .push((id.to_string(), format!("moved to wait for `{p}`")));
            }
            Next::Fail { error, .. } | Next::Invalid { error } => {
                out.edits.insert(b.path(), Edit::Delete);
                let (status, error, how) = match invalid {
                    // Named by the file it was judged in, as every
                    // `invalid` result is.
                    true => (
                        ResultStatus::Invalid,
                        format!("{}: {error}", String::from_utf8_lossy(&b.named())),
                        "reject",
                    ),
                    false => (ResultStatus::DependencyFailed, error, "fail"),
                };
                let result = never_ran(&task, input.node, input.now, status, error.clone());
                let pending = PendingResult::unsigned(input.node.clone(), id.to_string(), result);
                // Its own waiting tasks, in turn, unless another copy of it
                // is still to run (a copy pushed under a wrong parent, failed
                // here, while the task waits in its lane).
                let ended = !copies.survives(&id, &out.edits);
                if ended {
                    failed_now.insert(id.clone(), Finished::of(&pending));
                    ledger.pending.remove(&id);
                }
                out.results.push(pending);
                out.summary.push(format!("{how} {id} (dependency)"));
                let word = if invalid {
                    "invalid"
                } else {
                    "dependency_failed"
                };
                out.moved.push((
                    id.to_string(),
                    format!("moved to {} as {word}: {error}", layout::FAILED),
                ));
                if ended {
                    // Looked at and left already, maybe: again, now. Not
                    // one moved or failed (a loop's members fail each
                    // other): a task ends once.
                    // Those this plan moved under it too (a loop found
                    // as its members move on: the one moved first waited
                    // under the one failed second, until a sweep).
                    let moved_under = |c: &BlockedEntry| {
                        c.parent != id && c.child().is_some_and(|ch| under.get(&ch) == Some(&id))
                    };
                    for c in blocked
                        .entries
                        .iter()
                        .filter(|c| c.parent == id || moved_under(c))
                    {
                        if moved_under(c) || !matches!(out.edits.get(&c.path()), Some(Edit::Delete))
                        {
                            done.remove(&c.entry.name);
                        }
                        queue.push_back(c.clone());
                    }
                }
            }
        }
    }
    // Only while plans move something: tasks that stay (a parent's result
    // not counted, a place taken) would make every sync a sweep.
    out.more &= !(out.moved.is_empty() && out.results.is_empty());
    Ok(out)
}

fn reject(out: &mut Moves, entry: &TreeEntry, why: &str, input: &ReleaseInput<'_>) {
    out.reject(Rejection::of(
        layout::BLOCKED,
        entry,
        &why,
        input.node,
        input.now,
    ));
}
