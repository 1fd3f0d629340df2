//! The deterministic simulator: several Raft cores and key-value state machines driven with
//! simulated time, network and disk, checked for Raft's safety properties at every step and for
//! linearizability at the end, then for liveness once every fault heals.
//!
//! A node may host several independent Raft groups ([`SimConfig::groups`]): they share the
//! node's one disk queue and its faults, its links and its crashes, and each is checked on its
//! own, with its own [`Checker`] and its own linearizability check.
//!
//! This room owns the simulation. It must never use glommio, threads, the wall clock or real
//! files: everything is a function of the seed, so any failure replays from it.
//! All randomness comes from one [`SplitMix64`]; nodes are iterated in id order; no `HashMap`
//! is ever iterated.

pub mod cli;
mod client;
mod clock;
mod disk;
mod driver;
mod faults;
pub mod history;
mod invariants;
pub mod linearizability;
mod net;
mod trace;

use std::fmt;

pub use clock::{EventQueue, Micros};
pub use disk::{Disk, DiskOp, Durable};
pub use invariants::Checker;
pub use net::{NetConfig, Network, PartitionKind};
pub use trace::{Trace, TRACE_TAIL_LINES};

use crate::core::{Config, Envelope, NodeId, RawNode, SplitMix64, Term};
use crate::kv::KvStore;
use client::Client;
use history::History;

/// Operations of a non-linearizable key's history printed in a violation.
const HISTORY_LINES_SHOWN: usize = 40;

/// How many times the first budget the linearizability check gives a key it could not decide.
pub const LINEARIZABILITY_BUDGET_RAISE: u64 = 16;

/// Voters a cluster with membership changes starts with and never goes below: every
/// configuration then has a majority of intact disks with one disk fault at a time.
pub const MEMBERSHIP_VOTERS_MIN: usize = 3;

/// Probability per step of asking the leader for a membership change (with
/// `SimConfig::membership_changes`).
pub const MEMBERSHIP_CHANGE_PROBABILITY: f64 = 0.01;

/// Simulated time of one tick.
pub const TICK_US: Micros = 10_000;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: the whole run is a function of it.
    pub seed: u64,
    /// Cluster size (3 or 5 usually).
    pub nodes: usize,
    /// Independent Raft groups each node hosts (1 usually). The groups of a node share its
    /// one disk (latency, faults), its network links and its crashes; clients route each key
    /// to its group with [`crate::kv::group_of`]; every invariant is checked per group.
    pub groups: usize,
    /// Steps of the faulty phase; one step is one tick of simulated time.
    pub steps: u64,
    /// Closed-loop clients.
    pub clients: usize,
    /// Size of the key space.
    pub keys: usize,
    /// Which faults to inject.
    pub faults: Faults,
    /// Turn on the core's planted bug (commit entries of earlier terms by counting replicas).
    pub bug_commit_previous_term: bool,
    /// Turn on the core's planted bug that lets a node that lost acknowledged entries vote.
    pub bug_no_abstain: bool,
    /// Membership changes: the cluster starts with [`MEMBERSHIP_VOTERS_MIN`] voters, the other
    /// nodes start empty and wait to be added, and the leader is asked at random moments to
    /// add a learner, promote one, or remove a learner or a voter (never below the minimum),
    /// interleaved with every other fault class.
    pub membership_changes: bool,
    /// Turn on the core's planted bug that commits on C_old's majority alone while joint.
    pub bug_joint_single_majority: bool,
    /// Keep the whole trace text in the report (determinism tests).
    pub full_trace: bool,
    /// How long the liveness phase may take to elect a leader and answer every client.
    pub liveness_bound_us: Micros,
    /// The liveness phase also requires every follower to catch up with the leader's commit
    /// index. Off by default: the core can leave an idle follower behind (see the sim report of
    /// tracker issue 2); turn on to reproduce, and by default once the core is fixed.
    pub strict_liveness: bool,
    /// Search steps per key the linearizability check takes before it calls a key undecided;
    /// undecided keys are checked again with [`LINEARIZABILITY_BUDGET_RAISE`] times the budget,
    /// and a key still undecided then fails the run (`linearizability_unknown`).
    pub linearizability_steps_max: u64,
}

