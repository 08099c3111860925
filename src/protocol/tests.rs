//! Tests of the codec: packets through `encode` then `decode`, and hand-built bytes for
//! everything the decoder must refuse.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::*;
use crate::topic::{TopicError, TopicName};

/// A maximum packet size no test packet reaches.
const NO_LIMIT: usize = usize::MAX;

fn topic(s: &str) -> TopicName {
    TopicName::new(ByteString::from(s)).unwrap()
}

/// `len` bytes that are not all alike, so a shifted or truncated copy is noticed.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// Encodes as MQTT 3.1.1.
fn encode(packet: &Packet, buf: &mut BytesMut) {
    Encoder::new(ProtocolVersion::V311).encode(packet, buf);
}

/// Decodes as MQTT 3.1.1.
fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    Decoder::new(ProtocolVersion::V311, max_packet_size).decode(buf)
}

fn encoded(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf);
    buf
}

/// Decodes `bytes` as MQTT 3.1.1; they must hold exactly one complete packet if it is
/// valid.
fn decode_bytes(bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode_whole(&mut Decoder::new(ProtocolVersion::V311, NO_LIMIT), bytes)
}

/// Decodes `bytes` with `decoder`; they must hold exactly one complete packet if it is
/// valid.
pub(super) fn decode_whole(decoder: &mut Decoder, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decoder
        .decode(&mut buf)?
        .expect("a complete packet is reported incomplete");
    assert!(buf.is_empty(), "{} bytes left in the buffer", buf.len());
    Ok(packet)
}

// Builders of raw packets, independent of the encoder.

/// A packet from its first byte and body, with the remaining length filled in.
pub(super) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A CONNECT body: protocol name and level, connect `flags`, keep alive 60, then
/// `fields` (client id, will topic and message, user name, password as flagged).
fn connect_body(name: &str, level: u8, flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = field(name.as_bytes());
    body.extend([level, flags, 0, 60]);
    for f in fields {
        body.extend(field(f));
    }
    body
}

fn connect_frame(flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    frame(0x10, &connect_body("MQTT", 4, flags, fields))
}

/// A PUBLISH with fixed-header `flags`; `pkid` is written when given, whatever the QoS.
fn publish_frame(flags: u8, topic: &[u8], pkid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend(pkid.map(u16::to_be_bytes).into_iter().flatten());
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

fn subscribe_frame(pkid: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (filter, options) in filters {
        body.extend(field(filter));
        body.push(*options);
    }
    frame(0x82, &body)
}

fn unsubscribe_frame(pkid: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for filter in filters {
        body.extend(field(filter));
    }
    frame(0xa2, &body)
}

/// The body of a CONNECT with every field: a QoS 1 will, user name and password.
fn full_connect_body() -> Vec<u8> {
    let fields: [&[u8]; 5] = [b"client", b"will/topic", b"bye", b"user", b"pass"];
    connect_body("MQTT", 4, 0b1100_1110, &fields)
}

/// One valid packet of each type, as its first byte and its body. PUBLISH is QoS 1 with
/// an empty payload, so that its body ends on its last field as most others do.
fn valid_frames() -> Vec<(u8, Vec<u8>)> {
    vec![
        (0x10, full_connect_body()),
        (0x20, vec![0, 0]),
        (0x32, [field(b"a/b"), vec![0, 1]].concat()),
        (0x40, vec![0, 1]),
        (0x50, vec![0, 1]),
        (0x62, vec![0, 1]),
        (0x70, vec![0, 1]),
        (0x82, [vec![0, 1], field(b"a/#"), vec![1]].concat()),
        (0x90, vec![0, 1, 0x80]),
        (0xa2, [vec![0, 1], field(b"a/#")].concat()),
        (0xb0, vec![0, 1]),
        (0xc0, vec![]),
        (0xd0, vec![]),
        (0xe0, vec![]),
    ]
}

/// Whether a packet type's body ends in a list (of filters or return codes) that may
/// hold any number of entries, as far as framing is concerned.
fn ends_in_list(first: u8) -> bool {
    matches!(first >> 4, 8..=10)
}

// Builders of `Packet`s.

fn publish(qos: QoS, dup: bool, retain: bool, name: &str, pkid: u16, payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic: topic(name),
        pkid,
        payload,
        properties: Properties::default(),
    })
}

