//! The archive rule: which results leave `main` for the `archive` branch,
//! and under which name they land there. Pure.
//!
//! Results move to the same path on the archive (`tasks/completed/x.json`
//! stays `tasks/completed/x.json`), so a lookup is "main, else archive, same
//! path". Keeping `main`'s result directories small is what keeps a push's
//! cost flat as a grid ages (BENCHMARKS.md, Growth): the server walks the whole tree
//! of every commit pushed to it.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::{self, Timestamp};

/// The branch results are moved to.
pub const ARCHIVE_BRANCH: &str = "archive";

/// How many results stay on `main` by default: enough for the dashboard
/// and for a person looking at recent work, small enough that a tree of
/// this size costs a push next to nothing.
pub const DEFAULT_KEEP: usize = 1000;

/// A result file on `main`: its directory (`tasks/completed` or
/// `tasks/failed`), its name, the object it is (compared, never read),
/// and the `timestamp` it says it was written at, if it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<O> {
    pub dir: &'static str,
    pub name: Vec<u8>,
    pub object: O,
    pub timestamp: Option<Timestamp>,
}

/// The `timestamp` field of a result file; `None` when the file is not a
/// JSON object with an RFC 3339 `timestamp` (such a file counts as oldest).
pub fn timestamp_of(bytes: &[u8]) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        timestamp: String,
    }
    let stamp: Stamp = serde_json::from_slice(bytes).ok()?;
    time::parse(&stamp.timestamp)
}

/// All results but the newest `keep`, oldest first. Unreadable ones are
/// oldest; ties are broken by directory and name, so that two archivers
/// looking at the same tip choose the same files.
pub fn select<O>(mut results: Vec<Stored<O>>, keep: usize) -> Vec<Stored<O>> {
    results.sort_by(|a, b| (a.timestamp, a.dir, &a.name).cmp(&(b.timestamp, b.dir, &b.name)));
    let moving = results.len().saturating_sub(keep);
    results.truncate(moving);
    results
}

/// Where one result goes in its archive directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Add it under this name (its own, or a free suffixed one when a
    /// different file already has its name).
    Move { to: Vec<u8> },
    /// The same file is already archived under this name (an earlier run
    /// whose main update this one repeats): only remove it from `main`.
    AlreadyThere { at: Vec<u8> },
}

/// Place the results `moving` of one directory into that directory of the
/// archive, whose entries are `archived` (name to object). A name taken by
/// a different file gets the first free `<stem>@2.json`, `<stem>@3.json`,
/// ...; taken also means taken by an earlier result of this same move. A
/// name holding the very same object means "archived already".
pub fn place<O: PartialEq>(
    moving: &[Stored<O>],
    archived: &BTreeMap<Vec<u8>, O>,
) -> Vec<Placement> {
    let mut taken: BTreeSet<Vec<u8>> = BTreeSet::new();
    moving
        .iter()
        .map(|r| {
            for n in 1.. {
                let name = suffixed(&r.name, n);
                match archived.get(&name) {
                    Some(o) if *o == r.object && !taken.contains(&name) => {
                        taken.insert(name.clone());
                        return Placement::AlreadyThere { at: name };
                    }
                    Some(_) => continue,
                    None if taken.contains(&name) => continue,
                    None => {
                        taken.insert(name.clone());
                        return Placement::Move { to: name };
                    }
                }
            }
            unreachable!("some suffix is free")
        })
        .collect()
}

