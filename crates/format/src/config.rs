//! The config object (`config`): what a repository is and how it is written.
//!
//! ```text
//! magic "ZAIBEIC\x01" (8) | CBOR body
//! {"v": 1, "id": bytes(32), "suite": "gm" | "intl", "created": [s, ns],
//!  "chunker": {"min": uint, "avg": uint, "max": uint},
//!  "zstd": int, "pack_size": uint, "seed": bytes, "mac": bytes(32)}
//! ```
//!
//! `seed` is the 32-byte chunker seed sealed as `nonce (12) || ciphertext || tag` with
//! `derive(CK, "zaibei v1 chunker seed")` and AAD `"zaibei v1 chunker seed" || id`. `mac` is the
//! suite's keyed hash, under `derive(MK, "zaibei v1 config mac")`, of the canonical CBOR of the
//! same map without `mac`. The body is readable without keys (the suite must be known before a key
//! is opened); the MAC is checked as soon as a key is open.

use zaibei_crypto::{NONCE_LEN, Suite, random_array};

use crate::cbor;
use crate::fields::{Fields, MapBuilder};
use crate::magic::{CONFIG_MAGIC, MAGIC_LEN, REPOSITORY_VERSION, check_magic};
use crate::{ContentKeys, FormatError, Id, MaintenanceKeys, Timestamp};

const WHAT: &str = "config";
const SEED_AAD: &[u8] = b"zaibei v1 chunker seed";

/// Content-defined chunking parameters (FastCDC 2020 with a keyed gear table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Target average chunk, bytes (a power of two).
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB: large enough for object storage, small enough to dedup well.
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the parameters against the ranges FastCDC 2020 supports (minimum 64 B..1 MiB,
    /// average a power of two in 256 B..4 MiB, maximum 1 KiB..16 MiB). A config outside them is
    /// refused rather than chunked with undefined masks.
    pub fn validate(&self) -> Result<(), FormatError> {
        let ok = (64..=1 << 20).contains(&self.min)
            && self.avg.is_power_of_two()
            && (256..=1 << 22).contains(&self.avg)
            && (1024..=1 << 24).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(FormatError::field(
                WHAT,
                "chunker",
                format!("invalid chunker parameters {self:?}"),
            ))
        }
    }
}

/// The repository config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// Repository format version.
    pub version: u64,
    /// Random repository id.
    pub id: Id,
    /// Cryptographic suite.
    pub suite: Suite,
    /// When the repository was created.
    pub created: Timestamp,
    /// Chunking parameters.
    pub chunker: ChunkerParams,
    /// zstd level for blobs (0: no compression).
    pub zstd_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u64,
    /// The sealed chunker seed.
    pub sealed_seed: Vec<u8>,
    /// The MAC over the other fields.
    pub mac: Id,
}

/// Default target size of packs: 16 MiB (few objects on S3, ranged reads for restore).
pub const DEFAULT_PACK_SIZE: u64 = 16 * 1024 * 1024;

impl RepoConfig {
    /// A new config with a fresh id and seed, sealed and MACed with `content`/`maintenance`.
    pub fn create(
        content: &ContentKeys,
        maintenance: &MaintenanceKeys,
        chunker: ChunkerParams,
        zstd_level: i32,
        pack_size: u64,
    ) -> Result<(Self, [u8; 32]), FormatError> {
        let seed =
            random_array::<32>().map_err(|source| FormatError::Crypto { what: WHAT, source })?;
        let config =
            Self::create_with_seed(content, maintenance, chunker, zstd_level, pack_size, &seed)?;
        Ok((config, seed))
    }

    /// Creates a config with a new random id and the given chunker seed: a repository that
    /// shares its key material and chunking with another (`init --from`), so that files chunk
    /// alike in both and packs can be copied between them as they are.
    pub fn create_with_seed(
        content: &ContentKeys,
        maintenance: &MaintenanceKeys,
        chunker: ChunkerParams,
        zstd_level: i32,
        pack_size: u64,
        seed: &[u8; 32],
    ) -> Result<Self, FormatError> {
        chunker.validate()?;
        let id =
            Id(random_array::<32>()
                .map_err(|source| FormatError::Crypto { what: WHAT, source })?);
        let nonce: [u8; NONCE_LEN] =
            random_array().map_err(|source| FormatError::Crypto { what: WHAT, source })?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(
            &content
                .chunker_seed_aead()
                .seal(&nonce, &seed_aad(&id), seed),
        );
        let mut cfg = RepoConfig {
            version: REPOSITORY_VERSION,
            id,
            suite: maintenance.suite(),
            created: Timestamp::now(),
            chunker,
            zstd_level,
            pack_size,
            sealed_seed: sealed,
            mac: Id::default(),
        };
        cfg.mac = cfg.compute_mac(maintenance);
        Ok(cfg)
    }

