//! A strict decoder for what the broker sends: anything a server may not send panics.
//! Each decoded packet keeps the bytes it came in as `raw`.

use std::collections::HashMap;

use super::*;

/// Reason codes a server may send, by packet (MQTT 5.0 tables 3-1, 3-4, 3-5, 3-6, 3-7,
/// 3-8, 3-9, 3-10 and 3-13).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Every DISCONNECT reason code but 0x04, which only a client sends.
const SERVER_DISCONNECT_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

/// A property value as decoded.
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

/// The typed getters panic on a property of another type than asked for.
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
}

/// DISCONNECT or AUTH.
#[derive(Debug, Clone)]
pub struct Disconnect {
    pub reason: u8,
    pub props: Properties,
    pub raw: Vec<u8>,
}

/// A packet the broker sent.
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
