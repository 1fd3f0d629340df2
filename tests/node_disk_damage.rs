//! Damaged disks on real node processes: a follower whose last acknowledged record is damaged,
//! and one whose oldest segment has a flipped byte, come back from the cluster by themselves
//! (protocol-aware recovery: the node withholds its vote until a leader has given back what it
//! had acknowledged), `--strict-recovery` refuses instead without touching the data, and
//! `ringraft log verify` names what it found.

mod node_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_common::{
    assert_local_state, client, run, stats, wait_for_leader, wait_until, Acked, Cluster, Load,
};
use ringraft::client::Client;
use ringraft::core::Role;
use ringraft::log::RecordSpan;

/// Generous: a condition, not a speed target (the 2-core test machine is shared).
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_follower_whose_last_acknowledged_record_is_damaged_catches_up_without_voting() {
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let leader = wait_for_leader(&addrs, DEADLINE).await;
        let damaged = follower_of(&leader);
        let other = (1..=3)
            .find(|&id| id != leader.node_id && id != damaged)
            .expect("a third node");
        let session = client(addrs.clone());
        let acked: Acked = Rc::default();
        write_keys(&session, &acked, "tail", 300).await;
        let target =
            stopped_after_catching_up(&cluster, damaged, cluster.client_addr(leader.node_id)).await;

        // Damage the middle of the last record: its entries were acknowledged (the hard state's
        // acked_index covers them), so the node must not drop them as a harmless torn write.
        let log_dir = cluster.data_dir(damaged).join("log");
        let last = ringraft::log::records(&log_dir)
            .expect("read the log")
            .pop()
            .expect("a record");
        assert!(
            last.last_index >= target,
            "the stopped follower's log ends at {} below the commit index {target}",
            last.last_index
        );
        damage(&last.file, last.offset + u64::from(last.bytes) / 2);
        let (code, report) = log_verify(&cluster.data_dir(damaged));
        eprintln!("ringraft log verify:\n{report}");
        assert_eq!(code, Some(2), "a damaged last record reads as a torn tail");
        assert!(
            report.contains(&format!(
                "torn write at {} offset {}",
                last.file.display(),
                last.offset
            )),
            "verify names the file and offset of the damaged record: {report}"
        );

        // With the leader frozen, the other follower campaigns; the damaged node must refuse.
        cluster.pause(leader.node_id);
        cluster.start_node(damaged);
        let restarted_at = Instant::now();
        let damaged_addr = cluster.client_addr(damaged);
        let recovering = wait_until(
            "the restarted node to report recovery",
            DEADLINE,
            // Two refusals: the other follower's campaign failed, and it tried again.
            || async move { stats(damaged_addr).await.filter(|s| s.votes_withheld >= 2) },
        )
        .await;
        assert_eq!(
            recovering.recovering_to,
            Some(last.last_index),
            "it withholds votes until its log is back to what it had acknowledged"
        );
        assert!(
            recovering.last_log_index < last.first_index,
            "the damaged record was dropped: the log ends at {}",
            recovering.last_log_index
        );
        let other_stats = stats(cluster.client_addr(other))
            .await
            .expect("other follower");
        assert_ne!(
            other_stats.role,
            Role::Leader,
            "no leader can be elected without the damaged node's vote"
        );
        assert_eq!(
            other_stats.term, leader.term,
            "no election got past pre-vote without the damaged node's vote"
        );

        cluster.resume(leader.node_id);
        let resumed_at = Instant::now();
        let caught_up = wait_until("the damaged node to catch up", DEADLINE, || async move {
            stats(damaged_addr)
                .await
                .filter(|s| s.recovering_to.is_none() && s.applied_index >= target)
        })
        .await;
        eprintln!(
            "caught up (index {}) {:?} after the leader resumed, {:?} after the restart; \
             votes withheld meanwhile: {}",
            caught_up.applied_index,
            resumed_at.elapsed(),
            restarted_at.elapsed(),
            caught_up.votes_withheld
        );
        // Once the frozen leader is back, the other follower's pending pre-vote may still win
        // it a term with the old leader's vote; the damaged node's refusals are what the
        // assertions above check.
        eprintln!(
            "term {} after catching up (the leader's was {})",
            caught_up.term, leader.term
        );
        assert!(caught_up.votes_withheld >= recovering.votes_withheld);
        let acked = acked.borrow().clone();
        assert_local_state(damaged_addr, &acked).await;
    });
}

