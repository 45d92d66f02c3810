//! Multi-buffer SM3 and HMAC-SM3: many messages hashed at once.
//!
//! [`sm3_many`] and [`hmac_sm3_many`] give, for each message, exactly the bytes of
//! `sm3::Sm3::digest` and `Hmac<sm3::Sm3>`; they are faster when there are many messages,
//! such as the chunks of a backup whose blob ids are all computed under one key.
//!
//! # Design
//!
//! SM3 is a sequential Merkle–Damgård hash: one message cannot be vectorised, but eight
//! can. On x86-64 CPUs with AVX2 (or AVX-512VL, which adds one-instruction rotations and
//! three-input logic to the same 256-bit code) the compression function runs on eight 64-byte blocks of
//! eight different messages at once, one 32-bit lane of each 256-bit vector per message
//! (see `x86.rs`: word-sliced state, the blocks gathered by an 8×8 transpose, the message
//! expansion and the rounds on vectors; no data-dependent branch or table lookup).
//!
//! A scheduler keeps the eight lanes busy with messages of different lengths. Messages are
//! taken longest first, so that lanes run out of work at about the same time. A lane
//! compresses its message's full blocks straight from the caller's slice; then its last
//! partial block, the `0x80` byte, the zeros and the 64-bit bit length are written to a
//! small per-lane buffer of one or two blocks, which the lane compresses next. When a lane
//! finishes, its digest is read out of the state and the lane starts the next message from
//! the initial state. Idle lanes compress a block of zeros whose result is ignored.
//!
//! Once fewer than `MIN_MULTI` (3) messages are left unfinished (in lanes or waiting), the
//! rest would leave most lanes idle and the scalar code is faster: each remaining lane's
//! state is handed to the RustCrypto `sm3` compression function ([`sm3::Sm3Core`]), which
//! also hashes every message on CPUs without AVX2 and on other architectures.
//!
//! Every hash starts from an initial state and a count of bytes already hashed, so HMAC
//! (RFC 2104) costs two multi-buffer passes: the inner hashes start from the state after the
//! block `K ^ ipad` (64 bytes hashed), the outer ones from the state after `K ^ opad`, each
//! over one 32-byte inner digest (one block). The two key-derived states, the inner digests,
//! the lane states and the per-lane padding buffers are wiped with `zeroize` when done
//! (copies the compiler leaves in registers or on the stack of the AVX2 function are not,
//! as in the RustCrypto crates).
//!
//! Which lane hashes what, and for how many steps, depends only on the message lengths;
//! nothing branches on or indexes by the contents or the key.
//!
//! Speed (AMD EPYC, Zen 4, one core), 64 messages of 16 KiB: 1.70 GiB/s with AVX-512VL,
//! 1.37 GiB/s with AVX2, against ~375 MiB/s for single-stream SM3; figures in `docs/BENCHMARKS.md`. Callers must hand
//! over many messages at once to gain anything (`ContentKeys::blob_ids` in
//! `zaibei-format`, `Suite::keyed_hash_many` here). Long messages that arrive piece by piece
//! (packs read back from their files to be named) go through [`Sm3Streams`], which runs the
//! same scheduler over the whole blocks of each piece, without padding, and keeps each
//! message's state between pieces.

use sm3::Sm3Core;
use sm3::digest::array::Array;
use sm3::digest::block_api::UpdateCore;
use sm3::digest::common::hazmat::{SerializableState, SerializedState};
use zeroize::{Zeroize, Zeroizing};

use crate::{DIGEST_LEN, Digest, SecretKey};

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // calls into `#[target_feature]` code after runtime detection; see x86.rs
mod x86;

