//! The ssh that git runs for the grid: strict (no prompt, no host key
//! trusted on first use), offering only the configured key, and for the
//! worker one connection kept open between calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wait_timeout::ChildExt;

/// The ssh every git child runs unless told otherwise: never a prompt,
/// never an unknown host key accepted, and a server that hangs noticed by
/// ssh itself, which then says so ("Connection timed out", "Timeout, server
/// not responding": `failure` names it unreachable) well before the call's
/// own timeout (120 s by default) kills it without a word:
/// - `ConnectTimeout=20`: the TCP connect and the server's banner; a
///   forge answers both in well under a second, and 20 s leaves a slow or
///   lossy link (a SYN resent twice) room.
/// - `ServerAliveInterval=10`, `ServerAliveCountMax=3`: a connection whose
///   server stops answering ends 30 s later. The server's sshd answers
///   these probes itself, so a git that is slow to pack is not cut off.
///   ssh takes an option's first value, so these hold for the kept
///   connection's master too.
pub const SSH_BASE: &str = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes \
     -o ConnectTimeout=20 -o ServerAliveInterval=10 -o ServerAliveCountMax=3";

/// `ssh` as every git child runs it: [`SSH_BASE`], then the pinned host
/// keys, the one key offered, and the kept connection, each if configured.
pub fn command(
    known_hosts: Option<&Path>,
    key: Option<&Path>,
    shared: Option<&SharedConnection>,
) -> String {
    let mut cmd = String::from(SSH_BASE);
    if let Some(known) = known_hosts {
        cmd.push_str(" -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile=");
        cmd.push_str(&quote(known));
    }
    if let Some(key) = key {
        cmd.push_str(" -o IdentitiesOnly=yes -o IdentityAgent=none -i ");
        cmd.push_str(&quote(key));
    }
    if let Some(shared) = shared {
        cmd.push_str(&shared.options());
    }
    cmd
}

/// One ssh connection to the grid's host, kept open between git calls by
/// a master process (OpenSSH's `ControlMaster`). Without it each git call
/// over SSH opens its own: TCP, key exchange and authentication, seven or
/// eight round trips before git says a word (a no-op fetch 1.33 s against
/// 0.47 s through a kept connection, with the forge 100 ms away).
///
/// The master's socket lives in a directory of the worker's own (mode
/// 0700; the socket itself 0600), emptied at each start so that a worker
/// never talks through a connection an earlier run opened with other
/// settings (another key, other pinned host keys). The master exits when
/// the worker stops ([`SharedConnection::close`]), [`PERSIST_SECS`] after
/// its last use, or when the server stops answering keepalives: a
/// connection that went dead costs at most `ServerAliveInterval ×
/// ServerAliveCountMax` ([`SSH_BASE`]) before calls open fresh ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConnection {
    dir: PathBuf,
}

/// How long an unused master stays: past the default poll interval and an
/// idle node's longer looks, short enough not to hold a forge's connection
/// for a node that stopped.
pub const PERSIST_SECS: u32 = 120;

/// How long the worker waits for its master to say it exits.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// The master's socket, in the worker's own directory. One name, not a
/// hash of host, port and user (`%C`): a worker reaches one remote, and
/// its directory is emptied at each start.
const SOCKET: &str = "master";

/// The longest directory whose socket path fits: a unix socket's path holds
/// 107 bytes, and ssh first binds the socket under its name plus 17
/// characters (measured: 83 binds, 84 does not).
const MAX_DIR_LEN: usize = 107 - 1 - SOCKET.len() - 17;

