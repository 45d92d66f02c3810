//! SM2 digital signatures (GB/T 32918.2) on the curve sm2p256v1, with SM3 and the
//! distinguishing identifier of GB/T 35276 (default `1234567812345678`).
//!
//! A signature covers `e = SM3(Z || M)` where `Z = SM3(ENTL || ID || a || b || xG || yG || xA ||
//! yA)` binds the signer's distinguishing identifier `ID` and public key. Signer and verifier must
//! therefore agree on the identifier; [`DEFAULT_DISTID`] is the one GB/T 35276 and OpenSSL 3
//! (`-sigopt distid:1234567812345678`) use.
//!
//! Keys are exchanged in the usual encodings, which OpenSSL 3 reads and writes:
//!
//! * private keys as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, algorithm `id-ecPublicKey` with
//!   the named curve `1.2.156.10197.1.301`), as written by `openssl genpkey -algorithm SM2`;
//! * public keys as SEC1 uncompressed points (65 bytes, `04 || x || y`) or as
//!   SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), as written by `openssl pkey -pubout`;
//! * signatures as 64 bytes `r || s`, or as the DER `SEQUENCE { r INTEGER, s INTEGER }` that
//!   OpenSSL emits.
//!
//! The per-signature nonce `k` is derived deterministically from the key and the message hash
//! (RFC 6979 with HMAC-SM3, as the `sm2` crate does), so signing needs no random numbers and a
//! weak random number generator cannot leak the private key. Verifiers cannot tell the
//! difference: the signatures are ordinary GB/T 32918.2 signatures.

use std::fmt;

use sm2::dsa::signature::{Signer, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::Generate;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sm2::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// The default distinguishing identifier of GB/T 32918.2 / GB/T 35276: the ASCII string
/// `1234567812345678`.
pub const DEFAULT_DISTID: &str = "1234567812345678";

/// Length of a private key scalar in bytes.
pub const SECRET_KEY_LEN: usize = 32;
/// Length of an uncompressed SEC1 public key (`04 || x || y`) in bytes.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of a signature as `r || s` in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Longest distinguishing identifier GB/T 32918.2 can encode: its bit length `ENTL` is 16 bits.
pub const MAX_DISTID_LEN: usize = 8191;

fn sig_err(msg: impl Into<String>) -> CryptoError {
    CryptoError::Signature(msg.into())
}

fn check_distid(distid: &str) -> Result<(), CryptoError> {
    if distid.len() > MAX_DISTID_LEN {
        return Err(sig_err(format!(
            "SM2 distinguishing identifier is {} bytes long, at most {MAX_DISTID_LEN} are allowed",
            distid.len()
        )));
    }
    Ok(())
}

/// An SM2 private key.
///
/// The secret scalar is wiped from memory when the key is dropped. `Debug` prints only the
/// public key.
#[derive(Clone)]
pub struct Sm2SigningKey {
    /// The secret scalar; `sm2::SecretKey` zeroizes itself on drop.
    secret: SecretKey,
    /// The matching public key (with the default identifier's `Z` precomputed).
    verifying: Sm2VerifyingKey,
}

impl Sm2SigningKey {
    /// A fresh random key from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let secret = SecretKey::try_generate().map_err(|e| CryptoError::Random(e.to_string()))?;
        Self::from_secret(secret)
    }

    /// A key from its 32-byte big-endian secret scalar.
    ///
    /// Fails when the scalar is zero or not below the group order. The caller's array is not
    /// modified; wipe it (e.g. keep it in a [`Zeroizing`]) when it is no longer needed.
    pub fn from_bytes(bytes: &[u8; SECRET_KEY_LEN]) -> Result<Self, CryptoError> {
        let secret = SecretKey::from_slice(bytes)
            .map_err(|_| sig_err("SM2 private key is zero or not below the group order"))?;
        Self::from_secret(secret)
    }

    /// The 32-byte big-endian secret scalar, in a buffer that is wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        let scalar = Zeroizing::new(self.secret.to_bytes());
        let mut out = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        out.copy_from_slice(&scalar);
        out
    }

    /// Reads an unencrypted PKCS#8 private key in PEM (`-----BEGIN PRIVATE KEY-----`), such as
    /// the output of `openssl genpkey -algorithm SM2`.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        let secret = SecretKey::from_pkcs8_pem(pem)
            .map_err(|e| sig_err(format!("cannot read SM2 PKCS#8 PEM private key: {e}")))?;
        Self::from_secret(secret)
    }

    /// Writes the key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, LF line
    /// endings), readable by `openssl pkey`. The string is wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| sig_err(format!("cannot encode SM2 private key as PKCS#8 PEM: {e}")))
    }

    /// Reads an unencrypted PKCS#8 private key in DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let secret = SecretKey::from_pkcs8_der(der)
            .map_err(|e| sig_err(format!("cannot read SM2 PKCS#8 DER private key: {e}")))?;
        Self::from_secret(secret)
    }

    /// Writes the key as unencrypted PKCS#8 DER. The buffer is wiped when dropped.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self
            .secret
            .to_pkcs8_der()
            .map_err(|e| sig_err(format!("cannot encode SM2 private key as PKCS#8 DER: {e}")))?;
        Ok(doc.to_bytes())
    }

    /// The public key of this private key.
    pub fn verifying_key(&self) -> &Sm2VerifyingKey {
        &self.verifying
    }

    /// Signs `msg` with the default distinguishing identifier [`DEFAULT_DISTID`].
    pub fn sign(&self, msg: &[u8]) -> Result<Sm2Signature, CryptoError> {
        self.sign_with_id(DEFAULT_DISTID, msg)
    }

    /// Signs `msg` with the distinguishing identifier `distid` (at most [`MAX_DISTID_LEN`]
    /// bytes). The verifier must use the same identifier.
    pub fn sign_with_id(&self, distid: &str, msg: &[u8]) -> Result<Sm2Signature, CryptoError> {
        check_distid(distid)?;
        // sm2 0.14's SigningKey keeps its scalar without wiping it on drop, so it is built per
        // call and lives only on the stack of this function; the long-lived copy is `secret`.
        let signer = SigningKey::new(distid, &self.secret)
            .map_err(|_| sig_err("cannot prepare SM2 signing key"))?;
        let sig: Signature = signer
            .try_sign(msg)
            .map_err(|_| sig_err("SM2 signing failed"))?;
        Ok(Sm2Signature(sig))
    }

    fn from_secret(secret: SecretKey) -> Result<Self, CryptoError> {
        let verifying = Sm2VerifyingKey::from_public(secret.public_key())?;
        Ok(Self { secret, verifying })
    }
}

