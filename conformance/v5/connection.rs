//! MQTT 5.0 conformance: see coverage.rs for how statements are named.
//!
//! Connecting, CONNACK, sessions and their expiry, wills and will delay, keep alive,
//! DISCONNECT both ways, authentication and how the broker meets malformed or forbidden
//! input, each shown on the wire against a running broker by MQTT 5.0 clients made of
//! raw bytes (tests/common/v5). Where a test must show that something did *not*
//! happen, it sends a marker afterwards down the same path and asserts the marker
//! arrives first.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/v5/mod.rs"]
mod v5;

use std::time::{Duration, Instant};

use common::{field, frame, TestBroker};
use v5::*;

/// Publishes a QoS 0 marker on `topic` from a fresh client.
async fn marker(broker: &TestBroker, topic: &str) {
    let mut publisher = Client::new(broker, "marker").await;
    publisher.publish(&Publish::new(topic, 0, b"marker")).await;
    publisher.disconnect().await;
}

/// Asserts a refusing CONNACK with `reason` and Session Present 0, and the close
/// right after it with no DISCONNECT.
async fn expect_refused(client: &mut Client, ack: &ConnAck, reason: u8) {
    assert_eq!(ack.reason, reason, "{ack:?}");
    assert!(
        !ack.session_present,
        "refusal with Session Present 1: {ack:?}"
    );
    client.expect_closed().await;
}

// ---- CONNECT and CONNACK ----

/// MQTT-3.1.4-5: a valid CONNECT is answered with CONNACK reason code 0x00.
/// MQTT-3.2.0-1: that CONNACK is the first packet the broker sends.
/// MQTT-3.2.2-1: its acknowledge flags byte has bits 7-1 zero (the whole byte is 0 for
/// a new session).
/// MQTT-3.2.2-8: its reason code is a defined Connect Reason Code.
/// MQTT-3.1.2-28: a client asking for no Response Information (0) gets none; nor does
/// one that does not ask at all.
/// MQTT-4.12.0-6: without an Authentication Method in CONNECT the CONNACK carries none
/// and no AUTH ever arrives (the ping round trip after it is the next packet).
#[tokio::test]
async fn valid_connect_is_acknowledged_with_0x00_and_the_servers_limits() {
    let broker = TestBroker::start().await;
    let plain = Connect::new("plain");
    let no_info = Connect::new("no-info").props(Props::new().byte(REQUEST_RESPONSE_INFORMATION, 0));
    for connect in [plain, no_info] {
        let (mut client, ack) = Client::connect(&broker, &connect).await;
        assert_eq!(&ack.raw[2..4], &[0x00, 0x00], "{ack:?}");
        assert!(!ack.props.has(RESPONSE_INFORMATION), "{ack:?}");
        assert!(!ack.props.has(AUTHENTICATION_METHOD), "{ack:?}");
        assert!(!ack.props.has(AUTHENTICATION_DATA), "{ack:?}");
        // What Herald announces: its limits and features.
        assert_eq!(ack.props.u16(RECEIVE_MAXIMUM), Some(20), "{ack:?}");
        assert_eq!(ack.props.byte(RETAIN_AVAILABLE), Some(1), "{ack:?}");
        assert_eq!(ack.props.u16(TOPIC_ALIAS_MAXIMUM), Some(10), "{ack:?}");
        assert_eq!(ack.props.byte(WILDCARD_SUBSCRIPTION_AVAILABLE), Some(1));
        assert_eq!(ack.props.byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE), Some(1));
        assert_eq!(ack.props.byte(SHARED_SUBSCRIPTION_AVAILABLE), Some(1));
        assert!(!ack.props.has(MAXIMUM_QOS), "QoS 2 is supported: {ack:?}");
        assert!(!ack.props.has(MAXIMUM_PACKET_SIZE), "no limit set: {ack:?}");
        assert!(!ack.props.has(ASSIGNED_CLIENT_IDENTIFIER), "{ack:?}");
        assert!(!ack.props.has(SERVER_KEEP_ALIVE), "{ack:?}");
        client.ping().await;
        client.disconnect().await;
    }
}

/// MQTT-3.2.2-9: a broker limited to QoS 0 or QoS 1 says so with Maximum QoS in CONNACK.
/// MQTT-3.2.2-10: it still accepts SUBSCRIBE at QoS 0, 1 and 2, granting at most its
/// maximum, and delivers within it.
/// MQTT-4.13.1-1: a PUBLISH above the Maximum QoS is a protocol error: DISCONNECT 0x9B
/// and the close.
#[tokio::test]
async fn limited_qos_is_announced_and_subscriptions_still_accepted() {
    for max in [0u8, 1] {
        let broker = TestBroker::start_with(|c| {
            c.mqtt.max_qos = herald::config::MaxQos(match max {
                0 => herald::protocol::QoS::AtMostOnce,
                _ => herald::protocol::QoS::AtLeastOnce,
            })
        })
        .await;
        let (mut client, ack) = Client::connect(&broker, &Connect::new("limited")).await;
        assert_eq!(ack.props.byte(MAXIMUM_QOS), Some(max), "{ack:?}");
        let codes = client
            .subscribe(1, &[("q/0", 0), ("q/1", 1), ("q/2", 2)])
            .await;
        assert_eq!(codes, vec![0, max.min(1), max], "max_qos {max}");
        let mut publisher = Client::new(&broker, "pub").await;
        publisher
            .publish(&Publish::new("q/2", max, b"within").pkid(1))
            .await;
        let got = client.expect_message("q/2", b"within").await;
        assert_eq!(got.qos, max);
        publisher
            .send(&Publish::new("q/2", max + 1, b"above").pkid(2).bytes())
            .await;
        publisher.expect_disconnect(QOS_NOT_SUPPORTED).await;
        client.ping().await;
    }
}

