//! Where the grid tools get a grid from: `--repo` is a URL (anything git
//! can fetch) or a local path (a checkout or bare repository, as in a
//! workflow). Reads of a local repository happen in place; everything else,
//! and every write, goes through a private bare clone in a temporary
//! directory, with the same git edge and credentials as the worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::git::Oid;
use crate::git::auth::{self, Access};
use crate::git::txn::{Identity, TxnPolicy};
use crate::git::{Git, GitError, GridRepo};

/// Bytes of blobs a tool may read from one grid: `status` and `dashboard`
/// read every result on `main` (50,000 results are about 15 MB; the archive
/// keeps `main` far smaller). Each file is capped as well
/// (`layout::MAX_RESULT_BYTES`, ...); past the budget, files are listed
/// but not read, and show as unreadable.
pub const TOOLS_READ_BUDGET: u64 = 128 * 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// The grid: a git URL or a local path (a checkout or bare repository).
    #[arg(long, env = "DGRID_REPO_URL", value_name = "URL|PATH")]
    pub repo: String,
    /// The grid's branch.
    #[arg(long, env = "DGRID_BRANCH", default_value = "main")]
    pub branch: String,
    /// Timeout of each git call, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = crate::config::defaults::GIT_TIMEOUT_SECS)]
    pub git_timeout: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{repo}: {source}")]
    Git { repo: String, source: GitError },
    #[error("{repo}: the repository has no branch `{branch}`")]
    NoBranch { repo: String, branch: String },
    #[error("{0}")]
    Url(String),
    #[error("cannot create a temporary directory: {0}")]
    Temp(std::io::Error),
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error("environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
    #[error("environment variable {var}: {path}: cannot read: {source}")]
    AccessFile {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A grid opened for reading or writing, with the commit to read.
pub struct Opened {
    pub repo: GridRepo,
    /// The branch's tip (none for an empty remote).
    pub tip: Option<Oid>,
    /// Holds the private clone, if any, for as long as the repo is used.
    _tmp: Option<tempfile::TempDir>,
}

impl Opened {
    /// For a transaction on the grid's branch: its first round plans on
    /// the tip fetched to open the grid, not on a second fetch.
    pub fn txn_policy(&self) -> TxnPolicy {
        match &self.tip {
            Some(tip) => TxnPolicy::default().from_tip(tip.clone()),
            None => TxnPolicy::default(),
        }
    }
}

impl RepoArgs {
    /// `--repo` as messages show it: never a token typed into it
    /// ([`auth::shown_url`]).
    pub fn shown(&self) -> String {
        auth::shown_url(&self.repo)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.git_timeout.max(1))
    }

    /// Is `--repo` a local git repository (work tree or bare)?
    fn local_dir(&self) -> Option<PathBuf> {
        let p = Path::new(&self.repo);
        if !p.is_dir() {
            return None;
        }
        let git = Git::new("git", p, self.timeout());
        let out = git
            .run(&["rev-parse", "--absolute-git-dir"])
            .ok()
            .map(|o| o.stdout_str().to_owned())?;
        Some(PathBuf::from(out))
    }

    /// Open the grid to read it: in place when it is local, else fetched.
    pub fn open_read(&self) -> Result<Opened, SourceError> {
        let Some(git_dir) = self.local_dir() else {
            return self.open_clone();
        };
        let git = Git::new("git", &git_dir, self.timeout());
        match local_tip(&git, &self.branch).map_err(|source| self.git_err(source))? {
            Some(tip) => Ok(Opened {
                repo: GridRepo::read_only(git, &self.branch).with_read_budget(TOOLS_READ_BUDGET),
                tip: Some(tip),
                _tmp: None,
            }),
            None => Err(SourceError::NoBranch {
                repo: self.shown(),
                branch: self.branch.clone(),
            }),
        }
    }

    /// Open the grid to read it with its history, as checking the claims
    /// of signed results needs (`verify`, `status --roots`): a local
    /// repository as it is (a shallow checkout shows its results as
    /// `unchecked`), a URL cloned and then deepened to its whole history, so
    /// that a URL reads as a path does. (A blobless clone would fetch each
    /// claim file read one by one, a round trip each.)
    pub fn open_read_with_history(&self) -> Result<Opened, SourceError> {
        let opened = self.open_read()?;
        if opened._tmp.is_some() {
            opened.repo.deepen().map_err(|e| self.git_err(e))?;
        }
        Ok(opened)
    }

    /// Open a private clone for a transaction (`txn::run` fetches it each
    /// round). The identity names the tool, so the grid's history says who
    /// made each commit.
    pub fn open_clone_as(&self, who: &str) -> Result<Opened, SourceError> {
        let url = match self.local_dir() {
            // A relative path means nothing from inside the private clone.
            Some(_) => std::fs::canonicalize(&self.repo)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| self.repo.clone()),
            None => self.repo.clone(),
        };
        auth::check_url(&url)
            .map_err(|e| SourceError::Url(format!("--repo {}: {e}", auth::shown_url(&url))))?;
        let tmp = tempfile::Builder::new()
            .prefix("dgrid-tool-")
            .tempdir()
            .map_err(SourceError::Temp)?;
        let access = access()?;
        auth::check_transport(&url, access.token.as_ref())
            .map_err(|e| SourceError::Url(format!("--repo {}: {e}", auth::shown_url(&url))))?;
        let git = Git::new("git", tmp.path().join("grid.git"), self.timeout())
            .with_env(access.env())
            .with_env(Identity::for_node(who).env());
        let repo = GridRepo::open_or_init(git, &url, &self.branch)
            .map_err(|source| self.git_err(source))?
            .with_read_budget(TOOLS_READ_BUDGET);
        let tip = repo.fetch().map_err(|source| self.git_err(source))?;
        Ok(Opened {
            repo,
            tip,
            _tmp: Some(tmp),
        })
    }

    fn open_clone(&self) -> Result<Opened, SourceError> {
        let opened = self.open_clone_as("tools")?;
        if opened.tip.is_none() {
            return Err(SourceError::NoBranch {
                repo: self.shown(),
                branch: self.branch.clone(),
            });
        }
        Ok(opened)
    }

    pub fn git_err(&self, source: GitError) -> SourceError {
        SourceError::Git {
            repo: self.shown(),
            source,
        }
    }
}

