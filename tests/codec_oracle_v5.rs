//! Herald's MQTT 5.0 codec against an independent one, mqttbytes 0.6 (`mqttbytes::v5`).
//!
//! Every generated packet is encoded by Herald and decoded by mqttbytes, and encoded by
//! mqttbytes and decoded by Herald; both decodings must give back the packet, field by
//! field. Packets are described in a common form, `Case`, with conversions to and from
//! each codec's types; properties in `Props`, which names every MQTT 5.0 property.
//!
//! The two codecs write a packet's properties in different orders, so their encodings
//! are compared byte for byte only where the order cannot differ (no property list with
//! more than one kind of property); elsewhere they must be of the same length.
//!
//! mqttbytes is lenient where the spec is strict, and has a few defects of its own. The
//! cases those touch are left out of the generators, each with the reason, and pinned
//! down by `mqttbytes_accepts_what_herald_refuses`, `herald_accepts_what_mqttbytes_refuses`,
//! `mqttbytes_misreads_subscription_identifiers` and `mqttbytes_writes_wrongly`: each of
//! those fails once mqttbytes changes, so that the case can move into the oracle.

#[path = "common/samples.rs"]
mod samples;

use std::collections::{BTreeSet, HashMap};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use herald::protocol::{self as h, DecodeError, QoS, WriteProperties};
use herald::topic::{TopicError, TopicName};
use mqttbytes::v5 as m;
use samples::{longest_string, pattern, Payload, FILTERS, PKIDS, TOPICS};

/// A maximum packet size above every generated packet, for both decoders.
const LIMIT: usize = 1 << 24;

/// Packets up to this size are fed to both decoders cut short at every length; longer
/// ones at their first and last few lengths.
const PREFIX_CHECK_MAX: usize = 300;

/// Binary data that is not UTF-8, for correlation and authentication data.
fn binary() -> Payload {
    Payload(Bytes::from_static(&[
        0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28, 0x01,
    ]))
}

/// Every MQTT 5.0 property, as neither codec holds them; absent unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Props {
    payload_format: Option<u8>,
    message_expiry: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Payload>,
    subscription_ids: Vec<u32>,
    session_expiry: Option<u32>,
    assigned_client_id: Option<String>,
    server_keep_alive: Option<u16>,
    auth_method: Option<String>,
    auth_data: Option<Payload>,
    request_problem_info: Option<u8>,
    will_delay: Option<u32>,
    request_response_info: Option<u8>,
    response_info: Option<String>,
    server_reference: Option<String>,
    reason_string: Option<String>,
    receive_maximum: Option<u16>,
    topic_alias_maximum: Option<u16>,
    topic_alias: Option<u16>,
    maximum_qos: Option<u8>,
    retain_available: Option<u8>,
    /// In order, keys repeated.
    user: Vec<(String, String)>,
    maximum_packet_size: Option<u32>,
    wildcard_available: Option<u8>,
    subscription_ids_available: Option<u8>,
    shared_available: Option<u8>,
}

impl Props {
    fn is_empty(&self) -> bool {
        *self == Props::default()
    }

    /// How many different property identifiers the list holds. With more than one, the
    /// codecs may write them in different orders.
    fn kinds(&self) -> usize {
        let mut ids = BTreeSet::new();
        herald_props(self).each(&mut |id, _| {
            ids.insert(id);
        });
        ids.len()
    }
}

/// Properties with some set.
fn props(set: impl FnOnce(&mut Props)) -> Props {
    let mut p = Props::default();
    set(&mut p);
    p
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Will {
    topic: String,
    message: Payload,
    qos: u8,
    retain: bool,
    props: Props,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Connect {
    clean_start: bool,
    keep_alive: u16,
    client_id: String,
    will: Option<Will>,
    username: Option<String>,
    password: Option<String>,
    props: Props,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Publish {
    dup: bool,
    qos: u8,
    retain: bool,
    topic: String,
    pkid: u16,
    payload: Payload,
    props: Props,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // The packets' names.
enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// One SUBSCRIBE filter and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    path: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    /// 0, 1 or 2.
    retain_handling: u8,
}

/// A packet as neither codec represents it. QoS values and reason codes are their wire
/// numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Case {
    Connect(Box<Connect>),
    ConnAck {
        session_present: bool,
        code: u8,
        props: Props,
    },
    Publish(Publish),
    Ack {
        kind: AckKind,
        pkid: u16,
        code: u8,
        props: Props,
    },
    Subscribe {
        pkid: u16,
        filters: Vec<Filter>,
        props: Props,
    },
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
        props: Props,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
        props: Props,
    },
    UnsubAck {
        pkid: u16,
        codes: Vec<u8>,
        props: Props,
    },
    PingReq,
    PingResp,
    Disconnect {
        code: u8,
        props: Props,
    },
}

impl Case {
    /// Whether some property list holds properties of more than one kind, which the
    /// codecs may order differently.
    fn order_may_differ(&self) -> bool {
        let lists: Vec<&Props> = match self {
            Case::Connect(c) => [Some(&c.props), c.will.as_ref().map(|w| &w.props)]
                .into_iter()
                .flatten()
                .collect(),
            Case::Publish(p) => vec![&p.props],
            Case::ConnAck { props, .. }
            | Case::Ack { props, .. }
            | Case::Subscribe { props, .. }
            | Case::SubAck { props, .. }
            | Case::Unsubscribe { props, .. }
            | Case::UnsubAck { props, .. }
            | Case::Disconnect { props, .. } => vec![props],
            Case::PingReq | Case::PingResp => Vec::new(),
        };
        lists.iter().any(|p| p.kinds() > 1)
    }
}

// Herald's side.

fn herald_qos(qos: u8) -> QoS {
    QoS::from_bits(qos).unwrap()
}

fn herald_topic(topic: &str) -> TopicName {
    TopicName::new(ByteString::from(topic)).unwrap()
}

fn herald_props(p: &Props) -> h::Properties {
    if p.is_empty() {
        return h::Properties::default();
    }
    let p = p.clone();
    let string = |s: Option<String>| s.map(ByteString::from);
    h::PropertyFields {
        payload_format_indicator: p.payload_format,
        message_expiry_interval: p.message_expiry,
        content_type: string(p.content_type),
        response_topic: string(p.response_topic),
        correlation_data: p.correlation_data.map(|d| d.0),
        subscription_identifiers: p.subscription_ids,
        session_expiry_interval: p.session_expiry,
        assigned_client_identifier: string(p.assigned_client_id),
        server_keep_alive: p.server_keep_alive,
        authentication_method: string(p.auth_method),
        authentication_data: p.auth_data.map(|d| d.0),
        request_problem_information: p.request_problem_info,
        will_delay_interval: p.will_delay,
        request_response_information: p.request_response_info,
        response_information: string(p.response_info),
        server_reference: string(p.server_reference),
        reason_string: string(p.reason_string),
        receive_maximum: p.receive_maximum,
        topic_alias_maximum: p.topic_alias_maximum,
        topic_alias: p.topic_alias,
        maximum_qos: p.maximum_qos,
        retain_available: p.retain_available,
        user_properties: p
            .user
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        maximum_packet_size: p.maximum_packet_size,
        wildcard_subscription_available: p.wildcard_available,
        subscription_identifier_available: p.subscription_ids_available,
        shared_subscription_available: p.shared_available,
    }
    .into()
}

fn from_herald_props(p: &h::Properties) -> Props {
    // Taken apart field by field, so that a property added to Herald is noticed here.
    let h::PropertyFields {
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        subscription_identifiers,
        session_expiry_interval,
        assigned_client_identifier,
        server_keep_alive,
        authentication_method,
        authentication_data,
        request_problem_information,
        will_delay_interval,
        request_response_information,
        response_information,
        server_reference,
        reason_string,
        receive_maximum,
        topic_alias_maximum,
        topic_alias,
        maximum_qos,
        retain_available,
        user_properties,
        maximum_packet_size,
        wildcard_subscription_available,
        subscription_identifier_available,
        shared_subscription_available,
    } = (**p).clone();
    let string = |s: Option<ByteString>| s.map(|s| s.to_string());
    Props {
        payload_format: payload_format_indicator,
        message_expiry: message_expiry_interval,
        content_type: string(content_type),
        response_topic: string(response_topic),
        correlation_data: correlation_data.map(Payload),
        subscription_ids: subscription_identifiers,
        session_expiry: session_expiry_interval,
        assigned_client_id: string(assigned_client_identifier),
        server_keep_alive,
        auth_method: string(authentication_method),
        auth_data: authentication_data.map(Payload),
        request_problem_info: request_problem_information,
        will_delay: will_delay_interval,
        request_response_info: request_response_information,
        response_info: string(response_information),
        server_reference: string(server_reference),
        reason_string: string(reason_string),
        receive_maximum,
        topic_alias_maximum,
        topic_alias,
        maximum_qos,
        retain_available,
        user: user_properties
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        maximum_packet_size,
        wildcard_available: wildcard_subscription_available,
        subscription_ids_available: subscription_identifier_available,
        shared_available: shared_subscription_available,
    }
}

fn herald_retain_handling(handling: u8) -> h::RetainHandling {
    match handling {
        0 => h::RetainHandling::OnSubscribe,
        1 => h::RetainHandling::OnNewSubscription,
        2 => h::RetainHandling::Never,
        _ => unreachable!("retain handling {handling}"),
    }
}

fn herald_publish(p: Publish) -> h::Publish {
    h::Publish {
        dup: p.dup,
        qos: herald_qos(p.qos),
        retain: p.retain,
        topic: herald_topic(&p.topic),
        pkid: p.pkid,
        payload: p.payload.0,
        properties: herald_props(&p.props),
    }
}

fn to_herald(case: &Case) -> h::Packet {
    match case.clone() {
        Case::Connect(c) => h::Packet::Connect(Box::new(h::Connect {
            version: h::ProtocolVersion::V5,
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            client_id: c.client_id.into(),
            will: c.will.map(|w| h::LastWill {
                topic: herald_topic(&w.topic),
                payload: w.message.0,
                qos: herald_qos(w.qos),
                retain: w.retain,
                properties: herald_props(&w.props),
            }),
            username: c.username.map(ByteString::from),
            password: c.password.map(Bytes::from),
            properties: herald_props(&c.props),
        })),
        Case::ConnAck {
            session_present,
            code,
            props,
        } => h::Packet::ConnAck(h::ConnAck {
            session_present,
            reason: h::ReasonCode(code),
            properties: herald_props(&props),
        }),
        Case::Publish(p) => h::Packet::Publish(herald_publish(p)),
        Case::Ack {
            kind,
            pkid,
            code,
            props,
        } => {
            let ack = h::Ack {
                pkid,
                reason: h::ReasonCode(code),
                properties: herald_props(&props),
            };
            match kind {
                AckKind::PubAck => h::Packet::PubAck(ack),
                AckKind::PubRec => h::Packet::PubRec(ack),
                AckKind::PubRel => h::Packet::PubRel(ack),
                AckKind::PubComp => h::Packet::PubComp(ack),
            }
        }
        Case::Subscribe {
            pkid,
            filters,
            props,
        } => h::Packet::Subscribe(h::Subscribe {
            pkid,
            filters: filters
                .into_iter()
                .map(|f| {
                    let options = h::SubscriptionOptions {
                        qos: herald_qos(f.qos),
                        no_local: f.no_local,
                        retain_as_published: f.retain_as_published,
                        retain_handling: herald_retain_handling(f.retain_handling),
                    };
                    (f.path.into(), options)
                })
                .collect(),
            properties: herald_props(&props),
        }),
        Case::SubAck { pkid, codes, props } => h::Packet::SubAck(h::SubAck {
            pkid,
            codes: codes.into_iter().map(h::ReasonCode).collect(),
            properties: herald_props(&props),
        }),
        Case::Unsubscribe {
            pkid,
            filters,
            props,
        } => h::Packet::Unsubscribe(h::Unsubscribe {
            pkid,
            filters: filters.into_iter().map(ByteString::from).collect(),
            properties: herald_props(&props),
        }),
        Case::UnsubAck { pkid, codes, props } => h::Packet::UnsubAck(h::UnsubAck {
            pkid,
            codes: codes.into_iter().map(h::ReasonCode).collect(),
            properties: herald_props(&props),
        }),
        Case::PingReq => h::Packet::PingReq,
        Case::PingResp => h::Packet::PingResp,
        Case::Disconnect { code, props } => h::Packet::Disconnect(h::Disconnect {
            reason: h::ReasonCode(code),
            properties: herald_props(&props),
        }),
    }
}

fn from_herald_publish(p: h::Publish) -> Publish {
    Publish {
        dup: p.dup,
        qos: p.qos as u8,
        retain: p.retain,
        topic: p.topic.to_string(),
        pkid: p.pkid,
        payload: Payload(p.payload),
        props: from_herald_props(&p.properties),
    }
}

fn from_herald(packet: h::Packet) -> Case {
    let ack = |kind, a: h::Ack| Case::Ack {
        kind,
        pkid: a.pkid,
        code: a.reason.0,
        props: from_herald_props(&a.properties),
    };
    match packet {
        h::Packet::Connect(c) => {
            assert_eq!(c.version, h::ProtocolVersion::V5);
            Case::Connect(Box::new(Connect {
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                client_id: c.client_id.to_string(),
                will: c.will.map(|w| Will {
                    topic: w.topic.to_string(),
                    message: Payload(w.payload),
                    qos: w.qos as u8,
                    retain: w.retain,
                    props: from_herald_props(&w.properties),
                }),
                username: c.username.map(|u| u.to_string()),
                password: c
                    .password
                    .map(|p| String::from_utf8(p.to_vec()).expect("generated passwords are UTF-8")),
                props: from_herald_props(&c.properties),
            }))
        }
        h::Packet::ConnAck(a) => Case::ConnAck {
            session_present: a.session_present,
            code: a.reason.0,
            props: from_herald_props(&a.properties),
        },
        h::Packet::Publish(p) => Case::Publish(from_herald_publish(p)),
        h::Packet::PubAck(a) => ack(AckKind::PubAck, a),
        h::Packet::PubRec(a) => ack(AckKind::PubRec, a),
        h::Packet::PubRel(a) => ack(AckKind::PubRel, a),
        h::Packet::PubComp(a) => ack(AckKind::PubComp, a),
        h::Packet::Subscribe(s) => Case::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|(path, o)| Filter {
                    path: path.to_string(),
                    qos: o.qos as u8,
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    retain_handling: match o.retain_handling {
                        h::RetainHandling::OnSubscribe => 0,
                        h::RetainHandling::OnNewSubscription => 1,
                        h::RetainHandling::Never => 2,
                    },
                })
                .collect(),
            props: from_herald_props(&s.properties),
        },
        h::Packet::SubAck(s) => Case::SubAck {
            pkid: s.pkid,
            codes: s.codes.into_iter().map(|c| c.0).collect(),
            props: from_herald_props(&s.properties),
        },
        h::Packet::Unsubscribe(u) => Case::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.into_iter().map(|f| f.to_string()).collect(),
            props: from_herald_props(&u.properties),
        },
        h::Packet::UnsubAck(u) => Case::UnsubAck {
            pkid: u.pkid,
            codes: u.codes.into_iter().map(|c| c.0).collect(),
            props: from_herald_props(&u.properties),
        },
        h::Packet::PingReq => Case::PingReq,
        h::Packet::PingResp => Case::PingResp,
        h::Packet::Disconnect(d) => Case::Disconnect {
            code: d.reason.0,
            props: from_herald_props(&d.properties),
        },
        h::Packet::Auth(_) => panic!("mqttbytes has no AUTH: no case holds one"),
    }
}

