//! What `ringraft bench` adds to a report beyond the client's figures: the spread of repeated
//! runs, and the nodes' own view of each window (scraped from `/metrics`).

use std::process::Command;

#[test]
fn repeat_reports_the_spread_and_the_nodes_view() {
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "bench",
            "tests/data/tiny-bench.toml",
            "--repeat",
            "3",
            "--quiet",
        ])
        .args(["--duration-s", "1", "--warmup-s", "0.3", "--results-dir"])
        .arg(results.path())
        .output()
        .expect("ringraft bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    assert!(
        stderr.contains("spread ringraft point 0 over 3 runs"),
        "{stderr}"
    );
    let dir = std::fs::read_dir(results.path().join("tiny"))
        .expect("results/tiny exists")
        .next()
        .expect("one run directory")
        .expect("readable")
        .path();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
            .expect("json");
    let spread = &report["spread"]["targets"][0];
    assert_eq!(spread["runs"], 3, "{spread}");
    let w = &spread["writes_per_s"];
    let (min, median, max) = (
        w["min"].as_f64().unwrap(),
        w["median"].as_f64().unwrap(),
        w["max"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= median && median <= max, "{w}");
    let per_run: Vec<f64> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["report"]["writes_per_s"].as_f64().unwrap())
        .collect();
    assert_eq!(per_run.len(), 3);
    assert!(
        per_run.contains(&min) && per_run.contains(&max),
        "{per_run:?} vs {w}"
    );
    assert!(w["cv"].as_f64().unwrap() >= 0.0);
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(md.contains("## Spread over the runs"), "{md}");
    // Each run carries the nodes' view: every node scraped, and the leader's commit latency.
    for run in report["runs"].as_array().unwrap() {
        let view = &run["node_view"];
        assert_eq!(view["nodes_scraped"], 3, "{view}");
        assert!(view["commit_p99_ms"].as_f64().unwrap() > 0.0, "{view}");
        assert!(view["log_write_p99_ms"].as_f64().unwrap() > 0.0, "{view}");
    }
    assert!(md.contains("## Inside the nodes"), "{md}");
    // Latency over time: one p50 and one p99 line per run, from per-second figures.
    let svg =
        std::fs::read_to_string(dir.join("latency-over-time.svg")).expect("latency-over-time.svg");
    assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
    let per_second = &report["runs"][0]["report"]["write_latency_per_second"];
    let first = &per_second[0];
    assert!(
        first[0].as_u64().unwrap() <= first[1].as_u64().unwrap(),
        "p50 above p99: {per_second}"
    );
}
