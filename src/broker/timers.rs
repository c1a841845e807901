//! The broker's one timer wheel for offline sessions: session expiry and delayed wills.
//!
//! A session that outlives its connection gets at most one entry of each kind, keyed by client id;
//! a resumed session cancels its entries, so a device reconnecting every 30 s with a one-day
//! expiry keeps one entry, not thousands of sleeping tasks. One task owns a tokio-util
//! [`DelayQueue`]; the rest of the broker talks to it through an unbounded channel of small
//! commands (scheduling never waits). When an entry fires, the task hands `(kind, client id,
//! generation)` to the broker's callback, which checks the generation against the registry, so
//! an entry that raced with a resumption does nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// End the offline session.
    Expiry,
    /// Publish the session's delayed will.
    Will,
}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// What it was for.
    pub kind: TimerKind,
    /// Whose session.
    pub client_id: Box<str>,
    /// The session's generation when it was scheduled.
    pub generation: u64,
}

enum Command {
    Schedule(Fired, Duration),
    Cancel(Box<str>),
}

/// The handle the broker schedules and cancels through.
#[derive(Debug, Clone)]
pub struct Timers {
    tx: mpsc::UnboundedSender<Command>,
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Schedule(fired, delay) => write!(f, "Schedule({fired:?}, {delay:?})"),
            Command::Cancel(id) => write!(f, "Cancel({id})"),
        }
    }
}

impl Timers {
    /// Starts the timer task; `on_fire` runs (on that task) for every entry that fires, until
    /// `stop` is cancelled.
    pub fn start(
        stop: CancellationToken,
        spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
        on_fire: impl Fn(Fired) + Send + 'static,
    ) -> Timers {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        spawn(Box::pin(run(rx, stop, pending.clone(), on_fire)));
        Timers { tx, pending }
    }

    /// Fires `kind` for `client_id` after `delay`, replacing an entry of the same kind.
    pub fn schedule(&self, kind: TimerKind, client_id: &str, generation: u64, delay: Duration) {
        let fired = Fired {
            kind,
            client_id: client_id.into(),
            generation,
        };
        let _ = self.tx.send(Command::Schedule(fired, delay));
    }

    /// Cancels every entry of `client_id` (its session was resumed or ended).
    pub fn cancel(&self, client_id: &str) {
        let _ = self.tx.send(Command::Cancel(client_id.into()));
    }

    /// Entries waiting to fire (as of the timer task's last command).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
    pending: Arc<AtomicUsize>,
    on_fire: impl Fn(Fired),
) {
    let mut queue: DelayQueue<Fired> = DelayQueue::new();
    let mut keys: HashMap<(Box<str>, TimerKind), delay_queue::Key> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            command = rx.recv() => match command {
                None => return,
                Some(Command::Schedule(fired, delay)) => {
                    let slot = (fired.client_id.clone(), fired.kind);
                    if let Some(old) = keys.remove(&slot) {
                        queue.remove(&old);
                    }
                    keys.insert(slot, queue.insert(fired, delay));
                }
                Some(Command::Cancel(client_id)) => {
                    for kind in [TimerKind::Expiry, TimerKind::Will] {
                        if let Some(key) = keys.remove(&(client_id.clone(), kind)) {
                            queue.remove(&key);
                        }
                    }
                }
            },
            Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                let fired = expired.into_inner();
                keys.remove(&(fired.client_id.clone(), fired.kind));
                on_fire(fired);
            }
        }
        pending.store(keys.len(), Ordering::Relaxed);
        if keys.is_empty() && keys.capacity() > 64 {
            keys = HashMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn fires_replaces_and_cancels() {
        let stop = CancellationToken::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let sink = fired.clone();
        let timers = Timers::start(
            stop.clone(),
            |f| {
                tokio::spawn(f);
            },
            move |f| {
                sink.lock()
                    .unwrap()
                    .push((f.kind, f.client_id.to_string(), f.generation))
            },
        );
        timers.schedule(TimerKind::Expiry, "a", 1, Duration::from_secs(10));
        timers.schedule(TimerKind::Expiry, "a", 2, Duration::from_secs(20)); // replaces
        timers.schedule(TimerKind::Will, "b", 3, Duration::from_secs(5));
        timers.schedule(TimerKind::Expiry, "c", 4, Duration::from_secs(5));
        timers.cancel("c");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(timers.pending(), 2);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            *fired.lock().unwrap(),
            vec![
                (TimerKind::Will, "b".to_owned(), 3),
                (TimerKind::Expiry, "a".to_owned(), 2)
            ]
        );
        assert_eq!(timers.pending(), 0);
        stop.cancel();
    }
}
