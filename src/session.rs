//! Session state: what the broker keeps for one client id, connected or not.
//!
//! A session outlives its connections. The connection task only pumps bytes: it drains
//! the session's queue onto the wire and feeds acknowledgements back, so a client that
//! reconnects (or takes its session over from another connection) continues exactly
//! where the last connection stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;

use crate::acl::Grants;
use crate::config::QueueFull;
use crate::locks;
use crate::message::{Message, OutgoingProperties, Will};
use crate::protocol::{Ack, Encoder, Packet, PublishHeader, QoS};
use crate::router::Subscription;
use crate::topic::TopicFilter;

pub struct Session {
    pub client_id: ByteString,
    /// Whether a connection is attached, readable without the lock: shared subscriptions
    /// prefer online members while the subscription tree is locked.
    online: AtomicBool,
    state: Mutex<SessionState>,
}

/// Session Expiry Interval: how long a session outlives its connection, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SessionExpiry(pub u32);

impl SessionExpiry {
    /// Ends with the connection: MQTT 3.x clean session, or 5.0 without the property.
    pub const NONE: SessionExpiry = SessionExpiry(0);
    /// Never ends: MQTT 3.x persistent session, or 5.0's 0xFFFFFFFF.
    pub const NEVER: SessionExpiry = SessionExpiry(u32::MAX);
}

/// The connection currently attached to a session, and how it is reached: the broker
/// signals it through here rather than through a channel per connection, which an idle
/// connection would pay for in memory.
pub struct Attachment {
    pub connection_id: u64,
    /// The connection's task, woken by a signal.
    waker: Option<Waker>,
    /// Something was queued since the connection last looked.
    woken: bool,
    /// The connection is to end, and why.
    kick: Option<Kick>,
    /// When the keep alive runs out unless a packet arrives first. `None` while the
    /// client's packets are held back (its publisher is paused), or without keep alive.
    deadline: Option<Instant>,
}

/// A will waiting for its delay.
pub struct DelayedWill {
    pub will: Will,
    pub due: Instant,
}

/// What an offline session waits for, and when its timer task looks at it.
#[derive(Default)]
pub struct Deadlines {
    /// When the session ends, while it is offline with a finite expiry.
    pub expires_at: Option<Instant>,
    /// A will whose Will Delay Interval has not yet passed: published when it has, or
    /// when the session ends first; dropped if the client reconnects.
    pub delayed_will: Option<DelayedWill>,
    /// When the session's timer task looks at it next (see `Broker::arm_timer`); `None`
    /// while it has no task.
    pub timer: Option<Instant>,
}

impl Deadlines {
    /// The earliest time something is due: the end of the session, or its will.
    pub fn next(&self) -> Option<Instant> {
        let will = self.delayed_will.as_ref().map(|delayed| delayed.due);
        match (self.expires_at, will) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why a connection is ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    TakenOver,
    Shutdown,
    KeepAliveExpired,
}

/// Where a connection's keep alive stands (see `SessionState::keep_alive`).
#[derive(Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// The connection is no longer attached.
    Detached,
    /// It ran out: the connection has been kicked.
    Expired,
    /// Look again then.
    Until(Instant),
}

impl Attachment {
    pub fn new(connection_id: u64, deadline: Option<Instant>) -> Attachment {
        Attachment {
            connection_id,
            waker: None,
            woken: false,
            kick: None,
            deadline,
        }
    }

    /// Ends the attached connection for `why`, unless it was already told to end.
    pub fn kick(&mut self, why: Kick) {
        self.kick.get_or_insert(why);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// A message waiting to be sent, with its position in the session's sequence.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub message: Message,
    /// The shared subscription it was routed through: another member takes it over if
    /// this session leaves before it is sent.
    pub share: Option<Arc<TopicFilter>>,
}

/// What an outgoing QoS 1/2 message in flight waits for: PUBACK, PUBREC or PUBCOMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// QoS 1 sent.
    Ack,
    /// QoS 2 sent.
    Rec,
    /// PUBREC received and PUBREL sent.
    Comp,
}

