//! The client library: connects to any node, follows leader hints, keeps many requests in
//! flight per connection, and retries writes with the same session sequence number (so the
//! state machine applies each at most once) on timeouts and leader changes. The sequences a
//! session has in flight stay within the state machine's response window
//! ([`crate::limits::SESSION_RESPONSES_MAX`]), so that a retry, in whatever order it lands after
//! a leader change, gets the answer of its first application instead of a "stale" error.
//!
//! It runs on glommio: create a [`Client`] inside a `LocalExecutor` and share it between tasks
//! of that executor (`Client` is cheap to clone; clones share the connection and session).

pub mod connection;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::{Index, NodeId};
use crate::limits::SESSION_RESPONSES_MAX;
use crate::wire::{ClientError, ClientRequest, ClientResponse, NodeStats, Reply, Request};
use connection::Connection;

/// One node's client address, with its node id when known. Leader hints name the leader by
/// id and by its advertised client address. The client follows a hint to the member with that
/// id; failing that, to the member with that address (which learns the id); failing that, it
/// adds the hinted node as a member (a node added to the cluster after the client started). An
/// advertised address may also be one this client does not reach the node by: then the
/// connection fails and the client moves on by rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberAddr {
    /// The node's id, when the caller knows it.
    pub id: Option<NodeId>,
    /// Where this client reaches the node.
    pub addr: SocketAddr,
}

impl From<SocketAddr> for MemberAddr {
    fn from(addr: SocketAddr) -> MemberAddr {
        MemberAddr { id: None, addr }
    }
}

impl std::str::FromStr for MemberAddr {
    type Err = String;
    /// `ID=ADDR` (e.g. `2=10.0.0.12:8001`) or a bare `ADDR`.
    fn from_str(text: &str) -> Result<MemberAddr, String> {
        let (id, addr) = match text.split_once('=') {
            Some((id, addr)) => {
                let id: NodeId = id
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&id| id != 0)
                    .ok_or_else(|| format!("`{text}`: `{id}` is not a node id"))?;
                (Some(id), addr)
            }
            None => (None, text),
        };
        let addr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: `{addr}` is not an IP address with port"))?;
        Ok(MemberAddr { id, addr })
    }
}

impl std::fmt::Display for MemberAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}={}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Client addresses of the cluster's nodes.
    pub members: Vec<MemberAddr>,
    /// This client's session id (non-zero, unique among clients of the cluster).
    pub client_id: u64,
    /// How long one attempt may take: reaching the node (connecting, when the client has no
    /// connection to it), sending, and waiting for its answer.
    pub attempt_timeout: Duration,
    /// How long one call may take, retries and pauses between them included (and, for a write,
    /// the wait for a sequence in the session's window); past it the call fails with
    /// [`Error::TimedOut`]. None: only `attempts_max` bounds it.
    pub request_timeout: Option<Duration>,
    /// Attempts per request before giving up (leader changes and timeouts each use one).
    pub attempts_max: u32,
    /// The cluster's Raft groups (its nodes' `groups` setting): a request goes to the leader
    /// of the group its key hashes to.
    pub groups: u32,
}

impl ClientOptions {
    /// Defaults: 2 s per attempt, 20 attempts, no deadline per call.
    pub fn new(members: Vec<MemberAddr>, client_id: u64) -> ClientOptions {
        ClientOptions {
            members,
            client_id,
            attempt_timeout: Duration::from_secs(2),
            request_timeout: None,
            attempts_max: 20,
            groups: 1,
        }
    }
}

/// Why a request failed for good.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The cluster answered with an error that retrying will not fix.
    #[error("{0}")]
    Server(ClientError),
    /// No node gave an answer within the attempts allowed.
    #[error("cluster unavailable after {attempts} attempts; last problem: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// The call ran out of its `request_timeout`.
    #[error("no answer within the request deadline of {} ms ({attempts} attempts); last problem: {last}", .after.as_millis())]
    TimedOut {
        /// The deadline it ran out of.
        after: Duration,
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
}

