//! One AMQP connection: the handshake (PLAIN, tuning, virtual host), then two tasks that own
//! the socket. The reader takes whole frames off one buffer, assembles message content and
//! hands each channel its events in frame order; the writer sends whatever the channels have
//! queued in the shared output buffer, one `write` per batch (publishers queue a batch of
//! publications with one lock, see `publisher`), and heartbeats when idle. Either side's end
//! ends the connection: every channel then sees it closed and [`Connection::closed`] says why.
//!
//! What is queued for writing is bounded by its producers: publishers by their rule's
//! `max_in_flight`, acknowledgements by the prefetch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::url::AmqpUrl;
use super::wire::method::{self, Method};
use super::wire::props::BasicProperties;
use super::wire::table::{FieldTable, FieldValue};
use super::wire::{self, Cursor, Frame, WireError};
use super::AmqpError;

/// What [`open`] needs, read once at start.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) url: AmqpUrl,
    /// The connection name RabbitMQ shows.
    pub(crate) name: String,
    /// `amqps`: the client configuration.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// The most channels the bridge asks for.
const CHANNEL_MAX: u16 = 2047;
/// The largest frame the bridge asks for (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;
/// The largest message body accepted from RabbitMQ (MQTT's largest packet).
const MAX_BODY: u64 = 268_435_455;
/// How long a closing connection waits for RabbitMQ's `close-ok`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a channel hears from the reader, in frame order.
#[derive(Debug)]
pub(super) enum Event {
    /// A method without content (replies, confirms, flow, a consumer cancelled).
    Method(Method),
    /// A publication RabbitMQ returned.
    Return {
        code: u16,
        text: Bytes,
        routing_key: Bytes,
        props: Option<BasicProperties>,
    },
    /// A delivery to a consumer; properties that cannot be decoded are an error, not the end
    /// of the connection.
    Deliver {
        tag: u64,
        routing_key: Bytes,
        props: Result<BasicProperties, WireError>,
        body: Bytes,
    },
    /// The channel (or its connection) ended, and why.
    Closed(String),
}

/// What the output buffer holds and who may still write to it.
pub(super) struct Out {
    pub(super) buf: BytesMut,
    /// Per channel id, the serial of the channel that owns it now (0: none): a settlement or a
    /// close from an earlier channel that had the same id is not written.
    pub(super) live: Vec<u32>,
    /// Per channel id: we sent `channel.close` and await RabbitMQ's `close-ok` (only then is
    /// the id free again, even when RabbitMQ's own `channel.close` crossed ours).
    closing: Vec<bool>,
    /// The connection is gone: nothing more is written.
    dead: bool,
    /// The writer task holds bytes taken from `buf` that are not all written yet: nobody
    /// else may write to the socket.
    writing: bool,
    /// Plain TCP: the socket, for a publisher to write its batch at once when the writer is
    /// idle (one task hand-off less per batch). Dropped when the connection ends.
    direct: Option<Arc<OwnedWriteHalf>>,
}

/// Channel ids free to use.
struct Ids {
    next: u16,
    free: Vec<u16>,
    serial: u32,
}

