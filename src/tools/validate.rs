//! `dgrid-worker validate`: the worker's own task rules (`Task::from_entry`)
//! applied to files on disk, so that what a pull request's check accepts is
//! exactly what a worker will run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::grid::task::EntryKind;
use crate::grid::{Task, TaskRules, layout};
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
}

/// Validate `paths`: files are checked as queue entries; a directory stands
/// for its entries (not recursively: a directory inside a queue is itself an
/// invalid entry, as the worker sees it). `.gitkeep` is not a task.
pub fn validate(paths: &[PathBuf], rules: &TaskRules) -> Report {
    let mut report = Report::default();
    let mut entries = Vec::new();
    for p in paths {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
                Ok(dir) => {
                    let mut names: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .filter(|e| e.file_name() != layout::KEEP_FILE)
                        .map(|e| e.path())
                        .collect();
                    names.sort();
                    entries.extend(names);
                }
                Err(e) => report.unreadable.push(unreadable(p, &e)),
            },
            Ok(_) => entries.push(p.clone()),
            Err(e) => report.unreadable.push(unreadable(p, &e)),
        }
    }
    // The same file named twice (a directory and one of its files) is one
    // file, not a duplicate id.
    // Only the directory is resolved: a symlink is an entry of its own (the
    // worker refuses it), not another name for the file it points to.
    let mut unique = std::collections::BTreeSet::new();
    entries.retain(|p| unique.insert(entry_key(p)));
    // task id -> the first file that claimed it.
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in entries {
        report.checked += 1;
        match check_file(&path, rules) {
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
                    report.tasks.push((path, id));
                    report.valid += 1;
                }
            }
            Err(f) => report.findings.push(f),
        }
    }
    report
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
