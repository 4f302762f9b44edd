//! The transaction loop (PROTOCOL.md, The transaction).
//!
//! A round: fetch `origin/main`, let the caller plan its change against that
//! fresh tip (checking its preconditions there), build the commit on top of
//! the tip, push. A rejected push means someone else won the round: fetch and
//! plan again from scratch, so a precondition is never assumed, and nothing is
//! ever rebased (the "already upstream" trap cannot happen: every round makes
//! a new commit from the tip it has just read). A push whose answer is lost is
//! checked against the re-fetched tip before anything is redone.
//!
//! The same loop runs over several branches at once ([`run_branches`]): one
//! commit per branch that changes, all pushed with `git push --atomic`, so
//! that they land together or not at all (`dgrid-worker archive` moves
//! results from `main` to `archive` this way). [`run`] is that loop over
//! the grid's one branch.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::escape::Untrusted;

use super::command::GitError;
use super::edits::{Edits, Signature};
use super::published::Publish;
use super::repo::GridRepo;
use super::tree::Oid;
use super::write::PushOutcome;

mod policy;
pub use policy::{Defer, TxnPolicy};

/// What the planner sees: the freshly fetched tip (none for an empty remote)
/// and the repository to read it with.
pub struct Txn<'a> {
    pub repo: &'a GridRepo,
    pub tip: Option<Oid>,
}

/// A planned change. No edits means there is nothing to do this round.
pub struct Plan<T> {
    pub edits: Edits,
    pub message: String,
    pub value: T,
}

#[derive(Debug)]
pub enum TxnOutcome<T> {
    Committed {
        commit: Oid,
        value: T,
        /// Rounds lost to other writers before this one won.
        rejections: u32,
    },
    /// The plan had nothing to change at the tip it last saw.
    Unchanged {
        tip: Option<Oid>,
        value: T,
        rejections: u32,
    },
    /// The push failed in a way that leaves open whether it landed, and the
    /// remote cannot be reached to tell. Check with [`landed`] once it can.
    Uncertain {
        commit: Oid,
        value: T,
        error: GitError,
    },
}

/// Did an uncertain commit land? Fetches; an error means "still unknown".
pub fn landed(repo: &GridRepo, commit: &str) -> Result<bool, GitError> {
    match repo.fetch()? {
        Some(tip) => repo.is_ancestor(commit, &tip),
        None => Ok(false),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error(transparent)]
    Git(#[from] GitError),
    /// A stuck lock on the server (a git server killed mid-push keeps it)
    /// refuses every push as a lost race does, over HTTPS with the same
    /// words (`failed to update ref`): `moved` tells them apart, as no
    /// other writer moved the branch in all those rounds.
    #[error("{}", contended(*rounds, last, *moved))]
    Contended {
        rounds: u32,
        last: String,
        moved: bool,
    },
    /// Given up between rounds because the caller asked (see
    /// [`TxnPolicy::interrupt`] and [`TxnPolicy::rounds_end_by`]): nothing
    /// was changed, nothing is wrong.
    #[error("interrupted after {rounds} rounds lost to other writers")]
    Interrupted { rounds: u32 },
}

fn contended(rounds: u32, last: &str, moved: bool) -> String {
    match moved {
        true => format!("gave up after {rounds} rounds lost to other writers (last: {last})"),
        false => format!(
            "gave up after {rounds} pushes the server refused to apply though no other \
             writer moved the branch: a lock left on the server (`refs/heads/<branch>.lock` \
             in the grid's repository, by a push killed mid-way?) blocks every write until \
             it is removed there (last: {last})"
        ),
    }
}

impl TxnError {
    /// The remote failure behind this, if it is one.
    pub fn remote_failure(&self) -> Option<super::RemoteFailure> {
        match self {
            TxnError::Git(e) => e.remote_failure(),
            TxnError::Contended { .. } | TxnError::Interrupted { .. } => None,
        }
    }

    /// When to try the grid again after this: at the poll interval, or,
    /// when the server refused the credentials, no more than once a minute,
    /// so that a node with a revoked token does not knock on the forge
    /// every few seconds for hours (and get its address locked out).
    pub fn retry_after(&self, interval: std::time::Duration) -> std::time::Duration {
        if self
            .remote_failure()
            .is_some_and(|f| f.refused_credentials())
        {
            interval.max(OPERATOR_RETRY)
        } else {
            interval
        }
    }
}

/// How often a node retries a grid that refused its credentials.
pub const OPERATOR_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Who a transaction's commits are by.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    pub fn for_node(node: &str) -> Identity {
        Identity {
            name: format!("dgrid-worker {node}"),
            email: format!("{node}@dgrid.invalid"),
        }
    }

    /// The same identity for a git child's environment: the one place the
    /// worker, the tools and `init` get `GIT_AUTHOR_*`/`GIT_COMMITTER_*`
    /// from, so that the grid's history names each writer the same way
    /// whichever path made the commit.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GIT_AUTHOR_NAME", &self.name),
            ("GIT_AUTHOR_EMAIL", &self.email),
            ("GIT_COMMITTER_NAME", &self.name),
            ("GIT_COMMITTER_EMAIL", &self.email),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