/// What the tasks and the channels share.
pub(super) struct Shared {
    out: Mutex<Out>,
    wake: Notify,
    pub(super) frame_max: usize,
    channel_max: u16,
    ids: Mutex<Ids>,
    reg: mpsc::UnboundedSender<(u16, mpsc::UnboundedSender<Event>)>,
    closed: watch::Sender<Option<String>>,
    stop: CancellationToken,
    /// `connection.close` was sent.
    closing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs `f` on the output buffer and wakes the writer; `Err` when the connection is gone.
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut Out) -> R) -> Result<R, AmqpError> {
        let mut o = lock(&self.out);
        if o.dead {
            return Err(AmqpError::Gone(self.why()));
        }
        let r = f(&mut o);
        drop(o);
        self.wake.notify_one();
        Ok(r)
    }

    /// Queues a publisher's batch (leaving `batch` empty) on channel `id` while `serial` owns
    /// it, and writes it at once when the writer is idle and the socket takes it.
    pub(super) fn send_batch(
        &self,
        id: u16,
        serial: u32,
        batch: &mut BytesMut,
    ) -> Result<(), AmqpError> {
        let mut o = lock(&self.out);
        if o.dead {
            batch.clear();
            return Err(AmqpError::Gone(self.why()));
        }
        if o.live[usize::from(id)] != serial {
            batch.clear();
            return Err(AmqpError::Gone("channel closed".into()));
        }
        if o.buf.is_empty() {
            std::mem::swap(&mut o.buf, batch);
        } else {
            o.buf.extend_from_slice(batch);
            batch.clear();
        }
        if !o.writing {
            let Out { buf, direct, .. } = &mut *o;
            if let Some(Ok(n)) = direct.as_ref().map(|t| t.try_write(buf)) {
                buf.advance(n);
            }
        }
        let more = !o.buf.is_empty();
        drop(o);
        if more {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Sends `channel.close` on `id` while `serial` owns it; the reader frees the id on
    /// RabbitMQ's `close-ok`.
    pub(super) fn close_channel(&self, id: u16, serial: u32) -> Result<(), AmqpError> {
        self.write(|o| {
            let i = usize::from(id);
            if o.live[i] != serial || o.closing[i] {
                return Err(AmqpError::Gone("channel closed".into()));
            }
            o.closing[i] = true;
            method::close_frame(&mut o.buf, id, 200, "bye");
            Ok(())
        })
        .and_then(|r| r)
    }

    fn why(&self) -> String {
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    /// A channel id and serial, registered with the reader for `tx`.
    pub(super) fn new_channel(
        &self,
        tx: mpsc::UnboundedSender<Event>,
    ) -> Result<(u16, u32), AmqpError> {
        let (id, serial) = {
            let mut ids = lock(&self.ids);
            let id = match ids.free.pop() {
                Some(id) => id,
                None if ids.next <= self.channel_max => {
                    ids.next += 1;
                    ids.next - 1
                }
                None => return Err(AmqpError::Gone("no channel id left".into())),
            };
            ids.serial = ids.serial.wrapping_add(1).max(1);
            (id, ids.serial)
        };
        if self.reg.send((id, tx)).is_err() {
            return Err(AmqpError::Gone(self.why()));
        }
        Ok((id, serial))
    }

    fn free_channel(&self, id: u16) {
        lock(&self.ids).free.push(id);
    }

    /// Queues `connection.close`; the reader ends on RabbitMQ's `close-ok` (or the grace).
    fn begin_close(self: &Arc<Shared>) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.write(|o| method::close_frame(&mut o.buf, 0, 200, "bye"));
        let shared = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(CLOSE_GRACE).await;
                    shared.stop.cancel();
                });
            }
            Err(_) => self.stop.cancel(),
        }
    }

    /// Ends the connection (first reason wins).
    fn end(&self, why: String) {
        {
            let mut o = lock(&self.out);
            o.dead = true;
            o.direct = None;
        }
        self.closed.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(why);
                true
            } else {
                false
            }
        });
        self.stop.cancel();
    }
}

/// A live connection; clones share it. When the last clone is dropped it is closed.
#[derive(Clone)]
pub(crate) struct Connection {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

impl Connection {
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Whether the connection is still up.
    pub(crate) fn is_open(&self) -> bool {
        self.handle.shared.closed.borrow().is_none()
    }

    /// Waits until the connection ends; why.
    pub(crate) async fn closed(&self) -> String {
        let mut w = self.handle.shared.closed.subscribe();
        let why = match w.wait_for(|c| c.is_some()).await {
            Ok(c) => c.clone().unwrap_or_default(),
            Err(_) => "connection gone".into(),
        };
        why
    }

    /// Closes the connection and waits for RabbitMQ's answer (bounded by the caller; the
    /// sockets are let go after a grace period in any case).
    pub(crate) async fn close(self) {
        let shared = self.handle.shared.clone();
        drop(self);
        let mut w = shared.closed.subscribe();
        shared.begin_close();
        let _ = w.wait_for(|c| c.is_some()).await;
    }
}

/// Opens a connection (no timeout here: the caller bounds the attempt).
pub(crate) async fn open(o: &ConnectOptions) -> Result<Connection, AmqpError> {
    let u = &o.url;
    let tcp = TcpStream::connect((u.host.as_str(), u.port)).await?;
    tcp.set_nodelay(true)?;
    match (&o.tls, u.tls) {
        (None, false) => {
            let mut tcp = tcp;
            let t = handshake(&mut tcp, o).await?;
            let (r, w) = tcp.into_split();
            Ok(start(r, Sink::Tcp(Arc::new(w)), t))
        }
        (Some(config), true) => {
            let name = rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| AmqpError::Url(format!("host {}: {e}", u.host)))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let mut tls = connector.connect(name, tcp).await?;
            let t = handshake(&mut tls, o).await?;
            let (r, w) = tokio::io::split(tls);
            Ok(start(r, Sink::Tls(w), t))
        }
        _ => Err(AmqpError::Url(
            "TLS settings and URL scheme disagree".into(),
        )),
    }
}

