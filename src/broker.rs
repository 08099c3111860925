//! The state shared by every connection: sessions, subscriptions, retained messages.

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, error, info, warn};

use crate::config::MqttConfig;
use crate::keep_alive::KeepAliveQueue;
use crate::locks::{lock, read, write};
use crate::message::Message;
use crate::protocol::{ConnectReturnCode, QoS, SubscribeReturnCode};
use crate::retained::RetainedStore;
use crate::router::{Subscriber, SubscriptionTree};
use crate::session::{Attachment, Kick, Offer, QueueLimits, Queued, Session};
use crate::storage::{Change, Storage, StorageError};
use crate::topic::{level_count, TopicFilter};

pub struct Broker {
    pub limits: MqttConfig,
    sessions: Mutex<HashSet<ById>>,
    subscriptions: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    storage: Arc<dyn Storage>,
    next_connection_id: AtomicU64,
    /// Set once the server stops: no session is attached any more.
    shutting_down: AtomicBool,
    /// Connections with keep alive, for the sweeper (see `keep_alive`).
    pub keep_alives: Arc<KeepAliveQueue>,
    /// Signals publishers paused on a congested queue that some queue made room.
    room: Notify,
    /// A permit for each connection that may still open (`max_connections`).
    admission: Semaphore,
}

