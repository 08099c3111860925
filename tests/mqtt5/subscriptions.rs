//! Subscription options (§3.8.3.1) and Subscription Identifiers (§3.8.2.1.2).

use crate::common::TestBroker;
use crate::v5::*;

/// MQTT 5.0 §3.8.3.1 [MQTT-3.8.3-3]: with No Local, messages the subscriber publishes
/// itself are not sent back to it on that subscription; other clients' messages are,
/// and other subscribers get its messages.
#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_from_it() {
    let broker = TestBroker::start().await;
    let mut talker = Client::new(&broker, "talker").await;
    assert_eq!(
        talker.subscribe(1, &[("chat/#", 1 | NO_LOCAL)]).await,
        [0x01]
    );
    let mut listener = Client::new(&broker, "listener").await;
    listener.subscribe(1, &[("chat/#", 1)]).await;

    talker.publish(&Publish::new("chat/room", 1, b"mine")).await;
    listener.expect_and_complete("chat/room", b"mine").await;
    talker.expect_nothing(QUIET).await;

    listener
        .publish(&Publish::new("chat/room", 1, b"yours").pkid(2))
        .await;
    talker.expect_and_complete("chat/room", b"yours").await;
    broker.stop().await;
}

/// A No Local subscription leaves a client's own message out only on that
/// subscription: through another matching subscription without it, the message comes
/// back.
#[tokio::test]
async fn no_local_applies_to_its_own_subscription_only() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "half-local").await;
    assert_eq!(client.subscribe(1, &[("nl/#", NO_LOCAL)]).await, [0x00]);
    assert_eq!(client.subscribe_id(2, 2, "nl/+", 0).await, 0x00);
    client.publish(&Publish::new("nl/x", 0, b"echo")).await;
    let got = client.expect_and_complete("nl/x", b"echo").await;
    assert_eq!(
        got.props.subscription_ids(),
        [2],
        "only through nl/+: {got:?}"
    );
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.1.3 [MQTT-3.3.1-12, -13]: with Retain As Published, a live message
/// keeps the RETAIN flag it was published with; without it, the flag is 0. A retained
/// message sent because of a new subscription has RETAIN 1 either way.
#[tokio::test]
async fn retain_as_published_keeps_the_retain_flag() {
    let broker = TestBroker::start().await;
    let mut keeper = Client::new(&broker, "rap").await;
    keeper
        .subscribe(1, &[("rap/#", 1 | RETAIN_AS_PUBLISHED)])
        .await;
    let mut plain = Client::new(&broker, "no-rap").await;
    plain.subscribe(1, &[("rap/#", 1)]).await;
    let mut publisher = Client::new(&broker, "rap-pub").await;
    publisher
        .publish(&Publish::new("rap/x", 1, b"kept").retain())
        .await;
    publisher
        .publish(&Publish::new("rap/y", 1, b"live").pkid(2))
        .await;
    assert!(keeper.expect_and_complete("rap/x", b"kept").await.retain);
    assert!(!keeper.expect_and_complete("rap/y", b"live").await.retain);
    assert!(!plain.expect_and_complete("rap/x", b"kept").await.retain);
    assert!(!plain.expect_and_complete("rap/y", b"live").await.retain);

    let mut late = Client::new(&broker, "rap-late").await;
    late.subscribe(1, &[("rap/#", 1)]).await;
    assert!(late.expect_and_complete("rap/x", b"kept").await.retain);
    late.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// Publishes a retained message on `topic` from a client of its own.
async fn retain(broker: &TestBroker, topic: &str, payload: &[u8]) {
    let mut publisher = Client::new(broker, &format!("retainer-{topic}")).await;
    publisher
        .publish(&Publish::new(topic, 1, payload).retain())
        .await;
    publisher.disconnect().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.3.1-9]: Retain Handling 0 sends the retained messages on
/// every SUBSCRIBE, including one that replaces an existing subscription.
#[tokio::test]
async fn retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let broker = TestBroker::start().await;
    retain(&broker, "rh0/t", b"r").await;
    let mut client = Client::new(&broker, "rh0").await;
    for pkid in 1..=2 {
        // Retain Handling 0: the option bits left at 0.
        client.subscribe(pkid, &[("rh0/#", 1)]).await;
        assert!(client.expect_and_complete("rh0/t", b"r").await.retain);
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
    let mut client = Client::new(&broker, "rh1").await;
    client
        .subscribe(1, &[("rh1/#", 1 | RETAIN_HANDLING_NEW)])
        .await;
    assert!(client.expect_and_complete("rh1/t", b"r").await.retain);
    client
        .subscribe(2, &[("rh1/#", 1 | RETAIN_HANDLING_NEW)])
        .await;
    client.expect_nothing(QUIET).await;
    // Unsubscribed, it is new again.
    client.unsubscribe(3, &["rh1/#"]).await;
    client
        .subscribe(4, &[("rh1/#", 1 | RETAIN_HANDLING_NEW)])
        .await;
    assert!(client.expect_and_complete("rh1/t", b"r").await.retain);
    broker.stop().await;
}

/// MQTT 5.0 §3.8.3.1 [MQTT-3.3.1-11]: Retain Handling 2 never sends retained messages at
/// subscription; live messages still flow.
#[tokio::test]
async fn retain_handling_2_never_sends_retained_messages() {
    let broker = TestBroker::start().await;
    retain(&broker, "rh2/t", b"r").await;
    let mut client = Client::new(&broker, "rh2").await;
    client
        .subscribe(1, &[("rh2/#", 1 | RETAIN_HANDLING_NEVER)])
        .await;
    client.expect_nothing(QUIET).await;
    let mut publisher = Client::new(&broker, "rh2-pub").await;
    publisher.publish(&Publish::new("rh2/t", 1, b"live")).await;
    client.expect_and_complete("rh2/t", b"live").await;
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
    let mut client = Client::new(&broker, "sid").await;
    assert_eq!(client.subscribe_id(1, 7, "sid/+", 1).await, 0x01);
    let r = client.expect_and_complete("sid/r", b"retained").await;
    assert_eq!(r.props.subscription_ids(), [7], "{r:?}");
    client.subscribe(2, &[("plain/#", 1)]).await;
    let mut publisher = Client::new(&broker, "sid-pub").await;
    publisher.publish(&Publish::new("sid/a", 1, b"a")).await;
    publisher
        .publish(&Publish::new("plain/a", 1, b"p").pkid(2))
        .await;
    assert_eq!(
        client
            .expect_and_complete("sid/a", b"a")
            .await
            .props
            .subscription_ids(),
        [7]
    );
    let p = client.expect_and_complete("plain/a", b"p").await;
    assert!(p.props.subscription_ids().is_empty(), "{p:?}");

    // 268,435,455 is the largest identifier (§3.8.2.1.2).
    client
        .subscribe_id(3, 268_435_455, "sid/+", 1 | RETAIN_HANDLING_NEVER)
        .await;
    publisher
        .publish(&Publish::new("sid/b", 1, b"b").pkid(3))
        .await;
    let b = client.expect_and_complete("sid/b", b"b").await;
    assert_eq!(b.props.subscription_ids(), [268_435_455], "{b:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-4, -5]: when a client's overlapping subscriptions match a
/// message, it is sent once, carrying the identifiers of all of them.
#[tokio::test]
async fn overlapping_subscriptions_get_one_publish_with_every_identifier() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "overlap").await;
    for (pkid, filter, sid) in [(1u16, "ov/#", 1u32), (2, "ov/+", 2), (3, "+/a", 300)] {
        client.subscribe_id(pkid, sid, filter, 1).await;
    }
    let mut publisher = Client::new(&broker, "overlap-pub").await;
    publisher.publish(&Publish::new("ov/a", 1, b"x")).await;
    let got = client.expect_and_complete("ov/a", b"x").await;
    let mut ids = got.props.subscription_ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 300], "{got:?}");
    client.expect_nothing(QUIET).await;
    publisher
        .publish(&Publish::new("ov/b/c", 1, b"y").pkid(2))
        .await;
    let got = client.expect_and_complete("ov/b/c", b"y").await;
    assert_eq!(got.props.subscription_ids(), [1], "{got:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-2]: a message matching several of a client's
/// subscriptions, delivered as one PUBLISH, goes at the highest QoS they grant (capped
/// by the QoS it was published with).
#[tokio::test]
async fn overlapping_subscriptions_deliver_at_the_highest_granted_qos() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "overlap-qos").await;
    for (pkid, filter, qos, sid) in [(1u16, "oq/#", 0u8, 1u32), (2, "oq/+", 2, 2)] {
        client.subscribe_id(pkid, sid, filter, qos).await;
    }
    let mut publisher = Client::new(&broker, "overlap-qos-pub").await;
    publisher.publish(&Publish::new("oq/a", 1, b"x")).await;
    let got = client.expect_and_complete("oq/a", b"x").await;
    assert_eq!(got.qos, 1, "{got:?}");
    let mut ids = got.props.subscription_ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "{got:?}");
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}
