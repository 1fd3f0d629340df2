//! The Raft loop: owns the core, the state machine and the pending client requests; turns
//! events (ticks, peer messages, client requests, disk completions) into core inputs, and the
//! core's outputs into sends, writes, applies and answers, in the order `core::Output` requires.
//!
//! It runs as one task on the Raft executor. The only thing it awaits is its inbox; everything
//! else it hands to other tasks through bounded queues, so one slow peer or disk write never
//! stalls the loop.

mod leadership;
mod membership;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::poll_once;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};

use super::config::NodeConfig;
use super::members::MemberTable;
use super::server::ReplyTo;
use super::stats::Counters;
use super::storage::{SnapshotFile, WriteJob};
use super::transport::Outbound;
use crate::core::{
    Entry, EntryKind, Envelope, Index, Membership, Message, NodeId, Output, ProposeError, RawNode,
    Role, Snapshot, SnapshotChunk, SnapshotMeta, Term,
};
use crate::kv::{ApplyResult, CommandRef, KvStore, OpRef, Response};
use crate::log::record;
use crate::wire::{self, ClientError, ClientRequest, ClientResponse, NodeStats, Reply, Request};

/// Events the Raft loop handles.
pub enum Event {
    /// One core tick elapsed.
    Tick,
    /// A verified message from a peer.
    Peer(Envelope),
    /// A verified request from a client, and where to answer.
    Client(ClientRequest, ReplyTo),
    /// Disk jobs up to and including this sequence number are durable.
    Persisted(u64),
    /// A snapshot this node took is durable (or a newer one already was).
    SnapshotSaved(Snapshot),
    /// Chunks of the snapshot, read from its file, to send to followers.
    SnapshotChunksRead(Vec<Envelope>),
    /// SIGTERM: a leader hands leadership to its most caught-up follower first (bounded);
    /// then stop taking work, finish what is durable, exit. Ticks go on arriving meanwhile.
    Shutdown,
}

/// Outputs' worth of snapshot chunks waiting to be read; more are dropped (the core resends
/// what is never acknowledged).
const CHUNK_READS_QUEUED_MAX: usize = 64;

/// Events handled before the core's output is taken: the batching window.
const EVENTS_PER_OUTPUT_MAX: usize = 1024;

/// How long one turn of the loop may spend freeing the entries the core let go of (see
/// [`crate::core::Released`]), checked every [`RELEASED_FREED_PER_CHECK`] entries. Freeing an
/// entry costs from a reference count (a follower's entries share receive buffers) to a page
/// unmapped; a compaction freed at once held a leader's loop for 20-57 ms (perf, `3node-1kb`).
const RELEASED_FREEING_PER_TURN: Duration = Duration::from_micros(200);
/// Entries freed between two looks at the clock.
const RELEASED_FREED_PER_CHECK: usize = 64;
/// First byte of a raw (pure consensus) proposal; no KV command uses it.
pub const RAW_PROPOSAL_TAG: u8 = 0;

/// Attempts of one write that may wait on one entry (the first plus retries that joined it);
/// a further retry answers the oldest waiting attempt with Timeout to make room.
const WRITE_ATTEMPTS_MAX: usize = 4;

struct PendingWrite {
    term: Term,
    request_id: u64,
    reply: ReplyTo,
    /// Retries that joined this entry while it was in flight; answered with the same result.
    joined: Vec<(u64, ReplyTo)>,
    /// When the leader proposed it (for the commit latency histogram).
    proposed_at: Instant,
    deadline: Instant,
    /// (client id, session sequence) of a KV command, so that a retry finds it.
    session: Option<(u64, u64)>,
}

impl PendingWrite {
    /// Sends `result` to the attempt that proposed the entry and to every retry that joined it.
    fn answer(self, result: Result<Reply, ClientError>) {
        for (request_id, reply) in self.joined {
            reply.send(ClientResponse {
                request_id,
                result: result.clone(),
            });
        }
        self.reply.send(ClientResponse {
            request_id: self.request_id,
            result,
        });
    }
}

struct PendingRead {
    request_id: u64,
    key: Bytes,
    reply: ReplyTo,
}

/// A snapshot taken but not yet serialized: a copy of the state machine (cheap: values are
/// shared) and where it stands in the log.
struct PendingSnapshot {
    meta: SnapshotMeta,
    kv: KvStore,
}

struct DiskJobInFlight {
    seq: u64,
    after_persist: Vec<Envelope>,
    last_written: Option<(Index, Term)>,
    /// A snapshot to start saving once this job (and so every entry it covers) is durable.
    then_save: Option<PendingSnapshot>,
}

