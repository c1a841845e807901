//! Bytes on the wire with and without MQTT 5.0 Topic Aliases, in the same run.
//!
//! Starts Warren in process and connects two 5.0 subscribers to `plant/#` over raw sockets
//! (the project's own codec): one that allows 10 topic aliases (CONNECT Topic Alias Maximum),
//! one that allows none. A 3.1.1 publisher sends `MESSAGES` QoS 0 messages of 16 bytes, cycling
//! over `TOPICS` topic names of a typical device shape (`plant/line-3/machine-17/sensor-N/
//! temperature`); each subscriber counts the bytes it reads. With more topics than aliases
//! every message needs a new alias (the least recently used is replaced), which costs 3 bytes
//! more than no alias at all: the second case shows that worst case.
//!
//! Byte counts do not depend on the build profile, so the quick way to run it is
//!   cargo test --bench topic_alias          # or: cargo bench --bench topic_alias
//! Prints one JSON line per case.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::config::Config;
use warren::protocol::{
    self, Connect, ConnectProperties, DecodeLimits, Packet, ProtocolVersion, Publish, QoS,
    Subscribe, SubscriptionOptions,
};
use warren::Broker;

const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 16;
const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: protocol::MAX_PACKET_SIZE,
    max_user_properties: usize::MAX,
};

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
    /// Bytes read from the socket so far.
    bytes_in: usize,
}

impl Client {
    async fn connect(addr: SocketAddr, version: ProtocolVersion, id: &str, aliases: u16) -> Client {
        let mut client = Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            version,
            bytes_in: 0,
        };
        client
            .send(&Packet::Connect(Box::new(Connect {
                protocol: version,
                clean_start: true,
                keep_alive: 0,
                client_id: id.into(),
                will: None,
                username: None,
                password: None,
                properties: ConnectProperties {
                    topic_alias_maximum: (aliases > 0).then_some(aliases),
                    ..ConnectProperties::default()
                },
            })))
            .await;
        assert!(matches!(client.recv().await, Packet::ConnAck(_)));
        client
    }

    async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        protocol::encode(packet, self.version, protocol::MAX_PACKET_SIZE, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(packet) =
                protocol::decode(&mut self.buf, Some(self.version), &LIMITS).expect("valid packet")
            {
                return packet;
            }
            let n = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "closed");
            self.bytes_in += n;
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.send(&Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![(filter.into(), SubscriptionOptions::default())],
            properties: Default::default(),
        }))
        .await;
        assert!(matches!(self.recv().await, Packet::SubAck(_)));
    }

    /// Reads `n` PUBLISH packets; returns the bytes they took on the wire.
    async fn count(mut self, n: usize) -> usize {
        let start = self.bytes_in - self.buf.len();
        for _ in 0..n {
            assert!(matches!(self.recv().await, Packet::Publish(_)));
        }
        self.bytes_in - self.buf.len() - start
    }
}

async fn case(topics: usize) {
    let (broker, addr) = {
        let config = Config::for_tests();
        let handle = Broker::start(config).await.expect("broker starts");
        let addr = handle.local_addr("tcp").expect("tcp listener");
        (handle, addr)
    };
    let mut with = Client::connect(addr, ProtocolVersion::V5, "with-aliases", 10).await;
    let mut without = Client::connect(addr, ProtocolVersion::V5, "without", 0).await;
    with.subscribe("plant/#").await;
    without.subscribe("plant/#").await;
    let with = tokio::spawn(with.count(MESSAGES));
    let without = tokio::spawn(without.count(MESSAGES));
    let mut publisher = Client::connect(addr, ProtocolVersion::V3_1_1, "pub", 0).await;
    let names: Vec<String> = (0..topics)
        .map(|n| format!("plant/line-3/machine-17/sensor-{n}/temperature"))
        .collect();
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    for i in 0..MESSAGES {
        publisher
            .send(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: names[i % topics].as_str().into(),
                pkid: 0,
                properties: Default::default(),
                payload: payload.clone(),
            }))
            .await;
    }
    let wait = Duration::from_secs(120);
    let with = tokio::time::timeout(wait, with).await.unwrap().unwrap();
    let without = tokio::time::timeout(wait, without).await.unwrap().unwrap();
    println!(
        "{{\"bench\":\"topic_alias\",\"messages\":{MESSAGES},\"payload\":{PAYLOAD},\
         \"topics\":{topics},\"aliases\":10,\"bytes_with_aliases\":{with},\
         \"bytes_without\":{without},\"ratio\":{:.3}}}",
        with as f64 / without as f64
    );
    broker.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        case(5).await;
        case(20).await;
    });
}
