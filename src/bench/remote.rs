//! A bench across real hosts (`ringraft bench CONFIG --hosts HOSTS.toml`): the controller
//! (this process) drives every host over SSH, as Jepsen's control node does. In order, and
//! before anything is started: every host is reached and its working directory prepared, this
//! binary is copied where it is missing or different (by SHA-256), and each host's facts are read.
//! Then, per target: the nodes (or etcd members) start on the node hosts, listening on their
//! bind address and advertising their inventory address; load processes on the load hosts start
//! at one common wall-clock time, each with its own key-stream seed and random session ids, and
//! write interval logs that are added up here. Everything started is stopped by pid, on success,
//! on failure and on Ctrl-C ([`Launched`]'s drop); etcd and ringraft never run at the same time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::BenchConfig;
use super::hostinfo::{HostProbe, HostWindow};
use super::hosts::{Host, Inventory, Role};
use super::ssh::{interrupted, quote, Ssh};
use crate::core::Role as RaftRole;
use crate::loadgen::hlog::{self, WindowHistograms};
use crate::loadgen::{LoadReport, LoopMode, Recorder, SecondBucket, Workload};

/// How long the nodes of a remote cluster get to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How far ahead of now the load processes' common start is set, per load process (each is
/// started by its own ssh command).
const START_LEAD_PER_PROCESS: Duration = Duration::from_millis(500);
/// Least lead of the common start.
const START_LEAD_MIN: Duration = Duration::from_secs(2);
/// How long after its window a load process may take to finish and write its results.
const LOAD_GRACE: Duration = Duration::from_secs(60);
/// How often the controller looks at remote processes while it waits.
const POLL: Duration = Duration::from_millis(200);
/// How often the load processes are checked over ssh while their window lasts (a process that
/// died early is found by then; a check costs each end a key exchange).
const ALIVE_CHECK_IN_WINDOW: Duration = Duration::from_secs(5);
/// Bytes of a remote log shown in an error or kept in the report directory.
const LOG_TAIL_BYTES: usize = 256 << 10;

/// One remote process this run started.
struct RemoteProcess {
    ssh: Ssh,
    name: String,
    pid: u32,
}

/// Everything a run started on its hosts; dropping it stops whatever still runs.
#[derive(Default)]
pub struct Launched {
    processes: Vec<RemoteProcess>,
    /// The slowest `start` so far: how long one ssh launch takes on these hosts now, from which
    /// the load processes' common start is set far enough ahead.
    slowest_start: Duration,
}

impl Launched {
    /// Starts `command` (run from `workdir`, its output to `logs/NAME.log` there, or stdout to
    /// `stdout_path`) in its own session, and records its pid.
    fn start(
        &mut self,
        ssh: &Ssh,
        workdir: &str,
        name: &str,
        command: &str,
        stdout_path: Option<&str>,
    ) -> Result<u32, String> {
        let log = format!("logs/{name}.log");
        let stdout = stdout_path.unwrap_or(&log);
        let script = format!(
            "cd {wd} && mkdir -p logs && {{ setsid {command} > {out} 2> {log} < /dev/null & echo $!; }}",
            wd = quote(workdir),
            out = quote(stdout),
            log = quote(&log),
        );
        let began = Instant::now();
        let out = ssh.run(&format!("start {name}"), &script)?;
        self.slowest_start = self.slowest_start.max(began.elapsed());
        let pid: u32 = out.trim().parse().map_err(|_| {
            format!(
                "host `{}`, step `start {name}`: no pid in {out:?}",
                ssh.host
            )
        })?;
        self.processes.push(RemoteProcess {
            ssh: ssh.clone(),
            name: name.to_string(),
            pid,
        });
        Ok(pid)
    }

    /// The names of the started processes (matching `prefix`) that still run.
    fn alive(&self, prefix: &str) -> Result<Vec<String>, String> {
        let mut alive = Vec::new();
        for (host, group) in self.by_host(prefix) {
            let pids: Vec<String> = group.iter().map(|p| p.pid.to_string()).collect();
            let script = format!(
                "for p in {}; do kill -0 $p 2>/dev/null && echo $p; done; true",
                pids.join(" ")
            );
            let out = group[0].ssh.run("check processes", &script)?;
            let running: Vec<&str> = out.split_whitespace().collect();
            alive.extend(
                group
                    .iter()
                    .filter(|p| running.contains(&p.pid.to_string().as_str()))
                    .map(|p| format!("{} on {host}", p.name)),
            );
        }
        Ok(alive)
    }

    fn by_host(&self, prefix: &str) -> BTreeMap<String, Vec<&RemoteProcess>> {
        let mut groups: BTreeMap<String, Vec<&RemoteProcess>> = BTreeMap::new();
        for p in self.processes.iter().filter(|p| p.name.starts_with(prefix)) {
            groups.entry(p.ssh.host.clone()).or_default().push(p);
        }
        groups
    }

