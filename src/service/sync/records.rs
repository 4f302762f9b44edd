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

    /// The record read from blob `oid`, if it was read and is one.
    pub fn record(&self, oid: &str) -> Option<&NodeRecord> {
        self.read(oid).map(|r| &r.record)
    }

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
