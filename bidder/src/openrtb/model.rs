//! The OpenRTB 2.6 `BidRequest` as the decision core sees it: borrowed and flat.
//!
//! Why this shape:
//! - **Borrowed**: every string is a `&'a str` into the request body, which the JSON
//!   parser unescapes in place, so no string is copied.
//! - **Flat**: every list (formats, deals, block lists, schain nodes, eids, enum lists)
//!   lives in one pool `Vec` per element type inside [`BidRequest`]; its owner holds a
//!   typed span (`StrSpan`, `IntSpan`, …) and the request resolves it to a slice
//!   (`req.strs(site.cat)`, `req.formats(banner.format)`). The pools keep their capacity
//!   from one request to the next, so a warmed-up parser allocates nothing.
//! - **Tolerant of the future**: enumerations stay integers (`u32`), never Rust enums,
//!   so a value added by a later spec revision or an exchange's private range passes
//!   through instead of failing the request. Flags (0/1 on the wire) are `bool`.
//!
//! Which wire location a privacy or supply-chain signal came from (2.6 field vs the
//! 2.5 `ext` that Prebid Server still sends) is recorded in [`Origins`] for metrics.

use crate::openrtb::scratch::reuse_vec;
use std::marker::PhantomData;

/// The currency OpenRTB assumes when `bidfloorcur` is absent.
pub const DEFAULT_CURRENCY: &str = "USD";

/// The auction type OpenRTB assumes when `at` is absent (2 = second price plus).
pub const DEFAULT_AUCTION_TYPE: u32 = 2;

/// The category taxonomy OpenRTB assumes when `cattax` is absent (1 = IAB Content 1.0).
pub const DEFAULT_CATTAX: u32 = 1;

/// A `[start, start + len)` window into one of the request's pools, typed by the pool
/// it points into so that a deal span can never be resolved against the format pool.
///
/// Spans are only made by the parser; resolving one never panics (an out-of-range
/// span, which would be a parser bug, resolves to an empty slice in release builds).
pub struct Span<T> {
    pub(crate) start: u32,
    pub(crate) len: u32,
    _pool: PhantomData<fn() -> T>,
}

impl<T> Span<T> {
    /// The empty span: what an absent list resolves to.
    pub const EMPTY: Self = Self::new(0, 0);

    pub(crate) const fn new(start: u32, len: u32) -> Self {
        Self {
            start,
            len,
            _pool: PhantomData,
        }
    }

    /// Number of items the span covers.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the list was absent or empty on the wire.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn resolve<E>(self, pool: &[E]) -> &[E] {
        let start = self.start as usize;
        let end = start + self.len as usize;
        debug_assert!(end <= pool.len(), "span {start}..{end} outside pool");
        pool.get(start..end).unwrap_or(&[])
    }
}

// Manual impls: derives would demand `T: Clone` etc. of the marker type.
impl<T> Clone for Span<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Span<T> {}
impl<T> Default for Span<T> {
    fn default() -> Self {
        Self::EMPTY
    }
}
impl<T> PartialEq for Span<T> {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.len == other.len
    }
}
impl<T> Eq for Span<T> {}
impl<T> std::fmt::Debug for Span<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Span({}..+{})", self.start, self.len)
    }
}

/// Marker for spans into the string pool (`&'a str` items).
#[derive(Debug)]
pub enum StrPool {}
/// Marker for spans into the integer pool (`u32` enum values and ids).
#[derive(Debug)]
pub enum IntPool {}

/// A list of strings (categories, domains, bundles, seats, mimes, currencies).
pub type StrSpan = Span<StrPool>;
/// A list of integers (creative attributes, APIs, protocols, GPP section ids).
pub type IntSpan = Span<IntPool>;
/// The banner sizes of one impression.
pub type FormatSpan = Span<Format>;
/// The deals of one private marketplace.
pub type DealSpan = Span<Deal<'static>>;
/// The nodes of one supply chain.
pub type NodeSpan = Span<SchainNode<'static>>;
/// The extended identifiers of one user.
pub type EidSpan = Span<Eid<'static>>;

