//! Subscription options (§3.8.3.1) and Subscription Identifiers (§3.8.2.1.2).

use crate::common::TestBroker;
use crate::v5::{self, id, retain_handling, Client, Props, NO_LOCAL, RETAIN_AS_PUBLISHED};
use crate::QUIET;

/// MQTT 5.0 §3.8.3.1 [MQTT-3.8.3-3]: with No Local, messages the subscriber publishes
/// itself are not sent back to it on that subscription; other clients' messages are,
/// and other subscribers get its messages.
#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_from_it() {
    let broker = TestBroker::start().await;
    let mut talker = Client::simple(broker.addr, "talker").await;
    assert_eq!(talker.subscribe(1, "chat/#", 1 | NO_LOCAL).await, 0x01);
    let mut listener = Client::simple(broker.addr, "listener").await;
    listener.subscribe(1, "chat/#", 1).await;

    talker
        .publish("chat/room", 1, 1, &Props::new(), b"mine")
        .await;
    listener.expect_message("chat/room", b"mine").await;
    talker.expect_nothing(QUIET).await;

    listener
        .publish("chat/room", 1, 2, &Props::new(), b"yours")
        .await;
    talker.expect_message("chat/room", b"yours").await;
    broker.stop().await;
}

/// A No Local subscription leaves a client's own message out only on that
/// subscription: through another matching subscription without it, the message comes
/// back.
#[tokio::test]
async fn no_local_applies_to_its_own_subscription_only() {
    let broker = TestBroker::start().await;
    let mut client = Client::simple(broker.addr, "half-local").await;
    assert_eq!(client.subscribe(1, "nl/#", NO_LOCAL).await, 0x00);
    let sid = Props::new().var(id::SUBSCRIPTION_IDENTIFIER, 2);
    let ack = client.subscribe_with(2, &sid, &[("nl/+", 0)]).await;
    assert_eq!(ack.codes, [0x00]);
    client.publish("nl/x", 0, 0, &Props::new(), b"echo").await;
    let got = client.expect_message("nl/x", b"echo").await;
    assert_eq!(got.props.sub_ids(), [2], "only through nl/+: {got:?}");
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.1.3 [MQTT-3.3.1-12, -13]: with Retain As Published, a live message
/// keeps the RETAIN flag it was published with; without it, the flag is 0. A retained
/// message sent because of a new subscription has RETAIN 1 either way.
#[tokio::test]
async fn retain_as_published_keeps_the_retain_flag() {
    let broker = TestBroker::start().await;
    let mut keeper = Client::simple(broker.addr, "rap").await;
    keeper.subscribe(1, "rap/#", 1 | RETAIN_AS_PUBLISHED).await;
    let mut plain = Client::simple(broker.addr, "no-rap").await;
    plain.subscribe(1, "rap/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "rap-pub").await;
    publisher
        .publish_retain("rap/x", 1, 1, true, &Props::new(), b"kept")
        .await;
    publisher
        .publish_retain("rap/y", 1, 2, false, &Props::new(), b"live")
        .await;
    assert!(keeper.expect_message("rap/x", b"kept").await.retain);
    assert!(!keeper.expect_message("rap/y", b"live").await.retain);
    assert!(!plain.expect_message("rap/x", b"kept").await.retain);
    assert!(!plain.expect_message("rap/y", b"live").await.retain);

    let mut late = Client::simple(broker.addr, "rap-late").await;
    late.subscribe(1, "rap/#", 1).await;
    assert!(late.expect_message("rap/x", b"kept").await.retain);
    late.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// Publishes a retained message on `topic` from a client of its own.
async fn retain(broker: &TestBroker, topic: &str, payload: &[u8]) {
    let mut publisher = Client::simple(broker.addr, &format!("retainer-{topic}")).await;
    publisher
        .publish_retain(topic, 1, 1, true, &Props::new(), payload)
        .await;
    publisher.disconnect().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.3.1-9]: Retain Handling 0 sends the retained messages on
/// every SUBSCRIBE, including one that replaces an existing subscription.
#[tokio::test]
async fn retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let broker = TestBroker::start().await;
    retain(&broker, "rh0/t", b"r").await;
    let mut client = Client::simple(broker.addr, "rh0").await;
    for pkid in 1..=2 {
        client
            .subscribe(pkid, "rh0/#", 1 | retain_handling(0))
            .await;
        assert!(client.expect_message("rh0/t", b"r").await.retain);
    }
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.3.1-10]: Retain Handling 1 sends the retained messages only
/// when the subscription did not exist before.
#[tokio::test]
async fn retain_handling_1_sends_retained_messages_for_a_new_subscription_only() {
    let broker = TestBroker::start().await;
    retain(&broker, "rh1/t", b"r").await;
    let mut client = Client::simple(broker.addr, "rh1").await;
    client.subscribe(1, "rh1/#", 1 | retain_handling(1)).await;
    assert!(client.expect_message("rh1/t", b"r").await.retain);
    client.subscribe(2, "rh1/#", 1 | retain_handling(1)).await;
    client.expect_nothing(QUIET).await;
    // Unsubscribed, it is new again.
    client.send(&v5::unsubscribe(3, &["rh1/#"])).await;
    client.expect().await;
    client.subscribe(4, "rh1/#", 1 | retain_handling(1)).await;
    assert!(client.expect_message("rh1/t", b"r").await.retain);
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.3.1-11]: Retain Handling 2 never sends retained messages at
/// subscription; live messages still flow.
#[tokio::test]
async fn retain_handling_2_never_sends_retained_messages() {
    let broker = TestBroker::start().await;
    retain(&broker, "rh2/t", b"r").await;
    let mut client = Client::simple(broker.addr, "rh2").await;
    client.subscribe(1, "rh2/#", 1 | retain_handling(2)).await;
    client.expect_nothing(QUIET).await;
    let mut publisher = Client::simple(broker.addr, "rh2-pub").await;
    publisher
        .publish("rh2/t", 1, 1, &Props::new(), b"live")
        .await;
    client.expect_message("rh2/t", b"live").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.8.2.1.2 and §3.3.2.3.8 [MQTT-3.3.4-3]: the Subscription Identifier given
/// with SUBSCRIBE comes back on the PUBLISHes that subscription matches, retained ones
/// included; a subscription made without one gets none; subscribing again with another
/// identifier replaces it.
#[tokio::test]
async fn subscription_identifier_comes_back_on_matching_messages() {
    let broker = TestBroker::start().await;
    retain(&broker, "sid/r", b"retained").await;
    let mut client = Client::simple(broker.addr, "sid").await;
    let ack = client
        .subscribe_with(
            1,
            &Props::new().var(id::SUBSCRIPTION_IDENTIFIER, 7),
            &[("sid/+", 1)],
        )
        .await;
    assert_eq!(ack.codes, [0x01]);
    let r = client.expect_message("sid/r", b"retained").await;
    assert_eq!(r.props.sub_ids(), [7], "{r:?}");
    client.subscribe(2, "plain/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "sid-pub").await;
    publisher.publish("sid/a", 1, 1, &Props::new(), b"a").await;
    publisher
        .publish("plain/a", 1, 2, &Props::new(), b"p")
        .await;
    assert_eq!(
        client.expect_message("sid/a", b"a").await.props.sub_ids(),
        [7]
    );
    let p = client.expect_message("plain/a", b"p").await;
    assert!(p.props.sub_ids().is_empty(), "{p:?}");

    // 268,435,455 is the largest identifier (§3.8.2.1.2).
    let big = Props::new().var(id::SUBSCRIPTION_IDENTIFIER, 268_435_455);
    client
        .subscribe_with(3, &big, &[("sid/+", 1 | retain_handling(2))])
        .await;
    publisher.publish("sid/b", 1, 3, &Props::new(), b"b").await;
    let b = client.expect_message("sid/b", b"b").await;
    assert_eq!(b.props.sub_ids(), [268_435_455], "{b:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-4, -5]: when a client's overlapping subscriptions match a
/// message, it is sent once, carrying the identifiers of all of them.
#[tokio::test]
async fn overlapping_subscriptions_get_one_publish_with_every_identifier() {
    let broker = TestBroker::start().await;
    let mut client = Client::simple(broker.addr, "overlap").await;
    for (pkid, filter, sid) in [(1u16, "ov/#", 1u32), (2, "ov/+", 2), (3, "+/a", 300)] {
        let props = Props::new().var(id::SUBSCRIPTION_IDENTIFIER, sid);
        client.subscribe_with(pkid, &props, &[(filter, 1)]).await;
    }
    let mut publisher = Client::simple(broker.addr, "overlap-pub").await;
    publisher.publish("ov/a", 1, 1, &Props::new(), b"x").await;
    let got = client.expect_message("ov/a", b"x").await;
    let mut ids = got.props.sub_ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 300], "{got:?}");
    client.expect_nothing(QUIET).await;
    publisher.publish("ov/b/c", 1, 2, &Props::new(), b"y").await;
    let got = client.expect_message("ov/b/c", b"y").await;
    assert_eq!(got.props.sub_ids(), [1], "{got:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-2]: a message matching several of a client's
/// subscriptions, delivered as one PUBLISH, goes at the highest QoS they grant (capped
/// by the QoS it was published with).
#[tokio::test]
async fn overlapping_subscriptions_deliver_at_the_highest_granted_qos() {
    let broker = TestBroker::start().await;
    let mut client = Client::simple(broker.addr, "overlap-qos").await;
    for (pkid, filter, qos, sid) in [(1u16, "oq/#", 0u8, 1u32), (2, "oq/+", 2, 2)] {
        let props = Props::new().var(id::SUBSCRIPTION_IDENTIFIER, sid);
        client.subscribe_with(pkid, &props, &[(filter, qos)]).await;
    }
    let mut publisher = Client::simple(broker.addr, "overlap-qos-pub").await;
    publisher.publish("oq/a", 1, 1, &Props::new(), b"x").await;
    let got = client.expect_message("oq/a", b"x").await;
    assert_eq!(got.qos, 1, "{got:?}");
    let mut ids = got.props.sub_ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "{got:?}");
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}
