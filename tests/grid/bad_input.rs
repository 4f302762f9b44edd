//! Bad input (issue item 6): every malformed queue entry ends in
//! `tasks/failed/` with an `error` that names the problem, nothing is left in
//! the queue, and the worker goes on to run the good task after them.

use std::time::Duration;

use crate::common::*;

#[test]
fn malformed_entries_are_failed_with_a_named_reason_and_the_worker_goes_on() {
    let grid = Grid::new();
    // (file name in tasks/queue, content, what the error must say)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not-json.json",
            b"this is not json".to_vec(),
            "not valid JSON",
        ),
        (
            "truncated.json",
            br#"{"task_id": "truncated", "script": "echo"#.to_vec(),
            "not valid JSON",
        ),
        ("empty.json", Vec::new(), "is empty"),
        ("array.json", b"[1, 2, 3]".to_vec(), "must be a JSON object"),
        (
            "no-script.json",
            br#"{"task_id":"no-script","timeout_seconds":5}"#.to_vec(),
            "`script` is missing",
        ),
        (
            "no-id.json",
            br#"{"script":"echo","timeout_seconds":5}"#.to_vec(),
            "`task_id` is missing",
        ),
        (
            "no-timeout.json",
            br#"{"task_id":"no-timeout","script":"echo"}"#.to_vec(),
            "`timeout_seconds` is missing",
        ),
        (
            "typed.json",
            br#"{"task_id":"typed","script":42,"timeout_seconds":5}"#.to_vec(),
            "`script` must be a string",
        ),
        (
            "str-timeout.json",
            br#"{"task_id":"str-timeout","script":"echo","timeout_seconds":"5"}"#.to_vec(),
            "`timeout_seconds` must be an integer",
        ),
        (
            "zero.json",
            br#"{"task_id":"zero","script":"echo","timeout_seconds":0}"#.to_vec(),
            "`timeout_seconds` is 0",
        ),
        (
            "huge.json",
            br#"{"task_id":"huge","script":"echo","timeout_seconds":86400}"#.to_vec(),
            "`timeout_seconds` is 86400",
        ),
        (
            "mismatch.json",
            br#"{"task_id":"other-name","script":"echo","timeout_seconds":5}"#.to_vec(),
            "file is named \"mismatch\"",
        ),
        (
            "escape.json",
            br#"{"task_id":"../x","script":"echo","timeout_seconds":5}"#.to_vec(),
            "`task_id` must start with a letter or digit",
        ),
        (
            "latin1.json",
            b"{\"task_id\":\"latin1\",\"script\":\"caf\xe9\",\"timeout_seconds\":5}".to_vec(),
            "not valid UTF-8",
        ),
        ("notes.txt", b"hello".to_vec(), "must end in .json"),
    ];
    let marker = grid.path("good-ran");
    grid.commit_with("hostile and broken submissions", |work| {
        let queue = work.join("tasks/queue");
        for (name, bytes, _) in &cases {
            std::fs::write(queue.join(name), bytes).unwrap();
        }
        std::os::unix::fs::symlink("/etc/shadow", queue.join("link.json")).unwrap();
        std::fs::create_dir(queue.join("dir.json")).unwrap();
        std::fs::write(queue.join("dir.json/inner"), b"x").unwrap();
        let good = serde_json::json!({"task_id": "good", "script": format!("touch '{}'; echo fine", marker.display()), "timeout_seconds": 10});
        std::fs::write(queue.join("good.json"), good.to_string()).unwrap();
    });

    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "judge"));
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());

    let failed = grid.json_files("tasks/failed");
    let errors = errors_of(&failed);
    let mut expected: Vec<(String, &str)> = cases
        .iter()
        .map(|(n, _, why)| (n.to_string(), *why))
        .collect();
    expected.push(("link.json".into(), "symbolic link"));
    expected.push(("dir.json".into(), "directory"));
    for (name, why) in &expected {
        let hit = errors
            .iter()
            .find(|e| e.contains(&format!("tasks/queue/{name}:")));
        let hit = hit.unwrap_or_else(|| panic!("no failure names {name}; errors: {errors:#?}"));
        assert!(
            hit.contains(why),
            "{name}: error {hit:?} should say {why:?}"
        );
    }
    assert_eq!(
        failed.len(),
        expected.len(),
        "one failure per bad entry: {errors:#?}"
    );
    for (file, json) in &failed {
        assert_eq!(json["status"], "invalid", "{file}");
        assert!(
            json["exit_code"].is_null(),
            "{file}: invalid tasks never run"
        );
        assert!(file.starts_with("judge@"), "{file}");
    }
    assert!(
        grid.queued().is_empty(),
        "nothing left behind: {:?}",
        grid.queued().keys()
    );
    let completed = grid.json_files("tasks/completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed["judge@good.json"]["stdout"], "fine\n");
    assert!(marker.exists(), "the good task ran after the bad ones");
}

