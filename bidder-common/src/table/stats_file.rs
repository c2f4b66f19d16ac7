//! The stats table's own parts of a mapped file: the totals and the names of the
//! no-bid reasons, which the bidder writes and the agent and `bidderctl` read. The
//! generic mapping, locking and row code is [`super::shm`].

extern crate std;

use core::sync::atomic::{AtomicU32, Ordering};
use std::string::{String, ToString};
use std::vec::Vec;

use super::shm::{bump, Table, Writer};
use super::stats::{StatsTable, TotalsValue};
use super::{Key, KeyBuf};

impl Writer<StatsTable> {
    /// Publishes the totals.
    pub fn put_totals(&mut self, totals: &TotalsValue) {
        self.table.prefix().totals.write(totals);
        bump(self.table.header());
    }

    /// Writes the names of the totals' no-bid reasons (index = reason number); extra
    /// names are cut at [`MAX_NO_BID_REASONS`](super::stats::MAX_NO_BID_REASONS).
    pub fn put_reason_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let prefix = self.table.prefix();
        put_names(&prefix.reason_names, &prefix.reason_count, names);
    }

    /// Writes the names of the campaign rows' no-bid reasons (index = position in
    /// [`CampaignStatsValue::no_bids`](super::stats::CampaignStatsValue::no_bids));
    /// extra names are cut at
    /// [`MAX_CAMPAIGN_NO_BID_REASONS`](super::stats::MAX_CAMPAIGN_NO_BID_REASONS).
    pub fn put_campaign_reason_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let prefix = self.table.prefix();
        put_names(
            &prefix.campaign_reason_names,
            &prefix.campaign_reason_count,
            names,
        );
    }
}

/// Writes `names` into `slots` (as many as fit), then their count with `Release` so a
/// reader that `Acquire`s the count reads whole names.
fn put_names<'a>(slots: &[Key], count: &AtomicU32, names: impl IntoIterator<Item = &'a str>) {
    let mut n = 0;
    for (slot, name) in slots.iter().zip(names) {
        if let Some(key) = KeyBuf::new(name) {
            slot.set(&key);
        }
        n += 1;
    }
    count.store(n, Ordering::Release);
}

/// The names [`put_names`] wrote.
fn names(slots: &[Key], count: &AtomicU32) -> Vec<String> {
    let n = (count.load(Ordering::Acquire) as usize).min(slots.len());
    slots[..n]
        .iter()
        .map(|k| k.get().as_str().to_string())
        .collect()
}

/// The names of the totals' no-bid reasons a stats table holds, in reason order.
pub fn reason_names(table: &Table<StatsTable>) -> Vec<String> {
    let prefix = table.prefix();
    names(&prefix.reason_names, &prefix.reason_count)
}

/// The names of the campaign rows' no-bid reasons, in the order of their counts.
pub fn campaign_reason_names(table: &Table<StatsTable>) -> Vec<String> {
    let prefix = table.prefix();
    names(&prefix.campaign_reason_names, &prefix.campaign_reason_count)
}
