//! Filling a [`FrameDecoder`] from any async byte stream. Generic over the stream, so this
//! room still opens no socket itself; the runtime and the client library own those.

use futures_lite::io::{AsyncRead, AsyncReadExt};

use super::FrameDecoder;

/// Reads once from `stream` straight into `decoder`'s receive buffer (as much as it has room
/// for, see [`FrameDecoder::read_space`]): the bytes are not copied again on their way to a
/// frame. An end of stream is `ErrorKind::UnexpectedEof`.
pub async fn fill_decoder<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
) -> std::io::Result<()> {
    let n = stream.read(decoder.read_space()).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    decoder.mark_read(n);
    Ok(())
}
