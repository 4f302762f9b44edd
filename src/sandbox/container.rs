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

use super::supervise::{self, Ended, KillChild, Stopper, engine_failed};
use super::{
    CancelFlag, Engine, INPUTS_DIR, INPUTS_ENV, Job, Limits, Outcome, RunReport, SandboxConfig,
    SandboxError,
};

/// The label every container this crate starts carries, so that leftovers
/// can be found and removed after a crash.
const MANAGED_LABEL: &str = "dgrid.managed=true";

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

/// The `run` arguments for one job (everything after the binary name).
///
/// Beyond the flags DESIGN.md lists: `--pull=never`, because there is no
/// registry and an engine that tries one turns a missing image into a long
/// network wait; `--log-driver=none`, because the output is streamed through
/// the attached CLI and capped there, and docker's default json-file driver
/// would also write all of it to disk.
pub fn run_args(job: &Job, image: &str, limits: &Limits) -> Vec<String> {
    let memory = format!("{}m", limits.memory_mb);
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--name",
        &job.container_name(),
        "--label",
        MANAGED_LABEL,
        "--label",
        &format!("dgrid.node={}", job.node_id),
        "--label",
        &format!("dgrid.task={}", job.task_id),
        "--network=none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "1000:1000",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--pids-limit",
        &limits.pids.to_string(),
        "--memory",
        &memory,
        "--memory-swap",
        &memory,
        "--cpus",
        &limits.cpus.to_string(),
        "--pull=never",
        "--log-driver=none",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(dir) = &job.inputs {
        // Read-only, a bind of a directory the worker wrote for this run
        // alone: the task reads its inputs and can change nothing of the
        // host's. Its path is the worker's own (state directory, task id):
        // no `,` that --mount would split on.
        args.push("--mount".into());
        args.push(format!(
            "type=bind,source={},target={INPUTS_DIR},readonly",
            dir.display()
        ));
        args.push("--env".into());
        args.push(format!("{INPUTS_ENV}={INPUTS_DIR}"));
    }
    args.extend(
        [image, "sh", "-c", START_WRAPPER, "sh", &job.script]
            .into_iter()
            .map(String::from),
    );
    args
}

/// What the container's shell prints on stdout before anything of the task
/// runs: proof that the engine created and started the container and ran
/// its command. A task can print it too, but only once it runs, i.e. once
/// it is proven; and it can never take back the first one. Stripped from
/// the output the grid keeps.
pub const STARTED_MARK: &str = "\u{1e}dgrid-started\u{1e}";

/// The container's command: print [`STARTED_MARK`], then become the task's
/// own shell (`exec`: still PID 1, nothing of the worker's stays around).
const START_WRAPPER: &str = "printf '\\036dgrid-started\\036'; exec sh -c \"$1\"";

/// [`run_args`] as `flavor` takes them. podman also gets `--timeout`, so
/// that conmon (outside the container, beyond the task's reach) kills and
/// removes the container a little after the task's timeout even if the
/// worker is SIGKILLed and never comes back: the worker's own deadline
/// comes first in every other case. docker has no such flag (`--stop-timeout`
/// is only the grace period of a `docker stop`), and a `timeout` wrapper
/// inside the container would run as the task's own user, within its reach
/// (ptrace), and only in images that have one: with docker a killed
/// worker's containers run until it restarts and removes them.
pub fn engine_run_args(
    flavor: EngineFlavor,
    job: &Job,
    image: &str,
    limits: &Limits,
) -> Vec<String> {
    let mut args = run_args(job, image, limits);
    if flavor == EngineFlavor::Podman {
        let bound = job
            .timeout
            .as_secs()
            .saturating_add(ENGINE_TIMEOUT_SLACK.as_secs());
        args.insert(1, format!("--timeout={bound}"));
    }
    args
}

/// How long after the task's timeout the engine's own bound strikes: time
/// for the worker's deadline (which starts before the container does) to
/// come first and report a timeout, whatever the load.
const ENGINE_TIMEOUT_SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cgroups {
    V1,
    V2,
    Unknown(String),
}

/// What `info` says about where the engine runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Host {
    pub cgroups: Cgroups,
    pub rootless: bool,
}

/// Parse the one line `info --format` printed (see [`EngineFlavor::info_args`]).
pub(super) fn parse_host(flavor: EngineFlavor, line: &str) -> Result<Host, String> {
    let line = line.trim();
    // docker's client prints empty or `<no value>` fields when it got no
    // server information.
    if line.is_empty() || line.starts_with("<no value>") {
        return Err(format!("no host information in {line:?}"));
    }
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    let cgroups = match version {
        "v1" | "1" => Cgroups::V1,
        "v2" | "2" => Cgroups::V2,
        other => Cgroups::Unknown(other.to_string()),
    };
    let rootless = match flavor {
        EngineFlavor::Podman => match rest.trim() {
            "true" => true,
            "false" => false,
            other => return Err(format!("unexpected rootless value {other:?}")),
        },
        // e.g. ["name=seccomp,profile=default","name=rootless"]
        EngineFlavor::Docker => rest.contains("name=rootless"),
    };
    Ok(Host { cgroups, rootless })
}