/// Fault classes and their rates (per step unless stated).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Network delay, jitter, loss and duplication.
    pub net: NetConfig,
    /// Probability per step of crashing a random node.
    pub crash_probability: f64,
    /// Probability per step of crashing the current leader.
    pub crash_leader_probability: f64,
    /// Probability that a crash tears the write in flight.
    pub torn_write_probability: f64,
    /// Probability per step of starting a partition (when none is in effect).
    pub partition_probability: f64,
    /// Probability per step of asking the leader to transfer leadership.
    pub transfer_probability: f64,
    /// Probability that a disk write is slow (2-30 ms instead of 50 us-1 ms).
    pub slow_disk_probability: f64,
    /// Snapshot threshold in applied entries (0: no snapshots).
    pub snapshot_threshold_entries: u64,
    /// Probability that a crash also damages entries the node had made durable (and so may
    /// have acknowledged): its last records, or everything from a record in the middle (what
    /// the runtime keeps when it repairs mid-log corruption). Only ever on a minority of nodes
    /// at once (see `Simulation::disk_fault_allowed`).
    pub disk_damage_probability: f64,
    /// Probability that a completed log write was acknowledged by the disk and never
    /// persisted: the node goes on as if it were durable, and its next crash loses it and
    /// everything written after it. Same minority bound.
    pub lost_write_probability: f64,
}

impl Faults {
    /// Every fault class on, at rates that make a 2,000-step run see several of each.
    pub fn all() -> Faults {
        Faults {
            net: NetConfig {
                delay_min_us: 500,
                delay_max_us: 5_000,
                drop_probability: 0.02,
                duplicate_probability: 0.02,
            },
            crash_probability: 0.002,
            crash_leader_probability: 0.002,
            torn_write_probability: 0.5,
            partition_probability: 0.003,
            transfer_probability: 0.002,
            slow_disk_probability: 0.1,
            snapshot_threshold_entries: 64,
            disk_damage_probability: 0.25,
            lost_write_probability: 0.0005,
        }
    }

    /// Every fault class at several times the default rate, with tiny snapshots and a wide
    /// delay spread: fewer commits per run, more corner cases per commit.
    pub fn stress() -> Faults {
        Faults {
            net: NetConfig {
                delay_min_us: 100,
                delay_max_us: 15_000,
                drop_probability: 0.08,
                duplicate_probability: 0.05,
            },
            crash_probability: 0.006,
            crash_leader_probability: 0.006,
            torn_write_probability: 0.8,
            partition_probability: 0.01,
            transfer_probability: 0.005,
            slow_disk_probability: 0.25,
            snapshot_threshold_entries: 8,
            disk_damage_probability: 0.5,
            lost_write_probability: 0.002,
        }
    }

    /// No faults at all (delay only).
    pub fn none() -> Faults {
        Faults {
            net: NetConfig {
                delay_min_us: 500,
                delay_max_us: 5_000,
                drop_probability: 0.0,
                duplicate_probability: 0.0,
            },
            crash_probability: 0.0,
            crash_leader_probability: 0.0,
            torn_write_probability: 0.0,
            partition_probability: 0.0,
            transfer_probability: 0.0,
            slow_disk_probability: 0.0,
            snapshot_threshold_entries: 64,
            disk_damage_probability: 0.0,
            lost_write_probability: 0.0,
        }
    }
}

impl SimConfig {
    /// A run of `nodes` nodes for `steps` steps with every fault class on.
    pub fn new(seed: u64, nodes: usize, steps: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            groups: 1,
            steps,
            clients: 4,
            keys: 5,
            faults: Faults::all(),
            bug_commit_previous_term: false,
            bug_no_abstain: false,
            membership_changes: false,
            bug_joint_single_majority: false,
            full_trace: false,
            liveness_bound_us: 60_000_000,
            strict_liveness: true,
            linearizability_steps_max: linearizability::SEARCH_STEPS_MAX,
        }
    }
}