    /// Stops the processes whose names start with `prefix`: SIGTERM, up to 10 s, then SIGKILL.
    /// Every host is tried even when one fails; the first failure is returned.
    pub fn stop(&mut self, prefix: &str) -> Result<(), String> {
        let mut first_error = None;
        for (_, group) in self.by_host(prefix) {
            let pids: Vec<String> = group.iter().map(|p| p.pid.to_string()).collect();
            let pids = pids.join(" ");
            let script = format!(
                "for p in {pids}; do kill -TERM $p 2>/dev/null; done; \
                 i=0; while [ $i -lt 100 ]; do left=; \
                 for p in {pids}; do kill -0 $p 2>/dev/null && left=1; done; \
                 [ -z \"$left\" ] && exit 0; sleep 0.1; i=$((i+1)); done; \
                 for p in {pids}; do kill -KILL $p 2>/dev/null; done; exit 0"
            );
            if let Err(e) = group[0].ssh.run("stop processes", &script) {
                eprintln!("ringraft bench: could not stop {pids}: {e}");
                first_error.get_or_insert(e);
            }
        }
        self.processes.retain(|p| !p.name.starts_with(prefix));
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.processes.is_empty() {
            eprintln!(
                "ringraft bench: stopping {} remote process(es) this run started",
                self.processes.len()
            );
            let _ = self.stop("");
        }
    }
}

/// One load process's result, as `ringraft load --json` wrote it.
#[derive(Debug, Deserialize)]
struct LoadProcessResult {
    errors: BTreeMap<String, u64>,
    per_second: Vec<SecondBucket>,
    process: Option<crate::loadgen::process::LoadProcess>,
}

/// One load process in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessSummary {
    /// Which target it drove.
    pub target: String,
    /// Its host (inventory name).
    pub host: String,
    /// Its name in the run (`load-HOST-K`).
    pub name: String,
    /// Its pid on the host.
    pub pid: u32,
    /// Its key-stream seed.
    pub seed: u64,
    /// Sessions it used.
    pub sessions: usize,
    /// How long after the planned start its measured window began, milliseconds.
    #[serde(default)]
    pub late_ms: u64,
    /// Writes it completed in the window.
    pub writes: u64,
    /// Reads it completed.
    pub reads: u64,
    /// Failures.
    pub errors: u64,
    /// Its own p50 / p99 write latency, microseconds (for seeing a slow process, not to average).
    pub p50_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
}

/// One host in the report.
#[derive(Clone, Debug, Serialize)]
pub struct HostSection {
    /// Inventory name.
    pub name: String,
    /// Address others use.
    pub address: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Its facts.
    pub facts: super::hostinfo::HostFacts,
    /// Per measured window: target and what the host did.
    pub windows: Vec<(String, HostWindow)>,
    /// What its node's log says about peers connecting ("peer 2 connected from 10.0.0.12:41234").
    pub peer_connections: Vec<String>,
}

/// The multi-host part of a report.
#[derive(Clone, Debug, Serialize)]
pub struct HostsReport {
    /// The inventory file.
    pub inventory: String,
    /// Every host.
    pub hosts: Vec<HostSection>,
    /// Every load process.
    pub processes: Vec<ProcessSummary>,
}

impl HostsReport {
    /// The report's "Hosts" and "Load processes" sections.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "\n## Hosts ({})\n", self.inventory);
        for h in &self.hosts {
            let f = &h.facts;
            let _ = writeln!(
                md,
                "### {} ({}; {})\n",
                h.name,
                h.address,
                h.roles.join(", ")
            );
            let _ = writeln!(
                md,
                "- {} ({}), {} cores, {:.1} GiB, kernel {}, hostname {}",
                f.cpu_model, f.arch, f.cores, f.memory_gib, f.kernel, f.hostname
            );
            if let (Some(dir), Some(disk)) = (&f.data_dir, &f.disk) {
                let fs = f.filesystem.as_deref().unwrap_or("?");
                let _ = writeln!(md, "- data dir {dir} on {fs}: {disk}");
            }
            for (target, w) in &h.windows {
                let _ = writeln!(
                    md,
                    "- {target} window: {}; network in {:.1} MiB / out {:.1} MiB (loopback {:.1} / {:.1} MiB)",
                    w.machine,
                    w.net.rx_bytes as f64 / (1 << 20) as f64,
                    w.net.tx_bytes as f64 / (1 << 20) as f64,
                    w.net.lo_rx_bytes as f64 / (1 << 20) as f64,
                    w.net.lo_tx_bytes as f64 / (1 << 20) as f64,
                );
                if w.late_ms > 0 {
                    let _ = writeln!(
                        md,
                        "  - sampled from {} ms after the planned start (the probe started late): \
                         this line covers a later interval than the load's window",
                        w.late_ms
                    );
                }
            }
            for line in &h.peer_connections {
                let _ = writeln!(md, "- {line}");
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "## Load processes (histograms added exactly into the totals above)\n"
        );
        let _ = writeln!(
            md,
            "| target | host | process | pid | seed | sessions | writes | reads | errors | p50 ms | p99 ms |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for p in &self.processes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                p.target,
                p.host,
                p.name,
                p.pid,
                p.seed,
                p.sessions,
                p.writes,
                p.reads,
                p.errors,
                p.p50_us as f64 / 1000.0,
                p.p99_us as f64 / 1000.0
            );
        }
        md
    }
}

/// What a multi-host target run returns.
pub(crate) struct HostsRun {
    pub report: LoadReport,
    /// Leaders and elections seen from the nodes' counters (ringraft only).
    pub cluster: Option<super::drill::ClusterObservation>,
    pub usage_by_host: Vec<(String, HostWindow)>,
    pub processes: Vec<ProcessSummary>,
    pub peer_lines: Vec<(String, Vec<String>)>,
    pub hlogs: Vec<(String, String)>,
    /// CPU per thread of the node processes over the window, from each node host's probe.
    pub threads: Option<super::threads::ThreadUsage>,
    /// The nodes' own metrics over the window, scraped by the controller (ringraft only).
    pub node_view: Option<super::scrape::NodeView>,
}