/// What the handshake settled.
struct Tuned {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
    /// Bytes read past the handshake.
    rest: BytesMut,
}

fn client_properties(name: &str) -> FieldTable {
    let mut caps = FieldTable::new();
    for c in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        caps.insert(c, FieldValue::Bool(true));
    }
    let mut p = FieldTable::new();
    p.insert("product", FieldValue::from("Warren bridge"));
    p.insert("version", FieldValue::from(env!("CARGO_PKG_VERSION")));
    p.insert("platform", FieldValue::from("Rust"));
    p.insert("capabilities", FieldValue::Table(caps));
    p.insert("connection_name", FieldValue::from(name));
    p
}

/// The next method on channel 0 during the handshake (heartbeats skipped).
async fn handshake_method<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Method, AmqpError> {
    loop {
        if let Some(f) = wire::take_frame(buf, FRAME_MAX as usize)? {
            match (f.kind, f.channel) {
                (wire::FRAME_HEARTBEAT, _) => continue,
                (wire::FRAME_METHOD, 0) => {
                    return match Method::decode(f.payload)? {
                        Method::ConnectionClose(c) => Err(AmqpError::Refused(c.to_string())),
                        m => Ok(m),
                    }
                }
                _ => return Err(WireError::Bad("unexpected frame in the handshake").into()),
            }
        }
        if s.read_buf(buf).await? == 0 {
            return Err(AmqpError::Gone(
                "RabbitMQ closed the socket during the handshake (wrong port, TLS, or refused)"
                    .into(),
            ));
        }
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    o: &ConnectOptions,
) -> Result<Tuned, AmqpError> {
    let u = &o.url;
    s.write_all(wire::PROTOCOL_HEADER).await?;
    let mut buf = BytesMut::with_capacity(8192);
    let Method::ConnectionStart { mechanisms } = handshake_method(s, &mut buf).await? else {
        return Err(WireError::Bad("expected connection.start").into());
    };
    let mechanism = if u.external { "EXTERNAL" } else { "PLAIN" };
    if !mechanisms
        .split(|b| *b == b' ')
        .any(|m| m == mechanism.as_bytes())
    {
        return Err(AmqpError::Refused(format!(
            "RabbitMQ does not offer {mechanism} authentication ({})",
            String::from_utf8_lossy(&mechanisms)
        )));
    }
    let mut response = Vec::with_capacity(u.user.len() + u.password.len() + 2);
    if !u.external {
        response.push(0);
        response.extend_from_slice(u.user.as_bytes());
        response.push(0);
        response.extend_from_slice(u.password.as_bytes());
    }
    let mut out = BytesMut::new();
    method::start_ok(&mut out, &client_properties(&o.name), mechanism, &response)?;
    s.write_all(&out).await?;
    out.clear();
    let (channel_max, frame_max, heartbeat) = match handshake_method(s, &mut buf).await? {
        Method::ConnectionTune {
            channel_max,
            frame_max,
            heartbeat,
        } => (channel_max, frame_max, heartbeat),
        Method::ConnectionSecure => {
            return Err(AmqpError::Refused(
                "RabbitMQ asked for a SASL challenge".into(),
            ))
        }
        _ => return Err(WireError::Bad("expected connection.tune").into()),
    };
    let channel_max = match channel_max {
        0 => CHANNEL_MAX,
        n => n.min(CHANNEL_MAX),
    };
    let frame_max = match frame_max {
        0 => FRAME_MAX,
        n if n < wire::FRAME_MIN => {
            return Err(AmqpError::Refused(format!(
                "RabbitMQ proposes frames of {n} bytes, under AMQP's minimum of 4096"
            )))
        }
        n => n.min(FRAME_MAX),
    };
    let heartbeat = u.heartbeat.unwrap_or(heartbeat);
    method::tune_ok(&mut out, channel_max, frame_max, heartbeat);
    method::connection_open(&mut out, &u.vhost)?;
    s.write_all(&out).await?;
    s.flush().await?;
    match handshake_method(s, &mut buf).await? {
        Method::ConnectionOpenOk => {}
        _ => return Err(WireError::Bad("expected connection.open-ok").into()),
    }
    Ok(Tuned {
        channel_max,
        frame_max,
        heartbeat,
        rest: buf,
    })
}

fn start<R>(r: R, w: Sink, t: Tuned) -> Connection
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let direct = match &w {
        Sink::Tcp(t) => Some(t.clone()),
        Sink::Tls(_) => None,
    };
    let (reg, regs) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        out: Mutex::new(Out {
            buf: BytesMut::with_capacity(16 * 1024),
            live: vec![0; usize::from(t.channel_max) + 1],
            closing: vec![false; usize::from(t.channel_max) + 1],
            dead: false,
            writing: false,
            direct,
        }),
        wake: Notify::new(),
        frame_max: t.frame_max as usize,
        channel_max: t.channel_max,
        ids: Mutex::new(Ids {
            next: 1,
            free: Vec::new(),
            serial: 0,
        }),
        reg,
        closed: watch::channel(None).0,
        stop: CancellationToken::new(),
        closing: AtomicBool::new(false),
    });
    let heartbeat = (t.heartbeat > 0).then(|| Duration::from_secs(u64::from(t.heartbeat)));
    let reader = Reader {
        shared: shared.clone(),
        slots: (0..=t.channel_max).map(|_| None).collect(),
        regs,
    };
    tokio::spawn(reader.run(r, t.rest, heartbeat));
    tokio::spawn(write_loop(w, shared.clone(), heartbeat));
    Connection {
        handle: Arc::new(Handle { shared }),
    }
}

