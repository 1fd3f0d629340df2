//! A tiny synchronous driver for scenario tests of the Raft core: every write is durable at
//! once, messages are delivered in FIFO order unless a filter drops them. Deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ringraft::core::{
    Config, Entry, EntryKind, Envelope, HardState, Index, Message, NodeId, RawNode, ReadState,
    Restored, Role, Snapshot, SnapshotMeta,
};

/// What a node has made durable.
#[derive(Default, Clone)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RawNode>,
    pub durable: BTreeMap<NodeId, Durable>,
    /// Commands applied by each node, by index.
    pub applied: BTreeMap<NodeId, BTreeMap<Index, Bytes>>,
    pub reads: BTreeMap<NodeId, Vec<ReadState>>,
    pub reads_failed: BTreeMap<NodeId, Vec<u64>>,
    pub down: BTreeSet<NodeId>,
    /// Directed links that drop everything: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub queue: VecDeque<Envelope>,
    /// Every message delivered, by kind name, for assertions.
    pub delivered: BTreeMap<&'static str, usize>,
    pub config: Box<dyn Fn(NodeId, Vec<NodeId>) -> Config>,
    /// The bootstrap voters; nodes added later start with an empty configuration.
    pub bootstrap: Vec<NodeId>,
}

impl Cluster {
    pub fn new(n: u64, config: impl Fn(NodeId, Vec<NodeId>) -> Config + 'static) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            durable: BTreeMap::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_failed: BTreeMap::new(),
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            delivered: BTreeMap::new(),
            config: Box::new(config),
            bootstrap: ids.clone(),
        };
        for &id in &ids {
            c.durable.insert(id, Durable::default());
        }
        for &id in &ids {
            c.start(id);
        }
        c
    }

    pub fn default_config(id: NodeId, voters: Vec<NodeId>) -> Config {
        let mut c = Config::new(id, voters);
        c.seed = 7;
        // Short timeouts keep scenarios to a few ticks; the node's defaults are for wall time.
        c.election_timeout_ticks = 10;
        c.heartbeat_interval_ticks = 1;
        c.snapshot_threshold_entries = 0;
        c.snapshot_log_factor = 0;
        c
    }

    #[allow(dead_code)]
    fn ids(&self) -> Vec<NodeId> {
        self.durable.keys().copied().collect()
    }

    pub fn start(&mut self, id: NodeId) {
        let d = self.durable[&id].clone();
        let voters = if self.bootstrap.contains(&id) {
            self.bootstrap.clone()
        } else {
            Vec::new()
        };
        let config = (self.config)(id, voters);
        let restored = Restored {
            hard_state: d.hard_state,
            snapshot: d.snapshot.clone(),
            entries: d.entries.clone(),
        };
        let node = RawNode::new(config, restored).expect("valid config");
        let mut applied = BTreeMap::new();
        if let Some(s) = &d.snapshot {
            applied = decode_state(&s.data);
        }
        self.applied.insert(id, applied);
        self.nodes.insert(id, node);
        self.down.remove(&id);
    }

    /// Starts a new, empty node that waits to be added (no configuration, never campaigns).
    #[allow(dead_code)]
    pub fn join(&mut self, id: NodeId) {
        assert!(!self.durable.contains_key(&id), "node {id} exists");
        self.durable.insert(id, Durable::default());
        self.start(id);
    }

    pub fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.down.insert(id);
    }

    /// The disk of a crashed node loses every durable entry from `from` on (a damaged tail, a
    /// repaired mid-log corruption, or writes it acknowledged and never kept).
    #[allow(dead_code)]
    pub fn lose_entries_from(&mut self, id: NodeId, from: Index) {
        assert!(self.down.contains(&id), "crash node {id} first");
        self.durable
            .get_mut(&id)
            .unwrap()
            .entries
            .retain(|e| e.index < from);
    }

    pub fn node(&self, id: NodeId) -> &RawNode {
        &self.nodes[&id]
    }
    pub fn node_mut(&mut self, id: NodeId) -> &mut RawNode {
        self.nodes.get_mut(&id).expect("node is up")
    }

    #[allow(dead_code)]
    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role() == Role::Leader)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Handles every node's output: persist at once, queue messages, apply, snapshot.
    /// Returns whether any node had output.
    pub fn flush(&mut self) -> bool {
        let mut any = false;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let out = self.nodes.get_mut(&id).unwrap().take_output();
            any |= !out.is_empty();
            let d = self.durable.get_mut(&id).unwrap();
            if let Some(s) = &out.snapshot {
                d.snapshot = Some(s.clone());
                d.entries.clear();
                self.applied.insert(id, decode_state(&s.data));
            }
            if let Some(first) = out.entries.first() {
                d.entries.retain(|e| e.index < first.index);
                d.entries.extend(out.entries.iter().cloned());
            }
            if let Some(hs) = out.hard_state {
                d.hard_state = hs;
            }
            let written = out.last_written();
            self.queue.extend(out.messages);
            // The durable snapshot is the core's latest: this harness persists at once.
            let chunks = out.snapshot_chunks.into_iter();
            let served = d.snapshot.as_ref();
            self.queue
                .extend(chunks.filter_map(|c| served.and_then(|s| c.read_from(id, s))));
            self.queue.extend(out.messages_after_persist);
            let node = self.nodes.get_mut(&id).unwrap();
            if let Some((index, term)) = written {
                node.persisted(index, term);
            }
            let applied = self.applied.get_mut(&id).unwrap();
            for e in &out.committed_entries {
                if e.kind == EntryKind::Normal {
                    applied.insert(e.index, e.data.clone());
                }
            }
            self.reads.entry(id).or_default().extend(out.read_states);
            self.reads_failed
                .entry(id)
                .or_default()
                .extend(out.reads_failed);
            if let Some(upto) = out.compact_upto {
                d.entries.retain(|e| e.index > upto);
            }
            if out.snapshot_wanted {
                let index = node.log().applied_index();
                let term = node.log().term_at(index).unwrap();
                let data = encode_state(&self.applied[&id]);
                let snapshot = Snapshot {
                    meta: SnapshotMeta {
                        last_included_index: index,
                        last_included_term: term,
                        membership: node.membership_at(index),
                    },
                    data,
                };
                self.durable.get_mut(&id).unwrap().snapshot = Some(snapshot.clone());
                node.snapshot_taken(snapshot);
            }
        }
        any
    }

    /// Delivers queued messages (and the output they cause) until nothing is left, dropping
    /// those `keep` rejects, those over cut links and those to crashed nodes.
    pub fn settle_with(&mut self, keep: &mut dyn FnMut(&mut Envelope) -> bool) {
        for _ in 0..100_000 {
            let any = self.flush();
            let Some(mut env) = self.queue.pop_front() else {
                if any {
                    continue;
                }
                return;
            };
            if self.down.contains(&env.to)
                || self.cut.contains(&(env.from, env.to))
                || !keep(&mut env)
            {
                continue;
            }
            *self.delivered.entry(env.message.kind_name()).or_default() += 1;
            self.nodes.get_mut(&env.to).unwrap().step(env);
        }
        panic!("cluster did not settle");
    }

    pub fn settle(&mut self) {
        self.settle_with(&mut |_| true);
    }

    /// Ticks every live node once, then settles.
    pub fn tick(&mut self) {
        for node in self.nodes.values_mut() {
            node.tick();
        }
        self.settle();
    }

    /// Ticks until `cond` holds; panics after `max_ticks`.
    pub fn tick_until(&mut self, max_ticks: usize, mut cond: impl FnMut(&Cluster) -> bool) {
        for _ in 0..max_ticks {
            if cond(self) {
                return;
            }
            self.tick();
        }
        assert!(cond(self), "condition not reached within {max_ticks} ticks");
    }

    pub fn elect(&mut self) -> NodeId {
        self.tick_until(200, |c| c.leaders().len() == 1);
        let leader = self.leaders()[0];
        self.settle();
        leader
    }

    pub fn propose(&mut self, id: NodeId, data: &str) -> Index {
        let index = self
            .node_mut(id)
            .propose(Bytes::copy_from_slice(data.as_bytes()))
            .expect("leader accepts");
        index
    }

    pub fn applied_values(&self, id: NodeId) -> Vec<Bytes> {
        self.applied[&id].values().cloned().collect()
    }

    #[allow(dead_code)]
    pub fn count(&self, kind: &str) -> usize {
        self.delivered.get(kind).copied().unwrap_or(0)
    }
}

/// The "state machine" of these tests is the map of applied commands; snapshots serialize it.
pub fn encode_state(applied: &BTreeMap<Index, Bytes>) -> Bytes {
    let mut out = Vec::new();
    for (index, data) in applied {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    Bytes::from(out)
}

pub fn decode_state(mut b: &[u8]) -> BTreeMap<Index, Bytes> {
    let mut map = BTreeMap::new();
    while !b.is_empty() {
        let index = u64::from_le_bytes(b[..8].try_into().unwrap());
        let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        map.insert(index, Bytes::copy_from_slice(&b[12..12 + len]));
        b = &b[12 + len..];
    }
    map
}

#[allow(dead_code)]
pub fn is_append(env: &Envelope) -> bool {
    matches!(env.message, Message::AppendEntries { .. })
}
