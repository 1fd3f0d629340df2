//! Scenario tests of the sans-I/O Raft core, driven synchronously (tests/common/cluster.rs).
//! Each names the paper's or thesis' scenario it checks. New scenarios are transcripts
//! (`tests/testdata/*.txt`, run by `core_transcripts.rs`); Figure 8 and leader transfer with
//! a lost TimeoutNow live there.

mod common;

use bytes::Bytes;
use common::cluster::Cluster;
use ringraft::core::{Config, ConfigError, Message, ProposeError, RawNode, Restored, Role};

#[test]
fn three_nodes_elect_one_leader_and_replicate() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    for i in 0..50 {
        c.propose(leader, &format!("v{i}"));
    }
    c.settle();
    c.tick(); // A heartbeat carries the final commit index to followers.
    let expected: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("v{i}"))).collect();
    for id in 1..=3 {
        assert_eq!(c.applied_values(id), expected, "node {id}");
    }
    // Batching: 50 proposals made between two outputs travel in one AppendEntries per follower.
    assert!(
        c.count("AppendEntries") < 20,
        "{} AppendEntries for one batch",
        c.count("AppendEntries")
    );
}

#[test]
fn proposals_to_followers_are_refused_with_a_leader_hint() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let err = c
        .node_mut(follower)
        .propose(Bytes::from_static(b"x"))
        .unwrap_err();
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader: Some(leader)
        }
    );
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_a_healthy_leader() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    let term = c.node(leader).hard_state().current_term;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    c.isolate(follower);
    for _ in 0..200 {
        c.tick();
    }
    assert_eq!(
        c.node(follower).hard_state().current_term,
        term,
        "pre-vote must not raise the term"
    );
    c.heal();
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(c.leaders(), vec![leader]);
    assert_eq!(c.node(leader).hard_state().current_term, term);
}

#[test]
fn without_pre_vote_a_rejoining_node_disrupts_the_leader() {
    // The counterpart of the test above: shows that it can fail.
    let mut c = Cluster::new(3, |id, voters| {
        let mut config = Cluster::default_config(id, voters);
        config.pre_vote = false;
        config.check_quorum = false;
        config
    });
    let leader = c.elect();
    let term = c.node(leader).hard_state().current_term;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    c.isolate(follower);
    for _ in 0..200 {
        c.tick();
    }
    assert!(c.node(follower).hard_state().current_term > term);
    c.heal();
    for _ in 0..30 {
        c.tick();
    }
    assert!(
        c.nodes.values().all(|n| n.hard_state().current_term > term),
        "the old term was disrupted"
    );
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    c.isolate(leader);
    let timeout = c.node(leader).config().election_timeout_ticks as usize;
    c.tick_until(3 * timeout, |c| c.node(leader).role() != Role::Leader);
    c.tick_until(200, |c| c.leaders().len() == 1);
    let new_leader = c.leaders()[0];
    assert_ne!(new_leader, leader);
    // The old leader refuses proposals, so its clients go elsewhere.
    assert!(matches!(
        c.node_mut(leader).propose(Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { .. })
    ));
}

/// Snapshots the leader takes while `count` equal entries are proposed one at a time.
fn snapshots_taken(factor: u64, count: usize) -> Vec<u64> {
    snapshots_taken_capped(factor, u64::MAX, count)
}

fn snapshots_taken_capped(factor: u64, bytes_max: u64, count: usize) -> Vec<u64> {
    let mut c = Cluster::new(3, move |id, voters| {
        let mut config = Cluster::default_config(id, voters);
        config.snapshot_threshold_entries = 1;
        config.snapshot_log_factor = factor;
        config.snapshot_log_bytes_max = bytes_max;
        config
    });
    let leader = c.elect();
    let mut taken = Vec::new();
    for i in 0..count {
        c.propose(leader, &format!("value-{i:04}"));
        c.settle();
        let index = c.node(leader).log().snapshot_meta().last_included_index;
        if taken.last() != Some(&index) && index > 0 {
            taken.push(index);
        }
    }
    taken
}

#[test]
fn the_log_factor_spaces_snapshots_by_the_size_of_the_last_one() {
    // Each snapshot holds every value applied so far; with factor 1 the next one waits until as
    // many bytes again are applied, so snapshots come at roughly doubling indices.
    let by_count = snapshots_taken(0, 200);
    let by_size = snapshots_taken(1, 200);
    assert!(
        by_count.len() > 150,
        "factor 0 snapshots every entry: {by_count:?}"
    );
    assert!(
        (4..=12).contains(&by_size.len()),
        "factor 1 snapshots at growing intervals: {by_size:?}"
    );
    for pair in by_size.windows(3) {
        assert!(
            pair[2] - pair[1] >= pair[1] - pair[0],
            "intervals grow with the state: {by_size:?}"
        );
    }
}

