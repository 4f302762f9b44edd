//! Claiming: the node's fair share of the queue (or more, by what it can
//! run in a few syncs), with invalid entries met on the way moved to
//! `failed/`; and what the peers' records say about their slots.

use std::collections::BTreeSet;

use super::admit::{self, Admit};
use super::{Draft, KEEP, SyncRequest};
use crate::git::{Blob, EntryMode, GridRepo, Oid, TreeEntry};
use crate::git::{Edit, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::task::EntryKind;
use crate::grid::{Id, NodeRecord, NodeStatus, layout};
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
    admit::refresh(repo, d)?;
    // The queue, the claims and the nodes, in one listing.
    let not_touched = |e: &TreeEntry| {
        let id = layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok());
        e.name != KEEP && !id.is_some_and(|id| touched.contains(&id))
    };
    let [queue, in_progress, nodes]: [Vec<TreeEntry>; 3] = repo
        .list_dirs(d.tip, &[layout::QUEUE, layout::IN_PROGRESS, layout::NODES])?
        .try_into()
        .expect("three directories asked, three listed");
    let mut queue: Vec<TreeEntry> = queue
        .into_iter()
        .filter(|e| not_touched(e))
        // Not work for this node until its policy changes (trust).
        .filter(|e| !admit::skipped(d, &e.oid))
        .collect();
    let claimed = in_progress.iter().filter(|e| not_touched(e)).count();
    let peers = if queue.is_empty() && !req.survey {
        Peers::default()
    } else {
        peers(repo, nodes, req)?
    };
    d.report.idle_peer_slots = peers.idle_slots;
    d.report.live_peer_slots = peers.live_slots;
    if !claiming {
        d.report.queue_left = queue.len();
        return Ok(());
    }
    // A random pick spreads racing nodes over the queue a little; the real
    // contention is on the ref, which the transaction's backoff handles.
    fastrand::shuffle(&mut queue);
    let want = if req.share_up_to > 0 {
        // The work in the grid is what is queued and what is claimed but
        // not done (running, or waiting at some node): dividing all of it
        // gives each node the same share however late it comes, and a node
        // already holding its share takes no more.
        let share = pace::share_to_claim(
            queue.len() + claimed,
            req.holding,
            req.slots,
            peers.live_slots,
        );
        d.report.fair_share = share;
        let want = req.want_claims.max(share.min(req.share_up_to));
        // Where the queue cannot fill the idle peers' slots, take no more
        // than this node starts soon: the rest would go back to them at its
        // next look (`pace::give_back`), two commits for nothing.
        if (peers.idle_slots as usize) > queue.len() {
            want.min(req.start_soon.max(1))
        } else {
            want
        }
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
        match admit::admit(repo, d, entry, entry_kind(entry.mode), &content)? {
            Admit::Run(task) if d.report.claimed.len() < want => {
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
            Admit::Run(_) => left += 1,
            Admit::Skip => {}
            Admit::Reject(e) => d.reject(layout::QUEUE, entry, &e),
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

fn peers(repo: &GridRepo, nodes: Vec<TreeEntry>, req: &SyncRequest<'_>) -> Result<Peers, GitError> {
    let others: Vec<TreeEntry> = nodes
        .into_iter()
        .filter(|e| e.mode == EntryMode::File && e.name != KEEP)
        .filter(|e| layout::json_stem(&e.name_lossy()) != Some(req.node.as_str()))
        .collect();
    // Most records are the same blobs as in the last round: read only the
    // new ones.
    let mut cache = req.records.borrow_mut();
    let unseen: Vec<String> = others
        .iter()
        .filter(|e| !cache.0.contains_key(&e.oid))
        .map(|e| e.oid.clone())
        .collect();
    let read = repo.read_objects(&unseen, layout::MAX_NODE_RECORD_BYTES)?;
    cache.remember(
        unseen.into_iter().zip(
            read.iter()
                .map(|b| b.data().and_then(|b| NodeRecord::parse(b).ok())),
        ),
    );
    let records: Vec<Option<&NodeRecord>> = others
        .iter()
        .map(|e| cache.0.get(&e.oid).and_then(Option::as_ref))
        .collect();
    // A record too big to read, or one that names another node than its
    // file does, is no record: that node is not counted.
    let mut peers = Peers::default();
    for n in records.into_iter().zip(&others).filter_map(|(r, e)| {
        r.filter(|r| layout::json_stem(&e.name_lossy()) == Some(r.node_id.as_str()))
    }) {
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

/// Node records already read, by blob id (a blob's content never changes),
/// so that a round reads only the records that changed since the last.
/// Bounded: a grid that keeps pushing new records empties it now and then.
#[derive(Debug, Default)]
pub struct RecordCache(std::collections::HashMap<Oid, Option<NodeRecord>>);

impl RecordCache {
    const MAX: usize = 4096;

    fn remember(&mut self, read: impl Iterator<Item = (Oid, Option<NodeRecord>)>) {
        for (oid, record) in read {
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(oid, record);
        }
    }
}
