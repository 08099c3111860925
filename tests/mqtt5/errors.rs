//! The server's DISCONNECT: every way the broker ends an MQTT 5.0 connection after
//! CONNACK tells the client why, with a reason code (§3.14.2.1) and, for errors in
//! what the client sent, a Reason String.

use std::time::{Duration, Instant};

use herald::protocol::QoS;

use crate::common::TestBroker;
use crate::v5::*;

/// MQTT 5.0 §3.1.4 [MQTT-3.1.4-3]: a second connection with the same client id takes
/// the session over; the first is sent DISCONNECT 0x8E (Session taken over) and
/// closed, while the new one is accepted.
#[tokio::test]
async fn session_takeover_disconnects_the_old_connection_with_0x8e() {
    let broker = TestBroker::start().await;
    let mut old = Client::new(&broker, "twin").await;
    let (_new, ack) = Client::try_connect(&broker, &Connect::new("twin")).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    old.expect_disconnect(0x8E).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.10: a client silent for one and a half times its keep alive is sent
/// DISCONNECT 0x8D (Keep Alive timeout) — not sooner.
#[tokio::test]
async fn keep_alive_timeout_disconnects_with_0x8d() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::new("sleepy").keep_alive(1)).await;
    let start = Instant::now();
    client.expect_disconnect(0x8D).await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1400), "after {waited:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.1: a server shutting down tells its MQTT 5.0 clients so with
/// DISCONNECT 0x8B (Server shutting down).
#[tokio::test]
async fn server_shutdown_disconnects_with_0x8b() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "bystander").await;
    client.ping().await;
    broker.stop().await;
    client.expect_disconnect(0x8B).await;
}

/// MQTT 5.0 §3.2.2.3.6: a packet larger than the Maximum Packet Size the server
/// announced is answered with DISCONNECT 0x95 (Packet too large).
#[tokio::test]
async fn packet_above_maximum_packet_size_disconnects_with_0x95() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_packet_size.0 = 100).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("big")).await;
    assert_eq!(ack.props.u32(MAXIMUM_PACKET_SIZE), Some(100));
    // Within the limit, fine.
    client.publish(&Publish::new("big/t", 1, &[b'x'; 50])).await;
    client
        .send(&Publish::new("big/t", 1, &[b'x'; 200]).pkid(2).bytes())
        .await;
    client.expect_disconnect(0x95).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-9]: a client sending more QoS 2 PUBLISHes than the
/// server's Receive Maximum before they are released is sent DISCONNECT 0x93 (Receive
/// Maximum exceeded); up to the limit each gets its PUBREC.
#[tokio::test]
async fn receive_maximum_exceeded_disconnects_with_0x93() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 2).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("eager")).await;
    assert_eq!(ack.props.u16(RECEIVE_MAXIMUM), Some(2));
    for pkid in 1..=2 {
        client
            .send(&Publish::new("rm/t", 2, b"m").pkid(pkid).bytes())
            .await;
        let rec = client.expect_ack(PUBREC, pkid).await;
        assert_eq!(rec.reason, 0x00, "{rec:?}");
    }
    client
        .send(&Publish::new("rm/t", 2, b"m").pkid(3).bytes())
        .await;
    client.expect_disconnect_explained(0x93).await;
    broker.stop().await;
}

/// A released QoS 2 message frees its place: with Receive Maximum 2, a client that
/// completes each exchange may publish any number at QoS 2.
#[tokio::test]
async fn released_qos2_messages_do_not_count_against_receive_maximum() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 2).await;
    let mut client = Client::new(&broker, "steady").await;
    for pkid in 1..=6 {
        client
            .publish(&Publish::new("rm/t", 2, b"m").pkid(pkid))
            .await;
    }
    client.ping().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4: "A Topic Alias of 0 is not permitted": DISCONNECT 0x94 (Topic
/// Alias invalid).
#[tokio::test]
async fn topic_alias_zero_disconnects_with_0x94() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "alias0").await;
    let props = Props::new().u16(TOPIC_ALIAS, 0);
    client
        .send(&Publish::new("a/t", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect(0x94).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4 [MQTT-3.3.2-9]: a Topic Alias above the Topic Alias Maximum the
/// server announced is answered with DISCONNECT 0x94 (Topic Alias invalid).
#[tokio::test]
async fn topic_alias_above_the_maximum_disconnects_with_0x94() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_topic_alias = 3).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("alias4")).await;
    assert_eq!(ack.props.u16(TOPIC_ALIAS_MAXIMUM), Some(3));
    client
        .publish(&Publish::new("a/t", 1, b"m").props(Props::new().u16(TOPIC_ALIAS, 3)))
        .await;
    let props = Props::new().u16(TOPIC_ALIAS, 4);
    client
        .send(&Publish::new("a/t", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect(0x94).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4: a PUBLISH with an empty topic and an alias that was never set up
/// is a Protocol Error: DISCONNECT 0x82 with a Reason String.
#[tokio::test]
async fn unknown_topic_alias_with_empty_topic_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "alias?").await;
    let props = Props::new().u16(TOPIC_ALIAS, 2);
    client
        .send(&Publish::new("", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-6]: "A PUBLISH packet sent from a Client to a Server
/// MUST NOT contain a Subscription Identifier": DISCONNECT 0x82 with a Reason String.
#[tokio::test]
async fn subscription_identifier_in_a_client_publish_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "subid-pub").await;
    let props = Props::new().varint(SUBSCRIPTION_IDENTIFIER, 5);
    client
        .send(&Publish::new("s/t", 1, b"m").props(props).bytes())
        .await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.8.3-4]: "It is a Protocol Error to set the No Local bit to
