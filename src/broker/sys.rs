//! `$SYS/broker/...`: the broker's figures as retained MQTT messages, in Mosquitto's naming,
//! published every `metrics.sys_interval_secs` so that any MQTT client can watch them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Core;
use crate::gate::TicketSource;
use crate::protocol::{PublishProperties, QoS};
use crate::session::mailbox::{Message, MessageParts};

/// Publishes the `$SYS` topics every `interval` until shutdown.
pub async fn publish_every(core: Arc<Core>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = core.shutdown_token().cancelled() => return,
        }
        publish_retained(&core, topics(&core));
    }
}

/// Publishes each `(topic, value)` as a retained QoS 0 message from the broker itself.
fn publish_retained(core: &Core, topics: impl IntoIterator<Item = (String, String)>) {
    let properties = PublishProperties::default();
    let now = Instant::now();
    let mut tickets = TicketSource::none(core.clock().ms_at(now));
    for (topic, value) in topics {
        let message = Message::new(
            MessageParts {
                topic: &topic,
                payload: value.as_bytes(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: &properties,
                origin: 0,
                publisher: None,
            },
            now,
        );
        core.route(Arc::new(message), &mut tickets);
    }
}

/// The topics and their values now.
pub fn topics(core: &Core) -> Vec<(String, String)> {
    let s = core.stats().snapshot();
    let g = core.gauges();
    let received: u64 = s.messages_received.iter().sum();
    let sent: u64 = s.messages_delivered.iter().sum();
    let dropped =
        s.dropped_queue_full + s.dropped_offline_qos0 + s.dropped_too_large + s.dropped_expired;
    let connected: u64 = s.connections_by.values().map(|c| c.current).sum();
    let uptime = core.clock().started().elapsed().as_secs();
    [
        ("version", format!("warren {}", env!("CARGO_PKG_VERSION"))),
        ("uptime", format!("{uptime} seconds")),
        ("clients/connected", connected.to_string()),
        ("clients/disconnected", g.offline.to_string()),
        ("clients/total", (g.online + g.offline).to_string()),
        (
            "messages/received",
            s.packets_in.iter().sum::<u64>().to_string(),
        ),
        (
            "messages/sent",
            s.packets_out.iter().sum::<u64>().to_string(),
        ),
        ("publish/messages/received", received.to_string()),
        ("publish/messages/sent", sent.to_string()),
        ("publish/messages/dropped", dropped.to_string()),
        ("bytes/received", s.bytes_in.to_string()),
        ("bytes/sent", s.bytes_out.to_string()),
        ("subscriptions/count", g.subscriptions.to_string()),
        ("retained messages/count", g.retained.to_string()),
        ("store/messages/count", g.queued.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (format!("$SYS/broker/{name}"), value))
    .collect()
}

/// Publishes the bridge's state as retained `$SYS/broker/bridge/...` topics every `interval`:
/// `connection` (connecting, connected, disconnected, stopped), `reconnects`, and per rule
/// `outbound/<rule>/{published,confirmed,returned,nacked,pending,spool/messages}` and
/// `inbound/<rule>/{deliveries,acks,rejects}`.
pub async fn publish_bridge_every(
    core: Arc<Core>,
    bridge: Arc<warren_bridge::BridgeHandle>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = core.shutdown_token().cancelled() => return,
        }
        let s = bridge.snapshot();
        let mut topics = vec![
            (
                "connection".to_owned(),
                format!("{:?}", s.connection).to_lowercase(),
            ),
            ("reconnects".to_owned(), s.reconnects.to_string()),
        ];
        for r in &s.outbound {
            let c = &r.counts;
            for (name, value) in [
                ("published", c.published),
                ("confirmed", c.confirmed),
                ("returned", c.returned),
                ("nacked", c.nacked),
                ("pending", r.pending),
                ("spool/messages", r.spool_messages),
            ] {
                topics.push((format!("outbound/{}/{name}", r.rule), value.to_string()));
            }
        }
        for r in &s.inbound {
            let c = &r.counts;
            for (name, value) in [
                ("deliveries", c.deliveries),
                ("acks", c.acks),
                ("rejects", c.rejects),
            ] {
                topics.push((format!("inbound/{}/{name}", r.rule), value.to_string()));
            }
        }
        publish_retained(
            &core,
            topics
                .into_iter()
                .map(|(name, value)| (format!("$SYS/broker/bridge/{name}"), value)),
        );
    }
}
