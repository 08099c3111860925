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
}

/// The connection currently attached to a session.
pub struct Attachment {
    pub connection_id: u64,
    /// Fired when another connection takes the session over.
    pub kick: oneshot::Sender<()>,
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
    /// Queued under this sequence number.
    Queued(u64),
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
}

impl SessionState {
    pub fn is_connected(&self) -> bool {
        self.attachment.is_some()
    }

    /// Queues `message` (already at its delivery QoS) unless that would exceed the
    /// queue's limits. An offline session keeps only QoS 1 and 2.
    pub fn offer(&mut self, message: Message, limits: QueueLimits) -> Offer {
        if !self.is_connected() && message.qos == QoS::AtMostOnce {
            return Offer::NotKept;
        }
        if self.pending.len() >= limits.messages
            || self.pending_bytes + message.payload.len() > limits.bytes
        {
            return Offer::QueueFull;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.push(Queued { seq, message });
        Offer::Queued(seq)
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
