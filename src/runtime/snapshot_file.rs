//! The node's snapshot file: written from a buffer the node keeps between snapshots, with
//! O_DIRECT, and replaced atomically by rename.
//!
//! Why a kept buffer: a snapshot of 100k keys of 1 KiB is about 100 MiB. Serialized into a fresh
//! `Vec` each time, every page of it was a fresh page the kernel zeroed on first touch (19% of a
//! machine-wide profile was `clear_page_erms`), and written through the page cache, every byte
//! was copied once more into it (`copy_folio_from_iter_atomic`, 8.8% of the leader's samples).
//! Here the state machine is serialized into an [`AlignedBuf`] taken from a small pool, written
//! straight from it with O_DIRECT, and handed back as [`Bytes`] that give the buffer back to the
//! pool when the last reference goes. The core keeps only the snapshot's position and length:
//! followers are streamed its chunks, read from the file ([`SnapshotReader`]).
//!
//! File format, version 2 (`SRN2`), all integers little-endian:
//! `[magic u32][index u64][term u64][data_len u64][data_crc u32][trailer_len u32][header_crc u32]`
//! then the data, then the trailer (the configuration: `[membership][len u32][crc u32]`, absent
//! when empty), then zeros up to a multiple of [`BLOCK_BYTES`] (O_DIRECT writes whole blocks).
//! The header CRC covers the 36 bytes before it. Version 1 files (`SRNP`: no trailer length,
//! no header CRC, no padding) are still read.
//!
//! Crash safety: the file is written as `snapshot.tmp`, made durable (fdatasync), renamed over
//! `snapshot` and the directory fsynced; a torn file fails its CRCs and is refused by name.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::core::{Index, Membership, Snapshot, SnapshotMeta};
use crate::kv::{KvStore, SnapshotSink};
use crate::limits::{SNAPSHOT_BUFFERS_MAX, SNAPSHOT_BYTES_MAX};
use crate::log::{AlignedBuf, StorageError, BLOCK_BYTES};

const MAGIC_V1: u32 = 0x5352_4e50; // "SRNP"
const HEADER_V1_BYTES: usize = 4 + 8 + 8 + 8 + 4;
const MAGIC_V2: u32 = 0x5352_4e32; // "SRN2"
const HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 4 + 4 + 4;
/// Bytes of a snapshot written by one call, between two pacing waits.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// The pace of snapshot writes: a sixth of what the development VM's disk takes sequentially
/// (~770 MiB/s), so that three nodes sharing it in a benchmark leave the log most of it. A
/// 100 MiB snapshot takes under a second.
const SNAPSHOT_WRITE_BYTES_PER_S: f64 = 128.0 * 1024.0 * 1024.0;
/// Largest snapshot file: the state machine's bytes within [`SNAPSHOT_BYTES_MAX`] (what a
/// follower accepts), plus the header, a configuration and the padding.
const SNAPSHOT_FILE_BYTES_MAX: usize = SNAPSHOT_BYTES_MAX + (1 << 20);

const _: () = assert!(HEADER_BYTES < BLOCK_BYTES && WRITE_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));

type Pool = Arc<Mutex<Vec<AlignedBuf>>>;

/// The snapshot file, shared by the disk queue (snapshots installed from the leader, ordered
/// with the log writes around them) and the snapshot writer (snapshots this node takes, which
/// need no such order once the entries they cover are durable).
pub struct SnapshotFile {
    dir: PathBuf,
    /// Last included index of the snapshot on disk (0: none). Held while writing, so that two
    /// saves never interleave on `snapshot.tmp`.
    saved_index: Mutex<Index>,
    /// Buffers to serialize into, kept between snapshots (at most [`SNAPSHOT_BUFFERS_MAX`]).
    spare: Pool,
}

/// A snapshot serialized into a pooled buffer, ready to write: the whole file image.
pub struct SnapshotImage {
    meta: SnapshotMeta,
    buf: AlignedBuf,
    data_len: usize,
    pool: Pool,
}

impl SnapshotFile {
    /// The snapshot file of `dir` and the snapshot it holds (none if there is no file). A
    /// damaged file is an error naming it, never ignored.
    pub fn open(dir: &Path) -> Result<(SnapshotFile, Option<Snapshot>), StorageError> {
        let snapshot = read_snapshot(&dir.join("snapshot"))?;
        let file = SnapshotFile {
            dir: dir.to_path_buf(),
            saved_index: Mutex::new(snapshot.as_ref().map_or(0, |s| s.meta.last_included_index)),
            spare: Arc::default(),
        };
        Ok((file, snapshot))
    }

