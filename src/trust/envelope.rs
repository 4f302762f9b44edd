//! The envelope: signed bytes carried inside a JSON file.
//!
//! ```json
//! "envelope": {
//!   "payload_type": "application/vnd.dgrid.task.v1+json",
//!   "payload": "<base64 of the exact bytes signed>",
//!   "signatures": ["-----BEGIN SSH SIGNATURE-----\n…\n-----END SSH SIGNATURE-----\n"]
//! }
//! ```
//!
//! As in DSSE, the signature is over bytes, not over a JSON value, so no
//! canonical form of JSON is needed, and a tool that rewrites the file (a
//! claim adds a block, a requeue an attempt) cannot change what was signed.
//! The payload is a JSON object; the file's other top-level fields are a
//! readable copy of it, and must agree with it field for field (see
//! [`agree`]), so that a reviewer who reads the file reads what runs.
//! The namespace of the signature already binds the role; `payload_type` is
//! checked too so that a file says what it is.

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::sig::Role;

/// The top-level field that holds the envelope.
pub const ENVELOPE_FIELD: &str = "envelope";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 (standard alphabet, padded) of the signed bytes.
    pub payload: String,
    /// Armored SSH signatures over the payload: one for a task or a result;
    /// one per root for a policy.
    pub signatures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("field `envelope` is malformed: {0}")]
    Malformed(String),
    #[error("field `envelope.payload_type` is {found:?}; a {role} carries {expected:?}")]
    PayloadType {
        found: String,
        expected: &'static str,
        role: &'static str,
    },
    #[error("field `envelope.payload` is not base64: {0}")]
    NotBase64(String),
    #[error("the signed payload {0}")]
    BadPayload(String),
    /// The file itself, before any envelope is looked for: said as the
    /// file's fault, not a signed payload's (an unsigned file has none).
    #[error("the file {0}")]
    BadFile(String),
    #[error("field `envelope.signatures` holds {found} signatures; a {role} carries {expected}")]
    SignatureCount {
        found: usize,
        expected: &'static str,
        role: &'static str,
    },
}

impl Envelope {
    pub fn new(role: Role, payload: &[u8], signatures: Vec<String>) -> Envelope {
        Envelope {
            payload_type: role.payload_type().to_owned(),
            payload: Base64::encode_string(payload),
            signatures,
        }
    }

    /// The envelope in a file's top-level object, checked for `role`.
    pub fn from_field(value: &Value, role: Role) -> Result<Envelope, EnvelopeError> {
        let env: Envelope = serde_json::from_value(value.clone())
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if env.payload_type != role.payload_type() {
            return Err(EnvelopeError::PayloadType {
                found: env.payload_type,
                expected: role.payload_type(),
                role: role.word(),
            });
        }
        Ok(env)
    }

    /// The exact signed bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        Base64::decode_vec(self.payload.trim()).map_err(|e| EnvelopeError::NotBase64(e.to_string()))
    }

    /// The one signature a task or a result carries.
    pub fn only_signature(&self, role: Role) -> Result<&str, EnvelopeError> {
        match self.signatures.as_slice() {
            [one] => Ok(one),
            other => Err(EnvelopeError::SignatureCount {
                found: other.len(),
                expected: "exactly one",
                role: role.word(),
            }),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an envelope serialises")
    }
}

/// Parse signed bytes as a JSON object, refusing a key given twice (JSON
/// parsers disagree on which one counts, so a reader could see another
/// payload than the worker).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| EnvelopeError::BadPayload(format!("is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| EnvelopeError::BadPayload(format!("is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(EnvelopeError::BadPayload("is not a JSON object".into()));
    };
    if let Some(key) = crate::grid::task::duplicate_key(text) {
        return Err(EnvelopeError::BadPayload(format!(
            "has field `{key}` more than once"
        )));
    }
    Ok(obj)
}

/// [`parse_object`] of a whole file (a task's or a result's), its faults
/// named as the file's.
pub fn parse_file(bytes: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    parse_object(bytes).map_err(|e| match e {
        EnvelopeError::BadPayload(why) => EnvelopeError::BadFile(why),
        e => e,
    })
}

