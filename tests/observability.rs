//! Seeing the broker: `/metrics` moves as known traffic says, `$SYS` topics carry the
//! same totals, and logs come as JSON when asked. Each test runs the `herald` binary,
//! so that its counters are its own.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use common::process::Process;
use common::web::get;
use common::RawClient;
use herald::passwd::{PasswordFile, PasswordHash};
use mqttbytes::{v4, QoS};

const HTTP_LISTENER: &str = "[[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n";

/// A password file in `dir` with `users` (each one's password: its name).
fn passwords(dir: &Path, users: &[&str]) {
    let mut file = PasswordFile::parse("").unwrap();
    for user in users {
        file.set(user, PasswordHash::new(user.as_bytes()).unwrap());
    }
    std::fs::write(dir.join("passwd"), file.to_string()).unwrap();
}

/// A new MQTT 3.1.1 connection logged in as `user`, and its CONNACK.
async fn login(
    addr: SocketAddr,
    id: &str,
    user: &str,
    password: &str,
    clean: bool,
) -> (RawClient, v4::ConnAck) {
    let mut client = RawClient::open(addr).await;
    let ack = client.login(id, clean, user, password).await;
    (client, ack)
}

/// The samples of a Prometheus exposition, by name with labels as written.
async fn scrape(http: SocketAddr) -> HashMap<String, f64> {
    let text = get(http, "/metrics").await.text();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_move_as_known_traffic_says() {
    let dir = tempfile::tempdir().unwrap();
    passwords(dir.path(), &["obs", "writer"]);
    // The subscriber may not read obs/secret, which the publisher may write.
    let acl =
        "user obs\ntopic readwrite obs/#\ntopic deny obs/secret\nuser writer\ntopic write obs/#\n";
    std::fs::write(dir.path().join("acl"), acl).unwrap();
    let rest = format!(
        "{HTTP_LISTENER}[mqtt]\nsys_interval = 0\n[auth]\npassword_file = \"passwd\"\nacl_file = \"acl\"\n"
    );
    let mut herald = Process::start(dir.path(), &rest);
    let http = herald.wait_for_addr("http listener on ");

    let (mut sub, _) = login(herald.addr, "obs-sub", "obs", "obs", false).await;
    sub.subscribe(1, "obs/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = login(herald.addr, "obs-pub", "writer", "writer", true).await;
    for n in 0..5u16 {
        publisher
            .publish("obs/q0", QoS::AtMostOnce, b"zero", false, n)
            .await;
    }
    for pkid in 1..=3 {
        publisher
            .publish("obs/q1", QoS::AtLeastOnce, b"one", false, pkid)
            .await;
    }
    publisher
        .publish("obs/kept", QoS::AtMostOnce, b"kept", true, 0)
        .await;
    publisher
        .publish("obs/secret", QoS::AtMostOnce, b"not for obs", false, 0)
        .await;
    assert_eq!(sub.receive_completing(9).await.len(), 9);
    sub.expect_nothing(std::time::Duration::from_millis(200))
        .await;
    let (_, refused) = login(herald.addr, "obs-bad", "obs", "wrong", true).await;
    assert_eq!(refused.code, v4::ConnectReturnCode::BadUserNamePassword);

    let m = scrape(http).await;
    let value = |name: &str| {
        m.get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {m:#?}"))
    };
    assert_eq!(value("herald_messages_received_total{qos=\"0\"}"), 7.0);
    assert_eq!(
        value("herald_messages_dropped_total{reason=\"not_authorized\"}"),
        1.0
    );
    assert_eq!(value("herald_messages_received_total{qos=\"1\"}"), 3.0);
    assert_eq!(value("herald_messages_sent_total{qos=\"0\"}"), 6.0);
    assert_eq!(value("herald_messages_sent_total{qos=\"1\"}"), 3.0);
    assert_eq!(value("herald_connections"), 2.0);
    assert_eq!(value("herald_connections_total"), 2.0);
    assert_eq!(
        value("herald_connections_refused_total{reason=\"auth\"}"),
        1.0
    );
    assert_eq!(value("herald_auth_failures_total"), 1.0);
    assert_eq!(value("herald_sessions{state=\"online\"}"), 2.0);
    assert_eq!(value("herald_subscriptions"), 1.0);
    assert_eq!(value("herald_retained_messages"), 1.0);
    let mqtt_listener = format!(
        "herald_listener_connections{{listener=\"{}\"}}",
        herald.addr
    );
    assert_eq!(value(&mqtt_listener), 2.0);
    assert!(value("herald_received_bytes_total") > 0.0);
    assert!(value("herald_sent_bytes_total") > 0.0);
    // The subscriber's session is stored: its messages were flushed.
    assert!(value("herald_storage_flush_seconds_count") > 0.0);
    // Each write to the subscriber sampled how long its first message took.
    assert!(value("herald_delivery_latency_seconds_count") > 0.0);
    assert!(value("herald_delivery_latency_seconds_bucket{le=\"+Inf\"}") > 0.0);

    // One leaves: the session stays, offline.
    sub.disconnect().await;
    // Past the half second a census is kept for.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let m = scrape(http).await;
    assert_eq!(m["herald_connections"], 1.0);
    assert_eq!(m["herald_sessions{state=\"offline\"}"], 1.0);
}

#[tokio::test]
async fn sys_topics_carry_the_totals_in_mosquitto_s_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), "[mqtt]\nsys_interval = 1\n");
    let mut watcher = RawClient::open(herald.addr).await;
    watcher.connect("sys-watcher", true).await;
    watcher.subscribe(1, "$SYS/broker/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::open(herald.addr).await;
    publisher.connect("sys-publisher", true).await;
    for n in 0..4u16 {
        publisher
            .publish("sys/x", QoS::AtMostOnce, b"x", false, n)
            .await;
    }
    // The next update after the traffic: every topic as it stands then.
    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen
        .get("$SYS/broker/publish/messages/received")
        .map(String::as_str)
        != Some("4")
    {
        assert!(tokio::time::Instant::now() < deadline, "{seen:#?}");
        let publish = watcher.expect_publish().await;
        let value = String::from_utf8(publish.payload.to_vec()).unwrap();
        seen.insert(publish.topic.clone(), value);
    }
    // The rest of that update comes right after; the 15-minute connection load is last.
    loop {
        let publish = watcher.expect_publish().await;
        let value = String::from_utf8(publish.payload.to_vec()).unwrap();
        let last = publish.topic == "$SYS/broker/load/connections/15min";
        seen.insert(publish.topic.clone(), value);
        if last {
            break;
        }
    }
    assert_eq!(seen.len(), 29, "{seen:#?}");
    assert_eq!(seen["$SYS/broker/clients/connected"], "2");
    assert_eq!(seen["$SYS/broker/subscriptions/count"], "1");
    assert!(seen["$SYS/broker/version"].starts_with("herald version "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    let load: f64 = seen["$SYS/broker/load/messages/received/1min"]
        .parse()
        .unwrap();
    assert!(load > 0.0, "{load}");
    drop(herald.drain_log());
}

#[tokio::test]
async fn logs_are_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::spawn(dir.path(), "[log]\nformat = \"json\"\n");
    let line = herald.wait_for_log("mqtt listener on ");
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let message = json["fields"]["message"].as_str().unwrap();
    herald.addr = message.rsplit(' ').next().unwrap().parse().unwrap();
    let mut client = RawClient::open(herald.addr).await;
    client.connect("json-logged", true).await;
    let line = herald.wait_for_log("client connected");
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(json["fields"]["client"], "json-logged");
    assert_eq!(json["level"], "INFO");
    assert!(json["fields"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}
