//! `dgrid-worker init DIR`: a new grid repository with the layout and the
//! workflows, as its first commit on `main`.
//!
//! The workflows are this project's own `.github/` files, compiled in, so a
//! new grid gets exactly the workflows whose steps this project tests. The
//! only thing that differs per grid is where the workflows build
//! dgrid-worker from (`--worker-git`, `--worker-ref`); a repository variable
//! of the same name overrides it later without editing the files.

use std::path::{Path, PathBuf};

use crate::grid::layout;

pub const VALIDATE_WORKFLOW: &str = include_str!("../../.github/workflows/validate-tasks.yml");
pub const GRID_WORKFLOW: &str = include_str!("../../.github/workflows/grid.yml");
pub const INSTALL_ACTION: &str =
    include_str!("../../.github/actions/install-dgrid-worker/action.yml");

/// The values the workflows ship with, replaced by `init`'s options.
pub const DEFAULT_WORKER_GIT: &str = "https://github.com/example/dgrid-worker.git";
pub const DEFAULT_WORKER_REF: &str = "main";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}: already exists and is not empty; a grid is created in a new or empty directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--{option} {value:?}: {reason}")]
    BadOption {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

pub struct InitOptions {
    pub worker_git: String,
    pub worker_ref: String,
    /// A bare repository (to serve or push from), not a checkout.
    pub bare: bool,
}

/// The files of a new grid: path -> content.
pub fn files(opts: &InitOptions) -> Result<Vec<(String, String)>, InitError> {
    // The values land inside a single-quoted YAML expression string: keep
    // them to characters that cannot end it or start anything else.
    let safe = |option: &'static str, v: &str| {
        let ok = !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~:/@+=".contains(c));
        if ok {
            Ok(())
        } else {
            Err(InitError::BadOption {
                option,
                value: v.to_owned(),
                reason: "use only letters, digits and - . _ ~ : / @ + =",
            })
        }
    };
    safe("worker-git", &opts.worker_git)?;
    safe("worker-ref", &opts.worker_ref)?;
    let configure = |text: &str| {
        text.replace(
            &format!("'{DEFAULT_WORKER_GIT}'"),
            &format!("'{}'", opts.worker_git),
        )
        .replace(
            &format!("vars.DGRID_WORKER_REF || '{DEFAULT_WORKER_REF}'"),
            &format!("vars.DGRID_WORKER_REF || '{}'", opts.worker_ref),
        )
    };
    let mut out: Vec<(String, String)> = [
        layout::QUEUE,
        layout::LANES,
        layout::BLOCKED,
        layout::IN_PROGRESS,
        layout::COMPLETED,
        layout::FAILED,
        layout::NODES,
    ]
    .iter()
    .map(|d| (format!("{d}/{}", layout::KEEP_FILE), String::new()))
    .collect();
    out.push(("README.md".into(), README.into()));
    out.push((
        ".github/workflows/validate-tasks.yml".into(),
        configure(VALIDATE_WORKFLOW),
    ));
    out.push((
        ".github/workflows/grid.yml".into(),
        configure(GRID_WORKFLOW),
    ));
    out.push((
        ".github/actions/install-dgrid-worker/action.yml".into(),
        INSTALL_ACTION.into(),
    ));
    Ok(out)
}

const README: &str = "# A D-GRID grid

This repository is a task grid's database. Its `main` branch holds:

```
nodes/<node_id>.json                          node records and heartbeats
tasks/queue/<task_id>.json                    the inbox: submitted by hand, not filed yet
tasks/lanes/p<NN>/<class>/<batch>/<task_id>.json   queued, by priority and labels
tasks/blocked/<parent>/<task_id>.json         waiting for the tasks it runs after
tasks/in_progress/<task_id>.json              claimed by a node
tasks/completed/<node_id>@<task_id>.json      results, exit code 0
tasks/failed/<node_id>@<task_id>.json         failed, timed out, invalid or abandoned
```

Submit a task with `dgrid-worker submit --repo URL --script 'echo hi' --timeout 30`
(`--priority`, `--requires LABEL`, `--after ID`; a graph of tasks from one
file with `--task-file`), or by pull request adding `tasks/queue/<task_id>.json`:
`{\"task_id\": \"<task_id>\", \"script\": \"...\", \"timeout_seconds\": 30}`,
with `priority` (0-99), `requires` and `after` if it needs them; the first
node to see it files it into its lane. The `Validate tasks` workflow checks
it with the workers' own rules.

`Grid maintenance` requeues orphaned claims and publishes the dashboard to
GitHub Pages (Settings > Pages > Source: GitHub Actions). Both build
dgrid-worker with cargo from the repository variable `DGRID_WORKER_GIT` (at
`DGRID_WORKER_REF`), else from the URL written into the workflows.
";

/// git in `dir`, through the crate's one way of running it (a timeout, no
/// prompts, a fixed identity).
fn git(dir: &Path, args: &[&str]) -> Result<(), InitError> {
    crate::git::Git::new(
        crate::config::defaults::GIT_BINARY,
        dir,
        std::time::Duration::from_secs(crate::config::defaults::GIT_TIMEOUT_SECS),
    )
    .with_env(crate::git::txn::Identity::for_node("init").env())
    .run(args)?;
    Ok(())
}

/// Create the grid at `dir`.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<(), InitError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InitError::Io { path, source }
    };
    let files = files(opts)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(InitError::NotEmpty(dir.to_owned()));
        }
    }
    // A bare grid is made as a checkout beside it, then cloned bare: one
    // code path for the content, and git's own way of making a bare copy.
    let scratch;
    let work = if opts.bare {
        scratch = tempfile::tempdir().map_err(io(dir))?;
        scratch.path().join("grid")
    } else {
        dir.to_owned()
    };
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    git(&work, &["init", "--quiet", "-b", "main"])?;
    for (path, content) in &files {
        let p = work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, content).map_err(io(&p))?;
    }
    git(&work, &["add", "-A"])?;
    git(
        &work,
        &["commit", "--quiet", "-m", "New grid: layout and workflows"],
    )?;
    if opts.bare {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let target = dir.to_string_lossy().into_owned();
        let source = work.to_string_lossy().into_owned();
        git(
            Path::new("."),
            &["clone", "--quiet", "--bare", "--no-local", &source, &target],
        )?;
        git(dir, &["remote", "remove", "origin"])?;
        // A server that checks what is pushed refuses the trees only a
        // hand-built push holds (a name twice, a file in front of a
        // directory of its name, a name of 64 KiB): git-daemon and SSH
        // serve with receive-pack, which reads this. Forges check already.
        git(dir, &["config", "receive.fsckObjects", "true"])?;
    }
    Ok(())
}
