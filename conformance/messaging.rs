//! Conformance: see coverage.rs for how statements are named.
//!
//! Publishing, subscribing, retained messages, QoS flows and topic matching, each shown
//! on the wire against a running broker. Messages whose relative order MQTT leaves open
//! (different topics, or one topic at different QoS) are checked in any order; absence
//! is shown by waiting [`QUIET`].

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{expect_message, field, frame, RawClient, TestBroker};
use mqttbytes::v4::{self, Packet, SubscribeFilter, SubscribeReasonCode};
use mqttbytes::QoS;

/// How long a test waits to show that something does not arrive.
const QUIET: Duration = Duration::from_millis(300);

fn granted(qos: QoS) -> SubscribeReasonCode {
    SubscribeReasonCode::Success(qos)
}

const FAILURE: SubscribeReasonCode = SubscribeReasonCode::Failure;

/// A PUBLISH built byte by byte: `flags` is the low nibble of the first byte.
fn raw_publish(flags: u8, topic: &[u8], pkid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(pkid) = pkid {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// A SUBSCRIBE built byte by byte with the given first byte and (filter, options) pairs.
fn raw_subscribe(first: u8, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (filter, options) in filters {
        body.extend(field(filter.as_bytes()));
        body.push(*options);
    }
    frame(first, &body)
}

fn publish_packet(topic: &str, qos: QoS, payload: &[u8], pkid: u16) -> v4::Publish {
    let mut publish = v4::Publish::new(topic, qos, payload.to_vec());
    publish.pkid = if qos == QoS::AtMostOnce { 0 } else { pkid };
    publish
}

async fn send_subscribe(client: &mut RawClient, pkid: u16, filters: &[(&str, QoS)]) {
    let subscribe = v4::Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new(f.to_string(), *q))
            .collect(),
    };
    client.send_packet(subscribe).await;
}

async fn expect_suback(client: &mut RawClient, pkid: u16) -> Vec<SubscribeReasonCode> {
    match client.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, pkid, "SUBACK packet id");
            ack.return_codes
        }
        other => panic!("expected SUBACK {pkid}, got {other:?}"),
    }
}

/// Subscribes to several filters in one SUBSCRIBE and returns the SUBACK's codes.
async fn subscribe_many(
    client: &mut RawClient,
    pkid: u16,
    filters: &[(&str, QoS)],
) -> Vec<SubscribeReasonCode> {
    send_subscribe(client, pkid, filters).await;
    expect_suback(client, pkid).await
}

async fn send_unsubscribe(client: &mut RawClient, pkid: u16, filters: &[&str]) {
    let unsubscribe = v4::Unsubscribe {
        pkid,
        topics: filters.iter().map(|f| f.to_string()).collect(),
    };
    client.send_packet(unsubscribe).await;
}

async fn expect_unsuback(client: &mut RawClient, pkid: u16) {
    match client.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.pkid, pkid, "UNSUBACK packet id"),
        other => panic!("expected UNSUBACK {pkid}, got {other:?}"),
    }
}

async fn unsubscribe(client: &mut RawClient, pkid: u16, filters: &[&str]) {
    send_unsubscribe(client, pkid, filters).await;
    expect_unsuback(client, pkid).await;
}

/// PINGREQ, then PINGRESP must be the next packet: everything the broker had to say in
/// answer to earlier packets has been said, and everything sent before was handled.
async fn sync(client: &mut RawClient) {
    client.send_packet(v4::PingReq).await;
    match client.recv().await {
        Some(Packet::PingResp) => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

async fn expect_puback(client: &mut RawClient, pkid: u16) {
    match client.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid, "PUBACK packet id"),
        other => panic!("expected PUBACK {pkid}, got {other:?}"),
    }
}

async fn expect_pubrec(client: &mut RawClient, pkid: u16) {
    match client.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!(rec.pkid, pkid, "PUBREC packet id"),
        other => panic!("expected PUBREC {pkid}, got {other:?}"),
    }
}

async fn expect_pubrel(client: &mut RawClient, pkid: u16) {
    match client.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.pkid, pkid, "PUBREL packet id"),
        other => panic!("expected PUBREL {pkid}, got {other:?}"),
    }
}

async fn expect_pubcomp(client: &mut RawClient, pkid: u16) {
    match client.recv().await {
        Some(Packet::PubComp(comp)) => assert_eq!(comp.pkid, pkid, "PUBCOMP packet id"),
        other => panic!("expected PUBCOMP {pkid}, got {other:?}"),
    }
}

/// The next `n` PUBLISHes keyed by payload (which must differ), for messages whose
/// relative order MQTT leaves open: different topics, or one topic at different QoS.
async fn publishes_by_payload(client: &mut RawClient, n: usize) -> BTreeMap<Vec<u8>, v4::Publish> {
    let mut got = BTreeMap::new();
    for _ in 0..n {
        let p = client.expect_publish().await;
        if let Some(earlier) = got.insert(p.payload.to_vec(), p) {
            panic!("payload delivered twice: {earlier:?}");
        }
    }
    got
}

/// The PUBLISH carrying `payload` among `got`, which must be for `topic`.
fn take(got: &mut BTreeMap<Vec<u8>, v4::Publish>, topic: &str, payload: &[u8]) -> v4::Publish {
    let p = got
        .remove(payload)
        .unwrap_or_else(|| panic!("{topic} {payload:?} not delivered; got {got:?}"));
    assert_eq!(p.topic, topic, "{p:?}");
    p
}

/// Reconnects `client_id` with clean session 0 to an existing session.
async fn resume(broker: &TestBroker, client_id: &str) -> RawClient {
    let mut client = broker.raw().await;
    let ack = client.connect(client_id, false).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success, "{ack:?}");
    assert!(ack.session_present, "the session should have been kept");
    client
}

// ---------------------------------------------------------------------------------------
// Packet identifiers
// ---------------------------------------------------------------------------------------

/// MQTT-2.3.1-6: PUBACK and PUBREC from the server carry the packet id of the client's
/// PUBLISH, and the PUBREL it sends carries the id of its own QoS 2 PUBLISH.
/// MQTT-3.3.4-1: the server answers a QoS 0 PUBLISH with nothing, QoS 1 with PUBACK and
/// QoS 2 with PUBREC (then PUBCOMP for the PUBREL).
#[tokio::test]
async fn publish_acknowledgements_echo_the_packet_id() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "ack/#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;

    publisher
        .send_packet(publish_packet("ack/0", QoS::AtMostOnce, b"zero", 0))
        .await;
    publisher.expect_nothing(QUIET).await;
    expect_message(&mut sub, "ack/0", b"zero").await;

    let qos1_ids = [0x1234, 1, 0xffff];
    let qos2_ids = [0xabcd, 2, 0xfffe];
    for pkid in qos1_ids {
        let payload = format!("one {pkid}");
        publisher
            .send_packet(publish_packet(
                "ack/1",
                QoS::AtLeastOnce,
                payload.as_bytes(),
                pkid,
            ))
            .await;
        expect_puback(&mut publisher, pkid).await;
    }
    for pkid in qos2_ids {
        let payload = format!("two {pkid}");
        publisher
            .send_packet(publish_packet(
                "ack/2",
                QoS::ExactlyOnce,
                payload.as_bytes(),
                pkid,
            ))
            .await;
        expect_pubrec(&mut publisher, pkid).await;
        publisher.send_packet(v4::PubRel::new(pkid)).await;
        expect_pubcomp(&mut publisher, pkid).await;
    }

    // The broker as sender: the PUBREL echoes the id of its QoS 2 PUBLISH.
    let mut got = publishes_by_payload(&mut sub, 6).await;
    let mut ids = Vec::new();
    for pkid in qos1_ids {
        let p = take(&mut got, "ack/1", format!("one {pkid}").as_bytes());
        sub.send_packet(v4::PubAck::new(p.pkid)).await;
    }
    for pkid in qos2_ids {
        let p = take(&mut got, "ack/2", format!("two {pkid}").as_bytes());
        assert_eq!(p.qos, QoS::ExactlyOnce);
        ids.push(p.pkid);
    }
    for pkid in ids {
        sub.send_packet(v4::PubRec::new(pkid)).await;
        expect_pubrel(&mut sub, pkid).await;
        sub.send_packet(v4::PubComp::new(pkid)).await;
    }
    sync(&mut sub).await;
    broker.stop().await;
}

