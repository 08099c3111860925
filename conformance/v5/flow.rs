//! MQTT 5.0 conformance: see coverage.rs for how statements are named.
//!
//! Flow control and limits: Receive Maximum and Maximum Packet Size in both
//! directions, and what the broker leaves off its packets for a client with a small
//! Maximum Packet Size or no wish for problem information, each shown on the wire by
//! MQTT 5.0 clients made of raw bytes (tests/common/v5).

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/v5/mod.rs"]
mod v5;

use common::TestBroker;
use v5::*;

// ---- Receive Maximum ----

/// MQTT-3.3.4-9: the broker never has more unacknowledged QoS 1 and 2 PUBLISHes out to a
/// client than the client's Receive Maximum (3 here, of 6 published).
/// MQTT-4.9.0-1: its initial send quota is above zero and at most that maximum: exactly
/// 3 arrive at once.
/// MQTT-4.9.0-2: with the quota used up it sends no further QoS 1 or 2 PUBLISH until a
/// PUBACK, or for QoS 2 a PUBCOMP (not the PUBREC), gives one back.
#[tokio::test]
async fn broker_keeps_within_the_clients_receive_maximum() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::new("rm").receive_maximum(3)).await;
    sub.subscribe(1, &[("rm/#", 2)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    for i in 0..6u8 {
        let qos = if i % 2 == 0 { 1 } else { 2 };
        publisher
            .publish(&Publish::new("rm/t", qos, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    let mut inflight = Vec::new();
    for i in 0..3u8 {
        inflight.push(sub.expect_message("rm/t", &[i]).await);
    }
    sub.expect_nothing(QUIET).await;
    // PUBACK for message 0 (QoS 1): message 3 may go.
    sub.send(&ack(PUBACK, inflight[0].pkid.unwrap())).await;
    inflight.push(sub.expect_message("rm/t", &[3]).await);
    sub.expect_nothing(QUIET).await;
    // PUBREC for message 1 (QoS 2): PUBREL, but no room yet.
    let pkid = inflight[1].pkid.unwrap();
    sub.send(&ack(PUBREC, pkid)).await;
    sub.expect_ack(PUBREL, pkid).await;
    sub.expect_nothing(QUIET).await;
    // PUBCOMP: message 4 may go.
    sub.send(&ack(PUBCOMP, pkid)).await;
    inflight.push(sub.expect_message("rm/t", &[4]).await);
    sub.expect_nothing(QUIET).await;
}

/// MQTT-3.3.4-10: with the client's Receive Maximum used up, the broker still sends
/// every packet other than PUBLISH at once: PINGRESP, SUBACK, UNSUBACK, the PUBACK and
/// PUBREC for the client's own messages, PUBCOMP.
/// MQTT-4.9.0-3: with a send quota of zero it goes on processing everything else.
#[tokio::test]
async fn other_packets_are_not_held_back_by_receive_maximum() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::new("rm1").receive_maximum(1)).await;
    sub.subscribe(1, &[("rm1/#", 1)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("rm1/t", 1, b"a")).await;
    publisher
        .publish(&Publish::new("rm1/t", 1, b"b").pkid(2))
        .await;
    let a = sub.expect_message("rm1/t", b"a").await;
    sub.expect_nothing(QUIET).await;

    sub.ping().await;
    assert_eq!(sub.subscribe(2, &[("zero/t", 0)]).await, vec![0]);
    assert_eq!(
        sub.unsubscribe(3, &["rm1/none"]).await,
        vec![NO_SUBSCRIPTION_EXISTED]
    );
    sub.send(&Publish::new("other/t", 1, b"own").pkid(5).bytes())
        .await;
    sub.expect_ack(PUBACK, 5).await;
    sub.send(&Publish::new("other/t", 2, b"own").pkid(6).bytes())
        .await;
    sub.expect_ack(PUBREC, 6).await;
    sub.send(&ack(PUBREL, 6)).await;
    sub.expect_ack(PUBCOMP, 6).await;
    // QoS 0 may wait with the rest (MQTT 5.0 4.9 leaves it open), but is not lost.
    publisher.publish(&Publish::new("zero/t", 0, b"z")).await;

    sub.send(&ack(PUBACK, a.pkid.unwrap())).await;
    let mut rest = Vec::new();
    for _ in 0..2 {
        let p = sub.expect_publish().await;
        rest.push((p.topic, p.payload));
    }
    rest.sort();
    assert_eq!(
        rest,
        vec![
            ("rm1/t".to_string(), b"b".to_vec()),
            ("zero/t".to_string(), b"z".to_vec())
        ]
    );
}

/// MQTT-4.13.1-1: the broker announces its Receive Maximum (max_inflight_messages, 3);
/// a client with more QoS 2 PUBLISHes awaiting PUBREL than that is disconnected with
/// 0x93 (Receive Maximum exceeded), while one within it is served.
#[tokio::test]
async fn client_beyond_the_brokers_receive_maximum_is_disconnected() {
    let broker = TestBroker::start_with(|c| {
        c.mqtt.max_inflight_messages = herald::config::Window(3);
    })
    .await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("over")).await;
    assert_eq!(ack.props.u16(RECEIVE_MAXIMUM), Some(3), "{ack:?}");
    for pkid in 1..=3u16 {
        client
            .send(&Publish::new("over/t", 2, b"x").pkid(pkid).bytes())
            .await;
        client.expect_ack(PUBREC, pkid).await;
    }
    client.ping().await;
    client
        .send(&Publish::new("over/t", 2, b"x").pkid(4).bytes())
        .await;
    client.expect_disconnect(RECEIVE_MAXIMUM_EXCEEDED).await;
}

// ---- Maximum Packet Size ----

/// MQTT-4.13.1-1: a broker limited to 100-byte packets announces Maximum Packet Size 100
/// in CONNACK, accepts a 100-byte PUBLISH, and answers a 101-byte one with DISCONNECT
/// 0x95 (Packet too large) and the close, delivering nothing of it.
#[tokio::test]
async fn packets_above_the_brokers_maximum_are_refused() {
    let broker = TestBroker::start_with(|c| {
        c.mqtt.max_packet_size = herald::config::PacketSize(100);
    })
    .await;
    let (mut sub, ack) = Client::connect(&broker, &Connect::new("sub")).await;
    assert_eq!(ack.props.u32(MAXIMUM_PACKET_SIZE), Some(100), "{ack:?}");
    sub.subscribe(1, &[("big/t", 0)]).await;
    let (mut publisher, _) = Client::connect(&broker, &Connect::new("pub")).await;
    // 2 (fixed header) + 7 (topic) + 1 (property length) + payload.
    let fits = vec![b'f'; 100 - 10];
    publisher.publish(&Publish::new("big/t", 0, &fits)).await;
    sub.expect_message("big/t", &fits).await;
    let over = vec![b'o'; 101 - 10];
    assert_eq!(Publish::new("big/t", 0, &over).bytes().len(), 101);
    publisher
        .send(&Publish::new("big/t", 0, &over).bytes())
        .await;
    publisher.expect_disconnect(PACKET_TOO_LARGE).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-3.1.2-24: the broker sends no packet larger than the client's Maximum Packet
/// Size (every packet received is checked against it):
/// MQTT-3.1.2-25: a message too large for that client is dropped for it alone — live,
/// retained or queued while offline — and counted as delivered: it takes none of the
/// client's Receive Maximum (1 here) and is not resent on the next connection, while a
/// client without the limit gets everything.
#[tokio::test]
async fn message_too_large_for_a_client_is_dropped_for_it_alone() {
    let broker = TestBroker::start().await;
    let small = Connect::resume("small", 60)
        .maximum_packet_size(64)
        .receive_maximum(1);
    let (mut limited, _) = Client::connect(&broker, &small).await;
    limited.subscribe(1, &[("mps/#", 1)]).await;
    let mut open = Client::new(&broker, "open").await;
    open.subscribe(1, &[("mps/#", 1)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    let large = vec![b'L'; 100];
    publisher
        .publish(&Publish::new("mps/a", 1, b"small 1"))
        .await;
    publisher
        .publish(&Publish::new("mps/a", 1, &large).pkid(2))
        .await;
    publisher
        .publish(&Publish::new("mps/a", 1, b"small 2").pkid(3))
        .await;
    for payload in [&b"small 1"[..], &large, b"small 2"] {
        let got = open.expect_message("mps/a", payload).await;
        open.complete(&got).await;
    }
    let one = limited.expect_message("mps/a", b"small 1").await;
    limited.complete(&one).await;
    let two = limited.expect_message("mps/a", b"small 2").await;
    limited.complete(&two).await;

    // Retained on subscribe, and queued for the offline session.
    publisher
        .publish(&Publish::new("mps/r", 1, &large).pkid(4).retain())
        .await;
    let got = open.expect_message("mps/r", &large).await;
    open.complete(&got).await;
    assert_eq!(limited.subscribe(2, &[("mps/r", 1)]).await, vec![1]);
    limited.drop_connection().await;
    publisher
        .publish(&Publish::new("mps/b", 1, &large).pkid(5))
        .await;
    publisher
        .publish(&Publish::new("mps/b", 1, b"small 3").pkid(6))
        .await;
    let (mut limited, ack) = Client::connect(&broker, &small).await;
    assert!(ack.session_present);
    let three = limited.expect_message("mps/b", b"small 3").await;
    limited.complete(&three).await;
    limited.expect_nothing(QUIET).await;
    limited.drop_connection().await;
    let (mut limited, _) = Client::connect(&broker, &small).await;
    limited.expect_nothing(QUIET).await;
}

/// MQTT-3.4.2-2: a PUBACK the broker sends carries no Reason String that would make it
/// larger than the client's Maximum Packet Size — here just the CONNACK's size —
/// MQTT-3.4.2-3: nor such a User Property;
/// MQTT-3.5.2-2: likewise PUBREC,
/// MQTT-3.5.2-3: (User Property),
/// MQTT-3.6.2-2: PUBREL (0x92 for an unknown packet id),
/// MQTT-3.6.2-3: (User Property),
/// MQTT-3.7.2-2: PUBCOMP (0x92 for an unknown packet id),
/// MQTT-3.7.2-3: (User Property),
/// MQTT-3.9.2-1: SUBACK (with 0x8F and 0x97 failures),
/// MQTT-3.9.2-2: (User Property),
/// MQTT-3.11.2-1: and UNSUBACK (0x11 and 0x8F).
/// MQTT-3.11.2-2: (User Property). Each still arrives, within the limit.
#[tokio::test]
async fn acknowledgements_fit_a_small_maximum_packet_size() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions_per_client = 1).await;
    let (probe, connack) = Client::connect(&broker, &Connect::new("probe")).await;
    probe.disconnect().await;
    let limit = connack.raw.len() as u32;
    let connect = Connect::new("tiny").maximum_packet_size(limit);
    let (mut client, _) = Client::connect(&broker, &connect).await;
    let terse = |props: &Properties| {
        assert!(!props.has(REASON_STRING), "{props:?}");
        assert!(props.users().is_empty(), "{props:?}");
    };
    client.send(&Publish::new("tiny/t", 1, b"x").bytes()).await;
    terse(&client.expect_ack(PUBACK, 1).await.props);
    client
        .send(&Publish::new("tiny/t", 2, b"x").pkid(2).bytes())
        .await;
    terse(&client.expect_ack(PUBREC, 2).await.props);
    client.send(&ack(PUBREL, 2)).await;
    terse(&client.expect_ack(PUBCOMP, 2).await.props);
    client.send(&ack(PUBREL, 3)).await;
    let comp = client.expect_ack(PUBCOMP, 3).await;
    assert_eq!(comp.reason, PACKET_IDENTIFIER_NOT_FOUND);
    terse(&comp.props);
    client.send(&ack(PUBREC, 4)).await;
    let rel = client.expect_ack(PUBREL, 4).await;
    assert_eq!(rel.reason, PACKET_IDENTIFIER_NOT_FOUND);
    terse(&rel.props);
    client
        .send(&subscribe(
            5,
            &Props::new(),
            &[("tiny/a", 0), ("tiny/#/x", 0), ("tiny/b", 0)],
        ))
        .await;
    let suback = client.expect_suback(5).await;
    assert_eq!(suback.codes, vec![0, TOPIC_FILTER_INVALID, QUOTA_EXCEEDED]);
    terse(&suback.props);
    client
        .send(&unsubscribe(6, &Props::new(), &["tiny/none", "tiny/#/x"]))
        .await;
    let unsuback = client.expect_unsuback(6).await;
    assert_eq!(
        unsuback.codes,
        vec![NO_SUBSCRIPTION_EXISTED, TOPIC_FILTER_INVALID]
    );
    terse(&unsuback.props);
}

/// MQTT-3.2.2-19: a refusing CONNACK to a client whose Maximum Packet Size is 5 bytes
/// carries no Reason String that would exceed it,
/// MQTT-3.2.2-20: nor a User Property: it arrives whole within 5 bytes.
#[tokio::test]
async fn refusing_connack_fits_a_small_maximum_packet_size() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("tiny")
        .maximum_packet_size(5)
        .props(Props::new().str(AUTHENTICATION_METHOD, "unknown"));
    let (mut client, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, BAD_AUTHENTICATION_METHOD);
    assert!(ack.raw.len() <= 5, "{ack:?}");
    assert!(!ack.props.has(REASON_STRING) && ack.props.users().is_empty());
    client.expect_closed().await;
}

// ---- Request Problem Information ----

/// MQTT-3.1.2-29: a client with Request Problem Information 0 gets no Reason String or
/// User Property on any packet but PUBLISH, CONNACK and DISCONNECT: not on the failing
/// PUBCOMP, PUBREL, SUBACK and UNSUBACK it provokes — while a PUBLISH still brings its
/// User Properties, and the closing DISCONNECT may explain itself.
#[tokio::test]
async fn no_problem_information_when_the_client_asks_for_none() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("quiet").props(Props::new().byte(REQUEST_PROBLEM_INFORMATION, 0));
    let (mut client, _) = Client::connect(&broker, &connect).await;
    let none = |props: &Properties| {
        assert!(!props.has(REASON_STRING), "{props:?}");
        assert!(props.users().is_empty(), "{props:?}");
    };
    client.send(&ack(PUBREL, 3)).await;
    none(&client.expect_ack(PUBCOMP, 3).await.props);
    client.send(&ack(PUBREC, 4)).await;
    none(&client.expect_ack(PUBREL, 4).await.props);
    client
        .send(&subscribe(
            5,
            &Props::new().user("k", "v"),
            &[("q/#/x", 0), ("q/t", 0)],
        ))
        .await;
    let suback = client.expect_suback(5).await;
    assert_eq!(suback.codes, vec![TOPIC_FILTER_INVALID, 0]);
    none(&suback.props);
    client
        .send(&unsubscribe(6, &Props::new().user("k", "v"), &["q/none"]))
        .await;
    none(&client.expect_unsuback(6).await.props);
    let with_user = Publish::new("q/t", 1, b"u").props(Props::new().user("k", "v"));
    client.send(&with_user.bytes()).await;
    let mut got_ack = false;
    let mut got_publish = false;
    while !(got_ack && got_publish) {
        match client.recv().await {
            Some(Packet::PubAck(a)) => {
                none(&a.props);
                got_ack = true;
            }
            Some(Packet::Publish(p)) => {
                assert_eq!(p.props.users(), vec![("k".to_string(), "v".to_string())]);
                got_publish = true;
            }
            other => panic!("expected PUBACK and PUBLISH, got {other:?}"),
        }
    }
    client.send(&auth(0x18, &Props::new())).await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}
