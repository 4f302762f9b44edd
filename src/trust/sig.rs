//! SSH signatures (`sshsig`, what `ssh-keygen -Y sign` writes) in the
//! namespaces of a grid's three roles.
//!
//! The namespace is part of what is signed: a submitter's signature over a
//! task for grid `g7` (`dgrid-task-v1@g7`) verifies neither as a result, nor
//! as a policy, nor as a task of any other grid. `ssh-keygen -Y verify -n`
//! checks the same string, so a signature from either side verifies on the
//! other.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::grid::Id;

/// What a signature is for. Each role has its own namespace and payload
/// type, and its own signers: submitters sign tasks, nodes sign results
/// and their own records, roots sign policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Task,
    Result,
    Policy,
    /// A node's record (`nodes/<id>.json`), signed by the node.
    Record,
}

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Task => "task",
            Role::Result => "result",
            Role::Policy => "policy",
            Role::Record => "record",
        }
    }

    /// `dgrid-<role>-v1@<grid>`: the version lets a later format change
    /// what is signed without any old signature passing as new.
    pub fn namespace(self, grid: &Id) -> String {
        format!("dgrid-{}-v1@{grid}", self.word())
    }

    /// The envelope's `payload_type`, so a reader can tell the three apart
    /// without trying.
    pub fn payload_type(self) -> &'static str {
        match self {
            Role::Task => "application/vnd.dgrid.task.v1+json",
            Role::Result => "application/vnd.dgrid.result.v1+json",
            Role::Policy => "application/vnd.dgrid.policy.v1+json",
            Role::Record => "application/vnd.dgrid.record.v1+json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("is not an SSH signature ({0})")]
    Malformed(String),
    /// `found` is the signature's own, cut to [`NAMESPACE_SHOWN`]: anyone
    /// can make a signature in a namespace of 40 KB, which every error
    /// line, log and status page would otherwise carry. Quoted, not
    /// escaped: whoever prints it escapes it, once.
    #[error("was made in namespace \"{found}\", not \"{expected}\"")]
    Namespace { found: String, expected: String },
    #[error("does not match the signed bytes ({0})")]
    Invalid(String),
}

/// Parse an armored signature (`-----BEGIN SSH SIGNATURE-----`).
pub fn parse(armored: &str) -> Result<SshSig, SigError> {
    SshSig::from_pem(armored.trim().as_bytes()).map_err(|e| SigError::Malformed(e.to_string()))
}

/// The public key a signature says it was made with (not yet checked).
pub fn signer(sig: &SshSig) -> PublicKey {
    PublicKey::new(sig.public_key().clone(), "")
}

/// Check `sig` over `msg` in `role`'s namespace of `grid`, with the key the
/// signature names. Who that key belongs to is the caller's question.
pub fn verify(sig: &SshSig, role: Role, grid: &Id, msg: &[u8]) -> Result<(), SigError> {
    let expected = role.namespace(grid);
    if sig.namespace() != expected {
        return Err(SigError::Namespace {
            found: shown(sig.namespace()),
            expected,
        });
    }
    signer(sig)
        .verify(&expected, msg, sig)
        .map_err(|e| SigError::Invalid(e.to_string()))
}

/// How much of a foreign namespace an error shows.
pub const NAMESPACE_SHOWN: usize = 64;

/// `namespace`, cut to [`NAMESPACE_SHOWN`] bytes (on a character's
/// boundary), marked where it was cut.
fn shown(namespace: &str) -> String {
    if namespace.len() <= NAMESPACE_SHOWN {
        return namespace.to_owned();
    }
    let end = namespace.floor_char_boundary(NAMESPACE_SHOWN);
    format!("{}…", &namespace[..end])
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        source: super::keys::KeyFileError,
    },
    #[error("signing failed: {0}")]
    InProcess(String),
    #[error("{path}: `ssh-keygen -Y sign` failed: {reason}")]
    SshKeygen { path: PathBuf, reason: String },
}

