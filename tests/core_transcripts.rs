//! Data-driven scenario tests of the Raft core: each `tests/testdata/*.txt` is a transcript of
//! commands and the output they printed. The runner replays the commands against real cores
//! (a hand-driven network and disk, nothing random but each core's seeded PRNG), prints what
//! happened, and fails on any difference from the file. `RINGRAFT_REWRITE=1` rewrites the
//! files with the output printed instead (then read the diff before committing it).
//!
//! # Format
//!
//! A line starting with `> ` is a command; the lines after it, up to the next command, comment
//! (`#`) or blank line, are its expected output. Output lines are never blank and never start
//! with `#` or `>`. Commands (ids are node ids; `key=value` options; lists are comma-separated):
//!
//! - `add-nodes N [voters=1,2,3] [pre-vote=B] [check-quorum=B] [election=T] [heartbeat=T]
//!   [batch=ENTRIES] [bug=commit-previous-term|no-abstain|joint-single-majority]`: N new nodes, numbered on
//!   from the last; the voters (default: the new nodes) are the bootstrap configuration,
//!   any other new node waits to be added. Pre-vote and check-quorum default to off.
//! - `campaign ID`: ticks the node until it starts an election (its timer is randomized).
//! - `tick ID [count=N]`: ticks the node N times (default 1).
//! - `process [IDS]`: takes each node's output: prints it, sends `messages` into the network,
//!   queues the write (with `messages_after_persist`) on the node's disk, applies committed
//!   entries, hands a wanted snapshot over at once.
//! - `persist [IDS]`: completes every queued write: durable, after-persist messages sent,
//!   `persisted` reported.
//! - `deliver [from=IDS] [to=IDS] [type=NAMES]`, `drop [...]`: delivers (or loses) the
//!   messages in flight that match, in the order they were sent.
//! - `stabilize [IDS]`: process, persist and deliver among these nodes (default: all) until
//!   nothing happens; messages to or from other nodes stay in flight.
//! - `propose ID TEXT`, `conf-change ID add-learner=X|promote=X|remove=X`,
//!   `transfer-leader ID to=X`.
//! - `crash ID` (queued writes are lost), `restart ID`, `lose-tail ID from=INDEX` (a crashed
//!   node's disk loses every entry from INDEX on), `compact ID` (snapshot at the applied index).
//! - `status [IDS]`, `log ID`, `applied ID`.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::cluster::{decode_state, encode_state};
use ringraft::core::{
    ConfChange, Config, Entry, EntryKind, Envelope, HardState, Index, Message, NodeId, Output,
    RawNode, Restored, Snapshot, SnapshotMeta, Term,
};

/// Most rounds `stabilize` runs before it calls the cluster livelocked.
const STABILIZE_ROUNDS_MAX: usize = 1_000;
/// Most ticks `campaign` gives a node to start an election.
const CAMPAIGN_TICKS_MAX: usize = 1_000;

/// A write queued on a node's disk.
struct Write {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    after_persist: Vec<Envelope>,
    last_written: Option<(Index, Term)>,
}

/// What a node made durable.
#[derive(Clone, Default)]
struct Durable {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

struct Node {
    config: Config,
    raft: Option<RawNode>,
    durable: Durable,
    writes: VecDeque<Write>,
    /// The state machine: the commands applied, by index.
    applied: BTreeMap<Index, Bytes>,
}

#[derive(Default)]
struct World {
    nodes: BTreeMap<NodeId, Node>,
    /// Messages in flight, in the order they were sent.
    network: VecDeque<Envelope>,
}

/// A command's words: positional arguments and `key=value` options.
struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Args {
    fn parse(words: &[&str]) -> Args {
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((k, v)) => {
                    options.insert(k.to_string(), v.to_string());
                }
                None => positional.push(word.to_string()),
            }
        }
        Args {
            positional,
            options,
        }
    }

    fn id(&self, at: usize) -> Result<NodeId, String> {
        let word = self
            .positional
            .get(at)
            .ok_or_else(|| format!("missing node id (argument {})", at + 1))?;
        word.parse()
            .map_err(|_| format!("`{word}` is not a node id"))
    }

    fn ids(&self) -> Result<Vec<NodeId>, String> {
        (0..self.positional.len()).map(|i| self.id(i)).collect()
    }

    fn option_ids(&self, key: &str) -> Result<Option<Vec<NodeId>>, String> {
        self.options
            .get(key)
            .map(|list| {
                list.split(',')
                    .map(|w| {
                        w.parse()
                            .map_err(|_| format!("{key}: `{w}` is not a node id"))
                    })
                    .collect()
            })
            .transpose()
    }

    fn option_u64(&self, key: &str) -> Result<Option<u64>, String> {
        self.options
            .get(key)
            .map(|w| {
                w.parse()
                    .map_err(|_| format!("{key}: `{w}` is not a number"))
            })
            .transpose()
    }

    fn option_bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.options.get(key).map(String::as_str) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("{key}: `{other}` is not true or false")),
        }
    }
}

