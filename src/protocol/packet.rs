//! Packet types, shared by the decoder and the encoder, for every protocol version.
//! Fields MQTT 3.x lacks (reason codes, properties) are success and empty there.

use bytes::Bytes;
use bytestring::ByteString;

use super::{Properties, ProtocolVersion, QoS, ReasonCode};
use crate::topic::TopicName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: ProtocolVersion,
    /// Clean Session in MQTT 3.x, Clean Start in 5.0.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: ByteString,
    pub will: Option<LastWill>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// Written as the nearest 3.x return code to a 3.x client.
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// After a received topic alias is resolved: never empty.
    pub topic: TopicName,
    /// Zero for QoS 0, which carries no packet identifier.
    pub pkid: u16,
    pub payload: Bytes,
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub pkid: u16,
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement without properties: all MQTT 3.x has.
    pub fn new(pkid: u16) -> Ack {
        Ack::with_reason(pkid, ReasonCode::SUCCESS)
    }

    pub fn with_reason(pkid: u16, reason: ReasonCode) -> Ack {
        Ack {
            pkid,
            reason,
            properties: Properties::default(),
        }
    }
}

/// Retain Handling: whether retained messages are sent when a subscription is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Always (0, and all MQTT 3.x has).
    #[default]
    OnSubscribe,
    /// Only if the subscription did not exist (1).
    OnNewSubscription,
    /// Never (2).
    Never,
}

/// The options byte of one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    /// Never send this client messages it published itself.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// The options of an MQTT 3.x subscription at `qos`.
    pub fn qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }

    pub fn to_byte(self) -> u8 {
        let handling = match self.retain_handling {
            RetainHandling::OnSubscribe => 0,
            RetainHandling::OnNewSubscription => 1,
            RetainHandling::Never => 2,
        };
        self.qos as u8
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | handling << 4
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    /// Filters as sent: valid UTF-8, but their topic-filter syntax is checked by the
    /// broker so that a bad one is refused with a reason code rather than closing the
    /// connection.
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    /// One a filter: the granted QoS, or why it was refused.
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    pub filters: Vec<ByteString>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pkid: u16,
    /// One a filter; MQTT 3.x sends none.
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}
