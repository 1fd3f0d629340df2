//! The leader's side of sending a snapshot to one follower as a stream: a window of chunks in
//! flight (thesis 10.2.2 pipelining, applied to InstallSnapshot), acknowledged in order.
//!
//! Owns only offsets and counts, never the snapshot's bytes: the core names each chunk
//! ([`SnapshotChunk`]) and the driver reads it from wherever it keeps the snapshot (a node
//! reads its snapshot file on a blocking thread), then sends it. A chunk the driver could not
//! read (the snapshot was replaced meanwhile) is simply never sent, like a lost message.
//!
//! The receiver takes chunks only in order and answers each with the offset it expects next.
//! Go-back-N: an answer that does not move that offset while later chunks are in flight means
//! one was lost or overtaken, and the stream restarts from the acknowledged offset once per
//! such offset (the other chunks in flight will bring the same answer); if nothing is
//! acknowledged for [`SnapshotStream::tick`]'s timeout, the stream restarts from there too.

use bytes::Bytes;

use super::message::{Envelope, Message};
use super::quorum::Membership;
use super::types::{Index, NodeId, Snapshot, SnapshotMeta, Term};

/// What the leader knows of its latest snapshot: where it stands and how many bytes its data
/// holds. The bytes themselves stay with the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its position in the log and the configuration it carries.
    pub meta: SnapshotMeta,
    /// Length of its data.
    pub data_bytes: u64,
}

impl SnapshotInfo {
    /// The position and length of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            meta: snapshot.meta.clone(),
            data_bytes: snapshot.data.len() as u64,
        }
    }
}

/// One chunk for the driver to read from the snapshot ending at `last_included_index` and
/// send to `to` as an `InstallSnapshot` (at once, like `Output::messages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The follower.
    pub to: NodeId,
    /// The leader's term.
    pub term: Term,
    /// Which snapshot, and the configuration it carries.
    pub last_included_index: Index,
    /// The term of its last entry.
    pub last_included_term: Term,
    /// The configuration the snapshot carries.
    pub membership: Membership,
    /// Byte offset of the chunk in the snapshot's data.
    pub offset: u64,
    /// Bytes of the chunk.
    pub len: usize,
    /// The last chunk.
    pub done: bool,
}

impl SnapshotChunk {
    /// The message to send, with the chunk's bytes `data` read by the driver.
    pub fn into_envelope(self, from: NodeId, data: Bytes) -> Envelope {
        debug_assert_eq!(data.len(), self.len, "the driver read the chunk's length");
        Envelope {
            from,
            to: self.to,
            message: Message::InstallSnapshot {
                term: self.term,
                last_included_index: self.last_included_index,
                last_included_term: self.last_included_term,
                membership: self.membership,
                offset: self.offset,
                data,
                done: self.done,
            },
        }
    }

    /// The message, read from `snapshot` held in memory (the simulator, tests); `None` when it
    /// is not the snapshot the chunk belongs to or is too short (then the chunk is not sent).
    pub fn read_from(self, from: NodeId, snapshot: &Snapshot) -> Option<Envelope> {
        if snapshot.meta.last_included_index != self.last_included_index {
            return None;
        }
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(self.len)?;
        if end > snapshot.data.len() {
            return None;
        }
        let data = snapshot.data.slice(start..end);
        Some(self.into_envelope(from, data))
    }
}

/// Bounds of one stream's window.
#[derive(Clone, Copy, Debug)]
pub struct StreamWindow {
    /// Bytes of one chunk.
    pub chunk_bytes: usize,
    /// Chunks in flight at most.
    pub chunks_max: usize,
    /// Bytes in flight at most (the bandwidth-delay product, as for AppendEntries).
    pub bytes_max: usize,
}

