//! The record batch is the unit everywhere: a command is encoded once, by the leader, into a
//! record with its CRC; those bytes travel in AppendEntries, are checked once by the follower
//! and written to its log as they are, and recovery reads them back. These tests follow one
//! batch along that path and check, by buffer identity, that no step copies or re-encodes a
//! value where the runtime's module docs ("The copies of a value") say it does not, so that a
//! copy added on the hot path fails here: sockets are read straight into the frame decoder, a
//! client's value stays a slice of its frame, the pieces of an AppendEntries handed to the
//! socket are the entries' own records, a follower's entries are slices of what it read, and
//! its log writes them as they are. Also: a log of a record format version this build does not
//! read is refused, naming it.

use std::cell::RefCell;
use std::fs;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use futures_lite::io::{AsyncRead, AsyncWriteExt};
use ringraft::core::{Entry, EntryKind, Envelope, Message};
use ringraft::limits::PEER_RECEIVE_BUFFER_BYTES;
use ringraft::log::record::{encode_single_with, records_for, RECORD_BYTES_MAX};
use ringraft::log::{segment_file_name, Log, StorageError};
use ringraft::runtime::disk::DiskQueue;
use ringraft::runtime::storage::{Recovery, Storage, WriteJob};
use ringraft::runtime::write_parts;
use ringraft::wire::{
    decode_client_request_shared, decode_peer_message_shared, encode_client_request,
    encode_peer_frame, fill_decoder, write_frame, ClientRequest, FrameDecoder, FrameType,
    PeerFrame, Request, FRAME_HEADER_BYTES,
};

mod log_common;
use log_common::{options, read_all};

/// Where `inner`'s bytes lie inside `outer`'s, if they do (same memory, not equal bytes).
fn within(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start..start + inner.len())
}

/// Entries as the leader's runtime proposes them: each command written once, straight into
/// its record.
fn proposals(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| {
            let value = vec![(index % 251) as u8; 1024];
            let (record, data) =
                encode_single_with(term, index, EntryKind::Normal, value.len(), |out| {
                    out.extend_from_slice(&value)
                })
                .expect("encode");
            Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data,
                record: Some(record),
            }
        })
        .collect()
}

/// The AppendEntries frame a leader sends, in pieces.
fn append_entries_frame(entries: &[Entry]) -> (Envelope, PeerFrame) {
    let envelope = Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term: 3,
            prev_log_index: entries[0].index - 1,
            prev_log_term: 0,
            leader_commit: 0,
            entries: entries.to_vec(),
        },
    };
    let frame = encode_peer_frame(&envelope, Some(7), &mut FlatBufferBuilder::new()).expect("fits");
    (envelope, frame)
}

/// The pieces of the frame are a small head, each entry's own record buffer (the same memory,
/// not a copy) and at most 3 bytes of padding.
fn check_pieces_are_the_records(frame: &PeerFrame, entries: &[Entry]) {
    let parts = frame.parts();
    assert!(
        parts.len() == entries.len() + 1 || parts.len() == entries.len() + 2,
        "{} pieces for {} records",
        parts.len(),
        entries.len()
    );
    assert!(
        parts[0].len() <= FRAME_HEADER_BYTES + 128,
        "a head of {} bytes: records copied into it?",
        parts[0].len()
    );
    for (part, entry) in parts[1..].iter().zip(entries) {
        let record = entry
            .record
            .as_ref()
            .expect("a proposal carries its record");
        assert!(
            part.as_ptr() == record.as_ptr() && part.len() == record.len(),
            "entry {}: the record handed to the socket is a copy",
            entry.index
        );
    }
    if let Some(padding) = parts.get(entries.len() + 1) {
        assert!(padding.len() < 4 && padding.iter().all(|&b| b == 0));
    }
    let total: usize = parts.iter().map(Bytes::len).sum();
    assert_eq!(total, frame.len());
}

