//! A starved node's standing (its answers and record), published beside its
//! results and carried by a peer's commit (PROTOCOL.md, Published results):
//! real repositories, real pushes.

use crate::common::plan::{PlainNode, clone_of, heartbeat, publish_at};
use crate::common::*;
use dgrid_worker::git::{Edit, Edits, Txn};
use dgrid_worker::grid::node::{NodeRecord, NodeStatus};
use dgrid_worker::grid::{Id, layout};
use dgrid_worker::service::sync::{self, Standing};

const AT: &str = "2026-01-01T00:00:00.000Z";

/// A claim `by` made for `node` at `AT`, not answered yet.
fn claim_for(task: &str, node: &str, by: &str) -> (String, Vec<u8>) {
    let body = serde_json::json!({
        "task_id": task, "script": "true", "timeout_seconds": 30,
        "claim": {"node_id": node, "claimed_at": AT,
                  "deadline": "2999-01-01T00:00:00Z", "attempt": 1,
                  "assigned_by": by, "answer_by": "2999-01-01T00:00:00Z"}
    });
    (
        format!("tasks/in_progress/{task}.json"),
        body.to_string().into_bytes(),
    )
}

fn record(node: &str, at: chrono::DateTime<chrono::Utc>, running: &[&str]) -> NodeRecord {
    let mut r = NodeRecord::new(
        Id::parse(node).unwrap(),
        NodeStatus::Busy,
        dgrid_worker::time::format(at),
    );
    r.running = running.iter().map(|s| s.to_string()).collect();
    r.task_ms = Some(2600);
    r
}

/// `node`'s standing as it publishes it: answers (task, moment made) and
/// a record, no results.
fn standing(node: &str, answers: &[(&str, &str)], r: &NodeRecord) -> Edits {
    let ids: Vec<Id> = answers.iter().map(|(t, _)| Id::parse(t).unwrap()).collect();
    let s = Standing {
        answers: ids
            .iter()
            .zip(answers)
            .map(|(id, (_, at))| (id, *at))
            .collect(),
        record: r.to_bytes(),
    };
    sync::with_standing(None, &Id::parse(node).unwrap(), &s).edits
}

fn claim_at_tip(grid: &Grid, task: &str) -> serde_json::Value {
    let files = grid.files("tasks/in_progress");
    serde_json::from_slice(&files[&format!("{task}.json")]).unwrap()
}

fn record_at_tip(grid: &Grid, node: &str) -> NodeRecord {
    NodeRecord::parse(&grid.files("nodes")[&format!("{node}.json")]).unwrap()
}

/// b, whose pushes keep losing, runs b1 and b2, which c made for it, and
/// publishes its answer to b1 and its record. a's heartbeat carries both:
/// the claim of b1 is b's own (answered), and b's record at the tip is
/// the one it published. What is not b's to answer or write stays as it
/// was: an answer naming another moment than the claim's, one for a claim
/// of c's, a record naming c, an older record than the tip's, and one
/// from far past a's clock.
#[test]
fn a_starved_nodes_answers_and_record_ride_a_peers_commit() {
    let grid = Grid::new();
    let now = chrono::Utc::now();
    let old = record("b", now - chrono::Duration::seconds(30), &[]);
    grid.commit_files(
        &[
            claim_for("b1", "b", "c"),
            claim_for("b2", "b", "c"),
            claim_for("c1", "c", "a"),
            (layout::node_file(&Id::parse("b").unwrap()), old.to_bytes()),
        ],
        "claims made for b and c; b's record from its registration",
    );
    let a = PlainNode::new("a");
    let (_state, repo) = clone_of(&grid.url());
    // a learns at one tip who holds claims; its next fetch brings what
    // they published.
    let tip = repo.fetch().unwrap();
    sync::plan(&Txn { repo: &repo, tip }, &a.request(0)).unwrap();

    // What is not b's to answer or write.
    let named_c = record("c", now, &["b1"]);
    let mut edits = standing(
        "b",
        &[("b2", "2026-01-01T00:00:09.000Z"), ("c1", AT)],
        &named_c,
    );
    edits.insert(
        b"answers/b3.json".to_vec(),
        Edit::Put(b"{ not json".to_vec()),
    );
    publish_at(&grid.url(), "b", &edits);
    let report = heartbeat(&repo, &a);
    assert!(
        report.carried_standing.is_empty(),
        "{:?}",
        report.carried_standing
    );
    assert_eq!(record_at_tip(&grid, "b"), old);
    for task in ["b1", "b2", "c1"] {
        assert!(
            claim_at_tip(&grid, task)["claim"]
                .get("answer_by")
                .is_some(),
            "{task} unanswered still"
        );
    }

    // b's own answer to b1, and its record now.
    let fresh = record("b", now, &["b1"]);
    publish_at(&grid.url(), "b", &standing("b", &[("b1", AT)], &fresh));
    let report = heartbeat(&repo, &a);
    assert_eq!(report.carried_standing, [Id::parse("b").unwrap()]);
    assert_eq!(record_at_tip(&grid, "b"), fresh);
    let b1 = claim_at_tip(&grid, "b1");
    assert_eq!(b1["claim"]["node_id"], "b");
    assert_eq!(b1["claim"]["claimed_at"], AT);
    assert!(b1["claim"].get("answer_by").is_none(), "{b1}");
    assert!(b1["claim"].get("assigned_by").is_none(), "{b1}");
    assert!(
        claim_at_tip(&grid, "b2")["claim"]
            .get("answer_by")
            .is_some()
    );
    // Carried once: the next commit finds nothing more to carry.
    assert!(heartbeat(&repo, &a).carried_standing.is_empty());

    // An older record than the tip's, and one from the future, stay out.
    for at in [
        now - chrono::Duration::seconds(10),
        now + chrono::Duration::minutes(10),
    ] {
        let r = record("b", at, &["b2"]);
        publish_at(&grid.url(), "b", &standing("b", &[], &r));
        let report = heartbeat(&repo, &a);
        assert!(report.carried_standing.is_empty(), "{at}");
        assert_eq!(record_at_tip(&grid, "b"), fresh, "{at}");
    }
}
