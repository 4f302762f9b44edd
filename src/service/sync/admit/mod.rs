//! Admission: whether a queue entry is a task this node may run. Every
//! candidate of a claim passes through [`admit`]: first the task rules
//! (what `validate` checks), then, with `[trust] mode` `warn` or `enforce`,
//! the node's [`Gate`]: the submitter's signature under the policy the node
//! holds, the task's validity by the node's own clock, and that it has not
//! run already; and again as a claim held ahead starts (`at_start`). The
//! gate lives as long as the worker: its verifier caches what it found in
//! each blob, so a queue entry is parsed and its signature checked once,
//! however many syncs see it. At each new tip it looks at the ids of
//! `.dgrid/policy.json` and of the result directories (one `cat-file
//! --batch-check`), and reads the policy only when its blob changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::records::{Read, RecordsSeen};
use super::{Draft, SyncRequest};
use crate::escape::Untrusted;
use crate::git::{Blob, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskRules, layout};
use crate::ledger::room::{GiveWay, Mover};
use crate::time::Timestamp;
use crate::trust::cache::Cache;
use crate::trust::policy::{MAX_POLICY_BYTES, POLICY_FILE, Pinned};
use crate::trust::ran::{Ran, RanRecord};
use crate::trust::{Action, KeyStanding, Mode, Offer, SignedTask, TrustError, Verdict, Verifier};
pub(super) use counts::{enforced, result_counts};

/// Queue blobs remembered as skipped: a queue flooded with unsigned
/// entries costs a few MB of ids, not a read of each at every sync.
const SKIPPED_ENTRIES: usize = 65536;

pub(super) mod answers;
pub(super) mod at_start;
mod counts;
mod longer;
pub(super) mod skips;

/// What becomes of one queue entry.
#[derive(Debug)]
pub(super) enum Admit {
    /// Claim it: what runs is this task (for a signed task, parsed from
    /// the signed payload).
    Run(Task),
    /// Leave it in the queue: not this node's to run now (unsigned, an
    /// unknown signer, not yet issued). It is not counted as work left.
    Skip,
    /// Move it to `failed/` with this reason: no policy can make it good.
    Reject(String),
    /// A task another node runs (longer than this node's limit): filed to
    /// its lane as any task is, never claimed here, not counted as work
    /// left.
    Elsewhere(Task),
}

/// Admit the queue entry `entry` (a file named `name`) of bytes `content`.
pub(super) fn admit(
    repo: &GridRepo,
    d: &Draft<'_>,
    entry: &TreeEntry,
    name: &str,
    kind: EntryKind,
    content: &[u8],
) -> Result<Admit, GitError> {
    let task = match Task::from_entry(name, kind, content, &d.req.rules.to_read_by()) {
        Ok(task) => task,
        Err(e) => return Ok(Admit::Reject(e.to_string())),
    };
    if task.timeout_seconds > d.req.rules.max_timeout_seconds {
        return Ok(longer::than_mine(d, task));
    }
    match d.req.trust {
        None => Ok(Admit::Run(task)),
        Some(gate) => gate
            .borrow_mut()
            .admit(repo, d.tip, entry, name, content, task, d.req.now),
    }
}

/// Look at the policy and the results at the tip being planned on, before
/// the queue is listed.
pub(super) fn refresh(repo: &GridRepo, d: &Draft<'_>) -> Result<(), GitError> {
    match d.req.trust {
        Some(gate) => gate.borrow_mut().refresh(repo, d.tip),
        None => Ok(()),
    }
}

