//! The harness's comparison verdict against a real etcd: a ringraft target whose every write
//! fails must make `ringraft bench --compare etcd` print FAIL and exit non-zero. Needs the cargo
//! feature `etcd` and an etcd binary (`scripts/install-etcd.sh`); without the binary it reports
//! itself skipped, except under CI, where that fails.
#![cfg(feature = "etcd")]

mod node_common;

use std::process::Command;

#[test]
fn compare_etcd_fails_when_every_ringraft_write_fails() {
    if !node_common::etcd_available("bench_compare") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    // The tiny config on ports nobody else uses: ringraft's nodes from the base, etcd's members
    // from the base + 100.
    let base_port = node_common::free_port_block(110);
    let config = std::fs::read_to_string("tests/data/tiny-bench.toml")
        .expect("tiny config")
        .replace("base_port = 26000", &format!("base_port = {base_port}"));
    assert!(config.contains(&format!("base_port = {base_port}")));
    let config_path = dir.path().join("tiny.toml");
    std::fs::write(&config_path, config).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("bench")
        .arg(&config_path)
        .args(["--compare", "etcd", "--test-break-ringraft-writes"])
        // No warm-up: a failing request takes its whole retry budget, so one started in a
        // warm-up would still be in flight when the window ends and never be recorded.
        .args(["--duration-s", "1", "--warmup-s", "0", "--results-dir"])
        .arg(dir.path().join("results"))
        .output()
        .expect("ringraft bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status 3 (a check failed):\n{stderr}"
    );
    let verdict = stderr
        .lines()
        .find(|l| l.contains("ringraft vs etcd, point 0"))
        .unwrap_or_else(|| panic!("no comparison verdict:\n{stderr}"));
    assert!(verdict.starts_with("FAIL "), "{verdict}");
    assert!(verdict.contains("ringraft completed no write"), "{verdict}");
    assert!(verdict.contains("ringraft had errors"), "{verdict}");
    // The failures are in ringraft's latency, at the request deadline, not a p99 of 0.
    assert!(verdict.contains("ringraft's p99 is higher"), "{verdict}");
    // etcd itself ran and was measured: the failure is ringraft's alone.
    assert!(!verdict.contains("etcd completed no write"), "{verdict}");
    assert!(!verdict.contains("etcd had errors"), "{verdict}");
    // The report on disk carries the same verdict.
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("results/tiny"))
        .expect("results/tiny exists")
        .collect();
    let report_dir = runs[0].as_ref().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("ringraft vs etcd"))
        .expect("the comparison check is in report.json");
    assert_eq!(check["pass"], serde_json::Value::Bool(false), "{check}");
}
