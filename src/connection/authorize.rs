//! What a connected client may touch, as its [`crate::auth::Access`] says: PUBLISH topics,
//! SUBSCRIBE filters, deliveries when a deny rule overlaps a subscription, and the check of
//! credentials and subscriptions after a reload.

use std::time::Instant;

use super::{Connection, Exit};
use crate::gate::{Unanswered, Verdict};
use crate::metrics::stats::AclAction;
use crate::protocol::{reason, Publish, QoS};

impl Connection {
    /// `Some(answer)` when the ACL refuses this PUBLISH: `Ok` once it is answered (5.0: 0x87;
    /// 3.1.1: as if accepted, then dropped, as Mosquitto does), `Err` to close the connection
    /// (`disconnect_on_denied_publish`).
    pub(super) fn refuse_publish(
        &mut self,
        publish: &Publish,
        now: Instant,
    ) -> Option<Option<Exit>> {
        let access = self.access.as_mut()?;
        if access.may_publish(&publish.topic) {
            return None;
        }
        self.core.stats().acl_denied(AclAction::Publish);
        tracing::debug!(client_id = %self.session.client_id, topic = &*publish.topic, "PUBLISH denied by the ACL");
        if self.core.auth().config().disconnect_on_denied_publish {
            return Some(Some(Exit::NotAuthorized("publish denied")));
        }
        if publish.qos == QoS::AtMostOnce {
            return Some(None);
        }
        let exactly_once = publish.qos == QoS::ExactlyOnce;
        let code = if self.version.is_v5() {
            reason::NOT_AUTHORIZED
        } else {
            if exactly_once {
                // 3.1.1 has no refusal: the flow runs to PUBCOMP as for any message.
                self.session.on_incoming_qos2(publish.pkid);
            }
            reason::SUCCESS
        };
        let entry = Unanswered {
            pkid: publish.pkid,
            exactly_once,
            success: code,
            pending: None,
            since: now,
        };
        Some(match self.acks.push(entry) {
            Some(entry) => self.answer(&entry, Verdict::Owned),
            None => None,
        })
    }

    /// May the client subscribe to `filter`? Counts a refusal.
    pub(super) fn may_subscribe(&mut self, filter: &str) -> bool {
        let Some(access) = self.access.as_mut() else {
            return true;
        };
        let allowed = access.may_subscribe(filter);
        if !allowed {
            self.core.stats().acl_denied(AclAction::Subscribe);
            tracing::debug!(client_id = %self.session.client_id, filter, "SUBSCRIBE denied by the ACL");
        }
        allowed
    }

    /// May the client receive a message on `topic`? Asked only when a deny rule overlaps one
    /// of its subscriptions; counts a refusal.
    pub(super) fn may_receive(&mut self, topic: &str) -> bool {
        let Some(access) = self.access.as_mut() else {
            return true;
        };
        if !access.checks_deliveries() || access.may_receive(topic) {
            return true;
        }
        self.core.stats().acl_denied(AclAction::Deliver);
        false
    }

    /// After a reload: closes the connection if its password-file entry was removed or changed
    /// (`disconnect_on_revoke`), else checks its subscriptions against the new rules.
    pub(super) fn reauthorize(&mut self) -> Option<Exit> {
        let access = self.access.as_mut()?;
        if self.core.auth().config().disconnect_on_revoke && !access.credential_valid() {
            return Some(Exit::NotAuthorized("credentials revoked"));
        }
        self.recheck_subscriptions();
        None
    }

    /// Drops the subscriptions the ACL no longer allows (a reload, or a stored session resumed
    /// by a client whose rules changed).
    pub(super) fn recheck_subscriptions(&mut self) {
        let Some(access) = self.access.as_mut() else {
            return;
        };
        access.reset_filter();
        let denied: Vec<_> = self
            .session
            .subscriptions
            .keys()
            .filter(|filter| !access.may_subscribe(filter))
            .cloned()
            .collect();
        for filter in denied {
            tracing::info!(client_id = %self.session.client_id, %filter, "subscription no longer allowed by the ACL; removed");
            self.core.stats().acl_denied(AclAction::Subscribe);
            self.core.unsubscribe(&mut self.session, &filter);
        }
    }
}
