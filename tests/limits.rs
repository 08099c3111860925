//! Configured limits, and bad or greedy clients that must not harm anyone else.

mod common;

use std::time::Duration;

use common::{connect_packet, Encode, TestBroker};
use mqttbytes::v4;
use mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two clients connect to a broker that takes two; a third is closed at once; once one
/// leaves, a fourth connects.
async fn takes_two_connections(broker: TestBroker) {
    let first = broker.client("one", true).await;
    let _second = broker.client("two", true).await;
    let mut third = broker.raw().await;
    third.send_packet(connect_packet("three", true, 30)).await;
    third.expect_closed().await;
    // A freed slot can be used again.
    first.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.client("four", true).await;
    broker.stop().await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    takes_two_connections(TestBroker::start_with(|c| c.mqtt.max_connections.0 = 2).await).await;
}

#[tokio::test]
async fn a_listener_takes_no_more_than_its_own_max_connections() {
    let broker = TestBroker::start_with(|c| {
        c.listeners[0].max_connections = Some(herald::config::Connections(2));
    })
    .await;
    takes_two_connections(broker).await;
}

#[tokio::test]
async fn an_offline_queue_keeps_at_most_max_queued_messages() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 3).await;
    let mut sub = broker.client("queued", false).await;
    sub.subscribe(1, "q", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = broker.client("producer", true).await;
    for i in 0..5u8 {
        publisher
            .publish("q", QoS::AtLeastOnce, &[i], false, u16::from(i) + 1)
            .await;
    }
    let mut sub = broker.raw().await;
    assert!(sub.connect("queued", false).await.session_present);
    // The oldest three were kept; the newer ones were dropped when the queue was full.
    for i in 0..3u8 {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], &[i]);
        sub.send_packet(v4::PubAck::new(got.pkid)).await;
    }
    sub.expect_nothing(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_packet_over_max_packet_size_closes_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_packet_size.0 = 1024).await;
    let mut sub = broker.client("bystander", true).await;
    sub.subscribe(1, "big/#", QoS::AtMostOnce).await;
    let mut publisher = broker.client("big", true).await;
    publisher
        .publish("big/ok", QoS::AtMostOnce, &[0; 900], false, 0)
        .await;
    assert_eq!(sub.expect_publish().await.payload.len(), 900);
    // Only the fixed header of a 2000-byte PUBLISH: refused before the body arrives.
    publisher.send(&[0x30, 0xd0, 0x0f]).await;
    publisher.expect_closed().await;
    sub.expect_nothing(Duration::from_millis(200)).await;
    let mut other = broker.client("other", true).await;
    other
        .publish("big/after", QoS::AtMostOnce, b"still here", false, 0)
        .await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"still here");
    broker.stop().await;
}

