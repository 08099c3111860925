//! Session enqueue: `SessionState::offer` of a batch of messages, then `drain` into a
//! reused output buffer with the default in-flight window of 20, acknowledging QoS 1
//! messages with `puback` as a client would, until the batch is all on the wire.
//!
//! The state is driven through `Session::lock`, as the broker and connection tasks do,
//! so the (uncontended) mutex is part of each step.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald::config::QueueFull;
use herald::message::Message;
use herald::protocol::{Encoder, ProtocolVersion, QoS};
use herald::session::{Acked, Attachment, Offer, QueueLimits, Session, SessionExpiry};
use herald::topic::TopicName;

/// Messages offered, then drained, per iteration.
const BATCH: usize = 100;
/// The broker's default `max_inflight_messages`.
const WINDOW: usize = 20;
/// The connection drains up to this many output bytes at a time (its `LOW_WATER`).
const HIGH_WATER: usize = 32 * 1024;
const LIMITS: QueueLimits = QueueLimits {
    messages: 1000,
    bytes: 1 << 20,
    full: QueueFull::PausePublishers,
};

/// A session with a connection attached, so QoS 0 messages are queued too.
fn connected_session() -> Session {
    let session = Session::new(ByteString::from_static("bench-client"), SessionExpiry::NONE);
    session.set_attachment(&mut session.lock(), Some(Attachment::new(1, None)));
    session
}

fn message(qos: QoS) -> Message {
    Message {
        topic: TopicName::new(ByteString::from_static("site/12/dev/34/temp")).unwrap(),
        payload: Bytes::from_static(&[b'x'; 32]),
        qos,
        retain: false,
        properties: None,
        published_at: herald::message::Stamp::now(),
    }
}

/// The packet id the session gives next after `pkid` (ids wrap from 65535 to 1).
fn next_pkid(pkid: u16) -> u16 {
    pkid.checked_add(1).unwrap_or(1)
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));

    for (name, qos) in [
        ("offer_drain_qos0_x100", QoS::AtMostOnce),
        ("offer_drain_puback_qos1_x100", QoS::AtLeastOnce),
    ] {
        let session = connected_session();
        let message = message(qos);
        let mut out = BytesMut::with_capacity(2 * HIGH_WATER);
        let mut encoder = Encoder::new(ProtocolVersion::V311);
        // The oldest packet id in flight, if the client has been sent any.
        let mut unacked = 1u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let offered = session.lock().offer(message.clone(), None, LIMITS);
                    assert!(matches!(offered, Offer::Queued { .. }), "{offered:?}");
                }
                loop {
                    out.clear();
                    session
                        .lock()
                        .drain(WINDOW, &mut encoder, &mut out, HIGH_WATER);
                    if out.is_empty() {
                        break;
                    }
                    black_box(&out);
                    if qos == QoS::AtLeastOnce {
                        // Acknowledge, in order, everything just sent.
                        let mut state = session.lock();
                        while let Acked::Done(seq) = state.puback(unacked) {
                            black_box(seq);
                            unacked = next_pkid(unacked);
                        }
                    }
                }
            })
        });
        // Every message went out and every QoS 1 one was acknowledged.
        out.clear();
        let mut state = session.lock();
        state.resend_inflight();
        state.drain(WINDOW, &mut encoder, &mut out, HIGH_WATER);
        assert!(out.is_empty(), "{name}: messages left in flight");
    }
    group.finish();
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
