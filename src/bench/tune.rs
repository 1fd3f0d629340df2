//! `ringraft tune CONFIG --sweep KEY=V1,V2,...`: runs a bench config at every point of a grid of
//! settings (one axis per `--sweep`), prints a table, names the best point under a p99 bound,
//! and writes `tune.json`, `tune.md` and `tune.svg`.
//!
//! A sweep key is a `[node]` setting (`batch_entries_max`, `election_ms`, ...; any name of
//! [`crate::settings::SETTINGS`]) or a dotted path into the config (`network.jitter_ms`,
//! `workload.value_bytes`). Values are TOML literals (`100`, `0.5`, `"normal"`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::config::BenchConfig;
use super::drill::ClusterObservation;
use super::report::{timestamp, Machine};
use super::svg::{scatter_chart, Dot};
use crate::settings::SETTINGS;

/// Most points one tune run may have (each is a full cluster run).
pub const GRID_POINTS_MAX: usize = 256;

/// What `ringraft tune` was asked to do.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The bench config to start from.
    pub config: PathBuf,
    /// Axes of the grid: key and its values (as written on the command line).
    pub sweeps: Vec<(String, Vec<String>)>,
    /// The best point is the fastest whose p99 is at most this.
    pub p99_max_ms: Option<f64>,
    /// Where `results/<config>/tune-<timestamp>/` goes.
    pub results_dir: PathBuf,
    /// Override the measured duration of each point.
    pub duration: Option<Duration>,
    /// Override the warm-up of each point.
    pub warmup: Option<Duration>,
    /// How progress is shown while each point runs.
    pub progress: crate::loadgen::progress::Mode,
    /// Run every point on the hosts of this inventory over SSH (`bench --hosts`).
    pub hosts: Option<PathBuf>,
}

/// One measured point of the grid.
#[derive(Clone, Debug, Serialize)]
pub struct TunePoint {
    /// The swept settings of this point, in sweep order.
    pub settings: Vec<(String, String)>,
    /// Durable writes per second.
    pub writes_per_s: f64,
    /// Write latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Failed operations.
    pub errors: u64,
    /// Elections during the run (spurious, when nothing was injected).
    pub elections: u64,
    /// Election timeouts that fired (pre-vote campaigns included).
    pub campaigns: u64,
    /// Whether p99 is within the bound (true when no bound was given).
    pub within_bound: bool,
    /// What the harness saw of the cluster.
    pub cluster: ClusterObservation,
    /// The machine during the measured window (CPU and data disk).
    pub usage: Option<super::usage::MachineUsage>,
    /// CPU per thread of the nodes during the window.
    pub threads: Option<super::threads::ThreadUsage>,
    /// What the nodes measured themselves during the window, from `/metrics`.
    pub node_view: Option<super::scrape::NodeView>,
}

impl TunePoint {
    /// CPU busy, iowait and data disk busy shares, and machine CPU microseconds per write, for
    /// the table ("-" when not sampled): whether a point ran out of CPU or waited on the disk,
    /// and what a write costs the machine.
    fn usage_cells(&self) -> [String; 4] {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let cpu = self.usage.as_ref().and_then(|u| u.cpu.as_ref());
        let disk = self.usage.as_ref().and_then(|u| u.disk.as_ref());
        let per_write = self
            .usage
            .as_ref()
            .and_then(|u| u.cpu_us_per_op(self.writes_per_s));
        [
            pct(cpu.map(|c| c.busy_pct)),
            pct(cpu.map(|c| c.iowait_pct)),
            pct(disk.map(|d| d.busy_pct)),
            per_write.map_or("-".to_string(), |v| format!("{v:.1}")),
        ]
    }

    /// The busiest node thread's CPU per write, microseconds ("-" when not sampled).
    fn busiest_thread_cell(&self) -> String {
        self.threads
            .as_ref()
            .and_then(|t| t.busiest())
            .and_then(|t| t.us_per_write)
            .map_or("-".to_string(), |us| format!("{us:.2}"))
    }

    /// The load generator's CPU per write, microseconds ("-" when not sampled).
    fn load_cell(&self) -> String {
        self.threads
            .as_ref()
            .and_then(|t| t.load_total())
            .and_then(|(_, us)| us)
            .map_or("-".to_string(), |us| format!("{us:.2}"))
    }
}