fn entry_text(e: &Entry) -> String {
    match e.kind {
        EntryKind::Noop => format!("{}/t{} noop", e.index, e.term),
        EntryKind::Config => match ringraft::core::Membership::decode(&e.data) {
            Ok(m) => format!("{}/t{} config {}", e.index, e.term, membership_text(&m)),
            Err(_) => format!("{}/t{} config (undecodable)", e.index, e.term),
        },
        EntryKind::Normal => format!(
            "{}/t{} {:?}",
            e.index,
            e.term,
            String::from_utf8_lossy(&e.data)
        ),
    }
}

fn ids_text(ids: &BTreeSet<NodeId>) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    ids.join(",")
}

fn membership_text(m: &ringraft::core::Membership) -> String {
    let mut text = format!("voters={}", ids_text(&m.voters));
    if !m.outgoing.is_empty() {
        let _ = write!(text, " outgoing={}", ids_text(&m.outgoing));
    }
    if !m.learners.is_empty() {
        let _ = write!(text, " learners={}", ids_text(&m.learners));
    }
    text
}

fn entries_text(entries: &[Entry]) -> String {
    let shown: Vec<String> = entries.iter().map(entry_text).collect();
    format!("[{}]", shown.join(", "))
}

fn message_text(envelope: &Envelope) -> String {
    use Message as M;
    let body = match &envelope.message {
        M::PreVote {
            term,
            last_log_index,
            last_log_term,
        } => format!("PreVote t{term} last={last_log_index}/t{last_log_term}"),
        M::RequestVote {
            term,
            last_log_index,
            last_log_term,
            leader_transfer,
        } => format!(
            "RequestVote t{term} last={last_log_index}/t{last_log_term}{}",
            if *leader_transfer { " transfer" } else { "" }
        ),
        M::PreVoteResponse { term, granted } | M::RequestVoteResponse { term, granted } => {
            format!(
                "{} t{term} {}",
                envelope.message.kind_name(),
                if *granted { "granted" } else { "rejected" }
            )
        }
        M::AppendEntries {
            term,
            prev_log_index,
            prev_log_term,
            leader_commit,
            entries,
        } => format!(
            "AppendEntries t{term} prev={prev_log_index}/t{prev_log_term} commit={leader_commit} {}",
            entries_text(entries)
        ),
        M::AppendEntriesResponse {
            term,
            success: true,
            match_index,
            ..
        } => format!("AppendEntriesResponse t{term} match={match_index}"),
        M::AppendEntriesResponse {
            term,
            match_index,
            conflict_index,
            conflict_term,
            ..
        } => format!(
            "AppendEntriesResponse t{term} reject at={match_index} conflict={conflict_index}/{}",
            conflict_term.map_or("-".to_string(), |t| format!("t{t}"))
        ),
        M::Heartbeat {
            term,
            leader_commit,
            read_round,
        } => format!("Heartbeat t{term} commit={leader_commit} round={read_round}"),
        M::HeartbeatResponse { term, read_round } => {
            format!("HeartbeatResponse t{term} round={read_round}")
        }
        M::InstallSnapshot {
            term,
            last_included_index,
            last_included_term,
            offset,
            data,
            done,
            ..
        } => format!(
            "InstallSnapshot t{term} at={last_included_index}/t{last_included_term} offset={offset} bytes={} done={done}",
            data.len()
        ),
        M::InstallSnapshotResponse {
            term,
            last_included_index,
            next_offset,
            done,
        } => format!(
            "InstallSnapshotResponse t{term} at={last_included_index} next={next_offset} done={done}"
        ),
        M::TimeoutNow {
            term,
            vote,
            last_index,
        } => format!(
            "TimeoutNow t{term} last={last_index}{}",
            if *vote { " vote" } else { "" }
        ),
        M::ReadIndexRequest { term, request_id } => {
            format!("ReadIndexRequest t{term} id={request_id}")
        }
        M::ReadIndexResponse {
            term,
            request_id,
            read_index,
        } => format!("ReadIndexResponse t{term} id={request_id} index={read_index:?}"),
    };
    format!("{}->{} {body}", envelope.from, envelope.to)
}