struct Inner {
    options: ClientOptions,
    /// What the client knows of each Raft group, in group order.
    groups: Vec<GroupState>,
    /// One per member of `options.members`, held while a connection to it is opened: requests
    /// that move to a new node together (they heard the same answer) wait for the first one's
    /// connection and share it, rather than each opening its own (a leader change had 16
    /// sessions x 64 requests open 1024 connections, which reached the new leader over tens of
    /// milliseconds).
    connecting: Vec<Rc<glommio::sync::Semaphore>>,
    next_request_id: u64,
}

/// One group's leader as this client believes it, and the session's sequences in that group
/// (each group's state machine keeps its own sessions).
struct GroupState {
    /// Index into `options.members` of the node believed to lead the group.
    leader: usize,
    connection: Option<Rc<Connection>>,
    next_sequence: u64,
    /// Sequences taken by `call` and not yet answered (or given up on).
    unanswered: BTreeSet<u64>,
    /// Tasks waiting for the sequence window to move.
    window_waiters: Vec<Waker>,
}

/// A client session. Clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Rc<RefCell<Inner>>,
}

/// Members a client may know, at most: those it was given plus those it learned from leader
/// hints (a node added after it started). Past this, a hint to an unknown node is not followed
/// and the client finds the leader by rotation.
const MEMBERS_KNOWN_MAX: usize = 2 * crate::limits::CLUSTER_NODES_MAX;

impl Client {
    /// A client for the cluster; connects lazily.
    pub fn new(options: ClientOptions) -> Client {
        assert!(
            !options.members.is_empty(),
            "a client needs at least one member address"
        );
        assert!(options.client_id != 0, "client id 0 is reserved");
        assert!(options.groups >= 1, "a cluster has at least one group");
        let connecting = options
            .members
            .iter()
            .map(|_| Rc::new(glommio::sync::Semaphore::new(1)))
            .collect();
        let groups = (0..options.groups)
            .map(|g| GroupState {
                leader: preferred_member(&options.members, g),
                connection: None,
                next_sequence: 1,
                unanswered: BTreeSet::new(),
                window_waiters: Vec::new(),
            })
            .collect();
        Client {
            inner: Rc::new(RefCell::new(Inner {
                options,
                groups,
                next_request_id: 1,
                connecting,
            })),
        }
    }

    /// The group a request goes to: its key's, or group 0 for a request without a key.
    pub fn group_for(&self, request: &Request) -> u32 {
        let groups = self.inner.borrow().options.groups;
        if groups == 1 {
            return 0;
        }
        match request {
            Request::Put { key, .. } | Request::Delete { key } | Request::Get { key, .. } => {
                crate::kv::group_of(key, groups)
            }
            _ => 0,
        }
    }

    /// Asks the cluster (group 0 of the node the client reaches) how many groups it has, and
    /// routes by that from now on. Call it before the first request, for a caller that was not
    /// told the count (the command line).
    pub async fn learn_groups(&self) -> Result<u32, Error> {
        let groups = self.stats_of(0).await?.groups.max(1);
        let mut inner = self.inner.borrow_mut();
        inner.options.groups = groups;
        for g in inner.groups.len() as u32..groups {
            let leader = preferred_member(&inner.options.members, g);
            inner.groups.push(GroupState {
                leader,
                connection: None,
                next_sequence: 1,
                unanswered: BTreeSet::new(),
                window_waiters: Vec::new(),
            });
        }
        Ok(groups)
    }

    /// How many groups the client routes to.
    pub fn groups(&self) -> u32 {
        self.inner.borrow().options.groups
    }

    /// Sets `key` to `value`; returns the log index at which the write committed.
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Index, Error> {
        done_index(
            self.call(Request::Put {
                key: key.into(),
                value: value.into(),
            })
            .await?,
        )
    }