/// Bytes in an SM3 block.
const BLOCK: usize = 64;
/// Messages hashed side by side.
#[cfg(any(target_arch = "x86_64", test))]
const LANES: usize = 8;
/// With fewer unfinished messages than this, the portable code finishes them one by one.
///
/// Each busy lane of the AVX2 engine hashes 1/8 of its ~1.4 GiB/s, ~180 MiB/s; the portable
/// code ~380 MiB/s. Measured on an AMD EPYC (Zen 4), 64 KiB messages: two busy lanes
/// 357 MiB/s against 380 for the portable code, three 539 MiB/s against 381.
#[cfg(any(target_arch = "x86_64", test))]
const MIN_MULTI: usize = 3;
#[cfg(test)]
thread_local! {
    /// Blocks compressed on this thread by the AVX2 engine (eight per call, idle lanes
    /// included) and by the portable code: the tests check which path ran.
    static COUNTS: core::cell::Cell<(usize, usize)> = const { core::cell::Cell::new((0, 0)) };
}

/// The SM3 initial value (GB/T 32905 §4.1).
const IV: [u32; 8] = [
    0x7380_166f,
    0x4914_b2b9,
    0x1724_42d7,
    0xda8a_0600,
    0xa96f_30bc,
    0x1631_38aa,
    0xe38d_ee4d,
    0xb0fb_0e4e,
];

/// Which implementation the multi-buffer functions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm3Impl {
    /// AVX-512VL: the AVX2 engine with one-instruction rotations and three-input logic.
    Avx512,
    /// AVX2: eight messages per compression, in 32-bit lanes of 256-bit vectors.
    Avx2,
    /// The RustCrypto `sm3` compression function, one message at a time.
    Portable,
}

impl Sm3Impl {
    /// The fastest implementation this CPU supports (detection is cached by `std`).
    pub fn detect() -> Self {
        [Sm3Impl::Avx512, Sm3Impl::Avx2]
            .into_iter()
            .find(|imp| imp.is_supported())
            .unwrap_or(Sm3Impl::Portable)
    }

    /// Whether this CPU supports `self`.
    pub fn is_supported(self) -> bool {
        Engine::new(self).is_some()
    }
}

/// An implementation this CPU supports.
#[derive(Clone, Copy)]
enum Engine {
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    Portable,
}

impl Engine {
    fn new(imp: Sm3Impl) -> Option<Self> {
        match imp {
            Sm3Impl::Portable => Some(Engine::Portable),
            #[cfg(target_arch = "x86_64")]
            Sm3Impl::Avx512 => x86::Avx512::detect().map(Engine::Avx512),
            #[cfg(target_arch = "x86_64")]
            Sm3Impl::Avx2 => x86::Avx2::detect().map(Engine::Avx2),
            #[cfg(not(target_arch = "x86_64"))]
            Sm3Impl::Avx512 | Sm3Impl::Avx2 => None,
        }
    }

    fn detect() -> Self {
        Engine::new(Sm3Impl::detect()).unwrap_or(Engine::Portable)
    }
}

/// The SM3 digest of each message, in order; equal to `sm3::Sm3::digest` of each.
pub fn sm3_many(messages: &[&[u8]]) -> Vec<Digest> {
    hash_many(Engine::detect(), &IV, 0, messages)
}

/// [`sm3_many`] with the given implementation, or `None` if this CPU lacks it.
pub fn sm3_many_with(imp: Sm3Impl, messages: &[&[u8]]) -> Option<Vec<Digest>> {
    Some(hash_many(Engine::new(imp)?, &IV, 0, messages))
}

/// HMAC-SM3 under `key` of each message, in order; equal to `Hmac<sm3::Sm3>` of each.
pub fn hmac_sm3_many(key: &SecretKey, messages: &[&[u8]]) -> Vec<Digest> {
    hmac_many(Engine::detect(), key.as_bytes(), messages)
}

/// [`hmac_sm3_many`] with the given implementation, or `None` if this CPU lacks it.
pub fn hmac_sm3_many_with(
    imp: Sm3Impl,
    key: &SecretKey,
    messages: &[&[u8]],
) -> Option<Vec<Digest>> {
    Some(hmac_many(Engine::new(imp)?, key.as_bytes(), messages))
}

