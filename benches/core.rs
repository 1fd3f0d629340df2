//! What the Raft protocol itself costs: entries committed per second by a 3-node cluster driven
//! in memory on one thread (no I/O, no serialization: "persist" is instant, messages are moved
//! between cores by the driver). Payload 1 KiB, shared (`Bytes`), so copying is not measured.
//! An iteration proposes one batch at the leader and drives the cluster until the leader has
//! handed the whole batch out for applying.
//!
//! Two groups: `core_commit_3_nodes_1KiB` runs with the node's own defaults (`ringraft node`
//! with no flags: 1024 entries and 1 MiB per AppendEntries, 64 messages in flight, snapshots by
//! the node's thresholds); `core_commit_3_nodes_1KiB_large_batches` raises the batch bounds to
//! 4096 entries and 4 MiB. Snapshots cost nothing here in either (their data is empty), where a
//! node serializes and writes its state machine.

use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringraft::core::{Config, Envelope, RawNode, Restored, Role, Snapshot, SnapshotMeta};

struct Cluster {
    nodes: Vec<RawNode>,
    queue: VecDeque<Envelope>,
    applied_at_leader: u64,
}

/// The core configuration a `ringraft node` started without flags runs with (the core's
/// defaults are the node's), for node `id` of three.
fn node_defaults(id: u64) -> Config {
    let mut config = Config::new(id, vec![1, 2, 3]);
    config.seed = id;
    config
}

/// The node's defaults with four times the batch bounds.
fn large_batches(id: u64) -> Config {
    let mut config = node_defaults(id);
    config.batch_entries_max = 4096;
    config.batch_bytes_max = 4 << 20;
    config
}

impl Cluster {
    fn new(configure: fn(u64) -> Config) -> Cluster {
        let nodes = (1..=3)
            .map(|id| RawNode::new(configure(id), Restored::default()).expect("valid config"))
            .collect();
        let mut c = Cluster {
            nodes,
            queue: VecDeque::new(),
            applied_at_leader: 0,
        };
        while c.nodes[0].role() != Role::Leader {
            c.nodes[0].tick();
            c.drive();
        }
        c
    }

    /// Delivers messages and outputs until the cluster is quiet.
    fn drive(&mut self) {
        loop {
            let mut any = false;
            for node in self.nodes.iter_mut() {
                let out = node.take_output();
                if out.is_empty() {
                    continue;
                }
                any = true;
                let written = out.last_written();
                self.queue.extend(out.messages);
                self.queue.extend(out.messages_after_persist);
                if let Some((index, term)) = written {
                    node.persisted(index, term);
                }
                if node.role() == Role::Leader {
                    self.applied_at_leader += out.committed_entries.len() as u64;
                }
                if out.snapshot_wanted {
                    let index = node.log().applied_index();
                    let term = node.log().term_at(index).expect("applied entry is held");
                    let meta = SnapshotMeta {
                        last_included_index: index,
                        last_included_term: term,
                        membership: node.membership_at(index),
                    };
                    node.snapshot_taken(Snapshot {
                        meta,
                        data: Bytes::new(),
                    });
                }
            }
            while let Some(env) = self.queue.pop_front() {
                any = true;
                self.nodes[(env.to - 1) as usize].step(env);
            }
            if !any {
                return;
            }
        }
    }
}

fn committed_entries_per_second(c: &mut Criterion) {
    commit_group(c, "core_commit_3_nodes_1KiB", node_defaults);
    commit_group(c, "core_commit_3_nodes_1KiB_large_batches", large_batches);
}

fn commit_group(c: &mut Criterion, name: &str, configure: fn(u64) -> Config) {
    let payload = Bytes::from(vec![7u8; 1024]);
    let mut group = c.benchmark_group(name);
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("batch_{batch}")),
            &batch,
            |b, &batch| {
                let mut cluster = Cluster::new(configure);
                b.iter(|| {
                    let target = cluster.applied_at_leader + batch;
                    for _ in 0..batch {
                        cluster.nodes[0]
                            .propose(payload.clone())
                            .expect("leader accepts");
                    }
                    cluster.drive();
                    assert!(cluster.applied_at_leader >= target);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, committed_entries_per_second);
criterion_main!(benches);
