//! The scenarios. Each connects its clients, runs for a bounded time or message count,
//! and returns a `Report`; topics and client ids carry a per-run tag so runs never meet.

use crate::args::Args;
use crate::conn::Conn;
use crate::flow::{self, Inbox, PubSpec, PubStats};
use crate::mqtt;
use crate::report::Report;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub type Fail = Box<dyn std::error::Error + Send + Sync>;
pub type Outcome = Result<Report, Fail>;

/// Connection attempts in flight at once (stays well under listen backlogs).
pub const CONNECT_CONCURRENCY: usize = 200;
/// Subscribers stop this long after the last delivery once the publishers are done.
pub const QUIET: Duration = Duration::from_secs(1);
/// Extra time a run may take to deliver after the publishers stop.
const DELIVERY_GRACE: Duration = Duration::from_secs(20);
/// Pause before a memory reading that should see the broker at rest.
const SETTLE: Duration = Duration::from_secs(1);

pub fn tag() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{}x{}", std::process::id(), ms % 100_000_000)
}

/// Opens one connection per id, `CONNECT_CONCURRENCY` at a time, each subscribed to
/// `filter` if given; in the order of `ids`.
async fn connect_many(
    addr: SocketAddr,
    ids: Vec<String>,
    clean: bool,
    filter: Option<(String, u8)>,
    read_chunk: usize,
) -> Result<Vec<Conn>, Fail> {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let (permits, filter) = (permits.clone(), filter.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (mut conn, _) = Conn::open(addr, &id, clean).await?;
            conn.set_read_chunk(read_chunk);
            if let Some((filter, qos)) = filter {
                conn.subscribe(&[&filter], qos).await?;
            }
            Ok::<_, std::io::Error>((i, conn))
        });
    }
    let mut conns = Vec::new();
    while let Some(joined) = set.join_next().await {
        conns.push(joined??);
    }
    conns.sort_by_key(|(i, _)| *i);
    Ok(conns.into_iter().map(|(_, c)| c).collect())
}

/// Runs one publisher per connection, publisher i on `topic(i)` with stamp id i, and
/// sends DISCONNECT when each is done.
pub async fn run_publishers(
    conns: Vec<Conn>,
    spec: &PubSpec,
    topic: impl Fn(u32) -> String,
) -> Result<Vec<PubStats>, Fail> {
    let mut set = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (spec, topic) = (spec.clone(), topic(i as u32));
        set.spawn(async move {
            let stats = flow::publish(&mut conn, &spec, |k, buf| {
                buf.extend_from_slice(topic.as_bytes());
                (i as u32, k as u32)
            })
            .await?;
            conn.disconnect().await?;
            Ok::<_, std::io::Error>(stats)
        });
    }
    let mut stats = Vec::new();
    while let Some(joined) = set.join_next().await {
        stats.push(joined??);
    }
    Ok(stats)
}

pub fn pub_spec(a: &Args, qos: u8, rate: Option<f64>) -> Result<PubSpec, Fail> {
    Ok(PubSpec {
        qos,
        retain: false,
        window: a.num("window", 16)?.max(1) as usize,
        payload: a.num("payload", 64)? as usize,
        rate,
        until: None,
        max: a.num("max", 10_000_000)?,
        drain: Duration::from_secs(30),
    })
}

/// Who takes part in a [`PubSub`] run.
struct Shape {
    publishers: u64,
    subscribers: u64,
    /// The QoS subscribers ask for.
    sub_qos: u8,
    /// Subscribers start clean sessions (persistent ones otherwise).
    clean: bool,
}

impl Shape {
    fn new(publishers: u64, subscribers: u64, sub_qos: u8) -> Shape {
        Shape {
            publishers,
            subscribers,
            sub_qos,
            clean: true,
        }
    }
}

/// Publishers on `lg/TAG/i`, subscribers on `lg/TAG/+`: what was sent and received.
struct PubSub {
    start: Instant,
    pubs: Vec<PubStats>,
    inboxes: Vec<Inbox>,
}

