//! The spread of repeated runs (`--repeat N`): per target and workload point, the median, min,
//! max and coefficient of variation of writes/s and p99, and of the ringraft/etcd ratio; and
//! the medians that checks judge, so that one lucky or unlucky run does not decide a verdict.

use serde::Serialize;

use super::report::RunResult;

/// Median, extremes and coefficient of variation of one figure over repeated runs.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Stat {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// Standard deviation (population) over the mean; 0 for one run.
    pub cv: f64,
}

impl Stat {
    /// The statistics of `values` (None when empty).
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let variance = sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        let cv = if mean.abs() > f64::EPSILON {
            variance.sqrt() / mean
        } else {
            0.0
        };
        Some(Stat {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            cv,
        })
    }

    /// "median (min-max, CV x%)" with `digits` decimals.
    pub fn describe(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$}, CV {:.1}%)",
            self.median,
            self.min,
            self.max,
            100.0 * self.cv,
            d = digits
        )
    }
}

/// One target at one workload point over its repeats.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TargetSpread {
    /// "ringraft" or "etcd".
    pub target: String,
    /// Workload point.
    pub point: usize,
    /// Runs measured.
    pub runs: usize,
    /// Writes per second.
    pub writes_per_s: Stat,
    /// Write p99 in milliseconds.
    pub p99_ms: Stat,
    /// Write p50 in milliseconds.
    pub p50_ms: Stat,
}

/// ringraft's writes/s over etcd's, run by run (same repeat and point), at one point.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RatioSpread {
    /// Workload point.
    pub point: usize,
    /// Pairs measured.
    pub runs: usize,
    /// The ratio.
    pub ratio: Stat,
}

/// Everything `--repeat` adds to a report.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Spread {
    /// Per target and point.
    pub targets: Vec<TargetSpread>,
    /// Per point, when etcd ran beside ringraft.
    pub ratios: Vec<RatioSpread>,
}

/// (target, point) pairs in first-seen order.
fn groups(runs: &[RunResult]) -> Vec<(String, usize)> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in runs {
        let key = (r.target.clone(), r.point);
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen
}

/// The spread of every target and point, and of the ratio where etcd ran.
pub fn spread(runs: &[RunResult]) -> Spread {
    let ms = |us: u64| us as f64 / 1000.0;
    let targets = groups(runs)
        .into_iter()
        .filter_map(|(target, point)| {
            let mine: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.target == target && r.point == point)
                .collect();
            let pick =
                |f: &dyn Fn(&RunResult) -> f64| mine.iter().map(|r| f(r)).collect::<Vec<_>>();
            Some(TargetSpread {
                runs: mine.len(),
                writes_per_s: Stat::of(&pick(&|r| r.report.writes_per_s))?,
                p99_ms: Stat::of(&pick(&|r| ms(r.report.write_latency.p99_us)))?,
                p50_ms: Stat::of(&pick(&|r| ms(r.report.write_latency.p50_us)))?,
                target,
                point,
            })
        })
        .collect();
    let mut ratios = Vec::new();
    let mut points: Vec<usize> = Vec::new();
    for (_, point) in groups(runs) {
        if !points.contains(&point) {
            points.push(point);
        }
    }
    for point in points {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.target == "ringraft" && r.point == point)
            .filter_map(|r| {
                let etcd = runs
                    .iter()
                    .find(|o| o.target == "etcd" && o.point == point && o.repeat == r.repeat)?;
                Some(r.report.writes_per_s / etcd.report.writes_per_s.max(1e-9))
            })
            .collect();
        if let Some(ratio) = Stat::of(&values) {
            ratios.push(RatioSpread {
                point,
                runs: values.len(),
                ratio,
            });
        }
    }
    Spread { targets, ratios }
}

/// "(median of N runs)" when there were several, else nothing: what a check's name says about
/// what it judged.
pub fn judged(runs: usize) -> String {
    if runs > 1 {
        format!(" (median of {runs} runs)")
    } else {
        String::new()
    }
}

/// The spread as a console table (one line per target and point, one per ratio).
pub fn describe(spread: &Spread) -> String {
    let mut text = String::new();
    for t in &spread.targets {
        text.push_str(&format!(
            "spread {} point {} over {} runs: writes/s {}; p99 ms {}\n",
            t.target,
            t.point,
            t.runs,
            t.writes_per_s.describe(0),
            t.p99_ms.describe(2)
        ));
    }
    for r in &spread.ratios {
        text.push_str(&format!(
            "spread ringraft/etcd writes/s point {} over {} runs: {}\n",
            r.point,
            r.runs,
            r.ratio.describe(2)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_cv() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        // Population standard deviation of 1, 2, 3 is sqrt(2/3); the mean is 2.
        assert!((s.cv - (2.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12, "{s:?}");
        assert_eq!(Stat::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[5.0]).unwrap().cv, 0.0);
        assert!(Stat::of(&[]).is_none());
        assert_eq!(judged(1), "");
        assert_eq!(judged(3), " (median of 3 runs)");
    }
}
