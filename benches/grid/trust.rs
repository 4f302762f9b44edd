//! Section 8: trust. What checking signatures costs a node: per task, in
//! process (the `ssh-key` crate, as the worker does it) against a call of
//! `ssh-keygen -Y verify` (what shelling out would cost), with the per-blob
//! cache warm, and signing a result; then a whole drain of 500 signed tasks
//! by one worker in `enforce` against the same drain with trust `off`.
//!
//! Needs ssh-keygen (openssh-client).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dgrid_worker::grid::{Id, ResultStatus, Task, TaskResult, TaskRules};
use dgrid_worker::time;
use dgrid_worker::trust::policy::{Kind, Pinned, Policy, Window};
use dgrid_worker::trust::result::Answered;
use dgrid_worker::trust::task::TaskDigest;
use dgrid_worker::trust::{KeySigner, Signer, Verdict, Verifier, keys};

use crate::common::*;
use crate::{bench_spec, median, min_max, wait_for_results};

const TASKS: usize = 500;
const SSH_KEYGEN_CALLS: usize = 20;
/// Drains per mode, taken in turn (off, enforce, off, ...); `TRUST_RUNS`
/// for more on a noisy machine.
const RUNS: usize = 3;

fn drains_per_mode() -> usize {
    std::env::var("TRUST_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn signed_task(id: &str, script: &str, grid: &Id, key: &KeySigner) -> Vec<u8> {
    let task = Task::parse(
        serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 30})
            .to_string()
            .as_bytes(),
        &TaskRules::default(),
    )
    .unwrap();
    let now = time::now();
    dgrid_worker::trust::task::sign(
        &task,
        grid,
        now - chrono::Duration::seconds(10),
        now + chrono::Duration::days(1),
        key,
    )
    .unwrap()
}

/// Per task, in process and through ssh-keygen: the table's rows.
fn per_task() -> Vec<(String, Vec<Duration>)> {
    let grid = Id::parse("bench").unwrap();
    let root = KeySigner::InProcess(keys::generate("root"));
    let alice = KeySigner::InProcess(keys::generate("alice"));
    let node = keys::generate("n1");
    let now = time::now();
    let mut policy = Policy::new(grid.clone(), now);
    policy
        .add(
            Kind::Submitter,
            Id::parse("alice").unwrap(),
            alice.public_key(),
            Window::default(),
        )
        .unwrap();
    policy
        .add(
            Kind::Node,
            Id::parse("n1").unwrap(),
            node.public_key(),
            Window::default(),
        )
        .unwrap();
    let mut verifier = Verifier::new(
        Pinned {
            grid_id: grid.clone(),
            roots: vec![root.public_key().clone()],
            threshold: 1,
            min_version: 0,
        },
        TaskRules::default(),
    );
    verifier
        .offer_policy(&policy.seal(&[&root]).unwrap())
        .unwrap();
    let tasks: Vec<(String, Vec<u8>)> = (0..TASKS)
        .map(|i| {
            let id = format!("t{i}");
            let script = format!("python3 -c 'print({i} * {i})'");
            (
                format!("{id}.json"),
                signed_task(&id, &script, &grid, &alice),
            )
        })
        .collect();

    // Cold: every blob new to the cache (parse, agree, signature).
    let mut cold = Vec::new();
    for (i, (name, bytes)) in tasks.iter().enumerate() {
        let t = Instant::now();
        let v = verifier.verify_task(&format!("blob{i}"), name, bytes, now);
        cold.push(t.elapsed());
        assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    }
    // Warm: the same blobs again (the policy and the clock only).
    let mut warm = Vec::new();
    for (i, (name, bytes)) in tasks.iter().enumerate() {
        let t = Instant::now();
        let v = verifier.verify_task(&format!("blob{i}"), name, bytes, now);
        warm.push(t.elapsed());
        assert!(matches!(v, Verdict::Trusted(_)));
    }
    // Signing a result, as a node does for each task it ran.
    let signer = Signer::new(grid.clone(), KeySigner::InProcess(node));
    let digest = TaskDigest::of_file(&tasks[0].1).unwrap();
    let result = TaskResult {
        task_id: "t0".into(),
        node_id: Id::parse("n1").unwrap(),
        exit_code: Some(0),
        stdout: "0\n".into(),
        stderr: String::new(),
        timestamp: time::format(now),
        status: ResultStatus::Completed,
        started_at: None,
        duration_ms: Some(12),
        attempt: 1,
        truncated: false,
        error: None,
    };
    let mut signing = Vec::new();
    for _ in 0..TASKS {
        let t = Instant::now();
        signer
            .sign_result(
                &result,
                &Answered::new(&digest, Some("0123456789abcdef0123456789abcdef01234567")),
            )
            .unwrap();
        signing.push(t.elapsed());
    }
    // The same check by ssh-keygen, one process per task.
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, policy.allowed_signers()).unwrap();
    let mut external = Vec::new();
    for (_, bytes) in tasks.iter().take(SSH_KEYGEN_CALLS) {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let env = dgrid_worker::trust::Envelope::from_field(
            &v["envelope"],
            dgrid_worker::trust::Role::Task,
        )
        .unwrap();
        let sig = dir.path().join("sig");
        std::fs::write(&sig, &env.signatures[0]).unwrap();
        let payload = env.payload_bytes().unwrap();
        let t = Instant::now();
        let mut child = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "submitter:alice", "-n", "dgrid-task-v1@bench", "-s"])
            .arg(&sig)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-keygen is required (openssh-client)");
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        assert!(child.wait().unwrap().success());
        external.push(t.elapsed());
    }
    vec![
        ("verify in process, first sight of a blob".into(), cold),
        ("verify in process, blob already cached".into(), warm),
        ("sign a result in process".into(), signing),
        (
            format!("`ssh-keygen -Y verify` ({SSH_KEYGEN_CALLS} calls)"),
            external,
        ),
    ]
}

