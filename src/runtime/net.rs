//! Reading and writing frames on glommio TCP streams.

use std::os::fd::{AsRawFd, RawFd};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;

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
) -> Result<(), ConnError> {
    match crate::wire::fill_decoder(stream, decoder).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ConnError::Closed),
        Err(e) => Err(ConnError::Io(e)),
    }
}

/// Most buffers handed to one `sendmsg` (Linux's `UIO_MAXIOV`).
pub const WRITE_IOVECS_MAX: usize = 1024;

/// Writes `parts` to `stream`, in order and whole, each `sendmsg` taking as many of them as the
/// socket will (up to [`WRITE_IOVECS_MAX`]): pieces of frames go out without first being copied
/// into one buffer. glommio 0.9's streams write one slice per call, so this sends on the
/// socket itself, as glommio does (non-blocking), and lets glommio wait for room when the
/// socket is full.
pub async fn write_parts(stream: &mut TcpStream, parts: &[Bytes]) -> std::io::Result<()> {
    let fd = stream.as_raw_fd();
    // The first part not yet wholly written, and how much of it is.
    let (mut next, mut offset) = (0, 0);
    while next < parts.len() {
        if offset == parts[next].len() {
            (next, offset) = (next + 1, 0);
            continue;
        }
        match send_parts(fd, &parts[next..], offset) {
            Ok(mut sent) => {
                while sent > 0 {
                    let rest = parts[next].len() - offset;
                    if sent < rest {
                        offset += sent;
                        break;
                    }
                    sent -= rest;
                    (next, offset) = (next + 1, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Full: glommio waits until the socket takes more, then writes some of this part.
                let sent = stream.write(&parts[next][offset..]).await?;
                if sent == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                offset += sent;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One non-blocking `sendmsg` of `parts`, the first from `offset` on; bytes sent.
fn send_parts(fd: RawFd, parts: &[Bytes], offset: usize) -> std::io::Result<usize> {
    let iovecs: Vec<libc::iovec> = parts
        .iter()
        .take(WRITE_IOVECS_MAX)
        .enumerate()
        .map(|(n, part)| {
            let bytes = if n == 0 { &part[offset..] } else { &part[..] };
            libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            }
        })
        .collect();
    // SAFETY: an all-zero msghdr is a valid value (no address, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = iovecs.len() as _;
    // SAFETY: every iovec points into a part that `parts` keeps alive and unchanged during the
    // call; the kernel only reads them. MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
    let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// How often a task waiting for [`connect_from`]'s helper thread looks for its answer.
const CONNECT_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Opens a TCP connection to `target`, resolved now (so that a DNS name that moves is followed
/// on every reconnect), leaving from `source` when given (so that the peer sees the address this
/// node was given rather than whatever the route picks). Name lookups and connects block, so
/// both run on a short-lived helper thread; the executor keeps running meanwhile.
pub async fn connect_from(
    target: super::config::Address,
    source: Option<std::net::IpAddr>,
    timeout: std::time::Duration,
) -> std::io::Result<glommio::net::TcpStream> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::sync::mpsc::TryRecvError;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("peer-connect".into())
        .spawn(move || {
            let _ = tx.send(blocking_connect(&target, source, timeout));
        })?;
    loop {
        match rx.try_recv() {
            Ok(result) => {
                let fd = result?.into_raw_fd();
                // SAFETY: the descriptor is a connected TCP socket that nothing else owns.
                return Ok(unsafe { glommio::net::TcpStream::from_raw_fd(fd) });
            }
            Err(TryRecvError::Empty) => glommio::timer::sleep(CONNECT_POLL).await,
            Err(TryRecvError::Disconnected) => {
                return Err(std::io::Error::other("the connecting thread died"))
            }
        }
    }
}

fn blocking_connect(
    target: &super::config::Address,
    source: Option<std::net::IpAddr>,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    let addr = target.resolve()?;
    let Some(source) = source else {
        return std::net::TcpStream::connect_timeout(&addr, timeout);
    };
    bound_connect(std::net::SocketAddr::new(source, 0), addr, timeout)
}

/// A socket bound to `source` (any port) and connected to `target` within `timeout`; std has no
/// bind-before-connect, so this is done with the system calls.
fn bound_connect(
    source: std::net::SocketAddr,
    target: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if source.is_ipv4() != target.is_ipv4() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cannot connect from {source} to {target}: address families differ"),
        ));
    }
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain system calls on a descriptor this function owns; the sockaddr buffers live
    // across each call and their lengths are the lengths passed.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        // A blocking connect gives up after SO_SNDTIMEO on Linux.
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if set < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (source_raw, source_len) = sockaddr(source);
        if libc::bind(
            fd,
            &source_raw as *const _ as *const libc::sockaddr,
            source_len,
        ) < 0
        {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot bind to {source}: {e}"),
            ));
        }
        let (target_raw, target_len) = sockaddr(target);
        if libc::connect(
            fd,
            &target_raw as *const _ as *const libc::sockaddr,
            target_len,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from(owned);
        stream.set_write_timeout(None)?;
        Ok(stream)
    }
}

fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value of the type.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
