//! The data disk's behaviour just before a run: small writes, each followed by fdatasync, in the
//! directory the nodes will write to. On a shared VM the same disk gives a few thousand syncs a
//! second with no stall one moment and a 20 ms stall every 100 ms the next (seen on the
//! development VM, `scripts/fsync-probe.py`); a report that does not say which disk it ran on
//! cannot be compared with another.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bytes per probe write: about one group commit of a loaded follower.
const WRITE_BYTES: usize = 64 << 10;
/// Writes cycle over a preallocated file of this size, so that no write extends the file.
const FILE_BYTES: usize = 16 << 20;
/// A write + fdatasync slower than this counts as a stall.
const STALL_US: u64 = 8_000;

/// What the probe measured.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DiskProbe {
    /// Bytes per write.
    pub write_bytes: usize,
    /// Writes + fdatasyncs completed per second.
    pub syncs_per_s: f64,
    /// Latency of one write + fdatasync, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Slowest, microseconds.
    pub max_us: u64,
    /// Writes slower than 8 ms.
    pub stalls: usize,
}

impl DiskProbe {
    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "{} KiB write + fdatasync in the data directory just before the run: {:.0}/s, p50 {} us, p99 {} us, max {} us, {} over 8 ms",
            self.write_bytes >> 10,
            self.syncs_per_s,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.stalls
        )
    }
}

/// Overwrites a scratch file in `dir` with [`WRITE_BYTES`] writes, each followed by fdatasync,
/// for `duration`, then deletes it.
pub fn probe(dir: &Path, duration: Duration) -> Result<DiskProbe, String> {
    let path = dir.join(".disk-probe");
    let io = |what: &str, e: std::io::Error| format!("disk probe: {what} {}: {e}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io("cannot create", e))?;
    let result = (|| {
        let block = vec![0x5a_u8; WRITE_BYTES];
        for at in (0..FILE_BYTES).step_by(WRITE_BYTES) {
            file.write_all_at(&block, at as u64)
                .map_err(|e| io("cannot write", e))?;
        }
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        let mut latencies_us = Vec::new();
        let started = Instant::now();
        let mut slot = 0;
        while started.elapsed() < duration {
            let t = Instant::now();
            file.write_all_at(&block, (slot * WRITE_BYTES) as u64)
                .map_err(|e| io("cannot write", e))?;
            file.sync_data().map_err(|e| io("cannot sync", e))?;
            latencies_us.push(t.elapsed().as_micros() as u64);
            slot = (slot + 1) % (FILE_BYTES / WRITE_BYTES);
        }
        Ok(summarize(latencies_us, started.elapsed()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn summarize(mut latencies_us: Vec<u64>, elapsed: Duration) -> DiskProbe {
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let at = |q: f64| {
        latencies_us
            .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
            .copied()
    };
    DiskProbe {
        write_bytes: WRITE_BYTES,
        syncs_per_s: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: at(0.5).unwrap_or(0),
        p99_us: at(0.99).unwrap_or(0),
        max_us: latencies_us.last().copied().unwrap_or(0),
        stalls: latencies_us.iter().filter(|&&us| us > STALL_US).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_percentiles_and_stalls() {
        let mut latencies = vec![100u64; 97];
        latencies.extend([9_000, 50, 20_000]);
        let p = summarize(latencies, Duration::from_secs(2));
        assert_eq!(p.syncs_per_s, 50.0);
        assert_eq!(
            (p.p50_us, p.p99_us, p.max_us, p.stalls),
            (100, 20_000, 20_000, 2)
        );
    }

    #[test]
    fn probes_a_real_directory_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("ringraft-disk-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = probe(&dir, Duration::from_millis(50)).unwrap();
        assert!(p.syncs_per_s > 0.0 && p.p50_us > 0 && p.max_us >= p.p99_us);
        assert!(!dir.join(".disk-probe").exists());
        assert!(probe(&dir.join("missing"), Duration::from_millis(10)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
