//! The sandbox: each task's script runs in a fresh, locked-down container
//! (podman or docker CLI), or, only where an operator asks for it, directly on
//! the host (`shell`, for trusted grids and benchmarks).
//!
//! The worker sees one trait, [`Engine`]; what it gets back is a [`RunReport`]
//! whose [`Outcome`] keeps apart the three things that can happen to a task:
//! the script ran and exited, it hit its timeout, or the engine itself failed
//! (image missing, engine down), which must not be blamed on the task.

mod container;
mod output;
mod shell;
mod supervise;

pub use container::{ContainerEngine, EngineFlavor, STARTED_MARK, engine_run_args, run_args};
pub use output::{CappedOutput, Captured, read_capped};
pub use shell::ShellEngine;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Deserialize;

use crate::time::Timestamp;

/// Which engine runs tasks, as chosen in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// podman if it is installed, else docker.
    #[default]
    Auto,
    Podman,
    Docker,
    /// No isolation at all: the script runs as the worker's user on the host.
    Shell,
}

/// Resource limits and output caps applied to every task.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `--memory` and `--memory-swap` (the same value: no swap).
    pub memory_mb: u64,
    /// `--cpus`.
    pub cpus: f64,
    /// `--pids-limit`.
    pub pids: u32,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    pub output_bytes: usize,
}

/// The sandbox's defaults (worker.toml's `[sandbox]`): enough for a script
/// in python, not enough for one to starve the host.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 256,
            cpus: 1.0,
            pids: 128,
            output_bytes: 10 * 1024,
        }
    }
}

/// Everything an engine needs to know to be constructed.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub engine: EngineKind,
    /// Image the container engines run (ignored by `shell`).
    pub image: String,
    pub limits: Limits,
    /// Start even where the engine would silently ignore memory/pids limits
    /// (rootless podman on cgroup v1). Off by default: refuse instead.
    pub allow_unenforced_limits: bool,
    /// Deadline for engine housekeeping calls (`podman info`, `rm`, `kill`).
    pub engine_call_timeout: Duration,
}

/// One run of one task.
#[derive(Debug, Clone)]
pub struct Job {
    pub node_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub script: String,
    pub timeout: Duration,
    /// A directory of files the task reads (the results of the tasks it
    /// runs after, `<id>.json`): mounted read-only at [`INPUTS_DIR`] in a
    /// container, named by `DGRID_INPUTS` in the environment.
    pub inputs: Option<std::path::PathBuf>,
}

/// Where a task's inputs are inside its container.
pub const INPUTS_DIR: &str = "/inputs";
/// The environment variable that names the inputs' directory to a task.
pub const INPUTS_ENV: &str = "DGRID_INPUTS";

impl Job {
    /// The container name: derived from node, task and attempt so that a
    /// restarted worker can find and remove what a crash left behind, and two
    /// nodes on one host never collide (`layout::container_name` keeps it
    /// one-to-one for ids holding `-`).
    pub fn container_name(&self) -> String {
        crate::grid::layout::container_name(&self.node_id, &self.task_id, self.attempt)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The script ran and exited with this code (128+N when killed by signal N,
    /// as the engines report it, e.g. 137 after the OOM killer).
    Exited(i32),
    /// The script was still running at its timeout; the container was killed
    /// and removed.
    TimedOut,
    /// The run was cancelled by the worker (shutdown); the container was
    /// killed and removed. The task goes back to the queue.
    Cancelled,
    /// The engine could not run the task at all (image missing, engine down,
    /// bad flags): its container never started, or the engine stopped
    /// answering while it ran. Nothing a task prints or exits with can make
    /// this (see `classify_run`). The task goes back to the queue as its next
    /// attempt (so that no task is retried for ever) and the node reports
    /// itself unhealthy.
    EngineFailed(String),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
    /// True when either stream was longer than the cap.
    pub truncated: bool,
    pub started_at: Timestamp,
    pub duration: Duration,
}

/// Set to true to make a running [`Engine::run`] kill its task and return
/// [`Outcome::Cancelled`] promptly (within about 100 ms plus engine time).
pub type CancelFlag = Arc<AtomicBool>;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no container engine found: install podman or docker, or set sandbox.engine")]
    NoEngine,
    #[error("{engine} is not usable: {reason}")]
    Unusable { engine: String, reason: String },
    /// The engine works, but the task image is not there and could not be
    /// pulled: an operator loads it (this host has no registry to pull from).
    #[error(
        "{engine}: image {image} is not present locally and {why}: build, load or pull it \
         on this machine"
    )]
    ImageMissing {
        engine: String,
        image: String,
        why: String,
    },
    #[error(
        "{engine} would not enforce the memory and pids limits here ({why}); \
         refusing to run untrusted tasks. Run rootful, move to cgroup v2, or set \
         sandbox.allow_unenforced_limits = true to accept this"
    )]
    LimitsNotEnforced { engine: String, why: String },
    #[error("{engine} {action} failed: {reason}")]
    Call {
        engine: String,
        action: String,
        reason: String,
    },
}

/// A way to run a task's script.
pub trait Engine: Send + Sync {
    /// Short name for logs and the node record: `podman`, `docker`, `shell`.
    fn name(&self) -> &str;

    /// Startup check: the engine answers, the image is present, and the limits
    /// would be enforced (or the operator opted out). Cheap enough to run at
    /// every start and from `dgrid-worker check`.
    fn check(&self) -> Result<(), SandboxError>;

    /// Remove every container this node left behind (found by label), e.g.
    /// after a crash. Returns how many were removed.
    fn remove_leftovers(&self, node_id: &str) -> Result<usize, SandboxError>;

    /// Run one job to its end, its timeout, or cancellation. Never panics on
    /// engine trouble: that is reported as [`Outcome::EngineFailed`].
    fn run(&self, job: &Job, cancel: &CancelFlag) -> RunReport;
}

/// Build the engine the configuration asks for. `auto` prefers podman, then
/// docker; it never falls back to `shell`.
pub fn engine_from_config(cfg: &SandboxConfig) -> Result<Box<dyn Engine>, SandboxError> {
    match cfg.engine {
        EngineKind::Shell => Ok(Box::new(ShellEngine::new(cfg.limits.clone()))),
        EngineKind::Podman => Ok(Box::new(ContainerEngine::new(EngineFlavor::Podman, cfg))),
        EngineKind::Docker => Ok(Box::new(ContainerEngine::new(EngineFlavor::Docker, cfg))),
        EngineKind::Auto => [EngineFlavor::Podman, EngineFlavor::Docker]
            .into_iter()
            .find(|f| f.is_installed())
            .map(|f| Box::new(ContainerEngine::new(f, cfg)) as Box<dyn Engine>)
            .ok_or(SandboxError::NoEngine),
    }
}
