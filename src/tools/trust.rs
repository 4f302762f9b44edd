//! The trust tools: `trust init | add-submitter | add-node | revoke` (each a
//! new signed policy version, pushed by the worker's transaction),
//! `validate --verify` (tasks checked against the policy of a trusted ref),
//! and `verify` (which results are attested).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use ssh_key::PublicKey;

use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, Git, GitError};
use crate::grid::{Id, TaskRules};
use crate::time::Timestamp;
use crate::trust::keys::{self, fingerprint};
use crate::trust::policy::{Kind, POLICY_FILE, Pinned, Policy, ROOTS_FILE, Window};
use crate::trust::{KeySigner, TrustError, Verdict, Verifier};

use super::policy_history as history;
use super::validate::{Finding, Report};

/// One change to the policy.
#[derive(Debug, Clone)]
pub enum PolicyEdit {
    /// Version 1, with these roots written to `.dgrid/roots` for CI.
    Init { grid_id: Id, roots: Vec<PublicKey> },
    Add {
        kind: Kind,
        name: Id,
        key: PublicKey,
        window: Window,
    },
    Revoke {
        key: PublicKey,
        reason: Option<String>,
    },
    /// Revoke the listed key with this fingerprint.
    RevokeFingerprint {
        fingerprint: String,
        reason: Option<String>,
    },
}

/// What a policy transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub version: u64,
    pub summary: String,
}

fn put(edits: &mut Edits, path: &str, bytes: Vec<u8>) {
    edits.insert(path.as_bytes().to_vec(), Edit::Put(bytes));
}

/// Plan one policy change at the fetched tip: the next version, signed by
/// `signers`, with `allowed_signers` and `revoked_keys` written from it. A
/// refusal (no policy yet, a key already listed, ...) plans nothing and
/// says why. Unless `fewer_signatures`, a version signed by fewer roots
/// than the one it replaces is refused: nodes may need those.
pub fn plan(
    txn: &Txn<'_>,
    edit: &PolicyEdit,
    signers: &[&KeySigner],
    roots: &[PublicKey],
    fewer_signatures: bool,
    now: Timestamp,
) -> Result<Plan<Result<Changed, String>>, GitError> {
    let refuse = |why: String| Plan {
        edits: Edits::new(),
        message: String::new(),
        value: Err(why),
    };
    let existing = match txn.tip.as_deref() {
        Some(tip) => txn.repo.exists(tip, POLICY_FILE)?,
        None => false,
    };
    let (next, summary, roots_file) = match edit {
        PolicyEdit::Init { grid_id, roots } => {
            if existing {
                return Ok(refuse(format!(
                    "the grid has a {POLICY_FILE} already; change it with add-submitter, add-node or revoke"
                )));
            }
            // Deleted by a pusher: version 1 again would be refused by every
            // node that holds a later one.
            if let Some(tip) = txn.tip.as_deref()
                && let Some(why) = history::deleted(&history::read(txn.repo, tip, roots, None)?)
            {
                return Ok(refuse(why));
            }
            let text: String = roots
                .iter()
                .map(|k| format!("{}\n", keys::openssh_line(k)))
                .collect();
            (
                Policy::new(grid_id.clone(), now),
                format!("init grid {grid_id}"),
                Some(format!(
                    "# The roots of grid {grid_id}, for the grid's own CI. Workers pin theirs in worker.toml.\n{text}"
                )),
            )
        }
        _ => {
            let Some(tip) = txn.tip.as_deref() else {
                return Ok(refuse(
                    "the grid is empty: run `dgrid-worker trust init` first".to_owned(),
                ));
            };
            let cur = match history::current(txn.repo, tip, roots)? {
                Ok(p) => p,
                Err(why) => return Ok(refuse(why)),
            };
            let known = history::known_roots(txn.repo, tip, roots)?;
            let signing: HashSet<String> = signers
                .iter()
                .map(|s| fingerprint(s.public_key()))
                .collect();
            if !fewer_signatures
                && let Some(why) = history::fewer_signatures(&cur, &known, signing.len())
            {
                return Ok(refuse(why));
            }
            let mut next = cur.policy.successor(now);
            // A root is pinned by each node, not listed: no policy revokes it.
            let revoked = match edit {
                PolicyEdit::Revoke { key, .. } => Some(key.clone()),
                PolicyEdit::RevokeFingerprint {
                    fingerprint: fp, ..
                } => next.key_by_fingerprint(fp),
                _ => None,
            };
            if let Some(why) = revoked.and_then(|k| history::root_refusal(&k, &known)) {
                return Ok(refuse(why));
            }
            let done = match edit {
                PolicyEdit::Add {
                    kind,
                    name,
                    key,
                    window,
                } => next
                    .add(*kind, name.clone(), key, *window)
                    .map(|()| format!("add {kind} {name} ({})", fingerprint(key))),
                PolicyEdit::Revoke { key, reason } => next
                    .revoke(key, reason.clone(), now)
                    .map(|who| revoked_summary(key, who)),
                PolicyEdit::RevokeFingerprint {
                    fingerprint: fp,
                    reason,
                } => match next.key_by_fingerprint(fp) {
                    Some(key) => next
                        .revoke(&key, reason.clone(), now)
                        .map(|who| revoked_summary(&key, who)),
                    None => {
                        return Ok(refuse(format!(
                            "no listed key has fingerprint {fp}; revoke an unlisted key with --key FILE"
                        )));
                    }
                },
                PolicyEdit::Init { .. } => unreachable!("handled above"),
            };
            match done {
                Ok(summary) => (next, summary, None),
                Err(e) => return Ok(refuse(e.to_string())),
            }
        }
    };
    let file = match next.seal(signers) {
        Ok(f) => f,
        Err(e) => return Ok(refuse(e.to_string())),
    };
    let mut edits = Edits::new();
    put(&mut edits, POLICY_FILE, file);
    for (path, made) in next.made_files() {
        put(&mut edits, path, made.into_bytes());
    }
    if let Some(r) = roots_file {
        put(&mut edits, ROOTS_FILE, r.into_bytes());
    }
    Ok(Plan {
        edits,
        message: format!("trust: {summary} (policy version {})\n", next.version),
        value: Ok(Changed {
            version: next.version,
            summary,
        }),
    })
}

