use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroize;

use crate::{CryptoError, KEY_LEN, SecretKey, Suite};

/// Length of the random salt stored beside every password-derived key.
pub const KDF_SALT_LEN: usize = 32;

/// Upper bound on PBKDF2 iterations accepted from a key object (a hostile object must not
/// make `open` run for hours).
const MAX_PBKDF2_ITERATIONS: u32 = 200_000_000;
/// Upper bound on Argon2id memory accepted from a key object: 4 GiB.
const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Upper bound on Argon2id passes accepted from a key object.
const MAX_ARGON2_ITERATIONS: u32 = 1_000;
/// Upper bound on Argon2id lanes accepted from a key object.
const MAX_ARGON2_PARALLELISM: u32 = 64;

/// A password-based key-derivation function with its cost parameters.
///
/// The parameters are stored in every key object, so each key may have its own cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKdf {
    /// PBKDF2 with HMAC-SM3 as PRF (GM/T 0091-2020), 32 bytes of output.
    Pbkdf2HmacSm3 {
        /// Iteration count.
        iterations: u32,
    },
    /// Argon2id version 0x13 (RFC 9106), 32 bytes of output.
    Argon2id {
        /// Memory in KiB.
        memory_kib: u32,
        /// Number of passes.
        iterations: u32,
        /// Number of lanes.
        parallelism: u32,
    },
}

