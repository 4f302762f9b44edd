//! The orphan rule: when a claim no longer has a live owner, and what becomes
//! of the task then.

use super::claim::Claim;
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

/// How far ahead of ours another node's clock may be. A claim made, or a
/// heartbeat sent, later than this from now cannot be true: it is treated
/// as unreadable, i.e. as long past, so that nobody holds a task for ever by
/// dating a claim or a heartbeat in year 9999. (Such a claim is reaped at
/// first sight; were it to survive until the date came near, it would be
/// judged like any other then.)
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::hours(1);

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
) -> Option<OrphanReason> {
    let past = |s: &str, slack: chrono::Duration| time::parse(s).is_none_or(|t| t + slack < now);
    if past(&claim.deadline, chrono::Duration::zero()) {
        return Some(OrphanReason::DeadlinePassed {
            deadline: claim.deadline.clone(),
        });
    }
    if let Some(answer_by) = &claim.answer_by
        && past(answer_by, chrono::Duration::zero())
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
        Some(n) if past(&n.last_heartbeat, policy.stale_after) => {
            Some(OrphanReason::HeartbeatStale {
                last_heartbeat: n.last_heartbeat.clone(),
            })
        }
        Some(_) => None,
        None if past(&claim.claimed_at, policy.stale_after) => Some(OrphanReason::NodeUnknown),
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

    const POLICY: OrphanPolicy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(60),
        max_attempts: 3,
    };

    #[test]
    fn live_claim_is_kept() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 1);
        let n = node("2026-01-01T00:00:30Z", NodeStatus::Busy);
        assert_eq!(
            orphan_reason(&c, Some(&n), at("2026-01-01T00:01:00Z"), &POLICY),
            None
        );
    }

    #[test]
    fn deadline_beats_a_fresh_heartbeat() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T00:00:40Z", 1);
        let n = node("2026-01-01T00:00:59Z", NodeStatus::Busy);
        assert!(matches!(
            orphan_reason(&c, Some(&n), at("2026-01-01T00:01:00Z"), &POLICY),
            Some(OrphanReason::DeadlinePassed { .. })
        ));
    }

    #[test]
    fn stale_heartbeat_stopped_or_unknown_node_orphan_the_claim() {
        let c = claim("2026-01-01T00:00:00Z", "2026-01-01T05:00:00Z", 1);
        let now = at("2026-01-01T00:02:01Z");
        let stale = node("2026-01-01T00:01:00Z", NodeStatus::Busy);
        assert!(matches!(
            orphan_reason(&c, Some(&stale), at("2026-01-01T00:02:01Z"), &POLICY),
            Some(OrphanReason::HeartbeatStale { .. })
        ));
        assert_eq!(
            orphan_reason(&c, Some(&stale), at("2026-01-01T00:01:59Z"), &POLICY),
            None
        );
        let stopped = node("2026-01-01T00:02:00Z", NodeStatus::Stopped);
        assert_eq!(
            orphan_reason(&c, Some(&stopped), now, &POLICY),
            Some(OrphanReason::NodeStopped)
        );
        assert_eq!(
            orphan_reason(&c, None, now, &POLICY),
            Some(OrphanReason::NodeUnknown)
        );
        assert_eq!(
            orphan_reason(&c, None, at("2026-01-01T00:00:30Z"), &POLICY),
            None
        );
        let garbled = claim("yesterday", "soon", 1);
        assert!(orphan_reason(&garbled, None, now, &POLICY).is_some());
    }

    #[test]
    fn dates_in_the_future_hold_nothing() {
        let now = at("2026-01-01T00:00:00Z");
        // A forged claim: dated in year 9999, deadline and all.
        let forged = claim("9999-01-01T00:00:00Z", "9999-12-31T00:00:00Z", 1);
        assert!(matches!(
            orphan_reason(&forged, None, now, &POLICY),
            Some(OrphanReason::InTheFuture {
                what: "claimed_at",
                ..
            })
        ));
        // A heartbeat from year 9999 keeps no claim alive.
        let c = claim("2026-01-01T00:00:00Z", "9999-12-31T00:00:00Z", 1);
        let n = node("9999-01-01T00:00:00Z", NodeStatus::Busy);
        assert!(matches!(
            orphan_reason(&c, Some(&n), now, &POLICY),
            Some(OrphanReason::InTheFuture { .. })
        ));
        // A clock a few minutes fast is a clock, not a forgery.
        let n = node("2026-01-01T00:05:00Z", NodeStatus::Busy);
        assert_eq!(orphan_reason(&c, Some(&n), now, &POLICY), None);
    }

    #[test]
    fn an_assigned_claim_unanswered_in_time_goes_back_as_the_same_attempt() {
        let p = POLICY;
        let mut c = claim("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 2);
        c.assigned_by = Some(Id::parse("n2").unwrap());
        c.answer_by = Some("2026-01-01T00:01:00Z".into());
        let n = node("2026-01-01T00:00:50Z", NodeStatus::Idle);
        // Within its window, a live node's assigned claim stands.
        assert_eq!(
            orphan_reason(&c, Some(&n), at("2026-01-01T00:00:59Z"), &p),
            None
        );
        // Past it, it is an orphan however fresh the record looks.
        assert_eq!(
            orphan_reason(&c, Some(&n), at("2026-01-01T00:01:01Z"), &p),
            Some(OrphanReason::NotAnswered {
                answer_by: "2026-01-01T00:01:00Z".into()
            })
        );
        // A date nobody can read counts as long past.
        c.answer_by = Some("soon".into());
        assert!(matches!(
            orphan_reason(&c, Some(&n), at("2026-01-01T00:00:30Z"), &p),
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
}
