//! Every core message and every client request/response survives encode -> frame -> decode.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use ringraft::core::{ConfChange, Entry, EntryKind, Envelope, Membership, Message, Role};
use ringraft::wire::{
    decode_client_request, decode_client_request_shared, decode_client_response, decode_handshake,
    decode_peer, decode_peer_message, decode_peer_message_shared, encode_client_request,
    encode_client_response, encode_handshake, encode_peer, encode_peer_frame, write_frame,
    ClientError, ClientRequest, ClientResponse, FrameDecoder, FrameType, MemberChange,
    MemberChangeKind, MemberInfo, MemberListing, MemberRole, NodeStats, PeerHandshake, Reply,
    Request, PROTOCOL_VERSION,
};

fn entries(first_index: u64, count: u64, term: u64, data_bytes: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry {
            term,
            index: first_index + i,
            kind: if i == 0 {
                EntryKind::Noop
            } else {
                EntryKind::Normal
            },
            data: if i == 0 {
                Bytes::new()
            } else {
                Bytes::from(vec![(i % 251) as u8; data_bytes])
            },
            record: None,
        })
        .collect()
}

/// Every variant, with empty and non-empty entries and chunks, and both sides of every Option.
fn all_messages() -> Vec<Message> {
    vec![
        Message::PreVote {
            term: 8,
            last_log_index: 100,
            last_log_term: 7,
        },
        Message::PreVoteResponse {
            term: 8,
            granted: true,
        },
        Message::PreVoteResponse {
            term: 9,
            granted: false,
        },
        Message::RequestVote {
            term: 8,
            last_log_index: 100,
            last_log_term: 7,
            leader_transfer: false,
        },
        Message::RequestVote {
            term: 8,
            last_log_index: 0,
            last_log_term: 0,
            leader_transfer: true,
        },
        Message::RequestVoteResponse {
            term: 8,
            granted: true,
        },
        Message::AppendEntries {
            term: 5,
            prev_log_index: 10,
            prev_log_term: 4,
            leader_commit: 9,
            entries: vec![],
        },
        Message::AppendEntries {
            term: 5,
            prev_log_index: 10,
            prev_log_term: 4,
            leader_commit: 9,
            entries: entries(11, 3, 5, 100),
        },
        Message::AppendEntries {
            term: u64::MAX,
            prev_log_index: 0,
            prev_log_term: 0,
            leader_commit: 0,
            entries: entries(1, 64, 1, 1024),
        },
        Message::AppendEntriesResponse {
            term: 5,
            success: true,
            match_index: 13,
            conflict_index: 0,
            conflict_term: None,
        },
        Message::AppendEntriesResponse {
            term: 5,
            success: false,
            match_index: 10,
            conflict_index: 7,
            conflict_term: Some(3),
        },
        Message::AppendEntriesResponse {
            term: 5,
            success: false,
            match_index: 10,
            conflict_index: 1,
            conflict_term: Some(0),
        },
        Message::Heartbeat {
            term: 5,
            leader_commit: 9,
            read_round: 0,
        },
        Message::Heartbeat {
            term: 5,
            leader_commit: 9,
            read_round: 77,
        },
        Message::HeartbeatResponse {
            term: 5,
            read_round: 77,
        },
        Message::InstallSnapshot {
            term: 6,
            last_included_index: 1000,
            last_included_term: 5,
            membership: Membership::default(),
            offset: 0,
            data: Bytes::new(),
            done: false,
        },
        Message::InstallSnapshot {
            term: 6,
            last_included_index: 1000,
            last_included_term: 5,
            membership: Membership::from_voters([1, 2, 3])
                .apply(&ConfChange::AddLearner {
                    id: 4,
                    context: Bytes::from_static(b"10.0.0.4:7000/10.0.0.4:7001"),
                })
                .unwrap(),
            offset: 4096,
            data: Bytes::from((0..4096u32).map(|i| i as u8).collect::<Vec<u8>>()),
            done: true,
        },
        Message::InstallSnapshotResponse {
            term: 6,
            last_included_index: 1000,
            next_offset: 8192,
            done: true,
        },
        Message::InstallSnapshotResponse {
            term: 6,
            last_included_index: 1000,
            next_offset: 4096,
            done: false,
        },
        Message::TimeoutNow {
            term: 12,
            vote: true,
            last_index: 7,
        },
        Message::TimeoutNow {
            term: 12,
            vote: false,
            last_index: 0,
        },
        Message::ReadIndexRequest {
            term: 12,
            request_id: 99,
        },
        Message::ReadIndexResponse {
            term: 12,
            request_id: 99,
            read_index: Some(1234),
        },
        Message::ReadIndexResponse {
            term: 12,
            request_id: 99,
            read_index: Some(0),
        },
        Message::ReadIndexResponse {
            term: 12,
            request_id: 99,
            read_index: None,
        },
    ]
}

