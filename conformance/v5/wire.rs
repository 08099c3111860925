//! MQTT 5.0 on the wire for the conformance tests, independent of Herald's codec:
//! packets built byte by byte, and a strict decoder for what the broker sends.
//!
//! The decoder rejects (panics on) anything the specification forbids a server to send
//! — undefined packet types or reason codes, wrong fixed-header flags, variable byte
//! integers longer than needed, ill-formed strings, properties not allowed in their
//! packet or repeated where they may not be, trailing bytes, a wildcard or an unknown
//! topic alias in a topic name, packets above the client's Maximum Packet Size — so
//! every packet any test receives is also checked against those rules.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{frame, RawClient, TestBroker, WAIT};

// ---- property identifiers ----

pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const AUTHENTICATION_METHOD: u8 = 0x15;
pub const AUTHENTICATION_DATA: u8 = 0x16;
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub const RESPONSE_INFORMATION: u8 = 0x1A;
pub const SERVER_REFERENCE: u8 = 0x1C;
pub const REASON_STRING: u8 = 0x1F;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_QOS: u8 = 0x24;
pub const RETAIN_AVAILABLE: u8 = 0x25;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

// ---- reason codes ----

pub const SUCCESS: u8 = 0x00;
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
pub const UNSPECIFIED_ERROR: u8 = 0x80;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;

/// Reason codes a server may send, by packet (MQTT 5.0 tables 3-1, 3-4, 3-5, 3-6, 3-7,
/// 3-8, 3-9, 3-10 and 3-13).
pub const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Every DISCONNECT reason code but 0x04, which only a client sends.
pub const SERVER_DISCONNECT_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

// ---- subscription options ----

pub const NO_LOCAL: u8 = 0x04;
pub const RETAIN_AS_PUBLISHED: u8 = 0x08;
pub const RETAIN_HANDLING_NEW: u8 = 0x10;
pub const RETAIN_HANDLING_NEVER: u8 = 0x20;

// ---- building packets ----

/// A Variable Byte Integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A length-prefixed string or binary field.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A property list under construction; [`Props::encoded`] prefixes its length.
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<u8>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }

    pub fn byte(mut self, id: u8, value: u8) -> Props {
        self.0.extend([id, value]);
        self
    }

    pub fn u16(mut self, id: u8, value: u16) -> Props {
        self.0.push(id);
        self.0.extend(value.to_be_bytes());
        self
    }

    pub fn u32(mut self, id: u8, value: u32) -> Props {
        self.0.push(id);
        self.0.extend(value.to_be_bytes());
        self
    }

    pub fn varint(mut self, id: u8, value: u32) -> Props {
        self.0.push(id);
        self.0.extend(varint(value as usize));
        self
    }

    pub fn str(self, id: u8, value: &str) -> Props {
        self.bin(id, value.as_bytes())
    }

    /// A string or binary property of arbitrary bytes.
    pub fn bin(mut self, id: u8, value: &[u8]) -> Props {
        self.0.push(id);
        self.0.extend(field(value));
        self
    }

    pub fn user(mut self, key: &str, value: &str) -> Props {
        self.0.push(USER_PROPERTY);
        self.0.extend(field(key.as_bytes()));
        self.0.extend(field(value.as_bytes()));
        self
    }

    /// Arbitrary bytes inside the list.
    pub fn raw(mut self, bytes: &[u8]) -> Props {
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Property Length followed by the properties.
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = varint(self.0.len());
        out.extend_from_slice(&self.0);
        out
    }
}

/// A will for [`Connect`].
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8]) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
            props: Props::new(),
        }
    }

    pub fn qos(mut self, qos: u8) -> Will {
        self.qos = qos;
        self
    }

    pub fn retain(mut self) -> Will {
        self.retain = true;
        self
    }

    pub fn props(mut self, props: Props) -> Will {
        self.props = props;
        self
    }

    pub fn delay(mut self, secs: u32) -> Will {
        self.props = self.props.u32(WILL_DELAY_INTERVAL, secs);
        self
    }
}

