//! Fault injection during the faulty phase (crashes, partitions, leadership transfers), and the
//! liveness phase that follows it: every fault heals, every node restarts, and within a bound a
//! leader must be elected and every client answered.

use super::{Event, Micros, Phase, Simulation, Violation, TICK_US};
use bytes::Bytes;

use crate::core::{ConfChange, NodeId, Role};

impl Simulation {
    /// The running node that leads `group` in the highest term, if any.
    pub(super) fn current_leader(&self, group: usize) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| self.raft(i, group).map(|r| (i, r)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(i, r)| (r.hard_state().current_term, *i))
            .map(|(i, _)| i)
    }

    /// A group picked at random; with one group, group 0 without drawing from the PRNG, so
    /// that one group's runs are what they were before groups existed.
    pub(super) fn random_group(&mut self) -> usize {
        if self.config.groups == 1 {
            0
        } else {
            self.rng.below(self.config.groups as u64) as usize
        }
    }

    /// Whether `node` may suffer a disk fault that loses acknowledged entries now. Raft with
    /// the abstain rule survives such faults on a minority at once (a majority of intact disks
    /// holds every committed entry); on a majority nothing can give the entries back, so the
    /// simulator never goes there. A node counts as faulty from the fault until the log of
    /// every group it hosts is back past what it had acknowledged and has stopped abstaining:
    /// the node's one disk is what fails, so the bound is on nodes, whichever group lost.
    pub(super) fn disk_fault_allowed(&self, node: usize) -> bool {
        !self.disk_faulty(node) && self.disk_faulty_count() < self.disk_faults_max()
    }

    /// Most nodes with a disk fault at once: a minority of the cluster, or with membership
    /// changes a minority of the smallest configuration it may have.
    pub(super) fn disk_faults_max(&self) -> usize {
        let voters_min = if self.config.membership_changes {
            super::MEMBERSHIP_VOTERS_MIN.min(self.nodes.len())
        } else {
            self.nodes.len()
        };
        (voters_min - 1) / 2
    }

    /// Nodes with a disk fault not yet repaired.
    pub(super) fn disk_faulty_count(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.disk_faulty(i))
            .count()
    }

    fn disk_faulty(&self, i: usize) -> bool {
        let slot = &self.nodes[i];
        let damaged = slot.replicas.iter().enumerate().any(|(group, replica)| {
            replica.lost_upto.is_some_and(|upto| match &replica.raft {
                None => slot.disk.store(group).lost_acknowledged(),
                Some(raft) => raft.recovering_to().is_some() || raft.log().last_index() < upto,
            })
        });
        damaged || slot.disk.has_lost_write()
    }

    /// Records how many nodes are disk-faulty right after a new fault.
    pub(super) fn note_disk_fault(&mut self) {
        let faulty = self.disk_faulty_count() as u64;
        self.report.disk_faulty_nodes_max = self.report.disk_faulty_nodes_max.max(faulty);
    }

    fn random_downtime_us(&mut self) -> Micros {
        10 * TICK_US + self.rng.below(290 * TICK_US)
    }

    /// Rolls the dice for this step's faults.
    pub(super) fn inject_faults(&mut self) {
        if self.phase != Phase::Faulty {
            return;
        }
        let faults = self.config.faults.clone();
        let n = self.nodes.len();
        let down = self.nodes.iter().filter(|s| !s.up).count();
        let down_max = (n - 1) / 2;
        if down < down_max && self.rng.chance(faults.crash_probability) {
            let up: Vec<usize> = (0..n).filter(|&i| self.nodes[i].up).collect();
            // Half the time prefer a node with a write in flight, so torn writes happen often.
            let writing: Vec<usize> = up
                .iter()
                .copied()
                .filter(|&i| self.nodes[i].disk.pending_len() > 0)
                .collect();
            let pool = if !writing.is_empty() && self.rng.chance(0.5) {
                writing
            } else {
                up
            };
            let victim = pool[self.rng.below(pool.len() as u64) as usize];
            let downtime = self.random_downtime_us();
            self.crash_node(victim, downtime);
        } else if down < down_max && self.rng.chance(faults.crash_leader_probability) {
            // The node leading some group: with several groups it may lead others too.
            let group = self.random_group();
            if let Some(leader) = self.current_leader(group) {
                let downtime = self.random_downtime_us();
                self.crash_node(leader, downtime);
            }
        }
        if !self.net.partitioned() && self.rng.chance(faults.partition_probability) {
            self.start_partition();
        }
        if self.rng.chance(faults.transfer_probability) {
            let group = self.random_group();
            if let Some(leader) = self.current_leader(group) {
                let others: Vec<NodeId> = self
                    .voters()
                    .into_iter()
                    .filter(|&v| v != self.nodes[leader].id)
                    .collect();
                if !others.is_empty() {
                    let to = others[self.rng.below(others.len() as u64) as usize];
                    self.report.transfers += 1;
                    let from = self.nodes[leader].id;
                    let tag = self.group_tag(group);
                    self.trace_line(format_args!("{tag}transfer leadership n{from} -> n{to}"));
                    self.replica_mut(leader, group)
                        .raft
                        .as_mut()
                        .expect("running")
                        .transfer_leader(to);
                    self.drain(leader, group);
                }
            }
        }
        if self.config.membership_changes && self.rng.chance(super::MEMBERSHIP_CHANGE_PROBABILITY) {
            let group = self.random_group();
            self.change_membership(group);
        }
    }

    /// Asks the leader for a random membership change that keeps at least
    /// `MEMBERSHIP_VOTERS_MIN` voters: add a node that is not a member as a learner, promote a
    /// learner, or remove a learner or a voter (the leader included). Each group changes its
    /// membership on its own.
    fn change_membership(&mut self, group: usize) {
        let Some(leader) = self.current_leader(group) else {
            return;
        };
        let raft = self.raft(leader, group).expect("running");
        let m = raft.membership().clone();
        let mut changes = Vec::new();
        for id in self.voters() {
            if !m.is_member(id) {
                changes.push(ConfChange::AddLearner {
                    id,
                    context: Bytes::from(format!("n{id}")),
                });
            }
        }
        for &id in &m.learners {
            changes.push(ConfChange::Promote(id));
            changes.push(ConfChange::Remove(id));
        }
        if m.voters.len() > super::MEMBERSHIP_VOTERS_MIN {
            changes.extend(m.voters.iter().map(|&id| ConfChange::Remove(id)));
        }
        if changes.is_empty() {
            return;
        }
        let change = changes[self.rng.below(changes.len() as u64) as usize].clone();
        let from = self.nodes[leader].id;
        let result = self
            .replica_mut(leader, group)
            .raft
            .as_mut()
            .expect("running")
            .propose_conf_change(change.clone());
        let tag = self.group_tag(group);
        let shown = match &change {
            ConfChange::AddLearner { id, .. } => format!("add learner n{id}"),
            ConfChange::Promote(id) => format!("promote n{id}"),
            ConfChange::Remove(id) => format!("remove n{id}"),
        };
        match result {
            Ok(index) => {
                self.report.membership_changes += 1;
                match change {
                    ConfChange::Promote(_) => self.report.promotions += 1,
                    ConfChange::Remove(id) if m.is_voter(id) => self.report.voter_removals += 1,
                    _ => {}
                }
                self.trace_line(format_args!("n{from} {tag}membership: {shown} at {index}"));
            }
            Err(error) => {
                self.trace_line(format_args!(
                    "n{from} {tag}membership: {shown} refused: {error}"
                ));
            }
        }
        self.drain(leader, group);
    }

    fn start_partition(&mut self) {
        let mut ids = self.voters();
        let n = ids.len();
        if n < 2 {
            return; // Nothing to cut.
        }
        let kind = self.rng.below(3);
        match kind {
            0 => {
                // Fisher-Yates with our PRNG, then cut at a random point.
                for i in (1..n).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    ids.swap(i, j);
                }
                let cut = 1 + self.rng.below(n as u64 - 1) as usize;
                self.net.split(&ids[..cut], &ids[cut..]);
            }
            1 => {
                let x = ids[self.rng.below(n as u64) as usize];
                let others: Vec<NodeId> = ids.iter().copied().filter(|&y| y != x).collect();
                if self.rng.chance(0.5) {
                    self.net.block_one_way(x, &others);
                } else {
                    for y in others {
                        self.net.block_one_way(y, &[x]);
                    }
                }
            }
            _ => {
                let group = self.random_group();
                let Some(leader) = self.current_leader(group) else {
                    return;
                };
                let x = self.nodes[leader].id;
                let others: Vec<NodeId> = ids.iter().copied().filter(|&y| y != x).collect();
                self.net.split(&[x], &others);
            }
        }
        self.report.partitions += 1;
        self.partition_generation += 1;
        let heal_at = self.queue.now_us() + 20 * TICK_US + self.rng.below(380 * TICK_US);
        self.queue.schedule(
            heal_at,
            Event::Heal {
                generation: self.partition_generation,
            },
        );
        let kind = ["symmetric", "asymmetric", "leader-isolated"][kind as usize];
        let links = self.net.describe();
        self.trace_line(format_args!("partition {kind}: {links}"));
    }

    /// In every group, a leader leads and every member has applied everything it has
    /// committed: no follower is stuck behind (a stalled catch-up or snapshot transfer is a
    /// liveness failure too).
    fn converged(&self) -> bool {
        (0..self.config.groups).all(|group| self.converged_group(group))
    }

    fn converged_group(&self, group: usize) -> bool {
        let Some(leader) = self.current_leader(group) else {
            return false;
        };
        let raft = self.raft(leader, group).expect("running");
        let commit = raft.log().commit_index();
        let members = raft.membership().members();
        // Nodes outside the leader's configuration (removed, or never added) are left behind.
        self.nodes
            .iter()
            .filter(|s| members.contains(&s.id))
            .map(|s| &s.replicas[group])
            .all(|r| r.raft.is_some() && r.kv.applied_index() == commit)
    }

    /// Whether every group has a leader.
    fn every_group_led(&self) -> bool {
        (0..self.config.groups).all(|group| self.current_leader(group).is_some())
    }

    /// Heals everything, restarts every node, and requires within the bound that a leader leads
    /// and every client is answered; with `strict_liveness`, also that every node has caught up
    /// with the leader's commit index.
    pub(super) fn liveness_phase(&mut self) -> Result<(), Box<Violation>> {
        self.phase = Phase::Liveness;
        self.net.heal();
        self.partition_generation += 1;
        self.net.config.drop_probability = 0.0;
        self.net.config.duplicate_probability = 0.0;
        self.trace_line(format_args!("liveness phase: faults healed"));
        for node in 0..self.nodes.len() {
            self.restart_node(node);
        }
        self.check()?;
        let start_us = self.queue.now_us();
        loop {
            let caught_up = !self.config.strict_liveness || self.converged();
            if self.clients_done() && self.every_group_led() && caught_up {
                self.report.liveness_us = self.queue.now_us() - start_us;
                return Ok(());
            }
            if self.queue.now_us() - start_us >= self.config.liveness_bound_us {
                let roles: Vec<String> = self
                    .nodes
                    .iter()
                    .flat_map(|s| {
                        s.replicas.iter().enumerate().map(|(group, replica)| {
                            let tag = self.group_tag(group);
                            match &replica.raft {
                                None => format!("n{} {tag}down", s.id),
                                Some(r) => format!(
                                    "n{} {tag}{:?} t{} commit {} applied {} last {}",
                                    s.id,
                                    r.role(),
                                    r.hard_state().current_term,
                                    r.log().commit_index(),
                                    replica.kv.applied_index(),
                                    r.log().last_index()
                                ),
                            }
                        })
                    })
                    .collect();
                let clients: Vec<String> = self.clients.iter().map(|c| c.describe()).collect();
                let detail = format!(
                    "no progress within {} ms of healing: nodes [{}], clients [{}]",
                    self.config.liveness_bound_us / 1000,
                    roles.join(", "),
                    clients.join(", ")
                );
                self.trace_line(format_args!("VIOLATION liveness"));
                let stuck = (0..self.config.groups).find(|&g| !self.converged_group(g));
                return Err(self.violation_report(stuck, "liveness", detail));
            }
            self.run_step()?;
        }
    }
}
