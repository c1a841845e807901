//! The CONNECT phase: read CONNECT in time, check it, authenticate the client, claim the client
//! id (taking the session over from another connection or the store), answer CONNACK, resend
//! what was in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::{pause, Connection, Since, TAKEOVER_TIMEOUT};
use crate::auth::enhanced::{Failure, Step};
use crate::auth::{Access, ConnectRequest, Grant, Refusal};
use crate::broker::clients::ClientInfo;
use crate::broker::core::Core;
use crate::broker::registry::Claim;
use crate::gate::AckQueue;
use crate::metrics::stats::Stats;
use crate::protocol::{
    self, reason, topic, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectReason,
    DecodeError, DecodeLimits, OutboundAliases, Packet, ProtocolVersion, Will, WillProperties,
    MAX_PACKET_SIZE,
};
use crate::session::SessionState;
use crate::transport::{Accepted, Stream};
use tokio::sync::OwnedSemaphorePermit;

/// Why the CONNECT phase ended without a session.
enum ReadFailure {
    Closed,
    Decode(DecodeError),
    /// The transport refused the input (a bad WebSocket frame) and answered the client.
    BadStream(String),
}

/// Reads the next whole packet.
async fn read_packet(
    stream: &mut Stream,
    rbuf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    limits: &DecodeLimits,
) -> Result<Packet, ReadFailure> {
    loop {
        match protocol::decode(rbuf, version, limits) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(error) => return Err(ReadFailure::Decode(error)),
        }
        match stream
            .read_some(rbuf, super::read_size(rbuf, limits.max_packet_size))
            .await
        {
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ReadFailure::BadStream(error.to_string()))
            }
            Ok(0) | Err(_) => return Err(ReadFailure::Closed),
            Ok(_) => {}
        }
    }
}

/// Runs the CONNECT phase; `None` when the connection is to be closed.
pub(super) async fn accept(
    accepted: Accepted,
    conn_id: u64,
    core: Arc<Core>,
) -> Option<Box<Connection>> {
    let core = &core;
    let Accepted {
        mut stream,
        peer,
        listener,
        permit,
    } = accepted;
    let mut rbuf = BytesMut::new();
    let Some(connect) = handshake(&mut stream, &mut rbuf, peer, core).await else {
        let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, stream.shutdown()).await;
        return None;
    };
    let version = connect.protocol;
    let client_id = if connect.client_id.is_empty() {
        ByteString::from(format!("warren-{conn_id:x}-{:x}", rand_suffix()))
    } else {
        // A copy: the decoded id is a slice of the read buffer, which it would keep alive.
        ByteString::from(&*connect.client_id)
    };
    let (grant, enhanced) = if connect.properties.authentication_method.is_some() {
        match enhanced_exchange(&connect, &client_id, &mut stream, &mut rbuf, peer, core).await {
            Some((grant, done)) => {
                let user = grant.username.clone().unwrap_or_default();
                (grant, Some((user, done)))
            }
            None => {
                let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, stream.shutdown()).await;
                return None;
            }
        }
    } else {
        let Some(grant) =
            authenticate(&connect, &client_id, &mut stream, peer, &listener, core).await
        else {
            let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, stream.shutdown()).await;
            return None;
        };
        (grant, None)
    };
    let io = Io {
        stream,
        rbuf,
        permit,
    };
    let mut conn = match establish(
        *connect,
        client_id,
        grant.access,
        enhanced,
        conn_id,
        peer,
        &listener,
        io,
        core,
    )
    .await
    {
        Ok(conn) => conn,
        Err((mut io, reason)) => {
            refuse(&mut io.stream, version, reason, core).await;
            return None;
        }
    };
    // A JWT's expiry, moved onto the broker clock that the sweeper reads.
    let expiry = grant.expires_at_ms.map(|at| {
        let unix_now = crate::wall::unix_ms();
        core.clock()
            .now_ms()
            .saturating_add(at.saturating_sub(unix_now))
    });
    conn.session.mailbox.set_credentials_expiry(expiry);
    if conn.access.is_some() && !conn.session.subscriptions.is_empty() {
        // A resumed session: its subscriptions were granted under the rules of that time.
        conn.recheck_subscriptions();
    }
    // CONNACK and the resent inflight messages are written by the packet loop's first flush.
    conn.resend_inflight();
    Some(Box::new(conn))
}

