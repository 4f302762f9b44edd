//! The grid at one commit, as `status` and `dashboard` show it.
//!
//! Reading is sized for big grids: one `ls-tree` per directory, and all the
//! blobs that are read at all in one `cat-file --batch` per directory, so
//! 50,000 results cost a few processes, not 50,000. Results are parsed into
//! a small struct that skips their output (`stdout` is never needed here).
//!
//! The view itself (what `status`, `dashboard` and their JSON show) is in
//! `model.rs`; here it is assembled, from the parts that read the grid by
//! directory: `nodes.rs` (node records), `tasks.rs` (the queue, the tasks
//! waiting for others, the claims running) and `results.rs` (completed and
//! failed).

use std::collections::BTreeMap;

use crate::git::GitError;
use crate::git::{EntryMode, GridRepo, TreeEntry};
use crate::grid::layout;
use crate::time::{self, Timestamp};

use super::throughput;
pub use super::throughput::{BUCKETS, Bucket, Throughput};

mod model;
mod nodes;
mod results;
mod tasks;

pub use model::{
    GridView, NodeView, QueuedView, ResultView, RunningView, TrustView, UnservableView, WaitingView,
};
use nodes::node_views;
use results::read_results;
use tasks::{mark_behind, queue_views, running_views, waiting_views};

/// How many recent results and failures are listed.
pub const RECENT: usize = 50;

fn files(entries: Vec<TreeEntry>) -> Vec<TreeEntry> {
    entries
        .into_iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes())
        .collect()
}