#[tokio::test]
async fn malformed_input_of_every_kind_closes_only_that_connection() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("watcher", true).await;
    watcher.subscribe(1, "#", QoS::AtMostOnce).await;
    let cases: &[(&str, &[u8])] = &[
        (
            "remaining length of five bytes",
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        ("reserved flags on PUBACK", &[0x41, 0x02, 0x00, 0x01]),
        (
            "wildcard in a PUBLISH topic",
            &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'],
        ),
        (
            "invalid UTF-8 in a topic",
            &[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28],
        ),
        ("unknown packet type 0", &[0x00, 0x00]),
        ("packet type 15", &[0xf0, 0x00]),
        ("QoS 3 PUBLISH", &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
    ];
    for (what, bytes) in cases {
        let mut bad = broker.client(&format!("bad-{what}"), true).await;
        bad.send(bytes).await;
        bad.expect_closed().await;
        // Everyone else carries on.
        let mut good = broker.client("good", true).await;
        good.publish("alive", QoS::AtMostOnce, what.as_bytes(), false, 0)
            .await;
        let got = watcher.expect_publish().await;
        assert_eq!(&got.payload[..], what.as_bytes(), "after {what}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stall_publishers_or_others() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 100).await;
    // A raw socket that subscribes and then never reads again.
    let mut stuck = broker.client("stuck", true).await;
    stuck.subscribe(1, "flood", QoS::AtMostOnce).await;
    let mut healthy = broker.client("healthy", true).await;
    healthy.subscribe(1, "flood", QoS::AtMostOnce).await;

    let mut publisher = broker.client("flooder", true).await;
    let payload = vec![7u8; 16 * 1024];
    let flood = async {
        // 32 MB: far more than the stuck subscriber's socket buffers hold.
        for _ in 0..2000 {
            publisher
                .publish("flood", QoS::AtMostOnce, &payload, false, 0)
                .await;
        }
        // A QoS 1 round trip after the flood proves the publisher was never blocked.
        publisher
            .publish("flood", QoS::AtLeastOnce, b"", false, 1)
            .await;
    };
    let drain = async {
        let mut received = 0;
        while healthy
            .recv_within(Duration::from_millis(500))
            .await
            .is_some()
        {
            received += 1;
        }
        received
    };
    let (_, received) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(flood, drain)
    })
    .await
    .expect("the flood completes despite the stuck subscriber");
    assert!(
        received > 100,
        "the healthy subscriber kept receiving: {received}"
    );
    publisher
        .publish("flood", QoS::AtMostOnce, b"end", false, 0)
        .await;
    assert_eq!(&healthy.expect_publish().await.payload[..], b"end");
    drop(stuck);
    broker.stop().await;
}

#[tokio::test]
async fn half_a_packet_then_silence_is_cut_by_the_connect_timeout() {
    let broker = TestBroker::start_with(|c| c.mqtt.connect_timeout_secs.0 = 1).await;
    let mut slow = broker.raw().await;
    slow.send(&[0x10, 0x20, 0x00]).await;
    slow.expect_closed().await;
    let mut silent = broker.raw().await;
    silent.expect_closed().await;
    let mut stream = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    stream.shutdown().await.unwrap();
    broker.client("fine", true).await;
    broker.stop().await;
}

/// Slowloris: a client that sends its CONNECT one byte at a time, each in time to keep
/// an idle timer alive, is still dropped when the connect timeout is up, while another
/// client connects meanwhile.
#[tokio::test]
async fn a_connect_sent_one_byte_at_a_time_is_cut_by_the_connect_timeout() {
    let broker = TestBroker::start_with(|c| c.mqtt.connect_timeout_secs.0 = 1).await;
    let connect = connect_packet("slowloris", true, 30).to_bytes();
    let mut slow = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    for byte in &connect {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut probe = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
    }
    assert!(cut, "the slow CONNECT was not cut off");
    assert!(started.elapsed() < Duration::from_secs(4));
    broker.client("meanwhile", true).await;
    broker.stop().await;
}

#[tokio::test]
async fn an_offline_queue_keeps_at_most_max_queued_bytes() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_bytes = 250).await;
    let mut sub = broker.client("bytes", false).await;
    sub.subscribe(1, "q", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = broker.client("bytes-producer", true).await;
    for i in 0..4u8 {
        publisher
            .publish("q", QoS::AtLeastOnce, &[i; 100], false, u16::from(i) + 1)
            .await;
    }
    let mut sub = broker.raw().await;
    assert!(sub.connect("bytes", false).await.session_present);
    for i in 0..2u8 {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], &[i; 100]);
        sub.send_packet(v4::PubAck::new(got.pkid)).await;
    }
    sub.expect_nothing(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_are_refused_with_0x80() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions_per_client = 2).await;
    let mut client = broker.client("many-subs", true).await;
    let granted = v4::SubscribeReasonCode::Success(QoS::AtMostOnce);
    assert_eq!(client.subscribe(1, "a", QoS::AtMostOnce).await, [granted]);
    assert_eq!(client.subscribe(2, "b", QoS::AtMostOnce).await, [granted]);
    assert_eq!(
        client.subscribe(3, "c", QoS::AtMostOnce).await,
        [v4::SubscribeReasonCode::Failure]
    );
    // Replacing an existing subscription is not a new one.
    assert_eq!(client.subscribe(4, "a", QoS::AtMostOnce).await, [granted]);
    broker.stop().await;
}

#[tokio::test]
async fn a_new_client_id_beyond_max_sessions_gets_server_unavailable() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_sessions = 1).await;
    broker.client("kept", false).await.disconnect().await;
    let mut refused = broker.raw().await;
    let ack = refused.connect("newcomer", true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::ServiceUnavailable);
    refused.expect_closed().await;
    // The session that exists can still be resumed.
    let mut back = broker.raw().await;
    assert!(back.connect("kept", false).await.session_present);
    broker.stop().await;
}

