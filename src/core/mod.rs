//! The Raft protocol as a pure, deterministic state machine (sans-I/O).
//!
//! This room owns the protocol: elections with pre-vote and check-quorum, replication with
//! batching, pipelining and fast backtracking, commitment, ReadIndex, leader transfer and
//! snapshots. It must never touch a clock, a socket, a file or a global random number generator:
//! time arrives as [`RawNode::tick`], randomness from a PRNG seeded by [`Config::seed`], and all
//! I/O leaves as an [`Output`]. That is what lets the simulator replay any run from one seed.
//!
//! Names follow the Raft paper (Ongaro & Ousterhout 2014) and Ongaro's thesis (2014).

mod config;
mod message;
mod output;
mod progress;
mod quorum;
mod raft;
mod raft_log;
mod rng;
mod snapshot_stream;
mod types;

pub use config::{Config, ConfigError};
pub use message::{Envelope, Message};
pub use output::{Output, ProposeError, ReadError, ReadState, Released, SoftState};
pub use quorum::{ConfChange, ConfChangeError, Membership, VoteResult, MEMBER_CONTEXT_BYTES_MAX};
pub use raft::RawNode;
pub use raft_log::RaftLog;
pub use rng::SplitMix64;
pub use snapshot_stream::{SnapshotChunk, SnapshotInfo};
pub use types::{
    Entry, EntryKind, HardState, Index, NodeId, Restored, Role, Snapshot, SnapshotMeta, Term,
};
