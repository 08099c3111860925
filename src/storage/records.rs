//! How durable state is laid out in the database: one key space, each key a one-byte
//! tag and what identifies the record, each value a compact postcard encoding.
//!
//! A session's records share the prefix tag + client id (its length first, so that no
//! client id is a prefix of another's keys): one prefix scan finds them all.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::message::{Message, MessageProperties, Stamp};
use crate::protocol::QoS;
use crate::router::Subscription;
use crate::topic::TopicName;

/// Bumped whenever the layout or an encoding changes.
pub const SCHEMA_VERSION: u32 = 1;

pub const SCHEMA_KEY: &[u8] = b"Mschema";
pub const EVENT_IDS_KEY: &[u8] = b"Mevent-ids";
pub const LOG_SEALED_KEY: &[u8] = b"Mlog-sealed";

const SESSION: u8 = b'S';
const SUBSCRIPTION: u8 = b'U';
const QUEUED: u8 = b'Q';
const IN_FLIGHT: u8 = b'F';
const QOS2_RECEIVED: u8 = b'I';
const RETAINED: u8 = b'R';
const LOGGED: u8 = b'L';

/// The tags of the records a session owns.
pub const SESSION_TAGS: [u8; 5] = [SESSION, SUBSCRIPTION, QUEUED, IN_FLIGHT, QOS2_RECEIVED];

/// `tag`, the client id with its length, then `rest`.
pub fn client_key(tag: u8, client_id: &str, rest: &[u8]) -> Vec<u8> {
    let id = client_id.as_bytes();
    // MQTT strings are at most 65,535 bytes.
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(3 + id.len() + rest.len());
    key.push(tag);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(id);
    key.extend_from_slice(rest);
    key
}

pub fn session_key(client_id: &str) -> Vec<u8> {
    client_key(SESSION, client_id, &[])
}

pub fn subscription_key(client_id: &str, filter: &str) -> Vec<u8> {
    client_key(SUBSCRIPTION, client_id, filter.as_bytes())
}

pub fn queued_key(client_id: &str, seq: u64) -> Vec<u8> {
    client_key(QUEUED, client_id, &seq.to_be_bytes())
}

pub fn in_flight_key(client_id: &str, seq: u64) -> Vec<u8> {
    client_key(IN_FLIGHT, client_id, &seq.to_be_bytes())
}

pub fn qos2_key(client_id: &str, pkid: u16) -> Vec<u8> {
    client_key(QOS2_RECEIVED, client_id, &pkid.to_be_bytes())
}

pub fn retained_key(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(RETAINED);
    key.extend_from_slice(topic.as_bytes());
    key
}

