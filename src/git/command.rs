//! One git invocation: the binary, a repository, a fixed environment, a
//! timeout. Every git call of the worker goes through [`Git::run`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use super::failure::RemoteFailure;
use super::ssh::SSH_BASE;

/// Variables of the worker's own environment that hold a secret git is
/// given another way (the token: `auth::credential_env`, to the children
/// that reach the server): no git child inherits them.
const INHERITED_SECRETS: &[&str] = &["GIT_TOKEN"];

/// How long a call killed at its timeout is waited for, to be reaped.
const REAP_WITHIN: Duration = Duration::from_secs(5);

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
    /// The clone lacks an object that a tree or commit it holds names
    /// (`git::damage`): what would read as "not there" is not known.
    #[error(
        "the clone is damaged: {0}; nothing is decided on it (a node clones the grid afresh by itself, keeping its results in its outbox; a repository a tool reads needs `git fsck` and a fresh clone)"
    )]
    Damaged(String),
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

    /// The environment every git child gets, on top of the process's own
    /// (less [`INHERITED_SECRETS`]).
    fn child_env(&self) -> Vec<(&str, &str)> {
        let mut env = Self::base_env();
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

    /// What every git child is given, the local ones too.
    fn base_env() -> Vec<(&'static str, &'static str)> {
        vec![
            // Never wait for a person: a prompt would hang the service until
            // the timeout and then fail anyway.
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", ""),
            ("SSH_ASKPASS", ""),
            // Messages are parsed in a few places; keep them in English.
            ("LC_ALL", "C"),
        ]
    }

    /// A git child that lives on, with piped stdin and stdout (for
    /// `cat-file --batch`, [`super::batch`]): the same binary and
    /// directory as [`Git::run`]; stderr is dropped. It reads the local
    /// clone only and lives for a whole sync, so it is given no credential
    /// and no identity: only [`Git::base_env`].
    pub(super) fn spawn_piped(&self, args: &[&str]) -> std::io::Result<std::process::Child> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for k in INHERITED_SECRETS {
            cmd.env_remove(k);
        }
        for (k, v) in Self::base_env() {
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
        let mut expr = self.expression(args).stdout_capture();
        expr = match stdin {
            Some(bytes) => expr.stdin_bytes(bytes.to_vec()),
            None => expr.stdin_null(),
        };
        let handle = expr
            .start()
            .map_err(|source| self.spawn_error(&shown, source))?;
        let output = match handle.wait_timeout(self.timeout) {
            Ok(Some(_)) => handle.into_output(),
            Ok(None) => {
                // The whole group: git's helpers and ssh too, which a kill
                // of git alone left running. Then reaped, within a bound:
                // a grandchild that left the group may hold a pipe open.
                super::child::kill_group(&handle.pids());
                let _ = handle.wait_timeout(REAP_WITHIN);
                return Err(GitError::Timeout {
                    args: shown,
                    after: self.timeout,
                });
            }
            Err(e) => Err(e),
        }
        .map_err(|source| self.spawn_error(&shown, source))?;
        let code = output.status.code().unwrap_or(-1);
        let elapsed = started.elapsed();
        tracing::trace!(args = %shown, code, elapsed_ms = elapsed.as_millis() as u64, "git");
        check_exit(args, shown, code, ok, &output.stderr)?;
        Ok(GitOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            code,
            elapsed,
        })
    }

    /// Run git for at most `cap` bytes of its stdout: the output and
    /// whether there was more (then git is stopped there, and its exit is
    /// not looked at). For a listing whose length the grid's writers
    /// choose (`ls-remote` of a namespace anyone able to push may fill).
    pub fn run_capped(&self, args: &[&str], cap: usize) -> Result<(GitOutput, bool), GitError> {
        use std::io::Read;
        use std::sync::mpsc;
        let shown = args.join(" ");
        let started = Instant::now();
        let reader = self
            .expression(args)
            .stdin_null()
            .reader()
            .map_err(|source| self.spawn_error(&shown, source))?;
        let reader = std::sync::Arc::new(reader);
        // The timeout `run` has: the watcher stops git, which ends the read.
        let (done, finished) = mpsc::channel::<()>();
        let watcher = {
            let reader = reader.clone();
            let timeout = self.timeout;
            std::thread::spawn(move || {
                let late = finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout);
                if late {
                    super::child::kill_group(&reader.pids());
                }
                late
            })
        };
        let mut stdout = Vec::new();
        let read = (&*reader).take(cap as u64 + 1).read_to_end(&mut stdout);
        let _ = done.send(());
        if watcher.join().unwrap_or(true) {
            return Err(GitError::Timeout {
                args: shown,
                after: self.timeout,
            });
        }
        read.map_err(|source| self.spawn_error(&shown, source))?;
        let elapsed = started.elapsed();
        if stdout.len() > cap {
            super::child::kill_group(&reader.pids());
            stdout.truncate(cap);
            return Ok((
                GitOutput {
                    stdout,
                    stderr: Vec::new(),
                    code: 0,
                    elapsed,
                },
                true,
            ));
        }
        // At the end of its output: the read waited for git's exit.
        let output = reader
            .try_wait()
            .map_err(|source| self.spawn_error(&shown, source))?
            .ok_or_else(|| GitError::Unexpected {
                args: shown.clone(),
                what: "no exit status after the end of its output".into(),
            })?;
        let code = output.status.code().unwrap_or(-1);
        let stderr = output.stderr.clone();
        check_exit(args, shown, code, &[0], &stderr)?;
        Ok((
            GitOutput {
                stdout,
                stderr,
                code,
                elapsed,
            },
            false,
        ))
    }

    /// git with these arguments, in this directory and environment, stderr
    /// captured, any exit accepted (the caller checks it).
    fn expression(&self, args: &[&str]) -> duct::Expression {
        // As an OsStr, not a Path: duct would read a bare `git` Path as `./git`.
        let mut expr = super::child::own_group(duct::cmd(self.binary.as_os_str(), args))
            .dir(&self.dir)
            .stderr_capture()
            .unchecked();
        for k in INHERITED_SECRETS {
            expr = expr.env_remove(k);
        }
        for (k, v) in self.child_env() {
            expr = expr.env(k, v);
        }
        expr
    }

    fn spawn_error(&self, shown: &str, source: std::io::Error) -> GitError {
        GitError::Spawn {
            binary: self.binary.display().to_string(),
            args: shown.to_owned(),
            source,
        }
    }
}

