//! Key objects (`keys/<id>`): the master key (or the maintenance key alone) wrapped under a
//! password.
//!
//! ```text
//! magic "ZAIBEIK\x01" (8) | CBOR body
//! {"v": 1, "repo": bytes(32), "suite": text, "scope": "full" | "maintenance",
//!  "kdf": {"alg": "pbkdf2-hmac-sm3", "iterations": uint}
//!       | {"alg": "argon2id", "memory_kib": uint, "iterations": uint, "parallelism": uint},
//!  "salt": bytes(32), "created": [s, ns], "host": text, "user": text, "wrapped": bytes}
//! ```
//!
//! `wrapped` is `nonce (12) || ciphertext || tag` of the 32-byte secret, sealed with the suite's
//! AEAD under `KEK = kdf(password, salt)` and AAD `"zaibei v1 key" || repo || scope name`.

use zaibei_crypto::{NONCE_LEN, PasswordKdf, SecretKey, Suite, random_array};

use crate::cbor;
use crate::fields::{Fields, MapBuilder};
use crate::keys::KeyScope;
use crate::magic::{KEY_MAGIC, KEY_VERSION, MAGIC_LEN, check_magic};
use crate::{FormatError, Id, Timestamp};

const WHAT: &str = "key";

/// A key object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Repository this key belongs to.
    pub repo: Id,
    /// Suite of the repository.
    pub suite: Suite,
    /// What the wrapped secret gives access to.
    pub scope: KeyScope,
    /// Password KDF and its parameters.
    pub kdf: PasswordKdf,
    /// KDF salt.
    pub salt: [u8; 32],
    /// Creation time.
    pub created: Timestamp,
    /// Host where it was created.
    pub host: String,
    /// User who created it.
    pub user: String,
    /// The wrapped secret.
    pub wrapped: Vec<u8>,
}

fn aad(repo: &Id, scope: KeyScope) -> Vec<u8> {
    let mut a = b"zaibei v1 key".to_vec();
    a.extend_from_slice(repo.as_bytes());
    a.extend_from_slice(scope.name().as_bytes());
    a
}

impl KeyFile {
    /// Wraps `secret` (the master key for [`KeyScope::Full`], the maintenance key for
    /// [`KeyScope::Maintenance`]) under `password`.
    #[allow(clippy::too_many_arguments)]
    pub fn wrap(
        repo: Id,
        suite: Suite,
        scope: KeyScope,
        kdf: PasswordKdf,
        password: &[u8],
        secret: &SecretKey,
        host: String,
        user: String,
    ) -> Result<Self, FormatError> {
        let crypto = |source| FormatError::Crypto { what: WHAT, source };
        let salt: [u8; 32] = random_array().map_err(crypto)?;
        let nonce: [u8; NONCE_LEN] = random_array().map_err(crypto)?;
        let kek = kdf.derive(password, &salt).map_err(crypto)?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&suite.aead(&kek).seal(
            &nonce,
            &aad(&repo, scope),
            secret.as_bytes(),
        ));
        Ok(KeyFile {
            repo,
            suite,
            scope,
            kdf,
            salt,
            created: Timestamp::now(),
            host,
            user,
            wrapped,
        })
    }

    /// Derives the KEK from `password` and unwraps the secret. A wrong password gives an
    /// authentication failure.
    pub fn unwrap_secret(&self, password: &[u8]) -> Result<SecretKey, FormatError> {
        let crypto = |source| FormatError::Crypto { what: WHAT, source };
        if self.wrapped.len() < NONCE_LEN {
            return Err(FormatError::field(WHAT, "wrapped", "too short"));
        }
        let kek = self.kdf.derive(password, &self.salt).map_err(crypto)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.wrapped[..NONCE_LEN]);
        let mut plain = self
            .suite
            .aead(&kek)
            .open(
                &nonce,
                &aad(&self.repo, self.scope),
                &self.wrapped[NONCE_LEN..],
            )
            .map_err(crypto)?;
        let key = SecretKey::from_slice(&plain);
        zeroize::Zeroize::zeroize(&mut plain);
        key.ok_or_else(|| FormatError::field(WHAT, "wrapped", "secret is not 32 bytes"))
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let kdf = match self.kdf {
            PasswordKdf::Pbkdf2HmacSm3 { iterations } => MapBuilder::new()
                .text("alg", self.kdf.name())
                .uint("iterations", u64::from(iterations)),
            PasswordKdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => MapBuilder::new()
                .text("alg", self.kdf.name())
                .uint("memory_kib", u64::from(memory_kib))
                .uint("iterations", u64::from(iterations))
                .uint("parallelism", u64::from(parallelism)),
        };
        let body = MapBuilder::new()
            .uint("v", KEY_VERSION)
            .id("repo", &self.repo)
            .text("suite", self.suite.name())
            .text("scope", self.scope.name())
            .value("kdf", kdf.build())
            .bytes("salt", &self.salt)
            .time("created", self.created)
            .text("host", &self.host)
            .text("user", &self.user)
            .bytes("wrapped", &self.wrapped)
            .build();
        let mut out = KEY_MAGIC.to_vec();
        cbor::encode_into(&body, &mut out);
        out
    }

    /// Parses stored bytes.
    pub fn decode(stored: &[u8]) -> Result<Self, FormatError> {
        check_magic(WHAT, stored, &KEY_MAGIC)?;
        let value = cbor::decode(&stored[MAGIC_LEN..])
            .map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        f.version(KEY_VERSION)?;
        let suite = f
            .text("suite")?
            .parse()
            .map_err(|e: String| FormatError::field(WHAT, "suite", e))?;
        let scope_name = f.text("scope")?;
        let scope = KeyScope::from_name(&scope_name).ok_or_else(|| {
            FormatError::field(WHAT, "scope", format!("unknown scope {scope_name:?}"))
        })?;
        let mut k = f.map("kdf", WHAT)?;
        let alg = k.text("alg")?;
        let kdf = match alg.as_str() {
            "pbkdf2-hmac-sm3" => PasswordKdf::Pbkdf2HmacSm3 {
                iterations: k.u32("iterations")?,
            },
            "argon2id" => PasswordKdf::Argon2id {
                memory_kib: k.u32("memory_kib")?,
                iterations: k.u32("iterations")?,
                parallelism: k.u32("parallelism")?,
            },
            other => {
                return Err(FormatError::field(
                    WHAT,
                    "kdf",
                    format!("unknown algorithm {other:?}"),
                ));
            }
        };
        kdf.validate()
            .map_err(|source| FormatError::Crypto { what: WHAT, source })?;
        let salt_v = f.bytes("salt")?;
        let salt = salt_v
            .as_slice()
            .try_into()
            .map_err(|_| FormatError::field(WHAT, "salt", "must be 32 bytes"))?;
        Ok(KeyFile {
            repo: f.id("repo")?,
            suite,
            scope,
            kdf,
            salt,
            created: f.time("created")?,
            host: f.text("host")?,
            user: f.text("user")?,
            wrapped: f.bytes("wrapped")?,
        })
    }
}
