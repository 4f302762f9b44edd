//! The `shell` engine: the script runs directly on the host, as the worker's
//! user. For trusted grids and benchmarks only; it isolates nothing. What it
//! does keep: a fresh working directory, a scrubbed environment, the timeout,
//! cancellation and the output cap, and no processes outliving the task.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::supervise::{self, Stopper, engine_failed};
use super::{CancelFlag, Engine, Job, Limits, Outcome, RunReport, SandboxError};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub struct ShellEngine {
    limits: Limits,
}

impl ShellEngine {
    pub fn new(limits: Limits) -> Self {
        tracing::warn!(
            "sandbox engine is `shell`: task scripts run on this host as the worker's user \
             with NO isolation (no container, no network or filesystem restrictions, no \
             memory or pids limits). Use it only for grids whose every task is trusted."
        );
        ShellEngine { limits }
    }
}

/// Kills the script's whole process group: killing only `sh` would leave
/// whatever it started in the background running, and holding the output
/// pipes open.
struct KillGroup;

impl KillGroup {
    fn kill(child: &Child) {
        let Ok(pid) = i32::try_from(child.id()) else {
            return;
        };
        // ESRCH (the group is already empty) is the normal case after exit.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

impl Stopper for KillGroup {
    fn stop(&mut self, child: &mut Child) {
        Self::kill(child);
    }

    // Background processes are killed when the script ends, like a
    // container's are when its init exits. The kernel does not reuse a pid
    // while it is still some live process's group id, so this cannot hit a
    // stranger's group while a member of the task's is left.
    fn after_exit(&mut self, child: &Child) {
        Self::kill(child);
    }
}

impl Engine for ShellEngine {
    fn name(&self) -> &str {
        "shell"
    }

    fn check(&self) -> Result<(), SandboxError> {
        Ok(())
    }

    fn remove_leftovers(&self, _node_id: &str) -> Result<usize, SandboxError> {
        Ok(0)
    }

    fn run(&self, job: &Job, cancel: &CancelFlag) -> RunReport {
        let dir = match tempfile::Builder::new()
            .prefix(&format!("dgrid-{}-", job.task_id))
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => return engine_failed(format!("cannot create a working directory: {e}")),
        };
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&job.script)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.path())
            .env("TASK_ID", &job.task_id)
            // Its own group, so that the kill reaches everything the script
            // started, and the worker's terminal signals do not.
            .process_group(0);
        if let Some(inputs) = &job.inputs {
            cmd.env(super::INPUTS_ENV, inputs);
        }
        let report = match supervise::run(
            cmd,
            job.timeout,
            Some(cancel),
            self.limits.output_bytes,
            &mut KillGroup,
        ) {
            // No engine in between: every exit code is the script's.
            Ok(f) => f.into_report(|code, _| Outcome::Exited(code)),
            Err(e) => engine_failed(format!("could not start sh: {e}")),
        };
        if let Err(e) = dir.close() {
            tracing::warn!(task = %job.task_id, error = %e, "could not remove task directory");
        }
        report
    }
}
