//! A hostile grid: what anyone with push access (a submitter, another node,
//! a stolen token) can push, against real bare repositories, the real
//! binary and, where it matters, real podman containers. Each test is one
//! attack; together they check that nothing pushed can stop a node, make it
//! read without bound, lose a result, or write through to a terminal or a
//! GitHub job. Figures: RELIABILITY.md, "A hostile grid".

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use dgrid_worker::grid::claim::ClaimedTask;
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus, ResultStatus, Task, TaskResult, TaskRules};
use dgrid_worker::time;

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn dgrid(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

fn podman_spec(grid: &Grid, node: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.engine = "podman".into();
    spec.env = vec![
        (
            "CONTAINERS_CONF".into(),
            containers_conf().display().to_string(),
        ),
        ("DGRID_IMAGE".into(), TEST_IMAGE.into()),
    ];
    spec
}

// ---- 1. blame -------------------------------------------------------------

/// A script that prints what an engine prints when it fails and exits with
/// the engines' own code (125) ran: its container started, so the failure
/// is its own. It gets a result; the node stays healthy and drains.
#[test]
fn a_task_cannot_pose_as_an_engine_failure() {
    require_podman_image();
    let grid = Grid::new();
    grid.submit(&[
        (
            "poser".into(),
            "echo 'Error: runc: container init failed' >&2; exit 125".into(),
            30,
        ),
        (
            "poser-127".into(),
            "echo 'Error: runc: runc create failed: unable to start container process: exec: \"x\": executable file not found in $PATH: OCI runtime attempted to invoke a command that was not found' >&2; exit 127".into(),
            30,
        ),
        ("honest".into(), "echo fine".into(), 30),
    ]);
    let mut w = spawn_worker(&grid, &podman_spec(&grid, "blame-n"));
    let status = w.wait_exit(Duration::from_secs(240));
    assert!(status.success(), "{}", w.log_text());
    let failed = grid.json_files("tasks/failed");
    for (task, code) in [("poser", 125), ("poser-127", 127)] {
        let r = &failed[&format!("blame-n@{task}.json")];
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["exit_code"], code, "{r}");
        assert_eq!(r["attempt"], 1, "never requeued: {r}");
    }
    assert!(
        grid.files("tasks/completed")
            .contains_key("blame-n@honest.json")
    );
    let log = w.log_text();
    assert!(!log.contains("engine failure"), "{log}");
    let node: serde_json::Value =
        serde_json::from_slice(&grid.files("nodes")["blame-n.json"]).unwrap();
    assert_ne!(node["status"], "unhealthy", "{node}");
}

/// An engine that really fails for a task (its container never starts:
/// here a `podman` whose `run` of that task fails as runc does, everything
/// else the real podman) is not the task's fault, but it counts: a task that keeps
/// meeting it ends in `failed/` within `max_attempts`, never requeued for
/// ever.
#[test]
fn engine_failures_count_against_the_task() {
    require_podman_image();
    let grid = Grid::new();
    grid.submit(&[("unlucky".into(), "echo never".into(), 30)]);
    let w = spawn_worker(
        &grid,
        &failing_engine_spec(
            &grid,
            "broken-n",
            r#"case "$*" in *unlucky*) true;; *) false;; esac"#,
        ),
    );
    wait_until("the task to be abandoned", Duration::from_secs(120), || {
        grid.files("tasks/failed")
            .contains_key("broken-n@unlucky.json")
    });
    let r = &grid.json_files("tasks/failed")["broken-n@unlucky.json"];
    assert_eq!(r["status"], "abandoned", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("engine failure") && error.contains("container init failed"),
        "{error}"
    );
    assert!(grid.queued().is_empty());
    assert!(grid.files("tasks/in_progress").is_empty());
    // The node said so: its engine failed.
    assert!(w.log_text().contains("engine failure"), "{}", w.log_text());
}

