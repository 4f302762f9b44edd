//! SSH keys: public keys as OpenSSH writes them (`ssh-ed25519 AAAA… comment`),
//! lists of them (a roots file), private keys on disk, and `keygen`.
//!
//! Only Ed25519 keys are accepted, plain or on a FIDO token
//! (`sk-ssh-ed25519@openssh.com`): one algorithm to get right, no RSA
//! padding or curve choices, and what `ssh-keygen -t ed25519` makes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not an OpenSSH public key ({0})")]
    BadPublic(String),
    #[error(
        "is a {0} key; only ssh-ed25519 and sk-ssh-ed25519@openssh.com keys are accepted (make one with `dgrid-worker keygen` or `ssh-keygen -t ed25519`)"
    )]
    Unsupported(String),
    #[error("is not an OpenSSH private key ({0})")]
    BadPrivate(String),
}

/// The key's SHA-256 fingerprint as `ssh-keygen -l` prints it
/// (`SHA256:…`): how keys are named in errors, logs and revocations.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn supported(alg: &Algorithm) -> bool {
    matches!(alg, Algorithm::Ed25519 | Algorithm::SkEd25519)
}

/// One public key in OpenSSH's one-line form; the comment is kept but never
/// compared (two lines with the same key are the same key).
pub fn parse_public(line: &str) -> Result<PublicKey, KeyError> {
    let key =
        PublicKey::from_openssh(line.trim()).map_err(|e| KeyError::BadPublic(e.to_string()))?;
    if !supported(&key.algorithm()) {
        return Err(KeyError::Unsupported(key.algorithm().to_string()));
    }
    Ok(key)
}

/// The key as `type base64`, without its comment: what the policy stores,
/// so that two copies of one key compare equal as text too.
pub fn openssh_line(key: &PublicKey) -> String {
    let mut bare = key.clone();
    bare.set_comment("");
    bare.to_openssh()
        .expect("a parsed key encodes")
        .trim()
        .to_owned()
}

/// A list of public keys, one per line; blank lines and `#` comments are
/// skipped. An error names the (1-based) line.
pub fn parse_list(text: &str) -> Result<Vec<PublicKey>, (usize, KeyError)> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_public(line).map_err(|e| (i + 1, e))?);
    }
    Ok(keys)
}

/// A key file that could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    Key { path: PathBuf, error: KeyError },
    #[error("{path}: line {line}: {error}")]
    Line {
        path: PathBuf,
        line: usize,
        error: KeyError,
    },
    #[error("{path}: holds no public key")]
    Empty { path: PathBuf },
    #[error(
        "{path}: is readable by others (mode {mode:o}); a private key must be private: chmod 600 it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}: already exists; keygen never overwrites a key")]
    Exists { path: PathBuf },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Key files are small; anything bigger is not one.
const MAX_KEY_FILE: u64 = 64 * 1024;

fn read_small(path: &Path) -> Result<String, KeyFileError> {
    use std::io::Read;
    let read = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(read)?;
    Ok(text)
}

/// Read a file of public keys (a roots file, or one `.pub` file).
pub fn read_public_list(path: &Path) -> Result<Vec<PublicKey>, KeyFileError> {
    let keys = parse_list(&read_small(path)?).map_err(|(line, error)| KeyFileError::Line {
        path: path.to_owned(),
        line,
        error,
    })?;
    if keys.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

/// Read one public key (`alice.pub`).
pub fn read_public(path: &Path) -> Result<PublicKey, KeyFileError> {
    let mut keys = read_public_list(path)?;
    Ok(keys.swap_remove(0))
}

/// Read a private key. Like ssh, refuse one that others can read: a node
/// key that leaked signs results in the node's name.
pub fn read_private(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = zeroize_string(read_small(path)?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| KeyFileError::Key {
        path: path.to_owned(),
        error: KeyError::BadPrivate(e.to_string()),
    })?;
    if !supported(&key.algorithm()) {
        return Err(KeyFileError::Key {
            path: path.to_owned(),
            error: KeyError::Unsupported(key.algorithm().to_string()),
        });
    }
    Ok(key)
}

fn zeroize_string(s: String) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(s)
}

/// A new Ed25519 key pair from the operating system's randomness.
pub fn generate(comment: &str) -> PrivateKey {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .expect("Ed25519 key generation cannot fail with the OS's randomness");
    key.set_comment(comment);
    key
}

/// Write a new key pair: `path` (the private key, mode 0600, created so that
/// it is never readable by others even for a moment) and `path.pub`
/// (0644). Neither may exist: a key is never overwritten.
pub fn write_new_pair(path: &Path, key: &PrivateKey) -> Result<PathBuf, KeyFileError> {
    let public_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    };
    for p in [path, &public_path] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyFileError::Exists { path: p.to_owned() });
        }
    }
    let write = |p: &Path, mode: u32, bytes: &[u8]| -> Result<(), KeyFileError> {
        let err = |source| KeyFileError::Write {
            path: p.to_owned(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyFileError::Exists { path: p.to_owned() },
                _ => err(e),
            })?;
        // The umask may have narrowed the mode; set exactly what we mean.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)
    };
    let private = key
        .to_openssh(LineEnding::LF)
        .expect("a generated key encodes");
    write(path, 0o600, private.as_bytes())?;
    let public = key
        .public_key()
        .to_openssh()
        .expect("a generated key encodes");
    write(&public_path, 0o644, format!("{public}\n").as_bytes())?;
    Ok(public_path)
}

/// The SHA-256 of `bytes`, in lower-case hex (the digests the grid names
/// tasks and policies by).
pub fn sha256_hex(bytes: &[u8]) -> String {
    HashAlg::Sha256
        .digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_the_bad_line_and_refuse_other_algorithms() {
        let k = generate("a@b");
        let line = k.public_key().to_openssh().unwrap();
        let text = format!("# roots\n\n{line}\nssh-ed25519 notbase64\n");
        let (n, e) = parse_list(&text).unwrap_err();
        assert_eq!(n, 4);
        assert!(matches!(e, KeyError::BadPublic(_)), "{e}");
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDd2moMyuV7r6HIQ+ph+YFOm8UdI0u4/Yh0pkI3masklg2QEbqQMfs5mXo02a1KS8OysDvkwk95AsowXoDHX9FJvHgTsKrOEPO7hlsOd9pyjAtvQsAL+8G7L5B09wyhCYw/kd0U/rXhy2Pis8lp5f4t1n1roJlTlSGTfntuPxcsOw== x";
        match parse_public(rsa) {
            Err(KeyError::Unsupported(a)) => assert_eq!(a, "ssh-rsa"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_list(&format!("{line}\n")).unwrap().len(), 1);
        assert!(!openssh_line(k.public_key()).contains("a@b"));
    }

    #[test]
    fn a_pair_is_written_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-key");
        let key = generate("n1");
        let public = write_new_pair(&path, &key).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&public), 0o644);
        let back = read_private(&path).unwrap();
        assert_eq!(back.public_key().key_data(), key.public_key().key_data());
        assert_eq!(
            read_public(&public).unwrap().key_data(),
            key.public_key().key_data()
        );
        let again = write_new_pair(&path, &generate("other")).unwrap_err();
        assert!(matches!(again, KeyFileError::Exists { .. }), "{again}");
        assert_eq!(
            read_private(&path).unwrap().public_key().key_data(),
            key.public_key().key_data(),
            "the first key is untouched"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_private(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // What systemd hands a service as a credential (0400, or 0440 for
        // a group) is private enough: nobody but its user and group.
        for mode in [0o400, 0o440, 0o640] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            read_private(&path).unwrap();
        }
    }
}
