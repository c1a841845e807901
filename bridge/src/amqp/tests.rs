//! The client against a scripted fake AMQP server on a real socket: the handshake's tuning,
//! confirms and returns, hostile frames (each ends only its connection, with a
//! `connection.close` naming the error), a channel closed under a passive declare, a stray
//! `channel.close-ok`, heartbeats and a server closing the connection. The fake server speaks
//! through the crate's own frame and property encoders; methods only a server sends are
//! written here by hand.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::channel::Channel;
use super::url::AmqpUrl;
use super::wire::method as m;
use super::wire::method::simple as method;
use super::wire::props::BasicProperties;
use super::wire::table::{FieldTable, FieldValue};
use super::wire::{
    begin_frame, end_frame, put_long, put_short, take_frame, Cursor, Frame, FRAME_BODY,
    FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
};
use super::{consume, open, AmqpError, Confirm, ConnectOptions, Connection, ConsumeSpec};
use super::{Consumer, Publisher};

/// The bound on every wait that is not the heartbeat test's.
const WAIT: Duration = Duration::from_secs(2);

const CONNECTION: u16 = 10;
const CHANNEL: u16 = 20;
const QUEUE: u16 = 50;
const BASIC: u16 = 60;
const CONFIRM: u16 = 85;

/// What the fake server offers in `connection.tune`.
#[derive(Clone, Copy)]
struct Tune {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

const PLAIN_TUNE: Tune = Tune {
    channel_max: 16,
    frame_max: 4096,
    heartbeat: 0,
};

/// A method the client sent.
struct Sent {
    channel: u16,
    class: u16,
    id: u16,
    args: Cursor,
}

/// The server's side of one connection.
struct Peer {
    sock: TcpStream,
    buf: BytesMut,
}

/// Appends a short string.
fn short(out: &mut BytesMut, s: &[u8]) {
    put_short(out, "test", s).expect("short string");
}

/// Appends a content header and the body in one frame.
fn content(out: &mut BytesMut, ch: u16, props: &BasicProperties, body: &[u8]) {
    let at = begin_frame(out, FRAME_HEADER, ch);
    props.encode(body.len() as u64, out).expect("properties");
    end_frame(out, at);
    let at = begin_frame(out, FRAME_BODY, ch);
    out.put_slice(body);
    end_frame(out, at);
}

fn deliver(out: &mut BytesMut, ch: u16, tag: u64, props: &BasicProperties, body: &[u8]) {
    method(out, ch, BASIC, 60, |o| {
        short(o, b"ctag");
        o.put_u64(tag);
        o.put_u8(0);
        short(o, b"ex");
        short(o, b"rk");
    });
    content(out, ch, props, body);
}

/// The client's options for a server on `port`.
fn options(port: u16) -> ConnectOptions {
    ConnectOptions {
        url: AmqpUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            heartbeat: None,
            external: false,
        },
        name: "fake-server test".into(),
        tls: None,
    }
}

