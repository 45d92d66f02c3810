//! Fetching the blobs of several small files together.
//!
//! On object storage every request costs a round trip (tens of milliseconds on a real
//! network), so one request per blob makes restoring many small files slow. A worker
//! therefore takes a batch of files, gathers the blobs they need, and reads each run of blobs
//! lying close together in one pack with a single ranged read. Only the blobs needed are
//! fetched, plus the gaps between them where a gap is small ([`READS`]); a batch holds at
//! most [`batch_bytes`] of file data (the writers' batches share 32 MiB, 4 to 8 MiB each), so
//! memory stays bounded. A large file's blobs are fetched the same way, a window at a time
//! ([`fetch_blobs`]).
//!
//! A window of a large file holds only a few of its blobs (1 MiB on average) within the
//! batch size, and the ids of a few blobs are hashed mostly one stream after another: the
//! lanes of multi-buffer SM3 fill only with more messages than that. A writer therefore widens
//! its window by up to [`EXTRA_WINDOW_BYTES`] taken from a [`WindowBudget`] the writers share,
//! when the others are not holding it, so memory stays bounded by the budget.

use std::collections::HashMap;

use zaibei_format::{Id, PackKind};
use zaibei_repo::{BlobOpener, GatherLimits, IndexedRepository, RangedRead};

use super::files::FileJob;
pub(crate) use crate::budget::{Reserved, WindowBudget};

/// Most file data gathered in one batch by each of many writers: the batches of eight writers
/// (object storage's default) hold 32 MiB together.
pub(crate) const BATCH_BYTES: u64 = 4 << 20;
/// Most file data the writers' batches hold together; fewer writers each take a larger batch
/// (up to [`MAX_BATCH_BYTES`]), so that more ids are hashed side by side in the same memory.
const ALL_BATCHES_BYTES: u64 = 32 << 20;
/// Most file data gathered in one batch, however few the writers.
const MAX_BATCH_BYTES: u64 = 8 << 20;

/// The most file data each of `writers` writers gathers in one batch: [`ALL_BATCHES_BYTES`]
/// shared out, within [`BATCH_BYTES`] and [`MAX_BATCH_BYTES`].
pub(crate) fn batch_bytes(writers: usize) -> u64 {
    (ALL_BATCHES_BYTES / writers.max(1) as u64).clamp(BATCH_BYTES, MAX_BATCH_BYTES)
}
/// Most files in one batch.
pub(crate) const BATCH_FILES: usize = 64;
/// Most plaintext a writer adds to a window of a large file's blobs from the shared
/// [`WindowBudget`], so that more ids are hashed side by side.
pub(crate) const EXTRA_WINDOW_BYTES: u64 = 12 << 20;
/// How a batch reads blobs lying close together in a pack: gaps up to 64 KiB read through,
/// reads of at most 16 MiB, four in flight.
const READS: GatherLimits = GatherLimits {
    max_gap: 64 << 10,
    max_read: 16 << 20,
    in_flight: 4,
};

/// Plaintexts of the blobs a batch needs, by id.
pub(crate) type Blobs = HashMap<Id, Vec<u8>>;

/// The blobs of `jobs` fetched with the batch: those of files to be written (files that exist
/// already are checked first and are left to fetch their own blobs if they turn out to
/// differ), unless the file is too large for a batch and is fetched a window at a time.
pub(crate) fn needed(jobs: &[FileJob], batch_bytes: u64) -> impl Iterator<Item = &Id> {
    jobs.iter()
        .filter(move |j| !j.existing() && j.node.size <= batch_bytes)
        .flat_map(|j| j.node.content.iter())
}

/// Fetches, authenticates and decompresses into `opener` the blobs `ids` (each once; those of
/// a batch's files, see [`needed`]). Blobs that fail to decode are left out: writing the file
/// then fetches them alone and reports the error with the file's name. A store that cannot be
/// reached (after every retry) fails the whole batch: retrying blob by blob would only
/// multiply the wait.
pub(crate) fn fetch_batch<'i>(
    repo: &IndexedRepository,
    runtime: &tokio::runtime::Handle,
    opener: &mut BlobOpener<'_>,
    ids: impl Iterator<Item = &'i Id>,
) -> Result<(), String> {
    fetch_into(
        repo,
        runtime,
        opener,
        repo.plan_reads(PackKind::Data, ids, READS),
    )
}

/// Fetches, authenticates and decompresses the blobs `ids` (each once), as [`fetch_batch`]
/// does, and checks their ids together ([`BlobOpener::finish`]), several plaintexts hashed
/// side by side, which in the `gm` suite is several times faster than one after another.
pub(crate) fn fetch_blobs<'i>(
    repo: &IndexedRepository,
    runtime: &tokio::runtime::Handle,
    ids: impl Iterator<Item = &'i Id>,
) -> Result<Blobs, String> {
    let reads = repo.plan_reads(PackKind::Data, ids, READS);
    // Nothing to gain for a single blob: the file's own read does the same.
    if reads.iter().map(|r| r.blobs.len()).sum::<usize>() < 2 {
        return Ok(Blobs::new());
    }
    let mut opener = BlobOpener::new(repo, PackKind::Data);
    fetch_into(repo, runtime, &mut opener, reads)?;
    Ok(settled(opener.finish()))
}

