//! `$SYS` topics, in Mosquitto's names, published retained every `sys_interval`
//! seconds: what a Mosquitto user's dashboards and scripts already read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::message::{Message, Stamp};
use crate::protocol::QoS;
use crate::stats::Totals;
use crate::topic::TopicName;

/// Load averages over 1, 5 and 15 minutes of one total's rate per minute, as
/// Mosquitto's `$SYS/broker/load/…` give them.
#[derive(Default)]
struct Load {
    averages: [f64; 3],
}

impl Load {
    const WINDOWS: [(f64, &'static str); 3] = [(1.0, "1min"), (5.0, "5min"), (15.0, "15min")];

    /// Folds in `delta` counted over `interval`.
    fn update(&mut self, delta: u64, interval: Duration) {
        let minutes = interval.as_secs_f64() / 60.0;
        let per_minute = delta as f64 / minutes;
        for (average, (window, _)) in self.averages.iter_mut().zip(Load::WINDOWS) {
            let keep = (-minutes / window).exp();
            *average = *average * keep + per_minute * (1.0 - keep);
        }
    }
}

/// Publishes the `$SYS` topics every `interval` until the server stops.
pub async fn publish_every(
    broker: Arc<Broker>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    let mut last = broker.stats.totals();
    let mut loads: [Load; 5] = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|&stopping| stopping) => return,
        }
        let now = broker.stats.totals();
        let deltas = [
            (
                "messages/received",
                now.received_all() - last.received_all(),
            ),
            ("messages/sent", now.sent_all() - last.sent_all()),
            ("bytes/received", now.bytes_received - last.bytes_received),
            ("bytes/sent", now.bytes_sent - last.bytes_sent),
            ("connections", now.connections - last.connections),
        ];
        let mut topics = values(&broker, &now);
        for (load, (name, delta)) in loads.iter_mut().zip(deltas) {
            load.update(delta, interval);
            for (average, (_, window)) in load.averages.iter().zip(Load::WINDOWS) {
                topics.push((format!("load/{name}/{window}"), format!("{average:.2}")));
            }
        }
        for (name, value) in topics {
            publish(&broker, &name, value);
        }
        last = now;
    }
}

/// The `$SYS/broker/…` topics other than the load averages, and their values.
fn values(broker: &Broker, totals: &Totals) -> Vec<(String, String)> {
    let census = broker.census();
    let received = totals.received_all();
    let sent = totals.sent_all();
    [
        (
            "version",
            format!("herald version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime",
            format!("{} seconds", broker.started.elapsed().as_secs()),
        ),
        ("clients/connected", census.online.to_string()),
        ("clients/disconnected", census.offline.to_string()),
        (
            "clients/total",
            (census.online + census.offline).to_string(),
        ),
        ("messages/received", received.to_string()),
        ("messages/sent", sent.to_string()),
        ("publish/messages/received", received.to_string()),
        ("publish/messages/sent", sent.to_string()),
        ("bytes/received", totals.bytes_received.to_string()),
        ("bytes/sent", totals.bytes_sent.to_string()),
        (
            "messages/stored",
            (census.queued + census.inflight).to_string(),
        ),
        ("retained messages/count", census.retained.to_string()),
        ("subscriptions/count", census.subscriptions.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn publish(broker: &Broker, name: &str, value: String) {
    let topic = ByteString::from(format!("$SYS/broker/{name}"));
    let Ok(topic) = TopicName::new(topic) else {
        return;
    };
    let message = Message {
        topic,
        payload: Bytes::from(value),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: None,
        published_at: Stamp::now(),
    };
    let _ = broker.publish(message, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_brings_every_average_towards_it() {
        let mut load = Load::default();
        // 100 a second for three hours, in ten-second steps: 6,000 a minute.
        for _ in 0..1080 {
            load.update(1000, Duration::from_secs(10));
        }
        for average in load.averages {
            assert!((average - 6000.0).abs() < 60.0, "{average}");
        }
        load.update(0, Duration::from_secs(60));
        // The 1-minute average falls fastest.
        assert!(load.averages[0] < load.averages[1] && load.averages[1] < load.averages[2]);
    }
}
