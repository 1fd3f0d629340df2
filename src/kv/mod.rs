//! The replicated state machine: a key-value map with client sessions and snapshots.
//!
//! This room owns what a committed command *means*: the [`Command`] encoding, applying commands
//! in log order ([`KvStore::apply`]), exactly-once writes through client sessions, and the
//! snapshot format. It must never do I/O or know about the Raft core: the runtime and the
//! simulator hand it committed bytes and take snapshots from it.

mod command;
mod map;
mod store;

pub use command::{Command, CommandRef, DecodeError, Op, OpRef};
pub use store::{
    ApplyResult, KvStore, Response, RestoreError, SnapshotSink, SESSIONS_MAX, SESSION_RESPONSES_MAX,
};
