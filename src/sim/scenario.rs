//! Targeted scenarios: fault schedules that random sweeps reach too rarely, scripted step by
//! step but with the seed still choosing timeouts, delays and which node plays which part.
//!
//! [`figure8`] is the schedule of the Raft paper's Figure 8, adapted to a core whose new
//! leaders append a no-op: a leader of a later term holds an earlier term's entry on a majority
//! and must not count that as committed until one of its own entries is also on a majority.

use super::{Faults, Micros, SimConfig, SimReport, Simulation, Violation, TICK_US};
use crate::core::{NodeId, Role};
use crate::kv::{Command, Op};

/// A crash that the scenario ends by hand (the automatic restart is far beyond the run).
const NEVER_US: Micros = 1 << 50;

impl Simulation {
    /// Runs events until `done` holds or `within_us` passes; returns whether it held.
    fn run_until(
        &mut self,
        within_us: Micros,
        done: impl Fn(&Simulation) -> bool,
    ) -> Result<bool, Box<Violation>> {
        let end_us = self.queue.now_us() + within_us;
        loop {
            if done(self) {
                return Ok(true);
            }
            let Some(event) = self.queue.pop_before(end_us) else {
                self.queue.advance_to(end_us);
                return Ok(done(self));
            };
            self.step = self.queue.now_us() / TICK_US;
            self.handle(event);
            self.check()?;
        }
    }

    fn leader_among(&self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().find(|&i| {
            self.nodes[i].replicas[0]
                .raft
                .as_ref()
                .is_some_and(|r| r.role() == Role::Leader)
        })
    }

    fn persisted_index(&self, node: usize) -> u64 {
        self.nodes[node].replicas[0]
            .raft
            .as_ref()
            .map_or(0, |r| r.log().persisted_index())
    }

    fn connect_only(&mut self, groups: &[&[usize]]) {
        let ids: Vec<Vec<NodeId>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| self.nodes[i].id).collect())
            .collect();
        let refs: Vec<&[NodeId]> = ids.iter().map(Vec::as_slice).collect();
        let all = self.voters();
        self.net.connect_only(&all, &refs);
        let links = self.net.describe();
        self.trace_line(format_args!(
            "scenario: connect only {ids:?} (blocked: {links})"
        ));
    }
}

/// The Figure 8 schedule on five nodes. Returns `Ok` with `scenario_completed = false` in the
/// report's `partitions` count untouched when the seed's timing did not set the stage (e.g. no
/// leader where one was needed); a correct core never yields a violation here, and a core that
/// commits earlier terms' entries by counting replicas does.
///
/// 1. A leads; {A, B} are cut off from {C, D, E}; A appends X at index i, durable on A and B.
/// 2. A crashes. E wins among {C, D, E} in a later term and appends its no-op at i; it is cut
///    off at once, so only E holds it; E crashes.
/// 3. A restarts; {A, B, C} reconnect; the leader L among A and B appends its no-op at i + 1,
///    whose local write is slow. B and C acknowledge up to i + 1: X is on a majority (L, B, C)
///    but L's no-op is not. A correct leader waits; a buggy one commits X now.
/// 4. As soon as L's commit index reaches i, L crashes, losing its unwritten no-op.
/// 5. {L, D, E} reconnect: E's last term beats L's and D's, E wins and overwrites X at i. If X
///    was committed, Leader Completeness (and later State Machine Safety) breaks.
pub fn figure8(
    seed: u64,
    bug_commit_previous_term: bool,
) -> Result<(SimReport, bool), Box<Violation>> {
    let mut config = SimConfig::new(seed, 5, 0);
    config.clients = 0;
    config.faults = Faults::none();
    config.faults.snapshot_threshold_entries = 0;
    config.bug_commit_previous_term = bug_commit_previous_term;
    let mut sim = Simulation::new(config);
    for node in 0..5 {
        sim.start_node(node);
    }
    let all: Vec<usize> = (0..5).collect();
    if !sim.run_until(300 * TICK_US, |s| s.current_leader(0).is_some())? {
        return Ok((sim.finish_report(), false));
    }
    sim.run_until(20 * TICK_US, |_| false)?;
    let Some(a) = sim.current_leader(0) else {
        return Ok((sim.finish_report(), false));
    };
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != a).collect();
    let b = others[sim.rng.below(4) as usize];
    let rest: Vec<usize> = others.iter().copied().filter(|&i| i != b).collect();

    // 1.
    sim.connect_only(&[&[a, b], &rest]);
    let command = Command {
        client_id: 0,
        sequence: 0,
        op: Op::Put {
            key: b"x".to_vec(),
            value: b"X".to_vec(),
        },
    };
    let Ok(i) = sim.nodes[a].replicas[0]
        .raft
        .as_mut()
        .expect("running")
        .propose(command.encode().into())
    else {
        return Ok((sim.finish_report(), false));
    };
    sim.trace_line(format_args!("scenario: X proposed at n{} index {i}", a + 1));
    sim.drain(a, 0);
    if !sim.run_until(100 * TICK_US, |s| {
        s.persisted_index(a) >= i && s.persisted_index(b) >= i
    })? {
        return Ok((sim.finish_report(), false));
    }

    // 2.
    sim.crash_node(a, NEVER_US);
    if !sim.run_until(500 * TICK_US, |s| s.leader_among(&rest).is_some())? {
        return Ok((sim.finish_report(), false));
    }
    let e = sim.leader_among(&rest).expect("checked");
    let cd: Vec<usize> = rest.iter().copied().filter(|&x| x != e).collect();
    let (c, d) = (cd[0], cd[1]);
    sim.connect_only(&[&cd, &[b]]);
    sim.run_until(5 * TICK_US, |_| false)?;
    sim.crash_node(e, NEVER_US);
    let e_term_at_i = sim.nodes[e]
        .disk
        .store(0)
        .restored()
        .entries
        .iter()
        .find(|x| x.index == i)
        .map(|x| x.term);
    let x_term = sim.nodes[b]
        .disk
        .store(0)
        .restored()
        .entries
        .iter()
        .find(|x| x.index == i)
        .map(|x| x.term);
    if e_term_at_i.is_none() || e_term_at_i == x_term {
        return Ok((sim.finish_report(), false));
    }

    // 3.
    sim.slow_leader_writes_us = Some(40 * TICK_US);
    sim.connect_only(&[&[a, b, c], &[d]]);
    sim.restart_node(a);
    let reached = sim.run_until(500 * TICK_US, |s| {
        s.leader_among(&[a, b]).is_some_and(|l| {
            s.nodes[l].replicas[0]
                .raft
                .as_ref()
                .is_some_and(|r| r.log().commit_index() >= i)
        })
    })?;
    if !reached {
        return Ok((sim.finish_report(), false));
    }
    let l = sim.leader_among(&[a, b]).expect("checked");

    // 4.
    sim.crash_node(l, NEVER_US);
    sim.slow_leader_writes_us = None;

    // 5.
    let other = if l == a { b } else { a };
    sim.connect_only(&[&[l, d, e], &[other], &[c]]);
    sim.restart_node(l);
    sim.restart_node(e);
    sim.run_until(500 * TICK_US, |_| false)?;

    // Heal, and the cluster must still make progress and agree.
    sim.net.heal();
    sim.restart_node(other);
    sim.run_until(300 * TICK_US, |_| false)?;
    sim.full_checks();
    sim.check()?;
    Ok((sim.finish_report(), true))
}