/// MQTT-3.1.0-2: a second CONNECT is a protocol error: the broker sends DISCONNECT 0x82
/// and closes the connection.
/// MQTT-3.2.0-2: it is not answered with a second CONNACK.
/// MQTT-4.13.1-1: the protocol error closes the connection.
/// MQTT-3.14.4-1: after its DISCONNECT the broker sends nothing more.
/// MQTT-3.14.4-2: and closes the connection.
#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::new("twice")).await;
    let mut again = Connect::new("twice").bytes();
    again.extend(PINGREQ);
    client.send(&again).await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}

/// MQTT-3.1.2-1: a CONNECT whose protocol name is not "MQTT" is not processed: at most
/// a CONNACK 0x84, then the close; the PUBLISH right behind it is not processed either.
/// MQTT-3.1.4-1: the nonconforming CONNECT closes the connection.
/// MQTT-3.14.0-1: no DISCONNECT is sent, as no successful CONNACK was.
#[tokio::test]
async fn wrong_protocol_name_is_not_processed() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("name/#", 0)]).await;
    for name in [&b"MQTX"[..], b"mqtt", b"MQTT\0"] {
        let mut client = Client::open(&broker).await;
        let mut bytes = Connect::new("named").bytes_with(name, 5, 0x02);
        bytes.extend(Publish::new("name/x", 0, b"processed").bytes());
        client.send(&bytes).await;
        match client.recv().await {
            None => {}
            Some(Packet::ConnAck(ack)) => {
                expect_refused(&mut client, &ack, UNSUPPORTED_PROTOCOL_VERSION).await
            }
            Some(other) => panic!("expected the close or CONNACK 0x84, got {other:?}"),
        }
    }
    marker(&broker, "name/marker").await;
    sub.expect_message("name/marker", b"marker").await;
}

/// MQTT-3.1.2-2: protocol levels other than 3, 4 and 5 under the name "MQTT" are refused
/// with a CONNACK the client can read whatever its version (20 02 00 01, 3.1.1's
/// "unacceptable protocol version"), then the close.
/// MQTT-3.14.0-1: no DISCONNECT follows that refusal.
#[tokio::test]
async fn unsupported_protocol_level_is_refused() {
    let broker = TestBroker::start().await;
    for level in [0u8, 2, 6, 255] {
        let mut client = Client::open(&broker).await;
        client
            .send(&Connect::new("level").bytes_with(b"MQTT", level, 0x02))
            .await;
        assert_eq!(
            client.raw.recv_frame().await,
            Some(vec![0x20, 0x02, 0x00, 0x01]),
            "level {level}"
        );
        client.expect_closed().await;
    }
}

/// MQTT-3.1.2-3: a CONNECT with the reserved flag set is malformed: CONNACK 0x81.
/// MQTT-3.1.4-1: the nonconforming CONNECT closes the connection.
/// MQTT-3.2.2-6: the refusing CONNACK has Session Present 0, although a session exists.
/// MQTT-3.2.2-7: the connection closes after the CONNACK with a code of 0x80 or above.
/// MQTT-3.14.0-1: no DISCONNECT is sent instead of or after that CONNACK.
/// MQTT-4.13.2-1: the reason code above 0x80 ends the connection.
#[tokio::test]
async fn connect_reserved_flag_is_malformed() {
    let broker = TestBroker::start().await;
    let (client, _) = Client::connect(&broker, &Connect::resume("reserved", 60)).await;
    client.disconnect().await;
    let connect = Connect::resume("reserved", 60);
    let mut client = Client::open(&broker).await;
    client
        .send(&connect.bytes_with(b"MQTT", 5, connect.flags() | 0x01))
        .await;
    let ack = client.expect_connack().await;
    expect_refused(&mut client, &ack, MALFORMED_PACKET).await;
}

/// MQTT-3.1.4-1: CONNECTs that break section 3.1 are refused with CONNACK 0x81
/// (malformed) or 0x82 (protocol error) and closed: Will QoS 3, Will QoS or Will Retain
/// without the Will Flag, a property CONNECT may not carry, an unknown property, a
/// repeated property, a Receive Maximum or Maximum Packet Size of 0, a Request Problem
/// Information of 2, a truncated property list, and trailing bytes.
/// MQTT-3.2.2-6: each refusal has Session Present 0.
/// MQTT-3.2.2-7: each is followed by the close.
/// MQTT-3.2.2-8: only defined Connect Reason Codes are used.
/// MQTT-4.13.1-1: the broker closes the connection on each malformed or erroneous CONNECT.
/// MQTT-3.14.0-1: none of them gets a DISCONNECT.
#[tokio::test]
async fn nonconforming_connects_are_refused_and_closed() {
    let broker = TestBroker::start().await;
    let base = Connect::new("bad");
    let will = base.clone().will(Will::new("w", b"w"));
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "will QoS 3",
            will.bytes_with(b"MQTT", 5, will.flags() | 0x18),
            &[MALFORMED_PACKET],
        ),
        (
            "will QoS without will flag",
            base.bytes_with(b"MQTT", 5, 0x02 | 0x08),
            &[MALFORMED_PACKET, PROTOCOL_ERROR],
        ),
        (
            "will retain without will flag",
            base.bytes_with(b"MQTT", 5, 0x02 | 0x20),
            &[MALFORMED_PACKET, PROTOCOL_ERROR],
        ),
        (
            "Topic Alias in CONNECT",
            base.clone().props(Props::new().u16(TOPIC_ALIAS, 1)).bytes(),
            &[MALFORMED_PACKET, PROTOCOL_ERROR],
        ),
        (
            "unknown property 0x7f",
            base.clone().props(Props::new().byte(0x7f, 1)).bytes(),
            &[MALFORMED_PACKET],
        ),
        (
            "Session Expiry Interval twice",
            base.clone()
                .expiry(1)
                .props(Props::new().u32(SESSION_EXPIRY_INTERVAL, 2))
                .bytes(),
            &[PROTOCOL_ERROR],
        ),
        (
            "Receive Maximum 0",
            base.clone().receive_maximum(0).bytes(),
            &[PROTOCOL_ERROR],
        ),
        (
            "Maximum Packet Size 0",
            base.clone().maximum_packet_size(0).bytes(),
            &[PROTOCOL_ERROR],
        ),
        (
            "Request Problem Information 2",
            base.clone()
                .props(Props::new().byte(REQUEST_PROBLEM_INFORMATION, 2))
                .bytes(),
            &[PROTOCOL_ERROR],
        ),
        (
            "property list longer than the packet",
            {
                let mut bytes = base.bytes();
                // Keep alive is at 10..12; the Property Length at 12: claim 100 bytes.
                bytes[12] = 100;
                bytes
            },
            &[MALFORMED_PACKET],
        ),
        (
            "trailing bytes",
            {
                let mut body = base.bytes()[2..].to_vec();
                body.extend([0, 0]);
                frame(0x10, &body)
            },
            &[MALFORMED_PACKET],
        ),
    ];
    for (what, bytes, codes) in cases {
        let mut client = Client::open(&broker).await;
        client.send(&bytes).await;
        let ack = client.expect_connack().await;
        assert!(codes.contains(&ack.reason), "{what}: {ack:?}");
        expect_refused(&mut client, &ack, ack.reason).await;
    }
}

