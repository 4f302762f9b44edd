//! Section 3: a claim, a task and the clone on a grid of 50,000 results,
//! archived and not, against a fresh grid.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::plan::PlainNode;
use crate::common::*;
use crate::{bench_spec, median, trivial_tasks};

/// A grid with `results` results in `tasks/completed/` and as many more
/// commits, then `queued` trivial tasks, written with one `git fast-import`.
///
/// The results arrive a thousand per commit, between one-file commits (a
/// heartbeat-like node record): a commit per result would rewrite a tree
/// of up to 50,000 entries 50,000 times (quadratic, hours), while the tip
/// the worker meets, and the history's length, are the same either way.
pub fn grid_with_history(results: usize, queued: usize) -> Grid {
    let grid = Grid::new();
    let tip = String::from_utf8(git(&grid.bare, &["rev-parse", "main"]).stdout).unwrap();
    let mut stream = format!("reset refs/heads/main\nfrom {}\n", tip.trim());
    let body = |i: usize| {
        serde_json::json!({
            "task_id": format!("old-{i:06}"), "node_id": "n1", "exit_code": 0,
            "stdout": format!("result number {i}\n"), "stderr": "", "status": "completed",
            "timestamp": "2026-01-01T00:00:00.000Z", "attempt": 1, "truncated": false,
            "started_at": "2026-01-01T00:00:00.000Z", "duration_ms": 120
        })
        .to_string()
    };
    let mut out = String::new();
    for i in 0..results {
        let when = 1_700_000_000 + i;
        let beat = format!("{{\"node_id\":\"n1\",\"status\":\"busy\",\"last_heartbeat\":\"{i}\"}}");
        let _ = write!(
            out,
            "commit refs/heads/main\ncommitter n1 <n1@x> {when} +0000\ndata 4\nbeat\n\
             M 100644 inline nodes/n1.json\ndata {}\n{beat}\n\n",
            beat.len()
        );
        if i % 1000 == 999 {
            let _ = write!(
                out,
                "commit refs/heads/main\ncommitter n1 <n1@x> {when} +0000\ndata 7\nresults\n"
            );
            for j in i - 999..=i {
                let b = body(j);
                let _ = write!(
                    out,
                    "M 100644 inline tasks/completed/n1-old-{j:06}.json\ndata {}\n{b}\n",
                    b.len()
                );
            }
            out.push('\n');
        }
    }
    stream.push_str(&out);
    let mut q = String::from(
        "commit refs/heads/main\ncommitter n1 <n1@x> 1800000000 +0000\ndata 5\nqueue\n",
    );
    for (path, bytes) in trivial_tasks("fresh", queued) {
        let _ = write!(
            q,
            "M 100644 inline {path}\ndata {}\n{}\n",
            bytes.len(),
            String::from_utf8(bytes).unwrap()
        );
    }
    q.push_str("\ndone\n");
    stream.push_str(&q);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(&grid.bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stream.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    git(&grid.bare, &["gc", "--quiet"]);
    grid
}

pub fn du(path: &std::path::Path) -> u64 {
    let out = Command::new("du").args(["-sk"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse::<u64>()
        .unwrap_or(0)
        * 1024
}

pub struct GrowthRun {
    first_sync_ms: f64,
    claim_ms: Vec<f64>,
    task_ms: f64,
    clone_bytes: u64,
}

/// One worker against `grid`: the time of its first sync (the clone), the
/// time of each claim-only transaction (in-process, as the worker makes
/// them), then a drain of the queue through the binary.
pub fn growth_run(grid: &Grid, claims: usize, queued: usize) -> GrowthRun {
    use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
    use dgrid_worker::git::{Git, GridRepo};
    let state = grid.path("bench-state");
    let git_handle = Git::new("git", state.join("grid.git"), Duration::from_secs(600));
    let repo = GridRepo::open_or_init(git_handle, &grid.url(), "main").unwrap();
    let identity = Identity::for_node("claimer");
    let mut node = PlainNode::new("claimer");
    node.record.engine = "shell".into();
    let sync = |want: usize| {
        let t = Instant::now();
        let out = txn::run(&repo, &identity, &TxnPolicy::default(), |t| {
            dgrid_worker::service::sync::plan(t, &node.request(want))
        })
        .unwrap();
        assert!(matches!(out, txn::TxnOutcome::Committed { .. }));
        t.elapsed().as_secs_f64() * 1000.0
    };
    let first_sync_ms = sync(0);
    let claim_ms: Vec<f64> = (0..claims).map(|_| sync(1)).collect();
    drop(repo);
    let clone_bytes = du(&state);
    // The drain, through the binary: tasks end to end (claim, run, result
    // commit). The claims above look orphaned to it (no heartbeat), so it
    // reaps them first and runs all `queued` tasks.
    let started = Instant::now();
    let mut w = spawn_worker(grid, &bench_spec(grid, "drainer"));
    assert!(
        w.wait_exit(Duration::from_secs(600)).success(),
        "{}",
        w.log_text()
    );
    let task_ms = started.elapsed().as_secs_f64() * 1000.0 / queued as f64;
    GrowthRun {
        first_sync_ms,
        claim_ms,
        task_ms,
        clone_bytes,
    }
}

/// Archive `grid` as the grid workflow does (`dgrid-worker archive` with
/// the default keep), through the tool's library function; its time.
pub fn archive_as_the_workflow_does(grid: &Grid) -> (f64, usize) {
    use dgrid_worker::tools::archive::{self, ArchiveOptions};
    let repo = dgrid_worker::tools::source::RepoArgs {
        repo: grid.url(),
        branch: "main".into(),
        git_timeout: 600,
    };
    let t = Instant::now();
    let done = archive::run(&repo, &ArchiveOptions::default(), false).unwrap();
    assert!(done.pushed);
    (t.elapsed().as_secs_f64() * 1000.0, done.summary.moved.len())
}

pub fn growth() -> String {
    const BIG: usize = 50_000;
    const CLAIMS: usize = 15;
    const QUEUED: usize = 45;
    let t = Instant::now();
    let fresh = grid_with_history(0, QUEUED);
    let flat = grid_with_history(BIG, QUEUED);
    let archived = grid_with_history(BIG, QUEUED);
    eprintln!("  built grids in {:.1} s", t.elapsed().as_secs_f64());
    let (archive_ms, moved) = archive_as_the_workflow_does(&archived);
    eprintln!("  archived {moved} results in {archive_ms:.0} ms");
    let f = growth_run(&fresh, CLAIMS, QUEUED);
    let a = growth_run(&archived, CLAIMS, QUEUED);
    let b = growth_run(&flat, CLAIMS, QUEUED);
    let (fc, ac, bc) = (
        median(&f.claim_ms),
        median(&a.claim_ms),
        median(&b.claim_ms),
    );
    let mb = |x: u64| x as f64 / 1_048_576.0;
    let grid_bytes = |g: &Grid| du(&g.bare);
    let keep = dgrid_worker::grid::archive::DEFAULT_KEEP;
    format!(
        "## 3. Growth\n\n\
         One worker's clone and transactions on a fresh grid, and on grids with {BIG} results and {BIG} more commits: \
         archived (`dgrid-worker archive` as the grid workflow runs it, keeping the newest {keep} on `main`; \
         it moved {moved} results in {archive_ms:.0} ms), and not archived (all results on `main`).\n\n\
         | measure | fresh grid | {BIG}, archived | ratio | {BIG}, not archived | ratio |\n|---|---:|---:|---:|---:|---:|\n\
         | one claim (median of {CLAIMS} claim transactions) | {fc:.1} ms | {ac:.1} ms | {:.2} | {bc:.1} ms | {:.2} |\n\
         | a task end to end (claim, run `true`, result), drain of {QUEUED} | {:.1} ms | {:.1} ms | {:.2} | {:.1} ms | {:.2} |\n\
         | first sync (the initial clone) | {:.0} ms | {:.0} ms | {:.1} | {:.0} ms | {:.1} |\n\
         | the worker's clone on disk | {:.2} MiB | {:.2} MiB | {:.1} | {:.2} MiB | {:.1} |\n\
         | the grid repository itself | {:.2} MiB | {:.2} MiB | | {:.2} MiB | |\n",
        ac / fc,
        bc / fc,
        f.task_ms,
        a.task_ms,
        a.task_ms / f.task_ms,
        b.task_ms,
        b.task_ms / f.task_ms,
        f.first_sync_ms,
        a.first_sync_ms,
        a.first_sync_ms / f.first_sync_ms,
        b.first_sync_ms,
        b.first_sync_ms / f.first_sync_ms,
        mb(f.clone_bytes),
        mb(a.clone_bytes),
        a.clone_bytes as f64 / f.clone_bytes as f64,
        mb(b.clone_bytes),
        b.clone_bytes as f64 / f.clone_bytes as f64,
        mb(grid_bytes(&fresh)),
        mb(grid_bytes(&archived)),
        mb(grid_bytes(&flat)),
    )
}