#[test]
fn the_log_bytes_cap_bounds_what_the_factor_lets_grow() {
    // With a huge factor only the first snapshot is ever due; a cap of 300 payload bytes (about
    // 30 entries of "value-0000") still takes one every few dozen entries.
    let uncapped = snapshots_taken_capped(1000, u64::MAX, 200);
    let capped = snapshots_taken_capped(1000, 300, 200);
    assert_eq!(uncapped.len(), 1, "{uncapped:?}");
    assert!(capped.len() >= 4, "{capped:?}");
    for pair in capped.windows(2) {
        assert!(pair[1] - pair[0] <= 60, "gap over the cap: {capped:?}");
    }
}

#[test]
fn replicas_take_their_snapshots_at_staggered_indices() {
    let mut c = Cluster::new(3, |id, voters| {
        let mut config = Cluster::default_config(id, voters);
        config.snapshot_threshold_entries = 60;
        config
    });
    let leader = c.elect();
    let mut first_snapshot = [0u64; 4];
    for i in 0..120 {
        c.propose(leader, &format!("value-{i}"));
        c.settle();
        for id in 1..=3u64 {
            let index = c.node(id).log().snapshot_meta().last_included_index;
            if first_snapshot[id as usize] == 0 && index > 0 {
                first_snapshot[id as usize] = index;
            }
        }
    }
    // Thresholds 60, 70 and 80 by rank among the voters (ids 1, 2, 3).
    let [_, one, two, three] = first_snapshot;
    assert!(
        (60..70).contains(&one) && (70..80).contains(&two) && three >= 80,
        "first snapshots at {one}, {two}, {three}"
    );
}

#[test]
fn a_lagging_follower_is_caught_up_by_a_chunked_snapshot() {
    let mut c = Cluster::new(3, |id, voters| {
        let mut config = Cluster::default_config(id, voters);
        config.snapshot_threshold_entries = 20;
        config.snapshot_chunk_bytes = 64;
        config
    });
    let leader = c.elect();
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    c.crash(lagging);
    for i in 0..100 {
        c.propose(leader, &format!("value-{i}"));
        c.settle();
    }
    assert!(
        c.node(leader).log().snapshot_meta().last_included_index > 50,
        "leader compacted its log"
    );
    c.start(lagging);
    let target = c.node(leader).log().commit_index();
    c.tick_until(500, |c| c.node(lagging).log().applied_index() >= target);
    assert!(
        c.count("InstallSnapshot") > 1,
        "the snapshot travelled in several chunks"
    );
    assert_eq!(c.applied[&lagging], c.applied[&leader]);
}

#[test]
fn leader_transfer_hands_over_and_refuses_proposals_meanwhile() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    let target = (1..=3).find(|&id| id != leader).unwrap();
    c.propose(leader, "before");
    c.node_mut(leader).transfer_leader(target);
    assert_eq!(
        c.node_mut(leader).propose(Bytes::from_static(b"x")),
        Err(ProposeError::TransferInProgress)
    );
    c.settle();
    assert_eq!(c.leaders(), vec![target]);
    c.propose(target, "after");
    c.settle();
    c.tick();
    assert_eq!(
        c.applied_values(leader),
        vec![Bytes::from("before"), Bytes::from("after")]
    );
}

#[test]
fn read_index_on_leader_and_follower_covers_acknowledged_writes() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let index = c.propose(leader, "w");
    c.settle();
    c.node_mut(leader).read_index(11).unwrap();
    c.node_mut(follower).read_index(22).unwrap();
    c.settle();
    let leader_read = c.reads[&leader]
        .iter()
        .find(|r| r.request_id == 11)
        .expect("leader read served");
    let follower_read = c.reads[&follower]
        .iter()
        .find(|r| r.request_id == 22)
        .expect("follower read served");
    assert!(leader_read.read_index >= index);
    assert!(follower_read.read_index >= index);
}

#[test]
fn read_index_fails_on_an_isolated_leader() {
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    c.isolate(leader);
    c.node_mut(leader).read_index(5).unwrap();
    let timeout = c.node(leader).config().election_timeout_ticks as usize;
    c.tick_until(3 * timeout, |c| c.reads_failed[&leader].contains(&5));
    assert!(!c
        .reads
        .get(&leader)
        .is_some_and(|r| r.iter().any(|r| r.request_id == 5)));
}

