//! MQTT 5.0 conformance: see coverage.rs for how statements are named.
//!
//! Subscribing and unsubscribing: SUBACK and UNSUBACK, subscription options (QoS, No
//! Local, Retain As Published, Retain Handling), subscription identifiers, topic filter
//! rules and matching, and shared subscriptions, each shown on the wire by MQTT 5.0
//! clients made of raw bytes (tests/common/v5). Absence is shown by a marker sent
//! after down the same path, or by waiting [`QUIET`].

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/v5/mod.rs"]
mod v5;

use std::time::Duration;

use common::{field, frame, TestBroker};
use v5::*;

async fn publisher(broker: &TestBroker) -> Client {
    Client::new(broker, "pub").await
}

/// The topics `filter` receives of `topics`, each published once (QoS 0), in order: a
/// message to "zz/end", subscribed as well and published last, ends the list.
async fn topics_received(broker: &TestBroker, filter: &str, topics: &[&str]) -> Vec<String> {
    let mut sub = Client::new(broker, "match").await;
    let codes = sub.subscribe(1, &[(filter, 0), ("zz/end", 0)]).await;
    assert_eq!(codes, vec![0, 0], "{filter}");
    let mut publisher = publisher(broker).await;
    for topic in topics {
        publisher.publish(&Publish::new(topic, 0, b"")).await;
    }
    publisher.publish(&Publish::new("zz/end", 0, b"end")).await;
    let mut got = Vec::new();
    loop {
        let p = sub.expect_publish().await;
        if p.topic == "zz/end" {
            break;
        }
        got.push(p.topic);
    }
    sub.disconnect().await;
    publisher.disconnect().await;
    got
}

// ---- SUBACK and UNSUBACK ----

/// MQTT-2.2.1-6: SUBACK and UNSUBACK carry the packet id of the SUBSCRIBE or UNSUBSCRIBE
/// they answer.
/// MQTT-3.8.4-1: every SUBSCRIBE is answered with a SUBACK,
/// MQTT-3.8.4-2: with its packet identifier.
/// MQTT-3.10.4-4: every UNSUBSCRIBE is answered with an UNSUBACK,
/// MQTT-3.10.4-5: with its packet identifier, also when it removed nothing.
/// MQTT-2.2.2-1: with no properties, SUBACK and UNSUBACK carry Property Length 0
/// (exact bytes 90 04 id 00 01 and B0 04 id 00 00), as the broker's PUBLISH does; and
/// the broker reads client packets with Property Length 0.
#[tokio::test]
async fn suback_and_unsuback_echo_the_packet_id() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "ids").await;
    for pkid in [1u16, 0x0102, 0xfffe, 0xffff] {
        let [hi, lo] = pkid.to_be_bytes();
        client
            .send(&subscribe(pkid, &Props::new(), &[("ids/t", 1)]))
            .await;
        assert_eq!(
            client.raw.recv_frame().await,
            Some(vec![0x90, 0x04, hi, lo, 0x00, 0x01])
        );
        client
            .send(&unsubscribe(pkid, &Props::new(), &["ids/t"]))
            .await;
        assert_eq!(
            client.raw.recv_frame().await,
            Some(vec![0xb0, 0x04, hi, lo, 0x00, 0x00])
        );
        client
            .send(&unsubscribe(pkid, &Props::new(), &["ids/t"]))
            .await;
        assert_eq!(
            client.raw.recv_frame().await,
            Some(vec![0xb0, 0x04, hi, lo, 0x00, NO_SUBSCRIPTION_EXISTED])
        );
    }
    client.subscribe(1, &[("ids/t", 0)]).await;
    client.publish(&Publish::new("ids/t", 0, b"p")).await;
    let got = client.expect_message("ids/t", b"p").await;
    assert_eq!(
        got.raw,
        frame(0x30, &[&field(b"ids/t")[..], &[0x00], b"p"].concat())
    );
}