/// MQTT-3.1.3-6: an empty client id is accepted and the broker assigns one, unique:
/// two such clients get different ids, neither that of a connected client.
/// MQTT-3.1.3-7: the CONNACK returns it as Assigned Client Identifier, and the session
/// is kept under it: reconnecting with it resumes the session.
/// MQTT-3.2.2-16: the Assigned Client Identifier is new and not used by another session.
#[tokio::test]
async fn empty_client_id_gets_a_unique_assigned_identifier() {
    let broker = TestBroker::start().await;
    let (_named, _) = Client::connect(&broker, &Connect::new("auto-named")).await;
    let (first, ack1) = Client::connect(&broker, &Connect::new("").expiry(60)).await;
    let (_second, ack2) = Client::connect(&broker, &Connect::new("")).await;
    let id1 = ack1
        .props
        .str(ASSIGNED_CLIENT_IDENTIFIER)
        .expect("assigned id")
        .to_string();
    let id2 = ack2
        .props
        .str(ASSIGNED_CLIENT_IDENTIFIER)
        .expect("assigned id")
        .to_string();
    assert!(!id1.is_empty() && !id2.is_empty());
    assert_ne!(id1, id2);
    assert_ne!(id1, "auto-named");
    assert_ne!(id2, "auto-named");
    let mut first = first;
    first.subscribe(1, &[("assigned/t", 1)]).await;
    first.disconnect().await;

    let (mut resumed, ack) = Client::connect(&broker, &Connect::resume(&id1, 60)).await;
    assert!(ack.session_present, "{ack:?}");
    assert!(!ack.props.has(ASSIGNED_CLIENT_IDENTIFIER), "{ack:?}");
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("assigned/t", 1, b"kept"))
        .await;
    resumed.expect_message("assigned/t", b"kept").await;
}

/// MQTT-3.1.3-5: client ids of 1 to 23 bytes of 0-9, a-z and A-Z are accepted.
#[tokio::test]
async fn short_alphanumeric_client_ids_are_accepted() {
    let broker = TestBroker::start().await;
    for id in [
        "a",
        "Z",
        "0",
        "abcdefghijklmnopqrstuvw",
        "ABCDEFGHIJKLMNOPQRSTUVW",
        "a1B2c3",
    ] {
        let (mut client, ack) = Client::connect(&broker, &Connect::new(id)).await;
        assert!(!ack.props.has(ASSIGNED_CLIENT_IDENTIFIER));
        client.ping().await;
        client.disconnect().await;
    }
}

/// MQTT-3.1.3-2: the client id keys the session: two ids get two sessions, each
/// resumed with its own subscription.
#[tokio::test]
async fn client_id_keys_the_session() {
    let broker = TestBroker::start().await;
    for (id, filter) in [("key-a", "key/a"), ("key-b", "key/b")] {
        let (mut client, ack) = Client::connect(&broker, &Connect::resume(id, 60)).await;
        assert!(!ack.session_present);
        client.subscribe(1, &[(filter, 1)]).await;
        client.disconnect().await;
    }
    let (mut a, ack) = Client::connect(&broker, &Connect::resume("key-a", 60)).await;
    assert!(ack.session_present);
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("key/b", 1, b"b")).await;
    publisher.publish(&Publish::new("key/a", 1, b"a")).await;
    let got = a.expect_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("key/a", &b"a"[..]));
    let (mut b, ack) = Client::connect(&broker, &Connect::resume("key-b", 60)).await;
    assert!(ack.session_present);
    b.expect_message("key/b", b"b").await;
}

/// MQTT-3.1.4-3: a CONNECT with the client id of a connected client makes the broker
/// send the old connection DISCONNECT 0x8E and close it; the new one carries on.
/// MQTT-3.14.2-2: that DISCONNECT carries no Session Expiry Interval.
/// MQTT-3.14.4-1: nothing follows it on the old connection.
/// MQTT-3.14.4-2: the old connection is closed.
#[tokio::test]
async fn connecting_with_a_connected_client_id_takes_over() {
    let broker = TestBroker::start().await;
    let (mut old, _) = Client::connect(&broker, &Connect::resume("taken", 60)).await;
    old.subscribe(1, &[("taken/t", 0)]).await;
    let (mut new, ack) = Client::connect(&broker, &Connect::resume("taken", 60)).await;
    assert!(ack.session_present);
    old.expect_disconnect(SESSION_TAKEN_OVER).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("taken/t", 0, b"new")).await;
    new.expect_message("taken/t", b"new").await;
}

// ---- authentication ----