/// Does a peer's record count for this node's reckoning? Every record
/// does, but on a node in `enforce`: there only a record its node signed
/// with the key the policy lists for it, as only such a node's results
/// count (`trust::record`), and not one older than a record of that node
/// already counted (put back, it would say what the node said before).
/// Anyone who can push can write a record, and one that serves
/// everything with a week's limit, or sits idle with 1,024 slots, would
/// steer this node's claims. In `warn` every record counts, and one that
/// `enforce` would leave out is said.
pub(super) fn record_counts(req: &SyncRequest<'_>, read: &Read) -> bool {
    let (Some(gate), Some(sealed)) = (req.trust, &read.sealed) else {
        return true;
    };
    let mut gate = gate.borrow_mut();
    let record = &read.record;
    let (code, why) = match sealed {
        Ok(key) => match gate
            .verifier
            .node_key_standing(&record.node_id, key, req.now)
        {
            KeyStanding::Listed => match gate.records.replayed(record, req.now) {
                None => return true,
                Some(newer) => (
                    "record-replayed",
                    format!("it is older than one counted before (written at {newer})"),
                ),
            },
            KeyStanding::NoPolicy => ("no-policy", "no policy is held yet".to_owned()),
            KeyStanding::Problem(p) => ("record-key", format!("its signing key: {p}")),
        },
        Err(e) => ("record-signature", format!("the record {e}")),
    };
    let enforce = gate.mode == Mode::Enforce;
    gate.say_record(&record.node_id, code, &why, enforce);
    !enforce
}

/// A node enforcing trust, as the ledger asks of a file that holds the
/// place a task moves to (`ledger::room::GiveWay`).
pub(super) struct Enforcing<'a> {
    req: &'a SyncRequest<'a>,
    tip: &'a str,
}

/// The node's say over what gives way, enforcing trust, in a plan at `tip`.
pub(super) fn give_way<'a>(req: &'a SyncRequest<'a>, tip: &'a str) -> Option<Enforcing<'a>> {
    enforced(req).then_some(Enforcing { req, tip })
}

impl GiveWay for Enforcing<'_> {
    fn gives_way(
        &self,
        repo: &GridRepo,
        path: &str,
        held: &Oid,
        mover: &mut dyn FnMut() -> Result<Mover, GitError>,
    ) -> Result<Option<String>, GitError> {
        let gate = self.req.trust.expect("only where trust is enforced");
        let (tip, now, rules) = (self.tip, self.req.now, self.req.rules);
        gate.borrow_mut()
            .gives_way(repo, tip, path, held, mover, now, rules)
    }
}

/// Is this queue blob one the gate skips under the policy it holds (no
/// need to read it again until the policy changes)?
pub(super) fn skipped(d: &Draft<'_>, oid: &str) -> bool {
    d.req
        .trust
        .is_some_and(|g| g.borrow().skipped.get(oid).is_some())
}

/// A node's trust in `warn` or `enforce` mode (in `off` there is none).
pub struct Gate {
    mode: Mode,
    verifier: Verifier,
    state_dir: PathBuf,
    ran: RanRecord,
    /// The tip last looked at.
    seen_tip: Option<Oid>,
    /// The blob of `.dgrid/policy.json` last offered to the verifier.
    policy_blob: Option<Oid>,
    /// The trees of `tasks/completed` and `tasks/failed` at the tip, and
    /// (once listed) the result files there by task id.
    result_trees: [Option<Oid>; 2],
    results: Option<HashMap<String, Vec<String>>>,
    /// Queue blobs skipped for a reason only a new policy can change
    /// (bounded: past it, the oldest are read and skipped again).
    skipped: Cache<()>,
    /// What was logged about a blob already: said once, not every poll.
    said: Cache<()>,
    /// Peers' records: the newest counted, and how many not counted were
    /// said (`records.rs`).
    records: RecordsSeen,
}

/// Why the gate could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Store(#[from] crate::trust::store::StoreError),
    #[error(transparent)]
    Ran(#[from] crate::trust::ran::RanError),
}

/// Result files of the current form name their task: `<node>@<task>.json`
/// or `<node>@<task>@<n>.json`.
fn task_of_result(name: &str) -> Option<&str> {
    layout::result_name_parts(name).map(|(_, task, _)| task)
}

