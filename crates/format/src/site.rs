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
use crate::magic::{SITE_VERSION, SYNCED_VERSION};
use crate::{FormatError, Id};

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
/// last synced this replica. A snapshot listed there that the primary no longer holds was
/// forgotten at the primary, and the next sync forgets it here too; a snapshot of the replica
/// not listed was taken here (while this site was the primary) and is left alone.
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
    fn site_names() {
        assert!(check_site_name("dc-1_a.b").is_ok());
        assert!(check_site_name("").is_err());
        assert!(check_site_name(&"a".repeat(65)).is_err());
        assert!(check_site_name("机房").is_err());
    }
}
