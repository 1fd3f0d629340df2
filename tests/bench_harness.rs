//! The bench harness end to end on a tiny config: cluster up, load, teardown, report files.

mod node_common;

use std::process::Command;

#[test]
fn bench_runs_a_tiny_config_and_writes_every_report_file() {
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    // The tiny config on ports nobody else uses right now.
    let base_port = node_common::free_port_block(10);
    let config = std::fs::read_to_string("tests/data/tiny-bench.toml")
        .expect("tiny config")
        .replace("base_port = 26000", &format!("base_port = {base_port}"));
    assert!(config.contains(&format!("base_port = {base_port}")));
    let config_path = results.path().join("tiny.toml");
    std::fs::write(&config_path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("bench")
        .arg(&config_path)
        .arg("--results-dir")
        .arg(results.path())
        .output()
        .expect("ringraft bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let runs: Vec<_> = std::fs::read_dir(results.path().join("tiny"))
        .expect("results/tiny exists")
        .collect();
    assert_eq!(runs.len(), 1, "one timestamped run directory");
    let dir = runs[0].as_ref().unwrap().path();
    for file in [
        "report.json",
        "report.md",
        "throughput.svg",
        "latency.svg",
        "ringraft-r0-p0-write.hgrm",
        "ringraft-r0-p0-read.hgrm",
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!bytes.is_empty(), "{file} is empty");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let run = &report["runs"][0]["report"];
    assert!(
        run["writes_per_s"].as_f64().unwrap() > 0.0,
        "no writes measured: {run}"
    );
    assert!(
        run["reads_per_s"].as_f64().unwrap() > 0.0,
        "no reads measured: {run}"
    );
    assert!(
        run["errors"].as_object().unwrap().is_empty(),
        "errors: {}",
        run["errors"]
    );
    assert!(!report["machine"]["cpu_model"].as_str().unwrap().is_empty());
    // The data disk was probed before the run, and the report says what it found.
    assert!(
        report["machine"]["disk"]["syncs_per_s"].as_f64().unwrap() > 0.0,
        "no disk probe: {}",
        report["machine"]
    );
    // The machine was sampled over the measured window. A sampler thread on a loaded machine
    // can start or stop late, so the window is held to a generous condition, not a timing; the
    // CPU shares are each a share (their sum is 100 by definition, so it proves nothing), and
    // the cluster's work shows as busy time.
    let usage = &report["runs"][0]["usage"];
    let seconds = usage["seconds"].as_f64().unwrap();
    let duration_s = report["config"]["workload"]["duration"].as_f64().unwrap() / 1000.0;
    assert!(
        seconds > 0.0 && seconds <= duration_s + 5.0,
        "sampled {seconds} s of a {duration_s} s window"
    );
    let cpu = &usage["cpu"];
    for key in ["busy_pct", "iowait_pct", "idle_pct", "steal_pct"] {
        let share = cpu[key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&share), "{key} {share}: {cpu}");
    }
    assert!(
        cpu["busy_pct"].as_f64().unwrap() > 0.0,
        "the cluster ran: {cpu}"
    );
    if let Some(disk) = usage["disk"].as_object() {
        let busy = disk["busy_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&busy), "disk busy {busy}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("- disk: 64 KiB write + fdatasync"), "{md}");
    assert!(
        md.contains("## The machine during the measured windows"),
        "{md}"
    );
    let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    // Teardown left no data behind and the ports are free again.
    assert!(!results.path().join(".data/tiny").exists());
    // Nothing listens on the nodes' ports any more. (Connect, not bind: the connections the
    // nodes closed leave TIME_WAIT entries that keep a bind out for a minute.)
    for port in base_port..base_port + 6 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err(),
            "node port {port} still served after the bench"
        );
    }
}

#[test]
fn a_bad_bench_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"bad\"\nnodes = 3\n[workload]\nkey_bytes = 16\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("bench")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("missing field"),
        "{stderr}"
    );
}

#[test]
fn load_refuses_an_unknown_target_and_names_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "load",
            "--target",
            "zookeeper",
            "--cluster",
            "127.0.0.1:1",
            "--duration-s",
            "0.1",
            "--warmup-s",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown target `zookeeper`"), "{stderr}");
}
