//! A bench run's results on disk: `report.json` (everything, for diffing and tooling),
//! `report.md` (for people), `.hgrm` percentile files and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::config::BenchConfig;
use super::svg::{line_chart, line_chart_with_band, Band, Series, XAxis};
use crate::loadgen::{LoadReport, LoopMode};

/// The machine a run happened on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu_model: String,
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Filesystem type of the data directory.
    pub filesystem: String,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// The data disk's fdatasync behaviour measured just before the run (None: the probe
    /// failed, and why is in `disk_probe_error`).
    pub disk: Option<super::disk::DiskProbe>,
    /// Why the disk probe failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_probe_error: Option<String>,
}

impl Machine {
    /// Reads the machine's facts; `data_dir` is where the nodes write.
    pub fn detect(data_dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = super::hostinfo::cpu_model(&cpuinfo);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0.0);
        let (disk, disk_probe_error) = match super::disk::probe(
            data_dir,
            super::disk::WRITE_BYTES,
            std::time::Duration::from_secs(1),
        ) {
            Ok(probe) => (Some(probe), None),
            Err(e) => (None, Some(e)),
        };
        Machine {
            cpu_model,
            cores,
            kernel,
            filesystem: filesystem_of(data_dir),
            memory_gib: mem_kib / (1 << 20) as f64,
            disk,
            disk_probe_error,
        }
    }

    /// The disk line of a report.
    pub fn describe_disk(&self) -> String {
        match (&self.disk, &self.disk_probe_error) {
            (Some(probe), _) => probe.describe(),
            (None, Some(e)) => e.clone(),
            (None, None) => "disk not probed".to_string(),
        }
    }
}

/// The type of the filesystem holding `path` (longest matching mount point in /proc/mounts).
pub(crate) fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, fstype) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{fstype} ({mount})")))
        })
        .max()
        .map_or("unknown".into(), |(_, fs)| fs)
}

/// One measured point.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// "ringraft" or "etcd".
    pub target: String,
    /// Repetition number, from 0.
    pub repeat: usize,
    /// Workload point (open-loop rate index), from 0.
    pub point: usize,
    /// The numbers.
    pub report: LoadReport,
    /// What the harness saw of the cluster (ringraft only): elections, failover timeline,
    /// emulated network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::drill::ClusterObservation>,
    /// The machine during the measured window: CPU time by kind, the data disk's work.
    pub usage: Option<super::usage::MachineUsage>,
    /// CPU per thread of each node process over the window (ringraft only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<super::threads::ThreadUsage>,
    /// What the nodes measured themselves during the window, from `/metrics` (ringraft only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_view: Option<super::scrape::NodeView>,
}

/// A pass/fail judgement, stated with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub pass: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Everything a bench run produced.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The config as run (after command-line overrides).
    pub config: BenchConfig,
    /// When the run started (UTC, ISO 8601).
    pub started_at: String,
    /// Where.
    pub machine: Machine,
    /// What ran on which cores: each node's executors, the load threads.
    pub placement: super::placement::Placement,
    /// Versions of what was measured.
    pub versions: BTreeMap<String, String>,
    /// Every measured point.
    pub runs: Vec<RunResult>,
    /// Judgements: expectations, open-loop pass rules, comparisons.
    pub checks: Vec<Check>,
    /// What still differs between the targets' setups.
    pub differences: Vec<String>,
    /// Warnings about the configuration (timing unsafe for the network, ...).
    pub warnings: Vec<String>,
    /// The spread over `--repeat` runs (none for a single run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<super::spread::Spread>,
}

