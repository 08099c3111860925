//! Conformance: see coverage.rs for how statements are named.
//!
//! Connecting, sessions, wills, keep alive and how the broker meets malformed or
//! forbidden input, each shown on the wire against a running broker. Where a test must
//! show that something did *not* happen (a will not published, a message not delivered),
//! it sends a marker afterwards down the same path and asserts the marker is the first
//! thing to arrive, rather than waiting for silence.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{connect_packet, expect_message, field, frame, Encode, RawClient, TestBroker};
use mqttbytes::v4::{self, ConnectReturnCode};
use mqttbytes::QoS;

// ---- building raw bytes ----

/// An mqttbytes packet as bytes.
fn encoded(packet: impl Encode) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(&mut buf);
    buf.to_vec()
}

/// CONNECT flag bits.
const CLEAN: u8 = 0x02;
const WILL: u8 = 0x04;
const USER: u8 = 0x80;

/// A CONNECT built field by field: protocol name and level, flags, keep alive 30 s,
/// then each of `payload` as a length-prefixed field.
fn raw_connect(name: &[u8], level: u8, flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    for f in payload {
        body.extend(field(f));
    }
    frame(0x10, &body)
}

/// A SUBSCRIBE (QoS 0) to `filter`, as raw bytes so the filter may be any bytes.
fn raw_subscribe(pkid: u16, filter: &[u8]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(field(filter));
    body.push(0);
    frame(0x82, &body)
}

fn raw_unsubscribe(pkid: u16, filter: &[u8]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(field(filter));
    frame(0xa2, &body)
}

/// A QoS 0 PUBLISH to `topic`, as raw bytes so the topic may be any bytes.
fn raw_publish(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

fn with_will(
    mut connect: v4::Connect,
    topic: &str,
    payload: &str,
    qos: QoS,
    retain: bool,
) -> v4::Connect {
    connect.last_will = Some(v4::LastWill::new(topic, payload, qos, retain));
    connect
}

// ---- conversations ----

/// Sends `connect` on a new connection and asserts CONNACK 0; returns the CONNACK.
async fn connect_ok(broker: &TestBroker, connect: v4::Connect) -> (RawClient, v4::ConnAck) {
    let mut client = broker.raw().await;
    client.send_packet(connect).await;
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, ConnectReturnCode::Success, "{ack:?}");
    (client, ack)
}

/// Asserts a refusing CONNACK with `code` and Session Present 0, then the close.
async fn expect_refused(client: &mut RawClient, code: ConnectReturnCode) {
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, code, "{ack:?}");
    assert!(
        !ack.session_present,
        "refusal with Session Present 1: {ack:?}"
    );
    client.expect_closed().await;
}

/// Sends DISCONNECT and waits until the broker has closed the connection.
async fn disconnect_and_wait(client: &mut RawClient) {
    client.send_packet(v4::Disconnect).await;
    client.expect_closed().await;
}

/// Drops the connection as a network failure would (no DISCONNECT) and waits until the
/// broker has finished with it.
async fn drop_and_wait(client: &mut RawClient) {
    client.close_write().await;
    client.expect_closed().await;
}

async fn ping(client: &mut RawClient) {
    client.send_packet(v4::PingReq).await;
    match client.recv().await {
        Some(v4::Packet::PingResp) => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

async fn puback(client: &mut RawClient, publish: &v4::Publish) {
    client.send_packet(v4::PubAck::new(publish.pkid)).await;
}

// ---- CONNECT and CONNACK ----

/// MQTT-3.1.4-4: a valid CONNECT is answered with CONNACK return code 0 (exact bytes
/// 20 02 00 00), and the connection then serves the client.
/// MQTT-3.2.0-1: the first packet the broker sends is that CONNACK.
#[tokio::test]
async fn valid_connect_is_acknowledged_with_return_code_0() {
    let broker = TestBroker::start().await;
    let mut client = broker.raw().await;
    client.send_packet(connect_packet("ok", true, 30)).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );
    ping(&mut client).await;
}

/// MQTT-3.2.0-1: even with messages waiting in the resumed session, CONNACK is the first
/// packet on the new connection, ahead of the queued PUBLISHes.
/// MQTT-3.1.2-5: QoS 1 and QoS 2 messages matching the session's subscription while its
/// client was offline are queued and delivered when it comes back.
/// MQTT-3.2.2-2: the CONNACK resuming the stored session has Session Present 1.
#[tokio::test]
async fn offline_session_queues_qos_1_and_2_and_connack_comes_first() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("offline", false).await;
    sub.subscribe(1, "off/#", QoS::ExactlyOnce).await;
    disconnect_and_wait(&mut sub).await;

    let mut publisher = broker.client("off-pub", true).await;
    publisher
        .publish("off/1", QoS::AtLeastOnce, b"one", false, 1)
        .await;
    publisher
        .publish("off/2", QoS::ExactlyOnce, b"two", false, 2)
        .await;

    let mut sub = broker.raw().await;
    sub.send_packet(connect_packet("offline", false, 30)).await;
    assert_eq!(
        sub.recv_frame().await,
        Some(vec![0x20, 0x02, 0x01, 0x00]),
        "CONNACK with Session Present 1 first"
    );
    let one = expect_message(&mut sub, "off/1", b"one").await;
    assert_eq!(one.qos, QoS::AtLeastOnce);
    let two = expect_message(&mut sub, "off/2", b"two").await;
    assert_eq!(two.qos, QoS::ExactlyOnce);
}

/// MQTT-3.1.0-2: a second CONNECT on an established connection is a protocol violation:
/// the broker closes the connection without answering it.
/// MQTT-4.8.0-1: the connection carrying the violation is closed.
#[tokio::test]
async fn second_connect_closes_the_connection() {
    let broker = TestBroker::start().await;
    for second_id in ["twice", "someone-else"] {
        let mut client = broker.client("twice", true).await;
        client
            .send_packet(connect_packet(second_id, true, 30))
            .await;
        client.expect_closed().await;
    }
}

