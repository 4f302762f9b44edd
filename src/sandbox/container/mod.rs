//! podman and docker, through their CLIs.
//!
//! The CLIs rather than the engines' HTTP APIs: podman as root has no API
//! service running, both CLIs take the same flags for everything used here,
//! and an operator can reproduce any call by hand.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

mod args;
mod verdict;

pub use args::{STARTED_MARK, engine_run_args, run_args};

use super::supervise::{self, Ended, KillChild, Stopper, engine_failed};
use super::{CancelFlag, Engine, Job, Limits, RunReport, SandboxConfig, SandboxError};
use args::MANAGED_LABEL;
use verdict::{classify_run, is_absent_error, limits_enforced, parse_host, summarize};

/// Bytes kept of a housekeeping call's output: `ps -q` lists 13 bytes per
/// container, `info --format` a line.
const CALL_OUTPUT_CAP: usize = 256 * 1024;

/// How long to let the CLI exit after removing its container before trying
/// the removal again.
const REMOVE_RETRY: Duration = Duration::from_millis(500);

/// Deadline for pulling a missing image at start: images are big, links slow.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Deadline for `--version` when probing which engines are installed; the
/// configured call timeout is not known there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineFlavor {
    Podman,
    Docker,
}

impl EngineFlavor {
    pub fn binary(self) -> &'static str {
        match self {
            EngineFlavor::Podman => "podman",
            EngineFlavor::Docker => "docker",
        }
    }

    /// The CLI is on PATH and answers `--version`. Says nothing about whether
    /// the engine works (docker's daemon may be down): that is `check()`.
    pub fn is_installed(self) -> bool {
        let mut cmd = Command::new(self.binary());
        cmd.arg("--version");
        matches!(
            supervise::run(cmd, PROBE_TIMEOUT, None, 4096, &mut KillChild),
            Ok(f) if f.ended == Ended::Exited(0)
        )
    }

    fn info_args(self) -> [&'static str; 3] {
        match self {
            EngineFlavor::Podman => [
                "info",
                "--format",
                "{{.Host.CgroupsVersion}} {{.Host.Security.Rootless}}",
            ],
            EngineFlavor::Docker => [
                "info",
                "--format",
                "{{.CgroupVersion}} {{json .SecurityOptions}}",
            ],
        }
    }

    fn image_exists_args(self, image: &str) -> Vec<String> {
        match self {
            EngineFlavor::Podman => vec!["image".into(), "exists".into(), image.into()],
            EngineFlavor::Docker => vec!["image".into(), "inspect".into(), image.into()],
        }
    }

    fn rm_args(self, names: &[String]) -> Vec<String> {
        let mut args = vec!["rm".to_string(), "-f".to_string()];
        if self == EngineFlavor::Podman {
            // podman's `rm -f` first stops with SIGTERM and waits 10 s; a
            // task's `sh` is PID 1 and ignores SIGTERM, so that wait would
            // always be spent. docker's `rm -f` kills at once.
            args.extend(["-t".to_string(), "0".to_string()]);
        }
        args.extend(names.iter().cloned());
        args
    }
}

/// Runs tasks in containers through the podman or docker CLI.
pub struct ContainerEngine {
    flavor: EngineFlavor,
    image: String,
    limits: Limits,
    allow_unenforced_limits: bool,
    call_timeout: Duration,
    env: Vec<(OsString, OsString)>,
}

struct CallOutput {
    code: i32,
    stdout: String,
    stderr: String,
}

impl ContainerEngine {
    pub fn new(flavor: EngineFlavor, cfg: &SandboxConfig) -> Self {
        ContainerEngine {
            flavor,
            image: cfg.image.clone(),
            limits: cfg.limits.clone(),
            allow_unenforced_limits: cfg.allow_unenforced_limits,
            call_timeout: cfg.engine_call_timeout,
            env: Vec::new(),
        }
    }