fn blob_ids(entries: &[TreeEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .map(|e| e.oid.clone())
        .collect()
}

fn age(now: Timestamp, s: &str) -> Option<i64> {
    time::parse(s).map(|t| (now - t).num_seconds())
}

/// Nodes a page or a summary lists, at most: a grid's `nodes/` is
/// anyone's to fill (100,000 records printed 18 MB of text, 38 MB of HTML).
pub const NODES_SHOWN: usize = 500;

impl GridView {
    /// The nodes in the order they are shown: live records first, then
    /// stale ones, then files that are no record, each by name. By name
    /// alone, 100,000 junk files named before a real node pushed it out of
    /// the lines shown.
    pub fn nodes_in_order(&self) -> Vec<&NodeView> {
        let mut nodes: Vec<&NodeView> = self.nodes.iter().collect();
        nodes.sort_by_key(|n| (n.error.is_some(), n.stale));
        nodes
    }

    /// The claims whose node's record says it runs them (the rest of
    /// `running` are claimed ahead, or started since the record).
    pub fn started_claims(&self) -> usize {
        self.running.iter().filter(|r| r.started).count()
    }

    /// Read the grid at `commit`, as of `now`.
    pub fn load(
        repo: &GridRepo,
        commit: &str,
        now: Timestamp,
        stale_after_s: i64,
    ) -> Result<GridView, GitError> {
        let mut nodes = node_views(repo, commit, now)?;
        // A heartbeat dated past any clock's skew holds nothing, as nodes
        // read it: one file dated 9999 showed a live node for good, and
        // hid that no live node served its labels.
        let skew = time::MAX_CLOCK_SKEW.num_seconds();
        for n in &mut nodes {
            let ahead = n.heartbeat_age_s.is_some_and(|a| a < -skew);
            n.stale = ahead || n.heartbeat_age_s.is_none_or(|a| a > stale_after_s);
            if n.problem.is_none() {
                n.problem = dated_ahead(n.heartbeat_age_s);
            }
        }
        let (queue, unservable, misplaced) = queue_views(repo, commit, now, &nodes)?;
        let mut waiting = waiting_views(repo, commit, &nodes)?;
        mark_behind(&mut waiting, &queue);
        let running = running_views(repo, commit, now, &nodes)?;
        // A failed result ends its dependants only where no other copy of
        // the task is still to run (`ledger::blocked::Copies`).
        let pending: std::collections::HashSet<String> = queue
            .iter()
            .map(|q| q.task_id.clone())
            .chain(running.iter().map(|r| r.task_id.clone()))
            .chain(waiting.iter().map(|w| w.task_id.clone()))
            .collect();
        for w in &mut waiting {
            if w.failed_parent
                .as_ref()
                .is_some_and(|p| pending.contains(p))
            {
                w.fails = None;
            }
        }
        let mut all = Vec::new();
        let completed = read_results(repo, commit, layout::COMPLETED, false, &mut all)?;
        let failed = read_results(repo, commit, layout::FAILED, true, &mut all)?;
        let mut by_status = BTreeMap::new();
        for r in &all {
            *by_status.entry(r.status.clone()).or_insert(0) += 1;
        }
        let throughput = throughput::of(
            all.iter()
                .map(|r| (r.timestamp.as_str(), r.status == "completed")),
            now,
        );
        // Newest first, by the time each says; one whose timestamp is no
        // time, or later than any clock could be, last (a forged "zzz"
        // sorted as text stayed on top of "recent" for good).
        let latest = now + time::MAX_CLOCK_SKEW;
        all.sort_by_cached_key(|r| {
            std::cmp::Reverse(time::parse(&r.timestamp).filter(|t| *t <= latest))
        });
        let failures: Vec<ResultView> = all
            .iter()
            .filter(|r| r.status != "completed")
            .take(RECENT)
            .cloned()
            .collect();
        all.truncate(RECENT);
        for r in &mut all {
            r.stderr_tail = None;
        }
        Ok(GridView {
            generated_at: time::format(now),
            commit: commit.to_owned(),
            nodes,
            queue,
            waiting,
            unservable,
            misplaced,
            running,
            completed,
            failed,
            archived: archived(repo)?,
            by_status,
            recent: all,
            failures,
            throughput,
            trust: None,
        })
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// "3s", "4m", "2h", "5d": ages at a glance.
/// What a heartbeat dated ahead of this clock says of its record: past
/// any clock's skew, no node counts it; within it, it counts (a clock set
/// wrong, or a record written to look live for that long), and was shown
/// as `0s` ago, fresh, with nothing to say so.
fn dated_ahead(age_s: Option<i64>) -> Option<String> {
    const NOTED_AHEAD_S: i64 = 60;
    match age_s? {
        a if a < -time::MAX_CLOCK_SKEW.num_seconds() => Some(
            "its heartbeat is dated more than an hour ahead of this clock: no node counts it as live"
                .to_owned(),
        ),
        a if a < -NOTED_AHEAD_S => Some(format!(
            "its heartbeat is dated {} ahead of this clock: nodes count it as live until then, and for stale_after after",
            human_age(Some(-a))
        )),
        _ => None,
    }
}

/// The results on the archive branch, if the repository read has it (a
/// local grid; a tool's clone of a URL fetches `main` alone).
fn archived(repo: &GridRepo) -> Result<Option<model::ArchivedView>, GitError> {
    let branch = crate::grid::archive::ARCHIVE_BRANCH;
    let Some(tip) = crate::tools::source::local_tip(repo.git(), branch)? else {
        return Ok(None);
    };
    // Both directories in one listing.
    let keep = layout::KEEP_FILE.as_bytes();
    let dirs: [Vec<crate::git::TreeEntry>; 2] = repo
        .list_dirs(&tip, &[layout::COMPLETED, layout::FAILED])?
        .try_into()
        .expect("two directories asked, two listed");
    let [completed, failed] = dirs.map(|d| d.iter().filter(|e| e.name != keep).count());
    Ok(Some(model::ArchivedView {
        branch: branch.to_owned(),
        completed,
        failed,
    }))
}

pub fn human_age(secs: Option<i64>) -> String {
    match secs {
        None => "?".into(),
        Some(s) if s < 0 => "0s".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 2 * 86400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(Some(5)), "5s");
        assert_eq!(human_age(Some(600)), "10m");
        assert_eq!(human_age(Some(3 * 3600)), "3h");
        assert_eq!(human_age(Some(3 * 86400)), "3d");
        assert_eq!(human_age(None), "?");
        assert_eq!(tail("abcdef", 3), "…def");
    }

    #[test]
    fn a_heartbeat_dated_ahead_is_said_so() {
        assert_eq!(dated_ahead(Some(-30)), None, "within a minute");
        assert_eq!(dated_ahead(Some(5)), None);
        assert_eq!(dated_ahead(None), None);
        let within = dated_ahead(Some(-58 * 60)).unwrap();
        assert!(
            within.starts_with("its heartbeat is dated 58m ahead"),
            "{within}"
        );
        let past = dated_ahead(Some(-2 * 3600)).unwrap();
        assert!(past.contains("no node counts it as live"), "{past}");
    }
}
