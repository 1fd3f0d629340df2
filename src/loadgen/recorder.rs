//! Latency and throughput recording. One `Recorder` per load thread, merged at the end. Only
//! operations whose (intended) start falls inside the measured window count; warm-up does not.
//!
//! A failed operation is counted as an error *and* enters its latency histogram at the request
//! deadline (or later, if it took longer): a run whose requests fail must not look fast because
//! its failures left the histogram. Throughput counts successes only.

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
    /// Write latencies in microseconds, failures included at `failure_latency`.
    pub writes: Histogram<u64>,
    /// Read latencies in microseconds, failures included at `failure_latency`.
    pub reads: Histogram<u64>,
    /// Writes that succeeded.
    pub writes_ok: u64,
    /// Reads that succeeded.
    pub reads_ok: u64,
    /// Writes that failed.
    pub writes_failed: u64,
    /// Reads that failed.
    pub reads_failed: u64,
    /// The latency at which a failure is recorded (at least): the request deadline.
    failure_latency: Duration,
    /// Per-second counts over the window.
    pub per_second: Vec<SecondBucket>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Write latencies in microseconds, per second of the window (by completion time), at two
    /// significant digits: the latency-over-time plot, where stalls show.
    pub per_second_writes: Vec<Histogram<u64>>,
    /// Successful completions per millisecond of the window (by completion time): the timeline
    /// a failover drill reads its unavailability window from.
    pub acks_per_ms: Vec<u32>,
    /// The client session ids this recording's connections used (ringraft target).
    pub sessions: Vec<u64>,
    /// Successful writes in the window per Raft group (ringraft target; empty for one group).
    pub writes_ok_per_group: Vec<u64>,
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
            writes_ok: 0,
            reads_ok: 0,
            writes_failed: 0,
            reads_failed: 0,
            failure_latency: crate::loadgen::RetryPolicy::default().request_timeout,
            per_second: vec![SecondBucket::default(); seconds],
            per_second_writes: (0..seconds)
                .map(|_| {
                    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2)
                        .expect("valid histogram bounds")
                })
                .collect(),
            errors: BTreeMap::new(),
            acks_per_ms: vec![0; (window.as_millis() as usize + 1).min(TIMELINE_MS_MAX)],
            sessions: Vec::new(),
            writes_ok_per_group: Vec::new(),
        }
    }

    /// Records failures at `latency` (the request deadline of the policy the target ran with).
    pub fn failing_at(mut self, latency: Duration) -> Recorder {
        self.failure_latency = latency;
        self
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
    /// Counts a successful write of group `group` started at `start` (of `groups`).
    pub fn record_group_write(&mut self, start: Instant, group: u32, groups: u32) {
        if groups <= 1 || !self.in_window(start) {
            return;
        }
        if self.writes_ok_per_group.len() < groups as usize {
            self.writes_ok_per_group.resize(groups as usize, 0);
        }
        self.writes_ok_per_group[group as usize] += 1;
    }

    /// Records one request's outcome.
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
        let elapsed = end.saturating_duration_since(start);
        let latency = match &result {
            Ok(()) => elapsed,
            Err(_) => elapsed.max(self.failure_latency),
        };
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        let histogram = match kind {
            OpKind::Write => &mut self.writes,
            OpKind::Read => &mut self.reads,
        };
        histogram.record(us).expect("clamped into bounds");
        match (result, kind) {
            (Ok(()), OpKind::Write) => {
                self.writes_ok += 1;
                self.per_second[second].writes += 1;
                self.per_second_writes[second]
                    .record(us)
                    .expect("clamped into bounds");
            }
            (Ok(()), OpKind::Read) => {
                self.reads_ok += 1;
                self.per_second[second].reads += 1;
            }
            (Err(error), kind) => {
                match kind {
                    OpKind::Write => self.writes_failed += 1,
                    OpKind::Read => self.reads_failed += 1,
                }
                *self.errors.entry(error).or_default() += 1;
                self.per_second[second].errors += 1;
            }
        }
    }

    /// Adds another thread's recording to this one (same window).
    pub fn merge(&mut self, other: &Recorder) {
        self.writes.add(&other.writes).expect("same bounds");
        self.reads.add(&other.reads).expect("same bounds");
        self.writes_ok += other.writes_ok;
        self.reads_ok += other.reads_ok;
        self.writes_failed += other.writes_failed;
        self.reads_failed += other.reads_failed;
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            mine.writes += theirs.writes;
            mine.reads += theirs.reads;
            mine.errors += theirs.errors;
        }
        for (mine, theirs) in self
            .per_second_writes
            .iter_mut()
            .zip(&other.per_second_writes)
        {
            mine.add(theirs).expect("same bounds");
        }
        for (mine, theirs) in self.acks_per_ms.iter_mut().zip(&other.acks_per_ms) {
            *mine = mine.saturating_add(*theirs);
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.sessions.extend_from_slice(&other.sessions);
        if self.writes_ok_per_group.len() < other.writes_ok_per_group.len() {
            self.writes_ok_per_group
                .resize(other.writes_ok_per_group.len(), 0);
        }
        for (mine, theirs) in self
            .writes_ok_per_group
            .iter_mut()
            .zip(&other.writes_ok_per_group)
        {
            *mine += theirs;
        }
    }

    /// The measured window's length.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_enters_the_latency_histogram_at_the_deadline_and_not_the_throughput() {
        let start = Instant::now();
        let mut r =
            Recorder::new(start, Duration::from_secs(10)).failing_at(Duration::from_secs(30));
        let at = |ms: u64| start + Duration::from_millis(ms);
        r.record(OpKind::Write, at(1), at(2), Ok(()));
        r.record(OpKind::Write, at(3), at(4), Err("unavailable".into()));
        r.record(OpKind::Read, at(5), at(6), Err("timeout".into()));
        assert_eq!(
            (r.writes_ok, r.writes_failed, r.reads_ok, r.reads_failed),
            (1, 1, 0, 1)
        );
        assert_eq!(r.writes.len(), 2, "the failed write is in the histogram");
        assert!(
            r.writes.max() >= 29_000_000,
            "recorded at the deadline: {}",
            r.writes.max()
        );
        assert!(r.reads.min() >= 29_000_000);
        assert_eq!(r.errors.values().sum::<u64>(), 2);
        assert_eq!(
            r.per_second[0],
            SecondBucket {
                writes: 1,
                reads: 0,
                errors: 2
            }
        );
        let mut total = Recorder::new(start, Duration::from_secs(10));
        total.merge(&r);
        assert_eq!(
            (total.writes_ok, total.writes_failed, total.reads_failed),
            (1, 1, 1)
        );
    }
}
