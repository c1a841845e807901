//! The disk store's tables (one redb file).
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | format version |
//! | `sessions` | session id | client id, expiry, offline since, delayed will |
//! | `subscriptions` | (session id, filter) | options, subscription id |
//! | `queue` | (session id, seq) | message id, QoS, retain, subscription ids, flow state |
//! | `messages` | message id | the message, stored once for every session holding it |
//! | `inbound` | (session id, packet id) | incoming QoS 2 not released yet |
//! | `retained` | topic | message id |

use redb::TableDefinition;

/// The format this code writes and reads.
pub const FORMAT: u64 = 1;

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
pub const SUBSCRIPTIONS: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("subscriptions");
pub const QUEUE: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("queue");
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
pub const INBOUND: TableDefinition<(u64, u16), u8> = TableDefinition::new("inbound");
pub const RETAINED: TableDefinition<&str, u64> = TableDefinition::new("retained");