    /// Serializes `kv` as the snapshot `meta` into a kept buffer (a new one only when none is
    /// free; it grows only when the state did). Fails, saying so, above
    /// [`SNAPSHOT_BYTES_MAX`].
    pub fn serialize(
        &self,
        meta: SnapshotMeta,
        kv: &KvStore,
    ) -> Result<SnapshotImage, StorageError> {
        let data_len = kv.snapshot_bytes();
        if data_len > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::Snapshot(format!(
                "the state machine at index {} serializes to {data_len} bytes, more than a \
                 snapshot may hold (SNAPSHOT_BYTES_MAX, {SNAPSHOT_BYTES_MAX} bytes): the node \
                 cannot compact its log; delete keys or raise the limit",
                meta.last_included_index
            )));
        }
        let buf = self.take_spare();
        let mut image = SnapshotImage {
            meta,
            buf,
            data_len,
            pool: self.spare.clone(),
        };
        image.fill(|buf| kv.snapshot_into(buf));
        Ok(image)
    }

    fn take_spare(&self) -> AlignedBuf {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        // The largest one: the state mostly grows, and a buffer that fits is never regrown.
        let largest = (0..spare.len()).max_by_key(|&i| spare[i].capacity());
        match largest {
            Some(i) => spare.swap_remove(i),
            None => AlignedBuf::with_capacity(0),
        }
    }

    /// Makes `snapshot`, received from the leader, the node's snapshot, atomically.
    pub fn save_installed(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if snapshot.data.len() > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::Snapshot(format!(
                "installed snapshot of {} bytes is larger than SNAPSHOT_BYTES_MAX",
                snapshot.data.len()
            )));
        }
        let mut image = SnapshotImage {
            meta: snapshot.meta.clone(),
            buf: self.take_spare(),
            data_len: snapshot.data.len(),
            pool: self.spare.clone(),
        };
        image.fill(|buf| {
            buf.extend_from_slice(&snapshot.data);
            crc32fast::hash(&snapshot.data)
        });
        let mut saved_index = self.lock();
        write_snapshot(&self.dir, &image)?;
        *saved_index = snapshot.meta.last_included_index;
        Ok(())
    }

    /// Makes `image`, taken of this node's state machine, the node's snapshot unless the one
    /// on disk is as new or newer: a snapshot installed from the leader while this one was being
    /// written has already replaced the log prefix it covers, and must not be rolled back.
    /// Returns the snapshot, its data sharing the image's buffer (given back to the pool when
    /// the last reference goes), whether or not it was written.
    pub fn save_taken(&self, image: SnapshotImage) -> Result<Snapshot, StorageError> {
        let mut saved_index = self.lock();
        if image.meta.last_included_index > *saved_index {
            write_snapshot(&self.dir, &image)?;
            *saved_index = image.meta.last_included_index;
        }
        Ok(image.into_snapshot())
    }

    /// Opens the snapshot on disk for reading chunks of its data, if it is the one ending at
    /// `index` (a newer one may have replaced it: then `None`, and the chunks are not sent).
    pub fn reader(&self, index: Index) -> Result<Option<SnapshotReader>, StorageError> {
        let path = self.dir.join("snapshot");
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("opening snapshot", &path, e)),
        };
        let mut header = [0u8; HEADER_BYTES];
        let read = file
            .read_at(&mut header, 0)
            .map_err(io("reading snapshot header", &path))?;
        let (data_offset, header_ok) = match u32_at(&header, 0) {
            MAGIC_V2 => (
                HEADER_BYTES,
                read == HEADER_BYTES && crc32fast::hash(&header[..36]) == u32_at(&header, 36),
            ),
            MAGIC_V1 => (HEADER_V1_BYTES, read >= HEADER_V1_BYTES),
            _ => (0, false),
        };
        if !header_ok {
            return Err(StorageError::Snapshot(format!(
                "snapshot file {} has a damaged header",
                path.display()
            )));
        }
        if u64_at(&header, 4) != index {
            return Ok(None);
        }
        Ok(Some(SnapshotReader {
            index,
            file,
            path,
            data_offset: data_offset as u64,
            data_bytes: u64_at(&header, 20),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while writing is a failed fsync, which aborts the node; the index stays right.
        self.saved_index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The data of one snapshot file, read a chunk at a time to stream it to a follower. The file
/// stays open, so a newer snapshot renamed over it does not change what this reads.
pub struct SnapshotReader {
    index: Index,
    file: File,
    path: PathBuf,
    data_offset: u64,
    data_bytes: u64,
}

impl SnapshotReader {
    /// The last included index of the snapshot it reads.
    pub fn index(&self) -> Index {
        self.index
    }

    /// `len` bytes of the data from `offset`; an error if they lie beyond its end.
    pub fn read_chunk(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.data_bytes);
        if end.is_none() {
            return Err(StorageError::Snapshot(format!(
                "chunk {offset}+{len} lies beyond the {} bytes of snapshot {}",
                self.data_bytes,
                self.path.display()
            )));
        }
        let mut chunk = vec![0u8; len];
        self.file
            .read_exact_at(&mut chunk, self.data_offset + offset)
            .map_err(io("reading snapshot chunk", &self.path))?;
        Ok(Bytes::from(chunk))
    }
}

impl SnapshotImage {
    /// Lays out header, data (written by `data`, which returns its CRC32), trailer and padding
    /// in the buffer.
    fn fill(&mut self, data: impl FnOnce(&mut AlignedBuf) -> u32) {
        let trailer = membership_trailer(&self.meta.membership);
        let buf = &mut self.buf;
        buf.clear();
        let file_bytes = HEADER_BYTES + self.data_len + trailer.len() + BLOCK_BYTES;
        if buf.capacity() < file_bytes {
            // A quarter more than needed, so that a state that grows a little does not regrow
            // (and refault) the buffer at every snapshot: the two buffers alternate, so each
            // regrowth is paid twice.
            buf.reserve_exact(file_bytes + file_bytes / 4);
        }
        buf.extend_from_slice(&[0; HEADER_BYTES]);
        let data_crc = data(buf);
        assert_eq!(
            buf.len() - HEADER_BYTES,
            self.data_len,
            "the state machine wrote the size it announced"
        );
        buf.extend_from_slice(&trailer);
        buf.pad_to_block();
        debug_assert_eq!(
            data_crc,
            crc32fast::hash(&buf.as_slice()[HEADER_BYTES..][..self.data_len])
        );
        let mut header = [0u8; HEADER_BYTES];
        header[0..4].copy_from_slice(&MAGIC_V2.to_le_bytes());
        header[4..12].copy_from_slice(&self.meta.last_included_index.to_le_bytes());
        header[12..20].copy_from_slice(&self.meta.last_included_term.to_le_bytes());
        header[20..28].copy_from_slice(&(self.data_len as u64).to_le_bytes());
        header[28..32].copy_from_slice(&data_crc.to_le_bytes());
        header[32..36].copy_from_slice(&(trailer.len() as u32).to_le_bytes());
        let header_crc = crc32fast::hash(&header[..36]);
        header[36..40].copy_from_slice(&header_crc.to_le_bytes());
        buf.as_mut_slice()[..HEADER_BYTES].copy_from_slice(&header);
        debug_assert!(buf.len() <= SNAPSHOT_FILE_BYTES_MAX);
    }

    /// The file's bytes (a multiple of [`BLOCK_BYTES`]).
    fn file_bytes(&self) -> &[u8] {
        self.buf.as_slice()
    }

    /// Where the buffer's memory starts and how much it holds: the same across two snapshots
    /// when it was reused.
    pub fn buffer_identity(&self) -> (usize, usize) {
        (self.buf.as_slice().as_ptr() as usize, self.buf.capacity())
    }

    fn into_snapshot(mut self) -> Snapshot {
        let data_len = self.data_len;
        let owner = Pooled {
            buf: Some(std::mem::replace(&mut self.buf, AlignedBuf::empty())),
            pool: self.pool.clone(),
        };
        Snapshot {
            meta: self.meta.clone(),
            data: Bytes::from_owner(owner).slice(HEADER_BYTES..HEADER_BYTES + data_len),
        }
    }
}

/// A buffer lent out as [`Bytes`]; back to the pool when dropped, if the pool has room.
struct Pooled {
    buf: Option<AlignedBuf>,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_slice())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut spare = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buf) = self.buf.take() {
            if spare.len() < SNAPSHOT_BUFFERS_MAX {
                spare.push(buf);
            }
        }
    }
}

