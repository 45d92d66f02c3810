//! The body of the `site` state (§13 of docs/FORMAT.md): a repository's role in a set of
//! disaster-recovery sites and its fencing epoch.
//!
//! CBOR: `{"v": 1, "name": text, "role": "primary" | "replica", "epoch": uint,
//! "primary": text, "peers": [[name, location], ...]}`. `epoch` is raised by every change of
//! primary (failover, failback); a repository may delete data only while it is the primary and
//! no site it knows holds a higher epoch. Peers are sorted by name and never include the site
//! itself.

use crate::cbor::Value;
use crate::fields::{Fields, MapBuilder, id_value, value_to_id};
use crate::magic::{FORGOTTEN_VERSION, SITE_VERSION, SYNCED_VERSION};
use crate::{FormatError, Id, Timestamp};

const WHAT: &str = "site state";

/// Longest site name (bytes).
pub const MAX_SITE_NAME: usize = 64;

/// What a site is for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteRole {
    /// Takes backups and is the only site allowed to delete.
    Primary,
    /// Receives copies from the primary; may be promoted by failover.
    Replica,
}

impl SiteRole {
    /// The name used in the format and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SiteRole::Primary => "primary",
            SiteRole::Replica => "replica",
        }
    }
}

/// Another site of the set, as this one knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePeer {
    /// Its name.
    pub name: String,
    /// Where its repository lives (a location as given to `-r`).
    pub location: String,
}

/// One site's view of the set: who it is, its role, its epoch, and the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// This site's name.
    pub name: String,
    /// Its role as of `epoch`.
    pub role: SiteRole,
    /// Fencing epoch: raised by every change of primary.
    pub epoch: u64,
    /// The primary as this site knows it (its own name when it is the primary).
    pub primary: String,
    /// The other sites, sorted by name.
    pub peers: Vec<SitePeer>,
}

/// Checks a site name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
pub fn check_site_name(name: &str) -> Result<(), FormatError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SITE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(FormatError::field(
            WHAT,
            "name",
            format!("invalid site name {name:?} (1 to 64 of A-Z a-z 0-9 - _ .)"),
        ))
    }
}

impl SiteRecord {
    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&SitePeer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The CBOR value stored as the state's body.
    pub fn to_value(&self) -> Value {
        let mut peers = self.peers.clone();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let peers = peers
            .iter()
            .map(|p| Value::Array(vec![Value::text(&p.name), Value::text(&p.location)]))
            .collect();
        MapBuilder::new()
            .uint("v", SITE_VERSION)
            .text("name", &self.name)
            .text("role", self.role.name())
            .uint("epoch", self.epoch)
            .text("primary", &self.primary)
            .value("peers", Value::Array(peers))
            .build()
    }

    /// Decodes and checks the state's body.
    pub fn from_value(value: Value) -> Result<Self, FormatError> {
        let mut f = Fields::new(WHAT, value)?;
        f.version(SITE_VERSION)?;
        let name = f.text("name")?;
        check_site_name(&name)?;
        let role = match f.text("role")?.as_str() {
            "primary" => SiteRole::Primary,
            "replica" => SiteRole::Replica,
            other => {
                return Err(FormatError::field(
                    WHAT,
                    "role",
                    format!("unknown role {other:?}"),
                ));
            }
        };
        let epoch = f.uint("epoch")?;
        let primary = f.text("primary")?;
        check_site_name(&primary)?;
        if (role == SiteRole::Primary) != (primary == name) {
            return Err(FormatError::field(
                WHAT,
                "primary",
                format!(
                    "site {name:?} is {} but names {primary:?} as the primary",
                    role.name()
                ),
            ));
        }
        let mut peers: Vec<SitePeer> = Vec::new();
        for entry in f.array("peers")? {
            let Value::Array(items) = entry else {
                return Err(FormatError::field(WHAT, "peers", "entry is not an array"));
            };
            let [Value::Text(peer), Value::Text(location)] = items.as_slice() else {
                return Err(FormatError::field(
                    WHAT,
                    "peers",
                    "entry is not [name, location]",
                ));
            };
            check_site_name(peer)?;
            if *peer == name || peers.iter().any(|p| p.name == *peer) {
                return Err(FormatError::field(
                    WHAT,
                    "peers",
                    format!("site {peer:?} is listed twice"),
                ));
            }
            peers.push(SitePeer {
                name: peer.clone(),
                location: location.clone(),
            });
        }
        if role == SiteRole::Replica && !peers.iter().any(|p| p.name == primary) {
            return Err(FormatError::field(
                WHAT,
                "primary",
                format!("primary {primary:?} is not among the peers"),
            ));
        }
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SiteRecord {
            name,
            role,
            epoch,
            primary,
            peers,
        })
    }
}

