//! CPU per thread of each node process over a measured window, read from
//! `/proc/PID/task/TID/stat` (user + system time) at the window's edges.
//!
//! Machine-wide CPU (see [`super::usage`]) says whether the machine is full; it cannot say
//! whether one more core would help. A node whose busiest thread (the Raft loop, on the leader)
//! spends `c` microseconds of CPU per write can never commit more than `1e6 / c` writes per
//! second however many cores it has: that ceiling is what this module reports. On a machine with
//! few cores it is also how a thread-per-core design is shown at all: a split of work across
//! threads must show up as a split of per-write CPU across them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Threads listed per node in a report (the busiest first); the rest are summed.
const THREADS_SHOWN_MAX: usize = 8;

/// The owner id that marks the load generator's threads in a sample (node ids start at 1).
/// They are sampled beside the nodes' because on a shared machine every microsecond the load
/// generator spends per write is one the nodes do not get, yet they are no node's: they never
/// count as the busiest thread.
pub const LOAD_GENERATOR: u64 = 0;

/// One thread of one node over the window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ThreadCpu {
    /// Node id.
    pub node: u64,
    /// Kernel thread id.
    pub tid: u32,
    /// The thread's name (`comm`), as the process named it.
    pub name: String,
    /// CPU used, percent of one core.
    pub cpu_pct: f64,
    /// CPU used per acknowledged write, microseconds (None: no writes in the window).
    pub us_per_write: Option<f64>,
}

/// Every sampled thread of every node over one window, busiest first.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ThreadUsage {
    /// Length of the window as sampled, seconds.
    pub seconds: f64,
    /// Node threads with any CPU in the window, busiest first.
    pub threads: Vec<ThreadCpu>,
    /// The load generator's threads, when it ran in the sampling process (`node` is
    /// [`LOAD_GENERATOR`]); empty when it ran elsewhere.
    pub load: Vec<ThreadCpu>,
}

impl ThreadUsage {
    /// The load generator's CPU over the window: percent of one core and microseconds per
    /// write, summed over its threads (None when they were not sampled).
    pub fn load_total(&self) -> Option<(f64, Option<f64>)> {
        if self.load.is_empty() {
            return None;
        }
        let pct = self.load.iter().map(|t| t.cpu_pct).sum();
        let us = self.load.iter().map(|t| t.us_per_write).sum();
        Some((pct, us))
    }

    /// The busiest thread of all nodes.
    pub fn busiest(&self) -> Option<&ThreadCpu> {
        self.threads.first()
    }

    /// Writes per second that the busiest thread could sustain at a full core, at its CPU per
    /// write in this window.
    pub fn ceiling_writes_per_s(&self) -> Option<f64> {
        self.busiest()?
            .us_per_write
            .filter(|us| *us > 0.0)
            .map(|us| 1e6 / us)
    }

    /// Total CPU of each node's threads, percent of one core, by node id.
    pub fn per_node_pct(&self) -> BTreeMap<u64, f64> {
        let mut totals = BTreeMap::new();
        for t in &self.threads {
            *totals.entry(t.node).or_insert(0.0) += t.cpu_pct;
        }
        totals
    }

    /// One line: the busiest thread and the ceiling it implies, then the load generator's CPU
    /// when it was sampled.
    pub fn describe(&self) -> String {
        let load = match self.load_total() {
            Some((pct, Some(us))) => {
                format!("load generator {pct:.0}% of a core, {us:.2} us per write")
            }
            Some((pct, None)) => format!("load generator {pct:.0}% of a core"),
            None => return self.describe_busiest(),
        };
        if self.threads.is_empty() {
            return load;
        }
        format!("{}; {load}", self.describe_busiest())
    }

    fn describe_busiest(&self) -> String {
        match (self.busiest(), self.ceiling_writes_per_s()) {
            (Some(t), Some(ceiling)) => format!(
                "busiest thread: node {} {:?} (tid {}) {:.0}% of a core, {:.2} us per write: ceiling {:.0} writes/s on one core",
                t.node,
                t.name,
                t.tid,
                t.cpu_pct,
                t.us_per_write.unwrap_or(0.0),
                ceiling
            ),
            (Some(t), None) => format!(
                "busiest thread: node {} {:?} (tid {}) {:.0}% of a core, no writes in the window",
                t.node, t.name, t.tid, t.cpu_pct
            ),
            _ => "no thread CPU sampled".to_string(),
        }
    }

