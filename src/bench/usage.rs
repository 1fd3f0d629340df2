//! What the machine did during a measured window: CPU time by kind (`/proc/stat`) and the work
//! of the disk holding the data directory (`/sys/dev/block/MAJ:MIN/stat`). It tells a run
//! limited by the CPU (no idle, no iowait) from one waiting on the disk (iowait, the device busy,
//! flushes queued), and shows the time a shared VM's host took away (steal), which is where
//! much of the run-to-run spread on such a VM comes from.
//!
//! The counters are machine-wide: they include the load generator and anything else running,
//! which is the point (the cluster and its load share the machine), and the reason the report
//! says so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

/// The machine over one measured window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MachineUsage {
    /// Length of the window as sampled, seconds.
    pub seconds: f64,
    /// CPU time by kind (None: `/proc/stat` unreadable).
    pub cpu: Option<CpuUsage>,
    /// The data disk (None: not a block device this code can find, e.g. tmpfs or overlay).
    pub disk: Option<DiskUsage>,
}

impl MachineUsage {
    /// Machine CPU time per operation, microseconds: the busy share times the cores, divided by
    /// operations per second (everything on the machine counts: nodes, load generator, kernel).
    /// `None` when the CPU was not sampled or nothing was done.
    pub fn cpu_us_per_op(&self, ops_per_s: f64) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        (ops_per_s > 0.0).then(|| cpu.busy_pct / 100.0 * cpu.cores as f64 * 1e6 / ops_per_s)
    }
}

/// Shares of all cores' time, percent (they add up to ~100).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CpuUsage {
    /// Cores counted.
    pub cores: usize,
    /// Running anything: user + nice + system + irq + softirq.
    pub busy_pct: f64,
    /// User code (with nice).
    pub user_pct: f64,
    /// Kernel on behalf of processes (system calls, page faults).
    pub system_pct: f64,
    /// Interrupts and softirqs (network receive, block completions).
    pub irq_pct: f64,
    /// Idle with I/O outstanding: the CPU waited on the disk.
    pub iowait_pct: f64,
    /// Idle with nothing to wait for.
    pub idle_pct: f64,
    /// Taken by the hypervisor for other guests.
    pub steal_pct: f64,
}

/// The data disk's work over the window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DiskUsage {
    /// Block device name (e.g. `vda`).
    pub device: String,
    /// Share of the window with at least one request in the device, percent.
    pub busy_pct: f64,
    /// Write requests completed per second.
    pub writes_per_s: f64,
    /// Written, MiB/s.
    pub write_mib_per_s: f64,
    /// Mean time a write request spent queued and in the device, ms.
    pub write_ms_avg: f64,
    /// Cache flushes completed per second (an fdatasync on a device with a volatile cache).
    pub flushes_per_s: f64,
    /// Mean time of a flush, ms.
    pub flush_ms_avg: f64,
}

impl MachineUsage {
    /// One line for the console and the report.
    pub fn describe(&self) -> String {
        let cpu = match &self.cpu {
            Some(c) => format!(
                "CPU {:.0}% busy (user {:.0}, system {:.0}, irq {:.0}), iowait {:.0}%, idle {:.0}%, steal {:.0}% of {} cores",
                c.busy_pct, c.user_pct, c.system_pct, c.irq_pct, c.iowait_pct, c.idle_pct,
                c.steal_pct, c.cores
            ),
            None => "CPU not sampled".to_string(),
        };
        let disk = match &self.disk {
            Some(d) => format!(
                "{} {:.0}% busy, {:.0} writes/s of {:.2} ms, {:.0} MiB/s, {:.0} flushes/s of {:.2} ms",
                d.device,
                d.busy_pct,
                d.writes_per_s,
                d.write_ms_avg,
                d.write_mib_per_s,
                d.flushes_per_s,
                d.flush_ms_avg
            ),
            None => "data disk not sampled".to_string(),
        };
        format!("{cpu}; {disk}")
    }
}

/// Cumulative CPU jiffies from the `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CpuTimes {
    user: u64,
    system: u64,
    irq: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user + self.system + self.irq + self.idle + self.iowait + self.steal
    }
}

/// Parses the aggregate `cpu` line and counts the `cpuN` lines.
fn parse_proc_stat(text: &str) -> Option<(CpuTimes, usize)> {
    let mut times = None;
    let mut cores = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is inside user).
                if v.len() < 8 {
                    return None;
                }
                times = Some(CpuTimes {
                    user: v[0] + v[1],
                    system: v[2],
                    idle: v[3],
                    iowait: v[4],
                    irq: v[5] + v[6],
                    steal: v[7],
                });
            }
            Some(name) if name.starts_with("cpu") => cores += 1,
            _ => {}
        }
    }
    times.map(|t| (t, cores))
}

