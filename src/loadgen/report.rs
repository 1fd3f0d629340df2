//! Turning a recording into numbers people read, diff and plot: a text table, JSON, a
//! per-second series and HdrHistogram percentile (`.hgrm`) files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::recorder::{Recorder, SecondBucket};
use super::workload::Workload;

/// Latency percentiles of one operation kind, in microseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// Operations measured.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The result of one load run against one target.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// What was measured ("ringraft", "etcd").
    pub target: String,
    /// The workload.
    pub workload: Workload,
    /// Successful writes per second over the window (each acknowledged after commit and apply).
    pub writes_per_s: f64,
    /// Successful reads per second.
    pub reads_per_s: f64,
    /// Write latency, failed writes included at the request deadline.
    pub write_latency: Percentiles,
    /// Read latency (failed reads included at the deadline), if there were reads.
    pub read_latency: Option<Percentiles>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Per-second counts.
    pub per_second: Vec<SecondBucket>,
    /// Per second of the window: write p50 and p99 in microseconds (None: no write completed).
    pub write_latency_per_second: Vec<Option<(u64, u64)>>,
    /// `.hgrm` text of the write latency histogram.
    #[serde(skip)]
    pub write_hgrm: String,
    /// `.hgrm` text of the read latency histogram.
    #[serde(skip)]
    pub read_hgrm: String,
    /// Write latency spectrum: (percentile 0..=100, latency in microseconds), for plots.
    #[serde(skip)]
    pub write_spectrum: Vec<(f64, u64)>,
    /// Successful writes per second of each Raft group (empty with one group); they add up to
    /// `writes_per_s`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes_per_s_per_group: Vec<f64>,
    /// The load process that measured this, when it is one of several (`ringraft load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<super::process::LoadProcess>,
}

impl LoadReport {
    /// Summarizes `recorder`.
    pub fn new(target: &str, workload: &Workload, recorder: &Recorder) -> LoadReport {
        let secs = recorder.window().as_secs_f64();
        let mut per_second = recorder.per_second.clone();
        per_second.truncate(recorder.window().as_secs().max(1) as usize);
        LoadReport {
            target: target.to_string(),
            workload: workload.clone(),
            writes_per_s: recorder.writes_ok as f64 / secs,
            reads_per_s: recorder.reads_ok as f64 / secs,
            write_latency: Percentiles::of(&recorder.writes),
            read_latency: (!recorder.reads.is_empty()).then(|| Percentiles::of(&recorder.reads)),
            errors: recorder.errors.clone(),
            per_second,
            write_latency_per_second: recorder
                .per_second_writes
                .iter()
                .take(recorder.window().as_secs().max(1) as usize)
                .map(|h| {
                    (!h.is_empty()).then(|| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
                })
                .collect(),
            write_hgrm: hgrm(&recorder.writes),
            read_hgrm: hgrm(&recorder.reads),
            write_spectrum: spectrum(&recorder.writes),
            writes_per_s_per_group: recorder
                .writes_ok_per_group
                .iter()
                .map(|&n| n as f64 / secs)
                .collect(),
            process: None,
        }
    }

    /// A short text table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "target {}: {}", self.target, self.workload.describe());
        let _ = writeln!(
            out,
            "  writes/s {:>10.0}   reads/s {:>10.0}",
            self.writes_per_s, self.reads_per_s
        );
        for (group, per_s) in self.writes_per_s_per_group.iter().enumerate() {
            let _ = writeln!(out, "  group {group:>3} writes/s {per_s:>10.0}");
        }
        let _ = writeln!(
            out,
            "  {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        let mut row = |name: &str, p: &Percentiles| {
            let ms = |us: u64| format!("{:.3}ms", us as f64 / 1000.0);
            let _ = writeln!(
                out,
                "  {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                ms(p.p50_us),
                ms(p.p90_us),
                ms(p.p99_us),
                ms(p.p999_us),
                ms(p.max_us),
                p.count
            );
        };
        row("write", &self.write_latency);
        if let Some(r) = &self.read_latency {
            row("read", r);
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            for (kind, n) in &self.errors {
                let _ = writeln!(out, "  errors: {n} x {kind}");
            }
            let _ = writeln!(
                out,
                "  (failed requests are in the latency rows, at the request deadline)"
            );
        }
        out
    }
}

/// The HdrHistogram percentile distribution text format (microseconds, as in `.hgrm` files
/// written by wrk2 and HdrHistogram's tools; plot with HdrHistogram's plotter).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if h.is_empty() {
        return out;
    }
    let mut total = 0;
    for v in h.iter_quantiles(2) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:12.3} {:14.12} {:10} {:>14}",
            v.value_iterated_to() as f64,
            q,
            total,
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean(),
        h.stdev()
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64,
        h.len()
    );
    out
}

/// Latency at percentiles from 0 to 99.9999 (denser toward the tail), for percentile plots.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut q: f64 = 0.0;
    while q < 0.999_999 {
        out.push((q * 100.0, h.value_at_quantile(q)));
        // Halve the distance to 100% in ten steps: even spacing on a log(1/(1-q)) axis.
        q = 1.0 - (1.0 - q) * 0.5f64.powf(0.2);
    }
    out.push((100.0, h.max()));
    out
}