fn publish0(name: &str, payload: Bytes) -> Packet {
    publish(QoS::AtMostOnce, false, false, name, 0, payload)
}

fn connect(
    clean_session: bool,
    keep_alive: u16,
    will: Option<LastWill>,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Packet {
    Packet::Connect(Box::new(Connect {
        version: ProtocolVersion::V311,
        clean_start: clean_session,
        keep_alive,
        client_id: ByteString::from("client-1"),
        will,
        username: username.map(ByteString::from),
        password: password.map(Bytes::copy_from_slice),
        properties: Properties::default(),
    }))
}

/// An MQTT 3.x UNSUBACK: its packet identifier alone.
fn unsuback(pkid: u16) -> Packet {
    Packet::UnsubAck(UnsubAck {
        pkid,
        codes: Vec::new(),
        properties: Properties::default(),
    })
}

fn will(qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic("clients/1/status"),
        payload: Bytes::from_static(b"\x00offline\xff"),
        qos,
        retain,
        properties: Properties::default(),
    }
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// At least one packet of every type, in its variants.
fn sample_packets() -> Vec<Packet> {
    let mut packets = Vec::new();
    let wills = [
        None,
        Some(will(QoS::AtMostOnce, false)),
        Some(will(QoS::ExactlyOnce, true)),
    ];
    // A password needs a user name.
    let logins: [(Option<&str>, Option<&[u8]>); 3] = [
        (None, None),
        (Some("user"), None),
        (Some("üser"), Some(b"\x00\xffpass")),
    ];
    for (i, will) in wills.iter().enumerate() {
        for (username, password) in logins {
            for clean_session in [false, true] {
                let keep_alive = [0, 60, u16::MAX][i];
                packets.push(connect(
                    clean_session,
                    keep_alive,
                    will.clone(),
                    username,
                    password,
                ));
            }
        }
    }
    for code in 0..=5 {
        for session_present in [false, true] {
            packets.push(Packet::ConnAck(ConnAck {
                session_present,
                reason: ReasonCode::from_connack_return_code(code).unwrap(),
                properties: Properties::default(),
            }));
        }
    }
    for payload in [Bytes::new(), pattern(1), pattern(200_000)] {
        for qos in QOS {
            let pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
            let dups: &[bool] = if qos == QoS::AtMostOnce {
                &[false]
            } else {
                &[false, true]
            };
            for &dup in dups {
                for retain in [false, true] {
                    packets.push(publish(qos, dup, retain, "a/b", pkid, payload.clone()));
                }
            }
        }
    }
    let acks: [fn(Ack) -> Packet; 4] = [
        Packet::PubAck,
        Packet::PubRec,
        Packet::PubRel,
        Packet::PubComp,
    ];
    for ack in acks {
        packets.extend([1, 0x1234, u16::MAX].map(|id| ack(Ack::new(id))));
    }
    packets.extend([1, 0x1234, u16::MAX].map(unsuback));
    let filters = ["a/b", "+/b/#", "#", "$SYS/+", "ü/€/𝄞"].map(ByteString::from);
    packets.push(Packet::Subscribe(Subscribe {
        pkid: 10,
        filters: filters
            .iter()
            .cloned()
            .zip(QOS.into_iter().map(SubscriptionOptions::qos).cycle())
            .collect(),
        properties: Properties::default(),
    }));
    packets.push(Packet::SubAck(SubAck {
        pkid: 10,
        codes: vec![
            ReasonCode::granted(QoS::AtMostOnce),
            ReasonCode::UNSPECIFIED_ERROR,
            ReasonCode::granted(QoS::ExactlyOnce),
            ReasonCode::granted(QoS::AtLeastOnce),
            ReasonCode::UNSPECIFIED_ERROR,
        ],
        properties: Properties::default(),
    }));
    packets.push(Packet::Unsubscribe(Unsubscribe {
        pkid: 11,
        filters: filters.to_vec(),
        properties: Properties::default(),
    }));
    packets.extend([
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ]);
    packets
}

#[test]
fn every_packet_round_trips() {
    let packets = sample_packets();
    let names: std::collections::HashSet<_> = packets.iter().map(Packet::name).collect();
    assert_eq!(names.len(), 14, "a packet type is missing from the samples");
    for packet in packets {
        assert_eq!(
            decode_bytes(&encoded(&packet)),
            Ok(packet.clone()),
            "{}",
            packet.name()
        );
    }
}

#[test]
fn encodes_the_expected_bytes() {
    let cases: [(Packet, Vec<u8>); 5] = [
        (Packet::PingReq, vec![0xc0, 0]),
        (Packet::PubRel(Ack::new(0x0102)), vec![0x62, 2, 1, 2]),
        (
            publish(QoS::AtLeastOnce, true, true, "a", 5, "hi".into()),
            vec![0x3b, 7, 0, 1, b'a', 0, 5, b'h', b'i'],
        ),
        (
            Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![(
                    ByteString::from("a"),
                    SubscriptionOptions::qos(QoS::ExactlyOnce),
                )],
                properties: Properties::default(),
            }),
            subscribe_frame(1, &[(b"a", 2)]),
        ),
        (
            connect(true, 60, None, Some("u"), Some(b"p")),
            connect_frame(0b1100_0010, &[b"client-1", b"u", b"p"]),
        ),
    ];
    for (packet, bytes) in cases {
        assert_eq!(encoded(&packet), bytes, "{}", packet.name());
    }
}

