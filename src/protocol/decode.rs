//! Streaming decoder: takes whole packets off the front of a receive buffer.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::packet::*;
use super::properties::{read_properties, PropertyContext};
use super::{Properties, ProtocolVersion, QoS, ReasonCode};
use crate::topic::{TopicError, TopicName};

/// Why bytes could not be decoded as an MQTT packet. Every variant is fatal to the
/// connection, except `UnsupportedProtocolLevel`, which the server answers with CONNACK
/// return code 0x01 before closing. [`DecodeError::reason_code`] names the MQTT 5.0
/// reason code to close with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed variable byte integer")]
    MalformedVarint,
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge { size: usize, max: usize },
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    #[error("invalid fixed-header flags {flags:#06b} for {packet}")]
    ReservedFlags { packet: &'static str, flags: u8 },
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("string contains U+0000")]
    NullCharacter,
    #[error("invalid topic name: {0}")]
    InvalidTopic(#[from] TopicError),
    #[error("packet ends before its fields do")]
    Truncated,
    #[error("{0} bytes left over after the last field")]
    TrailingBytes(usize),
    #[error("packet identifier 0 is not allowed")]
    ZeroPacketId,
    #[error("{0} carries no topic filter")]
    NoTopicFilters(&'static str),
    #[error("protocol name {0:?} is not MQTT")]
    InvalidProtocolName(String),
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    #[error("will QoS or retain set without the will flag, or will QoS 3")]
    InvalidWillFlags,
    #[error("password flag set without user name flag")]
    PasswordWithoutUserName,
    #[error("invalid CONNACK")]
    InvalidConnAck,
    #[error("invalid SUBSCRIBE options byte {0:#04x}")]
    InvalidSubscribeOptions(u8),
    #[error("retain handling 3 is not a valid value")]
    InvalidRetainHandling,
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubAckCode(u8),
    #[error("unknown property {0:#04x}")]
    UnknownProperty(u8),
    #[error("property {property:#04x} is not allowed in {packet}")]
    UnexpectedProperty { property: u8, packet: &'static str },
    #[error("property {0:#04x} appears more than once")]
    DuplicateProperty(u8),
    #[error("property {0:#04x} has a value out of its range")]
    InvalidPropertyValue(u8),
    #[error("topic alias {alias} is outside 1..={max}")]
    TopicAliasOutOfRange { alias: u16, max: u16 },
    #[error("empty topic with topic alias {0}, which was never set")]
    UnknownTopicAlias(u16),
    #[error("empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    #[error("response topic {0:?} is not a valid topic name")]
    InvalidResponseTopic(String),
}

impl DecodeError {
    /// The MQTT 5.0 reason code for a connection closed because of this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolLevel(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicAliasOutOfRange { .. } => ReasonCode::TOPIC_ALIAS_INVALID,
            DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::InvalidRetainHandling
            | DecodeError::UnknownTopicAlias(_)
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::InvalidResponseTopic(_)
            // MQTT 5.0 3.8.3 and 3.10.3: no topic filter is a protocol error.
            | DecodeError::NoTopicFilters(_)
            | DecodeError::ZeroPacketId => ReasonCode::PROTOCOL_ERROR,
            DecodeError::InvalidTopic(_) => ReasonCode::TOPIC_NAME_INVALID,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// The most the decoder reserves ahead for an incomplete packet; beyond it the buffer
/// grows only as bytes actually arrive.
const RESERVE_LIMIT: usize = 64 * 1024;

/// Decodes one connection's packets: its protocol version, the largest packet it may
/// send, and the topic aliases it has set up (MQTT 5.0), which are resolved here so
/// that nothing beyond the codec ever sees an alias.
#[derive(Debug)]
pub struct Decoder {
    version: ProtocolVersion,
    /// The highest topic alias the client may use: what the server announced.
    alias_max: u16,
    /// At most `MAX_REMAINING_LENGTH` plus the fixed header: fits.
    max_packet_size: u32,
    /// Topic of alias `n` at index `n - 1`, grown as aliases are set. Boxed: an idle
    /// connection's decoder stays small, and few clients use aliases.
    #[allow(clippy::box_collection)] // One pointer rather than a Vec's three.
    aliases: Option<Box<Vec<Option<TopicName>>>>,
}

impl Decoder {
    /// A decoder for a connection speaking `version`. Before CONNECT, any version does:
    /// CONNECT names its own.
    pub fn new(version: ProtocolVersion, max_packet_size: usize) -> Decoder {
        Decoder {
            version,
            alias_max: 0,
            max_packet_size: u32::try_from(max_packet_size).unwrap_or(u32::MAX),
            aliases: None,
        }
    }

    /// Accepts topic aliases 1 to `max` from now on (MQTT 5.0).
    pub fn allow_topic_aliases(&mut self, max: u16) {
        self.alias_max = max;
    }

    /// Takes one complete packet off the front of `buf`.
    ///
    /// Returns `Ok(None)` — consuming nothing — while the packet is still incomplete.
    /// The declared size is checked against the maximum packet size as soon as the fixed
    /// header is readable, before the body is buffered. Strings and payloads in the
    /// returned packet share the buffer's memory.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some((header_len, remaining_len)) = read_fixed_header(buf)? else {
            return Ok(None);
        };
        let size = header_len + remaining_len;
        let max = self.max_packet_size as usize;
        if size > max {
            return Err(DecodeError::PacketTooLarge { size, max });
        }
        if buf.len() < size {
            // Room for the rest, but never a large allocation on a peer's word alone.
            buf.reserve((size - buf.len()).min(RESERVE_LIMIT));
            return Ok(None);
        }
        let first = buf[0];
        let mut frame = buf.split_to(size).freeze();
        frame.advance(header_len);
        let mut packet = decode_body(first >> 4, first & 0x0f, frame, self.version)?;
        // Only MQTT 5.0 has topic aliases (and empty topic names).
        if let (ProtocolVersion::V5, Packet::Publish(publish)) = (self.version, &mut packet) {
            self.resolve_alias(publish)?;
        }
        Ok(Some(packet))
    }

    /// Applies a received Topic Alias: sets it when the topic is given, looks it up
    /// when the topic is empty.
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), DecodeError> {
        let Some(alias) = publish.properties.topic_alias else {
            return if publish.topic.as_str().is_empty() {
                Err(DecodeError::EmptyTopicWithoutAlias)
            } else {
                Ok(())
            };
        };
        if alias == 0 || alias > self.alias_max {
            return Err(DecodeError::TopicAliasOutOfRange {
                alias,
                max: self.alias_max,
            });
        }
        publish.properties.fields_mut().topic_alias = None;
        let slot = usize::from(alias - 1);
        if publish.topic.as_str().is_empty() {
            publish.topic = self
                .aliases
                .as_ref()
                .and_then(|aliases| aliases.get(slot).cloned().flatten())
                .ok_or(DecodeError::UnknownTopicAlias(alias))?;
        } else {
            let aliases = self.aliases.get_or_insert_with(Box::default);
            if aliases.len() <= slot {
                aliases.resize(slot + 1, None);
            }
            // Its own copy: the alias may outlive the receive buffer by far.
            aliases[slot] = Some(publish.topic.detached());
        }
        Ok(())
    }
}

