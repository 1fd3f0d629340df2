//! A first look at ringraft's sans-I/O Raft core: three nodes in one process, with a
//! `VecDeque` for the network and a `Vec` for each node's disk.
//!
//! The core never does I/O. The driver (here, `main`; in a real node, `src/runtime/node.rs`)
//! calls `tick`, `propose` and `step`, then takes an `Output` and does what it says, in the
//! order its documentation gives: persist, send, report durability back with `persisted`,
//! apply. Because the network and the disk here are plain collections, every run is the same.
//!
//! Run it with `cargo run --example core_in_memory`.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use ringraft::core::{Config, Entry, Envelope, HardState, NodeId, Output, RawNode, Restored, Role};

/// What one node has made durable: the only state that survives a crash.
#[derive(Default)]
struct MemoryDisk {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl MemoryDisk {
    /// Appends `entries`, first dropping any stored suffix they replace (a conflict).
    fn append(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend_from_slice(entries);
        }
    }
}

/// One node: the core, its disk and the state machine (here, the list of applied commands).
struct Node {
    raft: RawNode,
    disk: MemoryDisk,
    applied: Vec<String>,
}

const VOTERS: [NodeId; 3] = [1, 2, 3];
const COMMANDS: usize = 5;
/// Rounds of ticking and delivering before the example gives up (it needs far fewer).
const ROUNDS_MAX: usize = 10_000;

fn main() {
    let mut nodes: BTreeMap<NodeId, Node> = VOTERS
        .iter()
        .map(|&id| {
            let mut config = Config::new(id, VOTERS.to_vec());
            config.seed = id; // The core's only randomness (election timeouts) comes from here.
            let raft = RawNode::new(config, Restored::default()).expect("valid config");
            let node = Node {
                raft,
                disk: MemoryDisk::default(),
                applied: Vec::new(),
            };
            (id, node)
        })
        .collect();
    let mut network: VecDeque<Envelope> = VecDeque::new();
    let mut proposed = 0;

    for round in 0..ROUNDS_MAX {
        // Time passes only when the driver says so.
        for node in nodes.values_mut() {
            node.raft.tick();
        }
        // Deliver everything in flight (a real transport would delay, reorder or drop).
        while let Some(envelope) = network.pop_front() {
            if let Some(node) = nodes.get_mut(&envelope.to) {
                node.raft.step(envelope);
            }
            drive(&mut nodes, &mut network);
        }
        // Once there is a leader, hand it the commands, one per round.
        let leader = nodes.values_mut().find(|n| n.raft.role() == Role::Leader);
        if let (Some(leader), true) = (leader, proposed < COMMANDS) {
            let command = format!("set x = {proposed}");
            let index = leader
                .raft
                .propose(Bytes::from(command.clone()))
                .expect("leader");
            println!(
                "round {round}: node {} proposed {command:?} at index {index}",
                leader.raft.id()
            );
            proposed += 1;
        }
        drive(&mut nodes, &mut network);
        if nodes.values().all(|n| n.applied.len() == COMMANDS) {
            for (id, node) in &nodes {
                println!("node {id} applied {:?}", node.applied);
            }
            return;
        }
    }
    panic!("the commands were not applied on every node within {ROUNDS_MAX} rounds");
}

/// Does what every node's output asks, until no node has anything left to do.
fn drive(nodes: &mut BTreeMap<NodeId, Node>, network: &mut VecDeque<Envelope>) {
    loop {
        let mut busy = false;
        for node in nodes.values_mut() {
            let output = node.raft.take_output();
            busy |= !output.is_empty();
            handle(node, output, network);
        }
        if !busy {
            return;
        }
    }
}

/// The driver contract of `ringraft::core::Output`, in the order it requires.
fn handle(node: &mut Node, mut output: Output, network: &mut VecDeque<Envelope>) {
    if let Some(soft) = &output.soft_state {
        println!(
            "node {} is now {:?} (leader {:?})",
            node.raft.id(),
            soft.role,
            soft.leader
        );
    }
    // 1. Persist: entries, then term and vote. (Snapshots are not taken in this short run.)
    let last_written = output.last_written();
    node.disk.append(&output.entries);
    if let Some(hard_state) = output.hard_state {
        node.disk.hard_state = hard_state;
    }
    // 2. These may leave before the write is durable: the leader's AppendEntries, for one.
    network.extend(output.messages.drain(..));
    // 3. A `Vec` is durable at once, so votes and acknowledgements may leave now, and the core
    //    learns that its own copy counts toward commitment.
    network.extend(output.messages_after_persist.drain(..));
    if let Some((index, term)) = last_written {
        node.raft.persisted(index, term);
    }
    // 4. Apply what is committed, in order. Empty entries are the leader's no-op of its term.
    for entry in output.committed_entries {
        if !entry.data.is_empty() {
            node.applied
                .push(String::from_utf8_lossy(&entry.data).into_owned());
        }
    }
    // 5. `snapshot_wanted` would ask for a snapshot here; this run stays below the threshold.
}
