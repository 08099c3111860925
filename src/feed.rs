//! The feed of published messages for web readers (SSE, long polling, the iframe
//! stream): every message gets the next event id and a place in a bounded replay log,
//! and is handed to the readers whose filters match it.
//!
//! Appending and handing out happen under one lock, and a reader registers under it
//! too, taking its replay from the log at that moment: every event a reader is due
//! reaches it exactly once and in id order, whether from the replay or live, with no
//! gap between the two however fast messages arrive.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::acl::Permit;
use crate::config::HttpConfig;
use crate::event_ids::EventIds;
use crate::level_tree::{collect_matching, Node};
use crate::locks::lock;
use crate::message::Message;
use crate::storage::{Change, Storage};
use crate::topic::{TopicFilter, TopicName};

/// Bytes counted for an event beyond its topic and payload.
const EVENT_OVERHEAD: usize = 64;

/// Most events written to storage as one change.
const PERSIST_BATCH: usize = 100;

/// A published message with its event id.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    /// An exact-size copy: the log may keep it for long.
    pub message: Message,
    /// The message as SSE data, rendered once for every reader.
    rendered: OnceLock<Bytes>,
}

impl Event {
    pub fn new(id: u64, message: Message) -> Event {
        Event {
            id,
            message,
            rendered: OnceLock::new(),
        }
    }

    /// `render`'s output, computed by the first reader that asks.
    pub fn rendered(&self, render: impl FnOnce(&Message) -> Bytes) -> Bytes {
        self.rendered.get_or_init(|| render(&self.message)).clone()
    }

    /// What the event holds, as the log's and the readers' limits count it.
    fn size(&self) -> usize {
        let message = &self.message;
        let properties = message.properties.as_deref().map_or(0, |p| {
            let text = |s: &Option<bytestring::ByteString>| s.as_ref().map_or(0, |s| s.len());
            text(&p.content_type)
                + text(&p.response_topic)
                + p.correlation_data.as_ref().map_or(0, |d| d.len())
                + p.user_properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        });
        message.topic.as_str().len() + message.payload.len() + properties + EVENT_OVERHEAD
    }
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// With the next message published.
    Now,
    /// After the event with this id (`Last-Event-ID`).
    After(u64),
}

/// Events a resuming reader asked for that the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The id the reader resumed after.
    pub from: u64,
    /// The oldest id the log still reaches back to.
    pub to: u64,
}

/// The feed has as many readers as `http.max_readers` allows.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{0} web readers already, the most http.max_readers allows")]
pub struct Full(pub usize);

/// A reader as registered: its replay and its live feed.
pub struct Subscribed {
    pub reader: ReaderHandle,
    /// The id of the last event given out before the reader registered: live events
    /// all have larger ones.
    pub head: u64,
    pub gap: Option<Gap>,
    /// Matching events after the reader's `Since`, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Whatever the caller took while the feed stood still (the retained messages).
    pub snapshot: Vec<Message>,
}

pub struct Feed {
    state: Mutex<FeedState>,
    /// Held while the log is written to storage.
    persisting: Mutex<()>,
    /// `reader_count`, readable without the lock.
    readers: AtomicUsize,
    ids: EventIds,
    max_messages: usize,
    max_bytes: usize,
    reader_bytes: usize,
    max_readers: usize,
}

/// An event in the log, with what the log's upkeep reads of it kept inline: the oldest
/// events are cold in the cache, and one is let go for each published.
struct Logged {
    id: u64,
    size: usize,
    event: Arc<Event>,
}

struct FeedState {
    log: VecDeque<Logged>,
    log_bytes: usize,
    /// Every id from this one on that was given out is still in the log.
    complete_from: u64,
    /// The last event handed to storage.
    persisted: u64,
    /// Storage was told the log holds no ids below this.
    trimmed: u64,
    /// The readers, at the node of each of their filters.
    readers: Node<Vec<Arc<Reader>>>,
    reader_count: usize,
    next_reader: u64,
}