impl PasswordKdf {
    /// The stable name used in key objects.
    pub fn name(&self) -> &'static str {
        match self {
            PasswordKdf::Pbkdf2HmacSm3 { .. } => "pbkdf2-hmac-sm3",
            PasswordKdf::Argon2id { .. } => "argon2id",
        }
    }

    /// Checks that the parameters are inside the accepted range.
    pub fn validate(&self) -> Result<(), CryptoError> {
        match *self {
            PasswordKdf::Pbkdf2HmacSm3 { iterations } => {
                if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(CryptoError::InvalidKdfParams(format!(
                        "pbkdf2 iterations {iterations} outside 1..={MAX_PBKDF2_ITERATIONS}"
                    )));
                }
            }
            PasswordKdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                if memory_kib > MAX_ARGON2_MEMORY_KIB
                    || iterations == 0
                    || iterations > MAX_ARGON2_ITERATIONS
                    || parallelism == 0
                    || parallelism > MAX_ARGON2_PARALLELISM
                {
                    return Err(CryptoError::InvalidKdfParams(format!(
                        "argon2id m={memory_kib} KiB t={iterations} p={parallelism} out of range"
                    )));
                }
                Params::new(memory_kib, iterations, parallelism, Some(KEY_LEN))
                    .map_err(|e| CryptoError::InvalidKdfParams(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Derives a 32-byte key from `password` and `salt`.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<SecretKey, CryptoError> {
        self.validate()?;
        let mut out = [0u8; KEY_LEN];
        match *self {
            PasswordKdf::Pbkdf2HmacSm3 { iterations } => {
                pbkdf2::pbkdf2_hmac::<sm3::Sm3>(password, salt, iterations, &mut out);
            }
            PasswordKdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params = Params::new(memory_kib, iterations, parallelism, Some(KEY_LEN))
                    .map_err(|e| CryptoError::InvalidKdfParams(e.to_string()))?;
                Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password_into(password, salt, &mut out)
                    .map_err(|e| CryptoError::InvalidKdfParams(e.to_string()))?;
            }
        }
        let key = SecretKey::from_bytes(out);
        out.zeroize();
        Ok(key)
    }

    /// The suite's KDF with the cheapest parameters the crate accepts. Only for tests: the
    /// parameters are recorded in the key object like any others.
    pub fn insecure_for_tests(suite: Suite) -> Self {
        match suite {
            Suite::Gm => PasswordKdf::Pbkdf2HmacSm3 { iterations: 1_000 },
            Suite::Intl => PasswordKdf::Argon2id {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        }
    }

    /// Picks parameters for the suite so that one derivation takes at least `target` on this
    /// machine (and never less than the floor of the suite: 100,000 PBKDF2 iterations, or
    /// Argon2id with 64 MiB and 3 passes).
    pub fn calibrate(suite: Suite, target: Duration) -> Result<Self, CryptoError> {
        let salt = [0u8; KDF_SALT_LEN];
        match suite {
            Suite::Gm => {
                let floor = 100_000u32;
                let probe = 20_000u32;
                let start = Instant::now();
                PasswordKdf::Pbkdf2HmacSm3 { iterations: probe }.derive(b"calibrate", &salt)?;
                let per_iter = start.elapsed().as_secs_f64() / f64::from(probe);
                let wanted = if per_iter > 0.0 {
                    target.as_secs_f64() / per_iter
                } else {
                    0.0
                };
                let iterations = (wanted * 1.1).min(f64::from(MAX_PBKDF2_ITERATIONS / 2)) as u32;
                Ok(PasswordKdf::Pbkdf2HmacSm3 {
                    iterations: iterations.max(floor),
                })
            }
            Suite::Intl => {
                let memory_kib = 64 * 1024;
                let mut iterations = 3u32;
                loop {
                    let kdf = PasswordKdf::Argon2id {
                        memory_kib,
                        iterations,
                        parallelism: 1,
                    };
                    let start = Instant::now();
                    kdf.derive(b"calibrate", &salt)?;
                    let took = start.elapsed();
                    if took >= target || iterations >= 64 {
                        return Ok(kdf);
                    }
                    let scale = target.as_secs_f64() / took.as_secs_f64().max(1e-6);
                    let next = (f64::from(iterations) * scale * 1.1).ceil() as u32;
                    iterations = next.clamp(iterations + 1, 64);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn invalid(kdf: PasswordKdf) -> bool {
        matches!(kdf.validate(), Err(CryptoError::InvalidKdfParams(_)))
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(
            PasswordKdf::Pbkdf2HmacSm3 { iterations: 1 }.name(),
            "pbkdf2-hmac-sm3"
        );
        assert_eq!(
            PasswordKdf::insecure_for_tests(Suite::Intl).name(),
            "argon2id"
        );
    }

    #[test]
    fn pbkdf2_bounds() {
        assert!(invalid(PasswordKdf::Pbkdf2HmacSm3 { iterations: 0 }));
        assert!(invalid(PasswordKdf::Pbkdf2HmacSm3 {
            iterations: MAX_PBKDF2_ITERATIONS + 1
        }));
        assert!(invalid(PasswordKdf::Pbkdf2HmacSm3 {
            iterations: u32::MAX
        }));
        PasswordKdf::Pbkdf2HmacSm3 { iterations: 1 }
            .validate()
            .unwrap();
        PasswordKdf::Pbkdf2HmacSm3 {
            iterations: MAX_PBKDF2_ITERATIONS,
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn argon2id_bounds() {
        let ok = |memory_kib, iterations, parallelism| PasswordKdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        };
        for hostile in [
            ok(MAX_ARGON2_MEMORY_KIB + 1, 1, 1),
            ok(u32::MAX, 1, 1),
            ok(0, 1, 1),
            // Argon2 needs at least 8 KiB per lane.
            ok(8 * 4 - 1, 1, 4),
            ok(64, 0, 1),
            ok(64, MAX_ARGON2_ITERATIONS + 1, 1),
            ok(64, u32::MAX, 1),
            ok(1024, 1, 0),
            ok(1024, 1, MAX_ARGON2_PARALLELISM + 1),
            ok(u32::MAX, u32::MAX, u32::MAX),
        ] {
            assert!(invalid(hostile), "{hostile:?} accepted");
        }
        ok(8, 1, 1).validate().unwrap();
        ok(
            MAX_ARGON2_MEMORY_KIB,
            MAX_ARGON2_ITERATIONS,
            MAX_ARGON2_PARALLELISM,
        )
        .validate()
        .unwrap();
        PasswordKdf::insecure_for_tests(Suite::Intl)
            .validate()
            .unwrap();
        PasswordKdf::insecure_for_tests(Suite::Gm)
            .validate()
            .unwrap();
    }

    #[test]
    fn derive_refuses_hostile_parameters_before_working() {
        // These would run for hours or allocate terabytes if they were not refused first.
        for hostile in [
            PasswordKdf::Pbkdf2HmacSm3 {
                iterations: u32::MAX,
            },
            PasswordKdf::Argon2id {
                memory_kib: u32::MAX,
                iterations: u32::MAX,
                parallelism: 1,
            },
        ] {
            assert!(matches!(
                hostile.derive(b"pw", &[0; KDF_SALT_LEN]),
                Err(CryptoError::InvalidKdfParams(_))
            ));
        }
    }

    #[test]
    fn argon2id_short_salt_is_an_error_not_a_panic() {
        let kdf = PasswordKdf::insecure_for_tests(Suite::Intl);
        assert!(matches!(
            kdf.derive(b"pw", b"short"),
            Err(CryptoError::InvalidKdfParams(_))
        ));
        kdf.derive(b"pw", &[0; KDF_SALT_LEN]).unwrap();
    }

    #[test]
    fn derive_is_deterministic_and_salted() {
        for suite in [Suite::Gm, Suite::Intl] {
            let kdf = PasswordKdf::insecure_for_tests(suite);
            let a = kdf.derive(b"pw", &[1; KDF_SALT_LEN]).unwrap();
            assert_eq!(a, kdf.derive(b"pw", &[1; KDF_SALT_LEN]).unwrap());
            assert_ne!(a, kdf.derive(b"pw", &[2; KDF_SALT_LEN]).unwrap());
            assert_ne!(a, kdf.derive(b"pW", &[1; KDF_SALT_LEN]).unwrap());
        }
    }

    #[test]
    fn calibrate_never_goes_below_the_floor() {
        for target in [Duration::ZERO, Duration::from_millis(1)] {
            match PasswordKdf::calibrate(Suite::Gm, target).unwrap() {
                kdf @ PasswordKdf::Pbkdf2HmacSm3 { iterations } => {
                    assert!(iterations >= 100_000, "{kdf:?}");
                    kdf.validate().unwrap();
                }
                other => panic!("gm calibrated to {other:?}"),
            }
            match PasswordKdf::calibrate(Suite::Intl, target).unwrap() {
                kdf @ PasswordKdf::Argon2id {
                    memory_kib,
                    iterations,
                    parallelism,
                } => {
                    assert!(memory_kib >= 64 * 1024, "{kdf:?}");
                    assert!((3..=64).contains(&iterations), "{kdf:?}");
                    assert!(parallelism >= 1, "{kdf:?}");
                    kdf.validate().unwrap();
                }
                other => panic!("intl calibrated to {other:?}"),
            }
        }
    }
}
