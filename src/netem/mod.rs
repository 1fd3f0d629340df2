//! Network emulation: the model of a wide-area link that ringraft's own peer transport applies on
//! the sender side (this kernel has no netem). Pure: no clock, no socket; time comes in as
//! microseconds, randomness from a seeded [`SplitMix64`], so every figure can be replayed.
//!
//! Two layers:
//! * [`Topology`] is what a bench config says: regions, an RTT matrix, which node sits where,
//!   jitter, loss, bandwidth. It derives each node's [`Emulation`] and the figures a report needs
//!   (the RTT between two nodes, the commit-latency floor of a leader).
//! * [`Emulation`] is what one node applies: a [`LinkSpec`] per peer and scheduled [`Partition`]s;
//!   a [`Shaper`] per link turns "a frame of n bytes is sent now" into "it arrives then" or "lost".
//!
//! What the emulation is and is not: delay, jitter, bandwidth and loss act on whole Raft messages
//! inside one TCP connection. Loss drops a message (Raft retransmits), where real packet loss
//! would stall the TCP stream for a retransmission timeout instead; messages on one link never
//! overtake each other, as on a real TCP connection. Client links are not emulated.

use serde::{Deserialize, Serialize};

use crate::core::{NodeId, SplitMix64};

/// Messages and bytes an emulated link holds in flight before it drops new ones (a router's
/// tail drop), whatever the bandwidth: the memory bound of the emulation.
pub const LINK_BUFFER_BYTES_MAX: usize = 64 << 20;

/// How each message's extra delay is drawn.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JitterDist {
    /// Uniform on `[-jitter, +jitter]` around the delay (netem's default shape).
    #[default]
    Uniform,
    /// Normal with standard deviation `jitter`, cut at 4 standard deviations.
    Normal,
    /// Only ever late: Pareto with minimum 0 and scale `jitter` (shape 2.5, mean about 0.67 x
    /// jitter), the heavy tail of congested paths.
    Pareto,
}

impl JitterDist {
    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            JitterDist::Uniform => "uniform",
            JitterDist::Normal => "normal",
            JitterDist::Pareto => "pareto",
        }
    }
}

/// One direction of one link: from this node to `to`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The receiving peer.
    pub to: NodeId,
    /// Base one-way delay.
    pub delay_ms: f64,
    /// Spread of the extra delay (see `jitter`).
    #[serde(default)]
    pub jitter_ms: f64,
    /// Distribution of the extra delay.
    #[serde(default)]
    pub jitter: JitterDist,
    /// Probability that a message is lost.
    #[serde(default)]
    pub loss: f64,
    /// Bandwidth cap in megabits per second (none: unlimited).
    #[serde(default)]
    pub bandwidth_mbit: Option<f64>,
}

/// A scheduled partition: for `duration_ms` from `start_ms` (after the emulation's epoch), the
/// nodes in `isolate` hear nothing from the others and the others nothing from them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start, in milliseconds after the epoch.
    pub start_ms: u64,
    /// Length in milliseconds.
    pub duration_ms: u64,
    /// The nodes cut off from the rest (together on their side).
    pub isolate: Vec<NodeId>,
}

impl Partition {
    /// Whether this partition separates `a` and `b` at `now_ms` after the epoch.
    pub fn separates(&self, a: NodeId, b: NodeId, now_ms: u64) -> bool {
        let active = now_ms >= self.start_ms && now_ms < self.start_ms + self.duration_ms;
        active && (self.isolate.contains(&a) != self.isolate.contains(&b))
    }
}

/// What one node applies to the messages it sends (the `--emulation` file of `ringraft node`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Emulation {
    /// Wall-clock origin of the partition schedule, in milliseconds since the Unix epoch (all
    /// processes on one machine share the clock, so they agree on when a partition starts).
    #[serde(default)]
    pub epoch_unix_ms: u64,
    /// Seed of the jitter and loss dice (each link derives its own stream from it).
    #[serde(default)]
    pub seed: u64,
    /// Outgoing links; a peer without one is reached without delay.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// Scheduled partitions.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