    fn map_without_mac(&self) -> MapBuilder {
        MapBuilder::new()
            .uint("v", self.version)
            .id("id", &self.id)
            .text("suite", self.suite.name())
            .time("created", self.created)
            .value(
                "chunker",
                MapBuilder::new()
                    .uint("min", u64::from(self.chunker.min))
                    .uint("avg", u64::from(self.chunker.avg))
                    .uint("max", u64::from(self.chunker.max))
                    .build(),
            )
            .int("zstd", i64::from(self.zstd_level))
            .uint("pack_size", self.pack_size)
            .bytes("seed", &self.sealed_seed)
    }

    fn compute_mac(&self, keys: &MaintenanceKeys) -> Id {
        let body = cbor::encode(&self.map_without_mac().build());
        Id(self.suite.keyed_hash(&keys.config_mac_key(), &body))
    }

    /// Checks the MAC with the maintenance keys.
    pub fn verify(&self, keys: &MaintenanceKeys) -> Result<(), FormatError> {
        let expected = self.compute_mac(keys);
        if expected != self.mac {
            return Err(FormatError::invalid(
                WHAT,
                "MAC does not verify: the config was altered, or the key belongs to another repository",
            ));
        }
        Ok(())
    }

    /// Unseals the chunker seed with the content keys.
    pub fn chunker_seed(&self, content: &ContentKeys) -> Result<[u8; 32], FormatError> {
        if self.sealed_seed.len() < NONCE_LEN {
            return Err(FormatError::field(WHAT, "seed", "too short"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.sealed_seed[..NONCE_LEN]);
        let seed = content
            .chunker_seed_aead()
            .open(&nonce, &seed_aad(&self.id), &self.sealed_seed[NONCE_LEN..])
            .map_err(|source| FormatError::Crypto {
                what: "config chunker seed",
                source,
            })?;
        seed.as_slice()
            .try_into()
            .map_err(|_| FormatError::field(WHAT, "seed", "seed is not 32 bytes"))
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = CONFIG_MAGIC.to_vec();
        cbor::encode_into(
            &self.map_without_mac().id("mac", &self.mac).build(),
            &mut out,
        );
        out
    }

    /// Parses stored bytes (without verifying the MAC: see [`RepoConfig::verify`]).
    pub fn decode(stored: &[u8]) -> Result<Self, FormatError> {
        check_magic(WHAT, stored, &CONFIG_MAGIC)?;
        let value = cbor::decode(&stored[MAGIC_LEN..])
            .map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        let version = f.version(REPOSITORY_VERSION)?;
        let suite_name = f.text("suite")?;
        let suite = suite_name
            .parse()
            .map_err(|e: String| FormatError::field(WHAT, "suite", e))?;
        let mut c = f.map("chunker", WHAT)?;
        let chunker = ChunkerParams {
            min: c.u32("min")?,
            avg: c.u32("avg")?,
            max: c.u32("max")?,
        };
        chunker.validate()?;
        let zstd = f.int("zstd")?;
        let zstd_level = i32::try_from(zstd)
            .ok()
            .filter(|l| (-7..=22).contains(l))
            .ok_or_else(|| {
                FormatError::field(WHAT, "zstd", format!("level {zstd} outside -7..=22"))
            })?;
        let pack_size = f.uint("pack_size")?;
        if !(1 << 16..=1 << 30).contains(&pack_size) {
            return Err(FormatError::field(
                WHAT,
                "pack_size",
                format!("{pack_size} outside 64 KiB..1 GiB"),
            ));
        }
        Ok(RepoConfig {
            version,
            id: f.id("id")?,
            suite,
            created: f.time("created")?,
            chunker,
            zstd_level,
            pack_size,
            sealed_seed: f.bytes("seed")?,
            mac: f.id("mac")?,
        })
    }
}

fn seed_aad(id: &Id) -> Vec<u8> {
    let mut a = SEED_AAD.to_vec();
    a.extend_from_slice(id.as_bytes());
    a
}

/// Expands a chunker seed into FastCDC's two gear tables: `gear[i]` is the first 8 bytes
/// (little-endian) of the suite's keyed hash under the seed of the two bytes `"g", i`, and
/// `gear_ls[i] = gear[i] << 1`.
pub fn gear_tables(suite: Suite, seed: &[u8; 32]) -> (Box<[u64; 256]>, Box<[u64; 256]>) {
    let key = zaibei_crypto::SecretKey::from_bytes(*seed);
    let mut gear = Box::new([0u64; 256]);
    let mut gear_ls = Box::new([0u64; 256]);
    for i in 0..256 {
        let h = suite.keyed_hash(&key, &[b'g', i as u8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        gear[i] = u64::from_le_bytes(b);
        gear_ls[i] = gear[i] << 1;
    }
    (gear, gear_ls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunker_limits_are_enforced() {
        assert!(ChunkerParams::default().validate().is_ok());
        for bad in [
            ChunkerParams {
                min: 1 << 20,
                avg: 1 << 23,
                max: 1 << 24,
            },
            ChunkerParams {
                min: 512,
                avg: 3000,
                max: 8192,
            },
            ChunkerParams {
                min: 32,
                avg: 256,
                max: 1024,
            },
            ChunkerParams {
                min: 1024,
                avg: 512,
                max: 2048,
            },
            ChunkerParams {
                min: 1024,
                avg: 4096,
                max: 1 << 25,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }
}