#[derive(Debug)]
struct InFlight {
    pkid: u16,
    stage: Awaiting,
    queued: Queued,
    /// Sent on a connection that has ended, and not yet again on the current one.
    awaiting_resend: bool,
}

pub struct SessionState {
    /// How long the session is kept after its connection ends.
    pub expiry: SessionExpiry,
    /// What the session waits for while offline, and its timer. Boxed: a connected
    /// session has none of it.
    pub deadlines: Option<Box<Deadlines>>,
    /// The session has ended (discarded by a clean-session connection or a takeover);
    /// a connection that still holds it must not add subscriptions or record changes.
    pub closed: bool,
    /// The session is in storage: its changes are recorded there.
    pub stored: bool,
    pub attachment: Option<Attachment>,
    pub subscriptions: HashMap<TopicFilter, Subscription>,
    /// What the client may read, as the ACL says for whoever attached last: messages it
    /// may not are not queued (see `set_grants`). `None` without an ACL file, and for a
    /// session restored from storage until a client attaches.
    pub grants: Option<Arc<Grants>>,
    /// Boxed, and only while anything is in motion: an idle session holds none of it.
    traffic: Option<Box<Traffic>>,
    /// A message went beyond the queue's limits since publishers were last told of
    /// room: someone may be paused on this session.
    congested: bool,
    /// A message to this session was dropped for a full queue, and logged: further
    /// drops are only counted.
    pub drop_logged: bool,
    next_seq: u64,
}

/// What a session has in motion: messages waiting and in flight, QoS 2 ids received.
#[derive(Default)]
struct Traffic {
    /// Messages not yet sent, in delivery order.
    pending: VecDeque<Queued>,
    /// Payload bytes in `pending`.
    pending_bytes: usize,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in the order they were sent.
    inflight: VecDeque<InFlight>,
    /// How many of them are awaiting a resend: those are outside the window.
    resends: usize,
    /// QoS 2 packet ids received and acknowledged with PUBREC but not yet released.
    incoming_qos2: HashSet<u16>,
    last_pkid: u16,
}

/// How much a session's queue of unsent messages may hold.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub messages: usize,
    /// Payload bytes.
    pub bytes: usize,
    /// What becomes of a message beyond them.
    pub full: QueueFull,
}

/// What happened to a message offered to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued under this sequence number; `congested` when the queue is now beyond its
    /// limits (a connected client's QoS 1/2 message, never dropped for that: its
    /// publisher is to pause until the queue has room).
    Queued { seq: u64, congested: bool },
    /// Queued under this sequence number in place of the oldest `dropped` messages
    /// waiting (`QueueFull::DropOldest`); `displaced` has the sequence numbers of
    /// those of QoS 1/2.
    Displaced {
        seq: u64,
        dropped: usize,
        displaced: Vec<u64>,
    },
    /// The session's queue is full: the message is dropped.
    QueueFull,
    /// The session is offline and does not keep messages of this QoS.
    NotKept,
}

/// What one drain moved: see `SessionState::drain`.
#[derive(Debug, Default)]
pub struct Drained {
    /// Sequence numbers of QoS 1/2 messages dropped, which count as done.
    pub dropped: Vec<u64>,
    /// QoS 1/2 messages sent for the first time (stored sessions only).
    pub sent: Vec<Sent>,
    /// PUBLISH packets written, by QoS.
    pub published: [u32; 3],
    /// How long the first of them took from its publisher to here: a sample of the
    /// publish-to-delivery latency, one a drain.
    pub first_age: Option<Duration>,
    /// Messages dropped because they expired while waiting, or are larger than the
    /// client's Maximum Packet Size.
    pub expired: u32,
    pub too_large: u32,
}

