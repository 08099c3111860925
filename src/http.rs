//! The HTTP listener: one hyper service with routes. `GET /mqtt` upgrades to MQTT over
//! WebSocket (subprotocol `mqtt` or `mqttv3.1`) served by the same connection handler as
//! TCP; `GET /healthz` answers `ok`. Errors are JSON `{"error": …}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::broker::{Admitted, Broker};
use crate::connection::{self, Context};
use crate::locks::lock;
use crate::proxy::TrustedProxies;
use crate::websocket::WsStream;

/// The WebSocket subprotocols MQTT clients ask for, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What a WebSocket reads from its socket at a time.
const WS_READ_BUFFER: usize = 4096;

type Reply = Response<Full<Bytes>>;

/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 16 * 1024;

/// Largest WebSocket frame read: a frame's header makes tungstenite reserve its whole
/// length before the bytes arrive, so this stays small; an MQTT packet may span frames.
const MAX_WS_FRAME: usize = 1 << 20;

/// What the requests of one HTTP connection share.
struct Shared {
    broker: Arc<Broker>,
    cx: Context,
    /// The connection's place within `max_connections`, passed on to the WebSocket it
    /// may become.
    place: Mutex<Option<Admitted>>,
}

/// Serves HTTP/1.1 on `stream` (TCP or TLS) until the peer closes it, it stays silent
/// for the connect timeout, or the server stops. Each request's client is `peer`, or
/// whom `X-Forwarded-For` names when `peer` is a trusted proxy.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    admitted: Admitted,
    proxies: Arc<TrustedProxies>,
    cx: Context,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = cx.shutdown.clone();
    let broker = Arc::clone(&admitted);
    let limit = Duration::from_secs(broker.limits.connect_timeout_secs.0 as u64);
    let shared = Arc::new(Shared {
        broker,
        cx,
        place: Mutex::new(Some(admitted)),
    });
    let service = service_fn(move |request| {
        let client = proxies.forwarded_client(peer, request.headers());
        let reply = route(request, client, &shared);
        async move { Ok::<_, Infallible>(reply) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limit)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        debug!(%peer, "HTTP connection ended: {e}");
    }
}

fn route(request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Reply {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok"),
        (&Method::GET, "/mqtt") => upgrade(request, peer, shared),
        (_, "/healthz" | "/mqtt") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// Answers a WebSocket upgrade to MQTT, and serves MQTT on it once upgraded.
fn upgrade(mut request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Reply {
    let headers = request.headers();
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true, true) = (
        key,
        has(header::UPGRADE, "websocket"),
        has(header::CONNECTION, "upgrade"),
    ) else {
        return error(StatusCode::BAD_REQUEST, "/mqtt takes a WebSocket upgrade");
    };
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return error(StatusCode::BAD_REQUEST, "WebSocket version 13 is required");
    }
    let Some(subprotocol) = SUBPROTOCOLS
        .into_iter()
        .find(|protocol| has(header::SEC_WEBSOCKET_PROTOCOL, protocol))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "no supported WebSocket subprotocol: ask for \"mqtt\" or \"mqttv3.1\"",
        );
    };
    let Some(admitted) = lock(&shared.place).take() else {
        return error(
            StatusCode::BAD_REQUEST,
            "this connection was upgraded already",
        );
    };
    let cx = shared.cx.clone();
    // tungstenite's default 128 KiB read buffer per connection would dwarf an idle MQTT
    // connection.
    let largest = shared.broker.limits.max_packet_size.0;
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_frame_size(Some(largest.min(MAX_WS_FRAME)))
        .max_message_size(Some(largest));
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(upgraded) => {
                let socket = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
                connection::serve(WsStream::new(ws), peer, admitted, cx).await;
            }
            Err(e) => debug!(%peer, "WebSocket upgrade failed: {e}"),
        }
    });
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = reply.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(subprotocol),
    );
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    reply
}

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    reply
}

/// A JSON error, as every endpoint gives them.
fn error(status: StatusCode, what: &str) -> Reply {
    let body = serde_json::json!({ "error": what }).to_string();
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}