/// The prepared hosts of a run: reached, binary in place, facts read.
pub struct Hosts {
    /// The inventory.
    pub inventory: Inventory,
    ssh: BTreeMap<String, Ssh>,
    /// Facts by host name.
    pub facts: BTreeMap<String, HostProbe>,
    /// A directory under each workdir for this run's files.
    pub run_dir: String,
}

impl Hosts {
    /// Everything before anything starts: reach every host, prepare its working and data
    /// directories, check its architecture, copy the binary where needed, read its facts.
    pub fn prepare(inventory: Inventory, stamp: &str) -> Result<Hosts, String> {
        let local = super::cluster::local_binary()?;
        let local_sum = sha256(&local)?;
        let ssh: BTreeMap<String, Ssh> = inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), Ssh::to(h)))
            .collect();
        let run_dir = format!("runs/{stamp}");
        for host in &inventory.hosts {
            let s = &ssh[&host.name];
            let script = format!(
                "mkdir -p {wd}/logs {wd}/{run_dir} && test -w {wd} || {{ echo 'workdir {wd} is not writable' >&2; exit 1; }}; \
                 mkdir -p {data} && test -w {data} || {{ echo 'data dir {data} is not writable' >&2; exit 1; }}; uname -m",
                wd = quote(&host.workdir),
                data = quote(&host.data_dir()),
            );
            let arch = s.run("reach host and prepare workdir", &script)?;
            let arch = arch.trim();
            if arch != std::env::consts::ARCH {
                return Err(format!(
                    "host `{}`, step `check architecture`: the host is {arch}, this ringraft is {}; run the controller from a build for {arch} (cargo build --release --target {arch}-unknown-linux-gnu)",
                    host.name,
                    std::env::consts::ARCH
                ));
            }
        }
        for host in &inventory.hosts {
            let s = &ssh[&host.name];
            let remote = format!("{}/ringraft", host.workdir);
            let remote_sum = s.run(
                "checksum binary",
                &format!(
                    "sha256sum {} 2>/dev/null | cut -d' ' -f1; true",
                    quote(&remote)
                ),
            )?;
            if remote_sum.trim() == local_sum {
                eprintln!("host {}: binary up to date", host.name);
                continue;
            }
            eprintln!("host {}: copying the binary", host.name);
            let part = format!("{remote}.part");
            s.run_with_input(
                "copy binary",
                &format!(
                    "cat > {p} && chmod 755 {p} && mv -f {p} {r} && sha256sum {r} | cut -d' ' -f1",
                    p = quote(&part),
                    r = quote(&remote)
                ),
                Some(&local),
            )
            .and_then(|sum| {
                if sum.trim() == local_sum {
                    Ok(())
                } else {
                    Err(format!(
                        "host `{}`, step `copy binary`: the copy's checksum differs",
                        host.name
                    ))
                }
            })?;
        }
        let mut facts = BTreeMap::new();
        for host in &inventory.hosts {
            let s = &ssh[&host.name];
            let disk = if host.has(Role::Node) || host.has(Role::Etcd) {
                format!(" --data-dir {}", quote(&host.data_dir()))
            } else {
                String::new()
            };
            let out = s.run(
                "read host facts",
                &format!("{}/ringraft host-probe{disk}", quote(&host.workdir)),
            )?;
            let probe: HostProbe = serde_json::from_str(&out).map_err(|e| {
                format!(
                    "host `{}`, step `read host facts`: bad answer ({e}): {out}",
                    host.name
                )
            })?;
            facts.insert(host.name.clone(), probe);
        }
        Ok(Hosts {
            inventory,
            ssh,
            facts,
            run_dir,
        })
    }

    fn ssh(&self, host: &Host) -> &Ssh {
        &self.ssh[&host.name]
    }

    fn bin(host: &Host) -> String {
        format!("{}/ringraft", quote(&host.workdir))
    }

    fn tail(&self, host: &Host, path: &str) -> String {
        self.ssh(host)
            .run(
                "read log",
                &format!(
                    "cd {} && tail -c {LOG_TAIL_BYTES} {} 2>/dev/null; true",
                    quote(&host.workdir),
                    quote(path)
                ),
            )
            .unwrap_or_else(|e| format!("(log unavailable: {e})"))
    }
}

