//! Durable state kept in process memory, for tests.

use std::sync::Mutex;

use super::{Change, Snapshot, Storage, StorageError, StoredMessage, Ticket};
use crate::locks::lock;

/// Keeps durable state in process memory: it survives the end of a connection and a
/// broker restart inside the same process (which is what tests need), not the end of
/// the process. Every change is "durable" as soon as it is recorded.
#[derive(Default)]
pub struct MemoryStorage {
    state: Mutex<Snapshot>,
}

impl Storage for MemoryStorage {
    fn record(&self, change: Change) -> Ticket {
        apply(&mut lock(&self.state), change);
        Ticket::NONE
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(lock(&self.state).clone())
    }
}

fn apply(state: &mut Snapshot, change: Change) {
    match change {
        Change::Session {
            client_id,
            expiry,
            offline_since,
        } => {
            let session = state.sessions.entry(client_id).or_default();
            session.expiry = expiry;
            session.offline_since = offline_since;
        }
        Change::SessionRemoved { client_id } => {
            state.sessions.remove(&client_id);
        }
        Change::Subscribed {
            client_id,
            filter,
            subscription,
        } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.subscriptions.insert(filter, subscription);
            }
        }
        Change::Unsubscribed { client_id, filter } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.subscriptions.remove(&filter);
            }
        }
        Change::Queued {
            client_id,
            seq,
            message,
        } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                let stored = StoredMessage {
                    message,
                    in_flight: None,
                };
                session.queued.insert(seq, stored);
            }
        }
        Change::InFlight {
            client_id,
            seq,
            pkid,
            released,
        } => {
            let queued = state
                .sessions
                .get_mut(&client_id)
                .and_then(|s| s.queued.get_mut(&seq));
            if let Some(queued) = queued {
                queued.in_flight = Some((pkid, released));
            }
        }
        Change::Delivered { client_id, seq } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.queued.remove(&seq);
            }
        }
        Change::Qos2Received { client_id, pkid } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.incoming_qos2.insert(pkid);
            }
        }
        Change::Qos2Released { client_id, pkid } => {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.incoming_qos2.remove(&pkid);
            }
        }
        Change::Retained { message } => {
            state.retained.insert(message.topic.clone(), message);
        }
        Change::RetainedCleared { topic } => {
            state.retained.remove(&topic);
        }
        Change::EventIdsReserved { below } => {
            state.event_ids_reserved = state.event_ids_reserved.max(below);
        }
        Change::Logged { events } => state.log.extend(events),
        Change::LogTrimmed { below } => state.log = state.log.split_off(&below),
        Change::LogSealed { next } => state.log_sealed = next,
    }
}
