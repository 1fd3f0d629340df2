//! One pipelined connection to a node: callers encode their request frames straight into the
//! connection's outbox, a writer task writes whatever the outbox holds in one go, and a reader
//! task puts each response where its caller waits for it, by request id.
//!
//! Per request this is one copy of the request into the outbox (from the flatbuffers builder)
//! and no allocation of its own: the outbox and the waiting map are reused. A load generator
//! runs this path for every write it measures, on the machine it measures, so what it costs is
//! taken from the nodes (the bench report lists its threads' CPU per write).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;

use crate::wire::{self, fill_decoder, ClientRequest, ClientResponse, FrameDecoder, FrameType};

/// Bytes of request frames queued for the writer of one connection; a caller that finds the
/// outbox this full waits until the writer has taken it.
const OUTBOX_BYTES_MAX: usize = 1 << 20;

/// A request sent on a connection, until its caller has its answer or gives up.
// The answer is kept inline, not boxed: entries exist only for the requests in flight, and a
// box would be an allocation per answer.
#[allow(clippy::large_enum_variant)]
enum Waiter {
    /// No answer yet; the caller's task, once it has polled.
    Waiting(Option<Waker>),
    /// The answer, until the caller takes it.
    Answered(ClientResponse),
}

type Waiters = Rc<RefCell<HashMap<u64, Waiter, BuildHasherDefault<RequestIdHasher>>>>;

/// Hashes a request id with one multiplication: the ids are the client's own counter, not
/// chosen by anyone who could make them collide, and the default SipHash was a visible share of
/// the load generator's CPU.
#[derive(Default)]
struct RequestIdHasher(u64);

impl Hasher for RequestIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits and the low ones.
        self.0 = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Request frames not yet written, shared by the callers and the writer task.
#[derive(Default)]
struct Outbox {
    /// Whole frames, in the order they were sent.
    bytes: Vec<u8>,
    /// The writer task, parked until there are bytes (or the connection closes).
    writer: Option<Waker>,
    /// Callers parked until the outbox has room again.
    senders: Vec<Waker>,
    /// The connection was dropped: the writer writes what is left and closes the socket.
    closed: bool,
}

/// A live connection.
pub struct Connection {
    addr: SocketAddr,
    outbox: Rc<RefCell<Outbox>>,
    waiters: Waiters,
    alive: Rc<Cell<bool>>,
    /// Reused for every request: a fresh builder starts small and reallocates its way up to a
    /// 1 KiB value, which was a sixth of the load generator's CPU.
    fbb: RefCell<flatbuffers::FlatBufferBuilder<'static>>,
}

impl Connection {
    /// Connects and starts the reader and writer tasks.
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (reader, writer) = futures_lite::io::split(stream);
        let outbox = Rc::new(RefCell::new(Outbox::default()));
        let waiters: Waiters = Rc::new(RefCell::new(HashMap::default()));
        let alive = Rc::new(Cell::new(true));
        glommio::spawn_local(write_loop(writer, outbox.clone(), alive.clone())).detach();
        glommio::spawn_local(read_loop(reader, waiters.clone(), alive.clone())).detach();
        Ok(Connection {
            addr,
            outbox,
            waiters,
            alive,
            fbb: RefCell::new(flatbuffers::FlatBufferBuilder::with_capacity(4096)),
        })
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// False once reading or writing failed.
    pub fn is_alive(&self) -> bool {
        self.alive.get()
    }

