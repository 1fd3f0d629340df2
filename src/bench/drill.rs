//! What the harness watches and does to a ringraft cluster while the load runs: elections over
//! the run (spurious ones, when nothing is injected), scheduled partitions of an emulated network,
//! and failover drills (kill or isolate the leader at a set time, then time the recovery).
//!
//! The conductor runs on its own thread beside the load generator. It observes the nodes through
//! their Stats request, polled every few milliseconds, and the clients through the recorder's
//! per-millisecond completion timeline, so every figure is one a user could see.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::cluster::Cluster;
use super::config::{BenchConfig, FailoverAction};
use crate::core::Role;
use crate::loadgen::Recorder;
use crate::netem::Partition;
use crate::wire::NodeStats;

/// How often the conductor polls the nodes while timing a failover.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long one Stats request may take.
const STATS_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a node stopped with SIGTERM may take to hand over and exit before it is killed
/// (it gives up the hand-over itself after two election timeouts).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the harness saw of the cluster during one measured run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterObservation {
    /// Leader when the measured window opened.
    pub leader_before: Option<u64>,
    /// Leader when the load ended.
    pub leader_after: Option<u64>,
    /// Elections started (nodes becoming candidate) over the measured window (warm-up excluded),
    /// summed over nodes and groups: with no fault injected, every one of them is spurious.
    pub elections: u64,
    /// Election timeouts that fired (pre-vote campaigns included) over the same span, summed
    /// over nodes and groups: with pre-vote, a timeout that fires without a majority agreeing
    /// is only a campaign, not an election.
    pub campaigns: u64,
    /// With several Raft groups per node (`[node] groups`): each group's leaders and elections
    /// (group 0 first; `leader_before` and `leader_after` above are group 0's, whose leader a
    /// failover drill fails). Empty with one group.
    pub groups: Vec<GroupObservation>,
    /// With an emulated network: the network part of a write's latency given the leader at the
    /// start (the round trip to the fastest majority); the measured p50 should sit just above.
    pub commit_floor_ms: Option<f64>,
    /// With an emulated network: what was emulated, stated plainly.
    pub emulated: Option<String>,
    /// The failover drill, if one ran.
    pub failover: Option<FailoverResult>,
    /// Each node's own count of peer messages its link emulation dropped (loss, partitions),
    /// since it started, read when the load ended; node `i + 1` at position `i`, None if it did
    /// not answer. The nodes' word that they emulated, not the harness's.
    pub emulated_drops: Vec<Option<u64>>,
}

/// One Raft group of a cluster with several, over the measured window.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GroupObservation {
    /// The group.
    pub group: u32,
    /// Its leader when the measured window opened.
    pub leader_before: Option<u64>,
    /// Its leader when the load ended.
    pub leader_after: Option<u64>,
    /// Its elections over the window, summed over nodes (as [`ClusterObservation::elections`]).
    pub elections: u64,
    /// Its election timeouts over the window, summed over nodes.
    pub campaigns: u64,
}

impl GroupObservation {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let node = |l: Option<u64>| l.map_or("?".to_string(), |l| l.to_string());
        format!(
            "group {}: leader {} at the start, {} at the end; {} election(s), {} campaign(s)",
            self.group,
            node(self.leader_before),
            node(self.leader_after),
            self.elections,
            self.campaigns
        )
    }
}

/// Every node's stats of each of `groups` groups, group 0's first.
fn every_group_stats(cluster: &Cluster, groups: u32) -> Vec<Vec<Option<NodeStats>>> {
    (0..groups)
        .map(|g| cluster.all_group_stats(g, STATS_TIMEOUT))
        .collect()
}

/// Each group's view from stats of every node at the window's start (`before`, one list per
/// group, group 0 first) and at its end (`after`); `restarted` as for [`growth`].
fn group_observations(
    before: &[Vec<Option<NodeStats>>],
    after: &[Vec<Option<NodeStats>>],
    restarted: Option<u64>,
) -> Vec<GroupObservation> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .map(|(group, (b, a))| GroupObservation {
            group: group as u32,
            leader_before: leader_of(b),
            leader_after: leader_of(a),
            elections: growth(&counter(b, elections), &counter(a, elections), restarted),
            campaigns: growth(&counter(b, campaigns), &counter(a, campaigns), restarted),
        })
        .collect()
}