/// MQTT-3.8.4-1: every SUBSCRIBE gets exactly one SUBACK, also pipelined ones.
/// MQTT-3.8.4-5: a SUBSCRIBE with several filters is handled as one SUBSCRIBE each,
/// answered by one SUBACK: each filter delivers.
/// MQTT-3.8.4-6: the SUBACK has one reason code per filter,
/// MQTT-3.9.3-1: in the order of the filters,
/// MQTT-3.8.4-7: each the granted QoS or a failure code,
/// MQTT-3.9.3-2: all defined Subscribe Reason Codes (0x00-0x02, 0x8F here).
#[tokio::test]
async fn subscribe_gets_one_suback_with_a_code_per_filter() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "multi").await;
    let filters = [
        ("multi/2", 2),
        ("multi/bad#", 0),
        ("multi/0", 0),
        ("multi/1", 1),
        ("", 1),
        ("multi/+/x", 2),
    ];
    let mut pipelined = Vec::new();
    for pkid in 1..=3u16 {
        pipelined.extend(subscribe(pkid, &Props::new(), &filters));
    }
    client.send(&pipelined).await;
    for pkid in 1..=3u16 {
        let ack = client.expect_suback(pkid).await;
        assert_eq!(
            ack.codes,
            vec![2, TOPIC_FILTER_INVALID, 0, 1, TOPIC_FILTER_INVALID, 2]
        );
    }
    client.expect_nothing(QUIET).await;
    let mut publisher = publisher(&broker).await;
    for topic in ["multi/0", "multi/1", "multi/2", "multi/y/x"] {
        publisher
            .publish(&Publish::new(topic, 2, topic.as_bytes()))
            .await;
        let got = client.expect_message(topic, topic.as_bytes()).await;
        client.complete(&got).await;
    }
}

/// MQTT-3.9.3-2: failure codes are defined Subscribe Reason Codes: 0x8F for an invalid
/// filter, 0x97 once the subscription quota (2) is used up — while replacing an existing
/// subscription is still granted.
/// MQTT-3.8.4-7: each code is the granted QoS or a failure.
#[tokio::test]
async fn refused_filters_get_0x8f_or_0x97() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions_per_client = 2).await;
    let mut client = Client::new(&broker, "quota").await;
    assert_eq!(
        client.subscribe(1, &[("q/a", 0), ("q/b", 1)]).await,
        vec![0, 1]
    );
    assert_eq!(
        client
            .subscribe(2, &[("q/c", 0), ("q/a", 2), ("q/#/x", 0)])
            .await,
        vec![QUOTA_EXCEEDED, 2, TOPIC_FILTER_INVALID]
    );
}

/// MQTT-3.8.4-8: each subscriber gets a message at the lower of its QoS as published and
/// the QoS granted to the subscription.
#[tokio::test]
async fn delivered_qos_is_the_lower_of_published_and_granted() {
    let broker = TestBroker::start().await;
    let mut subs = Vec::new();
    for granted in 0..=2u8 {
        let mut sub = Client::new(&broker, &format!("sub{granted}")).await;
        sub.subscribe(1, &[("lower/t", granted)]).await;
        subs.push(sub);
    }
    let mut publisher = publisher(&broker).await;
    for published in 0..=2u8 {
        publisher
            .publish(&Publish::new("lower/t", published, &[published]).pkid(9))
            .await;
        for (granted, sub) in subs.iter_mut().enumerate() {
            let got = sub.expect_message("lower/t", &[published]).await;
            assert_eq!(got.qos, published.min(granted as u8), "{got:?}");
            sub.complete(&got).await;
        }
    }
}