/// A session in the registry, found by its client id: the id is not stored twice.
struct ById(Arc<Session>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.client_id
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id == other.0.client_id
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` find it.
        <str as Hash>::hash(&self.0.client_id, state)
    }
}

/// An open connection's place within `max_connections`, given back when dropped; it
/// also is the connection's handle on the broker.
pub struct Admitted(Arc<Broker>);

impl Deref for Admitted {
    type Target = Arc<Broker>;

    fn deref(&self) -> &Arc<Broker> {
        &self.0
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admission.add_permits(1);
    }
}

/// How one message is offered to one session.
#[derive(Clone, Copy)]
struct Delivery {
    qos: QoS,
    retain: bool,
    limits: QueueLimits,
}

/// A session as handed to a newly accepted connection.
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

impl Broker {
    /// A broker holding what `storage` recorded before.
    pub fn new(limits: MqttConfig, storage: Arc<dyn Storage>) -> Result<Broker, StorageError> {
        let started = Instant::now();
        let snapshot = storage.load()?;
        let broker = Broker {
            sessions: Mutex::default(),
            subscriptions: RwLock::default(),
            retained: RwLock::default(),
            storage,
            next_connection_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            keep_alives: Arc::default(),
            room: Notify::new(),
            admission: Semaphore::new(limits.max_connections.0),
            limits,
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
            lock(&broker.sessions).replace(ById(session));
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

    /// Admits one more connection, unless `max_connections` are open.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        self.admission.try_acquire().ok()?.forget();
        Some(Admitted(self.clone()))
    }

    /// Returns once every admitted connection has ended.
    pub async fn connections_closed(&self) {
        let all = u32::try_from(self.limits.max_connections.0).unwrap_or(u32::MAX);
        let _ = self.admission.acquire_many(all).await;
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
    /// before is kicked off. The connection is to be heard from within `keep_alive`
    /// (already 1.5 times the client's value), if any.
    ///
    /// Refused with the CONNACK return code to send when the broker holds
    /// `max_sessions` sessions and this client id has none.
    pub fn attach(
        &self,
        client_id: &ByteString,
        clean_session: bool,
        connection_id: u64,
        keep_alive: Option<Duration>,
    ) -> Result<Attached, ConnectReturnCode> {
        let mut sessions = lock(&self.sessions);
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ConnectReturnCode::ServerUnavailable);
        }
        let existing = sessions.get(&**client_id).map(|e| e.0.clone());
        if existing.is_none() && sessions.len() >= self.limits.max_sessions {
            warn!(client = %client_id, "session limit reached, connection refused");
            return Err(ConnectReturnCode::ServerUnavailable);
        }
        if let Some(old) = &existing {
            if let Some(mut previous) = old.lock().attachment.take() {
                info!(client = %client_id, "session taken over by a new connection");
                previous.kick(Kick::TakenOver);
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
                sessions.replace(ById(session.clone()));
                (session, false)
            }
        };
        let deadline = keep_alive.map(|keep_alive| Instant::now() + keep_alive);
        session.lock().attachment = Some(Attachment::new(connection_id, deadline));
        // The sweeper locks sessions under its own lock: never the other way round.
        drop(sessions);
        if let Some(deadline) = deadline {
            self.keep_alives.watch(&session, connection_id, deadline);
        }
        Ok(Attached {
            session,
            session_present,
        })
    }

    /// Ends every attached connection for shutdown, and refuses new ones from now on.
    pub fn shut_down(&self) {
        let sessions = lock(&self.sessions);
        self.shutting_down.store(true, Ordering::Relaxed);
        for ById(session) in sessions.iter() {
            if let Some(attachment) = session.lock().attachment.as_mut() {
                attachment.kick(Kick::Shutdown);
            }
        }
    }

    /// Detaches connection `connection_id` from `session`, unless another connection
    /// took the session over first. A clean session ends here.
    pub fn detach(&self, session: &Arc<Session>, connection_id: u64) {
        let mut sessions = lock(&self.sessions);
        let mut state = session.lock();
        if state.attached(connection_id).is_none() {
            return;
        }
        state.attachment = None;
        // An offline session no longer holds publishers back.
        self.room_made();
        if !state.persistent {
            drop(state);
            sessions.remove(&*session.client_id);
            self.discard(session);
        }
    }

    /// Removes everything of a session that is ending. A connection still holding it
    /// (one that was just taken over) can no longer change it: see `SessionState::closed`.
    fn discard(&self, session: &Arc<Session>) {
        let mut state = session.lock();
        state.closed = true;
        self.room_made();
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

    /// Whether `topic` is within the configured depth; deeper topics are refused.
    pub fn topic_depth_allowed(&self, topic: &str) -> bool {
        level_count(topic) <= self.limits.max_topic_levels.0
    }

    /// The limits of each session's queue of unsent messages.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.limits.max_queued_messages,
            bytes: self.limits.max_queued_bytes,
        }
    }

    /// Routes `message` to every matching subscription and updates the retained store.
    ///
    /// Returns a session whose queue this message took beyond its limits: a publisher
    /// that can wait (a connection) pauses until that queue has room again.
    pub fn publish(&self, message: Message) -> Option<Arc<Session>> {
        if message.retain {
            self.retain(&message);
        }
        // Offline sessions may keep a message for long: they get one exact-size copy,
        // not a slice pinning the publisher's receive buffer.
        let kept = OnceCell::new();
        let subscribers = read(&self.subscriptions).matches(&message.topic);
        let limits = self.queue_limits();
        let mut congested = None;
        for subscriber in subscribers {
            let delivery = Delivery {
                qos: message.qos.min(subscriber.qos),
                // Live deliveries never carry the retain flag (MQTT-3.3.1-9).
                retain: false,
                limits,
            };
            let offer = self.deliver(&subscriber.session, &message, &kept, delivery);
            if matches!(
                offer,
                Offer::Queued {
                    congested: true,
                    ..
                }
            ) && congested.is_none()
            {
                congested = Some(subscriber.session);
            }
        }
        congested
    }

    fn retain(&self, message: &Message) {
        let mut retained = write(&self.retained);
        if message.payload.is_empty() {
            retained.remove(&message.topic);
            self.record(&[Change::RetainedCleared {
                topic: message.topic.clone(),
            }]);
            return;
        }
        let message = message.detached();
        if retained.set(message.clone(), self.limits.max_retained_messages) {
            self.record(&[Change::Retained { message }]);
        } else {
            warn!(topic = %message.topic, "retained message limit reached, message not retained");
        }
    }

    /// Offers `message` at `qos` to one session's queue and wakes its connection.
    /// `detached` holds (or receives) the exact-size copy for offline sessions.
    fn deliver(
        &self,
        session: &Session,
        message: &Message,
        detached: &OnceCell<Message>,
        delivery: Delivery,
    ) -> Offer {
        let Delivery {
            qos,
            retain,
            limits,
        } = delivery;
        let mut state = session.lock();
        if state.closed {
            return Offer::NotKept;
        }
        let source = if state.is_connected() {
            message
        } else {
            detached.get_or_init(|| message.detached())
        };
        let message = source.for_delivery(qos, retain);
        let stored = (state.persistent && qos != QoS::AtMostOnce).then(|| message.clone());
        let offer = state.offer(message, limits);
        match offer {
            Offer::Queued { seq, .. } => {
                if let Some(message) = stored {
                    self.record(&[Change::Queued {
                        client_id: session.client_id.clone(),
                        seq,
                        message,
                    }]);
                }
                let waker = state.signal();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Offer::QueueFull => {
                debug!(client = %session.client_id, "queue full, message dropped")
            }
            Offer::NotKept => {}
        }
        offer
    }

    /// Returns once `session`'s queue has room within `limits` (see
    /// `SessionState::has_room`).
    pub async fn room(&self, session: &Session, limits: QueueLimits) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a signal in between is not missed.
            notified.as_mut().enable();
            if session.lock().check_room(limits) {
                return;
            }
            notified.await;
        }
    }

    /// Tells paused publishers to look at their congested queues again.
    pub fn room_made(&self) {
        self.room.notify_waiters();
    }

    /// The queued message `seq` of `session` was acknowledged: forget it.
    pub fn delivered(&self, session: &Session, seq: u64) {
        let state = session.lock();
        if state.persistent && !state.closed {
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
        // A filter repeated later in the same packet replaces its subscription at once,
        // so retained messages are sent only for its last occurrence.
        let mut seen = HashSet::with_capacity(filters.len());
        let last: Vec<bool> = filters
            .iter()
            .rev()
            .map(|(raw, _)| seen.insert(&**raw))
            .collect();
        let mut refused = None;
        let codes: Vec<_> = filters
            .iter()
            .zip(last.into_iter().rev())
            .map(|((raw, requested), last)| {
                match self.subscribe_one(session, raw, *requested, last) {
                    Ok(qos) => SubscribeReturnCode::Granted(qos),
                    Err(why) => {
                        refused.get_or_insert((raw, why));
                        SubscribeReturnCode::Failure
                    }
                }
            })
            .collect();
        // One line a packet, however many filters it refuses.
        if let Some((filter, why)) = refused {
            let count = codes
                .iter()
                .filter(|c| **c == SubscribeReturnCode::Failure)
                .count();
            warn!(client = %session.client_id, %filter, count, "subscription refused: {why}");
        }
        codes
    }

    /// One filter of a SUBSCRIBE: the granted QoS, or why it is refused.
    fn subscribe_one(
        &self,
        session: &Arc<Session>,
        raw: &ByteString,
        requested: QoS,
        send_retained: bool,
    ) -> Result<QoS, String> {
        if !self.topic_depth_allowed(raw) {
            return Err(format!(
                "more than max_topic_levels ({}) levels",
                self.limits.max_topic_levels.0
            ));
        }
        // Kept for the session's lifetime: an exact-size copy, not a slice of the packet.
        let filter = TopicFilter::new(ByteString::from(&**raw)).map_err(|e| e.to_string())?;
        let qos = requested.min(self.limits.max_qos.0);
        {
            let mut state = session.lock();
            if state.closed {
                return Err("the session was taken over".into());
            }
            if state.subscriptions.len() >= self.limits.max_subscriptions_per_client
                && !state.subscriptions.contains_key(&filter)
            {
                return Err("subscription limit reached".into());
            }
            state.subscriptions.insert(filter.clone(), qos);
            let subscriber = Subscriber {
                session: session.clone(),
                qos,
            };
            write(&self.subscriptions).insert(&filter, subscriber);
            if state.persistent {
                self.record(&[Change::Subscribed {
                    client_id: session.client_id.clone(),
                    filter: filter.clone(),
                    qos,
                }]);
            }
        }
        if send_retained {
            // Every matching retained message is due (MQTT-3.3.1-6), however many: the
            // replay may fill the queue beyond max_queued_messages by at most the size of
            // the retained store, and it shares the payloads rather than copying them.
            let max_retained = self.limits.max_retained_messages;
            let limits = QueueLimits {
                messages: self.limits.max_queued_messages.saturating_add(max_retained),
                bytes: usize::MAX,
            };
            let retained = read(&self.retained).matching(&filter, max_retained);
            for message in &retained {
                let delivery = Delivery {
                    qos: message.qos.min(qos),
                    retain: true,
                    limits,
                };
                // Retained messages are exact-size copies already.
                let copy = OnceCell::from(message.clone());
                if self.deliver(session, message, &copy, delivery) == Offer::QueueFull {
                    break;
                }
            }
        }
        Ok(qos)
    }

    /// Removes the session's subscriptions to exactly these filters.
    pub fn unsubscribe(&self, session: &Arc<Session>, filters: &[ByteString]) {
        for raw in filters {
            let Ok(filter) = TopicFilter::new(raw.clone()) else {
                continue;
            };
            let mut state = session.lock();
            if state.closed || state.subscriptions.remove(&filter).is_none() {
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

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::storage::MemoryStorage;
    use crate::topic::TopicName;

    /// A queue filled exactly to its limit (no offer went beyond it) still wakes a
    /// publisher that paused on it once a drain makes room.
    #[tokio::test]
    async fn a_paused_publisher_is_woken_by_the_drain_that_makes_room() {
        let broker = Arc::new(
            Broker::new(MqttConfig::default(), Arc::new(MemoryStorage::default())).unwrap(),
        );
        let limits = QueueLimits {
            messages: 2,
            bytes: 1024,
        };
        let session = Arc::new(Session::new(ByteString::from_static("c"), false));
        session.lock().attachment = Some(Attachment::new(1, None));
        let message = Message {
            topic: TopicName::new(ByteString::from_static("t")).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
        };
        for _ in 0..2 {
            let offer = session.lock().offer(message.clone(), limits);
            assert!(matches!(
                offer,
                Offer::Queued {
                    congested: false,
                    ..
                }
            ));
        }
        let waiter = tokio::spawn({
            let (broker, session) = (broker.clone(), session.clone());
            async move { broker.room(&session, limits).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut out = BytesMut::new();
        let due = {
            let mut state = session.lock();
            state.drain(1, &mut out, usize::MAX);
            state.take_room_made(limits)
        };
        assert!(due);
        broker.room_made();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the paused publisher is woken")
            .unwrap();
    }
}