/// Where a drain writes to, and how much it may.
struct Outlet<'a> {
    window: usize,
    encoder: &'a mut Encoder,
    out: &'a mut BytesMut,
    high_water: usize,
}

/// A QoS 1/2 message sent for the first time.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub seq: u64,
    pub pkid: u16,
    pub qos: QoS,
}

/// What an incoming QoS 2 PUBLISH is to the session.
#[derive(Debug, PartialEq, Eq)]
pub enum IncomingQos2 {
    /// A new message: to be delivered.
    Fresh,
    /// A resend of one awaiting PUBREL: acknowledged again, not delivered again.
    Repeated,
    /// The client has more awaiting PUBREL than it may (Receive Maximum).
    OverLimit,
}

/// The outcome of an acknowledgement from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Acked {
    /// The message with this sequence number is fully delivered.
    Done(u64),
    /// PUBREC moved the QoS 2 message with this sequence number on; PUBREL is due.
    Released(u64),
    /// No message in flight matches the acknowledgement.
    Unknown,
}

impl Session {
    pub fn new(client_id: ByteString, expiry: SessionExpiry) -> Session {
        Session {
            client_id,
            online: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                expiry,
                deadlines: None,
                closed: false,
                stored: false,
                attachment: None,
                subscriptions: HashMap::new(),
                grants: None,
                traffic: None,
                congested: false,
                drop_logged: false,
                next_seq: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        locks::lock(&self.state)
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Attaches a connection (`Some`) or detaches it (`None`), under the state's lock;
    /// returns the attachment it replaces.
    pub fn set_attachment(
        &self,
        state: &mut SessionState,
        attachment: Option<Attachment>,
    ) -> Option<Attachment> {
        self.online.store(attachment.is_some(), Ordering::Relaxed);
        std::mem::replace(&mut state.attachment, attachment)
    }
}

impl SessionState {
    /// Whether the session outlives its connection.
    pub fn persistent(&self) -> bool {
        self.expiry != SessionExpiry::NONE
    }

    /// The session's deadlines, made if it has none.
    pub fn deadlines(&mut self) -> &mut Deadlines {
        self.deadlines.get_or_insert_with(Box::default)
    }

    pub fn is_connected(&self) -> bool {
        self.attachment.is_some()
    }

    /// The attachment, if it is connection `connection_id`'s.
    pub fn attached(&mut self, connection_id: u64) -> Option<&mut Attachment> {
        self.attachment
            .as_mut()
            .filter(|attachment| attachment.connection_id == connection_id)
    }

    /// Notes that something was queued for the attached connection; returns the waker
    /// to wake once the lock is released (none if the connection was already told).
    pub fn signal(&mut self) -> Option<Waker> {
        let attachment = self.attachment.as_mut()?;
        attachment.woken = true;
        attachment.waker.take()
    }

    /// Called by connection `connection_id` each time its task runs: `Err` if it is to
    /// end, otherwise whether something was queued since it last looked. Registers
    /// `waker` for the next signal.
    pub fn poll_signal(&mut self, connection_id: u64, waker: &Waker) -> Result<bool, Kick> {
        // Detached by a takeover, or the session ended with it.
        let attachment = self.attached(connection_id).ok_or(Kick::TakenOver)?;
        if let Some(why) = attachment.kick {
            return Err(why);
        }
        if !attachment
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            attachment.waker = Some(waker.clone());
        }
        Ok(std::mem::take(&mut attachment.woken))
    }

    /// Sets connection `connection_id`'s keep-alive deadline (see `Attachment`).
    pub fn set_deadline(&mut self, connection_id: u64, deadline: Option<Instant>) {
        if let Some(attachment) = self.attached(connection_id) {
            attachment.deadline = deadline;
        }
    }

    /// Checks connection `connection_id`'s keep alive at `now`, kicking it if it ran
    /// out. A paused connection is looked at again after `recheck`.
    pub fn keep_alive(&mut self, connection_id: u64, now: Instant, recheck: Instant) -> KeepAlive {
        let Some(attachment) = self.attached(connection_id) else {
            return KeepAlive::Detached;
        };
        match attachment.deadline {
            Some(deadline) if deadline <= now => {
                attachment.kick(Kick::KeepAliveExpired);
                KeepAlive::Expired
            }
            Some(deadline) => KeepAlive::Until(deadline),
            None => KeepAlive::Until(recheck),
        }
    }

    /// Queues `message` (already at its delivery QoS) within the queue's limits. An
    /// offline session keeps only QoS 1 and 2. A connected client's QoS 1/2 message is
    /// queued even beyond the limits, up to twice them, and reported as congesting: its
    /// publisher pauses instead, so that nothing acknowledged to it is dropped.
    pub fn offer(
        &mut self,
        message: Message,
        share: Option<Arc<TopicFilter>>,
        limits: QueueLimits,
    ) -> Offer {
        if !self.is_connected() && message.qos == QoS::AtMostOnce {
            return Offer::NotKept;
        }
        let size = message.payload.len();
        let over = !self.within(limits, size);
        if over {
            match limits.full {
                QueueFull::PausePublishers => {
                    let margin = QueueLimits {
                        messages: limits.messages.saturating_mul(2),
                        bytes: limits.bytes.saturating_mul(2),
                        ..limits
                    };
                    let held_back = self.is_connected() && message.qos != QoS::AtMostOnce;
                    if !held_back || !self.within(margin, size) {
                        return Offer::QueueFull;
                    }
                }
                QueueFull::DropNew => return Offer::QueueFull,
                QueueFull::DropOldest => {
                    if size > limits.bytes {
                        return Offer::QueueFull;
                    }
                    let (mut dropped, mut displaced) = (0, Vec::new());
                    while !self.within(limits, size) {
                        let Some(oldest) = self.traffic().pop() else {
                            break;
                        };
                        dropped += 1;
                        if oldest.message.qos != QoS::AtMostOnce {
                            displaced.push(oldest.seq);
                        }
                    }
                    let seq = self.queue(message, share);
                    return Offer::Displaced {
                        seq,
                        dropped,
                        displaced,
                    };
                }
            }
        }
        let seq = self.queue(message, share);
        self.congested |= over;
        Offer::Queued {
            seq,
            congested: over,
        }
    }

    /// Puts `message` at the end of the queue under the next sequence number.
    fn queue(&mut self, message: Message, share: Option<Arc<TopicFilter>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.push(Queued {
            seq,
            message,
            share,
        });
        seq
    }

    /// Whether one more message of `size` payload bytes fits in `limits`.
    fn within(&self, limits: QueueLimits, size: usize) -> bool {
        let (messages, bytes) = self
            .traffic
            .as_deref()
            .map_or((0, 0), |t| (t.pending.len(), t.pending_bytes));
        messages < limits.messages && bytes + size <= limits.bytes
    }

    fn traffic(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }

    /// Lets the traffic go once nothing is in motion.
    fn settle(&mut self) {
        if self.traffic.as_deref().is_some_and(Traffic::is_idle) {
            self.traffic = None;
        }
    }

    /// Whether publishers paused on this session are due a signal: it was congested and
    /// now has room. Clears the congestion.
    pub fn take_room_made(&mut self, limits: QueueLimits) -> bool {
        let due = self.congested && self.has_room(limits);
        if due {
            self.congested = false;
        }
        due
    }

    /// Whether a publisher paused for this session may go on: its queue is back within
    /// `limits`, or it no longer holds messages back (offline or ended).
    pub fn has_room(&self, limits: QueueLimits) -> bool {
        !self.is_connected() || self.closed || self.within(limits, 0)
    }

    /// Whether a paused publisher may go on (see `has_room`). If not, the queue is
    /// marked so that the drain that makes room signals, however it got full.
    pub fn check_room(&mut self, limits: QueueLimits) -> bool {
        let room = self.has_room(limits);
        self.congested |= !room;
        room
    }

    /// Puts back a message loaded from storage, keeping its sequence number; one that
    /// was in flight (`in_flight`: its packet id, and whether PUBREC arrived) is sent
    /// again as it was.
    pub fn restore(&mut self, queued: Queued, in_flight: Option<(u16, bool)>) {
        self.next_seq = self.next_seq.max(queued.seq.saturating_add(1));
        let stage = match (queued.message.qos, in_flight) {
            (QoS::AtLeastOnce, Some(_)) => Awaiting::Ack,
            (QoS::ExactlyOnce, Some((_, false))) => Awaiting::Rec,
            (QoS::ExactlyOnce, Some((_, true))) => Awaiting::Comp,
            _ => return self.push(queued),
        };
        let pkid = in_flight.map_or(0, |(pkid, _)| pkid);
        let traffic = self.traffic();
        traffic.last_pkid = pkid;
        traffic.resends += 1;
        traffic.inflight.push_back(InFlight {
            pkid,
            stage,
            queued,
            awaiting_resend: true,
        });
    }

    /// Every message queued or in flight, the latter with its packet id and whether
    /// its PUBREC arrived.
    pub fn queued(&self) -> impl Iterator<Item = (&Queued, Option<(u16, bool)>)> {
        self.traffic.iter().flat_map(|traffic| {
            let in_flight = traffic.inflight.iter().map(|entry| {
                let released = entry.stage == Awaiting::Comp;
                (&entry.queued, Some((entry.pkid, released)))
            });
            in_flight.chain(traffic.pending.iter().map(|queued| (queued, None)))
        })
    }

    /// The QoS 2 packet ids received and not yet released.
    pub fn qos2_received(&self) -> impl Iterator<Item = u16> + '_ {
        self.traffic
            .iter()
            .flat_map(|traffic| traffic.incoming_qos2.iter().copied())
    }

