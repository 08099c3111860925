//! Encoder: appends packets to a caller-owned, reused buffer, in the protocol version of
//! the connection and within what its peer said it accepts.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use super::packet::*;
use super::properties::{
    properties_len, put_bytes, put_varint, varint_len, write_properties, Value, WriteProperties,
};
use super::{Properties, PropertyFields, ProtocolVersion, QoS, ReasonCode};

/// The fixed-header fields and packet identifier of an outgoing PUBLISH.
#[derive(Debug, Clone, Copy)]
pub struct PublishHeader {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Ignored for QoS 0.
    pub pkid: u16,
}

/// Encodes one connection's packets.
#[derive(Debug)]
pub struct Encoder {
    version: ProtocolVersion,
    /// Whether the peer wants reason strings and user properties on packets other than
    /// PUBLISH, CONNACK and DISCONNECT (its Request Problem Information).
    problem_information: bool,
    /// The largest packet the peer accepts (its Maximum Packet Size).
    max_packet_size: u32,
    /// Topic aliases assigned towards the peer: only while it allows some. Boxed, as few
    /// connections use them.
    aliases: Option<Box<OutgoingAliases>>,
}

#[derive(Debug)]
struct OutgoingAliases {
    max: u16,
    by_topic: HashMap<ByteString, u16>,
}

