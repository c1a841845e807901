//! Reading the whole file at open: the sessions with their subscriptions, queues and incoming
//! QoS 2 state, the retained messages, and what the writer needs (reference counts, the next
//! free ids, the bytes held). Each message row is decoded once and shared by every session it
//! is queued for. Rows whose message has expired (or is missing) are reported as stale, for the
//! writer to delete.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use redb::{Database, ReadableTable};

use super::tables::*;
use super::writer::ROW_OVERHEAD;
use crate::session::message::Message;
use crate::store::change::{Recovered, RecoveredEntry, RecoveredSession};
use crate::store::record;

/// What opening found.
pub(super) struct Found {
    pub(super) recovered: Recovered,
    pub(super) refs: HashMap<u64, u32>,
    pub(super) stale: Vec<(u64, u64)>,
    pub(super) stale_retained: Vec<ByteString>,
    pub(super) next_sid: u64,
    pub(super) next_message: u64,
    pub(super) used: u64,
}

fn corrupt(table: &str, e: impl std::fmt::Display) -> String {
    format!("table {table}: {e}")
}

/// Reads everything (and creates the tables of a new file).
pub(super) fn read(db: &Database) -> Result<Found, String> {
    {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            let version = meta
                .get("format")
                .map_err(|e| e.to_string())?
                .map(|v| v.value());
            match version {
                None => {
                    meta.insert("format", FORMAT).map_err(|e| e.to_string())?;
                }
                Some(FORMAT) => {}
                Some(v) => return Err(format!("store format {v}, this warren reads {FORMAT}")),
            }
            txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
            txn.open_table(SUBSCRIPTIONS).map_err(|e| e.to_string())?;
            txn.open_table(QUEUE).map_err(|e| e.to_string())?;
            txn.open_table(MESSAGES).map_err(|e| e.to_string())?;
            txn.open_table(INBOUND).map_err(|e| e.to_string())?;
            txn.open_table(RETAINED).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
    }
    let now = Instant::now();
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut used = 0u64;

    let mut messages: HashMap<u64, Option<Arc<Message>>> = HashMap::new();
    let mut next_message = 1;
    let table = txn
        .open_table(MESSAGES)
        .map_err(|e| corrupt("messages", e))?;
    for row in table.iter().map_err(|e| corrupt("messages", e))? {
        let (k, v) = row.map_err(|e| corrupt("messages", e))?;
        let id = k.value();
        next_message = next_message.max(id + 1);
        used += v.value().len() as u64 + ROW_OVERHEAD;
        let message = record::decode_message(v.value(), now)
            .map_err(|e| corrupt("messages", format!("message {id}: {e}")))?;
        messages.insert(id, message.map(Arc::new));
    }

    let mut sessions: BTreeMap<u64, RecoveredSession> = BTreeMap::new();
    let mut next_sid = 1;
    let table = txn
        .open_table(SESSIONS)
        .map_err(|e| corrupt("sessions", e))?;
    for row in table.iter().map_err(|e| corrupt("sessions", e))? {
        let (k, v) = row.map_err(|e| corrupt("sessions", e))?;
        let sid = k.value();
        next_sid = next_sid.max(sid + 1);
        used += v.value().len() as u64 + ROW_OVERHEAD;
        let s = record::decode_session(v.value())
            .map_err(|e| corrupt("sessions", format!("session {sid}: {e}")))?;
        sessions.insert(
            sid,
            RecoveredSession {
                sid,
                client_id: s.client_id,
                expiry: s.expiry,
                offline_since: s.offline_since,
                will: s.will,
                subscriptions: Vec::new(),
                queue: Vec::new(),
                inbound: Vec::new(),
            },
        );
    }

    let table = txn
        .open_table(SUBSCRIPTIONS)
        .map_err(|e| corrupt("subscriptions", e))?;
    for row in table.iter().map_err(|e| corrupt("subscriptions", e))? {
        let (k, v) = row.map_err(|e| corrupt("subscriptions", e))?;
        let (sid, filter) = k.value();
        let entry =
            record::decode_subscription(v.value()).map_err(|e| corrupt("subscriptions", e))?;
        if let Some(s) = sessions.get_mut(&sid) {
            s.subscriptions.push((ByteString::from(filter), entry));
        }
    }

    let table = txn.open_table(INBOUND).map_err(|e| corrupt("inbound", e))?;
    for row in table.iter().map_err(|e| corrupt("inbound", e))? {
        let (k, _) = row.map_err(|e| corrupt("inbound", e))?;
        let (sid, pkid) = k.value();
        if let Some(s) = sessions.get_mut(&sid) {
            s.inbound.push(pkid);
        }
    }

    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut stale = Vec::new();
    let mut expired = 0;
    let table = txn.open_table(QUEUE).map_err(|e| corrupt("queue", e))?;
    for row in table.iter().map_err(|e| corrupt("queue", e))? {
        let (k, v) = row.map_err(|e| corrupt("queue", e))?;
        let (sid, seq) = k.value();
        next_sid = next_sid.max(sid + 1);
        used += ROW_OVERHEAD;
        let entry = record::decode_entry(v.value()).map_err(|e| corrupt("queue", e))?;
        *refs.entry(entry.message).or_insert(0) += 1;
        let message = messages.get(&entry.message).cloned().flatten();
        match (sessions.get_mut(&sid), message) {
            (Some(s), Some(message)) => s.queue.push(RecoveredEntry {
                seq,
                message,
                qos: entry.qos,
                retain: entry.retain,
                subscription_ids: entry.subscription_ids,
                state: entry.state,
            }),
            (session, _) => {
                expired += usize::from(session.is_some());
                stale.push((sid, seq));
            }
        }
    }

    let mut retained = Vec::new();
    let mut stale_retained = Vec::new();
    let table = txn
        .open_table(RETAINED)
        .map_err(|e| corrupt("retained", e))?;
    for row in table.iter().map_err(|e| corrupt("retained", e))? {
        let (k, v) = row.map_err(|e| corrupt("retained", e))?;
        let id = v.value();
        *refs.entry(id).or_insert(0) += 1;
        match messages.get(&id).cloned().flatten() {
            Some(m) => retained.push(m),
            None => {
                expired += 1;
                stale_retained.push(ByteString::from(k.value()));
            }
        }
    }
    for (id, m) in &messages {
        if !refs.contains_key(id) {
            // A message no row refers to (cannot happen: rows and messages change in one
            // transaction); it is kept until the store is rewritten.
            tracing::debug!(id, expired = m.is_none(), "unreferenced message row");
        }
    }
    Ok(Found {
        recovered: Recovered {
            sessions: sessions.into_values().collect(),
            retained,
            expired,
        },
        refs,
        stale,
        stale_retained,
        next_sid,
        next_message,
        used,
    })
}