/// MQTT-3.1.2-1: a CONNECT whose protocol name is not "MQTT" is not processed: no CONNACK,
/// the connection is closed, the packets behind it are ignored and its will is never
/// published.
/// MQTT-3.1.4-1: such a nonconforming CONNECT closes the connection without CONNACK.
/// MQTT-3.2.2-6: closest observable case of "no suitable return code": MQTT 3.1.1 has no
/// return code for a CONNECT that is not MQTT at all, and the broker closes without
/// sending any CONNACK.
#[tokio::test]
async fn wrong_protocol_name_is_not_processed() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("pn-watcher", true).await;
    watcher.subscribe(1, "pn/#", QoS::AtMostOnce).await;
    for name in [&b"MQTX"[..], b"mqtt", b"MQT", b"MQTTT"] {
        let mut bytes = raw_connect(name, 4, CLEAN | WILL, &[b"pn", b"pn/will", b"will"]);
        bytes.extend(encoded(v4::PingReq));
        let mut client = broker.raw().await;
        client.send(&bytes).await;
        client.expect_closed().await;
    }
    watcher
        .publish("pn/marker", QoS::AtMostOnce, b"m", false, 0)
        .await;
    expect_message(&mut watcher, "pn/marker", b"m").await;
}

/// MQTT-3.1.2-2: an unsupported protocol level (3, 5, 255 with "MQTT"; anything but 3
/// with MQTT 3.1's "MQIsdp") is answered with CONNACK 0x01 and the connection is closed.
/// MQTT-3.2.2-4: that CONNACK has Session Present 0.
/// MQTT-3.2.2-5: the broker closes the connection after it.
#[tokio::test]
async fn unsupported_protocol_level_gets_return_code_1() {
    let broker = TestBroker::start().await;
    let cases = [
        raw_connect(b"MQTT", 3, CLEAN, &[b"lv"]),
        raw_connect(b"MQTT", 6, CLEAN, &[b"lv"]),
        raw_connect(b"MQTT", 255, CLEAN, &[b"lv"]),
        raw_connect(b"MQIsdp", 4, CLEAN, &[b"lv"]),
    ];
    for bytes in cases {
        let mut client = broker.raw().await;
        client.send(&bytes).await;
        expect_refused(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
    }
}

/// MQTT-3.1.2-3: a CONNECT with the reserved flag bit set is refused by closing the
/// connection, without CONNACK; the same CONNECT without the bit is accepted.
/// MQTT-3.1.4-1: a nonconforming CONNECT closes the connection without CONNACK.
#[tokio::test]
async fn connect_reserved_flag_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = broker.raw().await;
    client
        .send(&raw_connect(b"MQTT", 4, CLEAN | 0x01, &[b"rsv"]))
        .await;
    client.expect_closed().await;

    let mut client = broker.raw().await;
    client
        .send(&raw_connect(b"MQTT", 4, CLEAN, &[b"rsv"]))
        .await;
    assert_eq!(
        client.expect_connack().await.code,
        ConnectReturnCode::Success
    );
}

/// MQTT-3.1.4-1: CONNECTs that break the rules of section 3.1 — will QoS or will retain
/// without the will flag, will QoS 3, a password without a user name, a field running
/// past the end, bytes after the last field, a missing client id, flags in the fixed
/// header — close the connection without CONNACK.
#[tokio::test]
async fn nonconforming_connect_closes_without_connack() {
    let broker = TestBroker::start().await;
    let mut truncated = field(b"MQTT");
    truncated.extend([4, CLEAN, 0, 30, 0, 10, b'a', b'b', b'c']);
    let mut no_client_id = field(b"MQTT");
    no_client_id.extend([4, CLEAN, 0, 30]);
    let mut trailing = raw_connect(b"MQTT", 4, CLEAN, &[b"tr"]);
    trailing[1] += 1;
    trailing.push(0);
    let mut connect_flags = encoded(connect_packet("ff", true, 30));
    connect_flags[0] = 0x11;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "will QoS 1 without will flag",
            raw_connect(b"MQTT", 4, CLEAN | 0x08, &[b"nc"]),
        ),
        (
            "will retain without will flag",
            raw_connect(b"MQTT", 4, CLEAN | 0x20, &[b"nc"]),
        ),
        (
            "will QoS 3",
            raw_connect(b"MQTT", 4, CLEAN | WILL | 0x18, &[b"nc", b"w", b"x"]),
        ),
        (
            "password without user name",
            raw_connect(b"MQTT", 4, CLEAN | 0x40, &[b"nc", b"secret"]),
        ),
        ("client id past the end", frame(0x10, &truncated)),
        ("no client id", frame(0x10, &no_client_id)),
        ("trailing byte", trailing),
        ("CONNECT fixed-header flags 0001", connect_flags),
    ];
    for (what, bytes) in cases {
        let mut client = broker.raw().await;
        client.send(&bytes).await;
        if let Some(packet) = client.recv().await {
            panic!("{what}: expected a close without CONNACK, got {packet:?}");
        }
    }
}

/// MQTT-3.1.3-8: an empty client id with CleanSession 0 is answered with CONNACK 0x02
/// (identifier rejected), then the connection is closed.
/// MQTT-3.1.3-9: the rejected client id gets return code 0x02 and the close.
/// MQTT-3.2.2-4: the refusing CONNACK has Session Present 0.
/// MQTT-3.2.2-5: the broker closes the connection after the refusal.
#[tokio::test]
async fn empty_client_id_with_clean_session_0_is_rejected() {
    let broker = TestBroker::start().await;
    let mut client = broker.raw().await;
    client.send_packet(connect_packet("", false, 30)).await;
    expect_refused(&mut client, ConnectReturnCode::BadClientId).await;
}

/// MQTT-3.1.3-6: an empty client id with CleanSession 1 is accepted and given an id of
/// its own: two such clients are connected at once, neither taking the other's session
/// over, and each gets only what it subscribed to.
#[tokio::test]
async fn empty_client_ids_get_unique_ids() {
    let broker = TestBroker::start().await;
    let (mut a, ack_a) = connect_ok(&broker, connect_packet("", true, 30)).await;
    let (mut b, ack_b) = connect_ok(&broker, connect_packet("", true, 30)).await;
    assert!(!ack_a.session_present && !ack_b.session_present);
    a.subscribe(1, "anon/a", QoS::AtMostOnce).await;
    b.subscribe(1, "anon/b", QoS::AtMostOnce).await;
    let mut publisher = broker.client("anon-pub", true).await;
    publisher
        .publish("anon/b", QoS::AtMostOnce, b"B", false, 0)
        .await;
    publisher
        .publish("anon/a", QoS::AtMostOnce, b"A", false, 0)
        .await;
    expect_message(&mut a, "anon/a", b"A").await;
    expect_message(&mut b, "anon/b", b"B").await;
}

