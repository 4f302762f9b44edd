//! The peers' node records as a node reads them, by blob: what each
//! says, and who signed it (`trust::record`), for the claim's reckoning
//! of its peers (`claim::peers`) and the rule for long tasks
//! (`admit::longer`). Whether a record counts is the gate's to say
//! (`admit::record_counts`).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::git::{GitError, GridRepo, Oid, TreeEntry};
use crate::grid::{Id, NodeRecord, layout};
use crate::time::Timestamp;
use crate::trust::record::RecordSealError;

/// A peer's record as read, and, for a node with a trust gate, the key
/// that signed it (`trust::record`).
#[derive(Debug)]
pub struct Read {
    pub(super) record: NodeRecord,
    /// None: not checked (no gate).
    pub(super) sealed: Option<Result<ssh_key::PublicKey, RecordSealError>>,
}

impl Read {
    /// The record in `bytes`, its signature checked for `grid` if given.
    fn of(bytes: &[u8], grid: Option<&Id>) -> Option<Read> {
        Some(Read {
            record: NodeRecord::parse(bytes).ok()?,
            sealed: grid.map(|g| crate::trust::record::signer(bytes, g)),
        })
    }
}

/// Node records already read, by blob id (a blob's content never changes),
/// so that a round reads only the records that changed since the last.
/// Bounded: a grid that keeps pushing new records empties it now and then,
/// and records no longer listed (older heartbeats) are dropped once they
/// outnumber those listed.
#[derive(Debug, Default)]
pub struct RecordCache(HashMap<Oid, Option<Read>>);

impl RecordCache {
    const MAX: usize = 4096;

    /// The record read from blob `oid` with its signer, as
    /// `admit::record_counts` asks.
    pub(super) fn read(&self, oid: &str) -> Option<&Read> {
        self.0.get(oid).and_then(Option::as_ref)
    }

    /// Read the records of `listed` not read yet (most are the same
    /// blobs as in the last round), their signatures checked for `grid`
    /// if given; forget those no longer listed once they outnumber them.
    pub(super) fn read_new(
        &mut self,
        repo: &GridRepo,
        listed: &[&TreeEntry],
        grid: Option<&Id>,
    ) -> Result<(), GitError> {
        super::assigned::forget_unlisted(&mut self.0, listed);
        let unseen: Vec<String> = listed
            .iter()
            .filter(|e| !self.0.contains_key(&e.oid))
            .map(|e| e.oid.clone())
            .collect();
        let read = repo.read_objects(&unseen, layout::MAX_NODE_RECORD_BYTES)?;
        self.remember(
            unseen.into_iter().zip(
                read.iter()
                    .map(|b| b.data().and_then(|b| Read::of(b, grid))),
            ),
        );
        Ok(())
    }

    fn remember(&mut self, read: impl Iterator<Item = (Oid, Option<Read>)>) {
        for (oid, record) in read {
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(oid, record);
        }
    }
}

/// What a node in `enforce` keeps of its peers' records beyond the cache:
/// the newest heartbeat of each node whose record counted, so that an
/// older record of the node put back over a newer one does not count
/// (the policy bounds the nodes: only listed ones count); and how many
/// nodes' records it has said do not count.
///
/// The newest heartbeats are kept in the state directory too
/// ([`seen_path`]), so that a record put back while the node was down, or
/// before it restarted, is not counted afresh. Each node's kept heartbeat
/// is written again once the newest is a minute past it (a record is
/// rewritten at every commit its node makes; a minute's lag lets through
/// only a record that says what the newest does, near enough).
#[derive(Debug, Default)]
pub struct RecordsSeen {
    newest: HashMap<Id, Timestamp>,
    /// What the file holds; None: nothing is kept (tests).
    kept: Option<Kept>,
    said: usize,
}

#[derive(Debug)]
struct Kept {
    state_dir: PathBuf,
    heartbeats: HashMap<Id, Timestamp>,
    /// A failure to write was said (once: the node goes on without).
    failed: bool,
}

/// Nodes whose records not counted are said at `warn` level; the rest at
/// `debug`.
const RECORDS_SAID: usize = 16;

/// How far the newest heartbeat of a node runs ahead of the one kept on
/// disk before it is written again.
const KEEP_STEP: chrono::Duration = chrono::Duration::minutes(1);

/// The most nodes kept, and the longest file read (a line is an id of at
/// most 128 bytes and a timestamp): more than any policy lists.
const KEPT_NODES: usize = 4096;
const KEPT_BYTES: u64 = 1 << 20;

