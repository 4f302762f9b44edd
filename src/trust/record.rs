//! Signed node records.
//!
//! A node's record (`nodes/<id>.json`) says what it serves, how many slots
//! it has, whether it is idle, how long it takes: its peers size their
//! claims by it, leave work to it and claim for it. Anyone who can push
//! can write a record, so a node with a key signs its own, and a node in
//! `enforce` counts a peer's record only if the policy lists the key that
//! signed it as that node's (`service::sync::Gate::counts_record`).
//!
//! The signature sits in the record's `signature` field, over the record's
//! other fields as compact JSON with sorted keys (what `serde_json` writes
//! of a `Value`), less the marks a peer's reap may write into it
//! (`unanswered_at`, `overdue_at`, and `takes_assigned` turned off: a
//! reap may take back what a record offers, never add to it). Not an
//! envelope, as tasks and results carry: a record is rewritten with every
//! commit its node makes and read by every peer, and an envelope would
//! carry it twice. Tasks and results are written once.
//!
//! The signed fields hold `node_id` and `last_heartbeat`, so a record
//! copied to another node's name is another node's record, signed by the
//! wrong key, and a record replayed later is as stale as when it was made.

use serde_json::{Map, Value};
use ssh_key::PublicKey;

use super::sig::{self, KeySigner, Role, SigError, SignError};
use crate::grid::claim::pretty;
use crate::grid::{Id, NodeRecord};

/// The field that holds the record's signature (armored, as
/// `ssh-keygen -Y sign` writes it).
pub const SIGNATURE_FIELD: &str = "signature";

/// What a peer's reap writes into another node's record (`ledger::reap`),
/// outside what the node signed.
const PEERS_MARKS: [&str; 2] = ["unanswered_at", "overdue_at"];

/// The field a peer's reap turns off along with its marks.
const TAKES_ASSIGNED: &str = "takes_assigned";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordSealError {
    #[error("is not a JSON object")]
    NotAnObject,
    #[error("is not signed")]
    Unsigned,
    #[error("has a signature that {0}")]
    Signature(SigError),
}

/// The record file for `record`, signed with `key` for `grid`.
pub fn sign(record: &NodeRecord, grid: &Id, key: &KeySigner) -> Result<Vec<u8>, SignError> {
    let Value::Object(mut fields) = serde_json::to_value(record).expect("records serialise") else {
        unreachable!("a struct serialises to an object")
    };
    let signature = key.sign(Role::Record, grid, &signed_bytes(&fields))?;
    fields.insert(SIGNATURE_FIELD.into(), signature.into());
    Ok(pretty(&Value::Object(fields)))
}

/// The key that signed the record file `bytes` for `grid`. Whose key that
/// is, is the policy's question.
pub fn signer(bytes: &[u8], grid: &Id) -> Result<PublicKey, RecordSealError> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(RecordSealError::NotAnObject);
    };
    let Some(Value::String(armored)) = fields.remove(SIGNATURE_FIELD) else {
        return Err(RecordSealError::Unsigned);
    };
    let signature = sig::parse(&armored).map_err(RecordSealError::Signature)?;
    let mut marked = false;
    for mark in PEERS_MARKS {
        marked |= fields.remove(mark).is_some();
    }
    let check = |fields: &Map<String, Value>| {
        sig::verify(&signature, Role::Record, grid, &signed_bytes(fields))
    };
    let mut checked = check(&fields);
    // A peer's reap that marked the record turned `takes_assigned` off:
    // the node signed it on, or left it out (off).
    if checked.is_err() && marked && fields.get(TAKES_ASSIGNED) == Some(&Value::Bool(false)) {
        for signed in [Some(Value::Bool(true)), None] {
            match &signed {
                Some(v) => fields.insert(TAKES_ASSIGNED.into(), v.clone()),
                None => fields.remove(TAKES_ASSIGNED),
            };
            if check(&fields).is_ok() {
                checked = Ok(());
                break;
            }
        }
    }
    checked
        .map(|()| sig::signer(&signature))
        .map_err(RecordSealError::Signature)
}

