//! `verify`, and the trust column of `status` and `dashboard`: whether
//! each result on the grid's branch is attested, by which node, or why
//! not, checked against a policy (`Verifier`) and the branch's history.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::git::{Blob, GitError, GridRepo};
use crate::grid::{Id, TaskRules, layout};
use crate::time::Timestamp;
use crate::trust::result::TaskSigner;
use crate::trust::{TrustError, Verifier};

/// One result's standing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResultCheck {
    pub path: String,
    pub task_id: Option<String>,
    /// The node whose signature makes it count, if it counts.
    pub attested_by: Option<String>,
    /// Why it does not count: a refusal's name (`unsigned`, `wrong-node`,
    /// `claim-not-held`, ...), or `unchecked` when the clone lacks the
    /// history to tell (a shallow clone without the claim's commit).
    pub code: Option<&'static str>,
    pub error: Option<String>,
    /// Of an attested result: `false` when the task it answers was not
    /// signed (run by a node in mode `off`), so that nobody takes it for
    /// the result of a task a submitter signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_signed: Option<bool>,
    /// Of an attested result: its node took no submitter's signature on
    /// the task (`task_signed_by: null`), so it releases no dependant on a
    /// node enforcing trust (`Verifier::completes`). In JSON only when so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub task_not_taken: bool,
}

impl ResultCheck {
    /// A result that does not count, and why.
    fn refused(path: String, task_id: Option<String>, code: &'static str, error: String) -> Self {
        ResultCheck {
            path,
            task_id,
            attested_by: None,
            code: Some(code),
            error: Some(error),
            task_signed: None,
            task_not_taken: false,
        }
    }
}

/// The code of a result whose signature and signer hold but whose claim
/// could not be looked at: the clone is shallow and lacks its commit.
pub const UNCHECKED: &str = "unchecked";

/// The code of a result of a task that never ran (`invalid`, `abandoned`,
/// `dependency_failed`), unsigned as every such result is: it says no
/// output was made, so there is nothing to attest, and it is no result for
/// `verify`'s exit status.
pub const NEVER_RAN: &str = "never-ran";

/// The statuses of a task that never ran.
const NEVER_RAN_STATUSES: [&str; 3] = ["invalid", "abandoned", "dependency_failed"];

/// Does the result claim nothing of a run: no exit code, no output, no
/// duration, no claim it was run under? So does every result a node writes
/// for a task that never ran; one that claims any of them is read as the
/// result of a run, whatever its status says.
fn claims_no_output(v: &Value) -> bool {
    let none = |k: &str| v.get(k).is_none_or(Value::is_null);
    let empty = |k: &str| {
        v.get(k)
            .is_none_or(|s| s.is_null() || s.as_str() == Some(""))
    };
    v.is_object()
        && none("exit_code")
        && none("duration_ms")
        && none("claim_commit")
        && empty("stdout")
        && empty("stderr")
        && v.get("truncated").is_none_or(|t| t == &Value::Bool(false))
}

/// How to read each of `paths` at `tip`: by the blob id its directory's
/// listing gives it (one listing a directory), so that a name git's
/// `<tip>:<path>` cannot carry (one with a newline) is read all the same;
/// `<tip>:<path>` for a path no listing holds (git then says it is not
/// there).
fn blob_specs(repo: &GridRepo, tip: &str, paths: &[String]) -> Result<Vec<String>, GitError> {
    let mut listed: HashMap<&str, HashMap<String, String>> = HashMap::new();
    for dir in paths
        .iter()
        .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d))
    {
        if !listed.contains_key(dir) {
            let names = repo
                .list_dir(tip, dir)?
                .into_iter()
                .map(|e| (e.name_lossy(), e.oid))
                .collect();
            listed.insert(dir, names);
        }
    }
    Ok(paths
        .iter()
        .map(|p| {
            p.rsplit_once('/')
                .and_then(|(dir, name)| listed.get(dir)?.get(name).cloned())
                .unwrap_or_else(|| format!("{tip}:{p}"))
        })
        .collect())
}

