//! QoS flow transitions of [`SessionState`] and the mailbox's limits, driven without a network.

use std::sync::Arc;

use super::mailbox::{
    Control, Delivery, Dropped, Mailbox, MailboxLimits, Message, MessageParts, Queued,
};
use super::{AckOutcome, OutState, SessionState};
use crate::gate::{GateWaker, Pending, TicketSource, Verdict};
use crate::protocol::{PublishProperties, QoS};

fn limits(max_messages: usize, max_bytes: usize) -> Arc<MailboxLimits> {
    Arc::new(MailboxLimits {
        max_messages,
        max_bytes,
        queue_qos0_offline: false,
    })
}

fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
    let properties = PublishProperties::default();
    let message = Message::new(
        MessageParts {
            topic: "t",
            payload,
            qos,
            retain: false,
            properties: &properties,
            origin: 0,
            publisher: None,
        },
        std::time::Instant::now(),
    );
    Delivery::new(Arc::new(message), qos, false)
}

/// Pushes with nobody waiting for an answer.
fn push(mailbox: &Mailbox, d: Delivery) -> Result<Queued, Dropped> {
    mailbox.push(d, &mut TicketSource::none(1))
}

fn session() -> SessionState {
    SessionState::new("c".into(), Mailbox::new(limits(10, 100_000)))
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
    let mailbox = Mailbox::new(limits(2, 100_000));
    push(&mailbox, delivery(QoS::AtLeastOnce, b"1")).unwrap();
    push(&mailbox, delivery(QoS::AtLeastOnce, b"2")).unwrap();
    assert_eq!(
        push(&mailbox, delivery(QoS::AtLeastOnce, b"3")),
        Err(Dropped::QueueFull)
    );
    let mut out = Default::default();
    assert_eq!(mailbox.pop_into(&mut out, 10, 10), 2);
    let payloads: Vec<_> = out.iter().map(|d| d.message.payload().to_vec()).collect();
    assert_eq!(payloads, [&b"1"[..], &b"2"[..]], "oldest kept, in order");

    // Online: QoS 0 over the byte limit is dropped; the limit counts what a delivery really
    // holds, not only its payload.
    let one = delivery(QoS::AtMostOnce, b"abc").cost();
    let mailbox = Mailbox::new(limits(100, one + one / 2));
    mailbox.set_online(true);
    push(&mailbox, delivery(QoS::AtMostOnce, b"abc")).unwrap();
    assert_eq!(
        push(&mailbox, delivery(QoS::AtMostOnce, b"de")),
        Err(Dropped::QueueFull),
        "byte limit"
    );
}

