//! Sessions and their end: the client's DISCONNECT and its reason code, the Session
//! Expiry Interval from CONNECT and DISCONNECT, and MQTT 3.1.1 sessions beside them.

use std::time::Duration;

use mqttbytes::QoS as Qos3;

use crate::common::TestBroker;
use crate::v5::{self, id, Client, Connect, Packet, Props, Will};
use crate::QUIET;

/// A watcher subscribed to `filter` at QoS 1.
async fn watcher(broker: &TestBroker, client_id: &str, filter: &str) -> Client {
    let mut watcher = Client::simple(broker.addr, client_id).await;
    assert_eq!(watcher.subscribe(1, filter, 1).await, 0x01);
    watcher
}

/// MQTT 5.0 §3.14.2.1 and §3.1.2.5: DISCONNECT with reason 0x00 (Normal disconnection)
/// discards the will.
#[tokio::test]
async fn normal_disconnect_discards_the_will() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-normal", "will/#").await;
    let client = Client::connected(
        broker.addr,
        Connect::new("leaver").will(Will::new("will/leaver", b"gone", 1)),
    )
    .await;
    client.disconnect().await;
    watcher.expect_nothing(Duration::from_millis(500)).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.1: DISCONNECT with reason 0x04 (Disconnect with Will Message) has
/// the will published.
#[tokio::test]
async fn disconnect_with_will_message_publishes_the_will() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-04", "will/#").await;
    let client = Client::connected(
        broker.addr,
        Connect::new("leaver04").will(Will::new("will/leaver04", b"as asked", 1)),
    )
    .await;
    client.disconnect_with(0x04, &Props::new()).await;
    watcher.expect_message("will/leaver04", b"as asked").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2 [MQTT-3.14.2-2]: a DISCONNECT setting a non-zero Session Expiry