impl Gate {
    /// The gate of a node in `mode` (`warn` or `enforce`), from what its
    /// state directory holds: the policy it accepted last, and the tasks it
    /// has run. A stored policy that no longer verifies (the roots were
    /// changed) is logged and not used; its version stays the floor.
    pub fn open(
        mode: Mode,
        pinned: Pinned,
        rules: TaskRules,
        state_dir: &Path,
        now: Timestamp,
    ) -> Result<Gate, GateError> {
        let (verifier, stale) = Verifier::open_state(pinned, rules, state_dir)?;
        if let Some(e) = stale {
            tracing::warn!(code = %e.code(), error = %Untrusted(&e), "the policy in the state directory is not used");
        }
        match verifier.policy_version() {
            Some(v) => tracing::info!(version = v, mode = mode.word(), "trust: holding policy"),
            None => tracing::info!(
                mode = mode.word(),
                "trust: no policy held yet; waiting for the grid's"
            ),
        }
        Ok(Gate {
            mode,
            verifier,
            state_dir: state_dir.to_owned(),
            ran: RanRecord::open(state_dir, now)?,
            seen_tip: None,
            policy_blob: None,
            result_trees: [None, None],
            results: None,
            skipped: Cache::new(SKIPPED_ENTRIES),
            said: Cache::new(crate::trust::verifier::CACHE_ENTRIES),
            records: RecordsSeen::open(state_dir, now),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn policy_version(&self) -> Option<u64> {
        self.verifier.policy_version()
    }

    /// What the policy held says of this node's key.
    pub fn node_key_standing(
        &self,
        node: &Id,
        key: &ssh_key::PublicKey,
        now: Timestamp,
    ) -> KeyStanding {
        self.verifier.node_key_standing(node, key, now)
    }

    pub fn task_signer(&self, name: &str, bytes: &[u8], at: Timestamp) -> Option<Id> {
        self.verifier.task_signer(name, bytes, at)
    }

    /// Tasks whose results a push just delivered: never run again.
    pub fn ran(&mut self, tasks: &[Ran]) {
        if let Err(e) = self.ran.record(tasks) {
            // The grid still holds the results, which refuse a replay too.
            tracing::error!(error = %e, "cannot record the tasks run");
        }
    }

    /// The grid id it is pinned to.
    pub(in crate::service::sync) fn grid_id(&self) -> &Id {
        self.verifier.grid_id()
    }

    /// Say that a record of `node` does not count (or would not, in
    /// `warn`): once for each node and reason (a policy's reason in full,
    /// so that a key listed, then revoked, is said again; a signature's by
    /// its code, as anyone can vary its words), and at `warn` level for a
    /// bounded number of nodes, as anyone who can push names any number.
    fn say_record(&mut self, node: &Id, code: &str, why: &str, enforce: bool) {
        let reason = if code == "record-key" { why } else { code };
        if !self.first_time(&format!("record of {node}: {reason}"), code) {
            return;
        }
        let counted = if enforce {
            "a peer's record is left out of this node's reckoning"
        } else {
            "enforce would leave a peer's record out of this node's reckoning"
        };
        let Some(more) = self.records.say() else {
            return tracing::debug!(node_id = %node, code, reason = %Untrusted(why), "trust: {counted}");
        };
        tracing::warn!(node_id = %node, code, reason = %Untrusted(why), "trust: {counted}{more}");
    }

    /// Log `what` about `blob` once.
    fn first_time(&mut self, blob: &str, code: &str) -> bool {
        let key = format!("{blob} {code}");
        let first = self.said.get(&key).is_none();
        self.said.insert(key, ());
        first
    }

    fn refresh(&mut self, repo: &GridRepo, tip: &str) -> Result<(), GitError> {
        if self.seen_tip.as_deref() == Some(tip) {
            return Ok(());
        }
        let specs = [
            format!("{tip}:{POLICY_FILE}"),
            format!("{tip}:{}", layout::COMPLETED),
            format!("{tip}:{}", layout::FAILED),
        ];
        let info = repo.object_info(&specs)?;
        let trees = [
            info[1].as_ref().map(|i| i.oid.clone()),
            info[2].as_ref().map(|i| i.oid.clone()),
        ];
        if trees != self.result_trees {
            self.result_trees = trees;
            self.results = None;
        }
        let policy = info[0].as_ref().map(|i| i.oid.clone());
        if policy.is_some() && policy != self.policy_blob {
            let blob = repo.read_objects(&specs[..1], MAX_POLICY_BYTES as u64)?;
            match blob.into_iter().next() {
                // Not read this round: try again at the next tip.
                Some(Blob::Deferred { .. }) => return Ok(()),
                Some(Blob::Data(bytes)) => self.offer(&bytes),
                Some(other) => tracing::warn!(
                    file = POLICY_FILE,
                    problem = other.why_unread().unwrap_or_default(),
                    "trust: the grid's policy cannot be read; keeping the one held"
                ),
                None => {}
            }
        }
        self.policy_blob = policy;
        self.seen_tip = Some(tip.to_owned());
        Ok(())
    }

    fn offer(&mut self, bytes: &[u8]) {
        match self.verifier.offer_policy(bytes) {
            Ok(Offer::Same) => {}
            Ok(Offer::Newer) => {
                let version = self.verifier.policy_version().unwrap_or_default();
                tracing::info!(version, "trust: accepted a new policy");
                if let Err(e) = crate::trust::store::save(&self.state_dir, bytes) {
                    // Held in memory all the same; at the next start the
                    // grid offers it again.
                    tracing::error!(error = %e, "trust: cannot store the policy");
                }
                // What was skipped for an unknown signer may be known now.
                self.skipped.clear();
            }
            Err(e) => tracing::warn!(
                code = %e.code(),
                error = %Untrusted(&e),
                held = %self.verifier.policy_version().map_or("none".to_owned(), |v| v.to_string()),
                "trust: the grid's policy is refused; keeping the one held"
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        repo: &GridRepo,
        tip: &str,
        entry: &TreeEntry,
        name: &str,
        content: &[u8],
        task: Task,
        now: Timestamp,
    ) -> Result<Admit, GitError> {
        let verdict = match self.verifier.verify_task(&entry.oid, name, content, now) {
            Verdict::Trusted(s) => match self.replayed(repo, tip, &s, now)? {
                Some(e) => Verdict::Reject(e),
                None => Verdict::Trusted(s),
            },
            other => other,
        };
        let oid = &entry.oid;
        Ok(match (self.mode.action(&verdict), verdict) {
            (Action::Run { warning: None }, Verdict::Trusted(s)) => Admit::Run(s.task),
            // `off` only, which has no gate.
            (Action::Run { warning: None }, _) => Admit::Run(task),
            (Action::Run { warning: Some(e) }, _) => {
                if self.first_time(oid, e.code()) {
                    tracing::warn!(entry = %Untrusted(name), code = %e.code(), error = %Untrusted(&e), "trust (warn mode): running a task that enforce mode would not run");
                }
                Admit::Run(task)
            }
            (Action::Skip(e), _) => {
                if matches!(
                    e,
                    TrustError::Unsigned | TrustError::UnknownSigner { .. } | TrustError::NoPolicy
                ) {
                    self.skipped.insert(oid.clone(), ());
                }
                if self.first_time(oid, e.code()) {
                    tracing::info!(entry = %Untrusted(name), code = %e.code(), error = %Untrusted(&e), "trust: task left in the queue");
                }
                Admit::Skip
            }
            (Action::Fail(e), _) => Admit::Reject(e.report()),
        })
    }

    /// Does the file `held` at `path` give way to the task `mover`? Where
    /// this node runs `mover` (signed by a submitter its policy lists) and
    /// would leave `held` in the queue for good, as a file with no
    /// signature or signed by a key its policy does not list: kept, it
    /// would hold the trusted task back for good, and no node enforcing
    /// trust would ever run or move it. A file left only until its
    /// `issued_at` (`not-yet-issued`), or until this node holds a policy,
    /// keeps its place.
    #[allow(clippy::too_many_arguments)]
    fn gives_way(
        &mut self,
        repo: &GridRepo,
        tip: &str,
        path: &str,
        held: &Oid,
        mover: &mut dyn FnMut() -> Result<Mover, GitError>,
        now: Timestamp,
        rules: &TaskRules,
    ) -> Result<Option<String>, GitError> {
        let name = path.rsplit('/').next().unwrap_or(path);
        // The file held first: most often another copy of the task, as
        // trusted as the task, and the task moved is not read at all.
        let blob = repo.read_objects(std::slice::from_ref(held), rules.max_file_bytes as u64)?;
        let Some(bytes) = blob.first().and_then(Blob::data) else {
            return Ok(None);
        };
        let refused = match self.verifier.verify_task(held, name, bytes, now) {
            Verdict::Skip(e @ (TrustError::Unsigned | TrustError::UnknownSigner { .. })) => e,
            _ => return Ok(None),
        };
        let Mover { blob, bytes } = mover()?;
        // Its blob names it in the verifier's cache, as a queued file's does.
        let blob = match blob {
            Some(b) => b,
            None => repo.write_blob(&bytes)?,
        };
        // A task this node would run: trusted, and no replay of one that
        // ran (which it fails when it meets it, for nobody to run).
        let trusted = match self.verifier.verify_task(&blob, name, &bytes, now) {
            Verdict::Trusted(s) => s,
            _ => return Ok(None),
        };
        if self.replayed(repo, tip, &trusted, now)?.is_some() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{}; it gives way to a trusted task of its id, moved to its place",
            refused.report()
        )))
    }

    /// Has this task run already? By this node (its record), or by any node
    /// whose signed result for this very payload is on the grid. A result
    /// that does not verify counts as no result: a forged one cannot stop
    /// a task from running.
    fn replayed(
        &mut self,
        repo: &GridRepo,
        tip: &str,
        s: &SignedTask,
        now: Timestamp,
    ) -> Result<Option<TrustError>, GitError> {
        let id = s.task.task_id.as_str();
        if self.ran.contains(&s.digest.0) {
            return Ok(Some(TrustError::Replayed(format!(
                "this node ran task {id} ({}) and delivered its result",
                s.digest
            ))));
        }
        let paths = match self.results(repo, tip)?.get(id) {
            Some(p) => p.clone(),
            None => return Ok(None),
        };
        let specs: Vec<String> = paths.iter().map(|p| format!("{tip}:{p}")).collect();
        let blobs = repo.read_objects(&specs, layout::MAX_RESULT_BYTES)?;
        for (path, blob) in paths.iter().zip(blobs) {
            if let Some(bytes) = blob.data()
                && let Ok(node) = self.verifier.answers(bytes, &s.digest, now)
            {
                return Ok(Some(TrustError::Replayed(format!(
                    "{path} answers it, signed by node {node}"
                ))));
            }
        }
        Ok(None)
    }

    /// The result files at the tip, by task id: listed when the result
    /// directories changed, and only when a trusted task needs them.
    fn results(
        &mut self,
        repo: &GridRepo,
        tip: &str,
    ) -> Result<&HashMap<String, Vec<String>>, GitError> {
        if self.results.is_none() {
            let mut by_task: HashMap<String, Vec<String>> = HashMap::new();
            for dir in [layout::COMPLETED, layout::FAILED] {
                for e in repo.list_dir(tip, dir)? {
                    if !matches!(e.mode, EntryMode::File | EntryMode::Executable) {
                        continue;
                    }
                    let name = e.name_lossy();
                    if let Some(task) = task_of_result(&name) {
                        by_task
                            .entry(task.to_owned())
                            .or_default()
                            .push(format!("{dir}/{name}"));
                    }
                }
            }
            self.results = Some(by_task);
        }
        Ok(self.results.as_ref().expect("just listed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names_say_their_task() {
        assert_eq!(task_of_result("n1@t1.json"), Some("t1"));
        assert_eq!(task_of_result("a-b@c-d@1700000000000.json"), Some("c-d"));
        assert_eq!(task_of_result("n1-t1.json"), None, "old names say nothing");
        assert_eq!(task_of_result("n1@t1.txt"), None);
    }
}
