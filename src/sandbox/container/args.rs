//! The `run` command line of a task's container: every isolation flag, the
//! start mark that tells the task's failures from the engine's, and
//! podman's own bound on a container whose worker died.

use std::time::Duration;

use super::EngineFlavor;
use crate::sandbox::{INPUTS_DIR, INPUTS_ENV, Job, Limits};

/// The label every container this crate starts carries, so that leftovers
/// can be found and removed after a crash.
pub(super) const MANAGED_LABEL: &str = "dgrid.managed=true";

/// The `run` arguments for one job (everything after the binary name).
///
/// Beyond the sandbox flags in README (The sandbox): `--pull=never`, because there is no
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
        // podman's `--read-only` mounts writable tmpfs on /run and
        // /var/tmp as well as /tmp unless told not to; docker's does not.
        // Only /tmp (and /dev/shm, on both) is writable, so that a task
        // behaves alike on either engine.
        args.insert(1, "--read-only-tmpfs=false".to_owned());
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
    fn podman_bounds_the_run_itself() {
        let args = engine_run_args(EngineFlavor::Podman, &job(), "i", &Limits::default());
        assert_eq!(
            args[..3],
            ["run", "--timeout=70", "--read-only-tmpfs=false"]
        );
        let args = engine_run_args(EngineFlavor::Docker, &job(), "i", &Limits::default());
        assert_eq!(args, run_args(&job(), "i", &Limits::default()));
    }

    #[test]
    fn whole_cpus_print_without_fraction() {
        let args = run_args(&job(), "i", &Limits::default());
        let i = args.iter().position(|a| a == "--cpus").unwrap();
        assert_eq!(args[i + 1], "1");
    }
}
