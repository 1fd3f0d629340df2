//! Parts of `report.md` kept apart from the report's skeleton: the nodes' own view of each
//! window beside the client's, and the spread of repeated runs.

use std::fmt::Write as _;

use super::report::RunResult;

/// "Inside the nodes": per run, the client's p50/p99 beside the nodes' commit and log
/// write + flush latency read from `/metrics` at the window's edges. Empty when no run has it.
pub fn node_views(runs: &[RunResult], label: impl Fn(&RunResult) -> String) -> String {
    let mut md = String::new();
    if runs.iter().all(|r| r.node_view.is_none()) {
        return md;
    }
    let _ = writeln!(
        md,
        "\n## Inside the nodes\n\nThe client's latency beside what the nodes measured themselves in the same window \
         (scrapes of every node's `/metrics` at the window's start and end; node figures are estimated from \
         histogram buckets, three per decade, so they are coarse). Commit: proposal to commit on the leader. \
         Log write: one group written and flushed, all nodes.\n"
    );
    let _ = writeln!(md, "| run | client p50 ms | client p99 ms | commit p50 ms | commit p99 ms | log write p50 ms | log write p99 ms | apply p99 ms | entries per group | per AppendEntries | nodes scraped |");
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let n = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for r in runs {
        let Some(v) = &r.node_view else { continue };
        let l = &r.report.write_latency;
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} of {} |",
            label(r),
            l.p50_us as f64 / 1000.0,
            l.p99_us as f64 / 1000.0,
            f(v.commit_p50_ms),
            f(v.commit_p99_ms),
            f(v.log_write_p50_ms),
            f(v.log_write_p99_ms),
            f(v.apply_p99_ms),
            n(v.group_entries_mean),
            n(v.append_entries_entries_mean),
            v.nodes_scraped,
            v.nodes
        );
    }
    md
}

/// "Spread over the runs": per target and point, median, min, max and coefficient of variation
/// of writes/s and p99, and of the ringraft/etcd ratio.
pub fn spread(spread: &super::spread::Spread) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## Spread over the runs\n\nMedian (min to max) and coefficient of variation (standard deviation over mean) of each point's runs; checks judge the medians.\n"
    );
    let _ = writeln!(md, "| target | point | runs | writes/s median | min | max | CV | p99 ms median | min | max | CV |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &spread.targets {
        let (w, p) = (&t.writes_per_s, &t.p99_ms);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.1}% |",
            t.target,
            t.point,
            t.runs,
            w.median,
            w.min,
            w.max,
            100.0 * w.cv,
            p.median,
            p.min,
            p.max,
            100.0 * p.cv
        );
    }
    for r in &spread.ratios {
        let s = &r.ratio;
        let _ = writeln!(
            md,
            "\nringraft/etcd writes/s at point {} over {} pairs: median {:.2}x, {:.2}x to {:.2}x, CV {:.1}%.",
            r.point, r.runs, s.median, s.min, s.max, 100.0 * s.cv
        );
    }
    md
}