impl Emulation {
    /// Reads and checks an emulation file.
    pub fn from_file(path: &std::path::Path) -> Result<Emulation, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read emulation file {}: {e}", path.display()))?;
        let emulation: Emulation =
            toml::from_str(&text).map_err(|e| format!("emulation file {}: {e}", path.display()))?;
        emulation
            .validate()
            .map_err(|e| format!("emulation file {}: {e}", path.display()))?;
        Ok(emulation)
    }

    /// Checks every link and partition; the error names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        for link in &self.links {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(link.delay_ms) || link.delay_ms > 60_000.0 {
                return Err(format!(
                    "link to {}: delay_ms must be in 0..=60000",
                    link.to
                ));
            }
            if !ok(link.jitter_ms) || link.jitter_ms > 60_000.0 {
                return Err(format!(
                    "link to {}: jitter_ms must be in 0..=60000",
                    link.to
                ));
            }
            if !(0.0..=1.0).contains(&link.loss) {
                return Err(format!("link to {}: loss must be in 0..=1", link.to));
            }
            if let Some(bw) = link.bandwidth_mbit {
                if !(bw.is_finite() && bw > 0.0) {
                    return Err(format!(
                        "link to {}: bandwidth_mbit must be positive",
                        link.to
                    ));
                }
            }
        }
        let mut tos: Vec<NodeId> = self.links.iter().map(|l| l.to).collect();
        tos.sort_unstable();
        if tos.windows(2).any(|w| w[0] == w[1]) {
            return Err("two links to the same peer".into());
        }
        for p in &self.partitions {
            if p.isolate.is_empty() {
                return Err(format!("partition at {} ms isolates no node", p.start_ms));
            }
        }
        Ok(())
    }

    /// The link towards `to`, if emulated.
    pub fn link(&self, to: NodeId) -> Option<&LinkSpec> {
        self.links.iter().find(|l| l.to == to)
    }

    /// Whether a scheduled partition separates `me` from `peer` at wall time `now_unix_ms`.
    pub fn partitioned(&self, me: NodeId, peer: NodeId, now_unix_ms: u64) -> bool {
        let Some(now_ms) = now_unix_ms.checked_sub(self.epoch_unix_ms) else {
            return false;
        };
        self.partitions
            .iter()
            .any(|p| p.separates(me, peer, now_ms))
    }

    /// The round trip to `to` this emulation implies, assuming the peer's link back is the same
    /// (a bench topology's RTT matrix is symmetric): twice the base delay.
    pub fn rtt_ms(&self, to: NodeId) -> Option<f64> {
        self.link(to).map(|l| 2.0 * l.delay_ms)
    }

    /// The largest round trip to any peer.
    pub fn rtt_max_ms(&self) -> Option<f64> {
        self.links.iter().map(|l| 2.0 * l.delay_ms).reduce(f64::max)
    }
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It arrives at this time (microseconds, on the caller's clock).
    Deliver {
        /// Arrival time.
        at_us: u64,
    },
    /// The dice lost it.
    Lost,
}

/// The state of one emulated link direction: its dice, when its wire is free again (bandwidth),
/// and when its last message arrives (so nothing overtakes).
#[derive(Clone, Debug)]
pub struct Shaper {
    rng: SplitMix64,
    wire_free_us: u64,
    last_arrival_us: u64,
}

impl Shaper {
    /// A link whose dice start from `seed`.
    pub fn new(seed: u64) -> Shaper {
        Shaper {
            rng: SplitMix64::new(seed),
            wire_free_us: 0,
            last_arrival_us: 0,
        }
    }

    /// The fate of a message of `bytes` bytes sent at `now_us` over `spec`: it waits for the wire
    /// (bandwidth), crosses it (delay plus jitter), and arrives no earlier than the message
    /// before it.
    pub fn admit(&mut self, spec: &LinkSpec, now_us: u64, bytes: usize) -> Verdict {
        if spec.loss > 0.0 && self.rng.chance(spec.loss) {
            return Verdict::Lost;
        }
        let mut departed_us = now_us;
        if let Some(mbit) = spec.bandwidth_mbit {
            // bits / (Mbit/s) = microseconds.
            let serialization_us = (bytes as f64 * 8.0 / mbit).ceil() as u64;
            departed_us = self.wire_free_us.max(now_us) + serialization_us;
            self.wire_free_us = departed_us;
        }
        let delay_ms = (spec.delay_ms + self.jitter_ms(spec)).max(0.0);
        let arrival_us = (departed_us + (delay_ms * 1000.0) as u64).max(self.last_arrival_us);
        self.last_arrival_us = arrival_us;
        Verdict::Deliver { at_us: arrival_us }
    }

