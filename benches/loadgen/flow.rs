//! The two halves of every scenario: a publisher loop (paced or as fast as allowed,
//! with an in-flight window for QoS 1 and 2) and a subscriber's inbox, which
//! acknowledges, counts, checks sequence numbers and records latency.
//!
//! Every payload starts with a 16-byte stamp: publisher id (u32), sequence number (u32)
//! and send time (u64 nanoseconds since the generator started).

use crate::conn::{timeout_error, Conn};
use crate::mqtt::{self, Packet};
use bytes::{Buf, BufMut};
use hdrhistogram::Histogram;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const STAMP_LEN: usize = 16;
/// Publishes encoded between two writes.
const BATCH: u64 = 64;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Latency histogram in microseconds, 1 µs to 100 s.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, sigfig).expect("valid histogram bounds")
}

/// Which publisher ids and sequence numbers arrived, and how many arrived twice.
#[derive(Default)]
pub struct Tracker {
    seen: Vec<Vec<u64>>,
    pub unique: u64,
    pub duplicates: u64,
}

impl Tracker {
    pub fn record(&mut self, id: u32, seq: u32) {
        let (id, seq) = (id as usize, seq as usize);
        if self.seen.len() <= id {
            self.seen.resize_with(id + 1, Vec::new);
        }
        let bits = &mut self.seen[id];
        if bits.len() <= seq / 64 {
            bits.resize(seq / 64 + 1, 0);
        }
        let mask = 1u64 << (seq % 64);
        if bits[seq / 64] & mask != 0 {
            self.duplicates += 1;
        } else {
            bits[seq / 64] |= mask;
            self.unique += 1;
        }
    }
}

/// What a subscriber received.
pub struct Inbox {
    /// Every PUBLISH, stamped or not.
    pub received: u64,
    pub tracker: Tracker,
    pub latency: Histogram<u64>,
    pub last_at: Option<Instant>,
}

impl Inbox {
    pub fn new(sigfig: u8) -> Inbox {
        Inbox {
            received: 0,
            tracker: Tracker::default(),
            latency: histogram(sigfig),
            last_at: None,
        }
    }

    /// Handles one packet from the broker, queueing any acknowledgement in `out`.
    fn handle(&mut self, packet: Packet, out: &mut bytes::BytesMut) {
        match packet {
            Packet::Publish(p) => {
                match p.qos {
                    1 => mqtt::ack(out, mqtt::PUBACK, p.pkid),
                    2 => mqtt::ack(out, mqtt::PUBREC, p.pkid),
                    _ => {}
                }
                let now = Instant::now();
                self.received += 1;
                self.last_at = Some(now);
                let mut payload = p.payload;
                if payload.len() >= STAMP_LEN {
                    let (id, seq, sent) = (payload.get_u32(), payload.get_u32(), payload.get_u64());
                    self.tracker.record(id, seq);
                    let micros = now_ns().saturating_sub(sent) / 1000;
                    self.latency.saturating_record(micros.max(1));
                }
            }
            Packet::Ack {
                kind: mqtt::PUBREL,
                pkid,
            } => mqtt::ack(out, mqtt::PUBCOMP, pkid),
            _ => {}
        }
    }

    /// Receives until `done` says so (checked after every read and every 50 ms);
    /// reaching `deadline` first is not an error: the caller reads what is missing.
    pub async fn receive(
        &mut self,
        conn: &mut Conn,
        deadline: Instant,
        mut done: impl FnMut(&Inbox) -> bool,
    ) -> io::Result<()> {
        let tick = Duration::from_millis(50);
        while !done(self) && Instant::now() < deadline {
            tokio::select! {
                read = conn.read_more() => read?,
                _ = tokio::time::sleep(tick) => {}
            }
            while let Some(packet) = conn.buffered()? {
                self.handle(packet, &mut conn.out);
            }
            conn.flush().await?;
        }
        Ok(())
    }
}

/// How a publisher runs.
#[derive(Clone)]
pub struct PubSpec {
    pub qos: u8,
    pub retain: bool,
    /// QoS 1/2 messages sent and not yet acknowledged, at most.
    pub window: usize,
    /// Payload bytes (at least the stamp), or 0 for empty payloads (clearing retained).
    pub payload: usize,
    /// Messages per second, or as fast as the window and the socket allow.
    pub rate: Option<f64>,
    /// Stop sending at this time...
    pub until: Option<Instant>,
    /// ...or after this many messages, whichever comes first.
    pub max: u64,
    /// Time allowed after the last send for the outstanding acknowledgements.
    pub drain: Duration,
}

