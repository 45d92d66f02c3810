//! Repair: putting a damaged repository back into a state that `check` accepts, without ever
//! destroying anything that could still be read.
//!
//! * [`repair_index`] rebuilds the index from the packs alone. Every pack is read whole; a pack
//!   whose bytes still hash to its name is indexed from its sealed header (the maintenance key
//!   suffices). A pack whose bytes changed, or whose header does not decode, is *damaged*:
//!   with the key that authenticates its blobs (the content key for data and tree packs, the
//!   maintenance key for reference packs), every blob that still authenticates where its
//!   header or the old index places it (the old index is the only record left when the header
//!   is lost) and that no intact pack holds is copied into a new pack, and that pack is
//!   indexed instead. The damaged pack itself is left in place, unindexed (prune later removes
//!   it as a leftover); repair never deletes a pack. Without that key the old index entry of
//!   the damaged pack is carried forward unchanged, so nothing readable is unindexed before a
//!   full key can salvage it. A pack the old index lists that the store's listing lacks is
//!   asked for directly; too many missing packs stop the repair. New index objects are written
//!   before the old ones are deleted, so an interruption at any point leaves a valid
//!   repository.
//! * [`repair_snapshots`] writes, for every snapshot that refers to data the index no longer
//!   locates, a new snapshot without the damaged parts: files with a missing data blob and
//!   directories whose tree is missing or damaged are left out, every other tree keeps its id.
//!   The new snapshot carries the tag `repaired` and names the snapshot it repairs in
//!   `original`. The original is never altered, and deleted only when asked, after its
//!   replacement is stored. Reference blobs missing from the index are stored again from
//!   their trees.
//!
//! Run `repair index` first: `repair snapshots` judges blobs by the index.
//!
//! | operation | writes | deletes | may run beside |
//! | --- | --- | --- | --- |
//! | repair index | packs of salvaged blobs, index | the index objects it replaces | backups, copies, forgets and reads (a prune running meanwhile may fail; run it again) |
//! | repair snapshots | trees and reference blobs, snapshots | with `forget_originals`, the snapshots it replaced | everything (it writes like a backup) |

mod index;
mod snapshots;

pub use index::{DamagedPack, RepairIndexOptions, RepairIndexReport, UnreadablePack, repair_index};
pub use snapshots::{
    RemovalReason, RemovedPath, RepairSnapshotsOptions, RepairSnapshotsReport, SnapshotOutcome,
    SnapshotRepair, repair_snapshots,
};

/// Progress of a repair: phase name, items done, items in total (0: unknown).
pub type RepairProgress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// The tag [`repair_snapshots`] adds to every snapshot it writes.
pub const REPAIRED_TAG: &str = "repaired";
