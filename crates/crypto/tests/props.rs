//! Property tests of the AEAD, hash and key-derivation layers of both suites.
//!
//! Large inputs are generated from a (length, seed) pair rather than byte by byte: proptest
//! still shrinks the length and the seed, and generating 70,000 bytes stays cheap.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::sample::Index;
use zaibei_crypto::{Aead, CryptoError, NONCE_LEN, SecretKey, Suite, TAG_LEN};

/// Deterministic filler bytes (SplitMix64) for a given seed.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn suite() -> impl Strategy<Value = Suite> {
    prop_oneof![Just(Suite::Gm), Just(Suite::Intl)]
}

/// Plaintext lengths 0..70,000, weighted towards the small and block-boundary cases.
fn plaintext_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..80,
        1 => prop::sample::select(vec![15usize, 16, 17, 31, 32, 33, 4095, 4096, 4097, 65_536]),
        2 => 0usize..70_000,
    ]
}

/// A sealed message and everything needed to open it.
#[derive(Debug, Clone)]
struct Sealed {
    suite: Suite,
    key: [u8; 32],
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    plaintext: Vec<u8>,
}

fn sealed(max_pt: usize) -> impl Strategy<Value = Sealed> {
    (
        suite(),
        any::<[u8; 32]>(),
        any::<[u8; NONCE_LEN]>(),
        (0usize..100, any::<u64>()),
        (0usize..max_pt, any::<u64>()),
    )
        .prop_map(
            |(suite, key, nonce, (aad_len, aad_seed), (pt_len, pt_seed))| Sealed {
                suite,
                key,
                nonce,
                aad: bytes(aad_len, aad_seed),
                plaintext: bytes(pt_len, pt_seed),
            },
        )
}

/// Where a single bit is flipped.
#[derive(Debug, Clone, Copy)]
enum Target {
    CiphertextOrTag,
    Tag,
    Aad,
    Nonce,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::CiphertextOrTag),
        Just(Target::Tag),
        Just(Target::Aad),
        Just(Target::Nonce),
    ]
}