#[test]
fn remaining_length_takes_one_to_four_bytes() {
    // The boundaries of table 2.4 of the spec. A QoS 0 PUBLISH to "t" has a remaining
    // length of 3 + its payload.
    let cases: [(usize, &[u8]); 7] = [
        (3, &[0x03]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xff, 0xff, 0x7f]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining, length_bytes) in cases {
        let packet = publish0("t", pattern(remaining - 3));
        let bytes = encoded(&packet);
        assert_eq!(&bytes[1..=length_bytes.len()], length_bytes, "{remaining}");
        assert_eq!(bytes.len(), 1 + length_bytes.len() + remaining);
        assert_eq!(decode_bytes(&bytes), Ok(packet), "{remaining}");
    }
}

#[test]
fn waits_for_the_last_byte_without_consuming() {
    let packets = [
        connect(
            true,
            60,
            Some(will(QoS::AtLeastOnce, true)),
            Some("u"),
            Some(b"p"),
        ),
        publish(QoS::ExactlyOnce, false, true, "a/b", 9, pattern(300)),
        Packet::Subscribe(Subscribe {
            pkid: 3,
            filters: vec![(
                ByteString::from("a/+"),
                SubscriptionOptions::qos(QoS::AtLeastOnce),
            )],
            properties: Properties::default(),
        }),
        Packet::PingReq,
    ];
    for packet in packets {
        let bytes = encoded(&packet);
        let mut buf = BytesMut::new();
        for (i, &byte) in bytes.iter().enumerate() {
            buf.put_u8(byte);
            if i + 1 < bytes.len() {
                assert_eq!(
                    decode(&mut buf, NO_LIMIT),
                    Ok(None),
                    "{} at {i}",
                    packet.name()
                );
                assert_eq!(buf, bytes[..=i], "{} at {i}: buffer changed", packet.name());
            }
        }
        assert_eq!(decode(&mut buf, NO_LIMIT), Ok(Some(packet)));
        assert!(buf.is_empty());
    }
}

