use super::*;
use crate::grid::Id;
use crate::grid::layout::Batch;

fn at(s: &str) -> Timestamp {
    crate::time::parse(s).unwrap()
}

fn place(p: u8, class: &[&str], minute: &str, who: Option<&str>) -> Place {
    Place {
        priority: p,
        class: Class::from_labels(class.iter().copied()).unwrap(),
        batch: Batch::new(at(minute), who.map(|w| Id::parse(w).unwrap())),
    }
}

fn node(labels: &[&str], exclusive: &[&str]) -> NodeLabels {
    NodeLabels {
        labels: Class::from_labels(labels.iter().copied()).unwrap(),
        exclusive: Class::from_labels(exclusive.iter().copied()).unwrap(),
    }
}

#[test]
fn a_node_serves_what_it_has_every_label_for() {
    let gpu_arm = Class::from_labels(["gpu", "arch=arm64"]).unwrap();
    let any = Class::any();
    let plain = node(&["arch=amd64", "os=linux"], &[]);
    assert_eq!(plain.serves(&any), Ok(()));
    assert_eq!(
        plain.serves(&gpu_arm),
        Err(Lack::Labels(vec![
            Label::parse("arch=arm64").unwrap(),
            Label::parse("gpu").unwrap()
        ]))
    );
    let arm = node(&["arch=arm64", "gpu", "os=linux"], &[]);
    assert_eq!(arm.serves(&gpu_arm), Ok(()));
    assert_eq!(arm.serves(&any), Ok(()));
}

#[test]
fn an_exclusive_node_takes_only_what_asks_for_its_label() {
    let gpu_node = node(&["gpu", "arch=amd64"], &["gpu"]);
    assert_eq!(
        gpu_node.serves(&Class::any()),
        Err(Lack::Exclusive(vec![Label::parse("gpu").unwrap()]))
    );
    assert_eq!(
        gpu_node.serves(&Class::from_labels(["gpu"]).unwrap()),
        Ok(())
    );
    assert_eq!(
        gpu_node.serves(&Class::from_labels(["arch=amd64"]).unwrap()),
        Err(Lack::Exclusive(vec![Label::parse("gpu").unwrap()]))
    );
    assert_eq!(
        Lack::Exclusive(vec![Label::parse("gpu").unwrap()]).to_string(),
        "takes only tasks that require gpu"
    );
    let from_record = NodeLabels::from_record(&["gpu".into(), "Bad Label".into()], &["gpu".into()]);
    assert_eq!(from_record, node(&["gpu"], &["gpu"]));
}

#[test]
fn a_class_no_node_serves_says_what_each_lacks() {
    let gpu = Class::from_labels(["gpu"]).unwrap();
    let plain = node(&["arch=amd64"], &[]);
    let fpga = node(&["fpga"], &["fpga"]);
    let has_gpu = node(&["gpu"], &[]);
    assert_eq!(
        why_unserved(&gpu, &[("n1", &plain), ("n2", &fpga)]).unwrap(),
        "no live node serves it: n1 lacks gpu; n2 lacks gpu"
    );
    assert_eq!(
        why_unserved(&Class::any(), &[("n2", &fpga)]).unwrap(),
        "no live node serves it: n2 takes only tasks that require fpga"
    );
    assert_eq!(
        why_unserved(&gpu, &[("n1", &plain), ("n3", &has_gpu)]),
        None
    );
    assert_eq!(why_unserved(&gpu, &[]).unwrap(), "no live node");
    let many: Vec<(String, NodeLabels)> =
        (0..8).map(|i| (format!("n{i}"), plain.clone())).collect();
    let refs: Vec<(&str, &NodeLabels)> = many.iter().map(|(n, l)| (n.as_str(), l)).collect();
    assert!(why_unserved(&gpu, &refs).unwrap().ends_with("; and 3 more"));
}

#[test]
fn old_tasks_age_upward_ten_levels_an_hour() {
    let t0 = at("2026-11-30T10:00:00Z");
    assert_eq!(effective_priority(10, t0, t0), 10);
    assert_eq!(effective_priority(10, t0, at("2026-11-30T10:05:59Z")), 10);
    assert_eq!(effective_priority(10, t0, at("2026-11-30T10:06:00Z")), 11);
    assert_eq!(effective_priority(10, t0, at("2026-11-30T11:00:00Z")), 20);
    assert_eq!(
        effective_priority(10, t0, at("2026-12-30T10:00:00Z")),
        PRIORITY_MAX
    );
    assert_eq!(
        effective_priority(10, t0, at("2026-11-30T09:00:00Z")),
        10,
        "from the future: no wait"
    );
    assert_eq!(effective_priority(99, t0, at("2030-01-01T00:00:00Z")), 99);
}