/// Which wire location a signal came from: a bit is set when the value was taken from
/// the OpenRTB 2.5 `ext` location because the 2.6 field was absent. Kept for metrics
/// (how much traffic still arrives 2.5-shaped), never for decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origins(pub(crate) u8);

impl Origins {
    /// `regs.gdpr` came from `regs.ext.gdpr`.
    pub const GDPR_FROM_EXT: u8 = 1 << 0;
    /// `regs.us_privacy` came from `regs.ext.us_privacy`.
    pub const US_PRIVACY_FROM_EXT: u8 = 1 << 1;
    /// `user.consent` came from `user.ext.consent`.
    pub const CONSENT_FROM_EXT: u8 = 1 << 2;
    /// `user.eids` came from `user.ext.eids`.
    pub const EIDS_FROM_EXT: u8 = 1 << 3;
    /// `source.schain` came from `source.ext.schain`.
    pub const SCHAIN_FROM_EXT: u8 = 1 << 4;

    /// True when every bit of `flags` is set.
    pub fn contains(self, flags: u8) -> bool {
        self.0 & flags == flags
    }

    /// The raw bits, for a metrics label or counter index.
    pub fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn set(&mut self, flags: u8) {
        self.0 |= flags;
    }
}

/// One parsed bid request. Obtained from [`super::Parser::parse`]; borrows the body
/// (`'a`) and is recycled into the parser when the returned guard drops.
#[derive(Debug, Default)]
pub struct BidRequest<'a> {
    /// Exchange-assigned request id; required, never empty.
    pub id: &'a str,
    /// Publisher website, when the inventory is web.
    pub site: Option<Site<'a>>,
    /// Publisher application, when the inventory is in-app.
    pub app: Option<App<'a>>,
    /// Digital out-of-home screen, when the inventory is DOOH.
    pub dooh: Option<Dooh<'a>>,
    /// The device the ad will show on.
    pub device: Option<Device<'a>>,
    /// The human (or household) behind the device.
    pub user: Option<User<'a>>,
    /// Regulatory signals; all-default when `regs` is absent.
    pub regs: Regs<'a>,
    /// The inventory's upstream path (transaction id, supply chain).
    pub source: Option<Source<'a>>,
    /// Blocked advertiser categories (`bcat`).
    pub bcat: StrSpan,
    /// Blocked advertiser domains (`badv`).
    pub badv: StrSpan,
    /// Blocked app bundles (`bapp`).
    pub bapp: StrSpan,
    /// Allowed bid currencies (`cur`); empty means any (in practice USD).
    pub cur: StrSpan,
    /// Allowed buyer seats (`wseat`); empty means all allowed.
    pub wseat: StrSpan,
    /// Blocked buyer seats (`bseat`).
    pub bseat: StrSpan,
    /// Taxonomy of `bcat` and the `cat` lists; [`DEFAULT_CATTAX`] when absent.
    pub cattax: u32,
    /// Exchange time budget for the whole round trip, in milliseconds, when given.
    pub tmax_ms: Option<u32>,
    /// Auction type (1 first price, 2 second price plus, 500+ exchange specific);
    /// [`DEFAULT_AUCTION_TYPE`] when absent.
    pub at: u32,
    /// Test traffic: the exchange will not bill, so neither must our budget.
    pub test: bool,
    /// The exchange requires all impressions to be won together.
    pub allimps: bool,
    /// Which signals came from 2.5 `ext` locations (metrics only).
    pub origins: Origins,
    /// True when a list over its limit was cut (see the `MAX_*` constants in
    /// [`super`]); the request is still safe to bid on, with fewer options.
    pub truncated: bool,
    /// Imps on the wire past [`super::MAX_IMPS`]: not read, never bid on (the first
    /// `MAX_IMPS` are). A large request is still a valid one and is not refused.
    pub imps_over_limit: usize,
    pub(crate) imps: Vec<Imp<'a>>,
    pub(crate) strs: Vec<&'a str>,
    pub(crate) ints: Vec<u32>,
    pub(crate) formats: Vec<Format>,
    pub(crate) deals: Vec<Deal<'a>>,
    pub(crate) nodes: Vec<SchainNode<'a>>,
    pub(crate) eids: Vec<Eid<'a>>,
}

