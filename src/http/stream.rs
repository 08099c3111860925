//! `GET /events` (Server-Sent Events) and `GET /iframe` (the legacy iframe stream): a
//! response body that sends what the reader is due — the retained messages or the
//! replay from its last id — then live events, with keepalives while idle. It ends
//! when the reader falls too far behind (the client resumes from its last id) or the
//! server stops.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use tokio::time::{Instant, Sleep};
use tracing::info;

use super::query::{bad, Query};
use super::render::{iframe_call, sse_gap, sse_message, sse_raw, valid_callback};
use super::{may_read_all, too_many, Outcome, Shared};
use crate::acl::Permit;
use crate::feed::{Event, Live, ReaderHandle, Since};
use crate::message::Message;

/// Most events sent in one chunk.
const BATCH: usize = 64;

/// Padding first in the iframe stream: some browsers render nothing before 1 KiB.
const IFRAME_PADDING: usize = 1024;

/// How the events of a stream are written.
enum Format {
    /// SSE, a JSON object as each event's data.
    Json,
    /// SSE, the topic as the event name and the payload as data.
    Raw,
    /// HTML, one `<script>parent.NAME(...)</script>` an event.
    Iframe { callback: String },
}

impl Format {
    fn event(&self, event: &Event) -> Bytes {
        match self {
            Format::Json => event.rendered(|message| sse_message(event.id, message, false)),
            Format::Raw => sse_raw(event.id, &event.message),
            Format::Iframe { callback } => iframe_call(callback, event.id, &event.message, false),
        }
    }

    fn retained(&self, id: u64, message: &Message) -> Bytes {
        match self {
            Format::Json => sse_message(id, message, true),
            Format::Raw => sse_raw(id, message),
            Format::Iframe { callback } => iframe_call(callback, id, message, true),
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Format::Iframe { .. } => "text/html; charset=utf-8",
            _ => "text/event-stream",
        }
    }

    fn keepalive(&self) -> Bytes {
        match self {
            Format::Iframe { .. } => Bytes::from_static(b"<!-- keepalive -->\n"),
            _ => Bytes::from_static(b": keepalive\n\n"),
        }
    }
}

/// `GET /events?topic=F[&topic=F2…][&retained=false][&format=raw][&last_event_id=N]`.
pub fn events(
    request: &Request<Incoming>,
    permit: Option<Box<Permit>>,
    shared: &Shared,
) -> Outcome {
    let query = Query::of(request.uri())?;
    let format = match query.single("format")? {
        None | Some("json") => Format::Json,
        Some("raw") => Format::Raw,
        Some(other) => return Err(bad(format!("format must be json or raw, not {other:?}"))),
    };
    // The header EventSource sends when it reconnects wins over the parameter.
    let header = request
        .headers()
        .get("last-event-id")
        .map(|value| {
            let text = value.to_str().unwrap_or_default();
            text.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("Last-Event-ID must be an event id, not {text:?}")))
        })
        .transpose()?;
    let since = match header.or(query.number("last_event_id")?) {
        Some(id) => Since::After(id),
        None => Since::Now,
    };
    let retained = query.flag("retained", true)?;
    let retry = shared.web.retry_ms;
    let preamble = move |head: u64| match since {
        // The place to resume from, should the stream drop before its first event.
        Since::Now => Bytes::from(format!("retry: {retry}\nid: {head}\n\n")),
        Since::After(_) => Bytes::from(format!("retry: {retry}\n\n")),
    };
    open(&query, permit, format, since, retained, preamble, shared)
}

/// `GET /iframe?topic=F&callback=NAME`: the retained messages, then live ones.
pub fn iframe(
    request: &Request<Incoming>,
    permit: Option<Box<Permit>>,
    shared: &Shared,
) -> Outcome {
    let query = Query::of(request.uri())?;
    let callback = query.single("callback")?.unwrap_or_default();
    if !valid_callback(callback) {
        return Err(bad("callback must match [A-Za-z_$][A-Za-z0-9_$.]{0,63}"));
    }
    let format = Format::Iframe {
        callback: callback.to_string(),
    };
    let retained = query.flag("retained", true)?;
    let preamble = |_| {
        Bytes::from(format!(
            "<!doctype html>\n<html><body>\n<!--{}-->\n",
            " ".repeat(IFRAME_PADDING)
        ))
    };
    open(
        &query,
        permit,
        format,
        Since::Now,
        retained,
        preamble,
        shared,
    )
}

