//! A volunteer's own limits in worker.toml, and the labels a node routes
//! by:
//!
//! ```toml
//! labels = ["gpu", "zone=eu"]       # besides arch=, os=, engine=, detected
//! exclusive = ["gpu"]               # take only tasks that require gpu
//!
//! [budget]
//! tasks_per_hour = 100              # default: no limit
//! task_seconds_per_hour = 1800      # default: no limit
//! quiet_hours = ["22:00-07:00"]     # local time; default: none
//! ```
//!
//! The rules that apply the budget are `service::budget`; this is only what
//! the file says, checked.

use std::num::{NonZeroU32, NonZeroU64};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Env};
use crate::grid::node::MAX_CONFIGURED_LABELS;
use crate::grid::{Class, Label};

/// A span of the day, in the node's local time: `22:00-07:00` (across
/// midnight) or `09:00-17:30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after midnight.
    start: u32,
    end: u32,
}

impl QuietHours {
    pub fn parse(s: &str) -> Result<QuietHours, String> {
        let minute = |t: &str| -> Result<u32, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{t:?} is not a time of day such as 22:00"))?;
            let (h, m): (u32, u32) = match (h.parse(), m.parse()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 && m_len(t) => (h, m),
                _ => {
                    let hint = if h == "24" {
                        " (midnight is 00:00)"
                    } else {
                        ""
                    };
                    return Err(format!("{t:?} is not a time of day such as 22:00{hint}"));
                }
            };
            Ok(h * 60 + m)
        };
        fn m_len(t: &str) -> bool {
            t.trim().split_once(':').is_some_and(|(_, m)| m.len() == 2)
        }
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a span of the day such as 22:00-07:00"))?;
        // Each side's error names the whole span, so that "-1:00-07:00"
        // is not reported as the empty time before its first dash.
        let (start, end) = (minute(a), minute(b));
        let (start, end) = match (start, end) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return Err(format!("{s:?}: {e}")),
        };
        if start == end {
            return Err(format!("{s:?} is empty: it starts where it ends"));
        }
        Ok(QuietHours { start, end })
    }

    /// Is `minute` (after midnight) inside?
    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Minutes from `minute` to this span's end.
    pub fn minutes_to_end(&self, minute: u32) -> u32 {
        (self.end + 24 * 60 - minute) % (24 * 60)
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The limits, as configured (`[budget]`); none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub tasks_per_hour: Option<u32>,
    pub task_seconds_per_hour: Option<u64>,
    pub quiet_hours: Vec<QuietHours>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        !self.counts_the_hour() && self.quiet_hours.is_empty()
    }

    /// A limit on what the node runs in an hour is set: what it ran in the
    /// last one counts (and is kept across restarts).
    pub fn counts_the_hour(&self) -> bool {
        self.tasks_per_hour.is_some() || self.task_seconds_per_hour.is_some()
    }
}

/// `[budget]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    tasks_per_hour: Option<NonZeroU32>,
    task_seconds_per_hour: Option<NonZeroU64>,
    quiet_hours: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The routing and budget settings, resolved.
#[derive(Debug, Clone, Default)]
pub struct Scheduling {
    /// Configured labels (the detected ones are added at start).
    pub labels: Vec<Label>,
    pub exclusive: Vec<Label>,
    pub budget: Limits,
}

/// A node's labels and those it is exclusive to are written into its
/// record, which peers read up to a cap: at most
/// [`MAX_CONFIGURED_LABELS`] of each.
fn check_count(n: usize) -> Result<(), String> {
    if n > MAX_CONFIGURED_LABELS {
        return Err(format!(
            "lists {n} labels; at most {MAX_CONFIGURED_LABELS} are allowed (they go in the node's record, which peers read only up to {} KiB)",
            crate::grid::layout::MAX_NODE_RECORD_BYTES / 1024
        ));
    }
    Ok(())
}

