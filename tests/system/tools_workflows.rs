//! The grid's GitHub workflows: actionlint passes on every workflow (this
//! repository's and those `init` writes), no `${{ }}` expression is ever
//! interpolated into a shell line, every `dgrid-worker` call in a step is a
//! subcommand with its own tests, and each step's script runs as written
//! against a real grid checkout.
//!
//! actionlint (with shellcheck for the `run:` scripts) must be installed:
//! scripts/lib/setup-host does it. A missing one fails the test, never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::tools_fixture::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn workflows(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no workflows in {}", dir.display());
    v
}

fn actionlint(dir: &Path) {
    for tool in ["actionlint", "shellcheck"] {
        let found = Command::new(tool).arg("--version").output();
        assert!(
            matches!(&found, Ok(o) if o.status.success()),
            "{tool} is required (scripts/lib/setup-host installs it): {found:?}"
        );
    }
    let out = Command::new("actionlint")
        .arg("-oneline")
        .args(workflows(dir))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn actionlint_passes_on_this_repositorys_workflows() {
    actionlint(Path::new(ROOT));
}

#[test]
fn actionlint_passes_on_the_workflows_of_a_new_grid() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("g");
    expect_code(
        &dgrid(&[
            "init",
            dir.to_str().unwrap(),
            "--worker-git",
            "https://git.example/x/dgrid-worker.git",
        ]),
        0,
    );
    actionlint(&dir);
}

/// Every `run:` script of every workflow: (file, job, step name, script).
fn run_steps(dir: &Path) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for wf in workflows(dir) {
        let doc: serde_yaml::Value = serde_yaml::from_slice(&std::fs::read(&wf).unwrap()).unwrap();
        let file = wf.file_name().unwrap().to_string_lossy().into_owned();
        for (job, spec) in doc["jobs"].as_mapping().unwrap() {
            for step in spec["steps"].as_sequence().unwrap() {
                if let Some(run) = step["run"].as_str() {
                    out.push((
                        file.clone(),
                        job.as_str().unwrap().to_owned(),
                        step["name"].as_str().unwrap_or("").to_owned(),
                        run.to_owned(),
                    ));
                }
            }
        }
    }
    let action: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(dir.join(".github/actions/install-dgrid-worker/action.yml")).unwrap(),
    )
    .unwrap();
    for step in action["runs"]["steps"].as_sequence().unwrap() {
        if let Some(run) = step["run"].as_str() {
            out.push((
                "install-dgrid-worker/action.yml".into(),
                "-".into(),
                step["name"].as_str().unwrap_or("").to_owned(),
                run.to_owned(),
            ));
        }
    }
    out
}

#[test]
fn no_expression_is_interpolated_into_a_shell_line_and_only_tested_subcommands_are_called() {
    let tests = std::fs::read_to_string(Path::new(ROOT).join("tests/grid/tools_cli.rs")).unwrap();
    let steps = run_steps(Path::new(ROOT));
    let mut called = Vec::new();
    for (file, job, name, run) in &steps {
        assert!(
            !run.contains("${{"),
            "{file} {job} {name:?}: an expression in a shell line; pass it through env instead:\n{run}"
        );
        for word in run.split_whitespace().collect::<Vec<_>>().windows(2) {
            if word[0].ends_with("dgrid-worker") && !word[1].starts_with('-') {
                called.push((file.clone(), word[1].to_owned()));
            }
        }
    }
    assert!(!called.is_empty());
    for (file, sub) in &called {
        assert!(
            ["validate", "status", "reap", "archive", "dashboard"].contains(&sub.as_str()),
            "{file} calls `dgrid-worker {sub}`, which the tools' tests do not cover"
        );
        assert!(
            tests.contains(&format!("dgrid(&[\"{sub}\""))
                || tests.contains(&format!("&[\n        \"{sub}\"")),
            "tests/grid/tools_cli.rs has no test calling `{sub}`"
        );
    }
}

