//! A git child's lifetime: it starts in a process group of its own, so
//! that a call past its timeout is ended whole, and the wait for it beats
//! a pulse the caller installed (the worker's watchdog), since that wait is
//! bounded by the call's own timeout and is no sign of a stuck loop.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

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

/// What a wait for a git child calls at least every `every`.
#[derive(Clone)]
pub struct Pulse {
    pub every: Duration,
    pub beat: Arc<dyn Fn() + Send + Sync>,
}

thread_local! {
    /// Per thread: only the thread that installed it (the worker's loop)
    /// says through it that it is alive; a git call on another thread
    /// vouches for nothing.
    static PULSE: RefCell<Option<Pulse>> = const { RefCell::new(None) };
}

/// Beat `pulse` while a git call of this thread waits for its child. The
/// worker's loop installs systemd's watchdog here: a call may rightly last
/// up to `[git] timeout` (a first clone of a big grid takes minutes), past
/// the watchdog's interval, and is ended at its timeout whole
/// ([`kill_group`]), so the wait is bounded and the loop is not stuck.
pub fn set_pulse(pulse: Option<Pulse>) {
    PULSE.with(|p| *p.borrow_mut() = pulse);
}

/// This thread's pulse, for a wait (or a watcher thread of it).
pub(super) fn pulse() -> Option<Pulse> {
    PULSE.with(|p| p.borrow().clone())
}

/// How long a wait may sleep before it beats `pulse`: never past `left`.
pub(super) fn step(pulse: Option<&Pulse>, left: Duration) -> Duration {
    match pulse {
        Some(p) => p.every.min(left),
        None => left,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;

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

    /// The wait for a hung call beats this thread's pulse, in `run` and in
    /// `run_capped` (whose watcher is another thread) alike; a thread that
    /// installed none is not beaten for.
    #[test]
    fn a_hung_call_beats_the_pulse_of_its_thread() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("git://{}/grid.git", listener.local_addr().unwrap());
        let beats = Arc::new(AtomicUsize::new(0));
        let counted = beats.clone();
        set_pulse(Some(Pulse {
            every: Duration::from_millis(100),
            beat: Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        }));
        let git = Git::new("git", std::env::temp_dir(), Duration::from_secs(1));
        let hung = git.run(&["ls-remote", &url]);
        assert!(matches!(hung, Err(GitError::Timeout { .. })), "{hung:?}");
        let by_run = beats.swap(0, Ordering::SeqCst);
        assert!((5..=11).contains(&by_run), "{by_run} beats");
        let hung = git.run_capped(&["ls-remote", &url], 1000);
        assert!(matches!(hung, Err(GitError::Timeout { .. })), "{hung:?}");
        let by_capped = beats.swap(0, Ordering::SeqCst);
        assert!((5..=11).contains(&by_capped), "{by_capped} beats");
        let elsewhere = std::thread::spawn(move || git.run(&["ls-remote", &url]).is_err());
        assert!(elsewhere.join().unwrap());
        assert_eq!(beats.load(Ordering::SeqCst), 0);
        set_pulse(None);
        drop(listener);
    }
}
