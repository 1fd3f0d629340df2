//! Reading and writing frames on glommio TCP streams.

use futures_lite::io::{AsyncRead, AsyncReadExt};

use crate::wire::{DecodeError, FrameDecoder};

/// Bytes read from a socket per call.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("invalid frame: {0}")]
    Invalid(#[from] DecodeError),
    /// The frame was valid but not acceptable here (misaddressed, wrong sender).
    #[error("refused: {0}")]
    Refused(String),
    /// The peer closed the connection.
    #[error("closed by peer")]
    Closed,
}

/// Reads from `stream` into `decoder` until it holds at least one whole frame (or fails).
pub async fn fill<S: AsyncRead + Unpin>(stream: &mut S, decoder: &mut FrameDecoder, buf: &mut [u8]) -> Result<(), ConnError> {
    let n = stream.read(buf).await?;
    if n == 0 {
        return Err(ConnError::Closed);
    }
    decoder.extend_from_slice(&buf[..n]);
    Ok(())
}
