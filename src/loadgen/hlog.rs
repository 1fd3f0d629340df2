//! HdrHistogram interval logs (`.hlog`, histograms in the V2 compressed encoding): how a load
//! process hands its latency back to the controller, and how the controller adds several up.
//! Histograms are added bucket by bucket, so merged percentiles are exact; percentiles of
//! separate processes are never averaged.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::recorder::LATENCY_US_MAX;

/// The tag of write latency intervals.
pub const WRITE_TAG: &str = "write";
/// The tag of read latency intervals.
pub const READ_TAG: &str = "read";

/// Largest interval log read back (a window's two histograms take a few KiB compressed).
pub const HLOG_BYTES_MAX: u64 = 64 << 20;

/// Latency histograms of one measured window, in microseconds.
pub struct WindowHistograms {
    /// Write latencies.
    pub writes: Histogram<u64>,
    /// Read latencies.
    pub reads: Histogram<u64>,
    /// When the window started, since the Unix epoch.
    pub window_start_unix: Duration,
    /// The window's length.
    pub window: Duration,
}

impl WindowHistograms {
    /// Empty histograms with the recorder's bounds.
    pub fn empty() -> WindowHistograms {
        WindowHistograms {
            writes: empty_histogram(),
            reads: empty_histogram(),
            window_start_unix: Duration::ZERO,
            window: Duration::ZERO,
        }
    }

    /// Adds `other` (a process's window) into this sum; the window becomes the union.
    pub fn add(&mut self, other: &WindowHistograms) -> Result<(), String> {
        self.writes
            .add(&other.writes)
            .map_err(|e| format!("cannot add write histograms: {e:?}"))?;
        self.reads
            .add(&other.reads)
            .map_err(|e| format!("cannot add read histograms: {e:?}"))?;
        if self.window == Duration::ZERO {
            self.window_start_unix = other.window_start_unix;
            self.window = other.window;
        } else {
            let start = self.window_start_unix.min(other.window_start_unix);
            let end =
                (self.window_start_unix + self.window).max(other.window_start_unix + other.window);
            self.window_start_unix = start;
            self.window = end - start;
        }
        Ok(())
    }
}

fn empty_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Writes `h` as an interval log: one interval per tag covering the measured window, with
/// `comments` (who wrote it, the workload) as comment lines.
pub fn write(path: &Path, h: &WindowHistograms, comments: &[String]) -> Result<(), String> {
    let mut text = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    for c in comments {
        builder.add_comment(c);
    }
    let base = std::time::UNIX_EPOCH + h.window_start_unix;
    builder.with_start_time(base).with_base_time(base);
    let mut writer = builder
        .begin_log_with(&mut text, &mut serializer)
        .map_err(|e| format!("cannot write interval log: {e}"))?;
    for (tag, histogram) in [(WRITE_TAG, &h.writes), (READ_TAG, &h.reads)] {
        writer
            .write_histogram(histogram, Duration::ZERO, h.window, Tag::new(tag))
            .map_err(|e| format!("cannot encode the {tag} histogram: {e:?}"))?;
    }
    drop(writer);
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads an interval log and adds up its intervals by tag (`write`, `read`; others refused).
pub fn read(path: &Path) -> Result<WindowHistograms, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > HLOG_BYTES_MAX {
        return Err(format!(
            "{}: {size} bytes, more than the {HLOG_BYTES_MAX} an interval log may have",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses interval log text (see [`read`]).
pub fn parse(bytes: &[u8]) -> Result<WindowHistograms, String> {
    let mut out = WindowHistograms::empty();
    let mut base = None;
    let mut deserializer = Deserializer::new();
    let (mut first, mut last) = (None::<Duration>, Duration::ZERO);
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| format!("not an interval log: {e:?}"))?;
        let interval = match entry {
            LogEntry::BaseTime(t) => {
                base = Some(t);
                continue;
            }
            LogEntry::StartTime(_) => continue,
            LogEntry::Interval(i) => i,
        };
        let encoded = decode_base64(interval.encoded_histogram())?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut encoded.as_slice())
            .map_err(|e| format!("bad histogram: {e:?}"))?;
        let into = match interval.tag().map(|t| t.as_str()) {
            Some(WRITE_TAG) => &mut out.writes,
            Some(READ_TAG) => &mut out.reads,
            other => return Err(format!("unknown interval tag {other:?} (write or read)")),
        };
        into.add(&histogram)
            .map_err(|e| format!("histogram out of bounds: {e:?}"))?;
        let start = interval.start_timestamp();
        first = Some(first.map_or(start, |f| f.min(start)));
        last = last.max(start + interval.duration());
    }
    let first = first.ok_or("the interval log holds no interval")?;
    out.window_start_unix = base.unwrap_or(Duration::ZERO) + first;
    out.window = last - first;
    Ok(out)
}

/// Standard base64 (RFC 4648, with padding), as interval logs carry their histograms.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or_else(|| format!("bad base64 character {:?}", c as char))?;
            acc |= v << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return Err("truncated base64".into()),
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_known_vectors() {
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert!(decode_base64("Zm9v!").is_err());
    }

    #[test]
    fn merged_logs_equal_the_sum_of_their_histograms() {
        let mut a = WindowHistograms::empty();
        let mut b = WindowHistograms::empty();
        for v in 1..=1000u64 {
            a.writes.record(v * 3).unwrap();
        }
        for v in 1..=500u64 {
            b.writes.record(v * 1000).unwrap();
            b.reads.record(v).unwrap();
        }
        a.window_start_unix = Duration::from_secs(1_700_000_000);
        a.window = Duration::from_secs(10);
        b.window_start_unix = Duration::from_secs(1_700_000_001);
        b.window = Duration::from_secs(10);
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a.hlog"), dir.path().join("b.hlog"));
        write(&pa, &a, &["process a".into()]).unwrap();
        write(&pb, &b, &[]).unwrap();
        let mut merged = WindowHistograms::empty();
        merged.add(&read(&pa).unwrap()).unwrap();
        merged.add(&read(&pb).unwrap()).unwrap();
        let mut expected = a.writes.clone();
        expected.add(&b.writes).unwrap();
        assert_eq!(merged.writes.len(), 1500);
        assert_eq!(merged.reads.len(), 500);
        assert_eq!(merged.writes, expected);
        assert_eq!(
            merged.writes.value_at_quantile(0.99),
            expected.value_at_quantile(0.99)
        );
        assert_eq!(merged.window_start_unix, a.window_start_unix);
        assert_eq!(merged.window, Duration::from_secs(11));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse(b"").is_err());
        assert!(parse(b"0.0,1.0,1.0,!!!!\n").is_err());
    }
}