/// MQTT-4.12.0-1: a CONNECT naming an authentication method the broker does not support
/// is refused with CONNACK 0x8C, then the close.
/// MQTT-3.1.4-2: failing authentication closes the connection.
/// MQTT-3.2.2-6: Session Present is 0 although the client has a stored session.
/// MQTT-3.2.2-7: the 0x8C CONNACK is followed by the close.
/// MQTT-3.14.0-1: no DISCONNECT is sent.
/// MQTT-4.13.2-1: the reason code above 0x80 ends the connection.
#[tokio::test]
async fn authentication_method_is_refused_with_0x8c() {
    let broker = TestBroker::start().await;
    let (client, _) = Client::connect(&broker, &Connect::resume("authn", 60)).await;
    client.disconnect().await;
    for data in [None, Some(&b"secret"[..])] {
        let mut props = Props::new().str(AUTHENTICATION_METHOD, "SCRAM-SHA-1");
        if let Some(data) = data {
            props = props.bin(AUTHENTICATION_DATA, data);
        }
        let connect = Connect::resume("authn", 60).props(props);
        let (mut client, ack) = Client::try_connect(&broker, &connect).await;
        expect_refused(&mut client, &ack, BAD_AUTHENTICATION_METHOD).await;
    }
    // The stored session was not touched.
    let (_client, ack) = Client::connect(&broker, &Connect::resume("authn", 60)).await;
    assert!(ack.session_present);
}

/// MQTT-3.1.4-6: after refusing a CONNECT the broker processes nothing else the client
/// sent: a retained PUBLISH and a SUBSCRIBE right behind it have no effect.
#[tokio::test]
async fn refused_connect_ignores_what_follows() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("refused").props(Props::new().str(AUTHENTICATION_METHOD, "X"));
    let mut bytes = connect.bytes();
    bytes.extend(Publish::new("refused/t", 0, b"ignored").retain().bytes());
    bytes.extend(subscribe(1, &Props::new(), &[("refused/#", 0)]));
    let mut client = Client::open(&broker).await;
    client.send(&bytes).await;
    let ack = client.expect_connack().await;
    expect_refused(&mut client, &ack, BAD_AUTHENTICATION_METHOD).await;

    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("refused/marker", 0, b"marker").retain())
        .await;
    let mut sub = Client::new(&broker, "sub").await;
    assert_eq!(sub.subscribe(1, &[("refused/#", 0)]).await, vec![0]);
    let got = sub.expect_publish().await;
    assert_eq!(got.topic, "refused/marker", "{got:?}");
    sub.expect_nothing(QUIET).await;
}

/// MQTT-4.13.1-1: AUTH when no authentication method was agreed is a protocol error:
/// DISCONNECT 0x82, then the close.
/// MQTT-3.15.1-1: an AUTH whose fixed-header flags are not all zero is malformed:
/// DISCONNECT 0x81, then the close.
/// MQTT-4.12.0-6: the broker answers neither with an AUTH.
#[tokio::test]
async fn unexpected_auth_is_refused() {
    let broker = TestBroker::start().await;
    let reauth = Props::new().str(AUTHENTICATION_METHOD, "X");
    let cases = [
        (auth(0x18, &Props::new()), PROTOCOL_ERROR),
        (auth(0x19, &reauth), PROTOCOL_ERROR),
        (vec![0xf0, 0x00], PROTOCOL_ERROR),
        (frame(0xf1, &[0x00, 0x00]), MALFORMED_PACKET),
        (frame(0xf8, &[]), MALFORMED_PACKET),
    ];
    for (bytes, code) in cases {
        let mut client = Client::new(&broker, "auth").await;
        client.send(&bytes).await;
        client.expect_disconnect(code).await;
    }
}

// ---- sessions ----

/// MQTT-3.1.2-6: Clean Start 0 with no stored session creates one: Session Present 0.
/// MQTT-3.1.2-5: Clean Start 0 with a stored session resumes it: its subscription is
/// still in place.
/// MQTT-3.2.2-3: Session Present tells which: 0 the first time, 1 after.
/// MQTT-3.1.2-23: with a Session Expiry Interval above 0 the session outlives the
/// connection.
/// MQTT-3.1.4-4: each CONNECT gets this Clean Start processing.
#[tokio::test]
async fn clean_start_0_creates_then_resumes_the_session() {
    let broker = TestBroker::start().await;
    let (mut client, ack) = Client::connect(&broker, &Connect::resume("cs0", 60)).await;
    assert!(!ack.session_present, "{ack:?}");
    assert_eq!(ack.raw[2], 0x00);
    client.subscribe(1, &[("cs0/t", 1)]).await;
    client.disconnect().await;
    for _ in 0..2 {
        let (mut client, ack) = Client::connect(&broker, &Connect::resume("cs0", 60)).await;
        assert!(ack.session_present, "{ack:?}");
        assert_eq!(ack.raw[2], 0x01);
        let mut publisher = Client::new(&broker, "pub").await;
        publisher.publish(&Publish::new("cs0/t", 1, b"still")).await;
        let got = client.expect_message("cs0/t", b"still").await;
        client.complete(&got).await;
        client.disconnect().await;
    }
}

/// MQTT-3.2.0-1: on resuming a session with messages waiting, CONNACK comes first.
/// MQTT-3.1.2-5: QoS 1 and 2 messages that matched the session's subscription while
/// it was offline are delivered on resumption.
/// MQTT-3.1.2-23: the session, kept after its connection closed, held them.
/// MQTT-4.5.0-1: the broker added them to the offline session.
#[tokio::test]
async fn offline_session_queues_messages_and_connack_comes_first() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("offline", 60)).await;
    sub.subscribe(1, &[("offline/#", 2)]).await;
    sub.drop_connection().await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("offline/1", 1, b"one").pkid(1))
        .await;
    publisher
        .publish(&Publish::new("offline/2", 2, b"two").pkid(2))
        .await;

    let (mut sub, ack) = Client::connect(&broker, &Connect::resume("offline", 60)).await;
    assert!(ack.session_present);
    let one = sub.expect_message("offline/1", b"one").await;
    assert_eq!(one.qos, 1);
    let two = sub.expect_message("offline/2", b"two").await;
    assert_eq!(two.qos, 2);
}

