//! Carrying the strategy table across a layout change. The table holds what operators
//! decided (pauses, budgets, margins), so an agent that meets a file of an older
//! layout copies its rows into the current one instead of refusing to start or
//! starting empty. Only layout 1 → 2 (a shading per market segment) exists.

use std::path::{Path, PathBuf};

use bidder_common::clock::Clock;
use bidder_common::table::cell::Payload;
use bidder_common::table::shm::{OnMismatch, OpenError, Table, Writer};
use bidder_common::table::strategy::layout_1::StrategyTableLayout1;
use bidder_common::table::strategy::StrategyTable;
use bidder_common::table::{Capacity, LayoutError, Row};

/// Opens the strategy table at `path` for writing, first carrying a layout-1 file's
/// rows into the current layout (the new file replaces the old one in one rename, so
/// the bidder never maps an empty table meanwhile).
pub fn open_strategy_table(
    path: &Path,
    cap: Capacity,
    clock: Clock,
) -> Result<Writer<StrategyTable>, String> {
    match Writer::<StrategyTable>::open(path, cap, OnMismatch::Refuse, clock.clone()) {
        Err(OpenError::Layout {
            error: LayoutError::Version { found: 1, .. },
            ..
        }) => {
            carry_layout_1(path, cap, clock.clone())?;
            Writer::<StrategyTable>::open(path, cap, OnMismatch::Refuse, clock)
                .map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

fn carry_layout_1(path: &Path, cap: Capacity, clock: Clock) -> Result<(), String> {
    let old = Table::<StrategyTableLayout1>::open_read(path).map_err(|e| e.to_string())?;
    let mut dropped = 0;
    let campaigns = sealed_rows(old.campaigns(), |v| v.is_sealed(), &mut dropped);
    let partners = sealed_rows(old.partners(), |v| v.is_sealed(), &mut dropped);
    drop(old);
    let next = next_to(path);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "{}: carrying the strategy table into layout 2: {what}: {e}; fix: raise [tables] campaign_capacity and partner_capacity to at least the old table's rows, or free the directory's space or permissions, and restart the agent (the old table is untouched)",
            path.display()
        )
    };
    {
        let mut writer = Writer::<StrategyTable>::open(&next, cap, OnMismatch::Recreate, clock)
            .map_err(|e| fail("creating the new table", &e))?;
        for (key, value) in &campaigns {
            writer
                .put_campaign(key, value)
                .map_err(|e| fail("copying a campaign", &e))?;
        }
        for (key, value) in &partners {
            writer
                .put_partner(key, value)
                .map_err(|e| fail("copying a partner", &e))?;
        }
    }
    std::fs::rename(&next, path).map_err(|e| fail("replacing the old table", &e))?;
    let _ = std::fs::remove_file(bidder_common::table::shm::lock_path(&next));
    tracing::warn!(
        path = %path.display(),
        campaigns = campaigns.len(),
        partners = partners.len(),
        unreadable = dropped,
        "strategy table carried from layout 1 into layout 2 (a shading per market segment)"
    );
    Ok(())
}

/// The rows whose value reads sealed, with their keys; `dropped` counts the others.
fn sealed_rows<P: Payload>(
    rows: &[Row<P>],
    sealed: impl Fn(&P::Value) -> bool,
    dropped: &mut usize,
) -> Vec<(String, P::Value)> {
    rows.iter()
        .filter_map(|r| {
            let v = r.load().ok().filter(|v| sealed(v));
            *dropped += usize::from(v.is_none());
            Some((r.key.get().as_str().to_owned(), v?))
        })
        .collect()
}

fn next_to(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".layout-2");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bidder_common::table::segment::SEGMENTS_PER_CAMPAIGN;
    use bidder_common::table::strategy::{
        CampaignStrategyValue, PartnerLimitValue, BUDGET_AS_CONFIGURED, CAMPAIGN_PAUSED,
        MAX_REASONING_BYTES,
    };

    const CAP: Capacity = Capacity {
        campaigns: 16,
        partners: 4,
    };

    #[test]
    fn a_layout_1_table_is_carried_into_layout_2_with_every_row() {
        let dir = testkit::TempDir::new("agent-upgrade");
        let path = dir.0.join("strategy");
        let mut paused = CampaignStrategyValue {
            margin_ppm: 1_100_000,
            pacing_ppm: 500_000,
            shading_ppm: 850_000,
            flags: CAMPAIGN_PAUSED,
            max_cpm_micros: 3_000_000,
            daily_budget_micros: BUDGET_AS_CONFIGURED,
            updated_at_unix_ms: 42,
            updated_by: 1000,
            reasoning_len: 0,
            reasoning: [0; MAX_REASONING_BYTES],
            segment_keys: [0; SEGMENTS_PER_CAMPAIGN],
            segment_shading_ppm: [0; SEGMENTS_PER_CAMPAIGN],
            checksum: 0,
        };
        paused.set_reasoning("paused by hand: creative review");
        let limit = PartnerLimitValue {
            qps_limit: 500,
            burst: 50,
            flags: 1,
            updated_by: 1000,
            updated_at_unix_ms: 42,
            checksum: 0,
        }
        .sealed();
        {
            // What an agent of layout 1 left behind.
            let mut old = Writer::<StrategyTableLayout1>::open(
                &path,
                CAP,
                OnMismatch::Refuse,
                Clock::system(),
            )
            .unwrap();
            old.put_campaign("acme", &paused).unwrap();
            old.put_partner("exchange-a", &limit).unwrap();
        }
        let writer = open_strategy_table(&path, CAP, Clock::system()).unwrap();
        let table = writer.table();
        let row = table.campaigns()[0].load().unwrap();
        assert_eq!(table.campaigns()[0].key.get().as_str(), "acme");
        assert!(row.is_sealed());
        assert!(row.paused());
        assert_eq!(
            (row.margin_ppm, row.shading_ppm, row.reasoning()),
            (1_100_000, 850_000, "paused by hand: creative review")
        );
        assert_eq!(row.segment_keys, [0; SEGMENTS_PER_CAMPAIGN]);
        assert_eq!(table.partners()[0].load().unwrap(), limit);
        drop(writer);
        // A current table opens as it is.
        let again = open_strategy_table(&path, CAP, Clock::system()).unwrap();
        assert_eq!(again.table().campaigns().len(), 1);
        assert!(!next_to(&path).exists());
    }
}