#[test]
fn decodes_consecutive_packets_one_at_a_time() {
    let first = publish(QoS::AtLeastOnce, false, false, "x", 1, pattern(20));
    let second = Packet::PingReq;
    let third = encoded(&Packet::PubAck(Ack::new(5)));
    let mut buf = encoded(&first);
    buf.extend_from_slice(&encoded(&second));
    buf.extend_from_slice(&third[..3]);

    assert_eq!(decode(&mut buf, NO_LIMIT), Ok(Some(first)));
    assert_eq!(decode(&mut buf, NO_LIMIT), Ok(Some(second)));
    assert_eq!(decode(&mut buf, NO_LIMIT), Ok(None));
    assert_eq!(buf, third[..3]);
    buf.put_u8(third[3]);
    assert_eq!(
        decode(&mut buf, NO_LIMIT),
        Ok(Some(Packet::PubAck(Ack::new(5))))
    );
}

#[test]
fn oversized_packet_is_refused_on_its_fixed_header() {
    // Remaining length 200 takes two bytes: 203 bytes in all.
    let bytes = encoded(&publish0("t", pattern(197)));
    assert_eq!(bytes.len(), 203);
    let mut partial = BytesMut::from(&bytes[..2]);
    assert_eq!(
        decode(&mut partial, 10),
        Ok(None),
        "fixed header not complete yet"
    );
    for max in [202, 100, 3] {
        let mut header_only = BytesMut::from(&bytes[..3]);
        let too_large = Err(DecodeError::PacketTooLarge { size: 203, max });
        assert_eq!(decode(&mut header_only, max), too_large);
    }
    // The limit is inclusive.
    assert!(matches!(decode(&mut bytes.clone(), 203), Ok(Some(_))));

    // The largest remaining length, declared by a lone fixed header.
    let mut huge = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0x7f][..]);
    let size = MAX_REMAINING_LENGTH + 5;
    let max = 1 << 20;
    assert_eq!(
        decode(&mut huge, max),
        Err(DecodeError::PacketTooLarge { size, max })
    );
}

#[test]
fn declared_size_alone_reserves_little() {
    // A peer's fixed header alone must not make the decoder allocate what it declares.
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0x7f][..]);
    assert_eq!(decode(&mut buf, NO_LIMIT), Ok(None));
    assert!(
        buf.capacity() < 1 << 20,
        "reserved {} bytes",
        buf.capacity()
    );
}

#[test]
fn remaining_length_has_at_most_four_bytes() {
    let incomplete: &[u8] = &[0x30, 0x80, 0x80, 0x80];
    assert_eq!(decode(&mut BytesMut::from(incomplete), NO_LIMIT), Ok(None));
    for bytes in [
        &[0x30, 0x80, 0x80, 0x80, 0x80][..],
        &[0xc0, 0xff, 0xff, 0xff, 0xff, 0x01],
    ] {
        let result = decode(&mut BytesMut::from(bytes), NO_LIMIT);
        assert_eq!(result, Err(DecodeError::MalformedVarint), "{bytes:x?}");
    }
}

#[test]
fn fixed_header_flags_must_be_the_reserved_values() {
    for (first, body) in valid_frames() {
        let (packet_type, wanted) = (first & 0xf0, first & 0x0f);
        if packet_type == 0x30 {
            continue; // PUBLISH flags carry fields; see the next test.
        }
        let packet = decode_bytes(&frame(first, &body)).unwrap().name();
        for flags in (0..16).filter(|&f| f != wanted) {
            let result = decode_bytes(&frame(packet_type | flags, &body));
            assert_eq!(result, Err(DecodeError::ReservedFlags { packet, flags }));
        }
    }
}

#[test]
fn publish_flags() {
    for flags in 0..16u8 {
        let (dup, qos_bits, retain) = (flags & 0b1000 != 0, (flags >> 1) & 0b11, flags & 1 != 0);
        let pkid = (qos_bits != 0).then_some(7);
        let result = decode_bytes(&publish_frame(flags, b"a", pkid, b"x"));
        let expected = match QoS::from_bits(qos_bits) {
            None => Err(DecodeError::InvalidQoS),
            Some(QoS::AtMostOnce) if dup => Err(DecodeError::ReservedFlags {
                packet: "PUBLISH",
                flags,
            }),
            Some(qos) => Ok(publish(
                qos,
                dup,
                retain,
                "a",
                pkid.unwrap_or(0),
                Bytes::from_static(b"x"),
            )),
        };
        assert_eq!(result, expected, "flags {flags:#06b}");
    }
}

