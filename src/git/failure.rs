//! What went wrong talking to the grid's server, told from git's stderr.
//!
//! git says why a fetch or push failed only in prose, and the useful line is
//! rarely the last (over SSH the cause comes first, then three lines of
//! "Could not read from remote repository"). An operator needs to know
//! which of a handful of things to fix, so the worker's log and `check` both
//! name one of these, with the line of git's that says so.
//!
//! Pure: no processes. The messages matched are git's, curl's and
//! OpenSSH's under `LC_ALL=C`, which every git call sets.

/// A failure to reach or use the grid's remote, by what fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoteFailure {
    #[error(
        "authentication failed: the server refused the credentials \
         (check the token, git_username, or the deploy key)"
    )]
    AuthFailed,
    #[error(
        "authentication required: the server asks for credentials and none are set \
         (set token_file, GIT_TOKEN or the git-token credential)"
    )]
    NoCredentials,
    #[error(
        "push refused: the credentials may read the grid but not write it \
         (a read-only token or deploy key? it needs contents read and write)"
    )]
    ReadOnly,
    #[error(
        "access denied: the server refused these credentials for this repository \
         (does the token or key cover it?)"
    )]
    Forbidden,
    #[error(
        "repository not found: check repo_url (a private repository also looks \
         like this to credentials that cannot see it)"
    )]
    NotFound,
    #[error(
        "TLS: the server's certificate is not trusted \
         (for a private CA, set [git] ca_file to its certificate)"
    )]
    TlsUntrusted,
    #[error(
        "SSH host key unknown: the server is not in known_hosts and is never trusted \
         on first use (add its verified key to [git] known_hosts)"
    )]
    HostKeyUnknown,
    #[error(
        "SSH host key CHANGED: the server's key differs from the one in known_hosts \
         (a re-keyed server, or someone in between: verify before editing known_hosts)"
    )]
    HostKeyChanged,
    #[error(
        "unreachable: cannot connect to the server, or the connection was cut \
         (network, name or port; the server or a proxy restarting)"
    )]
    Unreachable,
    #[error(
        "push refused by git itself: another branch's name ends in this branch's full \
         name (one named `refs/heads/<branch>`, pushed by someone), so git cannot tell \
         which to update; delete it on the server: \
         git push origin :refs/heads/refs/heads/<branch>"
    )]
    AmbiguousBranch,
}

impl RemoteFailure {
    /// The server answered, and said no: nothing was written, and asking
    /// again at once will not change its answer. `Unreachable` is the one
    /// that may be a push cut off after it landed, and passes by itself.
    pub fn needs_operator(self) -> bool {
        !matches!(self, RemoteFailure::Unreachable)
    }

    /// The server refused these credentials. Forges lock out addresses
    /// that fail authentication too often, so a node retries such a grid
    /// slowly. (A missing repository or an untrusted certificate costs the
    /// server nothing, and may be a moment's outage: those are retried at
    /// the poll interval.)
    pub fn refused_credentials(self) -> bool {
        matches!(
            self,
            RemoteFailure::AuthFailed | RemoteFailure::Forbidden | RemoteFailure::ReadOnly
        )
    }
}

