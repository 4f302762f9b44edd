//! A volunteer's own limits: at most so many tasks an hour, at most so many
//! seconds of task time an hour, and hours of the day when the node takes
//! no work. Pure, over an explicit clock: the worker tells it when tasks
//! start and end, and asks what it may claim now.
//!
//! A node at a limit claims nothing, holds nothing it has not started (its
//! waiting claims go back to the queue at once, for other nodes), and says
//! why and until when. A task that started within the limits runs to its
//! end; its time counts in the hour it ran, so a long one delays the next.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{TimeZone, Timelike};

pub use crate::config::budget::{Limits, QuietHours};
use crate::time::Timestamp;

mod quiet;

/// The window the hourly limits count over.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Why a node takes no work now, and when it may again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub why: String,
    /// When the limit lifts, if that can be told (a running task keeps
    /// adding to the time used while it runs).
    pub until: Option<Timestamp>,
}

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)?;
        if let Some(t) = self.until {
            write!(f, " until {}", crate::time::format(t))?;
        }
        Ok(())
    }
}

/// What the limits allow now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowance {
    /// Hold at most this many tasks not started yet, claims waiting for a
    /// slot included (none: no limit): what may start within the limits.
    Open(Option<usize>),
    Paused(Paused),
}

impl Allowance {
    /// How many more to claim with `waiting` held already (none: no limit).
    pub fn room(&self, waiting: usize) -> Option<usize> {
        match self {
            Allowance::Open(None) => None,
            Allowance::Open(Some(n)) => Some(n.saturating_sub(waiting)),
            Allowance::Paused(_) => Some(0),
        }
    }

    /// At most `n` held: what the limits allow and no more than `n`.
    pub fn at_most(self, n: usize) -> Allowance {
        match self {
            Allowance::Open(room) => Allowance::Open(Some(room.map_or(n, |r| r.min(n)))),
            paused => paused,
        }
    }

    /// How many of `waiting` held claims are beyond what may start: they go
    /// back to the queue.
    pub fn surplus(&self, waiting: usize) -> usize {
        match self {
            Allowance::Open(None) => 0,
            Allowance::Open(Some(n)) => waiting.saturating_sub(*n),
            Allowance::Paused(_) => waiting,
        }
    }
}

/// The tasks of the last hour, as far as the limits count them.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    limits: Limits,
    /// (started, ended; none while running), oldest first.
    runs: VecDeque<(Timestamp, Option<Timestamp>)>,
}

