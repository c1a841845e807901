//! Encoding a PUBLISH from borrowed parts: what a stored message hands the encoder for each
//! delivery, so that no topic, payload or property is cloned per subscriber.

use bytes::{BufMut, BytesMut};

use super::properties::{put_props, write_publish, Props};
use super::wire::{put_str, put_varint, varint_len, Counter, Sink};
use super::{EncodeError, ProtocolVersion, PublishProperties, QoS};

/// A PUBLISH to encode, borrowing everything.
#[derive(Debug, Clone, Copy)]
pub struct PublishOut<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name.
    pub topic: &'a str,
    /// Packet identifier (0 at QoS 0).
    pub pkid: u16,
    /// The message's properties (5.0); its subscription identifiers, expiry and topic alias
    /// are ignored in favour of the three fields below.
    pub properties: &'a PublishProperties,
    /// Subscription identifiers of this delivery (5.0).
    pub subscription_ids: &'a [u32],
    /// Message Expiry Interval left for this delivery (5.0).
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias of this delivery (5.0); with it, `topic` may be empty.
    pub topic_alias: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

struct OutProps<'a>(&'a PublishOut<'a>);

impl Props for OutProps<'_> {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        write_publish(
            s,
            self.0.properties,
            self.0.subscription_ids,
            self.0.message_expiry_interval,
            self.0.topic_alias,
        )
    }
}

fn body<S: Sink>(p: &PublishOut<'_>, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    if p.topic.is_empty() && !(v.is_v5() && p.topic_alias.is_some()) {
        return Err(EncodeError::Invalid("empty topic name"));
    }
    put_str(s, p.topic)?;
    if p.qos == QoS::AtMostOnce {
        if p.dup {
            return Err(EncodeError::Invalid("DUP set on QoS 0"));
        }
    } else {
        if p.pkid == 0 {
            return Err(EncodeError::Invalid("packet identifier 0"));
        }
        s.u16(p.pkid);
    }
    if v.is_v5() {
        put_props(s, &OutProps(p))?;
    }
    s.slice(p.payload);
    Ok(())
}

/// Appends `p`, encoded for `version`, to `out`, as [`super::encode`] would the equivalent
/// [`super::Publish`]: all or nothing, and refused over `max_packet_size`.
pub fn encode_publish(
    p: &PublishOut<'_>,
    version: ProtocolVersion,
    max_packet_size: u32,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    body(p, version, &mut counter)?;
    let remaining = counter.0;
    let total = 1 + varint_len(remaining) + remaining;
    if remaining > 268_435_455 || total as u64 > u64::from(max_packet_size) {
        return Err(EncodeError::TooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    out.reserve(total);
    let start = out.len();
    out.put_u8(0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain));
    if let Err(error) = put_varint(out, remaining).and_then(|()| body(p, version, out)) {
        out.truncate(start);
        return Err(error);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Packet, Publish, MAX_PACKET_SIZE};
    use bytes::Bytes;

    #[test]
    fn encodes_like_the_owned_packet() {
        let properties = PublishProperties {
            content_type: Some("text/plain".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: [("k", "v")].into_iter().collect(),
            payload_format_indicator: Some(1),
            ..PublishProperties::default()
        };
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (qos, pkid, dup) in [(QoS::AtMostOnce, 0, false), (QoS::ExactlyOnce, 7, true)] {
                let out = PublishOut {
                    dup,
                    qos,
                    retain: true,
                    topic: "a/b",
                    pkid,
                    properties: &properties,
                    subscription_ids: &[3, 300],
                    message_expiry_interval: Some(9),
                    topic_alias: None,
                    payload: b"payload",
                };
                let mut owned_properties = properties.clone();
                owned_properties.subscription_identifiers = vec![3, 300];
                owned_properties.message_expiry_interval = Some(9);
                let owned = Packet::Publish(Publish {
                    dup,
                    qos,
                    retain: true,
                    topic: "a/b".into(),
                    pkid,
                    properties: owned_properties,
                    payload: Bytes::from_static(b"payload"),
                });
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                let n = encode_publish(&out, version, MAX_PACKET_SIZE, &mut a).unwrap();
                encode(&owned, version, MAX_PACKET_SIZE, &mut b).unwrap();
                assert_eq!(a, b, "{version:?} {qos:?}");
                assert_eq!(n, a.len());
                let mut small = BytesMut::new();
                assert!(encode_publish(&out, version, 10, &mut small).is_err());
                assert!(small.is_empty(), "nothing written when too large");
            }
        }
    }
}
