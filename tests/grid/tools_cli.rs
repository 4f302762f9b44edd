//! The grid tools against real bare repositories: validate, submit, status,
//! reap, dashboard, init, with good and bad input.

use crate::common::*;
use crate::tools_fixture::*;

#[test]
fn validate_names_file_field_and_reason_and_exits_for_ci() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("queue");
    std::fs::create_dir(&q).unwrap();
    std::fs::write(q.join(".gitkeep"), b"").unwrap();
    std::fs::write(
        q.join("good.json"),
        br#"{"task_id":"good","script":"echo ok","timeout_seconds":5}"#,
    )
    .unwrap();
    let ok = dgrid(&["validate", q.to_str().unwrap()]);
    expect_code(&ok, 0);
    assert!(stderr(&ok).contains("1 checked: 1 valid, 0 invalid"));

    std::fs::write(q.join("notjson.json"), b"this is not json").unwrap();
    std::fs::write(
        q.join("noscript.json"),
        br#"{"task_id":"noscript","timeout_seconds":5}"#,
    )
    .unwrap();
    std::fs::write(
        q.join("slow.json"),
        br#"{"task_id":"slow","script":"x","timeout_seconds":999999}"#,
    )
    .unwrap();
    // The same id twice: a second directory holding good.json again.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("good.json"),
        br#"{"task_id":"good","script":"echo again","timeout_seconds":5}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    let bad = dgrid(&[
        "validate",
        q.to_str().unwrap(),
        other.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    expect_code(&bad, 1);
    let out = stdout(&bad);
    let expect = [
        (q.join("notjson.json"), "is not valid JSON"),
        (q.join("noscript.json"), "field `script` is missing"),
        (
            q.join("slow.json"),
            "field `timeout_seconds` is 999999; it must be between 1 and 604800",
        ),
        (
            other.join("good.json"),
            "field `task_id` \"good\" is already used by",
        ),
        (missing.clone(), "cannot read"),
    ];
    for (path, why) in expect {
        let line = format!("{}: {why}", path.display());
        assert!(out.contains(&line), "want {line:?} in:\n{out}");
    }
    assert!(
        stderr(&bad).contains("5 checked: 1 valid, 4 invalid, 1 unreadable"),
        "{}",
        stderr(&bad)
    );

    // A stricter grid: the same rule the worker's tasks.max_timeout_seconds sets.
    let strict = dgrid(&[
        "validate",
        "--max-timeout",
        "2",
        q.join("good.json").to_str().unwrap(),
    ]);
    expect_code(&strict, 1);
    assert!(stdout(&strict).contains("field `timeout_seconds` is 5; it must be between 1 and 2"));

    // In GitHub Actions, findings are also annotations, escaped.
    let gh = std::process::Command::new(BIN)
        .args(["validate", q.join("noscript.json").to_str().unwrap()])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert!(stdout(&gh).contains("::error file="), "{}", stdout(&gh));
    assert!(stdout(&gh).contains("title=invalid task%3A script::field `script` is missing"));
}

