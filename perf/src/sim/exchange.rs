//! The exchange's side of a simulated day: each auction's bid request over HTTP at
//! its instant on the shared clock, the first-price auction against the market's
//! draw, and the bid's own win or loss URL called later (or never), its macros filled
//! in as OpenRTB 2.6 §4.4 says: `${AUCTION_PRICE}` is our bid on a win,
//! `${AUCTION_MIN_TO_WIN}` what would have tied the best other offer — when the
//! scenario's [`Feedback`] shares it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use anyhow::{bail, Context as _, Result};
use bidder_common::clock::ClockFile;

use super::http::Conn;
use super::market::{Auction, Feedback, Market, COUNTRIES, SIZES};
use super::processes::PARTNER;

/// OpenRTB loss reason: lost to a higher bid.
pub const LOSS_OUTBID: u16 = 102;
/// OpenRTB loss reason: below the auction floor.
pub const LOSS_BELOW_FLOOR: u16 = 100;

/// What happened to one auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Our bid, CPM micros (`None`: no bid).
    pub bid_micros: Option<i64>,
    pub won: bool,
}

/// Notices the exchange sent and how the bidder answered them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoticeCounts {
    pub wins: u64,
    pub losses: u64,
    /// Never sent (the scenario drops some).
    pub dropped: u64,
    /// Answered with anything but 2xx.
    pub refused: u64,
}

/// A notice waiting for its time.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_ms: u64,
    seq: u64,
    url: String,
}

/// Something run every `interval_ms` of simulated time (the agent's controller step),
/// given the instant; before it, every notice due by then has been answered.
pub struct Every<'a> {
    pub interval_ms: u64,
    pub run: &'a mut dyn FnMut(u64) -> Result<()>,
}

/// Plays `day` (the auctions of `market` under one seed) against the bidder at `bid`
/// whose notices go to `notices`; `clock` is moved to each instant, `day_start_ms`
/// after the epoch. One outcome per auction, in order.
pub fn play(
    market: &Market,
    day: &[Auction],
    clock: &ClockFile,
    day_start_ms: u64,
    (bid, notices_addr): (SocketAddr, SocketAddr),
    mut every: Option<Every<'_>>,
) -> Result<(Vec<Outcome>, NoticeCounts)> {
    let mut bids = Conn::new(bid);
    let mut notices = Conn::new(notices_addr);
    let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut counts = NoticeCounts::default();
    let mut outcomes = Vec::with_capacity(day.len());
    let path = format!("/bid/{PARTNER}");
    let mut next_run_ms = every.as_ref().map(|e| day_start_ms + e.interval_ms);
    for (seq, auction) in day.iter().enumerate() {
        let now_ms = day_start_ms + auction.at_ms;
        while let (Some(at), Some(e)) = (next_run_ms, every.as_mut()) {
            if at > now_ms {
                break;
            }
            deliver(&mut pending, at, clock, &mut notices, &mut counts)?;
            clock.set_unix_ms(at);
            (e.run)(at).with_context(|| format!("the step at +{} ms", at - day_start_ms))?;
            next_run_ms = Some(at + e.interval_ms);
        }
        deliver(&mut pending, now_ms, clock, &mut notices, &mut counts)?;
        clock.set_unix_ms(now_ms);
        let id = format!("a{seq}");
        let body = request_json(&id, auction);
        let (status, answer) = bids
            .send("POST", &path, body.as_bytes())
            .with_context(|| format!("bid request {id}"))?;
        let bid = match status {
            204 => None,
            200 => Some(read_bid(&answer).with_context(|| format!("answer to {id}"))?),
            other => bail!(
                "bid request {id} answered {other}: {}",
                String::from_utf8_lossy(&answer)
            ),
        };
        let outcome = Outcome {
            bid_micros: bid.as_ref().map(|b| b.price_micros),
            won: bid.as_ref().is_some_and(|b| auction.wins(b.price_micros)),
        };
        outcomes.push(outcome);
        let Some(bid) = bid else { continue };
        let Some(delay_ms) = auction.notice_delay_ms else {
            counts.dropped += 1;
            continue;
        };
        let url = notice_url(market.feedback, &id, auction, &bid, outcome.won);
        pending.push(Reverse(Pending {
            due_ms: now_ms + delay_ms,
            seq: seq as u64,
            url,
        }));
    }
    deliver(&mut pending, u64::MAX, clock, &mut notices, &mut counts)?;
    Ok((outcomes, counts))
}

