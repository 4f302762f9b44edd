//! Judging the candidates: reading what is judged (one bounded read per
//! round, in claim order), the verdict on each entry (the task rules, then
//! the node's trust), and filing the inbox: each entry of a batch read,
//! judged, and sent to `failed/`, to wait, to its lane, or on as a
//! candidate.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use super::Candidate;
use super::take::{move_to, wait_under};
use crate::git::{Blob, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::layout::Place;
use crate::grid::task::EntryKind;
use crate::grid::{Task, TaskError, layout};
use crate::ledger::results;
use crate::service::sync::admit::{self, Admit};
use crate::service::sync::{Draft, SyncRequest};

fn is_file(mode: EntryMode) -> bool {
    matches!(mode, EntryMode::File | EntryMode::Executable)
}

/// Read and judge a batch of the inbox: a broken entry goes to `failed/`;
/// a task that runs after others waits in `blocked/` (where its parents are
/// looked at); one this node does not serve (its labels, or a timeout
/// past its limit) goes to its lane; the others
/// become candidates, judged, to be claimed or filed.
pub(super) fn file_inbox(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    inbox: Vec<TreeEntry>,
) -> Result<Vec<Candidate<'static>>, GitError> {
    let req = d.req;
    let files: Vec<String> = inbox
        .iter()
        .filter(|e| is_file(e.mode))
        .map(|e| e.oid.clone())
        .collect();
    let mut read = Sample::read(repo, files, req)?;
    let mut out = Vec::new();
    for entry in inbox {
        let (task, mine) = match consider(repo, d, &entry, &entry.name, read.next_for(&entry))? {
            Verdict::Claimable(task) => (task, true),
            Verdict::Elsewhere(task) => (task, false),
            Verdict::Reject(e) => {
                d.reject(layout::QUEUE, &entry, &e);
                continue;
            }
            Verdict::Skip | Verdict::Later => continue,
        };
        let from = results::entry_path(layout::QUEUE, &entry.name);
        if let Some(first) = task.after().first() {
            wait_under(repo, d, &from, first, &task.task_id, &entry.oid)?;
            continue;
        }
        let place = Place::of(&task, req.now);
        if !mine || req.labels.serves(&place.class).is_err() {
            move_to(
                repo,
                d,
                &from,
                &place.file(&task.task_id),
                &entry.oid,
                "file",
            )?;
            continue;
        }
        out.push(Candidate {
            dir: layout::QUEUE,
            entry: Cow::Owned(entry),
            place: Rc::new(place),
            judged: Some(Verdict::Claimable(task)),
        });
    }
    Ok(out)
}

/// A claim a peer handed back, carried to its lane by this plan (`bytes`,
/// the file written there), as a candidate: judged as a queued task is
/// (by this node's own trust, not the peer's), if this node serves its
/// class. The file is written to the object store, as a queued one would
/// be there already: the trust's verdicts are kept by blob.
pub(super) fn handed_back(
    repo: &GridRepo,
    d: &Draft<'_>,
    c: &ClaimedTask,
    bytes: Vec<u8>,
) -> Result<Option<Candidate<'static>>, GitError> {
    let place = Place::of(&c.task, c.arrival());
    if d.req.labels.serves(&place.class).is_err() {
        return Ok(None);
    }
    let path = place.file(&c.task.task_id);
    let Some(rel) = path.strip_prefix(&format!("{}/", layout::LANES)) else {
        return Ok(None);
    };
    let entry = TreeEntry {
        mode: EntryMode::File,
        oid: repo.write_blob(&bytes)?,
        name: rel.as_bytes().to_vec(),
    };
    let name = format!("{}.json", c.task.task_id);
    Ok(
        match consider(repo, d, &entry, name.as_bytes(), Blob::Data(bytes))? {
            Verdict::Claimable(task) => Some(Candidate {
                dir: layout::LANES,
                entry: Cow::Owned(entry),
                place: Rc::new(place),
                judged: Some(Verdict::Claimable(task)),
            }),
            // Not this node's to run: it waits in its lane for another.
            _ => None,
        },
    )
}

