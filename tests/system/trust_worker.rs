//! Trust, end to end, with running workers against real bare repositories:
//! each attack on what a node runs ends where it should (left in the
//! queue, or in `failed/` with its name), what a node runs is exactly what
//! a submitter signed, a copy of a task that ran never runs again, the
//! policy only moves forward, and only results signed by the node that
//! held the claim are attested (`verify`, `status`, `dashboard`), and a
//! node in `enforce` reckons only with peers' records their nodes signed.
//!
//! The shell engine runs the scripts (these tests are about what runs, not
//! how it is contained): each leaves a mark, so a test can tell which ran.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::tools_fixture::{dgrid, expect_code, stderr, stdout};
use crate::trust_fixture::*;
use dgrid_worker::trust::result::Answered;

/// The `error` of a result in `failed/`.
pub(crate) fn failed_error(t: &TrustedGrid, name: &str) -> String {
    let failed = t.grid.json_files("tasks/failed");
    let r = failed
        .get(name)
        .unwrap_or_else(|| panic!("no tasks/failed/{name} in {:?}", failed.keys()));
    assert_eq!(r["status"], "invalid", "{r}");
    r["error"].as_str().unwrap().to_owned()
}

#[test]
fn enforce_runs_only_what_a_submitter_signed_and_names_each_refusal() {
    let t = TrustedGrid::new();
    let relabelled = {
        // Signed for g8, then relabelled as g7's: the signature's namespace
        // still says g8.
        let bytes = t.signed(
            "relabelled",
            &t.marking("relabelled"),
            "alice",
            "g8",
            -10,
            3600,
        );
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("\"g8\"", "\"g7\"");
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let env = dgrid_worker::trust::Envelope::from_field(
            &v["envelope"],
            dgrid_worker::trust::Role::Task,
        )
        .unwrap();
        let payload = String::from_utf8(env.payload_bytes().unwrap())
            .unwrap()
            .replace("\"g8\"", "\"g7\"");
        v["envelope"]["payload"] = dgrid_worker::trust::Envelope::new(
            dgrid_worker::trust::Role::Task,
            payload.as_bytes(),
            vec![],
        )
        .payload
        .into();
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let tampered = {
        let mut v: Value =
            serde_json::from_slice(&t.by_alice("tampered", "echo harmless")).unwrap();
        v["script"] = t.marking("tampered").into();
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let unsigned = serde_json::to_vec(&serde_json::json!({
        "task_id": "unsigned", "script": t.marking("unsigned"), "timeout_seconds": 30
    }))
    .unwrap();
    let skipped = [
        ("unsigned", unsigned),
        (
            "stranger",
            t.signed(
                "stranger",
                &t.marking("stranger"),
                "eve",
                GRID_ID,
                -10,
                3600,
            ),
        ),
        (
            "early",
            t.signed("early", &t.marking("early"), "alice", GRID_ID, 7200, 9000),
        ),
    ];
    let mut queue = vec![
        ("good", t.by_alice("good", &t.marking("good"))),
        (
            "by-node",
            t.signed("by-node", &t.marking("by-node"), "n1", GRID_ID, -10, 3600),
        ),
        (
            "other-grid",
            t.signed(
                "other-grid",
                &t.marking("other-grid"),
                "alice",
                "g8",
                -10,
                3600,
            ),
        ),
        ("relabelled", relabelled),
        ("tampered", tampered),
        (
            "expired",
            t.signed(
                "expired",
                &t.marking("expired"),
                "alice",
                GRID_ID,
                -7200,
                -3600,
            ),
        ),
        (
            "revoked",
            t.signed("revoked", &t.marking("revoked"), "bob", GRID_ID, -10, 3600),
        ),
    ];
    queue.extend(skipped.iter().cloned());
    t.queue(&queue, "a queue with every attack");

    // A node that heartbeats every second sees a new tip each second, and
    // looks at the queue again each time.
    let mut spec = t.worker("n1", "enforce");
    spec.extra.insert_str(0, "heartbeat_interval = 1\n");
    spec.drain = false;
    let mut w = spawn_worker(&t.grid, &spec);
    wait_until(
        "the good task and six refusals",
        Duration::from_secs(120),
        || t.grid.files("tasks/completed").len() == 1 && t.grid.files("tasks/failed").len() == 6,
    );
    let tip = t.grid.tip_of("main").unwrap();
    wait_until(
        "a few more looks at the queue",
        Duration::from_secs(60),
        || git_count_since(&t.grid, &tip) >= 4,
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(60)).success());

    // The signed task ran, and only it.
    let completed = t.grid.json_files("tasks/completed");
    let good = &completed["n1@good.json"];
    assert_eq!(good["status"], "completed", "{good}");
    assert_eq!(t.runs("good"), 1);
    for (name, _) in &queue[1..] {
        assert_eq!(t.runs(name), 0, "{name} ran");
    }
    // Each refusal in failed/, by name.
    for (id, code) in [
        ("by-node", "wrong-role"),
        ("other-grid", "other-grid"),
        ("relabelled", "bad-signature"),
        ("tampered", "tampered"),
        ("expired", "expired"),
        ("revoked", "revoked-key"),
    ] {
        let e = failed_error(&t, &format!("n1@{id}.json"));
        assert!(
            e.starts_with(&format!("tasks/queue/{id}.json: untrusted ({code}): ")),
            "{id}: {e}"
        );
    }
    assert!(
        failed_error(&t, "n1@tampered.json")
            .ends_with("field `script` differs from the signed payload")
    );
    // What the policy may yet make good stays in the queue, untouched, and
    // is logged once, not at every look.
    let queued = t.grid.files("tasks/queue");
    for (id, bytes) in &skipped {
        assert_eq!(&queued[&format!("{id}.json")], bytes, "{id} left as it was");
    }
    assert_eq!(queued.len(), 3, "{:?}", queued.keys());
    for (id, code) in [
        ("unsigned", "unsigned"),
        ("stranger", "unknown-signer"),
        ("early", "not-yet-issued"),
    ] {
        let lines = log_lines(&w, &format!("entry={id}.json"));
        let left: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("task left in the queue"))
            .collect();
        assert_eq!(left.len(), 1, "{id}: {lines:#?}");
        assert!(left[0].contains(&format!("code={code}")), "{}", left[0]);
    }

    // The result is signed by n1, for the claim it held: attested.
    let out = t.verify(&["tasks/completed/n1@good.json"]);
    assert!(
        out.contains("tasks/completed/n1@good.json: attested by node n1"),
        "{out}"
    );
    // The refusals' results are of tasks that never ran: no node signs
    // those, and `verify` of the whole grid, as a grid's CI runs it, still
    // passes, naming them as such.
    let all = t.verify_run(&[]);
    expect_code(&all, 0);
    let text = stdout(&all);
    for id in ["by-node", "tampered", "expired"] {
        let line = format!("tasks/failed/n1@{id}.json: the task never ran (invalid)");
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
    }
    assert!(
        stderr(&all).contains("1 attested, 0 not; 6 of tasks that never ran"),
        "{}",
        stderr(&all)
    );
    // A forged `invalid` result that claims a run's output is no refusal:
    // not attested, and `verify` fails.
    let forged = serde_json::json!({
        "task_id": "good", "node_id": "n1", "status": "invalid", "exit_code": 0,
        "stdout": "PWNED", "stderr": "", "attempt": 1, "truncated": false,
        "timestamp": dgrid_worker::time::format(dgrid_worker::time::now()),
    });
    t.grid.commit_files(
        &[(
            "tasks/failed/n1@good@9.json".into(),
            serde_json::to_vec(&forged).unwrap(),
        )],
        "a refusal that says what ran",
    );
    let all = t.verify_run(&[]);
    expect_code(&all, 1);
    assert!(
        stdout(&all).contains("tasks/failed/n1@good@9.json: not attested (unsigned)"),
        "{}",
        stdout(&all)
    );
    // The node's record carries its key; its state holds the policy and
    // the task it ran.
    let record = &t.grid.json_files("nodes")["n1.json"];
    let public = std::fs::read_to_string(t.key("n1.pub")).unwrap();
    let words = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(record["node_key"].as_str().unwrap(), words(&public));
    // What a node with a trust gate runs is not for a peer to judge: it
    // takes no claims made for it (PROTOCOL.md, Assigned claims).
    assert!(record.get("takes_assigned").is_none(), "{record}");
    assert_eq!(t.held_version(&w), 6);
    let ran = std::fs::read_to_string(w.state.join("trust/ran")).unwrap();
    assert_eq!(ran.lines().count(), 1, "{ran}");
    assert!(
        ran.starts_with(good["task_digest"].as_str().unwrap()),
        "{ran}"
    );
}

