//! Respond: the decision, encoded for the wire.
//!
//! The last stage of a request. The decision hands over a [`ResponseOut`] borrowed from
//! the request and the config; an [`Encoder`] writes it as an OpenRTB 2.6 BidResponse in
//! JSON, or the same response in FlatBuffers, with signed win/bill/loss notice URLs on
//! every bid. Both engines (io_uring and tokio) call the same encoder.
//!
//! Hot-path rules: nothing here allocates once the output buffers have grown to a
//! typical response (shown by `tests/respond_alloc.rs`), nothing blocks, and the input
//! is checked against the OpenRTB rules that exchanges enforce before any byte is
//! written, so a bad bid becomes a typed error (the caller answers 204 and counts it)
//! rather than a response the exchange throws away.

mod flatbuffers;
mod json;

pub use json::encode_nobid_json;

use ::flatbuffers::FlatBufferBuilder;

use crate::money::bid_id::BidId;
use crate::money::notice::{NoticeFields, NoticeSigner};
use crate::money::MAX_CPM_MICROS;

pub use crate::limits::MAX_BIDS_PER_RESPONSE;
pub use crate::limits::MAX_RESPONSE_BYTES;
pub use crate::limits::MAX_RESPONSE_LIST_ITEMS as MAX_LIST_ITEMS;
/// Capacity the FlatBuffers builder starts with, in bytes: a typical banner response
/// fits, so the builder never grows on the hot path.
const INITIAL_FLATBUFFERS_BYTES: usize = 16 * 1024;
/// Capacity of the scratch buffer notice URLs are written into for FlatBuffers, in
/// bytes: three URLs with a long base and long ids fit.
const INITIAL_URL_BYTES: usize = 2 * 1024;

/// `mtype` values OpenRTB 2.6 defines: 1 banner, 2 video, 3 audio, 4 native.
const MTYPES: std::ops::RangeInclusive<u8> = 1..=4;

/// One bid the decision chose, ready to encode. Borrowed from the request and the config.
#[derive(Clone, Copy)]
pub struct BidOut<'a> {
    /// From the worker's [`crate::money::bid_id::BidIdGen`]; unique, so notices join back.
    pub bid_id: BidId,
    /// The request's `imp.id` this bid is for.
    pub imp_id: &'a str,
    /// CPM in micro-units of the response currency; > 0 unless `deal_id` is `Some`.
    pub price_micros: i64,
    /// What the bid takes from its creative.
    pub creative: CreativeOut<'a>,
    /// The deal this bid is made under, if any; allows a zero price.
    pub deal_id: Option<&'a str>,
    /// `creative` encoded once ([`Template`]), made from the same creative; `None`
    /// writes its fields per bid.
    pub template: Option<&'a Template>,
}

/// What a bid says about its creative: the same for every bid on it.
#[derive(Debug, Clone, Copy)]
pub struct CreativeOut<'a> {
    /// Written as `bid.cid`.
    pub campaign_id: &'a str,
    /// Written as `bid.crid`.
    pub creative_id: &'a str,
    /// Markup from config, copied verbatim (exchange macros like `${AUCTION_PRICE}` are
    /// left in for the exchange). Empty = omitted (markup served from the win notice).
    pub adm: &'a str,
    /// Advertiser domains; empty = omitted. At most [`MAX_LIST_ITEMS`].
    pub adomain: &'a [String],
    /// IAB content categories; empty = omitted. At most [`MAX_LIST_ITEMS`].
    pub cat: &'a [String],
    /// Creative attributes; empty = omitted. At most [`MAX_LIST_ITEMS`].
    pub attr: &'a [u32],
    /// Creative width in pixels; 0 = omit.
    pub w: u32,
    /// Creative height in pixels; 0 = omit.
    pub h: u32,
    /// 1 banner, 2 video, 3 audio, 4 native; anything else is refused.
    pub mtype: u8,
}

/// A creative's part of a JSON bid (`adm` … `mtype`, escaped), encoded when the
/// catalog is compiled so that a bid copies it instead of escaping markup and
/// writing a dozen fields on the hot path (measured: `cargo bench --bench core`,
/// "stage: encode only"). The JSON encoder writes the same bytes either way.
#[derive(Debug, Clone)]
pub struct Template {
    json: Box<[u8]>,
}