#[test]
fn unknown_packet_types() {
    for packet_type in [0u8, 15] {
        for body in [&[][..], &[0, 1]] {
            let result = decode_bytes(&frame(packet_type << 4, body));
            assert_eq!(result, Err(DecodeError::UnknownPacketType(packet_type)));
        }
    }
}

/// Packets carrying `s` in each kind of string field the decoder reads.
fn packets_with_string(s: &[u8]) -> Vec<Vec<u8>> {
    vec![
        publish_frame(0, s, None, b"payload"),
        connect_frame(0b10, &[s]),
        connect_frame(0b0110, &[b"id", s, b"will message"]),
        connect_frame(0b1000_0010, &[b"id", s]),
        subscribe_frame(1, &[(b"a", 0), (s, 1)]),
        unsubscribe_frame(1, &[b"a", s]),
    ]
}

/// The string fields of a decoded packet.
fn strings_of(packet: &Packet) -> Vec<&str> {
    match packet {
        Packet::Connect(c) => [Some(&*c.client_id), c.username.as_deref()]
            .into_iter()
            .chain([c.will.as_ref().map(|w| w.topic.as_str())])
            .flatten()
            .collect(),
        Packet::Publish(p) => vec![p.topic.as_str()],
        Packet::Subscribe(s) => s.filters.iter().map(|(f, _)| &**f).collect(),
        Packet::Unsubscribe(u) => u.filters.iter().map(|f| &**f).collect(),
        _ => vec![],
    }
}

#[test]
fn strings_are_kept_as_sent() {
    // A byte order mark is a character like any other: kept, not stripped [MQTT-1.5.3-3].
    for s in ["a/b", "\u{feff}a/b", "ü/€/𝄞", "$SYS/x", "/"] {
        for bytes in packets_with_string(s.as_bytes()) {
            let packet = decode_bytes(&bytes).unwrap();
            assert!(strings_of(&packet).contains(&s), "{s:?} not in {packet:?}");
        }
    }
}

#[test]
fn strings_must_be_well_formed_utf8_without_nul() {
    let cases: [(&[u8], DecodeError); 7] = [
        (b"\xff", DecodeError::InvalidUtf8),
        (b"a\xc3", DecodeError::InvalidUtf8), // sequence cut short
        (b"\xed\xa0\x80", DecodeError::InvalidUtf8), // U+D800, a surrogate
        (b"\xc0\x80", DecodeError::InvalidUtf8), // overlong U+0000
        (b"\xf4\x90\x80\x80", DecodeError::InvalidUtf8), // beyond U+10FFFF
        (b"\0", DecodeError::NullCharacter),
        (b"a/\0/b", DecodeError::NullCharacter),
    ];
    for (s, error) in cases {
        for bytes in packets_with_string(s) {
            assert_eq!(decode_bytes(&bytes), Err(error.clone()), "{bytes:x?}");
        }
    }
}

#[test]
fn topic_names_have_no_wildcards_and_are_not_empty() {
    let cases = [
        ("", TopicError::Empty),
        ("+", TopicError::WildcardInName),
        ("a/+/b", TopicError::WildcardInName),
        ("#", TopicError::WildcardInName),
        ("a/#", TopicError::WildcardInName),
        ("a#", TopicError::WildcardInName),
    ];
    for (name, error) in cases {
        let in_publish = publish_frame(0, name.as_bytes(), None, b"");
        let in_will = connect_frame(0b0110, &[b"id", name.as_bytes(), b""]);
        for bytes in [in_publish, in_will] {
            assert_eq!(
                decode_bytes(&bytes),
                Err(DecodeError::InvalidTopic(error)),
                "{name:?}"
            );
        }
    }
}

