//! Pre-built request bytes with per-request randomisation patched in place.
//!
//! Each corpus request becomes one template at start-up: the complete HTTP request
//! (head and body) with fixed-width *slots* where the request id, user ids, floors and
//! the site domain or app bundle go. Rendering a request writes fresh values into the
//! slots and returns the same buffer, so the hot loop neither serialises JSON nor
//! allocates, and the Content-Length never changes. Values shorter than their slot are
//! padded with spaces *outside* the JSON token (`"bidfloor":1.2000   ,`), which JSON
//! allows, so every rendered body stays valid JSON of constant length.
//!
//! gzip bodies keep the same property without compressing per request: the static text
//! between slots is deflated once, each slot is framed as a *stored* (uncompressed)
//! deflate block whose bytes can be patched, and only the gzip trailer's CRC-32 is
//! recomputed per request. Every rendered body is still a standard gzip member.

use std::io::Write as _;

use flate2::{Compress, Compression, Crc, FlushCompress};
use serde_json::Value;
use thiserror::Error;

/// Most randomised slots in one request; floors beyond it keep their corpus value.
const MAX_SLOTS_PER_REQUEST: usize = 256;
/// Width of the request-id slot: two quotes around 32 hex digits.
const REQUEST_ID_SLOT_BYTES: usize = 34;
/// Width of a user-id slot: two quotes around 16 hex digits.
const USER_ID_SLOT_BYTES: usize = 18;
/// Longest domain or bundle name accepted, so slot buffers stay on the stack.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest slot of any kind.
const MAX_SLOT_BYTES: usize = MAX_NAME_BYTES + 2;
/// Decimal places written for randomised floors (CPM, so 1/100 of a micro-unit).
const FLOOR_DECIMALS: usize = 4;
/// Salt that derives a user's exchange-side `buyeruid` from the same user number as
/// `user.id`, so the pair stays consistent for one user across requests.
const BUYERUID_SALT: u64 = 0x5bd1_e995_5bd1_e995;
/// Marker put into the JSON tree where a slot goes, found again after serialising.
const SLOT_MARKER_PREFIX: &str = "~~loadgen-slot-";

/// How each request is varied so that no cache in the server sees repeats it would not
/// see from a real exchange.
#[derive(Clone, Debug)]
pub struct Randomise {
    /// User ids are drawn uniformly from this many distinct users.
    pub user_population: u64,
    /// Floors are multiplied by a factor uniform in `1 ± floor_jitter_pct / 100`.
    pub floor_jitter_pct: f64,
    /// `site.domain` is drawn from these names.
    pub domains: Vec<String>,
    /// `app.bundle` is drawn from these names.
    pub bundles: Vec<String>,
}

/// Why a template could not be built; names are validated up front.
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("name {0:?} is empty, longer than {MAX_NAME_BYTES} bytes, or needs JSON escaping")]
    BadName(String),
    #[error("the domain and bundle lists must not be empty")]
    NoNames,
    #[error("user population must be at least 1")]
    NoUsers,
    #[error("floor jitter must be within 0..=100 percent")]
    BadJitter,
}

impl Randomise {
    /// Checks the names and bounds once, so rendering never has to.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.user_population == 0 {
            return Err(TemplateError::NoUsers);
        }
        if !(0.0..=100.0).contains(&self.floor_jitter_pct) {
            return Err(TemplateError::BadJitter);
        }
        if self.domains.is_empty() || self.bundles.is_empty() {
            return Err(TemplateError::NoNames);
        }
        for name in self.domains.iter().chain(&self.bundles) {
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if name.is_empty() || name.len() > MAX_NAME_BYTES || !plain {
                return Err(TemplateError::BadName(name.clone()));
            }
        }
        Ok(())
    }
}

