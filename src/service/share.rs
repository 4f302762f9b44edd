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
///
/// Dealt a task a slot to every peer in turn, round after round, up to
/// each one's share: a share is rounded up, so that nothing is left over, and
/// dealt whole in turn it ran out before the last peers (a helper's sweep:
/// twelve 20 s tasks among eight one-slot nodes went two each to six, and
/// two nodes sat idle 66 s while the others ran their second).
pub fn assign(work: usize, queued: usize, mine: u32, others: u32, idle: &[u32]) -> Vec<usize> {
    let all = mine.max(1).saturating_add(others);
    let mut room = others;
    let shares: Vec<(usize, usize)> = idle
        .iter()
        .map(|&slots| {
            let slots = slots.max(1);
            if room < slots {
                return (0, 0);
            }
            room -= slots;
            (slots as usize, fair_share(work, slots, all - slots))
        })
        .collect();
    let mut left = queued;
    let mut due = vec![0; idle.len()];
    // A slot's worth to each in turn: as many rounds as the largest share
    // has slot-fulls, at most `queued` in all.
    let mut dealt = true;
    while left > 0 && dealt {
        dealt = false;
        for (d, &(slots, share)) in due.iter_mut().zip(&shares) {
            let n = slots.min(share - *d).min(left);
            *d += n;
            left -= n;
            dealt |= n > 0;
        }
    }
    due
}

/// A peer's slot, as a node handing claims over reckons with it: when it
/// runs dry (seconds from now; idle: 0) and how long the peer's tasks
/// take (its `task_ms`; none: unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerSlot {
    pub dry: f64,
    pub task: Option<f64>,
}

/// A peer whose tasks take less than this share of this node's, or more
/// than its inverse, runs what it takes at its own pace: nodes of unequal
/// speed (a node held to a tenth of a core beside nodes with four tenths
/// took 2.2-2.7 s for a task they ran in 0.3-0.5 s). Within it, the
/// difference is the spread of the tasks the two happened to run.
const UNEQUAL: f64 = 0.5;

/// The pace of a node that takes over a peer's claims: its own (`mine`)
/// where it is faster than the peer by more than [`UNEQUAL`], the
/// peer's otherwise. Not its own where it is slower: a node's `task_ms`
/// is of the tasks it ran, and a peer behind a long task reads as fast.
fn faster(mine: Option<f64>, peer: f64) -> f64 {
    match mine {
        Some(m) if m < peer * UNEQUAL => m,
        _ => peer,
    }
}

/// How many claims at the head of a busy peer's line (`slots`, tasks of
/// `peer_task` seconds) a node with nothing to run leaves to it: the peer
/// starts them at its next task ends, which may have come, and a claim
/// taken over there would run twice. None where half the peer's task is
/// longer than the node's own (`mine`) and a committing `round`: nodes
/// of unequal speed, where the task, started there or not, ends sooner
/// here. Traced: fast nodes sat idle 3-6 s at a drain's end while slow
/// ones held one or two claims each, every line read as a task started
/// since the record and its head. The half, not the whole, was measured:
/// taken as soon as the task ends sooner here at all, the fast nodes sat
/// idle beside held claims 3.6 s (median of nine drains) against 2.9 s.
pub fn head_left(slots: u32, peer_task: f64, mine: Option<f64>, round: f64) -> usize {
    match mine {
        Some(m) if peer_task * UNEQUAL > m + round => 0,
        _ => slots as usize,
    }
}

/// How many of its claims not started a node hands back (the last first),
/// when it would start them at `starts` (seconds from now, in the order it
/// starts them: `Pace::starts`) and the slots of the peers that could take
/// them run dry at `peers` (`PeerSlot::dry`). A peer finds a task given
/// back within `lag` of running dry (a poll interval), takes from the
/// queue first (`queued` tasks), and runs tasks of `task` seconds, this
/// node's (none: unknown, one each), or its own (`PeerSlot::task`) where
/// that differs by more than [`UNEQUAL`]: a slow node otherwise reckoned
/// a fast peer took a task in its own, slow, time, and kept what the peer
/// would have run three times over. A claim goes back when a peer slot would
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
    peers: &[PeerSlot],
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
    let step_of = |peer: Option<f64>| {
        let paced = match (peer, task) {
            (Some(p), Some(t)) if p < t * UNEQUAL || p * UNEQUAL > t => Some(p),
            _ => task,
        };
        paced.map_or(u64::MAX, micros).max(1)
    };
    let lag = micros(lag);
    let cost = micros(cost);
    let peers_dry: Vec<f64> = peers.iter().map(|p| p.dry).collect();
    // A busy peer's time to run dry is its own reckoning, and it changes
    // as its tasks end: it must be sooner by another poll interval, or
    // claims would go back and forth with every change of the reckonings.
    let idle = peers_dry.iter().filter(|&&d| d <= 0.0).count() as u64;
    let mut nth_idle = 0;
    let mut free: BinaryHeap<Reverse<(u64, u64)>> = peers
        .iter()
        .map(|&PeerSlot { dry: d, task: peer }| {
            let found = if d <= 0.0 {
                nth_idle += 1;
                lag.saturating_mul(nth_idle) / (idle + 1)
            } else {
                // Found a poll interval after running dry, and sooner by
                // another (see above).
                lag.saturating_mul(2)
            };
            let at = micros(d).saturating_add(found).saturating_add(cost);
            Reverse((at, step_of(peer)))
        })
        .collect();
    let latest = starts.iter().copied().map(micros).max().unwrap_or(0);
    // The queue goes to the peers first, each task to the slot that frees
    // first; no further than the last of this node's starts.
    for _ in 0..queued {
        match free.peek_mut() {
            Some(mut slot) if slot.0.0 < latest => slot.0.0 = slot.0.0.saturating_add(slot.0.1),
            _ => break,
        }
    }
    let mut n = 0;
    for start in starts.iter().rev().copied().map(micros) {
        match free.peek_mut() {
            Some(mut slot) if slot.0.0 < start => {
                slot.0.0 = slot.0.0.saturating_add(slot.0.1);
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
/// (`mine` slots, tasks of `mine_task` seconds) starts its `k`th such
/// task one committing round (`round`) and `k / mine` tasks from now, at
/// the peer's pace or its own where it is the faster by more than
/// [`UNEQUAL`] (`faster`), and the peer
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
pub fn take_over(
    lines: &[Line],
    (mine, mine_task): (u32, Option<f64>),
    up_to: usize,
    round: f64,
) -> Vec<usize> {
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
                (i, at, faster(mine_task, l.task_secs))
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
mod tests;