/// The position of `message`'s variant. The `match` has no wildcard arm: a new variant of
/// `Message` does not compile here until it is given a number, and `VARIANTS` then grows with it.
fn message_variant(message: &Message) -> usize {
    match message {
        Message::PreVote { .. } => 0,
        Message::PreVoteResponse { .. } => 1,
        Message::RequestVote { .. } => 2,
        Message::RequestVoteResponse { .. } => 3,
        Message::AppendEntries { .. } => 4,
        Message::AppendEntriesResponse { .. } => 5,
        Message::Heartbeat { .. } => 6,
        Message::HeartbeatResponse { .. } => 7,
        Message::InstallSnapshot { .. } => 8,
        Message::InstallSnapshotResponse { .. } => 9,
        Message::TimeoutNow { .. } => 10,
        Message::ReadIndexRequest { .. } => 11,
        Message::ReadIndexResponse { .. } => 12,
    }
}
const MESSAGE_VARIANTS: usize = 13;

fn request_variant(request: &Request) -> usize {
    match request {
        Request::Put { .. } => 0,
        Request::Delete { .. } => 1,
        Request::Get { .. } => 2,
        Request::Propose { .. } => 3,
        Request::Stats => 4,
        Request::TransferLeader { .. } => 5,
        Request::MemberList => 6,
        Request::MemberChange(_) => 7,
    }
}
const REQUEST_VARIANTS: usize = 8;

/// Replies and errors in one numbering: a response carries one or the other.
fn result_variant(result: &Result<Reply, ClientError>) -> usize {
    match result {
        Ok(Reply::Done { .. }) => 0,
        Ok(Reply::Value(_)) => 1,
        Ok(Reply::NotFound) => 2,
        Ok(Reply::Stats(_)) => 3,
        Err(ClientError::NotLeader { .. }) => 4,
        Err(ClientError::Timeout) => 5,
        Err(ClientError::TooLarge { .. }) => 6,
        Err(ClientError::Backpressure) => 7,
        Err(ClientError::Internal { .. }) => 8,
        Err(ClientError::Refused { .. }) => 9,
        Ok(Reply::Members(_)) => 10,
    }
}
const RESULT_VARIANTS: usize = 11;

/// Which of `count` variants the list misses.
fn missing(seen: impl Iterator<Item = usize>, count: usize) -> Vec<usize> {
    let seen: std::collections::BTreeSet<usize> = seen.collect();
    (0..count).filter(|v| !seen.contains(v)).collect()
}

#[test]
fn every_variant_is_in_the_round_trip_lists() {
    let messages = missing(all_messages().iter().map(message_variant), MESSAGE_VARIANTS);
    assert!(
        messages.is_empty(),
        "Message variants (by position in message_variant) missing from all_messages: {messages:?}"
    );
    let requests = missing(all_requests().iter().map(request_variant), REQUEST_VARIANTS);
    assert!(
        requests.is_empty(),
        "Request variants missing from all_requests: {requests:?}"
    );
    let results = missing(all_results().iter().map(result_variant), RESULT_VARIANTS);
    assert!(
        results.is_empty(),
        "Reply/ClientError variants missing from all_results: {results:?}"
    );
}

