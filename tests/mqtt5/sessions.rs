//! Sessions and their end: the client's DISCONNECT and its reason code, the Session
//! Expiry Interval from CONNECT and DISCONNECT, and MQTT 3.1.1 sessions beside them.

use std::time::Duration;

use mqttbytes::QoS as Qos3;

use crate::common::TestBroker;
use crate::v5::*;

/// A watcher subscribed to `filter` at QoS 1.
async fn watcher(broker: &TestBroker, client_id: &str, filter: &str) -> Client {
    let mut watcher = Client::new(broker, client_id).await;
    assert_eq!(watcher.subscribe(1, &[(filter, 1)]).await, [0x01]);
    watcher
}

/// MQTT 5.0 §3.14.2.1 and §3.1.2.5: DISCONNECT with reason 0x00 (Normal disconnection)
/// discards the will.
#[tokio::test]
async fn normal_disconnect_discards_the_will() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-normal", "will/#").await;
    let (client, _) = Client::connect(
        &broker,
        &Connect::new("leaver").will(Will::new("will/leaver", b"gone").qos(1)),
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
    let will = Will::new("will/leaver04", b"as asked").qos(1);
    let (mut client, _) = Client::connect(&broker, &Connect::new("leaver04").will(will)).await;
    client
        .send(&disconnect(DISCONNECT_WITH_WILL, &Props::new()))
        .await;
    client.expect_closed().await;
    watcher
        .expect_and_complete("will/leaver04", b"as asked")
        .await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2 [MQTT-3.14.2-2]: a DISCONNECT setting a non-zero Session Expiry
/// Interval when CONNECT set 0 is a Protocol Error: the server answers DISCONNECT 0x82,
/// and, that DISCONNECT not being valid, the will is published.
#[tokio::test]
async fn disconnect_raising_session_expiry_from_zero_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-raise", "will/#").await;
    let (mut client, _) = Client::connect(
        &broker,
        &Connect::new("raiser").will(Will::new("will/raiser", b"raised").qos(1)),
    )
    .await;
    client
        .send(&disconnect(
            0x00,
            &Props::new().u32(SESSION_EXPIRY_INTERVAL, 30),
        ))
        .await;
    client.expect_disconnect_explained(0x82).await;
    watcher.expect_and_complete("will/raiser", b"raised").await;
    // And the session did not outlive the connection.
    let (_back, ack) = Client::connect(&broker, &Connect::resume("raiser", 30)).await;
    assert!(!ack.session_present, "{ack:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval of 0 in DISCONNECT ends a session
/// that CONNECT asked to keep: reconnecting finds no session.
#[tokio::test]
async fn disconnect_with_session_expiry_zero_ends_the_session_now() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::resume("shortened", 600)).await;
    assert_eq!(client.subscribe(1, &[("sh/t", 1)]).await, [0x01]);
    let expiry = Props::new().u32(SESSION_EXPIRY_INTERVAL, 0);
    client.send(&disconnect(0x00, &expiry)).await;
    client.expect_closed().await;
    let (mut back, ack) = Client::connect(&broker, &Connect::resume("shortened", 600)).await;
    assert!(!ack.session_present, "{ack:?}");
    let mut publisher = Client::new(&broker, "shortened-pub").await;
    publisher.publish(&Publish::new("sh/t", 1, b"x")).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval in DISCONNECT replaces CONNECT's: a
/// session asked to last 1 s but extended to 60 s at DISCONNECT is still there after
/// 1.5 s, with its subscription.
#[tokio::test]
async fn disconnect_with_session_expiry_extends_the_session() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::resume("extended", 1)).await;
    assert_eq!(client.subscribe(1, &[("ext/t", 1)]).await, [0x01]);
    let expiry = Props::new().u32(SESSION_EXPIRY_INTERVAL, 60);
    client.send(&disconnect(0x00, &expiry)).await;
    client.expect_closed().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher = Client::new(&broker, "extended-pub").await;
    publisher.publish(&Publish::new("ext/t", 1, b"kept")).await;
    let (mut back, ack) = Client::connect(&broker, &Connect::resume("extended", 60)).await;
    assert!(ack.session_present, "{ack:?}");
    back.expect_and_complete("ext/t", b"kept").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: without a Session Expiry Interval (0) the session ends with
