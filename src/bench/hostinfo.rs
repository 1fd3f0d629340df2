//! What a report says about each host: its facts (CPU, cores, kernel, memory, the data disk)
//! and what it did during a measured window (CPU busy / iowait / steal, the data disk, network
//! bytes). `ringraft host-probe` gathers them on the host itself; the controller reads back the
//! JSON.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The CPU model from /proc/cpuinfo text: x86's "model name", or on aarch64 (which has none)
/// the implementer and part, named where known (c7g is Graviton3, a Neoverse V1).
pub fn cpu_model(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    if let Some(model) = field("model name") {
        return model;
    }
    let (Some(implementer), Some(part)) = (field("CPU implementer"), field("CPU part")) else {
        return field("Hardware").unwrap_or_else(|| "unknown".into());
    };
    let name = match (implementer.as_str(), part.as_str()) {
        ("0x41", "0xd0c") => Some("ARM Neoverse-N1 (e.g. AWS Graviton2)"),
        ("0x41", "0xd40") => Some("ARM Neoverse-V1 (e.g. AWS Graviton3)"),
        ("0x41", "0xd4f") => Some("ARM Neoverse-V2 (e.g. AWS Graviton4)"),
        ("0x41", "0xd49") => Some("ARM Neoverse-N2"),
        ("0x41", "0xd08") => Some("ARM Cortex-A72"),
        ("0x41", "0xd0b") => Some("ARM Cortex-A76"),
        ("0x61", _) => Some("Apple"),
        _ => None,
    };
    match name {
        Some(name) => format!("{name}; implementer {implementer}, part {part}"),
        None => format!("aarch64 CPU implementer {implementer}, part {part}"),
    }
}

/// A host's facts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostFacts {
    /// Its name as it says (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// Machine architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// CPU model.
    pub cpu_model: String,
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// The data directory probed, if any.
    pub data_dir: Option<String>,
    /// Its filesystem.
    pub filesystem: Option<String>,
    /// The disk probe's one-line result (write + fdatasync rate and latency), or why it failed.
    pub disk: Option<String>,
    /// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`): hosts that report the
    /// same one are one machine (loopback addresses or containers standing in for hosts), and
    /// share its cores.
    #[serde(default)]
    pub boot_id: Option<String>,
}

impl HostFacts {
    /// Reads this host's facts; probes the disk of `data_dir` (1 s of write + fdatasync) when given.
    pub fn detect(data_dir: Option<&Path>) -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0.0);
        let disk = data_dir.map(|dir| {
            match super::disk::probe(dir, super::disk::WRITE_BYTES, Duration::from_secs(1)) {
                Ok(probe) => probe.describe(),
                Err(e) => format!("disk probe failed: {e}"),
            }
        });
        HostFacts {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpu_model: cpu_model(&read("/proc/cpuinfo")),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            memory_gib: mem_kib / (1 << 20) as f64,
            data_dir: data_dir.map(|d| d.display().to_string()),
            filesystem: data_dir.map(super::report::filesystem_of),
            disk,
            boot_id: Some(read("/proc/sys/kernel/random/boot_id").trim().to_string())
                .filter(|id| !id.is_empty()),
        }
    }
}

/// Network bytes over a window, from /proc/net/dev.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetBytes {
    /// Received on every interface but loopback.
    pub rx_bytes: u64,
    /// Sent on every interface but loopback.
    pub tx_bytes: u64,
    /// Received on loopback (hosts simulated on one machine talk over it).
    pub lo_rx_bytes: u64,
    /// Sent on loopback.
    pub lo_tx_bytes: u64,
}

/// Parses /proc/net/dev into byte totals.
pub fn parse_net_dev(text: &str) -> NetBytes {
    let mut out = NetBytes::default();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() < 9 {
            continue;
        }
        let (rx, tx) = (fields[0], fields[8]);
        if name.trim() == "lo" {
            out.lo_rx_bytes += rx;
            out.lo_tx_bytes += tx;
        } else {
            out.rx_bytes += rx;
            out.tx_bytes += tx;
        }
    }
    out
}

fn net_now() -> NetBytes {
    parse_net_dev(&std::fs::read_to_string("/proc/net/dev").unwrap_or_default())
}