/// The body of the `synced` state of a replica: which snapshots the primary held when it
/// last synced this replica (and which it had lost since without a forget record, which the
/// replica keeps). A snapshot listed there that the primary no longer holds is forgotten at
/// the replica only when the primary's `forgotten` state names it ([`ForgottenRecord`]);
/// otherwise it is reported as missing at the primary and kept. A snapshot of the replica not
/// listed was taken there and is left alone.
///
/// CBOR: `{"v": 1, "primary": text, "epoch": uint, "snapshots": [id, ...]}`, ids sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRecord {
    /// The primary that synced.
    pub primary: String,
    /// Its epoch then.
    pub epoch: u64,
    /// The snapshots it held, sorted.
    pub snapshots: Vec<Id>,
}

impl SyncedRecord {
    /// The CBOR value stored as the state's body.
    pub fn to_value(&self) -> Value {
        let mut ids = self.snapshots.clone();
        ids.sort();
        ids.dedup();
        MapBuilder::new()
            .uint("v", SYNCED_VERSION)
            .text("primary", &self.primary)
            .uint("epoch", self.epoch)
            .value(
                "snapshots",
                Value::Array(ids.iter().map(id_value).collect()),
            )
            .build()
    }

    /// Decodes the state's body.
    pub fn from_value(value: Value) -> Result<Self, FormatError> {
        const WHAT: &str = "synced state";
        let mut f = Fields::new(WHAT, value)?;
        f.version(SYNCED_VERSION)?;
        let primary = f.text("primary")?;
        check_site_name(&primary)?;
        let epoch = f.uint("epoch")?;
        let mut snapshots = f
            .array("snapshots")?
            .iter()
            .map(|v| value_to_id(WHAT, "snapshots", v))
            .collect::<Result<Vec<_>, _>>()?;
        snapshots.sort();
        snapshots.dedup();
        Ok(SyncedRecord {
            primary,
            epoch,
            snapshots,
        })
    }
}

/// One batch of forgets in the `forgotten` state: the snapshots that one site forgot while it
/// held one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetEntry {
    /// The site that forgot them (`None`: the repository belonged to no set of sites then).
    pub site: Option<String>,
    /// Its fencing epoch then (0 outside a set of sites).
    pub epoch: u64,
    /// When the latest of them was forgotten (writer's clock; informational).
    pub time: Timestamp,
    /// The snapshots forgotten, sorted.
    pub snapshots: Vec<Id>,
}

/// The body of the `forgotten` state (§13.1 of docs/FORMAT.md): the tombstones of every
/// snapshot forgotten through `forget` (and `watch`'s retention, and `repair snapshots
/// --forget`), published before the snapshot objects are deleted. A replica deletes a snapshot
/// only when its primary's `forgotten` state names it, in an entry of that primary's name at an
/// epoch not above the primary's current one: a snapshot that merely vanished at the primary
/// (deleted with storage credentials, a lifecycle rule, a rolled-back store) is kept.
///
/// CBOR: `{"v": 1, "entries": [{"site": text | null, "epoch": uint, "time": timestamp,
/// "snapshots": [id, ...]}, ...]}`, ids sorted within an entry, at most one entry per
/// `(site, epoch)`. Each generation holds every entry of the one before it plus the new forgets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgottenRecord {
    /// The batches, oldest first.
    pub entries: Vec<ForgetEntry>,
}

