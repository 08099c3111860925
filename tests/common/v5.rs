//! MQTT 5.0 on the wire, written from the specification and independent of Herald's
//! codec: a builder for the packets a client sends, a strict decoder for what a server
//! sends back, and a raw client on top. Self-contained (include it with
//! `#[path = "common/v5.rs"] mod v5;`), so that no client library's reading of the
//! protocol stands between a test and the bytes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// Property identifiers (MQTT 5.0 §2.2.2.2, table 2-4).
pub mod id {
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
}

/// Subscription options bits (MQTT 5.0 §3.8.3.1), to OR with the QoS.
pub const NO_LOCAL: u8 = 0x04;
pub const RETAIN_AS_PUBLISHED: u8 = 0x08;

/// Retain Handling `n` (0, 1 or 2) as subscription option bits.
pub const fn retain_handling(n: u8) -> u8 {
    n << 4
}

/// A property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// A property list, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Value)>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }

    fn with(mut self, id: u8, value: Value) -> Props {
        self.0.push((id, value));
        self
    }

    pub fn byte(self, id: u8, v: u8) -> Props {
        self.with(id, Value::Byte(v))
    }

    pub fn two(self, id: u8, v: u16) -> Props {
        self.with(id, Value::Two(v))
    }

    pub fn four(self, id: u8, v: u32) -> Props {
        self.with(id, Value::Four(v))
    }

    pub fn var(self, id: u8, v: u32) -> Props {
        self.with(id, Value::Var(v))
    }

    pub fn str(self, id: u8, s: &str) -> Props {
        self.with(id, Value::Str(s.into()))
    }

    pub fn bin(self, id: u8, b: &[u8]) -> Props {
        self.with(id, Value::Bin(b.to_vec()))
    }

    pub fn user(self, k: &str, v: &str) -> Props {
        self.with(id::USER_PROPERTY, Value::Pair(k.into(), v.into()))
    }

    /// The property list as sent: its length, then each property.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (id, value) in &self.0 {
            body.extend(varint(usize::from(*id)));
            match value {
                Value::Byte(v) => body.push(*v),
                Value::Two(v) => body.extend(v.to_be_bytes()),
                Value::Four(v) => body.extend(v.to_be_bytes()),
                Value::Var(v) => body.extend(varint(*v as usize)),
                Value::Str(s) => body.extend(string(s.as_bytes())),
                Value::Bin(b) => body.extend(string(b)),
                Value::Pair(k, v) => {
                    body.extend(string(k.as_bytes()));
                    body.extend(string(v.as_bytes()));
                }
            }
        }
        let mut out = varint(body.len());
        out.extend(body);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The identifiers present, in order.
    pub fn ids(&self) -> Vec<u8> {
        self.0.iter().map(|(id, _)| *id).collect()
    }

    pub fn count(&self, id: u8) -> usize {
        self.0.iter().filter(|(i, _)| *i == id).count()
    }

    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    pub fn byte_of(&self, id: u8) -> Option<u8> {
        match self.get(id)? {
            Value::Byte(v) => Some(*v),
            other => panic!("property {id:#04x} is {other:?}"),
        }
    }

    pub fn two_of(&self, id: u8) -> Option<u16> {
        match self.get(id)? {
            Value::Two(v) => Some(*v),
            other => panic!("property {id:#04x} is {other:?}"),
        }
    }

    pub fn four_of(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            Value::Four(v) => Some(*v),
            other => panic!("property {id:#04x} is {other:?}"),
        }
    }

    pub fn str_of(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            Value::Str(v) => Some(v),
            other => panic!("property {id:#04x} is {other:?}"),
        }
    }

    pub fn bin_of(&self, id: u8) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Bin(v) => Some(v),
            other => panic!("property {id:#04x} is {other:?}"),
        }
    }

    /// User properties, in order, duplicates kept.
    pub fn users(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Subscription identifiers, in order.
    pub fn sub_ids(&self) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|(id, v)| match (id, v) {
                (&id::SUBSCRIPTION_IDENTIFIER, Value::Var(n)) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

/// A variable byte integer (MQTT 5.0 §1.5.5).
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

/// A length-prefixed UTF-8 string or binary data field.
pub fn string(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A will in CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos,
            retain: false,
            props: Props::new(),
        }
    }

    pub fn props(mut self, props: Props) -> Will {
        self.props = props;
        self
    }
}

