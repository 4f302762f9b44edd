//! Claims taken over (PROTOCOL.md, Claims taken over): a node with nothing
//! to run takes, in its own commit, the last claims of a busy peer's line
//! that the peer has not started; the peer, at its next sync, finds them
//! naming another node and drops them. Real repositories and real pushes
//! throughout.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::plan::{PlainNode, clone_of, commit_at, completed, plan_at, publish_at};
use crate::common::*;
use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
use dgrid_worker::git::{GridRepo, Txn, TxnOutcome};
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
use dgrid_worker::service::outbox::{Finish, OutboxEntry};
use dgrid_worker::service::sync::{self, SyncReport, SyncRequest};

fn at(secs: i64) -> String {
    dgrid_worker::time::format(dgrid_worker::time::now() + chrono::Duration::seconds(secs))
}

/// A busy node's record, fresh, running `running`, its tasks taking
/// `task_ms`.
fn busy(node: &str, running: &[&str], task_ms: u64) -> (String, Vec<u8>) {
    let r = NodeRecord {
        running: running.iter().map(|s| s.to_string()).collect(),
        task_ms: Some(task_ms),
        ..NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Busy, at(0))
    };
    (format!("nodes/{node}.json"), r.to_bytes())
}

/// A claim of `task` by `node`, with `extra` fields in the task.
fn claim(task: &str, node: &str, script: &str, extra: serde_json::Value) -> (String, Vec<u8>) {
    let mut body = serde_json::json!({
        "task_id": task, "script": script, "timeout_seconds": 60,
        "claim": {"node_id": node, "claimed_at": at(-5), "deadline": at(600), "attempt": 1},
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    (
        format!("tasks/in_progress/{task}.json"),
        serde_json::to_vec_pretty(&body).unwrap(),
    )
}

/// `node`'s outbox entry of a completed run of `task`, under the claim it
/// made at `claimed_at`.
fn ran(task: &str, node: &str, claimed_at: &serde_json::Value) -> OutboxEntry {
    completed(task, node, 1, claimed_at.as_str().unwrap(), at(0))
}

fn node_of(grid: &Grid, task: &str) -> String {
    let claims = grid.json_files("tasks/in_progress");
    claims[&format!("{task}.json")]["claim"]["node_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A fresh clone that has planned `req` once: it learns who holds
/// claims, and so watches their published outboxes from its next fetch
/// on, as a running node's clone does.
fn watching_clone(grid: &Grid, req: &SyncRequest<'_>) -> (tempfile::TempDir, GridRepo) {
    let (state, repo) = clone_of(&grid.url());
    plan_on(&repo, req);
    (state, repo)
}

/// Plan `req` on the tip `repo` fetches now, committing nothing.
fn plan_on(repo: &GridRepo, req: &SyncRequest<'_>) -> SyncReport {
    let tip = repo.fetch().unwrap();
    sync::plan(&Txn { repo, tip }, req).unwrap().value
}

/// Plan `req` on a watching clone, then commit it.
fn take_over_at(grid: &Grid, req: &SyncRequest<'_>) -> SyncReport {
    let (_state, repo) = watching_clone(grid, req);
    let who = Identity::for_node(req.node.as_str());
    match txn::run(&repo, &who, &TxnPolicy::default(), |t| sync::plan(t, req)).unwrap() {
        TxnOutcome::Committed { value, .. } => value,
        other => panic!("a commit: {other:?}"),
    }
}

fn ids_of(v: &[Id]) -> Vec<String> {
    v.iter().map(Id::to_string).collect()
}

fn ids(v: &[(Id, Id)]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|(t, _)| t.to_string()).collect();
    out.sort();
    out
}

/// Four peers hold claims behind a running task. Of "slow"'s three
/// waiting, the idle node takes the last two (a third it would start no
/// sooner than slow does); the attempt stays. Nothing of "done"'s,
/// whose waiting claims are results it published, of "gpu"'s, which ask
/// a label the node lacks, nor of "fresh"'s, made for it and not
/// answered. Slow, at its next sync, finds the two naming another node.
#[test]
fn an_idle_node_takes_over_the_end_of_a_busy_peers_line() {
    let grid = Grid::new();
    let none = serde_json::json!({});
    let mut files = vec![
        busy("slow", &["s-0"], 2000),
        busy("done", &["d-0"], 2000),
        busy("gpu", &["g-0"], 2000),
        busy("fresh", &[], 2000),
    ];
    for i in 0..4 {
        let (path, bytes) = claim(&format!("s-{i}"), "slow", "sleep 2", none.clone());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if i == 3 {
            // Its second attempt: a claim taken over keeps it.
            v["attempt"] = 2.into();
            v["claim"]["attempt"] = 2.into();
        }
        files.push((path, serde_json::to_vec_pretty(&v).unwrap()));
    }
    for i in 0..3 {
        files.push(claim(&format!("d-{i}"), "done", "sleep 2", none.clone()));
        let gpu = serde_json::json!({"requires": ["gpu"]});
        files.push(claim(&format!("g-{i}"), "gpu", "sleep 2", gpu));
        let (path, bytes) = claim(&format!("f-{i}"), "fresh", "sleep 2", none.clone());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["claim"]["assigned_by"] = "elsewhere".into();
        v["claim"]["answer_by"] = at(55).into();
        files.push((path, serde_json::to_vec_pretty(&v).unwrap()));
    }
    grid.commit_files(&files, "four busy peers and their lines");
    // "done" ran d-1 and d-2 and published their results (its record
    // cannot say so until one of its pushes lands).
    let claims = grid.json_files("tasks/in_progress");
    let entries: Vec<OutboxEntry> = ["d-1", "d-2"]
        .iter()
        .map(|t| {
            ran(
                t,
                "done",
                &claims[&format!("{t}.json")]["claim"]["claimed_at"],
            )
        })
        .collect();
    let edits = sync::to_publish(&Id::parse("done").unwrap(), &entries, false)
        .unwrap()
        .edits;
    publish_at(&grid.url(), "done", &edits);

    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = SyncRequest {
        steal_up_to: 8,
        task_secs: Some(2.0),
        round_secs: Some(0.2),
        ..idle.request(8)
    };
    // A clone whose fetch did not ask for the holders' published
    // outboxes takes nothing over: it cannot tell what they ran.
    assert!(plan_at(&grid.url(), &req).stolen.is_empty());
    let before = grid.json_files("tasks/in_progress");
    let landed = take_over_at(&grid, &req);
    assert_eq!(ids(&landed.stolen), ["s-2", "s-3"], "{:?}", landed.stolen);
    assert!(landed.stolen.iter().all(|(_, p)| p.as_str() == "slow"));
    let claims = grid.json_files("tasks/in_progress");
    for (task, node, attempt) in [
        ("s-0", "slow", 1),
        ("s-1", "slow", 1),
        ("s-2", "idle", 1),
        ("s-3", "idle", 2),
    ] {
        let c = &claims[&format!("{task}.json")]["claim"];
        assert_eq!(c["node_id"], node, "{task}");
        assert_eq!(
            c["attempt"], attempt,
            "{task}: a claim taken over is the same attempt"
        );
    }
    for t in ["d-0", "g-1", "g-2", "f-0", "f-2"] {
        assert_ne!(node_of(&grid, t), "idle", "{t}");
    }
    // The commit carried done's published results instead.
    let done = grid.json_files("tasks/completed");
    assert!(done.contains_key("done@d-1.json") && done.contains_key("done@d-2.json"));

    // Slow holds all four, runs s-0: its next sync finds two gone.
    let mut slow = PlainNode::new("slow");
    slow.record.last_heartbeat = at(0);
    let held: BTreeSet<Id> = (0..4)
        .map(|i| Id::parse(&format!("s-{i}")).unwrap())
        .collect();
    let watching = SyncRequest {
        held: &held,
        watch: true,
        ..slow.request(0)
    };
    let mut taken: Vec<String> = plan_at(&grid.url(), &watching)
        .taken
        .iter()
        .map(|t| t.to_string())
        .collect();
    taken.sort();
    assert_eq!(taken, ["s-2", "s-3"]);
    let blind = SyncRequest {
        held: &held,
        ..slow.request(0)
    };
    assert!(plan_at(&grid.url(), &blind).taken.is_empty());

    // Slow had started s-3 after all (its record was older than the
    // start): its result lands, the first of the two runs, and ends the
    // claim idle took over; a requeue of s-2 from it (a handback) finds
    // the claim no longer its own and puts nothing back.
    let handback = OutboxEntry {
        finish: Finish::requeue("handed to a peer".into()),
        ..ran("s-2", "slow", &before["s-2.json"]["claim"]["claimed_at"])
    };
    let outbox = [
        ran("s-3", "slow", &before["s-3.json"]["claim"]["claimed_at"]),
        handback,
    ];
    let after = grid.json_files("tasks/in_progress");
    let first = commit_at(
        &grid.url(),
        &SyncRequest {
            outbox: &outbox,
            held: &held,
            ..slow.request(0)
        },
    );
    assert_eq!(first.landed.len(), 2, "{:?}", first.landed);
    assert!(first.superseded.is_empty(), "{:?}", first.superseded);
    assert!(
        grid.json_files("tasks/completed")
            .contains_key("slow@s-3.json")
    );
    assert!(!grid.files("tasks/in_progress").contains_key("s-3.json"));
    assert_eq!(node_of(&grid, "s-2"), "idle");
    assert!(grid.queued().is_empty(), "{:?}", grid.queued().keys());
    // Idle, running both, learns at its next sync that s-3 ended
    // elsewhere, and stops that run; s-2 still names it.
    let mut runner = PlainNode::new("idle");
    runner.record.running = vec!["s-2".into(), "s-3".into()];
    let both: BTreeSet<Id> = ["s-2", "s-3"]
        .iter()
        .map(|t| Id::parse(t).unwrap())
        .collect();
    let running = SyncRequest {
        held: &both,
        watch: true,
        ..runner.request(0)
    };
    let seen = plan_at(&grid.url(), &running);
    assert_eq!(ids_of(&seen.ended), ["s-3"]);
    assert!(seen.taken.is_empty(), "{:?}", seen.taken);
    // Idle's own run of s-3 ends later (had it not stopped): one result
    // per task.
    let late = [ran(
        "s-3",
        "idle",
        &after["s-3.json"]["claim"]["claimed_at"],
    )];
    let second = commit_at(
        &grid.url(),
        &SyncRequest {
            outbox: &late,
            ..idle.request(0)
        },
    );
    assert_eq!(ids_of(&second.superseded), ["s-3"]);
    let results: Vec<String> = grid
        .json_files("tasks/completed")
        .into_keys()
        .filter(|k| k.ends_with("@s-3.json"))
        .collect();
    assert_eq!(results, ["slow@s-3.json"]);
    // A claim it runs that went back to the queue (reaped) is no task
    // ended: its result lands from there.
    grid.commit_with("s-2 back to the queue", |work| {
        std::fs::rename(
            work.join("tasks/in_progress/s-2.json"),
            work.join("tasks/queue/s-2.json"),
        )
        .unwrap();
    });
    let seen = plan_at(&grid.url(), &running);
    assert_eq!(ids_of(&seen.ended), ["s-3"]);

    // Tasks no longer than a round: nothing is taken over.
    let quick = SyncRequest {
        steal_up_to: 8,
        task_secs: Some(0.1),
        round_secs: Some(0.2),
        ..idle.request(8)
    };
    grid.commit_files(&[busy("slow", &["s-0"], 100)], "slow's tasks are short");
    let (_state, repo) = watching_clone(&grid, &quick);
    let planned = plan_on(&repo, &quick);
    assert!(planned.stolen.is_empty(), "{:?}", planned.stolen);
}

/// A hostile writer's claim with a forged `taken_from` (naming "victim"
/// and a moment): the only result it lets land besides its holder's is
/// victim's run under that very claim, which the writer could as well
/// have left in victim's hands. Victim's result under another claim, a
/// stranger's under this one, and victim's requeue through it land
/// nothing and end nothing: the claim stays the writer's.
#[test]
fn a_forged_taken_from_lands_only_the_named_claims_result() {
    let grid = Grid::new();
    let named = at(-60);
    let forged = serde_json::json!({"node_id": "victim", "claimed_at": named});
    let (path, bytes) = claim("f-1", "writer", "true", serde_json::json!({}));
    let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    body["claim"]["taken_from"] = forged;
    grid.commit_files(
        &[(path, serde_json::to_vec(&body).unwrap())],
        "a claim taken over from nobody's",
    );
    let named = serde_json::Value::String(named);
    let victim = PlainNode::new("victim");
    let stranger = PlainNode::new("stranger");
    for (node, entry) in [
        (&victim, ran("f-1", "victim", &serde_json::json!(at(-90)))),
        (&stranger, ran("f-1", "stranger", &named)),
        (
            &victim,
            OutboxEntry {
                finish: Finish::requeue("given back".into()),
                ..ran("f-1", "victim", &named)
            },
        ),
    ] {
        let report = commit_at(
            &grid.url(),
            &SyncRequest {
                outbox: std::slice::from_ref(&entry),
                ..node.request(0)
            },
        );
        // A result is superseded (kept aside by its node); a requeue is
        // moot (cleared, nothing put back).
        let result = matches!(entry.finish, Finish::Result { .. });
        let (gone, kept) = (&report.landed, &report.superseded);
        assert_eq!(
            (gone.len(), kept.len()),
            if result { (0, 1) } else { (1, 0) },
            "{entry:?}: {gone:?} {kept:?}"
        );
        assert_eq!(node_of(&grid, "f-1"), "writer");
        assert!(grid.json_files("tasks/completed").is_empty());
        assert!(grid.queued().is_empty(), "{:?}", grid.queued().keys());
    }
    let report = commit_at(
        &grid.url(),
        &SyncRequest {
            outbox: &[ran("f-1", "victim", &named)],
            ..victim.request(0)
        },
    );
    assert_eq!(ids_of(&report.landed), ["f-1"]);
    assert!(grid.files("tasks/in_progress").is_empty());
    let results: Vec<String> = grid.json_files("tasks/completed").into_keys().collect();
    assert_eq!(results, ["victim@f-1.json"]);
}

/// A worker that has timed two tasks of 1 s: claims are taken over, and
/// watched, only where tasks outlast a round.
fn timed_worker(grid: &Grid, node: &str) -> WorkerProc {
    let mut spec = WorkerSpec::new(grid, node);
    spec.drain = false;
    let worker = spawn_worker(grid, &spec);
    let warm: Vec<(String, String, u64)> = (0..2)
        .map(|i| (format!("warm-{i}"), "sleep 1".into(), 30))
        .collect();
    grid.submit(&warm);
    wait_until("the warm-up", Duration::from_secs(60), || {
        grid.json_files("tasks/completed").len() == 2
    });
    worker
}

/// A peer holding four claims of 2 s tasks, which were to keep it busy
/// 4 s from its plan, its record and its claims written `ago` seconds
/// before.
fn paced_peer(ago: i64) -> Vec<(String, Vec<u8>)> {
    let none = serde_json::json!({});
    let (path, bytes) = busy("paced", &[], 2000);
    let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    record["busy_ms"] = 4000.into();
    record["last_heartbeat"] = at(-ago).into();
    let mut files = vec![(path, serde_json::to_vec(&record).unwrap())];
    for i in 0..4 {
        let (p, b) = claim(&format!("p-{i}"), "paced", "sleep 2", none.clone());
        let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["claim"]["claimed_at"] = at(-ago).into();
        files.push((p, serde_json::to_vec_pretty(&v).unwrap()));
    }
    files
}

/// An idle node that takes over up to four claims, where tasks take 2 s
/// and a round as long, having reached the grid since `reached_since`.
fn paced_taker(
    idle: &PlainNode,
    reached_since: Option<dgrid_worker::time::Timestamp>,
) -> SyncRequest<'_> {
    SyncRequest {
        steal_up_to: 4,
        task_secs: Some(2.0),
        round_secs: Some(2.0),
        reached_since,
        ..idle.request(4)
    }
}

/// A peer on pace, read a round after its record: its claims were to
/// keep it busy 4 s from its plan (tasks of 2 s), and 7 s on it has
/// started three of its four, the commit that claimed them having taken
/// a round (2 s) to land. Not overdue: nothing is taken over. Read 11 s
/// on, it is, and the end of its line is.
#[test]
fn a_peer_is_not_overdue_for_the_round_its_claims_took_to_land() {
    let grid = Grid::new();
    grid.commit_files(&paced_peer(7), "a peer on pace");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let long_ago = dgrid_worker::time::now() - chrono::Duration::hours(1);
    let req = paced_taker(&idle, Some(long_ago));
    let (_state, repo) = watching_clone(&grid, &req);
    let on_pace = plan_on(&repo, &req);
    assert!(on_pace.stolen.is_empty(), "{:?}", on_pace.stolen);
    grid.commit_files(&paced_peer(11), "its record and claims older");
    let late = plan_on(&repo, &req);
    assert!(!late.stolen.is_empty(), "overdue: its line is taken over");
}

/// The grid was away, from this node and so most likely from its peers,
/// which could not write their records: a peer's record 11 s old, which
/// says its line runs late (as above), does not say so to a node that
/// reached the grid again moments ago, nor 5 s ago. Its silence counts
/// from then, less a poll interval (1 s) within which the peer tries
/// again; 12 s after, past what its claims were to keep it busy, a task
/// and two rounds (its claims' and its results'), its line is taken over.
#[test]
fn a_peer_is_not_overdue_for_the_time_the_grid_was_away() {
    let grid = Grid::new();
    grid.commit_files(&paced_peer(11), "a peer silent for 11 s");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let back = |secs: i64| Some(dgrid_worker::time::now() - chrono::Duration::seconds(secs));
    let (_state, repo) = watching_clone(&grid, &paced_taker(&idle, back(0)));
    for (reached, what) in [
        (None, "this sync is the first to reach it"),
        (back(0), "back now"),
        (back(5), "back 5 s ago"),
    ] {
        let report = plan_on(&repo, &paced_taker(&idle, reached));
        assert!(report.stolen.is_empty(), "{what}: {:?}", report.stolen);
    }
    let late = plan_on(&repo, &paced_taker(&idle, back(12)));
    assert!(
        !late.stolen.is_empty(),
        "back 12 s ago: its line is taken over"
    );
}

/// Nodes of unequal speed: a peer whose record says its tasks take 2.2 s
/// holds two claims behind the one it runs. A node that runs them in
/// 0.4 s takes both, the head too (started there or not, the task ends
/// sooner here); a node of like pace leaves the head to the peer.
#[test]
fn a_fast_node_takes_a_slow_peers_line_head_and_all() {
    let grid = Grid::new();
    let none = serde_json::json!({});
    let mut files = vec![busy("slow", &["s-0"], 2200)];
    for i in 0..3 {
        files.push(claim(&format!("s-{i}"), "slow", "sleep 2", none.clone()));
    }
    grid.commit_files(&files, "a slow peer and its line");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = |task_secs| SyncRequest {
        steal_up_to: 4,
        task_secs: Some(task_secs),
        round_secs: Some(0.2),
        ..idle.request(4)
    };
    let (_state, repo) = watching_clone(&grid, &req(2.0));
    let alike = plan_on(&repo, &req(2.0));
    assert_eq!(ids(&alike.stolen), ["s-2"], "{:?}", alike.stolen);
    let landed = take_over_at(&grid, &req(0.4));
    assert_eq!(ids(&landed.stolen), ["s-1", "s-2"], "{:?}", landed.stolen);
    assert_eq!(node_of(&grid, "s-0"), "slow");
    assert_eq!(node_of(&grid, "s-1"), "idle");
}

/// A peer holds claims behind a task that runs far longer than it
/// reckoned (its record stays as it was): a running node with nothing to
/// do takes them over one commit at a time, as each starts at once, and
/// runs them; the one the peer's record says it runs stays its own.
#[test]
fn a_running_node_takes_over_what_a_stuck_peer_has_not_started() {
    let grid = Grid::new();
    let mut idle = timed_worker(&grid, "idle");
    let none = serde_json::json!({});
    // Its claims were to keep it busy for 2 s, ten seconds ago: its
    // task runs long, and it starts none of the rest meanwhile.
    let (path, record) = busy("stuck", &["k-0"], 1000);
    let mut record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    record["busy_ms"] = 2000.into();
    record["last_heartbeat"] = at(-10).into();
    let mut files = vec![(path, serde_json::to_vec(&record).unwrap())];
    for i in 0..4 {
        files.push(claim(&format!("k-{i}"), "stuck", "sleep 1", none.clone()));
    }
    grid.commit_files(&files, "a peer stuck behind k-0");
    wait_until("k-1 to k-3 run here", Duration::from_secs(120), || {
        let done = grid.json_files("tasks/completed");
        (1..4).all(|i| done.contains_key(&format!("idle@k-{i}.json")))
    });
    assert_eq!(node_of(&grid, "k-0"), "stuck");
    let log = idle.log_text();
    assert!(
        log.contains("took over a claim a busy peer had not started"),
        "{log}"
    );
    idle.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        idle.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        idle.log_text()
    );
}

/// A running node holds three claims behind a long task; a peer takes the
/// last two over. The node drops them at its next sync and never runs
/// them; what it kept it runs.
#[test]
fn a_node_drops_the_claims_a_peer_took_over() {
    let grid = Grid::new();
    let mut holder = timed_worker(&grid, "holder");
    // Alone, its share is the whole queue: one running, three waiting.
    let tasks: Vec<(String, String, u64)> = (0..4)
        .map(|i| (format!("h-{i}"), "sleep 4".into(), 60))
        .collect();
    grid.submit(&tasks);
    wait_until("the share", Duration::from_secs(30), || {
        grid.files("tasks/in_progress").len() == 4
            && grid
                .json_files("nodes")
                .get("holder.json")
                .is_some_and(|r| r["running"].as_array().is_some_and(|a| a.len() == 1))
    });
    let mut thief = PlainNode::new("thief");
    thief.record.last_heartbeat = at(0);
    let took = take_over_at(
        &grid,
        &SyncRequest {
            steal_up_to: 2,
            task_secs: Some(4.0),
            round_secs: Some(0.2),
            ..thief.request(2)
        },
    );
    assert_eq!(took.stolen.len(), 2, "{:?}", took.stolen);
    wait_until("the holder drops them", Duration::from_secs(60), || {
        holder.log_text().matches("names another node now").count() == 2
    });
    let kept: Vec<String> = (0..4)
        .map(|i| format!("h-{i}"))
        .filter(|t| {
            node_of(&grid, t) == "holder" || !took.stolen.iter().any(|(s, _)| s.as_str() == t)
        })
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    wait_until("what it kept", Duration::from_secs(120), || {
        let done = grid.json_files("tasks/completed");
        kept.iter()
            .all(|t| done.contains_key(&format!("holder@{t}.json")))
    });
    let done = grid.json_files("tasks/completed");
    for (t, _) in &took.stolen {
        assert!(
            !done.contains_key(&format!("holder@{t}.json")),
            "{t} ran on the holder"
        );
        assert_eq!(node_of(&grid, t.as_str()), "thief");
    }
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        holder.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        holder.log_text()
    );
}

