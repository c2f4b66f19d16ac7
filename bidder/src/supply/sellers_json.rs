//! sellers.json (IAB Tech Lab 1.0): the accounts an advertising system pays out to,
//! each a `PUBLISHER` (sells its own inventory), an `INTERMEDIARY` (resells) or `BOTH`.
//! Confidential sellers are listed without a name; they are still sellers.

use std::borrow::Cow;

use rustc_hash::FxHashMap;
use serde::Deserialize;

/// What a seller's account is to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellerType {
    Publisher,
    Intermediary,
    Both,
}

impl SellerType {
    /// Whether an account of this type may be the first node of a chain (the
    /// publisher's own, `DIRECT` in ads.txt).
    pub fn may_sell_direct(self) -> bool {
        matches!(self, SellerType::Publisher | SellerType::Both)
    }

    /// Whether it may appear later in a chain, reselling.
    pub fn may_resell(self) -> bool {
        matches!(self, SellerType::Intermediary | SellerType::Both)
    }
}

/// One seller entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seller {
    pub seller_type: SellerType,
    pub confidential: bool,
}

/// One parsed sellers.json file.
#[derive(Debug, Default)]
pub struct SellersJson {
    sellers: FxHashMap<Box<str>, Seller>,
    /// Entries without a usable `seller_id` or `seller_type`.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawFile<'a> {
    #[serde(borrow)]
    sellers: Vec<RawSeller<'a>>,
}

#[derive(Deserialize)]
struct RawSeller<'a> {
    #[serde(default, borrow)]
    seller_id: Option<Id<'a>>,
    #[serde(default, borrow)]
    seller_type: Option<Cow<'a, str>>,
    #[serde(default)]
    is_confidential: Option<serde_json::Value>,
}

/// `seller_id` is a string in the spec; some systems write numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(serde_json::Number),
}

impl SellersJson {
    /// Parses a file; an error says where the JSON breaks.
    pub fn parse(bytes: &[u8]) -> Result<SellersJson, String> {
        let raw: RawFile<'_> =
            serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
        let mut file = SellersJson::default();
        for s in raw.sellers {
            let id = match &s.seller_id {
                Some(Id::Text(t)) => t.trim().to_owned(),
                Some(Id::Number(n)) => n.to_string(),
                None => String::new(),
            };
            let seller_type = match s.seller_type.as_deref().map(str::trim) {
                Some(t) if t.eq_ignore_ascii_case("PUBLISHER") => Some(SellerType::Publisher),
                Some(t) if t.eq_ignore_ascii_case("INTERMEDIARY") => Some(SellerType::Intermediary),
                Some(t) if t.eq_ignore_ascii_case("BOTH") => Some(SellerType::Both),
                _ => None,
            };
            let (Some(seller_type), false) = (seller_type, id.is_empty()) else {
                file.skipped += 1;
                continue;
            };
            let confidential = match s.is_confidential {
                Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
                Some(serde_json::Value::Bool(b)) => b,
                _ => false,
            };
            file.sellers.insert(
                id.into(),
                Seller {
                    seller_type,
                    confidential,
                },
            );
        }
        Ok(file)
    }

    /// The seller with this id (exact), if listed.
    pub fn seller(&self, seller_id: &str) -> Option<Seller> {
        self.sellers.get(seller_id).copied()
    }

    /// Sellers listed.
    pub fn len(&self) -> usize {
        self.sellers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sellers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sellers_by_id_with_types_and_confidential_entries() {
        let f = SellersJson::parse(
            br#"{"contact_email":"x@exchange-a.com","version":"1.0","identifiers":[{"name":"TAG-ID","value":"abc"}],
            "sellers":[
              {"seller_id":"pub-123","name":"Example","domain":"example.com","seller_type":"PUBLISHER"},
              {"seller_id":77,"seller_type":"intermediary","name":"Resale Co","domain":"resale.example"},
              {"seller_id":"c-9","seller_type":"BOTH","is_confidential":1},
              {"seller_id":"","seller_type":"PUBLISHER"},
              {"seller_id":"x","seller_type":"ADVERTISER"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.skipped, 2);
        assert_eq!(
            f.seller("pub-123").unwrap().seller_type,
            SellerType::Publisher
        );
        assert_eq!(
            f.seller("77").unwrap().seller_type,
            SellerType::Intermediary
        );
        assert!(f.seller("c-9").unwrap().confidential);
        assert_eq!(f.seller("PUB-123"), None);
    }

    #[test]
    fn bad_json_is_an_error_that_says_where() {
        let e = SellersJson::parse(br#"{"sellers":[{"seller_id":"1",}"#).unwrap_err();
        assert!(e.starts_with("bad JSON") && e.contains("line 1"), "{e}");
        assert!(SellersJson::parse(b"{}").is_err(), "no sellers list");
    }
}