impl ForgottenRecord {
    /// Adds `ids`, forgotten by `site` at `epoch` at `time`, to the entry of that site and
    /// epoch (created at the end when there is none).
    pub fn add(&mut self, site: Option<&str>, epoch: u64, time: Timestamp, ids: &[Id]) {
        let pos = self
            .entries
            .iter()
            .position(|e| e.site.as_deref() == site && e.epoch == epoch);
        let entry = match pos {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(ForgetEntry {
                    site: site.map(str::to_owned),
                    epoch,
                    time,
                    snapshots: Vec::new(),
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        };
        entry.time = entry.time.max(time);
        entry.snapshots.extend_from_slice(ids);
        entry.snapshots.sort();
        entry.snapshots.dedup();
    }

    /// The snapshots that the primary `site` forgot at an epoch of at most `epoch`: the only
    /// forgets that a replica of that primary may carry over.
    pub fn forgotten_by(&self, site: &str, epoch: u64) -> std::collections::BTreeSet<Id> {
        self.entries
            .iter()
            .filter(|e| e.site.as_deref() == Some(site) && e.epoch <= epoch)
            .flat_map(|e| e.snapshots.iter().copied())
            .collect()
    }

    /// Number of snapshot ids recorded, over all entries.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.snapshots.len()).sum()
    }

    /// True when no forget is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The CBOR value stored as the state's body.
    pub fn to_value(&self) -> Value {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let mut ids = e.snapshots.clone();
                ids.sort();
                ids.dedup();
                MapBuilder::new()
                    .value(
                        "site",
                        e.site.as_deref().map(Value::text).unwrap_or(Value::Null),
                    )
                    .uint("epoch", e.epoch)
                    .time("time", e.time)
                    .value(
                        "snapshots",
                        Value::Array(ids.iter().map(id_value).collect()),
                    )
                    .build()
            })
            .collect();
        MapBuilder::new()
            .uint("v", FORGOTTEN_VERSION)
            .value("entries", Value::Array(entries))
            .build()
    }

    /// Decodes and checks the state's body.
    pub fn from_value(value: Value) -> Result<Self, FormatError> {
        const WHAT: &str = "forgotten state";
        const ENTRY: &str = "forgotten state entry";
        let mut f = Fields::new(WHAT, value)?;
        f.version(FORGOTTEN_VERSION)?;
        let mut entries: Vec<ForgetEntry> = Vec::new();
        for v in f.array("entries")? {
            let mut e = Fields::new(ENTRY, v)?;
            let site = match e.take("site") {
                None | Some(Value::Null) => None,
                Some(Value::Text(name)) => {
                    check_site_name(&name)?;
                    Some(name)
                }
                Some(_) => {
                    return Err(FormatError::field(ENTRY, "site", "expected text or null"));
                }
            };
            let epoch = e.uint("epoch")?;
            let time = e.time("time")?;
            let mut snapshots = e
                .array("snapshots")?
                .iter()
                .map(|v| value_to_id(ENTRY, "snapshots", v))
                .collect::<Result<Vec<_>, _>>()?;
            snapshots.sort();
            snapshots.dedup();
            if entries.iter().any(|x| x.site == site && x.epoch == epoch) {
                return Err(FormatError::field(
                    WHAT,
                    "entries",
                    format!("two entries for site {site:?} at epoch {epoch}"),
                ));
            }
            entries.push(ForgetEntry {
                site,
                epoch,
                time,
                snapshots,
            });
        }
        Ok(ForgottenRecord { entries })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn replica() -> SiteRecord {
        SiteRecord {
            name: "beijing-2".into(),
            role: SiteRole::Replica,
            epoch: 3,
            primary: "beijing-1".into(),
            peers: vec![
                SitePeer {
                    name: "shanghai".into(),
                    location: "s3:https://oss.example/b/p".into(),
                },
                SitePeer {
                    name: "beijing-1".into(),
                    location: "/srv/zaibei".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trip_sorts_peers() {
        let r = replica();
        let back = SiteRecord::from_value(r.to_value()).unwrap();
        assert_eq!(back.peers[0].name, "beijing-1");
        assert_eq!(back.peers[1].name, "shanghai");
        assert_eq!(back.epoch, 3);
        assert_eq!(back.role, SiteRole::Replica);
        assert_eq!(
            back.peer("shanghai").unwrap().location,
            "s3:https://oss.example/b/p"
        );
    }

    #[test]
    fn inconsistent_records_are_refused() {
        let mut r = replica();
        r.primary = "nowhere".into();
        assert!(SiteRecord::from_value(r.to_value()).is_err());
        let mut r = replica();
        r.role = SiteRole::Primary;
        assert!(SiteRecord::from_value(r.to_value()).is_err());
        let mut r = replica();
        r.peers.push(SitePeer {
            name: "beijing-2".into(),
            location: "x".into(),
        });
        assert!(SiteRecord::from_value(r.to_value()).is_err());
        let mut r = replica();
        r.name = "bad name/..".into();
        assert!(SiteRecord::from_value(r.to_value()).is_err());
    }

    #[test]
    fn synced_round_trip_sorts_ids() {
        let r = SyncedRecord {
            primary: "a".into(),
            epoch: 7,
            snapshots: vec![Id([9; 32]), Id([1; 32]), Id([9; 32])],
        };
        let back = SyncedRecord::from_value(r.to_value()).unwrap();
        assert_eq!(back.snapshots, vec![Id([1; 32]), Id([9; 32])]);
        assert_eq!(back.epoch, 7);
        let bad = MapBuilder::new()
            .uint("v", 1)
            .text("primary", "a")
            .uint("epoch", 1)
            .value("snapshots", Value::Array(vec![Value::Uint(3)]))
            .build();
        assert!(SyncedRecord::from_value(bad).is_err());
    }

    #[test]
    fn forgotten_entries_merge_per_site_and_epoch() {
        let t = Timestamp { secs: 5, nanos: 0 };
        let mut r = ForgottenRecord::default();
        r.add(Some("a"), 1, t, &[Id([3; 32]), Id([1; 32])]);
        r.add(None, 0, t, &[Id([7; 32])]);
        r.add(Some("a"), 1, t, &[Id([2; 32]), Id([1; 32])]);
        r.add(Some("a"), 4, t, &[Id([8; 32])]);
        r.add(Some("b"), 2, t, &[Id([9; 32])]);
        assert_eq!(r.entries.len(), 4);
        assert_eq!(r.len(), 6);
        let back = ForgottenRecord::from_value(r.to_value()).unwrap();
        assert_eq!(back, r);
        let by_a: Vec<Id> = back.forgotten_by("a", 3).into_iter().collect();
        assert_eq!(by_a, vec![Id([1; 32]), Id([2; 32]), Id([3; 32])]);
        assert_eq!(back.forgotten_by("a", 4).len(), 4);
        assert!(back.forgotten_by("c", u64::MAX).is_empty());
        // Entries of no site are never carried over.
        assert!(!back.forgotten_by("a", 9).contains(&Id([7; 32])));
    }

    #[test]
    fn malformed_forgotten_records_are_refused() {
        let entry = |site: Value| {
            MapBuilder::new()
                .value("site", site)
                .uint("epoch", 1)
                .time("time", Timestamp { secs: 1, nanos: 0 })
                .value("snapshots", Value::Array(vec![id_value(&Id([1; 32]))]))
                .build()
        };
        let body = |entries: Vec<Value>| {
            MapBuilder::new()
                .uint("v", 1)
                .value("entries", Value::Array(entries))
                .build()
        };
        assert!(ForgottenRecord::from_value(body(vec![entry(Value::text("a"))])).is_ok());
        assert!(ForgottenRecord::from_value(body(vec![entry(Value::Uint(1))])).is_err());
        assert!(ForgottenRecord::from_value(body(vec![entry(Value::text("bad/name"))])).is_err());
        assert!(
            ForgottenRecord::from_value(body(vec![
                entry(Value::text("a")),
                entry(Value::text("a"))
            ]))
            .is_err()
        );
        let newer = MapBuilder::new()
            .uint("v", 2)
            .value("entries", Value::Array(Vec::new()))
            .build();
        assert!(ForgottenRecord::from_value(newer).is_err());
    }

    #[test]
    fn site_names() {
        assert!(check_site_name("dc-1_a.b").is_ok());
        assert!(check_site_name("").is_err());
        assert!(check_site_name(&"a".repeat(65)).is_err());
        assert!(check_site_name("机房").is_err());
    }
}