#[test]
fn a_flipped_byte_in_the_oldest_segment_is_repaired_from_the_cluster_or_refused_when_strict() {
    // Small segments, so that the log spans many and the damage is mid-log, not at its tail.
    let cluster = Arc::new(Cluster::start(3, &["--segment-bytes", "65536"]));
    let addrs = cluster.client_addrs();
    let c = cluster.clone();
    run(move || async move {
        let cluster = c;
        let leader = wait_for_leader(&addrs, DEADLINE).await;
        let damaged = follower_of(&leader);
        // The writers talk to the two healthy nodes only: the damaged one is not in their list.
        let healthy: Vec<SocketAddr> = (1..=3)
            .filter(|&id| id != damaged)
            .map(|id| cluster.client_addr(id))
            .collect();
        let load = Load::start(vec![client(healthy)], 4, "w");
        load.wait_for_acked(500, "500 writes", DEADLINE).await;
        let target =
            stopped_after_catching_up(&cluster, damaged, cluster.client_addr(leader.node_id)).await;
        let stopped_at = Instant::now();

        let log_dir = cluster.data_dir(damaged).join("log");
        let spans = ringraft::log::records(&log_dir).expect("read the log");
        let first = spans.first().expect("a record").clone();
        let segments: Vec<&Path> = segment_files(&spans);
        assert!(
            segments.len() >= 3,
            "the log spans several segments: {segments:?}"
        );
        assert!(spans.last().expect("a record").last_index >= target);
        damage(&first.file, first.offset + u64::from(first.bytes) / 2);

        let (code, report) = log_verify(&cluster.data_dir(damaged));
        eprintln!("ringraft log verify:\n{report}");
        assert_eq!(
            code,
            Some(1),
            "mid-log corruption is a problem, not a torn tail"
        );
        let named = format!(
            "corrupt log: {} at byte offset {}",
            first.file.display(),
            first.offset
        );
        assert!(
            report.contains(&named),
            "verify names the file and offset: {report}"
        );

        // --strict-recovery: refuses to start, names file and offset, changes nothing.
        let before = tree_digest(&cluster.data_dir(damaged));
        cluster.start_node_with(damaged, &["--strict-recovery"]);
        let status = wait_until("the strict node to exit by itself", DEADLINE, || {
            let status = cluster.exit_status(damaged);
            async move { status }
        })
        .await;
        assert!(!status.success(), "it exits with an error: {status:?}");
        let text = cluster.log_text(damaged);
        assert!(
            text.contains(&named),
            "the refusal names the file and offset ({named}):\n{text}"
        );
        assert_eq!(
            tree_digest(&cluster.data_dir(damaged)),
            before,
            "strict recovery touched the data directory"
        );

        // Default recovery: keeps the prefix before the damage, sets the rest aside in
        // log/lost/, and fetches it back from the cluster.
        let acked_at_restart = load.acked_len();
        cluster.start_node(damaged);
        let restarted_at = Instant::now();
        let damaged_addr = cluster.client_addr(damaged);
        let leader_addr = cluster.client_addr(leader.node_id);
        let caught_up = wait_until("the repaired node to catch up", DEADLINE, || async move {
            let leader = stats(leader_addr).await?;
            stats(damaged_addr).await.filter(|s| {
                s.recovering_to.is_none() && s.applied_index >= target.max(leader.commit_index)
            })
        })
        .await;
        eprintln!(
            "repaired node caught up to {} {:?} after its restart",
            caught_up.applied_index,
            restarted_at.elapsed()
        );
        let lost_dir = log_dir.join(ringraft::log::LOST_DIR);
        let lost: Vec<PathBuf> = std::fs::read_dir(&lost_dir)
            .expect("log/lost/ exists after a repair")
            .map(|e| e.expect("dir entry").path())
            .collect();
        assert_eq!(
            lost.len(),
            segments.len(),
            "the damaged segment's copy and every later segment are in lost/: {lost:?}"
        );
        assert!(lost.iter().any(|p| p.file_name() == first.file.file_name()));
        let text = cluster.log_text(damaged);
        assert!(
            text.contains(&format!(
                "corrupt log {} at byte offset {}",
                first.file.display(),
                first.offset
            )),
            "the repair is reported with file and offset:\n{text}"
        );

        load.wait_for_more(300, "300 more writes after the repair")
            .await;
        let (acked, successes) = load.stop().await;
        assert!(
            successes
                .iter()
                .any(|t| *t > stopped_at && *t < restarted_at),
            "writes were served while the damaged node was down"
        );
        assert!(
            successes.iter().any(|t| *t > restarted_at),
            "writes were served after its restart"
        );
        assert!(acked.len() > acked_at_restart);
        eprintln!(
            "{} writes acknowledged; longest stretch without one: {:?}",
            successes.len(),
            longest_gap(&successes)
        );

        let leader_now = wait_for_leader(&addrs, DEADLINE).await;
        let final_commit = leader_now.commit_index;
        wait_until(
            "the repaired node to apply everything",
            DEADLINE,
            || async move {
                stats(damaged_addr)
                    .await
                    .filter(|s| s.applied_index >= final_commit)
            },
        )
        .await;
        assert_local_state(damaged_addr, &acked).await;
    });
}

