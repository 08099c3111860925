//! Session state: what the broker keeps for one client id, connected or not.
//!
//! A session outlives its connections. The connection task only pumps bytes: it drains
//! the session's queue onto the wire and feeds acknowledgements back, so a client that
//! reconnects (or takes its session over from another connection) continues exactly
//! where the last connection stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::sync::{oneshot, Notify};

use crate::locks;
use crate::message::Message;
use crate::protocol::{encode, encode_publish, Packet, PublishHeader, QoS};
use crate::topic::TopicFilter;

pub struct Session {
    pub client_id: ByteString,
    state: Mutex<SessionState>,
    /// Signals the attached connection that there is something to send.
    wake: Notify,
    /// Signals paused publishers that the queue may have room again.
    room: Notify,
}

/// The connection currently attached to a session.
pub struct Attachment {
    pub connection_id: u64,
    /// Ends the connection: fired (and taken) when another connection takes the session
    /// over or the server shuts down.
    pub kick: Option<oneshot::Sender<Kick>>,
}

/// Why a connection is ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    TakenOver,
    Shutdown,
}

impl Attachment {
    /// Ends the attached connection for `why`, if it was not already told to end.
    pub fn kick(&mut self, why: Kick) {
        if let Some(kick) = self.kick.take() {
            // The connection may already be gone; then nobody listens.
            let _ = kick.send(why);
        }
    }
}

/// A message waiting to be sent, with its position in the session's sequence.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub message: Message,
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
}

#[derive(Default)]
pub struct SessionState {
    /// Kept after disconnect (clean session 0).
    pub persistent: bool,
    /// The session has ended (discarded by a clean-session connection or a takeover);
    /// a connection that still holds it must not add subscriptions or record changes.
    pub closed: bool,
    pub attachment: Option<Attachment>,
    pub subscriptions: HashMap<TopicFilter, QoS>,
    /// Messages not yet sent, in delivery order.
    pending: VecDeque<Queued>,
    /// Payload bytes in `pending`.
    pending_bytes: usize,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in the order they were sent.
    inflight: VecDeque<InFlight>,
    /// A message went beyond the queue's limits since publishers were last told of
    /// room: someone may be paused on this session.
    congested: bool,
    /// QoS 2 packet ids received and acknowledged with PUBREC but not yet released.
    incoming_qos2: HashSet<u16>,
    last_pkid: u16,
    next_seq: u64,
}

/// How much a session's queue of unsent messages may hold.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub messages: usize,
    /// Payload bytes.
    pub bytes: usize,
}

/// What happened to a message offered to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued under this sequence number; `congested` when the queue is now beyond its
    /// limits (a connected client's QoS 1/2 message, never dropped for that: its
    /// publisher is to pause until the queue has room).
    Queued { seq: u64, congested: bool },
    /// The session's queue is full.
    QueueFull,
    /// The session is offline and does not keep messages of this QoS.
    NotKept,
}

/// The outcome of an acknowledgement from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Acked {
    /// The message with this sequence number is fully delivered.
    Done(u64),
    /// PUBREC moved a QoS 2 message on; PUBREL is due.
    Released,
    /// No message in flight matches the acknowledgement.
    Unknown,
}

impl Session {
    pub fn new(client_id: ByteString, persistent: bool) -> Session {
        Session {
            client_id,
            state: Mutex::new(SessionState {
                persistent,
                ..SessionState::default()
            }),
            wake: Notify::new(),
            room: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        locks::lock(&self.state)
    }

    /// Tells the attached connection, if any, that there is something to send.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Returns once the queue has room within `limits` (see `SessionState::has_room`).
    pub async fn room(&self, limits: QueueLimits) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a signal in between is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.has_room(limits) {
                    return;
                }
                // However the queue got full, the drain that makes room must signal.
                state.congested = true;
            }
            notified.await;
        }
    }

    /// Tells paused publishers to look at the queue again.
    pub fn room_made(&self) {
        self.room.notify_waiters();
    }
}

impl SessionState {
    pub fn is_connected(&self) -> bool {
        self.attachment.is_some()
    }

