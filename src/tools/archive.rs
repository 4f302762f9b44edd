//! `dgrid-worker archive`: move old results from `main` to the `archive`
//! branch, keeping the newest on `main` (the rule is `grid::archive`).
//!
//! Why: every push to `main` costs the server a walk of the tree pushed,
//! `tasks/completed/` included, so a grid's claims slow down as results
//! pile up (2.4 x at 50,000 results, BENCHMARKS.md 3). With old results on
//! another branch, `main`'s tree stays the size of the work in flight.
//!
//! It is a transaction over two refs (`git::txn::run_branches`): fetch both,
//! plan, write one commit on each, push both with `--atomic`. Either both
//! land or neither: a result is on `main` or on the archive, never on
//! neither, and a worker's push racing the archive's makes one of them
//! plan again from the other's tip.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::git::txn::{
    self, BranchesOutcome, BranchesPlan, BranchesTxn, Change, Identity, TxnError, TxnPolicy,
};
use crate::git::{Blob, EntryMode, Oid, TreeEntry};
use crate::git::{Edit, Edits, Git, GitError, GridRepo};
use crate::grid::archive::{self, Placement, Stored};
use crate::grid::layout::{COMPLETED, FAILED, KEEP_FILE};
use crate::tools::source::{RepoArgs, SourceError};

/// The identity of the archive's commits.
pub const ARCHIVER: &str = "dgrid-archiver";

#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Results to keep on `main`, the newest by their `timestamp`.
    pub keep: usize,
    /// The branch results are moved to.
    pub archive_branch: String,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            keep: archive::DEFAULT_KEEP,
            archive_branch: archive::ARCHIVE_BRANCH.to_owned(),
        }
    }
}

/// What one archive run did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ArchiveSummary {
    /// Results on `main` before.
    pub results: usize,
    /// Results left on `main`.
    pub kept: usize,
    /// (path on `main`, path on the archive); the two differ when the
    /// archive already had a different file of that name.
    pub moved: Vec<(String, String)>,
    /// Paths removed from `main` whose identical file was on the archive
    /// already (the same result written to `main` again after it had been
    /// archived): the archive keeps its copy.
    pub already_archived: Vec<String>,
    /// Results kept on `main` beyond the newest, because a task that is
    /// queued, waiting or running runs after theirs (it reads them as its
    /// inputs, and waits on them).
    pub kept_for_dependants: usize,
}

impl ArchiveSummary {
    pub fn renamed(&self) -> impl Iterator<Item = &(String, String)> {
        self.moved.iter().filter(|(from, to)| from != to)
    }
}

/// The two commits' plan at the fetched tips of `main` and the archive.
pub fn plan(
    t: &BranchesTxn<'_>,
    opts: &ArchiveOptions,
) -> Result<BranchesPlan<ArchiveSummary>, GitError> {
    let repo = t.repo;
    let mut summary = ArchiveSummary::default();
    let mut main_edits = Edits::new();
    let mut archive_edits = Edits::new();
    if let Some(main) = t.tips[0].as_deref() {
        let archive_tip = t.tips[1].as_deref();
        let mut listed: BTreeMap<&'static str, Vec<TreeEntry>> = BTreeMap::new();
        for dir in [COMPLETED, FAILED] {
            listed.insert(dir, repo.list_dir(main, dir)?);
        }
        let results = read_results(repo, &listed)?;
        summary.results = results.len();
        // A result a pending task runs after stays, whatever its age.
        let needed = needed_results(repo, main)?;
        let (kept, results): (Vec<_>, Vec<_>) = results
            .into_iter()
            .partition(|(_, task)| task.as_ref().is_some_and(|t| needed.contains(t)));
        summary.kept_for_dependants = kept.len();
        let moving = archive::select(results.into_iter().map(|(r, _)| r).collect(), opts.keep);
        summary.kept = summary.results - moving.len();
        for (dir, entries) in &listed {
            let here: Vec<Stored<(EntryMode, Oid)>> =
                moving.iter().filter(|r| r.dir == *dir).cloned().collect();
            if here.is_empty() {
                continue;
            }
            let archived: Vec<TreeEntry> = match archive_tip {
                Some(tip) => repo.list_dir(tip, dir)?,
                None => Vec::new(),
            };
            let by_name: BTreeMap<Vec<u8>, (EntryMode, Oid)> = archived
                .iter()
                .map(|e| (e.name.clone(), (e.mode, e.oid.clone())))
                .collect();
            let placed = archive::place(&here, &by_name);
            let mut added = Vec::new();
            for (r, p) in here.iter().zip(placed) {
                let from = path(dir, &r.name);
                match p {
                    Placement::Move { to } => {
                        summary.moved.push((from, path(dir, &to)));
                        added.push(TreeEntry {
                            mode: r.object.0,
                            oid: r.object.1.clone(),
                            name: to,
                        });
                    }
                    Placement::AlreadyThere { .. } => summary.already_archived.push(from),
                }
            }
            // Each directory is rewritten as one tree: linear in its size,
            // where one fast-import edit per file would be quadratic.
            let gone: std::collections::BTreeSet<&[u8]> =
                here.iter().map(|r| &r.name[..]).collect();
            let left: Vec<TreeEntry> = entries
                .iter()
                .filter(|e| !gone.contains(&e.name[..]))
                .cloned()
                .collect();
            main_edits.insert(dir.as_bytes().to_vec(), tree_edit(repo, &left)?);
            if !added.is_empty() {
                let mut all = archived;
                all.extend(added);
                archive_edits.insert(dir.as_bytes().to_vec(), tree_edit(repo, &all)?);
            }
        }
    }
    let n = summary.moved.len() + summary.already_archived.len();
    Ok(BranchesPlan {
        changes: vec![
            Change {
                edits: main_edits,
                message: format!(
                    "{ARCHIVER}: move {n} results to {} (main keeps {})\n",
                    opts.archive_branch, summary.kept
                ),
            },
            Change {
                edits: archive_edits,
                message: format!("{ARCHIVER}: {} results from main\n", summary.moved.len()),
            },
        ],
        value: summary,
    })
}