/// MQTT-2.3.1-7: SUBACK and UNSUBACK carry the packet id of the SUBSCRIBE/UNSUBSCRIBE.
/// MQTT-3.8.4-2: the SUBACK has the SUBSCRIBE's packet id.
/// MQTT-3.10.4-4: UNSUBSCRIBE is answered with an UNSUBACK carrying its packet id.
#[tokio::test]
async fn suback_and_unsuback_echo_the_packet_id() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("ids", true).await;
    for pkid in [1u16, 0x00ff, 0x0100, 0x7fff, 0xffff] {
        send_subscribe(&mut client, pkid, &[("ids/a", QoS::AtLeastOnce)]).await;
        assert_eq!(
            expect_suback(&mut client, pkid).await,
            [granted(QoS::AtLeastOnce)]
        );
        send_unsubscribe(&mut client, pkid, &["ids/a"]).await;
        expect_unsuback(&mut client, pkid).await;
    }
    // Pipelined: each answer still carries its own request's id, in order.
    for pkid in [40u16, 41, 42] {
        send_subscribe(&mut client, pkid, &[("ids/b", QoS::AtMostOnce)]).await;
    }
    for pkid in [43u16, 44] {
        send_unsubscribe(&mut client, pkid, &["ids/b"]).await;
    }
    for pkid in [40u16, 41, 42] {
        expect_suback(&mut client, pkid).await;
    }
    for pkid in [43u16, 44] {
        expect_unsuback(&mut client, pkid).await;
    }
    broker.stop().await;
}

/// MQTT-2.3.1-4: QoS 1/2 PUBLISHes the server sends carry non-zero packet ids, distinct
/// among those in flight, and a resent one keeps its id.
/// MQTT-4.3.2-1: a QoS 1 PUBLISH from the server has a fresh id and DUP 0, and stays
/// unacknowledged — resent on reconnect — until its PUBACK; an acknowledged one is not.
/// MQTT-4.4.0-1: on reconnect with clean session 0 the unacknowledged PUBLISHes are
/// resent with their original packet ids.
/// MQTT-3.3.1-1: the resent PUBLISHes have DUP 1.
#[tokio::test]
async fn qos1_deliveries_stay_unacknowledged_until_puback() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("q1-sub", false).await;
    sub.subscribe(1, "q1", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("q1-pub", true).await;
    for (i, payload) in [b"m1", b"m2", b"m3", b"m4"].iter().enumerate() {
        publisher
            .publish("q1", QoS::AtLeastOnce, *payload, false, i as u16 + 1)
            .await;
    }
    let mut first = Vec::new();
    for payload in [b"m1", b"m2", b"m3", b"m4"] {
        let p = expect_message(&mut sub, "q1", payload).await;
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert!(!p.dup, "a first delivery has DUP 0: {p:?}");
        assert_ne!(p.pkid, 0);
        first.push(p);
    }
    let ids: HashSet<u16> = first.iter().map(|p| p.pkid).collect();
    assert_eq!(ids.len(), 4, "ids in flight must differ: {first:?}");

    // Acknowledge m2 only, then lose the connection.
    sub.send_packet(v4::PubAck::new(first[1].pkid)).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "q1-sub").await;
    for original in [&first[0], &first[2], &first[3]] {
        let p = expect_message(&mut sub, "q1", &original.payload).await;
        assert!(p.dup, "a resent PUBLISH has DUP 1: {p:?}");
        assert_eq!(
            p.pkid, original.pkid,
            "a resent PUBLISH keeps its packet id"
        );
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    sub.expect_nothing(QUIET).await;
    // Ack m1 and m4; m3 is still unacknowledged and comes back once more.
    sub.send_packet(v4::PubAck::new(first[0].pkid)).await;
    sub.send_packet(v4::PubAck::new(first[3].pkid)).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "q1-sub").await;
    let p = expect_message(&mut sub, "q1", b"m3").await;
    assert!(p.dup);
    assert_eq!(p.pkid, first[2].pkid);
    sub.send_packet(v4::PubAck::new(p.pkid)).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "q1-sub").await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-2.3.1-4: a packet id whose message is still in flight is not given to another
/// message, even after the server's 16-bit id counter has wrapped around.
#[tokio::test]
async fn packet_id_in_flight_is_not_reused_after_wrapping() {
    const TOTAL: usize = 65_536 + 64;
    const BATCH: usize = 1000;
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = TOTAL).await;
    let mut sub = broker.client("wrap-sub", true).await;
    sub.subscribe(1, "w", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("wrap-pub", true).await;

    let publish_all = async {
        let mut sent = 0;
        while sent < TOTAL {
            let n = BATCH.min(TOTAL - sent);
            let mut buf = bytes::BytesMut::new();
            for i in 0..n {
                let p = publish_packet("w", QoS::AtLeastOnce, b"x", i as u16 + 1);
                p.write(&mut buf).unwrap();
            }
            publisher.send(&buf).await;
            for _ in 0..n {
                match publisher.recv().await {
                    Some(Packet::PubAck(_)) => {}
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
            sent += n;
        }
    };
    let receive_all = async {
        let held = sub.expect_publish().await;
        assert_ne!(held.pkid, 0);
        let mut max_seen = held.pkid;
        for n in 1..TOTAL {
            let p = sub.expect_publish().await;
            assert_ne!(p.pkid, 0, "message {n}");
            assert_ne!(
                p.pkid, held.pkid,
                "message {n} reuses the id of a message still in flight"
            );
            max_seen = max_seen.max(p.pkid);
            sub.send_packet(v4::PubAck::new(p.pkid)).await;
        }
        assert_eq!(max_seen, u16::MAX, "the id counter should have wrapped");
        held
    };
    let ((), held) = tokio::join!(publish_all, receive_all);
    sub.send_packet(v4::PubAck::new(held.pkid)).await;
    sync(&mut sub).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// PUBLISH flags
// ---------------------------------------------------------------------------------------

/// MQTT-3.3.1-3: the DUP flag of a PUBLISH the server sends reflects only whether that
/// PUBLISH is a retransmission: DUP 1 from the publisher is not copied to the first
/// delivery, and the server's own retransmission has DUP 1.
/// MQTT-3.3.1-1: the server sets DUP 1 when it re-delivers a PUBLISH.
#[tokio::test]
async fn outgoing_dup_reflects_only_retransmission() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("dup-sub", false).await;
    sub.subscribe(1, "dup/#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("dup-pub", true).await;

    let mut first = v4::Publish::new("dup/1", QoS::AtLeastOnce, b"one".to_vec());
    first.dup = true;
    first.pkid = 7;
    publisher.send_packet(first).await;
    expect_puback(&mut publisher, 7).await;
    let mut second = v4::Publish::new("dup/2", QoS::ExactlyOnce, b"two".to_vec());
    second.dup = true;
    second.pkid = 8;
    publisher.send_packet(second).await;
    expect_pubrec(&mut publisher, 8).await;
    publisher.send_packet(v4::PubRel::new(8)).await;
    expect_pubcomp(&mut publisher, 8).await;

    let mut got = publishes_by_payload(&mut sub, 2).await;
    let one = take(&mut got, "dup/1", b"one");
    let two = take(&mut got, "dup/2", b"two");
    assert!(!one.dup, "first delivery of a DUP=1 PUBLISH: {one:?}");
    assert!(!two.dup, "first delivery of a DUP=1 PUBLISH: {two:?}");

    // A publisher's DUP=0 message, retransmitted by the server: DUP 1.
    publisher
        .publish("dup/3", QoS::AtLeastOnce, b"three", false, 9)
        .await;
    let three = expect_message(&mut sub, "dup/3", b"three").await;
    assert!(!three.dup);
    drop(sub);

    let mut sub = resume(&broker, "dup-sub").await;
    let mut got = publishes_by_payload(&mut sub, 3).await;
    for original in [&one, &two, &three] {
        let p = take(&mut got, &original.topic, &original.payload);
        assert!(p.dup, "retransmission must have DUP 1: {p:?}");
        assert_eq!(p.pkid, original.pkid);
    }
    broker.stop().await;
}

/// MQTT-3.3.1-2: every QoS 0 PUBLISH the server sends has DUP 0, whatever the DUP flag
/// and QoS of the PUBLISH it came from.
/// MQTT-4.3.1-1: a message the server delivers at QoS 0 is sent with QoS 0 and DUP 0,
/// once: it is not sent again when the subscriber's session resumes.
#[tokio::test]
async fn qos0_deliveries_have_dup_0() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("q0-sub", false).await;
    sub.subscribe(1, "q0/#", QoS::AtMostOnce).await;
    let mut publisher = broker.client("q0-pub", true).await;
    publisher
        .send_packet(publish_packet("q0/a", QoS::AtMostOnce, b"a", 0))
        .await;
    for (topic, qos, pkid) in [("q0/b", QoS::AtLeastOnce, 3), ("q0/c", QoS::ExactlyOnce, 4)] {
        let mut p = publish_packet(topic, qos, topic.as_bytes(), pkid);
        p.dup = true;
        publisher.send_packet(p).await;
    }
    let mut got = publishes_by_payload(&mut sub, 3).await;
    for (topic, payload) in [("q0/a", &b"a"[..]), ("q0/b", b"q0/b"), ("q0/c", b"q0/c")] {
        let p = take(&mut got, topic, payload);
        assert_eq!(p.qos, QoS::AtMostOnce, "{p:?}");
        assert!(!p.dup, "QoS 0 must have DUP 0: {p:?}");
    }
    sync(&mut sub).await;
    drop(sub);
    let mut sub = resume(&broker, "q0-sub").await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.3.1-4: a PUBLISH with both QoS bits set closes the connection, and its message
/// goes nowhere.
#[tokio::test]
async fn publish_with_qos_3_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;
    // The same bytes with QoS 2 are a valid PUBLISH.
    publisher
        .send(&raw_publish(0b0100, b"q3", Some(1), b"ok"))
        .await;
    expect_pubrec(&mut publisher, 1).await;
    expect_message(&mut sub, "q3", b"ok").await;

    publisher
        .send(&raw_publish(0b0110, b"q3", Some(2), b"bad"))
        .await;
    publisher.expect_closed().await;
    sub.expect_nothing(QUIET).await;

    let mut publisher = broker.client("pub2", true).await;
    publisher
        .send(&raw_publish(0b0111, b"q3", Some(3), b"bad"))
        .await;
    publisher.expect_closed().await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------------------

/// MQTT-3.3.1-5: a RETAIN=1 PUBLISH is stored with its QoS and given to later
/// subscribers — also after the broker restarts on the same storage.
/// MQTT-3.3.1-8: messages sent because of a new subscription have RETAIN 1.
/// MQTT-3.8.4-6: a retained message goes out at the lower of its QoS and the granted QoS.
#[tokio::test]
async fn retained_messages_are_stored_with_their_qos() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("ret/0", QoS::AtMostOnce, b"r0", true, 0)
        .await;
    publisher
        .publish("ret/1", QoS::AtLeastOnce, b"r1", true, 1)
        .await;
    publisher
        .publish("ret/2", QoS::ExactlyOnce, b"r2", true, 2)
        .await;
    sync(&mut publisher).await;

    async fn retained_at(broker: &TestBroker, id: &str, qos: QoS) -> BTreeMap<String, v4::Publish> {
        let mut sub = broker.client(id, true).await;
        assert_eq!(sub.subscribe(1, "ret/+", qos).await, [granted(qos)]);
        let mut got = BTreeMap::new();
        for _ in 0..3 {
            let p = sub.expect_publish().await;
            assert!(p.retain, "sent for a new subscription: RETAIN 1: {p:?}");
            got.insert(p.topic.clone(), p);
        }
        sub.expect_nothing(QUIET).await;
        got
    }

    let expect = |got: &BTreeMap<String, v4::Publish>, qos: [QoS; 3]| {
        for (i, topic) in ["ret/0", "ret/1", "ret/2"].iter().enumerate() {
            let p = got
                .get(*topic)
                .unwrap_or_else(|| panic!("{topic} missing: {got:?}"));
            assert_eq!(&p.payload[..], format!("r{i}").as_bytes());
            assert_eq!(p.qos, qos[i], "{p:?}");
        }
    };
    let all = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    expect(&retained_at(&broker, "s2", QoS::ExactlyOnce).await, all);
    expect(
        &retained_at(&broker, "s1", QoS::AtLeastOnce).await,
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtLeastOnce],
    );
    expect(
        &retained_at(&broker, "s0", QoS::AtMostOnce).await,
        [QoS::AtMostOnce; 3],
    );

    let broker = broker.restart().await;
    expect(&retained_at(&broker, "after", QoS::ExactlyOnce).await, all);
    broker.stop().await;
}

/// MQTT-3.3.1-6: a new subscription receives the last retained message of every topic it
/// matches, and nothing of topics it does not match.
/// MQTT-3.3.1-8: those messages have RETAIN 1.
#[tokio::test]
async fn new_subscription_gets_last_retained_message_of_each_matching_topic() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("news/a", QoS::AtLeastOnce, b"a-old", true, 1)
        .await;
    publisher
        .publish("news/a", QoS::AtLeastOnce, b"a-new", true, 2)
        .await;
    publisher
        .publish("news/b", QoS::AtMostOnce, b"b", true, 0)
        .await;
    publisher
        .publish("news/b/deep", QoS::AtLeastOnce, b"deep", true, 3)
        .await;
    publisher
        .publish("other/c", QoS::AtLeastOnce, b"c", true, 4)
        .await;
    sync(&mut publisher).await;

    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "news/+", QoS::AtLeastOnce).await;
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let p = sub.expect_publish().await;
        assert!(p.retain, "{p:?}");
        got.insert(p.topic.clone(), p.payload.to_vec());
    }
    sub.expect_nothing(QUIET).await;
    assert_eq!(
        got,
        BTreeMap::from([
            ("news/a".to_string(), b"a-new".to_vec()),
            ("news/b".to_string(), b"b".to_vec()),
        ])
    );

    let mut sub = broker.client("sub-all", true).await;
    sub.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut topics = HashSet::new();
    for _ in 0..4 {
        let p = sub.expect_publish().await;
        assert!(p.retain, "{p:?}");
        topics.insert(p.topic);
    }
    sub.expect_nothing(QUIET).await;
    assert_eq!(topics.len(), 4, "{topics:?}");
    broker.stop().await;
}