/// MQTT-3.1.3-5: client ids of 1 to 23 bytes drawn from 0-9, a-z and A-Z are accepted,
/// and each is kept whole as its session's key (Session Present 1 on reconnecting).
#[tokio::test]
async fn short_alphanumeric_client_ids_are_accepted() {
    let broker = TestBroker::start().await;
    let ids = [
        "a",
        "Z9",
        "0123456789abcdefghijklm",
        "0123456789abcdefghijklM",
        "nopqrstuvwxyzABCDEFGHIJ",
        "KLMNOPQRSTUVWXYZ",
    ];
    for id in ids {
        let (mut client, ack) = connect_ok(&broker, connect_packet(id, false, 30)).await;
        assert!(!ack.session_present, "{id}: {ack:?}");
        disconnect_and_wait(&mut client).await;
    }
    for id in ids {
        let (_client, ack) = connect_ok(&broker, connect_packet(id, false, 30)).await;
        assert!(ack.session_present, "{id}: {ack:?}");
    }
}

/// MQTT-3.1.4-2: a CONNECT with the client id of a connected client makes the broker
/// close the existing client's connection; the new one is served.
#[tokio::test]
async fn connecting_with_a_connected_client_id_disconnects_the_old_client() {
    let broker = TestBroker::start().await;
    for clean in [true, false] {
        let mut old = broker.client("same", clean).await;
        ping(&mut old).await;
        let mut new = broker.client("same", clean).await;
        old.expect_closed().await;
        ping(&mut new).await;
        disconnect_and_wait(&mut new).await;
    }
}

/// MQTT-3.1.4-5: after refusing a CONNECT the broker processes nothing else the client
/// sent: the SUBSCRIBE, retained PUBLISH and PINGREQ behind the refused CONNECT get no
/// answer and the retained message is never stored.
/// MQTT-3.2.2-5: the connection is closed after the refusing CONNACK.
#[tokio::test]
async fn refused_connect_ignores_what_follows() {
    let broker = TestBroker::start().await;
    let mut bytes = encoded(connect_packet("", false, 30));
    let mut subscribe = v4::Subscribe::new("ig/#", QoS::AtMostOnce);
    subscribe.pkid = 1;
    bytes.extend(encoded(subscribe));
    let mut publish = v4::Publish::new("ig/t", QoS::AtMostOnce, "should not be kept");
    publish.retain = true;
    bytes.extend(encoded(publish));
    bytes.extend(encoded(v4::PingReq));
    let mut client = broker.raw().await;
    client.send(&bytes).await;
    expect_refused(&mut client, ConnectReturnCode::BadClientId).await;

    let mut checker = broker.client("ig-checker", true).await;
    checker.subscribe(1, "ig/#", QoS::AtMostOnce).await;
    checker
        .publish("ig/marker", QoS::AtMostOnce, b"m", false, 0)
        .await;
    expect_message(&mut checker, "ig/marker", b"m").await;

    let broker = TestBroker::start_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let mut bytes = encoded(connect_packet("anon", true, 30));
    bytes.extend(encoded(v4::PingReq));
    let mut client = broker.raw().await;
    client.send(&bytes).await;
    expect_refused(&mut client, ConnectReturnCode::NotAuthorized).await;
}

/// MQTT-3.2.2-4: every refusing CONNACK has Session Present 0, even when the client id
/// has a stored session (which is still there afterwards): unsupported level (0x01),
/// keep alive above the broker's limit (0x02), and with anonymous access off, no user
/// name (0x05) or an unverifiable one (0x04).
/// MQTT-3.2.2-5: after each refusal the connection is closed.
#[tokio::test]
async fn refusals_have_session_present_0_and_close() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 60).await;
    let mut stored = broker.client("stored", false).await;
    disconnect_and_wait(&mut stored).await;

    let mut client = broker.raw().await;
    client.send(&raw_connect(b"MQTT", 6, 0, &[b"stored"])).await;
    expect_refused(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
    let mut client = broker.raw().await;
    client
        .send_packet(connect_packet("stored", false, 120))
        .await;
    expect_refused(&mut client, ConnectReturnCode::BadClientId).await;
    let (_client, ack) = connect_ok(&broker, connect_packet("stored", false, 30)).await;
    assert!(
        ack.session_present,
        "the stored session was there all along"
    );

    let broker = TestBroker::start_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let mut client = broker.raw().await;
    client.send_packet(connect_packet("anon", false, 30)).await;
    expect_refused(&mut client, ConnectReturnCode::NotAuthorized).await;
    let mut named = connect_packet("named", false, 30);
    named.set_login("user", "password");
    let mut client = broker.raw().await;
    client.send_packet(named).await;
    expect_refused(&mut client, ConnectReturnCode::BadUserNamePassword).await;
}

// ---- sessions ----

/// MQTT-3.1.2-4: with CleanSession 0 the broker creates a session the first time and
/// resumes it on each later connection: the subscription made once still delivers.
/// MQTT-3.1.4-3: each valid CONNECT gets this clean-session processing.
/// MQTT-3.2.2-3: the first connection, with no stored session, has Session Present 0.
/// MQTT-3.2.2-2: later connections, resuming it, have Session Present 1.
/// MQTT-4.1.0-1: the session's subscription is kept for as long as the session lasts.
#[tokio::test]
async fn clean_session_0_creates_then_resumes_the_session() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("cs0-pub", true).await;
    let (mut client, ack) = connect_ok(&broker, connect_packet("cs0", false, 30)).await;
    assert!(!ack.session_present, "{ack:?}");
    client.subscribe(1, "cs0/t", QoS::AtLeastOnce).await;
    disconnect_and_wait(&mut client).await;
    for round in 0..2u8 {
        let (mut client, ack) = connect_ok(&broker, connect_packet("cs0", false, 30)).await;
        assert!(ack.session_present, "round {round}: {ack:?}");
        publisher
            .publish("cs0/t", QoS::AtLeastOnce, &[round], false, 1)
            .await;
        let got = expect_message(&mut client, "cs0/t", &[round]).await;
        puback(&mut client, &got).await;
        disconnect_and_wait(&mut client).await;
    }
}