/// A node killed right after its first claim, made before it had timed a
/// task (its record has no `busy_ms`): a peer takes over its line all the
/// same, reckoned from what it held, and when the claims it was running
/// are reaped at their deadlines, it is marked as taking no claims made
/// for it. Before, its line counted as started for ever (the peer idle
/// until the reap), and the reaped node, holding nothing with a fresh
/// record, was claimed for again and again, a minute each time.
#[test]
fn a_node_killed_after_its_first_claim_loses_its_line_and_is_not_claimed_for() {
    let grid = Grid::new();
    let mut spec = WorkerSpec::new(&grid, "dies");
    spec.drain = false;
    // Its record stays fresh for the whole test; reaps every 20 s.
    let extra = "concurrency = 2\nheartbeat_interval = 10\nstale_after = 40\nclaim_grace = 5\n";
    spec.extra = extra.into();
    let mut dies = spawn_worker(&grid, &spec);
    wait_until("its registration", Duration::from_secs(60), || {
        grid.files("nodes").contains_key("dies.json")
    });
    let tasks: Vec<(String, String, u64)> = (0..12)
        .map(|i| (format!("k-{i:02}"), "sleep 1".into(), 3))
        .collect();
    grid.submit(&tasks);
    let mine = |grid: &Grid| {
        grid.json_files("tasks/in_progress")
            .values()
            .filter(|c| c["claim"]["node_id"] == "dies")
            .count()
    };
    wait_until("its first claim", Duration::from_secs(60), || {
        mine(&grid) > 2 && dies.log_text().contains("running")
    });
    dies.signal(nix::sys::signal::Signal::SIGKILL);
    dies.wait_exit(Duration::from_secs(30));
    let record = &grid.json_files("nodes")["dies.json"];
    assert!(record.get("busy_ms").is_none(), "{record}");
    let held = mine(&grid);

    let mut spec = WorkerSpec::new(&grid, "lives");
    spec.drain = false;
    spec.extra = extra.into();
    let mut lives = spawn_worker(&grid, &spec);
    wait_until(
        "its line taken over before any deadline passed",
        Duration::from_secs(60),
        || {
            lives
                .log_text()
                .contains("took over a claim a busy peer had not started")
        },
    );
    // The two it was running come back only at their deadlines.
    wait_until("every task done", Duration::from_secs(120), || {
        grid.json_files("tasks/completed").len() == tasks.len()
    });
    let record = &grid.json_files("nodes")["dies.json"];
    assert_eq!(record["takes_assigned"], false, "{record}");
    let o = crate::tools_fixture::dgrid(&["status", "--repo", &grid.url()]);
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("dies "))
        .unwrap_or_else(|| panic!("no line for dies: {text}"));
    assert!(line.contains("left a claim past its deadline"), "{text}");
    let log = String::from_utf8(git(&grid.bare, &["log", "--format=%B", "main"]).stdout).unwrap();
    let for_dies = log
        .split([',', '\n'])
        .map(str::trim)
        .any(|item| item.starts_with("claim ") && item.ends_with(" for dies"));
    assert!(!for_dies, "claimed for the dead node:\n{log}");
    lives.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        lives.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        lives.log_text()
    );
    assert!(held > 2);
}

