//! Three real nodes on loopback: election, 10,000 puts from several pipelining clients with
//! linearizable reads, and exactly-once application of a retried session sequence.

mod node_common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_common::{client, run, wait_for_leader, Cluster};
use ringraft::wire::{Reply, Request};

/// Client sessions, each shared by `TASKS_PER_CLIENT` tasks: that many requests in flight per
/// session, `CLIENTS * TASKS_PER_CLIENT` in all.
const CLIENTS: u64 = 4;
const TASKS_PER_CLIENT: u64 = 16;
const PUTS_TOTAL: u64 = 10_000;
/// Keys each task owns and overwrites in turn.
const KEYS_PER_TASK: u64 = 4;

#[test]
fn three_nodes_serve_10k_puts_and_linearizable_reads() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let last_acked = run(move || async move {
        let leader = wait_for_leader(&addrs, Duration::from_secs(20)).await;
        eprintln!(
            "leader {} in term {} after {:?}",
            leader.node_id,
            leader.term,
            started.elapsed()
        );
        let load_started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let session = Rc::new(client(addrs.clone()));
            for t in 0..TASKS_PER_CLIENT {
                let session = session.clone();
                let task = c * TASKS_PER_CLIENT + t;
                tasks.push(glommio::spawn_local(
                    async move { writer(&session, task).await },
                ));
            }
        }
        let mut last_acked = BTreeMap::new();
        for task in tasks {
            last_acked.extend(task.await);
        }
        eprintln!("{PUTS_TOTAL} puts in {:?}", load_started.elapsed());
        // Every key reads back, through a fresh session, as its last acknowledged value.
        let reader = client(addrs.clone());
        for (key, value) in &last_acked {
            let got = reader.get(key.clone()).await.expect("get");
            assert_eq!(got.as_ref(), Some(value), "key {key:?}");
        }
        last_acked
    });
    assert_eq!(
        last_acked.len() as u64,
        CLIENTS * TASKS_PER_CLIENT * KEYS_PER_TASK
    );
    eprintln!("test took {:?}", started.elapsed());
}

/// Puts its share of the 10,000 writes to its own keys, one at a time (its session has other
/// tasks' requests in flight); every 8th write is followed by a linearizable read of the key,
/// which must see that write, since nobody else writes it. Returns each key's last value.
async fn writer(session: &ringraft::client::Client, task: u64) -> BTreeMap<Bytes, Bytes> {
    let tasks = CLIENTS * TASKS_PER_CLIENT;
    let puts = PUTS_TOTAL / tasks + u64::from(task < PUTS_TOTAL % tasks);
    let mut last = BTreeMap::new();
    for i in 0..puts {
        let key = Bytes::from(format!("task{task:03}-key{}", i % KEYS_PER_TASK));
        let value = Bytes::from(format!("task{task}-put{i}"));
        session
            .put(key.clone(), value.clone())
            .await
            .unwrap_or_else(|e| panic!("put {key:?} #{i}: {e}"));
        if i % 8 == 0 {
            let got = session
                .get(key.clone())
                .await
                .unwrap_or_else(|e| panic!("get {key:?}: {e}"));
            assert_eq!(
                got.as_ref(),
                Some(&value),
                "read of {key:?} right after its write"
            );
        }
        last.insert(key, value);
    }
    last
}

#[test]
fn a_retried_sequence_applies_once() {
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    run(move || async move {
        wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let session = client(addrs.clone());
        let key = Bytes::from_static(b"exactly-once");
        let put = |value: &'static [u8]| Request::Put {
            key: key.clone(),
            value: Bytes::from_static(value),
        };
        let first = session
            .call_with_sequence(put(b"v1"), 7)
            .await
            .expect("first put");
        let retry = session
            .call_with_sequence(put(b"v2"), 7)
            .await
            .expect("retried put");
        assert!(matches!(first, Reply::Done { .. }), "{first:?}");
        assert_eq!(
            retry, first,
            "a retry must get the first attempt's result, log index included"
        );
        assert_eq!(
            session.get(key.clone()).await.expect("get"),
            Some(Bytes::from_static(b"v1"))
        );
        // A retry that arrives while the first attempt is still in the log (a client whose
        // attempt timed out on a congested path) joins the pending entry: one proposal, one
        // answer for both, the same log index.
        let proposals_before = session.stats().await.expect("stats").proposals;
        let (a, b) = futures_lite::future::zip(
            session.call_with_sequence(put(b"v4"), 9),
            session.call_with_sequence(put(b"v4"), 9),
        )
        .await;
        let (a, b) = (a.expect("first attempt"), b.expect("concurrent retry"));
        assert!(matches!(a, Reply::Done { .. }), "{a:?}");
        assert_eq!(
            a, b,
            "both attempts are answered with the one entry's result"
        );
        let proposals_after = session.stats().await.expect("stats").proposals;
        assert_eq!(
            proposals_after - proposals_before,
            1,
            "a concurrent retry must not be proposed again"
        );
        // A later sequence applies normally.
        session
            .call_with_sequence(put(b"v3"), 8)
            .await
            .expect("next put");
        assert_eq!(
            session.get(key.clone()).await.expect("get"),
            Some(Bytes::from_static(b"v3"))
        );
    });
}

#[test]
fn sigterm_stops_every_node_cleanly_and_a_full_restart_keeps_the_data() {
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let written = {
        let addrs = addrs.clone();
        run(move || async move {
            wait_for_leader(&addrs, Duration::from_secs(20)).await;
            let session = client(addrs.clone());
            let mut written = Vec::new();
            for i in 0..200u32 {
                let (key, value) = (
                    Bytes::from(format!("restart-{i}")),
                    Bytes::from(format!("v{i}")),
                );
                session.put(key.clone(), value.clone()).await.expect("put");
                written.push((key, value));
            }
            written
        })
    };
    for id in cluster.ids() {
        assert!(
            cluster.terminate(id, Duration::from_secs(20)),
            "node {id} did not exit cleanly on SIGTERM"
        );
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    run(move || async move {
        wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let session = client(addrs.clone());
        for (key, value) in &written {
            assert_eq!(
                session
                    .get(key.clone())
                    .await
                    .expect("get after restart")
                    .as_ref(),
                Some(value)
            );
        }
        session
            .put("after-restart", "yes")
            .await
            .expect("put after restart");
    });
}
