//! Seed sweeps of the deterministic simulator with every fault class on: delay and jitter,
//! loss, duplication, reordering, partitions (symmetric, one-way, leader isolated), crashes
//! with torn writes, disks that lose acknowledged entries (damaged tails and middles, lost
//! writes) on up to a minority at once, snapshots and leadership transfers; then a liveness phase and a
//! linearizability check. Split into several tests so the harness runs them in parallel.
//!
//! A run whose linearizability check cannot decide a key within its budget (even raised; see
//! `SimConfig::linearizability_steps_max`) fails with `linearizability_unknown`, so a sweep
//! passes only when every key of every seed was decided linearizable.

#[allow(dead_code)]
mod sim_common;

use ringraft::sim::{run, SimConfig, SimReport, LINEARIZABILITY_BUDGET_RAISE};

const STEPS: u64 = 2_000;

fn sweep(nodes: usize, seeds: std::ops::Range<u64>) -> SimReport {
    let mut totals = SimReport::default();
    for seed in seeds {
        match run(SimConfig::new(seed, nodes, STEPS)) {
            Ok(report) => totals.accumulate(&report),
            Err(violation) => panic!("{violation}"),
        }
    }
    // Every fault class must actually have happened, or the sweep proves little; these
    // single-group sweeps also see message drops, duplicates and snapshots taken.
    sim_common::assert_every_fault_class(&totals, nodes);
    assert!(
        totals.drops > 0 && totals.duplicates > 0 && totals.transfers > 0,
        "{totals:?}"
    );
    assert!(totals.snapshots_taken > 0, "{totals:?}");
    println!(
        "{nodes} nodes: keys that needed the raised linearizability budget {}, crashes {} torn {} damaged tails {} middles {} lost writes {} votes withheld {} partitions {} drops {} duplicates {} elections {} commits {} snapshots installed {} reads {} writes acked {}",
        totals.linearizability_unknown,
        totals.crashes,
        totals.torn_writes,
        totals.damaged_tails,
        totals.damaged_middles,
        totals.lost_writes,
        totals.votes_withheld,
        totals.partitions,
        totals.drops,
        totals.duplicates,
        totals.elections,
        totals.commits,
        totals.snapshots_installed,
        totals.reads,
        totals.writes_acknowledged
    );
    totals
}

#[test]
fn sweep_3_nodes_seeds_0_to_150() {
    sweep(3, 0..150);
}

#[test]
fn sweep_3_nodes_seeds_150_to_300() {
    sweep(3, 150..300);
}

#[test]
fn sweep_5_nodes_seeds_0_to_150() {
    sweep(5, 0..150);
}

#[test]
fn sweep_5_nodes_seeds_150_to_300() {
    sweep(5, 150..300);
}

/// The sweeps above would pass a run whose linearizability check gave up, if giving up were a
/// pass: a budget too small to decide anything must fail the run by that name.
#[test]
fn an_undecided_linearizability_check_fails_the_run() {
    let mut config = SimConfig::new(3, 3, 1_000);
    config.linearizability_steps_max = 1;
    let violation = run(config).expect_err("a 1-step budget decides no busy key");
    assert_eq!(violation.property, "linearizability_unknown", "{violation}");
    assert!(
        violation.report.linearizability_unknown > 0,
        "{:?}",
        violation.report
    );
    assert!(
        violation
            .detail
            .contains(&format!("within {LINEARIZABILITY_BUDGET_RAISE} steps")),
        "{}",
        violation.detail
    );
}
