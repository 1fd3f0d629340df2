//! Framing on every TCP connection, peer or client:
//!
//! ```text
//!   +--------------------+--------------+---------------------------+
//!   | length: u32 LE     | type: u8     | body: `length` bytes      |
//!   +--------------------+--------------+---------------------------+
//! ```
//!
//! `length` counts the body only. The whole frame (5-byte header plus body) must not exceed
//! [`FRAME_BYTES_MAX`]; the check happens as soon as the 5 header bytes are in, before anything is
//! buffered for the body, so a hostile length cannot make a reader allocate. The body is a
//! flatbuffer whose table is named by `type`; this module does not look inside it, the typed
//! decoders in `peer` and `client` verify it.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use crate::limits::FRAME_BYTES_MAX;

/// Bytes before the body: the u32 length and the u8 type.
pub const FRAME_HEADER_BYTES: usize = 5;

/// What a frame's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// A Raft message between nodes (`raft.fbs` `PeerMessage`).
    PeerMessage = 1,
    /// The first frame on a peer connection (`raft.fbs` `PeerHandshake`).
    PeerHandshake = 2,
    /// A client's request (`client.fbs` `ClientRequest`).
    ClientRequest = 3,
    /// A node's response to a client (`client.fbs` `ClientResponse`).
    ClientResponse = 4,
}

impl FrameType {
    /// The type for a header byte, or [`DecodeError::UnknownFrameType`].
    pub fn from_u8(byte: u8) -> Result<FrameType, DecodeError> {
        match byte {
            1 => Ok(FrameType::PeerMessage),
            2 => Ok(FrameType::PeerHandshake),
            3 => Ok(FrameType::ClientRequest),
            4 => Ok(FrameType::ClientResponse),
            other => Err(DecodeError::UnknownFrameType(other)),
        }
    }

    /// The header byte for this type.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// A short name for errors and counters.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::PeerMessage => "PeerMessage",
            FrameType::PeerHandshake => "PeerHandshake",
            FrameType::ClientRequest => "ClientRequest",
            FrameType::ClientResponse => "ClientResponse",
        }
    }
}

/// One received frame. The body borrows the reader's buffer: nothing is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the body is.
    pub frame_type: FrameType,
    /// The body, not yet verified.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The body if the frame is of type `expected`, else [`DecodeError::WrongFrameType`].
    pub fn body_of(&self, expected: FrameType) -> Result<&'a [u8], DecodeError> {
        if self.frame_type == expected {
            Ok(self.body)
        } else {
            Err(DecodeError::WrongFrameType {
                expected: expected.name(),
                got: self.frame_type.name(),
            })
        }
    }
}

/// The 5 header bytes for a body of `body_bytes` bytes, so that a sender can write header and
/// body with one vectored write and no copy. Fails if the frame would exceed [`FRAME_BYTES_MAX`].
pub fn frame_header(
    frame_type: FrameType,
    body_bytes: usize,
) -> Result<[u8; FRAME_HEADER_BYTES], EncodeError> {
    let frame_bytes = body_bytes.saturating_add(FRAME_HEADER_BYTES);
    if frame_bytes > FRAME_BYTES_MAX {
        return Err(EncodeError::FrameTooLarge {
            frame_bytes: frame_bytes as u64,
            limit_bytes: FRAME_BYTES_MAX,
        });
    }
    // Cannot truncate: FRAME_BYTES_MAX < u32::MAX (checked below at compile time).
    let length = (body_bytes as u32).to_le_bytes();
    Ok([
        length[0],
        length[1],
        length[2],
        length[3],
        frame_type.as_u8(),
    ])
}

const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);

