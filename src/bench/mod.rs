//! The bench harness: reads `bench-configs/*.toml`, starts each target's cluster on loopback with
//! fresh data directories, drives the identical workload with the same load generator, tears
//! everything down, and writes a report people can read, diff and plot.

pub mod cluster;
pub mod config;
pub mod disk;
pub mod drill;
pub mod etcd;
pub mod hostinfo;
pub mod hosts;
pub mod remote;
pub mod report;
pub mod ssh;
pub mod svg;
pub mod tune;
pub mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::BenchConfig;
use report::{BenchReport, Check, Machine, RunResult};

use crate::loadgen::{ringraft_target, LoadReport, LoopMode, Recorder};

/// What `ringraft bench` was asked to do.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Config files to run, in order.
    pub configs: Vec<PathBuf>,
    /// Also measure a 3-member (or `nodes`-member) etcd cluster in the same run.
    pub compare_etcd: bool,
    /// Repetitions of each config (the report shows the spread).
    pub repeat: usize,
    /// Where `results/<config>/<timestamp>/` go.
    pub results_dir: PathBuf,
    /// Override the warm-up and measured durations (quick runs).
    pub duration: Option<Duration>,
    /// Override the warm-up.
    pub warmup: Option<Duration>,
    /// Override the config's `etcd_route`.
    pub etcd_route: Option<config::EtcdRoute>,
    /// Run on the hosts of this inventory over SSH instead of on this machine's loopback.
    pub hosts: Option<PathBuf>,
}

/// Runs every config; returns the report directories.
pub fn run(options: &BenchOptions) -> Result<Vec<PathBuf>, String> {
    let mut dirs = Vec::new();
    for path in &options.configs {
        let mut config = BenchConfig::from_file(path)?;
        if options.compare_etcd && !config.targets.iter().any(|t| t == "etcd") {
            config.targets.push("etcd".into());
        }
        config.override_timing(options.duration, options.warmup);
        if let Some(route) = options.etcd_route {
            config.etcd_route = route;
        }
        config.validate()?;
        dirs.push(match &options.hosts {
            Some(inventory) => remote::run_config_on_hosts(&config, options, inventory)?,
            None => run_config(&config, options)?,
        });
    }
    Ok(dirs)
}

