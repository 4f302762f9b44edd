//! With each reap, the files of the lanes no live node serves: a task
//! pushed by hand into the wrong one (`tasks/lanes/p50/gpu/` on a grid
//! without a GPU node, the task requiring nothing) is met by no node's
//! claim, and without this a grid that runs no `reap` of its own (no grid
//! workflow) would hold it for ever. The rule is `ledger::refile`'s, the
//! same as the `reap` tool's.

use super::Draft;
use crate::git::{GitError, GridRepo};
use crate::grid::schedule::NodeLabels;
use crate::ledger::room::GiveWay;
use crate::ledger::{nodes, refile};

pub(super) fn refile(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(), GitError> {
    let me = d.req.node.as_str();
    let (records, junk) = nodes::records_and_junk(repo, d.tip, Some(me), Some(d.req.now))?;
    // Removed in this commit: before the node's own record and any peer's
    // it edits, which are written over it.
    if let Some(junk) = junk {
        let (path, edit) = junk.edit();
        d.edits.insert(path, edit);
        d.summary.push(junk.say());
    }
    // This node serves what its record says now, whatever the tip holds
    // of it (nothing yet, or an older record).
    let mut live = nodes::live_labels(&records, d.req.now, d.req.policy.stale_after);
    live.push((me.to_owned(), d.req.record.node_labels()));
    let refs: Vec<(&str, &NodeLabels)> = live.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let queue = d.queue(repo)?;
    let give_way = super::admit::give_way(d.req, d.tip);
    let planned = refile::plan(
        repo,
        (d.tip, &[&d.edits]),
        &queue,
        &refs,
        d.req.rules,
        d.req.node,
        d.req.now,
        give_way.as_ref().map(|g| g as &dyn GiveWay),
    )?;
    // A path this plan already moves is left to it.
    if planned.edits.keys().any(|p| d.edits.contains_key(p)) {
        return Ok(());
    }
    d.fold(planned);
    Ok(())
}