/// MQTT-3.8.4-3: subscribing again to an identical filter replaces the subscription:
/// its new QoS applies and messages still arrive once.
/// MQTT-3.8.4-4: with Retain Handling 0 the replacement re-sends the retained message,
/// and the flow of publications is not interrupted: every message published around the
/// replacement arrives.
#[tokio::test]
async fn resubscribing_replaces_the_subscription() {
    let broker = TestBroker::start().await;
    let mut publisher = publisher(&broker).await;
    publisher
        .publish(&Publish::new("re/t", 1, b"retained").retain())
        .await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("re/t", 0)]).await;
    let first = sub.expect_message("re/t", b"retained").await;
    assert_eq!(first.qos, 0);
    let mut burst = Vec::new();
    for i in 0..20u8 {
        burst.extend(Publish::new("re/t", 0, &[i]).bytes());
    }
    publisher.send(&burst).await;
    sub.send(&subscribe(2, &Props::new(), &[("re/t", 1)])).await;
    publisher.send(&burst).await;
    let mut live = Vec::new();
    let (mut subacks, mut retained) = (0, 0);
    while live.len() < 40 || subacks == 0 || retained == 0 {
        match sub.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!((ack.pkid, &ack.codes[..]), (2, &[1u8][..]));
                subacks += 1;
            }
            Some(Packet::Publish(p)) if p.payload == b"retained" => {
                assert!(subacks == 1 && p.retain && p.qos == 1, "{p:?}");
                retained += 1;
            }
            Some(Packet::Publish(p)) => live.push(p.payload[0]),
            other => panic!("expected SUBACK or PUBLISH, got {other:?}"),
        }
    }
    assert_eq!((subacks, retained), (1, 1));
    let expected: Vec<u8> = (0..20).chain(0..20).collect();
    assert_eq!(live, expected);
    publisher.publish(&Publish::new("re/t", 1, b"after")).await;
    let after = sub.expect_message("re/t", b"after").await;
    assert_eq!(after.qos, 1);
    sub.complete(&after).await;
    sub.expect_nothing(QUIET).await;
}

// ---- subscription options ----

/// MQTT-3.3.1-9: Retain Handling 0 sends the retained messages on every subscribe,
/// also on resubscribing.
/// MQTT-3.3.1-10: Retain Handling 1 sends them only when the subscription is new.
/// MQTT-3.3.1-11: Retain Handling 2 never sends them.
#[tokio::test]
async fn retain_handling_0_1_2() {
    let broker = TestBroker::start().await;
    let mut publisher = publisher(&broker).await;
    publisher
        .publish(&Publish::new("rh/t", 0, b"kept").retain())
        .await;
    publisher
        .publish(&Publish::new("rh/marker", 0, b"m").retain())
        .await;
    for (options, expected) in [
        (0u8, [true, true]),
        (RETAIN_HANDLING_NEW, [true, false]),
        (RETAIN_HANDLING_NEVER, [false, false]),
    ] {
        let mut sub = Client::new(&broker, "rh").await;
        for sends in expected {
            sub.send(&subscribe(1, &Props::new(), &[("rh/t", options)]))
                .await;
            sub.send(&subscribe(2, &Props::new(), &[("rh/marker", 0)]))
                .await;
            let (mut subacks, mut kept) = (0, 0);
            loop {
                match sub.recv().await {
                    Some(Packet::SubAck(_)) => subacks += 1,
                    Some(Packet::Publish(p)) if p.topic == "rh/t" => kept += 1,
                    Some(Packet::Publish(p)) if p.topic == "rh/marker" => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(
                (subacks, kept),
                (2, usize::from(sends)),
                "options {options:#x}"
            );
        }
        sub.disconnect().await;
    }
}

/// MQTT-3.3.1-12: with Retain As Published 0 a message forwarded to an established
/// subscription has RETAIN 0, even if published with RETAIN 1.
/// MQTT-3.3.1-13: with Retain As Published 1 it keeps the RETAIN flag it was published
/// with (1 or 0).
#[tokio::test]
async fn retain_as_published() {
    let broker = TestBroker::start().await;
    let mut plain = Client::new(&broker, "plain").await;
    plain.subscribe(1, &[("rap/t", 0)]).await;
    let mut rap = Client::new(&broker, "rap").await;
    rap.subscribe(1, &[("rap/t", RETAIN_AS_PUBLISHED)]).await;
    let mut publisher = publisher(&broker).await;
    publisher
        .publish(&Publish::new("rap/t", 0, b"r").retain())
        .await;
    publisher.publish(&Publish::new("rap/t", 0, b"n")).await;
    assert!(!plain.expect_message("rap/t", b"r").await.retain);
    assert!(!plain.expect_message("rap/t", b"n").await.retain);
    assert!(rap.expect_message("rap/t", b"r").await.retain);
    assert!(!rap.expect_message("rap/t", b"n").await.retain);
}

/// MQTT-3.8.3-3: with No Local 1 the broker does not forward a client's own messages
/// to it, while others' still arrive; with No Local 0 its own messages arrive.
#[tokio::test]
async fn no_local_skips_the_publishers_own_messages() {
    let broker = TestBroker::start().await;
    let mut local = Client::new(&broker, "local").await;
    local.subscribe(1, &[("nl/t", 1 | NO_LOCAL)]).await;
    let mut echo = Client::new(&broker, "echo").await;
    echo.subscribe(1, &[("nl/t", 1)]).await;
    local.publish(&Publish::new("nl/t", 0, b"own")).await;
    echo.publish(&Publish::new("nl/t", 0, b"echo")).await;
    echo.expect_message("nl/t", b"own").await;
    echo.expect_message("nl/t", b"echo").await;
    let got = local.expect_publish().await;
    assert_eq!(got.payload, b"echo", "{got:?}");
    local.expect_nothing(QUIET).await;
}

/// MQTT-3.8.3-4: No Local on a shared subscription is a protocol error: DISCONNECT 0x82
/// and the close.
#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "nls").await;
    client
        .send(&subscribe(
            1,
            &Props::new(),
            &[("$share/g/nls/t", NO_LOCAL)],
        ))
        .await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}

/// MQTT-3.8.3-5: reserved bits 6-7 of the subscription options make the SUBSCRIBE
/// malformed (DISCONNECT 0x81), as does QoS 3; Retain Handling 3 is a protocol error
/// (0x82). The connection is closed each time.
#[tokio::test]
async fn reserved_subscription_option_bits_are_malformed() {
    let broker = TestBroker::start().await;
    for (options, code) in [
        (0x40u8, MALFORMED_PACKET),
        (0x80, MALFORMED_PACKET),
        (0xc1, MALFORMED_PACKET),
        (0x03, MALFORMED_PACKET),
        (0x30, PROTOCOL_ERROR),
    ] {
        let mut client = Client::new(&broker, "opts").await;
        client
            .send(&subscribe(1, &Props::new(), &[("opts/t", options)]))
            .await;
        let got = match client.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("options {options:#04x}: expected DISCONNECT, got {other:?}"),
        };
        assert_eq!(got.reason, code, "options {options:#04x}: {got:?}");
        client.expect_closed().await;
    }
}

