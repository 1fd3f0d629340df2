//! Reading and writing frames on glommio TCP streams.

use futures_lite::io::AsyncRead;

use crate::wire::{DecodeError, FrameDecoder};

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

/// Reads from `stream` into `decoder` once (or fails; an end of stream is `Closed`).
pub async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<(), ConnError> {
    match crate::wire::fill_decoder(stream, decoder, buf).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ConnError::Closed),
        Err(e) => Err(ConnError::Io(e)),
    }
}