/// MQTT-3.1.2-4: Clean Start 1 discards the stored session: its subscription and its
/// queued message are gone, and a new session begins.
/// MQTT-3.2.2-2: the accepted Clean Start 1 CONNACK has Session Present 0 although a
/// session was stored.
/// MQTT-3.1.4-4: the CONNECT gets this Clean Start processing.
#[tokio::test]
async fn clean_start_1_discards_the_session() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::resume("cs1", 60)).await;
    client.subscribe(1, &[("cs1/t", 1)]).await;
    client.disconnect().await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("cs1/t", 1, b"queued"))
        .await;

    let connect = Connect::new("cs1").expiry(60);
    let (mut client, ack) = Client::connect(&broker, &connect).await;
    assert!(!ack.session_present, "{ack:?}");
    assert_eq!(&ack.raw[2..4], &[0x00, 0x00]);
    client.subscribe(2, &[("cs1/marker", 0)]).await;
    publisher.publish(&Publish::new("cs1/t", 1, b"after")).await;
    publisher
        .publish(&Publish::new("cs1/marker", 0, b"m"))
        .await;
    client.expect_message("cs1/marker", b"m").await;
}

/// MQTT-4.1.0-2: a session with no Session Expiry Interval ends with its connection,
/// and one with an interval of 1 s is gone 1 s after: Session Present 0, no
/// subscription, no queued message.
/// MQTT-3.1.2-23: before its interval passes it is still there.
#[tokio::test]
async fn session_ends_when_its_expiry_interval_has_passed() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "pub").await;
    let (mut client, _) = Client::connect(&broker, &Connect::new("noexp").clean(false)).await;
    client.subscribe(1, &[("exp/t", 1)]).await;
    client.disconnect().await;
    let (client, ack) = Client::connect(&broker, &Connect::new("noexp").clean(false)).await;
    assert!(!ack.session_present, "no expiry: {ack:?}");
    client.disconnect().await;

    for (id, wait, kept) in [("exp-a", 0u64, true), ("exp-b", 1600, false)] {
        let (mut client, _) = Client::connect(&broker, &Connect::resume(id, 1)).await;
        client
            .subscribe(1, &[("exp/t", 1), ("exp/marker", 0)])
            .await;
        client.disconnect().await;
        publisher
            .publish(&Publish::new("exp/t", 1, b"queued"))
            .await;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let (mut client, ack) = Client::connect(&broker, &Connect::resume(id, 1)).await;
        assert_eq!(ack.session_present, kept, "{id}: {ack:?}");
        if kept {
            client.expect_message("exp/t", b"queued").await;
        } else {
            client.subscribe(2, &[("exp/marker", 0)]).await;
            publisher
                .publish(&Publish::new("exp/marker", 0, b"m"))
                .await;
            client.expect_message("exp/marker", b"m").await;
        }
        client.disconnect().await;
    }
}

/// MQTT-4.1.0-1: a session is not discarded while its connection is open, however long
/// past its Session Expiry Interval (1 s): after 2 s its subscription still delivers and
/// its unacknowledged message is still resent on the next connection.
/// MQTT-3.1.2-23: the session then outlives the connection.
#[tokio::test]
async fn session_is_kept_while_its_connection_is_open() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::resume("open", 1)).await;
    client.subscribe(1, &[("open/t", 1)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("open/t", 1, b"unacked"))
        .await;
    let first = client.expect_message("open/t", b"unacked").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.ping().await;
    }
    publisher
        .publish(&Publish::new("open/t", 1, b"later").pkid(2))
        .await;
    let later = client.expect_message("open/t", b"later").await;
    client.complete(&later).await;
    client.ping().await;
    client.drop_connection().await;
    let (mut client, ack) = Client::connect(&broker, &Connect::resume("open", 1)).await;
    assert!(ack.session_present);
    let again = client.expect_message("open/t", b"unacked").await;
    assert_eq!(again.pkid, first.pkid);
    assert!(again.dup);
}

/// MQTT-3.1.2-23: the Session Expiry Interval a DISCONNECT sets replaces the CONNECT's:
/// 0 ends the session with the connection, 60 keeps one that was to last 1 s.
/// MQTT-4.1.0-2: the session so shortened is gone at once.
/// MQTT-4.13.1-1: a DISCONNECT setting an interval when the CONNECT set none is a
/// protocol error: DISCONNECT 0x82 from the broker, and the close.
/// MQTT-3.14.2-2: the broker's DISCONNECT carries no Session Expiry Interval.
#[tokio::test]
async fn disconnect_changes_the_session_expiry() {
    let broker = TestBroker::start().await;
    // 60 → 0: gone.
    let (client, _) = Client::connect(&broker, &Connect::resume("dx-a", 60)).await;
    let mut client = client;
    client
        .send(&disconnect(
            0,
            &Props::new().u32(SESSION_EXPIRY_INTERVAL, 0),
        ))
        .await;
    client.expect_closed().await;
    let (client, ack) = Client::connect(&broker, &Connect::resume("dx-a", 60)).await;
    assert!(!ack.session_present, "{ack:?}");
    client.disconnect().await;
    // 1 → 60: kept past 1 s.
    let (mut client, _) = Client::connect(&broker, &Connect::resume("dx-b", 1)).await;
    client
        .send(&disconnect(
            0,
            &Props::new().u32(SESSION_EXPIRY_INTERVAL, 60),
        ))
        .await;
    client.expect_closed().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (client, ack) = Client::connect(&broker, &Connect::resume("dx-b", 60)).await;
    assert!(ack.session_present, "{ack:?}");
    client.disconnect().await;
    // 0 → 60: protocol error, and the session still ends with the connection.
    let (mut client, _) = Client::connect(&broker, &Connect::new("dx-c").clean(false)).await;
    client
        .send(&disconnect(
            0,
            &Props::new().u32(SESSION_EXPIRY_INTERVAL, 60),
        ))
        .await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
    let (_client, ack) = Client::connect(&broker, &Connect::resume("dx-c", 60)).await;
    assert!(!ack.session_present, "{ack:?}");
}