/// Check results on the grid's branch: every file in `tasks/completed/` and
/// `tasks/failed/`, or only `paths`. A result's claim commit must be in the
/// branch's history (one `rev-list`, whatever the number of results, and
/// only if a result names a commit) and hold its node's claim. In a
/// shallow clone, a result whose claim commit is not there is
/// [`UNCHECKED`], not refused.
pub fn verify_results(
    repo: &GridRepo,
    tip: &str,
    verifier: &Verifier,
    paths: &[String],
    now: Timestamp,
) -> Result<Vec<ResultCheck>, GitError> {
    // Each result by the blob id its directory's listing gives it.
    let (paths, specs): (Vec<String>, Vec<String>) = if paths.is_empty() {
        let mut all = Vec::new();
        for dir in [layout::COMPLETED, layout::FAILED] {
            for e in repo.list_dir(tip, dir)? {
                let name = e.name_lossy();
                if name != layout::KEEP_FILE {
                    all.push((format!("{dir}/{name}"), e.oid));
                }
            }
        }
        all.into_iter().unzip()
    } else {
        (paths.to_vec(), blob_specs(repo, tip, paths)?)
    };
    let blobs = repo.read_objects(&specs, layout::MAX_RESULT_BYTES)?;
    // (claim commit, task id) each result names, unverified: only to know
    // which claim file to read.
    let claimed: Vec<Option<(String, String)>> = blobs
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_slice(b.data()?).ok()?;
            let commit = v["claim_commit"].as_str()?.to_owned();
            let task = v["task_id"].as_str()?.to_owned();
            // Only what could be an object id is handed to git.
            let hex = commit.len() >= 40 && commit.bytes().all(|c| c.is_ascii_hexdigit());
            (hex && Id::parse(&task).is_ok()).then_some((commit, task))
        })
        .collect();
    let history: HashSet<String> = if claimed.iter().any(Option::is_some) {
        repo.git()
            .run(&["rev-list", tip])?
            .stdout_str()
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        HashSet::new()
    };
    // Commits named but not in the history: in a shallow clone, those that
    // are not there at all cannot be judged.
    let elsewhere: Vec<String> = claimed
        .iter()
        .flatten()
        .map(|(c, _)| c.clone())
        .filter(|c| !history.contains(c))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let absent: HashSet<String> = if !elsewhere.is_empty() && repo.is_shallow()? {
        let specs: Vec<String> = elsewhere
            .iter()
            .map(|c| format!("{c}^{{commit}}"))
            .collect();
        elsewhere
            .iter()
            .zip(repo.object_info(&specs)?)
            .filter(|(_, info)| info.is_none())
            .map(|(c, _)| c.clone())
            .collect()
    } else {
        HashSet::new()
    };
    let named: Vec<Option<(String, String)>> = claimed
        .iter()
        .map(|n| n.clone().filter(|(c, _)| history.contains(c)))
        .collect();
    let claim_specs: Vec<String> = named
        .iter()
        .flatten()
        .map(|(c, t)| format!("{c}:{}/{t}.json", layout::IN_PROGRESS))
        .collect();
    let mut claims = repo
        .read_objects(&claim_specs, TaskRules::default().max_file_bytes as u64)?
        .into_iter()
        .map(Blob::into_data);
    let mut out = Vec::new();
    for (((path, blob), named), claimed) in paths.into_iter().zip(blobs).zip(named).zip(claimed) {
        let claim = if named.is_some() {
            claims.next().flatten()
        } else {
            None
        };
        let bytes = match blob {
            Blob::Data(bytes) => bytes,
            Blob::Missing => {
                let error = format!("is not on the branch at {tip}");
                out.push(ResultCheck::refused(path, None, "missing", error));
                continue;
            }
            unread => {
                let error = unread.why_unread().unwrap_or_default();
                out.push(ResultCheck::refused(path, None, "unreadable", error));
                continue;
            }
        };
        let fields = serde_json::from_slice::<Value>(&bytes).ok();
        let task_id = fields
            .as_ref()
            .and_then(|v| v["task_id"].as_str().map(str::to_owned));
        // Only in `failed/`, where such results are filed.
        let in_failed = path
            .strip_prefix(layout::FAILED)
            .is_some_and(|p| p.starts_with('/'));
        let never_ran = fields
            .as_ref()
            .filter(|v| in_failed && claims_no_output(v))
            .and_then(|v| v["status"].as_str())
            .filter(|s| NEVER_RAN_STATUSES.contains(s));
        let mut checked = verifier.verify_result(&path, &bytes, claim.as_deref(), now);
        if let (Err(TrustError::Unsigned), Some(status)) = (&checked, never_ran) {
            let error = format!(
                "the task never ran ({status}): no node signs such a result, as it claims no output"
            );
            out.push(ResultCheck::refused(path, task_id, NEVER_RAN, error));
            continue;
        }
        // A claim commit that is not on the branch (made elsewhere, or
        // invented) holds no claim, whatever it contains: say so; unless
        // the clone is shallow and lacks it, when nothing can be said.
        let elsewhere = claimed.map(|(c, _)| c).filter(|c| !history.contains(c));
        if let (Err(TrustError::ClaimNotHeld(why)), None, Some(c)) =
            (&mut checked, &named, &elsewhere)
        {
            if absent.contains(c) {
                let error = format!(
                    "its signature holds, but this clone is shallow and lacks its claim's commit {c}: fetch the grid's history to check the claim"
                );
                out.push(ResultCheck::refused(path, task_id, UNCHECKED, error));
                continue;
            }
            *why = format!("commit {c} is not in the branch's history");
        }
        out.push(match checked {
            Ok(a) => ResultCheck {
                path,
                task_id,
                attested_by: Some(a.node.to_string()),
                code: None,
                error: None,
                task_signed: a.task_signed,
                task_not_taken: a.task_signer == TaskSigner::NotTaken,
            },
            Err(e) => ResultCheck::refused(path, task_id, e.code(), e.to_string()),
        });
    }
    Ok(out)
}