impl fmt::Debug for Sm2SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sm2SigningKey")
            .field("verifying_key", &self.verifying)
            .finish_non_exhaustive()
    }
}

/// An SM2 public key, able to verify signatures.
#[derive(Clone)]
pub struct Sm2VerifyingKey {
    /// The key bound to [`DEFAULT_DISTID`] (its `Z` value is computed once).
    inner: VerifyingKey,
}

impl Sm2VerifyingKey {
    /// Reads a SEC1-encoded point: 65 bytes uncompressed (`04 || x || y`), or 33 bytes
    /// compressed. The point at infinity and points off the curve are rejected.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let pk = PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| sig_err("SM2 public key is not a valid SEC1 point on sm2p256v1"))?;
        Self::from_public(pk)
    }

    /// The key as an uncompressed SEC1 point (`04 || x || y`).
    pub fn to_sec1_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.inner.to_sec1_point(false);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// Reads a SubjectPublicKeyInfo in PEM (`-----BEGIN PUBLIC KEY-----`), such as the output
    /// of `openssl pkey -pubout`.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, CryptoError> {
        let pk = PublicKey::from_public_key_pem(pem)
            .map_err(|e| sig_err(format!("cannot read SM2 public key PEM: {e}")))?;
        Self::from_public(pk)
    }

    /// Writes the key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, LF line
    /// endings), readable by `openssl pkey -pubin`.
    pub fn to_public_key_pem(&self) -> Result<String, CryptoError> {
        PublicKey::from(&self.inner)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| sig_err(format!("cannot encode SM2 public key as PEM: {e}")))
    }

    /// Reads a SubjectPublicKeyInfo in DER.
    pub fn from_public_key_der(der: &[u8]) -> Result<Self, CryptoError> {
        let pk = PublicKey::from_public_key_der(der)
            .map_err(|e| sig_err(format!("cannot read SM2 public key DER: {e}")))?;
        Self::from_public(pk)
    }

    /// Writes the key as SubjectPublicKeyInfo DER.
    pub fn to_public_key_der(&self) -> Result<Vec<u8>, CryptoError> {
        let doc = PublicKey::from(&self.inner)
            .to_public_key_der()
            .map_err(|e| sig_err(format!("cannot encode SM2 public key as DER: {e}")))?;
        Ok(doc.into_vec())
    }

    /// Verifies `sig` over `msg` with the default distinguishing identifier
    /// [`DEFAULT_DISTID`].
    pub fn verify(&self, msg: &[u8], sig: &Sm2Signature) -> Result<(), CryptoError> {
        self.inner
            .verify(msg, &sig.0)
            .map_err(|_| sig_err("SM2 signature does not verify"))
    }

    /// Verifies `sig` over `msg` with the distinguishing identifier `distid`.
    pub fn verify_with_id(
        &self,
        distid: &str,
        msg: &[u8],
        sig: &Sm2Signature,
    ) -> Result<(), CryptoError> {
        check_distid(distid)?;
        if distid == DEFAULT_DISTID {
            return self.verify(msg, sig);
        }
        let vk = VerifyingKey::new(distid, PublicKey::from(&self.inner))
            .map_err(|_| sig_err("cannot prepare SM2 verifying key"))?;
        vk.verify(msg, &sig.0)
            .map_err(|_| sig_err("SM2 signature does not verify"))
    }

    fn from_public(pk: PublicKey) -> Result<Self, CryptoError> {
        let inner = VerifyingKey::new(DEFAULT_DISTID, pk)
            .map_err(|_| sig_err("cannot prepare SM2 verifying key"))?;
        Ok(Self { inner })
    }
}