/// MQTT-3.1.2-6: CleanSession 1 discards the stored session — its subscription and the
/// message queued for it — and the new session is not kept after it ends.
/// MQTT-3.1.4-3: the valid CONNECT gets this clean-session processing.
/// MQTT-3.2.2-1: the accepted CleanSession 1 connection has Session Present 0, although a
/// session was stored for the client id.
#[tokio::test]
async fn clean_session_1_discards_the_previous_session() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("cs1", false).await;
    client.subscribe(1, "cs1/old", QoS::AtLeastOnce).await;
    disconnect_and_wait(&mut client).await;
    let mut publisher = broker.client("cs1-pub", true).await;
    publisher
        .publish("cs1/old", QoS::AtLeastOnce, b"queued", false, 1)
        .await;

    let (mut client, ack) = connect_ok(&broker, connect_packet("cs1", true, 30)).await;
    assert!(!ack.session_present, "{ack:?}");
    // A queued message would arrive before the SUBACK; the helper asserts SUBACK is next.
    client.subscribe(1, "cs1/new", QoS::AtLeastOnce).await;
    publisher
        .publish("cs1/old", QoS::AtLeastOnce, b"old", false, 2)
        .await;
    publisher
        .publish("cs1/new", QoS::AtLeastOnce, b"new", false, 3)
        .await;
    let got = expect_message(&mut client, "cs1/new", b"new").await;
    puback(&mut client, &got).await;
    disconnect_and_wait(&mut client).await;

    let (_client, ack) = connect_ok(&broker, connect_packet("cs1", false, 30)).await;
    assert!(
        !ack.session_present,
        "the clean session must not be reused: {ack:?}"
    );
}

/// MQTT-3.1.2-7: retained messages are not part of the session: one published by a
/// client outlives that client's session and is still sent to a later subscriber.
#[tokio::test]
async fn retained_messages_outlive_the_publishers_session() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("rt-pub", false).await;
    publisher
        .publish("rt/t", QoS::AtLeastOnce, b"kept", true, 1)
        .await;
    disconnect_and_wait(&mut publisher).await;
    // End the session: replace it with a clean one, which ends with its connection.
    let mut publisher = broker.client("rt-pub", true).await;
    disconnect_and_wait(&mut publisher).await;

    let mut sub = broker.client("rt-sub", true).await;
    sub.subscribe(1, "rt/t", QoS::AtLeastOnce).await;
    let got = expect_message(&mut sub, "rt/t", b"kept").await;
    assert!(got.retain, "{got:?}");
}

/// MQTT-3.1.3-2: the client id identifies the session: two ids get two sessions, and
/// each reconnection resumes its own id's subscriptions and queue, not the other's.
#[tokio::test]
async fn client_id_keys_the_session() {
    let broker = TestBroker::start().await;
    for (id, topic) in [("key-a", "key/a"), ("key-b", "key/b")] {
        let mut client = broker.client(id, false).await;
        client.subscribe(1, topic, QoS::AtLeastOnce).await;
        client.subscribe(2, "key/marker", QoS::AtLeastOnce).await;
        disconnect_and_wait(&mut client).await;
    }
    let mut publisher = broker.client("key-pub", true).await;
    publisher
        .publish("key/b", QoS::AtLeastOnce, b"for b", false, 1)
        .await;
    publisher
        .publish("key/a", QoS::AtLeastOnce, b"for a", false, 2)
        .await;
    publisher
        .publish("key/marker", QoS::AtLeastOnce, b"end", false, 3)
        .await;

    let (mut a, ack) = connect_ok(&broker, connect_packet("key-a", false, 30)).await;
    assert!(ack.session_present);
    expect_message(&mut a, "key/a", b"for a").await;
    expect_message(&mut a, "key/marker", b"end").await;
    let (mut b, ack) = connect_ok(&broker, connect_packet("key-b", false, 30)).await;
    assert!(ack.session_present);
    expect_message(&mut b, "key/b", b"for b").await;
    expect_message(&mut b, "key/marker", b"end").await;
}

/// MQTT-4.1.0-1: the session's state includes a QoS 1 message sent but not acknowledged:
/// after the connection drops, the resumed session sends it again (same packet id, DUP)
/// and, once acknowledged, never again.
#[tokio::test]
async fn unacknowledged_delivery_stays_in_the_session() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("unacked", false).await;
    sub.subscribe(1, "ua/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("ua-pub", true).await;
    publisher
        .publish("ua/t", QoS::AtLeastOnce, b"first", false, 1)
        .await;
    let sent = expect_message(&mut sub, "ua/t", b"first").await;
    drop_and_wait(&mut sub).await;

    let (mut sub, ack) = connect_ok(&broker, connect_packet("unacked", false, 30)).await;
    assert!(ack.session_present);
    let again = expect_message(&mut sub, "ua/t", b"first").await;
    assert!(again.dup, "{again:?}");
    assert_eq!(again.pkid, sent.pkid);
    puback(&mut sub, &again).await;
    publisher
        .publish("ua/t", QoS::AtLeastOnce, b"second", false, 2)
        .await;
    let second = expect_message(&mut sub, "ua/t", b"second").await;
    puback(&mut sub, &second).await;
    drop_and_wait(&mut sub).await;

    let (mut sub, _) = connect_ok(&broker, connect_packet("unacked", false, 30)).await;
    publisher
        .publish("ua/t", QoS::AtLeastOnce, b"third", false, 3)
        .await;
    expect_message(&mut sub, "ua/t", b"third").await;
}

/// MQTT-4.1.0-1: a session's subscription and queued message are kept across a broker
/// restart (the session has not ended, so its state must still be there).
#[tokio::test]
async fn session_state_survives_a_broker_restart() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("restart", false).await;
    sub.subscribe(1, "rs/t", QoS::AtLeastOnce).await;
    disconnect_and_wait(&mut sub).await;
    let mut publisher = broker.client("rs-pub", true).await;
    publisher
        .publish("rs/t", QoS::AtLeastOnce, b"while offline", false, 1)
        .await;
    disconnect_and_wait(&mut publisher).await;

    let broker = broker.restart().await;
    let (mut sub, ack) = connect_ok(&broker, connect_packet("restart", false, 30)).await;
    assert!(ack.session_present, "{ack:?}");
    let got = expect_message(&mut sub, "rs/t", b"while offline").await;
    puback(&mut sub, &got).await;
    let mut publisher = broker.client("rs-pub", true).await;
    publisher
        .publish("rs/t", QoS::AtLeastOnce, b"after", false, 1)
        .await;
    expect_message(&mut sub, "rs/t", b"after").await;
}