/// Commits on main after `since`.
fn git_count_since(grid: &Grid, since: &str) -> usize {
    let out = git(
        &grid.bare,
        &["rev-list", "--count", &format!("{since}..main")],
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn warn_runs_everything_and_says_what_enforce_would_refuse() {
    let t = TrustedGrid::new();
    let tampered = {
        let mut v: Value =
            serde_json::from_slice(&t.by_alice("tampered", "echo harmless")).unwrap();
        v["script"] = t.marking("tampered").into();
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let unsigned = serde_json::to_vec(&serde_json::json!({
        "task_id": "unsigned", "script": t.marking("unsigned"), "timeout_seconds": 30
    }))
    .unwrap();
    t.queue(
        &[
            ("unsigned", unsigned),
            ("tampered", tampered),
            ("good", t.by_alice("good", &t.marking("good"))),
        ],
        "three tasks",
    );
    let w = t.drain(&t.worker("n2", "warn"));
    for id in ["unsigned", "tampered", "good"] {
        assert_eq!(t.runs(id), 1, "{id}");
        assert!(
            t.grid
                .files("tasks/completed")
                .contains_key(&format!("n2@{id}.json"))
        );
    }
    for (id, code) in [("unsigned", "unsigned"), ("tampered", "tampered")] {
        let lines = log_lines(&w, &format!("entry={id}.json"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("enforce mode would not run")
                    && l.contains(&format!("code={code}"))),
            "{id}: {lines:#?}"
        );
    }
    assert!(log_lines(&w, "entry=good.json").is_empty());
}

#[test]
fn a_task_that_ran_never_runs_again_but_a_requeue_does() {
    let t = TrustedGrid::new();
    let once = t.by_alice("once", &t.marking("once"));
    t.queue(&[("once", once.clone())], "once");
    t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("once"), 1);
    assert!(t.grid.files("tasks/completed").contains_key("n1@once.json"));

    // The same signed file, pushed again: n2 sees n1's signed result.
    t.queue(&[("once", once.clone())], "replay");
    t.drain(&t.worker("n2", "enforce"));
    assert_eq!(t.runs("once"), 1);
    let e = failed_error(&t, "n2@once.json");
    assert!(
        e.contains("untrusted (replayed): was run already: tasks/completed/n1@once.json answers it, signed by node n1"),
        "{e}"
    );

    // The results removed (or archived) and the file pushed again: n1
    // remembers it ran it.
    t.grid
        .commit_with("the host removes the results and replays", |w| {
            std::fs::remove_file(w.join("tasks/completed/n1@once.json")).unwrap();
            std::fs::remove_file(w.join("tasks/failed/n2@once.json")).unwrap();
            std::fs::write(w.join("tasks/queue/once.json"), &once).unwrap();
        });
    t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("once"), 1);
    let e = failed_error(&t, "n1@once.json");
    assert!(
        e.contains("untrusted (replayed): was run already: this node ran task once"),
        "{e}"
    );

    // A result that does not verify is no result: it cannot stop a task.
    t.grid.commit_files(
        &[
            (
                "tasks/completed/n1@fresh.json".into(),
                forged_completed("fresh", ""),
            ),
            (
                "tasks/queue/fresh.json".into(),
                t.by_alice("fresh", &t.marking("fresh")),
            ),
        ],
        "an unsigned result, then the task",
    );
    t.drain(&t.worker("n2", "enforce"));
    assert_eq!(t.runs("fresh"), 1);
    assert!(
        t.grid
            .files("tasks/completed")
            .contains_key("n2@fresh.json")
    );

    // A claim lost with its node (SIGKILL mid-task) is requeued and runs
    // again: nothing was delivered, so nothing was recorded.
    let slow = format!("sleep 3; {}", t.marking("slow"));
    t.queue(&[("slow", t.by_alice("slow", &slow))], "slow");
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    let w = spawn_worker(&t.grid, &spec);
    wait_until("slow claimed", Duration::from_secs(60), || {
        t.grid.files("tasks/in_progress").contains_key("slow.json")
    });
    w.signal(nix::sys::signal::Signal::SIGKILL);
    drop(w);
    let again = t.drain(&t.worker("n1", "enforce"));
    let completed = t.grid.json_files("tasks/completed");
    assert_eq!(
        completed["n1@slow.json"]["status"],
        "completed",
        "{}",
        again.log_text()
    );
    assert!(!t.grid.files("tasks/failed").contains_key("n1@slow.json"));
}

/// A completed result no node of the policy signed releases no dependant
/// and is no one's input: a task after `par`, whose `par` the host took out
/// of the queue and answered with a result of its own, waits; once `par`
/// runs, the dependant reads the signed result, never the forged one.
/// `status --roots` of the grid, its text.
fn status_with_roots(t: &TrustedGrid) -> String {
    let bare = t.grid.bare.display().to_string();
    stdout(&dgrid(&[
        "status",
        "--repo",
        &bare,
        "--roots",
        &t.key("root.pub"),
    ]))
}

#[test]
fn a_forged_result_neither_releases_a_dependant_nor_becomes_its_input() {
    let t = TrustedGrid::new();
    dependant_of_a_forged_result(&t);
    let w = t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("after-par"), 0, "{}", w.log_text());
    assert!(
        t.grid
            .files("tasks/blocked/par")
            .contains_key("after-par.json"),
        "it waits for par: {:?}",
        t.grid.files("tasks/blocked")
    );
    assert!(
        !log_lines(&w, "a completed result is not attested").is_empty(),
        "{}",
        w.log_text()
    );
    // `status` with the roots says why it waits, not that a node will
    // queue it.
    let status = status_with_roots(&t);
    let line = status
        .lines()
        .find(|l| l.contains("after-par"))
        .unwrap_or_else(|| panic!("after-par not in:\n{status}"));
    assert!(
        line.contains(
            "waits on nodes that enforce trust: the completed result tasks/completed/n1@par.json is not attested (unsigned)"
        ),
        "{line}"
    );

    t.queue(&[("par", t.by_alice("par", "echo genuine"))], "par, signed");
    let w = t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("after-par"), 1, "{}", w.log_text());
    let r = &t.grid.json_files("tasks/completed")["n1@after-par.json"];
    let out = r["stdout"].as_str().unwrap();
    assert!(out.contains("genuine") && !out.contains("FORGED"), "{out}");
}

/// In `warn` the same dependant runs, as `warn` runs everything, and the
/// node says what `enforce` would have held (it said nothing: an operator
/// previewing `enforce` saw no sign of it).
#[test]
fn warn_releases_the_dependant_of_a_forged_result_and_says_enforce_would_not() {
    let t = TrustedGrid::new();
    dependant_of_a_forged_result(&t);
    let w = t.drain(&t.worker("n2", "warn"));
    assert_eq!(t.runs("after-par"), 1, "{}", w.log_text());
    assert!(
        log_lines(&w, "enforce mode would hold its dependants")
            .iter()
            .any(|l| l.contains("task=par") && l.contains("code=unsigned")),
        "{}",
        w.log_text()
    );
}

/// A signed task after `par`, and a completed result of `par` that no node
/// signed, pushed together.
fn dependant_of_a_forged_result(t: &TrustedGrid) {
    let script = format!("cat \"$DGRID_INPUTS/par.json\"; {}", t.marking("after-par"));
    let after = serde_json::json!({
        "task_id": "after-par", "script": script, "timeout_seconds": 30, "after": ["par"]
    });
    t.grid.commit_files(
        &[
            (
                "tasks/queue/after-par.json".into(),
                t.signed_task(after, "alice", GRID_ID, -10, 3600),
            ),
            (
                "tasks/completed/n1@par.json".into(),
                forged_completed("par", "FORGED"),
            ),
        ],
        "a signed dependant, and an unsigned result for its parent",
    );
}

/// A completed result of `task` in n1's name, written now, that no node
/// signed: what anyone who can push can write.
fn forged_completed(task: &str, stdout: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "task_id": task, "node_id": "n1", "exit_code": 0, "stdout": stdout, "stderr": "",
        "timestamp": dgrid_worker::time::format(dgrid_worker::time::now()),
        "status": "completed", "attempt": 1, "truncated": false
    }))
    .unwrap()
}