/// What a run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Crashes that tore a write.
    pub torn_writes: u64,
    /// Crashes that damaged the last durable records (acknowledged entries lost at the tail).
    pub damaged_tails: u64,
    /// Crashes that damaged a durable record in the middle (the log from there lost).
    pub damaged_middles: u64,
    /// Log writes the disk acknowledged and never persisted.
    pub lost_writes: u64,
    /// Most nodes at once with a disk fault not yet repaired (for sweeps: the largest).
    pub disk_faulty_nodes_max: u64,
    /// Votes and pre-votes refused by nodes recovering lost entries (summed at the end).
    pub votes_withheld: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Messages sent.
    pub messages: u64,
    /// Messages lost (dropped, or blocked by a partition).
    pub drops: u64,
    /// Messages duplicated.
    pub duplicates: u64,
    /// Times a node became leader.
    pub elections: u64,
    /// Distinct terms that had a leader (summed over groups).
    pub leader_terms: u64,
    /// Highest index seen committed (summed over groups).
    pub commits: u64,
    /// Highest index seen committed in each group, by group (for sweeps: summed per group).
    pub group_commits: Vec<u64>,
    /// Snapshots taken by nodes of their own state.
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Leadership transfers requested.
    pub transfers: u64,
    /// Elections started on a leader's TimeoutNow: transfers that got as far as a campaign.
    pub transfer_elections: u64,
    /// Membership changes the leader accepted.
    pub membership_changes: u64,
    /// Of those, promotions of a learner (each through a joint configuration).
    pub promotions: u64,
    /// Of those, removals of a voter (each through a joint configuration).
    pub voter_removals: u64,
    /// Times a leader committed while in a joint configuration.
    pub joint_commits: u64,
    /// Writes acknowledged to clients.
    pub writes_acknowledged: u64,
    /// Writes whose fate stayed unknown.
    pub writes_indeterminate: u64,
    /// Linearizable reads served.
    pub reads: u64,
    /// Applied retries that the client sessions kept from applying twice (counted per replica).
    pub session_duplicates: u64,
    /// Keys whose history was too large to check within the budget.
    pub linearizability_unknown: u64,
    /// Simulated time the liveness phase took (for sweeps: the longest).
    pub liveness_us: Micros,
    /// Digest of the whole trace: equal for equal runs.
    pub trace_digest: u64,
    /// The whole trace, when asked for.
    pub full_trace: Option<String>,
}

impl SimReport {
    /// Adds another run's counts into this one (for sweeps).
    pub fn accumulate(&mut self, other: &SimReport) {
        self.crashes += other.crashes;
        self.restarts += other.restarts;
        self.torn_writes += other.torn_writes;
        self.damaged_tails += other.damaged_tails;
        self.damaged_middles += other.damaged_middles;
        self.lost_writes += other.lost_writes;
        self.disk_faulty_nodes_max = self.disk_faulty_nodes_max.max(other.disk_faulty_nodes_max);
        self.votes_withheld += other.votes_withheld;
        self.partitions += other.partitions;
        self.messages += other.messages;
        self.drops += other.drops;
        self.duplicates += other.duplicates;
        self.elections += other.elections;
        self.leader_terms += other.leader_terms;
        self.commits += other.commits;
        if self.group_commits.len() < other.group_commits.len() {
            self.group_commits.resize(other.group_commits.len(), 0);
        }
        for (sum, commits) in self.group_commits.iter_mut().zip(&other.group_commits) {
            *sum += commits;
        }
        self.snapshots_taken += other.snapshots_taken;
        self.snapshots_installed += other.snapshots_installed;
        self.transfers += other.transfers;
        self.transfer_elections += other.transfer_elections;
        self.membership_changes += other.membership_changes;
        self.promotions += other.promotions;
        self.voter_removals += other.voter_removals;
        self.joint_commits += other.joint_commits;
        self.writes_acknowledged += other.writes_acknowledged;
        self.writes_indeterminate += other.writes_indeterminate;
        self.reads += other.reads;
        self.session_duplicates += other.session_duplicates;
        self.liveness_us = self.liveness_us.max(other.liveness_us);
        self.linearizability_unknown += other.linearizability_unknown;
    }
}