/// MQTT-3.1.2-23: a Session Expiry Interval of 0xFFFFFFFF keeps the session after the
/// connection closes (here, across 1.5 s and a second connection).
#[tokio::test]
async fn session_expiry_0xffffffff_does_not_expire() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::resume("forever", u32::MAX)).await;
    client.subscribe(1, &[("forever/t", 1)]).await;
    client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("forever/t", 1, b"kept"))
        .await;
    let (mut client, ack) = Client::connect(&broker, &Connect::resume("forever", u32::MAX)).await;
    assert!(ack.session_present);
    client.expect_message("forever/t", b"kept").await;
}

// ---- wills ----

/// MQTT-3.1.2-7: the will is stored with the session when the CONNECT has the Will Flag,
/// MQTT-3.1.2-8: and published when the connection drops without DISCONNECT, at its
/// QoS.
/// MQTT-3.1.2-14: a will with Will Retain 0 is published as a normal message: a
/// subscriber arriving later gets nothing.
#[tokio::test]
async fn will_is_published_when_the_connection_drops() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("will/#", 1)]).await;
    let connect = Connect::new("dying").will(Will::new("will/t", b"gone").qos(1));
    let (dying, _) = Client::connect(&broker, &connect).await;
    dying.drop_connection().await;
    let will = sub.expect_message("will/t", b"gone").await;
    assert_eq!(will.qos, 1);
    assert!(!will.retain);
    sub.complete(&will).await;

    let mut late = Client::new(&broker, "late").await;
    late.subscribe(1, &[("will/#", 1)]).await;
    marker(&broker, "will/marker").await;
    late.expect_message("will/marker", b"marker").await;
}

/// MQTT-3.1.2-15: a will with Will Retain 1 is published as a retained message: a later
/// subscriber gets it with RETAIN 1.
#[tokio::test]
async fn will_retain_1_is_retained() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("dying").will(Will::new("rwill/t", b"kept").retain());
    let (dying, _) = Client::connect(&broker, &connect).await;
    dying.drop_connection().await;
    let mut late = Client::new(&broker, "late").await;
    late.subscribe(1, &[("rwill/#", 0)]).await;
    let will = late.expect_message("rwill/t", b"kept").await;
    assert!(will.retain);
}

/// MQTT-3.14.4-3: on DISCONNECT 0x00 the broker discards the will without publishing it.
/// MQTT-3.1.2-10: the will is removed from the session on that DISCONNECT: the session,
/// resumed and then dropped without a will of its own, publishes nothing either.
#[tokio::test]
async fn disconnect_0x00_discards_the_will() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("dwill/#", 0)]).await;
    for bytes in [NORMAL_DISCONNECT.to_vec(), disconnect(0, &Props::new())] {
        let connect = Connect::resume("leaving", 60).will(Will::new("dwill/t", b"no"));
        let (mut leaving, _) = Client::connect(&broker, &connect).await;
        leaving.send(&bytes).await;
        leaving.expect_closed().await;
    }
    let (leaving, _) = Client::connect(&broker, &Connect::resume("leaving", 60)).await;
    leaving.drop_connection().await;
    marker(&broker, "dwill/marker").await;
    sub.expect_message("dwill/marker", b"marker").await;
}

/// MQTT-3.1.2-8: a DISCONNECT with reason 0x04 (Disconnect with Will Message) does not
/// cancel the will: it is published.
/// MQTT-3.1.2-10: once published the will is removed: the session, resumed without a
/// will and dropped, publishes nothing more.
#[tokio::test]
async fn disconnect_with_will_message_publishes_the_will() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("w4/#", 0)]).await;
    let connect = Connect::resume("w4", 60).will(Will::new("w4/t", b"asked"));
    let (mut client, _) = Client::connect(&broker, &connect).await;
    client
        .send(&disconnect(DISCONNECT_WITH_WILL, &Props::new()))
        .await;
    client.expect_closed().await;
    sub.expect_message("w4/t", b"asked").await;
    let (client, _) = Client::connect(&broker, &Connect::resume("w4", 60)).await;
    client.drop_connection().await;
    marker(&broker, "w4/marker").await;
    sub.expect_message("w4/marker", b"marker").await;
}

/// MQTT-3.1.2-8: a will with a Will Delay Interval of 1 s is published once the delay
/// has passed, not before.
#[tokio::test]
async fn will_delay_holds_the_will_back() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("delay/#", 0)]).await;
    let connect = Connect::resume("delayed", 60).will(Will::new("delay/t", b"late").delay(1));
    let (client, _) = Client::connect(&broker, &connect).await;
    let dropped = Instant::now();
    client.drop_connection().await;
    sub.expect_nothing(Duration::from_millis(700)).await;
    sub.expect_message("delay/t", b"late").await;
    let after = dropped.elapsed();
    assert!(
        after >= Duration::from_millis(950),
        "published after {after:?}"
    );
}

/// MQTT-3.1.3-9: a client that reconnects before its Will Delay Interval has passed
/// cancels the will: it is never published.
/// MQTT-3.1.2-8: the will published "unless cancelled" — here, cancelled.
#[tokio::test]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("cancel/#", 0)]).await;
    let connect = Connect::resume("back", 60).will(Will::new("cancel/t", b"no").delay(1));
    let (client, _) = Client::connect(&broker, &connect).await;
    client.drop_connection().await;
    let (mut client, ack) = Client::connect(&broker, &Connect::resume("back", 60)).await;
    assert!(ack.session_present);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.ping().await;
    marker(&broker, "cancel/marker").await;
    sub.expect_message("cancel/marker", b"marker").await;
}

/// MQTT-3.1.2-8: when the session ends before the Will Delay Interval has passed, the
/// will is published as the session ends (expiry 1 s, delay 60 s).
#[tokio::test]
async fn will_is_published_when_the_session_ends_first() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("ends/#", 0)]).await;
    let connect = Connect::resume("ending", 1).will(Will::new("ends/t", b"bye").delay(60));
    let (client, _) = Client::connect(&broker, &connect).await;
    let dropped = Instant::now();
    client.drop_connection().await;
    sub.expect_nothing(Duration::from_millis(700)).await;
    sub.expect_message("ends/t", b"bye").await;
    let after = dropped.elapsed();
    assert!(after < Duration::from_secs(4), "published after {after:?}");
}