fn queued<S: AsRef<str>>(tasks: &[(Place, S)]) -> Vec<Queued<'_>> {
    tasks
        .iter()
        .map(|(p, n)| Queued {
            place: p,
            name: n.as_ref().as_bytes(),
            servers: 0,
        })
        .collect()
}

fn ids(tasks: &[(Place, &str)], now: Timestamp) -> Vec<String> {
    order(&queued(tasks), now)
        .into_iter()
        .map(|(i, _)| tasks[i].1.to_owned())
        .collect()
}

#[test]
fn higher_first_then_first_in_first_out() {
    let now = at("2026-11-30T10:10:00Z");
    let tasks = vec![
        (place(50, &[], "2026-11-30T10:09:00Z", None), "late"),
        (place(90, &["gpu"], "2026-11-30T10:09:30Z", None), "urgent"),
        (place(50, &[], "2026-11-30T10:08:00Z", None), "early"),
        (place(10, &[], "2026-11-30T10:00:00Z", None), "low"),
        (place(50, &[], "2026-11-30T10:08:00Z", None), "early2"),
    ];
    assert_eq!(
        ids(&tasks, now),
        ["urgent", "early", "early2", "late", "low"]
    );
}

#[test]
fn within_a_level_what_fewer_nodes_serve_goes_first() {
    let now = at("2026-11-30T10:10:00Z");
    let tasks = [
        (place(50, &[], "2026-11-30T10:05:00Z", None), "common-old"),
        (place(50, &["gpu"], "2026-11-30T10:09:00Z", None), "gpu"),
        (
            place(60, &[], "2026-11-30T10:09:00Z", None),
            "common-higher",
        ),
        (
            place(40, &["gpu"], "2026-11-30T10:05:00Z", None),
            "gpu-lower",
        ),
        (place(50, &[], "2026-11-30T10:06:00Z", None), "common"),
    ];
    // One slot serves the GPU work, four the common work.
    let q: Vec<Queued<'_>> = tasks
        .iter()
        .map(|(p, n)| Queued {
            place: p,
            name: n.as_bytes(),
            servers: if p.class == Class::any() { 4 } else { 1 },
        })
        .collect();
    let got: Vec<&str> = order(&q, now)
        .into_iter()
        .map(|(i, _)| tasks[i].1)
        .collect();
    assert_eq!(
        got,
        ["common-higher", "gpu", "common-old", "common", "gpu-lower"],
        "levels first; within one, the GPU task only one slot serves"
    );
}

#[test]
fn within_a_minute_numbered_ids_go_in_their_numbers_order() {
    let now = at("2026-11-30T10:10:00Z");
    let minute = "2026-11-30T10:09:00Z";
    let tasks: Vec<(Place, &str)> = ["s10", "s2", "s1", "s9", "s02", "t1"]
        .into_iter()
        .map(|n| (place(50, &[], minute, None), n))
        .collect();
    assert_eq!(ids(&tasks, now), ["s1", "s2", "s02", "s9", "s10", "t1"]);
}

#[test]
fn an_old_task_overtakes_fresher_work_of_a_higher_priority() {
    let now = at("2026-11-30T18:00:00Z");
    let tasks = vec![
        (place(90, &[], "2026-11-30T17:59:00Z", None), "fresh-90"),
        (place(10, &[], "2026-11-30T09:00:00Z", None), "old-10"),
    ];
    assert_eq!(ids(&tasks, now), ["old-10", "fresh-90"]);
}

#[test]
fn submitters_take_turns_within_a_level() {
    // All within one aging step: one level.
    let now = at("2026-11-30T10:05:30Z");
    let mut tasks = Vec::new();
    let names: Vec<String> = (0..5).map(|i| format!("ana-{i}")).collect();
    for n in &names {
        tasks.push((
            place(50, &[], "2026-11-30T10:00:00Z", Some("ana")),
            n.as_str(),
        ));
    }
    tasks.push((place(50, &[], "2026-11-30T10:05:00Z", Some("bob")), "bob-0"));
    tasks.push((place(50, &[], "2026-11-30T10:05:00Z", Some("bob")), "bob-1"));
    tasks.push((place(50, &[], "2026-11-30T10:01:00Z", None), "anon-0"));
    assert_eq!(
        ids(&tasks, now),
        [
            "ana-0", "bob-0", "anon-0", "ana-1", "bob-1", "ana-2", "ana-3", "ana-4"
        ]
    );
}