impl Template {
    /// Encodes `creative`'s part of a bid.
    pub fn new(creative: &CreativeOut<'_>) -> Template {
        let mut json = Vec::new();
        json::write_creative(creative, &mut json);
        Template {
            json: json.into_boxed_slice(),
        }
    }

    fn json(&self) -> &[u8] {
        &self.json
    }
}

/// A whole response: the request it answers and the bids for one seat.
pub struct ResponseOut<'a> {
    /// The request's `id`, echoed.
    pub request_id: &'a str,
    /// Our buyer seat id at this exchange.
    pub seat: &'a str,
    /// ISO-4217 currency of every price, e.g. `USD`.
    pub cur: &'a str,
    /// At least one bid; a no-bid is a 204 or [`encode_nobid_json`].
    pub bids: &'a [BidOut<'a>],
}

/// The encoding a partner is answered in (`response_format` in a partner's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenRTB JSON (`application/json`).
    #[default]
    Json,
    /// The same response in FlatBuffers (`application/x-flatbuffers`, schema
    /// `schema/bid_response.fbs`).
    FlatBuffers,
}

/// Why a response was not encoded. Each is a bug or a config mistake upstream, never
/// the request's fault: the caller answers 204 and counts the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("response has no bids; send a no-bid instead")]
    NoBids,
    #[error("response has {0} bids; at most {MAX_BIDS_PER_RESPONSE}")]
    TooManyBids(usize),
    #[error("response field `{0}` is empty")]
    EmptyResponseField(&'static str),
    #[error("bid {bid}: field `{field}` is empty")]
    EmptyBidField { bid: usize, field: &'static str },
    #[error("bid {bid}: price {micros} micros is not positive and the bid has no deal, or is above the CPM cap")]
    Price { bid: usize, micros: i64 },
    #[error("bid {bid}: mtype {mtype} is not 1 (banner), 2 (video), 3 (audio) or 4 (native)")]
    Mtype { bid: usize, mtype: u8 },
    #[error("bid {bid}: `{field}` has {count} entries; at most {MAX_LIST_ITEMS}")]
    TooManyItems {
        bid: usize,
        field: &'static str,
        count: usize,
    },
    #[error("encoded response is {0} bytes, over the room it has (at most {MAX_RESPONSE_BYTES})")]
    TooLarge(usize),
}

/// Encodes responses for one worker. Holds the notice signer and the reusable
/// FlatBuffers state; create one per worker at start-up and keep it.
pub struct Encoder {
    signer: NoticeSigner,
    fbb: FlatBufferBuilder<'static>,
    url: Vec<u8>,
}

impl Encoder {
    /// An encoder signing notices with `signer`, its buffers sized for a typical
    /// response so the first requests do not pay for growth.
    pub fn new(signer: NoticeSigner) -> Self {
        Encoder {
            signer,
            fbb: FlatBufferBuilder::with_capacity(INITIAL_FLATBUFFERS_BYTES),
            url: Vec::with_capacity(INITIAL_URL_BYTES),
        }
    }

    /// Appends `resp` as OpenRTB JSON to `out`. Allocates nothing when `out` has room.
    /// On error `out` is left as it was.
    pub fn encode_json(
        &self,
        resp: &ResponseOut<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        self.encode_json_within(resp, out, MAX_RESPONSE_BYTES)
    }

    /// [`Encoder::encode_json`] into at most `max_bytes` (and never past
    /// [`MAX_RESPONSE_BYTES`]): the room the caller's answer has. `TooLarge` says how
    /// many bytes the whole response took, so the caller can drop bids to fit.
    pub fn encode_json_within(
        &self,
        resp: &ResponseOut<'_>,
        out: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<(), EncodeError> {
        validate(resp)?;
        let start = out.len();
        json::write_response(&self.signer, resp, out);
        let written = out.len() - start;
        if written > max_bytes.min(MAX_RESPONSE_BYTES) {
            out.truncate(start);
            return Err(EncodeError::TooLarge(written));
        }
        Ok(())
    }

    /// Appends `resp` in `format` to `out`, in at most `max_bytes` (see
    /// [`Encoder::encode_json_within`]). Allocates nothing once `out` and the
    /// FlatBuffers builder have grown to a typical response.
    pub fn encode_within(
        &mut self,
        format: Format,
        resp: &ResponseOut<'_>,
        out: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<(), EncodeError> {
        match format {
            Format::Json => self.encode_json_within(resp, out, max_bytes),
            Format::FlatBuffers => {
                let bytes = self.encode_flatbuffers(resp)?;
                if bytes.len() > max_bytes {
                    return Err(EncodeError::TooLarge(bytes.len()));
                }
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Appends the no-bid body (the request id and `nbr`, an OpenRTB no-bid reason
    /// code) in `format` to `out`.
    pub fn encode_nobid(&mut self, format: Format, request_id: &str, nbr: u32, out: &mut Vec<u8>) {
        match format {
            Format::Json => encode_nobid_json(request_id, nbr, out),
            Format::FlatBuffers => {
                out.extend_from_slice(flatbuffers::encode_nobid(request_id, nbr, &mut self.fbb));
            }
        }
    }

    /// Encodes `resp` as a FlatBuffers `BidResponse` (schema `schema/bid_response.fbs`,
    /// file identifier `BRSP`) and returns the finished buffer, valid until the next
    /// call. The builder is reset per response and keeps its capacity.
    pub fn encode_flatbuffers(&mut self, resp: &ResponseOut<'_>) -> Result<&[u8], EncodeError> {
        validate(resp)?;
        let bytes = flatbuffers::encode(&self.signer, resp, &mut self.fbb, &mut self.url);
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(EncodeError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// The notice fields of one bid: what its three URLs carry and its tag covers.
fn notice_fields<'a>(bid: &BidOut<'a>) -> NoticeFields<'a> {
    NoticeFields {
        bid_id: bid.bid_id,
        imp_id: bid.imp_id,
        campaign_id: bid.creative.campaign_id,
        price_micros: bid.price_micros,
    }
}

/// Checks the rules exchanges (Prebid Server among them) drop bids for, before any byte
/// is written: ids present, price positive unless under a deal, a known markup type.
fn validate(resp: &ResponseOut<'_>) -> Result<(), EncodeError> {
    if resp.bids.is_empty() {
        return Err(EncodeError::NoBids);
    }
    if resp.bids.len() > MAX_BIDS_PER_RESPONSE {
        return Err(EncodeError::TooManyBids(resp.bids.len()));
    }
    for (field, value) in [
        ("id", resp.request_id),
        ("seat", resp.seat),
        ("cur", resp.cur),
    ] {
        if value.is_empty() {
            return Err(EncodeError::EmptyResponseField(field));
        }
    }
    resp.bids
        .iter()
        .enumerate()
        .try_for_each(|(i, bid)| validate_bid(i, bid))
}

fn validate_bid(index: usize, bid: &BidOut<'_>) -> Result<(), EncodeError> {
    for (field, value) in [
        ("impid", bid.imp_id),
        ("crid", bid.creative.creative_id),
        ("cid", bid.creative.campaign_id),
    ] {
        if value.is_empty() {
            return Err(EncodeError::EmptyBidField { bid: index, field });
        }
    }
    if bid.deal_id == Some("") {
        return Err(EncodeError::EmptyBidField {
            bid: index,
            field: "dealid",
        });
    }
    let floor = if bid.deal_id.is_some() { 0 } else { 1 };
    if !(floor..=MAX_CPM_MICROS).contains(&bid.price_micros) {
        return Err(EncodeError::Price {
            bid: index,
            micros: bid.price_micros,
        });
    }
    if !MTYPES.contains(&bid.creative.mtype) {
        return Err(EncodeError::Mtype {
            bid: index,
            mtype: bid.creative.mtype,
        });
    }
    let lists = [
        ("adomain", bid.creative.adomain.len()),
        ("cat", bid.creative.cat.len()),
        ("attr", bid.creative.attr.len()),
    ];
    for (field, count) in lists {
        if count > MAX_LIST_ITEMS {
            return Err(EncodeError::TooManyItems {
                bid: index,
                field,
                count,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