impl Peer {
    /// The next frame from the client (heartbeats included).
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = take_frame(&mut self.buf, 1 << 20).expect("a frame from the client") {
                return f;
            }
            let n = timeout(WAIT, self.sock.read_buf(&mut self.buf))
                .await
                .expect("the client said nothing")
                .expect("read from the client");
            assert!(n > 0, "the client closed the socket");
        }
    }

    /// The next method from the client (heartbeats skipped).
    async fn method(&mut self) -> Sent {
        loop {
            let f = self.frame().await;
            if f.kind == FRAME_HEARTBEAT {
                continue;
            }
            assert_eq!(f.kind, FRAME_METHOD, "expected a method frame");
            let mut args = Cursor::new(f.payload);
            let class = args.u16().expect("class");
            let id = args.u16().expect("method");
            return Sent {
                channel: f.channel,
                class,
                id,
                args,
            };
        }
    }

    /// The next method, which must be `class.id`; its channel and arguments.
    async fn expect(&mut self, class: u16, id: u16) -> (u16, Cursor) {
        let s = self.method().await;
        assert_eq!(
            (s.class, s.id),
            (class, id),
            "unexpected method from the client"
        );
        (s.channel, s.args)
    }

    async fn send(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.expect("write to the client");
    }

    /// Sends `connection.close` (channel 0) or `channel.close`.
    async fn close(&mut self, ch: u16, code: u16, text: &str) {
        let mut out = BytesMut::new();
        m::close_frame(&mut out, ch, code, text);
        self.send(&out).await;
    }

    async fn reply(&mut self, ch: u16, class: u16, id: u16, args: impl FnOnce(&mut BytesMut)) {
        let mut out = BytesMut::new();
        method(&mut out, ch, class, id, args);
        self.send(&out).await;
    }

    /// Accepts one client and plays the handshake up to `tune`; the client's `tune-ok`.
    async fn accept(l: &TcpListener, tune: Tune) -> (Peer, Tune) {
        let mut p = Peer::start(l).await;
        p.expect(CONNECTION, 11).await;
        let t = p.tune(tune).await;
        (p, t)
    }

    /// Accepts one client, reads its protocol header, sends `connection.start` and checks
    /// the client's `start-ok` (PLAIN, guest/guest) without reading it.
    async fn start(l: &TcpListener) -> Peer {
        let (sock, _) = timeout(WAIT, l.accept())
            .await
            .expect("no client")
            .expect("accept");
        let mut p = Peer {
            sock,
            buf: BytesMut::new(),
        };
        let mut header = [0u8; 8];
        timeout(WAIT, p.sock.read_exact(&mut header))
            .await
            .expect("no protocol header")
            .expect("read the protocol header");
        assert_eq!(&header, PROTOCOL_HEADER);
        let mut props = FieldTable::new();
        props.insert("product", FieldValue::from("fake"));
        p.reply(0, CONNECTION, 10, |o| {
            o.put_u8(0);
            o.put_u8(9);
            props.encode(o).expect("server properties");
            put_long(o, b"AMQPLAIN PLAIN EXTERNAL");
            put_long(o, b"en_US");
        })
        .await;
        p
    }

    /// Sends `tune`, reads `tune-ok` and `connection.open`, sends `open-ok`.
    async fn tune(&mut self, tune: Tune) -> Tune {
        self.reply(0, CONNECTION, 30, |o| {
            o.put_u16(tune.channel_max);
            o.put_u32(tune.frame_max);
            o.put_u16(tune.heartbeat);
        })
        .await;
        let (ch, mut a) = self.expect(CONNECTION, 31).await;
        assert_eq!(ch, 0);
        let agreed = Tune {
            channel_max: a.u16().expect("channel_max"),
            frame_max: a.u32().expect("frame_max"),
            heartbeat: a.u16().expect("heartbeat"),
        };
        let (_, mut a) = self.expect(CONNECTION, 40).await;
        assert_eq!(&a.short().expect("vhost")[..], b"/");
        self.reply(0, CONNECTION, 41, |o| short(o, b"")).await;
        agreed
    }

    /// Answers a `channel.open`; its channel.
    async fn open_channel(&mut self) -> u16 {
        let (ch, _) = self.expect(CHANNEL, 10).await;
        self.reply(ch, CHANNEL, 11, |o| put_long(o, b"")).await;
        ch
    }

    /// Answers a publisher's channel and `confirm.select`; its channel.
    async fn publisher(&mut self) -> u16 {
        let ch = self.open_channel().await;
        let (c, _) = self.expect(CONFIRM, 10).await;
        assert_eq!(c, ch);
        self.reply(ch, CONFIRM, 11, |_| {}).await;
        ch
    }

    /// Answers a `queue.declare` (whose passive and durable bits are checked).
    async fn declare_ok(&mut self, passive: bool, durable: bool) -> u16 {
        let (ch, mut a) = self.expect(QUEUE, 10).await;
        a.u16().expect("reserved");
        assert_eq!(&a.short().expect("queue")[..], b"q");
        let bits = a.u8().expect("bits");
        assert_eq!(
            (bits & 1 != 0, bits & 2 != 0),
            (passive, durable),
            "queue.declare passive and durable"
        );
        self.reply(ch, QUEUE, 11, |o| {
            short(o, b"q");
            o.put_u32(0);
            o.put_u32(0);
        })
        .await;
        ch
    }

    /// Answers `basic.qos` and `basic.consume` (no bindings asked for).
    async fn qos_and_consume(&mut self, ch: u16) {
        let (c, _) = self.expect(BASIC, 10).await;
        assert_eq!(c, ch);
        self.reply(ch, BASIC, 11, |_| {}).await;
        let (c, _) = self.expect(BASIC, 20).await;
        assert_eq!(c, ch);
        self.reply(ch, BASIC, 21, |o| short(o, b"ctag")).await;
    }

    /// Answers a consumer whose queue exists; its channel.
    async fn consumer(&mut self) -> u16 {
        let ch = self.open_channel().await;
        assert_eq!(self.declare_ok(true, false).await, ch);
        self.qos_and_consume(ch).await;
        ch
    }

    /// Reads one publication: exchange, routing key, mandatory, properties and body.
    async fn publication(&mut self, ch: u16) -> (Bytes, Bytes, bool, BasicProperties, Vec<usize>) {
        let (c, mut a) = self.expect(BASIC, 40).await;
        assert_eq!(c, ch);
        a.u16().expect("reserved");
        let exchange = a.short().expect("exchange");
        let key = a.short().expect("routing key");
        let bits = a.u8().expect("bits");
        a.finish("basic.publish").expect("basic.publish ends");
        let f = self.frame().await;
        assert_eq!((f.kind, f.channel), (FRAME_HEADER, ch));
        let (size, props) = BasicProperties::decode(Cursor::new(f.payload)).expect("properties");
        let mut frames = Vec::new();
        while (frames.iter().sum::<usize>() as u64) < size {
            let f = self.frame().await;
            assert_eq!((f.kind, f.channel), (FRAME_BODY, ch));
            frames.push(f.payload.len());
        }
        assert_eq!(frames.iter().sum::<usize>() as u64, size);
        (exchange, key, bits & 1 != 0, props, frames)
    }

    /// Reads the client's `connection.close` (code and text), then the socket's end.
    async fn connection_close(&mut self) -> (u16, String) {
        let (ch, mut a) = self.expect(CONNECTION, 50).await;
        assert_eq!(ch, 0);
        let code = a.u16().expect("code");
        let text = String::from_utf8_lossy(&a.short().expect("text")).into_owned();
        // The client lets the socket go (an end of file or a reset; anything but silence).
        let mut rest = [0u8; 64];
        loop {
            match timeout(WAIT, self.sock.read(&mut rest))
                .await
                .expect("the client kept the socket open")
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (code, text)
    }
}

