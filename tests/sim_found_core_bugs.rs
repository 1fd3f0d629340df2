//! Core bugs the simulator found, kept as replayable seeds (fixed in the core; see also the
//! focused scenario tests in tests/core_scenarios.rs, which fail without the fixes). The seeds
//! were found on an earlier build, so they may no longer steer into the same corner; they stay
//! as cheap regression runs with strict liveness.

use ringraft::sim::{run, SimConfig};

fn strict(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed, 5, 2_000);
    config.strict_liveness = true;
    config
}

/// An AppendEntries reordered behind a later one is rejected; the rejection arrives after the
/// success of the later one and is (rightly) treated as stale, but the entries it carried are
/// still counted as in flight and never resent while the leader is idle: the follower stays
/// behind forever (heartbeat responses do not restart replication).
#[test]
fn follower_left_behind_after_reordered_append_seed_115() {
    if let Err(violation) = run(strict(115)) {
        panic!("{violation}");
    }
}

/// A follower installing a snapshot at index s discards its whole log, including entries after
/// s that it had already acknowledged (paper Figure 13 step 6 says to keep them). The leader's
/// match index for it is then above its last index; every AppendEntries at match is rejected,
/// and `Progress::on_reject` clamps next back to match + 1: an endless reject/resend loop (33
/// million messages in the run) and a follower that never catches up.
#[test]
fn snapshot_install_drops_acknowledged_entries_seed_105() {
    if let Err(violation) = run(strict(105)) {
        panic!("{violation}");
    }
}