/// What the connection owns of the transport.
struct Io {
    stream: Stream,
    rbuf: BytesMut,
    permit: OwnedSemaphorePermit,
}

/// Reads and checks CONNECT; answers refusals. `None`: close the connection.
async fn handshake(
    stream: &mut Stream,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    core: &Arc<Core>,
) -> Option<Box<Connect>> {
    let mqtt = &core.config().mqtt;
    let timeout = Duration::from_secs(mqtt.connect_timeout_secs);
    // Before CONNECT succeeds, a connection gets a smaller packet limit.
    let limits = DecodeLimits {
        max_packet_size: mqtt.max_packet_size.min(mqtt.max_connect_packet_size),
        max_user_properties: mqtt.max_user_properties,
    };
    let first = tokio::select! {
        first = tokio::time::timeout(timeout, read_packet(stream, rbuf, None, &limits)) => first,
        _ = core.shutdown_token().cancelled() => return None,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within {timeout:?}; closing");
            return None;
        }
        Ok(Err(ReadFailure::Closed)) => return None,
        Ok(Err(ReadFailure::BadStream(detail))) => {
            Stats::bump(&core.stats().malformed_packets);
            if let Some(suppressed) = core.log_limiter().allow(core.clock().now_ms()) {
                tracing::warn!(%peer, suppressed, "closing connection before CONNECT: {detail}");
            }
            return None;
        }
        Ok(Err(ReadFailure::Decode(DecodeError::UnsupportedProtocol { name, level }))) => {
            tracing::info!(%peer, name, level, "unsupported protocol version; refusing");
            refuse(
                stream,
                ProtocolVersion::V3_1_1,
                ConnectReason::UnsupportedProtocolVersion,
                core,
            )
            .await;
            return None;
        }
        Ok(Err(ReadFailure::Decode(error))) => {
            let counter = match error {
                DecodeError::Protocol { .. } => &core.stats().protocol_errors,
                _ => &core.stats().malformed_packets,
            };
            Stats::bump(counter);
            if let Some(suppressed) = core.log_limiter().allow(core.clock().now_ms()) {
                tracing::warn!(%peer, suppressed, "closing connection before CONNECT: {error}");
            }
            return None;
        }
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(other)) => {
            Stats::bump(&core.stats().protocol_errors);
            if let Some(suppressed) = core.log_limiter().allow(core.clock().now_ms()) {
                tracing::warn!(
                    %peer,
                    suppressed,
                    kind = other.kind(),
                    "first packet is not CONNECT (MQTT-3.1.0-1)"
                );
            }
            return None;
        }
    };
    let version = connect.protocol;
    if let Err(reason) = check_connect(&connect, core) {
        tracing::info!(%peer, client_id = %connect.client_id, ?reason, "CONNECT refused");
        let redirect = matches!(
            reason,
            ConnectReason::UseAnotherServer | ConnectReason::ServerMoved
        );
        if version.is_v5() || reason.v3_return_code() != 3 || redirect {
            refuse(stream, version, reason, core).await;
        } else {
            // 3.1.1 has no return code for this refusal ("server unavailable" would mislead).
            core.stats().refused(refusal_label(reason));
        }
        return None;
    }
    Some(connect)
}

/// Asks the authenticators; on a refusal, waits the source address's delay, answers the
/// refusal (never logging the password) and returns `None`.
async fn authenticate(
    connect: &Connect,
    client_id: &str,
    stream: &mut Stream,
    peer: SocketAddr,
    listener: &str,
    core: &Arc<Core>,
) -> Option<Grant> {
    let auth = core.auth();
    let request = ConnectRequest {
        client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        peer,
        listener,
        peer_cert: stream.peer_certificate(),
        protocol: connect.protocol.label(),
    };
    let refusal = match auth.authenticate(&request).await {
        Ok(mut grant) => {
            let will_denied = match (&connect.will, grant.access.as_mut()) {
                (Some(will), Some(access)) => !access.may_publish(&will.topic),
                _ => false,
            };
            if !will_denied {
                auth.throttle().succeeded(peer.ip());
                return Some(grant);
            }
            Refusal::NotAuthorized("will_denied")
        }
        Err(refusal) => refusal,
    };
    core.stats().auth_failed(refusal.label());
    // Rate-limited like other client-caused lines: many sources cannot flood the log.
    if let Some(suppressed) = core.log_limiter().allow(core.clock().now_ms()) {
        tracing::info!(
            %peer,
            listener,
            client_id,
            username = connect.username.as_deref().unwrap_or(""),
            reason = refusal.label(),
            suppressed,
            "authentication failed"
        );
    }
    let delay = auth.throttle().failed(peer.ip(), core.clock().now_ms());
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = core.shutdown_token().cancelled() => return None,
    }
    let reason = match refusal {
        Refusal::BadCredentials(_) => ConnectReason::BadUserNameOrPassword,
        Refusal::NotAuthorized(_) => ConnectReason::NotAuthorized,
    };
    refuse(stream, connect.protocol, reason, core).await;
    None
}