/// `labels`, `exclusive` (each overridden by `DGRID_LABELS`,
/// `DGRID_EXCLUSIVE`: comma-separated) and `[budget]`. `at` turns a span
/// of the file into "file, line N".
pub fn resolve(
    labels: Option<Spanned<Vec<Spanned<String>>>>,
    exclusive: Option<Spanned<Vec<Spanned<String>>>>,
    budget: BudgetFile,
    env: &dyn Env,
    at: &dyn Fn(Option<std::ops::Range<usize>>) -> String,
    engine: Option<&str>,
) -> Result<Scheduling, ConfigError> {
    // A label of a key the node detects must say what it detects.
    let label = |s: &str| -> Result<Label, String> {
        let l = Label::parse(s).map_err(|e| format!("label {s:?} {e}"))?;
        match crate::grid::label::against_detected(&l, engine) {
            Some(why) => Err(why),
            None => Ok(l),
        }
    };
    let list = |key: &'static str,
                var: &'static str,
                file: Option<Spanned<Vec<Spanned<String>>>>|
     -> Result<Vec<Label>, ConfigError> {
        if let Some(v) = env.get(var) {
            let env_error = |reason| ConfigError::Env { var, reason };
            let names: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            check_count(names.len()).map_err(env_error)?;
            return names
                .into_iter()
                .map(|s| label(s).map_err(env_error))
                .collect();
        }
        let Some(file) = file else {
            return Ok(Vec::new());
        };
        // Each entry is named at its own line: a list may take many.
        let file_error = |span, reason| ConfigError::Invalid {
            origin: at(Some(span)),
            key,
            reason,
        };
        let span = file.span();
        check_count(file.get_ref().len()).map_err(|r| file_error(span, r))?;
        file.into_inner()
            .iter()
            .map(|s| label(s.get_ref()).map_err(|r| file_error(s.span(), r)))
            .collect()
    };
    let exclusive_span = exclusive.as_ref().map(Spanned::span);
    let labels = list("labels", "DGRID_LABELS", labels)?;
    let exclusive = list("exclusive", "DGRID_EXCLUSIVE", exclusive)?;
    // Named where it was set: the variable overrides the file.
    let exclusive_error = |reason| {
        if env.get("DGRID_EXCLUSIVE").is_some() {
            ConfigError::Env {
                var: "DGRID_EXCLUSIVE",
                reason,
            }
        } else {
            ConfigError::Invalid {
                origin: at(exclusive_span),
                key: "exclusive",
                reason,
            }
        }
    };
    if let Some(stray) = exclusive.iter().find(|l| !labels.contains(l)) {
        return Err(exclusive_error(format!(
            "lists {:?}, which is not in `labels`: a node can only be exclusive to a label it has",
            stray.as_str()
        )));
    }
    // A node takes only tasks that require every label it is exclusive
    // to, and a task's `requires` is held to the class rules (how many
    // labels, how long their joined name): a set that breaks them is one
    // no valid task can ever match, and the node would take nothing. The
    // same rules as a task's, so that the limits are said once.
    let set = Class::of(exclusive.iter().cloned());
    if let Err(e) = Class::from_labels(set.labels().map(Label::as_str)) {
        return Err(exclusive_error(format!(
            "{e}, as for a task's `requires`: no task could require them all, so this node would never take anything"
        )));
    }
    let quiet_hours = match budget.quiet_hours {
        None => Vec::new(),
        Some(q) => q
            .into_inner()
            .iter()
            .map(|s| {
                QuietHours::parse(s.get_ref()).map_err(|reason| ConfigError::Invalid {
                    origin: at(Some(s.span())),
                    key: "budget.quiet_hours",
                    reason,
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Scheduling {
        labels,
        exclusive,
        budget: Limits {
            tasks_per_hour: budget.tasks_per_hour.map(NonZeroU32::get),
            task_seconds_per_hour: budget.task_seconds_per_hour.map(NonZeroU64::get),
            quiet_hours,
        },
    })
}

/// The zone `quiet_hours` are read in, as the C library finds it (`TZ`,
/// else `/etc/localtime`), with the offset now; and why it may not be the
/// one meant: a `TZ` naming no zone file is UTC, without a word from the
/// C library.
pub fn local_zone() -> (String, Option<String>) {
    let offset = chrono::Local::now().format("%:z").to_string();
    let tz = std::env::var("TZ").ok().filter(|t| !t.is_empty());
    let name = match &tz {
        Some(t) => format!("TZ={t}"),
        None => std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|p| {
                let p = p.to_string_lossy().into_owned();
                p.split_once("zoneinfo/").map(|(_, z)| z.to_owned())
            })
            .unwrap_or_else(|| "the host's".to_owned()),
    };
    // A zone named as a file (`Europe/Berlin`, `:Europe/Berlin`); a POSIX
    // rule (`CET-1CEST,M3.5.0`) holds a digit and needs none.
    let missing = tz.as_deref().and_then(|t| {
        let file = t.strip_prefix(':').unwrap_or(t);
        let posix = file.chars().any(|c| c.is_ascii_digit());
        let known = file.starts_with('/') && std::path::Path::new(file).exists()
            || std::path::Path::new("/usr/share/zoneinfo")
                .join(file)
                .exists();
        (!posix && !known && file != "UTC")
            .then(|| format!("TZ={t} names no zone in /usr/share/zoneinfo: local time is UTC"))
    });
    (format!("{name} (UTC{offset} now)"), missing)
}

/// What `check` and the worker's start say of `quiet` hours: the spans and
/// the zone they are read in, and why that may not be the zone meant
/// (`local_zone`); `None` without quiet hours.
pub fn quiet_hours_zone(quiet: &[QuietHours]) -> Option<(String, Option<String>)> {
    if quiet.is_empty() {
        return None;
    }
    let (zone, missing) = local_zone();
    let spans: Vec<String> = quiet.iter().map(ToString::to_string).collect();
    Some((
        format!("quiet hours {} in local time: {zone}", spans.join(", ")),
        missing,
    ))
}
