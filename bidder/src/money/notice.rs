//! Signed notice URLs: win (`nurl`), billing (`burl`) and loss (`lurl`).
//!
//! Every bid carries three URLs the exchange calls back: on a win, when the impression
//! is billable, and on a loss. They settle budget reservations, so a notice must be
//! ours: each URL carries the bid's own fields (bid id, impression id, campaign id, our
//! bid price in micros) and an HMAC-SHA256 tag over them. The notice endpoint
//! recomputes the tag and drops anything forged or edited. The exchange's macros
//! (`${AUCTION_PRICE}` and friends) ride along unsigned, since the exchange fills them
//! in after we sign.
//!
//! Each kind has its own tag, so whoever sees one URL (a win URL in a log, a proxy, a
//! creative's pixel) cannot make another kind of it: a loss URL built from a win URL
//! fails. One HMAC per bid still suffices on the hot path: its 32-byte output is cut
//! into three disjoint [`TAG_BYTES`] slices, win, bill and loss, and HMAC's output bits
//! are independent, so one slice tells nothing about the others.
//!
//! URL shape (`/bill` and `/loss` alike; `/win` adds the min-to-win macro, `/loss`
//! the loss reason and min-to-win — the market's price, which the controller learns
//! from, see `feedback.rs`):
//!
//! ```text
//! {base}/win?bid=<bid id>&imp=<imp id>&cid=<campaign id>&px=<price micros>&sig=<tag hex>
//!     &price=${AUCTION_PRICE}&auction=${AUCTION_ID}&aimp=${AUCTION_IMP_ID}
//!     &abid=${AUCTION_BID_ID}&seat=${AUCTION_SEAT_ID}&cur=${AUCTION_CURRENCY}
//!     [&mtw=${AUCTION_MIN_TO_WIN}]                                   (win)
//!     [&loss=${AUCTION_LOSS}&mtw=${AUCTION_MIN_TO_WIN}]              (loss)
//! ```

use std::borrow::Cow;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::money;
use crate::money::bid_id::{BidId, BidIdText};

/// Bytes of the HMAC-SHA256 output in one kind's tag: 80 bits, 2^80 guesses, is out of
/// reach of an online forger at any request rate (a million a second for 38 billion
/// years), and three tags fit one 32-byte output.
pub const TAG_BYTES: usize = 10;
const _: () = assert!(3 * TAG_BYTES <= 32);
pub use crate::limits::MAX_BASE_URL_BYTES;
pub use crate::limits::MAX_NOTICE_IMP_ID_BYTES;
pub use crate::limits::MAX_QUERY_BYTES;
pub use crate::limits::MIN_NOTICE_KEY_BYTES;

/// Versions the signed layout. Kept to two bytes so that a typical bid's signed input
/// (version, bid id, price, two short ids) fits one SHA-256 block: two compressions per
/// bid instead of three on the hot path.
const LAYOUT_VERSION: &[u8] = b"N2";
/// Text length of a tag in hex.
const TAG_HEX_LEN: usize = 2 * TAG_BYTES;
/// Decimal digits of the largest `i64`.
const MAX_I64_DIGITS: usize = 19;

/// Query keys of our signed fields.
const KEY_BID: &str = "bid";
const KEY_IMP: &str = "imp";
const KEY_CAMPAIGN: &str = "cid";
const KEY_PRICE: &str = "px";
const KEY_TAG: &str = "sig";

/// The exchange macros every notice ends with, as one string so the hot path copies
/// them at once. Keys are parsed back in [`RawNotice::slot`].
const COMMON_MACROS: &str = concat!(
    "&price=${AUCTION_PRICE}",
    "&auction=${AUCTION_ID}",
    "&aimp=${AUCTION_IMP_ID}",
    "&abid=${AUCTION_BID_ID}",
    "&seat=${AUCTION_SEAT_ID}",
    "&cur=${AUCTION_CURRENCY}",
);
/// What a win notice adds after [`COMMON_MACROS`]: the price that would have tied
/// the next bid (OpenRTB 2.6 §4.4); a first-price win's own price says nothing more.
const WIN_MACROS: &str = "&mtw=${AUCTION_MIN_TO_WIN}";
/// The macros only a loss notice carries, after [`COMMON_MACROS`].
const LOSS_MACROS: &str = concat!("&loss=${AUCTION_LOSS}", "&mtw=${AUCTION_MIN_TO_WIN}");