// mqttbytes' side.

/// Every reason code mqttbytes knows, per packet: all the spec lists for each. Its
/// SUBACK and DISCONNECT codes convert from a byte themselves.
const CONNACK_CODES: [m::ConnectReturnCode; 22] = {
    use m::ConnectReturnCode::*;
    [
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNamePassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ]
};

const PUBACK_CODES: [m::PubAckReason; 9] = {
    use m::PubAckReason::*;
    [
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ]
};

const PUBREC_CODES: [m::PubRecReason; 9] = {
    use m::PubRecReason::*;
    [
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ]
};

const PUBREL_CODES: [m::PubRelReason; 2] = [
    m::PubRelReason::Success,
    m::PubRelReason::PacketIdentifierNotFound,
];

const PUBCOMP_CODES: [m::PubCompReason; 2] = [
    m::PubCompReason::Success,
    m::PubCompReason::PacketIdentifierNotFound,
];

const UNSUBACK_CODES: [m::UnsubAckReason; 7] = {
    use m::UnsubAckReason::*;
    [
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ]
};

const SUBACK_CODES: [u8; 12] = [
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2,
];

const DISCONNECT_CODES: [u8; 29] = [
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
];

/// The wire numbers of a table of mqttbytes reason codes.
fn numbers<T: Copy>(all: &[T], num: fn(T) -> u8) -> Vec<u8> {
    all.iter().map(|&c| num(c)).collect()
}

/// mqttbytes' reason code for a wire number.
fn by_number<T: Copy>(all: &[T], code: u8, num: fn(T) -> u8) -> T {
    all.iter()
        .copied()
        .find(|&c| num(c) == code)
        .unwrap_or_else(|| panic!("mqttbytes has no reason code {code:#04x} here"))
}

/// Fails if a property is left that the packet's mqttbytes type has no field for: the
/// generators must not make such a case.
fn nothing_left(rest: Props, packet: &str) {
    assert!(
        rest.is_empty(),
        "mqttbytes' {packet} cannot hold properties {rest:?}"
    );
}

fn mqttbytes_connect_props(p: &Props) -> Option<m::ConnectProperties> {
    if p.is_empty() {
        return None;
    }
    let mut p = p.clone();
    let out = m::ConnectProperties {
        session_expiry_interval: p.session_expiry.take(),
        receive_maximum: p.receive_maximum.take(),
        max_packet_size: p.maximum_packet_size.take(),
        topic_alias_max: p.topic_alias_maximum.take(),
        request_response_info: p.request_response_info.take(),
        request_problem_info: p.request_problem_info.take(),
        user_properties: std::mem::take(&mut p.user),
        authentication_method: p.auth_method.take(),
        authentication_data: p.auth_data.take().map(|d| d.0),
    };
    nothing_left(p, "CONNECT");
    Some(out)
}

fn from_mqttbytes_connect_props(p: Option<m::ConnectProperties>) -> Props {
    let Some(p) = p else {
        return Props::default();
    };
    Props {
        session_expiry: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        maximum_packet_size: p.max_packet_size,
        topic_alias_maximum: p.topic_alias_max,
        request_response_info: p.request_response_info,
        request_problem_info: p.request_problem_info,
        user: p.user_properties,
        auth_method: p.authentication_method,
        auth_data: p.authentication_data.map(Payload),
        ..Props::default()
    }
}

fn mqttbytes_will_props(p: &Props) -> Option<m::WillProperties> {
    if p.is_empty() {
        return None;
    }
    let mut p = p.clone();
    let out = m::WillProperties {
        delay_interval: p.will_delay.take(),
        payload_format_indicator: p.payload_format.take(),
        message_expiry_interval: p.message_expiry.take(),
        content_type: p.content_type.take(),
        response_topic: p.response_topic.take(),
        correlation_data: p.correlation_data.take().map(|d| d.0),
        user_properties: std::mem::take(&mut p.user),
    };
    nothing_left(p, "will");
    Some(out)
}

fn from_mqttbytes_will_props(p: Option<m::WillProperties>) -> Props {
    let Some(p) = p else {
        return Props::default();
    };
    Props {
        will_delay: p.delay_interval,
        payload_format: p.payload_format_indicator,
        message_expiry: p.message_expiry_interval,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(Payload),
        user: p.user_properties,
        ..Props::default()
    }
}

fn mqttbytes_connack_props(p: &Props) -> m::ConnAckProperties {
    let mut p = p.clone();
    let out = m::ConnAckProperties {
        session_expiry_interval: p.session_expiry.take(),
        receive_max: p.receive_maximum.take(),
        max_qos: p.maximum_qos.take(),
        retain_available: p.retain_available.take(),
        max_packet_size: p.maximum_packet_size.take(),
        assigned_client_identifier: p.assigned_client_id.take(),
        topic_alias_max: p.topic_alias_maximum.take(),
        reason_string: p.reason_string.take(),
        user_properties: std::mem::take(&mut p.user),
        wildcard_subscription_available: p.wildcard_available.take(),
        subscription_identifiers_available: p.subscription_ids_available.take(),
        shared_subscription_available: p.shared_available.take(),
        server_keep_alive: p.server_keep_alive.take(),
        response_information: p.response_info.take(),
        server_reference: p.server_reference.take(),
        authentication_method: p.auth_method.take(),
        authentication_data: p.auth_data.take().map(|d| d.0),
    };
    nothing_left(p, "CONNACK");
    out
}

fn from_mqttbytes_connack_props(p: Option<m::ConnAckProperties>) -> Props {
    let Some(p) = p else {
        return Props::default();
    };
    Props {
        session_expiry: p.session_expiry_interval,
        receive_maximum: p.receive_max,
        maximum_qos: p.max_qos,
        retain_available: p.retain_available,
        maximum_packet_size: p.max_packet_size,
        assigned_client_id: p.assigned_client_identifier,
        topic_alias_maximum: p.topic_alias_max,
        reason_string: p.reason_string,
        user: p.user_properties,
        wildcard_available: p.wildcard_subscription_available,
        subscription_ids_available: p.subscription_identifiers_available,
        shared_available: p.shared_subscription_available,
        server_keep_alive: p.server_keep_alive,
        response_info: p.response_information,
        server_reference: p.server_reference,
        auth_method: p.authentication_method,
        auth_data: p.authentication_data.map(Payload),
        ..Props::default()
    }
}

