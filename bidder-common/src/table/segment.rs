//! Market segments: the parts of the bid stream whose prices differ the most, so the
//! controller learns a win curve and sets a shading for each apart.
//!
//! A segment is an impression's channel (site, app, DOOH), its size and the device's
//! country, packed into a non-zero `u64` that both processes read the same way (the
//! agent shows it as `site 300x250 USA`). The stats table carries the notice counts of
//! a campaign's first [`SEGMENTS_PER_CAMPAIGN`] segments, the strategy table a
//! shading for each; everything else is counted and priced at the campaign's level.

use core::fmt;

/// Segments each campaign row has room for, in both tables.
pub const SEGMENTS_PER_CAMPAIGN: usize = 8;

/// Where an impression shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Unknown = 0,
    Site = 1,
    App = 2,
    Dooh = 3,
}

/// Widths and heights above this (pixels) count as this.
pub const MAX_SEGMENT_SIDE: u32 = (1 << 14) - 1;

/// A packed segment: bit 45 set (so no segment is 0), the channel in bits 43–44, the
/// width in 29–42, the height in 15–28, and the country's three letters (`A`–`Z` as
/// 1–26, 0 when unknown) in 0–14. [`SegmentKey::NONE`] is no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SegmentKey(pub u64);

const PRESENT: u64 = 1 << 45;

impl SegmentKey {
    pub const NONE: SegmentKey = SegmentKey(0);

    /// The segment of an impression of `w`×`h` (0×0 when it has no size, e.g. native)
    /// on `channel`, to a device in `country` (ISO 3166-1 alpha-3; anything else
    /// counts as unknown).
    pub fn new(channel: Channel, w: u32, h: u32, country: Option<&str>) -> SegmentKey {
        let side = |x: u32| u64::from(x.min(MAX_SEGMENT_SIDE));
        let letters = match country.map(str::as_bytes) {
            Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_alphabetic) => {
                [a, b, c].iter().fold(0u64, |acc, l| {
                    acc << 5 | u64::from(l.to_ascii_uppercase() - b'A' + 1)
                })
            }
            _ => 0,
        };
        SegmentKey(PRESENT | (channel as u64) << 43 | side(w) << 29 | side(h) << 15 | letters)
    }

    pub fn is_none(self) -> bool {
        self.0 & PRESENT == 0
    }

    pub fn channel(self) -> Channel {
        match (self.0 >> 43) & 3 {
            1 => Channel::Site,
            2 => Channel::App,
            3 => Channel::Dooh,
            _ => Channel::Unknown,
        }
    }

    pub fn size(self) -> (u32, u32) {
        let side = |shift: u32| ((self.0 >> shift) as u32) & MAX_SEGMENT_SIDE;
        (side(29), side(15))
    }

    /// The country's letters, `None` when unknown.
    pub fn country(self) -> Option<[u8; 3]> {
        let letter = |i: u32| ((self.0 >> (10 - 5 * i)) & 31) as u8;
        let l = [letter(0), letter(1), letter(2)];
        l.iter()
            .all(|&x| (1..=26).contains(&x))
            .then(|| l.map(|x| b'A' + x - 1))
    }
}

/// `site 300x250 USA`; `none` for [`SegmentKey::NONE`].
impl fmt::Display for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let channel = match self.channel() {
            Channel::Site => "site",
            Channel::App => "app",
            Channel::Dooh => "dooh",
            Channel::Unknown => "unknown",
        };
        let (w, h) = self.size();
        write!(f, "{channel} {w}x{h} ")?;
        match self.country() {
            Some(c) => f.write_str(core::str::from_utf8(&c).unwrap_or("???")),
            None => f.write_str("anywhere"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn a_segment_reads_back_what_was_packed() {
        let s = SegmentKey::new(Channel::App, 320, 50, Some("deu"));
        assert!(!s.is_none());
        assert_eq!(s.channel(), Channel::App);
        assert_eq!(s.size(), (320, 50));
        assert_eq!(s.country(), Some(*b"DEU"));
        assert_eq!(format!("{s}"), "app 320x50 DEU");
        assert_eq!(s, SegmentKey::new(Channel::App, 320, 50, Some("DEU")));
        assert_ne!(s, SegmentKey::new(Channel::Site, 320, 50, Some("DEU")));
    }

    #[test]
    fn odd_inputs_make_a_segment_without_them() {
        let s = SegmentKey::new(Channel::Unknown, 0, 0, Some("US"));
        assert!(!s.is_none(), "every impression has a segment");
        assert_eq!(s.country(), None);
        assert_eq!(format!("{s}"), "unknown 0x0 anywhere");
        let huge = SegmentKey::new(Channel::Dooh, 100_000, 7, Some("U$A"));
        assert_eq!(huge.size(), (MAX_SEGMENT_SIDE, 7));
        assert_eq!(huge.country(), None);
        assert!(SegmentKey::NONE.is_none());
        assert_eq!(format!("{}", SegmentKey::NONE), "none");
    }
}