    /// A Markdown table per node: its busiest threads, then the rest summed.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "| node | thread | tid | CPU % of a core | us per write |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|");
        let row = |md: &mut String, owner: &dyn std::fmt::Display, t: &ThreadCpu| {
            let _ = writeln!(
                md,
                "| {owner} | {} | {} | {:.1} | {} |",
                t.name,
                t.tid,
                t.cpu_pct,
                t.us_per_write.map_or("-".into(), |u| format!("{u:.2}"))
            );
        };
        for (node, _) in self.per_node_pct() {
            let mine: Vec<&ThreadCpu> = self.threads.iter().filter(|t| t.node == node).collect();
            for t in mine.iter().take(THREADS_SHOWN_MAX) {
                row(&mut md, &node, t);
            }
            let rest = &mine[mine.len().min(THREADS_SHOWN_MAX)..];
            if !rest.is_empty() {
                let pct: f64 = rest.iter().map(|t| t.cpu_pct).sum();
                let us: f64 = rest.iter().filter_map(|t| t.us_per_write).sum();
                let _ = writeln!(
                    md,
                    "| {node} | {} other threads | | {pct:.1} | {us:.2} |",
                    rest.len()
                );
            }
        }
        for t in &self.load {
            row(&mut md, &"load generator", t);
        }
        md
    }
}

/// CPU ticks of each thread of a set of processes at one instant.
struct Sample {
    at: Instant,
    /// (node, tid) -> (name, user + system ticks).
    ticks: BTreeMap<(u64, u32), (String, u64)>,
}

/// Samples the threads of the node processes (and of an in-process load generator) at the
/// edges of a window.
pub struct ThreadSampler {
    /// (node id, process id).
    processes: Vec<(u64, u32)>,
    /// The name prefix of this process's load threads, when they are sampled too.
    load_here: Option<&'static str>,
}

impl ThreadSampler {
    /// A sampler for these (node id, pid) pairs.
    pub fn new(processes: Vec<(u64, u32)>) -> ThreadSampler {
        ThreadSampler {
            processes,
            load_here: None,
        }
    }

    /// Samples also the load generator's threads in this process: those whose names start
    /// with `prefix` (each load target names its threads).
    pub fn with_load_here(mut self, prefix: &'static str) -> ThreadSampler {
        self.load_here = Some(prefix);
        self
    }

    fn sample(&self) -> Sample {
        let mut ticks = BTreeMap::new();
        for &(node, pid) in &self.processes {
            for (tid, name, t) in read_process_threads(pid) {
                ticks.insert((node, tid), (name, t));
            }
        }
        if let Some(prefix) = self.load_here {
            for (tid, name, t) in read_process_threads(std::process::id()) {
                if name.starts_with(prefix) {
                    ticks.insert((LOAD_GENERATOR, tid), (name, t));
                }
            }
        }
        Sample {
            at: Instant::now(),
            ticks,
        }
    }

    /// Samples at `start` and `end` on a thread of its own. Join the handle after `end` and give
    /// the writes per second of the window to [`ThreadWindow::usage`].
    pub fn during(self, start: Instant, end: Instant) -> std::thread::JoinHandle<ThreadWindow> {
        std::thread::spawn(move || {
            std::thread::sleep(start.saturating_duration_since(Instant::now()));
            let before = self.sample();
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            let after = self.sample();
            ThreadWindow { before, after }
        })
    }
}

/// The two samples of a window, before the write rate is known.
pub struct ThreadWindow {
    before: Sample,
    after: Sample,
}

impl ThreadWindow {
    /// Per-thread CPU over the window (see [`ThreadSeconds::usage`]).
    pub fn usage(&self, writes_per_s: f64) -> ThreadUsage {
        self.seconds().usage(writes_per_s)
    }

