//! Cryptographic suites of zaibei.
//!
//! Two suites exist and a repository uses exactly one of them, chosen at `init`:
//!
//! | purpose | [`Suite::Gm`] (default) | [`Suite::Intl`] |
//! | --- | --- | --- |
//! | data encryption (AEAD) | SM4-GCM (GB/T 32907, RFC 8998) | AES-256-GCM |
//! | unkeyed hash (object names) | SM3 (GB/T 32905) | BLAKE3 |
//! | keyed hash (blob ids) | HMAC-SM3 | keyed BLAKE3 |
//! | key derivation | HKDF-SM3 | BLAKE3 `derive_key` |
//! | password KDF | PBKDF2-HMAC-SM3 (GM/T 0091) | Argon2id |
//! | signatures | SM2 (GB/T 32918) | SM2 |
//!
//! Every secret lives in a [`SecretKey`], which is zeroized on drop. The crate does no I/O
//! besides asking the operating system for random bytes.

mod aead;
mod error;
mod hash;
mod kdf;
mod key;
mod random;
pub mod sm2;
pub mod sm3_multi;
pub mod sm4_fast;
mod suite;

pub use aead::{Aead, NONCE_LEN, TAG_LEN};
pub use error::CryptoError;
pub use hash::{DIGEST_LEN, Digest, HashProgress, HashStreams, Hasher};
pub use kdf::{KDF_SALT_LEN, PasswordKdf};
pub use key::{KEY_LEN, SecretKey};
pub use random::{random_array, random_bytes};
pub use sm2::{Sm2Signature, Sm2SigningKey, Sm2VerifyingKey};
pub use suite::Suite;
pub use zeroize::Zeroizing;