/// A property that failed, with everything needed to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed that replays it.
    pub seed: u64,
    /// The Raft group whose property failed (`None` for what is no group's own, such as a
    /// node that does not start).
    pub group: Option<usize>,
    /// The property (named after the paper), or `linearizability`, `linearizability_unknown`,
    /// `liveness`, `driver_contract`.
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
    /// The step at which it was found.
    pub step: u64,
    /// Simulated time at which it was found.
    pub time_us: Micros,
    /// The last trace lines.
    pub trace_tail: String,
    /// The report so far.
    pub report: SimReport,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = self
            .group
            .map(|g| format!("group {g}: "))
            .unwrap_or_default();
        writeln!(
            f,
            "seed {}: {group}{} violated at step {} ({} us): {}",
            self.seed, self.property, self.step, self.time_us, self.detail
        )?;
        writeln!(
            f,
            "replay: the same ringraft sim command with --seed {} (same --nodes/--groups/--steps/--membership/--bug)",
            self.seed
        )?;
        writeln!(f, "last {} trace lines:", TRACE_TAIL_LINES)?;
        f.write_str(&self.trace_tail)
    }
}

impl std::error::Error for Violation {}

/// Something that happens at a simulated time.
enum Event {
    Tick { node: usize },
    Deliver { group: usize, envelope: Envelope },
    DiskDone { node: usize, epoch: u64 },
    Restart { node: usize },
    Heal { generation: u64 },
    ClientWake { client: usize },
}

/// One simulated node: a replica of each Raft group, and the disk they share.
struct SimNode {
    id: NodeId,
    /// Bumped at every crash, so events of an earlier life are ignored.
    epoch: u64,
    /// Whether the node runs (every group's core is up) or is crashed (none is).
    up: bool,
    disk: Disk,
    /// One replica per group, by group number.
    replicas: Vec<Replica>,
}

/// One Raft group's replica on a node: the core (absent while the node is down), its state
/// machine and the simulator's bookkeeping of it.
struct Replica {
    raft: Option<RawNode>,
    kv: KvStore,
    /// Read states waiting for the state machine to catch up: (request_id, read_index).
    pending_reads: Vec<(u64, u64)>,
    /// Highest commit index recorded by the checker for this life.
    commit_seen: u64,
    /// Votes withheld in earlier lives (the core's counter restarts with it).
    votes_withheld_before: u64,
    /// `transfer_elections` of this node's earlier incarnations (before crashes).
    transfer_elections_before: u64,
    /// The `acked_index` of the latest disk fault that lost acknowledged entries here: the
    /// node counts as faulty until its log is back past it (see `disk_fault_allowed`).
    lost_upto: Option<u64>,
    /// Term of the last entry applied (or of the restored snapshot).
    applied_term: Term,
    /// The latest snapshot the core knows of (taken, installed or restored), whose chunks the
    /// driver reads when the core streams it to a follower.
    served_snapshot: Option<crate::core::Snapshot>,
    /// Leader only, the simulator's own view: the term, and the highest index each follower
    /// acknowledged as matching in that term (from the responses delivered to this node).
    acks: (Term, std::collections::BTreeMap<NodeId, u64>),
    /// Leader only: (term, commit index) last checked against `acks`.
    leader_commit_checked: (Term, u64),
}

impl Replica {
    fn new() -> Replica {
        Replica {
            raft: None,
            kv: KvStore::new(),
            pending_reads: Vec::new(),
            commit_seen: 0,
            votes_withheld_before: 0,
            transfer_elections_before: 0,
            lost_upto: None,
            applied_term: 0,
            served_snapshot: None,
            acks: (0, Default::default()),
            leader_commit_checked: (0, 0),
        }
    }
}

/// Phases of a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Faults are injected; clients issue operations and may give up.
    Faulty,
    /// Faults healed; clients finish what they have, write once more, and stop.
    Liveness,
}

