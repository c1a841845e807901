use super::*;
use proptest::prelude::*;

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn complete(buf: &[u8]) -> (usize, Option<SocketAddr>) {
    match parse(buf) {
        Ok(Parsed::Complete { len, source }) => (len, source),
        other => panic!("{other:?} for {buf:?}"),
    }
}

#[test]
fn v1_headers() {
    let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 1883\r\nMQTT";
    assert_eq!(
        complete(h),
        (h.len() - 4, Some("192.0.2.1:56324".parse().unwrap()))
    );
    let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8883\r\n";
    assert_eq!(
        complete(h),
        (h.len(), Some("[2001:db8::1]:4000".parse().unwrap()))
    );
    assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (15, None));
    assert_eq!(complete(b"PROXY UNKNOWN ff:: 1.2.3.4 1 2\r\n").1, None);
}

#[test]
fn v1_refusals() {
    let bad = [
        &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n"[..],
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 1883 7\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
        b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 01 1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 1\r\n",
        b"PROXY TCP4 192.0.2.01 198.51.100.2 1 1\r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.2 1 1\r\n",
        b"PROXY TCP4  192.0.2.1 198.51.100.2 1 1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 1\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 1\rx",
    ];
    for h in bad {
        assert!(
            matches!(parse(h), Err(ProxyError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(h)
        );
    }
    let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
    assert_eq!(parse(long.as_bytes()), Err(ProxyError::TooLong));
    assert_eq!(parse(b"\x10\x0c\x00\x04MQTT"), Err(ProxyError::Missing));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
    assert_eq!(parse(b"PROXX"), Err(ProxyError::Missing));
}

#[test]
fn v2_headers() {
    let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
    body.extend_from_slice(&56324u16.to_be_bytes());
    body.extend_from_slice(&1883u16.to_be_bytes());
    body.extend_from_slice(&[0xEA, 0, 3, b'v', b'p', b'c']); // a TLV, skipped
    let h = v2(1, 0x11, &body);
    assert_eq!(
        complete(&h),
        (h.len(), Some("192.0.2.1:56324".parse().unwrap()))
    );

    let mut body = vec![0x20, 0x01, 0x0d, 0xb8];
    body.extend_from_slice(&[0; 11]);
    body.push(1);
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&4000u16.to_be_bytes());
    body.extend_from_slice(&8883u16.to_be_bytes());
    let h = v2(1, 0x21, &body);
    assert_eq!(complete(&h).1, Some("[2001:db8::1]:4000".parse().unwrap()));

    // LOCAL (a health check), UNSPEC and UNIX keep the TCP peer.
    assert_eq!(complete(&v2(0, 0x00, &[])), (16, None));
    assert_eq!(complete(&v2(0, 0x11, &[0; 12])).1, None);
    assert_eq!(complete(&v2(1, 0x00, &[])).1, None);
    assert_eq!(complete(&v2(1, 0x31, &[0; 216])).1, None);
}

#[test]
fn v2_refusals() {
    let mut h = v2(1, 0x11, &[0; 12]);
    h[12] = 0x11; // version 1 in a v2 header
    assert!(matches!(parse(&h), Err(ProxyError::Malformed(_))));
    assert!(matches!(
        parse(&v2(2, 0x11, &[0; 12])),
        Err(ProxyError::Malformed(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x41, &[0; 12])),
        Err(ProxyError::Malformed(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x11, &[0; 11])),
        Err(ProxyError::Malformed(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x12, &[0; 12])),
        Err(ProxyError::Malformed(_))
    ));
    // The declared length is refused before its bytes arrive.
    let mut h = v2(1, 0x11, &[]);
    h[14..16].copy_from_slice(&3000u16.to_be_bytes());
    assert_eq!(parse(&h), Err(ProxyError::TooLong));
}

#[test]
fn every_prefix_is_incomplete() {
    let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2];
    body.extend_from_slice(&[0, 1, 0, 2]);
    for h in [
        v2(1, 0x11, &body),
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        for cut in 0..h.len() {
            assert_eq!(
                parse(&h[..cut]),
                Ok(Parsed::Incomplete),
                "cut {cut} of {h:?}"
            );
        }
        assert!(matches!(parse(&h), Ok(Parsed::Complete { .. })));
    }
}

proptest! {
    /// Any bytes: no panic, and a complete header never claims more than it was given.
    #[test]
    fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Parsed::Complete { len, .. }) = parse(&input) {
            prop_assert!(len <= input.len());
        }
    }

    /// Any bytes after a valid v2 signature: the same.
    #[test]
    fn never_panics_after_a_signature(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut input = V2_SIGNATURE.to_vec();
        input.extend(tail);
        if let Ok(Parsed::Complete { len, .. }) = parse(&input) {
            prop_assert!(len <= input.len());
        }
    }

    /// v1 lines of random printable text never panic.
    #[test]
    fn v1_fuzz(line in "PROXY [A-Z0-9 .:]{0,100}\r\n") {
        let _ = parse(line.as_bytes());
    }
}
