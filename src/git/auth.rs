//! Credentials for the grid remote.
//!
//! The token never goes on a command line, into a remote URL or into
//! `.git/config`: git gets it through `GIT_CONFIG_*` variables in the
//! child's environment only (a header for the first request, and a
//! credential helper that reads it from another variable of that same
//! environment). `ps` shows neither.
//!
//! The worker and the grid tools load the token with the one
//! [`load_token`], and build a git child's environment with the one
//! [`Access::env`]: HTTPS trust (`ca_file`), the token, and for SSH a
//! pinned host key and a deploy key.

use std::fmt;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};

use super::ssh::{self, SharedConnection};

/// A secret that prints as `***` in every `Debug` and `Display`, so that a
/// stray `?config` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Name of the child-environment variable that carries the token to the helper.
const TOKEN_VAR: &str = "DGRID_GIT_TOKEN";
const USER_VAR: &str = "DGRID_GIT_USERNAME";

/// The user name sent with the token when none is set: what GitHub expects
/// with an installation or fine-grained token (any name works with a PAT).
pub const DEFAULT_GIT_USERNAME: &str = "x-access-token";

/// The credential helper, as a shell snippet git runs for `get` requests. It
/// prints the variables' values, never has them in its own argv.
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; \
     printf 'username=%s\\npassword=%s\\n' \"$DGRID_GIT_USERNAME\" \"$DGRID_GIT_TOKEN\"; }; f";

/// Environment for a git child that may need the token.
///
/// The token goes with the first request, as an `Authorization` header
/// (`http.extraHeader`): without it every git call over HTTPS first takes a
/// 401 and asks again, one more round trip a call (0.11 s of a no-op
/// fetch's 0.67 s with the forge 100 ms away). The helper stays behind it
/// for a token the server refuses, so that git still says "Authentication
/// failed" rather than that it could not prompt. The first entry of each
/// key is empty, which clears what is configured elsewhere (a desktop
/// keyring, or a checkout's header, has no business answering for a
/// service).
pub fn credential_env(token: Option<&Secret>, username: Option<&str>) -> Vec<(String, String)> {
    let Some(token) = token else {
        return Vec::new();
    };
    let username = username.unwrap_or(DEFAULT_GIT_USERNAME);
    let basic = Base64::encode_string(format!("{username}:{}", token.expose()).as_bytes());
    let config = [
        ("credential.helper", String::new()),
        ("credential.helper", HELPER.to_owned()),
        ("http.extraHeader", String::new()),
        ("http.extraHeader", format!("Authorization: Basic {basic}")),
    ];
    let mut env = vec![("GIT_CONFIG_COUNT".to_owned(), config.len().to_string())];
    for (i, (key, value)) in config.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), key.to_owned()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
    }
    env.push((TOKEN_VAR.to_owned(), token.expose().to_owned()));
    env.push((USER_VAR.to_owned(), username.to_owned()));
    env
}

/// The name of the systemd credential (`LoadCredential=git-token:...`).
pub const TOKEN_CREDENTIAL: &str = "git-token";
/// The name of the systemd credential holding an SSH deploy key.
pub const SSH_KEY_CREDENTIAL: &str = "ssh-key";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// git's credential protocol is one `key=value` per line: a line break
    /// in the token would hand git a second line of our choosing (and git
    /// prints a line it cannot read, so the rest of the token would end up
    /// in the log).
    #[error(
        "the token from {origin} contains a control character at byte {at} (a line break?): \
         a token is one line of printable characters; fix {origin}"
    )]
    ControlCharacter { origin: String, at: usize },
}

/// A systemd credential of this service, if the unit passed one
/// (`$CREDENTIALS_DIRECTORY/<name>`, present and not empty). The package
/// ships an empty token file so that `LoadCredential=` never fails the
/// unit: empty means "none".
pub fn credential_path(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    let dir = get("CREDENTIALS_DIRECTORY")?;
    let path = Path::new(&dir).join(name);
    std::fs::metadata(&path)
        .is_ok_and(|m| m.is_file() && m.len() > 0)
        .then_some(path)
}