/// Traced in the chaos suite (`chaos_short`, 200 tasks: chaos-0166 and
/// chaos-0167 run by two workers never killed). A peer planned a commit
/// claiming four 0.2 s tasks (two to start at once, `busy_ms` 418); it
/// landed a quarter of a second later, the peer ran the whole line and was
/// pushing its results when an idle node, 0.84 s after the peer's record,
/// read it as overdue (0.84 > 0.418 + 0.209 + its round 0.166) and took
/// over the last two, which had ended 0.2 s before. A healthy peer's
/// record cannot be fresher than its next commit: one that lands a round
/// after its last task ends, the round its claims took to land counted
/// too. So read 0.84 s after its record the peer is on pace (nothing is
/// taken over: by its pace it has started them all); read 3 s after, it
/// is overdue and the end of its line is taken over.
#[test]
fn a_peer_is_not_overdue_before_its_results_could_land() {
    let grid = Grid::new();
    let none = serde_json::json!({});
    let now = dgrid_worker::time::now();
    let peer = |ago_ms: i64| {
        let (path, bytes) = busy("quick", &["q-0", "q-1"], 209);
        let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        record["busy_ms"] = 418.into();
        record["last_heartbeat"] =
            dgrid_worker::time::format(now - chrono::Duration::milliseconds(ago_ms)).into();
        (path, serde_json::to_vec(&record).unwrap())
    };
    let mut files = vec![peer(838)];
    for i in 0..5 {
        files.push(claim(&format!("q-{i}"), "quick", "sleep 0.2", none.clone()));
    }
    grid.commit_files(&files, "a peer that claimed a short line");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = SyncRequest {
        now,
        steal_up_to: 2,
        task_secs: Some(0.214),
        round_secs: Some(0.166),
        ..idle.request(2)
    };
    let (_state, repo) = watching_clone(&grid, &req);
    let on_pace = plan_on(&repo, &req);
    assert!(
        on_pace.stolen.is_empty(),
        "its line ran; its results are on their way: {:?}",
        on_pace.stolen
    );
    grid.commit_files(&[peer(3000)], "its record older");
    let late = plan_on(&repo, &req);
    assert_eq!(
        ids(&late.stolen),
        ["q-3", "q-4"],
        "overdue: its line is taken over"
    );
}

