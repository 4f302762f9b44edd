//! The worker's local status page: what the main loop last published,
//! served by a small HTTP server on its own thread (the core is
//! synchronous; tokio serves only this page).
//!
//! The loop never waits on the server: it publishes into a [`Board`] under a
//! mutex held for microseconds, and the server renders from a copy. A stuck
//! loop therefore shows as a stale `loop_alive_at`, which `/healthz` turns
//! into a 503.

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::time::{self, Timestamp};

/// Upper bounds (seconds) of the duration histograms' buckets.
const GIT_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];
const SANDBOX_BUCKETS: &[f64] = &[0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Task outcomes, as counted.
pub const OUTCOMES: &[&str] = &[
    "completed",
    "failed",
    "timeout",
    "engine_failed",
    "cancelled",
];

#[derive(Debug, Clone, Serialize)]
pub struct RunningTask {
    pub task_id: String,
    pub attempt: u32,
    pub claimed_at: String,
    pub timeout_seconds: u64,
    pub priority: u8,
}

/// A task claimed and not started yet.
#[derive(Debug, Clone, Serialize)]
pub struct WaitingTask {
    pub task_id: String,
    pub priority: u8,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if s <= *b {
                *c += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }
}

/// Everything the page shows. Cloned out for each request.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub node_id: String,
    pub version: String,
    pub started_at: String,
    /// idle, busy, draining, unhealthy, stopped.
    pub status: String,
    /// The same line systemd's STATUS= shows.
    pub status_line: String,
    pub engine: String,
    pub engine_problem: Option<String>,
    pub running: Vec<RunningTask>,
    /// Claimed ahead, waiting for a slot.
    pub waiting: Vec<WaitingTask>,
    pub outbox: usize,
    /// Why the node takes no work now (its volunteer's limits), and until
    /// when.
    pub paused: Option<String>,
    /// The labels it routes by, and those it is exclusive to.
    pub labels: Vec<String>,
    pub exclusive: Vec<String>,
    pub remote_ok: bool,
    /// When the last heartbeat was accepted by the grid.
    pub last_heartbeat: Option<String>,
    /// When the main loop last went round.
    pub loop_alive_at: Option<String>,
    /// A loop silent for longer than this is stuck.
    pub stuck_after_s: u64,
    pub tasks: BTreeMap<String, u64>,
    pub claims: u64,
    /// Pushes lost to another writer (each one a re-plan).
    pub claim_conflicts: u64,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// Branches a watched peer's outbox pattern brought that were not its
    /// own (a crowd named after it), each kept out of the fetches after.
    pub outbox_strangers: u64,
    pub git_sync_seconds: Histogram,
    /// The syncs that landed a commit: a look that changes nothing costs a
    /// fetch, one that commits a plan and a push too.
    pub git_commit_seconds: Histogram,
    pub sandbox_seconds: Histogram,
}

impl Snapshot {
    pub fn new(node_id: &str, engine: &str, stuck_after: Duration) -> Snapshot {
        Snapshot {
            node_id: node_id.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: time::format(time::now()),
            status: "starting".into(),
            status_line: "starting".into(),
            engine: engine.to_owned(),
            engine_problem: None,
            running: Vec::new(),
            waiting: Vec::new(),
            outbox: 0,
            paused: None,
            labels: Vec::new(),
            exclusive: Vec::new(),
            remote_ok: false,
            last_heartbeat: None,
            loop_alive_at: None,
            stuck_after_s: stuck_after.as_secs(),
            tasks: OUTCOMES.iter().map(|o| (o.to_string(), 0)).collect(),
            claims: 0,
            claim_conflicts: 0,
            syncs_ok: 0,
            syncs_failed: 0,
            outbox_strangers: 0,
            git_sync_seconds: Histogram::new(GIT_BUCKETS),
            git_commit_seconds: Histogram::new(GIT_BUCKETS),
            sandbox_seconds: Histogram::new(SANDBOX_BUCKETS),
        }
    }
}

/// What one sync did, for the counters.
#[derive(Debug, Clone, Copy)]
pub struct SyncStats {
    pub took: Duration,
    /// It reached the grid (committed, or had nothing to change).
    pub ok: bool,
    /// Rounds lost to other writers.
    pub rejections: u32,
    /// Tasks it claimed.
    pub claims: usize,
    /// It wrote the node's heartbeat.
    pub heartbeat: bool,
    /// It landed a commit.
    pub committed: bool,
}

/// Shared between the loop (writer) and the server (reader).
#[derive(Debug, Clone)]
pub struct Board(Arc<Mutex<Snapshot>>);

impl Board {
    pub fn new(snapshot: Snapshot) -> Board {
        Board(Arc::new(Mutex::new(snapshot)))
    }