/// A worker whose `podman run` fails as runc does when the shell test
/// `when` holds (everything else the real podman), with
/// `max_attempts = 1`, not draining.
fn failing_engine_spec(grid: &Grid, node: &str, when: &str) -> WorkerSpec {
    let bin = grid.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = Command::new("sh")
        .args(["-c", "command -v podman"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
    write_script(
        &bin.join("podman"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = run ] && {when}; then echo 'Error: runc: container init failed' >&2; exit 125; fi\nexec {real} \"$@\"\n"
        ),
    );
    let mut spec = podman_spec(grid, node);
    spec.drain = false;
    spec.extra = "max_attempts = 1\n".into();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    spec.env.push(("PATH".into(), path));
    spec
}

/// An engine that answers `info` and holds the image but starts no
/// container: `check` says so (it passed), and the node's health check
/// (the same probe) keeps it unhealthy rather than claiming again.
#[test]
fn check_fails_an_engine_that_starts_no_container() {
    require_podman_image();
    let grid = Grid::new();
    let spec = failing_engine_spec(&grid, "probe-n", "true");
    let config = grid.path("probe-n.toml");
    std::fs::write(&config, spec.config_text(&grid.path("state-probe-n"))).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("starts no container") && text.contains("container init failed"),
        "{text}"
    );
}

/// Once its engine has failed a start, a node starts none of the claims
/// it holds ahead (each would fail too, and spend an attempt of its
/// task): it gives them back, their attempts unspent, for peers to run.
#[test]
fn an_engine_failure_gives_back_the_claims_held_ahead_unspent() {
    require_podman_image();
    let grid = Grid::new();
    let broken = grid.path("engine-broken");
    let tasks = |prefix: &str, n: usize| -> Vec<(String, String, u64)> {
        (1..=n)
            .map(|i| (format!("{prefix}-{i}"), "sleep 0.2".into(), 30))
            .collect()
    };
    // Tasks timed first, so that the node claims ahead of its slot.
    grid.submit(&tasks("timed", 4));
    let w = spawn_worker(
        &grid,
        &failing_engine_spec(&grid, "held-n", &format!("[ -e '{}' ]", broken.display())),
    );
    wait_until("the first tasks to run", Duration::from_secs(180), || {
        grid.files("tasks/completed").len() == 4
    });
    std::fs::write(&broken, b"").unwrap();
    grid.submit(&tasks("held", 12));
    wait_until(
        "the claims to be given back",
        Duration::from_secs(120),
        || {
            !grid.files("tasks/failed").is_empty()
                && grid.files("tasks/in_progress").is_empty()
                && grid.queued().len() == 11
        },
    );
    let log = w.log_text();
    assert!(
        log.contains("giving back the claim") && log.contains("the engine is unhealthy"),
        "the node held claims ahead and gave them back: {log}"
    );
    // One start failed; its retry (a minute on) has not come yet.
    let failed = grid.files("tasks/failed");
    assert_eq!(
        failed.len(),
        1,
        "only the start that failed is spent: {failed:?}"
    );
    for (name, task) in grid.queued() {
        assert!(
            task.get("attempt").is_none_or(|a| a == 1),
            "{name} kept its attempt: {task}"
        );
    }
}

// ---- 2. bounded reads -----------------------------------------------------

/// Peak resident memory of a process so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Run the binary with `args` to its end and return its output and peak
/// RSS (GNU time's "Maximum resident set size", KiB).
fn measured(args: &[&str]) -> (std::process::Output, u64) {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(BIN)
        .args(args)
        .output()
        .expect("/usr/bin/time runs (scripts/lib/setup-host installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    let kib = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {err}"));
    (out, kib)
}

const BIG: usize = 50 * 1024 * 1024;
const COPIES: usize = 20;