fn sha256(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!("sha256sum {} failed", path.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("").to_string())
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// Splits `total` into `parts` shares that differ by at most one.
fn shares(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

/// Each node's settings on the node hosts. Node hosts that are one machine (the same boot id:
/// loopback addresses or containers standing in for hosts) share its cores as a local run's
/// nodes do, each getting its share as executors, unless the config names cores; a node alone
/// on its host gets every core.
pub(crate) fn node_settings_on_hosts(
    config: &BenchConfig,
    hosts: &Hosts,
) -> Vec<crate::settings::SettingsPatch> {
    let nodes = hosts.inventory.with(Role::Node);
    let boot_of = |i: usize| {
        nodes
            .get(i)
            .and_then(|h| hosts.facts.get(&h.name))
            .and_then(|p| p.facts.boot_id.clone())
    };
    let share = |i: usize| {
        let boot = boot_of(i)?;
        let sharing = (0..nodes.len())
            .filter(|&j| boot_of(j).as_ref() == Some(&boot))
            .count();
        let cores = hosts.facts.get(&nodes[i].name)?.facts.cores;
        (sharing > 1).then(|| crate::runtime::Cpus::Count((cores / sharing).max(1)))
    };
    super::node_settings_by_node(config, &share)
}

/// A ringraft target on the node hosts; returns the merged measurement.
pub(crate) fn run_ringraft(
    config: &BenchConfig,
    hosts: &Hosts,
    launched: &mut Launched,
    workload: &Workload,
) -> Result<HostsRun, String> {
    let nodes = hosts.inventory.with(Role::Node);
    let metrics_port = |i: usize| config.base_port + super::cluster::METRICS_PORT_OFFSET + i as u16;
    let mut members = Vec::new();
    let mut client_members = Vec::new();
    let mut metrics_addrs = Vec::new();
    for (i, host) in nodes.iter().enumerate() {
        let (peer_port, client_port) = (
            config.base_port + 2 * i as u16,
            config.base_port + 2 * i as u16 + 1,
        );
        members.push(format!(
            "{}={}:{peer_port}/{}:{client_port}",
            i + 1,
            host.address,
            host.address
        ));
        client_members.push(crate::client::MemberAddr {
            id: Some(i as u64 + 1),
            addr: resolve(&host.address, client_port)?,
        });
        metrics_addrs.push(resolve(&host.address, metrics_port(i))?);
    }
    let members = members.join(",");
    let settings = node_settings_on_hosts(config, hosts);
    let mut node_pids: BTreeMap<String, Vec<(u64, u32)>> = BTreeMap::new();
    for (i, host) in nodes.iter().enumerate() {
        let id = i + 1;
        let data = format!("{}/ringraft/node{id}", host.data_dir());
        let bind = host.bind_host();
        let flags: Vec<String> = settings[i].flags().iter().map(|f| quote(f)).collect();
        let command = format!(
            "sh -c {}",
            quote(&format!(
                "rm -rf {data} && exec {bin} node --id {id} --members {m} --data-dir {data} --peer-listen {peer} --client-listen {client} --metrics-addr {metrics} {flags}",
                data = quote(&data),
                bin = Hosts::bin(host),
                m = quote(&members),
                peer = quote(&bind_addr(bind, config.base_port + 2 * i as u16)),
                client = quote(&bind_addr(bind, config.base_port + 2 * i as u16 + 1)),
                metrics = quote(&bind_addr(bind, metrics_port(i))),
                flags = flags.join(" "),
            ))
        );
        // `setsid` and `exec` keep the pid the launch reports: the node's own.
        let pid = launched.start(
            hosts.ssh(host),
            &host.workdir,
            &format!("node{id}"),
            &command,
            None,
        )?;
        node_pids
            .entry(host.name.clone())
            .or_default()
            .push((id as u64, pid));
    }
    if let Err(e) = wait_for_leader(&client_members, launched) {
        let logs: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "--- node{} on {} ---\n{}",
                    i + 1,
                    h.name,
                    last_lines(&hosts.tail(h, &format!("logs/node{}.log", i + 1)), 10)
                )
            })
            .collect();
        return Err(format!("{e}\n{}", logs.join("\n")));
    }
    let cluster_arg: Vec<String> = client_members.iter().map(|m| m.to_string()).collect();
    let before = all_stats(&client_members);
    let run = run_load(
        config,
        hosts,
        launched,
        workload,
        "ringraft",
        &cluster_arg.join(","),
        &node_pids,
        metrics_addrs,
    );
    let after = all_stats(&client_members);
    let peer_lines = nodes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let log = hosts.tail(h, &format!("logs/node{}.log", i + 1));
            let lines = log
                .lines()
                .filter(|l| l.contains("connected from"))
                .map(|l| l.trim_start_matches("ringraft: ").to_string())
                .collect();
            (h.name.clone(), lines)
        })
        .collect();
    launched.stop("node")?;
    let mut run = run?;
    run.peer_lines = peer_lines;
    run.cluster = Some(observe(&before, &after));
    Ok(run)
}

fn all_stats(members: &[crate::client::MemberAddr]) -> Vec<Option<crate::wire::NodeStats>> {
    members
        .iter()
        .map(|m| super::cluster::stats(m.addr, Duration::from_secs(1)).ok())
        .collect()
}

/// Elections and campaigns over the load, summed over the nodes, and the leader at each end.
fn observe(
    before: &[Option<crate::wire::NodeStats>],
    after: &[Option<crate::wire::NodeStats>],
) -> super::drill::ClusterObservation {
    let leader = |stats: &[Option<crate::wire::NodeStats>]| {
        stats
            .iter()
            .flatten()
            .find(|s| s.role == RaftRole::Leader)
            .map(|s| s.node_id)
    };
    let growth = |of: fn(&crate::wire::NodeStats) -> u64| -> u64 {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| match (b, a) {
                (Some(b), Some(a)) => of(a).saturating_sub(of(b)),
                _ => 0,
            })
            .sum()
    };
    super::drill::ClusterObservation {
        leader_before: leader(before),
        leader_after: leader(after),
        elections: growth(|s| s.elections),
        campaigns: growth(|s| s.campaigns),
        ..Default::default()
    }
}

