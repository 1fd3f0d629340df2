//! The one error type of the wire: everything that can be wrong with bytes from the network.

use thiserror::Error;

/// Why a frame or a message body was refused. Each variant says what was wrong; the connection
/// that sent it should be closed and the event counted, since a well-behaved peer never sends one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix announces a frame larger than the limit. Checked before any buffering,
    /// so a hostile prefix cannot make the reader allocate.
    #[error("frame of {frame_bytes} bytes exceeds the {limit_bytes}-byte limit (FRAME_BYTES_MAX)")]
    FrameTooLarge {
        /// Announced frame size (header included).
        frame_bytes: u64,
        /// The limit.
        limit_bytes: usize,
    },
    /// The frame's type byte names no known message type.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The frame's type is valid but not the one this decoder expected.
    #[error("expected a {expected} frame, got {got}")]
    WrongFrameType {
        /// What the caller expected.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The body does not carry the file identifier of the expected table: a valid flatbuffer of
    /// another message type, or garbage.
    #[error("body is not a {expected} (file identifier {found:?}, expected {identifier:?})")]
    WrongIdentifier {
        /// The table expected.
        expected: &'static str,
        /// Its file identifier.
        identifier: &'static str,
        /// The four bytes found instead (empty when the body is too short).
        found: Vec<u8>,
    },
    /// The flatbuffers verifier refused the body.
    #[error("flatbuffer verification of {table} failed: {reason}")]
    Verification {
        /// The root table being verified.
        table: &'static str,
        /// The verifier's explanation.
        reason: String,
    },
    /// A union body is absent or of a type this build does not know.
    #[error("{table} has no body or an unknown body type {body_type}")]
    UnknownBody {
        /// The table whose union was unreadable.
        table: &'static str,
        /// The union's type tag.
        body_type: u8,
    },
    /// A field that must be set is missing or zero (node ids, session ids).
    #[error("{field} is missing or zero")]
    MissingField {
        /// Which field, as `Table.field`.
        field: &'static str,
    },
    /// A field is out of its allowed range.
    #[error("{field} = {value} is out of range (limit {limit})")]
    OutOfRange {
        /// Which field, as `Table.field`.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The bound it broke.
        limit: u64,
    },
    /// The AppendEntries record batch is malformed.
    #[error("malformed entry batch: {0}")]
    Batch(String),
    /// A configuration carried by the message does not decode.
    #[error("malformed configuration in {field}: {reason}")]
    Membership {
        /// Where it was.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The message was addressed to another cluster.
    #[error(
        "cluster id mismatch: message for cluster {got:?}, this node is in cluster {expected}"
    )]
    ClusterMismatch {
        /// This node's cluster.
        expected: u64,
        /// The message's cluster, if it named one.
        got: Option<u64>,
    },
}

/// Why an outgoing message could not be framed. Only a bug or an unchecked oversized client value
/// produces one; the caller should refuse that one message, not crash the node.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded frame would exceed the limit every receiver enforces.
    #[error("frame of {frame_bytes} bytes exceeds the {limit_bytes}-byte limit (FRAME_BYTES_MAX)")]
    FrameTooLarge {
        /// Frame size (header included).
        frame_bytes: u64,
        /// The limit.
        limit_bytes: usize,
    },
}
