//! Snapshots: taking one when enough is applied, compaction, and streaming one to a follower
//! (a window of chunks in flight, `core::snapshot_stream`) and installing one from chunks
//! (paper section 7).

use bytes::Bytes;

use crate::core::message::{Envelope, Message};
use crate::core::progress::ProgressState;
use crate::core::snapshot_stream::{SnapshotChunk, SnapshotInfo, SnapshotStream, StreamWindow};
use crate::core::types::{Index, NodeId, Snapshot, SnapshotMeta};
use crate::limits;

use super::RawNode;

impl RawNode {
    /// Hands over the snapshot asked for with `Output::snapshot_wanted`, already durable: the
    /// log prefix it covers is compacted and `Output::compact_upto` tells the driver to purge it.
    pub fn snapshot_taken(&mut self, snapshot: Snapshot) {
        self.snapshot_requested = false;
        let index = snapshot.meta.last_included_index;
        if index <= self.log.snapshot_meta().last_included_index || index > self.log.applied_index()
        {
            return; // Stale, or not yet applied here: ignore rather than corrupt the log.
        }
        assert_eq!(
            self.log.term_at(index),
            Some(snapshot.meta.last_included_term),
            "snapshot term mismatch at {index}"
        );
        // The core knows the configuration at `index`; the driver's is ignored.
        let membership = self.membership_at(index);
        let mut snapshot = snapshot;
        snapshot.meta.membership = membership.clone();
        let released = self.log.compact(index, membership);
        self.out.released.add(released);
        self.conf_entries.retain(|(i, _, _)| *i > index);
        self.applied_bytes_since_snapshot = 0;
        self.snapshot = Some(SnapshotInfo::of(&snapshot));
        self.out.compact_upto = Some(index);
    }

