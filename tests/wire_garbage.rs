//! Bad bytes from the network give a `DecodeError`, never a panic and never silent acceptance.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use ringraft::core::{Entry, EntryKind, Envelope, Message, SplitMix64};
use ringraft::limits::{BATCH_ENTRIES_MAX, FRAME_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX};
use ringraft::log::record::{decode_records, encode_records_into, encode_single_with};
use ringraft::wire::{
    decode_client_request, decode_client_response, decode_frame, decode_handshake, decode_peer,
    encode_client_request, encode_client_response, encode_handshake, encode_peer, ClientRequest,
    ClientResponse, DecodeError, FrameDecoder, FrameType, PeerHandshake, Reply, Request,
    PROTOCOL_VERSION,
};

/// Runs every body decoder over `body`; they may fail, they must not panic.
fn decode_all(body: &[u8]) -> [bool; 4] {
    [
        decode_peer(body).is_ok(),
        decode_handshake(body).is_ok(),
        decode_client_request(body).is_ok(),
        decode_client_response(body).is_ok(),
    ]
}

fn sample_bodies() -> Vec<Vec<u8>> {
    let mut fbb = FlatBufferBuilder::new();
    let entries: Vec<Entry> = (1..=4)
        .map(|index| Entry {
            term: 2,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![index as u8; 40]),
            record: None,
        })
        .collect();
    let append = Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term: 2,
            prev_log_index: 0,
            prev_log_term: 0,
            leader_commit: 0,
            entries,
        },
    };
    let snapshot = Envelope {
        from: 1,
        to: 2,
        message: Message::InstallSnapshot {
            term: 2,
            last_included_index: 9,
            last_included_term: 1,
            membership: Default::default(),
            offset: 0,
            data: Bytes::from_static(b"snapshot chunk"),
            done: true,
        },
    };
    let response = Envelope {
        from: 2,
        to: 1,
        message: Message::AppendEntriesResponse {
            term: 2,
            success: false,
            match_index: 3,
            conflict_index: 2,
            conflict_term: Some(1),
        },
    };
    let put = ClientRequest {
        group: 0,
        protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
        await_leadership: false,
        client_id: 5,
        sequence: 1,
        request_id: 1,
        request: Request::Put {
            key: Bytes::from_static(b"key"),
            value: Bytes::from_static(b"value"),
        },
    };
    let reply = ClientResponse {
        request_id: 1,
        result: Ok(Reply::Value(Bytes::from_static(b"value"))),
    };
    vec![
        encode_peer(&append, Some(3), &mut fbb).to_vec(),
        encode_peer(&snapshot, None, &mut fbb).to_vec(),
        encode_peer(&response, None, &mut fbb).to_vec(),
        encode_handshake(
            &PeerHandshake {
                group: 0,
                groups: 1,
                cluster_id: 3,
                node_id: 1,
                protocol_version: PROTOCOL_VERSION,
                addresses: None,
            },
            &mut fbb,
        )
        .to_vec(),
        encode_client_request(&put, &mut fbb).to_vec(),
        encode_client_response(&reply, &mut fbb).to_vec(),
    ]
}

#[test]
fn random_bytes_are_refused() {
    let mut rng = SplitMix64::new(0x5EED_0001);
    for round in 0..20_000 {
        let len = rng.below(300) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert_eq!(
            decode_all(&body),
            [false; 4],
            "round {round}: random bytes accepted"
        );
        // Give half of them a right file identifier, so the verifier itself is exercised.
        if body.len() >= 8 {
            let identifier: &[u8; 4] = [b"RRPM", b"RRHS", b"RRCQ", b"RRCR"][rng.below(4) as usize];
            body[4..8].copy_from_slice(identifier);
            let _ = decode_all(&body);
        }
        // And through the frame decoder: only a frame error or a frame, never a panic.
        let mut decoder = FrameDecoder::new();
        decoder.extend_from_slice(&body);
        while let Ok(Some(frame)) = decoder.next_frame() {
            let _ = decode_all(frame.body);
        }
    }
}

#[test]
fn mutated_valid_bodies_never_panic() {
    let mut rng = SplitMix64::new(0x5EED_0002);
    for body in sample_bodies() {
        for _ in 0..5_000 {
            let mut mutated = body.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(mutated.len() as u64) as usize;
                mutated[at] = rng.next_u64() as u8;
            }
            let _ = decode_all(&mutated);
        }
    }
}

/// Everything the four decoders say about `body`, to compare two bodies' meaning.
fn decode_debug(body: &[u8]) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        decode_peer(body),
        decode_handshake(body),
        decode_client_request(body),
        decode_client_response(body)
    )
}