/// An MQTT 5.0 CONNECT (§3.1).
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub props: Props,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// Protocol level: 5 unless a test wants another.
    pub level: u8,
}

impl Connect {
    /// Clean start, keep alive 60 s, no properties.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            props: Props::new(),
            will: None,
            username: None,
            password: None,
            level: 5,
        }
    }

    pub fn clean_start(mut self, clean: bool) -> Connect {
        self.clean_start = clean;
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
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

    /// Session Expiry Interval `secs`, added to the properties.
    pub fn session_expiry(mut self, secs: u32) -> Connect {
        self.props = self.props.four(id::SESSION_EXPIRY_INTERVAL, secs);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = string(b"MQTT");
        body.push(self.level);
        let mut flags = 0u8;
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
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        body.extend(self.props.encode());
        body.extend(string(self.client_id.as_bytes()));
        if let Some(will) = &self.will {
            body.extend(will.props.encode());
            body.extend(string(will.topic.as_bytes()));
            body.extend(string(&will.payload));
        }
        if let Some(username) = &self.username {
            body.extend(string(username.as_bytes()));
        }
        if let Some(password) = &self.password {
            body.extend(string(password));
        }
        packet(0x10, &body)
    }
}

/// A PUBLISH (§3.3); `pkid` is left out at QoS 0.
pub fn publish(
    topic: &str,
    qos: u8,
    pkid: u16,
    retain: bool,
    props: &Props,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    body.extend(props.encode());
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A SUBSCRIBE (§3.8): each filter with its options byte.
pub fn subscribe(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.encode());
    for (filter, options) in filters {
        body.extend(string(filter.as_bytes()));
        body.push(*options);
    }
    packet(0x82, &body)
}

/// An UNSUBSCRIBE (§3.10).
pub fn unsubscribe(pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(Props::new().encode());
    for filter in filters {
        body.extend(string(filter.as_bytes()));
    }
    packet(0xa2, &body)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP in their short form: success, no properties.
pub fn puback(pkid: u16) -> Vec<u8> {
    packet(0x40, &pkid.to_be_bytes())
}

pub fn pubrec(pkid: u16) -> Vec<u8> {
    packet(0x50, &pkid.to_be_bytes())
}

pub fn pubrel(pkid: u16) -> Vec<u8> {
    packet(0x62, &pkid.to_be_bytes())
}

pub fn pubcomp(pkid: u16) -> Vec<u8> {
    packet(0x70, &pkid.to_be_bytes())
}

/// A DISCONNECT (§3.14) with a reason code and properties.
pub fn disconnect(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encode());
    packet(0xe0, &body)
}

/// An AUTH (§3.15).
pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encode());
    packet(0xf0, &body)
}

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: u8,
    pub props: Props,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pkid: u16,
    pub props: Props,
    pub payload: Vec<u8>,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub pkid: u16,
    pub reason: u8,
    pub props: Props,
    /// The remaining length: 2 for the short success form.
    pub remaining_len: usize,
}

/// SUBACK or UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    pub props: Props,
    pub codes: Vec<u8>,
}

/// DISCONNECT or AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub props: Props,
}

/// What a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    ConnAck(ConnAck),
    Publish(Publish),
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