impl World {
    fn node(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes.get(&id).ok_or_else(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn raft(&mut self, id: NodeId) -> Result<&mut RawNode, String> {
        self.node_mut(id)?
            .raft
            .as_mut()
            .ok_or_else(|| format!("node {id} is down"))
    }

    fn ids_or_all(&self, args: &Args) -> Result<Vec<NodeId>, String> {
        let ids = args.ids()?;
        Ok(if ids.is_empty() {
            self.nodes.keys().copied().collect()
        } else {
            ids
        })
    }

    fn run(&mut self, line: &str, out: &mut String) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (&command, rest) = words.split_first().ok_or("empty command")?;
        let args = Args::parse(rest);
        match command {
            "add-nodes" => self.add_nodes(&args, out),
            "campaign" => self.campaign(args.id(0)?),
            "tick" => {
                let id = args.id(0)?;
                for _ in 0..args.option_u64("count")?.unwrap_or(1) {
                    self.raft(id)?.tick();
                }
                Ok(())
            }
            "process" => {
                for id in self.ids_or_all(&args)? {
                    self.process(id, out)?;
                }
                Ok(())
            }
            "persist" => {
                for id in self.ids_or_all(&args)? {
                    self.persist(id, out)?;
                }
                Ok(())
            }
            "deliver" => self.deliver(&args, false, out),
            "drop" => self.deliver(&args, true, out),
            "stabilize" => {
                let ids = self.ids_or_all(&args)?;
                self.stabilize(&ids, out)
            }
            "propose" => {
                let id = args.id(0)?;
                let text = args.positional.get(1).ok_or("propose ID TEXT")?.clone();
                match self.raft(id)?.propose(Bytes::from(text.into_bytes())) {
                    Ok(index) => writeln!(out, "n{id}: proposed at {index}"),
                    Err(error) => writeln!(out, "n{id}: refused: {error}"),
                }
                .map_err(|e| e.to_string())
            }
            "conf-change" => self.conf_change(&args, out),
            "transfer-leader" => {
                let id = args.id(0)?;
                let to = args.option_u64("to")?.ok_or("transfer-leader ID to=X")?;
                self.raft(id)?.transfer_leader(to);
                Ok(())
            }
            "crash" => {
                let id = args.id(0)?;
                let node = self.node_mut(id)?;
                node.raft = None;
                let lost = node.writes.len();
                node.writes.clear();
                writeln!(out, "n{id}: crashed, {lost} queued writes lost")
                    .map_err(|e| e.to_string())
            }
            "restart" => self.restart(args.id(0)?, out),
            "lose-tail" => {
                let id = args.id(0)?;
                let from = args.option_u64("from")?.ok_or("lose-tail ID from=INDEX")?;
                let node = self.node_mut(id)?;
                if node.raft.is_some() {
                    return Err(format!("crash node {id} before its disk loses entries"));
                }
                let before = node.durable.entries.len();
                node.durable.entries.retain(|e| e.index < from);
                let lost = before - node.durable.entries.len();
                let acked = node.durable.hard_state.acked_index;
                writeln!(
                    out,
                    "n{id}: disk lost {lost} entries from {from} (acked {acked})"
                )
                .map_err(|e| e.to_string())
            }
            "compact" => self.compact(args.id(0)?, out),
            "status" => {
                for id in self.ids_or_all(&args)? {
                    self.status(id, out)?;
                }
                Ok(())
            }
            "log" => {
                let id = args.id(0)?;
                let raft = self.raft(id)?;
                let log = raft.log();
                let entries: Vec<Entry> = (log.first_index()..=log.last_index())
                    .filter_map(|i| log.entry(i).cloned())
                    .collect();
                let snapshot = log.snapshot_meta().last_included_index;
                writeln!(out, "n{id}: snapshot@{snapshot} {}", entries_text(&entries))
                    .map_err(|e| e.to_string())
            }
            "applied" => {
                let id = args.id(0)?;
                let applied: Vec<String> = self
                    .node(id)?
                    .applied
                    .iter()
                    .map(|(i, d)| format!("{i}:{}", String::from_utf8_lossy(d)))
                    .collect();
                writeln!(out, "n{id}: applied [{}]", applied.join(", ")).map_err(|e| e.to_string())
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn add_nodes(&mut self, args: &Args, out: &mut String) -> Result<(), String> {
        let count = args.id(0)?;
        let first = self.nodes.keys().last().copied().unwrap_or(0) + 1;
        let new: Vec<NodeId> = (first..first + count).collect();
        let voters = args.option_ids("voters")?.unwrap_or_else(|| new.clone());
        for &id in &new {
            let mut config = Config::new(
                id,
                if voters.contains(&id) {
                    voters.clone()
                } else {
                    Vec::new()
                },
            );
            config.seed = 7;
            config.election_timeout_ticks = args.option_u64("election")?.unwrap_or(10) as u32;
            config.heartbeat_interval_ticks = args.option_u64("heartbeat")?.unwrap_or(1) as u32;
            config.pre_vote = args.option_bool("pre-vote", false)?;
            config.check_quorum = args.option_bool("check-quorum", false)?;
            config.batch_entries_max = args.option_u64("batch")?.unwrap_or(8) as usize;
            config.snapshot_threshold_entries = 0;
            config.snapshot_log_factor = 0;
            config.snapshot_chunk_bytes = 64;
            match args.options.get("bug").map(String::as_str) {
                None => {}
                Some("commit-previous-term") => config.bug_commit_previous_term = true,
                Some("no-abstain") => config.bug_no_abstain = true,
                Some("joint-single-majority") => config.bug_joint_single_majority = true,
                Some(other) => return Err(format!("unknown bug `{other}`")),
            }
            self.nodes.insert(
                id,
                Node {
                    config,
                    raft: None,
                    durable: Durable::default(),
                    writes: VecDeque::new(),
                    applied: BTreeMap::new(),
                },
            );
            self.restart(id, out)?;
        }
        Ok(())
    }

    fn restart(&mut self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.node_mut(id)?;
        if node.raft.is_some() {
            return Err(format!("node {id} is up"));
        }
        let restored = Restored {
            hard_state: node.durable.hard_state,
            snapshot: node.durable.snapshot.clone(),
            entries: node.durable.entries.clone(),
        };
        let raft = RawNode::new(node.config.clone(), restored).map_err(|e| e.to_string())?;
        node.applied = node
            .durable
            .snapshot
            .as_ref()
            .map(|s| decode_state(&s.data))
            .unwrap_or_default();
        let hs = node.durable.hard_state;
        let _ = write!(
            out,
            "n{id}: up term={} vote={:?} last={} {}",
            hs.current_term,
            hs.voted_for,
            raft.log().last_index(),
            membership_text(raft.membership())
        );
        if let Some(to) = raft.recovering_to() {
            let _ = write!(out, " recovering-to={to}");
        }
        out.push('\n');
        node.raft = Some(raft);
        Ok(())
    }

    fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        use ringraft::core::Role;
        let raft = self.raft(id)?;
        if raft.role() == Role::Leader {
            return Err(format!("node {id} leads already"));
        }
        let term = raft.hard_state().current_term;
        for _ in 0..CAMPAIGN_TICKS_MAX {
            raft.tick();
            if matches!(raft.role(), Role::PreCandidate | Role::Candidate)
                || raft.hard_state().current_term > term
            {
                return Ok(());
            }
        }
        Err(format!(
            "node {id} did not campaign within {CAMPAIGN_TICKS_MAX} ticks"
        ))
    }

    /// Takes and handles one output of `id`; returns whether it had any.
    fn process(&mut self, id: NodeId, out: &mut String) -> Result<bool, String> {
        let Some(raft) = self.node_mut(id)?.raft.as_mut() else {
            return Ok(false);
        };
        let output = raft.take_output();
        if output.is_empty() {
            return Ok(false);
        }
        let _ = writeln!(out, "n{id}: output");
        let write_needed = output.needs_persist() || !output.messages_after_persist.is_empty();
        let last_written = output.last_written();
        let Output {
            soft_state,
            hard_state,
            snapshot,
            entries,
            mut messages,
            snapshot_chunks,
            messages_after_persist,
            committed_entries,
            read_states,
            reads_failed,
            snapshot_wanted,
            compact_upto,
            // What the log let go of is freed here; the transcripts show `compact_upto`.
            released: _,
        } = output;
        // Chunks are read from the durable snapshot (the core's latest once its write is
        // done); one of a snapshot not yet durable is not sent, and the core resends it.
        let durable_snapshot = self.node_mut(id)?.durable.snapshot.clone();
        messages.extend(
            snapshot_chunks
                .into_iter()
                .filter_map(|c| durable_snapshot.as_ref().and_then(|s| c.read_from(id, s))),
        );
        if let Some(soft) = soft_state {
            let _ = writeln!(
                out,
                "  role: {:?} term={} leader={:?}",
                soft.role, soft.term, soft.leader
            );
        }
        if let Some(hs) = &hard_state {
            let _ = writeln!(
                out,
                "  hard state: term={} vote={:?} acked={}",
                hs.current_term, hs.voted_for, hs.acked_index
            );
        }
        if let Some(s) = &snapshot {
            let _ = writeln!(
                out,
                "  snapshot: at={}/t{} {}",
                s.meta.last_included_index,
                s.meta.last_included_term,
                membership_text(&s.meta.membership)
            );
        }
        if !entries.is_empty() {
            let _ = writeln!(out, "  entries: {}", entries_text(&entries));
        }
        if !committed_entries.is_empty() {
            let _ = writeln!(out, "  committed: {}", entries_text(&committed_entries));
        }
        for m in &messages {
            let _ = writeln!(out, "  send: {}", message_text(m));
        }
        for m in &messages_after_persist {
            let _ = writeln!(out, "  send after persist: {}", message_text(m));
        }
        for r in &read_states {
            let _ = writeln!(out, "  read {} at {}", r.request_id, r.read_index);
        }
        for r in &reads_failed {
            let _ = writeln!(out, "  read {r} failed");
        }
        if let Some(upto) = compact_upto {
            let _ = writeln!(out, "  compact upto {upto}");
        }
        self.network.extend(messages);
        let node = self.node_mut(id)?;
        if let Some(s) = &snapshot {
            node.applied = decode_state(&s.data);
        }
        for e in &committed_entries {
            if e.kind == EntryKind::Normal {
                node.applied.insert(e.index, e.data.clone());
            }
        }
        if let Some(upto) = compact_upto {
            node.durable.entries.retain(|e| e.index > upto);
        }
        if write_needed {
            node.writes.push_back(Write {
                snapshot,
                entries,
                hard_state,
                after_persist: messages_after_persist,
                last_written,
            });
        }
        if snapshot_wanted {
            self.compact(id, out)?;
        }
        Ok(true)
    }

    /// Completes every queued write of `id`; returns whether there was any.
    fn persist(&mut self, id: NodeId, out: &mut String) -> Result<bool, String> {
        let node = self.node_mut(id)?;
        if node.raft.is_none() || node.writes.is_empty() {
            return Ok(false);
        }
        let mut sent = Vec::new();
        let mut last = None;
        while let Some(write) = node.writes.pop_front() {
            let d = &mut node.durable;
            if let Some(s) = write.snapshot {
                d.entries.clear();
                d.snapshot = Some(s);
            }
            if let Some(first) = write.entries.first() {
                d.entries.retain(|e| e.index < first.index);
                d.entries.extend(write.entries.iter().cloned());
            }
            if let Some(hs) = write.hard_state {
                d.hard_state = hs;
            }
            sent.extend(write.after_persist);
            last = write.last_written.or(last);
        }
        let raft = node.raft.as_mut().expect("checked up");
        if let Some((index, term)) = last {
            raft.persisted(index, term);
        }
        let _ = writeln!(
            out,
            "n{id}: persisted{}",
            last.map_or(String::new(), |(i, t)| format!(" upto {i}/t{t}"))
        );
        for m in &sent {
            let _ = writeln!(out, "  send: {}", message_text(m));
        }
        self.network.extend(sent);
        Ok(true)
    }

    /// Delivers (or drops) the messages in flight that match the filters.
    fn deliver(&mut self, args: &Args, drop: bool, out: &mut String) -> Result<(), String> {
        let from = args.option_ids("from")?;
        let to = args.option_ids("to")?;
        let types: Option<Vec<String>> = args
            .options
            .get("type")
            .map(|t| t.split(',').map(str::to_string).collect());
        let matches = |e: &Envelope| {
            from.as_ref().is_none_or(|f| f.contains(&e.from))
                && to.as_ref().is_none_or(|t| t.contains(&e.to))
                && types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|t| t == e.message.kind_name()))
        };
        let (chosen, kept): (Vec<Envelope>, Vec<Envelope>) =
            self.network.drain(..).partition(|e| matches(e));
        self.network = kept.into();
        for envelope in chosen {
            if drop {
                let _ = writeln!(out, "dropped {}", message_text(&envelope));
            } else {
                self.deliver_one(envelope, out)?;
            }
        }
        Ok(())
    }

    fn deliver_one(&mut self, envelope: Envelope, out: &mut String) -> Result<(), String> {
        let text = message_text(&envelope);
        match self.node_mut(envelope.to)?.raft.as_mut() {
            None => {
                let _ = writeln!(out, "lost {text} (n{} down)", envelope.to);
            }
            Some(raft) => {
                let _ = writeln!(out, "deliver {text}");
                raft.step(envelope);
            }
        }
        Ok(())
    }

    fn stabilize(&mut self, ids: &[NodeId], out: &mut String) -> Result<(), String> {
        for _ in 0..STABILIZE_ROUNDS_MAX {
            let mut busy = false;
            for &id in ids {
                busy |= self.process(id, out)?;
            }
            for &id in ids {
                busy |= self.persist(id, out)?;
            }
            let (chosen, kept): (Vec<Envelope>, Vec<Envelope>) = self
                .network
                .drain(..)
                .partition(|e| ids.contains(&e.from) && ids.contains(&e.to));
            self.network = kept.into();
            busy |= !chosen.is_empty();
            for envelope in chosen {
                self.deliver_one(envelope, out)?;
            }
            if !busy {
                return Ok(());
            }
        }
        Err(format!(
            "nodes {ids:?} did not stabilize within {STABILIZE_ROUNDS_MAX} rounds"
        ))
    }

    fn conf_change(&mut self, args: &Args, out: &mut String) -> Result<(), String> {
        let id = args.id(0)?;
        let change = if let Some(x) = args.option_u64("add-learner")? {
            ConfChange::AddLearner {
                id: x,
                context: Bytes::new(),
            }
        } else if let Some(x) = args.option_u64("promote")? {
            ConfChange::Promote(x)
        } else if let Some(x) = args.option_u64("remove")? {
            ConfChange::Remove(x)
        } else {
            return Err("conf-change ID add-learner=X|promote=X|remove=X".into());
        };
        match self.raft(id)?.propose_conf_change(change) {
            Ok(index) => writeln!(out, "n{id}: configuration change at {index}"),
            Err(error) => writeln!(out, "n{id}: refused: {error}"),
        }
        .map_err(|e| e.to_string())
    }

    /// Takes a snapshot of `id`'s state machine at its applied index, as a driver does.
    fn compact(&mut self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.node_mut(id)?;
        let data = encode_state(&node.applied);
        let raft = node
            .raft
            .as_mut()
            .ok_or_else(|| format!("node {id} is down"))?;
        let index = raft.log().applied_index();
        let term = raft
            .log()
            .term_at(index)
            .ok_or_else(|| format!("node {id} has no term at its applied index {index}"))?;
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_included_index: index,
                last_included_term: term,
                membership: raft.membership_at(index),
            },
            data,
        };
        node.durable.snapshot = Some(snapshot.clone());
        raft.snapshot_taken(snapshot);
        let _ = writeln!(out, "n{id}: snapshot at {index}/t{term}");
        Ok(())
    }

    fn status(&mut self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.node(id)?;
        let Some(raft) = &node.raft else {
            let _ = writeln!(out, "n{id}: down");
            return Ok(());
        };
        let hs = raft.hard_state();
        let log = raft.log();
        let _ = write!(
            out,
            "n{id}: {:?} term={} vote={:?} commit={} applied={} last={} {}",
            raft.role(),
            hs.current_term,
            hs.voted_for,
            log.commit_index(),
            log.applied_index(),
            log.last_index(),
            membership_text(raft.membership())
        );
        if let Some(to) = raft.recovering_to() {
            let _ = write!(out, " recovering-to={to}");
        }
        if raft.votes_withheld() > 0 {
            let _ = write!(out, " votes-withheld={}", raft.votes_withheld());
        }
        out.push('\n');
        Ok(())
    }
}

