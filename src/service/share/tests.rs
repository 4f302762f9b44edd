use super::*;

/// [`super::give_back`] with every peer at this node's pace (none has
/// timed a task).
fn give_back(
    starts: &[f64],
    queued: usize,
    dry: &[f64],
    lag: f64,
    cost: f64,
    task: Option<f64>,
) -> usize {
    let peers: Vec<PeerSlot> = dry
        .iter()
        .map(|&dry| PeerSlot { dry, task: None })
        .collect();
    super::give_back(starts, queued, &peers, lag, cost, task)
}

#[test]
fn an_idle_node_takes_over_the_ends_of_long_lines() {
    let line = |waiting, task_secs| Line {
        waiting,
        head: 0,
        slots: 1,
        task_secs,
    };
    // Behind a long task, one claim waits: an idle node takes it.
    assert_eq!(take_over(&[line(1, 0.5)], (1, None), 4, 0.2), vec![1]);
    // Five wait: the node takes the last three (it starts them at
    // 0.2, 0.7 and 1.2 s, the peer its two left at 0.5 and 1.0 s); a
    // fourth it would start at 1.7 s, the peer at 1.0 s.
    assert_eq!(take_over(&[line(5, 0.5)], (1, None), 8, 0.2), vec![3]);
    // The longest line first, and no more than asked.
    assert_eq!(
        take_over(&[line(2, 1.0), line(6, 1.0)], (1, None), 1, 0.2),
        vec![0, 1]
    );
    // Tasks shorter than a round: the peer starts them first.
    assert_eq!(take_over(&[line(1, 0.1)], (1, None), 4, 0.2), vec![0]);
    // A peer of four slots starts its first four at once.
    let wide = Line {
        waiting: 4,
        head: 0,
        slots: 4,
        task_secs: 1.0,
    };
    assert_eq!(take_over(&[wide], (1, None), 4, 1.5), vec![0]);
    assert_eq!(take_over(&[wide], (1, None), 4, 0.2), vec![1]);
    // Its head it starts itself: of three, the last two.
    let headed = Line {
        head: 1,
        ..line(3, 2.0)
    };
    assert_eq!(take_over(&[headed], (1, None), 8, 0.2), vec![2]);
    assert_eq!(
        take_over(
            &[Line {
                head: 1,
                ..line(1, 5.0)
            }],
            (1, None),
            8,
            0.2
        ),
        vec![0]
    );
    assert_eq!(take_over(&[], (1, None), 4, 0.2), Vec::<usize>::new());
}

#[test]
fn a_fast_node_takes_over_a_slow_peers_line_at_its_own_pace_head_and_all() {
    // A peer held to a tenth of a core runs a task in 2.2 s, this node
    // in 0.4 s, a committing round 0.2 s.
    let slow = 2.2;
    let head = head_left(1, slow, Some(0.4), 0.2);
    assert_eq!(head, 0, "started there or not, it ends sooner here");
    // At a like pace, or not knowing its own, the node leaves the head.
    assert_eq!(head_left(1, 0.9, Some(0.5), 0.2), 1);
    assert_eq!(head_left(2, slow, None, 0.2), 2);
    // Slower, but by less than twice the node's task and a round.
    assert_eq!(head_left(1, 1.0, Some(0.4), 0.2), 1);
    assert_eq!(head_left(1, 1.3, Some(0.4), 0.2), 0);
    // Its two claims: both taken over; at the peer's pace, as before,
    // the node reckoned it would start the second 2.2 s on, too late.
    let line = Line {
        waiting: 2,
        head,
        slots: 1,
        task_secs: slow,
    };
    assert_eq!(take_over(&[line], (1, Some(0.4)), 4, 0.2), vec![2]);
    assert_eq!(take_over(&[line], (1, None), 4, 0.2), vec![1]);
    // Slower than the peer by the numbers, a node reckons at the peer's
    // pace: its own tasks may only have been longer.
    let quick = Line {
        waiting: 5,
        task_secs: 1.0,
        head: 0,
        ..line
    };
    assert_eq!(take_over(&[quick], (1, Some(4.0)), 8, 0.2), vec![3]);
    // Five: the node starts them 0.2, 0.6, 1.0, 1.4 and 1.8 s on, before
    // the peer would start the first (2.2 s): all five.
    let five = Line { waiting: 5, ..line };
    assert_eq!(take_over(&[five], (1, Some(0.4)), 8, 0.2), vec![5]);
}

