//! File workers: read changed files, find their data extents (holes are not read), chunk them,
//! hash the chunks in batches and queue the new ones for the saver's sealer threads.
//!
//! A worker takes the files already waiting in the queue together (up to [`BATCH_FILES`], and
//! while they are smaller than a batch together) and gathers their chunks into one batch, so
//! that the chunks of many small files are hashed at once (multi-buffer HMAC-SM3 hashes eight at
//! a time). The chunks of a large file are not copied: they are hashed where they lie in the
//! read buffer, several at a time, before the buffer moves on ([`InPlace`]). A file's node is
//! answered as soon as it is read and every chunk of it is hashed and handed to the saver.

use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};

use crossbeam_channel::{Receiver, Sender};
use zaibei_format::{Id, Node, PackKind};
use zaibei_repo::BlobSaver;

use super::Context;
use crate::ArchiveError;
use crate::budget::{Reserved, WindowBudget};
use crate::chunker::ChunkStream;
use crate::fsmeta;
use crate::progress::Counters;

/// Most files a worker takes from the queue at once.
pub(crate) const BATCH_FILES: usize = 64;
/// Bytes of chunks gathered before they are hashed together.
const BATCH_BYTES: usize = 4 << 20;
/// Most chunks hashed together.
const BATCH_CHUNKS: usize = 64;

/// A file to read.
pub(crate) struct FileJob {
    /// Open for reading.
    pub fd: OwnedFd,
    /// Its node from `lstat`.
    pub node: Node,
    /// Its absolute path (for messages).
    pub path: Vec<u8>,
    /// Where the result goes.
    pub reply: Sender<FileOutcome>,
}

/// What became of a file.
pub(crate) enum FileOutcome {
    /// Read, and every chunk handed to the saver (stored once the saver finishes): the
    /// complete node.
    Done(Box<Node>),
    /// Could not be read; it is left out of the snapshot.
    Skipped,
    /// The repository failed: the backup must stop.
    Fatal(ArchiveError),
}

/// Chunks of one or more files waiting to be hashed, copied out of the read buffer.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// For each chunk: the file it belongs to (position in the worker's list) and its bytes.
    chunks: Vec<(usize, Range<usize>)>,
}

impl Batch {
    fn has_room_for(&self, len: usize) -> bool {
        self.chunks.is_empty()
            || (self.chunks.len() < BATCH_CHUNKS && self.data.len() + len <= BATCH_BYTES)
    }

    fn push(&mut self, file: usize, chunk: &[u8]) {
        if self.data.len() + chunk.len() > self.data.capacity() {
            // Exactly the most a batch holds, rather than twice that by doubling.
            self.data
                .reserve_exact(BATCH_BYTES.max(self.data.len() + chunk.len()) - self.data.len());
        }
        let start = self.data.len();
        self.data.extend_from_slice(chunk);
        self.chunks.push((file, start..self.data.len()));
    }

    /// Drops the chunks of `file` not yet hashed (it could not be read to the end).
    fn drop_file(&mut self, file: usize) {
        while let Some((f, range)) = self.chunks.last()
            && *f == file
        {
            self.data.truncate(range.start);
            self.chunks.pop();
        }
    }

    /// Hashes the chunks, hands each to the saver and appends its id to its file's content.
    fn flush(&mut self, ctx: &Context<'_>, contents: &mut [Vec<Id>]) -> Result<(), ArchiveError> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        let slices: Vec<&[u8]> = self
            .chunks
            .iter()
            .map(|(_, r)| &self.data[r.clone()])
            .collect();
        let ids = save_chunks(ctx.saver, ctx.counters, &slices)?;
        for ((file, _), id) in self.chunks.iter().zip(ids) {
            if let Some(content) = contents.get_mut(*file) {
                content.push(id);
            }
        }
        self.data.clear();
        self.chunks.clear();
        Ok(())
    }
}

/// Hashes chunks together, hands each to the saver's sealer threads (the new ones are copied
/// into the saver's queue on this thread), and returns their ids in order.
pub(crate) fn save_chunks(
    saver: &BlobSaver,
    counters: &Counters,
    chunks: &[&[u8]],
) -> Result<Vec<Id>, ArchiveError> {
    let ids = ids_in_halves(chunks, |part| saver.blob_ids(part))?;
    for (id, chunk) in ids.iter().zip(chunks) {
        saver.save_blob_queued(PackKind::Data, *id, chunk)?;
        Counters::add(&counters.bytes, chunk.len() as u64);
    }
    Ok(ids)
}