fn revoked_summary(key: &PublicKey, who: Option<(Kind, Id)>) -> String {
    match who {
        Some((kind, name)) => format!("revoke {kind} {name}'s key {}", fingerprint(key)),
        None => format!("revoke key {}", fingerprint(key)),
    }
}

/// Read `path` at `reference` in the repository at `dir`.
fn show(git: &Git, reference: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
    let spec = format!("{reference}:{path}");
    let out = git
        .run_with(&["cat-file", "blob", &spec], None, &[0, 128])
        .map_err(|e| e.to_string())?;
    Ok((out.code == 0).then_some(out.stdout))
}

/// The trust of a ref: its policy, accepted against roots (`--roots`, or the
/// ref's own `.dgrid/roots`). For a pull request's check, the ref is the
/// base branch: nothing the pull request changes is trusted.
pub fn verifier_at(
    dir: &Path,
    reference: &str,
    roots_file: Option<&Path>,
    threshold: usize,
    rules: &TaskRules,
) -> Result<Verifier, String> {
    let git = Git::new("git", dir, std::time::Duration::from_secs(120));
    let policy_file = show(&git, reference, POLICY_FILE)?.ok_or_else(|| {
        format!("{reference} has no {POLICY_FILE}: there is no policy to verify against")
    })?;
    let roots = match roots_file {
        Some(p) => keys::read_public_list(p).map_err(|e| e.to_string())?,
        None => {
            let text = show(&git, reference, ROOTS_FILE)?
                .ok_or_else(|| format!("{reference} has no {ROOTS_FILE}; pass --roots FILE"))?;
            keys::parse_list(&String::from_utf8_lossy(&text))
                .map_err(|(line, e)| format!("{reference}:{ROOTS_FILE}: line {line}: {e}"))?
        }
    };
    let grid_id = serde_json::from_slice::<Value>(&policy_file)
        .ok()
        .and_then(|v| v["grid_id"].as_str().and_then(|g| Id::parse(g).ok()))
        .ok_or_else(|| format!("{reference}:{POLICY_FILE}: has no valid `grid_id`"))?;
    let pinned = Pinned {
        grid_id,
        roots,
        threshold,
        min_version: 0,
    };
    let mut v = Verifier::new(pinned.clone(), rules.clone());
    v.offer_policy(&policy_file)
        .map_err(|e| format!("{reference}:{POLICY_FILE} {e}"))?;
    // A version put back over a newer one on the ref (a revocation undone
    // by a push): the nodes that took the newer one refuse it, and tasks
    // of a key it revoked would pass here.
    let spec = format!("{reference}^{{commit}}");
    let tip = git
        .run(&["rev-parse", "--verify", "--quiet", &spec])
        .map_err(|e| e.to_string())?;
    let repo = crate::git::GridRepo::read_only(git, reference);
    let refused = rolled_back(&repo, tip.stdout_str(), &pinned, &policy_file);
    if let Some(why) = refused.map_err(|e| e.to_string())? {
        return Err(format!("{reference}:{why}"));
    }
    Ok(v)
}