/// MQTT-3.3.1-7: a retained QoS 0 message discards the topic's earlier retained message.
#[tokio::test]
async fn retained_qos0_message_replaces_the_previous_one() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("r7", QoS::ExactlyOnce, b"old", true, 1)
        .await;
    let mut sub = broker.client("before", true).await;
    sub.subscribe(1, "r7", QoS::ExactlyOnce).await;
    let p = expect_message(&mut sub, "r7", b"old").await;
    assert!(p.retain);

    publisher
        .publish("r7", QoS::AtMostOnce, b"new", true, 0)
        .await;
    sync(&mut publisher).await;
    let mut sub = broker.client("after", true).await;
    sub.subscribe(1, "r7", QoS::ExactlyOnce).await;
    let p = expect_message(&mut sub, "r7", b"new").await;
    assert!(p.retain);
    assert_eq!(p.qos, QoS::AtMostOnce);
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.3.1-9: messages forwarded to established subscriptions have RETAIN 0, however
/// the publisher set the flag — while a new subscription gets the same message with
/// RETAIN 1.
#[tokio::test]
async fn live_deliveries_have_retain_0() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "live/+", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("live/0", QoS::AtMostOnce, b"0", true, 0)
        .await;
    publisher
        .publish("live/1", QoS::AtLeastOnce, b"1", true, 1)
        .await;
    publisher
        .publish("live/2", QoS::ExactlyOnce, b"2", true, 2)
        .await;
    publisher
        .publish("live/3", QoS::AtLeastOnce, b"3", false, 3)
        .await;
    let mut got = publishes_by_payload(&mut sub, 4).await;
    for (topic, payload) in [
        ("live/0", b"0"),
        ("live/1", b"1"),
        ("live/2", b"2"),
        ("live/3", b"3"),
    ] {
        let p = take(&mut got, topic, payload);
        assert!(!p.retain, "live delivery must have RETAIN 0: {p:?}");
    }
    let mut late = broker.client("late", true).await;
    late.subscribe(1, "live/2", QoS::ExactlyOnce).await;
    let p = expect_message(&mut late, "live/2", b"2").await;
    assert!(
        p.retain,
        "delivery for a new subscription has RETAIN 1: {p:?}"
    );
    broker.stop().await;
}

/// MQTT-3.3.1-10: a retained PUBLISH with an empty payload goes to current subscribers
/// as normal and removes the topic's retained message, so later subscribers get none.
#[tokio::test]
async fn empty_retained_message_clears_the_topic_and_is_forwarded() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("clr", QoS::AtLeastOnce, b"x", true, 1)
        .await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "clr", QoS::AtLeastOnce).await;
    assert!(expect_message(&mut sub, "clr", b"x").await.retain);

    publisher
        .publish("clr", QoS::AtLeastOnce, b"", true, 2)
        .await;
    let p = expect_message(&mut sub, "clr", b"").await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.send_packet(v4::PubAck::new(p.pkid)).await;

    let mut later = broker.client("later", true).await;
    later.subscribe(1, "clr", QoS::AtLeastOnce).await;
    later.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.3.1-11: a retained PUBLISH with an empty payload is never stored: no later
/// subscriber receives it, before or after a restart.
#[tokio::test]
async fn empty_retained_message_is_never_stored() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("nil/0", QoS::AtMostOnce, b"", true, 0)
        .await;
    publisher
        .publish("nil/1", QoS::AtLeastOnce, b"", true, 1)
        .await;
    publisher
        .publish("nil/2", QoS::ExactlyOnce, b"", true, 2)
        .await;
    // A non-empty one beside them shows the subscription does get retained messages.
    publisher
        .publish("nil/x", QoS::AtMostOnce, b"x", true, 0)
        .await;
    sync(&mut publisher).await;

    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "nil/+", QoS::ExactlyOnce).await;
    expect_message(&mut sub, "nil/x", b"x").await;
    sub.expect_nothing(QUIET).await;

    let broker = broker.restart().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "nil/+", QoS::ExactlyOnce).await;
    expect_message(&mut sub, "nil/x", b"x").await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.3.1-12: a RETAIN=0 PUBLISH is not stored and neither replaces nor removes the
