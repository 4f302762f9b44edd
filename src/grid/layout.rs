//! Where things live in the grid repository. Every path the worker reads or
//! writes is built here, from validated ids only, and so is every name made
//! of two ids (result files, containers): those must stay one-to-one, or two
//! nodes' results, or two nodes' containers, would take each other's place.

use super::label::{Class, ClassError};
use super::task::PRIORITY_MAX;
use super::{Id, Task};
use crate::time::Timestamp;

/// The inbox: a task pushed here by hand (a pull request) is filed into
/// its lane by the first node that reads it. Workers before lanes read
/// only this directory.
pub const QUEUE: &str = "tasks/queue";
/// Queued tasks by priority, class and batch:
/// `tasks/lanes/p<NN>/<class>/<batch>/<task>.json` ([`Place`]).
pub const LANES: &str = "tasks/lanes";
/// Tasks waiting for the tasks they run `after`:
/// `tasks/blocked/<the task waited for>/<task>.json`.
pub const BLOCKED: &str = "tasks/blocked";
pub const IN_PROGRESS: &str = "tasks/in_progress";
pub const COMPLETED: &str = "tasks/completed";
pub const FAILED: &str = "tasks/failed";
pub const NODES: &str = "nodes";

/// Placeholder that keeps an empty directory in git; never a task.
pub const KEEP_FILE: &str = ".gitkeep";

/// The most bytes read of one node record. A record is a few hundred
/// bytes; the largest the configuration allows (its `running` list holds
/// at most `concurrency` ids, and its labels are bounded: `node.rs`) is
/// about 35 KB. A bigger one is not read and counts as no record at all.
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
/// is ambiguous when ids hold `-`: [`result_name_tasks`] still finds them.)
pub const RESULT_SEP: char = '@';

pub fn queue_file(task: &Id) -> String {
    format!("{QUEUE}/{task}.json")
}

/// `tasks/blocked/<parent>/<child>.json`: `child` waits for `parent` (the
/// first of its `after` not finished yet).
pub fn blocked_file(parent: &Id, child: &Id) -> String {
    format!("{BLOCKED}/{parent}/{child}.json")
}

/// The directories a file at `path` makes below the grid's fixed ones
/// (`tasks/<dir>`): for `tasks/lanes/p50/any/B/t.json`, `tasks/lanes/p50`,
/// `tasks/lanes/p50/any` and `tasks/lanes/p50/any/B`. A hostile push can
/// put a file at any of them.
pub fn dirs_made_by(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .skip(2)
        .map(move |(i, _)| &path[..i])
}

/// Where a queued task waits: its lane (priority and class) and its batch
/// (the minute it arrived and who submitted it). Everything the claim
/// order needs is in the path, so a node orders a queue of any size from
/// one listing, reading only the tasks it is about to claim; and each claim
/// rewrites a few small directories, never one the size of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub priority: u8,
    pub class: Class,
    pub batch: Batch,
}

/// Tasks of one submitter (or of none) that arrived in one minute:
/// `20261130T1205` or `20261130T1205-alice`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Batch {
    /// The minute of arrival (UTC), seconds cut.
    pub minute: Timestamp,
    pub submitter: Option<Id>,
}

const MINUTE_FORMAT: &str = "%Y%m%dT%H%M";
const MINUTE_LEN: usize = 13;

impl Batch {
    pub fn new(arrival: Timestamp, submitter: Option<Id>) -> Batch {
        // Not `duration_trunc`: it counts in nanoseconds, fails past the
        // year 2262, and a `queued_at` of 9999 then kept its seconds, a
        // place never equal to its own path's: the task was filed again at
        // every claim, a commit each poll, and never claimed.
        let secs = arrival.timestamp();
        let minute = Timestamp::from_timestamp(secs - secs.rem_euclid(60), 0).unwrap_or(arrival);
        Batch { minute, submitter }
    }

    pub fn dir_name(&self) -> String {
        let minute = self.minute.format(MINUTE_FORMAT);
        match &self.submitter {
            Some(s) => format!("{minute}-{s}"),
            None => minute.to_string(),
        }
    }

