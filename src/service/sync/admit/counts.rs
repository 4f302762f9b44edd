//! Whether a completed result counts for the tasks after it, by the
//! node's trust.

use super::super::SyncRequest;
use crate::escape::Untrusted;
use crate::grid::Id;
use crate::trust::Mode;

/// Is trust enforced (then results are read to see if they count)?
pub(in crate::service::sync) fn enforced(req: &SyncRequest<'_>) -> bool {
    req.trust.is_some_and(|g| g.borrow().mode == Mode::Enforce)
}

/// Does a completed result (`bytes`, found as task `task`'s) count for the
/// tasks that run after it, their release and their inputs? In `enforce`
/// only if a node the policy lists signed it as that task's
/// (`Verifier::completes`): a result pushed by anyone else is no result,
/// and its dependants wait as for a parent still to finish. In `warn` it
/// counts. Either says once what `enforce` holds.
pub(in crate::service::sync) fn result_counts(
    req: &SyncRequest<'_>,
    task: &Id,
    bytes: &[u8],
) -> bool {
    let Some(mut gate) = req.trust.map(|g| g.borrow_mut()) else {
        return true;
    };
    let Err(e) = gate.verifier.completes(bytes, task, req.now) else {
        return true;
    };
    let (warn, code) = (gate.mode != Mode::Enforce, e.code());
    match (
        gate.first_time(&format!("completed result of {task}"), code),
        warn,
    ) {
        (false, _) => {}
        (true, true) => {
            tracing::warn!(task = %task, code = %code, error = %Untrusted(&e), "trust (warn mode): a completed result is not attested; enforce mode would hold its dependants")
        }
        (true, false) => {
            tracing::warn!(task = %task, code = %code, error = %Untrusted(&e), "trust: a completed result is not attested: its dependants wait")
        }
    }
    warn
}
