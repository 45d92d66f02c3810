//! Signed checkpoints of the chain and the key that signs them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zaibei_crypto::sm2::SIGNATURE_LEN;
use zaibei_crypto::{Sm2Signature, Sm2SigningKey, Sm2VerifyingKey};

use crate::canonical::{put_i64, put_str, put_u64};
use crate::hash::sm3;
use crate::{AuditError, AuditRecord, Hash};

/// Domain-separation tag that starts the signed bytes of every checkpoint.
pub const CHECKPOINT_TAG: &[u8] = b"zaibei audit checkpoint v1";

/// A signed statement "the record with sequence number `seq` has hash `head`", anchored outside
/// the server's database.
///
/// Since every record's hash covers the one before it, `head` fixes the whole chain up to
/// `seq`: a verifier holding the checkpoint detects a truncated tail (the log ends before `seq`)
/// and a chain rewritten before `seq` (the record at `seq` hashes differently), even when the
/// forger recomputed every hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the newest record covered.
    pub seq: u64,
    /// That record's hash.
    pub head: Hash,
    /// When the checkpoint was signed, in Unix milliseconds.
    pub time: i64,
    /// Number of records covered: the chain starts at 1, so this equals `seq`.
    pub records: u64,
    /// Key id of the signing key ([`key_id`]).
    pub signer: String,
    /// SM2 signature (`r ‖ s`, 64 bytes, as 128 lowercase hexadecimal digits) over
    /// [`Checkpoint::signed_bytes`], with the default distinguishing identifier
    /// `1234567812345678`.
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers:
    /// `CHECKPOINT_TAG ‖ u64le(seq) ‖ head ‖ i64le(time) ‖ u64le(records) ‖ u64le(len) ‖ signer`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(self.seq, &self.head, self.time, self.records, &self.signer)
    }

    /// Checks the signature with `key`, and that `signer` is `key`'s id.
    pub fn verify_signature(&self, key: &Sm2VerifyingKey) -> Result<(), AuditError> {
        if self.signer != key_id(key) {
            return Err(AuditError::BadCheckpoint {
                reason: format!(
                    "checkpoint at seq {} names signer {:?}, not the key {}",
                    self.seq,
                    self.signer,
                    key_id(key)
                ),
            });
        }
        let sig = decode_signature(&self.signature)?;
        key.verify(&self.signed_bytes(), &sig)
            .map_err(|e| AuditError::BadCheckpoint {
                reason: format!("checkpoint at seq {}: {e}", self.seq),
            })
    }

    /// The checkpoint as pretty-printed JSON, as anchored and exported.
    pub fn to_json(&self) -> Result<Vec<u8>, AuditError> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|e| AuditError::BadCheckpoint {
            reason: e.to_string(),
        })?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a checkpoint from its JSON. Unknown fields are refused.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes).map_err(|e| AuditError::BadCheckpoint {
            reason: e.to_string(),
        })
    }
}

fn signed_bytes(seq: u64, head: &Hash, time: i64, records: u64, signer: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_TAG.len() + 64 + signer.len());
    out.extend_from_slice(CHECKPOINT_TAG);
    put_u64(&mut out, seq);
    out.extend_from_slice(head.as_bytes());
    put_i64(&mut out, time);
    put_u64(&mut out, records);
    put_str(&mut out, signer);
    out
}

fn decode_signature(text: &str) -> Result<Sm2Signature, AuditError> {
    let bad = |reason: String| AuditError::BadCheckpoint { reason };
    if text.len() != 2 * SIGNATURE_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad(format!(
            "signature is not {} lowercase hexadecimal digits",
            2 * SIGNATURE_LEN
        )));
    }
    let mut raw = [0u8; SIGNATURE_LEN];
    hex::decode_to_slice(text, &mut raw).map_err(|e| bad(format!("signature: {e}")))?;
    Sm2Signature::from_bytes(&raw).map_err(|e| bad(e.to_string()))
}

/// The id of a checkpoint signing key: the first 16 bytes of SM3 over its uncompressed SEC1
/// encoding (`04 ‖ x ‖ y`), as 32 lowercase hexadecimal digits.
pub fn key_id(key: &Sm2VerifyingKey) -> String {
    hex::encode(&sm3(&[&key.to_sec1_bytes()]).as_bytes()[..16])
}

/// The SM2 key that signs checkpoints, with its id.
///
/// It lives in a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, readable by
/// `openssl pkey`), written with mode 0600. Its public key (from [`Self::public_key_pem`]) is
/// what the audit administrator gives to `zaibei audit verify --key`.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    key: Sm2SigningKey,
    id: String,
}