/// Reads the fixed header: its length and the remaining length, or `None` if the
/// buffer does not yet hold all of it.
fn read_fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 2, value)));
        }
    }
    if buf.len() >= 5 {
        return Err(DecodeError::MalformedVarint);
    }
    Ok(None)
}

fn expect_flags(packet: &'static str, flags: u8, wanted: u8) -> Result<(), DecodeError> {
    if flags == wanted {
        Ok(())
    } else {
        Err(DecodeError::ReservedFlags { packet, flags })
    }
}

fn decode_body(
    packet_type: u8,
    flags: u8,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let v5 = version == ProtocolVersion::V5;
    let mut r = Reader(body);
    let packet = match packet_type {
        1 => {
            expect_flags("CONNECT", flags, 0)?;
            Packet::Connect(Box::new(decode_connect(&mut r)?))
        }
        2 => {
            expect_flags("CONNACK", flags, 0)?;
            let ack_flags = r.u8()?;
            if ack_flags & !1 != 0 {
                return Err(DecodeError::InvalidConnAck);
            }
            let code = r.u8()?;
            let reason = if v5 {
                ReasonCode(code)
            } else {
                ReasonCode::from_connack_return_code(code).ok_or(DecodeError::InvalidConnAck)?
            };
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                reason,
                properties: r.properties_if(v5, PropertyContext::ConnAck)?,
            })
        }
        3 => Packet::Publish(decode_publish(flags, &mut r, v5)?),
        4 => {
            expect_flags("PUBACK", flags, 0)?;
            Packet::PubAck(decode_ack(&mut r, v5)?)
        }
        5 => {
            expect_flags("PUBREC", flags, 0)?;
            Packet::PubRec(decode_ack(&mut r, v5)?)
        }
        6 => {
            expect_flags("PUBREL", flags, 0b0010)?;
            Packet::PubRel(decode_ack(&mut r, v5)?)
        }
        7 => {
            expect_flags("PUBCOMP", flags, 0)?;
            Packet::PubComp(decode_ack(&mut r, v5)?)
        }
        8 => {
            expect_flags("SUBSCRIBE", flags, 0b0010)?;
            let pkid = r.pkid()?;
            let properties = r.properties_if(v5, PropertyContext::Subscribe)?;
            let mut filters = Vec::new();
            while r.has_remaining() {
                let filter = r.string()?;
                let options = subscription_options(r.u8()?, v5)?;
                filters.push((filter, options));
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters("SUBSCRIBE"));
            }
            Packet::Subscribe(Subscribe {
                pkid,
                filters,
                properties,
            })
        }
        9 => {
            expect_flags("SUBACK", flags, 0)?;
            let pkid = r.pkid()?;
            let properties = r.properties_if(v5, PropertyContext::SubAck)?;
            let mut codes = Vec::new();
            while r.has_remaining() {
                codes.push(match r.u8()? {
                    byte @ (0..=2 | 0x80) => ReasonCode(byte),
                    byte if v5 && byte > 0x80 => ReasonCode(byte),
                    byte => return Err(DecodeError::InvalidSubAckCode(byte)),
                });
            }
            Packet::SubAck(SubAck {
                pkid,
                codes,
                properties,
            })
        }
        10 => {
            expect_flags("UNSUBSCRIBE", flags, 0b0010)?;
            let pkid = r.pkid()?;
            let properties = r.properties_if(v5, PropertyContext::Unsubscribe)?;
            let mut filters = Vec::new();
            while r.has_remaining() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters("UNSUBSCRIBE"));
            }
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                properties,
            })
        }
        11 => {
            expect_flags("UNSUBACK", flags, 0)?;
            let pkid = r.pkid()?;
            let properties = r.properties_if(v5, PropertyContext::UnsubAck)?;
            let mut codes = Vec::new();
            while v5 && r.has_remaining() {
                codes.push(ReasonCode(r.u8()?));
            }
            Packet::UnsubAck(UnsubAck {
                pkid,
                codes,
                properties,
            })
        }
        12 => {
            expect_flags("PINGREQ", flags, 0)?;
            Packet::PingReq
        }
        13 => {
            expect_flags("PINGRESP", flags, 0)?;
            Packet::PingResp
        }
        14 => {
            expect_flags("DISCONNECT", flags, 0)?;
            let (reason, properties) = r.reason_and_properties(v5, PropertyContext::Disconnect)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        15 if v5 => {
            expect_flags("AUTH", flags, 0)?;
            let (reason, properties) = r.reason_and_properties(v5, PropertyContext::Auth)?;
            Packet::Auth(Auth { reason, properties })
        }
        other => return Err(DecodeError::UnknownPacketType(other)),
    };
    r.finish()?;
    Ok(packet)
}

