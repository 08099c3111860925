//! The state shared by every connection: sessions, subscriptions, retained messages.

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytestring::ByteString;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::acl::Grants;
use crate::clients::Clients;
use crate::config::{HttpConfig, MqttConfig, QueueFull};
use crate::event_ids::EventIds;
use crate::feed::Feed;
use crate::keep_alive::KeepAliveQueue;
use crate::locks::{lock, read, write};
use crate::message::{Message, Will};
use crate::protocol::{QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use crate::retained::RetainedStore;
use crate::router::{Matched, Subscriber, Subscription, SubscriptionTree};
use crate::session::{
    Attachment, DelayedWill, Kick, Offer, QueueLimits, Queued, Session, SessionExpiry, SessionState,
};
use crate::stats::Stats;
use crate::storage::{
    AtomicGuard, Change, Durable, Storage, StorageError, StoredMessage, StoredSession, Ticket,
};
use crate::topic::{level_count, TopicFilter};

/// The longest single sleep of a session's timer.
const LONGEST_TIMER_STEP: Duration = Duration::from_secs(24 * 3600);

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
    /// Every published message with its event id, for web readers.
    pub feed: Arc<Feed>,
    /// Running totals, for `/metrics` and `$SYS`.
    pub stats: Stats,
    /// Who is connected, for the dashboard.
    pub clients: Clients,
    /// The last census, and when it was taken.
    last_census: Mutex<Option<(Instant, Census)>>,
    pub started: Instant,
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

/// An open connection's place within `max_connections` (and its listener's, if that
/// has a limit of its own), given back when dropped; it also is the connection's handle
/// on the broker.
pub struct Admitted {
    broker: Arc<Broker>,
    /// The place within the listener's own limit, given back when dropped.
    _listener_place: Option<OwnedSemaphorePermit>,
}

impl Deref for Admitted {
    type Target = Arc<Broker>;

    fn deref(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.broker.admission.add_permits(1);
    }
}

/// How one message is offered to one session.
#[derive(Clone, Copy)]
struct Delivery<'a> {
    qos: QoS,
    retain: bool,
    limits: QueueLimits,
    /// The identifiers of the subscriptions it is delivered for.
    subscription_ids: &'a [u32],
    /// The shared subscription it is delivered through.
    share: Option<&'a Arc<crate::topic::TopicFilter>>,
}

/// What the broker holds at one moment: see [`Broker::census`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Census {
    /// Sessions with a client connected, and kept for clients that are not.
    pub online: usize,
    pub offline: usize,
    /// Messages waiting to be sent, and in flight, over all sessions.
    pub queued: usize,
    pub inflight: usize,
    pub retained: usize,
    pub subscriptions: usize,
}

/// What a SUBSCRIBE led to.
pub struct SubscribeOutcome {
    /// One a filter: the QoS granted, or why it was refused.
    pub codes: Vec<ReasonCode>,
    /// What the SUBACK waits for.
    pub ticket: Ticket,
    /// The first filter refused, and why, for the log.
    pub refused: Option<String>,
}

/// A session as handed to a newly accepted connection.
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
    /// What the CONNACK waits for: the session in storage.
    pub ticket: Ticket,
}

/// What publishing a message did.
pub struct Published {
    /// The message's event id; none for a repeated QoS 2 message, not published again.
    pub id: Option<u64>,
    /// A session whose queue this message took beyond its limits: a publisher that can
    /// wait (a connection) pauses until that queue has room again.
    pub congested: Option<Arc<Session>>,
    /// What an acknowledgement of the message waits for: the message stored for every
    /// persistent session it was queued for, and as retained.
    pub ticket: Ticket,
}