    /// Change the snapshot. A poisoned lock (a panic while publishing) must
    /// not take the worker down with it: the data is plain counters.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After a sync transaction.
    pub fn sync_done(&self, sync: SyncStats) {
        self.update(|s| {
            s.git_sync_seconds.observe(sync.took);
            if sync.committed {
                s.git_commit_seconds.observe(sync.took);
            }
            if sync.ok {
                s.syncs_ok += 1;
            } else {
                s.syncs_failed += 1;
            }
            s.claim_conflicts += u64::from(sync.rejections);
            s.claims += sync.claims as u64;
            if sync.heartbeat {
                s.last_heartbeat = Some(time::format(time::now()));
            }
            s.remote_ok = sync.ok;
        });
    }

    /// A task ended with `outcome` (one of [`OUTCOMES`]) after `took`.
    pub fn task_done(&self, outcome: &str, took: Duration) {
        self.update(|s| {
            *s.tasks.entry(outcome.to_owned()).or_insert(0) += 1;
            s.sandbox_seconds.observe(took);
        });
    }
}

/// The name a sandbox outcome is counted under.
pub fn outcome_name(o: &crate::sandbox::Outcome) -> &'static str {
    use crate::sandbox::Outcome;
    match o {
        Outcome::Exited(0) => "completed",
        Outcome::Exited(_) => "failed",
        Outcome::TimedOut => "timeout",
        Outcome::Cancelled => "cancelled",
        Outcome::EngineFailed(_) => "engine_failed",
    }
}

/// How long the main loop may stay silent before `/healthz` calls it stuck.
/// A healthy loop goes round at least every minute (it reaps at most every
/// 60 s and polls every pull interval); one sync may block on a few git
/// calls, each bounded by the git timeout.
pub fn stuck_after(pull_interval: Duration, git_timeout: Duration) -> Duration {
    Duration::from_secs(60) + pull_interval + git_timeout * 3
}