fn mqttbytes_publish_props(p: &Props) -> Option<m::PublishProperties> {
    if p.is_empty() {
        return None;
    }
    let mut p = p.clone();
    let out = m::PublishProperties {
        payload_format_indicator: p.payload_format.take(),
        message_expiry_interval: p.message_expiry.take(),
        topic_alias: p.topic_alias.take(),
        response_topic: p.response_topic.take(),
        correlation_data: p.correlation_data.take().map(|d| d.0),
        user_properties: std::mem::take(&mut p.user),
        subscription_identifiers: std::mem::take(&mut p.subscription_ids)
            .into_iter()
            .map(|id| id as usize)
            .collect(),
        content_type: p.content_type.take(),
    };
    nothing_left(p, "PUBLISH");
    Some(out)
}

fn from_mqttbytes_publish_props(p: Option<m::PublishProperties>) -> Props {
    let Some(p) = p else {
        return Props::default();
    };
    Props {
        payload_format: p.payload_format_indicator,
        message_expiry: p.message_expiry_interval,
        topic_alias: p.topic_alias,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(Payload),
        user: p.user_properties,
        subscription_ids: p
            .subscription_identifiers
            .into_iter()
            .map(|id| u32::try_from(id).unwrap())
            .collect(),
        content_type: p.content_type,
        ..Props::default()
    }
}

/// The reason string and user properties of an acknowledgement, SUBACK or UNSUBACK:
/// the fields of mqttbytes' property types for those, which differ only in name.
type ReasonAndUser = (Option<String>, Vec<(String, String)>);

fn mqttbytes_reason_and_user(p: &Props, packet: &str) -> Option<ReasonAndUser> {
    if p.is_empty() {
        return None;
    }
    let mut p = p.clone();
    let out = (p.reason_string.take(), std::mem::take(&mut p.user));
    nothing_left(p, packet);
    Some(out)
}

fn from_mqttbytes_reason_and_user(p: Option<ReasonAndUser>) -> Props {
    let Some((reason_string, user)) = p else {
        return Props::default();
    };
    Props {
        reason_string,
        user,
        ..Props::default()
    }
}

fn mqttbytes_disconnect_props(p: &Props) -> Option<m::DisconnectProperties> {
    if p.is_empty() {
        return None;
    }
    let mut p = p.clone();
    let out = m::DisconnectProperties {
        session_expiry_interval: p.session_expiry.take(),
        reason_string: p.reason_string.take(),
        user_properties: std::mem::take(&mut p.user),
        server_reference: p.server_reference.take(),
    };
    nothing_left(p, "DISCONNECT");
    Some(out)
}

fn from_mqttbytes_disconnect_props(p: Option<m::DisconnectProperties>) -> Props {
    let Some(p) = p else {
        return Props::default();
    };
    Props {
        session_expiry: p.session_expiry_interval,
        reason_string: p.reason_string,
        user: p.user_properties,
        server_reference: p.server_reference,
        ..Props::default()
    }
}

fn mqttbytes_qos(qos: u8) -> mqttbytes::QoS {
    mqttbytes::qos(qos).unwrap()
}

fn mqttbytes_connect(c: Connect) -> m::Connect {
    m::Connect {
        protocol: mqttbytes::Protocol::V5,
        keep_alive: c.keep_alive,
        client_id: c.client_id,
        clean_session: c.clean_start,
        last_will: c.will.map(|w| m::LastWill {
            topic: w.topic,
            message: w.message.0,
            qos: mqttbytes_qos(w.qos),
            retain: w.retain,
            properties: mqttbytes_will_props(&w.props),
        }),
        // mqttbytes writes a user name or password only when it is not empty, so none is
        // generated empty. A password without a user name is allowed in MQTT 5.0
        // (3.1.2.9), and both codecs write and read it.
        login: (c.username.is_some() || c.password.is_some()).then(|| m::Login {
            username: c.username.unwrap_or_default(),
            password: c.password.unwrap_or_default(),
        }),
        properties: mqttbytes_connect_props(&c.props),
    }
}

fn mqttbytes_publish(p: Publish) -> m::Publish {
    m::Publish {
        dup: p.dup,
        qos: mqttbytes_qos(p.qos),
        retain: p.retain,
        topic: p.topic,
        pkid: p.pkid,
        properties: mqttbytes_publish_props(&p.props),
        payload: p.payload.0,
    }
}

fn write_mqttbytes(case: &Case, buf: &mut BytesMut) {
    let written = match case.clone() {
        Case::Connect(c) => mqttbytes_connect(*c).write(buf),
        Case::ConnAck {
            session_present,
            code,
            props,
        } => m::ConnAck {
            session_present,
            code: by_number(&CONNACK_CODES, code, |c| c as u8),
            // mqttbytes defect: a CONNACK whose `properties` are `None` is written without
            // the property length MQTT 5.0 requires (3.2.2.3.1), which Herald rightly
            // refuses (pinned in `mqttbytes_writes_wrongly`). An empty property list,
            // `Some` of nothing, is written right.
            properties: Some(mqttbytes_connack_props(&props)),
        }
        .write(buf),
        Case::Publish(p) => mqttbytes_publish(p).write(buf),
        Case::Ack {
            kind,
            pkid,
            code,
            props,
        } => {
            let props = mqttbytes_reason_and_user(&props, "acknowledgement");
            match kind {
                AckKind::PubAck => m::PubAck {
                    pkid,
                    reason: by_number(&PUBACK_CODES, code, |c| c as u8),
                    properties: props.map(|(reason_string, user_properties)| m::PubAckProperties {
                        reason_string,
                        user_properties,
                    }),
                }
                .write(buf),
                AckKind::PubRec => m::PubRec {
                    pkid,
                    reason: by_number(&PUBREC_CODES, code, |c| c as u8),
                    properties: props.map(|(reason_string, user_properties)| m::PubRecProperties {
                        reason_string,
                        user_properties,
                    }),
                }
                .write(buf),
                AckKind::PubRel => m::PubRel {
                    pkid,
                    reason: by_number(&PUBREL_CODES, code, |c| c as u8),
                    properties: props.map(|(reason_string, user_properties)| m::PubRelProperties {
                        reason_string,
                        user_properties,
                    }),
                }
                .write(buf),
                AckKind::PubComp => m::PubComp {
                    pkid,
                    reason: by_number(&PUBCOMP_CODES, code, |c| c as u8),
                    properties: props.map(|(reason_string, user_properties)| {
                        m::PubCompProperties {
                            reason_string,
                            user_properties,
                        }
                    }),
                }
                .write(buf),
            }
        }
        Case::Subscribe {
            pkid,
            filters,
            props,
        } => {
            let properties = (!props.is_empty()).then(|| {
                let mut p = props.clone();
                assert!(p.subscription_ids.len() <= 1, "one identifier at most");
                let out = m::SubscribeProperties {
                    id: p.subscription_ids.pop().map(|id| id as usize),
                    user_properties: std::mem::take(&mut p.user),
                };
                nothing_left(p, "SUBSCRIBE");
                out
            });
            m::Subscribe {
                pkid,
                filters: filters
                    .into_iter()
                    .map(|f| m::SubscribeFilter {
                        path: f.path,
                        qos: mqttbytes_qos(f.qos),
                        nolocal: f.no_local,
                        preserve_retain: f.retain_as_published,
                        retain_forward_rule: match f.retain_handling {
                            0 => m::RetainForwardRule::OnEverySubscribe,
                            1 => m::RetainForwardRule::OnNewSubscribe,
                            2 => m::RetainForwardRule::Never,
                            other => unreachable!("retain handling {other}"),
                        },
                    })
                    .collect(),
                properties,
            }
            .write(buf)
        }
        Case::SubAck { pkid, codes, props } => m::SubAck {
            pkid,
            return_codes: codes.into_iter().map(|c| c.try_into().unwrap()).collect(),
            properties: mqttbytes_reason_and_user(&props, "SUBACK").map(
                |(reason_string, user_properties)| m::SubAckProperties {
                    reason_string,
                    user_properties,
                },
            ),
        }
        .write(buf),
        Case::Unsubscribe {
            pkid,
            filters,
            props,
        } => {
            let properties = (!props.is_empty()).then(|| {
                let mut p = props.clone();
                let out = m::UnsubscribeProperties {
                    user_properties: std::mem::take(&mut p.user),
                };
                nothing_left(p, "UNSUBSCRIBE");
                out
            });
            m::Unsubscribe {
                pkid,
                filters,
                properties,
            }
            .write(buf)
        }
        Case::UnsubAck { pkid, codes, props } => m::UnsubAck {
            pkid,
            reasons: codes
                .into_iter()
                .map(|c| by_number(&UNSUBACK_CODES, c, |c| c as u8))
                .collect(),
            properties: mqttbytes_reason_and_user(&props, "UNSUBACK").map(
                |(reason_string, user_properties)| m::UnsubAckProperties {
                    reason_string,
                    user_properties,
                },
            ),
        }
        .write(buf),
        Case::PingReq => m::PingReq.write(buf),
        Case::PingResp => m::PingResp.write(buf),
        Case::Disconnect { code, props } => m::Disconnect {
            reason_code: code.try_into().unwrap(),
            properties: mqttbytes_disconnect_props(&props),
        }
        .write(buf),
    };
    written.unwrap_or_else(|e| panic!("mqttbytes cannot write {case:?}: {e:?}"));
}

fn from_mqttbytes_publish(p: m::Publish) -> Publish {
    Publish {
        dup: p.dup,
        qos: p.qos as u8,
        retain: p.retain,
        topic: p.topic,
        pkid: p.pkid,
        payload: Payload(p.payload),
        props: from_mqttbytes_publish_props(p.properties),
    }
}

/// The four acknowledgements are different types in mqttbytes with the same fields.
macro_rules! ack_case {
    ($kind:ident, $ack:expr) => {
        Case::Ack {
            kind: AckKind::$kind,
            pkid: $ack.pkid,
            code: $ack.reason as u8,
            props: from_mqttbytes_reason_and_user(
                $ack.properties
                    .map(|p| (p.reason_string, p.user_properties)),
            ),
        }
    };
}