impl PartialEq for Sm2VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_sec1_bytes() == other.to_sec1_bytes()
    }
}

impl Eq for Sm2VerifyingKey {}

impl fmt::Debug for Sm2VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2VerifyingKey(")?;
        for b in self.to_sec1_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// An SM2 signature `(r, s)`, both in `[1, n-1]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sm2Signature(Signature);

impl Sm2Signature {
    /// Reads the 64-byte form `r || s` (big-endian, 32 bytes each).
    pub fn from_bytes(bytes: &[u8; SIGNATURE_LEN]) -> Result<Self, CryptoError> {
        Self::from_slice(bytes)
    }

    /// Reads the 64-byte form `r || s` from a slice, which must be exactly 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != SIGNATURE_LEN {
            return Err(sig_err(format!(
                "SM2 signature is {} bytes long, {SIGNATURE_LEN} expected",
                bytes.len()
            )));
        }
        Signature::from_slice(bytes)
            .map(Self)
            .map_err(|_| sig_err("SM2 signature r or s is zero or not below the group order"))
    }

    /// The 64-byte form `r || s`.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    /// Reads the DER form `SEQUENCE { r INTEGER, s INTEGER }` that OpenSSL emits. Trailing
    /// bytes and non-minimal encodings are rejected.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        Signature::from_der(der)
            .map(Self)
            .map_err(|_| sig_err("SM2 signature is not a valid DER SEQUENCE { r, s }"))
    }

    /// The DER form `SEQUENCE { r INTEGER, s INTEGER }`.
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_der().to_vec()
    }
}