/// Is the worker healthy at `now`? The reasons when it is not.
pub fn health(s: &Snapshot, now: Timestamp) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Some(p) = &s.engine_problem {
        problems.push(format!("engine unhealthy: {p}"));
    }
    match s.loop_alive_at.as_deref().and_then(time::parse) {
        None => problems.push("the main loop has not started".into()),
        Some(t) => {
            let silent = (now - t).num_seconds();
            if silent > s.stuck_after_s as i64 {
                problems.push(format!(
                    "the main loop is stuck: last seen {silent}s ago (limit {}s)",
                    s.stuck_after_s
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn ts_seconds(s: Option<&str>) -> f64 {
    s.and_then(time::parse)
        .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn metrics(s: &Snapshot, now: Timestamp) -> String {
    let mut out = String::new();
    let node = label(&s.node_id);
    let mut simple = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    simple(
        "dgrid_healthy",
        "gauge",
        "1 when /healthz answers 200.",
        f64::from(u8::from(health(s, now).is_ok())),
    );
    simple(
        "dgrid_running_tasks",
        "gauge",
        "Tasks running on this node.",
        s.running.len() as f64,
    );
    simple(
        "dgrid_paused",
        "gauge",
        "1 while the node takes no work by its volunteer's limits.",
        f64::from(u8::from(s.paused.is_some())),
    );
    simple(
        "dgrid_outbox_results",
        "gauge",
        "Results waiting to be pushed.",
        s.outbox as f64,
    );
    simple(
        "dgrid_claims_total",
        "counter",
        "Tasks this node claimed.",
        s.claims as f64,
    );
    simple(
        "dgrid_claim_conflicts_total",
        "counter",
        "Pushes lost to another writer; each one re-planned from the new tip.",
        s.claim_conflicts as f64,
    );
    simple(
        "dgrid_syncs_total",
        "counter",
        "Sync transactions that reached the grid.",
        s.syncs_ok as f64,
    );
    simple(
        "dgrid_sync_failures_total",
        "counter",
        "Sync transactions that failed (the grid unreachable, contention).",
        s.syncs_failed as f64,
    );
    simple(
        "dgrid_outbox_strangers_total",
        "counter",
        "Branches named after a watched peer's outbox, not its own (anyone able to push can make them): fetched once, then kept out.",
        s.outbox_strangers as f64,
    );
    simple(
        "dgrid_last_heartbeat_timestamp_seconds",
        "gauge",
        "When the grid last accepted this node's heartbeat (Unix time; 0 = never).",
        ts_seconds(s.last_heartbeat.as_deref()),
    );
    simple(
        "dgrid_loop_alive_timestamp_seconds",
        "gauge",
        "When the main loop last went round (Unix time).",
        ts_seconds(s.loop_alive_at.as_deref()),
    );
    let _ = writeln!(
        out,
        "# HELP dgrid_tasks_total Tasks that ended on this node, by outcome."
    );
    let _ = writeln!(out, "# TYPE dgrid_tasks_total counter");
    for (outcome, n) in &s.tasks {
        let _ = writeln!(
            out,
            "dgrid_tasks_total{{outcome=\"{}\"}} {n}",
            label(outcome)
        );
    }
    let _ = writeln!(out, "# HELP dgrid_info Build and identity of this node.");
    let _ = writeln!(out, "# TYPE dgrid_info gauge");
    let _ = writeln!(
        out,
        "dgrid_info{{node_id=\"{node}\",version=\"{}\",engine=\"{}\"}} 1",
        label(&s.version),
        label(&s.engine)
    );
    histogram(
        &mut out,
        "dgrid_git_sync_duration_seconds",
        "Duration of sync transactions (fetch, plan, commit, push, retries).",
        &s.git_sync_seconds,
    );
    histogram(
        &mut out,
        "dgrid_git_commit_duration_seconds",
        "Duration of the sync transactions that landed a commit.",
        &s.git_commit_seconds,
    );
    histogram(
        &mut out,
        "dgrid_sandbox_duration_seconds",
        "Duration of task runs in the sandbox.",
        &s.sandbox_seconds,
    );
    out
}

/// The page at `/`: the same data as `/api/status`, for a person.
pub fn page(s: &Snapshot, now: Timestamp) -> String {
    use crate::html::{STYLE, escape};
    let mut h = String::new();
    let healthy = health(s, now);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dgrid-worker {n}</title>\
<style>{STYLE}</style></head><body><h1>dgrid-worker {n}</h1>\
<p id=\"status\" class=\"{cls}\">{st}: {line}</p>",
        n = escape(&s.node_id),
        cls = if healthy.is_ok() { "ok" } else { "bad" },
        st = escape(&s.status),
        line = escape(&s.status_line),
    );
    if let Err(problems) = &healthy {
        h.push_str("<ul id=\"problems\">");
        for p in problems {
            let _ = write!(h, "<li class=\"bad\">{}</li>", escape(p));
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<table id=\"facts\"><tr><th>version</th><td>{}</td></tr><tr><th>engine</th><td>{}</td></tr>\
<tr><th>started</th><td>{}</td></tr><tr><th>last heartbeat</th><td>{}</td></tr>\
<tr><th>loop alive</th><td>{}</td></tr><tr><th>grid reachable</th><td>{}</td></tr>\
<tr><th>results waiting</th><td>{}</td></tr>\
<tr><th>labels</th><td id=\"labels\">{}</td></tr><tr><th>exclusive to</th><td id=\"exclusive\">{}</td></tr>\
<tr><th>paused</th><td id=\"paused\" class=\"{}\">{}</td></tr></table>",
        escape(&s.version),
        escape(&s.engine),
        escape(&s.started_at),
        escape(s.last_heartbeat.as_deref().unwrap_or("never")),
        escape(s.loop_alive_at.as_deref().unwrap_or("never")),
        if s.remote_ok { "yes" } else { "no" },
        s.outbox,
        escape(&s.labels.join(", ")),
        escape(&if s.exclusive.is_empty() {
            "nothing".to_owned()
        } else {
            s.exclusive.join(", ")
        }),
        if s.paused.is_some() { "bad" } else { "ok" },
        escape(s.paused.as_deref().unwrap_or("no")),
    );
    h.push_str("<h2>Running</h2><table id=\"running\"><tr><th>task</th><th>priority</th><th>attempt</th><th>claimed</th><th>timeout</th></tr>");
    for r in &s.running {
        let _ = write!(
            h,
            "<tr class=\"running\" data-task=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s</td></tr>",
            r.priority,
            r.attempt,
            escape(&r.claimed_at),
            r.timeout_seconds,
            id = escape(&r.task_id),
        );
    }
    h.push_str("</table><h2>Claimed, waiting for a slot</h2><table id=\"waiting\"><tr><th>task</th><th>priority</th></tr>");
    for w in &s.waiting {
        let _ = write!(
            h,
            "<tr class=\"waiting\" data-task=\"{id}\"><td>{id}</td><td>{}</td></tr>",
            w.priority,
            id = escape(&w.task_id),
        );
    }
    h.push_str("</table><h2>Counters</h2><table id=\"counters\">");
    for (k, v) in &s.tasks {
        let _ = write!(
            h,
            "<tr class=\"counter\" data-name=\"tasks_{k}\"><th>tasks {k}</th><td>{v}</td></tr>",
            k = escape(k)
        );
    }
    let _ = writeln!(
        h,
        "<tr class=\"counter\" data-name=\"claims\"><th>claims</th><td>{}</td></tr>\
<tr class=\"counter\" data-name=\"claim_conflicts\"><th>claim conflicts</th><td>{}</td></tr>\
<tr class=\"counter\" data-name=\"syncs\"><th>syncs ok / failed</th><td>{} / {}</td></tr></table>\
<p class=\"muted\">JSON: <a href=\"/api/status\">/api/status</a>, health: <a href=\"/healthz\">/healthz</a>, \
metrics: <a href=\"/metrics\">/metrics</a></p></body></html>",
        s.claims, s.claim_conflicts, s.syncs_ok, s.syncs_failed
    );
    h
}

#[cfg(test)]
mod tests;
