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

/// Where the copies of a task are at the tip, and what the commit removes.
pub(super) struct Copies<'a> {
    pub queue: &'a QueueAt,
    pub running: &'a [TreeEntry],
    pub blocked: &'a BlockedAt,
    pub claimed: &'a BTreeSet<Id>,
    pub removed: &'a Edits,
}

impl Copies<'_> {
    /// Whether a copy of `id` stays pending after the commit's edits: a
    /// claim of it in this plan, or a file of its id in the queue,
    /// `in_progress/` or `blocked/` that no edit of the commit deletes.
    pub fn survives(&self, id: &Id) -> bool {
        let stays = |path: Vec<u8>| !matches!(self.removed.get(&path), Some(Edit::Delete));
        let named = |name: &[u8]| {
            let name = String::from_utf8_lossy(name);
            let last = name.rsplit('/').next().unwrap_or(&name);
            layout::json_stem(last) == Some(id.as_str())
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
    }
}
