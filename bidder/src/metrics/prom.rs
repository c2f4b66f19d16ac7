//! Prometheus text exposition (format 0.0.4), built on the control thread at scrape time.
//!
//! Collectors add samples family by family, in any order and from several sources (each
//! worker, each engine, the control port); [`PromText`] groups them so every family gets
//! exactly one `# HELP` and one `# TYPE` line, which the format requires. Allocation is
//! fine here: this runs on the control thread, never on a worker.

use std::collections::HashMap;
use std::fmt::Write;

use super::histogram::LatencyHistogram;

/// Labels of one sample, as `(name, value)`; values are escaped when rendered.
pub type Labels<'a> = [(&'a str, &'a str)];

/// Upper bounds of the latency histogram buckets, µs. The bid path targets far below
/// 1 ms with a hard cap of a few ms, so the resolution is finest there; the top buckets
/// catch stalls up to a typical `tmax`.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    25, 50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 8_000, 10_000, 50_000, 100_000,
];

/// The metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: String,
}

/// A scrape being assembled. Metric names and help texts are `'static` (they are part of
/// the program, not of the data); label values are anything and are escaped.
#[derive(Debug, Default)]
pub struct PromText {
    families: Vec<Family>,
    by_name: HashMap<&'static str, usize>,
}

impl PromText {
    /// An empty scrape.
    pub fn new() -> PromText {
        PromText::default()
    }

    /// A monotonic counter sample. `name` must end in `_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: u64) {
        assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let samples = self.family(name, help, Kind::Counter);
        sample(samples, name, "", labels, None, format_args!("{value}"));
    }

    /// A monotonic counter of time kept in µs, exposed in seconds (the Prometheus base
    /// unit) with µs precision. `name` must end in `_seconds_total`.
    pub fn counter_seconds(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        micros: u64,
    ) {
        assert!(
            name.ends_with("_seconds_total"),
            "counter {name} must end in _seconds_total"
        );
        let samples = self.family(name, help, Kind::Counter);
        let (s, us) = (micros / 1_000_000, micros % 1_000_000);
        sample(samples, name, "", labels, None, format_args!("{s}.{us:06}"));
    }

    /// A gauge sample with an integer value (counts, micros of money).
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: i64) {
        let samples = self.family(name, help, Kind::Gauge);
        sample(samples, name, "", labels, None, format_args!("{value}"));
    }

    /// A histogram of latencies recorded in µs, exposed in seconds (the Prometheus base
    /// unit) with cumulative buckets at [`LATENCY_BUCKETS_US`], `_sum` and `_count`.
    /// `name` should end in `_seconds`.
    pub fn latency_histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        hist: &LatencyHistogram,
    ) {
        let samples = self.family(name, help, Kind::Histogram);
        for bound_us in LATENCY_BUCKETS_US {
            let le = format!("{}", bound_us as f64 / 1e6);
            let count = hist.count_at_most(bound_us);
            sample(
                samples,
                name,
                "_bucket",
                labels,
                Some(&le),
                format_args!("{count}"),
            );
        }
        let count = hist.count();
        sample(
            samples,
            name,
            "_bucket",
            labels,
            Some("+Inf"),
            format_args!("{count}"),
        );
        let sum_s = hist.sum_us() as f64 / 1e6;
        sample(samples, name, "_sum", labels, None, format_args!("{sum_s}"));
        sample(
            samples,
            name,
            "_count",
            labels,
            None,
            format_args!("{count}"),
        );
    }

    /// Renders every family, in the order each was first added.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            out.push_str("# HELP ");
            out.push_str(f.name);
            out.push(' ');
            escape_help(f.help, &mut out);
            out.push('\n');
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            out.push_str(&f.samples);
        }
        out
    }

    /// The sample text of family `name`, created on first use. A name reused with
    /// another type or help is a programming error.
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut String {
        debug_assert!(is_metric_name(name), "bad metric name {name}");
        let families = &mut self.families;
        let at = *self.by_name.entry(name).or_insert_with(|| {
            families.push(Family {
                name,
                help,
                kind,
                samples: String::new(),
            });
            families.len() - 1
        });
        let family = &mut self.families[at];
        assert!(
            family.kind == kind && family.help == help,
            "metric {name} registered twice with different type or help"
        );
        &mut family.samples
    }
}

/// Appends one sample line: `name{labels,le="…"} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &Labels,
    le: Option<&str>,
    value: std::fmt::Arguments<'_>,
) {
    out.push_str(name);
    out.push_str(suffix);
    let extra = le.map(|le| ("le", le));
    let mut all = labels.iter().copied().chain(extra).peekable();
    if all.peek().is_some() {
        out.push('{');
        for (i, (key, val)) in all.enumerate() {
            debug_assert!(is_label_name(key), "bad label name {key}");
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            escape_label_value(val, out);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help texts escape backslash and line feed (quotes stay as they are).
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_get_one_header_however_many_sources_add_to_them() {
        let mut text = PromText::new();
        text.counter("x_total", "Things.", &[("worker", "0")], 1);
        text.gauge("g", "A gauge.", &[], -3);
        text.counter("x_total", "Things.", &[("worker", "1")], 2);
        assert_eq!(
            text.render(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{worker=\"0\"} 1\nx_total{worker=\"1\"} 2\n\
             # HELP g A gauge.\n# TYPE g gauge\ng -3\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = PromText::new();
        text.gauge(
            "g",
            "Back\\slash and\nnewline \"kept\".",
            &[("campaign", "a\"b\\c\nd")],
            1,
        );
        let out = text.render();
        assert!(
            out.contains("# HELP g Back\\\\slash and\\nnewline \"kept\".\n"),
            "{out}"
        );
        assert!(out.contains("g{campaign=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut hist = LatencyHistogram::new();
        for us in [10, 60, 60, 400, 1_000_000] {
            hist.record(us);
        }
        let mut text = PromText::new();
        text.latency_histogram("lat_seconds", "Latency.", &[("engine", "t")], &hist);
        let out = text.render();
        assert!(out.contains("lat_seconds_bucket{engine=\"t\",le=\"0.000025\"} 1\n"));
        assert!(out.contains("lat_seconds_bucket{engine=\"t\",le=\"0.0001\"} 3\n"));
        assert!(out.contains("lat_seconds_bucket{engine=\"t\",le=\"0.0005\"} 4\n"));
        assert!(out.contains("lat_seconds_bucket{engine=\"t\",le=\"0.1\"} 4\n"));
        assert!(out.contains("lat_seconds_bucket{engine=\"t\",le=\"+Inf\"} 5\n"));
        assert!(
            out.contains("lat_seconds_sum{engine=\"t\"} 1.00053\n"),
            "{out}"
        );
        assert!(out.contains("lat_seconds_count{engine=\"t\"} 5\n"));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_reused_with_another_type_is_a_bug() {
        let mut text = PromText::new();
        text.gauge("x_total", "X.", &[], 1);
        text.counter("x_total", "X.", &[], 1);
    }
}
