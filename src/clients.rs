//! Who is connected now, for the dashboard's client list: one entry an MQTT connection,
//! from its CONNACK to its close (bounded by `max_connections`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::locks::lock;
use crate::protocol::ProtocolVersion;
use crate::session::Session;

pub struct ConnectedClient {
    pub session: Arc<Session>,
    pub peer: SocketAddr,
    pub protocol: ProtocolVersion,
    pub listener: SocketAddr,
}

/// The connected clients, by connection id.
#[derive(Default)]
pub struct Clients(Mutex<HashMap<u64, ConnectedClient>>);

/// One client as the dashboard shows it.
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub id: String,
    pub address: String,
    pub protocol: &'static str,
    pub listener: String,
    /// Messages waiting to be sent to it, and in flight.
    pub queued: usize,
    pub inflight: usize,
}

impl Clients {
    pub fn connected(&self, connection_id: u64, client: ConnectedClient) {
        lock(&self.0).insert(connection_id, client);
    }

    pub fn disconnected(&self, connection_id: u64) {
        lock(&self.0).remove(&connection_id);
    }

    /// How many are connected.
    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }

    /// Every connected client, ordered by client id.
    pub fn list(&self) -> Vec<ClientView> {
        let mut list: Vec<ClientView> = lock(&self.0)
            .values()
            .map(|client| (client, client.session.lock().backlog()))
            .map(|(client, (queued, inflight))| ClientView {
                id: client.session.client_id.to_string(),
                address: client.peer.to_string(),
                protocol: match client.protocol {
                    ProtocolVersion::V31 => "3.1",
                    ProtocolVersion::V311 => "3.1.1",
                    ProtocolVersion::V5 => "5.0",
                },
                listener: client.listener.to_string(),
                queued,
                inflight,
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}