#[derive(Debug, thiserror::Error)]
pub enum SharedConnectionError {
    #[error("{dir}: too long for an ssh control socket ({len} bytes; at most {MAX_DIR_LEN})")]
    TooLong { dir: PathBuf, len: usize },
    #[error("{dir}: a '%' in the path would be read as an ssh token")]
    Percent { dir: PathBuf },
    #[error("{dir}: cannot make a fresh private directory: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl SharedConnection {
    /// Make `dir` fresh and private for the master's socket: anything an
    /// earlier run left there is removed (a master still running on it then
    /// has no clients, and exits when its time is up).
    pub fn fresh(dir: &Path) -> Result<SharedConnection, SharedConnectionError> {
        let len = dir.as_os_str().len();
        if len > MAX_DIR_LEN {
            return Err(SharedConnectionError::TooLong {
                dir: dir.to_owned(),
                len,
            });
        }
        if dir.to_string_lossy().contains('%') {
            return Err(SharedConnectionError::Percent {
                dir: dir.to_owned(),
            });
        }
        let io = |source| SharedConnectionError::Io {
            dir: dir.to_owned(),
            source,
        };
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        Ok(SharedConnection {
            dir: dir.to_owned(),
        })
    }

    /// The options that make an ssh call use (or start) the master.
    fn options(&self) -> String {
        let path = self.dir.join(SOCKET);
        format!(
            " -o ControlMaster=auto -o ControlPath={} -o ControlPersist={PERSIST_SECS}",
            quote(&path)
        )
    }

    /// Ask the master to exit, when the worker stops: a worker run by hand
    /// should leave nothing behind (under systemd the unit's cgroup goes
    /// anyway). No master, or one that does not answer within
    /// [`CLOSE_WITHIN`]: nothing to do, it goes when its time is up.
    pub fn close(&self) {
        use std::process::{Command, Stdio};
        let spawned = Command::new("ssh")
            .arg("-o")
            .arg(format!("ControlPath={}", self.dir.join(SOCKET).display()))
            .args(["-O", "exit", "dgrid-grid"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else { return };
        if !matches!(child.wait_timeout(CLOSE_WITHIN), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether git reaches `url` over ssh: `ssh://`, its aliases, or the
/// scp-like `[user@]host:path` (a colon before any slash).
pub fn is_ssh_url(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => ["ssh", "git+ssh", "ssh+git"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s)),
        None => url
            .find(':')
            .is_some_and(|colon| url.find('/').is_none_or(|slash| colon < slash)),
    }
}

fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    // A path with a NUL cannot exist; anything else quotes.
    shlex::try_quote(&text)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "/dev/null".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_connection_is_a_fresh_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/ssh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("left-by-an-earlier-run"), "").unwrap();
        let shared = SharedConnection::fresh(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let cmd = &command(None, None, Some(&shared));
        let words = shlex::split(cmd).unwrap();
        assert!(cmd.starts_with(SSH_BASE), "{cmd}");
        for opt in [
            "ControlMaster=auto".to_owned(),
            format!("ControlPath={}/master", dir.display()),
            format!("ControlPersist={PERSIST_SECS}"),
            "ServerAliveInterval=10".to_owned(),
            "ServerAliveCountMax=3".to_owned(),
            "ConnectTimeout=20".to_owned(),
        ] {
            assert!(words.contains(&opt), "{opt} in {cmd}");
        }
    }

    #[test]
    fn a_shared_connection_needs_a_short_plain_path() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("x".repeat(MAX_DIR_LEN));
        assert!(matches!(
            SharedConnection::fresh(&long),
            Err(SharedConnectionError::TooLong { .. })
        ));
        assert!(!long.exists());
        let percent = tmp.path().join("100%");
        let e = SharedConnection::fresh(&percent).unwrap_err().to_string();
        assert!(e.contains("100%") && e.contains("token"), "{e}");
    }

    #[test]
    fn ssh_urls_are_told_from_others() {
        for ssh in [
            "ssh://git@host/r",
            "SSH://host:22/r",
            "git+ssh://host/r",
            "git@github.com:o/r.git",
            "host:r",
        ] {
            assert!(is_ssh_url(ssh), "{ssh}");
        }
        for other in [
            "https://github.com/o/r",
            "git://127.0.0.1/g",
            "file:///srv/g",
            "/srv/grid.git",
            "./a:b",
            "",
        ] {
            assert!(!is_ssh_url(other), "{other}");
        }
    }
}