/// the network connection, even with Clean Start 0: reconnecting finds no session and
/// no subscription.
#[tokio::test]
async fn session_without_expiry_ends_with_the_connection() {
    let broker = TestBroker::start().await;
    let (mut client, _) = Client::connect(&broker, &Connect::new("ephemeral").clean(false)).await;
    assert_eq!(client.subscribe(1, &[("eph/t", 1)]).await, [0x01]);
    client.disconnect().await;
    let (mut back, ack) = Client::connect(&broker, &Connect::new("ephemeral").clean(false)).await;
    assert!(!ack.session_present, "{ack:?}");
    let mut publisher = Client::new(&broker, "ephemeral-pub").await;
    publisher.publish(&Publish::new("eph/t", 1, b"x")).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2 and §4.1: within its Session Expiry Interval a session keeps
/// its subscriptions and queues QoS 1 and 2 messages published while its client is
/// away; a reconnect with Clean Start 0 finds it (session present 1) and gets them.
#[tokio::test]
async fn session_lives_for_its_expiry_interval_and_queues_messages() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("lasting", 3);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    assert_eq!(client.subscribe(1, &[("last/#", 2)]).await, [0x02]);
    client.disconnect().await;
    let mut publisher = Client::new(&broker, "lasting-pub").await;
    publisher.publish(&Publish::new("last/1", 1, b"one")).await;
    publisher
        .publish(&Publish::new("last/2", 2, b"two").pkid(2))
        .await;
    publisher.publish(&Publish::new("last/0", 0, b"zero")).await;
    publisher.ping().await;
    let (mut back, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present, "{ack:?}");
    let first = back.expect_and_complete("last/1", b"one").await;
    assert_eq!(first.qos, 1);
    let second = back.expect_and_complete("last/2", b"two").await;
    assert_eq!(second.qos, 2);
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.2: once its Session Expiry Interval has passed, the session is
/// gone — with its subscriptions and what was queued for it.
#[tokio::test]
async fn session_vanishes_after_its_expiry_interval() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("fleeting", 1);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    assert_eq!(client.subscribe(1, &[("fleet/#", 1)]).await, [0x01]);
    client.disconnect().await;
    let mut publisher = Client::new(&broker, "fleeting-pub").await;
    publisher
        .publish(&Publish::new("fleet/1", 1, b"lost"))
        .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut back, ack) = Client::connect(&broker, &connect()).await;
    assert!(!ack.session_present, "{ack:?}");
    back.expect_nothing(QUIET).await;
    publisher
        .publish(&Publish::new("fleet/2", 1, b"x").pkid(2))
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
    let forever = || Connect::resume("forever", u32::MAX);
    let short = || Connect::resume("short", 1);
    for connect in [forever(), short()] {
        let (mut client, _) = Client::connect(&broker, &connect).await;
        assert_eq!(client.subscribe(1, &[("never/t", 1)]).await, [0x01]);
        client.disconnect().await;
    }
    let mut v311 = broker.client("forever311", false).await;
    v311.subscribe(1, "never/t", Qos3::AtLeastOnce).await;
    v311.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let (mut back, ack) = Client::connect(&broker, &forever()).await;
    assert!(ack.session_present, "0xFFFFFFFF: {ack:?}");
    let (_short, ack) = Client::connect(&broker, &short()).await;
    assert!(!ack.session_present, "1 s: {ack:?}");
    let mut v311 = broker.raw().await;
    let ack = v311.connect("forever311", false).await;
    assert!(ack.session_present, "3.1.1 clean session 0: {ack:?}");

    let mut publisher = Client::new(&broker, "never-pub").await;
    publisher
        .publish(&Publish::new("never/t", 1, b"still"))
        .await;
    back.expect_and_complete("never/t", b"still").await;
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
    let (mut old, _) = Client::connect(
        &broker,
        &Connect::new("usurped").will(Will::new("will/usurped", b"replaced").qos(1)),
    )
    .await;
    let _new = Client::new(&broker, "usurped").await;
    old.expect_disconnect(0x8E).await;
    watcher
        .expect_and_complete("will/usurped", b"replaced")
        .await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.5 [MQTT-3.1.2-8] and §3.1.4: with a Will Delay Interval and a