/// Sends every notice due by `until_ms`, the clock at each one's instant.
fn deliver(
    pending: &mut BinaryHeap<Reverse<Pending>>,
    until_ms: u64,
    clock: &ClockFile,
    conn: &mut Conn,
    counts: &mut NoticeCounts,
) -> Result<()> {
    while pending.peek().is_some_and(|p| p.0.due_ms <= until_ms) {
        let Reverse(notice) = pending.pop().expect("peeked");
        clock.set_unix_ms(notice.due_ms.max(clock.now_unix_ms()));
        let path = notice
            .url
            .split_once("/notice")
            .map(|(_, rest)| format!("/notice{rest}"))
            .context("a notice URL without /notice")?;
        let (status, _) = conn
            .send("GET", &path, b"")
            .with_context(|| format!("notice {path}"))?;
        if path.starts_with("/notice/win") {
            counts.wins += 1;
        } else {
            counts.losses += 1;
        }
        if !(200..300).contains(&status) {
            counts.refused += 1;
        }
    }
    Ok(())
}

/// The parts of a bid the exchange uses.
struct Bid {
    id: String,
    price_micros: i64,
    nurl: String,
    lurl: String,
}

fn read_bid(answer: &[u8]) -> Result<Bid> {
    let json: serde_json::Value = serde_json::from_slice(answer)?;
    let bid = &json["seatbid"][0]["bid"][0];
    let price = bid["price"].as_f64().context("no price")?;
    let text = |field: &str| -> Result<String> {
        Ok(bid[field]
            .as_str()
            .with_context(|| format!("no {field}"))?
            .to_owned())
    };
    Ok(Bid {
        id: text("id")?,
        price_micros: (price * 1e6).round() as i64,
        nurl: text("nurl")?,
        lurl: text("lurl")?,
    })
}

