//! SM2 interoperability with OpenSSL 3, and sign/verify round trips.
//!
//! * Committed fixtures (`tests/fixtures/`, see its README) made by OpenSSL must verify with
//!   our code, and altered copies must not.
//! * Live tests run the `openssl` binary (or `$OPENSSL`) in both directions. They FAIL when
//!   it is missing: the project's test script installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use zaibei_crypto::CryptoError;
use zaibei_crypto::sm2::{DEFAULT_DISTID, Sm2Signature, Sm2SigningKey, Sm2VerifyingKey};

const FIXTURE_KEY: &str = include_str!("fixtures/sm2-key.pem");
const FIXTURE_PUB: &str = include_str!("fixtures/sm2-pub.pem");
const FIXTURE_MSG: &[u8] = include_bytes!("fixtures/sm2-msg.txt");
const FIXTURE_SIG_DEFAULT: &[u8] = include_bytes!("fixtures/sm2-sig-default-id.der");
const FIXTURE_SIG_ALICE: &[u8] = include_bytes!("fixtures/sm2-sig-alice-id.der");
const ALICE: &str = "alice@zaibei.example";

/// From `openssl pkey -in sm2-key.pem -noout -text`.
const FIXTURE_SCALAR: &str = "82f2fa9496b60d8a5a11912e0df670282f37a010155d62bca016a07de77aa7bd";
const FIXTURE_POINT: &str = "0424f390d71808b6e90eff2503b5ace556f179110c0cea2e9b1c6eff9e57903a42\
                             6674904f785a48b63821a4c7bbe01c05274799463ca2f863d09b4c1fff60e8e0";

fn flip_bit(data: &[u8], bit: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    v[bit / 8] ^= 1 << (bit % 8);
    v
}

// ---------------------------------------------------------------------------------------------
// Committed OpenSSL fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_keys_decode_to_openssl_values() {
    let sk = Sm2SigningKey::from_pkcs8_pem(FIXTURE_KEY).unwrap();
    assert_eq!(hex::encode(*sk.to_bytes()), FIXTURE_SCALAR);
    assert_eq!(
        hex::encode(sk.verifying_key().to_sec1_bytes()),
        FIXTURE_POINT
    );
    let vk = Sm2VerifyingKey::from_public_key_pem(FIXTURE_PUB).unwrap();
    assert_eq!(&vk, sk.verifying_key());
    // Our encoding of OpenSSL's public key is byte-identical to OpenSSL's.
    assert_eq!(vk.to_public_key_pem().unwrap(), FIXTURE_PUB);
}

#[test]
fn fixture_signature_default_id_verifies() {
    let vk = Sm2VerifyingKey::from_public_key_pem(FIXTURE_PUB).unwrap();
    let sig = Sm2Signature::from_der(FIXTURE_SIG_DEFAULT).unwrap();
    vk.verify(FIXTURE_MSG, &sig).unwrap();
    vk.verify_with_id(DEFAULT_DISTID, FIXTURE_MSG, &sig)
        .unwrap();
    // Our DER encoding of the parsed signature is OpenSSL's, byte for byte.
    assert_eq!(sig.to_der(), FIXTURE_SIG_DEFAULT);
    // And through the raw r || s form.
    let raw = Sm2Signature::from_bytes(&sig.to_bytes()).unwrap();
    vk.verify(FIXTURE_MSG, &raw).unwrap();
}

#[test]
fn fixture_signature_custom_id_verifies_only_with_that_id() {
    let vk = Sm2VerifyingKey::from_public_key_pem(FIXTURE_PUB).unwrap();
    let sig = Sm2Signature::from_der(FIXTURE_SIG_ALICE).unwrap();
    vk.verify_with_id(ALICE, FIXTURE_MSG, &sig).unwrap();
    assert!(vk.verify(FIXTURE_MSG, &sig).is_err());
    assert!(
        vk.verify_with_id("alice@zaibei.exampl", FIXTURE_MSG, &sig)
            .is_err()
    );
    // And the default-id signature does not verify under Alice's identifier.
    let sig = Sm2Signature::from_der(FIXTURE_SIG_DEFAULT).unwrap();
    assert!(vk.verify_with_id(ALICE, FIXTURE_MSG, &sig).is_err());
}

