//! When quiet hours end, read on the node's wall clock.

use chrono::{NaiveDateTime, TimeZone, Timelike, Utc};

use super::QuietHours;
use crate::time::Timestamp;

/// Minutes in a day, as the wall clock counts them.
const DAY: u32 = 24 * 60;

/// The moment the wall clock of `zone`, reading `local` at `now`, next
/// reads a minute outside every span of `quiet` (`local` is inside one):
/// spans that meet (`22:00-00:00` and `00:00-07:00`) end together. Found
/// on the wall clock, not as minutes from now, so that on a night the
/// clocks change the pause says when it really ends. An end the clocks
/// skip (it falls in the hour they jump over) is the first minute after
/// it that exists; one they pass twice, the first. None if the spans
/// cover the whole day.
pub(super) fn end<Z: TimeZone>(
    quiet: &[QuietHours],
    now: Timestamp,
    local: NaiveDateTime,
    zone: &Z,
) -> Option<Timestamp> {
    let mut minute = local.hour() * 60 + local.minute();
    let mut minutes_left = 0;
    while let Some(q) = quiet.iter().find(|q| q.contains(minute)) {
        let left = q.minutes_to_end(minute);
        minutes_left += left;
        minute = (minute + left) % DAY;
        if minutes_left >= DAY {
            return None;
        }
    }
    Some(on_the_wall(minutes_left, now, local, zone))
}

/// The moment the wall clock of `zone`, reading `local` at `now` (outside
/// every span of `quiet`), next reads a minute inside one: when the next
/// quiet hours begin, found on the wall clock as [`end`] finds their end
/// (a start the clocks skip is the first minute after it that exists).
/// None if no span is set.
pub(super) fn begins<Z: TimeZone>(
    quiet: &[QuietHours],
    now: Timestamp,
    local: NaiveDateTime,
    zone: &Z,
) -> Option<Timestamp> {
    let minute = local.hour() * 60 + local.minute();
    let ahead = (1..=DAY).find(|m| quiet.iter().any(|q| q.contains((minute + m) % DAY)))?;
    Some(on_the_wall(ahead, now, local, zone))
}