impl BenchReport {
    /// Writes `report.json`, `report.md`, the `.hgrm` files and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let put = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
        };
        put(
            "report.json",
            &serde_json::to_string_pretty(self).map_err(|e| e.to_string())?,
        )?;
        put("report.md", &self.markdown())?;
        for run in &self.runs {
            let stem = format!("{}-r{}-p{}", run.target, run.repeat, run.point);
            put(&format!("{stem}-write.hgrm"), &run.report.write_hgrm)?;
            if run.report.read_latency.is_some() {
                put(&format!("{stem}-read.hgrm"), &run.report.read_hgrm)?;
            }
        }
        let throughput: Vec<Series> = self
            .runs
            .iter()
            .map(|r| Series {
                label: self.label(r),
                points: r
                    .report
                    .per_second
                    .iter()
                    .enumerate()
                    .map(|(s, b)| (s as f64 + 1.0, (b.writes + b.reads) as f64))
                    .collect(),
            })
            .collect();
        let warmup_s = self.config.workload.warmup.as_secs_f64();
        let warmup = Band {
            from: -warmup_s,
            to: 0.0,
            label: "warm-up (not measured)".into(),
        };
        put(
            "throughput.svg",
            &line_chart_with_band(
                &format!("{}: operations per second", self.config.name),
                "seconds into the measured window",
                "ops/s",
                XAxis::Linear,
                &throughput,
                (warmup_s > 0.0).then_some(&warmup),
            ),
        )?;
        let over_time: Vec<Series> = self
            .runs
            .iter()
            .flat_map(|r| {
                let per_second = &r.report.write_latency_per_second;
                let line = |name: &str, pick: fn(&(u64, u64)) -> u64| Series {
                    label: format!("{} {name}", self.label(r)),
                    points: per_second
                        .iter()
                        .enumerate()
                        .filter_map(|(s, v)| {
                            v.as_ref()
                                .map(|v| (s as f64 + 1.0, pick(v) as f64 / 1000.0))
                        })
                        .collect(),
                };
                [line("p50", |v| v.0), line("p99", |v| v.1)]
            })
            .collect();
        put(
            "latency-over-time.svg",
            &line_chart(
                &format!("{}: write latency per second (p50, p99)", self.config.name),
                "seconds into the measured window",
                "latency (ms)",
                XAxis::Linear,
                &over_time,
            ),
        )?;
        let spectrum: Vec<Series> = self
            .runs
            .iter()
            .map(|r| Series {
                label: self.label(r),
                points: r
                    .report
                    .write_spectrum
                    .iter()
                    .map(|&(p, us)| (p, us as f64 / 1000.0))
                    .collect(),
            })
            .collect();
        put(
            "latency.svg",
            &line_chart(
                &format!("{}: write latency by percentile", self.config.name),
                "percentile",
                "latency (ms)",
                XAxis::Percentile,
                &spectrum,
            ),
        )?;
        Ok(())
    }

    fn label(&self, r: &RunResult) -> String {
        let mut label = r.target.clone();
        if let LoopMode::Open { rate_per_s, .. } = r.report.workload.mode {
            let _ = write!(label, " @{rate_per_s}/s");
        }
        if self.runs.iter().any(|o| o.repeat > 0) {
            let _ = write!(label, " run {}", r.repeat + 1);
        }
        label
    }

    /// The human-readable report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let c = &self.config;
        let _ = writeln!(
            md,
            "# {} ({})\n\n{}\n",
            c.name, self.started_at, c.description
        );
        let _ = writeln!(
            md,
            "## Workload\n\n- {} nodes per cluster, on loopback, fresh data directories",
            c.nodes
        );
        let _ = writeln!(md, "- {}", c.workload.describe());
        if let Some(network) = &c.network {
            let _ = writeln!(md, "- **{}**", network.describe());
        }
        if let Some(f) = &c.failover {
            let _ = writeln!(
                md,
                "- failover drill: {:?} the leader {} ms into the measured window{}",
                f.action,
                f.at_ms,
                f.duration_ms
                    .map_or(String::new(), |d| format!(", for {d} ms"))
            );
        }
        for w in &self.warnings {
            let _ = writeln!(md, "- WARNING: {w}");
        }
        let _ = writeln!(md, "- writes acknowledged after commit on a durable majority and apply on the leader (both systems); fsync on");
        let _ = writeln!(
            md,
            "- load generator: one process, {} thread(s), in the same run for every target\n",
            c.load_threads
        );
        let m = &self.machine;
        let _ = writeln!(
            md,
            "## Machine\n\n- CPU: {} ({} cores), {:.1} GiB\n- kernel {}, data on {}\n- disk: {}",
            m.cpu_model,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.filesystem,
            m.describe_disk()
        );
        for (what, version) in &self.versions {
            let _ = writeln!(md, "- {what}: {version}");
        }
        md.push_str(&self.placement.markdown());
        let _ = writeln!(md, "\n## Results\n\nCPU us/write: machine CPU time per write (busy share x cores / writes per second; nodes, load generator and kernel together).\n\n| target | point | run | writes/s | reads/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | CPU us/write |");
        let _ = writeln!(
            md,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.runs {
            let p = &r.report.write_latency;
            let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
            let point = match r.report.workload.mode {
                LoopMode::Open { rate_per_s, .. } => format!("{rate_per_s}/s"),
                LoopMode::Closed {
                    connections,
                    inflight_per_connection,
                } => format!("{connections}x{inflight_per_connection}"),
            };
            let errors: u64 = r.report.errors.values().sum();
            let per_write = r
                .usage
                .as_ref()
                .and_then(|u| u.cpu_us_per_op(r.report.writes_per_s))
                .map_or("-".to_string(), |v| format!("{v:.1}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                r.target,
                point,
                r.repeat + 1,
                r.report.writes_per_s,
                r.report.reads_per_s,
                ms(p.p50_us),
                ms(p.p90_us),
                ms(p.p99_us),
                ms(p.p999_us),
                ms(p.max_us),
                errors,
                per_write
            );
        }
        if let Some(spread) = &self.spread {
            md.push_str(&super::sections::spread(spread));
        }
        let observed: Vec<&RunResult> = self.runs.iter().filter(|r| r.cluster.is_some()).collect();
        if !observed.is_empty() {
            let _ = writeln!(md, "\n## The cluster during the runs\n");
            for r in observed {
                let o = r.cluster.as_ref().expect("filtered");
                let _ = write!(
                    md,
                    "- {}: {} {} at the start, {} at the end; {} election(s) and {} campaign(s) (election timeouts fired, pre-vote included) during the run{}",
                    self.label(r),
                    if o.groups.is_empty() { "leader" } else { "group 0's leader" },
                    o.leader_before.map_or("?".into(), |l| l.to_string()),
                    o.leader_after.map_or("?".into(), |l| l.to_string()),
                    o.elections,
                    o.campaigns,
                    if o.groups.is_empty() { "" } else { ", all groups" }
                );
                if let Some(floor) = o.commit_floor_ms {
                    let _ = write!(
                        md,
                        "; emulated commit floor {floor:.1} ms vs measured p50 {:.1} ms",
                        r.report.write_latency.p50_us as f64 / 1000.0
                    );
                }
                let _ = writeln!(md);
                for group in &o.groups {
                    let _ = writeln!(md, "  - {}", group.describe());
                }
                if let Some(f) = &o.failover {
                    let _ = writeln!(md, "  - failover: {}", f.describe());
                }
            }
        }
        md.push_str(&super::sections::node_views(&self.runs, |r| self.label(r)));
        if self.runs.iter().any(|r| r.usage.is_some()) {
            let _ = writeln!(
                md,
                "\n## The machine during the measured windows\n\nMachine-wide (load generator included). CPU: shares of all cores' time. Disk: the device holding the data directories.\n"
            );
            for r in &self.runs {
                if let Some(usage) = &r.usage {
                    let _ = writeln!(md, "- {}: {}", self.label(r), usage.describe());
                }
            }
        }
        if self.runs.iter().any(|r| r.threads.is_some()) {
            let _ = writeln!(
                md,
                "\n## CPU per thread of the nodes\n\nUser + system time of each node thread over the measured window (`/proc/PID/task/*/stat`), per acknowledged write. The busiest thread's CPU per write bounds what one core can do: its ceiling is 1 core / that figure, whatever the number of cores. The load generator's threads, when it runs in the harness's process, are listed last: on a shared machine their CPU is taken from the nodes, but it bounds no node.\n"
            );
            for r in &self.runs {
                if let Some(threads) = &r.threads {
                    let _ = writeln!(md, "### {}\n\n{}\n", self.label(r), threads.describe());
                    let _ = writeln!(md, "{}", threads.markdown());
                }
            }
        }
        if !self.checks.is_empty() {
            let _ = writeln!(md, "\n## Checks\n");
            for check in &self.checks {
                let _ = writeln!(
                    md,
                    "- **{}** {}: {}",
                    if check.pass { "PASS" } else { "FAIL" },
                    check.name,
                    check.detail
                );
            }
        }
        if !self.differences.is_empty() {
            let _ = writeln!(md, "\n## What still differs between the setups\n");
            for d in &self.differences {
                let _ = writeln!(md, "- {d}");
            }
        }
        let _ = writeln!(md, "\nPlots: `throughput.svg`, `latency.svg`, `latency-over-time.svg`; percentile files: `*.hgrm`; all numbers: `report.json`.");
        md
    }
}

/// Now as an ISO 8601 UTC timestamp, and a directory-safe form of it.
pub fn timestamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{year:04}{month:02}{day:02}-{h:02}{mi:02}{s:02}"),
    )
}
