//! The frame decoder reassembles frames however the stream is cut into reads, in a receive
//! buffer that stays within its bound and is used again once the frames taken from it are gone.

use ringraft::core::SplitMix64;
use ringraft::limits::FRAME_BYTES_MAX;
use ringraft::wire::{
    frame_header, write_frame, EncodeError, FrameDecoder, FrameType, FRAME_HEADER_BYTES,
};

fn sample_stream() -> (Vec<u8>, Vec<(FrameType, Vec<u8>)>) {
    let types = [
        FrameType::PeerMessage,
        FrameType::PeerHandshake,
        FrameType::ClientRequest,
        FrameType::ClientResponse,
    ];
    let mut rng = SplitMix64::new(7);
    let mut frames = Vec::new();
    let mut stream = Vec::new();
    for i in 0..40usize {
        let len = [0usize, 1, 5, 100, 3000][i % 5];
        let body: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        write_frame(types[i % 4], &body, &mut stream).expect("fits");
        frames.push((types[i % 4], body));
    }
    (stream, frames)
}

fn drain(decoder: &mut FrameDecoder, out: &mut Vec<(FrameType, Vec<u8>)>) {
    while let Some(frame) = decoder.next_frame().expect("valid stream") {
        out.push((frame.frame_type, frame.body.to_vec()));
    }
}

#[test]
fn frames_fed_byte_by_byte() {
    let (stream, frames) = sample_stream();
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    for byte in &stream {
        decoder.extend_from_slice(std::slice::from_ref(byte));
        drain(&mut decoder, &mut decoded);
    }
    assert_eq!(decoded, frames);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn shared_frames_match_borrowed_ones_and_outlive_later_reads() {
    // Bodies split off as shared bytes stay intact while the decoder reads on; a frame of the
    // wrong type is an error naming both types.
    let (stream, frames) = sample_stream();
    let mut rng = SplitMix64::new(11);
    // A small receive buffer, so that reading on needs new ones while the kept frames live.
    let mut decoder = FrameDecoder::with_bounds(FRAME_BYTES_MAX, 4096);
    let mut kept = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let piece = (1 + rng.below(900) as usize).min(stream.len() - at);
        decoder.extend_from_slice(&stream[at..at + piece]);
        at += piece;
        while let Some(&(expected, _)) = frames.get(kept.len()) {
            match decoder.next_frame_shared(expected).expect("valid stream") {
                Some(body) => kept.push((expected, body)),
                None => break,
            }
        }
    }
    let kept: Vec<(FrameType, Vec<u8>)> = kept.into_iter().map(|(t, b)| (t, b.to_vec())).collect();
    assert_eq!(kept, frames);

    let mut decoder = FrameDecoder::new();
    let mut one = Vec::new();
    write_frame(FrameType::ClientRequest, b"x", &mut one).expect("fits");
    decoder.extend_from_slice(&one);
    let error = decoder
        .next_frame_shared(FrameType::PeerMessage)
        .expect_err("wrong type")
        .to_string();
    assert!(
        error.contains("ClientRequest") || error.contains("client"),
        "{error}"
    );
}

#[test]
fn frames_fed_in_random_pieces() {
    let (stream, frames) = sample_stream();
    let mut rng = SplitMix64::new(0x5EED_F4A3);
    for round in 0..200 {
        // As a socket fills it: each read gets what the decoder has room for, or less.
        let receive_buffer_bytes = [64, 1000, 4096, 1 << 20][round % 4];
        let mut decoder = FrameDecoder::with_bounds(FRAME_BYTES_MAX, receive_buffer_bytes);
        let mut decoded = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let space = decoder.read_space();
            let bound = receive_buffer_bytes.max(FRAME_HEADER_BYTES + 3000);
            assert!(
                !space.is_empty() && space.len() <= bound,
                "{} bytes of room with a bound of {bound}",
                space.len()
            );
            let piece = (1 + rng.below(700) as usize)
                .min(stream.len() - at)
                .min(space.len());
            space[..piece].copy_from_slice(&stream[at..at + piece]);
            decoder.mark_read(piece);
            at += piece;
            drain(&mut decoder, &mut decoded);
        }
        assert_eq!(decoded, frames);
        assert_eq!(decoder.buffered_bytes(), 0);
    }
}

#[test]
fn the_receive_buffer_is_used_again_once_its_frames_are_gone() {
    let mut frame = Vec::new();
    write_frame(FrameType::PeerMessage, &[7u8; 995], &mut frame).expect("fits");
    let mut decoder = FrameDecoder::with_bounds(FRAME_BYTES_MAX, 4000);
    let first = decoder.read_space().as_ptr() as usize;
    let read = |decoder: &mut FrameDecoder, bytes: &[u8]| {
        let space = decoder.read_space();
        space[..bytes.len()].copy_from_slice(bytes);
        decoder.mark_read(bytes.len());
    };
    // Five 1000-byte frames through a 4000-byte buffer: the fourth ends its room, and the
    // fifth's first half goes to the start of the same memory, the first three being dropped.
    for _ in 0..3 {
        read(&mut decoder, &frame);
        let body = decoder
            .next_frame_shared(FrameType::PeerMessage)
            .expect("valid")
            .expect("whole");
        assert_eq!(&body[..], &frame[FRAME_HEADER_BYTES..]);
    }
    read(&mut decoder, &frame[..500]);
    read(&mut decoder, &frame[500..]);
    assert!(decoder.next_frame().expect("valid").is_some());
    read(&mut decoder, &frame[..500]);
    read(&mut decoder, &frame[500..]);
    let body = decoder
        .next_frame_shared(FrameType::PeerMessage)
        .expect("valid")
        .expect("whole");
    assert_eq!(
        body.as_ptr() as usize,
        first + FRAME_HEADER_BYTES,
        "a new receive buffer although no frame used the old one"
    );
    // While a frame taken from it lives, the buffer is not written over: the next one is new.
    for _ in 0..4 {
        read(&mut decoder, &frame);
        assert!(decoder.next_frame().expect("valid").is_some());
    }
    let later = decoder.read_space().as_ptr() as usize;
    assert!(
        later < first || later >= first + 4000,
        "kept frame overwritten"
    );
    assert_eq!(&body[..], &frame[FRAME_HEADER_BYTES..]);
}

#[test]
fn partial_frame_needs_more_bytes() {
    let mut stream = Vec::new();
    write_frame(FrameType::ClientRequest, b"hello", &mut stream).expect("fits");
    let mut decoder = FrameDecoder::new();
    decoder.extend_from_slice(&stream[..stream.len() - 1]);
    assert_eq!(decoder.next_frame(), Ok(None));
    assert_eq!(decoder.next_frame(), Ok(None));
    decoder.extend_from_slice(&stream[stream.len() - 1..]);
    let frame = decoder.next_frame().expect("ok").expect("frame");
    assert_eq!(
        (frame.frame_type, frame.body),
        (FrameType::ClientRequest, &b"hello"[..])
    );
    assert_eq!(decoder.next_frame(), Ok(None));
}

#[test]
fn header_layout_is_length_le_then_type() {
    let header = frame_header(FrameType::ClientResponse, 0x0003_0201).expect("fits");
    assert_eq!(header, [0x01, 0x02, 0x03, 0x00, 4]);
    assert_eq!(FRAME_HEADER_BYTES, 5);
    assert!(matches!(
        frame_header(FrameType::PeerMessage, ringraft::limits::FRAME_BYTES_MAX),
        Err(EncodeError::FrameTooLarge { .. })
    ));
}
