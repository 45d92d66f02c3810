//! What faults to inject, how often, and the counts of those that fired.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which faults [`FaultProxy`](crate::FaultProxy) injects and which requests it refuses.
///
/// The probabilities are per request; at most one fault is chosen for a request, in the order
/// `reset`, `stall`, `unavailable`, `truncate` (if they add up to more than 1, the later ones
/// get what is left). The default plan forwards everything unchanged.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Probability of forwarding part of the exchange (part of the request body, or part of the
    /// response) and then resetting both connections (TCP RST via `SO_LINGER` 0).
    pub reset: f64,
    /// Probability of forwarding part of the exchange, forwarding nothing more for
    /// [`stall_for`](Self::stall_for), and then closing both connections.
    pub stall: f64,
    /// How long a stall lasts before the connections are closed.
    pub stall_for: Duration,
    /// Probability of not forwarding the request at all and answering
    /// `503 Slow Down` with an S3 `SlowDown` error body and `Connection: close`.
    pub unavailable: f64,
    /// Probability of forwarding the response head and only part of its body, then closing the
    /// client connection cleanly (FIN), so that the client gets fewer bytes than announced.
    /// Fires only for responses whose body has a length or is chunked.
    pub truncate: f64,
    /// Seed of the random choices; the same seed and the same sequence of requests give the same
    /// faults at the same points.
    pub seed: u64,
    /// Append-only policy: answer every `DELETE` (including `AbortMultipartUpload`) and every
    /// multi-object delete (`POST ?delete`) with `403 AccessDenied` instead of forwarding it.
    pub deny_delete: bool,
    /// Append-only policy: answer `403 AccessDenied` to an object write (`PUT` without a
    /// sub-resource, including `CopyObject`, or `CompleteMultipartUpload`, i.e.
    /// `POST ?uploadId=`) whose key already exists upstream. The proxy checks with a `HEAD` of
    /// its own, signed with the credentials given to
    /// [`FaultProxy::start_with_credentials`](crate::FaultProxy::start_with_credentials)
    /// (servers such as Garage answer an unsigned `HEAD` with 403; when the check cannot tell
    /// whether the key exists, the write is refused). `UploadPart` is never refused.
    /// Assumes path-style addressing (`/bucket/key`). Two concurrent writes of the same new
    /// key may both pass.
    pub deny_overwrite: bool,
    /// The first this-many requests after the plan is set pass untouched (e.g. to let a
    /// multipart upload start before cutting it off).
    pub spare_first: u64,
}

/// How many requests went through a [`FaultProxy`](crate::FaultProxy) and how many faults fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received from clients (including the ones that were refused or faulted).
    pub requests: u64,
    /// Exchanges cut by a connection reset.
    pub reset: u64,
    /// Exchanges stalled and then closed.
    pub stall: u64,
    /// Requests answered with `503 Slow Down`.
    pub unavailable: u64,
    /// Responses whose body was cut short.
    pub truncate: u64,
    /// Requests refused with `403 AccessDenied` by the delete or overwrite policy.
    pub denied: u64,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: {} resets, {} stalls, {} × 503, {} truncated bodies, {} denied",
            self.requests, self.reset, self.stall, self.unavailable, self.truncate, self.denied
        )
    }
}

/// The fault chosen for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Cut the exchange with a reset.
    Reset,
    /// Cut the exchange, wait, then close.
    Stall,
    /// Answer 503 without forwarding.
    Unavailable,
    /// Cut the response body, then close cleanly.
    Truncate,
}

/// The random decisions for one request, drawn together so that a request's fate depends only
/// on the seed and the request's position in the sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Draw {
    /// The fault to inject, if any.
    pub(crate) fault: Option<Fault>,
    /// Random bits for choosing where to cut the exchange.
    pub(crate) bits: [u64; 3],
}

impl FaultPlan {
    /// Picks at most one fault for the next request.
    pub(crate) fn draw(&self, rng: &mut SplitMix64) -> Draw {
        let x = rng.next_f64();
        let choices = [
            (self.reset, Fault::Reset),
            (self.stall, Fault::Stall),
            (self.unavailable, Fault::Unavailable),
            (self.truncate, Fault::Truncate),
        ];
        let mut threshold = 0.0;
        let mut fault = None;
        for (p, kind) in choices {
            if p > 0.0 {
                threshold += p;
                if x < threshold {
                    fault = Some(kind);
                    break;
                }
            }
        }
        Draw {
            fault,
            bits: [rng.next_u64(), rng.next_u64(), rng.next_u64()],
        }
    }
}

/// The SplitMix64 generator: tiny, fast, and good enough to spread faults around.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number uniformly distributed in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The live counters behind [`FaultCounts`], shared by all connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    reset: AtomicU64,
    stall: AtomicU64,
    unavailable: AtomicU64,
    truncate: AtomicU64,
    denied: AtomicU64,
}

/// One of the things [`Counters`] counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// A request arrived.
    Request,
    /// A fault fired.
    Fault(Fault),
    /// A policy refused a request.
    Denied,
}

impl Counters {
    /// Counts one `event`.
    pub(crate) fn add(&self, event: Event) {
        let counter = match event {
            Event::Request => &self.requests,
            Event::Fault(Fault::Reset) => &self.reset,
            Event::Fault(Fault::Stall) => &self.stall,
            Event::Fault(Fault::Unavailable) => &self.unavailable,
            Event::Fault(Fault::Truncate) => &self.truncate,
            Event::Denied => &self.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> FaultCounts {
        FaultCounts {
            requests: self.requests.load(Ordering::Relaxed),
            reset: self.reset.load(Ordering::Relaxed),
            stall: self.stall.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            truncate: self.truncate.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn unit_interval() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn draw_respects_probabilities() {
        let plan = FaultPlan {
            reset: 0.25,
            unavailable: 0.25,
            ..FaultPlan::default()
        };
        let mut rng = SplitMix64::new(42);
        let (mut reset, mut unavailable, mut none) = (0, 0, 0);
        for _ in 0..10_000 {
            match plan.draw(&mut rng).fault {
                Some(Fault::Reset) => reset += 1,
                Some(Fault::Unavailable) => unavailable += 1,
                None => none += 1,
                Some(other) => panic!("unexpected fault {other:?}"),
            }
        }
        assert!((2_200..2_800).contains(&reset), "{reset}");
        assert!((2_200..2_800).contains(&unavailable), "{unavailable}");
        assert!((4_600..5_400).contains(&none), "{none}");

        let certain = FaultPlan {
            truncate: 1.0,
            ..FaultPlan::default()
        };
        assert!((0..100).all(|_| certain.draw(&mut rng).fault == Some(Fault::Truncate)));
        let off = FaultPlan::default();
        assert!((0..100).all(|_| off.draw(&mut rng).fault.is_none()));
    }

    #[test]
    fn counts_display() {
        let counts = FaultCounts {
            requests: 1234,
            reset: 12,
            stall: 3,
            unavailable: 20,
            truncate: 7,
            denied: 0,
        };
        assert_eq!(
            counts.to_string(),
            "1234 requests: 12 resets, 3 stalls, 20 × 503, 7 truncated bodies, 0 denied"
        );
    }
}
