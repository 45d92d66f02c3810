//! The server's secret key: seals what the catalogue must keep but must not show (the
//! passwords of repositories' maintenance-only keys), with SM4-GCM. It lives in a file of its
//! own (`DATA_DIR/server-secret.key`, mode 0600), never in the catalogue, so a copy of the
//! database alone opens nothing. Replicas sharing a catalogue share this file.

use std::path::Path;

use zaibei_crypto::{Aead, NONCE_LEN, SecretKey, Suite, random_array};

use crate::error::ServerError;

/// The secret key.
pub struct ServerSecret(SecretKey);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(…)")
    }
}

impl ServerSecret {
    /// Reads the key file, or creates it (crash-safely, 0600) when absent.
    pub fn load_or_generate(path: &Path) -> Result<ServerSecret, ServerError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    ServerError::Config(format!("{} is not a hex key", path.display()))
                })?;
                let raw = hex::decode(text.trim()).map_err(|_| {
                    ServerError::Config(format!("{} is not a hex key", path.display()))
                })?;
                SecretKey::from_slice(&raw)
                    .map(ServerSecret)
                    .ok_or_else(|| {
                        ServerError::Config(format!("{} must hold 32 bytes in hex", path.display()))
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::random().map_err(|e| ServerError::Config(e.to_string()))?;
                crate::tls::write_new(path, hex::encode(key.as_bytes()).as_bytes(), 0o600)?;
                Ok(ServerSecret(key))
            }
            Err(source) => Err(ServerError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Seals `plaintext` bound to `context` (hex of nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, String> {
        let nonce: [u8; NONCE_LEN] = random_array().map_err(|e| e.to_string())?;
        let sealed = Aead::new(Suite::Gm, &self.0).seal(&nonce, context.as_bytes(), plaintext);
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    /// Opens what [`ServerSecret::seal`] sealed with the same `context`.
    pub fn open(
        &self,
        context: &str,
        sealed: &str,
    ) -> Result<zaibei_crypto::Zeroizing<Vec<u8>>, String> {
        let bytes = hex::decode(sealed).map_err(|_| "not hex".to_owned())?;
        if bytes.len() < NONCE_LEN {
            return Err("too short".into());
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| "bad nonce".to_owned())?;
        Aead::new(Suite::Gm, &self.0)
            .open(&nonce, context.as_bytes(), body)
            .map(zaibei_crypto::Zeroizing::new)
            .map_err(|_| "does not authenticate (another server secret, or tampered)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bind_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let s = ServerSecret::load_or_generate(&path).unwrap();
        let sealed = s.seal("acme/main", b"pw").unwrap();
        assert_eq!(&s.open("acme/main", &sealed).unwrap()[..], b"pw");
        assert!(s.open("acme/other", &sealed).is_err());
        let again = ServerSecret::load_or_generate(&path).unwrap();
        assert_eq!(&again.open("acme/main", &sealed).unwrap()[..], b"pw");
        assert!(s.open("acme/main", "00").is_err());
    }
}