fn from_mqttbytes(packet: m::Packet) -> Case {
    match packet {
        m::Packet::Connect(c) => {
            assert_eq!(c.protocol, mqttbytes::Protocol::V5);
            let (username, password) = match c.login {
                None => (None, None),
                Some(l) => {
                    let present = |s: String| (!s.is_empty()).then_some(s);
                    (present(l.username), present(l.password))
                }
            };
            Case::Connect(Box::new(Connect {
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    message: Payload(w.message),
                    qos: w.qos as u8,
                    retain: w.retain,
                    props: from_mqttbytes_will_props(w.properties),
                }),
                username,
                password,
                props: from_mqttbytes_connect_props(c.properties),
            }))
        }
        m::Packet::ConnAck(a) => Case::ConnAck {
            session_present: a.session_present,
            code: a.code as u8,
            props: from_mqttbytes_connack_props(a.properties),
        },
        m::Packet::Publish(p) => Case::Publish(from_mqttbytes_publish(p)),
        m::Packet::PubAck(a) => ack_case!(PubAck, a),
        m::Packet::PubRec(a) => ack_case!(PubRec, a),
        m::Packet::PubRel(a) => ack_case!(PubRel, a),
        m::Packet::PubComp(a) => ack_case!(PubComp, a),
        m::Packet::Subscribe(s) => Case::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: f.qos as u8,
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: match f.retain_forward_rule {
                        m::RetainForwardRule::OnEverySubscribe => 0,
                        m::RetainForwardRule::OnNewSubscribe => 1,
                        m::RetainForwardRule::Never => 2,
                    },
                })
                .collect(),
            props: s.properties.map_or_else(Props::default, |p| Props {
                subscription_ids: p
                    .id
                    .map(|id| u32::try_from(id).unwrap())
                    .into_iter()
                    .collect(),
                user: p.user_properties,
                ..Props::default()
            }),
        },
        m::Packet::SubAck(s) => Case::SubAck {
            pkid: s.pkid,
            codes: s.return_codes.into_iter().map(|c| c as u8).collect(),
            props: from_mqttbytes_reason_and_user(
                s.properties.map(|p| (p.reason_string, p.user_properties)),
            ),
        },
        m::Packet::Unsubscribe(u) => Case::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
            props: u.properties.map_or_else(Props::default, |p| Props {
                user: p.user_properties,
                ..Props::default()
            }),
        },
        m::Packet::UnsubAck(u) => Case::UnsubAck {
            pkid: u.pkid,
            codes: u.reasons.into_iter().map(|c| c as u8).collect(),
            props: from_mqttbytes_reason_and_user(
                u.properties.map(|p| (p.reason_string, p.user_properties)),
            ),
        },
        m::Packet::PingReq => Case::PingReq,
        m::Packet::PingResp => Case::PingResp,
        m::Packet::Disconnect(d) => Case::Disconnect {
            code: d.reason_code as u8,
            props: from_mqttbytes_disconnect_props(d.properties),
        },
    }
}

// The check.

fn herald_decoder() -> h::Decoder {
    h::Decoder::new(h::ProtocolVersion::V5, LIMIT)
}

/// Decodes one whole packet with `decoder`, which must consume exactly `bytes`.
fn herald_decode_with(decoder: &mut h::Decoder, bytes: &[u8]) -> Result<h::Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decoder
        .decode(&mut buf)?
        .expect("a complete packet is reported incomplete");
    assert!(buf.is_empty(), "Herald left {} bytes", buf.len());
    Ok(packet)
}

/// Decodes one whole packet with a fresh Herald decoder.
fn herald_decode(bytes: &[u8]) -> Result<h::Packet, DecodeError> {
    herald_decode_with(&mut herald_decoder(), bytes)
}

/// Decodes one whole packet with mqttbytes, which must consume exactly `bytes`.
fn mqttbytes_read(bytes: &[u8]) -> Result<m::Packet, mqttbytes::Error> {
    let mut buf = BytesMut::from(bytes);
    let packet = m::read(&mut buf, LIMIT)?;
    assert!(buf.is_empty(), "mqttbytes left {} bytes", buf.len());
    Ok(packet)
}

fn herald_bytes(case: &Case) -> BytesMut {
    let packet = to_herald(case);
    let mut buf = BytesMut::new();
    h::Encoder::new(h::ProtocolVersion::V5).encode(&packet, &mut buf);
    if let h::Packet::Publish(p) = &packet {
        // The outgoing path writes a PUBLISH from its parts: it must give the same bytes.
        let header = h::PublishHeader {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            pkid: p.pkid,
        };
        let mut direct = BytesMut::new();
        let fields: &h::PropertyFields = &p.properties;
        assert!(h::Encoder::new(h::ProtocolVersion::V5).publish(
            header,
            p.topic.as_str(),
            &p.payload,
            fields,
            &mut direct
        ));
        assert!(
            direct == buf,
            "Encoder::publish and encode differ on {case:?}"
        );
    }
    buf
}

fn mqttbytes_bytes(case: &Case) -> BytesMut {
    let mut buf = BytesMut::new();
    write_mqttbytes(case, &mut buf);
    buf
}

/// Encoded by Herald, read by mqttbytes: returns Herald's bytes.
fn mqttbytes_reads_herald(case: &Case) -> BytesMut {
    let ours = herald_bytes(case);
    let read = mqttbytes_read(&ours)
        .unwrap_or_else(|e| panic!("mqttbytes refuses Herald's {case:?}: {e:?}"));
    assert_eq!(
        &from_mqttbytes(read),
        case,
        "encoded by Herald, read by mqttbytes"
    );
    ours
}

/// Encoded by mqttbytes, read by Herald: returns mqttbytes' bytes.
fn herald_reads_mqttbytes(case: &Case) -> BytesMut {
    let theirs = mqttbytes_bytes(case);
    let decoded = herald_decode(&theirs)
        .unwrap_or_else(|e| panic!("Herald refuses mqttbytes' {case:?}: {e}"));
    assert_eq!(
        &from_herald(decoded),
        case,
        "encoded by mqttbytes, read by Herald"
    );
    theirs
}

/// Both decoders must wait for more when `bytes` are cut short, consuming nothing.
fn incomplete_when_cut(case: &Case, bytes: &[u8]) {
    let len = bytes.len();
    let cuts: Vec<usize> = if len <= PREFIX_CHECK_MAX {
        (0..len).collect()
    } else {
        (0..8).chain(len - 8..len).collect()
    };
    for cut in cuts {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(
            herald_decoder().decode(&mut buf),
            Ok(None),
            "{case:?} cut at {cut}"
        );
        assert_eq!(
            buf.len(),
            cut,
            "{case:?} cut at {cut}: Herald consumed bytes"
        );
        assert!(
            matches!(
                m::read(&mut buf, LIMIT),
                Err(mqttbytes::Error::InsufficientBytes(_))
            ),
            "{case:?} cut at {cut}: mqttbytes does not wait for more"
        );
    }
}

/// The two encodings of `case`: the same bytes, unless the codecs order its properties
/// differently, and then at least the same length.
fn same_encoding(case: &Case, ours: &[u8], theirs: &[u8]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "the encodings of {case:?} differ in length"
    );
    // Not assert_eq: the bytes may run to hundreds of KB.
    assert!(
        ours == theirs || case.order_may_differ(),
        "the encodings of {case:?} differ: {ours:02x?} {theirs:02x?}"
    );
}

fn agree(case: &Case) {
    let ours = mqttbytes_reads_herald(case);
    let theirs = herald_reads_mqttbytes(case);
    same_encoding(case, &ours, &theirs);
    incomplete_when_cut(case, &ours);
    if ours != theirs {
        incomplete_when_cut(case, &theirs);
    }
}

fn agree_on(cases: impl IntoIterator<Item = Case>) -> usize {
    let mut count = 0;
    for case in cases {
        agree(&case);
        count += 1;
    }
    assert!(count > 0, "no cases generated");
    count
}

// The generated packets.

/// Subscription identifiers at the edges of the 1- to 4-byte variable byte integers.
const SUBSCRIPTION_IDS: [u32; 8] = [
    1,
    127,
    128,
    16_383,
    16_384,
    2_097_151,
    2_097_152,
    268_435_455,
];

/// User properties: order kept, keys repeated (one pair twice), empty and non-ASCII.
const USER: [(&str, &str); 6] = [
    ("k", "v"),
    ("k", "v2"),
    ("", ""),
    ("ü-schlüssel", "日本語"),
    ("k", "v"),
    ("region", "eu-west-1"),
];

/// The first `n` of `USER`, over again as needed.
fn user(n: usize) -> Vec<(String, String)> {
    USER.iter()
        .cycle()
        .take(n)
        .map(|&(k, v)| (k.into(), v.into()))
        .collect()
}

/// Property lists for PUBLISH and the will, which take the same message properties.
///
/// mqttbytes defect: its reader counts each subscription identifier's property byte
/// twice, so it stops reading properties as soon as no more bytes are left than there
/// are identifiers, and takes the rest for payload (pinned in
/// `mqttbytes_misreads_subscription_identifiers`). Herald writes the identifiers just
/// before the user properties, so wherever both are here, the last user property is
/// longer than the identifiers are many.
fn message_props(will: bool) -> Vec<Props> {
    let mut all = props(|p| {
        p.payload_format = Some(1);
        p.message_expiry = Some(0xffff_ffff);
        p.content_type = Some("application/json; charset=utf-8".into());
        p.response_topic = Some("reply/to/ü".into());
        p.correlation_data = Some(binary());
        p.user = user(6);
    });
    let mut list = vec![
        Props::default(),
        props(|p| p.payload_format = Some(0)),
        props(|p| p.payload_format = Some(1)),
        props(|p| p.message_expiry = Some(0)),
        props(|p| p.message_expiry = Some(3600)),
        props(|p| p.content_type = Some("text/plain".into())),
        props(|p| p.content_type = Some(String::new())),
        props(|p| p.response_topic = Some("responses/client-1".into())),
        props(|p| p.correlation_data = Some(binary())),
        props(|p| p.correlation_data = Some(Payload::default())),
        props(|p| p.user = user(1)),
        props(|p| p.user = user(2)),
        props(|p| p.user = user(6)),
        props(|p| p.user = user(13)),
    ];
    if will {
        list.push(props(|p| p.will_delay = Some(0)));
        list.push(props(|p| p.will_delay = Some(86_400)));
        all.will_delay = Some(30);
    } else {
        list.extend(SUBSCRIPTION_IDS.map(|id| props(|p| p.subscription_ids = vec![id])));
        list.push(props(|p| {
            p.subscription_ids = SUBSCRIPTION_IDS.to_vec();
            p.user = user(6);
        }));
        all.subscription_ids = vec![1, 268_435_455, 128, 1];
    }
    list.push(all);
    list
}

fn connect_props() -> Vec<Props> {
    vec![
        Props::default(),
        props(|p| p.session_expiry = Some(0)),
        props(|p| p.session_expiry = Some(0xffff_ffff)),
        props(|p| p.receive_maximum = Some(1)),
        props(|p| p.receive_maximum = Some(0xffff)),
        props(|p| p.maximum_packet_size = Some(1)),
        props(|p| p.maximum_packet_size = Some(268_435_460)),
        props(|p| p.topic_alias_maximum = Some(0)),
        props(|p| p.topic_alias_maximum = Some(0xffff)),
        props(|p| p.request_response_info = Some(0)),
        props(|p| p.request_response_info = Some(1)),
        props(|p| p.request_problem_info = Some(0)),
        props(|p| p.request_problem_info = Some(1)),
        props(|p| p.user = user(3)),
        props(|p| p.auth_method = Some("SCRAM-SHA-256".into())),
        props(|p| {
            p.auth_method = Some("SCRAM-SHA-256".into());
            p.auth_data = Some(binary());
        }),
        props(|p| {
            p.session_expiry = Some(120);
            p.receive_maximum = Some(20);
            p.maximum_packet_size = Some(1 << 20);
            p.topic_alias_maximum = Some(10);
            p.request_response_info = Some(1);
            p.request_problem_info = Some(0);
            p.user = user(6);
            p.auth_method = Some("ü-method".into());
            p.auth_data = Some(Payload::default());
        }),
    ]
}

