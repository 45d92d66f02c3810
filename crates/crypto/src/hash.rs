use hmac::{Hmac, KeyInit, Mac};
use sm3::Digest as _;

use crate::{SecretKey, Suite};

/// Length of every digest: SM3 and BLAKE3 both give 32 bytes.
pub const DIGEST_LEN: usize = 32;

/// A 32-byte digest.
pub type Digest = [u8; DIGEST_LEN];

/// Incremental unkeyed hash (SM3 or BLAKE3).
#[derive(Clone)]
pub struct Hasher(Inner);

#[derive(Clone)]
enum Inner {
    Sm3(sm3::Sm3),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// A new hasher for the suite's unkeyed hash.
    pub fn new(suite: Suite) -> Self {
        match suite {
            Suite::Gm => Hasher(Inner::Sm3(sm3::Sm3::new())),
            Suite::Intl => Hasher(Inner::Blake3(Box::new(blake3::Hasher::new()))),
        }
    }

    /// Feeds more data.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Sm3(h) => h.update(data),
            Inner::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        match self.0 {
            Inner::Sm3(h) => h.finalize().into(),
            Inner::Blake3(h) => *h.finalize().as_bytes(),
        }
    }
}

/// The suite's unkeyed hash of several messages fed piece by piece, side by side: SM3 in the
/// multi-buffer engine's lanes ([`crate::sm3_multi::Sm3Streams`]), BLAKE3 one message after
/// the other (it is fast alone).
pub struct HashStreams(StreamsInner);

enum StreamsInner {
    Sm3(crate::sm3_multi::Sm3Streams),
    Blake3(Vec<blake3::Hasher>),
}

impl HashStreams {
    /// `count` empty messages.
    pub fn new(suite: Suite, count: usize) -> Self {
        match suite {
            Suite::Gm => HashStreams(StreamsInner::Sm3(crate::sm3_multi::Sm3Streams::new(count))),
            Suite::Intl => HashStreams(StreamsInner::Blake3(
                (0..count).map(|_| blake3::Hasher::new()).collect(),
            )),
        }
    }

    /// Appends `pieces[i]` to message `i` (pieces past the number of messages are ignored).
    pub fn update(&mut self, pieces: &[&[u8]]) {
        match &mut self.0 {
            StreamsInner::Sm3(s) => s.update(pieces),
            StreamsInner::Blake3(hashers) => {
                for (h, piece) in hashers.iter_mut().zip(pieces) {
                    h.update(piece);
                }
            }
        }
    }

    /// The digest of each message, in order.
    pub fn finalize(self) -> Vec<Digest> {
        match self.0 {
            StreamsInner::Sm3(s) => s.finalize(),
            StreamsInner::Blake3(hashers) => {
                hashers.iter().map(|h| *h.finalize().as_bytes()).collect()
            }
        }
    }
}

pub(crate) fn keyed_hash(suite: Suite, key: &SecretKey, data: &[u8]) -> Digest {
    match suite {
        Suite::Gm => {
            // HMAC accepts keys of any length: new_from_slice cannot fail here.
            let Ok(mut mac) = <Hmac<sm3::Sm3> as KeyInit>::new_from_slice(key.as_bytes()) else {
                unreachable!("HMAC-SM3 accepts a 32-byte key");
            };
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Suite::Intl => {
            // Same as `blake3::keyed_hash`, but the hasher (which holds the key) is wiped.
            let mut h = blake3::Hasher::new_keyed(key.as_bytes());
            h.update(data);
            let out = *h.finalize().as_bytes();
            zeroize::Zeroize::zeroize(&mut h);
            out
        }
    }
}

pub(crate) fn keyed_hash_many(suite: Suite, key: &SecretKey, messages: &[&[u8]]) -> Vec<Digest> {
    match suite {
        Suite::Gm => crate::sm3_multi::hmac_sm3_many(key, messages),
        Suite::Intl => messages
            .iter()
            .map(|m| keyed_hash(Suite::Intl, key, m))
            .collect(),
    }
}

/// How far [`Suite::keyed_hash_some`](crate::Suite::keyed_hash_some) got with a message it
/// left unfinished; the default is a message not started.
#[derive(Clone, Debug, Default)]
pub struct HashProgress(crate::sm3_multi::Resume);

pub(crate) fn keyed_hash_some(
    suite: Suite,
    key: &SecretKey,
    messages: &[&[u8]],
    progress: &mut [HashProgress],
    finish_all: bool,
) -> Vec<Option<Digest>> {
    match suite {
        Suite::Gm => {
            let mut resume: Vec<crate::sm3_multi::Resume> = progress
                .iter_mut()
                .map(|p| std::mem::take(&mut p.0))
                .collect();
            let out = crate::sm3_multi::hmac_sm3_some(key, messages, &mut resume, finish_all);
            for (p, r) in progress.iter_mut().zip(resume) {
                p.0 = r;
            }
            out
        }
        // BLAKE3 hashes each message fast on its own: every one is finished.
        Suite::Intl => {
            for p in progress.iter_mut() {
                *p = HashProgress::default();
            }
            messages
                .iter()
                .map(|m| Some(keyed_hash(Suite::Intl, key, m)))
                .collect()
        }
    }
}