/// How a file's top-level fields disagree with its signed payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    #[error("field `{0}` differs from the signed payload")]
    Differs(String),
    #[error("field `{0}` is not in the signed payload")]
    Unsigned(String),
    #[error("signed field `{0}` is missing from the file")]
    Missing(String),
    #[error("the signed payload holds field `{0}`, which only the grid may write")]
    Reserved(String),
}

/// The file's top-level object must be the payload plus the fields the grid
/// itself writes (`unsigned`: the envelope, a claim block, the attempt), and
/// nothing else. Every value is compared as parsed JSON, so that a
/// reformatted file still agrees, and a single changed character does not.
pub fn agree(
    top: &Map<String, Value>,
    payload: &Map<String, Value>,
    unsigned: &[&str],
) -> Result<(), Disagreement> {
    if let Some(k) = payload.keys().find(|k| unsigned.contains(&k.as_str())) {
        return Err(Disagreement::Reserved(k.clone()));
    }
    for (k, v) in top {
        if unsigned.contains(&k.as_str()) {
            continue;
        }
        match payload.get(k) {
            None => return Err(Disagreement::Unsigned(k.clone())),
            Some(p) if p != v => return Err(Disagreement::Differs(k.clone())),
            Some(_) => {}
        }
    }
    if let Some(k) = payload.keys().find(|k| !top.contains_key(*k)) {
        return Err(Disagreement::Missing(k.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_file_must_be_the_payload_plus_what_the_grid_writes() {
        let payload = obj(json!({"task_id": "t", "script": "echo ok", "n": 1}));
        let unsigned = ["envelope", "claim", "attempt"];
        let top =
            obj(json!({"task_id": "t", "script": "echo ok", "n": 1, "attempt": 2, "envelope": {}}));
        agree(&top, &payload, &unsigned).unwrap();
        let tampered = obj(json!({"task_id": "t", "script": "echo evil", "n": 1}));
        assert_eq!(
            agree(&tampered, &payload, &unsigned),
            Err(Disagreement::Differs("script".into()))
        );
        let added = obj(json!({"task_id": "t", "script": "echo ok", "n": 1, "image": "evil"}));
        assert_eq!(
            agree(&added, &payload, &unsigned),
            Err(Disagreement::Unsigned("image".into()))
        );
        let dropped = obj(json!({"task_id": "t", "script": "echo ok"}));
        assert_eq!(
            agree(&dropped, &payload, &unsigned),
            Err(Disagreement::Missing("n".into()))
        );
        let reserved = obj(json!({"task_id": "t", "attempt": 9}));
        assert_eq!(
            agree(&reserved, &reserved, &unsigned),
            Err(Disagreement::Reserved("attempt".into()))
        );
    }

    #[test]
    fn payloads_are_exact_bytes_and_single_objects() {
        let e = Envelope::new(Role::Task, b"{\"a\":1}", vec!["sig".into()]);
        let back = Envelope::from_field(&e.to_value(), Role::Task).unwrap();
        assert_eq!(back.payload_bytes().unwrap(), b"{\"a\":1}");
        assert_eq!(back.only_signature(Role::Task).unwrap(), "sig");
        assert!(matches!(
            Envelope::from_field(&e.to_value(), Role::Result),
            Err(EnvelopeError::PayloadType { .. })
        ));
        let e = parse_object(br#"{"script":"a","script":"b"}"#).unwrap_err();
        assert!(e.to_string().contains("`script` more than once"), "{e}");
        let file = parse_file(br#"{"status":"invalid","status":"completed"}"#).unwrap_err();
        assert_eq!(
            file.to_string(),
            "the file has field `status` more than once"
        );
        assert!(parse_object(b"[1]").is_err());
        let two = Envelope::new(Role::Task, b"{}", vec!["a".into(), "b".into()]);
        assert!(two.only_signature(Role::Task).is_err());
        let mut bad = e_value();
        bad["payload"] = "%%%".into();
        let env = Envelope::from_field(&bad, Role::Task).unwrap();
        assert!(matches!(
            env.payload_bytes(),
            Err(EnvelopeError::NotBase64(_))
        ));
    }

    fn e_value() -> Value {
        Envelope::new(Role::Task, b"{}", vec!["s".into()]).to_value()
    }
}