#[test]
fn fixture_signature_rejects_altered_message() {
    let vk = Sm2VerifyingKey::from_public_key_pem(FIXTURE_PUB).unwrap();
    let sig = Sm2Signature::from_der(FIXTURE_SIG_DEFAULT).unwrap();
    for bit in 0..FIXTURE_MSG.len() * 8 {
        let msg = flip_bit(FIXTURE_MSG, bit);
        assert!(
            matches!(vk.verify(&msg, &sig), Err(CryptoError::Signature(_))),
            "bit {bit}"
        );
    }
    assert!(
        vk.verify(&FIXTURE_MSG[..FIXTURE_MSG.len() - 1], &sig)
            .is_err()
    );
    let mut longer = FIXTURE_MSG.to_vec();
    longer.push(b'\n');
    assert!(vk.verify(&longer, &sig).is_err());
    assert!(vk.verify(b"", &sig).is_err());
}

#[test]
fn fixture_signature_rejects_altered_signature() {
    let vk = Sm2VerifyingKey::from_public_key_pem(FIXTURE_PUB).unwrap();
    let raw = Sm2Signature::from_der(FIXTURE_SIG_DEFAULT)
        .unwrap()
        .to_bytes();
    for bit in 0..raw.len() * 8 {
        let bad = flip_bit(&raw, bit);
        // A flipped bit may push r or s out of range (a parse error) or give a valid-looking
        // signature that does not verify: either way it must be rejected.
        let rejected = match Sm2Signature::from_slice(&bad) {
            Err(_) => true,
            Ok(sig) => vk.verify(FIXTURE_MSG, &sig).is_err(),
        };
        assert!(rejected, "bit {bit}");
    }
    // Bit flips in the DER form: a parse error or a failed verification, never success.
    for bit in 0..FIXTURE_SIG_DEFAULT.len() * 8 {
        let bad = flip_bit(FIXTURE_SIG_DEFAULT, bit);
        if let Ok(sig) = Sm2Signature::from_der(&bad) {
            assert!(vk.verify(FIXTURE_MSG, &sig).is_err(), "DER bit {bit}");
        }
    }
    // r and s swapped.
    let mut swapped = [0u8; 64];
    swapped[..32].copy_from_slice(&raw[32..]);
    swapped[32..].copy_from_slice(&raw[..32]);
    let sig = Sm2Signature::from_bytes(&swapped).unwrap();
    assert!(vk.verify(FIXTURE_MSG, &sig).is_err());
}

#[test]
fn fixture_signature_rejected_under_another_key() {
    let other = Sm2SigningKey::generate().unwrap();
    let sig = Sm2Signature::from_der(FIXTURE_SIG_DEFAULT).unwrap();
    assert!(other.verifying_key().verify(FIXTURE_MSG, &sig).is_err());
}