/// Which notice a URL is for; each has its own path under the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// `nurl`: the exchange says we won (clearing price in `${AUCTION_PRICE}`).
    Win,
    /// `burl`: the impression is billable; this is what spends budget.
    Bill,
    /// `lurl`: we lost; carries the loss reason and the price that would have won.
    Loss,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 3] = [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss];

    /// The path under the base URL that the notice endpoint routes on.
    pub fn path(self) -> &'static str {
        match self {
            NoticeKind::Win => "/win",
            NoticeKind::Bill => "/bill",
            NoticeKind::Loss => "/loss",
        }
    }
}

/// The fields of one bid that its notices carry and the tag covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeFields<'a> {
    pub bid_id: BidId,
    /// The request's `imp.id`; percent-encoded in the URL, so any text is safe.
    pub imp_id: &'a str,
    /// The campaign whose budget the notice settles.
    pub campaign_id: &'a str,
    /// Our bid price, CPM in micros of the response currency; never negative.
    pub price_micros: i64,
}

/// One bid's notice fields with their tag: computed once per bid by
/// [`NoticeSigner::sign`] and written into all three of its URLs. The text forms are
/// kept ready so each URL is a handful of copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedNotice<'a> {
    fields: NoticeFields<'a>,
    bid_id_text: BidIdText,
    /// One tag per [`NoticeKind`], in [`NoticeKind::ALL`] order.
    tag_hex: [[u8; TAG_HEX_LEN]; 3],
}

/// Why a signer could not be built. Raised at start-up or config reload, never later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    #[error("notice signing key is {0} bytes; it must be at least {MIN_NOTICE_KEY_BYTES}")]
    KeyTooShort(usize),
    #[error("notice base URL must start with http:// or https://")]
    BaseUrlScheme,
    #[error("notice base URL is {0} bytes; at most {MAX_BASE_URL_BYTES}")]
    BaseUrlTooLong(usize),
    #[error("notice base URL has a forbidden character at byte {0} (spaces, quotes, backslash, '?', '#', non-ASCII)")]
    BaseUrlCharacter(usize),
    #[error("notice base URL must not end with '/'; the notice paths add it")]
    BaseUrlTrailingSlash,
}

/// Why an incoming notice was refused. The endpoint answers 400 and counts the reason;
/// `BadTag` in particular is the forged-or-edited counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("notice query is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    #[error("notice query lacks `{0}`")]
    Missing(&'static str),
    #[error("notice query repeats `{0}`")]
    Duplicate(&'static str),
    #[error("notice field `{0}` is malformed")]
    Malformed(&'static str),
    #[error("notice signature does not match its fields")]
    BadTag,
}

/// A verified notice: our fields, proven to be ones we signed, and the exchange's macro
/// values as it sent them (unverified: the exchange chose them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<'q> {
    /// Its timestamp lets the endpoint refuse notices older than any reservation.
    pub bid_id: BidId,
    /// Percent-decoded; borrowed from the query unless it had escapes.
    pub imp_id: Cow<'q, str>,
    pub campaign_id: Cow<'q, str>,
    /// Our bid price in micros: the most the exchange may charge.
    pub price_micros: i64,
    /// What the exchange substituted for its macros.
    pub auction: AuctionValues<'q>,
}

/// The exchange's substitutions, raw from the query; `None` when the key was absent.
/// An exchange that does not support a macro may leave it unsubstituted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuctionValues<'q> {
    /// `${AUCTION_PRICE}`: the clearing price (CPM), possibly encrypted by the exchange.
    pub price: Option<&'q str>,
    /// `${AUCTION_ID}`: the request id.
    pub auction_id: Option<&'q str>,
    /// `${AUCTION_IMP_ID}`: the impression id.
    pub imp_id: Option<&'q str>,
    /// `${AUCTION_BID_ID}`: the response's `bidid`.
    pub bid_id: Option<&'q str>,
    /// `${AUCTION_SEAT_ID}`: the seat that bid.
    pub seat_id: Option<&'q str>,
    /// `${AUCTION_CURRENCY}`: the currency of `price`.
    pub currency: Option<&'q str>,
    /// `${AUCTION_LOSS}`: the OpenRTB loss reason code (loss notices only).
    pub loss: Option<&'q str>,
    /// `${AUCTION_MIN_TO_WIN}`: the price that would have won (loss notices only).
    pub min_to_win: Option<&'q str>,
}