/// Reads fields off a packet body, failing on any shortfall.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("needs {n} bytes, {} left", self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("malformed variable byte integer".into())
    }

    fn bin(&mut self) -> Result<Vec<u8>, String> {
        let len = self.u16()?;
        Ok(self.take(usize::from(len))?.to_vec())
    }

    fn str(&mut self) -> Result<String, String> {
        let s = String::from_utf8(self.bin()?).map_err(|e| format!("not UTF-8: {e}"))?;
        if s.contains('\0') {
            return Err("string contains U+0000".into());
        }
        Ok(s)
    }

    fn props(&mut self) -> Result<Props, String> {
        let len = self.varint()? as usize;
        let mut r = Reader(self.take(len)?);
        let mut props = Props::new();
        while !r.0.is_empty() {
            let id = r.varint()?;
            let id = u8::try_from(id).map_err(|_| format!("property id {id}"))?;
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Value::Byte(r.u8()?),
                0x02 | 0x11 | 0x18 | 0x27 => Value::Four(r.u32()?),
                0x13 | 0x21 | 0x22 | 0x23 => Value::Two(r.u16()?),
                0x0B => Value::Var(r.varint()?),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Value::Str(r.str()?),
                0x09 | 0x16 => Value::Bin(r.bin()?),
                0x26 => Value::Pair(r.str()?, r.str()?),
                other => return Err(format!("unknown property {other:#04x}")),
            };
            props.0.push((id, value));
        }
        Ok(props)
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.0.len()))
        }
    }
}

fn expect_flags(name: &str, first: u8, flags: u8) -> Result<(), String> {
    if first & 0x0f == flags {
        Ok(())
    } else {
        Err(format!("{name} with flags {:#06b}", first & 0x0f))
    }
}

/// An acknowledgement's body: packet id, then reason code and properties only when
/// the remaining length says so (§3.4.2.1).
fn decode_ack(r: &mut Reader) -> Result<Ack, String> {
    let remaining_len = r.0.len();
    let pkid = r.u16()?;
    let reason = if r.0.is_empty() { 0 } else { r.u8()? };
    let props = if r.0.is_empty() {
        Props::new()
    } else {
        r.props()?
    };
    Ok(Ack {
        pkid,
        reason,
        props,
        remaining_len,
    })
}

fn decode_reason_and_props(r: &mut Reader) -> Result<Disconnect, String> {
    let reason = if r.0.is_empty() { 0 } else { r.u8()? };
    let props = if r.0.is_empty() {
        Props::new()
    } else {
        r.props()?
    };
    Ok(Disconnect { reason, props })
}

/// Decodes one whole frame as MQTT 5.0 sent by a server; strict about flags, lengths
/// and property types.
pub fn decode(frame: &[u8]) -> Result<Packet, String> {
    let first = frame[0];
    let mut r = Reader(&frame[1..]);
    let len = r.varint()? as usize;
    if r.0.len() != len {
        return Err(format!(
            "remaining length {len}, but {} bytes follow",
            r.0.len()
        ));
    }
    let packet = match first >> 4 {
        2 => {
            expect_flags("CONNACK", first, 0)?;
            let ack_flags = r.u8()?;
            if ack_flags & 0xfe != 0 {
                return Err(format!("CONNACK acknowledge flags {ack_flags:#04x}"));
            }
            let reason = r.u8()?;
            let props = r.props()?;
            Packet::ConnAck(ConnAck {
                session_present: ack_flags == 1,
                reason,
                props,
            })
        }
        3 => {
            let qos = (first >> 1) & 0x03;
            if qos == 3 {
                return Err("PUBLISH at QoS 3".into());
            }
            let dup = first & 0x08 != 0;
            if qos == 0 && dup {
                return Err("DUP set on a QoS 0 PUBLISH".into());
            }
            let topic = r.str()?;
            let pkid = if qos > 0 { r.u16()? } else { 0 };
            if qos > 0 && pkid == 0 {
                return Err("PUBLISH with packet identifier 0".into());
            }
            let props = r.props()?;
            let payload = std::mem::take(&mut r.0).to_vec();
            Packet::Publish(Publish {
                dup,
                qos,
                retain: first & 0x01 != 0,
                topic,
                pkid,
                props,
                payload,
            })
        }
        4 => {
            expect_flags("PUBACK", first, 0)?;
            Packet::PubAck(decode_ack(&mut r)?)
        }
        5 => {
            expect_flags("PUBREC", first, 0)?;
            Packet::PubRec(decode_ack(&mut r)?)
        }
        6 => {
            expect_flags("PUBREL", first, 2)?;
            Packet::PubRel(decode_ack(&mut r)?)
        }
        7 => {
            expect_flags("PUBCOMP", first, 0)?;
            Packet::PubComp(decode_ack(&mut r)?)
        }
        9 | 11 => {
            expect_flags("SUBACK/UNSUBACK", first, 0)?;
            let pkid = r.u16()?;
            let props = r.props()?;
            let codes = std::mem::take(&mut r.0).to_vec();
            let ack = SubAck { pkid, props, codes };
            if first >> 4 == 9 {
                Packet::SubAck(ack)
            } else {
                Packet::UnsubAck(ack)
            }
        }
        13 => {
            expect_flags("PINGRESP", first, 0)?;
            Packet::PingResp
        }
        14 => {
            expect_flags("DISCONNECT", first, 0)?;
            Packet::Disconnect(decode_reason_and_props(&mut r)?)
        }
        15 => {
            expect_flags("AUTH", first, 0)?;
            Packet::Auth(decode_reason_and_props(&mut r)?)
        }
        other => return Err(format!("packet type {other} from a server")),
    };
    r.end()?;
    Ok(packet)
}

