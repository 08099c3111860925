//! MQTT 5.0 through the real wire: a broker on a loopback port, clients made of raw
//! bytes built from the specification (tests/common/v5), MQTT 3.x clients beside
//! them, and independent implementations (rumqttc's v5 client, mosquitto_pub and
//! mosquitto_sub) where it shows the broker interoperates.
//!
//! Section numbers ("§3.2.2.3") are those of the MQTT 5.0 specification.

mod common;
#[path = "common/v5/mod.rs"]
mod v5;

#[path = "mqtt5/acks.rs"]
mod acks;
#[path = "mqtt5/connect.rs"]
mod connect;
#[path = "mqtt5/delivery.rs"]
mod delivery;
#[path = "mqtt5/errors.rs"]
mod errors;
#[path = "mqtt5/interop.rs"]
mod interop;
#[path = "mqtt5/messages.rs"]
mod messages;
#[path = "mqtt5/sessions.rs"]
mod sessions;
#[path = "mqtt5/shared.rs"]
mod shared;
#[path = "mqtt5/subscriptions.rs"]
mod subscriptions;
