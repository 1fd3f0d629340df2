//! What a load run does: operation mix, sizes, key space, concurrency, open or closed loop,
//! warm-up and duration. The same `Workload` drives every target, which is what makes a
//! comparison between ringraft and etcd a comparison of the systems and not of the workloads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::SplitMix64;

/// How requests are issued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoopMode {
    /// Each connection keeps `inflight_per_connection` requests outstanding; a new one starts
    /// when one finishes. Measures capacity; latency is measured from each request's start.
    Closed {
        /// Client connections (each its own session).
        connections: usize,
        /// Requests in flight per connection.
        inflight_per_connection: usize,
    },
    /// Requests start on a fixed schedule whatever the responses do. Latency is measured from
    /// each request's *intended* start, so a stall shows up in full (no coordinated omission).
    Open {
        /// Total requests per second across connections.
        rate_per_s: u64,
        /// Client connections the schedule is spread over.
        connections: usize,
    },
}

/// One load run's workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Request issuing mode.
    pub mode: LoopMode,
    /// Bytes per key (keys are zero-padded decimal numbers, e.g. `k0000000042`).
    pub key_bytes: usize,
    /// Bytes per written value.
    pub value_bytes: usize,
    /// Distinct keys, drawn uniformly. etcd's own benchmark defaults to one key, which measures
    /// a contended hot spot rather than the system; the default here is 100,000.
    pub key_space: u64,
    /// Fraction of requests that are reads, 0.0..=1.0.
    pub read_ratio: f64,
    /// Reads are linearizable (ReadIndex / etcd's default) rather than serializable.
    pub linearizable_reads: bool,
    /// Time before measuring starts.
    #[serde(with = "duration_ms")]
    pub warmup: Duration,
    /// Time measured.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// Seed for key choice and the read/write mix.
    pub seed: u64,
    /// The cluster's Raft groups (ringraft target): each request goes to the leader of its
    /// key's group (`kv::group_of`).
    #[serde(default = "one_group")]
    pub groups: u32,
}

fn one_group() -> u32 {
    1
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            mode: LoopMode::Closed {
                connections: 8,
                inflight_per_connection: 16,
            },
            key_bytes: 16,
            value_bytes: 1024,
            key_space: 100_000,
            read_ratio: 0.0,
            linearizable_reads: true,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            seed: 1,
            groups: 1,
        }
    }
}

impl Workload {
    /// Open loop: when connection `connection` sends its first request and how far apart its
    /// requests are, given that the load starts `warmup` before `window_start`. Connections are
    /// staggered so that their schedules interleave instead of bunching. None in closed loop.
    pub fn open_loop_schedule(
        &self,
        connection: usize,
        window_start: std::time::Instant,
    ) -> Option<(std::time::Instant, Duration)> {
        let LoopMode::Open {
            rate_per_s,
            connections,
        } = self.mode
        else {
            return None;
        };
        let interval = Duration::from_secs_f64(connections as f64 / rate_per_s as f64);
        let offset = interval.mul_f64(connection as f64 / connections as f64);
        Some((window_start - self.warmup + offset, interval))
    }