#[test]
fn idle_peers_are_claimed_for_by_their_share() {
    // 128 tasks, 16 one-slot nodes, this node took its 8: each idle
    // peer gets 8.
    assert_eq!(assign(128, 120, 1, 15, &[1; 15]), vec![8; 15]);
    // Slots count: a peer of four gets four shares.
    assert_eq!(assign(64, 56, 1, 7, &[4, 1, 1, 1]), vec![32, 8, 8, 8]);
    // No more than is left: a task a slot to each first, then the rest
    // first come first served.
    assert_eq!(assign(10, 3, 1, 3, &[1, 1, 1]), vec![1, 1, 1]);
    assert_eq!(assign(12, 10, 1, 7, &[1; 7]), vec![2, 2, 2, 1, 1, 1, 1]);
    assert_eq!(assign(12, 8, 2, 6, &[1, 4, 1]), vec![2, 5, 1]);
    assert_eq!(assign(12, 6, 2, 6, &[1, 4, 1]), vec![1, 4, 1]);
    // Only the slots the drain pays for: two of the five peers.
    assert_eq!(assign(500, 400, 1, 2, &[1; 5]), vec![167, 167, 0, 0, 0]);
    // A peer bigger than what is left of them gets nothing; a smaller
    // one after it still may.
    assert_eq!(assign(100, 90, 1, 3, &[4, 2]), vec![0, 50]);
    // Nothing queued, nothing assigned.
    assert_eq!(assign(8, 0, 1, 7, &[1; 7]), vec![0; 7]);
}

#[test]
fn a_fair_share_divides_the_queue_by_free_slots() {
    assert_eq!(fair_share(64, 1, 7), 8, "eight idle nodes");
    assert_eq!(fair_share(65, 1, 7), 9, "rounded up: nothing is left over");
    assert_eq!(fair_share(128, 1, 15), 8);
    assert_eq!(fair_share(10, 2, 3), 4, "by slots");
    assert_eq!(fair_share(4, 1, 7), 1, "a burst among idle nodes");
    assert_eq!(fair_share(1, 1, 7), 1, "one task among idle nodes");
    assert_eq!(fair_share(0, 1, 7), 0);
    assert_eq!(fair_share(10, 1, 0), 10, "alone");
    assert_eq!(fair_share(10, 0, 0), 10, "no slots counts as one");
    assert_eq!(
        fair_share(usize::MAX / 2, u32::MAX, u32::MAX),
        usize::MAX / 4 + 1
    );
}

#[test]
fn a_share_counts_what_is_claimed_and_what_the_node_holds() {
    // 128 tasks, 16 nodes: the first takes 8, and so does the tenth,
    // though 72 are claimed by then.
    assert_eq!(share_to_claim(128, 0, 1, 15), 8);
    assert_eq!(share_to_claim(56 + 72, 0, 1, 15), 8);
    assert_eq!(share_to_claim(128, 8, 1, 15), 0, "it has its share");
    assert_eq!(share_to_claim(128, 9, 1, 15), 0);
    assert_eq!(share_to_claim(40, 2, 1, 3), 8);
}