/// A listed node in `warn` runs what no submitter signed, and signs the
/// result as its own word for what it ran; that result stands for no
/// signed task: a pusher's unsigned task of a signed parent's id, run so,
/// neither releases the signed dependants on a node enforcing trust nor
/// becomes their input. The same node's result of the signed parent does.
#[test]
fn a_result_of_an_unsigned_task_run_in_warn_releases_no_dependant_in_enforce() {
    let t = TrustedGrid::new();
    let script = format!("cat \"$DGRID_INPUTS/par.json\"; {}", t.marking("kid"));
    let kid = serde_json::json!({
        "task_id": "kid", "script": script, "timeout_seconds": 30, "after": ["par"],
        "requires": ["gpu"]
    });
    let evil = serde_json::json!({"task_id": "par", "script": "echo EVIL", "timeout_seconds": 30});
    t.queue(
        &[
            ("kid", t.signed_task(kid, "alice", GRID_ID, -10, 3600)),
            ("par", serde_json::to_vec(&evil).unwrap()),
        ],
        "a signed dependant, and an unsigned task of its parent's id",
    );
    let w = t.drain(&t.worker("n2", "warn"));
    let evil_run = &t.grid.json_files("tasks/completed")["n2@par.json"];
    assert!(
        evil_run["stdout"].as_str().unwrap().contains("EVIL"),
        "{evil_run}"
    );
    assert_eq!(evil_run["task_signed_by"], Value::Null, "{evil_run}");
    // n2 released `kid`, as a node not enforcing trust does, to a lane of
    // `gpu`, which only n1 serves; n1 enforces.
    assert_eq!(t.runs("kid"), 0, "{}", w.log_text());
    let mut n1 = t.worker("n1", "enforce");
    n1.extra = format!("labels = [\"gpu\"]\n{}", n1.extra);

    let w = t.drain(&n1);
    assert_eq!(t.runs("kid"), 0, "{}", w.log_text());
    assert!(
        log_lines(&w, "a completed result is not attested")
            .iter()
            .any(|l| l.contains("code=task-not-signed")),
        "{}",
        w.log_text()
    );
    let status = status_with_roots(&t);
    assert!(
        status.lines().any(|l| l.contains("kid") && l.contains(
            "the completed result tasks/completed/n2@par.json answers a task its node did not find signed (task-not-signed)"
        )),
        "{status}"
    );

    t.queue(&[("par", t.by_alice("par", "echo genuine"))], "par, signed");
    let w = t.drain(&t.worker("n2", "warn"));
    let w1 = t.drain(&n1);
    assert_eq!(t.runs("kid"), 1, "{}\n{}", w.log_text(), w1.log_text());
    let results = t.grid.json_files("tasks/completed");
    let genuine = results
        .iter()
        .find(|(k, v)| k.contains("@par") && v["stdout"].as_str().unwrap().contains("genuine"))
        .map(|(_, v)| v.clone())
        .expect("the signed par ran");
    assert_eq!(genuine["task_signed_by"], "alice", "{genuine}");
    let out = results["n1@kid.json"]["stdout"].as_str().unwrap();
    assert!(out.contains("genuine") && !out.contains("EVIL"), "{out}");
}

/// A node in `warn` runs a signed task whose script the host rewrote, as
/// `warn` runs everything; its result goes unsigned, so it stands for
/// nothing its submitter signed: the genuine task, put back, still runs on
/// a node enforcing trust (it is no replay of what ran).
#[test]
fn a_tampered_task_run_in_warn_leaves_no_signed_result_for_the_signed_task() {
    let t = TrustedGrid::new();
    let genuine = t.by_alice("w1", &t.marking("w1"));
    let mut tampered: Value = serde_json::from_slice(&genuine).unwrap();
    tampered["script"] = t.marking("tampered").into();
    t.queue(
        &[("w1", serde_json::to_vec(&tampered).unwrap())],
        "the host rewrites the script",
    );
    let w = t.drain(&t.worker("n1", "warn"));
    assert_eq!(t.runs("tampered"), 1, "{}", w.log_text());
    let r = &t.grid.json_files("tasks/completed")["n1@w1.json"];
    assert!(r.get("envelope").is_none(), "signed: {r}");
    assert!(
        !log_lines(&w, "its result goes unsigned").is_empty(),
        "{}",
        w.log_text()
    );

    t.queue(&[("w1", genuine)], "the genuine task again");
    let w = t.drain(&t.worker("n2", "enforce"));
    assert_eq!(t.runs("w1"), 1, "{}", w.log_text());
}