impl AuctionValues<'_> {
    /// The clearing price in micros, if the exchange substituted a plain decimal CPM,
    /// read exactly (digits past the sixth decimal round up: we charge at least what
    /// the exchange bills). `None` for an absent, unsubstituted, negative, absurd or
    /// encrypted price: the caller then settles at our bid price, which the tag vouches
    /// for.
    pub fn clearing_price_micros(&self) -> Option<i64> {
        cpm_micros(self.price?)
    }

    /// `${AUCTION_MIN_TO_WIN}` in micros of the notice's currency: the price that
    /// would have tied the best other offer. `None` when absent, empty (exchanges may
    /// withhold it), unsubstituted or unreadable.
    pub fn min_to_win_micros(&self) -> Option<i64> {
        cpm_micros(self.min_to_win?)
    }
}

/// A CPM price an exchange filled into a macro, in micros; `None` if unreadable or
/// outside `0..=MAX_CPM_MICROS`.
fn cpm_micros(text: &str) -> Option<i64> {
    let micros = money::parse_millionths(text, money::ExtraDecimals::RoundUp).ok()?;
    (0..=money::MAX_CPM_MICROS)
        .contains(&micros)
        .then_some(micros)
}

/// Signs notice URLs on the hot path and verifies them at the notice endpoint. Built
/// once per config load; cloned per worker (the keyed HMAC state is a few hundred bytes).
#[derive(Clone)]
pub struct NoticeSigner {
    /// HMAC state with the key already absorbed: each tag clones it, saving the two
    /// key-block compressions per bid.
    keyed: Hmac<Sha256>,
    /// `{base}{path}?bid=` for each [`NoticeKind`], in [`NoticeKind::ALL`] order.
    url_prefixes: [Box<[u8]>; 3],
}

impl NoticeSigner {
    /// A signer for `key` whose URLs live under `base_url` (scheme and host, optionally a
    /// path, no trailing slash, no query). The base URL is checked here so that the hot
    /// path can copy it into JSON strings without escaping.
    pub fn new(key: &[u8], base_url: &str) -> Result<Self, SignerError> {
        if key.len() < MIN_NOTICE_KEY_BYTES {
            return Err(SignerError::KeyTooShort(key.len()));
        }
        check_base_url(base_url)?;
        let keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        let url_prefixes = NoticeKind::ALL.map(|kind| {
            format!("{base_url}{}?{KEY_BID}=", kind.path())
                .into_bytes()
                .into()
        });
        Ok(NoticeSigner {
            keyed,
            url_prefixes,
        })
    }

    /// Signs one bid's fields, for [`NoticeSigner::write_url`]. The imp id is the
    /// exchange's and unbounded: it is signed and sent cut to [`signed_imp_id`], so
    /// every URL we write fits what [`NoticeSigner::verify`] reads back.
    pub fn sign<'a>(&self, fields: &NoticeFields<'a>) -> SignedNotice<'a> {
        let fields = &NoticeFields {
            imp_id: signed_imp_id(fields.imp_id),
            ..*fields
        };
        let digest = self.mac(fields).finalize().into_bytes();
        let mut tag_hex = [[0u8; TAG_HEX_LEN]; 3];
        for kind in NoticeKind::ALL {
            let hex = &mut tag_hex[kind as usize];
            for (pair, &byte) in hex.chunks_exact_mut(2).zip(kind_tag(&digest, kind)) {
                pair.copy_from_slice(&hex_pair(byte));
            }
        }
        SignedNotice {
            fields: *fields,
            bid_id_text: fields.bid_id.to_text(),
            tag_hex,
        }
    }

    /// Appends the `kind` notice URL for `fields` to `out`. Allocates nothing when `out`
    /// has room. The URL holds only printable ASCII without quotes or backslashes, so it
    /// can sit inside a JSON string as is.
    pub fn write_url(&self, kind: NoticeKind, signed: &SignedNotice<'_>, out: &mut Vec<u8>) {
        let fields = &signed.fields;
        out.extend_from_slice(&self.url_prefixes[kind as usize]);
        out.extend_from_slice(signed.bid_id_text.as_bytes());
        write_param(out, KEY_IMP);
        percent_encode(fields.imp_id.as_bytes(), out);
        write_param(out, KEY_CAMPAIGN);
        percent_encode(fields.campaign_id.as_bytes(), out);
        write_param(out, KEY_PRICE);
        write_i64(fields.price_micros, out);
        write_param(out, KEY_TAG);
        out.extend_from_slice(&signed.tag_hex[kind as usize]);
        out.extend_from_slice(COMMON_MACROS.as_bytes());
        let extra = match kind {
            NoticeKind::Win => WIN_MACROS,
            NoticeKind::Bill => "",
            NoticeKind::Loss => LOSS_MACROS,
        };
        out.extend_from_slice(extra.as_bytes());
    }

    /// Parses an incoming `kind` notice's query string (the part after `?`) and checks
    /// its tag, the one of that kind, in constant time. Unknown keys are ignored
    /// (exchanges append their own); a repeated known key is refused, so no two readers
    /// can disagree on a field.
    pub fn verify<'q>(&self, kind: NoticeKind, query: &'q str) -> Result<Notice<'q>, NoticeError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(NoticeError::TooLong);
        }
        let raw = RawNotice::parse(query)?;
        let bid_id = required(raw.bid, KEY_BID)?
            .parse::<BidId>()
            .map_err(|_| NoticeError::Malformed(KEY_BID))?;
        let imp_id = percent_decode(required(raw.imp, KEY_IMP)?, KEY_IMP)?;
        let campaign_id = percent_decode(required(raw.campaign, KEY_CAMPAIGN)?, KEY_CAMPAIGN)?;
        let price_micros = parse_micros(required(raw.price, KEY_PRICE)?)?;
        let tag = decode_tag(required(raw.tag, KEY_TAG)?)?;
        let fields = NoticeFields {
            bid_id,
            imp_id: &imp_id,
            campaign_id: &campaign_id,
            price_micros,
        };
        let digest = self.mac(&fields).finalize().into_bytes();
        if !same_bytes(kind_tag(&digest, kind), &tag) {
            return Err(NoticeError::BadTag);
        }
        Ok(Notice {
            bid_id,
            imp_id,
            campaign_id,
            price_micros,
            auction: raw.auction,
        })
    }

    /// The keyed MAC over `fields`, ready to finalize or verify. Variable-length fields
    /// carry a varint length prefix (one byte below 128) so no two field sets hash
    /// alike.
    fn mac(&self, fields: &NoticeFields<'_>) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(LAYOUT_VERSION);
        mac.update(&fields.bid_id.to_be_bytes());
        mac.update(&fields.price_micros.to_be_bytes());
        for field in [fields.imp_id, fields.campaign_id] {
            let (prefix, len) = varint(field.len() as u64);
            mac.update(&prefix[..len]);
            mac.update(field.as_bytes());
        }
        mac
    }
}

