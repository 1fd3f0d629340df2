//! Membership changes with real node processes: growing and shrinking a cluster under a write
//! load, the documented "replace a node whose disk died" procedure, and requests that are
//! refused with their reason. Every acknowledged write is read back at the end.
//!
//! The figures printed (longest stretch without a commit seen by the writers during each
//! change) are reports, not assertions: this machine is shared and timings vary.

mod node_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_common::{client, run, stats, wait_for_leader, wait_until, Cluster, Load};
use ringraft::client::Error;
use ringraft::core::Role;
use ringraft::wire::{ClientError, MemberChange, MemberChangeKind, MemberListing, MemberRole};

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `writers` sessions of the cluster at `addrs`, one writer each.
fn start_load(addrs: &[SocketAddr], writers: u64) -> Load {
    let sessions = (0..writers).map(|_| client(addrs.to_vec())).collect();
    Load::start(sessions, 1, "m")
}

/// The longest stretch between two acknowledged writes within [from, to], in ms.
fn longest_gap_ms(load: &Load, from: Instant, to: Instant) -> u128 {
    let times = load.successes.borrow();
    let mut inside: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside.sort();
    let mut edges = vec![from];
    edges.extend(inside);
    edges.push(to);
    edges
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .max()
        .unwrap_or(0)
}

/// The leader of the highest term among the nodes at `addrs` and its view of the
/// configuration. Unlike `leader_among`, nodes that follow no one are allowed: a node waiting to
/// be added, or one removed, knows no leader.
async fn leader_listing(addrs: &[SocketAddr]) -> Option<(SocketAddr, MemberListing)> {
    let mut best: Option<(u64, SocketAddr)> = None;
    for a in addrs {
        if let Some(s) = stats(*a).await {
            if s.role == Role::Leader && best.is_none_or(|(term, _)| s.term > term) {
                best = Some((s.term, *a));
            }
        }
    }
    let (_, addr) = best?;
    let listing = client(vec![addr]).member_list().await.ok()?;
    (listing.leader_id == Some(listing.node_id)).then_some((addr, listing))
}

fn is_joint(listing: &MemberListing) -> bool {
    listing
        .members
        .iter()
        .any(|m| matches!(m.role, MemberRole::Joining | MemberRole::Leaving))
}

fn voters(listing: &MemberListing) -> BTreeSet<u64> {
    listing
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .map(|m| m.id)
        .collect()
}

fn learners(listing: &MemberListing) -> BTreeSet<u64> {
    listing
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Learner)
        .map(|m| m.id)
        .collect()
}