/// Registers the reader and answers with its stream; `preamble` is the stream's first
/// chunk, given the feed's head.
fn open(
    query: &Query,
    permit: Option<Box<Permit>>,
    format: Format,
    since: Since,
    retained: bool,
    preamble: impl FnOnce(u64) -> Bytes,
    shared: &Shared,
) -> Outcome {
    let filters = query.filters(&shared.broker)?;
    may_read_all(permit.as_deref(), &filters)?;
    let broker = &shared.broker;
    // Retained messages are the state a new reader starts from; a resuming one gets
    // what it missed from the replay instead.
    let with_retained = retained && since == Since::Now;
    let wanted = filters.clone();
    let subscribed = broker
        .feed
        .subscribe(filters, permit, since, || {
            if with_retained {
                broker.retained_matching(&wanted)
            } else {
                Vec::new()
            }
        })
        .map_err(too_many)?;
    let mut backlog = VecDeque::from([preamble(subscribed.head)]);
    if let Some(gap) = subscribed.gap {
        backlog.push_back(sse_gap(gap.from, gap.to));
    }
    let keepalive = Duration::from_secs(shared.web.keepalive_secs.0 as u64);
    let mut shutdown = shared.cx.shutdown.clone();
    let content_type = format.content_type();
    let stream = EventStream {
        format,
        backlog,
        retained: (subscribed.snapshot.into_iter())
            .filter(|message| subscribed.reader.may_read(&message.topic))
            .collect(),
        head: subscribed.head,
        replay: subscribed.replay.into(),
        reader: subscribed.reader,
        keepalive,
        idle: Box::pin(tokio::time::sleep(keepalive)),
        stopping: Box::pin(async move {
            let _ = shutdown.wait_for(|&stopping| stopping).await;
        }),
    };
    let mut reply = Response::new(stream.boxed_unsync());
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells a proxy such as nginx not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(reply)
}

struct EventStream {
    format: Format,
    /// Chunks due before any event: the preamble, a gap.
    backlog: VecDeque<Bytes>,
    /// The retained messages the reader starts from, sent with the id `head`.
    retained: VecDeque<Message>,
    head: u64,
    /// Events from the log the reader missed, oldest first.
    replay: VecDeque<Arc<Event>>,
    reader: ReaderHandle,
    keepalive: Duration,
    /// Fires when the stream has been idle for `keepalive`.
    idle: Pin<Box<Sleep>>,
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl EventStream {
    /// `pieces` as one chunk, and the keepalive timer restarted.
    fn chunk(&mut self, pieces: impl IntoIterator<Item = Bytes>) -> Frame<Bytes> {
        let mut chunk = BytesMut::new();
        for piece in pieces {
            chunk.extend_from_slice(&piece);
        }
        self.sent();
        Frame::data(chunk.freeze())
    }

    fn events(&mut self, events: Vec<Arc<Event>>) -> Frame<Bytes> {
        let pieces: Vec<Bytes> = events.iter().map(|e| self.format.event(e)).collect();
        self.chunk(pieces)
    }

    fn sent(&mut self) {
        let next = Instant::now() + self.keepalive;
        self.idle.as_mut().reset(next);
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if let Some(chunk) = this.backlog.pop_front() {
            return Poll::Ready(Some(Ok(this.chunk([chunk]))));
        }
        if !this.retained.is_empty() {
            let n = this.retained.len().min(BATCH);
            let (format, head) = (&this.format, this.head);
            let pieces: Vec<Bytes> = this
                .retained
                .drain(..n)
                .map(|message| format.retained(head, &message))
                .collect();
            return Poll::Ready(Some(Ok(this.chunk(pieces))));
        }
        if !this.replay.is_empty() {
            let n = this.replay.len().min(BATCH);
            let events: Vec<Arc<Event>> = this.replay.drain(..n).collect();
            return Poll::Ready(Some(Ok(this.events(events))));
        }
        match this.reader.poll_events(cx, BATCH) {
            Poll::Ready(Live::Events(events)) => return Poll::Ready(Some(Ok(this.events(events)))),
            Poll::Ready(Live::Overrun) => {
                info!(
                    "web reader fell too far behind; its stream ends, to resume from its last id"
                );
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            let keepalive = this.format.keepalive();
            return Poll::Ready(Some(Ok(this.chunk([keepalive]))));
        }
        Poll::Pending
    }
}