fn flip(data: &mut [u8], bit: Index) {
    let bit = bit.index(data.len() * 8);
    data[bit / 8] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn aead_round_trip(
        suite in suite(),
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; NONCE_LEN]>(),
        (aad_len, aad_seed) in (0usize..300, any::<u64>()),
        pt_len in plaintext_len(),
        pt_seed in any::<u64>(),
    ) {
        let aead = Aead::new(suite, &SecretKey::from_bytes(key));
        let aad = bytes(aad_len, aad_seed);
        let pt = bytes(pt_len, pt_seed);

        let sealed = aead.seal(&nonce, &aad, &pt);
        prop_assert_eq!(sealed.len(), pt.len() + TAG_LEN);
        if pt.len() >= 16 {
            prop_assert_ne!(&sealed[..pt.len()], &pt[..]);
        }
        prop_assert_eq!(aead.open(&nonce, &aad, &sealed).unwrap(), pt.clone());

        // In-place variants agree with the allocating ones.
        let mut buf = pt.clone();
        aead.seal_in_place(&nonce, &aad, &mut buf);
        prop_assert_eq!(&buf, &sealed);
        aead.open_in_place(&nonce, &aad, &mut buf).unwrap();
        prop_assert_eq!(&buf, &pt);

        // A cipher prepared again from the same key (as after a restart) opens it too.
        let again = suite.aead(&SecretKey::from_bytes(key));
        prop_assert_eq!(again.open(&nonce, &aad, &sealed).unwrap(), pt);
    }

    #[test]
    fn any_single_bit_flip_fails_authentication(
        s in sealed(2048),
        target in target(),
        bit in any::<Index>(),
    ) {
        let aead = Aead::new(s.suite, &SecretKey::from_bytes(s.key));
        let mut ct = aead.seal(&s.nonce, &s.aad, &s.plaintext);
        let mut aad = s.aad.clone();
        let mut nonce = s.nonce;
        match target {
            Target::CiphertextOrTag => flip(&mut ct, bit),
            Target::Tag => {
                let tag_start = ct.len() - TAG_LEN;
                flip(&mut ct[tag_start..], bit);
            }
            Target::Aad => {
                if aad.is_empty() {
                    // No bit to flip: one byte more is the nearest alteration.
                    aad.push(0);
                } else {
                    flip(&mut aad, bit);
                }
            }
            Target::Nonce => flip(&mut nonce, bit),
        }
        prop_assert_eq!(
            aead.open(&nonce, &aad, &ct),
            Err(CryptoError::AuthenticationFailed)
        );
        let mut buf = ct.clone();
        prop_assert_eq!(
            aead.open_in_place(&nonce, &aad, &mut buf),
            Err(CryptoError::AuthenticationFailed)
        );
        prop_assert!(buf.is_empty(), "buffer not cleared: {} bytes left", buf.len());
    }

    #[test]
    fn open_in_place_clears_the_buffer_on_any_failure(
        s in sealed(512),
        other_key in any::<[u8; 32]>(),
        cut in 0usize..TAG_LEN,
    ) {
        prop_assume!(other_key != s.key);
        let aead = Aead::new(s.suite, &SecretKey::from_bytes(s.key));
        let ct = aead.seal(&s.nonce, &s.aad, &s.plaintext);

        // Wrong key.
        let wrong = Aead::new(s.suite, &SecretKey::from_bytes(other_key));
        let mut buf = ct.clone();
        let res = wrong.open_in_place(&s.nonce, &s.aad, &mut buf);
        // SM4 uses only the first 16 key bytes: keys that differ only in the rest agree.
        if s.suite == Suite::Gm && other_key[..16] == s.key[..16] {
            prop_assert!(res.is_ok());
        } else {
            prop_assert_eq!(res, Err(CryptoError::AuthenticationFailed));
            prop_assert!(buf.is_empty());
        }

        // The other suite's cipher under the same key.
        let other_suite = if s.suite == Suite::Gm { Suite::Intl } else { Suite::Gm };
        let mut buf = ct.clone();
        prop_assert_eq!(
            Aead::new(other_suite, &SecretKey::from_bytes(s.key))
                .open_in_place(&s.nonce, &s.aad, &mut buf),
            Err(CryptoError::AuthenticationFailed)
        );
        prop_assert!(buf.is_empty());

        // Truncated below the tag length.
        let mut buf = ct[..cut].to_vec();
        prop_assert_eq!(
            aead.open_in_place(&s.nonce, &s.aad, &mut buf),
            Err(CryptoError::CiphertextTooShort { len: cut, min: TAG_LEN })
        );
        prop_assert!(buf.is_empty());

        // Truncated but still long enough to hold a tag.
        if ct.len() > TAG_LEN {
            let mut buf = ct[..ct.len() - 1].to_vec();
            prop_assert_eq!(
                aead.open_in_place(&s.nonce, &s.aad, &mut buf),
                Err(CryptoError::AuthenticationFailed)
            );
            prop_assert!(buf.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hasher_in_pieces_equals_one_shot(
        suite in suite(),
        (len, seed) in (0usize..10_000, any::<u64>()),
        mut cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let data = bytes(len, seed);
        let mut points: Vec<usize> = cuts.drain(..).map(|i| i.index(len + 1)).collect();
        points.sort_unstable();
        let mut hasher = suite.hasher();
        let mut start = 0;
        for p in points {
            hasher.update(&data[start..p]);
            start = p;
        }
        hasher.update(&data[start..]);
        prop_assert_eq!(hasher.finalize(), suite.hash(&data));
    }

    #[test]
    fn keyed_hash_depends_on_the_key(
        suite in suite(),
        k1 in any::<[u8; 32]>(),
        k2 in any::<[u8; 32]>(),
        (len, seed) in (0usize..2_000, any::<u64>()),
    ) {
        prop_assume!(k1 != k2);
        let data = bytes(len, seed);
        let h1 = suite.keyed_hash(&SecretKey::from_bytes(k1), &data);
        let h2 = suite.keyed_hash(&SecretKey::from_bytes(k2), &data);
        prop_assert_ne!(h1, h2);
        prop_assert_ne!(h1, suite.hash(&data));
        // Deterministic.
        prop_assert_eq!(h1, suite.keyed_hash(&SecretKey::from_bytes(k1), &data));
    }

    #[test]
    fn derive_key_separates_labels_salts_and_keys(
        suite in suite(),
        key in any::<[u8; 32]>(),
        other_key in any::<[u8; 32]>(),
        l1 in "[a-z0-9/._-]{0,40}",
        l2 in "[a-z0-9/._-]{0,40}",
        salt_len in 0usize..80,
        s1 in any::<u64>(),
        s2 in any::<u64>(),
    ) {
        let k = SecretKey::from_bytes(key);
        let salt1 = bytes(salt_len, s1);
        let salt2 = bytes(salt_len, s2);
        let base = suite.derive_key(&k, &l1, &salt1);
        prop_assert_eq!(&base, &suite.derive_key(&k, &l1, &salt1));
        prop_assert_ne!(base.as_bytes(), k.as_bytes());
        if l1 != l2 {
            prop_assert_ne!(&base, &suite.derive_key(&k, &l2, &salt1));
        }
        // Salts of one length (see `Suite::derive_key` on HMAC-equivalent salts in gm).
        if salt1 != salt2 {
            prop_assert_ne!(&base, &suite.derive_key(&k, &l1, &salt2));
        }
        if key != other_key {
            prop_assert_ne!(&base, &suite.derive_key(&SecretKey::from_bytes(other_key), &l1, &salt1));
        }
        // The two suites never agree.
        let other_suite = if suite == Suite::Gm { Suite::Intl } else { Suite::Gm };
        prop_assert_ne!(&base, &other_suite.derive_key(&k, &l1, &salt1));
    }

    #[test]
    fn intl_derive_key_separates_salts_of_any_length(
        key in any::<[u8; 32]>(),
        (len1, s1) in (0usize..100, any::<u64>()),
        (len2, s2) in (0usize..100, any::<u64>()),
    ) {
        // BLAKE3 hashes key || salt with its exact length, so unlike HKDF even salts that
        // differ only by trailing zeros give different keys.
        let salt1 = bytes(len1, s1);
        let mut salt2 = bytes(len2, s2);
        if len1 == len2 {
            salt2.push(0);
        }
        prop_assume!(salt1 != salt2);
        let k = SecretKey::from_bytes(key);
        prop_assert_ne!(
            Suite::Intl.derive_key(&k, "label", &salt1),
            Suite::Intl.derive_key(&k, "label", &salt2)
        );
    }
}

proptest! {
    /// Messages fed to `HashStreams` piece by piece hash as `Suite::hash` of each, in both
    /// suites.
    #[test]
    fn hash_streams_match_the_suite_hash(
        suite in suite(),
        lens in prop::collection::vec(plaintext_len(), 0..9),
        piece in 1usize..20_000,
    ) {
        let messages: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &len)| bytes(len, i as u64)).collect();
        let mut streams = zaibei_crypto::HashStreams::new(suite, messages.len());
        let longest = lens.iter().copied().max().unwrap_or(0);
        let mut at = 0;
        while at < longest {
            let pieces: Vec<&[u8]> = messages
                .iter()
                .map(|m| &m[at.min(m.len())..(at + piece).min(m.len())])
                .collect();
            streams.update(&pieces);
            at += piece;
        }
        let got = streams.finalize();
        let expected: Vec<_> = messages.iter().map(|m| suite.hash(m)).collect();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    /// Messages added in rounds to `Suite::keyed_hash_some`, those left unfinished resumed in
    /// the next round and all finished in the last, hash as `Suite::keyed_hash` of each, once
    /// each, in both suites.
    #[test]
    fn keyed_hashes_in_rounds_match_the_keyed_hash(
        suite in suite(),
        key in any::<[u8; 32]>(),
        lens in prop::collection::vec(plaintext_len(), 1..20),
        per_round in 1usize..8,
    ) {
        let key = zaibei_crypto::SecretKey::from_bytes(key);
        let messages: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &len)| bytes(len, i as u64)).collect();
        let mut open: Vec<(usize, zaibei_crypto::HashProgress)> = Vec::new();
        let mut got = vec![None; messages.len()];
        let mut next = 0;
        loop {
            let end = (next + per_round).min(messages.len());
            let last = end == messages.len();
            open.extend((next..end).map(|i| (i, Default::default())));
            next = end;
            let refs: Vec<&[u8]> = open.iter().map(|(i, _)| messages[*i].as_slice()).collect();
            let mut progress: Vec<_> = open.iter().map(|(_, p)| p.clone()).collect();
            let out = suite.keyed_hash_some(&key, &refs, &mut progress, last);
            let mut still = Vec::new();
            for (((i, _), p), d) in open.into_iter().zip(progress).zip(out) {
                match d {
                    Some(d) => {
                        prop_assert!(got[i].is_none());
                        got[i] = Some(d);
                    }
                    None => still.push((i, p)),
                }
            }
            open = still;
            if last {
                break;
            }
        }
        prop_assert!(open.is_empty());
        let expected: Vec<_> = messages.iter().map(|m| Some(suite.keyed_hash(&key, m))).collect();
        prop_assert_eq!(got, expected);
    }
}