impl PubSub {
    async fn run(
        addr: SocketAddr,
        shape: Shape,
        mut spec: PubSpec,
        duration: Duration,
        sigfig: u8,
    ) -> Result<PubSub, Fail> {
        let Shape {
            publishers,
            subscribers,
            sub_qos,
            clean,
        } = shape;
        let tag = tag();
        let sub_ids = (0..subscribers).map(|i| format!("lg-{tag}-s{i}")).collect();
        let filter = Some((format!("lg/{tag}/+"), sub_qos));
        let chunk = if subscribers > 100 { 2048 } else { 64 * 1024 };
        let subs = connect_many(addr, sub_ids, clean, filter, chunk).await?;
        let pub_ids = (0..publishers).map(|i| format!("lg-{tag}-p{i}")).collect();
        let pubs = connect_many(addr, pub_ids, true, None, 64 * 1024).await?;

        // Once the publishers are done: how many each subscriber should get, and when.
        let (finished_tx, finished_rx) = watch::channel(None::<(u64, Instant)>);
        let start = Instant::now();
        let deadline = start + duration + DELIVERY_GRACE;
        let mut receivers = JoinSet::new();
        for mut conn in subs {
            let finished = finished_rx.clone();
            receivers.spawn(async move {
                let mut inbox = Inbox::new(sigfig);
                inbox
                    .receive(&mut conn, deadline, |inbox| match *finished.borrow() {
                        None => false,
                        Some((expected, at)) => {
                            let last = inbox.last_at.map_or(at, |l| l.max(at));
                            inbox.tracker.unique >= expected || last.elapsed() > QUIET
                        }
                    })
                    .await?;
                conn.disconnect().await?;
                Ok::<_, std::io::Error>(inbox)
            });
        }
        spec.until = Some(start + duration);
        let pubs = run_publishers(pubs, &spec, |i| format!("lg/{tag}/{i}")).await?;
        let sent = pubs.iter().map(|p| p.sent).sum();
        finished_tx.send_replace(Some((sent, Instant::now())));
        let mut inboxes = Vec::new();
        while let Some(joined) = receivers.join_next().await {
            inboxes.push(joined??);
        }
        Ok(PubSub {
            start,
            pubs,
            inboxes,
        })
    }

    fn sent(&self) -> u64 {
        self.pubs.iter().map(|p| p.sent).sum()
    }

    fn last_delivery(&self) -> Instant {
        let last = self.inboxes.iter().filter_map(|i| i.last_at).max();
        last.unwrap_or(self.start)
    }

    fn publishers_stopped(&self) -> Instant {
        let stopped = self.pubs.iter().map(|p| p.stopped).max();
        stopped.unwrap_or(self.start)
    }

    /// Deliveries per second, from the first publish to the last delivery.
    fn delivery_rate(&self) -> f64 {
        let delivered: u64 = self.inboxes.iter().map(|i| i.tracker.unique).sum();
        delivered as f64 / (self.last_delivery() - self.start).as_secs_f64().max(1e-6)
    }

    fn latency(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = flow::histogram(3);
        for inbox in &self.inboxes {
            let _ = all.add(&inbox.latency);
        }
        all
    }

    /// Counts sent, delivered, lost and duplicated messages; loss at QoS ≥ 1 and any
    /// duplicate fail the run.
    fn check(&self, report: &mut Report, qos: u8) {
        let expected = self.sent() * self.inboxes.len() as u64;
        let delivered: u64 = self.inboxes.iter().map(|i| i.tracker.unique).sum();
        let duplicates: u64 = self.inboxes.iter().map(|i| i.tracker.duplicates).sum();
        check_delivery(report, qos, expected, delivered, duplicates);
    }
}

fn check_delivery(report: &mut Report, qos: u8, expected: u64, delivered: u64, duplicates: u64) {
    let lost = expected.saturating_sub(delivered);
    report.add("sent", expected as f64);
    report.add("delivered", delivered as f64);
    report.add("lost", lost as f64);
    report.add("duplicates", duplicates as f64);
    if qos > 0 && lost > 0 {
        report.fail(format!("{lost} of {expected} QoS {qos} messages lost"));
    }
    if duplicates > 0 {
        report.fail(format!("{duplicates} messages delivered twice"));
    }
}

