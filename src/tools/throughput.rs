//! The dashboard's throughput chart: results per time bucket, in a bounded
//! number of bars whatever the timestamps say (a result's timestamp is
//! whatever its writer chose).

use serde::{Deserialize, Serialize};

use crate::time;

/// Bars in the throughput chart, at most.
pub const BUCKETS: usize = 48;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Width of one bar, in seconds.
    pub bucket_s: i64,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    pub start: String,
    pub completed: usize,
    pub failed: usize,
}

/// The chart reaches back this far from its newest result at most
/// (seconds): one stamped in year 1 must not flatten a month's work into
/// one bar either.
const REACH: i64 = 90 * 86400;

/// Results per time bucket, over the span the results cover (at most
/// [`REACH`]; none stamped after `now` by more than any clock is off,
/// `time::MAX_CLOCK_SKEW`: one stamped in 9999 would make every real
/// result one bar), in at most [`BUCKETS`] bars of a round width:
/// `(timestamp, completed)` of each.
pub fn of<'a>(results: impl Iterator<Item = (&'a str, bool)>, now: time::Timestamp) -> Throughput {
    let latest = (now + time::MAX_CLOCK_SKEW).timestamp();
    let mut times: Vec<(i64, bool)> = results
        .filter_map(|(ts, ok)| time::parse(ts).map(|t| (t.timestamp(), ok)))
        .filter(|(t, _)| *t <= latest)
        .collect();
    if let Some(newest) = times.iter().map(|t| t.0).max() {
        times.retain(|(t, _)| *t >= newest.saturating_sub(REACH));
    }
    let (Some(min), Some(max)) = (
        times.iter().map(|t| t.0).min(),
        times.iter().map(|t| t.0).max(),
    ) else {
        return Throughput::default();
    };
    const WIDTHS: &[i64] = &[
        60,
        300,
        900,
        1800,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86400,
        7 * 86400,
    ];
    let span = max - min + 1;
    // A round width if one gives at most BUCKETS bars; else (results years
    // apart, or a forged timestamp in year 0 or 9999) whole 30-day months,
    // as many as it takes: the chart never has more than BUCKETS bars,
    // whatever the timestamps say.
    const MONTH: i64 = 30 * 86400;
    let bucket_s = WIDTHS
        .iter()
        .copied()
        .find(|w| span / w < BUCKETS as i64 - 1)
        .unwrap_or_else(|| {
            let months = span / MONTH / (BUCKETS as i64 - 1) + 1;
            months.saturating_mul(MONTH)
        });
    let first = min - min.rem_euclid(bucket_s);
    let n = ((max - first) / bucket_s + 1) as usize;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: chrono::DateTime::from_timestamp(first + i as i64 * bucket_s, 0)
                .map(time::format)
                .unwrap_or_default(),
            completed: 0,
            failed: 0,
        })
        .collect();
    for (t, ok) in times {
        let b = &mut buckets[((t - first) / bucket_s) as usize];
        if ok {
            b.completed += 1;
        } else {
            b.failed += 1;
        }
    }
    Throughput { bucket_s, buckets }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> time::Timestamp {
        time::parse("2026-01-02T00:00:00Z").unwrap()
    }

    #[test]
    fn throughput_buckets_are_round_and_cover_the_span() {
        let t = of(
            [
                ("2026-01-01T00:00:10Z", true),
                ("2026-01-01T00:03:00Z", false),
                ("2026-01-01T01:59:00Z", true),
                ("garbage", true),
            ]
            .into_iter(),
            now(),
        );
        assert_eq!(t.bucket_s, 300);
        assert_eq!(t.buckets.first().unwrap().start, "2026-01-01T00:00:00.000Z");
        assert_eq!(t.buckets[0].completed, 1);
        assert_eq!(t.buckets[0].failed, 1);
        assert_eq!(t.buckets.len(), 24);
        assert_eq!(t.buckets.last().unwrap().completed, 1);
        assert!(of(std::iter::empty(), now()).buckets.is_empty());
    }

    /// A sweep's forged results (year 1, year 9999) made the chart one
    /// bar of 77 years: they are left out, and a day's work keeps its bars.
    #[test]
    fn forged_timestamps_cannot_grow_the_chart() {
        let t = of(
            [
                ("0001-01-01T00:00:00Z", true),
                ("9999-12-31T23:59:59Z", false),
                ("2026-01-01T00:00:10Z", true),
                ("2026-01-01T23:00:00Z", false),
            ]
            .into_iter(),
            now(),
        );
        assert_eq!(t.bucket_s, 1800, "a day in half-hour bars: {t:?}");
        assert_eq!(t.buckets.first().unwrap().completed, 1);
        assert_eq!(t.buckets.last().unwrap().failed, 1);
        let counted: usize = t.buckets.iter().map(|b| b.completed + b.failed).sum();
        assert_eq!(counted, 2);
        for span in [59, 3600, 47 * 3600, 86400 * 400, 86400 * 365 * 30] {
            let end = chrono::DateTime::from_timestamp(1_700_000_000 + span, 0).unwrap();
            let t = of(
                [
                    ("2023-11-14T22:13:20Z", true),
                    (time::format(end).as_str(), true),
                ]
                .into_iter(),
                end,
            );
            assert!(
                t.buckets.len() <= BUCKETS,
                "span {span}: {}",
                t.buckets.len()
            );
        }
    }
}
