//! One client connection, from the first byte to the last: the per-connection task.
//!
//! This is the only place where sockets, the codec, the session state and the broker meet, and
//! the only task that waits on several things at once: the socket's input, the socket's output,
//! its session's mailbox, and (only while one is due) a deadline. Every wait sits in one poll
//! ([`Connection::poll_event`]), so a peer that stops reading never hides a control signal: keep
//! alive, takeover and shutdown arrive through the mailbox and are seen while a write is
//! blocked, and input (acks, pings, DISCONNECT, EOF) is read while output waits.
//!
//! The life of a connection: [`serve`] reads CONNECT within the connect timeout (`connect.rs`),
//! claims the client id (taking a session over from another connection or the store), answers
//! CONNACK, resends what was in flight, then runs the packet loop ([`Connection::run`]; packet
//! handling in `handler.rs`, deliveries in `deliver.rs`) until an [`Exit`]; finally it says
//! goodbye (5.0 DISCONNECT with a reason), publishes the will where the spec asks for it, and
//! hands the session back to the registry, which keeps it, ends it, or passes it on.
//!
//! Flow control, in both directions, without a pause that could deadlock:
//! - incoming QoS 1/2 PUBLISH packets are answered through the acknowledgement gate
//!   ([`crate::gate`]), in arrival order, once every owner holds the message; at most the
//!   server's Receive Maximum of them are unanswered (a 5.0 client sending more is disconnected
//!   with 0x93; a 3.1.1 client, which cannot be told the limit, has its next PUBLISH held
//!   until one is answered, while its acks and pings are still read: `pause.rs`, which also
//!   holds PUBLISH input back for the publish rate limits);
//! - outgoing QoS 1/2 messages are bounded by the inflight window, and the write buffer by a
//!   high-water mark; what does not fit waits in the mailbox (bounded, see
//!   [`crate::session::mailbox`]).

mod authorize;
mod connect;
mod deliver;
mod handler;
mod hold;
mod pause;
mod reauth;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::AsyncWriteExt;
use tokio::time::Sleep;

use crate::broker::core::{Clock, Core};
use crate::broker::registry::Release;
use crate::gate::AckQueue;
use crate::metrics::stats::Stats;
use crate::protocol::{
    self, reason, DecodeError, DecodeLimits, Disconnect, DisconnectProperties, InboundAliases,
    OutboundAliases, Packet, ProtocolVersion, Will,
};
use crate::session::mailbox::{Control, TakeOver};
use crate::session::SessionState;
use crate::transport::{Accepted, Stream};

/// Bytes reserved for a read when the buffer has little room left.
const READ_CHUNK: usize = 4096;
/// Deliveries taken from the mailbox at a time.
const DRAIN_BATCH: usize = 64;
/// Stop taking deliveries once this much output is waiting to be written.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Time allowed for the last write and close of a connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a takeover waits for the old connection to hand its session over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the packet loop ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// The client sent DISCONNECT; `will` is true for 5.0 reason 0x04.
    Disconnect { will: bool },
    /// The socket closed or failed without DISCONNECT.
    Closed,
    /// The transport below MQTT refused the client's input (a bad WebSocket frame) and has
    /// answered it itself; counted as malformed.
    BadStream(String),
    /// No whole packet arrived within 1.5 × keep alive.
    KeepAlive,
    /// A started packet was not completed within `packet_timeout_secs`.
    PacketTimeout,
    /// Nothing could be written for `write_timeout_secs`: the peer does not read.
    WriteTimeout,
    /// An owner of a message did not answer within `ack_timeout_ms`.
    AckTimeout,
    /// An owner refused a 3.1.1 client's message, which has no negative acknowledgement: the
    /// connection is closed without answering, so that the client sends it again.
    Refused,
    /// Publishers waited too long for room in this subscriber's queue.
    SlowSubscriber,
    /// The operator disconnected the client (admin API), with this 5.0 reason code.
    Kicked(u8),
    /// The client broke the protocol; `reason` is the 5.0 reason code.
    Violation {
        reason: u8,
        malformed: bool,
        detail: String,
    },
    /// An ACL refused a PUBLISH (with `disconnect_on_denied_publish`), or the client's
    /// credentials were revoked by a reload (with `disconnect_on_revoke`).
    NotAuthorized(&'static str),
    /// Another connection claimed the client id.
    TakenOver(TakeOver),
    /// The broker is shutting down.
    Shutdown,
}

