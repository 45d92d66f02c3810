use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, random_array};

/// Length in bytes of every symmetric key handled by zaibei.
///
/// SM4 uses the first 16 bytes; AES-256 uses all 32.
pub const KEY_LEN: usize = 32;

/// A 256-bit secret key, wiped from memory when dropped.
///
/// `Debug` never prints the key bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Builds a key from a slice, which must be exactly [`KEY_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self(arr))
    }

    /// A fresh random key from the operating system.
    pub fn random() -> Result<Self, CryptoError> {
        Ok(Self(random_array()?))
    }

    /// The key bytes. Handle with care: copies are not zeroized.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let key = SecretKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "SecretKey(..)");
    }

    #[test]
    fn from_slice_wants_exactly_32_bytes() {
        assert!(SecretKey::from_slice(&[1; 31]).is_none());
        assert!(SecretKey::from_slice(&[1; 33]).is_none());
        assert_eq!(
            SecretKey::from_slice(&[1; 32]).unwrap(),
            SecretKey::from_bytes([1; 32])
        );
        assert_ne!(SecretKey::random().unwrap(), SecretKey::random().unwrap());
    }
}
