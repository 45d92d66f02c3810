use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, AesGcm};

use crate::{CryptoError, SecretKey, Suite};

/// Length of an AEAD nonce (96 bits) in both suites.
pub const NONCE_LEN: usize = 12;
/// Length of an AEAD authentication tag (128 bits) in both suites.
pub const TAG_LEN: usize = 16;

/// SM4-GCM with the vectorised SM4 where the CPU allows (same bytes as `AesGcm<sm4::Sm4, U12>`).
type Sm4Gcm = AesGcm<crate::sm4_fast::FastSm4, U12>;

/// A prepared AEAD cipher: SM4-GCM (`gm`, using the first 16 key bytes) or AES-256-GCM (`intl`).
///
/// Ciphertexts are `ciphertext || tag`; the nonce is supplied by the caller.
#[derive(Clone)]
pub struct Aead(Inner);

#[derive(Clone)]
enum Inner {
    Sm4Gcm(Box<Sm4Gcm>),
    Aes256Gcm(Box<Aes256Gcm>),
}

impl Aead {
    /// Prepares the suite's AEAD under `key`.
    pub fn new(suite: Suite, key: &SecretKey) -> Self {
        match suite {
            Suite::Gm => {
                let Ok(c) = Sm4Gcm::new_from_slice(&key.as_bytes()[..16]) else {
                    unreachable!("SM4 takes a 16-byte key");
                };
                Aead(Inner::Sm4Gcm(Box::new(c)))
            }
            Suite::Intl => {
                let Ok(c) = Aes256Gcm::new_from_slice(key.as_bytes()) else {
                    unreachable!("AES-256 takes a 32-byte key");
                };
                Aead(Inner::Aes256Gcm(Box::new(c)))
            }
        }
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        let tag = self.seal_detached(nonce, aad, buf.as_mut_slice());
        buf.extend_from_slice(&tag);
    }

    /// Encrypts `buf` in place and returns the tag, for callers that place it themselves.
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        match &self.0 {
            Inner::Sm4Gcm(c) => c
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .map(Into::into),
            Inner::Aes256Gcm(c) => c
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .map(Into::into),
        }
        .unwrap_or_else(|_| unreachable!("GCM encryption only fails past 64 GiB per message"))
    }

    /// Encrypts `plaintext`, returning `ciphertext || tag`.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut buf);
        buf
    }

    /// Verifies and decrypts `ciphertext || tag` in place; on success `buf` holds the plaintext.
    ///
    /// On failure `buf` is cleared: nothing unauthenticated is ever handed out.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if buf.len() < TAG_LEN {
            let len = buf.len();
            buf.clear();
            return Err(CryptoError::CiphertextTooShort { len, min: TAG_LEN });
        }
        let ct_len = buf.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[ct_len..]);
        buf.truncate(ct_len);
        let res = match &self.0 {
            Inner::Sm4Gcm(c) => c.decrypt_inout_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice().into(),
                (&tag).into(),
            ),
            Inner::Aes256Gcm(c) => c.decrypt_inout_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice().into(),
                (&tag).into(),
            ),
        };
        if res.is_err() {
            buf.clear();
            return Err(CryptoError::AuthenticationFailed);
        }
        Ok(())
    }

    /// Verifies and decrypts `ciphertext || tag`.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = ciphertext.to_vec();
        self.open_in_place(nonce, aad, &mut buf)?;
        Ok(buf)
    }
}