/// `check` reads the grid's policy and judges it by the roots pinned: a
/// node pinning a key that does not sign it runs nothing signed, which
/// `check` says (78: the configuration must change), before the node is
/// started; and it says when the policy does not list the node's key.
#[test]
fn check_refuses_roots_that_do_not_sign_the_grids_policy() {
    let t = TrustedGrid::new();
    let check = |spec: &WorkerSpec| check_node(&t, spec);
    let (code, text) = check(&t.worker("n1", "enforce"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("the grid's policy (version 6) is signed by the roots pinned"),
        "{text}"
    );
    assert!(!text.contains("peers"), "{text}");
    // A live peer whose record is not signed (an older worker's): a node
    // enforcing the policy reckons without it, which `check` says before
    // the switch; signed by its listed key, it counts.
    t.grid
        .commit_files(&n2_record(&t, false), "n2, an older worker");
    let (code, text) = check(&t.worker("n1", "warn"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("WARN peers")
            && text.contains(
                "1 live peer(s) a node in `enforce` reckons without: n2 (its record is not signed)"
            ),
        "{text}"
    );
    t.grid.commit_files(&n2_record(&t, true), "n2, upgraded");
    let (_, text) = check(&t.worker("n1", "warn"));
    assert!(!text.contains("peers"), "{text}");
    // A node whose key the policy does not list may start, and is warned:
    // its results will not count, so in `enforce` it claims nothing.
    let (code, text) = check(&t.worker("carol", "enforce"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("WARN trust")
            && text.contains("its results will not count")
            && text.contains("so in `enforce` it claims nothing"),
        "{text}"
    );
    let (_, text) = check(&t.worker("carol", "warn"));
    assert!(
        text.contains("its results will not count") && !text.contains("claims nothing"),
        "{text}"
    );
    let mut wrong = t.worker("n2", "enforce");
    wrong.extra = wrong.extra.replace(&t.key("root.pub"), &t.key("alice.pub"));
    let (code, text) = check(&wrong);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("the grid's .dgrid/policy.json is refused (not-signed-by-roots)"),
        "{text}"
    );
}

/// `dgrid-worker check` of `spec`'s configuration (its state directory
/// the worker's): the exit code and what it printed.
fn check_node(t: &TrustedGrid, spec: &WorkerSpec) -> (Option<i32>, String) {
    let state = t.grid.path(&format!("state-{}", spec.node));
    let config = t.grid.path(&format!("{}.toml", spec.node));
    std::fs::write(&config, spec.config_text(&state)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), text)
}

#[test]
fn the_policy_only_moves_forward_and_only_the_roots_move_it() {
    let t = TrustedGrid::new();
    // Version 3 listed bob; version 6 revokes his key.
    let v3 = git(&t.grid.bare, &["show", "main~3:.dgrid/policy.json"]).stdout;
    assert!(String::from_utf8_lossy(&v3).contains("\"version\": 3"));
    let v6 = git(&t.grid.bare, &["show", "main:.dgrid/policy.json"]).stdout;
    t.queue(&[("first", t.by_alice("first", "true"))], "first");
    let w = t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.held_version(&w), 6);

    // The host brings back version 3, and bob's task with it: n1, started
    // again, holds 6 from its state directory.
    t.grid.commit_files(
        &[
            (".dgrid/policy.json".into(), v3),
            (
                "tasks/queue/by-bob.json".into(),
                t.signed("by-bob", &t.marking("by-bob"), "bob", GRID_ID, -10, 3600),
            ),
        ],
        "roll the policy back",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    let refused = log_lines(&w, "the grid's policy is refused");
    assert!(
        refused.iter().any(|l| l.contains("code=rolled-back")),
        "{}",
        w.log_text()
    );
    assert_eq!(t.held_version(&w), 6);
    assert_eq!(t.runs("by-bob"), 0);
    assert!(failed_error(&t, "n1@by-bob.json").contains("untrusted (revoked-key)"));
    // `check` says so: a warning, not a refusal of the node's
    // configuration, which is sound (the node runs under version 6).
    let (code, text) = check_node(&t, &t.worker("n1", "enforce"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("WARN trust")
            && text.contains("is refused (rolled-back)")
            && text.contains("this node keeps version 6"),
        "{text}"
    );

    // Eve writes a version 99 listing herself, signed by herself.
    let mut policy: dgrid_worker::trust::Policy = {
        let mut v: Value = serde_json::from_slice(&v6).unwrap();
        v.as_object_mut().unwrap().remove("envelope");
        serde_json::from_value(v).unwrap()
    };
    policy.version = 99;
    let eve = dgrid_worker::trust::KeySigner::open(std::path::Path::new(&t.key("eve"))).unwrap();
    policy
        .add(
            dgrid_worker::trust::policy::Kind::Submitter,
            dgrid_worker::grid::Id::parse("eve").unwrap(),
            eve.public_key(),
            Default::default(),
        )
        .unwrap();
    let by_eve = t.signed("by-eve", &t.marking("by-eve"), "eve", GRID_ID, -10, 3600);
    t.grid.commit_files(
        &[
            (".dgrid/policy.json".into(), policy.seal(&[&eve]).unwrap()),
            ("tasks/queue/by-eve.json".into(), by_eve.clone()),
        ],
        "a policy signed by no root",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    assert!(
        log_lines(&w, "the grid's policy is refused")
            .iter()
            .any(|l| l.contains("code=not-signed-by-roots")),
        "{}",
        w.log_text()
    );
    assert_eq!(t.held_version(&w), 6);
    assert_eq!(t.runs("by-eve"), 0);
    assert_eq!(t.grid.files("tasks/queue")["by-eve.json"], by_eve);

    // The owner's next version (7, over the forged file) lists carol; her
    // task, queued before, waits in the queue of a running node until the
    // policy reaches it, then runs.
    t.grid.commit_with("the owner takes the policy back", |w| {
        std::fs::write(w.join(".dgrid/policy.json"), &v6).unwrap();
        std::fs::remove_file(w.join("tasks/queue/by-eve.json")).unwrap();
    });
    t.queue(
        &[(
            "by-carol",
            t.signed(
                "by-carol",
                &t.marking("by-carol"),
                "carol",
                GRID_ID,
                -10,
                3600,
            ),
        )],
        "carol's task",
    );
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    let mut w = spawn_worker(&t.grid, &spec);
    wait_until("carol's task skipped", Duration::from_secs(60), || {
        !log_lines(&w, "entry=by-carol.json").is_empty()
    });
    assert!(log_lines(&w, "entry=by-carol.json")[0].contains("code=unknown-signer"));
    t.policy(&[
        "trust",
        "add-submitter",
        "--name",
        "carol",
        "--key",
        &t.key("carol.pub"),
    ]);
    wait_until("carol's task run", Duration::from_secs(60), || {
        t.grid
            .files("tasks/completed")
            .contains_key("n1@by-carol.json")
    });
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(60)).success());
    assert_eq!(t.runs("by-carol"), 1);
    assert_eq!(t.held_version(&w), 7);
    assert!(!log_lines(&w, "accepted a new policy").is_empty());
}

#[test]
fn only_a_result_signed_by_the_node_that_held_the_claim_is_attested() {
    use dgrid_worker::grid::{Id, TaskResult};
    use dgrid_worker::trust::{Signer, TaskDigest};
    let t = TrustedGrid::new();
    t.queue(
        &[
            ("ok", t.by_alice("ok", "echo fine")),
            ("bad", t.by_alice("bad", "echo broken >&2; exit 3")),
        ],
        "two tasks",
    );
    t.drain(&t.worker("n1", "enforce"));
    let ok: Value = t.grid.json_files("tasks/completed")["n1@ok.json"].clone();
    assert!(t.grid.json_files("tasks/failed")["n1@bad.json"]["envelope"].is_object());
    let claim_commit = ok["claim_commit"].as_str().unwrap().to_owned();
    let claim = git(
        &t.grid.bare,
        &["show", &format!("{claim_commit}:tasks/in_progress/ok.json")],
    )
    .stdout;
    let digest = TaskDigest::of_file(&claim).unwrap();
    let result: TaskResult = serde_json::from_value(ok.clone()).unwrap();
    let g7 = Id::parse(GRID_ID).unwrap();
    let n2 = Signer::open(g7, std::path::Path::new(&t.key("n2"))).unwrap();
    // n2's key in n1's name; n2 for the claim n1 held; n1's result with
    // its output changed; a result with no signature.
    let in_n1s_name = n2
        .sign_result(&result, &Answered::new(&digest, Some(&claim_commit)))
        .unwrap();
    let theirs = TaskResult {
        node_id: Id::parse("n2").unwrap(),
        ..result.clone()
    };
    let unheld = n2
        .sign_result(&theirs, &Answered::new(&digest, Some(&claim_commit)))
        .unwrap();
    let mut changed = ok.clone();
    changed["stdout"] = "all good, trust me\n".into();
    let unsigned = result.to_bytes();
    t.grid.commit_files(
        &[
            ("tasks/completed/n1@ok@1.json".into(), in_n1s_name),
            ("tasks/completed/n2@ok.json".into(), unheld),
            (
                "tasks/completed/n1@ok@2.json".into(),
                serde_json::to_vec_pretty(&changed).unwrap(),
            ),
            ("tasks/completed/n1@ok@3.json".into(), unsigned),
        ],
        "forged results",
    );
    // A node whose key the policy does not list.
    let mut n3: Value = t.grid.json_files("nodes")["n1.json"].clone();
    n3["node_id"] = "n3".into();
    n3["node_key"] = std::fs::read_to_string(t.key("eve.pub"))
        .unwrap()
        .trim()
        .into();
    t.grid.commit_files(
        &[("nodes/n3.json".into(), serde_json::to_vec(&n3).unwrap())],
        "a node the owner never listed",
    );
    let expected = [
        ("tasks/completed/n1@ok.json", "attested", "by node n1"),
        ("tasks/failed/n1@bad.json", "attested", "by node n1"),
        (
            "tasks/completed/n1@ok@1.json",
            "wrong-node",
            "is signed by node n2 but names node n1",
        ),
        (
            "tasks/completed/n2@ok.json",
            "claim-not-held",
            "is claimed by n1 at attempt 1, not by n2",
        ),
        (
            "tasks/completed/n1@ok@2.json",
            "tampered",
            "field `stdout` differs from the signed payload",
        ),
        (
            "tasks/completed/n1@ok@3.json",
            "unsigned",
            "has no `envelope`",
        ),
    ];
    let out = t.verify(&[]);
    for (path, code, says) in expected {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{path}:")))
            .unwrap_or_else(|| panic!("{path} not in:\n{out}"));
        if code == "attested" {
            assert!(line.contains("attested by node n1"), "{line}");
        } else {
            assert!(
                line.contains(&format!("not attested ({code})")) && line.contains(says),
                "{line}"
            );
        }
    }

    // status --json: the same, per result listed, with the policy's roots
    // pinned; the text names each result that is not attested.
    let bare = t.grid.bare.display().to_string();
    let root = t.key("root.pub");
    let json = dgrid(&["status", "--repo", &bare, "--json", "--roots", &root]);
    expect_code(&json, 0);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["trust"]["policy_version"], 6);
    assert!(v["trust"]["roots"].as_str().unwrap().starts_with("pinned"));
    assert_eq!(v["trust"]["attested"], 2);
    assert_eq!(v["trust"]["not_attested"], 4);
    let listed: Vec<&Value> = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["failures"].as_array().unwrap())
        .collect();
    for (path, code, says) in expected {
        let r = listed
            .iter()
            .find(|r| r["file"] == path)
            .unwrap_or_else(|| panic!("{path} not listed"));
        assert_eq!(r["trust"], code, "{r}");
        if code == "attested" {
            assert_eq!(r["attested_by"], "n1");
        } else {
            assert!(r["trust_error"].as_str().unwrap().contains(says), "{r}");
        }
    }
    let n1 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "n1")
        .unwrap();
    assert!(n1["key"].as_str().unwrap().starts_with("SHA256:"));
    assert!(n1.get("key_problem").is_none(), "{n1}");
    let n3 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "n3")
        .unwrap();
    assert_eq!(n3["key_problem"], "policy version 6 does not list it");
    let text = dgrid(&["status", "--repo", &bare]);
    expect_code(&text, 0);
    let text = stdout(&text);
    assert!(
        text.contains("trust: policy version 6 of grid g7, roots from the grid's own .dgrid/roots")
            && text.contains("2 attested, 4 not, 0 unchecked")
            && text.contains("tasks/completed/n1@ok@1.json  not attested (wrong-node)")
            && text.contains(
                ": policy version 6 does not list it; results that key signs do not count"
            ),
        "{text}"
    );
    // Each node's key, listed ones too.
    let n1_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("n1 "))
        .unwrap_or_else(|| panic!("no line of n1 in:\n{text}"));
    assert!(
        n1_line.contains(&format!(
            "key {}, as the policy lists it",
            n1["key"].as_str().unwrap()
        )),
        "{n1_line}"
    );
    // With the nodes' threshold of two roots, a policy one root signed is
    // refused, as those nodes refuse it.
    let two = dgrid(&[
        "status",
        "--repo",
        &bare,
        "--roots",
        &root,
        "--threshold",
        "2",
    ]);
    assert!(
        stdout(&two).contains(
            "trust: results not checked: .dgrid/policy.json (too-few-signatures): is signed by 1 pinned root(s); 2 are required"
        ),
        "{}",
        stdout(&two)
    );
    for tool in ["status", "dashboard", "verify"] {
        let zero = dgrid(&[tool, "--repo", &bare, "--roots", &root, "--threshold", "0"]);
        expect_code(&zero, 2);
        assert!(
            stderr(&zero).contains("0 is not in 1..=1024"),
            "{tool}: {}",
            stderr(&zero)
        );
    }
    // Pinned to a root that did not sign the policy, nothing is attested.
    let eve = t.key("eve.pub");
    let wrong = dgrid(&["status", "--repo", &bare, "--roots", &eve]);
    assert!(
        stdout(&wrong)
            .contains("trust: results not checked: .dgrid/policy.json (not-signed-by-roots)"),
        "{}",
        stdout(&wrong)
    );

    // A shallow clone (as actions/checkout makes one) lacks the claims'
    // commits: signed results are unchecked, forgeries still refused.
    git(
        t.grid.root.path(),
        &["clone", "--quiet", "--depth", "1", &t.grid.url(), "shallow"],
    );
    let shallow = t.grid.path("shallow").display().to_string();
    let out = dgrid(&["status", "--repo", &shallow, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["trust"]["unchecked"], 3, "{}", v["trust"]);
    assert_eq!(v["trust"]["attested"], 0);

    // The dashboard, rendered: a column says which results are attested.
    let site = t.grid.path("site");
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &bare,
            "--out",
            site.to_str().unwrap(),
        ]),
        0,
    );
    let dom = crate::tools_fixture::render(
        &format!("file://{}", site.join("index.html").display()),
        "dashboard-trust",
    );
    for needle in [
        "data-task=\"ok\" data-status=\"completed\" data-trust=\"attested\"",
        "data-trust=\"wrong-node\"",
        "data-trust=\"claim-not-held\"",
        "data-trust=\"tampered\"",
        "data-trust=\"unsigned\"",
        "<th>attested</th>",
        "id=\"count-attested\"><b>2/6</b>",
        "Results checked against policy version 6 of grid <code>g7</code>",
        "<span class=\"bad\">policy version 6 does not list it</span>",
    ] {
        assert!(dom.contains(needle), "{needle:?} not in the rendered page");
    }
    assert!(dom.contains("class=\"ok\">by n1</span>"));

    // A copy under a name `<tip>:<path>` cannot carry (a newline) is read
    // by its blob id and judged, not taken for a file that is not there.
    let ok = t.grid.files("tasks/completed")["n1@ok.json"].clone();
    t.grid.commit_files(
        &[("tasks/completed/n1\n@ok.json".into(), ok)],
        "a copy under a name with a newline",
    );
    let out = t.verify(&[]);
    let line = out
        .lines()
        .find(|l| l.starts_with("tasks/completed/n1\\n@ok.json: "))
        .unwrap_or_else(|| panic!("the copy is not in:\n{out}"));
    assert!(line.contains("not attested (misplaced)"), "{line}");
}