    fn jitter_ms(&mut self, spec: &LinkSpec) -> f64 {
        let j = spec.jitter_ms;
        if j == 0.0 {
            return 0.0;
        }
        match spec.jitter {
            JitterDist::Uniform => (2.0 * self.unit() - 1.0) * j,
            JitterDist::Normal => {
                // Box-Muller; one of the pair is enough here.
                let (u1, u2) = (self.unit().max(1e-12), self.unit());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                z.clamp(-4.0, 4.0) * j
            }
            JitterDist::Pareto => {
                // Lomax (Pareto II) with shape 2.5 and scale j: starts at 0, heavy tail.
                let u = self.unit().max(1e-12);
                (j * (u.powf(-1.0 / 2.5) - 1.0)).min(60_000.0)
            }
        }
    }

    fn unit(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64) / ((1u64 << 53) as f64)
    }
}

/// A bench config's `[network]`: regions, their round-trip times, and where each node sits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Region names.
    pub regions: Vec<String>,
    /// Round-trip times between regions in milliseconds, `rtt_ms[a][b]`; symmetric. The diagonal
    /// is the RTT between two nodes in the same region.
    pub rtt_ms: Vec<Vec<f64>>,
    /// The region of node 1, node 2, ... (one entry per node).
    pub placement: Vec<String>,
    /// Jitter spread on every inter-node link.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Jitter distribution.
    #[serde(default)]
    pub jitter: JitterDist,
    /// Message loss probability on every inter-node link.
    #[serde(default)]
    pub loss: f64,
    /// Bandwidth cap of every inter-node link, megabits per second.
    #[serde(default)]
    pub bandwidth_mbit: Option<f64>,
    /// Partitions, in milliseconds after the measured window starts.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

impl Topology {
    /// Checks the matrix and placement against a cluster of `nodes`.
    pub fn validate(&self, nodes: usize) -> Result<(), String> {
        let r = self.regions.len();
        if r == 0 {
            return Err("network.regions is empty".into());
        }
        if self.rtt_ms.len() != r || self.rtt_ms.iter().any(|row| row.len() != r) {
            return Err(format!(
                "network.rtt_ms must be a {r} x {r} matrix (one row and column per region)"
            ));
        }
        for a in 0..r {
            for b in 0..r {
                let v = self.rtt_ms[a][b];
                if !(v.is_finite() && (0.0..=120_000.0).contains(&v)) {
                    return Err(format!(
                        "network.rtt_ms[{a}][{b}] = {v} is not in 0..=120000"
                    ));
                }
                if (v - self.rtt_ms[b][a]).abs() > 1e-9 {
                    return Err(format!(
                        "network.rtt_ms is not symmetric: [{a}][{b}] = {v}, [{b}][{a}] = {}",
                        self.rtt_ms[b][a]
                    ));
                }
            }
        }
        if self.placement.len() != nodes {
            return Err(format!(
                "network.placement names {} regions for {nodes} nodes",
                self.placement.len()
            ));
        }
        for (i, region) in self.placement.iter().enumerate() {
            if !self.regions.contains(region) {
                return Err(format!(
                    "network.placement: node {} sits in unknown region `{region}`",
                    i + 1
                ));
            }
        }
        for p in &self.partitions {
            if p.isolate.iter().any(|&id| id == 0 || id as usize > nodes) {
                return Err(format!(
                    "network.partitions: isolate {:?} names a node outside 1..={nodes}",
                    p.isolate
                ));
            }
        }
        // The per-link checks (jitter, loss, bandwidth) are the emulation's.
        self.emulation_for(1, 0, 0).validate()
    }

    fn region_of(&self, node: NodeId) -> usize {
        let name = &self.placement[(node - 1) as usize];
        self.regions
            .iter()
            .position(|r| r == name)
            .expect("validated placement")
    }