#[tokio::test]
async fn retained_messages_beyond_the_limit_are_delivered_but_not_retained() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_retained_messages = 1).await;
    let mut watcher = broker.client("watcher", true).await;
    watcher.subscribe(1, "r/#", QoS::AtMostOnce).await;
    let mut publisher = broker.client("retainer", true).await;
    publisher
        .publish("r/1", QoS::AtMostOnce, b"one", true, 0)
        .await;
    publisher
        .publish("r/2", QoS::AtMostOnce, b"two", true, 0)
        .await;
    // Replacing the retained message of a known topic is still allowed.
    publisher
        .publish("r/1", QoS::AtMostOnce, b"uno", true, 0)
        .await;
    for want in [&b"one"[..], b"two", b"uno"] {
        assert_eq!(&watcher.expect_publish().await.payload[..], want);
    }
    let mut late = broker.client("late", true).await;
    late.subscribe(1, "r/#", QoS::AtMostOnce).await;
    let got = late.expect_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("r/1", &b"uno"[..]));
    late.expect_nothing(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn topics_deeper_than_max_topic_levels_are_refused_without_harm() {
    let broker = TestBroker::start().await;
    // 65535 empty levels: valid MQTT, and deep enough to overflow a recursive walk.
    let abyss = "/".repeat(65534);
    let mut client = broker.client("deep", true).await;
    let codes = client.subscribe(1, &abyss, QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Failure]);
    let at_limit = vec!["l"; 128].join("/");
    let codes = client.subscribe(2, &at_limit, QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Success(QoS::AtMostOnce)]);
    client
        .publish(&at_limit, QoS::AtMostOnce, b"deep", false, 0)
        .await;
    assert_eq!(&client.expect_publish().await.payload[..], b"deep");
    // Publishing to a deeper topic closes the connection.
    client
        .send_packet(v4::Publish::new(&abyss, QoS::AtMostOnce, "x"))
        .await;
    client.expect_closed().await;
    // So does a will on one: 3.1.1 has no return code for it.
    let mut connect = connect_packet("deep-will", true, 30);
    connect.last_will = Some(v4::LastWill::new(&abyss, "w", QoS::AtMostOnce, false));
    let mut with_will = broker.raw().await;
    with_will.send_packet(connect).await;
    with_will.expect_closed().await;
    // The broker is unharmed.
    broker.client("after", true).await;
    broker.stop().await;
}

#[tokio::test]
async fn topics_longer_than_max_topic_length_are_refused_without_harm() {
    let broker = TestBroker::start_with(|c| {
        c.mqtt.max_topic_length = herald::config::TopicLength(16);
    })
    .await;
    let (at_limit, over) = ("a/".repeat(7) + "bc", "a/".repeat(8) + "b");
    assert_eq!((at_limit.len(), over.len()), (16, 17));
    let mut client = broker.client("long", true).await;
    let codes = client.subscribe(1, &over, QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Failure]);
    let codes = client.subscribe(2, &at_limit, QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Success(QoS::AtMostOnce)]);
    client
        .publish(&at_limit, QoS::AtMostOnce, b"fits", false, 0)
        .await;
    assert_eq!(&client.expect_publish().await.payload[..], b"fits");
    client
        .send_packet(v4::Publish::new(&over, QoS::AtMostOnce, "x"))
        .await;
    client.expect_closed().await;
    broker.client("after", true).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_under_a_qos0_flood_stays_connected_by_its_pings() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 10_000).await;
    let mut slow = broker.raw().await;
    slow.send_packet(connect_packet("slow", true, 1)).await;
    slow.expect_connack().await;
    slow.subscribe(1, "firehose", QoS::AtMostOnce).await;
    let mut publisher = broker.client("firehose", true).await;
    let payload = [0u8; 1024];
    let flooding = std::cell::Cell::new(true);
    let flood = async {
        for _ in 0..20_000 {
            publisher
                .publish("firehose", QoS::AtMostOnce, &payload, false, 0)
                .await;
        }
        flooding.set(false);
    };
    // Reads slowly for 3 s, then at full speed for 1 s and until answered, pinging every 300 ms throughout: well
    // within its 1 s keep alive. PINGRESPs queue behind what the kernel buffers already
    // hold for it; what matters is that the broker keeps reading its PINGREQs instead of
    // timing it out, and answers every one.
    let reader = async {
        use tokio::time::Instant;
        let start = Instant::now();
        let (mut pings, mut pongs) = (0, 0);
        let mut next_ping = start;
        while start.elapsed() < Duration::from_secs(4) || pongs < pings {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "answered {pongs} of {pings}"
            );
            if Instant::now() >= next_ping {
                slow.send_packet(v4::PingReq).await;
                pings += 1;
                next_ping += Duration::from_millis(300);
            }
            if slow.recv_within(Duration::from_millis(20)).await == Some(v4::Packet::PingResp) {
                pongs += 1;
            }
            if start.elapsed() < Duration::from_secs(3) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        pings
    };
    let ((), pings) = tokio::join!(flood, reader);
    assert!(pings >= 10);
    broker.stop().await;
}

