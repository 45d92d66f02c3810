//! The body of the `condemned` state (§13, §14 of docs/FORMAT.md): packs marked for deletion by
//! prune, each with the store time at which it was marked.
//!
//! CBOR: `{"v": 1, "margin": uint, "packs": [[id, kind, size, since], ...]}` where `margin` is the
//! safety margin in seconds that writers and the next prune honour, and `since` is the store's
//! clock (seconds since the Unix epoch) when the pack was condemned. Packs are sorted by id.

use crate::cbor::Value;
use crate::fields::{Fields, MapBuilder, id_value, value_to_id, value_to_u64};
use crate::magic::CONDEMNED_VERSION;
use crate::{FormatError, Id, PackKind};

const WHAT: &str = "condemned state";

/// One condemned pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CondemnedPack {
    /// The pack's id.
    pub id: Id,
    /// Kind of its blobs.
    pub kind: PackKind,
    /// Its size in bytes.
    pub size: u64,
    /// Store time (Unix seconds) when it was condemned.
    pub since: u64,
}

/// The packs marked for deletion, and the margin that protects them until they go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Condemned {
    /// Seconds a condemned pack stays readable (on the store's clock) before it may be deleted.
    pub margin: u64,
    /// Condemned packs, sorted by id.
    pub packs: Vec<CondemnedPack>,
}

impl Condemned {
    /// The CBOR value stored as the state's body.
    pub fn to_value(&self) -> Value {
        let mut packs = self.packs.clone();
        packs.sort_by_key(|p| p.id);
        let packs = packs
            .iter()
            .map(|p| {
                Value::Array(vec![
                    id_value(&p.id),
                    Value::Uint(p.kind as u64),
                    Value::Uint(p.size),
                    Value::Uint(p.since),
                ])
            })
            .collect();
        MapBuilder::new()
            .uint("v", CONDEMNED_VERSION)
            .uint("margin", self.margin)
            .value("packs", Value::Array(packs))
            .build()
    }

    /// Decodes the state's body.
    pub fn from_value(value: Value) -> Result<Self, FormatError> {
        let mut f = Fields::new(WHAT, value)?;
        f.version(CONDEMNED_VERSION)?;
        let margin = f.uint("margin")?;
        let mut packs = Vec::new();
        for entry in f.array("packs")? {
            let Value::Array(items) = entry else {
                return Err(FormatError::field(WHAT, "packs", "entry is not an array"));
            };
            let [id, kind, size, since] = items.as_slice() else {
                return Err(FormatError::field(
                    WHAT,
                    "packs",
                    format!("entry has {} items, not 4", items.len()),
                ));
            };
            let kind = u8::try_from(value_to_u64(WHAT, "packs", kind)?)
                .ok()
                .and_then(PackKind::from_byte)
                .ok_or_else(|| FormatError::field(WHAT, "packs", "unknown pack kind"))?;
            packs.push(CondemnedPack {
                id: value_to_id(WHAT, "packs", id)?,
                kind,
                size: value_to_u64(WHAT, "packs", size)?,
                since: value_to_u64(WHAT, "packs", since)?,
            });
        }
        Ok(Condemned { margin, packs })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_sorts_packs() {
        let p = |b: u8, since| CondemnedPack {
            id: Id([b; 32]),
            kind: PackKind::Tree,
            size: 77,
            since,
        };
        let c = Condemned {
            margin: 3600,
            packs: vec![p(9, 5), p(1, 7)],
        };
        let back = Condemned::from_value(c.to_value()).unwrap();
        assert_eq!(back.margin, 3600);
        assert_eq!(back.packs, vec![p(1, 7), p(9, 5)]);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let v = MapBuilder::new()
            .uint("v", 1)
            .uint("margin", 1)
            .value(
                "packs",
                Value::Array(vec![Value::Array(vec![Value::Uint(1)])]),
            )
            .build();
        assert!(Condemned::from_value(v).is_err());
        let v = MapBuilder::new()
            .uint("v", 1)
            .uint("margin", 1)
            .value(
                "packs",
                Value::Array(vec![Value::Array(vec![
                    id_value(&Id([0; 32])),
                    Value::Uint(9),
                    Value::Uint(1),
                    Value::Uint(1),
                ])]),
            )
            .build();
        assert!(Condemned::from_value(v).is_err());
    }
}
