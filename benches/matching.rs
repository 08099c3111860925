//! Topic matching: `SubscriptionTree::matches` over 10k and 1M subscriptions with a
//! wildcard-heavy mix, and `RetainedStore::matching` for wildcard filters over 100k
//! retained topics.
//!
//! Topics look like `site/{s}/dev/{d}/{metric}`: 125 devices a site, 8 metrics, and
//! one site per 1,000 subscriptions, so the topic space is about as large as the
//! number of subscriptions. Subscriptions are spread round-robin over one session per
//! 10 subscriptions. The mix (by share of subscriptions):
//!
//! | share | filter                                 |
//! | ----- | -------------------------------------- |
//! | 70.5% | `site/s/dev/d/m` (exact)               |
//! | 10%   | `site/s/dev/d/+`                       |
//! | 5%    | `site/s/dev/+/m`                       |
//! | 0.5%  | `site/+/dev/d/m`                       |
//! | 10%   | `site/s/dev/d/#`                       |
//! | 1%    | `site/s/#`                             |
//! | 0.5%  | `+/s/dev/d/m`                          |
//! | 0.5%  | `+/0/dev/+/m` (site 0 is the hot site) |
//! | 1%    | `site/0/#`                             |
//! | 0.5%  | `site/0/dev/+/alarm`                   |
//! | 0.5%  | `site/0/dev/d/+`                       |
//!
//! plus 4 sessions on `#` and 16 on `$SYS/#`. "few" topics are outside the hot site and
//! reach a few dozen sessions; "many" topics are `site/0/dev/d/alarm`, which reach
//! about one session in seven. The bench prints the average count for each kind.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use herald::message::Message;
use herald::protocol::QoS;
use herald::retained::RetainedStore;
use herald::router::{Subscriber, Subscription, SubscriptionTree};
use herald::session::{Session, SessionExpiry};
use herald::topic::{TopicFilter, TopicName};

const DEVICES: u64 = 125;
const METRICS: &[&str] = &[
    "temp", "humidity", "power", "status", "alarm", "battery", "rssi", "uptime",
];

/// SplitMix64: a small deterministic generator, so every run builds the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn filter(s: String) -> TopicFilter {
    TopicFilter::new(ByteString::from(s)).expect("valid filter")
}

fn topic(s: String) -> TopicName {
    TopicName::new(ByteString::from(s)).expect("valid topic")
}

