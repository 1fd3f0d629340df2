//! Messages between Raft nodes (paper Figure 2, thesis 9.6 pre-vote, 3.10 leader transfer,
//! 6.4 ReadIndex). These are plain values; `wire` turns them into frames.

use bytes::Bytes;

use super::quorum::Membership;
use super::types::{Entry, Index, NodeId, Term};

/// One message and its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// What is said.
    pub message: Message,
}

/// A Raft RPC or its response. Every message carries the sender's term; for `PreVote` it is the
/// term the sender *would* campaign in, which it has not adopted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// "Would you vote for me in `term`?" Changes nobody's term (thesis 9.6).
    PreVote {
        /// The term the sender would campaign in (its current term + 1).
        term: Term,
        /// Index of the sender's last log entry.
        last_log_index: Index,
        /// Term of the sender's last log entry.
        last_log_term: Term,
    },
    /// Answer to `PreVote`.
    PreVoteResponse {
        /// The requested term if granted, else the responder's current term.
        term: Term,
        /// Whether the responder would vote.
        granted: bool,
    },
    /// RequestVote RPC (paper Figure 2).
    RequestVote {
        /// Candidate's term.
        term: Term,
        /// Index of the candidate's last log entry.
        last_log_index: Index,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
        /// Set when the election follows a `TimeoutNow`: voters ignore their leader lease.
        leader_transfer: bool,
    },
    /// Answer to `RequestVote`.
    RequestVoteResponse {
        /// Responder's current term.
        term: Term,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries RPC (paper Figure 2). The entries form one record batch.
    AppendEntries {
        /// Leader's term.
        term: Term,
        /// Index of the entry just before `entries`.
        prev_log_index: Index,
        /// Term of that entry.
        prev_log_term: Term,
        /// Leader's commit index.
        leader_commit: Index,
        /// Entries to append (may be empty when probing).
        entries: Vec<Entry>,
    },
    /// Answer to `AppendEntries`.
    AppendEntriesResponse {
        /// Responder's current term.
        term: Term,
        /// True when the responder's log now matches the leader's through `match_index`.
        success: bool,
        /// On success: the highest index known to match, durable on the responder.
        /// On failure: the `prev_log_index` that was rejected.
        match_index: Index,
        /// On failure, the fast-backtracking hint: the first index the leader should try.
        conflict_index: Index,
        /// On failure, the term of the responder's entry at `prev_log_index`, if it had one.
        conflict_term: Option<Term>,
    },
    /// An empty AppendEntries: keeps followers from campaigning and confirms leadership for reads.
    Heartbeat {
        /// Leader's term.
        term: Term,
        /// The leader's commit index, capped at what this follower is known to hold.
        leader_commit: Index,
        /// Echoed back; ties responses to a ReadIndex round (0: none).
        read_round: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// Responder's current term.
        term: Term,
        /// The heartbeat's `read_round`.
        read_round: u64,
    },
    /// One chunk of a snapshot (paper Figure 13, chunked as in section 7).
    InstallSnapshot {
        /// Leader's term.
        term: Term,
        /// The last index the snapshot replaces.
        last_included_index: Index,
        /// The term of that entry.
        last_included_term: Term,
        /// The configuration the snapshot carries (thesis 4.3: the compacted log no longer
        /// holds its entry).
        membership: Membership,
        /// Byte offset of this chunk in the snapshot.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// True on the last chunk.
        done: bool,
    },
    /// Answer to `InstallSnapshot`.
    InstallSnapshotResponse {
        /// Responder's current term.
        term: Term,
        /// The snapshot this answers.
        last_included_index: Index,
        /// The offset the responder expects next (the whole length once `done`).
        next_offset: u64,
        /// True once the responder has installed and persisted the snapshot.
        done: bool,
    },
    /// "Campaign now": the last step of a leader transfer (thesis 3.10).
    TimeoutNow {
        /// Leader's term.
        term: Term,
        /// The sender has durably voted for the recipient in `term + 1` (see
        /// `RawNode::send_timeout_now`): with it, a candidate of a three-voter group wins at
        /// once instead of a vote round trip later.
        vote: bool,
        /// The sender's last index, which the recipient holds too (it was caught up): as the
        /// new leader it replicates to the sender at once instead of probing first.
        last_index: Index,
    },
    /// A follower asks the leader for a read index on behalf of its client (thesis 6.4).
    ReadIndexRequest {
        /// Sender's term.
        term: Term,
        /// The follower's request number, echoed back.
        request_id: u64,
    },
    /// The leader's answer: the index the follower must apply before serving the read.
    ReadIndexResponse {
        /// Leader's term.
        term: Term,
        /// The follower's request number.
        request_id: u64,
        /// The read index, or `None` if the leader could not serve it.
        read_index: Option<Index>,
    },
}

impl Message {
    /// The term the message carries.
    pub fn term(&self) -> Term {
        match *self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::RequestVote { term, .. }
            | Message::RequestVoteResponse { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendEntriesResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. }
            | Message::TimeoutNow { term, .. }
            | Message::ReadIndexRequest { term, .. }
            | Message::ReadIndexResponse { term, .. } => term,
        }
    }

    /// A short name for traces and counters.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteResponse { .. } => "PreVoteResponse",
            Message::RequestVote { .. } => "RequestVote",
            Message::RequestVoteResponse { .. } => "RequestVoteResponse",
            Message::AppendEntries { .. } => "AppendEntries",
            Message::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatResponse { .. } => "HeartbeatResponse",
            Message::InstallSnapshot { .. } => "InstallSnapshot",
            Message::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
            Message::TimeoutNow { .. } => "TimeoutNow",
            Message::ReadIndexRequest { .. } => "ReadIndexRequest",
            Message::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}
