//! The record batch codec: the one byte format of a batch of entries, on disk and (later) on the
//! wire.
//!
//! This module owns the layout and its validation. It is pure (no file, no clock) so that the
//! simulator and the wire can use it. Decoding checks magic, version, length, count and CRC
//! *before* it trusts any other field, and returns a [`DecodeError`] value on any input: it never
//! panics, whatever the bytes.
//!
//! Layout (little-endian), [`RECORD_HEADER_BYTES`] bytes of header then the entries:
//!
//! ```text
//!   0  magic        u32   RECORD_MAGIC
//!   4  crc          u32   CRC32 (crc32fast) of bytes [8, total_bytes)
//!   8  version      u16   RECORD_VERSION
//!  10  reserved     u16   0
//!  12  total_bytes  u32   header + entries, no padding
//!  16  term         u64   shared by every entry of the batch
//!  24  first_index  u64   index of the first entry (>= 1)
//!  32  count        u32   number of entries (>= 1)
//!  36  reserved     u32   0
//!  40  entries: { data_bytes u32, kind u8, data [u8; data_bytes] } * count
//! ```
//!
//! The CRC sits right after the magic so that it covers the version, the length and every
//! field after it: a flipped bit anywhere but in the magic or the CRC itself fails the check.

use bytes::Bytes;

use crate::core::{Entry, EntryKind, Index, Term};
use crate::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, ENTRY_BYTES_MAX};

/// First four bytes of every record ("RRLB" read as little-endian bytes 'B','L','R','R').
pub const RECORD_MAGIC: u32 = 0x5252_4C42;
/// The only format version this code reads and writes.
pub const RECORD_VERSION: u16 = 1;
/// Bytes of the fixed record header.
pub const RECORD_HEADER_BYTES: usize = 40;
/// Bytes of the per-entry prefix (length and kind).
pub const ENTRY_HEADER_BYTES: usize = 5;
/// Largest encoded record: a full batch of the largest size the limits allow.
pub const RECORD_BYTES_MAX: usize =
    RECORD_HEADER_BYTES + BATCH_BYTES_MAX + BATCH_ENTRIES_MAX * ENTRY_HEADER_BYTES;

const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(ENTRY_BYTES_MAX <= u32::MAX as usize);

const KIND_NORMAL: u8 = 0;
const KIND_NOOP: u8 = 1;
const KIND_CONFIG: u8 = 2;

/// The validated header of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header plus entries, in bytes, without any padding.
    pub total_bytes: u32,
    /// The term of every entry in the record.
    pub term: Term,
    /// Index of the first entry.
    pub first_index: Index,
    /// Number of entries, at least 1.
    pub count: u32,
}

impl RecordHeader {
    /// Index of the last entry in the record.
    pub fn last_index(&self) -> Index {
        self.first_index + u64::from(self.count) - 1
    }
}