fn bind_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn wait_for_leader(
    members: &[crate::client::MemberAddr],
    launched: &Launched,
) -> Result<u64, String> {
    let until = Instant::now() + LEADER_WAIT;
    let mut checked = Instant::now();
    while Instant::now() < until {
        if interrupted() {
            return Err("interrupted (Ctrl-C) while waiting for a leader".into());
        }
        let leaders: Vec<u64> = members
            .iter()
            .filter_map(|m| super::cluster::stats(m.addr, Duration::from_millis(500)).ok())
            .filter(|s| s.role == RaftRole::Leader)
            .map(|s| s.node_id)
            .collect();
        if leaders.len() == 1 {
            return Ok(leaders[0]);
        }
        // A node that exited (port in use, bad flag) will not come back: say so early.
        if checked.elapsed() > Duration::from_secs(2) {
            checked = Instant::now();
            let alive = launched.alive("node")?;
            if alive.len() < members.len() {
                return Err(format!(
                    "a node exited while the cluster was starting (still running: {alive:?}); its log follows"
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no leader within {LEADER_WAIT:?}; the nodes' logs follow"
    ))
}

/// Runs the load processes (and a sampler per host) against `cluster` and merges their results.
#[allow(clippy::too_many_arguments)]
fn run_load(
    config: &BenchConfig,
    hosts: &Hosts,
    launched: &mut Launched,
    workload: &Workload,
    target: &str,
    cluster: &str,
    node_pids: &BTreeMap<String, Vec<(u64, u32)>>,
    metrics_addrs: Vec<SocketAddr>,
) -> Result<HostsRun, String> {
    let load_hosts = hosts.inventory.with(Role::Load);
    let slots: Vec<(&Host, usize)> = load_hosts
        .iter()
        .flat_map(|h| (0..h.load_processes).map(move |k| (*h, k)))
        .collect();
    let (connections, rate) = match workload.mode {
        LoopMode::Closed { connections, .. } => (connections, None),
        LoopMode::Open {
            connections,
            rate_per_s,
        } => (connections, Some(rate_per_s)),
    };
    if connections < slots.len() {
        return Err(format!(
            "{} load processes but only {connections} connections in the workload: give each process at least one",
            slots.len()
        ));
    }
    let connection_shares = shares(connections as u64, slots.len());
    let rate_shares = rate.map(|r| shares(r, slots.len()));
    // Every launch below must be done before the common start: twice the slowest launch seen
    // so far (the nodes' own) per launch, at least START_LEAD_PER_PROCESS each.
    let per_launch = START_LEAD_PER_PROCESS.max(2 * launched.slowest_start);
    let lead =
        (per_launch * (slots.len() + hosts.inventory.hosts.len()) as u32).max(START_LEAD_MIN);
    let start_unix_ms = crate::loadgen::process::unix_ms_now() + lead.as_millis() as u64;
    let window_start_unix_ms = start_unix_ms + workload.warmup.as_millis() as u64;
    let scraper = (!metrics_addrs.is_empty()).then(|| {
        let now_ms = crate::loadgen::process::unix_ms_now();
        let start = Instant::now() + Duration::from_millis(window_start_unix_ms - now_ms);
        super::scrape::during(metrics_addrs, start, start + workload.duration)
    });
    let run_dir = &hosts.run_dir;
    for host in &hosts.inventory.hosts {
        let data = if host.has(Role::Node) || host.has(Role::Etcd) {
            host.data_dir()
        } else {
            host.workdir.clone()
        };
        let pids: Vec<String> = node_pids
            .get(&host.name)
            .into_iter()
            .flatten()
            .map(|(id, pid)| format!("{id}={pid}"))
            .collect();
        let command = format!(
            "{bin} host-probe --data-dir {data} --window-start-unix-ms {window_start_unix_ms} --window-ms {}{}",
            workload.duration.as_millis(),
            if pids.is_empty() {
                String::new()
            } else {
                format!(" --node-pids {}", pids.join(","))
            },
            bin = Hosts::bin(host),
            data = quote(&data),
        );
        let out = format!("{run_dir}/probe-{target}-{}.json", host.name);
        launched.start(
            hosts.ssh(host),
            &host.workdir,
            &format!("probe-{target}-{}", host.name),
            &command,
            Some(&out),
        )?;
    }
    let mut names = Vec::new();
    for (i, (host, k)) in slots.iter().enumerate() {
        let name = format!("load-{target}-{}-{k}", host.name);
        let mode = match (&rate_shares, &workload.mode) {
            (Some(r), _) => format!("--rate {}", r[i].max(1)),
            (
                None,
                LoopMode::Closed {
                    inflight_per_connection,
                    ..
                },
            ) => format!("--inflight {inflight_per_connection}"),
            (None, LoopMode::Open { .. }) => unreachable!("open loop has a rate"),
        };
        let seed = workload
            .seed
            .wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let command = format!(
            "{bin} load --target {target} --cluster {cluster} --connections {c} {mode} --value-bytes {vb} --key-bytes {kb} --key-space {ks} --read-ratio {rr} {stale} --warmup-s {w} --duration-s {d} --threads {t}{cpus} --groups {groups} --seed {seed} --start-at-unix-ms {start_unix_ms} --json --hlog {hlog}",
            bin = Hosts::bin(host),
            cluster = quote(cluster),
            c = connection_shares[i],
            vb = workload.value_bytes,
            groups = workload.groups,
            kb = workload.key_bytes,
            ks = workload.key_space,
            rr = workload.read_ratio,
            stale = if workload.linearizable_reads { "" } else { "--stale-reads" },
            w = workload.warmup.as_secs_f64(),
            d = workload.duration.as_secs_f64(),
            t = config.load_threads.max(1),
            cpus = match &config.load_cpus {
                Some(cpus) => format!(" --cpus {}", quote(&cpus.to_string())),
                None => String::new(),
            },
            hlog = quote(&format!("{run_dir}/{name}.hlog")),
        );
        launched.start(
            hosts.ssh(host),
            &host.workdir,
            &name,
            &command,
            Some(&format!("{run_dir}/{name}.json")),
        )?;
        names.push((*host, name));
    }
    let window_end = Instant::now() + lead + workload.warmup + workload.duration;
    let deadline = window_end + LOAD_GRACE;
    let prefix = format!("load-{target}-");
    let mut next_check = Instant::now();
    loop {
        if interrupted() {
            return Err("interrupted (Ctrl-C) during the load".into());
        }
        if Instant::now() >= next_check {
            let alive = launched.alive(&prefix)?;
            if alive.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "load processes still running past their window: {alive:?}"
                ));
            }
            // Each check is a new ssh connection (a key exchange on both ends): before the
            // window ends it would take CPU from the nodes being measured, so check rarely.
            let every = if Instant::now() < window_end {
                ALIVE_CHECK_IN_WINDOW
            } else {
                POLL
            };
            next_check = Instant::now() + every;
        }
        std::thread::sleep(POLL);
    }
    launched.processes.retain(|p| !p.name.starts_with(&prefix));
    let mut merged = WindowHistograms::empty();
    let mut per_second = vec![SecondBucket::default(); workload.duration.as_secs().max(1) as usize];
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut processes = Vec::new();
    let mut hlogs = Vec::new();
    for (host, name) in &names {
        let s = hosts.ssh(host);
        let step = format!("collect {name}");
        let read = |file: &str| {
            s.run(
                &step,
                &format!("cd {} && cat {}", quote(&host.workdir), quote(file)),
            )
        };
        let json = read(&format!("{run_dir}/{name}.json"))?;
        let result: LoadProcessResult = serde_json::from_str(&json).map_err(|e| {
            format!(
                "host `{}`, step `{step}`: the load process left no result ({e}); its log ends:\n{}",
                host.name,
                last_lines(&hosts.tail(host, &format!("logs/{name}.log")), 10)
            )
        })?;
        let text = read(&format!("{run_dir}/{name}.hlog"))?;
        let h = hlog::parse(text.as_bytes())
            .map_err(|e| format!("host `{}`, step `{step}`: {e}", host.name))?;
        merged.add(&h)?;
        for (mine, theirs) in per_second.iter_mut().zip(&result.per_second) {
            mine.writes += theirs.writes;
            mine.reads += theirs.reads;
            mine.errors += theirs.errors;
        }
        for (kind, n) in &result.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
        let process = result
            .process
            .ok_or_else(|| format!("host `{}`, step `{step}`: no process section", host.name))?;
        // A process that started after the common start shortened its warm-up to keep the
        // planned window; one that started after the window began measured another interval,
        // and adding its histograms to the others' would describe a load that never ran.
        let late_ms = process
            .window_start_unix_ms
            .saturating_sub(window_start_unix_ms);
        if late_ms > (workload.duration.as_millis() as u64 / 10).max(100) {
            return Err(format!(
                "host `{}`, step `{step}`: its measured window began {late_ms} ms after the planned \
                 start (launching took longer than the {} ms lead: the controller or the hosts \
                 are too busy); the processes' windows would not overlap, so nothing is reported",
                host.name,
                lead.as_millis()
            ));
        }
        processes.push(ProcessSummary {
            late_ms,
            target: target.to_string(),
            host: host.name.clone(),
            name: name.clone(),
            pid: process.pid,
            seed: process.seed,
            sessions: process.sessions.len(),
            // Successes: the histograms also hold failed requests, at their deadline.
            writes: result.per_second.iter().map(|b| b.writes).sum(),
            reads: result.per_second.iter().map(|b| b.reads).sum(),
            errors: result.errors.values().sum(),
            p50_us: h.writes.value_at_quantile(0.5),
            p99_us: h.writes.value_at_quantile(0.99),
        });
        hlogs.push((name.clone(), text));
    }
    let mut usage_by_host = Vec::new();
    for host in &hosts.inventory.hosts {
        let out = hosts.ssh(host).run(
            "collect host window",
            &format!(
                "cd {} && cat {}",
                quote(&host.workdir),
                quote(&format!("{run_dir}/probe-{target}-{}.json", host.name))
            ),
        )?;
        let probe: HostProbe = serde_json::from_str(&out)
            .map_err(|e| format!("host `{}`, step `collect host window`: {e}", host.name))?;
        if let Some(w) = probe.window {
            usage_by_host.push((host.name.clone(), w));
        }
    }
    launched.stop(&format!("probe-{target}-"))?;
    let mut recorder = Recorder::new(Instant::now(), workload.duration);
    recorder.writes = merged.writes;
    recorder.reads = merged.reads;
    recorder.writes_ok = per_second.iter().map(|b| b.writes).sum();
    recorder.reads_ok = per_second.iter().map(|b| b.reads).sum();
    recorder.per_second = per_second;
    recorder.errors = errors;
    let writes_per_s = recorder.writes_ok as f64 / workload.duration.as_secs_f64().max(1e-3);
    let thread_parts: Vec<_> = usage_by_host
        .iter()
        .filter_map(|(_, w)| w.node_threads.clone())
        .collect();
    let threads = (!thread_parts.is_empty())
        .then(|| super::threads::ThreadSeconds::merge(thread_parts).usage(writes_per_s));
    let node_view = scraper.and_then(|s| s.join().ok());
    Ok(HostsRun {
        threads,
        node_view,
        report: LoadReport::new(target, workload, &recorder),
        usage_by_host,
        processes,
        peer_lines: Vec::new(),
        hlogs,
        cluster: None,
    })
}

