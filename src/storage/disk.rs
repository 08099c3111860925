//! The durable store: a sled database, written by one thread in group commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytestring::ByteString;
use tracing::{error, warn};

use super::commit::GroupCommit;
use super::records::{self, Key, SCHEMA_VERSION};
use super::{
    AtomicGuard, Change, Durable, Snapshot, Storage, StorageError, StoredMessage, StoredSession,
    Ticket,
};
use crate::config::SyncMode;
use crate::locks::lock;
use crate::session::SessionExpiry;
use crate::topic::TopicFilter;

/// sled's page cache: the broker holds the live state in memory already.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// sled's default flush period.
const SLED_DEFAULT_FLUSH_MS: u64 = 500;

pub struct SledStorage {
    db: sled::Db,
    path: PathBuf,
    commit: Arc<GroupCommit>,
    /// `sync = always`: acknowledgements wait for the flush.
    hold_acks: bool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SledStorage {
    /// Opens (or creates) the database in `path`, checking that it is one this version
    /// reads. `sync` says when writes are flushed: after each group commit, every
    /// `interval`, or when sled decides.
    pub fn open(
        path: &Path,
        sync: SyncMode,
        interval: Duration,
    ) -> Result<SledStorage, StorageError> {
        let open_error = |reason: String| StorageError::Open {
            path: path.to_owned(),
            reason,
        };
        // sled's own background flush: every `interval`, or at its default pace for
        // `never` (without one, unflushed writes pile up in memory).
        let flush_every = match sync {
            SyncMode::Interval => Some(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)),
            SyncMode::Never => Some(SLED_DEFAULT_FLUSH_MS),
            SyncMode::Always => None,
        };
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(flush_every);
        // sled may panic on some damaged files rather than return an error.
        let db = catch_unwind(AssertUnwindSafe(|| config.open()))
            .map_err(|_| open_error("the files are damaged".into()))?
            .map_err(|e| open_error(e.to_string()))?;
        check_schema(&db, path)?;
        let commit = Arc::new(GroupCommit::new());
        let writer = std::thread::Builder::new()
            .name("herald-storage".into())
            .spawn({
                let (db, commit) = (db.clone(), commit.clone());
                let flush_each = sync == SyncMode::Always;
                move || run_writer(&db, &commit, flush_each)
            })
            .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStorage {
            db,
            path: path.to_owned(),
            commit,
            hold_acks: sync == SyncMode::Always,
            writer: Mutex::new(Some(writer)),
        })
    }
}

