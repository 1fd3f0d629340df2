//! Snapshots on real node processes, through the node's own path (serialized into its kept
//! buffer, written with O_DIRECT): every node of a cluster restarts from the snapshot it took,
//! and a node whose snapshot file is damaged refuses to start, naming the file.
//! (A follower far behind installing the leader's snapshot: `node_failover`.)

mod node_common;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_common::{client, run, stats, wait_for_leader, wait_until, write_batch, Acked, Cluster};

/// Snapshot every 200 entries and 1 MiB segments, so that a few thousand 1 KiB writes take
/// several snapshots and purge whole segments.
const COMPACTING: &[&str] = &[
    "--snapshot-threshold-entries",
    "200",
    "--segment-bytes",
    "1048576",
];

/// The snapshot file's format version 2 ("SRN2"), padded to whole 4 KiB blocks for O_DIRECT.
const MAGIC_V2: &[u8] = &0x5352_4e32u32.to_le_bytes();
/// Header bytes of a version 2 snapshot file (the data follows).
const HEADER_BYTES: usize = 40;

/// The node's snapshot file as written by the node's path, or None while there is none.
fn snapshot_file(data_dir: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(data_dir.join("snapshot")).ok()?;
    assert_eq!(&bytes[..4], MAGIC_V2, "written in format version 2");
    assert_eq!(bytes.len() % 4096, 0, "padded to whole blocks for O_DIRECT");
    Some(bytes)
}

#[test]
fn every_node_restarts_from_its_snapshot_and_a_damaged_one_is_refused() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, COMPACTING));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        wait_for_leader(&addrs, Duration::from_secs(20)).await;
        let session = Rc::new(client(addrs.clone()));
        let acked: Acked = Rc::default();
        write_batch(&session, &acked, 0, 2000).await;
        for id in cluster.ids() {
            let dir = cluster.data_dir(id);
            wait_until(
                "every node to save a snapshot of its own",
                Duration::from_secs(30),
                || {
                    let file = snapshot_file(&dir);
                    async move { file }
                },
            )
            .await;
        }
        let before: Vec<u64> = {
            let mut applied = Vec::new();
            for addr in &addrs {
                applied.push(stats(*addr).await.expect("stats").applied_index);
            }
            applied
        };

        // The whole cluster goes down and comes back from snapshot plus log.
        for id in cluster.ids() {
            cluster.kill(id);
        }
        for id in cluster.ids() {
            cluster.start_node(id);
        }
        wait_for_leader(&addrs, Duration::from_secs(30)).await;
        for (addr, applied) in addrs.iter().zip(before) {
            wait_until(
                "each node to recover what it had applied",
                Duration::from_secs(30),
                || async move { stats(*addr).await.filter(|s| s.applied_index >= applied) },
            )
            .await;
        }
        write_batch(&session, &acked, 1, 200).await;
        let reader = client(addrs.clone());
        let expected = acked.borrow().clone();
        for (key, value) in &expected {
            assert_eq!(
                reader.get(key.clone()).await.expect("get").as_ref(),
                Some(value),
                "{key:?}"
            );
        }

        // A flipped byte in a stopped node's snapshot: it refuses to start, naming the file,
        // rather than restore a wrong state machine.
        let damaged = 3;
        cluster.kill(damaged);
        let path = cluster.data_dir(damaged).join("snapshot");
        let mut bytes = std::fs::read(&path).expect("snapshot file");
        bytes[HEADER_BYTES + 10] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write damaged snapshot");
        cluster.start_node(damaged);
        let status = wait_until(
            "the node with a damaged snapshot to exit",
            Duration::from_secs(30),
            || {
                let status = cluster.exit_status(damaged);
                async move { status }
            },
        )
        .await;
        assert!(!status.success(), "{status:?}");
        let log = cluster.log_text(damaged);
        assert!(
            log.contains(&format!(
                "snapshot file {} is damaged: data CRC mismatch",
                path.display()
            )),
            "{log}"
        );
    });
    eprintln!("test took {:?}", started.elapsed());
}
