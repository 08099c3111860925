//! MQTT.js in a real browser: Debian's headless Chromium, driven by playwright-core
//! (tests/browser/run.mjs), talks to Herald over ws:// and wss:// with MQTT 3.1.1 and 5.
//! Each session receives a retained message a TCP client left, publishes at QoS 0, 1
//! and 2, round-trips a binary payload byte for byte, and exchanges live messages with
//! the TCP client both ways.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::Pki;
use common::tools::{require, unavailable};
use common::{init_logging, WAIT};
use herald::config::{Listener, ListenerProtocol};
use herald::{Config, Server};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
const RETAINED: &[u8] = b"kept for the browser";
const FROM_TCP: &[u8] = b"live from a TCP client";

/// node, and the driver's npm packages; `None` (loudly) where they are missing.
fn browser_tools() -> Option<PathBuf> {
    let node = require("node", "install Debian's nodejs and npm")?;
    require("chromium", "install Debian's chromium")?;
    let modules = Path::new(DRIVER).join("node_modules");
    if ["mqtt", "playwright-core"]
        .iter()
        .any(|package| !modules.join(package).is_dir())
    {
        unavailable(
            "tests/browser/node_modules",
            "run `npm ci` in tests/browser",
        );
        return None;
    }
    Some(node)
}

/// The payload page/scenario.js publishes as binary.
fn binary_payload() -> Vec<u8> {
    (0..1027u32).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

/// One message as the page or the TCP client saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    qos: u8,
    retain: bool,
    payload: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_in_chromium_over_ws_and_wss() {
    let Some(node) = browser_tools() else { return };
    init_logging();
    let pki = Pki::new();
    let mut config = Config::default();
    config.storage.persistence = false;
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    for (protocol, tls) in [
        (ListenerProtocol::Http, None),
        (ListenerProtocol::Https, Some(pki.tls())),
    ] {
        config.listeners.push(Listener {
            tls,
            ..Listener::new(protocol, "127.0.0.1:0".parse().unwrap())
        });
    }
    let server = Server::start(&config).await.unwrap();
    let [tcp, http, https] = server.local_addrs()[..] else {
        panic!("three listeners")
    };
    let scenarios = [
        (format!("ws://{http}/mqtt"), 4, "ws-v311"),
        (format!("ws://{http}/mqtt"), 5, "ws-v5"),
        (format!("wss://{https}/mqtt"), 4, "wss-v311"),
        (format!("wss://{https}/mqtt"), 5, "wss-v5"),
    ];

    // The TCP side: leaves the retained messages, records what the browser publishes,
    // and answers each page's "ready" with a live message.
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new("tcp-side", "127.0.0.1", tcp.port()), 64);
    client
        .subscribe("browser/+/+", QoS::ExactlyOnce)
        .await
        .unwrap();
    for (_, _, tag) in &scenarios {
        let topic = format!("browser/{tag}/retained");
        client
            .publish(topic, QoS::AtLeastOnce, true, RETAINED)
            .await
            .unwrap();
    }
    tokio::time::timeout(WAIT, async {
        let mut acks = 0;
        while acks < 1 + scenarios.len() {
            let event = events.poll().await.expect("TCP client connected");
            if let Event::Incoming(Packet::SubAck(_) | Packet::PubAck(_)) = event {
                acks += 1;
            }
        }
    })
    .await
    .expect("retained messages stored");
    let at_tcp: Arc<Mutex<HashMap<String, Vec<Seen>>>> = Arc::default();
    let recorder = {
        let (client, at_tcp) = (client.clone(), at_tcp.clone());
        tokio::spawn(async move {
            loop {
                let Ok(event) = events.poll().await else {
                    return;
                };
                let Event::Incoming(Packet::Publish(publish)) = event else {
                    continue;
                };
                if let Some(tag) = publish.topic.strip_suffix("/ready") {
                    let topic = format!("{tag}/from-tcp");
                    client
                        .try_publish(topic, QoS::AtLeastOnce, false, FROM_TCP)
                        .unwrap();
                }
                at_tcp
                    .lock()
                    .unwrap()
                    .entry(publish.topic.clone())
                    .or_default()
                    .push(Seen {
                        qos: publish.qos as u8,
                        retain: publish.retain,
                        payload: publish.payload.to_vec(),
                    });
            }
        })
    };

    let input = serde_json::json!({
        "server_cert": pki.path("server.pem"),
        "scenarios": scenarios.iter().map(|(url, version, tag)| serde_json::json!({
            "run": "runScenario",
            "args": { "url": url, "protocolVersion": version, "tag": tag },
        })).collect::<Vec<_>>(),
    });
    let results = run_in_browser(&node, &input).await;
    assert_eq!(results.len(), scenarios.len(), "{results:?}");

    for ((_, version, tag), result) in scenarios.iter().zip(&results) {
        assert_eq!(result["tag"], *tag);
        let at_browser = seen_by_page(result);
        let one = |name: &str| -> Seen {
            let all = at_browser.get(&format!("browser/{tag}/{name}"));
            match all.map(Vec::as_slice) {
                Some([seen]) => seen.clone(),
                other => panic!("{tag}: {name} reached the page as {other:?}"),
            }
        };
        assert_eq!(one("retained"), seen(1, true, RETAINED), "{tag}");
        assert_eq!(one("q0"), seen(0, false, b"at most once"), "{tag}");
        assert_eq!(one("q1"), seen(1, false, b"at least once"), "{tag}");
        assert_eq!(one("q2"), seen(2, false, b"exactly once"), "{tag}");
        assert_eq!(one("binary"), seen(1, false, &binary_payload()), "{tag}");
        assert_eq!(one("from-tcp"), seen(1, false, FROM_TCP), "{tag}");
        let binary = result["received"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["topic"] == format!("browser/{tag}/binary"))
            .unwrap();
        if *version == 5 {
            assert_eq!(binary["content_type"], "application/octet-stream", "{tag}");
            assert_eq!(binary["user_properties"]["origin"], "chromium", "{tag}");
        }

        let at_tcp = at_tcp.lock().unwrap();
        let from_page = |name: &str| at_tcp.get(&format!("browser/{tag}/{name}")).cloned();
        assert_eq!(
            from_page("q0"),
            Some(vec![seen(0, false, b"at most once")]),
            "{tag}"
        );
        assert_eq!(
            from_page("q1"),
            Some(vec![seen(1, false, b"at least once")]),
            "{tag}"
        );
        assert_eq!(
            from_page("q2"),
            Some(vec![seen(2, false, b"exactly once")]),
            "{tag}"
        );
        assert_eq!(
            from_page("binary"),
            Some(vec![seen(1, false, &binary_payload())]),
            "{tag}"
        );
    }
    recorder.abort();
    server.shutdown().await;
}

