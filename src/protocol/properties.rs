//! MQTT 5.0 properties: the optional, typed fields after a packet's variable header.
//!
//! Decoding checks that each property is allowed in its packet, appears at most once
//! where the specification says so, and has a value in its range. Encoding goes through
//! [`WriteProperties`], so a message's properties are written straight from the
//! broker's message model without being copied into a packet first.

use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::decode::{DecodeError, Reader};
use crate::topic::TopicName;

/// The packet (or the will in CONNECT) a property list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyContext {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    fn name(self) -> &'static str {
        match self {
            PropertyContext::Connect => "CONNECT",
            PropertyContext::ConnAck => "CONNACK",
            PropertyContext::Publish => "PUBLISH",
            PropertyContext::Will => "will properties",
            PropertyContext::Ack => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            PropertyContext::Subscribe => "SUBSCRIBE",
            PropertyContext::SubAck => "SUBACK",
            PropertyContext::Unsubscribe => "UNSUBSCRIBE",
            PropertyContext::UnsubAck => "UNSUBACK",
            PropertyContext::Disconnect => "DISCONNECT",
            PropertyContext::Auth => "AUTH",
        }
    }
}

/// Property identifiers.
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

/// The packets each property may appear in (MQTT 5.0 table 2-4).
fn allowed_in(property: u8) -> Option<&'static [PropertyContext]> {
    use PropertyContext::*;
    Some(match property {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => &[Publish, Will],
        id::SUBSCRIPTION_IDENTIFIER => &[Publish, Subscribe],
        id::SESSION_EXPIRY_INTERVAL => &[Connect, ConnAck, Disconnect],
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => &[ConnAck],
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => &[Connect, ConnAck, Auth],
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => &[Connect],
        id::WILL_DELAY_INTERVAL => &[Will],
        id::SERVER_REFERENCE => &[ConnAck, Disconnect],
        id::REASON_STRING => &[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth],
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            &[Connect, ConnAck]
        }
        id::TOPIC_ALIAS => &[Publish],
        id::USER_PROPERTY => &[
            Connect,
            ConnAck,
            Publish,
            Will,
            Ack,
            Subscribe,
            SubAck,
            Unsubscribe,
            UnsubAck,
            Disconnect,
            Auth,
        ],
        _ => return None,
    })
}

/// Every MQTT 5.0 property, each absent unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyFields {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH to a client with overlapping subscriptions; one in SUBSCRIBE.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub reason_string: Option<ByteString>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    /// In the order received, which forwarding keeps.
    pub user_properties: Vec<(ByteString, ByteString)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

static NO_PROPERTIES: PropertyFields = PropertyFields {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

/// A packet's properties: nothing allocated while there are none, which is the common
/// case and always so for MQTT 3.x. Reads as [`PropertyFields`].
#[derive(Debug, Clone, Default)]
pub struct Properties(Option<Box<PropertyFields>>);

impl Deref for Properties {
    type Target = PropertyFields;

    fn deref(&self) -> &PropertyFields {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl From<PropertyFields> for Properties {
    fn from(fields: PropertyFields) -> Properties {
        Properties(Some(Box::new(fields)))
    }
}

impl Properties {
    /// The fields, to set some.
    pub fn fields_mut(&mut self) -> &mut PropertyFields {
        self.0.get_or_insert_with(Box::default)
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            None => true,
            Some(fields) => **fields == NO_PROPERTIES,
        }
    }
}

/// One property value, as the encoder writes it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Byte(u8),
    TwoBytes(u16),
    FourBytes(u32),
    Varint(u32),
    /// A UTF-8 string or binary data: both are written length-prefixed.
    Bytes(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
}

impl Value<'_> {
    fn len(self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::TwoBytes(_) => 2,
            Value::FourBytes(_) => 4,
            Value::Varint(v) => varint_len(v as usize),
            Value::Bytes(b) => 2 + b.len(),
            Value::Pair(k, v) => 4 + k.len() + v.len(),
        }
    }

    fn write(self, buf: &mut BytesMut) {
        match self {
            Value::Byte(v) => buf.put_u8(v),
            Value::TwoBytes(v) => buf.put_u16(v),
            Value::FourBytes(v) => buf.put_u32(v),
            Value::Varint(v) => put_varint(buf, v as usize),
            Value::Bytes(b) => put_bytes(buf, b),
            Value::Pair(k, v) => {
                put_bytes(buf, k);
                put_bytes(buf, v);
            }
        }
    }
}

