//! `GET /events`: retained first, live events with ids, formats, keepalives, resume by
//! Last-Event-ID with neither loss nor repeat, `gap`, and slow readers cut off.

use std::collections::BTreeSet;

use mqttbytes::QoS;

use crate::common::web::Sse;
use crate::common::RawClient;
use crate::{encode, start};

/// Publishes QoS 1 messages `0..count` (decimal payloads) on `topic` as one client.
async fn publish_numbers(client: &mut RawClient, topic: &str, numbers: std::ops::Range<u32>) {
    for n in numbers {
        let pkid = (n % 60000 + 1) as u16;
        client
            .publish(
                topic,
                QoS::AtLeastOnce,
                n.to_string().as_bytes(),
                false,
                pkid,
            )
            .await;
    }
}

#[tokio::test]
async fn retained_messages_come_first_then_live_ones_with_rising_ids() {
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("sse-publisher", true).await;
    publisher
        .publish("home/kitchen/temp", QoS::AtLeastOnce, b"21.5", true, 1)
        .await;
    publisher
        .publish("home/hall/temp", QoS::AtMostOnce, b"19", true, 0)
        .await;
    publisher
        .publish("garden/temp", QoS::AtMostOnce, b"9", true, 0)
        .await;

    let target = format!(
        "/events?topic={}&topic={}",
        encode("home/+/temp"),
        encode("home/#")
    );
    let mut sse = Sse::open(http, &target, &[]).await;
    assert_eq!(sse.headers["cache-control"], "no-cache");
    let first = sse.next_block().await.unwrap();
    assert!(
        first.retry.is_some(),
        "the stream starts with retry: {first:?}"
    );
    // And with the place to resume from, should it drop before its first event.
    let start_id = first.id.clone().expect("an id in the first block");

    // Each retained message once, though both filters match it; the garden's not at all.
    let retained = [sse.next_event().await, sse.next_event().await];
    let mut topics: Vec<String> = retained
        .iter()
        .map(|e| e.json()["topic"].as_str().unwrap().to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["home/hall/temp", "home/kitchen/temp"]);
    for event in &retained {
        assert_eq!(event.event, "message");
        assert_eq!(event.json()["retain"], true);
    }
    let head = retained[0].id();
    assert_eq!(start_id, head.to_string());

    publisher
        .publish("garden/temp", QoS::AtMostOnce, b"10", false, 0)
        .await;
    publisher
        .publish("home/kitchen/temp", QoS::AtLeastOnce, b"22", false, 2)
        .await;
    publisher
        .publish("home/hall/light", QoS::ExactlyOnce, b"\xff\x00on", false, 3)
        .await;
    let live = sse.next_event().await;
    assert_eq!(
        live.json(),
        serde_json::json!({"topic": "home/kitchen/temp", "payload": "22", "qos": 1, "retain": false})
    );
    let binary = sse.next_event().await;
    assert_eq!(binary.json()["payload_base64"], "/wBvbg==");
    assert!(binary.json().get("payload").is_none());
    assert_eq!(binary.json()["qos"], 2);
    assert!(head < live.id() && live.id() < binary.id());
    broker.stop().await;
}

#[tokio::test]
async fn v5_properties_reach_the_reader_and_raw_format_sends_bare_payloads() {
    use crate::v5;
    let (broker, http) = start(|_| {}).await;
    let mut json = Sse::open(http, "/events?topic=props/%23", &[]).await;
    let mut raw = Sse::open(http, "/events?topic=props/%23&format=raw", &[]).await;
    json.next_block().await;
    raw.next_block().await;

    let mut publisher = v5::Client::new(&broker, "v5-props").await;
    let props = v5::Props::new()
        .str(v5::CONTENT_TYPE, "text/plain")
        .str(v5::RESPONSE_TOPIC, "props/reply")
        .bin(v5::CORRELATION_DATA, b"\xfe\x02")
        .user("unit", "C")
        .user("sensor", "a")
        .user("sensor", "b");
    publisher
        .publish(
            &v5::Publish::new("props/t", 1, b"line one\nline two")
                .pkid(1)
                .props(props),
        )
        .await;

    let event = json.next_event().await;
    let properties = &event.json()["properties"];
    assert_eq!(properties["content_type"], "text/plain");
    assert_eq!(properties["response_topic"], "props/reply");
    assert_eq!(properties["correlation_data_base64"], "/gI=");
    assert_eq!(properties["user_properties"]["unit"], "C");
    assert_eq!(
        properties["user_properties"]["sensor"],
        serde_json::json!(["a", "b"])
    );

    let bare = raw.next_event().await;
    assert_eq!(bare.event, "props/t");
    assert_eq!(bare.data, "line one\nline two");
    assert_eq!(bare.id, event.id);
    broker.stop().await;
}

