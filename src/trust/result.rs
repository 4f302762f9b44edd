//! Signed results.
//!
//! A node signs its result's fields plus `grid_id`, `task_digest` (the
//! [`TaskDigest`] of the task it ran), `claim_commit` (the commit that
//! put its claim in `tasks/in_progress/`) and `task_signed_by` (the
//! submitter whose signature on the task its policy took, or `null`), with
//! its own key, in the grid's result namespace. The file is those fields
//! and the envelope:
//!
//! ```json
//! {
//!   "task_id": "t-42", "node_id": "n1", "exit_code": 0, "stdout": "hi\n", "stderr": "",
//!   "timestamp": "…", "status": "completed", "attempt": 1, "truncated": false,
//!   "grid_id": "g7",
//!   "task_digest": "sha256:9f86d0…",
//!   "claim_commit": "3b18e5…",
//!   "task_signed_by": "alice",
//!   "envelope": {"payload_type": "application/vnd.dgrid.result.v1+json", "payload": "…", "signatures": ["…"]}
//! }
//! ```
//!
//! A result counts ("attested") only if the policy lists its signer as the
//! node it names, and, for a task that ran, the claim commit holds that
//! node's claim of that task, at that attempt, with that digest: a node
//! cannot answer for a claim it never held, nor for another task.
//!
//! `task_signed_by` is the runner's word on what it ran: a listed node in
//! `warn` or `off` runs tasks no submitter signed, and signs their results
//! as its own. A node enforcing trust takes a completed result as a
//! parent's completion (its dependants' release and input) only if the
//! runner found the task signed ([`TaskSigner`]), or the result is older
//! than the field: else a pusher's unsigned task of a parent's id, run by
//! such a node, would feed its output to a signed dependant.

use serde_json::Value;
use ssh_key::PublicKey;

use super::envelope::{self, ENVELOPE_FIELD, Envelope};
use super::error::TrustError;
use super::policy::{Index, Kind, Lookup};
use super::sig::{self, KeySigner, Role, SigError, SignError};
use super::task::{TaskDigest, signer_for};
use crate::grid::claim::{CLAIM_FIELD, Claim, pretty};
use crate::grid::{Id, ResultStatus, TaskResult};

/// The signed field naming the submitter whose signature the runner's
/// policy took on the task it ran (`null`: none, or not checked).
pub const TASK_SIGNER_FIELD: &str = "task_signed_by";

/// The task a result answers, as its node signs it: the digest of the task
/// file it ran, the commit that pushed its claim (none where the node does
/// not know it; such a result is not attested, [`judge`]), and the
/// submitter whose signature its policy took on that file (none in `off`,
/// or where it took none).
pub struct Answered<'a> {
    pub task_digest: &'a TaskDigest,
    pub claim_commit: Option<&'a str>,
    pub task_signer: Option<&'a Id>,
}

impl<'a> Answered<'a> {
    /// The task file `task_digest` claimed in `claim_commit`, no signer.
    pub fn new(task_digest: &'a TaskDigest, claim_commit: Option<&'a str>) -> Answered<'a> {
        Answered {
            task_digest,
            claim_commit,
            task_signer: None,
        }
    }
}

/// Sign a result. Results of tasks that never ran are not signed at all.
pub fn sign(
    result: &TaskResult,
    grid: &Id,
    answered: &Answered<'_>,
    key: &KeySigner,
) -> Result<Vec<u8>, SignError> {
    let Value::Object(mut fields) = serde_json::to_value(result).expect("results serialise") else {
        unreachable!("a struct serialises to an object")
    };
    fields.insert("grid_id".into(), grid.to_string().into());
    fields.insert(
        "task_digest".into(),
        answered.task_digest.to_string().into(),
    );
    if let Some(c) = answered.claim_commit {
        fields.insert("claim_commit".into(), c.into());
    }
    fields.insert(
        TASK_SIGNER_FIELD.into(),
        answered
            .task_signer
            .map_or(Value::Null, |s| s.to_string().into()),
    );
    let payload = serde_json::to_vec(&Value::Object(fields.clone())).expect("JSON serialises");
    let signature = key.sign(Role::Result, grid, &payload)?;
    fields.insert(
        ENVELOPE_FIELD.into(),
        Envelope::new(Role::Result, &payload, vec![signature]).to_value(),
    );
    Ok(pretty(&Value::Object(fields)))
}