impl<'a> BidRequest<'a> {
    /// The impressions on offer; never empty for a successfully parsed request.
    pub fn imps(&self) -> &[Imp<'a>] {
        &self.imps
    }

    /// Resolves a string list (e.g. `site.cat`, `video.mimes`, `deal.wseat`).
    pub fn strs(&self, span: StrSpan) -> &[&'a str] {
        span.resolve(&self.strs)
    }

    /// Resolves an integer list (e.g. `banner.battr`, `video.protocols`, `regs.gpp_sid`).
    pub fn ints(&self, span: IntSpan) -> &[u32] {
        span.resolve(&self.ints)
    }

    /// Resolves the sizes of a banner (`banner.format`).
    pub fn formats(&self, span: FormatSpan) -> &[Format] {
        span.resolve(&self.formats)
    }

    /// Resolves the deals of a private marketplace (`pmp.deals`).
    pub fn deals(&self, span: DealSpan) -> &[Deal<'a>] {
        span.resolve(&self.deals)
    }

    /// Resolves the nodes of a supply chain (`schain.nodes`).
    pub fn schain_nodes(&self, span: NodeSpan) -> &[SchainNode<'a>] {
        span.resolve(&self.nodes)
    }

    /// Resolves the extended ids of a user (`user.eids`).
    pub fn eids(&self, span: EidSpan) -> &[Eid<'a>] {
        span.resolve(&self.eids)
    }

    /// Blocked advertiser categories.
    pub fn bcat(&self) -> &[&'a str] {
        self.strs(self.bcat)
    }

    /// Blocked advertiser domains.
    pub fn badv(&self) -> &[&'a str] {
        self.strs(self.badv)
    }

    /// Blocked app bundles.
    pub fn bapp(&self) -> &[&'a str] {
        self.strs(self.bapp)
    }

    /// Allowed bid currencies.
    pub fn cur(&self) -> &[&'a str] {
        self.strs(self.cur)
    }

    /// Allowed buyer seats.
    pub fn wseat(&self) -> &[&'a str] {
        self.strs(self.wseat)
    }

    /// Blocked buyer seats.
    pub fn bseat(&self) -> &[&'a str] {
        self.strs(self.bseat)
    }

    /// The supply chain, from `source.schain` or `source.ext.schain`.
    pub fn schain(&self) -> Option<&SupplyChain<'a>> {
        self.source.as_ref()?.schain.as_ref()
    }

    /// Empties the request and re-types its pools for the next body's lifetime,
    /// keeping every allocation. Called by the parser, never on a live request.
    pub(crate) fn recycle<'b>(self) -> BidRequest<'b> {
        BidRequest {
            imps: reuse_vec(self.imps),
            strs: reuse_vec(self.strs),
            ints: reuse_vec(self.ints),
            formats: reuse_vec(self.formats),
            deals: reuse_vec(self.deals),
            nodes: reuse_vec(self.nodes),
            eids: reuse_vec(self.eids),
            ..BidRequest::empty()
        }
    }

    /// A request with spec defaults and no capacity; the parser fills it in.
    pub(crate) fn empty() -> Self {
        Self {
            cattax: DEFAULT_CATTAX,
            at: DEFAULT_AUCTION_TYPE,
            ..Self::default()
        }
    }
}