fn connack_props() -> Vec<Props> {
    vec![
        Props::default(),
        props(|p| p.session_expiry = Some(0xffff_ffff)),
        props(|p| p.receive_maximum = Some(1)),
        props(|p| p.maximum_qos = Some(0)),
        props(|p| p.maximum_qos = Some(1)),
        props(|p| p.retain_available = Some(0)),
        props(|p| p.retain_available = Some(1)),
        props(|p| p.maximum_packet_size = Some(0x0fff_ffff)),
        props(|p| p.assigned_client_id = Some("auto-3f9c2a".into())),
        props(|p| p.topic_alias_maximum = Some(0xffff)),
        props(|p| p.reason_string = Some("welcome ü".into())),
        props(|p| p.user = user(4)),
        props(|p| p.wildcard_available = Some(0)),
        props(|p| p.subscription_ids_available = Some(0)),
        props(|p| p.shared_available = Some(1)),
        props(|p| p.server_keep_alive = Some(0)),
        props(|p| p.server_keep_alive = Some(0xffff)),
        props(|p| p.response_info = Some("resp/base".into())),
        props(|p| p.server_reference = Some("other.example:1883".into())),
        props(|p| {
            p.auth_method = Some("SCRAM-SHA-256".into());
            p.auth_data = Some(binary());
        }),
        props(|p| {
            p.session_expiry = Some(60);
            p.receive_maximum = Some(65_535);
            p.maximum_qos = Some(1);
            p.retain_available = Some(1);
            p.maximum_packet_size = Some(268_435_460);
            p.assigned_client_id = Some("ü-assigned".into());
            p.topic_alias_maximum = Some(5);
            p.reason_string = Some("all of them".into());
            p.user = user(6);
            p.wildcard_available = Some(1);
            p.subscription_ids_available = Some(1);
            p.shared_available = Some(0);
            p.server_keep_alive = Some(30);
            p.response_info = Some("r".into());
            p.server_reference = Some("s".into());
            p.auth_method = Some("m".into());
            p.auth_data = Some(pattern(300));
        }),
    ]
}

/// Reason string and user properties: all an acknowledgement, SUBACK or UNSUBACK takes.
fn reason_props() -> Vec<Props> {
    vec![
        Props::default(),
        props(|p| p.reason_string = Some("quota exceeded for ü".into())),
        props(|p| p.reason_string = Some(String::new())),
        props(|p| p.user = user(1)),
        props(|p| p.user = user(5)),
        props(|p| {
            p.reason_string = Some("r".into());
            p.user = user(6);
        }),
    ]
}

fn disconnect_props() -> Vec<Props> {
    vec![
        Props::default(),
        props(|p| p.session_expiry = Some(0)),
        props(|p| p.session_expiry = Some(0xffff_ffff)),
        props(|p| p.reason_string = Some("shutting down".into())),
        props(|p| p.user = user(3)),
        props(|p| p.server_reference = Some("backup.example".into())),
        props(|p| {
            p.session_expiry = Some(10);
            p.reason_string = Some("moved".into());
            p.user = user(2);
            p.server_reference = Some("new.example:8883".into());
        }),
    ]
}

/// The QoS, DUP and RETAIN combinations of a PUBLISH. QoS 0 with DUP is left out:
/// mqttbytes writes the flag, which [MQTT-3.3.1-2] forbids and Herald refuses.
fn publish_flags() -> impl Iterator<Item = (u8, bool, bool)> + Clone {
    (0..3u8).flat_map(|qos| {
        let dups: &[bool] = if qos == 0 { &[false] } else { &[false, true] };
        dups.iter()
            .flat_map(move |&dup| [false, true].map(|retain| (qos, dup, retain)))
    })
}

fn publish(qos: u8, dup: bool, retain: bool, topic: &str, pkid: u16, payload: Payload) -> Publish {
    Publish {
        dup,
        qos,
        retain,
        topic: topic.to_string(),
        // QoS 0 carries no packet identifier; both codecs hold 0 for it.
        pkid: if qos == 0 { 0 } else { pkid },
        payload,
        props: Props::default(),
    }
}

#[test]
fn connect() {
    let mut wills = vec![None];
    for (i, props) in message_props(true).into_iter().enumerate() {
        let qos = (i % 3) as u8;
        wills.push(Some(Will {
            topic: TOPICS[i % TOPICS.len()].to_string(),
            message: pattern([0, 1, 10, 300][i % 4]),
            qos,
            retain: i % 2 == 1,
            props,
        }));
    }
    // A password without a user name is allowed in MQTT 5.0 (3.1.2.9).
    let logins = [
        (None, None),
        (Some("user"), None),
        (Some("üser"), None),
        (Some("user"), Some("secret")),
        (Some("ü"), Some("pässwörd with spaces")),
        (None, Some("token-only")),
    ];
    let client_ids = ["", "c", "client-1", "ü-client", "a23-character-client-id"];
    let keep_alives = [0, 1, 60, 0x7fff, 0xffff];
    let mut i = 0;
    let mut cases = Vec::new();
    for will in &wills {
        for props in connect_props() {
            for clean_start in [false, true] {
                i += 1;
                let (username, password) = logins[i % logins.len()];
                cases.push(Case::Connect(Box::new(Connect {
                    clean_start,
                    keep_alive: keep_alives[i % keep_alives.len()],
                    client_id: client_ids[(i / 2) % client_ids.len()].to_string(),
                    will: will.clone(),
                    username: username.map(String::from),
                    password: password.map(String::from),
                    props: props.clone(),
                })));
            }
        }
    }
    agree_on(cases);
}

#[test]
fn connect_longest_fields() {
    let longest = longest_string();
    let long = pattern(65_535);
    agree_on([
        Case::Connect(Box::new(Connect {
            clean_start: true,
            keep_alive: 10,
            client_id: longest.clone(),
            will: Some(Will {
                topic: longest.clone(),
                message: long.clone(),
                qos: 2,
                retain: true,
                props: props(|p| {
                    p.correlation_data = Some(long.clone());
                    p.user = vec![(longest.clone(), longest.clone())];
                }),
            }),
            username: Some(longest.clone()),
            password: Some("p".repeat(65_535)),
            props: props(|p| {
                p.auth_method = Some(longest.clone());
                p.auth_data = Some(long.clone());
            }),
        })),
        Case::Connect(Box::new(Connect {
            clean_start: false,
            keep_alive: 0xffff,
            client_id: "c".into(),
            will: Some(Will {
                topic: "w".into(),
                message: long.clone(),
                qos: 0,
                retain: false,
                props: Props::default(),
            }),
            username: None,
            password: Some("p".repeat(65_535)),
            props: props(|p| p.user = user(300)),
        })),
    ]);
}

#[test]
fn connack() {
    let codes = numbers(&CONNACK_CODES, |c| c as u8);
    let all_props = connack_props();
    let mut cases = Vec::new();
    for (i, &code) in codes.iter().enumerate() {
        // Session Present only with success: a refusal must not set it [MQTT-3.2.2-6].
        let sessions: &[bool] = if code == 0 { &[false, true] } else { &[false] };
        for &session_present in sessions {
            for props in [Props::default(), all_props[i % all_props.len()].clone()] {
                cases.push(Case::ConnAck {
                    session_present,
                    code,
                    props,
                });
            }
        }
    }
    for props in all_props {
        for session_present in [false, true] {
            cases.push(Case::ConnAck {
                session_present,
                code: 0,
                props: props.clone(),
            });
        }
    }
    agree_on(cases);
}

#[test]
fn publish_properties() {
    let mut cases = Vec::new();
    let mut i = 0;
    for props in message_props(false) {
        for (qos, dup, retain) in publish_flags() {
            i += 1;
            let mut p = publish(
                qos,
                dup,
                retain,
                TOPICS[i % TOPICS.len()],
                PKIDS[i % PKIDS.len()],
                pattern([0, 1, 5, 130][i % 4]),
            );
            p.props = props.clone();
            cases.push(Case::Publish(p));
        }
    }
    agree_on(cases);
}

#[test]
fn publish_payload_sizes() {
    let all = message_props(false).pop().unwrap();
    let mut cases = Vec::new();
    for (qos, dup, retain) in publish_flags() {
        for size in [0, 1, 127, 128, 16_384, 200_000] {
            for props in [Props::default(), all.clone()] {
                let mut p = publish(qos, dup, retain, "a/b", 10, pattern(size));
                p.props = props;
                cases.push(Case::Publish(p));
            }
        }
    }
    agree_on(cases);
}

#[test]
fn publish_topics_and_longest_fields() {
    let longest = longest_string();
    let topics = TOPICS.iter().copied().chain([longest.as_str()]);
    let mut cases: Vec<Case> = topics
        .flat_map(|topic| {
            (0..3).map(move |qos| {
                let mut p = publish(qos, false, qos == 1, topic, 7, pattern(5));
                p.props = props(|p| p.user = user(qos.into()));
                Case::Publish(p)
            })
        })
        .collect();
    // String and binary properties at their longest; the property length then takes a
    // three-byte variable byte integer.
    let mut p = publish(1, false, false, &longest, 1, pattern(1000));
    p.props = props(|p| {
        p.content_type = Some(longest.clone());
        p.response_topic = Some(longest.clone());
        p.correlation_data = Some(pattern(65_535));
        p.user = vec![
            (longest.clone(), longest.clone()),
            ("k".into(), longest.clone()),
        ];
        p.subscription_ids = vec![268_435_455];
    });
    cases.push(Case::Publish(p));
    agree_on(cases);
}

/// Property lists whose length sits at the edges of the 1-, 2- and 3-byte variable byte
/// integers, and so do the packets' remaining lengths.
#[test]
fn property_length_boundaries() {
    let mut cases = Vec::new();
    for edge in [127usize, 16_383] {
        for len in edge - 2..=edge + 2 {
            // One user property of ("k", value) takes 1 + 2 + 1 + 2 + value bytes.
            let value = "v".repeat(len - 6);
            let mut p = publish(1, false, false, "t", 1, pattern(3));
            p.props = props(|p| p.user = vec![("k".into(), value.clone())]);
            cases.push(Case::Publish(p));
            // A reason string takes 1 + 2 + string bytes.
            let reason = "r".repeat(len - 3);
            cases.push(Case::Ack {
                kind: AckKind::PubAck,
                pkid: 1,
                code: 0x80,
                props: props(|p| p.reason_string = Some(reason.clone())),
            });
            cases.push(Case::Disconnect {
                code: 0x8b,
                props: props(|p| p.reason_string = Some(reason.clone())),
            });
            cases.push(Case::SubAck {
                pkid: 2,
                codes: vec![1],
                props: props(|p| p.reason_string = Some(reason.clone())),
            });
        }
    }
    agree_on(cases);
}