/// A result file, parsed and its signature checked against the key it
/// names; who that key is comes in [`judge`].
#[derive(Debug, Clone)]
pub struct Opened {
    pub result: TaskResult,
    pub task_digest: String,
    pub claim_commit: Option<String>,
    pub task_signer: TaskSigner,
    pub signer: PublicKey,
    pub signature: Result<(), SigError>,
}

/// What a result says of the signature on the task it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSigner {
    /// Nothing: a result signed before nodes said it.
    Unsaid,
    /// `null`: its node took no submitter's signature on the task.
    NotTaken,
    /// The submitter whose signature its node's policy took.
    By(String),
}

fn text_field(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, TrustError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TrustError::BadField {
            field,
            reason: "not a string".into(),
        }),
    }
}

pub fn open(bytes: &[u8], grid: &Id) -> Result<Opened, TrustError> {
    let top = envelope::parse_file(bytes)?;
    let env = Envelope::from_field(
        top.get(ENVELOPE_FIELD).ok_or(TrustError::Unsigned)?,
        Role::Result,
    )?;
    let armored = env.only_signature(Role::Result)?;
    let payload = env.payload_bytes()?;
    let signed = envelope::parse_object(&payload)?;
    envelope::agree(&top, &signed, &[ENVELOPE_FIELD]).map_err(TrustError::Tampered)?;
    match text_field(&signed, "grid_id")? {
        Some(g) if g == grid.as_str() => {}
        Some(g) => {
            return Err(TrustError::OtherGrid {
                found: g,
                expected: grid.to_string(),
            });
        }
        None => {
            return Err(TrustError::BadField {
                field: "grid_id",
                reason: "it is missing".into(),
            });
        }
    }
    let task_digest = text_field(&signed, "task_digest")?.ok_or(TrustError::BadField {
        field: "task_digest",
        reason: "it is missing".into(),
    })?;
    let claim_commit = text_field(&signed, "claim_commit")?;
    let task_signer = match signed.get(TASK_SIGNER_FIELD) {
        None => TaskSigner::Unsaid,
        Some(Value::Null) => TaskSigner::NotTaken,
        Some(_) => TaskSigner::By(text_field(&signed, TASK_SIGNER_FIELD)?.unwrap_or_default()),
    };
    let result: TaskResult =
        serde_json::from_value(Value::Object(signed)).map_err(|e| TrustError::BadField {
            field: "result",
            reason: e.to_string(),
        })?;
    let s = sig::parse(armored).map_err(TrustError::BadSignature)?;
    Ok(Opened {
        result,
        task_digest,
        claim_commit,
        task_signer,
        signer: sig::signer(&s),
        signature: sig::verify(&s, Role::Result, grid, &payload),
    })
}

/// A result that counts: its node, and the task and claim it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub node: Id,
    pub task_digest: String,
    pub claim_commit: Option<String>,
    /// Whether the task it answers was signed: false when the claim file
    /// (the task as claimed) has no envelope, a task run by a node in mode
    /// `off` that no submitter signed; none for a task that never ran.
    pub task_signed: Option<bool>,
    /// What the node said of the task's signature (`task_signed_by`).
    pub task_signer: TaskSigner,
}