impl fmt::Debug for Sm2Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2Signature(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip() {
        let sk = Sm2SigningKey::generate().unwrap();
        let sig = sk.sign(b"hello").unwrap();
        sk.verifying_key().verify(b"hello", &sig).unwrap();
        assert!(sk.verifying_key().verify(b"hellp", &sig).is_err());
    }

    #[test]
    fn custom_id_is_bound() {
        let sk = Sm2SigningKey::generate().unwrap();
        let vk = sk.verifying_key();
        let sig = sk.sign_with_id("alice@example.org", b"m").unwrap();
        vk.verify_with_id("alice@example.org", b"m", &sig).unwrap();
        assert!(vk.verify(b"m", &sig).is_err());
        assert!(vk.verify_with_id("bob@example.org", b"m", &sig).is_err());
        // The default identifier through either entry point.
        let sig = sk.sign(b"m").unwrap();
        vk.verify_with_id(DEFAULT_DISTID, b"m", &sig).unwrap();
        assert!(vk.verify_with_id("", b"m", &sig).is_err());
    }

    #[test]
    fn overlong_id_is_an_error_not_a_panic() {
        let sk = Sm2SigningKey::generate().unwrap();
        let id = "x".repeat(MAX_DISTID_LEN + 1);
        assert!(matches!(
            sk.sign_with_id(&id, b"m"),
            Err(CryptoError::Signature(_))
        ));
        let sig = sk.sign(b"m").unwrap();
        assert!(sk.verifying_key().verify_with_id(&id, b"m", &sig).is_err());
        // The longest encodable identifier works.
        let id = "y".repeat(MAX_DISTID_LEN);
        let sig = sk.sign_with_id(&id, b"m").unwrap();
        sk.verifying_key().verify_with_id(&id, b"m", &sig).unwrap();
    }

    #[test]
    fn scalar_bytes_round_trip_and_bounds() {
        let sk = Sm2SigningKey::generate().unwrap();
        let bytes = sk.to_bytes();
        let back = Sm2SigningKey::from_bytes(&bytes).unwrap();
        assert_eq!(back.verifying_key(), sk.verifying_key());
        assert!(Sm2SigningKey::from_bytes(&[0u8; 32]).is_err());
        assert!(Sm2SigningKey::from_bytes(&[0xff; 32]).is_err());
        // n itself is rejected, n - 1 accepted.
        let n = hex::decode("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123")
            .unwrap();
        let mut n: [u8; 32] = n.try_into().unwrap();
        assert!(Sm2SigningKey::from_bytes(&n).is_err());
        n[31] -= 1;
        assert!(Sm2SigningKey::from_bytes(&n).is_ok());
    }

    #[test]
    fn encodings_round_trip() {
        let sk = Sm2SigningKey::generate().unwrap();
        let pem = sk.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Sm2SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(*back.to_bytes(), *sk.to_bytes());
        let der = sk.to_pkcs8_der().unwrap();
        let back = Sm2SigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(*back.to_bytes(), *sk.to_bytes());

        let vk = sk.verifying_key();
        let sec1 = vk.to_sec1_bytes();
        assert_eq!(sec1[0], 0x04);
        assert_eq!(&Sm2VerifyingKey::from_sec1_bytes(&sec1).unwrap(), vk);
        let pem = vk.to_public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(&Sm2VerifyingKey::from_public_key_pem(&pem).unwrap(), vk);
        let der = vk.to_public_key_der().unwrap();
        assert_eq!(&Sm2VerifyingKey::from_public_key_der(&der).unwrap(), vk);

        let sig = sk.sign(b"x").unwrap();
        assert_eq!(Sm2Signature::from_bytes(&sig.to_bytes()).unwrap(), sig);
        assert_eq!(Sm2Signature::from_der(&sig.to_der()).unwrap(), sig);
    }

    #[test]
    fn garbage_is_rejected_with_signature_errors() {
        for bad in [&b""[..], &[0u8; 65][..], &[4u8; 65][..], &[2u8; 33][..]] {
            assert!(matches!(
                Sm2VerifyingKey::from_sec1_bytes(bad),
                Err(CryptoError::Signature(_))
            ));
        }
        assert!(Sm2VerifyingKey::from_public_key_pem("not pem").is_err());
        assert!(Sm2SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\n").is_err());
        assert!(Sm2Signature::from_slice(&[1u8; 63]).is_err());
        assert!(Sm2Signature::from_bytes(&[0u8; 64]).is_err());
        assert!(Sm2Signature::from_bytes(&[0xffu8; 64]).is_err());
        assert!(Sm2Signature::from_der(&[0x30, 0x00]).is_err());
        assert!(Sm2Signature::from_der(b"").is_err());
        // A valid encoding followed by a stray byte.
        let sk = Sm2SigningKey::generate().unwrap();
        let mut der = sk.sign(b"x").unwrap().to_der();
        der.push(0);
        assert!(Sm2Signature::from_der(&der).is_err());
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let sk = Sm2SigningKey::from_bytes(&[0x11; 32]).unwrap();
        let shown = format!("{sk:?}");
        assert!(!shown.contains(&"11".repeat(32)), "{shown}");
        assert!(shown.contains("Sm2VerifyingKey(04"));
    }
}
