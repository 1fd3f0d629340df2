//! The simulated network: per-message delay with jitter (which reorders), loss, duplication,
//! partitions (symmetric, one-way, leader isolated) and a bound on messages in flight.
//! Randomness comes from the simulation's single PRNG, passed in.

use std::collections::BTreeSet;

use super::clock::Micros;
use crate::core::{NodeId, SplitMix64};

/// Most messages in flight across the whole simulated network; sends above it are dropped, as
/// a full socket buffer would.
pub const IN_FLIGHT_MESSAGES_MAX: usize = 20_000;

/// How the network misbehaves.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Smallest one-way delay.
    pub delay_min_us: Micros,
    /// Largest one-way delay; the spread is the jitter, which reorders messages.
    pub delay_max_us: Micros,
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_probability: f64,
}

/// Kinds of partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionKind {
    /// The nodes split into two groups that cannot talk either way.
    Symmetric,
    /// One node's messages in one direction are lost (it hears but is not heard, or the reverse).
    Asymmetric,
    /// The leader is cut off from everyone.
    LeaderIsolated,
}

/// What happens to one sent message.
pub enum Fate {
    /// Lost (counted by the caller).
    Dropped,
    /// Delivered at these times (two for a duplicate).
    Deliver(Micros, Option<Micros>),
}

/// The network's state.
pub struct Network {
    /// Its behaviour.
    pub config: NetConfig,
    /// Messages sent and not yet delivered or dropped.
    pub in_flight: usize,
    /// Directed links that lose every message, as (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// A healthy network.
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            in_flight: 0,
            blocked: BTreeSet::new(),
        }
    }

    /// Decides what happens to a message sent now.
    pub fn send(&mut self, rng: &mut SplitMix64, now_us: Micros) -> Fate {
        if self.in_flight >= IN_FLIGHT_MESSAGES_MAX || rng.chance(self.config.drop_probability) {
            return Fate::Dropped;
        }
        let spread = self.config.delay_max_us - self.config.delay_min_us + 1;
        let first = now_us + self.config.delay_min_us + rng.below(spread);
        self.in_flight += 1;
        let second = if rng.chance(self.config.duplicate_probability) {
            self.in_flight += 1;
            Some(now_us + self.config.delay_min_us + rng.below(spread))
        } else {
            None
        };
        Fate::Deliver(first, second)
    }

    /// A message leaves the network; returns whether the link lets it arrive now.
    pub fn arrive(&mut self, from: NodeId, to: NodeId) -> bool {
        self.in_flight -= 1;
        !self.blocked.contains(&(from, to))
    }

    /// True when some partition is in effect.
    pub fn partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    /// Cuts the links from `from` to each of `to` (one direction only).
    pub fn block_one_way(&mut self, from: NodeId, to: &[NodeId]) {
        for &y in to {
            self.blocked.insert((from, y));
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The blocked links, for traces.
    pub fn describe(&self) -> String {
        let links: Vec<String> = self
            .blocked
            .iter()
            .map(|(a, b)| format!("{a}->{b}"))
            .collect();
        links.join(" ")
    }
}
