//! The run's trace: a bounded ring of the most recent lines for failure reports, a digest of
//! every line for determinism checks, and optionally the whole text.

use std::collections::VecDeque;
use std::fmt::Write;

use super::clock::Micros;

/// Trace lines kept for a failure report.
pub const TRACE_TAIL_LINES: usize = 50;

/// Bounded trace of a run.
#[derive(Default)]
pub struct Trace {
    tail: VecDeque<String>,
    digest: u64,
    lines: u64,
    full: Option<String>,
}

impl Trace {
    /// A trace that keeps the whole text too when `full` (for determinism tests).
    pub fn new(full: bool) -> Trace {
        Trace {
            tail: VecDeque::with_capacity(TRACE_TAIL_LINES),
            digest: 0xcbf2_9ce4_8422_2325,
            lines: 0,
            full: full.then(String::new),
        }
    }

    /// Records one line at simulated time `now_us`.
    pub fn line(&mut self, now_us: Micros, text: std::fmt::Arguments<'_>) {
        let mut line = String::with_capacity(64);
        let _ = write!(line, "{:>6}.{:03}ms ", now_us / 1000, now_us % 1000);
        let _ = line.write_fmt(text);
        // FNV-1a over every byte of every line: equal digests mean equal traces (with
        // overwhelming probability), without keeping the whole text.
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.digest ^= byte as u64;
            self.digest = self.digest.wrapping_mul(0x0100_0000_01b3);
        }
        self.lines += 1;
        if let Some(full) = &mut self.full {
            full.push_str(&line);
            full.push('\n');
        }
        if self.tail.len() == TRACE_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The digest of every line so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Lines recorded so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The last lines, oldest first, one per line.
    pub fn tail_text(&self) -> String {
        let mut out = String::new();
        for line in &self.tail {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The whole trace, if it was kept.
    pub fn take_full(&mut self) -> Option<String> {
        self.full.take()
    }
}
