//! MQTT 5.0 on the wire for tests/mqtt5.rs and conformance/v5, written from the
//! specification and independent of Herald's codec: the packets a client sends, built
//! byte by byte ([`build`]); a strict decoder for what the broker sends ([`read`]); and a
//! raw client on top ([`client`]). Include it beside the shared harness, as
//! `#[path = ".../tests/common/v5/mod.rs"] mod v5;` next to `mod common;`.
//!
//! The decoder rejects (panics on) anything the specification forbids a server to send
//! — undefined packet types or reason codes, wrong fixed-header flags, variable byte
//! integers longer than needed, ill-formed strings, properties not allowed in their
//! packet or repeated where they may not be, trailing bytes, a wildcard or an unknown
//! topic alias in a topic name, packets above the client's Maximum Packet Size — so
//! every packet any test receives is also checked against those rules.
#![allow(dead_code)]

mod build;
mod client;
mod read;

pub use build::*;
pub use client::*;
pub use read::*;

// ---- property identifiers (§2.2.2.2) ----

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

// ---- reason codes (§2.4) ----

pub const SUCCESS: u8 = 0x00;
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;

// ---- subscription options (§3.8.3.1), to OR with the QoS ----

pub const NO_LOCAL: u8 = 0x04;
pub const RETAIN_AS_PUBLISHED: u8 = 0x08;
/// Retain Handling 1: retained messages only for a new subscription.
pub const RETAIN_HANDLING_NEW: u8 = 0x10;
/// Retain Handling 2: no retained messages at subscription.
pub const RETAIN_HANDLING_NEVER: u8 = 0x20;