/// How the tools reach the grid, from the environment as the worker takes
/// it: the token through the worker's own loader (`GIT_TOKEN`, else
/// `DGRID_TOKEN_FILE`, else the `git-token` credential), and
/// `DGRID_GIT_USERNAME`, `DGRID_CA_FILE`, `DGRID_SSH_KEY_FILE`,
/// `DGRID_KNOWN_HOSTS`. Never a command-line argument (it would show in `ps`).
fn access() -> Result<Access, SourceError> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let file = |var: &'static str| -> Result<Option<PathBuf>, SourceError> {
        let Some(p) = get(var).map(PathBuf::from) else {
            return Ok(None);
        };
        std::fs::File::open(&p).map_err(|source| SourceError::AccessFile {
            var,
            path: p.clone(),
            source,
        })?;
        Ok(Some(p))
    };
    let username = get("DGRID_GIT_USERNAME");
    if username
        .as_deref()
        .is_some_and(|u| u.contains(char::is_control))
    {
        return Err(SourceError::Env {
            var: "DGRID_GIT_USERNAME",
            reason: "contains a control character (a line break?)".into(),
        });
    }
    Ok(Access {
        token: auth::load_token(&get, None)?,
        username,
        ca_file: file("DGRID_CA_FILE")?,
        ssh_key_file: match file("DGRID_SSH_KEY_FILE")? {
            Some(p) => Some(p),
            None => auth::credential_path(&get, auth::SSH_KEY_CREDENTIAL),
        },
        known_hosts: file("DGRID_KNOWN_HOSTS")?,
        // A tool makes a few git calls and exits: nothing to keep open.
        ssh_shared: None,
    })
}

/// The tip of `branch` in a local repository, if it has one: a checkout
/// made by actions/checkout has the branch itself; a clone may only have
/// origin's copy of it.
pub fn local_tip(git: &Git, branch: &str) -> Result<Option<String>, GitError> {
    for r in [
        format!("refs/heads/{branch}"),
        format!("refs/remotes/origin/{branch}"),
    ] {
        let out = git.run_with(&["rev-parse", "--verify", "--quiet", &r], None, &[0, 1])?;
        if out.code == 0 {
            return Ok(Some(out.stdout_str().to_owned()));
        }
    }
    Ok(None)
}
