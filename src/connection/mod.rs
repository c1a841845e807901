//! One client connection, from the first byte to the last: the per-connection task.
//!
//! This is the only place where sockets, the codec, the session state and the router meet, and
//! the only task that `select!`s, on two things: the socket and its session's mailbox. Keep
//! alive, takeover, shutdown and back-pressure wake-ups all arrive through the mailbox, so an
//! idle connection's task stays small (about 400 bytes of future). Everything it calls is
//! synchronous. The life of a connection: [`serve`] reads CONNECT within the connect timeout
//! (`connect.rs`), claims the client id (taking a session over from another connection or the
//! store), answers CONNACK, resends what was in flight, then runs the packet loop
//! ([`Connection::run`], packet handling in `handler.rs`) until an [`Exit`]; finally it says
//! goodbye (5.0 DISCONNECT with a reason), publishes the will where the spec asks for it, and
//! hands the session back to the registry.

mod connect;
mod handler;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::broker::registry::Release;
use crate::broker::Shared;
use crate::metrics::stats::Stats;
use crate::protocol::{self, reason, DecodeError, Disconnect, Packet, ProtocolVersion, Will};
use crate::session::mailbox::{Control, TakeOver};
use crate::session::SessionState;
use crate::transport::{Accepted, Stream};

/// Bytes reserved for a read when the buffer has little room left.
const READ_CHUNK: usize = 4096;
/// Deliveries taken from the mailbox at a time.
const DRAIN_BATCH: usize = 64;
/// Stop draining the mailbox once this much output is waiting to be written.
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
    /// Nothing arrived within 1.5 × keep alive.
    KeepAlive,
    /// The client broke the protocol; `reason` is the 5.0 reason code.
    Violation {
        reason: u8,
        malformed: bool,
        detail: String,
    },
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
            Exit::Disconnect { .. } | Exit::Closed => None,
            Exit::KeepAlive => Some(reason::KEEP_ALIVE_TIMEOUT),
            Exit::Violation { reason, .. } => Some(*reason),
            Exit::TakenOver(_) => Some(reason::SESSION_TAKEN_OVER),
            Exit::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
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
/// the [`Connection`] (boxed too) and two waits.
pub fn serve(accepted: Accepted, shared: Arc<Shared>) -> impl Future<Output = ()> + Send {
    Stats::bump(&shared.stats.sockets_accepted);
    shared.stats.sockets_open.fetch_add(1, Ordering::Relaxed);
    let conn_id = shared.next_conn_id();
    // No tracing span around the task: it would cost every idle connection its size (and an
    // enabled one, a few hundred bytes more); log lines name the client and peer instead.
    tracing::debug!(conn_id, peer = %accepted.peer, listener = %accepted.listener, "accepted");
    // Built here, not inside the async block, so that the accepted socket is not also kept
    // as a captured argument for the connection's whole life.
    let accept = Box::pin(connect::accept(accepted, conn_id, shared.clone()));
    async move {
        if let Some(mut conn) = accept.await {
            let exit = conn.run().await;
            Box::pin(conn.finish(exit)).await;
        }
        shared.stats.sockets_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connected client after CONNACK: its session and what the packet loop needs.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    conn_id: u64,
    version: ProtocolVersion,
    session: SessionState,
    will: Option<Box<Will>>,
    /// Session expiry interval in seconds (0: ends with the connection; u32::MAX: never).
    session_expiry: u32,
    /// 1.5 × keep alive, or None when keep alive is 0.
    keep_alive: Option<Duration>,
    /// The listener it came in on (metrics).
    listener: Arc<str>,
    /// The client's address, for logs.
    peer: SocketAddr,
    /// The client's Maximum Packet Size.
    client_max_packet: u32,
    /// Outgoing QoS 1/2 window: min(server max inflight, client Receive Maximum).
    window: usize,
    wbuf: BytesMut,
    /// The mailbox may hold deliveries we could take now.
    mailbox_pending: bool,
    /// A subscriber's queue that is over its limit because of this client's messages: no
    /// input is read until it has room (back-pressure).
    pressure: Option<Arc<crate::session::mailbox::Mailbox>>,
    /// The client's byte pipe.
    stream: Stream,
    /// Input not yet decoded (empty, and unallocated, while idle).
    rbuf: BytesMut,
    /// The connection's place under its listener's limit.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    /// The packet loop. It waits on two things only, the socket and the mailbox, so that an
    /// idle connection's task stays small: keep alive, takeover and shutdown arrive as a
    /// [`Control`] through the mailbox (the broker's keep-alive sweeper checks the activity
    /// stamp this loop leaves on it).
    async fn run(&mut self) -> Exit {
        let mailbox = self.session.mailbox.clone();
        let max_packet = self.shared.config.mqtt.max_packet_size;
        mailbox.set_keep_alive(self.keep_alive, self.shared.clock.now_ms());
        // A signal left from the session's previous connection is stale, but a takeover
        // request may already be for this one.
        if let Some(Control::TakeOver(reply)) = mailbox.take_control() {
            return Exit::TakenOver(reply);
        }
        if self.shared.shutdown.is_cancelled() {
            // Shutdown began while this connection was claiming its client id.
            return Exit::Shutdown;
        }
        self.mailbox_pending = true;
        loop {
            // Paused by a full subscriber queue: resume once it has room (else this task is
            // registered to be woken then). Resuming may meet a full queue again.
            while let Some(full) = &self.pressure {
                if !full.room_or_wait(&mailbox) {
                    break;
                }
                self.pressure = None;
                mailbox.set_keep_alive(self.keep_alive, self.shared.clock.now_ms());
                // Input held back while paused.
                if let Some(exit) = self.process_input(max_packet, Instant::now()) {
                    return exit;
                }
            }
            if self.mailbox_pending {
                self.drain_mailbox();
            }
            mailbox.set_inflight(self.session.outgoing.len());
            if !self.wbuf.is_empty() && self.flush().await.is_err() {
                return Exit::Closed;
            }
            let want = read_size(&self.rbuf, max_packet);
            tokio::select! {
                read = self.stream.read_some(&mut self.rbuf, want), if self.pressure.is_none() => {
                    let n = match read {
                        Ok(0) | Err(_) => return Exit::Closed,
                        Ok(n) => n,
                    };
                    self.shared.stats.shard().bytes_in(n);
                    let now = Instant::now();
                    mailbox.touch(self.shared.clock.ms_at(now));
                    if let Some(exit) = self.process_input(max_packet, now) {
                        return exit;
                    }
                    // A read that filled its buffer means more input is waiting: after one
                    // read's worth of work, the other tasks' turn. A publisher that always has
                    // input must not starve its subscribers, the accept loop or other clients
                    // (a single-threaded broker gets this fairness from its event loop; here
                    // the scheduler needs the hint). A short read needs no yield: the next
                    // wait on the socket gives way anyway, and latency stays low.
                    if n >= want {
                        tokio::task::yield_now().await;
                    }
                }
                // Deliveries left over from a drain cut short by the write high-water mark:
                // go round again (fairly with reads) instead of waiting for a notification
                // that was already consumed.
                () = std::future::ready(()), if self.mailbox_pending => {}
                _ = mailbox.notified(), if !self.mailbox_pending => {
                    match mailbox.take_control() {
                        Some(Control::TakeOver(reply)) => return Exit::TakenOver(reply),
                        Some(Control::Shutdown) => return Exit::Shutdown,
                        Some(Control::KeepAliveExpired) => return Exit::KeepAlive,
                        None => self.mailbox_pending = true,
                    }
                }
            }
        }
    }

    /// Handles every whole packet in the read buffer, stopping early when a subscriber's full
    /// queue pushes back (the rest waits in the buffer). `Some` ends the connection.
    fn process_input(&mut self, max_packet: u32, now: Instant) -> Option<Exit> {
        while self.pressure.is_none() {
            let limits = protocol::DecodeLimits::new(max_packet);
            match protocol::decode(&mut self.rbuf, Some(self.version), &limits) {
                Ok(Some(packet)) => {
                    if let Some(exit) = self.handle(packet, now) {
                        return Some(exit);
                    }
                }
                Ok(None) => break,
                Err(error) => return Some(Exit::from_decode(error)),
            }
        }
        if self.rbuf.is_empty() {
            // An idle connection keeps no read buffer.
            self.rbuf = BytesMut::new();
        }
        None
    }

    /// Writes out everything encoded so far.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.shared.stats.shard().bytes_out(self.wbuf.len());
        self.stream.flush().await?;
        self.wbuf.clear();
        if self.wbuf.capacity() > READ_CHUNK {
            // Do not keep a burst's buffer while idle.
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }

    /// Ends the connection: DISCONNECT (5.0), close, will, and the session's hand-back.
    async fn finish(mut self, exit: Exit) {
        self.session.mailbox.set_keep_alive(None, 0);
        self.shared
            .stats
            .disconnected(&self.listener, self.version.label());
        match &exit {
            Exit::Violation {
                malformed, detail, ..
            } => {
                let counter = if *malformed {
                    &self.shared.stats.malformed_packets
                } else {
                    &self.shared.stats.protocol_errors
                };
                Stats::bump(counter);
                tracing::warn!(client_id = %self.session.client_id, peer = %self.peer, "closing connection: {detail}");
            }
            Exit::KeepAlive => {
                tracing::info!(client_id = %self.session.client_id, "keep alive timed out")
            }
            Exit::TakenOver(_) => {
                Stats::bump(&self.shared.stats.sessions_taken_over);
                tracing::info!(client_id = %self.session.client_id, "session taken over")
            }
            _ => tracing::debug!(client_id = %self.session.client_id, ?exit, "connection ended"),
        }
        if let (true, Some(code)) = (self.version.is_v5(), exit.disconnect_reason()) {
            self.send(Packet::Disconnect(Disconnect {
                reason: code,
                ..Disconnect::default()
            }));
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
            Exit::TakenOver(reply) => {
                let _ = reply.send(self.hand_over(session));
                None
            }
            _ => Some(session),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if !self.wbuf.is_empty() {
                let _ = self.flush().await;
            }
            let _ = self.stream.shutdown().await;
        })
        .await;
        if let Some(will) = will {
            self.publish_will(*will);
        }
        let Some(session) = release else { return };
        let shared = self.shared.clone();
        session.mailbox.set_online(false);
        let client_id = session.client_id.to_string();
        match shared
            .registry
            .release(self.conn_id, session, self.session_expiry > 0)
        {
            Release::Stored(generation) => {
                if let Some(delay) = will_delay {
                    shared.schedule_will(client_id.clone(), generation, delay);
                }
                shared.schedule_expiry(client_id, generation, self.session_expiry)
            }
            Release::Ended(session) => shared.end_session(session),
            Release::TakenOver(session) => {
                // The new connection has asked, or is about to ask, for this session.
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
                        let _ = reply.send(self.hand_over(session));
                    }
                    Err(_) => shared.end_session(session),
                }
            }
        }
    }

    /// The session for a connection taking it over: only if it outlives its connection
    /// (MQTT-3.1.2-6, 5.0 section 3.1.2.11.2); otherwise it ends here.
    fn hand_over(&self, session: SessionState) -> Option<SessionState> {
        if self.session_expiry > 0 {
            Some(session)
        } else {
            self.shared.end_session(session);
            None
        }
    }

    /// An empty stand-in for the session once it has been handed on; keeps the origin id so a
    /// will published afterwards is still recognised as this client's (No Local).
    fn placeholder_session(&self) -> SessionState {
        SessionState::new(self.session.client_id.clone(), self.session.mailbox.clone())
    }
}

/// How much to read next: the rest of the next packet if its header is already there (bounded
/// by the maximum packet size, which `frame_len` checks, and by 1 MiB a read), else a small chunk.
fn read_size(rbuf: &BytesMut, max_packet: u32) -> usize {
    match protocol::frame_len(rbuf, max_packet) {
        Ok(Some(total)) if total > rbuf.len() => (total - rbuf.len()).clamp(READ_CHUNK, 1 << 20),
        _ => READ_CHUNK,
    }
}
