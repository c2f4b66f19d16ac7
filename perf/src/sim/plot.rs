//! Pictures of a scenario, as SVG (plotters, no font or image libraries): spend
//! against the traffic-shaped plan over the day, per strategy; and where the
//! controller's bids sat against the prices that would have won.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::market::HOURS;
use super::report::Run;
use super::ScenarioReport;

const SIZE: (u32, u32) = (900, 520);
const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn plotting(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// Draws the scenario's pictures (its first seed's runs) into `dir`; their paths.
pub fn draw(report: &ScenarioReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(seed) = report.runs.first().map(|r| r.seed) else {
        return Ok(Vec::new());
    };
    let runs: Vec<&Run> = report
        .runs
        .iter()
        .filter(|r| r.seed == seed && !r.hours.is_empty())
        .collect();
    let mut paths = Vec::new();
    let name = &report.scenario.name;
    let spend = dir.join(format!("spend-vs-plan-{name}.svg"));
    spend_vs_plan(&runs, &spend, name)?;
    paths.push(spend);
    if let Some(controller) = runs.iter().find(|r| r.strategy == "controller") {
        let bids = dir.join(format!("bids-vs-prices-{name}.svg"));
        bids_vs_prices(controller, &bids, name)?;
        paths.push(bids);
    }
    Ok(paths)
}

/// Cumulative spend over the day, each strategy against the plan (as a share of the
/// budget).
fn spend_vs_plan(runs: &[&Run], path: &Path, scenario: &str) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plotting)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Spend against plan over the day ({scenario})"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..HOURS as f64, 0f64..1.1f64)
        .map_err(plotting)?;
    chart
        .configure_mesh()
        .x_desc("hour of the day")
        .y_desc("share of the daily budget spent")
        .draw()
        .map_err(plotting)?;
    let cumulative = |r: &Run, of: fn(&super::report::Hour) -> i64| -> Vec<(f64, f64)> {
        let budget = r.budget_micros.max(1) as f64;
        let mut sum = 0i64;
        std::iter::once((0.0, 0.0))
            .chain(r.hours.iter().map(|h| {
                sum += of(h);
                ((h.hour + 1) as f64, sum as f64 / budget)
            }))
            .collect()
    };
    if let Some(first) = runs.first() {
        chart
            .draw_series(LineSeries::new(
                cumulative(first, |h| h.plan_micros),
                BLACK.stroke_width(2),
            ))
            .map_err(plotting)?
            .label("plan (traffic-shaped)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    }
    for (i, r) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                cumulative(r, |h| h.spend_micros),
                colour.stroke_width(2),
            ))
            .map_err(plotting)?
            .label(r.strategy.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plotting)?;
    root.present().map_err(plotting)?;
    Ok(())
}

/// Histograms of the controller's bids and of the prices that would have won them.
fn bids_vs_prices(run: &Run, path: &Path, scenario: &str) -> Result<()> {
    const BINS: usize = 60;
    let top = run
        .bids_and_prices
        .iter()
        .map(|&(b, _)| b)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.6;
    let width = top / BINS as f64;
    let mut bids = [0u32; BINS];
    let mut prices = [0u32; BINS];
    for &(b, p) in &run.bids_and_prices {
        bids[((b as f64 / width) as usize).min(BINS - 1)] += 1;
        prices[((p as f64 / width) as usize).min(BINS - 1)] += 1;
    }
    let highest = bids
        .iter()
        .chain(&prices)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plotting)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Controller: bids and prices to win, CPM ({scenario}, seed {})",
                run.seed
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..top / 1e6, 0u32..highest + highest / 10)
        .map_err(plotting)?;
    chart
        .configure_mesh()
        .x_desc("CPM")
        .y_desc("auctions")
        .draw()
        .map_err(plotting)?;
    for (counts, colour, label) in [
        (
            &prices,
            COLOURS[0],
            "price to win (max of the best other bid and the floor)",
        ),
        (&bids, COLOURS[1], "our bid"),
    ] {
        let bars = counts.iter().enumerate().map(move |(i, &n)| {
            let x0 = i as f64 * width / 1e6;
            Rectangle::new([(x0, 0), (x0 + width / 1e6, n)], colour.mix(0.5).filled())
        });
        chart
            .draw_series(bars)
            .map_err(plotting)?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.5).filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plotting)?;
    root.present().map_err(plotting)?;
    Ok(())
}