#[test]
fn a_result_copied_or_moved_to_a_path_that_says_otherwise_is_not_attested() {
    let t = TrustedGrid::new();
    t.queue(
        &[
            ("t1", t.by_alice("t1", "echo one")),
            ("t2", t.by_alice("t2", "exit 3")),
        ],
        "two tasks",
    );
    t.drain(&t.worker("n1", "enforce"));
    // The host copies n1's result of t1 as n2's, and as n1's of a task
    // that never ran, and files n1's failure of t2 as completed: each file
    // is n1's own, signature intact.
    t.grid.commit_with("hostile: copies and a move", |work| {
        let done = work.join("tasks/completed");
        for copy in ["n2@t1.json", "n1@t9.json", "n1@t1@x.json"] {
            std::fs::copy(done.join("n1@t1.json"), done.join(copy)).unwrap();
        }
        std::fs::rename(
            work.join("tasks/failed/n1@t2.json"),
            done.join("n1@t2.json"),
        )
        .unwrap();
    });
    let out = t.verify(&[]);
    let line = |path: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("tasks/completed/{path}:")))
            .unwrap_or_else(|| panic!("{path} not in:\n{out}"))
            .to_owned()
    };
    assert!(line("n1@t1.json").ends_with("attested by node n1"), "{out}");
    // A suffixed name (a node's extra result of one task) is still its own.
    assert!(
        line("n1@t1@x.json").ends_with("attested by node n1"),
        "{out}"
    );
    for (path, says) in [
        ("n2@t1.json", "so its name must be n1@t1.json"),
        ("n1@t9.json", "so its name must be n1@t1.json"),
        (
            "n1@t2.json",
            "it is a `failed` result, so it belongs in tasks/failed/",
        ),
    ] {
        let l = line(path);
        assert!(
            l.contains("not attested (misplaced)") && l.contains(says),
            "{l}"
        );
    }
    // status counts them as what they are.
    let bare = t.grid.bare.display().to_string();
    let root = t.key("root.pub");
    let json = dgrid(&["status", "--repo", &bare, "--json", "--roots", &root]);
    expect_code(&json, 0);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["trust"]["attested"], 2, "{}", v["trust"]);
    assert_eq!(v["trust"]["not_attested"], 3, "{}", v["trust"]);
}

#[test]
fn verify_and_status_given_a_url_fetch_the_history_they_check_claims_in() {
    let t = TrustedGrid::new();
    t.queue(&[("a1", t.by_alice("a1", "echo a1"))], "a task");
    t.drain(&t.worker("n1", "enforce"));
    // A URL, not a path: the tool clones it itself.
    let url = format!("file://{}", t.grid.bare.display());
    let root = t.key("root.pub");
    let out = dgrid(&[
        "verify",
        "--repo",
        &url,
        "--grid-id",
        GRID_ID,
        "--roots",
        &root,
    ]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("tasks/completed/n1@a1.json: attested by node n1"),
        "{}",
        stdout(&out)
    );
    let json = dgrid(&["status", "--repo", &url, "--json", "--roots", &root]);
    expect_code(&json, 0);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["trust"]["attested"], 1, "{}", v["trust"]);
    assert_eq!(v["trust"]["unchecked"], 0, "{}", v["trust"]);
}

#[test]
fn the_attested_result_of_a_task_no_one_signed_says_so() {
    let t = TrustedGrid::new();
    let unsigned = serde_json::json!({"task_id": "u1", "script": "echo u1", "timeout_seconds": 30});
    t.queue(
        &[
            ("u1", serde_json::to_vec(&unsigned).unwrap()),
            ("s1", t.by_alice("s1", "echo s1")),
        ],
        "an unsigned task and a signed one",
    );
    // A listed node in mode off runs both, and signs both results; it
    // checked no signature, so of the signed task's result it says it
    // took none, and verify says so (nodes that enforce trust hold its
    // dependants).
    t.drain(&t.worker("n2", "off"));
    let out = t.verify(&[]);
    assert!(
        out.contains("tasks/completed/n2@u1.json: attested by node n2 (the task was not signed)\n")
            && out.contains("tasks/completed/n2@s1.json: attested by node n2 (its node took no submitter's signature on the task: task-not-signed;"),
        "{out}"
    );
    let json = t.verify_run(&["--json"]);
    let bare = t.grid.bare.display().to_string();
    let root = t.key("root.pub");
    let lines: Vec<Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |task: &str| lines.iter().find(|l| l["task_id"] == task).unwrap().clone();
    assert_eq!(of("u1")["task_signed"], false);
    assert_eq!(of("s1")["task_signed"], true);

    let status = dgrid(&["status", "--repo", &bare, "--roots", &root, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(v["trust"]["attested"], 2, "{}", v["trust"]);
    assert_eq!(v["trust"]["attested_unsigned"], 1, "{}", v["trust"]);
    let u1 = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task_id"] == "u1")
        .unwrap();
    assert_eq!(u1["task_signed"], false, "{u1}");
    let text = stdout(&dgrid(&["status", "--repo", &bare, "--roots", &root]));
    assert!(
        text.contains("2 attested (1 of them of a task not signed)")
            && text.contains(
                "tasks/completed/n2@u1.json  attested by node n2 (the task was not signed)"
            ),
        "{text}"
    );
    let site = t.grid.path("site");
    let site_arg = site.display().to_string();
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &bare,
            "--roots",
            &root,
            "--out",
            &site_arg,
        ]),
        0,
    );
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(page.contains(">by n2 (task not signed)</span>"), "{page}");
}

