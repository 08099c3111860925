//! The HTTP listener: MQTT over WebSocket at /mqtt (binary frames as a byte stream,
//! subprotocols `mqtt` and `mqttv3.1`), exchanging messages with TCP clients; text
//! frames refused, pings answered, bad upgrades answered with clear HTTP errors;
//! /healthz.

mod common;

use std::net::SocketAddr;

use common::pki::Pki;
use common::ws::WsClient;
use common::{connect_packet, expect_message, init_logging, Encode, RawClient, WAIT};
use herald::config::{Listener, ListenerProtocol, TlsConfig};
use herald::{Config, Server};
use mqttbytes::{v4, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A broker with a TCP and an HTTP listener on ephemeral loopback ports.
async fn start() -> (Server, SocketAddr, SocketAddr) {
    start_with(ListenerProtocol::Http, None).await
}

/// A broker with a TCP listener and one of `protocol` (http or https).
async fn start_with(
    protocol: ListenerProtocol,
    tls: Option<TlsConfig>,
) -> (Server, SocketAddr, SocketAddr) {
    init_logging();
    let mut config = Config::default();
    config.storage.persistence = false;
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.push(Listener {
        tls,
        ..Listener::new(protocol, "127.0.0.1:0".parse().unwrap())
    });
    let server = Server::start(&config).await.unwrap();
    let (tcp, http) = (server.local_addrs()[0], server.local_addrs()[1]);
    (server, tcp, http)
}

#[tokio::test]
async fn websocket_and_tcp_clients_exchange_messages_both_ways() {
    let (server, tcp, http) = start().await;
    for subprotocol in ["mqtt", "mqttv3.1"] {
        let mut ws = WsClient::open(http, subprotocol).await;
        assert_eq!(ws.subprotocol, subprotocol);
        // CONNECT split across two frames…
        let connect = connect_packet(&format!("ws-{subprotocol}"), true, 30).to_bytes();
        let (head, tail) = connect.split_at(5);
        ws.send_frame(head).await;
        ws.send_frame(tail).await;
        assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
        // …SUBSCRIBE and a PING in one frame.
        let mut subscribe = v4::Subscribe::new("ws/down", QoS::AtLeastOnce);
        subscribe.pkid = 1;
        let mut both = subscribe.to_bytes();
        both.extend(v4::PingReq.to_bytes());
        ws.send_frame(both).await;
        assert!(matches!(ws.packet().await, v4::Packet::SubAck(_)));
        assert!(matches!(ws.packet().await, v4::Packet::PingResp));

        // TCP → WebSocket.
        let mut tcp_client = RawClient::open(tcp).await;
        tcp_client
            .connect(&format!("tcp-{subprotocol}"), true)
            .await;
        tcp_client.subscribe(1, "ws/up", QoS::AtLeastOnce).await;
        let payload: Vec<u8> = (0..=255).collect();
        tcp_client
            .publish("ws/down", QoS::AtLeastOnce, &payload, false, 2)
            .await;
        match ws.packet().await {
            v4::Packet::Publish(publish) => {
                assert_eq!(publish.topic, "ws/down");
                assert_eq!(&publish.payload[..], &payload[..]);
                ws.send_frame(v4::PubAck::new(publish.pkid).to_bytes())
                    .await;
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        // WebSocket → TCP, at QoS 1.
        let mut publish = v4::Publish::new("ws/up", QoS::AtLeastOnce, b"from the browser".to_vec());
        publish.pkid = 9;
        ws.send_frame(publish.to_bytes()).await;
        assert!(matches!(ws.packet().await, v4::Packet::PubAck(a) if a.pkid == 9));
        expect_message(&mut tcp_client, "ws/up", b"from the browser").await;

        // A ping frame is answered with a pong.
        ws.send(Message::Ping(b"hi".to_vec().into())).await;
        let pong = ws.next_frame().await;
        assert!(
            matches!(&pong, Some(Message::Pong(p)) if &p[..] == b"hi"),
            "{pong:?}"
        );
        // A clean close is answered with a close.
        ws.close().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_text_frame_ends_the_connection() {
    let (server, _, http) = start().await;
    let mut ws = WsClient::open(http, "mqtt").await;
    ws.send_frame(connect_packet("ws-text", true, 30).to_bytes())
        .await;
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
    ws.send(Message::text("not mqtt")).await;
    ws.expect_closed().await;
    server.shutdown().await;
}

/// One raw HTTP/1.1 request; returns the status line and the body.
async fn http_request(http: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(http).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // Until the headers and as many body bytes as they announce have arrived.
    let complete = |response: &str| {
        let Some((head, body)) = response.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        body.len() >= length
    };
    let mut response = String::new();
    let mut chunk = [0; 4096];
    while !complete(&response) {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        response.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test]
async fn healthz_answers_and_bad_upgrades_get_clear_errors() {
    let (server, _, http) = start().await;
    let (status, body) = http_request(
        http,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ok");

    let upgrade = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
        )
    };
    let (status, body) = http_request(
        http,
        &upgrade("/elsewhere", "Sec-WebSocket-Protocol: mqtt\r\n"),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, body) = http_request(http, &upgrade("/mqtt", "")).await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(body.contains("subprotocol"), "{body}");
    let (status, body) =
        http_request(http, &upgrade("/mqtt", "Sec-WebSocket-Protocol: chat\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(body.contains("subprotocol"), "{body}");
    let (status, _) = http_request(
        http,
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    server.shutdown().await;
}

/// wss://: the same WebSocket endpoint on the https listener, the test CA trusted.
#[tokio::test]
async fn websocket_over_tls_exchanges_messages() {
    let pki = Pki::new();
    let (server, tcp, https) = start_with(ListenerProtocol::Https, Some(pki.tls())).await;
    let tls = pki.connect(TcpStream::connect(https).await.unwrap()).await;
    let mut ws = WsClient::over(
        tls,
        &format!("wss://{https}/mqtt"),
        &[("Sec-WebSocket-Protocol", "mqtt")],
    )
    .await;
    ws.send_frame(connect_packet("wss", true, 30).to_bytes())
        .await;
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
    let mut subscribe = v4::Subscribe::new("wss/down", QoS::AtMostOnce);
    subscribe.pkid = 1;
    ws.send_frame(subscribe.to_bytes()).await;
    assert!(matches!(ws.packet().await, v4::Packet::SubAck(_)));
    let mut tcp_client = RawClient::open(tcp).await;
    tcp_client.connect("wss-tcp", true).await;
    tcp_client
        .publish("wss/down", QoS::AtMostOnce, b"secure", false, 0)
        .await;
    match ws.packet().await {
        v4::Packet::Publish(publish) => assert_eq!(&publish.payload[..], b"secure"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    server.shutdown().await;
}

/// A frame larger than the largest packet the broker takes (max_packet_size) ends the
/// connection unread; frames up to it are fine.
#[tokio::test]
async fn a_frame_over_the_packet_size_limit_ends_the_connection() {
    let (broker, http) = common::TestBroker::start_with_http(|config| {
        config.mqtt.max_packet_size = herald::config::PacketSize(1024);
    })
    .await;
    let mut ws = WsClient::open(http, "mqtt").await;
    ws.send_frame(connect_packet("ws-big", true, 30).to_bytes())
        .await;
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
    let mut subscribe = v4::Subscribe::new("ws/big", QoS::AtMostOnce);
    subscribe.pkid = 1;
    ws.send_frame(subscribe.to_bytes()).await;
    assert!(matches!(ws.packet().await, v4::Packet::SubAck(_)));
    let fits = v4::Publish::new("ws/big", QoS::AtMostOnce, vec![7; 1000]);
    ws.send_frame(fits.to_bytes()).await;
    assert!(matches!(ws.packet().await, v4::Packet::Publish(p) if p.payload.len() == 1000));

    // 2,048 PINGREQs, each fine on its own, in one frame over the limit: not one answered.
    ws.send_frame(v4::PingReq.to_bytes().repeat(2048)).await;
    let next = ws.next_frame().await;
    assert!(matches!(next, None | Some(Message::Close(_))), "{next:?}");
    broker.stop().await;
}

/// HTTP connections count against max_connections from the start (an upgraded one
/// keeps its place as a WebSocket), and one that does not send a whole request head
/// within the connect timeout is closed.
#[tokio::test]
async fn http_connections_are_bounded_in_number_and_time() {
    let (broker, http) = common::TestBroker::start_with_http(|config| {
        config.mqtt.max_connections = herald::config::Connections(2);
        config.mqtt.connect_timeout_secs = herald::config::ConnectTimeout(1);
    })
    .await;
    let mut ws = WsClient::open(http, "mqtt").await;
    ws.send_frame(connect_packet("ws-counted", true, 30).to_bytes())
        .await;
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
    // A request head that never ends takes the second place…
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // …so an MQTT client finds none left.
    broker.raw().await.expect_closed().await;
    // The slow head is cut off after the connect timeout, giving its place back.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow request is closed in time");
    let mut client = broker.raw().await;
    client.connect("after-slow-http", true).await;
    broker.stop().await;
}
