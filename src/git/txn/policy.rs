//! How a transaction gives way: rounds, backoff, interruption, and what
//! it may publish or start from ([`TxnPolicy`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use super::super::published::Publish;
use super::super::tree::Oid;
use super::{IDLE_DOUBLINGS, MAX_DOUBLINGS};

#[derive(Debug, Clone)]
pub struct TxnPolicy {
    /// Rounds before giving up on a contended transaction (the caller tries
    /// again on its next loop; nothing is lost).
    pub max_rounds: u32,
    /// Backoff after a lost race: uniformly random in [0, unit * 2^round],
    /// where the unit is the time the lost round took (at least
    /// `backoff_base`), and the doubling stops at `max_doublings` (or at
    /// `writers`), and the whole at `backoff_max`. The randomness keeps racing workers from
    /// colliding in lockstep; measuring in rounds makes the same policy fit
    /// a local bare repository (rounds of 50 ms) and a hosted one (rounds of
    /// a second). A short cap keeps a writer that lost a few rounds from
    /// waiting out others that just started.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The doubling stops after this many lost rounds (`MAX_DOUBLINGS`,
    /// or fewer for a node with nothing to run: `idle`).
    pub max_doublings: u32,
    /// Give up between rounds once any of these is set: the caller has
    /// something more urgent than this change (a worker whose task ended,
    /// with the next one claimed and waiting to start), and will try again
    /// after.
    pub interrupt: Vec<Arc<AtomicBool>>,
    /// After a lost round, begin another only if it ends by then (taking
    /// as long as the lost one did, after its backoff): the caller has
    /// something to do at that moment that a sync in flight would hold up
    /// (a slot due to free, a claim waiting to start there), and a change
    /// that can wait is tried again after it.
    pub rounds_end_by: Option<std::time::Instant>,
    /// How many may be pushing to the ref now, as the planner read them at
    /// the tip of its last round (0: not read): the doubling of the
    /// backoff stops there. At the end of a drain, the last few writers
    /// left, each with its last results, need not wait as long as a crowd
    /// would, with the ref idle between their rounds.
    pub writers: Option<Arc<AtomicU32>>,
    /// After the first lost round, publish this as the node's outbox
    /// ([`super::published`]), for a peer's commit to carry if it lands
    /// first.
    pub publish: Option<Arc<Publish>>,
    /// Publish before the first push, not after a lost round: a node
    /// whose pushes keep losing (`service::worker`, starved), so that
    /// its peers see its results and standing at their next commit.
    pub publish_first: bool,
    /// The tip of the grid's branch fetched just before (by a look that
    /// found work to take): the first round plans on it instead of
    /// fetching again. A tip moved since only loses that round's push,
    /// and the next fetches as always.
    pub fetched: Option<Oid>,
    /// Before pushing at all, leave the landing to peers still at work
    /// ([`Defer`]); only with `publish`, which it sends first.
    pub defer: Option<Defer>,
}

/// A delivery that may ride with a peer's commit: a node with nothing left
/// to run, holding its last results, while peers that hold claims are
/// still at work. Their next commits carry a published outbox
/// ([`super::super::published`]), so instead of pushing its own commit
/// (one more writer on the ref, at the moment the peers' last commits
/// take their turns there) it publishes, waits `step`, and plans again:
/// landed by then, it has nothing to change; the last of the nodes to
/// finish, finding every peer's results published, lands them all in one
/// commit. It pushes as before once no peer is at work, or `until` after
/// the transaction began.
#[derive(Debug, Clone)]
pub struct Defer {
    /// Set by the planner each round: peers hold claims at the tip that
    /// are not all results they published.
    pub peers_at_work: Arc<AtomicBool>,
    /// The wait between looks: about a round.
    pub step: Duration,
    /// Deferring ends this long after the transaction began: a few
    /// looks, within how long a result may wait at all.
    pub until: Duration,
}

impl Default for TxnPolicy {
    fn default() -> Self {
        TxnPolicy {
            max_rounds: 20,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(2),
            max_doublings: MAX_DOUBLINGS,
            interrupt: Vec::new(),
            rounds_end_by: None,
            writers: None,
            publish: None,
            publish_first: false,
            fetched: None,
            defer: None,
        }
    }
}

impl TxnPolicy {
    /// For a change that can wait (results of a node that is still busy):
    /// one more round after a lost one, then leave the ref to the writers
    /// who cannot wait (a node claiming its first work), and try later.
    pub fn yielding() -> Self {
        TxnPolicy {
            max_rounds: 2,
            ..TxnPolicy::default()
        }
    }

    /// For a node with nothing to run until this change lands (no task
    /// running, none waiting), in a grid whose tasks take longer than a
    /// round: its backoff doubles once at most. The writers it races are
    /// busy nodes, whose syncs begin again from the first round at each
    /// task's end (`interruptible`); waiting out up to eight rounds after
    /// each loss, it lost to them again and again (traced: seven rounds in
    /// 5.5 s, with work queued, while it sat idle).
    pub fn idle(self) -> Self {
        TxnPolicy {
            max_doublings: IDLE_DOUBLINGS,
            ..self
        }
    }

    /// Give up between rounds once `flag` is set (or any flag given
    /// before).
    pub fn interruptible(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt.push(flag);
        self
    }

    /// Begin no round after a lost one that would not end by `at`.
    pub fn rounds_end_by(self, at: Option<std::time::Instant>) -> Self {
        TxnPolicy {
            rounds_end_by: at,
            ..self
        }
    }

    /// Spread the backoff over no more rounds than `writers` holds when a
    /// round is lost (the planner stores it).
    pub fn writers(self, writers: Arc<AtomicU32>) -> Self {
        TxnPolicy {
            writers: Some(writers),
            ..self
        }
    }

    /// Plan the first round on `tip`, fetched just now (a transaction
    /// over the grid's branch alone).
    pub fn from_tip(self, tip: Oid) -> Self {
        TxnPolicy {
            fetched: Some(tip),
            ..self
        }
    }

    /// Publish `outbox` after the first lost round.
    pub fn publish(self, outbox: Publish) -> Self {
        TxnPolicy {
            publish: Some(Arc::new(outbox)),
            ..self
        }
    }

    /// Publish `outbox` before the first push (`publish_first`).
    pub fn publish_first(self, outbox: Publish) -> Self {
        TxnPolicy {
            publish_first: true,
            ..self.publish(outbox)
        }
    }

    /// Leave the landing to peers at work first (`Defer`).
    pub fn defer(self, defer: Defer) -> Self {
        TxnPolicy {
            defer: Some(defer),
            ..self
        }
    }

    /// Would a round that takes `round`, begun after a pause of `pause`,
    /// end too late?
    pub(super) fn ends_too_late(&self, pause: Duration, round: Duration) -> bool {
        self.rounds_end_by
            .is_some_and(|by| std::time::Instant::now() + pause + round > by)
    }

    pub(super) fn interrupted(&self) -> bool {
        self.interrupt.iter().any(|f| f.load(Ordering::SeqCst))
    }
}