/// The sample's blobs, read in one bounded call: only files are read, and
/// none bigger than a task may be (a bigger one is refused by its size
/// alone).
pub(super) struct Sample(HashMap<Oid, Vec<Blob>>);

impl Sample {
    /// `files` (blob ids) read, each kept under its id.
    fn read(repo: &GridRepo, files: Vec<Oid>, req: &SyncRequest<'_>) -> Result<Sample, GitError> {
        let blobs = repo.read_objects(&files, req.rules.max_file_bytes as u64)?;
        let mut by_id: HashMap<Oid, Vec<Blob>> = HashMap::new();
        for (oid, blob) in files.into_iter().zip(blobs) {
            by_id.entry(oid).or_default().push(blob);
        }
        Ok(Sample(by_id))
    }

    /// What was read for `entry`, found by its blob's id. Not the sample's
    /// next in turn: the claim passes entries of the sample by unread (a
    /// level at or below what it holds, a submitter not owed a turn), and
    /// each entry after one passed was judged by its neighbour's bytes (a
    /// released task failed as another's, and its dependants with it).
    pub(super) fn next_for(&mut self, entry: &TreeEntry) -> Blob {
        if is_file(entry.mode) {
            self.0
                .get_mut(&entry.oid)
                .and_then(Vec::pop)
                .unwrap_or(Blob::Missing)
        } else {
            // Symlinks, trees and submodules are refused by their kind,
            // unread.
            Blob::Data(Vec::new())
        }
    }
}

/// The lane candidates among `order`'s, read in that order (inbox ones
/// were read already).
pub(super) fn read_sample(
    repo: &GridRepo,
    candidates: &[Candidate<'_>],
    order: &[(usize, u8)],
    req: &SyncRequest<'_>,
) -> Result<Sample, GitError> {
    let files: Vec<String> = order
        .iter()
        .map(|(i, _)| &candidates[*i])
        .filter(|c| c.judged.is_none() && is_file(c.entry.mode))
        .map(|c| c.entry.oid.clone())
        .collect();
    Sample::read(repo, files, req)
}

/// What becomes of one candidate.
pub(super) enum Verdict {
    /// A valid task this node may claim (for a signed task, what was
    /// signed).
    Claimable(Task),
    /// Broken, or refused by the node's trust for good: to `failed/`, with
    /// this reason.
    Reject(String),
    /// Not this node's to run now (unsigned, an unknown signer, not yet
    /// issued: `admit`): left where it is, not counted as work left.
    Skip,
    /// A task for another node (`Admit::Elsewhere`): to its lane from the
    /// inbox, else left; not counted as work left.
    Elsewhere(Task),
    /// Not decided in this round (not read: budget spent, or gone).
    Later,
}

/// Judge one queue entry (its own name `name`) from what was read of it:
/// the task rules, then the node's trust (`admit`).
pub(super) fn consider(
    repo: &GridRepo,
    d: &Draft<'_>,
    entry: &TreeEntry,
    name: &[u8],
    blob: Blob,
) -> Result<Verdict, GitError> {
    let content = match blob {
        Blob::Data(b) => b,
        Blob::TooBig { size, cap } => {
            return Ok(Verdict::Reject(
                TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(cap).unwrap_or(usize::MAX),
                }
                .to_string(),
            ));
        }
        _ => return Ok(Verdict::Later),
    };
    let name = String::from_utf8_lossy(name);
    Ok(
        match admit::admit(repo, d, entry, &name, EntryKind::from(entry.mode), &content)? {
            Admit::Run(task) => Verdict::Claimable(task),
            Admit::Skip => Verdict::Skip,
            Admit::Elsewhere(task) => Verdict::Elsewhere(task),
            Admit::Reject(e) => Verdict::Reject(e),
        },
    )
}
