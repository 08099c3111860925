//! Streaming decoder: takes whole packets off the front of a receive buffer.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::packet::*;
use super::{ProtocolVersion, QoS};
use crate::topic::{TopicError, TopicName};

/// Why bytes could not be decoded as an MQTT packet. Every variant is fatal to the
/// connection, except `UnsupportedProtocolLevel`, which the server answers with CONNACK
/// return code 0x01 before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed remaining length")]
    MalformedRemainingLength,
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
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubAckCode(u8),
}

/// The most the decoder reserves ahead for an incomplete packet; beyond it the buffer
/// grows only as bytes actually arrive.
const RESERVE_LIMIT: usize = 64 * 1024;

/// Takes one complete packet off the front of `buf`.
///
/// Returns `Ok(None)` — consuming nothing — while the packet is still incomplete. The
/// declared size is checked against `max_packet_size` as soon as the fixed header is
/// readable, before the body is buffered. Strings and payloads in the returned packet
/// share the buffer's memory.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining_len)) = read_fixed_header(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining_len;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        // Room for the rest, but never a large allocation on a peer's word alone.
        buf.reserve((size - buf.len()).min(RESERVE_LIMIT));
        return Ok(None);
    }
    let first = buf[0];
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header_len);
    decode_body(first >> 4, first & 0x0f, frame).map(Some)
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
        return Err(DecodeError::MalformedRemainingLength);
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

fn decode_body(packet_type: u8, flags: u8, body: Bytes) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let packet = match packet_type {
        1 => {
            expect_flags("CONNECT", flags, 0)?;
            Packet::Connect(decode_connect(&mut r)?)
        }
        2 => {
            expect_flags("CONNACK", flags, 0)?;
            let ack_flags = r.u8()?;
            let code = ConnectReturnCode::from_byte(r.u8()?).ok_or(DecodeError::InvalidConnAck)?;
            if ack_flags & !1 != 0 {
                return Err(DecodeError::InvalidConnAck);
            }
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                code,
            })
        }
        3 => Packet::Publish(decode_publish(flags, &mut r)?),
        4 => {
            expect_flags("PUBACK", flags, 0)?;
            Packet::PubAck(r.pkid()?)
        }
        5 => {
            expect_flags("PUBREC", flags, 0)?;
            Packet::PubRec(r.pkid()?)
        }
        6 => {
            expect_flags("PUBREL", flags, 0b0010)?;
            Packet::PubRel(r.pkid()?)
        }
        7 => {
            expect_flags("PUBCOMP", flags, 0)?;
            Packet::PubComp(r.pkid()?)
        }
        8 => {
            expect_flags("SUBSCRIBE", flags, 0b0010)?;
            let pkid = r.pkid()?;
            let mut filters = Vec::new();
            while r.has_remaining() {
                let filter = r.string()?;
                let options = r.u8()?;
                let qos = QoS::from_bits(options & 0b11)
                    .filter(|_| options & !0b11 == 0)
                    .ok_or(DecodeError::InvalidSubscribeOptions(options))?;
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters("SUBSCRIBE"));
            }
            Packet::Subscribe(Subscribe { pkid, filters })
        }
        9 => {
            expect_flags("SUBACK", flags, 0)?;
            let pkid = r.pkid()?;
            let mut codes = Vec::new();
            while r.has_remaining() {
                codes.push(match r.u8()? {
                    0x80 => SubscribeReturnCode::Failure,
                    byte => SubscribeReturnCode::Granted(
                        QoS::from_bits(byte).ok_or(DecodeError::InvalidSubAckCode(byte))?,
                    ),
                });
            }
            Packet::SubAck(SubAck { pkid, codes })
        }
        10 => {
            expect_flags("UNSUBSCRIBE", flags, 0b0010)?;
            let pkid = r.pkid()?;
            let mut filters = Vec::new();
            while r.has_remaining() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters("UNSUBSCRIBE"));
            }
            Packet::Unsubscribe(Unsubscribe { pkid, filters })
        }
        11 => {
            expect_flags("UNSUBACK", flags, 0)?;
            Packet::UnsubAck(r.pkid()?)
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
            Packet::Disconnect
        }
        other => return Err(DecodeError::UnknownPacketType(other)),
    };
    r.finish()?;
    Ok(packet)
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
    let flags = r.u8()?;
    if flags & 0b1 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_session = flags & 0b10 != 0;
    let will_flag = flags & 0b100 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    let has_password = flags & 0b100_0000 != 0;
    let has_username = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    if has_password && !has_username {
        return Err(DecodeError::PasswordWithoutUserName);
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if will_flag {
        let qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidWillFlags)?;
        let topic = TopicName::new(r.string()?)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = has_username.then(|| r.string()).transpose()?;
    let password = has_password.then(|| r.binary()).transpose()?;
    Ok(Connect {
        version,
        clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_publish(flags: u8, r: &mut Reader) -> Result<Publish, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0b1 != 0;
    if qos == QoS::AtMostOnce && dup {
        return Err(DecodeError::ReservedFlags {
            packet: "PUBLISH",
            flags,
        });
    }
    let topic = TopicName::new(r.string()?)?;
    let pkid = if qos == QoS::AtMostOnce { 0 } else { r.pkid()? };
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload: r.rest(),
    })
}

/// Field reader over one packet's body.
struct Reader(Bytes);

impl Reader {
    fn has_remaining(&self) -> bool {
        !self.0.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.0.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }

    fn pkid(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        Ok(self.0.split_to(len))
    }

    /// A UTF-8 string: well-formed (which excludes surrogates) and free of U+0000.
    fn string(&mut self) -> Result<ByteString, DecodeError> {
        let s = ByteString::try_from(self.binary()?).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s)
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