// ---- subscription identifiers ----

/// MQTT-3.3.4-2: a message matching several of a client's subscriptions is delivered at
/// the highest QoS among them.
/// MQTT-3.3.4-3: the PUBLISH carries the Subscription Identifiers of the matching
/// subscriptions that have one,
/// MQTT-3.3.4-4: all of them in the one copy sent; a subscription without an
/// identifier adds none, and retained messages sent on subscribe carry the new one.
#[tokio::test]
async fn overlapping_subscriptions_send_one_copy_with_every_identifier() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "ids").await;
    assert_eq!(sub.subscribe_id(1, 1, "sid/+", 1).await, 1);
    assert_eq!(sub.subscribe_id(2, 2, "sid/#", 2).await, 2);
    assert_eq!(sub.subscribe(3, &[("sid/b", 0)]).await, vec![0]);
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("sid/b", 2, b"b")).await;
    publisher.publish(&Publish::new("sid/c", 1, b"c")).await;
    publisher.publish(&Publish::new("sid/c/d", 2, b"d")).await;
    publisher
        .publish(&Publish::new("sid/r", 0, b"r").retain())
        .await;

    let b = sub.expect_message("sid/b", b"b").await;
    assert_eq!(b.qos, 2);
    let mut ids = b.props.subscription_ids();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    let c = sub.expect_message("sid/c", b"c").await;
    assert_eq!(c.qos, 1);
    let mut ids = c.props.subscription_ids();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    let d = sub.expect_message("sid/c/d", b"d").await;
    assert_eq!(d.props.subscription_ids(), vec![2]);
    let r = sub.expect_message("sid/r", b"r").await;
    assert_eq!(r.qos, 0);
    sub.expect_nothing(QUIET).await;

    assert_eq!(sub.subscribe_id(4, 7, "sid/r", 0).await, 0);
    let retained = sub.expect_message("sid/r", b"r").await;
    assert!(retained.retain);
    assert_eq!(retained.props.subscription_ids(), vec![7]);
}