/// Where the request goes: fixed parts of every request head.
#[derive(Clone, Debug)]
pub struct HeadParts {
    /// Request target, e.g. `/bid/exchange-a`.
    pub path: String,
    /// `Host` header value, e.g. `127.0.0.1:8080`.
    pub host: String,
    pub gzip: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SlotKind {
    RequestId,
    UserId,
    BuyerUid,
    Floor { base: f64 },
    Domain,
    Bundle,
}

#[derive(Clone, Debug)]
struct Slot {
    kind: SlotKind,
    /// Offset in the request bytes.
    at: usize,
    /// Offset in the plain body (gzip only: the bytes the CRC covers).
    plain_at: usize,
    width: usize,
}

/// One corpus request, ready to render. Each worker owns its own copies, because
/// rendering patches the bytes in place.
#[derive(Clone, Debug)]
pub(crate) struct RequestTemplate {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    gzip: Option<GzipFrame>,
}

#[derive(Clone, Debug)]
struct GzipFrame {
    plain: Vec<u8>,
    crc_at: usize,
}

/// Per-request values shared by several slots of one request.
struct Draw {
    user: u64,
}

impl RequestTemplate {
    /// Builds the template for one corpus request. `randomise` must have passed
    /// `validate`.
    pub(crate) fn build(request: &Value, head: &HeadParts, randomise: &Randomise) -> Self {
        let mut tree = request.clone();
        let kinds = place_markers(&mut tree);
        let marked = serde_json::to_vec(&tree).expect("a JSON value always serialises");
        let (body, mut slots) = replace_markers(&marked, &kinds, randomise);
        let (body_bytes, gzip_plain) = if head.gzip {
            let (frame, frame_at) = gzip_frame(&body, &slots);
            for (slot, at) in slots.iter_mut().zip(frame_at) {
                slot.plain_at = slot.at;
                slot.at = at;
            }
            (frame, Some(body))
        } else {
            (body, None)
        };
        let head_text = http_head(head, body_bytes.len());
        for slot in &mut slots {
            slot.at += head_text.len();
        }
        let mut bytes = head_text.into_bytes();
        bytes.extend_from_slice(&body_bytes);
        let gzip = gzip_plain.map(|plain| GzipFrame {
            plain,
            crc_at: bytes.len() - 8,
        });
        let mut template = RequestTemplate { bytes, slots, gzip };
        template.render(&mut SplitMix64::new(0), randomise);
        template
    }

    /// Writes fresh values into every slot and returns the complete request bytes.
    pub(crate) fn render(&mut self, rng: &mut SplitMix64, randomise: &Randomise) -> &[u8] {
        let draw = Draw {
            user: rng.below(randomise.user_population),
        };
        let RequestTemplate { bytes, slots, gzip } = self;
        for slot in slots.iter() {
            let mut value = [b' '; MAX_SLOT_BYTES];
            let value = &mut value[..slot.width];
            fill_slot(slot.kind, value, &draw, rng, randomise);
            bytes[slot.at..slot.at + slot.width].copy_from_slice(value);
            if let Some(frame) = gzip {
                frame.plain[slot.plain_at..slot.plain_at + slot.width].copy_from_slice(value);
            }
        }
        if let Some(frame) = gzip {
            let mut crc = Crc::new();
            crc.update(&frame.plain);
            bytes[frame.crc_at..frame.crc_at + 4].copy_from_slice(&crc.sum().to_le_bytes());
        }
        bytes
    }
}

/// Replaces the randomised fields with string markers; returns each marker's kind,
/// indexed by the marker number. Fields that are absent are added only for users
/// (an exchange always sends one); floors, domains and bundles are varied only where
/// the corpus request has them.
fn place_markers(tree: &mut Value) -> Vec<SlotKind> {
    let mut kinds = Vec::new();
    let mut mark = |slot: &mut Value, kind: SlotKind| {
        if kinds.len() < MAX_SLOTS_PER_REQUEST {
            *slot = Value::String(format!("{SLOT_MARKER_PREFIX}{}~~", kinds.len()));
            kinds.push(kind);
        }
    };
    let Some(root) = tree.as_object_mut() else {
        return kinds;
    };
    mark(root.entry("id").or_insert(Value::Null), SlotKind::RequestId);
    let user = root
        .entry("user")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(user) = user.as_object_mut() {
        mark(user.entry("id").or_insert(Value::Null), SlotKind::UserId);
        mark(
            user.entry("buyeruid").or_insert(Value::Null),
            SlotKind::BuyerUid,
        );
    }
    if let Some(domain) = root.get_mut("site").and_then(|s| s.get_mut("domain")) {
        mark(domain, SlotKind::Domain);
    }
    if let Some(bundle) = root.get_mut("app").and_then(|a| a.get_mut("bundle")) {
        mark(bundle, SlotKind::Bundle);
    }
    for imp in root
        .get_mut("imp")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(floor) = imp.get_mut("bidfloor") {
            if let Some(base) = floor.as_f64() {
                mark(floor, SlotKind::Floor { base });
            }
        }
    }
    kinds
}

