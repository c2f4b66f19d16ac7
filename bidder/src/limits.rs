//! Every limit of the bidder, in one place (after TigerBeetle's `constants.zig`): each
//! named with its unit, the relations between them asserted at compile time below, and
//! read by configuration validation and by the code that enforces them, so a value the
//! configuration accepts is a value the engines can run.
//!
//! The stage a limit belongs to re-exports it (`crate::openrtb::MAX_IMPS` is this
//! `MAX_IMPS`), so code reads naturally where it is used; it is defined only here.
//! Constants that are facts of an encoding rather than choices (digits in an `i64`,
//! bits of a bid id) stay beside their encoding.

// ---- Configuration ----------------------------------------------------------

/// Largest configuration file accepted, so a wrong path (a log file, a disk image)
/// fails fast instead of eating memory.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// Most campaigns one bidder serves; the index and budgets are sized from this.
pub const MAX_CAMPAIGNS: usize = 100_000;

/// Most partners (exchanges / SSPs); each with CIDRs takes one XDP slot.
pub const MAX_PARTNERS: usize = 256;

/// Most creatives a single campaign may hold.
pub const MAX_CREATIVES_PER_CAMPAIGN: usize = 64;

/// Errors reported in one pass at most; past this the file is broken enough.
pub const MAX_REPORTED_ERRORS: usize = 50;

/// Longest domain or bundle looked up; longer values cannot match any target and are
/// treated as absent (DNS names are at most 253 bytes).
pub const MAX_LOOKUP_KEY_BYTES: usize = 256;

// ---- Engines ----------------------------------------------------------------

/// The most connections one worker serves at once (`server.max_connections_per_worker`
/// and both engines): beyond this a worker's memory for half-received requests is no
/// longer a sane bound. The io_uring engine could index 2^24 slots; one bound for both
/// engines means a value the configuration accepts runs on either.
pub const MAX_CONNECTIONS_PER_WORKER: u32 = 1 << 20;

/// Bounds of the `[server]` timeouts, ms.
pub const IDLE_TIMEOUT_MS: (u64, u64) = (10, 3_600_000);
pub const REQUEST_TIMEOUT_MS: (u64, u64) = (10, 60_000);
pub const FIRST_BYTE_TIMEOUT_MS: (u64, u64) = (10, 60_000);
pub const SHUTDOWN_GRACE_MS: (u64, u64) = (0, 60_000);
/// Bounds of `server.max_header_bytes` and `server.max_body_bytes`.
pub const HEADER_BYTES: (u64, u64) = (1_024, 1 << 20);
pub const BODY_BYTES: (u64, u64) = (1_024, 16 << 20);
/// Bounds of `server.ring_entries` (submission queue entries per io_uring).
pub const RING_ENTRIES: (u64, u64) = (8, 32_768);

/// The most worker threads an engine starts; more than the cores of any host we run on.
pub const MAX_WORKERS: usize = 1024;

/// The kernel's limit on provided-buffer ring entries.
pub const MAX_RECV_BUFFERS: u16 = 1 << 15;

/// The kernel's limit on registered buffers.
pub const MAX_OUTPUT_BUFFERS: u32 = 1 << 14;

/// Answers are written once this many are waiting; also sizes the per-connection array
/// of decision times awaiting their total time.
pub const MAX_ANSWERS_PER_FLUSH: usize = 64;

/// Shed connections that may linger at once per worker (to deliver their 503 before the
/// close); past this a shed connection is closed right after the write. Bounds what a
/// connection flood costs beyond `max_connections`.
pub const MAX_LINGERING_SHEDS: u32 = 64;

// ---- HTTP -------------------------------------------------------------------

/// The largest `max_headers` accepted: the header array handed to `httparse` lives on the
/// stack of the parser, and this is its length.
pub const MAX_HEADERS_CEILING: usize = 256;