/// The pace rule counts to the takeover's landing, a round after the plan.
/// A peer with one slot, 1 s tasks, read 0.9 s after its record, with
/// three claims waiting behind its run: its run ends 0.1 s on and it
/// starts the next claim blind; the takeover lands 0.3 s on, after that
/// end's sync began, so the peer learns of it only at the sync after its
/// next end, and starts the second claim blind too. Only the third is
/// the idle node's to take. Counted to the plan only, it took the second
/// as well, which the peer would have run too.
#[test]
fn a_takeover_leaves_what_the_peer_starts_before_it_lands() {
    let grid = Grid::new();
    let none = serde_json::json!({});
    let now = dgrid_worker::time::now();
    let (path, bytes) = busy("steady", &["p-0"], 1000);
    let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    record["busy_ms"] = 4000.into();
    record["last_heartbeat"] =
        dgrid_worker::time::format(now - chrono::Duration::milliseconds(900)).into();
    let mut files = vec![(path, serde_json::to_vec(&record).unwrap())];
    for i in 0..4 {
        files.push(claim(&format!("p-{i}"), "steady", "sleep 1", none.clone()));
    }
    grid.commit_files(&files, "a peer with a line of 1 s tasks");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = SyncRequest {
        now,
        steal_up_to: 2,
        task_secs: Some(1.0),
        round_secs: Some(0.3),
        ..idle.request(1)
    };
    let (_state, repo) = watching_clone(&grid, &req);
    let plan = plan_on(&repo, &req);
    assert_eq!(ids(&plan.stolen), ["p-3"], "{:?}", plan.stolen);
}