/// A transcript, parsed: prose (comments and blank lines) kept as it is, and each command with
/// the output expected of it.
enum Block {
    Prose(String),
    Command { line: String, expected: Vec<String> },
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("> ") {
            blocks.push(Block::Command {
                line: command.to_string(),
                expected: Vec::new(),
            });
        } else if line.trim().is_empty() || line.starts_with('#') {
            blocks.push(Block::Prose(line.to_string()));
        } else if let Some(Block::Command { expected, .. }) = blocks.last_mut() {
            expected.push(line.to_string());
        } else {
            blocks.push(Block::Prose(line.to_string()));
        }
    }
    blocks
}

/// Replays a transcript; returns the text it should have (the prose and commands of `text`,
/// each command followed by what it printed) and how many commands it ran.
fn replay(text: &str) -> (String, usize) {
    let mut world = World::default();
    let mut rendered = String::new();
    let mut commands = 0;
    for block in parse(text) {
        match block {
            Block::Prose(line) => {
                rendered.push_str(&line);
                rendered.push('\n');
            }
            Block::Command { line, .. } => {
                commands += 1;
                rendered.push_str("> ");
                rendered.push_str(&line);
                rendered.push('\n');
                let mut out = String::new();
                if let Err(error) = world.run(&line, &mut out) {
                    let _ = writeln!(out, "error: {error}");
                }
                rendered.push_str(&out);
            }
        }
    }
    (rendered, commands)
}

