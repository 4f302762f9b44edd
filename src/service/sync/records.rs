//! The peers' node records as a node reads them, by blob: what each
//! says, and who signed it (`trust::record`), for the claim's reckoning
//! of its peers (`claim::peers`) and the rule for long tasks
//! (`admit::longer`). Whether a record counts is the gate's to say
//! (`admit::record_counts`).

use crate::git::{GitError, GridRepo, Oid, TreeEntry};
use crate::grid::{Id, NodeRecord, layout};
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
pub struct RecordCache(std::collections::HashMap<Oid, Option<Read>>);

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
#[derive(Debug, Default)]
pub struct RecordsSeen {
    newest: std::collections::HashMap<Id, crate::time::Timestamp>,
    said: usize,
}

/// Nodes whose records not counted are said at `warn` level; the rest at
/// `debug`.
const RECORDS_SAID: usize = 16;

impl RecordsSeen {
    /// If `record` (signed by its node's key) is older than one of its
    /// node already counted, when that one was written; else none, and it
    /// is the newest now. A record whose heartbeat cannot be read is
    /// never live, so it needs no such check.
    pub(super) fn replayed(&mut self, record: &NodeRecord) -> Option<String> {
        let at = crate::time::parse(&record.last_heartbeat)?;
        match self.newest.get(&record.node_id) {
            Some(newest) if *newest > at => Some(crate::time::format(*newest)),
            _ => {
                self.newest.insert(record.node_id.clone(), at);
                None
            }
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

    #[test]
    fn an_older_record_of_a_node_counted_is_a_replay() {
        let mut seen = RecordsSeen::default();
        let (old, new) = ("2026-12-07T10:00:00.000Z", "2026-12-07T10:01:00.000Z");
        assert_eq!(seen.replayed(&record("n2", new)), None);
        assert_eq!(seen.replayed(&record("n2", new)), None, "the same again");
        assert_eq!(seen.replayed(&record("n2", old)).as_deref(), Some(new));
        assert_eq!(seen.replayed(&record("n3", old)), None, "another node");
        assert_eq!(seen.replayed(&record("n2", "no time")), None);
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