/// Claimed one at a time (a node's one slot, long tasks), each claim
/// ordered anew after the submitter of the last: the turns go round,
/// where the longest waiting party would take every one.
#[test]
fn one_claim_at_a_time_still_goes_round_the_submitters() {
    let now = at("2026-11-30T10:05:30Z");
    let mut tasks: Vec<(Place, String)> = [("ana", 5, "10:00"), ("bob", 2, "10:05")]
        .into_iter()
        .flat_map(|(who, n, hm)| (0..n).map(move |i| (who, i, hm)))
        .map(|(who, i, hm)| {
            let p = place(50, &[], &format!("2026-11-30T{hm}:00Z"), Some(who));
            (p, format!("{who}-{i}"))
        })
        .collect();
    tasks.push((
        place(50, &[], "2026-11-30T10:01:00Z", None),
        "anon-0".into(),
    ));
    let mut last: Option<Option<String>> = None;
    let mut claimed = Vec::new();
    while !tasks.is_empty() {
        let turn = last.as_ref().map(|l| l.as_deref());
        let first = order_turning(&queued(&tasks), now, turn)[0].0;
        let (p, name) = tasks.remove(first);
        last = Some(p.batch.submitter.map(|s| s.to_string()));
        claimed.push(name);
    }
    assert_eq!(
        claimed,
        [
            "ana-0", "bob-0", "anon-0", "ana-1", "bob-1", "ana-2", "ana-3", "ana-4"
        ]
    );
}

#[test]
fn the_picker_takes_a_share_of_a_level_and_goes_no_lower_while_some_is_left() {
    // 20 at level 90 over 4 nodes: a share of 5, then stop.
    let mut p = Picker::new(128);
    let taken = (0..20).filter(|_| p.offer(90, 5)).count();
    assert_eq!(taken, 5);
    assert!(!p.offer(10, 128), "nothing lower while 90s are left");
    assert!(p.capped());
    // The whole of a level it may take, then on down.
    let mut p = Picker::new(10);
    assert_eq!(p.filled(), 0.0);
    assert_eq!((0..3).filter(|_| p.offer(90, 5)).count(), 3);
    assert_eq!(p.filled(), 0.3);
    assert_eq!((0..20).filter(|_| p.offer(10, 100)).count(), 7);
    assert!(!p.capped(), "it has all it wants");
    assert_eq!(p.taken(), 10);
    assert_eq!(p.filled(), 1.0);
    assert_eq!(Picker::new(0).filled(), 1.0, "nothing wanted: full");
}

proptest::proptest! {
    /// Whatever the queue, the order is a permutation whose levels
    /// never rise, and a party's tasks come oldest first.
    #[test]
    fn the_order_is_a_permutation_by_level(
        tasks in proptest::collection::vec((0u8..100, 0i64..600, 0u8..3), 0..40),
    ) {
        let now = at("2026-11-30T12:00:00Z");
        let places: Vec<(Place, String)> = tasks
            .iter()
            .enumerate()
            .map(|(i, (p, mins, who))| {
                let t = now - chrono::Duration::minutes(*mins);
                let who = ["a", "b", ""][*who as usize];
                let place = Place {
                    priority: *p,
                    class: Class::any(),
                    batch: Batch::new(t, (!who.is_empty()).then(|| Id::parse(who).unwrap())),
                };
                (place, format!("t{i:03}"))
            })
            .collect();
        let q: Vec<Queued<'_>> = places
            .iter()
            .map(|(p, n)| Queued { place: p, name: n.as_bytes(), servers: 0 })
            .collect();
        let o = order(&q, now);
        let mut seen: Vec<usize> = o.iter().map(|(i, _)| *i).collect();
        seen.sort();
        proptest::prop_assert_eq!(seen, (0..places.len()).collect::<Vec<_>>());
        for w in o.windows(2) {
            proptest::prop_assert!(w[0].1 >= w[1].1);
        }
        for (k, (i, level)) in o.iter().enumerate() {
            for (j, level2) in &o[k + 1..] {
                if level == level2 && places[*i].0.batch.submitter == places[*j].0.batch.submitter {
                    proptest::prop_assert!(places[*i].0.batch.minute <= places[*j].0.batch.minute);
                }
            }
        }
    }
}
