//! What checking a signature costs, per task: in process (the `ssh-key`
//! crate, as the worker does it) against a call of `ssh-keygen -Y verify`
//! (what shelling out would cost), and with the per-blob cache warm.
//!
//! `cargo bench --bench trust` prints a Markdown table for BENCHMARKS.md
//! (section "Trust"). Needs ssh-keygen (openssh-client).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dgrid_worker::grid::{Id, ResultStatus, Task, TaskResult, TaskRules};
use dgrid_worker::time;
use dgrid_worker::trust::policy::{Kind, Pinned, Policy, Window};
use dgrid_worker::trust::task::TaskDigest;
use dgrid_worker::trust::{KeySigner, Signer, Verdict, Verifier, keys};

const TASKS: usize = 500;
const SSH_KEYGEN_CALLS: usize = 20;

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmarks run with `cargo bench --bench trust`");
        return;
    }
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
        },
        TaskRules::default(),
    );
    verifier
        .offer_policy(&policy.seal(&[&root]).unwrap())
        .unwrap();

    let tasks: Vec<(String, Vec<u8>)> = (0..TASKS)
        .map(|i| {
            let id = format!("t{i}");
            let task = Task::parse(
                format!(r#"{{"task_id":"{id}","script":"python3 -c 'print({i} * {i})'","timeout_seconds":30}}"#)
                    .as_bytes(),
                &TaskRules::default(),
            )
            .unwrap();
            let bytes = dgrid_worker::trust::task::sign(
                &task,
                &grid,
                now,
                now + chrono::Duration::days(1),
                &alice,
            )
            .unwrap();
            (format!("{id}.json"), bytes)
        })
        .collect();

    // Cold: every blob new to the cache (parse, agree, signature).
    let mut cold = Vec::new();
    let started = Instant::now();
    for (i, (name, bytes)) in tasks.iter().enumerate() {
        let t = Instant::now();
        let v = verifier.verify_task(&format!("blob{i}"), name, bytes, now);
        cold.push(t.elapsed());
        assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    }
    let cold_total = started.elapsed();
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
                &digest,
                Some("0123456789abcdef0123456789abcdef01234567"),
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
            .expect("ssh-keygen is required");
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        assert!(child.wait().unwrap().success());
        external.push(t.elapsed());
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("Trust: {TASKS} signed tasks, {cores} cores\n");
    println!("| check, per task | p50 | p95 | mean |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, v: &Vec<Duration>| {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "| {what} | {} | {} | {} |",
            ms(percentile(v.clone(), 0.5)),
            ms(percentile(v.clone(), 0.95)),
            ms(mean)
        );
    };
    row("verify in process, first sight of a blob", &cold);
    row("verify in process, blob already cached", &warm);
    row("sign a result in process", &signing);
    row(
        &format!("`ssh-keygen -Y verify` ({SSH_KEYGEN_CALLS} calls)"),
        &external,
    );
    println!(
        "\n{TASKS} tasks verified cold in {} in all.",
        ms(cold_total)
    );
}