#[test]
fn fast_backtracking_skips_a_divergent_term_in_few_round_trips() {
    let mut c = Cluster::new(3, |id, voters| {
        let mut config = Cluster::default_config(id, voters);
        config.check_quorum = false;
        config
    });
    let old = c.elect();
    c.isolate(old);
    for i in 0..100 {
        c.propose(old, &format!("lost-{i}")); // Never replicated: 100 divergent entries.
    }
    c.settle();
    c.tick_until(300, |c| c.leaders().iter().any(|&l| l != old));
    let new = *c.leaders().iter().find(|&&l| l != old).unwrap();
    for i in 0..10 {
        c.propose(new, &format!("kept-{i}"));
    }
    c.settle();
    let rejects_before = c.count("AppendEntriesResponse");
    c.heal();
    c.tick_until(100, |c| {
        c.node(old).log().last_index() == c.node(new).log().last_index() && c.leaders() == vec![new]
    });
    let responses = c.count("AppendEntriesResponse") - rejects_before;
    assert!(
        responses < 20,
        "{responses} AppendEntries round trips to skip 100 divergent entries"
    );
    assert_eq!(
        c.node(old).log().term_at(c.node(old).log().last_index()),
        c.node(new).log().term_at(c.node(new).log().last_index())
    );
}

#[test]
fn config_validation_names_the_problem() {
    let mut config = Config::new(1, vec![1, 2, 3]);
    config.election_timeout_ticks = 1;
    config.heartbeat_interval_ticks = 1;
    let err = config.validate().unwrap_err();
    assert!(matches!(err, ConfigError::ElectionNotAboveHeartbeat { .. }));
    assert!(err.to_string().contains("election_timeout_ticks"));
    let config = Config::new(4, vec![1, 2, 3]);
    assert_eq!(
        config.validate().unwrap_err(),
        ConfigError::BadVoters("this node's id is not among the voters")
    );
    let mut config = Config::new(1, vec![1, 2, 3]);
    config.batch_entries_max = 0;
    assert!(RawNode::new(config, Restored::default()).is_err());
}

#[test]
fn a_single_node_commits_on_its_own_durable_write() {
    let mut c = Cluster::new(1, Cluster::default_config);
    let leader = c.elect();
    c.propose(leader, "solo");
    c.settle();
    assert_eq!(c.applied_values(1), vec![Bytes::from("solo")]);
}

#[test]
fn a_snapshot_ending_inside_the_log_keeps_the_acknowledged_suffix() {
    // Found by the simulator (seed 105, --strict-liveness, before the fix): a follower that
    // installed a snapshot covering part of its log threw away entries it had acknowledged.
    use ringraft::core::{Entry, EntryKind, Envelope, HardState};
    let entries: Vec<Entry> = (1..=10)
        .map(|index| Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"x"),
            record: None,
        })
        .collect();
    let restored = Restored {
        hard_state: HardState {
            current_term: 1,
            voted_for: Some(1),
            acked_index: 10,
        },
        snapshot: None,
        entries,
    };
    let mut follower = RawNode::new(Cluster::default_config(2, vec![1, 2, 3]), restored).unwrap();
    let message = Message::InstallSnapshot {
        term: 1,
        last_included_index: 5,
        last_included_term: 1,
        membership: Default::default(),
        offset: 0,
        data: Bytes::from_static(b"state"),
        done: true,
    };
    follower.step(Envelope {
        from: 1,
        to: 2,
        message,
    });
    let out = follower.take_output();
    assert!(
        out.snapshot.is_none(),
        "no restore: the log already holds index 5"
    );
    assert_eq!(follower.log().last_index(), 10, "entries 6..=10 survive");
    assert!(follower.log().commit_index() >= 5);
    let answered_done = out.messages_after_persist.iter().any(|e| {
        matches!(
            e.message,
            Message::InstallSnapshotResponse {
                done: true,
                last_included_index: 5,
                ..
            }
        )
    });
    assert!(answered_done);
}

#[test]
fn an_idle_leader_resends_appends_lost_in_replicate_state() {
    // Found by the simulator (seed 115, --strict-liveness, before the fix): the last pipelined
    // AppendEntries was lost while the leader stayed idle, and nothing ever resent it.
    let mut c = Cluster::new(3, Cluster::default_config);
    let leader = c.elect();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    c.propose(leader, "warm-up");
    c.settle();
    c.propose(leader, "lost");
    // Drop the AppendEntries carrying "lost" to one follower (it is in Replicate state now).
    c.settle_with(&mut |env| {
        !(env.to == follower && matches!(env.message, Message::AppendEntries { .. }))
    });
    let last = c.node(leader).log().last_index();
    assert!(c.node(follower).log().last_index() < last);
    c.tick_until(20, |c| c.node(follower).log().last_index() == last);
}