/// Some node other than the leader.
fn follower_of(leader: &ringraft::wire::NodeStats) -> u64 {
    if leader.node_id == 1 {
        2
    } else {
        1
    }
}

/// Waits until follower `id` holds every entry the leader has committed, then stops it with
/// SIGTERM (a clean stop: what it wrote, and the acked_index of its hard state, are durable).
/// Returns that commit index.
async fn stopped_after_catching_up(cluster: &Cluster, id: u64, leader: SocketAddr) -> u64 {
    let target = stats(leader).await.expect("leader stats").commit_index;
    let addr = cluster.client_addr(id);
    wait_until(
        "the follower to hold every committed entry",
        DEADLINE,
        || async move { stats(addr).await.filter(|s| s.last_log_index >= target) },
    )
    .await;
    assert!(
        cluster.terminate(id, DEADLINE),
        "node {id} stops cleanly on SIGTERM"
    );
    target
}

/// Inverts eight bytes of `file` from `at`.
fn damage(file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open segment");
    let mut bytes = [0u8; 8];
    f.read_exact_at(&mut bytes, at).expect("read");
    for b in &mut bytes {
        *b ^= 0xff;
    }
    f.write_all_at(&bytes, at).expect("write");
    f.sync_all().expect("sync");
}

/// Runs `ringraft log verify DIR`: (exit code, stdout and stderr).
fn log_verify(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["log", "verify"])
        .arg(dir)
        .output()
        .expect("run ringraft log verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The distinct segment files of `spans`, in order.
fn segment_files(spans: &[RecordSpan]) -> Vec<&Path> {
    let mut files: Vec<&Path> = spans.iter().map(|s| s.file.as_path()).collect();
    files.dedup();
    files
}

/// Every file under `dir` with its content's CRC, sorted by path.
fn tree_digest(dir: &Path) -> Vec<(PathBuf, u64, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.push((path, bytes.len() as u64, crc32fast::hash(&bytes)));
            }
        }
    }
    out.sort();
    out
}

async fn write_keys(session: &Client, acked: &Acked, prefix: &str, n: u64) {
    for i in 0..n {
        let key = Bytes::from(format!("{prefix}-{i:06}"));
        let value = Bytes::from(format!("value-{prefix}-{i}"));
        session.put(key.clone(), value.clone()).await.expect("put");
        acked.borrow_mut().insert(key, value);
    }
}

fn longest_gap(times: &[Instant]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