/// The Raft loop's state.
pub struct Driver {
    config: Rc<NodeConfig>,
    node: RawNode,
    kv: KvStore,
    counters: Rc<Counters>,
    /// One queue per member of the configuration in force but this node (their sender tasks).
    peers: BTreeMap<NodeId, LocalSender<wire::PeerFrame>>,
    /// Opens the connections of members added to the configuration.
    outbound: Outbound,
    /// The members' addresses, shared with the peer listener.
    members: Rc<MemberTable>,
    /// The configuration the peers and the member table were last set up for.
    membership_seen: Membership,
    /// The leader known when the peers were last set up.
    leader_seen: Option<NodeId>,
    /// `MemberTable::announced_generation` when the peers were last set up.
    announced_seen: u64,
    /// The addresses each peer's sender task was started with.
    connected: BTreeMap<NodeId, super::config::Member>,
    /// The membership change a client asked for, answered once it is complete.
    member_change: Option<membership::PendingChange>,
    disk: LocalSender<(u64, WriteJob)>,
    snapshot_file: Arc<SnapshotFile>,
    /// The Raft loop's own inbox, for the snapshot writer's completion.
    inbox: Rc<LocalSender<Event>>,
    /// The snapshot chunk reader's queue (see `read_snapshot_chunks`).
    chunk_reads: LocalSender<Vec<SnapshotChunk>>,
    /// A snapshot being received: its index and when its first chunk came.
    stream_started: Option<(Index, Instant)>,
    next_disk_seq: u64,
    disk_in_flight: VecDeque<DiskJobInFlight>,
    fbb: flatbuffers::FlatBufferBuilder<'static>,
    writes: BTreeMap<Index, PendingWrite>,
    /// Pending writes by client session: a client that retries a write still in the log (its
    /// attempt timed out on a slow or congested path) is attached to the entry already proposed
    /// instead of proposing it again. Without this, retries under congestion add duplicates to
    /// the log faster than it commits them, and throughput collapses.
    pending_sessions: HashMap<(u64, u64), Index>,
    reads_by_id: BTreeMap<u64, PendingRead>,
    /// Reads whose index is known, waiting for the state machine to reach it.
    reads_ready: Vec<(Index, PendingRead)>,
    next_read_id: u64,
    role: Role,
    leader: Option<NodeId>,
    shutting_down: bool,
    transfer: Option<leadership::PendingTransfer>,
    /// Writes a leader handing over redirected here, held until this node leads.
    awaiting_leadership: leadership::AwaitingLeadership,
    stepping_down: Option<leadership::SteppingDown>,
    /// The core's `transfer_elections` when the last campaign was counted.
    transfer_elections_seen: u64,
    /// When the entries being applied were found committed (for the commit latency histogram).
    committed_at: Instant,
    /// Leader spreading (several groups): the earliest time this leader may hand its group to
    /// the group's preferred voter, and the wait after that attempt.
    spread_next_at: Instant,
    spread_backoff: Duration,
    /// Entries the core let go of, freed a slice per turn.
    releasing: crate::core::Released,
}