#[test]
fn validate_with_the_grid_refuses_ids_that_are_running_or_done() {
    let grid = populated_grid();
    let co = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let q = co.join("tasks/queue");
    let task = |id: &str| format!(r#"{{"task_id":"{id}","script":"echo","timeout_seconds":5}}"#);
    // t-run is claimed; c-1 and f-exit have results; fresh is new.
    for id in ["t-run", "c-1", "f-exit", "fresh"] {
        std::fs::write(q.join(format!("{id}.json")), task(id)).unwrap();
    }
    let o = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    expect_code(&o, 1);
    let out = stdout(&o);
    let p = |id: &str| q.join(format!("{id}.json")).display().to_string();
    for (id, why) in [
        ("t-run", "is running: tasks/in_progress/t-run.json"),
        (
            "c-1",
            "already has a result: tasks/completed/alpha-c-1.json",
        ),
        (
            "f-exit",
            "already has a result: tasks/failed/alpha-f-exit.json",
        ),
    ] {
        let line = format!(
            "{}: field `task_id` \"{id}\" {why}; task ids must be new",
            p(id)
        );
        assert!(out.contains(&line), "want {line:?} in:\n{out}");
    }
    assert!(!out.contains("fresh"), "{out}");
    assert!(
        stderr(&o).contains("7 checked: 4 valid, 3 invalid"),
        "{}",
        stderr(&o)
    );
    // A result whose name merely ends like an id is not that id's.
    std::fs::write(q.join("exit.json"), task("exit")).unwrap();
    let o = dgrid(&["validate", "--grid", co.to_str().unwrap(), &p("exit")]);
    expect_code(&o, 0);
    // Nor is a directory named like a result: a result is a file.
    std::fs::create_dir_all(co.join("tasks/completed/n1@dir.json")).unwrap();
    std::fs::write(q.join("dir.json"), task("dir")).unwrap();
    let o = dgrid(&["validate", "--grid", co.to_str().unwrap(), &p("dir")]);
    expect_code(&o, 0);
}

/// Given only some files (a pull request's), `--grid` still refuses an id
/// the grid holds queued or waiting at another path, and a cycle closed
/// with a task waiting there: the old check of the whole queue saw both.
#[test]
fn validate_with_the_grid_refuses_a_second_file_of_an_id_and_a_cycle_with_its_tasks() {
    let grid = Grid::new();
    let t = |id: &str, after: &[&str]| {
        serde_json::json!({"task_id": id, "script": "echo", "timeout_seconds": 5, "after": after})
            .to_string()
            .into_bytes()
    };
    grid.commit_files(
        &[
            ("tasks/queue/x.json".into(), t("x", &[])),
            (
                "tasks/lanes/p50/any/20261206T1900/y.json".into(),
                t("y", &[]),
            ),
            ("tasks/queue/p.json".into(), t("p", &[])),
            ("tasks/blocked/p/c.json".into(), t("c", &["p"])),
        ],
        "on main",
    );
    let co = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let lane = co.join("tasks/lanes/p50/any/20261206T1900");
    std::fs::write(lane.join("x.json"), t("x", &[])).unwrap();
    std::fs::write(co.join("tasks/queue/y.json"), t("y", &[])).unwrap();
    // p changed to run after c, which waits for p.
    std::fs::write(co.join("tasks/queue/p.json"), t("p", &["c"])).unwrap();
    let paths = [
        "tasks/lanes/p50/any/20261206T1900/x.json",
        "tasks/queue/y.json",
        "tasks/queue/p.json",
    ];
    let mut args = vec!["validate", "--grid", "."];
    args.extend(paths);
    let o = std::process::Command::new(BIN)
        .args(&args)
        .current_dir(&co)
        .output()
        .unwrap();
    expect_code(&o, 1);
    let out = stdout(&o);
    for line in [
        "tasks/lanes/p50/any/20261206T1900/x.json: field `task_id` \"x\" is queued already: tasks/queue/x.json",
        "tasks/queue/y.json: field `task_id` \"y\" is queued already: tasks/lanes/p50/any/20261206T1900/y.json",
        "tasks/queue/p.json: field `after` makes a cycle: c -> p -> c",
    ] {
        assert!(out.contains(line), "want {line:?} in:\n{out}");
    }
    // Each file on its own path is no second file of itself.
    std::fs::remove_file(lane.join("x.json")).unwrap();
    let o = std::process::Command::new(BIN)
        .args(["validate", "--grid", ".", "tasks/queue/x.json"])
        .current_dir(&co)
        .output()
        .unwrap();
    expect_code(&o, 0);
}

#[test]
fn validate_checks_the_scheduling_fields_and_where_each_task_is_filed() {
    let grid = populated_grid();
    let co = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let put = |rel: &str, body: &str| {
        let p = co.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    };
    let t = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo","timeout_seconds":5{extra}}}"#)
    };
    // Well filed: in its lane; waiting under the first of its parents.
    put(
        "tasks/lanes/p80/arch=arm64+gpu/20261130T1200-ana/fine.json",
        &t(
            "fine",
            r#","priority":80,"requires":["gpu","arch=arm64"],"submitter":"ana""#,
        ),
    );
    put(
        "tasks/blocked/q-1/waits.json",
        &t("waits", r#","after":["q-1","c-1"]"#),
    );
    // In the inbox anything goes: a node files it.
    put(
        "tasks/queue/inbox.json",
        &t("inbox", r#","priority":90,"requires":["gpu"]"#),
    );
    // Broken fields, and tasks filed where their fields do not say.
    put("tasks/queue/loud.json", &t("loud", r#","priority":100"#));
    put(
        "tasks/queue/shouty.json",
        &t("shouty", r#","requires":["GPU"]"#),
    );
    put(
        "tasks/lanes/p10/any/20261130T1200/misfiled.json",
        &t("misfiled", r#","priority":90"#),
    );
    put(
        "tasks/lanes/p10/any/20261130T1200/waiting.json",
        &t("waiting", r#","priority":10,"after":["q-1"]"#),
    );
    // Where a node puts a waiting task once what it runs after completed,
    // its `after` kept: no pull request may fail for it.
    put(
        "tasks/lanes/p10/any/20261130T1200/released.json",
        &t("released", r#","priority":10,"after":["c-1"]"#),
    );
    put("tasks/lanes/p5/any/20261130T1200/odd.json", &t("odd", ""));
    put(
        "tasks/blocked/c-1/wrong.json",
        &t("wrong", r#","after":["q-1"]"#),
    );
    put("tasks/blocked/loose.json", &t("loose", ""));
    // A parent the grid has never heard of, with --grid.
    put(
        "tasks/queue/lost.json",
        &t("lost", r#","after":["nowhere"]"#),
    );
    let dirs = ["tasks/queue", "tasks/lanes", "tasks/blocked"].map(|d| co.join(d));
    let mut args = vec!["validate", "--grid", co.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let o = dgrid(&args);
    expect_code(&o, 1);
    let out = stdout(&o);
    let p = |rel: &str| co.join(rel).display().to_string();
    for (rel, why) in [
        (
            "tasks/queue/loud.json",
            "field `priority` is 100; it must be between 0 and 99",
        ),
        (
            "tasks/queue/shouty.json",
            "field `requires` label \"GPU\" must start with a lower-case letter or a digit",
        ),
        (
            "tasks/lanes/p10/any/20261130T1200/misfiled.json",
            "is filed under tasks/lanes/p10/any/20261130T1200, but its fields (priority, requires, submitter, queued_at) put it in tasks/lanes/p90/any/20261130T1200",
        ),
        (
            "tasks/lanes/p10/any/20261130T1200/waiting.json",
            "`q-1` has not completed: a task that runs after others waits in tasks/blocked/<the first of them not completed>/, not in a lane",
        ),
        (
            "tasks/lanes/p5/any/20261130T1200/odd.json",
            "is under \"p5\", which is not a priority (p00 to p99)",
        ),
        (
            "tasks/blocked/c-1/wrong.json",
            "waits under `c-1`, which its `after` does not name",
        ),
        (
            "tasks/blocked/loose.json",
            "is not where a waiting task can be",
        ),
        (
            "tasks/queue/lost.json",
            "field `after` of `lost` names `nowhere`, which is neither among these tasks nor on the grid",
        ),
    ] {
        let line = format!("{}: {why}", p(rel));
        assert!(out.contains(&line), "want {line:?} in:\n{out}");
    }
    for fine in ["fine.json", "waits.json", "inbox.json", "released.json"] {
        assert!(!out.contains(fine), "{fine} was refused:\n{out}");
    }

    // A lane, a class's directory, a waiting task's file or a file of a
    // lane named on its own: each file is judged by its place, the same
    // way, and a batch directory is no entry.
    let one = |rel: &str| {
        let o = dgrid(&["validate", co.join(rel).to_str().unwrap()]);
        (o.status.code(), stdout(&o))
    };
    let (code, out) = one("tasks/lanes/p10/any");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "misfiled.json: is filed under tasks/lanes/p10/any/20261130T1200, but its fields"
        ),
        "{out}"
    );
    // Without the grid, whether what it runs after completed is unknown:
    // a node moves it to `blocked/` if not.
    assert!(!out.contains("waiting.json"), "{out}");
    assert!(
        !out.contains("20261130T1200:"),
        "a batch directory is no entry:\n{out}"
    );
    let (code, out) = one("tasks/lanes/p10/any/20261130T1200/misfiled.json");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is filed under tasks/lanes/p10/any/20261130T1200, but its fields"),
        "{out}"
    );
    let (code, out) = one("tasks/blocked/c-1/wrong.json");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("waits under `c-1`, which its `after` does not name"),
        "{out}"
    );
    for fine in [
        "tasks/lanes/p80/arch=arm64+gpu",
        "tasks/lanes/p80/arch=arm64+gpu/20261130T1200-ana/fine.json",
        "tasks/blocked/q-1",
    ] {
        let (code, out) = one(fine);
        assert_eq!(code, Some(0), "{fine}: {out}");
    }
}

#[test]
fn submit_pushes_a_valid_task_and_refuses_duplicates() {
    let grid = Grid::new();
    let url = grid.url();
    let out = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--script",
        "echo hi",
        "--timeout",
        "7",
    ]);
    expect_code(&out, 0);
    let generated = stdout(&out).trim().to_owned();
    assert!(generated.starts_with("t-"), "{generated}");
    let queue = grid.queued();
    let task = &queue[&format!("{generated}.json")];
    assert_eq!(task["script"], "echo hi");
    assert_eq!(task["timeout_seconds"], 7);

    // From a task file, with an extra field kept, through a git daemon.
    let daemon = GitDaemon::start(&grid, free_port());
    let file = grid.path("task.json");
    std::fs::write(
        &file,
        br#"{"task_id":"from-file","script":"echo f","timeout_seconds":3,"owner":"ana"}"#,
    )
    .unwrap();
    let out = dgrid(&[
        "submit",
        "--repo",
        &daemon.url(),
        "--task-file",
        file.to_str().unwrap(),
    ]);
    expect_code(&out, 0);
    assert_eq!(grid.queued()["from-file.json"]["owner"], "ana");

    // A script from a file, with an explicit id.
    let script = grid.path("script.sh");
    std::fs::write(&script, "echo from script file\n").unwrap();
    let out = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "scripted",
        "--script-file",
        script.to_str().unwrap(),
        "--timeout",
        "5",
    ]);
    expect_code(&out, 0);
    assert_eq!(
        grid.queued()["scripted.json"]["script"],
        "echo from script file\n"
    );

    // Duplicates: queued, and finished (a result names the id).
    let dup = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "scripted",
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_code(&dup, 1);
    assert!(
        stderr(&dup).contains(
            "field `task_id` \"scripted\" is already in use on the grid: tasks/lanes/p50/any/"
        ),
        "{}",
        stderr(&dup)
    );
    grid.commit_files(
        &[(
            "tasks/completed/n-1-done.json".into(),
            result(
                "done",
                "n-1",
                dgrid_worker::grid::ResultStatus::Completed,
                5,
            ),
        )],
        "a result",
    );
    let dup = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "done",
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_code(&dup, 1);
    assert!(
        stderr(&dup).contains("tasks/completed/n-1-done.json"),
        "{}",
        stderr(&dup)
    );
    // A result whose name merely ends like the id is not a duplicate.
    let ok = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "1-done",
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_code(&ok, 0);
    // Nor is a directory named like a result: a result is a file.
    grid.commit_files(
        &[("tasks/completed/n1@dir.json/x".into(), b"{}".to_vec())],
        "a directory named like a result",
    );
    let ok = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "dir",
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_code(&ok, 0);
}

#[test]
fn submit_bad_input_is_refused_before_anything_is_pushed() {
    let grid = Grid::new();
    let url = grid.url();
    let before = grid.commit_count();
    let notjson = grid.path("bad.json");
    std::fs::write(&notjson, b"{not json").unwrap();
    let o = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--task-file",
        notjson.to_str().unwrap(),
    ]);
    expect_refused(&o, "bad.json: is not valid JSON");

    let o = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--id",
        "../etc",
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_refused(&o, "field `task_id` must start with a letter or digit");

    let o = dgrid(&["submit", "--repo", &url, "--script", "x", "--timeout", "0"]);
    expect_refused(&o, "field `timeout_seconds` is 0");

    // The flag is required, and said to be by name (clap: exit 2).
    let o = dgrid(&["submit", "--repo", &url, "--script", "x"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("--timeout <SECS>"), "{}", stderr(&o));
    let help = stdout(&dgrid(&["submit", "--help"]));
    assert!(help.contains("required"), "{help}");
    let untimed = grid.path("untimed.json");
    std::fs::write(&untimed, br#"{"script": "true"}"#).unwrap();
    let o = dgrid(&[
        "submit",
        "--repo",
        &url,
        "--task-file",
        untimed.to_str().unwrap(),
    ]);
    expect_refused(
        &o,
        "untimed.json: field `timeout_seconds` is missing: give --timeout",
    );

    let missing = grid.path("no-such-grid.git");
    let o = dgrid(&[
        "submit",
        "--repo",
        missing.to_str().unwrap(),
        "--script",
        "x",
        "--timeout",
        "5",
    ]);
    expect_refused(&o, "no-such-grid.git");
    assert_eq!(grid.commit_count(), before, "nothing was pushed");
}

/// `submit --task-file FILE` to the grid at `url`, a dry run or not.
fn submit_file(url: &str, file: &std::path::Path, dry: bool) -> std::process::Output {
    let mut args = vec![
        "submit",
        "--repo",
        url,
        "--task-file",
        file.to_str().unwrap(),
    ];
    if dry {
        args.push("--dry-run");
    }
    dgrid(&args)
}

/// What `submit --task-file` refuses of a graph is said of the file and the
/// item in it, with the field and the reason; nothing is pushed.
#[test]
fn submit_names_the_file_and_item_of_a_graph_it_refuses() {
    let grid = populated_grid();
    let before = grid.commit_count();
    let t = |id: &str, after: &[&str]| {
        let mut t = serde_json::json!({"task_id": id, "script": "true", "timeout_seconds": 5});
        if !after.is_empty() {
            t["after"] = serde_json::json!(after);
        }
        t
    };
    let refused = |name: &str, tasks: Vec<serde_json::Value>, want: &str| {
        let file = grid.path(name);
        std::fs::write(&file, serde_json::Value::Array(tasks).to_string()).unwrap();
        // A dry run says the same, before anything could be pushed.
        for dry in [true, false] {
            expect_refused(
                &submit_file(&grid.url(), &file, dry),
                &format!("{} {want}", file.display()),
            );
        }
    };
    refused(
        "cycle.json",
        vec![t("a1", &[]), t("a2", &["a3"]), t("a3", &["a2"])],
        "item 2 (a2): field `after` makes a cycle: a2 -> a3 -> a2",
    );
    refused(
        "unknown.json",
        vec![t("a1", &[]), t("a3", &["nope"])],
        "item 2 (a3): field `after` of `a3` names `nope`, which is neither among these tasks nor on the grid",
    );
    refused(
        "failed.json",
        vec![t("a1", &[]), t("a4", &["f-exit"])],
        "item 2 (a4): field `after` of `a4`: dependency `f-exit` did not complete",
    );
    refused(
        "twice.json",
        vec![t("d1", &[]), t("d2", &[]), t("d1", &[])],
        "item 3 (d1): field `task_id` \"d1\" is given to two tasks (item 1 has it too)",
    );
    refused(
        "taken.json",
        vec![t("n1", &[]), t("q-1", &[])],
        "item 2 (q-1): field `task_id` \"q-1\" is already in use on the grid: tasks/queue/q-1.json",
    );
    // Every bad item is named, not only the first.
    let mut high = t("m2", &[]);
    high["priority"] = 200.into();
    let mut gpu = t("m3", &[]);
    gpu["requires"] = serde_json::json!(["GPU"]);
    let file = grid.path("several.json");
    std::fs::write(
        &file,
        serde_json::json!([t("m1", &[]), high, gpu]).to_string(),
    )
    .unwrap();
    let out = submit_file(&grid.url(), &file, true);
    expect_code(&out, 1);
    for item in [
        "item 2 (m2): field `priority`",
        "item 3 (m3): field `requires`",
    ] {
        assert!(
            stderr(&out).contains(&format!("{} {item}", file.display())),
            "{item}: {}",
            stderr(&out)
        );
    }
    // A key given twice: serde_json would keep the last, a reviewer reads
    // the first (a sweep pushed `rm -rf /` behind a harmless script, and
    // lost a dependency to `"after":["x"],"after":[]`).
    for (name, text, want) in [
        (
            "dup-one.json",
            r#"{"task_id":"u1","script":"echo hi","timeout_seconds":5,"script":"rm -rf /"}"#,
            ": field `script` appears more than once",
        ),
        (
            "dup-item.json",
            r#"[{"task_id":"u2","script":"true","timeout_seconds":5},
                {"task_id":"u3","script":"true","timeout_seconds":5,"after":["u2"],"after":[]}]"#,
            " item 2: field `after` appears more than once",
        ),
    ] {
        let file = grid.path(name);
        std::fs::write(&file, text).unwrap();
        for dry in [true, false] {
            expect_refused(
                &submit_file(&grid.url(), &file, dry),
                &format!("{}{want}", file.display()),
            );
        }
    }
    assert_eq!(grid.commit_count(), before, "nothing was pushed");
}

/// `submit --dry-run` checks a graph against the grid as it is and says
/// where each task would go, pushing nothing; then the same file submits.
#[test]
fn submit_dry_run_says_where_a_graph_would_go_and_pushes_nothing() {
    let grid = populated_grid();
    let before = grid.commit_count();
    let file = grid.path("graph.json");
    std::fs::write(
        &file,
        serde_json::json!([
            {"task_id": "g1", "script": "true", "timeout_seconds": 5},
            {"task_id": "g2", "script": "true", "timeout_seconds": 5, "after": ["g1"]},
        ])
        .to_string(),
    )
    .unwrap();
    let submit = |dry: bool| submit_file(&grid.url(), &file, dry);
    let o = submit(true);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert_eq!(out, "g1\ng2\n");
    assert!(err.contains("would queue tasks/lanes/p50/"), "{err}");
    assert!(
        err.contains("would queue tasks/blocked/g1/g2.json"),
        "{err}"
    );
    assert!(err.contains("dry run: nothing pushed"), "{err}");
    assert_eq!(grid.commit_count(), before, "nothing was pushed");
    let o = submit(false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(grid.commit_count(), before + 1);
    // Now the ids are in use: a dry run says so.
    expect_refused(
        &submit(true),
        "field `task_id` \"g1\" is already in use on the grid",
    );
}

/// The scheduling flags fill what a task file leaves out and never
/// overrule what it says: the submitter from `DGRID_SUBMITTER` left in a
/// shell would otherwise file another's task as its own.
#[test]
fn submit_flags_fill_a_task_file_and_never_overrule_it() {
    let grid = Grid::new();
    let file = grid.path("carol.json");
    std::fs::write(
        &file,
        br#"{"task_id":"c-1","script":"true","timeout_seconds":5,"priority":10,"submitter":"carol"}"#,
    )
    .unwrap();
    let before = grid.commit_count();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dgrid-worker"))
        .args(["submit", "--repo", &grid.url(), "--task-file"])
        .arg(&file)
        .env("DGRID_SUBMITTER", "erin")
        .output()
        .unwrap();
    expect_refused(
        &refused,
        "carol.json: field `submitter` is \"carol\" in the file, and --submitter (or DGRID_SUBMITTER) says \"erin\": give one",
    );
    let url = grid.url();
    let submit_with = |flags: &[&str]| {
        let mut args = vec![
            "submit",
            "--repo",
            &url,
            "--task-file",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        dgrid(&args)
    };
    expect_refused(
        &submit_with(&["--priority", "80"]),
        "field `priority` is 10 in the file, and --priority says 80",
    );
    // A negative priority is the field's error, not an unknown option.
    let bare = |flags: &[&str]| {
        let mut args = vec!["submit", "--repo", &url, "--script", "true"];
        args.extend_from_slice(&["--timeout", "5"]);
        args.extend_from_slice(flags);
        dgrid(&args)
    };
    expect_refused(
        &bare(&["--priority", "-1"]),
        "field `priority` is -1; it must be between 0 and 99",
    );
    assert_eq!(grid.commit_count(), before, "nothing was pushed");
    expect_code(&submit_with(&["--priority", "10", "--requires", "gpu"]), 0);
    let task = &grid.queued()["c-1.json"];
    assert_eq!(
        (&task["priority"], &task["submitter"], &task["requires"]),
        (
            &serde_json::json!(10),
            &serde_json::json!("carol"),
            &serde_json::json!(["gpu"])
        ),
        "{task}"
    );
}

/// A branch named `refs/heads/main` on the grid (anyone may push one)
/// makes git refuse every push to `main` as ambiguous: said as that, with
/// what to delete, not as a race lost to other writers.
#[test]
fn a_branch_that_makes_main_ambiguous_is_named() {
    let grid = Grid::new();
    git(&grid.bare, &["branch", "refs/heads/main", "main"]);
    let o = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--script",
        "true",
        "--timeout",
        "5",
    ]);
    expect_refused(
        &o,
        "git cannot tell which to update; delete it on the server",
    );
    assert!(
        stderr(&o).contains("matches more than one"),
        "{}",
        stderr(&o)
    );
}

/// A field kept that is a known one mistyped or named as other schedulers
/// name it is valid (unknown fields are kept), and said: by `validate`,
/// which the pull request's check runs, and by `submit`, before the push.
#[test]
fn a_field_probably_meant_as_a_known_one_is_kept_and_warned_about() {
    let grid = Grid::new();
    let file = grid.path("gpu-1.json");
    std::fs::write(
        &file,
        br#"{"task_id":"gpu-1","script":"true","timeout_seconds":5,"require":["gpu"],"Priority":90,"owner":"ana"}"#,
    )
    .unwrap();
    let o = dgrid(&["validate", file.to_str().unwrap()]);
    expect_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("warning: ") && out.contains("gpu-1.json: field `require` is not one a worker reads (it is kept as it is); did you mean `requires`?"),
        "{out}"
    );
    assert!(
        out.contains("field `Priority`") && out.contains("did you mean `priority`?"),
        "{out}"
    );
    assert!(
        !out.contains("`owner`"),
        "a field of the grid's own is not hinted at: {out}"
    );
    assert!(
        stderr(&o).contains("1 checked: 1 valid, 0 invalid, 2 warnings"),
        "{}",
        stderr(&o)
    );
    let annotated = std::process::Command::new(env!("CARGO_BIN_EXE_dgrid-worker"))
        .args(["validate", file.to_str().unwrap()])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let annotations = String::from_utf8_lossy(&annotated.stdout);
    assert!(annotations.contains("::warning file="), "{annotations}");

    let o = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--task-file",
        file.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("warning: ") && stderr(&o).contains("did you mean `requires`?"),
        "{}",
        stderr(&o)
    );
    let task = &grid.queued()["gpu-1.json"];
    assert_eq!(task["require"][0], "gpu", "kept as it was: {task}");
}