/// SM3 of a few long messages that arrive piece by piece, such as packs read back from their
/// files: each [`update`](Self::update) hashes the next piece of every message side by side,
/// so that `count` messages cost about what one costs with the portable code, as with
/// [`sm3_many`]. Pieces of whole blocks (multiples of 64 bytes) are hashed where they lie;
/// the bytes after the last whole block wait, copied, for the next piece.
pub struct Sm3Streams {
    engine: Engine,
    states: Vec<Zeroizing<[u32; 8]>>,
    /// Bytes compressed into each state so far (a multiple of 64).
    hashed: Vec<u64>,
    /// Each message's bytes after its last compressed block (fewer than 64).
    carry: Vec<Zeroizing<Vec<u8>>>,
}

impl Sm3Streams {
    /// `count` empty messages, hashed with the fastest implementation this CPU supports.
    pub fn new(count: usize) -> Self {
        Self::with_engine(Engine::detect(), count)
    }

    /// [`Sm3Streams::new`] with the given implementation, or `None` if this CPU lacks it.
    pub fn new_with(imp: Sm3Impl, count: usize) -> Option<Self> {
        Some(Self::with_engine(Engine::new(imp)?, count))
    }

    fn with_engine(engine: Engine, count: usize) -> Self {
        Sm3Streams {
            engine,
            states: (0..count).map(|_| Zeroizing::new(IV)).collect(),
            hashed: vec![0; count],
            // Room for a whole block from the start: a carry never grows, so no copy of it is
            // freed unwiped.
            carry: (0..count)
                .map(|_| Zeroizing::new(Vec::with_capacity(BLOCK)))
                .collect(),
        }
    }

    /// Appends `pieces[i]` to message `i`. Pieces past the number of messages are ignored, and
    /// messages without a piece get nothing.
    pub fn update(&mut self, pieces: &[&[u8]]) {
        let mut jobs = Vec::with_capacity(self.states.len());
        let mut rests = Vec::with_capacity(self.states.len());
        for (i, piece) in pieces.iter().enumerate().take(self.states.len()) {
            let mut piece: &[u8] = piece;
            let carry = &mut self.carry[i];
            if !carry.is_empty() {
                let take = (BLOCK - carry.len()).min(piece.len());
                carry.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if let ([block], []) = carry.as_chunks::<BLOCK>() {
                    portable_compress(&mut self.states[i], std::slice::from_ref(block));
                    self.hashed[i] += BLOCK as u64;
                    carry.clear();
                }
            }
            let (full, rest) = piece.as_chunks::<BLOCK>();
            jobs.push((self.states[i].clone(), Lane::unpadded(full)));
            rests.push(rest);
        }
        let (states, hashed) = (&mut self.states, &mut self.hashed);
        let lens: Vec<usize> = jobs.iter().map(|(_, lane)| lane.blocks_left()).collect();
        run_lanes(self.engine, jobs, |i, state| {
            states[i] = state;
            hashed[i] += (lens[i] * BLOCK) as u64;
        });
        for (carry, rest) in self.carry.iter_mut().zip(rests) {
            carry.extend_from_slice(rest);
        }
    }

    /// The digest of each message, in order; equal to `sm3::Sm3::digest` of its bytes.
    pub fn finalize(self) -> Vec<Digest> {
        let mut out = vec![[0u8; DIGEST_LEN]; self.states.len()];
        let jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'_>)> = self
            .states
            .iter()
            .zip(&self.carry)
            .zip(&self.hashed)
            .map(|((state, carry), &hashed)| (state.clone(), Lane::new(carry, hashed)))
            .collect();
        run_lanes(self.engine, jobs, |i, state| out[i] = digest_of(&state));
        out
    }
}

