//! Nodes hosting several Raft groups (`--groups N`), as real processes: keys are routed to their
//! group on every node and across restarts, wrong requests are refused with clear errors, a
//! kill -9 under load loses no acknowledged write in any group, and each group has its own
//! thread and metrics label.

mod node_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use node_common::{run, wait_until, Cluster, Load};
use ringraft::client::{Client, ClientOptions, Error};
use ringraft::core::Role;
use ringraft::kv::group_of;
use ringraft::wire::{
    self, ClientError, ClientRequest, FrameDecoder, FrameType, NodeStats, Request,
};

/// A client session for a cluster of `groups` groups.
fn group_client(members: Vec<SocketAddr>, groups: u32, id: u64) -> Client {
    let id = id | (u64::from(std::process::id()) << 20);
    let mut options = ClientOptions::new(members.into_iter().map(Into::into).collect(), id);
    options.attempt_timeout = Duration::from_secs(2);
    options.attempts_max = 40;
    options.groups = groups;
    Client::new(options)
}

/// Group `group`'s stats at `addr`, or None if it does not answer.
async fn group_stats(addr: SocketAddr, groups: u32, group: u32) -> Option<NodeStats> {
    let mut options = ClientOptions::new(vec![addr.into()], u64::MAX - 1);
    options.attempt_timeout = Duration::from_secs(1);
    options.attempts_max = 1;
    options.groups = groups;
    Client::new(options).stats_of(group).await.ok()
}

/// The node leading group `group` once every answering node agrees on it, in one term.
async fn group_leader(addrs: &[SocketAddr], groups: u32, group: u32) -> Option<NodeStats> {
    let mut all = Vec::new();
    for addr in addrs {
        if let Some(s) = group_stats(*addr, groups, group).await {
            all.push(s);
        }
    }
    if all.len() * 2 <= addrs.len() {
        return None;
    }
    let term = all.iter().map(|s| s.term).max()?;
    let leader = all
        .iter()
        .find(|s| s.role == Role::Leader && s.term == term)?
        .clone();
    all.iter()
        .all(|s| {
            s.term == term && (s.node_id == leader.node_id || s.leader_id == Some(leader.node_id))
        })
        .then_some(leader)
}

/// Waits for a leader in every group; returns each group's leader id.
async fn wait_for_group_leaders(addrs: &[SocketAddr], groups: u32) -> Vec<u64> {
    let mut leaders = Vec::new();
    for group in 0..groups {
        let addrs = addrs.to_vec();
        let leader = wait_until(
            &format!("a leader of group {group}"),
            Duration::from_secs(30),
            || {
                let addrs = addrs.clone();
                async move { group_leader(&addrs, groups, group).await }
            },
        )
        .await;
        assert_eq!(leader.group, group, "stats of another group answered");
        assert_eq!(leader.groups, groups);
        leaders.push(leader.node_id);
    }
    leaders
}

