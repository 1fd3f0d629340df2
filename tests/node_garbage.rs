//! Garbage on a real node's client port and peer port: random bytes, a huge length prefix, a
//! truncated flatbuffer, a valid handshake from another cluster, frames of the wrong type. Each
//! connection must be closed, the invalid-frame / refused-handshake counters must count it, and
//! the node must keep serving with its data intact.

mod node_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_common::{client, run, stats, wait_for_leader, wait_until, Cluster};
use ringraft::wire::{
    self, ClientRequest, ClientResponse, FrameType, NodeStats, PeerHandshake, Reply, Request,
};

/// The cluster id test nodes run with (the `--cluster-id` default).
const CLUSTER_ID: u64 = 1;

#[test]
fn garbage_on_client_and_peer_ports_is_refused_and_the_node_keeps_serving() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    // Some data first, through the leader.
    let leader = {
        let addrs = addrs.clone();
        run(move || async move {
            let leader = wait_for_leader(&addrs, Duration::from_secs(20)).await;
            let session = client(addrs.clone());
            for i in 0..100 {
                session
                    .put(key(i), value(i, "before"))
                    .await
                    .expect("put before the garbage");
            }
            leader
        })
    };
    let id = leader.node_id;
    let (client_addr, peer_addr) = (cluster.client_addr(id), cluster.peer_addr(id));

    // ---- client port
    let client_garbage: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random_bytes(4096, 0x5eed)),
        (
            "a huge length prefix",
            huge_length_prefix(FrameType::ClientRequest),
        ),
        (
            "a truncated flatbuffer",
            truncated(FrameType::ClientRequest, &client_request_body()),
        ),
        (
            "a handshake of another cluster",
            handshake_frame(CLUSTER_ID + 1, 2),
        ),
        (
            "a frame of the wrong type (ClientResponse)",
            client_response_frame(),
        ),
        (
            "an unknown frame type",
            frame_of_type_byte(0x7f, &client_request_body()),
        ),
    ];
    for (what, bytes) in &client_garbage {
        assert_closed(client_addr, bytes, what);
    }
    let sent = client_garbage.len() as u64;
    let after_client = wait_for_counters(client_addr, move |s| s.invalid_client_frames >= sent);
    assert_eq!(
        after_client.invalid_client_frames,
        client_garbage.len() as u64,
        "{after_client:?}"
    );

    // ---- peer port
    let invalid_peer: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random_bytes(4096, 0xbad)),
        (
            "a huge length prefix",
            huge_length_prefix(FrameType::PeerHandshake),
        ),
        (
            "a truncated flatbuffer",
            truncated(FrameType::PeerHandshake, &handshake_body(CLUSTER_ID, 2)),
        ),
        (
            "a frame of the wrong type (ClientRequest)",
            frame_of_type_byte(FrameType::ClientRequest.as_u8(), &client_request_body()),
        ),
        ("a valid handshake, then a frame of the wrong type", {
            let mut bytes = handshake_frame(CLUSTER_ID, if id == 2 { 3 } else { 2 });
            bytes.extend(frame_of_type_byte(
                FrameType::ClientRequest.as_u8(),
                &client_request_body(),
            ));
            bytes
        }),
    ];
    let refused_peer: Vec<(&str, Vec<u8>)> = vec![
        (
            "a handshake of another cluster",
            handshake_frame(CLUSTER_ID + 1, 2),
        ),
        (
            "a handshake from a node that is not a member",
            handshake_frame(CLUSTER_ID, 99),
        ),
        (
            "a handshake claiming to be the node itself",
            handshake_frame(CLUSTER_ID, id),
        ),
    ];
    let before_peer = stats_now(client_addr);
    for (what, bytes) in invalid_peer.iter().chain(&refused_peer) {
        assert_closed(peer_addr, bytes, what);
    }
    let (invalid, refused) = (invalid_peer.len() as u64, refused_peer.len() as u64);
    let after_peer = wait_for_counters(client_addr, move |s| {
        s.invalid_peer_frames >= before_peer.invalid_peer_frames + invalid
            && s.refused_handshakes >= before_peer.refused_handshakes + refused
    });
    assert_eq!(
        after_peer.invalid_peer_frames,
        before_peer.invalid_peer_frames + invalid,
        "{after_peer:?}"
    );
    assert_eq!(
        after_peer.refused_handshakes,
        before_peer.refused_handshakes + refused,
        "{after_peer:?}"
    );

    // ---- a record batch whose CRC fails, sent to a follower as if from the leader: refused
    // before the Raft core sees it (counted, connection closed), nothing of it written.
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&f| f != id)
        .expect("a follower");
    let follower_client = cluster.client_addr(follower);
    let before_crc = stats_now(follower_client);
    assert_closed(
        cluster.peer_addr(follower),
        &bad_crc_append_entries(id, follower, leader.term),
        "an AppendEntries whose record fails its CRC",
    );
    let after_crc = wait_for_counters(follower_client, move |s| {
        s.invalid_peer_frames > before_crc.invalid_peer_frames
    });
    assert_eq!(
        after_crc.invalid_peer_frames,
        before_crc.invalid_peer_frames + 1,
        "{after_crc:?}"
    );

    // ---- the node is still up, still in the cluster, and serves with its data intact.
    assert!(cluster.is_running(id), "node {id} died");
    let addrs2 = addrs.clone();
    let end = run(move || async move {
        let now = wait_for_leader(&addrs2, Duration::from_secs(20)).await;
        let session = client(addrs2.clone());
        for i in 0..100 {
            assert_eq!(
                session.get(key(i)).await.expect("get after the garbage"),
                Some(value(i, "before"))
            );
        }
        for i in 100..200 {
            session
                .put(key(i), value(i, "after"))
                .await
                .expect("put after the garbage");
        }
        for i in 100..200 {
            assert_eq!(
                session.get(key(i)).await.expect("get"),
                Some(value(i, "after"))
            );
        }
        (now, stats(client_addr).await.expect("stats"))
    });
    let (now, last) = end;
    // Node `id` still takes part: it leads or follows the cluster's current leader. (Whether
    // leadership moved is no verdict on the garbage: with a 200-400 ms election timeout, a loaded
    // 2-core machine can move it by itself.)
    assert!(
        last.node_id == now.node_id || last.leader_id == Some(now.node_id),
        "node {id} does not follow leader {} of term {} after the garbage: {last:?}",
        now.node_id,
        now.term
    );
    // The other counters move too. A group of jobs costs at most two syncs: its records, then
    // the hard state that carries how far this node acknowledged (`acked_index`, which must be
    // durable before the acknowledgement leaves).
    assert!(
        last.bytes_in > 0
            && last.bytes_out > 0
            && last.disk_syncs > 0
            && 2 * last.disk_jobs >= last.disk_syncs,
        "{last:?}"
    );

    // `ringraft stats` prints the counters.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("stats")
        .arg(client_addr.to_string())
        .output()
        .expect("run ringraft stats");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ringraft stats failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for field in [
        format!("invalid_client_frames {}", client_garbage.len()),
        format!("invalid_peer_frames {}", after_peer.invalid_peer_frames),
        format!("refused_handshakes {}", after_peer.refused_handshakes),
        "dropped_peer_messages ".to_string(),
        "disk_syncs ".to_string(),
    ] {
        assert!(
            text.contains(&field),
            "`ringraft stats` output lacks `{field}`:\n{text}"
        );
    }
    // The refused batch reached no segment of the follower, in either form.
    for entry in std::fs::read_dir(cluster.data_dir(follower).join("log")).expect("log dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read segment");
        assert!(
            !bytes
                .windows(BAD_CRC_MARKER.len())
                .any(|w| w == BAD_CRC_MARKER || w == corrupted_marker()),
            "the refused record reached the follower's log"
        );
    }
    eprintln!("test took {:?}", started.elapsed());
}