impl Exit {
    fn violation(reason: u8, detail: impl Into<String>) -> Exit {
        Exit::Violation {
            reason,
            malformed: false,
            detail: detail.into(),
        }
    }

    fn from_decode(error: DecodeError) -> Exit {
        Exit::Violation {
            reason: error.reason_code(),
            malformed: !matches!(error, DecodeError::Protocol { .. }),
            detail: error.to_string(),
        }
    }

    /// The reason code of the DISCONNECT a 5.0 client gets, if any.
    fn disconnect_reason(&self) -> Option<u8> {
        match self {
            Exit::Disconnect { .. }
            | Exit::Closed
            | Exit::BadStream(_)
            | Exit::WriteTimeout
            | Exit::Refused => None,
            Exit::KeepAlive | Exit::PacketTimeout => Some(reason::KEEP_ALIVE_TIMEOUT),
            Exit::AckTimeout => Some(reason::UNSPECIFIED_ERROR),
            Exit::SlowSubscriber => Some(reason::QUOTA_EXCEEDED),
            Exit::Kicked(reason) => Some(*reason),
            Exit::NotAuthorized(_) => Some(reason::NOT_AUTHORIZED),
            Exit::Violation { reason, .. } => Some(*reason),
            Exit::TakenOver(_) => Some(reason::SESSION_TAKEN_OVER),
            Exit::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
        }
    }

    /// What to say in the DISCONNECT's Reason String, when there is more than the code.
    fn text(&self) -> Option<&str> {
        match self {
            Exit::Violation { detail, .. } => Some(detail),
            Exit::NotAuthorized(why) => Some(why),
            _ => None,
        }
    }

    /// True when the will message must be published.
    fn publishes_will(&self) -> bool {
        !matches!(self, Exit::Disconnect { will: false })
    }
}

