//! Membership changes in the core (thesis chapter 4): configurations in the log, joint
//! consensus, learners, a removed leader stepping down, configurations restored from snapshots.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::cluster::Cluster;
use ringraft::core::{ConfChange, ConfChangeError, Config, NodeId, RawNode, Restored, Role};

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn add_learner(id: NodeId) -> ConfChange {
    ConfChange::AddLearner {
        id,
        context: Bytes::from(format!("addr-of-{id}")),
    }
}

fn config(bug: bool) -> impl Fn(NodeId, Vec<NodeId>) -> Config {
    move |id, voters| {
        let mut c = Cluster::default_config(id, voters);
        c.bug_joint_single_majority = bug;
        c
    }
}

/// A 3-node cluster with a leader and one committed write, plus `learners` joined as learners
/// and caught up.
fn cluster_with_learners(learners: &[NodeId], bug: bool) -> (Cluster, NodeId) {
    let mut c = Cluster::new(3, config(bug));
    let leader = c.elect();
    c.propose(leader, "a");
    c.settle();
    for &l in learners {
        c.join(l);
        c.node_mut(leader)
            .propose_conf_change(add_learner(l))
            .expect("leader takes the change");
        c.settle();
    }
    (c, leader)
}

#[test]
fn a_learner_is_caught_up_then_promoted_through_a_joint_configuration() {
    let (mut c, leader) = cluster_with_learners(&[4], false);
    assert_eq!(c.node(4).membership().learners, set(&[4]));
    assert_eq!(c.applied_values(4), vec![Bytes::from("a")]);
    assert_eq!(
        c.node(4).membership().contexts.get(&4),
        Some(&Bytes::from("addr-of-4"))
    );
    let joint_index = c
        .node_mut(leader)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    assert!(c.node(leader).membership().is_joint());
    c.settle();
    c.tick();
    for id in 1..=4 {
        let m = c.node(id).membership();
        assert!(!m.is_joint(), "node {id} left the joint configuration");
        assert_eq!(m.voters, set(&[1, 2, 3, 4]), "node {id}");
        assert!(m.learners.is_empty());
    }
    assert!(c.node(leader).log().commit_index() > joint_index);
    c.propose(leader, "b");
    c.settle();
    c.tick();
    assert_eq!(
        c.applied_values(4),
        vec![Bytes::from("a"), Bytes::from("b")]
    );
}

#[test]
fn a_learners_acknowledgement_does_not_commit() {
    let (mut c, leader) = cluster_with_learners(&[4], false);
    let followers: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    for &f in &followers {
        c.cut.insert((leader, f));
    }
    let commit_before = c.node(leader).log().commit_index();
    let index = c.propose(leader, "x");
    c.settle();
    assert_eq!(
        c.node(leader).match_index(4),
        Some(index),
        "learner holds it"
    );
    assert_eq!(
        c.node(leader).log().commit_index(),
        commit_before,
        "leader + learner is no majority of three voters"
    );
    c.heal();
    c.tick_until(50, |c| c.node(leader).log().commit_index() >= index);
}

/// Leader 1..3 in {1,2,3}; 4 a caught-up learner; the leader reaches only one other voter when
/// it proposes Promote(4). The joint entry reaches a majority of C_old ({leader, f}) but not of
/// C_new (3 of {1,2,3,4}).
fn promote_with_only_one_follower_reachable(bug: bool) -> (Cluster, NodeId, u64) {
    let (mut c, leader) = cluster_with_learners(&[4], bug);
    let followers: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    c.cut.insert((leader, followers[1]));
    c.cut.insert((leader, 4));
    let joint_index = c
        .node_mut(leader)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    c.settle();
    assert!(c.node(leader).match_index(followers[0]) >= Some(joint_index));
    (c, leader, joint_index)
}

#[test]
fn commitment_while_joint_needs_a_majority_of_both_configurations() {
    let (mut c, leader, joint_index) = promote_with_only_one_follower_reachable(false);
    assert!(
        c.node(leader).log().commit_index() < joint_index,
        "a majority of C_old alone must not commit"
    );
    assert!(c.node(leader).membership().is_joint());
    c.heal();
    c.tick();
    c.tick();
    assert!(c.node(leader).log().commit_index() > joint_index);
    assert!(!c.node(leader).membership().is_joint(), "C_new followed");
}

#[test]
fn the_planted_joint_single_majority_bug_commits_on_c_old_alone() {
    let (c, leader, joint_index) = promote_with_only_one_follower_reachable(true);
    assert!(c.node(leader).log().commit_index() >= joint_index);
}

#[test]
fn one_change_at_a_time_and_clear_refusals() {
    let (mut c, leader) = cluster_with_learners(&[4], false);
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    assert_eq!(
        c.node_mut(follower)
            .propose_conf_change(ConfChange::Remove(4)),
        Err(ConfChangeError::NotLeader {
            leader: Some(leader)
        })
    );
    assert_eq!(
        c.node_mut(leader)
            .propose_conf_change(ConfChange::Promote(9)),
        Err(ConfChangeError::UnknownMember(9))
    );
    assert_eq!(
        c.node_mut(leader).propose_conf_change(add_learner(4)),
        Err(ConfChangeError::AlreadyMember(4))
    );
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    assert_eq!(
        c.node_mut(leader)
            .propose_conf_change(ConfChange::Remove(follower)),
        Err(ConfChangeError::ChangeInProgress)
    );
    c.settle();
    c.tick();
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Remove(follower))
        .expect("the previous change is committed");
}

