//! Where things live in the grid repository. Every path the worker reads or
//! writes is built here, from validated ids only, and so is every name made
//! of two ids (result files, containers): those must stay one-to-one, or two
//! nodes' results, or two nodes' containers, would take each other's place.

use super::Id;

pub const QUEUE: &str = "tasks/queue";
pub const IN_PROGRESS: &str = "tasks/in_progress";
pub const COMPLETED: &str = "tasks/completed";
pub const FAILED: &str = "tasks/failed";
pub const NODES: &str = "nodes";

/// Placeholder that keeps an empty directory in git; never a task.
pub const KEEP_FILE: &str = ".gitkeep";

/// The most bytes read of one node record. A record is a few hundred
/// bytes (its `running` list holds at most `concurrency` ids); a bigger one
/// is not read and counts as no record at all.
pub const MAX_NODE_RECORD_BYTES: u64 = 64 * 1024;

/// The most bytes read of one result file. A result keeps at most
/// `output_limit_bytes` (10 KiB by default) of each stream, which JSON
/// escaping can grow sixfold; a bigger file is listed, never read.
pub const MAX_RESULT_BYTES: u64 = 1024 * 1024;

/// Between the node and the task in a result's name, and before a suffix
/// that tells two results of one task by one node apart. Not in the id
/// alphabet, so a result name splits one way only: `a-b@c.json` is node
/// `a-b`'s result of task `c`, `a@b-c.json` node `a`'s of task `b-c`.
/// (Results written before this rule are named `<node>-<task>.json`, which
/// is ambiguous when ids hold `-`: [`result_name_is_for`] still finds them.)
pub const RESULT_SEP: char = '@';

pub fn queue_file(task: &Id) -> String {
    format!("{QUEUE}/{task}.json")
}

pub fn in_progress_file(task: &Id) -> String {
    format!("{IN_PROGRESS}/{task}.json")
}

pub fn node_file(node: &Id) -> String {
    format!("{NODES}/{node}.json")
}

/// Result files carry the node id so that two nodes can never write the same
/// path, and a result's origin is visible in a directory listing:
/// `<node>@<stem>.json`, where the stem is a task id (or, for an entry that
/// is not a valid task, [`result_stem_for_entry`]).
pub fn result_file(success: bool, node: &Id, result_stem: &str) -> String {
    let dir = if success { COMPLETED } else { FAILED };
    format!("{dir}/{node}{RESULT_SEP}{result_stem}.json")
}

/// The stem of the `n`th extra result of one task by one node (the same id
/// submitted again, or two entries with one stem rejected in one commit):
/// `<stem>@<n>`, which no task id can be.
pub fn extra_result_stem(result_stem: &str, n: impl std::fmt::Display) -> String {
    format!("{result_stem}{RESULT_SEP}{n}")
}

/// Could the result file `name` (in `completed/` or `failed/`) be one of
/// task `task`'s? A name of the current form says so by itself; an older
/// `<node>-<task>.json` name only makes it a candidate (node ids may hold
/// `-`), which the file's `task_id` must confirm.
pub fn result_name_is_for(name: &str, task: &Id) -> NameMatch {
    let Some(stem) = json_stem(name) else {
        return NameMatch::No;
    };
    match stem.split_once(RESULT_SEP) {
        Some((_node, rest)) => {
            let task_part = rest.split(RESULT_SEP).next().unwrap_or(rest);
            if task_part == task.as_str() {
                NameMatch::Yes
            } else {
                NameMatch::No
            }
        }
        None => match stem.strip_suffix(task.as_str()) {
            Some(node) if node.len() > 1 && node.ends_with('-') => NameMatch::Candidate,
            _ => NameMatch::No,
        },
    }
}

/// What a result's name says about which task it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// Named for this task (the current, one-to-one form).
    Yes,
    /// An older name that may be this task's: read its `task_id`.
    Candidate,
    No,
}

/// The name of the container that runs attempt `attempt` of `task` on
/// `node`: `dgrid-<length of node>-<node>-<task>-<attempt>`. Engines allow
/// only `[A-Za-z0-9_.-]` in names, every one of which ids may hold, so no
/// separator can be reserved; the node's length says where it ends, and the
/// attempt (digits) is what follows the last `-`. Hence one-to-one: `a-b`
/// with task `c` is `dgrid-3-a-b-c-1`, `a` with task `b-c` `dgrid-1-a-b-c-1`.
pub fn container_name(node: &str, task: &str, attempt: u32) -> String {
    format!("dgrid-{}-{node}-{task}-{attempt}", node.len())
}

/// The stem of a queue entry's name, if it is a `.json` name.
pub fn json_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".json").filter(|s| !s.is_empty())
}

/// A file-name-safe stem for the result of a queue entry, even one whose name
/// is not a valid id (`"../x.json"`, control characters, ...): the valid stem
/// itself, else `invalid-` and a stable hash of the raw name, so that the
/// result path is always safe and the same entry always maps to one name.
pub fn result_stem_for_entry(name: &str) -> String {
    match json_stem(name).map(Id::parse) {
        Some(Ok(id)) => id.to_string(),
        _ => format!("invalid-{:016x}", fnv1a(name.as_bytes())),
    }
}

/// FNV-1a: a stable, dependency-free hash for naming, not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_from_ids() {
        let t = Id::parse("t1").unwrap();
        let n = Id::parse("n1").unwrap();
        assert_eq!(queue_file(&t), "tasks/queue/t1.json");
        assert_eq!(in_progress_file(&t), "tasks/in_progress/t1.json");
        assert_eq!(node_file(&n), "nodes/n1.json");
        assert_eq!(result_file(true, &n, "t1"), "tasks/completed/n1@t1.json");
        assert_eq!(result_file(false, &n, "t1"), "tasks/failed/n1@t1.json");
        assert_eq!(
            result_file(true, &n, &extra_result_stem("t1", 17)),
            "tasks/completed/n1@t1@17.json"
        );
    }

    #[test]
    fn result_stems_are_always_safe() {
        assert_eq!(result_stem_for_entry("t1.json"), "t1");
        let odd = result_stem_for_entry("..\u{7}x.json");
        assert!(odd.starts_with("invalid-") && Id::parse(&odd).is_ok());
        assert_eq!(odd, result_stem_for_entry("..\u{7}x.json"));
        assert_ne!(odd, result_stem_for_entry("notes.txt"));
    }

    #[test]
    fn result_names_are_found_in_both_forms() {
        let t = Id::parse("b-c").unwrap();
        assert_eq!(result_name_is_for("a@b-c.json", &t), NameMatch::Yes);
        assert_eq!(result_name_is_for("a@b-c@1700.json", &t), NameMatch::Yes);
        assert_eq!(result_name_is_for("a-b@c.json", &t), NameMatch::No);
        assert_eq!(result_name_is_for("a@b-c-d.json", &t), NameMatch::No);
        // Older names: a candidate, to be confirmed by the file.
        assert_eq!(result_name_is_for("a-b-c.json", &t), NameMatch::Candidate);
        assert_eq!(result_name_is_for("b-c.json", &t), NameMatch::No);
        assert_eq!(result_name_is_for("-b-c.json", &t), NameMatch::No);
    }

    #[test]
    fn container_names_of_dashed_ids_do_not_collide() {
        assert_eq!(container_name("a-b", "c", 1), "dgrid-3-a-b-c-1");
        assert_eq!(container_name("a", "b-c", 1), "dgrid-1-a-b-c-1");
    }
}