/// Enhanced authentication at CONNECT (MQTT 4.12): feeds the method's exchange the CONNECT's
/// Authentication Data, then each AUTH 0x18 the client answers (each within
/// `connect_timeout_secs`, at most [`MAX_AUTH_ROUNDS`]), sending the method's challenges in
/// AUTH 0x18. On success returns the grant, and the method and final data for the CONNACK. A
/// refusal is answered here: 0x87 when the client did not prove who it claims to be, 0x8C for
/// an exchange that does not follow the method; `None` then.
async fn enhanced_exchange(
    connect: &Connect,
    client_id: &str,
    stream: &mut Stream,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    core: &Arc<Core>,
) -> Option<(Grant, EnhancedDone)> {
    let auth = core.auth();
    let method = connect
        .properties
        .authentication_method
        .as_deref()
        .unwrap_or_default();
    let outcome = async {
        let authenticator = auth
            .enhanced(method)
            .ok_or(ConnectReason::BadAuthenticationMethod)?;
        let method = authenticator.method();
        let mut exchange = authenticator.begin();
        let mut data = connect
            .properties
            .authentication_data
            .clone()
            .unwrap_or_default();
        let mqtt = &core.config().mqtt;
        let limits = DecodeLimits {
            max_packet_size: mqtt.max_packet_size.min(mqtt.max_connect_packet_size),
            max_user_properties: mqtt.max_user_properties,
        };
        let timeout = Duration::from_secs(mqtt.connect_timeout_secs);
        for _ in 0..MAX_AUTH_ROUNDS {
            let challenge = match exchange.step(auth, &data) {
                Ok(Step::Done { username, data }) => {
                    return Ok((username, EnhancedDone { method, data }))
                }
                Ok(Step::Continue(challenge)) => challenge,
                Err(Failure::Denied) => return Err(ConnectReason::NotAuthorized),
                Err(Failure::BadExchange(_)) => return Err(ConnectReason::BadAuthenticationMethod),
            };
            let mut out = BytesMut::new();
            protocol::encode(
                &auth_packet(reason::CONTINUE_AUTHENTICATION, method, Some(challenge)),
                ProtocolVersion::V5,
                MAX_PACKET_SIZE,
                &mut out,
            )
            .map_err(|_| ConnectReason::UnspecifiedError)?;
            stream
                .write_all(&out)
                .await
                .map_err(|_| ConnectReason::UnspecifiedError)?;
            let answer = tokio::time::timeout(
                timeout,
                read_packet(stream, rbuf, Some(ProtocolVersion::V5), &limits),
            )
            .await;
            data = match answer {
                Ok(Ok(Packet::Auth(a)))
                    if a.reason == reason::CONTINUE_AUTHENTICATION
                        && a.properties.authentication_method.as_deref() == Some(method) =>
                {
                    a.properties.authentication_data.unwrap_or_default()
                }
                _ => return Err(ConnectReason::BadAuthenticationMethod),
            };
        }
        Err(ConnectReason::BadAuthenticationMethod)
    }
    .await;
    let refusal = match outcome {
        Ok((user, done)) => {
            let mut grant = auth.grant_enhanced(client_id, &user);
            let will_denied = match (&connect.will, grant.access.as_mut()) {
                (Some(will), Some(access)) => !access.may_publish(&will.topic),
                _ => false,
            };
            if !will_denied {
                auth.throttle().succeeded(peer.ip());
                return Some((grant, done));
            }
            ConnectReason::NotAuthorized
        }
        Err(reason) => reason,
    };
    core.stats().auth_failed(match refusal {
        ConnectReason::NotAuthorized => "enhanced_denied",
        _ => "enhanced_bad_exchange",
    });
    tracing::info!(%peer, client_id, method, reason = ?refusal, "enhanced authentication failed");
    let delay = auth.throttle().failed(peer.ip(), core.clock().now_ms());
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = core.shutdown_token().cancelled() => return None,
    }
    refuse(stream, ProtocolVersion::V5, refusal, core).await;
    None
}