/// The failure git's stderr describes, and the line that says so; `None`
/// when it is nothing of the above (a lost race, a bad object, ...).
/// `pushing` tells a refused push (a read-only token) from a refused read.
pub fn classify(stderr: &str, pushing: bool) -> Option<(RemoteFailure, String)> {
    use RemoteFailure::*;
    // Checked in order: the first rule whose pattern some line contains wins.
    // Host key lines come before "Permission denied" (a changed key also
    // disables key authentication) and TLS before "unable to access".
    let rules: &[(RemoteFailure, &[&str])] = &[
        (
            HostKeyChanged,
            &[
                "REMOTE HOST IDENTIFICATION HAS CHANGED",
                "has changed and you have requested strict checking",
            ],
        ),
        (
            HostKeyUnknown,
            &["host key is known for", "Host key verification failed"],
        ),
        (
            TlsUntrusted,
            &[
                "server certificate verification failed",
                "SSL certificate problem",
                "certificate verify failed",
                "unable to get local issuer certificate",
                "self-signed certificate",
                "self signed certificate",
            ],
        ),
        (
            NoCredentials,
            &["could not read Username", "could not read Password"],
        ),
        (
            AuthFailed,
            &[
                "Authentication failed for",
                "Permission denied (publickey",
                "Invalid username or password",
                "returned error: 401",
            ],
        ),
        (
            Forbidden,
            &[
                "returned error: 403",
                "Permission to ",
                "ERROR: Write access to repository not granted",
            ],
        ),
        (
            NotFound,
            &[
                "not found",
                "does not appear to be a git repository",
                "returned error: 404",
                "Repository not found",
            ],
        ),
        (AmbiguousBranch, &["matches more than one"]),
        (
            Unreachable,
            &[
                "Could not resolve host",
                "Failed to connect to",
                "Couldn't connect to server",
                "Connection refused",
                "Connection timed out",
                "Could not resolve hostname",
                "No route to host",
                "Network is unreachable",
                "Connection reset by peer",
                "Connection closed by",
                // A connection cut mid-transfer (the server or a proxy
                // restarting), as curl's GnuTLS and OpenSSL builds say it;
                // not the HTTP errors `RPC failed; curl 22` reports.
                "gnutls_handshake() failed",
                "GnuTLS recv error",
                "GnuTLS send error",
                "OpenSSL SSL_read",
                "OpenSSL SSL_connect",
                "SSL_ERROR_SYSCALL",
                "Empty reply from server",
                "RPC failed; curl 18",
                "RPC failed; curl 35",
                "RPC failed; curl 52",
                "RPC failed; curl 55",
                "RPC failed; curl 56",
            ],
        ),
    ];
    for (failure, patterns) in rules {
        let found = stderr
            .lines()
            .map(str::trim)
            .find(|line| patterns.iter().any(|p| line.contains(p)));
        if let Some(line) = found {
            let failure = match failure {
                // GitHub answers a push with a read-only token with 403.
                Forbidden if pushing => ReadOnly,
                other => *other,
            };
            let line = line.strip_prefix("fatal: ").unwrap_or(line);
            return Some((failure, line.chars().take(300).collect()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::RemoteFailure::*;
    use super::*;

    fn kind(stderr: &str, pushing: bool) -> Option<RemoteFailure> {
        classify(stderr, pushing).map(|(k, _)| k)
    }

    /// What git 2.39-2.47, curl (GnuTLS and OpenSSL builds) and OpenSSH 9
    /// print, as recorded against the test servers.
    #[test]
    fn git_messages() {
        let ssh_tail = "fatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let cases: &[(&str, bool, Option<RemoteFailure>)] = &[
            (
                "fatal: Authentication failed for 'https://h/g.git/'\n",
                false,
                Some(AuthFailed),
            ),
            (
                "fatal: could not read Username for 'https://h': terminal prompts disabled\n",
                false,
                Some(NoCredentials),
            ),
            (
                "fatal: unable to access 'https://h/g.git/': The requested URL returned error: 403\n",
                true,
                Some(ReadOnly),
            ),
            (
                "fatal: unable to access 'https://h/g.git/': The requested URL returned error: 403\n",
                false,
                Some(Forbidden),
            ),
            (
                "remote: Permission to o/g.git denied to u.\nfatal: unable to access 'https://github.com/o/g.git/': The requested URL returned error: 403\n",
                true,
                Some(ReadOnly),
            ),
            (
                "fatal: repository 'https://h/nope.git/' not found\n",
                false,
                Some(NotFound),
            ),
            (
                "error: dst refspec refs/heads/main matches more than one\nerror: failed to push some refs to '/g.git'\n",
                true,
                Some(AmbiguousBranch),
            ),
            (
                "fatal: unable to access 'https://h/g.git/': server certificate verification failed. CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none\n",
                false,
                Some(TlsUntrusted),
            ),
            (
                "fatal: unable to access 'https://h/g.git/': SSL certificate problem: unable to get local issuer certificate\n",
                false,
                Some(TlsUntrusted),
            ),
            (
                "fatal: unable to access 'https://h:1/g.git/': Failed to connect to h port 1 after 0 ms: Couldn't connect to server\n",
                false,
                Some(Unreachable),
            ),
            (
                "fatal: unable to access 'https://x.invalid/g.git/': Could not resolve host: x.invalid\n",
                false,
                Some(Unreachable),
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
                false,
                Some(HostKeyUnknown),
            ),
            (
                "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\nHost key for [h]:2 has changed and you have requested strict checking.\nHost key verification failed.\n",
                false,
                Some(HostKeyChanged),
            ),
            (
                "git@h: Permission denied (publickey).\n",
                false,
                Some(AuthFailed),
            ),
            (
                "fatal: '/srv/nope.git' does not appear to be a git repository\n",
                false,
                Some(NotFound),
            ),
            (
                "ssh: connect to host h port 1: Connection refused\n",
                false,
                Some(Unreachable),
            ),
            ("ERROR: Repository not found.\n", false, Some(NotFound)),
            // nginx stopped, then its connections reset, under a fetch.
            (
                "error: RPC failed; curl 56 GnuTLS recv error (-110): The TLS connection was non-properly terminated.\nfatal: expected flush after ref listing\n",
                false,
                Some(Unreachable),
            ),
            (
                "fatal: unable to access 'https://h/g.git/': gnutls_handshake() failed: The TLS connection was non-properly terminated.\n",
                false,
                Some(Unreachable),
            ),
            (
                "error: RPC failed; curl 35 OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to h:443\n",
                true,
                Some(Unreachable),
            ),
            // An HTTP error is the server's answer, not a cut connection.
            (
                "error: RPC failed; HTTP 413 curl 22 The requested URL returned error: 413\nsend-pack: unexpected disconnect while reading sideband packet\n",
                true,
                None,
            ),
            (
                "fatal: couldn't find remote ref refs/heads/archive\n",
                false,
                None,
            ),
            ("error: failed to push some refs\n", true, None),
        ];
        for (stderr, pushing, want) in cases {
            let text = if stderr.contains("ssh")
                || stderr.contains("Host key")
                || stderr.contains("publickey")
            {
                format!("{stderr}{ssh_tail}")
            } else {
                stderr.to_string()
            };
            assert_eq!(kind(&text, *pushing), *want, "{text}");
        }
    }

    #[test]
    fn the_line_that_says_why_is_kept() {
        let (k, line) = classify(
            "No ED25519 host key is known for [h]:22 and you have requested strict checking.\nHost key verification failed.\nfatal: Could not read from remote repository.\n",
            false,
        )
        .unwrap();
        assert_eq!(k, HostKeyUnknown);
        assert!(line.starts_with("No ED25519 host key is known"), "{line}");
        assert!(!Unreachable.needs_operator() && AuthFailed.needs_operator());
        assert!(ReadOnly.refused_credentials() && !NotFound.refused_credentials());
    }
}
