//! The state shared by every connection: sessions, subscriptions, retained messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytestring::ByteString;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::config::MqttConfig;
use crate::message::Message;
use crate::protocol::{ConnectReturnCode, QoS, SubscribeReturnCode};
use crate::retained::RetainedStore;
use crate::router::{Subscriber, SubscriptionTree};
use crate::session::{Attachment, Offer, QueueLimits, Queued, Session};
use crate::storage::{Change, Storage, StorageError};
use crate::topic::TopicFilter;

pub struct Broker {
    pub limits: MqttConfig,
    sessions: Mutex<HashMap<ByteString, Arc<Session>>>,
    subscriptions: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    storage: Arc<dyn Storage>,
    next_connection_id: AtomicU64,
}

/// A session as handed to a newly accepted connection.
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
    /// Fires when a later connection takes the session over.
    pub kicked: oneshot::Receiver<()>,
}

impl Broker {
    /// A broker holding what `storage` recorded before.
    pub fn new(limits: MqttConfig, storage: Arc<dyn Storage>) -> Result<Broker, StorageError> {
        let started = Instant::now();
        let snapshot = storage.load()?;
        let broker = Broker {
            limits,
            sessions: Mutex::default(),
            subscriptions: RwLock::default(),
            retained: RwLock::default(),
            storage,
            next_connection_id: AtomicU64::new(1),
        };
        let mut queued_total = 0;
        for (client_id, stored) in snapshot.sessions {
            let session = Arc::new(Session::new(client_id.clone(), true));
            {
                let mut state = session.lock();
                for (seq, message) in stored.queued {
                    state.restore(Queued { seq, message });
                    queued_total += 1;
                }
                state.subscriptions = stored.subscriptions;
                let mut tree = write(&broker.subscriptions);
                for (filter, qos) in &state.subscriptions {
                    let session = session.clone();
                    tree.insert(filter, Subscriber { session, qos: *qos });
                }
            }
            lock(&broker.sessions).insert(client_id, session);
        }
        let retained_count = snapshot.retained.len();
        for message in snapshot.retained.into_values() {
            write(&broker.retained).set(message, usize::MAX);
        }
        let sessions = lock(&broker.sessions).len();
        if sessions + retained_count > 0 {
            info!(
                sessions,
                queued = queued_total,
                retained = retained_count,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state loaded"
            );
        }
        Ok(broker)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, changes: &[Change]) {
        if let Err(e) = self.storage.apply(changes) {
            error!("storage write failed: {e}");
        }
    }

    /// Attaches connection `connection_id` to the session of `client_id`: resumed when
    /// `clean_session` is false and one exists, otherwise new. A connection attached
    /// before is kicked off.
    ///
    /// Refused with the CONNACK return code to send when the broker holds
    /// `max_sessions` sessions and this client id has none.
    pub fn attach(
        &self,
        client_id: &ByteString,
        clean_session: bool,
        connection_id: u64,
    ) -> Result<Attached, ConnectReturnCode> {
        let mut sessions = lock(&self.sessions);
        let existing = sessions.get(client_id).cloned();
        if existing.is_none() && sessions.len() >= self.limits.max_sessions {
            warn!(client = %client_id, "session limit reached, connection refused");
            return Err(ConnectReturnCode::ServerUnavailable);
        }
        if let Some(old) = &existing {
            if let Some(previous) = old.lock().attachment.take() {
                info!(client = %client_id, "session taken over by a new connection");
                // The old connection may already be gone; then nobody listens.
                let _ = previous.kick.send(());
            }
        }
        let (session, session_present) = match existing {
            // Only a persistent session is resumed: a clean session's state is never
            // reused, even while its connection is still open (MQTT-3.1.2-6).
            Some(old) if !clean_session && old.lock().persistent => (old, true),
            existing => {
                if let Some(old) = existing {
                    self.discard(&old);
                }
                let session = Arc::new(Session::new(client_id.clone(), !clean_session));
                if !clean_session {
                    self.record(&[Change::SessionCreated {
                        client_id: client_id.clone(),
                    }]);
                }
                sessions.insert(client_id.clone(), session.clone());
                (session, false)
            }
        };
        let (kick, kicked) = oneshot::channel();
        session.lock().attachment = Some(Attachment {
            connection_id,
            kick,
        });
        Ok(Attached {
            session,
            session_present,
            kicked,
        })
    }

    /// Detaches connection `connection_id` from `session`, unless another connection
    /// took the session over first. A clean session ends here.
    pub fn detach(&self, session: &Arc<Session>, connection_id: u64) {
        let mut sessions = lock(&self.sessions);
        let mut state = session.lock();
        if state.attachment.as_ref().map(|a| a.connection_id) != Some(connection_id) {
            return;
        }
        state.attachment = None;
        if !state.persistent {
            drop(state);
            sessions.remove(&session.client_id);
            self.discard(session);
        }
    }

