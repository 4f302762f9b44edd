//! Where a task's result is on a fetched tip, looked up by id: for a
//! waiting task's parents (the release, the claim of a dependant, `submit`,
//! `status`). The result directories are listed once; a name says whose
//! result it is, or a bounded read of the file does.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

use crate::git::{Blob, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::layout::{self, NameMatch};
use crate::grid::{Id, ResultStatus};

/// A result found on the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRef {
    pub completed: bool,
    /// Its path.
    pub file: String,
    pub oid: Oid,
    /// It counts: always, but for a completed result that the node's
    /// trust does not attest ([`ResultIndex::find_counted`]), which is no
    /// result: it releases no dependant and is no one's input.
    pub counted: bool,
    /// How it ended, as its file says (none if the file is not read yet):
    /// for a dependant's error.
    pub status: Option<ResultStatus>,
}

/// Whether a completed result's bytes count as the result of the task
/// (with trust enforced: signed by a node the policy lists).
pub type Counts<'a> = &'a dyn Fn(&Id, &[u8]) -> bool;

/// The result directories at a tip, listed once, for looking tasks' results
/// up by id: a name of the current form (`<node>@<task>.json`) says whose
/// it is; an older `<node>-<task>.json` name counts once its file says it is
/// that task's. A completed result wins over one that is not (the id was
/// run again).
pub struct ResultIndex {
    listed: Vec<(&'static str, Vec<TreeEntry>)>,
    /// For each listed directory: task id -> the entries whose names may be
    /// its result (index, how), in listing order. Built at the first look-up,
    /// each name read once: a look-up costs its ids, not ids × results.
    by_task: OnceCell<Vec<ByTask>>,
}

/// Task id -> the entries of one directory whose names may be its result.
type ByTask = HashMap<String, Vec<(usize, NameMatch)>>;

impl ResultIndex {
    pub fn list(repo: &GridRepo, tip: &str) -> Result<ResultIndex, GitError> {
        let mut listed = Vec::new();
        for dir in [layout::COMPLETED, layout::FAILED] {
            listed.push((dir, repo.list_dir(tip, dir)?));
        }
        Ok(ResultIndex {
            listed,
            by_task: OnceCell::new(),
        })
    }

    fn by_task(&self) -> &[ByTask] {
        self.by_task.get_or_init(|| {
            self.listed
                .iter()
                .map(|(_, entries)| {
                    let mut by_task = ByTask::new();
                    // A result is a file: a directory, symbolic link or
                    // submodule named like one (pushed by hand) is none.
                    let files = entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| matches!(e.mode, EntryMode::File | EntryMode::Executable));
                    for (i, e) in files {
                        let name = e.name_lossy();
                        for (task, how) in layout::result_name_tasks(&name) {
                            by_task.entry(task.to_owned()).or_default().push((i, how));
                        }
                    }
                    by_task
                })
                .collect()
        })
    }

    /// The results of `ids`, those that have one.
    pub fn find(&self, repo: &GridRepo, ids: &[Id]) -> Result<BTreeMap<Id, ResultRef>, GitError> {
        self.find_counted(repo, ids, None)
    }

