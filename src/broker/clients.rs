//! What the operator sees of clients and sessions: the narrow query API the admin HTTP API
//! ([`crate::admin`]) reads, and the few actions it may take (kick a client, delete an offline
//! session, delete a retained message).
//!
//! A connected client's [`ClientInfo`] is made once at CONNECT and kept in its registry slot;
//! only its two byte counters change afterwards (once per read or write, not per message).
//! Listing takes the registry's lock for one pass that copies out at most a page of rows
//! (client ids compared in place, nothing allocated for the rows left out); no lock is held
//! while the answer is written. Publishing never takes the registry's lock, so a listing does
//! not hold up the message path; connects and disconnects wait for the pass (about a
//! millisecond at 20,000 sessions).

use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::core::Core;
use crate::protocol::ProtocolVersion;
use crate::session::mailbox::{Control, Message};
use crate::session::SubEntry;

/// A connected client, as it CONNECTed.
#[derive(Debug)]
pub struct ClientInfo {
    /// User name from CONNECT, if any.
    pub username: Option<Box<str>>,
    /// Listener it came in on.
    pub listener: Arc<str>,
    /// Client address (after the PROXY protocol, when the listener uses it).
    pub peer: SocketAddr,
    /// The protocol level it speaks (one byte here; [`ProtocolVersion::label`] for the text).
    pub protocol: ProtocolVersion,
    /// Keep alive in force, seconds (0: none).
    pub keep_alive: u16,
    /// Session expiry interval in force, seconds.
    pub session_expiry: u32,
    /// Clean start / clean session flag of its CONNECT.
    pub clean_start: bool,
    /// When it connected, milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl ClientInfo {
    /// A client that connects now.
    pub fn new(
        username: Option<&str>,
        listener: Arc<str>,
        peer: SocketAddr,
        protocol: ProtocolVersion,
        keep_alive: u16,
        session_expiry: u32,
        clean_start: bool,
    ) -> ClientInfo {
        let connected_at_ms = crate::wall::unix_ms();
        ClientInfo {
            username: username.map(Into::into),
            listener,
            peer,
            protocol,
            keep_alive,
            session_expiry,
            clean_start,
            connected_at_ms,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Counts bytes read from the client.
    pub fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes written to the client.
    pub fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes written to the client so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

/// One session as a listing shows it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Client id.
    pub client_id: Box<str>,
    /// Connection details while connected; `None` for an offline session.
    pub client: Option<Arc<ClientInfo>>,
    /// Messages waiting in its queue.
    pub queued: usize,
    /// Bytes those messages hold.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Topic filters it subscribes to.
    pub subscriptions: usize,
    /// Its mailbox's id (matches [`SubscriptionRow::mailbox`]).
    pub(crate) mailbox: u64,
}

/// Which sessions a listing wants.
#[derive(Debug, Default, Clone)]
pub struct SessionQuery {
    /// Only client ids after this one (the cursor of the previous page).
    pub after: Option<String>,
    /// Only client ids starting with this.
    pub prefix: Option<String>,
    /// Only connected clients with this user name.
    pub username: Option<String>,
    /// Only connected clients of this listener.
    pub listener: Option<String>,
    /// Only connected clients whose address (`ip` or `ip:port`) starts with this.
    pub address: Option<String>,
    /// Connected clients only.
    pub online_only: bool,
    /// Rows wanted (at least 1).
    pub limit: usize,
}

impl SessionQuery {
    fn wants(&self, client_id: &str, client: Option<&ClientInfo>) -> bool {
        if self
            .after
            .as_deref()
            .is_some_and(|after| client_id <= after)
        {
            return false;
        }
        if self
            .prefix
            .as_deref()
            .is_some_and(|p| !client_id.starts_with(p))
        {
            return false;
        }
        let needs_client = self.online_only
            || self.username.is_some()
            || self.listener.is_some()
            || self.address.is_some();
        let Some(client) = client else {
            return !needs_client;
        };
        if let Some(user) = &self.username {
            if client.username.as_deref() != Some(user.as_str()) {
                return false;
            }
        }
        if let Some(listener) = &self.listener {
            if &*client.listener != listener.as_str() {
                return false;
            }
        }
        if let Some(address) = &self.address {
            // Compared without formatting: the address's text is made only for candidates.
            let text = client.peer.to_string();
            if !text.starts_with(address.as_str()) {
                return false;
            }
        }
        true
    }
}

/// One subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    /// Topic filter.
    pub filter: Box<str>,
    /// The subscribing session's mailbox id (the registry maps it to a client id).
    pub(crate) mailbox: u64,
    /// Options and identifier.
    pub entry: SubEntry,
}

/// Where a page of subscriptions ends: its last row's filter and session. Its text form
/// (`MAILBOX:FILTER`) is the `next` / `after` of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCursor {
    filter: String,
    mailbox: u64,
}

impl std::fmt::Display for SubscriptionCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.mailbox, self.filter)
    }
}

impl std::str::FromStr for SubscriptionCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (mailbox, filter) = s.split_once(':').ok_or(())?;
        Ok(SubscriptionCursor {
            filter: filter.to_owned(),
            mailbox: mailbox.parse().map_err(|_| ())?,
        })
    }
}

/// What deleting a session found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteSession {
    /// It was offline and is gone.
    Deleted,
    /// It is connected: kick the client (it ends then if it does not outlive its connection).
    Connected,
    /// No such session.
    NotFound,
}

