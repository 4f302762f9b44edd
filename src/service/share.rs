//! How much of the work in the grid is this node's: its fair share of a
//! backlog, what it hands back to idle peers, and what goes back for work
//! of a higher priority. Pure; the numbers come from a sync's look at the
//! queue and the peers' records.

/// This node's fair share of a queue of `queue_len`: the queue divided
/// among the nodes that can take work now, by their slots (`mine`, and the
/// `others_free` slots of idle peers). Every idle node then starts at once,
/// and a backlog of long tasks is spread over all of them, not held by the
/// first to see it.
pub fn fair_share(queue_len: usize, mine: u32, others_free: u32) -> usize {
    let mine = u128::from(mine.max(1));
    let all = mine + u128::from(others_free);
    // At most queue_len, so the cast back cannot truncate.
    (queue_len as u128 * mine).div_ceil(all) as usize
}

/// How many more to claim for a node that holds `holding` tasks, when the
/// grid holds `work` tasks not done (queued, or claimed by anyone and not
/// finished): its fair share of all of it ([`fair_share`]), less what it
/// holds. Nodes that come late to a backlog get as much as the first.
pub fn share_to_claim(work: usize, holding: usize, mine: u32, others: u32) -> usize {
    fair_share(work, mine, others).saturating_sub(holding)
}

/// How many slots a drain of `work` tasks pays for, when tasks take
/// `task_secs` and one round of a committing sync takes `round_secs` (as
/// measured: what a commit holds the one ref for). Each node that takes
/// part puts its claim on the ref before its first task starts, so the
/// last of `p` slots starts about `p` rounds after the first, and the
/// drain takes about `p * round + work * task / p`: least at
/// `p = sqrt(work * task / round)`. A backlog of tasks that take seconds
/// pays for every node on any host (64 tasks of 1 s, rounds of 0.1 s: 26
/// slots); 500 tasks that take a few milliseconds pay for five, and behind
/// a far host for two. Slots, not nodes: with several slots a node, this
/// errs towards fewer commits.
pub fn participants(work: usize, task_secs: f64, round_secs: f64) -> u32 {
    let task = task_secs.clamp(0.001, 86_400.0);
    let round = round_secs.clamp(0.001, 3_600.0);
    // `as` saturates (a NaN from nowhere gives 0, hence the max).
    ((work as f64 * task / round).sqrt().ceil() as u32).max(1)
}

/// The peers' slots that count in this node's share ([`fair_share`]) when
/// a drain pays for `participants` slots: all of them, or fewer, so that
/// the first nodes to claim take the whole of a drain of short tasks and
/// the rest find the queue empty, with no commits of theirs on the ref.
pub fn others_taking_part(mine: u32, others: u32, participants: u32) -> u32 {
    others.min(participants.saturating_sub(mine.max(1)))
}

/// Does a node that is joining the grid (its first commit, with nothing
/// of its own to deliver) stay out of a drain of `work` tasks, when the
/// peers holding claims at the tip have `holding_slots` slots? Yes when
/// those cover the slots the drain pays for ([`participants`]): its
/// registration would be one more writer on the one ref, to take work the
/// holders finish sooner. It then pushes nothing and joins once the drain
/// is over. Measured: in a fleet of eight starting on 500 `true` tasks,
/// three nodes took all the work while five lost four to eight rounds
/// each, on the same two cores, trying to register.
pub fn stays_out(work: usize, task_secs: f64, round_secs: f64, holding_slots: u32) -> bool {
    work > 0 && holding_slots >= participants(work, task_secs, round_secs)
}

/// How many tasks a node claims for each of its idle peers that start
/// claims made for them (their slots in `idle`), once it has claimed its
/// own: each peer's fair share of the `work` not done, as if it had
/// claimed for itself with nothing held, from the `queued` tasks left.
/// Peers' slots count up to `others` in all, the peers' slots the drain
/// pays for (as [`others_taking_part`] gives it; `mine` is this node's):
/// a drain of short tasks is not spread over peers it does not pay for.
pub fn assign(work: usize, queued: usize, mine: u32, others: u32, idle: &[u32]) -> Vec<usize> {
    let all = mine.max(1).saturating_add(others);
    let mut left = queued;
    let mut room = others;
    idle.iter()
        .map(|&slots| {
            let slots = slots.max(1);
            if room < slots || left == 0 {
                return 0;
            }
            room -= slots;
            let n = fair_share(work, slots, all - slots).min(left);
            left -= n;
            n
        })
        .collect()
}