/// The first line where `expected` and `actual` differ, with a few lines of context.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = (0..e.len().max(a.len()))
        .find(|&i| e.get(i) != a.get(i))
        .unwrap_or(0);
    let from = at.saturating_sub(3);
    let mut text = format!("first difference at line {}:\n", at + 1);
    for i in from..at {
        let _ = writeln!(text, "  {}", e.get(i).unwrap_or(&""));
    }
    let _ = writeln!(text, "- {}", e.get(at).unwrap_or(&"(end of file)"));
    let _ = writeln!(text, "+ {}", a.get(at).unwrap_or(&"(end of output)"));
    text
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

/// Replays `tests/testdata/NAME.txt` and fails on any difference from the file (or rewrites
/// it with `RINGRAFT_REWRITE=1`).
fn check(name: &str) {
    let path = testdata().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (actual, commands) = replay(&text);
    assert!(commands > 0, "{} has no command", path.display());
    if actual == text {
        return;
    }
    if std::env::var_os("RINGRAFT_REWRITE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &actual)
            .unwrap_or_else(|e| panic!("cannot rewrite {}: {e}", path.display()));
        return;
    }
    panic!(
        "{} differs from what the core does now ({}); RINGRAFT_REWRITE=1 rewrites it (read the diff before committing)\n{}",
        path.display(),
        "run with --nocapture for the whole output",
        first_difference(&text, &actual)
    );
}