/// A key that signs. An unencrypted key (a node's, or a tool's) signs in
/// process. A key protected by a passphrase is handed to
/// `ssh-keygen -Y sign`, which asks for the passphrase on the terminal (or
/// uses ssh-agent): a root key need never be stored in the clear for this
/// tool.
pub enum KeySigner {
    InProcess(PrivateKey),
    SshKeygen { path: PathBuf, public: PublicKey },
}

impl KeySigner {
    /// Open the private key at `path`.
    pub fn open(path: &Path) -> Result<KeySigner, super::keys::KeyFileError> {
        let key = super::keys::read_private(path)?;
        Ok(if key.is_encrypted() {
            KeySigner::SshKeygen {
                path: path.to_owned(),
                public: key.public_key().clone(),
            }
        } else {
            KeySigner::InProcess(key)
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        match self {
            KeySigner::InProcess(k) => k.public_key(),
            KeySigner::SshKeygen { public, .. } => public,
        }
    }

    /// Sign `msg` for `role` in `grid`: an armored `SSH SIGNATURE` block,
    /// with SHA-512 as `ssh-keygen` uses by default.
    pub fn sign(&self, role: Role, grid: &Id, msg: &[u8]) -> Result<String, SignError> {
        let namespace = role.namespace(grid);
        match self {
            KeySigner::InProcess(key) => key
                .sign(&namespace, HashAlg::Sha512, msg)
                .and_then(|s| s.to_pem(LineEnding::LF))
                .map_err(|e| SignError::InProcess(e.to_string())),
            KeySigner::SshKeygen { path, .. } => ssh_keygen_sign(path, &namespace, msg),
        }
    }
}

fn ssh_keygen_sign(path: &Path, namespace: &str, msg: &[u8]) -> Result<String, SignError> {
    let fail = |reason: String| SignError::SshKeygen {
        path: path.to_owned(),
        reason,
    };
    // No file argument: ssh-keygen signs standard input and writes the
    // signature to standard output; the passphrase prompt uses the terminal.
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(msg)
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || parse(&text).is_err() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(fail(with_passphrase_hint(said)));
    }
    Ok(text)
}

/// ssh-keygen says "incorrect passphrase supplied" also when it had no
/// way to ask for one (no terminal, no agent holding the key): say what
/// would let it sign.
fn with_passphrase_hint(said: String) -> String {
    if said.contains("passphrase") {
        format!(
            "{said} (the key has a passphrase: sign from a terminal, where ssh-keygen asks for it, or add the key to ssh-agent with `ssh-add` first)"
        )
    } else {
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::keys::generate;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    #[test]
    fn a_foreign_namespace_is_shown_cut() {
        let key = generate("eve");
        let long = format!("{}\u{202e}", "n".repeat(40_000));
        let sig = key.sign(&long, HashAlg::Sha512, b"m").unwrap();
        let e = verify(&sig, Role::Task, &id("g7"), b"m")
            .unwrap_err()
            .to_string();
        assert!(
            e.len() < 200 && e.contains(&format!("\"{}…\"", "n".repeat(64))),
            "{e}"
        );
    }

    #[test]
    fn a_signature_holds_in_its_own_grid_and_role_only() {
        let key = KeySigner::InProcess(generate("alice"));
        let g7 = id("g7");
        let armored = key.sign(Role::Task, &g7, b"payload").unwrap();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"));
        let sig = parse(&armored).unwrap();
        assert_eq!(signer(&sig).key_data(), key.public_key().key_data());
        verify(&sig, Role::Task, &g7, b"payload").unwrap();
        let e = verify(&sig, Role::Task, &id("g8"), b"payload").unwrap_err();
        assert!(matches!(e, SigError::Namespace { .. }), "{e}");
        assert!(e.to_string().contains("dgrid-task-v1@g8"));
        let e = verify(&sig, Role::Result, &g7, b"payload").unwrap_err();
        assert!(matches!(e, SigError::Namespace { .. }), "{e}");
        let e = verify(&sig, Role::Task, &g7, b"payloaD").unwrap_err();
        assert!(matches!(e, SigError::Invalid(_)), "{e}");
        assert!(matches!(
            parse("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----"),
            Err(SigError::Malformed(_))
        ));
    }
}