/// Whether `--memory` and `--pids-limit` would be enforced; `Err(why)` if not.
///
/// Rootless engines on cgroup v1 cannot create cgroups (v1 has no delegation
/// to unprivileged users), so they run the container without limits and only
/// print a warning. Rootful engines enforce on both versions. Rootless on v2
/// enforces where the memory and pids controllers are delegated (the systemd
/// default); that is not verified here.
pub(super) fn limits_enforced(host: &Host) -> Result<(), String> {
    match (&host.cgroups, host.rootless) {
        (_, false) | (Cgroups::V2, true) => Ok(()),
        (Cgroups::V1, true) => Err("rootless on cgroup v1".into()),
        (Cgroups::Unknown(v), true) => Err(format!("rootless on unknown cgroup version {v:?}")),
    }
}

/// A line the engine CLI itself printed about its own failure, as opposed to
/// the task's stderr that the CLI relays.
fn is_engine_error_line(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("Error:") // podman
        || l.starts_with("Error response from daemon")
        || l.starts_with("docker: ")
        || l.starts_with("Cannot connect to the Docker daemon")
}

/// Map a finished `<engine> run` to an outcome, by what a task cannot forge:
/// whether its container started (the [`STARTED_MARK`] came first on
/// stdout), and, for a started one whose engine seems to have failed under
/// it, whether the engine still answers (`engine_ok`, asked only then).
///
/// - Never started: the task never ran, so nothing in the output is its
///   doing; an engine-looking failure is the engine's.
/// - Started: its exit code and stderr are the task's, whatever they say
///   (`Error: runc: ...` and exit 125 are one `printf` and `exit` away);
///   only an engine that no longer answers makes it an engine failure.
pub(super) fn classify_run(
    code: i32,
    stderr: &str,
    started: bool,
    engine_ok: impl FnOnce() -> bool,
) -> Outcome {
    match classify_exit(code, stderr) {
        Outcome::EngineFailed(why) if !started || !engine_ok() => Outcome::EngineFailed(why),
        Outcome::EngineFailed(_) => Outcome::Exited(code),
        other => other,
    }
}

/// Map the exit code of `<engine> run` to an outcome by code and stderr
/// alone (see [`classify_run`] for what settles it).
///
/// Both engines exit 125 when they could not run the container (image
/// missing, bad flags, engine down), and 126/127 when the runtime could not
/// exec the command (no `sh` in the image). But the task's own exit code is
/// passed through unchanged, so `exit 125` or a `sh: foo: not found` (127) in a
/// script look the same by code alone. Blaming the engine for a task's failure
/// would make every node that picks the task report itself unhealthy, so the
/// code only counts as the engine's when the engine also said so on stderr:
/// both print an `Error...` line on such failures, and for 126/127 an OCI
/// runtime message. A script could print such a line itself: this is only
/// the first look, [`classify_run`] the verdict.
pub(super) fn classify_exit(code: i32, stderr: &str) -> Outcome {
    let engine_lines: Vec<&str> = stderr.lines().filter(|l| is_engine_error_line(l)).collect();
    let runtime_exec_failed = engine_lines.iter().any(|l| {
        l.contains("OCI runtime")
            || l.contains("unable to start container process")
            || l.contains("executable file not found")
    });
    match code {
        125 if !engine_lines.is_empty() => Outcome::EngineFailed(summarize(stderr)),
        126 | 127 if runtime_exec_failed => Outcome::EngineFailed(summarize(stderr)),
        c => Outcome::Exited(c),
    }
}