/// Why bytes are not a valid record. Each variant says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record truncated: needs {need} bytes, only {have} available")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The first four bytes are not [`RECORD_MAGIC`].
    #[error("bad record magic {found:#010x} (expected {RECORD_MAGIC:#010x})")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// A format version this code does not know.
    #[error("unsupported record format version {found} (this build reads {RECORD_VERSION})")]
    BadVersion {
        /// The version found.
        found: u16,
    },
    /// The declared length is impossible.
    #[error("record length {len} outside [{RECORD_HEADER_BYTES}, {max}]")]
    BadLength {
        /// Declared length.
        len: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The CRC does not match the bytes.
    #[error("record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The header's count or index fields are impossible.
    #[error("record header invalid: {0}")]
    BadHeader(&'static str),
    /// An entry inside a record whose CRC matched is malformed (a bug in the encoder).
    #[error("entry {entry} of record malformed: {reason}")]
    BadEntry {
        /// Position of the entry in the record.
        entry: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Why entries cannot be encoded into one record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A record needs at least one entry.
    #[error("cannot encode an empty batch")]
    Empty,
    /// Entries of one record must share one term.
    #[error("entry {index} has term {found}, the batch has term {expected}")]
    MixedTerms {
        /// Offending entry index.
        index: Index,
        /// The batch term.
        expected: Term,
        /// Its term.
        found: Term,
    },
    /// Entries must have consecutive indexes, starting at 1 or above.
    #[error(
        "entry index {found} where {expected} was expected (indexes must be consecutive and >= 1)"
    )]
    NotContiguous {
        /// Expected index.
        expected: Index,
        /// Found index.
        found: Index,
    },
    /// The batch is larger than a record may be.
    #[error("batch of {entries} entries / {bytes} bytes exceeds the record limit ({max_entries} entries, {max_bytes} bytes)")]
    TooLarge {
        /// Entries in the batch.
        entries: usize,
        /// Encoded bytes.
        bytes: usize,
        /// Entry limit.
        max_entries: usize,
        /// Byte limit.
        max_bytes: usize,
    },
    /// One entry's payload exceeds [`ENTRY_BYTES_MAX`].
    #[error("entry {index} has {bytes} payload bytes, more than {ENTRY_BYTES_MAX}")]
    EntryTooLarge {
        /// Offending entry index.
        index: Index,
        /// Its payload size.
        bytes: usize,
    },
}

/// Encoded size of one entry inside a record.
pub fn entry_encoded_bytes(entry: &Entry) -> usize {
    ENTRY_HEADER_BYTES + entry.data.len()
}

/// Encoded size of a record holding `entries`.
pub fn encoded_bytes(entries: &[Entry]) -> usize {
    RECORD_HEADER_BYTES + entries.iter().map(entry_encoded_bytes).sum::<usize>()
}

/// Appends the record encoding `entries` to `out` and returns its header. The entries must be
/// non-empty, share one term and have consecutive indexes starting at >= 1.
pub fn encode_batch_into(
    entries: &[Entry],
    out: &mut Vec<u8>,
) -> Result<RecordHeader, EncodeError> {
    let header = check_encodable(entries)?;
    let start = out.len();
    out.reserve(header.total_bytes as usize);
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // CRC, filled below
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&header.total_bytes.to_le_bytes());
    out.extend_from_slice(&header.term.to_le_bytes());
    out.extend_from_slice(&header.first_index.to_le_bytes());
    out.extend_from_slice(&header.count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for entry in entries {
        out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
        out.push(kind_byte(entry.kind));
        out.extend_from_slice(&entry.data);
    }
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    // Pair the check across the disk boundary: what we write must be what we would accept.
    debug_assert_eq!(out.len() - start, header.total_bytes as usize);
    debug_assert!(check_record(&out[start..]).is_ok());
    Ok(header)
}

/// Encodes `entries` into one record (see [`encode_batch_into`]).
pub fn encode_batch(entries: &[Entry]) -> Result<(RecordHeader, Bytes), EncodeError> {
    let mut out = Vec::with_capacity(encoded_bytes(entries));
    let header = encode_batch_into(entries, &mut out)?;
    Ok((header, Bytes::from(out)))
}

