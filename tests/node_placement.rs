//! Placement: the same three-node cluster serves writes and reads whether each node runs one
//! executor (`--cpus 1`: everything on the Raft executor) or two (`--cpus 2`: client connections
//! and `/metrics` on a client executor, talking to the Raft executor over bounded channels), and
//! the node's threads say which executor they are.

mod node_common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use node_common::{client, run, wait_for_leader, Cluster};
use ringraft::bench::scrape;

/// Writers, each with its own keys and one request in flight; they share two sessions, so each
/// connection has many requests in flight.
const WRITERS: u64 = 16;
const PUTS_PER_WRITER: u64 = 64;
const KEYS_PER_WRITER: u64 = 4;

#[test]
fn one_executor_serves_writes_and_reads() {
    serves_writes_and_reads("1", &[]);
}

#[test]
fn two_executors_serve_writes_and_reads_with_clients_off_the_raft_executor() {
    serves_writes_and_reads("2", &["ringraft-cli-1"]);
}

/// Starts three nodes with `--cpus cpus`, checks their threads' names, writes from pipelining
/// writers that each read their own writes back, then reads every key through a fresh session
/// (linearizable) and scrapes every node's `/metrics`.
fn serves_writes_and_reads(cpus: &str, client_threads: &[&str]) {
    let cluster = Cluster::start(3, &["--cpus", cpus]);
    let addrs = cluster.client_addrs();
    let last = run(move || async move {
        wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let sessions = [
            Rc::new(client(addrs.clone())),
            Rc::new(client(addrs.clone())),
        ];
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let session = sessions[(w % 2) as usize].clone();
            tasks.push(glommio::spawn_local(
                async move { write(&session, w).await },
            ));
        }
        let mut last = BTreeMap::new();
        for task in tasks {
            last.extend(task.await);
        }
        let reader = client(addrs.clone());
        for (key, value) in &last {
            let got = reader.get(key.clone()).await.expect("get");
            assert_eq!(got.as_ref(), Some(value), "key {key:?}");
        }
        last
    });
    assert_eq!(last.len() as u64, WRITERS * KEYS_PER_WRITER);
    let mut proposals = 0.0;
    for id in cluster.ids() {
        let names = thread_names(cluster.pid(id).expect("running"));
        assert!(
            names.iter().any(|n| n == "ringraft-raft"),
            "node {id}: no Raft executor thread among {names:?}"
        );
        let clients: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("ringraft-cli"))
            .collect();
        assert_eq!(clients, client_threads, "node {id}: threads {names:?}");
        let text = scrape::fetch(cluster.metrics_addr(id), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("node {id}: /metrics: {e}"));
        let parsed = scrape::parse(&text).unwrap_or_else(|e| panic!("node {id}: {e}\n{text}"));
        let node = id.to_string();
        let value = |name: &str| {
            scrape::value(&parsed, name, &[("node", &node)])
                .unwrap_or_else(|| panic!("node {id}: no {name}\n{text}"))
        };
        assert!(
            value("ringraft_received_bytes_total") > 0.0,
            "node {id}\n{text}"
        );
        proposals += value("ringraft_proposals_total");
    }
    // Every acknowledged put was proposed by some leader (retries may propose again).
    assert!(
        proposals >= (WRITERS * PUTS_PER_WRITER) as f64,
        "{proposals} proposals for {} puts",
        WRITERS * PUTS_PER_WRITER
    );
}

/// Puts `PUTS_PER_WRITER` values to the writer's own keys, reading every 8th back at once.
async fn write(session: &ringraft::client::Client, writer: u64) -> BTreeMap<Bytes, Bytes> {
    let mut last = BTreeMap::new();
    for i in 0..PUTS_PER_WRITER {
        let key = Bytes::from(format!("w{writer:02}-k{}", i % KEYS_PER_WRITER));
        let value = Bytes::from(format!("w{writer}-put{i}"));
        session
            .put(key.clone(), value.clone())
            .await
            .unwrap_or_else(|e| panic!("put {key:?} #{i}: {e}"));
        if i % 8 == 0 {
            let got = session.get(key.clone()).await.expect("get");
            assert_eq!(
                got.as_ref(),
                Some(&value),
                "read of {key:?} after its write"
            );
        }
        last.insert(key, value);
    }
    last
}

/// The names (`comm`) of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    let mut names: Vec<String> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}
