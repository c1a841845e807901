//! ACL micro-benchmark: what one uncached check costs against a 1,000-rule ACL file (a cache
//! miss: a client's first publish to a topic, or a SUBSCRIBE). Cached checks are a hash lookup
//! per publish; `scripts/bench acl` measures fan-in throughput with and without such a file.
//!
//! Run: `cargo bench --bench acl`.

use criterion::{criterion_group, criterion_main, Criterion};
use warren::auth::acl::{may_subscribe, may_write, AclFile, Who};

fn file() -> AclFile {
    let mut text = String::new();
    for i in 1..1000 {
        text.push_str(&format!("topic readwrite fleet/{i}/+/telemetry\n"));
    }
    text.push_str("topic readwrite bench/#\npattern readwrite devices/%c/#\n");
    AclFile::parse(&text).expect("valid ACL")
}

fn checks(c: &mut Criterion) {
    let acl = file();
    let rules = acl.rules_for(None);
    let patterns = acl.patterns().clone();
    let sets: [&[_]; 2] = [&rules, &patterns];
    let who = Who {
        client_id: "dev-42",
        username: None,
    };
    let mut group = c.benchmark_group("acl, 1,000 rules, uncached");
    group.bench_function("publish allowed by the last rule", |b| {
        b.iter(|| may_write(&sets, std::hint::black_box("bench/7"), &who))
    });
    group.bench_function("publish refused", |b| {
        b.iter(|| may_write(&sets, std::hint::black_box("other/7/x"), &who))
    });
    group.bench_function("subscribe with a pattern", |b| {
        b.iter(|| may_subscribe(&sets, std::hint::black_box("devices/dev-42/#"), &who))
    });
    group.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