/// One impression on offer (`imp`).
#[derive(Clone, Copy, Debug)]
pub struct Imp<'a> {
    /// Impression id, unique within the request; required, never empty.
    pub id: &'a str,
    /// Present when a display banner is acceptable.
    pub banner: Option<Banner>,
    /// Present when video is acceptable.
    pub video: Option<Video>,
    /// Present when audio is acceptable.
    pub audio: Option<Audio>,
    /// Present when native is acceptable.
    pub native: Option<Native<'a>>,
    /// Private marketplace terms, when any.
    pub pmp: Option<Pmp>,
    /// Minimum CPM in micros of `bidfloorcur`; 0 when absent or unusable (negative,
    /// NaN, absurd: see `money::cpm_from_f64`).
    pub bidfloor_micros: i64,
    /// Currency of `bidfloor_micros`; [`DEFAULT_CURRENCY`] when absent.
    pub bidfloorcur: &'a str,
    /// `Some(true)` when the creative must be HTTPS; `None` when the exchange did not
    /// say (the spec then allows non-secure).
    pub secure: Option<bool>,
    /// Interstitial or full-screen placement.
    pub instl: bool,
    /// Ad slot identifier, for placement targeting.
    pub tagid: Option<&'a str>,
    /// SDK or player rendering the ad.
    pub displaymanager: Option<&'a str>,
}

/// A display placement (`imp.banner`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Banner {
    /// Exact width in device-independent pixels, when given.
    pub w: Option<u32>,
    /// Exact height in device-independent pixels, when given.
    pub h: Option<u32>,
    /// Acceptable sizes. When the wire has no `format` but has `w` and `h`, this holds
    /// that one size, so the decision core looks in one place only.
    pub format: FormatSpan,
    /// Blocked creative attributes (AdCOM list: creative attributes).
    pub battr: IntSpan,
    /// Blocked banner types.
    pub btype: IntSpan,
    /// Ad position on screen (AdCOM list: placement positions).
    pub pos: Option<u32>,
    /// Supported API frameworks (MRAID, OMID, …).
    pub api: IntSpan,
}

/// One acceptable banner size (`banner.format[]`), in device-independent pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// Width in DIPs.
    pub w: u32,
    /// Height in DIPs.
    pub h: u32,
}

/// A video placement (`imp.video`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Video {
    /// Accepted MIME types.
    pub mimes: StrSpan,
    /// Player width in DIPs.
    pub w: Option<u32>,
    /// Player height in DIPs.
    pub h: Option<u32>,
    /// Minimum ad duration in seconds.
    pub minduration: Option<u32>,
    /// Maximum ad duration in seconds.
    pub maxduration: Option<u32>,
    /// Supported video protocols (VAST versions).
    pub protocols: IntSpan,
    /// Placement type (deprecated in 2.6 in favour of `plcmt`, still sent widely).
    pub placement: Option<u32>,
    /// Placement subtype (2.6).
    pub plcmt: Option<u32>,
    /// Linear (in-stream) or non-linear (overlay).
    pub linearity: Option<u32>,
    /// Blocked creative attributes.
    pub battr: IntSpan,
}

/// An audio placement (`imp.audio`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Audio {
    /// Accepted MIME types.
    pub mimes: StrSpan,
    /// Minimum ad duration in seconds.
    pub minduration: Option<u32>,
    /// Maximum ad duration in seconds.
    pub maxduration: Option<u32>,
    /// Blocked creative attributes.
    pub battr: IntSpan,
}

/// A native placement (`imp.native`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Native<'a> {
    /// The Native Ad request.
    pub request: NativeRequest<'a>,
    /// Version of the Native Ad specification the request follows.
    pub ver: Option<&'a str>,
    /// Supported API frameworks.
    pub api: IntSpan,
    /// Blocked creative attributes.
    pub battr: IntSpan,
}

/// How `native.request` arrived. The spec makes it a string holding JSON; some
/// exchanges send the object itself. Its raw text is not kept in that case: in-place
/// unescaping rewrites the body, so the bytes are no longer the object's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeRequest<'a> {
    /// Absent or of an unusable type.
    #[default]
    Missing,
    /// The spec form: the JSON text of the Native request, to parse when bidding native.
    Json(&'a str),
    /// Sent as an object instead of a string; present, but not kept.
    Object,
}