#[test]
fn peer_messages_round_trip() {
    let mut fbb = FlatBufferBuilder::new();
    for (i, message) in all_messages().into_iter().enumerate() {
        let envelope = Envelope {
            from: 1 + i as u64,
            to: 100 + i as u64,
            message,
        };
        for cluster_id in [None, Some(0), Some(0xC1A5_7E12)] {
            let body = encode_peer(&envelope, cluster_id, &mut fbb).to_vec();
            assert_eq!(decode_peer(&body).as_ref(), Ok(&envelope));
            let decoded = decode_peer_message(&body).expect("decode");
            assert_eq!(decoded.cluster_id, cluster_id);
            assert_eq!(decoded.envelope, envelope);
            assert!(decoded.check_cluster(cluster_id).is_ok());
            let shared = decode_peer_message_shared(&Bytes::from(body)).expect("decode shared");
            assert_eq!(shared, decoded);
        }
    }
}

#[test]
fn peer_cluster_mismatch_is_refused() {
    let mut fbb = FlatBufferBuilder::new();
    let envelope = Envelope {
        from: 1,
        to: 2,
        message: Message::TimeoutNow {
            term: 3,
            vote: true,
            last_index: 7,
        },
    };
    let named = decode_peer_message(encode_peer(&envelope, Some(7), &mut fbb)).expect("decode");
    assert!(named.check_cluster(Some(8)).is_err());
    assert!(named.check_cluster(None).is_err());
    let unnamed = decode_peer_message(encode_peer(&envelope, None, &mut fbb)).expect("decode");
    assert!(unnamed.check_cluster(Some(7)).is_err());
}

#[test]
fn peer_frames_round_trip_through_the_decoder() {
    let mut fbb = FlatBufferBuilder::new();
    let mut stream = Vec::new();
    let envelopes: Vec<Envelope> = all_messages()
        .into_iter()
        .map(|message| Envelope {
            from: 3,
            to: 4,
            message,
        })
        .collect();
    for envelope in &envelopes {
        let frame = encode_peer_frame(envelope, Some(1), &mut fbb).expect("frame fits");
        stream.extend_from_slice(&frame.to_vec());
    }
    let mut decoder = FrameDecoder::new();
    decoder.extend_from_slice(&stream);
    let mut decoded = Vec::new();
    while let Some(frame) = decoder.next_frame().expect("valid stream") {
        let body = frame.body_of(FrameType::PeerMessage).expect("peer frame");
        decoded.push(decode_peer(body).expect("decode"));
    }
    assert_eq!(decoded, envelopes);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn handshake_round_trips() {
    let mut fbb = FlatBufferBuilder::new();
    for handshake in [
        PeerHandshake {
            group: 0,
            groups: 1,
            cluster_id: 0,
            node_id: 1,
            protocol_version: PROTOCOL_VERSION,
            addresses: None,
        },
        PeerHandshake {
            group: 0,
            groups: 1,
            cluster_id: u64::MAX,
            node_id: u64::MAX,
            protocol_version: u32::MAX,
            addresses: None,
        },
    ] {
        let body = encode_handshake(&handshake, &mut fbb);
        assert_eq!(decode_handshake(body), Ok(handshake));
    }
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![7u8; 1024]),
        },
        Request::Put {
            key: Bytes::from_static(b"empty-value"),
            value: Bytes::new(),
        },
        Request::Delete {
            key: Bytes::from_static(b"gone"),
        },
        Request::Get {
            key: Bytes::from_static(b"k"),
            linearizable: true,
        },
        Request::Get {
            key: Bytes::from_static(b"k"),
            linearizable: false,
        },
        Request::Propose {
            payload: Bytes::from(vec![1u8; 4096]),
        },
        Request::Propose {
            payload: Bytes::new(),
        },
        Request::Stats,
        Request::TransferLeader { to: 3 },
        Request::MemberList,
        Request::MemberChange(MemberChange {
            kind: MemberChangeKind::AddLearner,
            id: 4,
            context: Bytes::from_static(b"127.0.0.1:7004/127.0.0.1:8004"),
        }),
        Request::MemberChange(MemberChange {
            kind: MemberChangeKind::Promote,
            id: 4,
            context: Bytes::new(),
        }),
        Request::MemberChange(MemberChange {
            kind: MemberChangeKind::Remove,
            id: 2,
            context: Bytes::new(),
        }),
    ]
}

