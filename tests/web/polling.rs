//! `GET /poll` (long polling) and `GET /retained` (short polling).

use mqttbytes::QoS;

use crate::common::web::get;
use crate::start;

#[tokio::test]
async fn a_long_poll_waits_for_the_next_message_and_next_chains_polls() {
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("poll-publisher", true).await;
    // Without since: held until the next message.
    let waiting = tokio::spawn(async move { get(http, "/poll?topic=poll/%23&timeout=10").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    publisher
        .publish("poll/a", QoS::AtLeastOnce, b"one", false, 1)
        .await;
    let first = waiting.await.unwrap().json();
    assert_eq!(first["messages"][0]["payload"], "one");
    assert_eq!(first["messages"][0]["topic"], "poll/a");
    let next = first["next"].as_str().unwrap().to_string();
    assert_eq!(first["messages"][0]["id"], next);

    // Messages published between polls are all in the next answer, at once.
    publisher
        .publish("poll/b", QoS::AtMostOnce, b"two", false, 0)
        .await;
    publisher
        .publish("other", QoS::AtMostOnce, b"not this", false, 0)
        .await;
    publisher
        .publish("poll/c", QoS::AtMostOnce, b"three", false, 0)
        .await;
    let second = get(http, &format!("/poll?topic=poll/%23&since={next}"))
        .await
        .json();
    let payloads: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["two", "three"]);

    // Nothing new: an empty answer after the timeout, with a next that loses nothing.
    let next = second["next"].as_str().unwrap().to_string();
    let empty = get(
        http,
        &format!("/poll?topic=poll/%23&since={next}&timeout=1"),
    )
    .await
    .json();
    assert_eq!(empty["messages"], serde_json::json!([]));
    let next = empty["next"].as_str().unwrap().to_string();
    publisher
        .publish("poll/d", QoS::AtMostOnce, b"four", false, 0)
        .await;
    let last = get(http, &format!("/poll?topic=poll/%23&since={next}"))
        .await
        .json();
    assert_eq!(last["messages"][0]["payload"], "four");
    broker.stop().await;
}

/// A client polling in a loop while messages keep coming receives each exactly once.
#[tokio::test]
async fn polling_in_a_loop_receives_every_message_once() {
    const COUNT: u32 = 300;
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("loop-publisher", true).await;
    // Start from the current head.
    let head = get(http, "/poll?topic=loop&timeout=0").await.json();
    let mut next = head["next"].as_str().unwrap().to_string();
    let publishing = tokio::spawn(async move {
        for n in 0..COUNT {
            publisher
                .publish("loop", QoS::AtMostOnce, n.to_string().as_bytes(), false, 0)
                .await;
        }
        publisher
    });
    let mut got: Vec<u32> = Vec::new();
    while got.len() < COUNT as usize {
        let answer = get(http, &format!("/poll?topic=loop&since={next}&timeout=5"))
            .await
            .json();
        for message in answer["messages"].as_array().unwrap() {
            got.push(message["payload"].as_str().unwrap().parse().unwrap());
        }
        next = answer["next"].as_str().unwrap().to_string();
    }
    publishing.await.unwrap();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    broker.stop().await;
}

#[tokio::test]
async fn retained_answers_the_current_retained_messages_at_once() {
    let (broker, http) = start(|_| {}).await;
    let mut publisher = broker.client("retained-publisher", true).await;
    publisher
        .publish("state/a", QoS::AtLeastOnce, b"on", true, 1)
        .await;
    publisher
        .publish("state/b", QoS::AtMostOnce, b"\xc3\x28", true, 0)
        .await;
    publisher
        .publish("state/c", QoS::AtMostOnce, b"not kept", false, 0)
        .await;
    let answer = get(http, "/retained?topic=state/%2B").await;
    assert_eq!(answer.status, 200);
    let mut messages = answer.json().as_array().unwrap().clone();
    messages.sort_by_key(|m| m["topic"].as_str().unwrap().to_string());
    assert_eq!(
        serde_json::Value::Array(messages),
        serde_json::json!([
            {"topic": "state/a", "payload": "on", "qos": 1, "retain": true},
            {"topic": "state/b", "payload_base64": "wyg=", "qos": 0, "retain": true},
        ])
    );
    // Cleared: gone from the answer.
    publisher
        .publish("state/a", QoS::AtMostOnce, b"", true, 0)
        .await;
    let answer = get(http, "/retained?topic=state/a").await.json();
    assert_eq!(answer, serde_json::json!([]));
    broker.stop().await;
}
