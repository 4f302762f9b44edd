//! Property tests of the pure protocol decisions: id rules, task
//! validation, claims, the orphan rule and attempt accounting.
//! (The outbox's "is this claim still mine" decision is property-tested
//! next to it, in src/service/sync.rs.)

use dgrid_worker::grid::claim::{Claim, ClaimedTask};
use dgrid_worker::grid::orphan::{self, Disposition, OrphanPolicy, OrphanReason};
use dgrid_worker::grid::task::EntryKind;
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus, Task, TaskRules, layout};
use dgrid_worker::time::{self, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The documented rule, written independently of `Id::parse`.
fn id_rule(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn any_id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9._-]{0,70}",
        "[A-Za-z0-9._/ \\\\-]{0,70}",
        any::<String>(),
        "(\\.\\./)+[a-z]{1,5}",
    ]
}

fn valid_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
}

fn any_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Task documents: mostly well-formed with one field perturbed.
fn task_doc() -> impl Strategy<Value = (String, Value)> {
    (
        valid_id(),
        prop_oneof![
            3 => "[ -~]{1,40}".prop_map(Value::from),
            1 => any_json(2),
        ],
        prop_oneof![
            3 => (1u64..=3600).prop_map(Value::from),
            1 => any_json(1),
        ],
        prop::option::of(prop_oneof![(1u64..10).prop_map(Value::from), any_json(1)]),
        prop::collection::btree_map("[a-z]{1,8}", any_json(2), 0..3),
    )
        .prop_map(|(id, script, timeout, attempt, extra)| {
            let mut obj: serde_json::Map<String, Value> = extra.into_iter().collect();
            obj.insert("task_id".into(), id.clone().into());
            obj.insert("script".into(), script);
            obj.insert("timeout_seconds".into(), timeout);
            match attempt {
                Some(a) => {
                    obj.insert("attempt".into(), a);
                }
                None => {
                    obj.remove("attempt");
                }
            }
            obj.remove("claim");
            (id, Value::Object(obj))
        })
}