/// A name from the grid reaches the worker's log only escaped: whatever
/// shows the log (a terminal, a pager, the journal) never gets a raw
/// escape sequence, bell, bidirectional override or line separator, and
/// the name still reads as what it was. The failed result keeps the exact
/// name (JSON escapes it there).
#[test]
fn hostile_names_reach_the_log_only_escaped() {
    const RAW: &str = "\u{1b}[31mQ\u{7}\u{202e}\u{2028}";
    const SHOWN: &str = "\\u{1b}[31mQ\\u{7}\\u{202e}\\u{2028}";
    let grid = Grid::new();
    let task = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":5{extra}}}"#)
            .into_bytes()
    };
    grid.commit_files(
        &[
            (format!("tasks/queue/q{RAW}.json"), b"{}".to_vec()),
            (
                format!("tasks/lanes/p50/gpu{RAW}/20261203T1400/c.json"),
                task("c", ""),
            ),
            (
                format!("tasks/lanes/p50/any/2026{RAW}/b.json"),
                task("b", ""),
            ),
            (
                format!("tasks/blocked/pa{RAW}/t3.json"),
                task("t3", r#","after":["zz"]"#),
            ),
        ],
        "hostile names",
    );
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "plain"));
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text().escape_debug()
    );
    let log = String::from_utf8(std::fs::read(&w.log).unwrap()).unwrap();
    for raw in RAW.chars() {
        assert!(
            raw.is_ascii_graphic() || !log.contains(raw),
            "raw {raw:?} in the log:\n{}",
            log.escape_debug()
        );
    }
    for want in [
        format!("entry=q{SHOWN}.json "),
        format!("error=tasks/queue/q{SHOWN}.json: "),
        format!("error=tasks/lanes/p50/gpu{SHOWN}/20261203T1400/c.json: "),
        format!("error=tasks/lanes/p50/any/2026{SHOWN}/b.json: "),
        format!("error=tasks/blocked/pa{SHOWN}/t3.json: "),
    ] {
        assert!(
            log.contains(&want),
            "{want:?} not in the log:\n{}",
            log.escape_debug()
        );
    }
    let errors = errors_of(&grid.json_files("tasks/failed"));
    for path in [
        format!("tasks/queue/q{RAW}.json: "),
        format!("tasks/lanes/p50/gpu{RAW}/20261203T1400/c.json: "),
        format!("tasks/lanes/p50/any/2026{RAW}/b.json: "),
        format!("tasks/blocked/pa{RAW}/t3.json: "),
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&path)),
            "no failure names {path:?}: {errors:#?}"
        );
    }
}