/// 1 on a Shared Subscription": DISCONNECT 0x82 with a Reason String.
#[tokio::test]
async fn no_local_on_a_shared_subscription_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "nolocal-share").await;
    client
        .send(&subscribe(
            1,
            &Props::new(),
            &[("$share/g/t/#", 1 | NO_LOCAL)],
        ))
        .await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.12: AUTH without an Authentication Method in CONNECT is a Protocol
/// Error: DISCONNECT 0x82 with a Reason String.
#[tokio::test]
async fn auth_without_an_authentication_method_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "auth-late").await;
    client.send(&auth(0x19, &Props::new())).await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §2.2.2.2: a property not valid for its packet (Session Expiry Interval in
/// PUBLISH) makes a Malformed Packet: DISCONNECT 0x81 with a Reason String.
#[tokio::test]
async fn property_not_allowed_in_publish_disconnects_with_0x81() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "badprop-pub").await;
    let props = Props::new().u32(SESSION_EXPIRY_INTERVAL, 5);
    client
        .send(&Publish::new("p/t", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect_explained(0x81).await;
    broker.stop().await;
}

/// MQTT 5.0 §2.2.2.2 and §3.3.2.3.2: a Payload Format Indicator given twice is a
/// Protocol Error: DISCONNECT 0x82.
#[tokio::test]
async fn repeated_property_in_publish_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "dupprop-pub").await;
    let props = Props::new()
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .byte(PAYLOAD_FORMAT_INDICATOR, 0);
    client
        .send(&Publish::new("p/t", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.3.4 [MQTT-3.2.2-11]: a PUBLISH above the Maximum QoS the server
/// announced is answered with DISCONNECT 0x9B (QoS not supported).
#[tokio::test]
async fn publish_above_maximum_qos_disconnects_with_0x9b() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_qos.0 = QoS::AtLeastOnce).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("qos2")).await;
    assert_eq!(ack.props.byte(MAXIMUM_QOS), Some(1));
    client.publish(&Publish::new("q/t", 1, b"ok")).await;
    client
        .send(&Publish::new("q/t", 2, b"no").pkid(2).bytes())
        .await;
    client.expect_disconnect(0x9B).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.7: with Request Problem Information 0 the server sends no Reason
/// String or User Property on packets other than PUBLISH, CONNACK and DISCONNECT: the
/// failure acknowledgements (SUBACK 0x8F, PUBCOMP 0x92) carry no properties, while the
/// DISCONNECT for a protocol error may still explain itself.
#[tokio::test]
async fn request_problem_information_0_keeps_properties_off_acknowledgements() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("terse").props(Props::new().byte(REQUEST_PROBLEM_INFORMATION, 0));
    let (mut client, _) = Client::connect(&broker, &connect).await;
    client
        .send(&subscribe(1, &Props::new(), &[("a/#/b", 0)]))
        .await;
    let suback = client.expect_suback(1).await;
    assert_eq!(suback.codes, [0x8F]);
    assert!(suback.props.is_empty(), "{suback:?}");
    client.send(&ack(PUBREL, 9)).await;
    let comp = client.expect_ack(PUBCOMP, 9).await;
    assert_eq!(comp.reason, 0x92);
    assert!(comp.props.is_empty(), "{comp:?}");
    client.send(&auth(0x19, &Props::new())).await;
    client.expect_disconnect(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.3.14 [MQTT-3.2.2-21]: the keep alive in force is the Server Keep
/// Alive the server sent, not the client's: a client that asked for 60 s and was told
/// 1 s is disconnected with 0x8D after about 1.5 s of silence.
#[tokio::test]
async fn server_keep_alive_is_the_one_enforced() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 1).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("told-1s").keep_alive(60)).await;
    assert_eq!(ack.props.u16(SERVER_KEEP_ALIVE), Some(1));
    let start = Instant::now();
    client.expect_disconnect(0x8D).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "after {waited:?}"
    );
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4: with max_topic_alias 0 the server announces no Topic Alias
/// Maximum (0), and any alias a client sends is invalid: DISCONNECT 0x94.
#[tokio::test]
async fn topic_alias_when_aliases_are_off_disconnects_with_0x94() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_topic_alias = 0).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("no-alias")).await;
    assert!(ack.props.get(TOPIC_ALIAS_MAXIMUM).is_none(), "{ack:?}");
    let props = Props::new().u16(TOPIC_ALIAS, 1);
    client
        .send(&Publish::new("a/t", 0, b"m").props(props).bytes())
        .await;
    client.expect_disconnect(0x94).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4: "Topic Alias mappings exist only within a Network Connection":