/// Replaces each serialised marker (with its quotes) by a slot of its kind's width.
fn replace_markers(
    marked: &[u8],
    kinds: &[SlotKind],
    randomise: &Randomise,
) -> (Vec<u8>, Vec<Slot>) {
    let mut found: Vec<(usize, usize, SlotKind)> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| {
            let marker = format!("\"{SLOT_MARKER_PREFIX}{i}~~\"");
            let at = find(marked, marker.as_bytes()).expect("every placed marker is serialised");
            (at, marker.len(), kind)
        })
        .collect();
    found.sort_by_key(|&(at, _, _)| at);
    let mut body = Vec::with_capacity(marked.len() + 64 * found.len());
    let mut slots = Vec::with_capacity(found.len());
    let mut copied = 0;
    for (at, len, kind) in found {
        body.extend_from_slice(&marked[copied..at]);
        let width = slot_width(kind, randomise);
        slots.push(Slot {
            kind,
            at: body.len(),
            plain_at: 0,
            width,
        });
        body.resize(body.len() + width, b' ');
        copied = at + len;
    }
    body.extend_from_slice(&marked[copied..]);
    (body, slots)
}

fn slot_width(kind: SlotKind, randomise: &Randomise) -> usize {
    let longest = |names: &[String]| names.iter().map(String::len).max().unwrap_or(0) + 2;
    match kind {
        SlotKind::RequestId => REQUEST_ID_SLOT_BYTES,
        SlotKind::UserId | SlotKind::BuyerUid => USER_ID_SLOT_BYTES,
        SlotKind::Floor { base } => {
            let widest = base.abs() * (1.0 + randomise.floor_jitter_pct / 100.0) + 1.0;
            let sign = usize::from(base < 0.0);
            format!("{widest:.FLOOR_DECIMALS$}").len() + sign
        }
        SlotKind::Domain => longest(&randomise.domains),
        SlotKind::Bundle => longest(&randomise.bundles),
    }
}

fn fill_slot(kind: SlotKind, out: &mut [u8], draw: &Draw, rng: &mut SplitMix64, r: &Randomise) {
    let pick = |names: &[String], rng: &mut SplitMix64| -> usize {
        rng.below(names.len() as u64) as usize
    };
    match kind {
        SlotKind::RequestId => {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            quoted_hex(out, &[a, b]);
        }
        SlotKind::UserId => quoted_hex(out, &[mix64(draw.user)]),
        SlotKind::BuyerUid => quoted_hex(out, &[mix64(draw.user ^ BUYERUID_SALT)]),
        SlotKind::Floor { base } => {
            let factor = 1.0 + r.floor_jitter_pct / 100.0 * (2.0 * rng.unit() - 1.0);
            let floor = base * factor;
            let mut cursor = &mut out[..];
            let written = write!(cursor, "{floor:.FLOOR_DECIMALS$}");
            debug_assert!(written.is_ok(), "slot width covers the largest floor");
        }
        SlotKind::Domain => quoted(out, &r.domains[pick(&r.domains, rng)]),
        SlotKind::Bundle => quoted(out, &r.bundles[pick(&r.bundles, rng)]),
    }
}

fn quoted(out: &mut [u8], name: &str) {
    out[0] = b'"';
    out[1..=name.len()].copy_from_slice(name.as_bytes());
    out[name.len() + 1] = b'"';
}