/// Where a node keeps its peers' newest heartbeats, in its state
/// directory: a line per node, `<node id> <heartbeat>`.
const SEEN_FILE: &str = "trust/records-seen";

pub fn seen_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SEEN_FILE)
}

impl RecordsSeen {
    /// The newest heartbeats kept in `state_dir`, as of `now`. A file that
    /// cannot be read is said, and the node starts with none (a replay
    /// put back before this start then counts until its heartbeat is
    /// stale, as it would have without the file); a line that cannot be
    /// read, or dated past any clock's skew from `now` (this host's clock
    /// stepped back since), is dropped.
    pub(super) fn open(state_dir: &Path, now: Timestamp) -> RecordsSeen {
        let path = seen_path(state_dir);
        let mut bytes = Vec::new();
        let read = crate::service::kept::open_file(&path)
            .and_then(|f| f.take(KEPT_BYTES).read_to_end(&mut bytes));
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the peers' newest heartbeats; starting without them");
                bytes.clear();
            }
        }
        let heartbeats: HashMap<Id, Timestamp> = String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| {
                let (node, at) = line.split_once(' ')?;
                let at = crate::time::parse(at)?;
                (at <= now + crate::time::MAX_CLOCK_SKEW).then_some((Id::parse(node).ok()?, at))
            })
            .take(KEPT_NODES)
            .collect();
        RecordsSeen {
            newest: heartbeats.clone(),
            kept: Some(Kept {
                state_dir: state_dir.to_owned(),
                heartbeats,
                failed: false,
            }),
            said: 0,
        }
    }

    /// If `record` (signed by its node's key) is older than one of its
    /// node already counted, when that one was written; else none, and it
    /// is the newest now. A record whose heartbeat cannot be read, or is
    /// dated past any clock's skew from `now`, is never live, so it needs
    /// no such check, and is not taken as the newest: a node whose clock
    /// ran a day ahead for one record would be left out for that day.
    pub(super) fn replayed(&mut self, record: &NodeRecord, now: Timestamp) -> Option<String> {
        let at = crate::time::parse(&record.last_heartbeat)?;
        if at > now + crate::time::MAX_CLOCK_SKEW {
            return None;
        }
        match self.newest.get(&record.node_id) {
            Some(newest) if *newest > at => Some(crate::time::format(*newest)),
            _ => {
                self.newest.insert(record.node_id.clone(), at);
                self.keep(&record.node_id, at);
                None
            }
        }
    }

    /// Write the file again if `node`'s newest heartbeat, `at`, is a step
    /// past the one it holds.
    fn keep(&mut self, node: &Id, at: Timestamp) {
        let Some(kept) = &mut self.kept else {
            return;
        };
        let behind = kept
            .heartbeats
            .get(node)
            .is_none_or(|k| at - *k >= KEEP_STEP);
        if !behind {
            return;
        }
        // Full (nodes come and go over a grid's life): the node heard from
        // longest ago makes room.
        if kept.heartbeats.len() >= KEPT_NODES && !kept.heartbeats.contains_key(node) {
            let oldest = kept
                .heartbeats
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                kept.heartbeats.remove(&oldest);
            }
        }
        kept.heartbeats.insert(node.clone(), at);
        let text: String = kept
            .heartbeats
            .iter()
            .map(|(node, at)| format!("{node} {}\n", crate::time::format(*at)))
            .collect();
        if let Err(e) =
            crate::service::kept::write_bytes(&kept.state_dir, SEEN_FILE, text.as_bytes())
            && !std::mem::replace(&mut kept.failed, true)
        {
            tracing::warn!(error = %e, "cannot keep the peers' newest heartbeats; a record put back before a restart may count after it");
        }
    }

    /// May one more node's record be said at `warn` level? What to add
    /// to the line if so (for the last, that the rest go to `debug`).
    pub(super) fn say(&mut self) -> Option<&'static str> {
        self.said += 1;
        match self.said.cmp(&RECORDS_SAID) {
            std::cmp::Ordering::Less => Some(""),
            std::cmp::Ordering::Equal => Some(
                "; records of further nodes are said at debug level (`status --roots` names them all)",
            ),
            std::cmp::Ordering::Greater => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::NodeStatus;

    fn record(node: &str, at: &str) -> NodeRecord {
        NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Idle, at.into())
    }

    fn at(s: &str) -> Timestamp {
        crate::time::parse(s).unwrap()
    }

    const NOW: &str = "2026-12-07T10:02:00.000Z";

    #[test]
    fn an_older_record_of_a_node_counted_is_a_replay() {
        let mut seen = RecordsSeen::default();
        let now = at(NOW);
        let (old, new) = ("2026-12-07T10:00:00.000Z", "2026-12-07T10:01:00.000Z");
        assert_eq!(seen.replayed(&record("n2", new), now), None);
        assert_eq!(
            seen.replayed(&record("n2", new), now),
            None,
            "the same again"
        );
        assert_eq!(seen.replayed(&record("n2", old), now).as_deref(), Some(new));
        assert_eq!(seen.replayed(&record("n3", old), now), None, "another node");
        assert_eq!(seen.replayed(&record("n2", "no time"), now), None);
    }

    #[test]
    fn a_record_dated_past_the_clocks_skew_is_not_taken_as_the_newest() {
        let mut seen = RecordsSeen::default();
        let now = at(NOW);
        assert_eq!(
            seen.replayed(&record("n2", "2026-12-08T10:00:00.000Z"), now),
            None
        );
        assert_eq!(
            seen.replayed(&record("n2", "2026-12-07T10:01:00.000Z"), now),
            None,
            "its clock set right again, its next record counts"
        );
    }

    #[test]
    fn the_newest_heartbeats_are_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(NOW);
        let mut seen = RecordsSeen::open(dir.path(), now);
        assert_eq!(
            seen.replayed(&record("n2", "2026-12-07T10:01:00.000Z"), now),
            None
        );
        assert_eq!(
            seen.replayed(&record("n3", "2026-12-07T10:00:00.000Z"), now),
            None
        );
        // Less than a step later: counted, not written yet.
        assert_eq!(
            seen.replayed(&record("n2", "2026-12-07T10:01:30.000Z"), now),
            None
        );
        drop(seen);
        let mut again = RecordsSeen::open(dir.path(), now);
        assert_eq!(
            again
                .replayed(&record("n2", "2026-12-07T10:00:30.000Z"), now)
                .as_deref(),
            Some("2026-12-07T10:01:00.000Z"),
            "put back while the node was down"
        );
        assert_eq!(
            again.replayed(&record("n2", "2026-12-07T10:01:10.000Z"), now),
            None
        );
        assert!(
            again
                .replayed(&record("n3", "2026-12-07T09:59:00.000Z"), now)
                .is_some()
        );
    }

    #[test]
    fn a_full_file_makes_room_for_a_new_node_and_a_fifo_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = seen_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let full: String = (0..KEPT_NODES)
            .map(|i| format!("old{i} 2026-12-01T10:00:00.000Z\n"))
            .collect();
        std::fs::write(&path, full).unwrap();
        let now = at(NOW);
        let mut seen = RecordsSeen::open(dir.path(), now);
        assert_eq!(
            seen.replayed(&record("n2", "2026-12-07T10:01:00.000Z"), now),
            None
        );
        let mut again = RecordsSeen::open(dir.path(), now);
        assert!(
            again
                .replayed(&record("n2", "2026-12-07T10:00:00.000Z"), now)
                .is_some(),
            "n2 was kept"
        );
        assert_eq!(again.newest.len(), KEPT_NODES);

        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let seen = RecordsSeen::open(dir.path(), now);
        assert!(seen.newest.is_empty());
    }

    #[test]
    fn a_kept_file_that_cannot_be_read_whole_costs_only_its_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = seen_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"n2 2026-12-07T10:01:00.000Z\nnot a line\n../x 2026-12-07T10:01:00.000Z\n\
             n3 2026-12-09T10:00:00.000Z\nn4 yesterday\n\xff\xfe\n",
        )
        .unwrap();
        let mut seen = RecordsSeen::open(dir.path(), at(NOW));
        assert_eq!(seen.newest.len(), 1, "{:?}", seen.newest);
        assert!(
            seen.replayed(&record("n2", "2026-12-07T10:00:00.000Z"), at(NOW))
                .is_some()
        );
        assert_eq!(
            seen.replayed(&record("n3", "2026-12-07T10:00:00.000Z"), at(NOW)),
            None,
            "dated past the skew: this host's clock stepped back since"
        );
    }

    #[test]
    fn only_so_many_nodes_are_said_at_warn_level() {
        let mut seen = RecordsSeen::default();
        let said: Vec<Option<&str>> = (0..RECORDS_SAID + 2).map(|_| seen.say()).collect();
        assert!(said[..RECORDS_SAID - 1].iter().all(|s| *s == Some("")));
        assert!(said[RECORDS_SAID - 1].is_some_and(|s| s.contains("debug level")));
        assert_eq!(said[RECORDS_SAID..], [None, None]);
    }
}
