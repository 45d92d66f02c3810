//! State objects: mutable state kept as a series of immutable, generation-numbered objects.
//!
//! A state object is stored at `state/<kind>/<generation as 16 hex digits>-<id>` where `id` is
//! the hash of its stored bytes. It is a sealed object of type `state` with the CBOR body
//! `{"v": 1, "kind": text, "generation": uint, "previous": id | null, "time": [s, ns], "body": any}`.
//! Readers take the highest generation whose object is valid; of two valid objects with the same
//! generation (two writers raced) the one with the smaller id wins, and the loser's writer,
//! which re-reads after publishing, learns that it lost.

use crate::cbor::{self, Value};
use crate::fields::{Fields, MapBuilder, id_value};
use crate::magic::STATE_VERSION;
use crate::sealed::{SealedType, open_object, seal_object};
use crate::{FormatError, Id, MaintenanceKeys, Timestamp};

const WHAT: &str = "state";

/// One generation of a piece of repository state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateObject {
    /// Which state: `condemned` (packs marked for deletion), `site` (role and fencing).
    pub kind: String,
    /// Generation number, starting at 1.
    pub generation: u64,
    /// Id of the generation this one follows, if any.
    pub previous: Option<Id>,
    /// When it was written (writer's clock; informational).
    pub time: Timestamp,
    /// Kind-specific contents.
    pub body: Value,
}

impl StateObject {
    /// The CBOR body.
    pub fn encode_body(&self) -> Vec<u8> {
        cbor::encode(
            &MapBuilder::new()
                .uint("v", STATE_VERSION)
                .text("kind", &self.kind)
                .uint("generation", self.generation)
                .value(
                    "previous",
                    self.previous.as_ref().map(id_value).unwrap_or(Value::Null),
                )
                .time("time", self.time)
                .value("body", self.body.clone())
                .build(),
        )
    }

    /// Decodes a CBOR body.
    pub fn decode_body(body: &[u8]) -> Result<Self, FormatError> {
        let value =
            cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        f.version(STATE_VERSION)?;
        let kind = f.text("kind")?;
        check_kind(&kind)?;
        Ok(StateObject {
            kind,
            generation: f.uint("generation")?,
            previous: f.opt_id("previous")?,
            time: f.time("time")?,
            body: f
                .take("body")
                .ok_or_else(|| FormatError::field(WHAT, "body", "missing"))?,
        })
    }

    /// Encodes and seals.
    pub fn seal(&self, keys: &MaintenanceKeys) -> Result<Vec<u8>, FormatError> {
        seal_object(keys, SealedType::State, &self.encode_body(), 3)
    }

    /// Opens and decodes.
    pub fn open(keys: &MaintenanceKeys, stored: &[u8]) -> Result<Self, FormatError> {
        Self::decode_body(&open_object(keys, SealedType::State, stored)?)
    }

    /// The object's name in the repository, given its id.
    pub fn object_name(&self, id: &Id) -> String {
        format!("state/{}/{:016x}-{}", self.kind, self.generation, id)
    }
}

/// Checks a state kind: lowercase letters, digits and `-`, 1 to 32 bytes.
pub fn check_kind(kind: &str) -> Result<(), FormatError> {
    let ok = !kind.is_empty()
        && kind.len() <= 32
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FormatError::field(
            WHAT,
            "kind",
            format!("invalid state kind {kind:?}"),
        ))
    }
}

/// Parses the file part `<generation hex>-<id hex>` of a state object's name.
pub fn parse_state_name(file: &str) -> Option<(u64, Id)> {
    let (g, id) = file.split_once('-')?;
    if g.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(g, 16).ok()?, id.parse().ok()?))
}