/// A copy of a running task's file, pushed again to the inbox or a lane
/// (by mistake, or to hijack it), is not claimed while the task runs: a
/// claim of it would overwrite the running claim, and the first run's
/// result would be dropped. Each copy runs once no claim holds the id, as
/// a task submitted again does, and every result lands.
#[test]
fn a_copy_of_a_running_task_waits_and_never_displaces_its_claim() {
    let grid = Grid::new();
    let go = grid.path("go");
    let long = format!(
        r#"{{"task_id":"long","script":"while [ ! -e {} ]; do sleep 0.05; done; echo first","timeout_seconds":120}}"#,
        go.display()
    );
    grid.commit_files(
        &[("tasks/queue/long.json".into(), long.into_bytes())],
        "a long task",
    );
    let mut n1 = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    let holder = || {
        grid.json_files("tasks/in_progress")
            .get("long.json")
            .map(|c| c["claim"]["node_id"].as_str().unwrap_or("").to_owned())
    };
    wait_until("n1 runs the task", Duration::from_secs(60), || {
        holder().as_deref() == Some("n1") && n1.log_text().contains("running task_id=long")
    });
    let copy = |n: &str| {
        format!(r#"{{"task_id":"long","script":"echo copy-{n}","timeout_seconds":30}}"#)
            .into_bytes()
    };
    grid.commit_files(
        &[
            ("tasks/queue/long.json".into(), copy("inbox")),
            (
                "tasks/lanes/p50/any/20261205T2300/long.json".into(),
                copy("lane"),
            ),
        ],
        "two copies of a running task",
    );
    let mut n2 = spawn_worker(&grid, &WorkerSpec::new(&grid, "n2"));
    // n2 registered, the inbox's copy is filed, and n2 looked at the
    // queue twice more with both copies in the lanes.
    wait_until(
        "n2 has looked at the copies twice",
        Duration::from_secs(60),
        || {
            grid.files("tasks/queue").keys().all(|k| k == ".gitkeep")
                && n2.log_text().matches("DEBUG sync").count() >= 3
        },
    );
    assert_eq!(
        holder().as_deref(),
        Some("n1"),
        "the running claim stays n1's"
    );
    std::fs::write(&go, b"").unwrap();
    for w in [&mut n1, &mut n2] {
        assert!(
            w.wait_exit(Duration::from_secs(90)).success(),
            "{}",
            w.log_text()
        );
    }
    let mut outs: Vec<String> = grid
        .json_files("tasks/completed")
        .values()
        .filter(|r| r["task_id"] == "long")
        .map(|r| r["stdout"].as_str().unwrap_or("").trim().to_owned())
        .collect();
    outs.sort();
    assert_eq!(
        outs,
        ["copy-inbox", "copy-lane", "first"],
        "every run's result landed"
    );
    assert!(grid.json_files("tasks/in_progress").is_empty());
    assert!(grid.lane_paths().is_empty(), "{:?}", grid.lane_paths());
}

/// A directory holding one name twice, pushed to a server without fsck:
/// a claim's `D` removed only the first entry, and the task ran again
/// from the second. The node's first commit in the directory writes it
/// again with the first entry of each name: one run, one result.
#[test]
fn a_task_named_twice_in_one_tree_runs_once() {
    let grid = Grid::new();
    let runs = grid.path("runs.log");
    let task = |n: u32| {
        serde_json::json!({
            "task_id": "twice",
            "script": format!("echo {n} >> '{}'", runs.display()),
            "timeout_seconds": 30,
        })
        .to_string()
    };
    grid.commit_files(
        &[(
            "tasks/queue/other.json".into(),
            br#"{"task_id":"other","script":"true","timeout_seconds":30}"#.to_vec(),
        )],
        "a task beside",
    );
    // `mktree` and `git add` refuse a name twice: the tree is written raw.
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("w");
    git(scratch.path(), &["clone", "--quiet", &grid.url(), "w"]);
    let stdout = |args: &[&str], input: &[u8]| git_with_input(&work, args, input);
    let mut queue = Vec::new();
    for (name, body) in [
        (
            "other.json",
            stdout(&["rev-parse", "HEAD:tasks/queue/other.json"], b""),
        ),
        (
            "twice.json",
            stdout(&["hash-object", "-w", "--stdin"], task(1).as_bytes()),
        ),
        (
            "twice.json",
            stdout(&["hash-object", "-w", "--stdin"], task(2).as_bytes()),
        ),
    ] {
        queue.extend_from_slice(format!("100644 {name}\0").as_bytes());
        queue.extend_from_slice(&hex::decode(body).unwrap());
    }
    let queue = stdout(
        &["hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
        &queue,
    );
    let tasks: String = stdout(&["ls-tree", "HEAD:tasks"], b"")
        .lines()
        .map(|l| match l.ends_with("\tqueue") {
            true => format!("040000 tree {queue}\tqueue\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let tasks = stdout(&["mktree"], tasks.as_bytes());
    let root: String = stdout(&["ls-tree", "HEAD"], b"")
        .lines()
        .map(|l| match l.ends_with("\ttasks") {
            true => format!("040000 tree {tasks}\ttasks\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let root = stdout(&["mktree"], root.as_bytes());
    let commit = stdout(
        &["commit-tree", &root, "-p", "HEAD", "-m", "one name twice"],
        b"",
    );
    git(
        &work,
        &["push", "--quiet", "origin", &format!("{commit}:main")],
    );

    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    wait_until("both tasks have results", Duration::from_secs(60), || {
        grid.results().len() >= 2
    });
    // Long enough for a second entry left behind to be filed and run.
    wait_until(
        "the worker has looked twice more",
        Duration::from_secs(60),
        || w.log_text().matches("DEBUG sync").count() >= 4,
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let ran = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(ran, "1\n", "the first entry ran, once");
    let results: Vec<String> = grid.results().into_iter().map(|(name, _)| name).collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(grid.queued().is_empty() && grid.lane_paths().is_empty());
    assert!(
        w.log_text()
            .contains("a second entry of one name is removed"),
        "{}",
        w.log_text()
    );
}

/// Files in `nodes/` that are no node's record (100,000 of them, a push of
/// 1.2 MB, made every sync of every node ten times slower) go at a reap,
/// in one commit; records of any version heard from within a month stay.
#[test]
fn junk_in_nodes_goes_at_a_reap_and_records_stay() {
    let grid = Grid::new();
    let now = dgrid_worker::time::now();
    let ago = |days: i64| dgrid_worker::time::format(now - chrono::Duration::days(days));
    let record = |node: &str, status: &str, days: i64| {
        (
            format!("nodes/{node}.json"),
            serde_json::json!({"node_id": node, "status": status, "last_heartbeat": ago(days), "later": true})
                .to_string()
                .into_bytes(),
        )
    };
    let mut files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("nodes/junk{i:03}.json"),
                format!("junk {i}").into_bytes(),
            )
        })
        .collect();
    files.extend([
        record("away", "stopped", 40),
        record("resting", "stopped", 1),
        record("peer", "busy", 0),
        (
            "nodes/other.json".into(),
            br#"{"node_id":"peer","status":"busy","last_heartbeat":"2026-01-01T00:00:00Z"}"#
                .to_vec(),
        ),
        ("nodes/notes.txt".into(), b"hello".to_vec()),
        ("nodes/dir.json/x".into(), b"{}".to_vec()),
        (
            "tasks/queue/t1.json".into(),
            br#"{"task_id":"t1","script":"true","timeout_seconds":30}"#.to_vec(),
        ),
    ]);
    grid.commit_files(&files, "junk in nodes/");
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    assert!(
        w.wait_exit(Duration::from_secs(90)).success(),
        "{}",
        w.log_text()
    );
    let left: Vec<String> = grid.files_below("nodes").into_keys().collect();
    assert_eq!(
        left,
        ["n1.json", "peer.json", "resting.json"],
        "{}",
        w.log_text()
    );
    assert!(
        w.log_text()
            .contains("files in nodes/ that are no node's record, to remove files=304"),
        "{}",
        w.log_text()
    );
    assert_eq!(grid.results().len(), 1, "the task ran");
    let keep = git(&grid.bare, &["ls-tree", "main", "nodes/.gitkeep"]);
    assert!(!keep.stdout.is_empty(), "the layout's .gitkeep stays");
}

/// Two files of one id, one of them to be moved where the other is (copies
/// of a task pushed again with the same `queued_at`): a requeue of an
/// orphaned claim, a task released to its lane, one moved under its next
/// parent, one refiled from a lane its fields do not name. Each move wrote
/// over the file there, which vanished with no run and no result (a sweep
/// found it, with the `reap` tool and with workers). Now none replaces
/// another file: the requeue goes to the inbox, the rest stay where they
/// are until their place is free, and every copy runs once.
#[test]
fn a_move_never_writes_over_another_copy_and_every_copy_runs() {
    let grid = Grid::new();
    let runs = grid.path("runs.log");
    let task = |id: &str, mark: &str, extra: &str| {
        format!(
            r#"{{"task_id":"{id}","script":"echo {mark} >> '{}'","timeout_seconds":30,"queued_at":"2026-12-06T13:00:00Z"{extra}}}"#,
            runs.display()
        )
        .into_bytes()
    };
    let lane = |id: &str| format!("tasks/lanes/p50/any/20261206T1300/{id}.json");
    let orphan_of =
        |id: &str, mark: &str| claimed_by_gone(&task(id, mark, ""), "2099-01-01T00:00:00Z");
    let done = br#"{"task_id":"t1","node_id":"n0","status":"completed","exit_code":0,"timestamp":"2026-12-06T13:00:30.000Z"}"#;
    grid.commit_files(
        &[
            ("tasks/completed/n0@t1.json".into(), done.to_vec()),
            (lane("R"), task("R", "R-lane", "")),
            (
                "tasks/in_progress/R.json".into(),
                orphan_of("R", "R-claimed"),
            ),
            (lane("Y"), task("Y", "Y-lane", "")),
            (
                "tasks/blocked/t1/Y.json".into(),
                task("Y", "Y-released", r#","after":["t1"]"#),
            ),
            (lane("X"), task("X", "X-lane", "")),
            (
                "tasks/lanes/p10/gpu/20261206T1300/X.json".into(),
                task("X", "X-refiled", ""),
            ),
            (lane("BB"), task("BB", "BB", "")),
            (
                "tasks/blocked/t1/W.json".into(),
                task("W", "W-moved", r#","after":["t1","BB"]"#),
            ),
            (
                "tasks/blocked/BB/W.json".into(),
                task("W", "W-waiting", r#","after":["BB"]"#),
            ),
            // Its lane and the inbox both hold a copy (pushed twice by hand
            // while it ran): kept claimed, none of the three could move.
            (
                "tasks/in_progress/D.json".into(),
                orphan_of("D", "D-claimed"),
            ),
            (lane("D"), task("D", "D-lane", "")),
            ("tasks/queue/D.json".into(), task("D", "D-inbox", "")),
            // A requeue and a release to one free place in one commit.
            (
                "tasks/in_progress/G.json".into(),
                orphan_of("G", "G-claimed"),
            ),
            (
                "tasks/blocked/t1/G.json".into(),
                task("G", "G-released", r#","after":["t1"]"#),
            ),
        ],
        "copies of one id where others move to",
    );
    let marks = [
        "R-claimed",
        "R-lane",
        "Y-lane",
        "Y-released",
        "X-lane",
        "X-refiled",
        "BB",
        "W-moved",
        "W-waiting",
        "D-claimed",
        "D-lane",
        "D-inbox",
        "G-claimed",
        "G-released",
    ];
    // Every task file on the grid, by the mark its script writes.
    let on_grid = || {
        let out = git(
            &grid.bare,
            &["grep", "-ho", "echo [A-Za-z-]*", "main", "--", "tasks/"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let reap = reaped(&grid);
    let after = on_grid();
    for mark in marks {
        assert!(
            after.contains(&format!("echo {mark}")),
            "{mark} vanished at the reap:\n{after}\n{}",
            reap
        );
    }
    let requeued = &grid.json_files("tasks/queue")["R.json"];
    assert_eq!(requeued["attempt"], 2, "{requeued}");

    // Workers and reaps in turn, until every copy ran: what waited for
    // its place moves once the file there ran.
    for _ in 0..6 {
        let ran = std::fs::read_to_string(&runs).unwrap_or_default();
        if marks.iter().all(|m| ran.lines().any(|l| l == *m)) {
            break;
        }
        drained_with_gpu(&grid);
        reaped(&grid);
    }
    let ran = std::fs::read_to_string(&runs).unwrap_or_default();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort();
    let mut want = marks.to_vec();
    want.sort();
    assert_eq!(lines, want, "every copy ran once");
}

/// A file pushed where a move's directory goes (`tasks/lanes/p60`,
/// `tasks/blocked/<parent>`): the directory would replace it, and it
/// vanished with no result (a requeue by the `reap` tool; a task filed to
/// wait by a worker between its reaps). Now each move waits until the
/// file has gone to `failed/` as misplaced, naming its path, and then
/// every task runs.
#[test]
fn a_file_where_a_move_makes_a_directory_gets_its_result_before_the_move() {
    let grid = Grid::new();
    let go = grid.path("go");
    let task = |id: &str, script: &str, extra: &str| {
        format!(
            r#"{{"task_id":"{id}","script":"{script}","timeout_seconds":60,"queued_at":"2026-12-06T13:00:00Z"{extra}}}"#
        )
        .into_bytes()
    };
    let squat = || task("squat", "echo squat", "");
    let orphan = claimed_by_gone(
        &task("Q", "echo Q", r#","priority":60"#),
        "2099-01-01T00:00:00Z",
    );
    let gated = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    grid.commit_files(
        &[
            ("tasks/lanes/p60".into(), squat()),
            ("tasks/in_progress/Q.json".into(), orphan),
            (
                "tasks/lanes/p70/any/20261206T1300/P.json".into(),
                task("P", &gated, r#","priority":70"#),
            ),
        ],
        "a file where the requeue's lane goes",
    );
    let reap = reaped(&grid);
    let present = |path: &str| {
        let out = git(&grid.bare, &["ls-tree", "main", "--", path]);
        String::from_utf8_lossy(&out.stdout).contains(" blob ")
    };
    let has_result = |path: &str| {
        errors_of(&grid.json_files("tasks/failed"))
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")))
    };
    assert!(
        present("tasks/lanes/p60") || has_result("tasks/lanes/p60"),
        "the requeue removed tasks/lanes/p60:\n{}",
        reap
    );

    // A worker between its reaps (the first at its start), with a slot
    // free: it runs P, and a dependant of P comes with a file where it
    // would wait.
    let mut spec = WorkerSpec::new(&grid, "n1");
    spec.extra = "concurrency = 2\n".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("n1 runs P", Duration::from_secs(60), || {
        w.log_text().contains("running task_id=P")
    });
    grid.commit_files(
        &[
            ("tasks/blocked/P".into(), squat()),
            (
                "tasks/queue/K.json".into(),
                task("K", "echo K", r#","after":["P"]"#),
            ),
            ("tasks/lanes/p50/gpu/20261206T1300".into(), squat()),
            (
                "tasks/queue/F.json".into(),
                task("F", "echo F", r#","requires":["gpu"]"#),
            ),
        ],
        "a dependant, and a file where it would wait",
    );
    let syncs = w.log_text().matches("DEBUG sync").count();
    wait_until("n1 has seen K", Duration::from_secs(60), || {
        w.log_text().matches("DEBUG sync").count() >= syncs + 3
    });

    for path in ["tasks/blocked/P", "tasks/lanes/p50/gpu/20261206T1300"] {
        assert!(
            present(path) || has_result(path),
            "filing a task removed {path}:\n{}",
            w.log_text()
        );
    }
    std::fs::write(&go, b"").unwrap();
    // K waits in the inbox for the next reap; the tool's comes sooner.
    wait_until("P's result", Duration::from_secs(60), || {
        grid.json_files("tasks/completed")
            .values()
            .any(|r| r["task_id"] == "P")
    });
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(60));
    reaped(&grid);
    drained_with_gpu(&grid);
    for path in [
        "tasks/lanes/p60",
        "tasks/blocked/P",
        "tasks/lanes/p50/gpu/20261206T1300",
    ] {
        assert!(has_result(path), "{path} has no result");
    }
    let done = grid.json_files("tasks/completed");
    for id in ["Q", "P", "K", "F"] {
        assert!(
            done.values().any(|r| r["task_id"] == id),
            "{id} did not run: {:?}",
            done.keys()
        );
    }
    assert!(grid.queued().is_empty() && grid.blocked().is_empty());
}

/// An orphaned claim whose lane, the inbox and the next five minutes of its
/// lane each hold a copy of its task: a requeue has nowhere to go, and the
/// claim held every copy back (a copy of a claimed task waits for the
/// claim), so the task never ran and a drain never ended. The claim is
/// abandoned, saying why, and every copy runs.
#[test]
fn a_claim_with_nowhere_to_go_ends_and_its_copies_run() {
    let grid = Grid::new();
    let runs = grid.path("runs.log");
    let task = |mark: &str| {
        format!(
            r#"{{"task_id":"T","script":"echo {mark} >> '{}'","timeout_seconds":30,"queued_at":"2026-12-06T13:00:00Z"}}"#,
            runs.display()
        )
    };
    let (mut files, marks) = copies_everywhere(task);
    files.push((
        "tasks/in_progress/T.json".to_owned(),
        claimed_by_gone(task("claimed").as_bytes(), "2026-01-01T00:10:00Z"),
    ));
    grid.commit_files(&files, "copies everywhere a requeue could go");
    reaped(&grid);
    let failed = grid.json_files("tasks/failed");
    let abandoned = &failed["gone@T.json"];
    assert_eq!(abandoned["status"], "abandoned", "{abandoned}");
    let error = abandoned["error"].as_str().unwrap();
    assert!(
        error.contains("abandoned after 1 attempt;") && error.contains("which run instead"),
        "{error}"
    );
    each_ran_once(&grid, &runs, marks);
}

/// A node's own claim going back (a task cancelled at its drain timeout)
/// where a copy of the task sits at each of the seven places: the claim
/// stayed, holding the copies back, and the node's `--drain` never ended.
/// It ends as `abandoned`, as an orphaned claim does, and the copies run.
#[test]
fn a_nodes_own_requeue_with_nowhere_to_go_ends_and_its_copies_run() {
    let grid = Grid::new();
    let runs = grid.path("runs.log");
    let task = |mark: &str, script: &str| {
        format!(
            r#"{{"task_id":"T","script":"{script}echo {mark} >> '{}'","timeout_seconds":30,"queued_at":"2026-12-06T13:00:00Z"}}"#,
            runs.display()
        )
    };
    grid.commit_files(
        &[(
            "tasks/queue/T.json".into(),
            task("claimed", "sleep 5; ").into_bytes(),
        )],
        "a task that takes a while",
    );
    let mut spec = WorkerSpec::new(&grid, "n1");
    spec.drain = false;
    spec.extra = "drain_timeout = 1\n".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("T claimed", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").contains_key("T.json")
    });
    let (files, marks) = copies_everywhere(|mark| task(mark, ""));
    grid.commit_files(&files, "copies everywhere a requeue could go");
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let failed = grid.json_files("tasks/failed");
    let error = failed["n1@T.json"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("abandoned after 1 attempt, the last on n1:")
            && error.contains("which run instead"),
        "{failed:?}"
    );
    each_ran_once(&grid, &runs, marks);
}

/// The same claim where the places hold junk, not tasks (a file that is
/// no JSON in the inbox, a file where its lane's directory goes): the
/// `reap` tool, which moves no junk, left the claim for a later reap; it
/// abandoned it at first, and the task never ran again. A worker then
/// moves the junk to `failed/`, requeues the claim, and the task runs.
#[test]
fn a_claim_whose_places_hold_junk_waits_for_them_to_clear_and_runs() {
    let grid = Grid::new();
    let task = r#"{"task_id":"T","script":"echo T","timeout_seconds":30,"queued_at":"2026-12-06T13:00:00Z"}"#;
    grid.commit_files(
        &[
            (
                "tasks/in_progress/T.json".into(),
                claimed_by_gone(task.as_bytes(), "2026-01-01T00:10:00Z"),
            ),
            ("tasks/queue/T.json".into(), b"not json".to_vec()),
            ("tasks/lanes/p50".into(), b"junk".to_vec()),
        ],
        "junk where a requeue would go",
    );
    let out = reaped(&grid);
    assert!(out.contains("left for now"), "{out}");
    assert!(
        !grid.json_files("tasks/failed").contains_key("gone@T.json"),
        "{out}"
    );
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
    let done = grid.json_files("tasks/completed");
    assert!(
        done.values().any(|r| r["task_id"] == "T"),
        "T did not run: {:?}\n{}",
        grid.json_files("tasks/failed").keys(),
        w.log_text()
    );
}

/// A submodule (gitlink) named as a task in a lane no live node serves:
/// the reap read its object, which the grid does not have, and left it
/// "for a later reap", every reap, for good. It is judged by its kind.
#[test]
fn a_submodule_in_a_lane_nobody_serves_goes_to_failed() {
    let grid = Grid::new();
    let place = "tasks/lanes/p50/gpu/20261206T1200/S.json";
    grid.commit_with("a submodule where a task goes", |work| {
        nested_repo(&work.join(place))
    });
    let listed = git(&grid.bare, &["ls-tree", "-r", "main", "--", place]).stdout;
    assert!(String::from_utf8_lossy(&listed).starts_with("160000 commit"));
    let reap = reaped(&grid);
    let errors = errors_of(&grid.json_files("tasks/failed"));
    assert!(
        errors
            .iter()
            .any(|e| e == &format!("{place}: is a submodule, not a regular file")),
        "{errors:?}\n{}",
        reap
    );
    assert!(grid.lane_paths().is_empty(), "{:?}", grid.lane_paths());
}

/// A copy of task `T` (`task` of its mark) at each of the seven places a
/// claim of it going back may take (the inbox, its lane at 13:00 and the
/// five minutes after), and the marks they leave.
fn copies_everywhere(task: impl Fn(&str) -> String) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut files = vec![("tasks/queue/T.json".to_owned(), task("inbox").into_bytes())];
    let mut marks = vec!["inbox".to_owned()];
    for minute in 0..=5 {
        let mark = format!("lane-{minute}");
        files.push((
            format!("tasks/lanes/p50/any/20261206T130{minute}/T.json"),
            task(&mark).into_bytes(),
        ));
        marks.push(mark);
    }
    (files, marks)
}

/// A worker `n1` drains the grid: the marks left in `runs` are `marks`,
/// each once (every copy ran, and the claim's own task did not finish).
fn each_ran_once(grid: &Grid, runs: &std::path::Path, mut marks: Vec<String>) {
    let mut w = spawn_worker(grid, &WorkerSpec::new(grid, "n1"));
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
    let ran = std::fs::read_to_string(runs).unwrap_or_default();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort();
    marks.sort();
    assert_eq!(lines, marks, "every copy ran once, the claim's did not");
}

/// `task` as an orphaned claim of node `gone` (no record), claimed at the
/// start of 2026, its deadline `deadline`, attempt 1.
fn claimed_by_gone(task: &[u8], deadline: &str) -> Vec<u8> {
    let mut claimed: serde_json::Value = serde_json::from_slice(task).unwrap();
    claimed["claim"] = serde_json::json!({
        "node_id": "gone", "claimed_at": "2026-01-01T00:00:00Z",
        "deadline": deadline, "attempt": 1,
        "queued_at": "2026-12-06T13:00:00Z",
    });
    serde_json::to_vec(&claimed).unwrap()
}

/// One `dgrid-worker reap` of the grid, which must succeed: its output.
fn reaped(grid: &Grid) -> String {
    let reap = crate::tools_fixture::dgrid(&["reap", "--repo", &grid.url()]);
    crate::tools_fixture::expect_code(&reap, 0);
    crate::tools_fixture::stdout(&reap)
}

/// A worker `n1` with the label `gpu`, run until the queue is drained; it
/// must exit cleanly.
fn drained_with_gpu(grid: &Grid) {
    let mut spec = WorkerSpec::new(grid, "n1");
    spec.extra = "labels = [\"gpu\"]\n".into();
    let mut w = spawn_worker(grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
}

/// An error quotes the bad value; a result keeps about 2 KB of it (its
/// start and its end, which says why), and says how much was cut: a 200
/// KB label made a 200 KB error.
#[test]
fn an_error_quoting_a_huge_value_is_cut_in_the_result() {
    let grid = Grid::new();
    let label = "x".repeat(200_000);
    let task = serde_json::json!({"task_id": "big-label", "script": "true", "timeout_seconds": 30, "requires": [label]});
    grid.commit_files(
        &[(
            "tasks/queue/big-label.json".to_owned(),
            serde_json::to_vec(&task).unwrap(),
        )],
        "a label of 200 KB",
    );
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let failed = grid.json_files("tasks/failed");
    let r = failed.values().next().expect("a result");
    assert_eq!(r["status"], "invalid", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.len() < 2200
            && error.starts_with("tasks/queue/big-label.json: field `requires`")
            && error.contains(" bytes cut ...] ")
            && error.ends_with("is 200000 characters long; at most 64 are allowed"),
        "{} bytes: {:.200}...{}",
        error.len(),
        error,
        &error[error.len().saturating_sub(60)..]
    );
}
