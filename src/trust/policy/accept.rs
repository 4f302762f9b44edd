//! Taking a policy: it opens only under the pinned roots' signatures, and
//! a worker takes it only forward (a higher version than the one it holds),
//! so the git host can neither forge nor roll back who may sign.

use super::*;

/// Open a policy file and check it against what the worker pins: the
/// envelope, the file's agreement with its payload, the grid, the keys, and
/// at least `threshold` valid signatures by distinct pinned roots.
pub fn open(pinned: &Pinned, file: &[u8]) -> Result<Accepted, PolicyError> {
    if file.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge(file.len()));
    }
    let top = envelope::parse_object(file).map_err(|e| PolicyError::Malformed(e.to_string()))?;
    let env = Envelope::from_field(
        top.get(ENVELOPE_FIELD).ok_or(PolicyError::Unsigned)?,
        Role::Policy,
    )?;
    let payload = env.payload_bytes()?;
    let signed = envelope::parse_object(&payload)?;
    envelope::agree(&top, &signed, &[ENVELOPE_FIELD]).map_err(PolicyError::Disagrees)?;
    let policy: Policy = serde_json::from_value(Value::Object(signed))
        .map_err(|e| PolicyError::Body(e.to_string()))?;
    if policy.grid_id != pinned.grid_id {
        return Err(PolicyError::OtherGrid {
            found: policy.grid_id.to_string(),
            expected: pinned.grid_id.to_string(),
        });
    }

    let mut roots_ok = BTreeSet::new();
    let mut others = Vec::new();
    let mut bad = None;
    for armored in &env.signatures {
        let s =
            sig::parse(armored).map_err(|e| PolicyError::Invalid(format!("a signature {e}")))?;
        let key = sig::signer(&s);
        let fp = fingerprint(&key);
        if !pinned.is_root(&key) {
            others.push(fp);
            continue;
        }
        match sig::verify(&s, Role::Policy, &pinned.grid_id, &payload) {
            Ok(()) => {
                roots_ok.insert(fp);
            }
            Err(error) => {
                bad.get_or_insert(PolicyError::BadRootSignature {
                    fingerprint: fp,
                    error,
                });
            }
        }
    }
    let threshold = pinned.threshold.max(1);
    if roots_ok.len() < threshold {
        return Err(match bad {
            Some(e) => e,
            None if roots_ok.is_empty() => PolicyError::NotSignedByRoots { signers: others },
            None => PolicyError::TooFewRootSignatures {
                valid: roots_ok.len(),
                threshold,
                pinned: pinned.roots.len(),
            },
        });
    }
    let index = policy.index()?;
    Ok(Accepted {
        index,
        policy,
        file: file.to_vec(),
        digest: keys::sha256_hex(&payload),
        root_signatures: roots_ok.len(),
    })
}

/// The version a worker holds, to compare a candidate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub version: u64,
    pub digest: String,
}

impl From<&Accepted> for Held {
    fn from(a: &Accepted) -> Held {
        Held {
            version: a.policy.version,
            digest: a.digest.clone(),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Decision {
    /// The policy held already.
    Same,
    /// A higher version, to be stored and used from now on.
    Newer,
}

/// Take a verified candidate only forward: a lower version is a rollback,
/// the same version with other content an equivocation; both are refused
/// and the worker keeps what it holds.
pub fn decide(held: Option<&Held>, candidate: &Accepted) -> Result<Decision, PolicyError> {
    let Some(held) = held else {
        return Ok(Decision::Newer);
    };
    let found = candidate.policy.version;
    match found.cmp(&held.version) {
        std::cmp::Ordering::Greater => Ok(Decision::Newer),
        std::cmp::Ordering::Less => Err(PolicyError::RolledBack {
            found,
            held: held.version,
        }),
        std::cmp::Ordering::Equal if candidate.digest == held.digest => Ok(Decision::Same),
        std::cmp::Ordering::Equal => Err(PolicyError::Equivocation { version: found }),
    }
}