/// topic's retained message — not even with an empty payload.
#[tokio::test]
async fn non_retained_publish_leaves_the_retained_message_alone() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("keep", QoS::AtLeastOnce, b"kept", true, 1)
        .await;
    publisher
        .publish("keep", QoS::AtLeastOnce, b"live", false, 2)
        .await;
    publisher
        .publish("keep", QoS::AtMostOnce, b"", false, 0)
        .await;
    publisher
        .publish("fresh", QoS::ExactlyOnce, b"not kept", false, 3)
        .await;
    sync(&mut publisher).await;

    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "keep", QoS::AtLeastOnce).await;
    let p = expect_message(&mut sub, "keep", b"kept").await;
    assert!(p.retain);
    sub.subscribe(2, "fresh", QoS::AtLeastOnce).await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Topic names in PUBLISH
// ---------------------------------------------------------------------------------------

/// MQTT-3.3.2-1: the topic name is the first field of the PUBLISH variable header and a
/// UTF-8 string, both ways: a hand-built PUBLISH with a multi-byte topic is routed by it
/// and delivered with it byte for byte; a topic that is not UTF-8 closes the connection.
#[tokio::test]
async fn topic_name_is_the_first_field_and_utf8() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub", true).await;
    let topic = "münchen/straße/😀/\u{feff}";
    publisher
        .send(&raw_publish(
            0b0010,
            topic.as_bytes(),
            Some(0x0102),
            b"payload",
        ))
        .await;
    expect_puback(&mut publisher, 0x0102).await;
    let p = expect_message(&mut sub, topic, b"payload").await;
    assert_eq!(p.topic.as_bytes(), topic.as_bytes());

    publisher
        .send(&raw_publish(0b0010, &[b'a', 0xff, 0xfe], Some(2), b"bad"))
        .await;
    publisher.expect_closed().await;
    let mut publisher = broker.client("pub2", true).await;
    // An encoded surrogate half (U+D800) is not UTF-8 either.
    publisher
        .send(&raw_publish(0, &[b'a', 0xed, 0xa0, 0x80], None, b"bad"))
        .await;
    publisher.expect_closed().await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.3.2-2: a PUBLISH whose topic name holds '+' or '#' closes the connection and is
/// not delivered, even to subscriptions whose filters equal that topic.
/// MQTT-4.7.1-1: wildcards are accepted in topic filters but not in topic names.
#[tokio::test]
async fn publish_to_a_wildcard_topic_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("#", QoS::AtMostOnce),
            ("a/+", QoS::AtMostOnce),
            ("a/#", QoS::AtMostOnce),
        ],
    )
    .await;
    assert_eq!(codes, [granted(QoS::AtMostOnce); 3]);
    for (i, topic) in ["a/+", "a/#", "#", "+", "a/b+", "a/#b"]
        .into_iter()
        .enumerate()
    {
        let mut publisher = broker.client(&format!("pub{i}"), true).await;
        publisher
            .send(&raw_publish(0b0010, topic.as_bytes(), Some(1), b"bad"))
            .await;
        publisher.expect_closed().await;
    }
    sub.expect_nothing(QUIET).await;
    let mut publisher = broker.client("good", true).await;
    publisher
        .publish("a/b", QoS::AtMostOnce, b"ok", false, 0)
        .await;
    expect_message(&mut sub, "a/b", b"ok").await;
    broker.stop().await;
}

/// MQTT-3.3.2-3: the topic name of each PUBLISH the server sends is the published topic
/// name, which matches one of the subscriber's filters; topics that match none are not
/// sent.
#[tokio::test]
async fn delivered_topic_matches_the_subscription() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let filters = ["sport/tennis/+", "finance/#"];
    subscribe_many(
        &mut sub,
        1,
        &[(filters[0], QoS::AtMostOnce), (filters[1], QoS::AtMostOnce)],
    )
    .await;
    let mut publisher = broker.client("pub", true).await;
    let topics = [
        ("sport/tennis/player1", true),
        ("sport/tennis/player1/ranking", false),
        ("sport/tennis", false),
        ("sport/tennis/", true),
        ("sport/tennisx/player1", false),
        ("Sport/tennis/player1", false),
        ("finance", true),
        ("finance/stock/ibm", true),
        ("finances/stock", false),
        ("/finance", false),
    ];
    for (topic, _) in topics {
        publisher
            .publish(topic, QoS::AtMostOnce, topic.as_bytes(), false, 0)
            .await;
    }
    let wanted: Vec<&str> = topics.iter().filter(|t| t.1).map(|t| t.0).collect();
    let mut got = Vec::new();
    for _ in 0..wanted.len() {
        let p = sub.expect_publish().await;
        assert_eq!(
            p.topic.as_bytes(),
            &p.payload[..],
            "topic name rewritten: {p:?}"
        );
        got.push(p.topic);
    }
    sub.expect_nothing(QUIET).await;
    got.sort();
    let mut wanted: Vec<String> = wanted.into_iter().map(String::from).collect();
    wanted.sort();
    assert_eq!(got, wanted);
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

/// MQTT-3.3.5-1: a message matching several of a client's subscriptions is delivered
/// once, at the highest QoS among them (capped by the published QoS).
#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("ov/#", QoS::AtMostOnce),
            ("ov/+", QoS::ExactlyOnce),
            ("ov/b", QoS::AtLeastOnce),
            ("+/b/c", QoS::AtLeastOnce),
        ],
    )
    .await;
    assert_eq!(codes.len(), 4);
    let mut publisher = broker.client("pub", true).await;
    let cases = [
        ("ov/b", QoS::ExactlyOnce, QoS::ExactlyOnce),
        ("ov/b", QoS::AtLeastOnce, QoS::AtLeastOnce),
        ("ov/b/c", QoS::ExactlyOnce, QoS::AtLeastOnce),
        ("ov/b/c/d", QoS::ExactlyOnce, QoS::AtMostOnce),
    ];
    for (i, (topic, qos, _)) in cases.iter().enumerate() {
        publisher
            .publish(topic, *qos, format!("{i}").as_bytes(), false, i as u16 + 1)
            .await;
    }
    let mut got = publishes_by_payload(&mut sub, cases.len()).await;
    for (i, (topic, _, want)) in cases.iter().enumerate() {
        let p = take(&mut got, topic, format!("{i}").as_bytes());
        assert_eq!(p.qos, *want, "{p:?}");
    }
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.8.4-1: every SUBSCRIBE is answered with a SUBACK, also pipelined ones and one
/// whose only filter is refused.
/// MQTT-3.8.4-4: a SUBSCRIBE with several filters gets one SUBACK and sets up each filter
/// as a separate SUBSCRIBE would.
#[tokio::test]
async fn every_subscribe_gets_exactly_one_suback() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let packets: [(u16, &[(&str, QoS)]); 4] = [
        (10, &[("m/a", QoS::AtMostOnce)]),
        (
            11,
            &[
                ("m/b", QoS::AtLeastOnce),
                ("m/c/+", QoS::ExactlyOnce),
                ("m/d/#", QoS::AtMostOnce),
            ],
        ),
        (12, &[("m/#/bad", QoS::AtLeastOnce)]),
        (13, &[("m/a", QoS::AtLeastOnce)]),
    ];
    for (pkid, filters) in packets {
        send_subscribe(&mut sub, pkid, filters).await;
    }
    for (pkid, filters) in packets {
        let codes = expect_suback(&mut sub, pkid).await;
        assert_eq!(codes.len(), filters.len(), "one code per filter: {codes:?}");
    }
    sync(&mut sub).await;

    let mut publisher = broker.client("pub", true).await;
    let cases = [
        ("m/a", QoS::AtLeastOnce),
        ("m/b", QoS::AtLeastOnce),
        ("m/c/x", QoS::ExactlyOnce),
        ("m/d/x/y", QoS::AtMostOnce),
    ];
    for (i, (topic, _)) in cases.iter().enumerate() {
        publisher
            .publish(
                topic,
                QoS::ExactlyOnce,
                topic.as_bytes(),
                false,
                i as u16 + 1,
            )
            .await;
    }
    let mut got = publishes_by_payload(&mut sub, cases.len()).await;
    for (topic, qos) in cases {
        let p = take(&mut got, topic, topic.as_bytes());
        assert_eq!(p.qos, qos, "{p:?}");
    }
    broker.stop().await;
}