/// A peer with two slots and tasks of `task_ms`, running the first two of
/// its `n` claims, its record reckoning them to keep it busy `busy_ms`:
/// the record written `record_ms` before `now`, its claims `claims_ms`
/// before (the chaos suite's figures).
fn two_slot_line(
    now: dgrid_worker::time::Timestamp,
    (node, n): (&str, usize),
    (task_ms, busy_ms): (u64, u64),
    (record_ms, claims_ms): (i64, i64),
) -> Vec<(String, Vec<u8>)> {
    let ago = |ms: i64| dgrid_worker::time::format(now - chrono::Duration::milliseconds(ms));
    let task = |i: usize| format!("{}-{i}", &node[..1]);
    let (path, bytes) = busy(node, &[&task(0), &task(1)], task_ms);
    let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    record["busy_ms"] = busy_ms.into();
    record["concurrency"] = 2.into();
    record["last_heartbeat"] = ago(record_ms).into();
    let mut files = vec![(path, serde_json::to_vec(&record).unwrap())];
    for i in 0..n {
        let (p, b) = claim(&task(i), node, "sleep 0.2", serde_json::json!({}));
        let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["claim"]["claimed_at"] = ago(claims_ms).into();
        files.push((p, serde_json::to_vec_pretty(&v).unwrap()));
    }
    files
}

