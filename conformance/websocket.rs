//! Conformance over WebSocket (MQTT 3.1.1 section 6): see coverage.rs for how
//! statements are named. A broker with an HTTP listener; a WebSocket client
//! (tokio-tungstenite) cuts the byte stream into frames as each test chooses.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use common::ws::WsClient;
use common::{connect_packet, Encode, TestBroker};
use mqttbytes::{v4, QoS};
use tokio_tungstenite::tungstenite::Message;

/// A broker with its TCP listener and an HTTP one, whose address is returned.
async fn broker() -> (TestBroker, SocketAddr) {
    TestBroker::start_with_http(|_| {}).await
}

/// MQTT-6.0.0-1: everything the server sends is in binary frames (`packet` fails on any
/// other), and a text frame from the client closes the connection.
#[tokio::test]
async fn mqtt_travels_in_binary_frames_only() {
    let (broker, http) = broker().await;
    let mut ws = WsClient::open(http, "mqtt").await;
    ws.send_frame(connect_packet("binary-only", true, 30).to_bytes())
        .await;
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
    let mut subscribe = v4::Subscribe::new("ws/binary", QoS::AtMostOnce);
    subscribe.pkid = 1;
    ws.send_frame(subscribe.to_bytes()).await;
    assert!(matches!(ws.packet().await, v4::Packet::SubAck(_)));
    let publish = v4::Publish::new("ws/binary", QoS::AtMostOnce, b"text?".to_vec());
    ws.send_frame(publish.to_bytes()).await;
    assert!(matches!(ws.packet().await, v4::Packet::Publish(p) if &p.payload[..] == b"text?"));

    ws.send(Message::text("\u{10}\u{0c}")).await;
    ws.expect_closed().await;
    broker.stop().await;
}

/// MQTT-6.0.0-2: the server reads a byte stream, whatever the frames: CONNECT one byte
/// per frame; SUBSCRIBE, a PUBLISH and the first half of another in one frame, its
/// second half in the next; PINGREQ split across two frames.
#[tokio::test]
async fn packets_need_not_align_with_frames() {
    let (broker, http) = broker().await;
    let mut ws = WsClient::open(http, "mqtt").await;
    for byte in connect_packet("unaligned", true, 30).to_bytes() {
        ws.send_frame(vec![byte]).await;
    }
    assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));

    let mut subscribe = v4::Subscribe::new("ws/unaligned", QoS::AtLeastOnce);
    subscribe.pkid = 1;
    let mut stream = subscribe.to_bytes();
    for payload in ["one", "two"] {
        let publish = v4::Publish::new("ws/unaligned", QoS::AtMostOnce, payload.as_bytes());
        stream.extend(publish.to_bytes());
    }
    let (first, second) = stream.split_at(stream.len() - 4);
    ws.send_frame(first).await;
    ws.send_frame(second).await;
    assert!(matches!(ws.packet().await, v4::Packet::SubAck(_)));
    for payload in ["one", "two"] {
        assert!(
            matches!(ws.packet().await, v4::Packet::Publish(p) if p.payload == payload.as_bytes())
        );
    }
    let ping = v4::PingReq.to_bytes();
    ws.send_frame(&ping[..1]).await;
    ws.send_frame(&ping[1..]).await;
    assert!(matches!(ws.packet().await, v4::Packet::PingResp));
    broker.stop().await;
}

/// MQTT-6.0.0-4: offered "mqtt" among other subprotocols, the server selects "mqtt" and
/// returns it in the handshake.
#[tokio::test]
async fn the_server_selects_the_mqtt_subprotocol() {
    let (broker, http) = broker().await;
    for offered in ["mqtt", "chat, mqtt", "mqtt, mqttv3.1"] {
        let mut ws = WsClient::open(http, offered).await;
        assert_eq!(ws.subprotocol, "mqtt", "offered {offered:?}");
        ws.send_frame(connect_packet("subprotocol", true, 30).to_bytes())
            .await;
        assert!(matches!(ws.packet().await, v4::Packet::ConnAck(_)));
        ws.close().await;
    }
    broker.stop().await;
}