/// The payload of the record that is corrupted on its way to a follower.
const BAD_CRC_MARKER: &[u8] = b"this-record-was-corrupted-on-the-wire";

fn corrupted_marker() -> Vec<u8> {
    let mut marker = BAD_CRC_MARKER.to_vec();
    marker[0] ^= 0x20;
    marker
}

/// A handshake as `leader`, then an AppendEntries to `follower` in `term` whose one record
/// (a proposal as the leader encodes it) has one payload byte flipped after its CRC was made.
fn bad_crc_append_entries(leader: u64, follower: u64, term: u64) -> Vec<u8> {
    use ringraft::core::{Entry, EntryKind, Envelope, Message};
    let index = 1 << 40;
    let (record, data) = ringraft::log::record::encode_single_with(
        term,
        index,
        EntryKind::Normal,
        BAD_CRC_MARKER.len(),
        |out| out.extend_from_slice(BAD_CRC_MARKER),
    )
    .expect("encode");
    let envelope = Envelope {
        from: leader,
        to: follower,
        message: Message::AppendEntries {
            term,
            prev_log_index: index - 1,
            prev_log_term: term,
            leader_commit: 0,
            entries: vec![Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data,
                record: Some(record),
            }],
        },
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut body = wire::encode_peer(&envelope, Some(CLUSTER_ID), &mut fbb).to_vec();
    let at = body
        .windows(BAD_CRC_MARKER.len())
        .position(|w| w == BAD_CRC_MARKER)
        .expect("the record's payload is in the frame");
    body[at] ^= 0x20;
    let mut bytes = handshake_frame(CLUSTER_ID, leader);
    wire::write_frame(FrameType::PeerMessage, &body, &mut bytes).expect("frame");
    bytes
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("garbage-test-{i:04}"))
}

