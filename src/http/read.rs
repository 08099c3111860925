//! `GET /poll` (long polling) and `GET /retained` (short polling).

use std::future::poll_fn;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::query::{bad, Query};
use super::render::{message_json, to_json, WebMessage};
use super::{json_reply, may_read_all, too_many, Outcome, Shared};
use crate::acl::Permit;
use crate::feed::{Live, Since};

/// How long a poll waits for a message when it names no `timeout`, and at most.
const DEFAULT_WAIT_SECS: u64 = 25;
const MAX_WAIT_SECS: u64 = 60;

/// Most messages in one poll answer; the next poll continues from the last.
const MAX_MESSAGES: usize = 1000;

/// A poll's answer.
#[derive(Serialize)]
struct PollAnswer<'a> {
    messages: Vec<WebMessage<'a>>,
    next: String,
    /// Where the log no longer reached back to `since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<GapJson>,
}

#[derive(Serialize)]
struct GapJson {
    from: u64,
    to: u64,
}

/// `GET /poll?topic=F[&since=ID][&timeout=S]`: the matching messages after `since` at
/// once if there are any, else the first to arrive within the timeout; `next` is the
/// `since` of the following poll.
pub async fn poll(
    request: &Request<Incoming>,
    permit: Option<Box<Permit>>,
    shared: &Shared,
) -> Outcome {
    let query = Query::of(request.uri())?;
    let filters = query.filters(&shared.broker)?;
    may_read_all(permit.as_deref(), &filters)?;
    let since = query.number("since")?;
    let wait = query.number("timeout")?.unwrap_or(DEFAULT_WAIT_SECS);
    if wait > MAX_WAIT_SECS {
        return Err(bad(format!(
            "timeout is at most {MAX_WAIT_SECS} seconds, not {wait}"
        )));
    }
    let subscribed = shared
        .broker
        .feed
        .subscribe(
            filters,
            permit,
            since.map_or(Since::Now, Since::After),
            Vec::new,
        )
        .map_err(too_many)?;
    let mut events = subscribed.replay;
    events.truncate(MAX_MESSAGES);
    if events.is_empty() {
        let reader = &subscribed.reader;
        let mut shutdown = shared.cx.shutdown.clone();
        tokio::select! {
            live = poll_fn(|cx| reader.poll_events(cx, MAX_MESSAGES)) => {
                if let Live::Events(live) = live {
                    events = live;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = shutdown.wait_for(|&stopping| stopping) => {}
        }
    }
    // Past every event looked at: the last one sent, or the feed's head when none
    // matched.
    let next = events
        .last()
        .map_or(since.unwrap_or(0).max(subscribed.head), |event| event.id);
    let answer = PollAnswer {
        messages: events
            .iter()
            .map(|event| message_json(&event.message, false, Some(event.id)))
            .collect(),
        next: next.to_string(),
        gap: subscribed.gap.map(|gap| GapJson {
            from: gap.from,
            to: gap.to,
        }),
    };
    Ok(json_reply(StatusCode::OK, to_json(&answer)))
}

/// `GET /retained?topic=F`: the retained messages matching, at once.
pub fn retained(
    request: &Request<Incoming>,
    permit: Option<Box<Permit>>,
    shared: &Shared,
) -> Outcome {
    let query = Query::of(request.uri())?;
    let filters = query.filters(&shared.broker)?;
    may_read_all(permit.as_deref(), &filters)?;
    let retained = shared.broker.retained_matching(&filters);
    let messages: Vec<WebMessage> = retained
        .iter()
        .filter(|message| (permit.as_ref()).map_or(true, |p| p.grants().may_read(&message.topic)))
        .map(|message| message_json(message, true, None))
        .collect();
    Ok(json_reply(StatusCode::OK, to_json(&messages)))
}