/// Serves one accepted connection until it ends.
///
/// This future is what every idle connection costs, so it is kept small: the CONNECT phase and
/// the goodbye run once and hold large futures, so they are boxed; the packet loop's state is
/// the [`Connection`] (boxed too) and one wait.
pub fn serve(accepted: Accepted, core: Arc<Core>) -> impl Future<Output = ()> + Send {
    Stats::bump(&core.stats().sockets_accepted);
    core.stats().sockets_open.fetch_add(1, Ordering::Relaxed);
    let conn_id = core.next_conn_id();
    // No tracing span around the task: it would cost every idle connection its size (and an
    // enabled one, a few hundred bytes more); log lines name the client and peer instead.
    tracing::debug!(conn_id, peer = %accepted.peer, listener = %accepted.listener, "accepted");
    // Built here, not inside the async block, so that the accepted socket is not also kept
    // as a captured argument for the connection's whole life.
    let accept = Box::pin(connect::accept(accepted, conn_id, core.clone()));
    async move {
        if let Some(mut conn) = accept.await {
            let exit = conn.run().await;
            Box::pin(conn.finish(exit)).await;
        }
        core.stats().sockets_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What woke the packet loop.
enum Event {
    /// `n` bytes of input were read.
    Read(usize),
    /// The socket reached its end or failed.
    Closed,
    /// The transport below MQTT refused its input (a bad WebSocket frame, a bad TLS record); it
    /// client already.
    BadStream(String),
    /// The mailbox was notified: deliveries, a signal, or an answer of the gate.
    Notified,
    /// A deadline passed.
    Timer,
    /// Output was written (or began to stall), or more deliveries fit: go round again.
    Progress,
}

/// A connected client after CONNACK: its session and what the packet loop needs.
pub(crate) struct Connection {
    core: Arc<Core>,
    conn_id: u64,
    version: ProtocolVersion,
    session: SessionState,
    will: Option<Box<Will>>,
    /// Session expiry interval in seconds (0: ends with the connection; u32::MAX: never).
    session_expiry: u32,
    /// What the operator sees of this connection (byte counts kept up to date here); also
    /// where the connection finds its keep alive, listener (metrics) and peer address (logs),
    /// which every idle connection would otherwise hold twice.
    info: Arc<crate::broker::clients::ClientInfo>,
    /// The client's Maximum Packet Size.
    client_max_packet: u32,
    /// Outgoing QoS 1/2 window: min(server max inflight, client Receive Maximum).
    window: u16,
    /// The server's Receive Maximum: incoming QoS 1/2 PUBLISH packets unanswered at once.
    receive_maximum: u16,
    /// What the decoder refuses: the largest packet ...
    max_packet_size: u32,
    /// ... and the most User Properties in one packet (32 bits here, half a `DecodeLimits`).
    max_user_properties: u32,
    /// The client allows Reason Strings and User Properties beyond PUBLISH, CONNACK and
    /// DISCONNECT (5.0 Request Problem Information, default 1).
    problem_information: bool,
    /// The enhanced authentication of CONNECT (5.0), which the client may repeat with AUTH
    /// 0x19 (boxed: most connections have none, and idle ones pay for every byte here).
    enhanced: Option<Box<reauth::Enhanced>>,
    /// Topic aliases the client has set (5.0; made at the first alias).
    aliases_in: Option<Box<InboundAliases>>,
    /// Topic aliases the server has assigned (5.0; `None` when the client allows none).
    aliases_out: Option<Box<OutboundAliases>>,
    /// Incoming QoS 1/2 PUBLISH packets not answered yet, in arrival order.
    acks: AckQueue,
    /// PUBLISH input held back (3.1.1 Receive Maximum, publish rate limits), with the input
    /// that must stay behind it (see `pause.rs`).
    held: Option<Box<pause::Held>>,
    /// The client's publish rate limits, if any are configured.
    throttle: Option<Box<pause::Throttle>>,
    /// The mailbox or the retained backlog may hold deliveries we could take now.
    mailbox_pending: bool,
    /// Output not written yet.
    wbuf: BytesMut,
    /// Output held until the store has the state it announces (`hold.rs`).
    holds: Option<Box<hold::Holds>>,
    /// TLS records may be buffered in the TLS layer.
    unflushed: bool,
    /// Since when output has been waiting without any progress.
    write_stalled_since: Since,
    /// Since when a started packet has been waiting in `rbuf` to be completed.
    partial_since: Since,
    /// The next deadline, while one is due (none while idle: idle connections hold no timer).
    timer: Option<Pin<Box<Sleep>>>,
    /// What the client may touch; `None` when nothing can be refused to it.
    access: Option<Box<crate::auth::Access>>,
    /// The client's byte pipe.
    stream: Stream,
    /// Input not yet decoded (empty, and unallocated, while idle).
    rbuf: BytesMut,
    /// The connection's place under its listener's limit.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    /// The packet loop.
    async fn run(&mut self) -> Exit {
        let mailbox = self.session.mailbox.clone();
        let keep_alive = self.info.keep_alive;
        // 1.5 × keep alive (MQTT-3.1.2-24), none when it is 0.
        let keep_alive =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        mailbox.set_keep_alive(keep_alive, self.core.clock().now_ms());
        // A signal left from the session's previous connection is stale, but a takeover
        // request may already be for this one.
        if let Some(Control::TakeOver(reply)) = mailbox.take_control() {
            return Exit::TakenOver(reply);
        }
        if self.core.shutdown_token().is_cancelled() {
            // Shutdown began while this connection was claiming its client id.
            return Exit::Shutdown;
        }
        self.mailbox_pending = true;
        // Packets that came in the same read as CONNECT are handled now, not after the next.
        if let Some(exit) = self.process_input(Instant::now()) {
            return exit;
        }
        loop {
            if let Some(exit) = self.answer_acks() {
                return exit;
            }
            if self.mailbox_pending && self.wbuf.len() < WRITE_HIGH_WATER {
                self.drain_mailbox();
            }
            mailbox.set_inflight(self.session.outgoing.len());
            self.core.journal_flow(&mut self.session);
            self.seal_holds();
            self.arm_timer();
            let want = read_size(&self.rbuf, self.max_packet_size);
            let mut notified = std::pin::pin!(mailbox.notified());
            let event =
                std::future::poll_fn(|cx| self.poll_event(cx, notified.as_mut(), want)).await;
            match event {
                Event::Read(n) => {
                    self.core.stats().shard().bytes_in(n);
                    self.info.read(n);
                    if let Some(exit) = self.process_input(Instant::now()) {
                        return exit;
                    }
                    // A read that filled its buffer means more input is waiting: after one
                    // read's worth of work, the other tasks' turn, so that a publisher that
                    // always has input cannot starve its subscribers, the accept loop or other
                    // clients. A short read needs no yield: the next wait gives way anyway.
                    if n >= want {
                        tokio::task::yield_now().await;
                    }
                }
                Event::Closed => return Exit::Closed,
                Event::BadStream(detail) => return Exit::BadStream(detail),
                Event::Notified => match mailbox.take_control() {
                    Some(Control::TakeOver(reply)) => return Exit::TakenOver(reply),
                    Some(Control::Shutdown) => return Exit::Shutdown,
                    Some(Control::KeepAliveExpired) => return Exit::KeepAlive,
                    Some(Control::CredentialsExpired) => {
                        return Exit::NotAuthorized("credentials expired")
                    }
                    Some(Control::SlowSubscriber) => return Exit::SlowSubscriber,
                    Some(Control::Kick(reason)) => return Exit::Kicked(reason),
                    Some(Control::Reauthorize) => {
                        if let Some(exit) = self.reauthorize() {
                            return exit;
                        }
                        self.mailbox_pending = true;
                    }
                    None => self.mailbox_pending = true,
                },
                Event::Timer => {
                    if let Some(exit) = self.deadline_passed(Instant::now()) {
                        return exit;
                    }
                }
                Event::Progress => {}
            }
        }
    }

    /// Waits for the next event: output is written meanwhile, input is read unless held back,
    /// and the mailbox and the deadline are watched all along.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        notified: Pin<&mut impl Future<Output = ()>>,
        want: usize,
    ) -> Poll<Event> {
        match self.poll_write(cx) {
            Poll::Ready(Err(_)) => return Poll::Ready(Event::Closed),
            Poll::Ready(Ok(true)) => return Poll::Ready(Event::Progress),
            Poll::Ready(Ok(false)) | Poll::Pending => {}
        }
        if notified.poll(cx).is_ready() {
            return Poll::Ready(Event::Notified);
        }
        if !self.input_paused() {
            match self.stream.poll_read_some(cx, &mut self.rbuf, want) {
                Poll::Ready(Ok(0)) if self.held.is_some() => {
                    // Held input is handled first; the end of input waits its turn.
                    self.hold_eof();
                    return Poll::Ready(Event::Progress);
                }
                Poll::Ready(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
                    return Poll::Ready(Event::BadStream(error.to_string()))
                }
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Event::Closed),
                Poll::Ready(Ok(n)) => return Poll::Ready(Event::Read(n)),
                Poll::Pending => {}
            }
        }
        if let Some(timer) = &mut self.timer {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
        }
        if self.mailbox_pending && self.wbuf.len() < WRITE_HIGH_WATER {
            return Poll::Ready(Event::Progress);
        }
        Poll::Pending
    }

    /// Writes what it can. `Ok(true)` when the loop should go round (room appeared under the
    /// high-water mark, or a stall began and its deadline must be armed).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let before = self.wbuf.len();
        let mut open = self.writable();
        while open > 0 {
            match self.stream.poll_write_some(cx, &mut self.wbuf, open) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    open -= n;
                    self.wrote(n);
                    self.core.stats().shard().bytes_out(n);
                    self.info.wrote(n);
                    self.write_stalled_since = Since::NONE;
                    self.unflushed = self.stream.buffers_output();
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if self.write_stalled_since.is_none() {
                        self.write_stalled_since = Since::at(self.core.clock(), Instant::now());
                        return Poll::Ready(Ok(true));
                    }
                    return Poll::Ready(Ok(
                        before >= WRITE_HIGH_WATER && self.wbuf.len() < WRITE_HIGH_WATER
                    ));
                }
            }
        }
        if self.unflushed {
            match self.stream.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > READ_CHUNK {
            // Do not keep a burst's buffer while idle.
            self.wbuf = BytesMut::new();
        }
        Poll::Ready(Ok(before > self.wbuf.len() && self.mailbox_pending))
    }

    /// The earliest deadline now due: a started packet, the oldest unanswered PUBLISH, a
    /// stalled write.
    fn next_deadline(&self) -> Option<Instant> {
        let mqtt = &self.core.config().mqtt;
        let clock = self.core.clock();
        let partial = self
            .partial_since
            .get(clock)
            .map(|t| t + Duration::from_secs(mqtt.packet_timeout_secs));
        let ack = self
            .acks
            .oldest()
            .map(|t| t + Duration::from_millis(mqtt.ack_timeout_ms));
        let write = self
            .write_stalled_since
            .get(clock)
            .map(|t| t + Duration::from_secs(mqtt.write_timeout_secs));
        [partial, ack, write, self.resume_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sets the timer to the next deadline, or drops it when none is due.
    fn arm_timer(&mut self) {
        match (self.next_deadline(), &mut self.timer) {
            (None, _) => self.timer = None,
            (Some(at), Some(timer)) => {
                if timer.deadline() != at.into() {
                    timer.as_mut().reset(at.into());
                }
            }
            (Some(at), None) => self.timer = Some(Box::pin(tokio::time::sleep_until(at.into()))),
        }
    }

    /// Which deadline passed, if one did.
    fn deadline_passed(&mut self, now: Instant) -> Option<Exit> {
        let mqtt = &self.core.config().mqtt;
        let clock = self.core.clock();
        if self
            .write_stalled_since
            .get(clock)
            .is_some_and(|t| now >= t + Duration::from_secs(mqtt.write_timeout_secs))
        {
            return Some(Exit::WriteTimeout);
        }
        if self
            .acks
            .oldest()
            .is_some_and(|t| now >= t + Duration::from_millis(mqtt.ack_timeout_ms))
        {
            return Some(Exit::AckTimeout);
        }
        if self
            .partial_since
            .get(clock)
            .is_some_and(|t| now >= t + Duration::from_secs(mqtt.packet_timeout_secs))
        {
            return Some(Exit::PacketTimeout);
        }
        if self.resume_at().is_some_and(|t| now >= t) {
            return self.release_held(now);
        }
        None
    }

    /// Handles every whole packet in the read buffer (packets behind a held PUBLISH are queued
    /// behind it, up to the bound of `pause.rs`). `Some` ends the connection. Keep alive counts whole packets only, so a client trickling the
    /// bytes of one packet does not keep its connection alive; a started packet has
    /// `packet_timeout_secs` to complete.
    fn process_input(&mut self, now: Instant) -> Option<Exit> {
        let mut whole = false;
        let limits = DecodeLimits {
            max_packet_size: self.max_packet_size,
            max_user_properties: usize::try_from(self.max_user_properties).unwrap_or(usize::MAX),
        };
        while !self.input_paused() {
            match protocol::decode(&mut self.rbuf, Some(self.version), &limits) {
                Ok(Some(packet)) => {
                    whole = true;
                    if let Some(exit) = self.dispatch(packet, now) {
                        return Some(exit);
                    }
                }
                Ok(None) => break,
                Err(error) => return Some(Exit::from_decode(error)),
            }
        }
        if whole {
            self.session.mailbox.touch(self.core.clock().ms_at(now));
        }
        if self.rbuf.is_empty() {
            // An idle connection keeps no read buffer.
            self.rbuf = BytesMut::new();
            self.partial_since = Since::NONE;
        } else if whole || self.partial_since.is_none() {
            self.partial_since = Since::at(self.core.clock(), now);
        }
        None
    }

    /// Ends the connection: DISCONNECT (5.0), close, will, and the session's hand-back.
    async fn finish(mut self, exit: Exit) {
        self.session.mailbox.set_keep_alive(None, 0);
        let stats = self.core.stats();
        stats.disconnected(&self.info.listener, self.version.label());
        self.log_exit(&exit);
        let writable = !matches!(exit, Exit::WriteTimeout | Exit::Closed | Exit::BadStream(_));
        if let (true, true, Some(code)) = (writable, self.version.is_v5(), exit.disconnect_reason())
        {
            // A Reason String is allowed on DISCONNECT whatever Request Problem Information
            // says; one the client's Maximum Packet Size cannot take is left out.
            let mut disconnect = Disconnect {
                reason: code,
                properties: DisconnectProperties {
                    reason_string: exit.text().map(|text| ByteString::from(short(text))),
                    ..DisconnectProperties::default()
                },
            };
            if protocol::encoded_len(&Packet::Disconnect(disconnect.clone()), self.version)
                .is_ok_and(|len| len as u64 > u64::from(self.client_max_packet))
            {
                disconnect.properties.reason_string = None;
            }
            self.send(Packet::Disconnect(disconnect));
        }
        let mut will = if exit.publishes_will() {
            self.will.take()
        } else {
            None
        };
        // The session leaves this connection first, so a new connection taking it over does
        // not wait for this one's socket to close.
        let placeholder = self.placeholder_session();
        let mut session = std::mem::replace(&mut self.session, placeholder);
        // 5.0 Will Delay Interval: a session that outlives the connection keeps the will until
        // the delay (or the session) ends; a reconnection before that cancels it.
        let will_delay = will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .filter(|&delay| delay > 0 && self.session_expiry > 0)
            .map(|delay| delay.min(self.session_expiry));
        if will_delay.is_some() {
            session.delayed_will = will.take();
        }
        let release = match exit {
            Exit::TakenOver(reply) => match reply.send(self.hand_over(session)) {
                Ok(()) => None,
                // The claimant gave up: the session stays ours to release.
                Err(returned) => returned,
            },
            _ => Some(session),
        };
        if writable {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                // Output still held for the store stays unsent: the session resends it.
                let open = self.writable();
                if open > 0 {
                    let _ = self.stream.write_all(&self.wbuf[..open]).await;
                }
                let _ = self.stream.flush().await;
                let _ = self.stream.shutdown().await;
            })
            .await;
        }
        if let Some(will) = will {
            self.core.publish_will(*will, self.session.mailbox.id());
        }
        if let Some(session) = release {
            self.release(session, will_delay).await;
        }
    }

    /// Hands the session back to the registry: stored, ended, or passed to the connection
    /// that claimed the client id meanwhile. Every path ends or keeps the session.
    async fn release(&self, mut session: SessionState, will_delay: Option<u32>) {
        let core = &self.core;
        core.set_online(&session.mailbox, false);
        core.journal_flow(&mut session);
        core.session_offline(&session, self.session_expiry, will_delay);
        let client_id = session.client_id.clone();
        match core
            .registry()
            .release(self.conn_id, session, self.session_expiry > 0)
        {
            Release::Stored(generation) => {
                core.schedule_offline(&client_id, generation, self.session_expiry, will_delay)
            }
            Release::Ended(session) => core.end_session(session),
            Release::TakenOver(session) => {
                // The new connection has asked, or is about to ask, for this session (it asks
                // as soon as it has claimed the id, under the id's claim lock).
                let mailbox = session.mailbox.clone();
                let wait = async {
                    loop {
                        if let Some(Control::TakeOver(reply)) = mailbox.take_control() {
                            return reply;
                        }
                        mailbox.notified().await;
                    }
                };
                match tokio::time::timeout(TAKEOVER_TIMEOUT, wait).await {
                    Ok(reply) => {
                        if let Err(Some(session)) = reply.send(self.hand_over(session)) {
                            core.end_session(session);
                        }
                    }
                    Err(_) => core.end_session(session),
                }
            }
        }
    }

    fn log_exit(&self, exit: &Exit) {
        let stats = self.core.stats();
        let client_id = &self.session.client_id;
        match exit {
            Exit::Violation {
                malformed, detail, ..
            } => {
                let counter = if *malformed {
                    &stats.malformed_packets
                } else {
                    &stats.protocol_errors
                };
                Stats::bump(counter);
                if let Some(suppressed) = self.core.log_limiter().allow(self.core.clock().now_ms())
                {
                    tracing::warn!(%client_id, peer = %self.info.peer, suppressed, "closing connection: {detail}");
                }
            }
            Exit::BadStream(detail) => {
                Stats::bump(&stats.malformed_packets);
                if let Some(suppressed) = self.core.log_limiter().allow(self.core.clock().now_ms())
                {
                    tracing::warn!(%client_id, peer = %self.info.peer, suppressed, "closing connection: {detail}");
                }
            }
            Exit::KeepAlive => tracing::info!(%client_id, "keep alive timed out"),
            Exit::PacketTimeout => {
                Stats::bump(&stats.protocol_errors);
                tracing::info!(%client_id, "a started packet was not completed in time")
            }
            Exit::WriteTimeout => {
                tracing::info!(%client_id, "the client has not read its output in time")
            }
            Exit::AckTimeout => tracing::warn!(
                %client_id,
                "a message's owner did not answer in time; closing without acknowledging it"
            ),
            Exit::SlowSubscriber => {
                Stats::bump(&stats.slow_subscribers);
                tracing::info!(%client_id, "slow subscriber: publishers waited too long for its queue")
            }
            Exit::NotAuthorized(why) => {
                tracing::info!(%client_id, peer = %self.info.peer, why, "not authorized; closing")
            }
            Exit::Kicked(reason) => {
                tracing::info!(%client_id, peer = %self.info.peer, reason, "disconnected through the admin API")
            }
            Exit::TakenOver(_) => {
                Stats::bump(&stats.sessions_taken_over);
                tracing::info!(%client_id, "session taken over")
            }
            _ => tracing::debug!(%client_id, ?exit, "connection ended"),
        }
    }

    /// The session for a connection taking it over: only if it outlives its connection
    /// (MQTT-3.1.2-6, 5.0 section 3.1.2.11.2); otherwise it ends here.
    fn hand_over(&self, session: SessionState) -> Option<SessionState> {
        if self.session_expiry > 0 {
            Some(session)
        } else {
            self.core.end_session(session);
            None
        }
    }

    /// An empty stand-in for the session once it has been handed on; keeps the origin id so a
    /// will published afterwards is still recognised as this client's (No Local).
    fn placeholder_session(&self) -> SessionState {
        SessionState::new(self.session.client_id.clone(), self.session.mailbox.clone())
    }
}