/// A running simulation.
pub struct Simulation {
    config: SimConfig,
    rng: SplitMix64,
    queue: EventQueue<Event>,
    net: Network,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    history: History,
    /// One checker per group: the groups are independent Raft clusters.
    checkers: Vec<Checker>,
    trace: Trace,
    report: SimReport,
    phase: Phase,
    step: u64,
    partition_generation: u64,
    next_request_id: u64,
    violation: Option<(Option<usize>, &'static str, String)>,
}

/// Runs one simulation to the end.
pub fn run(config: SimConfig) -> Result<SimReport, Box<Violation>> {
    Simulation::new(config).run()
}

impl Simulation {
    /// Builds the cluster, its clients and the first events.
    pub fn new(config: SimConfig) -> Simulation {
        assert!(
            config.nodes >= 1 && config.nodes <= crate::limits::CLUSTER_NODES_MAX,
            "bad node count"
        );
        assert!(
            config.groups >= 1 && config.groups <= crate::kv::GROUPS_MAX as usize,
            "bad group count"
        );
        let mut rng = SplitMix64::new(config.seed);
        let mut queue = EventQueue::default();
        let nodes = (0..config.nodes)
            .map(|i| SimNode {
                id: i as NodeId + 1,
                epoch: 0,
                up: false,
                disk: Disk::new(config.groups),
                replicas: (0..config.groups).map(|_| Replica::new()).collect(),
            })
            .collect();
        for node in 0..config.nodes {
            // Spread the ticks over the tick interval so nodes do not act in lockstep.
            queue.schedule(rng.below(TICK_US), Event::Tick { node });
        }
        let clients = (0..config.clients)
            .map(|c| Client::new(c as u64 + 1, config.nodes, config.groups))
            .collect();
        for client in 0..config.clients {
            queue.schedule(rng.below(5 * TICK_US), Event::ClientWake { client });
        }
        let checkers = (0..config.groups).map(|_| Checker::default()).collect();
        Simulation {
            net: Network::new(config.faults.net.clone()),
            trace: Trace::new(config.full_trace),
            report: SimReport {
                seed: config.seed,
                ..SimReport::default()
            },
            config,
            rng,
            queue,
            nodes,
            clients,
            history: History::default(),
            checkers,
            phase: Phase::Faulty,
            step: 0,
            partition_generation: 0,
            next_request_id: 1,
            violation: None,
        }
    }

    fn voters(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The bootstrap voters: every node, or the first few with membership changes.
    fn bootstrap_voters(&self) -> Vec<NodeId> {
        let mut voters = self.voters();
        if self.config.membership_changes {
            voters.truncate(MEMBERSHIP_VOTERS_MIN);
        }
        voters
    }

    /// The replica of `group` on `node`.
    fn replica(&self, node: usize, group: usize) -> &Replica {
        &self.nodes[node].replicas[group]
    }

    /// The replica of `group` on `node`, to change.
    fn replica_mut(&mut self, node: usize, group: usize) -> &mut Replica {
        &mut self.nodes[node].replicas[group]
    }

    /// The core of `group` on `node`, if the node is up.
    fn raft(&self, node: usize, group: usize) -> Option<&RawNode> {
        self.nodes[node].replicas[group].raft.as_ref()
    }

    /// How a trace line names a group: nothing with one group, so that its traces read as
    /// they always have.
    fn group_tag(&self, group: usize) -> String {
        if self.config.groups == 1 {
            String::new()
        } else {
            format!("g{group} ")
        }
    }

    fn node_config(&self, id: NodeId, group: usize) -> Config {
        let bootstrap = self.bootstrap_voters();
        let voters = if bootstrap.contains(&id) {
            bootstrap
        } else {
            Vec::new() // Waits to be added.
        };
        let mut config = Config::new(id, voters);
        // Each group draws its own timeouts; group 0's seed is the one a single group has.
        config.seed =
            self.config.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ id ^ ((group as u64) << 32);
        config.election_timeout_ticks = 10;
        config.heartbeat_interval_ticks = 2;
        config.pre_vote = true;
        config.check_quorum = true;
        config.batch_entries_max = 16;
        config.batch_bytes_max = 4 << 10;
        config.inflight_msgs_max = 8;
        config.inflight_bytes_max = 64 << 10;
        config.snapshot_threshold_entries = self.config.faults.snapshot_threshold_entries;
        // The entry count alone decides, so that the faults' threshold controls how often
        // snapshots (and InstallSnapshot) happen.
        config.snapshot_log_factor = 0;
        config.snapshot_chunk_bytes = 64;
        // A small window, so that streams are cut by drops, reorders and crashes mid-way.
        config.snapshot_inflight_chunks_max = 4;
        config.uncommitted_entries_max = 256;
        config.bug_commit_previous_term = self.config.bug_commit_previous_term;
        config.bug_no_abstain = self.config.bug_no_abstain;
        config.bug_joint_single_majority = self.config.bug_joint_single_majority;
        config
    }

    /// Runs the faulty phase, the liveness phase and the final checks.
    pub fn run(mut self) -> Result<SimReport, Box<Violation>> {
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        self.check()?;
        while self.step < self.config.steps {
            self.inject_faults();
            self.run_step()?;
        }
        self.liveness_phase()?;
        self.check_linearizability()?;
        Ok(self.finish_report())
    }

    /// Processes every event of the current step, checking after each one.
    fn run_step(&mut self) -> Result<(), Box<Violation>> {
        let end_us = (self.step + 1) * TICK_US;
        while let Some(event) = self.queue.pop_before(end_us) {
            self.handle(event);
            self.check()?;
        }
        self.queue.advance_to(end_us);
        self.step += 1;
        self.full_checks();
        self.check()?;
        Ok(())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node } => {
                self.queue
                    .schedule(self.queue.now_us() + TICK_US, Event::Tick { node });
                for group in 0..self.config.groups {
                    if let Some(raft) = self.replica_mut(node, group).raft.as_mut() {
                        raft.tick();
                        self.drain(node, group);
                    }
                }
            }
            Event::Deliver { group, envelope } => self.deliver(group, envelope),
            Event::DiskDone { node, epoch } => self.disk_done(node, epoch),
            Event::Restart { node } => self.restart_node(node),
            Event::Heal { generation } => {
                if generation == self.partition_generation && self.net.partitioned() {
                    self.net.heal();
                    self.trace_line(format_args!("heal partition"));
                }
            }
            Event::ClientWake { client } => self.client_wake(client),
        }
    }