/// The chunks of one stream, as ranges of its read buffer, gathered until the buffer is about
/// to move (or the stream ends) and then hashed where they lie: a large file's chunks are
/// never copied into a batch, so a worker reading one holds its read buffer and nothing more.
#[derive(Default)]
pub(crate) struct InPlace {
    ranges: Vec<Range<usize>>,
    bytes: usize,
    /// Whether some of the stream's chunks were hashed in place already.
    started: bool,
}

impl InPlace {
    /// Keeps a chunk's range.
    pub(crate) fn push(&mut self, range: Range<usize>) {
        self.bytes += range.len();
        self.ranges.push(range);
    }

    /// Whether the chunks kept at the end of the stream are better hashed in place than
    /// copied into a batch, where they would join other files' chunks: when the stream was
    /// hashed in place before, or they are large together.
    fn stays_in_place(&self) -> bool {
        self.started || self.bytes >= IN_PLACE_BYTES
    }

    /// Hashes and saves the kept chunks, which lie in `buffer`; appends their ids to
    /// `content`.
    pub(crate) fn save(
        &mut self,
        saver: &BlobSaver,
        counters: &Counters,
        buffer: &[u8],
        content: &mut Vec<Id>,
    ) -> Result<(), ArchiveError> {
        if self.ranges.is_empty() {
            return Ok(());
        }
        let slices: Vec<&[u8]> = self.ranges.iter().map(|r| &buffer[r.clone()]).collect();
        content.extend(save_chunks(saver, counters, &slices)?);
        self.ranges.clear();
        self.bytes = 0;
        self.started = true;
        Ok(())
    }
}

/// The chunks left at the end of a file that are hashed in place rather than copied into the
/// batch when they are at least this large together.
const IN_PLACE_BYTES: usize = 4 << 20;

/// Most chunks a widened read window is sized for: six of the eight lanes of multi-buffer
/// HMAC-SM3. Eight took the peak memory of the 2 GiB benchmark file to 106 MiB against 94 MiB,
/// with no gain in time that this machine's noise let show (see BENCHMARKS.md).
const WIDE_WINDOW_CHUNKS: usize = 6;
/// Most bytes one read window is widened by, from the backup's shared [`WindowBudget`]: four
/// chunks of the default maximum size beyond the usual two.
pub(crate) const READ_WINDOW_EXTRA_BYTES: usize = 32 << 20;
/// A widened window is narrowed again once it holds more chunks than this: they are small
/// again, and the usual window holds enough of them for the lanes.
const NARROW_CHUNKS: usize = 3 * WIDE_WINDOW_CHUNKS;

/// The size of a stream's read window. A window of twice the maximum chunk size holds only two
/// chunks of the maximum size, as long runs of repeated or zero bytes give, and two ids are
/// hashed one stream at a time (see [`ids_in_halves`]). When a window's chunks are that few and
/// large, the next windows are widened to hold up to [`WIDE_WINDOW_CHUNKS`] of them, with memory
/// taken from the shared budget without waiting (nothing is widened while another reader holds
/// it), and narrowed again once the chunks are small.
pub(crate) struct Window<'b> {
    budget: &'b WindowBudget,
    /// The extra bytes the widened window holds.
    wide: Option<Reserved<'b>>,
    /// Bytes of a window being narrowed, given back once the buffer has shrunk.
    narrowing: Option<Reserved<'b>>,
}

impl<'b> Window<'b> {
    /// The usual window, widened from `budget` when the chunks call for it.
    pub(crate) fn new(budget: &'b WindowBudget) -> Self {
        Window {
            budget,
            wide: None,
            narrowing: None,
        }
    }

