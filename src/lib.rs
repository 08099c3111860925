//! Herald: a standalone MQTT broker.
//!
//! Bytes become packets in [`protocol`]; a [`connection`] task per client speaks MQTT
//! over any byte stream; the [`broker`] holds sessions, the subscription [`router`] and
//! the [`retained`] store, with durable state recorded through [`storage`].

pub mod acl;
pub mod auth;
pub mod broker;
pub mod clients;
pub mod config;
pub mod connection;
mod event_ids;
pub mod feed;
pub mod http;
pub mod keep_alive;
mod level_tree;
mod locks;
pub mod message;
pub mod passwd;
pub mod protocol;
pub mod proxy;
mod rate;
pub mod retained;
pub mod router;
pub mod server;
pub mod session;
pub mod stats;
pub mod storage;
mod sys;
pub mod telemetry;
pub mod tls;
pub mod topic;
mod websocket;

pub use config::Config;
pub use server::Server;
