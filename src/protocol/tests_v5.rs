//! MQTT 5.0 codec tests: every packet type with properties through `Encoder` then
//! `Decoder`, hand-built bytes for what must be refused, topic aliases both ways, and
//! what the encoder leaves out for the peer's sake.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::tests::{decode_whole, frame};
use super::*;
use crate::topic::TopicName;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn s(text: &str) -> ByteString {
    ByteString::from(text)
}

fn topic(text: &str) -> TopicName {
    TopicName::new(s(text)).unwrap()
}

fn encode(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    Encoder::new(V5).encode(packet, &mut buf);
    buf
}

fn decoder() -> Decoder {
    let mut decoder = Decoder::new(V5, usize::MAX);
    decoder.allow_topic_aliases(10);
    decoder
}

fn props(fields: PropertyFields) -> Properties {
    fields.into()
}

fn message_properties() -> PropertyFields {
    PropertyFields {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some(s("text/plain")),
        response_topic: Some(s("reply/to")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![(s("k"), s("v1")), (s("k"), s("v2")), (s("a"), s(""))],
        ..PropertyFields::default()
    }
}

fn samples() -> Vec<Packet> {
    let reason_only = |reason: u8| {
        Properties::from(PropertyFields {
            reason_string: Some(s(&format!("reason {reason:#x}"))),
            ..PropertyFields::default()
        })
    };
    let mut packets = vec![
        Packet::Connect(Box::new(Connect {
            version: V5,
            clean_start: false,
            keep_alive: 30,
            client_id: s("c5"),
            will: Some(LastWill {
                topic: topic("will/t"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: props(PropertyFields {
                    will_delay_interval: Some(5),
                    ..message_properties()
                }),
            }),
            username: None,
            // MQTT 5.0 allows a password without a user name.
            password: Some(Bytes::from_static(b"pw")),
            properties: props(PropertyFields {
                session_expiry_interval: Some(u32::MAX),
                receive_maximum: Some(10),
                maximum_packet_size: Some(1024),
                topic_alias_maximum: Some(5),
                request_response_information: Some(1),
                request_problem_information: Some(0),
                user_properties: vec![(s("x"), s("y"))],
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(b"d")),
                ..PropertyFields::default()
            }),
        })),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: props(PropertyFields {
                assigned_client_identifier: Some(s("auto-1")),
                server_keep_alive: Some(60),
                receive_maximum: Some(20),
                maximum_qos: Some(1),
                retain_available: Some(1),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(10),
                wildcard_subscription_available: Some(1),
                subscription_identifier_available: Some(1),
                shared_subscription_available: Some(0),
                response_information: Some(s("r/")),
                server_reference: Some(s("other")),
                session_expiry_interval: Some(9),
                ..PropertyFields::default()
            }),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::BAD_AUTHENTICATION_METHOD,
            properties: Properties::default(),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("a/b"),
            pkid: 7,
            payload: Bytes::from_static(b"payload"),
            properties: props(PropertyFields {
                subscription_identifiers: vec![1, 268_435_455],
                ..message_properties()
            }),
        }),
        Packet::Subscribe(Subscribe {
            pkid: 3,
            filters: vec![
                (
                    s("a/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::Never,
                    },
                ),
                (s("$share/g/#"), SubscriptionOptions::qos(QoS::ExactlyOnce)),
            ],
            properties: props(PropertyFields {
                subscription_identifiers: vec![300],
                ..PropertyFields::default()
            }),
        }),
        Packet::SubAck(SubAck {
            pkid: 3,
            codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID],
            properties: reason_only(0x8f),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 4,
            filters: vec![s("a/+")],
            properties: props(PropertyFields {
                user_properties: vec![(s("u"), s("1"))],
                ..PropertyFields::default()
            }),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 4,
            codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: Properties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SESSION_TAKEN_OVER,
            properties: Properties::default(),
        }),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::PROTOCOL_ERROR,
            properties: props(PropertyFields {
                session_expiry_interval: Some(0),
                server_reference: Some(s("elsewhere")),
                ..PropertyFields::default()
            }),
        }),
        Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: props(PropertyFields {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(b"xyz")),
                ..PropertyFields::default()
            }),
        }),
    ];
    let acks: [fn(Ack) -> Packet; 4] = [
        Packet::PubAck,
        Packet::PubRec,
        Packet::PubRel,
        Packet::PubComp,
    ];
    for ack in acks {
        packets.push(ack(Ack::new(1)));
        packets.push(ack(Ack::with_reason(
            2,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        )));
        packets.push(ack(Ack {
            pkid: 3,
            reason: ReasonCode::UNSPECIFIED_ERROR,
            properties: reason_only(0x80),
        }));
    }
    packets
}