fn check_encodable(entries: &[Entry]) -> Result<RecordHeader, EncodeError> {
    let first = entries.first().ok_or(EncodeError::Empty)?;
    if first.index == 0 {
        return Err(EncodeError::NotContiguous {
            expected: 1,
            found: 0,
        });
    }
    let bytes = encoded_bytes(entries);
    if entries.len() > BATCH_ENTRIES_MAX || bytes > RECORD_BYTES_MAX {
        return Err(EncodeError::TooLarge {
            entries: entries.len(),
            bytes,
            max_entries: BATCH_ENTRIES_MAX,
            max_bytes: RECORD_BYTES_MAX,
        });
    }
    for (offset, entry) in entries.iter().enumerate() {
        let expected = first.index + offset as u64;
        if entry.index != expected {
            return Err(EncodeError::NotContiguous {
                expected,
                found: entry.index,
            });
        }
        if entry.term != first.term {
            return Err(EncodeError::MixedTerms {
                index: entry.index,
                expected: first.term,
                found: entry.term,
            });
        }
        if entry.data.len() > ENTRY_BYTES_MAX {
            return Err(EncodeError::EntryTooLarge {
                index: entry.index,
                bytes: entry.data.len(),
            });
        }
    }
    Ok(RecordHeader {
        total_bytes: bytes as u32,
        term: first.term,
        first_index: first.index,
        count: entries.len() as u32,
    })
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads and sanity-checks the fixed header at the start of `buf` (magic, version, length
/// bounds). Does *not* check the CRC: use [`check_record`] before trusting term, index or count.
pub fn peek_header(buf: &[u8]) -> Result<u32, DecodeError> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            need: RECORD_HEADER_BYTES,
            have: buf.len(),
        });
    }
    let magic = u32_at(buf, 0);
    if magic != RECORD_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = u16_at(buf, 8);
    if version != RECORD_VERSION {
        return Err(DecodeError::BadVersion { found: version });
    }
    let total = u32_at(buf, 12);
    if (total as usize) < RECORD_HEADER_BYTES + ENTRY_HEADER_BYTES
        || total as usize > RECORD_BYTES_MAX
    {
        return Err(DecodeError::BadLength {
            len: u64::from(total),
            max: RECORD_BYTES_MAX as u64,
        });
    }
    Ok(total)
}

/// The format version of the record at the start of `buf` if it is intact but of a version this
/// build does not read: magic, a plausible length, and a CRC that checks over it (the CRC
/// covers the version). A torn or damaged record is not one: its CRC fails.
pub fn foreign_version(buf: &[u8]) -> Option<u16> {
    if buf.len() < RECORD_HEADER_BYTES || u32_at(buf, 0) != RECORD_MAGIC {
        return None;
    }
    let version = u16_at(buf, 8);
    let total = u32_at(buf, 12) as usize;
    let plausible = version != RECORD_VERSION
        && (RECORD_HEADER_BYTES..=RECORD_BYTES_MAX).contains(&total)
        && total <= buf.len();
    (plausible && crc32fast::hash(&buf[8..total]) == u32_at(buf, 4)).then_some(version)
}

