//! Continuous protection: watching source trees for changes and saying when to back them up.
//!
//! ```text
//! inotify (notify's thread) ──events──▶ Inbox ──counts, times──▶ Debouncer ──▶ Step::Backup
//!   recursive, new directories           classify: reads and        quiet period, maximum
//!   watched as they appear               ignored paths dropped;     delay, rescan, retry
//!                                        overflow → full walk       backoff, hold
//!                        Roots: each watched path still there, on its filesystem? ──hold/resume──┘
//! ```
//!
//! Events only decide *when* to back up, never *what*: every backup walks the whole tree and
//! finds the changes from file metadata (size, mtime, ctime, inode against the parent
//! snapshot), so an event that was lost, or a directory created and filled before its watch
//! was set, delays a change at most until the next backup, and the periodic rescan bounds that
//! delay even when no event comes at all. The library runs no backup itself: the caller gets a
//! [`Step`] from [`Watch::next`], runs the backup, and reports how it went
//! ([`Watch::succeeded`], [`Watch::failed`]).

mod debounce;
mod driver;
mod error;
mod events;
mod notifier;
mod own_paths;
mod roots;

pub use debounce::{DebounceSettings, Debouncer, LONGEST, Trigger, TriggerReason};
pub use driver::{Step, Watch, WatchOptions};
pub use error::WatchError;
pub use events::{Gathered, Inbox, Meaning, PathFilter, SAMPLE_PATHS, classify};
pub use notifier::{Notifier, Unwatched};
pub use own_paths::{below_roots, exclude_pattern};
pub use roots::{RootChange, RootState, Roots};