/// The first half of [`judge`], all that needs no history: the signature
/// holds, and the policy lists its key, now, as the key of the node the
/// result names. Returns that node.
pub fn judge_signer(
    opened: &Opened,
    index: &Index,
    now: crate::time::Timestamp,
) -> Result<Id, TrustError> {
    if index.lookup(&opened.signer) == Lookup::Unknown {
        return Err(TrustError::UnknownSigner {
            fingerprint: super::keys::fingerprint(&opened.signer),
        });
    }
    opened.signature.clone().map_err(TrustError::BadSignature)?;
    let signer = signer_for(index, &opened.signer, Kind::Node, now)?;
    if signer != opened.result.node_id {
        return Err(TrustError::WrongNode {
            signer: signer.to_string(),
            node_id: opened.result.node_id.to_string(),
        });
    }
    Ok(signer)
}

/// Does the result count? `claim_file` is `tasks/in_progress/<task_id>.json`
/// as it was in the result's `claim_commit` (none if that commit or file is
/// not there); the caller reads it from git.
pub fn judge(
    opened: &Opened,
    index: &Index,
    now: crate::time::Timestamp,
    claim_file: Option<&[u8]>,
) -> Result<Attested, TrustError> {
    let signer = judge_signer(opened, index, now)?;
    let r = &opened.result;
    let ran = matches!(
        r.status,
        ResultStatus::Completed | ResultStatus::Failed | ResultStatus::Timeout
    );
    let mut task_signed = None;
    if ran {
        let Some(commit) = &opened.claim_commit else {
            return Err(TrustError::ClaimNotHeld(
                "the result names no `claim_commit`".into(),
            ));
        };
        let path = format!("{}/{}.json", crate::grid::layout::IN_PROGRESS, r.task_id);
        let file = claim_file
            .ok_or_else(|| TrustError::ClaimNotHeld(format!("commit {commit} has no {path}")))?;
        let claimed = serde_json::from_slice::<Value>(file).ok();
        task_signed = claimed.as_ref().map(|v| v.get(ENVELOPE_FIELD).is_some());
        let claim = claimed
            .and_then(|mut v| v.get_mut(CLAIM_FIELD).map(Value::take))
            .and_then(|c| serde_json::from_value::<Claim>(c).ok())
            .ok_or_else(|| {
                TrustError::ClaimNotHeld(format!("{path} in commit {commit} has no claim block"))
            })?;
        if claim.node_id != r.node_id || claim.attempt != r.attempt {
            return Err(TrustError::ClaimNotHeld(format!(
                "{path} in commit {commit} is claimed by {} at attempt {}, not by {} at attempt {}",
                claim.node_id, claim.attempt, r.node_id, r.attempt
            )));
        }
        if TaskDigest::of_file(file).map(|d| d.0) != Some(opened.task_digest.clone()) {
            return Err(TrustError::ClaimNotHeld(format!(
                "{path} in commit {commit} is another task than {}",
                opened.task_digest
            )));
        }
    }
    Ok(Attested {
        node: signer,
        task_digest: opened.task_digest.clone(),
        claim_commit: opened.claim_commit.clone(),
        task_signed,
        task_signer: opened.task_signer.clone(),
    })
}

