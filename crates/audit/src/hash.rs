//! The 32-byte SM3 digest of the chain and its text form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zaibei_crypto::{Hasher, Suite};

use crate::AuditError;

/// Length of a [`Hash`](struct@Hash) in bytes.
pub const HASH_LEN: usize = 32;

/// An SM3 digest (32 bytes): a record's hash, a link to the previous record, a checkpoint's
/// head.
///
/// In JSON and on screen it is 64 lowercase hexadecimal digits; parsing accepts exactly that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// All zeros: the `prev` of the first record (seq 1).
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// The bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// The 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hexadecimal digits.
    pub fn from_hex(s: &str) -> Result<Self, AuditError> {
        let lower = s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if s.len() != 2 * HASH_LEN || !lower {
            return Err(AuditError::BadHash(s.chars().take(80).collect()));
        }
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| AuditError::BadHash(s.to_owned()))?;
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl FromStr for Hash {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// SM3 (GB/T 32905) of the concatenation of `parts`.
pub(crate) fn sm3(parts: &[&[u8]]) -> Hash {
    let mut h = Hasher::new(Suite::Gm);
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// GB/T 32905-2016 appendix A, example 1: SM3("abc").
    #[test]
    fn sm3_known_answer_abc() {
        assert_eq!(
            sm3(&[b"a", b"bc"]).to_hex(),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    /// GB/T 32905-2016 appendix A, example 2: SM3 of "abcd" repeated 16 times (512 bits).
    #[test]
    fn sm3_known_answer_two_blocks() {
        let msg = b"abcd".repeat(16);
        assert_eq!(
            sm3(&[&msg]).to_hex(),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        let h = sm3(&[b"x"]);
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(h.to_string(), h.to_hex());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
        assert!(Hash::from_hex(&h.to_hex().to_uppercase()).is_err());
        assert!(Hash::from_hex(&h.to_hex()[1..]).is_err());
        assert!(Hash::from_hex(&format!("{}0", h.to_hex())).is_err());
        assert!(Hash::from_hex(&"g".repeat(64)).is_err());
        assert!(Hash::from_hex("").is_err());
        assert!(serde_json::from_str::<Hash>("12").is_err());
        assert_eq!(Hash::ZERO.to_hex(), "0".repeat(64));
    }
}
