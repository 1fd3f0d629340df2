//! The client listener: each connection has a reader (verify frames, hand requests to the Raft
//! loop) and a writer (coalesce responses). At most `client_inflight_max` requests per
//! connection are outstanding; past that the reader stops reading, which pushes back on the
//! client through TCP.

use std::cell::Cell;
use std::rc::Rc;

use futures_lite::future::poll_once;
use futures_lite::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use super::net::{fill, ConnError};
use super::node::Event;
use super::stats::Counters;
use crate::wire::READ_CHUNK_BYTES;
use crate::wire::{self, ClientResponse, FrameDecoder, FrameType};

/// Client connections served at once; more are closed at accept.
const CLIENT_CONNECTIONS_MAX: usize = 4096;
/// Largest client frame: a command plus its framing.
const CLIENT_FRAME_BYTES_MAX: usize = crate::limits::ENTRY_BYTES_MAX + (64 << 10);
const WRITE_COALESCE_BYTES: usize = 256 << 10;

/// Where a response goes: the connection's writer queue and the permit to give back.
#[derive(Clone)]
pub struct ReplyTo {
    queue: Rc<LocalSender<ClientResponse>>,
}

impl ReplyTo {
    /// Queues a response. The queue holds `client_inflight_max` responses and the reader never
    /// has more outstanding, so this cannot fail for lack of room; a closed connection drops it.
    pub fn send(&self, response: ClientResponse) {
        let _ = self.queue.try_send(response);
    }
}

/// Accepts client connections.
pub async fn serve_clients(
    listener: TcpListener,
    inbox: Rc<LocalSender<Event>>,
    counters: Rc<Counters>,
    inflight_max: usize,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        if open.get() >= CLIENT_CONNECTIONS_MAX {
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.set(open.get() + 1);
        let (inbox, counters, open) = (inbox.clone(), counters.clone(), open.clone());
        glommio::spawn_local(async move {
            let (reader, writer) = futures_lite::io::split(stream);
            let (tx, rx) = local_channel::new_bounded(inflight_max + 1);
            let permits = Rc::new(Semaphore::new(inflight_max as u64));
            let writer_task = glommio::spawn_local(write_responses(
                writer,
                rx,
                permits.clone(),
                counters.clone(),
            ));
            if let Err(e @ (ConnError::Invalid(_) | ConnError::Refused(_))) = read_requests(
                reader,
                ReplyTo { queue: Rc::new(tx) },
                &inbox,
                &permits,
                &counters,
            )
            .await
            {
                Counters::add(&counters.invalid_client_frames, 1);
                eprintln!("ringraft: closed a client connection: {e}");
            }
            permits.close();
            writer_task.await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn read_requests(
    mut reader: ReadHalf<TcpStream>,
    reply_to: ReplyTo,
    inbox: &LocalSender<Event>,
    permits: &Semaphore,
    counters: &Counters,
) -> Result<(), ConnError> {
    let mut decoder = FrameDecoder::with_max_frame_bytes(CLIENT_FRAME_BYTES_MAX);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        loop {
            // Shared: the request's key and value are slices of the frame, so the only copy
            // of a value on the leader is into its log record.
            let Some(body) = decoder.next_frame_shared(FrameType::ClientRequest)? else {
                break;
            };
            let request = wire::decode_client_request_shared(&body)?;
            super::trace::event("cli_in", 0);
            if permits.acquire(1).await.is_err() {
                return Ok(());
            }
            if inbox
                .send(Event::Client(request, reply_to.clone()))
                .await
                .is_err()
            {
                return Ok(()); // Shutting down.
            }
        }
        let before = decoder.buffered_bytes();
        fill(&mut reader, &mut decoder, &mut buf).await?;
        Counters::add(
            &counters.bytes_in,
            (decoder.buffered_bytes() - before) as u64,
        );
    }
}

async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    rx: LocalReceiver<ClientResponse>,
    permits: Rc<Semaphore>,
    counters: Rc<Counters>,
) {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut batch = Vec::with_capacity(WRITE_COALESCE_BYTES);
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut count = 0;
        let mut next = Some(first);
        while let Some(response) = next.take() {
            let body = wire::encode_client_response(&response, &mut fbb);
            if wire::write_frame(FrameType::ClientResponse, body, &mut batch).is_err() {
                eprintln!("ringraft: dropped an oversized client response");
            }
            count += 1;
            if batch.len() < WRITE_COALESCE_BYTES {
                if let Some(Some(response)) = poll_once(rx.recv()).await {
                    next = Some(response);
                }
            }
        }
        permits.signal(count);
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        super::trace::event("cli_out", count);
        Counters::add(&counters.bytes_out, batch.len() as u64);
    }
}
