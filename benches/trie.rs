//! Subscription trie micro-benchmarks: matching a topic among many subscriptions.
//!
//! Run: `cargo bench --bench trie`.

use criterion::{criterion_group, criterion_main, Criterion};
use warren::router::SubscriptionTrie;

/// 10,000 devices, each subscribed to its own command topic, plus a few wildcard consumers.
fn fleet() -> SubscriptionTrie<u32, u8> {
    let mut trie = SubscriptionTrie::new();
    for device in 0..10_000u32 {
        trie.subscribe(&format!("devices/{device}/commands/#"), device, 1);
    }
    trie.subscribe("devices/+/telemetry", 100_000, 0);
    trie.subscribe("devices/#", 100_001, 0);
    trie.subscribe("$SYS/#", 100_002, 0);
    trie
}

fn matching(c: &mut Criterion) {
    let trie = fleet();
    let mut out = Vec::with_capacity(16);
    let mut group = c.benchmark_group("trie match");
    group.bench_function("telemetry topic, 10k subscriptions", |b| {
        b.iter(|| {
            out.clear();
            trie.matches(std::hint::black_box("devices/4711/telemetry"), &mut out);
            std::hint::black_box(out.len())
        })
    });
    group.bench_function("command topic, 10k subscriptions", |b| {
        b.iter(|| {
            out.clear();
            trie.matches(
                std::hint::black_box("devices/4711/commands/reboot"),
                &mut out,
            );
            std::hint::black_box(out.len())
        })
    });
    group.bench_function("no match", |b| {
        b.iter(|| {
            out.clear();
            trie.matches(std::hint::black_box("other/thing"), &mut out);
            std::hint::black_box(out.len())
        })
    });
    group.finish();
}

fn subscribe(c: &mut Criterion) {
    c.bench_function("trie subscribe + unsubscribe", |b| {
        let mut trie = fleet();
        b.iter(|| {
            trie.subscribe("devices/99999/commands/#", 99_999, 1);
            trie.unsubscribe("devices/99999/commands/#", &99_999);
        })
    });
}

criterion_group!(benches, matching, subscribe);
criterion_main!(benches);