/// Client packets an enhanced authentication may take at CONNECT.
const MAX_AUTH_ROUNDS: usize = 8;

/// What a successful enhanced authentication gives the CONNACK.
struct EnhancedDone {
    method: &'static str,
    data: Option<Vec<u8>>,
}

/// An AUTH packet of `method`.
pub(super) fn auth_packet(code: u8, method: &'static str, data: Option<Vec<u8>>) -> Packet {
    Packet::Auth(Auth {
        reason: code,
        properties: AuthProperties {
            authentication_method: Some(ByteString::from_static(method)),
            authentication_data: data.map(Bytes::from),
            ..AuthProperties::default()
        },
    })
}

/// The refusals a CONNECT can get before any session is touched.
fn check_connect(connect: &Connect, core: &Core) -> Result<(), ConnectReason> {
    let mqtt = &core.config().mqtt;
    let v5 = connect.protocol.is_v5();
    if !mqtt.server_reference.is_empty() {
        return Err(if mqtt.server_moved {
            ConnectReason::ServerMoved
        } else {
            ConnectReason::UseAnotherServer
        });
    }
    if let Some(method) = &connect.properties.authentication_method {
        if !(v5 && core.auth().enhanced(method).is_some()) {
            return Err(ConnectReason::BadAuthenticationMethod);
        }
    }
    if connect.client_id.is_empty() {
        let allowed = match connect.protocol {
            ProtocolVersion::V3_1 => false,
            // MQTT-3.1.3-8: an empty id needs clean session in 3.1.1.
            ProtocolVersion::V3_1_1 => connect.clean_start,
            ProtocolVersion::V5 => true,
        };
        if !allowed || !mqtt.allow_zero_length_client_id {
            return Err(ConnectReason::ClientIdentifierNotValid);
        }
    }
    if let Some(will) = &connect.will {
        if !topic::valid_topic_name(&will.topic) || !core.topic_within_limits(&will.topic) {
            return Err(ConnectReason::TopicNameInvalid);
        }
        if will.retain && !mqtt.retain_available {
            return Err(ConnectReason::RetainNotSupported);
        }
        if will.qos as u8 > mqtt.maximum_qos {
            // MQTT-3.2.2-12.
            return Err(ConnectReason::QoSNotSupported);
        }
    }
    Ok(())
}