    /// CPU seconds of each thread over the window, before the write rate is known: what a
    /// remote host probe sends back. A thread present at only one edge (started or ended
    /// inside the window, e.g. a node killed by a failover drill) is left out: its share of the
    /// window is unknown.
    pub fn seconds(&self) -> ThreadSeconds {
        let seconds = self
            .after
            .at
            .duration_since(self.before.at)
            .as_secs_f64()
            .max(1e-3);
        let tick_s = 1.0 / clock_ticks_per_s();
        let threads = self
            .after
            .ticks
            .iter()
            .filter_map(|(&(node, tid), (name, after))| {
                let (_, before) = self.before.ticks.get(&(node, tid))?;
                let cpu_s = after.saturating_sub(*before) as f64 * tick_s;
                (cpu_s > 0.0).then(|| ThreadTime {
                    node,
                    tid,
                    name: name.clone(),
                    cpu_s,
                })
            })
            .collect();
        ThreadSeconds { seconds, threads }
    }
}

/// One thread's CPU seconds over a window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadTime {
    /// Node id.
    pub node: u64,
    /// Kernel thread id (on its host).
    pub tid: u32,
    /// The thread's name.
    pub name: String,
    /// User + system CPU, seconds.
    pub cpu_s: f64,
}

/// CPU seconds per thread over one window, on one host or merged over several.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ThreadSeconds {
    /// Length of the window as sampled, seconds.
    pub seconds: f64,
    /// Threads with any CPU in it.
    pub threads: Vec<ThreadTime>,
}

impl ThreadSeconds {
    /// The threads of several hosts' windows (each host samples its own nodes, so no thread is
    /// counted twice), over the longest of their lengths.
    pub fn merge(parts: impl IntoIterator<Item = ThreadSeconds>) -> ThreadSeconds {
        let mut merged = ThreadSeconds::default();
        for part in parts {
            merged.seconds = merged.seconds.max(part.seconds);
            merged.threads.extend(part.threads);
        }
        merged
    }

