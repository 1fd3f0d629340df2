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
pub mod placement;
pub mod remote;
pub mod report;
pub mod scrape;
pub mod sections;
pub mod spread;
pub mod ssh;
pub mod svg;
pub mod threads;
pub mod tune;
pub mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::BenchConfig;
use report::{BenchReport, Check, Machine, RunResult};

use crate::loadgen::{failure, progress, ringraft_target, LoadReport, LoopMode, Recorder};

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
    /// A test hook for the harness's own verdicts: the ringraft load is pointed at closed ports
    /// instead of the cluster, so every ringraft request fails (through the real client, after
    /// its retries). A comparison must then FAIL.
    pub break_ringraft_writes: bool,
    /// How progress is shown while each run runs.
    pub progress: progress::Mode,
    /// Run on the hosts of this inventory over SSH instead of on this machine's loopback.
    pub hosts: Option<PathBuf>,
}

/// Why `run` failed: the run could not be made, or it was made and some checks failed.
#[derive(Debug)]
pub enum BenchError {
    /// The run could not be made (bad config, a cluster that would not start, ...).
    Run(String),
    /// The run was made and reported, and these checks failed.
    ChecksFailed {
        /// The report directories written.
        dirs: Vec<PathBuf>,
        /// Names of the failed checks.
        failed: Vec<String>,
    },
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Run(e) => f.write_str(e),
            BenchError::ChecksFailed { dirs, failed } => write!(
                f,
                "{} check(s) FAILED: {}; reports: {}",
                failed.len(),
                failed.join("; "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl From<String> for BenchError {
    fn from(e: String) -> BenchError {
        BenchError::Run(e)
    }
}

/// Runs every config; returns the report directories, or which checks failed (after every
/// config has run and reported).
pub fn run(options: &BenchOptions) -> Result<Vec<PathBuf>, BenchError> {
    // Every config is read and judged runnable before the first one runs, so that a problem
    // with the last never costs the time of the others.
    let mut configs = Vec::new();
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
        check_runnable(&config).map_err(|e| format!("{}: {e}", path.display()))?;
        configs.push(config);
    }
    let mut dirs = Vec::new();
    let mut failed = Vec::new();
    for config in &configs {
        let (dir, checks) = match &options.hosts {
            Some(inventory) => remote::run_config_on_hosts(config, options, inventory)?,
            None => run_config(config, options)?,
        };
        dirs.push(dir);
        failed.extend(
            checks
                .into_iter()
                .filter(|c| !c.pass)
                .map(|c| format!("{}: {}", config.name, c.name)),
        );
    }
    if failed.is_empty() {
        Ok(dirs)
    } else {
        Err(BenchError::ChecksFailed { dirs, failed })
    }
}

/// Refuses what this build or this harness cannot run as asked: an etcd target without the
/// `etcd` feature, and an etcd comparison on an emulated network (the emulation lives in
/// ringraft's own peer transport, so etcd would run on plain loopback and the comparison would
/// not be like for like).
pub fn check_runnable(config: &BenchConfig) -> Result<(), String> {
    if !config.targets.iter().any(|t| t == "etcd") {
        return Ok(());
    }
    if config.network.is_some() {
        return Err("this config emulates a network ([network]) between ringraft's nodes, which etcd's \
                    members cannot be given: etcd would run on plain loopback and the comparison would \
                    not be like for like. Compare with etcd on a config without [network], or run this one \
                    for ringraft alone (no --compare etcd, no \"etcd\" in targets)"
            .into());
    }
    if !cfg!(feature = "etcd") {
        return Err(NO_ETCD_FEATURE.into());
    }
    Ok(())
}

/// Why a build without the `etcd` feature cannot compare with etcd, and what to do.
const NO_ETCD_FEATURE: &str =
    "this ringraft was built without the `etcd` feature, so it cannot drive etcd: \
     run scripts/compare-etcd.sh, which installs etcd and protoc and rebuilds with --features etcd";

/// The order the targets run in, repeat by repeat: as configured in even repeats (0, 2, ...),
/// reversed in odd ones, so that a machine that drifts (warming up, page cache filling, another
/// tenant) does not always favour the same side.
pub fn target_order(targets: &[String], repeat: usize) -> Vec<String> {
    let mut order = targets.to_vec();
    if repeat % 2 == 1 {
        order.reverse();
    }
    order
}

fn run_config(
    config: &BenchConfig,
    options: &BenchOptions,
) -> Result<(PathBuf, Vec<Check>), String> {
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
        for target in &target_order(&config.targets, repeat) {
            let results = match target.as_str() {
                "ringraft" => run_ringraft_as(
                    config,
                    &data_root.join("ringraft"),
                    options.break_ringraft_writes,
                    options.progress,
                )?,
                "etcd" => run_etcd(
                    config,
                    &data_root.join("etcd"),
                    &mut versions,
                    options.progress,
                )?,
                other => return Err(format!("unknown target {other}")),
            };
            for (point, run) in results.into_iter().enumerate() {
                eprint!("{}", run.report.text());
                if let Some(usage) = &run.usage {
                    eprintln!("  machine: {}", usage.describe());
                }
                if let Some(threads) = &run.threads {
                    eprintln!("  {}", threads.describe());
                }
                runs.push(RunResult {
                    target: target.clone(),
                    repeat,
                    point,
                    report: run.report,
                    cluster: run.cluster,
                    usage: run.usage,
                    threads: run.threads,
                    node_view: run.node_view,
                });
            }
        }
    }
    // A traced run (see `runtime::trace`) keeps the node logs, which hold the trace.
    if !crate::runtime::trace::enabled() {
        let _ = std::fs::remove_dir_all(&data_root);
    }
    let checks = checks(config, &runs);
    let spread = (options.repeat > 1).then(|| spread::spread(&runs));
    if let Some(spread) = &spread {
        eprint!("{}", spread::describe(spread));
    }
    let differences = differences(config, options.repeat.max(1));
    let report = BenchReport {
        config: config.clone(),
        started_at,
        machine,
        placement: placement::Placement::local(config),
        versions,
        runs,
        checks,
        differences,
        warnings,
        spread,
    };
    report.write(&out_dir)?;
    print_checks(&report.checks);
    eprintln!("report: {}", out_dir.join("report.md").display());
    let checks = report.checks;
    Ok((out_dir, checks))
}

/// Prints each check's verdict, one line each, as the end of a run shows them.
pub(crate) fn print_checks(checks: &[Check]) {
    for check in checks {
        eprintln!(
            "{} {}: {}",
            if check.pass { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
}

/// Node settings as launched: the config's, plus the in-flight window sized to twice the
/// bandwidth-delay product when the emulated network caps bandwidth and the config leaves it
/// unset.
pub fn effective_node_settings(config: &BenchConfig) -> crate::settings::SettingsPatch {
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

/// Each node's settings as launched (node id = position + 1): the effective settings, with
/// `node_cpus` given node by node; a node without cores named gets `share(position)`: on a
/// machine several nodes share, its share of the cores as executors (measured on the 2-core development VM, 3node-1kb: one
/// executor per node 14.9k writes/s, two per node 12.4k, `ringraft tune --sweep cpus=1,2`).
pub fn node_settings_by_node(
    config: &BenchConfig,
    share: &dyn Fn(usize) -> Option<crate::runtime::Cpus>,
) -> Vec<crate::settings::SettingsPatch> {
    let settings = effective_node_settings(config);
    (0..config.nodes)
        .map(|i| {
            let mut node = settings.clone();
            if let Some(cpus) = config.node_cpus.get(i) {
                node.cpus = Some(cpus.clone());
            } else if node.cpus.is_none() {
                node.cpus = share(i);
            }
            node
        })
        .collect()
}

/// [`node_settings_by_node`] for nodes that all share this machine.
pub fn local_node_settings(config: &BenchConfig) -> Vec<crate::settings::SettingsPatch> {
    node_settings_by_node(config, &|_| Some(local_share_of_cores(config.nodes)))
}

/// The executors each of `nodes` local nodes gets: the cores this process may use, divided
/// among them (at least one).
pub fn local_share_of_cores(nodes: usize) -> crate::runtime::Cpus {
    let cores = crate::runtime::placement::allowed_cores().len();
    crate::runtime::Cpus::Count((cores / nodes.max(1)).max(1))
}

/// The timing a config's nodes will run with (tick, heartbeat, election), derived exactly as
/// `ringraft node` derives it from the same settings.
pub fn node_timing(config: &BenchConfig) -> crate::runtime::NodeConfig {
    let mut node = crate::runtime::NodeConfig::new(1, Vec::new(), PathBuf::new());
    config.node.apply(&mut node.settings);
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
    /// CPU per thread of the node processes during the window (ringraft only).
    pub threads: Option<threads::ThreadUsage>,
    /// What the nodes measured themselves during the window (ringraft only).
    pub node_view: Option<scrape::NodeView>,
}

/// Elections counted by the nodes at `addrs` (summed over those that answer), for progress lines.
pub fn elections_of(addrs: Vec<std::net::SocketAddr>) -> progress::Elections {
    Box::new(move || {
        let timeout = std::time::Duration::from_millis(300);
        let counts: Vec<u64> = addrs
            .iter()
            .filter_map(|&a| cluster::stats(a, timeout).ok())
            .map(|s| s.elections)
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    })
}

/// Joins a sampler after its window; a sampler that panicked leaves the report without usage.
fn join_usage(handle: std::thread::JoinHandle<usage::MachineUsage>) -> Option<usage::MachineUsage> {
    handle.join().ok()
}

pub(crate) fn run_ringraft(
    config: &BenchConfig,
    data_root: &Path,
    progress: progress::Mode,
) -> Result<Vec<TargetRun>, String> {
    run_ringraft_as(config, data_root, false, progress)
}

/// Addresses where nothing listens (bound, then released): connecting is refused at once.
fn closed_addrs(count: usize) -> Result<Vec<std::net::SocketAddr>, String> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot reserve a loopback port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read a loopback port: {e}"))
}

fn run_ringraft_as(
    config: &BenchConfig,
    data_root: &Path,
    break_writes: bool,
    progress: progress::Mode,
) -> Result<Vec<TargetRun>, String> {
    let settings = local_node_settings(config);
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
        let addrs = if break_writes {
            eprintln!("test hook: the ringraft load goes to closed ports; every request fails");
            closed_addrs(cluster.client_addrs.len())?
                .into_iter()
                .map(crate::client::MemberAddr::from)
                .collect()
        } else {
            cluster.client_members()
        };
        let window_start = std::time::Instant::now() + workload.warmup;
        let window_end = window_start + workload.duration;
        let sampler = usage::Sampler::new(data_root).during(window_start, window_end);
        let thread_sampler = threads::ThreadSampler::new(cluster.pids())
            .with_load_here(ringraft_target::THREAD_NAME)
            .during(window_start, window_end);
        let scraper = scrape::during(cluster.metrics_addrs.clone(), window_start, window_end);
        let (recorder, conducted) = std::thread::scope(|scope| {
            let conductor =
                scope.spawn(|| drill::conduct(&mut cluster, config, window_start, window_end));
            let live = std::sync::Arc::new(progress::Live::default());
            let printer = progress::Printer::start(
                progress,
                "ringraft".into(),
                Some(live.clone()),
                window_start,
                window_end,
                Some(elections_of(addrs.iter().map(|m| m.addr).collect())),
            );
            let recorder =
                ringraft_target::run(addrs, &workload, &config.load_placement(), Some(live));
            printer.stop();
            let conducted = conductor
                .join()
                .unwrap_or_else(|_| Err("the conductor thread panicked".into()));
            (recorder, conducted)
        });
        let recorder = recorder?;
        // A run with no success is reported, not aborted: the other target still runs, the
        // report is written, and the "completed operations" check fails the bench (exit 3).
        if let Err(e) = failure::check_any_success("ringraft", &cluster.client_addrs, &recorder) {
            eprintln!("ringraft bench: {e}");
        }
        let observation = conducted?.finish(&recorder);
        if let Some(f) = &observation.failover {
            eprintln!("failover: {}", f.describe());
        }
        for group in &observation.groups {
            eprintln!("{}", group.describe());
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
        let report = LoadReport::new("ringraft", &workload, &recorder);
        let threads = thread_sampler
            .join()
            .ok()
            .map(|window| window.usage(report.writes_per_s));
        let node_view = scraper.join().ok();
        if let Some(view) = &node_view {
            eprintln!("{}", view.describe());
        }
        reports.push(TargetRun {
            report,
            cluster: Some(observation),
            usage: join_usage(sampler),
            threads,
            node_view,
        });
    }
    Ok(reports)
}

#[cfg(feature = "etcd")]
fn run_etcd(
    config: &BenchConfig,
    data_root: &Path,
    versions: &mut BTreeMap<String, String>,
    progress: progress::Mode,
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
        // Only the load generator's threads: etcd's are Go runtime threads that take goroutines
        // in turn, so no one of them stands for a piece of work as a ringraft thread does.
        let thread_sampler = threads::ThreadSampler::new(Vec::new())
            .with_load_here(etcd_target::THREAD_NAME_PREFIX)
            .during(window_start, window_start + workload.duration);
        let addrs = endpoints.clone();
        failure::check_reachable("etcd", &addrs)?;
        let printer = progress::Printer::start(
            progress,
            "etcd".into(),
            None,
            window_start,
            window_start + workload.duration,
            None,
        );
        let recorder = etcd_target::run(endpoints.clone(), &workload, &config.load_placement());
        printer.stop();
        let recorder: Recorder = recorder?;
        // A run with no success is reported, not aborted: the other target still runs, the
        // report is written, and the "completed operations" check fails the bench (exit 3).
        if let Err(e) = failure::check_any_success("etcd", &addrs, &recorder) {
            eprintln!("ringraft bench: {e}");
        }
        let report = LoadReport::new("etcd", &workload, &recorder);
        let threads = thread_sampler
            .join()
            .ok()
            .map(|window| window.usage(report.writes_per_s));
        reports.push(TargetRun {
            report,
            cluster: None,
            usage: join_usage(sampler),
            threads,
            node_view: None,
        });
    }
    Ok(reports)
}

#[cfg(not(feature = "etcd"))]
fn run_etcd(
    _: &BenchConfig,
    _: &Path,
    _: &mut BTreeMap<String, String>,
    _: progress::Mode,
) -> Result<Vec<TargetRun>, String> {
    let _: Option<Recorder> = None;
    Err(NO_ETCD_FEATURE.into())
}

/// Judgements of a config's expectations and of the etcd comparison. With `--repeat` they
/// judge the median over the runs of each point, and say so in their names.
fn checks(config: &BenchConfig, runs: &[RunResult]) -> Vec<Check> {
    let mut checks = Vec::new();
    let e = &config.expect;
    let spread = spread::spread(runs);
    for t in spread.targets.iter().filter(|t| t.target == "ringraft") {
        let judged = spread::judged(t.runs);
        let range = |s: &spread::Stat, digits: usize| {
            if t.runs > 1 {
                format!(" (runs {:.d$} to {:.d$})", s.min, s.max, d = digits)
            } else {
                String::new()
            }
        };
        if let Some(max) = e.p50_ms_max {
            let v = t.p50_ms.median;
            checks.push(Check {
                name: format!("ringraft p50 <= {max} ms{judged}"),
                pass: v <= max,
                detail: format!("p50 {v:.3} ms{}", range(&t.p50_ms, 3)),
            });
        }
        if let Some(max) = e.p99_ms_max {
            let v = t.p99_ms.median;
            checks.push(Check {
                name: format!("ringraft p99 <= {max} ms{judged}"),
                pass: v <= max,
                detail: format!("p99 {v:.3} ms{}", range(&t.p99_ms, 3)),
            });
        }
        if let Some(min) = e.writes_per_s_min {
            let v = t.writes_per_s.median;
            checks.push(Check {
                name: format!("ringraft writes/s >= {min}{judged}"),
                pass: v >= min,
                detail: format!("{v:.0} writes/s{}", range(&t.writes_per_s, 0)),
            });
        }
    }
    for r in runs {
        if r.report.writes_per_s + r.report.reads_per_s <= 0.0 {
            checks.push(Check {
                name: format!(
                    "{} completed operations, point {} run {}",
                    r.target,
                    r.point,
                    r.repeat + 1
                ),
                pass: false,
                detail: format!(
                    "no operation succeeded during the measured window (errors: {})",
                    r.report.errors.values().sum::<u64>()
                ),
            });
        }
    }
    for r in runs {
        if let LoopMode::Open { rate_per_s, .. } = r.report.workload.mode {
            checks.push(open_loop_check(&r.target, rate_per_s, &r.report));
        }
    }
    let ratio_min = e
        .etcd_throughput_ratio_min
        .unwrap_or(config::ETCD_THROUGHPUT_RATIO_MIN_DEFAULT);
    let mut points: Vec<usize> = runs.iter().map(|r| r.point).collect();
    points.sort_unstable();
    points.dedup();
    for point in points {
        let pairs: Vec<(&LoadReport, &LoadReport)> = runs
            .iter()
            .filter(|r| r.target == "ringraft" && r.point == point)
            .filter_map(|r| {
                let etcd = runs
                    .iter()
                    .find(|o| o.target == "etcd" && o.repeat == r.repeat && o.point == point)?;
                Some((&r.report, &etcd.report))
            })
            .collect();
        if !pairs.is_empty() {
            checks.push(comparison_check(&pairs, ratio_min, point));
        }
    }
    checks
}

/// One side of a comparison at one workload point: the median writes/s and write p99 over the
/// repeats, with every run's errors added up and the runs that completed no write counted (a
/// median must not hide a run that failed).
struct ComparedSide {
    target: String,
    writes_per_s: f64,
    p99_us: f64,
    errors: std::collections::BTreeMap<String, u64>,
    runs_without_writes: usize,
}

impl ComparedSide {
    fn of(reports: &[&LoadReport]) -> ComparedSide {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        let mut errors = std::collections::BTreeMap::new();
        for r in reports {
            for (kind, n) in &r.errors {
                *errors.entry(kind.clone()).or_insert(0) += n;
            }
        }
        ComparedSide {
            target: reports.first().map_or(String::new(), |r| r.target.clone()),
            writes_per_s: median(reports.iter().map(|r| r.writes_per_s).collect()),
            p99_us: median(
                reports
                    .iter()
                    .map(|r| r.write_latency.p99_us as f64)
                    .collect(),
            ),
            errors,
            runs_without_writes: reports.iter().filter(|r| r.writes_per_s <= 0.0).count(),
        }
    }
}

/// ringraft against etcd on one workload point, over the (ringraft, etcd) pairs of its repeats.
/// It passes only when every run of both targets completed writes, no run saw an error,
/// ringraft's median throughput is at least `ratio_min` times etcd's median, and ringraft's
/// median write p99 is no higher than etcd's; with one repeat the medians are that run's
/// figures. The name says what was judged; the detail gives every figure and every reason it
/// failed.
pub fn comparison_check(
    pairs: &[(&LoadReport, &LoadReport)],
    ratio_min: f64,
    point: usize,
) -> Check {
    let ringraft = ComparedSide::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let etcd = ComparedSide::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let ratio = ringraft.writes_per_s / etcd.writes_per_s.max(1e-9);
    let mut failures = Vec::new();
    for side in [&ringraft, &etcd] {
        if side.runs_without_writes > 0 {
            failures.push(format!(
                "{} completed no write in {} of {} run(s)",
                side.target,
                side.runs_without_writes,
                pairs.len()
            ));
        }
        if !side.errors.is_empty() {
            failures.push(format!(
                "{} had errors ({})",
                side.target,
                side.errors
                    .iter()
                    .map(|(kind, n)| format!("{n} x {kind}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if ratio < ratio_min {
        failures.push(format!(
            "throughput ratio {ratio:.2}x is below {ratio_min}x"
        ));
    }
    if ringraft.p99_us > etcd.p99_us {
        failures.push("ringraft's p99 is higher".to_string());
    }
    let figures = format!(
        "throughput ratio {ratio:.2}x ({:.0} vs {:.0} writes/s; needs >= {ratio_min}x); p99 {:.2} ms vs {:.2} ms (needs no higher); errors {} vs {} (needs none; failed requests are in the latency at the request deadline)",
        ringraft.writes_per_s,
        etcd.writes_per_s,
        ringraft.p99_us / 1000.0,
        etcd.p99_us / 1000.0,
        ringraft.errors.values().sum::<u64>(),
        etcd.errors.values().sum::<u64>(),
    );
    Check {
        name: format!(
            "ringraft vs etcd, point {point}{}",
            spread::judged(pairs.len())
        ),
        pass: failures.is_empty(),
        detail: if failures.is_empty() {
            figures
        } else {
            format!("{}: {figures}", failures.join("; "))
        },
    }
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

fn differences(config: &BenchConfig, repeats: usize) -> Vec<String> {
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
        d.push(format!(
            "Retries: {}. The ringraft client resends a write with its session sequence, so a retry is applied once; etcd may apply a retried put twice, which leaves the same value.",
            crate::loadgen::RetryPolicy::default().describe()
        ));
        d.push(if repeats > 1 {
            format!(
                "Order: the targets alternate across the {repeats} repeats: {} first in runs 1, 3, ..., {} first in runs 2, 4, ...",
                config.targets.first().map_or("", String::as_str),
                config.targets.last().map_or("", String::as_str)
            )
        } else {
            format!(
                "Order: one repeat, {} first (with --repeat 2 or more the order alternates).",
                config.targets.first().map_or("", String::as_str)
            )
        });
        let timing = node_timing(config);
        d.push(format!(
            "Timing: ringraft ticks every {} ms, election {} ticks, heartbeat {} ticks (defaults where unset); etcd runs with its defaults (heartbeat 100 ms, election 1000 ms).",
            timing.tick_ms, timing.election_timeout_ticks, timing.heartbeat_interval_ticks
        ));
    }
    d
}

/// The workload of the README's main command when no config is given: `3node-1kb`, briefly.
pub fn default_config_path() -> PathBuf {
    PathBuf::from("bench-configs/3node-1kb.toml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{OpKind, Workload};
    use std::time::Instant;

    /// A report of `ok` writes at `latency_ms` and `failed` failed ones, over a 1 s window.
    fn report(target: &str, ok: u32, latency_ms: u64, failed: u32) -> LoadReport {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(1));
        let at = |us: u64| start + Duration::from_micros(us);
        for i in 0..ok + failed {
            let begin = u64::from(i) * 10;
            let result = if i < ok {
                Ok(())
            } else {
                Err("unavailable".to_string())
            };
            recorder.record(
                OpKind::Write,
                at(begin),
                at(begin + latency_ms * 1000),
                result,
            );
        }
        LoadReport::new(target, &Workload::default(), &recorder)
    }

    #[test]
    fn a_comparison_passes_only_on_every_count() {
        let check = |r: &LoadReport, e: &LoadReport| comparison_check(&[(r, e)], 1.0, 0);
        let pass = check(&report("ringraft", 200, 1, 0), &report("etcd", 100, 2, 0));
        assert!(pass.pass, "{}", pass.detail);

        // No successful write, every write failed: a p99 that would be 0 without the failures.
        let broken = check(&report("ringraft", 0, 1, 50), &report("etcd", 100, 2, 0));
        assert!(!broken.pass);
        assert!(
            broken.detail.contains("ringraft completed no write"),
            "{}",
            broken.detail
        );
        assert!(
            broken
                .detail
                .contains("ringraft had errors (50 x unavailable)"),
            "{}",
            broken.detail
        );
        assert!(broken.detail.contains("p99 is higher"), "{}", broken.detail);

        let slower = check(&report("ringraft", 50, 1, 0), &report("etcd", 100, 2, 0));
        assert!(!slower.pass);
        assert!(
            slower.detail.contains("throughput ratio 0.50x is below 1x"),
            "{}",
            slower.detail
        );

        let tail = check(&report("ringraft", 200, 5, 0), &report("etcd", 100, 2, 0));
        assert!(!tail.pass);
        assert!(tail.detail.contains("p99 is higher"), "{}", tail.detail);

        let etcd_errors = check(&report("ringraft", 200, 1, 0), &report("etcd", 100, 2, 1));
        assert!(!etcd_errors.pass);
        assert!(
            etcd_errors.detail.contains("etcd had errors"),
            "{}",
            etcd_errors.detail
        );

        // The config's target ratio is the bar.
        let lenient = comparison_check(
            &[(&report("ringraft", 50, 1, 0), &report("etcd", 100, 2, 0))],
            0.4,
            0,
        );
        assert!(lenient.pass, "{}", lenient.detail);
    }

    #[test]
    fn over_repeats_the_medians_are_judged_and_no_failed_run_hides() {
        let (fast, slow) = (report("ringraft", 300, 1, 0), report("ringraft", 90, 1, 0));
        let etcd = report("etcd", 100, 2, 0);
        // Ratios 3.0, 3.0, 0.9: the median pair passes where the worst run alone would not.
        let check = comparison_check(&[(&fast, &etcd), (&fast, &etcd), (&slow, &etcd)], 1.0, 0);
        assert!(check.pass, "{}", check.detail);
        assert!(check.name.contains("median of 3 runs"), "{}", check.name);
        assert!(check.detail.contains("ratio 3.00x"), "{}", check.detail);
        // A run with no successful write fails the check even when the medians look good.
        let broken = report("ringraft", 0, 1, 5);
        let check = comparison_check(&[(&fast, &etcd), (&fast, &etcd), (&broken, &etcd)], 1.0, 0);
        assert!(!check.pass, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("ringraft completed no write in 1 of 3 run(s)"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn targets_alternate_order_across_repeats() {
        let targets = vec!["ringraft".to_string(), "etcd".to_string()];
        assert_eq!(target_order(&targets, 0), targets);
        assert_eq!(target_order(&targets, 1), vec!["etcd", "ringraft"]);
        assert_eq!(target_order(&targets, 2), targets);
    }
}