/// MQTT-3.8.4-5: the SUBACK has one return code per filter: the granted QoS, or 0x80 for
/// a filter that is refused, while the others in the same packet are granted.
/// MQTT-3.9.3-1: the return codes are in the order of the filters.
/// MQTT-3.9.3-2: only 0x00, 0x01, 0x02 and 0x80 are used (checked byte for byte once;
/// the harness's decoder rejects any other SUBACK code anyway).
#[tokio::test]
async fn suback_return_codes_follow_the_filters() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("q/2", QoS::ExactlyOnce),
            ("q/#/b", QoS::AtMostOnce),
            ("q/0", QoS::AtMostOnce),
            ("q+", QoS::AtLeastOnce),
            ("q/1", QoS::AtLeastOnce),
            ("", QoS::ExactlyOnce),
            ("#", QoS::ExactlyOnce),
        ],
    )
    .await;
    assert_eq!(
        codes,
        [
            granted(QoS::ExactlyOnce),
            FAILURE,
            granted(QoS::AtMostOnce),
            FAILURE,
            granted(QoS::AtLeastOnce),
            FAILURE,
            granted(QoS::ExactlyOnce),
        ]
    );
    broker.stop().await;

    // A server granting at most QoS 1 says so in the return code.
    let broker = TestBroker::start_with(|c| c.mqtt.max_qos.0 = mqtt_qos(1)).await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("a", QoS::ExactlyOnce),
            ("b", QoS::AtMostOnce),
            ("c", QoS::AtLeastOnce),
        ],
    )
    .await;
    assert_eq!(
        codes,
        [
            granted(QoS::AtLeastOnce),
            granted(QoS::AtMostOnce),
            granted(QoS::AtLeastOnce)
        ]
    );

    // The bytes themselves: SUBACK 0x90, packet id, then one allowed code per filter.
    send_subscribe(
        &mut sub,
        0x0203,
        &[
            ("d", QoS::ExactlyOnce),
            ("d/#/e", QoS::AtLeastOnce),
            ("e", QoS::AtMostOnce),
        ],
    )
    .await;
    let frame = sub.recv_frame().await.expect("a SUBACK");
    assert_eq!(frame, [0x90, 5, 0x02, 0x03, 0x01, 0x80, 0x00]);
    broker.stop().await;
}

/// Herald's QoS from its number, for configuration.
fn mqtt_qos(n: u8) -> herald::protocol::QoS {
    herald::protocol::QoS::from_bits(n).expect("a QoS")
}

/// MQTT-3.8.4-6: each subscriber receives a message at the lower of the published QoS and
/// the QoS granted to its subscription — including a grant the server lowered.
#[tokio::test]
async fn delivered_qos_is_the_lower_of_published_and_granted() {
    let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let broker = TestBroker::start().await;
    let mut subs = Vec::new();
    for granted_qos in levels {
        let mut sub = broker
            .client(&format!("sub{}", granted_qos as u8), true)
            .await;
        assert_eq!(
            sub.subscribe(1, "g", granted_qos).await,
            [granted(granted_qos)]
        );
        subs.push((granted_qos, sub));
    }
    let mut publisher = broker.client("pub", true).await;
    for (i, qos) in levels.iter().enumerate() {
        publisher
            .publish("g", *qos, &[i as u8], false, i as u16 + 1)
            .await;
    }
    for (granted_qos, sub) in &mut subs {
        let mut got = publishes_by_payload(sub, levels.len()).await;
        for (i, published) in levels.iter().enumerate() {
            let p = take(&mut got, "g", &[i as u8]);
            let want = if *published as u8 <= *granted_qos as u8 {
                *published
            } else {
                *granted_qos
            };
            assert_eq!(p.qos, want, "granted {granted_qos:?}: {p:?}");
        }
    }
    broker.stop().await;

    let broker = TestBroker::start_with(|c| c.mqtt.max_qos.0 = mqtt_qos(1)).await;
    let mut sub = broker.client("sub", true).await;
    assert_eq!(
        sub.subscribe(1, "g", QoS::ExactlyOnce).await,
        [granted(QoS::AtLeastOnce)]
    );
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("g", QoS::ExactlyOnce, b"2", false, 1)
        .await;
    let p = expect_message(&mut sub, "g", b"2").await;
    assert_eq!(p.qos, QoS::AtLeastOnce, "{p:?}");
    broker.stop().await;
}

/// MQTT-3.8.4-3: subscribing again to an identical filter replaces the subscription —
/// its new QoS applies, lower or higher, and messages are not doubled — and re-sends the
/// matching retained messages.
#[tokio::test]
async fn resubscribing_replaces_the_subscription_and_resends_retained() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("rs", QoS::ExactlyOnce, b"ret", true, 1)
        .await;
    let mut sub = broker.client("sub", true).await;

    let levels = [
        QoS::ExactlyOnce,
        QoS::AtMostOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
    ];
    for (pkid, qos) in (1u16..).zip(levels) {
        assert_eq!(sub.subscribe(pkid, "rs", qos).await, [granted(qos)]);
        let r = expect_message(&mut sub, "rs", b"ret").await;
        assert!(r.retain, "retained message re-sent: {r:?}");
        assert_eq!(r.qos, qos);
        publisher
            .publish("rs", QoS::ExactlyOnce, b"live", false, pkid)
            .await;
        let p = expect_message(&mut sub, "rs", b"live").await;
        assert_eq!(p.qos, qos, "the new subscription's QoS applies: {p:?}");
        assert!(!p.retain);
    }
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.8.4-3: replacing a subscription does not interrupt the flow of publications:
/// a message in flight can still be acknowledged, and the messages queued behind it
/// still arrive, as does the re-sent retained message.
#[tokio::test]
async fn resubscribing_does_not_interrupt_the_flow() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 1).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("flow", QoS::AtMostOnce, b"ret", true, 0)
        .await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "flow", QoS::AtLeastOnce).await;
    expect_message(&mut sub, "flow", b"ret").await;

    for (i, payload) in [b"m1", b"m2", b"m3"].iter().enumerate() {
        publisher
            .publish("flow", QoS::AtLeastOnce, *payload, false, i as u16 + 1)
            .await;
    }
    let m1 = expect_message(&mut sub, "flow", b"m1").await;
    // The window of 1 holds m2 and m3 back until m1 is acknowledged.
    sub.expect_nothing(Duration::from_millis(100)).await;
    assert_eq!(
        sub.subscribe(2, "flow", QoS::AtLeastOnce).await,
        [granted(QoS::AtLeastOnce)]
    );
    sub.send_packet(v4::PubAck::new(m1.pkid)).await;
    // m2 and m3 (one at a time through the window) and the re-sent retained message.
    let mut got = BTreeMap::new();
    for _ in 0..3 {
        let p = sub.expect_publish().await;
        assert_eq!(p.topic, "flow");
        if p.qos == QoS::AtLeastOnce {
            sub.send_packet(v4::PubAck::new(p.pkid)).await;
        }
        got.insert(p.payload.to_vec(), p.retain);
    }
    let want = [
        (b"m2".to_vec(), false),
        (b"m3".to_vec(), false),
        (b"ret".to_vec(), true),
    ];
    assert_eq!(got, BTreeMap::from(want));
    publisher
        .publish("flow", QoS::AtLeastOnce, b"m4", false, 4)
        .await;
    let m4 = expect_message(&mut sub, "flow", b"m4").await;
    assert!(!m4.dup);
    sub.send_packet(v4::PubAck::new(m4.pkid)).await;
    sync(&mut sub).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Reserved flags and options
// ---------------------------------------------------------------------------------------

/// MQTT-3.6.1-1: a PUBREL whose fixed-header flags are not 0010 closes the connection
/// without a PUBCOMP; with 0010 it is answered.
#[tokio::test]
async fn pubrel_with_wrong_flags_closes_the_connection() {
    let broker = TestBroker::start().await;
    for (i, first) in [0x60u8, 0x63, 0x66, 0x6a].into_iter().enumerate() {
        let mut client = broker.client(&format!("c{i}"), true).await;
        client
            .send_packet(publish_packet("rel", QoS::ExactlyOnce, b"x", 5))
            .await;
        expect_pubrec(&mut client, 5).await;
        client.send(&[first, 0x02, 0x00, 0x05]).await;
        client.expect_closed().await;
    }
    let mut client = broker.client("good", true).await;
    client
        .send_packet(publish_packet("rel", QoS::ExactlyOnce, b"x", 5))
        .await;
    expect_pubrec(&mut client, 5).await;
    client.send(&[0x62, 0x02, 0x00, 0x05]).await;
    expect_pubcomp(&mut client, 5).await;
    broker.stop().await;
}

/// MQTT-3.8.1-1: a SUBSCRIBE whose fixed-header flags are not 0010 closes the connection
/// without a SUBACK; the same bytes with 0010 are answered.
#[tokio::test]
async fn subscribe_with_wrong_flags_closes_the_connection() {
    let broker = TestBroker::start().await;
    for (i, first) in [0x80u8, 0x81, 0x83, 0x8a].into_iter().enumerate() {
        let mut client = broker.client(&format!("c{i}"), true).await;
        client.send(&raw_subscribe(first, 1, &[("s", 1)])).await;
        client.expect_closed().await;
    }
    let mut client = broker.client("good", true).await;
    client.send(&raw_subscribe(0x82, 1, &[("s", 1)])).await;
    assert_eq!(
        expect_suback(&mut client, 1).await,
        [granted(QoS::AtLeastOnce)]
    );
    broker.stop().await;
}

