//! Budget periods: the day and the hour a bid's money belongs to, in the campaign's
//! IANA time zone.
//!
//! A day is local midnight to local midnight, so it lasts 23 or 25 hours on the days
//! clocks change (jiff knows where midnight falls, and where a zone has none). An
//! hour is a local clock hour: the repeated hour of an autumn change is two periods,
//! the skipped hour of a spring change is none. Everything is milliseconds since the
//! Unix epoch, read from the injected clock by the caller.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Milliseconds in an hour.
pub const HOUR_MS: u64 = 3_600_000;

// Budget windows are reused two periods on: a reservation must end within an hour.
const _: () = assert!(crate::limits::MAX_RESERVATION_TTL_MS <= HOUR_MS);

/// The day and the hour a moment falls in, and when each ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodBounds {
    pub day_start_ms: u64,
    pub day_end_ms: u64,
    pub hour_start_ms: u64,
    pub hour_end_ms: u64,
}

/// A campaign's calendar: its time zone and the name it was configured with.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: TimeZone,
    name: String,
}

/// A time zone name the database does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone {name:?} ({source}); fix: use an IANA name such as \"UTC\" or \"America/New_York\"")]
pub struct UnknownZone {
    pub name: String,
    source: jiff::Error,
}

impl Calendar {
    /// Coordinated Universal Time: the default, with no clock changes.
    pub fn utc() -> Calendar {
        Calendar {
            zone: TimeZone::UTC,
            name: "UTC".into(),
        }
    }