impl Broker {
    /// A broker holding what `storage` recorded before. A session offline for longer
    /// than its expiry is removed; the others end that long after they went offline (or
    /// after now, for those connected when the broker stopped).
    pub fn new(
        limits: MqttConfig,
        web: &HttpConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<Broker>, StorageError> {
        let started = Instant::now();
        let snapshot = storage.load()?;
        let (event_ids, reserved) = EventIds::resume(snapshot.event_ids_reserved);
        storage.record(Change::EventIdsReserved { below: reserved });
        // Until a clean stop says otherwise, events after the log's last may be lost.
        storage.record(Change::LogSealed { next: 0 });
        let broker = Arc::new(Broker {
            sessions: Mutex::default(),
            subscriptions: RwLock::default(),
            retained: RwLock::default(),
            storage,
            next_connection_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            keep_alives: Arc::default(),
            room: Notify::new(),
            admission: Semaphore::new(limits.max_connections.0),
            stats: Stats::default(),
            clients: Clients::default(),
            last_census: Mutex::default(),
            started,
            limits,
            feed: Arc::new(Feed::restore(
                event_ids,
                web,
                snapshot.log,
                snapshot.log_sealed,
            )),
        });
        let (mut queued, mut expired) = (0, 0);
        for (client_id, stored) in snapshot.sessions {
            match broker.restore_session(client_id, stored) {
                Some(count) => queued += count,
                None => expired += 1,
            }
        }
        let retained = snapshot.retained.len();
        for message in snapshot.retained.into_values() {
            write(&broker.retained).set(message, usize::MAX);
        }
        info!(
            sessions = lock(&broker.sessions).len(),
            queued,
            retained,
            expired_sessions = expired,
            next_event_id = broker.feed.upcoming(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state loaded"
        );
        Ok(broker)
    }

    /// Puts back a stored session with its subscriptions, queued and in-flight messages
    /// and QoS 2 packet ids; returns how many messages it has queued, or `None` if it
    /// expired while the broker was down.
    fn restore_session(
        self: &Arc<Self>,
        client_id: ByteString,
        stored: StoredSession,
    ) -> Option<usize> {
        let now = SystemTime::now();
        let offline_for = stored.offline_since.map_or(Duration::ZERO, |since| {
            now.duration_since(since).unwrap_or_default()
        });
        let expiry = Duration::from_secs(u64::from(stored.expiry.0));
        let finite = stored.expiry != SessionExpiry::NEVER;
        if finite && offline_for >= expiry {
            self.record(Change::SessionRemoved { client_id });
            return None;
        }
        if stored.offline_since.is_none() {
            // Connected when the broker stopped: offline from now.
            self.record(Change::Session {
                client_id: client_id.clone(),
                expiry: stored.expiry,
                offline_since: Some(now),
            });
        }
        let queued = stored.queued.len();
        let session = Arc::new(Session::new(client_id, stored.expiry));
        {
            let mut state = session.lock();
            state.stored = true;
            for (seq, StoredMessage { message, in_flight }) in stored.queued {
                let queued = Queued {
                    seq,
                    message,
                    share: None,
                };
                state.restore(queued, in_flight);
            }
            for pkid in stored.incoming_qos2 {
                state.restore_qos2(pkid);
            }
            let mut tree = write(&self.subscriptions);
            for (filter, subscription) in &stored.subscriptions {
                let subscriber = Subscriber {
                    session: session.clone(),
                    subscription: *subscription,
                };
                tree.insert(filter, subscriber);
            }
            drop(tree);
            state.subscriptions = stored.subscriptions;
            if finite {
                let at = Instant::now() + (expiry - offline_for);
                state.deadlines().expires_at = Some(at);
                self.arm_timer(&session, &mut state, at);
            }
        }
        lock(&self.sessions).replace(ById(session));
        Some(queued)
    }

    /// Admits one more connection, unless `max_connections` are open, or its listener
    /// has no more of its `places`.
    pub fn admit(self: &Arc<Self>, places: Option<&Arc<Semaphore>>) -> Option<Admitted> {
        let place = match places {
            Some(places) => Some(places.clone().try_acquire_owned().ok()?),
            None => None,
        };
        self.admission.try_acquire().ok()?.forget();
        Some(Admitted {
            broker: self.clone(),
            _listener_place: place,
        })
    }

    /// Returns once every admitted connection has ended.
    pub async fn connections_closed(&self) {
        let all = u32::try_from(self.limits.max_connections.0).unwrap_or(u32::MAX);
        let _ = self.admission.acquire_many(all).await;
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, change: Change) -> Ticket {
        self.storage.record(change)
    }

    /// Records the change `change` makes, if `state` is a stored session's.
    pub fn record_if_stored(
        &self,
        state: &SessionState,
        change: impl FnOnce() -> Change,
    ) -> Ticket {
        if state.stored && !state.closed {
            self.record(change())
        } else {
            Ticket::NONE
        }
    }

    /// Resolves once everything recorded up to `ticket` is durable.
    pub fn durable(&self, ticket: Ticket) -> Durable {
        self.storage.durable(ticket)
    }

    /// Makes the changes recorded until the guard drops durable together or not at all.
    pub fn atomic(&self) -> AtomicGuard<'_> {
        self.storage.atomic()
    }

    /// Writes out everything recorded; resolves once it is durable.
    pub fn flush_storage(&self) -> Durable {
        self.storage.flush()
    }

    /// Stores `state`'s session, with its expiry, as online: from scratch (its
    /// subscriptions and queued messages too) if it was not stored yet.
    fn store_session(&self, client_id: &ByteString, state: &mut SessionState) -> Ticket {
        let mut ticket = self.record(Change::Session {
            client_id: client_id.clone(),
            expiry: state.expiry,
            offline_since: None,
        });
        if !std::mem::replace(&mut state.stored, true) {
            for (filter, subscription) in &state.subscriptions {
                ticket = self.record(Change::Subscribed {
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    subscription: *subscription,
                });
            }
            for (queued, in_flight) in state.queued() {
                if queued.message.qos == QoS::AtMostOnce {
                    continue;
                }
                ticket = self.record(Change::Queued {
                    client_id: client_id.clone(),
                    seq: queued.seq,
                    message: queued.message.clone(),
                });
                if let Some((pkid, released)) = in_flight {
                    ticket = self.record(Change::InFlight {
                        client_id: client_id.clone(),
                        seq: queued.seq,
                        pkid,
                        released,
                    });
                }
            }
            for pkid in state.qos2_received() {
                ticket = self.record(Change::Qos2Received {
                    client_id: client_id.clone(),
                    pkid,
                });
            }
        }
        ticket
    }

    /// Attaches connection `connection_id` to the session of `client_id`: resumed when
    /// `clean_start` is false and one exists, otherwise new; from now on it is kept for
    /// `expiry` after the connection ends. A session that ends with its connection is
    /// resumed only for an MQTT 5.0 client (`v5`), in which it exists as long as that
    /// connection does; MQTT 3.1.1 never reuses a clean session's state (MQTT-3.1.2-6). A connection attached before is kicked off,
    /// and a will waiting for its delay is cancelled. The connection is to be heard from
    /// within `keep_alive` (already 1.5 times the client's value), if any.
    ///
    /// Refused with the CONNACK reason code to send when the broker holds
    /// `max_sessions` sessions and this client id has none.
    pub fn attach(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        v5: bool,
        expiry: SessionExpiry,
        connection_id: u64,
        keep_alive: Option<Duration>,
    ) -> Result<Attached, ReasonCode> {
        let mut sessions = lock(&self.sessions);
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ReasonCode::SERVER_UNAVAILABLE);
        }
        let existing = sessions.get(&**client_id).map(|e| e.0.clone());
        if existing.is_none() && sessions.len() >= self.limits.max_sessions {
            warn!(client = %client_id, "session limit reached, connection refused");
            // 3.x clients get 0x03, server unavailable.
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        if let Some(old) = &existing {
            let mut state = old.lock();
            if let Some(mut previous) = old.set_attachment(&mut state, None) {
                info!(client = %client_id, "session taken over by a new connection");
                previous.kick(Kick::TakenOver);
            }
            let will = state.deadlines.as_mut().and_then(|d| d.delayed_will.take());
            if will.is_some() {
                debug!(client = %client_id, "reconnected within the will delay: will cancelled");
            }
        }
        let (mut orphan_will, mut ticket) = (None, Ticket::NONE);
        let (session, session_present) = match existing {
            Some(old) if !clean_start && (v5 || old.lock().persistent()) => (old, true),
            existing => {
                if let Some(old) = existing {
                    // The CONNACK waits for the old session's removal too.
                    (orphan_will, ticket) = self.discard(&old);
                }
                let session = Arc::new(Session::new(client_id.clone(), expiry));
                sessions.replace(ById(session.clone()));
                (session, false)
            }
        };
        let deadline = keep_alive.map(|keep_alive| Instant::now() + keep_alive);
        {
            let mut state = session.lock();
            state.expiry = expiry;
            if let Some(deadlines) = state.deadlines.as_deref_mut() {
                deadlines.expires_at = None;
            }
            if expiry != SessionExpiry::NONE || state.stored {
                ticket = ticket.max(self.store_session(client_id, &mut state));
            }
            let attachment = Attachment::new(connection_id, deadline);
            session.set_attachment(&mut state, Some(attachment));
        }
        // The sweeper locks sessions under its own lock: never the other way round.
        drop(sessions);
        self.publish_orphan_will(orphan_will);
        if let Some(deadline) = deadline {
            self.keep_alives.watch(&session, connection_id, deadline);
        }
        Ok(Attached {
            session,
            session_present,
            ticket,
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

    /// Changes the session expiry of the session connection `connection_id` holds (a
    /// DISCONNECT's Session Expiry Interval).
    pub fn set_session_expiry(&self, session: &Session, connection_id: u64, expiry: SessionExpiry) {
        let mut state = session.lock();
        if state.attached(connection_id).is_some() && !state.closed {
            state.expiry = expiry;
        }
    }

    /// Detaches connection `connection_id` from `session`, unless another connection
    /// took the session over first. A session with no expiry ends here; one with a
    /// finite expiry ends that much later unless a client resumes it first. Messages
    /// routed to it through shared subscriptions and not yet sent go to other members.
    pub fn detach(self: &Arc<Self>, session: &Arc<Session>, connection_id: u64) {
        let mut sessions = lock(&self.sessions);
        let mut state = session.lock();
        if state.attached(connection_id).is_none() {
            return;
        }
        session.set_attachment(&mut state, None);
        // An offline session no longer holds publishers back.
        self.room_made();
        if !state.persistent() {
            drop(state);
            sessions.remove(&*session.client_id);
            let (will, _) = self.discard(session);
            drop(sessions);
            self.publish_orphan_will(will);
            return;
        }
        let handed_over = state.take_shared(false);
        for queued in &handed_over {
            self.record_if_stored(&state, || Change::Delivered {
                client_id: session.client_id.clone(),
                seq: queued.seq,
            });
        }
        let expiry = state.expiry;
        self.record_if_stored(&state, || Change::Session {
            client_id: session.client_id.clone(),
            expiry,
            offline_since: Some(SystemTime::now()),
        });
        if state.expiry != SessionExpiry::NEVER {
            let at = Instant::now() + Duration::from_secs(u64::from(state.expiry.0));
            state.deadlines().expires_at = Some(at);
            self.arm_timer(session, &mut state, at);
        }
        drop(state);
        drop(sessions);
        self.hand_over(session, handed_over);
    }

    /// Makes sure the session's timer looks at it by `at`. One task a session sleeps
    /// until the earliest of its deadlines (session expiry, delayed will), so that a
    /// client reconnecting in a loop does not pile up timers: a new task is started only
    /// for a deadline earlier than the one armed, and the one it supersedes ends when it
    /// wakes. The task holds only weak references.
    fn arm_timer(self: &Arc<Self>, session: &Arc<Session>, state: &mut SessionState, at: Instant) {
        let armed = state.deadlines.as_ref().and_then(|d| d.timer);
        if armed.is_some_and(|armed| armed <= at) {
            return;
        }
        state.deadlines().timer = Some(at);
        let (broker, session) = (Arc::downgrade(self), Arc::downgrade(session));
        tokio::spawn(async move {
            let mut at = at;
            loop {
                // In steps: tokio's timer does not reach years ahead (intervals may be
                // up to 136 years).
                while Instant::now() < at {
                    let step = at.min(Instant::now() + LONGEST_TIMER_STEP);
                    tokio::time::sleep_until(step.into()).await;
                }
                let (Some(broker), Some(session)) = (Weak::upgrade(&broker), session.upgrade())
                else {
                    return;
                };
                match broker.timer_due(&session, at) {
                    Some(next) => at = next,
                    None => return,
                }
            }
        });
    }

    /// The session timer armed for `at` woke: publishes a delayed will that is due and
    /// ends the session if its expiry has passed. Returns when to look again; `None` when
    /// nothing is left to wait for, or when this timer was superseded.
    fn timer_due(self: &Arc<Self>, session: &Arc<Session>, at: Instant) -> Option<Instant> {
        let now = Instant::now();
        let (will, expired, next) = {
            let mut state = session.lock();
            let offline = !state.is_connected();
            let deadlines = state.deadlines.as_deref_mut()?;
            if deadlines.timer != Some(at) {
                return None;
            }
            let will_due = offline
                && deadlines
                    .delayed_will
                    .as_ref()
                    .is_some_and(|delayed| delayed.due <= now);
            let will = if will_due {
                deadlines.delayed_will.take().map(|delayed| delayed.will)
            } else {
                None
            };
            let expired = offline && deadlines.expires_at.is_some_and(|end| end <= now);
            let next = if expired { None } else { deadlines.next() };
            deadlines.timer = next;
            if next.is_none() && !expired {
                // Nothing left to wait for: a session with no deadline holds no box.
                // (An expired one keeps it until `expire` has looked.)
                state.deadlines = None;
            }
            (will, expired, next)
        };
        if let Some(will) = will {
            debug!(client = %session.client_id, topic = %will.message.topic, "publishing delayed will");
            let _ = self.publish(will.published(now), None);
        }
        if expired {
            self.expire(session);
        }
        next
    }

    /// Ends `session` if it is still offline and its expiry has passed.
    fn expire(self: &Arc<Self>, session: &Arc<Session>) {
        let mut sessions = lock(&self.sessions);
        let due = {
            let state = session.lock();
            let expires_at = state.deadlines.as_ref().and_then(|d| d.expires_at);
            !state.is_connected() && expires_at.is_some_and(|at| at <= Instant::now())
        };
        let registered = sessions
            .get(&*session.client_id)
            .is_some_and(|e| Arc::ptr_eq(&e.0, session));
        if due && registered {
            info!(client = %session.client_id, "session expired");
            sessions.remove(&*session.client_id);
            let (will, _) = self.discard(session);
            drop(sessions);
            self.publish_orphan_will(will);
        }
    }

    /// Publishes the will of connection `connection_id`, which is closing, after its
    /// delay (MQTT 5.0 Will Delay Interval): at once for none, otherwise unless the
    /// client reconnects first. It is also published if the session ends first.
    pub fn publish_will(self: &Arc<Self>, session: &Arc<Session>, connection_id: u64, will: Will) {
        let delay = will.delay;
        if delay.is_zero() {
            // Nobody to pause here: the connection is ending.
            let _ = self.publish(will.published(Instant::now()), None);
            return;
        }
        let mut state = session.lock();
        if state.attached(connection_id).is_none() {
            debug!(client = %session.client_id, "will dropped: the session was taken over within its delay");
            return;
        }
        let at = Instant::now() + delay;
        state.deadlines().delayed_will = Some(DelayedWill { will, due: at });
        self.arm_timer(session, &mut state, at);
    }

    /// Removes everything of a session that is ending; the caller holds the session
    /// registry, so that no new session of the same client id comes in between (its
    /// subscriptions and records would go too). A connection still holding it (one that
    /// was just taken over) can no longer change it: see `SessionState::closed`.
    /// Messages routed through shared subscriptions and not yet received go to other
    /// members. Returns a will still waiting for its delay, to be published once the
    /// registry is released, and the ticket of the removal.
    #[must_use]
    fn discard(&self, session: &Arc<Session>) -> (Option<Will>, Ticket) {
        let mut state = session.lock();
        state.closed = true;
        self.room_made();
        let handed_over = state.take_shared(true);
        let will = state
            .deadlines
            .take()
            .and_then(|d| d.delayed_will)
            .map(|delayed| delayed.will);
        {
            let mut tree = write(&self.subscriptions);
            for filter in state.subscriptions.keys() {
                tree.remove(filter, &session.client_id);
            }
        }
        state.subscriptions.clear();
        let mut ticket = Ticket::NONE;
        if std::mem::take(&mut state.stored) {
            ticket = self.record(Change::SessionRemoved {
                client_id: session.client_id.clone(),
            });
        }
        drop(state);
        self.hand_over(session, handed_over);
        (will, ticket)
    }

    /// Publishes the will of a session that ended before its delay ran out.
    fn publish_orphan_will(&self, will: Option<Will>) {
        if let Some(will) = will {
            let _ = self.publish(will.published(Instant::now()), None);
        }
    }

    /// Gives messages `from` received through shared subscriptions to other members of
    /// the same groups. Dropped where no other member is left. Their removal from
    /// `from`'s records is the caller's, under its lock.
    fn hand_over(&self, from: &Session, messages: Vec<Queued>) {
        if messages.is_empty() {
            return;
        }
        let limits = self.queue_limits();
        for queued in messages {
            let Some(share) = &queued.share else {
                continue;
            };
            let other = read(&self.subscriptions).other_member(share, from);
            let Some(other) = other else {
                debug!(client = %from.client_id, %share, "no other member to take over a shared message; dropped");
                continue;
            };
            debug!(from = %from.client_id, to = %other.session.client_id, %share, "shared message handed over");
            let message = &queued.message;
            let delivery = Delivery {
                qos: message.qos.min(other.qos),
                retain: message.retain,
                limits,
                subscription_ids: &other.subscription_ids,
                share: other.share.as_ref(),
            };
            let copy = OnceCell::from(message.clone());
            self.deliver(&other.session, message, &copy, delivery);
        }
    }

    /// Whether `topic` is within the configured depth; deeper topics are refused.
    /// Why the limits refuse a topic name or filter (`max_topic_length`,
    /// `max_topic_levels`), if they do.
    pub fn topic_refusal(&self, topic: &str) -> Option<String> {
        let limits = &self.limits;
        if topic.len() > limits.max_topic_length.0 {
            return Some(format!(
                "longer than max_topic_length ({} bytes)",
                limits.max_topic_length.0
            ));
        }
        (level_count(topic) > limits.max_topic_levels.0).then(|| {
            format!(
                "more than max_topic_levels ({}) levels",
                limits.max_topic_levels.0
            )
        })
    }

    /// The limits of each session's queue of unsent messages.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.limits.max_queued_messages,
            bytes: self.limits.max_queued_bytes,
            full: self.limits.queue_full,
        }
    }

    /// Routes `message`, published by client `publisher` (none for a will or the
    /// broker's own), to every matching subscription and updates the retained store.
    pub fn publish(&self, message: Message, publisher: Option<&str>) -> Published {
        let mut ticket = Ticket::NONE;
        let (id, reservation) = self.feed.publish(&message, || {
            if message.retain {
                ticket = self.retain(&message);
            }
        });
        if let Some(below) = reservation {
            self.record(Change::EventIdsReserved { below });
        }
        // Offline sessions may keep a message for long: they get one exact-size copy,
        // not a slice pinning the publisher's receive buffer.
        let kept = OnceCell::new();
        let matched = read(&self.subscriptions).matches(&message.topic, publisher);
        let limits = self.queue_limits();
        let mut congested = None;
        for Matched {
            session,
            qos,
            retain_as_published,
            subscription_ids,
            share,
        } in matched
        {
            let delivery = Delivery {
                qos: message.qos.min(qos),
                // Live deliveries carry the retain flag only with Retain As Published
                // (MQTT-3.3.1-9, MQTT-3.3.1-12, MQTT-3.3.1-13).
                retain: message.retain && retain_as_published,
                limits,
                subscription_ids: &subscription_ids,
                share: share.as_ref(),
            };
            let (offer, recorded) = self.deliver(&session, &message, &kept, delivery);
            ticket = ticket.max(recorded);
            if matches!(
                offer,
                Offer::Queued {
                    congested: true,
                    ..
                }
            ) && congested.is_none()
            {
                congested = Some(session);
            }
        }
        Published {
            id: Some(id),
            congested,
            ticket,
        }
    }

    /// Updates the retained store with `message`, and storage too, but for `$SYS`
    /// topics: the broker's status is published again within `sys_interval` of a start.
    fn retain(&self, message: &Message) -> Ticket {
        let kept = !message.topic.as_str().starts_with("$SYS/");
        let mut retained = write(&self.retained);
        if message.payload.is_empty() {
            retained.remove(&message.topic);
            if !kept {
                return Ticket::NONE;
            }
            return self.record(Change::RetainedCleared {
                topic: message.topic.clone(),
            });
        }
        let message = message.detached();
        if retained.set(message.clone(), self.limits.max_retained_messages) {
            if !kept {
                return Ticket::NONE;
            }
            self.record(Change::Retained { message })
        } else {
            warn!(topic = %message.topic, "retained message limit reached, message not retained");
            Ticket::NONE
        }
    }

    /// Offers `message` at `qos` to one session's queue and wakes its connection.
    /// `detached` holds (or receives) the exact-size copy for offline sessions. Returns
    /// the ticket of the message stored for a stored session.
    fn deliver(
        &self,
        session: &Session,
        message: &Message,
        detached: &OnceCell<Message>,
        delivery: Delivery,
    ) -> (Offer, Ticket) {
        let Delivery {
            qos,
            retain,
            limits,
            subscription_ids,
            share,
        } = delivery;
        let mut state = session.lock();
        let unreadable = || {
            let grants = state.grants.as_ref();
            grants.is_some_and(|g| !g.may_read(&message.topic))
        };
        if state.closed {
            return (Offer::NotKept, Ticket::NONE);
        }
        if unreadable() {
            metrics::counter!(crate::telemetry::MESSAGES_DROPPED, "reason" => "not_authorized")
                .increment(1);
            return (Offer::NotKept, Ticket::NONE);
        }
        let source = if state.is_connected() {
            message
        } else {
            detached.get_or_init(|| message.detached())
        };
        let mut message = source.for_delivery(qos, retain);
        if !subscription_ids.is_empty() {
            message = message.with_subscription_ids(subscription_ids);
        }
        let stored = (state.stored && qos != QoS::AtMostOnce).then(|| message.clone());
        let offer = state.offer(message, share.cloned(), limits);
        let mut ticket = Ticket::NONE;
        match &offer {
            Offer::Queued { seq, .. } | Offer::Displaced { seq, .. } => {
                let seq = *seq;
                if let Offer::Displaced {
                    dropped, displaced, ..
                } = &offer
                {
                    self.dropped_for_full_queue(session, &mut state, *dropped);
                    for &seq in displaced {
                        ticket = ticket.max(self.record_if_stored(&state, || Change::Delivered {
                            client_id: session.client_id.clone(),
                            seq,
                        }));
                    }
                }
                if let Some(message) = stored {
                    ticket = ticket.max(self.record(Change::Queued {
                        client_id: session.client_id.clone(),
                        seq,
                        message,
                    }));
                }
                let waker = state.signal();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Offer::QueueFull => self.dropped_for_full_queue(session, &mut state, 1),
            Offer::NotKept => {}
        }
        (offer, ticket)
    }

    /// Counts `n` messages to `session` dropped for its full queue; logs the first.
    fn dropped_for_full_queue(&self, session: &Session, state: &mut SessionState, n: usize) {
        metrics::counter!(crate::telemetry::MESSAGES_DROPPED, "reason" => "queue_full")
            .increment(n as u64);
        if !std::mem::replace(&mut state.drop_logged, true) {
            let policy = self.limits.queue_full;
            warn!(client = %session.client_id, connected = state.is_connected(), ?policy,
                "queue full: messages to this client are dropped (logged once a session)");
        } else {
            debug!(client = %session.client_id, "queue full, message dropped");
        }
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

    /// Counts what the broker holds now: sessions, messages waiting, retained
    /// messages, subscriptions, for `/metrics` and `$SYS`. It visits every session, so
    /// a count less than half a second old is given again instead.
    pub fn census(&self) -> Census {
        let mut last = lock(&self.last_census);
        if let Some((at, census)) = *last {
            if at.elapsed() < Duration::from_millis(500) {
                return census;
            }
        }
        let census = self.count();
        *last = Some((Instant::now(), census));
        census
    }

    fn count(&self) -> Census {
        let mut census = Census {
            retained: read(&self.retained).count(),
            ..Census::default()
        };
        let sessions: Vec<Arc<Session>> =
            lock(&self.sessions).iter().map(|s| s.0.clone()).collect();
        for session in sessions {
            let state = session.lock();
            if state.is_connected() {
                census.online += 1;
            } else {
                census.offline += 1;
            }
            let (queued, inflight) = state.backlog();
            census.queued += queued;
            census.inflight += inflight;
            census.subscriptions += state.subscriptions.len();
        }
        census
    }

    /// Holds `session` to `grants` from now on (see `SessionState::set_grants`), if
    /// connection `connection_id` still has it (a taken-over session is its new
    /// client's); what they drop from its queue is forgotten in storage too.
    pub fn set_grants(&self, session: &Session, connection_id: u64, grants: Arc<Grants>) {
        let mut state = session.lock();
        if state.attached(connection_id).is_none() {
            return;
        }
        for seq in state.set_grants(grants) {
            self.record_if_stored(&state, || Change::Delivered {
                client_id: session.client_id.clone(),
                seq,
            });
        }
    }

    /// The queued message `seq` of `session` was acknowledged (or dropped): forget it.
    pub fn delivered(&self, session: &Session, seq: u64) {
        let state = session.lock();
        self.record_if_stored(&state, || Change::Delivered {
            client_id: session.client_id.clone(),
            seq,
        });
    }

    /// Subscribes `session` to each filter, answering with one reason code a filter: the
    /// QoS granted, or why it was refused. `id` is the SUBSCRIBE's Subscription
    /// Identifier. Retained messages are queued after the subscription is in place, as
    /// each filter's Retain Handling says. Also returns what the SUBACK waits for.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filters: &[(ByteString, SubscriptionOptions)],
        id: Option<NonZeroU32>,
    ) -> SubscribeOutcome {
        // A filter repeated later in the same packet replaces its subscription at once,
        // so retained messages are sent only for its last occurrence.
        let mut seen = HashSet::with_capacity(filters.len());
        let last: Vec<bool> = filters
            .iter()
            .rev()
            .map(|(raw, _)| seen.insert(&**raw))
            .collect();
        let mut refused = None;
        let mut ticket = Ticket::NONE;
        let codes: Vec<_> = filters
            .iter()
            .zip(last.into_iter().rev())
            .map(|((raw, options), last)| {
                match self.subscribe_one(session, raw, options, id, last, &mut ticket) {
                    Ok(qos) => ReasonCode::granted(qos),
                    Err((code, why)) => {
                        refused.get_or_insert((raw, why));
                        code
                    }
                }
            })
            .collect();
        SubscribeOutcome {
            codes,
            ticket,
            refused: refused.map(|(filter, why)| format!("{filter}: {why}")),
        }
    }

    /// One filter of a SUBSCRIBE: the granted QoS, or the reason code refusing it and
    /// why. `last`: no later filter of the same packet replaces it. `ticket` is moved to
    /// the subscription's record.
    fn subscribe_one(
        &self,
        session: &Arc<Session>,
        raw: &ByteString,
        options: &SubscriptionOptions,
        id: Option<NonZeroU32>,
        last: bool,
        ticket: &mut Ticket,
    ) -> Result<QoS, (ReasonCode, String)> {
        if let Some(why) = self.topic_refusal(raw) {
            return Err((ReasonCode::TOPIC_FILTER_INVALID, why));
        }
        // Kept for the session's lifetime: an exact-size copy, not a slice of the packet.
        let filter = TopicFilter::new(ByteString::from(&**raw))
            .map_err(|e| (ReasonCode::TOPIC_FILTER_INVALID, e.to_string()))?;
        let qos = options.qos.min(self.limits.max_qos.0);
        let subscription = Subscription {
            qos,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            id,
        };
        let existed = {
            let mut state = session.lock();
            if state.closed {
                let why = "the session was taken over".to_string();
                return Err((ReasonCode::UNSPECIFIED_ERROR, why));
            }
            if let Some(grants) = &state.grants {
                if !grants.may_subscribe(&filter) {
                    let why = "the ACL does not let the client read all of it".to_string();
                    return Err((ReasonCode::NOT_AUTHORIZED, why));
                }
            }
            if state.subscriptions.len() >= self.limits.max_subscriptions_per_client
                && !state.subscriptions.contains_key(&filter)
            {
                let why = "subscription limit reached".to_string();
                return Err((ReasonCode::QUOTA_EXCEEDED, why));
            }
            let existed = state
                .subscriptions
                .insert(filter.clone(), subscription)
                .is_some();
            let subscriber = Subscriber {
                session: session.clone(),
                subscription,
            };
            write(&self.subscriptions).insert(&filter, subscriber);
            *ticket = (*ticket).max(self.record_if_stored(&state, || Change::Subscribed {
                client_id: session.client_id.clone(),
                filter: filter.clone(),
                subscription,
            }));
            existed
        };
        // Shared subscriptions get no retained messages (MQTT 5.0, 4.8.2).
        let send_retained = last
            && filter.share().is_none()
            && match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscription => !existed,
                RetainHandling::Never => false,
            };
        if send_retained {
            self.send_retained(session, &filter, &subscription);
        }
        Ok(qos)
    }

    /// Writes the replay log's new events to storage (blocking: call it off the
    /// runtime's worker threads).
    pub fn persist_feed(&self) {
        self.feed.persist(&*self.storage);
    }

    /// Writes out the rest of the replay log and marks it complete: the last thing a
    /// clean stop records.
    pub fn seal_feed(&self) {
        self.persist_feed();
        self.record(Change::LogSealed {
            next: self.feed.upcoming(),
        });
    }

    /// The unexpired retained messages matching any of `filters`, each once, for web
    /// readers.
    pub fn retained_matching(&self, filters: &[TopicFilter]) -> Vec<Message> {
        let now = Instant::now();
        let store = read(&self.retained);
        let mut found: Vec<Message> = filters
            .iter()
            .flat_map(|filter| store.matching(filter, self.limits.max_retained_messages))
            .filter(|message| !message.expired(now))
            .collect();
        if filters.len() > 1 {
            found.sort_by(|a, b| a.topic.cmp(&b.topic));
            found.dedup_by(|a, b| a.topic == b.topic);
        }
        found
    }

    /// Queues every retained message matching `filter` for `session` (MQTT-3.3.1-6),
    /// however many, but for those that have expired, which are deleted. The replay may
    /// fill the queue beyond max_queued_messages by at most the size of the retained
    /// store, and it shares the payloads rather than copying.
    fn send_retained(&self, session: &Session, filter: &TopicFilter, subscription: &Subscription) {
        let max_retained = self.limits.max_retained_messages;
        let limits = QueueLimits {
            messages: self.limits.max_queued_messages.saturating_add(max_retained),
            bytes: usize::MAX,
            full: QueueFull::DropNew,
        };
        let ids: Vec<u32> = subscription.id.map(NonZeroU32::get).into_iter().collect();
        let now = Instant::now();
        let (expired, retained): (Vec<_>, Vec<_>) = read(&self.retained)
            .matching(filter, max_retained)
            .into_iter()
            .partition(|message| message.expired(now));
        if !expired.is_empty() {
            // Found expired: gone for everyone, now rather than when overwritten.
            let mut store = write(&self.retained);
            for message in expired {
                if store.remove_expired(&message.topic, now) {
                    self.record(Change::RetainedCleared {
                        topic: message.topic,
                    });
                }
            }
        }
        for message in &retained {
            let delivery = Delivery {
                qos: message.qos.min(subscription.qos),
                retain: true,
                limits,
                subscription_ids: &ids,
                share: None,
            };
            // Retained messages are exact-size copies already.
            let copy = OnceCell::from(message.clone());
            if self.deliver(session, message, &copy, delivery).0 == Offer::QueueFull {
                break;
            }
        }
    }

    /// Removes the session's subscriptions to exactly these filters, answering with one
    /// reason code a filter; also returns what the UNSUBACK waits for.
    pub fn unsubscribe(
        &self,
        session: &Arc<Session>,
        filters: &[ByteString],
    ) -> (Vec<ReasonCode>, Ticket) {
        let mut ticket = Ticket::NONE;
        let codes = filters
            .iter()
            .map(|raw| {
                let Ok(filter) = TopicFilter::new(raw.clone()) else {
                    return ReasonCode::TOPIC_FILTER_INVALID;
                };
                let mut state = session.lock();
                if state.closed || state.subscriptions.remove(&filter).is_none() {
                    return ReasonCode::NO_SUBSCRIPTION_EXISTED;
                }
                write(&self.subscriptions).remove(&filter, &session.client_id);
                ticket = ticket.max(self.record_if_stored(&state, || Change::Unsubscribed {
                    client_id: session.client_id.clone(),
                    filter,
                }));
                ReasonCode::SUCCESS
            })
            .collect();
        (codes, ticket)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::storage::MemoryStorage;
    use crate::topic::TopicName;

    /// A client that reconnects in a loop, its session kept an hour after each
    /// disconnect, leaves one timer task behind, not one per disconnect.
    #[tokio::test]
    async fn reconnecting_in_a_loop_leaves_one_session_timer() {
        let broker = Broker::new(
            MqttConfig::default(),
            &HttpConfig::default(),
            Arc::new(MemoryStorage::default()),
        )
        .unwrap();
        let client_id = ByteString::from_static("looping");
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        for connection_id in 1..=100 {
            let attached = broker
                .attach(
                    &client_id,
                    false,
                    true,
                    SessionExpiry(3600),
                    connection_id,
                    None,
                )
                .unwrap();
            broker.detach(&attached.session, connection_id);
        }
        assert_eq!(tasks(), before + 1);
    }

    /// A queue filled exactly to its limit (no offer went beyond it) still wakes a
    /// publisher that paused on it once a drain makes room.
    #[tokio::test]
    async fn a_paused_publisher_is_woken_by_the_drain_that_makes_room() {
        let broker = Broker::new(
            MqttConfig::default(),
            &HttpConfig::default(),
            Arc::new(MemoryStorage::default()),
        )
        .unwrap();
        let limits = QueueLimits {
            messages: 2,
            bytes: 1024,
            full: QueueFull::PausePublishers,
        };
        let session = Arc::new(Session::new(
            ByteString::from_static("c"),
            SessionExpiry::NONE,
        ));
        session.set_attachment(&mut session.lock(), Some(Attachment::new(1, None)));
        let message = Message {
            topic: TopicName::new(ByteString::from_static("t")).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            published_at: crate::message::Stamp::now(),
        };
        for _ in 0..2 {
            let offer = session.lock().offer(message.clone(), None, limits);
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
            let mut encoder = crate::protocol::Encoder::new(crate::protocol::ProtocolVersion::V311);
            state.drain(1, &mut encoder, &mut out, usize::MAX);
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