impl Driver {
    /// A driver for `node`, whose state machine is `kv`. `inbox` is the sending end of the
    /// queue `run` reads.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Rc<NodeConfig>,
        node: RawNode,
        kv: KvStore,
        counters: Rc<Counters>,
        outbound: Outbound,
        members: Rc<MemberTable>,
        disk: LocalSender<(u64, WriteJob)>,
        snapshot_file: Arc<SnapshotFile>,
        inbox: Rc<LocalSender<Event>>,
    ) -> Driver {
        let (chunk_reads, chunk_reads_rx) =
            glommio::channels::local_channel::new_bounded(CHUNK_READS_QUEUED_MAX);
        glommio::spawn_local(read_snapshot_chunks(
            config.id,
            snapshot_file.clone(),
            chunk_reads_rx,
            inbox.clone(),
        ))
        .detach();
        let mut driver = Driver {
            config,
            node,
            kv,
            counters,
            peers: BTreeMap::new(),
            outbound,
            members,
            membership_seen: Membership::default(),
            connected: BTreeMap::new(),
            leader_seen: None,
            announced_seen: 0,
            member_change: None,
            disk,
            snapshot_file,
            inbox,
            chunk_reads,
            stream_started: None,
            next_disk_seq: 0,
            disk_in_flight: VecDeque::new(),
            fbb: flatbuffers::FlatBufferBuilder::new(),
            writes: BTreeMap::new(),
            pending_sessions: HashMap::new(),
            reads_by_id: BTreeMap::new(),
            reads_ready: Vec::new(),
            next_read_id: 1,
            role: Role::Follower,
            leader: None,
            shutting_down: false,
            transfer: None,
            awaiting_leadership: Default::default(),
            stepping_down: None,
            transfer_elections_seen: 0,
            committed_at: Instant::now(),
            spread_next_at: Instant::now(),
            spread_backoff: Duration::ZERO,
            releasing: Default::default(),
        };
        driver.spread_backoff = driver.spread_backoff_min();
        driver.spread_next_at = Instant::now() + driver.spread_backoff;
        driver.follow_membership();
        driver
    }

    /// Runs until shutdown: handle a burst of events, then act on the core's output.
    pub async fn run(mut self, inbox: LocalReceiver<Event>) {
        while let Some(event) = inbox.recv().await {
            super::trace::event("loop_begin", 0);
            self.handle(event).await;
            let mut handled = 1;
            for _ in 0..EVENTS_PER_OUTPUT_MAX {
                match poll_once(inbox.recv()).await {
                    Some(Some(event)) => self.handle(event).await,
                    _ => break,
                }
                handled += 1;
            }
            super::trace::event("loop_handled", handled);
            self.release_awaiting_leadership();
            let output = self.node.take_output();
            let committed = output.committed_entries.len() as u64;
            self.process(output).await;
            if self.node.membership() != &self.membership_seen
                || self.node.leader() != self.leader_seen
                || self.members.announced_generation() != self.announced_seen
            {
                self.follow_membership();
            }
            self.check_member_change();
            self.check_transfer();
            self.check_spread();
            self.check_stepping_down();
            self.publish_metrics();
            super::server::flush_answers();
            self.free_released();
            super::trace::event("loop_processed", committed);
            if self.shutting_down && self.disk_in_flight.is_empty() {
                return;
            }
        }
    }

    /// Frees entries the core let go of, for at most [`RELEASED_FREEING_PER_TURN`].
    fn free_released(&mut self) {
        if self.releasing.0.is_empty() {
            return;
        }
        let started = Instant::now();
        while self.releasing.free_some(RELEASED_FREED_PER_CHECK) > 0
            && started.elapsed() < RELEASED_FREEING_PER_TURN
        {}
        // The emptied queue is the log's old buffer, tens of megabytes: unmapping it took
        // 1.3-2.5 ms here, so a blocking thread does it.
        if let Some(buffer) = self.releasing.take_buffer() {
            glommio::spawn_local(async move {
                glommio::executor()
                    .spawn_blocking(move || drop(buffer))
                    .await;
            })
            .detach();
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => {
                self.node.tick();
                self.expire_writes();
            }
            Event::Peer(envelope) => {
                super::trace::event(envelope.message.kind_name(), 0);
                if let Message::InstallSnapshot {
                    offset: 0,
                    last_included_index,
                    ..
                } = envelope.message
                {
                    self.stream_started = Some((last_included_index, Instant::now()));
                }
                self.counters.metrics.contact(envelope.from, Instant::now());
                trace_replication(false, &envelope.message);
                self.node.step(envelope)
            }
            Event::Client(request, reply) => {
                super::trace::event("cli_handle", 0);
                self.handle_client(request, reply)
            }
            Event::Persisted(seq) => self.persisted(seq).await,
            Event::SnapshotSaved(snapshot) => {
                super::trace::event("snap_saved", snapshot.meta.last_included_index);
                self.node.snapshot_taken(snapshot);
                Counters::add(&self.counters.snapshots, 1);
            }
            Event::SnapshotChunksRead(envelopes) => {
                for envelope in envelopes {
                    self.send(envelope);
                }
            }
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    // ------------------------------------------------------------ clients

    fn handle_client(&mut self, request: ClientRequest, reply: ReplyTo) {
        let request_id = request.request_id;
        if self.shutting_down {
            return reply.send(error(
                request_id,
                ClientError::Internal {
                    message: "node is shutting down".into(),
                },
            ));
        }
        if request.await_leadership
            && request.request.is_write()
            && self.node.role() != Role::Leader
        {
            return self.await_leadership(request, reply);
        }
        let op = match request.request {
            Request::Stats => {
                return reply.send(ClientResponse {
                    request_id,
                    result: Ok(Reply::Stats(self.stats())),
                })
            }
            Request::TransferLeader { to } => {
                return self.handle_transfer_request(request_id, to, reply)
            }
            Request::MemberList => {
                return reply.send(ClientResponse {
                    request_id,
                    result: Ok(Reply::Members(self.member_listing())),
                })
            }
            Request::MemberChange(_) if self.config.groups > 1 => {
                // Each group has its own configuration and the peer listener admits members
                // by group 0's: changing them together is not built yet.
                return reply.send(error(
                    request_id,
                    ClientError::Refused {
                        message: format!(
                            "membership changes are not supported with groups = {} (each \
                             group's configuration would have to change together)",
                            self.config.groups
                        ),
                    },
                ));
            }
            Request::MemberChange(change) => {
                return self.handle_member_change(request_id, change, reply)
            }
            Request::Get {
                key,
                linearizable: false,
            } => return reply.send(self.read_local(request_id, &key)),
            Request::Get {
                key,
                linearizable: true,
            } => return self.start_read(request_id, key, reply),
            Request::Put { ref key, ref value } => OpRef::Put { key, value },
            Request::Delete { ref key } => OpRef::Delete { key },
            Request::Propose { payload } => {
                return self.propose_with_session(
                    payload.len() + 1,
                    |out| {
                        out.push(RAW_PROPOSAL_TAG);
                        out.extend_from_slice(&payload);
                    },
                    request_id,
                    reply,
                    None,
                );
            }
        };
        let session = (request.sequence > 0).then_some((request.client_id, request.sequence));
        if let Some(key) = session {
            if let Some(&index) = self.pending_sessions.get(&key) {
                if let Some(write) = self.writes.get_mut(&index) {
                    // A retry of an entry still in flight waits for that entry; every attempt
                    // gets its answer (the client listens to the latest, older ones are moot).
                    if write.joined.len() + 1 >= WRITE_ATTEMPTS_MAX {
                        let (old_id, old) = write.joined.remove(0);
                        old.send(error(old_id, ClientError::Timeout));
                    }
                    write.joined.push((request_id, reply));
                    write.deadline =
                        Instant::now() + Duration::from_millis(self.config.request_timeout_ms);
                    return;
                }
            }
        }
        let command = CommandRef {
            client_id: request.client_id,
            sequence: request.sequence,
            op,
        };
        self.propose_with_session(
            command.encoded_len_bytes(),
            |out| command.encode_into(out),
            request_id,
            reply,
            session,
        );
    }

    /// Proposes the command that `write_command` writes. The command is written once, straight
    /// into the log record of the entry it becomes (index and term known in advance), and that
    /// record is what the log writes and the followers receive, unchanged.
    fn propose_with_session(
        &mut self,
        command_bytes: usize,
        write_command: impl FnOnce(&mut Vec<u8>),
        request_id: u64,
        reply: ReplyTo,
        session: Option<(u64, u64)>,
    ) {
        let (index, term) = self.node.next_proposal();
        let encoded = record::encode_single_with(
            term,
            index,
            EntryKind::Normal,
            command_bytes,
            write_command,
        );
        let proposed = match encoded {
            Ok((record, data)) => self.node.propose_encoded(data, Some(record)),
            Err(_) => Err(ProposeError::TooLarge {
                size_bytes: command_bytes,
                limit_bytes: crate::limits::ENTRY_BYTES_MAX,
            }),
        };
        match proposed {
            Ok(index) => {
                super::trace::event("propose", index);
                Counters::add(&self.counters.proposals, 1);
                let proposed_at = Instant::now();
                let deadline = proposed_at + Duration::from_millis(self.config.request_timeout_ms);
                let term = self.node.hard_state().current_term;
                if let Some(key) = session {
                    self.pending_sessions.insert(key, index);
                }
                self.writes.insert(
                    index,
                    PendingWrite {
                        term,
                        request_id,
                        reply,
                        joined: Vec::new(),
                        proposed_at,
                        deadline,
                        session,
                    },
                );
            }
            Err(
                e @ (ProposeError::TransferInProgress | ProposeError::NotLeader { leader: None }),
            ) => {
                if let Err(reply) = self.hold_during_transfer(request_id, reply) {
                    reply.send(error(request_id, self.propose_error(e)));
                }
            }
            Err(e) => reply.send(error(request_id, self.propose_error(e))),
        }
    }

    /// Forgets a pending write's session entry (the write was answered or given up).
    fn forget_session(&mut self, write: &PendingWrite) {
        if let Some(key) = write.session {
            self.pending_sessions.remove(&key);
        }
    }

    fn propose_error(&self, e: ProposeError) -> ClientError {
        match e {
            ProposeError::NotLeader { leader } => self.not_leader(leader),
            // Point clients at the node taking over, so they retry there at once.
            ProposeError::TransferInProgress => {
                self.not_leader(self.transfer.as_ref().map(|t| t.to))
            }
            ProposeError::Backpressure => ClientError::Backpressure,
            ProposeError::TooLarge {
                size_bytes,
                limit_bytes,
            } => ClientError::TooLarge {
                size_bytes: size_bytes as u64,
                limit_bytes: limit_bytes as u64,
            },
        }
    }

    /// `NotLeader` naming `leader`; or, from a former leader that handed its vote over and
    /// has heard from no leader since, naming the node it handed leadership to.
    fn not_leader(&self, leader: Option<NodeId>) -> ClientError {
        let handed_to = match leader {
            None => self.node.handed_vote_to(),
            Some(_) => None,
        };
        let leader = leader.or(handed_to);
        let leader_addr = leader
            .and_then(|id| self.members.get(id))
            .map(|m| m.client_addr.to_string());
        ClientError::NotLeader {
            leader_hint: leader,
            leader_addr,
            handing_over: handed_to.is_some(),
        }
    }

    fn start_read(&mut self, request_id: u64, key: Bytes, reply: ReplyTo) {
        let read_id = self.next_read_id;
        self.next_read_id += 1;
        match self.node.read_index(read_id) {
            Ok(()) => {
                self.reads_by_id.insert(
                    read_id,
                    PendingRead {
                        request_id,
                        key,
                        reply,
                    },
                );
            }
            Err(_) => reply.send(error(request_id, self.not_leader(self.node.leader()))),
        }
    }

    fn read_local(&self, request_id: u64, key: &[u8]) -> ClientResponse {
        let result = match self.kv.get(key) {
            Some(value) => Reply::Value(Bytes::copy_from_slice(value)),
            None => Reply::NotFound,
        };
        ClientResponse {
            request_id,
            result: Ok(result),
        }
    }

    fn expire_writes(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.writes.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let write = entry.remove();
            self.forget_session(&write);
            write.answer(Err(ClientError::Timeout));
        }
    }

    /// Publishes role, term, indexes and each follower's match index for `/metrics`: a few
    /// stores per round of the loop, none per write.
    fn publish_metrics(&self) {
        let log = self.node.log();
        let state = super::metrics::RaftState {
            role: self.node.role(),
            term: self.node.hard_state().current_term,
            leader_id: self.node.leader().unwrap_or(0),
            commit_index: log.commit_index(),
            applied_index: log.applied_index(),
            last_log_index: log.last_index(),
        };
        let leading = state.role == Role::Leader;
        self.counters.metrics.publish(state, |peer| {
            leading.then(|| self.node.match_index(peer)).flatten()
        });
    }

    fn stats(&self) -> NodeStats {
        let log = self.node.log();
        NodeStats {
            node_id: self.config.id,
            role: self.node.role(),
            term: self.node.hard_state().current_term,
            leader_id: self.node.leader(),
            commit_index: log.commit_index(),
            applied_index: log.applied_index(),
            last_log_index: log.last_index(),
            elections: self.counters.elections.get(),
            proposals: self.counters.proposals.get(),
            snapshots: self.counters.snapshots.get(),
            invalid_peer_frames: self.counters.invalid_peer_frames.get(),
            invalid_client_frames: self.counters.invalid_client_frames(),
            refused_handshakes: self.counters.refused_handshakes.get(),
            dropped_peer_messages: self.counters.dropped_peer_messages.get(),
            bytes_in: self.counters.bytes_in_total(),
            bytes_out: self.counters.bytes_out_total(),
            disk_syncs: self.counters.disk_syncs.get(),
            disk_jobs: self.counters.disk_jobs.get(),
            campaigns: self.counters.campaigns.get(),
            emulated_drops: self.counters.emulated_drops.get(),
            votes_withheld: self.node.votes_withheld(),
            recovering_to: self.node.recovering_to(),
            transfer_elections: self.node.transfer_elections(),
            group: self.config.group,
            groups: self.config.groups,
            awaiting_leadership: self.awaiting_leadership.len() as u64,
        }
    }

    // ------------------------------------------------------------ output

    async fn process(&mut self, mut output: Output) {
        // Nothing below does I/O itself: it wakes the disk task, the peer senders and the client
        // writers, which then run in the order they were woken. So wake them in the order of
        // the critical path: the disk first (the longest step, and it runs on another thread),
        // then the peers (new entries must reach a quorum), then the clients.
        let installed = output.snapshot.clone();
        let last_written = output.last_written();
        self.releasing.add(std::mem::take(&mut output.released.0));
        if output.needs_persist() || output.compact_upto.is_some() {
            let job = WriteJob {
                installed_snapshot: output.snapshot.take(),
                entries: std::mem::take(&mut output.entries),
                hard_state: output.hard_state,
                purge_upto: output.compact_upto,
            };
            self.submit(
                job,
                std::mem::take(&mut output.messages_after_persist),
                last_written,
            )
            .await;
        } else {
            self.after_earlier_writes(std::mem::take(&mut output.messages_after_persist));
        }
        for envelope in std::mem::take(&mut output.messages) {
            super::trace::event(envelope.message.kind_name(), 1);
            self.send(envelope);
        }
        let chunks = std::mem::take(&mut output.snapshot_chunks);
        if !chunks.is_empty() && self.chunk_reads.try_send(chunks).is_err() {
            Counters::add(&self.counters.dropped_peer_messages, 1);
        }
        if let Some(snapshot) = installed {
            if let Err(e) = self.kv.restore(&snapshot.data) {
                panic!(
                    "snapshot from the leader at index {} does not restore: {e}",
                    snapshot.meta.last_included_index
                );
            }
            Counters::add(&self.counters.snapshots, 1);
            self.report_stream(&snapshot);
        }
        if let Some(last) = output.committed_entries.last() {
            super::trace::event("apply", last.index);
        }
        if !output.committed_entries.is_empty() {
            self.committed_at = Instant::now();
            for entry in std::mem::take(&mut output.committed_entries) {
                self.apply(entry);
            }
            let metrics = &self.counters.metrics;
            metrics
                .apply_latency
                .record_duration(self.committed_at.elapsed());
        }
        // After the commits: entries this node committed as leader in the step that ended its
        // leadership (a transfer's last acknowledgement both commits and hands the vote over)
        // are answered done, not sent to retry at the next leader.
        if let Some(soft) = output.soft_state {
            self.role_changed(soft.role, soft.leader);
        }
        for read in output.read_states {
            if let Some(pending) = self.reads_by_id.remove(&read.request_id) {
                self.reads_ready.push((read.read_index, pending));
            }
        }
        for read_id in output.reads_failed {
            if let Some(pending) = self.reads_by_id.remove(&read_id) {
                pending.reply.send(error(
                    pending.request_id,
                    self.not_leader(self.node.leader()),
                ));
            }
        }
        self.serve_ready_reads();
        if output.snapshot_wanted {
            self.take_snapshot();
        }
    }

    /// Says how fast an installed snapshot streamed, from its first chunk's arrival to its
    /// restore (what `scripts/snapshot-stream.sh` reads).
    fn report_stream(&mut self, snapshot: &Snapshot) {
        let index = snapshot.meta.last_included_index;
        let Some((_, started)) = self.stream_started.filter(|(i, _)| *i == index) else {
            return;
        };
        let seconds = started.elapsed().as_secs_f64();
        let mib = snapshot.data.len() as f64 / (1024.0 * 1024.0);
        eprintln!(
            "ringraft: node {}: installed the snapshot at index {index}: {} bytes streamed in \
             {:.0} ms ({:.1} MiB/s, {:.0} Mbit/s)",
            self.config.id,
            snapshot.data.len(),
            seconds * 1000.0,
            mib / seconds.max(1e-9),
            snapshot.data.len() as f64 * 8.0 / 1e6 / seconds.max(1e-9),
        );
        self.stream_started = None;
    }

    fn role_changed(&mut self, role: Role, leader: Option<NodeId>) {
        // Elections are rare and explain most surprises in a node's log: say each one.
        let (id, term) = (self.config.id, self.node.hard_state().current_term);
        if role == Role::Leader && self.role != Role::Leader {
            eprintln!("ringraft: node {id}: leader of term {term}");
        } else if self.role == Role::Leader && role != Role::Leader {
            eprintln!("ringraft: node {id}: no longer leads (term {term}, leader {leader:?})");
        }
        if role == Role::Candidate && self.role != Role::Candidate {
            Counters::add(&self.counters.elections, 1);
        }
        let campaigning = |r: Role| matches!(r, Role::PreCandidate | Role::Candidate);
        if campaigning(role) && !campaigning(self.role) {
            // A campaign on a leader's TimeoutNow is a transfer, not an election timeout.
            let by_transfer = self.node.transfer_elections();
            if by_transfer > self.transfer_elections_seen {
                self.transfer_elections_seen = by_transfer;
                eprintln!("ringraft: node {id}: campaigning in term {term} on a leader transfer");
            } else {
                Counters::add(&self.counters.campaigns, 1);
                eprintln!("ringraft: node {id}: election timeout in term {term}; campaigning");
            }
        }
        if self.role == Role::Leader && role != Role::Leader {
            // Entries proposed here may still commit under the next leader; the client retries
            // with the same session sequence, so the state machine applies it at most once.
            self.pending_sessions.clear();
            for (_, write) in std::mem::take(&mut self.writes) {
                write.answer(Err(self.not_leader(leader)));
            }
        }
        self.role = role;
        self.leader = leader;
    }

    fn send(&mut self, envelope: Envelope) {
        let Some(queue) = self.peers.get(&envelope.to) else {
            return;
        };
        trace_replication(true, &envelope.message);
        if let Message::AppendEntries { entries, .. } = &envelope.message {
            if !entries.is_empty() {
                let sent = entries.len() as u64;
                self.counters.metrics.append_entries_entries.record(sent);
            }
        }
        // The records of an AppendEntries are not copied: the frame refers to them.
        let frame =
            match wire::encode_peer_frame(&envelope, Some(self.config.cluster_id), &mut self.fbb) {
                Ok(frame) => frame,
                Err(e) => {
                    eprintln!(
                        "ringraft: cannot frame {} to {}: {e}",
                        envelope.message.kind_name(),
                        envelope.to
                    );
                    return;
                }
            };
        if queue.try_send(frame).is_err() {
            Counters::add(&self.counters.dropped_peer_messages, 1);
        }
    }

    async fn submit(
        &mut self,
        job: WriteJob,
        after_persist: Vec<Envelope>,
        last_written: Option<(Index, Term)>,
    ) {
        self.next_disk_seq += 1;
        let seq = self.next_disk_seq;
        super::trace::event("submit", seq);
        self.disk_in_flight.push_back(DiskJobInFlight {
            seq,
            after_persist,
            last_written,
            then_save: None,
        });
        // Bounded: when the disk falls behind, the Raft loop waits here, and so stops taking
        // new proposals: backpressure all the way to the clients.
        if self.disk.send((seq, job)).await.is_err() {
            panic!("the disk task stopped; cannot continue without durability");
        }
    }

    /// Messages of an output with nothing to write may leave once every earlier write is
    /// durable (the `Output` contract): now, if none is in flight, else with the newest one.
    /// Either way no empty job goes through the disk thread, whose round trip costs two thread
    /// wake-ups and would queue behind the write in flight anyway. This is the path of every
    /// follower's answer to a commit-only AppendEntries.
    fn after_earlier_writes(&mut self, messages: Vec<Envelope>) {
        match self.disk_in_flight.back_mut() {
            Some(newest) => newest.after_persist.extend(messages),
            None => {
                for envelope in messages {
                    self.send(envelope);
                }
            }
        }
    }

    async fn persisted(&mut self, upto_seq: u64) {
        super::trace::event("persisted", upto_seq);
        while self
            .disk_in_flight
            .front()
            .is_some_and(|job| job.seq <= upto_seq)
        {
            let job = self.disk_in_flight.pop_front().expect("checked");
            for envelope in job.after_persist {
                self.send(envelope);
            }
            if let Some((index, term)) = job.last_written {
                self.node.persisted(index, term);
            }
            if let Some(snapshot) = job.then_save {
                self.save_snapshot(snapshot);
            }
        }
    }

    fn apply(&mut self, entry: Entry) {
        let result = match entry.kind {
            EntryKind::Noop | EntryKind::Config => {
                self.kv.apply_empty(entry.index);
                None
            }
            EntryKind::Normal if entry.data.first() == Some(&RAW_PROPOSAL_TAG) => {
                self.kv.apply_empty(entry.index);
                Some(Ok(Reply::Done { log_index: entry.index }))
            }
            EntryKind::Normal => Some(match self.kv.apply(entry.index, &entry.data) {
                ApplyResult::Applied(response) => Ok(reply_of(response, entry.index)),
                // A retry answers with the first attempt's result, log index included.
                ApplyResult::Duplicate { response, applied_index } => Ok(reply_of(response, applied_index)),
                ApplyResult::Stale { forgotten_upto } => Err(ClientError::Internal {
                    message: format!("stale request: this session no longer remembers sequences up to {forgotten_upto}; not applied"),
                }),
                ApplyResult::Invalid(e) => Err(ClientError::Internal { message: format!("invalid command: {e}") }),
            }),
        };
        if let Some(write) = self.writes.remove(&entry.index) {
            self.forget_session(&write);
            let waited = self
                .committed_at
                .saturating_duration_since(write.proposed_at);
            self.counters.metrics.commit_latency.record_duration(waited);
            super::trace::event("reply", entry.index);
            let result = if write.term == entry.term {
                result.unwrap_or(Ok(Reply::Done {
                    log_index: entry.index,
                }))
            } else {
                Err(self.not_leader(self.node.leader())) // Our entry was overwritten.
            };
            write.answer(result);
        }
    }

    fn serve_ready_reads(&mut self) {
        let applied = self.kv.applied_index();
        let mut i = 0;
        while i < self.reads_ready.len() {
            if self.reads_ready[i].0 <= applied {
                let (_, read) = self.reads_ready.swap_remove(i);
                read.reply.send(self.read_local(read.request_id, &read.key));
            } else {
                i += 1;
            }
        }
    }

    fn take_snapshot(&mut self) {
        let index = self.node.log().applied_index();
        let Some(term) = self.node.log().term_at(index) else {
            return;
        };
        super::trace::event("snap_begin", index);
        let pending = PendingSnapshot {
            meta: SnapshotMeta {
                last_included_index: index,
                last_included_term: term,
                membership: self.node.membership_at(index),
            },
            kv: self.kv.clone(),
        };
        super::trace::event("snap_end", index);
        // Entries may be applied before they are durable here (committed is enough), but a
        // snapshot must not be: after a crash the log would end before the snapshot starts.
        // So it is saved once every write submitted so far is durable.
        match self.disk_in_flight.back_mut() {
            Some(newest) => newest.then_save = Some(pending),
            None => self.save_snapshot(pending),
        }
    }

    /// Serializes and saves a snapshot on its own blocking thread, beside the log's writes
    /// rather than in front of them, and off the Raft loop: tens of megabytes used to stop the
    /// loop for up to a hundred milliseconds, then hold up every fdatasync queued behind them
    /// for hundreds more. The log prefix it covers is compacted (and purged, through the disk
    /// queue) only once it is durable.
    fn save_snapshot(&mut self, pending: PendingSnapshot) {
        let file = self.snapshot_file.clone();
        let inbox = self.inbox.clone();
        glommio::spawn_local(async move {
            let index = pending.meta.last_included_index;
            super::trace::event("snapw_begin", index);
            let result = glommio::executor()
                .spawn_blocking(move || {
                    let PendingSnapshot { meta, kv } = pending;
                    let image = file.serialize(meta, &kv);
                    // Let go of the clone before the (paced) write: it keeps every value
                    // overwritten since the snapshot alive.
                    drop(kv);
                    file.save_taken(image?)
                })
                .await;
            match result {
                Ok(snapshot) => {
                    super::trace::event("snapw_end", index);
                    let _ = inbox.send(Event::SnapshotSaved(snapshot)).await;
                }
                Err(e) => {
                    eprintln!("ringraft: FATAL: saving a snapshot failed: {e}");
                    std::process::abort();
                }
            }
        })
        .detach();
    }
}