/// Counts wake-ups.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);
impl GateWaker for Wakes {
    fn wake(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Pushes `d` for a publisher whose answer is tracked; returns the pending answer, if any.
fn push_tracked(
    mailbox: &Mailbox,
    d: Delivery,
    waker: &Arc<dyn GateWaker>,
) -> Option<Arc<Pending>> {
    let mut tickets = TicketSource::new(waker, 5);
    mailbox.push(d, &mut tickets).unwrap();
    tickets.finish()
}

#[test]
fn online_qos1_past_the_limit_is_kept_and_holds_the_answer_until_there_is_room() {
    let full = Mailbox::new(limits(1, 100_000));
    full.set_online(true);
    let wakes = Arc::new(Wakes::default());
    let waker: Arc<dyn GateWaker> = wakes.clone();
    assert!(
        push_tracked(&full, delivery(QoS::AtLeastOnce, b"1"), &waker).is_none(),
        "room: answered at once"
    );
    let held = push_tracked(&full, delivery(QoS::AtLeastOnce, b"2"), &waker)
        .expect("over the limit: held");
    assert_eq!(held.verdict(), None);
    assert_eq!(full.waiting_since(), Some(5));
    let mut out = Default::default();
    assert_eq!(full.pop_into(&mut out, 1, 1), 1);
    assert_eq!(held.verdict(), None, "still at the limit");
    assert_eq!(full.pop_into(&mut out, 1, 1), 1);
    assert_eq!(held.verdict(), Some(Verdict::Owned), "room appeared");
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(full.waiting_since(), None);
    // Going offline also answers (nothing would drain the queue); so does ending the session.
    push(&full, delivery(QoS::AtLeastOnce, b"3")).unwrap();
    let held = push_tracked(&full, delivery(QoS::AtLeastOnce, b"4"), &waker).unwrap();
    full.set_online(false);
    assert_eq!(held.verdict(), Some(Verdict::Owned));
    full.set_online(true);
    let held = push_tracked(&full, delivery(QoS::AtLeastOnce, b"5"), &waker).unwrap();
    full.close();
    assert_eq!(held.verdict(), Some(Verdict::Owned));
}

#[test]
fn dropping_qos0_makes_room_for_waiting_publishers() {
    let full = Mailbox::new(limits(2, 100_000));
    full.set_online(true);
    let waker: Arc<dyn GateWaker> = Arc::new(Wakes::default());
    push(&full, delivery(QoS::AtMostOnce, b"a")).unwrap();
    push(&full, delivery(QoS::AtLeastOnce, b"b")).unwrap();
    let held = push_tracked(&full, delivery(QoS::AtLeastOnce, b"c"), &waker).unwrap();
    assert_eq!(full.drop_qos0(), 1);
    assert_eq!(full.len(), 2);
    assert_eq!(held.verdict(), None, "two QoS 1 left: still full");
    let mut out = Default::default();
    full.pop_into(&mut out, 1, 1);
    assert_eq!(held.verdict(), Some(Verdict::Owned));
}

#[test]
fn an_owner_mailbox_gives_each_qos1_delivery_a_ticket() {
    let owner = Mailbox::new_owner(limits(10, 100_000));
    owner.set_online(true);
    let waker: Arc<dyn GateWaker> = Arc::new(Wakes::default());
    let pending = push_tracked(&owner, delivery(QoS::AtLeastOnce, b"x"), &waker).unwrap();
    assert!(push_tracked(&owner, delivery(QoS::AtMostOnce, b"y"), &waker).is_none());
    let mut out = std::collections::VecDeque::new();
    owner.pop_into(&mut out, 10, 10);
    let first = out.pop_front().unwrap();
    assert_eq!(pending.verdict(), None);
    first.ticket.expect("QoS 1 carries a ticket").owned();
    assert_eq!(pending.verdict(), Some(Verdict::Owned));
    assert!(out.pop_front().unwrap().ticket.is_none(), "QoS 0 does not");
    // An owner that goes away with undelivered messages refuses them.
    let pending = push_tracked(&owner, delivery(QoS::AtLeastOnce, b"z"), &waker).unwrap();
    owner.close();
    assert_eq!(pending.verdict(), Some(Verdict::Refused(0x80)));
}

#[test]
fn signals_reach_the_drainer_and_takeover_is_not_overwritten() {
    let mailbox = Mailbox::new(limits(10, 100_000));
    let (tx, _rx) = tokio::sync::oneshot::channel();
    mailbox.request_takeover(tx);
    mailbox.signal(Control::KeepAliveExpired);
    assert!(matches!(mailbox.take_control(), Some(Control::TakeOver(_))));
    assert!(mailbox.take_control().is_none());
}

#[test]
fn offline_mailbox_refuses_qos0_unless_configured() {
    let mailbox = Mailbox::new(limits(10, 100_000));
    assert_eq!(
        push(&mailbox, delivery(QoS::AtMostOnce, b"x")),
        Err(Dropped::OfflineQoS0)
    );
    push(&mailbox, delivery(QoS::AtLeastOnce, b"x")).unwrap();
    let mailbox = Mailbox::new(Arc::new(MailboxLimits {
        queue_qos0_offline: true,
        ..*limits(10, 100_000)
    }));
    push(&mailbox, delivery(QoS::AtMostOnce, b"x")).unwrap();
}

#[test]
fn pop_respects_inflight_room_but_lets_qos0_pass_in_order() {
    let mailbox = Mailbox::new(limits(10, 100_000));
    mailbox.set_online(true);
    push(&mailbox, delivery(QoS::AtMostOnce, b"a")).unwrap();
    push(&mailbox, delivery(QoS::AtLeastOnce, b"b")).unwrap();
    push(&mailbox, delivery(QoS::AtLeastOnce, b"c")).unwrap();
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
    let mailbox = Mailbox::new(limits(10, 100_000));
    push(&mailbox, delivery(QoS::AtLeastOnce, b"x")).unwrap();
    mailbox.close();
    assert!(mailbox.is_empty());
    assert_eq!(
        push(&mailbox, delivery(QoS::AtLeastOnce, b"x")),
        Err(Dropped::Closed)
    );
}