    /// Removes `key`.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<Index, Error> {
        done_index(self.call(Request::Delete { key: key.into() }).await?)
    }

    /// Reads `key` linearizably (ReadIndex).
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        value_of(
            self.call(Request::Get {
                key: key.into(),
                linearizable: true,
            })
            .await?,
        )
    }

    /// Replicates an opaque payload (pure consensus, no state machine work) in group 0.
    pub async fn propose(&self, payload: impl Into<Bytes>) -> Result<Index, Error> {
        self.propose_in(0, payload).await
    }

    /// Replicates an opaque payload in group `group`.
    pub async fn propose_in(&self, group: u32, payload: impl Into<Bytes>) -> Result<Index, Error> {
        done_index(
            self.call_in(
                group,
                Request::Propose {
                    payload: payload.into(),
                },
            )
            .await?,
        )
    }

    /// The counters of group 0 on the node this client is connected to.
    pub async fn stats(&self) -> Result<NodeStats, Error> {
        self.stats_of(0).await
    }

    /// The counters of group `group` on the node this client is connected to for that group.
    pub async fn stats_of(&self, group: u32) -> Result<NodeStats, Error> {
        match self.call_once_in(group, Request::Stats).await? {
            Reply::Stats(stats) => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the node this client is connected to, which must be the leader, to hand leadership
    /// to node `to` (thesis 3.10); returns once it has stepped down. One attempt, no hint
    /// following: a `NotLeader` error names the leader to ask instead.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), Error> {
        self.transfer_leader_in(0, to).await
    }

    /// Like [`Client::transfer_leader`], for group `group`.
    pub async fn transfer_leader_in(&self, group: u32, to: NodeId) -> Result<(), Error> {
        match self
            .call_once_in(group, Request::TransferLeader { to })
            .await?
        {
            Reply::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The configuration as the node this client is connected to sees it (match indexes only
    /// when that node leads). One attempt, no hint following.
    pub async fn member_list(&self) -> Result<crate::wire::MemberListing, Error> {
        match self.call_once_in(0, Request::MemberList).await? {
            Reply::Members(listing) => Ok(listing),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the node this client is connected to, which must be the leader, for one membership
    /// change; returns the index of the configuration in force once the change is complete.
    /// One attempt, no hint following: a `NotLeader` error names the leader to ask instead.
    pub async fn member_change(&self, change: crate::wire::MemberChange) -> Result<Index, Error> {
        done_index(self.call_once_in(0, Request::MemberChange(change)).await?)
    }

    /// Sends `request`, following leader hints and retrying; writes get the next session
    /// sequence number, kept across retries.
    pub async fn call(&self, request: Request) -> Result<Reply, Error> {
        self.call_in(self.group_for(&request), request).await
    }

    /// Like [`Client::call`], to group `group` (the key's group for a request with a key; a
    /// node refuses another).
    pub async fn call_in(&self, group: u32, request: Request) -> Result<Reply, Error> {
        let deadline = self.deadline();
        if !request.is_write() {
            return self.call_until(group, request, 0, deadline).await;
        }
        let sequence = SequenceGuard {
            client: self,
            group,
            sequence: self.take_sequence(group, deadline).await?,
        };
        self.call_until(group, request, sequence.sequence, deadline)
            .await
    }

    /// When a call starting now must end.
    fn deadline(&self) -> Option<Instant> {
        let timeout = self.inner.borrow().options.request_timeout?;
        Some(Instant::now() + timeout)
    }

    /// A call ran out of its `request_timeout`.
    fn timed_out(&self, attempts: u32, last: String) -> Error {
        Error::TimedOut {
            after: self
                .inner
                .borrow()
                .options
                .request_timeout
                .unwrap_or_default(),
            attempts,
            last,
        }
    }

    /// Like [`Client::call`] with an explicit session sequence number (tests of exactly-once).
    pub async fn call_with_sequence(
        &self,
        request: Request,
        sequence: u64,
    ) -> Result<Reply, Error> {
        self.call_with_sequence_in(self.group_for(&request), request, sequence)
            .await
    }

    /// Like [`Client::call_with_sequence`], to group `group`.
    pub async fn call_with_sequence_in(
        &self,
        group: u32,
        request: Request,
        sequence: u64,
    ) -> Result<Reply, Error> {
        self.call_until(group, request, sequence, self.deadline())
            .await
    }

    /// The attempts of one call, until `deadline` if there is one.
    ///
    /// The deadline is kept by shortening the attempts and pauses near it, not by a timer of
    /// its own around the call: a timer is a reactor entry made and removed per call, and the
    /// load generator makes a call per write it measures.
    async fn call_until(
        &self,
        group: u32,
        request: Request,
        sequence: u64,
        deadline: Option<Instant>,
    ) -> Result<Reply, Error> {
        let (attempts_max, attempt_timeout) = {
            let inner = self.inner.borrow();
            (inner.options.attempts_max, inner.options.attempt_timeout)
        };
        let mut last = String::from("no attempt made");
        // A hint that names another node is news: the first one is followed at once. Only
        // once per request, so that two nodes naming each other cannot spin.
        let mut hint_followed_at_once = false;
        let mut skip_backoff = false;
        // The member a leader handing over sent us to: asked there, a write carries
        // `await_leadership`, and the member holds it until it leads.
        let mut taking_over: Option<usize> = None;
        let left = |now: Instant| deadline.map(|at| at.saturating_duration_since(now));
        for attempt in 0..attempts_max {
            if attempt > 0 && !std::mem::take(&mut skip_backoff) {
                let pause = retry_backoff(attempt);
                glommio::timer::sleep(left(Instant::now()).map_or(pause, |l| l.min(pause))).await;
            }
            let limit = match left(Instant::now()) {
                Some(Duration::ZERO) => return Err(self.timed_out(attempt, last)),
                Some(l) => l.min(attempt_timeout),
                None => attempt_timeout,
            };
            let (asked, answer) = self
                .attempt(group, &request, sequence, taking_over, limit)
                .await;
            match answer {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(ClientError::NotLeader {
                    leader_hint,
                    leader_addr,
                    handing_over,
                })) => {
                    last = "not the leader".into();
                    let hinted = self.member_of_hint(leader_hint, leader_addr.as_deref());
                    let moved_to_hint = self.follow_hint(group, asked, hinted);
                    if moved_to_hint && !hint_followed_at_once {
                        hint_followed_at_once = true;
                        skip_backoff = true;
                    }
                    taking_over = hinted.filter(|_| handing_over);
                    if taking_over.is_some() {
                        // Not a refusal to wait out: the hinted node takes the write as soon
                        // as it leads.
                        skip_backoff = true;
                    }
                }
                Ok(Err(e @ (ClientError::Timeout | ClientError::Backpressure))) => {
                    last = e.to_string()
                }
                Ok(Err(e)) => return Err(Error::Server(e)),
                Err(problem) => {
                    last = problem;
                    self.rotate(group, asked);
                }
            }
        }
        Err(Error::Unavailable {
            attempts: attempts_max,
            last,
        })
    }

    /// One attempt on whatever node the client is connected to for `group`, without following
    /// hints.
    async fn call_once_in(&self, group: u32, request: Request) -> Result<Reply, Error> {
        let limit = self.inner.borrow().options.attempt_timeout;
        match self.attempt(group, &request, 0, None, limit).await.1 {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Error::Server(e)),
            Err(last) => Err(Error::Unavailable { attempts: 1, last }),
        }
    }

    /// The member asked (an index into `options.members`), and Ok(answer) or Err(connection
    /// problem).
    ///
    /// `taking_over`: the member a leader said it is handing leadership to; a write asked of
    /// it is marked to be held there until it leads. `limit`: how long the attempt may take.
    async fn attempt(
        &self,
        group: u32,
        request: &Request,
        sequence: u64,
        taking_over: Option<usize>,
        limit: Duration,
    ) -> (usize, Result<Result<Reply, ClientError>, String>) {
        let asked = self.group_state(group, |g| g.leader);
        let await_leadership = taking_over == Some(asked) && request.is_write();
        let addr = self.inner.borrow().options.members[asked].addr;
        // One timer covers the whole attempt, connecting included: a connect to a host that
        // drops packets would otherwise wait for the kernel's own timeout. The attempt's future
        // is made inside the race, not moved into it: every move of a future is a copy of all
        // of it, and the load generator makes one per write.
        let attempt = async {
            Some(
                self.attempt_at(group, asked, request, sequence, await_leadership)
                    .await,
            )
        };
        let expiry = async {
            glommio::timer::Timer::new(limit).await;
            None
        };
        let answer = futures_lite::future::or(attempt, expiry)
            .await
            // No answer at all: the node may be stopped or cut off (a node that answers slowly
            // says Timeout itself), so the caller moves on to another node, whose answer points
            // back here if this one still leads.
            .unwrap_or_else(|| {
                Err(format!(
                    "no answer from {addr} within {} ms",
                    limit.as_millis()
                ))
            });
        (asked, answer)
    }

    /// Reads group `group`'s state; a group the client does not know is a caller's bug.
    fn group_state<T>(&self, group: u32, read: impl FnOnce(&GroupState) -> T) -> T {
        let inner = self.inner.borrow();
        let state = inner.groups.get(group as usize).unwrap_or_else(|| {
            panic!(
                "group {group} asked of a client of {} groups",
                inner.groups.len()
            )
        });
        read(state)
    }

    async fn attempt_at(
        &self,
        group: u32,
        asked: usize,
        request: &Request,
        sequence: u64,
        await_leadership: bool,
    ) -> Result<Result<Reply, ClientError>, String> {
        let connection = self.connection(group, asked).await?;
        let (client_id, request_id) = {
            let mut inner = self.inner.borrow_mut();
            inner.next_request_id += 1;
            (inner.options.client_id, inner.next_request_id)
        };
        let mut message =
            ClientRequest::new(client_id, sequence, request_id, group, request.clone());
        message.await_leadership = await_leadership;
        let answer = connection.send(&message).await?.await;
        match answer {
            Some(ClientResponse { result, .. }) => Ok(result),
            None => {
                self.drop_connection(group, &connection);
                Err(format!("connection to {} lost", connection.addr()))
            }
        }
    }

    /// A connection to member `asked`: the client's own if it still points there, else a new
    /// one (kept as the client's only if no other request moved the client meanwhile).
    async fn connection(&self, group: u32, asked: usize) -> Result<Rc<Connection>, String> {
        match self.live_connection(group, asked) {
            Some(live) => Ok(live),
            // Opening one is rare and its future large: boxed, it stays out of every request's.
            None => Box::pin(self.open_connection(group, asked)).await,
        }
    }

    /// Opens a connection to member `asked`, one at a time per member.
    async fn open_connection(&self, group: u32, asked: usize) -> Result<Rc<Connection>, String> {
        let semaphore = self.inner.borrow().connecting[asked].clone();
        let _opening = semaphore
            .acquire_permit(1)
            .await
            .map_err(|e| format!("cannot open a connection: {e}"))?;
        // Another request may have opened one while this one waited.
        if let Some(live) = self.live_connection(group, asked) {
            return Ok(live);
        }
        let addr = self.inner.borrow().options.members[asked].addr;
        let connection = Rc::new(
            Connection::open(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
        );
        let mut inner = self.inner.borrow_mut();
        let state = &mut inner.groups[group as usize];
        if state.leader == asked {
            state.connection = Some(connection.clone());
        }
        Ok(connection)
    }

    /// A live connection to member `asked` that group `group` may use: its own, or another
    /// group's to the same node.
    fn live_connection(&self, group: u32, asked: usize) -> Option<Rc<Connection>> {
        let inner = self.inner.borrow();
        let state = &inner.groups[group as usize];
        if state.leader == asked {
            if let Some(c) = state.connection.as_ref().filter(|c| c.is_alive()) {
                return Some(c.clone());
            }
        }
        inner
            .groups
            .iter()
            .filter(|g| g.leader == asked)
            .find_map(|g| g.connection.as_ref().filter(|c| c.is_alive()))
            .cloned()
    }

    fn drop_connection(&self, _group: u32, connection: &Rc<Connection>) {
        // Groups may share a connection: every group that used it lets it go.
        let mut inner = self.inner.borrow_mut();
        for state in inner.groups.iter_mut() {
            if state
                .connection
                .as_ref()
                .is_some_and(|c| Rc::ptr_eq(c, connection))
            {
                state.connection = None;
            }
        }
    }

    /// Moves to the hinted leader (or the next member without a hint), after member `asked`
    /// said it does not lead; returns whether it moved to a hinted node other than `asked`.
    ///
    /// Several requests in flight hear the same answer from the same node: only the first
    /// moves the client. Had each moved it on from wherever the client then pointed, an even
    /// number of them would have put it back on the node that refused, dropping the connection
    /// the others were using each time (observed: a session's first writes bounced between a
    /// follower and lost connections for 40 attempts).
    ///
    /// All of this is per group: each group has its own leader.
    fn follow_hint(&self, group: u32, asked: usize, hinted: Option<usize>) -> bool {
        let mut inner = self.inner.borrow_mut();
        let members = inner.options.members.len();
        let state = &mut inner.groups[group as usize];
        if state.leader != asked {
            // Another request already moved the client on from `asked`.
            return false;
        }
        let next = hinted.unwrap_or((asked + 1) % members);
        let moved_to_hint = hinted.is_some() && next != asked;
        if next != asked || hinted.is_none() {
            state.leader = next;
            state.connection = None;
        }
        moved_to_hint
    }

    /// The position in `options.members` of the node a `NotLeader` names: by its id, else by
    /// its client address (the member given without an id learns it), else a member learned
    /// now (a node added after the client started), within [`MEMBERS_KNOWN_MAX`].
    fn member_of_hint(&self, id: Option<NodeId>, addr: Option<&str>) -> Option<usize> {
        let id = id?;
        let mut inner = self.inner.borrow_mut();
        let members = &mut inner.options.members;
        if let Some(known) = members.iter().position(|m| m.id == Some(id)) {
            return Some(known);
        }
        let addr: SocketAddr = addr?.parse().ok()?;
        if let Some(known) = members.iter().position(|m| m.addr == addr) {
            if members[known].id.is_none() {
                members[known].id = Some(id);
            }
            return (members[known].id == Some(id)).then_some(known);
        }
        if members.len() >= MEMBERS_KNOWN_MAX {
            return None;
        }
        members.push(MemberAddr { id: Some(id), addr });
        let known = members.len() - 1;
        inner
            .connecting
            .push(Rc::new(glommio::sync::Semaphore::new(1)));
        Some(known)
    }

    /// Moves to the next member after a connection problem with member `asked`, unless another
    /// request already moved the client on from it.
    fn rotate(&self, group: u32, asked: usize) {
        let mut inner = self.inner.borrow_mut();
        let members = inner.options.members.len();
        let state = &mut inner.groups[group as usize];
        if state.leader == asked {
            state.leader = (asked + 1) % members;
            state.connection = None;
        }
    }

    /// The next session sequence, once it is within [`SESSION_RESPONSES_MAX`] of the lowest
    /// unanswered one: the state machine remembers the responses of only that many sequences per
    /// session, and keeping every retry inside that window is what makes it find its first answer
    /// (see `limits::SESSION_RESPONSES_MAX`). Waits while the window is full, until `deadline`.
    async fn take_sequence(&self, group: u32, deadline: Option<Instant>) -> Result<u64, Error> {
        if let Some(sequence) = self.take_sequence_now(group, None) {
            return Ok(sequence);
        }
        // The window is full: rare, so the waiting (and its timer) is boxed, off the future of
        // every write.
        Box::pin(async {
            let take = std::future::poll_fn(|cx| match self.take_sequence_now(group, Some(cx)) {
                Some(sequence) => Poll::Ready(sequence),
                None => Poll::Pending,
            });
            let Some(at) = deadline else {
                return Ok(take.await);
            };
            let left = at.saturating_duration_since(Instant::now());
            glommio::timer::timeout(left, async { Ok(take.await) })
                .await
                .map_err(|_| {
                    self.timed_out(
                        0,
                        "the session's window of unanswered writes stayed full".into(),
                    )
                })
        })
        .await
    }

    /// The next session sequence if the window has room; else None, and the task of `cx` is
    /// woken when a sequence is answered.
    fn take_sequence_now(&self, group: u32, cx: Option<&mut Context<'_>>) -> Option<u64> {
        let mut all = self.inner.borrow_mut();
        let inner = &mut all.groups[group as usize];
        let next = inner.next_sequence;
        let lowest = inner.unanswered.first().copied().unwrap_or(next);
        if next - lowest < SESSION_RESPONSES_MAX as u64 {
            inner.next_sequence += 1;
            inner.unanswered.insert(next);
            return Some(next);
        }
        if let Some(cx) = cx {
            inner.window_waiters.push(cx.waker().clone());
        }
        None
    }

    fn answered(&self, group: u32, sequence: u64) {
        let waiters = {
            let mut all = self.inner.borrow_mut();
            let inner = &mut all.groups[group as usize];
            inner.unanswered.remove(&sequence);
            std::mem::take(&mut inner.window_waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// Where a client first looks for group `group`'s leader: the node the group prefers (voter
/// `group` mod voters, in id order) when the members' ids are known, so that a cluster whose
/// leaders are spread is found without a redirect; else member `group` mod members.
fn preferred_member(members: &[MemberAddr], group: u32) -> usize {
    let mut ids: Vec<NodeId> = members.iter().filter_map(|m| m.id).collect();
    if ids.len() == members.len() {
        ids.sort_unstable();
        let id = ids[group as usize % ids.len()];
        if let Some(i) = members.iter().position(|m| m.id == Some(id)) {
            return i;
        }
    }
    group as usize % members.len()
}

/// Marks a sequence answered when its call ends, also when the call's future is dropped.
struct SequenceGuard<'a> {
    client: &'a Client,
    group: u32,
    sequence: u64,
}

impl Drop for SequenceGuard<'_> {
    fn drop(&mut self) {
        self.client.answered(self.group, self.sequence);
    }
}

/// First pause between attempts of one request; it doubles each attempt up to
/// [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between attempts of one request.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(300);

/// The pause before attempt `attempt` of a request (0-based; the first attempt does not wait).
/// The etcd load target backs off with the same function, so both targets retry alike.
pub fn retry_backoff(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    (RETRY_BACKOFF_MIN * (1u32 << attempt.min(16))).min(RETRY_BACKOFF_MAX)
}

fn done_index(reply: Reply) -> Result<Index, Error> {
    match reply {
        Reply::Done { log_index } => Ok(log_index),
        other => Err(unexpected(other)),
    }
}

fn value_of(reply: Reply) -> Result<Option<Bytes>, Error> {
    match reply {
        Reply::Value(value) => Ok(Some(value)),
        Reply::NotFound => Ok(None),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> Error {
    Error::Server(ClientError::Internal {
        message: format!("unexpected reply {reply:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_ends_at_its_deadline_even_mid_attempt() {
        // A node that takes requests and never answers: only the deadline can end the call.
        let (addr, silent) = connection::tests::mute_node(false);
        let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut options = ClientOptions::new(vec![addr.into()], 9);
                // Attempts far longer than the deadline: the first one must be cut short.
                options.attempt_timeout = Duration::from_secs(600);
                options.request_timeout = Some(Duration::from_millis(200));
                let client = Client::new(options);
                client.put("k", "v").await
            })
            .unwrap()
            .join()
            .unwrap();
        silent.join().unwrap();
        match result {
            Err(Error::TimedOut {
                after, attempts, ..
            }) => {
                assert_eq!(after, Duration::from_millis(200));
                assert_eq!(attempts, 1);
            }
            other => panic!("expected the deadline to end the call, got {other:?}"),
        }
    }
}
