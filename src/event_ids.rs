//! The broker-wide sequence of event ids: one for each published message, strictly
//! increasing across restarts, so that a web reader can resume by the last one it saw.
//!
//! Ids are reserved in blocks: storage records "ids below N may have been given out"
//! half a block before N is reached, so a restart starts beyond every id given out
//! without a write per message.

use std::sync::atomic::{AtomicU64, Ordering};

const BLOCK: u64 = 1 << 20;

pub struct EventIds {
    next: AtomicU64,
    /// No id at or above this has been given out.
    reserved: AtomicU64,
}

impl EventIds {
    /// Continues a sequence that may have given out ids below `reserved`; returns it
    /// with the first reservation, to be recorded.
    pub fn resume(reserved: u64) -> (EventIds, u64) {
        let next = reserved.max(1);
        let reserved = next.saturating_add(BLOCK);
        let ids = EventIds {
            next: AtomicU64::new(next),
            reserved: AtomicU64::new(reserved),
        };
        (ids, reserved)
    }

    /// The next id, and a new reservation to record when one is due.
    pub fn next(&self) -> (u64, Option<u64>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let reserved = self.reserved.load(Ordering::Relaxed);
        if id.saturating_add(BLOCK / 2) < reserved {
            return (id, None);
        }
        let renewed = id.saturating_add(BLOCK);
        // Whoever moves the reservation records it.
        let won = self
            .reserved
            .compare_exchange(reserved, renewed, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        (id, won.then_some(renewed))
    }

    /// The id the next message gets.
    pub fn upcoming(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_half_a_block_ahead() {
        let (ids, first) = EventIds::resume(41);
        assert_eq!(first, 41 + BLOCK);
        let mut reserved = first;
        for expected in 41..41 + 2 * BLOCK {
            let (id, renewed) = ids.next();
            assert_eq!(id, expected);
            assert!(id < reserved);
            if let Some(renewed) = renewed {
                assert!(renewed > reserved);
                reserved = renewed;
            }
        }
        // A restart from the last reservation gives no id twice.
        let (again, _) = EventIds::resume(reserved);
        assert!(again.next().0 > 40 + 2 * BLOCK);
    }
}