fn dgrid(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("DGRID_REPO_URL")
        .env_remove("GIT_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dgrid-worker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Drain {
    seconds: f64,
    commits: usize,
    /// The worker's CPU time during the drain (user + system, its git
    /// children included).
    cpu: f64,
}

/// One worker drains `TASKS` signed tasks (`true`) from a grid with a
/// policy: in `enforce` (checking each, signing each result) or with no
/// `[trust]` at all. Timed as the contention drains are: the worker is
/// registered and idle when the tasks arrive in one push; from that push
/// to the last result on `main`.
fn drain(enforce: bool) -> Drain {
    let grid = Grid::new();
    let keys = grid.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = |n: &str| keys.join(n).display().to_string();
    for n in ["root", "alice", "w00"] {
        dgrid(&["keygen", "-f", &key(n), "-C", n]);
    }
    let url = grid.url();
    let root = key("root");
    let policy = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--repo", url.as_str(), "--sign-with", root.as_str()]);
        dgrid(&all);
    };
    policy(&["trust", "init", "--grid-id", "bench"]);
    policy(&[
        "trust",
        "add-submitter",
        "--name",
        "alice",
        "--key",
        &key("alice.pub"),
    ]);
    policy(&[
        "trust",
        "add-node",
        "--node-id",
        "w00",
        "--key",
        &key("w00.pub"),
    ]);
    let alice = KeySigner::open(Path::new(&key("alice"))).unwrap();
    let grid_id = Id::parse("bench").unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..TASKS)
        .map(|i| {
            let id = format!("t-{i:05}");
            let bytes = signed_task(&id, "true", &grid_id, &alice);
            (format!("tasks/queue/{id}.json"), bytes)
        })
        .collect();

    let mut spec = bench_spec(&grid, "w00");
    spec.drain = false;
    if enforce {
        spec.extra = format!(
            "[trust]\nmode = \"enforce\"\ngrid_id = \"bench\"\nroots = \"{}\"\nnode_key = \"{}\"\n",
            key("root.pub"),
            key("w00")
        );
    }
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the registration", Duration::from_secs(300), || {
        grid.files("nodes").len() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let cpu_before = crate::service::usage(w.child.id()).1;
    grid.commit_files(&files, "queue");
    let submitted = Instant::now();
    let before = grid.commit_count();
    wait_for_results(&grid, TASKS, Duration::from_secs(1800));
    let seconds = submitted.elapsed().as_secs_f64();
    let cpu = crate::service::usage(w.child.id()).1 - cpu_before;
    let commits = grid.commit_count() - before;
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    // Every result is there once; in enforce, each signed by the node.
    let completed = grid.files("tasks/completed");
    assert_eq!(completed.len(), TASKS);
    let signed = completed
        .values()
        .filter(|b| String::from_utf8_lossy(b).contains("\"envelope\""))
        .count();
    assert_eq!(signed, if enforce { TASKS } else { 0 });
    Drain {
        seconds,
        commits,
        cpu,
    }
}

