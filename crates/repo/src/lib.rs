//! The zaibei repository: everything between the on-disk format (`zaibei-format`) and the
//! storage (`zaibei-store`). It never touches the filesystem being backed up.
//!
//! States: [`Repository::init`] or [`Repository::open`] give a [`Repository`] (config verified,
//! keys unwrapped); [`Repository::load_index`] turns it into an [`IndexedRepository`], which
//! can read blobs and, through a [`BlobSaver`], write them.
//!
//! # Concurrency and locking
//!
//! Format v1 has no lock objects, so no killed process can leave a lock behind. Every writer
//! only adds new immutable objects whose names are hashes of their contents, and publishes in
//! an order that keeps the repository valid at every instant:
//!
//! 1. packs, 2. the index objects listing them, 3. the snapshot referencing their blobs.
//!
//! | operation | writes | deletes | may run beside |
//! | --- | --- | --- | --- |
//! | `init` | key, then `config` (create-if-absent) | — | nothing (the repository does not exist yet) |
//! | `backup` | packs, index, snapshot | — | everything, including other backups and reads |
//! | `restore`, `ls`, `find`, `dump`, `diff`, `cat`, `stats`, `check` | — | — | everything |
//! | `key add` / `key passwd` | key | its own old key (`passwd`) | everything |
//! | `key remove` | — | one key (never the one in use, never the last full key) | everything |
//! | `forget` | — | snapshot objects | everything (snapshots are independent objects) |
//! | `repair index` | packs of salvaged blobs, index | the index objects it replaces | backups, forgets and reads |
//! | `repair snapshots` | trees, reference blobs, snapshots | the snapshots it replaced, when asked | everything (it writes like a backup) |
//!
//! Deleting data (forget, prune) is a two-phase process built on generation-numbered state
//! objects; `docs/FORMAT.md` describes it and the full table.

mod cache;
mod check;
pub mod copy;
mod error;
mod gather;
mod held;
mod index;
mod indexed;
mod keys;
pub mod names;
mod opener;
mod pack_writer;
mod prune;
mod reach;
pub mod repack;
pub mod repair;
mod repository;
pub mod retention;
mod saver;
pub mod site;
mod snapshots;
mod state;

pub use cache::Cache;
pub use check::{
    Affected, AffectedPath, BlobKey, CheckOptions, CheckProblem, CheckProgress, CheckReport,
    DataSubset, MAX_PATHS_LISTED, Severity, check,
};
pub use error::{RepoError, Result};
pub use gather::{GatherLimits, RangedRead};
pub use index::{BlobLocation, BlobRef, IdMap, IdSet, IndexProblem, MasterIndex, PackMeta};
pub use indexed::IndexedRepository;
pub use keys::KeyInfo;
pub use opener::BlobOpener;
pub use pack_writer::{Finished, FinishedPack, PackBody, PackWriter, UnnamedPack, name_packs};
pub use prune::{MaxUnused, PruneOptions, PruneProgress, PruneReport, prune};
pub use repair::{
    RepairIndexOptions, RepairIndexReport, RepairProgress, RepairSnapshotsOptions,
    RepairSnapshotsReport, repair_index, repair_snapshots,
};
pub use repository::{InitOptions, Repository, read_config};
pub use saver::{BlobSaver, PACKS_PER_INDEX, SaverStats};
pub use snapshots::SnapshotList;
pub use state::{CONDEMNED, CondemnedState, DEFAULT_MARGIN, StateHead};
