//! The filesystem side of zaibei: walking source trees, detecting changes, chunking, the
//! backup pipeline, restore, and stream sources. It knows the repository only through
//! `zaibei-repo`'s API and never a storage backend.

pub mod backup;
mod budget;
pub mod chunker;
mod error;
pub mod exclude;
pub mod fsmeta;
pub mod progress;
pub mod restore;
pub mod snapshot_path;
pub mod tree_walk;
pub mod watch;

pub use error::ArchiveError;
