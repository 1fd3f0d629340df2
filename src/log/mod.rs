//! The durable log of a node: record batches with CRCs in preallocated segment files, written
//! as one aligned `O_DIRECT | O_DSYNC` write per group of appends (group commit), recovery that
//! tells a torn tail from corruption, and term + vote kept apart in two checked slots.
//!
//! This room depends only on [`crate::limits`] and the core's small types ([`Entry`],
//! [`HardState`], indexes and terms); it never reaches into another room. The runtime drives it.
//!
//! Files, one concept each:
//! * [`record`]: the record batch codec, pure, shared with the wire;
//! * `segment`: segment naming, creation (preallocated, zeroed), recycling of purged segments,
//!   the record map;
//! * `recovery`: scanning a directory, torn write versus corruption;
//! * `repair`: cutting the log at mid-log corruption, for the cluster to refill;
//! * `segmented`: [`Log`]: the one write path (a group of records laid out as one aligned write
//!   by [`Log::prepare_append`], written by the caller, recorded by [`Log::complete_append`];
//!   the node writes it on its executor's io_uring, see `runtime::disk`), read / truncate / purge;
//! * `hard_state`: [`HardStateStore`], term and vote in two alternating CRC-checked slots;
//! * `tools`: [`verify`] and [`dump`] for `ringraft log verify|dump`.
//!
//! # Correctness contract
//!
//! An entry is durable only once the call that appended it returned `Ok` ([`Log::append`]), or
//! the caller that wrote a [`Log::prepare_append`] itself made it durable and completed it
//! ([`Log::complete_append`]). Nothing that depends on an entry (an AppendEntries ack, the
//! leader counting itself in a quorum) may happen before. Likewise term and vote are durable
//! only once [`HardStateStore::save`] returned.
//!
//! [`Entry`]: crate::core::Entry
//! [`HardState`]: crate::core::HardState

mod error;
mod hard_state;
mod io;
pub mod record;
mod recovery;
mod repair;
mod segment;
mod segmented;
mod tools;

pub use error::StorageError;
pub use hard_state::HardStateStore;
pub use io::{align_up, write_back, AlignedBuf, BLOCK_BYTES};
pub use record::{DecodeError, EncodeError, EncodedRecord, RecordHeader};
pub use recovery::TornTail;
pub use repair::{cut_at_corruption, Repair, LOST_DIR};
pub use segment::{parse_segment_name, segment_file_name};
pub use segmented::{
    Log, LogOptions, OpenReport, PreparedAppend, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
pub use tools::{dump, records, verify, RecordSpan, VerifyReport};
