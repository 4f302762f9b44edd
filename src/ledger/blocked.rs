//! What waits in `tasks/blocked/` at a tip, and where the copies of a task
//! still to run are: read by the release of waiting tasks
//! (`ledger::deps`), the tools that show and archive them, and a node's
//! claim.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};

use crate::git::{Edit, Edits, TreeEntry};
use crate::git::{GitError, GridRepo};
use crate::grid::{Id, layout};

use super::last_edit;
use super::queue::QueueAt;
use super::results::entry_path;

/// One file below `tasks/blocked/`.
#[derive(Debug, Clone)]
pub struct BlockedEntry {
    /// Named by its path below `tasks/blocked/` (`<parent>/<task>.json`).
    pub entry: TreeEntry,
    pub parent: Id,
    /// Where the plan that files it here took it from (the file as its
    /// submitter pushed it): named in what the plan says of it, as the
    /// path here is not on the grid yet. None: listed at the tip.
    pub filed_from: Option<Vec<u8>>,
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

    /// The path a plan names it by: where it was pushed, if this plan
    /// filed it, else its path here.
    pub fn named(&self) -> Vec<u8> {
        self.filed_from.clone().unwrap_or_else(|| self.path())
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
                Some(parent) => out.entries.push(BlockedEntry {
                    entry,
                    parent,
                    filed_from: None,
                }),
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

/// Where the copies of a task are: at the tip, and as the commit's plans
/// so far (`earlier`) leave them.
pub(super) struct Copies<'a> {
    pub queue: &'a QueueAt,
    pub running: &'a [TreeEntry],
    pub blocked: &'a BlockedAt,
    pub claimed: &'a BTreeSet<Id>,
    pub earlier: &'a Edits,
    /// Every path a file of each id is at, at the tip or written by
    /// `earlier`: built once, at the first question (a flood of 20,000
    /// invalid files asked a walk of the whole queue each).
    paths: OnceCell<HashMap<Id, Vec<Vec<u8>>>>,
}

/// Where a task's file is while it will still run, `blocked/` aside.
const OUTSIDE_BLOCKED: [&str; 3] = [layout::QUEUE, layout::LANES, layout::IN_PROGRESS];

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

/// Task files `edits` write below one of `dirs`, with their ids.
fn written<'e>(edits: &'e Edits, dirs: &'e [&str]) -> impl Iterator<Item = (Id, &'e Vec<u8>)> {
    let below = |path: &[u8]| {
        dirs.iter().any(|d| {
            path.strip_prefix(d.as_bytes())
                .is_some_and(|rest| rest.first() == Some(&b'/'))
        })
    };
    edits
        .iter()
        .filter(move |(path, edit)| !matches!(edit, Edit::Delete) && below(path))
        .filter_map(|(path, _)| Some((id_of(path)?, path)))
}

const TASK_DIRS: [&str; 4] = [
    layout::QUEUE,
    layout::LANES,
    layout::IN_PROGRESS,
    layout::BLOCKED,
];

impl<'a> Copies<'a> {
    pub fn new(
        queue: &'a QueueAt,
        running: &'a [TreeEntry],
        blocked: &'a BlockedAt,
        claimed: &'a BTreeSet<Id>,
        earlier: &'a Edits,
    ) -> Copies<'a> {
        Copies {
            queue,
            running,
            blocked,
            claimed,
            earlier,
            paths: OnceCell::new(),
        }
    }

    /// Every task file at the tip where it will still run: the inbox, the
    /// lanes and `in_progress/`, and `blocked/` if asked.
    fn files(&self, with_blocked: bool) -> impl Iterator<Item = Vec<u8>> + '_ {
        let blocked = self.blocked.entries.iter().filter(move |_| with_blocked);
        let queue = self.queue;
        (queue
            .inbox
            .iter()
            .map(|e| entry_path(layout::QUEUE, &e.name)))
        .chain(queue.lanes.iter().map(|l| l.path()))
        .chain(
            self.running
                .iter()
                .map(|e| entry_path(layout::IN_PROGRESS, &e.name)),
        )
        .chain(blocked.map(|b| b.path()))
    }

    /// The tasks that will run whatever waits in `blocked/`, once the
    /// `earlier` plans are made: claimed in this plan, or with a file in
    /// the queue or `in_progress/` that they leave or write. One pass.
    pub fn outside_blocked(&self) -> BTreeSet<Id> {
        let plans = [self.earlier];
        let mut out: BTreeSet<Id> = self.claimed.clone();
        for path in self.files(false) {
            if !deleted(&plans, &path) {
                out.extend(id_of(&path));
            }
        }
        for (id, path) in written(self.earlier, &OUTSIDE_BLOCKED) {
            if !deleted(&plans, path) {
                out.insert(id);
            }
        }
        out
    }

    /// Whether a copy of `id` is still to run once the `earlier` plans and
    /// `more` are made: a claim of it in this plan, a file of its id in
    /// the queue, `in_progress/` or `blocked/` that they leave, or one they
    /// write there (a task filed, refiled, requeued or moved on in the
    /// commit).
    pub fn survives(&self, id: &Id, more: &Edits) -> bool {
        let plans = [self.earlier, more];
        let paths = self.paths.get_or_init(|| {
            let mut by_id: HashMap<Id, Vec<Vec<u8>>> = HashMap::new();
            for path in self.files(true) {
                if let Some(id) = id_of(&path) {
                    by_id.entry(id).or_default().push(path);
                }
            }
            for (id, path) in written(self.earlier, &TASK_DIRS) {
                by_id.entry(id).or_default().push(path.clone());
            }
            by_id
        });
        self.claimed.contains(id)
            || paths
                .get(id)
                .is_some_and(|ps| ps.iter().any(|p| !deleted(&plans, p)))
            || written(more, &TASK_DIRS).any(|(w, p)| &w == id && !deleted(&plans, p))
    }
}