/// P publishers → 1 subscriber as fast as the window allows: delivered msg/s. With
/// `--persistent 1` the subscriber's session is persistent, so a broker that stores
/// such sessions writes every QoS 1/2 message before acknowledging it.
pub async fn fan_in(a: &Args) -> Outcome {
    let qos = a.qos(0)?;
    let publishers = a.num("publishers", 4)?;
    let persistent = a.num("persistent", 0)? != 0;
    let spec = pub_spec(a, qos, None)?;
    let shape = Shape {
        clean: !persistent,
        ..Shape::new(publishers, 1, qos)
    };
    let run = PubSub::run(a.addr()?, shape, spec, a.secs("duration", 5.0)?, 3).await?;
    let mut r = Report::new("fan-in");
    r.add("publishers", publishers as f64);
    r.add("persistent", f64::from(u8::from(persistent)));
    r.add("qos", qos as f64);
    r.add("msgs_per_s", run.delivery_rate());
    let elapsed = (run.publishers_stopped() - run.start).as_secs_f64();
    r.add("published_per_s", run.sent() as f64 / elapsed.max(1e-6));
    run.check(&mut r, qos);
    r.memory(a.pid()?, "end");
    Ok(r)
}

/// QoS 1 or 2 publish → acknowledgement round trips with a window, no subscriber.
pub async fn round_trip(a: &Args) -> Outcome {
    let qos = a.qos(1)?;
    if qos == 0 {
        return Err("round-trip needs --qos 1 or 2".into());
    }
    let publishers = a.num("publishers", 1)?;
    let tag = tag();
    let ids = (0..publishers).map(|i| format!("lg-{tag}-p{i}")).collect();
    let conns = connect_many(a.addr()?, ids, true, None, 64 * 1024).await?;
    let mut spec = pub_spec(a, qos, None)?;
    spec.until = Some(Instant::now() + a.secs("duration", 5.0)?);
    let pubs = run_publishers(conns, &spec, |i| format!("lg/{tag}/{i}")).await?;
    let mut latency = flow::histogram(3);
    let (mut acked, mut elapsed) = (0, 0f64);
    for p in &pubs {
        let _ = latency.add(&p.latency);
        acked += p.sent;
        elapsed = elapsed.max((p.finished - p.started).as_secs_f64());
    }
    let mut r = Report::new("round-trip");
    r.add("qos", qos as f64);
    r.add("window", spec.window as f64);
    r.add("acks_per_s", acked as f64 / elapsed.max(1e-6));
    r.percentiles("rtt", &latency);
    r.add("acked", acked as f64);
    r.memory(a.pid()?, "end");
    Ok(r)
}

/// 1 publisher → 1 subscriber at a fixed rate: end-to-end latency percentiles.
pub async fn latency(a: &Args) -> Outcome {
    let qos = a.qos(0)?;
    let spec = pub_spec(a, qos, Some(a.float("rate", 10_000.0)?))?;
    let shape = Shape::new(1, 1, qos);
    let run = PubSub::run(a.addr()?, shape, spec, a.secs("duration", 5.0)?, 3).await?;
    let mut r = Report::new("latency");
    r.add("rate", a.float("rate", 10_000.0)?);
    r.percentiles("latency", &run.latency());
    run.check(&mut r, qos);
    r.memory(a.pid()?, "end");
    Ok(r)
}

/// 1 publisher → N subscribers at a rate: deliveries/s and whether subscribers keep up.
pub async fn fan_out(a: &Args) -> Outcome {
    let qos = a.qos(0)?;
    let subscribers = a.num("subscribers", 1000)?;
    let rate = a.float("rate", 100.0)?;
    let spec = pub_spec(a, qos, Some(rate))?;
    let shape = Shape::new(1, subscribers, qos);
    let run = PubSub::run(a.addr()?, shape, spec, a.secs("duration", 5.0)?, 1).await?;
    let mut r = Report::new("fan-out");
    r.add("subscribers", subscribers as f64);
    r.add("rate", rate);
    r.add("deliveries_per_s", run.delivery_rate());
    let drain = run
        .last_delivery()
        .saturating_duration_since(run.publishers_stopped());
    r.add("drain_ms", drain.as_millis() as f64);
    r.percentiles("lag", &run.latency());
    let delivered: u64 = run.inboxes.iter().map(|i| i.tracker.unique).sum();
    // Behind: a message went missing, or deliveries went on well after the last publish.
    let behind = delivered < run.sent() * subscribers || drain > Duration::from_millis(500);
    r.add("behind", behind as u8 as f64);
    run.check(&mut r, qos);
    r.memory(a.pid()?, "end");
    Ok(r)
}

