use std::fmt;
use std::str::FromStr;

use hkdf::Hkdf;

use crate::{Aead, Digest, HashProgress, Hasher, SecretKey, hash};

/// A cryptographic suite: the algorithms one repository uses for everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Suite {
    /// Chinese commercial cryptography: SM4-GCM, SM3, HMAC-SM3, HKDF-SM3, PBKDF2-HMAC-SM3.
    #[default]
    Gm,
    /// International suite: AES-256-GCM, BLAKE3, Argon2id.
    Intl,
}

impl Suite {
    /// The stable name used in repository objects and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Gm => "gm",
            Suite::Intl => "intl",
        }
    }

    /// The unkeyed hash of the suite (SM3 or BLAKE3) over `data`.
    pub fn hash(self, data: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(data);
        h.finalize()
    }

    /// An incremental unkeyed hasher, for data that arrives in pieces.
    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }

    /// The keyed hash of the suite: HMAC-SM3 or keyed BLAKE3.
    pub fn keyed_hash(self, key: &SecretKey, data: &[u8]) -> Digest {
        hash::keyed_hash(self, key, data)
    }

    /// [`Suite::keyed_hash`] of each message, in order, under one key.
    ///
    /// In `gm` the messages are hashed eight at a time with AVX2 where the CPU has it (see
    /// [`crate::sm3_multi`]): much faster than one by one when there are many. In `intl`
    /// each message is hashed in turn (BLAKE3 is already vectorised within one message).
    pub fn keyed_hash_many(self, key: &SecretKey, messages: &[&[u8]]) -> Vec<Digest> {
        hash::keyed_hash_many(self, key, messages)
    }

    /// [`Suite::keyed_hash_many`] for messages that arrive in rounds: each message resumes
    /// from `progress[i]` (one entry per message; pass a message again unchanged with its
    /// entry). With `finish_all` every digest is returned; otherwise, in `gm`, the messages
    /// too few to hash side by side at the end are left unfinished (`None`, their progress
    /// kept) for a later call with more messages beside them. `intl` finishes every one.
    pub fn keyed_hash_some(
        self,
        key: &SecretKey,
        messages: &[&[u8]],
        progress: &mut [HashProgress],
        finish_all: bool,
    ) -> Vec<Option<Digest>> {
        hash::keyed_hash_some(self, key, messages, progress, finish_all)
    }

    /// Derives a subkey from `key` for the purpose named by `label`, optionally bound to `salt`.
    ///
    /// * `gm`: HKDF-SM3 (RFC 5869 with SM3) with `salt` as the HKDF salt (empty: none), `key`
    ///   as input keying material and `label` as info, 32 bytes of output.
    /// * `intl`: BLAKE3 `derive_key` with context string `label` and key material
    ///   `key || salt`.
    ///
    /// Different labels give independent keys; labels are fixed strings listed in FORMAT.md.
    ///
    /// Use salts of one fixed length. In `gm` the salt is an HMAC key, and HMAC treats some
    /// different keys alike: salts that differ only by trailing zero bytes (within 64 bytes;
    /// the empty salt equals 32 zero bytes, as RFC 5869 specifies) or a salt longer than 64
    /// bytes and its SM3 digest give the same subkey.
    pub fn derive_key(self, key: &SecretKey, label: &str, salt: &[u8]) -> SecretKey {
        let mut out = [0u8; crate::KEY_LEN];
        match self {
            Suite::Gm => {
                let salt = if salt.is_empty() { None } else { Some(salt) };
                let hk = Hkdf::<sm3::Sm3>::new(salt, key.as_bytes());
                // 32 bytes is far below HKDF's limit of 255 * 32 bytes: this cannot fail.
                if hk.expand(label.as_bytes(), &mut out).is_err() {
                    unreachable!("HKDF-SM3 output length 32 is always valid");
                }
            }
            Suite::Intl => {
                let mut h = blake3::Hasher::new_derive_key(label);
                h.update(key.as_bytes());
                h.update(salt);
                out = *h.finalize().as_bytes();
                // The hasher buffers the key material: wipe it.
                zeroize::Zeroize::zeroize(&mut h);
            }
        }
        let k = SecretKey::from_bytes(out);
        zeroize::Zeroize::zeroize(&mut out);
        k
    }

    /// A prepared AEAD cipher of the suite under `key`.
    pub fn aead(self, key: &SecretKey) -> Aead {
        Aead::new(self, key)
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gm" => Ok(Suite::Gm),
            "intl" => Ok(Suite::Intl),
            other => Err(format!(
                "unknown crypto suite {other:?} (expected gm or intl)"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Suite::default(), Suite::Gm);
        for suite in [Suite::Gm, Suite::Intl] {
            assert_eq!(suite.name().parse::<Suite>().unwrap(), suite);
            assert_eq!(suite.to_string(), suite.name());
        }
        assert!("GM".parse::<Suite>().is_err());
        assert!("".parse::<Suite>().is_err());
    }

    #[test]
    fn keyed_hash_many_is_keyed_hash_of_each() {
        let key = SecretKey::from_bytes([9; 32]);
        let data: Vec<Vec<u8>> = (0..20usize).map(|i| vec![i as u8; i * 100]).collect();
        let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        for suite in [Suite::Gm, Suite::Intl] {
            let many = suite.keyed_hash_many(&key, &messages);
            let one: Vec<Digest> = messages.iter().map(|m| suite.keyed_hash(&key, m)).collect();
            assert_eq!(many, one, "{suite}");
            assert!(suite.keyed_hash_many(&key, &[]).is_empty());
        }
        assert_ne!(
            Suite::Gm.keyed_hash_many(&key, &messages),
            Suite::Intl.keyed_hash_many(&key, &messages)
        );
    }

    #[test]
    fn gm_derive_key_salt_is_an_hmac_key() {
        // Documented on `derive_key`: HKDF's empty salt is 32 zero bytes, and HMAC pads short
        // keys with zeros, so these salts are equivalent. Callers use fixed-length salts.
        let key = SecretKey::from_bytes([7; 32]);
        let empty = Suite::Gm.derive_key(&key, "l", b"");
        assert_eq!(empty, Suite::Gm.derive_key(&key, "l", &[0; 32]));
        assert_eq!(
            Suite::Gm.derive_key(&key, "l", b"ab"),
            Suite::Gm.derive_key(&key, "l", b"ab\0")
        );
        // Not so in intl.
        assert_ne!(
            Suite::Intl.derive_key(&key, "l", b""),
            Suite::Intl.derive_key(&key, "l", &[0; 32])
        );
    }
}
