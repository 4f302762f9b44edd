//! Which results `status` and `dashboard` list are attested: each is
//! checked as `verify` checks it (the node's signature, the policy's key
//! for that node, the claim in the commit it names, on the branch), against
//! the grid's policy at the commit shown.
//!
//! Only the results listed (the latest and the latest failures, at most
//! twice [`super::view::RECENT`]) are checked, so the cost stays that of a
//! hundred signatures and one `rev-list` whatever the grid's size.
//!
//! The roots come from `--roots` (and `--grid-id`), as a worker pins them;
//! without them, from the grid's own `.dgrid/roots` and the policy's grid
//! id, which anyone who can push could have rewritten along with the
//! policy: the view says which.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use super::policy_history;
use super::verify::{NEVER_RAN, UNCHECKED, verify_results};
use super::view::{GridView, TrustView};
use crate::git::GitError;
use crate::git::{Blob, GridRepo};
use crate::grid::{Id, TaskRules};
use crate::time::Timestamp;
use crate::trust::policy::{MAX_POLICY_BYTES, POLICY_FILE, Pinned, ROOTS_FILE};
use crate::trust::{KeyStanding, Verifier};
use crate::trust::{keys, record};

/// Bytes of the policy's past versions read to find the newest the roots
/// signed: a grid makes a few hundred small versions in its life.
const HISTORY_READ_BUDGET: u64 = 16 * 1024 * 1024;

/// The most parents' results checked for tasks held only by their path.
const PARENTS_CHECKED: usize = 256;

/// The roots to check against, as the tools take them.
#[derive(Debug, Clone, clap::Args)]
pub struct PinArgs {
    /// The grid's root public keys, as the workers pin them [default: the
    /// grid's own .dgrid/roots, which a pusher could have rewritten].
    #[arg(long = "roots", value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// The grid's id, as the workers pin it [default: the policy's].
    #[arg(long, env = "DGRID_GRID_ID", value_name = "ID")]
    pub grid_id: Option<String>,
    /// Root signatures a policy needs, as the workers pin it (`[trust]
    /// threshold`): a version signed by fewer is refused, as they refuse
    /// it.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threshold: u64,
}

impl Default for PinArgs {
    /// The grid's own roots, the policy's grid id, one root signature.
    fn default() -> Self {
        PinArgs {
            roots: None,
            grid_id: None,
            threshold: 1,
        }
    }
}