#[test]
fn client_requests_round_trip() {
    let mut fbb = FlatBufferBuilder::new();
    for (i, request) in all_requests().into_iter().enumerate() {
        let request = ClientRequest {
            group: 0,
            protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
            await_leadership: i % 2 == 1,
            client_id: 42,
            sequence: 1 + i as u64,
            request_id: 1000 + i as u64,
            request,
        };
        let body = encode_client_request(&request, &mut fbb).to_vec();
        assert_eq!(decode_client_request(&body), Ok(request.clone()));
        assert_eq!(
            decode_client_request_shared(&Bytes::from(body)),
            Ok(request)
        );
    }
}

#[test]
fn reads_do_not_need_a_sequence_number() {
    let mut fbb = FlatBufferBuilder::new();
    for request in [
        Request::Get {
            key: Bytes::from_static(b"k"),
            linearizable: true,
        },
        Request::Stats,
        Request::TransferLeader { to: 2 },
    ] {
        let request = ClientRequest {
            group: 0,
            protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
            await_leadership: false,
            client_id: 1,
            sequence: 0,
            request_id: 0,
            request,
        };
        assert_eq!(
            decode_client_request(encode_client_request(&request, &mut fbb)),
            Ok(request)
        );
    }
}

fn all_results() -> Vec<Result<Reply, ClientError>> {
    vec![
        Ok(Reply::Done { log_index: 77 }),
        Ok(Reply::Value(Bytes::from_static(b"v"))),
        Ok(Reply::Value(Bytes::new())),
        Ok(Reply::NotFound),
        Ok(Reply::Stats(NodeStats {
            group: 0,
            groups: 1,
            node_id: 1,
            role: Role::Leader,
            term: 5,
            leader_id: Some(1),
            commit_index: 100,
            applied_index: 99,
            last_log_index: 101,
            elections: 2,
            proposals: 1000,
            snapshots: 1,
            invalid_peer_frames: 3,
            invalid_client_frames: 4,
            refused_handshakes: 5,
            dropped_peer_messages: 6,
            bytes_in: 1 << 40,
            bytes_out: u64::MAX,
            disk_syncs: 7,
            disk_jobs: 8,
            campaigns: 9,
            emulated_drops: 10,
            votes_withheld: 11,
            recovering_to: Some(12),
            transfer_elections: 13,
            awaiting_leadership: 14,
        })),
        Ok(Reply::Stats(NodeStats {
            group: 0,
            groups: 1,
            node_id: 2,
            role: Role::PreCandidate,
            term: 0,
            leader_id: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            elections: 0,
            proposals: 0,
            snapshots: 0,
            invalid_peer_frames: 0,
            invalid_client_frames: 0,
            refused_handshakes: 0,
            dropped_peer_messages: 0,
            bytes_in: 0,
            bytes_out: 0,
            disk_syncs: 0,
            disk_jobs: 0,
            campaigns: 0,
            emulated_drops: 0,
            votes_withheld: 0,
            recovering_to: None,
            transfer_elections: 0,
            awaiting_leadership: 0,
        })),
        Err(ClientError::NotLeader {
            leader_hint: Some(3),
            leader_addr: Some("10.0.0.3:7000".to_string()),
            handing_over: true,
        }),
        Err(ClientError::NotLeader {
            leader_hint: None,
            leader_addr: None,
            handing_over: false,
        }),
        Err(ClientError::Timeout),
        Err(ClientError::TooLarge {
            size_bytes: 2 << 20,
            limit_bytes: 1 << 20,
        }),
        Err(ClientError::Backpressure),
        Err(ClientError::Internal {
            message: "disk full".to_string(),
        }),
        Err(ClientError::Refused {
            message: "unknown node id 9: the members are 1, 2, 3".to_string(),
        }),
        Ok(Reply::Members(MemberListing {
            node_id: 1,
            leader_id: Some(1),
            last_log_index: 90,
            commit_index: 88,
            configuration_index: 80,
            members: vec![
                MemberInfo {
                    id: 1,
                    role: MemberRole::Voter,
                    peer_addr: Some("a:1".into()),
                    client_addr: Some("a:2".into()),
                    match_index: Some(90),
                },
                MemberInfo {
                    id: 4,
                    role: MemberRole::Learner,
                    peer_addr: None,
                    client_addr: None,
                    match_index: None,
                },
                MemberInfo {
                    id: 5,
                    role: MemberRole::Joining,
                    peer_addr: Some("e:1".into()),
                    client_addr: Some("e:2".into()),
                    match_index: Some(3),
                },
                MemberInfo {
                    id: 2,
                    role: MemberRole::Leaving,
                    peer_addr: Some("b:1".into()),
                    client_addr: Some("b:2".into()),
                    match_index: Some(89),
                },
            ],
        })),
    ]
}