/// The steps that call dgrid-worker, run as the runner would (bash -e, the
/// workflow's environment) in a checkout of a grid with orphans: the reap
/// step requeues, the archive step moves old results off main, the status
/// step writes the summary, the dashboard step writes the site, the
/// validate step passes.
#[test]
fn the_workflow_steps_run_as_written_against_a_real_grid() {
    let grid = populated_grid();
    let work = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    // A node gone left its published outbox behind.
    git(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/outbox/ghost"],
    );
    let summary = grid.path("summary.md");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut ran = Vec::new();
    for (file, job, name, run) in run_steps(Path::new(ROOT)) {
        if file.starts_with("install-") || !run.contains("dgrid-worker") {
            continue;
        }
        // The reap job pushes; the dashboard job then checks out main anew.
        if job == "dashboard"
            && !ran
                .iter()
                .any(|(_, j, _): &(String, String, String)| j == "dashboard")
        {
            git(&work, &["pull", "--quiet", "--ff-only"]);
        }
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", &run])
            .current_dir(&work)
            .env("PATH", &path)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("DGRID_REPO_URL", grid.url())
            .env("GIT_TOKEN", "not-needed-for-file-urls")
            .env("DGRID_STALE_AFTER", "7200")
            .env("DGRID_MAX_ATTEMPTS", "3")
            .env("DGRID_ARCHIVE_KEEP", "5")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file} {job} {name:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push((file, job, name));
    }
    let names: Vec<&str> = ran.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        names,
        [
            "Requeue orphaned claims, delete the outboxes of nodes gone",
            "Archive old results",
            "Status",
            "Build the dashboard",
            "Validate the queue"
        ],
        "every dgrid-worker step ran"
    );
    assert_eq!(grid.queued()["t-orphan.json"]["attempt"], 2);
    assert!(grid.tip_of("outbox/ghost").is_none(), "the reap deleted it");
    // 8 results after the reap (7 and the abandoned claim's), 5 kept.
    assert_eq!(grid.files_on("archive", "tasks/completed").len(), 3);
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.starts_with("```\ngrid .") && summary.contains("t-orphan"),
        "{summary}"
    );
    let html = std::fs::read_to_string(work.join("_site/index.html")).unwrap();
    assert!(html.contains("t-run"));
    assert!(work.join("_site/grid.json").is_file());
}

/// The install action's first step, run for real: a branch, an annotated
/// tag (peeled to its commit), a lightweight tag and a commit id all
/// resolve to the commit cargo will build; an unknown ref fails the job.
/// shellcheck checks the script too (actionlint does not look inside
/// composite actions).
#[test]
fn the_install_action_resolves_branches_tags_and_commits() {
    let action: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(Path::new(ROOT).join(".github/actions/install-dgrid-worker/action.yml"))
            .unwrap(),
    )
    .unwrap();
    let script = action["runs"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "rev")
        .and_then(|s| s["run"].as_str())
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rev.sh");
    std::fs::write(&file, format!("#!/usr/bin/env bash\n{script}")).unwrap();
    let sc = Command::new("shellcheck").arg(&file).output().unwrap();
    assert!(
        sc.status.success(),
        "{}",
        String::from_utf8_lossy(&sc.stdout)
    );

    let grid = Grid::new();
    let first = String::from_utf8(git(&grid.bare, &["rev-parse", "main"]).stdout).unwrap();
    git(&grid.bare, &["tag", "-a", "-m", "release", "v1", "main"]);
    git(&grid.bare, &["tag", "light", "main"]);
    grid.commit_files(&[("x".into(), b"x".to_vec())], "later");
    let head = String::from_utf8(git(&grid.bare, &["rev-parse", "main"]).stdout).unwrap();
    let resolve = |reference: &str| {
        let out_file = dir.path().join("out");
        let _ = std::fs::remove_file(&out_file);
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail"])
            .arg(&file)
            .env("WORKER_GIT", grid.url())
            .env("WORKER_REF", reference)
            .env("GITHUB_OUTPUT", &out_file)
            .output()
            .unwrap();
        let written = std::fs::read_to_string(&out_file).unwrap_or_default();
        (
            out.status.success(),
            written,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        resolve("main"),
        (true, format!("rev={head}"), String::new())
    );
    assert_eq!(resolve("v1"), (true, format!("rev={first}"), String::new()));
    assert_eq!(
        resolve("light"),
        (true, format!("rev={first}"), String::new())
    );
    assert_eq!(
        resolve(first.trim()),
        (true, format!("rev={first}"), String::new())
    );
    let (ok, written, said) = resolve("no-such-ref");
    assert!(!ok && written.is_empty(), "{written}");
    assert!(
        said.contains("::error::no branch or tag no-such-ref"),
        "{said}"
    );
}

