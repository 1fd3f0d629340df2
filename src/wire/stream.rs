//! Filling a [`FrameDecoder`] from any async byte stream. Generic over the stream, so this
//! room still opens no socket itself; the runtime and the client library own those.

use futures_lite::io::{AsyncRead, AsyncReadExt};

use super::FrameDecoder;

/// Bytes read from a stream per call.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// Reads once from `stream` (up to `buf.len()` bytes) into `decoder`. An end of stream is
/// `ErrorKind::UnexpectedEof`.
pub async fn fill_decoder<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let n = stream.read(buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    decoder.extend_from_slice(&buf[..n]);
    Ok(())
}
