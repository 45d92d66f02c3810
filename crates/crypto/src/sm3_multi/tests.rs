use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sm3::{Digest as _, Sm3};

use super::*;

const ALL: [Sm3Impl; 3] = [Sm3Impl::Avx512, Sm3Impl::Avx2, Sm3Impl::Portable];

/// The multi-buffer engines.
const SIMD: [Sm3Impl; 2] = [Sm3Impl::Avx512, Sm3Impl::Avx2];

fn supported() -> impl Iterator<Item = Sm3Impl> {
    ALL.into_iter().filter(|i| i.is_supported())
}

fn engine(imp: Sm3Impl) -> Engine {
    Engine::new(imp).unwrap_or_else(|| panic!("{imp:?} is supported but was refused"))
}

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn reference(m: &[u8]) -> Digest {
    Sm3::digest(m).into()
}

fn reference_hmac(key: &[u8], m: &[u8]) -> Digest {
    let Ok(mut mac) = <Hmac<Sm3> as KeyInit>::new_from_slice(key) else {
        panic!("HMAC takes keys of any length");
    };
    mac.update(m);
    mac.finalize().into_bytes().into()
}

/// Blocks compressed on this thread by the AVX2 engine (8 per call, idle lanes included)
/// and by the portable code since the last call.
fn take_counts() -> (usize, usize) {
    COUNTS.with(|c| c.replace((0, 0)))
}

/// Hashes `messages` with every supported implementation and compares each digest with
/// `sm3::Sm3::digest`, naming the implementation and message on a mismatch.
fn check_sm3(messages: &[&[u8]]) {
    let expected: Vec<Digest> = messages.iter().map(|m| reference(m)).collect();
    for imp in supported() {
        let got = hash_many(engine(imp), &IV, 0, messages);
        assert_eq!(got.len(), messages.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                hex::encode(g),
                hex::encode(e),
                "{imp:?}: message {i} of {} ({} bytes)",
                messages.len(),
                messages[i].len()
            );
        }
    }
}

fn check_hmac(key: &[u8], messages: &[&[u8]]) {
    for imp in supported() {
        let got = hmac_many(engine(imp), key, messages);
        assert_eq!(got.len(), messages.len());
        for (i, (g, m)) in got.iter().zip(messages).enumerate() {
            assert_eq!(
                hex::encode(g),
                hex::encode(reference_hmac(key, m)),
                "{imp:?}: {}-byte key, message {i} ({} bytes)",
                key.len(),
                m.len()
            );
        }
    }
}

#[test]
fn detection_picks_a_supported_impl() {
    let best = Sm3Impl::detect();
    assert!(best.is_supported());
    assert!(Sm3Impl::Portable.is_supported());
    for imp in SIMD {
        assert_eq!(sm3_many_with(imp, &[]).is_some(), imp.is_supported());
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let avx512 = avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl");
        assert_eq!(Sm3Impl::Avx512.is_supported(), avx512);
        let want = if avx512 {
            Sm3Impl::Avx512
        } else if avx2 {
            Sm3Impl::Avx2
        } else {
            Sm3Impl::Portable
        };
        assert_eq!(best, want);
    }
    eprintln!("SM3 multi-buffer implementation on this CPU: {best:?}");
}

/// GB/T 32905-2016 appendix A, examples 1 and 2, in batches big enough for the AVX2 engine,
/// at every lane position.
#[test]
fn standard_vectors() {
    const ABC: &str = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0";
    const ABCD16: &str = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732";
    let abcd16 = b"abcd".repeat(16);
    for pos in 0..LANES {
        let mut batch: Vec<&[u8]> = vec![b"abc"; LANES];
        batch[pos] = &abcd16;
        for imp in supported() {
            take_counts();
            let Some(got) = sm3_many_with(imp, &batch) else {
                panic!("{imp:?} refused");
            };
            for (i, d) in got.iter().enumerate() {
                let want = if i == pos { ABCD16 } else { ABC };
                assert_eq!(
                    hex::encode(d),
                    want,
                    "{imp:?}, message {i}, long one at {pos}"
                );
            }
            let (simd, portable) = take_counts();
            if imp != Sm3Impl::Portable {
                // Two steps (the 64-byte message has two blocks), then one message left.
                assert_eq!((simd, portable), (8, 1), "{imp:?}");
            } else {
                assert_eq!((simd, portable), (0, 9), "{imp:?}");
            }
        }
    }
}