/// A one-line digest of an engine's stderr for logs and the node record.
fn summarize(stderr: &str) -> String {
    const MAX: usize = 500;
    let mut s = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Run '") && !l.starts_with("See '"))
        .collect::<Vec<_>>()
        .join("; ");
    if s.is_empty() {
        s = "no error message".into();
    }
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The engine said the container was not there: fine when removing it.
fn is_absent_error(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("no such container") || s.contains("already in progress")
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

    /// Does the engine still answer (`info`)? Asked right after a started
    /// container's run ended the way an engine failure does.
    fn answers(&self) -> bool {
        matches!(self.call("info", &self.flavor.info_args()), Ok(out) if out.code == 0)
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
                engine = self.name(),
                %why,
                "memory and pids limits are NOT enforced; running anyway because \
                 sandbox.allow_unenforced_limits is set"
            );
        }

        let image = self
            .call("image", &self.flavor.image_exists_args(&self.image))
            .map_err(|e| self.unusable(e.to_string()))?;
        if image.code == 0 {
            return Ok(());
        }
        // Not here yet: fetch it now, once, rather than let every task fail
        // on it (runs use --pull=never so that a task never waits on one).
        tracing::info!(engine = self.name(), image = %self.image, "image not present; pulling it");
        let pull = self.call_within("pull", &["pull", self.image.as_str()], PULL_TIMEOUT);
        match pull {
            Ok(out) if out.code == 0 => Ok(()),
            Ok(out) => Err(self.unusable(format!(
                "image {} is not present locally and `{} pull` failed ({}): build, load or \
                 pull it on this machine",
                self.image,
                self.name(),
                summarize(&out.stderr)
            ))),
            Err(e) => Err(self.unusable(format!(
                "image {} is not present locally and pulling it failed: {e}",
                self.image
            ))),
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
            engine = self.name(),
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

    fn job() -> Job {
        Job {
            node_id: "n1".into(),
            task_id: "t-42".into(),
            attempt: 2,
            script: "echo 'hi there'; exit 3".into(),
            timeout: Duration::from_secs(60),
            inputs: None,
        }
    }

    #[test]
    fn run_args_carry_every_isolation_flag() {
        let limits = Limits {
            memory_mb: 64,
            cpus: 0.5,
            pids: 32,
            output_bytes: 100,
        };
        let args = run_args(&job(), "localhost/img:1", &limits);
        let expected: Vec<String> = [
            "run",
            "--rm",
            "--name",
            "dgrid-2-n1-t-42-2",
            "--label",
            "dgrid.managed=true",
            "--label",
            "dgrid.node=n1",
            "--label",
            "dgrid.task=t-42",
            "--network=none",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--user",
            "1000:1000",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--pids-limit",
            "32",
            "--memory",
            "64m",
            "--memory-swap",
            "64m",
            "--cpus",
            "0.5",
            "--pull=never",
            "--log-driver=none",
            "localhost/img:1",
            "sh",
            "-c",
            START_WRAPPER,
            "sh",
            "echo 'hi there'; exit 3",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(args, expected);
    }

    #[test]
    fn inputs_are_mounted_read_only_and_named_in_the_environment() {
        let mut j = job();
        j.inputs = Some("/var/lib/dgrid-worker/inputs/t-42-2".into());
        let args = run_args(&j, "i", &Limits::default());
        let plain = run_args(&job(), "i", &Limits::default());
        // Every isolation flag as before, the mount and variable added
        // before the image.
        let image = args.iter().position(|a| a == "i").unwrap();
        assert_eq!(
            args[image - 4..image],
            [
                "--mount",
                "type=bind,source=/var/lib/dgrid-worker/inputs/t-42-2,target=/inputs,readonly",
                "--env",
                "DGRID_INPUTS=/inputs",
            ]
        );
        let mut without: Vec<String> = args.clone();
        without.drain(image - 4..image);
        assert_eq!(without, plain);
    }

    #[test]
    fn podman_bounds_the_run_itself() {
        let args = engine_run_args(EngineFlavor::Podman, &job(), "i", &Limits::default());
        assert_eq!(args[..2], ["run", "--timeout=70"]);
        let args = engine_run_args(EngineFlavor::Docker, &job(), "i", &Limits::default());
        assert_eq!(args, run_args(&job(), "i", &Limits::default()));
    }

    #[test]
    fn a_started_task_cannot_pose_as_the_engine() {
        let forged = "Error: runc: container init failed\n";
        // It ran: its exit code is its own, however it reads.
        assert_eq!(
            classify_run(125, forged, true, || true),
            Outcome::Exited(125)
        );
        // The engine never started it: the engine failed.
        assert!(matches!(
            classify_run(125, forged, false, || true),
            Outcome::EngineFailed(_)
        ));
        // It ran, and the engine no longer answers: the engine died under it.
        assert!(matches!(
            classify_run(125, forged, true, || false),
            Outcome::EngineFailed(_)
        ));
        // The probe is only asked when it matters.
        assert_eq!(
            classify_run(1, "", true, || panic!("not asked")),
            Outcome::Exited(1)
        );
    }

    #[test]
    fn whole_cpus_print_without_fraction() {
        let args = run_args(&job(), "i", &Limits::default());
        let i = args.iter().position(|a| a == "--cpus").unwrap();
        assert_eq!(args[i + 1], "1");
    }

    #[test]
    fn podman_rm_does_not_wait_for_sigterm() {
        let names = ["a".to_string(), "b".to_string()];
        assert_eq!(
            EngineFlavor::Podman.rm_args(&names),
            ["rm", "-f", "-t", "0", "a", "b"]
        );
        assert_eq!(EngineFlavor::Docker.rm_args(&names), ["rm", "-f", "a", "b"]);
    }

    #[test]
    fn parses_podman_info() {
        let h = parse_host(EngineFlavor::Podman, "v1 false\n").unwrap();
        assert_eq!(
            h,
            Host {
                cgroups: Cgroups::V1,
                rootless: false
            }
        );
        let h = parse_host(EngineFlavor::Podman, "v2 true").unwrap();
        assert_eq!(h.cgroups, Cgroups::V2);
        assert!(h.rootless);
        assert!(parse_host(EngineFlavor::Podman, "v1 maybe").is_err());
    }

    #[test]
    fn parses_docker_info() {
        let h = parse_host(EngineFlavor::Docker, "1 [\"name=seccomp,profile=default\"]").unwrap();
        assert_eq!(h.cgroups, Cgroups::V1);
        assert!(!h.rootless);
        let h = parse_host(
            EngineFlavor::Docker,
            "2 [\"name=seccomp,profile=default\",\"name=rootless\",\"name=cgroupns\"]",
        )
        .unwrap();
        assert_eq!(h.cgroups, Cgroups::V2);
        assert!(h.rootless);
        assert!(parse_host(EngineFlavor::Docker, "").is_err());
        assert!(parse_host(EngineFlavor::Docker, "<no value> null").is_err());
    }

    #[test]
    fn limits_decision() {
        let host = |cgroups, rootless| Host { cgroups, rootless };
        assert!(limits_enforced(&host(Cgroups::V1, false)).is_ok());
        assert!(limits_enforced(&host(Cgroups::V2, false)).is_ok());
        assert!(limits_enforced(&host(Cgroups::V2, true)).is_ok());
        assert!(limits_enforced(&host(Cgroups::V1, true)).is_err());
        assert!(limits_enforced(&host(Cgroups::Unknown("v3".into()), true)).is_err());
        assert!(limits_enforced(&host(Cgroups::Unknown("v3".into()), false)).is_ok());
    }

    #[test]
    fn engine_errors_are_told_from_task_failures() {
        // Real messages from podman 4.3 and docker 20.10 on this machine.
        let podman_missing = "Error: localhost/dgrid-busybox:nope: image not known\n";
        let docker_missing = "docker: Error response from daemon: No such image: x:y\n\n\
                              Run 'docker run --help' for more information\n";
        let podman_no_sh = "Error: runc: runc create failed: unable to start container \
                            process: exec: \"sh\": executable file not found in $PATH: \
                            OCI runtime attempted to invoke a command that was not found\n";
        let docker_no_sh = "docker: Error response from daemon: failed to create shim task: \
                            OCI runtime create failed: runc create failed: unable to start \
                            container process: exec: \"sh\": executable file not found in \
                            $PATH: unknown.\n";
        assert!(
            matches!(classify_exit(125, podman_missing), Outcome::EngineFailed(m) if m.contains("image not known"))
        );
        assert!(
            matches!(classify_exit(125, docker_missing), Outcome::EngineFailed(m) if !m.contains("Run '"))
        );
        assert!(matches!(
            classify_exit(127, podman_no_sh),
            Outcome::EngineFailed(_)
        ));
        assert!(matches!(
            classify_exit(127, docker_no_sh),
            Outcome::EngineFailed(_)
        ));
        assert!(matches!(
            classify_exit(126, podman_no_sh),
            Outcome::EngineFailed(_)
        ));

        // The task's own codes pass through.
        assert_eq!(classify_exit(125, ""), Outcome::Exited(125));
        assert_eq!(
            classify_exit(127, "sh: nosuch: not found\n"),
            Outcome::Exited(127)
        );
        assert_eq!(
            classify_exit(126, "sh: ./x: Permission denied\n"),
            Outcome::Exited(126)
        );
        assert_eq!(classify_exit(0, ""), Outcome::Exited(0));
        assert_eq!(classify_exit(137, ""), Outcome::Exited(137));
        // An engine-looking line is not enough for ordinary codes.
        assert_eq!(classify_exit(1, "Error: something\n"), Outcome::Exited(1));
    }

    #[test]
    fn summary_is_bounded_and_on_one_line() {
        let long = "Error: ".to_string() + &"é".repeat(1000);
        let s = summarize(&long);
        assert!(s.len() <= 504);
        assert!(!s.contains('\n'));
        assert_eq!(summarize("\n\n"), "no error message");
    }
}
