//! A clone found damaged is cloned afresh, by the node itself.
//!
//! A clone that lost an object a tree it holds names (a disk fault, a
//! crash mid-write, a person's cleanup: `git::damage`) answers every
//! read of that tree as "not there", so nothing is decided on it
//! (`GitError::Damaged`). Nothing the node owes is kept in the clone:
//! results wait in the outbox, the claims it holds are on the grid, and
//! a fresh clone fetches the grid whole. So the node moves the clone out
//! of the way and starts a new one, as a person would, rather than fail
//! every sync until someone does. Once: a clone damaged again before a
//! sync has landed on it says the fault is the host's (a failing disk),
//! and is left, with the error, for a person to look at.

use crate::git::txn::TxnError;
use crate::git::{GitError, GridRepo};

use super::Worker;

/// Where the damaged clone goes before it is removed: renamed first, so
/// that a node stopped mid-removal never starts on half a clone.
const ASIDE: &str = "grid.git.damaged";

/// At start: what a node stopped while removing a damaged clone left.
pub(super) fn remove_leftover(state_dir: &std::path::Path) {
    let aside = state_dir.join(ASIDE);
    if aside.exists()
        && let Err(e) = std::fs::remove_dir_all(&aside)
    {
        tracing::warn!(error = %e, path = %aside.display(), "cannot remove a damaged clone left by an earlier run");
    }
}

impl Worker {
    /// After a sync: a damaged clone is replaced by an empty one, which the
    /// next sync fills; a sync that landed clears the mark of a fresh one.
    pub(super) fn mend_clone<T>(&mut self, ran: &Result<T, TxnError>) {
        match ran {
            Ok(_) => self.clone_fresh = false,
            Err(TxnError::Git(GitError::Damaged(_))) if self.clone_fresh => {
                tracing::error!(
                    "the clone made afresh is damaged again before a sync landed: the host's disk or filesystem is at fault; it is left as it is"
                );
            }
            // A push whose landing is not known yet is checked against the
            // clone's history (`resolve_uncertain`): the next sync does it.
            Err(TxnError::Git(GitError::Damaged(_))) if self.uncertain.is_none() => {
                match self.clone_afresh() {
                    Ok(()) => {
                        self.clone_fresh = true;
                        tracing::warn!(
                            waiting = self.outbox.len(),
                            "the damaged clone was removed; the next sync clones the grid afresh (results stay in the outbox)"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "cannot replace the damaged clone"),
                }
            }
            Err(_) => {}
        }
    }

    fn clone_afresh(&mut self) -> Result<(), String> {
        let dir = self.repo.dir().to_owned();
        let aside = dir.with_file_name(ASIDE);
        self.repo.release_readers();
        let remove = |p: &std::path::Path| match std::fs::remove_dir_all(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", p.display()))
            }
            _ => Ok(()),
        };
        remove(&aside)?;
        std::fs::rename(&dir, &aside)
            .map_err(|e| format!("cannot move {} aside: {e}", dir.display()))?;
        self.repo = GridRepo::open_or_init(
            self.repo.git().clone(),
            &self.cfg.repo_url,
            &self.cfg.branch,
        )
        .map_err(|e| e.to_string())?
        .with_outboxes();
        remove(&aside)
    }
}