/// MQTT-3.3.4-5: where a message reaches a client as separate copies — through a shared
/// subscription and a non-shared one — each copy carries only the identifier of its own
/// subscription.
#[tokio::test]
async fn separate_copies_carry_their_own_identifier() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "copies").await;
    assert_eq!(sub.subscribe_id(1, 10, "copy/t", 1).await, 1);
    assert_eq!(sub.subscribe_id(2, 20, "$share/g/copy/t", 1).await, 1);
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("copy/t", 1, b"x")).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let got = sub.expect_message("copy/t", b"x").await;
        ids.push(got.props.subscription_ids());
        sub.complete(&got).await;
    }
    ids.sort();
    assert_eq!(ids, vec![vec![10], vec![20]]);
}

/// MQTT-4.13.1-1: a Subscription Identifier of 0 in SUBSCRIBE is a protocol error:
/// DISCONNECT 0x82 and the close.
#[tokio::test]
async fn subscription_identifier_0_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "sid0").await;
    let props = Props::new().varint(SUBSCRIPTION_IDENTIFIER, 0);
    client.send(&subscribe(1, &props, &[("sid0/t", 0)])).await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}

// ---- unsubscribing ----

/// MQTT-3.10.4-1: UNSUBSCRIBE filters are compared character by character with the
/// session's: only an identical filter is removed ("a/+" does not remove "a/b").
/// MQTT-3.10.4-2: once removed, a subscription gets no new messages.
/// MQTT-3.10.4-6: an UNSUBSCRIBE with several filters is handled as one each and
/// answered by one UNSUBACK.
/// MQTT-3.11.3-1: its reason codes follow the order of the filters,
/// MQTT-3.11.3-2: and are defined Unsubscribe Reason Codes: 0x00 removed, 0x11 none
/// existed, 0x8F invalid filter.
/// MQTT-3.10.4-5: an UNSUBSCRIBE that removes nothing still gets its UNSUBACK.
#[tokio::test]
async fn unsubscribe_removes_only_identical_filters() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "unsub").await;
    sub.subscribe(1, &[("un/a", 0), ("un/+", 0), ("un/#", 0)])
        .await;
    let codes = sub
        .unsubscribe(2, &["un/A", "un/+", "un/a/", "un/#/x", "un/#", "un/+"])
        .await;
    assert_eq!(
        codes,
        vec![
            NO_SUBSCRIPTION_EXISTED,
            SUCCESS,
            NO_SUBSCRIPTION_EXISTED,
            TOPIC_FILTER_INVALID,
            SUCCESS,
            NO_SUBSCRIPTION_EXISTED
        ]
    );
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("un/a", 0, b"a")).await;
    publisher.publish(&Publish::new("un/b", 0, b"b")).await;
    sub.expect_message("un/a", b"a").await;
    sub.expect_nothing(QUIET).await;
    assert_eq!(sub.unsubscribe(3, &["un/a"]).await, vec![SUCCESS]);
    assert_eq!(
        sub.unsubscribe(4, &["un/a"]).await,
        vec![NO_SUBSCRIPTION_EXISTED]
    );
    publisher.publish(&Publish::new("un/a", 0, b"a")).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-3.10.4-3: QoS 1 and QoS 2 deliveries already started when their subscription is