/// An MQTT 5.0 CONNECT: clean start, keep alive 30 s, no properties unless set.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    /// Further properties, after the ones above.
    pub props: Props,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    pub fn new(client_id: &str) -> Connect {
        Connect {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 30,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            props: Props::new(),
            will: None,
            username: None,
            password: None,
        }
    }

    /// Clean Start 0 and the given Session Expiry Interval.
    pub fn resume(client_id: &str, expiry: u32) -> Connect {
        Connect::new(client_id).clean(false).expiry(expiry)
    }

    pub fn clean(mut self, clean_start: bool) -> Connect {
        self.clean_start = clean_start;
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }

    pub fn expiry(mut self, secs: u32) -> Connect {
        self.session_expiry = Some(secs);
        self
    }

    pub fn receive_maximum(mut self, max: u16) -> Connect {
        self.receive_maximum = Some(max);
        self
    }

    pub fn maximum_packet_size(mut self, max: u32) -> Connect {
        self.maximum_packet_size = Some(max);
        self
    }

    pub fn topic_alias_maximum(mut self, max: u16) -> Connect {
        self.topic_alias_maximum = Some(max);
        self
    }

    pub fn props(mut self, props: Props) -> Connect {
        self.props = props;
        self
    }

    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }

    pub fn username(mut self, name: &str) -> Connect {
        self.username = Some(name.into());
        self
    }

    pub fn password(mut self, password: &[u8]) -> Connect {
        self.password = Some(password.to_vec());
        self
    }

    /// All properties: the named ones, then [`Connect::props`].
    fn properties(&self) -> Props {
        let mut props = Props::new();
        if let Some(v) = self.session_expiry {
            props = props.u32(SESSION_EXPIRY_INTERVAL, v);
        }
        if let Some(v) = self.receive_maximum {
            props = props.u16(RECEIVE_MAXIMUM, v);
        }
        if let Some(v) = self.maximum_packet_size {
            props = props.u32(MAXIMUM_PACKET_SIZE, v);
        }
        if let Some(v) = self.topic_alias_maximum {
            props = props.u16(TOPIC_ALIAS_MAXIMUM, v);
        }
        props.raw(&self.props.0)
    }

    /// The connect flags byte.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with(b"MQTT", 5, self.flags())
    }

    /// The CONNECT with another protocol name, level or flags byte.
    pub fn bytes_with(&self, name: &[u8], level: u8, flags: u8) -> Vec<u8> {
        let mut body = field(name);
        body.push(level);
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        body.extend(self.properties().encoded());
        body.extend(field(self.client_id.as_bytes()));
        if let Some(will) = &self.will {
            body.extend(will.props.encoded());
            body.extend(field(will.topic.as_bytes()));
            body.extend(field(&will.payload));
        }
        if let Some(name) = &self.username {
            body.extend(field(name.as_bytes()));
        }
        if let Some(password) = &self.password {
            body.extend(field(password));
        }
        frame(0x10, &body)
    }
}

/// An MQTT 5.0 PUBLISH from a client.
#[derive(Debug, Clone)]
pub struct Publish {
    pub topic: Vec<u8>,
    pub qos: u8,
    pub pkid: u16,
    pub retain: bool,
    pub dup: bool,
    pub props: Props,
    pub payload: Vec<u8>,
}

impl Publish {
    /// A PUBLISH at `qos`; QoS 1 and 2 get packet id 1 unless [`Publish::pkid`] says.
    pub fn new(topic: &str, qos: u8, payload: &[u8]) -> Publish {
        Publish::raw_topic(topic.as_bytes(), qos, payload)
    }

    /// A PUBLISH whose topic may be any bytes.
    pub fn raw_topic(topic: &[u8], qos: u8, payload: &[u8]) -> Publish {
        Publish {
            topic: topic.to_vec(),
            qos,
            pkid: 1,
            retain: false,
            dup: false,
            props: Props::new(),
            payload: payload.to_vec(),
        }
    }

    pub fn pkid(mut self, pkid: u16) -> Publish {
        self.pkid = pkid;
        self
    }

    pub fn retain(mut self) -> Publish {
        self.retain = true;
        self
    }

    pub fn dup(mut self) -> Publish {
        self.dup = true;
        self
    }

    pub fn props(mut self, props: Props) -> Publish {
        self.props = props;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut first = 0x30 | (self.qos << 1);
        if self.retain {
            first |= 0x01;
        }
        if self.dup {
            first |= 0x08;
        }
        let mut body = field(&self.topic);
        if self.qos > 0 {
            body.extend(self.pkid.to_be_bytes());
        }
        body.extend(self.props.encoded());
        body.extend_from_slice(&self.payload);
        frame(first, &body)
    }
}