/// The timeline of one failover drill, in milliseconds after the fault.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverResult {
    /// "kill" or "isolate".
    pub action: String,
    /// The leader that was killed or isolated.
    pub victim: u64,
    /// When the fault hit, in milliseconds after the measured window started.
    pub fault_at_ms: f64,
    /// First time a surviving node was seen campaigning (pre-vote or vote) or in a newer term.
    pub detection_ms: Option<f64>,
    /// First time another node was seen leading in a newer term.
    pub new_leader_ms: Option<f64>,
    /// That node.
    pub new_leader: Option<u64>,
    /// First client acknowledgement after the fault.
    pub first_commit_ms: Option<f64>,
    /// The longest stretch clients saw without an acknowledgement, from the last one at or
    /// before the fault until the victim comes back (or the window ends): for a crash, the gap
    /// at the fault; for a graceful stop, the hand-over, which comes after the fault.
    pub unavailable_ms: Option<f64>,
    /// Elections started by the surviving nodes from the fault to the end of the run.
    pub elections: u64,
}

impl FailoverResult {
    /// One line for the console and the report.
    pub fn describe(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0} ms"));
        format!(
            "{} leader {} at {:.0} ms: detected after {}, new leader {} after {}, first commit after {}, clients saw no commit for {}, {} election(s)",
            self.action,
            self.victim,
            self.fault_at_ms,
            ms(self.detection_ms),
            self.new_leader.map_or("-".to_string(), |l| l.to_string()),
            ms(self.new_leader_ms),
            ms(self.first_commit_ms),
            ms(self.unavailable_ms),
            self.elections
        )
    }
}