    /// Only the form [`Batch::dir_name`] writes.
    pub fn parse(name: &str) -> Option<Batch> {
        let (minute, rest) = (name.get(..MINUTE_LEN)?, name.get(MINUTE_LEN..)?);
        let shape = minute
            .char_indices()
            .all(|(i, c)| if i == 8 { c == 'T' } else { c.is_ascii_digit() });
        if !shape {
            return None;
        }
        let minute = chrono::NaiveDateTime::parse_from_str(&format!("{minute}00"), "%Y%m%dT%H%M%S")
            .ok()?
            .and_utc();
        let submitter = match rest {
            "" => None,
            _ => Some(Id::parse(rest.strip_prefix('-')?).ok()?),
        };
        Some(Batch { minute, submitter })
    }
}

/// Why a path under [`LANES`] is not where a task can be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("is not where a queued task can be: tasks/lanes/p<NN>/<class>/<batch>/<task>.json is")]
    Depth,
    /// A directory listed as one entry: the same tree as one listed before
    /// it (a copy pushed by hand), whose files are those files again.
    #[error(
        "is a copy of another directory of the lanes (the same files, listed there): not where a queued task can be"
    )]
    Copy,
    #[error("is under {0:?}, which is not a priority (p00 to p{PRIORITY_MAX})")]
    Priority(String),
    #[error("is under {name:?}, which is not a class: {reason}")]
    Class { name: String, reason: ClassError },
    #[error(
        "is under {0:?}, which is not a batch (the minute of arrival, as 20261130T1205, then -submitter if any)"
    )]
    Batch(String),
}

impl Place {
    /// Where `task` belongs, if it arrived at `arrival` (its `queued_at`
    /// wins when it has one).
    pub fn of(task: &Task, arrival: Timestamp) -> Place {
        Place {
            priority: task.priority(),
            class: task.class(),
            batch: Batch::new(task.queued_at().unwrap_or(arrival), task.submitter.clone()),
        }
    }

    /// `tasks/lanes/p<NN>/<class>/<batch>`.
    pub fn dir(&self) -> String {
        format!(
            "{LANES}/p{:02}/{}/{}",
            self.priority,
            self.class.dir_name(),
            self.batch.dir_name()
        )
    }

    pub fn file(&self, task: &Id) -> String {
        format!("{}/{task}.json", self.dir())
    }

