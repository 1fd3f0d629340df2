//! Three real nodes on loopback: election, 10,000 puts from several pipelining clients that read
//! their own writes, linearizable reads through a deposed leader while another client writes,
//! and exactly-once application of a retried session sequence.

mod node_common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_common::{client, run, wait_for_leader, Cluster};
use ringraft::client::{Client, ClientOptions};
use ringraft::core::Role;
use ringraft::wire::{Reply, Request};

/// Client sessions, each shared by `TASKS_PER_CLIENT` tasks: that many requests in flight per
/// session, `CLIENTS * TASKS_PER_CLIENT` in all.
const CLIENTS: u64 = 4;
const TASKS_PER_CLIENT: u64 = 16;
const PUTS_TOTAL: u64 = 10_000;
/// Keys each task owns and overwrites in turn.
const KEYS_PER_TASK: u64 = 4;

#[test]
fn three_nodes_serve_10k_puts_and_each_writer_reads_its_own_writes() {
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
/// tasks' requests in flight); every 8th write is followed by a read of the key, which must see
/// that write, since nobody else writes it. (Read-your-writes only: a leader serving reads from
/// its own state would pass this; `a_deposed_leader_never_serves_a_stale_linearizable_read`
/// is the linearizability test.) Returns each key's last value.
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

/// Rounds of pausing the leader; each is a fresh chance for a stale read.
const DEPOSE_ROUNDS: u32 = 3;

/// A leader that was frozen (SIGSTOP) while the others elected a new leader and took a write
/// still believes it leads when it wakes. A read that it served from its own state would return
/// the value from before the write, which a linearizable read must never do: it has to confirm
/// leadership with a quorum first (ReadIndex), learn that it was deposed, and refuse, or else
/// answer with the new value. The read goes to the deposed leader alone (one attempt, no
/// redirect), at once after it wakes, while a writer keeps writing through the new leader.
#[test]
fn a_deposed_leader_never_serves_a_stale_linearizable_read() {
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let writer = client(addrs.clone());
        let key = Bytes::from_static(b"deposed-read");
        let mut served = 0;
        for round in 0..DEPOSE_ROUNDS {
            let old = wait_for_leader(&addrs, Duration::from_secs(30)).await;
            let before = Bytes::from(format!("before-{round}"));
            writer
                .put(key.clone(), before.clone())
                .await
                .expect("put before");
            // Make sure the old leader has applied `before`: its stale state is that value.
            let old_addr = addrs[(old.node_id - 1) as usize];
            let only_old = |attempts_max| {
                let mut options =
                    ClientOptions::new(vec![old_addr.into()], 1_000_000 + u64::from(round));
                options.attempts_max = attempts_max;
                options.attempt_timeout = Duration::from_secs(2);
                Client::new(options)
            };
            assert_eq!(
                only_old(20).get(key.clone()).await.expect("read before"),
                Some(before.clone())
            );

            cluster.pause(old.node_id);
            let others: Vec<_> = addrs.iter().copied().filter(|a| *a != old_addr).collect();
            let new = wait_for_leader(&others, Duration::from_secs(30)).await;
            assert!(new.term > old.term);
            let after = Bytes::from(format!("after-{round}"));
            client(others.clone())
                .put(key.clone(), after.clone())
                .await
                .expect("put through the new leader");
            // Another client keeps writing while the deposed leader wakes.
            let busy = glommio::spawn_local({
                let (others, key) = (others.clone(), key.clone());
                let after = after.clone();
                async move {
                    let w = client(others);
                    for _ in 0..20 {
                        let _ = w.put(key.clone(), after.clone()).await;
                    }
                }
            });
            cluster.resume(old.node_id);
            match only_old(1).get(key.clone()).await {
                Ok(value) => {
                    assert_eq!(
                        value,
                        Some(after.clone()),
                        "round {round}: the deposed leader {} served a stale linearizable read",
                        old.node_id
                    );
                    served += 1;
                }
                Err(e) => eprintln!("round {round}: the deposed leader refused: {e}"),
            }
            busy.await;
        }
        eprintln!(
            "{served} of {DEPOSE_ROUNDS} reads served (with the new value), the rest refused"
        );
    });
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
        // answer for both, the same log index. The proposal count is only comparable while the
        // same node leads in the same term (a new leader proposes its own no-op entry); on a
        // loaded machine an election can fall in between, and then the pair is tried again on a
        // fresh sequence.
        let mut compared = false;
        for sequence in 9..29 {
            let before = session.stats().await.expect("stats");
            let (a, b) = futures_lite::future::zip(
                session.call_with_sequence(put(b"v4"), sequence),
                session.call_with_sequence(put(b"v4"), sequence),
            )
            .await;
            let (a, b) = (a.expect("first attempt"), b.expect("concurrent retry"));
            assert!(matches!(a, Reply::Done { .. }), "{a:?}");
            assert_eq!(
                a, b,
                "both attempts are answered with the one entry's result"
            );
            let after = session.stats().await.expect("stats");
            let same_leader = before.role == Role::Leader
                && (after.node_id, after.term, after.role)
                    == (before.node_id, before.term, before.role);
            if same_leader {
                assert_eq!(
                    after.proposals - before.proposals,
                    1,
                    "a concurrent retry must not be proposed again"
                );
                compared = true;
                break;
            }
        }
        assert!(compared, "leadership moved during each of 20 tries");
        // A later sequence applies normally.
        session
            .call_with_sequence(put(b"v3"), 29)
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

/// Requests in flight that all hear "not the leader" from the same follower move the client
/// once. When each moved it on from wherever it then pointed, an even number of them put it back
/// on the follower, so a session's first writes could bounce until they ran out of attempts.
#[test]
fn refusals_heard_at_once_move_the_client_once() {
    const IN_FLIGHT: u64 = 8;
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let leader = wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let follower = (1..=3)
            .find(|&id| id != leader.node_id)
            .expect("a follower");
        // Bare addresses, the follower first: the client finds the leader by rotation.
        let members = vec![c.client_addr(follower), c.client_addr(leader.node_id)];
        let client_id = (u64::from(std::process::id()) << 20) | 0xF_FFFF;
        let mut options =
            ClientOptions::new(members.into_iter().map(Into::into).collect(), client_id);
        options.attempts_max = 3;
        options.attempt_timeout = Duration::from_secs(10);
        let session = Rc::new(Client::new(options));
        let writes: Vec<_> = (0..IN_FLIGHT)
            .map(|i| {
                let session = session.clone();
                glommio::spawn_local(async move {
                    let key = Bytes::from(format!("refused-{i}"));
                    session.put(key, Bytes::from_static(b"v")).await
                })
            })
            .collect();
        for (i, write) in writes.into_iter().enumerate() {
            if let Err(e) = write.await {
                panic!("write {i} of {IN_FLIGHT} sent at once to a follower first: {e}");
            }
        }
    });
}
