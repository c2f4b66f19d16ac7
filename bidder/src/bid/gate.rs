//! The bid service: what both engines call (through [`crate::http::Service`]) for
//! every bid request — partner recognition, the user-space partner limit, then the
//! bidding pipeline ([`crate::bid::pipeline`]).
//!
//! The catalog and strategy in force are one [`Generation`], swapped atomically on
//! reload: a request in flight finishes on the generation it started with. Each
//! worker thread lazily builds its own [`Pipeline`] (parser, decider, encoder, buffers)
//! and rebuilds it when it sees a newer generation, so the hot path shares nothing
//! mutable between threads.

use crate::clock::monotonic_now;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::bid::pipeline::{Answer, Arrival, Bidding, Pipeline};
use crate::bid::rate_limit::{worker_share, TokenBucket};
use crate::catalog::{Catalog, PartnerIdx};
use crate::decide::{DecisionStats, NoBidReason};
use crate::http::{BidCall, ContentType, Outcome, ResponseBuf, Service, Status};
use crate::metrics::WorkerMetrics;
use crate::respond::Format;

/// Largest bid body copied for parsing; the HTTP limits keep bodies below this.
const INITIAL_BODY_BYTES: usize = 16 * 1024;

/// The catalog and strategy in force, numbered so workers notice a reload.
pub struct Generation {
    pub number: u64,
    pub bidding: Bidding,
}

/// Counters of what happened before the pipeline ran, per service.
#[derive(Debug, Default)]
pub struct GateStats {
    /// Requests naming a partner we do not know (answered 404).
    pub unknown_partner: AtomicU64,
}

/// The service both engines drive. Shared by every worker thread.
pub struct BidService {
    id: u64,
    current: ArcSwap<Generation>,
    /// Engine worker threads, to split partner limits between them.
    worker_threads: u32,
    /// Enforce every partner's limit here (no XDP front does it at the NIC). Off,
    /// only partners the front cannot recognise (no CIDRs) are limited here.
    user_space_limits: AtomicBool,
    next_worker_id: AtomicU16,
    /// Every worker thread's decision counters, for the metrics scrape.
    stats: Mutex<Vec<Arc<DecisionStats>>>,
    pub gate: GateStats,
}

/// Distinguishes services within one process (tests run many) for thread-local state.
static NEXT_SERVICE_ID: AtomicU64 = AtomicU64::new(1);

/// One worker thread's state for one service.
struct ThreadState {
    service_id: u64,
    generation: u64,
    pipeline: Pipeline,
    worker_id: u16,
    stats: Arc<DecisionStats>,
    /// The request body, copied: the parser rewrites it in place.
    body: Vec<u8>,
    /// Partner limit buckets, indexed like the generation's partners.
    buckets: Vec<TokenBucket>,
}

thread_local! {
    static THREAD: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
}

impl BidService {
    /// A service starting on `bidding`, for engines running `worker_threads` threads.
    pub fn new(bidding: Bidding, worker_threads: u32) -> BidService {
        BidService {
            id: NEXT_SERVICE_ID.fetch_add(1, Ordering::Relaxed),
            current: ArcSwap::from_pointee(Generation { number: 1, bidding }),
            worker_threads: worker_threads.max(1),
            user_space_limits: AtomicBool::new(true),
            next_worker_id: AtomicU16::new(0),
            stats: Mutex::new(Vec::new()),
            gate: GateStats::default(),
        }
    }

    /// Makes `bidding` the generation new requests use (reload). Requests in flight
    /// finish on the one they started with.
    pub fn swap(&self, bidding: Bidding) -> u64 {
        let number = self.current.load().number + 1;
        self.current.store(Arc::new(Generation { number, bidding }));
        number
    }

    /// The generation in force.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Turns the user-space limits off for the partners the XDP front enforces (those
    /// with CIDRs); partners known only by their bid path stay limited here.
    pub fn set_user_space_limits(&self, on: bool) {
        self.user_space_limits.store(on, Ordering::Relaxed);
    }

    /// Every worker thread's decision counters (summed by the metrics scrape).
    pub fn decision_stats(&self) -> Vec<Arc<DecisionStats>> {
        self.stats.lock().expect("stats registry poisoned").clone()
    }

    fn new_thread_state(&self, generation: &Generation) -> ThreadState {
        let worker_id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(DecisionStats::default());
        self.stats
            .lock()
            .expect("stats registry poisoned")
            .push(Arc::clone(&stats));
        let pipeline = self.new_pipeline(generation, worker_id, &stats);
        ThreadState {
            service_id: self.id,
            generation: generation.number,
            pipeline,
            worker_id,
            stats,
            body: Vec::with_capacity(INITIAL_BODY_BYTES),
            buckets: self.buckets(&generation.bidding.catalog),
        }
    }

