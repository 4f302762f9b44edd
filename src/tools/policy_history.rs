//! What the policy tools check before they build a new version: the grid's
//! policy as it is, and as the branch remembers it. Anyone who can push can
//! put an older root-signed `.dgrid/policy.json` back, or delete it; nodes
//! refuse whatever is built on that (a lower version, or the same version
//! with other content, than the one they hold), and a version built on an
//! older one would bring back what the owner had since revoked. So the
//! tools read every version the branch held and compare the current one
//! with the newest the roots signed, as a node compares with the one it
//! holds ([`policy::decide`]).

use std::collections::HashSet;

use serde_json::Value;
use ssh_key::PublicKey;

use crate::git::{Blob, GitError, GridRepo};
use crate::grid::Id;
use crate::trust::keys::{self, fingerprint};
use crate::trust::policy::{
    self, Accepted, Held, MAX_POLICY_BYTES, POLICY_FILE, Pinned, PolicyError, ROOTS_FILE,
};

/// At most this many commits that changed the policy are read, the newest
/// first: a grid makes one per policy version, a few hundred in its life.
pub const MAX_COMMITS_READ: usize = 10_000;

/// Versions read at once, at most (each up to [`MAX_POLICY_BYTES`]).
const READ_BATCH: usize = 32;

/// A version the roots signed, and the newest commit that wrote it.
pub struct Version {
    pub commit: String,
    pub accepted: Accepted,
}

/// The policy's history on the branch, up to the tip.
pub struct History {
    /// The highest version the roots signed (on a tie, the newest commit's).
    pub newest: Option<Version>,
    /// The newest commit that changed the file (that deleted it, when the
    /// tip has none).
    pub last_change: Option<String>,
}

/// The grid id a policy file names, unverified: to know which namespace to
/// check its signatures in.
pub fn grid_id_of(file: &[u8]) -> Option<Id> {
    serde_json::from_slice::<Value>(file)
        .ok()
        .and_then(|v| v["grid_id"].as_str().and_then(|g| Id::parse(g).ok()))
}

/// Read every version of the policy the branch held up to `tip` (merges'
/// other parents too: `--full-history`, so that a merge cannot hide a
/// version), and keep the highest that `roots` signed for `grid_id` (for
/// its own grid id if none). The clone must hold the history
/// ([`GridRepo::deepen`]).
pub fn read(
    repo: &GridRepo,
    tip: &str,
    roots: &[PublicKey],
    grid_id: Option<&Id>,
) -> Result<History, GitError> {
    read_pinned(repo, tip, roots, grid_id, 1)
}

/// Has the branch at `tip` ever held a policy file (one commit of its
/// history touches it)?
pub fn ever(repo: &GridRepo, tip: &str) -> Result<bool, GitError> {
    let out = repo
        .git()
        .run(&["log", "-1", "--format=%H", tip, "--", POLICY_FILE])?;
    Ok(!out.stdout_str().trim().is_empty())
}

/// [`read`], keeping only versions signed by at least `threshold` of
/// `roots`, as nodes that pin that threshold take them.
pub fn read_pinned(
    repo: &GridRepo,
    tip: &str,
    roots: &[PublicKey],
    grid_id: Option<&Id>,
    threshold: usize,
) -> Result<History, GitError> {
    let limit = format!("--max-count={MAX_COMMITS_READ}");
    let out = repo.git().run(&[
        "log",
        "--full-history",
        "--format=%H",
        &limit,
        tip,
        "--",
        POLICY_FILE,
    ])?;
    let commits: Vec<String> = out.stdout_str().lines().map(str::to_owned).collect();
    let mut seen = HashSet::new();
    let mut newest: Option<Version> = None;
    // A batch of versions in memory at a time: each may be a megabyte.
    let read = commits.chunks(READ_BATCH).map(|chunk| {
        let specs: Vec<String> = chunk.iter().map(|c| format!("{c}:{POLICY_FILE}")).collect();
        repo.read_objects(&specs, MAX_POLICY_BYTES as u64)
            .map(|blobs| chunk.iter().zip(blobs).collect::<Vec<_>>())
    });
    for batch in read {
        for (commit, blob) in batch? {
            // A deletion, or a file too large to be a policy: no version.
            let Blob::Data(file) = blob else { continue };
            if !seen.insert(keys::sha256_hex(&file)) {
                continue;
            }
            let Some(own) = grid_id_of(&file) else {
                continue;
            };
            let pinned = Pinned {
                grid_id: grid_id.cloned().unwrap_or(own),
                roots: roots.to_vec(),
                threshold,
                min_version: 0,
            };
            // What the roots did not sign (a pusher's forgery) is no version.
            let Ok(accepted) = policy::open(&pinned, &file) else {
                continue;
            };
            if newest
                .as_ref()
                .is_none_or(|n| accepted.policy.version > n.accepted.policy.version)
            {
                newest = Some(Version {
                    commit: commit.clone(),
                    accepted,
                });
            }
        }
    }
    Ok(History {
        newest,
        last_change: commits.into_iter().next(),
    })
}