/// Appends one whole frame (header and a copy of `body`) to `out`.
pub fn write_frame(
    frame_type: FrameType,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let header = frame_header(frame_type, body.len())?;
    out.reserve(FRAME_HEADER_BYTES + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    Ok(())
}

/// Decodes the first frame of `buf`, without state: `Ok(None)` when `buf` holds less than one
/// whole frame, `Ok(Some((frame, frame_bytes)))` with the number of bytes the frame occupies.
/// `max_frame_bytes` is clamped to [`FRAME_BYTES_MAX`].
pub fn decode_frame(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let limit_bytes = max_frame_bytes.min(FRAME_BYTES_MAX);
    let Some(header) = buf.get(..FRAME_HEADER_BYTES) else {
        return Ok(None);
    };
    let body_bytes = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let frame_bytes = FRAME_HEADER_BYTES + body_bytes;
    if frame_bytes > limit_bytes {
        return Err(DecodeError::FrameTooLarge {
            frame_bytes: frame_bytes as u64,
            limit_bytes,
        });
    }
    let frame_type = FrameType::from_u8(header[4])?;
    match buf.get(FRAME_HEADER_BYTES..frame_bytes) {
        Some(body) => Ok(Some((Frame { frame_type, body }, frame_bytes))),
        None => Ok(None),
    }
}

/// Reassembles frames from a byte stream read in arbitrary pieces.
///
/// Feed it what the socket returned ([`FrameDecoder::extend_from_slice`], or read straight into
/// [`FrameDecoder::buffer_mut`]), then call [`FrameDecoder::next_frame`] until it returns
/// `Ok(None)`. A returned frame borrows the decoder's buffer; it is released by the next call to
/// any `&mut self` method. After an `Err` the stream cannot be resynchronized: close the
/// connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Bytes of the last returned frame, dropped lazily so that the frame could borrow them.
    returned_bytes: usize,
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder that accepts frames up to [`FRAME_BYTES_MAX`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_max_frame_bytes(FRAME_BYTES_MAX)
    }

    /// A decoder with a lower frame limit (clamped to [`FRAME_BYTES_MAX`]), e.g. for client
    /// connections that never need a full AppendEntries.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            returned_bytes: 0,
            max_frame_bytes: max_frame_bytes.min(FRAME_BYTES_MAX),
        }
    }

    /// Appends bytes read from the connection.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.release();
        self.buf.extend_from_slice(bytes);
    }

    /// The internal buffer, for reading from a socket without an extra copy. Only append to it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        self.release();
        &mut self.buf
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.returned_bytes
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or why the stream is bad.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        let Some((frame_type, frame_bytes)) = self.next_header()? else {
            return Ok(None);
        };
        self.returned_bytes = frame_bytes;
        Ok(Some(Frame {
            frame_type,
            body: &self.buf[FRAME_HEADER_BYTES..frame_bytes],
        }))
    }

    /// The next whole frame's body if it is of type `expected`, split off the buffer as shared
    /// bytes: a decoder may keep slices of it (the entries of an AppendEntries) without copying
    /// each one out. The same errors as [`FrameDecoder::next_frame`] and [`Frame::body_of`].
    pub fn next_frame_shared(&mut self, expected: FrameType) -> Result<Option<Bytes>, DecodeError> {
        let Some((frame_type, frame_bytes)) = self.next_header()? else {
            return Ok(None);
        };
        let frame = self.buf.split_to(frame_bytes).freeze();
        let body = Frame {
            frame_type,
            body: &frame[FRAME_HEADER_BYTES..],
        }
        .body_of(expected)?;
        Ok(Some(frame.slice_ref(body)))
    }

    /// Type and total length of the next whole frame, after dropping the last returned one;
    /// `None` (and room reserved for the announced frame) if it is not all in yet.
    fn next_header(&mut self) -> Result<Option<(FrameType, usize)>, DecodeError> {
        self.release();
        let header = decode_frame(&self.buf, self.max_frame_bytes)?
            .map(|(frame, frame_bytes)| (frame.frame_type, frame_bytes));
        if header.is_none() {
            self.reserve_for_announced_frame();
        }
        Ok(header)
    }

    fn release(&mut self) {
        if self.returned_bytes > 0 {
            self.buf.advance(self.returned_bytes);
            self.returned_bytes = 0;
        }
    }

    /// Once a valid header is in, grow the buffer once to the whole frame instead of many times.
    fn reserve_for_announced_frame(&mut self) {
        if let Some(header) = self.buf.get(..4) {
            let body_bytes =
                u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            // decode_frame has already checked the limit when the header is complete.
            if self.buf.len() >= FRAME_HEADER_BYTES {
                let frame_bytes = FRAME_HEADER_BYTES + body_bytes;
                self.buf.reserve(frame_bytes.saturating_sub(self.buf.len()));
            }
        }
    }
}