/// An idle node with two slots, its tasks 0.2 s, its round `round`, its
/// syncs `sync_secs`, that has reached the grid for an hour.
fn quick_taker(
    idle: &PlainNode,
    now: dgrid_worker::time::Timestamp,
    round: f64,
    sync_secs: Option<f64>,
) -> SyncRequest<'_> {
    SyncRequest {
        now,
        steal_up_to: 2,
        task_secs: Some(0.203),
        round_secs: Some(round),
        sync_secs,
        reached_since: Some(now - chrono::Duration::hours(1)),
        ..idle.request(2)
    }
}

/// A node writes its record as a sync starts and makes its claims at the
/// plan, after the fetch. Traced in the chaos suite: a peer with two
/// slots and 0.2 s tasks, its record 1.19 s old and its four claims 0.69
/// s, was read as overdue (1.19 > 0.41 + 0.20 + 2 x 0.17) and the end of
/// its line taken over, which it had started 0.4 s before: both ran. Its
/// silence counts from its newest claim: on pace, nothing is taken over;
/// with its claims as old as its record, it is overdue as before.
#[test]
fn a_peer_is_silent_only_since_its_newest_claim() {
    let grid = Grid::new();
    let now = dgrid_worker::time::now();
    let line = |claims_ms| two_slot_line(now, ("quick", 4), (204, 407), (1190, claims_ms));
    grid.commit_files(&line(690), "a peer's claims, made after its record");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = quick_taker(&idle, now, 0.174, None);
    let (_state, repo) = watching_clone(&grid, &req);
    let on_pace = plan_on(&repo, &req);
    assert!(
        on_pace.stolen.is_empty(),
        "claimed 0.69 s ago, it has started them: {:?}",
        on_pace.stolen
    );
    grid.commit_files(&line(1190), "its claims as old as its record");
    let late = plan_on(&repo, &req);
    assert!(!late.stolen.is_empty(), "overdue: its line is taken over");
}

