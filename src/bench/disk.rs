//! The data disk's behaviour just before a run: small writes, each followed by fdatasync, in the
//! directory the nodes will write to. On a shared VM the same disk gives a few thousand syncs a
//! second with no stall one moment and a 20 ms stall every 100 ms the next (seen on the
//! development VM, `ringraft disk-probe`); a report that does not say which disk it ran on
//! cannot be compared with another. `ringraft bench` and `tune` probe before every run;
//! `ringraft disk-probe` runs the same probe alone, with a chosen write size and duration.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bytes per probe write before a run: about one group commit of a loaded follower.
pub const WRITE_BYTES: usize = 64 << 10;
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
            "{} KiB write + fdatasync in the data directory just before the run: {}",
            self.write_bytes >> 10,
            self.figures()
        )
    }

    /// The measured figures, in one line.
    pub fn figures(&self) -> String {
        format!(
            "{:.0}/s, p50 {} us, p99 {} us, max {} us, {} over 8 ms",
            self.syncs_per_s, self.p50_us, self.p99_us, self.max_us, self.stalls
        )
    }
}

/// Overwrites a scratch file in `dir` with writes of `write_bytes` (1 byte to 16 MiB), each
/// followed by fdatasync, for `duration`, then deletes it.
pub fn probe(dir: &Path, write_bytes: usize, duration: Duration) -> Result<DiskProbe, String> {
    if write_bytes == 0 || write_bytes > FILE_BYTES {
        return Err(format!(
            "disk probe: write size {write_bytes} B is not in 1..={FILE_BYTES}"
        ));
    }
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
        let block = vec![0x5a_u8; write_bytes];
        let slots = FILE_BYTES / write_bytes;
        for at in (0..slots * write_bytes).step_by(write_bytes) {
            file.write_all_at(&block, at as u64)
                .map_err(|e| io("cannot write", e))?;
        }
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        let mut latencies_us = Vec::new();
        let started = Instant::now();
        let mut slot = 0;
        while started.elapsed() < duration {
            let t = Instant::now();
            file.write_all_at(&block, (slot * write_bytes) as u64)
                .map_err(|e| io("cannot write", e))?;
            file.sync_data().map_err(|e| io("cannot sync", e))?;
            latencies_us.push(t.elapsed().as_micros() as u64);
            slot = (slot + 1) % slots;
        }
        Ok(summarize(write_bytes, latencies_us, started.elapsed()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn summarize(write_bytes: usize, mut latencies_us: Vec<u64>, elapsed: Duration) -> DiskProbe {
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let at = |q: f64| {
        latencies_us
            .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
            .copied()
    };
    DiskProbe {
        write_bytes,
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
        let p = summarize(WRITE_BYTES, latencies, Duration::from_secs(2));
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
        let p = probe(&dir, 4096, Duration::from_millis(50)).unwrap();
        assert!(p.syncs_per_s > 0.0 && p.p50_us > 0 && p.max_us >= p.p99_us);
        assert_eq!(p.write_bytes, 4096);
        assert!(!dir.join(".disk-probe").exists());
        assert!(probe(&dir.join("missing"), 4096, Duration::from_millis(10)).is_err());
        assert!(probe(&dir, 0, Duration::from_millis(10)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