/// The ids whose results tasks still need: every task queued (inbox and
/// lanes), waiting (`blocked/`) or running runs after those in its `after`.
/// Every such file is read (within the tools' budget): a waiting task's
/// path names one of its parents, not all.
fn needed_results(repo: &GridRepo, tip: &str) -> Result<BTreeSet<String>, GitError> {
    use crate::grid::layout;
    use crate::ledger::blocked::BlockedAt;
    use crate::ledger::queue::QueueAt;
    let queue = QueueAt::list(repo, tip)?;
    let blocked = BlockedAt::list(repo, tip)?;
    let in_progress = repo.list_dir(tip, layout::IN_PROGRESS)?;
    let mut needed: BTreeSet<String> = blocked
        .entries
        .iter()
        .map(|b| b.parent.to_string())
        .collect();
    let oids: Vec<String> = queue
        .inbox
        .iter()
        .chain(queue.lanes.iter().map(|l| &l.entry))
        .chain(blocked.entries.iter().map(|b| &b.entry))
        .chain(in_progress.iter())
        .filter(|e| is_file(e.mode))
        .map(|e| e.oid.clone())
        .collect();
    for blob in repo.read_objects(
        &oids,
        crate::grid::TaskRules::default().max_file_bytes as u64,
    )? {
        let after = blob
            .data()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("after").and_then(|a| a.as_array()).cloned())
            .unwrap_or_default();
        needed.extend(after.iter().filter_map(|a| a.as_str().map(str::to_owned)));
    }
    Ok(needed)
}

/// A result file on `main` and the task it is of, as the file says.
type Read = (Stored<(EntryMode, Oid)>, Option<String>);

/// Every result file in `listed` (`.gitkeep` aside), with its timestamp,
/// and the task it is of (as the file says).
fn read_results(
    repo: &GridRepo,
    listed: &BTreeMap<&'static str, Vec<TreeEntry>>,
) -> Result<Vec<Read>, GitError> {
    let entries: Vec<(&'static str, &TreeEntry)> = listed
        .iter()
        .flat_map(|(dir, es)| es.iter().map(move |e| (*dir, e)))
        .filter(|(_, e)| e.name != KEEP_FILE.as_bytes())
        .collect();
    let files: Vec<String> = entries
        .iter()
        .filter(|(_, e)| is_file(e.mode))
        .map(|(_, e)| e.oid.clone())
        .collect();
    // A result too big to read (or not read within the budget) has no
    // timestamp, and counts as oldest: it is archived first, unread.
    let mut bodies = repo
        .read_objects(&files, crate::grid::layout::MAX_RESULT_BYTES)?
        .into_iter();
    Ok(entries
        .into_iter()
        .map(|(dir, e)| {
            // Only regular files are read; anything else has no timestamp
            // and counts as oldest.
            let body = if is_file(e.mode) {
                bodies.next().and_then(Blob::into_data)
            } else {
                None
            };
            let task = body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("task_id").and_then(|t| t.as_str()).map(str::to_owned));
            let stored = Stored {
                dir,
                name: e.name.clone(),
                object: (e.mode, e.oid.clone()),
                timestamp: body.as_deref().and_then(archive::timestamp_of),
            };
            (stored, task)
        })
        .collect())
}