fn quoted_hex(out: &mut [u8], words: &[u64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out[0] = b'"';
    let mut at = 1;
    for word in words {
        for shift in (0..16).rev() {
            out[at] = HEX[(word >> (shift * 4)) as usize & 0xf];
            at += 1;
        }
    }
    out[at] = b'"';
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn http_head(head: &HeadParts, body_len: usize) -> String {
    let encoding = if head.gzip {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen\r\nContent-Type: application/json\r\n\
         X-Openrtb-Version: 2.5\r\n{encoding}Content-Length: {body_len}\r\n\r\n",
        head.path, head.host
    )
}

/// gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty stored deflate block: ends the deflate stream.
const DEFLATE_FINAL_EMPTY_BLOCK: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];

/// Frames `body` as one gzip member whose slots are stored blocks; returns the frame
/// and each slot's offset in it. The CRC and size trailer is written here for the
/// body as it is; `render` rewrites the CRC after patching.
fn gzip_frame(body: &[u8], slots: &[Slot]) -> (Vec<u8>, Vec<usize>) {
    let mut out = GZIP_HEADER.to_vec();
    let mut slot_at = Vec::with_capacity(slots.len());
    let mut copied = 0;
    for slot in slots {
        deflate_segment(&body[copied..slot.at], &mut out);
        let len = u16::try_from(slot.width).expect("slots are far below 64 KiB");
        // Stored block header, byte-aligned after the previous segment's sync flush:
        // BFINAL=0 and BTYPE=00 in the first byte, then LEN and its complement.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        slot_at.push(out.len());
        out.extend_from_slice(&body[slot.at..slot.at + slot.width]);
        copied = slot.at + slot.width;
    }
    deflate_segment(&body[copied..], &mut out);
    out.extend_from_slice(&DEFLATE_FINAL_EMPTY_BLOCK);
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    let size = u32::try_from(body.len()).expect("request bodies are far below 4 GiB");
    out.extend_from_slice(&size.to_le_bytes());
    (out, slot_at)
}

/// Deflates `segment` with a fresh compressor and a sync flush, so its output ends
/// byte-aligned and refers to no bytes outside the segment: the stored blocks spliced
/// in between segments then cannot break a back-reference.
fn deflate_segment(segment: &[u8], out: &mut Vec<u8>) {
    if segment.is_empty() {
        return;
    }
    let mut deflate = Compress::new(Compression::default(), false);
    loop {
        out.reserve(segment.len() / 2 + 64);
        let consumed = deflate.total_in() as usize;
        deflate
            .compress_vec(&segment[consumed..], out, FlushCompress::Sync)
            .expect("deflating an in-memory buffer cannot fail");
        if deflate.total_in() as usize == segment.len() && out.len() < out.capacity() {
            return;
        }
    }
}

/// Small, fast, seedable PRNG (SplitMix64). Statistical quality is ample for picking
/// templates and ids; it is not for anything secret.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser: a bijective mix, so distinct user numbers stay distinct ids.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn randomise() -> Randomise {
        Randomise {
            user_population: 1_000,
            floor_jitter_pct: 20.0,
            domains: vec!["a.example".into(), "longer-name.example".into()],
            bundles: vec!["com.example.x".into()],
        }
    }

    fn head(gzip: bool) -> HeadParts {
        HeadParts {
            path: "/bid/x".into(),
            host: "127.0.0.1:1".into(),
            gzip,
        }
    }

    fn sample() -> Value {
        serde_json::json!({
            "id": "corpus-id",
            "imp": [{"id": "1", "bidfloor": 1.5}, {"id": "2", "bidfloor": 0.05}, {"id": "3"}],
            "site": {"domain": "corpus.example", "page": "https://corpus.example/"},
            "user": {"id": "u"}
        })
    }

    /// Splits rendered bytes into head and body, checking Content-Length on the way.
    fn split(bytes: &[u8]) -> (String, Vec<u8>) {
        let end = find(bytes, b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(len, bytes.len() - end, "Content-Length matches the body");
        (head, bytes[end..].to_vec())
    }

    #[test]
    fn every_rendering_is_valid_json_with_fresh_values_in_every_slot() {
        let r = randomise();
        let mut template = RequestTemplate::build(&sample(), &head(false), &r);
        let mut rng = SplitMix64::new(7);
        let mut ids = std::collections::HashSet::new();
        let mut domains = std::collections::HashSet::new();
        for _ in 0..200 {
            let (_, body) = split(template.render(&mut rng, &r));
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(
                ids.insert(v["id"].as_str().unwrap().to_owned()),
                "request ids repeat"
            );
            domains.insert(v["site"]["domain"].as_str().unwrap().to_owned());
            assert_eq!(
                v["site"]["page"], "https://corpus.example/",
                "other fields kept"
            );
            let floor = v["imp"][0]["bidfloor"].as_f64().unwrap();
            assert!(
                (1.2..=1.8).contains(&floor),
                "floor {floor} outside 1.5 ± 20%"
            );
            assert!(
                v["imp"][2].get("bidfloor").is_none(),
                "absent floors stay absent"
            );
            assert_eq!(v["user"]["id"].as_str().unwrap().len(), 16);
            assert_eq!(v["user"]["buyeruid"].as_str().unwrap().len(), 16);
        }
        assert_eq!(domains.len(), r.domains.len());
    }

    #[test]
    fn a_user_keeps_one_buyeruid() {
        let r = Randomise {
            user_population: 3,
            ..randomise()
        };
        let mut template = RequestTemplate::build(&sample(), &head(false), &r);
        let mut rng = SplitMix64::new(1);
        let mut pairs = std::collections::HashMap::new();
        for _ in 0..100 {
            let (_, body) = split(template.render(&mut rng, &r));
            let v: Value = serde_json::from_slice(&body).unwrap();
            let user = v["user"]["id"].as_str().unwrap().to_owned();
            let buyer = v["user"]["buyeruid"].as_str().unwrap().to_owned();
            assert_eq!(pairs.entry(user).or_insert_with(|| buyer.clone()), &buyer);
        }
        assert_eq!(pairs.len(), 3);
    }

    #[test]
    fn gzip_renderings_decode_to_the_same_json_a_plain_rendering_would_hold() {
        let r = randomise();
        let mut plain = RequestTemplate::build(&sample(), &head(false), &r);
        let mut gzip = RequestTemplate::build(&sample(), &head(true), &r);
        let (mut rng_a, mut rng_b) = (SplitMix64::new(3), SplitMix64::new(3));
        for _ in 0..20 {
            let (_, expected) = split(plain.render(&mut rng_a, &r));
            let (head, compressed) = split(gzip.render(&mut rng_b, &r));
            assert!(head.contains("Content-Encoding: gzip\r\n"));
            let mut decoded = Vec::new();
            // GzDecoder checks the CRC-32 and size trailer, so a stale CRC fails here.
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn a_request_without_user_gets_one_and_an_app_gets_bundles() {
        let r = randomise();
        let app = serde_json::json!({"id": "x", "imp": [{"id": "1"}], "app": {"bundle": "b"}});
        let mut template = RequestTemplate::build(&app, &head(false), &r);
        let (_, body) = split(template.render(&mut SplitMix64::new(9), &r));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["app"]["bundle"], "com.example.x");
        assert!(v["user"]["id"].is_string());
    }

    #[test]
    fn names_needing_escapes_are_refused() {
        for bad in ["", "quo\"te", "back\\slash", "sp ace"] {
            let r = Randomise {
                domains: vec![bad.into()],
                ..randomise()
            };
            assert!(
                matches!(r.validate(), Err(TemplateError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(randomise().validate().is_ok());
    }

    /// Counts heap allocations made by the current thread, so parallel tests do not
    /// disturb each other's counts.
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is forwarded unchanged to the system allocator, which upholds
    // the GlobalAlloc contract; the counter is a const-initialised thread-local Cell
    // without a destructor, so touching it never allocates or re-enters the allocator.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: same layout the caller gave us, as the contract requires.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout (via `alloc`).
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    #[test]
    fn rendering_a_request_does_not_allocate() {
        let r = randomise();
        for gzip in [false, true] {
            let mut template = RequestTemplate::build(&sample(), &head(gzip), &r);
            let mut rng = SplitMix64::new(11);
            let before = ALLOCATIONS.with(|n| n.get());
            let mut bytes = 0;
            for _ in 0..1_000 {
                bytes += template.render(&mut rng, &r).len();
            }
            let allocations = ALLOCATIONS.with(|n| n.get()) - before;
            assert!(bytes > 0);
            assert_eq!(
                allocations, 0,
                "gzip {gzip}: {allocations} allocations in 1,000 renders"
            );
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(42);
        let mut seen = [false; 7];
        for _ in 0..1_000 {
            seen[rng.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
