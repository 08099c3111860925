//! How messages travel on a connection: topic aliases both ways, and the limits an
//! MQTT 5.0 client sets on what it is sent (Maximum Packet Size, Receive Maximum).

use std::collections::HashMap;

use crate::common::TestBroker;
use crate::v5::{self, id, Client, Connect, Packet, Props, Publish};
use crate::QUIET;

/// MQTT 5.0 §3.3.2.3.4: a client may set a topic alias (1..=Topic Alias Maximum) with a
/// PUBLISH naming the topic, publish later with an empty topic and the alias, and map
/// the alias to another topic; subscribers see the full topics.
#[tokio::test]
async fn inbound_topic_alias_names_the_topic() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::simple(broker.addr, "alias-sub").await;
    subscriber.subscribe(1, "alias/#", 1).await;
    let (mut publisher, ack) = Client::connect(broker.addr, Connect::new("alias-pub")).await;
    let max = ack
        .props
        .two_of(id::TOPIC_ALIAS_MAXIMUM)
        .expect("Topic Alias Maximum");
    let alias = |n| Props::new().two(id::TOPIC_ALIAS, n);
    publisher
        .publish("alias/t", 1, 1, &alias(max), b"one")
        .await;
    publisher.publish("", 1, 2, &alias(max), b"two").await;
    publisher
        .publish("alias/u", 1, 3, &alias(max), b"three")
        .await;
    publisher.publish("", 0, 0, &alias(max), b"four").await;
    publisher.publish("alias/v", 1, 4, &alias(1), b"five").await;
    publisher.publish("", 1, 5, &alias(max), b"six").await;
    for (topic, payload) in [
        ("alias/t", &b"one"[..]),
        ("alias/t", b"two"),
        ("alias/u", b"three"),
        ("alias/u", b"four"),
        ("alias/v", b"five"),
        ("alias/u", b"six"),
    ] {
        let got = subscriber.expect_message(topic, payload).await;
        assert!(got.props.get(id::TOPIC_ALIAS).is_none(), "{got:?}");
    }
    broker.stop().await;
}

/// Resolves the topic of each PUBLISH received as a client would, checking aliases stay
/// within `max`; returns (topic as sent, alias, resolved topic).
fn resolve(
    aliases: &mut HashMap<u16, String>,
    p: &Publish,
    max: u16,
) -> (String, Option<u16>, String) {
    let alias = p.props.two_of(id::TOPIC_ALIAS);
    let resolved = match alias {
        Some(n) => {
            assert!((1..=max).contains(&n), "alias {n} above {max}: {p:?}");
            if !p.topic.is_empty() {
                aliases.insert(n, p.topic.clone());
            }
            aliases.get(&n).cloned().expect("alias set before use")
        }
        None => {
            assert!(!p.topic.is_empty(), "empty topic without alias: {p:?}");
            p.topic.clone()
        }
    };
    (p.topic.clone(), alias, resolved)
}

/// MQTT 5.0 §3.3.2.3.4 and §3.1.2.11.5: towards a client whose CONNECT allowed N topic
/// aliases, the server names the first N topics it sends with aliases 1..=N and then
/// sends an empty topic with the alias for them; other topics go out in full.
#[tokio::test]
async fn outbound_topic_aliases_within_the_clients_maximum() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("alias-out").props(Props::new().two(id::TOPIC_ALIAS_MAXIMUM, 2));
    let mut subscriber = Client::connected(broker.addr, connect).await;
    subscriber.subscribe(1, "out/#", 0).await;
    let mut publisher = Client::simple(broker.addr, "alias-out-pub").await;
    let topics = ["out/first", "out/second", "out/third"];
    let mut aliases = HashMap::new();
    let mut seen = Vec::new();
    for round in 0..2 {
        for topic in topics {
            let payload = format!("{topic} {round}");
            publisher
                .publish(topic, 0, 0, &Props::new(), payload.as_bytes())
                .await;
            let got = subscriber.expect_publish().await;
            assert_eq!(got.payload, payload.as_bytes());
            let (sent, alias, resolved) = resolve(&mut aliases, &got, 2);
            assert_eq!(resolved, topic);
            seen.push((sent, alias));
        }
    }
    let s = |t: &str| t.to_string();
    assert_eq!(
        seen,
        [
            (s("out/first"), Some(1)),
            (s("out/second"), Some(2)),
            (s("out/third"), None),
            (s(""), Some(1)),
            (s(""), Some(2)),
            (s("out/third"), None),
        ]
    );
    broker.stop().await;
}

