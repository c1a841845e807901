//! The broker's side of the store seam: which changes of a persistent session are journalled
//! (through [`crate::store::SessionStore::record`]) and when, and the rebuild of sessions,
//! trie, registry, timers and retained store from what the store recovered at start.
//!
//! Only sessions that outlive their connection are journalled, and only with a durable store
//! (a mailbox linked with [`crate::session::mailbox::Mailbox::set_durable`]); for the memory
//! store every call here returns at its first check.

use std::time::{Duration, Instant};

use super::core::Core;
use crate::protocol::{QoS, Will};
use crate::session::mailbox::{Delivery, Subscriber};
use crate::session::{FlowChange, OutState, Outgoing, SessionState, SubEntry};
use crate::store::record::FlowState;
use crate::store::{Change, Recovered, StoreError};
use crate::wall::unix_ms;

/// What a restore rebuilt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Persistent sessions restored.
    pub sessions: usize,
    /// Sessions that expired while the broker was down (ended, their wills published).
    pub expired_sessions: usize,
    /// Queued and in-flight deliveries restored.
    pub deliveries: usize,
    /// Retained messages restored.
    pub retained: usize,
    /// Rows dropped because their message expired.
    pub expired_messages: usize,
}

impl Core {
    /// Whether a new persistent session may start now (the store takes new work).
    pub fn can_persist(&self) -> Result<(), StoreError> {
        match self.journal {
            Some(_) => self.store.accepting(),
            None => Ok(()),
        }
    }

    fn sid(session: &SessionState) -> Option<u64> {
        session.mailbox.durable_sid()
    }

    /// A connection took `session` on with this session expiry: a session that outlives its
    /// connection is journalled from now on (as online); one already journalled is marked
    /// online again (its delayed will is gone).
    pub fn persist_session(&self, session: &SessionState, expiry: u32) {
        let Some(journal) = &self.journal else {
            return;
        };
        let sid = match Self::sid(session) {
            Some(sid) => sid,
            None if expiry > 0 => {
                let sid = self.store.new_session_id();
                session.mailbox.set_durable(sid, 0, journal.clone());
                sid
            }
            None => return,
        };
        self.record_session(session, sid, expiry, None, None);
        for (filter, entry) in &session.subscriptions {
            self.journal_subscription(session, filter, Some(*entry));
        }
    }

    fn record_session(
        &self,
        session: &SessionState,
        sid: u64,
        expiry: u32,
        offline_since: Option<u64>,
        will: Option<(Box<Will>, u64)>,
    ) {
        self.store.record(
            Change::Session {
                sid,
                client_id: session.client_id.clone(),
                expiry,
                offline_since,
                will,
            },
            None,
        );
    }

    /// `session` goes offline, kept for `expiry` seconds, with its delayed will (due in
    /// `will_delay` seconds). A session that became persistent only at DISCONNECT (5.0) is
    /// journalled now.
    pub fn session_offline(&self, session: &SessionState, expiry: u32, will_delay: Option<u32>) {
        if self.journal.is_none() || expiry == 0 {
            return;
        }
        if Self::sid(session).is_none() {
            self.persist_session(session, expiry);
        }
        let Some(sid) = Self::sid(session) else {
            return;
        };
        let now = unix_ms();
        let will = session
            .delayed_will
            .as_ref()
            .zip(will_delay)
            .map(|(w, delay)| (w.clone(), now + u64::from(delay) * 1000));
        self.record_session(session, sid, expiry, Some(now), will);
    }

    pub(super) fn journal_subscription(
        &self,
        session: &SessionState,
        filter: &str,
        entry: Option<SubEntry>,
    ) {
        let Some(sid) = Self::sid(session) else {
            return;
        };
        let filter = filter.into();
        self.store.record(
            match entry {
                Some(entry) => Change::Subscribed { sid, filter, entry },
                None => Change::Unsubscribed { sid, filter },
            },
            None,
        );
    }

    pub(super) fn journal_will_done(&self, sid: Option<u64>) {
        if let Some(sid) = sid {
            self.store.record(Change::WillDone { sid }, None);
        }
    }

    /// An incoming QoS 2 packet id of `session` was received (`held`) or released.
    pub fn journal_inbound(&self, session: &SessionState, pkid: u16, held: bool) {
        if let Some(sid) = Self::sid(session) {
            self.store.record(Change::Inbound { sid, pkid, held }, None);
        }
    }

    /// True when output announcing `session`'s flow state (an outgoing QoS 2 packet id, a
    /// PUBREL, the PUBCOMP of a released incoming id) must wait until the store holds that
    /// state: a journalled session on a store whose answers wait for the disk.
    pub fn holds_output(&self, session: &SessionState) -> bool {
        self.journal.is_some() && self.store.gates() && Self::sid(session).is_some()
    }

    /// Completes `ticket` once everything journalled so far is on disk.
    pub fn store_barrier(&self, ticket: crate::gate::Ticket) {
        self.store.record(Change::Barrier, Some(ticket));
    }