/// The validate step on a pull request to a grid with a signed policy:
/// run as written on the merge commit, it checks signatures against the
/// base branch (the merge's first parent). A task signed by a submitter
/// the pull request itself lists is refused; a task signed by a submitter
/// the base lists passes.
#[test]
fn the_validate_step_takes_trust_from_the_base_branch() {
    let grid = Grid::new();
    let keys = grid.path("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = |n: &str| keys.join(n).display().to_string();
    for n in ["root", "alice", "mallory"] {
        expect_code(&dgrid(&["keygen", "-f", &key(n), "-C", n]), 0);
    }
    let url = grid.url();
    let signed = |args: &[&str]| {
        let mut all = args.to_vec();
        let root = key("root");
        all.extend(["--repo", url.as_str(), "--sign-with", root.as_str()]);
        expect_code(&dgrid(&all), 0);
    };
    signed(&["trust", "init", "--grid-id", "g7"]);
    signed(&[
        "trust",
        "add-submitter",
        "--name",
        "alice",
        "--key",
        &key("alice.pub"),
    ]);

    // On main already: a task queued before the grid signed anything,
    // which nodes enforcing trust leave in the queue. It is the grid's,
    // not the pull request's: it must not fail every pull request after.
    grid.commit_files(
        &[(
            "tasks/queue/from-before.json".into(),
            br#"{"task_id":"from-before","script":"echo old","timeout_seconds":5}"#.to_vec(),
        )],
        "a task queued before the policy",
    );
    let work = grid.path("checkout");
    git(grid.root.path(), &["clone", "--quiet", &url, "checkout"]);
    git(&work, &["checkout", "--quiet", "-b", "pr"]);
    let sign_task = |id: &str, signer: &str| {
        let task = dgrid_worker::grid::Task::parse(
            format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":5}}"#).as_bytes(),
            &dgrid_worker::grid::TaskRules::default(),
        )
        .unwrap();
        let k = dgrid_worker::trust::KeySigner::open(Path::new(&key(signer))).unwrap();
        let now = dgrid_worker::time::now();
        let bytes = dgrid_worker::trust::task::sign(
            &task,
            &dgrid_worker::grid::Id::parse("g7").unwrap(),
            now,
            now + chrono::Duration::hours(1),
            &k,
        )
        .unwrap();
        std::fs::write(work.join(format!("tasks/queue/{id}.json")), bytes).unwrap();
    };
    sign_task("by-alice", "alice");
    sign_task("by-mallory", "mallory");
    // And a task filed by hand in a lane its fields do not name.
    let lane = work.join("tasks/lanes/p70/any/20261206T1000");
    std::fs::create_dir_all(&lane).unwrap();
    std::fs::copy(
        work.join("tasks/queue/by-alice.json"),
        lane.join("by-alice-2.json"),
    )
    .unwrap();
    // The pull request lists mallory in its own (unsigned) roots file.
    let mallory = std::fs::read_to_string(key("mallory.pub")).unwrap();
    std::fs::write(work.join(".dgrid/roots"), mallory).unwrap();
    // And what validate, given it, cannot see: a file nested in the flat
    // inbox, and a submodule (an empty directory in a checkout).
    std::fs::create_dir_all(work.join("tasks/queue/sub")).unwrap();
    std::fs::write(
        work.join("tasks/queue/sub/nested.json"),
        br#"{"task_id":"nested","script":"echo","timeout_seconds":5}"#,
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    let head = String::from_utf8(git(&work, &["rev-parse", "HEAD"]).stdout).unwrap();
    let gitlink = format!("160000,{},tasks/queue/mod", head.trim());
    git(&work, &["update-index", "--add", "--cacheinfo", &gitlink]);
    git(&work, &["commit", "--quiet", "-m", "two tasks"]);
    // What actions/checkout makes of a pull request: a merge commit whose
    // first parent is the base branch.
    git(
        &work,
        &["checkout", "--quiet", "-b", "merge", "origin/main"],
    );
    git(&work, &["merge", "--quiet", "--no-ff", "-m", "merge", "pr"]);

    let (_, _, _, run) = run_steps(Path::new(ROOT))
        .into_iter()
        .find(|(_, _, name, _)| name == "Validate the queue")
        .expect("the validate step");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let step = || {
        Command::new("bash")
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", &run])
            .current_dir(&work)
            .env("PATH", &path)
            .env("GITHUB_ACTIONS", "true")
            .output()
            .unwrap()
    };
    let out = step();
    expect_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("by-mallory.json: untrusted (unknown-signer)")
            && text.contains("::error file=tasks/queue/by-mallory.json"),
        "{text}"
    );
    assert!(
        text.contains("tasks/lanes/p70/any/20261206T1000/by-alice-2.json: ")
            && text.contains("a submodule is no task: tasks/queue/mod\n")
            && text.contains(
                "the inbox is flat, a task is a file directly in tasks/queue: tasks/queue/sub/nested.json\n"
            ),
        "{text}"
    );
    assert!(
        !text.contains("by-alice.json") && !text.contains("from-before"),
        "{text}"
    );

    // The pull request drops those two; the merge is made anew.
    git(&work, &["checkout", "--quiet", "pr"]);
    git(
        &work,
        &[
            "rm",
            "--quiet",
            "tasks/queue/by-mallory.json",
            "tasks/lanes/p70/any/20261206T1000/by-alice-2.json",
            "tasks/queue/sub/nested.json",
            "tasks/queue/mod",
        ],
    );
    git(&work, &["commit", "--quiet", "-m", "drop it"]);
    git(
        &work,
        &["checkout", "--quiet", "-B", "merge", "origin/main"],
    );
    git(&work, &["merge", "--quiet", "--no-ff", "-m", "merge", "pr"]);
    let out = step();
    expect_code(&out, 0);
}