#[tokio::test]
async fn idle_streams_get_keepalive_comments_and_retained_can_be_skipped() {
    let (broker, http) = start(|config| {
        config.http.keepalive_secs = herald::config::KeepaliveInterval(1);
        config.http.retry_ms = 1234;
    })
    .await;
    let mut publisher = broker.client("keepalive-publisher", true).await;
    publisher
        .publish("quiet/state", QoS::AtMostOnce, b"kept", true, 0)
        .await;
    let mut sse = Sse::open(http, "/events?topic=quiet/%23&retained=false", &[]).await;
    assert_eq!(
        sse.next_block().await.unwrap().retry.as_deref(),
        Some("1234")
    );
    let idle = sse.next_block().await.unwrap();
    assert_eq!(idle.comments, ["keepalive"], "{idle:?}");
    publisher
        .publish("quiet/state", QoS::AtMostOnce, b"live", false, 0)
        .await;
    assert_eq!(sse.next_event().await.json()["payload"], "live");
    broker.stop().await;
}

/// A reader that drops its stream and comes back with the last id it saw gets exactly
/// the messages it missed, in order, then live ones: by the `Last-Event-ID` header
/// EventSource sends, or the `last_event_id` parameter.
#[tokio::test]
async fn a_resumed_stream_gets_exactly_what_it_missed() {
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("resume-publisher", true).await;
    let target = "/events?topic=resume/%23";
    let mut sse = Sse::open(http, target, &[]).await;
    sse.next_block().await;
    publish_numbers(&mut publisher, "resume/a", 0..3).await;
    let seen = sse.until_payload("2").await;
    let last = seen.last().unwrap().id.clone().unwrap();
    drop(sse);

    publish_numbers(&mut publisher, "resume/a", 3..6).await;
    publisher
        .publish("elsewhere", QoS::AtMostOnce, b"x", false, 0)
        .await;
    let mut resumed = Sse::open(http, target, &[("last-event-id", &last)]).await;
    resumed.next_block().await;
    let replayed = resumed.until_payload("5").await;
    let payloads: Vec<String> = replayed
        .iter()
        .map(|e| e.json()["payload"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        payloads,
        ["3", "4", "5"],
        "no retained messages, no repeats"
    );
    publish_numbers(&mut publisher, "resume/a", 6..7).await;
    assert_eq!(resumed.next_event().await.json()["payload"], "6");

    let by_parameter = format!("{target}&last_event_id={last}");
    let mut again = Sse::open(http, &by_parameter, &[]).await;
    again.next_block().await;
    assert_eq!(again.next_event().await.json()["payload"], "3");
    broker.stop().await;
}

/// Resuming over and over while a publisher never stops: every message reaches the
/// reader exactly once, in order, across the seams between replay and live.
#[tokio::test]
async fn resuming_while_messages_keep_arriving_loses_and_repeats_nothing() {
    const COUNT: u32 = 600;
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("racing-publisher", true).await;
    let target = "/events?topic=race";
    let mut sse = Sse::open(http, target, &[]).await;
    sse.next_block().await;
    let publishing = tokio::spawn(async move {
        publish_numbers(&mut publisher, "race", 0..COUNT).await;
        publisher
    });
    let mut got: Vec<u32> = Vec::new();
    let mut last = String::new();
    while got.last() != Some(&(COUNT - 1)) {
        // Read a few, then drop the stream and resume from the last id.
        for _ in 0..7 {
            let event = sse.next_event().await;
            last = event.id.clone().unwrap();
            got.push(event.json()["payload"].as_str().unwrap().parse().unwrap());
            if got.last() == Some(&(COUNT - 1)) {
                break;
            }
        }
        sse = Sse::open(http, target, &[("last-event-id", &last)]).await;
        sse.next_block().await;
    }
    publishing.await.unwrap();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    broker.stop().await;
}

/// When the log no longer reaches back to the id asked for, the stream says so first
/// (`event: gap` with the id asked and the oldest kept), then sends what it has.
#[tokio::test]
async fn a_resume_beyond_the_log_starts_with_a_gap() {
    let (broker, http) = start(|config| config.http.replay_max_messages = 5).await;
    let mut publisher = broker.client("gap-publisher", true).await;
    let mut sse = Sse::open(http, "/events?topic=gap", &[]).await;
    sse.next_block().await;
    publish_numbers(&mut publisher, "gap", 0..1).await;
    let first = sse.next_event().await.id();
    drop(sse);
    publish_numbers(&mut publisher, "gap", 1..12).await;

    let last = first.to_string();
    let mut resumed = Sse::open(http, "/events?topic=gap", &[("last-event-id", &last)]).await;
    resumed.next_block().await;
    let gap = resumed.next_event().await;
    assert_eq!(gap.event, "gap");
    let oldest = gap.json()["to"].as_u64().unwrap();
    assert_eq!(gap.json()["from"], first);
    assert_eq!(gap.id(), first, "a gap does not move the reader's place");
    let kept = resumed.until_payload("11").await;
    assert_eq!(kept.len(), 5);
    assert_eq!(kept[0].id(), oldest);
    broker.stop().await;
}

/// A reader that does not read is cut off once its buffer is full: its stream ends
/// (to be resumed from its last id), while a reader beside it and the MQTT publisher
/// go on undisturbed.
#[tokio::test]
async fn a_reader_that_does_not_read_is_cut_off_without_slowing_anyone() {
    const COUNT: u32 = 3000;
    let (broker, http) = start(|config| {
        config.http.stream_buffer_bytes = herald::config::StreamBuffer(16 * 1024);
        config.http.replay_max_messages = 100_000;
        config.http.replay_max_bytes = 1 << 30;
    })
    .await;
    let mut stalled = Sse::open(http, "/events?topic=flood", &[]).await;
    let mut reading = Sse::open(http, "/events?topic=flood", &[]).await;
    reading.next_block().await;
    let payload = vec![b'x'; 2048];
    let mut publisher = broker.client("flood-publisher", true).await;
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < COUNT as usize {
            ids.push(reading.next_event().await.id());
        }
        ids
    });
    for n in 0..COUNT {
        let pkid = (n % 60000 + 1) as u16;
        publisher
            .publish("flood", QoS::AtLeastOnce, &payload, false, pkid)
            .await;
    }
    let ids = reader.await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // The stalled reader gets what was on its way, then the end of its stream.
    let mut received = 0;
    while let Some(block) = stalled.next_block().await {
        if block.id.is_some() {
            received += 1;
        }
    }
    assert!(
        received < COUNT,
        "the stalled stream was cut off, after {received}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_publishes_and_an_sse_reader_receives() {
    use crate::common::tools::{mosquitto, mosquitto_tools, run_tool};
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let (broker, http) = start(|_| {}).await;
    let mut sse = Sse::open(http, "/events?topic=tools/%23", &[]).await;
    sse.next_block().await;
    for qos in ["0", "1", "2"] {
        let mut command = mosquitto(&pub_tool, broker.addr);
        command.args([
            "-t",
            &format!("tools/q{qos}"),
            "-q",
            qos,
            "-m",
            "from mosquitto",
        ]);
        run_tool(command, b"").await;
        let event = sse.next_event().await.json();
        assert_eq!(event["topic"], format!("tools/q{qos}"));
        assert_eq!(event["payload"], "from mosquitto");
        assert_eq!(event["qos"].to_string(), qos);
    }
    broker.stop().await;
}