/// Longest chunk-size line (size, extensions, CRLF) we read before calling it malformed.
pub const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// Longest partner name accepted in `/bid/{partner}`; partner names are config keys, not
/// free text.
pub const MAX_PARTNER_NAME_BYTES: usize = 64;

/// Members in one body; real senders use one, concatenation is allowed but bounded.
pub const MAX_GZIP_MEMBERS: usize = 16;

// ---- OpenRTB requests -------------------------------------------------------

/// Largest body the parser accepts, in bytes. Real banner requests are 1–5 KiB and
/// multi-imp video requests rarely pass 50 KiB; anything larger is refused before
/// parsing with [`crate::openrtb::ParseError::TooLarge`].
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Deepest nesting of JSON objects and arrays, in levels (the top-level object is
/// level 1). OpenRTB itself needs 5; the rest is headroom for `ext`. Deeper bodies
/// fail with [`crate::openrtb::ParseError::TooDeep`], which also bounds the parser's stack.
pub const MAX_DEPTH: usize = 32;

/// Most impressions of one request evaluated; the rest are not read and get no bid
/// (counted by `bidder_openrtb_imps_over_limit_total`); the request is not refused.
pub const MAX_IMPS: usize = 64;

/// Most sizes kept per banner (`banner.format`); further sizes are dropped and the
/// request is flagged `truncated`.
pub const MAX_FORMATS_PER_BANNER: usize = 32;

/// Most deals kept per impression (`pmp.deals`); further deals are dropped (we just
/// cannot bid on them) and the request is flagged `truncated`.
pub const MAX_DEALS_PER_IMP: usize = 64;

/// Most items in any string or integer list (`bcat`, `badv`, `battr`, `wseat`, `cat`,
/// `mimes`, …). A longer list fails the request with [`crate::openrtb::ParseError::ListTooLong`]:
/// cutting a block list could let a blocked advertiser through.
pub const MAX_LIST_ITEMS: usize = 1024;

/// Most nodes in a supply chain; a longer chain fails the request with
/// [`crate::openrtb::ParseError::ListTooLong`], since a cut chain would misstate who is selling.
pub const MAX_SCHAIN_NODES: usize = 32;

/// Most extended-id providers kept per user (`user.eids`); further ones are dropped
/// and the request is flagged `truncated`.
pub const MAX_EIDS: usize = 64;

// ---- Consent ----------------------------------------------------------------

/// Longest consent string (TCF `user.consent` or GPP `regs.gpp`) decoded. Real strings
/// are a few hundred bytes; a longer one is treated as malformed (no consent), so one
/// request cannot make a worker decode kilobytes.
pub const MAX_CONSENT_STRING_BYTES: usize = 4096;

/// Decoded consent strings each worker remembers per kind (TCF, GPP), direct-mapped by
/// the text's hash: at most this × `MAX_CONSENT_STRING_BYTES` bytes per kind per worker
/// (4 MiB), typically a few hundred KiB. A new string takes its slot's place; a miss
/// costs one decode (a few microseconds).
pub const CONSENT_CACHE_SLOTS: usize = 1024;

/// User agents whose invalid-traffic facts (a crawler or blocked fragment, the phone
/// platform named) each worker remembers, direct-mapped by the text's hash: at most
/// this × `MAX_CACHED_USER_AGENT_BYTES` (512 KiB) per worker. A new agent takes its
/// slot's place; a miss costs one pass of the fragment automaton over the text (about
/// 300 ns for a 130-byte browser agent here, against about 30 ns for a hit).
pub const USER_AGENT_CACHE_SLOTS: usize = 1024;

/// Longest user agent kept in that cache; a longer one (rare, and no browser's) is
/// matched on every request.
pub const MAX_CACHED_USER_AGENT_BYTES: usize = 512;

/// Supply-chain verdicts each worker remembers, direct-mapped by the hash of the fields
/// a verdict reads (partner, publisher host, each node's system and seller id): at most
/// this × `MAX_SUPPLY_VERDICT_KEY_BYTES` (512 KiB) per worker. A miss costs the file
/// lookups (a public-suffix lookup, a few hash probes: about 250 ns here).
pub const SUPPLY_VERDICT_CACHE_SLOTS: usize = 1024;

/// Longest such key; a request with longer fields (a long chain) is verified every time.
pub const MAX_SUPPLY_VERDICT_KEY_BYTES: usize = 512;
const _: () = assert!(MAX_SUPPLY_VERDICT_KEY_BYTES < u16::MAX as usize);

/// Largest invalid-traffic list file (`[ivt]`), the same bound as a configuration: a
/// million addresses take about 15 MB of text.
pub const MAX_IVT_LIST_BYTES: u64 = MAX_CONFIG_BYTES;

/// Longest host name (RFC 1035): a longer ads.txt or sellers.json domain is not looked up.
pub const MAX_DOMAIN_BYTES: usize = 253;
const _: () = assert!(MAX_DOMAIN_BYTES < 256 && MAX_DOMAIN_BYTES <= MAX_LOOKUP_KEY_BYTES);

/// Domains with no supply file yet that workers can report before the fetcher's next
/// round (about 256 KiB); past it reports are dropped, counted, and made again on the
/// domain's next request.
pub const SUPPLY_DISCOVERY_QUEUE: usize = 1_024;

// ---- Responses --------------------------------------------------------------

/// Most bids in one response. A request carries a bounded number of impressions and we
/// bid at most once per impression; past this the decision is broken, not busy.
pub const MAX_BIDS_PER_RESPONSE: usize = 64;

/// Most entries in one bid's `adomain`, `cat` or `attr` list. Real creatives carry a
/// handful; the bound keeps the FlatBuffers encoder's offset table on the stack.
pub const MAX_RESPONSE_LIST_ITEMS: usize = 64;

/// Largest encoded response, in bytes. Big VAST markup is tens of kilobytes; a response
/// past this is refused rather than sent, since exchanges cap bodies well below it.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;

// ---- Money ------------------------------------------------------------------

/// Highest margin multiplier any strategy may set (×1.5). The strategy writer enforces
/// it; the decision clamps to it too, because the catalog orders campaigns by the most
/// they can bid (value × this, capped) and stops evaluating once no campaign left can
/// beat the best bid found.
pub const MAX_MARGIN_PPM: u32 = 1_500_000;

/// The highest `floor_markup_ppm` a campaign may set: floor × 3.
pub const MAX_FLOOR_MARKUP_PPM: u32 = 3_000_000;

/// Most reservations held at once; beyond this new bids are refused (fail closed).
pub const MAX_PENDING: usize = 1_000_000;

/// Bids the ledger remembers after they left it (settled, released or expired), for
/// duplicates and late wins. Past this, expired bids are not remembered (a late win
/// for one is counted unknown, not charged): the memory stays bounded whatever the
/// rate of bids nobody answers.
pub const MAX_REMEMBERED_BIDS: usize = 2 * MAX_PENDING;

/// Longest a bid's budget may stay reserved waiting for its notice. Budget windows
/// alternate (`money/budget.rs`): a window is reused two periods after its own, so
/// every reservation must end within the period after the one it was made in; an
/// hour is the shortest period.
pub const MAX_RESERVATION_TTL_MS: u64 = 3_600_000;

/// Notices applied in memory but not yet written to the spend journal (waiting for a
/// commit, or for storage to come back). Past this, notices are answered 503 without
/// being applied, so the exchange retries them later and nothing is lost.
pub const MAX_UNWRITTEN_NOTICES: usize = 65_536;

/// Records one journal commit takes at most; the rest wait for the next commit.
pub const MAX_JOURNAL_BATCH: usize = 4_096;
const _: () = assert!(MAX_JOURNAL_BATCH <= MAX_UNWRITTEN_NOTICES);

/// The shortest notice signing key accepted (config validation and the signer), bytes:
/// as long as the hash output, so the key is never the weak part.
pub const MIN_NOTICE_KEY_BYTES: usize = 32;

/// Accept backlog of the admin and notice listeners, connections: a burst of exchange
/// notice connections waits in the kernel instead of being dropped and retried later.
pub const CONTROL_LISTEN_BACKLOG: i32 = 1_024;

/// The shortest admin token accepted (`[server] admin_token_file`), bytes after
/// trimming: 32 base64 characters carry 192 bits, past any online guessing.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// The longest base URL accepted; anything longer is a configuration mistake that would
/// bloat every response three times over.
pub const MAX_BASE_URL_BYTES: usize = 512;

/// The longest notice query string the endpoint will parse: ids are bounded by the
/// OpenRTB parser, and exchanges substitute short macro values.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The longest imp id a notice URL carries, bytes. OpenRTB puts no bound on `imp.id`;
/// a longer one is cut (on a character boundary) where it is signed, so a notice URL
/// never outgrows [`MAX_QUERY_BYTES`] and is refused when it comes back (found by the
/// `notice_query` fuzz target).
pub const MAX_NOTICE_IMP_ID_BYTES: usize = 128;

// ---- Control port and metrics -----------------------------------------------

/// The largest latency told apart from larger ones, µs; slower answers are counted at
/// this value. Ten seconds is far past any bid deadline: anything there is a stall.
pub const MAX_RECORDED_LATENCY_US: u64 = 10_000_000;

/// Largest request head hyper buffers (request line and headers): notice URLs are at
/// most `MAX_QUERY_BYTES` (4 KiB) of query, so 16 KiB leaves room for headers. hyper
/// answers 431 past it.
pub const MAX_ADMIN_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Reloads run on the blocking pool one at a time (they share one callback behind a
/// mutex), so one thread is all it needs; a second covers a reload stuck past its
/// client's patience while the next one queues.
pub const MAX_BLOCKING_THREADS: usize = 2;

// ---- Frequency caps -----------------------------------------------------------

/// Most (campaign, user) pairs `[frequency] max_tracked` may ask for: 512 MiB of counts.
pub const MAX_FREQUENCY_TRACKED: usize = 1 << 26;

// ---- XDP front --------------------------------------------------------------

/// Most packets one request may count as: past this the "limit" is no limit.
pub const MAX_PACKETS_PER_REQUEST: u32 = 1_000;

/// Longest wait between two drop log records a CPU may be told to keep.
pub const MAX_LOG_INTERVAL_MS: u64 = 3_600_000;

/// Interface names are at most 15 bytes (`IFNAMSIZ` 16 with the NUL).
pub const MAX_INTERFACE_NAME_BYTES: usize = 15;

// ---- How the limits relate ---------------------------------------------------

// We bid at most once per impression: a response can hold a bid for every imp.
const _: () = assert!(MAX_BIDS_PER_RESPONSE >= MAX_IMPS);
// The io_uring engine packs a connection slot into 24 bits of `user_data`.
const _: () = assert!(MAX_CONNECTIONS_PER_WORKER <= 1 << 24);
// Each partner with CIDRs takes one slot in the XDP maps, and partner indexes are u16.
const _: () = assert!(MAX_PARTNERS == bidder_common::xdp::MAX_PARTNERS as usize);
const _: () = assert!(MAX_PARTNERS <= u16::MAX as usize);
// A notice URL's query fits in the admin port's request head with room for headers.
const _: () = assert!(MAX_QUERY_BYTES * 2 <= MAX_ADMIN_REQUEST_HEAD_BYTES);
// The parser's bound on a body lies within the range `server.max_body_bytes` may take,
// so some configured HTTP bound always reaches it.
const _: () = assert!(MAX_REQUEST_BYTES as u64 <= BODY_BYTES.1);
// A partner name in a path fits the tables' keys.
const _: () = assert!(MAX_PARTNER_NAME_BYTES <= bidder_common::table::MAX_KEY_BYTES);