#[test]
fn submit_leaves_a_signed_task_file_as_signed_and_never_overrules_its_fields() {
    let t = TrustedGrid::new();
    let url = t.grid.url();
    // Signed outside `submit` (as `ssh-keygen -Y sign` would): no
    // `queued_at`, which submit must not add.
    let file = t.grid.path("signed.json");
    std::fs::write(&file, t.by_alice("signed", &t.marking("signed"))).unwrap();
    let file_arg = file.display().to_string();
    // A flag that would add a field outside the signature is refused.
    let added = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--task-file",
        &file_arg,
        "--priority",
        "70",
    ]);
    expect_code(&added, 1);
    assert!(
        stderr(&added).contains(&format!(
            "{file_arg}: field `priority` is not in the file, which is signed already"
        )),
        "{}",
        stderr(&added)
    );
    expect_code(
        &dgrid(&["submit", "--repo", &url, "--task-file", &file_arg]),
        0,
    );
    t.drain(&t.worker("n1", "enforce"));
    assert_eq!(
        t.runs("signed"),
        1,
        "the node refused it: {:?}",
        t.grid.results()
    );

    // --sign-with: the file's own grid_id or expires_at is not replaced.
    for (field, value, flag) in [
        ("grid_id", "zz", "--grid-id signs \"g7\""),
        (
            "expires_at",
            "2026-12-08T00:00:00.000Z",
            "--expires-in signs",
        ),
    ] {
        let own = t.grid.path("own.json");
        let mut task =
            serde_json::json!({"task_id": "own", "script": "true", "timeout_seconds": 30});
        task[field] = value.into();
        std::fs::write(&own, task.to_string()).unwrap();
        let alice = t.key("alice");
        let own_arg = own.display().to_string();
        let out = dgrid(&[
            "submit",
            "--repo",
            &url,
            "--grid-id",
            GRID_ID,
            "--sign-with",
            &alice,
            "--task-file",
            &own_arg,
        ]);
        expect_code(&out, 1);
        assert!(
            stderr(&out).contains(&format!(
                "{own_arg}: field `{field}` is \"{value}\" in the file, and {flag}"
            )),
            "{}",
            stderr(&out)
        );
    }
    assert!(t.grid.queued().is_empty() && t.grid.lane_paths().is_empty());
}

#[test]
fn submit_refuses_a_task_it_signed_that_every_node_would_fail() {
    let t = TrustedGrid::new();
    let url = t.grid.url();
    let submit = |id: &str, key: &str, extra: &[&str]| {
        let key = t.key(key);
        let mut args = vec![
            "submit",
            "--repo",
            &url,
            "--timeout",
            "30",
            "--script",
            "true",
            "--id",
            id,
            "--sign-with",
            &key,
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--grid-id") {
            args.extend(["--grid-id", GRID_ID]);
        }
        dgrid(&args)
    };
    for (id, key, extra, code) in [
        ("by-node-key", "n1", &[][..], "wrong-role"),
        (
            "other-grid",
            "alice",
            &["--grid-id", "g8"][..],
            "other-grid",
        ),
        ("expired", "alice", &["--expires-in", "0"][..], "expired"),
        (
            "too-long",
            "alice",
            &["--expires-in", "3456000"][..],
            "lifetime-too-long",
        ),
    ] {
        let out = submit(id, key, extra);
        expect_code(&out, 1);
        assert!(
            stderr(&out).contains(&format!(
                "every node would refuse it under the grid's .dgrid/policy.json: untrusted ({code})"
            )),
            "{id}: {}",
            stderr(&out)
        );
    }
    assert!(t.grid.lane_paths().is_empty(), "{:?}", t.grid.lane_paths());
    // A key the policy may list later: pushed, with a warning.
    let out = submit("stranger", "eve", &[]);
    expect_code(&out, 0);
    assert!(
        stderr(&out).contains("a node would leave it in the queue: untrusted (unknown-signer)"),
        "{}",
        stderr(&out)
    );
}

/// The worker's log says once that a peer's record is left out (or that
/// `enforce` would leave it out), in a line holding each of `words`.
fn said_once(w: &WorkerProc, words: &[&str]) {
    let said = log_lines(w, "of this node's reckoning");
    assert!(
        said.len() == 1 && words.iter().all(|word| said[0].contains(word)),
        "{said:?}"
    );
}

/// `n2`'s record, fresh and idle, saying it takes tasks of a day: signed
/// with n2's key, or as anyone who can push could write it.
fn n2_record(t: &TrustedGrid, signed: bool) -> Vec<(String, Vec<u8>)> {
    n2_record_of(t, signed, 0)
}

/// The same, written `age` seconds ago.
fn n2_record_of(t: &TrustedGrid, signed: bool, age: i64) -> Vec<(String, Vec<u8>)> {
    use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
    let mut r = NodeRecord::new(
        Id::parse("n2").unwrap(),
        NodeStatus::Idle,
        dgrid_worker::time::format(dgrid_worker::time::now() - chrono::Duration::seconds(age)),
    );
    r.max_timeout_seconds = Some(86_400);
    record_file(t, &r, signed)
}

/// The file of record `r`, signed with its node's key or not.
fn record_file(
    t: &TrustedGrid,
    r: &dgrid_worker::grid::NodeRecord,
    signed: bool,
) -> Vec<(String, Vec<u8>)> {
    use dgrid_worker::grid::Id;
    let node = r.node_id.as_str();
    let bytes = if signed {
        let key = dgrid_worker::trust::KeySigner::open(std::path::Path::new(&t.key(node))).unwrap();
        dgrid_worker::trust::record::sign(r, &Id::parse(GRID_ID).unwrap(), &key).unwrap()
    } else {
        r.to_bytes()
    };
    vec![(format!("nodes/{node}.json"), bytes)]
}

/// Queue `long`, a task of two hours (longer than a node's default limit),
/// start `n1` in `mode`, and wait until it filed `long` in its lane, left
/// for n2; then queue `short` and wait until it ran: the look that claimed
/// it met `long` first in its lane, and left it.
fn long_left_for_n2(t: &TrustedGrid, mode: &str) -> WorkerProc {
    let long = t.signed_task(
        serde_json::json!({"task_id": "long", "script": t.marking("long"), "timeout_seconds": 7200}),
        "alice",
        GRID_ID,
        -10,
        3600,
    );
    t.queue(&[("long", long)], "a task of two hours");
    let mut spec = t.worker("n1", mode);
    spec.drain = false;
    let w = spawn_worker(&t.grid, &spec);
    wait_until(
        "the long task filed for n2",
        Duration::from_secs(60),
        || {
            t.grid
                .lane_paths()
                .iter()
                .any(|p| p.ends_with("/long.json"))
        },
    );
    t.queue(
        &[("short", t.by_alice("short", &t.marking("short")))],
        "a short task",
    );
    wait_until("the short task ran", Duration::from_secs(60), || {
        t.grid.files("tasks/completed").len() == 1
    });
    assert!(
        t.grid.files("tasks/failed").is_empty(),
        "{:?}",
        t.grid.json_files("tasks/failed")
    );
    w
}

/// A peer's record counts for a node in `enforce` only where that peer
/// signed it with the key the policy lists for it. Here the record of `n2`
/// says it takes tasks of a day. Signed by n2, it keeps n1 from failing a
/// task longer than n1's own limit (the hour): the task waits for n2 in
/// its lane. The same record unsigned, as anyone who can push could write
/// it, is no peer: the task fails, named.
#[test]
fn a_peer_record_counts_in_enforce_only_when_its_node_signed_it() {
    use dgrid_worker::grid::Id;
    let t = TrustedGrid::new();
    t.grid.commit_files(&n2_record(&t, true), "n2, signed");
    let mut w = long_left_for_n2(&t, "enforce");
    t.grid.commit_files(&n2_record(&t, false), "n2, forged");
    wait_until("the long task failed", Duration::from_secs(60), || {
        t.grid.files("tasks/failed").contains_key("n1@long.json")
    });
    let error = failed_error(&t, "n1@long.json");
    assert!(
        error.contains("`timeout_seconds` is 7200") && error.contains("no peer that serves it"),
        "{error}"
    );
    assert_eq!(t.runs("long"), 0);
    said_once(&w, &["n2", "a peer's record is left out"]);
    // `status` says which records an enforcing node leaves out: n2's.
    let (bare, root) = (t.grid.bare.display().to_string(), t.key("root.pub"));
    let status = dgrid(&["status", "--repo", &bare, "--roots", &root]);
    expect_code(&status, 0);
    let said: Vec<String> = stdout(&status)
        .lines()
        .filter(|l| l.contains("its record"))
        .map(str::to_owned)
        .collect();
    assert!(
        said.len() == 1
            && said[0].trim_start().starts_with("n2 ")
            && said[0].contains(
                "its record is not signed: a node enforcing the policy reckons without it"
            ),
        "{said:?}"
    );
    let json = dgrid(&["status", "--repo", &bare, "--json", "--roots", &root]);
    let nodes = serde_json::from_str::<Value>(&stdout(&json)).unwrap()["nodes"].clone();
    let problems: Vec<(&str, &str)> = (nodes.as_array().unwrap().iter())
        .filter_map(|n| Some((n["node_id"].as_str()?, n["record_problem"].as_str()?)))
        .collect();
    assert_eq!(problems, [("n2", "is not signed")]);
    // And n1's own record, as its peers read it: signed with its key.
    let mine = &t.grid.files("nodes")["n1.json"];
    let signer = dgrid_worker::trust::record::signer(mine, &Id::parse(GRID_ID).unwrap());
    let n1 = dgrid_worker::trust::keys::read_public(std::path::Path::new(&t.key("n1.pub")));
    assert_eq!(signer.unwrap().key_data(), n1.unwrap().key_data());
    stop_cleanly([&mut w]);
}

