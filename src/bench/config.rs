//! Bench config files (`bench-configs/*.toml`): cluster shape, node settings, workload, targets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::loadgen::{LoopMode, Workload};
use crate::settings::{Settings, SettingsPatch};

/// A fault injected under load, to measure failover.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// When, in milliseconds after the measured window starts.
    pub at_ms: u64,
    /// What happens to the leader.
    pub action: FailoverAction,
    /// Isolate: heal after this long (default: stays cut off for the run). Kill and stop:
    /// restart after this long (default: stays down).
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// What a failover drill does to the leader.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailoverAction {
    /// SIGKILL the leader's process (a crash).
    Kill,
    /// Cut the leader off from its peers (an emulated partition); clients can still reach it.
    Isolate,
    /// SIGTERM the leader: a graceful stop, which hands leadership to its most caught-up
    /// follower before exiting (a rolling restart's step).
    Stop,
}

/// One bench config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Short name; results go to `results/<name>/<timestamp>/`.
    pub name: String,
    /// What this config measures and why, for the report.
    #[serde(default)]
    pub description: String,
    /// Cluster size (ringraft and etcd alike).
    pub nodes: usize,
    /// Targets to measure in this run: "ringraft", "etcd".
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// ringraft node settings (`[node]`: any setting of the settings table, by its name);
    /// unset ones keep the node's defaults.
    #[serde(default)]
    pub node: SettingsPatch,
    /// The workload.
    pub workload: Workload,
    /// Open-loop rate sweep (requests/s), each judged by the `etcdctl check perf` rules; when
    /// set, `workload.mode` must be open loop and its rate is replaced by each of these.
    #[serde(default)]
    pub open_loop_rates: Vec<u64>,
    /// Load generator threads.
    #[serde(default = "one")]
    pub load_threads: usize,
    /// Cores of each node, one entry per node (`["2-3", "4-5", "6-7"]`); overrides `[node]`
    /// `cpus` node by node, so that nodes sharing a machine can be given disjoint cores.
    #[serde(default)]
    pub node_cpus: Vec<crate::runtime::Cpus>,
    /// Cores the load generator's threads are pinned on, round robin (`"0-1"`); unset, they run
    /// wherever the kernel puts them.
    #[serde(default)]
    pub load_cpus: Option<crate::runtime::Cpus>,
    /// First port used; nodes take consecutive ports from here.
    #[serde(default = "default_base_port")]
    pub base_port: u16,
    /// Optional bounds the run is judged against (reported as pass/fail, never hidden).
    #[serde(default)]
    pub expect: Expectations,
    /// An emulated wide-area network between the ringraft nodes (see `netem::Topology`).
    #[serde(default)]
    pub network: Option<crate::netem::Topology>,
    /// A failover drill during the measured window (ringraft only).
    #[serde(default)]
    pub failover: Option<Failover>,
    /// Which etcd members the load generator's connections talk to (etcd target only).
    #[serde(default)]
    pub etcd_route: EtcdRoute,
}

/// How the etcd target spreads its connections over the members.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EtcdRoute {
    /// Connection `c` talks to member `c % members`, as etcd's own `benchmark` tool does: about
    /// two thirds of writes reach a follower, which forwards them to the leader.
    #[default]
    Spread,
    /// Every connection talks to the member that leads when the measurement starts, as
    /// ringraft's client does (a leader change later is absorbed by etcd's forwarding).
    Leader,
}

/// Targets a run can be held to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Median write latency at most this.
    pub p50_ms_max: Option<f64>,
    /// 99th percentile write latency at most this.
    pub p99_ms_max: Option<f64>,
    /// Writes per second at least this.
    pub writes_per_s_min: Option<f64>,
    /// In a comparison with etcd, ringraft's writes per second over etcd's at least this
    /// (default 1.0: ringraft at least as fast).
    pub etcd_throughput_ratio_min: Option<f64>,
}

/// The throughput ratio a comparison must reach when the config sets none.
pub const ETCD_THROUGHPUT_RATIO_MIN_DEFAULT: f64 = 1.0;

fn default_targets() -> Vec<String> {
    vec!["ringraft".into()]
}
fn one() -> usize {
    1
}
fn default_base_port() -> u16 {
    21000
}