#[test]
fn a_leaders_records_reach_a_followers_disk_and_recovery_unchanged() {
    let leader = proposals(1, 40, 3);
    // Leader: the command is the record's payload, not a second buffer.
    for entry in &leader {
        let record = entry
            .record
            .as_ref()
            .expect("a proposal carries its record");
        assert!(
            within(record, &entry.data).is_some(),
            "entry {}: the command is a copy, not the record's payload",
            entry.index
        );
    }
    // The wire: one AppendEntries, its pieces the records themselves, its body as a follower
    // receives it (over a socket in the next test).
    let (_, frame) = append_entries_frame(&leader);
    check_pieces_are_the_records(&frame, &leader);
    let body = Bytes::from(frame.to_vec()).slice(FRAME_HEADER_BYTES..);
    let received = decode_peer_message_shared(&body).expect("decode");
    let Message::AppendEntries { entries, .. } = received.envelope.message else {
        panic!("not an AppendEntries");
    };
    assert_eq!(entries, leader);
    // Follower: each record is checked in place, a slice of the received frame, byte for byte
    // the leader's record; the entry's data is a slice of it.
    for (got, sent) in entries.iter().zip(&leader) {
        let record = got
            .record
            .as_ref()
            .expect("a received entry keeps its record");
        assert!(
            within(&body, record).is_some(),
            "entry {}: the received record was copied out of the frame",
            got.index
        );
        assert_eq!(record, sent.record.as_ref().expect("sent"));
        assert!(within(record, &got.data).is_some());
    }
    // The disk: the follower's log takes the records as they are, not re-encoded...
    let mut records = Vec::new();
    records_for(&entries, RECORD_BYTES_MAX, &mut records).expect("records");
    assert_eq!(records.len(), entries.len());
    for (record, entry) in records.iter().zip(&entries) {
        assert_eq!(
            record.bytes().as_ptr(),
            entry.record.as_ref().expect("record").as_ptr(),
            "entry {}: re-encoded for the disk",
            entry.index
        );
    }
    // ...and writes them through the node's path, where they land as the same bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let to_write = entries.clone();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let storage = Storage::open(&path, 1 << 20, Recovery::Strict)
                .expect("open")
                .0;
            let queue = DiskQueue::start(storage);
            let seq = queue
                .submit(WriteJob {
                    entries: to_write,
                    ..WriteJob::default()
                })
                .await;
            queue.wait_durable(seq).await;
        })
        .expect("executor")
        .join()
        .expect("join");
    let segment = fs::read(dir.path().join("log").join(segment_file_name(1))).expect("segment");
    let sent: Vec<u8> = leader
        .iter()
        .flat_map(|e| e.record.as_ref().expect("record").to_vec())
        .collect();
    assert_eq!(
        &segment[..sent.len()],
        &sent[..],
        "the disk holds other bytes than the wire"
    );
    // Recovery: the same entries, each again carrying its record.
    let (log, report) = Log::open(&dir.path().join("log"), options(1 << 20)).expect("reopen");
    assert!(report.torn_tail.is_none());
    let recovered = read_all(&log);
    assert_eq!(recovered, leader);
    for (got, sent) in recovered.iter().zip(&leader) {
        assert_eq!(got.record, sent.record);
    }
}

/// A stream that notes where each read put its bytes.
struct Recording<S> {
    inner: S,
    reads: Rc<RefCell<Vec<Range<usize>>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let start = buf.as_ptr() as usize;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.reads.borrow_mut().push(start..start + n);
        }
        polled
    }
}

/// Whether the bytes of `inner` are all where reads of the socket put them (so no copy of them
/// was made after the socket's).
fn read_in_place(reads: &[Range<usize>], inner: &[u8]) -> bool {
    let mut reads = reads.to_vec();
    reads.sort_by_key(|r| r.start);
    let (mut at, end) = (
        inner.as_ptr() as usize,
        inner.as_ptr() as usize + inner.len(),
    );
    for read in reads {
        if read.start <= at && at < read.end {
            at = read.end;
        }
    }
    at >= end || inner.is_empty()
}

/// Reads from `stream` until a whole frame of type `expected` is in; its body.
async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    expected: FrameType,
) -> Bytes {
    loop {
        if let Some(body) = decoder.next_frame_shared(expected).expect("valid frame") {
            return body;
        }
        fill_decoder(stream, decoder).await.expect("read");
    }
}

/// AppendEntries frames the test connection carries after the client's request, written
/// together as the sender gathers what is queued: more than a loopback socket takes at once (so
/// the vectored write also waits for room), and than a receive buffer holds (so the receiver
/// goes through several).
const FRAMES: usize = 200;

/// What one side writes: a client's request (as the client library writes it), then
/// [`FRAMES`] times the AppendEntries of `entries` in pieces, in one vectored write.
async fn send(addr: std::net::SocketAddr, value: Bytes, entries: Vec<Entry>) {
    let mut stream = glommio::net::TcpStream::connect(addr)
        .await
        .expect("connect");
    let request = ClientRequest {
        group: 0,
        protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
        await_leadership: false,
        client_id: 1,
        sequence: 1,
        request_id: 1,
        request: Request::Put {
            key: Bytes::from_static(b"key"),
            value,
        },
    };
    let mut bytes = Vec::new();
    let mut fbb = FlatBufferBuilder::new();
    write_frame(
        FrameType::ClientRequest,
        encode_client_request(&request, &mut fbb),
        &mut bytes,
    )
    .expect("fits");
    stream.write_all(&bytes).await.expect("write request");
    let (_, frame) = append_entries_frame(&entries);
    check_pieces_are_the_records(&frame, &entries);
    let parts: Vec<Bytes> = (0..FRAMES).flat_map(|_| frame.parts().to_vec()).collect();
    write_parts(&mut stream, &parts)
        .await
        .expect("write frames");
}

