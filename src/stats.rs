//! The broker's running totals: counted where things happen (relaxed atomic adds),
//! read by the `/metrics` exposition and the `$SYS` topics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a CONNECT was refused, for `herald_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Bad or missing credentials, or the ACL (the will).
    Auth,
    /// Anything else the CONNECT or its session could not have.
    Other,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// MQTT clients whose CONNECT was accepted (those connected now are in `Clients`).
    pub connections: AtomicU64,
    refused_auth: AtomicU64,
    refused_other: AtomicU64,
    /// PUBLISH packets received from clients (and HTTP publishes), by QoS.
    received: [AtomicU64; 3],
    /// PUBLISH packets sent to clients, by QoS.
    sent: [AtomicU64; 3],
    /// Bytes read from and written to MQTT clients.
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// A copy of the totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub connections: u64,
    pub refused_auth: u64,
    pub refused_other: u64,
    pub received: [u64; 3],
    pub sent: [u64; 3],
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl Totals {
    pub fn received_all(&self) -> u64 {
        self.received.iter().sum()
    }

    pub fn sent_all(&self) -> u64 {
        self.sent.iter().sum()
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn accepted(&self) {
        Stats::add(&self.connections, 1);
    }

    pub fn refused(&self, why: Refused) {
        match why {
            Refused::Auth => Stats::add(&self.refused_auth, 1),
            Refused::Other => Stats::add(&self.refused_other, 1),
        }
    }

    /// `counts[q]` PUBLISH packets of QoS `q` were received.
    pub fn received(&self, counts: [u64; 3]) {
        Stats::add_each(&self.received, counts);
    }

    /// `counts[q]` PUBLISH packets of QoS `q` were sent.
    pub fn sent(&self, counts: [u32; 3]) {
        Stats::add_each(&self.sent, counts.map(u64::from));
    }

    fn add_each(totals: &[AtomicU64; 3], counts: [u64; 3]) {
        for (total, n) in totals.iter().zip(counts) {
            if n > 0 {
                Stats::add(total, n);
            }
        }
    }

    pub fn totals(&self) -> Totals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Totals {
            connections: load(&self.connections),
            refused_auth: load(&self.refused_auth),
            refused_other: load(&self.refused_other),
            received: self.received.each_ref().map(load),
            sent: self.sent.each_ref().map(load),
            bytes_received: load(&self.bytes_received),
            bytes_sent: load(&self.bytes_sent),
        }
    }
}
