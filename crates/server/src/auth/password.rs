//! Password hashes (PBKDF2-HMAC-SM3, GM/T 0091) and the password policy.

use zaibei_crypto::{PasswordKdf, random_array};
use zaibei_types::api::SecurityPolicy;

/// Iterations of new password hashes unless configured otherwise.
pub const DEFAULT_ITERATIONS: u32 = 100_000;

/// Hashes `password` as `pbkdf2-hmac-sm3$ITERATIONS$SALT$HASH` (hex fields).
pub fn hash(password: &str, iterations: u32) -> Result<String, String> {
    let salt: [u8; 16] = random_array().map_err(|e| e.to_string())?;
    let kdf = PasswordKdf::Pbkdf2HmacSm3 { iterations };
    let key = kdf
        .derive(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "pbkdf2-hmac-sm3${iterations}${}${}",
        hex::encode(salt),
        hex::encode(key.as_bytes())
    ))
}

/// Whether `password` matches `stored` (a hash from [`hash`]); malformed hashes never match.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut fields = stored.split('$');
    let (Some("pbkdf2-hmac-sm3"), Some(iter), Some(salt), Some(want), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(want)) =
        (iter.parse::<u32>(), hex::decode(salt), hex::decode(want))
    else {
        return false;
    };
    let Ok(key) = (PasswordKdf::Pbkdf2HmacSm3 { iterations }).derive(password.as_bytes(), &salt)
    else {
        return false;
    };
    constant_time_eq(key.as_bytes(), &want)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a password breaks the policy, or `None` when it complies.
pub fn policy_violation(password: &str, user: &str, policy: &SecurityPolicy) -> Option<String> {
    let len = password.chars().count();
    if len < policy.min_password_len as usize {
        return Some(format!(
            "the password must have at least {} characters",
            policy.min_password_len
        ));
    }
    if len > 1024 {
        return Some("the password is longer than 1024 characters".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if classes < policy.min_password_classes as usize {
        return Some(format!(
            "the password must mix at least {} of: lower-case letters, upper-case letters, digits, other characters",
            policy.min_password_classes
        ));
    }
    if user.chars().count() >= 3 && password.to_lowercase().contains(&user.to_lowercase()) {
        return Some("the password must not contain the user name".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_reject() {
        let h = hash("Correct horse 9", 1000).unwrap();
        assert!(verify("Correct horse 9", &h));
        assert!(!verify("Correct horse 8", &h));
        assert!(!verify("x", "pbkdf2-hmac-sm3$0$00$00"));
        assert!(!verify("x", "garbage"));
        assert_ne!(h, hash("Correct horse 9", 1000).unwrap(), "salted");
    }

    #[test]
    fn policy() {
        let p = SecurityPolicy::default();
        assert!(policy_violation("short", "u", &p).is_some());
        assert!(policy_violation("alllowercaseletters", "u", &p).is_some());
        assert!(policy_violation("Alice-Secret-99", "alice", &p).is_some());
        assert_eq!(policy_violation("Tr0ub4dor&3xyz", "alice", &p), None);
    }
}