fn is_file(mode: EntryMode) -> bool {
    matches!(mode, EntryMode::File | EntryMode::Executable)
}

fn path(dir: &str, name: &[u8]) -> String {
    format!("{dir}/{}", String::from_utf8_lossy(name))
}

/// A directory set to a tree of `entries`, or removed when none are left.
fn tree_edit(repo: &GridRepo, entries: &[TreeEntry]) -> Result<Edit, GitError> {
    if entries.is_empty() {
        return Ok(Edit::Delete);
    }
    Ok(Edit::Object {
        mode: EntryMode::Tree,
        oid: repo.make_tree(entries)?,
    })
}

/// The transaction on an open clone: plan at the fetched tips, commit,
/// push atomically; planned again after a lost race.
pub fn archive(
    repo: &GridRepo,
    policy: &TxnPolicy,
    opts: &ArchiveOptions,
) -> Result<BranchesOutcome<ArchiveSummary>, TxnError> {
    let branches = [repo.branch(), opts.archive_branch.as_str()];
    txn::run_branches(
        repo,
        &Identity::for_node(ARCHIVER),
        policy,
        &branches,
        |t| plan(t, opts),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("--archive-branch {0:?}: must differ from the grid's branch")]
    SameBranch(String),
    #[error("--archive-branch {name:?}: not a valid branch name ({why})")]
    BadBranch { name: String, why: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{repo}: {source}")]
    Txn { repo: String, source: TxnError },
    #[error(
        "{repo}: the push's answer was lost and the grid is unreachable ({error}); \
         run the archive again: it redoes only what did not land"
    )]
    Uncertain { repo: String, error: GitError },
}

/// What a run did: the summary, and whether anything was pushed.
#[derive(Debug)]
pub struct Archived {
    pub summary: ArchiveSummary,
    pub pushed: bool,
    pub rejections: u32,
}

/// `dgrid-worker archive` as a library call: open a private clone of the
/// grid named by `repo` (token from the environment, as for every tool),
/// then plan (`dry_run`) or run the transaction.
pub fn run(
    repo: &RepoArgs,
    opts: &ArchiveOptions,
    dry_run: bool,
) -> Result<Archived, ArchiveError> {
    check_branch(repo, &opts.archive_branch)?;
    let opened = repo.open_clone_as(ARCHIVER)?;
    let txn_err = |source| ArchiveError::Txn {
        repo: repo.shown(),
        source,
    };
    if dry_run {
        let branches = [repo.branch.as_str(), opts.archive_branch.as_str()];
        let tips = opened
            .repo
            .fetch_branches(&branches)
            .map_err(|e| txn_err(e.into()))?;
        let t = BranchesTxn {
            repo: &opened.repo,
            tips,
        };
        let planned = plan(&t, opts).map_err(|e| txn_err(e.into()))?;
        return Ok(Archived {
            summary: planned.value,
            pushed: false,
            rejections: 0,
        });
    }
    match archive(&opened.repo, &TxnPolicy::default(), opts).map_err(txn_err)? {
        BranchesOutcome::Committed {
            value, rejections, ..
        } => Ok(Archived {
            summary: value,
            pushed: true,
            rejections,
        }),
        BranchesOutcome::Unchanged {
            value, rejections, ..
        } => Ok(Archived {
            summary: value,
            pushed: false,
            rejections,
        }),
        BranchesOutcome::Uncertain { error, .. } => Err(ArchiveError::Uncertain {
            repo: repo.shown(),
            error,
        }),
    }
}

fn check_branch(repo: &RepoArgs, name: &str) -> Result<(), ArchiveError> {
    if name == repo.branch {
        return Err(ArchiveError::SameBranch(name.to_owned()));
    }
    let bad = |why: String| ArchiveError::BadBranch {
        name: name.to_owned(),
        why,
    };
    if name.starts_with('-') {
        return Err(bad("it starts with '-'".into()));
    }
    let git = Git::new("git", std::env::temp_dir(), Duration::from_secs(30));
    let out = git
        .run_with(
            &["check-ref-format", &format!("refs/heads/{name}")],
            None,
            &[0, 1],
        )
        .map_err(|e| bad(e.to_string()))?;
    if out.code != 0 {
        return Err(bad("git check-ref-format refuses it".into()));
    }
    Ok(())
}
