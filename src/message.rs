//! The one message model every entry point produces and every exit renders from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::{
    property_id as id, LastWill, PropertyFields, PropertyValue, QoS, WriteProperties,
};
use crate::topic::TopicName;

/// An application message. Cloning shares the payload, topic and properties; it never
/// copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5.0 properties that travel with the message: none for most messages.
    pub properties: Option<Arc<MessageProperties>>,
    /// When it entered the broker, to time its way to subscribers.
    pub published_at: Stamp,
}

/// A moment on a process-wide clock, in microseconds, wrapping every 71 minutes: enough
/// to time a message's way through the broker, in four bytes (a message is no larger
/// for it). It is not part of what a message is: stamps always compare equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp(u32);

impl Stamp {
    pub fn now() -> Stamp {
        // Truncated on purpose: only differences of stamps are read.
        Stamp(clock_start().elapsed().as_micros() as u32)
    }

    /// The time since the stamp (of less than 71 minutes).
    pub fn age(self) -> Duration {
        Duration::from_micros(u64::from(Stamp::now().0.wrapping_sub(self.0)))
    }
}

impl PartialEq for Stamp {
    fn eq(&self, _: &Stamp) -> bool {
        true
    }
}

impl Eq for Stamp {}

fn clock_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// What MQTT 5.0 lets a publisher attach to a message for its subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    /// In the publisher's order.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// From the Message Expiry Interval: the message is not delivered after this.
    pub expires_at: Option<Instant>,
    /// The identifiers of the subscriptions a delivery is for; set per subscriber.
    pub subscription_identifiers: Vec<u32>,
}

impl MessageProperties {
    /// The message properties of a received PUBLISH (or will), in allocations of their
    /// own; `None` if it has none. `now` is when it was received.
    pub fn from_packet(fields: &PropertyFields, now: Instant) -> Option<Arc<MessageProperties>> {
        let own = |s: &Option<ByteString>| s.as_deref().map(ByteString::from);
        let properties = MessageProperties {
            payload_format_indicator: fields.payload_format_indicator,
            content_type: own(&fields.content_type),
            response_topic: own(&fields.response_topic),
            correlation_data: fields
                .correlation_data
                .as_deref()
                .map(Bytes::copy_from_slice),
            user_properties: fields
                .user_properties
                .iter()
                .map(|(k, v)| (ByteString::from(&**k), ByteString::from(&**v)))
                .collect(),
            expires_at: expiry_interval(fields).map(|interval| now + interval),
            subscription_identifiers: Vec::new(),
        };
        (properties != MessageProperties::default()).then(|| Arc::new(properties))
    }

    /// Seconds left before expiry at `now`, rounded up; `None` without expiry, and
    /// `Some(0)` once expired.
    pub fn remaining_secs(&self, now: Instant) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }
}

/// The Message Expiry Interval in `fields`. None when absent, and none for 0 too, as
/// with Mosquitto: read literally, 0 would expire every message before even a connected
/// subscriber got it.
fn expiry_interval(fields: &PropertyFields) -> Option<Duration> {
    fields
        .message_expiry_interval
        .filter(|&secs| secs > 0)
        .map(|secs| Duration::from_secs(u64::from(secs)))
}

/// A message's properties as written into one PUBLISH at one moment: the expiry interval
/// is what is left of it then.
pub struct OutgoingProperties<'a> {
    pub properties: Option<&'a MessageProperties>,
    pub now: Instant,
}

impl WriteProperties for OutgoingProperties<'_> {
    fn each(&self, f: &mut dyn FnMut(u8, PropertyValue<'_>)) {
        use crate::protocol::PropertyValue::*;
        let Some(p) = self.properties else {
            return;
        };
        if let Some(v) = p.payload_format_indicator {
            f(id::PAYLOAD_FORMAT_INDICATOR, Byte(v));
        }
        if let Some(secs) = p.remaining_secs(self.now) {
            f(id::MESSAGE_EXPIRY_INTERVAL, FourBytes(secs));
        }
        if let Some(v) = &p.content_type {
            f(id::CONTENT_TYPE, Bytes(v.as_bytes()));
        }
        if let Some(v) = &p.response_topic {
            f(id::RESPONSE_TOPIC, Bytes(v.as_bytes()));
        }
        if let Some(v) = &p.correlation_data {
            f(id::CORRELATION_DATA, Bytes(v));
        }
        for &id in &p.subscription_identifiers {
            f(id::SUBSCRIPTION_IDENTIFIER, Varint(id));
        }
        for (k, v) in &p.user_properties {
            f(id::USER_PROPERTY, Pair(k.as_bytes(), v.as_bytes()));
        }
    }
}

/// A connection's will, kept until it is published.
#[derive(Debug, Clone)]
pub struct Will {
    pub message: Message,
    /// MQTT 5.0 Will Delay Interval: how long after the connection ends it is published.
    pub delay: Duration,
    /// Its Message Expiry Interval, which runs from publication, not from CONNECT.
    pub expiry: Option<Duration>,
}

impl Will {
    /// The will a CONNECT carries, in allocations of its own.
    pub fn from_packet(will: &LastWill) -> Will {
        let properties = &will.properties;
        Will {
            message: Message {
                topic: will.topic.detached(),
                payload: Bytes::copy_from_slice(&will.payload),
                qos: will.qos,
                retain: will.retain,
                properties: MessageProperties::from_packet(properties, Instant::now()),
                published_at: Stamp::now(),
            },
            delay: Duration::from_secs(u64::from(properties.will_delay_interval.unwrap_or(0))),
            expiry: expiry_interval(properties),
        }
    }

    /// The message as published at `now`.
    pub fn published(self, now: Instant) -> Message {
        let message = Message {
            published_at: Stamp::now(),
            ..self.message
        };
        let Some(expiry) = self.expiry else {
            return message;
        };
        let mut properties = message.properties.as_deref().cloned().unwrap_or_default();
        properties.expires_at = Some(now + expiry);
        Message {
            properties: Some(Arc::new(properties)),
            ..message
        }
    }
}

impl Message {
    /// A copy owning exactly its own bytes. Decoded topics and payloads are slices of a
    /// receive buffer; what is kept for long is detached so it does not pin that buffer.
    pub fn detached(&self) -> Message {
        Message {
            topic: self.topic.detached(),
            payload: Bytes::copy_from_slice(&self.payload),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            published_at: self.published_at,
        }
    }

    /// The same message as delivered at `qos` with the given retain flag.
    pub fn for_delivery(&self, qos: QoS, retain: bool) -> Message {
        Message {
            qos,
            retain,
            ..self.clone()
        }
    }

    /// Whether the message has expired by `now` (MQTT 5.0 Message Expiry Interval).
    pub fn expired(&self, now: Instant) -> bool {
        self.properties
            .as_deref()
            .and_then(|p| p.remaining_secs(now))
            == Some(0)
    }

    /// The same message carrying `ids` as its subscription identifiers.
    pub fn with_subscription_ids(&self, ids: &[u32]) -> Message {
        let mut properties = self.properties.as_deref().cloned().unwrap_or_default();
        properties.subscription_identifiers = ids.to_vec();
        Message {
            properties: Some(Arc::new(properties)),
            ..self.clone()
        }
    }
}