/// MQTT-3.1.3-10: the will's User Properties are published in their order, and its
/// other properties (Payload Format Indicator, Content Type, Response Topic,
/// Correlation Data) with it, unchanged.
#[tokio::test]
async fn will_properties_are_published_in_order() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("wprops/#", 0)]).await;
    let props = Props::new()
        .user("z", "1")
        .user("a", "2")
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .user("z", "3")
        .str(CONTENT_TYPE, "text/plain")
        .str(RESPONSE_TOPIC, "wprops/reply")
        .bin(CORRELATION_DATA, &[0, 1, 2])
        .user("m", "4");
    let connect = Connect::new("wprops").will(Will::new("wprops/t", b"props").props(props));
    let (client, _) = Client::connect(&broker, &connect).await;
    client.drop_connection().await;
    let will = sub.expect_message("wprops/t", b"props").await;
    let users: Vec<(String, String)> = [("z", "1"), ("a", "2"), ("z", "3"), ("m", "4")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(will.props.users(), users);
    assert_eq!(will.props.byte(PAYLOAD_FORMAT_INDICATOR), Some(1));
    assert_eq!(will.props.str(CONTENT_TYPE), Some("text/plain"));
    assert_eq!(will.props.str(RESPONSE_TOPIC), Some("wprops/reply"));
    assert_eq!(will.props.bin(CORRELATION_DATA), Some(&[0u8, 1, 2][..]));
}

/// MQTT-3.2.2-12: a will QoS above the broker's maximum is refused with CONNACK 0x9B,
/// then the close; a will within it is accepted.
/// MQTT-3.2.2-6: the refusal has Session Present 0.
#[tokio::test]
async fn will_qos_above_the_maximum_is_refused() {
    let broker = TestBroker::start_with(|c| {
        c.mqtt.max_qos = herald::config::MaxQos(herald::protocol::QoS::AtLeastOnce)
    })
    .await;
    let connect = Connect::new("wq").will(Will::new("wq/t", b"2").qos(2));
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    expect_refused(&mut client, &ack, QOS_NOT_SUPPORTED).await;
    let connect = Connect::new("wq").will(Will::new("wq/t", b"1").qos(1));
    let (mut client, _) = Client::connect(&broker, &connect).await;
    client.ping().await;
}

// ---- keep alive ----

/// MQTT-3.1.2-22: a client silent for one and a half times its keep alive (1 s) is
/// disconnected then and not before — DISCONNECT 0x8D and the close — while one sending
/// PINGREQ every 0.5 s stays connected.
/// MQTT-3.2.2-22: the CONNACK has no Server Keep Alive, and the client's is the one used.
/// MQTT-3.12.4-1: each PINGREQ is answered with PINGRESP.
/// MQTT-3.1.2-8: the will is published when the keep alive expires.
#[tokio::test]
async fn silence_beyond_one_and_a_half_keep_alives_disconnects() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("ka/#", 0)]).await;
    let (mut pinger, ack) = Client::connect(&broker, &Connect::new("pinger").keep_alive(1)).await;
    assert!(!ack.props.has(SERVER_KEEP_ALIVE));
    let connect = Connect::new("silent")
        .keep_alive(1)
        .will(Will::new("ka/will", b"silent"));
    let started = Instant::now();
    let (mut silent, ack) = Client::connect(&broker, &connect).await;
    assert!(!ack.props.has(SERVER_KEEP_ALIVE));
    let silent_side = async {
        silent.expect_disconnect(KEEP_ALIVE_TIMEOUT).await;
        started.elapsed()
    };
    let pinging_side = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            pinger.ping().await;
        }
    };
    let (closed_after, ()) = tokio::join!(silent_side, pinging_side);
    assert!(
        closed_after >= Duration::from_millis(1450) && closed_after <= Duration::from_millis(2200),
        "closed after {closed_after:?}, expected about 1.5 s"
    );
    sub.expect_message("ka/will", b"silent").await;
}

/// MQTT-3.1.2-22: a keep alive above the broker's maximum (1 s) — or none — is replaced
/// by the broker's, announced as Server Keep Alive; a client silent for 1.5 s then is
/// disconnected with DISCONNECT 0x8D.
#[tokio::test]
async fn server_keep_alive_replaces_the_clients() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 1).await;
    for keep_alive in [60u16, 0] {
        let started = Instant::now();
        let connect = Connect::new("ska").keep_alive(keep_alive);
        let (mut client, ack) = Client::connect(&broker, &connect).await;
        assert_eq!(ack.props.u16(SERVER_KEEP_ALIVE), Some(1), "{ack:?}");
        client.expect_disconnect(KEEP_ALIVE_TIMEOUT).await;
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(1450) && after <= Duration::from_millis(2200),
            "keep alive {keep_alive}: closed after {after:?}"
        );
    }
}

/// MQTT-3.12.4-1: PINGREQ is answered with PINGRESP (exact bytes D0 00), one for each,
/// also when several arrive in one segment.
#[tokio::test]
async fn pingreq_gets_pingresp() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "ping").await;
    client.send(&[PINGREQ, PINGREQ, PINGREQ].concat()).await;
    for _ in 0..3 {
        assert_eq!(client.raw.recv_frame().await, Some(vec![0xd0, 0x00]));
    }
    client.expect_nothing(QUIET).await;
}

// ---- DISCONNECT ----

/// MQTT-3.14.1-1: a DISCONNECT with reserved fixed-header bits set is malformed: the
/// broker answers DISCONNECT 0x81 and closes.
/// MQTT-3.1.2-8: the will is published, as the connection did not end normally.
#[tokio::test]
async fn disconnect_with_reserved_flags_is_malformed() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("rdis/#", 0)]).await;
    for first in [0xe1u8, 0xe8] {
        let connect = Connect::new("rdis").will(Will::new("rdis/t", b"will"));
        let (mut client, _) = Client::connect(&broker, &connect).await;
        client.send(&[first, 0x00]).await;
        client.expect_disconnect(MALFORMED_PACKET).await;
        sub.expect_message("rdis/t", b"will").await;
    }
}

