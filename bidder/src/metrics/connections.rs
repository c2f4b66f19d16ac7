//! The connection figures both engines report, under one set of metric names: each
//! engine reads its own counters into [`ConnectionFigures`] and renders them here, so
//! the two cannot drift apart in names or help text.

use super::{Labels, PromText};

/// One worker's connection counters, as read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionFigures {
    /// Connections holding a slot now.
    pub open: u64,
    pub accepted: u64,
    pub closed: u64,
    pub shed: u64,
    pub idle_timeouts: u64,
    pub first_byte_timeouts: u64,
    pub request_timeouts: u64,
    pub accept_errors: u64,
}

impl ConnectionFigures {
    /// Writes the figures with `labels` (engine and worker).
    pub fn render(&self, out: &mut PromText, labels: &Labels) {
        out.gauge(
            "bidder_connections_open",
            "Connections holding a slot on the bid port.",
            labels,
            i64::try_from(self.open).unwrap_or(i64::MAX),
        );
        let counters: [(&'static str, &'static str, u64); 7] = [
            (
                "bidder_connections_accepted_total",
                "Connections accepted into a slot on the bid port.",
                self.accepted,
            ),
            (
                "bidder_connections_closed_total",
                "Connections closed on the bid port.",
                self.closed,
            ),
            (
                "bidder_connections_shed_total",
                "Connections refused with 503 because every slot was taken.",
                self.shed,
            ),
            (
                "bidder_idle_timeouts_total",
                "Keep-alive connections closed for idleness.",
                self.idle_timeouts,
            ),
            (
                "bidder_first_byte_timeouts_total",
                "Connections closed for sending nothing within the first-byte timeout.",
                self.first_byte_timeouts,
            ),
            (
                "bidder_request_timeouts_total",
                "Requests not received whole in time, answered 408.",
                self.request_timeouts,
            ),
            (
                "bidder_accept_errors_total",
                "Failed accepts on the bid port.",
                self.accept_errors,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, labels, value);
        }
    }
}
