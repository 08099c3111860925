//! What must outlive a connection or a restart, behind a trait so that the in-memory
//! store and a durable one are interchangeable.
//!
//! The broker's live state (sessions, the subscription tree, retained messages) is in
//! memory; every change to its durable part is also handed to the [`Storage`] as a
//! [`Change`], and [`Storage::load`] rebuilds that part when the broker starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytestring::ByteString;

use crate::locks::lock;
use crate::message::Message;
use crate::router::Subscription;
use crate::session::SessionExpiry;
use crate::topic::{TopicFilter, TopicName};

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// A persistent session was created (or reset by a clean-session connection).
    SessionCreated {
        client_id: ByteString,
        expiry: SessionExpiry,
    },
    SessionRemoved {
        client_id: ByteString,
    },
    Subscribed {
        client_id: ByteString,
        filter: TopicFilter,
        subscription: Subscription,
    },
    Unsubscribed {
        client_id: ByteString,
        filter: TopicFilter,
    },
    /// A QoS 1/2 message queued for a persistent session, under the session's sequence.
    Queued {
        client_id: ByteString,
        seq: u64,
        message: Message,
    },
    /// The queued message `seq` was acknowledged (or dropped) and is gone.
    Delivered {
        client_id: ByteString,
        seq: u64,
    },
    Retained {
        message: Message,
    },
    RetainedCleared {
        topic: TopicName,
    },
}

/// A persistent session as stored.
#[derive(Debug, Clone, Default)]
pub struct StoredSession {
    pub expiry: SessionExpiry,
    pub subscriptions: HashMap<TopicFilter, Subscription>,
    /// Queued messages by sequence number: their delivery order.
    pub queued: BTreeMap<u64, Message>,
}

/// Everything [`Storage::load`] returns.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: HashMap<ByteString, StoredSession>,
    pub retained: HashMap<TopicName, Message>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

pub trait Storage: Send + Sync {
    /// Records `changes`, in order.
    fn apply(&self, changes: &[Change]) -> Result<(), StorageError>;

    /// Reads back everything recorded.
    fn load(&self) -> Result<Snapshot, StorageError>;
}

/// Keeps nothing, for a broker whose state ends with its process: its live state is all
/// there is, and a second copy of every retained and queued message would be waste.
pub struct Volatile;

impl Storage for Volatile {
    fn apply(&self, _changes: &[Change]) -> Result<(), StorageError> {
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
}

/// Keeps durable state in process memory: it survives the end of a connection and a
/// broker restart inside the same process (which is what tests need), not the end of
/// the process.
#[derive(Default)]
pub struct MemoryStorage {
    state: Mutex<Snapshot>,
}

impl Storage for MemoryStorage {
    fn apply(&self, changes: &[Change]) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        for change in changes {
            apply_change(&mut state, change);
        }
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(lock(&self.state).clone())
    }
}

fn apply_change(state: &mut Snapshot, change: &Change) {
    match change {
        Change::SessionCreated { client_id, expiry } => {
            let session = StoredSession {
                expiry: *expiry,
                ..StoredSession::default()
            };
            state.sessions.insert(client_id.clone(), session);
        }
        Change::SessionRemoved { client_id } => {
            state.sessions.remove(client_id);
        }
        Change::Subscribed {
            client_id,
            filter,
            subscription,
        } => {
            if let Some(session) = state.sessions.get_mut(client_id) {
                session.subscriptions.insert(filter.clone(), *subscription);
            }
        }
        Change::Unsubscribed { client_id, filter } => {
            if let Some(session) = state.sessions.get_mut(client_id) {
                session.subscriptions.remove(filter);
            }
        }
        Change::Queued {
            client_id,
            seq,
            message,
        } => {
            if let Some(session) = state.sessions.get_mut(client_id) {
                session.queued.insert(*seq, message.clone());
            }
        }
        Change::Delivered { client_id, seq } => {
            if let Some(session) = state.sessions.get_mut(client_id) {
                session.queued.remove(seq);
            }
        }
        Change::Retained { message } => {
            state
                .retained
                .insert(message.topic.clone(), message.clone());
        }
        Change::RetainedCleared { topic } => {
            state.retained.remove(topic);
        }
    }
}
