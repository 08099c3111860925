//! Group commit: changes recorded by any connection gather in one pending list; the
//! writer takes everything gathered while it was busy, writes it in batches, flushes
//! once, and then tells every waiter how far the flush reached.
//!
//! A queued message delivered before the writer took it never reaches the disk: its
//! record is cancelled in the pending list.

use std::cell::Cell;
use std::collections::HashMap;

use bytestring::ByteString;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{Change, Durable, StorageError, Ticket};
use crate::locks::lock;

/// Changes waiting for the writer beyond this make recorders wait: the writer sets the
/// pace when the disk cannot keep up, and memory stays bounded.
const MAX_PENDING: usize = 100_000;
/// The most changes written as one batch (unless an atomic group is larger): sled
/// 0.34 keeps memory and disk it never gives back for batches of a thousand writes
/// and more (measured: 4 KiB a write), not for batches of a few hundred.
const MAX_BATCH: usize = 128;

pub struct GroupCommit {
    pending: Mutex<Pending>,
    /// Changes arrived, an atomic group ended, a flush was asked for, or closing.
    arrived: Condvar,
    /// The writer took changes: recorders waiting for room, and atomic groups waiting
    /// at the gate, may go on.
    room: Condvar,
    durable: watch::Sender<Mark>,
}

struct Pending {
    /// In ticket order; `None` where a change was cancelled.
    changes: Vec<Option<Change>>,
    /// Queued messages in `changes`, by session and sequence number.
    queued: HashMap<(ByteString, u64), QueuedAt>,
    /// The ticket of the last change recorded; `changes` end with it.
    last: u64,
    /// Atomic groups with changes not yet taken, or still open, by id.
    groups: HashMap<u64, Group>,
    next_group: u64,
    /// The writer waits for open groups to end: no new one may begin meanwhile, or
    /// groups overlapping one another could hold it off for ever.
    gate: bool,
    /// Someone waits for a flush of everything recorded.
    flush_wanted: bool,
    closing: bool,
    failed: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// Everything up to this ticket is durable.
    upto: u64,
    failed: bool,
}

/// The changes of one atomic group: a batch never ends between its first and last.
struct Group {
    /// Its first and last change's tickets, once it has one.
    span: Option<(u64, u64)>,
    open: bool,
}

