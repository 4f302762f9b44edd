//! The transaction (PROTOCOL.md section 3) under contention: four worker processes drain one
//! grid. Every task must end with exactly one result and run exactly once,
//! over a local path remote and over `git daemon` on 127.0.0.1.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

const TASKS: usize = 100;
const WORKERS: usize = 4;

fn drain_with_racing_workers(grid: &Grid, url: &str) {
    let runs = grid.path("runs.log");
    let tasks: Vec<(String, String, u64)> = (0..TASKS)
        .map(|i| {
            let id = format!("race-{i:03}");
            // The shell engine runs on the host, so each run leaves a line
            // in a shared log: a task run twice shows up twice. The sleep
            // keeps one worker from draining the grid before the others
            // have registered.
            (
                id.clone(),
                format!(
                    "echo {id} >> '{}'; sleep 0.05; echo out-{id}",
                    runs.display()
                ),
                30,
            )
        })
        .collect();
    grid.submit(&tasks);

    let mut workers: Vec<WorkerProc> = (0..WORKERS)
        .map(|i| {
            let mut spec = WorkerSpec::new(grid, &format!("racer-{i}"));
            spec.url = url.to_owned();
            // Small batches: with the default (up to 64) one node can take
            // a queue of 100 quick tasks in two claims and nobody races.
            // Five per claim makes at least 20 claims, raced by four.
            spec.extra = "claim_ahead = 4".into();
            spawn_worker(grid, &spec)
        })
        .collect();
    for w in &mut workers {
        let status = w.wait_exit(Duration::from_secs(240));
        assert!(
            status.success(),
            "worker failed: {status}\n{}",
            w.log_text()
        );
    }

    // Exactly one result per task, all successful, from whoever ran it.
    let results = grid.json_files("tasks/completed");
    let mut per_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, json) in &results {
        per_task
            .entry(json["task_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(file.clone());
        assert_eq!(json["exit_code"], 0, "{file}: {json}");
        assert_eq!(
            json["stdout"],
            format!("out-{}\n", json["task_id"].as_str().unwrap())
        );
        assert!(
            file.starts_with(json["node_id"].as_str().unwrap()),
            "{file} names its node"
        );
    }
    assert_eq!(per_task.len(), TASKS, "every task has a result");
    assert!(
        per_task.values().all(|files| files.len() == 1),
        "duplicate results: {per_task:?}"
    );
    assert!(
        grid.files("tasks/failed").is_empty(),
        "no failures: {:?}",
        grid.files("tasks/failed")
    );
    assert!(grid.queued().is_empty(), "queue drained");
    assert!(
        grid.files("tasks/in_progress").is_empty(),
        "nothing left claimed"
    );

    // Exactly one execution per task.
    let log = std::fs::read_to_string(&runs).unwrap();
    let mut executions: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        *executions.entry(line).or_default() += 1;
    }
    assert_eq!(executions.len(), TASKS);
    let twice: Vec<_> = executions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks ran more than once: {twice:?}");

    // More than one worker took part, and every node registered.
    let by_node: BTreeMap<&str, usize> = results.values().fold(BTreeMap::new(), |mut m, j| {
        *m.entry(j["node_id"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert!(by_node.len() > 1, "work was spread: {by_node:?}");
    assert_eq!(grid.files("nodes").len(), WORKERS);
}

#[test]
fn four_workers_drain_a_path_remote() {
    let grid = Grid::new();
    let url = grid.url();
    drain_with_racing_workers(&grid, &url);
}

#[test]
fn four_workers_drain_a_git_daemon_remote() {
    let grid = Grid::new();
    let daemon = GitDaemon::start(&grid, free_port());
    drain_with_racing_workers(&grid, &daemon.url());
}

/// A result of the claim `c` made by `node`, ready to deliver.
fn result_of(
    c: &dgrid_worker::grid::claim::ClaimedTask,
    node: &str,
) -> dgrid_worker::service::outbox::OutboxEntry {
    crate::common::plan::completed(
        c.task.task_id.as_str(),
        node,
        c.claim.attempt,
        &c.claim.claimed_at,
        dgrid_worker::time::format(dgrid_worker::time::now()),
    )
}

/// A node that only delivers counts who may push with it: the nodes
/// holding claims at the tip, and itself. Its lost rounds then wait no
/// longer than that many rounds (`TxnPolicy::writers`). A node that claims
/// does not count (idle racers hold nothing the tip could show).
#[test]
fn a_node_that_only_delivers_counts_the_writers_left() {
    use crate::common::plan::{PlainNode, commit_at, plan_at};
    use dgrid_worker::service::sync::SyncRequest;

    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..4)
        .map(|i| (format!("t{i}"), "true".to_owned(), 30))
        .collect();
    grid.submit(&tasks);
    let names = ["a", "b", "c"];
    let nodes: Vec<PlainNode> = names.iter().map(|n| PlainNode::new(n)).collect();
    let results: Vec<_> = nodes
        .iter()
        .zip(names)
        .map(|(n, name)| {
            let mut report = commit_at(&grid.url(), &n.request(1));
            assert_eq!(report.claimed.len(), 1, "{name} claims one");
            [result_of(&report.claimed.remove(0), name)]
        })
        .collect();
    let delivering = |n: usize| SyncRequest {
        outbox: &results[n],
        ..nodes[n].request(0)
    };
    let report = plan_at(&grid.url(), &delivering(0));
    assert_eq!(report.landed.len(), 1, "{report:?}");
    assert_eq!(report.writers, 3, "b and c hold claims, and a itself");
    // Claiming the task left as well: not counted.
    let report = plan_at(
        &grid.url(),
        &SyncRequest {
            outbox: &results[0],
            ..nodes[0].request(1)
        },
    );
    assert_eq!(report.claimed.len(), 1);
    assert_eq!(
        report.writers, 0,
        "a claim races idle nodes the tip cannot count"
    );
    // Once b and c have delivered, a is the last writer.
    for n in [1, 2] {
        assert_eq!(commit_at(&grid.url(), &delivering(n)).landed.len(), 1);
    }
    assert_eq!(plan_at(&grid.url(), &delivering(0)).writers, 1);
}

/// A transaction may plan its first round on a tip fetched just before (a
/// look at a free slot that found work to take, `TxnPolicy::from_tip`):
/// on a tip still current it lands in that round; on one a peer has moved
/// past, its push loses, and the next round fetches and plans again on
/// the peer's commit, which the result keeps.
#[test]
fn a_transaction_planned_on_a_fetched_tip_lands_or_plans_again_on_the_new_one() {
    use dgrid_worker::git::txn::{self, Identity, TxnOutcome, TxnPolicy};
    use dgrid_worker::git::{Git, GridRepo};
    let grid = Grid::new();
    let dir = grid.path("clone");
    let repo = GridRepo::open_or_init(
        Git::new("git", &dir, Duration::from_secs(60)),
        &grid.url(),
        "main",
    )
    .unwrap();
    let write = |tip, path: &str| {
        let mut planned_on = Vec::new();
        let out = txn::run(
            &repo,
            &Identity::for_node("tester"),
            &TxnPolicy::default().from_tip(tip),
            |t| {
                planned_on.push(t.tip.clone());
                Ok(crate::common::plan::write_one(path, b"{}\n"))
            },
        )
        .unwrap();
        match out {
            TxnOutcome::Committed { rejections, .. } => (rejections, planned_on),
            other => panic!("not committed: {other:?}"),
        }
    };

    let current = repo.fetch().unwrap().unwrap();
    let (rejections, planned_on) = write(current.clone(), "nodes/a.json");
    assert_eq!(rejections, 0, "a current tip lands at once");
    assert_eq!(planned_on, vec![Some(current)], "planned on the tip given");

    let looked = repo.fetch().unwrap().unwrap();
    grid.commit_files(
        &[("nodes/peer.json".into(), b"{}\n".to_vec())],
        "a peer's commit",
    );
    let (rejections, planned_on) = write(looked.clone(), "nodes/b.json");
    assert_eq!(
        rejections, 1,
        "the first round planned on the stale tip, unfetched"
    );
    assert_eq!(planned_on.len(), 2);
    assert_eq!(planned_on[0], Some(looked.clone()));
    assert_ne!(planned_on[1], Some(looked), "the second round fetched");
    let nodes = grid.files("nodes");
    for f in ["a.json", "b.json", "peer.json"] {
        assert!(nodes.contains_key(f), "{f} missing: {:?}", nodes.keys());
    }
}
