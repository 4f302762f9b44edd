//! The orphan rule: when a claim no longer has a live owner, and what becomes
//! of the task then.

use super::claim::{ANSWER_WITHIN, Claim};
use super::node::{NodeRecord, NodeStatus};
use crate::time::{self, Timestamp};

/// Claims a task gets before it is abandoned, unless a grid sets another
/// number (`max_attempts`); the workers and `dgrid-worker reap` must agree.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanPolicy {
    /// A node whose last heartbeat is older than this is presumed dead.
    pub stale_after: chrono::Duration,
    /// Claims handed out before a task goes to `failed/` as abandoned.
    pub max_attempts: u32,
    /// How long a holder has to land its result once its task has ended
    /// (the grace in a claim's deadline): after an outage, the time it
    /// gets once the grid is back before its passed deadline counts.
    pub claim_grace: chrono::Duration,
}

/// Since when the judge of a claim has reached the grid without a break.
/// A limit that passed while the grid was away from it proves nothing of
/// the peer, which most likely could not reach the grid either: it ran its
/// task on, and its heartbeat, its answer and its result waited with it.
/// Each reason that reads a peer's silence therefore holds only once the
/// judge has been in reach for as long as that reason allows the peer
/// (without it, the first node back from an outage past `ANSWER_WITHIN`
/// reaps every claim made for a peer just before it and marks the peer as
/// taking none; past a claim's deadline or `stale_after`, every claim).
/// A worker judges by the clock until one of its syncs fails, as the
/// grid's tool does: a process just started knows of no outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Judged by the clock alone: a tool run once, on the grid as the
    /// forge gives it.
    Unbroken,
    /// A worker back from an outage, its syncs reaching the grid since
    /// then.
    Since(Timestamp),
    /// A worker whose last sync failed, or that has not synced yet: no
    /// silence counts.
    NotYet,
}

impl Reach {
    /// The judge has been in reach for longer than `allowance` at `now`.
    fn held_for(self, now: Timestamp, allowance: chrono::Duration) -> bool {
        match self {
            Reach::Unbroken => true,
            Reach::Since(t) => t.checked_add_signed(allowance).is_some_and(|end| end < now),
            Reach::NotYet => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanReason {
    /// Made for a peer that did not answer it in time.
    NotAnswered {
        answer_by: String,
    },
    DeadlinePassed {
        deadline: String,
    },
    HeartbeatStale {
        last_heartbeat: String,
    },
    NodeStopped,
    NodeUnknown,
    /// `claimed_at` or the node's `last_heartbeat` is later than any clock
    /// could be off by: forged (to hold a task for ever), or a broken clock.
    InTheFuture {
        what: &'static str,
        at: String,
    },
}

pub use crate::time::MAX_CLOCK_SKEW;

impl std::fmt::Display for OrphanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrphanReason::NotAnswered { answer_by } => {
                write!(f, "assigned claim not answered by {answer_by}")
            }
            OrphanReason::DeadlinePassed { deadline } => {
                write!(f, "claim deadline {deadline} passed")
            }
            OrphanReason::HeartbeatStale { last_heartbeat } => {
                write!(f, "node's last heartbeat {last_heartbeat} is stale")
            }
            OrphanReason::NodeStopped => write!(f, "node stopped without releasing its claim"),
            OrphanReason::NodeUnknown => {
                write!(f, "claiming node has no record and the claim is stale")
            }
            OrphanReason::InTheFuture { what, at } => {
                write!(f, "{what} {at} is in the future beyond any clock skew")
            }
        }
    }
}

/// What to do with an orphaned claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Back to the queue with this attempt number.
    Requeue { attempt: u32 },
    /// Attempts exhausted: to `failed/` as abandoned.
    Abandon,
}

/// Is this claim orphaned at `now`? `node` is the claiming node's record, if
/// it has one. An unparseable timestamp counts as long past: a claim nobody
/// can date must not block its task for ever.
pub fn orphan_reason(
    claim: &Claim,
    node: Option<&NodeRecord>,
    now: Timestamp,
    policy: &OrphanPolicy,
    reach: Reach,
) -> Option<OrphanReason> {
    let past = |s: &str, slack: chrono::Duration| {
        time::parse(s).is_none_or(|t| t.checked_add_signed(slack).is_some_and(|end| end < now))
    };
    let heard = |allowance| reach.held_for(now, allowance);
    if past(&claim.deadline, chrono::Duration::zero()) && heard(policy.claim_grace) {
        return Some(OrphanReason::DeadlinePassed {
            deadline: claim.deadline.clone(),
        });
    }
    if let Some(answer_by) = &claim.answer_by
        && past(answer_by, chrono::Duration::zero())
        && heard(ANSWER_WITHIN)
    {
        return Some(OrphanReason::NotAnswered {
            answer_by: answer_by.clone(),
        });
    }
    let future = |s: &str| time::parse(s).is_some_and(|t| t > now + MAX_CLOCK_SKEW);
    if future(&claim.claimed_at) {
        return Some(OrphanReason::InTheFuture {
            what: "claimed_at",
            at: claim.claimed_at.clone(),
        });
    }
    match node {
        Some(n) if future(&n.last_heartbeat) => Some(OrphanReason::InTheFuture {
            what: "node's last heartbeat",
            at: n.last_heartbeat.clone(),
        }),
        Some(n) if n.status == NodeStatus::Stopped => Some(OrphanReason::NodeStopped),
        Some(n) if past(&n.last_heartbeat, policy.stale_after) && heard(policy.stale_after) => {
            Some(OrphanReason::HeartbeatStale {
                last_heartbeat: n.last_heartbeat.clone(),
            })
        }
        Some(_) => None,
        None if past(&claim.claimed_at, policy.stale_after) && heard(policy.stale_after) => {
            Some(OrphanReason::NodeUnknown)
        }
        None => None,
    }
}