fn value(i: u64, when: &str) -> Bytes {
    Bytes::from(format!("{when}-{i}"))
}

/// Sends `bytes` on a new connection to `addr` and asserts the node closes it within 10 s.
fn assert_closed(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("connect to {addr} to send {what}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    // The node may close before it has read everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("{what} on {addr}: the node answered {n} bytes instead of closing"),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what} on {addr}: the connection is still open after 10 s")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("{what} on {addr}: {e}"),
        }
    }
}

fn stats_now(addr: SocketAddr) -> NodeStats {
    run(move || async move { stats(addr).await.expect("stats") })
}

/// Polls the stats of the node at `addr` until `ready` holds (20 s at most).
fn wait_for_counters(
    addr: SocketAddr,
    ready: impl Fn(&NodeStats) -> bool + Send + 'static,
) -> NodeStats {
    run(move || async move {
        let ready = &ready;
        wait_until(
            "the counters to count the garbage",
            Duration::from_secs(20),
            || async move { stats(addr).await.filter(|s| ready(s)) },
        )
        .await
    })
}

/// Deterministic noise (xorshift64*): a failure replays with the same bytes.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A header announcing a ~2 GiB body, and nothing after it.
fn huge_length_prefix(frame_type: FrameType) -> Vec<u8> {
    let mut bytes = 0x7fff_fff0u32.to_le_bytes().to_vec();
    bytes.push(frame_type.as_u8());
    bytes
}

/// A well-framed body cut to half its length: the frame is complete, the flatbuffer is not.
fn truncated(frame_type: FrameType, body: &[u8]) -> Vec<u8> {
    frame_of_type_byte(frame_type.as_u8(), &body[..body.len() / 2])
}

/// A frame with any type byte (header written by hand, so that unknown types can be sent).
fn frame_of_type_byte(type_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
    bytes.push(type_byte);
    bytes.extend_from_slice(body);
    bytes
}

fn client_request_body() -> Vec<u8> {
    let request = ClientRequest {
        group: 0,
        protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
        await_leadership: false,
        client_id: 42,
        sequence: 1,
        request_id: 1,
        request: Request::Put {
            key: Bytes::from_static(b"garbage-test-0000"),
            value: Bytes::from_static(b"overwritten!"),
        },
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    wire::encode_client_request(&request, &mut fbb).to_vec()
}

fn client_response_frame() -> Vec<u8> {
    let response = ClientResponse {
        request_id: 1,
        result: Ok(Reply::Done { log_index: 1 }),
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut frame = Vec::new();
    wire::write_frame(
        FrameType::ClientResponse,
        wire::encode_client_response(&response, &mut fbb),
        &mut frame,
    )
    .expect("frame");
    frame
}

fn handshake_body(cluster_id: u64, node_id: u64) -> Vec<u8> {
    let handshake = PeerHandshake {
        group: 0,
        groups: 1,
        cluster_id,
        node_id,
        protocol_version: wire::PROTOCOL_VERSION,
        addresses: None,
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    wire::encode_handshake(&handshake, &mut fbb).to_vec()
}

fn handshake_frame(cluster_id: u64, node_id: u64) -> Vec<u8> {
    let mut frame = Vec::new();
    wire::write_frame(
        FrameType::PeerHandshake,
        &handshake_body(cluster_id, node_id),
        &mut frame,
    )
    .expect("frame");
    frame
}
