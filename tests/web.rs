//! The HTTP API through the wire: Server-Sent Events with resume, long and short
//! polling, HTTP publish, the iframe stream and CORS, read with hyper's HTTP client
//! while MQTT clients (raw bytes, rumqttc, mosquitto_pub/mosquitto_sub) publish and
//! subscribe beside it.

mod common;
#[path = "common/v5/mod.rs"]
mod v5;

#[path = "web/errors.rs"]
mod errors;
#[path = "web/events.rs"]
mod events;
#[path = "web/http2.rs"]
mod http2;
#[path = "web/polling.rs"]
mod polling;
#[path = "web/publish.rs"]
mod publish;
#[path = "web/restart.rs"]
mod restart;

use std::net::SocketAddr;

use common::TestBroker;
use herald::config::Config;

/// A broker with its TCP listener and an HTTP one (whose address is returned), with the
/// test defaults changed by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> (TestBroker, SocketAddr) {
    TestBroker::start_with_http(tweak).await
}

pub use common::web::encode;