/// removed are completed: PUBREL follows PUBREC, and an unacknowledged PUBLISH is
/// resent on the next connection.
#[tokio::test]
async fn unsubscribe_completes_deliveries_already_started() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("started", 60)).await;
    sub.subscribe(1, &[("st/#", 2)]).await;
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("st/1", 1, b"one")).await;
    publisher.publish(&Publish::new("st/2", 2, b"two")).await;
    let one = sub.expect_message("st/1", b"one").await;
    let two = sub.expect_message("st/2", b"two").await;
    assert_eq!(sub.unsubscribe(2, &["st/#"]).await, vec![SUCCESS]);
    let pkid = two.pkid.unwrap();
    sub.send(&ack(PUBREC, pkid)).await;
    sub.expect_ack(PUBREL, pkid).await;
    sub.send(&ack(PUBCOMP, pkid)).await;
    sub.drop_connection().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("started", 60)).await;
    let again = sub.expect_message("st/1", b"one").await;
    assert_eq!(again.pkid, one.pkid);
    sub.complete(&again).await;
    publisher.publish(&Publish::new("st/1", 1, b"after")).await;
    sub.expect_nothing(QUIET).await;
}

// ---- topic filters and matching ----

/// MQTT-4.7.1-1: '#' is accepted alone or as a whole last level, and refused (SUBACK
/// 0x8F) anywhere else; it matches the parent level and every level below.
/// MQTT-4.7.0-1: wildcards are accepted in filters.
#[tokio::test]
async fn multi_level_wildcard_rules() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "hash").await;
    let codes = client
        .subscribe(
            1,
            &[
                ("#", 0),
                ("h/#", 0),
                ("h/#/x", 0),
                ("h#", 0),
                ("h/x#", 0),
                ("#/h", 0),
                ("h/##", 0),
            ],
        )
        .await;
    let bad = TOPIC_FILTER_INVALID;
    assert_eq!(codes, vec![0, 0, bad, bad, bad, bad, bad]);
    let topics = ["h", "h/", "h/a", "h/a/b", "hh", "x/h"];
    assert_eq!(
        topics_received(&broker, "h/#", &topics).await,
        vec!["h", "h/", "h/a", "h/a/b"]
    );
}

/// MQTT-4.7.1-2: '+' is accepted only as a whole level, anywhere in a filter, and
/// refused (0x8F) otherwise; it matches exactly one level, empty ones included.
#[tokio::test]
async fn single_level_wildcard_rules() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "plus").await;
    let codes = client
        .subscribe(
            1,
            &[
                ("+", 0),
                ("+/+", 0),
                ("p/+/x", 0),
                ("+/#", 0),
                ("p+", 0),
                ("p/+x", 0),
                ("p/x+/y", 0),
            ],
        )
        .await;
    let bad = TOPIC_FILTER_INVALID;
    assert_eq!(codes, vec![0, 0, 0, 0, bad, bad, bad]);
    let topics = ["p/a/x", "p//x", "p/a/b/x", "p/x", "p/a/x/y"];
    assert_eq!(
        topics_received(&broker, "p/+/x", &topics).await,
        vec!["p/a/x", "p//x"]
    );
}

/// MQTT-4.7.2-1: filters starting with '#' or '+' do not match topic names starting
/// with '$'; a filter naming the '$' level does.
#[tokio::test]
async fn wildcards_do_not_match_dollar_topics() {
    let broker = TestBroker::start().await;
    let topics = ["$SYS/x", "$d", "$/a", "a$"];
    assert_eq!(topics_received(&broker, "#", &topics).await, vec!["a$"]);
    assert_eq!(
        topics_received(&broker, "+/x", &topics).await,
        Vec::<String>::new()
    );
    assert_eq!(
        topics_received(&broker, "$SYS/#", &topics).await,
        vec!["$SYS/x"]
    );
    assert_eq!(topics_received(&broker, "$d", &topics).await, vec!["$d"]);
}

/// MQTT-4.7.3-1: an empty topic filter is refused (SUBACK 0x8F, UNSUBACK 0x8F), and a
/// PUBLISH with an empty topic name and no alias is a protocol error (DISCONNECT 0x82).
#[tokio::test]
async fn topic_names_and_filters_are_not_empty() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "empty").await;
    assert_eq!(
        client.subscribe(1, &[("", 0)]).await,
        vec![TOPIC_FILTER_INVALID]
    );
    assert_eq!(
        client.unsubscribe(2, &[""]).await,
        vec![TOPIC_FILTER_INVALID]
    );
    client.send(&Publish::new("", 0, b"x").bytes()).await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}