impl CheckpointSigner {
    /// A signer with `key`.
    pub fn new(key: Sm2SigningKey) -> Self {
        let id = key_id(key.verifying_key());
        CheckpointSigner { key, id }
    }

    /// A signer with a fresh random key (not saved anywhere).
    pub fn generate() -> Result<Self, AuditError> {
        let key =
            Sm2SigningKey::generate().map_err(|source| AuditError::Key { path: None, source })?;
        Ok(Self::new(key))
    }

    /// Reads the key from a PKCS#8 PEM file.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let pem = zaibei_crypto::Zeroizing::new(fs::read_to_string(path).map_err(|source| {
            AuditError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            }
        })?);
        let key = Sm2SigningKey::from_pkcs8_pem(&pem).map_err(|source| AuditError::Key {
            path: Some(path.to_owned()),
            source,
        })?;
        Ok(Self::new(key))
    }

    /// Reads the key from `path`, or, when there is no such file, generates one and saves it
    /// there (without ever replacing a file another process created meanwhile: then that key
    /// is read). The second value is true when the key was generated, which the caller
    /// audits as [`crate::AuditAction::AuditKeyChanged`].
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), AuditError> {
        match Self::load(path) {
            Ok(s) => return Ok((s, false)),
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(e),
        }
        let signer = Self::generate()?;
        match signer.save(path, false) {
            Ok(()) => Ok((signer, true)),
            Err(AuditError::KeyFileExists { .. }) => Ok((Self::load(path)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Writes the key to `path` as PKCS#8 PEM, crash-safely: a temporary file (mode 0600) in
    /// the same directory is written and fsynced, then published under `path` and the directory
    /// fsynced. With `overwrite` false an existing file is never replaced
    /// ([`AuditError::KeyFileExists`]); with true it is replaced atomically.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), AuditError> {
        let pem = self.key.to_pkcs8_pem().map_err(|source| AuditError::Key {
            path: Some(path.to_owned()),
            source,
        })?;
        write_private_file(path, pem.as_bytes(), overwrite)
    }

    /// The key id written into every checkpoint ([`key_id`]).
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public key that verifies the checkpoints.
    pub fn verifying_key(&self) -> &Sm2VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> Result<String, AuditError> {
        self.verifying_key()
            .to_public_key_pem()
            .map_err(|source| AuditError::Key { path: None, source })
    }

    /// A signed checkpoint of the chain up to `head_record`, at `time` (Unix milliseconds).
    pub fn checkpoint(
        &self,
        head_record: &AuditRecord,
        time: i64,
    ) -> Result<Checkpoint, AuditError> {
        self.sign(head_record.seq, head_record.hash, time)
    }

    /// A signed checkpoint saying that the record at `seq` has hash `head`.
    pub fn sign(&self, seq: u64, head: Hash, time: i64) -> Result<Checkpoint, AuditError> {
        let bytes = signed_bytes(seq, &head, time, seq, &self.id);
        let sig = self
            .key
            .sign(&bytes)
            .map_err(|source| AuditError::Key { path: None, source })?;
        Ok(Checkpoint {
            seq,
            head,
            time,
            records: seq,
            signer: self.id.clone(),
            signature: hex::encode(sig.to_bytes()),
        })
    }
}

/// When the next checkpoint is due: after `every_records` records or `every_ms` milliseconds
/// since the last one, whichever comes first (the server's `audit_checkpoint_records` and
/// `audit_checkpoint_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Records after which a checkpoint is due (0: no limit by count).
    pub every_records: u64,
    /// Milliseconds after which a checkpoint is due if any record was appended (0: no limit
    /// by time).
    pub every_ms: i64,
}

impl CheckpointPolicy {
    /// True when a checkpoint of the chain head `head_seq` is due at `now` (Unix ms), given
    /// the newest anchored checkpoint. Nothing is due while no record follows the last
    /// checkpoint.
    pub fn is_due(&self, last: Option<&Checkpoint>, head_seq: u64, now: i64) -> bool {
        let (last_seq, last_time) = last.map_or((0, i64::MIN), |c| (c.seq, c.time));
        self.is_due_after(last_seq, last_time, head_seq, now)
    }

    /// [`CheckpointPolicy::is_due`] given only the last checkpoint's `seq` and `time` (as a
    /// catalogue keeps them; 0 and any time before the first record when there is none).
    pub fn is_due_after(&self, last_seq: u64, last_time: i64, head_seq: u64, now: i64) -> bool {
        if head_seq <= last_seq {
            return false;
        }
        let by_count = self.every_records > 0 && head_seq - last_seq >= self.every_records;
        let by_time = self.every_ms > 0 && now.saturating_sub(last_time) >= self.every_ms;
        by_count || by_time
    }
}

/// Writes a private file crash-safely (see [`CheckpointSigner::save`]).
fn write_private_file(path: &Path, data: &[u8], overwrite: bool) -> Result<(), AuditError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| AuditError::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let rand = zaibei_crypto::random_array::<8>()
        .map_err(|source| AuditError::Key { path: None, source })?;
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(rand)));

    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io("create", &tmp))?;
        f.write_all(data).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        if overwrite {
            fs::rename(&tmp, path).map_err(io("rename", path))?;
        } else {
            // A hard link publishes the complete file under `path` only if the name is free.
            match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(AuditError::KeyFileExists {
                        path: path.to_owned(),
                    });
                }
                Err(e) => return Err(io("create", path)(e)),
            }
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &dir))
    })();
    // The temporary name is gone after a rename; after a link (or a failure) it is removed.
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{AuditAction, AuditEvent, Outcome};

    fn record() -> AuditRecord {
        AuditRecord::next(
            None,
            AuditEvent::new(1, "a", AuditAction::Login, "a", Outcome::Success),
        )
    }

    #[test]
    fn sign_and_verify() {
        let s = CheckpointSigner::generate().unwrap();
        let cp = s.checkpoint(&record(), 42).unwrap();
        assert_eq!(cp.seq, 1);
        assert_eq!(cp.records, 1);
        assert_eq!(cp.signer, s.key_id());
        assert_eq!(cp.signer.len(), 32);
        assert_eq!(cp.signature.len(), 128);
        cp.verify_signature(s.verifying_key()).unwrap();
        let back = Checkpoint::from_json(&cp.to_json().unwrap()).unwrap();
        assert_eq!(back, cp);

        let mut bad = cp.clone();
        bad.time += 1;
        assert!(bad.verify_signature(s.verifying_key()).is_err());
        let mut bad = cp.clone();
        bad.signature = bad.signature.to_uppercase();
        assert!(bad.verify_signature(s.verifying_key()).is_err());
        let mut bad = cp.clone();
        bad.signature.pop();
        assert!(bad.verify_signature(s.verifying_key()).is_err());
        let other = CheckpointSigner::generate().unwrap();
        assert!(cp.verify_signature(other.verifying_key()).is_err());
        assert!(Checkpoint::from_json(b"{}").is_err());
        assert!(Checkpoint::from_json(b"\xff").is_err());
    }

    #[test]
    fn key_id_is_sm3_prefix_of_sec1() {
        let s = CheckpointSigner::generate().unwrap();
        let full = sm3(&[&s.verifying_key().to_sec1_bytes()]);
        assert_eq!(s.key_id(), &full.to_hex()[..32]);
    }

    #[test]
    fn key_file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-key.pem");
        let (a, created) = CheckpointSigner::load_or_generate(&path).unwrap();
        assert!(created);
        let (b, created) = CheckpointSigner::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(a.key_id(), b.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let c = CheckpointSigner::generate().unwrap();
        assert!(matches!(
            c.save(&path, false),
            Err(AuditError::KeyFileExists { .. })
        ));
        assert_eq!(CheckpointSigner::load(&path).unwrap().key_id(), a.key_id());
        c.save(&path, true).unwrap();
        assert_eq!(CheckpointSigner::load(&path).unwrap().key_id(), c.key_id());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("audit-key.pem")]);
        let pem = c.public_key_pem().unwrap();
        let vk = Sm2VerifyingKey::from_public_key_pem(&pem).unwrap();
        assert_eq!(key_id(&vk), c.key_id());

        fs::write(&path, "garbage").unwrap();
        let err = CheckpointSigner::load(&path).unwrap_err();
        assert!(err.to_string().contains("audit-key.pem"), "{err}");
        let missing = dir.path().join("none/x.pem");
        assert!(matches!(
            CheckpointSigner::load_or_generate(&missing),
            Err(AuditError::Io { .. })
        ));
    }

    #[test]
    fn policy() {
        let p = CheckpointPolicy {
            every_records: 100,
            every_ms: 60_000,
        };
        assert!(!p.is_due(None, 0, 0));
        assert!(p.is_due(None, 1, 0));
        let s = CheckpointSigner::generate().unwrap();
        let cp = s.sign(10, Hash::ZERO, 1_000).unwrap();
        assert!(!p.is_due(Some(&cp), 10, 1_000_000));
        assert!(!p.is_due(Some(&cp), 50, 2_000));
        assert!(p.is_due(Some(&cp), 110, 2_000));
        assert!(p.is_due(Some(&cp), 11, 61_000));
        let never = CheckpointPolicy {
            every_records: 0,
            every_ms: 0,
        };
        assert!(!never.is_due(None, 5, 0));
    }
}