/// A listener and a connection to it, the fake server past the handshake.
async fn connected(tune: Tune) -> (Connection, Peer, Tune) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let o = options(l.local_addr().expect("address").port());
    let (c, (p, t)) = timeout(WAIT, async {
        tokio::join!(open(&o), Peer::accept(&l, tune))
    })
    .await
    .expect("handshake hangs");
    (c.expect("open"), p, t)
}

/// Opens `n` channels, the server answering each (kept open: a dropped one sends a close).
async fn open_channels(conn: &Connection, p: &mut Peer, n: usize) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..n {
        let (c, _) = timeout(WAIT, async {
            tokio::join!(Channel::open(conn), p.open_channel())
        })
        .await
        .expect("channel open hangs");
        channels.push(c.expect("channel"));
    }
    channels
}

fn spec() -> ConsumeSpec<'static> {
    ConsumeSpec {
        queue: "q",
        exchange: "ex",
        bindings: &[],
        prefetch: 10,
        consumer_tag: "ctag",
    }
}

/// A connection with a consumer on it.
async fn consuming() -> (Connection, Consumer, Peer, u16) {
    let (conn, mut p, _) = connected(PLAIN_TUNE).await;
    let s = spec();
    let (c, ch) = timeout(WAIT, async {
        tokio::join!(consume(&conn, &s), p.consumer())
    })
    .await
    .expect("consume hangs");
    (conn, c.expect("consume"), p, ch)
}

