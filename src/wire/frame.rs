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
use crate::limits::{FRAME_BYTES_MAX, PEER_RECEIVE_BUFFER_BYTES};

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
/// The stream is read straight into the decoder's receive buffer ([`FrameDecoder::read_space`],
/// then [`FrameDecoder::mark_read`]; [`crate::wire::fill_decoder`] does both), so that a frame's
/// bytes are not copied from a read buffer into a decoder. Then call
/// [`FrameDecoder::next_frame`] (or [`FrameDecoder::next_frame_shared`]) until it returns
/// `Ok(None)`. A returned frame borrows the decoder's buffer; it is released by the next call to
/// any `&mut self` method. After an `Err` the stream cannot be resynchronized: close the
/// connection.
///
/// The receive buffer holds `receive_buffer_bytes` (more only for a single frame larger than
/// that, up to `max_frame_bytes`), and one read asks for all the room it has left, so a busy
/// connection takes many frames per system call. Frames taken with
/// [`FrameDecoder::next_frame_shared`] are slices of it: when its room runs out, the unfinished
/// frame at its end (the only bytes ever moved) goes to the start of the same buffer if no
/// taken frame still uses it, else of a new one.
#[derive(Debug)]
pub struct FrameDecoder {
    /// From the first byte not yet taken to the end of the receive buffer; every byte of it is
    /// initialized (so that a reader may write into it safely). `buf[..filled]` came from the
    /// stream.
    buf: BytesMut,
    filled: usize,
    /// Bytes of the last returned frame, dropped lazily so that the frame could borrow them.
    returned_bytes: usize,
    max_frame_bytes: usize,
    receive_buffer_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder for a peer connection: frames up to [`FRAME_BYTES_MAX`], a receive buffer of
    /// [`PEER_RECEIVE_BUFFER_BYTES`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_bounds(FRAME_BYTES_MAX, PEER_RECEIVE_BUFFER_BYTES)
    }

    /// A decoder with a lower frame limit (clamped to [`FRAME_BYTES_MAX`]), e.g. for client
    /// connections that never need a full AppendEntries, and a receive buffer of
    /// `receive_buffer_bytes` (at least one byte).
    pub fn with_bounds(max_frame_bytes: usize, receive_buffer_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            filled: 0,
            returned_bytes: 0,
            max_frame_bytes: max_frame_bytes.min(FRAME_BYTES_MAX),
            receive_buffer_bytes: receive_buffer_bytes.max(1),
        }
    }

    /// Appends bytes that are already in memory (tests, tools); a connection reads into
    /// [`FrameDecoder::read_space`] instead.
    pub fn extend_from_slice(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let space = self.read_space();
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            self.mark_read(n);
            bytes = &bytes[n..];
        }
    }

    /// Where the next read from the stream goes: the room left in the receive buffer, never
    /// empty. Take the whole frames out first ([`FrameDecoder::next_frame`] until `Ok(None)`):
    /// then the buffer never grows beyond `max(receive_buffer_bytes, max_frame_bytes)`.
    pub fn read_space(&mut self) -> &mut [u8] {
        self.release();
        let needed = self.pending_frame_bytes().max(self.filled + 1);
        if self.buf.len() < needed {
            self.move_to_new_buffer(needed);
        }
        &mut self.buf[self.filled..]
    }

    /// Records that the first `n` bytes of [`FrameDecoder::read_space`] now hold stream bytes.
    ///
    /// # Panics
    ///
    /// If `n` is larger than the space handed out (a bug in the caller).
    pub fn mark_read(&mut self, n: usize) {
        assert!(
            self.filled + n <= self.buf.len(),
            "marked {n} bytes read into {} bytes of room",
            self.buf.len() - self.filled
        );
        self.filled += n;
    }

    /// Takes out the bytes buffered and not yet returned as a frame, leaving the decoder
    /// empty: a connection handed to another thread carries them to that thread's decoder.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.release();
        let bytes = self.buf[..self.filled].to_vec();
        self.buf = BytesMut::new();
        self.filled = 0;
        bytes
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.filled - self.returned_bytes
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
        self.filled -= frame_bytes;
        let body = Frame {
            frame_type,
            body: &frame[FRAME_HEADER_BYTES..],
        }
        .body_of(expected)?;
        Ok(Some(frame.slice_ref(body)))
    }

    /// Type and total length of the next whole frame, after dropping the last returned one;
    /// `None` if it is not all in yet.
    fn next_header(&mut self) -> Result<Option<(FrameType, usize)>, DecodeError> {
        self.release();
        Ok(
            decode_frame(&self.buf[..self.filled], self.max_frame_bytes)?
                .map(|(frame, frame_bytes)| (frame.frame_type, frame_bytes)),
        )
    }

    fn release(&mut self) {
        if self.returned_bytes > 0 {
            self.buf.advance(self.returned_bytes);
            self.filled -= self.returned_bytes;
            self.returned_bytes = 0;
        }
    }

    /// Bytes the frame at the start of the buffer needs in all: its announced size once its
    /// length is in (clamped to the limit: a larger one is refused by `decode_frame` before
    /// anything is read for it), else a header's.
    fn pending_frame_bytes(&self) -> usize {
        match self.buf.get(..4).filter(|_| self.filled >= 4) {
            Some(length) => {
                let body_bytes =
                    u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
                FRAME_HEADER_BYTES
                    .saturating_add(body_bytes)
                    .min(self.max_frame_bytes)
            }
            None => FRAME_HEADER_BYTES,
        }
    }

    /// Moves the unfinished frame to the start of a buffer with room for at least `needed`
    /// bytes: the old buffer's own allocation when no frame taken from it is alive any more,
    /// else a new one.
    fn move_to_new_buffer(&mut self, needed: usize) {
        let size = needed.max(self.receive_buffer_bytes);
        let mut old = std::mem::take(&mut self.buf);
        old.truncate(self.filled);
        if old.try_reclaim(size - self.filled) {
            // Zeroing the room again keeps every byte a reader sees initialized without unsafe
            // code; it costs far less than the reads that fill it.
            old.resize(size, 0);
            self.buf = old;
        } else {
            let mut fresh = BytesMut::zeroed(size);
            fresh[..self.filled].copy_from_slice(&old);
            self.buf = fresh;
        }
    }
}