/// The token, for the worker and the tools alike: `GIT_TOKEN`, else the
/// file named by `DGRID_TOKEN_FILE`, else `configured_file` (the worker's
/// `token_file`), else systemd's credential `git-token`. Surrounding
/// whitespace (a file's final newline) is dropped; an empty token is none;
/// a token with a control character inside is refused, naming where it
/// came from, never what it is.
pub fn load_token(
    get: &dyn Fn(&str) -> Option<String>,
    configured_file: Option<&Path>,
) -> Result<Option<Secret>, TokenError> {
    let (text, origin) = match get("GIT_TOKEN") {
        Some(t) => (t, "GIT_TOKEN".to_owned()),
        None => {
            let file = get("DGRID_TOKEN_FILE")
                .map(PathBuf::from)
                .or_else(|| configured_file.map(Path::to_owned))
                .or_else(|| credential_path(get, TOKEN_CREDENTIAL));
            let Some(path) = file else {
                return Ok(None);
            };
            let text = std::fs::read_to_string(&path).map_err(|source| TokenError::Read {
                path: path.clone(),
                source,
            })?;
            (text, path.display().to_string())
        }
    };
    let token = text.trim();
    if let Some(at) = token.find(char::is_control) {
        return Err(TokenError::ControlCharacter { origin, at });
    }
    Ok((!token.is_empty()).then(|| Secret::new(token)))
}

/// Everything a git child needs to reach the grid: the token (HTTPS), the
/// CA to trust (HTTPS), the deploy key and pinned host keys (SSH).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub token: Option<Secret>,
    /// Sent with the token; `x-access-token` when unset.
    pub username: Option<String>,
    /// Trust this CA bundle for HTTPS instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The SSH private key (a deploy key) to authenticate with.
    pub ssh_key_file: Option<PathBuf>,
    /// The only known_hosts file ssh reads: the grid's pinned host keys.
    pub known_hosts: Option<PathBuf>,
    /// Where ssh keeps one connection to the grid's host open between git
    /// calls ([`SharedConnection`]); the worker's, never a one-shot tool's.
    pub ssh_shared: Option<SharedConnection>,
}

impl Access {
    /// The child environment for git. Paths may appear there (and in ssh's
    /// argv, through `GIT_SSH_COMMAND`); secrets only in variables that no
    /// argv ever shows.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = credential_env(self.token.as_ref(), self.username.as_deref());
        if let Some(ca) = &self.ca_file {
            // The variable, not `http.sslCAInfo`: git lets GIT_SSL_CAINFO
            // override the setting, and hosts often export it for the
            // system bundle.
            env.push(("GIT_SSL_CAINFO".to_owned(), ca.display().to_string()));
        }
        if self.ssh_key_file.is_some() || self.known_hosts.is_some() || self.ssh_shared.is_some() {
            env.push(("GIT_SSH_COMMAND".to_owned(), self.ssh_command()));
        }
        env
    }

    /// `ssh` with strict host key checking (a host not in known_hosts, or
    /// with another key, is refused, never trusted on first use), no
    /// prompts, and only the configured key offered. git runs this through
    /// the shell, so each path is quoted.
    pub fn ssh_command(&self) -> String {
        ssh::command(
            self.known_hosts.as_deref(),
            self.ssh_key_file.as_deref(),
            self.ssh_shared.as_ref(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "the repository URL carries credentials; remove them and put the token in \
         token_file (or GIT_TOKEN) instead, so that it stays out of .git/config and ps"
    )]
    CredentialsInUrl,
    #[error("the repository URL is empty")]
    Empty,
    #[error(
        "the repository URL is plain http:// and a token is set (token_file, \
         DGRID_TOKEN_FILE, GIT_TOKEN or the git-token credential): git would send the \
         token in clear text, readable and reusable by anyone on the way to {host}; \
         use https:// (plain http is taken with a token only for a loopback host: \
         127.0.0.0/8, ::1, localhost)"
    )]
    TokenOverHttp { host: String },
}

