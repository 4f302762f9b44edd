//! Published results (PROTOCOL.md, Published results): a node whose push
//! loses a round publishes its results on a branch of its own; the next
//! commit a peer makes carries those whose claims are still that node's,
//! and the node takes them as delivered. Whatever else such a branch holds
//! is left where it is. Real repositories and real pushes throughout.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::plan::{PlainNode, clone_of, commit_at, heartbeat, publish_at};
use crate::common::*;
use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
use dgrid_worker::git::{Edit, Edits, Plan, Txn, TxnOutcome};
use dgrid_worker::grid::{Id, ResultStatus, TaskResult, layout};
use dgrid_worker::service::outbox::{Finish, OutboxEntry};
use dgrid_worker::service::sync::{self, SyncRequest};

const AT: &str = "2026-01-01T00:00:00.000Z";

fn claim(task: &str, node: &str, claimed_at: &str) -> (String, Vec<u8>) {
    let body = serde_json::json!({
        "task_id": task, "script": "true", "timeout_seconds": 30,
        "claim": {"node_id": node, "claimed_at": claimed_at,
                  "deadline": "2999-01-01T00:00:00Z", "attempt": 1}
    });
    (
        format!("tasks/in_progress/{task}.json"),
        body.to_string().into_bytes(),
    )
}

/// A claim `by` made for `node`, not answered yet.
fn claim_for(task: &str, node: &str, by: &str) -> (String, Vec<u8>) {
    let (path, bytes) = claim(task, node, AT);
    let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    body["claim"]["assigned_by"] = by.into();
    body["claim"]["answer_by"] = "2999-01-01T00:00:00Z".into();
    (path, body.to_string().into_bytes())
}

fn done(task: &str, node: &str) -> OutboxEntry {
    OutboxEntry {
        task_id: Id::parse(task).unwrap(),
        attempt: 1,
        claimed_at: AT.into(),
        finish: Finish::Result {
            result: TaskResult {
                task_id: task.into(),
                node_id: Id::parse(node).unwrap(),
                exit_code: Some(0),
                stdout: format!("{task} ran on {node}\n"),
                stderr: String::new(),
                timestamp: "2026-01-01T00:00:02.000Z".into(),
                status: ResultStatus::Completed,
                started_at: Some("2026-01-01T00:00:01.000Z".into()),
                duration_ms: Some(1000),
                attempt: 1,
                truncated: false,
                error: None,
            },
            signed: None,
        },
        ran: None,
    }
}

fn put(edits: &mut Edits, name: &str, bytes: Vec<u8>) {
    edits.insert(format!("results/{name}").into_bytes(), Edit::Put(bytes));
}

fn file_of(e: &OutboxEntry) -> Vec<u8> {
    match &e.finish {
        Finish::Result { result, .. } => result.to_bytes(),
        _ => unreachable!("results only"),
    }
}

