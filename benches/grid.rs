//! The benchmark harness: `cargo bench --bench grid [-- SCENARIO...]`.
//!
//! Each scenario measures the real binary (built with the bench profile)
//! against real bare repositories, and comparisons are measured side by side
//! in one run. Figures are printed and written to `BENCHMARKS.md` (with the
//! machine, git version and date) when every scenario ran.
//!
//! Scenarios: contention, commits, growth, pickup, footprint, overhead.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`:
    // the scenarios take minutes, so they run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmarks run with `cargo bench --bench grid`");
        return;
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = [
        "contention",
        "commits",
        "growth",
        "pickup",
        "footprint",
        "overhead",
    ];
    let run: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s))
        .collect();
    let mut report = String::new();
    for scenario in &run {
        eprintln!("== {scenario}");
        let section = match *scenario {
            "contention" => contention(),
            "commits" => commits(),
            "growth" => growth(),
            "pickup" => pickup(),
            "footprint" => footprint(),
            "overhead" => overhead(),
            _ => unreachable!(),
        };
        println!("{section}");
        report.push_str(&section);
        report.push('\n');
    }
    if run.len() == all.len() {
        write_report(&report);
    }
}

fn write_report(body: &str) {
    let git = String::from_utf8_lossy(
        &Command::new("git")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let text = format!(
        "# Benchmarks\n\nMeasured by `cargo bench --bench grid` on {date}: {cores} cores ({cpu}), {git}, \
         local bare repositories. Every comparison below was measured side by side in the same run.\n\n{body}"
    );
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md"), text).unwrap();
    eprintln!("wrote BENCHMARKS.md");
}

/// A worker as the benchmarks run it: shell engine, quiet, polling every second.
fn bench_spec(grid: &Grid, node: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.env.push(("LOG_LEVEL".into(), "warn".into()));
    spec
}

fn trivial_tasks(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i:05}");
            let body = serde_json::json!({"task_id": id, "script": "true", "timeout_seconds": 30});
            (
                format!("tasks/queue/{id}.json"),
                body.to_string().into_bytes(),
            )
        })
        .collect()
}

struct Drain {
    seconds: f64,
    commits: usize,
    results: usize,
    /// From the workers' start to all of them registered.
    startup: f64,
}