/// Runs the driver with `input`; returns its results, one for each scenario.
async fn run_in_browser(node: &Path, input: &Value) -> Vec<Value> {
    let results = run_driver(node, "run.mjs", input).await;
    let expected = input["scenarios"].as_array().map_or(0, Vec::len);
    assert_eq!(results.len(), expected, "{results:?}");
    results
}

/// Runs driver `script` with `input`; returns the JSON lines it printed.
async fn run_driver(node: &Path, script: &str, input: &Value) -> Vec<Value> {
    // The driver's messages (and the page's console) go straight to the test's stderr.
    let run = tokio::process::Command::new(node)
        .arg(script)
        .arg(input.to_string())
        .current_dir(DRIVER)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts")
        .wait_with_output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser run finishes in time")
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser run failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON result per line"))
        .collect()
}

fn seen(qos: u8, retain: bool, payload: &[u8]) -> Seen {
    Seen {
        qos,
        retain,
        payload: payload.to_vec(),
    }
}

/// The page's messages by topic, from the driver's JSON.
fn seen_by_page(result: &Value) -> HashMap<String, Vec<Seen>> {
    let mut by_topic: HashMap<String, Vec<Seen>> = HashMap::new();
    for message in result["received"].as_array().expect("received messages") {
        let payload = message["payload"]
            .as_array()
            .expect("payload bytes")
            .iter()
            .map(|byte| {
                byte.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .expect("a byte")
            })
            .collect();
        by_topic
            .entry(message["topic"].as_str().expect("topic").to_owned())
            .or_default()
            .push(Seen {
                qos: message["qos"].as_u64().expect("qos") as u8,
                retain: message["retain"].as_bool().expect("retain"),
                payload,
            });
    }
    by_topic
}

