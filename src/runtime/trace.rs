//! An opt-in event trace for finding where a request's time goes: with `RINGRAFT_TRACE` set in
//! a node's environment, the runtime records `T <CLOCK_MONOTONIC µs> <event> <value>` lines at
//! the steps of the commit path (client in, propose, disk hand-off, fdatasync, persisted, peer
//! messages, reply) and writes them to stderr in batches and at shutdown. CLOCK_MONOTONIC is one
//! clock for every process on the machine, so the timelines of a leader and its followers line
//! up; `scripts/trace-latency.py` turns them into per-step percentiles.
//!
//! Off (the default) it costs one load of a cached flag per event. On, events from the Raft
//! executor and the disk thread share one buffer behind a mutex: fine for finding milliseconds,
//! not for measuring throughput.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Bytes of trace lines buffered before they are written out.
const TRACE_BUFFER_BYTES_MAX: usize = 64 << 10;

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether `RINGRAFT_TRACE` is set (read once).
pub fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os("RINGRAFT_TRACE").is_some())
}

fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Records `event` with a number that identifies it (an index, a sequence, a byte count).
pub fn event(event: &str, value: u64) {
    if !enabled() {
        return;
    }
    let at_us = now_us();
    let mut buffer = BUFFER.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(buffer, "T {at_us} {event} {value}");
    if buffer.len() >= TRACE_BUFFER_BYTES_MAX {
        let _ = std::io::stderr().write_all(&buffer);
        buffer.clear();
    }
}

/// Writes out what is buffered.
pub fn flush() {
    if !enabled() {
        return;
    }
    let mut buffer = BUFFER.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::io::stderr().write_all(&buffer);
    buffer.clear();
}