/// One follower's snapshot stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStream {
    /// The snapshot's last included index.
    pub snapshot_index: Index,
    /// Length of the snapshot's data.
    pub data_bytes: u64,
    /// The receiver holds every byte before this offset.
    pub acked_offset: u64,
    /// The next chunk to send starts here.
    pub sent_offset: u64,
    /// The last chunk went out since the last restart.
    done_sent: bool,
    /// The offset the stream last restarted from on a repeated answer (once per offset).
    rewound_at: Option<u64>,
    /// The offset the latest answer asked for; below `acked_offset` when the receiver lost
    /// chunks it had acknowledged (it dropped its buffer, then took a late first chunk again)
    /// or when that answer was overtaken by later ones.
    reported_offset: u64,
    /// Ticks since the acknowledged offset last moved.
    idle_ticks: u32,
}

impl SnapshotStream {
    /// A stream of the snapshot `info`, from its start.
    pub fn new(info: &SnapshotInfo) -> SnapshotStream {
        SnapshotStream {
            snapshot_index: info.meta.last_included_index,
            data_bytes: info.data_bytes,
            acked_offset: 0,
            sent_offset: 0,
            done_sent: false,
            rewound_at: None,
            reported_offset: 0,
            idle_ticks: 0,
        }
    }

    /// Bytes sent and not yet acknowledged.
    pub fn inflight_bytes(&self) -> u64 {
        self.sent_offset - self.acked_offset
    }

    /// The next chunk the window allows, as (offset, len, done), and records it as sent.
    pub fn next_chunk(&mut self, window: StreamWindow) -> Option<(u64, usize, bool)> {
        let chunk_bytes = window.chunk_bytes.max(1) as u64;
        let inflight = self.inflight_bytes();
        if self.done_sent
            || inflight.div_ceil(chunk_bytes) >= window.chunks_max as u64
            || inflight >= window.bytes_max as u64
        {
            return None;
        }
        let offset = self.sent_offset;
        let len = chunk_bytes.min(self.data_bytes - offset);
        self.sent_offset += len;
        self.done_sent = self.sent_offset == self.data_bytes;
        debug_assert!(self.acked_offset <= self.sent_offset && self.sent_offset <= self.data_bytes);
        Some((offset, len as usize, self.done_sent))
    }

    /// An answer: the receiver expects `next_offset` next. Returns whether more may be sent.
    pub fn on_ack(&mut self, next_offset: u64) -> bool {
        let next_offset = next_offset.min(self.data_bytes);
        self.reported_offset = next_offset;
        if next_offset > self.acked_offset {
            self.acked_offset = next_offset;
            self.idle_ticks = 0;
            if self.sent_offset < next_offset {
                // Chunks of before a restart arrived after all: skip what they carried.
                self.sent_offset = next_offset;
                self.done_sent = next_offset == self.data_bytes;
            }
            return true;
        }
        if next_offset == self.acked_offset && self.sent_offset > self.acked_offset {
            // A chunk after the acknowledged offset arrived first: the one at it was lost.
            if self.rewound_at != Some(next_offset) {
                self.rewound_at = Some(next_offset);
                self.restart_from_acked();
                return true;
            }
            return false;
        }
        if next_offset == 0 && self.acked_offset > 0 {
            // The receiver lost what it had (a restart, or a newer stream replaced it).
            self.acked_offset = 0;
            self.rewound_at = Some(0);
            self.restart_from_acked();
            return true;
        }
        false
    }

    /// One tick. After `timeout_ticks` without an acknowledgement moving, what is in flight is
    /// taken as lost and the stream restarts from the acknowledged offset, or from the latest
    /// answer's if that is lower: a receiver stuck below what it acknowledged is believed after
    /// a timeout, not at once, because a lower answer is usually just a late one. Returns
    /// whether it restarted.
    pub fn tick(&mut self, timeout_ticks: u32) -> bool {
        self.idle_ticks += 1;
        if self.idle_ticks < timeout_ticks.max(1) {
            return false;
        }
        self.idle_ticks = 0;
        self.rewound_at = None;
        self.acked_offset = self.acked_offset.min(self.reported_offset);
        self.restart_from_acked();
        true
    }