#[test]
fn every_packet_round_trips_with_properties() {
    let packets = samples();
    let names: std::collections::HashSet<_> = packets.iter().map(Packet::name).collect();
    assert_eq!(names.len(), 15, "a packet type is missing from the samples");
    for packet in packets {
        let bytes = encode(&packet);
        assert_eq!(
            decode_whole(&mut decoder(), &bytes),
            Ok(packet.clone()),
            "{packet:?}"
        );
    }
}

/// Acknowledgements, DISCONNECT and AUTH leave out what is the default: the reason code
/// when it is success and there are no properties, the properties when there are none.
#[test]
fn defaults_are_left_out() {
    assert_eq!(&encode(&Packet::PubAck(Ack::new(5)))[..], [0x40, 2, 0, 5]);
    assert_eq!(
        &encode(&Packet::PubComp(Ack::with_reason(5, ReasonCode(0x92))))[..],
        [0x70, 3, 0, 5, 0x92]
    );
    assert_eq!(
        &encode(&Packet::Disconnect(Disconnect::default()))[..],
        [0xe0, 0]
    );
    let taken_over = Disconnect {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        properties: Properties::default(),
    };
    assert_eq!(
        &encode(&Packet::Disconnect(taken_over))[..],
        [0xe0, 1, 0x8e]
    );
    // CONNACK always has a property length, zero when empty (MQTT 5.0 2.2.2.1).
    let connack = ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_eq!(&encode(&Packet::ConnAck(connack))[..], [0x20, 3, 0, 0, 0]);
    // And the short forms decode to the defaults.
    for bytes in [
        &[0x40, 2, 0, 5][..],
        &[0x40, 3, 0, 5, 0][..],
        &[0x40, 4, 0, 5, 0, 0][..],
    ] {
        assert_eq!(
            decode_whole(&mut decoder(), bytes),
            Ok(Packet::PubAck(Ack::new(5)))
        );
    }
}

#[test]
fn property_errors_are_refused_with_their_reason_codes() {
    let publish_with = |properties: &[u8]| {
        let mut body = vec![0, 1, b't'];
        body.push(properties.len() as u8);
        body.extend_from_slice(properties);
        frame(0x30, &body)
    };
    let cases: [(&[u8], DecodeError, u8); 7] = [
        // Session Expiry Interval is not a PUBLISH property.
        (
            &[0x11, 0, 0, 0, 1],
            DecodeError::UnexpectedProperty {
                property: 0x11,
                packet: "PUBLISH",
            },
            0x81,
        ),
        (
            &[0x01, 0, 0x01, 1],
            DecodeError::DuplicateProperty(0x01),
            0x82,
        ),
        (&[0x01, 2], DecodeError::InvalidPropertyValue(0x01), 0x82),
        (&[0x7f, 0], DecodeError::UnknownProperty(0x7f), 0x81),
        // A property list longer than the packet.
        (&[0x02, 0, 0], DecodeError::Truncated, 0x81),
        (&[0x0b, 0], DecodeError::InvalidPropertyValue(0x0b), 0x82),
        // A Response Topic is a topic name: no wildcards (MQTT-3.3.2-14).
        (
            &[0x08, 0, 3, b'a', b'/', b'+'],
            DecodeError::InvalidResponseTopic("a/+".into()),
            0x82,
        ),
    ];
    for (properties, error, reason) in cases {
        let result = decode_whole(&mut decoder(), &publish_with(properties));
        assert_eq!(result, Err(error.clone()), "{properties:x?}");
        assert_eq!(error.reason_code(), ReasonCode(reason), "{error}");
    }
    // Receive Maximum 0 in CONNECT is a protocol error.
    let connect = Packet::Connect(Box::new(Connect {
        version: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: s("c"),
        will: None,
        username: None,
        password: None,
        properties: props(PropertyFields {
            receive_maximum: Some(1),
            ..PropertyFields::default()
        }),
    }));
    let mut bytes = encode(&connect).to_vec();
    let at = bytes.len() - 4; // ... 0x21 0 1, then the client id "c" (2 + 1 bytes)
    assert_eq!(&bytes[at - 2..at + 1], [0x21, 0, 1]);
    bytes[at] = 0;
    assert_eq!(
        decode_whole(&mut decoder(), &bytes),
        Err(DecodeError::InvalidPropertyValue(0x21))
    );
}