/// MQTT-3.14.2-1: every DISCONNECT the broker sends uses a defined DISCONNECT reason
/// code (checked on each by the decoder): here 0x8B when it shuts down.
/// MQTT-3.14.2-2: the DISCONNECT carries no Session Expiry Interval.
/// MQTT-3.14.4-1: nothing follows it.
/// MQTT-3.14.4-2: the connection is closed after it.
#[tokio::test]
async fn shutdown_sends_disconnect_0x8b() {
    let broker = TestBroker::start().await;
    let (mut a, _) = Client::connect(&broker, &Connect::resume("shut-a", 60)).await;
    let mut b = Client::new(&broker, "shut-b").await;
    a.ping().await;
    b.ping().await;
    broker.stop().await;
    a.expect_disconnect(SERVER_SHUTTING_DOWN).await;
    b.expect_disconnect(SERVER_SHUTTING_DOWN).await;
}

/// MQTT-3.14.2-3: the Reason String of a DISCONNECT is left out when it would make the
/// packet larger than the client's Maximum Packet Size: a protocol error that is
/// explained to a client without limit reaches one whose limit is just the CONNACK's
/// size without it, within that limit.
/// MQTT-3.14.2-4: nor does it carry a User Property beyond that limit.
/// MQTT-3.1.2-24: no packet above the client's Maximum Packet Size is sent.
#[tokio::test]
async fn disconnect_reason_string_respects_maximum_packet_size() {
    let broker = TestBroker::start().await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("mps")).await;
    let connack_size = ack.raw.len() as u32;
    client.send(&auth(0x18, &Props::new())).await;
    let explained = client.expect_disconnect(PROTOCOL_ERROR).await;
    assert!(
        explained.raw.len() as u32 > connack_size,
        "the test needs a DISCONNECT larger than the CONNACK: {explained:?}"
    );

    let connect = Connect::new("mps").maximum_packet_size(connack_size);
    let (mut client, ack) = Client::connect(&broker, &connect).await;
    assert_eq!(ack.raw.len() as u32, connack_size);
    client.send(&auth(0x18, &Props::new())).await;
    let terse = client.expect_disconnect(PROTOCOL_ERROR).await;
    assert!(terse.raw.len() as u32 <= connack_size, "{terse:?}");
    assert!(!terse.props.has(REASON_STRING), "{terse:?}");
    assert!(terse.props.users().is_empty(), "{terse:?}");
}

// ---- errors ----

/// MQTT-4.13.1-1: malformed packets and protocol errors after CONNECT close the
/// connection, with DISCONNECT 0x81 or 0x82 first: a property not allowed in its packet,
/// an unknown property, a repeated property, a truncated property list, a PUBLISH with a
/// Subscription Identifier, a SUBSCRIBE or UNSUBSCRIBE without filters, packets only a
/// server sends, packet type 0, a packet id 0.
/// MQTT-4.13.2-1: the reason code of 0x80 or above in the DISCONNECT ends the connection.
/// MQTT-3.1.2-8: each time the will is published.
#[tokio::test]
async fn malformed_packets_and_protocol_errors_close_with_disconnect() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("err/#", 0)]).await;
    let publish = |props: Props| Publish::new("err/t", 0, b"bad").props(props).bytes();
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "Session Expiry Interval in PUBLISH",
            publish(Props::new().u32(SESSION_EXPIRY_INTERVAL, 1)),
            &[MALFORMED_PACKET],
        ),
        (
            "unknown property",
            publish(Props::new().byte(0x7f, 0)),
            &[MALFORMED_PACKET],
        ),
        (
            "Payload Format Indicator twice",
            publish(
                Props::new()
                    .byte(PAYLOAD_FORMAT_INDICATOR, 0)
                    .byte(PAYLOAD_FORMAT_INDICATOR, 0),
            ),
            &[PROTOCOL_ERROR],
        ),
        (
            "truncated property list",
            frame(0x30, &[&field(b"err/t")[..], &[5, 0x01]].concat()),
            &[MALFORMED_PACKET],
        ),
        (
            "Subscription Identifier in PUBLISH",
            publish(Props::new().varint(SUBSCRIPTION_IDENTIFIER, 1)),
            &[PROTOCOL_ERROR],
        ),
        (
            "SUBSCRIBE without filters",
            subscribe(1, &Props::new(), &[]),
            &[PROTOCOL_ERROR],
        ),
        (
            "UNSUBSCRIBE without filters",
            unsubscribe(1, &Props::new(), &[]),
            &[PROTOCOL_ERROR],
        ),
        (
            "Reason String in SUBSCRIBE",
            subscribe(1, &Props::new().str(REASON_STRING, "no"), &[("err/x", 0)]),
            &[MALFORMED_PACKET],
        ),
        (
            "CONNACK from a client",
            vec![0x20, 0x03, 0x00, 0x00, 0x00],
            &[PROTOCOL_ERROR],
        ),
        (
            "SUBACK from a client",
            vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00],
            &[PROTOCOL_ERROR],
        ),
        (
            "PINGRESP from a client",
            vec![0xd0, 0x00],
            &[PROTOCOL_ERROR],
        ),
        ("packet type 0", vec![0x00, 0x00], &[MALFORMED_PACKET]),
        (
            "QoS 1 PUBLISH with packet id 0",
            Publish::new("err/t", 1, b"bad").pkid(0).bytes(),
            &[MALFORMED_PACKET, PROTOCOL_ERROR],
        ),
    ];
    for (what, bytes, codes) in cases {
        let connect = Connect::new("err").will(Will::new("err/will", what.as_bytes()));
        let (mut client, _) = Client::connect(&broker, &connect).await;
        client.send(&bytes).await;
        let got = match client.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("{what}: expected DISCONNECT {codes:02x?}, got {other:?}"),
        };
        assert!(codes.contains(&got.reason), "{what}: {got:?}");
        assert!(!got.props.has(SESSION_EXPIRY_INTERVAL), "{got:?}");
        client.expect_closed().await;
        sub.expect_message("err/will", what.as_bytes()).await;
    }
}
