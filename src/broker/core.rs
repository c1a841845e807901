//! The broker's shared state, behind a narrow API: what every kind of client (a socket
//! connection, an in-process client) calls to publish, subscribe, claim a client id and end a
//! session, and what the operator's side reads (a snapshot of the gauges).
//!
//! [`Core`] owns the router (trie and retained store), the client-id registry, the timer wheel
//! of offline sessions, the counters, and the broker's clock and shutdown token. It knows
//! nothing of sockets or of the wire format beyond the packet types it is handed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::registry::Registry;
use super::routing::Router;
use super::timers::{Fired, TimerKind, Timers};
use crate::auth::Auth;
use crate::config::{Config, SlowSubscriberPolicy};
use crate::gate::TicketSource;
use crate::metrics::stats::{DropReason, Stats};
use crate::metrics::{Gauges, Metrics};
use crate::protocol::{reason, topic, PublishProperties, SubscriptionOptions, Will};
use crate::router::parse_share;
use crate::session::mailbox::QueueJournal;
use crate::session::mailbox::{Control, Mailbox, MailboxLimits, Message, MessageParts, Subscriber};
use crate::session::{OutState, SessionState, SubEntry};
use crate::store::{SessionStore, StoreJournal};

/// How often the sweeper looks at every connection (keep alive, slow subscribers).
const SWEEP: Duration = Duration::from_millis(250);

/// Milliseconds since the broker started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Milliseconds elapsed since the broker started.
    pub fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds from the broker's start to `at`.
    pub fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the broker started.
    pub fn started(&self) -> Instant {
        self.0
    }
}

/// Lets at most a burst of log lines of one kind through per second, and says how many were
/// held back: a client flood of bad packets cannot flood the log.
#[derive(Debug, Default)]
pub struct LogLimiter {
    /// Second (broker clock) of the current window.
    window: AtomicU64,
    /// Lines in it.
    count: AtomicU64,
    /// Lines suppressed since the last one let through.
    suppressed: AtomicU64,
}

/// Lines a [`LogLimiter`] lets through per second.
const LOG_BURST: u64 = 10;

