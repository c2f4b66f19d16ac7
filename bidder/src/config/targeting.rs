//! The vocabulary of targeting, shared by the configuration (which checks it) and the
//! campaign index (which compiles it): media types, banner sizes and dayparts.

/// Hours in a week; dayparts are sets of these, hour 0 = Monday 00:00-01:00 UTC.
pub const HOURS_PER_WEEK: usize = 7 * 24;

/// Purposes TCF v2.2 defines (ids 1..=11); `consent_purposes` names only these.
pub const TCF_PURPOSES: u8 = 11;
/// Special features TCF v2.2 defines (1 precise geolocation, 2 device scanning).
pub const TCF_SPECIAL_FEATURES: u8 = 2;
/// Invalid-traffic kinds, as `allow_ivt` and `/metrics` name them (in
/// `catalog::ivt::IvtKind` order).
pub const IVT_KINDS: [&str; 4] = ["datacenter", "blocklist", "crawler", "inconsistent_device"];
/// The US opt-outs `us_opt_outs` can name.
pub const US_OPT_OUTS: [&str; 3] = ["sale", "sharing", "targeted_advertising"];

/// The four OpenRTB media types, numbered as OpenRTB 2.6 `mtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Banner = 1,
    Video = 2,
    Audio = 3,
    Native = 4,
}

impl MediaType {
    /// Every media type, in `mtype` order.
    pub const ALL: [MediaType; 4] = [
        MediaType::Banner,
        MediaType::Video,
        MediaType::Audio,
        MediaType::Native,
    ];

    /// Parses the configuration spelling (`banner`, `video`, `audio`, `native`).
    pub fn parse(name: &str) -> Option<MediaType> {
        match name {
            "banner" => Some(MediaType::Banner),
            "video" => Some(MediaType::Video),
            "audio" => Some(MediaType::Audio),
            "native" => Some(MediaType::Native),
            _ => None,
        }
    }

    /// Index 0..4 for per-media tables.
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

/// Parses a banner size `WxH` (both 1..=10000 pixels).
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once(['x', 'X'])?;
    let w: u32 = w.trim().parse().ok()?;
    let h: u32 = h.trim().parse().ok()?;
    ((1..=10_000).contains(&w) && (1..=10_000).contains(&h)).then_some((w, h))
}

/// Parses a daypart `DAYS HOURS` into the hours of the week it covers.
///
/// `DAYS` is a comma list of days or day ranges (`mon-fri`, `sat,sun`, `tue`);
/// `HOURS` is `start-end` in UTC with `end` exclusive (`08-20`, `00-24`); a range
/// that wraps midnight (`22-06`) covers the night into the next day.
pub fn parse_daypart(daypart: &str) -> Option<Vec<usize>> {
    let (days, hours) = daypart.trim().split_once(' ')?;
    let (start, end) = hours.trim().split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end: usize = end.parse().ok()?;
    if start > 23 || end > 24 || start == end {
        return None;
    }
    let mut week = Vec::new();
    for part in days.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (day_index(a)?, day_index(b)?),
            None => (day_index(part)?, day_index(part)?),
        };
        let mut day = first;
        loop {
            let span = if start < end {
                end - start
            } else {
                24 - start + end
            };
            week.extend((0..span).map(|h| (day * 24 + start + h) % HOURS_PER_WEEK));
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    week.sort_unstable();
    week.dedup();
    Some(week)
}

fn day_index(day: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| d.eq_ignore_ascii_case(day.trim()))
}

/// Hour of the week (Monday 00:00 UTC = 0) for a Unix time in seconds.
pub fn hour_of_week(unix_s: u64) -> usize {
    // 1970-01-01 was a Thursday: day index 3 when Monday is 0.
    let days = unix_s / 86_400;
    let weekday = (days + 3) % 7;
    let hour = (unix_s % 86_400) / 3_600;
    (weekday * 24 + hour) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bounds_hold() {
        assert_eq!(parse_size("300x250"), Some((300, 250)));
        assert_eq!(parse_size("728X90"), Some((728, 90)));
        for bad in ["300", "0x250", "300x", "ax250", "20000x1", ""] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn dayparts_cover_the_hours_they_name() {
        let weekdays = parse_daypart("mon-fri 08-20").unwrap();
        assert_eq!(weekdays.len(), 5 * 12);
        assert!(weekdays.contains(&8) && !weekdays.contains(&20));
        let night = parse_daypart("sun 22-06").unwrap();
        // Sunday 22:00 wraps into Monday 00:00-06:00.
        assert_eq!(night, vec![0, 1, 2, 3, 4, 5, 166, 167]);
        let weekend = parse_daypart("sat,sun 00-24").unwrap();
        assert_eq!(weekend.len(), 48);
        let wrapped_days = parse_daypart("sat-mon 00-24").unwrap();
        assert_eq!(wrapped_days.len(), 72);
        for bad in [
            "mon",
            "mon 08",
            "xyz 08-20",
            "mon 25-26",
            "mon 08-08",
            "mon 08-30",
        ] {
            assert_eq!(parse_daypart(bad), None, "{bad}");
        }
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        assert_eq!(hour_of_week(0), 3 * 24); // Thursday 1970-01-01 00:00
        assert_eq!(hour_of_week(4 * 86_400), 0); // Monday 1970-01-05 00:00
        assert_eq!(hour_of_week(4 * 86_400 + 7 * 86_400 - 1), 167);
    }
}
