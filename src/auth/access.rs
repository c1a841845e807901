//! What one connected client may touch: its ACL, synchronous, owned by its connection.
//!
//! Built at CONNECT by [`super::Auth::authenticate`]. The connection asks it once per
//! SUBSCRIBE filter and once per publish topic; answers for publish topics (and, when a deny
//! rule overlaps one of its subscriptions, for delivered topics) are kept in a small cache, so a
//! device publishing to the same few topics pays a hash lookup per message. A reload bumps the
//! shared generation: the next check takes the new rules and starts a fresh cache.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use compact_str::CompactString;

use super::acl::{self, Rule, SubscribeDecision, Who};
use super::Auth;

/// Cached answers per connection and kind; past it the cache starts afresh.
const CACHE_ENTRIES: usize = 256;

/// A topic → answer cache (one per kind of check).
type Cache = HashMap<CompactString, bool, ahash::RandomState>;

/// The caches, allocated on the first check that needs one: an idle connection holds none.
#[derive(Default)]
struct Caches {
    writes: Cache,
    reads: Cache,
}

/// The cached answer for `topic`, or `decide`'s, remembered.
fn cached(cache: &mut Cache, topic: &str, decide: impl FnOnce() -> bool) -> bool {
    if let Some(&answer) = cache.get(topic) {
        return answer;
    }
    let answer = decide();
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(topic.into(), answer);
    answer
}

/// A client's access.
pub struct Access {
    auth: Arc<Auth>,
    generation: u64,
    client_id: ByteString,
    username: Option<ByteString>,
    /// Rules from the authenticator (HTTP answer, JWT claims), checked with the file's.
    own: Option<Arc<[Rule]>>,
    /// The ACL file's rules for this user, and its patterns (empty without a file).
    file_rules: Arc<[Rule]>,
    patterns: Arc<[Rule]>,
    /// Everything is allowed (a superuser, or no ACL applies).
    unrestricted: bool,
    /// Deliveries must be checked: a deny rule overlaps one of the subscriptions.
    filtered: bool,
    caches: Option<Box<Caches>>,
    /// The password-file entry this client logged in with (user, stored hash), for
    /// `disconnect_on_revoke`.
    pub(super) credential: Option<(ByteString, Box<str>)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("unrestricted", &self.unrestricted)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub(super) fn new(
        auth: Arc<Auth>,
        client_id: ByteString,
        username: Option<ByteString>,
        own: Option<Arc<[Rule]>>,
        superuser: bool,
    ) -> Access {
        let mut access = Access {
            auth,
            generation: u64::MAX,
            client_id,
            username,
            own,
            file_rules: Arc::new([]),
            patterns: Arc::new([]),
            unrestricted: superuser,
            filtered: false,
            caches: None,
            credential: None,
        };
        access.refresh();
        access
    }

    /// Takes the current rules if a reload happened since they were taken.
    fn refresh(&mut self) {
        let generation = self.auth.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.caches = None;
        match self.auth.acl_file() {
            Some(file) => {
                self.file_rules = file.rules_for(self.username.as_deref());
                self.patterns = file.patterns().clone();
            }
            None => {
                self.file_rules = Arc::new([]);
                self.patterns = Arc::new([]);
            }
        }
    }

    /// True when no rule can refuse anything.
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted || (self.own.is_none() && !self.auth.has_acl_file())
    }

    fn decide<T>(&self, f: impl FnOnce(&[&[Rule]], &Who<'_>) -> T) -> T {
        let who = Who {
            client_id: &self.client_id,
            username: self.username.as_deref(),
        };
        let own: &[Rule] = self.own.as_deref().unwrap_or(&[]);
        f(&[own, &self.file_rules, &self.patterns], &who)
    }

    /// May this client publish to `topic`? Cached per topic.
    pub fn may_publish(&mut self, topic: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        self.refresh();
        let mut caches = self.caches.take().unwrap_or_default();
        let answer = cached(&mut caches.writes, topic, || {
            self.decide(|sets, who| acl::may_write(sets, topic, who))
        });
        self.caches = Some(caches);
        answer
    }

    /// May this client subscribe to `filter`? A grant that a deny rule overlaps turns on the
    /// check of deliveries ([`Access::checks_deliveries`]).
    pub fn may_subscribe(&mut self, filter: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        self.refresh();
        match self.decide(|sets, who| acl::may_subscribe(sets, filter, who)) {
            SubscribeDecision::Allowed => true,
            SubscribeDecision::Filtered => {
                self.filtered = true;
                true
            }
            SubscribeDecision::Denied => false,
        }
    }

    /// True when each delivery must be checked with [`Access::may_receive`].
    pub fn checks_deliveries(&self) -> bool {
        self.filtered && !self.unrestricted
    }

    /// May this client receive a message on `topic`? Cached per topic.
    pub fn may_receive(&mut self, topic: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        self.refresh();
        let mut caches = self.caches.take().unwrap_or_default();
        let answer = cached(&mut caches.reads, topic, || {
            self.decide(|sets, who| acl::may_read(sets, topic, who))
        });
        self.caches = Some(caches);
        answer
    }

    /// Forgets that deliveries needed checking (before the subscriptions are checked again).
    pub fn reset_filter(&mut self) {
        self.filtered = false;
    }

    /// False when the password-file entry this client logged in with is gone or changed.
    pub fn credential_valid(&self) -> bool {
        match &self.credential {
            None => true,
            Some((user, stored)) => self.auth.password_unchanged(user, stored),
        }
    }
}