/// The slice of a bid's HMAC output that is `kind`'s tag.
fn kind_tag(digest: &[u8], kind: NoticeKind) -> &[u8] {
    let at = kind as usize * TAG_BYTES;
    &digest[at..at + TAG_BYTES]
}

/// Equality in time independent of where the bytes differ, so answer times tell a
/// forger nothing about how much of a tag (or an admin token) was right.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The part of an imp id a notice carries: at most [`MAX_NOTICE_IMP_ID_BYTES`], cut on
/// a character boundary. (The bid id identifies the bid; the imp id is for people.)
pub fn signed_imp_id(imp_id: &str) -> &str {
    if imp_id.len() <= MAX_NOTICE_IMP_ID_BYTES {
        return imp_id;
    }
    let end = (0..=MAX_NOTICE_IMP_ID_BYTES)
        .rev()
        .find(|&i| imp_id.is_char_boundary(i))
        .unwrap_or(0);
    &imp_id[..end]
}

/// The longest query string [`NoticeSigner::write_url`] writes before the exchange
/// substitutes its macros: every field at its bound, every byte of the imp id
/// percent-encoded, and campaign ids as configuration allows them (identifiers of at
/// most 64 bytes, written as they are).
pub const MAX_SIGNED_QUERY_BYTES: usize = KEY_BID.len()
    + 1
    + BidId::TEXT_LEN
    + KEY_IMP.len()
    + 2
    + 3 * MAX_NOTICE_IMP_ID_BYTES
    + KEY_CAMPAIGN.len()
    + 2
    + 64
    + KEY_PRICE.len()
    + 2
    + 20
    + KEY_TAG.len()
    + 2
    + TAG_HEX_LEN
    + COMMON_MACROS.len()
    + LOSS_MACROS.len();
const _: () = assert!(WIN_MACROS.len() <= LOSS_MACROS.len());

// What exchanges substitute for the macros (prices, ids, currencies) must fit too.
const _: () = assert!(MAX_SIGNED_QUERY_BYTES + 2_048 <= MAX_QUERY_BYTES);

fn check_base_url(base_url: &str) -> Result<(), SignerError> {
    if base_url.len() > MAX_BASE_URL_BYTES {
        return Err(SignerError::BaseUrlTooLong(base_url.len()));
    }
    let rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("http://"))
        .ok_or(SignerError::BaseUrlScheme)?;
    if rest.is_empty() {
        return Err(SignerError::BaseUrlScheme);
    }
    let forbidden = |b: u8| !b.is_ascii_graphic() || matches!(b, b'"' | b'\\' | b'?' | b'#');
    if let Some(at) = base_url.bytes().position(forbidden) {
        return Err(SignerError::BaseUrlCharacter(at));
    }
    if base_url.ends_with('/') {
        return Err(SignerError::BaseUrlTrailingSlash);
    }
    Ok(())
}