thread_local! {
    /// The atomic group this thread has open: what it records belongs to it.
    static CURRENT_GROUP: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Where a pending queued message's records are in the pending list.
struct QueuedAt {
    queued: u64,
    /// Its latest in-flight record, if pending too.
    in_flight: Option<u64>,
}

/// What the writer is to do next.
pub struct Batch {
    pub changes: Vec<Change>,
    /// The ticket of the last change in it.
    pub upto: u64,
    /// Flush after writing, whatever the sync mode.
    pub flush: bool,
    /// More changes are ready to be taken at once: flushing can wait for them.
    pub more: bool,
}

impl Pending {
    /// Cancels what `change` undoes, if it is still pending: a delivered message's
    /// queued and in-flight records. Returns whether `change` itself is needed no more.
    fn cancels(&mut self, change: &Change) -> bool {
        let Change::Delivered { client_id, seq } = change else {
            return false;
        };
        let Some(at) = self.queued.remove(&(client_id.clone(), *seq)) else {
            return false;
        };
        self.cancel(at.queued);
        if let Some(in_flight) = at.in_flight {
            self.cancel(in_flight);
        }
        true
    }

    /// Notes where a queued message's records are, for `cancels`.
    fn index(&mut self, change: &Change) {
        let ticket = self.last;
        match change {
            Change::Queued { client_id, seq, .. } => {
                let at = QueuedAt {
                    queued: ticket,
                    in_flight: None,
                };
                self.queued.insert((client_id.clone(), *seq), at);
            }
            Change::InFlight { client_id, seq, .. } => {
                let superseded = self
                    .queued
                    .get_mut(&(client_id.clone(), *seq))
                    .and_then(|at| at.in_flight.replace(ticket));
                if let Some(superseded) = superseded {
                    self.cancel(superseded);
                }
            }
            _ => {}
        }
    }

    /// Drops the pending change with `ticket`.
    fn cancel(&mut self, ticket: u64) {
        let first = self.last - self.changes.len() as u64;
        if let Some(slot) = ticket
            .checked_sub(first + 1)
            .and_then(|i| self.changes.get_mut(i as usize))
        {
            *slot = None;
        }
    }

    /// The last ticket the next batch, starting after `first`, may take: at most
    /// `MAX_BATCH` changes, but an ended group is taken whole, and nothing of an open
    /// one.
    fn batch_end(&self, first: u64) -> u64 {
        let spans = |open: bool| {
            self.groups
                .values()
                .filter(move |group| group.open == open)
                .filter_map(|group| group.span)
        };
        let mut cut = self.last.min(first + MAX_BATCH as u64);
        // Forward past every ended group the cut falls in (they may overlap).
        while let Some((_, end)) = spans(false).find(|&(start, end)| start <= cut && cut < end) {
            cut = end;
        }
        // Back before the first change of every open group.
        if let Some(start) = spans(true).map(|(start, _)| start).min() {
            if cut >= start {
                cut = start - 1;
                while let Some((start, _)) =
                    spans(false).find(|&(start, end)| start <= cut && cut < end)
                {
                    cut = start - 1;
                }
            }
        }
        cut.max(first)
    }
}

impl GroupCommit {
    pub fn new() -> GroupCommit {
        GroupCommit {
            pending: Mutex::new(Pending {
                changes: Vec::new(),
                queued: HashMap::new(),
                last: 0,
                groups: HashMap::new(),
                next_group: 0,
                gate: false,
                flush_wanted: false,
                closing: false,
                failed: false,
            }),
            arrived: Condvar::new(),
            room: Condvar::new(),
            durable: watch::Sender::new(Mark::default()),
        }
    }

    pub fn record(&self, change: Change) -> Ticket {
        let group = CURRENT_GROUP.get();
        let mut pending = lock(&self.pending);
        // Not inside an atomic group, nor while the writer waits for groups to end:
        // their owners may need what this recorder holds.
        while pending.changes.len() >= MAX_PENDING
            && group.is_none()
            && !pending.gate
            && !pending.failed
            && !pending.closing
        {
            pending = wait(&self.room, pending);
        }
        if pending.failed {
            return Ticket(pending.last);
        }
        if pending.cancels(&change) {
            return Ticket(pending.last);
        }
        pending.last += 1;
        let ticket = pending.last;
        if let Some(group) = group.and_then(|id| pending.groups.get_mut(&id)) {
            let first = group.span.map_or(ticket, |(first, _)| first);
            group.span = Some((first, ticket));
        }
        pending.index(&change);
        pending.changes.push(Some(change));
        let ticket = Ticket(ticket);
        drop(pending);
        self.arrived.notify_one();
        ticket
    }

    /// Opens an atomic group on this thread: what it records until
    /// [`GroupCommit::end_atomic`] is written in one batch. Waits while the writer waits
    /// for groups to end.
    pub fn begin_atomic(&self) -> u64 {
        let mut pending = lock(&self.pending);
        while pending.gate && !pending.closing {
            pending = wait(&self.room, pending);
        }
        let id = pending.next_group;
        pending.next_group += 1;
        let group = Group {
            span: None,
            open: true,
        };
        pending.groups.insert(id, group);
        CURRENT_GROUP.set(Some(id));
        id
    }

    pub fn end_atomic(&self, id: u64) {
        CURRENT_GROUP.set(None);
        let mut pending = lock(&self.pending);
        match pending.groups.get_mut(&id) {
            Some(group) if group.span.is_some() => group.open = false,
            _ => {
                pending.groups.remove(&id);
            }
        }
        drop(pending);
        self.arrived.notify_one();
    }

    /// For the writer: waits for work and takes the next batch — changes recorded
    /// before the oldest open atomic group began, at most `MAX_BATCH` of them but for
    /// an atomic group, which is taken whole. `None` once closing with nothing left.
    pub fn take(&self) -> Option<Batch> {
        let mut pending = lock(&self.pending);
        loop {
            let first = pending.last - pending.changes.len() as u64;
            let cut = pending.batch_end(first);
            let n = (cut - first) as usize;
            let more = n < pending.changes.len();
            // Held up by open groups: let them end, and no new one begin.
            let gate = n == 0 && more;
            if gate && !pending.gate {
                self.room.notify_all();
            }
            pending.gate = gate;
            let flush = !more && std::mem::take(&mut pending.flush_wanted);
            if n > 0 || flush {
                let rest = pending.changes.split_off(n);
                let taken = std::mem::replace(&mut pending.changes, rest);
                let changes: Vec<Change> = taken.into_iter().flatten().collect();
                for change in &changes {
                    if let Change::Queued { client_id, seq, .. } = change {
                        pending.queued.remove(&(client_id.clone(), *seq));
                    }
                }
                pending
                    .groups
                    .retain(|_, group| group.open || group.span.is_some_and(|(_, end)| end > cut));
                drop(pending);
                self.room.notify_all();
                return Some(Batch {
                    changes,
                    upto: cut.max(first),
                    flush,
                    more,
                });
            }
            if pending.closing && pending.changes.is_empty() {
                return None;
            }
            pending = wait(&self.arrived, pending);
        }
    }

    /// Everything up to `upto` is durable.
    pub fn mark_durable(&self, upto: u64) {
        self.durable
            .send_modify(|mark| mark.upto = mark.upto.max(upto));
    }

    /// The storage failed: nothing more is written, and every waiter is told.
    pub fn mark_failed(&self) {
        let mut pending = lock(&self.pending);
        pending.failed = true;
        pending.changes = Vec::new();
        pending.queued = HashMap::new();
        drop(pending);
        self.room.notify_all();
        self.durable.send_modify(|mark| mark.failed = true);
    }

    /// Resolves once `ticket` is durable.
    pub fn durable(&self, ticket: Ticket) -> Durable {
        let mut marks = self.durable.subscribe();
        Box::pin(async move {
            let reached = marks
                .wait_for(|mark| mark.failed || mark.upto >= ticket.0)
                .await
                .map(|mark| !mark.failed);
            match reached {
                Ok(true) => Ok(()),
                _ => Err(StorageError::Failed),
            }
        })
    }

    /// Asks the writer to flush everything recorded so far; returns the ticket that
    /// reaches.
    pub fn request_flush(&self) -> Ticket {
        let mut pending = lock(&self.pending);
        pending.flush_wanted = true;
        let last = Ticket(pending.last);
        drop(pending);
        self.arrived.notify_one();
        last
    }

    /// The writer is to finish what is pending and stop.
    pub fn close(&self) {
        lock(&self.pending).closing = true;
        self.arrived.notify_all();
        self.room.notify_all();
    }
}

fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seq: u64) -> Change {
        Change::Queued {
            client_id: ByteString::from_static("c"),
            seq,
            message: crate::message::Message {
                topic: crate::topic::TopicName::new(ByteString::from_static("t")).unwrap(),
                payload: bytes::Bytes::from_static(b"x"),
                qos: crate::protocol::QoS::AtLeastOnce,
                retain: false,
                properties: None,
                published_at: crate::message::Stamp::now(),
            },
        }
    }

    fn delivered(seq: u64) -> Change {
        Change::Delivered {
            client_id: ByteString::from_static("c"),
            seq,
        }
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        let seq = |change: &Change| match change {
            Change::Queued { seq, .. } | Change::Delivered { seq, .. } => *seq,
            other => panic!("unexpected {other:?}"),
        };
        batch.changes.iter().map(seq).collect()
    }

    #[test]
    fn a_message_delivered_before_the_writer_took_it_is_never_written() {
        let commit = GroupCommit::new();
        commit.record(queued(1));
        commit.record(queued(2));
        commit.record(Change::InFlight {
            client_id: ByteString::from_static("c"),
            seq: 1,
            pkid: 7,
            released: false,
        });
        commit.record(delivered(1));
        let batch = commit.take().unwrap();
        assert_eq!(seqs(&batch), [2]);
        // Taken, it is on its way to disk: its delivery has to be written too.
        commit.record(delivered(2));
        assert_eq!(seqs(&commit.take().unwrap()), [2]);
    }

    #[test]
    fn batches_end_outside_atomic_groups_and_before_open_ones() {
        let commit = GroupCommit::new();
        commit.record(queued(0));
        let group = commit.begin_atomic();
        for seq in 1..=MAX_BATCH as u64 + 10 {
            commit.record(queued(seq));
        }
        commit.end_atomic(group);
        commit.record(queued(500));
        // Another thread's group, open.
        let other = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let open = commit.begin_atomic();
                    commit.record(queued(1000));
                    open
                })
                .join()
                .unwrap()
        });
        // The ended group is taken whole, larger than a batch; then what follows it up
        // to the open group, which waits until it ends.
        let batch = commit.take().unwrap();
        assert_eq!(batch.changes.len(), MAX_BATCH + 11);
        assert!(batch.more);
        assert_eq!(seqs(&commit.take().unwrap()), [500]);
        commit.end_atomic(other);
        assert_eq!(seqs(&commit.take().unwrap()), [1000]);
    }
}
