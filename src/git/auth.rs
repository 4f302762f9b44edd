//! Credentials for the grid remote.
//!
//! The token never goes on a command line, into a remote URL or into
//! `.git/config`: git gets a credential helper through `GIT_CONFIG_*`
//! variables in the child's environment only, and the helper reads the token
//! from another variable of that same environment. `ps` shows neither.

use std::fmt;

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

/// The credential helper, as a shell snippet git runs for `get` requests. It
/// prints the variables' values, never has them in its own argv.
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; \
     printf 'username=%s\\npassword=%s\\n' \"${DGRID_GIT_USERNAME:-x-access-token}\" \"$DGRID_GIT_TOKEN\"; }; f";

/// Environment for a git child that may need the token. The first helper
/// entry is empty, which clears helpers configured elsewhere (a desktop
/// keyring has no business answering for a service).
pub fn credential_env(token: Option<&Secret>, username: Option<&str>) -> Vec<(String, String)> {
    let Some(token) = token else {
        return Vec::new();
    };
    let mut env = vec![
        ("GIT_CONFIG_COUNT".to_owned(), "2".to_owned()),
        (
            "GIT_CONFIG_KEY_0".to_owned(),
            "credential.helper".to_owned(),
        ),
        ("GIT_CONFIG_VALUE_0".to_owned(), String::new()),
        (
            "GIT_CONFIG_KEY_1".to_owned(),
            "credential.helper".to_owned(),
        ),
        ("GIT_CONFIG_VALUE_1".to_owned(), HELPER.to_owned()),
        (TOKEN_VAR.to_owned(), token.expose().to_owned()),
    ];
    if let Some(user) = username {
        env.push((USER_VAR.to_owned(), user.to_owned()));
    }
    env
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
}

/// Refuse a remote URL with a password or token in it. An ssh user name
/// (`ssh://git@host/...`, `git@host:...`) is not a secret and is fine.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    if url.trim().is_empty() {
        return Err(UrlError::Empty);
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if userinfo.contains(':') || http {
                return Err(UrlError::CredentialsInUrl);
            }
        }
    }
    Ok(())
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
    fn token_only_in_the_environment_values() {
        let env = credential_env(Some(&Secret::new("tok123")), None);
        let holders: Vec<_> = env.iter().filter(|(_, v)| v.contains("tok123")).collect();
        assert_eq!(holders, vec![&(TOKEN_VAR.to_owned(), "tok123".to_owned())]);
        assert!(credential_env(None, None).is_empty());
    }
}