/// N idle connections, CONNECTed and held: the broker's memory per connection.
pub async fn idle(a: &Args) -> Outcome {
    let n = a.num("connections", 19_000)?;
    let pid = a.pid()?;
    let tag = tag();
    let mut r = Report::new("idle");
    r.memory(pid, "before");
    let before = pid.and_then(crate::report::read_memory);
    let start = Instant::now();
    let ids = (0..n).map(|i| format!("lg-{tag}-i{i}")).collect();
    let mut conns = connect_many(a.addr()?, ids, true, None, 256).await?;
    let connect_s = start.elapsed().as_secs_f64();
    conns.iter_mut().for_each(Conn::shrink);
    r.add("connections", n as f64);
    r.add("connect_s", connect_s);
    r.add("connects_per_s", n as f64 / connect_s.max(1e-6));
    tokio::time::sleep(a.secs("hold", 5.0)?).await;
    r.memory(pid, "hold");
    r.growth_per(pid, before, n, "kb_per_conn");
    drop(conns);
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.memory(pid, "after");
    Ok(r)
}

/// Publishes `count` retained messages (QoS 1, window 64) to distinct topics, or empty
/// ones to clear them.
async fn publish_retained(a: &Args, tag: &str, count: u64, payload: usize) -> Result<f64, Fail> {
    let (mut conn, _) = Conn::open(a.addr()?, &format!("lg-{tag}-rp"), true).await?;
    let mut spec = pub_spec(a, 1, None)?;
    spec.retain = true;
    spec.window = 64;
    spec.payload = payload;
    spec.max = count;
    let stats = flow::publish(&mut conn, &spec, |k, buf| {
        let topic = format!("lg/{tag}/r/{}/{}", k / 1000, k % 1000);
        buf.extend_from_slice(topic.as_bytes());
        (0, k as u32)
    })
    .await?;
    conn.disconnect().await?;
    Ok((stats.finished - stats.started).as_secs_f64())
}

/// A new subscriber to `lg/TAG/r/#` until `count` retained messages came or none for
/// `quiet`: (inbox, seconds from SUBSCRIBE to the last message).
async fn receive_retained(
    a: &Args,
    tag: &str,
    count: u64,
    quiet: Duration,
) -> Result<(Inbox, f64), Fail> {
    let (mut conn, _) = Conn::open(a.addr()?, &format!("lg-{tag}-rs"), true).await?;
    let start = Instant::now();
    let pkid = conn.next_pkid();
    mqtt::subscribe(&mut conn.out, pkid, &[&format!("lg/{tag}/r/#")], a.qos(0)?);
    conn.flush().await?;
    let mut inbox = Inbox::new(1);
    let deadline = start + Duration::from_secs(300);
    inbox
        .receive(&mut conn, deadline, |i| {
            i.received >= count || i.last_at.unwrap_or(start).elapsed() > quiet
        })
        .await?;
    conn.disconnect().await?;
    let took = inbox.last_at.map_or(0.0, |l| (l - start).as_secs_f64());
    Ok((inbox, took))
}

/// N retained messages, a new `#` subscriber receiving them all, then clearing them.
pub async fn retained(a: &Args) -> Outcome {
    let count = a.num("count", 100_000)?;
    let pid = a.pid()?;
    let tag = tag();
    let mut r = Report::new("retained");
    r.add("count", count as f64);
    r.memory(pid, "before");
    let before = pid.and_then(crate::report::read_memory);
    let store_s = publish_retained(a, &tag, count, a.num("payload", 64)? as usize).await?;
    r.add("store_per_s", count as f64 / store_s.max(1e-6));
    r.memory(pid, "loaded");
    if let (Some((rss0, _)), Some((rss1, _))) = (before, pid.and_then(crate::report::read_memory)) {
        r.add(
            "retained_kib_per_msg",
            rss1.saturating_sub(rss0) as f64 / count.max(1) as f64,
        );
    }
    let (inbox, deliver_s) = receive_retained(a, &tag, count, Duration::from_secs(3)).await?;
    r.add("deliver_s", deliver_s);
    r.add(
        "deliver_per_s",
        inbox.tracker.unique as f64 / deliver_s.max(1e-6),
    );
    check_delivery(
        &mut r,
        1,
        count,
        inbox.tracker.unique,
        inbox.tracker.duplicates,
    );
    publish_retained(a, &tag, count, 0).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.memory(pid, "cleared");
    // Allocators give memory back to the system over seconds, if at all.
    let settle = a.secs("settle", 0.0)?;
    if !settle.is_zero() {
        tokio::time::sleep(settle).await;
        r.memory(pid, "settled");
    }
    let (left, _) = receive_retained(a, &tag, 1, Duration::from_millis(500)).await?;
    r.add("left_after_clear", left.received as f64);
    if left.received > 0 {
        r.fail(format!(
            "{} retained messages left after clearing",
            left.received
        ));
    }
    Ok(r)
}

