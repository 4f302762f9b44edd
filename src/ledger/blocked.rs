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

/// Where a task's file is while it will still run, `blocked/` aside.
const OUTSIDE_BLOCKED: [&str; 3] = [layout::QUEUE, layout::LANES, layout::IN_PROGRESS];

/// The last edit of `path` among the commit's `plans` (in the order they
/// apply), if any.
fn last_edit<'e>(plans: &[&'e Edits], path: &[u8]) -> Option<&'e Edit> {
    plans.iter().rev().find_map(|e| e.get(path))
}

fn deleted(plans: &[&Edits], path: &[u8]) -> bool {
    matches!(last_edit(plans, path), Some(Edit::Delete))
}

/// The id a task file is named for (`.../<id>.json`).
fn id_of(path: &[u8]) -> Option<Id> {
    let last = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    std::str::from_utf8(last)
        .ok()
        .and_then(layout::json_stem)
        .and_then(|s| Id::parse(s).ok())
}

/// Task files the commit's `plans` write below one of `dirs` and keep.
fn written<'p>(plans: &'p [&Edits], dirs: &'p [&str]) -> impl Iterator<Item = Id> + 'p {
    let below = |path: &[u8]| {
        dirs.iter().any(|d| {
            path.strip_prefix(d.as_bytes())
                .is_some_and(|rest| rest.first() == Some(&b'/'))
        })
    };
    plans
        .iter()
        .flat_map(|e| e.iter())
        .filter(move |(path, edit)| {
            !matches!(edit, Edit::Delete) && below(path) && !deleted(plans, path)
        })
        .filter_map(|(path, _)| id_of(path))
}

impl Copies<'_> {
    /// Every task file at the tip where it will still run: the inbox, the
    /// lanes and `in_progress/`, and `blocked/` if asked.
    fn files(&self, with_blocked: bool) -> impl Iterator<Item = (&str, &TreeEntry)> {
        let blocked = self.blocked.entries.iter().filter(move |_| with_blocked);
        let queue = self.queue;
        (queue.inbox.iter().map(|e| (layout::QUEUE, e)))
            .chain(queue.lanes.iter().map(|l| (layout::LANES, &l.entry)))
            .chain(self.running.iter().map(|e| (layout::IN_PROGRESS, e)))
            .chain(blocked.map(|b| (layout::BLOCKED, &b.entry)))
    }

    /// The tasks that will run whatever waits in `blocked/`, once the
    /// commit's `plans` are made: claimed in this plan, or with a file in
    /// the queue or `in_progress/` that they leave or write. One pass.
    pub fn outside_blocked(&self, plans: &[&Edits]) -> BTreeSet<Id> {
        let mut out: BTreeSet<Id> = self.claimed.clone();
        for (dir, e) in self.files(false) {
            if !deleted(plans, &entry_path(dir, &e.name)) {
                out.extend(id_of(&e.name));
            }
        }
        out.extend(written(plans, &OUTSIDE_BLOCKED));
        out
    }

    /// Whether a copy of `id` is still to run once the commit's `plans`
    /// are made: a claim of it in this plan, a file of its id in the queue,
    /// `in_progress/` or `blocked/` that they leave, or one they write
    /// there (a task filed, refiled, requeued or moved on in the commit).
    pub fn survives(&self, id: &Id, plans: &[&Edits]) -> bool {
        let dirs = [OUTSIDE_BLOCKED.as_slice(), &[layout::BLOCKED]].concat();
        self.claimed.contains(id)
            || self.files(true).any(|(dir, e)| {
                id_of(&e.name).as_ref() == Some(id) && !deleted(plans, &entry_path(dir, &e.name))
            })
            || written(plans, &dirs).any(|w| &w == id)
    }
}