pub fn trust() -> String {
    eprintln!("  per task");
    let rows = per_task();
    let mut runs: [Vec<Drain>; 2] = [Vec::new(), Vec::new()];
    let n = drains_per_mode();
    for round in 0..n {
        for (i, enforce) in [false, true].into_iter().enumerate() {
            let d = drain(enforce);
            eprintln!(
                "  run {round}: {}: {:.1} tasks/s, {} commits, {:.2} s of CPU",
                if enforce { "enforce" } else { "off" },
                TASKS as f64 / d.seconds,
                d.commits,
                d.cpu
            );
            runs[i].push(d);
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::from("## 9. Trust\n\n");
    let _ = writeln!(
        s,
        "{TASKS} tasks signed by one submitter (Ed25519), verified by a worker's `trust::Verifier` \
         as a claim does (parse, agreement of the file with its signed payload, signature, \
         policy, clock), each under a new blob id, then again under the same ids; beside them, \
         the same check by `ssh-keygen -Y verify`, one process per task ({cores} cores).\n"
    );
    s.push_str("| check, per task | p50 | p95 | mean |\n|---|---:|---:|---:|\n");
    for (what, v) in &rows {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} |",
            ms(percentile(v.clone(), 0.5)),
            ms(percentile(v.clone(), 0.95)),
            ms(mean)
        );
    }
    let _ = writeln!(
        s,
        "\nDraining {TASKS} signed tasks (`true`, shell engine, one worker, `PULL_INTERVAL=1`) \
         from a grid with a policy, as in section 1: the worker registered and idle, the tasks in \
         one push, timed to the last result on `main`. `off`: no `[trust]`; `enforce`: every \
         task's signature, policy and clock checked, its replay checked against the results on \
         `main` and the node's record, every result signed by the node. CPU: the worker's, with \
         its git children. Median of {n} drains each, taken in turn, with the range; \
         \"vs off\": the median, over the rounds, of each enforce drain against the off drain just \
         before it.\n"
    );
    s.push_str(
        "| trust | tasks/s | range | vs off | commits | CPU | CPU per task | vs off |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let rate = |d: &Drain| TASKS as f64 / d.seconds;
    // Each enforce drain against the off drain just before it: the
    // machine's load drifts less within a pair than across the run.
    let paired = |f: &dyn Fn(&Drain) -> f64| {
        median(
            &runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(off, on)| f(on) / f(off))
                .collect::<Vec<_>>(),
        )
    };
    let (rate_ratio, cpu_ratio) = (paired(&rate), paired(&|d: &Drain| d.cpu));
    for (i, (name, ds)) in ["off", "enforce"].iter().zip(&runs).enumerate() {
        let rates: Vec<f64> = ds.iter().map(rate).collect();
        let (lo, hi) = min_max(&rates);
        let commits = median(&ds.iter().map(|d| d.commits as f64).collect::<Vec<_>>());
        let cpu = median(&ds.iter().map(|d| d.cpu).collect::<Vec<_>>());
        let (vs_rate, vs_cpu) = if i == 0 {
            (1.0, 1.0)
        } else {
            (rate_ratio, cpu_ratio)
        };
        let _ = writeln!(
            s,
            "| {name} | {:.1} | {lo:.0}-{hi:.0} | {vs_rate:.2} | {commits:.0} | {cpu:.2} s | {:.2} ms | {vs_cpu:.2} |",
            median(&rates),
            cpu * 1000.0 / TASKS as f64,
        );
    }
    s.push('\n');
    s
}
