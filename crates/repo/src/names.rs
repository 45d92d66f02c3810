//! Object names in a repository.

use zaibei_format::Id;

/// The config object.
pub const CONFIG: &str = "config";
/// Directory of key objects.
pub const KEYS: &str = "keys";
/// Directory of packs (in 256 subdirectories).
pub const DATA: &str = "data";
/// Directory of index objects.
pub const INDEX: &str = "index";
/// Directory of snapshots.
pub const SNAPSHOTS: &str = "snapshots";
/// Directory of state objects.
pub const STATE: &str = "state";

/// `keys/<id>`.
pub fn key(id: &Id) -> String {
    format!("{KEYS}/{id}")
}

/// `data/<xx>/<id>`.
pub fn pack(id: &Id) -> String {
    zaibei_format::pack_object_name(id)
}

/// `index/<id>`.
pub fn index(id: &Id) -> String {
    format!("{INDEX}/{id}")
}

/// `snapshots/<id>`.
pub fn snapshot(id: &Id) -> String {
    format!("{SNAPSHOTS}/{id}")
}

/// The id at the end of an object name, if it is one.
pub fn id_of(name: &str) -> Option<Id> {
    name.rsplit('/').next()?.parse().ok()
}
