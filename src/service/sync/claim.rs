//! Claiming: the node's fair share of the queue (or more, by what it can
//! run in a few syncs), with invalid entries met on the way moved to
//! `failed/`; and what the peers' records say about their slots.
//!
//! In steps, each its own function so that a rule can be added to one
//! without touching the others: list the queue, look at the peers, decide
//! how many and in which order, read the sample (bounded), judge each
//! candidate ([`consider`]), and claim the ones taken ([`take`]).

use std::collections::BTreeSet;

use super::{Draft, KEEP, SyncRequest};
use crate::git::repo::{Blob, EntryMode, GridRepo, TreeEntry};
use crate::git::{Edit, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::task::EntryKind;
use crate::grid::{Id, NodeRecord, NodeStatus, Task, TaskError, layout};
use crate::ledger::results;
use crate::service::pace;

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

/// Claim up to `want_claims` valid tasks, or the node's fair share if more;
/// invalid entries met on the way go to `failed/`. Surveying only, look at
/// the queue and the peers and claim nothing.
pub(super) fn claim(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    let claiming = req.want_claims > 0 && req.queue_empty_at.is_none_or(|t| t != d.tip);
    if !claiming && !req.survey {
        return Ok(());
    }
    let mut queue = list_queue(repo, d.tip, touched)?;
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
    let want = how_many(queue.len(), req, &peers, d);
    let sample = queue.len().min(want * 2 + 4);
    let (looked_at, rest) = queue.split_at(sample);
    let mut left = rest.len();
    let mut read = read_sample(repo, looked_at, req)?;
    // A task claimed ahead waits for a slot: for the tasks claimed before
    // it in this batch (the wait for tasks already running or waiting is in
    // `claim_grace`). Its deadline allows for their timeouts, so that a
    // healthy node's batch is never taken for orphaned.
    let mut queued_before = chrono::Duration::zero();
    for entry in looked_at {
        match consider(entry, read.next_for(entry), req) {
            Verdict::Claimable(task) if d.report.claimed.len() < want => {
                queued_before = take(d, entry, task, queued_before);
            }
            Verdict::Claimable(_) | Verdict::Later => left += 1,
            Verdict::Reject(e) => d.reject(layout::QUEUE, entry, &e),
        }
    }
    d.report.queue_left = left;
    Ok(())
}

/// The queue's entries at `tip`, but for the tasks this plan has already
/// dealt with (outbox landings).
fn list_queue(
    repo: &GridRepo,
    tip: &str,
    touched: &BTreeSet<Id>,
) -> Result<Vec<TreeEntry>, GitError> {
    Ok(repo
        .list_dir(tip, layout::QUEUE)?
        .into_iter()
        .filter(|e| e.name != KEEP)
        .filter(|e| {
            let id = layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok());
            !id.is_some_and(|id| touched.contains(&id))
        })
        .collect())
}

/// How many tasks to claim: `want_claims`, or the node's fair share of a
/// queue of `queued` if more (up to `share_up_to`).
fn how_many(queued: usize, req: &SyncRequest<'_>, peers: &Peers, d: &mut Draft<'_>) -> usize {
    if req.share_up_to == 0 {
        return req.want_claims;
    }
    let share = pace::fair_share(queued, req.slots, peers.live_slots);
    d.report.fair_share = share;
    req.want_claims.max(share.min(req.share_up_to))
}

/// The sample's blobs, read in one bounded call: only files are read, and
/// none bigger than a task may be (a bigger one is refused by its size
/// alone).
struct Sample(std::vec::IntoIter<Blob>);

impl Sample {
    /// What was read for `entry`, the next entry of the sample in order.
    fn next_for(&mut self, entry: &TreeEntry) -> Blob {
        if is_file(entry.mode) {
            self.0.next().unwrap_or(Blob::Missing)
        } else {
            // Symlinks, trees and submodules are refused by their kind,
            // unread.
            Blob::Data(Vec::new())
        }
    }
}

fn read_sample(
    repo: &GridRepo,
    entries: &[TreeEntry],
    req: &SyncRequest<'_>,
) -> Result<Sample, GitError> {
    let files: Vec<String> = entries
        .iter()
        .filter(|e| is_file(e.mode))
        .map(|e| e.oid.clone())
        .collect();
    let blobs = repo.read_objects(&files, req.rules.max_file_bytes as u64)?;
    Ok(Sample(blobs.into_iter()))
}

/// What becomes of one candidate.
enum Verdict {
    /// A valid task this node may claim.
    Claimable(Task),
    /// Broken: to `failed/`, with this reason.
    Reject(TaskError),
    /// Not decided in this round (not read: budget spent, or gone).
    Later,
}

/// Judge one queue entry from what was read of it.
fn consider(entry: &TreeEntry, blob: Blob, req: &SyncRequest<'_>) -> Verdict {
    let content = match blob {
        Blob::Data(b) => b,
        Blob::TooBig { size, cap } => {
            return Verdict::Reject(TaskError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max: usize::try_from(cap).unwrap_or(usize::MAX),
            });
        }
        _ => return Verdict::Later,
    };
    match Task::from_entry(
        &entry.name_lossy(),
        entry_kind(entry.mode),
        &content,
        req.rules,
    ) {
        Ok(task) => Verdict::Claimable(task),
        Err(e) => Verdict::Reject(e),
    }
}

/// Claim `task` (queue entry `entry`): out of the queue, into
/// `in_progress/` with a claim block naming this node. `queued_before` is
/// the time the tasks claimed before it in this batch may take; returns it
/// with this task's.
fn take(
    d: &mut Draft<'_>,
    entry: &TreeEntry,
    task: Task,
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
    queued_before
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