    /// Sends `request` (waiting while the outbox is full) and returns its answer to await.
    /// Dropping the answer stops waiting for it.
    pub async fn send(&self, request: &ClientRequest) -> Result<Answer<'_>, String> {
        std::future::poll_fn(|cx| {
            let mut outbox = self.outbox.borrow_mut();
            if !self.alive.get() || outbox.bytes.len() < OUTBOX_BYTES_MAX {
                Poll::Ready(())
            } else {
                outbox.senders.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !self.alive.get() {
            return Err(format!("connection to {} is closed", self.addr));
        }
        {
            let mut fbb = self.fbb.borrow_mut();
            let body = wire::encode_client_request(request, &mut fbb);
            let mut outbox = self.outbox.borrow_mut();
            wire::write_frame(FrameType::ClientRequest, body, &mut outbox.bytes)
                .map_err(|e| e.to_string())?;
            if let Some(writer) = outbox.writer.take() {
                writer.wake();
            }
        }
        self.waiters
            .borrow_mut()
            .insert(request.request_id, Waiter::Waiting(None));
        Ok(Answer {
            waiters: &self.waiters,
            request_id: request.request_id,
        })
    }

    /// Requests waiting for an answer (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer writes what is left and closes the socket, which ends the reader.
        self.alive.set(false);
        let mut outbox = self.outbox.borrow_mut();
        outbox.closed = true;
        if let Some(writer) = outbox.writer.take() {
            writer.wake();
        }
    }
}

/// The answer to one request sent on a connection: `None` if the connection died first.
pub struct Answer<'a> {
    waiters: &'a Waiters,
    request_id: u64,
}

impl Future for Answer<'_> {
    type Output = Option<ClientResponse>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientResponse>> {
        let mut waiters = self.waiters.borrow_mut();
        match waiters.get_mut(&self.request_id) {
            // The reader ended and let every waiter go.
            None => Poll::Ready(None),
            Some(Waiter::Waiting(waker)) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Some(Waiter::Answered(_)) => match waiters.remove(&self.request_id) {
                Some(Waiter::Answered(response)) => Poll::Ready(Some(response)),
                _ => unreachable!("the entry was just seen answered"),
            },
        }
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        // Taken, timed out or abandoned: either way nobody waits for it any more, and an answer
        // arriving later finds no entry and is dropped.
        self.waiters.borrow_mut().remove(&self.request_id);
    }
}