fn cpu_usage(before: &CpuTimes, after: &CpuTimes, cores: usize) -> Option<CpuUsage> {
    let total = after.total().checked_sub(before.total())?;
    if total == 0 {
        return None;
    }
    let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total as f64;
    let user_pct = pct(after.user, before.user);
    let system_pct = pct(after.system, before.system);
    let irq_pct = pct(after.irq, before.irq);
    Some(CpuUsage {
        cores,
        busy_pct: user_pct + system_pct + irq_pct,
        user_pct,
        system_pct,
        irq_pct,
        iowait_pct: pct(after.iowait, before.iowait),
        idle_pct: pct(after.idle, before.idle),
        steal_pct: pct(after.steal, before.steal),
    })
}

/// The fields of a block device's `stat` file this report uses (Documentation/block/stat.rst).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct BlockStat {
    write_ios: u64,
    write_sectors: u64,
    write_ticks_ms: u64,
    io_ticks_ms: u64,
    flush_ios: u64,
    flush_ticks_ms: u64,
}

fn parse_block_stat(text: &str) -> Option<BlockStat> {
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 11 {
        return None;
    }
    // Kernels before 5.5 have no flush fields: report no flushes rather than no disk.
    Some(BlockStat {
        write_ios: v[4],
        write_sectors: v[6],
        write_ticks_ms: v[7],
        io_ticks_ms: v[9],
        flush_ios: v.get(15).copied().unwrap_or(0),
        flush_ticks_ms: v.get(16).copied().unwrap_or(0),
    })
}

fn disk_usage(device: &str, before: &BlockStat, after: &BlockStat, seconds: f64) -> DiskUsage {
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
    let writes = d(after.write_ios, before.write_ios);
    let flushes = d(after.flush_ios, before.flush_ios);
    let per_op = |ticks: f64, ops: f64| if ops > 0.0 { ticks / ops } else { 0.0 };
    DiskUsage {
        device: device.to_string(),
        busy_pct: (100.0 * d(after.io_ticks_ms, before.io_ticks_ms) / 1000.0 / seconds).min(100.0),
        writes_per_s: writes / seconds,
        write_mib_per_s: d(after.write_sectors, before.write_sectors) * 512.0
            / (1024.0 * 1024.0)
            / seconds,
        write_ms_avg: per_op(d(after.write_ticks_ms, before.write_ticks_ms), writes),
        flushes_per_s: flushes / seconds,
        flush_ms_avg: per_op(d(after.flush_ticks_ms, before.flush_ticks_ms), flushes),
    }
}

/// The block device holding `dir`: its name and its `stat` file.
fn block_device_of(dir: &Path) -> Option<(String, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let stat = sys.join("stat");
    if !stat.exists() {
        return None;
    }
    let name = std::fs::read_link(&sys)
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"));
    Some((name, stat))
}

/// One reading of the counters.
struct Sample {
    at: Instant,
    cpu: Option<(CpuTimes, usize)>,
    disk: Option<BlockStat>,
}

/// Reads the counters for the machine and the disk holding a directory.
pub struct Sampler {
    device: Option<(String, PathBuf)>,
}