/// The states after HMAC's first block, `K ^ ipad` and `K ^ opad`, for a key of any length
/// (RFC 2104: keys over 64 bytes are hashed first).
fn hmac_states(key: &[u8]) -> (Zeroizing<[u32; 8]>, Zeroizing<[u32; 8]>) {
    let mut k0 = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        let digest = Zeroizing::new(digest_of(&Lane::new(key, 0).compress_rest(&IV)));
        k0[..DIGEST_LEN].copy_from_slice(&*digest);
    } else {
        k0[..key.len()].copy_from_slice(key);
    }
    let mut pads = Zeroizing::new([[0x36u8; BLOCK], [0x5cu8; BLOCK]]);
    for pad in pads.iter_mut() {
        for (p, k) in pad.iter_mut().zip(k0.iter()) {
            *p ^= k;
        }
    }
    let mut inner_state = Zeroizing::new(IV);
    let mut outer_state = Zeroizing::new(IV);
    portable_compress(&mut inner_state, &pads[..1]);
    portable_compress(&mut outer_state, &pads[1..]);
    (inner_state, outer_state)
}

/// HMAC-SM3 of each message under `key`.
fn hmac_many(engine: Engine, key: &[u8], messages: &[&[u8]]) -> Vec<Digest> {
    let (inner_state, outer_state) = hmac_states(key);
    let inner = Zeroizing::new(hash_many(engine, &inner_state, BLOCK as u64, messages));
    let inner_refs: Vec<&[u8]> = inner.iter().map(|d| d.as_slice()).collect();
    hash_many(engine, &outer_state, BLOCK as u64, &inner_refs)
}

/// How far the inner hash of one message's HMAC-SM3 has got in [`hmac_sm3_some`]: a message
/// not started, or its state after its first bytes (whole blocks). Wiped on drop.
#[derive(Clone, Default)]
pub struct Resume {
    /// The inner hash's state, `None` before the message is started.
    state: Option<Zeroizing<[u32; 8]>>,
    /// Bytes of the message compressed into `state` (a multiple of 64).
    hashed: u64,
}

impl core::fmt::Debug for Resume {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Resume")
            .field("hashed", &self.hashed)
            .finish_non_exhaustive()
    }
}

impl Resume {
    /// Bytes of the message hashed so far.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }
}

/// HMAC-SM3 under `key` of each message, resumed where `resume[i]` says, for messages that
/// arrive in rounds (the blobs of one batch after another). With `finish_all`, every digest is
/// returned. Otherwise the hashing stops once too few messages are left to hash side by side
/// (the rest would run one stream at a time): those messages get `None` and their progress in
/// `resume`, to be resumed by a later call with the same bytes and more messages beside them.
/// Every digest equals `Hmac<sm3::Sm3>` of its message. Without a multi-buffer engine, every
/// message is finished.
///
/// `resume` must have one entry per message, and a message must be passed again unchanged
/// with its entry; a finished message's entry is reset.
pub fn hmac_sm3_some(
    key: &SecretKey,
    messages: &[&[u8]],
    resume: &mut [Resume],
    finish_all: bool,
) -> Vec<Option<Digest>> {
    hmac_some(
        Engine::detect(),
        key.as_bytes(),
        messages,
        resume,
        finish_all,
    )
}

/// [`hmac_sm3_some`] with the given implementation, or `None` if this CPU lacks it.
pub fn hmac_sm3_some_with(
    imp: Sm3Impl,
    key: &SecretKey,
    messages: &[&[u8]],
    resume: &mut [Resume],
    finish_all: bool,
) -> Option<Vec<Option<Digest>>> {
    Some(hmac_some(
        Engine::new(imp)?,
        key.as_bytes(),
        messages,
        resume,
        finish_all,
    ))
}

