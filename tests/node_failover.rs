//! Crashes of real nodes: kill -9 of the leader under load (a new leader, no acknowledged write
//! lost, the killed node catches up after restart), and a node that was down
//! while the log was compacted catching up by snapshot.

mod node_common;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_common::{
    assert_local_state, client, leader_among, run, stats, wait_for_leader, wait_until, write_batch,
    Acked, Cluster, Load,
};
use ringraft::client::Client;
use ringraft::core::Role;

/// Sessions writing during the crash, each with several requests in flight.
const CLIENTS: u64 = 3;
const TASKS_PER_CLIENT: u64 = 8;

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let old = wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let load = Load::start(sessions(&addrs), TASKS_PER_CLIENT, "t");
        load.wait_for_acked(
            1000,
            "1000 writes before the crash",
            Duration::from_secs(30),
        )
        .await;

        cluster.kill(old.node_id);
        let killed_at = Instant::now();
        let survivors: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| *a != addrs[(old.node_id - 1) as usize])
            .collect();
        // A condition with a generous deadline, not a speed target: how fast failover is, is
        // measured by the failover bench configs, where the machine is not shared with a test
        // suite.
        let new = wait_for_leader(&survivors, Duration::from_secs(30)).await;
        let election = killed_at.elapsed();
        eprintln!(
            "node {} (leader of term {}) killed; node {} leads term {} after {election:?}",
            old.node_id, old.term, new.node_id, new.term
        );
        assert_ne!(new.node_id, old.node_id);
        assert!(new.term > old.term);

        load.wait_for_more(1000, "1000 more writes after the crash")
            .await;
        // The client retries through the leader change with the same sequences, in any order;
        // every write must get through (`stop` asserts it) and, below, with exactly its value.
        let (acked, _) = load.stop().await;
        eprintln!("{} writes acknowledged", acked.len());

        // No acknowledged write lost: each reads back, linearizably, with its value.
        let reader = client(survivors.clone());
        for (key, value) in &acked {
            assert_eq!(
                reader.get(key.clone()).await.expect("get").as_ref(),
                Some(value),
                "acknowledged write of {key:?} lost"
            );
        }

        // The killed node restarts and catches up: it applies everything the leader had committed.
        cluster.start_node(old.node_id);
        let target = stats(addrs[(new.node_id - 1) as usize])
            .await
            .expect("leader stats")
            .commit_index;
        let restarted = addrs[(old.node_id - 1) as usize];
        let caught_up = wait_until(
            "the restarted node to catch up",
            Duration::from_secs(30),
            || async move { stats(restarted).await.filter(|s| s.applied_index >= target) },
        )
        .await;
        assert_eq!(caught_up.role, Role::Follower);
        assert_eq!(caught_up.leader_id, Some(new.node_id));
        assert_local_state(restarted, &acked).await;
    });
    eprintln!("test took {:?}", started.elapsed());
}

/// Snapshot every 200 entries and 1 MiB segments, so that a few thousand 1 KiB writes purge
/// whole segments.
const COMPACTING: &[&str] = &[
    "--snapshot-threshold-entries",
    "200",
    "--segment-bytes",
    "1048576",
];

