//! An MQTT client over WebSocket (tokio-tungstenite) for tests: bytes go out in binary
//! frames cut where the test chooses, whole MQTT packets come back out of however the
//! broker framed them.

use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use mqttbytes::v4;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

use super::WAIT;

pub struct WsClient<S = TcpStream> {
    ws: WebSocketStream<S>,
    input: BytesMut,
    /// The subprotocol the broker selected.
    pub subprotocol: String,
}

impl WsClient<TcpStream> {
    /// A WebSocket to /mqtt on the HTTP listener at `http`, offering `offered`
    /// (`Sec-WebSocket-Protocol`, e.g. `"mqtt"` or `"chat, mqtt"`).
    pub async fn open(http: SocketAddr, offered: &str) -> WsClient {
        let stream = TcpStream::connect(http).await.expect("connect");
        let url = format!("ws://{http}/mqtt");
        WsClient::over(stream, &url, &[("Sec-WebSocket-Protocol", offered)]).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// The WebSocket handshake for `url` over `stream` (TLS, say), with `headers`.
    pub async fn over(stream: S, url: &str, headers: &[(&'static str, &str)]) -> WsClient<S> {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, value.parse().expect("a header value"));
        }
        let (ws, response) = tokio::time::timeout(WAIT, client_async(request, stream))
            .await
            .expect("handshake in time")
            .expect("handshake");
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        WsClient {
            ws,
            input: BytesMut::new(),
            subprotocol,
        }
    }

    /// Sends `bytes` as one binary frame.
    pub async fn send_frame(&mut self, bytes: impl Into<Vec<u8>>) {
        self.send(Message::binary(bytes.into())).await;
    }

    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send a frame");
    }

    /// The next frame within the wait; `None` once the connection has ended.
    pub async fn next_frame(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(None | Some(Err(_))) => None,
            Err(_) => panic!("no frame and no close within {WAIT:?}"),
        }
    }

    /// The bytes of the next whole MQTT packet, reading binary frames as needed.
    pub async fn packet_bytes(&mut self) -> Vec<u8> {
        loop {
            if let Some(length) = whole_packet(&self.input) {
                return self.input.split_to(length).to_vec();
            }
            match self.next_frame().await {
                Some(Message::Binary(data)) => self.input.extend_from_slice(&data),
                Some(Message::Pong(_)) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// The next packet, decoded by mqttbytes as MQTT 3.1.1.
    pub async fn packet(&mut self) -> v4::Packet {
        let mut bytes = BytesMut::from(&self.packet_bytes().await[..]);
        v4::read(&mut bytes, 1 << 20).expect("a valid MQTT 3.1.1 packet")
    }

    /// Waits for the broker to end the connection (a close frame or the end of the
    /// stream), skipping anything it sends first.
    pub async fn expect_closed(&mut self) {
        while let Some(message) = self.next_frame().await {
            if let Message::Close(_) = message {
                return;
            }
        }
    }

    /// Closes cleanly and expects the broker's close frame in answer.
    pub async fn close(&mut self) {
        self.ws.close(None).await.expect("send close");
        let answer = self.next_frame().await;
        assert!(
            matches!(answer, None | Some(Message::Close(_))),
            "{answer:?}"
        );
    }
}

/// The length of the MQTT packet at the start of `input`, if all of it is there.
fn whole_packet(input: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (i, byte) in input.iter().enumerate().skip(1).take(4) {
        remaining |= usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            let length = i + 1 + remaining;
            return (input.len() >= length).then_some(length);
        }
    }
    None
}