fn hmac_some(
    engine: Engine,
    key: &[u8],
    messages: &[&[u8]],
    resume: &mut [Resume],
    finish_all: bool,
) -> Vec<Option<Digest>> {
    assert_eq!(
        messages.len(),
        resume.len(),
        "hmac_sm3_some: one resume entry per message"
    );
    let (inner_state, outer_state) = hmac_states(key);
    let jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'_>)> = messages
        .iter()
        .zip(resume.iter())
        .map(|(m, r)| {
            // An entry that does not fit its message (a caller's mistake) gives a wrong
            // digest, never a panic: the bytes it says were hashed are skipped.
            debug_assert!(
                r.hashed % BLOCK as u64 == 0 && r.hashed <= m.len() as u64,
                "a resume entry that does not fit its message"
            );
            let from = usize::try_from(r.hashed).unwrap_or(usize::MAX).min(m.len());
            let start = r.state.clone().unwrap_or_else(|| inner_state.clone());
            (start, Lane::new(&m[from..], BLOCK as u64 + from as u64))
        })
        .collect();
    let mut inner: Vec<Option<Zeroizing<Digest>>> = vec![None; messages.len()];
    let mut left: Vec<(usize, Zeroizing<[u32; 8]>, usize)> = Vec::new();
    let stop =
        (!finish_all).then_some(|i: usize, state, blocks: usize| left.push((i, state, blocks)));
    run_lanes_until(
        engine,
        jobs,
        |i, state| inner[i] = Some(Zeroizing::new(digest_of(&state))),
        stop,
    );
    for (i, state, blocks) in left {
        resume[i].state = Some(state);
        resume[i].hashed += (blocks * BLOCK) as u64;
    }
    let done: Vec<usize> = (0..messages.len())
        .filter(|&i| inner[i].is_some())
        .collect();
    let inner_refs: Vec<&[u8]> = done
        .iter()
        .filter_map(|&i| inner[i].as_ref().map(|d| d.as_slice()))
        .collect();
    let outer = hash_many(engine, &outer_state, BLOCK as u64, &inner_refs);
    let mut out = vec![None; messages.len()];
    for (i, digest) in done.into_iter().zip(outer) {
        resume[i] = Resume::default();
        out[i] = Some(digest);
    }
    out
}

/// The SM3 digest of each message hashed from `init`, after `prefix_len` bytes (a multiple
/// of 64) that `init` already covers.
fn hash_many(engine: Engine, init: &[u32; 8], prefix_len: u64, messages: &[&[u8]]) -> Vec<Digest> {
    let mut out = vec![[0u8; DIGEST_LEN]; messages.len()];
    let jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'_>)> = messages
        .iter()
        .map(|m| (Zeroizing::new(*init), Lane::new(m, prefix_len)))
        .collect();
    run_lanes(engine, jobs, |i, state| out[i] = digest_of(&state));
    out
}

/// Compresses each job's blocks from its start state, on the engine's lanes (see the module
/// documentation), and hands each final state to `done` with the job's position.
fn run_lanes<'a>(
    engine: Engine,
    jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'a>)>,
    done: impl FnMut(usize, Zeroizing<[u32; 8]>),
) {
    run_lanes_until(
        engine,
        jobs,
        done,
        None::<fn(usize, Zeroizing<[u32; 8]>, usize)>,
    );
}

/// [`run_lanes`], but with `stop`, the jobs the lanes cannot finish side by side are not
/// finished one at a time: each with full blocks left goes to `stop` instead, with its
/// position, its state and how many of its full blocks that state covers (a job already in
/// its padding is finished: one or two blocks).
fn run_lanes_until<'a>(
    engine: Engine,
    jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'a>)>,
    done: impl FnMut(usize, Zeroizing<[u32; 8]>),
    stop: Option<impl FnMut(usize, Zeroizing<[u32; 8]>, usize)>,
) {
    match engine {
        #[cfg(target_arch = "x86_64")]
        Engine::Avx512(simd) => run_lanes_simd(
            |state, blocks| simd.compress8(state, blocks),
            jobs,
            done,
            stop,
        ),
        #[cfg(target_arch = "x86_64")]
        Engine::Avx2(simd) => run_lanes_simd(
            |state, blocks| simd.compress8(state, blocks),
            jobs,
            done,
            stop,
        ),
        // One message at a time either way: stopping would gain nothing.
        Engine::Portable => {
            let _ = stop;
            let mut done = done;
            for (i, (init, lane)) in jobs.iter().enumerate() {
                done(i, lane.compress_rest(init));
            }
        }
    }
}

