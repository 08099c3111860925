//! Keep alive for every connection, watched from one task.
//!
//! A timer per connection would be a tenth of an idle connection's memory. Instead each
//! connection writes its deadline into its session's attachment as packets arrive, and
//! one queue ordered by time holds an entry per connection with keep alive. An entry is
//! looked at when its time comes: the connection is kicked if its deadline has passed,
//! otherwise the entry goes back in at the deadline it has now.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::locks::lock;
use crate::session::{KeepAlive, Session};

/// How soon a connection whose packets are held back is looked at again.
const PAUSED_RECHECK: Duration = Duration::from_secs(1);
/// The longest the sweeper sleeps: new entries are never due sooner than this (the
/// shortest keep alive is 1 s, so 1.5 s to its deadline).
const LONGEST_SLEEP: Duration = Duration::from_secs(1);
/// Entries of ended connections stay until their time; the queue is swept of them
/// once it is this big and then each time it doubles.
const FIRST_COMPACTION: usize = 1024;

#[derive(Default)]
pub struct KeepAliveQueue {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    due: BinaryHeap<Reverse<Entry>>,
    compact_at: usize,
}

struct Entry {
    at: Instant,
    connection_id: u64,
    session: Weak<Session>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.connection_id) == (other.at, other.connection_id)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.connection_id).cmp(&(other.at, other.connection_id))
    }
}

impl KeepAliveQueue {
    /// Watches connection `connection_id` on `session`, first due at `at`.
    pub fn watch(&self, session: &Arc<Session>, connection_id: u64, at: Instant) {
        let mut queue = lock(&self.inner);
        queue.due.push(Reverse(Entry {
            at,
            connection_id,
            session: Arc::downgrade(session),
        }));
        if queue.due.len() >= queue.compact_at.max(FIRST_COMPACTION) {
            queue.compact();
        }
    }

    /// Kicks every connection whose keep alive ran out by `now`; returns when to sweep
    /// next.
    pub fn sweep(&self, now: Instant) -> Instant {
        let mut queue = lock(&self.inner);
        while let Some(Reverse(entry)) = queue.due.peek() {
            if entry.at > now {
                break;
            }
            let Some(Reverse(entry)) = queue.due.pop() else {
                break;
            };
            let Some(session) = entry.session.upgrade() else {
                continue;
            };
            let state = session
                .lock()
                .keep_alive(entry.connection_id, now, now + PAUSED_RECHECK);
            if let KeepAlive::Until(at) = state {
                queue.due.push(Reverse(Entry { at, ..entry }));
            }
        }
        let next = now + LONGEST_SLEEP;
        queue.due.peek().map_or(next, |Reverse(e)| e.at.min(next))
    }

    /// Sweeps until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = self.sweep(Instant::now());
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

impl Queue {
    /// Drops the entries of connections that have ended.
    fn compact(&mut self) {
        let entries = std::mem::take(&mut self.due).into_vec();
        self.due = entries
            .into_iter()
            .filter(|Reverse(entry)| {
                entry
                    .session
                    .upgrade()
                    .is_some_and(|session| session.lock().attached(entry.connection_id).is_some())
            })
            .collect();
        self.compact_at = self.due.len() * 2;
    }
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;

    use super::*;
    use crate::session::{Attachment, SessionExpiry};

    fn attached(connection_id: u64, deadline: Instant) -> Arc<Session> {
        let session = Arc::new(Session::new(
            ByteString::from_static("c"),
            SessionExpiry::NONE,
        ));
        let attachment = Attachment::new(connection_id, Some(deadline));
        session.set_attachment(&mut session.lock(), Some(attachment));
        session
    }

    #[test]
    fn a_connection_is_kicked_once_its_deadline_passes_and_not_before() {
        let queue = KeepAliveQueue::default();
        let t0 = Instant::now();
        let session = attached(7, t0 + Duration::from_secs(3));
        queue.watch(&session, 7, t0 + Duration::from_secs(1));
        // Looked at after 1 s: the deadline moved on, so it goes back in for then.
        assert_eq!(
            queue.sweep(t0 + Duration::from_secs(1)),
            t0 + Duration::from_secs(2)
        );
        let waker = std::task::Waker::noop();
        assert_eq!(session.lock().poll_signal(7, waker), Ok(false));
        assert_eq!(
            queue.sweep(t0 + Duration::from_secs(3)),
            t0 + Duration::from_secs(4)
        );
        assert_eq!(
            session.lock().poll_signal(7, waker),
            Err(crate::session::Kick::KeepAliveExpired)
        );
        assert!(lock(&queue.inner).due.is_empty());
    }

    #[test]
    fn entries_of_ended_connections_do_not_pile_up() {
        let queue = KeepAliveQueue::default();
        let at = Instant::now() + Duration::from_secs(3600);
        let live = attached(1, at);
        queue.watch(&live, 1, at);
        for id in 2..(FIRST_COMPACTION as u64 * 4) {
            let ended = attached(id, at);
            queue.watch(&ended, id, at);
        }
        assert!(lock(&queue.inner).due.len() <= FIRST_COMPACTION);
    }
}
