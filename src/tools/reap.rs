//! `dgrid-worker reap`: the worker's orphan rule (`ledger::reap`) as a
//! transaction of its own, for the repo workflow or an operator.

use std::collections::BTreeSet;

use crate::git::txn::{Plan, Txn};
use crate::git::{Edits, GitError};
use crate::grid::orphan::OrphanPolicy;
use crate::grid::{Id, TaskRules};
use crate::ledger::reap::{self, ReapInput};
use crate::ledger::results;
use crate::time::Timestamp;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReapSummary {
    /// (task, what was done and why).
    pub reaped: Vec<(String, String)>,
    /// (entry, why): unreadable claim files moved to `failed/`.
    pub invalid: Vec<(String, String)>,
}

/// Plan the reap at the fetched tip. `who` is the reaper's identity: it must
/// not be a worker's id, or that worker's live claims would be taken for
/// its own leftovers.
pub fn plan(
    txn: &Txn<'_>,
    who: &Id,
    now: Timestamp,
    policy: &OrphanPolicy,
    rules: &TaskRules,
) -> Result<Plan<ReapSummary>, GitError> {
    let Some(tip) = txn.tip.as_deref() else {
        return Ok(Plan {
            edits: Edits::new(),
            message: String::new(),
            value: ReapSummary::default(),
        });
    };
    let none = BTreeSet::new();
    let input = ReapInput {
        node: who,
        now,
        held: &none,
        skip: &none,
        rules,
        policy,
    };
    let planned = reap::plan(txn.repo, tip, &input)?;
    let mut edits = planned.edits;
    edits.extend(results::place_results(txn.repo, tip, now, planned.results)?);
    let message = format!("{who}: {}\n", planned.summary.join(", "));
    Ok(Plan {
        edits,
        message,
        value: ReapSummary {
            reaped: planned.reaped,
            invalid: planned.invalid,
        },
    })
}
