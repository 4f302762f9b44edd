//! What the engine says, read: its host (cgroups, rootless: are the
//! limits enforced?) and, after a run, whose fault a failure was.

use super::EngineFlavor;
use crate::sandbox::Outcome;

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
pub(super) fn summarize(stderr: &str) -> String {
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
pub(super) fn is_absent_error(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("no such container") || s.contains("already in progress")
}

#[cfg(test)]
mod tests {
    use super::*;

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