#[test]
fn truncated_flatbuffers_are_refused() {
    // The builder may leave up to 7 bytes of alignment padding after the first object it wrote
    // (e.g. after a 14-byte vector); cutting only padding leaves the same valid message, which is
    // fine. Cutting anything more must be refused.
    const PADDING_BYTES_MAX: usize = 7;
    for body in sample_bodies() {
        let whole = decode_debug(&body);
        for len in 0..body.len() {
            if len + PADDING_BYTES_MAX < body.len() {
                assert_eq!(
                    decode_all(&body[..len]),
                    [false; 4],
                    "prefix of {len}/{} bytes accepted",
                    body.len()
                );
            } else if decode_all(&body[..len]) != [false; 4] {
                assert_eq!(
                    decode_debug(&body[..len]),
                    whole,
                    "prefix of {len}/{} bytes changed meaning",
                    body.len()
                );
            }
        }
    }
}

#[test]
fn huge_length_prefix_is_refused_before_buffering() {
    let header = [0xFF, 0xFF, 0xFF, 0xFF, FrameType::PeerMessage.as_u8()];
    match decode_frame(&header, FRAME_BYTES_MAX) {
        Err(DecodeError::FrameTooLarge {
            frame_bytes,
            limit_bytes,
        }) => {
            assert_eq!(frame_bytes, 5 + u64::from(u32::MAX));
            assert_eq!(limit_bytes, FRAME_BYTES_MAX);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let just_over = ((FRAME_BYTES_MAX - 5 + 1) as u32).to_le_bytes();
    let mut decoder = FrameDecoder::new();
    decoder.extend_from_slice(&just_over);
    decoder.extend_from_slice(&[FrameType::PeerMessage.as_u8()]);
    assert!(matches!(
        decoder.next_frame(),
        Err(DecodeError::FrameTooLarge { .. })
    ));
    let mut small = FrameDecoder::with_bounds(64, 64);
    small.extend_from_slice(&[60, 0, 0, 0, 3]);
    assert!(matches!(
        small.next_frame(),
        Err(DecodeError::FrameTooLarge { .. })
    ));
}

#[test]
fn unknown_frame_type_is_refused() {
    for frame_type in [0u8, 5, 0x7F, 0xFF] {
        let frame = [1, 0, 0, 0, frame_type, 0];
        assert_eq!(
            decode_frame(&frame, FRAME_BYTES_MAX),
            Err(DecodeError::UnknownFrameType(frame_type))
        );
    }
}

#[test]
fn wrong_frame_type_is_refused() {
    let frame = [1, 0, 0, 0, FrameType::ClientRequest.as_u8(), 0];
    let (frame, _) = decode_frame(&frame, FRAME_BYTES_MAX)
        .expect("valid frame")
        .expect("whole frame");
    assert!(matches!(
        frame.body_of(FrameType::PeerMessage),
        Err(DecodeError::WrongFrameType { .. })
    ));
}

#[test]
fn valid_flatbuffer_of_the_wrong_table_is_refused() {
    let bodies = sample_bodies();
    // [append, snapshot, response] are peer messages; then handshake, client request, response.
    let expectations = [
        [true, false, false, false],
        [true, false, false, false],
        [true, false, false, false],
        [false, true, false, false],
        [false, false, true, false],
        [false, false, false, true],
    ];
    for (body, expected) in bodies.iter().zip(expectations) {
        assert_eq!(decode_all(body), expected);
    }
    assert!(matches!(
        decode_peer(&bodies[4]),
        Err(DecodeError::WrongIdentifier { .. })
    ));
    // Even with the right identifier forced on, another table's layout is not a PeerMessage.
    let mut handshake_as_peer = bodies[3].clone();
    handshake_as_peer[4..8].copy_from_slice(b"RRPM");
    assert!(decode_peer(&handshake_as_peer).is_err());
}

fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    encode_peer(envelope, None, &mut FlatBufferBuilder::new()).to_vec()
}

#[test]
fn zero_node_ids_are_refused() {
    let message = Message::TimeoutNow {
        term: 1,
        vote: false,
        last_index: 0,
    };
    let from_zero = encode_envelope(&Envelope {
        from: 0,
        to: 2,
        message: message.clone(),
    });
    assert_eq!(
        decode_peer(&from_zero),
        Err(DecodeError::MissingField {
            field: "PeerMessage.from"
        })
    );
    let to_zero = encode_envelope(&Envelope {
        from: 1,
        to: 0,
        message,
    });
    assert_eq!(
        decode_peer(&to_zero),
        Err(DecodeError::MissingField {
            field: "PeerMessage.to"
        })
    );
    let mut fbb = FlatBufferBuilder::new();
    let handshake = encode_handshake(
        &PeerHandshake {
            group: 0,
            groups: 1,
            cluster_id: 1,
            node_id: 0,
            protocol_version: 1,
            addresses: None,
        },
        &mut fbb,
    );
    assert!(decode_handshake(handshake).is_err());
}

#[test]
fn client_session_fields_are_checked() {
    let mut fbb = FlatBufferBuilder::new();
    let put = Request::Put {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
    };
    let no_client = ClientRequest {
        group: 0,
        protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
        await_leadership: false,
        client_id: 0,
        sequence: 1,
        request_id: 1,
        request: put.clone(),
    };
    assert!(decode_client_request(encode_client_request(&no_client, &mut fbb)).is_err());
    let no_sequence = ClientRequest {
        group: 0,
        protocol_version: ringraft::wire::CLIENT_PROTOCOL_VERSION,
        await_leadership: false,
        client_id: 1,
        sequence: 0,
        request_id: 1,
        request: put,
    };
    assert!(decode_client_request(encode_client_request(&no_sequence, &mut fbb)).is_err());
}

fn append(prev_log_index: u64, prev_log_term: u64, term: u64, entries: Vec<Entry>) -> Vec<u8> {
    encode_envelope(&Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term,
            prev_log_index,
            prev_log_term,
            leader_commit: 0,
            entries,
        },
    })
}