/// Every length from 0 to 300 bytes, all in one batch (so each lane position and every
/// padding case, one or two tail blocks, goes through the AVX2 engine).
#[test]
fn every_short_length() {
    let data: Vec<Vec<u8>> = (0..=300).map(|len| bytes(len, len as u32)).collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    check_sm3(&messages);
    for imp in SIMD.into_iter().filter(|i| i.is_supported()) {
        take_counts();
        let _ = sm3_many_with(imp, &messages);
        let (simd, portable) = take_counts();
        let total_blocks: usize = (0..=300usize).map(|len| (len + 9).div_ceil(64)).sum();
        // At most `MIN_MULTI - 1` lanes, of at most six blocks each, are finished by the
        // portable code.
        assert!(
            portable <= (MIN_MULTI - 1) * 6,
            "{portable} blocks hashed by the portable code"
        );
        assert!(
            simd >= total_blocks - portable,
            "{imp:?} compressed only {simd} blocks"
        );
    }
    // And each length in a batch of eight equal-length messages of different contents.
    for len in 0..=300 {
        let data: Vec<Vec<u8>> = (0..LANES).map(|s| bytes(len, s as u32 + 1000)).collect();
        let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        check_sm3(&messages);
    }
}

#[test]
fn long_messages() {
    let lens = [
        1 << 20,
        (1 << 20) + 13,
        100_003,
        65_536,
        65_536 + 55,
        65_536 + 56,
        4096,
        1,
        0,
        200_000,
    ];
    let data: Vec<Vec<u8>> = lens.iter().zip(0..).map(|(&l, s)| bytes(l, s)).collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    check_sm3(&messages);
    // Equal lengths, more messages than lanes.
    let data: Vec<Vec<u8>> = (0..20).map(|s| bytes(16 << 10, s)).collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    check_sm3(&messages);
}

/// Hand-overs from the AVX2 engine to the portable code at each stage of a message: in its
/// full blocks, between the full blocks and the tail, between two tail blocks.
#[test]
fn hand_over_to_portable() {
    for long in [60, 64, 119, 120, 128, 1000, 1024] {
        for short in [0, 10, 64, 70] {
            let a = bytes(long, 1);
            let b = bytes(short, 2);
            let messages: Vec<&[u8]> = vec![&b, &a, &b, &b];
            check_sm3(&messages);
            let messages: Vec<&[u8]> = vec![&b, &a, &b, &a, &b];
            check_sm3(&messages);
            let messages: Vec<&[u8]> = vec![&b, &a, &b, &b, &a, &b, &b, &b, &b];
            check_sm3(&messages);
        }
    }
}

/// Fewer messages than `MIN_MULTI` never reach the AVX2 engine; `MIN_MULTI` do.
#[test]
fn small_batches_are_portable() {
    let m: &[u8] = b"message";
    for (imp, n) in SIMD
        .into_iter()
        .filter(|i| i.is_supported())
        .flat_map(|imp| (0..=LANES).map(move |n| (imp, n)))
    {
        take_counts();
        let batch = vec![m; n];
        let Some(got) = sm3_many_with(imp, &batch) else {
            panic!("{imp:?} refused");
        };
        assert!(got.iter().all(|d| *d == reference(m)));
        let (simd, portable) = take_counts();
        if n < MIN_MULTI {
            assert_eq!((simd, portable), (0, n), "{imp:?}, {n} messages");
        } else {
            assert_eq!((simd, portable), (LANES, 0), "{imp:?}, {n} messages");
        }
    }
}

#[test]
fn hmac_matches_reference() {
    let key = SecretKey::from_bytes(core::array::from_fn(|i| (i * 29 + 7) as u8));
    let data: Vec<Vec<u8>> = (0..=300).map(|len| bytes(len, len as u32 + 7)).collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    for imp in supported() {
        let Some(got) = hmac_sm3_many_with(imp, &key, &messages) else {
            panic!("{imp:?} refused");
        };
        for (g, m) in got.iter().zip(&messages) {
            assert_eq!(
                *g,
                reference_hmac(key.as_bytes(), m),
                "{imp:?}, {} bytes",
                m.len()
            );
        }
    }
    assert_eq!(
        hmac_sm3_many(&key, &messages[..5]),
        messages[..5]
            .iter()
            .map(|m| reference_hmac(key.as_bytes(), m))
            .collect::<Vec<_>>()
    );
}

