//! Checks shared by the simulator's tests.

use ringraft::sim::{SimReport, Violation};

/// The properties that show a planted safety bug: a committed entry lost or changed. A bug
/// caught only by liveness or anything else would not be the bug it was planted as.
const SAFETY_PROPERTIES: [&str; 4] = [
    "leader_completeness",
    "state_machine_safety",
    "log_matching",
    "linearizability",
];

/// Fails unless `violation` was caught by one of the safety properties.
pub fn assert_caught_by_safety_property(violation: &Violation) {
    assert!(
        SAFETY_PROPERTIES.contains(&violation.property),
        "caught by an unexpected property: {}",
        violation.property
    );
}

/// Fails unless every fault class of the random sweep happened at least once over `totals`
/// (crashes with torn writes, partitions, transfers carried to a campaign, snapshots
/// installed, disks losing acknowledged entries on up to a minority of `nodes` at once) and
/// clients were served: otherwise the sweep proves little.
pub fn assert_every_fault_class(totals: &SimReport, nodes: usize) {
    assert!(
        totals.crashes > 0 && totals.torn_writes > 0 && totals.partitions > 0,
        "{totals:?}"
    );
    // Transfers must complete, not only be asked for: their target campaigns on TimeoutNow.
    assert!(
        totals.transfer_elections > 0 && totals.snapshots_installed > 0,
        "{totals:?}"
    );
    // Disks that lose what they acknowledged: at the tail, in the middle, lost writes; on two
    // nodes at once where the cluster is large enough for that to be a minority. The bound is
    // per node, whatever group lost.
    assert!(
        totals.damaged_tails > 0 && totals.damaged_middles > 0 && totals.lost_writes > 0,
        "{totals:?}"
    );
    assert!(totals.votes_withheld > 0, "{totals:?}");
    assert_eq!(
        totals.disk_faulty_nodes_max,
        (nodes as u64 - 1) / 2,
        "{totals:?}"
    );
    assert!(
        totals.writes_acknowledged > 0 && totals.reads > 0,
        "{totals:?}"
    );
}