/// after reconnecting to the same session, an alias set on the old connection is
/// unknown, and using it with an empty topic is a Protocol Error (0x82).
#[tokio::test]
async fn inbound_topic_aliases_do_not_outlive_the_connection() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("alias-again", 30);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    let alias = || Props::new().u16(TOPIC_ALIAS, 1);
    client
        .publish(&Publish::new("al/t", 1, b"set").props(alias()))
        .await;
    client
        .publish(&Publish::new("", 1, b"used").pkid(2).props(alias()))
        .await;
    client.disconnect().await;
    let (mut client, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present);
    client
        .send(&Publish::new("", 1, b"stale").pkid(3).props(alias()).bytes())
        .await;
    client.expect_disconnect_explained(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.3 [MQTT-3.14.2-3]: the server leaves the Reason String off a
/// DISCONNECT that it would make larger than the client's Maximum Packet Size, and
/// still sends the reason code. The CONNACK fits too [MQTT-3.1.2-24]: the client checks
/// every packet against the limit it announced; the CONNACK leaves out the properties
/// whose absence says the same ("… Available" = 1) to fit.
#[tokio::test]
async fn disconnect_stays_within_the_clients_maximum_packet_size() {
    let broker = TestBroker::start().await;
    let (mut client, connack) =
        Client::connect(&broker, &Connect::new("tiny").maximum_packet_size(16)).await;
    assert_eq!(connack.reason, SUCCESS);
    client.send(&auth(0x19, &Props::new())).await;
    let d = client.expect_disconnect(0x82).await;
    assert!(d.raw.len() <= 16, "{} bytes: {d:?}", d.raw.len());
    broker.stop().await;
}

/// MQTT 5.0 §3.8.2.1.2: "It is a Protocol Error if the Subscription Identifier has a
/// value of 0": DISCONNECT 0x82.
#[tokio::test]
async fn subscription_identifier_zero_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "sid0").await;
    let props = Props::new().varint(SUBSCRIPTION_IDENTIFIER, 0);
    client.send(&subscribe(1, &props, &[("s/#", 0)])).await;
    client.expect_disconnect(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.2.1.2: "It is a Protocol Error to include the Subscription Identifier
/// more than once" in SUBSCRIBE: DISCONNECT 0x82.
#[tokio::test]
async fn two_subscription_identifiers_in_subscribe_disconnect_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "sid2").await;
    let props = Props::new()
        .varint(SUBSCRIPTION_IDENTIFIER, 1)
        .varint(SUBSCRIPTION_IDENTIFIER, 2);
    client.send(&subscribe(1, &props, &[("s/#", 0)])).await;
    client.expect_disconnect(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3":
/// DISCONNECT 0x82.
#[tokio::test]
async fn retain_handling_3_disconnects_with_0x82() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "rh3").await;
    // Retain Handling 3: both of its bits set.
    client
        .send(&subscribe(
            1,
            &Props::new(),
            &[("s/#", RETAIN_HANDLING_NEW | RETAIN_HANDLING_NEVER)],
        ))
        .await;
    client.expect_disconnect(0x82).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.8.3-5]: the reserved bits 6 and 7 of the subscription
/// options must be 0; otherwise the packet is malformed: DISCONNECT 0x81.
#[tokio::test]
async fn reserved_subscription_option_bits_disconnect_with_0x81() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "reserved-bits").await;
    client
        .send(&subscribe(1, &Props::new(), &[("s/#", 0x40 | 1)]))
        .await;
    client.expect_disconnect(0x81).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.1 [MQTT-3.3.2-2]: a topic name with a wildcard is not a valid topic
/// name: DISCONNECT 0x90 (Topic Name invalid).
#[tokio::test]
async fn publish_to_a_wildcard_topic_disconnects_with_0x90() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "wild-pub").await;
    client.send(&Publish::new("a/+/c", 0, b"m").bytes()).await;
    client.expect_disconnect(0x90).await;
    broker.stop().await;
}

/// MQTT 3.1.1 has no server DISCONNECT: a 3.1.1 connection taken over, or one sending
/// a packet above the maximum size, is closed without a byte, while an MQTT 5.0 client
/// on the same broker is told why.
#[tokio::test]
async fn mqtt_3_1_1_connections_are_closed_without_disconnect() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_packet_size.0 = 100).await;
    let mut old = broker.client("v311-twin", true).await;
    let _new = broker.client("v311-twin", true).await;
    assert_eq!(old.recv_frame().await, None, "closed without DISCONNECT");

    let mut big = broker.client("v311-big", true).await;
    let mut body = crate::common::field(b"t");
    body.extend_from_slice(&[b'x'; 200]);
    big.send(&crate::common::frame(0x30, &body)).await;
    assert_eq!(big.recv_frame().await, None, "closed without DISCONNECT");

    let mut v5_big = Client::new(&broker, "v5-big").await;
    v5_big
        .send(&Publish::new("t", 0, &[b'x'; 200]).bytes())
        .await;
    v5_big.expect_disconnect(0x95).await;
    broker.stop().await;
}