/// CPM micros as the decimal an exchange writes into `${AUCTION_PRICE}`.
fn decimal(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn notice_url(feedback: Feedback, id: &str, auction: &Auction, bid: &Bid, won: bool) -> String {
    let min_to_win = match (feedback, won) {
        (Feedback::MinToWin, _) | (Feedback::LossesOnly, false) => {
            decimal(auction.min_to_win_micros())
        }
        _ => String::new(),
    };
    let (template, price, loss) = if won {
        (&bid.nurl, decimal(bid.price_micros), String::new())
    } else if bid.price_micros < auction.floor_micros {
        (&bid.lurl, String::new(), LOSS_BELOW_FLOOR.to_string())
    } else {
        (&bid.lurl, String::new(), LOSS_OUTBID.to_string())
    };
    template
        .replace("${AUCTION_PRICE}", &price)
        .replace("${AUCTION_ID}", id)
        .replace("${AUCTION_IMP_ID}", "1")
        .replace("${AUCTION_BID_ID}", &bid.id)
        .replace("${AUCTION_SEAT_ID}", "sim")
        .replace("${AUCTION_CURRENCY}", "USD")
        .replace("${AUCTION_LOSS}", &loss)
        .replace("${AUCTION_MIN_TO_WIN}", &min_to_win)
}

/// The bid request for one auction: a banner of the segment's size on a site or an
/// app of the segment, in its country, with its floor.
pub fn request_json(id: &str, auction: &Auction) -> String {
    let s = auction.segment;
    let (w, h) = SIZES[s as usize % SIZES.len()];
    let country = COUNTRIES[(s as usize / SIZES.len()) % COUNTRIES.len()];
    let floor = if auction.floor_micros > 0 {
        format!(
            ",\"bidfloor\":{},\"bidfloorcur\":\"USD\"",
            decimal(auction.floor_micros)
        )
    } else {
        String::new()
    };
    let place = if s.is_multiple_of(2) {
        format!("\"site\":{{\"id\":\"site-{s}\",\"domain\":\"segment-{s}.example\",\"page\":\"https://segment-{s}.example/\"}}")
    } else {
        format!("\"app\":{{\"id\":\"app-{s}\",\"bundle\":\"example.segment{s}\"}}")
    };
    format!(
        "{{\"id\":\"{id}\",\"at\":1,\"tmax\":1000,\"cur\":[\"USD\"],\"imp\":[{{\"id\":\"1\",\"banner\":{{\"w\":{w},\"h\":{h}}}{floor}}}],{place},\"device\":{{\"ua\":\"Mozilla/5.0 (auction-sim)\",\"ip\":\"203.0.113.{}\",\"geo\":{{\"country\":\"{country}\"}}}}}}",
        s % 250 + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auction(competing: i64, floor: i64) -> Auction {
        Auction {
            at_ms: 0,
            segment: 1,
            competing_micros: competing,
            floor_micros: floor,
            value_micros: 2_000_000,
            notice_delay_ms: Some(0),
        }
    }

    fn bid(price: i64) -> Bid {
        Bid {
            id: "b1".into(),
            price_micros: price,
            nurl: "http://x/notice/win?p=${AUCTION_PRICE}&m=${AUCTION_MIN_TO_WIN}".into(),
            lurl:
                "http://x/notice/loss?p=${AUCTION_PRICE}&l=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"
                    .into(),
        }
    }

    #[test]
    fn notices_carry_what_the_feedback_regime_shares() {
        let a = auction(1_200_000, 500_000);
        let won = bid(1_500_000);
        let lost = bid(1_000_000);
        let win = |f| notice_url(f, "a1", &a, &won, true);
        let loss = |f| notice_url(f, "a1", &a, &lost, false);
        assert_eq!(
            win(Feedback::MinToWin),
            "http://x/notice/win?p=1.500000&m=1.200000"
        );
        assert_eq!(
            win(Feedback::LossesOnly),
            "http://x/notice/win?p=1.500000&m="
        );
        assert_eq!(
            win(Feedback::WinLossOnly),
            "http://x/notice/win?p=1.500000&m="
        );
        assert_eq!(
            loss(Feedback::MinToWin),
            "http://x/notice/loss?p=&l=102&m=1.200000"
        );
        assert_eq!(
            loss(Feedback::LossesOnly),
            "http://x/notice/loss?p=&l=102&m=1.200000"
        );
        assert_eq!(
            loss(Feedback::WinLossOnly),
            "http://x/notice/loss?p=&l=102&m="
        );
        let floored = auction(100_000, 1_100_000);
        let below = notice_url(Feedback::MinToWin, "a1", &floored, &lost, false);
        assert_eq!(below, "http://x/notice/loss?p=&l=100&m=1.100000");
    }

    #[test]
    fn requests_are_json_with_the_segments_shape_and_floor() {
        let json: serde_json::Value =
            serde_json::from_str(&request_json("a9", &auction(1, 1_230_000))).unwrap();
        assert_eq!(json["id"], "a9");
        assert_eq!(json["imp"][0]["bidfloor"], 1.23);
        assert_eq!(json["imp"][0]["banner"]["w"], 728);
        assert_eq!(json["app"]["bundle"], "example.segment1");
        let none: serde_json::Value =
            serde_json::from_str(&request_json("a9", &auction(1, 0))).unwrap();
        assert!(none["imp"][0].get("bidfloor").is_none());
    }
}