/// Refuse to send `token` over plain `http://`: git sends it with every
/// request (`credential_env`), as a Basic header, which is the token
/// itself, base64-encoded. A loopback host is let through: the token
/// leaves no machine, and a test grid may serve plain http there.
pub fn check_transport(url: &str, token: Option<&Secret>) -> Result<(), UrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    if token.is_none() || !scheme.eq_ignore_ascii_case("http") {
        return Ok(());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(UrlError::TokenOverHttp {
        host: host.to_owned(),
    })
}

/// Refuse a remote URL with a password or token in it. An ssh user name
/// (`ssh://git@host/...`, `git@host:...`) is not a secret and is fine.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    if url.trim().is_empty() {
        return Err(UrlError::Empty);
    }
    match secret_userinfo(url) {
        Some(_) => Err(UrlError::CredentialsInUrl),
        None => Ok(()),
    }
}

/// Where in `url` a secret may sit: the userinfo of `scheme://userinfo@host`
/// when it has a password, or any userinfo over HTTP(S) (a token alone is
/// a user name there). `None` for a URL with none.
fn secret_userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or("");
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let start = scheme.len() + "://".len();
    (userinfo.contains(':') || http).then(|| start..start + userinfo.len())
}

/// `url` as it may be printed: what [`check_url`] refuses as credentials
/// replaced by `***`. Every message that names a repository URL a person
/// typed goes through this: the refusal of a URL with a token in it must
/// not print the token it refuses.
pub fn shown_url(url: &str) -> String {
    match secret_userinfo(url) {
        Some(at) => format!("{}***{}", &url[..at.start], &url[at.end..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("ghp_abc");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        assert_eq!(
            check_url("https://ghp_x@github.com/o/r"),
            Err(UrlError::CredentialsInUrl)
        );
        assert_eq!(
            check_url("https://u:p@github.com/o/r"),
            Err(UrlError::CredentialsInUrl)
        );
        assert_eq!(
            check_url("ssh://u:p@host/r"),
            Err(UrlError::CredentialsInUrl)
        );
        for ok in [
            "https://github.com/o/r",
            "ssh://git@host/r",
            "git@github.com:o/r.git",
            "/srv/grid.git",
            "file:///srv/g",
            "git://127.0.0.1/g",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            shown_url("https://x-access-token:tok_LEAKME@127.0.0.1:8443/https.git"),
            "https://***@127.0.0.1:8443/https.git"
        );
        assert_eq!(shown_url("HTTP://tok@h/r"), "HTTP://***@h/r");
        assert_eq!(shown_url("ssh://u:pw@host/r"), "ssh://***@host/r");
        // What check_url refuses is what is hidden; the rest is as typed.
        for url in [
            "https://github.com/o/r",
            "ssh://git@host/r",
            "git@github.com:o/r.git",
            "/srv/a@b",
        ] {
            assert_eq!(shown_url(url), url);
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn a_token_goes_over_plain_http_to_a_loopback_host_only() {
        let tok = Secret::new("t");
        for refused in [
            "http://forge.example/g.git",
            "HTTP://10.0.0.1:8081/g.git",
            "http://128.0.0.1/g",
            "http://[2001:db8::1]:80/g",
            "http://localhost.evil.example/g",
        ] {
            let e = check_transport(refused, Some(&tok)).unwrap_err();
            assert!(matches!(e, UrlError::TokenOverHttp { .. }), "{refused}");
            assert!(e.to_string().contains("clear text"), "{e}");
        }
        for ok in [
            "http://127.0.0.1:8081/g.git",
            "http://127.9.8.7/g",
            "http://[::1]:8081/g",
            "http://LOCALHOST/g",
            "https://forge.example/g.git",
            "ssh://git@forge.example/g.git",
            "/srv/grid.git",
        ] {
            assert_eq!(check_transport(ok, Some(&tok)), Ok(()), "{ok}");
        }
        // No token, nothing to leak.
        assert_eq!(check_transport("http://forge.example/g", None), Ok(()));
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_token_with_a_line_break_is_refused_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("git-token");
        std::fs::write(&file, "ghp_first\nusername=evil\n").unwrap();
        let e = load_token(&no_env, Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("control character") && e.contains("git-token"),
            "{e}"
        );
        assert!(!e.contains("ghp_first") && !e.contains("evil"), "{e}");
        assert!(
            !e.contains('\\') && !e.contains('\n'),
            "one clean line: {e:?}"
        );
        let from_env = |n: &str| (n == "GIT_TOKEN").then(|| "a\tb".to_owned());
        let e = load_token(&from_env, None).unwrap_err().to_string();
        assert!(e.contains("GIT_TOKEN") && e.contains("byte 1"), "{e}");
        // A final newline is what every editor writes: fine.
        std::fs::write(&file, "ghp_ok\n").unwrap();
        let t = load_token(&no_env, Some(&file)).unwrap().unwrap();
        assert_eq!(t.expose(), "ghp_ok");
    }

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let configured = dir.path().join("configured");
        std::fs::write(&configured, "from-config").unwrap();
        let env_file = dir.path().join("env-file");
        std::fs::write(&env_file, "from-env-file").unwrap();
        let creds_s = creds.display().to_string();
        let env_file_s = env_file.display().to_string();
        let get = |vars: Vec<(&'static str, String)>| {
            move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
        };
        let tok = |g: &dyn Fn(&str) -> Option<String>, f: Option<&Path>| {
            load_token(g, f).unwrap().map(|s| s.expose().to_owned())
        };
        // An empty credential (as the package ships it) is no token.
        std::fs::write(creds.join(TOKEN_CREDENTIAL), "").unwrap();
        let g = get(vec![("CREDENTIALS_DIRECTORY", creds_s.clone())]);
        assert_eq!(tok(&g, None), None);
        std::fs::write(creds.join(TOKEN_CREDENTIAL), "from-credential\n").unwrap();
        assert_eq!(tok(&g, None).as_deref(), Some("from-credential"));
        assert_eq!(tok(&g, Some(&configured)).as_deref(), Some("from-config"));
        let g = get(vec![
            ("CREDENTIALS_DIRECTORY", creds_s.clone()),
            ("DGRID_TOKEN_FILE", env_file_s.clone()),
        ]);
        assert_eq!(tok(&g, Some(&configured)).as_deref(), Some("from-env-file"));
        let g = get(vec![
            ("DGRID_TOKEN_FILE", env_file_s),
            ("GIT_TOKEN", " from-env ".to_owned()),
        ]);
        assert_eq!(tok(&g, Some(&configured)).as_deref(), Some("from-env"));
    }

    #[test]
    fn ssh_is_strict_and_paths_are_quoted() {
        let a = Access {
            ssh_key_file: Some("/etc/dgrid/my key's".into()),
            known_hosts: Some("/etc/dgrid/known_hosts".into()),
            ..Access::default()
        };
        let cmd = a.ssh_command();
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        assert!(
            cmd.contains("BatchMode=yes") && cmd.contains("IdentitiesOnly=yes"),
            "{cmd}"
        );
        assert!(
            cmd.contains("UserKnownHostsFile=/etc/dgrid/known_hosts"),
            "{cmd}"
        );
        // The shell that git runs it with reads the path back whole.
        let words = shlex::split(&cmd).unwrap();
        assert_eq!(
            words.last().map(String::as_str),
            Some("/etc/dgrid/my key's")
        );
        assert!(Access::default().env().is_empty());
    }

    #[test]
    fn token_only_in_the_environment_values() {
        let env = credential_env(Some(&Secret::new("tok123")), None);
        let holders: Vec<_> = env.iter().filter(|(_, v)| v.contains("tok123")).collect();
        assert_eq!(holders, vec![&(TOKEN_VAR.to_owned(), "tok123".to_owned())]);
        assert!(credential_env(None, None).is_empty());
        // The header carries it encoded, in a value too, never in a key.
        let header = env
            .iter()
            .find_map(|(_, v)| v.strip_prefix("Authorization: Basic "))
            .expect("a header sent with the first request");
        let decoded = Base64::decode_vec(header).unwrap();
        assert_eq!(decoded, b"x-access-token:tok123");
        assert!(
            env.iter()
                .all(|(k, _)| !k.contains("tok123") && !k.contains(header))
        );
        let count: usize = env[0].1.parse().unwrap();
        assert!(
            env.iter()
                .any(|(k, _)| *k == format!("GIT_CONFIG_VALUE_{}", count - 1))
        );
    }
}