/// What is signed of a record's `fields` (the signature left out): the
/// rest less the peers' marks, compact, keys sorted.
fn signed_bytes(fields: &Map<String, Value>) -> Vec<u8> {
    let mut fields = fields.clone();
    fields.remove(SIGNATURE_FIELD);
    for mark in PEERS_MARKS {
        fields.remove(mark);
    }
    serde_json::to_vec(&Value::Object(fields)).expect("JSON serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::NodeStatus;
    use crate::trust::keys;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn key() -> KeySigner {
        KeySigner::InProcess(keys::generate("n1"))
    }

    fn record(takes_assigned: bool) -> NodeRecord {
        let mut r = NodeRecord::new(
            id("n1"),
            NodeStatus::Idle,
            "2026-12-06T10:00:00.000Z".into(),
        );
        r.concurrency = 4;
        r.labels = vec!["gpu".into(), "arch=x86_64".into()];
        r.takes_assigned = takes_assigned;
        r
    }

    fn edit(bytes: &[u8], f: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes) else {
            panic!("an object")
        };
        f(&mut m);
        pretty(&Value::Object(m))
    }

    #[test]
    fn a_signed_record_names_its_signer_and_reads_as_the_record() {
        let k = key();
        let bytes = sign(&record(false), &id("g7"), &k).unwrap();
        let named = |bytes: &[u8]| signer(bytes, &id("g7")).unwrap().key_data().clone();
        assert_eq!(&named(&bytes), k.public_key().key_data());
        assert_eq!(NodeRecord::parse(&bytes).unwrap(), record(false));
        // Rewritten by another tool, key order and layout its own.
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let compact = serde_json::to_vec(&v).unwrap();
        assert_eq!(&named(&compact), k.public_key().key_data());
    }

    #[test]
    fn a_record_changed_after_signing_or_for_another_grid_has_no_signer() {
        let k = key();
        let bytes = sign(&record(false), &id("g7"), &k).unwrap();
        let more_slots = edit(&bytes, |m| {
            m.insert("concurrency".into(), 256.into());
        });
        assert!(matches!(
            signer(&more_slots, &id("g7")),
            Err(RecordSealError::Signature(SigError::Invalid(_)))
        ));
        let renamed = edit(&bytes, |m| {
            m.insert("node_id".into(), "n2".into());
        });
        assert!(signer(&renamed, &id("g7")).is_err());
        assert!(matches!(
            signer(&bytes, &id("g8")),
            Err(RecordSealError::Signature(SigError::Namespace { .. }))
        ));
        let unsigned = record(false).to_bytes();
        assert_eq!(signer(&unsigned, &id("g7")), Err(RecordSealError::Unsigned));
        assert_eq!(signer(b"[1]", &id("g7")), Err(RecordSealError::NotAnObject));
        let junk = edit(&bytes, |m| {
            m.insert(SIGNATURE_FIELD.into(), "junk".into());
        });
        assert!(matches!(
            signer(&junk, &id("g7")),
            Err(RecordSealError::Signature(SigError::Malformed(_)))
        ));
    }

    #[test]
    fn a_peers_reap_may_mark_a_record_and_take_back_claims_made_for_it() {
        let k = key();
        for offered in [true, false] {
            let bytes = sign(&record(offered), &id("g7"), &k).unwrap();
            // As `ledger::reap` writes it.
            let marked = edit(&bytes, |m| {
                m.insert(TAKES_ASSIGNED.into(), false.into());
                m.insert("unanswered_at".into(), "2026-12-06T10:01:00.000Z".into());
            });
            let named = signer(&marked, &id("g7")).unwrap();
            assert_eq!(named.key_data(), k.public_key().key_data(), "{offered}");
        }
        // Offering what the node did not: no reap writes that.
        let bytes = sign(&record(false), &id("g7"), &k).unwrap();
        let offered = edit(&bytes, |m| {
            m.insert(TAKES_ASSIGNED.into(), true.into());
            m.insert("overdue_at".into(), "2026-12-06T10:01:00.000Z".into());
        });
        assert!(signer(&offered, &id("g7")).is_err());
        // Nor does a mark excuse any other change.
        let busier = edit(&bytes, |m| {
            m.insert("status".into(), "busy".into());
            m.insert("overdue_at".into(), "2026-12-06T10:01:00.000Z".into());
        });
        assert!(signer(&busier, &id("g7")).is_err());
    }
}