    /// Checks the settings; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let connections = match self.mode {
            LoopMode::Closed {
                connections,
                inflight_per_connection,
            } => {
                if inflight_per_connection == 0 || inflight_per_connection > 4096 {
                    return Err("inflight_per_connection must be in 1..=4096".into());
                }
                connections
            }
            LoopMode::Open {
                rate_per_s,
                connections,
            } => {
                if rate_per_s == 0 || rate_per_s > 10_000_000 {
                    return Err("rate_per_s must be in 1..=10000000".into());
                }
                connections
            }
        };
        if connections == 0 || connections > 4096 {
            return Err("connections must be in 1..=4096".into());
        }
        if self.key_bytes < 4 || self.key_bytes > 4096 {
            return Err("key_bytes must be in 4..=4096".into());
        }
        if self.value_bytes > crate::limits::ENTRY_BYTES_MAX / 2 {
            return Err(format!(
                "value_bytes must be at most {}",
                crate::limits::ENTRY_BYTES_MAX / 2
            ));
        }
        if self.key_space == 0 {
            return Err("key_space must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err("read_ratio must be in 0.0..=1.0".into());
        }
        if self.duration.is_zero() {
            return Err("duration must be positive".into());
        }
        Ok(())
    }

    /// Connections the mode uses.
    pub fn connections(&self) -> usize {
        match self.mode {
            LoopMode::Closed { connections, .. } | LoopMode::Open { connections, .. } => {
                connections
            }
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            LoopMode::Closed {
                connections,
                inflight_per_connection,
            } => {
                format!("closed loop, {connections} conns x {inflight_per_connection} in flight")
            }
            LoopMode::Open {
                rate_per_s,
                connections,
            } => format!("open loop at {rate_per_s}/s over {connections} conns"),
        };
        format!(
            "{mode}; {} B keys over {} keys, {} B values, {:.0}% reads ({}), warm-up {:?}, measured {:?}",
            self.key_bytes,
            self.key_space,
            self.value_bytes,
            self.read_ratio * 100.0,
            if self.linearizable_reads { "linearizable" } else { "serializable" },
            self.warmup,
            self.duration
        ) + &if self.groups > 1 {
            format!(", keys routed to {} Raft groups", self.groups)
        } else {
            String::new()
        }
    }
}

/// Draws operations for one connection: deterministic from the workload seed and the
/// connection number.
pub struct OpGen {
    rng: SplitMix64,
    key_bytes: usize,
    key_space: u64,
    read_ratio: f64,
    value: bytes::Bytes,
}

/// One operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// Write `value` at `key`.
    Write {
        /// The key.
        key: bytes::Bytes,
        /// The value.
        value: bytes::Bytes,
    },
    /// Read `key`.
    Read {
        /// The key.
        key: bytes::Bytes,
    },
}

impl OpGen {
    /// The generator of connection `connection`.
    pub fn new(workload: &Workload, connection: usize) -> OpGen {
        let seed = workload.seed ^ (connection as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = SplitMix64::new(seed);
        let value: Vec<u8> = (0..workload.value_bytes)
            .map(|_| b'a' + (rng.below(26) as u8))
            .collect();
        OpGen {
            rng,
            key_bytes: workload.key_bytes,
            key_space: workload.key_space,
            read_ratio: workload.read_ratio,
            value: value.into(),
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let n = self.rng.below(self.key_space);
        let key = key_of(n, self.key_bytes);
        if self.read_ratio > 0.0 && self.rng.chance(self.read_ratio) {
            Op::Read { key }
        } else {
            Op::Write {
                key,
                value: self.value.clone(),
            }
        }
    }
}

/// Key number `n`: `k` then `n` in decimal, zero-padded to `key_bytes` in all (longer if `n`
/// has more digits). Written by hand: `format!` was a visible share of the load generator's CPU.
fn key_of(n: u64, key_bytes: usize) -> bytes::Bytes {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[at..];
    let pad = key_bytes.saturating_sub(1 + digits.len());
    let mut key = Vec::with_capacity(1 + pad + digits.len());
    key.push(b'k');
    key.resize(1 + pad, b'0');
    key.extend_from_slice(digits);
    key.into()
}

/// Durations as milliseconds in TOML and JSON.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_k_and_the_zero_padded_number() {
        for key_bytes in [4, 8, 16, 40] {
            for n in [0, 7, 42, 99_999, 1_234_567, u64::MAX] {
                let expected = format!("k{:0width$}", n, width = key_bytes - 1);
                assert_eq!(
                    key_of(n, key_bytes),
                    expected.as_bytes(),
                    "n {n}, {key_bytes} bytes"
                );
            }
        }
    }
}