/// A moment of the broker clock to the millisecond, or none: half the size of an
/// `Option<Instant>`, of which every idle connection would hold two. A deadline counted from
/// it may come up to a millisecond early; the timeouts it serves are whole seconds.
#[derive(Debug, Clone, Copy)]
struct Since(u64);

impl Since {
    /// No moment.
    const NONE: Since = Since(0);

    /// The moment `at` (the broker clock's milliseconds, plus one so that 0 stays "none").
    fn at(clock: Clock, at: Instant) -> Since {
        Since(clock.ms_at(at).saturating_add(1))
    }

    fn is_none(self) -> bool {
        self.0 == 0
    }

    /// The moment, if there is one.
    fn get(self, clock: Clock) -> Option<Instant> {
        (self.0 != 0).then(|| clock.started() + Duration::from_millis(self.0 - 1))
    }
}

/// At most 256 bytes of `text`, cut at a character boundary.
fn short(text: &str) -> &str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How much to read next: the rest of the next packet if its header is already there (bounded
/// by the maximum packet size, which `frame_len` checks, and by 1 MiB a read), else a small chunk.
fn read_size(rbuf: &BytesMut, max_packet: u32) -> usize {
    match protocol::frame_len(rbuf, max_packet) {
        Ok(Some(total)) if total > rbuf.len() => (total - rbuf.len()).clamp(READ_CHUNK, 1 << 20),
        _ => READ_CHUNK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection holds one of each of these (the boxed connection, its registry
    /// details, its mailbox): a field added to them costs 10,000 idle connections its size
    /// each, so the sizes are pinned here and a growth must be a choice (README, Performance:
    /// where the idle-connection memory goes). Smaller is always fine.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn idle_connection_structs_stay_small() {
        use std::mem::size_of;
        let sizes = [
            ("Connection", size_of::<Connection>(), 384),
            (
                "ClientInfo",
                size_of::<crate::broker::clients::ClientInfo>(),
                96,
            ),
            (
                "Mailbox",
                size_of::<crate::session::mailbox::Mailbox>(),
                200,
            ),
        ];
        for (name, size, pinned) in sizes {
            assert!(
                size <= pinned,
                "{name} grew to {size} bytes (pinned: {pinned})"
            );
        }
    }
}