/// Twenty entries in each of `tasks/queue/`, `nodes/` and
/// `tasks/in_progress/` that all name one 50 MB blob: a push of a few
/// hundred KB. The worker reads none of them, refuses the queue and claim
/// entries by their size, runs the good tasks and stays small; the tools
/// finish, as small.
#[test]
fn oversized_entries_are_refused_unread_and_memory_stays_bounded() {
    let grid = Grid::new();
    grid.commit_with("fifty megabytes, sixty names", |work| {
        let big = work.join("big.bin");
        std::fs::write(&big, vec![0u8; BIG]).unwrap();
        let oid = git(work, &["hash-object", "-w", "big.bin"]).stdout;
        let oid = String::from_utf8(oid).unwrap().trim().to_owned();
        std::fs::remove_file(&big).unwrap();
        for i in 0..COPIES {
            for path in [
                format!("tasks/queue/big-{i}.json"),
                format!("nodes/big-{i}.json"),
                format!("tasks/in_progress/big-{i}.json"),
            ] {
                git(
                    work,
                    &[
                        "update-index",
                        "--add",
                        "--cacheinfo",
                        &format!("100644,{oid},{path}"),
                    ],
                );
            }
        }
        // `add -A` must not undo the index entries: keep the work tree
        // from disagreeing by checking them out.
        git(work, &["checkout-index", "-a"]);
    });
    grid.submit(&[
        ("good-1".into(), "echo one".into(), 30),
        ("good-2".into(), "echo two".into(), 30),
    ]);
    let pack_kib = dir_kib(&grid.bare);
    tools_stay_small(&grid, "before the worker");
    let (out, _) = measured(&["status", "--repo", &grid.bare.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "nodes/big-3.json: not a node record: is 52428800 bytes; at most 65536 are read"
        ),
        "{text}"
    );

    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "frugal"));
    let pid = w.child.id();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while w.child.try_wait().unwrap().is_none() {
        if let Some(k) = peak_rss_kib(pid) {
            peak = peak.max(k);
        }
        assert!(
            Instant::now() < deadline,
            "worker did not drain: {}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = w.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{}", w.log_text());
    eprintln!("grid pack {pack_kib} KiB; worker peak RSS {peak} KiB");
    assert!(peak > 0 && peak < 100 * 1024, "worker peak RSS {peak} KiB");

    let completed = grid.json_files("tasks/completed");
    assert!(completed.contains_key("frugal@good-1.json"));
    assert!(completed.contains_key("frugal@good-2.json"));
    let failed = grid.json_files("tasks/failed");
    let errors = errors_of(&failed);
    for dir in ["tasks/queue", "tasks/in_progress"] {
        for i in 0..COPIES {
            let want = format!("{dir}/big-{i}.json: is {BIG} bytes; at most 262144 are allowed");
            assert!(errors.contains(&want), "{want:?} not in {errors:#?}");
        }
    }
    assert!(grid.queued().is_empty());
    assert!(grid.files("tasks/in_progress").is_empty());

    // The worker's reap removed the twenty from nodes/ (too big to be a
    // record); the tools read the same grid in place, as bounded (their
    // figures with all sixty are measured before the worker ran, above).
    let nodes: Vec<String> = grid.files("nodes").into_keys().collect();
    assert_eq!(nodes, ["frugal.json"]);
    tools_stay_small(&grid, "after the worker");
}

/// Every reading tool finishes on `grid`, each under a generous bound of
/// peak memory (its figure printed for RELIABILITY.md). `reap` and
/// `archive` clone the grid first: their figure includes git's.
fn tools_stay_small(grid: &Grid, when: &str) {
    let bare = grid.bare.display().to_string();
    let site = grid.path("site");
    for args in [
        vec!["status", "--repo", &bare],
        vec!["status", "--repo", &bare, "--json"],
        vec![
            "dashboard",
            "--repo",
            &bare,
            "--out",
            site.to_str().unwrap(),
        ],
        vec!["reap", "--repo", &bare, "--dry-run"],
        vec!["archive", "--repo", &bare, "--dry-run"],
    ] {
        let (out, kib) = measured(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{when}: {} {}: peak RSS {kib} KiB",
            args[0],
            args.get(3).copied().unwrap_or("")
        );
        assert!(kib < 150 * 1024, "{args:?}: peak RSS {kib} KiB");
    }
}