impl LogLimiter {
    /// `Some(suppressed so far)` when a line may be written now.
    pub fn allow(&self, now_ms: u64) -> Option<u64> {
        let second = now_ms / 1000;
        if self.window.swap(second, Ordering::Relaxed) != second {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < LOG_BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Why a subscription was refused; the reason code for SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// A `$share/...` filter with an empty share name, a wildcard in it, or no topic filter
    /// after it (MQTT-4.8.2-1, MQTT-4.8.2-2).
    ShareNameInvalid,
    /// Longer than `max_topic_length` or deeper than `max_topic_levels`.
    FilterInvalid,
    /// The client has `max_subscriptions_per_client` already.
    QuotaExceeded,
    /// The ACL does not allow it.
    NotAuthorized,
}

impl SubscribeRefusal {
    /// The SUBACK reason code (5.0; 3.1.1 clients get 0x80).
    pub fn reason_code(self) -> u8 {
        match self {
            SubscribeRefusal::ShareNameInvalid | SubscribeRefusal::FilterInvalid => {
                reason::TOPIC_FILTER_INVALID
            }
            SubscribeRefusal::QuotaExceeded => reason::QUOTA_EXCEEDED,
            SubscribeRefusal::NotAuthorized => reason::NOT_AUTHORIZED,
        }
    }
}

/// State shared by every client of one broker.
pub struct Core {
    config: Config,
    auth: Arc<Auth>,
    pub(super) router: Router,
    pub(super) registry: Registry,
    /// Where sessions live beyond memory (offline sessions; the disk store's journal).
    pub(super) store: Arc<dyn SessionStore>,
    /// The store as the journal of persistent sessions' mailboxes (durable stores only).
    pub(super) journal: Option<Arc<dyn QueueJournal>>,
    stats: Stats,
    metrics: Metrics,
    mailbox_limits: Arc<MailboxLimits>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    clock: Clock,
    timers: Timers,
    log_limiter: LogLimiter,
    last_accept_warning: AtomicU64,
    next_conn_id: AtomicU64,
}

impl Core {
    /// The shared state of a new broker; starts its timer task and sweeper on `tasks`.
    pub fn new(config: Config, store: Arc<dyn SessionStore>, auth: Arc<Auth>) -> Arc<Core> {
        let mailbox_limits = Arc::new(MailboxLimits {
            max_messages: config.mqtt.max_queued_messages,
            max_bytes: config.mqtt.max_queued_bytes,
            queue_qos0_offline: config.mqtt.queue_qos0_offline,
        });
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        Arc::new_cyclic(|weak: &Weak<Core>| {
            let on_fire = {
                let weak = weak.clone();
                move |fired: Fired| {
                    if let Some(core) = weak.upgrade() {
                        core.timer_fired(fired);
                    }
                }
            };
            let timers = Timers::start(
                shutdown.clone(),
                |task| {
                    tasks.spawn(task);
                },
                on_fire,
            );
            let journal: Option<Arc<dyn QueueJournal>> = store
                .durable()
                .then(|| Arc::new(StoreJournal(store.clone())) as Arc<dyn QueueJournal>);
            let router = match store.durable() {
                true => Router::journalled(store.clone()),
                false => Router::default(),
            }
            .with_strategy(config.mqtt.shared_subscription_strategy);
            Core {
                config,
                auth,
                router,
                registry: Registry::new(store.clone()),
                store,
                journal,
                stats: Stats::default(),
                metrics: Metrics::new(),
                mailbox_limits,
                shutdown,
                tasks,
                clock: Clock(Instant::now()),
                timers,
                log_limiter: LogLimiter::default(),
                last_accept_warning: AtomicU64::new(0),
                next_conn_id: AtomicU64::new(1),
            }
        })
    }

    /// The configuration the broker started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Authenticators and ACLs.
    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// Event counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The Prometheus registry (latency samples).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Client ids and sessions.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The broker's millisecond clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Cancelled when the broker begins to shut down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Every task of the broker, so shutdown can wait for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// A fresh, offline mailbox with the broker's queue limits.
    pub fn new_mailbox(&self) -> Arc<Mailbox> {
        Mailbox::new(self.mailbox_limits.clone())
    }

    /// A fresh mailbox for an in-process owner (its deliveries carry tickets).
    pub fn new_owner_mailbox(&self) -> Arc<Mailbox> {
        Mailbox::new_owner(self.mailbox_limits.clone())
    }

    /// A fresh owner mailbox whose No Local identity is `origin`.
    pub fn new_owner_mailbox_with_origin(&self, origin: u64) -> Arc<Mailbox> {
        Mailbox::new_owner_with_origin(self.mailbox_limits.clone(), origin)
    }

    /// A process-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The limiter of warnings about bad client input.
    pub fn log_limiter(&self) -> &LogLimiter {
        &self.log_limiter
    }

    /// True when a warning about failed accepts may be logged (at most once a minute).
    pub fn accept_warning_due(&self) -> bool {
        let now = self.clock.now_ms().max(1);
        let last = self.last_accept_warning.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 60_000 {
            return false;
        }
        self.last_accept_warning.store(now, Ordering::Relaxed);
        true
    }

    /// Entries of the offline-session timer wheel.
    pub fn pending_timers(&self) -> usize {
        self.timers.pending()
    }

    /// Routes `message` to every matching subscription (and the retained store), taking a
    /// ticket from `tickets` for every owner that must answer before the publisher is. Returns
    /// the number of sessions it matched.
    pub fn route(&self, message: Arc<Message>, tickets: &mut TicketSource<'_>) -> usize {
        self.router.publish(message, tickets, &self.stats)
    }

    /// Marks a session's mailbox online (a connection drains it) or offline, and tells the
    /// shared-subscription groups it is a member of (their picks prefer connected members).
    pub fn set_online(&self, mailbox: &Arc<Mailbox>, online: bool) {
        mailbox.set_online(online);
        self.router.connection_changed(&Subscriber(mailbox.clone()));
    }

    /// Subscribes `session` to `filter` (a valid filter, copied here: the decoded one slices
    /// the read buffer). `Ok(true)` when the subscription is new.
    pub fn subscribe(
        &self,
        session: &mut SessionState,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Result<bool, SubscribeRefusal> {
        if let Some(Err(error)) = parse_share(filter) {
            tracing::debug!(client_id = %session.client_id, filter, %error, "shared subscription refused");
            return Err(SubscribeRefusal::ShareNameInvalid);
        }
        if !self.topic_within_limits(filter) {
            return Err(SubscribeRefusal::FilterInvalid);
        }
        if !session.subscriptions.contains_key(filter)
            && session.subscriptions.len() >= self.config.mqtt.max_subscriptions_per_client
        {
            return Err(SubscribeRefusal::QuotaExceeded);
        }
        let entry = SubEntry { options, id };
        let subscriber = Subscriber(session.mailbox.clone());
        let is_new = self.router.subscribe(filter, subscriber, entry);
        session.subscriptions.insert(filter.into(), entry);
        self.journal_subscription(session, filter, Some(entry));
        session
            .mailbox
            .set_filter_count(session.subscriptions.len());
        Ok(is_new)
    }

    /// True when a topic name or filter is within the configured `max_topic_length` and
    /// `max_topic_levels`.
    pub fn topic_within_limits(&self, topic: &str) -> bool {
        let mqtt = &self.config.mqtt;
        topic::within_limits(topic, mqtt.max_topic_length, mqtt.max_topic_levels)
    }

    /// Removes `session`'s subscription to `filter`; true if it existed.
    pub fn unsubscribe(&self, session: &mut SessionState, filter: &str) -> bool {
        let existed = session.subscriptions.remove(filter).is_some();
        self.router
            .unsubscribe(filter, &Subscriber(session.mailbox.clone()));
        if existed {
            self.journal_subscription(session, filter, None);
        }
        session
            .mailbox
            .set_filter_count(session.subscriptions.len());
        existed
    }

    /// The unexpired retained messages matching `filter` (shared, not copied).
    pub fn retained(&self, filter: &str) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        self.router.retained(filter, &mut out);
        let now = Instant::now();
        out.retain(|m| !m.expired(now));
        out
    }

    /// Publishes a will message as if its client had published it; `origin` is the client's
    /// mailbox id (No Local). Nobody waits for an answer.
    pub fn publish_will(&self, will: Will, origin: u64) {
        let properties = PublishProperties {
            payload_format_indicator: will.properties.payload_format_indicator,
            message_expiry_interval: will.properties.message_expiry_interval,
            content_type: will.properties.content_type,
            response_topic: will.properties.response_topic,
            correlation_data: will.properties.correlation_data,
            user_properties: will.properties.user_properties,
            ..PublishProperties::default()
        };
        let message = Message::new(
            MessageParts {
                topic: &will.topic,
                payload: &will.payload,
                qos: will.qos,
                retain: will.retain && self.config.mqtt.retain_available,
                properties: &properties,
                origin,
                publisher: None,
            },
            Instant::now(),
        );
        tracing::debug!(topic = message.topic(), "publishing will");
        Stats::bump(&self.stats.wills_published);
        let mut tickets = TicketSource::none(self.clock.now_ms());
        self.route(Arc::new(message), &mut tickets);
    }

    /// Ends a session for good: its subscriptions leave the trie, its queue is dropped, its
    /// timers are cancelled, and a will still waiting for its delay is published (the
    /// session's end comes first, 5.0 section 3.1.3.2.2).
    pub fn end_session(&self, mut session: SessionState) {
        if let Some(will) = session.delayed_will.take() {
            self.publish_will(*will, session.mailbox.id());
        }
        let subscriber = Subscriber(session.mailbox.clone());
        self.router
            .unsubscribe_all(session.subscriptions.keys().map(|f| &**f), &subscriber);
        session.subscriptions.clear();
        let queued = session.mailbox.close_taking();
        // What shared subscriptions gave this session and it has not acknowledged goes to
        // another member of the group: in flight (not yet received: PUBREL not sent), then
        // queued, oldest first.
        let unacknowledged = session
            .outgoing
            .drain(..)
            .filter(|out| out.state != OutState::AwaitPubComp)
            .map(|out| out.delivery)
            .chain(queued)
            .filter(|delivery| delivery.share.is_some());
        let mut tickets = TicketSource::none(self.clock.now_ms());
        for mut delivery in unacknowledged {
            // The publisher's ticket, if any, stays with the session that took it.
            drop(delivery.ticket.take());
            self.router.redispatch(delivery, &mut tickets, &self.stats);
        }
    }

    /// Cancels the offline timers of `client_id` (its session was taken back).
    pub fn cancel_timers(&self, client_id: &str) {
        self.timers.cancel(client_id);
    }

    /// Arranges for the stored session of `client_id` to end after `expiry` seconds and its
    /// delayed will (if any) to be published after `will_delay` seconds, unless it is resumed.
    pub fn schedule_offline(
        &self,
        client_id: &str,
        generation: u64,
        expiry: u32,
        will_delay: Option<u32>,
    ) {
        if let Some(delay) = will_delay {
            self.timers.schedule(
                TimerKind::Will,
                client_id,
                generation,
                Duration::from_secs(delay.into()),
            );
        }
        if expiry != u32::MAX {
            self.timers.schedule(
                TimerKind::Expiry,
                client_id,
                generation,
                Duration::from_secs(expiry.into()),
            );
        }
    }

    fn timer_fired(&self, fired: Fired) {
        match fired.kind {
            TimerKind::Expiry => {
                if let Some(session) = self.registry.expire(&fired.client_id, fired.generation) {
                    tracing::debug!(client_id = %fired.client_id, "session expired");
                    Stats::bump(&self.stats.sessions_expired);
                    self.end_session(session);
                }
            }
            TimerKind::Will => {
                if let Some((will, origin, sid)) = self
                    .registry
                    .take_delayed_will(&fired.client_id, fired.generation)
                {
                    self.publish_will(*will, origin);
                    self.journal_will_done(sid);
                }
            }
        }
    }

    /// Shutdown, second half: with a memory store, the delayed wills of offline sessions are
    /// published now (their sessions end with the broker); a disk store keeps them (and their
    /// wills, still waiting) and commits what is queued.
    pub fn end_offline_sessions(&self) {
        if self.store.durable() {
            if let Err(error) = self.store.close() {
                tracing::error!(%error, "store: the last commit at shutdown failed");
            }
            return;
        }
        for mut session in self.registry.drain_offline() {
            if let Some(will) = session.delayed_will.take() {
                self.publish_will(*will, session.mailbox.id());
            }
        }
    }

    /// Every `SWEEP`: closes connections whose client has been silent for 1.5 × its keep
    /// alive or whose credentials expired, and makes slow subscribers pay once a publisher has waited for room in their
    /// queue longer than `slow_subscriber_timeout_ms`. One task for the whole broker instead of
    /// a timer per connection: idle connections stay small.
    pub async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let limit = self.config.mqtt.slow_subscriber_timeout_ms;
        let policy = self.config.mqtt.slow_subscriber;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = self.clock.now_ms();
            self.registry.for_each_online(|mailbox| {
                if mailbox.keep_alive_expired(now) {
                    mailbox.signal(Control::KeepAliveExpired);
                } else if mailbox.credentials_expired(now) {
                    mailbox.signal(Control::CredentialsExpired);
                }
                let Some(since) = mailbox.waiting_since() else {
                    return;
                };
                if now.saturating_sub(since) < limit {
                    return;
                }
                if policy == SlowSubscriberPolicy::DropQos0 {
                    let dropped = mailbox.drop_qos0();
                    for _ in 0..dropped {
                        self.stats.dropped(DropReason::SlowSubscriber, 0);
                    }
                    if mailbox.waiting_since().is_none() {
                        return;
                    }
                }
                mailbox.signal(Control::SlowSubscriber);
            });
        }
    }