/// An assigned claim never answered goes back with its attempt unchanged:
/// as far as the grid knows, the task never ran.
pub fn disposition(claim: &Claim, policy: &OrphanPolicy) -> Disposition {
    if claim.unanswered() {
        Disposition::Requeue {
            attempt: claim.attempt,
        }
    } else if claim.attempt >= policy.max_attempts {
        Disposition::Abandon
    } else {
        Disposition::Requeue {
            attempt: claim.attempt + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Id;

    fn at(s: &str) -> Timestamp {
        time::parse(s).unwrap()
    }

    fn claim(claimed: &str, deadline: &str, attempt: u32) -> Claim {
        Claim {
            node_id: Id::parse("n").unwrap(),
            claimed_at: claimed.into(),
            deadline: deadline.into(),
            attempt,
            queued_at: None,
            assigned_by: None,
            answer_by: None,
            taken_from: None,
        }
    }

    fn node(hb: &str, status: NodeStatus) -> NodeRecord {
        NodeRecord::new(Id::parse("n").unwrap(), status, hb.into())
    }

    /// The rule as the tool applies it: by the clock alone.
    fn by_clock(c: &Claim, n: Option<&NodeRecord>, now: Timestamp) -> Option<OrphanReason> {
        orphan_reason(c, n, now, &POLICY, Reach::Unbroken)
    }

    const POLICY: OrphanPolicy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(60),
        max_attempts: 3,
        claim_grace: chrono::Duration::seconds(300),
    };

    #[test]
    fn live_claim_is_kept() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 1);
        let n = node("2026-01-01T00:00:30Z", NodeStatus::Busy);
        assert_eq!(by_clock(&c, Some(&n), at("2026-01-01T00:01:00Z")), None);
    }

    #[test]
    fn deadline_beats_a_fresh_heartbeat() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T00:00:40Z", 1);
        let n = node("2026-01-01T00:00:59Z", NodeStatus::Busy);
        assert!(matches!(
            by_clock(&c, Some(&n), at("2026-01-01T00:01:00Z")),
            Some(OrphanReason::DeadlinePassed { .. })
        ));
    }

    #[test]
    fn stale_heartbeat_stopped_or_unknown_node_orphan_the_claim() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T05:00:00Z", 1);
        let now = at("2026-01-01T00:02:01Z");
        let stale = node("2026-01-01T00:01:00Z", NodeStatus::Busy);
        assert!(matches!(
            by_clock(&c, Some(&stale), at("2026-01-01T00:02:01Z")),
            Some(OrphanReason::HeartbeatStale { .. })
        ));
        assert_eq!(by_clock(&c, Some(&stale), at("2026-01-01T00:01:59Z")), None);
        let stopped = node("2026-01-01T00:02:00Z", NodeStatus::Stopped);
        assert_eq!(
            by_clock(&c, Some(&stopped), now),
            Some(OrphanReason::NodeStopped)
        );
        assert_eq!(by_clock(&c, None, now), Some(OrphanReason::NodeUnknown));
        assert_eq!(by_clock(&c, None, at("2026-01-01T00:00:30Z")), None);
        let garbled = claim("yesterday", "soon", 1);
        assert!(by_clock(&garbled, None, now).is_some());
    }

    #[test]
    fn dates_in_the_future_hold_nothing() {
        let now = at("2026-01-01T00:00:00Z");
        // A forged claim: dated in year 9999, deadline and all.
        let forged = claim("9999-01-01T00:00:00Z", "9999-12-31T00:00:00Z", 1);
        assert!(matches!(
            by_clock(&forged, None, now),
            Some(OrphanReason::InTheFuture {
                what: "claimed_at",
                ..
            })
        ));
        // A heartbeat from year 9999 keeps no claim alive.
        let c = claim("2026-01-01T00:00:00Z", "9999-12-31T00:00:00Z", 1);
        let n = node("9999-01-01T00:00:00Z", NodeStatus::Busy);
        assert!(matches!(
            by_clock(&c, Some(&n), now),
            Some(OrphanReason::InTheFuture { .. })
        ));
        // A clock a few minutes fast is a clock, not a forgery.
        let n = node("2026-01-01T00:05:00Z", NodeStatus::Busy);
        assert_eq!(by_clock(&c, Some(&n), now), None);
    }

    #[test]
    fn an_assigned_claim_unanswered_in_time_goes_back_as_the_same_attempt() {
        let p = POLICY;
        let mut c = claim("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 2);
        c.assigned_by = Some(Id::parse("n2").unwrap());
        c.answer_by = Some("2026-01-01T00:01:00Z".into());
        let n = node("2026-01-01T00:00:50Z", NodeStatus::Idle);
        // Within its window, a live node's assigned claim stands.
        assert_eq!(by_clock(&c, Some(&n), at("2026-01-01T00:00:59Z")), None);
        // Past it, it is an orphan however fresh the record looks.
        assert_eq!(
            by_clock(&c, Some(&n), at("2026-01-01T00:01:01Z")),
            Some(OrphanReason::NotAnswered {
                answer_by: "2026-01-01T00:01:00Z".into()
            })
        );
        // A date nobody can read counts as long past.
        c.answer_by = Some("soon".into());
        assert!(matches!(
            by_clock(&c, Some(&n), at("2026-01-01T00:00:30Z")),
            Some(OrphanReason::NotAnswered { .. })
        ));
        // It never ran: no attempt is spent, even at the limit.
        c.attempt = p.max_attempts;
        assert_eq!(
            disposition(&c, &p),
            Disposition::Requeue {
                attempt: p.max_attempts
            }
        );
        // Answered, it is the node's own claim like any other.
        c.answer_by = None;
        assert_eq!(disposition(&c, &p), Disposition::Abandon);
    }

    #[test]
    fn attempts_are_counted_up_to_the_limit() {
        let c = |a| claim("x", "y", a);
        assert_eq!(
            disposition(&c(1), &POLICY),
            Disposition::Requeue { attempt: 2 }
        );
        assert_eq!(
            disposition(&c(2), &POLICY),
            Disposition::Requeue { attempt: 3 }
        );
        assert_eq!(disposition(&c(3), &POLICY), Disposition::Abandon);
    }

    #[test]
    fn a_limit_passed_while_the_grid_was_away_counts_once_the_judge_has_heard_for_as_long() {
        let mut answer = claim("2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z", 1);
        answer.assigned_by = Some(Id::parse("n2").unwrap());
        answer.answer_by = Some("2026-01-01T00:01:00Z".into());
        let fresh = node("2026-01-01T00:19:50Z", NodeStatus::Busy);
        let stale = node("2026-01-01T00:00:00Z", NodeStatus::Busy);
        let past_deadline = claim("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", 1);
        // Twenty minutes on: the answer, the deadline and the heartbeat
        // (60 s allowed) have all passed by the clock.
        let now = at("2026-01-01T00:20:00Z");
        let back = |secs| Reach::Since(now - chrono::Duration::seconds(secs));
        for (reach, answers, deadlines, hearts) in [
            (Reach::NotYet, false, false, false),
            // Back for 30 s: nothing counts yet.
            (back(30), false, false, false),
            // Back for 61 s: the answer (60 s) and the heartbeat (60 s).
            (back(61), true, false, true),
            // Back for longer than the grace (300 s): the deadline too.
            (back(301), true, true, true),
            (Reach::Unbroken, true, true, true),
        ] {
            assert_eq!(
                orphan_reason(&answer, Some(&fresh), now, &POLICY, reach).is_some(),
                answers,
                "{reach:?}"
            );
            assert_eq!(
                orphan_reason(&past_deadline, Some(&fresh), now, &POLICY, reach).is_some(),
                deadlines,
                "{reach:?}"
            );
            let live = claim("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 1);
            assert_eq!(
                orphan_reason(&live, Some(&stale), now, &POLICY, reach).is_some(),
                hearts,
                "{reach:?}"
            );
            assert_eq!(
                orphan_reason(&live, None, now, &POLICY, reach).is_some(),
                hearts,
                "{reach:?}: an unknown node's claim"
            );
        }
        // What reads no silence holds at once: a stopped node, a forgery.
        let stopped = node("2026-01-01T00:19:00Z", NodeStatus::Stopped);
        let live = claim("2026-01-01T00:19:00Z", "2026-01-02T00:00:00Z", 1);
        assert_eq!(
            orphan_reason(&live, Some(&stopped), now, &POLICY, Reach::NotYet),
            Some(OrphanReason::NodeStopped)
        );
        let forged = claim("2099-01-01T00:00:00Z", "2099-01-02T00:00:00Z", 1);
        assert!(orphan_reason(&forged, None, now, &POLICY, Reach::NotYet).is_some());
    }
}