/// Private marketplace terms (`imp.pmp`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pmp {
    /// True when only the listed deals may bid.
    pub private_auction: bool,
    /// The deals on offer.
    pub deals: DealSpan,
}

/// One deal (`pmp.deals[]`).
#[derive(Clone, Copy, Debug)]
pub struct Deal<'a> {
    /// Deal id agreed with the seller; a deal without an id is dropped by the parser.
    pub id: &'a str,
    /// Minimum CPM for this deal, in micros; 0 when absent or unusable.
    pub bidfloor_micros: i64,
    /// Currency of `bidfloor_micros`; [`DEFAULT_CURRENCY`] when absent.
    pub bidfloorcur: &'a str,
    /// Auction type override for this deal; `None` inherits the request's `at`.
    pub at: Option<u32>,
    /// Buyer seats allowed to bid on the deal; empty means any.
    pub wseat: StrSpan,
    /// Advertiser domains allowed on the deal; empty means any.
    pub wadomain: StrSpan,
}

/// A publisher, as owner of a site, app or screen.
#[derive(Clone, Copy, Debug, Default)]
pub struct Publisher<'a> {
    /// Exchange-specific publisher id.
    pub id: Option<&'a str>,
    /// Publisher's highest-level domain.
    pub domain: Option<&'a str>,
}

/// A website (`site`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Site<'a> {
    /// Exchange-specific site id.
    pub id: Option<&'a str>,
    /// Site name.
    pub name: Option<&'a str>,
    /// Site domain.
    pub domain: Option<&'a str>,
    /// URL of the page where the ad will show.
    pub page: Option<&'a str>,
    /// Content categories of the site.
    pub cat: StrSpan,
    /// The site's publisher.
    pub publisher: Option<Publisher<'a>>,
}

/// An application (`app`).
#[derive(Clone, Copy, Debug, Default)]
pub struct App<'a> {
    /// Exchange-specific app id.
    pub id: Option<&'a str>,
    /// App name.
    pub name: Option<&'a str>,
    /// Store bundle or package name (e.g. `com.foo.mygame`), the usual targeting key.
    pub bundle: Option<&'a str>,
    /// App domain.
    pub domain: Option<&'a str>,
    /// Store URL.
    pub storeurl: Option<&'a str>,
    /// Content categories of the app.
    pub cat: StrSpan,
    /// The app's publisher.
    pub publisher: Option<Publisher<'a>>,
}

/// A digital out-of-home screen (`dooh`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dooh<'a> {
    /// Exchange-specific screen id.
    pub id: Option<&'a str>,
    /// Screen or network name.
    pub name: Option<&'a str>,
    /// Venue types (taxonomy given by the exchange).
    pub venuetype: StrSpan,
    /// The screen's publisher.
    pub publisher: Option<Publisher<'a>>,
}

/// The device (`device`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Device<'a> {
    /// Browser user agent.
    pub ua: Option<&'a str>,
    /// IPv4 address (possibly truncated by the exchange).
    pub ip: Option<&'a str>,
    /// IPv6 address (possibly truncated by the exchange).
    pub ipv6: Option<&'a str>,
    /// Device type (AdCOM list: device types).
    pub devicetype: Option<u32>,
    /// Operating system.
    pub os: Option<&'a str>,
    /// Operating system version.
    pub osv: Option<&'a str>,
    /// Manufacturer.
    pub make: Option<&'a str>,
    /// Model.
    pub model: Option<&'a str>,
    /// Advertising id (IDFA, GAID, …), when the user allows it.
    pub ifa: Option<&'a str>,
    /// Limit ad tracking: the user opted out of tracking-based targeting.
    pub lmt: Option<bool>,
    /// Do not track.
    pub dnt: Option<bool>,
    /// Browser language (ISO 639-1 alpha-2).
    pub language: Option<&'a str>,
    /// Location of the device.
    pub geo: Option<Geo<'a>>,
}

