//! Where things live in the grid repository. Every path the worker reads or
//! writes is built here, from validated ids only.

use super::Id;

pub const QUEUE: &str = "tasks/queue";
pub const IN_PROGRESS: &str = "tasks/in_progress";
pub const COMPLETED: &str = "tasks/completed";
pub const FAILED: &str = "tasks/failed";
pub const NODES: &str = "nodes";

/// Placeholder that keeps an empty directory in git; never a task.
pub const KEEP_FILE: &str = ".gitkeep";

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
/// path, and a result's origin is visible in a directory listing.
pub fn result_file(success: bool, node: &Id, result_stem: &str) -> String {
    let dir = if success { COMPLETED } else { FAILED };
    format!("{dir}/{node}-{result_stem}.json")
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
        assert_eq!(result_file(true, &n, "t1"), "tasks/completed/n1-t1.json");
        assert_eq!(result_file(false, &n, "t1"), "tasks/failed/n1-t1.json");
    }

    #[test]
    fn result_stems_are_always_safe() {
        assert_eq!(result_stem_for_entry("t1.json"), "t1");
        let odd = result_stem_for_entry("..\u{7}x.json");
        assert!(odd.starts_with("invalid-") && Id::parse(&odd).is_ok());
        assert_eq!(odd, result_stem_for_entry("..\u{7}x.json"));
        assert_ne!(odd, result_stem_for_entry("notes.txt"));
    }
}