/// How many of its claims not started a node hands back (the last first),
/// when it would start them at `starts` (seconds from now, in the order it
/// starts them: `Pace::starts`) and the slots of the peers that could take
/// them run dry at `peers_dry` (seconds from now; idle: 0). A peer finds a
/// task given back within `lag` of running dry (a poll interval), takes
/// from the queue first (`queued` tasks), and runs tasks of `task` seconds
/// (none: unknown, one each). A claim goes back when a peer slot would
/// start it sooner than this node, by more than `cost` (what the handback
/// costs: its commit and the peer's claim, on a ref other nodes push to,
/// and what it waits on the way, which the worker reckons at a poll
/// interval):
/// to idle peers what this node would not start before the first of them
/// polls, and to busy ones what it would start a poll interval after they
/// run dry and find it, as behind a task that runs far longer than the
/// rest. Short tasks it keeps: no peer could start them sooner.
///
/// Idle peers poll a `lag` apart each, at times nobody arranged: of `k`
/// of them, the first polls a (k+1)th of `lag` from now on average, the
/// second two, and so on. Taking each at the whole `lag` kept a claim
/// behind a task that ran on while six peers sat idle (BENCHMARKS.md, "A
/// claim behind a long task, with peers idle").
pub fn give_back(
    starts: &[f64],
    queued: usize,
    peers_dry: &[f64],
    lag: f64,
    cost: f64,
    task: Option<f64>,
) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Microseconds, so that the times order as integers; never is u64::MAX.
    let micros = |secs: f64| -> u64 {
        if secs.is_nan() {
            u64::MAX
        } else {
            // `as` saturates: infinity is never.
            (secs.max(0.0) * 1e6) as u64
        }
    };
    let step = task.map_or(u64::MAX, micros).max(1);
    let lag = micros(lag);
    let cost = micros(cost);
    // A busy peer's time to run dry is its own reckoning, and it changes
    // as its tasks end: it must be sooner by another poll interval, or
    // claims would go back and forth with every change of the reckonings.
    let idle = peers_dry.iter().filter(|&&d| d <= 0.0).count() as u64;
    let mut nth_idle = 0;
    let mut free: BinaryHeap<Reverse<u64>> = peers_dry
        .iter()
        .map(|&d| {
            let found = if d <= 0.0 {
                nth_idle += 1;
                lag.saturating_mul(nth_idle) / (idle + 1)
            } else {
                // Found a poll interval after running dry, and sooner by
                // another (see above).
                lag.saturating_mul(2)
            };
            Reverse(micros(d).saturating_add(found).saturating_add(cost))
        })
        .collect();
    let latest = starts.iter().copied().map(micros).max().unwrap_or(0);
    // The queue goes to the peers first, each task to the slot that frees
    // first; no further than the last of this node's starts.
    for _ in 0..queued {
        match free.peek_mut() {
            Some(mut slot) if slot.0 < latest => slot.0 = slot.0.saturating_add(step),
            _ => break,
        }
    }
    let mut n = 0;
    for start in starts.iter().rev().copied().map(micros) {
        match free.peek_mut() {
            Some(mut slot) if slot.0 < start => {
                slot.0 = slot.0.saturating_add(step);
                n += 1;
            }
            _ => break,
        }
    }
    n
}

/// A busy peer's line, as a node with nothing to run reads it from the
/// tip and the peer's record: its claims not started, how many at its
/// head are not to be taken (it starts them at its next task ends, which
/// may have come), its slots, and how long its tasks take (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub waiting: usize,
    pub head: usize,
    pub slots: u32,
    pub task_secs: f64,
}