/// Waits until every group is led by its preferred voter, voter (group mod 3) of nodes 1..=3.
async fn wait_for_spread_leaders(addrs: &[SocketAddr], groups: u32) {
    let addrs = addrs.to_vec();
    wait_until(
        "every group led by its preferred node",
        Duration::from_secs(60),
        || {
            let addrs = addrs.clone();
            async move {
                for group in 0..groups {
                    let leader = group_leader(&addrs, groups, group).await?;
                    if leader.node_id != u64::from(group % 3) + 1 {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
}

/// One request over a plain socket, answered by one response (for requests the client library
/// would never send).
fn raw_request(addr: SocketAddr, request: &ClientRequest) -> wire::ClientResponse {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut frame = Vec::new();
    wire::write_frame(
        FrameType::ClientRequest,
        wire::encode_client_request(request, &mut fbb),
        &mut frame,
    )
    .expect("frame");
    stream.write_all(&frame).expect("send");
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame().expect("a valid frame") {
            let body = frame
                .body_of(FrameType::ClientResponse)
                .expect("a response");
            return wire::decode_client_response(body).expect("decodes");
        }
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "the node closed the connection without answering");
        decoder.extend_from_slice(&buf[..n]);
    }
}

fn refusal(response: wire::ClientResponse) -> String {
    match response.result {
        Err(ClientError::Refused { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_key_lands_in_its_group_on_every_node_and_across_restarts() {
    const GROUPS: u32 = 2;
    let cluster = Cluster::start(3, &["--groups", "2"]);
    let addrs = cluster.client_addrs();
    let written: BTreeMap<Bytes, Bytes> = {
        let addrs = addrs.clone();
        run(move || async move {
            wait_for_group_leaders(&addrs, GROUPS).await;
            let client = group_client(addrs.clone(), GROUPS, 1);
            let mut written = BTreeMap::new();
            for i in 0..200u32 {
                let key = Bytes::from(format!("key-{i}"));
                let value = Bytes::from(format!("value-{i}"));
                client.put(key.clone(), value.clone()).await.expect("put");
                written.insert(key, value);
            }
            written
        })
    };
    let per_group = |written: &BTreeMap<Bytes, Bytes>| {
        let mut n = [0u64; GROUPS as usize];
        for key in written.keys() {
            n[group_of(key, GROUPS) as usize] += 1;
        }
        n
    };
    assert!(
        per_group(&written).iter().all(|&n| n > 0),
        "both groups get keys"
    );

    // A group's applied index counts the writes routed to it plus a few entries of its own (a
    // no-op per term): far fewer than the hundred or so keys of the other group.
    let counts = per_group(&written);
    {
        let addrs = addrs.clone();
        run(move || async move {
            for group in 0..GROUPS {
                let leader = wait_until("a group leader", Duration::from_secs(30), || {
                    let addrs = addrs.clone();
                    async move { group_leader(&addrs, GROUPS, group).await }
                })
                .await;
                assert!(
                    leader.applied_index >= counts[group as usize],
                    "group {group} applied {} < {} writes routed to it",
                    leader.applied_index,
                    counts[group as usize]
                );
                assert!(
                    leader.applied_index <= counts[group as usize] + 20,
                    "group {group} applied {} entries for {} writes: keys of the other group \
                     landed here",
                    leader.applied_index,
                    counts[group as usize]
                );
            }
        });
    }

    // Every node, restarted, still has each key in its group.
    for id in cluster.ids() {
        assert!(
            cluster.terminate(id, Duration::from_secs(20)),
            "node {id} stopped cleanly"
        );
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    {
        let addrs = addrs.clone();
        let written = written.clone();
        run(move || async move {
            wait_for_group_leaders(&addrs, GROUPS).await;
            let client = group_client(addrs.clone(), GROUPS, 2);
            for (key, value) in &written {
                let got = client.get(key.clone()).await.expect("get");
                assert_eq!(got.as_ref(), Some(value), "{key:?} after the restart");
            }
        });
    }

    // A request naming a group other than its key's is refused, naming both.
    let key = Bytes::from_static(b"key-0");
    let owner = group_of(&key, GROUPS);
    let wrong = ClientRequest::new(
        7,
        1,
        1,
        (owner + 1) % GROUPS,
        Request::Put {
            key: key.clone(),
            value: Bytes::from_static(b"x"),
        },
    );
    let message = refusal(raw_request(addrs[0], &wrong));
    assert!(
        message.contains(&format!("hashes to group {owner}"))
            && message.contains(&format!("names group {}", (owner + 1) % GROUPS)),
        "{message}"
    );
    // And one for a group the node does not have.
    let absent = ClientRequest::new(7, 0, 2, GROUPS, Request::Stats);
    let message = refusal(raw_request(addrs[0], &absent));
    assert!(message.contains("groups 0..2"), "{message}");
    // The library refuses likewise when told the wrong group explicitly.
    let addrs_again = addrs.clone();
    let e = run(move || async move {
        let client = group_client(addrs_again, GROUPS, 3);
        client
            .call_in(
                (owner + 1) % GROUPS,
                Request::Put {
                    key,
                    value: Bytes::from_static(b"y"),
                },
            )
            .await
            .expect_err("refused")
    });
    assert!(
        matches!(&e, Error::Server(ClientError::Refused { message }) if message.contains("hashes to group")),
        "{e}"
    );
}

#[test]
fn an_old_client_protocol_is_refused_with_both_versions() {
    let cluster = Cluster::start(1, &[]);
    let addr = cluster.client_addrs()[0];
    run(move || async move {
        wait_for_group_leaders(&[addr], 1).await;
    });
    let mut old = ClientRequest::new(
        9,
        1,
        1,
        0,
        Request::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        },
    );
    old.protocol_version = 0; // What a client before groups sends: no version field at all.
    let message = refusal(raw_request(addr, &old));
    assert!(
        message.contains("client protocol version 0")
            && message.contains(&format!("speaks version {}", wire::CLIENT_PROTOCOL_VERSION)),
        "{message}"
    );
}

#[test]
fn a_groups_mismatch_is_refused_clearly() {
    // The data dir remembers its count.
    let cluster = Cluster::new(1, &[]);
    cluster.start_node_with(1, &["--groups", "2"]);
    run({
        let addrs = cluster.client_addrs();
        move || async move {
            wait_for_group_leaders(&addrs, 2).await;
        }
    });
    assert!(cluster.terminate(1, Duration::from_secs(20)));
    assert_eq!(
        std::fs::read_to_string(cluster.data_dir(1).join("GROUPS"))
            .expect("GROUPS recorded")
            .trim(),
        "2"
    );
    cluster.start_node_with(1, &["--groups", "3"]);
    let exited = poll_exit(&cluster, 1);
    assert!(
        !exited.success(),
        "a node with the wrong group count must not run"
    );
    let log = cluster.log_text(1);
    assert!(
        log.contains("made with groups = 2") && log.contains("configured with groups = 3"),
        "{log}"
    );

    // Peers with different counts refuse each other, naming both counts.
    let peers = Cluster::new(2, &[]);
    peers.start_node_with(1, &["--groups", "2"]);
    peers.start_node_with(2, &["--groups", "1"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = peers.log_text(1) + &peers.log_text(2);
        if log.contains("hosts groups = 1, this node groups = 2")
            || log.contains("hosts groups = 2, this node groups = 1")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal naming both counts:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until node `id` exits by itself (30 s at most).
fn poll_exit(cluster: &Cluster, id: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = cluster.exit_status(id) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_group_has_its_thread_and_its_metrics_label() {
    let cluster = Cluster::start(3, &["--groups", "2"]);
    let addrs = cluster.client_addrs();
    run({
        let addrs = addrs.clone();
        move || async move {
            wait_for_group_leaders(&addrs, 2).await;
            let client = group_client(addrs, 2, 4);
            for i in 0..50 {
                client
                    .put(format!("m-{i}").into_bytes(), b"v".to_vec())
                    .await
                    .expect("put");
            }
        }
    });
    let pid = cluster.pid(1).expect("running");
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    for name in ["ringraft-g0", "ringraft-g1", "ringraft-cli-1"] {
        assert!(
            names.iter().any(|n| n == name),
            "no thread {name}: {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "ringraft-raft"), "{names:?}");
    // `ringraft stats` prints every group; `ringraft load --groups` counts writes per group.
    let stats = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["stats", &cluster.client_addr(1).to_string()])
        .output()
        .expect("ringraft stats");
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.contains("group 0 of 2: node 1") && stats.contains("group 1 of 2: node 1"),
        "{stats}"
    );
    let cluster_arg = cluster
        .client_addrs()
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "load",
            "--cluster",
            &cluster_arg,
            "--groups",
            "2",
            "--quiet",
        ])
        .args(["--connections", "2", "--inflight", "4", "--warmup-s", "0.2"])
        .args(["--duration-s", "1", "--key-space", "1000"])
        .output()
        .expect("ringraft load");
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
    for group in 0..2 {
        let line = report
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(&format!("group {group:>3} writes/s"))
            })
            .unwrap_or_else(|| panic!("no line for group {group}:\n{report}"));
        let per_s: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(per_s > 0.0, "{line}");
    }
    let text = ringraft::bench::scrape::fetch(cluster.metrics_addr(1), Duration::from_secs(10))
        .expect("scrape");
    let parsed = ringraft::bench::scrape::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for group in ["0", "1"] {
        let applied = ringraft::bench::scrape::value(
            &parsed,
            "ringraft_applied_index",
            &[("node", "1"), ("group", group)],
        );
        assert!(
            applied.is_some_and(|v| v > 0.0),
            "group {group}: {applied:?}\n{text}"
        );
    }
}

#[test]
fn a_kill_9_of_a_node_leading_groups_loses_no_acknowledged_write_in_any_group() {
    const GROUPS: u32 = 4;
    let cluster = Cluster::start(3, &["--groups", "4"]);
    let addrs = cluster.client_addrs();
    // Leaders spread at start: group g on node (g mod 3) + 1, so node 1 leads groups 0 and 3.
    run({
        let addrs = addrs.clone();
        move || async move { wait_for_spread_leaders(&addrs, GROUPS).await }
    });
    let victim = 1;
    let acked = {
        let load_addrs = addrs.clone();
        let load_and_kill = move || async move {
            let addrs = load_addrs;
            let sessions = (0..3)
                .map(|s| group_client(addrs.clone(), GROUPS, 10 + s))
                .collect();
            let load = Load::start(sessions, 8, "w");
            load.wait_for_acked(400, "writes before the kill", Duration::from_secs(60))
                .await;
            load
        };
        // The load runs on an executor of its own thread; the kill happens from this one.
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            run(move || async move {
                let load = load_and_kill().await;
                tx.send(()).expect("tell");
                // Wait for the kill and restart without blocking the executor.
                wait_until("the restart", Duration::from_secs(120), || {
                    let done = go_rx.try_recv().is_ok();
                    async move { done.then_some(()) }
                })
                .await;
                load.wait_for_more(400, "writes after the restart").await;
                load.stop().await.0
            })
        });
        rx.recv().expect("load started");
        cluster.kill(victim);
        // The other nodes elect new leaders for its groups while the load goes on.
        let others: Vec<SocketAddr> = addrs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != victim)
            .map(|(_, a)| *a)
            .collect();
        run(move || async move {
            wait_for_group_leaders(&others, GROUPS).await;
        });
        cluster.start_node(victim);
        go_tx.send(()).expect("go");
        handle.join().expect("load thread")
    };
    assert!(!acked.is_empty());
    // Every group of the restarted node catches up: its commit index reaches the leader's.
    let victim_addr = addrs[(victim - 1) as usize];
    run({
        let addrs = addrs.clone();
        move || async move {
            for group in 0..GROUPS {
                let leader = wait_until("a group leader", Duration::from_secs(30), || {
                    let addrs = addrs.clone();
                    async move { group_leader(&addrs, GROUPS, group).await }
                })
                .await;
                wait_until(
                    &format!("node {victim} catching up group {group}"),
                    Duration::from_secs(60),
                    || async move {
                        let mine = group_stats(victim_addr, GROUPS, group).await?;
                        (mine.applied_index >= leader.commit_index).then_some(())
                    },
                )
                .await;
            }
        }
    });
    // Leaders are spread again: the restarted node takes its groups back.
    run({
        let addrs = addrs.clone();
        move || async move { wait_for_spread_leaders(&addrs, GROUPS).await }
    });
    // No acknowledged write is lost in any group: each reads back as written.
    let mut per_group = [0usize; GROUPS as usize];
    for key in acked.keys() {
        per_group[group_of(key, GROUPS) as usize] += 1;
    }
    assert!(per_group.iter().all(|&n| n > 0), "{per_group:?}");
    run(move || async move {
        let client = group_client(addrs, GROUPS, 99);
        for (key, value) in &acked {
            let got = client.get(key.clone()).await.expect("get");
            assert_eq!(got.as_ref(), Some(value), "{key:?} lost");
        }
    });
}

#[test]
fn a_hot_group_does_not_stall_another() {
    const GROUPS: u32 = 2;
    let cluster = Cluster::start(3, &["--groups", "2"]);
    let addrs = cluster.client_addrs();
    run(move || async move {
        wait_for_spread_leaders(&addrs, GROUPS).await;
        // Group 0 hot: 4 sessions x 64 writers of 16 KiB values, for as long as this test runs.
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let hot_acked = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let mut hot = Vec::new();
        for s in 0..4u64 {
            let session = std::rc::Rc::new(group_client(addrs.clone(), GROUPS, 200 + s));
            for t in 0..64u64 {
                let (session, stop, hot_acked) = (session.clone(), stop.clone(), hot_acked.clone());
                hot.push(glommio::spawn_local(async move {
                    let mut i = 0u64;
                    while !stop.get() {
                        let key = hot_key(s * 64 + t, i);
                        i += 1;
                        if session.put(key, vec![b'h'; 16 << 10]).await.is_ok() {
                            hot_acked.set(hot_acked.get() + 1);
                        }
                    }
                }));
            }
        }
        wait_until("the hot group under load", Duration::from_secs(60), || {
            let n = hot_acked.get();
            async move { (n >= 200).then_some(()) }
        })
        .await;
        // Group 1, one writer: every write succeeds while group 0 is still overloaded.
        let cold = group_client(addrs.clone(), GROUPS, 300);
        let mut written = 0;
        for i in 0.. {
            let key = format!("cold-{i}");
            if group_of(key.as_bytes(), GROUPS) != 1 {
                continue;
            }
            cold.put(key, b"c".to_vec())
                .await
                .unwrap_or_else(|e| panic!("a write of the cold group failed: {e}"));
            written += 1;
            if written == 200 {
                break;
            }
        }
        let hot_during = hot_acked.get();
        assert!(!stop.get(), "the hot load was still running");
        stop.set(true);
        for task in hot {
            task.await;
        }
        assert!(hot_during >= 200, "the hot group was loaded: {hot_during}");
        // And the cold group's leader committed them: its applied index holds them all.
        let leader = group_leader(&addrs, GROUPS, 1)
            .await
            .expect("group 1 leader");
        assert!(leader.applied_index >= 200, "{leader:?}");
    });
}

/// Key `i` of hot writer `task`, one of group 0's keys.
fn hot_key(task: u64, i: u64) -> Vec<u8> {
    (0u64..)
        .map(|salt| format!("hot-{task}-{i}-{salt}").into_bytes())
        .find(|key| group_of(key, 2) == 0)
        .expect("half of all keys are in group 0")
}
