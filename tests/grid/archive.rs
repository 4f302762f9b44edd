//! `dgrid-worker archive` against real repositories, under the conditions
//! that matter: workers pushing results while it runs, and a push of its
//! two branches of which one is refused or loses a race. A result must end
//! up exactly once across `main` and `archive`, and the two branches must
//! move together or not at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use crate::tools_fixture::*;
use dgrid_worker::git::txn::{self, Identity, TxnError, TxnPolicy};
use dgrid_worker::git::{Git, GitError, GridRepo};
use dgrid_worker::tools::archive::{self, ArchiveOptions};

/// Every result on both branches: (branch, dir, name) -> the task it is for.
fn all_results(grid: &Grid) -> BTreeMap<(String, String, String), String> {
    let mut all = BTreeMap::new();
    for branch in ["main", "archive"] {
        for dir in ["tasks/completed", "tasks/failed"] {
            for (name, body) in grid.files_on(branch, dir) {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                all.insert(
                    (branch.to_owned(), dir.to_owned(), name),
                    v["task_id"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    all
}

#[test]
fn an_archive_racing_workers_loses_nothing_and_duplicates_nothing() {
    const TASKS: usize = 40;
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..TASKS)
        .map(|i| {
            let id = format!("arc-{i:03}");
            // A little work each, so that the drain lasts a few seconds
            // and the archive gets to run many times during it. (Workers
            // pushing many times a second starve the archive's heavier
            // rounds: measured, one run then took 4.5 s of lost rounds.)
            let script = if i.is_multiple_of(7) {
                format!("sleep 0.3; echo {id}; exit 3")
            } else {
                format!("sleep 0.3; echo {id}")
            };
            (id, script, 30)
        })
        .collect();
    grid.submit(&tasks);
    let mut workers: Vec<WorkerProc> = (0..2)
        .map(|i| spawn_worker(&grid, &WorkerSpec::new(&grid, &format!("racer-{i}"))))
        .collect();

    // The archive in a loop, as fast as it goes, keeping only 3 on main.
    let done = Arc::new(AtomicBool::new(false));
    let url = grid.url();
    let archiver = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut moving_runs = 0;
            while !done.load(Ordering::SeqCst) {
                let o = dgrid(&["archive", "--repo", &url, "--keep", "3", "--json"]);
                expect_code(&o, 0);
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                if !v["moved"].as_array().unwrap().is_empty() {
                    moving_runs += 1;
                }
            }
            moving_runs
        })
    };
    for w in &mut workers {
        let status = w.wait_exit(Duration::from_secs(240));
        assert!(status.success(), "{}", w.log_text());
    }
    done.store(true, Ordering::SeqCst);
    let moving_runs = archiver.join().unwrap();
    assert!(
        moving_runs >= 2,
        "the archive moved results only {moving_runs} times while the workers ran"
    );
    let final_run = dgrid(&["archive", "--repo", &grid.url(), "--keep", "3"]);
    expect_code(&final_run, 0);

    let all = all_results(&grid);
    let mut per_task: BTreeMap<&str, usize> = BTreeMap::new();
    for task in all.values() {
        *per_task.entry(task).or_default() += 1;
    }
    assert_eq!(per_task.len(), TASKS, "every task has a result: {all:?}");
    assert!(
        per_task.values().all(|n| *n == 1),
        "a result exists twice: {per_task:?}"
    );
    assert_eq!(
        grid.files("tasks/completed").len() + grid.files("tasks/failed").len(),
        3
    );
    assert!(grid.queued().is_empty() && grid.files("tasks/in_progress").is_empty());
    // Failed ones stayed failed, completed ones completed.
    for ((_, dir, _), task) in &all {
        let n: usize = task[4..].parse().unwrap();
        assert_eq!(
            dir == "tasks/failed",
            n.is_multiple_of(7),
            "{task} in {dir}"
        );
    }
}

fn results_grid() -> Grid {
    let grid = populated_grid();
    assert_eq!(grid.files("tasks/completed").len(), 5);
    grid
}

fn clone_of(grid: &Grid, name: &str) -> GridRepo {
    let g = Git::new("git", grid.path(name), Duration::from_secs(60));
    GridRepo::open_or_init(g, &grid.url(), "main").unwrap()
}

#[test]
fn when_main_moves_under_it_the_archive_branch_does_not_move_either() {
    let grid = results_grid();
    let repo = clone_of(&grid, "archiver.git");
    let opts = ArchiveOptions {
        keep: 1,
        ..ArchiveOptions::default()
    };
    let main_before = grid.tip_of("main").unwrap();
    // A worker's push lands between the archive's fetch and its push.
    let one_round = TxnPolicy {
        max_rounds: 1,
        ..TxnPolicy::default()
    };
    let out = txn::run_branches(
        &repo,
        &Identity::for_node("dgrid-archiver"),
        &one_round,
        &["main", "archive"],
        |t| {
            let planned = archive::plan(t, &opts)?;
            grid.commit_files(
                &[("tasks/completed/w-late.json".into(), b"{}".to_vec())],
                "a worker's result",
            );
            Ok(planned)
        },
    );
    assert!(
        // The ref that failed is named, not the one failed for its sake.
        matches!(out, Err(TxnError::Contended { ref last, .. }) if last.contains("(fetch first)")),
        "{out:?}"
    );
    assert_eq!(
        grid.tip_of("archive"),
        None,
        "the archive branch was not created"
    );
    let main_now = grid.tip_of("main").unwrap();
    let parent = git(&grid.bare, &["rev-parse", "main~1"]);
    assert_eq!(String::from_utf8_lossy(&parent.stdout).trim(), main_before);
    assert_eq!(grid.files("tasks/completed").len(), 6, "nothing left main");

    // The next run plans from the new tip and moves everything but one.
    let done = archive::archive(&repo, &TxnPolicy::default(), &opts).unwrap();
    assert!(matches!(done, txn::BranchesOutcome::Committed { .. }));
    assert_ne!(grid.tip_of("main").unwrap(), main_now);
    let on_main = grid.files("tasks/completed").len() + grid.files("tasks/failed").len();
    let archived = grid.files_on("archive", "tasks/completed").len()
        + grid.files_on("archive", "tasks/failed").len();
    assert_eq!((on_main, archived), (1, 7));
}

#[test]
fn when_the_server_refuses_main_the_archive_branch_does_not_move_either() {
    let grid = results_grid();
    // First a successful archive, so the branch exists and must stay put.
    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "5"]);
    expect_code(&o, 0);
    let archive_before = grid.tip_of("archive").expect("created");
    let main_before = grid.tip_of("main").unwrap();
    // Then main is frozen by the server (an update hook, per ref).
    let hook = grid.bare.join("hooks/update");
    write_script(
        &hook,
        "#!/bin/sh\nif [ \"$1\" = refs/heads/main ]; then echo 'main is frozen' >&2; exit 1; fi\nexit 0\n",
    );
    let o = dgrid(&["archive", "--repo", &grid.url(), "--keep", "1"]);
    expect_code(&o, 1);
    let said = stderr(&o);
    assert!(
        said.contains("refused the push") && said.contains("hook declined"),
        "{said}"
    );
    assert_eq!(grid.tip_of("archive").unwrap(), archive_before);
    assert_eq!(grid.tip_of("main").unwrap(), main_before);

    // The same through the library: a refusal, not a race to retry.
    let repo = clone_of(&grid, "archiver.git");
    let out = archive::archive(
        &repo,
        &TxnPolicy::default(),
        &ArchiveOptions {
            keep: 1,
            ..ArchiveOptions::default()
        },
    );
    assert!(
        matches!(out, Err(TxnError::Git(GitError::PushRefused { .. }))),
        "{out:?}"
    );
    assert_eq!(grid.tip_of("archive").unwrap(), archive_before);
}
