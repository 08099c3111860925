//! The HTTP API's query parser fed arbitrary request targets, with every accessor the
//! endpoints use: it never panics, and what it accepts is within its limits.

#![no_main]

use std::sync::{Arc, OnceLock};

use herald::broker::Broker;
use herald::config::Config;
use herald::http::query::{Query, MAX_FILTERS};
use herald::storage::MemoryStorage;
use libfuzzer_sys::fuzz_target;

fn broker() -> &'static Arc<Broker> {
    static BROKER: OnceLock<Arc<Broker>> = OnceLock::new();
    BROKER.get_or_init(|| {
        let config = Config::default();
        Broker::new(
            config.mqtt.clone(),
            &config.http,
            Arc::new(MemoryStorage::default()),
        )
        .expect("a broker")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = hyper::Uri::try_from(format!("/events?{text}")) else {
        return;
    };
    let Ok(query) = Query::of(&uri) else {
        return;
    };
    let _ = query.single("callback");
    let _ = query.flag("retained", true);
    let _ = query.number("last_event_id");
    let _ = query.number("timeout");
    if let Ok(filters) = query.filters(broker()) {
        assert!(!filters.is_empty() && filters.len() <= MAX_FILTERS);
        assert!(filters.iter().all(|f| f.share().is_none()));
    }
});
