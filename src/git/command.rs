//! One git invocation: the binary, a repository, a fixed environment, a
//! timeout. Every git call of the worker goes through [`Git::run`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::auth::SSH_BASE;
pub use super::failure::RemoteFailure;

/// How to run git for one repository.
#[derive(Debug, Clone)]
pub struct Git {
    binary: PathBuf,
    dir: PathBuf,
    timeout: Duration,
    /// Extra environment for every child (credentials, identity). Values are
    /// never logged: only the argument list is.
    env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not start `{binary} {args}`: {source}")]
    Spawn {
        binary: String,
        args: String,
        source: std::io::Error,
    },
    #[error("`git {args}` timed out after {after:?} and was killed")]
    Timeout { args: String, after: Duration },
    #[error("`git {args}` failed (exit {code}): {stderr}")]
    Failed {
        args: String,
        code: i32,
        stderr: String,
    },
    #[error(
        "the remote has no branch `{branch}`: is the URL a grid repository? (a new grid starts from the template's layout)"
    )]
    NoBranch { branch: String },
    /// A fetch, push or ls-remote that failed for a reason an operator
    /// must know by name: see [`RemoteFailure`].
    #[error("{failure} [git: {said}]")]
    Remote {
        failure: RemoteFailure,
        args: String,
        /// git's own line that says so (never a secret: credentials are
        /// not in URLs, and a token with a line break is refused at load).
        said: String,
    },
    #[error("the remote refused the push: {reason}")]
    PushRefused { reason: String },
    #[error("`git {args}` printed something unexpected: {what}")]
    Unexpected { args: String, what: String },
}

/// What a successful call printed, and how long it took.
#[derive(Debug)]
pub struct GitOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
    pub elapsed: Duration,
}

impl GitOutput {
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).unwrap_or("").trim_end()
    }
}

impl Git {
    pub fn new(binary: impl Into<PathBuf>, dir: impl Into<PathBuf>, timeout: Duration) -> Git {
        Git {
            binary: binary.into(),
            dir: dir.into(),
            timeout,
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, env: Vec<(String, String)>) -> Git {
        self.env.extend(env);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The environment every git child gets, on top of the process's own.
    fn child_env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            // Never wait for a person: a prompt would hang the service until
            // the timeout and then fail anyway.
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", ""),
            ("SSH_ASKPASS", ""),
            // Messages are parsed in a few places; keep them in English.
            ("LC_ALL", "C"),
        ];
        // Strict ssh unless someone chose another: the configuration's
        // (in `self.env`), else the process's own.
        let ssh_chosen = std::env::var_os("GIT_SSH_COMMAND").is_some()
            || self.env.iter().any(|(k, _)| k == "GIT_SSH_COMMAND");
        if !ssh_chosen {
            env.push(("GIT_SSH_COMMAND", SSH_BASE));
        }
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env
    }

    /// A git child that lives on, with piped stdin and stdout (for
    /// `cat-file --batch`, [`super::batch`]): the same binary, directory
    /// and environment as [`Git::run`]; stderr is dropped.
    pub(super) fn spawn_piped(&self, args: &[&str]) -> std::io::Result<std::process::Child> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in self.child_env() {
            cmd.env(k, v);
        }
        cmd.spawn()
    }

    /// Run git and return its output when it exits 0.
    pub fn run(&self, args: &[&str]) -> Result<GitOutput, GitError> {
        self.run_with(args, None, &[0])
    }

    /// Run git with `stdin`, accepting the exit codes in `ok` (some commands,
    /// `merge-base --is-ancestor` among them, answer with their exit code).
    pub fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        ok: &[i32],
    ) -> Result<GitOutput, GitError> {
        let shown = args.join(" ");
        let started = Instant::now();
        // As an OsStr, not a Path: duct would read a bare `git` Path as `./git`.
        let mut expr = duct::cmd(self.binary.as_os_str(), args)
            .dir(&self.dir)
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (k, v) in self.child_env() {
            expr = expr.env(k, v);
        }
        expr = match stdin {
            Some(bytes) => expr.stdin_bytes(bytes.to_vec()),
            None => expr.stdin_null(),
        };
        let handle = expr.start().map_err(|source| GitError::Spawn {
            binary: self.binary.display().to_string(),
            args: shown.clone(),
            source,
        })?;
        let output = match handle.wait_timeout(self.timeout) {
            Ok(Some(_)) => handle.into_output(),
            Ok(None) => {
                let _ = handle.kill();
                return Err(GitError::Timeout {
                    args: shown,
                    after: self.timeout,
                });
            }
            Err(e) => Err(e),
        }
        .map_err(|source| GitError::Spawn {
            binary: self.binary.display().to_string(),
            args: shown.clone(),
            source,
        })?;
        let code = output.status.code().unwrap_or(-1);
        let elapsed = started.elapsed();
        tracing::trace!(args = %shown, code, elapsed_ms = elapsed.as_millis() as u64, "git");
        if !ok.contains(&code) {
            let remote = matches!(
                args.first(),
                Some(&("fetch" | "push" | "ls-remote" | "clone"))
            );
            if remote
                && let Some((failure, said)) = super::failure::classify(
                    &String::from_utf8_lossy(&output.stderr),
                    args.first() == Some(&"push"),
                )
            {
                return Err(GitError::Remote {
                    failure,
                    args: shown,
                    said,
                });
            }
            return Err(GitError::Failed {
                args: shown,
                code,
                stderr: summarize(&output.stderr),
            });
        }
        Ok(GitOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            code,
            elapsed,
        })
    }
}

impl GitError {
    /// The remote failure this is, if it is one.
    pub fn remote_failure(&self) -> Option<RemoteFailure> {
        match self {
            GitError::Remote { failure, .. } => Some(*failure),
            _ => None,
        }
    }
}

/// The useful part of git's stderr for an error message: its last few
/// non-empty lines, at most 500 characters.
pub fn summarize(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    tail.chars().take(500).collect()
}
