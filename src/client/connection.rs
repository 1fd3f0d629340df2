//! One pipelined connection to a node: a writer task sends request frames, a reader task routes
//! each response to its waiter by request id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::future::poll_once;
use futures_lite::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use crate::wire::{self, fill_decoder, ClientRequest, ClientResponse, FrameDecoder, FrameType};

/// Requests queued for the writer of one connection.
const SEND_QUEUE_MAX: usize = 4096;

type Waiters = Rc<RefCell<HashMap<u64, LocalSender<ClientResponse>>>>;

/// A live connection.
pub struct Connection {
    addr: SocketAddr,
    frames: LocalSender<Vec<u8>>,
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
        let (frames, frames_rx) = local_channel::new_bounded(SEND_QUEUE_MAX);
        let waiters: Waiters = Rc::new(RefCell::new(HashMap::new()));
        let alive = Rc::new(Cell::new(true));
        glommio::spawn_local(write_loop(writer, frames_rx, alive.clone())).detach();
        glommio::spawn_local(read_loop(reader, waiters.clone(), alive.clone())).detach();
        Ok(Connection {
            addr,
            frames,
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

    /// Sends `request`; its response will arrive on `waiter` (or `waiter` is dropped if the
    /// connection dies).
    pub async fn send(
        &self,
        request: ClientRequest,
        waiter: LocalSender<ClientResponse>,
    ) -> Result<(), String> {
        if !self.alive.get() {
            return Err(format!("connection to {} is closed", self.addr));
        }
        let frame = {
            let mut fbb = self.fbb.borrow_mut();
            let body = wire::encode_client_request(&request, &mut fbb);
            let mut frame = Vec::with_capacity(body.len() + wire::FRAME_HEADER_BYTES);
            wire::write_frame(FrameType::ClientRequest, body, &mut frame)
                .map_err(|e| e.to_string())?;
            frame
        };
        self.waiters.borrow_mut().insert(request.request_id, waiter);
        self.frames
            .send(frame)
            .await
            .map_err(|_| format!("connection to {} is closed", self.addr))
    }

    /// Stops waiting for a request (it timed out).
    pub fn forget(&self, request_id: u64) {
        self.waiters.borrow_mut().remove(&request_id);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping `frames` ends the writer, which closes the socket and so ends the reader.
        self.alive.set(false);
    }
}

async fn write_loop(
    mut writer: WriteHalf<TcpStream>,
    frames: LocalReceiver<Vec<u8>>,
    alive: Rc<Cell<bool>>,
) {
    let mut batch = Vec::new();
    while let Some(frame) = frames.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < (256 << 10) {
            match poll_once(frames.recv()).await {
                Some(Some(frame)) => batch.extend_from_slice(&frame),
                _ => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            break;
        }
    }
    alive.set(false);
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
            if let Some(waiter) = waiters.borrow_mut().remove(&response.request_id) {
                let _ = waiter.try_send(response);
            }
        }
        if fill_decoder(&mut reader, &mut decoder).await.is_err() {
            break;
        }
    }
    alive.set(false);
    // Dropping the waiters tells every caller the connection is gone.
    waiters.borrow_mut().clear();
}