    /// The results of `ids`, those that have one, where a completed result
    /// counts only if `counts` says so (each read, bounded, one at a
    /// time): a counted completed result wins over a failed one, and that
    /// over a completed one that does not count.
    pub fn find_counted(
        &self,
        repo: &GridRepo,
        ids: &[Id],
        counts: Option<Counts<'_>>,
    ) -> Result<BTreeMap<Id, ResultRef>, GitError> {
        let mut all: BTreeMap<Id, Vec<ResultRef>> = BTreeMap::new();
        let mut note = |id: &Id, r: ResultRef| all.entry(id.clone()).or_default().push(r);
        for ((dir, entries), by_task) in self.listed.iter().zip(self.by_task()) {
            let completed = *dir == layout::COMPLETED;
            // Older names, by entry (in listing order): the ids asked that
            // each may be, confirmed by reading the file once.
            let mut maybe_of: BTreeMap<usize, Vec<&Id>> = BTreeMap::new();
            for id in ids {
                for &(i, how) in by_task.get(id.as_str()).into_iter().flatten() {
                    match how {
                        NameMatch::Yes => note(
                            id,
                            ResultRef {
                                completed,
                                file: format!("{dir}/{}", entries[i].name_lossy()),
                                oid: entries[i].oid.clone(),
                                counted: true,
                                status: None,
                            },
                        ),
                        NameMatch::Candidate => maybe_of.entry(i).or_default().push(id),
                        NameMatch::No => {}
                    }
                }
            }
            if maybe_of.is_empty() {
                continue;
            }
            let candidates: Vec<(&TreeEntry, Vec<&Id>)> = maybe_of
                .into_iter()
                .map(|(i, maybe)| (&entries[i], maybe))
                .collect();
            let blobs = repo.read_objects(
                &candidates
                    .iter()
                    .map(|(e, _)| e.oid.clone())
                    .collect::<Vec<_>>(),
                layout::MAX_RESULT_BYTES,
            )?;
            for ((e, maybe), b) in candidates.iter().zip(blobs) {
                let task_id = b
                    .data()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v["task_id"].as_str().map(str::to_owned));
                if let Some(id) = maybe
                    .iter()
                    .find(|id| Some(id.as_str()) == task_id.as_deref())
                {
                    note(
                        id,
                        ResultRef {
                            completed,
                            file: format!("{dir}/{}", e.name_lossy()),
                            oid: e.oid.clone(),
                            counted: true,
                            status: None,
                        },
                    );
                }
            }
        }
        // Each file read once, bounded: a name is anyone's to push, so a
        // file is a result only if it is one of the task its name says, as
        // its directory says it ended; else it is none at all (junk named
        // `x@p.json` released p's dependants, and was mounted as p's
        // result; taken as a result not counted, it held them for good).
        // A file this round's read budget left unread is one not counted
        // yet: the next round reads it.
        let oids: Vec<String> = all.values().flatten().map(|r| r.oid.clone()).collect();
        let mut blobs = repo
            .read_objects(&oids, layout::MAX_RESULT_BYTES)?
            .into_iter();
        let mut found = BTreeMap::new();
        for (id, refs) in all {
            let mut results = Vec::with_capacity(refs.len());
            for mut r in refs {
                match blobs.next().unwrap_or(Blob::Missing) {
                    Blob::Data(b) if let Some(status) = answers(&id, &b, r.completed) => {
                        r.counted = !r.completed || counts.is_none_or(|c| c(&id, &b));
                        r.status = Some(status);
                    }
                    Blob::Deferred { .. } => r.counted = false,
                    _ => continue,
                }
                results.push(r);
            }
            let refs = results;
            // The first of the best: listed order otherwise.
            let best = refs
                .into_iter()
                .enumerate()
                .max_by_key(|(i, r)| (r.counted, r.completed, std::cmp::Reverse(*i)))
                .map(|(_, r)| r);
            found.extend(best.map(|r| (id, r)));
        }
        Ok(found)
    }
}

/// How `bytes` ended, if it is a result of task `id` that ended as its
/// directory says (`completed` or not): its `task_id` that id, its
/// `status` one of that directory's. A signed result's envelope field is
/// beside these, and they are its payload's (the envelope's check says
/// so), so one reading serves both forms.
fn answers(id: &Id, bytes: &[u8], completed: bool) -> Option<ResultStatus> {
    #[derive(serde::Deserialize)]
    struct Says {
        task_id: String,
        status: ResultStatus,
    }
    serde_json::from_slice::<Says>(bytes)
        .ok()
        .filter(|s| s.task_id == id.as_str() && s.status.is_success() == completed)
        .map(|s| s.status)
}
