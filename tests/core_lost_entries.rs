//! Nodes whose disks lose entries they had acknowledged (a damaged tail, a repaired mid-log
//! corruption, lost writes): the leader catches them up, and until then they decide no
//! election (Alagappan et al., FAST 2018; see the "Lost entries" section of `core::raft`).

#[allow(dead_code)]
mod common;

use common::cluster::Cluster;
use ringraft::core::{Config, Message, NodeId, Role};

fn config(id: NodeId, voters: Vec<NodeId>) -> Config {
    let mut c = Cluster::default_config(id, voters);
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

fn config_without_abstain(id: NodeId, voters: Vec<NodeId>) -> Config {
    let mut c = config(id, voters);
    c.bug_no_abstain = true;
    c
}

fn follower_of(leader: NodeId) -> NodeId {
    (1..=3).find(|&id| id != leader).unwrap()
}

#[test]
fn every_write_notes_its_end_in_the_hard_state() {
    let mut c = Cluster::new(3, config);
    let leader = c.elect();
    for k in 0..5 {
        c.propose(leader, &format!("v{k}"));
    }
    c.settle();
    for id in 1..=3 {
        let last = c.node(id).log().last_index();
        assert_eq!(last, 6, "node {id}");
        assert_eq!(c.durable[&id].hard_state.acked_index, last, "node {id}");
    }
    // A clean restart is not a loss.
    let follower = follower_of(leader);
    c.crash(follower);
    c.start(follower);
    assert_eq!(c.node(follower).recovering_to(), None);
}

#[test]
fn a_follower_that_lost_acknowledged_entries_is_caught_up_by_an_idle_leader() {
    let mut c = Cluster::new(3, config);
    let leader = c.elect();
    for k in 0..10 {
        c.propose(leader, &format!("v{k}"));
    }
    c.settle();
    let follower = follower_of(leader);
    assert_eq!(c.node(leader).match_index(follower), Some(11));
    c.crash(follower);
    c.lose_entries_from(follower, 8);
    c.start(follower);
    assert_eq!(c.node(follower).recovering_to(), Some(11));
    assert_eq!(c.node(follower).log().last_index(), 7);
    // No new write: only heartbeats reach it, and the leader still believes match 11.
    c.tick_until(50, |c| c.node(follower).log().last_index() == 11);
    c.tick_until(50, |c| c.node(follower).recovering_to().is_none());
    assert_eq!(c.node(leader).match_index(follower), Some(11));
    assert_eq!(c.durable[&follower].hard_state.acked_index, 11);
}

#[test]
fn a_follower_that_lost_entries_mid_stream_is_caught_up_by_the_next_write() {
    let mut c = Cluster::new(3, config);
    let leader = c.elect();
    for k in 0..10 {
        c.propose(leader, &format!("v{k}"));
    }
    c.settle();
    let follower = follower_of(leader);
    c.crash(follower);
    c.lose_entries_from(follower, 3);
    c.start(follower);
    c.propose(leader, "after");
    c.settle();
    assert_eq!(c.node(follower).log().last_index(), 12);
    assert_eq!(c.node(follower).recovering_to(), None);
    c.tick_until(20, |c| c.applied_values(follower).len() == 11);
}

/// The roles of the lost-commit scenario: `leader` commits "x" with `keeper` while `lagger` is
/// cut off; then `keeper` loses "x" and restarts, `leader` crashes, and `lagger` (without "x")
/// campaigns and asks `keeper` for its vote.
struct Roles {
    leader: NodeId,
    keeper: NodeId,
    lagger: NodeId,
    x: u64,
}

fn lose_a_committed_entry_then_elect(c: &mut Cluster) -> Roles {
    let leader = c.elect();
    let keeper = (1..=3).find(|&id| id != leader).unwrap();
    let lagger = (1..=3).find(|&id| id != leader && id != keeper).unwrap();
    c.cut.insert((leader, lagger));
    let x = c.propose(leader, "x");
    c.settle();
    assert!(c.node(leader).log().commit_index() >= x);
    assert!(c.node(lagger).log().last_index() < x);
    c.crash(keeper);
    c.lose_entries_from(keeper, x);
    c.start(keeper);
    c.crash(leader);
    c.heal();
    for _ in 0..3000 {
        c.node_mut(lagger).tick();
        if c.node(lagger).role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(c.node(lagger).role(), Role::Candidate);
    c.settle();
    Roles {
        leader,
        keeper,
        lagger,
        x,
    }
}

#[test]
fn a_node_that_lost_a_committed_entry_withholds_its_vote() {
    let mut c = Cluster::new(3, config);
    let r = lose_a_committed_entry_then_elect(&mut c);
    assert!(c.node(r.keeper).recovering_to().is_some());
    assert!(c.node(r.keeper).votes_withheld() >= 1);
    assert!(c.leaders().is_empty(), "no vote, no leader");
    // Ticking on, the keeper never campaigns: it might win without "x".
    for _ in 0..200 {
        c.tick();
        assert!(c.leaders().is_empty());
        assert_ne!(c.node(r.keeper).role(), Role::Candidate);
    }
    // The old leader comes back: a leader holding "x" is elected and the keeper caught up.
    c.start(r.leader);
    c.tick_until(500, |c| c.leaders().len() == 1);
    let leader = c.leaders()[0];
    assert_ne!(leader, r.lagger, "the lagger lacks the committed entry");
    c.propose(leader, "y");
    c.tick_until(100, |c| c.node(r.keeper).recovering_to().is_none());
    for id in 1..=3 {
        c.tick_until(100, |c| c.applied_values(id).len() == 2);
        let applied = c.applied_values(id);
        assert_eq!(applied[0].as_ref(), b"x", "node {id}");
    }
    assert!(c.node(r.keeper).log().commit_index() > r.x);
}

#[test]
fn without_the_abstain_rule_the_committed_entry_is_lost() {
    let mut c = Cluster::new(3, config_without_abstain);
    let r = lose_a_committed_entry_then_elect(&mut c);
    assert_eq!(
        c.leaders(),
        vec![r.lagger],
        "the keeper's vote elected the lagger"
    );
    c.settle();
    // The lagger's no-op now sits at index x on the keeper too: with the old leader's copy,
    // "x" survives on one node of three, and the majority has overwritten it.
    let term_at_x = c.node(r.keeper).log().term_at(r.x);
    assert_eq!(term_at_x, c.node(r.lagger).log().term_at(r.x));
    assert_eq!(c.node(r.lagger).log().entry(r.x).unwrap().data.len(), 0);
    assert_eq!(c.node(r.keeper).votes_withheld(), 0);
}

#[test]
fn recovering_nodes_ignore_timeout_now() {
    let mut c = Cluster::new(3, config);
    let leader = c.elect();
    c.propose(leader, "a");
    c.settle();
    let follower = follower_of(leader);
    c.crash(follower);
    c.lose_entries_from(follower, 2);
    c.start(follower);
    let term = c.node(leader).hard_state().current_term;
    c.node_mut(follower).step(ringraft::core::Envelope {
        from: leader,
        to: follower,
        message: Message::TimeoutNow {
            term,
            vote: true,
            last_index: 7,
        },
    });
    assert_eq!(c.node(follower).role(), Role::Follower);
}