impl Feed {
    /// A feed continuing the event id sequence with `ids`, its log holding the newest
    /// of `log` that fit. `sealed` is the first id not given out when the broker last
    /// stopped cleanly (0 if it did not): unless it follows the log's last id, events
    /// after that one may have been lost, and a reader resuming from before them is
    /// told of a gap.
    pub fn restore(
        ids: EventIds,
        config: &HttpConfig,
        log: BTreeMap<u64, Message>,
        sealed: u64,
    ) -> Feed {
        let first = ids.upcoming();
        let mut state = FeedState {
            log: VecDeque::new(),
            log_bytes: 0,
            complete_from: first,
            readers: Node::default(),
            reader_count: 0,
            next_reader: 0,
            persisted: first.saturating_sub(1),
            trimmed: 0,
        };
        for (id, message) in log.into_iter().rev() {
            let event = Arc::new(Event::new(id, message));
            let size = event.size();
            if state.log.len() >= config.replay_max_messages
                || state.log_bytes + size > config.replay_max_bytes
            {
                break;
            }
            state.log_bytes += size;
            state.log.push_front(Logged { id, size, event });
        }
        if let Some(last) = state.log.back().map(|event| event.id) {
            state.persisted = last;
            if sealed == last + 1 {
                // Nothing was lost: every id from the start of the newest unbroken run
                // of ids on is there (ids of earlier runs may have been skipped).
                let mut start = last;
                for event in state.log.iter().rev().skip(1) {
                    if event.id + 1 != start {
                        break;
                    }
                    start = event.id;
                }
                state.complete_from = start;
            }
        }
        Feed {
            state: Mutex::new(state),
            persisting: Mutex::new(()),
            readers: AtomicUsize::new(0),
            ids,
            max_messages: config.replay_max_messages,
            max_bytes: config.replay_max_bytes,
            reader_bytes: config.stream_buffer_bytes.0,
            max_readers: config.max_readers,
        }
    }

    /// Hands the log's events not yet written to `storage`, and what it no longer
    /// holds, as changes of at most [`PERSIST_BATCH`] events.
    pub fn persist(&self, storage: &dyn Storage) {
        // One writer at a time: the periodic one and the one of a clean stop.
        let _writing = lock(&self.persisting);
        loop {
            let (events, trim) = {
                let mut state = lock(&self.state);
                let oldest = state
                    .log
                    .front()
                    .map_or_else(|| self.ids.upcoming(), |event| event.id);
                let trim = (oldest > state.trimmed).then_some(oldest);
                if let Some(below) = trim {
                    state.trimmed = below;
                }
                let persisted = state.persisted;
                let start = state.log.partition_point(|event| event.id <= persisted);
                let events: Vec<(u64, Message)> = state
                    .log
                    .range(start..)
                    .take(PERSIST_BATCH)
                    .map(|logged| (logged.id, logged.event.message.clone()))
                    .collect();
                if let Some((last, _)) = events.last() {
                    state.persisted = *last;
                }
                (events, trim)
            };
            if let Some(below) = trim {
                storage.record(Change::LogTrimmed { below });
            }
            if events.is_empty() {
                return;
            }
            storage.record(Change::Logged { events });
        }
    }

    /// The next event id, without giving it out.
    pub fn upcoming(&self) -> u64 {
        self.ids.upcoming()
    }

    /// Gives `message` the next event id, keeps it in the log and hands it to every
    /// matching reader. `before` runs first, under the same lock (the retained store's
    /// update, so a reader's retained snapshot and its live events never overlap).
    /// Returns the event id and a new id reservation to record, if one is due.
    pub fn publish(&self, message: &Message, before: impl FnOnce()) -> (u64, Option<u64>) {
        // The copy is made, and what the log lets go of is freed, outside the lock;
        // without a log, only while someone reads.
        let wanted = self.max_messages > 0 || self.readers.load(Ordering::Relaxed) > 0;
        let mut detached = wanted.then(|| message.detached());
        let mut evicted = None;
        let mut state = lock(&self.state);
        before();
        let (id, reservation) = self.ids.next();
        if detached.is_none() && state.reader_count > 0 {
            // A reader came in meanwhile.
            detached = Some(message.detached());
        }
        let Some(detached) = detached else {
            // Nothing kept and nobody reading: a later resume is told of a gap.
            state.complete_from = id + 1;
            return (id, reservation);
        };
        let event = Arc::new(Event::new(id, detached));
        let size = event.size();
        if self.max_messages > 0 {
            state.log.push_back(Logged {
                id,
                size,
                event: event.clone(),
            });
            state.log_bytes += size;
        }
        while state.log.len() > self.max_messages || state.log_bytes > self.max_bytes {
            let Some(oldest) = state.log.pop_front() else {
                break;
            };
            state.log_bytes -= oldest.size;
            state.complete_from = oldest.id + 1;
            // Usually one goes for each that comes; any more are freed here.
            evicted.get_or_insert(oldest.event);
        }
        if self.max_messages == 0 {
            state.complete_from = id + 1;
        }
        let mut due: Vec<&Arc<Reader>> = Vec::new();
        if state.reader_count > 0 {
            collect_matching(&state.readers, &message.topic, &mut |node| {
                due.extend(node.value.iter());
            });
        }
        if due.len() > 1 {
            // One event a reader, however many of its filters match.
            due.sort_unstable_by_key(|reader| reader.id);
            due.dedup_by_key(|reader| reader.id);
        }
        for reader in due {
            if reader.may_read(&message.topic) {
                reader.offer(&event, size, self.reader_bytes);
            }
        }
        drop(state);
        drop(evicted);
        (id, reservation)
    }