/// A SUBSCRIBE options byte: only the QoS in MQTT 3.x, every option in 5.0.
fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v5 { 0b1100_0000 } else { !0b11 };
    if byte & reserved != 0 {
        return Err(DecodeError::InvalidSubscribeOptions(byte));
    }
    let qos = QoS::from_bits(byte & 0b11).ok_or(DecodeError::InvalidSubscribeOptions(byte))?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscription,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: in MQTT 5.0, the reason code and properties may be
/// left out, success and none.
fn decode_ack(r: &mut Reader, v5: bool) -> Result<Ack, DecodeError> {
    let pkid = r.pkid()?;
    let (reason, properties) = r.reason_and_properties(v5, PropertyContext::Ack)?;
    Ok(Ack {
        pkid,
        reason,
        properties,
    })
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.string()?;
    let level = r.u8()?;
    let version = match ProtocolVersion::from_name_and_level(&name, level) {
        Some(version) => version,
        // A known protocol at a level this server does not speak: refused with 0x01.
        None if matches!(&*name, "MQTT" | "MQIsdp") => {
            return Err(DecodeError::UnsupportedProtocolLevel(level))
        }
        None => return Err(DecodeError::InvalidProtocolName(name.to_string())),
    };
    let v5 = version == ProtocolVersion::V5;
    let flags = r.u8()?;
    if flags & 0b1 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0b10 != 0;
    let will_flag = flags & 0b100 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    let has_password = flags & 0b100_0000 != 0;
    let has_username = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    // MQTT 5.0 allows a password without a user name.
    if has_password && !has_username && !v5 {
        return Err(DecodeError::PasswordWithoutUserName);
    }
    let keep_alive = r.u16()?;
    let properties = r.properties_if(v5, PropertyContext::Connect)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidWillFlags)?;
        let properties = r.properties_if(v5, PropertyContext::Will)?;
        let topic = TopicName::new(r.string()?)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = has_username.then(|| r.string()).transpose()?;
    let password = has_password.then(|| r.binary()).transpose()?;
    Ok(Connect {
        version,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn decode_publish(flags: u8, r: &mut Reader, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0b1 != 0;
    if qos == QoS::AtMostOnce && dup {
        return Err(DecodeError::ReservedFlags {
            packet: "PUBLISH",
            flags,
        });
    }
    let raw_topic = r.string()?;
    // MQTT 5.0: an empty topic stands for a topic alias, resolved by the `Decoder`.
    let topic = if v5 && raw_topic.is_empty() {
        TopicName::unresolved_alias()
    } else {
        TopicName::new(raw_topic)?
    };
    let pkid = if qos == QoS::AtMostOnce { 0 } else { r.pkid()? };
    let properties = r.properties_if(v5, PropertyContext::Publish)?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload: r.rest(),
        properties,
    })
}

