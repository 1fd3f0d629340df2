//! [`HardStateStore`]: term and vote, kept apart from the log and replaced atomically.
//!
//! The file `hard_state` holds two 4096-byte slots. Each save writes the slot *not* holding the
//! newest value, with a sequence number one higher, then fdatasyncs. A crash during a save can
//! only damage the slot being written, so the other still holds the previous value: on load the
//! valid slot with the highest sequence number wins, and a reader sees the old value or the new
//! one, never a mix (each slot is checked by its CRC).
//!
//! Slot layout (little-endian): magic u32, crc u32 (of bytes 8..48), version u16, reserved u16,
//! reserved u32, sequence u64, current_term u64, voted_for u64 (0 = none), acked_index u64.
//! Version 1 slots (40 bytes, no `acked_index`) still load, with `acked_index` 0: a node written
//! by an older build claims no acknowledgement, as before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::core::HardState;
use crate::log::error::StorageError;
use crate::log::io::{sync_data, sync_dir, BLOCK_BYTES};

/// File name of the hard state inside a log directory.
pub const HARD_STATE_FILE: &str = "hard_state";
const SLOT_MAGIC: u32 = 0x5252_4853; // "SHRR" little-endian
const SLOT_VERSION: u16 = 2;
const SLOT_VERSION_WITHOUT_ACKED: u16 = 1;
const SLOT_BYTES: usize = 48;
const SLOT_BYTES_WITHOUT_ACKED: usize = 40;

/// The durable term and vote of one node.
pub struct HardStateStore {
    path: PathBuf,
    file: File,
    /// Sequence number of the newest valid slot (0 if none was ever written).
    sequence: u64,
}

enum Slot {
    Empty,
    Valid { sequence: u64, state: HardState },
    Invalid(String),
}

impl HardStateStore {
    /// Opens (creating if needed) `dir/hard_state` and returns the newest durable value
    /// (the default, term 0 and no vote, if none was ever saved).
    pub fn open(dir: &Path) -> Result<(HardStateStore, HardState), StorageError> {
        crate::log::segmented::create_dir_durably(dir)?;
        let path = dir.join(HARD_STATE_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io("opening hard state", &path, e))?;
        if !existed {
            sync_data(&file, &path);
            sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))?;
        }
        let slots = [read_slot(&file, 0, &path)?, read_slot(&file, 1, &path)?];
        let (sequence, state) = choose(&slots, &path)?;
        Ok((
            HardStateStore {
                path,
                file,
                sequence,
            },
            state,
        ))
    }

    /// Makes `state` durable, replacing the previous value atomically. Returns once it is on
    /// disk; a failed fdatasync panics.
    pub fn save(&mut self, state: &HardState) -> Result<(), StorageError> {
        let sequence = self.sequence + 1;
        let slot = encode_slot(sequence, state);
        let offset = (sequence % 2) * BLOCK_BYTES as u64;
        self.file
            .write_all_at(&slot, offset)
            .map_err(|e| StorageError::io("writing hard state", &self.path, e))?;
        sync_data(&self.file, &self.path);
        self.sequence = sequence;
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode_slot(sequence: u64, state: &HardState) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..4].copy_from_slice(&SLOT_MAGIC.to_le_bytes());
    slot[8..10].copy_from_slice(&SLOT_VERSION.to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&state.current_term.to_le_bytes());
    slot[32..40].copy_from_slice(&state.voted_for.unwrap_or(0).to_le_bytes());
    slot[40..48].copy_from_slice(&state.acked_index.to_le_bytes());
    let crc = crc32fast::hash(&slot[8..]);
    slot[4..8].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn read_slot(file: &File, slot: u64, path: &Path) -> Result<Slot, StorageError> {
    let mut buf = [0u8; SLOT_BYTES];
    let mut got = 0;
    // A short file (a torn first save, or a fresh file) reads as zeros past its end.
    while got < SLOT_BYTES {
        let n = file
            .read_at(&mut buf[got..], slot * BLOCK_BYTES as u64 + got as u64)
            .map_err(|e| StorageError::io("reading hard state", path, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(decode_slot(&buf))
}

fn decode_slot(buf: &[u8; SLOT_BYTES]) -> Slot {
    if buf.iter().all(|&b| b == 0) {
        return Slot::Empty;
    }
    let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != SLOT_MAGIC {
        return Slot::Invalid("bad magic".into());
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    let (covered, acked_index) = match version {
        SLOT_VERSION => (SLOT_BYTES, u64_at(40)),
        SLOT_VERSION_WITHOUT_ACKED => (SLOT_BYTES_WITHOUT_ACKED, 0),
        _ => return Slot::Invalid(format!("unknown version {version}")),
    };
    if crc32fast::hash(&buf[8..covered]) != u32_at(4) {
        return Slot::Invalid("CRC mismatch".into());
    }
    let voted_for = u64_at(32);
    Slot::Valid {
        sequence: u64_at(16),
        state: HardState {
            current_term: u64_at(24),
            voted_for: (voted_for != 0).then_some(voted_for),
            acked_index,
        },
    }
}

/// The newest valid slot. Both slots invalid can only be damage, not a crash (a save touches
/// one slot), except when the very first save was torn and the other slot is still empty.
fn choose(slots: &[Slot; 2], path: &Path) -> Result<(u64, HardState), StorageError> {
    let best = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Valid { sequence, state } => Some((*sequence, *state)),
            _ => None,
        })
        .max_by_key(|(sequence, _)| *sequence);
    if let Some(best) = best {
        return Ok(best);
    }
    match slots {
        [Slot::Invalid(a), Slot::Invalid(b)] => Err(StorageError::HardStateCorrupt {
            file: path.to_path_buf(),
            reason: format!("slot 0: {a}; slot 1: {b}"),
        }),
        _ => Ok((0, HardState::default())),
    }
}