    /// Set an environment variable for every engine CLI call, e.g.
    /// `CONTAINERS_CONF` for podman. Exists so that callers (tests above
    /// all) need not change the whole process's environment, which is unsafe
    /// once threads run.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn flavor(&self) -> EngineFlavor {
        self.flavor
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(self.flavor.binary());
        cmd.args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // systemd's notify socket is the worker's alone: podman's conmon
        // would otherwise send READY=1 for each container to the service.
        cmd.env_remove("NOTIFY_SOCKET");
        // Nor is the grid's token the engine's (its CLI and conmon live as
        // long as the task; the task itself gets only what `--env` gives).
        cmd.env_remove("GIT_TOKEN");
        // Its own process group, so a Ctrl-C meant for the worker does not
        // reach the CLI, which would relay it into the container and end the
        // task behind the worker's back: cancelling is the worker's decision.
        cmd.process_group(0);
        cmd
    }

    /// A housekeeping call with the configured deadline. A non-zero exit is
    /// returned, not an error: callers know which codes mean what.
    fn call<S: AsRef<std::ffi::OsStr>>(
        &self,
        action: &str,
        args: &[S],
    ) -> Result<CallOutput, SandboxError> {
        self.call_within(action, args, self.call_timeout)
    }

    fn call_within<S: AsRef<std::ffi::OsStr>>(
        &self,
        action: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<CallOutput, SandboxError> {
        let err = |reason: String| SandboxError::Call {
            engine: self.name().to_string(),
            action: action.to_string(),
            reason,
        };
        let f = supervise::run(
            self.command(args),
            timeout,
            None,
            CALL_OUTPUT_CAP,
            &mut KillChild,
        )
        .map_err(|e| err(format!("could not start {}: {e}", self.flavor.binary())))?;
        match f.ended {
            Ended::Exited(code) => Ok(CallOutput {
                code,
                stdout: f.stdout.text,
                stderr: f.stderr.text,
            }),
            Ended::TimedOut | Ended::Cancelled => Err(err(format!("no answer within {timeout:?}"))),
        }
    }

    /// Kill and remove containers by name or id; already gone is fine.
    fn force_remove(&self, names: &[String]) -> Result<(), SandboxError> {
        let out = self.call("rm", &self.flavor.rm_args(names))?;
        if out.code == 0 || is_absent_error(&out.stderr) {
            Ok(())
        } else {
            Err(SandboxError::Call {
                engine: self.name().to_string(),
                action: "rm".into(),
                reason: summarize(&out.stderr),
            })
        }
    }

    fn image_missing(&self, why: String) -> SandboxError {
        SandboxError::ImageMissing {
            engine: self.name().to_string(),
            image: self.image.clone(),
            why,
        }
    }

    /// Does the engine still answer (`info`)? Asked right after a started
    /// container's run ended the way an engine failure does.
    fn answers(&self) -> bool {
        matches!(self.call("info", &self.flavor.info_args()), Ok(out) if out.code == 0)
    }

    /// Start one container as a task's, with a task's flags, running
    /// `true`: an engine that answers `info` and holds the image may still
    /// start no container (runc refusing the host's limits), and a node
    /// that trusted `info` alone claimed, failed every start, spent an
    /// attempt of each task, and called itself healthy again a minute
    /// later, round after round.
    fn probe(&self) -> Result<(), SandboxError> {
        let job = Job {
            node_id: "probe".into(),
            task_id: format!("probe-{}", std::process::id()),
            attempt: 1,
            script: "true".into(),
            timeout: self.call_timeout,
            inputs: None,
        };
        let never: super::CancelFlag = Default::default();
        match self.run(&job, &never).outcome {
            super::Outcome::Exited(0) => Ok(()),
            super::Outcome::EngineFailed(why) => {
                Err(self.unusable(format!("it starts no container: {why}")))
            }
            other => Err(self.unusable(format!("a container running `true` ended {other:?}"))),
        }
    }

    fn unusable(&self, reason: String) -> SandboxError {
        SandboxError::Unusable {
            engine: self.name().to_string(),
            reason,
        }
    }
}

/// Keep at most `cap` bytes of `out` (on a character boundary).
fn cut_to(out: &mut super::Captured, cap: usize) {
    if out.text.len() > cap {
        let mut end = cap;
        while !out.text.is_char_boundary(end) {
            end -= 1;
        }
        out.text.truncate(end);
        out.truncated = true;
    }
}

/// Ends a task's container: killing only the CLI would leave the container
/// running (podman) or orphaned in the daemon (docker).
struct RemoveContainer<'a> {
    engine: &'a ContainerEngine,
    name: String,
}

impl RemoveContainer<'_> {
    fn remove(&self) {
        if let Err(e) = self.engine.force_remove(std::slice::from_ref(&self.name)) {
            tracing::warn!(container = %self.name, error = %e, "could not remove container");
        }
    }
}

impl Stopper for RemoveContainer<'_> {
    fn stop(&mut self, child: &mut Child) {
        // Removing the container makes the CLI exit. The removal is repeated
        // until it does, because a CLI stopped early may still be creating
        // the container: the first `rm` then finds nothing, and the container
        // appears just after.
        let deadline = Instant::now() + self.engine.call_timeout;
        loop {
            self.remove();
            match child.wait_timeout(REMOVE_RETRY) {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => continue,
                _ => break,
            }
        }
        tracing::warn!(container = %self.name, "engine CLI did not exit after removal; killing it");
        let _ = child.kill();
        let _ = child.wait();
        // Killed mid-way, the CLI may have left a created container.
        self.remove();
    }
}

impl Engine for ContainerEngine {
    fn name(&self) -> &str {
        self.flavor.binary()
    }