fn ts(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn node(hb: i64, status: NodeStatus) -> NodeRecord {
    NodeRecord::new(Id::parse("n").unwrap(), status, time::format(ts(hb)))
}

fn claim_at(claimed: i64, deadline: i64, attempt: u32) -> Claim {
    Claim {
        node_id: Id::parse("n").unwrap(),
        claimed_at: time::format(ts(claimed)),
        deadline: time::format(ts(deadline)),
        attempt,
        queued_at: None,
        assigned_by: None,
        answer_by: None,
        taken_from: None,
    }
}

fn status() -> impl Strategy<Value = NodeStatus> {
    prop_oneof![
        Just(NodeStatus::Idle),
        Just(NodeStatus::Busy),
        Just(NodeStatus::Draining),
        Just(NodeStatus::Unhealthy),
        Just(NodeStatus::Stopped),
    ]
}

/// Valid ids over a tiny alphabet, dashes and dots among it.
fn dashed_id() -> impl Strategy<Value = String> {
    "[a-b1][a-b1.-]{0,4}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // ---- ids ---------------------------------------------------------------

    #[test]
    fn id_parse_is_the_documented_rule(s in any_id_like()) {
        prop_assert_eq!(Id::parse(&s).is_ok(), id_rule(&s), "{:?}", s);
    }

    #[test]
    fn result_stems_are_always_valid_ids(name in any::<String>()) {
        let stem = layout::result_stem_for_entry(&name);
        prop_assert!(Id::parse(&stem).is_ok(), "{:?} -> {:?}", name, stem);
        prop_assert_eq!(&stem, &layout::result_stem_for_entry(&name));
        let path = layout::result_file(false, &Id::parse("n").unwrap(), &stem);
        prop_assert!(path.starts_with("tasks/failed/n@") && path.matches('/').count() == 2);
    }

    // ---- names made of two ids ----------------------------------------------

    /// Result names are one-to-one: two (node, task) pairs share a path only
    /// if they are the same pair, however the ids use `-` and `.` (a small
    /// alphabet makes near-misses like `a-b`+`c` vs `a`+`b-c` common).
    #[test]
    fn result_names_are_one_to_one(
        n1 in dashed_id(), t1 in dashed_id(), n2 in dashed_id(), t2 in dashed_id(),
        ok1 in any::<bool>(), ok2 in any::<bool>(), extra in proptest::option::of(0u64..3),
    ) {
        let path = |ok: bool, n: &str, t: &str, extra: Option<u64>| {
            let stem = match extra {
                Some(k) => layout::extra_result_stem(t, k),
                None => t.to_owned(),
            };
            layout::result_file(ok, &Id::parse(n).unwrap(), &stem)
        };
        let a = path(ok1, &n1, &t1, None);
        let b = path(ok2, &n2, &t2, None);
        prop_assert_eq!(a == b, (ok1, &n1, &t1) == (ok2, &n2, &t2), "{} {}", a, b);
        // An extra result's name is never any task's plain one.
        let c = path(ok2, &n2, &t2, extra);
        prop_assert_eq!(a == c, (ok1, &n1, &t1) == (ok2, &n2, &t2) && extra.is_none());
        // The name says whose it is: found for its own task, no other.
        let name = a.rsplit('/').next().unwrap();
        prop_assert_eq!(
            layout::result_name_is_for(name, &Id::parse(&t2).unwrap()) == layout::NameMatch::Yes,
            t1 == t2
        );
    }

    /// Container names are one-to-one as well: two nodes on one host never
    /// get each other's container.
    #[test]
    fn container_names_are_one_to_one(
        n1 in dashed_id(), t1 in dashed_id(), a1 in 1u32..12,
        n2 in dashed_id(), t2 in dashed_id(), a2 in 1u32..12,
    ) {
        let x = layout::container_name(&n1, &t1, a1);
        let y = layout::container_name(&n2, &t2, a2);
        prop_assert_eq!(x == y, (&n1, &t1, a1) == (&n2, &t2, a2), "{} {}", x, y);
        // Only characters engines accept in names.
        prop_assert!(x.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
    }

    // ---- task validation ---------------------------------------------------

    #[test]
    fn validation_never_panics_on_bytes(name in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let rules = TaskRules::default();
        for kind in [EntryKind::File, EntryKind::Symlink, EntryKind::Directory, EntryKind::Submodule] {
            let r = Task::from_entry(&name, kind, &bytes, &rules);
            if let Err(e) = r {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn a_task_is_valid_exactly_when_its_fields_are((id, doc) in task_doc()) {
        let rules = TaskRules::default();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let got = Task::from_entry(&format!("{id}.json"), EntryKind::File, &bytes, &rules);
        let script_ok = doc["script"].as_str().is_some_and(|s| {
            !s.trim().is_empty() && s.len() <= rules.max_script_bytes && !s.contains('\0')
        });
        let timeout_ok = doc["timeout_seconds"].as_u64().is_some_and(|t| (1..=3600).contains(&t));
        let attempt_ok = match doc.get("attempt") {
            None => true,
            Some(a) => a.as_u64().is_some_and(|a| a >= 1 && a <= u64::from(u32::MAX)),
        };
        let small = bytes.len() <= rules.max_file_bytes;
        prop_assert_eq!(got.is_ok(), script_ok && timeout_ok && attempt_ok && small, "{} -> {:?}", doc, got);
        if let Ok(task) = got {
            // Kept fields and the round trip through what the worker writes.
            for (k, v) in doc.as_object().unwrap() {
                if !["task_id", "script", "timeout_seconds", "attempt"].contains(&k.as_str()) {
                    prop_assert_eq!(&task.extra[k], v);
                }
            }
            let again = serde_json::to_vec(&Value::Object(task.to_json())).unwrap();
            let back = Task::from_entry(&format!("{id}.json"), EntryKind::File, &again, &rules);
            prop_assert_eq!(back.as_ref().ok(), Some(&task));
        }
    }

    #[test]
    fn the_file_name_must_name_the_task(a in valid_id(), b in valid_id()) {
        let doc = json!({"task_id": a, "script": "true", "timeout_seconds": 1});
        let got = Task::from_entry(&format!("{b}.json"), EntryKind::File, doc.to_string().as_bytes(), &TaskRules::default());
        prop_assert_eq!(got.is_ok(), a == b);
    }

    // ---- claims --------------------------------------------------------------

    #[test]
    fn claims_round_trip_and_name_their_node(
        (id, doc) in task_doc(), node_id in valid_id(), other in valid_id(),
        now in 0i64..1_000_000, grace in 0i64..100_000,
    ) {
        let rules = TaskRules::default();
        let Ok(task) = Task::parse(&serde_json::to_vec(&doc).unwrap(), &rules) else {
            return Ok(());
        };
        let n = Id::parse(&node_id).unwrap();
        let c = ClaimedTask::new(task.clone(), &n, ts(now), chrono::Duration::seconds(grace));
        prop_assert_eq!(c.claim.attempt, task.attempt);
        let deadline = time::parse(&c.claim.deadline).unwrap();
        prop_assert_eq!(deadline, ts(now) + chrono::Duration::seconds(task.timeout_seconds as i64 + grace));
        let back = ClaimedTask::parse(&format!("{id}.json"), &c.to_bytes(), &rules).unwrap();
        prop_assert_eq!(&back, &c);
        // Two nodes' claims are never the same patch (PROTOCOL.md, The transaction).
        if other != node_id {
            let c2 = ClaimedTask::new(task, &Id::parse(&other).unwrap(), ts(now), chrono::Duration::seconds(grace));
            prop_assert_ne!(c2.to_bytes(), c.to_bytes());
        }
    }

    // ---- the orphan rule ---------------------------------------------------

    #[test]
    fn a_passed_deadline_orphans_whatever_the_node_says(
        claimed in 0i64..1000, deadline in 0i64..1000, hb in 0i64..3000, st in status(),
        stale in 1i64..1000, attempt in 1u32..10,
    ) {
        let now = deadline + 1;
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(stale), max_attempts: 3, claim_grace: chrono::Duration::minutes(5) };
        let c = claim_at(claimed, deadline, attempt);
        for n in [Some(node(hb, st)), None] {
            let r = orphan::orphan_reason(&c, n.as_ref(), ts(now), &policy, orphan::Reach::Unbroken);
            prop_assert!(matches!(r, Some(OrphanReason::DeadlinePassed { .. })), "{:?}", r);
        }
    }

    #[test]
    fn a_live_node_keeps_its_claim(
        claimed in 0i64..1000, ahead in 1i64..10_000, age in 0i64..1000, st in status(),
        stale in 1i64..1000,
    ) {
        prop_assume!(st != NodeStatus::Stopped);
        let now = claimed + 10;
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(stale), max_attempts: 3, claim_grace: chrono::Duration::minutes(5) };
        let c = claim_at(claimed, now + ahead, 1);
        let hb = now - age.min(stale);
        prop_assert_eq!(orphan::orphan_reason(&c, Some(&node(hb, st)), ts(now), &policy, orphan::Reach::Unbroken), None);
    }

    #[test]
    fn once_orphaned_always_orphaned(
        claimed in 0i64..1000, deadline in 0i64..3000, hb in 0i64..3000,
        st in status(), known in any::<bool>(), stale in 1i64..1000,
        now in 0i64..4000, later in 0i64..4000,
    ) {
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(stale), max_attempts: 3, claim_grace: chrono::Duration::minutes(5) };
        let c = claim_at(claimed, deadline, 1);
        let n = known.then(|| node(hb, st));
        if orphan::orphan_reason(&c, n.as_ref(), ts(now), &policy, orphan::Reach::Unbroken).is_some() {
            prop_assert!(orphan::orphan_reason(&c, n.as_ref(), ts(now + later), &policy, orphan::Reach::Unbroken).is_some());
        }
    }

    #[test]
    fn an_unknown_node_is_given_the_stale_limit(
        claimed in 0i64..1000, stale in 1i64..1000, after in 0i64..2000,
    ) {
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(stale), max_attempts: 3, claim_grace: chrono::Duration::minutes(5) };
        let c = claim_at(claimed, claimed + 100_000, 1);
        let r = orphan::orphan_reason(&c, None, ts(claimed + after), &policy, orphan::Reach::Unbroken);
        prop_assert_eq!(r.is_some(), after > stale);
    }

    #[test]
    fn garbled_timestamps_never_block_a_task(claimed in ".{0,30}", deadline in ".{0,30}", hb in ".{0,30}") {
        prop_assume!(time::parse(&deadline).is_none());
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(60), max_attempts: 3, claim_grace: chrono::Duration::minutes(5) };
        let c = Claim { node_id: Id::parse("n").unwrap(), claimed_at: claimed, deadline, attempt: 1, queued_at: None, assigned_by: None, answer_by: None, taken_from: None };
        let mut n = node(0, NodeStatus::Busy);
        n.last_heartbeat = hb;
        prop_assert!(orphan::orphan_reason(&c, Some(&n), ts(0), &policy, orphan::Reach::Unbroken).is_some());
    }

    // ---- attempt accounting --------------------------------------------------

    #[test]
    fn a_task_is_claimed_at_most_max_attempts_times(max in 1u32..20, start in 1u32..25) {
        let policy = OrphanPolicy { stale_after: chrono::Duration::seconds(60), max_attempts: max, claim_grace: chrono::Duration::minutes(5) };
        let task = Task::parse(
            json!({"task_id": "t", "script": "true", "timeout_seconds": 5, "attempt": start}).to_string().as_bytes(),
            &TaskRules::default(),
        ).unwrap();
        let n = Id::parse("n").unwrap();
        let mut claims = 0u32;
        let mut current = task;
        loop {
            let c = ClaimedTask::new(current.clone(), &n, ts(0), chrono::Duration::zero());
            claims += 1;
            prop_assert!(claims <= max, "claimed {} times with max {}", claims, max);
            match orphan::disposition(&c.claim, &policy) {
                Disposition::Requeue { attempt } => {
                    prop_assert_eq!(attempt, c.claim.attempt + 1);
                    prop_assert!(attempt <= max);
                    let bytes = c.requeued(attempt);
                    current = Task::parse(&bytes, &TaskRules::default()).unwrap();
                    prop_assert_eq!(current.attempt, attempt);
                }
                Disposition::Abandon => {
                    prop_assert!(c.claim.attempt >= max);
                    break;
                }
            }
        }
        // A fresh task gets exactly max claims; one already past gets one.
        prop_assert_eq!(claims, if start >= max { 1 } else { max - start + 1 });
    }
}