/// MQTT-3.8.3-4: a SUBSCRIBE whose options byte has reserved bits set or QoS 3 closes the
/// connection without a SUBACK, and sets up no subscription.
#[tokio::test]
async fn subscribe_options_with_reserved_bits_or_qos_3_close_the_connection() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    for (i, options) in [0x03u8, 0x04, 0x08, 0x40, 0x80, 0xfd]
        .into_iter()
        .enumerate()
    {
        let id = format!("c{i}");
        let mut client = broker.raw().await;
        client.connect(&id, false).await;
        client
            .send(&raw_subscribe(0x82, 1, &[("ok", 0), ("opt", options)]))
            .await;
        client.expect_closed().await;
        // Neither filter of the refused packet was subscribed: nothing is queued.
        publisher
            .publish("ok", QoS::AtLeastOnce, b"x", false, 1)
            .await;
        publisher
            .publish("opt", QoS::AtLeastOnce, b"x", false, 1)
            .await;
        let mut client = resume_or_new(&broker, &id).await;
        client.expect_nothing(Duration::from_millis(100)).await;
    }
    let mut client = broker.client("good", true).await;
    client
        .send(&raw_subscribe(0x82, 1, &[("a", 0), ("b", 1), ("c", 2)]))
        .await;
    assert_eq!(
        expect_suback(&mut client, 1).await,
        [
            granted(QoS::AtMostOnce),
            granted(QoS::AtLeastOnce),
            granted(QoS::ExactlyOnce)
        ]
    );
    broker.stop().await;
}

/// Reconnects with clean session 0, whether or not a session was kept.
async fn resume_or_new(broker: &TestBroker, client_id: &str) -> RawClient {
    let mut client = broker.raw().await;
    let ack = client.connect(client_id, false).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success, "{ack:?}");
    client
}

/// MQTT-3.10.1-1: an UNSUBSCRIBE whose fixed-header flags are not 0010 closes the
/// connection without an UNSUBACK; the same bytes with 0010 are answered.
#[tokio::test]
async fn unsubscribe_with_wrong_flags_closes_the_connection() {
    let broker = TestBroker::start().await;
    let body = [&[0x00, 0x09][..], &field(b"u")].concat();
    for (i, first) in [0xa0u8, 0xa1, 0xa3, 0xaa].into_iter().enumerate() {
        let mut client = broker.client(&format!("c{i}"), true).await;
        client.subscribe(1, "u", QoS::AtMostOnce).await;
        client.send(&frame(first, &body)).await;
        client.expect_closed().await;
    }
    let mut client = broker.client("good", true).await;
    client.subscribe(1, "u", QoS::AtMostOnce).await;
    client.send(&frame(0xa2, &body)).await;
    expect_unsuback(&mut client, 9).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Unsubscribing
// ---------------------------------------------------------------------------------------

/// MQTT-3.10.4-1: UNSUBSCRIBE filters are compared character by character with the
/// subscriptions: only an identical filter removes one — not one that merely matches the
/// same topics, differs in case, or has an extra level.
/// MQTT-3.10.4-2: once a subscription is deleted, no new messages are sent for it.
/// MQTT-3.10.4-5: an UNSUBSCRIBE that removes nothing is still answered with UNSUBACK.
#[tokio::test]
async fn unsubscribe_removes_only_an_identical_filter() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    subscribe_many(
        &mut sub,
        1,
        &[("un/+", QoS::AtMostOnce), ("other", QoS::AtMostOnce)],
    )
    .await;
    let mut publisher = broker.client("pub", true).await;
    let near_misses = [
        "un/x",
        "UN/+",
        "un/+/",
        "un/#",
        "un/+ ",
        "+/+",
        "nothing/here",
        "a/#/b",
    ];
    for (i, filter) in near_misses.iter().enumerate() {
        unsubscribe(&mut sub, i as u16 + 10, &[filter]).await;
        publisher
            .publish("un/x", QoS::AtMostOnce, filter.as_bytes(), false, 0)
            .await;
        expect_message(&mut sub, "un/x", filter.as_bytes()).await;
    }

    unsubscribe(&mut sub, 2, &["un/+"]).await;
    publisher
        .publish("un/x", QoS::AtLeastOnce, b"gone", false, 1)
        .await;
    publisher
        .publish("un/y", QoS::AtMostOnce, b"gone", false, 0)
        .await;
    sub.expect_nothing(QUIET).await;
    publisher
        .publish("other", QoS::AtMostOnce, b"still", false, 0)
        .await;
    expect_message(&mut sub, "other", b"still").await;
    // Removing it again removes nothing and is still acknowledged.
    unsubscribe(&mut sub, 3, &["un/+"]).await;
    broker.stop().await;
}

/// MQTT-3.10.4-3: a QoS 1 and a QoS 2 delivery already started when their subscription
/// is deleted are completed: the PUBREC is still answered with PUBREL, and the
/// unacknowledged QoS 1 message is resent when the session resumes; a message published
/// after the UNSUBACK is not delivered.
#[tokio::test]
async fn unsubscribe_completes_deliveries_already_started() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", false).await;
    sub.subscribe(1, "fin", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("fin", QoS::AtLeastOnce, b"one", false, 1)
        .await;
    publisher
        .publish("fin", QoS::ExactlyOnce, b"two", false, 2)
        .await;
    let mut got = publishes_by_payload(&mut sub, 2).await;
    let one = take(&mut got, "fin", b"one");
    let two = take(&mut got, "fin", b"two");

    unsubscribe(&mut sub, 2, &["fin"]).await;
    publisher
        .publish("fin", QoS::AtLeastOnce, b"after", false, 3)
        .await;
    sub.send_packet(v4::PubRec::new(two.pkid)).await;
    expect_pubrel(&mut sub, two.pkid).await;
    sub.send_packet(v4::PubComp::new(two.pkid)).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "sub").await;
    let again = expect_message(&mut sub, "fin", b"one").await;
    assert_eq!(again.pkid, one.pkid);
    assert!(again.dup);
    sub.send_packet(v4::PubAck::new(again.pkid)).await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-3.10.4-6: an UNSUBSCRIBE with several filters is handled as one UNSUBSCRIBE each
/// and answered by a single UNSUBACK.
#[tokio::test]
async fn unsubscribe_with_several_filters_gets_one_unsuback() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    subscribe_many(
        &mut sub,
        1,
        &[
            ("u/a", QoS::AtMostOnce),
            ("u/b", QoS::AtMostOnce),
            ("u/c/#", QoS::AtMostOnce),
        ],
    )
    .await;
    send_unsubscribe(&mut sub, 7, &["u/a", "u/c/#", "u/none"]).await;
    expect_unsuback(&mut sub, 7).await;
    // PINGRESP next: there was exactly one UNSUBACK.
    sync(&mut sub).await;
    let mut publisher = broker.client("pub", true).await;
    for topic in ["u/a", "u/c/d", "u/c", "u/b"] {
        publisher
            .publish(topic, QoS::AtMostOnce, b"m", false, 0)
            .await;
    }
    expect_message(&mut sub, "u/b", b"m").await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// QoS flows
// ---------------------------------------------------------------------------------------

/// MQTT-4.3.2-2: the server answers a QoS 1 PUBLISH with a PUBACK carrying its packet id,
/// and after that treats a PUBLISH with the same id as a new message, DUP or not.
#[tokio::test]
async fn qos1_packet_id_is_new_again_after_puback() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "p1", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub", true).await;
    for (payload, dup) in [(&b"first"[..], false), (b"second", true), (b"third", false)] {
        let mut p = publish_packet("p1", QoS::AtLeastOnce, payload, 5);
        p.dup = dup;
        publisher.send_packet(p).await;
        expect_puback(&mut publisher, 5).await;
        let got = expect_message(&mut sub, "p1", payload).await;
        sub.send_packet(v4::PubAck::new(got.pkid)).await;
    }
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-4.3.3-1: the server's QoS 2 PUBLISH has a fresh id and DUP 0; a PUBREC is
/// answered with a PUBREL of the same id; the PUBLISH is resent (DUP 1) while its PUBREC
/// is missing, but once the PUBREL has gone only the PUBREL is resent, until PUBCOMP.
/// MQTT-4.4.0-1: on reconnect with clean session 0 the server resends the unacknowledged
/// PUBLISH and PUBREL with their original packet ids.
/// MQTT-2.3.1-4: the resent PUBLISH keeps its packet id.
#[tokio::test]
async fn qos2_delivery_resends_pubrel_not_publish_once_released() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", false).await;
    sub.subscribe(1, "p2", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("p2", QoS::ExactlyOnce, b"a", false, 1)
        .await;
    publisher
        .publish("p2", QoS::ExactlyOnce, b"b", false, 2)
        .await;
    let a = expect_message(&mut sub, "p2", b"a").await;
    let b = expect_message(&mut sub, "p2", b"b").await;
    for p in [&a, &b] {
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert!(!p.dup);
        assert_ne!(p.pkid, 0);
    }
    assert_ne!(a.pkid, b.pkid);
    sub.send_packet(v4::PubRec::new(a.pkid)).await;
    expect_pubrel(&mut sub, a.pkid).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "sub").await;
    expect_pubrel(&mut sub, a.pkid).await;
    let again = expect_message(&mut sub, "p2", b"b").await;
    assert!(again.dup);
    assert_eq!(again.pkid, b.pkid);
    sub.expect_nothing(QUIET).await;
    sub.send_packet(v4::PubRec::new(b.pkid)).await;
    expect_pubrel(&mut sub, b.pkid).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "sub").await;
    expect_pubrel(&mut sub, a.pkid).await;
    expect_pubrel(&mut sub, b.pkid).await;
    sub.send_packet(v4::PubComp::new(a.pkid)).await;
    sub.send_packet(v4::PubComp::new(b.pkid)).await;
    sync(&mut sub).await;
    drop(sub);

    let mut sub = resume(&broker, "sub").await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-4.3.3-2: the server answers a QoS 2 PUBLISH with PUBREC, answers a repeat of it