fn dir_kib(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sk").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

// ---- 3. names -------------------------------------------------------------

fn claim_bytes(task: &str, node: &str, attempt: u32) -> Vec<u8> {
    let mut t = Task::parse(
        format!(r#"{{"task_id":"{task}","script":"true","timeout_seconds":5}}"#).as_bytes(),
        &TaskRules::default(),
    )
    .unwrap();
    t.attempt = attempt;
    let long_ago = time::now() - chrono::Duration::hours(3);
    ClaimedTask::new(t, &id(node), long_ago, chrono::Duration::seconds(1)).to_bytes()
}

/// Node `a-b` with task `c` and node `a` with task `b-c`, both abandoned by
/// one reap in one commit: two results, at two paths.
#[test]
fn results_whose_old_names_collide_both_survive_one_reap() {
    let grid = Grid::new();
    grid.commit_files(
        &[
            (
                "tasks/in_progress/c.json".into(),
                claim_bytes("c", "a-b", 3),
            ),
            (
                "tasks/in_progress/b-c.json".into(),
                claim_bytes("b-c", "a", 3),
            ),
        ],
        "two claims, out of attempts",
    );
    let out = dgrid(&["reap", "--repo", &grid.url(), "--max-attempts", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = grid.json_files("tasks/failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert_eq!(failed["a-b@c.json"]["task_id"], "c");
    assert_eq!(failed["a@b-c.json"]["task_id"], "b-c");
    for r in failed.values() {
        assert_eq!(r["status"], "abandoned");
    }
}

/// Results written under the old `<node>-<task>.json` names are still
/// found: `submit` and `validate --grid` refuse their ids.
#[test]
fn old_result_names_are_still_found() {
    let grid = Grid::new();
    let old = TaskResult {
        task_id: "b-c".into(),
        node_id: id("a"),
        exit_code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
        timestamp: time::format(time::now()),
        status: ResultStatus::Completed,
        started_at: None,
        duration_ms: Some(1),
        attempt: 1,
        truncated: false,
        error: None,
    };
    grid.commit_files(
        &[("tasks/completed/a-b-c.json".into(), old.to_bytes())],
        "a result named the old way",
    );
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--id",
        "b-c",
        "--script",
        "true",
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tasks/completed/a-b-c.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `c` is not `b-c`: the old name is only a candidate, the file decides.
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--id",
        "c",
        "--script",
        "true",
        "--timeout",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let work = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let pr = grid.path("pr");
    std::fs::create_dir_all(&pr).unwrap();
    std::fs::write(
        pr.join("b-c.json"),
        br#"{"task_id":"b-c","script":"true","timeout_seconds":5}"#,
    )
    .unwrap();
    let out = dgrid(&[
        "validate",
        "--grid",
        work.to_str().unwrap(),
        pr.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("already has a result: tasks/completed/a-b-c.json"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// ---- forged claims, dates and node records --------------------------------

/// A claim in the name of a node nobody runs, dated in year 9999 and
/// "kept alive" by a node record dated 9999 too, holds its task for no
/// longer than one reap; a record that names another node than its file
/// is shown as what it is, never as that node.
#[test]
fn forged_claims_and_dates_hold_nothing() {
    let grid = Grid::new();
    let forged = |task: &str, node: &str| {
        let t = Task::parse(
            format!(r#"{{"task_id":"{task}","script":"true","timeout_seconds":5}}"#).as_bytes(),
            &TaskRules::default(),
        )
        .unwrap();
        let year_9999 = time::parse("9999-01-01T00:00:00Z").unwrap();
        ClaimedTask::new(t, &id(node), year_9999, chrono::Duration::days(300)).to_bytes()
    };
    let future_hb = NodeRecord::new(id("ghost"), NodeStatus::Busy, "9999-01-01T00:00:00Z".into());
    let mimic = NodeRecord::new(id("real"), NodeStatus::Idle, time::format(time::now()));
    grid.commit_files(
        &[
            (
                "tasks/in_progress/held.json".into(),
                forged("held", "ghost"),
            ),
            (
                "tasks/in_progress/held-2.json".into(),
                forged("held-2", "nobody"),
            ),
            ("nodes/ghost.json".into(), future_hb.to_bytes()),
            ("nodes/mimic.json".into(), mimic.to_bytes()),
        ],
        "claims from the future",
    );
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("names node \"real\", but the file is named for \"mimic\""),
        "{text}"
    );
    let out = dgrid(&["reap", "--repo", &grid.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("claimed_at 9999-01-01T00:00:00.000Z is in the future"),
        "{text}"
    );
    assert!(grid.files("tasks/in_progress").is_empty());
    let queue = grid.queued();
    assert_eq!(queue["held.json"]["attempt"], 2);
    assert_eq!(queue["held-2.json"]["attempt"], 2);

    // The record that names another node than its file is no record: the
    // reap removed it, and nothing shows it as that node.
    assert!(!grid.files("nodes").contains_key("mimic.json"));
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("real ")),
        "{text}"
    );
}

// ---- 4. escaping ----------------------------------------------------------

const EVIL: &str = "x\u{1b}[2J\n```\n::stop-commands::tok\n::notice::owned\u{7}";

/// Names that carry terminal escapes, newlines, a code fence and workflow
/// commands come out of `status` as one escaped line each.
#[test]
fn status_prints_grid_names_escaped() {
    let grid = Grid::new();
    let name = format!("{EVIL}.json");
    grid.commit_files(
        &[
            (format!("tasks/queue/{name}"), b"{}".to_vec()),
            (
                format!("nodes/{name}"),
                NodeRecord::new(id("n1"), NodeStatus::Idle, "\u{1b}]0;pwned\u{7}".into())
                    .to_bytes(),
            ),
        ],
        "evil names",
    );
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character got through: {text:?}"
    );
    for line in text.lines() {
        let l = line.trim_start();
        assert!(!l.starts_with("```") && !l.starts_with("::"), "{line:?}");
    }
    assert!(
        text.contains("\\u{1b}[2J\\n\\u{60}\\u{60}\\u{60}\\n::stop-commands::tok"),
        "{text}"
    );
}

/// `validate` prints each finding as one escaped line, plain and as an
/// annotation: a file name cannot issue workflow commands.
#[test]
fn validate_cannot_be_made_to_issue_workflow_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{EVIL}.json")), b"{}").unwrap();
    let out = Command::new(BIN)
        .args(["validate"])
        .arg(dir.path())
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("::") || line.starts_with("::error file="),
            "{line:?}"
        );
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
}

// ---- 5. the dashboard -----------------------------------------------------

/// Two results dated year 0 and year 9999 make a chart of at most 48 bars,
/// not a 28 MB page.
#[test]
fn forged_timestamps_cannot_blow_up_the_dashboard() {
    let grid = Grid::new();
    let result = |task: &str, ts: &str| {
        let mut r: serde_json::Value = serde_json::json!({
            "task_id": task, "node_id": "n", "exit_code": 0, "stdout": "", "stderr": "",
            "timestamp": ts, "status": "completed", "attempt": 1, "truncated": false
        });
        r["duration_ms"] = 1.into();
        serde_json::to_vec(&r).unwrap()
    };
    grid.commit_files(
        &[
            (
                "tasks/completed/n@old.json".into(),
                result("old", "0000-01-01T00:00:00Z"),
            ),
            (
                "tasks/completed/n@new.json".into(),
                result("new", "9999-12-31T23:59:59Z"),
            ),
        ],
        "results from the ends of time",
    );
    let site = grid.path("site");
    let out = dgrid(&[
        "dashboard",
        "--repo",
        &grid.bare.display().to_string(),
        "--out",
        site.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::metadata(site.join("index.html")).unwrap().len();
    let json = std::fs::metadata(site.join("grid.json")).unwrap().len();
    eprintln!("index.html {html} B, grid.json {json} B");
    assert!(
        html < 200_000 && json < 200_000,
        "index.html {html} B, grid.json {json} B"
    );
}

// ---- 7. bad arguments ------------------------------------------------------

/// Arguments at the edge neither panic nor hang nor read without end.
#[test]
fn bad_arguments_are_refused_promptly() {
    let grid = Grid::new();
    let started = Instant::now();
    let out = dgrid(&[
        "reap",
        "--repo",
        &grid.url(),
        "--stale-after",
        "18446744073709551615",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let out = dgrid(&["status", "--repo", &grid.url(), "--stale-after", "0"]);
    assert_eq!(out.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("t.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = dgrid(&["validate", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is a FIFO, not a regular file"));
    let out = dgrid(&["validate", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is a character device, not a regular file")
    );
    let out = dgrid(&["submit", "--repo", &grid.url(), "--task-file", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/dev/zero: is a character device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--script-file",
        fifo.to_str().unwrap(),
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // Generous: these are refusals, each a fraction of a second.
    assert!(started.elapsed() < Duration::from_secs(60));
}

// ---- 8. a killed worker's container ---------------------------------------

/// With podman the engine bounds the run itself: a SIGKILLed worker's
/// container is gone soon after the task's timeout, without waiting for
/// the worker to come back.
#[test]
fn a_killed_workers_container_ends_at_its_timeout() {
    require_podman_image();
    let grid = Grid::new();
    grid.submit(&[("endless".into(), "sleep 600".into(), 5)]);
    let mut spec = podman_spec(&grid, "killed-n");
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the task's container", Duration::from_secs(120), || {
        !node_containers("killed-n").is_empty()
    });
    let started = Instant::now();
    w.signal(nix::sys::signal::Signal::SIGKILL);
    w.wait_exit(Duration::from_secs(10));
    // timeout 5 s + the engine's 10 s slack; generous on a loaded host.
    wait_until(
        "the container to end by itself",
        Duration::from_secs(90),
        || node_containers("killed-n").is_empty(),
    );
    eprintln!("container gone {:?} after the kill", started.elapsed());
}
