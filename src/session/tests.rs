//! QoS flow transitions of [`SessionState`], driven without a network.

use std::sync::Arc;

use bytes::Bytes;

use super::mailbox::{Delivery, Dropped, Mailbox, MailboxLimits, Message, Queued};
use super::{AckOutcome, OutState, SessionState};
use crate::protocol::{PublishProperties, QoS};

fn limits(max_messages: usize, max_bytes: usize) -> Arc<MailboxLimits> {
    Arc::new(MailboxLimits {
        max_messages,
        max_bytes,
        queue_qos0_offline: false,
    })
}

fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: "t".into(),
            payload: Bytes::from_static(payload),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: 0,
            received_at: std::time::Instant::now(),
        }),
        qos,
        retain: false,
        subscription_ids: Vec::new(),
    }
}

fn session() -> SessionState {
    SessionState::new("c".into(), Mailbox::new(limits(10, 1000)))
}

#[test]
fn qos1_flow_completes_on_puback_only_once() {
    let mut s = session();
    let id = s.next_pkid().unwrap();
    s.sent(id, delivery(QoS::AtLeastOnce, b"x"));
    assert_eq!(s.outgoing[0].state, OutState::AwaitPubAck);
    assert_eq!(
        s.on_pubcomp(id),
        AckOutcome::Unknown,
        "PUBCOMP is not a QoS 1 ack"
    );
    assert_eq!(s.on_puback(id), AckOutcome::Done);
    assert!(s.outgoing.is_empty());
    assert_eq!(s.on_puback(id), AckOutcome::Unknown);
}

#[test]
fn qos2_flow_goes_through_pubrec_then_pubcomp() {
    let mut s = session();
    let id = s.next_pkid().unwrap();
    s.sent(id, delivery(QoS::ExactlyOnce, b"x"));
    assert_eq!(
        s.on_puback(id),
        AckOutcome::Unknown,
        "PUBACK is not a QoS 2 ack"
    );
    assert_eq!(
        s.on_pubcomp(id),
        AckOutcome::Unknown,
        "PUBCOMP before PUBREC"
    );
    assert_eq!(s.on_pubrec(id, true), AckOutcome::Done);
    assert_eq!(s.outgoing[0].state, OutState::AwaitPubComp);
    assert_eq!(
        s.on_pubrec(id, true),
        AckOutcome::Done,
        "a repeated PUBREC is answered again"
    );
    assert_eq!(s.on_pubcomp(id), AckOutcome::Done);
    assert!(s.outgoing.is_empty());
}

#[test]
fn qos2_pubrec_with_error_reason_ends_the_flow() {
    let mut s = session();
    let id = s.next_pkid().unwrap();
    s.sent(id, delivery(QoS::ExactlyOnce, b"x"));
    assert_eq!(s.on_pubrec(id, false), AckOutcome::Done);
    assert!(s.outgoing.is_empty());
}

#[test]
fn incoming_qos2_is_routed_once_until_released() {
    let mut s = session();
    assert!(s.on_incoming_qos2(7), "first PUBLISH is routed");
    assert!(
        !s.on_incoming_qos2(7),
        "a resend before PUBREL is not routed again"
    );
    assert!(s.on_pubrel(7));
    assert!(!s.on_pubrel(7), "unknown PUBREL");
    assert!(s.on_incoming_qos2(7), "after PUBREL the id is free again");
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut s = session();
    let first = s.next_pkid().unwrap();
    assert_eq!(first, 1);
    s.sent(first, delivery(QoS::AtLeastOnce, b"x"));
    // Wrap around: ids still in flight are skipped, 0 is never used.
    for _ in 0..u16::MAX - 1 {
        let id = s.next_pkid().unwrap();
        assert_ne!(id, 0);
        assert_ne!(id, first);
    }
    let id = s.next_pkid().unwrap();
    assert_eq!(
        id, 2,
        "wrapped past 65535 and 0, skipping 1 which is in flight"
    );
}