impl BenchConfig {
    /// The load generator's threads as this config places them.
    pub fn load_placement(&self) -> crate::loadgen::LoadThreads {
        crate::loadgen::LoadThreads {
            count: self.load_threads,
            // `validate` refused a count.
            cores: self
                .load_cpus
                .as_ref()
                .and_then(|c| c.named_cores("load_cpus").ok())
                .map_or(Vec::new(), <[usize]>::to_vec),
        }
    }

    /// Reads and checks a config file; errors name the file and the problem.
    pub fn from_file(path: &Path) -> Result<BenchConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: BenchConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=crate::limits::CLUSTER_NODES_MAX).contains(&self.nodes) {
            return Err(format!(
                "nodes must be in 1..={}",
                crate::limits::CLUSTER_NODES_MAX
            ));
        }
        for target in &self.targets {
            if target != "ringraft" && target != "etcd" {
                return Err(format!("unknown target `{target}` (known: ringraft, etcd)"));
            }
        }
        if !self.open_loop_rates.is_empty() && !matches!(self.workload.mode, LoopMode::Open { .. })
        {
            return Err("open_loop_rates needs workload.mode.kind = \"open\"".into());
        }
        if self.load_threads == 0 || self.load_threads > 64 {
            return Err("load_threads must be in 1..=64".into());
        }
        if !self.node_cpus.is_empty() && self.node_cpus.len() != self.nodes {
            return Err(format!(
                "node_cpus has {} entries for {} nodes: give one per node, or leave it out and \
                 set `cpus` under [node] for all of them",
                self.node_cpus.len(),
                self.nodes
            ));
        }
        if let Some(cpus) = &self.load_cpus {
            cpus.named_cores("load_cpus")?;
        }
        if let Some(ratio) = self.expect.etcd_throughput_ratio_min {
            if !(ratio.is_finite() && ratio > 0.0) {
                return Err(format!(
                    "expect.etcd_throughput_ratio_min must be a positive number, got {ratio}"
                ));
            }
        }
        if let Some(network) = &self.network {
            network.validate(self.nodes)?;
        }
        if let Some(f) = &self.failover {
            if f.at_ms >= self.workload.duration.as_millis() as u64 {
                return Err(format!(
                    "failover.at_ms = {} is not inside the measured window of {} ms",
                    f.at_ms,
                    self.workload.duration.as_millis()
                ));
            }
            if self.nodes < 3 {
                return Err("failover needs at least 3 nodes (a majority must survive)".into());
            }
        }
        self.node_settings_valid()?;
        self.workload
            .validate()
            .map_err(|e| format!("workload: {e}"))
    }

    /// Checks `[node]` as a node would at start, so that a bad combination (an election
    /// timeout not above the heartbeat) is refused before any process starts.
    fn node_settings_valid(&self) -> Result<(), String> {
        let node = |e: String| format!("[node]: {e}");
        let mut settings = Settings::default();
        self.node.apply(&mut settings);
        settings.validate().map_err(|e| node(e.to_string()))?;
        let timing = super::node_timing(self);
        crate::core::Config::from_settings(1, vec![1], &timing.settings)
            .validate()
            .map_err(|e| node(e.to_string()))
    }

    /// Replaces the measured duration and the warm-up where the command line gives them.
    pub fn override_timing(
        &mut self,
        duration: Option<std::time::Duration>,
        warmup: Option<std::time::Duration>,
    ) {
        if let Some(d) = duration {
            self.workload.duration = d;
        }
        if let Some(w) = warmup {
            self.workload.warmup = w;
        }
    }

    /// The workloads of this run: one, or one per open-loop rate.
    /// The workload routes by the nodes' `groups` (`[node] groups`), so that the load
    /// generator sends each key to its group's leader.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut base = self.workload.clone();
        base.groups = self.node.groups.unwrap_or(1);
        if self.open_loop_rates.is_empty() {
            return vec![base];
        }
        let base = &base;
        self.open_loop_rates
            .iter()
            .map(|&rate| {
                let mut w = base.clone();
                if let LoopMode::Open { connections, .. } = w.mode {
                    w.mode = LoopMode::Open {
                        rate_per_s: rate,
                        connections,
                    };
                }
                w
            })
            .collect()
    }
}
