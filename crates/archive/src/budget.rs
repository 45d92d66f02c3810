//! A memory budget that threads share without waiting: restore writers widen the windows of
//! large files and hold part-hashed blobs over from it, backup readers widen the read windows of
//! files whose chunks are too few and large for the hash lanes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes that threads may hold beyond their usual buffers, all together. Each takes what it can
/// without waiting ([`WindowBudget::take`]) and gives it back when done ([`Reserved`]).
#[derive(Debug)]
pub(crate) struct WindowBudget(AtomicU64);

impl WindowBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> Self {
        WindowBudget(AtomicU64::new(bytes))
    }

    /// Takes up to `want` bytes, as much as is left (possibly nothing).
    pub(crate) fn take(&self, want: u64) -> Reserved<'_> {
        let mut left = self.0.load(Ordering::Relaxed);
        loop {
            let got = want.min(left);
            match self.0.compare_exchange_weak(
                left,
                left - got,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Reserved {
                        budget: self,
                        bytes: got,
                    };
                }
                Err(now) => left = now,
            }
        }
    }
}

/// Bytes taken from a [`WindowBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Reserved<'a> {
    budget: &'a WindowBudget,
    bytes: u64,
}

impl Reserved<'_> {
    /// The bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives back all but `keep` bytes at once.
    pub(crate) fn shrink_to(&mut self, keep: u64) {
        let give = self.bytes.saturating_sub(keep);
        self.budget.0.fetch_add(give, Ordering::AcqRel);
        self.bytes -= give;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_budget_is_shared_without_waiting_and_comes_back() {
        let budget = WindowBudget::new(20);
        let mut a = budget.take(12);
        assert_eq!(a.bytes(), 12);
        // Only what is left, and nothing once it is gone: no one waits.
        let b = budget.take(12);
        assert_eq!(b.bytes(), 8);
        assert_eq!(budget.take(1).bytes(), 0);
        // Unused bytes go back at once, the rest when dropped.
        a.shrink_to(5);
        assert_eq!(a.bytes(), 5);
        assert_eq!(budget.take(12).bytes(), 7);
        drop(a);
        drop(b);
        assert_eq!(budget.take(100).bytes(), 20);
    }
}