/// RFC 2104 keys of every length around the block size (short keys are zero-padded, long
/// ones hashed first).
#[test]
fn hmac_key_lengths() {
    let data: Vec<Vec<u8>> = (0..12).map(|s| bytes(s * 37, s as u32)).collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    for key_len in (0..=140).chain([1000]) {
        check_hmac(&bytes(key_len, 99 + key_len as u32), &messages);
    }
}

#[test]
fn hmac_long_messages() {
    let data: Vec<Vec<u8>> = [1 << 20, 70_000, 16 << 10, 16 << 10, 5, 0]
        .iter()
        .zip(0..)
        .map(|(&l, s)| bytes(l, s))
        .collect();
    let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    check_hmac(&[0x42; 32], &messages);
}

proptest! {
    #[test]
    fn random_batches_match_sm3(batch in prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..=300),
            1 => prop::collection::vec(any::<u8>(), 300..5000),
        ],
        1..=20,
    )) {
        let messages: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        check_sm3(&messages);
        prop_assert_eq!(sm3_many(&messages).len(), messages.len());
    }

    #[test]
    fn random_batches_match_hmac(key in any::<[u8; 32]>(), batch in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..=700),
        1..=20,
    )) {
        let messages: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let key = SecretKey::from_bytes(key);
        let expected: Vec<Digest> = messages.iter().map(|m| reference_hmac(key.as_bytes(), m)).collect();
        for imp in supported() {
            prop_assert_eq!(hmac_sm3_many_with(imp, &key, &messages), Some(expected.clone()), "{:?}", imp);
        }
    }
}

/// Messages fed piece by piece to `Sm3Streams`, cut at `cuts` (offsets, clamped to each
/// message), give `sm3::Sm3::digest` of each, with every supported implementation.
fn check_streams(messages: &[Vec<u8>], cuts: &[usize]) {
    for imp in supported() {
        let Some(mut streams) = Sm3Streams::new_with(imp, messages.len()) else {
            panic!("{imp:?} refused");
        };
        let mut from = 0;
        for &to in cuts.iter().chain([&usize::MAX]) {
            let pieces: Vec<&[u8]> = messages
                .iter()
                .map(|m| &m[from.min(m.len())..to.max(from).min(m.len())])
                .collect();
            streams.update(&pieces);
            from = to.max(from);
        }
        let got = streams.finalize();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(
                hex::encode(got[i]),
                hex::encode(reference(m)),
                "{imp:?}: message {i} of {} bytes, cut at {cuts:?}",
                m.len()
            );
        }
    }
}

#[test]
fn streams_match_sm3_for_pieces_of_whole_blocks_and_not() {
    let messages: Vec<Vec<u8>> = [0, 1, 63, 64, 65, 1000, 4096, 70_000, 70_001]
        .iter()
        .enumerate()
        .map(|(i, &len)| bytes(len, i as u32 + 7))
        .collect();
    check_streams(&messages, &[]);
    check_streams(&messages, &[64, 4096, 65_536]);
    check_streams(&messages, &[1, 2, 63, 100, 129, 5000]);
    // Fewer messages than the lanes need, and a single one.
    check_streams(&messages[6..], &[4096]);
    check_streams(&messages[8..], &[10, 4096]);
}

#[test]
fn streams_hash_side_by_side() {
    let Some(imp) = SIMD.into_iter().find(|i| i.is_supported()) else {
        return;
    };
    let messages: Vec<Vec<u8>> = (0..4).map(|i| bytes(64 * 100, i)).collect();
    let Some(mut streams) = Sm3Streams::new_with(imp, messages.len()) else {
        panic!("{imp:?} refused");
    };
    take_counts();
    let pieces: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
    streams.update(&pieces);
    let (simd, portable) = take_counts();
    assert_eq!((simd, portable), (100 * LANES, 0));
    let _ = streams.finalize();
}

proptest! {
    #[test]
    fn random_streams_match_sm3(
        lens in prop::collection::vec(0usize..3000, 0..10),
        cuts in prop::collection::vec(0usize..3000, 0..6),
    ) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let messages: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &len)| bytes(len, i as u32)).collect();
        check_streams(&messages, &cuts);
    }
}