impl Drop for SnapshotImage {
    fn drop(&mut self) {
        // An image dropped without becoming a snapshot (an installed one, a failed write).
        let buf = std::mem::replace(&mut self.buf, AlignedBuf::empty());
        if buf.capacity() > 0 {
            drop(Pooled {
                buf: Some(buf),
                pool: self.pool.clone(),
            });
        }
    }
}

impl SnapshotSink for AlignedBuf {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The configuration after a snapshot's data: `[membership][len u32][crc u32]`, or nothing.
fn membership_trailer(membership: &Membership) -> Vec<u8> {
    if membership.is_empty() {
        return Vec::new();
    }
    let mut trailer = membership.encode();
    let len = trailer.len() as u32;
    let crc = crc32fast::hash(&trailer);
    trailer.extend_from_slice(&len.to_le_bytes());
    trailer.extend_from_slice(&crc.to_le_bytes());
    trailer
}

fn io<'p>(what: &'static str, p: &'p Path) -> impl FnOnce(std::io::Error) -> StorageError + 'p {
    move |e| StorageError::io(what, p, e)
}

/// Creates `path` for O_DIRECT writes, or plain ones where the filesystem refuses O_DIRECT
/// (tmpfs). Returns whether O_DIRECT is on.
fn create_direct(path: &Path) -> std::io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    match options.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// Writes `dir/snapshot` atomically: a temporary file written with O_DIRECT from the image's
/// buffer, fdatasync, rename, fsync of the directory.
fn write_snapshot(dir: &Path, image: &SnapshotImage) -> Result<(), StorageError> {
    let tmp = dir.join("snapshot.tmp");
    let path = dir.join("snapshot");
    let (file, _direct) = create_direct(&tmp).map_err(io("creating snapshot", &tmp))?;
    // A chunk at a time, at most SNAPSHOT_WRITE_BYTES_PER_S: at the device's full speed, three
    // nodes saving 100 MiB snapshots at once made each log flush wait behind them (15-30 ms
    // instead of ~1 ms on `3node-1kb`). O_DIRECT leaves nothing dirty in the page cache, so no
    // writeback waits are needed between chunks.
    let started = std::time::Instant::now();
    let mut at = 0u64;
    for chunk in image.file_bytes().chunks(WRITE_CHUNK_BYTES) {
        file.write_all_at(chunk, at)
            .map_err(io("writing snapshot", &tmp))?;
        at += chunk.len() as u64;
        let due = std::time::Duration::from_secs_f64(at as f64 / SNAPSHOT_WRITE_BYTES_PER_S);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    // O_DIRECT bypasses the page cache, not the device cache nor the file's metadata.
    file.sync_data().map_err(io("syncing snapshot", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("renaming snapshot", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing data directory", dir))?;
    Ok(())
}

/// Reads `path` if it exists; a damaged snapshot is an error naming the file, never ignored.
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("reading snapshot", path, e)),
    };
    let bad = |reason: String| {
        StorageError::Snapshot(format!(
            "snapshot file {} is damaged: {reason}; move it aside to start from the log and \
             the cluster",
            path.display()
        ))
    };
    if bytes.len() < 4 {
        return Err(bad("shorter than its header".into()));
    }
    let parsed = match u32_at(&bytes, 0) {
        MAGIC_V2 => parse_v2(&bytes),
        MAGIC_V1 => parse_v1(&bytes),
        magic => Err(format!(
            "bad magic {magic:#010x} (neither version 2 {MAGIC_V2:#010x} nor version 1 \
             {MAGIC_V1:#010x})"
        )),
    };
    let (index, term, data, trailer) = parsed.map_err(bad)?;
    let membership = read_membership_trailer(&bytes[trailer]).map_err(bad)?;
    let meta = SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
        membership,
    };
    Ok(Some(Snapshot {
        meta,
        data: Bytes::from(bytes).slice(data),
    }))
}

type Parsed = (Index, u64, std::ops::Range<usize>, std::ops::Range<usize>);

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn check_data(bytes: &[u8], data: &std::ops::Range<usize>, crc: u32) -> Result<(), String> {
    if crc32fast::hash(&bytes[data.clone()]) != crc {
        return Err("data CRC mismatch".into());
    }
    Ok(())
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if crc32fast::hash(&bytes[..36]) != u32_at(bytes, 36) {
        return Err("header CRC mismatch".into());
    }
    let (index, term) = (u64_at(bytes, 4), u64_at(bytes, 12));
    let data_len = u64_at(bytes, 20).min(SNAPSHOT_FILE_BYTES_MAX as u64) as usize;
    let trailer_len = u32_at(bytes, 32) as usize;
    let end = HEADER_BYTES + data_len + trailer_len;
    let padded = crate::log::align_up(end as u64) as usize;
    if bytes.len() != padded {
        return Err(format!(
            "{} bytes but its header says {padded} (data {data_len}, configuration \
             {trailer_len}, padded to {BLOCK_BYTES}): torn or truncated",
            bytes.len()
        ));
    }
    let data = HEADER_BYTES..HEADER_BYTES + data_len;
    check_data(bytes, &data, u32_at(bytes, 28))?;
    Ok((index, term, data.clone(), data.end..end))
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, String> {
    if bytes.len() < HEADER_V1_BYTES {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    let (index, term, len) = (u64_at(bytes, 4), u64_at(bytes, 12), u64_at(bytes, 20));
    let body = bytes.len() - HEADER_V1_BYTES;
    if (body as u64) < len {
        return Err(format!("length {body} but header says {len}"));
    }
    let data = HEADER_V1_BYTES..HEADER_V1_BYTES + len as usize;
    check_data(bytes, &data, u32_at(bytes, 28))?;
    Ok((index, term, data.clone(), data.end..bytes.len()))
}

/// The configuration after a snapshot's data; none in files written before membership changes.
fn read_membership_trailer(trailer: &[u8]) -> Result<Membership, String> {
    if trailer.is_empty() {
        return Ok(Membership::default());
    }
    if trailer.len() < 8 {
        return Err(format!("{} stray bytes after the data", trailer.len()));
    }
    let (membership, tail) = trailer.split_at(trailer.len() - 8);
    let len = u32_at(tail, 0) as usize;
    let crc = u32_at(tail, 4);
    if len != membership.len() {
        return Err(format!(
            "configuration of {} bytes but its length says {len}",
            membership.len()
        ));
    }
    if crc32fast::hash(membership) != crc {
        return Err("configuration CRC mismatch".into());
    }
    Membership::decode(membership).map_err(|e| format!("configuration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConfChange;

    fn meta(index: Index, membership: Membership) -> SnapshotMeta {
        SnapshotMeta {
            last_included_index: index,
            last_included_term: 3,
            membership,
        }
    }

    fn store(keys: u64, value_bytes: usize) -> KvStore {
        let mut kv = KvStore::new();
        for k in 0..keys {
            let command = crate::kv::Command {
                client_id: 0,
                sequence: 0,
                op: crate::kv::Op::Put {
                    key: format!("key-{k:06}").into_bytes(),
                    value: vec![k as u8; value_bytes],
                },
            };
            kv.apply(k + 1, &command.encode());
        }
        kv
    }

    fn save(file: &SnapshotFile, index: Index, kv: &KvStore, m: Membership) -> Snapshot {
        let image = file.serialize(meta(index, m), kv).expect("serialize");
        file.save_taken(image).expect("save")
    }

    #[test]
    fn a_taken_snapshot_reads_back_with_state_and_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, none) = SnapshotFile::open(dir.path()).unwrap();
        assert!(none.is_none());
        let membership = Membership::from_voters([1, 2, 3])
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: Bytes::from_static(b"127.0.0.1:1/127.0.0.1:2"),
            })
            .unwrap();
        let kv = store(300, 1000);
        let taken = save(&file, 300, &kv, membership);
        assert_eq!(taken.data, Bytes::from(kv.snapshot()));
        let len = fs::metadata(dir.path().join("snapshot")).unwrap().len();
        assert_eq!(len % BLOCK_BYTES as u64, 0, "padded for O_DIRECT");
        let (_, read) = SnapshotFile::open(dir.path()).unwrap();
        let read = read.expect("a snapshot");
        assert_eq!(read, taken);
        assert_eq!(KvStore::decode_snapshot(&read.data).unwrap(), kv);
        // An older snapshot than the one on disk is not written.
        let stale = save(&file, 200, &store(10, 10), Membership::default());
        assert_eq!(stale.meta.last_included_index, 200);
        let (_, read) = SnapshotFile::open(dir.path()).unwrap();
        assert_eq!(read.unwrap().meta.last_included_index, 300);
    }

    #[test]
    fn the_buffer_is_reused_while_the_state_does_not_grow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, _) = SnapshotFile::open(dir.path()).unwrap();
        let kv = store(200, 1000);
        let first = file.serialize(meta(1, Membership::default()), &kv).unwrap();
        let first_buffer = first.buffer_identity();
        // The core holds the latest snapshot: the next one needs a second buffer.
        let held = file.save_taken(first).unwrap();
        let second = file.serialize(meta(2, Membership::default()), &kv).unwrap();
        let second_buffer = second.buffer_identity();
        assert_ne!(second_buffer.0, first_buffer.0);
        let newer = file.save_taken(second).unwrap();
        // The core lets go of the older one: its buffer serves the third.
        drop(held);
        let third = file.serialize(meta(3, Membership::default()), &kv).unwrap();
        assert_eq!(third.buffer_identity(), first_buffer);
        drop(newer);
        drop(file.save_taken(third).unwrap());
        // Both come back; the next one takes one of them without growing it.
        let fourth = file.serialize(meta(4, Membership::default()), &kv).unwrap();
        assert!([first_buffer, second_buffer].contains(&fourth.buffer_identity()));
        assert!(file.spare.lock().unwrap().len() <= SNAPSHOT_BUFFERS_MAX);
    }

    #[test]
    fn a_torn_or_damaged_snapshot_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, _) = SnapshotFile::open(dir.path()).unwrap();
        save(
            &file,
            7,
            &store(50, 500),
            Membership::from_voters([1, 2, 3]),
        );
        let path = dir.path().join("snapshot");
        let good = fs::read(&path).unwrap();
        let refused = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            let error = SnapshotFile::open(dir.path()).err().expect("refused");
            let error = error.to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
            error
        };
        // Cut at every block boundary and in the middle of blocks: never taken as valid.
        for cut in (0..good.len()).step_by(BLOCK_BYTES / 2) {
            refused(&good[..cut]);
        }
        let mut flipped = good.clone();
        flipped[HEADER_BYTES + 100] ^= 1;
        assert!(refused(&flipped).contains("data CRC mismatch"));
        let mut flipped = good.clone();
        flipped[5] ^= 1;
        assert!(refused(&flipped).contains("header CRC mismatch"));
        fs::write(&path, &good).unwrap();
        assert!(SnapshotFile::open(dir.path()).unwrap().1.is_some());
    }

    #[test]
    fn a_version_1_file_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = store(20, 100).snapshot();
        let membership = Membership::from_voters([1, 2, 3]);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC_V1.to_le_bytes());
        bytes.extend_from_slice(&9u64.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.extend_from_slice(&(data.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&membership_trailer(&membership));
        fs::write(dir.path().join("snapshot"), &bytes).unwrap();
        let (_, read) = SnapshotFile::open(dir.path()).unwrap();
        let read = read.expect("a snapshot");
        assert_eq!(read.meta.last_included_index, 9);
        assert_eq!(read.meta.membership, membership);
        assert_eq!(read.data, Bytes::from(data));
    }

    #[test]
    fn chunks_read_from_the_file_are_the_snapshot_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, _) = SnapshotFile::open(dir.path()).unwrap();
        let taken = save(&file, 12, &store(40, 300), Membership::from_voters([1, 2]));
        assert!(
            file.reader(11).unwrap().is_none(),
            "another snapshot's index"
        );
        let reader = file.reader(12).unwrap().expect("the snapshot at 12");
        let len = taken.data.len();
        let mut read = Vec::new();
        for offset in (0..len).step_by(1000) {
            let chunk = reader
                .read_chunk(offset as u64, 1000.min(len - offset))
                .unwrap();
            read.extend_from_slice(&chunk);
        }
        assert_eq!(read, taken.data);
        assert!(
            reader.read_chunk(len as u64 - 10, 11).is_err(),
            "beyond the end"
        );
        // A newer snapshot renamed over it: the open reader still reads the old one.
        save(&file, 20, &store(5, 10), Membership::default());
        assert_eq!(reader.read_chunk(0, 100).unwrap(), taken.data.slice(0..100));
        assert!(file.reader(12).unwrap().is_none());
    }

    #[test]
    fn an_installed_snapshot_is_saved_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, _) = SnapshotFile::open(dir.path()).unwrap();
        let snapshot = Snapshot {
            meta: meta(42, Membership::default()),
            data: Bytes::from(store(30, 64).snapshot()),
        };
        file.save_installed(&snapshot).unwrap();
        let (_, read) = SnapshotFile::open(dir.path()).unwrap();
        assert_eq!(read, Some(snapshot));
    }
}
