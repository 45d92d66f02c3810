//! Counters that backup and restore update as they go; a front end polls them to draw
//! progress. Updating them costs one relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live figures of a running backup or restore.
#[derive(Debug, Default)]
pub struct Counters {
    /// Files finished.
    pub files: AtomicU64,
    /// Directories finished.
    pub dirs: AtomicU64,
    /// Bytes of file contents read (backup) or written (restore).
    pub bytes: AtomicU64,
    /// Logical bytes of the files finished (unchanged ones included).
    pub bytes_seen: AtomicU64,
    /// Entries skipped because of errors.
    pub errors: AtomicU64,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
