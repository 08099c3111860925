//! An HTTP client for tests of the HTTP API (hyper's own client, one connection a
//! request): whole answers, and Server-Sent Events read event by event.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::WAIT;

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON error's text, asserting the status.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.headers["content-type"], "application/json");
        self.json()["error"]
            .as_str()
            .expect("an error text")
            .to_string()
    }
}

/// Sends a request on a new connection and returns the response, its body unread.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> hyper::Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("a request");
    tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

/// A request and its whole answer.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let response = send(addr, method, target, headers, body).await;
    let (parts, body) = response.into_parts();
    // A long poll may hold its answer for up to a minute.
    let body = tokio::time::timeout(Duration::from_secs(65), body.collect())
        .await
        .expect("the whole body in time")
        .expect("a body")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, target: &str) -> Answer {
    call(addr, Method::GET, target, &[], Bytes::new()).await
}

pub async fn post(addr: SocketAddr, target: &str, body: impl Into<Bytes>) -> Answer {
    call(addr, Method::POST, target, &[], body).await
}

/// One Server-Sent Event, or a comment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` unless named otherwise.
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
    /// Comment lines (`: keepalive`) before the fields.
    pub comments: Vec<String>,
    pub retry: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }

    pub fn id(&self) -> u64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("a numeric id")
    }
}

/// A Server-Sent Events stream, read as it arrives.
pub struct Sse {
    pub headers: HeaderMap,
    body: Incoming,
    buffer: String,
}

impl Sse {
    /// Opens `target` (`/events?…`) and asserts a 200 event stream.
    pub async fn open(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Sse {
        let response = send(addr, Method::GET, target, headers, Bytes::new()).await;
        assert_eq!(response.status(), StatusCode::OK, "{response:?}");
        let (parts, body) = response.into_parts();
        assert_eq!(parts.headers["content-type"], "text/event-stream");
        Sse {
            headers: parts.headers,
            body,
            buffer: String::new(),
        }
    }

    /// The next block (event, comment or `retry:`) within the wait; `None` once the
    /// stream has ended.
    pub async fn next_block(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("more of the stream in time");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event (a block with data: as for EventSource, others only set fields),
    /// skipping comments; panics if the stream ends.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            let block = self.next_block().await.expect("the stream goes on");
            if !block.data.is_empty() {
                return block;
            }
        }
    }

    /// Events until one has `data`'s JSON payload `payload`.
    pub async fn until_payload(&mut self, payload: &str) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next_event().await;
            let done = event.json()["payload"] == payload;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent {
        event: "message".into(),
        ..SseEvent::default()
    };
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(": ") {
            match field {
                "id" => event.id = Some(value.to_string()),
                "event" => event.event = value.to_string(),
                "data" => data.push(value),
                "retry" => event.retry = Some(value.to_string()),
                other => panic!("unknown SSE field {other:?} in {block:?}"),
            }
        }
    }
    event.data = data.join("\n");
    event
}

/// `s` percent-encoded for a query string (`#` and `+` in topic filters, mostly).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
