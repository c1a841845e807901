//! Codec micro-benchmarks: decode and encode of the packets on the hot path, against
//! mqttbytes 0.6 (the bar from shared/CRATES.md: at most its time, with no allocation).
//!
//! Run: `cargo bench --bench codec`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warren::protocol::{self, Packet, ProtocolVersion, Publish, PublishProperties, QoS};

const N: usize = 1_000;

fn publish(qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "sensors/building-7/floor-3/temperature".into(),
        pkid: if qos == QoS::AtMostOnce { 0 } else { 42 },
        properties: PublishProperties::default(),
        payload: Bytes::from_static(&[0x5a; 64]),
    }
}

/// N encoded PUBLISH packets back to back, as they arrive from a busy publisher.
fn stream(version: ProtocolVersion, qos: QoS) -> Bytes {
    let mut out = BytesMut::new();
    let packet = Packet::Publish(publish(qos));
    for _ in 0..N {
        protocol::encode(&packet, version, protocol::MAX_PACKET_SIZE, &mut out).unwrap();
    }
    out.freeze()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode publish");
    group.throughput(Throughput::Elements(N as u64));
    for (name, version, qos) in [
        (
            "warren 3.1.1 qos0",
            ProtocolVersion::V3_1_1,
            QoS::AtMostOnce,
        ),
        (
            "warren 3.1.1 qos1",
            ProtocolVersion::V3_1_1,
            QoS::AtLeastOnce,
        ),
        ("warren 5.0 qos1", ProtocolVersion::V5, QoS::AtLeastOnce),
    ] {
        let bytes = stream(version, qos);
        let limits = protocol::DecodeLimits::new(protocol::MAX_PACKET_SIZE);
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |mut buf| {
                    while let Some(packet) =
                        protocol::decode(&mut buf, Some(version), &limits).unwrap()
                    {
                        std::hint::black_box(packet);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    let bytes = stream(ProtocolVersion::V3_1_1, QoS::AtMostOnce);
    group.bench_function("mqttbytes 3.1.1 qos0", |b| {
        b.iter_batched(
            || BytesMut::from(&bytes[..]),
            |mut buf| {
                while !buf.is_empty() {
                    std::hint::black_box(mqttbytes::v4::read(&mut buf, 1 << 20).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode publish");
    group.throughput(Throughput::Elements(N as u64));
    let packet = Packet::Publish(publish(QoS::AtLeastOnce));
    let mut out = BytesMut::with_capacity(200 * N);
    group.bench_function("warren 3.1.1 qos1", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..N {
                protocol::encode(
                    &packet,
                    ProtocolVersion::V3_1_1,
                    protocol::MAX_PACKET_SIZE,
                    &mut out,
                )
                .unwrap();
            }
        })
    });
    let theirs = mqttbytes::v4::Publish {
        dup: false,
        qos: mqttbytes::QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/building-7/floor-3/temperature".into(),
        pkid: 42,
        payload: Bytes::from_static(&[0x5a; 64]),
    };
    group.bench_function("mqttbytes 3.1.1 qos1", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..N {
                theirs.write(&mut out).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
