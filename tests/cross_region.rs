//! Link emulation, RTT-derived timing, failover drills and `ringraft tune`, end to end through
//! the binary on small emulated networks. Every assertion is about what must hold whatever the
//! machine's speed: the network's delay is a floor under commit latency, a failover ends with
//! another leader, the spurious-election counters count what they say.

use std::process::Command;
use std::sync::Mutex;

/// The tests here start clusters; one at a time keeps a loaded 2-core machine from starving
/// their timers into elections nobody asked for.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_dir(results: &std::path::Path, name: &str) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(results.join(name))
        .unwrap_or_else(|e| panic!("results/{name}: {e}"))
        .collect();
    assert_eq!(runs.len(), 1, "one run directory");
    runs[0].as_ref().unwrap().path()
}

#[test]
fn emulated_regions_floor_the_latency_and_an_isolated_leader_is_replaced() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "bench",
            "tests/data/tiny-cross-region.toml",
            "--results-dir",
        ])
        .arg(results.path())
        .output()
        .expect("ringraft bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let dir = run_dir(results.path(), "tiny-cross-region");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("EMULATED network"),
        "the report must say so:\n{md}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let run = &report["runs"][0];
    let cluster = &run["cluster"];
    // Every commit needs a round trip to a follower: the emulated delay is a hard floor.
    let floor = cluster["commit_floor_ms"].as_f64().expect("a commit floor");
    let leader = cluster["leader_before"].as_u64().expect("a leader");
    let expected_floor = [20.0, 20.0, 30.0][(leader - 1) as usize];
    assert_eq!(floor, expected_floor, "floor of leader {leader}");
    // The drill moves leadership 1 s into the window, so most writes are committed by the next
    // leader: the bound is the lowest floor any leader has (20 ms; loopback alone gives ~1 ms).
    let lowest_floor = 20.0;
    let p50_ms = run["report"]["write_latency"]["p50_us"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        p50_ms >= lowest_floor - 2.0,
        "p50 {p50_ms} ms is below the emulated floor {lowest_floor} ms: the delay is not applied"
    );
    // The drill isolated the leader; another node took over in a newer term.
    let f = &cluster["failover"];
    assert_eq!(f["action"], "isolate");
    let victim = f["victim"].as_u64().unwrap();
    let new_leader = f["new_leader"]
        .as_u64()
        .unwrap_or_else(|| panic!("no new leader after isolating {victim}: {f}\n{stderr}"));
    assert_ne!(new_leader, victim);
    let detection = f["detection_ms"].as_f64().unwrap();
    let elected = f["new_leader_ms"].as_f64().unwrap();
    assert!(detection <= elected, "{f}");
    assert!(f["elections"].as_u64().unwrap() >= 1, "{f}");
    let first_commit = f["first_commit_ms"].as_f64().expect("commits resumed");
    assert!(first_commit > 0.0);
    assert!(f["unavailable_ms"].as_f64().unwrap() > 0.0, "{f}");
    assert!(cluster["elections"].as_u64().unwrap() >= 1);
    assert!(stderr.contains("failover: isolate leader"), "{stderr}");
    // The nodes' own counters: the isolated leader's emulation dropped its messages to the
    // others (the harness's schedule alone would not move them).
    let drops = cluster["emulated_drops"]
        .as_array()
        .expect("per-node drop counts");
    let victim_drops = drops[(victim - 1) as usize].as_u64();
    assert!(
        victim_drops.is_some_and(|d| d > 0),
        "node {victim} was isolated but its emulation dropped nothing: {drops:?}"
    );
    assert!(!results.path().join(".data/tiny-cross-region").exists());
}

