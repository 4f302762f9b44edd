//! `dgrid-worker validate`: the worker's own task rules (`Task::from_entry`)
//! applied to files on disk, so that what a pull request's check accepts is
//! exactly what a worker will run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::grid::deps::{self, GraphError};
use crate::grid::layout::Place;
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskRules, layout};
use crate::tools::escape::untrusted;

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
    /// Paths that could not be read at all (missing, permissions).
    pub unreadable: Vec<Finding>,
    /// The valid tasks: (file, task id).
    pub tasks: Vec<(PathBuf, String)>,
    /// The valid tasks that run after others: (file, task id, `after`).
    pub graph: Vec<(PathBuf, Id, Vec<Id>)>,
}

/// Where an entry given to `validate` sits, as far as its place says
/// something about it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Where {
    /// A file on its own, or in the inbox (`tasks/queue/`): anywhere goes.
    Anywhere,
    /// Below `tasks/lanes/`, at this path below it.
    Lane(String),
    /// Below `tasks/blocked/`, at this path below it.
    Blocked(String),
}

/// The files below `dir`, at any depth, with their paths below it.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>, problems: &mut Vec<Finding>) {
    fn go(
        root: &Path,
        dir: &Path,
        depth: usize,
        out: &mut Vec<(PathBuf, String)>,
        bad: &mut Vec<Finding>,
    ) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                bad.push(unreadable(dir, &e));
                return;
            }
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != layout::KEEP_FILE)
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            // Deeper than a lane's tasks is no place for one: listed, and
            // refused by its place, not walked into without end.
            if is_dir && depth < 4 {
                go(root, &p, depth + 1, out, bad);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((p, rel));
            }
        }
    }
    go(dir, dir, 1, out, problems);
}