    /// Whether enough has been applied since the last snapshot to take the next one: the entry
    /// threshold, and the log factor times the last snapshot's bytes (at most
    /// `snapshot_log_bytes_max`). All are stretched by
    /// 1/(2 x voters) per rank of this node among the voters (x1, x1.17, x1.33 with three), so
    /// that replicas applying the same log do not all serialize and write a snapshot at the
    /// same moment on a shared disk or while the leader waits for a quorum of them.
    pub(super) fn snapshot_due(&self) -> bool {
        let members = self.membership.members();
        let voters = members.len().max(1) as u64;
        let rank = members.iter().filter(|&&v| v < self.config.id).count() as u64;
        let stretch = |n: u64| n.saturating_add(n.saturating_mul(rank) / (2 * voters));
        let entries = self.log.applied_index() - self.log.snapshot_meta().last_included_index;
        let snapshot_bytes = self.snapshot.as_ref().map_or(0, |s| s.data_bytes);
        let bytes_due = stretch(snapshot_bytes.saturating_mul(self.config.snapshot_log_factor))
            .min(stretch(self.config.snapshot_log_bytes_max));
        entries >= stretch(self.config.snapshot_threshold_entries)
            && self.applied_bytes_since_snapshot >= bytes_due
    }

    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let term = self.term();
        let index = meta.last_included_index;
        if index <= self.log.commit_index() {
            // We already hold (and have committed) everything it covers.
            return self.send_append_success(from, self.log.commit_index());
        }
        if self.log.term_at(index) == Some(meta.last_included_term) {
            // Paper Figure 13 step 6: our log already holds the entry the snapshot ends at, so
            // everything up to it matches the leader's. Keep our suffix: entries after it may
            // already be acknowledged, and discarding them would withdraw a vote toward a
            // commit. The answer waits for our pending writes, like any acknowledgement.
            self.incoming_snapshot = None;
            self.log.commit_to(index);
            let message = Message::InstallSnapshotResponse {
                term,
                last_included_index: index,
                next_offset: offset,
                done: true,
            };
            return self.send(from, message);
        }
        if offset == 0 {
            self.incoming_snapshot = Some((meta.clone(), Vec::new()));
        }
        let next_offset = match &mut self.incoming_snapshot {
            Some((m, buf)) if *m == meta && buf.len() as u64 == offset => {
                if buf.len() + data.len() > limits::SNAPSHOT_BYTES_MAX {
                    self.incoming_snapshot = None;
                    return; // Refuse to buffer beyond the bound; the leader will retry from 0.
                }
                buf.extend_from_slice(&data);
                buf.len() as u64
            }
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if done && next_offset == offset + data.len() as u64 {
            let (meta, buf) = self
                .incoming_snapshot
                .take()
                .expect("snapshot buffer present");
            self.install_snapshot(Snapshot {
                meta,
                data: Bytes::from(buf),
            });
            let message = Message::InstallSnapshotResponse {
                term,
                last_included_index: index,
                next_offset,
                done: true,
            };
            return self.send(from, message);
        }
        let message = Message::InstallSnapshotResponse {
            term,
            last_included_index: index,
            next_offset,
            done: false,
        };
        self.out.messages.push(Envelope {
            from: self.config.id,
            to: from,
            message,
        });
    }

    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let mut meta = snapshot.meta.clone();
        if meta.membership.is_empty() {
            meta.membership = self.membership.clone();
        }
        let index = meta.last_included_index;
        let released = self.log.restore(meta);
        self.out.released.add(released);
        self.conf_entries.clear();
        self.membership_changed();
        self.maybe_end_recovery(index);
        self.applied_bytes_since_snapshot = 0;
        self.snapshot = Some(SnapshotInfo::of(&snapshot));
        self.installed_snapshot = Some(snapshot);
        self.snapshot_requested = false;
    }

    pub(super) fn start_snapshot(&mut self, peer: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            panic!("peer {peer} needs compacted entries but there is no snapshot");
        };
        let stream = SnapshotStream::new(snapshot);
        self.progress
            .get_mut(&peer)
            .expect("progress")
            .become_snapshot(stream);
        self.send_snapshot_chunks(peer);
    }

    /// Names the chunks of the snapshot stream to `peer` that its window allows (see
    /// `snapshot_stream`); the driver reads and sends them.
    pub(super) fn send_snapshot_chunks(&mut self, peer: NodeId) {
        let snapshot = self
            .snapshot
            .as_ref()
            .expect("snapshot state implies a snapshot");
        let window = StreamWindow {
            chunk_bytes: self.config.snapshot_chunk_bytes,
            chunks_max: self.config.snapshot_inflight_chunks_max,
            bytes_max: self.config.inflight_bytes_max,
        };
        let term = self.term();
        let progress = self.progress.get_mut(&peer).expect("progress");
        let ProgressState::Snapshot(stream) = &mut progress.state else {
            return;
        };
        if stream.snapshot_index != snapshot.meta.last_included_index {
            // A newer snapshot replaced the one being sent: start over with it.
            *stream = SnapshotStream::new(snapshot);
        }
        while let Some((offset, len, done)) = stream.next_chunk(window) {
            progress.sent_since_heartbeat = true;
            self.out.snapshot_chunks.push(SnapshotChunk {
                to: peer,
                term,
                last_included_index: snapshot.meta.last_included_index,
                last_included_term: snapshot.meta.last_included_term,
                membership: snapshot.meta.membership.clone(),
                offset,
                len,
                done,
            });
        }
    }

    pub(super) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        last_included_index: Index,
        next_offset: u64,
        done: bool,
    ) {
        let Some(progress) = self.heard_from(from) else {
            return;
        };
        let ProgressState::Snapshot(stream) = &mut progress.state else {
            return;
        };
        if stream.snapshot_index != last_included_index {
            return;
        }
        if done {
            progress.become_probe();
            progress.on_success(last_included_index);
            self.maybe_commit();
        } else if stream.on_ack(next_offset) {
            self.send_snapshot_chunks(from);
        }
    }

    /// Restarts snapshot streams that heard nothing for half an election timeout from their
    /// acknowledged offset: what was in flight is lost. Half an election timeout is several
    /// round trips (10 RTTs make an election timeout), so a stream whose window merely waits
    /// on a slow link is not sent twice.
    pub(super) fn tick_snapshot_streams(&mut self) {
        let timeout_ticks = self.config.election_timeout_ticks / 2;
        let mut restarted = Vec::new();
        for (&peer, progress) in self.progress.iter_mut() {
            if let ProgressState::Snapshot(stream) = &mut progress.state {
                if stream.tick(timeout_ticks) {
                    restarted.push(peer);
                }
            }
        }
        for peer in restarted {
            self.send_snapshot_chunks(peer);
        }
    }
}