/// b published four entries; two are for claims that are still its own
/// (one c made for it, which b ran before answering). The other two (a
/// claim of c's, and a claim of b's made at another moment) stay where
/// they are, as do the entries that are not results at all: one that is
/// not JSON, one naming another task than its file, one too big to read.
/// a's heartbeat carries b's two; b, syncing its outbox after, finds them
/// delivered (the claim made for it answered by its result, not lost) and
/// pushes nothing, and each has one result.
#[test]
fn a_peer_carries_published_results_and_their_node_takes_them_as_delivered() {
    let grid = Grid::new();
    grid.commit_files(
        &[
            claim("b1", "b", AT),
            claim_for("b2", "b", "c"),
            claim("c1", "c", AT),
            claim("again", "b", "2026-01-01T00:05:00.000Z"),
        ],
        "claims of b and c",
    );
    let mine = [done("b1", "b"), done("b2", "b")];
    let mut edits = sync::to_publish(&Id::parse("b").unwrap(), &mine, false)
        .unwrap()
        .edits;
    for (name, entry) in [
        ("c1.json", done("c1", "b")),
        ("again.json", done("again", "b")),
    ] {
        put(&mut edits, name, serde_json::to_vec(&entry).unwrap());
    }
    put(&mut edits, "junk.json", b"{ not json".to_vec());
    put(
        &mut edits,
        "other.json",
        serde_json::to_vec(&done("b1", "b")).unwrap(),
    );
    put(&mut edits, "huge.json", vec![b' '; 3 << 20]);
    publish_at(&grid.url(), "b", &edits);
    assert_eq!(grid.files_on("outbox/b", "results").len(), 7);
    // z holds no claim: what it publishes is not even fetched.
    publish_at(&grid.url(), "z", &edits);

    // a learns at one tip who holds claims, and its next fetch brings
    // what they published: its heartbeat carries b's two.
    let a = PlainNode::new("a");
    let (_state, repo) = clone_of(&grid.url());
    let tip = repo.fetch().unwrap();
    let first = sync::plan(&Txn { repo: &repo, tip }, &a.request(0)).unwrap();
    assert!(first.value.carried.is_empty(), "nothing watched yet");
    let report = heartbeat(&repo, &a);
    let fetched = repo.published_tips(&["b", "z"]).unwrap();
    assert!(fetched[0].is_some() && fetched[1].is_none(), "{fetched:?}");
    let mut carried: Vec<(String, String)> = report
        .carried
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    carried.sort();
    assert_eq!(
        carried,
        [("b1".into(), "b".into()), ("b2".into(), "b".into())]
    );
    let completed = grid.files("tasks/completed");
    for e in &mine {
        let name = layout::result_file(true, &Id::parse("b").unwrap(), e.task_id.as_str());
        let name = name.rsplit('/').next().unwrap();
        assert_eq!(completed.get(name), Some(&file_of(e)), "{name}");
    }
    assert_eq!(completed.len(), 2, "{completed:?}");
    let left: Vec<String> = grid.files("tasks/in_progress").into_keys().collect();
    assert_eq!(left, ["again.json", "c1.json"]);

    // b's own sync: both landed already, as it would have written them.
    let b = PlainNode::new("b");
    let unanswered = std::collections::BTreeSet::from([Id::parse("b2").unwrap()]);
    let report = commit_at(
        &grid.url(),
        &SyncRequest {
            outbox: &mine,
            heartbeat: false,
            answer: &unanswered,
            ..b.request(0)
        },
    );
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert_eq!(report.answered, [Id::parse("b2").unwrap()]);
    let mut landed: Vec<String> = report.landed.iter().map(Id::to_string).collect();
    landed.sort();
    assert_eq!(landed, ["b1", "b2"]);
    assert!(report.superseded.is_empty(), "{:?}", report.superseded);
    assert_eq!(grid.files("tasks/completed").len(), 2, "one result each");
}

/// A push that loses its round publishes the outbox before trying again;
/// one that wins at once publishes nothing.
#[test]
fn a_push_that_loses_publishes_the_outbox_first() {
    let grid = Grid::new();
    let (_state, repo) = clone_of(&grid.url());
    let outbox = [done("t1", "n1")];
    let policy = || {
        TxnPolicy::default()
            .publish(sync::to_publish(&Id::parse("n1").unwrap(), &outbox, false).unwrap())
    };
    let who = Identity::for_node("n1");
    let change = |message: &str| {
        let mut edits = Edits::new();
        edits.insert(
            format!("notes/{message}").into_bytes(),
            Edit::Put(b"x".to_vec()),
        );
        edits
    };
    // Won at once: nothing published.
    let outcome = txn::run(&repo, &who, &policy(), |_| {
        Ok(Plan {
            edits: change("first"),
            message: "first".into(),
            value: (),
        })
    })
    .unwrap();
    assert!(matches!(
        outcome,
        TxnOutcome::Committed { rejections: 0, .. }
    ));
    assert!(grid.tip_of("outbox/n1").is_none());

    // Another writer lands between this fetch and this push.
    let rounds = Cell::new(0);
    let outcome = txn::run(&repo, &who, &policy(), |_| {
        rounds.set(rounds.get() + 1);
        if rounds.get() == 1 {
            grid.commit_files(&[("notes/other".into(), b"y".to_vec())], "a peer lands");
        }
        Ok(Plan {
            edits: change("second"),
            message: "second".into(),
            value: (),
        })
    })
    .unwrap();
    assert!(matches!(
        outcome,
        TxnOutcome::Committed { rejections: 1, .. }
    ));
    let published = grid.files_on("outbox/n1", "results");
    let entry: OutboxEntry = serde_json::from_slice(&published["t1.json"]).unwrap();
    assert_eq!(entry, outbox[0]);
}