/// A SUBSCRIBE of (filter, options byte) pairs.
pub fn subscribe(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.encoded());
    for (filter, options) in filters {
        body.extend(field(filter.as_bytes()));
        body.push(*options);
    }
    frame(0x82, &body)
}

pub fn unsubscribe(pkid: u16, props: &Props, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.encoded());
    for filter in filters {
        body.extend(field(filter.as_bytes()));
    }
    frame(0xa2, &body)
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`first`) in the short form: reason code 0x00
/// and no properties.
pub fn ack(first: u8, pkid: u16) -> Vec<u8> {
    frame(first, &pkid.to_be_bytes())
}

/// An acknowledgement with a reason code and properties.
pub fn ack_with(first: u8, pkid: u16, reason: u8, props: &Props) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(reason);
    body.extend(props.encoded());
    frame(first, &body)
}

pub fn disconnect(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encoded());
    frame(0xe0, &body)
}

pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encoded());
    frame(0xf0, &body)
}

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
pub const NORMAL_DISCONNECT: [u8; 2] = [0xe0, 0x00];

// ---- decoding what the broker sends ----

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// A decoded property list, in wire order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties(pub Vec<(u8, Value)>);

impl Properties {
    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    pub fn has(&self, id: u8) -> bool {
        self.get(id).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn byte(&self, id: u8) -> Option<u8> {
        match self.get(id)? {
            Value::Byte(v) => Some(*v),
            v => panic!("property {id:#x} is {v:?}"),
        }
    }

    pub fn u16(&self, id: u8) -> Option<u16> {
        match self.get(id)? {
            Value::U16(v) => Some(*v),
            v => panic!("property {id:#x} is {v:?}"),
        }
    }

    pub fn u32(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            Value::U32(v) => Some(*v),
            v => panic!("property {id:#x} is {v:?}"),
        }
    }