/// Messages arriving in `rounds` (counts), hashed with `hmac_sm3_some`: each round adds its
/// messages to those left unfinished, the last round finishes everything. Every digest must
/// equal `Hmac<Sm3>`, and no message may come back twice. Returns, per round, how many were
/// left unfinished.
fn check_rounds(
    imp: Sm3Impl,
    key: &SecretKey,
    messages: &[Vec<u8>],
    rounds: &[usize],
) -> Vec<usize> {
    let mut open: Vec<(usize, Resume)> = Vec::new();
    let mut got: Vec<Option<Digest>> = vec![None; messages.len()];
    let mut next = 0;
    let mut left_per_round = Vec::new();
    for (r, &count) in rounds.iter().enumerate() {
        let last = r + 1 == rounds.len();
        let end = if last {
            messages.len()
        } else {
            (next + count).min(messages.len())
        };
        open.extend((next..end).map(|i| (i, Resume::default())));
        next = end;
        let refs: Vec<&[u8]> = open.iter().map(|(i, _)| messages[*i].as_slice()).collect();
        let mut resume: Vec<Resume> = open.iter().map(|(_, r)| r.clone()).collect();
        let Some(out) = hmac_sm3_some_with(imp, key, &refs, &mut resume, last) else {
            panic!("{imp:?} refused");
        };
        let mut still = Vec::new();
        for (((i, _), r), d) in open.into_iter().zip(resume).zip(out) {
            match d {
                Some(d) => {
                    assert!(got[i].is_none(), "{imp:?}: message {i} came back twice");
                    assert_eq!(r.hashed(), 0, "a finished message's entry is reset");
                    got[i] = Some(d);
                }
                None => still.push((i, r)),
            }
        }
        left_per_round.push(still.len());
        open = still;
    }
    assert!(
        open.is_empty(),
        "{imp:?}: the last round finishes everything"
    );
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(
            got[i].map(hex::encode),
            Some(hex::encode(reference_hmac(key.as_bytes(), m))),
            "{imp:?}: message {i} ({} bytes), rounds {rounds:?}",
            m.len()
        );
    }
    left_per_round
}

#[test]
fn resumed_hmacs_match_the_reference() {
    let key = SecretKey::from_bytes([0x5a; 32]);
    // Two long messages among short ones: the long ones are the tail a round leaves.
    let messages: Vec<Vec<u8>> = [
        70_000, 65_600, 10, 64, 300, 1000, 2000, 100, 0, 63, 5000, 129,
    ]
    .iter()
    .enumerate()
    .map(|(i, &len)| bytes(len, i as u32 + 3))
    .collect();
    for imp in supported() {
        check_rounds(imp, &key, &messages, &[12]);
        check_rounds(imp, &key, &messages, &[8, 2, 2]);
        check_rounds(imp, &key, &messages, &[3, 3, 3, 3]);
        check_rounds(
            imp,
            &key,
            &messages,
            &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        );
    }
}

#[test]
fn the_tail_of_a_round_is_left_for_the_next_one_not_hashed_alone() {
    let Some(imp) = SIMD.into_iter().find(|i| i.is_supported()) else {
        return;
    };
    let key = SecretKey::from_bytes([7; 32]);
    // Two long messages and six short ones: once the short ones are done, the long ones are
    // left with most of their blocks, not compressed one stream at a time.
    let mut messages: Vec<Vec<u8>> = vec![bytes(64 * 400, 1), bytes(64 * 300, 2)];
    messages.extend((0..6).map(|i| bytes(64 * 10, i + 10)));
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let mut resume = vec![Resume::default(); refs.len()];
    take_counts();
    let Some(out) = hmac_sm3_some_with(imp, &key, &refs, &mut resume, false) else {
        panic!("{imp:?} refused");
    };
    let (_, portable) = take_counts();
    assert!(out[..2].iter().all(Option::is_none));
    assert!(out[2..].iter().all(Option::is_some));
    assert!(
        portable < 10,
        "{portable} blocks hashed one stream at a time"
    );
    assert!(resume[0].hashed() > 0 && resume[0].hashed() < 64 * 400);
    assert_eq!(resume[0].hashed() % 64, 0);
    // Resumed with more messages beside them, they come out right.
    assert_eq!(
        check_rounds(imp, &key, &messages, &[8, 0]),
        vec![2, 0],
        "two left after the first round, none after the last"
    );
}

proptest! {
    #[test]
    fn random_rounds_match_hmac(
        key in any::<[u8; 32]>(),
        lens in prop::collection::vec(prop_oneof![3 => 0usize..500, 1 => 500usize..20_000], 1..24),
        rounds in prop::collection::vec(0usize..8, 1..6),
    ) {
        let key = SecretKey::from_bytes(key);
        let messages: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &len)| bytes(len, i as u32 + 99)).collect();
        for imp in supported() {
            check_rounds(imp, &key, &messages, &rounds);
        }
    }
}
