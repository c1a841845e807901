//! Ordering of the window under confirms, nacks, stale confirms and channel loss.

use super::*;

fn sent(o: &mut Outbox<&'static str>) -> Vec<(u64, u32)> {
    std::iter::from_fn(|| o.next_to_send().map(|(s, a, _)| (s, a))).collect()
}

fn popped(o: &mut Outbox<&'static str>) -> Vec<u64> {
    std::iter::from_fn(|| o.pop_done().map(|(s, _)| s)).collect()
}

fn filled(n: u64) -> Outbox<&'static str> {
    let mut o = Outbox::new();
    for s in 1..=n {
        o.push(s, "m");
    }
    o
}

#[test]
fn completes_in_order_even_when_confirms_come_out_of_order() {
    let mut o = filled(3);
    assert_eq!(sent(&mut o), vec![(1, 0), (2, 0), (3, 0)]);
    assert_eq!(o.in_flight(), 3);
    assert!(o.settle(2, 0, Target::Primary));
    o.done(2);
    assert!(popped(&mut o).is_empty());
    assert!(o.settle(1, 0, Target::Primary));
    o.done(1);
    assert_eq!(popped(&mut o), vec![1, 2]);
    assert!(o.settle(3, 0, Target::Primary));
    o.done(3);
    assert_eq!(popped(&mut o), vec![3]);
    assert_eq!((o.len(), o.in_flight()), (0, 0));
}

#[test]
fn a_nack_resends_it_and_everything_sent_after_it() {
    let mut o = filled(4);
    sent(&mut o);
    assert!(o.settle(3, 0, Target::Primary));
    o.done(3);
    assert!(o.settle(2, 0, Target::Primary));
    assert_eq!(
        o.rewind_from(2),
        3,
        "2 (nacked), 3 (done) and 4 (in flight)"
    );
    assert_eq!(o.in_flight(), 1, "only 1 is still in flight");
    // The old confirm for 4 is stale now.
    assert!(!o.settle(4, 0, Target::Primary));
    assert_eq!(sent(&mut o), vec![(2, 1), (3, 1), (4, 1)]);
    assert!(o.settle(1, 0, Target::Primary));
    o.done(1);
    assert_eq!(popped(&mut o), vec![1]);
}

#[test]
fn losing_the_channel_resends_what_was_in_flight_only() {
    let mut o = filled(4);
    sent(&mut o);
    assert!(o.settle(1, 0, Target::Primary));
    o.done(1);
    assert!(o.settle(3, 0, Target::Primary));
    o.done(3);
    assert_eq!(o.rewind_all(), 2);
    assert_eq!(o.in_flight(), 0);
    assert_eq!(sent(&mut o), vec![(2, 1), (4, 1)]);
    assert!(!o.settle(2, 0, Target::Primary), "stale");
    assert!(o.settle(2, 1, Target::Primary));
    o.done(2);
    assert_eq!(popped(&mut o), vec![1, 2, 3]);
}

#[test]
fn dead_letters_complete_in_place() {
    let mut o = filled(3);
    sent(&mut o);
    assert!(o.settle(1, 0, Target::Primary));
    o.dead_lettering(1);
    for s in [2, 3] {
        assert!(o.settle(s, 0, Target::Primary));
        o.done(s);
    }
    assert!(popped(&mut o).is_empty(), "1 is still being dead-lettered");
    o.done(1);
    assert_eq!(popped(&mut o), vec![1, 2, 3]);

    let mut o = filled(2);
    sent(&mut o);
    assert!(o.settle(1, 0, Target::Primary));
    let (attempt, _) = o.send_dead_letter(1).unwrap();
    assert!(!o.settle(1, attempt, Target::Primary));
    assert!(o.settle(1, attempt, Target::DeadLetter));
    o.done(1);
    assert_eq!(popped(&mut o), vec![1]);
}

#[test]
fn new_messages_queue_behind_a_rewind() {
    let mut o = filled(2);
    sent(&mut o);
    o.rewind_all();
    o.push(3, "m");
    assert_eq!(sent(&mut o), vec![(1, 1), (2, 1), (3, 0)]);
}

#[test]
fn slots_are_found_with_and_without_gaps_in_sequence_numbers() {
    let mut o = Outbox::new();
    for (s, m) in [(3, "a"), (4, "b"), (5, "c"), (9, "d"), (12, "e")] {
        o.push(s, m);
    }
    for (s, m) in [(3, "a"), (4, "b"), (5, "c"), (9, "d"), (12, "e")] {
        assert_eq!(o.get(s), Some(&m), "{s}");
    }
    for missing in [0, 2, 6, 8, 10, 13, u64::MAX] {
        assert_eq!(o.get(missing), None, "{missing}");
    }
    // After the front goes, offsets count from the new front.
    assert_eq!(sent(&mut o).len(), 5);
    assert!(o.settle(3, 0, Target::Primary));
    o.done(3);
    assert_eq!(popped(&mut o), vec![3]);
    assert_eq!(
        (o.get(4), o.get(12), o.get(3)),
        (Some(&"b"), Some(&"e"), None)
    );
}
