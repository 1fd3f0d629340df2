//! Live progress while a load runs, so that a stalled run shows while it runs: on a terminal one
//! line rewritten every second, otherwise a plain line every 5 s, or nothing (`--quiet`).
//!
//! Load threads publish a copy of their recording a few times a second into [`Live`] (a lock
//! taken per publication, never per operation); a printer thread adds them up.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::Recorder;

/// How often a load thread publishes its recording.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// One thread's recording so far.
#[derive(Clone)]
struct Published {
    /// Write latency, failed writes included at their deadline (as in the report).
    writes: Histogram<u64>,
    /// Successful writes and reads.
    ok: u64,
    errors: u64,
}

/// What the load threads have recorded so far, one slot per thread.
#[derive(Default)]
pub struct Live {
    slots: Mutex<Vec<Option<Published>>>,
}

/// The sum of every thread's recording at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Successful operations (writes and reads) in the measured window so far.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// p99 of writes so far, microseconds (None before the first).
    pub write_p99_us: Option<u64>,
}

impl Live {
    /// Publishes thread `thread`'s recording.
    pub fn publish(&self, thread: usize, recorder: &Recorder) {
        let published = Published {
            writes: recorder.writes.clone(),
            ok: recorder.writes_ok + recorder.reads_ok,
            errors: recorder.errors.values().sum(),
        };
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() <= thread {
            slots.resize(thread + 1, None);
        }
        slots[thread] = Some(published);
    }

    /// Everything published so far, added up.
    pub fn totals(&self) -> Totals {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut writes: Option<Histogram<u64>> = None;
        let mut totals = Totals::default();
        for p in slots.iter().flatten() {
            totals.ops += p.ok;
            totals.errors += p.errors;
            match &mut writes {
                Some(h) => {
                    let _ = h.add(&p.writes);
                }
                None => writes = Some(p.writes.clone()),
            }
        }
        totals.write_p99_us = writes
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99));
        totals
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One line rewritten in place every second.
    Terminal,
    /// A plain line every 5 s (logs, CI).
    Plain,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Terminal when stderr is one, else plain; quiet when asked.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }

    fn interval(self) -> Duration {
        match self {
            Mode::Terminal => Duration::from_secs(1),
            _ => Duration::from_secs(5),
        }
    }
}

/// Elections counted since the printer started, when the caller can tell (ringraft targets).
pub type Elections = Box<dyn FnMut() -> Option<u64> + Send>;

/// A thread printing progress until stopped.
pub struct Printer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Printer {
    /// Starts printing progress of `live` for a run whose measured window is
    /// `[window_start, window_end)`.
    /// Without `live` (a target that does not publish) only the time and phase are shown.
    pub fn start(
        mode: Mode,
        label: String,
        live: Option<Arc<Live>>,
        window_start: Instant,
        window_end: Instant,
        elections: Option<Elections>,
    ) -> Printer {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (mode != Mode::Quiet).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                print_loop(
                    mode,
                    &label,
                    &live,
                    window_start,
                    window_end,
                    elections,
                    &stop,
                )
            })
        });
        Printer { stop, handle }
    }

    /// Stops printing (and clears the terminal line).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn print_loop(
    mode: Mode,
    label: &str,
    live: &Option<Arc<Live>>,
    window_start: Instant,
    window_end: Instant,
    mut elections: Option<Elections>,
    stop: &AtomicBool,
) {
    const STEP: Duration = Duration::from_millis(100);
    let started = Instant::now();
    let mut last = (started, 0u64);
    let mut next = started + mode.interval();
    let baseline = elections.as_mut().and_then(|f| f());
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(STEP);
        let now = Instant::now();
        if now < next {
            continue;
        }
        next += mode.interval();
        let Some(live) = live else {
            let phase = phase(now, window_start, window_end);
            let elapsed = now.duration_since(started).as_secs_f64();
            let line = format!("{label} {elapsed:>5.1}s {phase}");
            show(mode, &line);
            continue;
        };
        let totals = live.totals();
        // Operations are counted only inside the measured window, so the rate's interval
        // starts no earlier than the window.
        let since = last.0.max(window_start);
        let rate = (totals.ops - last.1.min(totals.ops)) as f64
            / now.saturating_duration_since(since).as_secs_f64().max(1e-3);
        last = (now, totals.ops);
        let elected = match (&mut elections, baseline) {
            (Some(f), Some(b)) => f().map(|n| n.saturating_sub(b)),
            _ => None,
        };
        let line = progress_line(
            label,
            now.duration_since(started),
            phase(now, window_start, window_end),
            rate,
            &totals,
            elected,
        );
        show(mode, &line);
    }
    if mode == Mode::Terminal {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

fn show(mode: Mode, line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = match mode {
        Mode::Terminal => write!(err, "\r\x1b[2K{line}"),
        _ => writeln!(err, "{line}"),
    };
    let _ = err.flush();
}

fn phase(now: Instant, window_start: Instant, window_end: Instant) -> &'static str {
    if now < window_start {
        "warm-up"
    } else if now < window_end {
        "measuring"
    } else {
        "finishing"
    }
}

/// One progress line: elapsed, phase, ops/s over the last interval, p99 so far, errors,
/// elections.
pub fn progress_line(
    label: &str,
    elapsed: Duration,
    phase: &str,
    ops_per_s: f64,
    totals: &Totals,
    elections: Option<u64>,
) -> String {
    let p99 = totals.write_p99_us.map_or("-".to_string(), |us| {
        format!("{:.2} ms", us as f64 / 1000.0)
    });
    let elections = elections.map_or("-".to_string(), |n| n.to_string());
    format!(
        "{label} {:>5.1}s {phase}: {:.0} ops/s, write p99 so far {p99}, errors {}, elections {elections}",
        elapsed.as_secs_f64(),
        ops_per_s,
        totals.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_threads_and_the_line_says_them() {
        let live = Live::default();
        let start = Instant::now();
        let mut a = Recorder::new(start, Duration::from_secs(10));
        let mut b = Recorder::new(start, Duration::from_secs(10));
        let end = start + Duration::from_millis(1);
        for _ in 0..99 {
            a.record(super::super::OpKind::Write, start, end, Ok(()));
        }
        b.record(
            super::super::OpKind::Write,
            start,
            start + Duration::from_millis(50),
            Ok(()),
        );
        b.record(
            super::super::OpKind::Write,
            start,
            end,
            Err("timeout".into()),
        );
        live.publish(0, &a);
        live.publish(3, &b);
        let t = live.totals();
        assert_eq!((t.ops, t.errors), (100, 1));
        // 101 writes in the histogram (the failed one at its 30 s deadline): the 100th is the
        // 50 ms one.
        let p99 = t.write_p99_us.expect("writes recorded");
        assert!((45_000..=55_000).contains(&p99), "p99 {p99}");
        let line = progress_line(
            "ringraft",
            Duration::from_secs(3),
            "measuring",
            1234.4,
            &t,
            Some(2),
        );
        assert!(
            line.contains("1234 ops/s")
                && line.contains("errors 1")
                && line.contains("elections 2"),
            "{line}"
        );
        assert_eq!(Live::default().totals(), Totals::default());
    }
}