/// A message of the replay log: the tag and the event id, big-endian, so that keys
/// sort by id.
pub fn logged_key(id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(LOGGED);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A key read back.
pub enum Key<'a> {
    Schema,
    EventIds,
    LogSealed,
    Logged(u64),
    Session(&'a str),
    Subscription(&'a str, &'a str),
    Queued(&'a str, u64),
    InFlight(&'a str, u64),
    Qos2Received(&'a str, u16),
    Retained(&'a str),
}

impl<'a> Key<'a> {
    pub fn parse(key: &'a [u8]) -> Option<Key<'a>> {
        match key {
            SCHEMA_KEY => return Some(Key::Schema),
            EVENT_IDS_KEY => return Some(Key::EventIds),
            LOG_SEALED_KEY => return Some(Key::LogSealed),
            _ => {}
        }
        let (&tag, rest) = key.split_first()?;
        match tag {
            RETAINED => return std::str::from_utf8(rest).ok().map(Key::Retained),
            LOGGED => return Some(Key::Logged(u64::from_be_bytes(rest.try_into().ok()?))),
            _ => {}
        }
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (client_id, rest) = rest.split_at(len);
        let client_id = std::str::from_utf8(client_id).ok()?;
        let u64_of = |b: &[u8]| Some(u64::from_be_bytes(b.try_into().ok()?));
        Some(match tag {
            SESSION if rest.is_empty() => Key::Session(client_id),
            SUBSCRIPTION => Key::Subscription(client_id, std::str::from_utf8(rest).ok()?),
            QUEUED => Key::Queued(client_id, u64_of(rest)?),
            IN_FLIGHT => Key::InFlight(client_id, u64_of(rest)?),
            QOS2_RECEIVED => {
                Key::Qos2Received(client_id, u16::from_be_bytes(rest.try_into().ok()?))
            }
            _ => return None,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct SessionRecord {
    pub expiry: u32,
    /// Milliseconds since the Unix epoch.
    pub offline_since: Option<u64>,
}

#[derive(Serialize, Deserialize)]
pub struct SubscriptionRecord {
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    id: Option<u32>,
}

impl SubscriptionRecord {
    pub fn new(subscription: &Subscription) -> SubscriptionRecord {
        SubscriptionRecord {
            qos: subscription.qos as u8,
            no_local: subscription.no_local,
            retain_as_published: subscription.retain_as_published,
            id: subscription.id.map(NonZeroU32::get),
        }
    }

    pub fn subscription(&self) -> Option<Subscription> {
        Some(Subscription {
            qos: QoS::from_bits(self.qos)?,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            id: self.id.and_then(NonZeroU32::new),
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct InFlightRecord {
    pub pkid: u16,
    pub released: bool,
}

#[derive(Serialize, Deserialize)]
struct MessageRecord<'a> {
    topic: &'a str,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    qos: u8,
    retain: bool,
    properties: Option<PropertiesRecord<'a>>,
}

#[derive(Serialize, Deserialize)]
struct PropertiesRecord<'a> {
    payload_format_indicator: Option<u8>,
    content_type: Option<&'a str>,
    response_topic: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    correlation_data: Option<&'a [u8]>,
    #[serde(borrow)]
    user_properties: Vec<(&'a str, &'a str)>,
    /// Milliseconds since the Unix epoch: an `Instant` means nothing after a restart.
    expires_at: Option<u64>,
    subscription_identifiers: Vec<u32>,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

pub fn encode_message(message: &Message) -> Vec<u8> {
    let now = (Instant::now(), SystemTime::now());
    let properties = message.properties.as_deref().map(|p| PropertiesRecord {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type.as_deref(),
        response_topic: p.response_topic.as_deref(),
        correlation_data: p.correlation_data.as_deref(),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .collect(),
        expires_at: p.expires_at.map(|at| wall_clock(at, now)),
        subscription_identifiers: p.subscription_identifiers.clone(),
    });
    encode(&MessageRecord {
        topic: message.topic.as_str(),
        payload: &message.payload,
        qos: message.qos as u8,
        retain: message.retain,
        properties,
    })
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
    let record: MessageRecord = decode(bytes)?;
    let now = (Instant::now(), SystemTime::now());
    let topic = TopicName::new(ByteString::from(record.topic)).map_err(|e| e.to_string())?;
    let qos = QoS::from_bits(record.qos).ok_or("invalid QoS")?;
    let properties = record.properties.map(|p| {
        Arc::new(MessageProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.map(ByteString::from),
            response_topic: p.response_topic.map(ByteString::from),
            correlation_data: p.correlation_data.map(Bytes::copy_from_slice),
            user_properties: p
                .user_properties
                .into_iter()
                .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
                .collect(),
            expires_at: p.expires_at.map(|ms| instant(ms, now)),
            subscription_identifiers: p.subscription_identifiers,
        })
    });
    Ok(Message {
        topic,
        payload: Bytes::copy_from_slice(record.payload),
        qos,
        retain: record.retain,
        properties,
        published_at: Stamp::now(),
    })
}

/// Milliseconds since the Unix epoch of `time`.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn from_unix_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `at` on the wall clock, given the two clocks read together in `now`.
fn wall_clock(at: Instant, (instant, wall): (Instant, SystemTime)) -> u64 {
    let wall = match at.checked_duration_since(instant) {
        Some(ahead) => wall + ahead,
        None => wall - instant.duration_since(at),
    };
    unix_millis(wall)
}

/// The instant of the wall-clock time `ms`; a time already past is now.
fn instant(ms: u64, (instant, wall): (Instant, SystemTime)) -> Instant {
    from_unix_millis(ms)
        .duration_since(wall)
        .map_or(instant, |ahead| instant + ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_written() {
        let key = queued_key("client", 7);
        assert!(matches!(Key::parse(&key), Some(Key::Queued("client", 7))));
        let key = subscription_key("c", "a/+/#");
        assert!(matches!(
            Key::parse(&key),
            Some(Key::Subscription("c", "a/+/#"))
        ));
        let key = qos2_key("", 65535);
        assert!(matches!(
            Key::parse(&key),
            Some(Key::Qos2Received("", 65535))
        ));
        assert!(matches!(
            Key::parse(&session_key("s")),
            Some(Key::Session("s"))
        ));
        assert!(matches!(
            Key::parse(&retained_key("a/b")),
            Some(Key::Retained("a/b"))
        ));
        // No client id's keys begin with another's.
        assert!(!session_key("ab").starts_with(&session_key("a")));
        assert!(Key::parse(b"Q\x00\x05ab").is_none());
    }

    #[test]
    fn a_message_reads_back_with_its_properties_and_expiry() {
        let now = Instant::now();
        let message = Message {
            topic: TopicName::new(ByteString::from_static("a/b")).unwrap(),
            payload: Bytes::from_static(&[0, 1, 255]),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Some(Arc::new(MessageProperties {
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: Some("r".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                expires_at: Some(now + Duration::from_secs(60)),
                subscription_identifiers: vec![3, 9],
            })),
            published_at: Stamp::now(),
        };
        let back = decode_message(&encode_message(&message)).unwrap();
        assert_eq!(back.topic, message.topic);
        assert_eq!(back.payload, message.payload);
        assert_eq!((back.qos, back.retain), (message.qos, message.retain));
        let (p, q) = (back.properties.unwrap(), message.properties.unwrap());
        let left = p.remaining_secs(Instant::now());
        assert!(matches!(left, Some(59..=60)), "{left:?}");
        assert_eq!(p.user_properties, q.user_properties);
        assert_eq!(p.correlation_data, q.correlation_data);
        assert_eq!(p.subscription_identifiers, q.subscription_identifiers);
        assert!(decode_message(b"\x05garbage").is_err());
    }
}
