//! Timestamps as the grid writes them: RFC 3339, UTC, millisecond precision,
//! with a `Z` suffix, so that files written by different nodes sort and compare
//! as strings.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

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
        // An offset can carry a valid time past year 9999 or before year 0
        // in UTC, which no RFC 3339 time (nor a lane's path) can hold: a
        // task filed by it was refused as misplaced in the lane it was
        // filed in.
        .filter(|t| (0..=9999).contains(&t.year()))
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

    #[test]
    fn a_time_its_offset_carries_out_of_years_0_to_9999_is_none() {
        assert_eq!(parse("9999-12-31T23:59:59.999-23:59"), None);
        assert_eq!(parse("0000-01-01T00:00:00.000+23:59"), None);
        assert!(parse("9999-12-31T23:59:59.999Z").is_some());
        assert!(parse("0000-01-01T00:00:00Z").is_some());
    }
}
