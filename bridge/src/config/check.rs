//! Semantic checks of a [`BridgeConfig`]: the first problem, as (dotted key, reason).

use std::collections::HashSet;
use std::fmt;

use super::{BridgeConfig, InboundRule, MappingKind, OutboundRule, TlsFiles, Unroutable};
use crate::mapping::{Direction, Mapping, Template};
use crate::topic;

/// A semantic error in the `[bridge]` table: the dotted key (`bridge.outbound[0].filter`,
/// indexes from 0) and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigCheckError {
    /// Dotted key, starting with `bridge.`.
    pub key: String,
    /// Why.
    pub reason: String,
}

fn bad<T>(key: impl Into<String>, reason: impl fmt::Display) -> Result<T, ConfigCheckError> {
    Err(ConfigCheckError {
        key: key.into(),
        reason: reason.to_string(),
    })
}

impl BridgeConfig {
    /// Checks what serde cannot: URL, filters, templates, dead-letter targets, rule names,
    /// spool settings. Returns the first problem found.
    pub fn check(&self) -> Result<(), ConfigCheckError> {
        let uri: crate::amqp::url::AmqpUrl = match self.url.parse() {
            Ok(u) => u,
            Err(e) => return bad("bridge.url", format!("not an AMQP URI: {e}")),
        };
        if self.tls.is_some() && !uri.tls {
            return bad("bridge.tls", "only for amqps:// URLs");
        }
        if let Some(tls) = &self.tls {
            check_tls("bridge.tls", tls)?;
        }
        // EXTERNAL takes the user from the TLS client certificate: without one every attempt
        // would be refused, retried for ever.
        if uri.external && !uri.tls {
            return bad(
                "bridge.url",
                "auth_mechanism=external needs an amqps:// URL",
            );
        }
        if uri.external && self.tls.as_ref().is_none_or(|t| t.cert_file.is_none()) {
            return bad(
                "bridge.tls.cert_file",
                "needed with auth_mechanism=external (RabbitMQ takes the user from it)",
            );
        }
        if self.connect_timeout_secs == 0 {
            return bad("bridge.connect_timeout_secs", "must be at least 1");
        }
        for (min, max, min_key, max_key) in [
            (
                self.reconnect_min_ms,
                self.reconnect_max_ms,
                "reconnect_min_ms",
                "reconnect_max_ms",
            ),
            (
                self.retry_min_ms,
                self.retry_max_ms,
                "retry_min_ms",
                "retry_max_ms",
            ),
        ] {
            if min == 0 {
                return bad(format!("bridge.{min_key}"), "must be at least 1");
            }
            if max < min {
                return bad(
                    format!("bridge.{max_key}"),
                    format!("must be at least {min_key}"),
                );
            }
        }
        if self.log_interval_secs == 0 {
            return bad("bridge.log_interval_secs", "must be at least 1");
        }
        if let Some(spool) = &self.spool {
            if spool.path.as_os_str().is_empty() {
                return bad("bridge.spool.path", "must not be empty");
            }
            if spool.max_messages == 0 {
                return bad("bridge.spool.max_messages", "must be at least 1");
            }
            if spool.max_bytes == 0 {
                return bad("bridge.spool.max_bytes", "must be at least 1");
            }
        }
        let mut names = HashSet::new();
        for (i, rule) in self.outbound.iter().enumerate() {
            let key = format!("bridge.outbound[{i}]");
            check_name(
                &key,
                rule.name.as_deref(),
                &self.outbound_name(i),
                &mut names,
            )?;
            self.check_outbound(&key, rule)?;
        }
        for (i, rule) in self.inbound.iter().enumerate() {
            let key = format!("bridge.inbound[{i}]");
            check_name(
                &key,
                rule.name.as_deref(),
                &self.inbound_name(i),
                &mut names,
            )?;
            check_inbound(&key, rule)?;
        }
        if let Some(mqtt) = &self.mqtt {
            if mqtt.client_id.is_empty() {
                return bad("bridge.mqtt.client_id", "must not be empty");
            }
            if mqtt.password.is_some() && mqtt.username.is_none() {
                return bad("bridge.mqtt.password", "needs bridge.mqtt.username");
            }
            if let Some(tls) = &mqtt.tls {
                check_tls("bridge.mqtt.tls", tls)?;
            }
        }
        Ok(())
    }

    /// The name of outbound rule `i`: its `name`, else `outbound-<i + 1>`.
    pub fn outbound_name(&self, i: usize) -> String {
        match self.outbound.get(i).and_then(|r| r.name.clone()) {
            Some(n) => n,
            None => format!("outbound-{}", i + 1),
        }
    }

    /// The name of inbound rule `i`: its `name`, else `inbound-<i + 1>`.
    pub fn inbound_name(&self, i: usize) -> String {
        match self.inbound.get(i).and_then(|r| r.name.clone()) {
            Some(n) => n,
            None => format!("inbound-{}", i + 1),
        }
    }

