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

/// How many of its `waiting` claims a node hands back when `idle_slots` of
/// its peers' slots sit idle and `queued` tasks are left in the queue.
/// Idle peers take from the queue first: only when it cannot fill their
/// slots does the node give back, and then what it would not start within
/// the horizon (`startable`, a poll interval: an idle peer needs that long
/// to find a task given back), and no more than the idle slots could start
/// in that time (`per_slot` each, at least one): other nodes may be giving
/// back to the same peers. Short tasks it keeps: no peer could start them
/// sooner.
pub fn give_back(
    waiting: usize,
    queued: usize,
    idle_slots: u32,
    startable: usize,
    per_slot: usize,
) -> usize {
    if idle_slots == 0 || queued >= idle_slots as usize {
        return 0;
    }
    let they_start = (idle_slots as usize).saturating_mul(per_slot.max(1));
    waiting.saturating_sub(startable).min(they_start)
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
    fn idle_peers_get_what_will_not_start_soon() {
        assert_eq!(give_back(7, 40, 0, 0, 1), 0, "nobody idle: keep");
        assert_eq!(
            give_back(3, 0, 7, 1, 1),
            2,
            "the tail: keep what starts soon"
        );
        assert_eq!(give_back(7, 56, 7, 0, 1), 0, "idle peers have the queue");
        assert_eq!(give_back(7, 2, 7, 0, 1), 7, "the queue cannot fill them");
        assert_eq!(
            give_back(100, 0, 7, 500, 500),
            0,
            "short tasks: keep them all"
        );
        assert_eq!(
            give_back(80, 0, 1, 5, 5),
            5,
            "no more than one idle slot starts"
        );
        assert_eq!(give_back(80, 0, 1, 0, 0), 1, "at least one each");
        assert_eq!(give_back(0, 10, 3, 0, 1), 0);
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
