use super::*;
use crate::grid::{ResultStatus, TaskResult};

fn entry(id: &str, finish: Finish) -> OutboxEntry {
    OutboxEntry {
        task_id: Id::parse(id).unwrap(),
        attempt: 1,
        claimed_at: "2026-01-01T00:00:00.000Z".into(),
        finish,
        ran: None,
    }
}

fn result(id: &str) -> TaskResult {
    TaskResult {
        task_id: id.into(),
        node_id: Id::parse("n1").unwrap(),
        exit_code: Some(0),
        stdout: "out \"quoted\"\n".into(),
        stderr: String::new(),
        timestamp: "2026-01-01T00:00:01.000Z".into(),
        status: ResultStatus::Completed,
        started_at: Some("2026-01-01T00:00:00.500Z".into()),
        duration_ms: Some(500),
        attempt: 1,
        truncated: false,
        error: None,
    }
}

#[test]
fn results_and_requeues_are_published_not_retries() {
    let me = Id::parse("n1").unwrap();
    let outbox = [
        entry(
            "a",
            Finish::Result {
                result: result("a"),
                signed: None,
            },
        ),
        entry("b", Finish::requeue("going back".into())),
        entry(
            "c",
            Finish::Retry {
                reason: "the engine failed".into(),
            },
        ),
    ];
    let p = to_publish(&me, &outbox, true).expect("entries to publish");
    assert_eq!(p.node, "n1");
    let paths: Vec<&[u8]> = p.edits.keys().map(Vec::as_slice).collect();
    assert_eq!(
        paths,
        [b"results/a.json".as_slice(), b"results/b.json".as_slice()]
    );
    assert!(publishes(&p, &Id::parse("b").unwrap()));
    assert!(!publishes(&p, &Id::parse("c").unwrap()));
    assert!(to_publish(&me, &outbox[2..], true).is_none());
    // Tasks shorter than a round: results alone.
    let p = to_publish(&me, &outbox, false).expect("a result to publish");
    let paths: Vec<&[u8]> = p.edits.keys().map(Vec::as_slice).collect();
    assert_eq!(paths, [b"results/a.json".as_slice()]);
    assert!(to_publish(&me, &outbox[1..], false).is_none());
}

#[test]
fn a_publication_holds_a_whole_batch_up_to_its_byte_bound() {
    let me = Id::parse("n1").unwrap();
    let done = |id: String, out: usize| {
        let mut r = result(&id);
        r.stdout = "x".repeat(out);
        entry(
            &id,
            Finish::Result {
                result: r,
                signed: None,
            },
        )
    };
    // A batch of short tasks' results: all of them, in one.
    let batch: Vec<_> = (0..300).map(|i| done(format!("t{i:03}"), 10)).collect();
    let p = to_publish(&me, &batch, false).unwrap();
    assert_eq!(p.edits.len(), 300);
    assert!(publishes_all(&p, &batch));
    // More than `MAX_ENTRIES`: the oldest, the rest the next time.
    let many: Vec<_> = (0..MAX_ENTRIES + 5)
        .map(|i| done(format!("t{i:04}"), 10))
        .collect();
    let p = to_publish(&me, &many, false).unwrap();
    assert_eq!(p.edits.len(), MAX_ENTRIES);
    assert!(publishes(&p, &many[0].task_id));
    assert!(!publishes(&p, &many[MAX_ENTRIES].task_id));
    assert!(!publishes_all(&p, &many));
    // Large results: as many as fit the byte bound, oldest first.
    let large: Vec<_> = (0..5).map(|i| done(format!("l{i}"), 300_000)).collect();
    let p = to_publish(&me, &large, false).unwrap();
    assert_eq!(p.edits.len(), 3);
    assert!(publishes(&p, &large[2].task_id) && !publishes(&p, &large[3].task_id));
    assert!(!publishes_all(&p, &large));
    // One past the bound on its own still goes, alone.
    let huge = [done("h".into(), 1_500_000), done("i".into(), 10)];
    let p = to_publish(&me, &huge, false).unwrap();
    assert_eq!(p.edits.len(), 1);
    assert!(publishes(&p, &huge[0].task_id));
}

#[test]
fn a_published_result_reads_back_to_the_same_file() {
    // The node takes a peer's delivery as its own only if the file is
    // byte for byte the one it would have written.
    let e = entry(
        "a",
        Finish::Result {
            result: result("a"),
            signed: None,
        },
    );
    let p = to_publish(&Id::parse("n1").unwrap(), std::slice::from_ref(&e), false).unwrap();
    let Some(Edit::Put(json)) = p.edits.values().next() else {
        panic!("a put");
    };
    let back: OutboxEntry = serde_json::from_slice(json).unwrap();
    let (Finish::Result { result: a, .. }, Finish::Result { result: b, .. }) =
        (&e.finish, &back.finish)
    else {
        panic!("results");
    };
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(back, e);
}

#[test]
fn a_standing_rides_beside_the_results_and_counts_as_none_of_them() {
    let me = Id::parse("n1").unwrap();
    let outbox = [entry(
        "a",
        Finish::Result {
            result: result("a"),
            signed: None,
        },
    )];
    let record = crate::grid::node::NodeRecord::new(
        me.clone(),
        crate::grid::NodeStatus::Busy,
        "2026-01-01T00:00:02.000Z".into(),
    );
    let b = Id::parse("b").unwrap();
    let standing = Standing {
        answers: vec![(&b, "2026-01-01T00:00:00.000Z")],
        record: record.to_bytes(),
    };
    let p = with_standing(to_publish(&me, &outbox, false), &me, &standing);
    let names: Vec<String> = p
        .edits
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["answers/b.json", "record.json", "results/a.json"]);
    assert!(
        publishes_all(&p, &outbox),
        "the answer and record are no results"
    );
    let Edit::Put(answer) = &p.edits[b"answers/b.json".as_slice()] else {
        panic!("an answer is written");
    };
    let answer: serde_json::Value = serde_json::from_slice(answer).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"task_id": "b", "claimed_at": "2026-01-01T00:00:00.000Z"})
    );
    // A standing alone, with no results: a publication all the same.
    let alone = with_standing(None, &me, &standing);
    assert_eq!(alone.edits.len(), 2);
    assert!(publishes_all(&alone, &[]));
}
