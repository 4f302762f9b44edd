//! Running one child process to its end, a deadline, or cancellation, with
//! both output streams capped. The container engines (for tasks and for
//! housekeeping calls) and `shell` all go through here, so that the reading,
//! waiting and killing rules live in one place.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::output::{CappedOutput, Captured};
use super::{CancelFlag, Outcome, RunReport};
use crate::time::{self, Timestamp};

/// How often the cancel flag is looked at while the child runs.
const POLL: Duration = Duration::from_millis(100);

/// How long to wait for the output pipes to close once the child is gone.
/// Normally they close at once; a straggler that escaped the kill could hold
/// them open forever, and must not hold up the report.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Exit code, or 128+N after signal N, as shells and engines report it.
    Exited(i32),
    TimedOut,
    Cancelled,
}

#[derive(Debug)]
pub(super) struct Finished {
    pub ended: Ended,
    /// The signal that ended the child, when it did not exit by itself
    /// (`ended` then says 128 + it): for an engine's CLI, something on the
    /// host killed it, whatever became of its container.
    pub killed_by: Option<i32>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub started_at: Timestamp,
    pub duration: Duration,
}

impl Finished {
    /// The report for a task run; `exit` maps an exit code and the stderr
    /// to an outcome, which is where the engines differ.
    pub fn into_report(self, exit: impl FnOnce(i32, &str) -> Outcome) -> RunReport {
        RunReport {
            outcome: match self.ended {
                Ended::Exited(code) => exit(code, &self.stderr.text),
                Ended::TimedOut => Outcome::TimedOut,
                Ended::Cancelled => Outcome::Cancelled,
            },
            truncated: self.stdout.truncated || self.stderr.truncated,
            stdout: self.stdout.text,
            stderr: self.stderr.text,
            started_at: self.started_at,
            duration: self.duration,
        }
    }
}

/// A run that never got going, with why.
pub(super) fn engine_failed(reason: String) -> RunReport {
    RunReport {
        outcome: Outcome::EngineFailed(reason),
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        started_at: time::now(),
        duration: Duration::ZERO,
    }
}

/// What an engine does to end its child early, and to tidy up after it.
pub(super) trait Stopper {
    /// Called at the deadline or on cancellation. Afterwards the child is sent
    /// SIGKILL (harmless if already gone) and reaped, so this only has to do
    /// what killing the direct child would not: remove a container, kill a
    /// process group.
    fn stop(&mut self, child: &mut Child);

    /// Called after the child exited by itself, before its output is
    /// collected.
    fn after_exit(&mut self, _child: &Child) {}
}

/// Kills the direct child and nothing else: enough for engine CLI calls.
pub(super) struct KillChild;

impl Stopper for KillChild {
    fn stop(&mut self, _child: &mut Child) {}
}

pub(super) fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        // Neither exited nor signalled cannot happen for a reaped child.
        (None, None) => -1,
    }
}

/// Spawn `cmd` with stdin closed and run it to its end, `timeout`, or
/// `cancel`. Errors only when the child could not be started or watched; the
/// child is dead and reaped whenever this returns.
pub(super) fn run(
    mut cmd: Command,
    timeout: Duration,
    cancel: Option<&CancelFlag>,
    output_cap: usize,
    stopper: &mut dyn Stopper,
) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started_at = time::now();
    let started = Instant::now();
    let mut child = cmd.spawn()?;

    let readers = (|| {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let err = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr pipe"))?;
        Ok::<_, io::Error>((
            CappedOutput::spawn(out, output_cap)?,
            CappedOutput::spawn(err, output_cap)?,
        ))
    })();
    let (stdout, stderr) = match readers {
        Ok(r) => r,
        Err(e) => {
            kill_and_reap(&mut child, stopper);
            return Err(e);
        }
    };

    let mut killed_by = None;
    let ended = match wait(&mut child, started + timeout, cancel) {
        Ok(Ok(status)) => {
            stopper.after_exit(&child);
            killed_by = status.signal();
            Ended::Exited(exit_code(status))
        }
        Ok(Err(early)) => {
            kill_and_reap(&mut child, stopper);
            early
        }
        Err(e) => {
            kill_and_reap(&mut child, stopper);
            return Err(e);
        }
    };

    Ok(Finished {
        ended,
        killed_by,
        stdout: stdout.finish(OUTPUT_GRACE),
        stderr: stderr.finish(OUTPUT_GRACE),
        started_at,
        duration: started.elapsed(),
    })
}

/// The child's own end, or the deadline or cancellation that came first.
fn wait(
    child: &mut Child,
    deadline: Instant,
    cancel: Option<&CancelFlag>,
) -> io::Result<Result<ExitStatus, Ended>> {
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Ok(Err(Ended::Cancelled));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Err(Ended::TimedOut));
        }
        if let Some(status) = child.wait_timeout(POLL.min(deadline - now))? {
            return Ok(Ok(status));
        }
    }
}

fn kill_and_reap(child: &mut Child, stopper: &mut dyn Stopper) {
    stopper.stop(child);
    // Fails only if the child was already reaped, which is what we want.
    let _ = child.kill();
    if let Err(e) = child.wait() {
        tracing::warn!(pid = child.id(), error = %e, "could not reap child");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn exit_code_and_output() {
        let f = run(
            sh("echo out; echo err >&2; exit 7"),
            Duration::from_secs(10),
            None,
            100,
            &mut KillChild,
        )
        .unwrap();
        assert_eq!(f.ended, Ended::Exited(7));
        assert_eq!(f.stdout.text, "out\n");
        assert_eq!(f.stderr.text, "err\n");
    }

    #[test]
    fn signal_becomes_128_plus_n() {
        let f = run(
            sh("kill -9 $$"),
            Duration::from_secs(10),
            None,
            100,
            &mut KillChild,
        )
        .unwrap();
        assert_eq!(f.ended, Ended::Exited(137));
        assert_eq!(f.killed_by, Some(9));
        let exited = run(
            sh("exit 137"),
            Duration::from_secs(10),
            None,
            100,
            &mut KillChild,
        );
        assert_eq!(
            exited.unwrap().killed_by,
            None,
            "an exit code is not a signal"
        );
    }

    #[test]
    fn deadline_kills_the_child() {
        let t = Instant::now();
        let f = run(
            sh("exec sleep 30"),
            Duration::from_millis(300),
            None,
            100,
            &mut KillChild,
        )
        .unwrap();
        assert_eq!(f.ended, Ended::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn cancel_flag_stops_the_child() {
        let flag: CancelFlag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            setter.store(true, Ordering::SeqCst);
        });
        let t = Instant::now();
        let f = run(
            sh("exec sleep 30"),
            Duration::from_secs(30),
            Some(&flag),
            100,
            &mut KillChild,
        )
        .unwrap();
        assert_eq!(f.ended, Ended::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_an_error() {
        let r = run(
            Command::new("/nonexistent/dgrid-no-such-binary"),
            Duration::from_secs(1),
            None,
            100,
            &mut KillChild,
        );
        assert!(r.is_err());
    }
}
