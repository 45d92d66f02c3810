//! The key hierarchy of a repository.
//!
//! ```text
//! master key M (32 random bytes, wrapped in key objects of scope "full")
//! ├── content key     CK = derive(M,  "zaibei v1 content")
//! │   ├── blob-id key      = derive(CK, "zaibei v1 blob id")          keyed hash of plaintexts
//! │   ├── chunker-seed key = derive(CK, "zaibei v1 chunker seed")     seals the gear-table seed
//! │   └── pack data key    = derive(CK, "zaibei v1 pack data", salt)  per data and tree pack
//! └── maintenance key MK = derive(M,  "zaibei v1 maintenance")  (wrapped alone in scope "maintenance")
//!     ├── pack header key  = derive(MK, "zaibei v1 pack header", salt)
//!     ├── pack refs key    = derive(MK, "zaibei v1 pack refs", salt)  per reference pack
//!     ├── object key       = derive(MK, "zaibei v1 object <type>", salt)  index, snapshot, state
//!     └── config MAC key   = derive(MK, "zaibei v1 config mac")
//! ```
//!
//! `derive` is [`Suite::derive_key`]. It is one-way, so the maintenance key never yields the
//! content key.

use zaibei_crypto::{Aead, SecretKey, Suite};

use crate::{FormatError, Id, PackKind};

/// Label deriving the content key from the master key.
pub const LABEL_CONTENT: &str = "zaibei v1 content";
/// Label deriving the maintenance key from the master key.
pub const LABEL_MAINTENANCE: &str = "zaibei v1 maintenance";
/// Label deriving the blob-id key from the content key.
pub const LABEL_BLOB_ID: &str = "zaibei v1 blob id";
/// Label deriving the key that seals the chunker seed, from the content key.
pub const LABEL_CHUNKER_SEED: &str = "zaibei v1 chunker seed";
/// Label deriving a data or tree pack's key from the content key and the pack salt.
pub const LABEL_PACK_DATA: &str = "zaibei v1 pack data";
/// Label deriving a reference pack's key from the maintenance key and the pack salt.
pub const LABEL_PACK_REFS: &str = "zaibei v1 pack refs";
/// Label deriving a pack header's key from the maintenance key and the pack salt.
pub const LABEL_PACK_HEADER: &str = "zaibei v1 pack header";
/// Label deriving the config MAC key from the maintenance key.
pub const LABEL_CONFIG_MAC: &str = "zaibei v1 config mac";
/// Prefix of the labels deriving sealed-object keys (followed by the object type name).
pub const LABEL_OBJECT_PREFIX: &str = "zaibei v1 object ";

/// What a key object gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// The master key: everything.
    Full,
    /// The maintenance key only: the reference layer, never file contents or names.
    Maintenance,
}

impl KeyScope {
    /// Stable name used in key objects.
    pub fn name(self) -> &'static str {
        match self {
            KeyScope::Full => "full",
            KeyScope::Maintenance => "maintenance",
        }
    }

    /// Parses a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "full" => Some(KeyScope::Full),
            "maintenance" => Some(KeyScope::Maintenance),
            _ => None,
        }
    }
}

/// Keys for the reference layer: pack headers, reference blobs, index, snapshots, state, config MAC.
#[derive(Clone, Debug)]
pub struct MaintenanceKeys {
    suite: Suite,
    root: SecretKey,
}

impl MaintenanceKeys {
    /// Wraps the maintenance key `MK`.
    pub fn new(suite: Suite, root: SecretKey) -> Self {
        MaintenanceKeys { suite, root }
    }

    /// The suite of the repository.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The maintenance key itself (to wrap it in a key object).
    pub fn root(&self) -> &SecretKey {
        &self.root
    }

    /// AEAD for a pack header.
    pub fn pack_header_aead(&self, salt: &[u8; 32]) -> Aead {
        self.suite
            .aead(&self.suite.derive_key(&self.root, LABEL_PACK_HEADER, salt))
    }

    /// AEAD for the blobs of a reference pack.
    pub fn refs_pack_aead(&self, salt: &[u8; 32]) -> Aead {
        self.suite
            .aead(&self.suite.derive_key(&self.root, LABEL_PACK_REFS, salt))
    }

    /// AEAD for a sealed object of the given type name (`index`, `snapshot`, `state`).
    pub fn object_aead(&self, type_name: &str, salt: &[u8; 32]) -> Aead {
        let label = format!("{LABEL_OBJECT_PREFIX}{type_name}");
        self.suite
            .aead(&self.suite.derive_key(&self.root, &label, salt))
    }

