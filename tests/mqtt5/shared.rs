//! Shared subscriptions (§4.8.2): `$share/{group}/{filter}`, each message to one member.

use std::collections::BTreeSet;
use std::time::Duration;

use mqttbytes::v4;
use mqttbytes::QoS as Qos3;

use crate::common::{RawClient, TestBroker};
use crate::v5::*;

/// Everything `client` receives until it has been quiet for [`QUIET`], each PUBLISH
/// acknowledged: the payloads.
async fn drain(client: &mut Client) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(packet) = client.recv_within(QUIET).await {
        match packet {
            Packet::Publish(p) => {
                client.complete(&p).await;
                got.push(p.payload);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

/// Everything a 3.1.1 client receives until it has been quiet for [`QUIET`], each QoS 1
/// PUBLISH acknowledged.
async fn drain_v311(client: &mut RawClient) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(packet) = client.recv_within(QUIET).await {
        match packet {
            v4::Packet::Publish(p) => {
                if p.qos == Qos3::AtLeastOnce {
                    client.send_packet(v4::PubAck::new(p.pkid)).await;
                }
                got.push(p.payload.to_vec());
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

/// Payloads 0..n as single bytes.
fn payloads(n: u8) -> BTreeSet<Vec<u8>> {
    (0..n).map(|i| vec![i]).collect()
}

/// MQTT 5.0 §4.8.2: each message matching a shared subscription goes to exactly one
/// member of the group — here in turn, so two members get half each — while a
/// non-shared subscription to the same topics gets every message.
#[tokio::test]
async fn shared_subscription_gives_each_message_to_one_member_in_turn() {
    let broker = TestBroker::start().await;
    let mut a = Client::new(&broker, "member-a").await;
    let mut b = Client::new(&broker, "member-b").await;
    for member in [&mut a, &mut b] {
        assert_eq!(
            member.subscribe(1, &[("$share/workers/jobs/#", 1)]).await,
            [0x01]
        );
    }
    let mut watcher = Client::new(&broker, "jobs-watcher").await;
    watcher.subscribe(1, &[("jobs/#", 1)]).await;
    let mut publisher = Client::new(&broker, "jobs-pub").await;
    for i in 0..6u8 {
        publisher
            .publish(&Publish::new("jobs/new", 1, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    let got_a = drain(&mut a).await;
    let got_b = drain(&mut b).await;
    assert_eq!((got_a.len(), got_b.len()), (3, 3), "{got_a:?} {got_b:?}");
    let all: BTreeSet<_> = got_a.iter().chain(&got_b).cloned().collect();
    assert_eq!(all, payloads(6));
    // In turn: the members alternate.
    assert!(
        got_a.windows(2).all(|w| w[1][0] == w[0][0] + 2),
        "{got_a:?}"
    );
    let watched = drain(&mut watcher).await;
    assert_eq!(watched.into_iter().collect::<BTreeSet<_>>(), payloads(6));
    broker.stop().await;
}

/// MQTT 5.0 §4.8.2: two groups on the same filter each get every message, one member
/// each.
#[tokio::test]
async fn each_group_gets_every_message() {
    let broker = TestBroker::start().await;
    let mut g1 = Client::new(&broker, "group1").await;
    g1.subscribe(1, &[("$share/one/grp/+", 0)]).await;
    let mut g2 = Client::new(&broker, "group2").await;
    g2.subscribe(1, &[("$share/two/grp/+", 0)]).await;
    let mut publisher = Client::new(&broker, "grp-pub").await;
    for i in 0..3u8 {
        publisher.publish(&Publish::new("grp/x", 0, &[i])).await;
    }
    assert_eq!(drain(&mut g1).await.len(), 3);
    assert_eq!(drain(&mut g2).await.len(), 3);
    broker.stop().await;
}

/// MQTT 5.0 §4.8.2: members of a group may speak different versions — a 3.1.1 client
/// subscribing to `$share/...` shares the messages with an MQTT 5.0 member.
#[tokio::test]
async fn a_group_mixes_mqtt_3_1_1_and_5_0_members() {
    let broker = TestBroker::start().await;
    let mut v5_member = Client::new(&broker, "mixed-v5").await;
    v5_member.subscribe(1, &[("$share/mixed/mx/#", 1)]).await;
    let mut v3_member = broker.client("mixed-v311", true).await;
    let codes = v3_member
        .subscribe(1, "$share/mixed/mx/#", Qos3::AtLeastOnce)
        .await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Success(Qos3::AtLeastOnce)]);
    let mut publisher = Client::new(&broker, "mixed-pub").await;
    for i in 0..4u8 {
        publisher
            .publish(&Publish::new("mx/t", 1, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    let got_v5 = drain(&mut v5_member).await;
    let got_v3 = drain_v311(&mut v3_member).await;
    assert_eq!(
        (got_v5.len(), got_v3.len()),
        (2, 2),
        "{got_v5:?} {got_v3:?}"
    );
    let all: BTreeSet<_> = got_v5.into_iter().chain(got_v3).collect();
    assert_eq!(all, payloads(4));
    broker.stop().await;
}

/// MQTT 5.0 §4.8.2: retained messages are not sent when a session subscribes to a
/// shared subscription; a non-shared subscription to the same filter gets them.
#[tokio::test]
async fn subscribing_to_a_shared_filter_sends_no_retained_messages() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "shr-pub").await;
    publisher
        .publish(&Publish::new("shr/x", 1, b"old").retain())
        .await;
    let mut member = Client::new(&broker, "shr-member").await;
    member.subscribe(1, &[("$share/g/shr/#", 1)]).await;
    member.expect_nothing(QUIET).await;
    member.subscribe(2, &[("shr/#", 1)]).await;
    assert!(member.expect_and_complete("shr/x", b"old").await.retain);
    broker.stop().await;
}

/// Messages go to an online member rather than an offline one whose session lives on,
/// and the offline member finds none waiting when it returns.
#[tokio::test]
async fn shared_messages_prefer_online_members() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("away", 60);
    let (mut away, _) = Client::connect(&broker, &connect()).await;
    away.subscribe(1, &[("$share/g/po/#", 1)]).await;
    away.disconnect().await;
    let mut here = Client::new(&broker, "here").await;
    here.subscribe(1, &[("$share/g/po/#", 1)]).await;
    let mut publisher = Client::new(&broker, "po-pub").await;
    for i in 0..4u8 {
        publisher
            .publish(&Publish::new("po/t", 1, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    let got = drain(&mut here).await;
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), payloads(4));
    let (mut back, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present);
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// Publishes payloads 0..n at QoS 1 on `topic` and returns once each is acknowledged,
/// so each has been routed.
async fn publish_n(broker: &TestBroker, topic: &str, n: u8) {
    let mut publisher = Client::new(broker, &format!("pub-{topic}")).await;
    for i in 0..n {
        publisher
            .publish(&Publish::new(topic, 1, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    publisher.disconnect().await;
}

/// The payloads `client` receives until it has every one of `all` it has not already
/// got in `got`, or nothing comes for a second.
async fn collect_until(client: &mut Client, got: &mut BTreeSet<Vec<u8>>, all: &BTreeSet<Vec<u8>>) {
    while got != all {
        match client.recv_within(Duration::from_secs(1)).await {
            Some(Packet::Publish(p)) => {
                client.complete(&p).await;
                got.insert(p.payload);
            }
            Some(other) => panic!("expected PUBLISH, got {other:?}"),
            None => break,
        }
    }
}

/// MQTT 5.0 §4.8.2: when a member's session ends (Session Expiry 0) with shared
/// messages unacknowledged or not yet sent to it, they go to another member: none is
/// lost.
#[tokio::test]
async fn shared_messages_of_a_member_whose_session_ends_go_to_another() {
    let broker = TestBroker::start().await;
    // Receive Maximum 1: one message in flight, the rest of its share waiting.
    let connect = Connect::new("quitter").receive_maximum(1);
    let (mut quitter, _) = Client::connect(&broker, &connect).await;
    quitter.subscribe(1, &[("$share/g/dp/#", 1)]).await;
    let mut stayer = Client::new(&broker, "stayer").await;
    stayer.subscribe(1, &[("$share/g/dp/#", 1)]).await;
    publish_n(&broker, "dp/t", 6).await;
    let held = quitter.expect_publish().await;
    quitter.drop_connection().await;

    let all = payloads(6);
    let mut got = BTreeSet::new();
    collect_until(&mut stayer, &mut got, &all).await;
    assert_eq!(got, all, "the quitter held {:?}", held.payload);
    broker.stop().await;
}

/// MQTT 5.0 §4.8.2: when a member with a lasting session disconnects, the shared
/// messages queued for it and not yet sent go to another member; the one it had
/// received stays with its session and is sent again when it returns. None is lost.
#[tokio::test]
async fn shared_messages_queued_for_a_disconnected_member_go_to_another() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("napper", 60).receive_maximum(1);
    let (mut napper, _) = Client::connect(&broker, &connect()).await;
    napper.subscribe(1, &[("$share/g/nap/#", 1)]).await;
    let mut worker = Client::new(&broker, "worker").await;
    worker.subscribe(1, &[("$share/g/nap/#", 1)]).await;
    publish_n(&broker, "nap/t", 6).await;
    let held = napper.expect_publish().await;
    napper.drop_connection().await;

    let all = payloads(6);
    let mut got = BTreeSet::new();
    collect_until(&mut worker, &mut got, &all).await;
    let mut others = all.clone();
    others.remove(&held.payload);
    assert!(
        got.is_superset(&others),
        "worker got {got:?}, napper held {held:?}"
    );

    let (mut back, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present);
    if !got.contains(&held.payload) {
        let again = back.expect_publish().await;
        assert_eq!(again.payload, held.payload);
        assert!(again.dup, "{again:?}");
        back.complete(&again).await;
    }
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-3]: a message delivered through a shared subscription
/// carries the Subscription Identifier the member gave with it; unsubscribing from the
/// shared filter is acknowledged 0x00, and a second time 0x11.
#[tokio::test]
async fn shared_subscription_identifier_and_unsubscribe() {
    let broker = TestBroker::start().await;
    let mut member = Client::new(&broker, "sid-member").await;
    let code = member.subscribe_id(1, 9, "$share/g/sid/#", 1).await;
    assert_eq!(code, 0x01);
    let mut publisher = Client::new(&broker, "sid-share-pub").await;
    publisher.publish(&Publish::new("sid/x", 1, b"x")).await;
    let got = member.expect_and_complete("sid/x", b"x").await;
    assert_eq!(got.props.subscription_ids(), [9], "{got:?}");
    for (pkid, code) in [(2u16, 0x00u8), (3, 0x11)] {
        let codes = member.unsubscribe(pkid, &["$share/g/sid/#"]).await;
        assert_eq!(codes, [code]);
    }
    publisher
        .publish(&Publish::new("sid/x", 1, b"y").pkid(2))
        .await;
    member.expect_nothing(QUIET).await;
    broker.stop().await;
}
