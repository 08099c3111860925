//! `GET /mqtt`: MQTT over WebSocket, served by the same connection handler as TCP once
//! upgraded (subprotocol `mqtt` or `mqttv3.1`).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::query::bad;
use super::{empty, Outcome, Shared};
use crate::connection;
use crate::locks::lock;
use crate::websocket::WsStream;

/// The WebSocket subprotocols MQTT clients ask for, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What a WebSocket reads from its socket at a time.
const WS_READ_BUFFER: usize = 4096;

/// Largest WebSocket frame read: a frame's header makes tungstenite reserve its whole
/// length before the bytes arrive, so this stays small; an MQTT packet may span frames.
const MAX_WS_FRAME: usize = 1 << 20;

/// Answers a WebSocket upgrade to MQTT, and serves MQTT on it once upgraded.
pub fn upgrade(mut request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Outcome {
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
        return Err(bad("/mqtt takes a WebSocket upgrade"));
    };
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(bad("WebSocket version 13 is required"));
    }
    let Some(subprotocol) = SUBPROTOCOLS
        .into_iter()
        .find(|protocol| has(header::SEC_WEBSOCKET_PROTOCOL, protocol))
    else {
        return Err(bad(
            "no supported WebSocket subprotocol: ask for \"mqtt\" or \"mqttv3.1\"",
        ));
    };
    let Some(admitted) = lock(&shared.place).take() else {
        return Err(bad("this connection was upgraded already"));
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
    let mut reply = Response::new(empty());
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
    Ok(reply)
}
