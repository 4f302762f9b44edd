//! Where a task file sits, and what its place says of it: a file on its
//! own or in the inbox may be anything; one below `tasks/lanes/` must be
//! filed where its fields put it; one below `tasks/blocked/` must wait for
//! a task its `after` names. Also the walk of those directories.

use std::path::{Path, PathBuf};

use super::{Finding, unreadable};
use crate::grid::layout::Place;
use crate::grid::{Id, Task, layout};

/// Where an entry given to `validate` sits, as far as its place says
/// something about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Where {
    /// A file on its own, or in the inbox (`tasks/queue/`): anywhere goes.
    Anywhere,
    /// Below `tasks/lanes/`, at this path below it.
    Lane(String),
    /// Below `tasks/blocked/`, at this path below it.
    Blocked(String),
}

/// What a path given to `validate` is, by its name: the lanes or the
/// waiting tasks (`tasks/lanes`, or a directory named `lanes` on its own),
/// a directory or file below them (the place is the path below the root:
/// `tasks/lanes/p50/any` is a class's lane), or anything else (`None`).
pub(super) fn root_of(path: &Path) -> Option<(Root, String)> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let root = |name: &str| match name {
        "lanes" => Some(Root::Lanes),
        "blocked" => Some(Root::Blocked),
        _ => None,
    };
    // The last `tasks/lanes` or `tasks/blocked` on the path (a checkout
    // may sit below a directory of those names; nothing below a root is
    // named so), or else a directory of that name itself.
    match (1..parts.len()).rfind(|&i| parts[i - 1] == "tasks" && root(parts[i]).is_some()) {
        Some(i) => Some((root(parts[i])?, parts[i + 1..].join("/"))),
        None => Some((root(parts.last()?)?, String::new())),
    }
}

/// The two directories whose layout says something of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    Lanes,
    Blocked,
}

impl Root {
    pub(super) fn at(self, rel: String) -> Where {
        match self {
            Root::Lanes => Where::Lane(rel),
            Root::Blocked => Where::Blocked(rel),
        }
    }
}

/// The files below `dir`, at any depth, with their paths below it.
pub(super) fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>, problems: &mut Vec<Finding>) {
    walk_below(dir, "", out, problems);
}

/// The files below `dir`, which is at `prefix` below its root (`""` for
/// the root itself), with their paths below the root.
pub(super) fn walk_below(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(PathBuf, String)>,
    problems: &mut Vec<Finding>,
) {
    fn go(
        root: &Path,
        prefix: &str,
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
                go(root, prefix, &p, depth + 1, out, bad);
            } else {
                let below = p
                    .strip_prefix(root)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rel = if prefix.is_empty() {
                    below
                } else {
                    format!("{prefix}/{below}")
                };
                out.push((p, rel));
            }
        }
    }
    let depth = 1 + prefix.split('/').filter(|c| !c.is_empty()).count();
    go(dir, prefix, dir, depth, out, problems);
}

/// A task's place says something of it: a lane's path its priority, class
/// and batch; a waiting task's directory the task it waits for. A file
/// elsewhere than its fields say is refused here, where a person can move
/// it (a node that meets one moves it itself).
pub(super) fn check_place(path: &Path, place: &Where, task: Task) -> Result<Task, Finding> {
    let finding = |field: Option<&'static str>, reason: String| Finding {
        path: path.to_owned(),
        field,
        reason,
    };
    match place {
        Where::Anywhere => Ok(task),
        Where::Lane(rel) => {
            let (at, _) = Place::parse(rel.as_bytes()).map_err(|e| finding(None, e.to_string()))?;
            // One with an `after` is where a node puts it once each of
            // those completed: `--grid` checks that (`checkout`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_says_which_root_it_is_below() {
        let at = |p: &str| root_of(Path::new(p));
        assert_eq!(at("tasks/lanes"), Some((Root::Lanes, String::new())));
        assert_eq!(
            at("/g/tasks/blocked/"),
            Some((Root::Blocked, String::new()))
        );
        assert_eq!(at("lanes"), Some((Root::Lanes, String::new())));
        assert_eq!(
            at("./tasks/lanes/p50/any"),
            Some((Root::Lanes, "p50/any".into()))
        );
        assert_eq!(
            at("g/tasks/blocked/b-1/t.json"),
            Some((Root::Blocked, "b-1/t.json".into()))
        );
        // A class named like a root below a lane is the lane's, not a root.
        assert_eq!(
            at("tasks/lanes/p50/lanes/x"),
            Some((Root::Lanes, "p50/lanes/x".into()))
        );
        assert_eq!(
            at("tasks/lanes/p50/lanes"),
            Some((Root::Lanes, "p50/lanes".into()))
        );
        assert_eq!(
            at("/srv/tasks/lanes/grid/tasks/lanes/p50/any"),
            Some((Root::Lanes, "p50/any".into()))
        );
        assert_eq!(at("tasks/queue/t.json"), None);
        assert_eq!(at("t.json"), None);
    }
}
