//! Counters and gauges, recorded with the `metrics` crate and served at `GET /metrics`
//! in Prometheus's text format.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// SSE and iframe streams ended because their reader fell too far behind.
pub const WEB_READERS_CUT_OFF: &str = "herald_web_readers_cut_off_total";
/// Web readers (SSE, iframe and long-poll requests) registered now.
pub const WEB_READERS: &str = "herald_web_readers";
/// Times a client reached a limit, by `limit`: `publish_rate` (it was slowed down),
/// `connections` (refused at accept).
pub const LIMIT_HITS: &str = "herald_limit_hits_total";
/// Messages not delivered to a client, by `reason`: `queue_full`.
pub const MESSAGES_DROPPED: &str = "herald_messages_dropped_total";

/// The exposition of everything recorded in this process. The first call installs the
/// recorder; where another one was installed first (an embedding program's), this
/// renders what Herald's own recorder holds, which is then nothing.
pub fn render() -> String {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .render()
}

/// Installs the recorder, so that what happens before the first scrape is counted.
pub fn install() {
    let _ = render();
}
