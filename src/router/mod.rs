//! Routing data structures: who receives a published message, and which retained messages a new
//! subscription sees.
//!
//! The router owns:
//! - [`SubscriptionTrie`]: topic filters → subscribers, matched against a topic name;
//! - [`RetainedStore`]: topic names → retained values, matched against a topic filter;
//! - [`SharedSubscriptions`]: `$share/{group}/{filter}` groups and the choice of the member
//!   that receives a message ([`ShareStrategy`]);
//! - the matching rules of MQTT 4.7 ([`filter_matches`] is the plain reference version).
//!
//! It does not own sockets, the wire codec, sessions or locking: these are plain synchronous
//! structures that the broker wraps in a lock of its own. Filter and topic validity is checked by [`crate::protocol::topic`] before
//! anything reaches the router.

mod retained;
pub mod shared;
mod subscribers;
mod topic_match;
mod trie;
mod walk;

pub use retained::RetainedStore;
pub use shared::{parse_share, ShareKey, ShareStrategy, SharedSubscriptions};
pub use topic_match::filter_matches;
pub use trie::SubscriptionTrie;

#[cfg(test)]
mod test_support;