/// Interval when CONNECT set 0 is a Protocol Error: the server answers DISCONNECT 0x82,
/// and, that DISCONNECT not being valid, the will is published.
#[tokio::test]
async fn disconnect_raising_session_expiry_from_zero_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-raise", "will/#").await;
    let mut client = Client::connected(
        broker.addr,
        Connect::new("raiser").will(Will::new("will/raiser", b"raised", 1)),
    )
    .await;
    client
        .send(&v5::disconnect(
            0x00,
            &Props::new().four(id::SESSION_EXPIRY_INTERVAL, 30),
        ))
        .await;
    client.expect_disconnect_explained(0x82).await;
    watcher.expect_message("will/raiser", b"raised").await;
    // And the session did not outlive the connection.
    let (_back, ack) = Client::connect(
        broker.addr,
        Connect::new("raiser").clean_start(false).session_expiry(30),
    )
    .await;
    assert!(!ack.session_present, "{ack:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval of 0 in DISCONNECT ends a session
/// that CONNECT asked to keep: reconnecting finds no session.
#[tokio::test]
async fn disconnect_with_session_expiry_zero_ends_the_session_now() {
    let broker = TestBroker::start().await;
    let mut client = Client::connected(
        broker.addr,
        Connect::new("shortened")
            .clean_start(false)
            .session_expiry(600),
    )
    .await;
    assert_eq!(client.subscribe(1, "sh/t", 1).await, 0x01);
    client
        .disconnect_with(0x00, &Props::new().four(id::SESSION_EXPIRY_INTERVAL, 0))
        .await;
    let (mut back, ack) = Client::connect(
        broker.addr,
        Connect::new("shortened")
            .clean_start(false)
            .session_expiry(600),
    )
    .await;
    assert!(!ack.session_present, "{ack:?}");
    let mut publisher = Client::simple(broker.addr, "shortened-pub").await;
    publisher.publish("sh/t", 1, 1, &Props::new(), b"x").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval in DISCONNECT replaces CONNECT's: a
/// session asked to last 1 s but extended to 60 s at DISCONNECT is still there after
/// 1.5 s, with its subscription.
#[tokio::test]
async fn disconnect_with_session_expiry_extends_the_session() {
    let broker = TestBroker::start().await;
    let mut client = Client::connected(
        broker.addr,
        Connect::new("extended")
            .clean_start(false)
            .session_expiry(1),
    )
    .await;
    assert_eq!(client.subscribe(1, "ext/t", 1).await, 0x01);
    client
        .disconnect_with(0x00, &Props::new().four(id::SESSION_EXPIRY_INTERVAL, 60))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher = Client::simple(broker.addr, "extended-pub").await;
    publisher
        .publish("ext/t", 1, 1, &Props::new(), b"kept")
        .await;
    let (mut back, ack) = Client::connect(
        broker.addr,
        Connect::new("extended")
            .clean_start(false)
            .session_expiry(60),
    )
    .await;
    assert!(ack.session_present, "{ack:?}");
    back.expect_message("ext/t", b"kept").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: without a Session Expiry Interval (0) the session ends with
/// the network connection, even with Clean Start 0: reconnecting finds no session and
/// no subscription.
#[tokio::test]
async fn session_without_expiry_ends_with_the_connection() {
    let broker = TestBroker::start().await;
    let mut client =
        Client::connected(broker.addr, Connect::new("ephemeral").clean_start(false)).await;
    assert_eq!(client.subscribe(1, "eph/t", 1).await, 0x01);
    client.disconnect().await;
    let (mut back, ack) =
        Client::connect(broker.addr, Connect::new("ephemeral").clean_start(false)).await;
    assert!(!ack.session_present, "{ack:?}");
    let mut publisher = Client::simple(broker.addr, "ephemeral-pub").await;
    publisher.publish("eph/t", 1, 1, &Props::new(), b"x").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2 and §4.1: within its Session Expiry Interval a session keeps
/// its subscriptions and queues QoS 1 and 2 messages published while its client is
/// away; a reconnect with Clean Start 0 finds it (session present 1) and gets them.
#[tokio::test]
async fn session_lives_for_its_expiry_interval_and_queues_messages() {
    let broker = TestBroker::start().await;
    let connect = || Connect::new("lasting").clean_start(false).session_expiry(3);
    let mut client = Client::connected(broker.addr, connect()).await;
    assert_eq!(client.subscribe(1, "last/#", 2).await, 0x02);
    client.disconnect().await;
    let mut publisher = Client::simple(broker.addr, "lasting-pub").await;
    publisher
        .publish("last/1", 1, 1, &Props::new(), b"one")
        .await;
    publisher
        .publish("last/2", 2, 2, &Props::new(), b"two")
        .await;
    publisher
        .publish("last/0", 0, 0, &Props::new(), b"zero")
        .await;
    publisher.ping().await;
    let (mut back, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present, "{ack:?}");
    let first = back.expect_message("last/1", b"one").await;
    assert_eq!(first.qos, 1);
    let second = back.expect_message("last/2", b"two").await;
    assert_eq!(second.qos, 2);
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: once its Session Expiry Interval has passed, the session is
/// gone — with its subscriptions and what was queued for it.
#[tokio::test]
async fn session_vanishes_after_its_expiry_interval() {
    let broker = TestBroker::start().await;
    let connect = || {
        Connect::new("fleeting")
            .clean_start(false)
            .session_expiry(1)
    };
    let mut client = Client::connected(broker.addr, connect()).await;
    assert_eq!(client.subscribe(1, "fleet/#", 1).await, 0x01);
    client.disconnect().await;
    let mut publisher = Client::simple(broker.addr, "fleeting-pub").await;
    publisher
        .publish("fleet/1", 1, 1, &Props::new(), b"lost")
        .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut back, ack) = Client::connect(broker.addr, connect()).await;
    assert!(!ack.session_present, "{ack:?}");
    back.expect_nothing(QUIET).await;
    publisher
        .publish("fleet/2", 1, 2, &Props::new(), b"x")
        .await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: a Session Expiry Interval of 0xFFFFFFFF never expires, nor
/// does an MQTT 3.1.1 session with Clean Session 0 — both outlive a 1 s session
/// disconnected at the same time.
#[tokio::test]
async fn never_expiring_sessions_outlive_short_ones() {
    let broker = TestBroker::start().await;
    let forever = || {
        Connect::new("forever")
            .clean_start(false)
            .session_expiry(u32::MAX)
    };
    let short = || Connect::new("short").clean_start(false).session_expiry(1);
    for connect in [forever(), short()] {
        let mut client = Client::connected(broker.addr, connect).await;
        assert_eq!(client.subscribe(1, "never/t", 1).await, 0x01);
        client.disconnect().await;
    }
    let mut v311 = broker.client("forever311", false).await;
    v311.subscribe(1, "never/t", Qos3::AtLeastOnce).await;
    v311.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let (mut back, ack) = Client::connect(broker.addr, forever()).await;
    assert!(ack.session_present, "0xFFFFFFFF: {ack:?}");
    let (_short, ack) = Client::connect(broker.addr, short()).await;
    assert!(!ack.session_present, "1 s: {ack:?}");
    let mut v311 = broker.raw().await;
    let ack = v311.connect("forever311", false).await;
    assert!(ack.session_present, "3.1.1 clean session 0: {ack:?}");

    let mut publisher = Client::simple(broker.addr, "never-pub").await;
    publisher
        .publish("never/t", 1, 1, &Props::new(), b"still")
        .await;
    back.expect_message("never/t", b"still").await;
    let got = v311.expect_publish().await;
    assert_eq!(&got.payload[..], b"still");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.4 [MQTT-3.1.4-3] and §3.1.2.5: a connection taken over by another with
/// the same client id has its will published (no Will Delay Interval), as it ends
/// without a normal DISCONNECT.
#[tokio::test]
async fn a_taken_over_connection_has_its_will_published() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-takeover", "will/#").await;
    let mut old = Client::connected(
        broker.addr,
        Connect::new("usurped").will(Will::new("will/usurped", b"replaced", 1)),
    )
    .await;
    let _new = Client::simple(broker.addr, "usurped").await;
    old.expect_disconnect(0x8E).await;
    watcher.expect_message("will/usurped", b"replaced").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.5 [MQTT-3.1.2-8] and §3.1.4: with a Will Delay Interval and a
/// lasting session, a takeover that resumes the session (Clean Start 0) is a new
/// connection within the delay: the old connection's will is not published.
#[tokio::test]
async fn a_takeover_within_the_will_delay_keeps_the_will_unpublished() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-takeover-delay", "will/#").await;
    let will =
        Will::new("will/resumed", b"no", 1).props(Props::new().four(id::WILL_DELAY_INTERVAL, 1));
    let connect = || {
        Connect::new("resumed")
            .clean_start(false)
            .session_expiry(30)
            .will(will.clone())
    };
    let mut old = Client::connected(broker.addr, connect()).await;
    let (_new, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present, "{ack:?}");
    old.expect_disconnect(0x8E).await;
    watcher.expect_nothing(Duration::from_millis(1500)).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.4 [MQTT-4.4.0-1] and §3.3.1.1 [MQTT-3.3.1-1]: a QoS 1 message sent and
/// not acknowledged before the connection was lost is sent again when the session is
/// resumed, with the same packet id, DUP set and its properties.
#[tokio::test]
async fn unacknowledged_messages_are_sent_again_with_dup_and_properties() {
    let broker = TestBroker::start().await;
    let connect = || {
        Connect::new("forgetful")
            .clean_start(false)
            .session_expiry(30)
    };
    let mut client = Client::connected(broker.addr, connect()).await;
    client.subscribe(1, "again/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "forgetful-pub").await;
    let props = Props::new()
        .str(id::CONTENT_TYPE, "text/plain")
        .user("try", "1");
    publisher.publish("again/x", 1, 1, &props, b"once").await;
    let first = client.expect_publish().await;
    assert!(!first.dup);
    client.close_write().await;
    client.expect_closed().await;

    let (mut back, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present);
    let again = back.expect_publish().await;
    assert_eq!(
        (again.pkid, again.dup, again.qos),
        (first.pkid, true, 1),
        "{again:?}"
    );
    assert_eq!(
        (again.topic.as_str(), &again.payload[..]),
        ("again/x", &b"once"[..])
    );
    assert_eq!(again.props.str_of(id::CONTENT_TYPE), Some("text/plain"));
    assert_eq!(again.props.users(), props.users());
    back.complete(&again).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.4 [MQTT-4.4.0-1]: a QoS 2 delivery the client had answered with PUBREC
/// but not completed is resumed on reconnection with the PUBREL, not the PUBLISH.
#[tokio::test]
async fn an_outgoing_qos2_exchange_resumes_with_pubrel() {
    let broker = TestBroker::start().await;
    let connect = || {
        Connect::new("half-done")
            .clean_start(false)
            .session_expiry(30)
    };
    let mut client = Client::connected(broker.addr, connect()).await;
    client.subscribe(1, "half/#", 2).await;
    let mut publisher = Client::simple(broker.addr, "half-done-pub").await;
    publisher
        .publish("half/t", 2, 1, &Props::new(), b"once")
        .await;
    let p = client.expect_publish().await;
    client.send(&v5::pubrec(p.pkid)).await;
    match client.expect().await {
        Packet::PubRel(rel) => assert_eq!(rel.pkid, p.pkid),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    client.close_write().await;
    client.expect_closed().await;

    let (mut back, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present);
    match back.expect().await {
        Packet::PubRel(rel) => assert_eq!((rel.pkid, rel.reason), (p.pkid, 0)),
        other => panic!("expected PUBREL again, got {other:?}"),
    }
    back.send(&v5::pubcomp(p.pkid)).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.3.3 and §4.4: a QoS 2 PUBLISH the server has answered with PUBREC is
/// delivered once, even when the publisher reconnects and sends it again (DUP) before
/// releasing it.
#[tokio::test]
async fn an_incoming_qos2_message_resent_after_reconnection_is_delivered_once() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::simple(broker.addr, "once-sub").await;
    subscriber.subscribe(1, "once/#", 2).await;
    let connect = || {
        Connect::new("once-pub")
            .clean_start(false)
            .session_expiry(30)
    };
    let mut publisher = Client::connected(broker.addr, connect()).await;
    publisher
        .send(&v5::publish("once/t", 2, 7, false, &Props::new(), b"x"))
        .await;
    match publisher.expect().await {
        Packet::PubRec(rec) => assert_eq!(rec.pkid, 7),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.close_write().await;
    publisher.expect_closed().await;
    let (mut publisher, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present);
    let mut again = v5::publish("once/t", 2, 7, false, &Props::new(), b"x");
    again[0] |= 0x08; // DUP
    publisher.send(&again).await;
    match publisher.expect().await {
        Packet::PubRec(rec) => assert_eq!((rec.pkid, rec.reason), (7, 0)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&v5::pubrel(7)).await;
    match publisher.expect().await {
        Packet::PubComp(comp) => assert_eq!((comp.pkid, comp.reason), (7, 0)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    subscriber.expect_message("once/t", b"x").await;
    subscriber.expect_nothing(QUIET).await;
    broker.stop().await;
}