    /// Queues `message` (already at its delivery QoS) within the queue's limits. An
    /// offline session keeps only QoS 1 and 2. A connected client's QoS 1/2 message is
    /// queued even beyond the limits, up to twice them, and reported as congesting: its
    /// publisher pauses instead, so that nothing acknowledged to it is dropped.
    pub fn offer(&mut self, message: Message, limits: QueueLimits) -> Offer {
        if !self.is_connected() && message.qos == QoS::AtMostOnce {
            return Offer::NotKept;
        }
        let size = message.payload.len();
        let over = !self.within(limits, size);
        if over {
            let margin = QueueLimits {
                messages: limits.messages.saturating_mul(2),
                bytes: limits.bytes.saturating_mul(2),
            };
            let held_back = self.is_connected() && message.qos != QoS::AtMostOnce;
            if !held_back || !self.within(margin, size) {
                return Offer::QueueFull;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.push(Queued { seq, message });
        self.congested |= over;
        Offer::Queued {
            seq,
            congested: over,
        }
    }

    /// Whether one more message of `size` payload bytes fits in `limits`.
    fn within(&self, limits: QueueLimits, size: usize) -> bool {
        self.pending.len() < limits.messages && self.pending_bytes + size <= limits.bytes
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

    /// Puts back a message loaded from storage, keeping its sequence number.
    pub fn restore(&mut self, queued: Queued) {
        self.next_seq = self.next_seq.max(queued.seq + 1);
        self.push(queued);
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

    /// Encodes every unacknowledged message again for a resumed session: PUBLISH with
    /// DUP set, or PUBREL where PUBREC already arrived, with the original packet ids.
    pub fn resend_inflight(&self, out: &mut BytesMut) {
        for entry in &self.inflight {
            match entry.stage {
                Awaiting::Comp => encode(&Packet::PubRel(entry.pkid), out),
                Awaiting::Ack | Awaiting::Rec => {
                    publish(&entry.queued.message, entry.pkid, true, out)
                }
            }
        }
    }

    /// Moves pending messages onto the wire while `out` is below `high_water` and the
    /// in-flight window of `window` QoS 1/2 messages has room.
    pub fn drain(&mut self, window: usize, out: &mut BytesMut, high_water: usize) {
        while out.len() < high_water {
            let needs_slot = match self.pending.front() {
                None => break,
                Some(front) => front.message.qos != QoS::AtMostOnce,
            };
            if needs_slot && self.inflight.len() >= window {
                break;
            }
            let Some(queued) = self.pop() else {
                break;
            };
            let stage = match queued.message.qos {
                QoS::AtMostOnce => {
                    publish(&queued.message, 0, false, out);
                    continue;
                }
                QoS::AtLeastOnce => Awaiting::Ack,
                QoS::ExactlyOnce => Awaiting::Rec,
            };
            let pkid = self.allocate_pkid();
            publish(&queued.message, pkid, false, out);
            self.inflight.push_back(InFlight {
                pkid,
                stage,
                queued,
            });
        }
    }

    /// A packet id not used by any message in flight.
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            let id = self.last_pkid;
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

    pub fn puback(&mut self, pkid: u16) -> Acked {
        self.complete(pkid, Awaiting::Ack)
    }

    pub fn pubcomp(&mut self, pkid: u16) -> Acked {
        self.complete(pkid, Awaiting::Comp)
    }

    fn complete(&mut self, pkid: u16, stage: Awaiting) -> Acked {
        let done = self
            .position(pkid, stage)
            .and_then(|i| self.inflight.remove(i));
        match done {
            Some(done) => Acked::Done(done.queued.seq),
            None => Acked::Unknown,
        }
    }

    /// PUBREC: the message now awaits PUBCOMP. A repeated PUBREC for a message that
    /// already does is answered again too, as PUBREL may be sent any number of times.
    pub fn pubrec(&mut self, pkid: u16) -> Acked {
        if let Some(i) = self.position(pkid, Awaiting::Rec) {
            self.inflight[i].stage = Awaiting::Comp;
            return Acked::Released;
        }
        match self.position(pkid, Awaiting::Comp) {
            Some(_) => Acked::Released,
            None => Acked::Unknown,
        }
    }

    /// Records an incoming QoS 2 packet id; false if it was already awaiting PUBREL,
    /// in which case the message must not be delivered again.
    pub fn receive_qos2(&mut self, pkid: u16) -> bool {
        self.incoming_qos2.insert(pkid)
    }

    pub fn release_qos2(&mut self, pkid: u16) {
        self.incoming_qos2.remove(&pkid);
    }
}

fn publish(message: &Message, pkid: u16, dup: bool, out: &mut BytesMut) {
    let header = PublishHeader {
        dup,
        qos: message.qos,
        retain: message.retain,
        pkid,
    };
    encode_publish(header, message.topic.as_str(), &message.payload, out);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::topic::TopicName;

    fn message(qos: QoS) -> Message {
        Message {
            topic: TopicName::new(ByteString::from_static("t")).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
        }
    }

    fn connected_session() -> Arc<Session> {
        let session = Arc::new(Session::new(ByteString::from_static("c"), false));
        let (kick, _) = oneshot::channel();
        session.lock().attachment = Some(Attachment {
            connection_id: 1,
            kick: Some(kick),
        });
        session
    }

    /// A queue filled exactly to its limit (no offer went beyond it) still wakes a
    /// publisher that paused on it once a drain makes room.
    #[tokio::test]
    async fn a_paused_publisher_is_woken_by_the_drain_that_makes_room() {
        let limits = QueueLimits {
            messages: 2,
            bytes: 1024,
        };
        let session = connected_session();
        for _ in 0..2 {
            let offer = session.lock().offer(message(QoS::AtLeastOnce), limits);
            assert!(matches!(
                offer,
                Offer::Queued {
                    congested: false,
                    ..
                }
            ));
        }
        let waiter = tokio::spawn({
            let session = session.clone();
            async move { session.room(limits).await }
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
        session.room_made();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the paused publisher is woken")
            .unwrap();
    }

    #[test]
    fn beyond_its_limits_a_queue_holds_qos1_for_connected_clients_and_drops_the_rest() {
        let limits = QueueLimits {
            messages: 1,
            bytes: 1024,
        };
        let session = connected_session();
        let mut state = session.lock();
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), limits),
            Offer::Queued {
                congested: false,
                ..
            }
        ));
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), limits),
            Offer::Queued {
                congested: true,
                ..
            }
        ));
        // QoS 0 is dropped beyond the limits; QoS 1 is held up to twice them.
        assert_eq!(
            state.offer(message(QoS::AtMostOnce), limits),
            Offer::QueueFull
        );
        assert_eq!(
            state.offer(message(QoS::AtLeastOnce), limits),
            Offer::QueueFull
        );
        // Offline, nothing goes beyond the limits.
        state.attachment = None;
        let mut out = BytesMut::new();
        state.drain(10, &mut out, usize::MAX);
        assert!(matches!(
            state.offer(message(QoS::AtLeastOnce), limits),
            Offer::Queued {
                congested: false,
                ..
            }
        ));
        assert_eq!(
            state.offer(message(QoS::AtLeastOnce), limits),
            Offer::QueueFull
        );
    }
}