    /// Per-thread CPU share and CPU per write at `writes_per_s`, busiest first; the load
    /// generator's threads apart from the nodes'.
    pub fn usage(&self, writes_per_s: f64) -> ThreadUsage {
        let seconds = self.seconds.max(1e-3);
        let writes = writes_per_s * seconds;
        let (mut load, mut threads): (Vec<ThreadCpu>, Vec<ThreadCpu>) = self
            .threads
            .iter()
            .map(|t| ThreadCpu {
                node: t.node,
                tid: t.tid,
                name: t.name.clone(),
                cpu_pct: 100.0 * t.cpu_s / seconds,
                us_per_write: (writes >= 1.0).then(|| t.cpu_s * 1e6 / writes),
            })
            .partition(|t| t.node == LOAD_GENERATOR);
        let busiest_first =
            |a: &ThreadCpu, b: &ThreadCpu| b.cpu_pct.total_cmp(&a.cpu_pct).then(a.tid.cmp(&b.tid));
        threads.sort_by(busiest_first);
        load.sort_by(busiest_first);
        ThreadUsage {
            seconds,
            threads,
            load,
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// (tid, name, user + system ticks) of every thread of a process; empty if it is gone.
fn read_process_threads(pid: u32) -> Vec<(u32, String, u64)> {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (name, ticks) = parse_task_stat(&text)?;
            Some((tid, name, ticks))
        })
        .collect()
}

/// The name and user + system ticks from a `/proc/.../stat` line. The name sits in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_task_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    // After ')': field 3 (state) is index 0, so utime (field 14) is index 11, stime index 12.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line =
            "4242 (raft (loop) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 129 0 0 20 0 5 0 99 0 0";
        assert_eq!(
            parse_task_stat(line),
            Some(("raft (loop) 1".to_string(), 860))
        );
        assert_eq!(parse_task_stat("4242 (short) S 1 2"), None);
    }

    #[test]
    fn spinning_shows_up_as_this_threads_cpu() {
        let pid = std::process::id();
        let total = || -> u64 { read_process_threads(pid).iter().map(|t| t.2).sum() };
        assert!(
            !read_process_threads(pid).is_empty(),
            "/proc/{pid}/task listed no threads"
        );
        let had = total();
        // Spin until the kernel has charged at least one more tick, with a generous deadline for
        // a loaded machine: the reading must move when a thread of the process burns CPU.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while total() <= had {
            assert!(
                Instant::now() < deadline,
                "30 s of spinning never showed up in /proc"
            );
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        }
    }

    fn window(
        before: &[((u64, u32), &str, u64)],
        after: &[((u64, u32), &str, u64)],
    ) -> ThreadWindow {
        let at = Instant::now();
        let sample = |list: &[((u64, u32), &str, u64)], at| Sample {
            at,
            ticks: list
                .iter()
                .map(|(k, n, t)| (*k, (n.to_string(), *t)))
                .collect(),
        };
        ThreadWindow {
            before: sample(before, at),
            after: sample(after, at + std::time::Duration::from_secs(10)),
        }
    }

    #[test]
    fn busiest_thread_gives_the_ceiling_and_vanished_threads_are_left_out() {
        let tick_s = 1.0 / clock_ticks_per_s();
        let w = window(
            &[
                ((1, 10), "raft", 0),
                ((1, 11), "pool", 0),
                ((2, 20), "raft", 0),
                ((LOAD_GENERATOR, 30), "load-1", 0),
            ],
            &[
                ((1, 10), "raft", (6.0 / tick_s) as u64),
                ((1, 11), "pool", (1.0 / tick_s) as u64),
                ((2, 20), "raft", (3.0 / tick_s) as u64),
                ((2, 21), "new", (5.0 / tick_s) as u64),
                ((LOAD_GENERATOR, 30), "load-1", (8.0 / tick_s) as u64),
            ],
        );
        // 10 s at 100k writes/s: 1M writes; 6 s of CPU on the busiest thread = 6 us per write.
        let usage = w.usage(100_000.0);
        assert_eq!(
            usage.threads.len(),
            3,
            "the thread born inside the window is left out: {usage:?}"
        );
        let busiest = usage.busiest().unwrap();
        assert_eq!((busiest.node, busiest.tid), (1, 10));
        assert!((busiest.cpu_pct - 60.0).abs() < 0.5, "{busiest:?}");
        assert!(
            (busiest.us_per_write.unwrap() - 6.0).abs() < 0.05,
            "{busiest:?}"
        );
        let ceiling = usage.ceiling_writes_per_s().unwrap();
        assert!((ceiling - 166_667.0).abs() < 2_000.0, "ceiling {ceiling}");
        let per_node = usage.per_node_pct();
        assert!((per_node[&1] - 70.0).abs() < 0.5 && (per_node[&2] - 30.0).abs() < 0.5);
        assert!(
            usage.markdown().contains("| 1 | raft | 10 | 60.0 | 6.00 |"),
            "{}",
            usage.markdown()
        );
        // The load generator's thread is the busiest of all, yet no node's: it is listed on its
        // own and never sets the ceiling.
        let (load_pct, load_us) = usage.load_total().unwrap();
        assert!((load_pct - 80.0).abs() < 0.5 && (load_us.unwrap() - 8.0).abs() < 0.05);
        assert!(
            usage
                .markdown()
                .contains("| load generator | load-1 | 30 | 80.0 | 8.00 |"),
            "{}",
            usage.markdown()
        );
        assert!(
            usage
                .describe()
                .ends_with("load generator 80% of a core, 8.00 us per write"),
            "{}",
            usage.describe()
        );
        assert_eq!(w.usage(0.0).ceiling_writes_per_s(), None);
        // Only a load generator sampled (the etcd target): no node line, no ceiling.
        let alone = window(
            &[((LOAD_GENERATOR, 30), "etcd-load-0", 0)],
            &[((LOAD_GENERATOR, 30), "etcd-load-0", (3.0 / tick_s) as u64)],
        )
        .usage(100_000.0);
        assert_eq!(alone.busiest(), None);
        assert_eq!(
            alone.describe(),
            "load generator 30% of a core, 3.00 us per write"
        );
    }
}