/// The multi-buffer scheduler: see the module documentation.
#[cfg(target_arch = "x86_64")]
fn run_lanes_simd<'a>(
    compress8: impl Fn(&mut x86::State8, &[&[u8; BLOCK]; LANES]),
    jobs: Vec<(Zeroizing<[u32; 8]>, Lane<'a>)>,
    mut done: impl FnMut(usize, Zeroizing<[u32; 8]>),
    mut stop: Option<impl FnMut(usize, Zeroizing<[u32; 8]>, usize)>,
) {
    /// What an idle lane compresses.
    const ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

    let mut order: Vec<usize> = Vec::with_capacity(jobs.len());
    for (i, (init, lane)) in jobs.iter().enumerate() {
        // A job without blocks (an empty piece of a stream) is done as it starts.
        if lane.blocks_left() == 0 {
            done(i, init.clone());
        } else {
            order.push(i);
        }
    }
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].1.blocks_left()));
    let mut queue = order.into_iter();
    let mut state: x86::State8 = [[0; LANES]; 8];
    // Each busy lane: the index of its job, and where it is in the job's blocks.
    let mut lanes: [Option<(usize, Lane<'_>)>; LANES] = Default::default();
    let start = |state: &mut x86::State8, l: usize, i: usize| {
        set_lane(state, l, &jobs[i].0);
        Some((i, jobs[i].1.clone()))
    };
    for (l, slot) in lanes.iter_mut().enumerate() {
        if let Some(i) = queue.next() {
            *slot = start(&mut state, l, i);
        }
    }

    loop {
        let busy = lanes.iter().flatten().count();
        if busy == 0 || busy + queue.len() < MIN_MULTI {
            break;
        }
        let blocks: [&[u8; BLOCK]; LANES] =
            core::array::from_fn(|l| lanes[l].as_ref().map_or(&ZERO_BLOCK, |(_, x)| x.block()));
        compress8(&mut state, &blocks);
        #[cfg(test)]
        COUNTS.with(|c| c.set((c.get().0 + LANES, c.get().1)));
        for (l, slot) in lanes.iter_mut().enumerate() {
            let Some((job, lane)) = slot else { continue };
            if !lane.advance() {
                continue;
            }
            done(*job, lane_state(&state, l));
            *slot = None;
            if let Some(i) = queue.next() {
                *slot = start(&mut state, l, i);
            }
        }
    }

    // Too few jobs left to fill the lanes: finish them one at a time, or leave them to `stop`.
    for (l, lane) in lanes.iter().enumerate() {
        if let Some((job, lane)) = lane {
            let now = lane_state(&state, l);
            match &mut stop {
                Some(stop) if !lane.full.is_empty() => {
                    stop(*job, now, jobs[*job].1.full.len() - lane.full.len())
                }
                _ => done(*job, lane.compress_rest(&now)),
            }
        }
    }
    for i in queue {
        match &mut stop {
            Some(stop) if !jobs[i].1.full.is_empty() => stop(i, jobs[i].0.clone(), 0),
            _ => done(i, jobs[i].1.compress_rest(&jobs[i].0)),
        }
    }
    state.zeroize();
}

/// Lane `l` of word-sliced `state`.
#[cfg(target_arch = "x86_64")]
fn lane_state(state: &x86::State8, l: usize) -> Zeroizing<[u32; 8]> {
    Zeroizing::new(core::array::from_fn(|i| state[i][l]))
}

/// Sets lane `l` of word-sliced `state` to `init`.
#[cfg(target_arch = "x86_64")]
fn set_lane(state: &mut x86::State8, l: usize, init: &[u32; 8]) {
    for (row, word) in state.iter_mut().zip(init) {
        row[l] = *word;
    }
}

/// One message being hashed: the full blocks not yet compressed, then the padded tail.
///
/// The tail is wiped on drop: in HMAC's outer hash it holds an inner digest.
#[derive(Clone)]
struct Lane<'a> {
    /// The message's full blocks not yet compressed, straight from the caller's slice.
    full: &'a [[u8; BLOCK]],
    /// The last partial block (possibly empty), `0x80`, zeros and the big-endian bit length.
    tail: [[u8; BLOCK]; 2],
    /// Blocks in `tail`: 1, or 2 if the length does not fit after the partial block.
    tail_len: usize,
    /// Blocks of `tail` compressed so far.
    tail_done: usize,
}