    fn restart_from_acked(&mut self) {
        self.sent_offset = self.acked_offset;
        self.done_sent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: StreamWindow = StreamWindow {
        chunk_bytes: 10,
        chunks_max: 3,
        bytes_max: 1000,
    };

    fn stream(data_bytes: u64) -> SnapshotStream {
        SnapshotStream::new(&SnapshotInfo {
            meta: SnapshotMeta::default(),
            data_bytes,
        })
    }

    fn drain(s: &mut SnapshotStream, window: StreamWindow) -> Vec<(u64, usize, bool)> {
        std::iter::from_fn(|| s.next_chunk(window)).collect()
    }

    #[test]
    fn a_window_of_chunks_goes_out_and_each_ack_opens_it() {
        let mut s = stream(45);
        assert_eq!(
            drain(&mut s, WINDOW),
            [(0, 10, false), (10, 10, false), (20, 10, false)]
        );
        assert!(s.on_ack(10));
        assert_eq!(drain(&mut s, WINDOW), [(30, 10, false)]);
        assert!(s.on_ack(30));
        assert_eq!(drain(&mut s, WINDOW), [(40, 5, true)]);
        assert_eq!(drain(&mut s, WINDOW), [], "nothing after the last chunk");
    }

    #[test]
    fn bytes_in_flight_are_bounded_too() {
        let mut s = stream(100);
        let window = StreamWindow {
            bytes_max: 15,
            ..WINDOW
        };
        assert_eq!(drain(&mut s, window), [(0, 10, false), (10, 10, false)]);
    }

    #[test]
    fn an_empty_snapshot_is_one_empty_last_chunk() {
        let mut s = stream(0);
        assert_eq!(drain(&mut s, WINDOW), [(0, 0, true)]);
    }

    #[test]
    fn a_lost_chunk_restarts_once_from_the_acked_offset() {
        let mut s = stream(100);
        drain(&mut s, WINDOW); // 0, 10, 20; chunk 0 is lost.
        assert!(s.on_ack(0), "the answer to chunk 10 restarts");
        assert!(
            !s.on_ack(0),
            "the answer to chunk 20 does not restart again"
        );
        assert_eq!(
            drain(&mut s, WINDOW),
            [(0, 10, false), (10, 10, false), (20, 10, false)]
        );
        assert!(s.on_ack(10));
        assert_eq!(s.acked_offset, 10);
    }

    #[test]
    fn silence_restarts_after_the_timeout() {
        let mut s = stream(100);
        drain(&mut s, WINDOW);
        assert!(!s.tick(3));
        assert!(!s.tick(3));
        assert!(s.tick(3));
        assert_eq!(drain(&mut s, WINDOW)[0], (0, 10, false));
    }

    #[test]
    fn a_receiver_that_lost_its_chunks_is_sent_them_again() {
        let mut s = stream(100);
        drain(&mut s, WINDOW);
        assert!(s.on_ack(20));
        assert!(s.on_ack(0));
        assert_eq!(s.acked_offset, 0);
        assert_eq!(drain(&mut s, WINDOW)[0], (0, 10, false));
    }

    #[test]
    fn a_receiver_below_its_acknowledgement_is_believed_after_the_timeout() {
        let mut s = stream(100);
        drain(&mut s, WINDOW);
        assert!(s.on_ack(30));
        drain(&mut s, WINDOW);
        assert!(!s.on_ack(10), "a lower answer may be a late one");
        assert_eq!(s.acked_offset, 30);
        assert!(!s.tick(2));
        assert!(s.tick(2));
        assert_eq!(s.acked_offset, 10);
        assert_eq!(drain(&mut s, WINDOW)[0], (10, 10, false));
    }

    #[test]
    fn an_ack_beyond_a_restart_skips_ahead() {
        let mut s = stream(30);
        drain(&mut s, WINDOW);
        assert!(s.tick(1));
        assert!(s.on_ack(30));
        assert_eq!(drain(&mut s, WINDOW), []);
        assert_eq!(s.sent_offset, 30);
    }
}
