//! Plans over a fetched tip that the worker and the grid tools share: the
//! orphan sweep, and how rejected entries and results are written. Above
//! `git/` and `grid/`, below `service/` and `tools/`, so that a tool
//! applies exactly the rule a worker does without depending on the worker.

pub mod blocked;
pub mod deps;
mod finished;
pub mod nodes;
pub mod queue;
pub mod reap;
pub mod refile;
pub mod result_index;
pub mod results;
pub mod room;
pub mod routing;

use crate::git::{Edit, Edits};
use results::PendingResult;

/// The last edit of `path` among one commit's `plans` (in the order they
/// apply), if any: what the commit leaves there.
pub fn last_edit<'e>(plans: &[&'e Edits], path: &[u8]) -> Option<&'e Edit> {
    plans.iter().rev().find_map(|e| e.get(path))
}

/// What a plan over waiting entries (in `blocked/`, or in a lane nobody
/// serves) moves on: the edits, the results of entries that will never
/// run, and what to say of it. The release and the refile both make one.
#[derive(Debug, Default)]
pub struct Moves {
    pub edits: Edits,
    pub results: Vec<PendingResult>,
    /// Commit message items.
    pub summary: Vec<String>,
    /// (entry, reason): entries that are no task.
    pub invalid: Vec<(String, String)>,
    /// (task, what became of it).
    pub moved: Vec<(String, String)>,
    /// Waiting tasks left for a later plan by the bound of one
    /// ([`deps::MAX_PER_PLAN`]), after this one moved some: the next plan
    /// sweeps, so a parent with thousands of dependants releases them all
    /// within rounds, not a sweep a minute.
    pub more: bool,
}

impl Moves {
    /// Move a rejected entry to `failed/`, with its `invalid` result.
    pub fn reject(&mut self, r: results::Rejection) {
        self.edits.insert(r.path, Edit::Delete);
        self.summary.push(format!("reject {}", r.result.stem));
        self.results.push(r.result);
        self.invalid.push(r.invalid);
    }

    /// Add `other`'s moves after these.
    pub fn extend(&mut self, other: Moves) {
        self.edits.extend(other.edits);
        self.results.extend(other.results);
        self.summary.extend(other.summary);
        self.invalid.extend(other.invalid);
        self.moved.extend(other.moved);
        self.more |= other.more;
    }
}
