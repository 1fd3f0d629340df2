//! Seed sweeps of the deterministic simulator with every fault class on: delay and jitter,
//! loss, duplication, reordering, partitions (symmetric, one-way, leader isolated), crashes
//! with torn writes, snapshots and leadership transfers; then a liveness phase and a
//! linearizability check. Split into several tests so the harness runs them in parallel.

use ringraft::sim::{run, SimConfig, SimReport};

const STEPS: u64 = 2_000;

fn sweep(nodes: usize, seeds: std::ops::Range<u64>) -> SimReport {
    let mut totals = SimReport::default();
    for seed in seeds {
        match run(SimConfig::new(seed, nodes, STEPS)) {
            Ok(report) => totals.accumulate(&report),
            Err(violation) => panic!("{violation}"),
        }
    }
    // Every fault class must actually have happened, or the sweep proves little.
    assert!(
        totals.crashes > 0 && totals.torn_writes > 0 && totals.partitions > 0,
        "{totals:?}"
    );
    assert!(
        totals.drops > 0 && totals.duplicates > 0 && totals.transfers > 0,
        "{totals:?}"
    );
    assert!(
        totals.snapshots_taken > 0 && totals.snapshots_installed > 0,
        "{totals:?}"
    );
    assert!(
        totals.writes_acknowledged > 0 && totals.reads > 0,
        "{totals:?}"
    );
    println!(
        "{nodes} nodes: crashes {} torn {} partitions {} drops {} duplicates {} elections {} commits {} snapshots installed {} reads {} writes acked {}",
        totals.crashes,
        totals.torn_writes,
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
