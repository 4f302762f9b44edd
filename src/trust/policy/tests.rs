//! The policy's rules, and the fixtures other trust tests build on.

use super::*;
use crate::trust::keys::generate;

pub fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

pub fn at(s: &str) -> Timestamp {
    time::parse(s).unwrap()
}

pub fn signer() -> KeySigner {
    KeySigner::InProcess(generate("k"))
}

pub fn pinned(roots: &[&KeySigner], threshold: usize) -> Pinned {
    Pinned {
        grid_id: id("g7"),
        roots: roots.iter().map(|r| r.public_key().clone()).collect(),
        threshold,
        min_version: 0,
    }
}

#[test]
fn a_policy_signed_by_a_root_opens_and_indexes_its_keys() {
    let root = signer();
    let (alice, n1) = (signer(), signer());
    let mut p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
    p.add(
        Kind::Submitter,
        id("alice"),
        alice.public_key(),
        Window::default(),
    )
    .unwrap();
    let window = Window {
        after: None,
        before: Some(at("2027-01-01T00:00:00Z")),
    };
    p.add(Kind::Node, id("n1"), n1.public_key(), window)
        .unwrap();
    let file = p.seal(&[&root]).unwrap();
    let a = open(&pinned(&[&root], 1), &file).unwrap();
    assert_eq!(a.policy, p);
    match a.index.lookup(n1.public_key()) {
        Lookup::Listed(l) => {
            assert_eq!((l.kind, l.name.as_str()), (Kind::Node, "n1"));
            assert!(l.window.check(at("2026-06-01T00:00:00Z")).is_ok());
            assert_eq!(
                l.window.check(at("2027-01-01T00:00:00Z")),
                Err(WindowError::Expired("2027-01-01T00:00:00.000Z".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.index.lookup(root.public_key()), Lookup::Unknown);
    let signers = p.allowed_signers();
    assert!(signers.contains("submitter:alice namespaces=\"dgrid-task-v1@g7\" ssh-ed25519 "));
    assert!(signers.contains(
        "node:n1 namespaces=\"dgrid-result-v1@g7\",valid-before=\"20270101000000Z\" ssh-ed25519 "
    ));
}

#[test]
fn attack_policy_signed_by_a_non_root_is_refused() {
    let (root, mallory) = (signer(), signer());
    let file = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"))
        .seal(&[&mallory])
        .unwrap();
    let e = open(&pinned(&[&root], 1), &file).unwrap_err();
    assert_eq!(
        e,
        PolicyError::NotSignedByRoots {
            signers: vec![fingerprint(mallory.public_key())]
        }
    );
    assert_eq!(e.code(), "not-signed-by-roots");
    // Nor does a root's signature for another grid count here.
    let mut other = Policy::new(id("g8"), at("2026-01-01T00:00:00Z"));
    let file = other.seal(&[&root]).unwrap();
    let e = open(&pinned(&[&root], 1), &file).unwrap_err();
    assert_eq!(e.code(), "other-grid", "{e}");
    // ... even relabelled as ours: the signature's namespace says g8.
    other.grid_id = id("g7");
    let sig_g8 = root.sign(Role::Policy, &id("g8"), b"{}").unwrap();
    let mut top = other.to_object();
    let payload = serde_json::to_vec(&Value::Object(other.to_object())).unwrap();
    let mut env = Envelope::new(Role::Policy, &payload, vec![sig_g8]);
    top.insert(ENVELOPE_FIELD.into(), env.to_value());
    let file = serde_json::to_vec(&Value::Object(top.clone())).unwrap();
    let e = open(&pinned(&[&root], 1), &file).unwrap_err();
    assert!(
        matches!(
            &e,
            PolicyError::BadRootSignature {
                error: SigError::Namespace { .. },
                ..
            }
        ),
        "{e}"
    );
    // A root's signature over other bytes does not hold either.
    env.signatures = vec![root.sign(Role::Policy, &id("g7"), b"{}").unwrap()];
    top.insert(ENVELOPE_FIELD.into(), env.to_value());
    let file = serde_json::to_vec(&Value::Object(top)).unwrap();
    let e = open(&pinned(&[&root], 1), &file).unwrap_err();
    assert_eq!(e.code(), "bad-signature", "{e}");
}

#[test]
fn a_threshold_counts_distinct_roots() {
    let (r1, r2, r3) = (signer(), signer(), signer());
    let p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
    let pin = pinned(&[&r1, &r2, &r3], 2);
    let one = p.seal(&[&r1]).unwrap();
    assert_eq!(
        open(&pin, &one).unwrap_err(),
        PolicyError::TooFewRootSignatures {
            valid: 1,
            threshold: 2,
            pinned: 3
        }
    );
    assert!(!open(&pin, &one).unwrap_err().to_string().contains("only"));
    let beyond = pinned(&[&r1], 2);
    assert!(open(&beyond, &one).unwrap_err().to_string().ends_with(
        "2 are required, but only 1 root(s) are pinned: no policy can meet that threshold"
    ));
    let same_twice = p.seal(&[&r1, &r1]).unwrap();
    assert_eq!(
        open(&pin, &same_twice).unwrap_err().code(),
        "too-few-signatures"
    );
    assert!(open(&pin, &p.seal(&[&r1, &r3]).unwrap()).is_ok());
}

#[test]
fn attack_policy_rolled_back_or_equivocated_is_refused() {
    let root = signer();
    let pin = pinned(&[&root], 1);
    let v1 = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
    let mut v2 = v1.successor(at("2026-01-02T00:00:00Z"));
    v2.add(
        Kind::Submitter,
        id("alice"),
        signer().public_key(),
        Window::default(),
    )
    .unwrap();
    let a1 = open(&pin, &v1.seal(&[&root]).unwrap()).unwrap();
    let a2 = open(&pin, &v2.seal(&[&root]).unwrap()).unwrap();
    assert_eq!(decide(None, &a1), Ok(Decision::Newer));
    assert_eq!(decide(Some(&(&a1).into()), &a2), Ok(Decision::Newer));
    assert_eq!(decide(Some(&(&a2).into()), &a2), Ok(Decision::Same));
    let e = decide(Some(&(&a2).into()), &a1).unwrap_err();
    assert_eq!(e, PolicyError::RolledBack { found: 1, held: 2 });
    assert!(e.to_string().contains("rollback"), "{e}");
    let mut fork = v1.successor(at("2026-01-03T00:00:00Z"));
    fork.add(
        Kind::Submitter,
        id("mallory"),
        signer().public_key(),
        Window::default(),
    )
    .unwrap();
    let af = open(&pin, &fork.seal(&[&root]).unwrap()).unwrap();
    assert_eq!(
        decide(Some(&(&a2).into()), &af),
        Err(PolicyError::Equivocation { version: 2 })
    );
}

#[test]
fn a_tampered_policy_file_is_refused() {
    let root = signer();
    let mut p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
    p.add(
        Kind::Submitter,
        id("alice"),
        signer().public_key(),
        Window::default(),
    )
    .unwrap();
    let file = p.seal(&[&root]).unwrap();
    let mut v: Value = serde_json::from_slice(&file).unwrap();
    v["submitters"][0]["name"] = "mallory".into();
    let e = open(&pinned(&[&root], 1), &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(
        e,
        PolicyError::Disagrees(Disagreement::Differs("submitters".into()))
    );
    let e = open(&pinned(&[&root], 1), br#"{"grid_id":"g7","version":9}"#).unwrap_err();
    assert_eq!(e, PolicyError::Unsigned);
}

#[test]
fn keys_have_one_role_and_revoked_keys_none() {
    let mut p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
    let k = signer();
    p.add(
        Kind::Submitter,
        id("alice"),
        k.public_key(),
        Window::default(),
    )
    .unwrap();
    let e = p
        .add(Kind::Node, id("n1"), k.public_key(), Window::default())
        .unwrap_err();
    assert!(e.to_string().contains("already in the policy"), "{e}");
    let who = p.revoke(
        k.public_key(),
        Some("lost".into()),
        at("2026-02-01T00:00:00Z"),
    );
    assert_eq!(who, Ok(Some((Kind::Submitter, id("alice")))));
    assert!(p.submitters.is_empty());
    assert!(matches!(
        p.index().unwrap().lookup(k.public_key()),
        Lookup::Revoked(_)
    ));
    assert!(
        p.add(
            Kind::Submitter,
            id("alice"),
            k.public_key(),
            Window::default()
        )
        .is_err()
    );
    assert!(
        p.revoked_keys()
            .contains(&keys::openssh_line(k.public_key()))
    );
    // A hand-edited policy listing a key twice is refused as a whole.
    let mut twice = p.clone();
    let other = signer();
    for kind in [Kind::Submitter, Kind::Node] {
        let pr = Principal {
            name: id("x"),
            key: keys::openssh_line(other.public_key()),
            valid_after: None,
            valid_before: None,
        };
        match kind {
            Kind::Submitter => twice.submitters.push(pr),
            Kind::Node => twice.nodes.push(pr),
        }
    }
    assert!(
        twice
            .index()
            .unwrap_err()
            .to_string()
            .contains("one key has one role")
    );
}
