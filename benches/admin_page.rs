//! A page of the admin API's subscription listing among 100,000 subscriptions: the ordered walk
//! of the trie that stops after the page (`SubscriptionTrie::walk_ordered`, what the broker
//! does) against its peer in the same run, the pass over every subscription that keeps the
//! page's smallest keys in a heap (what the broker did before).
//!
//! Run: `cargo bench --bench admin_page`.

#[path = "support/rss.rs"]
mod rss;
use rss::rss;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;

use criterion::{criterion_group, criterion_main, Criterion};
use warren::router::SubscriptionTrie;

/// 100,000 devices, each subscribed to its own command topic: one node with 100,000 children.
fn flat() -> SubscriptionTrie<u64, u8> {
    let mut trie = SubscriptionTrie::new();
    for device in 0..100_000u64 {
        trie.subscribe(&format!("devices/{device}/commands/#"), device, 1);
    }
    trie
}

/// 100,000 filters over three levels of 10, 100 and 100 (`s7/r42/d99`), one subscriber each.
fn nested() -> SubscriptionTrie<u64, u8> {
    let mut trie = SubscriptionTrie::new();
    let mut id = 0;
    for site in 0..10 {
        for room in 0..100 {
            for device in 0..100 {
                trie.subscribe(&format!("s{site}/r{room}/d{device}"), id, 1);
                id += 1;
            }
        }
    }
    trie
}

/// The walk: the first `limit` rows after `after`.
fn walk(trie: &SubscriptionTrie<u64, u8>, after: Option<(&str, u64)>, limit: usize) -> usize {
    let mut rows: Vec<(Box<str>, u64, u8)> = Vec::new();
    trie.walk_ordered(
        "",
        after,
        |s| *s,
        |f, s, v| {
            rows.push((f.into(), *s, *v));
            match rows.len() < limit {
                true => ControlFlow::Continue(()),
                false => ControlFlow::Break(()),
            }
        },
    );
    rows.len()
}

/// The peer: every subscription visited, the `limit` smallest keys after `after` kept in a
/// max-heap, only those copied.
fn pass(trie: &SubscriptionTrie<u64, u8>, after: Option<(&str, u64)>, limit: usize) -> usize {
    let mut heap: BinaryHeap<(Box<str>, u64, u8)> = BinaryHeap::with_capacity(limit);
    trie.for_each(|f, s, v| {
        if after.is_some_and(|a| (f, *s) <= a) {
            return;
        }
        if heap.len() < limit {
            heap.push((f.into(), *s, *v));
        } else if heap.peek().is_some_and(|top| (f, *s) < (&*top.0, top.1)) {
            heap.pop();
            heap.push((f.into(), *s, *v));
        }
    });
    heap.into_sorted_vec().len()
}

/// Memory per subscription of the broker's index by (session, filter), against the trie's
/// in the same process (the flat layout; RSS growth, so rough): printed once.
fn memory() {
    use std::collections::BTreeMap;
    use warren::session::SubEntry;
    let before = rss();
    let mut index: BTreeMap<(u64, Box<str>), SubEntry> = BTreeMap::new();
    for device in 0..100_000u64 {
        let filter = format!("devices/{device}/commands/#");
        let entry = SubEntry {
            options: Default::default(),
            id: None,
        };
        index.insert((device, filter.into()), entry);
    }
    let index_bytes = rss().saturating_sub(before);
    let before = rss();
    let trie = flat();
    let trie_bytes = rss().saturating_sub(before);
    println!(
        "memory, 100k subscriptions `devices/N/commands/#`: index by (session, filter) {} bytes \
         each, trie {} bytes each",
        index_bytes / 100_000,
        trie_bytes / 100_000
    );
    std::hint::black_box((index.len(), trie.len()));
}

fn pages(c: &mut Criterion) {
    memory();
    for (name, trie, middle) in [
        ("flat", flat(), ("devices/50000/commands/#", 50_000)),
        ("nested", nested(), ("s5/r50/d50", 55_050)),
    ] {
        let mut group = c.benchmark_group(format!("subscriptions page, 100k {name}"));
        group.sample_size(20);
        group.measurement_time(std::time::Duration::from_secs(2));
        group.warm_up_time(std::time::Duration::from_millis(500));
        for (label, after, limit) in [
            ("first 100", None, 100),
            ("100 from the middle", Some(middle), 100),
            ("first 10000", None, 10_000),
        ] {
            group.bench_function(format!("walk, {label}"), |b| {
                b.iter(|| walk(&trie, std::hint::black_box(after), limit))
            });
            group.bench_function(format!("pass, {label}"), |b| {
                b.iter(|| pass(&trie, std::hint::black_box(after), limit))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, pages);
criterion_main!(benches);
