//! What wakes the loop besides its timers: a task's thread reporting its
//! run, and SIGTERM/SIGINT (through signal-hook's iterator on a thread of
//! its own, so the loop hears a signal as an event on its one channel).
//! SIGHUP (a terminal hung up, or an operator's habit of asking a daemon
//! to reload) is logged and ignored: by default it killed the worker on
//! the spot, its containers running on and its claims held until a
//! restart. The configuration is read at start only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::grid::Id;
use crate::sandbox::RunReport;

pub enum Event {
    Finished { task: Id, report: RunReport },
    Signal,
}

/// Signals seen so far: the first drains, a second stops at once.
#[derive(Clone, Default)]
pub struct SignalCount(Arc<AtomicUsize>);

impl SignalCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn spawn_signal_thread(tx: Sender<Event>) -> std::io::Result<SignalCount> {
    let seen = SignalCount::default();
    let count = seen.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::warn!("SIGHUP ignored: the configuration is read at start; restart the worker to apply a change");
                    continue;
                }
                count.0.fetch_add(1, Ordering::SeqCst);
                tracing::info!(signal = sig, "signal received");
                if tx.send(Event::Signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(seen)
}
