//! Packet decode and encode: a stream of small QoS 0/1 PUBLISH packets decoded from one
//! buffer, one 64 KiB PUBLISH decoded, PUBLISH encoded with `Encoder::publish` into a
//! reused buffer, and PUBACK encoded; all MQTT 3.1.1.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald::protocol::{
    Ack, DecodeError, Decoder, Encoder, Packet, PropertyFields, ProtocolVersion, PublishHeader,
    QoS, MAX_REMAINING_LENGTH,
};

/// Packets in the decoded stream.
const STREAM: usize = 1000;
const LARGE: usize = 64 * 1024;

fn decode(buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
    Decoder::new(ProtocolVersion::V311, MAX_REMAINING_LENGTH).decode(buf)
}

/// Appends a PUBLISH without properties.
fn encode_publish(
    encoder: &mut Encoder,
    h: PublishHeader,
    topic: &str,
    payload: &[u8],
    buf: &mut BytesMut,
) {
    encoder.publish(h, topic, payload, &PropertyFields::default(), buf);
}

fn header(qos: QoS, pkid: u16) -> PublishHeader {
    PublishHeader {
        dup: false,
        qos,
        retain: false,
        pkid,
    }
}

/// `STREAM` PUBLISH packets, alternately QoS 0 and 1, with 16 to 79 byte payloads on
/// topics like `site/12/dev/34/temp`.
fn small_stream() -> Bytes {
    let mut buf = BytesMut::new();
    let mut encoder = Encoder::new(ProtocolVersion::V311);
    for i in 0..STREAM {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let topic = format!("site/{}/dev/{}/temp", i % 100, i % 125);
        let payload = vec![b'x'; 16 + i % 64];
        encode_publish(
            &mut encoder,
            header(qos, (i % 65535 + 1) as u16),
            &topic,
            &payload,
            &mut buf,
        );
    }
    buf.freeze()
}

fn large_publish() -> Bytes {
    let mut buf = BytesMut::new();
    let payload = vec![0xa5; LARGE];
    encode_publish(
        &mut Encoder::new(ProtocolVersion::V311),
        header(QoS::AtLeastOnce, 7),
        "site/1/dev/2/firmware",
        &payload,
        &mut buf,
    );
    buf.freeze()
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let stream = small_stream();
    group.throughput(Throughput::Elements(STREAM as u64));
    group.bench_function("publish_stream_1000", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut count = 0;
                while let Some(packet) = decode(&mut buf).unwrap() {
                    black_box(packet);
                    count += 1;
                }
                assert_eq!(count, STREAM);
            },
            BatchSize::SmallInput,
        )
    });

    let large = large_publish();
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("publish_64KiB", |b| {
        b.iter_batched(
            || BytesMut::from(&large[..]),
            |mut buf| match decode(&mut buf).unwrap() {
                Some(Packet::Publish(p)) => black_box(p),
                other => panic!("expected a PUBLISH, got {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let topic = "site/12/dev/34/temp";
    let mut buf = BytesMut::with_capacity(2 * LARGE);
    let mut encoder = Encoder::new(ProtocolVersion::V311);

    let small = vec![b'x'; 32];
    for (name, qos) in [
        ("publish_qos0_32B", QoS::AtMostOnce),
        ("publish_qos1_32B", QoS::AtLeastOnce),
    ] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                encode_publish(
                    &mut encoder,
                    header(qos, 42),
                    black_box(topic),
                    black_box(&small),
                    &mut buf,
                );
                black_box(buf.len())
            })
        });
    }

    let large = vec![0xa5; LARGE];
    group.throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("publish_qos1_64KiB", |b| {
        b.iter(|| {
            buf.clear();
            encode_publish(
                &mut encoder,
                header(QoS::AtLeastOnce, 42),
                black_box(topic),
                black_box(&large),
                &mut buf,
            );
            black_box(buf.len())
        })
    });

    group.throughput(Throughput::Elements(1));
    let mut pkid = 0u16;
    group.bench_function("puback", |b| {
        b.iter(|| {
            buf.clear();
            pkid = pkid.wrapping_add(1);
            encoder.encode(&Packet::PubAck(Ack::new(black_box(pkid))), &mut buf);
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decoding, encoding);
criterion_main!(benches);
