//! Router micro-benchmarks: matching a topic among many subscriptions (the trie), and a filter
//! among many retained topics (the retained store).
//!
//! Run: `cargo bench --bench trie`.

#[path = "support/rss.rs"]
mod rss;
use criterion::{criterion_group, criterion_main, Criterion};
use rss::rss;
use warren::router::{RetainedStore, SubscriptionTrie};

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

/// Filters where a topic meets both a literal and a `+` child at every level: the walk branches.
fn branching() -> SubscriptionTrie<u32, u8> {
    let mut trie = SubscriptionTrie::new();
    let levels = ["a", "b", "c", "d", "e", "f"];
    for mask in 0u32..64 {
        let filter: Vec<&str> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| if mask & (1 << i) != 0 { "+" } else { *l })
            .collect();
        trie.subscribe(&filter.join("/"), mask, 0);
    }
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
    let branching = branching();
    let mut out = Vec::with_capacity(64);
    group.bench_function("64 wildcard filters, all match", |b| {
        b.iter(|| {
            out.clear();
            branching.matches(std::hint::black_box("a/b/c/d/e/f"), &mut out);
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

/// 10,000 retained device states.
fn retained_fleet() -> RetainedStore<u32> {
    let mut store = RetainedStore::new();
    for device in 0..10_000u32 {
        store.insert(&format!("devices/{device}/status"), device);
    }
    store
}

/// Memory per retained topic of the retained store (RSS growth, so rough): printed once.
fn retained_memory() {
    let before = rss();
    let mut store = RetainedStore::new();
    for device in 0..100_000u32 {
        store.insert(&format!("devices/{device}/status"), device);
    }
    println!(
        "memory, 100k retained topics `devices/N/status`: {} bytes each",
        rss().saturating_sub(before) / 100_000
    );
    std::hint::black_box(store.len());
}

fn retained(c: &mut Criterion) {
    retained_memory();
    let store = retained_fleet();
    let mut out = Vec::with_capacity(10_000);
    let mut group = c.benchmark_group("retained match");
    group.bench_function("literal filter, 10k topics", |b| {
        b.iter(|| {
            out.clear();
            store.matching(std::hint::black_box("devices/4711/status"), &mut out);
            std::hint::black_box(out.len())
        })
    });
    group.bench_function("devices/+/status, 10k topics", |b| {
        b.iter(|| {
            out.clear();
            store.matching(std::hint::black_box("devices/+/status"), &mut out);
            std::hint::black_box(out.len())
        })
    });
    group.bench_function("devices/#, 10k topics", |b| {
        b.iter(|| {
            out.clear();
            store.matching(std::hint::black_box("devices/#"), &mut out);
            std::hint::black_box(out.len())
        })
    });
    group.finish();
    c.bench_function("retained insert + remove", |b| {
        let mut store = retained_fleet();
        b.iter(|| {
            store.insert("devices/99999/status", 1);
            store.remove("devices/99999/status");
        })
    });
}

criterion_group!(benches, matching, subscribe, retained);
criterion_main!(benches);