async fn write_loop(
    mut writer: WriteHalf<TcpStream>,
    outbox: Rc<RefCell<Outbox>>,
    alive: Rc<Cell<bool>>,
) {
    // Swapped with the outbox's buffer: the callers fill one while this task writes the other.
    let mut batch = Vec::new();
    loop {
        let closed = std::future::poll_fn(|cx| {
            let mut outbox = outbox.borrow_mut();
            if !outbox.bytes.is_empty() || outbox.closed {
                Poll::Ready(outbox.closed)
            } else {
                outbox.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        {
            let mut outbox = outbox.borrow_mut();
            std::mem::swap(&mut outbox.bytes, &mut batch);
            outbox.senders.drain(..).for_each(Waker::wake);
        }
        if !batch.is_empty() && writer.write_all(&batch).await.is_err() {
            break;
        }
        batch.clear();
        if closed {
            break;
        }
    }
    alive.set(false);
    // Callers waiting for room learn that the connection is gone.
    outbox.borrow_mut().senders.drain(..).for_each(Waker::wake);
    let _ = writer.close().await;
}

async fn read_loop(mut reader: ReadHalf<TcpStream>, waiters: Waiters, alive: Rc<Cell<bool>>) {
    let mut decoder = FrameDecoder::with_bounds(
        crate::limits::FRAME_BYTES_MAX,
        crate::limits::CLIENT_RECEIVE_BUFFER_BYTES,
    );
    'read: while alive.get() {
        loop {
            let response = match decoder.next_frame() {
                Ok(Some(frame)) => match frame
                    .body_of(FrameType::ClientResponse)
                    .and_then(wire::decode_client_response)
                {
                    Ok(response) => response,
                    Err(e) => {
                        eprintln!("ringraft client: invalid response frame: {e}");
                        break 'read;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    eprintln!("ringraft client: invalid response stream: {e}");
                    break 'read;
                }
            };
            let mut waiters = waiters.borrow_mut();
            if let Some(entry) = waiters.get_mut(&response.request_id) {
                if let Waiter::Waiting(waker) = std::mem::replace(entry, Waiter::Answered(response))
                {
                    waker.into_iter().for_each(Waker::wake);
                }
            }
        }
        if fill_decoder(&mut reader, &mut decoder).await.is_err() {
            break;
        }
    }
    alive.set(false);
    // Letting the unanswered waiters go tells their callers the connection is gone; answers
    // that arrived stay until taken.
    let mut gone = Vec::new();
    waiters.borrow_mut().retain(|_, waiter| match waiter {
        Waiter::Waiting(waker) => {
            gone.extend(waker.take());
            false
        }
        Waiter::Answered(_) => true,
    });
    gone.into_iter().for_each(Waker::wake);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::wire::{Reply, Request};

    /// A node stand-in on a std socket: reads `expected` request frames, then answers them in
    /// the reverse order, one write for all.
    fn answering_backwards(expected: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut decoder = FrameDecoder::with_bounds(1 << 20, 64 << 10);
            let mut ids = Vec::new();
            let mut buf = [0u8; 4096];
            while ids.len() < expected {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed after {} requests", ids.len());
                decoder.extend_from_slice(&buf[..n]);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    let body = frame.body_of(FrameType::ClientRequest).unwrap();
                    ids.push(wire::decode_client_request(body).unwrap().request_id);
                }
            }
            let mut out = Vec::new();
            let mut fbb = flatbuffers::FlatBufferBuilder::new();
            for &request_id in ids.iter().rev() {
                let response = ClientResponse {
                    request_id,
                    result: Ok(Reply::Done {
                        log_index: request_id,
                    }),
                };
                let body = wire::encode_client_response(&response, &mut fbb);
                wire::write_frame(FrameType::ClientResponse, body, &mut out).unwrap();
            }
            socket.write_all(&out).unwrap();
            // Hold the socket until the client has read everything and closed its end.
            let _ = socket.read(&mut buf);
        });
        (addr, server)
    }

    fn request(request_id: u64) -> ClientRequest {
        ClientRequest::new(
            7,
            request_id,
            request_id,
            0,
            Request::Propose {
                payload: bytes::Bytes::from(vec![request_id as u8; 100]),
            },
        )
    }

    fn on_glommio<T: Send + 'static>(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn each_answer_reaches_its_caller_whatever_the_order() {
        let (addr, server) = answering_backwards(3);
        let (answers, waiting) = on_glommio(move || {
            Box::pin(async move {
                let connection = Connection::open(addr).await.unwrap();
                let (a, b, c) = (request(1), request(2), request(3));
                let first = connection.send(&a).await.unwrap();
                let second = connection.send(&b).await.unwrap();
                let third = connection.send(&c).await.unwrap();
                let answers = [first.await, second.await, third.await]
                    .map(|r| r.map(|r| (r.request_id, r.result)));
                (answers, connection.waiting())
            })
        });
        server.join().unwrap();
        let done = |i: u64| Some((i, Ok(Reply::Done { log_index: i })));
        assert_eq!(answers, [done(1), done(2), done(3)]);
        assert_eq!(waiting, 0, "no waiter left behind");
    }

    #[test]
    fn a_caller_that_gives_up_leaves_no_waiter_and_a_late_answer_is_dropped() {
        let (addr, server) = answering_backwards(2);
        let (waiting_after_give_up, second, waiting_at_end) = on_glommio(move || {
            Box::pin(async move {
                let connection = Connection::open(addr).await.unwrap();
                let abandoned = connection.send(&request(1)).await.unwrap();
                drop(abandoned);
                let waiting_after_give_up = connection.waiting();
                let kept = connection.send(&request(2)).await.unwrap();
                let second = kept.await.map(|r| r.request_id);
                // The answer to the abandoned request came in the same read, before this one.
                (waiting_after_give_up, second, connection.waiting())
            })
        });
        server.join().unwrap();
        assert_eq!(
            (waiting_after_give_up, second, waiting_at_end),
            (0, Some(2), 0)
        );
    }

    /// A node stand-in that reads requests and never answers: it closes the connection after
    /// its first read if `hang_up`, else when the client closes it.
    pub(crate) fn mute_node(hang_up: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            while socket.read(&mut buf).is_ok_and(|n| n > 0) && !hang_up {}
        });
        (addr, server)
    }

    #[test]
    fn callers_learn_that_the_connection_died() {
        let (addr, server) = mute_node(true);
        let (answer, alive) = on_glommio(move || {
            Box::pin(async move {
                let connection = Connection::open(addr).await.unwrap();
                let answer = connection.send(&request(1)).await.unwrap().await;
                (answer.map(|r| r.request_id), connection.is_alive())
            })
        });
        server.join().unwrap();
        assert_eq!((answer, alive), (None, false));
    }
}
