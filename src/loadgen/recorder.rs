//! Latency and throughput recording. One `Recorder` per load thread, merged at the end. Only
//! operations whose (intended) start falls inside the measured window count; warm-up does not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency the histograms record (longer ones are clamped to it and counted).
pub const LATENCY_US_MAX: u64 = 120_000_000;

/// Kind of operation recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A write (put).
    Write,
    /// A read (get).
    Read,
}

/// Counts of one second of the measured window.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SecondBucket {
    /// Writes completed successfully in this second.
    pub writes: u64,
    /// Reads completed successfully.
    pub reads: u64,
    /// Operations that failed.
    pub errors: u64,
}

/// What one load thread saw.
pub struct Recorder {
    window_start: Instant,
    window: Duration,
    /// Write latencies in microseconds.
    pub writes: Histogram<u64>,
    /// Read latencies in microseconds.
    pub reads: Histogram<u64>,
    /// Per-second counts over the window.
    pub per_second: Vec<SecondBucket>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Successful completions per millisecond of the window (by completion time): the timeline
    /// a failover drill reads its unavailability window from.
    pub acks_per_ms: Vec<u32>,
    /// The client session ids this recording's connections used (ringraft target).
    pub sessions: Vec<u64>,
}

/// Longest window, in milliseconds, the per-millisecond timeline covers (later completions land
/// in its last slot); bounds its memory to 4 MiB per load thread.
pub const TIMELINE_MS_MAX: usize = 1 << 20;

impl Recorder {
    /// A recorder for the window starting at `window_start` and lasting `window`.
    pub fn new(window_start: Instant, window: Duration) -> Recorder {
        let hist =
            || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        let seconds = window.as_secs().max(1) as usize + 1;
        Recorder {
            window_start,
            window,
            writes: hist(),
            reads: hist(),
            per_second: vec![SecondBucket::default(); seconds],
            errors: BTreeMap::new(),
            acks_per_ms: vec![0; (window.as_millis() as usize + 1).min(TIMELINE_MS_MAX)],
            sessions: Vec::new(),
        }
    }

    /// When the measured window starts.
    pub fn window_start(&self) -> Instant {
        self.window_start
    }

    /// The client-visible outage around `fault` (an instant inside the window): the last
    /// completion at or before it, the first completion after it, both in milliseconds after the
    /// window start. None when nothing completed after the fault.
    pub fn outage_around(&self, fault: Instant) -> Option<(Option<u64>, u64)> {
        let fault_ms = fault
            .saturating_duration_since(self.window_start)
            .as_millis() as usize;
        let last_before = (0..=fault_ms.min(self.acks_per_ms.len() - 1))
            .rev()
            .find(|&ms| self.acks_per_ms[ms] > 0)
            .map(|ms| ms as u64);
        let first_after =
            (fault_ms + 1..self.acks_per_ms.len()).find(|&ms| self.acks_per_ms[ms] > 0)? as u64;
        Some((last_before, first_after))
    }

    /// Whether an operation starting at `start` is inside the measured window.
    pub fn in_window(&self, start: Instant) -> bool {
        start >= self.window_start && start < self.window_start + self.window
    }

    /// Records one operation that started (or was meant to start) at `start` and ended at `end`.
    pub fn record(
        &mut self,
        kind: OpKind,
        start: Instant,
        end: Instant,
        result: Result<(), String>,
    ) {
        if !self.in_window(start) {
            return;
        }
        let second = ((end.saturating_duration_since(self.window_start)).as_secs() as usize)
            .min(self.per_second.len() - 1);
        if result.is_ok() {
            let ms = (end.saturating_duration_since(self.window_start).as_millis() as usize)
                .min(self.acks_per_ms.len() - 1);
            self.acks_per_ms[ms] = self.acks_per_ms[ms].saturating_add(1);
        }
        match result {
            Ok(()) => {
                let us = (end.saturating_duration_since(start).as_micros() as u64)
                    .clamp(1, LATENCY_US_MAX);
                match kind {
                    OpKind::Write => {
                        self.writes.record(us).expect("clamped into bounds");
                        self.per_second[second].writes += 1;
                    }
                    OpKind::Read => {
                        self.reads.record(us).expect("clamped into bounds");
                        self.per_second[second].reads += 1;
                    }
                }
            }
            Err(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                self.per_second[second].errors += 1;
            }
        }
    }

    /// Adds another thread's recording to this one (same window).
    pub fn merge(&mut self, other: &Recorder) {
        self.writes.add(&other.writes).expect("same bounds");
        self.reads.add(&other.reads).expect("same bounds");
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            mine.writes += theirs.writes;
            mine.reads += theirs.reads;
            mine.errors += theirs.errors;
        }
        for (mine, theirs) in self.acks_per_ms.iter_mut().zip(&other.acks_per_ms) {
            *mine = mine.saturating_add(*theirs);
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.sessions.extend_from_slice(&other.sessions);
    }

    /// The measured window's length.
    pub fn window(&self) -> Duration {
        self.window
    }
}