/// The grid's current policy, checked against the roots the caller holds
/// (its signing keys and any `--roots`): a tool never builds on a policy
/// it could not itself accept, nor on one older than a version the branch
/// held ([`rolled_back`]).
pub fn current(
    repo: &GridRepo,
    tip: &str,
    roots: &[PublicKey],
) -> Result<Result<Accepted, String>, GitError> {
    let file = match repo.read_path(tip, POLICY_FILE, policy::MAX_POLICY_BYTES as u64)? {
        Blob::Data(file) => file,
        Blob::Missing => {
            let past = read(repo, tip, roots, None)?;
            return Ok(Err(deleted(&past).unwrap_or_else(|| {
                format!("the grid has no {POLICY_FILE}: run `dgrid-worker trust init` first")
            })));
        }
        unread => {
            return Ok(Err(format!(
                "{POLICY_FILE} {}",
                unread.why_unread().unwrap_or_default()
            )));
        }
    };
    let Some(grid_id) = grid_id_of(&file) else {
        return Ok(Err(format!("{POLICY_FILE}: has no valid `grid_id`")));
    };
    let pinned = Pinned {
        grid_id: grid_id.clone(),
        roots: roots.to_vec(),
        threshold: 1,
        min_version: 0,
    };
    let cur = match policy::open(&pinned, &file) {
        Ok(a) => a,
        Err(e) => {
            return Ok(Err(format!(
                "{POLICY_FILE} {e}; pass the grid's roots with --roots if another root signed it"
            )));
        }
    };
    let past = read(repo, tip, roots, Some(&grid_id))?;
    Ok(match rolled_back(&past, &cur) {
        Some(why) => Err(why),
        None => Ok(cur),
    })
}

/// How to put the newest version back, in words for the owner.
fn restore(v: &Version) -> String {
    format!(
        "restore it (`git checkout {} -- .dgrid`, commit and push), then run this again",
        v.commit
    )
}

/// Why no tool may build on `current`, the tip's policy: the branch held a
/// higher version, or the same version with other content, which nodes
/// may hold and then refuse whatever is built on this one.
pub fn rolled_back(history: &History, current: &Accepted) -> Option<String> {
    let newest = history.newest.as_ref()?;
    let refused = policy::decide(Some(&Held::from(&newest.accepted)), current).err()?;
    let (cur, new) = (current.policy.version, newest.accepted.policy.version);
    let what = match refused {
        PolicyError::Equivocation { .. } => format!("differs from the version {new}"),
        _ => format!("is older than version {new}"),
    };
    Some(format!(
        "{POLICY_FILE}: version {cur} (commit {}) {what} that the roots signed and the branch held at commit {} ({}): nodes that took version {new} refuse any version built on this one; {}",
        history.last_change.as_deref().unwrap_or("?"),
        newest.commit,
        refused.code(),
        restore(newest),
    ))
}

/// Why `trust init` (or any change) must not start again from version 1
/// on a branch whose policy was deleted: nodes holding the newest refuse it.
pub fn deleted(history: &History) -> Option<String> {
    let newest = history.newest.as_ref()?;
    Some(format!(
        "the grid has no {POLICY_FILE}, but it had one: commit {} deleted it, and version {}, signed by the roots, is at commit {}. A new policy would start again at version 1, which nodes holding version {} refuse (rolled-back); {}",
        history.last_change.as_deref().unwrap_or("?"),
        newest.accepted.policy.version,
        newest.commit,
        newest.accepted.policy.version,
        restore(newest),
    ))
}

/// The roots the tools know of: the caller's (`--sign-with`, `--roots`)
/// and those the grid lists in `.dgrid/roots` (which a pusher can rewrite:
/// only ever used to refuse, never to accept).
pub fn known_roots(
    repo: &GridRepo,
    tip: &str,
    roots: &[PublicKey],
) -> Result<Vec<PublicKey>, GitError> {
    let mut all = roots.to_vec();
    if let Blob::Data(text) = repo.read_path(tip, ROOTS_FILE, 64 * 1024)? {
        all.extend(keys::parse_list(&String::from_utf8_lossy(&text)).unwrap_or_default());
    }
    Ok(all)
}

/// Why `key` cannot be revoked in the policy: it is a root, which the
/// nodes pin in their own configuration, and no policy can unpin.
pub fn root_refusal(key: &PublicKey, known_roots: &[PublicKey]) -> Option<String> {
    known_roots
        .iter()
        .any(|r| r.key_data() == key.key_data())
        .then(|| {
            format!(
                "key {} is a root of the grid: revoking it in the policy would change nothing, since each node pins its roots in the file its `[trust] roots` names; retire a leaked root by removing it from that file on every node (and from {ROOTS_FILE}), and sign with the other roots",
                fingerprint(key)
            )
        })
}

/// Why a new version signed by `signing` distinct roots must not replace
/// `current` signed by more: nodes whose `threshold` needs those refuse it.
/// The known roots count, since the caller may sign with fewer than signed.
pub fn fewer_signatures(
    current: &Accepted,
    known_roots: &[PublicKey],
    signing: usize,
) -> Option<String> {
    let pinned = Pinned {
        grid_id: current.policy.grid_id.clone(),
        roots: known_roots.to_vec(),
        threshold: 1,
        min_version: 0,
    };
    let had = policy::open(&pinned, &current.file).map_or(current.root_signatures, |a| {
        a.root_signatures.max(current.root_signatures)
    });
    (signing < had).then(|| {
        format!(
            "{POLICY_FILE}: version {} carries {had} root signatures, and the new version would carry {signing}: nodes whose `[trust] threshold` is above {signing} would refuse it (too-few-signatures) and keep the old one. Sign with more roots (repeat --sign-with), or pass --fewer-signatures if no node needs more than {signing}",
            current.policy.version
        )
    })
}