    fn trace_line(&mut self, text: fmt::Arguments<'_>) {
        let now_us = self.queue.now_us();
        self.trace.line(now_us, text);
    }

    /// Records a violation of `group`'s property; the first one wins and ends the run at the
    /// next check.
    fn fail(&mut self, group: usize, property: &'static str, detail: String) {
        self.fail_in(Some(group), property, detail);
    }

    fn fail_in(&mut self, group: Option<usize>, property: &'static str, detail: String) {
        if self.violation.is_none() {
            let tag = group.map(|g| self.group_tag(g)).unwrap_or_default();
            self.trace_line(format_args!("VIOLATION {tag}{property}: {detail}"));
            self.violation = Some((group, property, detail));
        }
    }

    fn check(&mut self) -> Result<(), Box<Violation>> {
        match self.violation.take() {
            None => Ok(()),
            Some((group, property, detail)) => Err(self.violation_report(group, property, detail)),
        }
    }

    fn violation_report(
        &mut self,
        group: Option<usize>,
        property: &'static str,
        detail: String,
    ) -> Box<Violation> {
        Box::new(Violation {
            seed: self.config.seed,
            group,
            property,
            detail,
            step: self.step,
            time_us: self.queue.now_us(),
            trace_tail: self.trace.tail_text(),
            report: self.finish_report(),
        })
    }

    /// The pairwise Log Matching check and Leader Completeness of every current leader, in
    /// every group.
    fn full_checks(&mut self) {
        for group in 0..self.config.groups {
            if let Some((property, detail)) = self.full_checks_of(group) {
                self.fail(group, property, detail);
            }
        }
    }

    fn full_checks_of(&self, group: usize) -> Option<invariants::Broken> {
        let logs: Vec<(NodeId, &crate::core::RaftLog)> = self
            .nodes
            .iter()
            .filter_map(|n| n.replicas[group].raft.as_ref().map(|r| (n.id, r.log())))
            .collect();
        let mut broken = Checker::log_matching(&logs).err();
        for node in &self.nodes {
            let Some(raft) = &node.replicas[group].raft else {
                continue;
            };
            if raft.role() == crate::core::Role::Leader && broken.is_none() {
                broken = self.checkers[group]
                    .leader_completeness(node.id, raft.hard_state().current_term, raft.log())
                    .err();
            }
        }
        broken
    }