#[tokio::test]
async fn a_new_subscriber_gets_every_retained_message_beyond_the_queue_limit() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 100).await;
    let mut publisher = broker.client("retainer", true).await;
    let total = 3000u16;
    for i in 0..total {
        let topic = format!("many/{i}");
        publisher
            .publish(&topic, QoS::AtLeastOnce, &i.to_be_bytes(), true, i + 1)
            .await;
    }
    let mut late = broker.client("late", true).await;
    late.subscribe(1, "many/#", QoS::AtLeastOnce).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < usize::from(total) {
        let got = late.expect_publish().await;
        assert!(got.retain);
        late.send_packet(v4::PubAck::new(got.pkid)).await;
        assert!(seen.insert(got.topic), "each retained message once");
    }
    late.expect_nothing(Duration::from_millis(200)).await;
    broker.stop().await;
}

#[tokio::test]
async fn the_in_flight_window_is_max_inflight_messages() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 3).await;
    let mut sub = broker.client("windowed", true).await;
    sub.subscribe(1, "w", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("window-pub", true).await;
    for i in 0..10u8 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .publish("w", qos, &[i], false, u16::from(i) + 1)
            .await;
    }
    let mut in_flight = Vec::new();
    for i in 0..3u8 {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], &[i]);
        in_flight.push(got);
    }
    sub.expect_nothing(Duration::from_millis(300)).await;
    // Completing one (QoS 1: PUBACK) lets exactly one more through.
    sub.send_packet(v4::PubAck::new(in_flight[0].pkid)).await;
    assert_eq!(&sub.expect_publish().await.payload[..], &[3]);
    sub.expect_nothing(Duration::from_millis(300)).await;
    // A QoS 2 message holds its slot until PUBCOMP, not PUBREC.
    sub.send_packet(v4::PubRec::new(in_flight[1].pkid)).await;
    assert_eq!(
        sub.recv().await,
        Some(v4::Packet::PubRel(v4::PubRel::new(in_flight[1].pkid)))
    );
    sub.expect_nothing(Duration::from_millis(300)).await;
    sub.send_packet(v4::PubComp::new(in_flight[1].pkid)).await;
    assert_eq!(&sub.expect_publish().await.payload[..], &[4]);
    broker.stop().await;
}