/// (same id, before PUBREL) with PUBREC again without delivering it twice, answers PUBREL
/// with PUBCOMP, and afterwards treats the same id as a new message.
#[tokio::test]
async fn qos2_receiver_deduplicates_until_pubrel() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "d2", QoS::AtMostOnce).await;
    let mut publisher = broker.client("pub", true).await;

    publisher
        .send_packet(publish_packet("d2", QoS::ExactlyOnce, b"once", 9))
        .await;
    expect_pubrec(&mut publisher, 9).await;
    for _ in 0..2 {
        let mut repeat = publish_packet("d2", QoS::ExactlyOnce, b"once", 9);
        repeat.dup = true;
        publisher.send_packet(repeat).await;
        expect_pubrec(&mut publisher, 9).await;
    }
    expect_message(&mut sub, "d2", b"once").await;
    sub.expect_nothing(QUIET).await;

    publisher.send_packet(v4::PubRel::new(9)).await;
    expect_pubcomp(&mut publisher, 9).await;
    publisher
        .send_packet(publish_packet("d2", QoS::ExactlyOnce, b"anew", 9))
        .await;
    expect_pubrec(&mut publisher, 9).await;
    expect_message(&mut sub, "d2", b"anew").await;
    publisher.send_packet(v4::PubRel::new(9)).await;
    expect_pubcomp(&mut publisher, 9).await;
    broker.stop().await;
}