    /// Registers a reader of `filters` from `since`. `snapshot` runs under the feed's
    /// lock, so that what it takes is exactly the state before the reader's live events.
    pub fn subscribe(
        self: &Arc<Self>,
        filters: Vec<TopicFilter>,
        permit: Option<Box<Permit>>,
        since: Since,
        snapshot: impl FnOnce() -> Vec<Message>,
    ) -> Result<Subscribed, Full> {
        let mut state = lock(&self.state);
        if state.reader_count >= self.max_readers {
            return Err(Full(self.max_readers));
        }
        let head = self.ids.upcoming().saturating_sub(1);
        let oldest = state.log.front().map_or(head + 1, |event| event.id);
        let (gap, tail) = match since {
            Since::Now => (None, Vec::new()),
            Since::After(after) => {
                let gap = (after.saturating_add(1) < state.complete_from && after < head)
                    .then_some(Gap {
                        from: after,
                        to: state.complete_from.max(oldest),
                    });
                let start = state.log.partition_point(|event| event.id <= after);
                let tail = state.log.range(start..).map(|l| l.event.clone()).collect();
                (gap, tail)
            }
        };
        let snapshot = snapshot();
        state.next_reader += 1;
        state.reader_count += 1;
        self.readers.store(state.reader_count, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::WEB_READERS).set(state.reader_count as f64);
        let reader = Arc::new(Reader {
            id: state.next_reader,
            filters,
            permit: permit.map(Mutex::new),
            queue: Mutex::new(Queue::default()),
        });
        for filter in &reader.filters {
            state.readers.entry(filter.levels()).push(reader.clone());
        }
        drop(state);
        // The tail was taken whole under the lock; it is filtered outside it.
        let replay = tail
            .into_iter()
            .filter(|event| reader.wants(&event.message))
            .collect();
        Ok(Subscribed {
            reader: ReaderHandle {
                feed: self.clone(),
                reader,
            },
            head,
            gap,
            replay,
            snapshot,
        })
    }

    fn unsubscribe(&self, reader: &Reader) {
        let mut state = lock(&self.state);
        state.reader_count -= 1;
        self.readers.store(state.reader_count, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::WEB_READERS).set(state.reader_count as f64);
        for filter in &reader.filters {
            let levels: Vec<&str> = filter.levels().collect();
            state.readers.update(
                &levels,
                |readers| readers.retain(|r| r.id != reader.id),
                &Vec::is_empty,
            );
        }
    }
}

/// One web reader's live events.
pub struct Reader {
    id: u64,
    filters: Vec<TopicFilter>,
    /// What the ACL lets the reader read; `None` without an ACL file.
    permit: Option<Mutex<Box<Permit>>>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    /// Fell behind by more than its buffer: it gets nothing more.
    overrun: bool,
    waker: Option<Waker>,
}

/// What a reader's live feed has for it.
pub enum Live {
    Events(Vec<Arc<Event>>),
    /// The reader fell too far behind; it should end and resume from its last id.
    Overrun,
}

impl Reader {
    fn wants(&self, message: &Message) -> bool {
        self.filters.iter().any(|f| f.matches(&message.topic)) && self.may_read(&message.topic)
    }

    /// Whether the ACL, as it stands now, lets the reader read `topic`.
    pub fn may_read(&self, topic: &TopicName) -> bool {
        self.permit.as_ref().map_or(true, |permit| {
            let mut permit = lock(permit);
            permit.refresh();
            permit.grants().may_read(topic)
        })
    }

    fn offer(&self, event: &Arc<Event>, size: usize, limit: usize) {
        let mut queue = lock(&self.queue);
        if queue.overrun {
            return;
        }
        if queue.bytes + size > limit && !queue.events.is_empty() {
            // Not read for too long: the memory goes now, the reader ends when it looks.
            metrics::counter!(crate::telemetry::WEB_READERS_CUT_OFF).increment(1);
            queue.overrun = true;
            queue.events = VecDeque::new();
            queue.bytes = 0;
        } else {
            queue.events.push_back(event.clone());
            queue.bytes += size;
        }
        if let Some(waker) = queue.waker.take() {
            drop(queue);
            waker.wake();
        }
    }

    /// The events waiting, at most `max` of them, or `Pending` (woken when one comes).
    pub fn poll_events(&self, cx: &mut Context<'_>, max: usize) -> Poll<Live> {
        let mut queue = lock(&self.queue);
        if queue.overrun {
            return Poll::Ready(Live::Overrun);
        }
        if queue.events.is_empty() {
            queue.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = queue.events.len().min(max);
        let events: Vec<Arc<Event>> = queue.events.drain(..n).collect();
        queue.bytes -= events.iter().map(|event| event.size()).sum::<usize>();
        Poll::Ready(Live::Events(events))
    }
}

/// A registered reader; dropping it unregisters it.
pub struct ReaderHandle {
    feed: Arc<Feed>,
    reader: Arc<Reader>,
}

impl std::ops::Deref for ReaderHandle {
    type Target = Reader;

    fn deref(&self) -> &Reader {
        &self.reader
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        self.feed.unsubscribe(&self.reader);
    }
}