/// MQTT-4.1.0-2: a session lasts as long as its connection: a clean session keeps its
/// subscription while connected, also through refused CONNECTs with the same client id,
/// which must not end or take over the live session.
#[tokio::test]
async fn session_lasts_as_long_as_its_connection() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_keepalive_secs = 60).await;
    let mut live = broker.client("live", true).await;
    live.subscribe(1, "live/t", QoS::AtMostOnce).await;
    let mut publisher = broker.client("live-pub", true).await;

    let mut refused = broker.raw().await;
    refused
        .send(&raw_connect(b"MQTT", 6, CLEAN, &[b"live"]))
        .await;
    expect_refused(&mut refused, ConnectReturnCode::RefusedProtocolVersion).await;
    let mut refused = broker.raw().await;
    refused.send_packet(connect_packet("live", true, 600)).await;
    expect_refused(&mut refused, ConnectReturnCode::BadClientId).await;

    publisher
        .publish("live/t", QoS::AtMostOnce, b"still here", false, 0)
        .await;
    expect_message(&mut live, "live/t", b"still here").await;
}

// ---- wills ----

/// MQTT-3.1.2-8: a will is stored with the connection and published, at its QoS, when
/// the connection ends without DISCONNECT (here: the network connection is dropped).
#[tokio::test]
async fn will_is_published_when_the_connection_drops() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("will-sub", true).await;
    sub.subscribe(1, "will/#", QoS::ExactlyOnce).await;
    let connect = with_will(
        connect_packet("will", true, 30),
        "will/t",
        "gone",
        QoS::AtLeastOnce,
        false,
    );
    let (mut client, _) = connect_ok(&broker, connect).await;
    ping(&mut client).await;
    drop_and_wait(&mut client).await;
    let will = expect_message(&mut sub, "will/t", b"gone").await;
    assert_eq!(will.qos, QoS::AtLeastOnce);
}

/// MQTT-3.1.2-10: a will is removed once published: the session resumed by a later
/// connection without a will publishes nothing when that connection drops too.
#[tokio::test]
async fn will_is_published_once() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("once-sub", true).await;
    sub.subscribe(1, "once/#", QoS::AtMostOnce).await;
    let connect = with_will(
        connect_packet("once", false, 30),
        "once/will",
        "w",
        QoS::AtMostOnce,
        false,
    );
    let (mut client, _) = connect_ok(&broker, connect).await;
    drop_and_wait(&mut client).await;
    expect_message(&mut sub, "once/will", b"w").await;

    let (mut client, ack) = connect_ok(&broker, connect_packet("once", false, 30)).await;
    assert!(ack.session_present);
    drop_and_wait(&mut client).await;
    sub.publish("once/marker", QoS::AtMostOnce, b"m", false, 0)
        .await;
    expect_message(&mut sub, "once/marker", b"m").await;
}

/// MQTT-3.14.4-3: on DISCONNECT the broker discards the will without publishing it.
/// MQTT-3.1.2-10: the will is removed when DISCONNECT arrives.
#[tokio::test]
async fn disconnect_discards_the_will() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("dw-sub", true).await;
    sub.subscribe(1, "dw/#", QoS::AtMostOnce).await;
    let connect = with_will(
        connect_packet("dw", false, 30),
        "dw/will",
        "w",
        QoS::AtLeastOnce,
        true,
    );
    let (mut client, _) = connect_ok(&broker, connect).await;
    disconnect_and_wait(&mut client).await;
    // Nor does the session resumed later still hold it.
    let (mut client, _) = connect_ok(&broker, connect_packet("dw", false, 30)).await;
    drop_and_wait(&mut client).await;
    sub.publish("dw/marker", QoS::AtMostOnce, b"m", false, 0)
        .await;
    expect_message(&mut sub, "dw/marker", b"m").await;
    // Not retained either.
    let mut late = broker.client("dw-late", true).await;
    late.subscribe(1, "dw/will", QoS::AtMostOnce).await;
    late.publish("dw/will", QoS::AtMostOnce, b"m2", false, 0)
        .await;
    expect_message(&mut late, "dw/will", b"m2").await;
}

/// MQTT-3.14.1-1: a DISCONNECT with reserved bits set is not a DISCONNECT but a
/// protocol violation: the broker closes the connection and, the will not having been
/// discarded, publishes it.
/// MQTT-3.1.2-8: the will is published when the broker closes the connection for a
/// protocol error.
#[tokio::test]
async fn disconnect_with_reserved_bits_closes_and_publishes_the_will() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("dr-sub", true).await;
    sub.subscribe(1, "dr/#", QoS::AtMostOnce).await;
    for flags in [0x01u8, 0x08] {
        let connect = with_will(
            connect_packet("dr", true, 30),
            "dr/will",
            "w",
            QoS::AtMostOnce,
            false,
        );
        let (mut client, _) = connect_ok(&broker, connect).await;
        client.send(&[0xe0 | flags, 0x00]).await;
        client.expect_closed().await;
        expect_message(&mut sub, "dr/will", b"w").await;
    }
}

/// MQTT-3.1.2-12: a connection without the will flag publishes nothing when it ends,
/// however it ends.
#[tokio::test]
async fn no_will_flag_publishes_nothing() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("nw-sub", true).await;
    sub.subscribe(1, "#", QoS::AtMostOnce).await;
    let (mut client, _) = connect_ok(&broker, connect_packet("nw", true, 30)).await;
    drop_and_wait(&mut client).await;
    let (mut client, _) = connect_ok(&broker, connect_packet("nw", false, 30)).await;
    client.send(&[0xd0, 0x00]).await; // PINGRESP from a client: protocol violation
    client.expect_closed().await;
    sub.publish("nw/marker", QoS::AtMostOnce, b"m", false, 0)
        .await;
    expect_message(&mut sub, "nw/marker", b"m").await;
}

/// MQTT-3.1.2-16: a will with Will Retain 0 is published as a normal message: live
/// subscribers get it, a later subscriber finds nothing retained.
#[tokio::test]
async fn will_retain_0_is_not_retained() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("wr0-sub", true).await;
    sub.subscribe(1, "wr0/will", QoS::AtLeastOnce).await;
    let connect = with_will(
        connect_packet("wr0", true, 30),
        "wr0/will",
        "w",
        QoS::AtLeastOnce,
        false,
    );
    let (mut client, _) = connect_ok(&broker, connect).await;
    drop_and_wait(&mut client).await;
    let will = expect_message(&mut sub, "wr0/will", b"w").await;
    assert!(!will.retain);

    let mut late = broker.client("wr0-late", true).await;
    late.subscribe(1, "wr0/will", QoS::AtLeastOnce).await;
    late.publish("wr0/will", QoS::AtMostOnce, b"marker", false, 0)
        .await;
    expect_message(&mut late, "wr0/will", b"marker").await;
}