impl<'a> Lane<'a> {
    /// Lane for message `data`, hashed after `prefix_len` bytes.
    fn new(data: &'a [u8], prefix_len: u64) -> Self {
        let (full, rest) = data.as_chunks::<BLOCK>();
        let mut tail = [[0u8; BLOCK]; 2];
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        flat[rest.len()] = 0x80;
        // The 0x80 byte and the 8-byte length must fit: 55 bytes or fewer left take one block.
        let tail_len = if rest.len() < BLOCK - 8 { 1 } else { 2 };
        let bits = prefix_len.wrapping_add(data.len() as u64).wrapping_mul(8);
        flat[tail_len * BLOCK - 8..tail_len * BLOCK].copy_from_slice(&bits.to_be_bytes());
        Lane {
            full,
            tail,
            tail_len,
            tail_done: 0,
        }
    }

    /// Lane for whole blocks without padding: a piece of a longer message.
    fn unpadded(blocks: &'a [[u8; BLOCK]]) -> Self {
        Lane {
            full: blocks,
            tail: [[0u8; BLOCK]; 2],
            tail_len: 0,
            tail_done: 0,
        }
    }

    /// Blocks not compressed yet.
    fn blocks_left(&self) -> usize {
        self.full.len() + self.tail_len - self.tail_done
    }

    /// The next block to compress.
    #[cfg(target_arch = "x86_64")]
    fn block(&self) -> &[u8; BLOCK] {
        match self.full.first() {
            Some(b) => b,
            None => &self.tail[self.tail_done],
        }
    }

    /// Marks the block of [`Lane::block`] compressed; `true` if it was the last one.
    #[cfg(target_arch = "x86_64")]
    fn advance(&mut self) -> bool {
        match self.full.split_first() {
            Some((_, rest)) => self.full = rest,
            None => self.tail_done += 1,
        }
        self.full.is_empty() && self.tail_done == self.tail_len
    }

    /// The tail blocks not compressed yet.
    fn tail_blocks(&self) -> &[[u8; BLOCK]] {
        &self.tail[self.tail_done..self.tail_len]
    }

    /// Compresses the remaining blocks into `state` with the portable code; the new state.
    fn compress_rest(&self, state: &[u32; 8]) -> Zeroizing<[u32; 8]> {
        let mut h = Zeroizing::new(*state);
        portable_compress(&mut h, self.full);
        portable_compress(&mut h, self.tail_blocks());
        h
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        self.tail.zeroize();
    }
}

/// The RustCrypto `sm3` compression function on `blocks`, starting from `h`.
fn portable_compress(h: &mut [u32; 8], blocks: &[[u8; BLOCK]]) {
    if blocks.is_empty() {
        return;
    }
    #[cfg(test)]
    COUNTS.with(|c| c.set((c.get().0, c.get().1 + blocks.len())));
    // `Sm3Core`'s serialized state is its eight words (little-endian), then the block count.
    let mut ser = SerializedState::<Sm3Core>::default();
    for (b, word) in ser.chunks_exact_mut(4).zip(h.iter()) {
        b.copy_from_slice(&word.to_le_bytes());
    }
    let Ok(mut core) = Sm3Core::deserialize(&ser) else {
        unreachable!("every 40-byte SM3 state deserializes");
    };
    core.update_blocks(Array::cast_slice_from_core(blocks));
    let mut after = core.serialize();
    for (word, b) in h.iter_mut().zip(after.as_chunks::<4>().0) {
        *word = u32::from_le_bytes(*b);
    }
    ser.as_mut_slice().zeroize();
    after.as_mut_slice().zeroize();
}

/// The digest bytes of a final state.
fn digest_of(h: &[u32; 8]) -> Digest {
    let mut out = [0u8; DIGEST_LEN];
    for (o, word) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests;
