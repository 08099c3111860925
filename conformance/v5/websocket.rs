//! MQTT 5.0 conformance over WebSocket (section 6) and the transport (4.2): see
//! coverage.rs for how statements are named. A broker with an HTTP listener; a
//! WebSocket client (tokio-tungstenite) sends MQTT 5.0 packets built byte by byte
//! (tests/common/v5) in frames cut as each test chooses, and checks every packet it
//! receives with the strict decoder.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/v5/mod.rs"]
mod v5;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::ws::WsClient;
use common::TestBroker;
use tokio_tungstenite::tungstenite::Message;
use v5::*;

/// A broker with its TCP listener and an HTTP one, whose address is returned.
async fn broker() -> (TestBroker, SocketAddr) {
    TestBroker::start_with_http(|_| {}).await
}

/// The next packet on `ws`, checked by the MQTT 5.0 decoder.
async fn packet(ws: &mut WsClient) -> Packet {
    decode(ws.packet_bytes().await, &mut HashMap::new(), 0)
}

async fn connected(http: SocketAddr, client_id: &str) -> WsClient {
    let mut ws = WsClient::open(http, "mqtt").await;
    ws.send_frame(Connect::new(client_id).bytes()).await;
    match packet(&mut ws).await {
        Packet::ConnAck(ack) => assert_eq!(ack.reason, SUCCESS, "{ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    ws
}

fn payload_of(packet: Packet) -> Vec<u8> {
    match packet {
        Packet::Publish(message) => message.payload,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// MQTT-6.0.0-1: everything the server sends is in binary frames (`packet_bytes` fails
/// on any other), and a text frame from the client closes the connection.
#[tokio::test]
async fn mqtt_travels_in_binary_frames_only() {
    let (broker, http) = broker().await;
    let mut ws = connected(http, "binary-only-5").await;
    ws.send_frame(subscribe(1, &Props::new(), &[("ws5/binary", 0)]))
        .await;
    assert!(matches!(packet(&mut ws).await, Packet::SubAck(_)));
    ws.send_frame(Publish::new("ws5/binary", 0, b"bytes").bytes())
        .await;
    assert_eq!(payload_of(packet(&mut ws).await), b"bytes");

    ws.send(Message::text("\u{c0}")).await;
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
    for byte in Connect::new("unaligned-5").bytes() {
        ws.send_frame(vec![byte]).await;
    }
    assert!(matches!(packet(&mut ws).await, Packet::ConnAck(_)));

    let mut stream = subscribe(1, &Props::new(), &[("ws5/unaligned", 1)]);
    stream.extend(Publish::new("ws5/unaligned", 0, b"one").bytes());
    stream.extend(Publish::new("ws5/unaligned", 0, b"two").bytes());
    let (first, second) = stream.split_at(stream.len() - 4);
    ws.send_frame(first).await;
    ws.send_frame(second).await;
    assert!(matches!(packet(&mut ws).await, Packet::SubAck(_)));
    assert_eq!(payload_of(packet(&mut ws).await), b"one");
    assert_eq!(payload_of(packet(&mut ws).await), b"two");
    ws.send_frame(&PINGREQ[..1]).await;
    ws.send_frame(&PINGREQ[1..]).await;
    assert!(matches!(packet(&mut ws).await, Packet::PingResp));
    broker.stop().await;
}

/// MQTT-6.0.0-4: offered "mqtt" among other subprotocols, the server selects "mqtt" and
/// returns it in the handshake.
#[tokio::test]
async fn the_server_selects_the_mqtt_subprotocol() {
    let (broker, http) = broker().await;
    for offered in ["mqtt", "chat, mqtt"] {
        let mut ws = WsClient::open(http, offered).await;
        assert_eq!(ws.subprotocol, "mqtt", "offered {offered:?}");
        ws.send_frame(Connect::new("subprotocol-5").bytes()).await;
        assert!(matches!(packet(&mut ws).await, Packet::ConnAck(_)));
        ws.close().await;
    }
    broker.stop().await;
}

/// MQTT-4.2.0-1: the transports the server offers are ordered, lossless and two-way:
/// QoS 1 messages from a TCP client reach a WebSocket client all and in order, and
/// those of the WebSocket client, sent as one stream cut into 7-byte frames, reach the
/// TCP client all and in order.
#[tokio::test]
async fn transports_are_ordered_lossless_and_two_way() {
    // The broker's Receive Maximum: all may be in flight at once.
    const COUNT: u16 = 20;
    let (broker, http) = broker().await;
    let mut ws = connected(http, "stream-ws").await;
    ws.send_frame(subscribe(1, &Props::new(), &[("order/down", 1)]))
        .await;
    assert!(matches!(packet(&mut ws).await, Packet::SubAck(_)));
    let mut tcp = Client::new(&broker, "stream-tcp").await;
    tcp.subscribe(1, &[("order/up", 1)]).await;

    let burst = |topic: &str| -> Vec<u8> {
        (1..=COUNT)
            .flat_map(|i| Publish::new(topic, 1, &i.to_be_bytes()).pkid(i).bytes())
            .collect()
    };
    tcp.send(&burst("order/down")).await;
    for i in 1..=COUNT {
        match packet(&mut ws).await {
            Packet::Publish(message) => {
                assert_eq!(message.payload, i.to_be_bytes(), "message {i}");
                ws.send_frame(ack(PUBACK, message.pkid.expect("QoS 1")))
                    .await;
            }
            other => panic!("expected PUBLISH {i}, got {other:?}"),
        }
    }
    for i in 1..=COUNT {
        tcp.expect_ack(PUBACK, i).await;
    }

    for piece in burst("order/up").chunks(7) {
        ws.send_frame(piece).await;
    }
    for i in 1..=COUNT {
        tcp.expect_and_complete("order/up", &i.to_be_bytes()).await;
    }
    for i in 1..=COUNT {
        match packet(&mut ws).await {
            Packet::PubAck(a) => assert_eq!(a.pkid, i),
            other => panic!("expected PUBACK {i}, got {other:?}"),
        }
    }
    broker.stop().await;
}
