//! Turns a problem's field path into the line to edit, using the TOML parser's own
//! spans: dotted and quoted keys, inline tables, arrays of tables and comments are the
//! parser's business, so a `[campaign]` inside a comment or `targeting.sizes = …`
//! written as a dotted key cannot mislead it.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The spans of a configuration file, parsed once per validation.
pub(super) struct Spans<'t> {
    /// `None` when the text does not parse; validation runs only on text that did, so
    /// that happens only for a hand-built `Config` (then every problem is on line 1).
    doc: Option<Spanned<DeTable<'t>>>,
}

impl<'t> Spans<'t> {
    pub(super) fn parse(text: &'t str) -> Self {
        Spans {
            doc: DeTable::parse(text).ok(),
        }
    }

    /// Byte offset of the deepest part of `field` written in the file: the key's line
    /// for `bidding.seat`, the element's for `partner[0] (x).cidrs[1]`, the table's
    /// header for `campaign[2] (c).creative` when no creative is written. 0 when not
    /// even the first key is written.
    pub(super) fn offset(&self, field: &str) -> usize {
        let Some(doc) = &self.doc else { return 0 };
        let mut best = 0;
        let mut table: Option<&DeTable> = Some(doc.get_ref());
        let mut value: Option<&Spanned<DeValue>> = None;
        for segment in segments(field) {
            if let Some(key) = segment.key {
                let Some((k, v)) = table.and_then(|t| t.get_key_value(key)) else {
                    break;
                };
                best = k.span().start;
                value = Some(v);
            }
            if let Some(index) = segment.index {
                let element = match value.map(Spanned::get_ref) {
                    Some(DeValue::Array(items)) => items.get(index),
                    _ => None,
                };
                let Some(element) = element else { break };
                best = element.span().start;
                value = Some(element);
            }
            table = match value.map(Spanned::get_ref) {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            };
        }
        best
    }
}

/// One step of a field path: a key, an index, or both (`cidrs[1]`).
#[derive(Debug, PartialEq, Eq)]
struct Segment<'f> {
    key: Option<&'f str>,
    index: Option<usize>,
}

/// Splits the field paths validation writes: keys joined by `.`, an index as `[n]`, a
/// label after an index as ` (name)` (skipped: it is for the reader), and `w/h` for
/// two keys reported together (the first is located).
fn segments(field: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = field;
    while !rest.is_empty() {
        let end = rest.find(['.', '[', ' ', '/']).unwrap_or(rest.len());
        let key = (end > 0).then(|| &rest[..end]);
        rest = &rest[end..];
        let mut index = None;
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').unwrap_or(after.len());
            index = after[..close].parse().ok();
            rest = after.get(close + 1..).unwrap_or("");
        }
        if let Some(after) = rest.strip_prefix(" (") {
            // The label is a name we wrote; it ends at the `)` that ends the segment.
            rest = match after.find(").") {
                Some(close) => &after[close + 1..],
                None => "",
            };
        }
        if let Some(after) = rest.strip_prefix('/') {
            rest = &after[after.find('.').unwrap_or(after.len())..];
        }
        out.push(Segment { key, index });
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if key.is_none() && index.is_none() {
            break; // nothing consumed: a malformed path, stop rather than loop
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, field: &str) -> usize {
        let offset = Spans::parse(text).offset(field);
        text[..offset].matches('\n').count() + 1
    }

    #[test]
    fn paths_split_into_keys_indexes_and_skip_labels() {
        let s = segments("campaign[0] (c.1).creative[1] (x).w/h");
        let keys: Vec<_> = s.iter().map(|s| (s.key, s.index)).collect();
        assert_eq!(
            keys,
            [
                (Some("campaign"), Some(0)),
                (Some("creative"), Some(1)),
                (Some("w"), None)
            ]
        );
        assert_eq!(segments("bidding.seat").len(), 2);
    }

    #[test]
    fn keys_are_found_where_the_parser_put_them() {
        let text = "\
# [bidding] in a comment must not be taken for the section
[server]
listen = \"x\"

[bidding]
\"seat\" = \"\"

[[campaign]]
id = \"c1\"
targeting.sizes = [
  \"300x250\",
  \"bad\",
]

[[campaign]]
id = \"c2\"
targeting = { sizes = [\"1x1\"] }

[[campaign.creative]]
id = \"a\"

[[campaign.creative]]
id = \"b\"
w = 0
";
        assert_eq!(line(text, "bidding.seat"), 6, "quoted key, comment above");
        assert_eq!(line(text, "server.listen"), 3);
        assert_eq!(
            line(text, "campaign[0] (c1).targeting.sizes"),
            10,
            "dotted key"
        );
        assert_eq!(line(text, "campaign[0] (c1).targeting.sizes[1]"), 12);
        assert_eq!(
            line(text, "campaign[1] (c2).targeting.sizes"),
            17,
            "inline table"
        );
        assert_eq!(line(text, "campaign[1] (c2).creative[1] (b).w/h"), 24);
        // Not written: the deepest part that is.
        assert_eq!(
            line(text, "campaign[1] (c2).creative[0] (a).adm"),
            19,
            "its header"
        );
        assert_eq!(line(text, "campaign[1] (c2).base_cpm_micros"), 15);
        assert_eq!(line(text, "notice.base_url"), 1);
    }

    #[test]
    fn unparsable_text_points_at_the_top() {
        assert_eq!(Spans::parse("[[[").offset("server.listen"), 0);
    }
}