    pub fn str(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            Value::Str(v) => Some(v),
            v => panic!("property {id:#x} is {v:?}"),
        }
    }

    pub fn bin(&self, id: u8) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Bin(v) => Some(v),
            v => panic!("property {id:#x} is {v:?}"),
        }
    }

    /// Every User Property, in order.
    pub fn users(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every Subscription Identifier, in order.
    pub fn subscription_ids(&self) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|(i, v)| match (i, v) {
                (&SUBSCRIPTION_IDENTIFIER, Value::Varint(n)) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: u8,
    pub props: Properties,
    pub raw: Vec<u8>,
}

/// A PUBLISH from the broker, its topic alias resolved.
#[derive(Debug, Clone)]
pub struct Message {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    /// The topic, from the packet or from its alias.
    pub topic: String,
    /// The Topic Name field as sent (empty when the alias stands for it).
    pub topic_field: String,
    pub pkid: Option<u16>,
    pub props: Properties,
    pub payload: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Message {
    pub fn alias(&self) -> Option<u16> {
        self.props.u16(TOPIC_ALIAS)
    }

    pub fn expiry(&self) -> Option<u32> {
        self.props.u32(MESSAGE_EXPIRY_INTERVAL)
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone)]
pub struct Ack {
    pub pkid: u16,
    pub reason: u8,
    pub props: Properties,
    pub raw: Vec<u8>,
}

/// SUBACK or UNSUBACK.
#[derive(Debug, Clone)]
pub struct SubAck {
    pub pkid: u16,
    pub props: Properties,
    pub codes: Vec<u8>,
    pub raw: Vec<u8>,
}

/// DISCONNECT or AUTH.
#[derive(Debug, Clone)]
pub struct Disconnect {
    pub reason: u8,
    pub props: Properties,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum Packet {
    ConnAck(ConnAck),
    Publish(Message),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    SubAck(SubAck),
    UnsubAck(SubAck),
    PingResp,
    Disconnect(Disconnect),
    Auth(Disconnect),
}

impl Packet {
    pub fn raw(&self) -> Option<&[u8]> {
        match self {
            Packet::ConnAck(p) => Some(&p.raw),
            Packet::Publish(p) => Some(&p.raw),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                Some(&p.raw)
            }
            Packet::SubAck(p) | Packet::UnsubAck(p) => Some(&p.raw),
            Packet::Disconnect(p) | Packet::Auth(p) => Some(&p.raw),
            Packet::PingResp => None,
        }
    }
}

/// Reads the fields of one packet body, panicking on anything malformed.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.bytes.len() >= n,
            "{}: truncated (wanted {n} more bytes)",
            self.what
        );
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }

    /// A Variable Byte Integer, which must use the fewest bytes possible.
    fn varint(&mut self) -> u32 {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8();
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                assert!(
                    i == 0 || byte != 0,
                    "{}: Variable Byte Integer {value} uses more bytes than needed",
                    self.what
                );
                return value;
            }
        }
        panic!("{}: Variable Byte Integer longer than 4 bytes", self.what)
    }

    fn binary(&mut self) -> Vec<u8> {
        let len = self.u16() as usize;
        self.take(len).to_vec()
    }

    /// A UTF-8 Encoded String: well-formed and without U+0000.
    fn string(&mut self) -> String {
        let bytes = self.binary();
        let s = String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("{}: ill-formed UTF-8 string: {e}", self.what));
        assert!(
            !s.contains('\0'),
            "{}: string with U+0000: {s:?}",
            self.what
        );
        s
    }

    fn properties(&mut self, allowed: &[u8]) -> Properties {
        let len = self.varint() as usize;
        let mut r = Reader {
            bytes: self.take(len),
            what: self.what,
        };
        let mut props = Properties::default();
        while !r.bytes.is_empty() {
            let id = r.varint();
            let id = u8::try_from(id).unwrap_or(0);
            assert!(
                allowed.contains(&id),
                "{}: property {id:#04x} is not allowed in this packet",
                self.what
            );
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Value::Byte(r.u8()),
                0x13 | 0x21 | 0x22 | 0x23 => Value::U16(r.u16()),
                0x02 | 0x11 | 0x18 | 0x27 => Value::U32(r.u32()),
                0x0B => {
                    let n = r.varint();
                    assert!(n > 0, "{}: Subscription Identifier 0", self.what);
                    Value::Varint(n)
                }
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Value::Str(r.string()),
                0x09 | 0x16 => Value::Bin(r.binary()),
                0x26 => Value::Pair(r.string(), r.string()),
                _ => unreachable!(),
            };
            let repeatable = id == USER_PROPERTY || id == SUBSCRIPTION_IDENTIFIER;
            assert!(
                repeatable || !props.has(id),
                "{}: property {id:#04x} appears twice",
                self.what
            );
            props.0.push((id, value));
        }
        props
    }

    fn reason(&mut self, allowed: &[u8]) -> u8 {
        let code = self.u8();
        assert!(
            allowed.contains(&code),
            "{}: reason code {code:#04x} is not defined for this packet",
            self.what
        );
        code
    }

    fn pkid(&mut self) -> u16 {
        let pkid = self.u16();
        assert!(pkid != 0, "{}: packet identifier 0", self.what);
        pkid
    }

    fn finish(&self) {
        assert!(
            self.bytes.is_empty(),
            "{}: {} trailing bytes",
            self.what,
            self.bytes.len()
        );
    }
}

const CONNACK_PROPS: &[u8] = &[
    0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13, 0x1A, 0x1C, 0x15,
    0x16,
];
const PUBLISH_PROPS: &[u8] = &[0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03];
const ACK_PROPS: &[u8] = &[0x1F, 0x26];
const DISCONNECT_PROPS: &[u8] = &[0x11, 0x1F, 0x26, 0x1C];
const AUTH_PROPS: &[u8] = &[0x15, 0x16, 0x1F, 0x26];