impl Sampler {
    /// A sampler for the disk that holds `data_dir` (which must exist).
    pub fn new(data_dir: &Path) -> Sampler {
        Sampler {
            device: block_device_of(data_dir),
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            cpu: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_proc_stat(&t)),
            disk: self
                .device
                .as_ref()
                .and_then(|(_, stat)| std::fs::read_to_string(stat).ok())
                .and_then(|t| parse_block_stat(&t)),
        }
    }

    fn usage(&self, before: &Sample, after: &Sample) -> MachineUsage {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let cpu = match (&before.cpu, &after.cpu) {
            (Some((b, cores)), Some((a, _))) => cpu_usage(b, a, *cores),
            _ => None,
        };
        let disk = match (&self.device, &before.disk, &after.disk) {
            (Some((name, _)), Some(b), Some(a)) => Some(disk_usage(name, b, a, seconds)),
            _ => None,
        };
        MachineUsage { seconds, cpu, disk }
    }

    /// Samples at `start` and at `end` on a thread of its own; join the handle after `end` for
    /// the usage in between. Dropping the handle abandons it (the thread ends by `end`).
    pub fn during(self, start: Instant, end: Instant) -> std::thread::JoinHandle<MachineUsage> {
        std::thread::spawn(move || {
            std::thread::sleep(start.saturating_duration_since(Instant::now()));
            let before = self.sample();
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            let after = self.sample();
            self.usage(&before, &after)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_BEFORE: &str = "cpu  3113529 0 504710 2371104 428122 0 62361 120842 0 0\n\
cpu0 1556764 0 252355 1185552 214061 0 31180 60421 0 0\n\
cpu1 1556765 0 252355 1185552 214061 0 31181 60421 0 0\n\
intr 1 2 3\nctxt 99\n";
    const STAT_AFTER: &str = "cpu  3113973 0 504914 2371105 428415 0 62393 120849 0 0\n\
cpu0 1 0 1 1 1 0 1 1 0 0\ncpu1 1 0 1 1 1 0 1 1 0 0\n";

    #[test]
    fn cpu_shares_come_from_the_aggregate_line() {
        let (before, cores) = parse_proc_stat(STAT_BEFORE).unwrap();
        let (after, _) = parse_proc_stat(STAT_AFTER).unwrap();
        assert_eq!(cores, 2);
        let u = cpu_usage(&before, &after, cores).unwrap();
        // Deltas: user 444, system 204, idle 1, iowait 293, softirq 32, steal 7: 981 jiffies.
        assert!((u.user_pct - 100.0 * 444.0 / 981.0).abs() < 1e-9);
        assert!((u.iowait_pct - 100.0 * 293.0 / 981.0).abs() < 1e-9);
        assert!((u.busy_pct - 100.0 * 680.0 / 981.0).abs() < 1e-9);
        let sum = u.busy_pct + u.iowait_pct + u.idle_pct + u.steal_pct;
        assert!((sum - 100.0).abs() < 1e-9, "shares add up: {sum}");
        assert_eq!(
            cpu_usage(&after, &after, 2),
            None,
            "an empty window has no shares"
        );
        assert_eq!(parse_proc_stat("cpu 1 2 3\n"), None, "too few fields");
    }

    #[test]
    fn disk_work_comes_from_the_stat_deltas() {
        let before = parse_block_stat(
            " 1736137 47482 60324754 4059661 23347719 363173 2801816864 21830094 0 4974832 30075911 235332 129 1812128224 1275659 9200970 2910496\n",
        )
        .unwrap();
        let after = parse_block_stat(
            " 1736140 47482 60324778 4059663 23365146 363395 2804292688 21837602 3 4977984 30085789 235337 129 1812364528 1275711 9207530 2912811\n",
        )
        .unwrap();
        let d = disk_usage("vda", &before, &after, 5.0);
        assert_eq!(d.device, "vda");
        assert!((d.writes_per_s - 17427.0 / 5.0).abs() < 1e-9);
        assert!((d.busy_pct - 100.0 * 3.152 / 5.0).abs() < 1e-9);
        assert!((d.flushes_per_s - 6560.0 / 5.0).abs() < 1e-9);
        assert!((d.flush_ms_avg - 2315.0 / 6560.0).abs() < 1e-9);
        assert!((d.write_mib_per_s - 2475824.0 * 512.0 / 1048576.0 / 5.0).abs() < 1e-9);
        // An old kernel's 11 fields: no flushes, still a disk.
        let old = parse_block_stat("1 2 3 4 5 6 7 8 9 10 11").unwrap();
        assert_eq!((old.write_ios, old.flush_ios), (5, 0));
        assert_eq!(parse_block_stat("1 2 x"), None);
    }

    #[test]
    fn samples_a_real_window() {
        let dir = std::env::temp_dir();
        let start = Instant::now();
        let usage = Sampler::new(&dir)
            .during(start, start + std::time::Duration::from_millis(200))
            .join()
            .unwrap();
        assert!(usage.seconds >= 0.15, "window {} s", usage.seconds);
        if let Some(cpu) = &usage.cpu {
            let sum = cpu.busy_pct + cpu.iowait_pct + cpu.idle_pct + cpu.steal_pct;
            assert!((sum - 100.0).abs() < 0.5, "shares add up: {sum}");
        }
        assert!(usage.describe().contains("CPU"));
    }

    #[test]
    fn cpu_per_operation_is_busy_share_times_cores_over_rate() {
        let (before, cores) = parse_proc_stat(STAT_BEFORE).unwrap();
        let (after, _) = parse_proc_stat(STAT_AFTER).unwrap();
        let usage = MachineUsage {
            seconds: 1.0,
            cpu: cpu_usage(&before, &after, cores),
            disk: None,
        };
        let busy = usage.cpu.as_ref().unwrap().busy_pct;
        let per_op = usage.cpu_us_per_op(50_000.0).unwrap();
        assert!((per_op - busy / 100.0 * 2.0 * 1e6 / 50_000.0).abs() < 1e-9);
        assert_eq!(usage.cpu_us_per_op(0.0), None);
        assert_eq!(MachineUsage { cpu: None, ..usage }.cpu_us_per_op(1.0), None);
    }
}
