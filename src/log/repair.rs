//! Repair of mid-log corruption from the cluster: keep the valid prefix before the damage,
//! set the rest aside, and let the Raft core fetch it back from the leader.
//!
//! This is safe only together with the core's "Lost entries" rule: the entries cut off may
//! have been acknowledged, and the hard state's `acked_index` (untouched here) makes the
//! restarted node abstain from elections until its log is back past it. Nothing is deleted:
//! the damaged segment is copied, and the segments after it are moved, into `lost/` inside the
//! log directory, for an operator to inspect. `ringraft log verify` never repairs; it reports
//! what it finds.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::log::error::StorageError;
use crate::log::io::{sync_data, sync_dir};
use crate::log::segment::parse_segment_name;

/// Name of the directory, inside the log directory, that receives what a repair cut off.
pub const LOST_DIR: &str = "lost";
/// Zeros written per call when clearing the damaged segment's tail.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// What one repair did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The damaged segment.
    pub file: PathBuf,
    /// The first bad byte: the segment keeps the records before it.
    pub offset: u64,
    /// What recovery found there.
    pub reason: String,
    /// Later segments moved into `lost/`.
    pub moved: Vec<PathBuf>,
}

/// Cuts the log in `dir` at `offset` of segment `file`: the segment keeps its bytes before
/// `offset` (a copy of the whole file goes to `lost/`), later segments move to `lost/`.
pub fn cut_at_corruption(
    dir: &Path,
    file: &Path,
    offset: u64,
    reason: String,
) -> Result<Repair, StorageError> {
    let damaged_first = file
        .file_name()
        .and_then(|n| parse_segment_name(&n.to_string_lossy()))
        .ok_or_else(|| StorageError::Layout {
            file: file.to_path_buf(),
            reason: "cannot repair: not a segment file name".into(),
        })?;
    let lost = dir.join(LOST_DIR);
    fs::create_dir_all(&lost).map_err(|e| StorageError::io("creating", &lost, e))?;
    let copy = lost.join(file.file_name().expect("named"));
    fs::copy(file, &copy).map_err(|e| StorageError::io("copying damaged segment to", &copy, e))?;
    let copied = fs::File::open(&copy).map_err(|e| StorageError::io("opening", &copy, e))?;
    sync_data(&copied, &copy);
    let mut moved = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    let mut later: Vec<(u64, PathBuf)> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| StorageError::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(first) = parse_segment_name(&name) {
            if first > damaged_first {
                later.push((first, entry.path()));
            }
        }
    }
    later.sort();
    for (_, path) in later {
        let to = lost.join(path.file_name().expect("named"));
        fs::rename(&path, &to).map_err(|e| StorageError::io("moving segment to", &to, e))?;
        moved.push(to);
    }
    zero_from(file, offset)?;
    sync_dir(&lost).map_err(|e| StorageError::io("syncing directory", &lost, e))?;
    sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))?;
    Ok(Repair {
        file: file.to_path_buf(),
        offset,
        reason,
        moved,
    })
}

/// Zeros `file` from `offset` to its end: zeros end the records (see `recovery`).
fn zero_from(file: &Path, offset: u64) -> Result<(), StorageError> {
    let handle = OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| StorageError::io("opening segment to cut", file, e))?;
    let len = handle
        .metadata()
        .map_err(|e| StorageError::io("reading size of", file, e))?
        .len();
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = offset;
    while at < len {
        let n = ((len - at) as usize).min(ZERO_CHUNK_BYTES);
        handle
            .write_all_at(&zeros[..n], at)
            .map_err(|e| StorageError::io("zeroing damaged records of", file, e))?;
        at += n as u64;
    }
    sync_data(&handle, file);
    Ok(())
}