impl Encoder {
    pub fn new(version: ProtocolVersion) -> Encoder {
        Encoder {
            version,
            problem_information: true,
            max_packet_size: u32::MAX,
            aliases: None,
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Keeps every packet within `max` bytes: the peer's Maximum Packet Size.
    pub fn limit_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Leaves reason strings and user properties off acknowledgements (Request Problem
    /// Information 0).
    pub fn omit_problem_information(&mut self) {
        self.problem_information = false;
    }

    /// Names topics by aliases 1 to `max` where that saves bytes (the peer's Topic
    /// Alias Maximum); the first `max` topics sent get one each.
    pub fn use_topic_aliases(&mut self, max: u16) {
        self.aliases = (max > 0).then(|| {
            Box::new(OutgoingAliases {
                max,
                by_topic: HashMap::new(),
            })
        });
    }

    /// Appends `packet` to `buf`. Reason strings and user properties are left out where
    /// the peer does not want them or where they would make the packet too large.
    pub fn encode(&mut self, packet: &Packet, buf: &mut BytesMut) {
        if let Packet::Publish(p) = packet {
            let header = PublishHeader {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                pkid: p.pkid,
            };
            // A PUBLISH built as a packet is a client's, or a test's: sent whole.
            self.publish(header, p.topic.as_str(), &p.payload, &*p.properties, buf);
            return;
        }
        let start = buf.len();
        let optional = matches!(
            packet,
            Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::SubAck(_)
                | Packet::UnsubAck(_)
                | Packet::Auth(_)
        );
        encode_packet(
            packet,
            self.version,
            buf,
            !optional || self.problem_information,
        );
        if buf.len() - start > self.max_packet_size as usize {
            buf.truncate(start);
            encode_packet(packet, self.version, buf, false);
        }
    }

    /// Appends a PUBLISH straight from its parts, so the outgoing path needs no
    /// `Packet`. Returns false, having written nothing, when the packet would exceed
    /// the peer's Maximum Packet Size: such a message is not sent to it at all.
    pub fn publish(
        &mut self,
        h: PublishHeader,
        topic: &str,
        payload: &[u8],
        properties: &dyn WriteProperties,
        buf: &mut BytesMut,
    ) -> bool {
        let has_id = h.qos != QoS::AtMostOnce;
        let fixed = 2 + if has_id { 2 } else { 0 } + payload.len();
        let first =
            0x30 | (u8::from(h.dup && has_id) << 3) | ((h.qos as u8) << 1) | u8::from(h.retain);
        if self.version != ProtocolVersion::V5 {
            let len = fixed + topic.len();
            if 1 + varint_len(len) + len > self.max_packet_size as usize {
                return false;
            }
            header(buf, first, len);
            put_bytes(buf, topic.as_bytes());
            if has_id {
                buf.put_u16(h.pkid);
            }
            buf.put_slice(payload);
            return true;
        }
        let alias = self.alias_for(topic);
        let (alias_value, topic_sent) = match alias {
            Alias::None => (None, topic),
            Alias::Known(n) => (Some(n), ""),
            Alias::New(n) => (Some(n), topic),
        };
        let properties = WithAlias {
            inner: properties,
            alias: alias_value,
        };
        let props_len = properties_len(&properties);
        let len = fixed + topic_sent.len() + varint_len(props_len) + props_len;
        if 1 + varint_len(len) + len > self.max_packet_size as usize {
            return false;
        }
        if let (Alias::New(n), Some(aliases)) = (alias, &mut self.aliases) {
            aliases.by_topic.insert(ByteString::from(topic), n);
        }
        header(buf, first, len);
        put_bytes(buf, topic_sent.as_bytes());
        if has_id {
            buf.put_u16(h.pkid);
        }
        write_properties(&properties, props_len, buf);
        buf.put_slice(payload);
        true
    }

    /// How `topic` is named in the next PUBLISH. A new alias is only proposed here and
    /// recorded once the packet is known to fit.
    fn alias_for(&self, topic: &str) -> Alias {
        let Some(aliases) = &self.aliases else {
            return Alias::None;
        };
        if let Some(&n) = aliases.by_topic.get(topic) {
            return Alias::Known(n);
        }
        match u16::try_from(aliases.by_topic.len() + 1) {
            Ok(n) if n <= aliases.max => Alias::New(n),
            _ => Alias::None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Alias {
    None,
    /// Already set up: the topic is left empty.
    Known(u16),
    /// Set up by this packet, which carries the topic too.
    New(u16),
}

/// A property list with a Topic Alias added.
struct WithAlias<'a> {
    inner: &'a dyn WriteProperties,
    alias: Option<u16>,
}

impl WriteProperties for WithAlias<'_> {
    fn each(&self, f: &mut dyn FnMut(u8, Value<'_>)) {
        if let Some(alias) = self.alias {
            f(super::properties::id::TOPIC_ALIAS, Value::TwoBytes(alias));
        }
        self.inner.each(f);
    }
}

/// The property list of a packet other than PUBLISH as it goes out: none in MQTT 3.x,
/// and without reason string and user properties where those are not wanted.
struct Body<'a> {
    fields: Option<std::borrow::Cow<'a, PropertyFields>>,
    /// Of the list alone, without its length prefix.
    len: usize,
}

impl<'a> Body<'a> {
    fn new(v5: bool, properties: &'a Properties, problem_information: bool) -> Body<'a> {
        use std::borrow::Cow;
        if !v5 {
            return Body {
                fields: None,
                len: 0,
            };
        }
        let fields: &PropertyFields = properties;
        let fields = if problem_information
            || (fields.reason_string.is_none() && fields.user_properties.is_empty())
        {
            Cow::Borrowed(fields)
        } else {
            Cow::Owned(PropertyFields {
                reason_string: None,
                user_properties: Vec::new(),
                ..fields.clone()
            })
        };
        let len = properties_len(&*fields);
        Body {
            fields: Some(fields),
            len,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written: the list and its length prefix, nothing in MQTT 3.x.
    fn encoded_len(&self) -> usize {
        match self.fields {
            Some(_) => varint_len(self.len) + self.len,
            None => 0,
        }
    }

    fn write(&self, buf: &mut BytesMut) {
        if let Some(fields) = &self.fields {
            write_properties(&**fields, self.len, buf);
        }
    }
}

/// Appends every packet but PUBLISH. `problem_information`: whether reason strings and
/// user properties go out.
fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
    problem_information: bool,
) {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(c) => encode_connect(c, buf),
        Packet::ConnAck(ack) => {
            let code = if v5 {
                ack.reason.0
            } else {
                // A refusal without a 3.x code is not sent (see `connack_return_code`);
                // should one be, "server unavailable" says least that is wrong.
                ack.reason.connack_return_code().unwrap_or(3)
            };
            let body = Body::new(v5, &ack.properties, problem_information);
            header(buf, 0x20, 2 + body.encoded_len());
            buf.put_u8(u8::from(ack.session_present));
            buf.put_u8(code);
            body.write(buf);
        }
        Packet::Publish(_) => unreachable!("PUBLISH is written by Encoder::publish"),
        Packet::PubAck(a) => encode_ack(buf, 0x40, a, v5, problem_information),
        Packet::PubRec(a) => encode_ack(buf, 0x50, a, v5, problem_information),
        Packet::PubRel(a) => encode_ack(buf, 0x62, a, v5, problem_information),
        Packet::PubComp(a) => encode_ack(buf, 0x70, a, v5, problem_information),
        Packet::Subscribe(s) => {
            let body = Body::new(v5, &s.properties, true);
            let filters: usize = s.filters.iter().map(|(f, _)| 2 + f.len() + 1).sum();
            header(buf, 0x82, 2 + body.encoded_len() + filters);
            buf.put_u16(s.pkid);
            body.write(buf);
            for (filter, options) in &s.filters {
                put_bytes(buf, filter.as_bytes());
                buf.put_u8(if v5 {
                    options.to_byte()
                } else {
                    options.qos as u8
                });
            }
        }
        Packet::SubAck(s) => {
            let body = Body::new(v5, &s.properties, problem_information);
            header(buf, 0x90, 2 + body.encoded_len() + s.codes.len());
            buf.put_u16(s.pkid);
            body.write(buf);
            buf.extend(
                s.codes
                    .iter()
                    .map(|c| if v5 { c.0 } else { c.suback_return_code() }),
            );
        }
        Packet::Unsubscribe(u) => {
            let body = Body::new(v5, &u.properties, true);
            let filters: usize = u.filters.iter().map(|f| 2 + f.len()).sum();
            header(buf, 0xa2, 2 + body.encoded_len() + filters);
            buf.put_u16(u.pkid);
            body.write(buf);
            for filter in &u.filters {
                put_bytes(buf, filter.as_bytes());
            }
        }
        Packet::UnsubAck(u) => {
            let body = Body::new(v5, &u.properties, problem_information);
            // MQTT 3.x has no reason codes here.
            let codes = if v5 { u.codes.len() } else { 0 };
            header(buf, 0xb0, 2 + body.encoded_len() + codes);
            buf.put_u16(u.pkid);
            body.write(buf);
            buf.extend(u.codes.iter().take(codes).map(|c| c.0));
        }
        Packet::PingReq => header(buf, 0xc0, 0),
        Packet::PingResp => header(buf, 0xd0, 0),
        Packet::Disconnect(d) => {
            let body = Body::new(v5, &d.properties, problem_information);
            encode_reason_tail(buf, 0xe0, None, d.reason, &body);
        }
        Packet::Auth(a) => {
            let body = Body::new(v5, &a.properties, problem_information);
            encode_reason_tail(buf, 0xf0, None, a.reason, &body);
        }
    }
}

fn encode_ack(buf: &mut BytesMut, first: u8, ack: &Ack, v5: bool, problem_information: bool) {
    let body = Body::new(v5, &ack.properties, problem_information);
    encode_reason_tail(buf, first, Some(ack.pkid), ack.reason, &body);
}

/// A packet made of an optional packet identifier, then in MQTT 5.0 a reason code and
/// properties, each left out when it and everything after it are the defaults.
fn encode_reason_tail(
    buf: &mut BytesMut,
    first: u8,
    pkid: Option<u16>,
    reason: ReasonCode,
    body: &Body,
) {
    let id_len = if pkid.is_some() { 2 } else { 0 };
    let with_reason = body.fields.is_some() && (reason != ReasonCode::SUCCESS || !body.is_empty());
    let with_body = with_reason && !body.is_empty();
    let len = id_len + usize::from(with_reason) + if with_body { body.encoded_len() } else { 0 };
    header(buf, first, len);
    if let Some(pkid) = pkid {
        buf.put_u16(pkid);
    }
    if with_reason {
        buf.put_u8(reason.0);
    }
    if with_body {
        body.write(buf);
    }
}

fn encode_connect(c: &Connect, buf: &mut BytesMut) {
    let v5 = c.version == ProtocolVersion::V5;
    let name = c.version.name();
    let body = Body::new(v5, &c.properties, true);
    let will_body = c.will.as_ref().map(|w| Body::new(v5, &w.properties, true));
    let mut len = 2 + name.len() + 1 + 1 + 2 + body.encoded_len() + 2 + c.client_id.len();
    let mut flags = u8::from(c.clean_start) << 1;
    if let (Some(will), Some(will_body)) = (&c.will, &will_body) {
        len += will_body.encoded_len() + 2 + will.topic.as_str().len() + 2 + will.payload.len();
        flags |= 0b100 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if let Some(user) = &c.username {
        len += 2 + user.len();
        flags |= 0b1000_0000;
    }
    if let Some(password) = &c.password {
        len += 2 + password.len();
        flags |= 0b100_0000;
    }
    header(buf, 0x10, len);
    put_bytes(buf, name.as_bytes());
    buf.put_u8(c.version.level());
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    body.write(buf);
    put_bytes(buf, c.client_id.as_bytes());
    if let (Some(will), Some(will_body)) = (&c.will, &will_body) {
        will_body.write(buf);
        put_bytes(buf, will.topic.as_str().as_bytes());
        put_bytes(buf, &will.payload);
    }
    if let Some(user) = &c.username {
        put_bytes(buf, user.as_bytes());
    }
    if let Some(password) = &c.password {
        put_bytes(buf, password);
    }
}

fn header(buf: &mut BytesMut, first: u8, remaining: usize) {
    buf.reserve(5 + remaining);
    buf.put_u8(first);
    put_varint(buf, remaining);
}
