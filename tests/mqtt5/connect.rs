//! CONNECT and CONNACK: what the server announces, assigns and refuses.

use herald::protocol::QoS;

use crate::common::{self, TestBroker};
use crate::v5::*;

/// MQTT 5.0 §3.2.2.3: a successful CONNACK announces the server's limits and features —
/// Receive Maximum (max_inflight_messages), Retain Available, Topic Alias Maximum,
/// wildcard, subscription identifier and shared subscription support — and leaves out
/// what is at its default (Maximum QoS 2, no Maximum Packet Size), each property once.
#[tokio::test]
async fn connack_announces_the_servers_capabilities() {
    let broker = TestBroker::start().await;
    let (_client, ack) = Client::try_connect(&broker, &Connect::new("caps")).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    assert!(!ack.session_present);
    let p = &ack.props;
    assert_eq!(p.u16(RECEIVE_MAXIMUM), Some(20), "{p:?}");
    assert_eq!(p.byte(RETAIN_AVAILABLE), Some(1), "{p:?}");
    assert_eq!(p.u16(TOPIC_ALIAS_MAXIMUM), Some(10), "{p:?}");
    assert_eq!(p.byte(WILDCARD_SUBSCRIPTION_AVAILABLE), Some(1));
    assert_eq!(p.byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE), Some(1));
    assert_eq!(p.byte(SHARED_SUBSCRIPTION_AVAILABLE), Some(1));
    for absent in [
        MAXIMUM_QOS,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        REASON_STRING,
    ] {
        assert!(p.get(absent).is_none(), "{absent:#04x} in {p:?}");
    }
    for (property, _) in &p.0 {
        let count = p.0.iter().filter(|(id, _)| id == property).count();
        assert_eq!(count, 1, "{property:#04x} repeated in {p:?}");
    }
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.3.3, §3.2.2.3.4, §3.2.2.3.6, §3.2.2.3.8: a configured limit is
/// announced — Receive Maximum, Maximum QoS 1, Maximum Packet Size — and Topic Alias
/// Maximum is left out (meaning 0) when topic aliases are off.
#[tokio::test]
async fn connack_announces_configured_limits() {
    let broker = TestBroker::start_with(|c| {
        c.mqtt.max_qos.0 = QoS::AtLeastOnce;
        c.mqtt.max_packet_size.0 = 1000;
        c.mqtt.max_inflight_messages.0 = 5;
        c.mqtt.max_topic_alias = 0;
    })
    .await;
    let (_client, ack) = Client::try_connect(&broker, &Connect::new("limits")).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    let p = &ack.props;
    assert_eq!(p.u16(RECEIVE_MAXIMUM), Some(5), "{p:?}");
    assert_eq!(p.byte(MAXIMUM_QOS), Some(1), "{p:?}");
    assert_eq!(p.u32(MAXIMUM_PACKET_SIZE), Some(1000), "{p:?}");
    assert!(p.get(TOPIC_ALIAS_MAXIMUM).is_none(), "{p:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.1 and §3.2.2.3.7: a zero-length client id is accepted with Clean
/// Start 1 and with Clean Start 0, and the CONNACK carries an Assigned Client
/// Identifier, different for each client, under which the session can be resumed.
#[tokio::test]
async fn empty_client_id_is_assigned_an_identifier() {
    let broker = TestBroker::start().await;
    let (_first, ack1) = Client::try_connect(&broker, &Connect::new("")).await;
    assert_eq!(ack1.reason, 0x00, "{ack1:?}");
    let id1 = ack1
        .props
        .str(ASSIGNED_CLIENT_IDENTIFIER)
        .expect("Assigned Client Identifier")
        .to_string();
    let (second, ack2) = Client::try_connect(&broker, &Connect::resume("", 60)).await;
    assert_eq!(ack2.reason, 0x00, "{ack2:?}");
    assert!(!ack2.session_present);
    let id2 = ack2
        .props
        .str(ASSIGNED_CLIENT_IDENTIFIER)
        .expect("Assigned Client Identifier")
        .to_string();
    assert!(!id1.is_empty() && !id2.is_empty());
    assert_ne!(id1, id2);

    second.disconnect().await;
    let (_again, ack) = Client::try_connect(&broker, &Connect::resume(&id2, 60)).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    assert!(ack.session_present, "the assigned id names the session");
    assert!(ack.props.get(ASSIGNED_CLIENT_IDENTIFIER).is_none());
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.3.14: a keep alive above max_keepalive_secs, or 0 (none) where
/// there is a maximum, is replaced by the server's, sent as Server Keep Alive; a keep
/// alive within the maximum is left alone and no Server Keep Alive is sent.
#[tokio::test]
async fn server_keep_alive_replaces_a_keep_alive_above_the_maximum() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 30).await;
    for (asked, told) in [(60, Some(30)), (0, Some(30)), (20, None), (30, None)] {
        let (_client, ack) =
            Client::try_connect(&broker, &Connect::new("ka").keep_alive(asked)).await;
        assert_eq!(ack.reason, 0x00, "{ack:?}");
        assert_eq!(
            ack.props.u16(SERVER_KEEP_ALIVE),
            told,
            "keep alive {asked}: {ack:?}"
        );
    }
    broker.stop().await;
}

/// An MQTT 3.1.1 client asking for more than max_keepalive_secs has no Server Keep
/// Alive to be told: it is refused with CONNACK return code 0x02, as Mosquitto does.
#[tokio::test]
async fn mqtt_3_1_1_keep_alive_above_the_maximum_is_refused_with_code_2() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 30).await;
    let mut client = broker.raw().await;
    client
        .send_packet(common::connect_packet("ka311", true, 60))
        .await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x20, 0x02, 0x00, 0x02])
    );
    assert_eq!(client.recv_frame().await, None, "then closed");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.9 and §4.12: the broker supports no extended authentication, so a
