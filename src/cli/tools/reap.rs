//! `dgrid-worker reap`: requeue (or abandon) orphaned claims as a
//! transaction, or with `--dry-run` show what would be; the reaper's name
//! must not be a worker's.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{StaleArgs, fail};
use crate::git::GridRepo;
use crate::git::published::Outboxes;
use crate::git::txn::{self, TxnOutcome};
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
        // Read only by a judge whose reach broke (a worker's): the tool's
        // is unbroken.
        claim_grace: chrono::Duration::seconds(crate::config::defaults::CLAIM_GRACE_SECS as i64),
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
    // Published outboxes, listed (bounded) before the reap: its push does
    // not change them, and each deletion is leased to what was listed.
    let listed = match opened.repo.list_outboxes() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "warning: {}: could not list the outbox/ branches: {}",
                a.repo.shown(),
                esc(&e.to_string())
            );
            Outboxes::default()
        }
    };
    let summary = if a.dry_run {
        let t = txn::Txn {
            repo: &opened.repo,
            tip: opened.tip.clone(),
        };
        match reap::plan(&t, &who, time::now(), &policy, &rules, &listed.branches) {
            Ok(p) => p.value,
            Err(e) => return fail(format_args!("{}: {e}", a.repo.shown())),
        }
    } else {
        let identity = txn::Identity::for_node(who.as_str());
        match txn::run(&opened.repo, &identity, &opened.txn_policy(), |t| {
            reap::plan(t, &who, time::now(), &policy, &rules, &listed.branches)
        }) {
            Ok(TxnOutcome::Committed { value, .. } | TxnOutcome::Unchanged { value, .. }) => value,
            // A reap is idempotent: the next run redoes what did not land.
            Ok(TxnOutcome::Uncertain { error, .. }) => {
                return fail(format_args!(
                    "{}: the push's answer was lost and the grid is unreachable: {error}",
                    a.repo.shown()
                ));
            }
            Err(e) => return fail(format_args!("{}: {e}", a.repo.shown())),
        }
    };
    let (deleted, refused, more) = if a.dry_run {
        let named = summary.outboxes.iter().map(|(n, _)| n.clone()).collect();
        (named, Vec::new(), listed.truncated)
    } else {
        tidy(&opened.repo, &summary, listed.truncated)
    };
    // A remote that refuses them all (a token without the right) would
    // refuse thousands alike: the first few say why.
    const SHOWN: usize = 20;
    for (node, why) in refused.iter().take(SHOWN) {
        eprintln!("warning: outbox/{}: not deleted: {}", esc(node), esc(why));
    }
    if refused.len() > SHOWN {
        eprintln!(
            "warning: and {} more outbox/ branches not deleted",
            refused.len() - SHOWN
        );
    }
    if more {
        eprintln!(
            "warning: {}: more outbox/ branches than this reap could list; the rest at the next",
            a.repo.shown()
        );
    }
    if a.json {
        say!(
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
            say!("{}: {verb}{}", esc(task), esc(what));
        }
        for (entry, why) in &summary.invalid {
            say!("{}: {verb}moved to tasks/failed: {}", esc(entry), esc(why));
        }
        for (task, what) in &summary.released {
            say!("{}: {verb}{}", esc(task), esc(what));
        }
        for node in &summary.silent {
            say!(
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
            say!(
                "{}{more}: cannot run now, {}: {}",
                esc(&u.task_ids.join(", ")),
                crate::tools::text::requirement(&u.requires),
                esc(&u.why)
            );
        }
        for node in &deleted {
            say!(
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

/// How long a reap goes on deleting a crowd of outboxes.
const TIDY_FOR: Duration = Duration::from_secs(120);

/// Delete the outboxes the reap found no running node owns; while the
/// listing stopped at its bound (a crowd: about 9,000 branches a listing),
/// list again and go on, for [`TIDY_FOR`] at most or until a round deletes
/// nothing. What was deleted, what was not (with why), and whether more
/// may be left.
fn tidy(
    repo: &GridRepo,
    summary: &reap::ReapSummary,
    mut more: bool,
) -> (Vec<String>, Vec<(String, String)>, bool) {
    let started = Instant::now();
    let mut batch = summary.outboxes.clone();
    let mut deleted = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut kept_names: BTreeSet<String> = BTreeSet::new();
    loop {
        let kept = repo.delete_outboxes(&batch);
        kept_names.extend(kept.iter().map(|(n, _)| n.clone()));
        let before = deleted.len();
        deleted.extend(
            batch
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| !kept_names.contains(n)),
        );
        refused.extend(kept);
        if !more || deleted.len() == before || started.elapsed() > TIDY_FOR {
            return (deleted, refused, more);
        }
        match repo.list_outboxes() {
            Ok(listed) => {
                more = listed.truncated;
                batch = reap::unowned(&listed.branches, &summary.running)
                    .into_iter()
                    .filter(|(n, _)| !kept_names.contains(n))
                    .collect();
            }
            Err(e) => {
                eprintln!(
                    "warning: could not list the outbox/ branches again: {}",
                    esc(&e.to_string())
                );
                return (deleted, refused, more);
            }
        }
    }
}
