//! Claims made for idle peers (PROTOCOL.md, Assigned claims): one commit
//! claims for the idle nodes that take such claims; each starts its own at
//! its next look, before any push, and answers with its next commit; one
//! that does not answer in time has its claims go back to the queue as the
//! same attempt. Real repositories and real pushes throughout.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::plan::{PlainNode, commit_at};
use crate::common::*;
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
use dgrid_worker::service::sync::SyncRequest;

fn record(node: &str, takes_assigned: bool) -> (String, Vec<u8>) {
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let r = NodeRecord {
        takes_assigned,
        ..NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Idle, now)
    };
    (format!("nodes/{node}.json"), r.to_bytes())
}

/// A node whose record, when it writes one, is fresh.
fn live(node: &str) -> PlainNode {
    let mut n = PlainNode::new(node);
    n.record.last_heartbeat = dgrid_worker::time::format(dgrid_worker::time::now());
    n
}

/// Who the claim files name, and which of them are still unanswered.
fn claims(grid: &Grid) -> Vec<(String, String, bool)> {
    grid.json_files("tasks/in_progress")
        .values()
        .map(|c| {
            (
                c["task_id"].as_str().unwrap().to_owned(),
                c["claim"]["node_id"].as_str().unwrap().to_owned(),
                c["claim"].get("answer_by").is_some(),
            )
        })
        .collect()
}

fn held_by(grid: &Grid, node: &str) -> BTreeSet<Id> {
    claims(grid)
        .into_iter()
        .filter(|(_, n, _)| n == node)
        .map(|(t, _, _)| Id::parse(&t).unwrap())
        .collect()
}