impl Drop for SledStorage {
    fn drop(&mut self) {
        self.commit.close();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

/// Writes the schema version into a new database; refuses one written by another
/// version or by something else.
fn check_schema(db: &sled::Db, path: &Path) -> Result<(), StorageError> {
    let io = |e: sled::Error| StorageError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    match db.get(records::SCHEMA_KEY).map_err(io)? {
        Some(version) => {
            let found = <[u8; 4]>::try_from(&*version)
                .map(u32::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("the schema version is unreadable".into()))?;
            if found != SCHEMA_VERSION {
                return Err(StorageError::Schema {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        None if db.first().map_err(io)?.is_some() => {
            return Err(StorageError::Foreign {
                path: path.to_owned(),
            })
        }
        None => {
            db.insert(records::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                .map_err(io)?;
            db.flush().map_err(io)?;
        }
    }
    Ok(())
}

/// Under steady load, `always` still flushes at least every this many batches.
const MAX_BATCHES_UNFLUSHED: usize = 8;

fn run_writer(db: &sled::Db, commit: &GroupCommit, flush_each: bool) {
    let mut unflushed = 0;
    while let Some(batch) = commit.take() {
        // One flush for everything that was waiting, taken in several batches.
        unflushed += 1;
        let flush =
            batch.flush || (flush_each && (!batch.more || unflushed >= MAX_BATCHES_UNFLUSHED));
        // sled may panic rather than fail: the store is failed then, not hung.
        let written = catch_unwind(AssertUnwindSafe(|| {
            write(db, &batch.changes)?;
            if flush {
                let started = std::time::Instant::now();
                db.flush()?;
                metrics::histogram!(crate::telemetry::STORAGE_FLUSH)
                    .record(started.elapsed().as_secs_f64());
            }
            Ok::<_, sled::Error>(())
        }));
        match written {
            Ok(Ok(())) if flush => {
                unflushed = 0;
                commit.mark_durable(batch.upto);
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!("storage write failed, nothing more will be stored: {e}");
                commit.mark_failed();
                return;
            }
            Err(_) => {
                error!("the storage engine panicked, nothing more will be stored");
                commit.mark_failed();
                return;
            }
        }
    }
    if let Err(e) = db.flush() {
        error!("storage flush failed: {e}");
    }
}

/// Most writes in one sled batch where there is a choice (see `commit::MAX_BATCH`).
const MAX_OPS: usize = 256;

/// The writes of one batch, each key's last one only.
#[derive(Default)]
struct Writes {
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Records of removed sessions, deleted before `ops` are written, in batches of
    /// their own (a session may have many); what `ops` writes again stays.
    removed: Vec<Vec<u8>>,
}

impl Writes {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.insert(key, None);
    }
}

fn write(db: &sled::Db, changes: &[Change]) -> sled::Result<()> {
    let mut writes = Writes::default();
    for change in changes {
        match change {
            Change::Session {
                client_id,
                expiry,
                offline_since,
            } => {
                let record = records::SessionRecord {
                    expiry: expiry.0,
                    offline_since: offline_since.map(records::unix_millis),
                };
                writes.put(records::session_key(client_id), records::encode(&record));
            }
            Change::SessionRemoved { client_id } => {
                // The session record first: without it the rest is an orphan.
                for tag in records::SESSION_TAGS {
                    let prefix = records::client_key(tag, client_id, &[]);
                    delete_prefix(&mut writes, db, &prefix)?;
                }
            }
            Change::Subscribed {
                client_id,
                filter,
                subscription,
            } => {
                let record = records::SubscriptionRecord::new(subscription);
                let key = records::subscription_key(client_id, filter.as_str());
                writes.put(key, records::encode(&record));
            }
            Change::Unsubscribed { client_id, filter } => {
                writes.delete(records::subscription_key(client_id, filter.as_str()));
            }
            Change::Queued {
                client_id,
                seq,
                message,
            } => {
                let key = records::queued_key(client_id, *seq);
                writes.put(key, records::encode_message(message));
            }
            Change::InFlight {
                client_id,
                seq,
                pkid,
                released,
            } => {
                let record = records::InFlightRecord {
                    pkid: *pkid,
                    released: *released,
                };
                let key = records::in_flight_key(client_id, *seq);
                writes.put(key, records::encode(&record));
            }
            Change::Delivered { client_id, seq } => {
                writes.delete(records::queued_key(client_id, *seq));
                writes.delete(records::in_flight_key(client_id, *seq));
            }
            Change::Qos2Received { client_id, pkid } => {
                writes.put(records::qos2_key(client_id, *pkid), Vec::new());
            }
            Change::Qos2Released { client_id, pkid } => {
                writes.delete(records::qos2_key(client_id, *pkid));
            }
            Change::Retained { message } => {
                let key = records::retained_key(message.topic.as_str());
                writes.put(key, records::encode_message(message));
            }
            Change::RetainedCleared { topic } => {
                writes.delete(records::retained_key(topic.as_str()));
            }
            Change::EventIdsReserved { below } => {
                writes.put(
                    records::EVENT_IDS_KEY.to_vec(),
                    below.to_be_bytes().to_vec(),
                );
            }
            Change::Logged { events } => {
                for (id, message) in events {
                    writes.put(records::logged_key(*id), records::encode_message(message));
                }
            }
            Change::LogTrimmed { below } => {
                let range = records::logged_key(0)..records::logged_key(*below);
                for key in db.range(range.clone()).keys() {
                    writes.delete(key?.to_vec());
                }
                let pending: Vec<Vec<u8>> = writes
                    .ops
                    .range(range)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in pending {
                    writes.delete(key);
                }
            }
            Change::LogSealed { next } => {
                writes.put(
                    records::LOG_SEALED_KEY.to_vec(),
                    next.to_be_bytes().to_vec(),
                );
            }
        }
    }
    apply(db, writes)
}

/// Applies `writes`: removed sessions' records first, in batches of their own (a crash
/// between them leaves records of a session without its session record, which loading
/// deletes), then the rest as one batch.
fn apply(db: &sled::Db, writes: Writes) -> sled::Result<()> {
    for keys in writes.removed.chunks(MAX_OPS) {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(&key[..]);
        }
        db.apply_batch(batch)?;
    }
    let mut batch = sled::Batch::default();
    for (key, value) in writes.ops {
        match value {
            Some(value) => batch.insert(key, value),
            None => batch.remove(key),
        }
    }
    db.apply_batch(batch)
}

/// Deletes every key beginning with `prefix`, in the database or written earlier in
/// this batch.
fn delete_prefix(writes: &mut Writes, db: &sled::Db, prefix: &[u8]) -> sled::Result<()> {
    for key in db.scan_prefix(prefix).keys() {
        writes.removed.push(key?.to_vec());
    }
    let pending: Vec<Vec<u8>> = writes
        .ops
        .range(prefix.to_vec()..)
        .map(|(key, _)| key)
        .take_while(|key| key.starts_with(prefix))
        .cloned()
        .collect();
    for key in pending {
        writes.delete(key);
    }
    Ok(())
}

impl Storage for SledStorage {
    fn record(&self, change: Change) -> Ticket {
        let ticket = self.commit.record(change);
        if self.hold_acks {
            ticket
        } else {
            Ticket::NONE
        }
    }

    fn durable(&self, ticket: Ticket) -> Durable {
        self.commit.durable(ticket)
    }

    fn atomic(&self) -> AtomicGuard<'_> {
        let start = self.commit.begin_atomic();
        AtomicGuard::ending_with(move || self.commit.end_atomic(start))
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        load(&self.db).map_err(|e| match e {
            Loading::Sled(e) => StorageError::Io(format!("reading {}: {e}", self.path.display())),
            Loading::Corrupt(what) => {
                StorageError::Corrupt(format!("{what} (in {})", self.path.display()))
            }
        })
    }

    fn flush(&self) -> Durable {
        let ticket = self.commit.request_flush();
        self.commit.durable(ticket)
    }
}

enum Loading {
    Sled(sled::Error),
    Corrupt(String),
}

impl From<sled::Error> for Loading {
    fn from(e: sled::Error) -> Loading {
        Loading::Sled(e)
    }
}

fn u64_value(value: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| "not a u64".into())
}

fn load(db: &sled::Db) -> Result<Snapshot, Loading> {
    let mut snapshot = Snapshot::default();
    let mut in_flight = HashMap::new();
    let mut known = HashSet::new();
    for entry in db.iter() {
        let (key, value) = entry?;
        let corrupt = |what: String| Loading::Corrupt(format!("record {}: {what}", escape(&key)));
        let parsed = Key::parse(&key).ok_or_else(|| corrupt("unknown key".into()))?;
        match parsed {
            Key::Schema => {}
            Key::EventIds => snapshot.event_ids_reserved = u64_value(&value).map_err(corrupt)?,
            Key::LogSealed => snapshot.log_sealed = u64_value(&value).map_err(corrupt)?,
            Key::Logged(id) => {
                let message = records::decode_message(&value).map_err(corrupt)?;
                snapshot.log.insert(id, message);
            }
            Key::Session(client_id) => {
                let record: records::SessionRecord = records::decode(&value).map_err(corrupt)?;
                let session = session(&mut snapshot, client_id);
                session.expiry = SessionExpiry(record.expiry);
                session.offline_since = record.offline_since.map(records::from_unix_millis);
                known.insert(ByteString::from(client_id));
            }
            Key::Subscription(client_id, filter) => {
                let record: records::SubscriptionRecord =
                    records::decode(&value).map_err(corrupt)?;
                let subscription = record
                    .subscription()
                    .ok_or_else(|| corrupt("invalid QoS".into()))?;
                let filter = TopicFilter::new(ByteString::from(filter))
                    .map_err(|e| corrupt(e.to_string()))?;
                session(&mut snapshot, client_id)
                    .subscriptions
                    .insert(filter, subscription);
            }
            Key::Queued(client_id, seq) => {
                let message = records::decode_message(&value).map_err(corrupt)?;
                let stored = StoredMessage {
                    message,
                    in_flight: None,
                };
                session(&mut snapshot, client_id).queued.insert(seq, stored);
            }
            Key::InFlight(client_id, seq) => {
                let record: records::InFlightRecord = records::decode(&value).map_err(corrupt)?;
                in_flight.insert((ByteString::from(client_id), seq), record);
            }
            Key::Qos2Received(client_id, pkid) => {
                session(&mut snapshot, client_id).incoming_qos2.insert(pkid);
            }
            Key::Retained(topic) => {
                let message = records::decode_message(&value).map_err(corrupt)?;
                if message.topic.as_str() != topic {
                    return Err(corrupt("holds a message of another topic".into()));
                }
                snapshot.retained.insert(message.topic.clone(), message);
            }
        }
    }
    let mut writes = Writes::default();
    for ((client_id, seq), record) in in_flight {
        let queued = snapshot
            .sessions
            .get_mut(&client_id)
            .and_then(|session| session.queued.get_mut(&seq));
        match queued {
            Some(queued) => queued.in_flight = Some((record.pkid, record.released)),
            // Its message is gone: a later one with the same number must not inherit it.
            None => writes.removed.push(records::in_flight_key(&client_id, seq)),
        }
    }
    let orphans: Vec<ByteString> = snapshot
        .sessions
        .keys()
        .filter(|client_id| !known.contains(*client_id))
        .cloned()
        .collect();
    if !orphans.is_empty() {
        // Left by a crash while a session was being removed.
        warn!(
            sessions = orphans.len(),
            "deleting records of sessions removed before the broker stopped"
        );
    }
    for client_id in orphans {
        snapshot.sessions.remove(&client_id);
        for tag in records::SESSION_TAGS {
            delete_prefix(&mut writes, db, &records::client_key(tag, &client_id, &[]))?;
        }
    }
    apply(db, writes)?;
    Ok(snapshot)
}

fn session<'a>(snapshot: &'a mut Snapshot, client_id: &str) -> &'a mut StoredSession {
    snapshot
        .sessions
        .entry(ByteString::from(client_id))
        .or_default()
}

/// A key for an error message: printable ASCII as is, other bytes escaped.
fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}