#[test]
fn a_leader_removed_from_the_configuration_steps_down_once_c_new_commits() {
    let (mut c, leader) = cluster_with_learners(&[], false);
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Remove(leader))
        .unwrap();
    c.settle();
    c.tick();
    assert_eq!(c.node(leader).role(), Role::Follower);
    assert!(!c.node(leader).membership().is_member(leader));
    let rest: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    c.tick_until(300, |c| {
        rest.iter().any(|&i| c.node(i).role() == Role::Leader)
    });
    for _ in 0..100 {
        c.tick();
        assert_ne!(c.node(leader).role(), Role::Leader);
        assert_ne!(c.node(leader).role(), Role::Candidate);
    }
    let new_leader = c.leaders()[0];
    assert!(rest.contains(&new_leader));
    let index = c.propose(new_leader, "after");
    c.settle();
    c.tick();
    assert!(c.node(new_leader).log().commit_index() >= index);
}

#[test]
fn a_removed_leader_hands_over_to_a_caught_up_voter_of_c_new() {
    let (mut c, leader) = cluster_with_learners(&[], false);
    let term = c.node(leader).hard_state().current_term;
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Remove(leader))
        .unwrap();
    // No tick at all: the new leader comes from the TimeoutNow the removed leader sends as it
    // steps down, not from an election timeout.
    c.settle();
    let rest: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1, "a leader without any election timeout");
    assert!(rest.contains(&leaders[0]), "{leaders:?}");
    assert_eq!(c.node(leaders[0]).hard_state().current_term, term + 1);
    assert_eq!(c.node(leaders[0]).transfer_elections(), 1);
    let index = c.propose(leaders[0], "after");
    c.settle();
    assert!(c.node(leaders[0]).log().commit_index() >= index);
}

#[test]
fn learners_and_waiting_nodes_never_campaign() {
    let (mut c, leader) = cluster_with_learners(&[4], false);
    c.join(5); // Never added.
    c.crash(leader);
    for _ in 0..200 {
        c.tick();
        for id in [4, 5] {
            assert_eq!(c.node(id).role(), Role::Follower, "node {id}");
        }
    }
    assert_eq!(c.leaders().len(), 1, "the remaining voters elect a leader");
}

#[test]
fn the_configuration_is_restored_from_a_snapshot_and_installed_with_one() {
    let mut c = Cluster::new(3, |id, voters| {
        let mut c = Cluster::default_config(id, voters);
        c.snapshot_threshold_entries = 5;
        c
    });
    let leader = c.elect();
    c.join(4);
    c.node_mut(leader)
        .propose_conf_change(add_learner(4))
        .unwrap();
    c.settle();
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    c.settle();
    c.tick();
    for i in 0..20 {
        c.propose(leader, &format!("v{i}"));
        c.settle();
    }
    c.tick();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let snapshot = c.durable[&follower]
        .snapshot
        .clone()
        .expect("snapshot taken");
    assert_eq!(snapshot.meta.membership.voters, set(&[1, 2, 3, 4]));
    assert!(
        c.durable[&follower]
            .entries
            .iter()
            .all(|e| e.kind != ringraft::core::EntryKind::Config),
        "the configuration entries are compacted away"
    );
    // A restart sees only the snapshot (its bootstrap configuration says {1,2,3}).
    c.crash(follower);
    c.start(follower);
    assert_eq!(c.node(follower).membership().voters, set(&[1, 2, 3, 4]));
    // A new learner far behind gets the configuration with the snapshot it is sent.
    c.join(5);
    c.node_mut(leader)
        .propose_conf_change(add_learner(5))
        .unwrap();
    c.settle();
    c.tick();
    assert_eq!(c.node(5).membership().voters, set(&[1, 2, 3, 4]));
    assert_eq!(c.node(5).membership().learners, set(&[5]));
    assert!(c.node(5).log().snapshot_meta().last_included_index > 0);
}

#[test]
fn a_node_uses_an_uncommitted_configuration_and_the_cluster_converges_on_it() {
    let (mut c, leader) = cluster_with_learners(&[4], false);
    let followers: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    // Only follower 0 hears the joint entry; the leader then dies with it uncommitted.
    c.cut.insert((leader, followers[1]));
    c.cut.insert((leader, 4));
    c.node_mut(leader)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    c.settle();
    assert!(
        c.node(followers[0]).membership().is_joint(),
        "in force once in the log"
    );
    c.crash(leader);
    c.heal();
    // Follower 1 and learner 4 lack it. With the old leader down, follower 1 needs follower
    // 0's vote, which its shorter log cannot get: follower 0 leads (joint, so it needs
    // follower 1 and 4 too, which now catch up) and the cluster converges on C_new.
    c.tick_until(400, |c| c.leaders().len() == 1);
    c.settle();
    c.tick();
    let m0 = c.node(followers[0]).membership().clone();
    assert_eq!(m0.voters, set(&[1, 2, 3, 4]));
    assert!(!m0.is_joint());
    assert_eq!(c.node(followers[1]).membership(), &m0);
    assert_eq!(c.node(4).membership(), &m0);
}

#[test]
fn a_bad_bootstrap_configuration_is_named() {
    let error = RawNode::new(Config::new(4, vec![1, 2, 3]), Restored::default())
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("not among the voters"),
        "{error}"
    );
    RawNode::new(Config::new(4, vec![]), Restored::default()).expect("a joining node is valid");
}