/// Results on the remote's `main`, counted without reading them.
fn result_count(grid: &Grid) -> usize {
    let out = git(
        &grid.bare,
        &["ls-tree", "--name-only", "main", "tasks/completed/"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with("/.gitkeep"))
        .count()
}

/// `workers` workers start and register (idle, polling every second); then
/// `tasks` trivial tasks arrive in one push, and the drain is timed from that
/// push to the last result on `main`. Commits are those the workers made
/// meanwhile: claims, results and heartbeats, not registrations or stops.
fn drain(workers: usize, tasks: usize, extra: &str) -> Drain {
    let grid = Grid::new();
    let started = Instant::now();
    let mut procs: Vec<WorkerProc> = (0..workers)
        .map(|i| {
            let mut spec = bench_spec(&grid, &format!("w{i:02}"));
            spec.extra = extra.into();
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("every registration", Duration::from_secs(300), || {
        grid.files("nodes").len() == workers
    });
    let startup = started.elapsed().as_secs_f64();
    // Let the last registration's node settle into its idle poll.
    std::thread::sleep(Duration::from_secs(2));
    grid.commit_files(&trivial_tasks("t", tasks), "queue");
    let submitted = Instant::now();
    let before = grid.commit_count();
    let deadline = submitted + Duration::from_secs(1800);
    // Polled every 25 ms: finer would cost the workers CPU (a `git ls-tree`
    // each time) on a machine they share.
    while result_count(&grid) < tasks {
        assert!(Instant::now() < deadline, "the drain did not finish");
        std::thread::sleep(Duration::from_millis(25));
    }
    let seconds = submitted.elapsed().as_secs_f64();
    let commits = grid.commit_count() - before;
    for p in &mut procs {
        p.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for p in &mut procs {
        assert!(
            p.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            p.log_text()
        );
    }
    let results = grid.files("tasks/completed").len();
    assert_eq!(results, tasks, "every task done, once");
    Drain {
        seconds,
        commits,
        results,
        startup,
    }
}

/// `git fetch; git commit; git push` in a loop, `writers` at once, for
/// `secs`: the ceiling one ref gives a naive writer.
fn bare_loop(writers: usize, secs: f64) -> f64 {
    let grid = Grid::new();
    let url = grid.url();
    let script = format!(
        "set -e; d=$(mktemp -d); git clone -q '{url}' $d/w; cd $d/w; n=0; end=$(($(date +%s%N) + {ns})); \
         while [ $(date +%s%N) -lt $end ]; do git fetch -q origin; git reset -q --soft origin/main; \
         git -c user.name=b -c user.email=b@b commit -q --allow-empty -m x; \
         if git push -q origin HEAD:main 2>/dev/null; then n=$((n+1)); fi; done; echo $n; rm -rf $d",
        ns = (secs * 1e9) as u64
    );
    let children: Vec<_> = (0..writers)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let total: u64 = children
        .into_iter()
        .map(|c| {
            String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    total as f64 / secs
}

fn contention() -> String {
    const TASKS: usize = 500;
    /// Drains of one grid vary with who wins which race: each row is the
    /// median of this many, taken in turn (1, 8, 16, 1, 8, 16, ...) so that
    /// a change in the machine's load falls on every row alike.
    const RUNS: usize = 3;
    const WORKERS: [usize; 3] = [1, 8, 16];
    let mut runs: Vec<Vec<Drain>> = WORKERS.iter().map(|_| Vec::new()).collect();
    for round in 0..RUNS {
        for (i, workers) in WORKERS.iter().enumerate() {
            let d = drain(*workers, TASKS, "");
            eprintln!(
                "  run {round}: {workers} workers: {:.1} tasks/s, {} commits, registered in {:.1} s",
                d.results as f64 / d.seconds,
                d.commits,
                d.startup
            );
            runs[i].push(d);
        }
    }
    let rate = |d: &Drain| d.results as f64 / d.seconds;
    let rows: Vec<(usize, f64, f64, f64, f64, f64)> = WORKERS
        .iter()
        .zip(&runs)
        .map(|(w, ds)| {
            let rates: Vec<f64> = ds.iter().map(rate).collect();
            let commits: Vec<f64> = ds.iter().map(|d| d.commits as f64).collect();
            let startup: Vec<f64> = ds.iter().map(|d| d.startup).collect();
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            (
                *w,
                median(&rates),
                lo,
                hi,
                median(&commits),
                median(&startup),
            )
        })
        .collect();
    let rate1 = rows[0].1;
    let loop1 = bare_loop(1, 10.0);
    let loop8 = bare_loop(8, 10.0);
    let mut s = String::from("## 1. Contention\n\n");
    let _ = writeln!(
        s,
        "Draining {TASKS} tasks (`true`, shell engine, concurrency 1, `PULL_INTERVAL=1`, default \
         `claim_ahead`) from one bare repository: the workers start and register, then the tasks \
         arrive in one push; timed from that push to the last result on `main`. Commits are the \
         workers' (claims, results, heartbeats); the registration storm is timed apart. Median of \
         {RUNS} drains each, taken in turn, with the range.\n"
    );
    s.push_str(
        "| workers | tasks/s | range | vs 1 worker | commits | all registered after |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for (w, rate, lo, hi, commits, startup) in &rows {
        let _ = writeln!(
            s,
            "| {w} | {rate:.1} | {lo:.0}-{hi:.0} | {:.2} | {commits:.0} | {startup:.1} s |",
            rate / rate1
        );
    }
    let _ = writeln!(
        s,
        "\nBeside them, a bare `git fetch; git commit; git push` loop on the same machine: \
         {loop1:.1} commits/s with one writer, {loop8:.1} commits/s in total with eight.\n"
    );
    s
}

fn commits() -> String {
    // Sustained load: commits per task over a long drain, 4 workers.
    let d = drain(4, 400, "");
    let per_task = d.commits as f64 / d.results as f64;
    // Idle: one node, heartbeat every 2 s, 20 s idle.
    let grid = Grid::new();
    let mut spec = bench_spec(&grid, "idler");
    spec.drain = false;
    spec.extra = "heartbeat_interval = 2\nstale_after = 10\n".into();
    let before = grid.commit_count();
    let mut w = spawn_worker(&grid, &spec);
    std::thread::sleep(Duration::from_secs(1));
    let start = grid.commit_count();
    std::thread::sleep(Duration::from_secs(20));
    let idle = grid.commit_count() - start;
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(10));
    let _ = before;
    let per_interval = idle as f64 / 10.0;
    let default_interval = dgrid_worker::config::DEFAULT_HEARTBEAT_SECS as f64;
    let grid_hour = 100.0 * per_interval * 3600.0 / default_interval;
    format!(
        "## 2. Commits\n\n\
         | measure | figure | target |\n|---|---:|---:|\n\
         | commits per task, 400 tasks, 4 workers (claims, results, heartbeats) | {per_task:.2} | at most 1.0 |\n\
         | idle node: commits per heartbeat interval (2 s interval, 20 s) | {per_interval:.2} | at most 1 |\n\
         | 100 idle nodes at the default interval ({default_interval:.0} s): commits per hour | {grid_hour:.0} | under 200 |\n"
    )
}

/// A grid with `results` results in `tasks/completed/` and as many more
/// commits, then `queued` trivial tasks, written with one `git fast-import`.
///
/// The results arrive a thousand per commit, between one-file commits (a
/// heartbeat-like node record): a commit per result would rewrite a tree
/// of up to 50,000 entries 50,000 times (quadratic, hours), while the tip
/// the worker meets, and the history's length, are the same either way.
fn grid_with_history(results: usize, queued: usize) -> Grid {
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

fn du(path: &std::path::Path) -> u64 {
    let out = Command::new("du").args(["-sk"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse::<u64>()
        .unwrap_or(0)
        * 1024
}

struct GrowthRun {
    first_sync_ms: f64,
    claim_ms: Vec<f64>,
    task_ms: f64,
    clone_bytes: u64,
}

/// One worker against `grid`: the time of its first sync (the clone), the
/// time of each claim-only transaction (in-process, as the worker makes
/// them), then a drain of the queue through the binary.
fn growth_run(grid: &Grid, claims: usize, queued: usize) -> GrowthRun {
    use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
    use dgrid_worker::git::{Git, GridRepo};
    let state = grid.path("bench-state");
    let git_handle = Git::new("git", state.join("grid.git"), Duration::from_secs(600));
    let repo = GridRepo::open_or_init(git_handle, &grid.url(), "main").unwrap();
    let node = dgrid_worker::grid::Id::parse("claimer").unwrap();
    let identity = Identity::for_node("claimer");
    let rules = dgrid_worker::grid::TaskRules::default();
    let policy = dgrid_worker::grid::orphan::OrphanPolicy {
        stale_after: chrono::Duration::hours(1),
        max_attempts: 3,
    };
    let record = dgrid_worker::grid::NodeRecord {
        engine: "shell".into(),
        ..dgrid_worker::grid::NodeRecord::new(
            node.clone(),
            dgrid_worker::grid::NodeStatus::Idle,
            String::new(),
        )
    };
    let held = Default::default();
    let sync = |want: usize| {
        let t = Instant::now();
        let out = txn::run(&repo, &identity, &TxnPolicy::default(), |t| {
            let req = dgrid_worker::service::sync::SyncRequest {
                node: &node,
                now: dgrid_worker::time::now(),
                outbox: &[],
                want_claims: want,
                start_now: want,
                reap: false,
                held: &held,
                heartbeat: want == 0,
                record: &record,
                rules: &rules,
                policy: &policy,
                claim_grace: chrono::Duration::minutes(5),
                queue_empty_at: None,
                share_up_to: 0,
                defer_results: false,
            };
            dgrid_worker::service::sync::plan(t, &req)
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Archive `grid` as the grid workflow does (`dgrid-worker archive` with
/// the default keep), through the tool's library function; its time.
fn archive_as_the_workflow_does(grid: &Grid) -> (f64, usize) {
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

fn growth() -> String {
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

fn pickup() -> String {
    const TASKS: usize = 40;
    let grid = Grid::new();
    let starts = grid.path("starts");
    std::fs::create_dir_all(&starts).unwrap();
    let mut workers: Vec<WorkerProc> = (0..4)
        .map(|i| {
            let mut spec = bench_spec(&grid, &format!("idle{i}"));
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("four registrations", Duration::from_secs(30), || {
        grid.files("nodes").len() == 4
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    for i in 0..TASKS {
        let id = format!("pick-{i:03}");
        let stamp = starts.join(&id);
        let script = format!("date +%s.%N > '{}'", stamp.display());
        let body = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 30});
        grid.commit_files(
            &[(
                format!("tasks/queue/{id}.json"),
                body.to_string().into_bytes(),
            )],
            "submit",
        );
        let pushed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        wait_until("the task to start", Duration::from_secs(30), || {
            stamp.exists() && std::fs::metadata(&stamp).unwrap().len() > 0
        });
        let started: f64 = std::fs::read_to_string(&stamp)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        latencies.push(started - pushed);
        // Submissions at irregular moments relative to the workers' polls.
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..1000)));
    }
    for w in &mut workers {
        w.signal(nix::sys::signal::Signal::SIGTERM);
        w.wait_exit(Duration::from_secs(30));
    }
    latencies.sort_by(f64::total_cmp);
    format!(
        "## 4. Pickup\n\n4 idle workers, `PULL_INTERVAL=1`, {TASKS} tasks submitted one at a time at irregular moments; \
         from the submitter's push returning to the task's script starting.\n\n\
         | p50 | p95 | max | target |\n|---:|---:|---:|---|\n| {:.2} s | {:.2} s | {:.2} s | p50 at most 0.7 s, p95 at most 1.5 s |\n",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1],
    )
}

/// (RSS in KiB, CPU seconds of the process and its reaped children).
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name's closing parenthesis: utime is 14th,
    // cutime 16th of the whole line, i.e. 12th and 14th after it.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12, 13, 14]
        .iter()
        .map(|&i| rest[i].parse::<u64>().unwrap())
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (rss, ticks as f64 / hz)
}

fn footprint() -> String {
    const SECONDS: u64 = 60;
    let grid = Grid::new();
    let mut spec = WorkerSpec::new(&grid, "idle");
    spec.drain = false;
    spec.env.push(("LOG_LEVEL".into(), "warn".into()));
    // The default pull interval: the config written by the harness says 1 s.
    spec.env.push(("PULL_INTERVAL".into(), "10".into()));
    let mut w = spawn_worker(&grid, &spec);
    wait_until("registration", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("idle.json")
    });
    std::thread::sleep(Duration::from_secs(5));
    let pid = w.child.id();
    let (_, cpu0) = usage(pid);
    let mut peak = 0;
    for _ in 0..SECONDS {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(usage(pid).0);
    }
    let (rss, cpu1) = usage(pid);
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(30));
    let share = (cpu1 - cpu0) / SECONDS as f64 * 100.0;
    format!(
        "## 5. Footprint\n\nOne idle worker at the default pull interval (10 s), over {SECONDS} s; CPU includes its git children.\n\n\
         | RSS at the end | peak RSS | CPU | target |\n|---:|---:|---:|---|\n| {:.1} MiB | {:.1} MiB | {share:.2} % of a core | at most 10 MB, under 1 % |\n",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
    )
}

fn overhead() -> String {
    const TASKS: usize = 20;
    require_podman_image();
    let conf = containers_conf();
    // A bare `podman run` with the worker's own flags, one after another.
    let job = dgrid_worker::sandbox::Job {
        node_id: "bare".into(),
        task_id: "x".into(),
        attempt: 1,
        script: "true".into(),
        timeout: Duration::from_secs(30),
    };
    let started = Instant::now();
    for i in 0..TASKS {
        let mut j = job.clone();
        j.task_id = format!("bare-{i}");
        let args = dgrid_worker::sandbox::run_args(
            &j,
            TEST_IMAGE,
            &dgrid_worker::sandbox::Limits::default(),
        );
        let ok = Command::new("podman")
            .args(&args)
            .env("CONTAINERS_CONF", &conf)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let bare = started.elapsed().as_secs_f64() / TASKS as f64;
    // The same tasks through one worker, end to end.
    let grid = Grid::new();
    let tasks: Vec<(String, Vec<u8>)> = trivial_tasks("pod", TASKS);
    grid.commit_files(&tasks, "queue");
    let mut spec = bench_spec(&grid, "podder");
    spec.engine = "podman".into();
    spec.env
        .push(("CONTAINERS_CONF".into(), conf.display().to_string()));
    spec.env.push(("DGRID_IMAGE".into(), TEST_IMAGE.into()));
    let mut w = spawn_worker(&grid, &spec);
    // Count from the first claim, not from process start: start-up (engine
    // check, clone, registration) is paid once per worker, not per task.
    wait_until("the first claim", Duration::from_secs(60), || {
        !grid.files("tasks/in_progress").is_empty()
    });
    let started = Instant::now();
    assert!(
        w.wait_exit(Duration::from_secs(600)).success(),
        "{}",
        w.log_text()
    );
    let worker = started.elapsed().as_secs_f64() / TASKS as f64;
    assert_eq!(grid.files("tasks/completed").len(), TASKS);
    format!(
        "## 6. Overhead\n\n{TASKS} tasks (`true`) in podman with the sandbox flags, busybox image, one after another.\n\n\
         | bare `podman run` | through the worker | worker's time beyond podman | target |\n|---:|---:|---:|---|\n\
         | {:.0} ms | {:.0} ms | {:.0} % | at most 25 % |\n",
        bare * 1000.0,
        worker * 1000.0,
        (worker - bare) / bare * 100.0,
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