    fn new_pipeline(
        &self,
        generation: &Generation,
        worker_id: u16,
        stats: &Arc<DecisionStats>,
    ) -> Pipeline {
        // The signer was validated when the catalog was compiled; failing here means
        // the catalog was built without validation, a bug.
        Pipeline::new(&generation.bidding, worker_id, Arc::clone(stats))
            .expect("catalog notice key was validated")
    }

    fn buckets(&self, catalog: &Catalog) -> Vec<TokenBucket> {
        let now = monotonic_now();
        catalog
            .partners
            .iter()
            .map(|p| {
                let rate = worker_share(p.qps_limit, self.worker_threads);
                let burst = worker_share(p.burst, self.worker_threads);
                TokenBucket::new(rate, burst, now)
            })
            .collect()
    }

    /// Runs `f` with this thread's state, (re)building it for the generation in force.
    fn with_thread<R>(&self, generation: &Generation, f: impl FnOnce(&mut ThreadState) -> R) -> R {
        THREAD.with(|slot| {
            let mut slot = slot.borrow_mut();
            let stale = !matches!(&*slot, Some(t) if t.service_id == self.id && t.generation == generation.number);
            if stale {
                match slot.as_mut().filter(|t| t.service_id == self.id) {
                    Some(t) => {
                        t.pipeline = self.new_pipeline(generation, t.worker_id, &t.stats);
                        t.buckets = self.buckets(&generation.bidding.catalog);
                        t.generation = generation.number;
                    }
                    None => *slot = Some(self.new_thread_state(generation)),
                }
            }
            f(slot.as_mut().expect("state built above"))
        })
    }
}

impl Service for BidService {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let generation = self.current.load();
        let catalog = &generation.bidding.catalog;
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`; partners'
        // networks are matched on the address itself.
        let peer = call.peer.map(|ip| ip.to_canonical());
        let partner: Option<PartnerIdx> = match call.partner {
            Some(name) => match catalog.partner_by_name(name) {
                Some(p) if !catalog.partners[usize::from(p)].admits(peer) => {
                    WorkerMetrics::with_current(|m| m.partner(Some(p)).source_mismatch.inc());
                    return Outcome::Reject(Status::Forbidden);
                }
                Some(p) => Some(p),
                None => {
                    self.gate.unknown_partner.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Reject(Status::NotFound);
                }
            },
            None => peer.and_then(|ip| catalog.partner_by_addr(ip)),
        };
        let outcome = self.with_thread(&generation, |t| {
            self.answer(&generation, t, partner, call, out)
        });
        WorkerMetrics::with_current(|m| {
            let counters = m.partner(partner);
            counters.requests.inc();
            match outcome {
                Outcome::Bid => counters.bids.inc(),
                Outcome::NoBid => counters.no_bids.inc(),
                Outcome::Reject(_) => {}
            }
        });
        outcome
    }
}

impl BidService {
    /// The partner gate (enabled, rate), then the bidding pipeline.
    fn answer(
        &self,
        generation: &Generation,
        t: &mut ThreadState,
        partner: Option<PartnerIdx>,
        call: &BidCall<'_>,
        out: &mut ResponseBuf,
    ) -> Outcome {
        let bidding = &generation.bidding;
        let catalog = &bidding.catalog;
        if let Some(p) = partner {
            let config = &catalog.partners[usize::from(p)];
            // First, so that a refusal below answers in the partner's version too.
            out.set_openrtb_version(config.openrtb_version);
            let limits_on =
                self.user_space_limits.load(Ordering::Relaxed) || config.cidrs.is_empty();
            let refused =
                !config.enabled || (limits_on && !t.buckets[usize::from(p)].try_take(call.arrived));
            if refused {
                t.stats.no_bid_imps[NoBidReason::PartnerRefused as usize].inc();
                return Outcome::NoBid;
            }
            out.set_gzip_allowed(config.gzip_responses);
        } else {
            out.set_gzip_allowed(false);
        }
        t.body.clear();
        t.body.extend_from_slice(call.body);
        // FlatBuffers when the request asks for them, else the partner's format.
        let format = if call.prefers_flatbuffers {
            Format::FlatBuffers
        } else {
            partner.map_or(Format::Json, |p| {
                catalog.partners[usize::from(p)].response_format
            })
        };
        let arrival = Arrival {
            partner,
            now_ms: bidding.clock.now_unix_ms(),
            at: call.arrived,
            format,
        };
        match t
            .pipeline
            .bid_within(bidding, &mut t.body, arrival, out.room())
        {
            Answer::Bid(body)
            | Answer::NoBid {
                body: Some(body), ..
            } => {
                if out.extend(body).is_err() {
                    return Outcome::NoBid;
                }
                if format == Format::FlatBuffers {
                    out.set_content_type(ContentType::FlatBuffers);
                    WorkerMetrics::with_current(|m| {
                        m.partner(partner).flatbuffers_answers.inc();
                    });
                }
                Outcome::Bid
            }
            Answer::NoBid { body: None, .. } => Outcome::NoBid,
            Answer::Invalid(_) => Outcome::Reject(Status::BadRequest),
        }
    }
}