/// Validates the record at the start of `buf` completely (header, CRC, every entry's framing)
/// and returns its header. Bytes after the record are ignored.
pub fn check_record(buf: &[u8]) -> Result<RecordHeader, DecodeError> {
    let total = peek_header(buf)? as usize;
    if buf.len() < total {
        return Err(DecodeError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let stored = u32_at(buf, 4);
    let computed = crc32fast::hash(&buf[8..total]);
    if stored != computed {
        return Err(DecodeError::BadCrc { stored, computed });
    }
    let header = RecordHeader {
        total_bytes: total as u32,
        term: u64_at(buf, 16),
        first_index: u64_at(buf, 24),
        count: u32_at(buf, 32),
    };
    if header.first_index == 0 {
        return Err(DecodeError::BadHeader("first index is 0"));
    }
    if header.count == 0 || header.count as usize > BATCH_ENTRIES_MAX {
        return Err(DecodeError::BadHeader(
            "entry count is 0 or above BATCH_ENTRIES_MAX",
        ));
    }
    if header
        .first_index
        .checked_add(u64::from(header.count))
        .is_none()
    {
        return Err(DecodeError::BadHeader("index range overflows u64"));
    }
    walk_entries(&buf[..total], header.count, |_, _, _| ())?;
    Ok(header)
}

/// Calls `visit(position, kind, data range)` for each entry of a record whose header and CRC
/// were checked, verifying the framing as it goes.
fn walk_entries(
    record: &[u8],
    count: u32,
    mut visit: impl FnMut(u32, EntryKind, std::ops::Range<usize>),
) -> Result<(), DecodeError> {
    let mut at = RECORD_HEADER_BYTES;
    for entry in 0..count {
        if record.len() - at < ENTRY_HEADER_BYTES {
            return Err(DecodeError::BadEntry {
                entry,
                reason: "entry header runs past the record",
            });
        }
        let len = u32_at(record, at) as usize;
        let kind = match record[at + 4] {
            KIND_NORMAL => EntryKind::Normal,
            KIND_NOOP => EntryKind::Noop,
            KIND_CONFIG => EntryKind::Config,
            _ => {
                return Err(DecodeError::BadEntry {
                    entry,
                    reason: "unknown entry kind",
                })
            }
        };
        at += ENTRY_HEADER_BYTES;
        if len > ENTRY_BYTES_MAX || record.len() - at < len {
            return Err(DecodeError::BadEntry {
                entry,
                reason: "entry data runs past the record",
            });
        }
        visit(entry, kind, at..at + len);
        at += len;
    }
    if at != record.len() {
        return Err(DecodeError::BadEntry {
            entry: count,
            reason: "bytes left after the last entry",
        });
    }
    Ok(())
}

/// Decodes the record at the start of `buf` into entries. The entries' data share `buf`'s
/// memory (no copy).
pub fn decode_batch(buf: &Bytes) -> Result<(RecordHeader, Vec<Entry>), DecodeError> {
    let header = check_record(buf)?;
    let record = buf.slice(..header.total_bytes as usize);
    let mut entries = Vec::with_capacity(header.count as usize);
    push_entries(&record, &header, &mut entries)?;
    Ok((header, entries))
}

/// Appends the entries of `record` (whose header and CRC were checked) to `out`, their data
/// slices of `record`; an entry alone in its record carries it ([`Entry::record`]).
fn push_entries(
    record: &Bytes,
    header: &RecordHeader,
    out: &mut Vec<Entry>,
) -> Result<(), DecodeError> {
    let own_record = (header.count == 1).then(|| record.clone());
    walk_entries(record, header.count, |position, kind, range| {
        out.push(Entry {
            term: header.term,
            index: header.first_index + u64::from(position),
            kind,
            data: record.slice(range),
            record: own_record.clone(),
        });
    })
}

/// Decodes a run of records placed one after the other (the batch of an AppendEntries),
/// checking each one's CRC once; at most `entries_max` entries in all. The entries' data (and
/// their records) share `buf`'s memory.
pub fn decode_records(buf: &Bytes, entries_max: usize) -> Result<Vec<Entry>, DecodeError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let header = check_record(&buf[at..])?;
        if entries.len() + header.count as usize > entries_max {
            return Err(DecodeError::BadHeader("more entries than a batch may hold"));
        }
        let end = at + header.total_bytes as usize;
        push_entries(&buf.slice(at..end), &header, &mut entries)?;
        at = end;
    }
    Ok(entries)
}

/// Encodes one entry as a record of its own, its payload written by `write_payload` straight
/// into the record, so that a command is encoded once, in place. Returns the record and the
/// payload (a slice of it), to become [`Entry::record`] and [`Entry::data`].
pub fn encode_single_with(
    term: Term,
    index: Index,
    kind: EntryKind,
    payload_bytes_hint: usize,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> Result<(Bytes, Bytes), EncodeError> {
    if index == 0 {
        return Err(EncodeError::NotContiguous {
            expected: 1,
            found: 0,
        });
    }
    let payload_at = RECORD_HEADER_BYTES + ENTRY_HEADER_BYTES;
    let mut out = Vec::with_capacity(payload_at + payload_bytes_hint);
    out.resize(payload_at, 0);
    write_payload(&mut out);
    let payload_bytes = out.len() - payload_at;
    if payload_bytes > ENTRY_BYTES_MAX {
        return Err(EncodeError::EntryTooLarge {
            index,
            bytes: payload_bytes,
        });
    }
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    out[8..10].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&total.to_le_bytes());
    out[16..24].copy_from_slice(&term.to_le_bytes());
    out[24..32].copy_from_slice(&index.to_le_bytes());
    out[32..36].copy_from_slice(&1u32.to_le_bytes());
    out[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + 4]
        .copy_from_slice(&(payload_bytes as u32).to_le_bytes());
    out[RECORD_HEADER_BYTES + 4] = kind_byte(kind);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(check_record(&out).is_ok());
    let record = Bytes::from(out);
    let data = record.slice(payload_at..);
    Ok((record, data))
}