/// MQTT-4.7.3-3: topic names and filters of 65535 bytes — the most a string can hold —
/// work: subscribed, published, delivered whole.
#[tokio::test]
async fn topics_of_the_maximum_length_work() {
    let broker = TestBroker::start().await;
    let topic = format!("long/{}", "l".repeat(65535 - 5));
    assert_eq!(topic.len(), 65535);
    let mut sub = Client::new(&broker, "long").await;
    assert_eq!(sub.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new(&topic, 1, b"long")).await;
    sub.expect_message(&topic, b"long").await;
}

/// MQTT-4.7.3-4: matching compares topics as they are: no case folding, no Unicode
/// normalisation, no trimming, and "a/" is not "a".
#[tokio::test]
async fn matching_applies_no_normalisation() {
    let broker = TestBroker::start().await;
    let composed = "norm/\u{e9}";
    let decomposed = "norm/e\u{301}";
    let topics = [
        composed,
        decomposed,
        "norm/E\u{301}",
        "norm/ \u{e9}",
        "norm/\u{e9}/",
    ];
    assert_eq!(
        topics_received(&broker, composed, &topics).await,
        vec![composed]
    );
    assert_eq!(
        topics_received(&broker, decomposed, &topics).await,
        vec![decomposed]
    );
    assert_eq!(
        topics_received(&broker, "NORM/#", &topics).await,
        Vec::<String>::new()
    );
}

// ---- shared subscriptions ----

/// MQTT-4.8.2-3: a shared subscription delivers each message to one member of the group,
/// at the QoS granted to that member (0 to one, 2 to the other); Herald takes turns, so
/// each of the two gets three of six. A retained message is not sent to a new shared
/// subscription.
/// MQTT-4.8.2-1: a shared filter is "$share/", a non-empty ShareName, '/', a filter;
/// MQTT-4.8.2-2: here "$share/grp/sh/#", the ShareName without '/', '+', '#'.
#[tokio::test]
async fn shared_subscription_delivers_each_message_to_one_member() {
    let broker = TestBroker::start().await;
    let mut publisher = publisher(&broker).await;
    publisher
        .publish(&Publish::new("sh/retained", 0, b"r").retain())
        .await;
    let mut a = Client::new(&broker, "a").await;
    assert_eq!(a.subscribe(1, &[("$share/grp/sh/#", 0)]).await, vec![0]);
    let mut b = Client::new(&broker, "b").await;
    assert_eq!(b.subscribe(1, &[("$share/grp/sh/#", 2)]).await, vec![2]);
    for i in 0..6u8 {
        publisher
            .publish(&Publish::new("sh/t", 2, &[i]).pkid(u16::from(i) + 1))
            .await;
    }
    let mut seen = Vec::new();
    for (client, qos) in [(&mut a, 0u8), (&mut b, 2)] {
        let mut count = 0;
        while let Some(packet) = client.recv_within(QUIET).await {
            let Packet::Publish(p) = packet else {
                panic!("expected PUBLISH, got {packet:?}")
            };
            assert_eq!((p.topic.as_str(), p.qos), ("sh/t", qos), "{p:?}");
            seen.push(p.payload[0]);
            count += 1;
        }
        assert_eq!(count, 3, "QoS {qos} member");
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..6).collect::<Vec<u8>>(),
        "each message exactly once"
    );
}

/// MQTT-4.8.2-1: a shared filter without a ShareName ("$share//x"), or without a filter
/// after it ("$share/g", "$share/g/"), is refused with 0x8F.
/// MQTT-4.8.2-2: so is a ShareName holding '+' or '#'.
#[tokio::test]
async fn invalid_share_names_are_refused() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "share").await;
    let filters = [
        "$share//x",
        "$share/g",
        "$share/g/",
        "$share/",
        "$share/a+/x",
        "$share/+/x",
        "$share/a#/x",
        "$share/#",
        "$share/g/x",
    ];
    let options: Vec<(&str, u8)> = filters.iter().map(|f| (*f, 0)).collect();
    let codes = client.subscribe(1, &options).await;
    let bad = TOPIC_FILTER_INVALID;
    assert_eq!(codes, vec![bad, bad, bad, bad, bad, bad, bad, bad, 0]);
}

