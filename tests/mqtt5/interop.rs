//! Independent implementations on one broker: mosquitto_pub and mosquitto_sub speaking
//! MQTT 3.1, 3.1.1 and 5.0, and rumqttc's MQTT 5.0 client, exchanging messages and
//! properties.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Packet as RPacket, Publish as RPublish, PublishProperties, SubAck,
    SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS as RQoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::common::tools::{mosquitto, mosquitto_tools, run_tool};
use crate::common::{TestBroker, WAIT};
use crate::v5::{Client, Publish, TOPIC_ALIAS};

/// A rumqttc MQTT 5.0 client whose event loop runs in a task.
struct Rumqttc {
    client: AsyncClient,
    connack: ConnAck,
    publishes: mpsc::UnboundedReceiver<RPublish>,
    subacks: mpsc::UnboundedReceiver<SubAck>,
    events: JoinHandle<()>,
}

impl Rumqttc {
    async fn connect(broker: &TestBroker, client_id: &str) -> Rumqttc {
        Rumqttc::connect_with(broker, client_id, |_| {}).await
    }

    async fn connect_with(
        broker: &TestBroker,
        client_id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> Rumqttc {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        configure(&mut options);
        let (client, event_loop) = AsyncClient::new(options, 100);
        let (connacks_tx, mut connacks) = mpsc::unbounded_channel();
        let (publishes_tx, publishes) = mpsc::unbounded_channel();
        let (subacks_tx, subacks) = mpsc::unbounded_channel();
        let events = tokio::spawn(pump(event_loop, connacks_tx, publishes_tx, subacks_tx));
        let connack = timeout(WAIT, connacks.recv())
            .await
            .expect("CONNACK in time")
            .expect("event loop running");
        Rumqttc {
            client,
            connack,
            publishes,
            subacks,
            events,
        }
    }

    async fn subscribe(
        &mut self,
        filter: &str,
        qos: RQoS,
        properties: Option<SubscribeProperties>,
    ) -> SubAck {
        match properties {
            Some(p) => self.client.subscribe_with_properties(filter, qos, p).await,
            None => self.client.subscribe(filter, qos).await,
        }
        .unwrap();
        timeout(WAIT, self.subacks.recv())
            .await
            .expect("SUBACK in time")
            .expect("event loop running")
    }

    async fn next(&mut self) -> RPublish {
        timeout(WAIT, self.publishes.recv())
            .await
            .expect("a message in time")
            .expect("event loop running")
    }
}

impl Drop for Rumqttc {
    fn drop(&mut self) {
        self.events.abort();
    }
}

async fn pump(
    mut event_loop: EventLoop,
    connacks: mpsc::UnboundedSender<ConnAck>,
    publishes: mpsc::UnboundedSender<RPublish>,
    subacks: mpsc::UnboundedSender<SubAck>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(RPacket::ConnAck(ack))) => {
                let _ = connacks.send(ack);
            }
            Ok(Event::Incoming(RPacket::SubAck(ack))) => {
                let _ = subacks.send(ack);
            }
            Ok(Event::Incoming(RPacket::Publish(p))) => {
                let _ = publishes.send(p);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("rumqttc event loop ended: {e:?}");
                return;
            }
        }
    }
}

/// A running mosquitto_sub printing each message as a line starting with "MSG|".
struct MosquittoSub {
    lines: Lines<BufReader<ChildStdout>>,
    /// A topic it also subscribes to, used to see that it is ready; messages on it are
    /// left out of [`MosquittoSub::next`].
    probe: String,
    _child: Child,
}