/// CONNECT naming an Authentication Method is refused with 0x8C (Bad authentication
/// method) and the connection closed.
#[tokio::test]
async fn authentication_method_is_refused_with_0x8c() {
    let broker = TestBroker::start().await;
    let connect =
        Connect::new("auth").props(Props::new().str(AUTHENTICATION_METHOD, "SCRAM-SHA-256"));
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x8C, "{ack:?}");
    assert!(!ack.session_present);
    client.expect_closed().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.3.4 [MQTT-3.2.2-12]: a will QoS above the Maximum QoS is refused
/// with CONNACK 0x9B (QoS not supported).
#[tokio::test]
async fn will_qos_above_maximum_qos_is_refused_with_0x9b() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_qos.0 = QoS::AtLeastOnce).await;
    let connect = Connect::new("willqos").will(Will::new("w/t", b"bye").qos(2));
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x9B, "{ack:?}");
    client.expect_closed().await;
    // At the Maximum QoS it is accepted.
    let connect = Connect::new("willqos").will(Will::new("w/t", b"bye").qos(1));
    let (_client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    broker.stop().await;
}

/// MQTT 5.0 §2.2.2.2: a property not valid in its packet makes it a Malformed Packet;
/// a CONNECT that says it is level 5 is answered with CONNACK 0x81 and closed.
#[tokio::test]
async fn connect_with_a_property_not_allowed_in_it_gets_connack_0x81() {
    let broker = TestBroker::start().await;
    // Payload Format Indicator belongs to PUBLISH and the will, not CONNECT.
    let connect = Connect::new("badprop").props(Props::new().byte(PAYLOAD_FORMAT_INDICATOR, 1));
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x81, "{ack:?}");
    client.expect_closed().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: "It is a Protocol Error to include the Session Expiry Interval
/// more than once": CONNACK 0x82, then the connection is closed.
#[tokio::test]
async fn connect_with_a_repeated_property_gets_connack_0x82() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("dupprop").props(
        Props::new()
            .u32(SESSION_EXPIRY_INTERVAL, 10)
            .u32(SESSION_EXPIRY_INTERVAL, 20),
    );
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x82, "{ack:?}");
    client.expect_closed().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.3: "It is a Protocol Error to include the Receive
/// Maximum value of 0": CONNACK 0x82.
#[tokio::test]
async fn connect_with_receive_maximum_zero_gets_connack_0x82() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("rm0").receive_maximum(0);
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x82, "{ack:?}");
    client.expect_closed().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.2 [MQTT-3.1.2-2]: a protocol level the server does not support is
/// answered with a CONNACK saying so — 0x84 in 5.0's form, or return code 0x01 in the
/// 3.1.1 form a client of an unknown version can read — and the connection closed.
#[tokio::test]
async fn unsupported_protocol_level_is_refused() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("level6");
    let mut client = Client::open(&broker).await;
    client
        .send(&connect.bytes_with(b"MQTT", 6, connect.flags()))
        .await;
    // Read undecoded: the 3.1.1 form is no MQTT 5.0 CONNACK.
    let frame = client.raw.recv_frame().await.expect("a CONNACK");
    assert!(
        frame == [0x20, 0x02, 0x00, 0x01] || (frame[0] == 0x20 && frame.get(3) == Some(&0x84)),
        "{frame:02x?}"
    );
    client.expect_closed().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11: a CONNECT carrying every property a client may send (besides
/// authentication) is accepted.
#[tokio::test]
async fn connect_with_every_client_property_is_accepted() {
    let broker = TestBroker::start().await;
    let props = Props::new()
        .byte(REQUEST_RESPONSE_INFORMATION, 1)
        .byte(REQUEST_PROBLEM_INFORMATION, 1)
        .user("app", "tests")
        .user("app", "again");
    let will_props = Props::new()
        .u32(WILL_DELAY_INTERVAL, 5)
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .u32(MESSAGE_EXPIRY_INTERVAL, 30)
        .str(CONTENT_TYPE, "text/plain")
        .str(RESPONSE_TOPIC, "w/reply")
        .bin(CORRELATION_DATA, b"c")
        .user("w", "1");
    let connect = Connect::new("everything")
        .expiry(10)
        .receive_maximum(5)
        .maximum_packet_size(4096)
        .topic_alias_maximum(3)
        .props(props)
        .will(Will::new("w/t", b"bye").qos(1).props(will_props))
        .username("user")
        .password(b"secret");
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x00, "{ack:?}");
    client.ping().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.2.2.2: a refusal is told in 5.0's reason codes — 0x87 (Not authorized)
/// for an anonymous client where anonymous access is off, 0x86 (Bad User Name or
/// Password) for credentials that cannot be verified — while a 3.1.1 client gets the
/// 3.1.1 return code 0x05.
#[tokio::test]
async fn refusals_use_the_reason_codes_of_the_clients_version() {
    let broker = TestBroker::start_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let (mut anonymous, ack) = Client::try_connect(&broker, &Connect::new("anon")).await;
    assert_eq!(ack.reason, 0x87, "{ack:?}");
    anonymous.expect_closed().await;
    let named = Connect::new("named").username("who").password(b"pw");
    let (mut named, ack) = Client::try_connect(&broker, &named).await;
    assert_eq!(ack.reason, 0x86, "{ack:?}");
    named.expect_closed().await;
    let mut v311 = broker.raw().await;
    v311.send_packet(common::connect_packet("anon311", true, 60))
        .await;
    assert_eq!(v311.recv_frame().await, Some(vec![0x20, 0x02, 0x00, 0x05]));
    broker.stop().await;
}