/// Decodes one whole frame the broker sent. Panics on anything a server may not send.
/// `aliases` holds the topic aliases the broker set up on this connection, and
/// `alias_max` the Topic Alias Maximum the client announced.
pub fn decode(raw: Vec<u8>, aliases: &mut HashMap<u16, String>, alias_max: u16) -> Packet {
    let first = raw[0];
    let (kind, flags) = (first >> 4, first & 0x0f);
    let mut header = Reader {
        bytes: &raw[1..],
        what: "fixed header",
    };
    let len = header.varint() as usize;
    let body = header.bytes;
    assert_eq!(body.len(), len, "frame length");
    let tabled = |name: &'static str, wanted: u8| {
        assert_eq!(
            flags, wanted,
            "{name} with fixed-header flags {flags:#06b}, not {wanted:#06b}"
        );
        Reader {
            bytes: body,
            what: name,
        }
    };
    let packet = match kind {
        2 => {
            let mut r = tabled("CONNACK", 0);
            let ack_flags = r.u8();
            assert_eq!(
                ack_flags & 0xfe,
                0,
                "CONNACK reserved acknowledge flags set"
            );
            let reason = r.reason(CONNACK_CODES);
            let props = r.properties(CONNACK_PROPS);
            r.finish();
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                reason,
                props,
                raw,
            })
        }
        3 => {
            let qos = (flags >> 1) & 3;
            assert!(qos != 3, "PUBLISH with QoS 3");
            let dup = flags & 0x08 != 0;
            assert!(!(qos == 0 && dup), "QoS 0 PUBLISH with DUP 1");
            let mut r = Reader {
                bytes: body,
                what: "PUBLISH",
            };
            let topic_field = r.string();
            assert!(
                !topic_field.contains(['+', '#']),
                "PUBLISH topic name with a wildcard: {topic_field:?}"
            );
            let pkid = (qos > 0).then(|| r.pkid());
            let props = r.properties(PUBLISH_PROPS);
            let payload = r.bytes.to_vec();
            let topic = match props.u16(TOPIC_ALIAS) {
                None => {
                    assert!(
                        !topic_field.is_empty(),
                        "PUBLISH with no topic and no alias"
                    );
                    topic_field.clone()
                }
                Some(alias) => {
                    assert!(alias != 0, "PUBLISH with Topic Alias 0");
                    assert!(
                        alias <= alias_max,
                        "Topic Alias {alias} above the client's maximum {alias_max}"
                    );
                    if topic_field.is_empty() {
                        aliases
                            .get(&alias)
                            .unwrap_or_else(|| panic!("PUBLISH with unknown Topic Alias {alias}"))
                            .clone()
                    } else {
                        aliases.insert(alias, topic_field.clone());
                        topic_field.clone()
                    }
                }
            };
            if let Some(response) = props.str(RESPONSE_TOPIC) {
                assert!(
                    !response.contains(['+', '#']),
                    "Response Topic with a wildcard: {response:?}"
                );
            }
            Packet::Publish(Message {
                dup,
                qos,
                retain: flags & 1 == 1,
                topic,
                topic_field,
                pkid,
                props,
                payload,
                raw,
            })
        }
        4..=7 => {
            let (name, wanted, codes) = match kind {
                4 => ("PUBACK", 0, PUBACK_CODES),
                5 => ("PUBREC", 0, PUBACK_CODES),
                6 => ("PUBREL", 2, PUBREL_CODES),
                _ => ("PUBCOMP", 0, PUBREL_CODES),
            };
            let mut r = tabled(name, wanted);
            let pkid = r.pkid();
            let (reason, props) = match r.bytes.len() {
                0 => (SUCCESS, Properties::default()),
                1 => (r.reason(codes), Properties::default()),
                _ => (r.reason(codes), r.properties(ACK_PROPS)),
            };
            r.finish();
            let ack = Ack {
                pkid,
                reason,
                props,
                raw,
            };
            match kind {
                4 => Packet::PubAck(ack),
                5 => Packet::PubRec(ack),
                6 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
        9 | 11 => {
            let (name, codes) = if kind == 9 {
                ("SUBACK", SUBACK_CODES)
            } else {
                ("UNSUBACK", UNSUBACK_CODES)
            };
            let mut r = tabled(name, 0);
            let pkid = r.pkid();
            let props = r.properties(ACK_PROPS);
            let mut list = Vec::new();
            while !r.bytes.is_empty() {
                list.push(r.reason(codes));
            }
            assert!(!list.is_empty(), "{name} without reason codes");
            let ack = SubAck {
                pkid,
                props,
                codes: list,
                raw,
            };
            if kind == 9 {
                Packet::SubAck(ack)
            } else {
                Packet::UnsubAck(ack)
            }
        }
        13 => {
            let r = tabled("PINGRESP", 0);
            r.finish();
            Packet::PingResp
        }
        14 | 15 => {
            let (name, codes, allowed) = if kind == 14 {
                ("DISCONNECT", SERVER_DISCONNECT_CODES, DISCONNECT_PROPS)
            } else {
                ("AUTH", AUTH_CODES, AUTH_PROPS)
            };
            let mut r = tabled(name, 0);
            let (reason, props) = match r.bytes.len() {
                0 => (SUCCESS, Properties::default()),
                1 => (r.reason(codes), Properties::default()),
                _ => (r.reason(codes), r.properties(allowed)),
            };
            r.finish();
            let packet = Disconnect { reason, props, raw };
            if kind == 14 {
                Packet::Disconnect(packet)
            } else {
                Packet::Auth(packet)
            }
        }
        other => panic!("the broker sent packet type {other}, which only clients send"),
    };
    packet
}

