use super::*;
use proptest::prelude::*;

/// A client frame: `first` is FIN/RSV/opcode, the payload masked with `mask`.
fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn binary(payload: &[u8]) -> Vec<u8> {
    client_frame(0x82, payload, [1, 2, 3, 4])
}

/// Feeds `input` in chunks of `step` bytes; the data read and the control frames seen.
fn feed(input: &[u8], step: usize, max: u64) -> Result<(Vec<u8>, Vec<ControlFrame>), FrameError> {
    let mut reader = FrameReader::default();
    let mut raw = BytesMut::new();
    let mut out = BytesMut::new();
    let mut controls = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        raw.extend_from_slice(chunk);
        while let Some(control) = reader.read(&mut raw, &mut out, max)? {
            controls.push(control);
        }
    }
    assert!(
        raw.len() < 14 + 125 || controls.is_empty(),
        "bytes left unread"
    );
    Ok((out.to_vec(), controls))
}

#[test]
fn one_frame_several_frames_any_split() {
    let packets: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut stream = binary(&packets[..10]);
    stream.extend(binary(&packets[10..300]));
    stream.extend(binary(&packets[300..]));
    for step in [1, 2, 3, 7, 13, 64, 1000, usize::MAX] {
        let (out, controls) = feed(&stream, step, 1 << 20).unwrap();
        assert_eq!(out, packets, "step {step}");
        assert!(controls.is_empty());
    }
}

#[test]
fn fragmented_message_with_a_ping_between() {
    let mut stream = client_frame(0x02, b"ab", [9, 8, 7, 6]);
    stream.extend(client_frame(0x89, b"hi", [5, 5, 5, 5]));
    stream.extend(client_frame(0x00, b"cd", [1, 1, 1, 1]));
    stream.extend(client_frame(0x8A, b"", [0; 4])); // an unsolicited Pong is ignored
    stream.extend(client_frame(0x80, b"e", [2, 2, 2, 2]));
    stream.extend(client_frame(0x88, &1001u16.to_be_bytes(), [3, 3, 3, 3]));
    for step in [1, 5, usize::MAX] {
        let (out, controls) = feed(&stream, step, 100).unwrap();
        assert_eq!(out, b"abcde");
        assert_eq!(
            controls,
            vec![
                ControlFrame::Ping(Bytes::from_static(b"hi")),
                ControlFrame::Close(Some(1001))
            ]
        );
    }
    let (_, controls) = feed(&client_frame(0x88, b"", [0; 4]), 1, 100).unwrap();
    assert_eq!(controls, vec![ControlFrame::Close(None)]);
}

#[test]
fn refusals_carry_their_close_code() {
    let code = |input: &[u8], max| feed(input, usize::MAX, max).unwrap_err().code;
    assert_eq!(code(&client_frame(0x81, b"text", [1; 4]), 100), 1003);
    let mut unmasked = binary(b"ab");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    assert_eq!(code(&unmasked, 100), 1002);
    assert_eq!(code(&client_frame(0xC2, b"x", [1; 4]), 100), 1002); // RSV1
    assert_eq!(code(&client_frame(0x83, b"x", [1; 4]), 100), 1002); // reserved opcode
    assert_eq!(code(&client_frame(0x8B, b"x", [1; 4]), 100), 1002); // reserved control
    assert_eq!(code(&client_frame(0x80, b"x", [1; 4]), 100), 1002); // lone continuation
    assert_eq!(code(&client_frame(0x09, b"x", [1; 4]), 100), 1002); // fragmented ping
    assert_eq!(code(&client_frame(0x89, &[0; 126], [1; 4]), 1000), 1002);
    assert_eq!(code(&client_frame(0x88, &[3], [1; 4]), 100), 1002);
    let mut nested = client_frame(0x02, b"a", [1; 4]);
    nested.extend(binary(b"b"));
    assert_eq!(code(&nested, 100), 1002);
    // Size: a frame over the limit, and a message over it in fragments.
    assert_eq!(code(&binary(&[0; 101]), 100), 1009);
    assert!(feed(&binary(&[0; 100]), usize::MAX, 100).is_ok());
    let mut parts = client_frame(0x02, &[0; 60], [1; 4]);
    parts.extend(client_frame(0x80, &[0; 41], [1; 4]));
    assert_eq!(code(&parts, 100), 1009);
    // A declared length of 2^63 is refused from the header alone.
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[0; 4]);
    assert_eq!(code(&huge, 1 << 20), 1009);
}

#[test]
fn server_headers() {
    let mut h = [0; 10];
    assert_eq!(server_header(BINARY, 5, &mut h), 2);
    assert_eq!(&h[..2], &[0x82, 5]);
    assert_eq!(server_header(BINARY, 300, &mut h), 4);
    assert_eq!(&h[..4], &[0x82, 126, 1, 44]);
    assert_eq!(server_header(BINARY, 70_000, &mut h), 10);
    assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    assert_eq!(server_header(CLOSE, 2, &mut h), 2);
    assert_eq!(&h[..2], &[0x88, 2]);
}

proptest! {
    /// Any bytes: the reader never panics and never reads more than it was given.
    #[test]
    fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..40) {
        let _ = feed(&input, step, 256);
    }

    /// Frames of any sizes and masks, split anywhere, give back the same bytes.
    #[test]
    fn any_framing_any_split(
        sizes in proptest::collection::vec(0usize..300, 1..8),
        mask in any::<[u8; 4]>(),
        step in 1usize..50,
    ) {
        let mut data = Vec::new();
        let mut stream = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..*size).map(|j| (i * 31 + j) as u8).collect();
            stream.extend(client_frame(0x82, &payload, mask));
            data.extend(payload);
        }
        let (out, _) = feed(&stream, step, 1 << 16).unwrap();
        prop_assert_eq!(out, data);
    }
}
