//! Server-Sent Events readers (Herald's `GET /events`), spoken as plain HTTP/1.1 over
//! TCP: many idle streams for the broker's memory per stream, and many readers of one
//! publisher's messages for the delivery rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::conn::{timeout_error, Conn};
use crate::report::Report;
use crate::scenarios::{pub_spec, run_publishers, tag, Outcome, CONNECT_CONCURRENCY, QUIET};

/// How long a stream has to answer with its headers and `retry:`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// An open event stream.
struct Stream {
    socket: TcpStream,
}

impl Stream {
    /// Sends `GET target` and reads until the stream's first block (`retry:`) is in.
    async fn open(addr: SocketAddr, target: &str) -> std::io::Result<Stream> {
        let mut socket = TcpStream::connect(addr).await?;
        let request = format!("GET {target} HTTP/1.1\r\nHost: loadgen\r\n\r\n");
        socket.write_all(request.as_bytes()).await?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let opened = async {
            while !seen.windows(7).any(|w| w == b"retry: ") {
                let n = socket.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                seen.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(OPEN_TIMEOUT, opened)
            .await
            .map_err(|_| timeout_error("the stream's first event"))??;
        if !seen.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&seen).into_owned(),
            ));
        }
        Ok(Stream { socket })
    }
}

/// Opens `n` streams, `CONNECT_CONCURRENCY` at a time; stream i reads `target(i)`.
async fn open_many(
    addr: SocketAddr,
    n: u64,
    target: impl Fn(u64) -> String,
) -> Result<Vec<Stream>, crate::scenarios::Fail> {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (permits, target) = (permits.clone(), target(i));
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            Stream::open(addr, &target).await
        });
    }
    let mut streams = Vec::new();
    while let Some(joined) = set.join_next().await {
        streams.push(joined??);
    }
    Ok(streams)
}

/// `--connections` idle SSE streams, each on a topic of its own, held open: the
/// broker's memory per stream.
pub async fn idle(a: &Args) -> Outcome {
    let n = a.num("connections", 10_000)?;
    let pid = a.pid()?;
    let tag = tag();
    let mut r = Report::new("sse-idle");
    r.memory(pid, "before");
    let before = pid.and_then(crate::report::read_memory);
    let start = Instant::now();
    let streams = open_many(a.http_addr()?, n, |i| {
        format!("/events?topic=lg/{tag}/idle/{i}")
    })
    .await?;
    let open_s = start.elapsed().as_secs_f64();
    r.add("streams", n as f64);
    r.add("streams_per_s", n as f64 / open_s.max(1e-6));
    tokio::time::sleep(a.secs("hold", 5.0)?).await;
    r.memory(pid, "hold");
    r.growth_per(pid, before, n, "kb_per_stream");
    drop(streams);
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.memory(pid, "after");
    Ok(r)
}

/// One MQTT publisher (QoS 0, `--duration` seconds, at `--rate` if given) and
/// `--subscribers` SSE readers of its topic: events delivered per second across all
/// readers, and how many of the deliveries due arrived.
pub async fn fan_out(a: &Args) -> Outcome {
    let readers = a.num("subscribers", 1000)?;
    let tag = tag();
    let topic = format!("lg/{tag}/sse");
    let mut r = Report::new("sse-fan-out");
    let target = format!("/events?topic={topic}&retained=false");
    let streams = open_many(a.http_addr()?, readers, |_| target.clone()).await?;
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut set = JoinSet::new();
    for mut stream in streams {
        let (received, last) = (received.clone(), last.clone());
        set.spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut previous = 0u8;
            loop {
                let read = tokio::time::timeout(QUIET * 3, stream.socket.read(&mut buf)).await;
                let Ok(Ok(n)) = read else { return false };
                if n == 0 {
                    // The broker cut the stream off.
                    return true;
                }
                let mut events = 0;
                for &byte in &buf[..n] {
                    if byte == b'\n' && previous == b'\n' {
                        events += 1;
                    }
                    previous = byte;
                }
                received.fetch_add(events, Ordering::Relaxed);
                if let Ok(mut last) = last.lock() {
                    *last = Instant::now();
                }
            }
        });
    }

    let (publisher, _) = Conn::open(a.addr()?, &format!("lg-{tag}-sse-pub"), true).await?;
    let rate = a.float("rate", 0.0)?;
    let mut spec = pub_spec(a, 0, (rate > 0.0).then_some(rate))?;
    let started = Instant::now();
    spec.until = Some(started + a.secs("duration", 5.0)?);
    let stats = run_publishers(vec![publisher], &spec, |_| topic.clone()).await?;
    let sent: u64 = stats.iter().map(|s| s.sent).sum();
    let mut cut_off = 0;
    while let Some(joined) = set.join_next().await {
        cut_off += u64::from(joined.unwrap_or(false));
    }
    let delivered = received.load(Ordering::Relaxed);
    let elapsed = last
        .lock()
        .map(|last| last.duration_since(started))
        .unwrap_or_default()
        .as_secs_f64();
    r.add("readers", readers as f64);
    r.add("published", sent as f64);
    r.add(
        "published_per_s",
        sent as f64 / a.secs("duration", 5.0)?.as_secs_f64(),
    );
    r.add("delivered", delivered as f64);
    r.add("delivered_per_s", delivered as f64 / elapsed.max(1e-6));
    r.add(
        "delivered_share",
        delivered as f64 / (sent * readers).max(1) as f64,
    );
    r.add("readers_cut_off", cut_off as f64);
    r.memory(a.pid()?, "end");
    Ok(r)
}
