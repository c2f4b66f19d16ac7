//! Bidding: one request body in, the answer's bytes out. The brain both engines
//! (io_uring and tokio) call; they own I/O and nothing else.
//!
//! parse ([`crate::openrtb`]) → decide ([`crate::decide`]) → hand every reservation
//! to the ledger → encode ([`crate::respond`]). A bid leaves only once the ledger
//! holds its reservation, so no budget is ever held by a bid nobody tracks.

use std::sync::Arc;

use crate::bid_id::BidIdGen;
use crate::budget::Budgets;
use crate::catalog::{Catalog, PartnerIdx};
use crate::decide::{Context, Decider, DecisionStats, NoBidReason};
use crate::ledger::{HeldBid, LedgerInbox};
use crate::notice::{NoticeSigner, SignerError};
use crate::openrtb::{ParseError, Parser};
use crate::respond::{encode_nobid_json, BidOut, Encoder, ResponseOut};
use crate::scratch::reuse_vec;
use crate::strategy::StrategySource;

/// Bytes the response buffer starts with: a banner response with its notice URLs fits.
const INITIAL_RESPONSE_BYTES: usize = 16 * 1024;

/// What every worker shares: the catalog, the budgets, strategy and the ledger inbox.
#[derive(Clone)]
pub struct Bidding {
    pub catalog: Arc<Catalog>,
    pub budgets: Arc<Budgets>,
    pub strategy: Arc<dyn StrategySource>,
    pub inbox: Arc<LedgerInbox>,
}

/// How to answer a request.
#[derive(Debug)]
pub enum Answer<'w> {
    /// 200 with this OpenRTB JSON BidResponse.
    Bid(&'w [u8]),
    /// No bid: 204, or 200 with `{"id":…,"nbr":N}` when the partner asked for a body.
    NoBid {
        reason: NoBidReason,
        body: Option<&'w [u8]>,
    },
    /// 400: the body is not a usable bid request.
    Invalid(ParseError),
}

/// Per-worker state: parser, decider, encoder, bid ids and the response buffer, all
/// allocated once and reused for every request.
pub struct Worker {
    parser: Parser,
    decider: Decider,
    encoder: Encoder,
    bid_ids: BidIdGen,
    bids: Vec<BidOut<'static>>,
    out: Vec<u8>,
    /// Bids dropped because the ledger inbox was full or encoding failed.
    pub dropped_bids: u64,
}

impl Worker {
    /// A worker for `bidding`'s catalog; `worker_id` makes its bid ids unique; it
    /// counts into `stats`, which outlives it across catalog reloads.
    pub fn new(
        bidding: &Bidding,
        worker_id: u16,
        stats: Arc<DecisionStats>,
    ) -> Result<Worker, SignerError> {
        let settings = &bidding.catalog.settings;
        let signer = NoticeSigner::new(&settings.notice_hmac_key, &settings.notice_base_url)?;
        Ok(Worker {
            parser: Parser::new(),
            decider: Decider::new(
                &bidding.catalog,
                stats,
                u64::from(worker_id) << 32 | 0x9E37_79B9,
            ),
            encoder: Encoder::new(signer),
            bid_ids: BidIdGen::new(settings.host_id, worker_id),
            bids: Vec::with_capacity(crate::respond::MAX_BIDS_PER_RESPONSE),
            out: Vec::with_capacity(INITIAL_RESPONSE_BYTES),
            dropped_bids: 0,
        })
    }

    /// Decision counters of this worker (summed across workers at scrape time).
    pub fn stats(&self) -> &DecisionStats {
        self.decider.stats()
    }

    /// The imps of the last request that got no bid (position in `imp`, reason).
    pub fn last_no_bids(&self) -> &[(usize, NoBidReason)] {
        self.decider.last_no_bids()
    }

    /// Answers one bid request. `body` is rewritten in place by the parser.
    /// `now_ms` is wall-clock time in ms since the Unix epoch.
    pub fn bid(
        &mut self,
        bidding: &Bidding,
        body: &mut [u8],
        partner: Option<PartnerIdx>,
        now_ms: u64,
    ) -> Answer<'_> {
        let catalog = &bidding.catalog;
        let req = match self.parser.parse(body) {
            Ok(req) => req,
            Err(e) => {
                self.decider.stats().no_bid_imps[NoBidReason::InvalidRequest as usize].inc();
                return Answer::Invalid(e);
            }
        };
        let ctx = Context {
            partner,
            now_unix_s: now_ms / 1000,
        };
        let decision = self.decider.decide(
            catalog,
            bidding.strategy.as_ref(),
            &bidding.budgets,
            &req,
            ctx,
        );
        let reason = decision.request_reason();

        let mut bids: Vec<BidOut<'_>> = reuse_vec(std::mem::take(&mut self.bids));
        let expires_at_ms = now_ms + catalog.settings.reservation_ttl_ms;
        for chosen in decision.bids.drain(..) {
            let bid_id = self.bid_ids.next_id();
            let imp = &req.imps()[chosen.imp];
            let campaign = &catalog.campaigns[chosen.campaign];
            let creative = &campaign.creatives[chosen.creative];
            let deal_id = chosen
                .deal
                .and_then(|d| imp.pmp.as_ref().map(|pmp| req.deals(pmp.deals)[d].id));
            let held = HeldBid {
                bid_id,
                reservation: chosen.reservation,
                expires_at_ms,
            };
            if let Err(refused) = bidding.inbox.hold(held) {
                bidding.budgets.release(refused.reservation);
                self.dropped_bids += 1;
                continue;
            }
            bids.push(BidOut {
                bid_id,
                imp_id: imp.id,
                price_micros: chosen.price_micros,
                campaign_id: &campaign.id,
                creative_id: &creative.id,
                adm: &creative.adm,
                adomain: &creative.adomain,
                cat: &creative.cat,
                attr: &creative.attr,
                w: creative.w,
                h: creative.h,
                mtype: creative.media as u8,
                deal_id,
            });
        }

        self.out.clear();
        let answer_is_bid = !bids.is_empty() && {
            let resp = ResponseOut {
                request_id: req.id,
                seat: &catalog.settings.seat,
                cur: &catalog.settings.currency,
                bids: &bids,
            };
            // An encode error is our bug or a bad config; the reservations already
            // sit in the ledger and expire. Count it and answer no-bid.
            self.encoder.encode_json(&resp, &mut self.out).is_ok()
        };
        if !bids.is_empty() && !answer_is_bid {
            self.dropped_bids += bids.len() as u64;
        }
        let request_id_for_nbr = req.id;
        let wants_nbr_body = partner.is_some_and(|p| catalog.partners[usize::from(p)].nbr_body);
        let reason = reason.unwrap_or(NoBidReason::TechnicalError);
        if !answer_is_bid && wants_nbr_body {
            self.out.clear();
            encode_nobid_json(request_id_for_nbr, reason.nbr(), &mut self.out);
        }
        self.bids = reuse_vec(bids);
        drop(req);
        if answer_is_bid {
            Answer::Bid(&self.out)
        } else {
            Answer::NoBid {
                reason,
                body: wants_nbr_body.then_some(self.out.as_slice()),
            }
        }
    }
}