#[test]
fn subscription_options_are_checked() {
    let subscribe = |options: u8| frame(0x82, &[0, 1, 0, 0, 1, b'a', options]);
    let Ok(Packet::Subscribe(s)) = decode_whole(&mut decoder(), &subscribe(0b10_1110)) else {
        panic!("valid options refused");
    };
    assert_eq!(
        s.filters[0].1,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        }
    );
    assert_eq!(
        decode_whole(&mut decoder(), &subscribe(0b11_0000)),
        Err(DecodeError::InvalidRetainHandling)
    );
    assert_eq!(
        decode_whole(&mut decoder(), &subscribe(0b0100_0000)),
        Err(DecodeError::InvalidSubscribeOptions(0b0100_0000))
    );
    // The same options byte in MQTT 3.1.1 is malformed: only the QoS is defined there.
    let mut v311 = Decoder::new(ProtocolVersion::V311, usize::MAX);
    let mut buf = BytesMut::from(&frame(0x82, &[0, 1, 0, 1, b'a', 0b0100])[..]);
    assert_eq!(
        v311.decode(&mut buf),
        Err(DecodeError::InvalidSubscribeOptions(0b0100))
    );
}

/// A PUBLISH with a topic and an alias sets the alias; one with an empty topic and the
/// alias uses it. Alias 0, one above the maximum, and an empty topic with an unknown
/// alias or none are errors.
#[test]
fn received_topic_aliases_are_resolved() {
    let publish = |topic: &str, alias: Option<u16>| {
        let mut body = vec![0, topic.len() as u8];
        body.extend_from_slice(topic.as_bytes());
        match alias {
            Some(a) => body.extend_from_slice(&[3, 0x23, (a >> 8) as u8, a as u8]),
            None => body.push(0),
        }
        body.extend_from_slice(b"p");
        frame(0x30, &body)
    };
    let mut decoder = decoder();
    let topic_of = |packet: Result<Packet, DecodeError>| match packet {
        Ok(Packet::Publish(p)) => {
            assert!(p.properties.topic_alias.is_none(), "the alias is consumed");
            Ok(p.topic.to_string())
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("a/b", Some(3)))),
        Ok("a/b".into())
    );
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("", Some(3)))),
        Ok("a/b".into())
    );
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("c", Some(3)))),
        Ok("c".into())
    );
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("", Some(3)))),
        Ok("c".into())
    );
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("", Some(4)))),
        Err(DecodeError::UnknownTopicAlias(4))
    );
    assert_eq!(
        topic_of(decode_whole(&mut decoder, &publish("", None))),
        Err(DecodeError::EmptyTopicWithoutAlias)
    );
    for alias in [0, 11] {
        let error = DecodeError::TopicAliasOutOfRange { alias, max: 10 };
        assert_eq!(error.reason_code(), ReasonCode::TOPIC_ALIAS_INVALID);
        assert_eq!(
            topic_of(decode_whole(&mut decoder, &publish("x", Some(alias)))),
            Err(error)
        );
    }
}

/// Towards a peer that allows 2 aliases, the first two topics get one, sent with the
/// topic; after that those topics go out empty with the alias; a third topic goes out
/// in full. Every PUBLISH decodes back to its topic with a decoder that allows 2.
#[test]
fn topic_aliases_are_assigned_towards_the_peer() {
    let mut encoder = Encoder::new(V5);
    encoder.use_topic_aliases(2);
    let mut peer = Decoder::new(V5, usize::MAX);
    peer.allow_topic_aliases(2);
    let header = PublishHeader {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        pkid: 0,
    };
    for (name, sent_topic_len) in [
        ("first/topic", 11),
        ("second", 6),
        ("first/topic", 0),
        ("third", 5),
        ("second", 0),
    ] {
        let mut buf = BytesMut::new();
        assert!(encoder.publish(header, name, b"x", &PropertyFields::default(), &mut buf));
        assert_eq!(
            usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            sent_topic_len,
            "{name}"
        );
        let Ok(Packet::Publish(p)) = decode_whole(&mut peer, &buf) else {
            panic!("{name}: not a PUBLISH");
        };
        assert_eq!(p.topic.as_str(), name);
    }
}