impl Core {
    /// A page of sessions in client-id order, with the cursor of the next page (the last
    /// client id returned, when more may follow).
    pub fn sessions_page(&self, query: &SessionQuery) -> (Vec<SessionRow>, Option<String>) {
        let limit = query.limit.max(1);
        let rows = self
            .registry
            .page(limit + 1, |id, info| query.wants(id, info));
        let mut rows = rows;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last().map(|r| r.client_id.to_string()));
        (rows, next.flatten())
    }

    /// One session by client id.
    pub fn session(&self, client_id: &str) -> Option<SessionRow> {
        self.registry.row(client_id)
    }

    /// Disconnects the connected client `client_id` with `reason` (sent as a 5.0 DISCONNECT
    /// reason code; 3.1.1 clients are just closed). True if it was connected.
    pub fn kick(&self, client_id: &str, reason: u8) -> bool {
        self.registry
            .with_online(client_id, |mailbox| mailbox.signal(Control::Kick(reason)))
            .is_some()
    }

    /// Ends the offline session `client_id` (its subscriptions, queue and timers go; a delayed
    /// will is published, as when it expires).
    pub fn delete_session(&self, client_id: &str) -> DeleteSession {
        if self.registry.with_online(client_id, |_| ()).is_some() {
            return DeleteSession::Connected;
        }
        match self.registry.remove_offline(client_id) {
            Some(session) => {
                self.cancel_timers(client_id);
                self.end_session(session);
                tracing::info!(%client_id, "session deleted through the admin API");
                DeleteSession::Deleted
            }
            None => DeleteSession::NotFound,
        }
    }

    /// A page of the subscriptions whose filter starts with `prefix` (all when empty), with the
    /// client id of each one's session, in filter order (one filter's subscribers in the order
    /// their sessions began), after the cursor `after`; with the cursor of the next page when
    /// more may follow. `client` keeps one client's only.
    pub fn subscriptions(
        &self,
        prefix: &str,
        client: Option<&str>,
        after: Option<&SubscriptionCursor>,
        limit: usize,
    ) -> (Vec<(Box<str>, SubscriptionRow)>, Option<SubscriptionCursor>) {
        let wanted_mailbox = match client {
            Some(id) => match self.registry.row(id) {
                Some(row) => Some(row.mailbox),
                None => return (Vec::new(), None),
            },
            None => None,
        };
        let limit = limit.max(1);
        let mut rows = match wanted_mailbox {
            // One session's, from its index in the router: the filters after the cursor's
            // (a cursor of another session's row compares as (filter, mailbox) does).
            Some(mailbox) => {
                let start = match after {
                    None => Bound::Unbounded,
                    // This session's row of the cursor's filter comes after the cursor.
                    Some(c) if c.mailbox < mailbox => Bound::Included(c.filter.as_str()),
                    Some(c) => Bound::Excluded(c.filter.as_str()),
                };
                self.router
                    .subscriptions_of(mailbox, prefix, start, limit.saturating_add(1))
            }
            None => self.router.subscriptions_page(
                prefix,
                after.map(|c| (&*c.filter, c.mailbox)),
                limit.saturating_add(1),
            ),
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().filter(|_| more).map(|last| SubscriptionCursor {
            filter: last.filter.to_string(),
            mailbox: last.mailbox,
        });
        let names = self.registry.client_ids_of(rows.iter().map(|r| r.mailbox));
        let out = rows
            .into_iter()
            .filter_map(|row| names.get(&row.mailbox).map(|id| (id.clone(), row)))
            .collect();
        (out, next)
    }

    /// A page of the unexpired retained messages matching `filter`, in topic order after
    /// `after`; with the cursor of the next page.
    pub fn retained_page(
        &self,
        filter: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<Message>>, Option<String>) {
        let mut all = self.retained(filter);
        if let Some(after) = after {
            all.retain(|m| m.topic() > after);
        }
        let limit = limit.max(1);
        let more = all.len() > limit;
        if more {
            all.select_nth_unstable_by(limit - 1, |a, b| a.topic().cmp(b.topic()));
            all.truncate(limit);
        }
        all.sort_unstable_by(|a, b| a.topic().cmp(b.topic()));
        let next = more
            .then(|| all.last().map(|m| m.topic().to_owned()))
            .flatten();
        (all, next)
    }

    /// The retained message of `topic`, if any and unexpired.
    pub fn retained_get(&self, topic: &str) -> Option<Arc<Message>> {
        self.router
            .retained_get(topic)
            .filter(|m| !m.expired(Instant::now()))
    }

    /// Deletes the retained message of `topic` (journalled like a retained PUBLISH with an
    /// empty payload, but delivered to nobody). True if there was one.
    pub fn retained_delete(&self, topic: &str) -> bool {
        let deleted = self.router.remove_retained(topic);
        if deleted {
            tracing::info!(topic, "retained message deleted through the admin API");
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionCursor;

    #[test]
    fn a_subscription_cursor_round_trips_a_filter_with_colons() {
        let cursor = SubscriptionCursor {
            filter: "$share/g:1/a:b/#".into(),
            mailbox: 42,
        };
        let text = cursor.to_string();
        assert_eq!(text, "42:$share/g:1/a:b/#");
        assert_eq!(text.parse(), Ok(cursor));
        for bad in ["", "a/b", ":a/b", "x:a/b", "-1:a"] {
            assert!(bad.parse::<SubscriptionCursor>().is_err(), "{bad}");
        }
    }
}