/// MQTT-4.5.0-1: the server adds a message to the session of every matching subscriber —
/// connected or not — and of no other.
#[tokio::test]
async fn message_reaches_every_matching_session() {
    let broker = TestBroker::start().await;
    let mut online = broker.client("online", true).await;
    online.subscribe(1, "own/#", QoS::AtLeastOnce).await;
    let mut offline = broker.client("offline", false).await;
    offline.subscribe(1, "own/+", QoS::AtLeastOnce).await;
    offline.disconnect().await;
    let mut unrelated = broker.client("unrelated", true).await;
    unrelated.subscribe(1, "own/x/+", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("own/x", QoS::AtLeastOnce, b"m", false, 1)
        .await;

    expect_message(&mut online, "own/x", b"m").await;
    let mut offline = resume(&broker, "offline").await;
    expect_message(&mut offline, "own/x", b"m").await;
    unrelated.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-4.6.0-5: by default every topic is ordered.
/// MQTT-4.6.0-6: the PUBLISHes for one topic and QoS reach a subscriber in the order the
/// publisher sent them, with many messages in flight and queued at once.
#[tokio::test]
async fn messages_keep_their_order_per_topic_and_qos() {
    const ROUNDS: usize = 60;
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "ord/#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub", true).await;
    let streams = [
        ("ord/a", QoS::AtMostOnce),
        ("ord/a", QoS::AtLeastOnce),
        ("ord/b", QoS::ExactlyOnce),
        ("ord/b", QoS::AtLeastOnce),
        ("ord/c", QoS::ExactlyOnce),
    ];
    let total = ROUNDS * streams.len();

    let publish_all = async {
        let mut buf = bytes::BytesMut::new();
        let mut acks = 0;
        let mut pkid = 0u16;
        for round in 0..ROUNDS {
            for (topic, qos) in streams {
                pkid += 1;
                let payload = format!("{}", round);
                publish_packet(topic, qos, payload.as_bytes(), pkid)
                    .write(&mut buf)
                    .unwrap();
                if qos != QoS::AtMostOnce {
                    acks += 1;
                }
            }
        }
        publisher.send(&buf).await;
        while acks > 0 {
            match publisher.recv().await {
                Some(Packet::PubAck(_)) | Some(Packet::PubComp(_)) => acks -= 1,
                Some(Packet::PubRec(rec)) => publisher.send_packet(v4::PubRel::new(rec.pkid)).await,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let receive_all = async {
        let mut seen: BTreeMap<(String, u8), Vec<usize>> = BTreeMap::new();
        for p in sub.receive_completing(total).await {
            let n: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
            seen.entry((p.topic.clone(), p.qos as u8))
                .or_default()
                .push(n);
        }
        seen
    };
    let ((), seen) = tokio::join!(publish_all, receive_all);
    let in_order: Vec<usize> = (0..ROUNDS).collect();
    assert_eq!(seen.len(), streams.len(), "{seen:?}");
    for (topic, qos) in streams {
        let got = &seen[&(topic.to_string(), qos as u8)];
        assert_eq!(got, &in_order, "{topic} at {qos:?} out of order");
    }
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Topic names and filters
// ---------------------------------------------------------------------------------------

/// Subscribes a fresh client to `filter` (which must be granted), publishes to each
/// topic and returns the topics the client received, in order.
async fn topics_received(broker: &TestBroker, filter: &str, topics: &[&str]) -> Vec<String> {
    let mut sub = broker.client(&format!("match {filter}"), true).await;
    assert_eq!(
        sub.subscribe(1, filter, QoS::AtMostOnce).await,
        [granted(QoS::AtMostOnce)]
    );
    let mut publisher = broker.client(&format!("pub {filter}"), true).await;
    for topic in topics {
        publisher
            .publish(topic, QoS::AtMostOnce, b"", false, 0)
            .await;
    }
    let mut got = Vec::new();
    while let Some(packet) = sub.recv_within(QUIET).await {
        match packet {
            Packet::Publish(p) => got.push(p.topic),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Messages to different topics may arrive in any order.
    got.sort();
    got
}

fn sorted(topics: &[&str]) -> Vec<String> {
    let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    topics.sort();
    topics
}

/// MQTT-4.7.1-2: '#' is accepted alone or as a whole last level, and refused anywhere
/// else; it matches the parent level and any number of child levels.
#[tokio::test]
async fn multi_level_wildcard_rules() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("#", QoS::AtMostOnce),
            ("sport/#", QoS::AtMostOnce),
            ("sport/tennis/#", QoS::AtMostOnce),
            ("+/#", QoS::AtMostOnce),
            ("sport/tennis#", QoS::AtMostOnce),
            ("sport/#/ranking", QoS::AtMostOnce),
            ("#/", QoS::AtMostOnce),
            ("##", QoS::AtMostOnce),
            ("sport/#x", QoS::AtMostOnce),
        ],
    )
    .await;
    let ok = granted(QoS::AtMostOnce);
    assert_eq!(
        codes,
        [ok, ok, ok, ok, FAILURE, FAILURE, FAILURE, FAILURE, FAILURE]
    );
    broker.stop().await;

    let broker = TestBroker::start().await;
    let topics = [
        "sport",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sports",
        "/sport",
    ];
    assert_eq!(
        topics_received(&broker, "sport/#", &topics).await,
        sorted(&[
            "sport",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking"
        ])
    );
    assert_eq!(
        topics_received(&broker, "#", &topics).await,
        sorted(&topics)
    );
    broker.stop().await;
}

/// MQTT-4.7.1-3: '+' is accepted only as a whole level, anywhere in a filter, and refused
/// as part of a level; it matches exactly one level, an empty one included.
#[tokio::test]
async fn single_level_wildcard_rules() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[
            ("+", QoS::AtMostOnce),
            ("+/tennis/#", QoS::AtMostOnce),
            ("sport/+/player1", QoS::AtMostOnce),
            ("/+", QoS::AtMostOnce),
            ("sport+", QoS::AtMostOnce),
            ("sport/+x", QoS::AtMostOnce),
            ("+a/b", QoS::AtMostOnce),
            ("++", QoS::AtMostOnce),
        ],
    )
    .await;
    let ok = granted(QoS::AtMostOnce);
    assert_eq!(codes, [ok, ok, ok, ok, FAILURE, FAILURE, FAILURE, FAILURE]);
    broker.stop().await;

    let broker = TestBroker::start().await;
    let topics = &[
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "/finance",
    ];
    assert_eq!(
        topics_received(&broker, "sport/+", topics).await,
        sorted(&["sport/", "sport/tennis"])
    );
    assert_eq!(
        topics_received(&broker, "+", topics).await,
        sorted(&["sport"])
    );
    assert_eq!(
        topics_received(&broker, "+/+", topics).await,
        sorted(&["sport/", "sport/tennis", "/finance"])
    );
    assert_eq!(
        topics_received(&broker, "/+", topics).await,
        sorted(&["/finance"])
    );
    assert_eq!(
        topics_received(&broker, "+/tennis/#", topics).await,
        sorted(&["sport/tennis", "sport/tennis/player1"])
    );
    broker.stop().await;
}

/// MQTT-4.7.2-1: filters beginning with '#' or '+' do not match topic names beginning
/// with '$' — neither for live messages nor for retained ones — while filters beginning
/// with '$' do.
#[tokio::test]
async fn wildcard_filters_do_not_match_dollar_topics() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("$SYS/retained", QoS::AtMostOnce, b"r", true, 0)
        .await;
    sync(&mut publisher).await;

    let mut subs = Vec::new();
    for (filter, wants_dollar) in [
        ("#", false),
        ("+/monitor/Clients", false),
        ("+/#", false),
        ("+/retained", false),
        ("$SYS/#", true),
        ("$SYS/monitor/+", true),
        ("$SYS/retained", true),
    ] {
        let mut sub = broker.client(&format!("s {filter}"), true).await;
        sub.subscribe(1, filter, QoS::AtMostOnce).await;
        subs.push((filter, wants_dollar, sub));
    }
    for topic in ["$SYS/monitor/Clients", "x/monitor/Clients", "x/retained"] {
        publisher
            .publish(topic, QoS::AtMostOnce, b"m", false, 0)
            .await;
    }
    for (filter, wants_dollar, sub) in &mut subs {
        let mut got = Vec::new();
        while let Some(packet) = sub.recv_within(QUIET).await {
            match packet {
                Packet::Publish(p) => got.push(p.topic),
                other => panic!("unexpected {other:?}"),
            }
        }
        let dollar: Vec<&String> = got.iter().filter(|t| t.starts_with('$')).collect();
        if *wants_dollar {
            assert!(
                !dollar.is_empty(),
                "{filter} should match a $ topic: {got:?}"
            );
        } else {
            assert!(dollar.is_empty(), "{filter} matched a $ topic: {got:?}");
            assert!(
                !got.is_empty(),
                "{filter} should match the other topics: {got:?}"
            );
        }
    }
    broker.stop().await;
}

/// MQTT-4.7.3-1: an empty topic filter is refused (SUBACK 0x80) and a PUBLISH with an
/// empty topic name closes the connection.
#[tokio::test]
async fn topic_names_and_filters_are_not_empty() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    let codes = subscribe_many(
        &mut sub,
        1,
        &[("", QoS::AtLeastOnce), ("#", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [FAILURE, granted(QoS::AtLeastOnce)]);
    let mut publisher = broker.client("pub", true).await;
    publisher
        .send(&raw_publish(0, b"", None, b"empty topic"))
        .await;
    publisher.expect_closed().await;
    let mut publisher = broker.client("pub2", true).await;
    publisher
        .send(&raw_publish(0b0010, b"", Some(1), b"empty topic"))
        .await;
    publisher.expect_closed().await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-4.7.3-2: a topic name or topic filter containing U+0000 closes the connection,
/// and the message is not delivered.
#[tokio::test]
async fn topic_with_null_character_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .send(&raw_publish(0b0010, b"a/\0b", Some(1), b"x"))
        .await;
    publisher.expect_closed().await;
    let mut subscriber = broker.client("sub2", true).await;
    subscriber
        .send(&raw_subscribe(0x82, 1, &[("a/\0b", 0)]))
        .await;
    subscriber.expect_closed().await;
    sub.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT-4.7.3-4: matching compares topics as they are: no case folding, no Unicode
/// normalisation, no trimming, no collapsing of empty levels, no stripped U+FEFF.
#[tokio::test]
async fn matching_applies_no_normalisation() {
    let broker = TestBroker::start().await;
    let filters = ["café/+", "ACCOUNTS", "a/b", "x/ y", "\u{feff}bom"];
    let mut sub = broker.client("sub", true).await;
    let requested: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtMostOnce)).collect();
    subscribe_many(&mut sub, 1, &requested).await;
    let mut publisher = broker.client("pub", true).await;
    let topics = [
        ("cafe\u{301}/1", false),
        ("café/1", true),
        ("CAFÉ/1", false),
        ("accounts", false),
        ("ＡCCOUNTS", false),
        ("ACCOUNTS", true),
        ("a//b", false),
        ("a/b/", false),
        ("/a/b", false),
        ("a/b", true),
        ("x/y", false),
        ("x/ y", true),
        ("x/ y ", false),
        ("bom", false),
        ("\u{feff}bom", true),
    ];
    for (topic, _) in topics {
        publisher
            .publish(topic, QoS::AtMostOnce, b"", false, 0)
            .await;
    }
    let mut got = Vec::new();
    while let Some(packet) = sub.recv_within(QUIET).await {
        match packet {
            Packet::Publish(p) => got.push(p.topic),
            other => panic!("unexpected {other:?}"),
        }
    }
    let wanted: Vec<&str> = topics.iter().filter(|t| t.1).map(|t| t.0).collect();
    got.sort();
    assert_eq!(got, sorted(&wanted));
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------
// Session takeover
// ---------------------------------------------------------------------------------------

/// Not a statement of its own: a stress check that a session taken over while messages
/// stream to it loses none of them. It caught a race in a few percent of rounds: the old
/// connection could still put messages in flight after the new one had resent the
/// in-flight ones, and those then went unsent until yet another reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_while_streaming_loses_nothing() {
    const ROUNDS: usize = 200;
    const TOTAL: usize = 1500;
    for round in 0..ROUNDS {
        let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = TOTAL).await;
        let mut first = broker.client("sub", false).await;
        first.subscribe(1, "t", QoS::AtLeastOnce).await;
        let addr = broker.addr;
        let publisher = tokio::spawn(async move {
            let mut publisher = RawClient::open(addr).await;
            publisher.connect("pub", true).await;
            for i in 0..TOTAL {
                let pkid = (i % 50) as u16 + 1;
                let p = publish_packet("t", QoS::AtLeastOnce, i.to_string().as_bytes(), pkid);
                publisher.send_packet(p).await;
                if i % 50 == 49 {
                    for _ in 0..50 {
                        match publisher.recv().await {
                            Some(Packet::PubAck(_)) => {}
                            other => panic!("expected PUBACK, got {other:?}"),
                        }
                    }
                }
            }
        });
        let mut seen = HashSet::new();
        for _ in 0..300 + (round * 37) % 900 {
            let p = first.expect_publish().await;
            first.send_packet(v4::PubAck::new(p.pkid)).await;
            seen.insert(p.payload.to_vec());
        }
        // Take the session over while messages are still streaming to `first`.
        let mut second = resume(&broker, "sub").await;
        publisher.await.expect("publisher");
        while seen.len() < TOTAL {
            match second.recv_within(Duration::from_secs(2)).await {
                Some(Packet::Publish(p)) => {
                    second.send_packet(v4::PubAck::new(p.pkid)).await;
                    seen.insert(p.payload.to_vec());
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
        let missing: Vec<usize> = (0..TOTAL)
            .filter(|i| !seen.contains(i.to_string().as_bytes()))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: never delivered: {missing:?}"
        );
        drop(first);
        broker.stop().await;
    }
}

/// MQTT-4.7.3-3: topic names and filters are length-prefixed strings of up to 65535
/// bytes; the broker accepts a filter and a topic name of exactly that length and
/// delivers the message with the whole topic intact.
#[tokio::test]
async fn topics_of_the_maximum_length_work() {
    let broker = TestBroker::start().await;
    let topic = format!("long/{}", "x".repeat(65535 - 5));
    let filter = format!("{}/#", &topic[..65533]);
    let mut sub = broker.client("long-sub", true).await;
    assert_eq!(
        sub.subscribe(1, &topic, QoS::AtMostOnce).await,
        [granted(QoS::AtMostOnce)]
    );
    assert_eq!(
        sub.subscribe(2, &filter, QoS::AtMostOnce).await,
        [granted(QoS::AtMostOnce)]
    );
    let mut publisher = broker.client("long-pub", true).await;
    publisher
        .publish(&topic, QoS::AtMostOnce, b"far", false, 0)
        .await;
    let got = expect_message(&mut sub, &topic, b"far").await;
    assert_eq!(got.topic.len(), 65535);
    broker.stop().await;
}

/// MQTT-3.3.5-2: a PUBLISH the ACL does not allow is acknowledged as its QoS asks
/// (PUBACK; PUBREC, then PUBCOMP for the PUBREL) and not delivered to anyone.
#[tokio::test]
async fn an_unauthorised_publish_is_acknowledged_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read #\ntopic write open/#\n").unwrap();
    let broker = TestBroker::start_with(|config| config.auth.acl_file = Some(acl)).await;
    let mut subscriber = broker.client("unauthorised-sub", true).await;
    subscriber.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("unauthorised-pub", true).await;
    for (pkid, qos) in [
        (0, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        // `publish` completes each QoS exchange, failing on any other answer.
        publisher.publish("closed/x", qos, b"no", false, pkid).await;
    }
    publisher
        .publish("open/x", QoS::AtLeastOnce, b"yes", false, 3)
        .await;
    expect_message(&mut subscriber, "open/x", b"yes").await;
    subscriber.expect_nothing(QUIET).await;
}
