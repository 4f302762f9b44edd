//! Whose answer a result is, as a node enforcing trust asks it of results
//! it did not write: one in a peer's published outbox, which it would
//! carry in its own commit, and whatever ended a claim of its own.

use super::enforced;
use crate::grid::Id;
use crate::service::sync::SyncRequest;

/// Does the result file `bytes` answer task `task` as node `node`'s,
/// signed by a key the policy lists for that node? Where trust is not
/// enforced, every result does.
pub(in crate::service::sync) fn signed_as(
    req: &SyncRequest<'_>,
    bytes: &[u8],
    task: &Id,
    node: &Id,
) -> bool {
    answer(req, bytes).is_none_or(|a| a.is_some_and(|(t, n)| t == task.as_str() && &n == node))
}

/// Does the result file `bytes` answer task `task`, signed by any node
/// the policy lists as the node it names? Where trust is not enforced,
/// every result does.
pub(in crate::service::sync) fn attested(req: &SyncRequest<'_>, bytes: &[u8], task: &Id) -> bool {
    answer(req, bytes).is_none_or(|a| a.is_some_and(|(t, _)| t == task.as_str()))
}

/// None where trust is not enforced; else the task and node the result
/// answers as, if a node the policy lists signed it as itself.
fn answer(req: &SyncRequest<'_>, bytes: &[u8]) -> Option<Option<(String, Id)>> {
    let gate = req.trust.filter(|_| enforced(req))?;
    Some(gate.borrow().verifier.answer_of(bytes, req.now).ok())
}