/// The moment the wall clock of `zone`, reading `local` at `now`, reads
/// the start of the minute `minutes` ahead of its own: the first minute
/// from there that exists (the clocks may skip it), the earliest if they
/// pass it twice.
fn on_the_wall<Z: TimeZone>(
    minutes: u32,
    now: Timestamp,
    local: NaiveDateTime,
    zone: &Z,
) -> Timestamp {
    let at = local
        .with_second(0)
        .and_then(|l| l.with_nanosecond(0))
        .unwrap_or(local)
        + chrono::Duration::minutes(i64::from(minutes));
    (0..=180)
        .map(|m| at + chrono::Duration::minutes(m))
        .find_map(|l| zone.from_local_datetime(&l).earliest())
        .map_or(now + (at - local), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDateTime, TimeZone};

    use super::super::{Allowance, Budget, Limits, QuietHours};
    use crate::time::Timestamp;

    fn at(s: &str) -> Timestamp {
        crate::time::parse(s).unwrap()
    }

    fn quiet(span: &str) -> Budget {
        Budget::new(Limits {
            quiet_hours: vec![QuietHours::parse(span).unwrap()],
            ..Limits::default()
        })
    }

    /// A zone whose clocks change once, at `at` (UTC), as daylight saving
    /// time's do: enough to show the pause's end read on the wall clock.
    #[derive(Debug, Clone, Copy)]
    struct Shift {
        at: NaiveDateTime,
        before: chrono::FixedOffset,
        after: chrono::FixedOffset,
    }

    #[derive(Debug, Clone, Copy)]
    struct ShiftOffset(chrono::FixedOffset, Shift);

    impl chrono::Offset for ShiftOffset {
        fn fix(&self) -> chrono::FixedOffset {
            self.0
        }
    }

    impl TimeZone for Shift {
        type Offset = ShiftOffset;
        fn from_offset(o: &ShiftOffset) -> Shift {
            o.1
        }
        fn offset_from_local_date(
            &self,
            _: &chrono::NaiveDate,
        ) -> chrono::LocalResult<ShiftOffset> {
            unimplemented!("not asked by the budget")
        }
        fn offset_from_local_datetime(
            &self,
            l: &NaiveDateTime,
        ) -> chrono::LocalResult<ShiftOffset> {
            let fits = |o: chrono::FixedOffset, before: bool| {
                let utc = *l - chrono::Duration::seconds(o.local_minus_utc().into());
                (if before {
                    utc < self.at
                } else {
                    utc >= self.at
                })
                .then_some(ShiftOffset(o, *self))
            };
            match (fits(self.before, true), fits(self.after, false)) {
                (Some(a), Some(b)) => chrono::LocalResult::Ambiguous(a, b),
                (Some(a), None) | (None, Some(a)) => chrono::LocalResult::Single(a),
                (None, None) => chrono::LocalResult::None,
            }
        }
        fn offset_from_utc_date(&self, _: &chrono::NaiveDate) -> ShiftOffset {
            unimplemented!("not asked by the budget")
        }
        fn offset_from_utc_datetime(&self, u: &NaiveDateTime) -> ShiftOffset {
            ShiftOffset(
                if *u < self.at {
                    self.before
                } else {
                    self.after
                },
                *self,
            )
        }
    }

    #[test]
    fn spans_that_meet_end_together() {
        let zone = chrono::FixedOffset::east_opt(0).unwrap();
        let b = Budget::new(Limits {
            quiet_hours: ["22:00-00:00", "00:00-07:00", "12:00-12:30"]
                .iter()
                .map(|q| QuietHours::parse(q).unwrap())
                .collect(),
            ..Limits::default()
        });
        let Allowance::Paused(p) = b.allowance(at("2026-11-30T23:00:00Z"), &zone, None) else {
            panic!()
        };
        assert_eq!(p.until, Some(at("2026-12-01T07:00:00Z")));
        let whole_day = Budget::new(Limits {
            quiet_hours: vec![
                QuietHours::parse("07:00-19:00").unwrap(),
                QuietHours::parse("19:00-07:00").unwrap(),
            ],
            ..Limits::default()
        });
        let Allowance::Paused(p) = whole_day.allowance(at("2026-11-30T23:00:00Z"), &zone, None)
        else {
            panic!()
        };
        assert_eq!(p.until, None, "never: the spans cover the day");
    }

    #[test]
    fn quiet_hours_end_by_the_wall_clock_on_a_night_the_clocks_change() {
        let hours = |h| chrono::FixedOffset::east_opt(h * 3600).unwrap();
        let until = |b: &Budget, now: Timestamp, zone: &Shift| match b.allowance(now, zone, None) {
            Allowance::Paused(p) => p.until.unwrap(),
            open => panic!("{open:?}"),
        };
        // Clocks go back an hour at 01:00 UTC: 07:00 comes nine hours
        // after 23:00, not eight.
        let autumn = Shift {
            at: at("2026-10-25T01:00:00Z").naive_utc(),
            before: hours(2),
            after: hours(1),
        };
        let b = quiet("22:00-07:00");
        assert_eq!(
            until(&b, at("2026-10-24T21:00:00Z"), &autumn),
            at("2026-10-25T06:00:00Z")
        );
        // Clocks go forward an hour at 01:00 UTC: 02:30 never comes; the
        // pause ends at 03:00, the first minute after it on the wall clock.
        let spring = Shift {
            at: at("2026-03-29T01:00:00Z").naive_utc(),
            before: hours(1),
            after: hours(2),
        };
        let b = quiet("22:00-02:30");
        assert_eq!(
            until(&b, at("2026-03-28T22:00:00Z"), &spring),
            at("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            b.allowance(at("2026-03-29T01:00:00Z"), &spring, None),
            Allowance::Open(None),
            "and there the node works again"
        );
    }

    #[test]
    fn the_next_quiet_hours_begin_on_the_wall_clock() {
        let zone = chrono::FixedOffset::east_opt(3600).unwrap();
        let b = quiet("22:00-07:00");
        // 20:59:30 local: they begin in 30 s, at the minute, not at the
        // minute's end.
        assert_eq!(
            b.quiet_begins(at("2026-11-30T19:59:30Z"), &zone),
            Some(at("2026-11-30T21:00:00Z"))
        );
        // 07:00 local: the next night.
        assert_eq!(
            b.quiet_begins(at("2026-12-01T06:00:00Z"), &zone),
            Some(at("2026-12-01T21:00:00Z"))
        );
        assert_eq!(
            b.quiet_begins(at("2026-11-30T23:00:00Z"), &zone),
            None,
            "inside them: paused, nothing to bound"
        );
        assert_eq!(
            Budget::new(Limits::default()).quiet_begins(at("2026-11-30T23:00:00Z"), &zone),
            None
        );
        // Clocks go forward at 01:00 UTC, skipping 02:00-03:00 local: quiet
        // hours from 02:30 begin at 03:00, the first minute that exists.
        let spring = Shift {
            at: at("2026-03-29T01:00:00Z").naive_utc(),
            before: chrono::FixedOffset::east_opt(3600).unwrap(),
            after: chrono::FixedOffset::east_opt(7200).unwrap(),
        };
        assert_eq!(
            quiet("02:30-05:00").quiet_begins(at("2026-03-28T23:00:00Z"), &spring),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn what_is_held_before_quiet_hours_is_bounded_on_top_of_the_limits() {
        assert_eq!(Allowance::Open(None).at_most(3), Allowance::Open(Some(3)));
        assert_eq!(
            Allowance::Open(Some(2)).at_most(3),
            Allowance::Open(Some(2))
        );
        assert_eq!(
            Allowance::Open(Some(5)).at_most(3),
            Allowance::Open(Some(3))
        );
        let paused = Allowance::Paused(super::super::Paused {
            why: "quiet".into(),
            until: None,
        });
        assert_eq!(paused.clone().at_most(3), paused);
    }
}