    /// Gauges read from the broker's structures now.
    pub fn gauges(&self) -> Gauges {
        let sessions = self.registry.session_count();
        let offline = self.registry.offline_count();
        Gauges {
            online: sessions.saturating_sub(offline),
            offline,
            subscriptions: self.router.subscription_count(),
            retained: self.router.retained_count(),
            inflight: self.registry.sum_mailboxes(|m| m.inflight()),
            queued: self.registry.sum_mailboxes(|m| m.len()),
            queued_bytes: self.registry.sum_mailboxes(|m| m.bytes()),
            store: self.store.figures(),
        }
    }

    /// The Prometheus text exposition of the broker's current state.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(
            &self.stats.snapshot(),
            &self.gauges(),
            self.clock.started().elapsed(),
        )
    }

    /// Number of subscriptions in the trie.
    pub fn subscription_count(&self) -> usize {
        self.router.subscription_count()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.router.retained_count()
    }
}

impl crate::metrics::http::Endpoints for Core {
    fn metrics(&self) -> String {
        self.render_metrics()
    }

    fn ready(&self) -> bool {
        !self.shutdown.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn the_log_limiter_lets_a_burst_through_per_second_and_counts_the_rest() {
        let limiter = LogLimiter::default();
        let allowed = (0..100).filter(|_| limiter.allow(5_000).is_some()).count();
        assert_eq!(allowed, 10);
        // The next second: allowed again, and told how many were held back.
        assert_eq!(limiter.allow(6_000), Some(90));
        assert_eq!(limiter.allow(6_001), Some(0));
    }
}