/// Check the results `view` lists, and the node keys its records show,
/// against the grid's policy at `tip`. A grid without a policy is left as
/// it is; a policy that cannot be used is said in `view.trust.error`.
pub fn attest(
    view: &mut GridView,
    repo: &GridRepo,
    tip: &str,
    pin: &PinArgs,
    now: Timestamp,
) -> Result<(), GitError> {
    let policy = match repo.read_path(tip, POLICY_FILE, MAX_POLICY_BYTES as u64)? {
        // Never one: no trust. One deleted, or put out of reach (a
        // submodule at its path): refused below as no policy at all, and
        // checked against the newest in the history, as nodes keep it.
        Blob::Missing if !policy_history::ever(repo, tip)? => return Ok(()),
        Blob::Missing => Vec::new(),
        Blob::Data(p) => p,
        unread => {
            view.trust = Some(TrustView {
                error: Some(format!(
                    "{POLICY_FILE} {}",
                    unread.why_unread().unwrap_or_default()
                )),
                ..TrustView::default()
            });
            return Ok(());
        }
    };
    let (verifier, mut trust) = match open(repo, tip, pin, &policy)? {
        Ok(v) => v,
        Err(error) => {
            view.trust = Some(TrustView {
                error: Some(error),
                ..TrustView::default()
            });
            return Ok(());
        }
    };
    // The results listed, and those of the parents of tasks held only by
    // their path: all checked with one look at the history.
    let mut paths: Vec<String> = view
        .recent
        .iter()
        .chain(&view.failures)
        .map(|r| r.file.clone())
        .collect();
    // Bounded: a grid's blocked/ is anyone's to fill, and a held task is
    // rare (a node releases it at its parent's result).
    let parents: Vec<String> = view
        .waiting
        .iter()
        .filter(|w| w.held.is_some())
        .flat_map(|w| w.parent_results.iter().cloned())
        .take(PARENTS_CHECKED)
        .collect();
    paths.extend(parents.iter().cloned());
    paths.sort();
    paths.dedup();
    let checks: HashMap<String, _> = verify_results(repo, tip, &verifier, &paths, now)?
        .into_iter()
        .map(|c| (c.path.clone(), c))
        .collect();
    let listed: std::collections::HashSet<&String> = view
        .recent
        .iter()
        .chain(&view.failures)
        .map(|r| &r.file)
        .collect();
    for c in checks.values().filter(|c| listed.contains(&c.path)) {
        trust.checked += 1;
        match (&c.attested_by, c.code) {
            (Some(_), _) => {
                trust.attested += 1;
                trust.attested_unsigned += usize::from(c.task_signed == Some(false));
            }
            (None, Some(UNCHECKED)) => trust.unchecked += 1,
            (None, Some(NEVER_RAN)) => trust.never_ran += 1,
            (None, _) => trust.not_attested += 1,
        }
    }
    // A parent's completed result that is not attested releases nothing
    // on a node that enforces trust: its dependant waits there.
    for w in view.waiting.iter_mut().filter(|w| w.held.is_some()) {
        let unattested = w.parent_results.iter().find_map(|p| {
            let c = checks.get(p)?;
            // Unchecked (a shallow clone), or a file git could not read
            // by its name, is not known to be forged.
            let unknown = matches!(c.code, Some(UNCHECKED | "missing" | "unreadable"));
            if c.task_not_taken {
                return Some((
                    p,
                    "answers a task its node did not find signed (task-not-signed)".to_owned(),
                ));
            }
            (c.attested_by.is_none() && !unknown).then(|| {
                (
                    p,
                    format!("is not attested ({})", c.code.unwrap_or("error")),
                )
            })
        });
        if let Some((file, why)) = unattested {
            w.held = Some(format!(
                "waits on nodes that enforce trust: the completed result {file} {why}, and releases nothing there"
            ));
        }
    }
    for r in view.recent.iter_mut().chain(view.failures.iter_mut()) {
        let Some(c) = checks.get(&r.file) else {
            continue;
        };
        r.attested_by = c.attested_by.clone();
        r.trust = Some(match (&c.attested_by, c.code) {
            (Some(_), _) => "attested".to_owned(),
            (None, code) => code.unwrap_or("error").to_owned(),
        });
        r.trust_error = c.error.clone();
        r.task_signed = c.task_signed;
    }
    for n in &mut view.nodes {
        let (Ok(id), Some(line)) = (Id::parse(&n.node_id), &n.key_line) else {
            continue;
        };
        n.key_problem = match keys::parse_public(line) {
            Err(e) => Some(format!("its key {e}")),
            Ok(k) => match verifier.node_key_standing(&id, &k, now) {
                KeyStanding::Listed | KeyStanding::NoPolicy => None,
                KeyStanding::Problem(why) => Some(why),
            },
        };
    }
    // What a node in `enforce` makes of each record: counted only if the
    // policy lists its signer as that node's key.
    for n in &mut view.nodes {
        let Ok(id) = Id::parse(&n.node_id) else {
            continue;
        };
        if n.error.is_some() {
            continue;
        }
        n.record_problem = match record::signer(&n.record_bytes, verifier.grid_id()) {
            Err(e) => Some(e.to_string()),
            Ok(k) => match verifier.node_key_standing(&id, &k, now) {
                KeyStanding::Listed | KeyStanding::NoPolicy => None,
                KeyStanding::Problem(why) => Some(format!(
                    "is signed by a key the policy does not count for it: {why}"
                )),
            },
        };
    }
    view.trust = Some(trust);
    Ok(())
}

