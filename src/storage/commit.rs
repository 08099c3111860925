//! Group commit: changes recorded by any connection gather in one pending list; the
//! writer takes everything gathered while it was busy, writes it as one batch, flushes
//! once, and then tells every waiter how far the flush reached.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{Change, Durable, StorageError, Ticket};
use crate::locks::lock;

/// Changes waiting for the writer beyond this make recorders wait: the writer sets the
/// pace when the disk cannot keep up, and memory stays bounded.
const MAX_PENDING: usize = 100_000;

pub struct GroupCommit {
    pending: Mutex<Pending>,
    /// Changes arrived, an atomic group ended, a flush was asked for, or closing.
    arrived: Condvar,
    /// The writer took changes: recorders waiting for room may go on.
    room: Condvar,
    durable: watch::Sender<Mark>,
}

struct Pending {
    changes: Vec<Change>,
    /// The ticket of the last change recorded; `changes` end with it.
    last: u64,
    /// Open atomic groups, by the ticket they started after, with how many did.
    open: BTreeMap<u64, usize>,
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

/// What the writer is to do next.
pub struct Batch {
    pub changes: Vec<Change>,
    /// The ticket of the last change in it.
    pub upto: u64,
    /// Flush after writing, whatever the sync mode.
    pub flush: bool,
}

impl GroupCommit {
    pub fn new() -> GroupCommit {
        GroupCommit {
            pending: Mutex::new(Pending {
                changes: Vec::new(),
                last: 0,
                open: BTreeMap::new(),
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
        let mut pending = lock(&self.pending);
        // Not while an atomic group is open: the writer may be waiting for it to end.
        while pending.changes.len() >= MAX_PENDING
            && pending.open.is_empty()
            && !pending.failed
            && !pending.closing
        {
            pending = wait(&self.room, pending);
        }
        pending.last += 1;
        if !pending.failed {
            pending.changes.push(change);
        }
        let ticket = Ticket(pending.last);
        drop(pending);
        self.arrived.notify_one();
        ticket
    }

    /// Opens an atomic group: the writer takes nothing recorded from now on until
    /// [`GroupCommit::end_atomic`] with what this returns.
    pub fn begin_atomic(&self) -> u64 {
        let mut pending = lock(&self.pending);
        let start = pending.last;
        *pending.open.entry(start).or_default() += 1;
        start
    }

    pub fn end_atomic(&self, start: u64) {
        let mut pending = lock(&self.pending);
        if let Some(count) = pending.open.get_mut(&start) {
            *count -= 1;
            if *count == 0 {
                pending.open.remove(&start);
            }
        }
        drop(pending);
        self.arrived.notify_one();
    }

    /// For the writer: waits for work and takes it — every change recorded before the
    /// oldest open atomic group began. `None` once closing with nothing left.
    pub fn take(&self) -> Option<Batch> {
        let mut pending = lock(&self.pending);
        loop {
            let first = pending.last - pending.changes.len() as u64;
            let cut = pending.open.keys().next().copied().unwrap_or(pending.last);
            let n = (cut.saturating_sub(first) as usize).min(pending.changes.len());
            let flush = std::mem::take(&mut pending.flush_wanted);
            if n > 0 || flush {
                let rest = pending.changes.split_off(n);
                let changes = std::mem::replace(&mut pending.changes, rest);
                drop(pending);
                self.room.notify_all();
                return Some(Batch {
                    changes,
                    upto: first + n as u64,
                    flush,
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