#[test]
fn packet_identifier_zero_is_refused() {
    let mut cases = vec![
        publish_frame(0b0010, b"a", Some(0), b""),
        publish_frame(0b0100, b"a", Some(0), b""),
        subscribe_frame(0, &[(b"a", 0)]),
        unsubscribe_frame(0, &[b"a"]),
        frame(0x90, &[0, 0, 0]),
    ];
    cases.extend([0x40, 0x50, 0x62, 0x70, 0xb0].map(|first| frame(first, &[0, 0])));
    for bytes in cases {
        assert_eq!(
            decode_bytes(&bytes),
            Err(DecodeError::ZeroPacketId),
            "{bytes:x?}"
        );
    }
}

#[test]
fn subscribe_needs_filters_with_valid_options() {
    let none = Err(DecodeError::NoTopicFilters("SUBSCRIBE"));
    assert_eq!(decode_bytes(&subscribe_frame(1, &[])), none);
    let none = Err(DecodeError::NoTopicFilters("UNSUBSCRIBE"));
    assert_eq!(decode_bytes(&unsubscribe_frame(1, &[])), none);
    for options in 0..=u8::MAX {
        let result = decode_bytes(&subscribe_frame(1, &[(b"a", 0), (b"b", options)]));
        match QoS::from_bits(options) {
            Some(qos) => {
                let Ok(Packet::Subscribe(s)) = result else {
                    panic!("options {options:#04x}: {result:?}")
                };
                assert_eq!(
                    s.filters[1],
                    (ByteString::from("b"), SubscriptionOptions::qos(qos))
                );
            }
            None => assert_eq!(result, Err(DecodeError::InvalidSubscribeOptions(options))),
        }
    }
}

#[test]
fn acknowledgement_codes() {
    for byte in 0..=u8::MAX {
        let connack = decode_bytes(&frame(0x20, &[0, byte]));
        match ReasonCode::from_connack_return_code(byte) {
            Some(code) => assert!(matches!(connack, Ok(Packet::ConnAck(a)) if a.reason == code)),
            None => assert_eq!(connack, Err(DecodeError::InvalidConnAck), "{byte}"),
        }
        // Only bit 0 of the acknowledge flags is defined.
        let ack_flags = decode_bytes(&frame(0x20, &[byte, 0]));
        assert_eq!(ack_flags.is_ok(), byte <= 1, "{byte}");

        let suback = decode_bytes(&frame(0x90, &[0, 1, 0, byte]));
        match byte {
            0..=2 | 0x80 => assert!(suback.is_ok(), "{byte}"),
            _ => assert_eq!(suback, Err(DecodeError::InvalidSubAckCode(byte))),
        }
    }
}

#[test]
fn connect_flags_and_protocol() {
    use DecodeError::*;
    let id: &[u8] = b"id";
    let with_will: [&[u8]; 3] = [id, b"w", b"m"];
    let cases = [
        (connect_frame(0b0000_0011, &[id]), ConnectReservedFlag),
        (connect_frame(0b0000_1010, &[id]), InvalidWillFlags), // will QoS 1, no will
        (connect_frame(0b0001_0010, &[id]), InvalidWillFlags), // will QoS 2, no will
        (connect_frame(0b0010_0010, &[id]), InvalidWillFlags), // will retain, no will
        (connect_frame(0b0001_1110, &with_will), InvalidWillFlags), // will QoS 3
        (
            connect_frame(0b0100_0010, &[id, b"pw"]),
            PasswordWithoutUserName,
        ),
        (
            frame(0x10, &connect_body("MQTX", 4, 0b10, &[id])),
            InvalidProtocolName("MQTX".into()),
        ),
        (
            frame(0x10, &connect_body("MQTT", 6, 0b10, &[id])),
            UnsupportedProtocolLevel(6),
        ),
        (
            frame(0x10, &connect_body("MQTT", 3, 0b10, &[id])),
            UnsupportedProtocolLevel(3),
        ),
        (
            frame(0x10, &connect_body("MQIsdp", 4, 0b10, &[id])),
            UnsupportedProtocolLevel(4),
        ),
    ];
    for (bytes, error) in cases {
        assert_eq!(decode_bytes(&bytes), Err(error), "{bytes:x?}");
    }
    // The same fields with valid flags decode.
    for (flags, fields) in [
        (0b10, &[id][..]),
        (0b0011_0110, &with_will[..]),
        (0b1100_0000, &[id, b"u", b"pw"]),
    ] {
        assert!(
            decode_bytes(&connect_frame(flags, fields)).is_ok(),
            "{flags:#010b}"
        );
    }
}