    /// Round trip between nodes `a` and `b` (without jitter).
    pub fn rtt_between(&self, a: NodeId, b: NodeId) -> f64 {
        self.rtt_ms[self.region_of(a)][self.region_of(b)]
    }

    /// The largest round trip between any two nodes.
    pub fn rtt_max_ms(&self) -> f64 {
        let n = self.placement.len() as NodeId;
        (1..=n)
            .flat_map(|a| (1..=n).filter(move |&b| b != a).map(move |b| (a, b)))
            .map(|(a, b)| self.rtt_between(a, b))
            .fold(0.0, f64::max)
    }

    /// The network part of a write's latency when `leader` leads and the client sits next to it:
    /// the leader needs acknowledgements from a majority minus itself, so it waits for the
    /// `(majority - 1)`-th fastest follower round trip.
    pub fn commit_floor_ms(&self, leader: NodeId) -> f64 {
        let n = self.placement.len();
        let mut rtts: Vec<f64> = (1..=n as NodeId)
            .filter(|&p| p != leader)
            .map(|p| self.rtt_between(leader, p))
            .collect();
        rtts.sort_by(f64::total_cmp);
        let needed = n / 2; // majority - 1 = floor(n / 2)
        if needed == 0 {
            0.0
        } else {
            rtts[needed - 1]
        }
    }

    /// What node `node` applies: half the RTT to each peer as one-way delay, the jitter, loss and
    /// bandwidth of the topology, and its partitions relative to `epoch_unix_ms`.
    pub fn emulation_for(&self, node: NodeId, epoch_unix_ms: u64, seed: u64) -> Emulation {
        let n = self.placement.len() as NodeId;
        let links = (1..=n)
            .filter(|&p| p != node)
            .map(|p| LinkSpec {
                to: p,
                delay_ms: self.rtt_between(node, p) / 2.0,
                jitter_ms: self.jitter_ms,
                jitter: self.jitter,
                loss: self.loss,
                bandwidth_mbit: self.bandwidth_mbit,
            })
            .collect();
        Emulation {
            epoch_unix_ms,
            seed: seed ^ node.wrapping_mul(0x9E37_79B9),
            links,
            partitions: self.partitions.clone(),
        }
    }

