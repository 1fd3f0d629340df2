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

/// A one-line summary of a message for traces: its kind, term and the fields that matter.
pub fn describe(message: &crate::core::Message) -> String {
    use crate::core::Message as M;
    match message {
        M::AppendEntries { term, prev_log_index, prev_log_term, leader_commit, entries } => format!(
            "AppendEntries t{term} prev=({prev_log_index},t{prev_log_term}) n={} commit={leader_commit}",
            entries.len()
        ),
        M::AppendEntriesResponse { term, success, match_index, conflict_index, conflict_term } => format!(
            "AppendEntriesResponse t{term} ok={success} match={match_index} conflict={conflict_index}/{conflict_term:?}"
        ),
        M::InstallSnapshot { term, last_included_index, offset, data, done, .. } => format!(
            "InstallSnapshot t{term} @{last_included_index} off={offset} len={} done={done}",
            data.len()
        ),
        M::InstallSnapshotResponse { term, last_included_index, next_offset, done } => {
            format!("InstallSnapshotResponse t{term} @{last_included_index} next={next_offset} done={done}")
        }
        M::Heartbeat { term, leader_commit, read_round } => {
            format!("Heartbeat t{term} commit={leader_commit} round={read_round}")
        }
        M::RequestVote { term, last_log_index, last_log_term, leader_transfer } => format!(
            "RequestVote t{term} last=({last_log_index},t{last_log_term}) transfer={leader_transfer}"
        ),
        M::RequestVoteResponse { term, granted } => format!("RequestVoteResponse t{term} granted={granted}"),
        M::PreVoteResponse { term, granted } => format!("PreVoteResponse t{term} granted={granted}"),
        other => format!("{} t{}", other.kind_name(), other.term()),
    }
}
