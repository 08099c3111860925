//! Per-client publish rate limits (`max_publish_rate`, `max_publish_bytes_rate`): token
//! buckets holding a second's worth, which say how long to stop reading from a client
//! that went beyond them. Nothing is dropped: the client is only slowed down.

use std::time::{Duration, Instant};

use crate::config::MqttConfig;

/// The longest a connection stops reading at once for its rate.
pub const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// The publish budget of one connection.
#[derive(Debug)]
pub struct PublishRate {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    /// The limit was reached before: it is logged once a connection.
    hit: bool,
}

impl PublishRate {
    /// The budget `limits` set, or `None` without a limit.
    pub fn new(limits: &MqttConfig, now: Instant) -> Option<Box<PublishRate>> {
        let messages = Bucket::new(f64::from(limits.max_publish_rate), now);
        // Precise enough: rates beyond 2^53 bytes a second are no limit anyway.
        let bytes = Bucket::new(limits.max_publish_bytes_rate as f64, now);
        (messages.is_some() || bytes.is_some()).then(|| {
            Box::new(PublishRate {
                messages,
                bytes,
                hit: false,
            })
        })
    }

    /// Charges one PUBLISH of `payload` bytes; how long reading is to wait, if the
    /// client has gone beyond its budget: at most [`LONGEST_WAIT`] at a time (the rest
    /// is waited for after the next packet), so that one large message does not stop
    /// a client's pings for longer than its keep alive.
    pub fn charge(&mut self, payload: usize, now: Instant) -> Option<Duration> {
        let messages = self.messages.as_mut().and_then(|b| b.take(1.0, now));
        let bytes = self
            .bytes
            .as_mut()
            .and_then(|b| b.take(payload as f64, now));
        messages.max(bytes).map(|wait| wait.min(LONGEST_WAIT))
    }

    /// Whether this is the first time the connection reached its limit.
    pub fn first_hit(&mut self) -> bool {
        !std::mem::replace(&mut self.hit, true)
    }
}

#[derive(Debug)]
struct Bucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_second: f64, now: Instant) -> Option<Bucket> {
        (per_second > 0.0).then_some(Bucket {
            per_second,
            tokens: per_second,
            at: now,
        })
    }

    /// Takes `n` tokens, going into debt if need be; the time until the debt is paid.
    fn take(&mut self, n: f64, now: Instant) -> Option<Duration> {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.per_second) - n;
        self.at = now;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: u32, bytes: u64) -> MqttConfig {
        MqttConfig {
            max_publish_rate: messages,
            max_publish_bytes_rate: bytes,
            ..MqttConfig::default()
        }
    }

    #[test]
    fn a_second_s_worth_passes_then_each_waits_its_share() {
        let start = Instant::now();
        let mut rate = PublishRate::new(&limits(10, 0), start).unwrap();
        for _ in 0..10 {
            assert_eq!(rate.charge(100, start), None);
        }
        let wait = rate.charge(100, start).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // 0.6 s later, six more were earned, one of them paying the debt.
        let later = start + Duration::from_millis(600);
        for _ in 0..5 {
            assert_eq!(rate.charge(100, later), None);
        }
        assert!(rate.charge(100, later).is_some());
    }

    #[test]
    fn bytes_are_limited_apart_from_messages() {
        let start = Instant::now();
        let mut rate = PublishRate::new(&limits(0, 1000), start).unwrap();
        assert_eq!(rate.charge(1000, start), None);
        let wait = rate.charge(500, start).unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(PublishRate::new(&limits(0, 0), start).is_none());
    }
}
