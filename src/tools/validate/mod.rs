//! `dgrid-worker validate`: the worker's own task rules (`Task::from_entry`)
//! applied to files on disk, so that what a pull request's check accepts is
//! exactly what a worker will run.
//!
//! Here: the findings and the report, and `validate` itself, which checks
//! each file named (or found in a directory named) as a queue entry. Apart:
//! `place.rs`, where a file sits (the inbox, a lane, waiting under
//! `blocked/`) and what that place says of it; `checkout.rs`, the valid
//! tasks against a checkout of the grid (ids in use, parents unknown);
//! `read.rs`, the bounded read of a file named on the command line;
//! `github.rs`, a finding as a GitHub Actions annotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::grid::deps::{self, GraphError};
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskRules, layout};
use crate::tools::escape::untrusted;

mod checkout;
mod github;
mod place;
mod read;

pub use checkout::check_against_grid;
pub use github::{github_annotation, github_warning};
use place::{Where, check_place, root_of, walk_below};
pub use read::{ReadError, read_regular};

/// One problem with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    /// The field the problem is about, when it is about one.
    pub field: Option<&'static str>,
    pub reason: String,
}

/// One line, whatever the file's name or the reason hold: both come from
/// a pull request (`escape::untrusted`).
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            untrusted(&self.path.to_string_lossy()),
            untrusted(&self.reason)
        )
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// Files looked at.
    pub checked: usize,
    pub valid: usize,
    pub findings: Vec<Finding>,
    /// Valid tasks with a field kept that was probably meant as a known
    /// one (`Task::likely_mistakes`): said, never refused.
    pub warnings: Vec<Finding>,
    /// Paths that could not be read at all (missing, permissions).
    pub unreadable: Vec<Finding>,
    /// The valid tasks: (file, task id).
    pub tasks: Vec<(PathBuf, String)>,
    /// The valid tasks that run after others: (file, task id, `after`).
    pub graph: Vec<(PathBuf, Id, Vec<Id>)>,
    /// Of those, the ones in a lane (file, `after`): where the grid puts
    /// one once all of them completed, which only `--grid` can check.
    pub lane_after: Vec<(PathBuf, Vec<Id>)>,
}

/// Validate `paths`: files are checked as queue entries; a directory stands
/// for its entries (not recursively: a directory inside a queue is itself an
/// invalid entry, as the worker sees it). `.gitkeep` is not a task. The
/// lanes and `blocked` (or a directory or file below `tasks/lanes` or
/// `tasks/blocked`) are walked, and each file is judged by its place too.
pub fn validate(paths: &[PathBuf], rules: &TaskRules) -> Report {
    let mut report = Report::default();
    let mut entries: Vec<(PathBuf, Where)> = Vec::new();
    for p in paths {
        match (std::fs::symlink_metadata(p), root_of(p)) {
            // The lanes and the waiting tasks are laid out in directories:
            // each file is checked, and its place with it, whether the
            // root or a directory below it is named.
            (Ok(m), Some((root, prefix))) if m.is_dir() => {
                let mut found = Vec::new();
                walk_below(p, &prefix, &mut found, &mut report.unreadable);
                entries.extend(found.into_iter().map(|(path, rel)| (path, root.at(rel))));
            }
            // A file named below them: its place too.
            (Ok(_), Some((root, rel))) if !rel.is_empty() => {
                entries.push((p.clone(), root.at(rel)))
            }
            (Ok(m), _) if m.is_dir() => match std::fs::read_dir(p) {
                Ok(dir) => {
                    let mut names: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .filter(|e| e.file_name() != layout::KEEP_FILE)
                        .map(|e| e.path())
                        .collect();
                    names.sort();
                    entries.extend(names.into_iter().map(|n| (n, Where::Anywhere)));
                }
                Err(e) => report.unreadable.push(unreadable(p, &e)),
            },
            (Ok(_), _) => entries.push((p.clone(), Where::Anywhere)),
            (Err(e), _) => report.unreadable.push(unreadable(p, &e)),
        }
    }
    // The same file named twice (a directory and one of its files) is one
    // file, not a duplicate id.
    // Only the directory is resolved: a symlink is an entry of its own (the
    // worker refuses it), not another name for the file it points to.
    let mut unique = std::collections::BTreeSet::new();
    entries.retain(|(p, _)| unique.insert(entry_key(p)));
    // task id -> the first file that claimed it.
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, place) in entries {
        report.checked += 1;
        match check_file(&path, rules).and_then(|t| check_place(&path, &place, t)) {
            Ok(task) => {
                let id = task.task_id.to_string();
                if let Some(first) = seen.get(&id) {
                    report.findings.push(Finding {
                        reason: format!(
                            "field `task_id` {id:?} is already used by {}; task ids must be unique",
                            first.display()
                        ),
                        path,
                        field: Some("task_id"),
                    });
                } else {
                    seen.insert(id.clone(), path.clone());
                    report
                        .warnings
                        .extend(
                            task.likely_mistakes()
                                .into_iter()
                                .map(|(field, meant)| Finding {
                                    path: path.clone(),
                                    field: None,
                                    reason: mistake(field, meant),
                                }),
                        );
                    if !task.after().is_empty() && matches!(place, Where::Lane(_)) {
                        report
                            .lane_after
                            .push((path.clone(), task.after().to_vec()));
                    }
                    if !task.after().is_empty() {
                        report.graph.push((
                            path.clone(),
                            task.task_id.clone(),
                            task.after().to_vec(),
                        ));
                    }
                    report.tasks.push((path, id));
                    report.valid += 1;
                }
            }
            Err(f) => report.findings.push(f),
        }
    }
    // Tasks that wait for each other in a circle could never run.
    let graph: Vec<(Id, Vec<Id>)> = report
        .graph
        .iter()
        .map(|(_, id, after)| (id.clone(), after.clone()))
        .collect();
    for e in deps::check_graph(&graph, |_| true) {
        graph_finding(&mut report, &e);
    }
    report
}