    /// Sizes the window that follows the one whose chunks are `kept` (about to be hashed);
    /// `left` is how much of the stream is still to be read, when known.
    pub(crate) fn plan<R: Read>(
        &mut self,
        kept: &InPlace,
        stream: &mut ChunkStream<'_, '_, R>,
        left: Option<u64>,
    ) {
        let usual = 2 * stream.max_chunk();
        match &self.wide {
            // Fewer chunks than the lanes need, in a window at least half full.
            None if kept.ranges.len() < FEW_CHUNKS && kept.bytes >= stream.max_chunk() => {
                let mut want = (WIDE_WINDOW_CHUNKS * stream.max_chunk())
                    .saturating_sub(usual)
                    .min(READ_WINDOW_EXTRA_BYTES);
                if let Some(left) = left {
                    want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
                }
                // Worth it only when the wider window holds at least twice as many chunks.
                if want < usual {
                    return;
                }
                let extra = self.budget.take(want as u64);
                if extra.bytes() >= usual as u64 {
                    stream.set_window(usual + extra.bytes() as usize);
                    self.wide = Some(extra);
                }
            }
            Some(_) if kept.ranges.len() > NARROW_CHUNKS => {
                stream.set_window(usual);
                self.narrowing = self.wide.take();
            }
            _ => {}
        }
    }

    /// Called after each chunk: the buffer has its planned size once the stream has refilled.
    pub(crate) fn refilled(&mut self) {
        self.narrowing = None;
    }
}

/// Below this many chunks a batch is too few for the hash lanes (see `sm3_multi`).
const FEW_CHUNKS: usize = 3;
/// A batch of few chunks this large together is hashed on two threads.
const SPLIT_BYTES: usize = 4 << 20;

/// `hash(slices)`, computed as two halves on two threads when `slices` are few and large.
fn ids_in_halves<F>(slices: &[&[u8]], hash: F) -> Result<Vec<Id>, ArchiveError>
where
    F: Fn(&[&[u8]]) -> Result<Vec<Id>, zaibei_repo::RepoError> + Sync,
{
    let total: usize = slices.iter().map(|c| c.len()).sum();
    if slices.len() < 2 || slices.len() >= FEW_CHUNKS || total < SPLIT_BYTES {
        return Ok(hash(slices)?);
    }
    let (first, second) = slices.split_at(slices.len() / 2);
    let (ids, rest) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| hash(second));
        let ids = hash(first);
        let rest = helper
            .join()
            .map_err(|_| ArchiveError::Internal("a hashing thread panicked".into()));
        (ids, rest)
    });
    let mut ids = ids?;
    ids.extend(rest??);
    Ok(ids)
}

pub(crate) fn run_worker(ctx: &Context<'_>, jobs: Receiver<FileJob>) {
    // The chunker's read buffer and the batch, reused for every file this worker reads.
    let mut read_buf = Vec::new();
    let mut batch = Batch::default();
    while let Ok(first) = jobs.recv() {
        // The files already waiting join the group while they are small together: a large
        // file ends the group, so it never holds back many others.
        let mut bytes = first.node.size;
        let mut files = vec![first];
        while files.len() < BATCH_FILES
            && bytes < BATCH_BYTES as u64
            && let Ok(job) = jobs.try_recv()
        {
            bytes += job.node.size;
            files.push(job);
        }
        let mut group = Group::new(&files);
        group.read_all(ctx, &mut batch, &mut read_buf);
    }
}

/// Files a worker reads together, answered in order as soon as each is read and its chunks
/// are hashed and handed to the saver.
struct Group<'f> {
    files: &'f [FileJob],
    /// Per file: `None` while unread, then the node (`Some(None)`: skipped).
    nodes: Vec<Option<Option<Node>>>,
    contents: Vec<Vec<Id>>,
    /// Files answered so far (a prefix).
    answered: usize,
}

impl<'f> Group<'f> {
    fn new(files: &'f [FileJob]) -> Self {
        Group {
            files,
            nodes: (0..files.len()).map(|_| None).collect(),
            contents: vec![Vec::new(); files.len()],
            answered: 0,
        }
    }

    fn read_all(&mut self, ctx: &Context<'_>, batch: &mut Batch, read_buf: &mut Vec<u8>) {
        let files = self.files;
        for (i, job) in files.iter().enumerate() {
            match read_file(ctx, job, i, batch, self, read_buf) {
                Ok(node) => self.nodes[i] = Some(Some(node)),
                Err(ReadError::Source(e)) => {
                    batch.drop_file(i);
                    ctx.skipped.record(&job.path, format!("cannot read: {e}"));
                    Counters::add(&ctx.counters.errors, 1);
                    self.nodes[i] = Some(None);
                }
                Err(ReadError::Repo(e)) => return self.fail(e),
            }
            self.answer_ready(ctx, batch);
        }
        if let Err(e) = self.flush(ctx, batch) {
            self.fail(e);
        }
    }