/// Four idle peers: p1 and p2 take claims made for them, p3 (an older
/// worker) does not, and p4 holds one already. Sixteen tasks, one slot
/// each: a share of four (17 tasks not done over five slots). The node
/// claims its four and four each for p1 and p2, in one commit. p1 finds
/// its four at its look and pushes nothing; its next commit answers them.
/// p2 never answers: past `answer_by` its four go back as the same
/// attempt. p4, with no room for the one made for it, gives it back, and
/// p6, stopping, puts back the one made for it.
#[test]
fn claims_made_for_idle_peers_are_started_answered_or_given_back() {
    let grid = Grid::new();
    let mut files = vec![
        record("p1", true),
        record("p2", true),
        record("p3", false),
        record("p4", true),
    ];
    let held = serde_json::json!({
        "task_id": "held", "script": "true", "timeout_seconds": 30,
        "claim": {"node_id": "p4", "claimed_at": dgrid_worker::time::format(dgrid_worker::time::now()),
                  "deadline": "2999-01-01T00:00:00Z", "attempt": 1,
                  "assigned_by": "x", "answer_by": "2999-01-01T00:00:00Z"}
    });
    files.push((
        "tasks/in_progress/held.json".into(),
        held.to_string().into_bytes(),
    ));
    let mut gone = held.clone();
    gone["task_id"] = "gone".into();
    gone["claim"]["node_id"] = "p6".into();
    files.push((
        "tasks/in_progress/gone.json".into(),
        gone.to_string().into_bytes(),
    ));
    files.extend((0..16).map(|i| {
        let body = serde_json::json!({"task_id": format!("t{i:02}"), "script": "sleep 1", "timeout_seconds": 30});
        (format!("tasks/queue/t{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "four idle peers and a backlog");

    // The claim, for itself and for the idle peers that take it.
    let me = live("me");
    let report = commit_at(
        &grid.url(),
        &SyncRequest {
            share_up_to: 16,
            task_secs: Some(1.0),
            assign_within: Some(chrono::Duration::seconds(60)),
            ..me.request(1)
        },
    );
    assert_eq!(report.claimed.len(), 4, "its own share");
    let mut to: Vec<&str> = report.assigned.iter().map(|(_, p)| p.as_str()).collect();
    to.sort();
    assert_eq!(to, ["p1", "p1", "p1", "p1", "p2", "p2", "p2", "p2"]);
    assert_eq!(held_by(&grid, "me").len(), 4);
    assert_eq!(held_by(&grid, "p3").len(), 0, "an older worker: none");
    assert_eq!(held_by(&grid, "p4").len(), 1, "holding already: none");
    for c in grid.json_files("tasks/in_progress").values() {
        if c["claim"]["node_id"] == "p1" {
            assert_eq!(c["claim"]["assigned_by"], "me");
            assert!(
                c["claim"]["answer_by"].as_str().unwrap()
                    > c["claim"]["claimed_at"].as_str().unwrap()
            );
        }
    }
    assert_eq!(grid.queued().len(), 4);
    // `status` says which claims wait for an answer.
    let o = crate::tools_fixture::dgrid(&["status", "--repo", &grid.url()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let p1_line = text.lines().find(|l| l.contains(" on p1 ")).unwrap();
    assert!(
        p1_line.contains("claimed for it by me, not answered yet"),
        "{text}"
    );
    let mine = text.lines().find(|l| l.contains(" on me ")).unwrap();
    assert!(!mine.contains("claimed for it"), "{text}");
    let o = crate::tools_fixture::dgrid(&["status", "--repo", &grid.url(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let by: Vec<&str> = v["running"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["assigned_by"].as_str())
        .collect();
    assert_eq!(by.len(), 10, "8 for p1 and p2, and the two seeded: {by:?}");

    // p1 looks: it finds its four, and pushes nothing.
    let p1 = live("p1");
    let before = claims(&grid);
    let found = commit_at(
        &grid.url(),
        &SyncRequest {
            adopt: 16,
            ..p1.request(1)
        },
    );
    let adopted: BTreeSet<Id> = found
        .adopted
        .iter()
        .map(|c| c.task.task_id.clone())
        .collect();
    assert_eq!(adopted, held_by(&grid, "p1"));
    assert!(found.claimed.is_empty(), "nothing claimed besides");
    assert_eq!(
        claims(&grid),
        before,
        "a look that finds claims pushes nothing"
    );

    // Its next commit answers them: they are its own.
    let answered = commit_at(
        &grid.url(),
        &SyncRequest {
            held: &adopted,
            answer: &adopted,
            ..p1.request(0)
        },
    );
    assert_eq!(answered.answered.len(), 4);
    assert!(answered.lost.is_empty());
    for (task, node, unanswered) in claims(&grid) {
        if node == "p1" {
            assert!(!unanswered, "{task} answered");
        }
    }

    // A minute on, p2 has not answered: its four go back, attempt 1.
    let other = PlainNode::new("other");
    let later = dgrid_worker::time::now() + chrono::Duration::seconds(61);
    let reaped = commit_at(
        &grid.url(),
        &SyncRequest {
            reap: true,
            now: later,
            ..other.request(0)
        },
    );
    let mut back: Vec<&str> = reaped.reaped.iter().map(|(t, _)| t.as_str()).collect();
    back.sort();
    assert_eq!(back.len(), 4, "{:?}", reaped.reaped);
    assert!(
        reaped
            .reaped
            .iter()
            .all(|(_, why)| why.contains("attempt 1") && why.contains("not answered")),
        "{:?}",
        reaped.reaped
    );
    assert_eq!(held_by(&grid, "p2").len(), 0);
    assert_eq!(held_by(&grid, "p1").len(), 4, "answered claims stand");
    assert_eq!(grid.queued().len(), 8);
    assert!(
        grid.queued()
            .values()
            .all(|t| t["attempt"].as_u64().unwrap_or(1) == 1),
        "no attempt spent"
    );

    // p4, busy, reaps the claim made for it that it cannot take.
    let p4 = PlainNode::new("p4");
    let declined = commit_at(
        &grid.url(),
        &SyncRequest {
            reap: true,
            ..p4.request(0)
        },
    );
    assert_eq!(declined.reaped.len(), 1, "{:?}", declined.reaped);
    assert!(declined.reaped[0].1.contains("attempt 1"));
    assert!(declined.reaped[0].1.contains("could not take it"));
    assert_eq!(grid.queued().len(), 9);

    // p6 stops before it looked: its last commit puts back what was
    // claimed for it.
    let mut p6 = live("p6");
    p6.record.status = NodeStatus::Stopped;
    let stopped = commit_at(&grid.url(), &p6.request(0));
    assert_eq!(stopped.requeued, 1);
    assert_eq!(held_by(&grid, "p6").len(), 0);
    let queued = grid.queued();
    let back = queued.values().find(|t| t["task_id"] == "gone").unwrap();
    assert_eq!(back["attempt"].as_u64().unwrap_or(1), 1);
    assert_eq!(grid.queued().len(), 10);
}

/// With no task timed anywhere, the node cannot tell how many slots a
/// drain pays for (500 tasks of a few milliseconds pay for five): it
/// gives each idle peer at most eight tasks a slot, and the peer claims
/// the rest of its share itself once it has timed one. Sixty-four tasks,
/// peers of two slots and one: their shares are 32 and 16, blind 16 and
/// 8. A peer alone gets none: it would find the task as soon at its own
/// look.
#[test]
fn a_blind_claim_gives_idle_peers_eight_tasks_a_slot_and_one_alone_none() {
    let grid = Grid::new();
    let (path, _) = record("p1", true);
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let two_slots = NodeRecord {
        takes_assigned: true,
        concurrency: 2,
        ..NodeRecord::new(Id::parse("p1").unwrap(), NodeStatus::Idle, now)
    };
    let mut files = vec![(path, two_slots.to_bytes())];
    let alone = files.clone();
    files.push(record("p2", true));
    files.extend((0..64).map(|i| {
        let body = serde_json::json!({"task_id": format!("t{i:02}"), "script": "true", "timeout_seconds": 30});
        (format!("tasks/queue/t{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "two idle peers and a backlog");
    let me = live("me");
    let assigned = |grid: &Grid, task_secs: Option<f64>| {
        let report = crate::common::plan::plan_at(
            &grid.url(),
            &SyncRequest {
                share_up_to: 64,
                task_secs,
                assign_within: Some(chrono::Duration::seconds(60)),
                ..me.request(1)
            },
        );
        (report.claimed.len(), report.assigned.len())
    };
    assert_eq!(assigned(&grid, None), (16, 24), "blind: eight a slot");
    assert_eq!(assigned(&grid, Some(1.0)), (16, 48), "timed: their shares");
    let one = Grid::new();
    one.commit_files(&alone, "one idle peer");
    one.commit_files(&files[2..], "a backlog");
    assert_eq!(assigned(&one, Some(1.0)).1, 0, "one peer: none");
}

/// The queue is dealt between the node's own share and its idle peers',
/// not given out in runs: a submission's long tasks, next to each other
/// in the queue's order, go to different nodes. Two long tasks at the
/// head of a backlog of 14 and two idle peers: each long one on a node of
/// its own, the first three tasks on three nodes, and the shares what
/// they were (a node given the head's run held both long tasks and ran
/// them in turn).
#[test]
fn a_claim_for_idle_peers_deals_the_queue_so_neighbours_go_to_different_nodes() {
    let grid = Grid::new();
    let mut files = vec![record("p1", true), record("p2", true)];
    let ids: Vec<String> = ["a-long-0", "a-long-1"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..12).map(|i| format!("t{i:02}")))
        .collect();
    files.extend(ids.iter().map(|id| {
        let body = serde_json::json!({"task_id": id, "script": "true", "timeout_seconds": 30});
        (
            format!("tasks/queue/{id}.json"),
            body.to_string().into_bytes(),
        )
    }));
    grid.commit_files(&files, "two idle peers and a backlog");
    let report = crate::common::plan::plan_at(
        &grid.url(),
        &SyncRequest {
            share_up_to: 64,
            task_secs: Some(1.0),
            assign_within: Some(chrono::Duration::seconds(60)),
            ..live("me").request(1)
        },
    );
    let mut on: std::collections::BTreeMap<String, String> = report
        .assigned
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    for c in &report.claimed {
        on.insert(c.task.task_id.to_string(), "me".to_owned());
    }
    let node_of = |id: &str| on.get(id).cloned().unwrap_or_default();
    assert_ne!(node_of("a-long-0"), node_of("a-long-1"), "{on:?}");
    let head: BTreeSet<String> = ids[..3].iter().map(|id| node_of(id)).collect();
    assert_eq!(head.len(), 3, "the first three on three nodes: {on:?}");
    let count = |n: &str| on.values().filter(|v| *v == n).count();
    let mut peers = [count("p1"), count("p2")];
    peers.sort();
    assert_eq!((count("me"), peers), (5, [4, 5]), "the shares: {on:?}");
}

/// Idle workers with the real binary: the first to claim claims for the
/// others, each starts what was claimed for it, and every task runs once.
#[test]
fn idle_workers_run_what_a_peer_claimed_for_them() {
    let grid = Grid::new();
    let nodes = ["for-a", "for-b", "for-c"];
    let mut workers = idle_fleet(&grid, &nodes);
    for n in nodes {
        assert_eq!(
            grid.json_files("nodes")[&format!("{n}.json")]["takes_assigned"],
            true,
            "a worker with no gate nor limits takes claims made for it"
        );
    }
    let tasks: Vec<(String, String, u64)> = (0..6)
        .map(|i| (format!("s{i}"), "sleep 2".into(), 60))
        .collect();
    grid.submit(&tasks);
    wait_until("all six completed", Duration::from_secs(120), || {
        grid.files("tasks/completed").len() == 6
    });
    let log = String::from_utf8(git(&grid.bare, &["log", "--format=%s", "main"]).stdout).unwrap();
    assert!(
        log.lines().any(|l| l.contains(" for for-")),
        "a claim made for a peer:\n{log}"
    );
    let ran: BTreeSet<String> = grid
        .json_files("tasks/completed")
        .values()
        .map(|r| r["node_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ran.len(), 3, "every node ran some: {ran:?}");
    wait_until("no claim left", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").is_empty()
    });
    for w in workers.iter() {
        w.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for w in workers.iter_mut() {
        assert!(
            w.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            w.log_text()
        );
    }
}

/// A peer that leaves the claims made for it unanswered (dead, with a
/// record that looks fresh for hours) is claimed for no more: the reap
/// that puts its claims back rewrites its record to say it takes none,
/// keeping all else the record says, and the next claim from the backlog
/// leaves it out. Its own next record says it takes them again.
#[test]
fn a_peer_that_does_not_answer_is_claimed_for_no_more_until_it_writes_again() {
    let grid = Grid::new();
    let (p1, p1_bytes) = record("p1", true);
    let mut p1_json: serde_json::Value = serde_json::from_slice(&p1_bytes).unwrap();
    p1_json["a_field_of_a_later_version"] = serde_json::json!({"kept": [1, 2]});
    let mut files = vec![
        (p1, p1_json.to_string().into_bytes()),
        record("p2", true),
        record("p3", true),
    ];
    files.extend((0..40).map(|i| {
        let body = serde_json::json!({"task_id": format!("t{i:02}"), "script": "sleep 1", "timeout_seconds": 30});
        (format!("tasks/queue/t{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "three idle peers and a backlog");
    let me = live("me");
    let claim_at = |now: dgrid_worker::time::Timestamp, held: &BTreeSet<Id>| {
        commit_at(
            &grid.url(),
            &SyncRequest {
                share_up_to: 4,
                task_secs: Some(1.0),
                assign_within: Some(chrono::Duration::seconds(60)),
                held,
                now,
                ..me.request(1)
            },
        )
    };
    let first = claim_at(dgrid_worker::time::now(), &BTreeSet::new());
    let mut to: BTreeSet<&str> = first.assigned.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        to,
        BTreeSet::from(["p1", "p2", "p3"]),
        "{:?}",
        first.assigned
    );

    // p3 answers; p1 and p2 never do. A minute on, a reap puts their
    // claims back and says so in their records.
    let mut p3 = live("p3");
    p3.record.takes_assigned = true;
    let mine3 = held_by(&grid, "p3");
    commit_at(
        &grid.url(),
        &SyncRequest {
            held: &mine3,
            answer: &mine3,
            ..p3.request(0)
        },
    );
    let later = dgrid_worker::time::now() + chrono::Duration::seconds(61);
    let reaped = commit_at(
        &grid.url(),
        &SyncRequest {
            reap: true,
            now: later,
            ..PlainNode::new("other").request(0)
        },
    );
    let mut silent: Vec<&str> = reaped.silent.iter().map(|n| n.as_str()).collect();
    silent.sort();
    assert_eq!(silent, ["p1", "p2"]);
    let nodes = grid.json_files("nodes");
    let p1_now = &nodes["p1.json"];
    assert_eq!(p1_now["takes_assigned"], false);
    assert_eq!(
        p1_now["a_field_of_a_later_version"]["kept"][1], 2,
        "{p1_now}"
    );
    assert_eq!(
        p1_now["last_heartbeat"], p1_json["last_heartbeat"],
        "its heartbeat is its own to write"
    );
    assert_eq!(
        p1_now["unanswered_at"],
        dgrid_worker::time::format(later),
        "{p1_now}"
    );
    assert_eq!(nodes["p3.json"]["takes_assigned"], true, "p3 answered");
    assert!(nodes["p3.json"].get("unanswered_at").is_none());
    let log =
        String::from_utf8(git(&grid.bare, &["log", "-1", "--format=%B", "main"]).stdout).unwrap();
    assert!(
        log.contains("p1 left a claim made for it unanswered: it takes no claims made for it"),
        "{log}"
    );

    // The grid's owner sees it: `status` and the dashboard name the nodes
    // marked, and when, and not the one that answered.
    let o = crate::tools_fixture::dgrid(&["status", "--repo", &grid.url()]);
    let text = String::from_utf8_lossy(&o.stdout);
    let line = |n: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("no line for {n}: {text}"))
            .to_owned()
    };
    for p in ["p1", "p2"] {
        assert!(
            line(p).contains("left a claim made for it unanswered"),
            "{text}"
        );
    }
    assert!(!line("p3").contains("unanswered"), "{text}");
    let o = crate::tools_fixture::dgrid(&["status", "--repo", &grid.url(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let view = |n: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node_id"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(view("p1")["unanswered_at"], p1_now["unanswered_at"], "{v}");
    assert_eq!(view("p1")["takes_assigned"], false);
    assert_eq!(view("p3")["takes_assigned"], true);
    assert!(view("p3").get("unanswered_at").is_none(), "{v}");
    let site = grid.path("site");
    let o = crate::tools_fixture::dgrid(&[
        "dashboard",
        "--repo",
        &grid.url(),
        "--out",
        site.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(site.join("index.html")).unwrap();
    let row = |n: &str| {
        let at = html
            .find(&format!("data-node=\"{n}\""))
            .unwrap_or_else(|| panic!("no row for {n}: {html}"));
        html[at..at + html[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row("p2").contains("class=\"warn unanswered\""), "{html}");
    assert!(!row("p3").contains("unanswered"), "{html}");

    // The `reap` tool, run as the grid's workflow runs it, names nobody now:
    // the claims are back and the records say it already.
    let o = crate::tools_fixture::dgrid(&["reap", "--repo", &grid.url(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["silent"], serde_json::json!([]), "{v}");

    // The next claim from the backlog leaves p1 and p2 out; with p3 alone
    // to claim for, it claims for nobody (a peer alone gains nothing).
    let mine = held_by(&grid, "me");
    let second = claim_at(later + chrono::Duration::seconds(1), &mine);
    assert!(!second.claimed.is_empty(), "{second:?}");
    to = second.assigned.iter().map(|(_, p)| p.as_str()).collect();
    assert!(!to.contains("p1") && !to.contains("p2"), "{to:?}");

    // p1 and p2 come back: their records say they take claims again, and
    // the next claim is made for them.
    for p in ["p1", "p2"] {
        let mut back = live(p);
        back.record.takes_assigned = true;
        commit_at(
            &grid.url(),
            &SyncRequest {
                heartbeat: true,
                now: later + chrono::Duration::seconds(2),
                ..back.request(0)
            },
        );
    }
    let p1_back = &grid.json_files("nodes")["p1.json"];
    assert_eq!(p1_back["takes_assigned"], true);
    assert!(
        p1_back.get("unanswered_at").is_none(),
        "its own write clears it: {p1_back}"
    );
    let mine = held_by(&grid, "me");
    let third = claim_at(later + chrono::Duration::seconds(3), &mine);
    to = third.assigned.iter().map(|(_, p)| p.as_str()).collect();
    assert!(
        to.contains("p1") && to.contains("p2"),
        "{:?} {} queued, claimed {}, second {:?}",
        third.assigned,
        grid.queued().len(),
        third.claimed.len(),
        second.assigned
    );
}

/// A burst of work above what the nodes hold: the first node to see it
/// claims its share, and in the same commit each busy peer's share for
/// it, if that peer holds only lower work in short tasks and takes claims
/// made for it. A peer running a long task, one holding work at the
/// burst's level, and one that takes no such claims get none. A peer's
/// look finds its share, pushes nothing, and starts it before the lower
/// claims it holds.
#[test]
fn a_burst_above_what_busy_peers_hold_is_claimed_for_them_in_one_commit() {
    let grid = Grid::new();
    let busy = |node: &str, holds: u8, task_ms: u64, takes: bool| {
        let now = dgrid_worker::time::format(dgrid_worker::time::now());
        let r = NodeRecord {
            takes_assigned: takes,
            holds_level: Some(holds),
            task_ms: Some(task_ms),
            ..NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Busy, now)
        };
        (format!("nodes/{node}.json"), r.to_bytes())
    };
    grid.commit_files(
        &[
            busy("short1", 10, 200, true),
            busy("short2", 10, 200, true),
            busy("long", 10, 600_000, true),
            busy("level", 90, 200, true),
            busy("older", 10, 200, false),
        ],
        "five busy peers",
    );
    submit_burst(&grid, 12);

    // "me" holds two low claims not started: its look sees the burst.
    let report = look_at_burst(&grid, None);
    // Twelve over six slots: two each.
    assert_eq!(report.claimed.len(), 2, "its own share");
    let mut to: Vec<&str> = report.assigned.iter().map(|(_, p)| p.as_str()).collect();
    to.sort();
    assert_eq!(to, ["short1", "short1", "short2", "short2"]);
    assert_eq!(grid.lane_paths().len(), 6, "the rest left");

    // short1 runs a low task and holds another: its look finds the two
    // made for it and pushes nothing.
    let mut short1 = live("short1");
    short1.record.takes_assigned = true;
    let before = claims(&grid);
    // It has no free slot (its claim waits for the running task), so it
    // takes what is above its lowest claim waiting: a slot's worth a look.
    short1.record.holds_level = Some(10);
    let look = |held: &BTreeSet<Id>| {
        commit_at(
            &grid.url(),
            &SyncRequest {
                adopt_above: 1,
                held,
                ..short1.request(0)
            },
        )
    };
    let found = look(&BTreeSet::new());
    assert_eq!(found.adopted.len(), 1, "a slot's worth at a look");
    assert!(found.adopted[0].task.task_id.as_str().starts_with("high-"));
    assert_eq!(
        claims(&grid),
        before,
        "a look that finds claims pushes nothing"
    );
    let held: BTreeSet<Id> = [found.adopted[0].task.task_id.clone()].into();
    let more = look(&held);
    assert_eq!(more.adopted.len(), 1, "the other at its next look");
    assert_ne!(more.adopted[0].task.task_id, found.adopted[0].task.task_id);

    // Work at or below what it holds is not taken beyond its room: a
    // node with none left leaves it to go back to the queue.
    short1.record.holds_level = Some(90);
    let low = look_below(&grid, &short1);
    assert!(low.adopted.is_empty(), "{:?}", low.adopted);
}

/// What a busy peer holds, for a burst, is read from the claims at the
/// tip: its record lags them. A peer that has just claimed low work (its
/// record written before it held any, and with no task timed) and one that
/// runs low work a peer claimed for it (its record still says idle, its
/// answer not due yet) get their share; one that has left a claim made for
/// it unanswered for longer than a node that is well takes gets none, nor
/// does one whose record says it holds low work when the tip shows it
/// holds only work at the burst's level.
#[test]
fn a_burst_is_claimed_for_peers_by_what_the_tip_shows_they_hold() {
    let grid = Grid::new();
    let now = dgrid_worker::time::now();
    let at = |secs: i64| dgrid_worker::time::format(now + chrono::Duration::seconds(secs));
    let rec = |node: &str, status: NodeStatus, holds: Option<u8>, task_ms: Option<u64>| {
        let r = NodeRecord {
            takes_assigned: true,
            holds_level: holds,
            task_ms,
            ..NodeRecord::new(Id::parse(node).unwrap(), status, at(0))
        };
        (format!("nodes/{node}.json"), r.to_bytes())
    };
    // A claim of `task` (priority `priority`) by `node`, made for it by a
    // peer `made` seconds ago and not answered yet, if `made` is some.
    let claim = |task: &str, node: &str, priority: u8, made: Option<i64>| {
        let mut c = serde_json::json!({
            "task_id": task, "script": "true", "timeout_seconds": 30, "priority": priority,
            "claim": {"node_id": node, "claimed_at": at(-5), "deadline": at(600), "attempt": 1},
        });
        if let Some(made) = made {
            c["claim"]["assigned_by"] = "elsewhere".into();
            c["claim"]["answer_by"] = at(60 - made).into();
        }
        (
            format!("tasks/in_progress/{task}.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
    };
    grid.commit_files(
        &[
            rec("fresh", NodeStatus::Busy, None, None),
            claim("low-f1", "fresh", 10, None),
            claim("low-f2", "fresh", 10, None),
            rec("adopting", NodeStatus::Idle, None, None),
            claim("low-a1", "adopting", 10, Some(5)),
            claim("low-a2", "adopting", 10, Some(5)),
            rec("late", NodeStatus::Busy, Some(10), Some(200)),
            claim("low-l1", "late", 10, Some(40)),
            rec("stale", NodeStatus::Busy, Some(10), Some(200)),
            claim("mid-s1", "stale", 90, None),
        ],
        "four busy peers, as the tip shows them",
    );
    submit_burst(&grid, 10);

    let report = look_at_burst(&grid, Some(0.2));
    // Ten over five slots: two each.
    assert_eq!(report.claimed.len(), 2, "its own share");
    let mut to: Vec<&str> = report.assigned.iter().map(|(_, p)| p.as_str()).collect();
    to.sort();
    assert_eq!(to, ["adopting", "adopting", "fresh", "fresh"]);
}

/// `n` tasks of priority 90 (`high-NN`), submitted in one push.
fn submit_burst(grid: &Grid, n: usize) {
    let burst: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"task_id": format!("high-{i:02}"), "script": "true", "timeout_seconds": 30, "priority": 90}))
        .collect();
    let file = grid.path("burst.json");
    std::fs::write(&file, serde_json::Value::Array(burst).to_string()).unwrap();
    let o = crate::tools_fixture::dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--task-file",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The look of node "me", holding two claims of priority 10 not started
/// (its tasks timed at `task_secs`), that sees a burst above them.
fn look_at_burst(grid: &Grid, task_secs: Option<f64>) -> dgrid_worker::service::sync::SyncReport {
    commit_at(
        &grid.url(),
        &SyncRequest {
            survey: true,
            preempt_below: Some(10),
            preempt_up_to: 2,
            task_secs,
            assign_within: Some(chrono::Duration::seconds(60)),
            ..live("me").request(0)
        },
    )
}

/// A look of a node holding work at level 90 at the lowest: the claims
/// made for it (level 90) are not above that.
fn look_below(grid: &Grid, node: &PlainNode) -> dgrid_worker::service::sync::SyncReport {
    commit_at(
        &grid.url(),
        &SyncRequest {
            adopt_above: 1,
            ..node.request(0)
        },
    )
}

/// A claim made for this node that was reaped and claimed again before
/// it answered is lost: a look that leaves its results for the next
/// commit (a task of its batch still runs) still says so, and pushes
/// nothing, so that the node stops running it now and not a result delay
/// later.
#[test]
fn a_look_that_defers_its_results_still_finds_a_claim_made_for_it_lost() {
    let grid = Grid::new();
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let taken = serde_json::json!({
        "task_id": "gone", "script": "true", "timeout_seconds": 30,
        "claim": {"node_id": "other", "claimed_at": now,
                  "deadline": "2999-01-01T00:00:00Z", "attempt": 2}
    });
    grid.commit_files(
        &[
            record("p1", true),
            (
                "tasks/in_progress/gone.json".into(),
                taken.to_string().into_bytes(),
            ),
        ],
        "a claim made for p1, reaped and claimed again by another node",
    );
    let p1 = live("p1");
    let started: BTreeSet<Id> = [Id::parse("gone").unwrap()].into();
    let tip = grid.tip_of("main");
    let look = commit_at(
        &grid.url(),
        &SyncRequest {
            held: &started,
            answer: &started,
            survey: true,
            defer_results: true,
            heartbeat: false,
            ..p1.request(0)
        },
    );
    assert_eq!(look.lost, [Id::parse("gone").unwrap()]);
    assert_eq!(grid.tip_of("main"), tip, "the look pushed a commit");
}

/// A helper's sweep: a node killed while idle, its record still fresh,
/// was dealt a share of the next backlog, and its peers sat idle beside
/// those claims about 100 s (the minute `answer_by` gives, then the next
/// reap, at most once a minute). An idle peer takes them over once they
/// are late (`ANSWER_LATE`, 30 s), and marks the dead node's record as
/// taking no claims made for it.
#[test]
fn claims_dealt_to_a_node_killed_while_idle_are_taken_over_once_late() {
    let grid = Grid::new();
    let nodes = ["live-a", "dead-b", "live-c"];
    let mut workers = idle_fleet(&grid, &nodes);
    workers[1].signal(nix::sys::signal::Signal::SIGKILL);
    workers[1].wait_exit(Duration::from_secs(30));
    let tasks: Vec<(String, String, u64)> = (0..12)
        .map(|i| (format!("k{i:02}"), "sleep 1".into(), 60))
        .collect();
    let pushed = std::time::Instant::now();
    grid.submit(&tasks);
    wait_until("all twelve completed", Duration::from_secs(240), || {
        grid.files("tasks/completed").len() == tasks.len()
    });
    eprintln!(
        "all done {:.1} s after the push",
        pushed.elapsed().as_secs_f64()
    );
    let log = String::from_utf8(git(&grid.bare, &["log", "--format=%B", "main"]).stdout).unwrap();
    assert!(
        log.split([',', '\n'])
            .any(|i| i.trim().ends_with(" for dead-b")),
        "a claim was made for the dead node:\n{log}"
    );
    let said = |w: &WorkerProc| {
        w.log_text()
            .contains("took over a claim made for a peer that has not answered it")
    };
    assert!(
        said(&workers[0]) || said(&workers[2]),
        "taken over, not left to the reap:\n{}\n{}",
        workers[0].log_text(),
        workers[2].log_text()
    );
    let record = &grid.json_files("nodes")["dead-b.json"];
    assert_eq!(record["takes_assigned"], false, "{record}");
    for i in [0, 2] {
        workers[i].signal(nix::sys::signal::Signal::SIGTERM);
        assert!(
            workers[i].wait_exit(Duration::from_secs(60)).success(),
            "{}",
            workers[i].log_text()
        );
    }
}

/// A hostile sweep: a record pushed by hand for a node that does not
/// exist ("ph", busy with nothing running, taking claims made for it)
/// drew a share of a backlog of short tasks, and two `--drain` workers
/// ended beside those claims, unanswered (39 of 40 tasks left claimed, to
/// the reap a minute on): the count of what peers hold and have not
/// started read only lines of long tasks. The drain waits for them, and
/// takes them over once late.
#[test]
fn a_drain_does_not_end_beside_claims_made_for_a_forged_record() {
    let grid = Grid::new();
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let forged = serde_json::json!({
        "node_id": "ph", "status": "busy", "last_heartbeat": now, "started_at": now,
        "engine": "shell", "concurrency": 64, "running": [], "takes_assigned": true,
        "labels": ["arch=x86_64", "arch=amd64", "arch=aarch64", "os=linux", "engine=shell"],
    });
    let mut files = vec![("nodes/ph.json".to_string(), forged.to_string().into_bytes())];
    files.extend((0..24).map(|i| {
        let body = serde_json::json!({"task_id": format!("m{i:02}"), "script": "sleep 0.3", "timeout_seconds": 30});
        (format!("tasks/queue/m{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "a forged record and a backlog");
    let mut workers: Vec<WorkerProc> = ["d1", "d2"]
        .iter()
        .map(|n| spawn_worker(&grid, &WorkerSpec::new(&grid, n)))
        .collect();
    for w in workers.iter_mut() {
        assert!(
            w.wait_exit(Duration::from_secs(240)).success(),
            "{}",
            w.log_text()
        );
    }
    let left = grid.files("tasks/in_progress");
    assert!(left.is_empty(), "the drains ended beside {:?}", left.keys());
    assert_eq!(grid.files("tasks/completed").len(), 24);
}

/// A helper's sweep at the default poll interval: twelve 20 s tasks
/// pushed to eight idle one-slot nodes went two each to six of them (each
/// share rounded up, dealt whole in turn), and two nodes sat idle 66 s
/// while the others ran their second. Every idle peer gets a task before
/// any gets a second: nine tasks, this node and six peers, a task each
/// and two seconds.
#[test]
fn a_backlog_smaller_than_twice_the_slots_starts_every_idle_peer() {
    let grid = Grid::new();
    let peers: Vec<String> = (1..=6).map(|i| format!("p{i}")).collect();
    let mut files: Vec<(String, Vec<u8>)> = peers.iter().map(|p| record(p, true)).collect();
    files.extend((0..9).map(|i| {
        let body = serde_json::json!({"task_id": format!("t{i:02}"), "script": "sleep 20", "timeout_seconds": 60});
        (format!("tasks/queue/t{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "six idle peers and nine long tasks");
    let report = crate::common::plan::plan_at(
        &grid.url(),
        &SyncRequest {
            share_up_to: 9,
            task_secs: Some(20.0),
            round_secs: Some(0.2),
            assign_within: Some(chrono::Duration::seconds(60)),
            ..live("me").request(1)
        },
    );
    let mut per_peer = std::collections::BTreeMap::new();
    for (_, p) in &report.assigned {
        *per_peer.entry(p.to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_peer.len(), 6, "every idle peer gets one: {per_peer:?}");
    assert!(report.claimed.len() <= 2, "{:?}", report.claimed.len());
    assert_eq!(report.claimed.len() + report.assigned.len(), 9);
}