fn qos_of(i: usize) -> QoS {
    match i % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The tree with `n` subscriptions (plus the `#` and `$SYS/#` monitors), and how many
/// sites it spans.
fn build_tree(n: usize) -> (SubscriptionTree, u64) {
    let sites = (n as u64 / 1000).max(2);
    let session_count = (n / 10).max(1);
    let sessions: Vec<Arc<Session>> = (0..session_count)
        .map(|i| {
            Arc::new(Session::new(
                ByteString::from(format!("client-{i}")),
                SessionExpiry::NONE,
            ))
        })
        .collect();
    let mut tree = SubscriptionTree::default();
    let mut rng = Rng(0x5eed);
    for i in 0..n {
        // Outside the hot site 0 unless the filter is one of the hot ones.
        let s = 1 + rng.below(sites - 1);
        let d = rng.below(DEVICES);
        let m = METRICS[rng.below(METRICS.len() as u64) as usize];
        let roll = rng.below(1000);
        let f = match roll {
            0..705 => format!("site/{s}/dev/{d}/{m}"),
            705..805 => format!("site/{s}/dev/{d}/+"),
            805..855 => format!("site/{s}/dev/+/{m}"),
            855..860 => format!("site/+/dev/{d}/{m}"),
            860..960 => format!("site/{s}/dev/{d}/#"),
            960..970 => format!("site/{s}/#"),
            970..975 => format!("+/{s}/dev/{d}/{m}"),
            975..980 => format!("+/0/dev/+/{m}"),
            980..990 => "site/0/#".to_string(),
            990..995 => "site/0/dev/+/alarm".to_string(),
            _ => format!("site/0/dev/{d}/+"),
        };
        tree.insert(
            &filter(f),
            Subscriber {
                session: sessions[i % session_count].clone(),
                subscription: Subscription::qos(qos_of(i)),
            },
        );
    }
    for (count, f) in [(4, "#"), (16, "$SYS/#")] {
        for i in 0..count {
            let session = Arc::new(Session::new(
                ByteString::from(format!("mon-{f}-{i}")),
                SessionExpiry::NONE,
            ));
            tree.insert(
                &filter(f.to_string()),
                Subscriber {
                    session,
                    subscription: Subscription::qos(QoS::AtMostOnce),
                },
            );
        }
    }
    (tree, sites)
}

/// Topics outside the hot site, and topics in it that the hot filters all match.
fn topics(sites: u64) -> (Vec<TopicName>, Vec<TopicName>) {
    let mut rng = Rng(0xf00d);
    let few = (0..1024)
        .map(|_| {
            let s = 1 + rng.below(sites - 1);
            let d = rng.below(DEVICES);
            let m = METRICS[rng.below(METRICS.len() as u64) as usize];
            topic(format!("site/{s}/dev/{d}/{m}"))
        })
        .collect();
    let many = (0..DEVICES)
        .map(|d| topic(format!("site/0/dev/{d}/alarm")))
        .collect();
    (few, many)
}

fn average_hits(tree: &SubscriptionTree, topics: &[TopicName]) -> f64 {
    let total: usize = topics.iter().map(|t| tree.matches(t, None).len()).sum();
    total as f64 / topics.len() as f64
}

/// Each iteration matches the next topic of `topics`, round and round.
fn bench_topics(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    tree: &SubscriptionTree,
    topics: &[TopicName],
) {
    group.bench_with_input(BenchmarkId::new(name, n), topics, |b, topics| {
        let mut next = 0;
        b.iter(|| {
            let t = &topics[next % topics.len()];
            next += 1;
            black_box(tree.matches(black_box(t), None))
        })
    });
}

fn subscription_matching(c: &mut Criterion) {
    for n in [10_000, 1_000_000] {
        let started = Instant::now();
        let (tree, sites) = build_tree(n);
        let (few, many) = topics(sites);
        let other = vec![topic("factory/line/3/speed".to_string())];
        let system = vec![topic("$SYS/broker/clients/connected".to_string())];
        eprintln!(
            "{n} subscriptions built in {:.2?}; average sessions matched: few {:.1}, many {:.1}, \
             unsubscribed topic {:.0}, $SYS {:.0}",
            started.elapsed(),
            average_hits(&tree, &few),
            average_hits(&tree, &many),
            average_hits(&tree, &other),
            average_hits(&tree, &system),
        );

        let mut group = c.benchmark_group("matches");
        if n >= 1_000_000 {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(5));
        } else {
            group
                .sample_size(50)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
        }
        bench_topics(&mut group, "few", n, &tree, &few);
        bench_topics(&mut group, "many", n, &tree, &many);
        bench_topics(&mut group, "unsubscribed", n, &tree, &other);
        bench_topics(&mut group, "sys", n, &tree, &system);
        group.finish();
        // Freeing a million nodes takes a moment; keep it out of the next measurement.
        drop(tree);
    }
}

/// 100 sites × 125 devices × 8 metrics = 100,000 retained topics.
fn build_retained() -> RetainedStore {
    let mut store = RetainedStore::default();
    let payload = Bytes::from_static(b"21.5");
    for s in 0..100 {
        for d in 0..DEVICES {
            for m in METRICS {
                let message = Message {
                    topic: topic(format!("site/{s}/dev/{d}/{m}")),
                    payload: payload.clone(),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: None,
                    published_at: herald::message::Stamp::now(),
                };
                assert!(store.set(message, usize::MAX));
            }
        }
    }
    store
}

fn retained_matching(c: &mut Criterion) {
    let started = Instant::now();
    let store = build_retained();
    eprintln!("100000 retained topics stored in {:.2?}", started.elapsed());
    let mut group = c.benchmark_group("retained_100k");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for f in [
        "site/42/dev/+/temp",
        "site/+/dev/7/temp",
        "site/42/#",
        "site/+/dev/+/alarm",
    ] {
        let f = filter(f.to_string());
        let hits = store.matching(&f, usize::MAX).len();
        group.bench_function(format!("{} ({hits} hits)", f.as_str()), |b| {
            b.iter(|| black_box(store.matching(black_box(&f), usize::MAX)))
        });
    }
    group.finish();
}

criterion_group!(benches, subscription_matching, retained_matching);
criterion_main!(benches);