/// What a host did during one measured window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostWindow {
    /// The machine's CPU and data disk, one line (see `usage::MachineUsage::describe`).
    pub machine: String,
    /// CPU busy share, percent of all cores.
    pub cpu_busy_pct: Option<f64>,
    /// iowait share.
    pub iowait_pct: Option<f64>,
    /// Steal share (time the hypervisor gave to other guests).
    pub steal_pct: Option<f64>,
    /// Data disk busy share.
    pub disk_busy_pct: Option<f64>,
    /// Data disk cache flushes per second.
    pub disk_flushes_per_s: Option<f64>,
    /// Network bytes during the window.
    pub net: NetBytes,
    /// Window length as sampled, seconds.
    pub seconds: f64,
    /// How long after the planned start the sampling began (the probe itself started late),
    /// milliseconds; the window then covers a later interval than the load's.
    #[serde(default)]
    pub late_ms: u64,
    /// CPU seconds of each thread of the node processes on this host, when it was given any.
    #[serde(default)]
    pub node_threads: Option<super::threads::ThreadSeconds>,
}

/// Samples this host from `start_unix_ms` for `window` (waiting for the start first).
/// `nodes` are (node id, pid) of node processes on this host, whose threads are sampled too.
pub fn sample_window(
    data_dir: &Path,
    start_unix_ms: u64,
    window: Duration,
    nodes: Vec<(u64, u32)>,
) -> HostWindow {
    let now_ms = crate::loadgen::process::unix_ms_now();
    let late_ms = now_ms.saturating_sub(start_unix_ms);
    let start = Instant::now() + Duration::from_millis(start_unix_ms.saturating_sub(now_ms));
    let end = start + window;
    let usage = super::usage::Sampler::new(data_dir).during(start, end);
    let node_threads =
        (!nodes.is_empty()).then(|| super::threads::ThreadSampler::new(nodes).during(start, end));
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let before = net_now();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = net_now();
    let usage = usage.join().ok();
    let net = NetBytes {
        rx_bytes: after.rx_bytes.saturating_sub(before.rx_bytes),
        tx_bytes: after.tx_bytes.saturating_sub(before.tx_bytes),
        lo_rx_bytes: after.lo_rx_bytes.saturating_sub(before.lo_rx_bytes),
        lo_tx_bytes: after.lo_tx_bytes.saturating_sub(before.lo_tx_bytes),
    };
    let cpu = usage.as_ref().and_then(|u| u.cpu.clone());
    let disk = usage.as_ref().and_then(|u| u.disk.clone());
    HostWindow {
        machine: usage
            .as_ref()
            .map_or("not sampled".into(), |u| u.describe()),
        cpu_busy_pct: cpu.as_ref().map(|c| c.busy_pct),
        iowait_pct: cpu.as_ref().map(|c| c.iowait_pct),
        steal_pct: cpu.as_ref().map(|c| c.steal_pct),
        disk_busy_pct: disk.as_ref().map(|d| d.busy_pct),
        disk_flushes_per_s: disk.as_ref().map(|d| d.flushes_per_s),
        net,
        seconds: usage.as_ref().map_or(0.0, |u| u.seconds),
        late_ms,
        node_threads: node_threads
            .and_then(|h| h.join().ok())
            .map(|w| w.seconds()),
    }
}

/// What `ringraft host-probe` prints: the facts, and the window when one was asked for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostProbe {
    /// The host's facts.
    pub facts: HostFacts,
    /// The measured window, if sampled.
    pub window: Option<HostWindow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_on_x86_and_graviton() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86), "AMD EPYC 7B13");
        let c7g = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd\n\
CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n";
        let model = cpu_model(c7g);
        assert!(
            model.contains("Neoverse-V1") && model.contains("Graviton3"),
            "{model}"
        );
        let unknown = "CPU implementer\t: 0x48\nCPU part\t: 0xd01\n";
        assert_eq!(
            cpu_model(unknown),
            "aarch64 CPU implementer 0x48, part 0xd01"
        );
        assert_eq!(cpu_model(""), "unknown");
    }

    #[test]
    fn net_dev_totals_split_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
eth0: 500 5 0 0 0 0 0 0 700 7 0 0 0 0 0 0\n  \
eth1: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n";
        let n = parse_net_dev(text);
        assert_eq!(
            (n.rx_bytes, n.tx_bytes, n.lo_rx_bytes, n.lo_tx_bytes),
            (501, 702, 1000, 1000)
        );
    }
}