#[test]
fn client_responses_round_trip() {
    let mut fbb = FlatBufferBuilder::new();
    let mut stream = Vec::new();
    let responses: Vec<ClientResponse> = all_results()
        .into_iter()
        .enumerate()
        .map(|(i, result)| ClientResponse {
            request_id: i as u64,
            result,
        })
        .collect();
    for response in &responses {
        let body = encode_client_response(response, &mut fbb);
        assert_eq!(decode_client_response(body).as_ref(), Ok(response));
        write_frame(FrameType::ClientResponse, body, &mut stream).expect("fits");
    }
    for role in [Role::Follower, Role::Candidate] {
        let mut stats = match &responses[4].result {
            Ok(Reply::Stats(stats)) => stats.clone(),
            _ => unreachable!(),
        };
        stats.role = role;
        let response = ClientResponse {
            request_id: 1,
            result: Ok(Reply::Stats(stats)),
        };
        assert_eq!(
            decode_client_response(encode_client_response(&response, &mut fbb)),
            Ok(response)
        );
    }
    let mut decoder = FrameDecoder::new();
    decoder.extend_from_slice(&stream);
    let mut decoded = Vec::new();
    while let Some(frame) = decoder.next_frame().expect("valid stream") {
        decoded.push(
            decode_client_response(frame.body_of(FrameType::ClientResponse).expect("type"))
                .expect("ok"),
        );
    }
    assert_eq!(decoded, responses);
}

#[test]
fn largest_append_entries_fits_in_a_frame() {
    use ringraft::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, FRAME_BYTES_MAX};
    let data_bytes = BATCH_BYTES_MAX / BATCH_ENTRIES_MAX;
    let entries: Vec<Entry> = (1..=BATCH_ENTRIES_MAX as u64)
        .map(|index| Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![1u8; data_bytes]),
            record: None,
        })
        .collect();
    let envelope = Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            leader_commit: 0,
            entries,
        },
    };
    let mut fbb = FlatBufferBuilder::new();
    let frame = encode_peer_frame(&envelope, Some(u64::MAX), &mut fbb)
        .expect("a full batch fits in a frame")
        .to_vec();
    assert!(frame.len() <= FRAME_BYTES_MAX);
    let mut decoder = FrameDecoder::new();
    decoder.extend_from_slice(&frame);
    let frame = decoder.next_frame().expect("valid").expect("whole frame");
    assert_eq!(decode_peer(frame.body).as_ref(), Ok(&envelope));
}

/// Entries as a leader holds them: `kinds` picks each one's shape (0: a proposal carrying its
/// own record, 1: a no-op without one, 2: a normal entry without one, as after a restart of an
/// older path), `sizes` its value length.
fn mixed_entries(first_index: u64, term: u64, kinds: &[u8], sizes: &[usize]) -> Vec<Entry> {
    kinds
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(n, (&kind, &size))| {
            let index = first_index + n as u64;
            let value: Vec<u8> = (0..size).map(|i| (i as u64 ^ index) as u8).collect();
            match kind {
                0 => {
                    let (record, data) = ringraft::log::record::encode_single_with(
                        term,
                        index,
                        EntryKind::Normal,
                        value.len(),
                        |out| out.extend_from_slice(&value),
                    )
                    .expect("encode");
                    Entry {
                        term,
                        index,
                        kind: EntryKind::Normal,
                        data,
                        record: Some(record),
                    }
                }
                1 => Entry {
                    term,
                    index,
                    kind: EntryKind::Noop,
                    data: Bytes::new(),
                    record: None,
                },
                _ => Entry {
                    term,
                    index,
                    kind: EntryKind::Normal,
                    data: Bytes::from(value),
                    record: None,
                },
            }
        })
        .collect()
}

