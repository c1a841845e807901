//! Shared test tables and proptest strategies for the router's unit tests.

use proptest::prelude::*;

/// (filter, topic, expected)
pub(crate) const CASES: &[(&str, &str, bool)] = &[
    ("a", "a", true),
    ("a", "b", false),
    ("a/b", "a/b", true),
    ("a/b", "a", false),
    ("a", "a/b", false),
    ("a/+", "a/b", true),
    ("a/+", "a/b/c", false),
    ("a/+", "a", false),
    ("a/+", "a/", true),
    ("+", "a", true),
    ("+", "", true),
    ("+", "/", false),
    ("+/+", "/", true),
    ("/+", "/", true),
    ("+/", "/", true),
    ("/+", "/a", true),
    ("+", "/a", false),
    ("#", "a", true),
    ("#", "/", true),
    ("#", "a/b/c", true),
    ("#", "", true),
    ("sport/#", "sport", true),
    ("sport/#", "sport/", true),
    ("sport/#", "sport/tennis/player1", true),
    ("sport/#", "sports", false),
    ("sport/tennis/#", "sport", false),
    ("sport/+/player1", "sport/tennis/player1", true),
    ("sport/+/player1", "sport//player1", true),
    ("sport/+/player1", "sport/tennis/player2", false),
    ("+/+/#", "a", false),
    ("+/+/#", "a/b", true),
    ("a//b", "a//b", true),
    ("a//b", "a/b", false),
    ("a/+/b", "a//b", true),
    ("/a", "/a", true),
    ("/a", "a", false),
    ("$SYS/#", "$SYS/x", true),
    ("$SYS/#", "$SYS", true),
    ("$SYS/+", "$SYS/x", true),
    ("#", "$SYS/x", false),
    ("#", "$SYS", false),
    ("+/x", "$SYS/x", false),
    ("+", "$SYS", false),
    ("+/#", "$SYS/x", false),
    ("$SYS/x", "$SYS/x", true),
    ("a/$SYS", "a/$SYS", true),
    ("a/+", "a/$SYS", true),
    ("a/#", "a/$SYS", true),
    // Invalid filters never panic; a non-final `#` is a literal level.
    ("a/#/b", "a/x/b", false),
    ("a/#/b", "a/#/b", true),
    ("", "", true),
    ("", "a", false),
];

/// Levels topic names are built from: few enough that random filters often match.
const TOPIC_LEVELS: &[&str] = &["", "$SYS", "a", "b"];

/// Levels filters are built from, before an optional final `#`.
const FILTER_LEVELS: &[&str] = &["", "$SYS", "a", "b", "+"];

/// A random topic name of 1 to 4 levels.
pub(crate) fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..=4).prop_map(|l| l.join("/"))
}

/// A random valid topic filter: 0 to 4 levels and an optional final `#` (at least one level).
pub(crate) fn filter() -> impl Strategy<Value = String> {
    filter_of(FILTER_LEVELS)
}

/// A random valid topic filter of up to 4 of `levels` and an optional final `#` (at least one
/// level).
pub(crate) fn filter_of(levels: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(levels), 0..=4),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
}

/// Levels of the deep-input tests: far past any limit, so recursion per level would overflow.
pub(crate) const DEEP: usize = 100_000;

/// `n` copies of `level` joined by `/`.
pub(crate) fn repeat_level(level: &str, n: usize) -> String {
    vec![level; n].join("/")
}

/// Runs `f` on a thread with a 128 KiB stack: a walk that recursed once per level of a
/// [`DEEP`] topic would overflow it (and abort the test binary) instead of passing.
pub(crate) fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new()
        .name("small-stack".into())
        .stack_size(128 * 1024)
        .spawn(f)
        .expect("spawn");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