/// Makes one membership change at whichever node leads among `addrs`, until the leader's
/// configuration satisfies `done` (and is not joint). Retries what is worth retrying (no
/// leader, a new leader not ready, a learner not caught up yet, a lost answer); any other
/// refusal fails the test with the node's reason.
async fn change_until(
    addrs: &[SocketAddr],
    change: MemberChange,
    done: impl Fn(&MemberListing) -> bool,
) -> MemberListing {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "membership change {change:?} did not complete within {CHANGE_TIMEOUT:?}"
        );
        if let Some((addr, listing)) = leader_listing(addrs).await {
            if done(&listing) && !is_joint(&listing) {
                return listing;
            }
            if !is_joint(&listing) {
                match client(vec![addr]).member_change(change.clone()).await {
                    Ok(_) => continue,
                    Err(Error::Server(ClientError::Refused { message }))
                        if message.contains("not caught up") || message.contains("in progress") => {
                    }
                    Err(Error::Server(ClientError::Refused { message })) => {
                        panic!("{change:?} refused: {message}")
                    }
                    Err(_) => {} // Not the leader any more, not ready, or no answer in time.
                }
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

fn add_learner(cluster: &Cluster, id: u64) -> MemberChange {
    MemberChange {
        kind: MemberChangeKind::AddLearner,
        id,
        context: Bytes::from(cluster.member_context(id)),
    }
}

fn simple(kind: MemberChangeKind, id: u64) -> MemberChange {
    MemberChange {
        kind,
        id,
        context: Bytes::new(),
    }
}

/// Adds node `id` (already started with --join) as a learner, waits for it to catch up, then
/// promotes it; returns the longest stretch without a commit during the whole change.
async fn add_and_promote(cluster: &Cluster, load: &Load, addrs: &[SocketAddr], id: u64) -> u128 {
    let began = Instant::now();
    change_until(addrs, add_learner(cluster, id), |l| {
        learners(l).contains(&id) || voters(l).contains(&id)
    })
    .await;
    // Promotion is refused until the learner is close: change_until retries until then.
    let listing = change_until(addrs, simple(MemberChangeKind::Promote, id), |l| {
        voters(l).contains(&id)
    })
    .await;
    let gap = longest_gap_ms(load, began, Instant::now());
    eprintln!(
        "added node {id} as learner and promoted it in {} ms; longest stretch without a commit \
         {gap} ms; voters now {:?}",
        began.elapsed().as_millis(),
        voters(&listing)
    );
    gap
}

/// Removes node `id`; returns the longest stretch without a commit during the change (and
/// the election that follows when `id` led).
async fn remove(load: &Load, addrs: &[SocketAddr], id: u64) -> u128 {
    let began = Instant::now();
    let listing = change_until(addrs, simple(MemberChangeKind::Remove, id), |l| {
        !l.members.iter().any(|m| m.id == id)
    })
    .await;
    load.wait_for_more(20, "writes after the removal").await;
    let gap = longest_gap_ms(load, began, Instant::now());
    eprintln!(
        "removed node {id} in {} ms; longest stretch without a commit {gap} ms; voters now {:?}",
        began.elapsed().as_millis(),
        voters(&listing)
    );
    gap
}

/// Reads every acknowledged key back through the leader (linearizable).
async fn check_every_acked_key(addrs: &[SocketAddr], acked: &BTreeMap<Bytes, Bytes>) {
    let reader = client(addrs.to_vec());
    let mut lost = Vec::new();
    for (key, value) in acked {
        match reader.get(key.clone()).await {
            Ok(Some(v)) if v == value => {}
            other => lost.push(format!("{key:?}: {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, first: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Waits until node `addr` has applied everything the leader committed, then reads every
/// acknowledged key from its own state machine (a stale read: it shows what that node holds).
async fn check_node_holds_all(
    addr: SocketAddr,
    leaders: &[SocketAddr],
    acked: &BTreeMap<Bytes, Bytes>,
) {
    let leader = wait_for_leader(leaders, LEADER_TIMEOUT).await;
    wait_until(
        "the new member to apply the leader's commit index",
        LEADER_TIMEOUT,
        || async {
            stats(addr)
                .await
                .filter(|s| s.applied_index >= leader.commit_index)
        },
    )
    .await;
    let reader = client(vec![addr]);
    let mut missing = Vec::new();
    for (key, value) in acked {
        let got = reader
            .call(ringraft::wire::Request::Get {
                key: key.clone(),
                linearizable: false,
            })
            .await;
        match got {
            Ok(ringraft::wire::Reply::Value(v)) if v == value => {}
            other => missing.push(format!("{key:?}: {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "node at {addr} lacks {} of {} acknowledged keys, first: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn grow_three_to_five_and_shrink_back_under_load() {
    let cluster = Arc::new(Cluster::with_spares(3, 2, &[]));
    for id in 1..=3 {
        cluster.start_node(id);
    }
    let c = cluster.clone();
    run(move || async move {
        let addr = |id: u64| c.client_addr(id);
        let first: Vec<SocketAddr> = (1..=3).map(addr).collect();
        let all: Vec<SocketAddr> = (1..=5).map(addr).collect();
        wait_for_leader(&first, LEADER_TIMEOUT).await;
        let load = start_load(&all, 2);
        load.wait_for_more(100, "writes on three nodes").await;

        // Grow: 3 -> 5, each new node joining empty, as a learner, then promoted.
        let mut gaps = Vec::new();
        c.start_joining(4);
        gaps.push(add_and_promote(&c, &load, &all, 4).await);
        load.wait_for_more(50, "writes on four nodes").await;
        c.start_joining(5);
        gaps.push(add_and_promote(&c, &load, &all, 5).await);
        let (_, listing) = wait_until("the leader's listing", LEADER_TIMEOUT, || {
            leader_listing(&all)
        })
        .await;
        assert_eq!(
            voters(&listing),
            BTreeSet::from([1, 2, 3, 4, 5]),
            "{listing:?}"
        );
        load.wait_for_more(100, "writes on five nodes").await;

        // Shrink: 5 -> 3, removing a follower of the bootstrap, then the leader itself.
        let leader = wait_for_leader(&all, LEADER_TIMEOUT).await.node_id;
        let follower = (1..=3)
            .find(|&id| id != leader)
            .expect("two bootstrap followers");
        gaps.push(remove(&load, &all, follower).await);
        let remaining: Vec<SocketAddr> = (1..=5).filter(|&id| id != follower).map(addr).collect();
        let leader = wait_for_leader(&remaining, LEADER_TIMEOUT).await.node_id;
        gaps.push(remove(&load, &remaining, leader).await);
        let last: Vec<SocketAddr> = (1..=5)
            .filter(|&id| id != follower && id != leader)
            .map(addr)
            .collect();
        let new_leader = wait_for_leader(&last, LEADER_TIMEOUT).await;
        assert_ne!(
            new_leader.node_id, leader,
            "the removed leader stepped down"
        );
        let (_, listing) = wait_until("the new leader's listing", LEADER_TIMEOUT, || {
            leader_listing(&last)
        })
        .await;
        assert_eq!(voters(&listing).len(), 3, "{listing:?}");
        assert!(!voters(&listing).contains(&leader) && !voters(&listing).contains(&follower));
        load.wait_for_more(100, "writes on three nodes after the shrink")
            .await;

        // No write failed for good (`stop` checks) and, below, every one reads back.
        let (acked, _) = load.stop().await;
        eprintln!(
            "3 -> 5 -> 3: {} writes acknowledged, longest stretches without a commit per change \
             (ms): {gaps:?}",
            acked.len()
        );
        check_every_acked_key(&last, &acked).await;
        for id in [4, 5] {
            if id != leader && id != follower {
                check_node_holds_all(addr(id), &last, &acked).await;
            }
        }
        // The removed leader said so and serves no writes.
        let removed = stats(addr(leader))
            .await
            .expect("the removed node still answers stats");
        assert_ne!(removed.role, Role::Leader);
    });
    let log = cluster.log_text(
        (1..=3)
            .find(|&id| cluster.log_text(id).contains("REMOVED from the cluster"))
            .unwrap_or(1),
    );
    assert!(
        log.contains("REMOVED from the cluster"),
        "no removed node said so"
    );
}

#[test]
fn replace_a_node_whose_disk_died_under_load() {
    // Frequent snapshots: the new node is caught up from one, and the configuration must
    // survive compaction and restarts through the snapshots.
    let cluster = Arc::new(Cluster::with_spares(
        3,
        1,
        &[
            "--snapshot-threshold-entries",
            "100",
            "--snapshot-log-factor",
            "0",
        ],
    ));
    for id in 1..=3 {
        cluster.start_node(id);
    }
    let c = cluster.clone();
    let dead = run(move || async move {
        let addr = |id: u64| c.client_addr(id);
        let first: Vec<SocketAddr> = (1..=3).map(addr).collect();
        let all: Vec<SocketAddr> = (1..=4).map(addr).collect();
        let leader = wait_for_leader(&first, LEADER_TIMEOUT).await.node_id;
        let load = start_load(&all, 2);
        load.wait_for_more(100, "writes on three nodes").await;

        // The disk of a follower dies: kill -9, and its data is gone.
        let dead = (1..=3).find(|&id| id != leader).expect("a follower");
        let began = Instant::now();
        c.kill(dead);
        std::fs::remove_dir_all(c.data_dir(dead)).expect("wipe the dead node's data");
        load.wait_for_more(50, "writes with one node dead").await;

        // 1. Remove it. 2. Start a fresh node in join mode. 3. Add it as learner, promote it
        // once caught up.
        let alive: Vec<SocketAddr> = (1..=4).filter(|&id| id != dead).map(addr).collect();
        remove(&load, &alive, dead).await;
        c.start_joining(4);
        add_and_promote(&c, &load, &alive, 4).await;
        let (_, listing) = wait_until("the leader's listing", LEADER_TIMEOUT, || {
            leader_listing(&alive)
        })
        .await;
        let expected: BTreeSet<u64> = (1..=4).filter(|&id| id != dead).collect();
        assert_eq!(voters(&listing), expected, "{listing:?}");
        load.wait_for_more(100, "writes after the replacement")
            .await;
        let gap = longest_gap_ms(&load, began, Instant::now());

        let (acked, _) = load.stop().await;
        eprintln!(
            "replace node {dead} with node 4: {} writes acknowledged, longest stretch without a \
             commit from the kill to the end {gap} ms",
            acked.len()
        );
        check_every_acked_key(&alive, &acked).await;
        check_node_holds_all(addr(4), &alive, &acked).await;
        dead
    });
    // The configuration survives restarts: the new node restarted without --join (no
    // bootstrap voters), then a bootstrap survivor, which knows node 4's addresses only from
    // its log or snapshot. Both then see the same three voters.
    let survivor = (1..=3).find(|&id| id != dead).expect("a survivor");
    for id in [4, survivor] {
        cluster.terminate(id, Duration::from_secs(10));
        cluster.start_node(id);
        let c = cluster.clone();
        run(move || async move {
            let alive: Vec<SocketAddr> = (1..=4)
                .filter(|&i| i != dead)
                .map(|i| c.client_addr(i))
                .collect();
            wait_for_leader(&alive, LEADER_TIMEOUT).await;
            let expected: BTreeSet<u64> = (1..=4).filter(|&i| i != dead).collect();
            let listing = wait_until(
                "the restarted node's configuration",
                LEADER_TIMEOUT,
                || async { client(vec![c.client_addr(id)]).member_list().await.ok() },
            )
            .await;
            assert_eq!(
                voters(&listing),
                expected,
                "node {id} after a restart: {listing:?}"
            );
            let four = listing
                .members
                .iter()
                .find(|m| m.id == 4)
                .expect("node 4 listed");
            assert_eq!(
                four.peer_addr.as_deref(),
                Some(c.peer_addr(4).to_string().as_str()),
                "node {id} knows node 4's address after a restart"
            );
            client(alive)
                .put("after-restart", "ok")
                .await
                .expect("a write after the restart");
        });
    }
}

/// Runs `ringraft ARGS...`; returns (success, stdout + stderr).
fn ringraft(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .expect("run ringraft");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn refused_with(args: &[&str], reason: &str) {
    let (ok, text) = ringraft(args);
    assert!(!ok, "ringraft {args:?} succeeded: {text}");
    assert!(
        text.contains(reason),
        "ringraft {args:?} should say `{reason}`, said: {text}"
    );
}

#[test]
fn a_client_follows_the_leader_to_a_member_added_after_it_started() {
    let cluster = Arc::new(Cluster::with_spares(3, 1, &[]));
    for id in 1..=3 {
        cluster.start_node(id);
    }
    let first: Vec<SocketAddr> = (1..=3).map(|id| cluster.client_addr(id)).collect();
    let all: Vec<SocketAddr> = (1..=4).map(|id| cluster.client_addr(id)).collect();
    let c = cluster.clone();
    run(move || async move {
        wait_for_leader(&first, LEADER_TIMEOUT).await;
        // Given the first three nodes only, by address.
        let writer = client(first.clone());
        writer
            .put("before", "1")
            .await
            .expect("a write before the change");
        c.start_joining(4);
        change_until(&all, add_learner(&c, 4), |l| {
            learners(l).contains(&4) || voters(l).contains(&4)
        })
        .await;
        change_until(&all, simple(MemberChangeKind::Promote, 4), |l| {
            voters(l).contains(&4)
        })
        .await;
        wait_until("node 4 to lead", CHANGE_TIMEOUT, || {
            let all = all.clone();
            async move {
                let (addr, listing) = leader_listing(&all).await?;
                if listing.node_id == 4 {
                    return Some(());
                }
                // One attempt at the leader; a refusal (a transfer times out on a loaded
                // machine) is tried again on the next poll.
                let _ = client(vec![addr]).transfer_leader(4).await;
                None
            }
        })
        .await;
        // Every node the writer knows now names node 4, which it was not given: it follows
        // the hint's address (with rotation alone it would ask the first three until it gave
        // up).
        writer
            .put("after", "2")
            .await
            .expect("a write once node 4 leads");
        let at_4 = client(vec![c.client_addr(4)]);
        assert_eq!(
            at_4.get("after").await.expect("read at node 4").as_deref(),
            Some(&b"2"[..])
        );
    });
}

#[test]
fn bad_member_requests_are_refused_with_the_reason() {
    // A long election timeout: the leader must not step down (check-quorum) while both
    // followers are frozen below, before the second change has been refused.
    let cluster = Arc::new(Cluster::with_spares(3, 1, &["--election-ms", "3000"]));
    for id in 1..=3 {
        cluster.start_node(id);
    }
    let c = cluster.clone();
    let leader = run(move || async move {
        let first: Vec<SocketAddr> = (1..=3).map(|id| c.client_addr(id)).collect();
        let leader = wait_for_leader(&first, LEADER_TIMEOUT).await;
        // A change can be made only once the leader committed an entry of its term.
        client(first).put("k", "v").await.expect("a first write");
        leader.node_id
    });
    let at = cluster.client_addr(leader).to_string();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let other_follower = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    let at_follower = cluster.client_addr(follower).to_string();
    let peer_of_follower = cluster.peer_addr(follower).to_string();

    refused_with(&["member", "remove", &at, "9"], "node 9 is not a member");
    refused_with(
        &["member", "promote", &at, &follower.to_string()],
        "is already a voter",
    );
    refused_with(
        &[
            "member",
            "add",
            &at,
            &follower.to_string(),
            "127.0.0.1:1/127.0.0.1:2",
        ],
        "is already a member",
    );
    refused_with(
        &["member", "add", &at, "9", "nowhere"],
        "bad address for node 9",
    );
    refused_with(
        &[
            "member",
            "add",
            &at,
            "9",
            &format!("{peer_of_follower}/127.0.0.1:1"),
        ],
        &format!("already used by member {follower}"),
    );
    refused_with(
        &["member", "add", &at, "0", "127.0.0.1:1/127.0.0.1:2"],
        "must not be 0",
    );
    refused_with(
        &["member", "remove", &at_follower, "9"],
        &format!("not the leader; node {leader} is"),
    );

    // A learner that never ran is not promoted: it is not caught up.
    let context = cluster.member_context(4);
    let (ok, text) = ringraft(&["member", "add", &at, "4", &context, "--learner"]);
    assert!(ok, "adding a learner: {text}");
    refused_with(&["member", "promote", &at, "4"], "node 4 is not caught up");
    let (ok, text) = ringraft(&["member", "list", &at]);
    assert!(ok && text.contains("learner"), "{text}");

    // While a change cannot commit (both followers frozen), the next one is refused.
    cluster.pause(follower);
    cluster.pause(other_follower);
    let at_bg = at.clone();
    let pending = std::thread::spawn(move || ringraft(&["member", "remove", &at_bg, "4"]));
    // Once the leader has proposed the removal (its log says so), a second change is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .log_text(leader)
        .contains("proposed to remove node 4")
    {
        assert!(
            Instant::now() < deadline,
            "the removal never reached the leader"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    refused_with(
        &[
            "member",
            "add",
            &at,
            "9",
            "127.0.0.1:1/127.0.0.1:2",
            "--learner",
        ],
        "a membership change is in progress (remove node 4",
    );
    cluster.resume(follower);
    cluster.resume(other_follower);
    // Its outcome depends on timing (done, or the leader stepped down first); either is fine.
    let _ = pending.join().unwrap();

    // --join refuses a data directory that holds state.
    let dir = cluster.data_dir(follower);
    let (ok, text) = ringraft(&[
        "node",
        "--join",
        "--id",
        "7",
        "--members",
        "7=127.0.0.1:1/127.0.0.1:2",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!ok, "--join on a used data dir started: {text}");
    assert!(text.contains("--join needs an empty data dir"), "{text}");
    for id in 1..=3 {
        assert!(
            cluster.is_running(id),
            "node {id} survived the bad requests"
        );
    }
}
