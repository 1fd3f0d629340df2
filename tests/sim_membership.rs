//! Seed sweeps of the simulator with membership changes (add learner, promote through a joint
//! configuration, remove a learner or a voter, the leader included) interleaved with every
//! other fault class: delay, loss, duplication, partitions, crashes with torn writes, disks
//! that lose acknowledged entries, snapshots, leadership transfers. Five nodes, three of them
//! voters at first. Invariants include "at most one leader per term" (over every node, whatever
//! configuration it is in) and "commitment needs a majority of every voter set of the leader's
//! configuration, of both while joint", counted by the simulator from the acknowledgements it
//! delivered. And the planted bug that commits on C_old alone while joint must be caught.

use ringraft::sim::{run, SimConfig, SimReport};

const STEPS: u64 = 2_000;

fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed, 5, STEPS);
    config.membership_changes = true;
    config
}

fn sweep(seeds: std::ops::Range<u64>) -> SimReport {
    let mut totals = SimReport::default();
    for seed in seeds {
        match run(config(seed)) {
            Ok(report) => totals.accumulate(&report),
            Err(violation) => panic!("{violation}"),
        }
    }
    assert!(
        totals.membership_changes > 0
            && totals.promotions > 0
            && totals.voter_removals > 0
            && totals.joint_commits > 0,
        "{totals:?}"
    );
    assert!(
        totals.crashes > 0 && totals.torn_writes > 0 && totals.partitions > 0,
        "{totals:?}"
    );
    assert!(
        totals.transfers > 0 && totals.snapshots_installed > 0 && totals.drops > 0,
        "{totals:?}"
    );
    assert!(
        totals.damaged_tails + totals.damaged_middles + totals.lost_writes > 0,
        "{totals:?}"
    );
    assert_eq!(totals.disk_faulty_nodes_max, 1, "{totals:?}");
    assert!(
        totals.writes_acknowledged > 0 && totals.reads > 0,
        "{totals:?}"
    );
    println!(
        "membership changes {} (promotions {}, voter removals {}, joint commits {}), crashes {}, partitions {}, writes acked {}",
        totals.membership_changes,
        totals.promotions,
        totals.voter_removals,
        totals.joint_commits,
        totals.crashes,
        totals.partitions,
        totals.writes_acknowledged
    );
    totals
}

#[test]
fn sweep_membership_5_nodes_seeds_0_to_40() {
    sweep(0..40);
}

#[test]
fn sweep_membership_5_nodes_seeds_40_to_80() {
    sweep(40..80);
}

#[test]
fn planted_bug_joint_single_majority_is_caught() {
    for seed in 0..200u64 {
        let mut config = config(seed);
        config.bug_joint_single_majority = true;
        if let Err(violation) = run(config) {
            println!("caught at seed {seed} (replay: ringraft sim --nodes 5 --membership --bug joint-single-majority --seed {seed}):\n{violation}");
            assert_eq!(
                violation.property, "joint_commitment",
                "caught by another property than the one the bug breaks:\n{violation}"
            );
            return;
        }
    }
    panic!("the planted bug survived 200 seeds");
}

#[test]
fn membership_runs_replay_identically_from_a_seed() {
    let first = run(config(7)).expect("seed 7 passes");
    let second = run(config(7)).expect("seed 7 passes");
    assert!(first.membership_changes > 0, "{first:?}");
    assert_eq!(first.trace_digest, second.trace_digest);
    assert_eq!(first, second);
}
