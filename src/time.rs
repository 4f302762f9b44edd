//! Timestamps as the grid writes them: RFC 3339, UTC, millisecond precision,
//! with a `Z` suffix, so that files written by different nodes sort and compare
//! as strings.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Timestamp = DateTime<Utc>;

/// How far ahead of ours another node's clock may be. A claim made, or a
/// heartbeat sent, later than this from now cannot be true: it is treated
/// as unreadable, i.e. as long past, so that nobody holds a task for ever by
/// dating a claim or a heartbeat in year 9999. (Such a claim is reaped at
/// first sight; were it to survive until the date came near, it would be
/// judged like any other then.)
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::hours(1);

pub fn now() -> Timestamp {
    Utc::now()
}

pub fn format(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z_and_round_trips() {
        let t = parse("2026-11-27T05:16:03.123+02:00").unwrap();
        assert_eq!(format(t), "2026-11-27T03:16:03.123Z");
        assert_eq!(parse(&format(t)), Some(t));
    }
}
