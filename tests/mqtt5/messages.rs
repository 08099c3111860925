//! Application messages and what travels with them: message expiry, the will and its
//! delay, and the properties forwarded from publisher to subscriber, across versions.

use std::time::{Duration, Instant};

use mqttbytes::QoS as Qos3;

use crate::common::{field, frame, TestBroker};
use crate::v5::*;

/// MQTT 5.0 §3.3.2.3.3 [MQTT-3.3.2-5]: a message whose Message Expiry Interval passes
/// while it waits for an offline subscriber is not delivered; one still within it is,
/// and [MQTT-3.3.2-6] carries the interval less the time it waited.
#[tokio::test]
async fn queued_message_expires_before_delivery() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("late", 60);
    let (mut client, _) = Client::connect(&broker, &connect()).await;
    assert_eq!(client.subscribe(1, &[("exp/#", 1)]).await, [0x01]);
    client.disconnect().await;
    let mut publisher = Client::new(&broker, "exp-pub").await;
    let expiry = |secs| Props::new().u32(MESSAGE_EXPIRY_INTERVAL, secs);
    publisher
        .publish(&Publish::new("exp/short", 1, b"stale").props(expiry(1)))
        .await;
    publisher
        .publish(
            &Publish::new("exp/long", 1, b"fresh")
                .pkid(2)
                .props(expiry(60)),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut back, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present);
    let got = back.expect_and_complete("exp/long", b"fresh").await;
    let left = got.props.u32(MESSAGE_EXPIRY_INTERVAL);
    assert!(
        matches!(left, Some(58..=59)),
        "60 s less the ~1.5 s waited, rounded up: {got:?}"
    );
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.3: a message delivered at once carries its Message Expiry
/// Interval (what is left, rounded up: all of it); a message published without one
/// carries none.
#[tokio::test]
async fn delivered_message_carries_its_expiry_interval() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "exp-live").await;
    subscriber.subscribe(1, &[("live/#", 1)]).await;
    let mut publisher = Client::new(&broker, "exp-live-pub").await;
    let props = Props::new().u32(MESSAGE_EXPIRY_INTERVAL, 60);
    publisher
        .publish(&Publish::new("live/a", 1, b"a").props(props))
        .await;
    publisher
        .publish(&Publish::new("live/b", 1, b"b").pkid(2))
        .await;
    let a = subscriber.expect_and_complete("live/a", b"a").await;
    assert_eq!(a.props.u32(MESSAGE_EXPIRY_INTERVAL), Some(60), "{a:?}");
    let b = subscriber.expect_and_complete("live/b", b"b").await;
    assert!(b.props.get(MESSAGE_EXPIRY_INTERVAL).is_none(), "{b:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.3: a retained message expires too: sent to a subscriber within its
/// interval (with the retain flag and what is left of the interval), no longer after,
/// when it is found expired and deleted.
#[tokio::test]
async fn retained_message_expires() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "ret-exp-pub").await;
    let props = Props::new().u32(MESSAGE_EXPIRY_INTERVAL, 1);
    publisher
        .publish(&Publish::new("ret/exp", 1, b"brief").retain().props(props))
        .await;
    let mut early = Client::new(&broker, "ret-early").await;
    early.subscribe(1, &[("ret/#", 1)]).await;
    let got = early.expect_and_complete("ret/exp", b"brief").await;
    assert!(got.retain);
    assert_eq!(got.props.u32(MESSAGE_EXPIRY_INTERVAL), Some(1));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut late = Client::new(&broker, "ret-late").await;
    late.subscribe(1, &[("ret/#", 1)]).await;
    late.expect_nothing(QUIET).await;
    // Found expired, it was deleted, not only skipped.
    let stored = herald::storage::Storage::load(&*broker.storage).unwrap();
    assert!(!stored.retained.keys().any(|t| t.as_str() == "ret/exp"));
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2 [MQTT-3.1.3-10]: a will is published with its properties — Payload
/// Format Indicator, Content Type, Response Topic, Correlation Data, Message Expiry
/// Interval and User Properties in their order, duplicates kept.
#[tokio::test]
async fn will_carries_its_properties() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "will-props-watch").await;
    watcher.subscribe(1, &[("status/#", 1)]).await;
    let will_props = Props::new()
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .str(CONTENT_TYPE, "text/plain")
        .str(RESPONSE_TOPIC, "status/replies")
        .bin(CORRELATION_DATA, &[0, 1, 2, 255])
        .u32(MESSAGE_EXPIRY_INTERVAL, 60)
        .user("reason", "crash")
        .user("host", "a")
        .user("reason", "again");
    let will = Will::new("status/mortal", b"offline")
        .qos(1)
        .props(will_props);
    let (client, _) = Client::connect(&broker, &Connect::new("mortal").will(will)).await;
    client.drop_connection().await;
    let will = watcher
        .expect_and_complete("status/mortal", b"offline")
        .await;
    let p = &will.props;
    assert_eq!(p.byte(PAYLOAD_FORMAT_INDICATOR), Some(1), "{p:?}");
    assert_eq!(p.str(CONTENT_TYPE), Some("text/plain"));
    assert_eq!(p.str(RESPONSE_TOPIC), Some("status/replies"));
    assert_eq!(p.bin(CORRELATION_DATA), Some(&[0u8, 1, 2, 255][..]));
    assert!(matches!(p.u32(MESSAGE_EXPIRY_INTERVAL), Some(59..=60)));
    assert_eq!(
        p.users(),
        [
            ("reason".to_string(), "crash".to_string()),
            ("host".into(), "a".into()),
            ("reason".into(), "again".into())
        ]
    );
    assert!(p.get(WILL_DELAY_INTERVAL).is_none(), "{p:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2.2: with a Will Delay Interval the will is published that long
/// after the connection is lost, not at once.
#[tokio::test]
async fn will_is_published_after_its_delay() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "delay-watch").await;
    watcher.subscribe(1, &[("delayed/#", 1)]).await;
    let will = Will::new("delayed/a", b"late").qos(1).delay(1);
    let (client, _) =
        Client::connect(&broker, &Connect::new("delayer").expiry(30).will(will)).await;
    client.drop_connection().await;
    let lost = Instant::now();
    watcher.expect_nothing(Duration::from_millis(700)).await;
    watcher.expect_and_complete("delayed/a", b"late").await;
    let after = lost.elapsed();
    assert!(
        after >= Duration::from_millis(950) && after < Duration::from_secs(3),
        "will after {after:?}"
    );
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2.2 [MQTT-3.1.3-9]: a client that reconnects to its session before
/// the Will Delay Interval has passed has its will not published at all.
#[tokio::test]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "cancel-watch").await;
    watcher.subscribe(1, &[("cancel/#", 1)]).await;
    let connect = || {
        let will = Will::new("cancel/a", b"never").qos(1).delay(1);
        Connect::resume("returner", 30).will(will)
    };
    let (client, _) = Client::connect(&broker, &connect()).await;
    client.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (back, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present, "{ack:?}");
    watcher.expect_nothing(Duration::from_millis(1800)).await;
    // The new connection's will is discarded by a normal DISCONNECT.
    back.disconnect().await;
    watcher.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2.2: the will is published when the Will Delay Interval passes or
