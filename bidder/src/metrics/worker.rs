//! One worker's metrics: counters it writes alone, and latency histograms it publishes
//! to the scrape without ever waiting for it.
//!
//! The histograms live twice. The worker records into its own [`LatencyRecorder`]
//! (plain memory, no lock) and every [`PUBLISH_EVERY_RECORDS`] values or
//! [`PUBLISH_INTERVAL_MS`] merges them into the shared copy in [`WorkerMetrics`] with a
//! `try_lock`. If the scrape holds that lock at that moment, the worker keeps its values
//! and tries again next time: a slow scrape delays what it sees, never a request
//! (invariant 4). The scrape takes the lock, adds the shared copy into its total and
//! lets go.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use super::counter::Counter;
use super::histogram::LatencyHistogram;
use crate::catalog::ivt::IvtKind;
use crate::catalog::PartnerIdx;
use crate::clock::monotonic_now;
use crate::http::{Status, STATUS_COUNT};
use crate::limits::MAX_PARTNERS;

/// Values a worker records before it tries to publish them.
pub const PUBLISH_EVERY_RECORDS: u32 = 1024;
/// Longest a recorded value waits before the worker tries to publish it, ms; bounds how
/// stale a scrape can be on a lightly loaded worker. Engines call
/// [`LatencyRecorder::publish_if_due`] at least this often when idle.
pub const PUBLISH_INTERVAL_MS: u64 = 100;

/// How many supply-chain refusal reasons are counted per partner (the length of
/// `decide::supply::REFUSALS`, which this module cannot import).
pub const SUPPLY_REFUSAL_KINDS: usize = 4;

/// Per-partner request counters of one worker.
#[derive(Debug, Default)]
pub struct PartnerCounters {
    /// Bid requests attributed to the partner.
    pub requests: Counter,
    /// Requests answered with a bid.
    pub bids: Counter,
    /// Requests answered without a bid (204 or an `nbr` body).
    pub no_bids: Counter,
    /// Answers whose body (a bid or an `nbr` body) was sent in FlatBuffers.
    pub flatbuffers_answers: Counter,
    /// Requests on the partner's bid path from outside its networks (403, not
    /// counted in `requests`).
    pub source_mismatch: Counter,
    /// Requests detected as invalid traffic, by `catalog::ivt::IvtKind` (whether or
    /// not a campaign that allows the kind still bid).
    pub ivt: [Counter; IvtKind::COUNT],
    /// Requests whose supply chain the files refused for some campaign, by
    /// `decide::supply::REFUSALS` (the request's most advanced reason).
    pub supply_refused: [Counter; SUPPLY_REFUSAL_KINDS],
}

/// The latencies the scrape can see, guarded by the lock the worker only ever tries.
#[derive(Debug, Default)]
struct Published {
    decision: LatencyHistogram,
    total: LatencyHistogram,
}

/// Everything one worker counts, shared (`Arc`) between that worker, which alone writes
/// the counters, and the control thread, which reads them at scrape time. Created by
/// [`Registry::add_worker`](crate::control::Registry::add_worker).
#[derive(Debug)]
pub struct WorkerMetrics {
    worker: usize,
    responses: [Counter; STATUS_COUNT],
    /// Indexed by [`PartnerIdx`]; the last slot counts requests of no known partner.
    partners: Box<[PartnerCounters]>,
    published: Mutex<Published>,
    publishes: Counter,
    publish_skips: Counter,
    recorder_taken: AtomicBool,
}

impl WorkerMetrics {
    pub fn new(worker: usize) -> WorkerMetrics {
        WorkerMetrics {
            worker,
            responses: Default::default(),
            partners: (0..=MAX_PARTNERS)
                .map(|_| PartnerCounters::default())
                .collect(),
            published: Mutex::default(),
            publishes: Counter::default(),
            publish_skips: Counter::default(),
            recorder_taken: AtomicBool::new(false),
        }
    }

    /// The worker's index, as in the `worker` label.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Counts one response. Called by the engine, on this worker's thread only.
    #[inline]
    pub fn count_response(&self, status: Status) {
        self.responses[status.index()].inc();
    }

    /// Responses sent with `status` so far.
    pub fn responses(&self, status: Status) -> u64 {
        self.responses[status.index()].get()
    }