/// A PUBLISH larger than the peer's Maximum Packet Size is not written at all; other
/// packets lose their reason string and user properties to fit, or where the peer asked
/// for no problem information.
#[test]
fn the_peer_limits_what_is_written() {
    let mut encoder = Encoder::new(V5);
    encoder.limit_packet_size(20);
    let header = PublishHeader {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        pkid: 1,
    };
    let mut buf = BytesMut::new();
    // 2 + 2 + 1 (topic), 2 (id), 1 (no properties), 12 payload: 20 bytes with the header.
    assert!(encoder.publish(header, "t", &[0; 12], &PropertyFields::default(), &mut buf));
    assert_eq!(buf.len(), 20);
    assert!(!encoder.publish(header, "t", &[0; 13], &PropertyFields::default(), &mut buf));
    assert_eq!(buf.len(), 20, "nothing written for a PUBLISH too large");

    let ack = Packet::PubAck(Ack {
        pkid: 1,
        reason: ReasonCode::UNSPECIFIED_ERROR,
        properties: props(PropertyFields {
            reason_string: Some(s("a reason too long to fit")),
            ..PropertyFields::default()
        }),
    });
    let mut buf = BytesMut::new();
    encoder.encode(&ack, &mut buf);
    assert_eq!(&buf[..], [0x40, 3, 0, 1, 0x80]);

    let mut quiet = Encoder::new(V5);
    quiet.omit_problem_information();
    let mut buf = BytesMut::new();
    quiet.encode(&ack, &mut buf);
    assert_eq!(&buf[..], [0x40, 3, 0, 1, 0x80]);
    // DISCONNECT keeps its reason string (MQTT 5.0 3.1.2.11.7).
    let disconnect = Packet::Disconnect(Disconnect {
        reason: ReasonCode::PROTOCOL_ERROR,
        properties: props(PropertyFields {
            reason_string: Some(s("why")),
            ..PropertyFields::default()
        }),
    });
    let mut buf = BytesMut::new();
    quiet.encode(&disconnect, &mut buf);
    assert_eq!(&buf[..], [0xe0, 8, 0x82, 6, 0x1f, 0, 3, b'w', b'h', b'y']);
}

/// MQTT 3.x encodings of the same packets drop what 3.x lacks.
#[test]
fn version_3_encodings_drop_what_3_lacks() {
    let mut v311 = Encoder::new(ProtocolVersion::V311);
    let mut buf = BytesMut::new();
    let suback = SubAck {
        pkid: 1,
        codes: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::QUOTA_EXCEEDED],
        properties: Properties::default(),
    };
    v311.encode(&Packet::SubAck(suback), &mut buf);
    assert_eq!(&buf[..], [0x90, 4, 0, 1, 2, 0x80]);
    buf.clear();
    let unsuback = UnsubAck {
        pkid: 1,
        codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Properties::default(),
    };
    v311.encode(&Packet::UnsubAck(unsuback), &mut buf);
    assert_eq!(&buf[..], [0xb0, 2, 0, 1]);
    buf.clear();
    let refused = ConnAck {
        session_present: false,
        reason: ReasonCode::BAD_AUTHENTICATION_METHOD,
        properties: Properties::default(),
    };
    v311.encode(&Packet::ConnAck(refused), &mut buf);
    assert_eq!(&buf[..], [0x20, 2, 0, 4]);
    buf.clear();
    let header = PublishHeader {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        pkid: 0,
    };
    assert!(v311.publish(header, "t", b"p", &message_properties(), &mut buf));
    assert_eq!(&buf[..], [0x30, 4, 0, 1, b't', b'p']);
}

/// Arbitrary bytes never panic the decoder, in any version: they decode, wait for more,
/// or are refused. Packets are built from a valid first byte and a remaining length
/// that fits, so the bodies reach the field and property parsers. A fixed seed keeps
/// the run repeatable.
#[test]
fn arbitrary_bytes_never_panic_the_decoder() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200_000 {
        let len = (next() % 64) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 4 == 3 {
            // A PUBLISH whose topic is fine, so the property parser meets the noise.
            body.splice(0..0, [0, 1, b't', (len as u8) & 0x3f]);
        }
        let first = match round % 3 {
            // Any first byte, or a type with its reserved flags right.
            0 => next() as u8,
            1 => [
                0x10, 0x20, 0x30, 0x32, 0x34, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xe0,
                0xf0,
            ][(next() % 15) as usize],
            _ => 0x30 | (next() as u8 & 0x0f),
        };
        for version in [ProtocolVersion::V31, ProtocolVersion::V311, V5] {
            let mut decoder = Decoder::new(version, 1 << 20);
            decoder.allow_topic_aliases(4);
            let mut buf = BytesMut::from(&frame(first, &body)[..]);
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        }
    }
}
