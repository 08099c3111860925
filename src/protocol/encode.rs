//! Encoder: appends packets to a caller-owned, reused buffer.

use bytes::{BufMut, BytesMut};

use super::packet::*;
use super::QoS;

/// Appends `packet` to `buf`.
pub fn encode(packet: &Packet, buf: &mut BytesMut) {
    match packet {
        Packet::Connect(c) => encode_connect(c, buf),
        Packet::ConnAck(ack) => {
            header(buf, 0x20, 2);
            buf.put_u8(u8::from(ack.session_present));
            buf.put_u8(ack.code as u8);
        }
        Packet::Publish(p) => encode_publish(
            PublishHeader {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                pkid: p.pkid,
            },
            p.topic.as_str(),
            &p.payload,
            buf,
        ),
        Packet::PubAck(id) => ack(buf, 0x40, *id),
        Packet::PubRec(id) => ack(buf, 0x50, *id),
        Packet::PubRel(id) => ack(buf, 0x62, *id),
        Packet::PubComp(id) => ack(buf, 0x70, *id),
        Packet::Subscribe(s) => {
            let len = 2 + s
                .filters
                .iter()
                .map(|(f, _)| 2 + f.len() + 1)
                .sum::<usize>();
            header(buf, 0x82, len);
            buf.put_u16(s.pkid);
            for (filter, qos) in &s.filters {
                string(buf, filter.as_bytes());
                buf.put_u8(*qos as u8);
            }
        }
        Packet::SubAck(s) => {
            header(buf, 0x90, 2 + s.codes.len());
            buf.put_u16(s.pkid);
            buf.extend(s.codes.iter().map(|c| c.to_byte()));
        }
        Packet::Unsubscribe(u) => {
            let len = 2 + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
            header(buf, 0xa2, len);
            buf.put_u16(u.pkid);
            for filter in &u.filters {
                string(buf, filter.as_bytes());
            }
        }
        Packet::UnsubAck(id) => ack(buf, 0xb0, *id),
        Packet::PingReq => header(buf, 0xc0, 0),
        Packet::PingResp => header(buf, 0xd0, 0),
        Packet::Disconnect => header(buf, 0xe0, 0),
    }
}

/// The fixed-header fields and packet identifier of an outgoing PUBLISH.
#[derive(Debug, Clone, Copy)]
pub struct PublishHeader {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Ignored for QoS 0.
    pub pkid: u16,
}

/// Appends a PUBLISH straight from its parts, so the outgoing path needs no `Packet`.
pub fn encode_publish(h: PublishHeader, topic: &str, payload: &[u8], buf: &mut BytesMut) {
    let has_id = h.qos != QoS::AtMostOnce;
    let len = 2 + topic.len() + if has_id { 2 } else { 0 } + payload.len();
    let first = 0x30 | (u8::from(h.dup && has_id) << 3) | ((h.qos as u8) << 1) | u8::from(h.retain);
    header(buf, first, len);
    string(buf, topic.as_bytes());
    if has_id {
        buf.put_u16(h.pkid);
    }
    buf.put_slice(payload);
}

fn encode_connect(c: &Connect, buf: &mut BytesMut) {
    let name = c.version.name();
    let mut len = 2 + name.len() + 1 + 1 + 2 + 2 + c.client_id.len();
    let mut flags = u8::from(c.clean_session) << 1;
    if let Some(will) = &c.will {
        len += 2 + will.topic.as_str().len() + 2 + will.payload.len();
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
    string(buf, name.as_bytes());
    buf.put_u8(c.version.level());
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    string(buf, c.client_id.as_bytes());
    if let Some(will) = &c.will {
        string(buf, will.topic.as_str().as_bytes());
        string(buf, &will.payload);
    }
    if let Some(user) = &c.username {
        string(buf, user.as_bytes());
    }
    if let Some(password) = &c.password {
        string(buf, password);
    }
}

fn ack(buf: &mut BytesMut, first: u8, pkid: u16) {
    header(buf, first, 2);
    buf.put_u16(pkid);
}

fn header(buf: &mut BytesMut, first: u8, mut remaining: usize) {
    buf.reserve(5 + remaining);
    buf.put_u8(first);
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if remaining == 0 {
            break;
        }
    }
}

/// A length-prefixed string or binary field.
fn string(buf: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}