#[test]
fn status_shows_nodes_queue_running_and_results() {
    let grid = populated_grid();
    let o = dgrid(&["status", "--repo", &grid.url()]);
    expect_code(&o, 0);
    let text = stdout(&o);
    for want in [
        // t-last's node does not list it in its record: claimed ahead.
        "queued 3  waiting 0  running 2  claimed ahead 1  completed 5  failed 2",
        "claimed ahead, not started by its node's record (1):\n  t-last",
        "alpha",
        "beta",
        "q-1",
        "t-run",
        "on alpha",
        "f-exit",
        "f-timeout",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // What the inbox holds is listed apart from the claim order: a node
    // files it (or refuses it) when it reads it.
    let inbox = text.split("\nin the inbox (").nth(1).unwrap_or_default();
    let order = text
        .split("in the order nodes take it")
        .nth(1)
        .unwrap_or_default();
    let order = order.split("\nin the inbox").next().unwrap_or_default();
    assert!(inbox.contains("q-1") && !order.contains("q-1"), "{text}");
    // A claim's age is when it was claimed (30 s ago): the grid does not
    // hold when its run started.
    let run = text
        .lines()
        .find(|l| l.trim_start().starts_with("t-run "))
        .unwrap();
    assert!(
        run.contains("on alpha") && run.contains("claimed  3") && run.contains("s ago"),
        "{run}"
    );
    // Heartbeat ages: alpha 20 s, beta 3 h.
    let alpha = text
        .lines()
        .find(|l| l.trim_start().starts_with("alpha"))
        .unwrap();
    assert!(
        alpha.contains("heartbeat  20s ago") || alpha.contains("heartbeat  2"),
        "{alpha}"
    );
    let beta = text
        .lines()
        .find(|l| l.trim_start().starts_with("beta"))
        .unwrap();
    assert!(
        beta.contains("3h ago") && beta.contains("stale heartbeat"),
        "{beta}"
    );
    assert!(!alpha.contains("stale"), "{alpha}");

    // The same from a local checkout, read in place, and as JSON.
    let co = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let o = dgrid(&["status", "--repo", co.to_str().unwrap(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["completed"], 5);
    assert_eq!(v["failed"], 2);
    assert_eq!(v["queue"].as_array().unwrap().len(), 3);
    let claims = v["running"].as_array().unwrap();
    assert_eq!(claims.len(), 3);
    let started: Vec<&str> = claims
        .iter()
        .filter(|c| c["started"] == true)
        .map(|c| c["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["t-orphan", "t-run"], "by their nodes' records");
    assert_eq!(claims[0]["priority"], 50);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(v["by_status"]["timeout"], 1);
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures[0]["task_id"], "f-exit", "newest failure first");
    assert!(
        failures[0]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("boom")
    );

    let missing = grid.path("nope.git");
    let o = dgrid(&["status", "--repo", missing.to_str().unwrap()]);
    expect_refused(&o, "nope.git");
    // A directory that is not a repository at all.
    let o = dgrid(&["status", "--repo", grid.root.path().to_str().unwrap()]);
    expect_code(&o, 1);
}

/// A file under `tasks/blocked/<parent>/` that waits for none of the tasks
/// its `after` names (pushed there by hand with no `after`, or all of them
/// completed) is shown with what holds it, never with an empty list.
#[test]
fn status_and_the_dashboard_name_lane_entries_that_are_no_place_for_a_task() {
    let grid = populated_grid();
    let t = br#"{"task_id":"x","script":"true","timeout_seconds":30}"#.to_vec();
    grid.commit_files(
        &[
            ("tasks/lanes/p7/any/20261203T1400/x.json".into(), t.clone()),
            ("tasks/lanes/p50/GPU/20261203T1400/y.json".into(), t.clone()),
            // In its place, but named as no task id is: no queued task.
            ("tasks/lanes/p50/any/20261203T1400/a b.json".into(), t),
        ],
        "misplaced by hand",
    );
    let o = dgrid(&["status", "--repo", &grid.url()]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("no place for a task (3;"), "{text}");
    for path in [
        "tasks/lanes/p7/any/20261203T1400/x.json !",
        "tasks/lanes/p50/GPU/20261203T1400/y.json !",
        "tasks/lanes/p50/any/20261203T1400/a b.json ! file name is not a valid task id",
    ] {
        assert!(text.contains(path), "{path}: {text}");
    }
    let o = dgrid(&["status", "--repo", &grid.url(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["misplaced"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(
        !v["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["task_id"] == "a b"),
        "{v}"
    );
    let html = dashboard_html(&grid, &grid.path("site-misplaced"));
    assert!(
        html.contains("<h2>No place for a task</h2>")
            && html.contains("p7/any/20261203T1400/x.json"),
        "{html}"
    );
}

#[test]
fn status_says_what_holds_a_waiting_task_that_names_nothing_to_wait_for() {
    let grid = populated_grid();
    let t = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":30{extra}}}"#)
            .into_bytes()
    };
    grid.commit_files(
        &[
            ("tasks/blocked/bl-par/bl6.json".into(), t("bl6", "")),
            (
                "tasks/blocked/c-0/bl7.json".into(),
                t("bl7", r#","after":["c-0"]"#),
            ),
            (
                "tasks/blocked/q-1/bl8.json".into(),
                t("bl8", r#","after":["c-0","q-1"]"#),
            ),
        ],
        "waiting tasks, by hand",
    );
    let o = dgrid(&["status", "--repo", &grid.url()]);
    expect_code(&o, 0);
    let text = stdout(&o);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("{id} missing from:\n{text}"))
            .trim_end()
            .to_owned()
    };
    assert!(
        line("bl6").contains(
            "waits under `bl-par` by its path (its file names no `after`): a node queues it when `bl-par` finishes"
        ),
        "{text}"
    );
    assert!(
        line("bl7")
            .contains("waits under `c-0` by its path (every task its `after` names completed)"),
        "{text}"
    );
    assert!(line("bl8").ends_with("waits for q-1"), "{text}");
    // With what it will ask of a node once released.
    assert!(
        line("bl8").contains(" p50 ") && line("bl8").contains("requires nothing"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_end().ends_with("waits for")),
        "{text}"
    );

    let o = dgrid(&["status", "--repo", &grid.url(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let waiting = |id: &str| {
        v["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["task_id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {v}"))
            .clone()
    };
    assert_eq!(waiting("bl6")["waits_for"], serde_json::json!([]));
    assert!(
        waiting("bl6")["held"]
            .as_str()
            .unwrap()
            .contains("its file names no `after`")
    );
    assert_eq!(waiting("bl8")["waits_for"], serde_json::json!(["q-1"]));
    assert!(waiting("bl8").get("held").is_none());
}

/// A task up to a week is a task (a node longer than its own limit leaves
/// it to a peer that takes it): `status` reads a claim of one and one
/// waiting for another as it reads any, not as files it cannot read.
/// Before, it read a waiting task held to an hour: the day-long one was
/// listed as an error. (A claim is read without a limit: it was accepted
/// under whatever rules its node held.)
#[test]
fn status_reads_tasks_longer_than_an_hour() {
    let grid = populated_grid();
    let claim = serde_json::json!({
        "task_id": "long-run", "script": "sleep 7000", "timeout_seconds": 7200,
        "claim": {"node_id": "alpha", "claimed_at": "2026-01-01T00:00:00Z",
                  "deadline": "2099-01-01T00:00:00Z", "attempt": 1},
    });
    let waiting = serde_json::json!({
        "task_id": "long-wait", "script": "sleep 1", "timeout_seconds": 86400,
        "after": ["long-run"],
    });
    grid.commit_files(
        &[
            (
                "tasks/in_progress/long-run.json".into(),
                serde_json::to_vec(&claim).unwrap(),
            ),
            (
                "tasks/blocked/long-run/long-wait.json".into(),
                serde_json::to_vec(&waiting).unwrap(),
            ),
        ],
        "a claim of a two-hour task, and a day-long task waiting for it",
    );
    let o = dgrid(&["status", "--repo", &grid.url(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |part: &str, id: &str| {
        v[part]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["task_id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {part}: {v}"))
            .clone()
    };
    let run = find("running", "long-run");
    assert!(run["error"].is_null(), "{run}");
    assert_eq!(run["node_id"], "alpha", "{run}");
    let wait = find("waiting", "long-wait");
    assert!(wait["error"].is_null(), "{wait}");
    assert_eq!(wait["waits_for"], serde_json::json!(["long-run"]), "{wait}");
}

/// A result's timestamp is whatever its writer chose: sorted as text, one
/// stamped "zzz" stayed on top of "recent" for good, and one of year 9999
/// with it (a sweep's finding). By time now, and no time last.
#[test]
fn status_lists_results_newest_first_by_the_time_they_say() {
    let grid = Grid::new();
    let result = |id: &str, ts: &str| {
        (
            format!("tasks/completed/n1@{id}.json"),
            format!(
                r#"{{"task_id":"{id}","node_id":"n1","status":"completed","exit_code":0,"timestamp":"{ts}"}}"#
            )
            .into_bytes(),
        )
    };
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    grid.commit_files(
        &[
            result("forged", "zzz"),
            result("future", "9999-12-31T23:59:59Z"),
            result("older", "2026-01-01T00:00:00Z"),
            result("newest", &now),
            result("offset", "2026-01-01T12:00:00-23:00"),
        ],
        "results stamped anyhow",
    );
    let o = dgrid(&["status", "--repo", &grid.url(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let order: Vec<&str> = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(order[..3], ["newest", "offset", "older"], "{order:?}");
}

/// `nodes/` is anyone's to fill: `status` lists 500 nodes and counts the
/// rest (100,000 junk records printed 18 MB).
#[test]
fn status_lists_at_most_500_nodes() {
    let grid = Grid::new();
    let records: Vec<(String, Vec<u8>)> = (0..520)
        .map(|i| {
            let r = serde_json::json!({"node_id": format!("n-{i:04}"), "status": "idle", "last_heartbeat": "2026-01-01T00:00:00.000Z"});
            (format!("nodes/n-{i:04}.json"), r.to_string().into_bytes())
        })
        .collect();
    grid.commit_files(&records, "a crowd of records");
    let o = dgrid(&["status", "--repo", &grid.url()]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("nodes (520):"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("  n-")).count(), 500);
    assert!(
        text.contains("... and 20 more (status --json lists every one)"),
        "{text}"
    );

    // Files that are no record, named before a live node, and tasks of
    // thirty classes nobody serves: the live node is listed first (a
    // sweep's 100,000 junk files hid it), and the classes twenty at a
    // time, on the page too.
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let mut files: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("nodes/a-{i:02}.json"), b"{}".to_vec()))
        .collect();
    let live = serde_json::json!({"node_id": "zz-live", "status": "idle", "last_heartbeat": now});
    files.push(("nodes/zz-live.json".into(), live.to_string().into_bytes()));
    for i in 0..30 {
        let t = format!(
            r#"{{"task_id":"c{i}","script":"true","timeout_seconds":5,"requires":["l{i}"]}}"#
        );
        files.push((
            format!("tasks/lanes/p50/l{i}/20261201T0000/c{i}.json"),
            t.into_bytes(),
        ));
    }
    grid.commit_files(&files, "junk before a live node; classes nobody serves");
    let o = dgrid(&["status", "--repo", &grid.url()]);
    expect_code(&o, 0);
    let text = stdout(&o);
    let first = text
        .split("nodes (551):\n")
        .nth(1)
        .and_then(|t| t.lines().next())
        .unwrap_or_default();
    assert!(first.trim_start().starts_with("zz-live "), "{text}");
    let cannot = text
        .split("cannot run now (30 classes):\n")
        .nth(1)
        .unwrap_or_default();
    let shown = cannot
        .lines()
        .take_while(|l| l.starts_with("  requires"))
        .count();
    assert_eq!(shown, 20, "{text}");
    assert!(cannot.contains("  ... and 10 more"), "{text}");
    let out = grid.path("site");
    let o = dgrid(&[
        "dashboard",
        "--repo",
        &grid.url(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains(">and 51 more</td>"), "the nodes past 500");
    assert_eq!(page.matches("<tr class=\"unservable\">").count(), 30);
    let nodes = page.split("id=\"nodes\"").nth(1).unwrap_or_default();
    let zz = nodes.find("zz-live").expect("the live node is on the page");
    assert!(
        nodes.find("a-00").is_none_or(|junk| junk > zz),
        "live first"
    );
}

/// A few hundred KB of junk names in `in_progress/` (200,000 of them made
/// one commit that never landed, at every reap, for every node) are moved
/// out a bounded batch a reap.
#[test]
fn a_flood_of_garbage_in_in_progress_goes_out_a_batch_a_reap() {
    let grid = Grid::new();
    let junk: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("tasks/in_progress/x{i:04}.json"),
                br#"{"task_id":"x"}"#.to_vec(),
            )
        })
        .collect();
    grid.commit_files(&junk, "junk claims");
    let moved = |grid: &Grid| {
        let o = dgrid(&["reap", "--repo", &grid.url(), "--json"]);
        expect_code(&o, 0);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["invalid"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(moved(&grid), dgrid_worker::ledger::reap::REJECT_PER_PLAN);
    assert_eq!(
        moved(&grid),
        300 - dgrid_worker::ledger::reap::REJECT_PER_PLAN
    );
    assert!(grid.files("tasks/in_progress").is_empty());
    assert_eq!(grid.files("tasks/failed").len(), 300);
}

#[test]
fn reap_requeues_orphans_abandons_exhausted_claims_and_dry_run_changes_nothing() {
    let grid = populated_grid();
    // Garbage in in_progress/ is moved out too, with a named reason.
    grid.commit_files(
        &[("tasks/in_progress/junk.json".into(), b"{not json".to_vec())],
        "junk claim",
    );
    let before = grid.commit_count();
    let o = dgrid(&["reap", "--repo", &grid.url(), "--dry-run"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("t-orphan: would be requeued as attempt 2"),
        "{text}"
    );
    assert!(
        text.contains("t-last: would be abandoned after 3 attempts"),
        "{text}"
    );
    assert!(
        text.contains("junk.json: would be moved to tasks/failed"),
        "{text}"
    );
    assert!(
        !text.contains("t-run"),
        "a live claim is not an orphan:\n{text}"
    );
    assert_eq!(grid.commit_count(), before, "--dry-run pushes nothing");

    let o = dgrid(&["reap", "--repo", &grid.url(), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reaped"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        grid.commit_count(),
        before + 1,
        "one transaction, one commit"
    );
    let queue = grid.queued();
    assert_eq!(queue["t-orphan.json"]["attempt"], 2);
    assert!(queue["t-orphan.json"].get("claim").is_none());
    let running = grid.files("tasks/in_progress");
    assert_eq!(running.keys().collect::<Vec<_>>(), ["t-run.json"]);
    let failed = grid.json_files("tasks/failed");
    assert_eq!(failed["beta@t-last.json"]["status"], "abandoned");
    let junk = failed
        .iter()
        .find(|(k, _)| k.starts_with("dgrid-reaper@"))
        .expect("the junk claim's result");
    assert!(
        junk.1["error"]
            .as_str()
            .unwrap()
            .contains("tasks/in_progress/junk.json")
    );
    let log = git(&grid.bare, &["log", "-1", "--format=%an%n%s", "main"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("dgrid-worker dgrid-reaper") && log.contains("requeue t-orphan"),
        "{log}"
    );

    // Nothing left to do: no commit.
    let o = dgrid(&["reap", "--repo", &grid.url()]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("no orphaned claims"));
    assert_eq!(grid.commit_count(), before + 1);

    // A worker's id is refused as the reaper's.
    let o = dgrid(&["reap", "--repo", &grid.url(), "--as", "alpha"]);
    expect_refused(&o, "nodes/alpha.json exists");

    let missing = grid.path("gone.git");
    let o = dgrid(&["reap", "--repo", missing.to_str().unwrap()]);
    expect_refused(&o, "gone.git");
}

/// A branch `archive` as an earlier run left it: one result identical to
/// main's, one different file under a name main also has.
fn seed_archive(grid: &Grid) {
    let c4 = grid.files("tasks/completed")["alpha-c-4.json"].clone();
    let scratch = tempfile::tempdir().unwrap();
    let w = scratch.path();
    git(w, &["init", "-q", "-b", "archive"]);
    std::fs::create_dir_all(w.join("tasks/completed")).unwrap();
    std::fs::write(w.join("tasks/completed/alpha-c-4.json"), &c4).unwrap();
    std::fs::write(w.join("tasks/completed/alpha-c-3.json"), b"{\"older\":1}").unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", "an earlier archive"]);
    git(w, &["push", "-q", grid.bare.to_str().unwrap(), "archive"]);
}

#[test]
fn archive_keeps_the_newest_moves_the_rest_unchanged_and_reruns_change_nothing() {
    let grid = populated_grid();
    grid.commit_files(
        &[("tasks/completed/junk.json".into(), b"{not json".to_vec())],
        "junk result",
    );
    seed_archive(&grid);
    let before_main = grid.files("tasks/completed");
    let before_failed = grid.files("tasks/failed");
    let (main0, archive0) = (grid.tip_of("main"), grid.tip_of("archive"));

    // Dry run: says what it would do, moves nothing.
    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "3", "--dry-run"]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains(
            "tasks/completed/alpha-c-3.json: would be archived as tasks/completed/alpha-c-3@2.json"
        ),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("5 of 8 results would be moved to archive; 3 kept on main"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        (grid.tip_of("main"), grid.tip_of("archive")),
        (main0.clone(), archive0.clone())
    );

    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "3", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["results"].as_u64(), v["kept"].as_u64()),
        (Some(8), Some(3)),
        "{v}"
    );
    assert_eq!(
        v["already_archived"],
        serde_json::json!(["tasks/completed/alpha-c-4.json"])
    );

    // The three newest stay on main (two failed, one completed), with the
    // directories' .gitkeep.
    let main = grid.files("tasks/completed");
    assert_eq!(main.keys().collect::<Vec<_>>(), ["alpha-c-0.json"]);
    assert_eq!(
        grid.files("tasks/failed").keys().collect::<Vec<_>>(),
        ["alpha-f-exit.json", "beta-f-timeout.json"]
    );
    for dir in ["tasks/completed", "tasks/failed"] {
        let keep = git(
            &grid.bare,
            &["cat-file", "-e", &format!("main:{dir}/.gitkeep")],
        );
        assert!(keep.status.success());
    }
    // The rest is on the archive, byte for byte, at the same paths; the
    // name taken by a different file got a suffix; nothing else changed.
    let archived = grid.files_on("archive", "tasks/completed");
    for name in [
        "alpha-c-1.json",
        "alpha-c-2.json",
        "alpha-c-4.json",
        "junk.json",
    ] {
        assert_eq!(archived[name], before_main[name], "{name}");
    }
    assert_eq!(archived["alpha-c-3@2.json"], before_main["alpha-c-3.json"]);
    assert_eq!(archived["alpha-c-3.json"], b"{\"older\":1}".to_vec());
    assert_eq!(archived.len(), 6);
    assert!(grid.files_on("archive", "tasks/failed").is_empty());
    assert_eq!(before_failed.len(), 2);
    // One commit on each branch, by the archiver.
    let log = git(&grid.bare, &["log", "-1", "--format=%an%n%s", "main"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("dgrid-worker dgrid-archiver") && log.contains("move 5 results to archive"),
        "{log}"
    );
    let parent = git(&grid.bare, &["rev-parse", "main~1"]);
    assert_eq!(
        String::from_utf8_lossy(&parent.stdout).trim(),
        main0.unwrap()
    );
    let parent = git(&grid.bare, &["rev-parse", "archive~1"]);
    assert_eq!(
        String::from_utf8_lossy(&parent.stdout).trim(),
        archive0.unwrap()
    );

    // A rerun has nothing to do and pushes nothing.
    let (main1, archive1) = (grid.tip_of("main"), grid.tip_of("archive"));
    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "3"]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("0 of 3 results moved"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        (grid.tip_of("main"), grid.tip_of("archive")),
        (main1, archive1)
    );

    // status and the dashboard count main's results, and say what the
    // archive holds beside them (they said nothing: the totals seemed to
    // stop at the newest results kept). Read where the branch is: a local
    // grid (a tool's clone of a URL fetches main alone).
    let bare = grid.bare.to_str().unwrap();
    let o = dgrid(&["status", "--repo", bare]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains(
            "archived: 6 completed, 0 failed more, on branch archive (not in the figures above)"
        ),
        "{}",
        stdout(&o)
    );
    let o = dgrid(&["status", "--repo", bare, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["archived"]["completed"], 6, "{v}");
    let site = grid.path("site-archived");
    let o = dgrid(&["dashboard", "--repo", bare, "--out", site.to_str().unwrap()]);
    expect_code(&o, 0);
    let html = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        html.contains("And 6 completed, 0 failed on branch archive, archived"),
        "{html}"
    );

    // Bad arguments are named.
    let o = dgrid(&["archive", "--repo", &grid.url(), "--archive-branch", "main"]);
    expect_refused(&o, "--archive-branch \"main\": must differ");
    let o = dgrid(&["archive", "--repo", &grid.url(), "--archive-branch", "a..b"]);
    expect_refused(&o, "not a valid branch name");
    let missing = grid.path("gone.git");
    let o = dgrid(&["archive", "--repo", missing.to_str().unwrap()]);
    expect_refused(&o, "gone.git");
}

#[test]
fn archive_creates_the_branch_and_keeps_all_by_default_on_a_small_grid() {
    let grid = populated_grid();
    let main0 = grid.tip_of("main");
    // 7 results, default keep 1000: nothing to do, no branch made.
    let o = dgrid(&["archive", "--repo", &grid.url()]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("0 of 7 results moved to archive; 7 kept on main"),
        "{}",
        stderr(&o)
    );
    assert_eq!(grid.tip_of("main"), main0);
    assert_eq!(grid.tip_of("archive"), None);
    // --keep 0 empties both directories onto a new archive branch, whose
    // first commit holds the results only.
    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "0"]);
    expect_code(&o, 0);
    assert!(grid.files("tasks/completed").is_empty() && grid.files("tasks/failed").is_empty());
    assert_eq!(grid.files_on("archive", "tasks/completed").len(), 5);
    assert_eq!(grid.files_on("archive", "tasks/failed").len(), 2);
    let roots = git(&grid.bare, &["rev-list", "--count", "archive"]);
    assert_eq!(String::from_utf8_lossy(&roots.stdout).trim(), "1");
    let top = git(&grid.bare, &["ls-tree", "--name-only", "archive"]);
    assert_eq!(String::from_utf8_lossy(&top.stdout).trim(), "tasks");
}

/// `dgrid-worker dashboard` of `grid` into `out`, which must succeed: the
/// page it wrote.
fn dashboard_html(grid: &Grid, out: &std::path::Path) -> String {
    let o = dgrid(&[
        "dashboard",
        "--repo",
        &grid.url(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    std::fs::read_to_string(out.join("index.html")).unwrap()
}

#[test]
fn dashboard_writes_html_and_the_json_it_is_made_from() {
    let grid = populated_grid();
    let out = grid.path("site");
    let html = dashboard_html(&grid, &out);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("grid.json")).unwrap()).unwrap();
    assert_eq!(json["completed"], 5);
    assert!(html.contains("id=\"chart\""));
    // No external assets: nothing is loaded from anywhere.
    for bad in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    // Output is escaped.
    assert!(html.contains("boom: &lt;script&gt; went wrong"));

    let o = dgrid(&[
        "dashboard",
        "--repo",
        grid.path("nope").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_code(&o, 1);
}

/// What the dashboard shows from the grid (a node record's fields, a file
/// name, a result's error and output) goes through the rule for grid text
/// before HTML: no escape sequence, bell, bidirectional override or line
/// separator reaches the page raw; each reads as its escape, and the
/// output keeps its lines.
#[test]
fn the_dashboard_shows_hostile_text_escaped() {
    const RAW: &str = "\u{1b}[31mQ\u{7}\u{202e}\u{2028}";
    const SHOWN: &str = "\\u{1b}[31mQ\\u{7}\\u{202e}\\u{2028}";
    let grid = Grid::new();
    let mut record: serde_json::Value =
        serde_json::from_slice(&node("x", dgrid_worker::grid::NodeStatus::Idle, 20, &[])).unwrap();
    record["hostname"] = format!("host{RAW}").into();
    record["version"] = format!("1.0{RAW}").into();
    let mut failed: serde_json::Value = serde_json::from_slice(&result(
        "f",
        "x",
        dgrid_worker::grid::ResultStatus::Failed,
        60,
    ))
    .unwrap();
    failed["error"] = format!("err{RAW}").into();
    failed["stderr"] = format!("first\nsecond{RAW}").into();
    grid.commit_files(
        &[
            ("nodes/x.json".into(), record.to_string().into_bytes()),
            (format!("nodes/y{RAW}.json"), b"{}".to_vec()),
            (format!("tasks/queue/q{RAW}.json"), b"{}".to_vec()),
            (
                "tasks/failed/x@f.json".into(),
                failed.to_string().into_bytes(),
            ),
        ],
        "hostile text",
    );
    let out = grid.path("site");
    let html = dashboard_html(&grid, &out);
    for raw in ['\u{1b}', '\u{7}', '\u{202e}', '\u{2028}'] {
        assert!(
            !html.contains(raw),
            "raw {raw:?} in the page:\n{}",
            html.escape_debug()
        );
    }
    for want in [
        format!("host{SHOWN}"),
        format!("1.0{SHOWN}"),
        format!("q{SHOWN}"),
        format!("err{SHOWN}"),
        format!("first\nsecond{SHOWN}"),
    ] {
        assert!(html.contains(&want), "{want:?} not in the page:\n{html}");
    }
}

#[test]
fn init_makes_a_grid_that_the_tools_and_a_worker_use() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("grid");
    let o = dgrid(&[
        "init",
        dir.to_str().unwrap(),
        "--worker-git",
        "https://git.example/ops/dgrid-worker.git",
        "--worker-ref",
        "v1.2",
    ]);
    expect_code(&o, 0);
    assert!(!stderr(&o).contains("placeholder"), "{}", stderr(&o));
    for d in [
        "tasks/queue",
        "tasks/in_progress",
        "tasks/completed",
        "tasks/failed",
        "nodes",
    ] {
        assert!(dir.join(d).join(".gitkeep").is_file(), "{d}");
    }
    let wf = std::fs::read_to_string(dir.join(".github/workflows/grid.yml")).unwrap();
    assert!(wf.contains("'https://git.example/ops/dgrid-worker.git'"));
    assert!(wf.contains("vars.DGRID_WORKER_REF || 'v1.2'"));
    let o = dgrid(&["validate", dir.join("tasks/queue").to_str().unwrap()]);
    expect_code(&o, 0);
    let o = dgrid(&["status", "--repo", dir.to_str().unwrap()]);
    expect_code(&o, 0);

    // Not over an existing grid, and not with a value that would break out
    // of the workflow's YAML string.
    let o = dgrid(&["init", dir.to_str().unwrap()]);
    expect_refused(&o, "already exists and is not empty");
    let o = dgrid(&[
        "init",
        root.path().join("x").to_str().unwrap(),
        "--worker-git",
        "a' || 'b",
    ]);
    expect_refused(&o, "--worker-git");

    // A bare grid: submit to it, run a real worker on it, see the result.
    let bare = root.path().join("served.git");
    let o = dgrid(&["init", "--bare", bare.to_str().unwrap()]);
    expect_code(&o, 0);
    // Its workflows build from the placeholder until told otherwise: said.
    assert!(
        stderr(&o).contains("a placeholder: set the repository variable DGRID_WORKER_GIT"),
        "{}",
        stderr(&o)
    );
    let url = format!("file://{}", bare.display());
    // It checks what is pushed: a tree with a name twice is refused.
    let dup = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#"set -e; cd "$(mktemp -d)"; git clone -q "$0" w; cd w
            b=$(echo x | git hash-object -w --stdin)
            t=$(perl -e 'print(("100644 a\0" . pack("H*", $ARGV[0])) x 2)' "$b" | git hash-object -t tree -w --literally --stdin)
            c=$(git -c user.name=t -c user.email=t@t commit-tree "$t" -p HEAD -m dup)
            git push -q origin "$c:main""#,
        )
        .arg(&url)
        .output()
        .unwrap();
    assert!(!dup.status.success(), "{dup:?}");
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("duplicateEntries"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );
    expect_code(
        &dgrid(&[
            "submit",
            "--repo",
            &url,
            "--id",
            "hello",
            "--script",
            "echo hello",
            "--timeout",
            "10",
        ]),
        0,
    );
    let grid = Grid {
        root: tempfile::tempdir().unwrap(),
        bare: bare.clone(),
    };
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    let status = w.wait_exit(std::time::Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());
    let o = dgrid(&["status", "--repo", &url, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["completed"], 1, "{v}");
    assert_eq!(v["recent"][0]["task_id"], "hello");
}

/// A reader that goes away (`status | head -1`, `reap --dry-run | head`)
/// ends the printing, not the tool: `println!` panicked there.
#[test]
fn a_reader_gone_from_the_pipe_ends_the_printing_not_the_tool() {
    let grid = Grid::new();
    grid.submit(&[("a".into(), "true".into(), 30)]);
    let bare = grid.bare.display().to_string();
    for args in [
        vec!["status", "--repo", &bare],
        vec!["reap", "--repo", &bare, "--dry-run"],
        vec!["validate", "--grid", &bare],
    ] {
        let out = with_stdout_closed(std::process::Command::new(BIN).args(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.code().is_some(), "{args:?}: {:?}", out.status);
    }
}

/// A token typed into `--repo` is refused without being printed: the
/// refusal shows the URL with its credentials as `***` (a tester had
/// `status` and `submit` print the whole URL, token included).
#[test]
fn a_token_in_the_repo_url_is_refused_and_never_printed() {
    let url = "https://x-access-token:tok_LEAKME@127.0.0.1:8443/https.git";
    let runs: [&[&str]; 4] = [
        &["status", "--repo", url],
        &[
            "submit",
            "--repo",
            url,
            "--script",
            "true",
            "--timeout",
            "5",
        ],
        &["reap", "--repo", url],
        &["dashboard", "--repo", url, "--out", "/nonexistent/d.html"],
    ];
    for args in runs {
        let o = dgrid(args);
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(
            !out.contains("LEAKME") && !err.contains("LEAKME"),
            "{args:?}: {out}{err}"
        );
        assert!(
            err.contains("https://***@127.0.0.1:8443/https.git") && err.contains("credentials"),
            "{args:?}: {err}"
        );
    }
}

/// The tools send no token over plain http to another machine: `--repo`
/// `http://` with a token is refused before git runs, naming why; on a
/// loopback host it is let through (this one has no server: unreachable).
#[test]
fn a_token_over_plain_http_is_refused_by_the_tools() {
    let tool = |args: &[&str]| {
        std::process::Command::new(crate::common::BIN)
            .args(args)
            .env_remove("DGRID_REPO_URL")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("DGRID_TOKEN_FILE")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("GIT_TOKEN", "tok_LEAKME")
            .output()
            .unwrap()
    };
    let far = "http://forge.invalid:8081/g.git";
    for args in [
        &["status", "--repo", far][..],
        &[
            "submit",
            "--repo",
            far,
            "--script",
            "true",
            "--timeout",
            "5",
        ],
    ] {
        let o = tool(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(
            err.contains(far) && err.contains("clear text") && err.contains("GIT_TOKEN"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("LEAKME"), "{err}");
    }
    let near = format!("http://127.0.0.1:{}/g.git", free_port());
    let o = tool(&["status", "--repo", &near]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        !err.contains("clear text") && err.contains("unreachable"),
        "{err}"
    );
}
