//! The core's configuration and its validation.

use super::types::NodeId;
use crate::limits;
use crate::settings::{self, Settings};

/// Settings of one Raft node. Times are in ticks; the runtime decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; must be one of `voters` unless `voters` is empty.
    pub id: NodeId,
    /// The bootstrap configuration: every voting member, this node included, used until the
    /// log or a snapshot holds a configuration (which then wins). Empty for a node that waits
    /// to be added to a running cluster: it never campaigns and takes whatever a leader sends.
    pub voters: Vec<NodeId>,
    /// E: a follower campaigns after a random timeout in [E, 2E) ticks without a leader.
    pub election_timeout_ticks: u32,
    /// The leader sends heartbeats to idle followers this often.
    pub heartbeat_interval_ticks: u32,
    /// Ask for pre-votes before starting an election (thesis 9.6), so that a node rejoining from
    /// a partition does not depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and
    /// followers that heard from a leader within the election timeout refuse votes (thesis 6.2).
    pub check_quorum: bool,
    /// Most entries in one AppendEntries.
    pub batch_entries_max: usize,
    /// Most payload bytes in one AppendEntries.
    pub batch_bytes_max: usize,
    /// Most AppendEntries in flight to one follower (pipelining).
    pub inflight_msgs_max: usize,
    /// Most payload bytes in flight to one follower.
    pub inflight_bytes_max: usize,
    /// Ask the state machine for a snapshot once this many applied entries follow the last
    /// snapshot; 0 turns snapshots off.
    pub snapshot_threshold_entries: u64,
    /// And only once the entries applied since the last snapshot hold this many times its
    /// bytes (thesis 5.1.3: snapshotting when the log outgrows the state by an expansion factor
    /// bounds the cost of writing snapshots to 1/factor of the cost of writing the log, and the
    /// log's disk space to about factor x the state). 0: the entry count alone decides.
    pub snapshot_log_factor: u64,
    /// But never let the log since the last snapshot hold more than this many payload bytes:
    /// the entries stay in memory until a snapshot covers them, so without a cap a large state
    /// times the factor would be memory the node does not have.
    pub snapshot_log_bytes_max: u64,
    /// Size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Most InstallSnapshot chunks in flight to one follower (the stream's window; its bytes
    /// are bounded by `inflight_bytes_max` too).
    pub snapshot_inflight_chunks_max: usize,
    /// Most uncommitted entries the leader accepts before refusing proposals (backpressure).
    pub uncommitted_entries_max: usize,
    /// Seed of the PRNG behind election timeouts; the only source of randomness in the core.
    pub seed: u64,
    /// **A planted bug, for testing the simulator only.** When true, a leader commits an entry
    /// of an earlier term once a majority holds it, which the paper's Figure 8 shows is unsafe.
    #[doc(hidden)]
    pub bug_commit_previous_term: bool,
    /// **A planted bug, for testing the simulator only.** When true, a node that restarts with
    /// a log shorter than the `acked_index` it had made durable votes and campaigns at once,
    /// as if nothing were lost (the rule of the FAST'18 protocol-aware recovery work, off).
    #[doc(hidden)]
    pub bug_no_abstain: bool,
    /// **A planted bug, for testing the simulator only.** When true, a leader in a joint
    /// configuration commits once a majority of C_old holds an entry, ignoring C_new.
    #[doc(hidden)]
    pub bug_joint_single_majority: bool,
}

impl Config {
    /// A configuration with the node's default settings for node `id` in a cluster of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config::from_settings(id, voters, &Settings::default())
    }

    /// The configuration of node `id` in a cluster of `voters` with `settings` (the one table
    /// of node settings, so that the core's defaults are the node's).
    pub fn from_settings(id: NodeId, voters: Vec<NodeId>, settings: &Settings) -> Config {
        Config {
            id,
            voters,
            election_timeout_ticks: settings.election_timeout_ticks,
            heartbeat_interval_ticks: settings.heartbeat_interval_ticks,
            pre_vote: settings.pre_vote,
            check_quorum: settings.check_quorum,
            batch_entries_max: settings.batch_entries_max,
            batch_bytes_max: settings.batch_bytes_max,
            inflight_msgs_max: settings.inflight_msgs_max,
            inflight_bytes_max: settings.inflight_bytes_max,
            snapshot_threshold_entries: settings.snapshot_threshold_entries,
            snapshot_log_factor: settings.snapshot_log_factor,
            snapshot_log_bytes_max: settings.snapshot_log_bytes_max,
            snapshot_chunk_bytes: settings.snapshot_chunk_bytes,
            snapshot_inflight_chunks_max: settings.snapshot_inflight_chunks_max,
            uncommitted_entries_max: settings.uncommitted_entries_max,
            seed: 0,
            bug_commit_previous_term: false,
            bug_no_abstain: false,
            bug_joint_single_majority: false,
        }
    }

    /// Checks every setting and their relationships.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() || sorted.contains(&0) {
            return Err(ConfigError::BadVoters(
                "voter ids must be distinct and non-zero",
            ));
        }
        if !sorted.is_empty() && !sorted.contains(&self.id) {
            return Err(ConfigError::BadVoters(
                "this node's id is not among the voters",
            ));
        }
        if sorted.len() > limits::CLUSTER_NODES_MAX {
            return Err(ConfigError::BadVoters(
                "more voters than limits::CLUSTER_NODES_MAX",
            ));
        }
        for (field, value) in [
            (
                "heartbeat_interval_ticks",
                self.heartbeat_interval_ticks as u64,
            ),
            ("election_timeout_ticks", self.election_timeout_ticks as u64),
            ("batch_entries_max", self.batch_entries_max as u64),
            ("batch_bytes_max", self.batch_bytes_max as u64),
            ("inflight_msgs_max", self.inflight_msgs_max as u64),
            ("inflight_bytes_max", self.inflight_bytes_max as u64),
            ("snapshot_log_factor", self.snapshot_log_factor),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u64),
            (
                "snapshot_inflight_chunks_max",
                self.snapshot_inflight_chunks_max as u64,
            ),
            (
                "uncommitted_entries_max",
                self.uncommitted_entries_max as u64,
            ),
        ] {
            settings::check(field, value)?;
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election_timeout_ticks: self.election_timeout_ticks,
                heartbeat_interval_ticks: self.heartbeat_interval_ticks,
            });
        }
        // A window must hold at least one full batch, or a full batch could never be sent.
        check_range(
            "inflight_bytes_max",
            self.inflight_bytes_max,
            self.batch_bytes_max,
            limits::INFLIGHT_BYTES_MAX,
        )?;
        Ok(())
    }
}

fn check_range(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// What is wrong with a [`Config`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Node id 0 is reserved for "no node".
    #[error("node id must not be 0 (0 means \"no node\")")]
    ZeroId,
    /// The voter list is unusable.
    #[error("voters: {0}")]
    BadVoters(&'static str),
    /// Elections would fire before a leader could heartbeat.
    #[error("election_timeout_ticks ({election_timeout_ticks}) must be greater than heartbeat_interval_ticks ({heartbeat_interval_ticks}); etcd's tuning guide advises about 10x")]
    ElectionNotAboveHeartbeat {
        /// The configured election timeout.
        election_timeout_ticks: u32,
        /// The configured heartbeat interval.
        heartbeat_interval_ticks: u32,
    },
    /// A bound outside its allowed range.
    #[error("{field} = {value} is outside [{min}, {max}]")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A setting outside the bound the settings table gives it.
    #[error(transparent)]
    Setting(#[from] settings::SettingError),
}
