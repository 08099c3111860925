//! Counters, gauges and histograms, recorded with the `metrics` crate and served at
//! `GET /metrics` in Prometheus's text format. What the broker keeps as running totals
//! (see `stats`) and what it holds (its census) are read at each scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::broker::Broker;

/// SSE and iframe streams ended because their reader fell too far behind.
pub const WEB_READERS_CUT_OFF: &str = "herald_web_readers_cut_off_total";
/// Web readers (SSE, iframe and long-poll requests) registered now.
pub const WEB_READERS: &str = "herald_web_readers";
/// Times a client reached a limit, by `limit`: `publish_rate` (it was slowed down),
/// `connections` (refused at accept).
pub const LIMIT_HITS: &str = "herald_limit_hits_total";
/// Messages not delivered to a client, by `reason`: `queue_full`, `expired` (Message
/// Expiry Interval), `too_large` (over the client's Maximum Packet Size),
/// `not_authorized` (the ACL does not let it read the topic).
pub const MESSAGES_DROPPED: &str = "herald_messages_dropped_total";
/// Failed logins (MQTT and HTTP).
pub const AUTH_FAILURES: &str = "herald_auth_failures_total";
/// Connections open now, by `listener` (its address).
pub const LISTENER_CONNECTIONS: &str = "herald_listener_connections";
/// How long each storage flush took.
pub const STORAGE_FLUSH: &str = "herald_storage_flush_seconds";
/// From a message's arrival to its PUBLISH being written for a subscriber, sampled: the
/// first message of each write to a connection.
pub const DELIVERY_LATENCY: &str = "herald_delivery_latency_seconds";

/// Bucket bounds of the histograms (every metric in seconds), in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0, 10.0,
];

fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The exposition of everything recorded in this process, with `broker`'s totals and
/// census. Where another recorder was installed first (an embedding program's), only
/// what Herald's own recorder holds, which is then nothing.
pub fn render(broker: &Broker) -> String {
    let handle = handle();
    let totals = broker.stats.totals();
    let census = broker.census();
    metrics::gauge!("herald_uptime_seconds").set(broker.started.elapsed().as_secs_f64());
    metrics::gauge!("herald_connections").set(broker.clients.count() as f64);
    metrics::counter!("herald_connections_total").absolute(totals.connections);
    for (reason, n) in [
        ("auth", totals.refused_auth),
        ("other", totals.refused_other),
    ] {
        metrics::counter!("herald_connections_refused_total", "reason" => reason).absolute(n);
    }
    for (qos, (received, sent)) in ["0", "1", "2"]
        .into_iter()
        .zip(totals.received.into_iter().zip(totals.sent))
    {
        metrics::counter!("herald_messages_received_total", "qos" => qos).absolute(received);
        metrics::counter!("herald_messages_sent_total", "qos" => qos).absolute(sent);
    }
    metrics::counter!("herald_received_bytes_total").absolute(totals.bytes_received);
    metrics::counter!("herald_sent_bytes_total").absolute(totals.bytes_sent);
    metrics::gauge!("herald_sessions", "state" => "online").set(census.online as f64);
    metrics::gauge!("herald_sessions", "state" => "offline").set(census.offline as f64);
    metrics::gauge!("herald_messages_queued").set(census.queued as f64);
    metrics::gauge!("herald_messages_inflight").set(census.inflight as f64);
    metrics::gauge!("herald_retained_messages").set(census.retained as f64);
    metrics::gauge!("herald_subscriptions").set(census.subscriptions as f64);
    handle.render()
}

/// Installs the recorder, so that what happens before the first scrape is counted.
pub fn install() {
    let _ = handle();
}