/// The verifier for the policy file `policy`, and the view's header.
fn open(
    repo: &GridRepo,
    tip: &str,
    pin: &PinArgs,
    policy: &[u8],
) -> Result<Result<(Verifier, TrustView), String>, GitError> {
    let (roots, from) = match &pin.roots {
        Some(path) => match keys::read_public_list(path) {
            Ok(k) => (k, format!("pinned ({})", path.display())),
            Err(e) => return Ok(Err(e.to_string())),
        },
        None => match repo.read_path(tip, ROOTS_FILE, 64 * 1024)? {
            Blob::Data(text) => match keys::parse_list(&String::from_utf8_lossy(&text)) {
                Ok(k) if !k.is_empty() => (
                    k,
                    format!("the grid's own {ROOTS_FILE} (pass --roots to pin them)"),
                ),
                Ok(_) => return Ok(Err(format!("{ROOTS_FILE} holds no key; pass --roots"))),
                Err((line, e)) => return Ok(Err(format!("{ROOTS_FILE}: line {line}: {e}"))),
            },
            _ => {
                return Ok(Err(format!(
                    "the grid has no readable {ROOTS_FILE}; pass --roots"
                )));
            }
        },
    };
    let threshold = pin.threshold as usize;
    // The history, read with a budget of its own (below), once.
    let own = repo.clone().with_read_budget(HISTORY_READ_BUDGET);
    let mut read = None;
    let grid_id = match &pin.grid_id {
        Some(g) => Id::parse(g).map_err(|e| format!("--grid-id {g:?}: {e}")),
        None => match serde_json::from_slice::<Value>(policy)
            .ok()
            .and_then(|v| v["grid_id"].as_str().and_then(|g| Id::parse(g).ok()))
        {
            Some(g) => Ok(g),
            // The tip's is broken (or gone): the newest the roots signed
            // names the grid, or a pusher's junk would check nothing. The
            // newest of any grid is the newest of its own.
            None => {
                let history = policy_history::read_pinned(&own, tip, &roots, None, threshold)?;
                let id = history
                    .newest
                    .as_ref()
                    .map(|n| n.accepted.policy.grid_id.clone());
                read = Some(history);
                id.ok_or_else(|| format!("{POLICY_FILE}: has no valid `grid_id`"))
            }
        },
    };
    let grid_id = match grid_id {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    let mut verifier = Verifier::new(
        Pinned {
            grid_id: grid_id.clone(),
            roots: roots.clone(),
            threshold,
            min_version: 0,
        },
        TaskRules::default(),
    );
    // A node that took a version keeps it when the tip's is refused (a
    // version put back, or one signed by fewer roots than pinned), and
    // checks by it: so does the view, with the newest version in the
    // branch's history that the roots signed (a clone without history
    // holds only the tip's), read with a budget of its own, so that the
    // versions a pusher piles up cannot leave the results unread.
    let history = match read {
        Some(h) => h,
        None => policy_history::read_pinned(&own, tip, &roots, Some(&grid_id), threshold)?,
    };
    let newest = history.newest.as_ref();
    let refused = match verifier.offer_policy(policy) {
        Ok(_) => match (verifier.policy_version(), newest) {
            (Some(cur), Some(n)) if n.accepted.policy.version > cur => Some(format!(
                "{POLICY_FILE} (rolled-back): version {cur} is older than version {} that the roots signed",
                n.accepted.policy.version
            )),
            _ => None,
        },
        Err(e) => Some(format!("{POLICY_FILE} ({}): {e}", e.code())),
    };
    let tip_refused = match (refused, newest) {
        (None, _) => None,
        (Some(why), Some(n)) if verifier.offer_policy(&n.accepted.file).is_ok() => Some(format!(
            "{why}; checked against version {} (commit {}), the newest the roots signed, which nodes that took it keep (a node that took none runs no signed task)",
            n.accepted.policy.version, n.commit
        )),
        (Some(why), _) => return Ok(Err(why)),
    };
    let view = TrustView {
        grid_id: grid_id.to_string(),
        roots: from,
        policy_version: verifier.policy_version(),
        tip_refused,
        ..TrustView::default()
    };
    Ok(Ok((verifier, view)))
}

/// Said after "attested by node n2" of the result of a task no submitter
/// signed (run by a node in mode `off`): it is the node's word for what it
/// ran, not a signed task's result.
/// Said after "attested by node n2" of a result whose node said it took no
/// submitter's signature on the task (`task_signed_by: null`: run in
/// `off` or `warn`, or its submitter's key revoked by the time it ended): `verify`
/// said nothing of it, where nodes that enforce trust hold its dependants.
pub fn not_taken_note(task_not_taken: bool) -> &'static str {
    match task_not_taken {
        true => {
            " (its node took no submitter's signature on the task: task-not-signed; it releases no dependant on nodes that enforce trust)"
        }
        false => "",
    }
}

pub fn unsigned_note(task_signed: Option<bool>) -> &'static str {
    match task_signed {
        Some(false) => " (the task was not signed)",
        _ => "",
    }
}