    /// The counters of `partner` (`None`: unattributed). Written by the service, on this
    /// worker's thread only. Indices at or past [`MAX_PARTNERS`] count as unattributed.
    #[inline]
    pub fn partner(&self, partner: Option<PartnerIdx>) -> &PartnerCounters {
        let slot = partner.map_or(MAX_PARTNERS, usize::from).min(MAX_PARTNERS);
        &self.partners[slot]
    }

    /// Makes these the metrics of the calling thread, for code that runs on a worker
    /// thread but is not handed them: the shared [`Service`](crate::http::Service) finds
    /// its worker's partner counters through [`WorkerMetrics::with_current`]. Engines
    /// call this once when a worker thread starts.
    pub fn install_on_this_thread(self: &Arc<Self>) {
        CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(self)));
    }

    /// Runs `f` with the calling thread's metrics; `None` on a thread no engine worker
    /// runs on (tests, the CLI), where there is nothing to count into.
    #[inline]
    pub fn with_current<R>(f: impl FnOnce(&WorkerMetrics) -> R) -> Option<R> {
        CURRENT.with(|c| c.borrow().as_deref().map(f))
    }

    /// Times the worker published its histograms, and times it found the lock taken.
    pub fn publish_counts(&self) -> (u64, u64) {
        (self.publishes.get(), self.publish_skips.get())
    }

    /// The worker's recording side. One per worker: a second is a bug, because the
    /// publish counters have a single writer.
    pub fn recorder(self: &Arc<Self>) -> LatencyRecorder {
        let taken = self.recorder_taken.swap(true, Ordering::AcqRel);
        assert!(!taken, "worker {} already has a recorder", self.worker);
        LatencyRecorder {
            metrics: Arc::clone(self),
            decision: LatencyHistogram::new(),
            total: LatencyHistogram::new(),
            pending: 0,
            last_publish: monotonic_now(),
        }
    }

    /// Runs `f` on the published decision and total histograms, holding their lock:
    /// the scrape side. While `f` runs the worker keeps recording and skips publishing.
    /// Never call this from a worker thread.
    pub fn with_published<R>(
        &self,
        f: impl FnOnce(&LatencyHistogram, &LatencyHistogram) -> R,
    ) -> R {
        let published = lock(&self.published);
        f(&published.decision, &published.total)
    }
}

thread_local! {
    /// The metrics of the engine worker running on this thread, if any.
    static CURRENT: RefCell<Option<Arc<WorkerMetrics>>> = const { RefCell::new(None) };
}

/// A poisoned lock only means a scrape panicked mid-merge; the histograms are still
/// valid counts, so keep using them.
fn lock(m: &Mutex<Published>) -> MutexGuard<'_, Published> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The worker-owned recording side of a worker's latency histograms (not `Sync`: one
/// thread records). Created by [`WorkerMetrics::recorder`].
#[derive(Debug)]
pub struct LatencyRecorder {
    metrics: Arc<WorkerMetrics>,
    decision: LatencyHistogram,
    total: LatencyHistogram,
    pending: u32,
    last_publish: Instant,
}

impl LatencyRecorder {
    /// Records one answered request: `decision_us` from the complete request to its
    /// response bytes, `total_us` from its arrival to its response leaving. Publishes
    /// when due, never waiting for the lock.
    #[inline]
    pub fn record(&mut self, decision_us: u64, total_us: u64, now: Instant) {
        self.decision.record(decision_us);
        self.total.record(total_us);
        self.pending += 1;
        if self.pending >= PUBLISH_EVERY_RECORDS {
            self.try_publish(now);
        } else {
            self.publish_if_due(now);
        }
    }

    /// Publishes values older than [`PUBLISH_INTERVAL_MS`]; engines call it on a timer so
    /// an idle worker's last values reach the scrape.
    pub fn publish_if_due(&mut self, now: Instant) {
        let due = now.saturating_duration_since(self.last_publish)
            >= Duration::from_millis(PUBLISH_INTERVAL_MS);
        if self.pending > 0 && due {
            self.try_publish(now);
        }
    }

    /// Values recorded but not yet published.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    fn try_publish(&mut self, now: Instant) {
        let mut published = match self.metrics.published.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.metrics.publish_skips.inc();
                return;
            }
        };
        published.decision.add(&self.decision);
        published.total.add(&self.total);
        drop(published);
        self.decision.reset();
        self.total.reset();
        self.pending = 0;
        self.last_publish = now;
        self.metrics.publishes.inc();
    }
}