    /// Puts back a QoS 2 packet id received and not yet released, loaded from storage.
    pub fn restore_qos2(&mut self, pkid: u16) {
        self.traffic().incoming_qos2.insert(pkid);
    }

    fn push(&mut self, queued: Queued) {
        self.traffic().push(queued);
    }

    /// Messages waiting to be sent, and sent but not yet acknowledged.
    pub fn backlog(&self) -> (usize, usize) {
        self.traffic
            .as_deref()
            .map_or((0, 0), |t| (t.pending.len(), t.inflight.len()))
    }

    /// Holds the session to `grants` from now on (a client attached, or the ACL was
    /// reloaded): messages waiting, or due to be sent again, that they do not let the
    /// client read are dropped. Returns the sequence numbers of those of QoS 1/2, which
    /// count as done.
    pub fn set_grants(&mut self, grants: Arc<Grants>) -> Vec<u64> {
        let mut dropped = Vec::new();
        if let Some(traffic) = self.traffic.as_deref_mut() {
            traffic.pending.retain(|queued| {
                let readable = grants.may_read(&queued.message.topic);
                if !readable && queued.message.qos != QoS::AtMostOnce {
                    dropped.push(queued.seq);
                }
                readable
            });
            traffic.pending_bytes = traffic
                .pending
                .iter()
                .map(|q| q.message.payload.len())
                .sum();
            // Sent before, to the client that had the session then, and due again on
            // resumption: not to one that may not read it.
            traffic.inflight.retain(|entry| {
                let readable = !entry.awaiting_resend
                    || entry.stage == Awaiting::Comp
                    || grants.may_read(&entry.queued.message.topic);
                if !readable {
                    dropped.push(entry.queued.seq);
                }
                readable
            });
            traffic.resends = traffic
                .inflight
                .iter()
                .filter(|f| f.awaiting_resend)
                .count();
        }
        self.grants = Some(grants);
        self.settle();
        dropped
    }