    /// The calendar of an IANA zone (`America/New_York`), from the system's tzdb or
    /// the copy built in.
    pub fn named(name: &str) -> Result<Calendar, UnknownZone> {
        let zone = TimeZone::get(name).map_err(|source| UnknownZone {
            name: name.to_owned(),
            source,
        })?;
        Ok(Calendar {
            zone,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The periods `now_ms` falls in.
    pub fn bounds(&self, now_ms: u64) -> PeriodBounds {
        let (day_start_ms, day_end_ms) = self.day(now_ms);
        let (hour_start_ms, hour_end_ms) = self.hour(now_ms);
        debug_assert!(day_start_ms <= now_ms && now_ms < day_end_ms);
        debug_assert!(hour_start_ms <= now_ms && now_ms < hour_end_ms);
        PeriodBounds {
            day_start_ms,
            day_end_ms,
            hour_start_ms,
            hour_end_ms,
        }
    }

    /// Local midnight to the next local midnight around `now_ms`.
    fn day(&self, now_ms: u64) -> (u64, u64) {
        let at = timestamp(now_ms).to_zoned_datetime(self.zone.clone());
        // Both fail only at the ends of jiff's range (years ±9999), never for a clock
        // reading; a UTC day is the answer that still bounds the period.
        let start = at.start_of_day();
        let end = start
            .as_ref()
            .ok()
            .and_then(|s| s.tomorrow().ok())
            .and_then(|t| t.start_of_day().ok());
        match (start, end) {
            (Ok(start), Some(end)) => (millis(start.timestamp()), millis(end.timestamp())),
            _ => {
                let start = now_ms - now_ms % (24 * HOUR_MS);
                (start, start + 24 * HOUR_MS)
            }
        }
    }

    /// The local clock hour around `now_ms`: the offset in force now, floored to the
    /// hour of local time; it ends at the next hour or the next offset change,
    /// whichever comes first.
    fn hour(&self, now_ms: u64) -> (u64, u64) {
        let offset_ms = i64::from(self.zone.to_offset(timestamp(now_ms)).seconds()) * 1_000;
        let local_ms = now_ms as i64 + offset_ms;
        let start = (now_ms as i64 - local_ms.rem_euclid(HOUR_MS as i64)) as u64;
        let mut end = start + HOUR_MS;
        // An offset change inside the hour (every DST change) ends it early.
        let changed = self
            .zone
            .following(timestamp(now_ms))
            .next()
            .map(|t| millis(t.timestamp()));
        if let Some(change) = changed {
            if change > now_ms && change < end {
                end = change;
            }
        }
        (start, end)
    }
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

fn millis(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC instant written as RFC 3339.
    fn at(text: &str) -> u64 {
        millis(text.parse::<Timestamp>().unwrap())
    }

    #[test]
    fn a_utc_day_is_midnight_to_midnight() {
        let b = Calendar::utc().bounds(at("2026-03-09T10:30:00Z"));
        assert_eq!(b.day_start_ms, at("2026-03-09T00:00:00Z"));
        assert_eq!(b.day_end_ms, at("2026-03-10T00:00:00Z"));
        assert_eq!(b.hour_start_ms, at("2026-03-09T10:00:00Z"));
        assert_eq!(b.hour_end_ms, at("2026-03-09T11:00:00Z"));
    }

    #[test]
    fn new_york_days_follow_local_midnight_and_last_23_or_25_hours_on_changes() {
        let ny = Calendar::named("America/New_York").unwrap();
        // An ordinary winter day: midnight EST is 05:00 UTC.
        let b = ny.bounds(at("2026-01-15T04:59:59Z"));
        assert_eq!(b.day_start_ms, at("2026-01-14T05:00:00Z"));
        let b = ny.bounds(at("2026-01-15T05:00:00Z"));
        assert_eq!(b.day_start_ms, at("2026-01-15T05:00:00Z"));
        assert_eq!(b.day_end_ms - b.day_start_ms, 24 * HOUR_MS);
        // 8 March 2026: clocks spring forward at 02:00 EST; the day has 23 hours.
        let spring = ny.bounds(at("2026-03-08T12:00:00Z"));
        assert_eq!(spring.day_start_ms, at("2026-03-08T05:00:00Z"));
        assert_eq!(spring.day_end_ms, at("2026-03-09T04:00:00Z"));
        assert_eq!(spring.day_end_ms - spring.day_start_ms, 23 * HOUR_MS);
        // 1 November 2026: clocks fall back at 02:00 EDT; the day has 25 hours.
        let autumn = ny.bounds(at("2026-11-01T12:00:00Z"));
        assert_eq!(autumn.day_start_ms, at("2026-11-01T04:00:00Z"));
        assert_eq!(autumn.day_end_ms - autumn.day_start_ms, 25 * HOUR_MS);
    }

    #[test]
    fn the_repeated_autumn_hour_is_two_periods_and_the_skipped_spring_hour_none() {
        let ny = Calendar::named("America/New_York").unwrap();
        // 01:30 EDT and 01:30 EST are an hour apart and in different hours.
        let first = ny.bounds(at("2026-11-01T05:30:00Z"));
        let second = ny.bounds(at("2026-11-01T06:30:00Z"));
        assert_eq!(first.hour_start_ms, at("2026-11-01T05:00:00Z"));
        assert_eq!(first.hour_end_ms, at("2026-11-01T06:00:00Z"));
        assert_eq!(second.hour_start_ms, at("2026-11-01T06:00:00Z"));
        // Spring: 01:59 EST is followed by 03:00 EDT, one instant later.
        let before = ny.bounds(at("2026-03-08T06:59:00Z"));
        let after = ny.bounds(at("2026-03-08T07:00:00Z"));
        assert_eq!(before.hour_end_ms, after.hour_start_ms);
        assert_eq!(after.hour_start_ms, at("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn half_hour_zones_start_hours_at_local_hours() {
        let kolkata = Calendar::named("Asia/Kolkata").unwrap();
        let b = kolkata.bounds(at("2026-06-01T10:10:00Z")); // 15:40 local
        assert_eq!(b.hour_start_ms, at("2026-06-01T09:30:00Z"));
        assert_eq!(b.day_start_ms, at("2026-05-31T18:30:00Z"));
    }

    #[test]
    fn an_unknown_zone_names_itself_and_the_fix() {
        let e = Calendar::named("Mars/Olympus_Mons")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mars/Olympus_Mons") && e.contains("fix:"), "{e}");
    }
}