// ---- claim choice, against a real repository --------------------------------

mod claim_choice {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use crate::common::git;
    use crate::common::plan::{PlainNode, completed};

    use dgrid_worker::git::{Edit, Git, GridRepo, Txn};
    use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
    use dgrid_worker::service::outbox::OutboxEntry;
    use dgrid_worker::service::sync::{self, SyncRequest};
    use dgrid_worker::time;
    use proptest::prelude::*;

    proptest! {
        // Each case makes a repository: few cases, each a real plan.
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// From a queue of valid and invalid entries, with some tasks
        /// already ending in the outbox: at most `want` valid tasks are
        /// claimed, never an invalid one, never one the outbox is ending;
        /// every invalid entry looked at is failed, and a turn with room
        /// always makes progress.
        #[test]
        fn claims_are_few_valid_and_disjoint(
            valid in prop::collection::vec(any::<bool>(), 0..14),
            busy in prop::collection::vec(any::<bool>(), 0..14),
            want in 0usize..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let work = dir.path().join("w");
            std::fs::create_dir_all(work.join("tasks/queue")).unwrap();
            git(&work, &["init", "-q", "-b", "main"]);
            for (i, ok) in valid.iter().enumerate() {
                let body = if *ok {
                    format!(r#"{{"task_id":"t{i}","script":"true","timeout_seconds":5}}"#)
                } else {
                    format!(r#"{{"task_id":"t{i}","script":"","timeout_seconds":5}}"#)
                };
                std::fs::write(work.join(format!("tasks/queue/t{i}.json")), body).unwrap();
            }
            std::fs::write(work.join("tasks/queue/.gitkeep"), "").unwrap();
            git(&work, &["add", "-A"]);
            git(&work, &["commit", "-q", "-m", "queue"]);
            let bare = dir.path().join("grid.git");
            git(dir.path(), &["clone", "-q", "--bare", "w", "grid.git"]);

            let g = Git::new("git", dir.path().join("state/grid.git"), Duration::from_secs(30));
            let repo = GridRepo::open_or_init(g, bare.to_str().unwrap(), "main").unwrap();
            let tip = repo.fetch().unwrap();
            let node = Id::parse("n").unwrap();
            // Tasks this node is ending (their results are in its outbox).
            let outbox: Vec<OutboxEntry> = busy
                .iter()
                .enumerate()
                .filter(|(i, b)| **b && *i < valid.len())
                // A result for a task that is back in the queue: it lands
                // from there, so the task must not be claimed.
                .map(|(i, _)| {
                    completed(
                        &format!("t{i}"),
                        "n",
                        1,
                        "2026-01-01T00:00:00.000Z",
                        "2026-01-01T00:00:01.000Z".into(),
                    )
                })
                .collect();
            let touched: BTreeSet<String> = outbox.iter().map(|e| e.task_id.to_string()).collect();
            let mut plain = PlainNode::new(node.as_str());
            plain.record = NodeRecord {
                concurrency: 4,
                ..NodeRecord::new(node.clone(), NodeStatus::Idle, time::format(time::now()))
            };
            plain.policy.stale_after = chrono::Duration::seconds(60);
            let req = SyncRequest {
                outbox: &outbox,
                heartbeat: false,
                claim_grace: chrono::Duration::seconds(60),
                ..plain.request(want)
            };
            let plan = sync::plan(&Txn { repo: &repo, tip }, &req).unwrap();
            let report = plan.value;
            let claimed: BTreeSet<String> =
                report.claimed.iter().map(|c| c.task.task_id.to_string()).collect();
            prop_assert!(claimed.len() <= want);
            prop_assert_eq!(claimed.len(), report.claimed.len(), "claimed twice");
            for id in &claimed {
                let i: usize = id[1..].parse().unwrap();
                prop_assert!(valid[i], "claimed invalid {}", id);
                prop_assert!(!touched.contains(id), "claimed {} which the outbox ends", id);
                let put = plan.edits.get(format!("tasks/in_progress/{id}.json").as_bytes());
                prop_assert!(matches!(put, Some(Edit::Put(_))));
                let del = plan.edits.get(format!("tasks/queue/{id}.json").as_bytes());
                prop_assert!(matches!(del, Some(Edit::Delete)));
            }
            for (name, reason) in &report.invalid {
                let i: usize = name[1..name.len() - 5].parse().unwrap();
                prop_assert!(!valid[i], "{} refused: {}", name, reason);
                prop_assert!(reason.contains("`script` is empty"));
                prop_assert!(!claimed.contains(&name[..name.len() - 5]));
            }
            let untouched = (0..valid.len()).filter(|i| !touched.contains(&format!("t{i}"))).count();
            if want > 0 && untouched > 0 {
                prop_assert!(!claimed.is_empty() || !report.invalid.is_empty(), "no progress");
            }
            let valid_free = (0..valid.len())
                .filter(|i| valid[*i] && !touched.contains(&format!("t{i}")))
                .count();
            if valid.len() <= want * 2 + 4 {
                // Everything was looked at: as many claims as there is room.
                prop_assert_eq!(claimed.len(), want.min(valid_free));
            }
        }
    }
}