/// Field reader over one packet's body.
pub struct Reader(Bytes);

impl Reader {
    pub fn has_remaining(&self) -> bool {
        !self.0.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.0.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    /// A variable byte integer.
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVarint)
    }

    /// A reader over the next `len` bytes, which this one skips.
    pub fn sub_reader(&mut self, len: u32) -> Result<Reader, DecodeError> {
        let len = len as usize;
        self.need(len)?;
        Ok(Reader(self.0.split_to(len)))
    }

    fn pkid(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        Ok(self.0.split_to(len))
    }

    /// A UTF-8 string: well-formed (which excludes surrogates) and free of U+0000.
    pub fn string(&mut self) -> Result<ByteString, DecodeError> {
        let s = ByteString::try_from(self.binary()?).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s)
    }

    /// MQTT 5.0 properties; none in MQTT 3.x, which has no such field.
    fn properties_if(
        &mut self,
        v5: bool,
        context: PropertyContext,
    ) -> Result<Properties, DecodeError> {
        if v5 {
            read_properties(self, context)
        } else {
            Ok(Properties::default())
        }
    }

    /// The optional tail of MQTT 5.0 acknowledgements, DISCONNECT and AUTH: a reason
    /// code (success when absent), then properties (none when absent).
    fn reason_and_properties(
        &mut self,
        v5: bool,
        context: PropertyContext,
    ) -> Result<(ReasonCode, Properties), DecodeError> {
        if !v5 || !self.has_remaining() {
            return Ok((ReasonCode::SUCCESS, Properties::default()));
        }
        let reason = ReasonCode(self.u8()?);
        let properties = if self.has_remaining() {
            read_properties(self, context)?
        } else {
            Properties::default()
        };
        Ok((reason, properties))
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// The protocol version a CONNECT at the front of `buf` asks for, if that much of it is
/// there and readable: to answer a CONNECT that fails to decode in its own version.
pub fn connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let (header_len, _) = read_fixed_header(buf).ok()??;
    let start = buf.get(header_len..)?;
    // "MQIsdp" is the longest name: 2 + 6 bytes, then the level.
    let mut r = Reader(Bytes::copy_from_slice(&start[..start.len().min(9)]));
    let name = r.string().ok()?;
    ProtocolVersion::from_name_and_level(&name, r.u8().ok()?)
}
