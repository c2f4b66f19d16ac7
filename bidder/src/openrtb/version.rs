//! The OpenRTB version a partner speaks, as the `x-openrtb-version` response header
//! states it.
//!
//! Partners pin the version in their config; an exchange on 2.5 may refuse or misread
//! an answer that claims 2.6, so every answer to an identified partner carries the
//! partner's own version. The set is closed so the HTTP layer can keep one canned
//! response table per version, built at compile time.

/// An OpenRTB version we answer in. `Copy` and one byte: it rides in the catalog's
/// partner and in each worker's response buffer at no cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenRtbVersion {
    /// OpenRTB 2.5: still what many SSPs send and expect back.
    V2_5,
    /// OpenRTB 2.6: what the model and encoder follow; also the answer when no partner
    /// is known (route miss, malformed HTTP, an unrecognised source address) and the
    /// default of a partner's `openrtb_version`.
    #[default]
    V2_6,
}

impl OpenRtbVersion {
    /// All versions, in [`OpenRtbVersion::index`] order; per-version tables have
    /// `ALL.len()` rows.
    pub const ALL: [OpenRtbVersion; 2] = [OpenRtbVersion::V2_5, OpenRtbVersion::V2_6];

    /// Position in [`OpenRtbVersion::ALL`], for per-version tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The value of the `x-openrtb-version` header, and the spelling of the config's
    /// `openrtb_version`, e.g. `"2.5"`.
    pub const fn header_value(self) -> &'static str {
        match self {
            OpenRtbVersion::V2_5 => "2.5",
            OpenRtbVersion::V2_6 => "2.6",
        }
    }

    /// The version spelled `text` as in the config, or `None` for one we do not
    /// support (config validation reports it).
    pub fn parse(text: &str) -> Option<OpenRtbVersion> {
        OpenRtbVersion::ALL
            .into_iter()
            .find(|v| v.header_value() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, v) in OpenRtbVersion::ALL.iter().enumerate() {
            assert_eq!(v.index(), i);
        }
    }

    #[test]
    fn parse_reads_back_every_header_value_and_refuses_others() {
        for v in OpenRtbVersion::ALL {
            assert_eq!(OpenRtbVersion::parse(v.header_value()), Some(v));
        }
        for text in ["", "2", "2.4", "3.0", " 2.6", "2.6 "] {
            assert_eq!(OpenRtbVersion::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_default_is_2_6() {
        assert_eq!(OpenRtbVersion::default().header_value(), "2.6");
    }
}