/// MQTT-3.1.2-17: a will with Will Retain 1 is published as a retained message: a
/// subscriber arriving after it was published gets it with the retain flag set.
#[tokio::test]
async fn will_retain_1_is_retained() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("wr1-sub", true).await;
    sub.subscribe(1, "wr1/will", QoS::AtLeastOnce).await;
    let connect = with_will(
        connect_packet("wr1", true, 30),
        "wr1/will",
        "w",
        QoS::AtLeastOnce,
        true,
    );
    let (mut client, _) = connect_ok(&broker, connect).await;
    drop_and_wait(&mut client).await;
    expect_message(&mut sub, "wr1/will", b"w").await;

    let mut late = broker.client("wr1-late", true).await;
    late.subscribe(1, "wr1/will", QoS::AtLeastOnce).await;
    let retained = expect_message(&mut late, "wr1/will", b"w").await;
    assert!(retained.retain, "{retained:?}");
    assert_eq!(retained.qos, QoS::AtLeastOnce);
}

// ---- keep alive and PINGREQ ----

/// MQTT-3.1.2-24: a client silent for 1.5 times its keep alive (1 s) is disconnected
/// then and not before, as a network failure: its will is published. A client sending
/// PINGREQ every 0.5 s stays connected well past that.
/// MQTT-3.12.4-1: each PINGREQ is answered with PINGRESP.
/// MQTT-3.1.2-8: the will is published when the keep alive expires.
#[tokio::test]
async fn silence_beyond_one_and_a_half_keep_alives_disconnects() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("ka-sub", true).await;
    sub.subscribe(1, "ka/will", QoS::AtMostOnce).await;
    let (mut pinger, _) = connect_ok(&broker, connect_packet("ka-pinger", true, 1)).await;
    let mut silent = broker.raw().await;
    let connect = with_will(
        connect_packet("ka-silent", true, 1),
        "ka/will",
        "silent",
        QoS::AtMostOnce,
        false,
    );
    let started = Instant::now();
    silent.send_packet(connect).await;
    assert_eq!(
        silent.expect_connack().await.code,
        ConnectReturnCode::Success
    );

    let silent_side = async {
        silent.expect_closed().await;
        started.elapsed()
    };
    let pinging_side = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ping(&mut pinger).await;
        }
    };
    let (closed_after, ()) = tokio::join!(silent_side, pinging_side);
    assert!(
        closed_after >= Duration::from_millis(1450) && closed_after <= Duration::from_millis(1900),
        "closed after {closed_after:?}, expected about 1.5 s"
    );
    expect_message(&mut sub, "ka/will", b"silent").await;
}

/// MQTT-3.12.4-1: PINGREQ is answered with PINGRESP (exact bytes D0 00), one for each,
/// also when several arrive in one segment.
#[tokio::test]
async fn pingreq_gets_pingresp() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("ping", true).await;
    client.send(&[0xc0, 0x00, 0xc0, 0x00, 0xc0, 0x00]).await;
    for _ in 0..3 {
        assert_eq!(client.recv_frame().await, Some(vec![0xd0, 0x00]));
    }
}

// ---- fixed header, packet identifiers, strings ----

/// MQTT-2.2.2-1: every packet the broker sends carries the fixed-header flags of the
/// table: CONNACK 0x20, SUBACK 0x90, PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP
/// 0x70, UNSUBACK 0xB0, PINGRESP 0xD0 (exact bytes of each).
#[tokio::test]
async fn broker_packets_carry_the_tabled_flags() {
    let broker = TestBroker::start().await;
    let mut client = broker.raw().await;
    client.send_packet(connect_packet("flags", true, 30)).await;
    assert_eq!(client.recv_frame().await, Some(vec![0x20, 2, 0, 0]));

    let mut subscribe = v4::Subscribe::new("fl/t", QoS::ExactlyOnce);
    subscribe.pkid = 1;
    client.send_packet(subscribe).await;
    assert_eq!(client.recv_frame().await, Some(vec![0x90, 3, 0, 1, 2]));

    let mut publish = v4::Publish::new("fl/other", QoS::AtLeastOnce, "x");
    publish.pkid = 2;
    client.send_packet(publish).await;
    assert_eq!(client.recv_frame().await, Some(vec![0x40, 2, 0, 2]));

    // QoS 2 to its own subscription: PUBREC for ours, then the broker's own PUBLISH.
    let mut publish = v4::Publish::new("fl/t", QoS::ExactlyOnce, "y");
    publish.pkid = 3;
    client.send_packet(publish).await;
    let mut frames = [
        client.recv_frame().await.expect("frame"),
        client.recv_frame().await.expect("frame"),
    ];
    frames.sort();
    assert_eq!(frames[1], vec![0x50, 2, 0, 3]);
    let delivered = &frames[0];
    assert_eq!(
        delivered[0], 0x34,
        "QoS 2 PUBLISH, no DUP, no RETAIN: {delivered:?}"
    );
    let their_pkid = [delivered[8], delivered[9]];

    client.send_packet(v4::PubRel::new(3)).await;
    assert_eq!(client.recv_frame().await, Some(vec![0x70, 2, 0, 3]));
    client.send(&[0x50, 2, their_pkid[0], their_pkid[1]]).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x62, 2, their_pkid[0], their_pkid[1]])
    );
    client.send(&[0x70, 2, their_pkid[0], their_pkid[1]]).await;

    let mut unsubscribe = v4::Unsubscribe::new("fl/t");
    unsubscribe.pkid = 4;
    client.send_packet(unsubscribe).await;
    assert_eq!(client.recv_frame().await, Some(vec![0xb0, 2, 0, 4]));
    client.send_packet(v4::PingReq).await;
    assert_eq!(client.recv_frame().await, Some(vec![0xd0, 0]));
}

