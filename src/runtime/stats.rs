//! Counters of one node, shared by its tasks on one executor (so `Cell`, not atomics).
//! `ringraft stats` shows them over the client port, `/metrics` over HTTP.

use std::cell::Cell;

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
    /// Client frames that failed validation (connection closed).
    pub invalid_client_frames: Cell<u64>,
    /// Peer connections refused at the handshake (wrong cluster, unknown id, bad version).
    pub refused_handshakes: Cell<u64>,
    /// Outgoing peer messages dropped because the peer's queue was full or it was unreachable.
    pub dropped_peer_messages: Cell<u64>,
    /// Bytes received from peers and clients.
    pub bytes_in: Cell<u64>,
    /// Bytes sent to peers and clients.
    pub bytes_out: Cell<u64>,
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
}