/// An entry as a leader proposes it: encoded once into a record of its own, which the wire
/// copies as it is (so a test can send batches no correct leader would).
fn entry(index: u64, term: u64) -> Entry {
    let (record, data) =
        encode_single_with(term, index, EntryKind::Normal, 1, |out| out.push(b'x'))
            .expect("encode");
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data,
        record: Some(record),
    }
}

#[test]
fn append_entries_must_follow_prev_log_index() {
    assert!(decode_peer(&append(4, 1, 2, vec![entry(5, 1), entry(6, 2)])).is_ok());
    // Gap after prev_log_index, gap inside the batch, decreasing terms, terms beyond the leader's.
    assert!(decode_peer(&append(4, 1, 2, vec![entry(6, 1)])).is_err());
    assert!(decode_peer(&append(4, 1, 2, vec![entry(5, 1), entry(7, 1)])).is_err());
    assert!(decode_peer(&append(4, 1, 3, vec![entry(5, 2), entry(6, 1)])).is_err());
    assert!(decode_peer(&append(4, 1, 2, vec![entry(5, 3)])).is_err());
    assert!(decode_peer(&append(4, 2, 2, vec![entry(5, 1)])).is_err());
    assert!(decode_peer(&append(u64::MAX, 1, 2, vec![entry(1, 1)])).is_err());
}

#[test]
fn oversized_snapshot_chunk_is_refused() {
    let body = encode_envelope(&Envelope {
        from: 1,
        to: 2,
        message: Message::InstallSnapshot {
            term: 1,
            last_included_index: 1,
            last_included_term: 1,
            membership: Default::default(),
            offset: 0,
            data: Bytes::from(vec![0u8; SNAPSHOT_CHUNK_BYTES_MAX + 1]),
            done: false,
        },
    });
    assert!(matches!(
        decode_peer(&body),
        Err(DecodeError::OutOfRange { .. })
    ));
    let past_end = encode_envelope(&Envelope {
        from: 1,
        to: 2,
        message: Message::InstallSnapshot {
            term: 1,
            last_included_index: 1,
            last_included_term: 1,
            membership: Default::default(),
            offset: u64::MAX,
            data: Bytes::from_static(b"x"),
            done: false,
        },
    });
    assert!(matches!(
        decode_peer(&past_end),
        Err(DecodeError::OutOfRange { .. })
    ));
}

#[test]
fn malformed_record_batches_are_refused() {
    let mut batch = Vec::new();
    encode_records_into(&[entry(1, 1), entry(2, 1), entry(3, 2)], &mut batch).expect("encode");
    let decode = |bytes: &[u8]| decode_records(&Bytes::copy_from_slice(bytes), BATCH_ENTRIES_MAX);
    assert_eq!(decode(&batch).map(|entries| entries.len()), Ok(3));
    for len in 1..batch.len() {
        let truncated = decode(&batch[..len]);
        let whole_records = [0, 46, 92].contains(&len);
        assert_eq!(
            truncated.is_ok(),
            whole_records,
            "truncated batch of {len} bytes: {truncated:?}"
        );
    }
    let mut trailing = batch.clone();
    trailing.push(0);
    assert!(decode(&trailing).is_err());
    for at in 0..batch.len() {
        let mut flipped = batch.clone();
        flipped[at] ^= 0x10;
        assert!(decode(&flipped).is_err(), "flip at byte {at} accepted");
    }
    assert!(matches!(
        decode_records(&Bytes::from(batch), 2),
        Err(ringraft::log::DecodeError::BadHeader(_))
    ));
}

#[test]
fn errors_say_what_was_wrong() {
    let message = DecodeError::FrameTooLarge {
        frame_bytes: 10,
        limit_bytes: 5,
    }
    .to_string();
    assert!(message.contains("FRAME_BYTES_MAX"), "{message}");
    match decode_peer(&[0u8; 3]) {
        Err(error @ DecodeError::WrongIdentifier { .. }) => {
            assert!(error.to_string().contains("PeerMessage"))
        }
        other => panic!("expected WrongIdentifier, got {other:?}"),
    }
    let mut body = sample_bodies()[0].clone();
    let last = body.len() - 1;
    body.truncate(last);
    match decode_peer(&body) {
        Err(DecodeError::Verification { table, reason }) => {
            assert_eq!(table, "PeerMessage");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Verification, got {other:?}"),
    }
}
