//! Bearer tokens: `zb1_<id>_<secret>`. The catalogue keeps the id and the SM3 hash of the
//! secret, never the secret, so a stolen database yields no usable token.

use sm3::{Digest, Sm3};
use zaibei_crypto::random_array;

/// A freshly minted token.
#[derive(Debug)]
pub struct Minted {
    /// Its id (16 hex digits), the catalogue's key.
    pub id: String,
    /// The whole bearer token, shown once.
    pub token: String,
    /// The hash the catalogue stores.
    pub secret_hash: String,
}

/// Mints a new token.
pub fn mint() -> Result<Minted, String> {
    let id: [u8; 8] = random_array().map_err(|e| e.to_string())?;
    let secret: [u8; 32] = random_array().map_err(|e| e.to_string())?;
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    Ok(Minted {
        token: format!("zb1_{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    })
}

/// Splits a bearer token into id and secret; `None` when it is not one of ours.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("zb1_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// The stored hash of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sm3::digest(secret.as_bytes()))
}

/// A random id for catalogue rows (16 hex digits).
pub fn random_id() -> Result<String, String> {
    let id: [u8; 8] = random_array().map_err(|e| e.to_string())?;
    Ok(hex::encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_parse() {
        let m = mint().unwrap();
        let (id, secret) = parse(&m.token).unwrap();
        assert_eq!(id, m.id);
        assert_eq!(hash_secret(secret), m.secret_hash);
        assert!(parse("zb1_xyz_abc").is_none());
        assert!(parse("Bearer zb1").is_none());
        assert!(parse(&m.token.replace("zb1", "zb2")).is_none());
    }

    /// GB/T 32905-2016 Appendix A example 1.
    #[test]
    fn sm3_known_answer() {
        assert_eq!(
            hex::encode(Sm3::digest(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }
}