#[test]
fn acknowledgements() {
    let tables: [(AckKind, Vec<u8>); 4] = [
        (AckKind::PubAck, numbers(&PUBACK_CODES, |c| c as u8)),
        (AckKind::PubRec, numbers(&PUBREC_CODES, |c| c as u8)),
        (AckKind::PubRel, numbers(&PUBREL_CODES, |c| c as u8)),
        (AckKind::PubComp, numbers(&PUBCOMP_CODES, |c| c as u8)),
    ];
    let mut cases = Vec::new();
    let mut i = 0;
    for (kind, codes) in tables {
        for code in codes {
            // Success without properties takes the short form, the packet identifier
            // alone; a code without properties leaves out the property length.
            for props in reason_props() {
                i += 1;
                cases.push(Case::Ack {
                    kind,
                    pkid: PKIDS[i % PKIDS.len()],
                    code,
                    props,
                });
            }
        }
        for pkid in PKIDS {
            cases.push(Case::Ack {
                kind,
                pkid,
                code: 0,
                props: Props::default(),
            });
        }
    }
    agree_on(cases);
}

/// Both read a reason code followed by an empty property list, which neither writes
/// (both leave out the property length when there are no properties) but the spec
/// allows (3.4.2.2).
#[test]
fn acknowledgements_with_empty_property_list() {
    let tables: [(AckKind, u8, Vec<u8>); 4] = [
        (AckKind::PubAck, 0x40, numbers(&PUBACK_CODES, |c| c as u8)),
        (AckKind::PubRec, 0x50, numbers(&PUBREC_CODES, |c| c as u8)),
        (AckKind::PubRel, 0x62, numbers(&PUBREL_CODES, |c| c as u8)),
        (AckKind::PubComp, 0x70, numbers(&PUBCOMP_CODES, |c| c as u8)),
    ];
    for (kind, first, codes) in tables {
        for code in codes {
            let bytes = [first, 4, 0, 7, code, 0];
            let case = Case::Ack {
                kind,
                pkid: 7,
                code,
                props: Props::default(),
            };
            let theirs = mqttbytes_read(&bytes).map(from_mqttbytes);
            assert_eq!(theirs, Ok(case.clone()), "mqttbytes reads {bytes:02x?}");
            let ours = herald_decode(&bytes).map(from_herald);
            assert_eq!(ours, Ok(case.clone()), "Herald reads {bytes:02x?}");
            incomplete_when_cut(&case, &bytes);
        }
    }
    for code in DISCONNECT_CODES {
        let bytes = [0xe0, 2, code, 0];
        let case = Case::Disconnect {
            code,
            props: Props::default(),
        };
        let theirs = mqttbytes_read(&bytes).map(from_mqttbytes);
        assert_eq!(theirs, Ok(case.clone()), "mqttbytes reads {bytes:02x?}");
        let ours = herald_decode(&bytes).map(from_herald);
        assert_eq!(ours, Ok(case.clone()), "Herald reads {bytes:02x?}");
        incomplete_when_cut(&case, &bytes);
    }
}

/// Every combination of a filter's options: QoS, No Local, Retain As Published, Retain
/// Handling.
fn all_options() -> impl Iterator<Item = (u8, bool, bool, u8)> + Clone {
    (0..3u8).flat_map(|qos| {
        [false, true].into_iter().flat_map(move |no_local| {
            [false, true]
                .into_iter()
                .flat_map(move |rap| (0..3u8).map(move |handling| (qos, no_local, rap, handling)))
        })
    })
}

fn filter(
    path: &str,
    (qos, no_local, retain_as_published, retain_handling): (u8, bool, bool, u8),
) -> Filter {
    Filter {
        path: path.to_string(),
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    }
}

/// Subscription identifier and user properties: all a SUBSCRIBE takes. Only one
/// identifier: more is a Protocol Error (3.8.2.1.2). mqttbytes 0.6 writes the identifier
/// right, at every length, so these go both ways; its reader's overcount (see
/// `message_props`) is harmless here, where no property after the one identifier is
/// shorter than two bytes.
fn subscribe_props() -> Vec<Props> {
    let mut list = vec![
        Props::default(),
        props(|p| p.user = user(1)),
        props(|p| p.user = user(6)),
    ];
    for id in SUBSCRIPTION_IDS {
        list.push(props(|p| p.subscription_ids = vec![id]));
    }
    list.push(props(|p| {
        p.subscription_ids = vec![2_097_152];
        p.user = user(3);
    }));
    list
}

#[test]
fn subscribe() {
    let props_list = subscribe_props();
    let mut cases = Vec::new();
    // One filter with each combination of options, with each property list in turn.
    for (i, options) in all_options().enumerate() {
        cases.push(Case::Subscribe {
            pkid: PKIDS[i % PKIDS.len()],
            filters: vec![filter(FILTERS[i % FILTERS.len()], options)],
            props: props_list[i % props_list.len()].clone(),
        });
    }
    // Many filters, the combinations in turn, with each property list.
    for (i, props) in props_list.iter().enumerate() {
        for n in [2, 10, 36] {
            let filters = all_options()
                .cycle()
                .skip(i)
                .take(n)
                .enumerate()
                .map(|(j, options)| filter(FILTERS[j % FILTERS.len()], options))
                .collect();
            cases.push(Case::Subscribe {
                pkid: PKIDS[(i + n) % PKIDS.len()],
                filters,
                props: props.clone(),
            });
        }
    }
    agree_on(cases);
}

#[test]
fn suback() {
    // SUBACK without reason codes is left out: mqttbytes refuses it; Herald's decoder
    // accepts it (a server never receives SUBACK).
    let props_list = reason_props();
    let mut cases = Vec::new();
    for n in 1..=SUBACK_CODES.len() {
        for start in [0, 3, 7] {
            cases.push(Case::SubAck {
                pkid: PKIDS[n % PKIDS.len()],
                codes: SUBACK_CODES
                    .iter()
                    .cycle()
                    .skip(start)
                    .take(n)
                    .copied()
                    .collect(),
                props: props_list[(n + start) % props_list.len()].clone(),
            });
        }
    }
    agree_on(cases);
}

#[test]
fn unsubscribe() {
    let mut cases = Vec::new();
    for n in 1..=FILTERS.len() + 2 {
        for props in [Props::default(), props(|p| p.user = user(n))] {
            cases.push(Case::Unsubscribe {
                pkid: PKIDS[n % PKIDS.len()],
                filters: FILTERS
                    .iter()
                    .cycle()
                    .take(n)
                    .map(|f| f.to_string())
                    .collect(),
                props,
            });
        }
    }
    agree_on(cases);
}

#[test]
fn unsuback() {
    // UNSUBACK without reason codes is left out: mqttbytes refuses it; Herald's decoder
    // accepts it (a server never receives UNSUBACK).
    let codes = numbers(&UNSUBACK_CODES, |c| c as u8);
    let props_list = reason_props();
    let mut cases = Vec::new();
    for n in 1..=codes.len() + 2 {
        for start in [0, 4] {
            cases.push(Case::UnsubAck {
                pkid: PKIDS[n % PKIDS.len()],
                codes: codes.iter().cycle().skip(start).take(n).copied().collect(),
                props: props_list[(n + start) % props_list.len()].clone(),
            });
        }
    }
    agree_on(cases);
}

#[test]
fn pings() {
    agree_on([Case::PingReq, Case::PingResp]);
}

#[test]
fn disconnect() {
    let props_list = disconnect_props();
    let mut cases = Vec::new();
    for (i, &code) in DISCONNECT_CODES.iter().enumerate() {
        // Without properties, mqttbytes reads neither a DISCONNECT with a reason code
        // alone nor one without either (pinned in `herald_accepts_what_mqttbytes_refuses`):
        // those are only read by Herald, below.
        for props in [
            props_list[1 + i % (props_list.len() - 1)].clone(),
            props_list.last().unwrap().clone(),
        ] {
            cases.push(Case::Disconnect { code, props });
        }
    }
    for props in &props_list[1..] {
        cases.push(Case::Disconnect {
            code: 0,
            props: props.clone(),
        });
    }
    agree_on(cases);

    // Without properties, one direction: mqttbytes writes, Herald reads, and the bytes
    // are the same: none at all for a normal disconnection (3.14.2.1), the reason code
    // alone otherwise (3.14.2.2.1).
    for code in DISCONNECT_CODES {
        let case = Case::Disconnect {
            code,
            props: Props::default(),
        };
        let theirs = herald_reads_mqttbytes(&case);
        let ours = herald_bytes(&case);
        let expected: &[u8] = if code == 0 {
            &[0xe0, 0]
        } else {
            &[0xe0, 1, code]
        };
        assert_eq!(&ours[..], expected, "{case:?}");
        assert_eq!(&theirs[..], expected, "{case:?}");
        incomplete_when_cut(&case, &ours);
    }
}