// ---- a raw MQTT 5.0 client ----

/// How long a test waits to show that something does not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// An MQTT 5.0 client made of raw bytes, decoding what it receives with [`decode`].
pub struct Client {
    pub raw: RawClient,
    aliases: HashMap<u16, String>,
    alias_max: u16,
    max_packet_size: Option<u32>,
}

impl Client {
    pub async fn open(broker: &TestBroker) -> Client {
        Client {
            raw: broker.raw().await,
            aliases: HashMap::new(),
            alias_max: 0,
            max_packet_size: None,
        }
    }

    /// Sends `connect` and returns what answers it, without judging it.
    pub async fn try_connect(broker: &TestBroker, connect: &Connect) -> (Client, ConnAck) {
        let mut client = Client::open(broker).await;
        client.alias_max = connect.topic_alias_maximum.unwrap_or(0);
        client.max_packet_size = connect.maximum_packet_size;
        client.send(&connect.bytes()).await;
        let ack = client.expect_connack().await;
        (client, ack)
    }

    /// Sends `connect` and asserts CONNACK 0x00.
    pub async fn connect(broker: &TestBroker, connect: &Connect) -> (Client, ConnAck) {
        let (client, ack) = Client::try_connect(broker, connect).await;
        assert_eq!(ack.reason, SUCCESS, "{ack:?}");
        (client, ack)
    }

