//! A task longer than this node will run: left for a peer that takes it,
//! or failed, named.

use super::Admit;
use crate::grid::{Task, TaskRules, layout};
use crate::service::sync::Draft;

/// A task longer than this node's `tasks.max_timeout_seconds`: left (in
/// its lane) for a peer whose limit takes it, heard from within
/// `stale_after` whatever its status (paused, draining, or stopped for a
/// restart: it comes back; counting only live ones, a restart of the only
/// such node failed every long task waiting for it), else failed, naming
/// the longest any such peer takes. Only peers that serve the task's
/// labels count: a plain node's limit is no place for a long GPU task (a
/// sweep's such task waited in its lane for good, named by nothing).
/// The records are the ones the claim read for its peers (`claim::peers`,
/// before any candidate is judged): a rare case, so looked up only here;
/// and only those that count (`record_counts`: on a node in `enforce`,
/// a record anyone could have pushed holds no task back).
pub(super) fn than_mine(d: &Draft<'_>, task: Task) -> Admit {
    let mine = d.req.rules.max_timeout_seconds;
    let class = task.class();
    let peers = d.claims_and_nodes.as_ref().map(|l| {
        let cache = d.req.records.borrow();
        l[1].iter()
            .filter_map(|e| Some((e, cache.read(&e.oid)?)))
            // A record naming another node than its file is no record.
            .filter(|(e, r)| layout::json_stem(&e.name_lossy()) == Some(r.record.node_id.as_str()))
            .filter(|(_, r)| super::record_counts(d.req, r))
            .map(|(_, r)| &r.record)
            .filter(|r| {
                r.node_id != *d.req.node
                    && r.heard_within(d.req.now, d.req.policy.stale_after)
                    && r.node_labels().serves(&class).is_ok()
            })
            .map(|r| {
                r.max_timeout_seconds
                    .unwrap_or(TaskRules::default().max_timeout_seconds)
            })
            .max()
    });
    let longest = peers.flatten();
    if longest.is_some_and(|l| l >= task.timeout_seconds) {
        return Admit::Elsewhere(task);
    }
    let peers = match longest {
        Some(l) => format!(
            "the most a peer that serves it and was heard from within `stale_after` takes is {l}"
        ),
        None => "no peer that serves it has been heard from within `stale_after`".to_owned(),
    };
    Admit::Reject(format!(
        "field `timeout_seconds` is {}; no node takes a task that long (this node's `tasks.max_timeout_seconds` is {mine}; {peers})",
        task.timeout_seconds
    ))
}
