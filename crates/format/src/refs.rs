//! Reference blobs: the reference layer of one tree, readable with the maintenance key.
//!
//! For every tree blob with id `T` the repository holds a blob of kind `refs` with the same id
//! `T` in a reference pack, whose plaintext is `{"v": 1, "data": [ids], "trees": [ids]}`: the
//! data blobs that the tree's files use and the subtrees it contains, each list sorted and
//! without repeats. Walking from a snapshot's root tree through reference blobs yields every
//! blob the snapshot needs without the content key; `check --read-data` with the full key
//! verifies that each reference blob matches its tree.

use crate::cbor::{self, Value};
use crate::fields::{Fields, MapBuilder, id_value, value_to_id};
use crate::magic::REFS_VERSION;
use crate::tree::{NodeKind, Tree};
use crate::{FormatError, Id};

const WHAT: &str = "refs";

/// What one tree references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeRefs {
    /// Data blobs of the tree's files, sorted, unique.
    pub data: Vec<Id>,
    /// Subtrees, sorted, unique.
    pub trees: Vec<Id>,
}

impl TreeRefs {
    /// The references of `tree`.
    pub fn of_tree(tree: &Tree) -> Self {
        let mut data = Vec::new();
        let mut trees = Vec::new();
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => data.extend_from_slice(&n.content),
                NodeKind::Dir => trees.extend(n.subtree),
                _ => {}
            }
        }
        data.sort_unstable();
        data.dedup();
        trees.sort_unstable();
        trees.dedup();
        TreeRefs { data, trees }
    }

    /// The CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(
            &MapBuilder::new()
                .uint("v", REFS_VERSION)
                .value(
                    "data",
                    Value::Array(self.data.iter().map(id_value).collect()),
                )
                .value(
                    "trees",
                    Value::Array(self.trees.iter().map(id_value).collect()),
                )
                .build(),
        )
    }

    /// Decodes and validates a body.
    pub fn decode(body: &[u8]) -> Result<Self, FormatError> {
        let value =
            cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        f.version(REFS_VERSION)?;
        let data = sorted_ids(f.array("data")?, "data")?;
        let trees = sorted_ids(f.array("trees")?, "trees")?;
        Ok(TreeRefs { data, trees })
    }
}

fn sorted_ids(values: Vec<Value>, field: &'static str) -> Result<Vec<Id>, FormatError> {
    let ids: Vec<Id> = values
        .iter()
        .map(|v| value_to_id(WHAT, field, v))
        .collect::<Result<_, _>>()?;
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(FormatError::field(
            WHAT,
            field,
            "ids not sorted or repeated",
        ));
    }
    Ok(ids)
}
