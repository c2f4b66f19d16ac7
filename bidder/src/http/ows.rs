//! Optional whitespace (RFC 9110 `OWS`: SP and HTAB), which header values and chunk
//! extensions may carry around their tokens.

/// Strips optional whitespace from both ends.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_strips_optional_whitespace_only() {
        assert_eq!(trim(b" \tgzip \t"), b"gzip");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b"a b"), b"a b");
    }
}