    /// One line for reports, stating plainly that the network is emulated.
    pub fn describe(&self) -> String {
        let mut placement = String::new();
        for (i, region) in self.placement.iter().enumerate() {
            if i > 0 {
                placement.push_str(", ");
            }
            placement.push_str(&format!("node {} in {region}", i + 1));
        }
        let mut pairs = Vec::new();
        for a in 0..self.regions.len() {
            for b in a..self.regions.len() {
                pairs.push(format!(
                    "{}-{} {} ms",
                    self.regions[a], self.regions[b], self.rtt_ms[a][b]
                ));
            }
        }
        format!(
            "EMULATED network (ringraft's transport delays its own messages on loopback; client links not emulated): {placement}; RTT {}; jitter {} ms {}; loss {}; bandwidth {}",
            pairs.join(", "),
            self.jitter_ms,
            self.jitter.name(),
            self.loss,
            self.bandwidth_mbit
                .map_or("unlimited".to_string(), |b| format!("{b} Mbit/s"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(delay_ms: f64) -> LinkSpec {
        LinkSpec {
            to: 2,
            delay_ms,
            jitter_ms: 0.0,
            jitter: JitterDist::Uniform,
            loss: 0.0,
            bandwidth_mbit: None,
        }
    }

    #[test]
    fn delay_without_jitter_is_exact() {
        let mut s = Shaper::new(1);
        assert_eq!(
            s.admit(&link(30.0), 1_000, 100),
            Verdict::Deliver { at_us: 31_000 }
        );
    }

    #[test]
    fn jittered_messages_never_overtake_and_stay_in_range() {
        for dist in [JitterDist::Uniform, JitterDist::Normal, JitterDist::Pareto] {
            let spec = LinkSpec {
                jitter_ms: 10.0,
                jitter: dist,
                ..link(50.0)
            };
            let mut s = Shaper::new(7);
            let mut last = 0;
            let mut spread = (u64::MAX, 0u64);
            for i in 0..10_000u64 {
                let now = i * 100;
                let Verdict::Deliver { at_us } = s.admit(&spec, now, 64) else {
                    panic!("no loss configured");
                };
                assert!(
                    at_us >= last,
                    "{dist:?}: message {i} overtook its predecessor"
                );
                last = at_us;
                let delay = at_us - now;
                spread = (spread.0.min(delay), spread.1.max(delay));
            }
            assert!(spread.0 < spread.1, "{dist:?}: jitter had no effect");
            if dist == JitterDist::Uniform {
                // Ordering can only push a message later, never earlier than delay - jitter.
                assert!(spread.0 >= 40_000, "{dist:?}: {spread:?}");
            }
        }
    }

    #[test]
    fn bandwidth_serializes_back_to_back_messages() {
        let spec = LinkSpec {
            bandwidth_mbit: Some(8.0), // 1 byte per microsecond
            ..link(0.0)
        };
        let mut s = Shaper::new(1);
        assert_eq!(s.admit(&spec, 0, 1000), Verdict::Deliver { at_us: 1000 });
        assert_eq!(s.admit(&spec, 0, 1000), Verdict::Deliver { at_us: 2000 });
        // After an idle gap the wire is free again.
        assert_eq!(
            s.admit(&spec, 10_000, 500),
            Verdict::Deliver { at_us: 10_500 }
        );
    }

    #[test]
    fn loss_rate_matches_the_configured_probability() {
        let spec = LinkSpec {
            loss: 0.1,
            ..link(1.0)
        };
        let mut s = Shaper::new(42);
        let lost = (0..100_000)
            .filter(|_| s.admit(&spec, 0, 1) == Verdict::Lost)
            .count();
        assert!((9_000..11_000).contains(&lost), "lost {lost} of 100000");
    }

    #[test]
    fn partitions_separate_the_isolated_side_only_while_active() {
        let e = Emulation {
            epoch_unix_ms: 1_000,
            partitions: vec![Partition {
                start_ms: 100,
                duration_ms: 50,
                isolate: vec![1],
            }],
            ..Emulation::default()
        };
        assert!(!e.partitioned(1, 2, 1_099));
        assert!(e.partitioned(1, 2, 1_100));
        assert!(e.partitioned(2, 1, 1_149));
        assert!(!e.partitioned(2, 3, 1_120));
        assert!(!e.partitioned(1, 2, 1_150));
        assert!(!e.partitioned(1, 2, 500), "before the epoch nothing is cut");
    }

    fn three_regions() -> Topology {
        Topology {
            regions: vec!["a".into(), "b".into(), "c".into()],
            rtt_ms: vec![
                vec![1.0, 60.0, 80.0],
                vec![60.0, 1.0, 140.0],
                vec![80.0, 140.0, 1.0],
            ],
            placement: vec!["a".into(), "b".into(), "c".into()],
            jitter_ms: 0.0,
            jitter: JitterDist::Uniform,
            loss: 0.0,
            bandwidth_mbit: None,
            partitions: vec![],
        }
    }

    #[test]
    fn commit_floor_is_the_majority_th_fastest_round_trip() {
        let t = three_regions();
        t.validate(3).unwrap();
        assert_eq!(t.commit_floor_ms(1), 60.0);
        assert_eq!(t.commit_floor_ms(2), 60.0);
        assert_eq!(t.commit_floor_ms(3), 80.0);
        assert_eq!(t.rtt_max_ms(), 140.0);
        let e = t.emulation_for(3, 0, 9);
        assert_eq!(e.link(1).unwrap().delay_ms, 40.0);
        assert_eq!(e.link(2).unwrap().delay_ms, 70.0);
        assert!(e.link(3).is_none());
    }

    #[test]
    fn bad_topologies_are_named() {
        let mut t = three_regions();
        t.rtt_ms[0][1] = 61.0;
        assert!(t.validate(3).unwrap_err().contains("not symmetric"));
        let mut t = three_regions();
        t.placement[2] = "mars".into();
        assert!(t.validate(3).unwrap_err().contains("unknown region `mars`"));
        let t = three_regions();
        assert!(t.validate(5).unwrap_err().contains("3 regions for 5 nodes"));
        let mut t = three_regions();
        t.loss = 1.5;
        assert!(t.validate(3).unwrap_err().contains("loss"));
    }
}