/// In `warn` the same forged record counts, as every record does, and the
/// node says once that `enforce` would not count it.
#[test]
fn warn_counts_a_forged_peer_record_and_says_enforce_would_not() {
    let t = TrustedGrid::new();
    t.grid.commit_files(&n2_record(&t, false), "n2, forged");
    let mut w = long_left_for_n2(&t, "warn");
    said_once(&w, &["n2", "enforce would leave a peer's record out"]);
    stop_cleanly([&mut w]);
}

/// n2's own signed record, put back over a newer one it wrote: still
/// fresh, signed by n2, but what n2 said before. A node in `enforce` that
/// counted the newer one does not count it: the long task it would hold
/// for n2 fails, named.
#[test]
fn an_older_signed_record_put_back_does_not_count_in_enforce() {
    let t = TrustedGrid::new();
    let older = n2_record_of(&t, true, 60);
    t.grid.commit_files(&n2_record(&t, true), "n2, signed");
    let w = long_left_for_n2(&t, "enforce");
    t.grid
        .commit_files(&older, "n2's record of a minute ago, put back");
    fails_as_replayed(&t, w);
}

/// The long task left for n2 fails, and `w` says once that n2's record is
/// a replay; then `w` stops.
fn fails_as_replayed(t: &TrustedGrid, mut w: WorkerProc) {
    wait_until("the long task failed", Duration::from_secs(60), || {
        t.grid.files("tasks/failed").contains_key("n1@long.json")
    });
    said_once(&w, &["record-replayed", "older than one counted before"]);
    stop_cleanly([&mut w]);
}

/// The same, put back while the node is stopped: the newest heartbeat it
/// counted is kept in its state directory, so the record it finds at its
/// next start is as old as it was.
#[test]
fn an_older_signed_record_put_back_while_the_node_is_down_does_not_count() {
    let t = TrustedGrid::new();
    let older = n2_record_of(&t, true, 60);
    t.grid.commit_files(&n2_record(&t, true), "n2, signed");
    let mut w = long_left_for_n2(&t, "enforce");
    stop_cleanly([&mut w]);
    t.grid
        .commit_files(&older, "n2's record of a minute ago, put back");
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    fails_as_replayed(&t, spawn_worker(&t.grid, &spec));
}

/// A pusher ends a running node's claim with a result no node signed:
/// first by a forged `outbox/n1` branch, which a peer's commit would
/// carry (it ended n1's claim, in n2's name), then by hand (the claim
/// deleted, `completed/n1@L.json` written unsigned). A sweep: n1's own
/// result was put aside as superseded, and L's dependant waited for good
/// in `enforce`. Now the peer carries nothing unsigned, and n1's result
/// lands beside the forged one, as D's input.
#[test]
fn a_claim_ended_by_a_forged_result_still_lands_the_nodes_own_in_enforce() {
    use serde_json::json;
    let t = TrustedGrid::new();
    let go = t.grid.path("go");
    let seen = t.grid.path("seen-by-d");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.1; done; {}; echo REAL",
        go.display(),
        t.marking("L")
    );
    let l = json!({"task_id": "L", "script": script, "timeout_seconds": 120});
    let d_script = format!(
        "cat \"$DGRID_INPUTS/L.json\" > {}; {}",
        seen.display(),
        t.marking("D")
    );
    let d = json!({"task_id": "D", "script": d_script, "timeout_seconds": 30, "after": ["L"]});
    t.queue(
        &[
            ("L", t.signed_task(l, "alice", GRID_ID, -10, 3600)),
            ("D", t.signed_task(d, "alice", GRID_ID, -10, 3600)),
        ],
        "L, and D after it",
    );
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    let mut n1 = spawn_worker(&t.grid, &spec);
    wait_until("n1 claimed L", Duration::from_secs(60), || {
        t.grid.files("tasks/in_progress").contains_key("L.json")
    });
    let claim: Value =
        serde_json::from_slice(&t.grid.files("tasks/in_progress")["L.json"]).unwrap();
    let claimed_at = claim["claim"]["claimed_at"].as_str().unwrap().to_owned();
    let forged = json!({
        "task_id": "L", "node_id": "n1", "exit_code": 0, "stdout": "FORGED\n", "stderr": "",
        "timestamp": claimed_at, "status": "completed", "attempt": 1, "truncated": false,
    });
    // The outbox branch, as n1 would publish it.
    let scratch = tempfile::tempdir().unwrap();
    let entry = json!({"task_id": "L", "attempt": 1, "claimed_at": claimed_at,
        "finish": {"kind": "result", "result": forged}});
    std::fs::create_dir_all(scratch.path().join("results")).unwrap();
    std::fs::write(scratch.path().join("results/L.json"), entry.to_string()).unwrap();
    git(scratch.path(), &["init", "-q"]);
    git(scratch.path(), &["add", "-A"]);
    git(
        scratch.path(),
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "commit",
            "-qm",
            "pub",
        ],
    );
    let bare = t.grid.bare.display().to_string();
    git(
        scratch.path(),
        &["push", "-q", "-f", &bare, "HEAD:refs/heads/outbox/n1"],
    );
    let s = |id: &str| (id.to_owned(), t.by_alice(id, &t.marking(id)));
    let small: Vec<(String, Vec<u8>)> = ["s1", "s2", "s3"].map(s).to_vec();
    let small: Vec<(&str, Vec<u8>)> = small.iter().map(|(i, b)| (i.as_str(), b.clone())).collect();
    t.queue(
        &small,
        "tasks for n2, whose commits would carry n1's outbox",
    );
    let n2 = t.drain(&t.worker("n2", "enforce"));
    assert!(
        t.grid.files("tasks/in_progress").contains_key("L.json"),
        "n2 carried the forged result: {}",
        n2.log_text()
    );
    t.grid
        .commit_with("L's claim ended by hand, with a forged result", |w| {
            let _ = std::fs::remove_file(w.join("tasks/in_progress/L.json"));
            std::fs::write(w.join("tasks/completed/n1@L.json"), forged.to_string()).unwrap();
        });
    std::fs::write(&go, "").unwrap();
    wait_until("D ran", Duration::from_secs(90), || t.runs("D") == 1);
    let input = std::fs::read_to_string(&seen).unwrap();
    assert!(
        input.contains("REAL") && !input.contains("FORGED"),
        "{input}"
    );
    let completed: Vec<String> = t.grid.files("tasks/completed").into_keys().collect();
    assert!(
        completed.iter().filter(|n| n.starts_with("n1@L")).count() == 2,
        "{completed:?}"
    );
    assert_eq!(t.runs("L"), 1);
    stop_cleanly([&mut n1]);
}

/// n1's record as another run would write it: fresh, started at another
/// time, in `status`; signed with n1's key or not.
fn n1_record_of_another_run(
    t: &TrustedGrid,
    signed: bool,
    status: dgrid_worker::grid::NodeStatus,
) -> Vec<(String, Vec<u8>)> {
    use dgrid_worker::grid::{Id, NodeRecord};
    let mut r = NodeRecord::new(
        Id::parse("n1").unwrap(),
        status,
        dgrid_worker::time::format(dgrid_worker::time::now()),
    );
    r.started_at = "2026-01-01T00:00:00.000Z".into();
    r.hostname = "elsewhere".into();
    record_file(t, &r, signed)
}

/// A record of a node's id, fresh, in another run's name and signed by
/// no key, keeps a node in `enforce` waiting, though its peers in
/// `enforce` leave such a record out: a second host under the id with no
/// key writes the same, and both would run under one id, each taking the
/// other's claims for its own leftovers (an attack found so). The wait
/// ends on its own once the record says stopped; the node then
/// registers. Signed with the node's key (a twin with a copy of it), the
/// same.
#[test]
fn in_enforce_a_record_of_the_nodes_id_signed_or_not_keeps_it_waiting() {
    use dgrid_worker::grid::NodeStatus;
    let t = TrustedGrid::new();
    let spec = t.worker("n1", "enforce");
    let w = t.drain(&spec);
    let mut waiting = spec;
    waiting.drain = false;
    for signed in [false, true] {
        t.grid.commit_files(
            &n1_record_of_another_run(&t, signed, NodeStatus::Busy),
            "n1, another run's",
        );
        // The runs before wrote to the same log.
        let before = w.log_text().len();
        let mut w = spawn_worker(&t.grid, &waiting);
        let this_run = |w: &WorkerProc| w.log_text()[before..].to_owned();
        wait_until("it names the id in use", Duration::from_secs(60), || {
            this_run(&w).contains("node id `n1` is in use")
        });
        assert!(
            !this_run(&w).contains("registered; ready"),
            "{}",
            this_run(&w)
        );
        t.grid.commit_files(
            &n1_record_of_another_run(&t, signed, NodeStatus::Stopped),
            "n1's other run stopped",
        );
        wait_until("its registration", Duration::from_secs(60), || {
            this_run(&w).contains("registered; ready")
        });
        stop_cleanly([&mut w]);
    }
}