    /// A connected client with clean start and no session expiry.
    pub async fn new(broker: &TestBroker, client_id: &str) -> Client {
        Client::connect(broker, &Connect::new(client_id)).await.0
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes).await;
    }

    fn decode(&mut self, frame: Vec<u8>) -> Packet {
        if let Some(max) = self.max_packet_size {
            assert!(
                frame.len() <= max as usize,
                "the broker sent a {}-byte packet to a client whose Maximum Packet Size is {max}",
                frame.len()
            );
        }
        decode(frame, &mut self.aliases, self.alias_max)
    }

    /// The next packet, or `None` once the broker closed the connection; panics if
    /// nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        let frame = self.raw.recv_frame().await?;
        Some(self.decode(frame))
    }

    /// The next packet if one arrives within `wait` (at most [`WAIT`]).
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        assert!(wait < WAIT);
        let frame = tokio::time::timeout(wait, self.raw.recv_frame())
            .await
            .ok()
            .flatten()?;
        Some(self.decode(frame))
    }

    /// Asserts nothing arrives for `wait` and the connection stays open.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        assert!(wait < WAIT);
        match tokio::time::timeout(wait, self.raw.recv_frame()).await {
            Err(_) => {}
            Ok(Some(frame)) => panic!("expected nothing, got {:?}", self.decode(frame)),
            Ok(None) => panic!("expected nothing, but the connection closed"),
        }
    }

    /// Asserts the broker closes the connection within [`WAIT`] without sending more.
    pub async fn expect_closed(&mut self) {
        if let Some(packet) = self.recv().await {
            panic!("expected the connection to close, got {packet:?}");
        }
    }

    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn expect_publish(&mut self) -> Message {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, which must carry `topic` and `payload`.
    pub async fn expect_message(&mut self, topic: &str, payload: &[u8]) -> Message {
        let p = self.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic, payload),
            "{p:?}"
        );
        p
    }

    /// The next packet, which must be the acknowledgement `first` (PUBACK ... PUBCOMP)
    /// for `pkid`.
    pub async fn expect_ack(&mut self, first: u8, pkid: u16) -> Ack {
        let ack = match (first, self.recv().await) {
            (PUBACK, Some(Packet::PubAck(a)))
            | (PUBREC, Some(Packet::PubRec(a)))
            | (PUBREL, Some(Packet::PubRel(a)))
            | (PUBCOMP, Some(Packet::PubComp(a))) => a,
            (_, other) => panic!("expected acknowledgement {first:#04x}, got {other:?}"),
        };
        assert_eq!(ack.pkid, pkid, "{ack:?}");
        ack
    }

    pub async fn expect_suback(&mut self, pkid: u16) -> SubAck {
        match self.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.pkid, pkid, "{ack:?}");
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn expect_unsuback(&mut self, pkid: u16) -> SubAck {
        match self.recv().await {
            Some(Packet::UnsubAck(ack)) => {
                assert_eq!(ack.pkid, pkid, "{ack:?}");
                ack
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// The next packet must be a DISCONNECT with `reason`, after which the broker must
    /// close the connection having sent nothing more. A server's DISCONNECT never
    /// carries a Session Expiry Interval.
    pub async fn expect_disconnect(&mut self, reason: u8) -> Disconnect {
        let disconnect = match self.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("expected DISCONNECT {reason:#04x}, got {other:?}"),
        };
        assert_eq!(disconnect.reason, reason, "{disconnect:?}");
        assert!(
            !disconnect.props.has(SESSION_EXPIRY_INTERVAL),
            "server DISCONNECT with a Session Expiry Interval: {disconnect:?}"
        );
        self.expect_closed().await;
        disconnect
    }

    /// SUBSCRIBE with no properties; returns the SUBACK's reason codes.
    pub async fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(pkid, &Props::new(), filters).await
    }

    pub async fn subscribe_with(
        &mut self,
        pkid: u16,
        props: &Props,
        filters: &[(&str, u8)],
    ) -> Vec<u8> {
        self.send(&subscribe(pkid, props, filters)).await;
        self.expect_suback(pkid).await.codes
    }

    /// Subscribes to `filter` with a Subscription Identifier.
    pub async fn subscribe_id(&mut self, pkid: u16, id: u32, filter: &str, options: u8) -> u8 {
        let props = Props::new().varint(SUBSCRIPTION_IDENTIFIER, id);
        self.subscribe_with(pkid, &props, &[(filter, options)])
            .await[0]
    }

    pub async fn unsubscribe(&mut self, pkid: u16, filters: &[&str]) -> Vec<u8> {
        self.send(&unsubscribe(pkid, &Props::new(), filters)).await;
        self.expect_unsuback(pkid).await.codes
    }

    /// Sends `publish` and completes its QoS exchange as a well-behaved client.
    pub async fn publish(&mut self, publish: &Publish) {
        self.send(&publish.bytes()).await;
        match publish.qos {
            0 => {}
            1 => {
                self.expect_ack(PUBACK, publish.pkid).await;
            }
            _ => {
                self.expect_ack(PUBREC, publish.pkid).await;
                self.send(&ack(PUBREL, publish.pkid)).await;
                self.expect_ack(PUBCOMP, publish.pkid).await;
            }
        }
    }

    /// Acknowledges a delivery as its QoS requires, QoS 2 through to PUBCOMP.
    pub async fn complete(&mut self, message: &Message) {
        match (message.qos, message.pkid) {
            (1, Some(pkid)) => self.send(&ack(PUBACK, pkid)).await,
            (2, Some(pkid)) => {
                self.send(&ack(PUBREC, pkid)).await;
                self.expect_ack(PUBREL, pkid).await;
                self.send(&ack(PUBCOMP, pkid)).await;
            }
            _ => {}
        }
    }

    /// PINGREQ, and asserts PINGRESP is the next packet: everything sent before has
    /// been handled.
    pub async fn ping(&mut self) {
        self.send(&PINGREQ).await;
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// DISCONNECT 0x00, then waits until the broker has closed the connection.
    pub async fn disconnect(mut self) {
        self.send(&NORMAL_DISCONNECT).await;
        self.expect_closed().await;
    }

    /// Drops the connection as a network failure would (no DISCONNECT) and waits until
    /// the broker has finished with it.
    pub async fn drop_connection(mut self) {
        self.raw.close_write().await;
        self.expect_closed().await;
    }
}