/// The plaintexts of blobs an opener settled, without those that failed (their files fetch
/// them again alone, and report the error).
pub(crate) fn settled(blobs: Vec<(Id, zaibei_repo::Result<Vec<u8>>)>) -> Blobs {
    blobs
        .into_iter()
        .filter_map(|(id, plain)| plain.ok().map(|p| (id, p)))
        .collect()
}

/// Runs `reads`, a few at a time, and adds the blobs they bring to `opener`.
fn fetch_into(
    repo: &IndexedRepository,
    runtime: &tokio::runtime::Handle,
    opener: &mut BlobOpener<'_>,
    reads: Vec<RangedRead<'_>>,
) -> Result<(), String> {
    runtime
        .block_on(repo.gather_planned(opener, reads, READS.in_flight))
        .map_err(|e| format!("{e} (the repository cannot be reached)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use zaibei_crypto::{PasswordKdf, Suite};
    use zaibei_format::{Node, NodeKind};
    use zaibei_repo::{BlobSaver, InitOptions, Repository};
    use zaibei_store::{MemoryStore, Store};

    use super::super::meta::AsCreated;
    use super::*;

    #[test]
    fn the_writers_batches_share_32_mib_within_4_and_8_mib_each() {
        assert_eq!(batch_bytes(8), 4 << 20);
        assert_eq!(batch_bytes(64), 4 << 20);
        assert_eq!(batch_bytes(4), 8 << 20);
        assert_eq!(batch_bytes(2), 8 << 20);
        assert_eq!(batch_bytes(0), 8 << 20);
        assert_eq!(batch_bytes(6), (32 << 20) / 6);
    }

    fn job(content: Vec<Id>, existing: bool) -> FileJob {
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.content = content;
        let fd: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let created = AsCreated::of(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        FileJob {
            fd,
            node,
            path: b"/f".to_vec(),
            created: (!existing).then_some(created),
        }
    }

    #[test]
    fn neighbouring_blobs_are_read_together_and_only_the_needed_ones() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let repo = rt.block_on(async {
            Repository::init(
                Arc::clone(&store),
                b"pw",
                InitOptions::new(Suite::Gm, PasswordKdf::insecure_for_tests(Suite::Gm)),
            )
            .await
            .unwrap();
            Arc::new(
                Repository::open(Arc::clone(&store), b"pw")
                    .await
                    .unwrap()
                    .load_index()
                    .await
                    .unwrap(),
            )
        });
        // Ten small blobs, then one of 200 KiB, then ten more: one pack.
        let payloads: Vec<Vec<u8>> = (0..21u32)
            .map(|i| {
                let len = if i == 10 {
                    200 << 10
                } else {
                    1000 + i as usize
                };
                // Incompressible, so the large blob really is a wide gap in the pack.
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(i);
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let _guard = rt.enter();
        let saver = rt.block_on(BlobSaver::start(Arc::clone(&repo), 1)).unwrap();
        let ids: Vec<Id> = payloads
            .iter()
            .map(|p| {
                let id = saver.blob_id(p).unwrap();
                saver.save_blob(PackKind::Data, id, p).unwrap();
                id
            })
            .collect();
        rt.block_on(saver.finish()).unwrap();
        let repo = rt.block_on(async {
            Repository::open(Arc::clone(&store), b"pw")
                .await
                .unwrap()
                .load_index()
                .await
                .unwrap()
        });

        // Files needing blobs 0-4 and 15-20 (not the large one in between, whose 200 KiB
        // gap is too wide to read across), a duplicate, and an existing file that is left to
        // fetch its own.
        let jobs = vec![
            job(ids[0..5].to_vec(), false),
            job(ids[15..21].to_vec(), false),
            job(vec![ids[0]], false),
            job(vec![ids[10]], true),
        ];
        drop(_guard);
        let reads = repo.plan_reads(PackKind::Data, needed(&jobs, BATCH_BYTES), READS);
        assert_eq!(
            reads.len(),
            2,
            "two runs of neighbours, not one read per blob"
        );
        let planned: usize = reads.iter().map(|r| r.blobs.len()).sum();
        assert_eq!(planned, 11);
        assert!(reads.iter().all(|r| r.end - r.start < 100 << 10));

        let mut opener = BlobOpener::new(&repo, PackKind::Data);
        fetch_batch(&repo, rt.handle(), &mut opener, needed(&jobs, BATCH_BYTES)).unwrap();
        let blobs = settled(opener.finish());
        assert_eq!(blobs.len(), 11);
        for i in (0..5).chain(15..21) {
            assert_eq!(blobs[&ids[i]], payloads[i]);
        }
        assert!(!blobs.contains_key(&ids[10]));
    }
}