pub fn run<T>(
    repo: &GridRepo,
    identity: &Identity,
    policy: &TxnPolicy,
    mut plan: impl FnMut(&Txn<'_>) -> Result<Plan<T>, GitError>,
) -> Result<TxnOutcome<T>, TxnError> {
    let branch = repo.branch().to_owned();
    let outcome = run_branches(repo, identity, policy, &[branch.as_str()], |t| {
        let planned = plan(&Txn {
            repo: t.repo,
            tip: t.tips[0].clone(),
        })?;
        Ok(BranchesPlan {
            changes: vec![Change {
                edits: planned.edits,
                message: planned.message,
            }],
            value: planned.value,
        })
    })?;
    let only = |commits: Vec<Option<Oid>>| {
        commits
            .into_iter()
            .next()
            .flatten()
            .expect("a change to the one branch is a commit")
    };
    Ok(match outcome {
        BranchesOutcome::Committed {
            commits,
            value,
            rejections,
        } => TxnOutcome::Committed {
            commit: only(commits),
            value,
            rejections,
        },
        BranchesOutcome::Unchanged {
            mut tips,
            value,
            rejections,
        } => TxnOutcome::Unchanged {
            tip: tips.pop().flatten(),
            value,
            rejections,
        },
        BranchesOutcome::Uncertain {
            commits,
            value,
            error,
        } => TxnOutcome::Uncertain {
            commit: only(commits),
            value,
            error,
        },
    })
}

/// What the planner of a transaction over several branches sees: their
/// freshly fetched tips, in the order the branches were given (`None` for
/// a branch the remote does not have yet).
pub struct BranchesTxn<'a> {
    pub repo: &'a GridRepo,
    pub tips: Vec<Option<Oid>>,
}

/// The planned change to one branch: no edits leaves it alone.
pub struct Change {
    pub edits: Edits,
    pub message: String,
}

/// One change per branch, in the order the branches were given (missing
/// ones change nothing).
pub struct BranchesPlan<T> {
    pub changes: Vec<Change>,
    pub value: T,
}

#[derive(Debug)]
pub enum BranchesOutcome<T> {
    /// Every changed branch moved: the new commit of each (`None` for a
    /// branch left alone).
    Committed {
        commits: Vec<Option<Oid>>,
        value: T,
        rejections: u32,
    },
    Unchanged {
        tips: Vec<Option<Oid>>,
        value: T,
        rejections: u32,
    },
    /// As [`TxnOutcome::Uncertain`]; with an atomic push, the commits
    /// landed all together or not at all.
    Uncertain {
        commits: Vec<Option<Oid>>,
        value: T,
        error: GitError,
    },
}

