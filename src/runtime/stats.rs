//! Counters of one node. Those of the Raft executor's tasks are shared by them alone (so `Cell`,
//! not atomics); those of the client connections, which other executors may serve, are atomics
//! updated once per socket read or write, not per request. `ringraft stats` shows them over the
//! client port, `/metrics` over HTTP.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters a node keeps; `ringraft stats` shows them.
#[derive(Default, Debug)]
pub struct Counters {
    /// Elections this node started (became candidate).
    pub elections: Cell<u64>,
    /// Election timeouts that fired here: became pre-candidate (or candidate without pre-vote).
    /// With pre-vote, most of those spurious timeouts never become elections.
    pub campaigns: Cell<u64>,
    /// Proposals accepted as leader.
    pub proposals: Cell<u64>,
    /// Snapshots taken or installed.
    pub snapshots: Cell<u64>,
    /// Peer frames that failed validation (connection closed).
    pub invalid_peer_frames: Cell<u64>,
    /// Peer connections refused at the handshake (wrong cluster, unknown id, bad version).
    pub refused_handshakes: Cell<u64>,
    /// Outgoing peer messages dropped because the peer's queue was full or it was unreachable.
    pub dropped_peer_messages: Cell<u64>,
    /// Bytes received from peers.
    pub bytes_in: Cell<u64>,
    /// Bytes sent to peers.
    pub bytes_out: Cell<u64>,
    /// What the client connections count, on whichever executor serves them.
    pub clients: Arc<ClientCounters>,
    /// Outgoing peer messages dropped by link emulation (loss, partition, full emulated wire).
    pub emulated_drops: Cell<u64>,
    /// Groups of log writes made durable (each one fdatasync per segment touched).
    pub disk_syncs: Cell<u64>,
    /// Output jobs made durable (batched into `disk_syncs` groups).
    pub disk_jobs: Cell<u64>,
    /// Histograms and gauges served on `/metrics` (see `runtime::metrics`).
    pub metrics: super::metrics::Metrics,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    /// Client frames that failed validation.
    pub fn invalid_client_frames(&self) -> u64 {
        self.clients.invalid_frames.load(Ordering::Relaxed)
    }

    /// Bytes received from peers and clients.
    pub fn bytes_in_total(&self) -> u64 {
        self.bytes_in.get() + self.clients.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes sent to peers and clients.
    pub fn bytes_out_total(&self) -> u64 {
        self.bytes_out.get() + self.clients.bytes_out.load(Ordering::Relaxed)
    }
}

/// Counters of the client connections, shared by every executor that serves them.
#[derive(Default, Debug)]
pub struct ClientCounters {
    /// Client frames that failed validation (connection closed).
    pub invalid_frames: AtomicU64,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients.
    pub bytes_out: AtomicU64,
}

impl ClientCounters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
