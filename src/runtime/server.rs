//! The client listener: each connection has a reader (verify frames, hand requests to the Raft
//! loop) and a writer (encode and coalesce responses). At most `client_inflight_max` requests
//! per connection are outstanding; past that the reader stops reading, which pushes back on the
//! client through TCP.
//!
//! The connections run on the Raft executor when the node has one executor, and on the client
//! executors otherwise. There, requests cross to the Raft executor over a [`ClientLink`] (a
//! bounded shared channel each way, no lock) and responses come back to be encoded and written
//! on the executor that owns the socket. Both ways, what is ready at once crosses as one
//! message: the requests the client executor's connections read before it next waits
//! ([`ClientLink::forward`]), and the responses of one turn of the Raft loop ([`AnswerLink`],
//! [`flush_answers`]). A message per request or response made each executor wake the other,
//! and parking and waking is most of what a hop costs (docs/measurements.md). A client
//! executor has at most [`crate::limits::CLIENT_LINK_REQUESTS_MAX`] requests at the Raft
//! executor at once: when they are all out, its readers wait, and so do its clients.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::future::poll_once;
use futures_lite::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use super::net::{fill, ConnError};
use super::node::Event;
use super::stats::ClientCounters;
use crate::wire::{self, ClientRequest, ClientResponse, FrameDecoder, FrameType};

/// Client connections served at once by one executor; more are closed at accept.
const CLIENT_CONNECTIONS_MAX: usize = 4096;
/// Largest client frame: a command plus its framing.
const CLIENT_FRAME_BYTES_MAX: usize = crate::limits::ENTRY_BYTES_MAX + (64 << 10);
const WRITE_COALESCE_BYTES: usize = 256 << 10;

/// A request on its way to the Raft executor, with the connection it came on.
pub type Forwarded = (u64, ClientRequest);
/// Requests that cross to the Raft executor as one message.
pub type ForwardedBatch = Vec<Forwarded>;
/// What comes back for a forwarded request: its response, or `None` if the Raft loop dropped it
/// unanswered (so that the request's slot and permit are given back all the same).
pub type Answer = (u64, Option<ClientResponse>);
/// The answers of one turn of the Raft loop for one client executor, sent as one message.
pub type Answers = Vec<Answer>;

/// The ends of one client executor's link, before either executor has connected them.
pub struct LinkEnds {
    /// Client executor: requests out.
    pub requests_tx: SharedSender<ForwardedBatch>,
    /// Raft executor: requests in.
    pub requests_rx: SharedReceiver<ForwardedBatch>,
    /// Raft executor: answers out.
    pub answers_tx: SharedSender<Answers>,
    /// Client executor: answers in.
    pub answers_rx: SharedReceiver<Answers>,
}

impl LinkEnds {
    /// A link that holds at most `requests_max` requests (and as many answers).
    pub fn new(requests_max: usize) -> LinkEnds {
        let (requests_tx, requests_rx) = shared_channel::new_bounded(requests_max);
        let (answers_tx, answers_rx) = shared_channel::new_bounded(requests_max);
        LinkEnds {
            requests_tx,
            requests_rx,
            answers_tx,
            answers_rx,
        }
    }
}