    /// Every replica of every node, for totals.
    fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.nodes.iter().flat_map(|n| n.replicas.iter())
    }

    fn finish_report(&mut self) -> SimReport {
        let mut report = self.report.clone();
        report.leader_terms = self.checkers.iter().map(|c| c.leader_terms() as u64).sum();
        report.group_commits = self.checkers.iter().map(Checker::commit_max).collect();
        report.commits = report.group_commits.iter().sum();
        report.writes_acknowledged = self.history.writes_acknowledged() as u64;
        report.writes_indeterminate = self.history.writes_indeterminate() as u64;
        report.reads = self.history.reads_completed() as u64;
        report.votes_withheld = self
            .replicas()
            .map(|n| n.votes_withheld_before + n.raft.as_ref().map_or(0, |r| r.votes_withheld()))
            .sum();
        report.transfer_elections = self
            .replicas()
            .map(|n| {
                n.transfer_elections_before + n.raft.as_ref().map_or(0, |r| r.transfer_elections())
            })
            .sum();
        report.trace_digest = self.trace.digest();
        report.full_trace = self.trace.take_full();
        report
    }

    /// Checks each group's history on its own: a group is a linearizable object of its own,
    /// and a failure names its group.
    fn check_linearizability(&mut self) -> Result<(), Box<Violation>> {
        let groups = self.config.groups as u32;
        for group in 0..self.config.groups {
            let mut own = History::default();
            own.ops = self
                .history
                .ops
                .iter()
                .filter(|op| groups == 1 || crate::kv::group_of(&op.key, groups) as usize == group)
                .cloned()
                .collect();
            self.check_linearizability_of(group, &own)?;
        }
        Ok(())
    }

    fn check_linearizability_of(
        &mut self,
        group: usize,
        history: &History,
    ) -> Result<(), Box<Violation>> {
        match linearizability::check_history_within(history, self.config.linearizability_steps_max)
        {
            linearizability::Verdict::Linearizable => Ok(()),
            // Undecided is not a pass: count the keys, give them a larger budget, and fail the
            // run if that still does not decide them.
            linearizability::Verdict::Unknown { keys } => {
                self.report.linearizability_unknown += keys.len() as u64;
                let raised = self
                    .config
                    .linearizability_steps_max
                    .saturating_mul(LINEARIZABILITY_BUDGET_RAISE);
                let mut undecided = Vec::new();
                for key in &keys {
                    let mut one = History::default();
                    one.ops = history
                        .ops
                        .iter()
                        .filter(|op| &op.key == key)
                        .cloned()
                        .collect();
                    match linearizability::check_history_within(&one, raised) {
                        linearizability::Verdict::Linearizable => {}
                        linearizability::Verdict::NotLinearizable { key } => {
                            return Err(self.not_linearizable(group, history, key));
                        }
                        linearizability::Verdict::Unknown { .. } => {
                            undecided.push(String::from_utf8_lossy(key).into_owned());
                        }
                    }
                }
                if undecided.is_empty() {
                    return Ok(());
                }
                let detail = format!(
                    "the linearizability search could not decide key(s) {undecided:?} within {raised} steps each (first budget {} x {LINEARIZABILITY_BUDGET_RAISE}); an undecided history is not a pass",
                    self.config.linearizability_steps_max
                );
                Err(self.violation_report(Some(group), "linearizability_unknown", detail))
            }
            linearizability::Verdict::NotLinearizable { key } => {
                Err(self.not_linearizable(group, history, key))
            }
        }
    }

    /// The violation of a key whose history is not linearizable, with its last operations.
    fn not_linearizable(
        &mut self,
        group: usize,
        history: &History,
        key: Vec<u8>,
    ) -> Box<Violation> {
        let ops: Vec<String> = history
            .ops
            .iter()
            .filter(|op| op.key == key)
            .map(|op| {
                format!(
                    "  client {} {:?} [{}, {:?}]",
                    op.client, op.kind, op.invoke, op.complete
                )
            })
            .collect();
        // The whole per-key history can be thousands of lines; the replay has it all.
        let shown = &ops[ops.len().saturating_sub(HISTORY_LINES_SHOWN)..];
        let detail = format!(
            "history of key {:?} ({} operations) is not linearizable; the last {}:\n{}",
            String::from_utf8_lossy(&key),
            ops.len(),
            shown.len(),
            shown.join("\n")
        );
        self.violation_report(Some(group), "linearizability", detail)
    }
}