impl MosquittoSub {
    /// Starts mosquitto_sub with `args` (which name its client id with `-i`) and output
    /// `format` (which must start with `%t`), and waits until it receives messages: a
    /// probe topic of its own is published to until one shows up.
    async fn start(tool: &Path, broker: &TestBroker, args: &[&str], format: &str) -> MosquittoSub {
        assert!(format.starts_with("%t"));
        let client_id = args[args.iter().position(|a| *a == "-i").expect("-i") + 1];
        let probe = format!("probe/{client_id}");
        let mut command = mosquitto(tool, broker.addr);
        command
            .args(args)
            .args(["-t", &probe, "-F"])
            .arg(format!("MSG|{format}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("mosquitto_sub runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut sub = MosquittoSub {
            lines,
            probe,
            _child: child,
        };
        let mut prober = Client::new(broker, &format!("prober-{client_id}")).await;
        let marker = format!("MSG|{}|", sub.probe);
        timeout(WAIT, async {
            loop {
                prober.publish(&Publish::new(&sub.probe, 0, b"probe")).await;
                let line = timeout(Duration::from_millis(100), sub.lines.next_line()).await;
                if let Ok(line) = line {
                    let line = line.unwrap().expect("mosquitto_sub runs on");
                    if line.starts_with(&marker) {
                        return;
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("mosquitto_sub {args:?} receiving in time"));
        sub
    }

    /// The next message line, without its "MSG|" prefix, probes left out.
    async fn next(&mut self) -> String {
        let probe = format!("MSG|{}|", self.probe);
        timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("mosquitto_sub runs on");
                if line.starts_with(&probe) {
                    continue;
                }
                if let Some(message) = line.strip_prefix("MSG|") {
                    return message.to_string();
                }
            }
        })
        .await
        .expect("a message in time")
    }
}

/// MQTT 3.1 (mosquitto -V mqttv31, "MQIsdp" level 3), MQTT 3.1.1, MQTT 5.0 (mosquitto
/// -V mqttv5) and rumqttc's MQTT 5.0 client on one broker: every one of them receives
/// what every one publishes, in all directions between versions.
#[tokio::test]
async fn mqtt_3_1_3_1_1_and_5_0_clients_exchange_messages_in_every_direction() {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    let versions = ["mqttv31", "mqttv311", "mqttv5"];
    let mut subscribers = Vec::new();
    for version in versions {
        let id = format!("mixsub-{version}");
        let args = ["-V", version, "-i", &id, "-t", "mix/#", "-q", "1"];
        subscribers.push(MosquittoSub::start(&sub_tool, &broker, &args, "%t|%p").await);
    }
    let mut rumqttc = Rumqttc::connect(&broker, "mix-rumqttc").await;
    rumqttc.subscribe("mix/#", RQoS::AtLeastOnce, None).await;

    let mut expected = BTreeSet::new();
    for version in versions {
        let (topic, message) = (format!("mix/{version}"), format!("hello from {version}"));
        let mut publisher = mosquitto(&pub_tool, broker.addr);
        publisher
            .args(["-V", version, "-q", "1", "-i"])
            .arg(format!("mixpub-{version}"))
            .args(["-t", &topic, "-m", &message]);
        run_tool(publisher, b"").await;
        expected.insert(format!("{topic}|{message}"));
    }
    rumqttc
        .client
        .publish(
            "mix/rumqttc",
            RQoS::AtLeastOnce,
            false,
            "hello from rumqttc",
        )
        .await
        .unwrap();
    expected.insert("mix/rumqttc|hello from rumqttc".to_string());

    for (version, subscriber) in versions.iter().zip(&mut subscribers) {
        let mut got = BTreeSet::new();
        for _ in 0..expected.len() {
            got.insert(subscriber.next().await);
        }
        assert_eq!(got, expected, "mosquitto_sub -V {version}");
    }
    let mut got = BTreeSet::new();
    for _ in 0..expected.len() {
        let p = rumqttc.next().await;
        got.insert(format!(
            "{}|{}",
            String::from_utf8_lossy(&p.topic),
            String::from_utf8_lossy(&p.payload)
        ));
    }
    assert_eq!(got, expected, "rumqttc v5");
    broker.stop().await;
}

/// rumqttc's MQTT 5.0 client reads the CONNACK properties, and two rumqttc clients
/// exchange a message with its properties (§3.3.2.3) intact plus the subscriber's
/// Subscription Identifier.
#[tokio::test]
async fn rumqttc_v5_clients_exchange_properties() {
    let broker = TestBroker::start().await;
    let mut subscriber = Rumqttc::connect(&broker, "rv5-sub").await;
    let props = subscriber
        .connack
        .properties
        .clone()
        .expect("CONNACK properties");
    assert_eq!(props.receive_max, Some(20));
    assert_eq!(props.topic_alias_max, Some(10));
    assert_eq!(props.shared_subscription_available, Some(1));
    assert_eq!(props.subscription_identifiers_available, Some(1));
    let sub_props = SubscribeProperties {
        id: Some(42),
        user_properties: Vec::new(),
    };
    let ack = subscriber
        .subscribe("rv5/#", RQoS::ExactlyOnce, Some(sub_props))
        .await;
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(RQoS::ExactlyOnce)]
    );

    let publisher = Rumqttc::connect(&broker, "rv5-pub").await;
    let users = vec![
        ("a".to_string(), "1".to_string()),
        ("b".into(), "2".into()),
        ("a".into(), "3".into()),
    ];
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(120),
        response_topic: Some("rv5/reply".into()),
        correlation_data: Some(Bytes::from_static(b"c-1")),
        user_properties: users.clone(),
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    for qos in [RQoS::AtMostOnce, RQoS::AtLeastOnce, RQoS::ExactlyOnce] {
        publisher
            .client
            .publish_with_properties("rv5/x", qos, false, "payload", properties.clone())
            .await
            .unwrap();
        let got = subscriber.next().await;
        assert_eq!(
            (&got.topic[..], &got.payload[..], got.qos),
            (&b"rv5/x"[..], &b"payload"[..], qos)
        );
        let p = got.properties.expect("properties");
        assert_eq!(p.payload_format_indicator, Some(1));
        assert!(
            matches!(p.message_expiry_interval, Some(119..=120)),
            "{p:?}"
        );
        assert_eq!(p.response_topic.as_deref(), Some("rv5/reply"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(p.user_properties, users);
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.subscription_identifiers, [42]);
    }
    broker.stop().await;
}

/// mosquitto_sub -V mqttv5 shows the user properties (in order), content type, payload
/// format indicator, response topic and correlation data of a message rumqttc's MQTT
/// 5.0 client published.
#[tokio::test]
async fn rumqttc_v5_properties_reach_mosquitto_sub_v5() {
    let Some((sub_tool, _)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    let args = [
        "-V",
        "mqttv5",
        "-i",
        "props-sub",
        "-t",
        "props/#",
        "-q",
        "1",
    ];
    let mut sub = MosquittoSub::start(&sub_tool, &broker, &args, "%t|%p|%P|%C|%F|%R|%D").await;
    let publisher = Rumqttc::connect(&broker, "props-rumqttc").await;
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("props/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr-9")),
        user_properties: vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("props/a", RQoS::AtLeastOnce, false, "hello", properties)
        .await
        .unwrap();
    assert_eq!(
        sub.next().await,
        "props/a|hello|k1:v1 k2:v2|text/plain|1|props/reply|corr-9"
    );
    broker.stop().await;
}

/// Properties mosquitto_pub -V mqttv5 sets with -D publish (user properties with a
/// repeated key, content type, response topic, correlation data, message expiry)
/// reach rumqttc's MQTT 5.0 subscriber.
#[tokio::test]
async fn mosquitto_pub_v5_properties_reach_rumqttc_v5() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    let mut subscriber = Rumqttc::connect(&broker, "mp-rumqttc").await;
    subscriber.subscribe("mp/#", RQoS::AtLeastOnce, None).await;
    let mut publisher = mosquitto(&pub_tool, broker.addr);
    publisher.args([
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "mp/x",
        "-m",
        "hi",
        "-D",
        "publish",
        "user-property",
        "origin",
        "mosquitto",
        "-D",
        "publish",
        "user-property",
        "origin",
        "again",
        "-D",
        "publish",
        "content-type",
        "text/plain",
        "-D",
        "publish",
        "response-topic",
        "mp/reply",
        "-D",
        "publish",
        "correlation-data",
        "abc",
        "-D",
        "publish",
        "message-expiry-interval",
        "90",
    ]);
    run_tool(publisher, b"").await;
    let got = subscriber.next().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"mp/x"[..], &b"hi"[..])
    );
    let p = got.properties.expect("properties");
    assert_eq!(
        p.user_properties,
        [
            ("origin".to_string(), "mosquitto".to_string()),
            ("origin".into(), "again".into())
        ]
    );
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("mp/reply"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"abc"[..]));
    assert!(matches!(p.message_expiry_interval, Some(89..=90)), "{p:?}");
    broker.stop().await;
}