/// Waits for `connect` (a shared channel end connecting), looking again every millisecond:
/// glommio does not wake a sleeping executor when the other end connects, so two executors
/// that each wait for the other's end could otherwise both sleep for good.
pub async fn connected<T>(connect: impl std::future::Future<Output = T>) -> T {
    let mut connect = std::pin::pin!(connect);
    loop {
        if let Some(end) = poll_once(connect.as_mut()).await {
            return end;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Where a response goes.
pub struct ReplyTo {
    route: Route,
}

enum Route {
    /// The connection's writer queue, on this executor.
    Local(Rc<LocalSender<ClientResponse>>),
    /// Back over the link to the client executor that owns connection `conn`.
    Remote {
        link: Rc<AnswerLink>,
        conn: u64,
        answered: bool,
    },
}

/// Raft executor: its end of the answers to one client executor. Answers gather here while the
/// Raft loop runs and leave as one message at [`flush_answers`], which the loop calls at the end
/// of each turn. The channel cannot fill: each message holds at least one answer, and the
/// client executor has at most as many requests out as the channel holds messages.
pub struct AnswerLink {
    sender: ConnectedSender<Answers>,
    pending: RefCell<Answers>,
}

thread_local! {
    /// The links with answers waiting for [`flush_answers`], on this executor.
    static UNFLUSHED: RefCell<Vec<Rc<AnswerLink>>> = const { RefCell::new(Vec::new()) };
}

impl AnswerLink {
    /// The Raft executor's connected end of a link's answers.
    pub fn new(sender: ConnectedSender<Answers>) -> AnswerLink {
        AnswerLink {
            sender,
            pending: RefCell::new(Vec::new()),
        }
    }

    fn push(self: &Rc<Self>, answer: Answer) {
        let mut pending = self.pending.borrow_mut();
        pending.push(answer);
        if pending.len() == 1 {
            UNFLUSHED.with(|links| links.borrow_mut().push(self.clone()));
        }
    }

    fn flush(&self) {
        let answers = std::mem::take(&mut *self.pending.borrow_mut());
        if !answers.is_empty() {
            // A closed link (the client executor is gone) drops them.
            let _ = self.sender.try_send(answers);
        }
    }

    /// Sends what is waiting and closes the link: the client executor stops once it has them.
    pub fn close(&self) {
        self.flush();
        self.sender.close();
    }
}

/// Sends the answers gathered on this executor since the last call, one message per client
/// executor. The Raft loop calls it at the end of each turn.
pub fn flush_answers() {
    let links = UNFLUSHED.with(|links| std::mem::take(&mut *links.borrow_mut()));
    for link in links {
        link.flush();
    }
}

impl ReplyTo {
    /// The reply to a request that came from connection `conn` of the client executor at the
    /// other end of `link`.
    pub fn remote(link: &Rc<AnswerLink>, conn: u64) -> ReplyTo {
        ReplyTo {
            route: Route::Remote {
                link: link.clone(),
                conn,
                answered: false,
            },
        }
    }

    /// Queues a response. Neither queue can be full: a connection's writer queue holds
    /// `client_inflight_max` responses and its reader never has more outstanding, and a link's
    /// answer channel holds as many answers as the client executor may have requests out. A
    /// closed connection or link drops it.
    pub fn send(mut self, response: ClientResponse) {
        match &mut self.route {
            Route::Local(queue) => {
                let _ = queue.try_send(response);
            }
            Route::Remote {
                link,
                conn,
                answered,
            } => {
                *answered = true;
                link.push((*conn, Some(response)));
            }
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Route::Remote {
            link,
            conn,
            answered: false,
        } = &self.route
        {
            link.push((*conn, None));
        }
    }
}

/// Raft executor: hands the requests of one client executor to the Raft loop until either side
/// is gone.
pub async fn forward_requests(
    requests: ConnectedReceiver<ForwardedBatch>,
    answers: Rc<AnswerLink>,
    inbox: Rc<LocalSender<Event>>,
) {
    while let Some(batch) = requests.recv().await {
        for (conn, request) in batch {
            let reply = ReplyTo::remote(&answers, conn);
            if inbox.send(Event::Client(request, reply)).await.is_err() {
                return; // Shutting down.
            }
        }
    }
}

/// Client executor: its end of the link to the Raft executor.
pub struct ClientLink {
    requests: ConnectedSender<ForwardedBatch>,
    /// Requests forwarded and not yet sent: they leave together once the tasks that are ready
    /// have run ([`send_forwarded`]). The channel cannot fill: each message holds at least one
    /// request, and a request takes a slot.
    pending: RefCell<ForwardedBatch>,
    /// Wakes [`send_forwarded`] when `pending` gets its first request.
    pending_ready: LocalSender<()>,
    /// Requests that may still go out before an answer comes back.
    slots: Semaphore,
    /// The connections this executor serves, by the number the link knows them by.
    conns: RefCell<HashMap<u64, Conn>>,
    next_conn: Cell<u64>,
}

struct Conn {
    queue: Rc<LocalSender<ClientResponse>>,
    permits: Rc<Semaphore>,
}

impl ClientLink {
    /// Connects the client executor's ends of a link of `requests_max` requests; waits for the
    /// Raft executor to connect its own. Returns the link and the answers to pass to
    /// [`ClientLink::deliver_answers`].
    pub async fn connect(
        requests: SharedSender<ForwardedBatch>,
        answers: SharedReceiver<Answers>,
        requests_max: usize,
    ) -> (Rc<ClientLink>, ConnectedReceiver<Answers>) {
        let requests = connected(requests.connect()).await;
        let answers = connected(answers.connect()).await;
        let (pending_ready, ready) = local_channel::new_bounded(1);
        let link = Rc::new(ClientLink {
            requests,
            pending: RefCell::new(Vec::new()),
            pending_ready,
            slots: Semaphore::new(requests_max as u64),
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
        });
        glommio::spawn_local(send_forwarded(Rc::downgrade(&link), ready)).detach();
        (link, answers)
    }

    /// Queues a request for the Raft executor, first waiting for a free slot; it leaves with
    /// the others forwarded meanwhile. Fails when the Raft executor is gone.
    pub async fn forward(&self, conn: u64, request: ClientRequest) -> Result<(), ()> {
        self.slots.acquire(1).await.map_err(|_| ())?;
        let mut pending = self.pending.borrow_mut();
        pending.push((conn, request));
        if pending.len() == 1 {
            let _ = self.pending_ready.try_send(());
        }
        Ok(())
    }

    /// Hands each answer to its connection's writer and gives its slot back, until the Raft
    /// executor is gone.
    pub async fn deliver_answers(&self, answers: ConnectedReceiver<Answers>) {
        while let Some(batch) = answers.recv().await {
            self.slots.signal(batch.len() as u64);
            let conns = self.conns.borrow();
            for (conn, answer) in batch {
                let Some(c) = conns.get(&conn) else {
                    continue; // The connection closed meanwhile.
                };
                match answer {
                    Some(response) => {
                        let _ = c.queue.try_send(response);
                    }
                    None => c.permits.signal(1),
                }
            }
        }
        self.slots.close();
        for conn in self.conns.borrow().values() {
            conn.permits.close();
        }
    }
}

/// Client executor: sends a link's forwarded requests to the Raft executor, those forwarded
/// before it runs together: woken by the first, it lets every task that is ready run (each
/// connection reading what its socket holds) before it takes them. Ends with the link.
async fn send_forwarded(link: std::rc::Weak<ClientLink>, ready: LocalReceiver<()>) {
    while ready.recv().await.is_some() {
        futures_lite::future::yield_now().await;
        let Some(link) = link.upgrade() else {
            return;
        };
        let batch = std::mem::take(&mut *link.pending.borrow_mut());
        if !batch.is_empty() && link.requests.send(batch).await.is_err() {
            // The Raft executor is gone: `deliver_answers` ends and closes the slots.
            return;
        }
    }
}

/// Where a listener's connections send their requests.
#[derive(Clone)]
pub enum Upstream {
    /// The Raft loop's inbox, on this executor (one group).
    Local(Rc<LocalSender<Event>>),
    /// Each group's Raft executor, over a link of its own, in group order.
    Remote(Rc<Vec<Rc<ClientLink>>>),
}

/// Checks at the edge that a request speaks this node's client protocol and names a group of
/// this node, the group its key hashes to; the refusal says what was wrong.
pub fn check_group(request: &ClientRequest, groups: u32) -> Result<(), String> {
    if request.protocol_version != wire::CLIENT_PROTOCOL_VERSION {
        return Err(format!(
            "client protocol version {} ({}), this node speaks version {}: upgrade the client",
            request.protocol_version,
            if request.protocol_version == 0 {
                "a request without a version and a group, from a client older than groups"
            } else {
                "unknown to this node"
            },
            wire::CLIENT_PROTOCOL_VERSION
        ));
    }
    if request.group >= groups {
        return Err(format!(
            "group {}: this node has groups 0..{groups} (groups = {groups})",
            request.group
        ));
    }
    // With one group every key is group 0's: no hash on the path of a node without groups.
    if let Some(key) = request.key().filter(|_| groups > 1) {
        let owner = crate::kv::group_of(key, groups);
        if owner != request.group {
            return Err(format!(
                "the key hashes to group {owner} of {groups}, and the request names group {}: \
                 route a key to kv::group_of(key, groups)",
                request.group
            ));
        }
    }
    Ok(())
}

/// Accepts client connections.
pub async fn serve_clients(
    listener: TcpListener,
    upstream: Upstream,
    counters: Arc<ClientCounters>,
    inflight_max: usize,
    groups: u32,
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
        let (upstream, counters, open) = (upstream.clone(), counters.clone(), open.clone());
        glommio::spawn_local(async move {
            let (reader, writer) = futures_lite::io::split(stream);
            let (tx, rx) = local_channel::new_bounded(inflight_max + 1);
            let tx = Rc::new(tx);
            let permits = Rc::new(Semaphore::new(inflight_max as u64));
            let writer_task = glommio::spawn_local(write_responses(
                writer,
                rx,
                permits.clone(),
                counters.clone(),
            ));
            let sink = match &upstream {
                Upstream::Local(inbox) => Sink::Local { inbox, queue: &tx },
                Upstream::Remote(links) => {
                    // The first link numbers the connections; every link knows them by it.
                    let conn = links[0].next_conn.get();
                    links[0].next_conn.set(conn + 1);
                    for link in links.iter() {
                        let c = Conn {
                            queue: tx.clone(),
                            permits: permits.clone(),
                        };
                        link.conns.borrow_mut().insert(conn, c);
                    }
                    Sink::Remote {
                        links,
                        conn,
                        queue: &tx,
                    }
                }
            };
            let ended = read_requests(reader, &sink, &permits, &counters, groups).await;
            if let Err(e @ (ConnError::Invalid(_) | ConnError::Refused(_))) = &ended {
                ClientCounters::add(&counters.invalid_frames, 1);
                eprintln!("ringraft: closed a client connection: {e}");
            }
            if let Sink::Remote { links, conn, .. } = sink {
                // A client that only closed its sending side still reads: wait for the answers
                // to what it sent (every permit back) before the connection leaves the links.
                if matches!(ended, Ok(()) | Err(ConnError::Closed)) {
                    let _ = permits.acquire(inflight_max as u64).await;
                }
                for link in links.iter() {
                    link.conns.borrow_mut().remove(&conn);
                }
            }
            permits.close();
            drop(tx);
            writer_task.await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Where one connection's requests go.
enum Sink<'a> {
    Local {
        inbox: &'a LocalSender<Event>,
        queue: &'a Rc<LocalSender<ClientResponse>>,
    },
    Remote {
        links: &'a [Rc<ClientLink>],
        conn: u64,
        queue: &'a Rc<LocalSender<ClientResponse>>,
    },
}

impl Sink<'_> {
    /// Answers a request refused at the edge on its connection, without the Raft loop.
    fn refuse(&self, request_id: u64, message: String) {
        let queue = match self {
            Sink::Local { queue, .. } | Sink::Remote { queue, .. } => queue,
        };
        let _ = queue.try_send(ClientResponse {
            request_id,
            result: Err(wire::ClientError::Refused { message }),
        });
    }

    async fn send(&self, request: ClientRequest) -> Result<(), ()> {
        match self {
            Sink::Local { inbox, queue } => {
                let reply = ReplyTo {
                    route: Route::Local((*queue).clone()),
                };
                inbox
                    .send(Event::Client(request, reply))
                    .await
                    .map_err(|_| ())
            }
            Sink::Remote { links, conn, .. } => {
                links[request.group as usize].forward(*conn, request).await
            }
        }
    }
}

async fn read_requests(
    mut reader: ReadHalf<TcpStream>,
    sink: &Sink<'_>,
    permits: &Semaphore,
    counters: &ClientCounters,
    groups: u32,
) -> Result<(), ConnError> {
    let mut decoder = FrameDecoder::with_bounds(
        CLIENT_FRAME_BYTES_MAX,
        crate::limits::CLIENT_RECEIVE_BUFFER_BYTES,
    );
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
            if let Err(message) = check_group(&request, groups) {
                sink.refuse(request.request_id, message);
                continue;
            }
            if sink.send(request).await.is_err() {
                return Ok(()); // Shutting down.
            }
        }
        let before = decoder.buffered_bytes();
        fill(&mut reader, &mut decoder).await?;
        ClientCounters::add(
            &counters.bytes_in,
            (decoder.buffered_bytes() - before) as u64,
        );
    }
}

async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    rx: LocalReceiver<ClientResponse>,
    permits: Rc<Semaphore>,
    counters: Arc<ClientCounters>,
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
            permits.close(); // Nobody will read the rest: a reader waiting for them stops.
            return;
        }
        super::trace::event("cli_out", count);
        ClientCounters::add(&counters.bytes_out, batch.len() as u64);
    }
}