/// The result of a tune run.
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    /// The config file's name.
    pub config: String,
    /// The config as read (before sweeping).
    pub base: BenchConfig,
    /// When the run started.
    pub started_at: String,
    /// Where.
    pub machine: Machine,
    /// The grid's axes.
    pub sweeps: Vec<(String, Vec<String>)>,
    /// The bound on p99, if any.
    pub p99_max_ms: Option<f64>,
    /// Every point, in grid order.
    pub points: Vec<TunePoint>,
    /// Index of the best point: the highest writes/s with p99 within the bound and no errors.
    pub best: Option<usize>,
}

/// Parses `KEY=V1,V2,...`.
pub fn parse_sweep(text: &str) -> Result<(String, Vec<String>), String> {
    let (key, values) = text
        .split_once('=')
        .ok_or_else(|| format!("--sweep {text}: expected KEY=V1,V2,..."))?;
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if key.trim().is_empty() || values.is_empty() {
        return Err(format!("--sweep {text}: expected KEY=V1,V2,..."));
    }
    Ok((key.trim().to_string(), values))
}

/// Where a sweep key lives in the config file.
fn key_path(key: &str) -> Result<Vec<String>, String> {
    if key.contains('.') {
        return Ok(key.split('.').map(str::to_string).collect());
    }
    if crate::settings::info(key).is_some() {
        return Ok(vec!["node".into(), key.into()]);
    }
    Err(format!(
        "unknown sweep key `{key}`: use a [node] setting ({}) or a dotted path such as network.jitter_ms or workload.value_bytes",
        SETTINGS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn literal(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set(root: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    let mut table = root
        .as_table_mut()
        .ok_or("the config is not a TOML table")?;
    for part in &path[..path.len() - 1] {
        table = table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` in {} is not a table", path.join(".")))?;
    }
    table.insert(path[path.len() - 1].clone(), value);
    Ok(())
}

/// Every point of the grid, each a list of (key, value).
fn grid(sweeps: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut points = vec![Vec::new()];
    for (key, values) in sweeps {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
}

/// The config of one grid point, checked.
pub fn point_config(
    text: &str,
    point: &[(String, String)],
    options: &TuneOptions,
) -> Result<BenchConfig, String> {
    let mut root: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    for (key, value) in point {
        set(&mut root, &key_path(key)?, literal(value))?;
    }
    let mut config: BenchConfig = root.try_into().map_err(|e: toml::de::Error| {
        let settings: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("with {}: {e}", settings.join(" "))
    })?;
    config.override_timing(options.duration, options.warmup);
    config.targets = vec!["ringraft".into()];
    config.validate()?;
    Ok(config)
}

/// Runs the grid; returns the report directory.
pub fn run(options: &TuneOptions) -> Result<PathBuf, String> {
    let path = &options.config;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let base = BenchConfig::from_file(path)?;
    if options.sweeps.is_empty() {
        return Err("give at least one --sweep KEY=V1,V2,...".into());
    }
    let points = grid(&options.sweeps);
    if points.len() > GRID_POINTS_MAX {
        return Err(format!(
            "{} grid points; at most {GRID_POINTS_MAX}",
            points.len()
        ));
    }
    // Check every point before running any, so a typo fails in a second, not an hour in.
    let configs: Vec<BenchConfig> = points
        .iter()
        .map(|p| point_config(&text, p, options))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (started_at, stamp) = timestamp();
    let out_dir = options
        .results_dir
        .join(&base.name)
        .join(format!("tune-{stamp}"));
    let data_root = options.results_dir.join(".data").join(&base.name);
    std::fs::create_dir_all(&data_root)
        .map_err(|e| format!("cannot create {}: {e}", data_root.display()))?;
    let machine = Machine::detect(&data_root);
    let remote = match &options.hosts {
        Some(inventory) => Some(super::remote::prepare_for(&base, inventory, &stamp)?),
        None => None,
    };
    let mut launched = super::remote::Launched::default();
    let mut measured = Vec::new();
    for (i, (point, config)) in points.iter().zip(&configs).enumerate() {
        let label = describe(point);
        eprintln!(
            "tune {}: point {}/{}: {label}",
            base.name,
            i + 1,
            points.len()
        );
        for w in super::timing_warnings(config) {
            eprintln!("  WARNING: {w}");
        }
        let super::TargetRun {
            report,
            cluster,
            usage,
            threads,
            node_view,
        } = match &remote {
            Some(hosts) => super::remote::tune_point(config, hosts, &mut launched)?,
            None => super::run_ringraft(config, &data_root.join("ringraft"), options.progress)?
                .into_iter()
                .next()
                .ok_or("the config produced no workload")?,
        };
        let cluster = cluster.expect("a ringraft run observes its cluster");
        let l = &report.write_latency;
        let p99_ms = l.p99_us as f64 / 1000.0;
        let tp = TunePoint {
            settings: point.clone(),
            writes_per_s: report.writes_per_s,
            p50_ms: l.p50_us as f64 / 1000.0,
            p99_ms,
            p999_ms: l.p999_us as f64 / 1000.0,
            errors: report.errors.values().sum(),
            elections: cluster.elections,
            campaigns: cluster.campaigns,
            within_bound: options.p99_max_ms.is_none_or(|b| p99_ms <= b),
            cluster,
            usage,
            threads,
            node_view,
        };
        eprintln!(
            "  {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, {} election(s), {} campaign(s), {} error(s)",
            tp.writes_per_s, tp.p50_ms, tp.p99_ms, tp.elections, tp.campaigns, tp.errors
        );
        measured.push(tp);
    }
    let _ = std::fs::remove_dir_all(&data_root);
    let best = measured
        .iter()
        .enumerate()
        .filter(|(_, p)| p.within_bound && p.errors == 0 && p.writes_per_s > 0.0)
        .max_by(|a, b| a.1.writes_per_s.total_cmp(&b.1.writes_per_s))
        .map(|(i, _)| i);
    let report = TuneReport {
        config: path.display().to_string(),
        base,
        started_at,
        machine,
        sweeps: options.sweeps.clone(),
        p99_max_ms: options.p99_max_ms,
        points: measured,
        best,
    };
    let table = report.table();
    print!("{table}");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let put = |name: &str, text: &str| {
        std::fs::write(out_dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    put(
        "tune.json",
        &serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )?;
    put("tune.md", &report.markdown(&table))?;
    put("tune.svg", &report.chart())?;
    eprintln!("tune report: {}", out_dir.join("tune.md").display());
    Ok(out_dir)
}

fn describe(point: &[(String, String)]) -> String {
    let parts: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

impl TuneReport {
    /// The table printed on stdout and embedded in `tune.md`.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let keys: Vec<&str> = self.sweeps.iter().map(|(k, _)| k.as_str()).collect();
        let widths: Vec<usize> = keys.iter().map(|k| k.len().max(8)).collect();
        for (k, w) in keys.iter().zip(&widths) {
            let _ = write!(t, "{k:>w$}  ");
        }
        let _ = writeln!(
            t,
            "{:>10}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>5}  {:>8}  {:>6}  {:>12}  {:>12}  {:>13}  best",
            "writes/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "elections",
            "campaigns",
            "errors",
            "cpu %",
            "iowait %",
            "disk %",
            "cpu us/write",
            "top us/write",
            "load us/write"
        );
        for (i, p) in self.points.iter().enumerate() {
            for ((_, v), w) in p.settings.iter().zip(&widths) {
                let _ = write!(t, "{v:>w$}  ");
            }
            let mark = if self.best == Some(i) {
                "<- best"
            } else if !p.within_bound {
                "(p99 over bound)"
            } else {
                ""
            };
            let [cpu, iowait, disk, per_write] = p.usage_cells();
            let top = p.busiest_thread_cell();
            let load = p.load_cell();
            let _ = writeln!(
                t,
                "{:>10.0}  {:>9.2}  {:>9.2}  {:>9.2}  {:>9}  {:>9}  {:>6}  {cpu:>5}  {iowait:>8}  {disk:>6}  {per_write:>12}  {top:>12}  {load:>13}  {mark}",
                p.writes_per_s, p.p50_ms, p.p99_ms, p.p999_ms, p.elections, p.campaigns, p.errors
            );
        }
        match (self.best, self.p99_max_ms) {
            (Some(b), Some(bound)) => {
                let _ = writeln!(
                    t,
                    "best under p99 <= {bound} ms: {} ({:.0} writes/s, p99 {:.2} ms)",
                    describe(&self.points[b].settings),
                    self.points[b].writes_per_s,
                    self.points[b].p99_ms
                );
            }
            (Some(b), None) => {
                let _ = writeln!(
                    t,
                    "fastest point (no --p99-max-ms bound given): {} ({:.0} writes/s)",
                    describe(&self.points[b].settings),
                    self.points[b].writes_per_s
                );
            }
            (None, bound) => {
                let _ = writeln!(
                    t,
                    "no point qualifies{}",
                    bound.map_or(String::new(), |b| format!(" (p99 <= {b} ms, no errors)"))
                );
            }
        }
        t
    }

    fn markdown(&self, table: &str) -> String {
        let mut md = format!(
            "# tune {} ({})\n\n{}\n\n- {}\n",
            self.base.name,
            self.started_at,
            self.base.description,
            self.base.workload.describe()
        );
        if let Some(n) = &self.base.network {
            let _ = writeln!(md, "- **{}**", n.describe());
        }
        let m = &self.machine;
        let _ = writeln!(
            md,
            "- machine: {} ({} cores), kernel {}, data on {}\n- disk: {}\n- command: `ringraft tune {}{}{}`\n\n```text\n{table}```\n\nAll numbers: `tune.json`; chart: `tune.svg`.",
            m.cpu_model,
            m.cores,
            m.kernel,
            m.filesystem,
            m.describe_disk(),
            self.config,
            self.sweeps
                .iter()
                .map(|(k, v)| format!(" --sweep {k}={}", v.join(",")))
                .collect::<String>(),
            self.p99_max_ms
                .map_or(String::new(), |b| format!(" --p99-max-ms {b}"))
        );
        let _ = writeln!(
            md,
            "\n`top us/write`: CPU per write of the busiest node thread; 1 core divided by it is the most that thread allows on any number of cores. `load us/write`: the load generator's, which shares the machine with the nodes.\n\n## CPU per thread of the nodes, per point\n"
        );
        for p in &self.points {
            if let Some(threads) = &p.threads {
                let _ = writeln!(
                    md,
                    "### {}\n\n{}\n\n{}",
                    describe(&p.settings),
                    threads.describe(),
                    threads.markdown()
                );
            }
        }
        md
    }

    fn chart(&self) -> String {
        let dots: Vec<Dot> = self
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| Dot {
                label: format!("{} ({} el.)", describe(&p.settings), p.elections),
                x: p.p99_ms,
                y: p.writes_per_s,
                highlight: self.best == Some(i),
            })
            .collect();
        let bound = self.p99_max_ms.map(|b| (b, "p99 bound"));
        scatter_chart(
            &format!("tune {}: throughput vs p99 per point", self.base.name),
            "p99 write latency (ms)",
            "durable writes/s",
            &dots,
            bound.as_ref().map(|(b, l)| (*b, *l)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_the_cartesian_product_in_sweep_order() {
        let g = grid(&[
            ("a".into(), vec!["1".into(), "2".into()]),
            ("b".into(), vec!["x".into(), "y".into(), "z".into()]),
        ]);
        assert_eq!(g.len(), 6);
        assert_eq!(
            g[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            g[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
    }

    #[test]
    fn sweep_keys_resolve_or_are_refused_by_name() {
        assert_eq!(
            key_path("election_ms").unwrap(),
            vec!["node", "election_ms"]
        );
        assert_eq!(
            key_path("network.jitter_ms").unwrap(),
            vec!["network", "jitter_ms"]
        );
        assert!(key_path("elction_ms")
            .unwrap_err()
            .contains("unknown sweep key `elction_ms`"));
        assert!(parse_sweep("election_ms").is_err());
        assert_eq!(
            parse_sweep("election_ms=100, 1400").unwrap(),
            ("election_ms".into(), vec!["100".into(), "1400".into()])
        );
    }

    #[test]
    fn a_point_overrides_the_config_and_a_bad_value_names_itself() {
        let text = std::fs::read_to_string("bench-configs/cross-region-3.toml").unwrap();
        let options = TuneOptions {
            config: "x".into(),
            sweeps: vec![],
            p99_max_ms: None,
            results_dir: "r".into(),
            duration: None,
            warmup: None,
            progress: crate::loadgen::progress::Mode::Quiet,
            hosts: None,
        };
        let c = point_config(
            &text,
            &[
                ("election_ms".into(), "2000".into()),
                ("network.jitter_ms".into(), "20".into()),
            ],
            &options,
        )
        .unwrap();
        assert_eq!(c.node.election_ms, Some(2000));
        assert_eq!(c.network.unwrap().jitter_ms, 20.0);
        let err = point_config(
            &text,
            &[("election_ms".into(), "\"soon\"".into())],
            &options,
        )
        .unwrap_err();
        assert!(err.contains("election_ms"), "{err}");
        // A point the nodes would refuse at start is refused before any process starts.
        let err =
            point_config(&text, &[("election_ms".into(), "100".into())], &options).unwrap_err();
        assert!(err.contains("election_timeout_ticks"), "{err}");
    }
}