/// A peer's results land a sync after its line ends, and this node reads
/// them at a fetch of its own after that: where nodes race for the ref,
/// a sync is several rounds. Traced in the chaos suite: a peer with two
/// slots and 0.2 s tasks held seven claims, reckoned to keep it busy
/// 0.62 s; it ran them all on pace, and its results, which lost a round,
/// were published 0.44 s after; an idle node, its round 0.17 s, read the
/// peer 1.54 s after its claims, past 0.62 + 0.21 + 2 x 0.17, and ran two
/// of them again. Counted by this node's syncs (0.4 s each), the peer is
/// on pace then; 3 s on, it is overdue.
#[test]
fn a_peer_is_not_overdue_while_its_results_could_be_racing_for_the_ref() {
    let grid = Grid::new();
    let now = dgrid_worker::time::now();
    let peer = |ms| two_slot_line(now, ("raced", 7), (206, 618), (ms, ms));
    grid.commit_files(&peer(1540), "a peer's line, run on pace");
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = |sync_secs| quick_taker(&idle, now, 0.171, sync_secs);
    let (_state, repo) = watching_clone(&grid, &req(Some(0.4)));
    let on_pace = plan_on(&repo, &req(Some(0.4)));
    assert!(
        on_pace.stolen.is_empty(),
        "its results may be racing for the ref: {:?}",
        on_pace.stolen
    );
    let by_rounds = plan_on(&repo, &req(None));
    assert!(
        !by_rounds.stolen.is_empty(),
        "with no sync timed, two rounds: overdue"
    );
    grid.commit_files(&peer(3000), "its line older");
    let late = plan_on(&repo, &req(Some(0.4)));
    assert!(!late.stolen.is_empty(), "overdue: its line is taken over");
}