/// A connection with a confirm-mode publisher on it.
async fn publishing(tune: Tune) -> (Connection, Publisher<usize>, Peer, u16) {
    let (conn, mut p, _) = connected(tune).await;
    let (pb, ch) = timeout(WAIT, async {
        tokio::join!(Publisher::open(&conn), p.publisher())
    })
    .await
    .expect("publisher open hangs");
    (conn, pb.expect("publisher"), p, ch)
}

/// Waits until `n` publications are settled (message ids from `ids`).
async fn settle(p: &mut Publisher<usize>, ids: &[&'static str], n: usize) -> Vec<(usize, Confirm)> {
    let mut out = Vec::new();
    timeout(WAIT, async {
        while out.len() < n {
            p.ready().await;
            p.settled(&mut out, |t| ids.get(*t).map(|id| id.as_bytes()))
                .expect("publisher channel ended");
        }
    })
    .await
    .expect("confirms did not come");
    out
}

#[tokio::test]
async fn the_client_takes_the_servers_limits() {
    for (offer, agreed) in [
        ((5, 4096, 0), (5, 4096, 0)),
        ((0, 0, 0), (2047, 131_072, 0)),
        ((u16::MAX, 1 << 20, 30), (2047, 131_072, 30)),
    ] {
        let tune = Tune {
            channel_max: offer.0,
            frame_max: offer.1,
            heartbeat: offer.2,
        };
        let (conn, _p, t) = connected(tune).await;
        assert_eq!((t.channel_max, t.frame_max, t.heartbeat), agreed);
        assert!(conn.is_open());
    }

    // frame_max 4096: a 10,000-byte body goes in body frames of at most 4088 bytes.
    let tune = Tune {
        channel_max: 5,
        frame_max: 4096,
        heartbeat: 0,
    };
    let (conn, mut pb, mut p, ch) = publishing(tune).await;
    let body = vec![7u8; 10_000];
    pb.publish("ex", "a.b", &BasicProperties::default(), &body, 0)
        .expect("publish");
    pb.flush().expect("flush");
    let (_, _, _, _, frames) = timeout(WAIT, p.publication(ch)).await.expect("publication");
    assert_eq!(frames, [4088, 4088, 1824]);

    // channel_max 5: four more channels open, a sixth is refused before anything is sent.
    let channels = open_channels(&conn, &mut p, 4).await;
    let mut ids: Vec<u16> = channels.iter().map(|c| c.id).chain([ch]).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    match timeout(WAIT, Channel::open(&conn))
        .await
        .expect("sixth channel hangs")
    {
        Err(AmqpError::Gone(why)) => assert!(why.contains("no channel id"), "{why}"),
        Err(e) => panic!("sixth channel: {e}"),
        Ok(c) => panic!("a sixth channel opened on id {}", c.id),
    }
}

#[tokio::test]
async fn a_refused_login_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let o = options(l.local_addr().expect("address").port());
    let server = async {
        let mut p = Peer::start(&l).await;
        p.expect(CONNECTION, 11).await;
        p.close(
            0,
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
        )
        .await;
        p
    };
    let (r, _p) = timeout(WAIT, async { tokio::join!(open(&o), server) })
        .await
        .expect("handshake hangs");
    match r {
        Err(AmqpError::Refused(why)) => {
            assert!(
                why.contains("403") && why.contains("ACCESS_REFUSED"),
                "{why}"
            )
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

#[tokio::test]
async fn confirms_returns_and_nacks_are_settled_in_order() {
    let (_conn, mut pb, mut p, ch) = publishing(PLAIN_TUNE).await;
    let ids = ["m1", "m2", "m3", "m4"];
    let mut headers = FieldTable::new();
    headers.insert("k", FieldValue::from("v"));
    let props = |i: usize| BasicProperties {
        content_type: Some(Bytes::from_static(b"text/plain")),
        delivery_mode: Some(2),
        headers: Some(headers.clone()),
        message_id: Some(Bytes::from(ids[i])),
        ..BasicProperties::default()
    };
    for i in 0..3 {
        let key = format!("r.{i}");
        pb.publish("ex", &key, &props(i), format!("body {i}").as_bytes(), i)
            .expect("publish");
    }
    pb.flush().expect("flush");
    for i in 0..3 {
        let (exchange, key, mandatory, got, frames) =
            timeout(WAIT, p.publication(ch)).await.expect("publication");
        assert_eq!(&exchange[..], b"ex");
        assert_eq!(key, format!("r.{i}").as_bytes());
        assert!(mandatory, "every publication is mandatory");
        assert_eq!(got, props(i));
        assert_eq!(frames, [6]);
    }
    // The second is returned (its content carries its message id), then all three acked.
    let mut out = BytesMut::new();
    method(&mut out, ch, BASIC, 50, |o| {
        o.put_u16(312);
        short(o, b"NO_ROUTE");
        short(o, b"ex");
        short(o, b"r.1");
    });
    content(&mut out, ch, &props(1), b"body 1");
    method(&mut out, ch, BASIC, 80, |o| {
        o.put_u64(3);
        o.put_u8(1);
    });
    p.send(&out).await;
    let got = settle(&mut pb, &ids, 3).await;
    assert_eq!(got.len(), 3);
    assert!(matches!(got[0], (0, Confirm::Ack)), "{:?}", got[0]);
    match &got[1] {
        (1, Confirm::Returned(r)) => {
            assert_eq!(r.message_id.as_deref(), Some(&b"m2"[..]));
            assert_eq!((r.reply_code, &r.reply_text[..]), (312, "NO_ROUTE"));
            assert_eq!(r.routing_key, "r.1");
        }
        other => panic!("expected the second returned, got {other:?}"),
    }
    assert!(matches!(got[2], (2, Confirm::Ack)), "{:?}", got[2]);

    // A nack.
    pb.publish("ex", "r.3", &props(3), b"body 3", 3)
        .expect("publish");
    pb.flush().expect("flush");
    timeout(WAIT, p.publication(ch)).await.expect("publication");
    p.reply(ch, BASIC, 120, |o| {
        o.put_u64(4);
        o.put_u8(0);
    })
    .await;
    let got = settle(&mut pb, &ids, 1).await;
    assert!(matches!(got[..], [(3, Confirm::Nack)]), "{got:?}");
}

/// What a hostile server does after the handshake (and a consumer, when asked).
enum Hostile {
    /// A frame on a channel above the agreed channel_max.
    UnknownChannel,
    /// A frame announcing more than the agreed frame_max (only its header is sent).
    TooLarge,
    /// A heartbeat whose end octet is not 0xCE.
    BadFrameEnd,
    /// A delivery whose content header announces a body over the limit.
    HugeBody,
    /// A body frame on the consumer's channel with no delivery before it.
    BodyWithoutHeader,
    /// basic.get-ok, which the client never asks for.
    UnknownMethod,
}

/// Each hostile frame ends the connection (not the process): the client closes it with
/// the code its reader chooses, its consumer ends and `closed` says why.
#[tokio::test]
async fn hostile_frames_end_only_their_connection() {
    for (case, code) in [
        (Hostile::UnknownChannel, 504),
        (Hostile::TooLarge, 501),
        (Hostile::BadFrameEnd, 501),
        (Hostile::HugeBody, 501),
        (Hostile::BodyWithoutHeader, 505),
        (Hostile::UnknownMethod, 540),
    ] {
        let (conn, mut consumer, mut p, ch) = consuming().await;
        let mut out = BytesMut::new();
        match case {
            Hostile::UnknownChannel => {
                method(&mut out, PLAIN_TUNE.channel_max + 1, CHANNEL, 11, |o| {
                    put_long(o, b"")
                })
            }
            Hostile::TooLarge => {
                out.put_u8(FRAME_METHOD);
                out.put_u16(0);
                out.put_u32(4096 - 8 + 1);
            }
            Hostile::BadFrameEnd => out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCD]),
            Hostile::HugeBody => {
                method(&mut out, ch, BASIC, 60, |o| {
                    short(o, b"ctag");
                    o.put_u64(1);
                    o.put_u8(0);
                    short(o, b"ex");
                    short(o, b"rk");
                });
                let at = begin_frame(&mut out, FRAME_HEADER, ch);
                BasicProperties::default()
                    .encode(1 << 40, &mut out)
                    .expect("properties");
                end_frame(&mut out, at);
            }
            Hostile::BodyWithoutHeader => {
                let at = begin_frame(&mut out, FRAME_BODY, ch);
                out.put_slice(b"stray");
                end_frame(&mut out, at);
            }
            Hostile::UnknownMethod => method(&mut out, ch, BASIC, 71, |o| {
                o.put_u64(1);
                o.put_u8(0);
                short(o, b"ex");
                short(o, b"rk");
                o.put_u32(0);
            }),
        }
        p.send(&out).await;
        let (got, text) = p.connection_close().await;
        assert_eq!(got, code, "close code ({text})");
        let why = timeout(WAIT, conn.closed()).await.expect("closed hangs");
        assert!(why.contains("protocol error"), "{why}");
        assert!(!conn.is_open());
        let next = timeout(WAIT, consumer.next())
            .await
            .expect("consumer hangs");
        assert!(next.is_none(), "the consumer outlived its connection");
    }
}

/// A table nested 100 deep in a delivery's headers: that delivery's properties are an error,
/// the connection and the consumer go on.
#[tokio::test]
async fn a_delivery_with_unreadable_properties_is_kept_apart() {
    let (conn, mut consumer, mut p, ch) = consuming().await;
    let mut deep = FieldTable::new();
    for _ in 0..100 {
        let mut t = FieldTable::new();
        t.insert("a", FieldValue::Table(deep));
        deep = t;
    }
    let bad = BasicProperties {
        headers: Some(deep),
        message_id: Some(Bytes::from_static(b"deep")),
        ..BasicProperties::default()
    };
    let good = BasicProperties {
        message_id: Some(Bytes::from_static(b"ok")),
        ..BasicProperties::default()
    };
    let mut out = BytesMut::new();
    deliver(&mut out, ch, 1, &bad, b"first");
    deliver(&mut out, ch, 2, &good, b"second");
    p.send(&out).await;

    let d = timeout(WAIT, consumer.next())
        .await
        .expect("no delivery")
        .expect("consumer ended");
    assert!(d.properties.is_err(), "{:?}", d.properties);
    assert_eq!(&d.body[..], b"first");
    d.acker.reject(false).expect("reject");
    let d = timeout(WAIT, consumer.next())
        .await
        .expect("no second delivery")
        .expect("consumer ended");
    assert_eq!(d.properties.as_ref().expect("properties"), &good);
    assert_eq!(
        (&d.routing_key[..], &d.body[..]),
        (&b"rk"[..], &b"second"[..])
    );
    d.acker.ack().expect("ack");

    let (c, mut a) = p.expect(BASIC, 90).await;
    assert_eq!((c, a.u64().expect("tag")), (ch, 1));
    let (c, mut a) = p.expect(BASIC, 80).await;
    assert_eq!((c, a.u64().expect("tag")), (ch, 2));
    assert!(conn.is_open());
}

/// A passive declare of a missing queue: the server closes the channel (404), the client
/// answers close-ok and declares the queue durable on a new channel.
#[tokio::test]
async fn a_missing_queue_is_declared_on_a_new_channel() {
    let (conn, mut p, _) = connected(PLAIN_TUNE).await;
    let server = async {
        let ch = p.open_channel().await;
        let (c, mut a) = p.expect(QUEUE, 10).await;
        assert_eq!(c, ch);
        a.u16().expect("reserved");
        a.short().expect("queue");
        assert_eq!(a.u8().expect("bits") & 1, 1, "the first declare is passive");
        p.close(ch, 404, "NOT_FOUND - no queue 'q' in vhost '/'")
            .await;
        let (c, _) = p.expect(CHANNEL, 41).await;
        assert_eq!(c, ch, "close-ok on the closed channel");
        let ch2 = p.open_channel().await;
        assert_eq!(p.declare_ok(false, true).await, ch2);
        p.qos_and_consume(ch2).await;
    };
    let s = spec();
    let (c, ()) = timeout(WAIT, async { tokio::join!(consume(&conn, &s), server) })
        .await
        .expect("consume hangs");
    c.expect("consume");
    assert!(conn.is_open());
}

/// Heartbeat 1 s: the client beats at least once a second and gives a silent server up
/// after two missed intervals.
#[tokio::test]
async fn a_silent_server_is_given_up() {
    let tune = Tune {
        channel_max: 16,
        frame_max: 4096,
        heartbeat: 1,
    };
    let (conn, mut p, t) = connected(tune).await;
    let start = Instant::now();
    assert_eq!(t.heartbeat, 1);
    let f = timeout(Duration::from_millis(1200), p.frame())
        .await
        .expect("no heartbeat from the client");
    assert_eq!(
        (f.kind, f.channel, f.payload.len()),
        (FRAME_HEARTBEAT, 0, 0)
    );
    let why = timeout(Duration::from_secs(3), conn.closed())
        .await
        .expect("the client kept a silent server");
    let after = start.elapsed();
    assert!(why.contains("heartbeat"), "{why}");
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_millis(3500),
        "given up after {after:?}"
    );
}