/// The warning for a kept field that was probably meant as `meant`.
pub fn mistake(field: &str, meant: &str) -> String {
    format!(
        "field `{field}` is not one a worker reads (it is kept as it is); did you mean `{meant}`?"
    )
}

/// A graph problem as a finding on the file of the task it names first.
fn graph_finding(report: &mut Report, e: &GraphError) {
    let first = match e {
        GraphError::Unknown { task, .. } => task,
        GraphError::Cycle(ids) => &ids[0],
    };
    after_finding(report, first, e.to_string());
}

/// The task `id` of the graph is invalid by its `after`, for `reason`.
fn after_finding(report: &mut Report, id: &Id, reason: String) {
    let Some(path) = report
        .graph
        .iter()
        .find(|(_, task, _)| task == id)
        .map(|(p, _, _)| p.clone())
    else {
        return;
    };
    if let Some(i) = report.tasks.iter().position(|(p, _)| *p == path) {
        report.tasks.remove(i);
        report.valid -= 1;
    }
    report.findings.push(Finding {
        path,
        field: Some("after"),
        reason,
    });
}

/// Where an entry is, with its directory resolved but not the entry itself.
fn entry_key(p: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return p.to_path_buf();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir)
        .map(|d| d.join(name))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn unreadable(p: &Path, e: &std::io::Error) -> Finding {
    Finding {
        path: p.to_owned(),
        field: None,
        reason: format!("cannot read: {e}"),
    }
}

fn check_file(path: &Path, rules: &TaskRules) -> Result<Task, Finding> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = std::fs::symlink_metadata(path).map_err(|e| unreadable(path, &e))?;
    let kind = if meta.file_type().is_symlink() {
        EntryKind::Symlink
    } else if meta.is_dir() {
        EntryKind::Directory
    } else {
        EntryKind::File
    };
    let bytes = if kind == EntryKind::File {
        match read_regular(path, rules.max_file_bytes as u64) {
            Ok(b) => b,
            Err(ReadError::TooLarge { size, max }) => {
                let e = crate::grid::TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(max).unwrap_or(usize::MAX),
                };
                return Err(Finding {
                    path: path.to_owned(),
                    field: None,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                return Err(Finding {
                    path: path.to_owned(),
                    field: None,
                    reason: e.to_string(),
                });
            }
        }
    } else {
        Vec::new()
    };
    Task::from_entry(&name, kind, &bytes, rules).map_err(|e| Finding {
        path: path.to_owned(),
        field: e.field(),
        reason: e.to_string(),
    })
}
