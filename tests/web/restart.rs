//! The replay log survives a restart: a reader resumes across it with neither loss
//! nor repeat after a clean stop, and is told of a gap after a crash.

use mqttbytes::QoS;

use crate::common::process::Process;
use crate::common::web::Sse;
use crate::common::RawClient;
use crate::start;

const HTTP_LISTENER: &str = "[[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n";

async fn publish(addr: std::net::SocketAddr, client_id: &str, topic: &str, payloads: &[&str]) {
    let mut client = RawClient::open(addr).await;
    client.connect(client_id, true).await;
    for (i, payload) in payloads.iter().enumerate() {
        let pkid = i as u16 + 1;
        client
            .publish(topic, QoS::AtLeastOnce, payload.as_bytes(), false, pkid)
            .await;
    }
    client.disconnect().await;
}

/// The id of the event carrying `payload`, reading up to it.
async fn last_id_until(sse: &mut Sse, payload: &str) -> String {
    let seen = sse.until_payload(payload).await;
    seen.last().and_then(|e| e.id.clone()).expect("an id")
}

/// In process, with the test storage: stop, start again, resume.
#[tokio::test]
async fn a_reader_resumes_across_a_clean_restart_in_process() {
    let (broker, http) = start(|_| {}).await;
    let mut sse = Sse::open(http, "/events?topic=restart/%23", &[]).await;
    sse.next_block().await;
    publish(broker.addr, "before", "restart/a", &["1", "2"]).await;
    let last = last_id_until(&mut sse, "2").await;
    drop(sse);
    publish(broker.addr, "missed", "restart/a", &["3", "4"]).await;

    let broker = broker.restart().await;
    let http = broker.listener(1);
    publish(broker.addr, "after", "restart/a", &["5"]).await;
    let mut resumed = Sse::open(
        http,
        "/events?topic=restart/%23",
        &[("last-event-id", &last)],
    )
    .await;
    resumed.next_block().await;
    let got: Vec<String> = resumed
        .until_payload("5")
        .await
        .iter()
        .map(|e| {
            assert_eq!(e.event, "message", "no gap after a clean stop: {e:?}");
            e.json()["payload"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(got, ["3", "4", "5"]);
    broker.stop().await;
}

/// The herald binary on sled: after SIGTERM and a new start, the reader gets exactly
/// what it missed; after a kill -9, it is told that it may have missed something, then
/// gets what the log kept.
#[tokio::test]
async fn a_reader_resumes_across_restarts_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), HTTP_LISTENER);
    let http = herald.wait_for_addr("http listener on ");
    let mut sse = Sse::open(http, "/events?topic=proc/%23", &[]).await;
    sse.next_block().await;
    publish(herald.addr, "p1", "proc/a", &["1"]).await;
    let last = last_id_until(&mut sse, "1").await;
    drop(sse);
    publish(herald.addr, "p2", "proc/a", &["2", "3"]).await;

    herald.signal("TERM");
    assert_eq!(herald.wait_exit(), Some(0));
    drop(herald);
    let mut herald = Process::start(dir.path(), HTTP_LISTENER);
    let http = herald.wait_for_addr("http listener on ");
    let target = "/events?topic=proc/%23";
    let mut resumed = Sse::open(http, target, &[("last-event-id", &last)]).await;
    resumed.next_block().await;
    let replay = resumed.until_payload("3").await;
    let payloads: Vec<String> = replay
        .iter()
        .map(|e| {
            assert_eq!(e.event, "message", "no gap after a clean stop: {e:?}");
            e.json()["payload"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(payloads, ["2", "3"], "{replay:?}");
    drop(resumed);

    // Written out within a fraction of a second; then the process dies.
    publish(herald.addr, "p3", "proc/a", &["4"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    herald.signal("KILL");
    herald.wait_exit();
    drop(herald);
    let mut herald = Process::start(dir.path(), HTTP_LISTENER);
    let http = herald.wait_for_addr("http listener on ");
    let mut after_crash = Sse::open(http, target, &[("last-event-id", &last)]).await;
    after_crash.next_block().await;
    let gap = after_crash.next_event().await;
    assert_eq!(gap.event, "gap", "{gap:?}");
    let kept: Vec<String> = after_crash
        .until_payload("4")
        .await
        .iter()
        .map(|e| e.json()["payload"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, ["2", "3", "4"]);
    herald.signal("TERM");
    herald.wait_exit();
}
