//! A git child's lifetime: it starts in a process group of its own, so
//! that a call past its timeout is ended whole.

/// Each git child starts as the leader of a new process group: git runs
/// its remote helpers (`git-remote-https`) and `ssh` (through `sh -c`) as
/// children of its own, and a kill of git alone left them running, held
/// by a server that never answers (a tester counted 25 stray ssh
/// processes from one worker in 12 minutes).
pub(super) fn own_group(expr: duct::Expression) -> duct::Expression {
    expr.before_spawn(|cmd| {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Ok(())
    })
}

/// SIGKILL the process group a child of [`own_group`] leads, whose pid is
/// the first of `pids`: git, its helpers and its ssh. Called only while
/// the child is not yet reaped, so the group's id is still its own.
pub(super) fn kill_group(pids: &[u32]) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(&pid) = pids.first()
        && let Ok(pid) = i32::try_from(pid)
    {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use crate::git::{Git, GitError};

    /// Is `pid` gone (or a zombie, which only its new parent can reap)?
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    /// A git whose ssh is `script`, which notes its pid in `pid_file` and
    /// then waits for ever, as an ssh to a server that never answers.
    fn git_with_hung_ssh(dir: &Path, pid_file: &Path) -> Git {
        let script = dir.join("hung-ssh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ >{}\nexec sleep 600\n",
                pid_file.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = dir.join("r.git");
        Git::new("git", dir, Duration::from_secs(30))
            .run(&["init", "-q", "--bare", &repo.display().to_string()])
            .unwrap();
        Git::new("git", repo, Duration::from_secs(2)).with_env(vec![(
            "GIT_SSH_COMMAND".into(),
            script.display().to_string(),
        )])
    }

    fn ssh_pid(pid_file: &Path) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(pid_file)
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "the ssh never started");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_gone(pid: i32, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(pid) {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("{what}: the ssh git ran (pid {pid}) outlived the call's timeout");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A call past its timeout ends with its grandchildren: the ssh (or
    /// `git-remote-https`) git runs, not git alone, which left them held
    /// by a hung server for ever.
    #[test]
    fn a_timed_out_call_leaves_no_grandchild() {
        let tmp = tempfile::tempdir().unwrap();
        let url = "ssh://127.0.0.1:1/grid.git";

        let pid_file = tmp.path().join("run.pid");
        let git = git_with_hung_ssh(tmp.path(), &pid_file);
        let run = git.run(&["fetch", url, "main"]);
        assert!(matches!(run, Err(GitError::Timeout { .. })), "{run:?}");
        assert_gone(ssh_pid(&pid_file), "run");

        let pid_file = tmp.path().join("capped.pid");
        let git = git_with_hung_ssh(tmp.path(), &pid_file);
        let capped = git.run_capped(&["ls-remote", url], 1000);
        assert!(
            matches!(capped, Err(GitError::Timeout { .. })),
            "{capped:?}"
        );
        assert_gone(ssh_pid(&pid_file), "run_capped");
    }
}
