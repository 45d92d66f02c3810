//! Reading many blobs with few requests.
//!
//! On object storage every request costs a round trip, and even on a local disk each one costs
//! a hop to a blocking thread. Blobs of one pack lying close together are therefore read with
//! a single ranged read, the gaps between them included where a gap is small
//! ([`GatherLimits::max_gap`]); a few reads are in flight at once. What they bring is opened
//! into a [`BlobOpener`], which derives each pack's key once and checks the ids side by side.
//!
//! Used by the restore (blobs of a batch of files) and by the backup (the parent snapshot's
//! trees ahead of the walk, [`IndexedRepository::load_trees`], where a pack is not read whole:
//! longer than `held::MAX_HELD_PACK`, or dropped from memory once).

use futures::StreamExt;
use zaibei_format::Id;

use crate::index::BlobRef;
use crate::{BlobOpener, IdMap, IdSet, IndexedRepository, Result, names};

/// How far a gathered read may stretch.
#[derive(Debug, Clone, Copy)]
pub struct GatherLimits {
    /// Blobs of a pack closer than this are read together, gap included.
    pub max_gap: u64,
    /// Longest single read (a blob longer than this is read alone).
    pub max_read: u64,
    /// Reads in flight at once.
    pub in_flight: usize,
}

/// One ranged read: a pack, a byte range, and the blobs inside it.
#[derive(Debug)]
pub struct RangedRead<'a> {
    /// The pack read.
    pub pack: Id,
    /// First byte read.
    pub start: u64,
    /// End of the range (exclusive).
    pub end: u64,
    /// The blobs inside the range and where the index places them, by offset.
    pub blobs: Vec<(Id, BlobRef<'a>)>,
}

impl IndexedRepository {
    /// Plans the reads for the blobs `ids` of the opener's kind, each blob once. Blobs the
    /// index does not know are left out (reading them alone reports the error).
    pub fn plan_reads<'a, 'i>(
        &'a self,
        kind: zaibei_format::PackKind,
        ids: impl Iterator<Item = &'i Id>,
        limits: GatherLimits,
    ) -> Vec<RangedRead<'a>> {
        let mut by_pack: IdMap<Vec<(Id, BlobRef<'a>)>> = IdMap::default();
        let mut seen = IdSet::default();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            if let Some(loc) = self.index().lookup(kind, id) {
                by_pack.entry(loc.pack.id).or_default().push((*id, loc));
            }
        }
        let mut packs: Vec<_> = by_pack.into_iter().collect();
        // Packs in a fixed order, so the same blobs are always read the same way.
        packs.sort_unstable_by_key(|(pack, _)| *pack);
        let mut reads = Vec::new();
        for (pack, mut blobs) in packs {
            blobs.sort_unstable_by_key(|b| b.1.offset);
            let mut current: Option<RangedRead<'a>> = None;
            for (id, loc) in blobs {
                let (offset, end) = (loc.offset, loc.offset.saturating_add(loc.length));
                match &mut current {
                    Some(r)
                        if offset <= r.end.saturating_add(limits.max_gap)
                            && end.saturating_sub(r.start) <= limits.max_read =>
                    {
                        r.end = r.end.max(end);
                        r.blobs.push((id, loc));
                    }
                    _ => {
                        reads.extend(current.take());
                        current = Some(RangedRead {
                            pack,
                            start: offset,
                            end,
                            blobs: vec![(id, loc)],
                        });
                    }
                }
            }
            reads.extend(current);
        }
        reads
    }

    /// Reads the blobs `ids` (each once) with as few requests as `limits` allow, and adds them
    /// to `opener` (which authenticates, decrypts and decompresses each; its
    /// [`BlobOpener::finish`] checks the ids). Blobs the index does not know, reads that fail
    /// and blobs that do not open are left out: reading such a blob alone reports the error
    /// naming it. Fails only when the store cannot be reached (after every retry): retrying
    /// blob by blob would only multiply the wait.
    pub async fn gather<'i>(
        &self,
        opener: &mut BlobOpener<'_>,
        ids: impl Iterator<Item = &'i Id>,
        limits: GatherLimits,
    ) -> Result<()> {
        let reads = self.plan_reads(opener.kind(), ids, limits);
        self.gather_planned(opener, reads, limits.in_flight).await
    }

    /// Runs `reads`, `in_flight` at a time, and adds the blobs they bring to `opener`.
    pub async fn gather_planned(
        &self,
        opener: &mut BlobOpener<'_>,
        reads: Vec<RangedRead<'_>>,
        in_flight: usize,
    ) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        let mut results = futures::stream::iter(reads.into_iter().map(|r| async move {
            let stored = self
                .store()
                .get_range(&names::pack(&r.pack), r.start..r.end)
                .await;
            (r, stored)
        }))
        .buffer_unordered(in_flight.max(1));
        while let Some((read, stored)) = results.next().await {
            let stored = match stored {
                Ok(s) => s,
                Err(e) if e.is_unreachable() => return Err(e.into()),
                // Anything else is reported when the blob is read alone.
                Err(_) => continue,
            };
            for (id, loc) in read.blobs {
                // Sorted by offset, so no blob starts before its read.
                let from = loc.offset - read.start;
                let (Ok(from), Ok(len)) = (usize::try_from(from), usize::try_from(loc.length))
                else {
                    continue;
                };
                let Some(bytes) = stored.get(from..from.saturating_add(len)) else {
                    continue;
                };
                // A blob that does not open is read again alone, which reports it.
                let _ = opener.add(&id, &loc, bytes);
            }
        }
        Ok(())
    }
}
