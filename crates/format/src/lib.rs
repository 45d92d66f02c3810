//! The zaibei repository format, version 1, in one place.
//!
//! This crate knows the byte layout of every object in a repository and nothing about where
//! objects are stored: it encodes and decodes, seals and opens, and never does I/O.
//! `docs/FORMAT.md` specifies the same format in prose.
//!
//! | object | module | encrypted with |
//! | --- | --- | --- |
//! | `config` | [`config`] | (plain, MAC with maintenance key; seed with content key) |
//! | `keys/<id>` | [`keyfile`] | key-encryption key from the password |
//! | `data/<xx>/<id>` (packs) | [`pack`], [`blob`] | content key (data, tree) or maintenance key (refs, header) |
//! | `index/<id>` | [`index`] | maintenance key |
//! | `snapshots/<id>` | [`snapshot`] | maintenance key |
//! | `state/<kind>/<gen>-<id>` | [`state`] | maintenance key |
//! | tree blobs | [`tree`] | content key |
//! | reference blobs | [`refs`] | maintenance key |

pub mod blob;
pub mod cbor;
pub mod condemned;
pub mod config;
mod error;
pub mod fields;
mod id;
pub mod index;
pub mod keyfile;
pub mod keys;
pub mod magic;
pub mod pack;
mod reader;
pub mod refs;
pub mod sealed;
pub mod site;
pub mod snapshot;
pub mod state;
mod time;
pub mod tree;

pub use condemned::{Condemned, CondemnedPack};
pub use config::{ChunkerParams, RepoConfig};
pub use error::FormatError;
pub use id::{Id, ParseIdError};
pub use index::{IndexFile, IndexPack};
pub use keyfile::KeyFile;
pub use keys::{ContentKeys, KeyScope, MaintenanceKeys, RepoKeys};
pub use pack::{PackBlob, PackKind};
pub use refs::TreeRefs;
pub use site::{ForgetEntry, ForgottenRecord, SitePeer, SiteRecord, SiteRole, SyncedRecord};
pub use snapshot::{Snapshot, SnapshotSummary};
pub use state::StateObject;
pub use time::Timestamp;
pub use tree::{Node, NodeKind, Tree};
pub use zaibei_crypto::Suite;

/// The name of a pack object: `data/<first two hex digits>/<id>`.
pub fn pack_object_name(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}