    /// The config MAC key.
    pub fn config_mac_key(&self) -> SecretKey {
        self.suite.derive_key(&self.root, LABEL_CONFIG_MAC, &[])
    }
}

/// Keys for contents: blob ids, data and tree packs, the chunker seed.
#[derive(Clone, Debug)]
pub struct ContentKeys {
    suite: Suite,
    root: SecretKey,
    blob_id: SecretKey,
}

impl ContentKeys {
    /// Derives the content subkeys from the content key `CK`.
    pub fn new(suite: Suite, root: SecretKey) -> Self {
        let blob_id = suite.derive_key(&root, LABEL_BLOB_ID, &[]);
        ContentKeys {
            suite,
            root,
            blob_id,
        }
    }

    /// The id of a blob: the suite's keyed hash of its plaintext under the blob-id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(self.suite.keyed_hash(&self.blob_id, plaintext))
    }

    /// The ids of many blobs at once, in order: [`ContentKeys::blob_id`] of each plaintext,
    /// computed faster in the `gm` suite (multi-buffer HMAC-SM3).
    pub fn blob_ids(&self, plaintexts: &[&[u8]]) -> Vec<Id> {
        self.suite
            .keyed_hash_many(&self.blob_id, plaintexts)
            .into_iter()
            .map(Id)
            .collect()
    }

    /// [`ContentKeys::blob_ids`] for blobs that arrive in rounds, as
    /// [`Suite::keyed_hash_some`](zaibei_crypto::Suite::keyed_hash_some) hashes them: the ids
    /// of blobs too few to hash side by side at the end are left for a later call (`None`,
    /// their progress in `progress`), unless `finish_all`.
    pub fn blob_ids_some(
        &self,
        plaintexts: &[&[u8]],
        progress: &mut [zaibei_crypto::HashProgress],
        finish_all: bool,
    ) -> Vec<Option<Id>> {
        self.suite
            .keyed_hash_some(&self.blob_id, plaintexts, progress, finish_all)
            .into_iter()
            .map(|d| d.map(Id))
            .collect()
    }

    /// AEAD for the blobs of a data or tree pack.
    pub fn data_pack_aead(&self, salt: &[u8; 32]) -> Aead {
        self.suite
            .aead(&self.suite.derive_key(&self.root, LABEL_PACK_DATA, salt))
    }

    /// AEAD sealing the chunker seed in the config.
    pub fn chunker_seed_aead(&self) -> Aead {
        self.suite
            .aead(&self.suite.derive_key(&self.root, LABEL_CHUNKER_SEED, &[]))
    }
}

/// The keys an opened repository holds: always the maintenance keys, the content keys only when
/// opened with a full key.
#[derive(Clone, Debug)]
pub struct RepoKeys {
    suite: Suite,
    maintenance: MaintenanceKeys,
    content: Option<ContentKeys>,
}

impl RepoKeys {
    /// All keys, derived from the master key.
    pub fn from_master(suite: Suite, master: &SecretKey) -> Self {
        let ck = suite.derive_key(master, LABEL_CONTENT, &[]);
        let mk = suite.derive_key(master, LABEL_MAINTENANCE, &[]);
        RepoKeys {
            suite,
            maintenance: MaintenanceKeys::new(suite, mk),
            content: Some(ContentKeys::new(suite, ck)),
        }
    }

    /// Maintenance keys only.
    pub fn from_maintenance(suite: Suite, mk: SecretKey) -> Self {
        RepoKeys {
            suite,
            maintenance: MaintenanceKeys::new(suite, mk),
            content: None,
        }
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The maintenance keys.
    pub fn maintenance(&self) -> &MaintenanceKeys {
        &self.maintenance
    }

    /// The content keys, or an error saying that a full key is needed for `operation`.
    pub fn content(&self, operation: &'static str) -> Result<&ContentKeys, FormatError> {
        self.content
            .as_ref()
            .ok_or(FormatError::NeedsContentKey { operation })
    }

    /// True when the content keys are present.
    pub fn has_content(&self) -> bool {
        self.content.is_some()
    }

    /// The AEAD that seals blobs of `kind` in a pack with `salt`.
    pub fn pack_aead(&self, kind: PackKind, salt: &[u8; 32]) -> Result<Aead, FormatError> {
        match kind {
            PackKind::Data | PackKind::Tree => Ok(self
                .content("reading file data or trees")?
                .data_pack_aead(salt)),
            PackKind::Refs => Ok(self.maintenance.refs_pack_aead(salt)),
        }
    }
}