    fn check(&self) -> Result<(), SandboxError> {
        let info = self
            .call("info", &self.flavor.info_args())
            .map_err(|e| self.unusable(e.to_string()))?;
        if info.code != 0 {
            return Err(self.unusable(format!(
                "`{} info` failed: {}",
                self.name(),
                summarize(&info.stderr)
            )));
        }
        let host = parse_host(self.flavor, &info.stdout)
            .map_err(|e| self.unusable(format!("cannot read `{} info`: {e}", self.name())))?;
        if let Err(why) = limits_enforced(&host) {
            if !self.allow_unenforced_limits {
                return Err(SandboxError::LimitsNotEnforced {
                    engine: self.name().to_string(),
                    why,
                });
            }
            tracing::warn!(
                engine = %self.name(),
                %why,
                "memory and pids limits are NOT enforced; running anyway because \
                 sandbox.allow_unenforced_limits is set"
            );
        }

        let image = self
            .call("image", &self.flavor.image_exists_args(&self.image))
            .map_err(|e| self.unusable(e.to_string()))?;
        if image.code == 0 {
            return self.probe();
        }
        // Not here yet: fetch it now, once, rather than let every task fail
        // on it (runs use --pull=never so that a task never waits on one).
        tracing::info!(engine = %self.name(), image = %self.image, "image not present; pulling it");
        let pull = self.call_within("pull", &["pull", self.image.as_str()], PULL_TIMEOUT);
        match pull {
            Ok(out) if out.code == 0 => self.probe(),
            Ok(out) => Err(self.image_missing(format!(
                "`{} pull` failed ({})",
                self.name(),
                summarize(&out.stderr)
            ))),
            Err(e) => Err(self.image_missing(format!("pulling it failed: {e}"))),
        }
    }

    fn remove_leftovers(&self, node_id: &str) -> Result<usize, SandboxError> {
        let node_label = format!("label=dgrid.node={node_id}");
        let managed_label = format!("label={MANAGED_LABEL}");
        let ps = self.call(
            "ps",
            &[
                "ps",
                "-a",
                "-q",
                "--filter",
                &managed_label,
                "--filter",
                &node_label,
            ],
        )?;
        if ps.code != 0 {
            return Err(SandboxError::Call {
                engine: self.name().to_string(),
                action: "ps".into(),
                reason: summarize(&ps.stderr),
            });
        }
        let ids: Vec<String> = ps.stdout.split_whitespace().map(String::from).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        tracing::info!(
            engine = %self.name(),
            count = ids.len(),
            "removing leftover containers"
        );
        self.force_remove(&ids)?;
        Ok(ids.len())
    }

    fn run(&self, job: &Job, cancel: &CancelFlag) -> RunReport {
        // podman 4.3's conmon (runc, cgroup v1) drops an `oom` file into the
        // CLI's working directory when the task is OOM-killed; the worker's
        // own directory (perhaps a git checkout) must not collect them.
        let cwd = match tempfile::Builder::new().prefix("dgrid-engine-").tempdir() {
            Ok(d) => d,
            Err(e) => {
                return engine_failed(format!("cannot create a working directory: {e}"));
            }
        };
        let mut cmd = self.command(&engine_run_args(
            self.flavor,
            job,
            &self.image,
            &self.limits,
        ));
        cmd.current_dir(cwd.path());
        let mut stopper = RemoveContainer {
            engine: self,
            name: job.container_name(),
        };
        // Room for the start mark on top of the task's own cap.
        let cap = self.limits.output_bytes + STARTED_MARK.len();
        match supervise::run(cmd, job.timeout, Some(cancel), cap, &mut stopper) {
            Ok(f) if f.killed_by.is_some() => {
                // The CLI was killed, not the task: its container may run
                // on, outside the slot that counted it.
                stopper.remove();
                engine_failed(format!(
                    "the {} CLI was killed by signal {} while it ran the task",
                    self.flavor.binary(),
                    f.killed_by.unwrap_or_default()
                ))
            }
            Ok(mut f) => {
                let started = f.stdout.text.starts_with(STARTED_MARK);
                if started {
                    f.stdout.text.drain(..STARTED_MARK.len());
                }
                for out in [&mut f.stdout, &mut f.stderr] {
                    cut_to(out, self.limits.output_bytes);
                }
                f.into_report(|code, stderr| classify_run(code, stderr, started, || self.answers()))
            }
            Err(e) => engine_failed(format!("could not start {}: {e}", self.flavor.binary())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_rm_does_not_wait_for_sigterm() {
        let names = ["a".to_string(), "b".to_string()];
        assert_eq!(
            EngineFlavor::Podman.rm_args(&names),
            ["rm", "-f", "-t", "0", "a", "b"]
        );
        assert_eq!(EngineFlavor::Docker.rm_args(&names), ["rm", "-f", "a", "b"]);
    }
}
