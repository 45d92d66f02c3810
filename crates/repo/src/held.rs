//! Whole packs of trees held in memory while a walk reads their trees.
//!
//! A repository without a metadata cache (a local directory, or object storage with the cache
//! turned off) would read each tree with a ranged read of its own: on a local disk every read
//! is a hop to a blocking thread and back, and a walk of a parent snapshot needs thousands of
//! them. Trees of one snapshot lie together in few packs, and the walk needs nearly all of
//! them, so [`crate::IndexedRepository::load_trees`] reads a pack of trees whole, once, and
//! holds it here; later trees of that pack are opened from memory. Every tree is still
//! authenticated and checked against its id when it is opened, as from any other read.
//!
//! Memory is bounded: at most [`HELD_BYTES`] are held, the pack used least recently dropped
//! first, and a pack longer than [`MAX_HELD_PACK`] is never held (its trees are read by range).
//! A pack is read whole at most once: when a walk's trees are spread over more packs than fit
//! (packs of trees that `prune` rewrote, say), a dropped pack's trees are read by range
//! afterwards, so the bytes read whole never exceed the packs' own size.

use std::collections::VecDeque;

use bytes::Bytes;
use zaibei_format::Id;

use crate::IdSet;

/// Most bytes of packs held at once.
pub const HELD_BYTES: usize = 24 << 20;

/// Longest pack that is read whole and held (the default pack size is 16 MiB).
pub const MAX_HELD_PACK: u64 = 20 << 20;

/// Packs held, the one used most recently last.
#[derive(Debug, Default)]
pub(crate) struct HeldPacks {
    packs: VecDeque<(Id, Bytes)>,
    bytes: usize,
    /// Packs held once and dropped since, or refused: never read whole again.
    dropped: IdSet,
}

impl HeldPacks {
    /// The bytes of `pack`, when held (it becomes the most recently used).
    pub(crate) fn get(&mut self, pack: &Id) -> Option<Bytes> {
        let at = self.packs.iter().position(|(id, _)| id == pack)?;
        let entry = self.packs.remove(at)?;
        let bytes = entry.1.clone();
        self.packs.push_back(entry);
        Some(bytes)
    }

    /// Whether `pack` may be read whole and held: not if it was held before and dropped, or
    /// could not be read whole.
    pub(crate) fn may_hold(&self, pack: &Id) -> bool {
        !self.dropped.contains(pack)
    }

    /// Never reads `pack` whole again (it could not be read whole, or not at its length).
    pub(crate) fn refuse(&mut self, pack: Id) {
        self.dropped.insert(pack);
    }

    /// Holds `bytes` as the contents of `pack`, dropping the packs used least recently while
    /// the total would pass [`HELD_BYTES`]. A pack longer than that is not held.
    pub(crate) fn insert(&mut self, pack: Id, bytes: Bytes) {
        if bytes.len() > HELD_BYTES {
            return;
        }
        if let Some(at) = self.packs.iter().position(|(id, _)| *id == pack)
            && let Some((_, old)) = self.packs.remove(at)
        {
            self.bytes -= old.len();
        }
        while self.bytes + bytes.len() > HELD_BYTES {
            match self.packs.pop_front() {
                Some((id, old)) => {
                    self.bytes -= old.len();
                    self.dropped.insert(id);
                }
                None => break,
            }
        }
        self.bytes += bytes.len();
        self.packs.push_back((pack, bytes));
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8, len: usize) -> (Id, Bytes) {
        (Id([n; 32]), Bytes::from(vec![n; len]))
    }

    #[test]
    fn the_pack_used_least_recently_goes_first_and_the_total_stays_bounded() {
        let mut held = HeldPacks::default();
        let third = HELD_BYTES / 3;
        for n in 1..=3 {
            let (id, bytes) = pack(n, third);
            held.insert(id, bytes);
        }
        assert_eq!(held.bytes(), 3 * third);
        // Using pack 1 makes pack 2 the least recently used.
        assert!(held.get(&Id([1; 32])).is_some());
        let (id, bytes) = pack(4, third);
        held.insert(id, bytes);
        assert!(held.get(&Id([2; 32])).is_none());
        // Dropped once, it is not read whole again; the others may be.
        assert!(!held.may_hold(&Id([2; 32])));
        assert!(held.may_hold(&Id([1; 32])) && held.may_hold(&Id([5; 32])));
        for n in [1, 3, 4] {
            assert_eq!(held.get(&Id([n; 32])).map(|b| b[0]), Some(n));
        }
        assert!(held.bytes() <= HELD_BYTES);
    }

    #[test]
    fn a_pack_longer_than_the_bound_is_not_held_and_a_pack_held_twice_counts_once() {
        let mut held = HeldPacks::default();
        let (id, bytes) = pack(1, HELD_BYTES + 1);
        held.insert(id, bytes);
        assert!(held.get(&id).is_none());
        assert_eq!(held.bytes(), 0);
        let (id, bytes) = pack(2, 1000);
        held.insert(id, bytes.clone());
        held.insert(id, bytes);
        assert_eq!(held.bytes(), 1000);
    }
}