#[test]
fn bytes_after_the_last_field_are_refused() {
    for (first, mut body) in valid_frames() {
        if first >> 4 == 3 || ends_in_list(first) {
            continue; // More bytes would be payload or another list entry.
        }
        body.extend([0xaa, 0xbb]);
        assert_eq!(
            decode_bytes(&frame(first, &body)),
            Err(DecodeError::TrailingBytes(2)),
            "{first:#x}"
        );
    }
}

#[test]
fn body_shorter_than_its_fields_is_truncated() {
    for (first, body) in valid_frames() {
        for cut in 0..body.len() {
            // A lone packet identifier is a complete body with an empty list, refused
            // by SUBSCRIBE and UNSUBSCRIBE (subscribe_needs_filters_with_valid_options)
            // and accepted by SUBACK, which a server never receives.
            if cut == 2 && ends_in_list(first) {
                continue;
            }
            let result = decode_bytes(&frame(first, &body[..cut]));
            assert_eq!(
                result,
                Err(DecodeError::Truncated),
                "{first:#x} cut at {cut}"
            );
        }
    }
}

/// Asserts that `field` lies within the memory of `buffer`.
fn assert_within(buffer: &Range<*const u8>, field: &[u8], what: &str) {
    let field = field.as_ptr_range();
    assert!(
        buffer.start <= field.start && field.end <= buffer.end,
        "{what} was copied out of the receive buffer"
    );
}

#[test]
fn decoded_fields_share_the_receive_buffer() {
    let mut buf = BytesMut::from(&frame(0x10, &full_connect_body())[..]);
    buf.extend_from_slice(&publish_frame(0b0010, b"a/b", Some(1), b"payload"));
    let memory = buf.as_ptr_range();

    let Ok(Some(Packet::Connect(c))) = decode(&mut buf, NO_LIMIT) else {
        panic!("not a CONNECT")
    };
    let w = c.will.as_ref().unwrap();
    assert_within(&memory, c.client_id.as_bytes(), "client id");
    assert_within(&memory, w.topic.as_str().as_bytes(), "will topic");
    assert_within(&memory, &w.payload, "will message");
    assert_within(
        &memory,
        c.username.as_ref().unwrap().as_bytes(),
        "user name",
    );
    assert_within(&memory, c.password.as_ref().unwrap(), "password");

    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, NO_LIMIT) else {
        panic!("not a PUBLISH")
    };
    assert_within(&memory, p.topic.as_str().as_bytes(), "topic");
    assert_within(&memory, &p.payload, "payload");
}

/// MQTT 3.1 ("MQIsdp", level 3) decodes as such, and a 3.1 CONNECT encodes back to the
/// same bytes.
#[test]
fn mqtt_3_1_connect_decodes_and_encodes() {
    let bytes = frame(0x10, &connect_body("MQIsdp", 3, 0b10, &[b"old-client"]));
    let Ok(Packet::Connect(connect)) = decode_bytes(&bytes) else {
        panic!("an MQTT 3.1 CONNECT decodes");
    };
    assert_eq!(connect.version, ProtocolVersion::V31);
    assert_eq!(&*connect.client_id, "old-client");
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), &mut out);
    assert_eq!(&out[..], &bytes[..]);
}