/// The server uses at most max_topic_alias aliases towards a client, whatever the
/// client allows, and none towards a client that allowed none (MQTT 5.0 §3.1.2.11.5:
/// absent Topic Alias Maximum means 0 [MQTT-3.1.2-27]).
#[tokio::test]
async fn outbound_topic_aliases_are_capped_by_the_server_and_off_by_default() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_topic_alias = 1).await;
    let connect = Connect::new("alias-many").props(Props::new().two(id::TOPIC_ALIAS_MAXIMUM, 50));
    let mut many = Client::connected(broker.addr, connect).await;
    many.subscribe(1, "cap/#", 0).await;
    let mut none = Client::simple(broker.addr, "alias-none").await;
    none.subscribe(1, "cap/#", 0).await;
    let mut publisher = Client::simple(broker.addr, "alias-cap-pub").await;
    let mut aliases = HashMap::new();
    for round in 0..2 {
        for topic in ["cap/a", "cap/b", "cap/c"] {
            publisher.publish(topic, 0, 0, &Props::new(), b"m").await;
            let got = many.expect_publish().await;
            let (_, alias, resolved) = resolve(&mut aliases, &got, 1);
            assert_eq!(resolved, topic, "round {round}");
            assert_eq!(alias.is_some(), topic == "cap/a", "{got:?}");
            let plain = none.expect_publish().await;
            assert_eq!(plain.topic, topic);
            assert!(plain.props.get(id::TOPIC_ALIAS).is_none(), "{plain:?}");
        }
    }
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a message that would make a PUBLISH larger
/// than the client's Maximum Packet Size is not sent to that client — and at QoS 1 it
/// does not stay in flight (the client's Receive Maximum 1 is not used up by it) —
/// while other subscribers get it.
#[tokio::test]
async fn message_above_the_clients_maximum_packet_size_is_dropped_for_that_client() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("small").props(
        Props::new()
            .four(id::MAXIMUM_PACKET_SIZE, 100)
            .two(id::RECEIVE_MAXIMUM, 1),
    );
    let mut small = Client::connected(broker.addr, connect).await;
    small.subscribe(1, "size/#", 1).await;
    let mut large = Client::simple(broker.addr, "large").await;
    large.subscribe(1, "size/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "size-pub").await;
    let big = vec![b'B'; 200];
    publisher
        .publish("size/big", 1, 1, &Props::new(), &big)
        .await;
    publisher
        .publish("size/small", 1, 2, &Props::new(), b"s1")
        .await;
    publisher
        .publish("size/small", 1, 3, &Props::new(), b"s2")
        .await;

    large.expect_message("size/big", &big).await;
    large.expect_message("size/small", b"s1").await;
    large.expect_message("size/small", b"s2").await;
    let frame = small.recv_frame().await.expect("a PUBLISH");
    assert!(frame.len() <= 100);
    match v5::decode(&frame).unwrap() {
        Packet::Publish(p) => {
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                ("size/small", &b"s1"[..])
            );
            small.complete(&p).await;
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    small.expect_message("size/small", b"s2").await;
    small.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-9] and §4.9: the server keeps at most the client's
/// Receive Maximum QoS 1/2 PUBLISHes unacknowledged towards it; the rest follow as
/// acknowledgements arrive, in order.
#[tokio::test]
async fn the_clients_receive_maximum_limits_unacknowledged_messages() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("slow").props(Props::new().two(id::RECEIVE_MAXIMUM, 2));
    let mut slow = Client::connected(broker.addr, connect).await;
    slow.subscribe(1, "flow/#", 2).await;
    let mut publisher = Client::simple(broker.addr, "flow-pub").await;
    for i in 1..=5u16 {
        let qos = if i % 2 == 0 { 2 } else { 1 };
        publisher
            .publish("flow/t", qos, i, &Props::new(), &[i as u8])
            .await;
    }
    let first = slow.expect_publish().await;
    let second = slow.expect_publish().await;
    assert_eq!((first.payload[0], second.payload[0]), (1, 2));
    slow.expect_nothing(QUIET).await;
    // PUBACK for the first frees a place.
    slow.complete(&first).await;
    let third = slow.expect_publish().await;
    assert_eq!(third.payload[0], 3);
    slow.expect_nothing(QUIET).await;
    // A QoS 2 message holds its place until PUBCOMP, not PUBREC.
    slow.send(&v5::pubrec(second.pkid)).await;
    match slow.expect().await {
        Packet::PubRel(rel) => assert_eq!(rel.pkid, second.pkid),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    slow.expect_nothing(QUIET).await;
    slow.send(&v5::pubcomp(second.pkid)).await;
    let fourth = slow.expect_publish().await;
    assert_eq!(fourth.payload[0], 4);
    // The fourth's exchange completes while the third waits: that frees a place.
    slow.complete(&fourth).await;
    let fifth = slow.expect_publish().await;
    assert_eq!(fifth.payload[0], 5);
    slow.complete(&third).await;
    slow.complete(&fifth).await;
    slow.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.9: the window towards a client is the smaller of its Receive Maximum and
/// the server's max_inflight_messages.
#[tokio::test]
async fn the_servers_inflight_limit_caps_a_larger_receive_maximum() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 2).await;
    let connect = Connect::new("wide").props(Props::new().two(id::RECEIVE_MAXIMUM, 100));
    let mut wide = Client::connected(broker.addr, connect).await;
    wide.subscribe(1, "cap/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "cap-pub").await;
    for i in 1..=4u16 {
        publisher
            .publish("cap/t", 1, i, &Props::new(), &[i as u8])
            .await;
    }
    let first = wide.expect_publish().await;
    let _second = wide.expect_publish().await;
    wide.expect_nothing(QUIET).await;
    wide.complete(&first).await;
    assert_eq!(wide.expect_publish().await.payload, [3]);
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4: topic aliases towards a client are set up afresh on each
/// connection: after reconnecting to its session, a topic the server had aliased is
/// sent in full again before its alias is used.
#[tokio::test]
async fn outbound_topic_aliases_start_afresh_on_a_new_connection() {
    let broker = TestBroker::start().await;
    let connect = || {
        Connect::new("alias-back").clean_start(false).props(
            Props::new()
                .four(id::SESSION_EXPIRY_INTERVAL, 30)
                .two(id::TOPIC_ALIAS_MAXIMUM, 5),
        )
    };
    let mut subscriber = Client::connected(broker.addr, connect()).await;
    subscriber.subscribe(1, "again/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "alias-back-pub").await;
    publisher
        .publish("again/t", 1, 1, &Props::new(), b"1")
        .await;
    publisher
        .publish("again/t", 1, 2, &Props::new(), b"2")
        .await;
    let first = subscriber.expect_message("again/t", b"1").await;
    assert_eq!(first.props.two_of(id::TOPIC_ALIAS), Some(1));
    let second = subscriber.expect_message("", b"2").await;
    assert_eq!(second.props.two_of(id::TOPIC_ALIAS), Some(1));
    subscriber.disconnect().await;

    // One message waits in the session, one comes live.
    publisher
        .publish("again/t", 1, 3, &Props::new(), b"3")
        .await;
    let (mut subscriber, ack) = Client::connect(broker.addr, connect()).await;
    assert!(ack.session_present);
    let mut aliases = HashMap::new();
    let third = subscriber.expect_publish().await;
    subscriber.complete(&third).await;
    assert_eq!(resolve(&mut aliases, &third, 5).2, "again/t", "{third:?}");
    publisher
        .publish("again/t", 1, 4, &Props::new(), b"4")
        .await;
    let fourth = subscriber.expect_publish().await;
    assert_eq!(resolve(&mut aliases, &fourth, 5).2, "again/t", "{fourth:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a retained message too large for the client's
/// Maximum Packet Size is left out when it subscribes, and takes no place in its
/// Receive Maximum: the retained messages that fit still arrive.
#[tokio::test]
async fn retained_message_above_the_clients_maximum_packet_size_is_left_out() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::simple(broker.addr, "ret-size-pub").await;
    publisher
        .publish_retain("rs/a", 1, 1, true, &Props::new(), &[b'A'; 300])
        .await;
    publisher
        .publish_retain("rs/b", 1, 2, true, &Props::new(), b"small")
        .await;
    let connect = Connect::new("ret-small").props(
        Props::new()
            .four(id::MAXIMUM_PACKET_SIZE, 100)
            .two(id::RECEIVE_MAXIMUM, 1),
    );
    let mut client = Client::connected(broker.addr, connect).await;
    client.subscribe(1, "rs/#", 1).await;
    let got = client.expect_message("rs/b", b"small").await;
    assert!(got.retain);
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-9] with §4.4: messages left unacknowledged on a lost
/// connection are sent again on resumption, but never more at once than the Receive
/// Maximum of the new connection; the rest follow as acknowledgements arrive.
#[tokio::test]
async fn resent_messages_respect_the_new_connections_receive_maximum() {
    let broker = TestBroker::start().await;
    let connect = |receive_maximum| {
        Connect::new("shrinking").clean_start(false).props(
            Props::new()
                .four(id::SESSION_EXPIRY_INTERVAL, 30)
                .two(id::RECEIVE_MAXIMUM, receive_maximum),
        )
    };
    let mut client = Client::connected(broker.addr, connect(5)).await;
    client.subscribe(1, "shrink/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "shrinking-pub").await;
    for i in 1..=5u16 {
        publisher
            .publish("shrink/t", 1, i, &Props::new(), &[i as u8])
            .await;
    }
    for i in 1..=5u8 {
        assert_eq!(client.expect_publish().await.payload, [i]);
    }
    client.close_write().await;
    client.expect_closed().await;

    let (mut back, ack) = Client::connect(broker.addr, connect(2)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    while let Some(packet) = back.recv_within(QUIET).await {
        match packet {
            Packet::Publish(p) => got.push(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(got.len(), 2, "Receive Maximum 2, got {got:?}");
    // Each acknowledgement lets one more through, in order, until all five are done.
    let mut payloads: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
    while let Some(p) = got.first().cloned() {
        got.remove(0);
        back.complete(&p).await;
        if let Some(Packet::Publish(next)) = back.recv_within(QUIET).await {
            payloads.push(next.payload[0]);
            got.push(next);
        }
    }
    assert_eq!(payloads, [1, 2, 3, 4, 5]);
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a message left in flight on a lost connection
/// that is too large for the Maximum Packet Size of the resuming connection is
/// discarded "as if it had completed sending": it does not hold the Receive Maximum,
/// and later messages flow.
#[tokio::test]
async fn a_resent_message_above_the_new_maximum_packet_size_is_discarded() {
    let broker = TestBroker::start().await;
    let connect = |max_packet_size| {
        Connect::new("narrowing").clean_start(false).props(
            Props::new()
                .four(id::SESSION_EXPIRY_INTERVAL, 30)
                .two(id::RECEIVE_MAXIMUM, 1)
                .four(id::MAXIMUM_PACKET_SIZE, max_packet_size),
        )
    };
    let mut client = Client::connected(broker.addr, connect(10_000)).await;
    client.subscribe(1, "narrow/#", 1).await;
    let mut publisher = Client::simple(broker.addr, "narrowing-pub").await;
    let big = vec![b'B'; 500];
    publisher
        .publish("narrow/big", 1, 1, &Props::new(), &big)
        .await;
    assert_eq!(client.expect_publish().await.payload, big);
    client.close_write().await;
    client.expect_closed().await;

    let (mut back, ack) = Client::connect(broker.addr, connect(100)).await;
    assert!(ack.session_present);
    publisher
        .publish("narrow/small", 1, 2, &Props::new(), b"s")
        .await;
    back.expect_message("narrow/small", b"s").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4: messages queued for an offline session that are too large for
/// the Maximum Packet Size the client resumes with are discarded; those that fit are
/// delivered.
#[tokio::test]
async fn queued_messages_above_the_new_maximum_packet_size_are_discarded() {
    let broker = TestBroker::start().await;
    let connect = |max_packet_size| {
        Connect::new("queued-narrow").clean_start(false).props(
            Props::new()
                .four(id::SESSION_EXPIRY_INTERVAL, 30)
                .two(id::RECEIVE_MAXIMUM, 1)
                .four(id::MAXIMUM_PACKET_SIZE, max_packet_size),
        )
    };
    let mut client = Client::connected(broker.addr, connect(10_000)).await;
    client.subscribe(1, "qn/#", 2).await;
    client.disconnect().await;
    let mut publisher = Client::simple(broker.addr, "queued-narrow-pub").await;
    publisher
        .publish("qn/big", 2, 1, &Props::new(), &[b'B'; 500])
        .await;
    publisher
        .publish("qn/small", 1, 2, &Props::new(), b"s")
        .await;
    let (mut back, ack) = Client::connect(broker.addr, connect(100)).await;
    assert!(ack.session_present);
    back.expect_message("qn/small", b"s").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}
