//! The MQTT wire format: Herald's own packet types, a streaming decoder and an encoder.
//!
//! Nothing outside this module sees MQTT bytes. Strings and topics in decoded packets are
//! slices of the receive buffer (`Bytes`), validated once here.

mod decode;
mod encode;
mod packet;
mod properties;
mod reason;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v5;

pub use decode::{connect_version, DecodeError, Decoder};
pub use encode::{Encoder, PublishHeader};
pub use packet::*;
pub use properties::{
    id as property_id, Properties, PropertyFields, Value as PropertyValue, WriteProperties,
};
pub use reason::ReasonCode;

/// MQTT quality of service levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit field value, or `None` for the forbidden value 3.
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The protocol version a connection speaks, fixed by its CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The version a CONNECT's protocol name and level select, if Herald speaks it.
    pub fn from_name_and_level(name: &str, level: u8) -> Option<ProtocolVersion> {
        match (name, level) {
            ("MQIsdp", 3) => Some(ProtocolVersion::V31),
            ("MQTT", 4) => Some(ProtocolVersion::V311),
            ("MQTT", 5) => Some(ProtocolVersion::V5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// The largest remaining length the variable-length encoding can carry.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
