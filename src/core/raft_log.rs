//! The core's view of the log: entries since the last snapshot, commit/applied/persisted indexes.

/// The in-memory log (stub).
pub struct RaftLog {
    _private: (),
}
