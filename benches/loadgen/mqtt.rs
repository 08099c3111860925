//! A minimal MQTT 3.1.1 wire format: just the packets the load generator and the relay
//! exchange. Deliberately independent of Herald's own codec, so that the generator
//! measures every broker, Herald included, through the same neutral code.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

#[derive(Debug)]
pub struct Publish {
    pub qos: u8,
    pub pkid: u16,
    pub payload: Bytes,
}

#[derive(Debug)]
pub enum Packet {
    Connect {
        clean: bool,
    },
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP: the packet type and its packet id.
    Ack {
        kind: u8,
        pkid: u16,
    },
    /// The requested QoS of each filter.
    Subscribe {
        pkid: u16,
        qos: Vec<u8>,
    },
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    PingReq,
    Disconnect,
    /// Anything else the generator has no use for (PINGRESP, UNSUBACK, ...).
    Other(u8),
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn put_len(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

pub fn connect(buf: &mut BytesMut, client_id: &str, clean: bool, keep_alive: u16) {
    buf.put_u8(CONNECT << 4);
    put_len(buf, 10 + 2 + client_id.len());
    put_str(buf, b"MQTT");
    buf.put_u8(4);
    buf.put_u8(if clean { 0x02 } else { 0 });
    buf.put_u16(keep_alive);
    put_str(buf, client_id.as_bytes());
}

pub fn connack(buf: &mut BytesMut, session_present: bool, code: u8) {
    buf.put_slice(&[CONNACK << 4, 2, session_present as u8, code]);
}

pub fn publish(buf: &mut BytesMut, topic: &[u8], qos: u8, retain: bool, pkid: u16, payload: &[u8]) {
    buf.put_u8(PUBLISH << 4 | qos << 1 | retain as u8);
    let id_len = if qos > 0 { 2 } else { 0 };
    put_len(buf, 2 + topic.len() + id_len + payload.len());
    put_str(buf, topic);
    if qos > 0 {
        buf.put_u16(pkid);
    }
    buf.put_slice(payload);
}

/// PUBACK, PUBREC, PUBREL (which carries the reserved flags 0b0010) or PUBCOMP.
pub fn ack(buf: &mut BytesMut, kind: u8, pkid: u16) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    buf.put_u8(kind << 4 | flags);
    buf.put_u8(2);
    buf.put_u16(pkid);
}

pub fn subscribe(buf: &mut BytesMut, pkid: u16, filters: &[&str], qos: u8) {
    buf.put_u8(SUBSCRIBE << 4 | 0x02);
    put_len(buf, 2 + filters.iter().map(|f| 3 + f.len()).sum::<usize>());
    buf.put_u16(pkid);
    for f in filters {
        put_str(buf, f.as_bytes());
        buf.put_u8(qos);
    }
}

pub fn suback(buf: &mut BytesMut, pkid: u16, codes: &[u8]) {
    buf.put_u8(SUBACK << 4);
    put_len(buf, 2 + codes.len());
    buf.put_u16(pkid);
    buf.put_slice(codes);
}

pub fn pingresp(buf: &mut BytesMut) {
    buf.put_slice(&[PINGRESP << 4, 0]);
}

pub fn disconnect(buf: &mut BytesMut) {
    buf.put_slice(&[DISCONNECT << 4, 0]);
}

/// Takes one whole packet off the front of `buf`, if there is one, and returns it with
/// its raw bytes (the relay forwards those untouched).
pub fn decode(buf: &mut BytesMut) -> io::Result<Option<(Packet, Bytes)>> {
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= ((byte & 0x7f) as usize) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err(bad("remaining length over 4 bytes"));
        }
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let frame = buf.split_to(header + len).freeze();
    let first = frame[0];
    let mut body = frame.slice(header..);
    let packet = parse(first >> 4, first & 0x0f, &mut body)?;
    Ok(Some((packet, frame)))
}

fn take_u16(body: &mut Bytes) -> io::Result<u16> {
    if body.len() < 2 {
        return Err(bad("packet too short"));
    }
    Ok(body.get_u16())
}

fn take_str(body: &mut Bytes) -> io::Result<Bytes> {
    let len = take_u16(body)? as usize;
    if body.len() < len {
        return Err(bad("string longer than the packet"));
    }
    Ok(body.split_to(len))
}

fn parse(kind: u8, flags: u8, body: &mut Bytes) -> io::Result<Packet> {
    Ok(match kind {
        CONNECT => {
            take_str(body)?; // protocol name
            if body.len() < 4 {
                return Err(bad("short CONNECT"));
            }
            body.advance(1); // level
            let connect_flags = body.get_u8();
            Packet::Connect {
                clean: connect_flags & 0x02 != 0,
            }
        }
        CONNACK => {
            let v = take_u16(body)?;
            Packet::ConnAck {
                session_present: v >> 8 & 1 == 1,
                code: v as u8,
            }
        }
        PUBLISH => {
            let qos = flags >> 1 & 3;
            take_str(body)?; // topic
            let pkid = if qos > 0 { take_u16(body)? } else { 0 };
            Packet::Publish(Publish {
                qos,
                pkid,
                payload: std::mem::take(body),
            })
        }
        PUBACK | PUBREC | PUBREL | PUBCOMP => Packet::Ack {
            kind,
            pkid: take_u16(body)?,
        },
        SUBSCRIBE => {
            let pkid = take_u16(body)?;
            let mut qos = Vec::new();
            while !body.is_empty() {
                take_str(body)?;
                if body.is_empty() {
                    return Err(bad("SUBSCRIBE filter without QoS"));
                }
                qos.push(body.get_u8());
            }
            Packet::Subscribe { pkid, qos }
        }
        SUBACK => Packet::SubAck {
            pkid: take_u16(body)?,
            codes: body.to_vec(),
        },
        PINGREQ => Packet::PingReq,
        DISCONNECT => Packet::Disconnect,
        other => Packet::Other(other),
    })
}