#[tokio::test]
async fn granted_qos_is_capped_by_max_qos() {
    let broker =
        TestBroker::start_with(|c| c.mqtt.max_qos.0 = herald::protocol::QoS::AtLeastOnce).await;
    let mut sub = broker.client("capped", true).await;
    let codes = sub.subscribe(1, "cap", QoS::ExactlyOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    let mut publisher = broker.client("cap-pub", true).await;
    publisher
        .publish("cap", QoS::ExactlyOnce, b"two", false, 1)
        .await;
    let got = sub.expect_publish().await;
    assert_eq!(got.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn qos1_publishers_pause_for_a_full_queue_instead_of_losing_messages() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 10).await;
    let mut sub = broker.client("backlogged", true).await;
    sub.subscribe(1, "bp", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("eager", true).await;
    // 500 QoS 1 messages in one burst, far beyond the window and the queue.
    let total = 500u16;
    publisher.send(&common::qos1_burst("bp", total)).await;
    // The subscriber gets every one, in order, acknowledging as it goes.
    for i in 1..=total {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], &i.to_be_bytes(), "message {i}");
        sub.send_packet(v4::PubAck::new(got.pkid)).await;
    }
    sub.expect_nothing(Duration::from_millis(200)).await;
    // And the publisher got a PUBACK for each.
    for i in 1..=total {
        assert_eq!(
            publisher.recv().await,
            Some(v4::Packet::PubAck(v4::PubAck::new(i)))
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_paused_publisher_is_not_cut_off_by_its_keep_alive() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_queued_messages = 5).await;
    let mut sub = broker.client("sluggish", true).await;
    sub.subscribe(1, "ka", QoS::AtLeastOnce).await;
    let mut publisher = broker.raw().await;
    publisher
        .send_packet(connect_packet("paused", true, 1))
        .await;
    publisher.expect_connack().await;
    publisher.send(&common::qos1_burst("ka", 100)).await;
    // The subscriber reads nothing for twice the publisher's 1.5 s keep-alive limit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..100 {
        let got = sub.expect_publish().await;
        sub.send_packet(v4::PubAck::new(got.pkid)).await;
    }
    for i in 1..=100u16 {
        assert_eq!(
            publisher.recv().await,
            Some(v4::Packet::PubAck(v4::PubAck::new(i)))
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_filter_repeated_in_one_subscribe_replays_retained_messages_once() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("keeper", true).await;
    publisher
        .publish("dup/t", QoS::AtMostOnce, b"kept", true, 0)
        .await;
    let mut sub = broker.client("repeater", true).await;
    let mut subscribe = v4::Subscribe::new("dup/#", QoS::AtMostOnce);
    subscribe.add("dup/#".into(), QoS::AtLeastOnce);
    subscribe.add("dup/#".into(), QoS::AtMostOnce);
    subscribe.pkid = 1;
    sub.send_packet(subscribe).await;
    match sub.recv().await {
        Some(v4::Packet::SubAck(ack)) => assert_eq!(ack.return_codes.len(), 3),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert_eq!(&sub.expect_publish().await.payload[..], b"kept");
    sub.expect_nothing(Duration::from_millis(300)).await;
    broker.stop().await;
}

/// PUBACKs for a burst of `count` QoS 1 messages: how many came within the first
/// second, and after how long all had come.
async fn acks_over_time(client: &mut common::RawClient, count: u16) -> (usize, Duration) {
    let start = std::time::Instant::now();
    let (mut in_first_second, mut acked) = (0, 0);
    while acked < usize::from(count) {
        match client.recv_within(Duration::from_secs(10)).await {
            Some(v4::Packet::PubAck(_)) => {
                acked += 1;
                if start.elapsed() < Duration::from_secs(1) {
                    in_first_second += 1;
                }
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    (in_first_second, start.elapsed())
}

#[tokio::test]
async fn a_client_beyond_its_publish_rate_is_slowed_down_and_loses_nothing() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_publish_rate = 20).await;
    let mut subscriber = broker.client("rate-sub", true).await;
    subscriber.subscribe(1, "rate/#", QoS::AtLeastOnce).await;
    let mut fast = broker.client("rate-pub", true).await;
    fast.send(&common::qos1_burst("rate/x", 60)).await;
    let (in_first_second, all) = acks_over_time(&mut fast, 60).await;
    // A second's worth (20) at once, then 20 a second: 40 in the first second, and 60
    // take 2 s (without the limit, all 60 come at once).
    assert!(
        in_first_second <= 42,
        "{in_first_second} in the first second"
    );
    assert!(all >= Duration::from_millis(1800), "all 60 after {all:?}");
    let received = subscriber.receive_completing(60).await;
    let ids: Vec<u16> = received
        .iter()
        .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
        .collect();
    assert_eq!(ids, (1..=60).collect::<Vec<u16>>());
    // Another client is not slowed by it.
    let mut other = broker.client("rate-other", true).await;
    other.send(&common::qos1_burst("rate/y", 20)).await;
    let (in_first_second, _) = acks_over_time(&mut other, 20).await;
    assert_eq!(in_first_second, 20);
}

#[tokio::test]
async fn a_client_beyond_its_publish_byte_rate_is_slowed_down() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_publish_bytes_rate = 10_000).await;
    let mut fast = broker.client("bytes-pub", true).await;
    let mut burst = bytes::BytesMut::new();
    for pkid in 1..=6u16 {
        let mut publish = v4::Publish::new("bytes/x", QoS::AtLeastOnce, vec![7u8; 5000]);
        publish.pkid = pkid;
        publish.encode(&mut burst);
    }
    fast.send(&burst).await;
    // 10,000 bytes at once, then 10,000 a second: 30,000 take 2 s.
    let (in_first_second, all) = acks_over_time(&mut fast, 6).await;
    assert!(
        in_first_second <= 4,
        "{in_first_second} in the first second"
    );
    assert!(all >= Duration::from_millis(1500), "all after {all:?}");
}

/// The ids (payloads) an offline session with a queue of 3 gets back after 5 QoS 1
/// messages were published to it, under `policy`; and the dropped count's growth.
async fn queue_full_outcome(policy: herald::config::QueueFull) -> (Vec<u8>, f64) {
    let (broker, http) = TestBroker::start_with_http(|c| {
        c.mqtt.max_queued_messages = 3;
        c.mqtt.queue_full = policy;
    })
    .await;
    let dropped_before = dropped_count(http).await;
    let mut sub = broker.client("queue-full", false).await;
    sub.subscribe(1, "q", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = broker.client("queue-full-pub", true).await;
    for i in 1..=5u8 {
        publisher
            .publish("q", QoS::AtLeastOnce, &[i], false, u16::from(i))
            .await;
    }
    let dropped = dropped_count(http).await - dropped_before;
    let mut sub = broker.raw().await;
    assert!(sub.connect("queue-full", false).await.session_present);
    let received = sub.receive_completing(3).await;
    sub.expect_nothing(Duration::from_millis(300)).await;
    (received.iter().map(|p| p.payload[0]).collect(), dropped)
}

/// `herald_messages_dropped_total{reason="queue_full"}` as `/metrics` says (the
/// recorder is the process's: other tests may add to it, never take away).
async fn dropped_count(http: std::net::SocketAddr) -> f64 {
    let text = common::web::get(http, "/metrics").await.text();
    text.lines()
        .find(|line| line.starts_with("herald_messages_dropped_total{reason=\"queue_full\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_full_queue_drops_the_new_or_the_oldest_message_as_configured_and_counts_it() {
    use herald::config::QueueFull;
    let (kept, dropped) = queue_full_outcome(QueueFull::DropNew).await;
    assert_eq!(kept, [1, 2, 3]);
    assert!(dropped >= 2.0, "{dropped}");
    let (kept, dropped) = queue_full_outcome(QueueFull::DropOldest).await;
    assert_eq!(kept, [3, 4, 5]);
    assert!(dropped >= 2.0, "{dropped}");
}

/// Bytes no well-behaved client sends, of several kinds, from a seed: noise, a CONNECT
/// followed by noise, an HTTP request, a packet announcing more than it brings, and a
/// PUBLISH before any CONNECT.
fn garbage(seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    };
    match seed % 5 {
        0 => noise(1 + seed as usize % 200),
        1 => [connect_packet("junk", true, 30).to_bytes(), noise(64)].concat(),
        2 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        3 => [&[0x10, 0xff, 0xff, 0xff, 0x7f][..], &noise(32)].concat(),
        _ => v4::Publish::new("a", QoS::AtMostOnce, noise(8)).to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_garbage_connections_cost_a_qos1_exchange_nothing() {
    const GARBAGE: u32 = 5000;
    const AT_ONCE: usize = 100;
    const MESSAGES: u32 = 400;
    let broker = TestBroker::start_with(|c| c.mqtt.connect_timeout_secs.0 = 2).await;
    let addr = broker.addr;
    let mut subscriber = broker.client("legit-sub", true).await;
    subscriber.subscribe(1, "legit", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("legit-pub", true).await;

    let flood = tokio::spawn(async move {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        let mut tasks = Vec::new();
        for seed in 0..GARBAGE {
            let permit = permits.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                // The broker may close before taking it all.
                let _ = stream.write_all(&garbage(seed)).await;
                // Most hang up; some stay silent, for the connect timeout to end.
                if seed % 50 != 0 {
                    let _ = stream.shutdown().await;
                }
                let mut sink = [0u8; 256];
                let closed = tokio::time::timeout(Duration::from_secs(10), async {
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                assert!(closed.is_ok(), "garbage connection {seed} was left open");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });

    // QoS 1 messages, numbered, one after the other until the flood is over (and at
    // least MESSAGES); the subscriber checks each arrives, once and in order.
    let publishing = async {
        let mut n: u32 = 0;
        while n < MESSAGES || !flood.is_finished() {
            n += 1;
            let pkid = (n % 60_000 + 1) as u16;
            publisher
                .publish("legit", QoS::AtLeastOnce, &n.to_be_bytes(), false, pkid)
                .await;
        }
        publisher
            .publish("legit", QoS::AtLeastOnce, b"end", false, 60_002)
            .await;
        n
    };
    let receiving = async {
        let mut expected: u32 = 1;
        loop {
            let publish = subscriber.receive_completing(1).await.remove(0);
            if publish.payload[..] == b"end"[..] {
                return expected - 1;
            }
            let n = u32::from_be_bytes(publish.payload[..4].try_into().unwrap());
            assert_eq!(n, expected, "message {expected} lost or out of order");
            expected += 1;
        }
    };
    let (sent, received) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(publishing, receiving)
    })
    .await
    .expect("the exchange goes on during the flood");
    assert_eq!(sent, received);
    flood.await.unwrap();
    // Still serving.
    broker.client("after-the-flood", true).await;
}