/// The query split into the fields we know, before any decoding.
#[derive(Default)]
struct RawNotice<'q> {
    bid: Option<&'q str>,
    imp: Option<&'q str>,
    campaign: Option<&'q str>,
    price: Option<&'q str>,
    tag: Option<&'q str>,
    auction: AuctionValues<'q>,
}

impl<'q> RawNotice<'q> {
    fn parse(query: &'q str) -> Result<Self, NoticeError> {
        let mut raw = RawNotice::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, slot) = match raw.slot(key) {
                Some(found) => found,
                None => continue,
            };
            if slot.replace(value).is_some() {
                return Err(NoticeError::Duplicate(name));
            }
        }
        Ok(raw)
    }

    /// The slot a key fills, with the key's static name for errors.
    fn slot(&mut self, key: &str) -> Option<(&'static str, &mut Option<&'q str>)> {
        let auction = &mut self.auction;
        Some(match key {
            KEY_BID => (KEY_BID, &mut self.bid),
            KEY_IMP => (KEY_IMP, &mut self.imp),
            KEY_CAMPAIGN => (KEY_CAMPAIGN, &mut self.campaign),
            KEY_PRICE => (KEY_PRICE, &mut self.price),
            KEY_TAG => (KEY_TAG, &mut self.tag),
            "price" => ("price", &mut auction.price),
            "auction" => ("auction", &mut auction.auction_id),
            "aimp" => ("aimp", &mut auction.imp_id),
            "abid" => ("abid", &mut auction.bid_id),
            "seat" => ("seat", &mut auction.seat_id),
            "cur" => ("cur", &mut auction.currency),
            "loss" => ("loss", &mut auction.loss),
            "mtw" => ("mtw", &mut auction.min_to_win),
            _ => return None,
        })
    }
}

fn required<'q>(value: Option<&'q str>, key: &'static str) -> Result<&'q str, NoticeError> {
    value.ok_or(NoticeError::Missing(key))
}

/// Appends `&key=`.
fn write_param(out: &mut Vec<u8>, key: &str) {
    out.push(b'&');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
}

/// Most bytes of a LEB128 varint of a `u64`: 64 bits in 7-bit groups.
const MAX_VARINT_BYTES: usize = 10;

/// `value` as a LEB128 varint: 7 bits a byte, low first, high bit set on all but the
/// last. Prefix-free, so length-prefixed fields stay unambiguous.
fn varint(mut value: u64) -> ([u8; MAX_VARINT_BYTES], usize) {
    let mut bytes = [0u8; MAX_VARINT_BYTES];
    let mut len = 0;
    loop {
        let low = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            bytes[len] = low;
            return (bytes, len + 1);
        }
        bytes[len] = low | 0x80;
        len += 1;
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 unreserved bytes pass; everything else becomes `%XX`. Ids come from the
/// request, so this is what keeps a hostile imp id from injecting query keys.
fn percent_encode(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if bytes.iter().all(|&b| is_unreserved(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if is_unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]]);
        }
    }
}

fn percent_decode<'q>(text: &'q str, key: &'static str) -> Result<Cow<'q, str>, NoticeError> {
    percent_decoded(text).ok_or(NoticeError::Malformed(key))
}

/// `%XX` escapes to bytes (ids in notice URLs and admin paths); `None` for a broken
/// escape or bytes that are not UTF-8.
pub(crate) fn percent_decoded(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|&b| hex_value(b))?;
        let lo = bytes.get(i + 2).and_then(|&b| hex_value(b))?;
        decoded.push(hi << 4 | lo);
        i += 3;
    }
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `byte` as two lower-case hex digits.
fn hex_pair(byte: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[(byte >> 4) as usize], HEX[(byte & 0xF) as usize]]
}

fn decode_tag(text: &str) -> Result<[u8; TAG_BYTES], NoticeError> {
    let malformed = NoticeError::Malformed(KEY_TAG);
    let bytes = text.as_bytes();
    if bytes.len() != TAG_HEX_LEN {
        return Err(malformed);
    }
    let mut tag = [0u8; TAG_BYTES];
    for (slot, pair) in tag.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = hex_value(pair[0]).ok_or(malformed)?;
        let lo = hex_value(pair[1]).ok_or(malformed)?;
        *slot = hi << 4 | lo;
    }
    Ok(tag)
}