/// Web readers in a real browser, with no MQTT library: EventSource receives what an
/// MQTT client publishes, is closed, and a stream resumed from its last id gets
/// exactly the messages published meanwhile, then live ones; long polling with
/// fetch() in a loop gets every message once; a page with the iframe stream gets its
/// messages. The page is on another origin than the broker (CORS), but for the
/// iframe, which reaches the broker through the page's own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_readers_in_chromium() {
    let Some(node) = browser_tools() else { return };
    init_logging();
    let mut config = Config::default();
    config.storage.persistence = false;
    config.http.cors_origins = vec!["*".into()];
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.push(Listener::new(
        ListenerProtocol::Http,
        "127.0.0.1:0".parse().unwrap(),
    ));
    let server = Server::start(&config).await.unwrap();
    let [tcp, http] = server.local_addrs()[..] else {
        panic!("two listeners")
    };

    // The MQTT side publishes what each page asks for on web/<tag>/ready.
    let options = MqttOptions::new("web-side", "127.0.0.1", tcp.port());
    let (client, mut events) = AsyncClient::new(options, 64);
    client
        .subscribe("web/+/ready", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.poll().await.expect("MQTT client connected");
            if let Event::Incoming(Packet::SubAck(_)) = event {
                return;
            }
        }
    })
    .await
    .expect("subscribed");
    client
        .publish("web/frame/data", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    let publisher = client.clone();
    let answering = tokio::spawn(async move {
        loop {
            let Ok(event) = events.poll().await else {
                return;
            };
            let Event::Incoming(Packet::Publish(ask)) = event else {
                continue;
            };
            let Some(tag) = ask.topic.strip_suffix("/ready") else {
                continue;
            };
            let data = format!("{tag}/data");
            let numbers = match &ask.payload[..] {
                b"sse1" => 1..=3,
                b"sse2" => 4..=6,
                b"sse3" => 7..=7,
                b"poll" => 1..=20,
                _ => 0..=0,
            };
            let mut payloads: Vec<String> = numbers.map(|n| n.to_string()).collect();
            if &ask.payload[..] == b"frame" {
                payloads = vec!["live".into(), "</script><b>bold</b>".into()];
            }
            for payload in payloads {
                let publish = publisher.publish(&data, QoS::AtLeastOnce, false, payload);
                publish.await.unwrap();
            }
            if &ask.payload[..] == b"sse2" {
                let marker = format!("{tag}/published");
                publisher
                    .publish(marker, QoS::AtLeastOnce, true, "4..6")
                    .await
                    .unwrap();
            }
        }
    });

    let base = format!("http://{http}");
    let input = serde_json::json!({
        "broker": base,
        "scenarios": [
            { "run": "sseScenario", "args": { "base": base, "tag": "sse" } },
            { "run": "pollScenario", "args": { "base": base, "tag": "poll" } },
            { "run": "iframeScenario", "args": { "tag": "frame" } },
        ],
    });
    let results = run_in_browser(&node, &input).await;
    answering.abort();

    let payloads = |list: &Value| -> Vec<String> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|m| m["payload"].as_str().expect("a payload").to_string())
            .collect()
    };
    let phases = &results[0]["phases"];
    assert_eq!(payloads(&phases[0]), ["1", "2", "3"]);
    assert_eq!(
        payloads(&phases[1]),
        ["4", "5", "6", "7"],
        "exactly the missed ones, then live"
    );
    let ids: Vec<u64> = phases[0]
        .as_array()
        .unwrap()
        .iter()
        .chain(phases[1].as_array().unwrap())
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let expected: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    assert_eq!(payloads(&results[1]["received"]), expected);

    let frames = &results[2]["frames"];
    assert_eq!(payloads(frames), ["kept", "live", "</script><b>bold</b>"]);
    assert_eq!(frames[0]["retain"], true);
    server.shutdown().await;
}

/// The dashboard at `/`, behind the password file: its client list shows the clients
/// the test connected, its charts move with the messages they publish, and its topic
/// explorer shows one of them arriving through `/events`. The screenshot is kept in
/// target/dashboard.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_clients_rates_and_live_messages() {
    let Some(node) = browser_tools() else {
        return;
    };
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let mut users = herald::passwd::PasswordFile::parse("").unwrap();
    users.set(
        "admin",
        herald::passwd::PasswordHash::new(b"secret").unwrap(),
    );
    std::fs::write(dir.path().join("passwd"), users.to_string()).unwrap();
    let mut config = Config::default();
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.push(Listener::new(
        ListenerProtocol::Http,
        "127.0.0.1:0".parse().unwrap(),
    ));
    config.storage.persistence = false;
    config.auth.password_file = Some(dir.path().join("passwd"));
    let server = Server::start(&config).await.expect("broker starts");
    let (mqtt, http) = (server.local_addrs()[0], server.local_addrs()[1]);

    // Without credentials, the browser is asked for them.
    let answer = common::web::get(http, "/").await;
    assert_eq!(answer.status, hyper::StatusCode::UNAUTHORIZED);
    assert!(answer.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));

    let mut clients = Vec::new();
    for id in ["dash-sensor", "dash-display"] {
        let mut options = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
        options.set_credentials("admin", "secret");
        let (client, mut events) = AsyncClient::new(options, 100);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        clients.push(client);
    }
    let sensor = clients[0].clone();
    let publishing = tokio::spawn(async move {
        for n in 0u32.. {
            let payload = format!("reading {n}");
            if sensor
                .publish("dash/temperature", QoS::AtMostOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    let input = serde_json::json!({
        "url": format!("http://{http}/"),
        "user": "admin",
        "password": "secret",
        "clients": ["dash-sensor", "dash-display"],
        "filter": "dash/#",
        "topic": "dash/temperature",
        "screenshot": screenshot,
    });
    let seen = run_driver(&node, "dashboard.mjs", &input).await;
    publishing.abort();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = &seen[0];
    let rows = seen["clients"].as_array().unwrap();
    for id in ["dash-sensor", "dash-display"] {
        let row = rows
            .iter()
            .find(|row| row[0] == id)
            .unwrap_or_else(|| panic!("{id}: {rows:?}"));
        assert!(
            row[1].as_str().unwrap().starts_with("127.0.0.1:"),
            "{row:?}"
        );
        assert_eq!(row[2], "3.1.1");
        assert_eq!(row[3], mqtt.to_string());
    }
    assert_eq!(seen["connections"], "2");
    assert!(seen["rate_in"].as_f64().unwrap() > 0.0, "{seen}");
    assert!(
        seen["message"].as_str().unwrap().contains("reading "),
        "{seen}"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);
    server.shutdown().await;
}