/// The socket's writing side.
enum Sink {
    /// Shared with publishers' direct writes (`Out::direct`).
    Tcp(Arc<OwnedWriteHalf>),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Sink {
    async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Tcp(t) => {
                let mut at = 0;
                while at < buf.len() {
                    t.writable().await?;
                    match t.try_write(&buf[at..]) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Sink::Tls(w) => {
                w.write_all(buf).await?;
                w.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Sink::Tls(w) = self {
            let _ = w.shutdown().await;
        }
    }
}

/// Sends what the channels queued; a heartbeat when nothing was sent for half the interval.
async fn write_loop(mut w: Sink, shared: Arc<Shared>, hb: Option<Duration>) {
    let mut spare = BytesMut::with_capacity(16 * 1024);
    let mut tick = hb.map(|h| tokio::time::interval(h / 2));
    let mut wrote = true;
    let result: std::io::Result<()> = async {
        loop {
            let heartbeat = async {
                match &mut tick {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            let mut stopping = false;
            let mut beat = false;
            tokio::select! {
                _ = shared.stop.cancelled() => stopping = true,
                _ = shared.wake.notified() => {}
                _ = heartbeat => {
                    if !wrote {
                        wire::put_heartbeat(&mut lock(&shared.out).buf);
                    }
                    wrote = false;
                    beat = true;
                }
            }
            loop {
                {
                    let mut o = lock(&shared.out);
                    if o.buf.is_empty() {
                        o.writing = false;
                        break;
                    }
                    std::mem::swap(&mut o.buf, &mut spare);
                    o.writing = true;
                }
                if stopping {
                    // Last words (a close-ok), bounded.
                    let _ = tokio::time::timeout(CLOSE_GRACE, w.send(&spare)).await;
                } else {
                    // A peer that stopped reading must not hold the writer past the end; what
                    // can be written at once (a close frame just queued) still is.
                    tokio::select! {
                        biased;
                        r = w.send(&spare) => r?,
                        _ = shared.stop.cancelled() => stopping = true,
                    }
                }
                spare.clear();
                wrote = !beat;
            }
            if stopping {
                let _ = tokio::time::timeout(CLOSE_GRACE, w.shutdown()).await;
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.end(format!("write to RabbitMQ failed: {e}"));
    }
}

/// Content being assembled on a channel.
struct Content {
    method: Method,
    props: Option<Result<BasicProperties, WireError>>,
    size: u64,
    body: BytesMut,
    /// The body when it came in one frame (no copy).
    whole: Option<Bytes>,
}

struct Slot {
    tx: mpsc::UnboundedSender<Event>,
    content: Option<Content>,
}

struct Reader {
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    regs: mpsc::UnboundedReceiver<(u16, mpsc::UnboundedSender<Event>)>,
}

/// Why the reader stops.
enum Stop {
    /// RabbitMQ or the network ended it.
    Ended(String),
    /// RabbitMQ broke the protocol: closed with this code.
    Protocol(u16, String),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Stop {
        let code = match e {
            WireError::FrameTooLarge { .. } | WireError::FrameEnd(_) => 501,
            WireError::Method { .. } => 540,
            _ => 502,
        };
        Stop::Protocol(code, e.to_string())
    }
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut r: R,
        mut buf: BytesMut,
        hb: Option<Duration>,
    ) {
        let mut tick = hb.map(|h| {
            let mut t = tokio::time::interval(h);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut heard = true;
        let mut missed = 0;
        let max = self.shared.frame_max;
        let stop = loop {
            match self.frames(&mut buf, max) {
                Ok(()) => {}
                Err(s) => break s,
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            let beat = async {
                match &mut tick {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.stop.cancelled() => break Stop::Ended("connection closed".into()),
                n = r.read_buf(&mut buf) => match n {
                    Ok(0) => break Stop::Ended("RabbitMQ closed the socket".into()),
                    Ok(_) => heard = true,
                    Err(e) => break Stop::Ended(format!("read from RabbitMQ failed: {e}")),
                },
                _ = beat => {
                    missed = if heard { 0 } else { missed + 1 };
                    heard = false;
                    if missed >= 2 {
                        break Stop::Ended("RabbitMQ missed two heartbeats".into());
                    }
                }
            }
        };
        let why = match stop {
            Stop::Ended(why) => why,
            Stop::Protocol(code, why) => {
                let _ = self
                    .shared
                    .write(|o| method::close_frame(&mut o.buf, 0, code, &why));
                format!("protocol error from RabbitMQ: {why}")
            }
        };
        for slot in self.slots.iter_mut().filter_map(Option::take) {
            let _ = slot.tx.send(Event::Closed(why.clone()));
        }
        self.shared.end(why);
    }

    /// Handles every whole frame in `buf`. Channels registered so far are installed first
    /// (once per read, not per frame): a channel registers before its `channel.open` is
    /// written, so RabbitMQ's answer comes in a later read.
    fn frames(&mut self, buf: &mut BytesMut, max: usize) -> Result<(), Stop> {
        while let Ok((id, tx)) = self.regs.try_recv() {
            if let Some(s) = self.slots.get_mut(usize::from(id)) {
                *s = Some(Slot { tx, content: None });
            }
        }
        while let Some(f) = wire::take_frame(buf, max)? {
            self.frame(f)?;
        }
        Ok(())
    }

    fn frame(&mut self, f: Frame) -> Result<(), Stop> {
        match (f.kind, f.channel) {
            (wire::FRAME_HEARTBEAT, 0) => Ok(()),
            (wire::FRAME_HEARTBEAT, _) => Err(Stop::Protocol(501, "heartbeat on a channel".into())),
            (wire::FRAME_METHOD, 0) => match Method::decode(f.payload)? {
                Method::ConnectionClose(c) => {
                    let _ = self.shared.write(|o| method::close_ok(&mut o.buf, 0));
                    Err(Stop::Ended(format!("RabbitMQ closed the connection: {c}")))
                }
                Method::ConnectionCloseOk => Err(Stop::Ended("connection closed".into())),
                Method::ConnectionBlocked { reason } => {
                    tracing::warn!(reason = %String::from_utf8_lossy(&reason), "bridge: RabbitMQ blocked the connection");
                    Ok(())
                }
                Method::ConnectionUnblocked => {
                    tracing::info!("bridge: RabbitMQ unblocked the connection");
                    Ok(())
                }
                Method::ConnectionUpdateSecretOk => Ok(()),
                m => Err(Stop::Protocol(
                    505,
                    format!("unexpected method on channel 0: {m:?}"),
                )),
            },
            (_, 0) => Err(Stop::Protocol(504, "content frame on channel 0".into())),
            (kind, ch) => {
                let id = usize::from(ch);
                if id >= self.slots.len() {
                    return Err(Stop::Protocol(504, format!("frame on channel {ch}")));
                }
                match kind {
                    wire::FRAME_METHOD => self.method(ch, Method::decode(f.payload)?),
                    wire::FRAME_HEADER => self.header(ch, f.payload),
                    wire::FRAME_BODY => self.body(ch, f.payload),
                    k => Err(Stop::Protocol(501, format!("frame type {k}"))),
                }
            }
        }
    }

    fn method(&mut self, ch: u16, m: Method) -> Result<(), Stop> {
        let id = usize::from(ch);
        if self.slots[id].as_ref().is_some_and(|s| s.content.is_some()) {
            return Err(Stop::Protocol(505, "method frame inside content".into()));
        }
        match m {
            Method::ChannelClose(c) => {
                // Free the id now unless our own close crossed this one: then RabbitMQ still
                // answers ours, and the id is free at that close-ok.
                let free = self.shared.write(|o| {
                    method::close_ok(&mut o.buf, ch);
                    let open = o.live[id] != 0;
                    o.live[id] = 0;
                    open && !o.closing[id]
                });
                self.release(
                    ch,
                    format!("RabbitMQ closed the channel: {c}"),
                    matches!(free, Ok(true)),
                );
            }
            Method::ChannelCloseOk => {
                // Only the answer to a close we sent frees an id (a stray one is ignored).
                let ours = self.shared.write(|o| {
                    let ours = o.closing[id];
                    if ours {
                        o.closing[id] = false;
                        o.live[id] = 0;
                    }
                    ours
                });
                if matches!(ours, Ok(true)) {
                    self.release(ch, "channel closed".into(), true);
                }
            }
            Method::ChannelFlow { active } => {
                let _ = self
                    .shared
                    .write(|o| method::channel_flow_ok(&mut o.buf, ch, active));
            }
            m if m.has_content() => {
                if let Some(slot) = &mut self.slots[id] {
                    slot.content = Some(Content {
                        method: m,
                        props: None,
                        size: 0,
                        body: BytesMut::new(),
                        whole: None,
                    });
                }
            }
            m => {
                if let Some(slot) = &self.slots[id] {
                    let _ = slot.tx.send(Event::Method(m));
                }
            }
        }
        Ok(())
    }

    /// The channel ended: its owner hears why; with `free`, its id may be used again.
    fn release(&mut self, ch: u16, why: String, free: bool) {
        if let Some(slot) = self.slots[usize::from(ch)].take() {
            let _ = slot.tx.send(Event::Closed(why));
        }
        if free {
            self.shared.free_channel(ch);
        }
    }

    fn header(&mut self, ch: u16, payload: Bytes) -> Result<(), Stop> {
        let Some(slot) = &mut self.slots[usize::from(ch)] else {
            return Ok(());
        };
        let Some(c) = slot.content.as_mut().filter(|c| c.props.is_none()) else {
            return Err(Stop::Protocol(
                505,
                "content header without its method".into(),
            ));
        };
        // The body size comes first; a header whose properties cannot be read still has one.
        let mut head = Cursor::new(payload.clone());
        let _class = head.u16()?;
        let _weight = head.u16()?;
        let size = head.u64()?;
        if size > MAX_BODY {
            return Err(Stop::Protocol(501, format!("message body of {size} bytes")));
        }
        c.size = size;
        c.props = Some(BasicProperties::decode(Cursor::new(payload)).map(|(_, p)| p));
        if size == 0 {
            self.complete(ch);
        }
        Ok(())
    }

    fn body(&mut self, ch: u16, payload: Bytes) -> Result<(), Stop> {
        let Some(slot) = &mut self.slots[usize::from(ch)] else {
            return Ok(());
        };
        let Some(c) = slot.content.as_mut().filter(|c| c.props.is_some()) else {
            return Err(Stop::Protocol(505, "body frame without its header".into()));
        };
        let have = (c.body.len() + c.whole.as_ref().map_or(0, Bytes::len)) as u64;
        let now = have + payload.len() as u64;
        if now > c.size {
            return Err(Stop::Protocol(
                505,
                "body longer than its header said".into(),
            ));
        }
        if have == 0 && payload.len() as u64 == c.size {
            c.whole = Some(payload);
        } else {
            if let Some(w) = c.whole.take() {
                c.body.extend_from_slice(&w);
            }
            c.body.extend_from_slice(&payload);
        }
        if now == c.size {
            self.complete(ch);
        }
        Ok(())
    }

    fn complete(&mut self, ch: u16) {
        let Some(slot) = &mut self.slots[usize::from(ch)] else {
            return;
        };
        let Some(c) = slot.content.take() else {
            return;
        };
        let body = c.whole.unwrap_or_else(|| c.body.freeze());
        let props = c.props.unwrap_or(Err(WireError::Bad("no content header")));
        let event = match c.method {
            Method::BasicDeliver {
                delivery_tag,
                routing_key,
                ..
            } => Event::Deliver {
                tag: delivery_tag,
                routing_key,
                props,
                body,
            },
            Method::BasicReturn {
                code,
                text,
                routing_key,
                ..
            } => Event::Return {
                code,
                text,
                routing_key,
                props: props.ok(),
            },
            _ => return,
        };
        let _ = slot.tx.send(event);
    }
}