/// MQTT-2.2.2-2: a packet whose fixed-header flags differ from the table closes the
/// connection unanswered, where the same packet with the right flags is answered.
/// MQTT-4.8.0-1: the violation closes the connection it arrived on.
#[tokio::test]
async fn invalid_fixed_header_flags_close_the_connection() {
    let broker = TestBroker::start().await;
    let subscribe = encoded({
        let mut s = v4::Subscribe::new("ff/t", QoS::AtMostOnce);
        s.pkid = 1;
        s
    });
    let unsubscribe = encoded({
        let mut u = v4::Unsubscribe::new("ff/t");
        u.pkid = 1;
        u
    });
    let pubrel = encoded(v4::PubRel::new(9));
    let ping = encoded(v4::PingReq);
    // (well-formed packet, first byte with wrong flags)
    let answered = [
        (subscribe.clone(), 0x80u8),
        (subscribe, 0x83),
        (unsubscribe.clone(), 0xa0),
        (unsubscribe, 0xaa),
        (pubrel.clone(), 0x60),
        (pubrel, 0x63),
        (ping.clone(), 0xc1),
        (ping, 0xc8),
    ];
    for (good, bad_first) in answered {
        let mut client = broker.client("ff", true).await;
        client.send(&good).await;
        assert!(client.recv().await.is_some(), "{good:02x?} is answered");
        let mut bad = good.clone();
        bad[0] = bad_first;
        client.send(&bad).await;
        if let Some(packet) = client.recv().await {
            panic!("{bad:02x?}: expected close, got {packet:?}");
        }
    }
    // Acknowledgements with flags set, and a CONNECT with flags as the first packet.
    for bad in [[0x41u8, 2, 0, 1], [0x52, 2, 0, 1], [0x74, 2, 0, 1]] {
        let mut client = broker.client("ff", true).await;
        client.send(&bad).await;
        client.expect_closed().await;
    }
    let mut connect = encoded(connect_packet("ff", true, 30));
    connect[0] = 0x12;
    let mut client = broker.raw().await;
    client.send(&connect).await;
    client.expect_closed().await;
}

/// MQTT-2.3.1-1: every QoS 1 and QoS 2 PUBLISH the broker sends carries a non-zero
/// packet identifier (read from the raw bytes).
#[tokio::test]
async fn broker_publishes_carry_non_zero_packet_ids() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("ids", true).await;
    sub.subscribe(1, "ids/#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("ids-pub", true).await;
    for i in 1..=3u16 {
        publisher
            .publish("ids/1", QoS::AtLeastOnce, b"a", false, i)
            .await;
        publisher
            .publish("ids/2", QoS::ExactlyOnce, b"b", false, 10 + i)
            .await;
    }
    for _ in 0..6 {
        let frame = sub.recv_frame().await.expect("a PUBLISH");
        assert_eq!(frame[0] & 0xf0, 0x30, "{frame:02x?}");
        let qos = (frame[0] >> 1) & 3;
        assert!(qos == 1 || qos == 2, "{frame:02x?}");
        // 2-byte fixed header, 2-byte length + "ids/n" topic, then the packet id.
        let pkid = u16::from_be_bytes([frame[9], frame[10]]);
        assert_ne!(pkid, 0, "{frame:02x?}");
    }
}

/// MQTT-2.3.1-5: a QoS 0 PUBLISH from the broker has no packet identifier: the bytes are
/// exactly topic then payload, also when a QoS 1 message is downgraded to QoS 0.
#[tokio::test]
async fn qos_0_publish_has_no_packet_identifier() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("q0", true).await;
    sub.subscribe(1, "q0/t", QoS::AtMostOnce).await;
    let mut publisher = broker.client("q0-pub", true).await;
    publisher
        .publish("q0/t", QoS::AtMostOnce, b"xy", false, 0)
        .await;
    assert_eq!(sub.recv_frame().await, Some(raw_publish(b"q0/t", b"xy")));
    publisher
        .publish("q0/t", QoS::AtLeastOnce, b"down", false, 5)
        .await;
    assert_eq!(sub.recv_frame().await, Some(raw_publish(b"q0/t", b"down")));
}

/// MQTT-1.5.3-1: ill-formed UTF-8 (a UTF-16 surrogate, a bad continuation byte, an
/// overlong form, 0xFF) in a client id, will topic, user name, topic name or topic
/// filter closes the connection, unanswered; well-formed multi-byte UTF-8 is accepted.
#[tokio::test]
async fn ill_formed_utf8_closes_the_connection() {
    let broker = TestBroker::start().await;
    let surrogate: &[u8] = &[b'a', 0xed, 0xa0, 0x80];
    let connects = [
        raw_connect(b"MQTT", 4, CLEAN, &[surrogate]),
        raw_connect(b"MQTT", 4, CLEAN, &[&[0xc3, 0x28]]),
        raw_connect(b"MQTT", 4, CLEAN | WILL, &[b"u8", &[0xff], b"w"]),
        raw_connect(b"MQTT", 4, CLEAN | USER, &[b"u8", &[0xc0, 0xaf]]),
    ];
    for bytes in connects {
        let mut client = broker.raw().await;
        client.send(&bytes).await;
        client.expect_closed().await;
    }
    let after_connect = [
        raw_publish(&[b'u', b'/', 0xed, 0xbf, 0xbf], b"x"),
        raw_subscribe(1, &[b'u', b'/', 0xff]),
        raw_unsubscribe(1, surrogate),
    ];
    for bytes in after_connect {
        let mut client = broker.client("u8", true).await;
        client.send(&bytes).await;
        client.expect_closed().await;
    }
    let topic = "ü/€/𝄞";
    let mut client = broker.client("u8", true).await;
    client.subscribe(1, topic, QoS::AtMostOnce).await;
    client
        .publish(topic, QoS::AtMostOnce, b"ok", false, 0)
        .await;
    expect_message(&mut client, topic, b"ok").await;
}

/// MQTT-1.5.3-2: U+0000 in a client id, will topic, user name, topic name or topic
/// filter closes the connection, unanswered.
#[tokio::test]
async fn null_character_closes_the_connection() {
    let broker = TestBroker::start().await;
    let null: &[u8] = b"a\0b";
    let connects = [
        raw_connect(b"MQTT", 4, CLEAN, &[null]),
        raw_connect(b"MQTT", 4, CLEAN | WILL, &[b"nul", null, b"w"]),
        raw_connect(b"MQTT", 4, CLEAN | USER, &[b"nul", null]),
    ];
    for bytes in connects {
        let mut client = broker.raw().await;
        client.send(&bytes).await;
        client.expect_closed().await;
    }
    let after_connect = [
        raw_publish(null, b"x"),
        raw_subscribe(1, null),
        raw_unsubscribe(1, null),
    ];
    for bytes in after_connect {
        let mut client = broker.client("nul", true).await;
        client.send(&bytes).await;
        client.expect_closed().await;
    }
}