/// The server closes the connection: the client answers close-ok, says why, and a publisher
/// waiting for confirms hears that its channel is gone.
#[tokio::test]
async fn a_server_close_is_answered_and_reported() {
    let (conn, mut pb, mut p, ch) = publishing(PLAIN_TUNE).await;
    pb.publish("ex", "k", &BasicProperties::default(), b"x", 0)
        .expect("publish");
    pb.flush().expect("flush");
    timeout(WAIT, p.publication(ch)).await.expect("publication");
    p.close(
        0,
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
    )
    .await;
    let (c, _) = p.expect(CONNECTION, 51).await;
    assert_eq!(c, 0);
    let why = timeout(WAIT, conn.closed()).await.expect("closed hangs");
    assert!(
        why.contains("320") && why.contains("CONNECTION_FORCED"),
        "{why}"
    );
    timeout(WAIT, pb.ready()).await.expect("ready hangs");
    let mut settled = Vec::new();
    let r = pb.settled(&mut settled, |_| None);
    assert!(r.is_err() && settled.is_empty(), "{r:?} {settled:?}");
    pb.publish("ex", "k", &BasicProperties::default(), b"y", 1)
        .expect("publish is only queued");
    assert!(pb.flush().is_err());
}

/// A `channel.close-ok` for a channel the client never opened frees no channel id: later
/// channels still get ids of their own.
#[tokio::test]
async fn a_stray_close_ok_frees_no_channel_id() {
    let (conn, mut p, _) = connected(PLAIN_TUNE).await;
    let server = async {
        let (ch, _) = p.expect(CHANNEL, 10).await;
        let mut out = BytesMut::new();
        m::close_ok(&mut out, 2);
        method(&mut out, ch, CHANNEL, 11, |o| put_long(o, b""));
        p.send(&out).await;
    };
    let (first, ()) = timeout(WAIT, async { tokio::join!(Channel::open(&conn), server) })
        .await
        .expect("channel open hangs");
    let mut channels = vec![first.expect("channel")];
    channels.extend(open_channels(&conn, &mut p, 2).await);
    let ids: Vec<u16> = channels.iter().map(|c| c.id).collect();
    assert_eq!(ids, [1, 2, 3], "channel ids");
}

/// `?auth_mechanism=external`: start-ok names EXTERNAL with an empty response (RabbitMQ takes
/// the user from the TLS client certificate); PLAIN otherwise, with user and password.
#[tokio::test]
async fn the_client_authenticates_with_plain_or_external() {
    for external in [false, true] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut o = options(l.local_addr().unwrap().port());
        o.url.external = external;
        let client = tokio::spawn(async move { open(&o).await });
        let mut p = Peer::start(&l).await;
        let (_, mut a) = p.expect(CONNECTION, 11).await;
        FieldTable::decode(&mut a).expect("client properties");
        let mechanism = a.short().expect("mechanism");
        let response = a.long().expect("response");
        if external {
            assert_eq!(
                (&mechanism[..], &response[..]),
                (&b"EXTERNAL"[..], &b""[..])
            );
        } else {
            assert_eq!(
                (&mechanism[..], &response[..]),
                (&b"PLAIN"[..], &b"\0guest\0guest"[..])
            );
        }
        p.tune(PLAIN_TUNE).await;
        let conn = timeout(WAIT, client).await.expect("open hangs").unwrap();
        assert!(conn.expect("open").is_open());
    }
}
