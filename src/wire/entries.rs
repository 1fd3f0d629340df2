//! INTERIM encoding of the entries of one AppendEntries as the `batch: [ubyte]` of the schema.
//!
//! The schema treats the batch as opaque bytes because the plan (docs/architecture.md, "One
//! write, end to end") is that they are the on-disk record-batch bytes, CRC included, sent and appended as they
//! are. That codec belongs to `log` and is being written separately; until it lands, this file is
//! the one place that turns `Vec<Entry>` into batch bytes and back, so that replacing it touches
//! nothing else. It has no CRC: TCP's checksum is all that protects it for now.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//!   batch := count: u32, entry * count           (no trailing bytes)
//!   entry := index: u64, term: u64, kind: u8, len: u32, data: [u8; len]
//!   kind  := 0 Normal | 1 Noop
//! ```
//!
//! Decoding checks every count and length against [`crate::limits`], that indexes are contiguous
//! and terms never decrease within the batch (the Log Matching property makes any other batch
//! impossible from a correct leader).

use bytes::Bytes;

use super::error::DecodeError;
use crate::core::{Entry, EntryKind};
use crate::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, ENTRY_BYTES_MAX};

/// Bytes of the batch header (the entry count).
const BATCH_HEADER_BYTES: usize = 4;

/// Bytes of each entry's fixed header (index, term, kind, len) before its data.
pub const ENTRY_HEADER_BYTES: usize = 8 + 8 + 1 + 4;

/// Largest batch a correct leader produces: [`BATCH_ENTRIES_MAX`] entry headers plus
/// [`crate::limits::BATCH_BYTES_MAX`] payload bytes. Receivers do not check this sum themselves;
/// the frame limit below bounds it.
pub const BATCH_ENCODED_BYTES_MAX: usize =
    BATCH_HEADER_BYTES + BATCH_ENTRIES_MAX * ENTRY_HEADER_BYTES + BATCH_BYTES_MAX;

/// Generous bound on what a `PeerMessage` with an AppendEntries body adds around its batch: root
/// offset, file identifier, two tables with their vtables, the vector length, alignment.
const APPEND_ENTRIES_ENVELOPE_BYTES_MAX: usize = 1024;

// A full batch, wrapped in its flatbuffer and frame header, must fit in a frame, or a leader
// following the limits would send frames every receiver refuses.
const _: () = assert!(
    BATCH_ENCODED_BYTES_MAX + APPEND_ENTRIES_ENVELOPE_BYTES_MAX + crate::wire::FRAME_HEADER_BYTES
        <= crate::limits::FRAME_BYTES_MAX
);

/// Appends the batch encoding of `entries` to `out`.
///
/// # Panics
///
/// If `entries` breaks the limits the core enforces on what it sends (more than
/// [`BATCH_ENTRIES_MAX`] entries, or an entry larger than [`ENTRY_BYTES_MAX`]): that is a bug in
/// the sender, and every receiver would refuse the batch anyway.
pub fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) {
    assert!(
        entries.len() <= BATCH_ENTRIES_MAX,
        "batch of {} entries exceeds BATCH_ENTRIES_MAX",
        entries.len()
    );
    let data_bytes: usize = entries.iter().map(|entry| entry.data.len()).sum();
    out.reserve(BATCH_HEADER_BYTES + entries.len() * ENTRY_HEADER_BYTES + data_bytes);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        assert!(
            entry.data.len() <= ENTRY_BYTES_MAX,
            "entry {} exceeds ENTRY_BYTES_MAX",
            entry.index
        );
        out.extend_from_slice(&entry.index.to_le_bytes());
        out.extend_from_slice(&entry.term.to_le_bytes());
        out.push(kind_to_u8(entry.kind));
        out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.data);
    }
}

/// Decodes a batch, copying each entry's data into its own allocation.
pub fn decode_entries(batch: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    decode_entries_with(batch, &Bytes::copy_from_slice)
}

/// Decodes a batch; `to_bytes` turns a sub-slice of `batch` into the entry's `Bytes` (a copy, or a
/// zero-copy `Bytes::slice_ref` of the received frame).
pub(crate) fn decode_entries_with(
    batch: &[u8],
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<Vec<Entry>, DecodeError> {
    let mut reader = Reader { rest: batch };
    let count = reader.u32()? as usize;
    if count > BATCH_ENTRIES_MAX {
        return Err(DecodeError::OutOfRange {
            field: "AppendEntries.batch.count",
            value: count as u64,
            limit: BATCH_ENTRIES_MAX as u64,
        });
    }
    // Never trust the count for the allocation: it cannot exceed what the bytes can hold.
    let mut entries = Vec::with_capacity(count.min(reader.rest.len() / ENTRY_HEADER_BYTES));
    for position in 0..count {
        let entry = decode_entry(&mut reader, to_bytes)?;
        if let Some(previous) = entries.last() {
            check_follows(previous, &entry, position)?;
        }
        entries.push(entry);
    }
    if !reader.rest.is_empty() {
        return Err(DecodeError::Batch(format!(
            "{} trailing bytes after {count} entries",
            reader.rest.len()
        )));
    }
    Ok(entries)
}

fn decode_entry(
    reader: &mut Reader<'_>,
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<Entry, DecodeError> {
    let index = reader.u64()?;
    let term = reader.u64()?;
    let kind = kind_from_u8(reader.u8()?)?;
    let data_bytes = reader.u32()? as usize;
    if data_bytes > ENTRY_BYTES_MAX {
        return Err(DecodeError::OutOfRange {
            field: "AppendEntries.batch.entry.len",
            value: data_bytes as u64,
            limit: ENTRY_BYTES_MAX as u64,
        });
    }
    if index == 0 {
        return Err(DecodeError::Batch("entry with index 0".to_string()));
    }
    let data = to_bytes(reader.take(data_bytes)?);
    Ok(Entry {
        term,
        index,
        kind,
        data,
    })
}

fn check_follows(previous: &Entry, entry: &Entry, position: usize) -> Result<(), DecodeError> {
    if previous.index.checked_add(1) != Some(entry.index) {
        return Err(DecodeError::Batch(format!(
            "entry {position} has index {} after index {}: not contiguous",
            entry.index, previous.index
        )));
    }
    if entry.term < previous.term {
        return Err(DecodeError::Batch(format!(
            "entry {position} has term {} after term {}: terms decrease",
            entry.term, previous.term
        )));
    }
    Ok(())
}

fn kind_to_u8(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
    }
}

fn kind_from_u8(byte: u8) -> Result<EntryKind, DecodeError> {
    match byte {
        0 => Ok(EntryKind::Normal),
        1 => Ok(EntryKind::Noop),
        other => Err(DecodeError::Batch(format!("unknown entry kind {other}"))),
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and fails with a `DecodeError`.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, bytes: usize) -> Result<&'a [u8], DecodeError> {
        if bytes > self.rest.len() {
            return Err(DecodeError::Batch(format!(
                "truncated: needed {bytes} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(bytes);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}