    /// Hashes the batch, hands its chunks to the saver and answers the files now complete.
    fn flush(&mut self, ctx: &Context<'_>, batch: &mut Batch) -> Result<(), ArchiveError> {
        batch.flush(ctx, &mut self.contents)?;
        self.answer_ready(ctx, batch);
        Ok(())
    }

    /// Hashes and saves the chunks of file `index` kept in `buffer`, after flushing the batch:
    /// the chunks of earlier files, whose ids come first.
    fn save_in_place(
        &mut self,
        ctx: &Context<'_>,
        batch: &mut Batch,
        kept: &mut InPlace,
        buffer: &[u8],
        index: usize,
    ) -> Result<(), ArchiveError> {
        self.flush(ctx, batch)?;
        kept.save(ctx.saver, ctx.counters, buffer, &mut self.contents[index])
    }

    /// Answers, in order, the files read to the end with none of their chunks still in the
    /// batch.
    fn answer_ready(&mut self, ctx: &Context<'_>, batch: &Batch) {
        let first_pending = batch.chunks.first().map_or(usize::MAX, |(file, _)| *file);
        while self.answered < self.files.len() && self.answered < first_pending {
            let Some(node) = self.nodes[self.answered].take() else {
                return;
            };
            let outcome = match node {
                Some(mut node) => {
                    node.content = std::mem::take(&mut self.contents[self.answered]);
                    Counters::add(&ctx.counters.files, 1);
                    Counters::add(&ctx.counters.bytes_seen, node.size);
                    FileOutcome::Done(Box::new(node))
                }
                None => FileOutcome::Skipped,
            };
            // The assembler may be gone after a fatal error elsewhere: nothing left to tell.
            let _ = self.files[self.answered].reply.send(outcome);
            self.answered += 1;
        }
    }

    /// Answers every file not answered yet with the error (the backup stops at the first).
    fn fail(&mut self, e: ArchiveError) {
        let message = e.to_string();
        let mut first = Some(e);
        for job in &self.files[self.answered..] {
            let e = first
                .take()
                .unwrap_or_else(|| ArchiveError::Internal(message.clone()));
            let _ = job.reply.send(FileOutcome::Fatal(e));
        }
        self.answered = self.files.len();
    }
}

enum ReadError {
    Source(io::Error),
    Repo(ArchiveError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Source(e)
    }
}

/// Reads one file: its chunks are hashed in place (a large file) or copied into the batch (a
/// small one, hashed when the batch fills or the group ends); returns its node without
/// content, which the caller fills in once the last chunks are hashed.
fn read_file(
    ctx: &Context<'_>,
    job: &FileJob,
    index: usize,
    batch: &mut Batch,
    group: &mut Group<'_>,
    read_buf: &mut Vec<u8>,
) -> Result<Node, ReadError> {
    let fd = job.fd.as_fd();
    let st = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    // The open file is the truth: it may differ from what lstat saw a moment earlier.
    let mut node = fsmeta::node_from_stat(job.node.name.clone(), &st)
        .ok_or_else(|| io::Error::other("no longer a regular file"))?;
    node.user = job.node.user.clone();
    node.group = job.node.group.clone();
    node.xattrs = fsmeta::xattrs_of_fd(fd)?;
    let extents = fsmeta::data_extents_of(fd, &st)?;
    let dense = extents.len() == 1 && extents[0] == (0, node.size);
    let expected: u64 = extents.iter().map(|&(_, l)| l).sum();
    let reader = ExtentReader {
        fd,
        extents: &extents,
        index: 0,
        offset: 0,
    };
    // Before the stream: dropped after it, so that a widened buffer has shrunk before its
    // budget goes back, however this function returns.
    let mut window = Window::new(ctx.window_budget);
    let mut stream = ctx.chunker.stream(reader, read_buf);
    let mut stored = 0u64;
    let mut kept = InPlace::default();
    loop {
        if stream.will_refill() && !kept.ranges.is_empty() {
            // The read buffer is about to move: the chunks read so far are hashed where they
            // lie, and the next window is sized for the chunks this one held.
            let left = expected.saturating_sub(stream.bytes_read());
            window.plan(&kept, &mut stream, Some(left));
            group
                .save_in_place(ctx, batch, &mut kept, stream.buffer(), index)
                .map_err(ReadError::Repo)?;
        }
        let Some(range) = stream.next_range()? else {
            break;
        };
        window.refilled();
        stored += range.len() as u64;
        kept.push(range);
    }
    // Checked before the last chunks are saved: the chunks of a file left out are not stored.
    if stored != expected {
        return Err(ReadError::Source(io::Error::other(format!(
            "file shrank while being read ({stored} of {expected} bytes)"
        ))));
    }
    if kept.stays_in_place() {
        group
            .save_in_place(ctx, batch, &mut kept, stream.buffer(), index)
            .map_err(ReadError::Repo)?;
    } else {
        // A small file: its chunks join the batch, to be hashed with other files' chunks.
        for range in kept.ranges.drain(..) {
            let chunk = &stream.buffer()[range];
            if !batch.has_room_for(chunk.len()) {
                group.flush(ctx, batch).map_err(ReadError::Repo)?;
            }
            batch.push(index, chunk);
        }
    }
    // The stream borrows `extents`, which the node takes.
    drop(stream);
    let after = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    if (after.st_mtime, after.st_mtime_nsec, after.st_size)
        != (st.st_mtime, st.st_mtime_nsec, st.st_size)
    {
        tracing::warn!(
            "{} changed while being read; the snapshot holds the bytes read",
            String::from_utf8_lossy(&job.path)
        );
    }
    node.extents = if dense || node.size == 0 {
        None
    } else {
        Some(extents)
    };
    Ok(node)
}