/// MQTT-1.5.3-3: a leading EF BB BF (U+FEFF) is part of the string: a topic that starts
/// with it is a different topic from the one without, delivered with it intact, and a
/// client id that starts with it is a different client.
#[tokio::test]
async fn byte_order_mark_is_kept() {
    let broker = TestBroker::start().await;
    let bom_topic = "\u{feff}bom/t";
    let mut bom_sub = broker.client("bom-sub", true).await;
    bom_sub.subscribe(1, bom_topic, QoS::AtMostOnce).await;
    let mut plain_sub = broker.client("plain-sub", true).await;
    plain_sub.subscribe(1, "bom/t", QoS::AtMostOnce).await;
    let mut publisher = broker.client("bom-pub", true).await;
    publisher
        .publish(bom_topic, QoS::AtMostOnce, b"with", false, 0)
        .await;
    publisher
        .publish("bom/t", QoS::AtMostOnce, b"without", false, 0)
        .await;
    publisher
        .publish(bom_topic, QoS::AtMostOnce, b"end", false, 0)
        .await;

    let frame = bom_sub.recv_frame().await.expect("PUBLISH");
    let mut topic = vec![0xef, 0xbb, 0xbf];
    topic.extend_from_slice(b"bom/t");
    assert_eq!(frame, raw_publish(&topic, b"with"));
    expect_message(&mut bom_sub, bom_topic, b"end").await;
    expect_message(&mut plain_sub, "bom/t", b"without").await;

    let mut with_bom = broker.client("\u{feff}bom", true).await;
    let mut without = broker.client("bom", true).await;
    ping(&mut with_bom).await;
    ping(&mut without).await;
}

// ---- errors and transport ----

/// MQTT-4.8.0-1: protocol violations after CONNECT — packets only a server sends,
/// reserved packet types 0 and 15, packet id 0 where one is required, PUBLISH QoS 3,
/// SUBSCRIBE without filters or with reserved option bits — close that connection,
/// unanswered, and no other.
#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let broker = TestBroker::start().await;
    let mut bystander = broker.client("bystander", true).await;
    let mut zero_subscribe = raw_subscribe(1, b"pv/t");
    zero_subscribe[3] = 0;
    let mut zero_unsubscribe = raw_unsubscribe(1, b"pv/t");
    zero_unsubscribe[3] = 0;
    let mut zero_publish = field(b"pv/t");
    zero_publish.extend([0, 0, b'x']);
    let mut qos3_publish = field(b"pv/t");
    qos3_publish.extend([0, 1, b'x']);
    let mut bad_options = raw_subscribe(1, b"pv/t");
    *bad_options.last_mut().unwrap() = 0x04;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("CONNACK", vec![0x20, 2, 0, 0]),
        ("SUBACK", vec![0x90, 3, 0, 1, 0]),
        ("UNSUBACK", vec![0xb0, 2, 0, 1]),
        ("PINGRESP", vec![0xd0, 0]),
        ("type 0", vec![0x00, 0]),
        ("type 15", vec![0xf0, 0]),
        ("SUBSCRIBE packet id 0", zero_subscribe),
        ("UNSUBSCRIBE packet id 0", zero_unsubscribe),
        ("PUBLISH QoS 1 packet id 0", frame(0x32, &zero_publish)),
        ("PUBLISH QoS 3", frame(0x36, &qos3_publish)),
        ("SUBSCRIBE without filters", frame(0x82, &[0, 1])),
        ("SUBSCRIBE reserved option bits", bad_options),
    ];
    for (what, bytes) in cases {
        let mut client = broker.client("violator", true).await;
        client.send(&bytes).await;
        if let Some(packet) = client.recv().await {
            panic!("{what}: expected close, got {packet:?}");
        }
    }
    ping(&mut bystander).await;
}

/// MQTT-4.8.0-2: closest observable transient error: a packet larger than the broker's
/// packet buffer (max_packet_size 128) cannot be processed; the broker closes the
/// connection it came on, delivers none of it, and serves other connections on.
#[tokio::test]
async fn unprocessable_packet_closes_only_its_connection() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_packet_size.0 = 128).await;
    let mut sub = broker.client("big-sub", true).await;
    sub.subscribe(1, "big/#", QoS::AtMostOnce).await;
    let mut offender = broker.client("big", true).await;
    offender.send(&raw_publish(b"big/t", &[b'x'; 200])).await;
    offender.expect_closed().await;
    let mut publisher = broker.client("big-pub", true).await;
    publisher
        .publish("big/marker", QoS::AtMostOnce, &[b'y'; 100], false, 0)
        .await;
    expect_message(&mut sub, "big/marker", &[b'y'; 100]).await;
}

/// MQTT-7.1.1-1: the broker runs MQTT over an ordered, lossless, two-way byte stream
/// (TCP), whatever the segmenting: a CONNECT trickled in byte by byte is read whole, and
/// 50 QoS 1 PUBLISHes sent in one write are each acknowledged and delivered, in order.
#[tokio::test]
async fn ordered_byte_stream_transport() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("order-sub", true).await;
    sub.subscribe(1, "order/t", QoS::AtLeastOnce).await;

    let mut client = broker.raw().await;
    for byte in encoded(connect_packet("order", true, 30)) {
        client.send(&[byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        client.expect_connack().await.code,
        ConnectReturnCode::Success
    );

    let mut burst = Vec::new();
    for i in 1..=50u16 {
        let mut publish = v4::Publish::new("order/t", QoS::AtLeastOnce, i.to_string());
        publish.pkid = i;
        burst.extend(encoded(publish));
    }
    client.send(&burst).await;
    for i in 1..=50u16 {
        match client.recv().await {
            Some(v4::Packet::PubAck(ack)) => assert_eq!(ack.pkid, i),
            other => panic!("expected PUBACK {i}, got {other:?}"),
        }
    }
    for i in 1..=50u16 {
        let got = expect_message(&mut sub, "order/t", i.to_string().as_bytes()).await;
        puback(&mut sub, &got).await;
    }
}

/// MQTT-3.1.2-6: a clean session's state is never reused, even while its connection is
/// still open: a CleanSession 0 connection taking the client id over starts a new session,
/// without the old subscription.
/// MQTT-3.2.2-3: no stored session existed, so Session Present is 0.
#[tokio::test]
async fn a_connected_clean_session_is_not_resumed_by_clean_session_0() {
    let broker = TestBroker::start().await;
    let mut first = broker.client("cs-live", true).await;
    first.subscribe(1, "cs-live/t", QoS::AtLeastOnce).await;
    let (mut second, ack) = connect_ok(&broker, connect_packet("cs-live", false, 30)).await;
    assert!(!ack.session_present, "{ack:?}");
    first.expect_closed().await;
    let mut publisher = broker.client("cs-live-pub", true).await;
    publisher
        .publish("cs-live/t", QoS::AtLeastOnce, b"x", false, 1)
        .await;
    second.expect_nothing(Duration::from_millis(300)).await;
}