/// Why `policy_file`, the policy at commit `tip`, is older than (or
/// differs from) a version the roots signed in the history below `tip`,
/// if it is. A shallow clone holds no history to tell.
pub fn rolled_back(
    repo: &crate::git::GridRepo,
    tip: &str,
    pinned: &Pinned,
    policy_file: &[u8],
) -> Result<Option<String>, GitError> {
    let Ok(current) = crate::trust::policy::open(pinned, policy_file) else {
        return Ok(None);
    };
    let past = history::read_pinned(
        repo,
        tip,
        &pinned.roots,
        Some(&pinned.grid_id),
        pinned.threshold,
    )?;
    Ok(history::rolled_back(&past, &current))
}

/// Check the signature of every valid task in `report` with `verifier`:
/// what a worker in `enforce` mode would skip or fail is a finding. A
/// changed `.dgrid/policy.json` in the checkout at `grid` must be one the
/// verifier's holder would take (signed by the roots, a higher version).
pub fn verify_report(
    report: &mut Report,
    verifier: &mut Verifier,
    grid: Option<&Path>,
    now: Timestamp,
) {
    let tasks = std::mem::take(&mut report.tasks);
    for (path, id) in tasks {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let verdict = match std::fs::read(&path) {
            Ok(bytes) => {
                let key = format!("file:{}", path.display());
                verifier.verify_task(&key, &name, &bytes, now)
            }
            Err(e) => Verdict::Reject(TrustError::BadField {
                field: "envelope",
                reason: format!("cannot read: {e}"),
            }),
        };
        match verdict {
            Verdict::Trusted(_) => report.tasks.push((path, id)),
            Verdict::Skip(e) | Verdict::Reject(e) => {
                report.valid -= 1;
                report.findings.push(Finding {
                    path,
                    field: Some("envelope"),
                    reason: e.report(),
                });
            }
        }
    }
    if let Some(grid) = grid {
        let changed = grid.join(POLICY_FILE);
        if let Ok(bytes) = std::fs::read(&changed) {
            report.checked += 1;
            match verifier.offer_policy(&bytes) {
                Ok(_) => report.valid += 1,
                Err(e) => report.findings.push(Finding {
                    path: changed,
                    field: Some("envelope"),
                    reason: format!("untrusted policy ({}): {e}", e.code()),
                }),
            }
        }
        // The files made from the policy for `ssh-keygen -Y verify`: an
        // edit there (a key added for a principal) would make that check
        // trust what no root signed.
        if let Some(p) = verifier.policy() {
            for (file, made) in p.made_files() {
                let path = grid.join(file);
                if std::fs::read(&path).is_ok_and(|b| b != made.as_bytes()) {
                    report.findings.push(Finding {
                        path,
                        field: None,
                        reason: format!(
                            "differs from what {POLICY_FILE} version {} makes; it is written by `dgrid-worker trust` from the policy and never edited by hand",
                            p.version
                        ),
                    });
                }
            }
        }
    }
}

/// `submit --sign-with`: the task as made by `submit`, signed for `grid` by
/// the key at `key_path`, valid for `expires_in` seconds from `now`; checked
/// again as the queue entry it becomes.
pub fn sign_task(
    task: &crate::grid::Task,
    key_path: &Path,
    grid: &str,
    expires_in: u64,
    now: Timestamp,
    rules: &TaskRules,
) -> Result<crate::grid::Task, String> {
    let grid = Id::parse(grid).map_err(|e| format!("--grid-id {grid:?}: {e}"))?;
    let key = KeySigner::open(key_path).map_err(|e| e.to_string())?;
    let expires =
        now + chrono::Duration::seconds(expires_in.min(crate::config::MAX_SECONDS) as i64);
    // What the file says itself is never silently overruled.
    let file = task.to_json();
    for (field, flag, signs) in [
        ("grid_id", "--grid-id", grid.to_string()),
        ("issued_at", "--sign-with (now)", crate::time::format(now)),
        ("expires_at", "--expires-in", crate::time::format(expires)),
    ] {
        match file.get(field) {
            Some(v) if v.as_str() != Some(signs.as_str()) => {
                return Err(format!(
                    "field `{field}` is {v} in the file, and {flag} signs {signs:?}: give one"
                ));
            }
            _ => {}
        }
    }
    let bytes =
        crate::trust::task::sign(task, &grid, now, expires, &key).map_err(|e| e.to_string())?;
    let name = format!("{}.json", task.task_id);
    crate::grid::Task::from_entry(&name, crate::grid::task::EntryKind::File, &bytes, rules)
        .map_err(|e| format!("the signed task: {e}"))
}

/// Where `keygen` writes by default.
pub fn default_key_path() -> PathBuf {
    PathBuf::from(crate::config::defaults::DEFAULT_NODE_KEY)
}