#[tokio::test]
async fn the_iframe_stream_calls_the_parent_with_each_message() {
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("iframe-publisher", true).await;
    publisher
        .publish("frame/a", QoS::AtMostOnce, b"first", true, 0)
        .await;
    let response = crate::common::web::send(
        http,
        hyper::Method::GET,
        "/iframe?topic=frame/%23&callback=app.onMessage",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let mut body = response.into_body();
    publisher
        .publish(
            "frame/b",
            QoS::AtMostOnce,
            b"</script><script>alert(1)",
            false,
            0,
        )
        .await;
    let mut html = String::new();
    while html.matches("<script>parent.app.onMessage(").count() < 2 {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(crate::common::WAIT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            html.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(html.starts_with("<!doctype html>"));
    let calls: Vec<&str> = html
        .lines()
        .filter_map(|l| l.strip_prefix("<script>parent.app.onMessage("))
        .map(|l| l.strip_suffix(")</script>").unwrap())
        .collect();
    let first: serde_json::Value = serde_json::from_str(calls[0]).unwrap();
    assert_eq!(first["payload"], "first");
    assert_eq!(first["retain"], true);
    let second: serde_json::Value = serde_json::from_str(calls[1]).unwrap();
    assert_eq!(second["payload"], "</script><script>alert(1)");
    assert_eq!(html.matches("</script>").count(), 2, "{html}");
    broker.stop().await;
}

#[tokio::test]
async fn the_event_ids_of_live_messages_are_one_rising_sequence_for_all_readers() {
    let (broker, http) = start(|_| {}).await;
    let mut a = Sse::open(http, "/events?topic=ids/a", &[]).await;
    let mut b = Sse::open(http, "/events?topic=ids/%23", &[]).await;
    a.next_block().await;
    b.next_block().await;
    let mut publisher = broker.client("ids-publisher", true).await;
    publish_numbers(&mut publisher, "ids/a", 0..3).await;
    publish_numbers(&mut publisher, "ids/b", 3..6).await;
    let from_a: BTreeSet<u64> = a.until_payload("2").await.iter().map(|e| e.id()).collect();
    let from_b: Vec<u64> = b.until_payload("5").await.iter().map(|e| e.id()).collect();
    assert!(from_b.windows(2).all(|w| w[0] < w[1]));
    assert!(
        from_a.iter().all(|id| from_b.contains(id)),
        "same message, same id"
    );
    broker.stop().await;
}