pub struct PubStats {
    pub sent: u64,
    pub started: Instant,
    /// When sending stopped...
    pub stopped: Instant,
    /// ...and when the last acknowledgement came.
    pub finished: Instant,
    /// Publish-to-acknowledgement time of QoS 1/2 messages, in µs.
    pub latency: Histogram<u64>,
}

/// Publishes according to `spec`; `route(i, topic)` writes message i's topic into `topic`
/// and returns its stamp's publisher id and sequence number.
pub async fn publish(
    conn: &mut Conn,
    spec: &PubSpec,
    mut route: impl FnMut(u64, &mut Vec<u8>) -> (u32, u32),
) -> io::Result<PubStats> {
    let started = Instant::now();
    let mut sent_at = vec![started; 65536];
    let mut latency = histogram(3);
    let mut payload = vec![
        0u8;
        if spec.payload == 0 {
            0
        } else {
            spec.payload.max(STAMP_LEN)
        }
    ];
    let mut topic = Vec::new();
    let (mut sent, mut inflight) = (0u64, 0usize);
    let due = |now: Instant| match spec.rate {
        Some(rate) => ((now - started).as_secs_f64() * rate) as u64 + 1,
        None => u64::MAX,
    };
    let mut stop_at = None;
    // Last send or acknowledgement: waiting for acks longer than spec.drain is an error.
    let mut progress = started;
    loop {
        let now = Instant::now();
        let stopping = sent >= spec.max || spec.until.is_some_and(|t| now >= t);
        if stopping && stop_at.is_none() {
            stop_at = Some(now);
        }
        let mut room = 0;
        if !stopping {
            room = BATCH
                .min(spec.max - sent)
                .min(due(now).saturating_sub(sent));
            if spec.qos > 0 {
                room = room.min((spec.window - inflight) as u64);
            }
        }
        for _ in 0..room {
            topic.clear();
            let (id, seq) = route(sent, &mut topic);
            if !payload.is_empty() {
                let mut stamp = &mut payload[..STAMP_LEN];
                stamp.put_u32(id);
                stamp.put_u32(seq);
                stamp.put_u64(now_ns());
            }
            let pkid = if spec.qos > 0 { conn.next_pkid() } else { 0 };
            mqtt::publish(&mut conn.out, &topic, spec.qos, spec.retain, pkid, &payload);
            if spec.qos > 0 {
                sent_at[pkid as usize] = Instant::now();
                inflight += 1;
            }
            sent += 1;
            progress = now;
        }
        conn.flush().await?;
        if stopping && inflight == 0 {
            break;
        }
        // Read acknowledgements: without waiting while there is more to send, else until
        // something arrives or the next message is due.
        let can_send =
            !stopping && (spec.qos == 0 || inflight < spec.window) && due(Instant::now()) > sent;
        if can_send {
            if spec.qos > 0 {
                conn.try_read_more()?;
            }
        } else {
            let waiting_for_acks = stopping || (spec.qos > 0 && inflight >= spec.window);
            let wake = if waiting_for_acks {
                if Instant::now() >= progress + spec.drain {
                    return Err(timeout_error(&format!(
                        "{inflight} acknowledgements still missing"
                    )));
                }
                progress + spec.drain
            } else {
                let next =
                    started + Duration::from_secs_f64(sent as f64 / spec.rate.unwrap_or(1e9));
                spec.until.map_or(next, |u| next.min(u))
            };
            if spec.qos > 0 {
                tokio::select! {
                    read = conn.read_more() => read?,
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
            } else {
                tokio::time::sleep_until(wake.into()).await;
            }
        }
        while let Some(packet) = conn.buffered()? {
            if let Packet::Ack { kind, pkid } = packet {
                match kind {
                    mqtt::PUBREC => mqtt::ack(&mut conn.out, mqtt::PUBREL, pkid),
                    mqtt::PUBACK | mqtt::PUBCOMP => {
                        inflight = inflight.saturating_sub(1);
                        progress = Instant::now();
                        let micros = sent_at[pkid as usize].elapsed().as_micros() as u64;
                        latency.saturating_record(micros.max(1));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(PubStats {
        sent,
        started,
        stopped: stop_at.unwrap_or(started),
        finished: Instant::now(),
        latency,
    })
}