    /// A connection resumed the session: every unacknowledged message is to be sent
    /// again, with its original packet id, before anything new (see `drain`).
    pub fn resend_inflight(&mut self) {
        if let Some(traffic) = self.traffic.as_deref_mut() {
            for entry in &mut traffic.inflight {
                entry.awaiting_resend = true;
            }
            traffic.resends = traffic.inflight.len();
        }
    }

    /// Moves messages onto the wire while `out` is below `high_water` and the in-flight
    /// window of `window` QoS 1/2 messages has room: first those to send again on a
    /// resumed session (PUBLISH with DUP set, or PUBREL where PUBREC already arrived),
    /// then pending ones. Messages that expired while waiting, and those too large for
    /// the client, are dropped: those of QoS 1/2 count as done. A stored session also
    /// learns which QoS 1/2 messages were sent first, with which packet id.
    pub fn drain(
        &mut self,
        window: usize,
        encoder: &mut Encoder,
        out: &mut BytesMut,
        high_water: usize,
    ) -> Drained {
        let mut drained = Drained::default();
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return drained;
        };
        let to = Outlet {
            window,
            encoder,
            out,
            high_water,
        };
        traffic.drain(to, &mut drained, self.stored);
        self.settle();
        drained
    }

    /// Takes the messages routed to this session through shared subscriptions that it
    /// has not started to deliver, so that another member of the group takes them over;
    /// also the QoS 1 ones in flight when `ending`.
    pub fn take_shared(&mut self, ending: bool) -> Vec<Queued> {
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        if ending {
            let (shared, kept) = std::mem::take(&mut traffic.inflight)
                .into_iter()
                // QoS 1 only: a QoS 2 message once sent goes to no one else
                // (MQTT-4.8.2-5 of 5.0).
                .partition(|f| f.queued.share.is_some() && f.stage == Awaiting::Ack);
            traffic.inflight = kept;
            traffic.resends = traffic
                .inflight
                .iter()
                .filter(|f| f.awaiting_resend)
                .count();
            taken.extend(shared.into_iter().map(|f: InFlight| f.queued));
        }
        let (shared, kept): (VecDeque<Queued>, VecDeque<Queued>) =
            std::mem::take(&mut traffic.pending)
                .into_iter()
                .partition(|q| q.share.is_some());
        traffic.pending_bytes = kept.iter().map(|q| q.message.payload.len()).sum();
        traffic.pending = kept;
        taken.extend(shared);
        self.settle();
        taken
    }

    pub fn puback(&mut self, pkid: u16) -> Acked {
        self.complete(pkid, Awaiting::Ack)
    }

    pub fn pubcomp(&mut self, pkid: u16) -> Acked {
        self.complete(pkid, Awaiting::Comp)
    }

    /// A PUBREC with a failure reason code: the message is done, not to be released.
    pub fn pubrec_refused(&mut self, pkid: u16) -> Acked {
        self.complete(pkid, Awaiting::Rec)
    }

    fn complete(&mut self, pkid: u16, stage: Awaiting) -> Acked {
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return Acked::Unknown;
        };
        let done = traffic.complete(pkid, stage);
        self.settle();
        done
    }

    /// PUBREC: the message now awaits PUBCOMP. A repeated PUBREC for a message that
    /// already does is answered again too, as PUBREL may be sent any number of times.
    pub fn pubrec(&mut self, pkid: u16) -> Acked {
        self.traffic
            .as_deref_mut()
            .map_or(Acked::Unknown, |t| t.pubrec(pkid))
    }

    /// Records an incoming QoS 2 packet id, unless `max` already await PUBREL.
    pub fn receive_qos2(&mut self, pkid: u16, max: usize) -> IncomingQos2 {
        let incoming = &mut self.traffic().incoming_qos2;
        if incoming.contains(&pkid) {
            IncomingQos2::Repeated
        } else if incoming.len() >= max {
            IncomingQos2::OverLimit
        } else {
            incoming.insert(pkid);
            IncomingQos2::Fresh
        }
    }

    /// PUBREL: forgets the QoS 2 packet id; false if it was not awaiting release.
    pub fn release_qos2(&mut self, pkid: u16) -> bool {
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return false;
        };
        let known = traffic.incoming_qos2.remove(&pkid);
        self.settle();
        known
    }
}