    /// A path below [`LANES`] (`p50/any/20261130T1205/t.json`): its place,
    /// and the entry's own name.
    pub fn parse(rel: &[u8]) -> Result<(Place, &[u8]), PlaceError> {
        let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
        let [p, class, batch, name] = parts[..] else {
            return Err(PlaceError::Depth);
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let priority = std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.strip_prefix('p'))
            .filter(|d| d.len() == 2 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u8>().ok())
            .filter(|n| *n <= PRIORITY_MAX)
            .ok_or_else(|| PlaceError::Priority(text(p)))?;
        let class_name = std::str::from_utf8(class).map_err(|_| PlaceError::Class {
            name: text(class),
            reason: ClassError::NotCanonical,
        })?;
        let class = Class::parse_dir(class_name).map_err(|reason| PlaceError::Class {
            name: class_name.to_owned(),
            reason,
        })?;
        let batch = std::str::from_utf8(batch)
            .ok()
            .and_then(Batch::parse)
            .ok_or_else(|| PlaceError::Batch(text(batch)))?;
        Ok((
            Place {
                priority,
                class,
                batch,
            },
            name,
        ))
    }
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
/// `-`), which the file's `task_id` must confirm. The rule for one name
/// and one task, which [`result_name_tasks`] (what the look-ups use) is
/// checked against (a unit test, and the property tests).
pub fn result_name_is_for(name: &str, task: &Id) -> NameMatch {
    let Some(stem) = json_stem(name) else {
        return NameMatch::No;
    };
    match result_name_parts(name) {
        Some((_node, task_part, _)) if task_part == task.as_str() => NameMatch::Yes,
        Some(_) => NameMatch::No,
        None => match stem.strip_suffix(task.as_str()) {
            Some(node) if node.len() > 1 && node.ends_with('-') => NameMatch::Candidate,
            _ => NameMatch::No,
        },
    }
}

/// The tasks the result file `name` (in `completed/` or `failed/`) may be
/// for, each with how its name says so: [`NameMatch::Yes`] for the one a
/// name of the current form names; [`NameMatch::Candidate`] for each an
/// older `<node>-<task>.json` name may be for (one per `-` with a node
/// before it; node ids may hold `-`), which the file's `task_id` must
/// confirm. Each pair is what [`result_name_is_for`] says of the name and
/// that task, for every task
/// id (one [`Id::parse`] takes): a look-up by id over many results reads
/// each name once. Only the last [`crate::grid::id::MAX_LEN`] characters
/// can hold one, so a name a pusher made 100 KB long costs what any does.
pub fn result_name_tasks(name: &str) -> Vec<(&str, NameMatch)> {
    let Some(stem) = json_stem(name) else {
        return Vec::new();
    };
    let is_id = |t: &str| Id::parse(t).is_ok();
    if let Some((_, task, _)) = result_name_parts(name) {
        return match is_id(task) {
            true => vec![(task, NameMatch::Yes)],
            false => Vec::new(),
        };
    }
    let tail = stem.len().saturating_sub(crate::grid::id::MAX_LEN + 1);
    stem.match_indices('-')
        .filter(|(at, _)| *at > 0 && *at >= tail && *at + 1 < stem.len())
        .map(|(at, _)| &stem[at + 1..])
        .filter(|t| is_id(t))
        .map(|t| (t, NameMatch::Candidate))
        .collect()
}

/// The parts of a result file's name of the current form,
/// `<node>@<task>.json` or `<node>@<task>@<suffix>.json` (a node's extra
/// result of one task): the node, the task and the suffix, if any.
pub fn result_name_parts(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (node, rest) = json_stem(name)?.split_once(RESULT_SEP)?;
    Some(match rest.split_once(RESULT_SEP) {
        Some((task, suffix)) => (node, task, Some(suffix)),
        None => (node, rest, None),
    })
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

pub use super::id::json_stem;

/// A file-name-safe stem for the result of a queue entry, even one whose name
/// is not a valid id (`"../x.json"`, control characters, ...): the valid stem
/// itself, else `invalid-` and a stable hash of the raw name, so that the
/// result path is always safe and the same entry always maps to one name.
/// An entry deeper in a directory (a lane's) is named by its own name, its
/// last component.
pub fn result_stem_for_entry(name: &str) -> String {
    let own = name.rsplit('/').next().unwrap_or(name);
    match json_stem(own).map(Id::parse) {
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
    fn a_move_makes_the_directories_below_the_grids_own() {
        let made: Vec<&str> = dirs_made_by("tasks/lanes/p50/any/20261130T1205/t.json").collect();
        assert_eq!(
            made,
            [
                "tasks/lanes/p50",
                "tasks/lanes/p50/any",
                "tasks/lanes/p50/any/20261130T1205"
            ]
        );
        let made: Vec<&str> = dirs_made_by("tasks/blocked/p/c.json").collect();
        assert_eq!(made, ["tasks/blocked/p"]);
        assert_eq!(dirs_made_by("tasks/queue/t.json").count(), 0);
    }

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
    fn a_place_is_a_path_and_back() {
        let t = Task::parse(
            br#"{"task_id":"t1","script":"x","timeout_seconds":1,"priority":7,"requires":["gpu","arch=arm64"],"submitter":"ana"}"#,
            &crate::grid::TaskRules::default(),
        )
        .unwrap();
        let at = crate::time::parse("2026-11-30T12:05:42.123Z").unwrap();
        let place = Place::of(&t, at);
        let path = place.file(&t.task_id);
        assert_eq!(
            path,
            "tasks/lanes/p07/arch=arm64+gpu/20261130T1205-ana/t1.json"
        );
        let rel = path.strip_prefix("tasks/lanes/").unwrap();
        let (back, name) = Place::parse(rel.as_bytes()).unwrap();
        assert_eq!(back, place);
        assert_eq!(name, b"t1.json");
        assert_eq!(
            back.batch.minute,
            crate::time::parse("2026-11-30T12:05:00Z").unwrap()
        );
        // queued_at, when the task has one, is its arrival.
        let q = Task::parse(
            br#"{"task_id":"t1","script":"x","timeout_seconds":1,"queued_at":"2026-01-02T03:04:05Z"}"#,
            &crate::grid::TaskRules::default(),
        )
        .unwrap();
        assert_eq!(Place::of(&q, at).dir(), "tasks/lanes/p50/any/20260102T0304");
    }

    proptest::proptest! {
        /// Whatever a valid task says (its priority, labels, submitter,
        /// time), its place is a path that reads back as that place.
        #[test]
        fn every_place_is_a_path_that_reads_back(
            p in 0u8..=99,
            labels in proptest::collection::btree_set("[a-z0-9][a-z0-9._-]{0,7}(=[a-z0-9._-]{1,6})?", 0..5),
            who in proptest::option::of("[A-Za-z0-9][A-Za-z0-9._-]{0,20}"),
            // To the last millisecond of the year 9999, the last a path
            // can say.
            secs in 0i64..253_402_300_800,
            millis in 0u32..1000,
        ) {
            let labels: Vec<&String> = labels.iter().filter(|l| l.as_str() != "any").collect();
            let mut fields = serde_json::json!({"task_id": "t", "script": "x", "timeout_seconds": 1, "priority": p, "requires": labels});
            if let Some(w) = &who {
                fields["submitter"] = w.clone().into();
            }
            let task = Task::parse(fields.to_string().as_bytes(), &crate::grid::TaskRules::default()).unwrap();
            let at = chrono::DateTime::from_timestamp(secs, millis * 1_000_000).unwrap();
            let place = Place::of(&task, at);
            let path = place.file(&task.task_id);
            let rel = path.strip_prefix("tasks/lanes/").unwrap();
            let (back, name) = Place::parse(rel.as_bytes()).unwrap();
            proptest::prop_assert_eq!(back, place);
            proptest::prop_assert_eq!(name, b"t.json");
        }
    }

    #[test]
    fn paths_that_are_no_place_say_why() {
        let bad: &[(&str, &str)] = &[
            ("p50/any/t.json", "tasks/lanes/p<NN>"),
            ("p50/any/20261130T1205/x/t.json", "tasks/lanes/p<NN>"),
            ("p5/any/20261130T1205/t.json", "not a priority"),
            ("p100/any/20261130T1205/t.json", "not a priority"),
            ("pxx/any/20261130T1205/t.json", "not a priority"),
            ("p50/GPU/20261130T1205/t.json", "not a class"),
            ("p50/gpu+arch=x/20261130T1205/t.json", "not a class"),
            ("p50/any/2026113T1205/t.json", "not a batch"),
            ("p50/any/20261130T1299/t.json", "not a batch"),
            ("p50/any/20261130T1205ana/t.json", "not a batch"),
            ("p50/any/20261130T1205-../t.json", "not a batch"),
        ];
        for (rel, want) in bad {
            let e = Place::parse(rel.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{rel}: {e}");
        }
        assert!(Place::parse(b"p00/any/20261130T1205-a.b/x").is_ok());
    }

    #[test]
    fn result_stems_are_always_safe() {
        assert_eq!(result_stem_for_entry("t1.json"), "t1");
        let odd = result_stem_for_entry("..\u{7}x.json");
        assert!(odd.starts_with("invalid-") && Id::parse(&odd).is_ok());
        assert_eq!(odd, result_stem_for_entry("..\u{7}x.json"));
        assert_ne!(odd, result_stem_for_entry("notes.txt"));
        assert_eq!(result_stem_for_entry("p50/any/20261130T1205/t1.json"), "t1");
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
    fn the_tasks_a_result_name_may_be_for_are_those_it_matches() {
        let names = [
            "a@b-c.json",
            "a@b-c@1700.json",
            "a-b@c.json",
            "a-b-c.json",
            "b-c.json",
            "-b-c.json",
            "a--c.json",
            "a-b-.json",
            "abc.json",
            "a-b.txt",
        ];
        let ids = ["a", "b", "c", "b-c", "-c", "c@1700", "b-", "abc", "a-b-c"];
        for name in names {
            let tasks = result_name_tasks(name);
            for id in ids {
                let Ok(task) = Id::parse(id) else { continue };
                let listed = tasks
                    .iter()
                    .find(|(t, _)| *t == id)
                    .map_or(NameMatch::No, |(_, m)| *m);
                assert_eq!(listed, result_name_is_for(name, &task), "{name} for {id}");
            }
        }
        // A name of 100,000 dashes and letters: only ids, from its tail.
        let long = format!("{}x.json", "a-".repeat(50_000));
        let tasks = result_name_tasks(&long);
        assert!(tasks.len() <= 33, "{}", tasks.len());
        assert!(tasks.iter().all(|(t, _)| Id::parse(t).is_ok()));
        assert!(tasks.contains(&("x", NameMatch::Candidate)));
    }

    #[test]
    fn container_names_of_dashed_ids_do_not_collide() {
        assert_eq!(container_name("a-b", "c", 1), "dgrid-3-a-b-c-1");
        assert_eq!(container_name("a", "b-c", 1), "dgrid-1-a-b-c-1");
    }
}