/// The transaction loop over `branches` (the grid's branch among them, for
/// fetching it is what makes the clone's first fetch shallow): fetch them
/// all, plan, write one commit per changed branch, push them in one atomic
/// push. A rejection of any ref rejects them all; the round is then planned
/// again from the new tips, after the same jittered backoff as a claim.
pub fn run_branches<T>(
    repo: &GridRepo,
    identity: &Identity,
    policy: &TxnPolicy,
    branches: &[&str],
    mut plan: impl FnMut(&BranchesTxn<'_>) -> Result<BranchesPlan<T>, GitError>,
) -> Result<BranchesOutcome<T>, TxnError> {
    let mut rejections = 0;
    let mut last_rejection = String::new();
    // The tips the last rejected push was built on, and whether they ever
    // differed from one rejection to the next (another writer landed).
    let mut rejected_on: Option<Vec<Option<Oid>>> = None;
    let mut moved = false;
    let began = std::time::Instant::now();
    let mut deferred = false;
    let mut round = 0;
    while round < policy.max_rounds {
        let round_started = std::time::Instant::now();
        let tips = match &policy.fetched {
            Some(tip) if round == 0 && !deferred && branches == [repo.branch()] => {
                vec![Some(tip.clone())]
            }
            _ => repo.fetch_branches(branches)?,
        };
        let planned = plan(&BranchesTxn {
            repo,
            tips: tips.clone(),
        })?;
        let changed: Vec<(usize, &Change)> = planned
            .changes
            .iter()
            .enumerate()
            .take(branches.len())
            .filter(|(_, c)| !c.edits.is_empty())
            .collect();
        if changed.is_empty() {
            return Ok(BranchesOutcome::Unchanged {
                tips,
                value: planned.value,
                rejections,
            });
        }
        let who = Signature {
            name: identity.name.clone(),
            email: identity.email.clone(),
            when: chrono::Utc::now().timestamp(),
        };
        if rejections == 0
            && let Some((step, outbox)) = defers(policy, began.elapsed())
        {
            // Peers at work will commit anyway: theirs may carry this.
            outbox.publish(repo, &who);
            if !pause(policy, step) {
                return Err(TxnError::Interrupted { rounds: 0 });
            }
            deferred = true;
            continue;
        }
        if rejections == 0
            && policy.publish_first
            && let Some(outbox) = &policy.publish
        {
            // Its pushes keep losing: a peer's commit may carry these first.
            outbox.publish(repo, &who);
        }
        let mut commits: Vec<Option<Oid>> = vec![None; branches.len()];
        for (i, change) in changed {
            commits[i] = Some(repo.commit_edits(
                tips[i].as_deref(),
                &change.edits,
                &change.message,
                &who,
            )?);
        }
        let updates: Vec<(&str, &str)> = commits
            .iter()
            .zip(branches)
            .filter_map(|(c, b)| Some((c.as_deref()?, *b)))
            .collect();
        match repo.push_branches(&updates) {
            Ok(PushOutcome::Accepted) => {
                return Ok(BranchesOutcome::Committed {
                    commits,
                    value: planned.value,
                    rejections,
                });
            }
            Ok(PushOutcome::Rejected(why)) => {
                rejections += 1;
                last_rejection = why;
                moved |= rejected_on.as_ref().is_some_and(|before| *before != tips);
                rejected_on = Some(tips.clone());
                tracing::debug!(round, "push lost the race; planning again from the new tip");
            }
            Err(push_err) => {
                // A hook or branch protection said no, or the server refused
                // these credentials (a read-only token): nothing landed, and
                // retrying cannot help.
                if matches!(push_err, GitError::PushRefused { .. })
                    || push_err
                        .remote_failure()
                        .is_some_and(|f| f.needs_operator())
                {
                    return Err(push_err.into());
                }
                // The push may have landed although we saw an error (a
                // connection cut after the remote updated its ref). Look
                // before redoing anything. If the remote cannot even be
                // asked, hand the commits back as uncertain: the caller must
                // find out later, or a claim could be left with no owner.
                let Ok(now) = repo.fetch_branches(branches) else {
                    return Ok(BranchesOutcome::Uncertain {
                        commits,
                        value: planned.value,
                        error: push_err,
                    });
                };
                if landed_on(repo, &commits, &now)? {
                    tracing::info!("push reported an error but the commit is on the remote");
                    return Ok(BranchesOutcome::Committed {
                        commits,
                        value: planned.value,
                        rejections,
                    });
                }
                tracing::warn!(error = %Untrusted(&push_err), "push failed; retrying from the new tip");
            }
        }
        let took = round_started.elapsed();
        if rejections == 1
            && let Some(outbox) = &policy.publish
        {
            // The ref is contended: whoever lands next may carry these.
            outbox.publish(repo, &who);
        }
        let wait = backoff(policy, round, took);
        if policy.ends_too_late(wait, took) || !pause(policy, wait) {
            return Err(TxnError::Interrupted { rounds: rejections });
        }
        round += 1;
    }
    Err(TxnError::Contended {
        rounds: policy.max_rounds,
        last: last_rejection,
        // One lost round says nothing of who else writes.
        moved: moved || rejections < 2,
    })
}

/// The wait before planning again, and the outbox to publish first,
/// where this delivery is left to peers at work (`TxnPolicy::defer`)
/// `elapsed` into the transaction: none once the planner finds no peer at
/// work, or the wait would run past `until`.
/// Random up to a step: nodes that finish together each see the others
/// at work (none has published yet), and the first of them to look again
/// finds them all published and lands them, about a step over their
/// number after they finished, where the same wait for all would cost
/// each drain's end a whole step.
fn defers(policy: &TxnPolicy, elapsed: Duration) -> Option<(Duration, &Publish)> {
    let defer = policy.defer.as_ref()?;
    let outbox = policy.publish.as_deref()?;
    let wait = defer.step.mul_f64(fastrand::f64());
    (defer.peers_at_work.load(Ordering::SeqCst) && elapsed + wait <= defer.until)
        .then_some((wait, outbox))
}

/// Sleep `d`, in short steps if the caller may interrupt: false if it did.
fn pause(policy: &TxnPolicy, d: Duration) -> bool {
    const STEP: Duration = Duration::from_millis(20);
    let until = std::time::Instant::now() + d;
    loop {
        if policy.interrupted() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(STEP));
    }
}

/// Is every commit contained in its branch's tip?
fn landed_on(
    repo: &GridRepo,
    commits: &[Option<Oid>],
    tips: &[Option<Oid>],
) -> Result<bool, GitError> {
    for (commit, tip) in commits.iter().zip(tips) {
        let Some(commit) = commit else { continue };
        let Some(tip) = tip else { return Ok(false) };
        if !repo.is_ancestor(commit, tip)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Doublings of the backoff unit at most: 8 rounds' time covers the usual
/// crowd of writers on one ref.
const MAX_DOUBLINGS: u32 = 3;

/// Doublings at most for a node with nothing to run (`TxnPolicy::idle`).
const IDLE_DOUBLINGS: u32 = 1;

fn backoff(policy: &TxnPolicy, round: u32, round_took: Duration) -> Duration {
    let doubled = 1 << round.min(policy.max_doublings).min(MAX_DOUBLINGS);
    let rounds = match policy.writers.as_ref().map(|w| w.load(Ordering::SeqCst)) {
        Some(writers) if writers > 0 => doubled.min(writers),
        _ => doubled,
    };
    let ceiling = round_took
        .max(policy.backoff_base)
        .saturating_mul(rounds)
        .min(policy.backoff_max);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests;