/// A submitter's key revoked while a node holds tasks it signed, claimed
/// ahead and not started: in `enforce` they do not start (a key that
/// leaked: every task it signs stops counting), and fail named; a task
/// past its `expires_at` while it waited ahead does not start either.
/// Before, each ran at its turn, its result attested.
#[test]
fn claims_held_ahead_do_not_start_once_their_signer_is_revoked_or_they_expire() {
    let t = TrustedGrid::new();
    t.policy(&[
        "trust",
        "add-submitter",
        "--name",
        "carol",
        "--key",
        &t.key("carol.pub"),
    ]);
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    let mut w = spawn_worker(&t.grid, &spec);
    pace_learned(&t);
    let go = t.grid.path("go");
    // Carol's too, started before her key is revoked: it runs to its end,
    // its result saying no signature was taken (`task_signed_by: null`).
    let blocker = t.signed(
        "a-blocker",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
        "carol",
        GRID_ID,
        -10,
        3600,
    );
    let by_carol = |id: &str| t.signed(id, &t.marking(id), "carol", GRID_ID, -10, 3600);
    // Valid for 20 s: claimed well within them, started after.
    let signed = std::time::Instant::now();
    let expiring = t.signed(
        "b-expiring",
        &t.marking("b-expiring"),
        "alice",
        GRID_ID,
        -10,
        20,
    );
    t.queue(
        &[
            ("a-blocker", blocker),
            ("b-expiring", expiring),
            ("c-1", by_carol("c-1")),
            ("c-2", by_carol("c-2")),
        ],
        "a task that waits, then carol's, and one that expires soon",
    );
    wait_until(
        "n1 holds all four, one running",
        Duration::from_secs(60),
        || t.grid.files("tasks/in_progress").len() == 4,
    );
    revoke_and_wait(&t, &w, "carol.pub");
    // Past b-expiring's window, by the clock it is signed against.
    std::thread::sleep(Duration::from_secs(22).saturating_sub(signed.elapsed()));
    std::fs::write(&go, b"").unwrap();
    wait_until("all four ended", Duration::from_secs(60), || {
        t.grid.files("tasks/in_progress").is_empty()
            && t.grid.files("tasks/completed").len() + t.grid.files("tasks/failed").len() == 6 + 4
    });
    stop_cleanly(std::slice::from_mut(&mut w));
    for id in ["c-1", "c-2", "b-expiring"] {
        assert_eq!(t.runs(id), 0, "{id} ran: {}", w.log_text());
    }
    let blocker = &t.grid.json_files("tasks/completed")["n1@a-blocker.json"];
    assert_eq!(blocker["task_signed_by"], Value::Null, "{blocker}");
    // verify says so, as nodes that enforce trust read it.
    let said = t.verify(&["tasks/completed/n1@a-blocker.json"]);
    assert!(
        said.contains("attested by node n1 (its node took no submitter's signature on the task: task-not-signed"),
        "{said}"
    );
    let json = t.verify_run(&["--json", "tasks/completed/n1@a-blocker.json"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["task_not_taken"], true, "{json}");
    for (id, code) in [
        ("c-1", "revoked-key"),
        ("c-2", "revoked-key"),
        ("b-expiring", "expired"),
    ] {
        let error = failed_error(&t, &format!("n1@{id}.json"));
        assert!(
            error.contains(code) && error.contains("not started"),
            "{id}: {error}"
        );
    }
}

/// A node in `enforce` whose own key is revoked while it runs a task:
/// its result does not count, so the task after it waits here as on any
/// enforcing node (before, this node released it, and ran it).
#[test]
fn a_node_whose_key_is_revoked_releases_nothing_by_its_own_results() {
    let t = TrustedGrid::new();
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    // A slot free while the parent runs: the node keeps looking at the
    // grid, and takes the new policy.
    spec.extra = format!("concurrency = 2\n{}", spec.extra);
    let mut w = spawn_worker(&t.grid, &spec);
    let go = t.grid.path("go");
    let parent = t.signed_task(
        serde_json::json!({"task_id": "parent", "timeout_seconds": 600,
            "script": format!("while [ ! -e {} ]; do sleep 0.05; done", go.display())}),
        "alice",
        GRID_ID,
        -10,
        3600,
    );
    let child = t.signed_task(
        serde_json::json!({"task_id": "child", "script": t.marking("child"), "timeout_seconds": 30, "after": ["parent"]}),
        "alice",
        GRID_ID,
        -10,
        3600,
    );
    t.queue(
        &[("parent", parent), ("child", child)],
        "a parent and its child",
    );
    wait_until("n1 runs the parent", Duration::from_secs(60), || {
        w.log_text().contains("running task_id=parent")
    });
    revoke_and_wait(&t, &w, "n1.pub");
    std::fs::write(&go, b"").unwrap();
    wait_until(
        "n1 finds its own result not attested",
        Duration::from_secs(60),
        || !log_lines(&w, "a completed result is not attested").is_empty(),
    );
    wait_until(
        "the parent's result landed",
        Duration::from_secs(60),
        || t.grid.files("tasks/completed").len() == 1,
    );
    stop_cleanly(std::slice::from_mut(&mut w));
    assert_eq!(t.runs("child"), 0, "{}", w.log_text());
    assert!(
        t.grid
            .files("tasks/blocked/parent")
            .contains_key("child.json"),
        "{:?}",
        t.grid.files("tasks/blocked")
    );
}

/// A node in `enforce` whose own key is revoked claims nothing more and
/// gives back the claims it holds ahead: the results it would make count
/// for nothing (before, it ran every claim it held, and claimed again).
/// The task it runs ends, and its record says why it takes no work.
#[test]
fn a_node_whose_key_is_revoked_gives_back_its_claims_and_claims_nothing() {
    let t = TrustedGrid::new();
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    let mut w = spawn_worker(&t.grid, &spec);
    pace_learned(&t);
    let go = t.grid.path("go");
    let blocker = t.by_alice(
        "a-blocker",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    );
    let ahead = ["b-1", "b-2", "b-3"];
    let mut tasks = vec![("a-blocker", blocker)];
    tasks.extend(ahead.iter().map(|id| (*id, t.by_alice(id, &t.marking(id)))));
    t.queue(&tasks, "a task that waits, and three behind it");
    wait_until(
        "n1 holds all four, one running",
        Duration::from_secs(60),
        || t.grid.files("tasks/in_progress").len() == 4,
    );
    revoke_and_wait(&t, &w, "n1.pub");
    wait_until(
        "n1 gave back the three it held ahead",
        Duration::from_secs(60),
        || {
            t.grid.files("tasks/in_progress").len() == 1
                && ahead.iter().all(|id| {
                    t.grid
                        .queued()
                        .keys()
                        .any(|f| f.ends_with(&format!("{id}.json")))
                })
        },
    );
    std::fs::write(&go, b"").unwrap();
    wait_until(
        "the running task ended, and n1's record says why it takes no work",
        Duration::from_secs(60),
        || {
            let record = &t.grid.json_files("nodes")["n1.json"];
            t.grid.files("tasks/completed").len() == 7
                && t.grid.files("tasks/in_progress").is_empty()
                && record["paused"]
                    .as_str()
                    .is_some_and(|p| p.contains("its key does not count in the grid's policy"))
        },
    );
    stop_cleanly(std::slice::from_mut(&mut w));
    for id in ahead {
        assert_eq!(t.runs(id), 0, "{id} ran: {}", w.log_text());
    }
    let said = log_lines(&w, "paused by the grid's policy: claiming nothing");
    assert!(said.len() == 1 && said[0].contains("revoked"), "{said:?}");
}

/// Six quick tasks, run: the node learns its pace, and claims ahead.
fn pace_learned(t: &TrustedGrid) {
    let warm: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("warm-{i}"),
                t.by_alice(&format!("warm-{i}"), "true"),
            )
        })
        .collect();
    let warm: Vec<(&str, Vec<u8>)> = warm.iter().map(|(i, b)| (i.as_str(), b.clone())).collect();
    t.queue(&warm, "quick tasks");
    wait_until("the quick tasks ran", Duration::from_secs(60), || {
        t.grid.files("tasks/completed").len() == 6
    });
}

/// Revoke the key `key` (under the grid's `keys/`) and wait until `w`
/// holds the policy that does.
fn revoke_and_wait(t: &TrustedGrid, w: &WorkerProc, key: &str) {
    let held = t.held_version(w);
    let key_file = t.key(key);
    t.policy(&["trust", "revoke", "--key", &key_file, "--reason", "leaked"]);
    wait_until(
        &format!("the worker took the policy that revokes {key}"),
        Duration::from_secs(60),
        || t.held_version(w) > held,
    );
}
