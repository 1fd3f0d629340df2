//! What makes one load process one of several: a common start time, its own key-stream seed,
//! random session ids, and a description of itself that the bench controller reads back.

use serde::{Deserialize, Serialize};

/// One load process, as its `--json` output describes it to whoever merges several.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadProcess {
    /// The process id on its host.
    pub pid: u32,
    /// The host's name (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// The workload seed (the key streams) this process drew from.
    pub seed: u64,
    /// When the process started its load (the start of the warm-up), Unix milliseconds.
    pub started_unix_ms: u64,
    /// When its measured window began (after the warm-up), Unix milliseconds.
    #[serde(default)]
    pub window_start_unix_ms: u64,
    /// The client session ids it used.
    pub sessions: Vec<u64>,
}

/// A random, non-zero 64-bit client session id from the kernel's random source. Ids from
/// separate processes collide with probability about n^2 / 2^65 for n sessions in all.
pub fn random_session_id() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer it is given.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        let id = if n == bytes.len() as isize {
            u64::from_ne_bytes(bytes)
        } else {
            // Without getrandom (very old kernels), mix time and pid: still distinct across
            // processes that start at different nanoseconds.
            fallback_entropy()
        };
        if id != 0 {
            return id;
        }
    }
}

fn fallback_entropy() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ ((std::process::id() as u64) << 32);
    // SplitMix64's finalizer spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Milliseconds since the Unix epoch now.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits until the wall clock reaches `start_unix_ms`, so that load processes on several hosts
/// (clocks kept in step by NTP) start their warm-up together. Refuses a start more than
/// `ahead_max` away, which is a clock or a typo, not a plan.
pub fn wait_until(start_unix_ms: u64, ahead_max: std::time::Duration) -> Result<(), String> {
    let now = unix_ms_now();
    if start_unix_ms > now + ahead_max.as_millis() as u64 {
        return Err(format!(
            "start time {start_unix_ms} is {} ms ahead of this host's clock (at most {} ms allowed): check the clocks",
            start_unix_ms - now,
            ahead_max.as_millis()
        ));
    }
    if start_unix_ms > now {
        std::thread::sleep(std::time::Duration::from_millis(start_unix_ms - now));
    }
    Ok(())
}

/// This host's name, or "unknown".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