/// Reads the data extents of a file one after the other with positioned reads.
struct ExtentReader<'a> {
    fd: std::os::fd::BorrowedFd<'a>,
    extents: &'a [(u64, u64)],
    index: usize,
    offset: u64,
}

impl Read for ExtentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(&(start, len)) = self.extents.get(self.index) else {
                return Ok(0);
            };
            if self.offset >= len {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let want = buf.len().min((len - self.offset) as usize);
            let n = rustix::io::pread(self.fd, &mut buf[..want], start + self.offset)?;
            if n == 0 {
                // The file is shorter than it was: end of data.
                return Ok(0);
            }
            self.offset += n as u64;
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_drops_only_the_unread_tail_of_the_failed_file() {
        let mut b = Batch::default();
        b.push(0, b"aaaa");
        b.push(1, b"bb");
        b.push(1, b"ccc");
        b.drop_file(1);
        assert_eq!(b.data, b"aaaa");
        assert_eq!(b.chunks, vec![(0, 0..4)]);
        // A file with nothing in the batch leaves it alone.
        b.drop_file(2);
        assert_eq!(b.chunks.len(), 1);
        b.push(2, b"dd");
        assert_eq!(b.chunks.last(), Some(&(2, 4..6)));
    }

    #[test]
    fn ids_hashed_in_halves_keep_the_order_of_the_chunks() {
        // A stand-in hash: the first byte and the length of each chunk.
        let hash = |part: &[&[u8]]| -> Result<Vec<Id>, zaibei_repo::RepoError> {
            Ok(part
                .iter()
                .map(|c| {
                    let mut id = [0u8; 32];
                    id[0] = c[0];
                    id[1..9].copy_from_slice(&(c.len() as u64).to_le_bytes());
                    Id(id)
                })
                .collect())
        };
        let big_a = vec![1u8; SPLIT_BYTES / 2];
        let big_b = vec![2u8; SPLIT_BYTES / 2 + 1];
        let small = [3u8; 10];
        for slices in [
            vec![&big_a[..], &big_b[..]],
            vec![&small[..], &small[..]],
            vec![&big_a[..]],
            vec![&big_a[..], &small[..], &big_b[..]],
        ] {
            let ids = ids_in_halves(&slices, hash).unwrap();
            let expected: Vec<(u8, usize)> = slices.iter().map(|c| (c[0], c.len())).collect();
            let got: Vec<(u8, usize)> = ids
                .iter()
                .map(|id| {
                    let len = u64::from_le_bytes(id.0[1..9].try_into().unwrap());
                    (id.0[0], len as usize)
                })
                .collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn only_few_large_chunks_are_split_across_threads() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let hash = |part: &[&[u8]]| -> Result<Vec<Id>, zaibei_repo::RepoError> {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(part.iter().map(|_| Id::default()).collect())
        };
        let big = vec![0u8; SPLIT_BYTES];
        let small = [0u8; 10];
        ids_in_halves(&[&big[..], &big[..]], hash).unwrap();
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 2);
        for slices in [
            vec![&small[..], &small[..]],
            vec![&big[..]],
            vec![&big[..], &big[..], &big[..]],
        ] {
            ids_in_halves(&slices, hash).unwrap();
            assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn a_batch_takes_a_first_chunk_of_any_size_then_stops_at_its_limits() {
        let mut b = Batch::default();
        assert!(b.has_room_for(BATCH_BYTES * 2));
        b.push(0, &[0; 10]);
        assert!(b.has_room_for(BATCH_BYTES - 10));
        assert!(!b.has_room_for(BATCH_BYTES - 9));
        for _ in 1..BATCH_CHUNKS {
            b.push(0, &[1]);
        }
        assert!(!b.has_room_for(1));
    }

    /// A stream over `len` bytes that are all the same: every chunk has the maximum size.
    fn repeated(len: usize) -> Vec<u8> {
        vec![7u8; len]
    }

    fn kept_of(stream: &mut ChunkStream<'_, '_, &[u8]>) -> InPlace {
        let mut kept = InPlace::default();
        while !stream.will_refill() || kept.ranges.is_empty() {
            match stream.next_range().unwrap() {
                Some(range) => kept.push(range),
                None => break,
            }
        }
        kept
    }

    #[test]
    fn a_window_of_few_large_chunks_widens_from_the_budget_and_narrows_for_small_ones() {
        let params = zaibei_format::ChunkerParams {
            min: 4096,
            avg: 16384,
            max: 65536,
        };
        let chunker = crate::chunker::Chunker::new(zaibei_crypto::Suite::Gm, &[9; 32], params);
        let usual = 2 * 65536;
        let data = repeated(40 * 65536);
        let budget = WindowBudget::new(READ_WINDOW_EXTRA_BYTES as u64);
        let (mut buf, mut other_buf) = (Vec::new(), Vec::new());
        let mut stream = chunker.stream(&data[..], &mut buf);
        let mut other = chunker.stream(&data[..], &mut other_buf);
        let (mut window, mut other_window) = (Window::new(&budget), Window::new(&budget));

        // Two chunks of the maximum size fill the usual window: the next is widened to hold
        // WIDE_WINDOW_CHUNKS of them, from the budget.
        let kept = kept_of(&mut stream);
        assert_eq!(kept.ranges.len(), 2);
        window.plan(&kept, &mut stream, Some(data.len() as u64));
        assert_eq!(stream.window(), WIDE_WINDOW_CHUNKS * 65536);
        let taken = (WIDE_WINDOW_CHUNKS * 65536 - usual) as u64;
        let probe = budget.take(u64::MAX);
        assert_eq!(probe.bytes(), READ_WINDOW_EXTRA_BYTES as u64 - taken);
        drop(probe);
        // The next window (its first chunk refills the buffer) holds that many.
        let kept = kept_of(&mut stream);
        window.refilled();
        assert_eq!(stream.buffer().len(), WIDE_WINDOW_CHUNKS * 65536);
        assert_eq!(kept.ranges.len(), WIDE_WINDOW_CHUNKS);

        // Another reader of the same kind finds the budget taken when it is all taken.
        let rest = budget.take(u64::MAX);
        let kept_other = kept_of(&mut other);
        other_window.plan(&kept_other, &mut other, None);
        assert_eq!(other.window(), usual, "nothing left to widen with");
        drop(rest);

        // Too little of the stream left to fill a wider window: not widened.
        let mut third_buf = Vec::new();
        let mut third = chunker.stream(&data[..], &mut third_buf);
        let mut third_window = Window::new(&budget);
        let kept_third = kept_of(&mut third);
        third_window.plan(&kept_third, &mut third, Some(65536));
        assert_eq!(third.window(), usual);

        // Many chunks in the wide window (small ones): narrowed again, and its bytes go back to
        // the budget once the buffer has shrunk at the refill.
        let mut many = InPlace::default();
        for i in 0..=NARROW_CHUNKS {
            many.push(i..i + 1);
        }
        window.plan(&many, &mut stream, None);
        assert_eq!(stream.window(), usual);
        assert!(budget.take(u64::MAX).bytes() < READ_WINDOW_EXTRA_BYTES as u64);
        stream.next_range().unwrap();
        window.refilled();
        assert_eq!(stream.buffer().len(), usual);
        assert_eq!(
            budget.take(u64::MAX).bytes(),
            READ_WINDOW_EXTRA_BYTES as u64
        );
    }
}