/// MQTT-4.8.2-4: a QoS 2 message being delivered to a member whose connection breaks is
/// completed with that member when it reconnects (same packet id, DUP 1), and not given
/// to another member meanwhile: the other member's first message is a later one.
#[tokio::test]
async fn interrupted_shared_qos2_delivery_completes_on_reconnect() {
    let broker = TestBroker::start().await;
    let (mut a, _) = Client::connect(&broker, &Connect::resume("a", 60)).await;
    a.subscribe(1, &[("$share/g/s2/t", 2)]).await;
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("s2/t", 2, b"first")).await;
    let first = a.expect_message("s2/t", b"first").await;
    a.drop_connection().await;
    let mut b = Client::new(&broker, "b").await;
    b.subscribe(1, &[("$share/g/s2/t", 2)]).await;
    publisher
        .publish(&Publish::new("s2/t", 2, b"second").pkid(2))
        .await;
    let got = b.expect_publish().await;
    assert_eq!(got.payload, b"second", "{got:?}");
    b.complete(&got).await;

    let (mut a, _) = Client::connect(&broker, &Connect::resume("a", 60)).await;
    let again = a.expect_message("s2/t", b"first").await;
    assert_eq!(again.pkid, first.pkid);
    assert!(again.dup);
    a.complete(&again).await;
    b.expect_nothing(QUIET).await;
}

/// MQTT-4.8.2-5: if the session of the member a QoS 2 message was being delivered to
/// ends before it reconnects, the message goes to no other member.
#[tokio::test]
async fn shared_qos2_message_of_an_ended_session_goes_to_no_other_member() {
    let broker = TestBroker::start().await;
    let (mut a, _) = Client::connect(&broker, &Connect::resume("a", 1)).await;
    a.subscribe(1, &[("$share/g/s5/t", 2)]).await;
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("s5/t", 2, b"first")).await;
    a.expect_message("s5/t", b"first").await;
    let mut b = Client::new(&broker, "b").await;
    b.subscribe(1, &[("$share/g/s5/t", 2)]).await;
    a.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    publisher
        .publish(&Publish::new("s5/t", 2, b"second").pkid(2))
        .await;
    let got = b.expect_publish().await;
    assert_eq!(got.payload, b"second", "{got:?}");
    b.complete(&got).await;
    b.expect_nothing(QUIET).await;
}

/// MQTT-4.8.2-6: a member answering a shared delivery with an error PUBACK or PUBREC
/// ends it: the message is discarded, not sent to another member — not even when that
/// member's session then ends.
#[tokio::test]
async fn error_ack_on_a_shared_delivery_discards_the_message() {
    let broker = TestBroker::start().await;
    let (mut a, _) = Client::connect(&broker, &Connect::resume("a", 0)).await;
    a.subscribe(1, &[("$share/g/s6/t", 2)]).await;
    let mut publisher = publisher(&broker).await;
    publisher.publish(&Publish::new("s6/t", 1, b"one")).await;
    publisher
        .publish(&Publish::new("s6/t", 2, b"two").pkid(2))
        .await;
    let one = a.expect_message("s6/t", b"one").await;
    a.send(&ack_with(PUBACK, one.pkid.unwrap(), 0x80, &Props::new()))
        .await;
    let two = a.expect_message("s6/t", b"two").await;
    a.send(&ack_with(PUBREC, two.pkid.unwrap(), 0x80, &Props::new()))
        .await;
    a.ping().await;
    let mut b = Client::new(&broker, "b").await;
    b.subscribe(1, &[("$share/g/s6/t", 2)]).await;
    a.drop_connection().await;
    publisher.publish(&Publish::new("s6/t", 0, b"marker")).await;
    let got = b.expect_publish().await;
    assert_eq!(got.payload, b"marker", "{got:?}");
}