/// the session ends, whichever comes first: with Session Expiry 0 the session ends with
/// the connection, and a 10 s will delay does not hold the will back.
#[tokio::test]
async fn will_is_published_at_once_when_the_session_ends_before_its_delay() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "end-watch").await;
    watcher.subscribe(1, &[("ending/#", 1)]).await;
    let will = Will::new("ending/a", b"now").qos(1).delay(10);
    let (client, _) = Client::connect(&broker, &Connect::new("ender").will(will)).await;
    client.drop_connection().await;
    let got = tokio::time::timeout(Duration::from_secs(1), watcher.expect_publish())
        .await
        .expect("the will within a second, not after its 10 s delay");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ending/a", &b"now"[..])
    );
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.2–§3.3.2.3.7 [MQTT-3.3.2-4, -15, -16, -17, -20]: the Payload Format
/// Indicator, Content Type, Response Topic, Correlation Data and User Properties reach
/// the subscriber unchanged, user properties in order with duplicates kept.
#[tokio::test]
async fn publish_properties_reach_the_subscriber_unchanged() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "props-sub").await;
    subscriber.subscribe(1, &[("req/#", 2)]).await;
    let mut publisher = Client::new(&broker, "props-pub").await;
    let users = [("k", "v1"), ("k", "v2"), ("empty", ""), ("ünï", "cödé")];
    let props = Props::new()
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .str(CONTENT_TYPE, "application/json")
        .str(RESPONSE_TOPIC, "resp/client-7")
        .bin(CORRELATION_DATA, b"\x00corr\xff");
    let props = users.iter().fold(props, |props, (k, v)| props.user(k, v));
    for (qos, pkid) in [(0u8, 0u16), (1, 1), (2, 2)] {
        publisher
            .publish(
                &Publish::new("req/x", qos, b"{\"a\":1}")
                    .pkid(pkid)
                    .props(props.clone()),
            )
            .await;
        let got = subscriber.expect_and_complete("req/x", b"{\"a\":1}").await;
        assert_eq!(got.qos, qos);
        let p = &got.props;
        assert_eq!(p.byte(PAYLOAD_FORMAT_INDICATOR), Some(1), "{p:?}");
        assert_eq!(p.str(CONTENT_TYPE), Some("application/json"));
        assert_eq!(p.str(RESPONSE_TOPIC), Some("resp/client-7"));
        assert_eq!(p.bin(CORRELATION_DATA), Some(&b"\x00corr\xff"[..]));
        assert_eq!(
            p.users(),
            users.map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(p.get(MESSAGE_EXPIRY_INTERVAL).is_none());
        assert!(
            p.get(TOPIC_ALIAS).is_none(),
            "the subscriber allowed no alias"
        );
    }
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3 and MQTT 3.1.1 §3.3: a 3.1.1 subscriber gets an MQTT 5.0 message
/// as a plain 3.1.1 PUBLISH — topic, packet id, payload, no properties.
#[tokio::test]
async fn mqtt_3_1_1_subscriber_gets_a_5_0_message_without_properties() {
    let broker = TestBroker::start().await;
    let mut subscriber = broker.client("v311-sub", true).await;
    subscriber.subscribe(1, "mix/#", Qos3::AtMostOnce).await;
    let mut publisher = Client::new(&broker, "v5-pub").await;
    let props = Props::new()
        .str(CONTENT_TYPE, "text/plain")
        .user("k", "v")
        .u32(MESSAGE_EXPIRY_INTERVAL, 30);
    publisher
        .publish(&Publish::new("mix/a", 1, b"hello").props(props))
        .await;
    let mut expected = field(b"mix/a");
    expected.extend_from_slice(b"hello");
    assert_eq!(subscriber.recv_frame().await, Some(frame(0x30, &expected)));
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3: an MQTT 5.0 subscriber gets an MQTT 3.1.1 publisher's message with
/// an empty property list.
#[tokio::test]
async fn mqtt_5_subscriber_gets_a_3_1_1_message_without_properties() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "v5-sub").await;
    subscriber.subscribe(1, &[("mix/#", 1)]).await;
    let mut publisher = broker.client("v311-pub", true).await;
    publisher
        .publish("mix/b", Qos3::AtLeastOnce, b"from 3.1.1", false, 4)
        .await;
    let got = subscriber.expect_and_complete("mix/b", b"from 3.1.1").await;
    assert_eq!(got.qos, 1);
    assert!(got.props.is_empty(), "{got:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2.2: a will whose delay is longer than the session's expiry is
/// published when the session ends — after the 1 s Session Expiry Interval, long
/// before the 10 s Will Delay Interval.
#[tokio::test]
async fn will_is_published_when_the_session_expires_before_its_delay() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "expiry-watch").await;
    watcher.subscribe(1, &[("expiring/#", 1)]).await;
    let will = Will::new("expiring/a", b"ended").qos(1).delay(10);
    let (client, _) = Client::connect(&broker, &Connect::new("expirer").expiry(1).will(will)).await;
    client.drop_connection().await;
    let lost = Instant::now();
    watcher.expect_nothing(Duration::from_millis(600)).await;
    watcher.expect_and_complete("expiring/a", b"ended").await;
    let after = lost.elapsed();
    assert!(after < Duration::from_secs(4), "will after {after:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.1.3 and §3.3.2.3: a retained message keeps its properties for the
/// subscribers it is sent to later.
#[tokio::test]
async fn retained_message_keeps_its_properties() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "ret-props-pub").await;
    let users = [("unit", "celsius"), ("unit", "kelvin")];
    let props = Props::new()
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .str(CONTENT_TYPE, "text/csv")
        .str(RESPONSE_TOPIC, "ret/answers")
        .bin(CORRELATION_DATA, b"42");
    let props = users.iter().fold(props, |props, (k, v)| props.user(k, v));
    publisher
        .publish(&Publish::new("ret/props", 2, b"21.5").retain().props(props))
        .await;
    publisher.disconnect().await;
    let mut late = Client::new(&broker, "ret-props-sub").await;
    late.subscribe(1, &[("ret/#", 2)]).await;
    let got = late.expect_and_complete("ret/props", b"21.5").await;
    assert!(got.retain);
    let p = &got.props;
    assert_eq!(p.byte(PAYLOAD_FORMAT_INDICATOR), Some(1), "{p:?}");
    assert_eq!(p.str(CONTENT_TYPE), Some("text/csv"));
    assert_eq!(p.str(RESPONSE_TOPIC), Some("ret/answers"));
    assert_eq!(p.bin(CORRELATION_DATA), Some(&b"42"[..]));
    assert_eq!(
        p.users(),
        users.map(|(k, v)| (k.to_string(), v.to_string()))
    );
    broker.stop().await;
}

/// MQTT 5.0 §3.1.3.2.4: a will's Message Expiry Interval "is sent as the Publication
/// Expiry Interval when the Server publishes the Will Message": it runs from the
/// will's publication, not from CONNECT. A will with a 1 s interval from a connection
/// that lived longer than that is still published, carrying the interval.
#[tokio::test]
async fn will_expiry_interval_runs_from_its_publication() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::new(&broker, "will-exp-watch").await;
    watcher.subscribe(1, &[("wexp/#", 1)]).await;
    let will = Will::new("wexp/a", b"later")
        .qos(1)
        .props(Props::new().u32(MESSAGE_EXPIRY_INTERVAL, 1));
    let (client, _) = Client::connect(&broker, &Connect::new("long-lived").will(will)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.drop_connection().await;
    let got = watcher.expect_and_complete("wexp/a", b"later").await;
    assert_eq!(got.props.u32(MESSAGE_EXPIRY_INTERVAL), Some(1), "{got:?}");
    broker.stop().await;
}