/// S persistent sessions subscribe and leave, M QoS 1 messages each are published, all
/// reconnect: the broker's memory per queued message (VmRSS once everything is queued
/// less VmRSS before publishing, both read with the sessions offline) and the time from
/// reconnecting until every queued message arrived.
pub async fn offline_queue(a: &Args) -> Outcome {
    let sessions = a.num("sessions", 100)?;
    let messages = a.num("messages", 100)?;
    let addr = a.addr()?;
    let pid = a.pid()?;
    let mut r = Report::new("offline-queue");
    r.add("sessions", sessions as f64);
    r.add("messages", messages as f64);
    let tag = tag();
    let ids: Vec<String> = (0..sessions).map(|i| format!("lg-{tag}-q{i}")).collect();
    // Every session subscribes before any leaves: rumqttd (0.20) can close a connection
    // that is still subscribing when others disconnect meanwhile.
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (id, filter) = (id.clone(), format!("lg/{tag}/q/{i}"));
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (mut conn, _) = Conn::open(addr, &id, false).await?;
            conn.subscribe(&[&filter], 1).await?;
            Ok::<_, std::io::Error>(conn)
        });
    }
    let mut subscribed = Vec::new();
    while let Some(joined) = set.join_next().await {
        subscribed.push(joined??);
    }
    for conn in subscribed {
        conn.disconnect().await?;
    }
    // Let the broker finish handling the DISCONNECTs before the baseline.
    tokio::time::sleep(SETTLE).await;
    r.memory(pid, "before");
    let before = pid.and_then(crate::report::read_memory);

    let (mut conn, _) = Conn::open(addr, &format!("lg-{tag}-qp"), true).await?;
    let mut spec = pub_spec(a, 1, None)?;
    spec.window = spec.window.max(64);
    spec.max = sessions * messages;
    let stats = flow::publish(&mut conn, &spec, |k, buf| {
        let session = k % sessions;
        buf.extend_from_slice(format!("lg/{tag}/q/{session}").as_bytes());
        (session as u32, (k / sessions) as u32)
    })
    .await?;
    conn.disconnect().await?;
    // Every PUBLISH is acknowledged; give a broker that queues asynchronously (and the
    // publisher's DISCONNECT) time to settle before reading what the queues hold.
    tokio::time::sleep(SETTLE).await;
    r.memory(pid, "queued");
    if let (Some((rss0, _)), Some((rss1, _))) = (before, pid.and_then(crate::report::read_memory)) {
        r.add(
            "queued_kib_per_msg",
            rss1.saturating_sub(rss0) as f64 / (sessions * messages).max(1) as f64,
        );
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut set = JoinSet::new();
    for id in ids.clone() {
        set.spawn(async move {
            let (mut conn, present) = Conn::open(addr, &id, false).await?;
            let mut inbox = Inbox::new(1);
            inbox
                .receive(&mut conn, deadline, |i| i.tracker.unique >= messages)
                .await?;
            conn.disconnect().await?;
            Ok::<_, std::io::Error>((present, inbox))
        });
    }
    let (mut delivered, mut duplicates, mut resumed, mut last) = (0, 0, 0, start);
    while let Some(joined) = set.join_next().await {
        let (present, inbox) = joined??;
        delivered += inbox.tracker.unique;
        duplicates += inbox.tracker.duplicates;
        resumed += present as u64;
        last = last.max(inbox.last_at.unwrap_or(start));
    }
    let drain = (last - start).as_secs_f64();
    r.add(
        "queue_per_s",
        stats.sent as f64 / (stats.finished - stats.started).as_secs_f64(),
    );
    r.add("drain_ms", drain * 1000.0);
    r.add("drain_per_s", delivered as f64 / drain.max(1e-6));
    check_delivery(&mut r, 1, sessions * messages, delivered, duplicates);
    if resumed < sessions {
        r.fail(format!(
            "{} of {sessions} sessions not resumed",
            sessions - resumed
        ));
    }
    // Leave nothing behind: a clean-session connect ends each session.
    for conn in connect_many(addr, ids, true, None, 256).await? {
        conn.disconnect().await?;
    }
    r.memory(pid, "end");
    Ok(r)
}