#[test]
fn a_drain_pays_for_the_slots_its_work_covers_against_its_syncs() {
    assert_eq!(participants(64, 1.0, 0.1), 26, "seconds: every node");
    assert_eq!(participants(128, 1.0, 0.4), 18);
    assert_eq!(participants(500, 0.005, 0.15), 5, "milliseconds: a few");
    assert_eq!(participants(500, 0.005, 1.0), 2, "far host");
    assert_eq!(participants(0, 1.0, 0.1), 1, "at least one");
    assert_eq!(participants(usize::MAX, 1e300, 0.0), u32::MAX, "saturates");
    assert_eq!(participants(10, f64::NAN, 0.1), 1, "no NaN from a record");
    assert_eq!(others_taking_part(1, 7, 26), 7, "all of them");
    assert_eq!(others_taking_part(1, 7, 5), 4);
    assert_eq!(others_taking_part(1, 7, 1), 0, "alone");
    assert_eq!(others_taking_part(4, 7, 2), 0, "its own slots cover it");
    // 500 short tasks, 8 nodes, the drain paying for 5: the first takes
    // 100, not 63.
    assert_eq!(share_to_claim(500, 0, 1, others_taking_part(1, 7, 5)), 100);
}

#[test]
fn a_joining_node_stays_out_of_a_drain_its_holders_cover() {
    // 500 tasks of 5 ms, rounds of 0.3 s: the drain pays for 3 slots.
    assert!(!stays_out(500, 0.005, 0.3, 2), "two holders: it joins");
    assert!(stays_out(500, 0.005, 0.3, 3), "three cover it");
    // Tasks of a second pay for every node: it joins.
    assert!(!stays_out(64, 1.0, 0.3, 7));
    assert!(
        !stays_out(0, 0.005, 0.3, 3),
        "nothing to drain: it registers"
    );
    assert!(
        !stays_out(500, f64::NAN, 0.3, 0),
        "a record's NaN never keeps it out"
    );
}

/// Start times of `n` claims, one after another, of `task` seconds,
/// the first at `first`.
fn after(first: f64, task: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| first + task * i as f64).collect()
}

#[test]
fn idle_peers_get_what_will_not_start_soon() {
    let idle = |n: usize| vec![0.0; n];
    let one = Some(1.0);
    let (lag, t) = (1.0, 1.0);
    assert_eq!(
        give_back(&after(0.5, t, 7), 40, &[], lag, 0.0, one),
        0,
        "no peer: keep"
    );
    assert_eq!(
        give_back(&after(0.5, t, 3), 0, &idle(1), lag, 0.0, one),
        1,
        "one idle peer polls half an interval away: the last goes to it, \
         and the one before it would start no sooner there"
    );
    assert_eq!(
        give_back(&after(0.5, t, 3), 0, &idle(7), lag, 0.0, one),
        3,
        "of seven idle peers the first polls an eighth of an interval away"
    );
    assert_eq!(
        give_back(&[0.3], 0, &idle(1), lag, 0.0, one),
        0,
        "what starts before an idle peer would poll stays"
    );
    assert_eq!(
        give_back(&[0.3], 0, &idle(3), lag, 0.0, one),
        1,
        "three idle peers: the first polls a quarter of an interval away"
    );
    assert_eq!(
        give_back(&after(0.5, t, 7), 56, &idle(7), lag, 0.0, one),
        0,
        "idle peers have the queue"
    );
    assert_eq!(
        give_back(&after(0.5, t, 7), 2, &idle(7), lag, 0.0, one),
        6,
        "the queue cannot fill them"
    );
    assert_eq!(
        give_back(&after(0.0, 0.002, 100), 0, &idle(7), lag, 0.1, Some(0.002)),
        0,
        "short tasks: keep them all, as a peer's claim of any costs a round"
    );
    assert_eq!(
        give_back(&after(0.0, 0.2, 80), 0, &idle(1), lag, 0.0, Some(0.2)),
        39,
        "what the idle slot starts before this node would: they meet halfway"
    );
    assert_eq!(
        give_back(
            &[0.0, f64::INFINITY, f64::INFINITY],
            0,
            &idle(1),
            lag,
            0.0,
            None
        ),
        1,
        "nothing timed: one each"
    );
    assert_eq!(give_back(&[], 10, &idle(3), lag, 0.0, one), 0);
}