/// Reads the snapshot chunks the core names from the snapshot file, one output's worth at a
/// time on a blocking thread (in order, so that a follower gets them in order), and hands
/// them back to the Raft loop to send. The file stays open while the chunks are of the same
/// snapshot. A chunk of a snapshot no longer on disk is skipped: the core resends from the
/// follower's acknowledged offset.
async fn read_snapshot_chunks(
    id: NodeId,
    file: Arc<SnapshotFile>,
    requests: LocalReceiver<Vec<SnapshotChunk>>,
    inbox: Rc<LocalSender<Event>>,
) {
    let mut reader: Option<Arc<super::snapshot_file::SnapshotReader>> = None;
    while let Some(chunks) = requests.recv().await {
        let file = file.clone();
        let held = reader.clone();
        let (opened, envelopes) = glommio::executor()
            .spawn_blocking(move || {
                let mut reader = held;
                let mut envelopes = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    let index = chunk.last_included_index;
                    if reader.as_ref().map(|r| r.index()) != Some(index) {
                        reader = match file.reader(index) {
                            Ok(r) => r.map(Arc::new),
                            Err(e) => {
                                eprintln!("ringraft: node {id}: cannot stream the snapshot: {e}");
                                None
                            }
                        };
                    }
                    let Some(r) = &reader else { continue };
                    match r.read_chunk(chunk.offset, chunk.len) {
                        Ok(data) => envelopes.push(chunk.into_envelope(id, data)),
                        Err(e) => eprintln!("ringraft: node {id}: cannot stream the snapshot: {e}"),
                    }
                }
                (reader, envelopes)
            })
            .await;
        reader = opened;
        if !envelopes.is_empty()
            && inbox
                .send(Event::SnapshotChunksRead(envelopes))
                .await
                .is_err()
        {
            return; // The Raft loop is gone.
        }
    }
}

fn reply_of(response: Response, index: Index) -> Reply {
    match response {
        Response::Ok => Reply::Done { log_index: index },
        Response::Value(Some(value)) => Reply::Value(Bytes::from(value)),
        Response::Value(None) => Reply::NotFound,
    }
}

fn error(request_id: u64, e: ClientError) -> ClientResponse {
    ClientResponse {
        request_id,
        result: Err(e),
    }
}

/// Traces the indexes replication moves (`ae_out` / `ae_in`: the last index an AppendEntries
/// carries; `ack_out` / `ack_in`: the index a success answer reports durable), so that one
/// index can be followed across nodes (`scripts/trace-stages.py`).
fn trace_replication(outbound: bool, message: &Message) {
    if !super::trace::enabled() {
        return;
    }
    match message {
        Message::AppendEntries {
            prev_log_index,
            entries,
            ..
        } if !entries.is_empty() => {
            let label = if outbound { "ae_out" } else { "ae_in" };
            super::trace::event(label, prev_log_index + entries.len() as u64);
        }
        Message::AppendEntriesResponse {
            success: true,
            match_index,
            ..
        } => {
            let label = if outbound { "ack_out" } else { "ack_in" };
            super::trace::event(label, *match_index);
        }
        _ => {}
    }
}
