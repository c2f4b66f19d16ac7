//! What workers measure and hand to the reporting thread once a second.
//!
//! Workers record into their own histograms (no sharing on the hot path) and, at each
//! one-second tick, move them out in an [`Interval`]; the reporting thread merges
//! intervals into the run's totals. Only *measured* requests (intended after the
//! warm-up) enter counts and histograms.

use hdrhistogram::Histogram;

/// Largest latency a histogram holds, in µs (one hour); longer values are clamped.
pub(crate) const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits the histograms keep (0.1% value resolution).
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of microseconds with the generator's fixed bounds.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Nanoseconds to whole microseconds, rounding to nearest.
pub(crate) fn ns_to_us(ns: u64) -> u64 {
    (ns + 500) / 1_000
}

/// Per-request outcomes of measured requests, plus two generator diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Requests written to a connection.
    pub sent: u64,
    /// Responses received, whatever their status.
    pub completed: u64,
    pub status_200: u64,
    pub status_204: u64,
    /// Any other status below 400 (another 2xx, a 3xx).
    pub status_other: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Not answered within the timeout (in flight, or never sent because no connection
    /// was free before the timeout passed).
    pub timeouts: u64,
    /// Of `timeouts`, those never sent: so `sent + unsent` is every scheduled request.
    pub unsent: u64,
    /// In flight on a connection that failed or that the server closed.
    pub connection_errors: u64,
    /// In flight on a connection whose bytes were not valid HTTP/1.1 responses.
    pub protocol_errors: u64,
    /// Sent late because every connection was busy (the server's queueing, not the
    /// generator's).
    pub queued_sends: u64,
    /// Sent later than the late-send threshold although a connection was free: the
    /// generator itself fell behind its schedule.
    pub late_sends: u64,
    /// Connections re-established during the run (after errors, timeouts or closes).
    pub reconnects: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.completed += other.completed;
        self.status_200 += other.status_200;
        self.status_204 += other.status_204;
        self.status_other += other.status_other;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.timeouts += other.timeouts;
        self.unsent += other.unsent;
        self.connection_errors += other.connection_errors;
        self.protocol_errors += other.protocol_errors;
        self.queued_sends += other.queued_sends;
        self.late_sends += other.late_sends;
        self.reconnects += other.reconnects;
    }

    /// Requests that did not get a 200 or 204: every other status, timeouts, and
    /// connection or protocol failures.
    pub(crate) fn errors(&self) -> u64 {
        self.status_other
            + self.status_4xx
            + self.status_5xx
            + self.timeouts
            + self.connection_errors
            + self.protocol_errors
    }

    /// Requests with a final outcome (a response, a timeout, or a failure).
    pub(crate) fn finished(&self) -> u64 {
        self.completed + self.timeouts + self.connection_errors + self.protocol_errors
    }

    /// Counts one response by its status class.
    pub(crate) fn count_status(&mut self, status: u16) {
        self.completed += 1;
        match status {
            200 => self.status_200 += 1,
            204 => self.status_204 += 1,
            400..=499 => self.status_4xx += 1,
            500..=599 => self.status_5xx += 1,
            _ => self.status_other += 1,
        }
    }
}

/// One worker's measurements over one second (or its remainder at the end).
#[derive(Debug)]
pub(crate) struct Interval {
    /// Seconds since the start this interval ends at (1, 2, …); the final interval of
    /// a worker carries the tick after its last full one.
    pub tick: u64,
    pub is_final: bool,
    /// Responses received, warm-up included: what the progress line calls the rate.
    pub completed_all: u64,
    pub counts: Counts,
    /// µs from intended send time to response (coordinated omission corrected).
    pub latency: Histogram<u64>,
    /// µs from actual send to response (what a closed-loop client would see).
    pub service: Histogram<u64>,
    /// µs the generator sent late while a connection was free.
    pub send_lag: Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_classes_and_errors_exclude_200_and_204() {
        let mut c = Counts::default();
        for status in [200, 200, 204, 201, 302, 400, 429, 500, 503] {
            c.count_status(status);
        }
        c.timeouts = 1;
        assert_eq!((c.status_200, c.status_204, c.status_other), (2, 1, 2));
        assert_eq!((c.status_4xx, c.status_5xx), (2, 2));
        assert_eq!(c.completed, 9);
        assert_eq!(c.errors(), 7);
        assert_eq!(c.finished(), 10);
    }

    #[test]
    fn histograms_clamp_rather_than_fail_beyond_their_range() {
        let mut h = new_histogram();
        h.saturating_record(HISTOGRAM_MAX_US * 10);
        assert!(h.max() >= HISTOGRAM_MAX_US);
        assert_eq!(ns_to_us(1_499), 1);
        assert_eq!(ns_to_us(1_500), 2);
    }
}
