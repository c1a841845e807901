//! The tokio runtime the binary runs on.
//!
//! Multi-threaded with the LIFO slot off: with it, a worker runs the task woken last first,
//! so of two connections whose input arrived together (B's SUBSCRIBE, then A's PUBLISH) the
//! later one was handled first and B missed A's message. Without it, tasks woken together run
//! in the order they were woken. `Builder::disable_lifo_slot` is behind `--cfg tokio_unstable`
//! (set in `.cargo/config.toml`).

use std::io;

/// A multi-threaded runtime with `workers` worker threads and the LIFO slot off.
pub fn multi_thread(workers: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers.max(1)).enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

/// A single-threaded runtime (for one CPU: the same work without the multi-threaded
/// scheduler's bookkeeping).
pub fn current_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