#[test]
fn mailbox_bounds_by_count_and_bytes_and_drops_newest() {
    // Offline: the newest is dropped, whatever its QoS.
    let mailbox = Mailbox::new(limits(2, 1000));
    mailbox.push(delivery(QoS::AtLeastOnce, b"1")).unwrap();
    mailbox.push(delivery(QoS::AtLeastOnce, b"2")).unwrap();
    assert_eq!(
        mailbox.push(delivery(QoS::AtLeastOnce, b"3")),
        Err(Dropped::QueueFull)
    );
    let mut out = Default::default();
    assert_eq!(mailbox.pop_into(&mut out, 10, 10), 2);
    let payloads: Vec<_> = out.iter().map(|d| d.message.payload.clone()).collect();
    assert_eq!(payloads, [&b"1"[..], &b"2"[..]], "oldest kept, in order");

    // Online: QoS 0 over the byte limit is dropped.
    let mailbox = Mailbox::new(limits(100, 4));
    mailbox.set_online(true);
    mailbox.push(delivery(QoS::AtMostOnce, b"abc")).unwrap();
    assert_eq!(
        mailbox.push(delivery(QoS::AtMostOnce, b"de")),
        Err(Dropped::QueueFull),
        "byte limit"
    );
}

#[test]
fn online_qos1_past_the_limit_is_kept_and_pushes_back_until_there_is_room() {
    let full = Mailbox::new(limits(1, 1000));
    full.set_online(true);
    let publisher = Mailbox::new(limits(10, 1000));
    publisher.set_online(true);
    assert_eq!(
        full.push(delivery(QoS::AtLeastOnce, b"1")),
        Ok(Queued::Normally)
    );
    assert_eq!(
        full.push(delivery(QoS::AtLeastOnce, b"2")),
        Ok(Queued::OverLimit)
    );
    assert!(
        !full.room_or_wait(&publisher),
        "no room: the publisher waits"
    );
    assert!(publisher.take_control().is_none());
    let mut out = Default::default();
    assert_eq!(full.pop_into(&mut out, 1, 1), 1);
    assert!(!full.room_or_wait(&publisher), "still at the limit");
    assert_eq!(full.pop_into(&mut out, 1, 1), 1);
    // The publisher's own mailbox was notified; a fresh wait completes at once.
    let woken = futures_now(publisher.notified());
    assert!(woken, "publisher woken when room appeared");
    assert!(full.room_or_wait(&publisher));
    // Going offline also releases waiters (nothing would drain the queue).
    full.push(delivery(QoS::AtLeastOnce, b"3")).unwrap();
    full.push(delivery(QoS::AtLeastOnce, b"4")).unwrap();
    assert!(!full.room_or_wait(&publisher));
    full.set_online(false);
    assert!(futures_now(publisher.notified()));
    assert!(full.room_or_wait(&publisher));
}

/// Polls `fut` once: true if it is ready at once.
fn futures_now(fut: impl std::future::Future<Output = ()>) -> bool {
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    fut.as_mut().poll(&mut cx).is_ready()
}

#[test]
fn offline_mailbox_refuses_qos0_unless_configured() {
    let mailbox = Mailbox::new(limits(10, 1000));
    assert_eq!(
        mailbox.push(delivery(QoS::AtMostOnce, b"x")),
        Err(Dropped::OfflineQoS0)
    );
    mailbox.push(delivery(QoS::AtLeastOnce, b"x")).unwrap();
    let mailbox = Mailbox::new(Arc::new(MailboxLimits {
        queue_qos0_offline: true,
        ..*limits(10, 1000)
    }));
    mailbox.push(delivery(QoS::AtMostOnce, b"x")).unwrap();
}

#[test]
fn pop_respects_inflight_room_but_lets_qos0_pass_in_order() {
    let mailbox = Mailbox::new(limits(10, 1000));
    mailbox.set_online(true);
    mailbox.push(delivery(QoS::AtMostOnce, b"a")).unwrap();
    mailbox.push(delivery(QoS::AtLeastOnce, b"b")).unwrap();
    mailbox.push(delivery(QoS::AtLeastOnce, b"c")).unwrap();
    let mut out = Default::default();
    assert_eq!(mailbox.pop_into(&mut out, 10, 1), 2, "QoS 0 + one QoS 1");
    assert_eq!(
        mailbox.pop_into(&mut out, 10, 0),
        0,
        "no room: the QoS 1 waits"
    );
    assert_eq!(mailbox.len(), 1);
}

#[test]
fn closed_mailbox_refuses_everything() {
    let mailbox = Mailbox::new(limits(10, 1000));
    mailbox.push(delivery(QoS::AtLeastOnce, b"x")).unwrap();
    mailbox.close();
    assert!(mailbox.is_empty());
    assert_eq!(
        mailbox.push(delivery(QoS::AtLeastOnce, b"x")),
        Err(Dropped::Closed)
    );
}
