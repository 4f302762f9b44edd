//! How far a claim round may read on past queue entries it skips.

use super::SKIPPED_ENTRIES;
use crate::service::sync::SyncRequest;

/// Whether the skip cache has room for `more` entries: a round reads on
/// past the entries it skips only while it can remember them all. Past
/// that (a flood of more unsigned files than it holds), reading on would
/// read and log the same thousands again every poll, for ever (the
/// attack on the read-on: 4,096 lines a second, 1.7 GB of log an hour),
/// and the round reads its sample only, as before.
pub(in crate::service::sync) fn room_for(req: &SyncRequest<'_>, more: usize) -> bool {
    req.trust
        .is_none_or(|g| g.borrow().skipped.len() + more <= SKIPPED_ENTRIES)
}