/// Topic aliases, where both codecs agree: a PUBLISH that sets one carries the topic and
/// the alias; one that uses it, an empty topic. Herald's decoder resolves and removes
/// the alias, so what it reads is the case with its topic resolved and no alias.
#[test]
fn topic_aliases() {
    // mqttbytes writes, Herald reads on one connection that allows aliases 1 to 3.
    let steps = [
        ("sport/tennis", 1, "sport/tennis"),
        ("", 1, "sport/tennis"),
        ("ü/€", 3, "ü/€"),
        ("", 3, "ü/€"),
        ("", 1, "sport/tennis"),
        // Alias 1 set again, to another topic.
        ("news", 1, "news"),
        ("", 1, "news"),
        ("", 3, "ü/€"),
        ("x", 2, "x"),
        ("", 2, "x"),
    ];
    let others = message_props(false);
    let mut decoder = herald_decoder();
    decoder.allow_topic_aliases(3);
    for (i, (sent, alias, resolved)) in steps.into_iter().enumerate() {
        let qos = (i % 3) as u8;
        let mut p = publish(
            qos,
            false,
            i % 2 == 0,
            sent,
            PKIDS[i % PKIDS.len()],
            pattern(i),
        );
        p.props = others[i % others.len()].clone();
        p.props.topic_alias = Some(alias);
        let theirs = mqttbytes_bytes(&Case::Publish(p.clone()));
        let decoded = herald_decode_with(&mut decoder, &theirs)
            .unwrap_or_else(|e| panic!("Herald refuses mqttbytes' {p:?}: {e}"));
        let mut expected = p.clone();
        expected.topic = resolved.into();
        expected.props.topic_alias = None;
        assert_eq!(
            from_herald(decoded),
            Case::Publish(expected),
            "alias step {i}"
        );
        // Herald writes an alias given as a property as it is, when the topic is there
        // too (Herald's packets never hold an empty topic).
        if !sent.is_empty() {
            let ours = mqttbytes_reads_herald(&Case::Publish(p.clone()));
            same_encoding(&Case::Publish(p), &ours, &theirs);
        }
    }

    // Herald's encoder assigns aliases towards a peer that allows 2; mqttbytes reads
    // them, and the test resolves them as a client would.
    let mut encoder = h::Encoder::new(h::ProtocolVersion::V5);
    encoder.use_topic_aliases(2);
    let wire = [
        ("a/b", "a/b", Some(1)),
        ("c", "c", Some(2)),
        ("a/b", "", Some(1)),
        // No third alias: the topic goes out in full every time.
        ("d", "d", None),
        ("c", "", Some(2)),
        ("a/b", "", Some(1)),
        ("d", "d", None),
    ];
    let mut aliases: HashMap<u16, String> = HashMap::new();
    for (i, (topic, sent, alias)) in wire.into_iter().enumerate() {
        let qos = (i % 3) as u8;
        let mut p = publish(
            qos,
            qos > 0,
            false,
            topic,
            PKIDS[i % PKIDS.len()],
            pattern(i),
        );
        p.props = others[(i * 5) % others.len()].clone();
        let mut buf = BytesMut::new();
        encoder.encode(&to_herald(&Case::Publish(p.clone())), &mut buf);
        let Ok(m::Packet::Publish(mut read)) = mqttbytes_read(&buf) else {
            panic!("mqttbytes does not read Herald's aliased {p:?} as a PUBLISH");
        };
        assert_eq!(read.topic, sent, "step {i}");
        let read_alias = read.properties.as_mut().and_then(|p| p.topic_alias.take());
        assert_eq!(read_alias, alias, "step {i}");
        if let Some(n) = read_alias {
            if read.topic.is_empty() {
                read.topic = aliases[&n].clone();
            } else {
                aliases.insert(n, read.topic.clone());
            }
        }
        assert_eq!(from_mqttbytes_publish(read), p, "step {i}");
    }
}

// What the oracle leaves out.

/// Replaces the first byte of a packet.
fn with_first_byte(mut bytes: Vec<u8>, first: u8) -> Vec<u8> {
    bytes[0] = first;
    bytes
}

fn connect_case() -> Connect {
    Connect {
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        props: Props::default(),
    }
}

fn m_bytes(case: Case) -> Vec<u8> {
    mqttbytes_bytes(&case).to_vec()
}

fn m_connect_bytes(c: m::Connect) -> Vec<u8> {
    let mut buf = BytesMut::new();
    c.write(&mut buf).unwrap();
    buf.to_vec()
}

/// The cases left out of the oracle because mqttbytes accepts what the spec forbids:
/// Herald must refuse each, with the error given.
#[test]
fn mqttbytes_accepts_what_herald_refuses() {
    let subscribe = |pkid, filters: &[&str], props: Props| Case::Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|f| filter(f, (1, false, false, 0)))
            .collect(),
        props,
    };
    let publish_with = |topic: &str, props: Props| {
        let mut p = publish(0, false, false, topic, 0, pattern(1));
        p.props = props;
        Case::Publish(p)
    };
    let connect_with = |props: Props| {
        Case::Connect(Box::new(Connect {
            props,
            ..connect_case()
        }))
    };
    // CONNECT's flags byte follows the 2-byte fixed header and the protocol name and level.
    let mut reserved_connect_flag = m_bytes(Case::Connect(Box::new(connect_case())));
    reserved_connect_flag[9] |= 1;
    // A SUBSCRIBE's last byte is its last filter's options.
    let mut options = m_bytes(subscribe(1, &["a"], Props::default()));
    *options.last_mut().unwrap() |= 0b0100_0000;
    let mut will_wildcard = mqttbytes_connect(connect_case());
    will_wildcard.last_will = Some(m::LastWill::new(
        "a/#",
        "bye",
        mqttbytes::QoS::AtMostOnce,
        false,
    ));
    let mut max_qos_2 = m::ConnAck::new(m::ConnectReturnCode::Success, false);
    max_qos_2.properties = Some(m::ConnAckProperties {
        max_qos: Some(2),
        ..m::ConnAckProperties::new()
    });
    let mut retain_available_2 = max_qos_2.clone();
    retain_available_2.properties = Some(m::ConnAckProperties {
        retain_available: Some(2),
        ..m::ConnAckProperties::new()
    });
    let connack_bytes = |c: m::ConnAck| {
        let mut buf = BytesMut::new();
        c.write(&mut buf).unwrap();
        buf.to_vec()
    };

    let cases = [
        (
            "QoS 0 PUBLISH with DUP [MQTT-3.3.1-2]",
            m_bytes(Case::Publish(publish(0, true, false, "a", 0, pattern(1)))),
            DecodeError::ReservedFlags {
                packet: "PUBLISH",
                flags: 0b1000,
            },
        ),
        (
            "wildcard in a topic name [MQTT-3.3.2-2]",
            m_bytes(publish_with("a/+", Props::default())),
            DecodeError::InvalidTopic(TopicError::WildcardInName),
        ),
        (
            "wildcard in the will topic, a topic name [MQTT-4.7.0-1]",
            m_connect_bytes(will_wildcard),
            DecodeError::InvalidTopic(TopicError::WildcardInName),
        ),
        (
            "empty topic name without a topic alias (3.3.2.1: Protocol Error)",
            m_bytes(publish_with("", Props::default())),
            DecodeError::EmptyTopicWithoutAlias,
        ),
        (
            "topic alias 0 (3.3.2.3.4: not permitted)",
            m_bytes(publish_with("a", props(|p| p.topic_alias = Some(0)))),
            DecodeError::TopicAliasOutOfRange { alias: 0, max: 0 },
        ),
        (
            "U+0000 in a topic name [MQTT-1.5.4-2]",
            m_bytes(publish_with("a\0b", Props::default())),
            DecodeError::NullCharacter,
        ),
        (
            "U+0000 in a user property [MQTT-1.5.4-2]",
            m_bytes(publish_with(
                "a",
                props(|p| p.user = vec![("k\0".into(), "v".into())]),
            )),
            DecodeError::NullCharacter,
        ),
        (
            "subscription identifier 0 in PUBLISH (3.3.2.3.8: Protocol Error)",
            m_bytes(publish_with("a", props(|p| p.subscription_ids = vec![0]))),
            DecodeError::InvalidPropertyValue(0x0b),
        ),
        (
            "subscription identifier 0 in SUBSCRIBE (3.8.2.1.2: Protocol Error)",
            m_bytes(subscribe(
                1,
                &["a"],
                props(|p| p.subscription_ids = vec![0]),
            )),
            DecodeError::InvalidPropertyValue(0x0b),
        ),
        (
            "Message Expiry Interval twice (3.3.2.3.3: Protocol Error)",
            // PUBLISH "a", properties: 0x02 1, 0x02 2.
            vec![0x30, 14, 0, 1, b'a', 10, 2, 0, 0, 0, 1, 2, 0, 0, 0, 2],
            DecodeError::DuplicateProperty(0x02),
        ),
        (
            "subscription identifier twice in SUBSCRIBE (3.8.2.1.2: Protocol Error)",
            // SUBSCRIBE 1, properties: 0x0b 1, 0x0b 2; filter "a" at QoS 0.
            vec![0x82, 11, 0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, b'a', 0],
            DecodeError::DuplicateProperty(0x0b),
        ),
        (
            "Request Problem Information 2 (3.1.2.11.7: Protocol Error)",
            m_bytes(connect_with(props(|p| p.request_problem_info = Some(2)))),
            DecodeError::InvalidPropertyValue(0x17),
        ),
        (
            "Request Response Information 2 (3.1.2.11.6: Protocol Error)",
            m_bytes(connect_with(props(|p| p.request_response_info = Some(2)))),
            DecodeError::InvalidPropertyValue(0x19),
        ),
        (
            "Receive Maximum 0 (3.1.2.11.3: Protocol Error)",
            m_bytes(connect_with(props(|p| p.receive_maximum = Some(0)))),
            DecodeError::InvalidPropertyValue(0x21),
        ),
        (
            "Maximum Packet Size 0 (3.1.2.11.4: Protocol Error)",
            m_bytes(connect_with(props(|p| p.maximum_packet_size = Some(0)))),
            DecodeError::InvalidPropertyValue(0x27),
        ),
        (
            "Maximum QoS 2 (3.2.2.3.4: Protocol Error)",
            connack_bytes(max_qos_2),
            DecodeError::InvalidPropertyValue(0x24),
        ),
        (
            "Retain Available 2 (3.2.2.3.5: Protocol Error)",
            connack_bytes(retain_available_2),
            DecodeError::InvalidPropertyValue(0x25),
        ),
        (
            "CONNACK acknowledge flags with reserved bits [MQTT-3.2.2-1]",
            vec![0x20, 3, 0b10, 0, 0],
            DecodeError::InvalidConnAck,
        ),
        (
            "packet identifier 0 in SUBSCRIBE [MQTT-2.2.1-3]",
            m_bytes(subscribe(0, &["a"], Props::default())),
            DecodeError::ZeroPacketId,
        ),
        (
            "packet identifier 0 in PUBACK, which answers no PUBLISH [MQTT-2.2.1-5]",
            m_bytes(Case::Ack {
                kind: AckKind::PubAck,
                pkid: 0,
                code: 0,
                props: Props::default(),
            }),
            DecodeError::ZeroPacketId,
        ),
        (
            "SUBSCRIBE without filters [MQTT-3.8.3-2]",
            m_bytes(subscribe(1, &[], Props::default())),
            DecodeError::NoTopicFilters("SUBSCRIBE"),
        ),
        (
            "UNSUBSCRIBE without filters [MQTT-3.10.3-2]",
            m_bytes(Case::Unsubscribe {
                pkid: 1,
                filters: Vec::new(),
                props: Props::default(),
            }),
            DecodeError::NoTopicFilters("UNSUBSCRIBE"),
        ),
        (
            "SUBSCRIBE options with reserved bits [MQTT-3.8.3-5]",
            options,
            DecodeError::InvalidSubscribeOptions(0b0100_0001),
        ),
        (
            "CONNECT reserved flag [MQTT-3.1.2-3]",
            reserved_connect_flag,
            DecodeError::ConnectReservedFlag,
        ),
        (
            "PUBREL flags other than 0b0010 [MQTT-3.6.1-1]",
            with_first_byte(
                m_bytes(Case::Ack {
                    kind: AckKind::PubRel,
                    pkid: 1,
                    code: 0,
                    props: Props::default(),
                }),
                0x60,
            ),
            DecodeError::ReservedFlags {
                packet: "PUBREL",
                flags: 0,
            },
        ),
        (
            "PINGREQ with flags [MQTT-2.1.3-1]",
            vec![0xc1, 0],
            DecodeError::ReservedFlags {
                packet: "PINGREQ",
                flags: 1,
            },
        ),
        (
            "a property running past the property length (Malformed Packet)",
            // PUBACK 1, code 0x80, property length 1 but a 4-byte reason string.
            vec![0x40, 8, 0, 1, 0x80, 1, 0x1f, 0, 1, b'a'],
            DecodeError::Truncated,
        ),
        (
            "bytes after PUBACK's properties (Malformed Packet)",
            vec![0x40, 5, 0, 1, 0x80, 0, 0xff],
            DecodeError::TrailingBytes(1),
        ),
    ];
    for (what, bytes, error) in cases {
        assert!(
            mqttbytes_read(&bytes).is_ok(),
            "{what}: mqttbytes now refuses it; move it to `both_refuse`"
        );
        assert_eq!(herald_decode(&bytes), Err(error), "{what}");
    }
}

