//! The replicated state machine: a key-value map with client sessions and snapshots.
//!
//! This room owns what a committed command *means*: the [`Command`] encoding, applying commands
//! in log order ([`KvStore::apply`]), exactly-once writes through client sessions, and the
//! snapshot format. It must never do I/O or know about the Raft core: the runtime and the
//! simulator hand it committed bytes and take snapshots from it.

mod command;
mod map;
mod store;

pub use command::{Command, CommandRef, DecodeError, Op, OpRef};
pub use store::{
    ApplyResult, KvStore, Response, RestoreError, SnapshotSink, SESSIONS_MAX, SESSION_RESPONSES_MAX,
};

/// Most Raft groups one cluster runs (`groups`): each is a Raft loop, a log and an executor.
pub const GROUPS_MAX: u32 = 256;

/// The Raft group that owns `key` in a cluster of `groups` groups.
///
/// Every node, client and load generator must agree on this forever, so it is a fixed function
/// of the key's bytes (CRC-32, as the log's records use), not a hasher seeded per process. It
/// maps keys to groups by remainder, so changing `groups` moves most keys: the number of groups
/// is fixed when a cluster is created.
pub fn group_of(key: &[u8], groups: u32) -> u32 {
    debug_assert!(groups >= 1);
    crc32fast::hash(key) % groups.max(1)
}

#[cfg(test)]
mod group_tests {
    use super::group_of;

    #[test]
    fn a_key_lands_in_one_group_and_every_group_gets_keys() {
        for groups in [1u32, 2, 3, 8] {
            let mut seen = vec![0usize; groups as usize];
            for i in 0..4000u32 {
                let key = format!("key-{i}");
                let g = group_of(key.as_bytes(), groups);
                assert!(g < groups);
                assert_eq!(g, group_of(key.as_bytes(), groups), "{key} moved");
                seen[g as usize] += 1;
            }
            // Spread: no group gets less than half its fair share of 4000 keys.
            let fair = 4000 / groups as usize;
            assert!(
                seen.iter().all(|&n| n >= fair / 2),
                "groups={groups}: {seen:?}"
            );
        }
        // The function is fixed: these values are CRC-32 of the key bytes, the contract
        // between nodes and clients of different builds.
        assert_eq!(group_of(b"", 7), 0);
        assert_eq!(group_of(b"a", 1000), crc32fast::hash(b"a") % 1000);
    }
}