#[test]
fn a_stopped_leader_hands_over_and_the_drill_times_it() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["bench", "tests/data/tiny-stop-leader.toml", "--results-dir"])
        .arg(results.path())
        .output()
        .expect("ringraft bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let dir = run_dir(results.path(), "tiny-stop-leader");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let run = &report["runs"][0];
    let f = &run["cluster"]["failover"];
    assert_eq!(f["action"], "stop", "{f}");
    let victim = f["victim"].as_u64().unwrap();
    let new_leader = f["new_leader"]
        .as_u64()
        .unwrap_or_else(|| panic!("no new leader after stopping {victim}: {f}\n{stderr}"));
    assert_ne!(new_leader, victim);
    // Leadership moved by the hand-over, not by an election timeout somewhere.
    assert_eq!(run["cluster"]["campaigns"], 0, "{}", run["cluster"]);
    assert!(
        f["first_commit_ms"].as_f64().is_some(),
        "commits resumed: {f}"
    );
    assert!(f["unavailable_ms"].as_f64().is_some(), "{f}");
    let errors = run["report"]["errors"].as_object().unwrap();
    assert!(errors.is_empty(), "no write failed for good: {errors:?}");
    assert!(stderr.contains("failover: stop leader"), "{stderr}");
    assert!(!stderr.contains("did not exit"), "{stderr}");
}

#[test]
fn tune_sweeps_a_grid_names_the_best_point_and_counts_no_spurious_elections() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    // No failover here, so every election in the measured window would be spurious. With
    // jitter bounded (uniform, 1 ms) and an election timeout of 75 RTTs (far beyond any scheduling stall), none may happen; the
    // count starts after the warm-up, so the first election is not counted either.
    let config = results.path().join("quiet.toml");
    let text = std::fs::read_to_string("tests/data/tiny-cross-region.toml").unwrap();
    let text = text
        .split("[failover]")
        .next()
        .unwrap()
        .replace("name = \"tiny-cross-region\"", "name = \"quiet\"")
        .replace("jitter = \"normal\"", "jitter = \"uniform\"")
        .replace("duration = 6000", "duration = 1500");
    assert!(
        text.contains("duration = 1500"),
        "the quiet config kept the long window: {text}"
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("tune")
        .arg(&config)
        .args([
            "--sweep",
            "election_ms=3000",
            "--sweep",
            "batch_entries_max=16,256",
            "--p99-max-ms",
            "60000",
            "--results-dir",
        ])
        .arg(results.path())
        .output()
        .expect("ringraft tune runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tune failed:\n{stderr}");
    assert!(
        stdout.contains("batch_entries_max") && stdout.contains("writes/s"),
        "{stdout}"
    );
    let dir = run_dir(results.path(), "quiet");
    for file in ["tune.json", "tune.md", "tune.svg"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tune.json")).unwrap()).unwrap();
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "a 1 x 2 grid");
    for p in points {
        assert_eq!(p["elections"].as_u64(), Some(0), "spurious election: {p}");
        assert!(p["writes_per_s"].as_f64().unwrap() > 0.0, "{p}");
        assert_eq!(p["settings"][0][0], "election_ms");
        // Each point says what the machine did while it was measured.
        let busy = p["usage"]["cpu"]["busy_pct"].as_f64().expect("CPU sampled");
        assert!(busy > 0.0 && busy <= 100.0, "{p}");
    }
    assert!(stdout.contains("iowait %"), "{stdout}");
    // The best point is the faster of the two (both are under the generous bound).
    let best = report["best"].as_u64().expect("a best point") as usize;
    let w = |i: usize| points[i]["writes_per_s"].as_f64().unwrap();
    assert!(w(best) >= w(1 - best));
    assert!(stdout.contains("best under p99 <= 60000 ms"), "{stdout}");
}

#[test]
fn bad_network_sections_are_refused_with_the_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/tiny-cross-region.toml").unwrap();
    for (from, to, expect) in [
        ("[20.0, 0.2, 40.0]", "[21.0, 0.2, 40.0]", "not symmetric"),
        (
            "placement = [\"a\", \"b\", \"c\"]",
            "placement = [\"a\", \"b\", \"mars\"]",
            "unknown region `mars`",
        ),
        (
            "at_ms = 1000",
            "at_ms = 99000",
            "not inside the measured window",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .arg("bench")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "expected `{expect}` in:\n{stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "tune",
            "tests/data/tiny-cross-region.toml",
            "--sweep",
            "elction_ms=1,2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sweep key `elction_ms`"));
}
