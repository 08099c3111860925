//! `POST /publish`: the body published at the QoS asked, answered with its event id.

use std::time::Duration;

use mqttbytes::QoS;

use crate::common::expect_message;
use crate::common::tools::{mosquitto, mosquitto_tools, run_tool};
use crate::common::web::{get, post};
use crate::start;

/// mosquitto_sub receives what `POST /publish` publishes at QoS 0, 1 and 2.
#[tokio::test]
async fn mosquitto_sub_receives_http_publishes_at_every_qos() {
    let Some((sub_tool, _)) = mosquitto_tools() else {
        return;
    };
    let (broker, http) = start(|_| {}).await;
    for qos in ["0", "1", "2"] {
        let mut sub = mosquitto(&sub_tool, broker.addr);
        sub.args([
            "-t", "posted/#", "-q", qos, "-C", "1", "-v", "-F", "%t %q %p",
        ]);
        let subscriber = tokio::spawn(run_tool(sub, b""));
        // Publish until the subscriber has subscribed and exits with the message.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let output = loop {
            tick.tick().await;
            if subscriber.is_finished() {
                break subscriber.await.unwrap();
            }
            let answer = post(
                http,
                &format!("/publish?topic=posted/q{qos}&qos={qos}"),
                "by http",
            )
            .await;
            assert_eq!(answer.status, 200, "{answer:?}");
        };
        assert_eq!(output.trim_end(), format!("posted/q{qos} {qos} by http"));
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_publish_is_answered_with_its_id_and_can_be_retained() {
    let (broker, http) = start(|_| {}).await;
    let mut subscriber = broker.client("http-watcher", true).await;
    subscriber.subscribe(1, "web/#", QoS::ExactlyOnce).await;
    let binary: Vec<u8> = (0..=255).collect();
    let answer = post(http, "/publish?topic=web/bin&qos=1", binary.clone()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    let id: u64 = answer.json()["id"].as_str().unwrap().parse().unwrap();
    let got = expect_message(&mut subscriber, "web/bin", &binary).await;
    assert_eq!(got.qos, QoS::AtLeastOnce);

    let second = post(http, "/publish?topic=web/state&retain=true", "kept").await;
    let second: u64 = second.json()["id"].as_str().unwrap().parse().unwrap();
    assert!(second > id);
    let retained = get(http, "/retained?topic=web/state").await.json();
    assert_eq!(retained[0]["payload"], "kept");
    broker.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_nothing_is_published() {
    let (broker, http) = start(|config| config.http.max_body_bytes = 1000).await;
    let mut subscriber = broker.client("limit-watcher", true).await;
    subscriber.subscribe(1, "big", QoS::AtMostOnce).await;
    let answer = post(http, "/publish?topic=big", vec![b'x'; 1001]).await;
    assert!(answer
        .error(hyper::StatusCode::PAYLOAD_TOO_LARGE)
        .contains("1000"));
    let fits = post(http, "/publish?topic=big", vec![b'y'; 1000]).await;
    assert_eq!(fits.status, 200);
    let got = subscriber.expect_publish().await;
    assert_eq!(got.payload.len(), 1000);
    assert_eq!(got.payload[0], b'y');
    broker.stop().await;
}