/// An etcd target on the etcd hosts (the node hosts unless some have the `etcd` role).
pub(crate) fn run_etcd(
    config: &BenchConfig,
    hosts: &Hosts,
    launched: &mut Launched,
    workload: &Workload,
) -> Result<HostsRun, String> {
    let members = hosts.inventory.etcd_hosts();
    let base = config.base_port + 100;
    let peer_url =
        |i: usize, h: &Host| format!("http://{}", bind_addr(&h.address, base + 2 * i as u16 + 1));
    let client_url =
        |i: usize, h: &Host| format!("http://{}", bind_addr(&h.address, base + 2 * i as u16));
    let initial: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, h)| format!("etcd-{i}={}", peer_url(i, h)))
        .collect();
    let token = format!(
        "ringraft-bench-{}",
        crate::loadgen::process::random_session_id()
    );
    let mut endpoints = Vec::new();
    for (i, host) in members.iter().enumerate() {
        let data = format!("{}/etcd/etcd-{i}", host.data_dir());
        let bind = host.bind_host();
        let etcd = host.etcd_binary.clone().unwrap_or_else(|| "etcd".into());
        let command = format!(
            "sh -c {}",
            quote(&format!(
                "rm -rf {data} && exec {etcd} --name etcd-{i} --data-dir {data} --listen-client-urls http://{lc} --advertise-client-urls {ac} --listen-peer-urls http://{lp} --initial-advertise-peer-urls {ap} --initial-cluster {ic} --initial-cluster-token {token} --initial-cluster-state new",
                data = quote(&data),
                lc = bind_addr(bind, base + 2 * i as u16),
                ac = client_url(i, host),
                lp = bind_addr(bind, base + 2 * i as u16 + 1),
                ap = peer_url(i, host),
                ic = initial.join(","),
            ))
        );
        launched.start(
            hosts.ssh(host),
            &host.workdir,
            &format!("etcd{i}"),
            &command,
            None,
        )?;
        endpoints.push(resolve(&host.address, base + 2 * i as u16)?);
    }
    let until = Instant::now() + LEADER_WAIT;
    loop {
        if interrupted() {
            return Err("interrupted (Ctrl-C) while etcd was starting".into());
        }
        let healthy = endpoints.iter().all(|&a| {
            matches!(super::etcd::http(a, "GET", "/health", ""), Ok((200, body)) if body.contains("true"))
        });
        if healthy {
            break;
        }
        if Instant::now() > until {
            let logs: Vec<String> = members
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    format!(
                        "--- etcd{i} on {} ---\n{}",
                        h.name,
                        last_lines(&hosts.tail(h, &format!("logs/etcd{i}.log")), 5)
                    )
                })
                .collect();
            return Err(format!(
                "etcd not healthy within {LEADER_WAIT:?}\n{}",
                logs.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cluster: Vec<String> = endpoints.iter().map(|a| a.to_string()).collect();
    let run = run_load(
        config,
        hosts,
        launched,
        workload,
        "etcd",
        &cluster.join(","),
        &BTreeMap::new(),
        Vec::new(),
    );
    launched.stop("etcd")?;
    run
}

/// Where a multi-host run's files go locally.
pub(crate) fn save_hlogs(dir: &Path, runs: &[HostsRun]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for run in runs {
        for (name, text) in &run.hlogs {
            let path: PathBuf = dir.join(format!("{name}.hlog"));
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// One point of `ringraft tune --hosts`: the config's first workload against ringraft on the
/// hosts.
pub(crate) fn tune_point(
    config: &BenchConfig,
    hosts: &Hosts,
    launched: &mut Launched,
) -> Result<super::TargetRun, String> {
    let workload = config
        .workloads()
        .into_iter()
        .next()
        .ok_or("the config produced no workload")?;
    let run = run_ringraft(config, hosts, launched, &workload)?;
    Ok(super::TargetRun {
        report: run.report,
        cluster: run.cluster,
        // Per-thread CPU comes from the node hosts' probes, metrics from the nodes' ports.
        usage: None,
        threads: run.threads,
        node_view: run.node_view,
    })
}

/// Reads the inventory, checks it fits `config` (one node host per node, no emulated network
/// or failover drill), and prepares its hosts.
pub fn prepare_for(
    config: &BenchConfig,
    inventory_path: &Path,
    stamp: &str,
) -> Result<Hosts, String> {
    if config.network.is_some() || config.failover.is_some() {
        return Err(format!(
            "config {}: link emulation and failover drills run on one machine only; on real hosts the network is real (drop [network] / [failover] or run without --hosts)",
            config.name
        ));
    }
    let inventory = Inventory::from_file(inventory_path)?;
    let node_hosts = inventory.with(Role::Node).len();
    if node_hosts != config.nodes {
        return Err(format!(
            "config {} has {} nodes but the inventory {} has {node_hosts} node hosts: give one node host per node",
            config.name,
            config.nodes,
            inventory_path.display()
        ));
    }
    super::ssh::catch_interrupts();
    Hosts::prepare(inventory, stamp)
}

/// `ringraft bench CONFIG --hosts HOSTS.toml`: one config across the inventory's hosts. The
/// report is written only when every step succeeded.
pub fn run_config_on_hosts(
    config: &BenchConfig,
    options: &super::BenchOptions,
    inventory_path: &Path,
) -> Result<(PathBuf, Vec<super::report::Check>), String> {
    let (started_at, stamp) = super::report::timestamp();
    let out_dir = options.results_dir.join(&config.name).join(&stamp);
    eprintln!(
        "bench {} on the hosts of {}: {}",
        config.name,
        inventory_path.display(),
        config.workload.describe()
    );
    let hosts = prepare_for(config, inventory_path, &stamp)?;
    let mut launched = Launched::default();
    let mut runs = Vec::new();
    let mut hosts_runs = Vec::new();
    let mut versions = BTreeMap::from([(
        "ringraft".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )]);
    for repeat in 0..options.repeat.max(1) {
        for target in &config.targets {
            for (point, workload) in config.workloads().into_iter().enumerate() {
                let run = match target.as_str() {
                    "ringraft" => run_ringraft(config, &hosts, &mut launched, &workload)?,
                    "etcd" => {
                        versions
                            .insert("etcd".into(), "the etcd hosts' own (see their logs)".into());
                        run_etcd(config, &hosts, &mut launched, &workload)?
                    }
                    other => return Err(format!("unknown target {other}")),
                };
                eprint!("{}", run.report.text());
                for (host, w) in &run.usage_by_host {
                    eprintln!("  {host}: {}", w.machine);
                }
                runs.push(super::report::RunResult {
                    target: target.clone(),
                    repeat,
                    point,
                    report: run.report.clone(),
                    cluster: run.cluster.clone(),
                    usage: None,
                    threads: run.threads.clone(),
                    node_view: run.node_view.clone(),
                });
                hosts_runs.push((target.clone(), run));
            }
        }
    }
    drop(launched);
    let first_node = hosts.inventory.with(Role::Node)[0].name.clone();
    let f = &hosts.facts[&first_node].facts;
    let machine = super::report::Machine {
        cpu_model: f.cpu_model.clone(),
        cores: f.cores,
        kernel: f.kernel.clone(),
        filesystem: f.filesystem.clone().unwrap_or_default(),
        memory_gib: f.memory_gib,
        disk: None,
        disk_probe_error: Some(format!(
            "host {first_node} (first node host); every host's disk probe is in the Hosts section"
        )),
    };
    let mut differences = super::differences(config, options.repeat.max(1));
    if let Some(first) = differences.first_mut() {
        *first = format!(
            "Both clusters run on the same node hosts of {} with data on the same disks, never at the same time; load comes from the load hosts' processes, the same binary for both targets.",
            inventory_path.display()
        );
    }
    let node_hosts: Vec<(String, usize)> = hosts
        .inventory
        .with(Role::Node)
        .iter()
        .map(|h| (h.name.clone(), hosts.facts[&h.name].facts.cores))
        .collect();
    let report = super::report::BenchReport {
        config: config.clone(),
        started_at,
        machine,
        placement: super::placement::Placement::on_hosts(
            config,
            &node_hosts,
            &node_settings_on_hosts(config, &hosts),
        ),
        versions,
        checks: super::checks(config, &runs),
        runs,
        differences,
        warnings: super::timing_warnings(config),
        spread: None,
    };
    let hosts_report = HostsReport {
        inventory: inventory_path.display().to_string(),
        hosts: hosts
            .inventory
            .hosts
            .iter()
            .map(|h| HostSection {
                name: h.name.clone(),
                address: h.address.clone(),
                roles: h.roles.clone(),
                facts: hosts.facts[&h.name].facts.clone(),
                windows: hosts_runs
                    .iter()
                    .flat_map(|(t, r)| {
                        r.usage_by_host
                            .iter()
                            .filter(|(n, _)| n == &h.name)
                            .map(move |(_, w)| (t.clone(), w.clone()))
                    })
                    .collect(),
                peer_connections: hosts_runs
                    .iter()
                    .flat_map(|(_, r)| r.peer_lines.iter())
                    .filter(|(n, _)| n == &h.name)
                    .flat_map(|(_, lines)| lines.iter().cloned())
                    .collect(),
            })
            .collect(),
        processes: hosts_runs
            .iter()
            .flat_map(|(_, r)| r.processes.iter().cloned())
            .collect(),
    };
    report.write(&out_dir)?;
    let md_path = out_dir.join("report.md");
    let mut md = std::fs::read_to_string(&md_path)
        .map_err(|e| format!("cannot read {}: {e}", md_path.display()))?;
    md.push_str(&hosts_report.markdown());
    std::fs::write(&md_path, md).map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    let json = serde_json::to_string_pretty(&hosts_report).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("hosts.json"), json)
        .map_err(|e| format!("cannot write hosts.json: {e}"))?;
    let runs_only: Vec<HostsRun> = hosts_runs.into_iter().map(|(_, r)| r).collect();
    save_hlogs(&out_dir.join("hlog"), &runs_only)?;
    super::print_checks(&report.checks);
    eprintln!("report: {}", md_path.display());
    Ok((out_dir, report.checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_differ_by_at_most_one_and_add_up() {
        assert_eq!(shares(8, 3), vec![3, 3, 2]);
        assert_eq!(shares(8, 2), vec![4, 4]);
        assert_eq!(shares(5, 1), vec![5]);
        assert_eq!(shares(3, 4), vec![1, 1, 1, 0]);
    }
}