fn run_config(config: &BenchConfig, options: &BenchOptions) -> Result<PathBuf, String> {
    let (started_at, stamp) = report::timestamp();
    let out_dir = options.results_dir.join(&config.name).join(&stamp);
    let data_root = options.results_dir.join(".data").join(&config.name);
    std::fs::create_dir_all(&data_root)
        .map_err(|e| format!("cannot create {}: {e}", data_root.display()))?;
    let machine = Machine::detect(&data_root);
    let mut versions = BTreeMap::from([(
        "ringraft".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )]);
    let mut runs = Vec::new();
    let warnings = timing_warnings(config);
    for w in &warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(network) = &config.network {
        eprintln!("{}", network.describe());
    }
    eprintln!(
        "bench {}: {} ({} nodes; targets {:?})",
        config.name,
        config.workload.describe(),
        config.nodes,
        config.targets
    );
    eprintln!("disk: {}", machine.describe_disk());
    for repeat in 0..options.repeat.max(1) {
        for target in &config.targets {
            let results = match target.as_str() {
                "ringraft" => run_ringraft(config, &data_root.join("ringraft"))?,
                "etcd" => run_etcd(config, &data_root.join("etcd"), &mut versions)?,
                other => return Err(format!("unknown target {other}")),
            };
            for (point, run) in results.into_iter().enumerate() {
                eprint!("{}", run.report.text());
                if let Some(usage) = &run.usage {
                    eprintln!("  machine: {}", usage.describe());
                }
                runs.push(RunResult {
                    target: target.clone(),
                    repeat,
                    point,
                    report: run.report,
                    cluster: run.cluster,
                    usage: run.usage,
                });
            }
        }
    }
    // A traced run (see `runtime::trace`) keeps the node logs, which hold the trace.
    if !crate::runtime::trace::enabled() {
        let _ = std::fs::remove_dir_all(&data_root);
    }
    let checks = checks(config, &runs);
    let differences = differences(config);
    let report = BenchReport {
        config: config.clone(),
        started_at,
        machine,
        versions,
        runs,
        checks,
        differences,
        warnings,
    };
    report.write(&out_dir)?;
    for check in &report.checks {
        eprintln!(
            "{} {}: {}",
            if check.pass { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    eprintln!("report: {}", out_dir.join("report.md").display());
    Ok(out_dir)
}

/// Node settings as launched: the config's, plus the in-flight window sized to twice the
/// bandwidth-delay product when the emulated network caps bandwidth and the config leaves it
/// unset.
pub fn effective_node_settings(config: &BenchConfig) -> config::NodeSettings {
    let mut settings = config.node.clone();
    if let Some(network) = &config.network {
        if let (Some(mbit), None) = (network.bandwidth_mbit, settings.inflight_bytes_max) {
            let bdp_bytes = mbit * 1e6 / 8.0 * network.rtt_max_ms() / 1000.0;
            let window = (2.0 * bdp_bytes) as usize;
            settings.inflight_bytes_max =
                Some(window.clamp(1 << 20, crate::limits::INFLIGHT_BYTES_MAX));
        }
    }
    settings
}

/// The timing a config's nodes will run with (tick, heartbeat, election), derived exactly as
/// `ringraft node` derives it from the same settings.
pub fn node_timing(config: &BenchConfig) -> crate::runtime::NodeConfig {
    let s = &config.node;
    let mut node = crate::runtime::NodeConfig::new(1, Vec::new(), PathBuf::new());
    node.tick_ms = s.tick_ms.unwrap_or(node.tick_ms);
    node.election_ticks = s.election_ticks.unwrap_or(node.election_ticks);
    node.heartbeat_ticks = s.heartbeat_ticks.unwrap_or(node.heartbeat_ticks);
    node.rtt_ms = s.rtt_ms;
    node.election_ms = s.election_ms;
    node.heartbeat_ms = s.heartbeat_ms;
    node.derive_timing();
    node
}

/// Warnings about the node timing of a config on its (emulated) network, as the nodes would
/// print them at start.
pub fn timing_warnings(config: &BenchConfig) -> Vec<String> {
    let node = node_timing(config);
    let rtt = config.network.as_ref().map(|n| n.rtt_max_ms());
    node.timing_warnings(rtt)
}

/// One workload point run against one target.
pub(crate) struct TargetRun {
    pub report: LoadReport,
    /// What the harness saw of the cluster (ringraft only).
    pub cluster: Option<drill::ClusterObservation>,
    /// The machine during the measured window.
    pub usage: Option<usage::MachineUsage>,
}

/// Joins a sampler after its window; a sampler that panicked leaves the report without usage.
fn join_usage(handle: std::thread::JoinHandle<usage::MachineUsage>) -> Option<usage::MachineUsage> {
    handle.join().ok()
}

pub(crate) fn run_ringraft(
    config: &BenchConfig,
    data_root: &Path,
) -> Result<Vec<TargetRun>, String> {
    let settings = effective_node_settings(config);
    let emulate = config.network.is_some()
        || matches!(&config.failover, Some(f) if f.action == config::FailoverAction::Isolate);
    let mut cluster = cluster::Cluster::start(
        config.nodes,
        data_root,
        config.base_port,
        &settings,
        config.network.as_ref(),
        emulate,
    )?;
    let mut reports = Vec::new();
    for workload in config.workloads() {
        let addrs = cluster.client_members();
        let window_start = std::time::Instant::now() + workload.warmup;
        let window_end = window_start + workload.duration;
        let sampler = usage::Sampler::new(data_root).during(window_start, window_end);
        let (recorder, conducted) = std::thread::scope(|scope| {
            let conductor =
                scope.spawn(|| drill::conduct(&mut cluster, config, window_start, window_end));
            let recorder = ringraft_target::run(addrs, &workload, config.load_threads);
            let conducted = conductor
                .join()
                .unwrap_or_else(|_| Err("the conductor thread panicked".into()));
            (recorder, conducted)
        });
        let recorder = recorder?;
        let observation = conducted?.finish(&recorder);
        if let Some(f) = &observation.failover {
            eprintln!("failover: {}", f.describe());
        }
        eprintln!(
            "elections during the run: {} ({} campaigns){}",
            observation.elections,
            observation.campaigns,
            observation
                .commit_floor_ms
                .map_or(String::new(), |f| format!(
                    "; emulated commit floor {f:.1} ms (leader {})",
                    observation.leader_before.unwrap_or(0)
                ))
        );
        reports.push(TargetRun {
            report: LoadReport::new("ringraft", &workload, &recorder),
            cluster: Some(observation),
            usage: join_usage(sampler),
        });
    }
    Ok(reports)
}

#[cfg(feature = "etcd")]
fn run_etcd(
    config: &BenchConfig,
    data_root: &Path,
    versions: &mut BTreeMap<String, String>,
) -> Result<Vec<TargetRun>, String> {
    use crate::loadgen::etcd_target;
    let etcd = etcd::EtcdCluster::start(config.nodes, data_root, config.base_port + 100)?;
    versions.insert("etcd".into(), etcd.version());
    let endpoints = match config.etcd_route {
        config::EtcdRoute::Spread => etcd.client_endpoints(),
        config::EtcdRoute::Leader => vec![etcd.leader_endpoint()?],
    };
    let mut reports = Vec::new();
    for workload in config.workloads() {
        let window_start = std::time::Instant::now() + workload.warmup;
        let sampler =
            usage::Sampler::new(data_root).during(window_start, window_start + workload.duration);
        let recorder: Recorder =
            etcd_target::run(endpoints.clone(), &workload, config.load_threads)?;
        reports.push(TargetRun {
            report: LoadReport::new("etcd", &workload, &recorder),
            cluster: None,
            usage: join_usage(sampler),
        });
    }
    Ok(reports)
}

#[cfg(not(feature = "etcd"))]
fn run_etcd(
    _: &BenchConfig,
    _: &Path,
    _: &mut BTreeMap<String, String>,
) -> Result<Vec<TargetRun>, String> {
    let _: Option<Recorder> = None;
    Err("this ringraft was built without the `etcd` feature: run scripts/compare-etcd.sh, which installs etcd and \
         protoc and rebuilds with --features etcd"
        .into())
}

fn checks(config: &BenchConfig, runs: &[RunResult]) -> Vec<Check> {
    let mut checks = Vec::new();
    let e = &config.expect;
    for r in runs.iter().filter(|r| r.target == "ringraft") {
        let p = &r.report.write_latency;
        if let Some(max) = e.p50_ms_max {
            let v = p.p50_us as f64 / 1000.0;
            checks.push(Check {
                name: format!("ringraft p50 <= {max} ms"),
                pass: v <= max,
                detail: format!("p50 {v:.3} ms"),
            });
        }
        if let Some(max) = e.p99_ms_max {
            let v = p.p99_us as f64 / 1000.0;
            checks.push(Check {
                name: format!("ringraft p99 <= {max} ms"),
                pass: v <= max,
                detail: format!("p99 {v:.3} ms"),
            });
        }
        if let Some(min) = e.writes_per_s_min {
            let v = r.report.writes_per_s;
            checks.push(Check {
                name: format!("ringraft writes/s >= {min}"),
                pass: v >= min,
                detail: format!("{v:.0} writes/s"),
            });
        }
    }
    for r in runs {
        if let LoopMode::Open { rate_per_s, .. } = r.report.workload.mode {
            checks.push(open_loop_check(&r.target, rate_per_s, &r.report));
        }
    }
    for r in runs.iter().filter(|r| r.target == "ringraft") {
        if let Some(etcd) = runs
            .iter()
            .find(|o| o.target == "etcd" && o.repeat == r.repeat && o.point == r.point)
        {
            let ratio = r.report.writes_per_s / etcd.report.writes_per_s.max(1e-9);
            let (mine, theirs) = (
                r.report.write_latency.p99_us,
                etcd.report.write_latency.p99_us,
            );
            checks.push(Check {
                name: format!("ringraft vs etcd, point {} run {}", r.point, r.repeat + 1),
                pass: mine <= theirs,
                detail: format!(
                    "throughput ratio {ratio:.2}x ({:.0} vs {:.0} writes/s); p99 {:.2} ms vs {:.2} ms (pass = p99 no higher than etcd's)",
                    r.report.writes_per_s,
                    etcd.report.writes_per_s,
                    mine as f64 / 1000.0,
                    theirs as f64 / 1000.0
                ),
            });
        }
    }
    checks
}

/// `etcdctl check perf`'s rules: at least 90% of the target rate achieved, the slowest request
/// under 500 ms, and a standard deviation under 100 ms.
fn open_loop_check(target: &str, rate_per_s: u64, report: &LoadReport) -> Check {
    let achieved = report.writes_per_s + report.reads_per_s;
    let max_ms = report.write_latency.max_us as f64 / 1000.0;
    let stdev_ms = stdev_ms(report);
    let pass = achieved >= 0.9 * rate_per_s as f64 && max_ms < 500.0 && stdev_ms < 100.0;
    Check {
        name: format!("{target} open loop at {rate_per_s}/s (etcdctl check perf rules)"),
        pass,
        detail: format!("achieved {achieved:.0}/s (needs >= 90%), max {max_ms:.1} ms (needs < 500), stddev {stdev_ms:.1} ms (needs < 100)"),
    }
}

fn stdev_ms(report: &LoadReport) -> f64 {
    // The spectrum's points are quantiles; a histogram-free estimate of the spread from them.
    let points = &report.write_spectrum;
    if points.len() < 2 {
        return 0.0;
    }
    let mean = report.write_latency.mean_us;
    let mut acc = 0.0;
    let mut weight = 0.0;
    for w in points.windows(2) {
        let dq = (w[1].0 - w[0].0) / 100.0;
        let v = w[1].1 as f64;
        acc += dq * (v - mean) * (v - mean);
        weight += dq;
    }
    (acc / weight.max(1e-9)).sqrt() / 1000.0
}

fn differences(config: &BenchConfig) -> Vec<String> {
    let mut d = vec![
        "Both clusters run on this one machine, on loopback, with data on the same disk; the load generator shares the machine's cores with them.".to_string(),
        "Wire protocols differ: ringraft speaks flatbuffers frames over TCP; etcd speaks gRPC (HTTP/2, protobuf). Each is driven by its own client library (ringraft::client; the etcd-client crate).".to_string(),
        "Durability: ringraft makes each group of entries durable with one O_DIRECT write and fdatasync, or, for a group of up to 1 MiB (every group of the shipped configs), one O_DIRECT | O_DSYNC write; etcd fdatasyncs its WAL per Raft ready batch and commits its bbolt backend periodically.".to_string(),
    ];
    if config.targets.iter().any(|t| t == "etcd") {
        d.push(match config.etcd_route {
            config::EtcdRoute::Spread => "Routing: each etcd connection talks to one member, spread over all members as etcd's own benchmark tool does, so about two thirds of etcd writes are forwarded by a follower to the leader (one extra hop); ringraft's client finds the leader and sends there. `--etcd-route leader` sends etcd's to its leader too.".to_string(),
            config::EtcdRoute::Leader => "Routing: every etcd connection talks to the member that led when the run started (`etcd_route = \"leader\"`), as ringraft's client talks to ringraft's leader.".to_string(),
        });
        d.push(
            "Retries: the ringraft client retries (leader changes, timeouts) with the same session sequence; the etcd target makes one attempt per request with a 5 s timeout. Neither run saw errors unless the error column says so.".to_string(),
        );
        d.push(format!(
            "Timing: ringraft ticks every {} ms, election {} ticks, heartbeat {} ticks (defaults where unset); etcd runs with its defaults (heartbeat 100 ms, election 1000 ms).",
            config.node.tick_ms.unwrap_or(10),
            config.node.election_ticks.unwrap_or(30),
            config.node.heartbeat_ticks.unwrap_or(3)
        ));
    }
    d
}

/// The workload of the README's main command when no config is given: `3node-1kb`, briefly.
pub fn default_config_path() -> PathBuf {
    PathBuf::from("bench-configs/3node-1kb.toml")
}