// ---------------------------------------------------------------------------------------------
// Round trips (our code on both sides)
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trips_and_tampering() {
    let sk = Sm2SigningKey::generate().unwrap();
    let vk = sk.verifying_key().clone();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
    for msg in [&b""[..], b"a", FIXTURE_MSG, &big] {
        let sig = sk.sign(msg).unwrap();
        vk.verify(msg, &sig).unwrap();
        // Through every encoding of signature and key.
        let sig_der = Sm2Signature::from_der(&sig.to_der()).unwrap();
        let sig_raw = Sm2Signature::from_bytes(&sig.to_bytes()).unwrap();
        let vk_sec1 = Sm2VerifyingKey::from_sec1_bytes(&vk.to_sec1_bytes()).unwrap();
        let vk_pem =
            Sm2VerifyingKey::from_public_key_pem(&vk.to_public_key_pem().unwrap()).unwrap();
        vk_sec1.verify(msg, &sig_der).unwrap();
        vk_pem.verify(msg, &sig_raw).unwrap();

        // Altered message.
        let mut altered = msg.to_vec();
        altered.push(0);
        assert!(vk.verify(&altered, &sig).is_err());
        if !msg.is_empty() {
            let last = msg.len() * 8 - 1;
            assert!(vk.verify(&flip_bit(msg, last), &sig).is_err());
            assert!(vk.verify(&flip_bit(msg, 0), &sig).is_err());
        }
        // Altered signature: one bit in r, one in s.
        for bit in [5, 300] {
            if let Ok(bad) = Sm2Signature::from_slice(&flip_bit(&sig.to_bytes(), bit)) {
                assert!(vk.verify(msg, &bad).is_err());
            }
        }
    }

    // A reloaded private key signs verifiably for the original public key.
    let reloaded = Sm2SigningKey::from_pkcs8_pem(&sk.to_pkcs8_pem().unwrap()).unwrap();
    let sig = reloaded.sign(b"reloaded").unwrap();
    vk.verify(b"reloaded", &sig).unwrap();
    let reloaded = Sm2SigningKey::from_bytes(&sk.to_bytes()).unwrap();
    let sig = reloaded.sign_with_id(ALICE, b"reloaded").unwrap();
    vk.verify_with_id(ALICE, b"reloaded", &sig).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Live interoperability with the openssl binary
// ---------------------------------------------------------------------------------------------

fn openssl_bin() -> String {
    std::env::var("OPENSSL").unwrap_or_else(|_| "openssl".to_owned())
}

/// Runs openssl; panics (failing the test) when it cannot be started.
fn openssl(args: &[&str]) -> Output {
    let bin = openssl_bin();
    Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{bin}` ({e}): OpenSSL 3 is required for the SM2 interoperability \
             tests (apt-get install openssl)"
        )
    })
}

fn openssl_ok(args: &[&str]) -> Output {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

#[test]
fn live_openssl_is_version_3() {
    let out = openssl_ok(&["version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("OpenSSL 3."),
        "need OpenSSL 3, found {text}"
    );
}

#[test]
fn live_openssl_verifies_our_signature_with_our_public_key() {
    let dir = Dir::new();
    let sk = Sm2SigningKey::generate().unwrap();
    let msg = b"signed by zaibei, verified by OpenSSL\n";
    let sig = sk.sign(msg).unwrap();
    let msg_path = dir.write("msg", msg);
    let pub_path = dir.write(
        "pub.pem",
        sk.verifying_key().to_public_key_pem().unwrap().as_bytes(),
    );
    let sig_path = dir.write("sig.der", &sig.to_der());
    let distid = format!("distid:{DEFAULT_DISTID}");

    let out = openssl_ok(&[
        "dgst",
        "-sm3",
        "-verify",
        p(&pub_path),
        "-sigopt",
        &distid,
        "-signature",
        p(&sig_path),
        p(&msg_path),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");

    // The harness is meaningful: OpenSSL rejects the same signature over another message.
    let other = dir.write("other", b"signed by zaibei, verified by OpenSSL!\n");
    let out = openssl(&[
        "dgst",
        "-sm3",
        "-verify",
        p(&pub_path),
        "-sigopt",
        &distid,
        "-signature",
        p(&sig_path),
        p(&other),
    ]);
    assert!(!out.status.success(), "OpenSSL accepted a wrong message");

    // Custom identifier through pkeyutl.
    let sig = sk.sign_with_id(ALICE, msg).unwrap();
    let sig_path = dir.write("sig-alice.der", &sig.to_der());
    let alice = format!("distid:{ALICE}");
    let out = openssl_ok(&[
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pubin",
        "-inkey",
        p(&pub_path),
        "-pkeyopt",
        &alice,
        "-in",
        p(&msg_path),
        "-sigfile",
        p(&sig_path),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
        "{out:?}"
    );
}

#[test]
fn live_openssl_reads_our_private_key_and_we_verify_its_signature() {
    let dir = Dir::new();
    let sk = Sm2SigningKey::generate().unwrap();
    let key_path = dir.write("key.pem", sk.to_pkcs8_pem().unwrap().as_bytes());

    // OpenSSL derives the same public key from our PKCS#8 file, byte for byte.
    let out = openssl_ok(&["pkey", "-in", p(&key_path), "-pubout"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        sk.verifying_key().to_public_key_pem().unwrap()
    );

    // OpenSSL signs with our key; we verify.
    let msg = b"signed by OpenSSL with a key made by zaibei\n";
    let msg_path = dir.write("msg", msg);
    let sig_path = dir.path("sig.der");
    let distid = format!("distid:{DEFAULT_DISTID}");
    openssl_ok(&[
        "dgst",
        "-sm3",
        "-sign",
        p(&key_path),
        "-sigopt",
        &distid,
        "-out",
        p(&sig_path),
        p(&msg_path),
    ]);
    let sig = Sm2Signature::from_der(&std::fs::read(&sig_path).unwrap()).unwrap();
    sk.verifying_key().verify(msg, &sig).unwrap();
    assert!(sk.verifying_key().verify(b"another message", &sig).is_err());
}

#[test]
fn live_openssl_key_and_signatures_in_both_directions() {
    let dir = Dir::new();
    let key_path = dir.path("key.pem");
    let pub_path = dir.path("pub.pem");
    openssl_ok(&["genpkey", "-algorithm", "SM2", "-out", p(&key_path)]);
    openssl_ok(&["pkey", "-in", p(&key_path), "-pubout", "-out", p(&pub_path)]);
    let key_pem = std::fs::read_to_string(&key_path).unwrap();
    let pub_pem = std::fs::read_to_string(&pub_path).unwrap();

    let sk = Sm2SigningKey::from_pkcs8_pem(&key_pem).unwrap();
    let vk = Sm2VerifyingKey::from_public_key_pem(&pub_pem).unwrap();
    assert_eq!(sk.verifying_key(), &vk);
    // Our re-encoding of OpenSSL's private key is readable by OpenSSL and is the same key.
    let ours = dir.write("ours.pem", sk.to_pkcs8_pem().unwrap().as_bytes());
    let out = openssl_ok(&["pkey", "-in", p(&ours), "-pubout"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), pub_pem);

    let msg = b"two-way SM2 interoperability check";
    let msg_path = dir.write("msg", msg);
    let alice = format!("distid:{ALICE}");

    // OpenSSL signs (custom identifier, pkeyutl); we verify.
    let sig_path = dir.path("openssl-sig.der");
    openssl_ok(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-digest",
        "sm3",
        "-inkey",
        p(&key_path),
        "-pkeyopt",
        &alice,
        "-in",
        p(&msg_path),
        "-out",
        p(&sig_path),
    ]);
    let sig = Sm2Signature::from_der(&std::fs::read(&sig_path).unwrap()).unwrap();
    vk.verify_with_id(ALICE, msg, &sig).unwrap();
    assert!(vk.verify(msg, &sig).is_err());

    // We sign with OpenSSL's key; OpenSSL verifies with its own public key file.
    let sig = sk.sign(msg).unwrap();
    let sig_path = dir.write("our-sig.der", &sig.to_der());
    let distid = format!("distid:{DEFAULT_DISTID}");
    let out = openssl_ok(&[
        "dgst",
        "-sm3",
        "-verify",
        p(&pub_path),
        "-sigopt",
        &distid,
        "-signature",
        p(&sig_path),
        p(&msg_path),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
}