    /// Removes everything of a session that is ending.
    fn discard(&self, session: &Arc<Session>) {
        let mut state = session.lock();
        let mut tree = write(&self.subscriptions);
        for filter in state.subscriptions.keys() {
            tree.remove(filter, &session.client_id);
        }
        state.subscriptions.clear();
        if state.persistent {
            self.record(&[Change::SessionRemoved {
                client_id: session.client_id.clone(),
            }]);
        }
    }

    /// Routes `message` to every matching subscription and updates the retained store.
    pub fn publish(&self, message: Message) {
        if message.retain {
            self.retain(&message);
        }
        let subscribers = read(&self.subscriptions).matches(&message.topic);
        for subscriber in subscribers {
            // Live deliveries never carry the retain flag (MQTT-3.3.1-9).
            let qos = message.qos.min(subscriber.qos);
            self.deliver(&subscriber.session, message.for_delivery(qos, false));
        }
    }

    fn retain(&self, message: &Message) {
        let mut retained = write(&self.retained);
        if message.payload.is_empty() {
            retained.remove(&message.topic);
            self.record(&[Change::RetainedCleared {
                topic: message.topic.clone(),
            }]);
        } else if retained.set(message.clone(), self.limits.max_retained_messages) {
            self.record(&[Change::Retained {
                message: message.clone(),
            }]);
        } else {
            warn!(topic = %message.topic, "retained message limit reached, message not retained");
        }
    }

    /// Offers `message` to one session's queue and wakes its connection.
    fn deliver(&self, session: &Session, message: Message) {
        let mut state = session.lock();
        let keep = state.persistent && message.qos != QoS::AtMostOnce;
        let stored = keep.then(|| message.clone());
        let limits = QueueLimits {
            messages: self.limits.max_queued_messages,
            bytes: self.limits.max_queued_bytes,
        };
        match state.offer(message, limits) {
            Offer::Queued(seq) => {
                if let Some(message) = stored {
                    self.record(&[Change::Queued {
                        client_id: session.client_id.clone(),
                        seq,
                        message,
                    }]);
                }
                drop(state);
                session.wake();
            }
            Offer::QueueFull => {
                debug!(client = %session.client_id, "queue full, message dropped")
            }
            Offer::NotKept => {}
        }
    }

    /// The queued message `seq` of `session` was acknowledged: forget it.
    pub fn delivered(&self, session: &Session, seq: u64) {
        if session.lock().persistent {
            self.record(&[Change::Delivered {
                client_id: session.client_id.clone(),
                seq,
            }]);
        }
    }

    /// Subscribes `session` to each filter, answering with one return code a filter.
    /// Matching retained messages are queued after the subscription is in place.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filters: &[(ByteString, QoS)],
    ) -> Vec<SubscribeReturnCode> {
        let mut codes = Vec::with_capacity(filters.len());
        for (raw, requested) in filters {
            let filter = match TopicFilter::new(raw.clone()) {
                Ok(filter) => filter,
                Err(e) => {
                    warn!(client = %session.client_id, filter = %raw, "subscription refused: {e}");
                    codes.push(SubscribeReturnCode::Failure);
                    continue;
                }
            };
            let qos = (*requested).min(self.limits.max_qos.0);
            let persistent = {
                let mut state = session.lock();
                if state.subscriptions.len() >= self.limits.max_subscriptions_per_client
                    && !state.subscriptions.contains_key(&filter)
                {
                    drop(state);
                    warn!(client = %session.client_id, filter = %raw, "subscription limit reached");
                    codes.push(SubscribeReturnCode::Failure);
                    continue;
                }
                state.subscriptions.insert(filter.clone(), qos);
                write(&self.subscriptions).insert(
                    &filter,
                    Subscriber {
                        session: session.clone(),
                        qos,
                    },
                );
                state.persistent
            };
            if persistent {
                self.record(&[Change::Subscribed {
                    client_id: session.client_id.clone(),
                    filter: filter.clone(),
                    qos,
                }]);
            }
            let retained = read(&self.retained).matching(&filter);
            for message in retained {
                let delivery_qos = message.qos.min(qos);
                self.deliver(session, message.for_delivery(delivery_qos, true));
            }
            codes.push(SubscribeReturnCode::Granted(qos));
        }
        codes
    }

    /// Removes the session's subscriptions to exactly these filters.
    pub fn unsubscribe(&self, session: &Arc<Session>, filters: &[ByteString]) {
        for raw in filters {
            let Ok(filter) = TopicFilter::new(raw.clone()) else {
                continue;
            };
            let mut state = session.lock();
            if state.subscriptions.remove(&filter).is_none() {
                continue;
            }
            write(&self.subscriptions).remove(&filter, &session.client_id);
            if state.persistent {
                self.record(&[Change::Unsubscribed {
                    client_id: session.client_id.clone(),
                    filter,
                }]);
            }
        }
    }
}

/// Lock helpers that take over a poisoned lock: the data behind each stays consistent
/// between statements, so a panic elsewhere leaves nothing half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