/// Validate `paths`: files are checked as queue entries; a directory stands
/// for its entries (not recursively: a directory inside a queue is itself an
/// invalid entry, as the worker sees it). `.gitkeep` is not a task.
pub fn validate(paths: &[PathBuf], rules: &TaskRules) -> Report {
    let mut report = Report::default();
    let mut entries: Vec<(PathBuf, Where)> = Vec::new();
    for p in paths {
        let named = p.file_name().and_then(|n| n.to_str());
        match std::fs::symlink_metadata(p) {
            // The lanes and the waiting tasks are laid out in directories:
            // each file is checked, and its place with it.
            Ok(m) if m.is_dir() && matches!(named, Some("lanes" | "blocked")) => {
                let mut found = Vec::new();
                walk(p, &mut found, &mut report.unreadable);
                let lanes = named == Some("lanes");
                entries.extend(found.into_iter().map(|(path, rel)| {
                    let w = if lanes {
                        Where::Lane(rel)
                    } else {
                        Where::Blocked(rel)
                    };
                    (path, w)
                }));
            }
            Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
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
            Ok(_) => entries.push((p.clone(), Where::Anywhere)),
            Err(e) => report.unreadable.push(unreadable(p, &e)),
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

/// A graph problem as a finding on the file of the task it names first.
fn graph_finding(report: &mut Report, e: &GraphError) {
    let first = match e {
        GraphError::Unknown { task, .. } => task,
        GraphError::Cycle(ids) => &ids[0],
    };
    let Some(path) = report
        .graph
        .iter()
        .find(|(_, id, _)| id == first)
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
        reason: e.to_string(),
    });
}

/// A task's place says something of it: a lane's path its priority, class
/// and batch; a waiting task's directory the task it waits for. A file
/// elsewhere than its fields say is refused here, where a person can move
/// it (a node that meets one moves it itself).
fn check_place(path: &Path, place: &Where, task: Task) -> Result<Task, Finding> {
    let finding = |field: Option<&'static str>, reason: String| Finding {
        path: path.to_owned(),
        field,
        reason,
    };
    match place {
        Where::Anywhere => Ok(task),
        Where::Lane(rel) => {
            let (at, _) = Place::parse(rel.as_bytes()).map_err(|e| finding(None, e.to_string()))?;
            if !task.after().is_empty() {
                return Err(finding(
                    Some("after"),
                    format!(
                        "a task that runs after others waits in {}/<the first of them>/, not in a lane",
                        layout::BLOCKED
                    ),
                ));
            }
            let home = Place::of(&task, at.batch.minute);
            if home != at {
                return Err(finding(
                    None,
                    format!(
                        "is filed under {}, but its fields (priority, requires, submitter, queued_at) put it in {}",
                        at.dir(),
                        home.dir()
                    ),
                ));
            }
            Ok(task)
        }
        Where::Blocked(rel) => {
            let parent = match rel.split('/').collect::<Vec<_>>()[..] {
                [p, _] => Id::parse(p).ok(),
                _ => None,
            };
            let Some(parent) = parent else {
                return Err(finding(
                    None,
                    format!(
                        "is not where a waiting task can be: {}/<the task it waits for>/<task>.json is",
                        layout::BLOCKED
                    ),
                ));
            };
            if !task.after().contains(&parent) {
                return Err(finding(
                    Some("after"),
                    format!("waits under `{parent}`, which its `after` does not name"),
                ));
            }
            Ok(task)
        }
    }
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

/// Check the valid tasks of `report` against the grid checked out at `grid`:
/// an id that is running (`in_progress/`) or already has a result would be
/// run a second time. A pull request's check sees what `submit` refuses.
pub fn check_against_grid(report: &mut Report, grid: &Path) {
    use std::collections::BTreeSet;
    let ids: BTreeSet<&str> = report.tasks.iter().map(|(_, id)| id.as_str()).collect();
    // id -> where it is in use already.
    let mut in_use: BTreeMap<String, String> = BTreeMap::new();
    for id in &ids {
        let claim = format!("{}/{id}.json", layout::IN_PROGRESS);
        if grid.join(&claim).exists() {
            in_use.insert(id.to_string(), format!("is running: {claim}"));
        }
    }
    // Results are named <node>@<task>.json, which says whose they are; an
    // older <node>-<task>.json name is only a candidate until the file's
    // task_id says so. One directory listing, whatever the number of tasks
    // checked.
    let parsed: Vec<crate::grid::Id> = ids
        .iter()
        .filter_map(|id| crate::grid::Id::parse(id).ok())
        .collect();
    for dir in [layout::COMPLETED, layout::FAILED] {
        let Ok(entries) = std::fs::read_dir(grid.join(dir)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut candidates = Vec::new();
            for id in &parsed {
                match layout::result_name_is_for(&name, id) {
                    layout::NameMatch::Yes => {
                        in_use
                            .entry(id.to_string())
                            .or_insert_with(|| format!("already has a result: {dir}/{name}"));
                    }
                    layout::NameMatch::Candidate => candidates.push(id.as_str()),
                    layout::NameMatch::No => {}
                }
            }
            if candidates.is_empty() {
                continue;
            }
            let task_id = read_regular(&e.path(), layout::MAX_RESULT_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["task_id"].as_str().map(str::to_owned));
            if let Some(id) = task_id.filter(|t| candidates.contains(&t.as_str())) {
                in_use
                    .entry(id)
                    .or_insert_with(|| format!("already has a result: {dir}/{name}"));
            }
        }
    }
    // A task that runs after another the grid has never heard of would
    // fail at once.
    let graph: Vec<(Id, Vec<Id>)> = report
        .graph
        .iter()
        .map(|(_, id, after)| (id.clone(), after.clone()))
        .collect();
    let on_grid = known_ids(grid, &graph);
    for e in deps::check_graph(&graph, |p| on_grid.contains(p)) {
        if matches!(e, GraphError::Unknown { .. }) {
            graph_finding(report, &e);
        }
    }
    let tasks = std::mem::take(&mut report.tasks);
    for (path, id) in tasks {
        match in_use.get(&id) {
            Some(where_) => {
                report.valid -= 1;
                report.findings.push(Finding {
                    reason: format!("field `task_id` {id:?} {where_}; task ids must be new"),
                    path,
                    field: Some("task_id"),
                });
            }
            None => report.tasks.push((path, id)),
        }
    }
}

/// Of the ids `graph`'s tasks run after, those the grid checked out at
/// `grid` holds: queued, waiting, running, or with a result.
fn known_ids(grid: &Path, graph: &[(Id, Vec<Id>)]) -> std::collections::BTreeSet<Id> {
    use std::collections::BTreeSet;
    let wanted: BTreeSet<&Id> = graph.iter().flat_map(|(_, a)| a).collect();
    let mut known = BTreeSet::new();
    if wanted.is_empty() {
        return known;
    }
    let stem_id = |name: &str| layout::json_stem(name).and_then(|s| Id::parse(s).ok());
    for dir in [layout::QUEUE, layout::IN_PROGRESS] {
        if let Ok(entries) = std::fs::read_dir(grid.join(dir)) {
            known.extend(
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| stem_id(&e.file_name().to_string_lossy())),
            );
        }
    }
    for dir in [layout::LANES, layout::BLOCKED] {
        let mut found = Vec::new();
        walk(&grid.join(dir), &mut found, &mut Vec::new());
        known.extend(
            found
                .iter()
                .filter_map(|(p, _)| stem_id(&p.file_name()?.to_string_lossy())),
        );
    }
    for dir in [layout::COMPLETED, layout::FAILED] {
        let Ok(entries) = std::fs::read_dir(grid.join(dir)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            for id in &wanted {
                match layout::result_name_is_for(&name, id) {
                    layout::NameMatch::Yes => {
                        known.insert((*id).clone());
                    }
                    layout::NameMatch::Candidate => {
                        let task_id = read_regular(&e.path(), layout::MAX_RESULT_BYTES)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .and_then(|v| v["task_id"].as_str().map(str::to_owned));
                        if task_id.as_deref() == Some(id.as_str()) {
                            known.insert((*id).clone());
                        }
                    }
                    layout::NameMatch::No => {}
                }
            }
        }
    }
    known.retain(|id| wanted.contains(id));
    known
}