impl Drop for LatencyRecorder {
    /// The worker is exiting: hand over what is left, waiting for the lock if needed
    /// (no request is in flight any more), and free the recorder slot.
    fn drop(&mut self) {
        if self.pending > 0 {
            let mut published = lock(&self.metrics.published);
            published.decision.add(&self.decision);
            published.total.add(&self.total);
        }
        self.metrics.recorder_taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published_count(m: &WorkerMetrics) -> u64 {
        m.with_published(|d, t| {
            assert_eq!(d.count(), t.count());
            t.count()
        })
    }

    #[test]
    fn values_are_published_in_batches_and_on_time() {
        let m = Arc::new(WorkerMetrics::new(0));
        let mut rec = m.recorder();
        let start = Instant::now();
        for _ in 0..PUBLISH_EVERY_RECORDS - 1 {
            rec.record(10, 20, start);
        }
        assert_eq!(published_count(&m), 0);
        rec.record(10, 20, start);
        assert_eq!(published_count(&m), u64::from(PUBLISH_EVERY_RECORDS));
        rec.record(10, 20, start);
        rec.publish_if_due(start + Duration::from_millis(PUBLISH_INTERVAL_MS - 1));
        assert_eq!(rec.pending(), 1);
        rec.publish_if_due(start + Duration::from_millis(PUBLISH_INTERVAL_MS));
        assert_eq!(rec.pending(), 0);
        assert_eq!(published_count(&m), u64::from(PUBLISH_EVERY_RECORDS) + 1);
    }

    #[test]
    fn a_held_scrape_lock_makes_the_worker_skip_not_wait() {
        let m = Arc::new(WorkerMetrics::new(0));
        let mut rec = m.recorder();
        let total = 3 * PUBLISH_EVERY_RECORDS;
        m.with_published(|_, _| {
            for _ in 0..total {
                rec.record(5, 5, Instant::now());
            }
        });
        assert_eq!(m.publish_counts().0, 0);
        assert!(m.publish_counts().1 >= 3);
        assert_eq!(rec.pending(), total);
        rec.record(5, 5, Instant::now());
        assert_eq!(published_count(&m), u64::from(total) + 1);
    }

    #[test]
    fn dropping_the_recorder_publishes_the_rest_and_frees_the_slot() {
        let m = Arc::new(WorkerMetrics::new(0));
        let mut rec = m.recorder();
        rec.record(1, 2, Instant::now());
        drop(rec);
        assert_eq!(published_count(&m), 1);
        let _again = m.recorder();
    }

    #[test]
    #[should_panic(expected = "already has a recorder")]
    fn a_second_recorder_is_a_bug() {
        let m = Arc::new(WorkerMetrics::new(3));
        let _a = m.recorder();
        let _b = m.recorder();
    }

    #[test]
    fn the_current_worker_is_found_only_on_its_thread() {
        let m = Arc::new(WorkerMetrics::new(7));
        assert_eq!(WorkerMetrics::with_current(|w| w.worker()), None);
        let on_thread = Arc::clone(&m);
        let seen = std::thread::spawn(move || {
            on_thread.install_on_this_thread();
            WorkerMetrics::with_current(|w| w.partner(Some(2)).requests.inc());
            WorkerMetrics::with_current(|w| w.worker())
        })
        .join()
        .unwrap();
        assert_eq!(seen, Some(7));
        assert_eq!(m.partner(Some(2)).requests.get(), 1);
    }

    #[test]
    fn out_of_range_partners_are_unattributed() {
        let m = WorkerMetrics::new(0);
        m.partner(Some(PartnerIdx::MAX)).requests.inc();
        m.partner(None).requests.inc();
        assert_eq!(m.partner(None).requests.get(), 2);
        m.partner(Some(1)).bids.inc();
        assert_eq!(m.partner(Some(1)).bids.get(), 1);
    }
}
