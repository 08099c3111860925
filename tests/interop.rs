//! Interoperability with independent clients: rumqttc, and Debian's mosquitto_pub and
//! mosquitto_sub.

mod common;

use std::time::Duration;

use common::tools::{mosquitto, mosquitto_tools, run_tool};
use common::{TestBroker, WAIT};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A rumqttc client whose event loop runs in a task, forwarding what it receives.
struct Client {
    client: AsyncClient,
    /// The session-present flag of the CONNACK.
    session_present: bool,
    publishes: mpsc::UnboundedReceiver<Publish>,
    subacks: mpsc::UnboundedReceiver<()>,
    events: JoinHandle<()>,
}

impl Client {
    async fn connect(
        broker: &TestBroker,
        id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        configure(&mut options);
        let (client, event_loop) = AsyncClient::new(options, 100);
        let (acks, mut connacks) = mpsc::unbounded_channel();
        let (deliveries, publishes) = mpsc::unbounded_channel();
        let (subscribed, subacks) = mpsc::unbounded_channel();
        let events = tokio::spawn(pump(event_loop, acks, deliveries, subscribed));
        let session_present = timeout(WAIT, connacks.recv())
            .await
            .expect("CONNACK in time")
            .expect("event loop running");
        Client {
            client,
            session_present,
            publishes,
            subacks,
            events,
        }
    }

    /// Subscribes and waits for the SUBACK.
    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        timeout(WAIT, self.subacks.recv())
            .await
            .expect("SUBACK in time")
            .expect("event loop running");
    }

    async fn next(&mut self) -> Publish {
        timeout(WAIT, self.publishes.recv())
            .await
            .expect("a message in time")
            .expect("event loop running")
    }

    /// Ends the connection without DISCONNECT, as a crash or a lost network would.
    fn drop_connection(self) {
        self.events.abort();
    }
}

async fn pump(
    mut event_loop: EventLoop,
    acks: mpsc::UnboundedSender<bool>,
    deliveries: mpsc::UnboundedSender<Publish>,
    subscribed: mpsc::UnboundedSender<()>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let _ = acks.send(ack.session_present);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = subscribed.send(());
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let _ = deliveries.send(publish);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[tokio::test]
async fn rumqttc_clients_exchange_messages_at_every_qos() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::connect(&broker, "rumqttc-sub", |_| {}).await;
    subscriber.subscribe("sensors/#", QoS::ExactlyOnce).await;
    let publisher = Client::connect(&broker, "rumqttc-pub", |_| {}).await;
    let binary: Vec<u8> = (0..=255).collect();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("sensors/qos{}", qos as u8);
        publisher
            .client
            .publish(&topic, qos, false, binary.clone())
            .await
            .unwrap();
        let got = subscriber.next().await;
        assert_eq!(got.topic, topic);
        assert_eq!(got.qos, qos);
        assert_eq!(&got.payload[..], &binary[..]);
        assert!(!got.retain);
    }
    broker.stop().await;
}

#[tokio::test]
async fn rumqttc_persistent_session_gets_what_was_published_while_offline() {
    let broker = TestBroker::start().await;
    let persistent = |o: &mut MqttOptions| {
        o.set_clean_session(false);
    };
    let mut subscriber = Client::connect(&broker, "offline-sub", persistent).await;
    assert!(!subscriber.session_present);
    subscriber.subscribe("jobs/+", QoS::ExactlyOnce).await;
    subscriber.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let publisher = Client::connect(&broker, "offline-pub", |_| {}).await;
    for i in 0..10u8 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .client
            .publish(format!("jobs/{i}"), qos, false, vec![i])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut back = Client::connect(&broker, "offline-sub", persistent).await;
    assert!(back.session_present);
    for i in 0..10u8 {
        let got = back.next().await;
        assert_eq!(got.topic, format!("jobs/{i}"));
        assert_eq!(&got.payload[..], &[i]);
    }
    assert!(
        timeout(Duration::from_millis(300), back.publishes.recv())
            .await
            .is_err(),
        "nothing more"
    );
    broker.stop().await;
}

#[tokio::test]
async fn rumqttc_will_is_published_when_a_client_vanishes() {
    let broker = TestBroker::start().await;
    let mut watcher = Client::connect(&broker, "watcher", |_| {}).await;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await;
    let doomed = Client::connect(&broker, "doomed", |o| {
        o.set_last_will(LastWill::new(
            "status/doomed",
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
    })
    .await;
    doomed.drop_connection();
    let will = watcher.next().await;
    assert_eq!(will.topic, "status/doomed");
    assert_eq!(&will.payload[..], b"gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);

    // A clean DISCONNECT discards the will.
    let polite = Client::connect(&broker, "polite", |o| {
        o.set_last_will(LastWill::new(
            "status/polite",
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
    })
    .await;
    polite.client.disconnect().await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), watcher.publishes.recv())
            .await
            .is_err()
    );
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_and_sub_exchange_messages_at_every_qos() {
    mosquitto_exchange("mqttv311", "mqttv311").await;
}

/// MQTT 3.1 and 3.1.1 clients on one broker, both directions.
#[tokio::test]
async fn mosquitto_mqtt_3_1_and_3_1_1_clients_exchange_messages() {
    mosquitto_exchange("mqttv31", "mqttv311").await;
    mosquitto_exchange("mqttv311", "mqttv31").await;
}

/// mosquitto_sub speaking `sub_version` receives, at every QoS, what mosquitto_pub
/// speaking `pub_version` publishes.
async fn mosquitto_exchange(sub_version: &str, pub_version: &str) {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    for qos in ["0", "1", "2"] {
        let mut sub = mosquitto(&sub_tool, broker.addr);
        sub.args([
            "-V",
            sub_version,
            "-t",
            "mosq/#",
            "-q",
            qos,
            "-C",
            "1",
            "-v",
            "-i",
        ])
        .arg(format!("mosq-sub-{qos}"));
        let subscriber = tokio::spawn(run_tool(sub, b""));
        // Publish until the subscriber has subscribed and exits with the message.
        let message = format!("hello at qos {qos}");
        let mut publish = tokio::time::interval(Duration::from_millis(100));
        let output = loop {
            publish.tick().await;
            if subscriber.is_finished() {
                break subscriber.await.unwrap();
            }
            let mut pubc = mosquitto(&pub_tool, broker.addr);
            pubc.args(["-V", pub_version, "-t", "mosq/x", "-q", qos, "-m", &message]);
            run_tool(pubc, b"").await;
        };
        assert_eq!(
            output.trim_end(),
            format!("mosq/x {message}"),
            "{pub_version} -> {sub_version}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_retained_message_reaches_a_later_subscriber_and_rumqttc() {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let broker = TestBroker::start().await;
    let mut pubc = mosquitto(&pub_tool, broker.addr);
    pubc.args(["-t", "retained/t", "-q", "1", "-r", "-m", "kept"]);
    run_tool(pubc, b"").await;

    let mut sub = mosquitto(&sub_tool, broker.addr);
    sub.args(["-t", "retained/#", "-C", "1", "-v", "-F", "%t %p %r"]);
    assert_eq!(run_tool(sub, b"").await.trim_end(), "retained/t kept 1");

    let mut reader = Client::connect(&broker, "rumqttc-reader", |_| {}).await;
    reader.subscribe("retained/t", QoS::AtLeastOnce).await;
    let got = reader.next().await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"kept");
    broker.stop().await;
}