/// How many claims a node with nothing to run takes over from each busy
/// peer's line (the last in each line first; work stealing): the node
/// (`mine` slots) starts its `k`th such task one committing round
/// (`round`) and `k / mine` of the peer's tasks from now, and the peer
/// starts its `i`th waiting claim when `i / slots + 1` of its tasks have
/// ended (the one running counted whole: its length is not known, and a
/// task that runs long is what leaves a line behind it). A claim is taken
/// while the node would start it sooner, the latest first, at most
/// `up_to` in all, and never one of a line's `head`. Where tasks take less than a round nothing is taken:
/// the peer starts them before the node's commit could land.
///
/// The handback (`give_back`) asks the holder's commit, on a ref it
/// races for at every task's end; this asks the commit of a node that
/// has nothing else to do (traced in mixed drains: a node idle for 1-3 s
/// while a peer held claims behind a long task, BENCHMARKS.md).
pub fn take_over(lines: &[Line], mine: u32, up_to: usize, round: f64) -> Vec<usize> {
    let mut taken = vec![0usize; lines.len()];
    let mine = mine.max(1) as usize;
    for k in 0..up_to {
        // The line whose last claim not taken would start latest.
        let latest = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| l.waiting > taken[*i] + l.head)
            .map(|(i, l)| {
                let last = l.waiting - taken[i] - 1;
                let at = ((last / l.slots.max(1) as usize) as f64 + 1.0) * l.task_secs;
                (i, at, l.task_secs)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, at, task)) = latest else {
            break;
        };
        if round + (k / mine) as f64 * task >= at {
            break;
        }
        taken[i] += 1;
    }
    taken
}

/// Which of the claims a node holds and has not started go back to the
/// queue because work of a higher priority still waits there (after the
/// look that saw it claimed this node's share of it, ahead of them): those
/// whose level (priority with age, `grid::schedule`) is below
/// `top_queued`, the best level left that this node could claim. Another
/// node may start them sooner than this one, busy with higher work, and
/// this node's next claim takes what is left of the higher work first.
/// (Indices into `waiting`.)
pub fn preempt(waiting: &[u8], top_queued: Option<u8>) -> Vec<usize> {
    let Some(top) = top_queued else {
        return Vec::new();
    };
    waiting
        .iter()
        .enumerate()
        .filter(|(_, level)| **level < top)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_node_takes_over_the_ends_of_long_lines() {
        let line = |waiting, task_secs| Line {
            waiting,
            head: 0,
            slots: 1,
            task_secs,
        };
        // Behind a long task, one claim waits: an idle node takes it.
        assert_eq!(take_over(&[line(1, 0.5)], 1, 4, 0.2), vec![1]);
        // Five wait: the node takes the last three (it starts them at
        // 0.2, 0.7 and 1.2 s, the peer its two left at 0.5 and 1.0 s); a
        // fourth it would start at 1.7 s, the peer at 1.0 s.
        assert_eq!(take_over(&[line(5, 0.5)], 1, 8, 0.2), vec![3]);
        // The longest line first, and no more than asked.
        assert_eq!(
            take_over(&[line(2, 1.0), line(6, 1.0)], 1, 1, 0.2),
            vec![0, 1]
        );
        // Tasks shorter than a round: the peer starts them first.
        assert_eq!(take_over(&[line(1, 0.1)], 1, 4, 0.2), vec![0]);
        // A peer of four slots starts its first four at once.
        let wide = Line {
            waiting: 4,
            head: 0,
            slots: 4,
            task_secs: 1.0,
        };
        assert_eq!(take_over(&[wide], 1, 4, 1.5), vec![0]);
        assert_eq!(take_over(&[wide], 1, 4, 0.2), vec![1]);
        // Its head it starts itself: of three, the last two.
        let headed = Line {
            head: 1,
            ..line(3, 2.0)
        };
        assert_eq!(take_over(&[headed], 1, 8, 0.2), vec![2]);
        assert_eq!(
            take_over(
                &[Line {
                    head: 1,
                    ..line(1, 5.0)
                }],
                1,
                8,
                0.2
            ),
            vec![0]
        );
        assert_eq!(take_over(&[], 1, 4, 0.2), Vec::<usize>::new());
    }

    #[test]
    fn idle_peers_are_claimed_for_by_their_share() {
        // 128 tasks, 16 one-slot nodes, this node took its 8: each idle
        // peer gets 8.
        assert_eq!(assign(128, 120, 1, 15, &[1; 15]), vec![8; 15]);
        // Slots count: a peer of four gets four shares.
        assert_eq!(assign(64, 56, 1, 7, &[4, 1, 1, 1]), vec![32, 8, 8, 8]);
        // No more than is left, first come first served.
        assert_eq!(assign(10, 3, 1, 3, &[1, 1, 1]), vec![3, 0, 0]);
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
}