    /// Hands the session's flow changes of stored deliveries to the store.
    pub fn journal_flow(&self, session: &mut SessionState) {
        if session.rare().is_none_or(|r| r.flow_changes.is_empty()) {
            return;
        }
        let sid = Self::sid(session);
        let changes = &mut session.rare_mut().flow_changes;
        let Some(sid) = sid else {
            changes.clear();
            return;
        };
        for change in changes.drain(..) {
            let change = match change {
                FlowChange::Sent { seq, pkid } => Change::Flow {
                    sid,
                    seq,
                    state: FlowState::Sent(pkid),
                },
                FlowChange::Released { seq, pkid } => Change::Flow {
                    sid,
                    seq,
                    state: FlowState::Released(pkid),
                },
                FlowChange::Done { seq } => Change::Done { sid, seq },
            };
            self.store.record(change, None);
        }
    }

    /// Rebuilds what the store recovered: each session offline, with its subscriptions in
    /// the trie, its queue, its messages in flight and incoming QoS 2 state, its expiry and
    /// delayed-will timers (counted from when it went offline); and the retained messages.
    /// Sessions that expired while the broker was down end now, publishing their wills.
    pub fn restore(&self, recovered: Recovered) -> Restored {
        let mut done = Restored {
            expired_messages: recovered.expired,
            ..Restored::default()
        };
        for message in recovered.retained {
            self.router.restore_retained(message);
            done.retained += 1;
        }
        let Some(journal) = self.journal.clone() else {
            return done;
        };
        let now_unix = unix_ms();
        let now = Instant::now();
        // Wills due are published once every session is back, so that all of them get them.
        let mut wills = Vec::new();
        for s in recovered.sessions {
            let mailbox = self.new_mailbox();
            let last_seq = s.queue.last().map_or(0, |e| e.seq);
            mailbox.set_durable(s.sid, last_seq, journal.clone());
            let mut session = SessionState::new(s.client_id.clone(), mailbox.clone());
            for (filter, entry) in s.subscriptions {
                self.router
                    .subscribe(&filter, Subscriber(mailbox.clone()), entry);
                session.subscriptions.insert(filter, entry);
            }
            mailbox.set_filter_count(session.subscriptions.len());
            for e in s.queue {
                done.deliveries += 1;
                let mut delivery = Delivery::new(e.message, e.qos, e.retain);
                delivery.subscription_ids = e.subscription_ids;
                delivery.seq = e.seq;
                let state = match e.state {
                    FlowState::Queued => {
                        mailbox.restore(delivery);
                        continue;
                    }
                    FlowState::Sent(_) if e.qos == QoS::ExactlyOnce => OutState::AwaitPubRec,
                    FlowState::Sent(_) => OutState::AwaitPubAck,
                    FlowState::Released(_) => OutState::AwaitPubComp,
                };
                let (FlowState::Sent(pkid) | FlowState::Released(pkid)) = e.state else {
                    continue;
                };
                session.outgoing.push_back(Outgoing {
                    pkid,
                    delivery,
                    state,
                });
            }
            if !s.inbound.is_empty() {
                session.rare_mut().incoming_qos2.extend(s.inbound);
            }
            let offline_since = s.offline_since.unwrap_or(now_unix);
            let away_secs = now_unix.saturating_sub(offline_since) / 1000;
            let left = if s.expiry == u32::MAX {
                Some(u32::MAX)
            } else {
                u64::from(s.expiry)
                    .checked_sub(away_secs)
                    .filter(|&l| l > 0)
                    .and_then(|l| u32::try_from(l).ok())
            };
            let mut will_delay = None;
            if let Some((will, due)) = s.will {
                let wait = due.saturating_sub(now_unix);
                if wait == 0 || left.is_none() {
                    wills.push((will, mailbox.id(), s.sid));
                } else {
                    let secs = u32::try_from(Duration::from_millis(wait).as_secs().max(1))
                        .unwrap_or(u32::MAX);
                    will_delay = Some(secs);
                    session.delayed_will = Some(Box::new(will));
                }
            }
            let Some(left) = left else {
                done.expired_sessions += 1;
                self.end_session(session);
                continue;
            };
            if s.offline_since.is_none() {
                // It was online when the broker stopped: offline from now.
                let will = session
                    .delayed_will
                    .clone()
                    .zip(will_delay)
                    .map(|(w, d)| (w, now_unix + u64::from(d) * 1000));
                self.record_session(&session, s.sid, s.expiry, Some(now_unix), will);
            }
            let client_id = s.client_id;
            let generation = self.registry.restore(session);
            self.schedule_offline(&client_id, generation, left, will_delay);
            done.sessions += 1;
        }
        for (will, origin, sid) in wills {
            self.publish_will(will, origin);
            self.journal_will_done(Some(sid));
        }
        tracing::debug!(elapsed = ?now.elapsed(), "sessions rebuilt");
        done
    }
}
