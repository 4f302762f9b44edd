//! What waits in `tasks/blocked/` at a tip, and where the copies of a task
//! still to run are: read by the release of waiting tasks
//! (`ledger::deps`), the tools that show and archive them, and a node's
//! claim.

use std::collections::BTreeSet;

use crate::git::{Edit, Edits, TreeEntry};
use crate::git::{GitError, GridRepo};
use crate::grid::{Id, layout};

use super::queue::QueueAt;
use super::results::entry_path;

/// One file below `tasks/blocked/`.
#[derive(Debug, Clone)]
pub struct BlockedEntry {
    /// Named by its path below `tasks/blocked/` (`<parent>/<task>.json`).
    pub entry: TreeEntry,
    pub parent: Id,
}

impl BlockedEntry {
    /// Its own name (`<task>.json`).
    pub fn file_name(&self) -> String {
        let name = self.entry.name_lossy();
        name.rsplit('/').next().unwrap_or(&name).to_owned()
    }

    /// The waiting task's id, if its name is `<id>.json`.
    pub fn child(&self) -> Option<Id> {
        layout::json_stem(&self.file_name()).and_then(|s| Id::parse(s).ok())
    }

    pub fn path(&self) -> Vec<u8> {
        entry_path(layout::BLOCKED, &self.entry.name)
    }
}

/// What waits at a tip.
#[derive(Debug, Clone, Default)]
pub struct BlockedAt {
    pub entries: Vec<BlockedEntry>,
    /// Entries that are no waiting task's place (named by their path below
    /// `tasks/blocked/`).
    pub misplaced: Vec<TreeEntry>,
}

impl BlockedAt {
    pub fn list(repo: &GridRepo, tip: &str) -> Result<BlockedAt, GitError> {
        let mut out = BlockedAt::default();
        for entry in repo.list_dir_recursive(tip, layout::BLOCKED)? {
            let name = entry.name.clone();
            let parts: Vec<&[u8]> = name.split(|b| *b == b'/').collect();
            if parts.last() == Some(&layout::KEEP_FILE.as_bytes()) {
                continue;
            }
            let parent = match parts[..] {
                [p, _] => std::str::from_utf8(p).ok().and_then(|p| Id::parse(p).ok()),
                _ => None,
            };
            match parent {
                Some(parent) => out.entries.push(BlockedEntry { entry, parent }),
                None => out.misplaced.push(entry),
            }
        }
        Ok(out)
    }

    /// The ids of the tasks that wait.
    pub fn children(&self) -> BTreeSet<Id> {
        self.entries
            .iter()
            .filter_map(BlockedEntry::child)
            .collect()
    }
}

/// Where the copies of a task are at the tip.
pub(super) struct Copies<'a> {
    pub queue: &'a QueueAt,
    pub running: &'a [TreeEntry],
    pub blocked: &'a BlockedAt,
    pub claimed: &'a BTreeSet<Id>,
}

/// The directories a task's file can be in, waiting to run or running.
const TASK_DIRS: [&str; 4] = [
    layout::QUEUE,
    layout::LANES,
    layout::IN_PROGRESS,
    layout::BLOCKED,
];

impl Copies<'_> {
    /// The tasks that will run whatever waits in `blocked/`, once the
    /// commit's `plans` are made: claimed in this plan, or with a file in
    /// the queue or `in_progress/` that they leave or write. One pass over
    /// the listings.
    pub fn outside_blocked(&self, plans: &[&Edits]) -> BTreeSet<Id> {
        let last_edit = |path: &[u8]| plans.iter().rev().find_map(|e| e.get(path));
        let stays = |path: &[u8]| !matches!(last_edit(path), Some(Edit::Delete));
        let id_of = |name: &[u8]| {
            let last = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
            std::str::from_utf8(last)
                .ok()
                .and_then(layout::json_stem)
                .and_then(|s| Id::parse(s).ok())
        };
        let mut out: BTreeSet<Id> = self.claimed.clone();
        for e in &self.queue.inbox {
            if stays(&entry_path(layout::QUEUE, &e.name)) {
                out.extend(id_of(&e.name));
            }
        }
        for l in &self.queue.lanes {
            if stays(&l.path()) {
                out.extend(l.id());
            }
        }
        for e in self.running {
            if stays(&entry_path(layout::IN_PROGRESS, &e.name)) {
                out.extend(id_of(&e.name));
            }
        }
        for (path, edit) in plans.iter().flat_map(|e| e.iter()) {
            let placed = [layout::QUEUE, layout::LANES, layout::IN_PROGRESS]
                .iter()
                .any(|d| {
                    path.strip_prefix(d.as_bytes())
                        .is_some_and(|rest| rest.first() == Some(&b'/'))
                });
            if placed && !matches!(edit, Edit::Delete) && stays(path) {
                out.extend(id_of(path));
            }
        }
        out
    }

    /// Whether a copy of `id` is still to run once the commit's `plans`
    /// (in the order they apply) are made: a claim of it in this plan, a
    /// file of its id in the queue, `in_progress/` or `blocked/` that they
    /// leave, or one they write there (a task filed, refiled, requeued or
    /// moved on in the same commit).
    pub fn survives(&self, id: &Id, plans: &[&Edits]) -> bool {
        let last_edit = |path: &[u8]| plans.iter().rev().find_map(|e| e.get(path));
        let stays = |path: Vec<u8>| !matches!(last_edit(&path), Some(Edit::Delete));
        let named = |name: &[u8]| {
            let last = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
            std::str::from_utf8(last).ok().and_then(layout::json_stem) == Some(id.as_str())
        };
        let in_task_dir = |path: &[u8]| {
            TASK_DIRS.iter().any(|d| {
                path.strip_prefix(d.as_bytes())
                    .is_some_and(|rest| rest.first() == Some(&b'/'))
            })
        };
        let written = || {
            plans.iter().flat_map(|e| e.iter()).any(|(path, edit)| {
                !matches!(edit, Edit::Delete)
                    && named(path)
                    && in_task_dir(path)
                    && !matches!(last_edit(path), Some(Edit::Delete))
            })
        };
        self.claimed.contains(id)
            || self
                .queue
                .inbox
                .iter()
                .filter(|e| named(&e.name))
                .any(|e| stays(entry_path(layout::QUEUE, &e.name)))
            || self
                .queue
                .lanes
                .iter()
                .filter(|l| l.id().as_ref() == Some(id))
                .any(|l| stays(l.path()))
            || self
                .running
                .iter()
                .filter(|e| named(&e.name))
                .any(|e| stays(entry_path(layout::IN_PROGRESS, &e.name)))
            || self
                .blocked
                .entries
                .iter()
                .filter(|b| b.child().as_ref() == Some(id))
                .any(|b| stays(b.path()))
            || written()
    }
}