#[cfg(test)]
mod group_tests {
    use bytes::Bytes;

    use super::check_group;
    use crate::wire::{ClientRequest, Request};

    fn put(key: &'static [u8], group: u32) -> ClientRequest {
        ClientRequest::new(
            1,
            1,
            1,
            group,
            Request::Put {
                key: Bytes::from_static(key),
                value: Bytes::from_static(b"v"),
            },
        )
    }

    #[test]
    fn a_request_passes_only_in_its_keys_group() {
        let owner = crate::kv::group_of(b"k", 4);
        assert_eq!(check_group(&put(b"k", owner), 4), Ok(()));
        let e = check_group(&put(b"k", (owner + 1) % 4), 4).unwrap_err();
        assert!(e.contains(&format!("hashes to group {owner} of 4")), "{e}");
        let e = check_group(&put(b"k", 4), 4).unwrap_err();
        assert!(e.contains("groups 0..4"), "{e}");
        // With one group, group 0 takes every key.
        assert_eq!(check_group(&put(b"k", 0), 1), Ok(()));
        let mut old = put(b"k", 0);
        old.protocol_version = 0;
        let e = check_group(&old, 1).unwrap_err();
        assert!(e.contains("client protocol version 0"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use futures_lite::future::poll_once;

    use super::*;
    use crate::wire::Request;

    const REQUESTS_MAX: usize = 4;

    fn request(n: u64) -> ClientRequest {
        ClientRequest {
            group: 0,
            protocol_version: crate::wire::CLIENT_PROTOCOL_VERSION,
            await_leadership: false,
            client_id: 1,
            sequence: n,
            request_id: n,
            request: Request::Get {
                key: Bytes::from_static(b"k"),
                linearizable: true,
            },
        }
    }

    /// Polls `done` every millisecond until it holds, failing after ten seconds.
    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A client executor whose link is full waits (its connections stop reading) instead of
    /// queueing more; one answer lets exactly one more request through, and a request the Raft
    /// loop drops unanswered gives its slot back too.
    #[test]
    fn a_full_link_holds_the_client_executor_back() {
        let ends = LinkEnds::new(REQUESTS_MAX);
        let received = Arc::new(AtomicUsize::new(0));
        let answer_one = Arc::new(AtomicBool::new(false));
        let raft = {
            let (requests, answers) = (ends.requests_rx, ends.answers_tx);
            let (received, answer_one) = (received.clone(), answer_one.clone());
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let requests = connected(requests.connect()).await;
                    let answers = Rc::new(AnswerLink::new(connected(answers.connect()).await));
                    let (inbox_tx, inbox) = local_channel::new_bounded(REQUESTS_MAX * 2);
                    let forward = glommio::spawn_local(forward_requests(
                        requests,
                        answers.clone(),
                        Rc::new(inbox_tx),
                    ));
                    // Holds every request without answering, until told to answer one and to
                    // drop one.
                    let mut held = Vec::new();
                    while held.len() < REQUESTS_MAX {
                        let Some(Event::Client(request, reply)) = inbox.recv().await else {
                            panic!("not a client request");
                        };
                        held.push((request, reply));
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    wait_for("the test to ask for an answer", || {
                        answer_one.load(Ordering::SeqCst)
                    })
                    .await;
                    let (request, reply) = held.remove(0);
                    reply.send(ClientResponse {
                        request_id: request.request_id,
                        result: Ok(crate::wire::Reply::NotFound),
                    });
                    drop(held.remove(0));
                    flush_answers();
                    while held.len() < REQUESTS_MAX {
                        let Some(Event::Client(request, reply)) = inbox.recv().await else {
                            panic!("not a client request");
                        };
                        held.push((request, reply));
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    answers.close();
                    drop(forward);
                })
                .expect("raft executor")
        };
        let client = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let (link, answers) =
                    ClientLink::connect(ends.requests_tx, ends.answers_rx, REQUESTS_MAX).await;
                let deliver = {
                    let link = link.clone();
                    glommio::spawn_local(async move { link.deliver_answers(answers).await })
                };
                for n in 0..REQUESTS_MAX as u64 {
                    link.forward(1, request(n)).await.expect("forward");
                }
                wait_for("the Raft side to hold every request", || {
                    received.load(Ordering::SeqCst) == REQUESTS_MAX
                })
                .await;
                // Full: the next request waits, however long it is given.
                let mut next = std::pin::pin!(link.forward(1, request(100)));
                for _ in 0..50 {
                    assert!(
                        poll_once(next.as_mut()).await.is_none(),
                        "a full link took more"
                    );
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(received.load(Ordering::SeqCst), REQUESTS_MAX);
                // One answer and one dropped request free two slots.
                answer_one.store(true, Ordering::SeqCst);
                next.await.expect("forward after an answer");
                link.forward(1, request(101))
                    .await
                    .expect("forward after a drop");
                wait_for("the two requests to arrive", || {
                    received.load(Ordering::SeqCst) == REQUESTS_MAX + 2
                })
                .await;
                deliver.await;
                assert!(link.forward(1, request(102)).await.is_err(), "link closed");
            })
            .expect("client executor");
        client.join().expect("client side");
        raft.join().expect("raft side");
    }

    /// What is ready at once crosses as one message each way: the requests forwarded before
    /// the client executor waits, and the answers of one turn of the Raft loop.
    #[test]
    fn what_is_ready_at_once_crosses_as_one_message() {
        const N: usize = 8;
        let ends = LinkEnds::new(2 * N);
        let raft = {
            let (requests, answers) = (ends.requests_rx, ends.answers_tx);
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let requests = connected(requests.connect()).await;
                    let answers = Rc::new(AnswerLink::new(connected(answers.connect()).await));
                    let batch = requests.recv().await.expect("a batch of requests");
                    assert_eq!(batch.len(), N, "requests forwarded together crossed apart");
                    for (conn, request) in batch {
                        let reply = ReplyTo::remote(&answers, conn);
                        reply.send(ClientResponse {
                            request_id: request.request_id,
                            result: Ok(crate::wire::Reply::NotFound),
                        });
                    }
                    flush_answers();
                    // Held open until the client side has read them.
                    let _ = requests.recv().await;
                })
                .expect("raft executor")
        };
        let client = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let (link, answers) =
                    ClientLink::connect(ends.requests_tx, ends.answers_rx, 2 * N).await;
                for n in 0..N as u64 {
                    link.forward(1, request(n)).await.expect("forward");
                }
                let batch = answers.recv().await.expect("a batch of answers");
                assert_eq!(batch.len(), N, "one turn's answers crossed apart");
                let ids: Vec<u64> = batch
                    .iter()
                    .map(|(_, a)| a.as_ref().expect("answered").request_id)
                    .collect();
                assert_eq!(ids, (0..N as u64).collect::<Vec<_>>(), "in order");
                drop(link);
            })
            .expect("client executor");
        client.join().expect("client side");
        raft.join().expect("raft side");
    }
}
