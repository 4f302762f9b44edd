//! One git invocation: the binary, a repository, a fixed environment, a
//! timeout. Every git call of the worker goes through [`Git::run`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use super::failure::RemoteFailure;
use super::ssh::SSH_BASE;

/// Variables no git child is given: a secret git is given another way
/// (the token: `auth::credential_env`, to the children that reach the
/// server), and what would turn TLS verification off behind the
/// configuration's back: `GIT_SSL_NO_VERIFY` wins over any setting (git
/// reads it after its configuration, and set to anything, even empty, it
/// turns verification off), and `GIT_CONFIG_PARAMETERS` (`git -c`) is read
/// after [`FORCED_CONFIG`].
const NOT_INHERITED: &[&str] = &["GIT_TOKEN", "GIT_SSL_NO_VERIFY", "GIT_CONFIG_PARAMETERS"];

/// Settings every git child is given, as command-line configuration
/// through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (in
/// no argv), after the other entries there: they override the system's,
/// the user's (`$HOME/.gitconfig`) and the repository's. TLS verification
/// is never off: a grid with a private CA names it (`[git] ca_file`).
const FORCED_CONFIG: &[(&str, &str)] = &[("http.sslVerify", "true")];

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
    /// (less [`NOT_INHERITED`]).
    fn child_env(&self) -> Vec<(String, String)> {
        let mut env = Self::base_env();
        // Strict ssh unless someone chose another: the configuration's
        // (in `self.env`), else the process's own.
        let ssh_chosen = std::env::var_os("GIT_SSH_COMMAND").is_some()
            || self.env.iter().any(|(k, _)| k == "GIT_SSH_COMMAND");
        if !ssh_chosen {
            env.push(("GIT_SSH_COMMAND".into(), SSH_BASE.into()));
        }
        env.extend(
            self.env
                .iter()
                .filter(|(k, _)| !NOT_INHERITED.contains(&k.as_str()))
                .cloned(),
        );
        // After the credentials' entries, which count from 0.
        let configured = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "GIT_CONFIG_COUNT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        env.extend(forced_config(configured));
        // One value a name, the last: duct gives the first `env` of a name
        // precedence, and the count above must replace the credentials'.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<_> = env
            .into_iter()
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        unique.reverse();
        unique
    }

    /// What every git child is given, the local ones too.
    fn base_env() -> Vec<(String, String)> {
        [
            // Never wait for a person: a prompt would hang the service until
            // the timeout and then fail anyway.
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", ""),
            ("SSH_ASKPASS", ""),
            // Messages are parsed in a few places; keep them in English.
            ("LC_ALL", "C"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A git child that lives on, with piped stdin and stdout (for
    /// `cat-file --batch`, [`super::batch`]): the same binary and
    /// directory as [`Git::run`]; stderr is dropped. It reads the local
    /// clone only and lives for a whole sync, so it is given no credential
    /// and no identity: only [`Git::base_env`] and [`FORCED_CONFIG`].
    pub(super) fn spawn_piped(&self, args: &[&str]) -> std::io::Result<std::process::Child> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for k in NOT_INHERITED {
            cmd.env_remove(k);
        }
        for (k, v) in Self::base_env().into_iter().chain(forced_config(0)) {
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
        // In steps, beating this thread's pulse (the watchdog) between.
        let pulse = super::child::pulse();
        let deadline = started + self.timeout;
        let output = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match handle.wait_timeout(super::child::step(pulse.as_ref(), left)) {
                Ok(Some(_)) => break handle.into_output(),
                Ok(None) if Instant::now() < deadline => {
                    if let Some(pulse) = &pulse {
                        (pulse.beat)();
                    }
                    continue;
                }
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
                Err(e) => break Err(e),
            }
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
            let deadline = started + self.timeout;
            // Beats the reading thread's pulse, as `run_with` does.
            let pulse = super::child::pulse();
            std::thread::spawn(move || {
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let step = super::child::step(pulse.as_ref(), left);
                    match finished.recv_timeout(step) {
                        Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                            if let Some(pulse) = &pulse {
                                (pulse.beat)();
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            super::child::kill_group(&reader.pids());
                            return true;
                        }
                        _ => return false,
                    }
                }
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
        for k in NOT_INHERITED {
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

/// [`FORCED_CONFIG`] as the entries `from..` of `GIT_CONFIG_*`, and the
/// count that ends with them.
fn forced_config(from: usize) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (i, (key, value)) in FORCED_CONFIG.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", from + i), (*key).to_owned()));
        env.push((
            format!("GIT_CONFIG_VALUE_{}", from + i),
            (*value).to_owned(),
        ));
    }
    env.push((
        "GIT_CONFIG_COUNT".to_owned(),
        (from + FORCED_CONFIG.len()).to_string(),
    ));
    env
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
mod tests;