#[test]
fn a_frame_in_pieces_is_byte_for_byte_the_plain_frame() {
    // The node sends AppendEntries as a head plus the records' own buffers; a receiver must see
    // exactly the bytes of the one-piece encoding, whatever the batch's length modulo 8, the
    // number of records, empty values, records or none, zero (omitted) or large fields.
    let mut rng = ringraft::core::SplitMix64::new(0xF4A3E5);
    let mut shapes: Vec<(Vec<u8>, Vec<usize>)> = vec![
        (vec![], vec![]),
        (vec![0], vec![0]),
        (vec![1], vec![0]),
        (vec![2], vec![0]),
        (vec![0], vec![1024]),
        (vec![0; 64], vec![1024; 64]),
        (vec![0, 1, 0, 2, 2, 0], vec![3, 0, 0, 5, 6, 1021]),
    ];
    for size in 0..=17 {
        shapes.push((vec![0], vec![size]));
        shapes.push((vec![0, 0, 0], vec![size, size + 1, size + 2]));
        shapes.push((vec![2, 0], vec![size, size]));
    }
    for _ in 0..60 {
        let count = 1 + rng.below(40) as usize;
        let kinds = (0..count).map(|_| rng.below(3) as u8).collect();
        let sizes = (0..count).map(|_| rng.below(3000) as usize).collect();
        shapes.push((kinds, sizes));
    }
    let mut fbb = FlatBufferBuilder::new();
    let mut plain_fbb = FlatBufferBuilder::new();
    let mut checked = 0;
    for (n, (kinds, sizes)) in shapes.iter().enumerate() {
        let (term, prev_log_index, leader_commit, cluster_id) = match n % 3 {
            0 => (7, 100, 90, Some(3)),
            1 => (1, 0, 0, None),
            _ => (u64::MAX - 1, u64::MAX / 2, u64::MAX / 3, Some(u64::MAX)),
        };
        let prev_log_term = term.min(5);
        let envelope = Envelope {
            from: 1,
            to: 2,
            message: Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                leader_commit,
                entries: mixed_entries(prev_log_index + 1, term, kinds, sizes),
            },
        };
        let pieces = encode_peer_frame(&envelope, cluster_id, &mut fbb).expect("fits");
        let mut plain = Vec::new();
        write_frame(
            FrameType::PeerMessage,
            encode_peer(&envelope, cluster_id, &mut plain_fbb),
            &mut plain,
        )
        .expect("fits");
        assert_eq!(
            pieces.to_vec(),
            plain,
            "shape {n}: kinds {kinds:?} sizes {sizes:?}"
        );
        assert_eq!(pieces.len(), plain.len());
        // And a receiver takes it, verifier included.
        let mut decoder = FrameDecoder::new();
        decoder.extend_from_slice(&pieces.to_vec());
        let body = decoder
            .next_frame_shared(FrameType::PeerMessage)
            .expect("valid")
            .expect("whole");
        let received = decode_peer_message_shared(&body).expect("decode");
        assert_eq!(received.envelope, envelope, "shape {n}");
        checked += 1;
    }
    // Every other message is one piece, the plain frame.
    for message in all_messages() {
        let envelope = Envelope {
            from: 3,
            to: 4,
            message,
        };
        let pieces = encode_peer_frame(&envelope, Some(9), &mut fbb).expect("fits");
        let mut plain = Vec::new();
        write_frame(
            FrameType::PeerMessage,
            encode_peer(&envelope, Some(9), &mut plain_fbb),
            &mut plain,
        )
        .expect("fits");
        assert_eq!(pieces.to_vec(), plain, "{:?}", envelope.message.kind_name());
        checked += 1;
    }
    assert!(checked > 100);
}