impl Traffic {
    fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.inflight.is_empty() && self.incoming_qos2.is_empty()
    }

    fn push(&mut self, queued: Queued) {
        self.pending_bytes += queued.message.payload.len();
        self.pending.push_back(queued);
    }

    fn pop(&mut self) -> Option<Queued> {
        let queued = self.pending.pop_front()?;
        self.pending_bytes -= queued.message.payload.len();
        Some(queued)
    }

    /// See `SessionState::drain`; `first_sends` is noted for stored sessions only.
    fn drain(&mut self, to: Outlet, drained: &mut Drained, note_first_sends: bool) {
        let Outlet {
            window,
            encoder,
            out,
            high_water,
        } = to;
        let now = Instant::now();
        if self.resends > 0 {
            self.resend(window, encoder, out, high_water, now, &mut drained.dropped);
        }
        while out.len() < high_water {
            let needs_slot = match self.pending.front() {
                None => break,
                Some(front) => front.message.qos != QoS::AtMostOnce,
            };
            if needs_slot && self.inflight.len() - self.resends >= window {
                break;
            }
            let Some(queued) = self.pop() else {
                break;
            };
            let stage = match queued.message.qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce => Some(Awaiting::Ack),
                QoS::ExactlyOnce => Some(Awaiting::Rec),
            };
            let pkid = if stage.is_some() { self.next_pkid() } else { 0 };
            let expired = queued.message.expired(now);
            if expired || !publish(encoder, &queued.message, pkid, false, now, out) {
                if expired {
                    drained.expired += 1;
                } else {
                    drained.too_large += 1;
                }
                if stage.is_some() {
                    drained.dropped.push(queued.seq);
                }
                continue;
            }
            drained.published[queued.message.qos as usize] += 1;
            (drained.first_age).get_or_insert_with(|| queued.message.published_at.age());
            if let Some(stage) = stage {
                self.last_pkid = pkid;
                if note_first_sends {
                    drained.sent.push(Sent {
                        seq: queued.seq,
                        pkid,
                        qos: queued.message.qos,
                    });
                }
                self.inflight.push_back(InFlight {
                    pkid,
                    stage,
                    queued,
                    awaiting_resend: false,
                });
            }
        }
    }

    /// The packet id after the last one used that no message in flight holds.
    fn next_pkid(&self) -> u16 {
        let mut id = self.last_pkid;
        loop {
            id = id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    fn position(&self, pkid: u16, stage: Awaiting) -> Option<usize> {
        self.inflight
            .iter()
            .position(|f| f.pkid == pkid && f.stage == stage)
    }

    /// Sends again what was in flight when the last connection ended, in order, as far
    /// as the window allows (PUBRELs do not wait for it: they are not PUBLISH packets).
    /// A message now too large for the client is dropped as if delivered.
    fn resend(
        &mut self,
        window: usize,
        encoder: &mut Encoder,
        out: &mut BytesMut,
        high_water: usize,
        now: Instant,
        dropped: &mut Vec<u64>,
    ) {
        let mut i = 0;
        while self.resends > 0 && i < self.inflight.len() && out.len() < high_water {
            let window_full = self.inflight.len() - self.resends >= window;
            let entry = &mut self.inflight[i];
            i += 1;
            if !entry.awaiting_resend {
                continue;
            }
            match entry.stage {
                Awaiting::Comp => encoder.encode(&Packet::PubRel(Ack::new(entry.pkid)), out),
                Awaiting::Ack | Awaiting::Rec if window_full => continue,
                Awaiting::Ack | Awaiting::Rec => {
                    if !publish(encoder, &entry.queued.message, entry.pkid, true, now, out) {
                        i -= 1;
                        if let Some(gone) = self.take(i) {
                            dropped.push(gone.queued.seq);
                        }
                        continue;
                    }
                }
            }
            entry.awaiting_resend = false;
            self.resends -= 1;
        }
    }

    /// Removes in-flight entry `i`.
    fn take(&mut self, i: usize) -> Option<InFlight> {
        let entry = self.inflight.remove(i)?;
        if entry.awaiting_resend {
            self.resends -= 1;
        }
        Some(entry)
    }

    fn complete(&mut self, pkid: u16, stage: Awaiting) -> Acked {
        let done = self.position(pkid, stage).and_then(|i| self.take(i));
        match done {
            Some(done) => Acked::Done(done.queued.seq),
            None => Acked::Unknown,
        }
    }

    fn pubrec(&mut self, pkid: u16) -> Acked {
        let found = self
            .position(pkid, Awaiting::Rec)
            .or_else(|| self.position(pkid, Awaiting::Comp));
        let Some(i) = found else {
            return Acked::Unknown;
        };
        let entry = &mut self.inflight[i];
        entry.stage = Awaiting::Comp;
        Acked::Released(entry.queued.seq)
    }
}

/// Writes `message` as a PUBLISH; false if it is too large for the client.
fn publish(
    encoder: &mut Encoder,
    message: &Message,
    pkid: u16,
    dup: bool,
    now: Instant,
    out: &mut BytesMut,
) -> bool {
    let header = PublishHeader {
        dup,
        qos: message.qos,
        retain: message.retain,
        pkid,
    };
    let properties = OutgoingProperties {
        properties: message.properties.as_deref(),
        now,
    };
    encoder.publish(
        header,
        message.topic.as_str(),
        &message.payload,
        &properties,
        out,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::topic::TopicName;

    fn message(qos: QoS) -> Message {
        Message {
            topic: TopicName::new(ByteString::from_static("t")).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: None,
            published_at: crate::message::Stamp::now(),
        }
    }

    fn connected_session() -> Arc<Session> {
        let session = Arc::new(Session::new(
            ByteString::from_static("c"),
            SessionExpiry::NONE,
        ));
        session.set_attachment(&mut session.lock(), Some(Attachment::new(1, None)));
        session
    }

    #[test]
    fn beyond_its_limits_a_queue_holds_qos1_for_connected_clients_and_drops_the_rest() {
        let limits = QueueLimits {
            messages: 1,
            bytes: 1024,
            full: QueueFull::PausePublishers,
        };
        let session = connected_session();
        let mut state = session.lock();
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), None, limits),
            Offer::Queued {
                congested: false,
                ..
            }
        ));
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), None, limits),
            Offer::Queued {
                congested: true,
                ..
            }
        ));
        // QoS 0 is dropped beyond the limits; QoS 1 is held up to twice them.
        assert_eq!(
            state.offer(message(QoS::AtMostOnce), None, limits),
            Offer::QueueFull
        );
        assert_eq!(
            state.offer(message(QoS::AtLeastOnce), None, limits),
            Offer::QueueFull
        );
        // Offline, nothing goes beyond the limits.
        state.attachment = None;
        let mut out = BytesMut::new();
        let mut encoder = Encoder::new(crate::protocol::ProtocolVersion::V311);
        state.drain(10, &mut encoder, &mut out, usize::MAX);
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), None, limits),
            Offer::Queued {
                congested: false,
                ..
            }
        ));
        assert_eq!(
            state.offer(message(QoS::AtLeastOnce), None, limits),
            Offer::QueueFull
        );
    }
}