const TRANSCRIPTS: &[&str] = &[
    "election",
    "figure_8",
    "log_divergence",
    "leader_transfer_lost_timeout_now",
    "lost_tail_abstains",
    "joint_configuration_change",
];

#[test]
fn election() {
    check("election");
}

#[test]
fn figure_8() {
    check("figure_8");
}

#[test]
fn log_divergence() {
    check("log_divergence");
}

#[test]
fn leader_transfer_lost_timeout_now() {
    check("leader_transfer_lost_timeout_now");
}

#[test]
fn lost_tail_abstains() {
    check("lost_tail_abstains");
}

#[test]
fn joint_configuration_change() {
    check("joint_configuration_change");
}

/// Every file in `tests/testdata` has its test above, so none is silently skipped.
#[test]
fn every_transcript_is_run() {
    let mut found: Vec<String> = std::fs::read_dir(testdata())
        .expect("tests/testdata")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_string)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = TRANSCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// The runner fails on a transcript whose output differs, and on a command it does not know.
#[test]
fn a_changed_output_or_an_unknown_command_is_a_difference() {
    let text = "> add-nodes 1\nn1: up term=0 vote=None last=0 voters=1\n";
    assert_eq!(replay(text).0, text, "the baseline replays as written");
    let changed = text.replace("term=0", "term=1");
    let (actual, _) = replay(&changed);
    assert_ne!(actual, changed);
    assert!(first_difference(&changed, &actual).contains("- n1: up term=1"));
    let (actual, _) = replay("> frobnicate 1\n");
    assert!(
        actual.contains("error: unknown command `frobnicate`"),
        "{actual}"
    );
}