/// A peer of like pace holds one claim behind the task it runs: an idle
/// node leaves it to the peer, which starts it at that task's end, and
/// counts it among the claims peers have not started, which a `--drain`
/// does not end beside (the peer may yet hand it back, or fall behind
/// and have it taken over: a helper's sweep, four nodes draining eight
/// 20 s tasks, two ended as the other two claimed one each ahead, which
/// each then ran in turn, 60 s against 40).
#[test]
fn a_claim_left_to_a_busy_peer_is_counted_as_not_started() {
    let grid = Grid::new();
    let none = serde_json::json!({});
    grid.commit_files(
        &[
            busy("peer", &["s-0"], 2000),
            claim("s-0", "peer", "sleep 2", none.clone()),
            claim("s-1", "peer", "sleep 2", none),
        ],
        "a peer and the one claim behind its task",
    );
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let req = SyncRequest {
        steal_up_to: 4,
        task_secs: Some(2.0),
        round_secs: Some(0.2),
        ..idle.request(4)
    };
    let (_state, repo) = watching_clone(&grid, &req);
    let report = plan_on(&repo, &req);
    assert!(report.stolen.is_empty(), "{:?}", report.stolen);
    assert_eq!(report.peers_unstarted, 1);
}

/// A claim made for `node` by a peer `ago` seconds ago, not answered.
fn made_for(task: &str, node: &str, ago: i64) -> (String, Vec<u8>) {
    let (path, bytes) = claim(task, node, "sleep 2", serde_json::json!({}));
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["claim"]["claimed_at"] = at(-ago).into();
    v["claim"]["assigned_by"] = "dealer".into();
    v["claim"]["answer_by"] = at(60 - ago).into();
    (path, serde_json::to_vec_pretty(&v).unwrap())
}

/// An idle node whose record takes claims made for it.
fn takes_assigned(node: &str) -> (String, Vec<u8>) {
    let r = NodeRecord {
        takes_assigned: true,
        ..NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Idle, at(-40))
    };
    (format!("nodes/{node}.json"), r.to_bytes())
}

/// A helper's sweep: a node killed while idle was dealt a third of the
/// next backlog, and its peers sat idle beside those claims about 100 s
/// (the minute `answer_by` gives, then the next reap). A node that is well
/// answers within 20 s and a few lost races: 35 s on, "gone"'s three
/// claims are late, and an idle node takes over two (its free slots),
/// the highest first (g-2, then g-0 by name), and marks gone's record as taking no claims made
/// for it (else the next backlog is dealt to it again). "slow"'s, made 5
/// s ago, are left: it may start them at any look. Nothing is taken by
/// a node back at the grid only 10 s ago: gone could not answer while
/// the grid was away either.
#[test]
fn claims_left_unanswered_past_answer_late_are_taken_over_and_their_node_claimed_for_no_more() {
    let grid = Grid::new();
    let mut g2 = made_for("g-2", "gone", 35);
    let mut v: serde_json::Value = serde_json::from_slice(&g2.1).unwrap();
    v["priority"] = 90.into();
    g2.1 = serde_json::to_vec_pretty(&v).unwrap();
    grid.commit_files(
        &[
            takes_assigned("gone"),
            takes_assigned("slow"),
            made_for("g-0", "gone", 35),
            made_for("g-1", "gone", 35),
            g2,
            made_for("s-0", "slow", 5),
            made_for("s-1", "slow", 5),
        ],
        "claims made for two idle peers",
    );
    let mut idle = PlainNode::new("idle");
    idle.record.last_heartbeat = at(0);
    let back = |secs: i64| Some(dgrid_worker::time::now() - chrono::Duration::seconds(secs));
    let req = |reached| SyncRequest {
        take_late_up_to: 2,
        task_secs: Some(2.0),
        round_secs: Some(0.2),
        reached_since: reached,
        ..idle.request(2)
    };
    let (_state, repo) = watching_clone(&grid, &req(back(10)));
    let report = plan_on(&repo, &req(back(10)));
    assert!(
        report.taken_unanswered.is_empty(),
        "{:?}",
        report.taken_unanswered
    );
    assert_eq!(
        report.peers_unstarted, 5,
        "unanswered claims are not started"
    );

    let report = take_over_at(&grid, &req(back(3600)));
    assert_eq!(ids(&report.taken_unanswered), ["g-0", "g-2"]);
    assert_eq!(ids_of(&report.silent), ["gone"]);
    assert_eq!(report.peers_unstarted, 3);
    for task in ["g-0", "g-2"] {
        let c = &grid.json_files("tasks/in_progress")[&format!("{task}.json")]["claim"];
        assert_eq!(c["node_id"], "idle", "{c}");
        assert_eq!(c["taken_from"]["node_id"], "gone", "{c}");
        assert!(c.get("answer_by").is_none(), "{c}");
    }
    assert_eq!(node_of(&grid, "g-1"), "gone");
    assert_eq!(node_of(&grid, "s-0"), "slow");
    let nodes = grid.json_files("nodes");
    assert_eq!(nodes["gone.json"]["takes_assigned"], false);
    assert!(nodes["gone.json"]["unanswered_at"].is_string());
    assert_eq!(nodes["slow.json"]["takes_assigned"], true);
}