/// What the conductor found during the load; completed with the recorder afterwards.
pub struct Conducted {
    observation: ClusterObservation,
    fault: Option<Instant>,
    /// When the victim came back (or the window ended): the end of the span whose longest
    /// outage the report gives.
    fault_until: Option<Instant>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn leader_of(stats: &[Option<NodeStats>]) -> Option<u64> {
    // Only a leader of the newest term anyone has seen counts: a deposed leader may still think
    // it leads for a moment, and a poll may miss a node that is busy.
    let newest = stats.iter().flatten().map(|s| s.term).max()?;
    stats
        .iter()
        .flatten()
        .find(|s| s.term == newest && s.role == Role::Leader)
        .map(|s| s.node_id)
}

/// Polls until a leader of the newest term is seen, or `deadline`.
fn find_leader(cluster: &Cluster, deadline: Instant) -> Option<(u64, Vec<Option<NodeStats>>)> {
    loop {
        let stats = cluster.all_stats(STATS_TIMEOUT);
        if let Some(leader) = leader_of(&stats) {
            return Some((leader, stats));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// One counter of every node (None for a node that did not answer).
fn counter(stats: &[Option<NodeStats>], of: fn(&NodeStats) -> u64) -> Vec<Option<u64>> {
    stats.iter().map(|s| s.as_ref().map(of)).collect()
}

fn elections(s: &NodeStats) -> u64 {
    s.elections
}

fn campaigns(s: &NodeStats) -> u64 {
    s.campaigns
}

/// The growth of a per-node counter from `before` to `after`, summed; a node that restarted (its
/// counter began again at zero) counts what it has now.
fn growth(before: &[Option<u64>], after: &[Option<u64>], restarted: Option<u64>) -> u64 {
    before
        .iter()
        .zip(after)
        .enumerate()
        .map(|(i, (b, a))| match (b, a) {
            (Some(b), Some(a)) if a >= b && restarted != Some(i as u64 + 1) => a - b,
            (_, Some(a)) => *a,
            _ => 0,
        })
        .sum()
}

/// Runs beside the load: schedules the topology's partitions relative to the measured window,
/// runs the failover drill if configured, and watches elections. `window_start` and
/// `window_end` are the load's measured window.
pub fn conduct(
    cluster: &mut Cluster,
    config: &BenchConfig,
    window_start: Instant,
    window_end: Instant,
) -> Result<Conducted, String> {
    // One epoch for every schedule: the start of the measured window, on the wall clock the
    // node processes share.
    let epoch_unix_ms = unix_ms()
        + window_start
            .saturating_duration_since(Instant::now())
            .as_millis() as u64;
    let mut partitions: Vec<Partition> = config
        .network
        .as_ref()
        .map(|n| n.partitions.clone())
        .unwrap_or_default();
    if !partitions.is_empty() {
        cluster.schedule_partitions(epoch_unix_ms, &partitions)?;
    }
    // The baseline is taken when the measured window opens (or just before an early fault):
    // the warm-up absorbs the start-up transient, in which nodes that started a little apart
    // may still be campaigning.
    // Derived as the nodes derive it (`rtt_ms` sets the tick).
    let tick_ms = super::node_timing(config).tick_ms;
    let lead = Duration::from_millis((5 * tick_ms).max(100));
    let observe_at = match &config.failover {
        Some(drill) => {
            let fault_at = window_start + Duration::from_millis(drill.at_ms);
            window_start.min(fault_at.checked_sub(lead).unwrap_or(fault_at))
        }
        None => window_start,
    };
    sleep_until(observe_at);
    let groups = config.node.groups.unwrap_or(1).max(1);
    // Every group's stats, group 0's first: the failover drill and the commit floor follow
    // group 0.
    let before_groups = every_group_stats(cluster, groups);
    let before = &before_groups[0];
    let mut observation = ClusterObservation {
        leader_before: leader_of(before),
        ..ClusterObservation::default()
    };
    if let Some(network) = &config.network {
        observation.emulated = Some(network.describe());
        observation.commit_floor_ms = observation
            .leader_before
            .map(|l| network.commit_floor_ms(l));
    }
    let mut fault = None;
    let mut fault_until = None;
    let mut failover = None;
    let mut killed = None;
    let mut restarted_victim = None;
    if let Some(drill) = &config.failover {
        let fault_at = window_start + Duration::from_millis(drill.at_ms);
        // Isolation is scheduled ahead (nodes reload their emulation within a tick), so find
        // the leader a little before the fault.
        sleep_until(fault_at.checked_sub(lead).unwrap_or(fault_at));
        let Some((victim, now_stats)) = find_leader(cluster, fault_at) else {
            return Err("failover drill: no leader to fail at the fault time".into());
        };
        let old_term = now_stats[(victim - 1) as usize]
            .as_ref()
            .map_or(0, |s| s.term);
        let survivors_base = counter(&now_stats, elections);
        match drill.action {
            FailoverAction::Isolate => {
                partitions.push(Partition {
                    start_ms: drill.at_ms,
                    duration_ms: drill.duration_ms.unwrap_or(u64::MAX / 4),
                    isolate: vec![victim],
                });
                cluster.schedule_partitions(epoch_unix_ms, &partitions)?;
                sleep_until(fault_at);
            }
            FailoverAction::Kill => {
                sleep_until(fault_at);
                cluster.kill_node(victim);
                killed = Some(victim);
            }
            FailoverAction::Stop => {
                // The node hands over while it stops; the timeline below is what the survivors
                // report meanwhile, and it is reaped after.
                sleep_until(fault_at);
                cluster.signal_stop(victim);
                killed = Some(victim);
            }
        }
        let hit = Instant::now().max(fault_at);
        fault = Some(hit);
        let (mut detection, mut new_leader) = (None, None);
        while Instant::now() < window_end && new_leader.is_none() {
            let stats = cluster.all_stats(STATS_TIMEOUT);
            let seen = Instant::now().saturating_duration_since(hit).as_secs_f64() * 1000.0;
            for s in stats.iter().flatten().filter(|s| s.node_id != victim) {
                let campaigning =
                    matches!(s.role, Role::PreCandidate | Role::Candidate) || s.term > old_term;
                if campaigning && detection.is_none() {
                    detection = Some(seen);
                }
                if s.role == Role::Leader && s.term > old_term && new_leader.is_none() {
                    new_leader = Some((s.node_id, seen));
                    detection.get_or_insert(seen);
                }
            }
            std::thread::sleep(POLL_EVERY);
        }
        if drill.action == FailoverAction::Stop && !cluster.reap(victim, STOP_GRACE) {
            eprintln!(
                "WARNING: failover drill: node {victim} did not exit within {STOP_GRACE:?} of \
                 SIGTERM and was killed"
            );
        }
        if let (FailoverAction::Kill | FailoverAction::Stop, Some(after)) =
            (drill.action, drill.duration_ms)
        {
            sleep_until(hit + Duration::from_millis(after));
            fault_until = Some(Instant::now());
            cluster.start_node(victim)?;
            restarted_victim = Some(victim);
        }
        failover = Some((
            drill.action,
            victim,
            hit,
            detection,
            new_leader,
            survivors_base,
        ));
    }
    sleep_until(window_end);
    let fault_until = fault.map(|_| fault_until.unwrap_or(window_end));
    let after_groups = every_group_stats(cluster, groups);
    let after = &after_groups[0];
    observation.leader_after = leader_of(after);
    observation.emulated_drops = counter(after, |s| s.emulated_drops);
    let finals = counter(after, elections);
    let restarted = restarted_victim.or(killed);
    let per_group = group_observations(&before_groups, &after_groups, restarted);
    observation.elections = per_group.iter().map(|g| g.elections).sum();
    observation.campaigns = per_group.iter().map(|g| g.campaigns).sum();
    if groups > 1 {
        observation.groups = per_group;
    }
    if let Some((action, victim, hit, detection, new_leader, base)) = failover {
        let elections = base
            .iter()
            .zip(&finals)
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != victim)
            .map(|(_, (b, f))| match (b, f) {
                (Some(b), Some(f)) => f.saturating_sub(*b),
                _ => 0,
            })
            .sum();
        observation.failover = Some(FailoverResult {
            action: match action {
                FailoverAction::Kill => "kill".into(),
                FailoverAction::Isolate => "isolate".into(),
                FailoverAction::Stop => "stop".into(),
            },
            victim,
            fault_at_ms: hit.saturating_duration_since(window_start).as_secs_f64() * 1000.0,
            detection_ms: detection,
            new_leader_ms: new_leader.map(|(_, ms)| ms),
            new_leader: new_leader.map(|(id, _)| id),
            first_commit_ms: None,
            unavailable_ms: None,
            elections,
        });
    }
    Ok(Conducted {
        observation,
        fault,
        fault_until,
    })
}

impl Conducted {
    /// Completes the failover timeline with what the clients saw.
    pub fn finish(mut self, recorder: &Recorder) -> ClusterObservation {
        if let (Some(fault), Some(f)) = (self.fault, self.observation.failover.as_mut()) {
            // Re-anchored on the recorder's own window start (the conductor only estimated it).
            let fault_ms = fault
                .saturating_duration_since(recorder.window_start())
                .as_secs_f64()
                * 1000.0;
            f.fault_at_ms = fault_ms;
            if let Some((_, first_after)) = recorder.outage_around(fault) {
                f.first_commit_ms = Some((first_after as f64 - fault_ms).max(0.0));
            }
            let until = self.fault_until.unwrap_or(fault);
            f.unavailable_ms = recorder.longest_outage(fault, until).map(|ms| ms as f64);
        }
        self.observation
    }
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(node_id: u64, group: u32, role: Role, term: u64, elections: u64) -> NodeStats {
        NodeStats {
            node_id,
            role,
            term,
            leader_id: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            elections,
            proposals: 0,
            snapshots: 0,
            invalid_peer_frames: 0,
            invalid_client_frames: 0,
            refused_handshakes: 0,
            dropped_peer_messages: 0,
            bytes_in: 0,
            bytes_out: 0,
            disk_syncs: 0,
            disk_jobs: 0,
            campaigns: elections,
            emulated_drops: 0,
            votes_withheld: 0,
            recovering_to: None,
            transfer_elections: 0,
            group,
            groups: 2,
            awaiting_leadership: 0,
        }
    }

    #[test]
    fn each_group_is_observed_on_its_own() {
        use Role::{Follower, Leader};
        let before = vec![
            vec![
                Some(stats(1, 0, Leader, 2, 1)),
                Some(stats(2, 0, Follower, 2, 0)),
                Some(stats(3, 0, Follower, 2, 0)),
            ],
            vec![
                Some(stats(1, 1, Follower, 3, 0)),
                Some(stats(2, 1, Leader, 3, 2)),
                Some(stats(3, 1, Follower, 3, 0)),
            ],
        ];
        // Group 1 lost its leader in the window: node 3 won an election in term 4; node 2
        // did not answer at the end.
        let after = vec![
            vec![
                Some(stats(1, 0, Leader, 2, 1)),
                Some(stats(2, 0, Follower, 2, 0)),
                Some(stats(3, 0, Follower, 2, 0)),
            ],
            vec![
                Some(stats(1, 1, Follower, 4, 0)),
                None,
                Some(stats(3, 1, Leader, 4, 1)),
            ],
        ];
        let groups = group_observations(&before, &after, None);
        assert_eq!(
            groups,
            vec![
                GroupObservation {
                    group: 0,
                    leader_before: Some(1),
                    leader_after: Some(1),
                    elections: 0,
                    campaigns: 0,
                },
                GroupObservation {
                    group: 1,
                    leader_before: Some(2),
                    leader_after: Some(3),
                    elections: 1,
                    campaigns: 1,
                },
            ]
        );
        assert_eq!(
            groups[1].describe(),
            "group 1: leader 2 at the start, 3 at the end; 1 election(s), 1 campaign(s)"
        );
    }
}