/// `name` itself for `n = 1`; else `@n` before its `.json` (or at its end,
/// for a name without one): `a.json`, `a@2.json`, `a@3.json`. `@` as in
/// `layout::extra_result_stem`: no task id holds it, so a suffixed name is
/// never read as another task's result.
pub fn suffixed(name: &[u8], n: u32) -> Vec<u8> {
    if n == 1 {
        return name.to_vec();
    }
    let (stem, ext) = match name.strip_suffix(b".json") {
        Some(stem) if !stem.is_empty() => (stem, &b".json"[..]),
        _ => (name, &b""[..]),
    };
    let mut out = stem.to_vec();
    out.extend_from_slice(format!("{}{n}", crate::grid::layout::RESULT_SEP).as_bytes());
    out.extend_from_slice(ext);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::layout::{COMPLETED, FAILED};

    fn at(s: &str) -> Option<Timestamp> {
        time::parse(s)
    }

    fn stored(dir: &'static str, name: &str, object: u32, ts: Option<&str>) -> Stored<u32> {
        Stored {
            dir,
            name: name.as_bytes().to_vec(),
            object,
            timestamp: ts.and_then(at),
        }
    }

    #[test]
    fn timestamps_are_read_from_results_and_bad_files_have_none() {
        let t = timestamp_of(br#"{"task_id":"t","timestamp":"2026-01-02T03:04:05.000Z","x":1}"#);
        assert_eq!(t, at("2026-01-02T03:04:05Z"));
        assert_eq!(timestamp_of(b"{not json"), None);
        assert_eq!(timestamp_of(br#"{"timestamp":"yesterday"}"#), None);
        assert_eq!(timestamp_of(br#"{"timestamp":5}"#), None);
        assert_eq!(timestamp_of(b"[]"), None);
    }

    #[test]
    fn the_newest_are_kept_across_both_directories_and_unreadable_go_first() {
        let results = vec![
            stored(COMPLETED, "n-a.json", 1, Some("2026-01-03T00:00:00Z")),
            stored(FAILED, "n-b.json", 2, Some("2026-01-05T00:00:00Z")),
            stored(COMPLETED, "junk.json", 3, None),
            stored(COMPLETED, "n-c.json", 4, Some("2026-01-01T00:00:00Z")),
            stored(FAILED, "n-d.json", 5, Some("2026-01-04T00:00:00Z")),
        ];
        let moving = select(results.clone(), 2);
        let names: Vec<&[u8]> = moving.iter().map(|r| &r.name[..]).collect();
        assert_eq!(names, [&b"junk.json"[..], b"n-c.json", b"n-a.json"]);
        assert!(select(results.clone(), 5).is_empty());
        assert!(select(results.clone(), 99).is_empty());
        assert_eq!(select(results, 0).len(), 5);
    }

    #[test]
    fn equal_timestamps_are_ordered_by_path() {
        let same = Some("2026-01-01T00:00:00Z");
        let results = vec![
            stored(FAILED, "a.json", 1, same),
            stored(COMPLETED, "b.json", 2, same),
            stored(COMPLETED, "a.json", 3, same),
        ];
        let moving = select(results, 1);
        assert_eq!(
            moving
                .iter()
                .map(|r| (r.dir, &r.name[..]))
                .collect::<Vec<_>>(),
            [(COMPLETED, &b"a.json"[..]), (COMPLETED, b"b.json")]
        );
    }

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(suffixed(b"n-t1.json", 1), b"n-t1.json");
        assert_eq!(suffixed(b"n-t1.json", 2), b"n-t1@2.json");
        assert_eq!(suffixed(b"n-t1.json", 10), b"n-t1@10.json");
        assert_eq!(suffixed(b"notes", 2), b"notes@2");
        assert_eq!(suffixed(b".json", 2), b".json@2");
        assert_eq!(suffixed(b"caf\xe9.json", 3), b"caf\xe9@3.json");
    }

    #[test]
    fn clashes_get_free_names_and_identical_files_are_already_there() {
        let archived: BTreeMap<Vec<u8>, u32> = [
            (b"a.json".to_vec(), 1),
            (b"b.json".to_vec(), 9),
            (b"b@2.json".to_vec(), 8),
            (b"c.json".to_vec(), 7),
            (b"c@2.json".to_vec(), 3),
        ]
        .into_iter()
        .collect();
        let moving = vec![
            stored(COMPLETED, "a.json", 1, None), // identical: already there
            stored(COMPLETED, "b.json", 2, None), // b, b@2 taken: b@3
            stored(COMPLETED, "c.json", 3, None), // identical under c@2
            stored(COMPLETED, "d.json", 4, None), // free
            stored(COMPLETED, "b@3.json", 5, None), // taken by b's move: b@3@2
        ];
        assert_eq!(
            place(&moving, &archived),
            vec![
                Placement::AlreadyThere {
                    at: b"a.json".to_vec()
                },
                Placement::Move {
                    to: b"b@3.json".to_vec()
                },
                Placement::AlreadyThere {
                    at: b"c@2.json".to_vec()
                },
                Placement::Move {
                    to: b"d.json".to_vec()
                },
                Placement::Move {
                    to: b"b@3@2.json".to_vec()
                },
            ]
        );
    }

    #[test]
    fn two_results_never_land_on_one_name() {
        // Two identical files on main for one archived name: only one can
        // be "the same file"; the other gets a name of its own.
        let archived: BTreeMap<Vec<u8>, u32> = [(b"x.json".to_vec(), 1)].into_iter().collect();
        let moving = vec![
            stored(COMPLETED, "x.json", 1, None),
            stored(COMPLETED, "x.json", 1, None),
        ];
        let placed = place(&moving, &archived);
        assert_eq!(
            placed,
            vec![
                Placement::AlreadyThere {
                    at: b"x.json".to_vec()
                },
                Placement::Move {
                    to: b"x@2.json".to_vec()
                }
            ]
        );
    }
}