fn kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Config => KIND_CONFIG,
    }
}

/// Appends to `out` the records of `entries` (consecutive indexes; terms may change): an
/// entry's own record ([`Entry::record`]) as it is, runs of entries without one encoded as in
/// [`encode_records`].
pub fn records_for(
    entries: &[Entry],
    record_bytes_max: usize,
    out: &mut Vec<EncodedRecord>,
) -> Result<(), EncodeError> {
    // At most one record per entry (a run without records of its own is encoded into fewer).
    out.reserve(entries.len());
    let mut start = 0;
    while start < entries.len() {
        if let Some(record) = EncodedRecord::of_entry(&entries[start]) {
            out.push(record);
            start += 1;
            continue;
        }
        let end = run_without_records(entries, start);
        out.extend(encode_records(&entries[start..end], record_bytes_max)?);
        start = end;
    }
    Ok(())
}

/// End of the run of entries from `start` that carry no record of their own.
fn run_without_records(entries: &[Entry], start: usize) -> usize {
    entries[start..]
        .iter()
        .position(|e| EncodedRecord::of_entry(e).is_some())
        .map_or(entries.len(), |n| start + n)
}

/// Appends the bytes of the records of `entries` (see [`records_for`]) to `out`: the batch of
/// an AppendEntries. Entries that carry their record are copied as they are, not re-encoded.
pub fn encode_records_into(entries: &[Entry], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut start = 0;
    while start < entries.len() {
        if let Some(record) = EncodedRecord::of_entry(&entries[start]) {
            out.extend_from_slice(record.bytes());
            start += 1;
            continue;
        }
        let end = run_without_records(entries, start);
        for record in encode_records(&entries[start..end], RECORD_BYTES_MAX)? {
            out.extend_from_slice(record.bytes());
        }
        start = end;
    }
    Ok(())
}

/// A record that has been encoded or verified, ready to be appended as it is.
#[derive(Clone, Debug)]
pub struct EncodedRecord {
    header: RecordHeader,
    bytes: Bytes,
}

impl EncodedRecord {
    /// Encodes `entries` (see [`encode_batch_into`]).
    pub fn encode(entries: &[Entry]) -> Result<EncodedRecord, EncodeError> {
        let (header, bytes) = encode_batch(entries)?;
        Ok(EncodedRecord { header, bytes })
    }

    /// The record an entry carries ([`Entry::record`]), if it has one and it is that entry's own:
    /// one entry, the same index and term. Its CRC was checked where it was made or received,
    /// so only the header is read here.
    pub fn of_entry(entry: &Entry) -> Option<EncodedRecord> {
        let bytes = entry.record.as_ref()?;
        let total = peek_header(bytes).ok()? as usize;
        let header = RecordHeader {
            total_bytes: total as u32,
            term: u64_at(bytes, 16),
            first_index: u64_at(bytes, 24),
            count: u32_at(bytes, 32),
        };
        let own = total == bytes.len()
            && header.count == 1
            && header.first_index == entry.index
            && header.term == entry.term;
        debug_assert!(
            own,
            "entry {} carries a record that is not its own",
            entry.index
        );
        own.then(|| EncodedRecord {
            header,
            bytes: bytes.clone(),
        })
    }