#[test]
fn a_claim_behind_a_long_task_goes_to_a_peer_that_runs_dry_sooner() {
    // Its running task has run 2 s, past the average of 0.5 s: it is
    // taken to run 2 s more, and the claims after it as long each.
    let behind_long = after(2.0, 2.0, 6);
    assert_eq!(
        give_back(&behind_long, 0, &[3.0, 3.5, 9.0], 1.0, 0.0, Some(0.5)),
        3,
        "the peers dry in 3 s and 3.5 s, found a poll interval later and sooner by one more, start the last three"
    );
    assert_eq!(
        give_back(&behind_long, 0, &[20.0], 1.0, 0.0, Some(0.5)),
        0,
        "a peer busy longer takes nothing"
    );
    assert_eq!(
        give_back(&behind_long, 40, &[3.0, 3.5], 1.0, 0.0, Some(0.5)),
        0,
        "the peers have the queue till after this node's last start"
    );
    // Behind a busy ref a handback pays only when the peer would start
    // the claim sooner by more than its commits cost.
    assert_eq!(
        give_back(&after(0.5, 1.0, 3), 0, &[0.0; 7], 1.0, 1.0, one_s()),
        2,
        "idle peers, handbacks that cost a second: the last two"
    );
    assert_eq!(
        give_back(&after(0.5, 1.0, 3), 0, &[0.0], 1.0, 1.0, one_s()),
        1,
        "one idle peer, handbacks that cost a second: only the last"
    );
    // Tasks of a second, nodes that started a round apart: the late one
    // keeps its claims, which it starts before the first runs dry.
    assert_eq!(
        give_back(&after(0.3, 1.0, 7), 0, &[7.0], 1.0, 0.0, one_s()),
        0
    );
    assert_eq!(
        give_back(
            &after(0.0, 1.0, 3),
            0,
            &[f64::NAN, f64::INFINITY],
            1.0,
            0.0,
            one_s()
        ),
        0,
        "a record's nonsense starts nothing"
    );
}

fn one_s() -> Option<f64> {
    Some(1.0)
}

#[test]
fn claims_below_the_best_queued_level_go_back() {
    assert_eq!(preempt(&[50, 50, 10, 10], Some(90)), vec![0, 1, 2, 3]);
    assert_eq!(preempt(&[90, 90, 10], Some(90)), vec![2]);
    assert_eq!(
        preempt(&[90, 50], Some(50)),
        Vec::<usize>::new(),
        "as high: kept"
    );
    assert!(preempt(&[10], None).is_empty(), "nothing queued");
    assert!(preempt(&[], Some(99)).is_empty());
}

#[test]
fn a_slow_node_hands_fast_peers_what_they_run_at_their_own_pace() {
    // A node with six claims waiting behind the one it runs, 2.5 s a task;
    // two idle peers that run such tasks in 0.5 s.
    let starts = [2.5, 5.0, 7.5, 10.0, 12.5, 15.0];
    let fast = |task| PeerSlot {
        dry: 0.0,
        task: Some(task),
    };
    let paced = super::give_back(&starts, 0, &[fast(0.5), fast(0.5)], 1.0, 1.0, Some(2.5));
    // Reckoned at its own pace, each peer would take one every 2.5 s.
    let own = give_back(&starts, 0, &[0.0, 0.0], 1.0, 1.0, Some(2.5));
    // The first it starts itself sooner than either peer could.
    assert_eq!((own, paced), (4, 5));
    // Peers within twice its pace (or half) run at its pace: the
    // difference is the spread of the tasks they ran.
    let near = super::give_back(&starts, 0, &[fast(1.5), fast(1.5)], 1.0, 1.0, Some(2.5));
    assert_eq!(near, own);
    // And a fast node does not hand slow peers what they would run late.
    let quick = [0.5, 1.0, 1.5, 2.0];
    let slow = super::give_back(&quick, 0, &[fast(5.0)], 1.0, 0.2, Some(0.5));
    assert_eq!(slow, 1);
    assert_eq!(give_back(&quick, 0, &[0.0], 1.0, 0.2, Some(0.5)), 2);
}
