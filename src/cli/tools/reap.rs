//! `dgrid-worker reap`: requeue (or abandon) orphaned claims as a
//! transaction, or with `--dry-run` show what would be; the reaper's name
//! must not be a worker's.

use std::process::ExitCode;

use super::{StaleArgs, fail};
use crate::git::txn::{self, TxnOutcome, TxnPolicy};
use crate::grid::orphan::OrphanPolicy;
use crate::grid::{Id, TaskRules};
use crate::time;
use crate::tools::escape::untrusted as esc;
use crate::tools::reap;
use crate::tools::source::RepoArgs;

#[derive(Debug, clap::Args)]
pub struct ReapArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Show what would be requeued or abandoned; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stale: StaleArgs,
    /// Claims handed out before a task is abandoned (the workers'
    /// `max_attempts`).
    #[arg(long, env = "DGRID_MAX_ATTEMPTS", default_value_t = crate::grid::orphan::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// The reaper's name in commits and in results of unreadable claims.
    /// It must not be a worker's node id.
    #[arg(long = "as", value_name = "ID", default_value = "dgrid-reaper")]
    pub who: String,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn reap(a: ReapArgs) -> ExitCode {
    let who = match Id::parse(&a.who) {
        Ok(id) => id,
        Err(e) => return fail(format_args!("--as {:?}: {e}", a.who)),
    };
    if a.max_attempts == 0 {
        return fail("--max-attempts must be at least 1");
    }
    let policy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(a.stale.stale_after.min(i64::MAX as u64) as i64),
        max_attempts: a.max_attempts,
    };
    let rules = TaskRules {
        max_timeout_seconds: u64::MAX,
        ..TaskRules::default()
    };
    let opened = match a.repo.open_clone_as(who.as_str()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if let Some(tip) = &opened.tip {
        // The reaper treats claims in its own name as leftovers of its own
        // crash; under a worker's name it would reap that worker's live
        // claims.
        let node_file = crate::grid::layout::node_file(&who);
        if matches!(opened.repo.exists(tip, &node_file), Ok(true)) {
            return fail(format_args!(
                "--as {who}: {node_file} exists; the reaper must not use a worker's node id"
            ));
        }
    }
    // Published outboxes, listed once (bounded): a reap's push does not
    // change them, and the deletions are conditional on what was listed.
    let listed = match opened.repo.list_outboxes() {
        Ok(o) => {
            if o.truncated {
                eprintln!(
                    "warning: {} lists more outbox/ branches than are read at once; the rest wait for the next reap",
                    a.repo.repo
                );
            }
            o.branches
        }
        Err(e) => {
            eprintln!(
                "warning: {}: could not list the outbox/ branches: {e}",
                a.repo.repo
            );
            Vec::new()
        }
    };
    let summary = if a.dry_run {
        let t = txn::Txn {
            repo: &opened.repo,
            tip: opened.tip.clone(),
        };
        match reap::plan(&t, &who, time::now(), &policy, &rules, &listed) {
            Ok(p) => p.value,
            Err(e) => return fail(format_args!("{}: {e}", a.repo.repo)),
        }
    } else {
        let identity = txn::Identity::for_node(who.as_str());
        match txn::run(&opened.repo, &identity, &TxnPolicy::default(), |t| {
            reap::plan(t, &who, time::now(), &policy, &rules, &listed)
        }) {
            Ok(TxnOutcome::Committed { value, .. } | TxnOutcome::Unchanged { value, .. }) => value,
            // A reap is idempotent: the next run redoes what did not land.
            Ok(TxnOutcome::Uncertain { error, .. }) => {
                return fail(format_args!(
                    "{}: the push's answer was lost and the grid is unreachable: {error}",
                    a.repo.repo
                ));
            }
            Err(e) => return fail(format_args!("{}: {e}", a.repo.repo)),
        }
    };
    let refused = if a.dry_run {
        Vec::new()
    } else {
        opened.repo.delete_outboxes(&summary.outboxes)
    };
    let deleted: Vec<&str> = summary
        .outboxes
        .iter()
        .map(|(node, _)| node.as_str())
        .filter(|node| !refused.iter().any(|(r, _)| r == node))
        .collect();
    for (node, why) in &refused {
        eprintln!("warning: outbox/{}: not deleted: {}", esc(node), esc(why));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": a.dry_run,
                "reaped": summary.reaped,
                "invalid": summary.invalid,
                "released": summary.released,
                "unservable": summary.unservable,
                "silent": summary.silent,
                "outboxes_deleted": deleted,
            })
        );
    } else {
        let verb = if a.dry_run { "would be " } else { "" };
        for (task, what) in &summary.reaped {
            println!("{}: {verb}{}", esc(task), esc(what));
        }
        for (entry, why) in &summary.invalid {
            println!("{}: {verb}moved to tasks/failed: {}", esc(entry), esc(why));
        }
        for (task, what) in &summary.released {
            println!("{}: {verb}{}", esc(task), esc(what));
        }
        for node in &summary.silent {
            println!(
                "{}: {verb}marked as taking no claims made for it (it left them unanswered)",
                esc(node)
            );
        }
        for u in &summary.unservable {
            let more = u.tasks.saturating_sub(u.task_ids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            println!(
                "{}{more}: cannot run now, requires {}: {}",
                esc(&u.task_ids.join(", ")),
                esc(&u.requires.join(", ")),
                esc(&u.why)
            );
        }
        for node in &deleted {
            println!(
                "outbox/{}: {verb}deleted (no running node owns it)",
                esc(node)
            );
        }
        if summary.reaped.is_empty() && summary.invalid.is_empty() && summary.released.is_empty() {
            eprintln!("no orphaned claims");
        }
    }
    ExitCode::SUCCESS
}
