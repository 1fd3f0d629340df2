//! The wire: flatbuffers schemas' generated code, the frame codec, and the conversions between
//! frames and the core's plain values, verified at the edge.
//!
//! This room owns every byte that crosses a TCP connection (peer or client). It must never trust
//! one: each frame is length-checked against [`crate::limits::FRAME_BYTES_MAX`], each body passes
//! the flatbuffers verifier (with bounded [`verifier_options`]) and then semantic checks (non-zero
//! ids, counts and lengths within [`crate::limits`]) before anything else sees it. Bad input is a
//! [`DecodeError`], never a panic. It does no I/O itself: the runtime reads and writes sockets.

pub mod generated;

mod client;
mod error;
mod frame;
mod peer;
mod stream;

pub use client::{
    decode_client_request, decode_client_request_shared, decode_client_response,
    encode_client_request, encode_client_response, ClientError, ClientRequest, ClientResponse,
    MemberChange, MemberChangeKind, MemberInfo, MemberListing, MemberRole, NodeStats, Reply,
    Request, CLIENT_PROTOCOL_VERSION,
};
pub use error::{DecodeError, EncodeError};
pub use frame::{
    decode_frame, frame_header, write_frame, Frame, FrameDecoder, FrameType, FRAME_HEADER_BYTES,
};
pub use peer::{
    decode_handshake, decode_peer, decode_peer_message, decode_peer_message_shared,
    encode_handshake, encode_peer, encode_peer_frame, PeerFrame, PeerHandshake, PeerMessage,
    PROTOCOL_VERSION,
};
pub use stream::fill_decoder;

/// Verifier bounds for every received flatbuffer: no deeper nesting, no more tables and no larger
/// apparent size than our schemas can legitimately produce in one frame, so a hostile buffer cannot
/// make verification expensive.
pub fn verifier_options() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        // PeerMessage -> union table -> vector is depth 3; ClientResponse similar.
        max_depth: 8,
        // One root plus one union member; a little slack for future fields.
        max_tables: 16,
        max_apparent_size: crate::limits::FRAME_BYTES_MAX,
        ignore_missing_null_terminator: false,
    }
}

/// Checks the file identifier of `body`, then runs the flatbuffers verifier over it with
/// [`verifier_options`]. The only way a received body becomes a generated table accessor.
pub(crate) fn verified_root<'buf, T>(
    body: &'buf [u8],
    table: &'static str,
    identifier: &'static str,
) -> Result<<T as flatbuffers::Follow<'buf>>::Inner, DecodeError>
where
    T: 'buf + flatbuffers::Follow<'buf> + flatbuffers::Verifiable,
{
    // The identifier sits after the 4-byte root offset. Checking it first refuses a valid buffer
    // of another table, which the verifier alone might accept when the layouts happen to agree.
    let found = body.get(4..8).unwrap_or(&[]);
    if found != identifier.as_bytes() {
        return Err(DecodeError::WrongIdentifier {
            expected: table,
            identifier,
            found: found.to_vec(),
        });
    }
    flatbuffers::root_with_opts::<T>(&verifier_options(), body).map_err(|error| {
        DecodeError::Verification {
            table,
            reason: error.to_string(),
        }
    })
}
