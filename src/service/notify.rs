//! systemd's notification protocol (`Type=notify`): READY, STATUS, WATCHDOG,
//! STOPPING, EXTEND_TIMEOUT_USEC. Outside systemd (no `NOTIFY_SOCKET`) every
//! call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

// A status is sent as one line by the rule for grid text (an error in it
// may quote the grid): a line break would start another assignment of the
// protocol.
use crate::escape::line;

pub struct Notifier {
    /// Half of `WatchdogSec`, when the watchdog is on: ping at least this often.
    watchdog_every: Option<Duration>,
    last_status: String,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog_every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last_status: String::new(),
        }
    }

    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog_every
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }

    pub fn ready(&mut self, status: &str) {
        self.last_status = status.to_owned();
        self.send(&[NotifyState::Ready, NotifyState::Status(&line(status))]);
    }

    /// Send STATUS= only when it changed.
    pub fn status(&mut self, status: &str) {
        if self.last_status != status {
            self.last_status = status.to_owned();
            self.send(&[NotifyState::Status(&line(status))]);
        }
    }

    /// Called by the main loop itself, so that a stuck loop stops pinging and
    /// systemd restarts the service.
    pub fn watchdog(&self) {
        if self.watchdog_every.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Answer the watchdog while a git call of this thread waits for its
    /// child (`git::set_pulse`). The call may rightly outlast the
    /// watchdog's interval (`[git] timeout` is 120 s by default, the unit's
    /// `WatchdogSec` 60; a node's first clone of a big grid takes minutes),
    /// and it is bounded: git is killed at its timeout, with every process
    /// it started. A loop stuck anywhere else still goes silent.
    pub fn answer_during_git(&self) {
        let beat = std::sync::Arc::new(|| {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        });
        crate::git::set_pulse(
            self.watchdog_every
                .map(|every| crate::git::Pulse { every, beat }),
        );
    }

    pub fn stopping(&mut self, status: &str) {
        self.last_status = status.to_owned();
        self.send(&[NotifyState::Stopping, NotifyState::Status(&line(status))]);
    }

    /// Ask for more time to stop while a task drains.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }
}