/// An exit code outside `ok` as the error it is: a remote's refusal,
/// classified, or git's own failure with its last words.
fn check_exit(
    args: &[&str],
    shown: String,
    code: i32,
    ok: &[i32],
    stderr: &[u8],
) -> Result<(), GitError> {
    if ok.contains(&code) {
        return Ok(());
    }
    let remote = matches!(
        args.first(),
        Some(&("fetch" | "push" | "ls-remote" | "clone"))
    );
    if remote
        && let Some((failure, said)) = super::failure::classify(
            &String::from_utf8_lossy(stderr),
            args.first() == Some(&"push"),
        )
    {
        return Err(GitError::Remote {
            failure,
            args: shown,
            said,
        });
    }
    Err(GitError::Failed {
        args: shown,
        code,
        stderr: summarize(stderr),
    })
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

/// The useful part of git's stderr for an error message: its first
/// `fatal:` or `error:` line, then its last few non-empty lines, at most
/// 500 characters. The cause is often the first line and advice the last
/// (a lock file: the path first, then five lines on other processes).
pub fn summarize(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines.len().saturating_sub(3);
    let cause = lines[..tail]
        .iter()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"));
    let shown: Vec<&str> = cause
        .into_iter()
        .copied()
        .chain(lines[tail..].iter().copied())
        .collect();
    shown.join(" / ").chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock file's path is in git's first line, and five lines of advice
    /// follow: the summary keeps the path (a fault sweep found it cut).
    #[test]
    fn a_summary_keeps_the_cause_before_the_advice() {
        let stderr = b"fatal: Unable to create '/s/grid.git/config.lock': File exists.\n\nAnother git process seems to be running in this repository, e.g.\nan editor opened by 'git commit'. Please make sure all processes\nare terminated then try again. If it still fails, a git process\nmay have crashed in this repository earlier:\nremove the file manually to continue.\n";
        let s = summarize(stderr);
        assert!(
            s.starts_with("fatal: Unable to create '/s/grid.git/config.lock'"),
            "{s}"
        );
        assert!(s.ends_with("remove the file manually to continue."), "{s}");
        assert_eq!(summarize(b"error: one\ntwo\n"), "error: one / two");
    }

    fn git(timeout: Duration) -> Git {
        Git::new("git", std::env::temp_dir(), timeout)
    }

    /// The token goes to the children that may reach the server; the kept
    /// readers of the local clone, which live for a whole sync, get none
    /// (a sweep found it in every `cat-file` process's environment).
    #[test]
    fn the_local_readers_are_given_no_credential() {
        let env = Git::new("env", std::env::temp_dir(), Duration::from_secs(10)).with_env(vec![
            ("DGRID_GIT_TOKEN".into(), "s3cret-tok".into()),
            (
                "GIT_CONFIG_VALUE_0".into(),
                "Authorization: Basic czNjcmV0".into(),
            ),
        ]);
        let networked = env.run(&[]).unwrap();
        assert!(
            networked
                .stdout_str()
                .contains("DGRID_GIT_TOKEN=s3cret-tok")
        );
        let mut reader = env.spawn_piped(&[]).unwrap();
        drop(reader.stdin.take());
        let out = reader.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("LC_ALL=C"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("czNjcmV0"),
            "{text}"
        );
    }

    #[test]
    fn a_capped_run_reads_no_more_than_its_cap() {
        let (out, more) = git(Duration::from_secs(30))
            .run_capped(&["--version"], 7)
            .unwrap();
        assert_eq!(out.stdout, b"git ver");
        assert!(more);
        let (out, more) = git(Duration::from_secs(30))
            .run_capped(&["--version"], 1000)
            .unwrap();
        assert!(out.stdout_str().starts_with("git version"), "{out:?}");
        assert!(!more);
        let failed = git(Duration::from_secs(30)).run_capped(&["no-such-command"], 1000);
        assert!(matches!(failed, Err(GitError::Failed { .. })), "{failed:?}");
    }

    #[test]
    fn a_capped_run_stops_at_the_timeout() {
        // A server that accepts and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("git://{}/grid.git", listener.local_addr().unwrap());
        let started = Instant::now();
        let hung = git(Duration::from_secs(1)).run_capped(&["ls-remote", &url], 1000);
        assert!(matches!(hung, Err(GitError::Timeout { .. })), "{hung:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
        drop(listener);
    }
}