/// Sends a refusing CONNACK and closes. A 5.0 refusal says why in a Reason String (allowed on
/// CONNACK whatever Request Problem Information says), and a redirection names the server.
async fn refuse(stream: &mut Stream, version: ProtocolVersion, reason: ConnectReason, core: &Core) {
    core.stats().refused(refusal_label(reason));
    let mut out = BytesMut::new();
    let redirect = matches!(
        reason,
        ConnectReason::UseAnotherServer | ConnectReason::ServerMoved
    );
    let server_reference = &core.config().mqtt.server_reference;
    let connack = ConnAck {
        session_present: false,
        reason,
        properties: ConnAckProperties {
            reason_string: Some(ByteString::from_static(refusal_label(reason))),
            server_reference: (redirect && !server_reference.is_empty())
                .then(|| ByteString::from(server_reference.as_str())),
            ..ConnAckProperties::default()
        },
    };
    if protocol::encode(
        &Packet::ConnAck(connack),
        version,
        MAX_PACKET_SIZE,
        &mut out,
    )
    .is_ok()
    {
        let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, async {
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

/// Claims the client id, takes over or resumes the session, and builds the CONNACK. Gives the
/// transport back, with the refusal, when the old connection did not hand its session over in
/// time (server busy: refused rather than started afresh, which would lose the session), or
/// when the store takes no new persistent session (quota exceeded).
#[allow(clippy::too_many_arguments)]
async fn establish(
    connect: Connect,
    client_id: ByteString,
    access: Option<Box<Access>>,
    enhanced: Option<(ByteString, EnhancedDone)>,
    conn_id: u64,
    peer: SocketAddr,
    listener: &Arc<str>,
    io: Io,
    core: &Arc<Core>,
) -> Result<Connection, (Io, ConnectReason)> {
    let mqtt = &core.config().mqtt;
    let v5 = connect.protocol.is_v5();
    let mut props = ConnAckProperties::default();

    if v5 && connect.client_id.is_empty() {
        props.assigned_client_identifier = Some(client_id.clone());
    }

    let mut keep_alive = connect.keep_alive;
    if v5
        && (keep_alive > mqtt.max_keep_alive_secs
            || (keep_alive == 0 && mqtt.max_keep_alive_secs < u16::MAX))
    {
        keep_alive = mqtt.max_keep_alive_secs;
        props.server_keep_alive = Some(keep_alive);
    }

    let session_expiry = if v5 {
        let asked = connect.properties.session_expiry_interval.unwrap_or(0);
        if asked > mqtt.max_session_expiry_secs {
            props.session_expiry_interval = Some(mqtt.max_session_expiry_secs);
        }
        asked.min(mqtt.max_session_expiry_secs)
    } else if connect.clean_start {
        0
    } else {
        mqtt.persistent_session_expiry_secs
    };

    if session_expiry > 0 {
        if let Err(error) = core.can_persist() {
            tracing::warn!(%client_id, %error, "refusing a persistent session: the store takes no new work");
            return Err((io, ConnectReason::QuotaExceeded));
        }
    }

    let registry = core.registry();
    // One claim of a client id at a time: each takeover starts from the connection that
    // really holds the session (the previous claimant has attached it by then).
    let claim_lock = registry.lock_client_id(&client_id).await;
    let fresh = SessionState::new(client_id.clone(), core.new_mailbox());
    let info = Arc::new(ClientInfo::new(
        connect.username.as_deref(),
        listener.clone(),
        peer,
        connect.protocol,
        keep_alive,
        session_expiry,
        connect.clean_start,
    ));
    let previous = match registry.claim(&client_id, conn_id, fresh.mailbox.clone(), info.clone()) {
        Claim::Fresh => None,
        Claim::Stored(session) => {
            core.cancel_timers(&client_id);
            Some(session)
        }
        Claim::Connected {
            conn_id: old_conn,
            mailbox: old,
            info: old_info,
        } => {
            let (reply_tx, reply_rx) = oneshot::channel();
            old.request_takeover(reply_tx);
            match tokio::time::timeout(TAKEOVER_TIMEOUT, reply_rx).await {
                Ok(Ok(handed)) => handed,
                // The old connection ended without handing over: nothing outlived it.
                Ok(Err(_)) => None,
                Err(_) => {
                    tracing::warn!(%client_id, "the connection holding this client id did not hand its session over in time; refusing");
                    registry.abandon(&client_id, conn_id, (old_conn, old, old_info));
                    drop(claim_lock);
                    return Err((io, ConnectReason::ServerBusy));
                }
            }
        }
    };
    let previous = previous.map(|mut session| {
        // A new connection before the Will Delay Interval ran out: that will is not sent
        // (MQTT-3.1.3-9).
        session.delayed_will = None;
        session
    });
    let (session, session_present) = match previous {
        Some(session) if !connect.clean_start => {
            registry.attach(&client_id, conn_id, &session.mailbox);
            (session, true)
        }
        previous => {
            if let Some(old) = previous {
                core.end_session(old);
            }
            (fresh, false)
        }
    };
    core.set_online(&session.mailbox, true);
    core.persist_session(&session, session_expiry);
    drop(claim_lock);

    if v5 {
        props.maximum_packet_size = Some(mqtt.max_packet_size);
        props.receive_maximum = Some(mqtt.receive_maximum);
        props.shared_subscription_available = Some(1);
        if mqtt.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(mqtt.topic_alias_maximum);
        }
        if !mqtt.retain_available {
            props.retain_available = Some(0);
        }
        if let Some((_, done)) = &enhanced {
            props.authentication_method = Some(ByteString::from_static(done.method));
            props.authentication_data = done.data.clone().map(Bytes::from);
        }
        if mqtt.maximum_qos < 2 {
            props.maximum_qos = Some(mqtt.maximum_qos);
        }
        if connect.properties.request_response_information == Some(1)
            && !mqtt.response_information_prefix.is_empty()
        {
            props.response_information = Some(ByteString::from(format!(
                "{}{client_id}",
                mqtt.response_information_prefix
            )));
        }
    }
    let connack = ConnAck {
        session_present,
        reason: ConnectReason::Success,
        properties: props,
    };
    let client_max_packet = connect
        .properties
        .maximum_packet_size
        .unwrap_or(MAX_PACKET_SIZE);
    let receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
    let mut conn = Connection {
        core: core.clone(),
        conn_id,
        version: connect.protocol,
        session,
        will: connect.will.map(|will| Box::new(compact_will(will))),
        session_expiry,
        info,
        client_max_packet,
        window: mqtt.max_inflight.min(receive_maximum),
        receive_maximum: mqtt.receive_maximum,
        max_packet_size: mqtt.max_packet_size,
        // More than 4 billion User Properties cannot fit in a packet: saturating changes nothing.
        max_user_properties: u32::try_from(mqtt.max_user_properties).unwrap_or(u32::MAX),
        problem_information: connect.properties.request_problem_information != Some(0),
        enhanced: enhanced.map(|(user, done)| {
            Box::new(super::reauth::Enhanced {
                method: done.method,
                user,
                exchange: None,
            })
        }),
        aliases_in: None,
        aliases_out: match connect.properties.topic_alias_maximum {
            Some(max) if v5 && max > 0 && mqtt.outgoing_topic_alias_maximum > 0 => Some(Box::new(
                OutboundAliases::new(max.min(mqtt.outgoing_topic_alias_maximum)),
            )),
            _ => None,
        },
        acks: AckQueue::default(),
        held: None,
        throttle: pause::Throttle::new(mqtt, std::time::Instant::now()),
        mailbox_pending: true,
        wbuf: BytesMut::new(),
        holds: None,
        unflushed: false,
        write_stalled_since: Since::NONE,
        partial_since: Since::NONE,
        timer: None,
        access,
        stream: io.stream,
        rbuf: io.rbuf,
        _permit: io.permit,
    };
    tracing::debug!(%client_id, version = conn.version.label(), session_present, "connected");
    conn.send(Packet::ConnAck(connack));
    core.stats().connected(listener, conn.version.label());
    Ok(conn)
}

/// A few bits of per-process randomness for assigned client ids.
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() & 0xffff_ffff
}

/// The will with its topic and payload copied out of the read buffer they slice, so a
/// connection that idles for days does not keep its first read buffer alive.
fn compact_will(will: Will) -> Will {
    let string = |s: &Option<ByteString>| s.as_deref().map(ByteString::from);
    let p = &will.properties;
    let properties = WillProperties {
        will_delay_interval: p.will_delay_interval,
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: string(&p.content_type),
        response_topic: string(&p.response_topic),
        correlation_data: p.correlation_data.as_deref().map(Bytes::copy_from_slice),
        // Decoded user properties are already a compact copy of their own.
        user_properties: p.user_properties.clone(),
    };
    Will {
        topic: ByteString::from(&*will.topic),
        payload: Bytes::copy_from_slice(&will.payload),
        qos: will.qos,
        retain: will.retain,
        properties,
    }
}

/// Metric label of a CONNECT refusal.
fn refusal_label(reason: ConnectReason) -> &'static str {
    match reason {
        ConnectReason::UnsupportedProtocolVersion => "unsupported_protocol_version",
        ConnectReason::ClientIdentifierNotValid => "client_id_not_valid",
        ConnectReason::BadAuthenticationMethod => "bad_authentication_method",
        ConnectReason::TopicNameInvalid => "will_topic_invalid",
        ConnectReason::RetainNotSupported => "retain_not_supported",
        ConnectReason::BadUserNameOrPassword => "bad_username_or_password",
        ConnectReason::NotAuthorized => "not_authorized",
        ConnectReason::QoSNotSupported => "qos_not_supported",
        ConnectReason::UseAnotherServer => "use_another_server",
        ConnectReason::ServerMoved => "server_moved",
        ConnectReason::QuotaExceeded => "quota_exceeded",
        ConnectReason::ServerBusy => "server_busy",
        _ => "other",
    }
}