/// Does the result's `path` on the grid agree with what it signs? The
/// directory with its status (`completed/` holds `completed` results,
/// `failed/` the rest) and the name with its node and task:
/// `<node_id>@<task_id>.json`, or `<node_id>@<task_id>@<suffix>.json` for a
/// node's extra result of one task. Otherwise a copy of a real result (as
/// another node's, another task's, or a failure filed as completed) would
/// count as what its path says. An older `<node>-<task>.json` name is
/// refused too: results were signed only once names took `@`, so no node
/// ever wrote a signed result under one.
pub fn placed(path: &str, r: &TaskResult) -> Result<(), TrustError> {
    use crate::grid::layout::{COMPLETED, FAILED, RESULT_SEP, result_name_parts};
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let want_dir = if r.status.is_success() {
        COMPLETED
    } else {
        FAILED
    };
    if dir != want_dir {
        return Err(TrustError::Misplaced(format!(
            "it is a `{}` result, so it belongs in {want_dir}/, not {dir}/",
            r.status.as_str()
        )));
    }
    match result_name_parts(name) {
        Some((node, task, suffix))
            if node == r.node_id.as_str() && task == r.task_id && suffix != Some("") =>
        {
            Ok(())
        }
        _ => Err(TrustError::Misplaced(format!(
            "it is signed as node {}'s result of task {}, so its name must be {}{RESULT_SEP}{}.json \
             (or with an {RESULT_SEP}<suffix>), not {name}",
            r.node_id, r.task_id, r.node_id, r.task_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::claim::ClaimedTask;
    use crate::grid::{Task, TaskRules};
    use crate::trust::policy::tests::{at, id, signer};
    use crate::trust::policy::{Policy, Window};

    const NOW: &str = "2026-03-01T12:00:00Z";

    struct Fixture {
        n1: KeySigner,
        n2: KeySigner,
        index: Index,
        claim_file: Vec<u8>,
        digest: TaskDigest,
    }

    fn fixture() -> Fixture {
        let (n1, n2) = (signer(), signer());
        let mut p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
        p.add(Kind::Node, id("n1"), n1.public_key(), Window::default())
            .unwrap();
        p.add(Kind::Node, id("n2"), n2.public_key(), Window::default())
            .unwrap();
        let task = Task::parse(
            br#"{"task_id":"t1","script":"echo hi","timeout_seconds":30}"#,
            &TaskRules::default(),
        )
        .unwrap();
        let claim_file =
            ClaimedTask::new(task, &id("n1"), at(NOW), chrono::Duration::seconds(60)).to_bytes();
        Fixture {
            n1,
            n2,
            index: p.index().unwrap(),
            digest: TaskDigest::of_file(&claim_file).unwrap(),
            claim_file,
        }
    }

    fn result(node: &str) -> TaskResult {
        TaskResult {
            task_id: "t1".into(),
            node_id: id(node),
            exit_code: Some(0),
            stdout: "hi\n".into(),
            stderr: String::new(),
            timestamp: NOW.into(),
            status: ResultStatus::Completed,
            started_at: None,
            duration_ms: Some(5),
            attempt: 1,
            truncated: false,
            error: None,
        }
    }

    fn check(f: &Fixture, bytes: &[u8], claim: Option<&[u8]>) -> Result<Attested, TrustError> {
        judge(&open(bytes, &id("g7"))?, &f.index, at(NOW), claim)
    }

    /// What a result says of its task's signer is signed: a name, `null`,
    /// or (a result of a node before it said it) nothing.
    #[test]
    fn a_result_says_who_signed_its_task_under_its_signature() {
        let (f, alice) = (fixture(), id("alice"));
        let mut said = Answered::new(&f.digest, Some("c0"));
        let null = sign(&result("n1"), &id("g7"), &said, &f.n1).unwrap();
        said.task_signer = Some(&alice);
        let named = sign(&result("n1"), &id("g7"), &said, &f.n1).unwrap();
        let read = |b: &[u8]| open(b, &id("g7")).map(|o| o.task_signer);
        assert_eq!(read(&null), Ok(TaskSigner::NotTaken));
        assert_eq!(read(&named), Ok(TaskSigner::By("alice".into())));
        let mut forged: Value = serde_json::from_slice(&null).unwrap();
        forged[TASK_SIGNER_FIELD] = "alice".into();
        let forged = serde_json::to_vec(&forged).unwrap();
        assert_eq!(read(&forged).unwrap_err().code(), "tampered");
        let mut bad: Value = serde_json::from_slice(&null).unwrap();
        bad[TASK_SIGNER_FIELD] = 7.into();
        assert!(read(&serde_json::to_vec(&bad).unwrap()).is_err());
    }

    #[test]
    fn a_result_signed_by_the_claiming_node_is_attested() {
        let f = fixture();
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0ffee")),
            &f.n1,
        )
        .unwrap();
        let a = check(&f, &bytes, Some(&f.claim_file)).unwrap();
        assert_eq!(a.node.as_str(), "n1");
        assert_eq!(a.claim_commit.as_deref(), Some("c0ffee"));
        // The file still reads as a plain result.
        let plain: TaskResult = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(plain, result("n1"));
    }

    #[test]
    fn attack_forged_result_is_not_attested() {
        let f = fixture();
        // Another node's key, in n1's name.
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0")),
            &f.n2,
        )
        .unwrap();
        let e = check(&f, &bytes, Some(&f.claim_file)).unwrap_err();
        assert_eq!(
            e,
            TrustError::WrongNode {
                signer: "n2".into(),
                node_id: "n1".into()
            }
        );
        // A key the policy does not know.
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0")),
            &signer(),
        )
        .unwrap();
        assert_eq!(
            check(&f, &bytes, Some(&f.claim_file)).unwrap_err().code(),
            "unknown-signer"
        );
        // n1's own result with its output changed.
        let good = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0")),
            &f.n1,
        )
        .unwrap();
        let mut v: Value = serde_json::from_slice(&good).unwrap();
        v["stdout"] = "all good\n".into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), Some(&f.claim_file)).unwrap_err();
        assert_eq!(e.code(), "tampered");
        // ... and with the payload changed to match: the signature breaks.
        let env = Envelope::from_field(&v["envelope"], Role::Result).unwrap();
        let p = String::from_utf8(env.payload_bytes().unwrap())
            .unwrap()
            .replace("hi\\n", "all good\\n");
        v["envelope"]["payload"] = Envelope::new(Role::Result, p.as_bytes(), vec![])
            .payload
            .into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), Some(&f.claim_file)).unwrap_err();
        assert_eq!(e.code(), "bad-signature", "{e}");
    }

    #[test]
    fn attack_result_for_a_claim_the_node_never_held() {
        let f = fixture();
        // n2 signs its own result for the task n1 holds.
        let bytes = sign(
            &result("n2"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0")),
            &f.n2,
        )
        .unwrap();
        let e = check(&f, &bytes, Some(&f.claim_file)).unwrap_err();
        assert_eq!(e.code(), "claim-not-held");
        assert!(
            e.to_string()
                .contains("claimed by n1 at attempt 1, not by n2"),
            "{e}"
        );
        // No claim in the named commit, or none named.
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, Some("c0")),
            &f.n1,
        )
        .unwrap();
        assert_eq!(
            check(&f, &bytes, None).unwrap_err().code(),
            "claim-not-held"
        );
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&f.digest, None),
            &f.n1,
        )
        .unwrap();
        assert_eq!(
            check(&f, &bytes, Some(&f.claim_file)).unwrap_err().code(),
            "claim-not-held"
        );
        // The claim of another task.
        let other = TaskDigest::of_bytes(b"another task");
        let bytes = sign(
            &result("n1"),
            &id("g7"),
            &Answered::new(&other, Some("c0")),
            &f.n1,
        )
        .unwrap();
        let e = check(&f, &bytes, Some(&f.claim_file)).unwrap_err();
        assert!(e.to_string().contains("is another task"), "{e}");
    }

    #[test]
    fn a_result_is_placed_only_where_its_signed_fields_put_it() {
        let ok = |path: &str, r: &TaskResult| placed(path, r).is_ok();
        let done = result("n1");
        assert!(ok("tasks/completed/n1@t1.json", &done));
        assert!(ok("tasks/completed/n1@t1@1764.json", &done));
        for wrong in [
            "tasks/failed/n1@t1.json",
            "tasks/completed/n2@t1.json",
            "tasks/completed/n1@t9.json",
            "tasks/completed/n1@t1@.json",
            "tasks/completed/n1-t1.json",
            "tasks/completed/n1@t1.txt",
        ] {
            assert_eq!(
                placed(wrong, &done).unwrap_err().code(),
                "misplaced",
                "{wrong}"
            );
        }
        let failed = TaskResult {
            status: ResultStatus::Failed,
            ..result("n1")
        };
        assert!(ok("tasks/failed/n1@t1.json", &failed));
        assert!(!ok("tasks/completed/n1@t1.json", &failed));
    }
}
