//! The node's own record, as the commit a sync makes writes it: the
//! heartbeat rides along with any change, or goes alone when due.

use super::Draft;
use crate::git::Edit;
use crate::grid::{NodeRecord, NodeStatus, layout};
use crate::trust::Signer;

/// Write the record into `d`'s commit if it changes anything else or a
/// heartbeat is due: as it will be once the commit lands, with the tasks
/// just claimed among those running.
pub(super) fn write(d: &mut Draft<'_>) {
    let req = d.req;
    if d.edits.is_empty() && !req.heartbeat {
        return;
    }
    let mut record = req.record.clone();
    let starting = d.report.claimed.iter().take(req.start_now);
    record
        .running
        .extend(starting.map(|c| c.task.task_id.to_string()));
    if record.status == NodeStatus::Idle && !record.running.is_empty() {
        record.status = NodeStatus::Busy;
    }
    // And busy for as long as its claims keep it (when it can tell).
    if !d.report.claimed.is_empty() {
        record.busy_ms = req
            .next_starts
            .get(d.report.claimed.len())
            .filter(|s| s.is_finite())
            .map(|s| (s * 1000.0).round() as u64);
    }
    d.edits.insert(
        layout::node_file(req.node).into_bytes(),
        Edit::Put(record_file(req.seal, &record)),
    );
    d.report.wrote_heartbeat = true;
    if d.summary.is_empty() {
        d.summary.push("heartbeat".into());
    }
}

/// The record file: signed where the node has a key and a grid id
/// (`trust::record`), so that peers enforcing trust count it.
pub fn record_file(seal: Option<&Signer>, record: &NodeRecord) -> Vec<u8> {
    let Some(signer) = seal else {
        return record.to_bytes();
    };
    signer.sign_record(record).unwrap_or_else(|e| {
        // The record goes all the same: its peers in `enforce` leave it
        // out of their reckoning, as they would a stranger's.
        tracing::error!(error = %e, "cannot sign the node record; writing it unsigned");
        record.to_bytes()
    })
}