/// A batch of short tasks' results (here 300, more than a round of the
/// old bound of 64) is published whole and rides one peer's commit: the
/// node need not push any of them itself.
#[test]
fn a_batch_of_results_rides_one_peers_commit() {
    let grid = Grid::new();
    let ids: Vec<String> = (0..300).map(|i| format!("s{i:03}")).collect();
    let claims: Vec<_> = ids.iter().map(|t| claim(t, "b", AT)).collect();
    grid.commit_files(&claims, "a batch claimed by b");
    let mine: Vec<OutboxEntry> = ids.iter().map(|t| done(t, "b")).collect();
    let published = sync::to_publish(&Id::parse("b").unwrap(), &mine, false).unwrap();
    assert!(sync::publishes_all(&published, &mine));
    publish_at(&grid.url(), "b", &published.edits);

    let a = PlainNode::new("a");
    let (_state, repo) = clone_of(&grid.url());
    assert!(
        heartbeat(&repo, &a).carried.is_empty(),
        "b's outbox not watched yet"
    );
    let before = grid.commit_count();
    let report = heartbeat(&repo, &a);
    assert_eq!(report.carried.len(), 300);
    assert_eq!(grid.commit_count(), before + 1, "one commit");
    let completed = grid.files("tasks/completed");
    assert_eq!(completed.len(), 300);
    for e in &mine {
        let name = layout::result_file(true, &Id::parse("b").unwrap(), e.task_id.as_str());
        let name = name.rsplit('/').next().unwrap();
        assert_eq!(completed.get(name), Some(&file_of(e)), "{name}");
    }
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// A node with only its last results to deliver, while a peer holding
/// claims is at work, publishes them and plans again a look later,
/// leaving the push to the peer whose commit carries them (`txn::Defer`):
/// nothing of its own reaches `main`. With nobody at work it pushes at
/// once, publishing nothing; with a peer at work past `until`, it pushes
/// after all.
#[test]
fn a_last_delivery_waits_for_a_peer_at_work_to_carry_it() {
    let outbox = [done("t1", "n1")];
    let who = Identity::for_node("n1");
    let policy = |at_work: &Arc<AtomicBool>, until: Duration| {
        TxnPolicy::default()
            .publish(sync::to_publish(&Id::parse("n1").unwrap(), &outbox, false).unwrap())
            .defer(txn::Defer {
                peers_at_work: at_work.clone(),
                step: Duration::from_millis(20),
                until,
            })
    };
    let mine = || Plan {
        edits: [(b"notes/mine".to_vec(), Edit::Put(b"x".to_vec()))]
            .into_iter()
            .collect(),
        message: "mine".into(),
        value: (),
    };

    // A peer at work: published, then the peer's commit carried it.
    let grid = Grid::new();
    let start = grid.tip_of("main");
    let (_state, repo) = clone_of(&grid.url());
    let at_work = Arc::new(AtomicBool::new(true));
    let plans = Cell::new(0);
    let outcome = txn::run(
        &repo,
        &who,
        &policy(&at_work, Duration::from_secs(600)),
        |_| {
            plans.set(plans.get() + 1);
            if plans.get() == 1 {
                return Ok(mine());
            }
            assert!(grid.tip_of("outbox/n1").is_some(), "published first");
            assert_eq!(grid.tip_of("main"), start, "nothing pushed to main");
            at_work.store(false, Ordering::SeqCst);
            Ok(Plan {
                edits: Edits::new(),
                message: String::new(),
                value: (),
            })
        },
    )
    .unwrap();
    assert!(matches!(
        outcome,
        TxnOutcome::Unchanged { rejections: 0, .. }
    ));
    assert_eq!(plans.get(), 2);
    assert_eq!(grid.tip_of("main"), start);
    let published = grid.files_on("outbox/n1", "results");
    let entry: OutboxEntry = serde_json::from_slice(&published["t1.json"]).unwrap();
    assert_eq!(entry, outbox[0]);

    // Nobody at work: pushed at once, nothing published.
    let grid = Grid::new();
    let (_state, repo) = clone_of(&grid.url());
    let nobody = Arc::new(AtomicBool::new(false));
    let outcome = txn::run(
        &repo,
        &who,
        &policy(&nobody, Duration::from_secs(600)),
        |_| Ok(mine()),
    )
    .unwrap();
    assert!(matches!(
        outcome,
        TxnOutcome::Committed { rejections: 0, .. }
    ));
    assert!(grid.tip_of("outbox/n1").is_none());

    // A peer at work past `until`: the node pushes its own commit.
    let grid = Grid::new();
    let (_state, repo) = clone_of(&grid.url());
    let busy = Arc::new(AtomicBool::new(true));
    let plans = Cell::new(0);
    let outcome = txn::run(
        &repo,
        &who,
        &policy(&busy, Duration::from_millis(200)),
        |_| {
            plans.set(plans.get() + 1);
            Ok(mine())
        },
    )
    .unwrap();
    assert!(matches!(
        outcome,
        TxnOutcome::Committed { rejections: 0, .. }
    ));
    assert!(plans.get() >= 2, "looked again before pushing");
    assert!(grid.tip_of("outbox/n1").is_some());
    assert!(grid.files_on("main", "notes").contains_key("mine"));
}

/// A peer is at work, for a node delivering its last results, while it
/// holds claims that are not all results it published: one of two
/// published, still at work; both, it ran dry.
#[test]
fn a_peer_that_published_all_it_holds_is_not_at_work() {
    let grid = Grid::new();
    grid.commit_files(
        &[
            claim("a1", "a", AT),
            claim("b1", "b", AT),
            claim("b2", "b", AT),
        ],
        "claims of a and b",
    );
    let a = PlainNode::new("a");
    let outbox = [done("a1", "a")];
    let req = SyncRequest {
        outbox: &outbox,
        heartbeat: false,
        count_at_work: true,
        ..a.request(0)
    };
    let (_state, repo) = clone_of(&grid.url());
    let plan = || {
        let tip = repo.fetch().unwrap();
        sync::plan(&Txn { repo: &repo, tip }, &req).unwrap().value
    };
    let first = plan();
    assert_eq!((first.writers, first.peers_at_work), (2, 1));
    let b = Id::parse("b").unwrap();
    let publish = |entries: &[OutboxEntry]| {
        let edits = sync::to_publish(&b, entries, false).unwrap().edits;
        publish_at(&grid.url(), "b", &edits);
    };
    publish(&[done("b1", "b")]);
    assert_eq!(plan().peers_at_work, 1, "b2 still b's to run");
    publish(&[done("b1", "b"), done("b2", "b")]);
    let dry = plan();
    assert_eq!((dry.writers, dry.peers_at_work), (2, 0));
}

/// The outbox branches on the grid's remote.
fn outbox_branches(grid: &Grid) -> Vec<String> {
    outboxes_in(&grid.bare, "refs/heads/outbox/")
}

/// The names of the refs under `namespace` (`refs/<a>/outbox/`) in the
/// repository at `dir`, after `outbox/`.
fn outboxes_in(dir: &std::path::Path, namespace: &str) -> Vec<String> {
    let out = git(
        dir,
        &["for-each-ref", "--format=%(refname:lstrip=3)", namespace],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The reap deletes the published outboxes that no running node owns (a
/// node gone stale, one stopped, branches no node publishes to), keeps a
/// running node's, and deletes none that was published again after it
/// listed them.
#[test]
fn the_reap_deletes_the_outboxes_no_running_node_owns() {
    let grid = Grid::new();
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let record = |id: &str, status: &str, at: &str| {
        (
            format!("nodes/{id}.json"),
            serde_json::json!({"node_id": id, "status": status, "last_heartbeat": at})
                .to_string()
                .into_bytes(),
        )
    };
    grid.commit_files(
        &[
            record("up", "busy", &now),
            record("draining", "draining", &now),
            record("stale", "busy", AT),
            record("stopped", "stopped", &now),
        ],
        "nodes",
    );
    let mut edits = Edits::new();
    put(&mut edits, "t1.json", file_of(&done("t1", "up")));
    for node in ["up", "draining", "stale", "stopped", "nobody", "up-1"] {
        publish_at(&grid.url(), node, &edits);
    }

    let dry = crate::tools_fixture::dgrid(&["reap", "--repo", &grid.url(), "--dry-run", "--json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        v["outboxes_deleted"],
        serde_json::json!(["nobody", "stale", "stopped", "up-1"]),
        "{v}"
    );
    assert_eq!(outbox_branches(&grid).len(), 6, "a dry run deletes nothing");

    let o = crate::tools_fixture::dgrid(&["reap", "--repo", &grid.url()]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("outbox/stale: deleted"), "{said}");
    assert_eq!(outbox_branches(&grid), ["draining", "up"]);

    // Listed at one commit, published again since: the lease keeps it.
    publish_at(&grid.url(), "stale", &edits);
    let (_state, repo) = clone_of(&grid.url());
    let listed = repo.list_outboxes().unwrap();
    assert!(!listed.truncated);
    let stale: Vec<(String, String)> = listed
        .branches
        .into_iter()
        .filter(|(n, _)| n == "stale")
        .collect();
    assert_eq!(stale.len(), 1);
    put(&mut edits, "t2.json", file_of(&done("t2", "stale")));
    publish_at(&grid.url(), "stale", &edits);
    let refused = repo.delete_outboxes(&stale);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "stale");
    assert_eq!(outbox_branches(&grid), ["draining", "stale", "up"]);
}

/// A crowd of branches under `outbox/` is listed only up to the bound:
/// the listing says it stopped there, and every branch it returns is
/// whole (the line cut at the bound is dropped). The reap lists again
/// after each listing's deletions, and deletes the whole crowd.
/// The copies of outboxes in a worker's clone.
fn copies(state: &std::path::Path) -> Vec<String> {
    outboxes_in(&state.join("grid.git"), "refs/dgrid/outbox/")
}

/// A grid where b has published its outbox (one result), beside `crowd`
/// branches `outbox/b-N`: (the grid, its tip, what b published).
fn b_published_beside_a_crowd(crowd: usize) -> (Grid, String, Edits) {
    let grid = Grid::new();
    let tip = grid.tip_of("main").unwrap();
    let edits = sync::to_publish(&Id::parse("b").unwrap(), &[done("b1", "b")], false)
        .unwrap()
        .edits;
    publish_at(&grid.url(), "b", &edits);
    grid.outbox_crowd((0..crowd).map(|i| format!("b-{i}")), &tip);
    (grid, tip, edits)
}

/// Branches named after a watched peer's outbox (`outbox/b-1`, ...) come
/// with the fetch of its pattern once: the fetch learns them and keeps
/// them out from then on (a negative refspec for the crowd, not one per
/// branch), its copies leave the clone, and the peer's own branch is still
/// fetched and carried. A watched peer's branch is never kept out.
#[test]
fn a_crowd_named_after_a_watched_peer_is_fetched_once() {
    let (grid, tip, edits) = b_published_beside_a_crowd(2_000);

    let (state, repo) = clone_of(&grid.url());
    repo.watch_outboxes(&["b"]);
    repo.fetch().unwrap();
    assert_eq!(copies(state.path()), ["b"]);
    assert_eq!(
        repo.crowds_kept_out(&["b"]),
        (2_000, vec!["^refs/heads/outbox/b-*".to_owned()])
    );
    let published = |node: &str| {
        String::from_utf8(git(&grid.bare, &["rev-parse", &format!("outbox/{node}")]).stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        repo.published_tips(&["b"]).unwrap()[0].clone(),
        Some(published("b"))
    );

    // More of the crowd is not fetched at all; b's new outbox is.
    grid.outbox_crowd((0..500).map(|i| format!("b-x{i}")), &tip);
    let again = sync::to_publish(
        &Id::parse("b").unwrap(),
        &[done("b1", "b"), done("b2", "b")],
        false,
    )
    .unwrap()
    .edits;
    publish_at(&grid.url(), "b", &again);
    repo.fetch().unwrap();
    assert_eq!(copies(state.path()), ["b"]);
    assert_eq!(repo.crowds_kept_out(&["b"]).0, 2_000, "none fetched again");
    assert_eq!(
        repo.published_tips(&["b"]).unwrap()[0].clone(),
        Some(published("b"))
    );

    // Another crowd after b is learnt as well.
    grid.outbox_crowd((0..100).map(|i| format!("b.{i}")), &tip);
    repo.fetch().unwrap();
    assert_eq!(copies(state.path()), ["b"]);
    assert_eq!(
        repo.crowds_kept_out(&["b"]),
        (
            2_100,
            vec![
                "^refs/heads/outbox/b-*".to_owned(),
                "^refs/heads/outbox/b.*".to_owned()
            ]
        )
    );

    // bz is a node: while only b is watched its branch is a stranger;
    // once bz holds claims too, it is fetched.
    publish_at(&grid.url(), "bz", &edits);
    repo.fetch().unwrap();
    assert_eq!(copies(state.path()), ["b"]);
    repo.watch_outboxes(&["b", "bz"]);
    repo.fetch().unwrap();
    assert_eq!(copies(state.path()), ["b", "bz"]);
    assert_eq!(
        repo.published_tips(&["bz"]).unwrap()[0].clone(),
        Some(published("bz"))
    );
    assert_eq!(repo.crowds_kept_out(&["b", "bz"]).0, 2_101);
}

/// A git that refuses negative refspecs, as one before 2.29 does: the
/// fetch that carries the crowd's pattern fails, the one without it
/// succeeds, and from then on the clone fetches as before, keeping the
/// crowd's copies (so that it comes whole once, not with every fetch),
/// and learns no more.
#[test]
fn a_git_that_refuses_the_patterns_fetches_the_crowd_as_before() {
    let (grid, ..) = b_published_beside_a_crowd(200);

    let state = tempfile::tempdir().unwrap();
    let old_git = state.path().join("git-2.28");
    std::fs::write(
        &old_git,
        "#!/bin/sh\n\
         for a in \"$@\"; do case \"$a\" in ^*) echo \"fatal: invalid refspec '$a'\" >&2; exit 128;; esac; done\n\
         exec git \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&old_git, std::fs::Permissions::from_mode(0o755)).unwrap();
    let git = dgrid_worker::git::Git::new(
        &old_git,
        state.path().join("grid.git"),
        std::time::Duration::from_secs(30),
    );
    let repo = dgrid_worker::git::GridRepo::open_or_init(git, &grid.url(), "main")
        .unwrap()
        .with_outboxes();
    repo.watch_outboxes(&["b"]);
    repo.fetch().unwrap();
    assert_eq!(repo.crowds_kept_out(&["b"]).1, ["^refs/heads/outbox/b-*"]);
    assert_eq!(copies(state.path()), ["b"]);

    // Refused: fetched without, the crowd with it, its copies kept.
    repo.fetch().unwrap();
    assert_eq!(repo.crowds_kept_out(&["b"]), (400, Vec::new()));
    assert_eq!(copies(state.path()).len(), 201);
    // And not again.
    repo.fetch().unwrap();
    assert_eq!(repo.crowds_kept_out(&["b"]).0, 400);
    assert!(repo.published_tips(&["b"]).unwrap()[0].is_some());
}

#[test]
fn the_outbox_listing_stops_at_its_bound() {
    let grid = Grid::new();
    let tip = grid.tip_of("main").unwrap();
    // Long names (in components a file system takes), so that a crowd of
    // 1,600 passes the bound: deleting refs costs the remote about 2 ms each.
    let long = vec!["x".repeat(200); 4].join("/");
    grid.outbox_crowd((0..1_600).map(|i| format!("crowd-{i:05}/{long}")), &tip);

    let (_state, repo) = clone_of(&grid.url());
    let listed = repo.list_outboxes().unwrap();
    assert!(listed.truncated);
    // Lines of 40 + 1 + 18 + 815 + 1 bytes: 1 MiB holds 1,198 of them whole.
    assert_eq!(listed.branches.len(), (1 << 20) / 875);
    assert!(
        listed
            .branches
            .iter()
            .all(|(node, oid)| node.len() == 815 && *oid == tip),
        "every branch listed is whole"
    );

    let o = crate::tools_fixture::dgrid(&["reap", "--repo", &grid.url(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outboxes_deleted"].as_array().unwrap().len(), 1_600);
    assert!(outbox_branches(&grid).is_empty());
}

/// A worker whose last result's push loses a round publishes it on its
/// branch, then lands it; stopped, it deletes the branch it published to
/// (the reap need not), leased to the commit it pushed there.
#[test]
fn a_node_deletes_its_published_outbox_on_its_way_out() {
    use nix::sys::signal::Signal;
    use std::time::Duration;
    let grid = Grid::new();
    let real = real_git();
    let flag = grid.path("lose-next-push");
    let wrapper = grid.path("git-loses-a-round");
    // The push to main after the flag is set finds another writer's commit
    // there first: refused as out of date, a lost round.
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = push ] && [ -e '{flag}' ] && echo \"$*\" | grep -q 'refs/heads/main'; then\n\
             \x20 rm -f '{flag}'\n\
             \x20 t=$('{real}' -C '{bare}' rev-parse 'main^{{tree}}')\n\
             \x20 c=$('{real}' -C '{bare}' -c user.name=o -c user.email=o@x commit-tree \"$t\" -p main -m 'another writer')\n\
             \x20 '{real}' -C '{bare}' update-ref refs/heads/main \"$c\"\n\
             fi\n\
             exec '{real}' \"$@\"\n",
            flag = flag.display(),
            bare = grid.bare.display(),
        ),
    );
    let mut spec = WorkerSpec::new(&grid, "leaver");
    spec.drain = false;
    spec.extra = format!("[git]\nbinary = \"{}\"\n", wrapper.display());
    let mut w = spawn_worker(&grid, &spec);
    wait_until("registration", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("leaver.json")
    });
    grid.submit(&[("last-one".into(), "sleep 1; echo ok".into(), 30)]);
    wait_until("the claim", Duration::from_secs(30), || {
        grid.files("tasks/in_progress")
            .contains_key("last-one.json")
    });
    std::fs::write(&flag, b"").unwrap();
    wait_until("the result", Duration::from_secs(30), || {
        !grid.results().is_empty()
    });
    assert!(!flag.exists(), "a push to main lost its round");
    assert_eq!(outbox_branches(&grid), ["leaver"], "{}", w.log_text());

    w.signal(Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    assert!(outbox_branches(&grid).is_empty(), "{}", w.log_text());
    assert_eq!(grid.results().len(), 1);
}

/// b is busy by its record (reckoned busy for ten minutes more), but the
/// two claims naming it are results it published: its pushes lost, and it
/// has nothing left to run. a, claiming from a backlog, claims b's share
/// for it in the same commit, alone as b is among the peers (a claim for
/// one idle peer does not pay; for one whose own claims are not landing,
/// it does). So too once a peer has carried those results, and b holds no
/// claim at all while its record still says busy. Without the
/// publication, a claims for nobody, with or without b's claims.
#[test]
fn a_peer_that_published_its_last_results_is_claimed_for_as_idle() {
    use dgrid_worker::grid::{NodeRecord, NodeStatus};
    let run = |published: bool, carried: bool| -> Vec<(String, String)> {
        let grid = Grid::new();
        let now = dgrid_worker::time::format(dgrid_worker::time::now());
        let busy = NodeRecord {
            takes_assigned: true,
            busy_ms: Some(600_000),
            concurrency: 1,
            ..NodeRecord::new(Id::parse("b").unwrap(), NodeStatus::Busy, now)
        };
        let mut files = vec![("nodes/b.json".to_owned(), busy.to_bytes())];
        if !carried {
            files.extend([claim("b1", "b", AT), claim("b2", "b", AT)]);
        }
        files.extend((0..8).map(|i| {
            let body = serde_json::json!({"task_id": format!("t{i}"), "script": "sleep 1", "timeout_seconds": 30});
            (format!("tasks/queue/t{i}.json"), body.to_string().into_bytes())
        }));
        grid.commit_files(&files, "b busy by its record, and a backlog");
        if published {
            let edits = sync::to_publish(
                &Id::parse("b").unwrap(),
                &[done("b1", "b"), done("b2", "b")],
                false,
            )
            .unwrap()
            .edits;
            publish_at(&grid.url(), "b", &edits);
        }
        let mut a = PlainNode::new("a");
        a.record.last_heartbeat = dgrid_worker::time::format(dgrid_worker::time::now());
        let (_state, repo) = clone_of(&grid.url());
        // A heartbeat first: a learns who holds claims, and its next
        // fetch brings what they published.
        let tip = repo.fetch().unwrap();
        sync::plan(&Txn { repo: &repo, tip }, &a.request(0)).unwrap();
        let req = SyncRequest {
            share_up_to: 8,
            task_secs: Some(1.0),
            round_secs: Some(0.1),
            heartbeat: false,
            assign_within: Some(chrono::Duration::seconds(60)),
            ..a.request(1)
        };
        let report = match txn::run(
            &repo,
            &Identity::for_node("a"),
            &TxnPolicy::default(),
            |t| sync::plan(t, &req),
        )
        .unwrap()
        {
            TxnOutcome::Committed { value, .. } => value,
            other => panic!("a claims: {other:?}"),
        };
        report
            .assigned
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    };
    for (published, carried) in [(true, false), (true, true), (false, true)] {
        let assigned = run(published, carried);
        assert!(
            !assigned.is_empty(),
            "published {published}, carried {carried}: nothing claimed for b"
        );
        assert!(assigned.iter().all(|(_, p)| p == "b"), "{assigned:?}");
    }
    assert_eq!(
        run(false, false),
        [],
        "busy by its record, and nothing says otherwise"
    );
}

/// A claim handed back (its requeue published: the holder's push lost)
/// is claimed by the idle peer in the very commit that carries it back,
/// not first queued and claimed a round later; one it does not serve (it
/// asks for a label the peer lacks) goes back to its lane. Without the
/// publication nothing moves: the claims are b's. b's own sync after
/// finds both requeues moot, and nothing is queued twice.
#[test]
fn a_published_handback_is_claimed_in_the_commit_that_carries_it() {
    let run = |published: bool| {
        let grid = Grid::new();
        let (gpu, gpu_bytes) = claim("b3", "b", AT);
        let mut body: serde_json::Value = serde_json::from_slice(&gpu_bytes).unwrap();
        body["requires"] = serde_json::json!(["gpu"]);
        grid.commit_files(
            &[
                claim("b1", "b", AT),
                claim("b2", "b", AT),
                (gpu, body.to_string().into_bytes()),
            ],
            "b holds three claims",
        );
        let handbacks: Vec<OutboxEntry> = ["b1", "b3"]
            .iter()
            .map(|t| OutboxEntry {
                finish: Finish::requeue("a peer would start it sooner".into()),
                ..done(t, "b")
            })
            .collect();
        if published {
            let edits = sync::to_publish(&Id::parse("b").unwrap(), &handbacks, true)
                .unwrap()
                .edits;
            publish_at(&grid.url(), "b", &edits);
        }
        let a = PlainNode::new("a");
        let (_state, repo) = clone_of(&grid.url());
        // A first look: a learns who holds claims, and its next fetch
        // brings what they published.
        let tip = repo.fetch().unwrap();
        let first = sync::plan(&Txn { repo: &repo, tip }, &a.request(1)).unwrap();
        assert!(first.value.claimed.is_empty(), "nothing watched yet");
        let req = SyncRequest {
            heartbeat: false,
            ..a.request(2)
        };
        let outcome = txn::run(
            &repo,
            &Identity::for_node("a"),
            &TxnPolicy::default(),
            |t| sync::plan(t, &req),
        )
        .unwrap();
        (grid, handbacks, outcome)
    };

    let (grid, handbacks, outcome) = run(true);
    let TxnOutcome::Committed { value: report, .. } = outcome else {
        panic!("a carries and claims: {outcome:?}");
    };
    let claimed: Vec<String> = report
        .claimed
        .iter()
        .map(|c| c.task.task_id.to_string())
        .collect();
    assert_eq!(claimed, ["b1"], "the GPU task is not a's to run");
    let mut back: Vec<String> = report
        .carried_back
        .iter()
        .map(|(t, p)| format!("{t} of {p}"))
        .collect();
    back.sort();
    assert_eq!(back, ["b1 of b", "b3 of b"]);
    assert!(report.carried.is_empty(), "no result to carry");
    let held = grid.files("tasks/in_progress");
    let holder = |t: &str| -> String {
        let v: serde_json::Value = serde_json::from_slice(&held[&format!("{t}.json")]).unwrap();
        v["claim"]["node_id"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        (holder("b1"), holder("b2")),
        ("a".into(), "b".into()),
        "{held:?}"
    );
    assert!(!held.contains_key("b3.json"), "{held:?}");
    let queued = grid.queued();
    assert_eq!(
        queued.keys().collect::<Vec<_>>(),
        ["b3.json"],
        "only the GPU task waits in its lane: {queued:?}"
    );
    assert!(queued["b3.json"].get("claim").is_none());
    assert_eq!(
        queued["b3.json"]["attempt"].as_u64().unwrap_or(1),
        1,
        "its attempt unchanged"
    );
    let message =
        String::from_utf8(git(&grid.bare, &["log", "-1", "--format=%B", "main"]).stdout).unwrap();
    for words in ["requeue b1 for b", "requeue b3 for b", "claim b1"] {
        assert!(message.contains(words), "{words:?} in {message:?}");
    }

    // b's own sync: its requeues find their claims ended already.
    let b = PlainNode::new("b");
    let report = commit_at(
        &grid.url(),
        &SyncRequest {
            outbox: &handbacks,
            heartbeat: false,
            ..b.request(0)
        },
    );
    let mut landed: Vec<String> = report.landed.iter().map(Id::to_string).collect();
    landed.sort();
    assert_eq!(landed, ["b1", "b3"]);
    assert_eq!(report.requeued, 0, "nothing requeued twice");
    assert_eq!(grid.queued().len(), 1);
    assert_eq!(holder("b1"), "a");

    let (grid, _, outcome) = run(false);
    assert!(
        matches!(outcome, TxnOutcome::Unchanged { .. }),
        "nothing to claim without the publication: {outcome:?}"
    );
    assert_eq!(grid.files("tasks/in_progress").len(), 3);
    assert!(grid.queued().is_empty());
}

/// A lock left on the server (`refs/heads/main.lock`, as a receive-pack
/// killed mid-push leaves it) refuses every push as a lost race does, in
/// the same words over HTTPS: the transaction names it, as no other
/// writer moved the branch in all its rounds, where it used to blame
/// other writers (a sweep found it logged so every ten seconds). Other
/// writers landing between the rounds are still said to be that.
#[test]
fn a_lock_left_on_the_server_is_named_not_blamed_on_other_writers() {
    let grid = Grid::new();
    let (_state, repo) = clone_of(&grid.url());
    let who = Identity::for_node("n1");
    let three = TxnPolicy {
        max_rounds: 3,
        ..TxnPolicy::default()
    };
    let mine = || {
        let mut edits = Edits::new();
        edits.insert(b"notes/mine".to_vec(), Edit::Put(b"x".to_vec()));
        Plan {
            edits,
            message: "mine".into(),
            value: (),
        }
    };
    let tip = grid.tip_of("main").unwrap();
    let lock = grid.bare.join("refs/heads/main.lock");
    std::fs::write(&lock, format!("{tip}\n")).unwrap();
    let e = txn::run(&repo, &who, &three, |_| Ok(mine())).unwrap_err();
    assert!(
        matches!(e, txn::TxnError::Contended { moved: false, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("a lock left on the server"), "{e}");
    assert_eq!(grid.tip_of("main").unwrap(), tip, "nothing landed");

    // Other writers, landing between the rounds, are named as such.
    std::fs::remove_file(&lock).unwrap();
    let e = txn::run(&repo, &who, &three, |_| {
        grid.commit_files(&[("notes/other".into(), b"y".to_vec())], "a peer lands");
        Ok(mine())
    })
    .unwrap_err();
    assert!(e.to_string().contains("lost to other writers"), "{e}");
}
