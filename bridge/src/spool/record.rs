//! One spooled message as bytes: a versioned, length-prefixed encoding of the MQTT message,
//! the publisher's client id, and the AMQP message id and timestamp given at admission (so a
//! replayed message keeps them). Decoding checks every length against what is left.

use bytes::{Buf, BufMut, Bytes};

use crate::side::{BridgeMessage, MqttProperties};

const VERSION: u8 = 1;

/// A message as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) message: BridgeMessage,
    /// UTF-8 (checked when read back).
    pub(crate) client_id: Option<Bytes>,
    pub(crate) message_id: String,
    pub(crate) timestamp: u64,
}

/// A stored record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt spool record: {0}")]
pub(crate) struct Corrupt(&'static str);

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let m = &self.message;
        let p = &m.properties;
        let mut out = Vec::with_capacity(64 + m.topic.len() + m.payload.len());
        out.put_u8(VERSION);
        out.put_u64(self.timestamp);
        out.put_u8(m.qos);
        out.put_u8(u8::from(m.retain));
        put_bytes(&mut out, m.topic.as_bytes());
        put_bytes(&mut out, self.message_id.as_bytes());
        put_opt(&mut out, self.client_id.as_deref());
        put_bytes(&mut out, &m.payload);
        put_opt(
            &mut out,
            p.payload_format_indicator
                .map(|f| [f])
                .as_ref()
                .map(|f| &f[..]),
        );
        put_opt(
            &mut out,
            p.message_expiry_interval
                .map(u32::to_be_bytes)
                .as_ref()
                .map(|e| &e[..]),
        );
        put_opt(&mut out, p.content_type.as_deref().map(str::as_bytes));
        put_opt(&mut out, p.response_topic.as_deref().map(str::as_bytes));
        put_opt(&mut out, p.correlation_data.as_deref());
        out.put_u32(p.user_properties.len() as u32);
        for (k, v) in &p.user_properties {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Record, Corrupt> {
        let mut r = Reader(data);
        if r.u8()? != VERSION {
            return Err(Corrupt("unknown version"));
        }
        let timestamp = r.u64()?;
        let qos = r.u8()?;
        let retain = r.u8()? != 0;
        let topic = r.string()?;
        let message_id = r.string()?;
        let client_id = r.opt()?.map(|id| utf8(id).map(Bytes::from)).transpose()?;
        let payload = Bytes::copy_from_slice(r.bytes()?);
        let payload_format_indicator = match r.opt()? {
            Some([f]) => Some(*f),
            Some(_) => return Err(Corrupt("payload format")),
            None => None,
        };
        let message_expiry_interval = match r.opt()? {
            Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
            Some(_) => return Err(Corrupt("expiry")),
            None => None,
        };
        let content_type = r.opt()?.map(utf8).transpose()?;
        let response_topic = r.opt()?.map(utf8).transpose()?;
        let correlation_data = r.opt()?.map(Bytes::copy_from_slice);
        let n = r.u32()? as usize;
        let mut user_properties = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            user_properties.push((r.string()?, r.string()?));
        }
        if !r.0.is_empty() {
            return Err(Corrupt("trailing bytes"));
        }
        Ok(Record {
            message: BridgeMessage {
                topic,
                payload,
                qos,
                retain,
                properties: MqttProperties {
                    payload_format_indicator,
                    message_expiry_interval,
                    content_type,
                    response_topic,
                    correlation_data,
                    user_properties,
                },
            },
            client_id,
            message_id,
            timestamp,
        })
    }
}

fn utf8(b: &[u8]) -> Result<String, Corrupt> {
    String::from_utf8(b.to_vec()).map_err(|_| Corrupt("invalid UTF-8"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn need(&self, n: usize) -> Result<(), Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.need(n)?;
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }
    fn string(&mut self) -> Result<String, Corrupt> {
        utf8(self.bytes()?)
    }
    fn opt(&mut self) -> Result<Option<&'a [u8]>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(Corrupt("option flag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            message: BridgeMessage {
                topic: "e2e/a".into(),
                payload: Bytes::from_static(b"hello"),
                qos: 1,
                retain: true,
                properties: MqttProperties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("r/1".into()),
                    correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
                    user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                },
            },
            client_id: Some("dev1".into()),
            message_id: "id-1".into(),
            timestamp: 42,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let mut bare = sample();
        bare.message.properties = MqttProperties::default();
        bare.client_id = None;
        assert_eq!(Record::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Record::decode(&long).is_err());
    }
}