/// lasting session, a takeover that resumes the session (Clean Start 0) is a new
/// connection within the delay: the old connection's will is not published.
#[tokio::test]
async fn a_takeover_within_the_will_delay_keeps_the_will_unpublished() {
    let broker = TestBroker::start().await;
    let mut watcher = watcher(&broker, "w-takeover-delay", "will/#").await;
    let will = Will::new("will/resumed", b"no").qos(1).delay(1);
    let connect = || Connect::resume("resumed", 30).will(will.clone());
    let (mut old, _) = Client::connect(&broker, &connect()).await;
    let (_new, ack) = Client::connect(&broker, &connect()).await;
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
    let connect = || Connect::resume("forgetful", 30);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    client.subscribe(1, &[("again/#", 1)]).await;
    let mut publisher = Client::new(&broker, "forgetful-pub").await;
    let props = Props::new()
        .str(CONTENT_TYPE, "text/plain")
        .user("try", "1");
    publisher
        .publish(&Publish::new("again/x", 1, b"once").props(props))
        .await;
    let first = client.expect_publish().await;
    assert!(!first.dup);
    client.drop_connection().await;

    let (mut back, ack) = Client::connect(&broker, &connect()).await;
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
    assert_eq!(again.props.str(CONTENT_TYPE), Some("text/plain"));
    assert_eq!(again.props.users(), [("try".to_string(), "1".to_string())]);
    back.complete(&again).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.4 [MQTT-4.4.0-1]: a QoS 2 delivery the client had answered with PUBREC
/// but not completed is resumed on reconnection with the PUBREL, not the PUBLISH.
#[tokio::test]
async fn an_outgoing_qos2_exchange_resumes_with_pubrel() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("half-done", 30);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    client.subscribe(1, &[("half/#", 2)]).await;
    let mut publisher = Client::new(&broker, "half-done-pub").await;
    publisher.publish(&Publish::new("half/t", 2, b"once")).await;
    let pkid = client.expect_publish().await.pkid.expect("QoS 2");
    client.send(&ack(PUBREC, pkid)).await;
    client.expect_ack(PUBREL, pkid).await;
    client.drop_connection().await;

    let (mut back, connack) = Client::connect(&broker, &connect()).await;
    assert!(connack.session_present);
    let rel = back.expect_ack(PUBREL, pkid).await;
    assert_eq!(rel.reason, 0x00, "PUBREL again: {rel:?}");
    back.send(&ack(PUBCOMP, pkid)).await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.3.3 and §4.4: a QoS 2 PUBLISH the server has answered with PUBREC is
/// delivered once, even when the publisher reconnects and sends it again (DUP) before
/// releasing it.
#[tokio::test]
async fn an_incoming_qos2_message_resent_after_reconnection_is_delivered_once() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "once-sub").await;
    subscriber.subscribe(1, &[("once/#", 2)]).await;
    let connect = || Connect::resume("once-pub", 30);
    let (mut publisher, _) = Client::connect(&broker, &connect()).await;
    publisher
        .send(&Publish::new("once/t", 2, b"x").pkid(7).bytes())
        .await;
    publisher.expect_ack(PUBREC, 7).await;
    publisher.drop_connection().await;
    let (mut publisher, connack) = Client::connect(&broker, &connect()).await;
    assert!(connack.session_present);
    let again = Publish::new("once/t", 2, b"x").pkid(7).dup();
    publisher.send(&again.bytes()).await;
    let rec = publisher.expect_ack(PUBREC, 7).await;
    assert_eq!(rec.reason, 0x00, "{rec:?}");
    publisher.send(&ack(PUBREL, 7)).await;
    let comp = publisher.expect_ack(PUBCOMP, 7).await;
    assert_eq!(comp.reason, 0x00, "{comp:?}");
    subscriber.expect_and_complete("once/t", b"x").await;
    subscriber.expect_nothing(QUIET).await;
    broker.stop().await;
}