    fn check_outbound(&self, key: &str, rule: &OutboundRule) -> Result<(), ConfigCheckError> {
        if rule.filter.is_empty() {
            return bad(
                format!("{key}.filter"),
                "required: the MQTT filter to bridge",
            );
        }
        if let Err(e) = topic::check_filter(&rule.filter) {
            return bad(
                format!("{key}.filter"),
                format!("not a valid MQTT filter: {e}"),
            );
        }
        if rule.qos > 2 {
            return bad(format!("{key}.qos"), "must be 0, 1 or 2");
        }
        check_exchange(&format!("{key}.exchange"), &rule.exchange)?;
        outbound_mapping(rule).map_err(|reason| ConfigCheckError {
            key: format!("{key}.template"),
            reason,
        })?;
        if rule.mapping != MappingKind::Template && rule.template.is_some() {
            return bad(
                format!("{key}.template"),
                "only with mapping = \"template\"",
            );
        }
        let dl_topic = format!("{key}.dead_letter_topic");
        let dl_exchange = format!("{key}.dead_letter_exchange");
        match (&rule.dead_letter_topic, &rule.dead_letter_exchange) {
            _ if rule.unroutable != Unroutable::DeadLetter => {
                if rule.dead_letter_topic.is_some() {
                    return bad(dl_topic, "only with unroutable = \"dead-letter\"");
                }
                if rule.dead_letter_exchange.is_some() {
                    return bad(dl_exchange, "only with unroutable = \"dead-letter\"");
                }
            }
            (None, None) => {
                return bad(
                    format!("{key}.unroutable"),
                    "\"dead-letter\" needs dead_letter_topic or dead_letter_exchange",
                )
            }
            (Some(_), Some(_)) => {
                return bad(
                    dl_exchange,
                    "give dead_letter_topic or dead_letter_exchange, not both",
                )
            }
            (Some(t), None) => {
                if let Err(e) = topic::check_name(t) {
                    return bad(dl_topic, format!("not a valid MQTT topic: {e}"));
                }
                if topic::matches(&rule.filter, t) {
                    return bad(dl_topic, "matches the rule's own filter (a loop)");
                }
            }
            (None, Some(x)) => check_exchange(&dl_exchange, x)?,
        }
        if rule.max_in_flight == 0 {
            return bad(format!("{key}.max_in_flight"), "must be at least 1");
        }
        if rule.buffer == 0 {
            return bad(format!("{key}.buffer"), "must be at least 1");
        }
        if rule.ack == super::AckMode::Spooled && self.spool.is_none() {
            return bad(
                format!("{key}.ack"),
                "\"spooled\" needs a [bridge.spool] table with a path",
            );
        }
        Ok(())
    }
}

fn check_inbound(key: &str, rule: &InboundRule) -> Result<(), ConfigCheckError> {
    if rule.queue.is_empty() {
        return bad(format!("{key}.queue"), "required: the queue to consume");
    }
    if rule.queue.len() > 255 {
        return bad(format!("{key}.queue"), "longer than 255 bytes");
    }
    check_exchange(&format!("{key}.exchange"), &rule.exchange)?;
    if rule.exchange.is_empty() && !rule.bindings.is_empty() {
        return bad(
            format!("{key}.bindings"),
            "the default exchange (\"\") takes no bindings",
        );
    }
    for (j, b) in rule.bindings.iter().enumerate() {
        if b.len() > 255 {
            return bad(format!("{key}.bindings[{j}]"), "longer than 255 bytes");
        }
    }
    if rule.qos > 2 {
        return bad(format!("{key}.qos"), "must be 0, 1 or 2");
    }
    if rule.prefetch == 0 {
        return bad(format!("{key}.prefetch"), "must be at least 1");
    }
    if rule.publish_timeout_secs == 0 {
        return bad(format!("{key}.publish_timeout_secs"), "must be at least 1");
    }
    inbound_mapping(rule).map_err(|reason| ConfigCheckError {
        key: format!("{key}.template"),
        reason,
    })?;
    if rule.mapping != MappingKind::Template && rule.template.is_some() {
        return bad(
            format!("{key}.template"),
            "only with mapping = \"template\"",
        );
    }
    Ok(())
}

/// The outbound rule's mapping, or why its template is refused.
pub(crate) fn outbound_mapping(rule: &OutboundRule) -> Result<Mapping, String> {
    mapping(
        rule.mapping,
        rule.template.as_deref(),
        Direction::TopicToKey,
    )
}

/// The inbound rule's mapping, or why its template is refused.
pub(crate) fn inbound_mapping(rule: &InboundRule) -> Result<Mapping, String> {
    mapping(
        rule.mapping,
        rule.template.as_deref(),
        Direction::KeyToTopic,
    )
}

fn mapping(kind: MappingKind, template: Option<&str>, d: Direction) -> Result<Mapping, String> {
    Ok(match (kind, template) {
        (MappingKind::Default, _) => Mapping::Default,
        (MappingKind::Rabbitmq, _) => Mapping::RabbitMq,
        (MappingKind::Template, None) => return Err("required with mapping = \"template\"".into()),
        (MappingKind::Template, Some(t)) => {
            Mapping::Template(Template::parse(t, d).map_err(|e| format!("malformed: {e}"))?)
        }
    })
}

fn check_exchange(key: &str, name: &str) -> Result<(), ConfigCheckError> {
    if name.len() > 255 {
        return bad(key, "longer than 255 bytes");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return bad(key, "an exchange name has only letters, digits, - _ . :");
    }
    Ok(())
}

fn check_name(
    key: &str,
    given: Option<&str>,
    name: &str,
    seen: &mut HashSet<String>,
) -> Result<(), ConfigCheckError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if given.is_some() && !ok {
        return bad(format!("{key}.name"), "1 to 64 of letters, digits, - _ .");
    }
    if !seen.insert(name.to_string()) {
        return bad(
            format!("{key}.name"),
            format!("{name:?} is the name of another rule"),
        );
    }
    Ok(())
}

fn check_tls(key: &str, tls: &TlsFiles) -> Result<(), ConfigCheckError> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => bad(format!("{key}.key_file"), "needed with cert_file"),
        (None, Some(_)) => bad(format!("{key}.cert_file"), "needed with key_file"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