    /// Verifies bytes received from elsewhere (e.g. the wire); they must be exactly one record.
    pub fn from_bytes(bytes: Bytes) -> Result<EncodedRecord, DecodeError> {
        let header = check_record(&bytes)?;
        if header.total_bytes as usize != bytes.len() {
            return Err(DecodeError::BadLength {
                len: bytes.len() as u64,
                max: u64::from(header.total_bytes),
            });
        }
        Ok(EncodedRecord { header, bytes })
    }

    /// The record's header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The record's bytes, exactly `header().total_bytes` long.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Splits `entries` (consecutive indexes, terms may change) into runs of one term, each at most
/// `record_bytes_max` encoded bytes and [`BATCH_ENTRIES_MAX`] entries, and encodes each.
pub fn encode_records(
    entries: &[Entry],
    record_bytes_max: usize,
) -> Result<Vec<EncodedRecord>, EncodeError> {
    let mut records = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let term = entries[start].term;
        let mut end = start;
        let mut bytes = RECORD_HEADER_BYTES;
        while end < entries.len() && entries[end].term == term && end - start < BATCH_ENTRIES_MAX {
            let next = bytes + entry_encoded_bytes(&entries[end]);
            if next > record_bytes_max && end > start {
                break;
            }
            bytes = next;
            end += 1;
        }
        let record = EncodedRecord::encode(&entries[start..end])?;
        if record.header.total_bytes as usize > record_bytes_max {
            return Err(EncodeError::TooLarge {
                entries: 1,
                bytes: record.header.total_bytes as usize,
                max_entries: BATCH_ENTRIES_MAX,
                max_bytes: record_bytes_max,
            });
        }
        records.push(record);
        start = end;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: Index, n: usize, term: Term) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                term,
                index: first + i as u64,
                kind: if i % 3 == 0 {
                    EntryKind::Noop
                } else {
                    EntryKind::Normal
                },
                data: Bytes::from(vec![i as u8; i * 7]),
                record: None,
            })
            .collect()
    }

    #[test]
    fn round_trip() {
        let batch = entries(5, 10, 3);
        let (header, bytes) = encode_batch(&batch).expect("encode");
        assert_eq!(header.last_index(), 14);
        let (decoded_header, decoded) = decode_batch(&bytes).expect("decode");
        assert_eq!(decoded_header, header);
        assert_eq!(decoded, batch);
    }

    #[test]
    fn every_single_bit_flip_is_rejected_and_never_panics() {
        let (_, bytes) = encode_batch(&entries(1, 4, 2)).expect("encode");
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.to_vec();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_batch(&Bytes::from(bad)).is_err(),
                    "flip at {byte}:{bit} accepted"
                );
            }
        }
        for len in 0..bytes.len() {
            assert!(decode_batch(&bytes.slice(..len)).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::core::SplitMix64::new(7);
        for _ in 0..2000 {
            let len = rng.below(200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len >= 4 && rng.chance(0.5) {
                buf[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
            }
            let _ = decode_batch(&Bytes::from(buf));
        }
    }

    #[test]
    fn encode_rejects_bad_batches() {
        assert_eq!(encode_batch(&[]).unwrap_err(), EncodeError::Empty);
        let mut mixed = entries(1, 3, 1);
        mixed[2].term = 2;
        assert!(matches!(
            encode_batch(&mixed),
            Err(EncodeError::MixedTerms { .. })
        ));
        let mut gap = entries(1, 3, 1);
        gap[2].index = 9;
        assert!(matches!(
            encode_batch(&gap),
            Err(EncodeError::NotContiguous { .. })
        ));
    }

    #[test]
    fn split_by_term_and_size() {
        let mut batch = entries(1, 6, 1);
        batch.extend(entries(7, 6, 2));
        let records = encode_records(&batch, 100).expect("encode");
        assert!(records.len() > 2);
        let mut next = 1;
        for record in &records {
            assert_eq!(record.header().first_index, next);
            next = record.header().last_index() + 1;
        }
        assert_eq!(next, 13);
    }
}