#[test]
fn a_node_down_during_compaction_catches_up_by_snapshot() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, COMPACTING));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let leader = wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let session = Rc::new(client(addrs.clone()));
        let acked: Acked = Rc::default();
        write_batch(&session, &acked, 0, 300).await;

        let down = if leader.node_id == 3 { 2 } else { 3 };
        let down_addr = addrs[(down - 1) as usize];
        let down_stats = stats(down_addr).await.expect("stats of the node to kill");
        cluster.kill(down);
        let down_last_index = down_stats.last_log_index;

        // 3000 writes of 1 KiB: about 3 MiB of log, so the segments the killed node still needs
        // are purged once snapshots are taken.
        write_batch(&session, &acked, 1, 3000).await;
        let leader_stats = wait_until(
            "the leader to take a snapshot",
            Duration::from_secs(30),
            || async { leader_among(&addrs).await.filter(|s| s.snapshots > 0) },
        )
        .await;
        let leader_dir = cluster.data_dir(leader_stats.node_id);
        let first_kept = wait_until(
            "the leader to purge old segments",
            Duration::from_secs(30),
            || {
                let first = first_log_index(&leader_dir);
                async move { first.filter(|f| *f > down_last_index + 1) }
            },
        )
        .await;
        eprintln!("node {down} killed at index {down_last_index}; the leader's log now starts at {first_kept}");

        cluster.start_node(down);
        let target = stats(addrs[(leader_stats.node_id - 1) as usize])
            .await
            .expect("leader stats")
            .commit_index;
        let caught_up = wait_until(
            "the restarted node to catch up",
            Duration::from_secs(60),
            || async move { stats(down_addr).await.filter(|s| s.applied_index >= target) },
        )
        .await;
        // It could not replay the leader's log from its own last index: that part is gone, so it
        // must have installed a snapshot.
        assert!(caught_up.snapshots >= 1, "{caught_up:?}");
        let expected = acked.borrow().clone();
        assert_local_state(down_addr, &expected).await;
        // Its installed snapshot is durable: killed again, it recovers from it and its log.
        cluster.kill(down);
        cluster.start_node(down);
        let applied = caught_up.applied_index;
        wait_until(
            "the node to recover from its installed snapshot",
            Duration::from_secs(30),
            || async move {
                stats(down_addr)
                    .await
                    .filter(|s| s.applied_index >= applied)
            },
        )
        .await;
        let expected = acked.borrow().clone();
        assert_local_state(down_addr, &expected).await;
        // And the cluster still serves, with the restarted node in it.
        write_batch(&session, &acked, 2, 100).await;
        let reader = client(addrs.clone());
        let expected = acked.borrow().clone();
        for (key, value) in expected.iter() {
            assert_eq!(
                reader.get(key.clone()).await.expect("get").as_ref(),
                Some(value)
            );
        }
    });
    eprintln!("test took {:?}", started.elapsed());
}

/// The first index of the oldest log segment in a node's data directory, if any. Segment files
/// are named by their first index (see src/log/segment.rs).
fn first_log_index(data_dir: &std::path::Path) -> Option<u64> {
    let mut first = None;
    for entry in walk(data_dir) {
        let name = entry.file_name()?.to_str()?.to_string();
        if let Some(index) = segment_first_index(&name) {
            first = Some(first.map_or(index, |f: u64| f.min(index)));
        }
    }
    first
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `00000000000000000001.seg` -> 1 (20 digits, non-zero).
fn segment_first_index(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|i| *i > 0)
}

/// `CLIENTS` sessions of the whole cluster.
fn sessions(addrs: &[SocketAddr]) -> Vec<Client> {
    (0..CLIENTS).map(|_| client(addrs.to_vec())).collect()
}

#[test]
fn three_successive_leader_kills_with_restarts_lose_nothing() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, &["--snapshot-threshold-entries", "500"]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let load = Load::start(sessions(&addrs), TASKS_PER_CLIENT, "t");
        for round in 0..3 {
            let old = wait_for_leader(&addrs, Duration::from_secs(30)).await;
            load.wait_for_more(500, "500 writes before the crash").await;
            cluster.kill(old.node_id);
            let killed_at = Instant::now();
            let survivors: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| *a != cluster.client_addr(old.node_id))
                .collect();
            let new = wait_for_leader(&survivors, Duration::from_secs(30)).await;
            let election = killed_at.elapsed();
            eprintln!("round {round}: killed leader {} of term {}; node {} leads term {} after {election:?}", old.node_id, old.term, new.node_id, new.term);
            load.wait_for_more(500, "500 writes after the crash").await;
            cluster.start_node(old.node_id);
            let target = stats(cluster.client_addr(new.node_id))
                .await
                .expect("leader stats")
                .commit_index;
            let restarted = cluster.client_addr(old.node_id);
            wait_until(
                "the restarted node to catch up",
                Duration::from_secs(30),
                || async move { stats(restarted).await.filter(|s| s.applied_index >= target) },
            )
            .await;
        }
        let (acked, _) = load.stop().await;
        eprintln!("{} writes acknowledged", acked.len());
        let reader = client(addrs.clone());
        for (key, value) in &acked {
            assert_eq!(
                reader.get(key.clone()).await.expect("get").as_ref(),
                Some(value),
                "acknowledged write of {key:?} lost"
            );
        }
        for addr in &addrs {
            let target = stats(addrs[0]).await.map_or(0, |s| s.commit_index).max(1);
            let addr = *addr;
            wait_until(
                "every node to apply everything",
                Duration::from_secs(30),
                || async move { stats(addr).await.filter(|s| s.applied_index >= target) },
            )
            .await;
            assert_local_state(addr, &acked).await;
        }
    });
    eprintln!("test took {:?}", started.elapsed());
}