/// An MQTT 5.0 client made of raw bytes.
pub struct Client {
    stream: TcpStream,
    input: Vec<u8>,
}

impl Client {
    pub async fn open(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            input: Vec::new(),
        }
    }

    /// Opens a connection, sends `connect` and returns the client with the CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Client, ConnAck) {
        let mut client = Client::open(addr).await;
        client.send(&connect.encode()).await;
        let ack = client.expect_connack().await;
        (client, ack)
    }

    /// A client connected with `connect`, whose CONNACK must be success.
    pub async fn connected(addr: SocketAddr, connect: Connect) -> Client {
        let (client, ack) = Client::connect(addr, connect).await;
        assert_eq!(ack.reason, 0, "{ack:?}");
        client
    }

    /// A client connected as `client_id` with clean start and no properties.
    pub async fn simple(addr: SocketAddr, client_id: &str) -> Client {
        Client::connected(addr, Connect::new(client_id)).await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut len = 0usize;
            for (i, byte) in self.input.iter().skip(1).take(4).enumerate() {
                len |= usize::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    let size = i + 2 + len;
                    if self.input.len() >= size {
                        return Some(self.input.drain(..size).collect());
                    }
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame's bytes, or `None` once the server closed the connection.
    /// Panics if nothing arrives within [`WAIT`].
    pub async fn recv_frame(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, self.next_frame())
            .await
            .expect("a packet or close within the wait")
    }

    /// The next packet, or `None` once the server closed the connection. Panics if
    /// nothing arrives within [`WAIT`] or the bytes are not a valid MQTT 5.0 packet.
    pub async fn recv(&mut self) -> Option<Packet> {
        let frame = self.recv_frame().await?;
        Some(decode(&frame).unwrap_or_else(|e| panic!("invalid packet {frame:02x?}: {e}")))
    }

    /// The next packet if one arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let frame = tokio::time::timeout(wait, self.next_frame())
            .await
            .ok()
            .flatten()?;
        Some(decode(&frame).unwrap_or_else(|e| panic!("invalid packet {frame:02x?}: {e}")))
    }

    /// The next packet; panics if the connection closed instead.
    pub async fn expect(&mut self) -> Packet {
        self.recv()
            .await
            .expect("a packet, but the connection closed")
    }

    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, which must carry `topic` and `payload`; acknowledged at QoS 1,
    /// and taken through PUBREC/PUBREL/PUBCOMP at QoS 2.
    pub async fn expect_message(&mut self, topic: &str, payload: &[u8]) -> Publish {
        let p = self.expect_publish().await;
        assert_eq!(p.topic, topic, "{p:?}");
        assert_eq!(p.payload, payload, "{p:?}");
        self.complete(&p).await;
        p
    }

    /// Acknowledges a received PUBLISH as a well-behaved client.
    pub async fn complete(&mut self, p: &Publish) {
        match p.qos {
            1 => self.send(&puback(p.pkid)).await,
            2 => {
                self.send(&pubrec(p.pkid)).await;
                match self.recv().await {
                    Some(Packet::PubRel(rel)) => assert_eq!(rel.pkid, p.pkid),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(&pubcomp(p.pkid)).await;
            }
            _ => {}
        }
    }

    /// Asserts nothing arrives for `wait` and the connection stays open.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        match tokio::time::timeout(wait, self.next_frame()).await {
            Err(_) => {}
            Ok(Some(frame)) => panic!("expected nothing, got {:?}", decode(&frame)),
            Ok(None) => panic!("expected nothing, but the connection closed"),
        }
    }

    /// Asserts the server closes the connection within [`WAIT`] without sending more.
    pub async fn expect_closed(&mut self) {
        if let Some(packet) = self.recv().await {
            panic!("expected the connection to close, got {packet:?}");
        }
    }

    /// Asserts the next packet is a DISCONNECT with `reason` and that the connection
    /// then closes; returns the DISCONNECT.
    pub async fn expect_disconnect(&mut self, reason: u8) -> Disconnect {
        let disconnect = match self.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("expected DISCONNECT {reason:#04x}, got {other:?}"),
        };
        assert_eq!(
            disconnect.reason, reason,
            "DISCONNECT reason {:#04x}, expected {reason:#04x}: {disconnect:?}",
            disconnect.reason
        );
        self.expect_closed().await;
        disconnect
    }

    /// Like [`Client::expect_disconnect`], and the DISCONNECT must explain itself with
    /// a Reason String.
    pub async fn expect_disconnect_explained(&mut self, reason: u8) -> String {
        let d = self.expect_disconnect(reason).await;
        let text = d
            .props
            .str_of(id::REASON_STRING)
            .unwrap_or_else(|| panic!("DISCONNECT {reason:#04x} without a Reason String: {d:?}"));
        assert!(!text.is_empty());
        text.to_string()
    }

    /// Subscribes with `props` and returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        pkid: u16,
        props: &Props,
        filters: &[(&str, u8)],
    ) -> SubAck {
        self.send(&subscribe(pkid, props, filters)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.pkid, pkid);
                assert_eq!(ack.codes.len(), filters.len(), "{ack:?}");
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter with an options byte; returns its reason code.
    pub async fn subscribe(&mut self, pkid: u16, filter: &str, options: u8) -> u8 {
        self.subscribe_with(pkid, &Props::new(), &[(filter, options)])
            .await
            .codes[0]
    }

    /// Publishes and completes the handshake, with success acknowledgements expected.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        pkid: u16,
        props: &Props,
        payload: &[u8],
    ) {
        self.publish_retain(topic, qos, pkid, false, props, payload)
            .await
    }

    pub async fn publish_retain(
        &mut self,
        topic: &str,
        qos: u8,
        pkid: u16,
        retain: bool,
        props: &Props,
        payload: &[u8],
    ) {
        self.send(&publish(topic, qos, pkid, retain, props, payload))
            .await;
        match qos {
            0 => {}
            1 => match self.recv().await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!((ack.pkid, ack.reason), (pkid, 0), "{ack:?}")
                }
                other => panic!("expected PUBACK, got {other:?}"),
            },
            _ => {
                match self.recv().await {
                    Some(Packet::PubRec(rec)) => {
                        assert_eq!((rec.pkid, rec.reason), (pkid, 0), "{rec:?}")
                    }
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(&pubrel(pkid)).await;
                match self.recv().await {
                    Some(Packet::PubComp(comp)) => {
                        assert_eq!((comp.pkid, comp.reason), (pkid, 0), "{comp:?}")
                    }
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// A round trip: once the PINGRESP is back, everything sent before has been handled.
    pub async fn ping(&mut self) {
        self.send(&PINGREQ).await;
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Closes the sending side without DISCONNECT, as a lost network connection looks
    /// to the server, and keeps reading.
    pub async fn close_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Sends DISCONNECT with `reason` and `props`, then waits for the server to close.
    pub async fn disconnect_with(mut self, reason: u8, props: &Props) {
        self.send(&disconnect(reason, props)).await;
        self.expect_closed().await;
    }

    /// A normal DISCONNECT, and the connection closed.
    pub async fn disconnect(self) {
        self.disconnect_with(0, &Props::new()).await;
    }
}