/// Why a file given on the command line was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {size} bytes; at most {max} are allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// Read a file named on the command line, bounded: only a regular file
/// (a FIFO would block for ever, `/dev/zero` never end), and only if it is
/// at most `cap` bytes. Opened without blocking and checked on the opened
/// file itself, so nothing swapped in between the check and the read gets
/// read instead.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("directory")
    } else if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(kind) = kind {
        return Err(ReadError::NotRegular(kind));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            max: cap,
        });
    }
    // The file may grow while it is read: never take more than the cap.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            max: cap,
        });
    }
    Ok(bytes)
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

/// A GitHub Actions `::error` annotation for a finding. File names come from
/// a pull request: they are escaped by the one rule for grid text
/// (`escape::untrusted`: no line break, no control character survives),
/// then encoded as the runner documents for its properties and data.
pub fn github_annotation(f: &Finding) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    let title = match f.field {
        Some(field) => format!("invalid task: {field}"),
        None => "invalid task".to_owned(),
    };
    format!(
        "::error file={},title={}::{}",
        property(&untrusted(&f.path.to_string_lossy())),
        property(&title),
        data(&untrusted(&f.reason))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_cannot_be_broken_out_of() {
        let f = Finding {
            path: "tasks/queue/a,b:c%\n::stop-commands::x.json".into(),
            field: Some("script"),
            reason: "bad\n::add-mask::x".into(),
        };
        let a = github_annotation(&f);
        assert_eq!(a.lines().count(), 1, "{a}");
        assert!(
            a.starts_with("::error file=tasks/queue/a%2Cb%3Ac%25\\n%3A%3Astop-commands"),
            "{a}"
        );
        assert!(a.ends_with("::bad\\n::add-mask::x"), "{a}");
        // The plain line printed before it is one line too.
        let line = f.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\n'));
    }
}
