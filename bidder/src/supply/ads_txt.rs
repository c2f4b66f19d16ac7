//! ads.txt and app-ads.txt (IAB Tech Lab ads.txt 1.1): which advertising systems may
//! sell a publisher's inventory, under which of their accounts, and how.
//!
//! A record is `<system domain>, <account id>, <DIRECT|RESELLER>[, <authority id>]`
//! (an extension after `;` is ignored); a variable is `NAME=value` (we keep
//! `OWNERDOMAIN` and `MANAGERDOMAIN`); `#` starts a comment. A line that is none of
//! these is skipped, as the spec asks, and counted.

use rustc_hash::FxHashMap;

/// The seller is the publisher's own account on that system.
pub const DIRECT: u8 = 1;
/// The system's account resells the publisher's inventory.
pub const RESELLER: u8 = 2;

/// One parsed ads.txt file.
#[derive(Debug, Default)]
pub struct AdsTxt {
    /// System domain (lower case) → account id (as written) → `DIRECT | RESELLER` bits.
    systems: FxHashMap<Box<str>, FxHashMap<Box<str>, u8>>,
    /// `OWNERDOMAIN`: the business domain of the publisher.
    pub owner_domain: Option<Box<str>>,
    /// `MANAGERDOMAIN` values: who manages the publisher's inventory.
    pub manager_domains: Vec<Box<str>>,
    /// Records kept.
    pub records: usize,
    /// Lines that were neither a record, a variable nor a comment.
    pub skipped_lines: usize,
}

impl AdsTxt {
    /// Parses a file. Fails only on what cannot be an ads.txt at all (an HTML page
    /// served with 200, a file with no record and unparseable lines): a crawler must not
    /// read a soft-404 page as "authorises no one".
    pub fn parse(text: &str) -> Result<AdsTxt, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let head = text
            .trim_start()
            .get(..15)
            .unwrap_or("")
            .to_ascii_lowercase();
        if head.starts_with("<!doctype html") || head.starts_with("<html") {
            return Err("an HTML page, not an ads.txt file".into());
        }
        let mut file = AdsTxt::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if file.record(line) || file.variable(line) {
                continue;
            }
            file.skipped_lines += 1;
        }
        if file.records == 0 && file.skipped_lines > 0 {
            return Err(format!(
                "no record in {} non-comment lines: not an ads.txt file",
                file.skipped_lines
            ));
        }
        Ok(file)
    }

    /// How `system` (a domain, any case) may sell under `account`: `DIRECT`,
    /// `RESELLER`, both, or 0 (not authorised). Allocates nothing.
    pub fn relationship(&self, system_lowercase: &str, account: &str) -> u8 {
        self.systems
            .get(system_lowercase)
            .and_then(|accounts| accounts.get(account))
            .copied()
            .unwrap_or(0)
    }

    fn record(&mut self, line: &str) -> bool {
        let line = line.split(';').next().unwrap_or("");
        let mut fields = line.split(',').map(str::trim);
        let (Some(domain), Some(account), Some(kind)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let bit = if kind.eq_ignore_ascii_case("DIRECT") {
            DIRECT
        } else if kind.eq_ignore_ascii_case("RESELLER") {
            RESELLER
        } else {
            return false;
        };
        if domain.is_empty() || account.is_empty() || domain.contains(char::is_whitespace) {
            return false;
        }
        *self
            .systems
            .entry(domain.to_ascii_lowercase().into())
            .or_default()
            .entry(account.into())
            .or_default() |= bit;
        self.records += 1;
        true
    }

    fn variable(&mut self, line: &str) -> bool {
        let Some((name, value)) = line.split_once('=') else {
            return false;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || name.contains(char::is_whitespace) || value.is_empty() {
            return false;
        }
        if name.eq_ignore_ascii_case("OWNERDOMAIN") {
            self.owner_domain = Some(value.to_ascii_lowercase().into());
        } else if name.eq_ignore_ascii_case("MANAGERDOMAIN") {
            // `MANAGERDOMAIN=domain[,country]`: the domain is what identifies it.
            let domain = value.split(',').next().unwrap_or(value).trim();
            self.manager_domains
                .push(domain.to_ascii_lowercase().into());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\u{feff}# ads.txt for example.com\r\n\
        OWNERDOMAIN=Example.com\r\n\
        MANAGERDOMAIN=manager.example, US\n\
        CONTACT=ads@example.com\n\
        Exchange-A.com, pub-123, DIRECT, f08c47fec0942fa0 # our main seller\n\
        exchange-b.com,   9876 , reseller\n\
        exchange-b.com, 9876, DIRECT;extension-data\n\
        this line is nonsense\n\
        exchange-c.com, 1, PARTNER\n";

    #[test]
    fn records_variables_comments_and_junk() {
        let f = AdsTxt::parse(FILE).unwrap();
        assert_eq!(f.relationship("exchange-a.com", "pub-123"), DIRECT);
        assert_eq!(
            f.relationship("exchange-a.com", "PUB-123"),
            0,
            "ids are exact"
        );
        assert_eq!(f.relationship("exchange-b.com", "9876"), DIRECT | RESELLER);
        assert_eq!(
            f.relationship("exchange-c.com", "1"),
            0,
            "unknown relationship"
        );
        assert_eq!(f.records, 3);
        assert_eq!(f.skipped_lines, 2);
        assert_eq!(f.owner_domain.as_deref(), Some("example.com"));
        assert_eq!(f.manager_domains, vec![Box::from("manager.example")]);
    }

    #[test]
    fn an_html_page_or_a_file_of_junk_is_not_an_ads_txt() {
        assert!(
            AdsTxt::parse("<!DOCTYPE html><html><body>Not found</body></html>")
                .unwrap_err()
                .contains("HTML")
        );
        assert!(AdsTxt::parse("hello\nworld\n")
            .unwrap_err()
            .contains("no record"));
        let empty = AdsTxt::parse("# nobody is authorised\n").unwrap();
        assert_eq!(empty.records, 0);
    }
}
