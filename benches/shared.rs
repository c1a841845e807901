//! Shared-subscription micro-benchmarks: a member joining and leaving a group, and the choice
//! of the member that receives a message, in groups of 100, 10,000 and 50,000 members. What
//! matters is the scaling: the same operation's time in the large groups against the group of
//! 100 (the machine is shared, so absolute times are noisy).
//!
//! Run: `cargo bench --bench shared`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use warren::router::shared::Group;
use warren::router::{ShareStrategy, SharedSubscriptions};

const SIZES: [u32; 3] = [100, 10_000, 50_000];

/// A group `g` of `jobs/#` with `n` members, all or none of them connected.
fn group(n: u32, connected: bool) -> SharedSubscriptions<u32, u8> {
    let mut shared = SharedSubscriptions::default();
    for member in 0..n {
        shared.subscribe("g", "jobs/#", member, 1, connected);
    }
    shared
}

/// The group as a publish on `jobs/1` finds it.
fn held(shared: &SharedSubscriptions<u32, u8>) -> Arc<Group<u32, u8>> {
    let mut out = Vec::new();
    shared.matches("jobs/1", &mut out);
    out.pop().expect("the group matches")
}

fn join_leave(c: &mut Criterion) {
    let mut bench = c.benchmark_group("shared join + leave");
    for n in SIZES {
        let mut shared = group(n, false);
        // Members leave and come back in turn, so that every position is exercised.
        let mut next = 0u32;
        bench.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                let member = next % n;
                next = next.wrapping_add(7919);
                assert!(shared.unsubscribe("g", "jobs/#", &member));
                assert!(shared.subscribe("g", "jobs/#", member, 1, false));
            })
        });
    }
    bench.finish();
}

fn pick(c: &mut Criterion) {
    for (name, connected) in [("none connected", false), ("all connected", true)] {
        let mut bench = c.benchmark_group(format!("shared pick, {name}"));
        for n in SIZES {
            let shared = group(n, connected);
            let group = held(&shared);
            bench.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    // Opaque, as a connection state read is: the scan is not optimised away.
                    let chosen = group.pick(ShareStrategy::RoundRobin, "jobs/1", None, |_| {
                        std::hint::black_box(connected)
                    });
                    std::hint::black_box(chosen.map(|(m, _)| *m))
                })
            });
        }
        bench.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = join_leave, pick
}
criterion_main!(benches);
