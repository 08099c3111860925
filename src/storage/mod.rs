//! What must outlive a connection or a restart, behind a trait so that the in-memory
//! store and the durable one are interchangeable.
//!
//! The broker's live state (sessions, the subscription tree, retained messages) is in
//! memory; every change to its durable part is also handed to the [`Storage`] as a
//! [`Change`], and [`Storage::load`] rebuilds that part when the broker starts.
//!
//! Recording returns a [`Ticket`]: whatever the broker acknowledges on the strength of a
//! change (a PUBACK, a PUBREC, a SUBACK) waits until [`Storage::durable`] says that
//! ticket is on disk. Changes recorded by every connection meanwhile share one write and
//! one flush (see `commit`).

mod commit;
mod disk;
mod memory;
mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::SystemTime;

use bytestring::ByteString;

use crate::message::Message;
use crate::router::Subscription;
use crate::session::SessionExpiry;
use crate::topic::{TopicFilter, TopicName};

pub use disk::SledStorage;
pub use memory::MemoryStorage;

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// A persistent session is kept from now on, or its expiry changed, or it went
    /// offline (`offline_since`) or online again (`None`).
    Session {
        client_id: ByteString,
        expiry: SessionExpiry,
        offline_since: Option<SystemTime>,
    },
    /// The session and everything stored with it are gone.
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
    /// The queued message `seq` was sent with packet id `pkid`; `released`: its PUBREC
    /// arrived and PUBREL is what is to be sent again.
    InFlight {
        client_id: ByteString,
        seq: u64,
        pkid: u16,
        released: bool,
    },
    /// The queued message `seq` was acknowledged (or dropped) and is gone.
    Delivered {
        client_id: ByteString,
        seq: u64,
    },
    /// A QoS 2 message with this packet id was received and answered with PUBREC.
    Qos2Received {
        client_id: ByteString,
        pkid: u16,
    },
    /// Its PUBREL arrived: the packet id is free again.
    Qos2Released {
        client_id: ByteString,
        pkid: u16,
    },
    Retained {
        message: Message,
    },
    RetainedCleared {
        topic: TopicName,
    },
    /// Event ids below this may have been given out.
    EventIdsReserved {
        below: u64,
    },
    /// Messages of the web readers' replay log, with their event ids.
    Logged {
        events: Vec<(u64, Message)>,
    },
    /// The replay log holds no ids below this any more.
    LogTrimmed {
        below: u64,
    },
    /// Every event id below `next` that was given out is in the log: the broker
    /// stopped cleanly. 0 while it runs.
    LogSealed {
        next: u64,
    },
}

/// A position in the order of recorded changes. Once a ticket is durable, so is every
/// change recorded before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(pub u64);

impl Ticket {
    /// Nothing to wait for.
    pub const NONE: Ticket = Ticket(0);
}

/// A persistent session as stored.
#[derive(Debug, Clone, Default)]
pub struct StoredSession {
    pub expiry: SessionExpiry,
    /// When its last connection ended; `None` if one was attached when the broker
    /// stopped.
    pub offline_since: Option<SystemTime>,
    pub subscriptions: HashMap<TopicFilter, Subscription>,
    /// Queued messages by sequence number: their delivery order.
    pub queued: BTreeMap<u64, StoredMessage>,
    /// QoS 2 packet ids received and not yet released.
    pub incoming_qos2: BTreeSet<u16>,
}

/// A queued message and, if it was sent, how.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Message,
    /// The packet id it was sent with, and whether its PUBREC arrived.
    pub in_flight: Option<(u16, bool)>,
}

/// Everything [`Storage::load`] returns.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: HashMap<ByteString, StoredSession>,
    pub retained: HashMap<TopicName, Message>,
    /// Event ids below this may have been given out before.
    pub event_ids_reserved: u64,
    /// The replay log by event id.
    pub log: BTreeMap<u64, Message>,
    /// See [`Change::LogSealed`]; 0 if the broker did not stop cleanly.
    pub log_sealed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database in {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the database in {path} has schema version {found}, and this version of Herald \
         reads version {supported} only: use the Herald that wrote it, or another path"
    )]
    Schema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the database in {path} is not a Herald database (it has data but no schema version)")]
    Foreign { path: PathBuf },
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage failed earlier; nothing more is written")]
    Failed,
}

/// Resolves once a ticket is durable, or with the error that stopped the storage.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

pub trait Storage: Send + Sync {
    /// Records `change` after every change recorded before it; returns the ticket to
    /// wait for before acknowledging anything that depends on it.
    fn record(&self, change: Change) -> Ticket;

    /// Resolves once everything recorded up to `ticket` is durable. By default every
    /// change is as durable as it gets once recorded.
    fn durable(&self, _ticket: Ticket) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Makes the changes recorded from now until the guard is dropped durable together
    /// or not at all (a QoS 2 packet id with the message it brought). By default each
    /// change is applied whole when recorded, so there is nothing to group.
    fn atomic(&self) -> AtomicGuard<'_> {
        AtomicGuard::trivial()
    }

    /// Reads back everything recorded.
    fn load(&self) -> Result<Snapshot, StorageError>;

    /// Writes out everything recorded so far, whatever the sync mode; resolves once it
    /// is durable. By default there is nothing to write out.
    fn flush(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// See [`Storage::atomic`]: the group ends when this is dropped.
pub struct AtomicGuard<'a> {
    end: Option<Box<dyn FnOnce() + 'a>>,
}

impl<'a> AtomicGuard<'a> {
    /// A group needing nothing: every change is durable at once, or none is.
    pub fn trivial() -> AtomicGuard<'a> {
        AtomicGuard { end: None }
    }

    fn ending_with(end: impl FnOnce() + 'a) -> AtomicGuard<'a> {
        AtomicGuard {
            end: Some(Box::new(end)),
        }
    }
}

impl Drop for AtomicGuard<'_> {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end();
        }
    }
}

/// Keeps nothing, for a broker whose state ends with its process: its live state is all
/// there is, and a second copy of every retained and queued message would be waste.
pub struct Volatile;

impl Storage for Volatile {
    fn record(&self, _change: Change) -> Ticket {
        Ticket::NONE
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
}