/// Anything that can be written as a property list: a packet's properties, or a
/// message's as delivered.
pub trait WriteProperties {
    /// Calls `f` with each property's identifier and value, in writing order.
    fn each(&self, f: &mut dyn FnMut(u8, Value<'_>));
}

impl WriteProperties for PropertyFields {
    fn each(&self, f: &mut dyn FnMut(u8, Value<'_>)) {
        use Value::*;
        let fields = [
            (
                id::PAYLOAD_FORMAT_INDICATOR,
                self.payload_format_indicator.map(Byte),
            ),
            (
                id::MESSAGE_EXPIRY_INTERVAL,
                self.message_expiry_interval.map(FourBytes),
            ),
            (id::CONTENT_TYPE, bytes(&self.content_type)),
            (id::RESPONSE_TOPIC, bytes(&self.response_topic)),
            (
                id::CORRELATION_DATA,
                self.correlation_data.as_deref().map(Bytes),
            ),
            (
                id::SESSION_EXPIRY_INTERVAL,
                self.session_expiry_interval.map(FourBytes),
            ),
            (
                id::ASSIGNED_CLIENT_IDENTIFIER,
                bytes(&self.assigned_client_identifier),
            ),
            (id::SERVER_KEEP_ALIVE, self.server_keep_alive.map(TwoBytes)),
            (
                id::AUTHENTICATION_METHOD,
                bytes(&self.authentication_method),
            ),
            (
                id::AUTHENTICATION_DATA,
                self.authentication_data.as_deref().map(Bytes),
            ),
            (
                id::REQUEST_PROBLEM_INFORMATION,
                self.request_problem_information.map(Byte),
            ),
            (
                id::WILL_DELAY_INTERVAL,
                self.will_delay_interval.map(FourBytes),
            ),
            (
                id::REQUEST_RESPONSE_INFORMATION,
                self.request_response_information.map(Byte),
            ),
            (id::RESPONSE_INFORMATION, bytes(&self.response_information)),
            (id::SERVER_REFERENCE, bytes(&self.server_reference)),
            (id::REASON_STRING, bytes(&self.reason_string)),
            (id::RECEIVE_MAXIMUM, self.receive_maximum.map(TwoBytes)),
            (
                id::TOPIC_ALIAS_MAXIMUM,
                self.topic_alias_maximum.map(TwoBytes),
            ),
            (id::TOPIC_ALIAS, self.topic_alias.map(TwoBytes)),
            (id::MAXIMUM_QOS, self.maximum_qos.map(Byte)),
            (id::RETAIN_AVAILABLE, self.retain_available.map(Byte)),
            (
                id::MAXIMUM_PACKET_SIZE,
                self.maximum_packet_size.map(FourBytes),
            ),
            (
                id::WILDCARD_SUBSCRIPTION_AVAILABLE,
                self.wildcard_subscription_available.map(Byte),
            ),
            (
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                self.subscription_identifier_available.map(Byte),
            ),
            (
                id::SHARED_SUBSCRIPTION_AVAILABLE,
                self.shared_subscription_available.map(Byte),
            ),
        ];
        for (property, value) in fields {
            if let Some(value) = value {
                f(property, value);
            }
        }
        for &sub_id in &self.subscription_identifiers {
            f(id::SUBSCRIPTION_IDENTIFIER, Varint(sub_id));
        }
        for (key, value) in &self.user_properties {
            f(id::USER_PROPERTY, Pair(key.as_bytes(), value.as_bytes()));
        }
    }
}

/// A string property's value, if set.
fn bytes(s: &Option<ByteString>) -> Option<Value<'_>> {
    s.as_ref().map(|s| Value::Bytes(s.as_bytes()))
}

/// The bytes of the property list without its length prefix.
pub fn properties_len(properties: &dyn WriteProperties) -> usize {
    let mut len = 0;
    properties.each(&mut |_, value| len += 1 + value.len());
    len
}

/// Writes the property list, length first; `len` is its [`properties_len`].
pub fn write_properties(properties: &dyn WriteProperties, len: usize, buf: &mut BytesMut) {
    put_varint(buf, len);
    properties.each(&mut |property, value| {
        buf.put_u8(property);
        value.write(buf);
    });
}

/// Reads a property list (length first) for a packet of kind `context`.
pub fn read_properties(
    r: &mut Reader,
    context: PropertyContext,
) -> Result<Properties, DecodeError> {
    let len = r.varint()?;
    if len == 0 {
        return Ok(Properties::default());
    }
    let mut r = r.sub_reader(len)?;
    let mut p = PropertyFields::default();
    while r.has_remaining() {
        let property = u8::try_from(r.varint()?).map_err(|_| DecodeError::UnknownProperty(0xff))?;
        let contexts = allowed_in(property).ok_or(DecodeError::UnknownProperty(property))?;
        if !contexts.contains(&context) {
            return Err(DecodeError::UnexpectedProperty {
                property,
                packet: context.name(),
            });
        }
        match property {
            id::PAYLOAD_FORMAT_INDICATOR => set(
                &mut p.payload_format_indicator,
                property,
                flag(&mut r, property)?,
            )?,
            id::MESSAGE_EXPIRY_INTERVAL => set(&mut p.message_expiry_interval, property, r.u32()?)?,
            id::CONTENT_TYPE => set(&mut p.content_type, property, r.string()?)?,
            id::RESPONSE_TOPIC => {
                let topic = r.string()?;
                // A topic name: no wildcards (MQTT-3.3.2-14), not empty.
                if TopicName::new(topic.clone()).is_err() {
                    return Err(DecodeError::InvalidResponseTopic(topic.to_string()));
                }
                set(&mut p.response_topic, property, topic)?
            }
            id::CORRELATION_DATA => set(&mut p.correlation_data, property, r.binary()?)?,
            id::SUBSCRIPTION_IDENTIFIER => {
                let value = nonzero(r.varint()?, property)?;
                if context == PropertyContext::Subscribe && !p.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(property));
                }
                p.subscription_identifiers.push(value);
            }
            id::SESSION_EXPIRY_INTERVAL => set(&mut p.session_expiry_interval, property, r.u32()?)?,
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set(&mut p.assigned_client_identifier, property, r.string()?)?
            }
            id::SERVER_KEEP_ALIVE => set(&mut p.server_keep_alive, property, r.u16()?)?,
            id::AUTHENTICATION_METHOD => set(&mut p.authentication_method, property, r.string()?)?,
            id::AUTHENTICATION_DATA => set(&mut p.authentication_data, property, r.binary()?)?,
            id::REQUEST_PROBLEM_INFORMATION => set(
                &mut p.request_problem_information,
                property,
                flag(&mut r, property)?,
            )?,
            id::WILL_DELAY_INTERVAL => set(&mut p.will_delay_interval, property, r.u32()?)?,
            id::REQUEST_RESPONSE_INFORMATION => set(
                &mut p.request_response_information,
                property,
                flag(&mut r, property)?,
            )?,
            id::RESPONSE_INFORMATION => set(&mut p.response_information, property, r.string()?)?,
            id::SERVER_REFERENCE => set(&mut p.server_reference, property, r.string()?)?,
            id::REASON_STRING => set(&mut p.reason_string, property, r.string()?)?,
            id::RECEIVE_MAXIMUM => set(
                &mut p.receive_maximum,
                property,
                nonzero(r.u16()?, property)?,
            )?,
            id::TOPIC_ALIAS_MAXIMUM => set(&mut p.topic_alias_maximum, property, r.u16()?)?,
            // Zero and values above the maximum are the receiver's to judge (0x94).
            id::TOPIC_ALIAS => set(&mut p.topic_alias, property, r.u16()?)?,
            id::MAXIMUM_QOS => set(&mut p.maximum_qos, property, flag(&mut r, property)?)?,
            id::RETAIN_AVAILABLE => {
                set(&mut p.retain_available, property, flag(&mut r, property)?)?
            }
            id::USER_PROPERTY => {
                let key = r.string()?;
                let value = r.string()?;
                p.user_properties.push((key, value));
            }
            id::MAXIMUM_PACKET_SIZE => set(
                &mut p.maximum_packet_size,
                property,
                nonzero(r.u32()?, property)?,
            )?,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => set(
                &mut p.wildcard_subscription_available,
                property,
                flag(&mut r, property)?,
            )?,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => set(
                &mut p.subscription_identifier_available,
                property,
                flag(&mut r, property)?,
            )?,
            id::SHARED_SUBSCRIPTION_AVAILABLE => set(
                &mut p.shared_subscription_available,
                property,
                flag(&mut r, property)?,
            )?,
            other => return Err(DecodeError::UnknownProperty(other)),
        }
    }
    Ok(p.into())
}

/// Sets a property that may appear once.
fn set<T>(slot: &mut Option<T>, property: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(property));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property whose only values are 0 and 1.
fn flag(r: &mut Reader, property: u8) -> Result<u8, DecodeError> {
    match r.u8()? {
        value @ (0 | 1) => Ok(value),
        _ => Err(DecodeError::InvalidPropertyValue(property)),
    }
}

/// A property for which 0 is a protocol error.
fn nonzero<T: PartialEq + Default>(value: T, property: u8) -> Result<T, DecodeError> {
    if value == T::default() {
        Err(DecodeError::InvalidPropertyValue(property))
    } else {
        Ok(value)
    }
}

/// Bytes a variable byte integer of `value` takes.
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer (the remaining length's encoding).
pub fn put_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// A length-prefixed string or binary field.
pub fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}