/// Malformed packets and protocol errors both codecs refuse.
#[test]
fn both_refuse() {
    let cases = [
        (
            "PUBLISH at QoS 3 [MQTT-3.3.1-4]",
            vec![0x36, 6, 0, 1, b'a', 0, 1, 0],
            DecodeError::InvalidQoS,
        ),
        (
            "PUBLISH at QoS 1 with packet identifier 0 [MQTT-2.2.1-3]",
            vec![0x32, 6, 0, 1, b'a', 0, 0, 0],
            DecodeError::ZeroPacketId,
        ),
        (
            "Retain Handling 3 (3.8.3.1: Protocol Error)",
            vec![0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30],
            DecodeError::InvalidRetainHandling,
        ),
        (
            "a property not allowed in its packet: Session Expiry Interval in PUBLISH",
            vec![0x30, 9, 0, 1, b'a', 5, 0x11, 0, 0, 0, 1],
            DecodeError::UnexpectedProperty {
                property: 0x11,
                packet: "PUBLISH",
            },
        ),
        (
            "a property not allowed in its packet: Topic Alias in PUBACK",
            vec![0x40, 7, 0, 1, 0x80, 3, 0x23, 0, 1],
            DecodeError::UnexpectedProperty {
                property: 0x23,
                packet: "PUBACK/PUBREC/PUBREL/PUBCOMP",
            },
        ),
        (
            "an unknown property",
            vec![0x40, 6, 0, 1, 0x80, 2, 0x7f, 0],
            DecodeError::UnknownProperty(0x7f),
        ),
        (
            "a topic name that is not UTF-8 [MQTT-1.5.4-1]",
            vec![0x30, 5, 0, 2, 0xc3, 0x28, 0],
            DecodeError::InvalidUtf8,
        ),
        (
            "a user property that is not UTF-8 [MQTT-1.5.4-1]",
            vec![0x30, 12, 0, 1, b'a', 7, 0x26, 0, 1, 0xff, 0, 1, b'v', 0],
            DecodeError::InvalidUtf8,
        ),
        (
            "a string running past the packet",
            vec![0x30, 4, 0, 9, b'a', 0],
            DecodeError::Truncated,
        ),
        (
            "protocol name other than MQTT [MQTT-3.1.2-1]",
            with_name(b"MQTX"),
            DecodeError::InvalidProtocolName("MQTX".into()),
        ),
        (
            "protocol level 6 [MQTT-3.1.2-2]",
            with_level(6),
            DecodeError::UnsupportedProtocolLevel(6),
        ),
        (
            "will QoS 3 [MQTT-3.1.2-12]",
            with_connect_flags(0b0001_1110),
            DecodeError::InvalidWillFlags,
        ),
        (
            "will QoS without the will flag [MQTT-3.1.2-11]",
            with_connect_flags(0b0000_1010),
            DecodeError::InvalidWillFlags,
        ),
        (
            "a remaining length of five bytes [MQTT-1.5.5-1]",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
            DecodeError::MalformedVarint,
        ),
        (
            "packet type 0 (reserved)",
            vec![0x00, 0],
            DecodeError::UnknownPacketType(0),
        ),
        (
            "a SUBACK reason code no packet has",
            vec![0x90, 4, 0, 1, 0, 0x03],
            DecodeError::InvalidSubAckCode(0x03),
        ),
    ];
    for (what, bytes, error) in cases {
        let theirs = mqttbytes_read(&bytes);
        assert!(
            theirs.is_err() && !matches!(theirs, Err(mqttbytes::Error::InsufficientBytes(_))),
            "{what}: mqttbytes reads it: {theirs:?}"
        );
        assert_eq!(herald_decode(&bytes), Err(error), "{what}");
    }
}

/// A minimal MQTT 5.0 CONNECT, client id "c", with its protocol name, level and flags
/// given, and a will if the flags say so.
fn raw_connect(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 60, 0, 0, 1, b'c']);
    if flags & 0b100 != 0 {
        // The will: no properties, topic "w", empty payload.
        body.extend_from_slice(&[0, 0, 1, b'w', 0, 0]);
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

fn with_name(name: &[u8]) -> Vec<u8> {
    raw_connect(name, 5, 0b10)
}

fn with_level(level: u8) -> Vec<u8> {
    raw_connect(b"MQTT", level, 0b10)
}

fn with_connect_flags(flags: u8) -> Vec<u8> {
    raw_connect(b"MQTT", 5, flags)
}

/// mqttbytes defects on reading: packets the spec allows, which mqttbytes refuses and
/// Herald reads. Each is left out of the oracle.
#[test]
fn herald_accepts_what_mqttbytes_refuses() {
    let disconnect = |code| Case::Disconnect {
        code,
        props: Props::default(),
    };
    // The password is Binary Data (3.1.3.6); mqttbytes holds it in a String.
    let mut binary_password = raw_connect(b"MQTT", 5, 0b0100_0010);
    binary_password.extend_from_slice(&[0, 2, 0xff, 0xfe]);
    binary_password[1] += 4;
    let cases: [(&str, Vec<u8>, mqttbytes::Error); 4] = [
        (
            "DISCONNECT without reason code and properties, Remaining Length 0 (3.14.2.1); \
             mqttbytes writes it so itself",
            vec![0xe0, 0],
            mqttbytes::Error::PayloadRequired,
        ),
        (
            "DISCONNECT with a reason code and no property length (3.14.2.2.1: taken as 0); \
             mqttbytes writes it so itself, and takes it for incomplete",
            vec![0xe0, 1, 0x8b],
            mqttbytes::Error::InsufficientBytes(1),
        ),
        (
            "a password that is not UTF-8 (3.1.3.6: Binary Data)",
            binary_password,
            mqttbytes::Error::TopicNotUtf8,
        ),
        (
            "AUTH (3.15), which mqttbytes does not know",
            vec![0xf0, 9, 0x18, 7, 0x15, 0, 1, b'm', 0x16, 0, 0],
            mqttbytes::Error::InvalidPacketType(15),
        ),
    ];
    for (what, bytes, error) in &cases {
        assert_eq!(
            mqttbytes_read(bytes).err(),
            Some(*error),
            "{what}: mqttbytes now reads it; move it to the oracle"
        );
        let packet =
            herald_decode(bytes).unwrap_or_else(|e| panic!("{what}: Herald refuses it: {e}"));
        match packet {
            h::Packet::Connect(c) => {
                assert_eq!(c.password.as_deref(), Some(&[0xff, 0xfe][..]), "{what}");
                assert_eq!(c.username, None, "{what}");
            }
            h::Packet::Auth(a) => {
                assert_eq!(a.reason, h::ReasonCode::CONTINUE_AUTHENTICATION, "{what}");
                assert_eq!(a.properties.authentication_method.as_deref(), Some("m"));
                assert_eq!(a.properties.authentication_data.as_deref(), Some(&[][..]));
            }
            other => {
                let expected = disconnect(bytes.get(2).copied().unwrap_or(0));
                assert_eq!(from_herald(other), expected, "{what}");
                // Both encoders write these very bytes.
                assert_eq!(&herald_bytes(&expected)[..], &bytes[..], "{what}");
                assert_eq!(&mqttbytes_bytes(&expected)[..], &bytes[..], "{what}");
            }
        }
    }
}

/// mqttbytes defect: its property reader counts each subscription identifier's property
/// byte twice, so it stops that many bytes short of the property length. Herald writes
/// the identifiers just before the user properties; when those are shorter than the
/// overcount, mqttbytes drops them and takes their bytes for the payload.
#[test]
fn mqttbytes_misreads_subscription_identifiers() {
    let mut p = publish(1, false, false, "t", 1, Payload(Bytes::from_static(b"p")));
    // Five identifiers (5 bytes overcounted), one user property of 5 bytes.
    p.props = props(|p| {
        p.subscription_ids = vec![1; 5];
        p.user = vec![(String::new(), String::new())];
    });
    let case = Case::Publish(p.clone());
    // Herald reads mqttbytes' encoding (user properties first) right.
    herald_reads_mqttbytes(&case);
    let ours = herald_bytes(&case);
    let Ok(m::Packet::Publish(read)) = mqttbytes_read(&ours) else {
        panic!("mqttbytes does not read Herald's PUBLISH");
    };
    let read = from_mqttbytes_publish(read);
    assert_eq!(read.props.subscription_ids, vec![1; 5]);
    assert!(
        read.props.user.is_empty(),
        "mqttbytes now reads the user property; drop the caution in `message_props`"
    );
    assert_eq!(&read.payload.0[..], &[0x26, 0, 0, 0, 0, b'p']);
}

/// mqttbytes defects on writing.
#[test]
fn mqttbytes_writes_wrongly() {
    // A CONNACK without properties lacks the property length (3.2.2.3.1), which Herald
    // rightly takes for a packet cut short; mqttbytes cannot read it back either.
    let mut connack = BytesMut::new();
    m::ConnAck::new(m::ConnectReturnCode::Success, true)
        .write(&mut connack)
        .unwrap();
    assert_eq!(&connack[..], &[0x20, 2, 1, 0]);
    assert_eq!(herald_decode(&connack), Err(DecodeError::Truncated));
    assert!(matches!(
        mqttbytes_read(&connack),
        Err(mqttbytes::Error::InsufficientBytes(_))
    ));
    // Herald's encoding of the same, and mqttbytes' with an empty property list.
    let case = Case::ConnAck {
        session_present: true,
        code: 0,
        props: Props::default(),
    };
    assert_eq!(&herald_bytes(&case)[..], &[0x20, 3, 1, 0, 0]);
    assert_eq!(&mqttbytes_bytes(&case)[..], &[0x20, 3, 1, 0, 0]);

    // A DISCONNECT with a reason code and an empty property list loses the reason code:
    // mqttbytes takes the packet for a normal disconnection without either.
    let mut disconnect = BytesMut::new();
    m::Disconnect {
        reason_code: m::DisconnectReasonCode::ServerShuttingDown,
        properties: Some(m::DisconnectProperties::new()),
    }
    .write(&mut disconnect)
    .unwrap();
    assert_eq!(&disconnect[..], &[0xe0, 0]);
    assert_eq!(
        herald_decode(&disconnect).map(from_herald),
        Ok(Case::Disconnect {
            code: 0,
            props: Props::default()
        })
    );
}