/// A location (`device.geo`, `user.geo`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Geo<'a> {
    /// Country, ISO 3166-1 alpha-3.
    pub country: Option<&'a str>,
    /// Region, ISO 3166-2.
    pub region: Option<&'a str>,
    /// City name.
    pub city: Option<&'a str>,
    /// Source of the location (`type` on the wire: GPS, IP, user-provided).
    pub kind: Option<u32>,
    /// Latitude in degrees, −90 to 90.
    pub lat: Option<f64>,
    /// Longitude in degrees, −180 to 180.
    pub lon: Option<f64>,
    /// Local time offset from UTC, in minutes.
    pub utcoffset: Option<i32>,
}

/// The user (`user`).
#[derive(Clone, Copy, Debug, Default)]
pub struct User<'a> {
    /// Exchange-specific user id.
    pub id: Option<&'a str>,
    /// Our own user id, as mapped by the exchange's cookie sync.
    pub buyeruid: Option<&'a str>,
    /// Year of birth.
    pub yob: Option<u32>,
    /// `M`, `F` or `O`.
    pub gender: Option<&'a str>,
    /// TCF consent string (`user.consent`, or `user.ext.consent` when absent).
    pub consent: Option<&'a str>,
    /// Extended ids (`user.eids`, or `user.ext.eids` when absent).
    pub eids: EidSpan,
    /// Home location.
    pub geo: Option<Geo<'a>>,
}

/// One extended identifier source (`user.eids[]`), summarised: the decision core
/// needs which id providers are present, not every uid.
#[derive(Clone, Copy, Debug, Default)]
pub struct Eid<'a> {
    /// Provider domain (e.g. `liveramp.com`).
    pub source: Option<&'a str>,
    /// Number of uids the provider sent.
    pub uid_count: u32,
    /// The first uid's `id`, when it is a string.
    pub first_uid: Option<&'a str>,
}

/// Regulatory signals (`regs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs<'a> {
    /// COPPA applies (child-directed inventory).
    pub coppa: bool,
    /// GDPR applies (`Some(true)`), does not (`Some(false)`), or unknown (`None`).
    /// From `regs.gdpr`, else `regs.ext.gdpr`.
    pub gdpr: Option<bool>,
    /// CCPA/US privacy string, from `regs.us_privacy`, else `regs.ext.us_privacy`.
    pub us_privacy: Option<&'a str>,
    /// Global Privacy Platform string.
    pub gpp: Option<&'a str>,
    /// GPP sections that apply.
    pub gpp_sid: IntSpan,
}

/// The inventory's upstream path (`source`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Source<'a> {
    /// Transaction id shared by every bidder seeing this impression opportunity.
    pub tid: Option<&'a str>,
    /// True when an upstream party, not the exchange, makes the final decision.
    pub fd: Option<bool>,
    /// Supply chain, from `source.schain`, else `source.ext.schain`.
    pub schain: Option<SupplyChain<'a>>,
}

/// The supply chain object (`schain`), to check that every seller is authorised.
#[derive(Clone, Copy, Debug, Default)]
pub struct SupplyChain<'a> {
    /// True when the chain reaches back to the owner of the inventory.
    pub complete: bool,
    /// Version of the supply chain specification.
    pub ver: Option<&'a str>,
    /// The nodes, from the first seller to the one that called us.
    pub nodes: NodeSpan,
}

/// One seller in the supply chain (`schain.nodes[]`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SchainNode<'a> {
    /// Canonical domain of the seller's system (matches its `sellers.json`).
    pub asi: Option<&'a str>,
    /// Seller id within that system.
    pub sid: Option<&'a str>,
    /// True when the node handles payment.
    pub hp: Option<bool>,
    /// Request id the node issued.
    pub rid: Option<&'a str>,
}