/// What the other side reads, as a leader's client connection and a follower's peer connection
/// do: the value and the entries received, and whether each lies where the socket put it.
async fn receive_all(listener: glommio::net::TcpListener) -> ((Bytes, bool), Vec<(Entry, bool)>) {
    let reads = Rc::new(RefCell::new(Vec::new()));
    let mut stream = Recording {
        inner: listener.accept().await.expect("accept"),
        reads: reads.clone(),
    };
    let mut decoder = FrameDecoder::new();
    let body = receive(&mut stream, &mut decoder, FrameType::ClientRequest).await;
    let request = decode_client_request_shared(&body).expect("decode request");
    let Request::Put { value, .. } = request.request else {
        panic!("not a put");
    };
    let value_in_place = read_in_place(&reads.borrow(), &value);
    let mut entries = Vec::new();
    for _ in 0..FRAMES {
        let body = receive(&mut stream, &mut decoder, FrameType::PeerMessage).await;
        let message = decode_peer_message_shared(&body).expect("decode frame");
        let Message::AppendEntries { entries: got, .. } = message.envelope.message else {
            panic!("not an AppendEntries");
        };
        for entry in got {
            let record = entry
                .record
                .as_ref()
                .expect("a received entry keeps its record");
            let in_place = read_in_place(&reads.borrow(), record);
            entries.push((entry, in_place));
        }
    }
    ((value, value_in_place), entries)
}

#[test]
fn over_sockets_a_value_is_read_and_sent_where_it_lies() {
    let leader = proposals(1, 64, 3);
    let frame_bytes = append_entries_frame(&leader).1.len();
    let value = Bytes::from(vec![0x5Au8; 1024]);
    let (sent_value, sent_entries) = (value.clone(), leader.clone());
    let ((got_value, value_in_place), received) =
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let sender = glommio::spawn_local(send(addr, sent_value, sent_entries));
                let received = receive_all(listener).await;
                sender.await;
                received
            })
            .expect("executor")
            .join()
            .expect("join");
    assert_eq!(got_value, value);
    assert!(
        value_in_place,
        "the client's value was copied after the socket read it"
    );
    assert_eq!(received.len(), FRAMES * leader.len());
    let mut moved_bytes = 0;
    for ((entry, in_place), sent) in received.iter().zip(leader.iter().cycle()) {
        assert_eq!(entry, sent);
        if !in_place {
            moved_bytes += entry.record.as_ref().expect("record").len();
        }
    }
    // The one move the module docs allow: the unfinished frame at the end of a full receive
    // buffer goes to the start of the next, at most one frame's bytes per buffer.
    let buffers = (FRAMES * frame_bytes).div_ceil(PEER_RECEIVE_BUFFER_BYTES);
    assert!(
        moved_bytes <= buffers * frame_bytes,
        "{moved_bytes} bytes of records were copied after the socket read them \
         ({buffers} receive buffers of {PEER_RECEIVE_BUFFER_BYTES} bytes, frames of {frame_bytes})"
    );
}

#[test]
fn a_log_of_another_record_format_version_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
        log.append(&proposals(1, 3, 1)).expect("append");
    }
    // Rewrite the first record as a build of format version 9 would have written it: the same
    // record with another version, its CRC made again (so it is intact, not damaged).
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = fs::read(&path).expect("read");
    let total = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    bytes[8..10].copy_from_slice(&9u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes[8..total]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).expect("write");
    let err = match Log::open(dir.path(), options(64 << 10)) {
        Ok(_) => panic!("a log of format version 9 was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            StorageError::FormatVersion {
                found: 9,
                offset: 0,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("format version 9") && message.contains("reads version 1"),
        "{message}"
    );
    // The same bytes with a CRC that does not check are damage, not another format.
    bytes[4] ^= 1;
    fs::write(&path, &bytes).expect("write");
    assert!(!matches!(
        Log::open(dir.path(), options(64 << 10)),
        Err(StorageError::FormatVersion { .. })
    ));
}