fn window() -> chrono::Duration {
    chrono::Duration::from_std(WINDOW).expect("an hour fits")
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            runs: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A task started at `at`.
    pub fn started(&mut self, at: Timestamp) {
        self.prune(at);
        self.runs.push_back((at, None));
    }

    /// The task that started at `started` ended at `at`.
    pub fn ended(&mut self, started: Timestamp, at: Timestamp) {
        if let Some(run) = self
            .runs
            .iter_mut()
            .find(|(s, e)| *s == started && e.is_none())
        {
            run.1 = Some(at);
        }
    }

    /// The run that started at `started` was taken back within a sync of
    /// its start, for higher work (`Worker::take_back_below`): its claim
    /// waits to start again, and it is not counted as a task of its own.
    pub fn taken_back(&mut self, started: Timestamp) {
        if let Some(i) = self
            .runs
            .iter()
            .position(|(s, e)| *s == started && e.is_none())
        {
            self.runs.remove(i);
        }
    }

    /// The runs of the last hour before `now`, each `(started, ended)`,
    /// oldest first, at most the newest `max`: what a restart keeps
    /// (`worker/kept_budget.rs`). A run still going counts as ending `now`
    /// (a node that dies mid-task has that task counted as started).
    pub fn kept(&self, now: Timestamp, max: usize) -> Vec<(Timestamp, Timestamp)> {
        let from = now - window();
        let runs: Vec<(Timestamp, Timestamp)> = self
            .runs
            .iter()
            .map(|(s, e)| (*s, e.unwrap_or(now)))
            .filter(|(_, e)| *e > from)
            .collect();
        let skip = runs.len().saturating_sub(max);
        runs.into_iter().skip(skip).collect()
    }

    /// Count the runs a previous run of this node kept ([`Budget::kept`]):
    /// those that ended within the hour before `now`; none that ends after
    /// it or before it started (the clock moved back, or the file lies).
    /// How many it counts.
    pub fn restore(&mut self, runs: &[(Timestamp, Timestamp)], now: Timestamp) -> usize {
        let from = now - window();
        let before = self.runs.len();
        self.runs.extend(
            runs.iter()
                .filter(|(s, e)| s <= e && *e <= now && *e > from)
                .map(|(s, e)| (*s, Some(*e))),
        );
        self.runs.make_contiguous().sort_by_key(|(s, _)| *s);
        self.runs.len() - before
    }

    /// Forget runs that ended before the window: the record stays as small
    /// as an hour's work.
    fn prune(&mut self, now: Timestamp) {
        let from = now - window();
        self.runs.retain(|(_, end)| end.is_none_or(|e| e > from));
    }

    fn starts_since(&self, from: Timestamp) -> usize {
        self.runs.iter().filter(|(s, _)| *s > from).count()
    }

    /// Seconds of task time within the hour before `at`, running tasks
    /// counted as running until `at`.
    fn seconds_used(&self, at: Timestamp) -> f64 {
        let from = at - window();
        self.runs
            .iter()
            .map(|(s, e)| {
                let start = (*s).max(from);
                let end = e.unwrap_or(at).min(at);
                (end - start).num_milliseconds().max(0) as f64 / 1000.0
            })
            .sum()
    }

    /// What may be held at `now`, quiet hours read on the wall clock of
    /// `zone` (the node's), tasks measured to take `task_secs` on average
    /// (if measured).
    pub fn allowance<Z: TimeZone>(
        &self,
        now: Timestamp,
        zone: &Z,
        task_secs: Option<f64>,
    ) -> Allowance {
        let local = now.with_timezone(zone).naive_local();
        let minute = local.hour() * 60 + local.minute();
        if let Some(q) = self.limits.quiet_hours.iter().find(|q| q.contains(minute)) {
            return Allowance::Paused(Paused {
                why: format!("quiet hours ({q}, local time)"),
                until: quiet::end(&self.limits.quiet_hours, now, local, zone)
                    .map(|t| t.max(now + chrono::Duration::seconds(1))),
            });
        }
        let mut room: Option<usize> = None;
        if let Some(max) = self.limits.tasks_per_hour {
            let from = now - window();
            let started = self.starts_since(from);
            if started >= max as usize {
                // The oldest start in the window leaves it first.
                let oldest = self
                    .runs
                    .iter()
                    .map(|(s, _)| *s)
                    .filter(|s| *s > from)
                    .min();
                return Allowance::Paused(Paused {
                    why: format!(
                        "at its limit of {max} {} an hour",
                        if max == 1 { "task" } else { "tasks" }
                    ),
                    until: oldest.map(|s| s + window()),
                });
            }
            room = Some(max as usize - started);
        }
        if let Some(max) = self.limits.task_seconds_per_hour {
            match self.time_allows(max, now, task_secs) {
                Ok(fits) => room = Some(room.map_or(fits, |r| r.min(fits))),
                Err(paused) => return Allowance::Paused(paused),
            }
        }
        Allowance::Open(room)
    }

    /// When the next quiet hours begin, read on the wall clock of `zone`,
    /// if any are set and `now` is outside them: what is claimed before
    /// then must start by then (`worker/load.rs`), or it would be held
    /// through them, kept from other nodes, and given back at their start.
    pub fn quiet_begins<Z: TimeZone>(&self, now: Timestamp, zone: &Z) -> Option<Timestamp> {
        let local = now.with_timezone(zone).naive_local();
        let minute = local.hour() * 60 + local.minute();
        if self.limits.quiet_hours.iter().any(|q| q.contains(minute)) {
            return None;
        }
        quiet::begins(&self.limits.quiet_hours, now, local, zone)
    }

    /// How many more tasks may start under a limit of `max` seconds of
    /// task time an hour, tasks measured to take `task_secs` on average:
    /// as many as fit whole, by that length, in what is left once the
    /// tasks running now have taken what they are expected to still take.
    /// Counting only what they had taken, each look while they ran found
    /// the hour as free as at their start; rounding up, a node with 6 s
    /// left started two tasks of 4 s, and one with 1 s left a task of 4 s
    /// (a sweep measured 12 s in an hour of 10, and 8 of 5). A task may
    /// still run longer than measured: the limit is passed by at most what
    /// tasks run past their measured length. Unmeasured, one at a time
    /// (its end measures the pace): that first task may pass it by its
    /// whole length. Nothing fits and nothing runs: paused, until a task
    /// fits again.
    fn time_allows(
        &self,
        max: u64,
        now: Timestamp,
        task_secs: Option<f64>,
    ) -> Result<usize, Paused> {
        let limit = max as f64;
        let at_limit = |until| Paused {
            why: format!("at its limit of {max} s of task time an hour"),
            until,
        };
        let running: Vec<Timestamp> = self
            .runs
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(s, _)| *s)
            .collect();
        let task = task_secs.filter(|t| *t > 0.0);
        if let Some(task) = task.filter(|t| *t > limit && running.is_empty()) {
            // No hour ever holds one: said, so that the volunteer sees why
            // this node never runs anything (first, not an hour's wait: the
            // first run, unmeasured, used the hour up, and the pause said
            // `until` an hour on, when nothing would start either).
            return Err(Paused {
                why: format!(
                    "at its limit of {max} s of task time an hour: its tasks take about {} s each, more than an hour allows",
                    about(task)
                ),
                until: None,
            });
        }
        let used = self.seconds_used(now);
        if used >= limit {
            return Err(at_limit(self.time_free_at(now, limit, 0.0)));
        }
        let Some(task) = task else {
            return Ok(usize::from(running.is_empty()));
        };
        let ahead: f64 = running
            .iter()
            .map(|s| (task - (now - *s).num_milliseconds() as f64 / 1000.0).max(0.0))
            .sum();
        let fits = tasks_fitting(limit - used - ahead, task);
        if fits > 0 || !running.is_empty() {
            return Ok(fits);
        }
        Err(at_limit(self.time_free_at(now, limit, task)))
    }

    /// When the time used in the last hour leaves room for a task of
    /// `need` seconds (for any task, when `need` is 0), if no task runs (a
    /// running one keeps adding to it): looked for ten seconds at a time
    /// over the next hour.
    fn time_free_at(&self, now: Timestamp, limit: f64, need: f64) -> Option<Timestamp> {
        if self.runs.iter().any(|(_, e)| e.is_none()) {
            return None;
        }
        (1..=360)
            .map(|i| now + chrono::Duration::seconds(10 * i))
            .find(|t| {
                let left = limit - self.seconds_used(*t);
                if need > 0.0 {
                    tasks_fitting(left, need) > 0
                } else {
                    left > 0.0
                }
            })
    }
}

/// How many tasks of `task` seconds fit whole in `left` seconds. A
/// millisecond of slack (what the runs are counted to): a task that fits
/// exactly is not lost to rounding.
fn tasks_fitting(left: f64, task: f64) -> usize {
    // `as` saturates: a tiny task in a long hour is a large number.
    ((left.max(0.0) + 0.001) / task).floor() as usize
}

/// A task's length as said to the volunteer: a tenth of a second under
/// ten (a task of 1.5 s against a limit of 1 s is not "about 2 s"), whole
/// seconds above.
fn about(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1}")
    } else {
        format!("{seconds:.0}")
    }
}

#[cfg(test)]
mod tests;