/// rumqttc's MQTT 5.0 client allowing topic aliases (Topic Alias Maximum 2 in CONNECT)
/// follows the aliases the broker sets up: every message reaches the application under
/// its full topic, and the repeats arrive by alias (§3.3.2.3.4). (mosquitto_sub 2.0.11
/// cannot be used for this: libmosquitto refuses an empty topic even with an alias it
/// knows, eclipse-mosquitto/mosquitto#1468.)
#[tokio::test]
async fn rumqttc_v5_follows_outbound_topic_aliases() {
    let broker = TestBroker::start().await;
    let mut subscriber = Rumqttc::connect_with(&broker, "ta-rumqttc", |o| {
        o.set_topic_alias_max(Some(2));
    })
    .await;
    subscriber.subscribe("ta/#", RQoS::AtLeastOnce, None).await;
    let mut publisher = Client::new(&broker, "ta-pub").await;
    let mut seen = Vec::new();
    for round in 0..2 {
        for topic in ["ta/one", "ta/two"] {
            let payload = format!("{topic}-{round}");
            publisher
                .publish(&Publish::new(topic, 1, payload.as_bytes()))
                .await;
            let got = subscriber.next().await;
            assert_eq!(&got.topic[..], topic.as_bytes(), "{got:?}");
            assert_eq!(&got.payload[..], payload.as_bytes());
            seen.push(got.properties.and_then(|p| p.topic_alias));
        }
    }
    assert_eq!(seen, [Some(1), Some(2), Some(1), Some(2)]);
    broker.stop().await;
}

/// mosquitto_pub -V mqttv5 -D publish topic-alias, sending several lines (-l) over one
/// connection, sets an alias and then publishes by it; the broker resolves it, and a
/// raw MQTT 5.0 subscriber sees every message under its full topic.
#[tokio::test]
async fn mosquitto_pub_v5_topic_alias_is_resolved() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "tp-sub").await;
    subscriber.subscribe(1, &[("tp/#", 1)]).await;
    let mut publisher = mosquitto(&pub_tool, broker.addr);
    publisher.args([
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "tp/aliased",
        "-l",
        "-D",
        "publish",
        "topic-alias",
        "1",
    ]);
    run_tool(publisher, b"first\nsecond\nthird\n").await;
    for payload in ["first", "second", "third"] {
        let got = subscriber
            .expect_and_complete("tp/aliased", payload.as_bytes())
            .await;
        assert!(got.props.get(TOPIC_ALIAS).is_none(), "{got:?}");
    }
    broker.stop().await;
}