/// Decimal digits only (no sign, no leading `+`), within `i64`.
fn parse_micros(text: &str) -> Result<i64, NoticeError> {
    let malformed = NoticeError::Malformed(KEY_PRICE);
    if text.is_empty() || text.len() > MAX_I64_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    text.parse().map_err(|_| malformed)
}

/// Appends the decimal digits of `value` (a leading `-` if negative, which the
/// endpoint refuses: prices are never negative).
fn write_i64(value: i64, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    money::write_u64(out, value.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::bid_id::BidIdGen;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const BASE: &str = "https://n.example.com/rtb";

    fn signer() -> NoticeSigner {
        NoticeSigner::new(KEY, BASE).expect("valid signer")
    }

    fn fields(bid_id: BidId) -> NoticeFields<'static> {
        NoticeFields {
            bid_id,
            imp_id: "imp 1&x=2",
            campaign_id: "camp-7",
            price_micros: 1_500_000,
        }
    }

    fn url(signer: &NoticeSigner, kind: NoticeKind, fields: &NoticeFields<'_>) -> String {
        let mut out = Vec::new();
        signer.write_url(kind, &signer.sign(fields), &mut out);
        String::from_utf8(out).expect("URL is ASCII")
    }

    /// The query as an exchange would call it: macros substituted.
    fn substituted(url: &str) -> String {
        let query = url.split_once('?').expect("URL has a query").1;
        query
            .replace("${AUCTION_PRICE}", "1.234567")
            .replace("${AUCTION_ID}", "auction-9")
            .replace("${AUCTION_LOSS}", "102")
    }

    /// Regression (found by the `notice_query` fuzz target): a long imp id made a URL
    /// the endpoint refused as too long, so a win on it could never be charged.
    #[test]
    fn a_long_imp_id_is_cut_where_signed_and_every_url_verifies() {
        let signer = signer();
        let long = "é&".repeat(2_000);
        let f = NoticeFields {
            imp_id: &long,
            ..fields(BidIdGen::new(1, 1).next_id(1_000))
        };
        for kind in NoticeKind::ALL {
            let url = url(&signer, kind, &f);
            let query = url.split_once('?').unwrap().1;
            assert!(query.len() <= MAX_SIGNED_QUERY_BYTES, "{}", query.len());
            let called = substituted(&url);
            let notice = signer.verify(kind, &called).expect("our URL verifies");
            assert_eq!(notice.imp_id, signed_imp_id(&long));
            assert_eq!(notice.campaign_id, "camp-7");
        }
        let cut = signed_imp_id(&long);
        assert!(cut.len() <= MAX_NOTICE_IMP_ID_BYTES && cut.len() >= MAX_NOTICE_IMP_ID_BYTES - 3);
        assert!(long.starts_with(cut));
        assert_eq!(signed_imp_id("imp-1"), "imp-1");
    }

    #[test]
    fn each_kind_has_its_path_and_macros() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        for kind in [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss] {
            let url = url(&signer, kind, &f);
            assert!(
                url.starts_with(&format!("{BASE}{}?bid=", kind.path())),
                "{url}"
            );
            let common = [
                "&price=${AUCTION_PRICE}",
                "&auction=${AUCTION_ID}",
                "&aimp=${AUCTION_IMP_ID}",
                "&abid=${AUCTION_BID_ID}",
                "&seat=${AUCTION_SEAT_ID}",
                "&cur=${AUCTION_CURRENCY}",
            ];
            for mac in common {
                assert!(url.contains(mac), "{url} lacks {mac}");
            }
            let loss = url.contains("&loss=${AUCTION_LOSS}");
            assert_eq!(loss, kind == NoticeKind::Loss, "{url}");
            let mtw = url.contains("&mtw=${AUCTION_MIN_TO_WIN}");
            assert_eq!(mtw, kind != NoticeKind::Bill, "{url}");
            assert!(url
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        }
    }

    #[test]
    fn signed_notice_verifies_and_decodes() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let query = substituted(&url(&signer, NoticeKind::Loss, &f));
        let notice = signer
            .verify(NoticeKind::Loss, &query)
            .expect("our own notice verifies");
        assert_eq!(notice.bid_id, f.bid_id);
        assert_eq!(notice.imp_id, f.imp_id);
        assert_eq!(notice.campaign_id, f.campaign_id);
        assert_eq!(notice.price_micros, f.price_micros);
        assert_eq!(notice.auction.auction_id, Some("auction-9"));
        assert_eq!(notice.auction.loss, Some("102"));
        assert_eq!(notice.auction.clearing_price_micros(), Some(1_234_567));
        assert_eq!(notice.auction.min_to_win, Some("${AUCTION_MIN_TO_WIN}"));
    }

    #[test]
    fn tampering_with_any_signed_field_is_rejected() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let other_id = BidIdGen::new(2, 2).next_id(1_000).to_string();
        let query = substituted(&url(&signer, NoticeKind::Win, &f));
        let tag = query
            .split("sig=")
            .nth(1)
            .expect("tag")
            .get(..TAG_HEX_LEN)
            .expect("hex");
        let mut flipped_tag = tag.to_owned();
        flipped_tag.replace_range(..1, if tag.starts_with('0') { "1" } else { "0" });
        let tampered = [
            query.replace(&f.bid_id.to_string(), &other_id),
            query.replace("imp=imp%201", "imp=imp%202"),
            query.replace("cid=camp-7", "cid=camp-8"),
            query.replace("px=1500000", "px=1500001"),
            query.replace("px=1500000", "px=15000000"),
            query.replace(tag, &flipped_tag),
        ];
        for forged in &tampered {
            assert_ne!(forged, &query, "tamper case did not change the query");
            assert_eq!(
                signer.verify(NoticeKind::Win, forged),
                Err(NoticeError::BadTag),
                "{forged}"
            );
        }
    }

    /// Regression (issue 19): one tag used to cover every kind, so a loss URL could be
    /// made from a win URL by changing its path.
    #[test]
    fn a_url_of_one_kind_does_not_verify_as_another() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let signed = signer.sign(&f);
        for made in NoticeKind::ALL {
            let mut out = Vec::new();
            signer.write_url(made, &signed, &mut out);
            let query = substituted(std::str::from_utf8(&out).unwrap());
            for called in NoticeKind::ALL {
                let verified = signer.verify(called, &query);
                if called == made {
                    assert!(verified.is_ok(), "{made:?} verifies as itself");
                } else {
                    assert_eq!(verified, Err(NoticeError::BadTag), "{made:?} as {called:?}");
                }
            }
        }
        let tags: std::collections::HashSet<_> = signed.tag_hex.iter().collect();
        assert_eq!(tags.len(), 3, "three different tags");
    }

    #[test]
    fn secrets_compare_equal_only_when_every_byte_and_the_length_match() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
        assert!(!same_bytes(b"", b"a"));
    }

    #[test]
    fn exchange_values_are_not_signed() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let query = substituted(&url(&signer, NoticeKind::Win, &f)).replace("auction-9", "zzz");
        assert!(signer.verify(NoticeKind::Win, &query).is_ok());
    }

    #[test]
    fn another_key_rejects_the_notice() {
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let query = substituted(&url(&signer(), NoticeKind::Bill, &f));
        let other = NoticeSigner::new(b"another key, also 32 bytes long!", BASE).expect("signer");
        assert_eq!(
            other.verify(NoticeKind::Bill, &query),
            Err(NoticeError::BadTag)
        );
    }

    #[test]
    fn malformed_queries_are_rejected_with_a_reason() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let query = substituted(&url(&signer, NoticeKind::Win, &f));
        let without = |key: &str| {
            query
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{key}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        let cases = [
            (without(KEY_BID), NoticeError::Missing(KEY_BID)),
            (without(KEY_IMP), NoticeError::Missing(KEY_IMP)),
            (without(KEY_CAMPAIGN), NoticeError::Missing(KEY_CAMPAIGN)),
            (without(KEY_PRICE), NoticeError::Missing(KEY_PRICE)),
            (without(KEY_TAG), NoticeError::Missing(KEY_TAG)),
            (format!("{query}&px=1"), NoticeError::Duplicate(KEY_PRICE)),
            (format!("{query}&cur=EUR"), NoticeError::Duplicate("cur")),
            (
                query.replace("px=", "px=-"),
                NoticeError::Malformed(KEY_PRICE),
            ),
            (
                query.replace("px=", "px=+"),
                NoticeError::Malformed(KEY_PRICE),
            ),
            (
                query.replace("imp=", "imp=%"),
                NoticeError::Malformed(KEY_IMP),
            ),
            (
                format!("{}%2", without(KEY_IMP) + "&imp=x"),
                NoticeError::Malformed(KEY_IMP),
            ),
            (
                query.replace("imp=", "imp=%FF"),
                NoticeError::Malformed(KEY_IMP),
            ),
            (
                query.replace("bid=", "bid=x"),
                NoticeError::Malformed(KEY_BID),
            ),
            (
                query.replace("sig=", "sig=00"),
                NoticeError::Malformed(KEY_TAG),
            ),
            ("x".repeat(MAX_QUERY_BYTES + 1), NoticeError::TooLong),
        ];
        for (bad, error) in cases {
            assert_eq!(signer.verify(NoticeKind::Win, &bad), Err(error), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let signer = signer();
        let f = fields(BidIdGen::new(1, 1).next_id(1_000));
        let query = format!(
            "{}&exchange_extra=1&flag",
            substituted(&url(&signer, NoticeKind::Win, &f))
        );
        assert!(signer.verify(NoticeKind::Win, &query).is_ok());
    }

    #[test]
    fn hostile_ids_cannot_inject_query_keys() {
        let signer = signer();
        let f = NoticeFields {
            imp_id: "1&px=1&sig=00",
            campaign_id: "é/?#\"\\\u{0}",
            ..fields(BidIdGen::new(1, 1).next_id(1_000))
        };
        let query = substituted(&url(&signer, NoticeKind::Win, &f));
        let notice = signer.verify(NoticeKind::Win, &query).expect("verifies");
        assert_eq!(notice.imp_id, f.imp_id);
        assert_eq!(notice.campaign_id, f.campaign_id);
    }

    #[test]
    fn clearing_price_needs_a_plain_decimal() {
        let values = |price| AuctionValues {
            price,
            ..AuctionValues::default()
        };
        assert_eq!(values(Some("2.5")).clearing_price_micros(), Some(2_500_000));
        assert_eq!(values(Some("0")).clearing_price_micros(), Some(0));
        assert_eq!(
            values(Some("${AUCTION_PRICE}")).clearing_price_micros(),
            None
        );
        assert_eq!(values(Some("-1")).clearing_price_micros(), None);
        // Read exactly, never through a float; extra precision rounds up, never down.
        assert_eq!(values(Some("0.29")).clearing_price_micros(), Some(290_000));
        assert_eq!(
            values(Some("1.2345671")).clearing_price_micros(),
            Some(1_234_568)
        );
        assert_eq!(values(Some("2000000")).clearing_price_micros(), None);
        assert_eq!(values(Some("1e3")).clearing_price_micros(), None);
        assert_eq!(values(Some("AAAB1234")).clearing_price_micros(), None);
        assert_eq!(values(Some("")).clearing_price_micros(), None);
        assert_eq!(values(None).clearing_price_micros(), None);
    }

    #[test]
    fn signer_config_is_checked() {
        let short = [0u8; MIN_NOTICE_KEY_BYTES - 1];
        assert_eq!(
            NoticeSigner::new(&short, BASE).err(),
            Some(SignerError::KeyTooShort(31))
        );
        let cases = [
            ("ftp://x", SignerError::BaseUrlScheme),
            ("https://", SignerError::BaseUrlScheme),
            ("https://x/", SignerError::BaseUrlTrailingSlash),
            ("https://x y", SignerError::BaseUrlCharacter(9)),
            ("https://x?a", SignerError::BaseUrlCharacter(9)),
            ("https://x\"", SignerError::BaseUrlCharacter(9)),
        ];
        for (base, error) in cases {
            assert_eq!(NoticeSigner::new(KEY, base).err(), Some(error), "{base}");
        }
        let long = format!("https://{}", "x".repeat(MAX_BASE_URL_BYTES));
        assert!(matches!(
            NoticeSigner::new(KEY, &long),
            Err(SignerError::BaseUrlTooLong(_))
        ));
        assert!(NoticeSigner::new(KEY, "http://10.0.0.1:8080/n").is_ok());
    }

    #[test]
    fn length_prefixes_are_prefix_free_varints() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (300, &[0xAC, 0x02]),
            (
                u64::MAX,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ];
        for (value, bytes) in cases {
            let (buf, len) = varint(value);
            assert_eq!(&buf[..len], bytes, "{value}");
        }
    }

    #[test]
    fn shifting_bytes_between_ids_changes_the_tag() {
        let signer = signer();
        let id = BidIdGen::new(1, 1).next_id(1_000);
        let a = NoticeFields {
            imp_id: "ab",
            campaign_id: "c",
            ..fields(id)
        };
        let b = NoticeFields {
            imp_id: "a",
            campaign_id: "bc",
            ..fields(id)
        };
        assert_ne!(signer.sign(&a).tag_hex, signer.sign(&b).tag_hex);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for value in [0, 7, -7, 10, 1_500_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_i64(value, &mut out);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }
}
