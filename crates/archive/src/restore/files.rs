//! Restore workers: create each file below its directory's handle, write its contents at their
//! offsets (holes stay holes), then its metadata; or, over an existing file, check it first and
//! leave it alone when it is right.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use rustix::fs::{AtFlags, Mode, OFlags};
use zaibei_format::{Node, NodeKind, PackKind};
use zaibei_repo::BlobOpener;

use super::{Shared, meta, prefetch};
use crate::fsmeta;
use crate::progress::Counters;

/// A directory the restore created or opened, shared by the walker and the writers that
/// create files in it. Its metadata (mode, times) may only be applied once every file queued
/// for it exists: creating a file changes the directory's times, and a read-only mode would
/// refuse the file.
pub(crate) struct OpenDir {
    fd: OwnedFd,
    /// Files queued for creation in this directory that do not exist yet.
    pending: AtomicUsize,
    /// The group a file created here gets: the directory's own when it is setgid, else ours.
    /// (Its mode is applied only once its files exist, so this holds while they are created.)
    new_file_gid: u32,
    /// Held while a writer creates a file here. The kernel lets one creation at a time into a
    /// directory anyway (an open with `O_CREAT` locks the directory), and a writer waiting for
    /// that lock spins on a CPU while the holder runs, which the others need for decryption
    /// and hashing; waiting here sleeps instead.
    creating: Mutex<()>,
}

impl OpenDir {
    /// Wraps the handle of a directory with no files queued.
    pub(crate) fn new(fd: OwnedFd) -> Arc<Self> {
        let egid = rustix::process::getegid().as_raw();
        let new_file_gid = match rustix::fs::fstat(&fd) {
            Ok(st) if st.st_mode & 0o2000 != 0 => st.st_gid,
            _ => egid,
        };
        Arc::new(OpenDir {
            fd,
            pending: AtomicUsize::new(0),
            new_file_gid,
            creating: Mutex::new(()),
        })
    }

    /// True while files queued for this directory are still to be created.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }
}

impl AsFd for OpenDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the walker hands to the writers.
pub(crate) enum Queued {
    /// A file the walker opened itself (one with other names, which are linked to it).
    Open(FileJob),
    /// A file the writer creates (or opens, when resuming) in `dir`.
    Create {
        /// Its directory.
        dir: Arc<OpenDir>,
        /// What it must become.
        node: Node,
        /// Its path in the snapshot (for messages).
        path: Vec<u8>,
    },
}

impl Queued {
    /// A file for a writer to create in `dir`, counted as pending there until it exists.
    pub(crate) fn create(dir: &Arc<OpenDir>, node: Node, path: Vec<u8>) -> Self {
        dir.pending.fetch_add(1, Ordering::AcqRel);
        Queued::Create {
            dir: Arc::clone(dir),
            node,
            path,
        }
    }

    /// Opens the file, creating it where needed; the directory then no longer counts it as
    /// pending, whether that succeeded or not.
    fn open(self) -> Result<FileJob, (Vec<u8>, String)> {
        match self {
            Queued::Open(job) => Ok(job),
            Queued::Create { dir, node, path } => {
                let opened = open_or_create(&dir, &node);
                dir.pending.fetch_sub(1, Ordering::AcqRel);
                match opened {
                    Ok((fd, created)) => Ok(FileJob {
                        fd,
                        node,
                        path,
                        created,
                    }),
                    Err(e) => Err((path, e)),
                }
            }
        }
    }
}

/// Creates the regular file `node` in `dir`, open read-write, or opens it when it exists
/// (`None` then: check it before writing), first removing whatever other kind of entry stands
/// in its way. Never follows a symlink.
///
/// A new file is created with the node's permission bits, so that in the usual case its mode
/// is right from the start (an open for writing that creates a file succeeds whatever its
/// mode, on local filesystems and NFS). Left out until the owner is set: setuid, setgid and
/// sticky, and the group bits unless the file's group at creation is already the node's (a
/// setgid directory's group, or a default ACL's mask, must not let others read it meanwhile).
pub(crate) fn open_or_create(
    dir: &OpenDir,
    node: &Node,
) -> Result<(OwnedFd, Option<meta::AsCreated>), String> {
    let name = node.name.as_slice();
    let bits = if dir.new_file_gid == node.gid {
        0o777
    } else {
        0o707
    };
    let create = || -> Result<(OwnedFd, Option<meta::AsCreated>), std::io::Error> {
        let fd = fsmeta::open_beneath(
            dir.as_fd(),
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode((node.mode & bits) as _),
        )?;
        // Without it the file is still right: owner and mode are then set as for any file.
        let created = meta::AsCreated::of(fd.as_fd()).ok();
        Ok((fd, Some(created.unwrap_or(meta::AsCreated::UNKNOWN))))
    };
    // Nothing the lock guards can be left half done: a poisoned lock is as good as any.
    let _creating = dir.creating.lock().unwrap_or_else(|p| p.into_inner());
    // Most files do not exist yet: one call creates them, with no look-up first.
    match create() {
        Ok(opened) => return Ok(opened),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating file: {e}")),
    }
    let dir = dir.as_fd();
    let st = fsmeta::lstat_at(dir, name).map_err(|e| format!("reading existing entry: {e}"))?;
    if fsmeta::stat_kind(&st) == Some(NodeKind::File) {
        let fd = fsmeta::open_beneath(dir, name, OFlags::RDWR, Mode::empty())
            .map_err(|e| format!("opening existing file: {e}"))?;
        return Ok((fd, None));
    }
    remove_existing(dir, name, &st)?;
    create().map_err(|e| format!("creating file: {e}"))
}

/// Removes an entry that stands where another kind of entry must go. A non-empty directory is
/// never removed.
pub(crate) fn remove_existing(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &rustix::fs::Stat,
) -> Result<(), String> {
    if fsmeta::stat_kind(st) == Some(NodeKind::Dir) {
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
            .map_err(|e| format!("a directory is in the way and cannot be removed: {e}"))
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|e| format!("removing the entry in the way: {e}"))
    }
}

/// A file to write, open.
pub(crate) struct FileJob {
    /// Open read-write.
    pub fd: OwnedFd,
    /// What it must become.
    pub node: Node,
    /// Its path in the snapshot (for messages).
    pub path: Vec<u8>,
    /// The owner and mode of a file the restore created; `None` when the file existed before
    /// (resume): check it before writing.
    pub created: Option<meta::AsCreated>,
}

impl FileJob {
    /// True when the file existed before (resume).
    pub(crate) fn existing(&self) -> bool {
        self.created.is_none()
    }
}

/// Longest a worker waits for more files to join a batch. When the walker is behind, the
/// workers would be idle anyway; when the workers are behind, the queue refills at once.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// Files held open in the batches of all writers together, at most; each writer may also keep
/// a quarter of a batch's files open while they wait for their blobs' ids (see
/// [`run_worker`]).
pub(crate) const BATCHED_OPEN_FILES: usize = 512;

/// A writer: takes batches of at most `batch_files` files from `jobs`, creates them and
/// writes them.
///
/// The blobs of each batch are fetched together and their ids checked side by side. The ids
/// of the longest blobs of a batch would be hashed last, one stream at a time once the
/// shorter ones are done; instead they stay part hashed in the writer's [`BlobOpener`] and go
/// on beside the next batch's blobs, and their files wait for them, as far as the writers'
/// shared [`prefetch::WindowBudget`] has room for them. When no file comes for a moment, or
/// none will, everything left is finished.
pub(crate) fn run_worker(shared: &Shared<'_>, jobs: Receiver<Queued>, batch_files: usize) {
    let new_opener = || BlobOpener::new(shared.repo, PackKind::Data);
    let mut opener = new_opener();
    // Files whose blobs are still being checked, and the checked blobs they need.
    let mut waiting: Vec<FileJob> = Vec::new();
    let mut ready = prefetch::Blobs::new();
    // The share of the writers' budget what is held over takes, given back when replaced.
    let mut _held_over: Option<prefetch::Reserved<'_>> = None;
    let most_waiting = (batch_files / 4).max(1);
    loop {
        let first = if waiting.is_empty() {
            match jobs.recv() {
                Ok(first) => Some(first),
                Err(_) => break,
            }
        } else {
            jobs.recv_timeout(GATHER_WAIT).ok()
        };
        let idle = first.is_none();
        let batch = match first {
            Some(first) => gather(shared, &jobs, first, batch_files),
            None => Vec::new(),
        };
        // A blob held already, or checked and kept for a waiting file, is not fetched again.
        let wanted: Vec<zaibei_format::Id> = prefetch::needed(&batch, shared.batch_bytes)
            .filter(|id| !opener.holds(id) && !ready.contains_key(*id))
            .copied()
            .collect();
        let mut files = std::mem::take(&mut waiting);
        match prefetch::fetch_batch(shared.repo, &shared.runtime, &mut opener, wanted.iter()) {
            Ok(()) => files.extend(batch),
            Err(e) => {
                for job in &batch {
                    finish(shared, job, Err(e.clone()));
                }
            }
        }
        // Without new blobs beside them, those held could not go on side by side.
        let settled = if idle || wanted.is_empty() {
            std::mem::replace(&mut opener, new_opener()).finish()
        } else {
            opener.check_ready()
        };
        ready.extend(prefetch::settled(settled));
        let mut later = Vec::new();
        for job in files {
            let held = |id: &zaibei_format::Id| opener.holds(id) && !ready.contains_key(id);
            if job.node.content.iter().any(held) {
                later.push(job);
            } else {
                finish(shared, &job, restore_file(shared, &job, &ready));
            }
        }
        ready.retain(|id, _| later.iter().any(|job| job.node.content.contains(id)));
        // What is held over (the blobs part hashed, the checked ones waiting files need) must
        // fit the writers' shared budget, and only a few files may wait, each an open file.
        // Otherwise, or when no file waits for what is held, everything is finished now.
        _held_over = None;
        let held =
            opener.pending_bytes() as u64 + ready.values().map(|b| b.len() as u64).sum::<u64>();
        let share = (!later.is_empty() && later.len() <= most_waiting)
            .then(|| shared.window_budget.take(held));
        match share {
            Some(share) if share.bytes() == held => {
                _held_over = Some(share);
                waiting = later;
            }
            _ => {
                ready.extend(prefetch::settled(
                    std::mem::replace(&mut opener, new_opener()).finish(),
                ));
                for job in later {
                    finish(shared, &job, restore_file(shared, &job, &ready));
                }
                ready.clear();
            }
        }
    }
}

/// A batch: `first`, then whatever else is queued, and what the walker queues a moment later,
/// up to `batch_files` files or [`prefetch::BATCH_BYTES`], so that the blobs of small files
/// are fetched together and their ids checked side by side. Without the wait most batches
/// would hold one or two files. Each file is created as it arrives, so that its directory is
/// done as early as possible.
fn gather(
    shared: &Shared<'_>,
    jobs: &Receiver<Queued>,
    first: Queued,
    batch_files: usize,
) -> Vec<FileJob> {
    let deadline = std::time::Instant::now() + GATHER_WAIT;
    let mut bytes = 0u64;
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(queued) = next.take() {
        match queued.open() {
            Ok(job) => {
                bytes += job.node.size;
                batch.push(job);
            }
            Err((path, e)) => {
                Counters::add(&shared.counters.errors, 1);
                shared.failures.record(&path, e);
            }
        }
        if batch.len() < batch_files && bytes < shared.batch_bytes {
            next = jobs.recv_deadline(deadline).ok();
        }
    }
    batch
}

/// Records the outcome of one file.
fn finish(shared: &Shared<'_>, job: &FileJob, result: Result<bool, String>) {
    match result {
        Ok(written) => {
            let mut o = shared.outcome.lock().unwrap_or_else(|p| p.into_inner());
            if written {
                o.files_written += 1;
                o.bytes_written += job.node.size;
            } else {
                o.files_unchanged += 1;
            }
            if shared.opts.verify {
                o.files_verified += 1;
            }
            Counters::add(&shared.counters.files, 1);
            Counters::add(&shared.counters.bytes_seen, job.node.size);
        }
        Err(e) => {
            Counters::add(&shared.counters.errors, 1);
            shared.failures.record(&job.path, e);
        }
    }
}

/// Where the bytes of the content stream go in the file: `(file offset, stream offset, length)`.
fn place(extents: &[(u64, u64)], stream_start: u64, len: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let end = stream_start + len;
    for &(off, elen) in extents {
        let (s, e) = (pos.max(stream_start), (pos + elen).min(end));
        if s < e {
            out.push((off + (s - pos), s, e - s));
        }
        pos += elen;
        if pos >= end {
            break;
        }
    }
    out
}

/// Returns true when the file was written, false when it was already right.
fn restore_file(
    shared: &Shared<'_>,
    job: &FileJob,
    blobs: &prefetch::Blobs,
) -> Result<bool, String> {
    let node = &job.node;
    let fd = job.fd.as_fd();
    let dense = [(0, node.size)];
    let extents: &[(u64, u64)] = node.extents.as_deref().unwrap_or(&dense);
    let mut lens = Vec::with_capacity(node.content.len());
    for id in &node.content {
        let loc = shared
            .repo
            .locate(PackKind::Data, id)
            .map_err(|e| format!("{e} (the file's data is missing from the repository)"))?;
        lens.push(loc.raw_length);
    }
    let written = if job.existing()
        && matches_snapshot(shared, fd, node, extents, &lens, Holes::Compare)?
    {
        false
    } else {
        // A file created by the restore is empty already.
        if job.existing() {
            rustix::fs::ftruncate(fd, 0).map_err(|e| format!("truncating: {e}"))?;
        }
        let mut stream = 0u64;
        let mut end = 0u64;
        // Blobs of this file fetched ahead together (those the batch did not bring).
        let mut ahead = prefetch::Blobs::new();
        let mut _ahead_budget = None;
        for (i, (id, &len)) in node.content.iter().zip(&lens).enumerate() {
            if !blobs.contains_key(id) && !ahead.contains_key(id) {
                // The old window and its share of the budget go before the next is taken.
                ahead.clear();
                _ahead_budget = None;
                let (next, budget) = fetch_ahead(shared, &node.content[i..], &lens[i..], blobs)?;
                ahead = next;
                _ahead_budget = Some(budget);
            }
            let fetched;
            let data = match blobs.get(id).or_else(|| ahead.get(id)) {
                Some(d) => d,
                // Not fetched ahead (damaged, say): read alone, from a copy if need be,
                // and any error names the blob.
                None => {
                    fetched = shared
                        .runtime
                        .block_on(shared.repo.read_blob(PackKind::Data, id))
                        .map_err(|e| e.to_string())?;
                    &fetched
                }
            };
            for (file_off, s_off, n) in place(extents, stream, len) {
                let start = (s_off - stream) as usize;
                write_all_at(fd, &data[start..start + n as usize], file_off)?;
                end = end.max(file_off + n);
            }
            Counters::add(&shared.counters.bytes, len);
            stream += len;
        }
        // The size is set when the writes did not end exactly there: a hole at the end,
        // or a file that was there before.
        if job.existing() || end != node.size {
            rustix::fs::ftruncate(fd, node.size).map_err(|e| format!("setting size: {e}"))?;
        }
        true
    };
    // Verify before the metadata: reading afterwards would change the restored access time.
    if shared.opts.verify
        && written
        && !matches_snapshot(shared, fd, node, extents, &lens, Holes::Ignore)?
    {
        return Err("verification failed: the restored file differs from the snapshot".into());
    }
    meta::apply_to_fd(fd, node, job.created).map_err(|e| e.to_string())?;
    Ok(written)
}

/// Fetches together the next blobs of a file that `batch` does not hold, starting with
/// `content[0]` (always taken), then while they stay within [`prefetch::BATCH_BYTES`] of
/// plaintext, widened by what the writers' shared [`prefetch::WindowBudget`] can spare, and
/// [`prefetch::BATCH_FILES`] blobs. One read per run of neighbours in a pack, the ids checked
/// side by side. The bytes taken from the budget are held until the window is dropped.
fn fetch_ahead<'s>(
    shared: &'s Shared<'_>,
    content: &[zaibei_format::Id],
    lens: &[u64],
    batch: &prefetch::Blobs,
) -> Result<(prefetch::Blobs, prefetch::Reserved<'s>), String> {
    let mut extra = shared.window_budget.take(prefetch::EXTRA_WINDOW_BYTES);
    let limit = shared.batch_bytes + extra.bytes();
    let mut bytes = 0u64;
    let mut count = 0usize;
    let wanted: Vec<&zaibei_format::Id> = content
        .iter()
        .zip(lens)
        .filter(|(id, _)| !batch.contains_key(*id))
        .take_while(|(_, len)| {
            let take = count == 0
                || (count < prefetch::BATCH_FILES && bytes.saturating_add(**len) <= limit);
            if take {
                bytes = bytes.saturating_add(**len);
                count += 1;
            }
            take
        })
        .map(|(id, _)| id)
        .collect();
    // What the window does not use goes back at once.
    extra.shrink_to(bytes.saturating_sub(shared.batch_bytes));
    let blobs = prefetch::fetch_blobs(shared.repo, &shared.runtime, wanted.into_iter())?;
    Ok((blobs, extra))
}

fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> Result<(), String> {
    while !buf.is_empty() {
        let n = rustix::io::pwrite(fd, buf, offset).map_err(|e| format!("writing: {e}"))?;
        if n == 0 {
            return Err("writing: no progress".into());
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Whether [`matches_snapshot`] also compares where the holes are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holes {
    /// Resume: a file whose holes differ is rewritten, so it ends up exactly as in the snapshot.
    Compare,
    /// Verification after writing: only the bytes count (the target's filesystem may allocate
    /// in larger units than the source's).
    Ignore,
}

/// True when the file's size, every blob's bytes and (with [`Holes::Compare`]) its holes match
/// the snapshot.
fn matches_snapshot(
    shared: &Shared<'_>,
    fd: BorrowedFd<'_>,
    node: &Node,
    extents: &[(u64, u64)],
    lens: &[u64],
    holes: Holes,
) -> Result<bool, String> {
    let st = rustix::fs::fstat(fd).map_err(|e| format!("reading: {e}"))?;
    if crate::fsmeta::size_of(&st) != node.size {
        return Ok(false);
    }
    // Holes must be where the snapshot has them: data written into a hole, or a hole punched
    // into data, is a difference even where the bytes read the same.
    if holes == Holes::Compare {
        let allocated =
            crate::fsmeta::data_extents(fd, node.size).map_err(|e| format!("reading: {e}"))?;
        let expected: &[(u64, u64)] = if node.size == 0 { &[] } else { extents };
        if allocated != expected {
            return Ok(false);
        }
    }
    let content = shared
        .repo
        .keys()
        .content("restore")
        .map_err(|e| e.to_string())?;
    // Blobs are read into one buffer and their ids checked a group at a time, side by side.
    let mut stream = 0u64;
    let mut buf = Vec::new();
    let mut group: Vec<(&zaibei_format::Id, std::ops::Range<usize>)> = Vec::new();
    let last = node.content.len().saturating_sub(1);
    for (i, (id, &len)) in node.content.iter().zip(lens).enumerate() {
        let base = buf.len();
        buf.resize(base + len as usize, 0);
        for (file_off, s_off, n) in place(extents, stream, len) {
            let start = base + (s_off - stream) as usize;
            let mut done = 0usize;
            while done < n as usize {
                let r = rustix::io::pread(
                    fd,
                    &mut buf[start + done..start + n as usize],
                    file_off + done as u64,
                )
                .map_err(|e| format!("reading: {e}"))?;
                if r == 0 {
                    return Ok(false);
                }
                done += r;
            }
        }
        group.push((id, base..buf.len()));
        stream += len;
        if i == last
            || group.len() >= prefetch::BATCH_FILES
            || buf.len() as u64 >= shared.batch_bytes
        {
            let slices: Vec<&[u8]> = group.iter().map(|(_, r)| &buf[r.clone()]).collect();
            let actual = content.blob_ids(&slices);
            if group
                .iter()
                .zip(&actual)
                .any(|((want, _), got)| *want != got)
            {
                return Ok(false);
            }
            group.clear();
            buf.clear();
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::place;

    #[test]
    fn placement_maps_stream_to_extents() {
        let ext = [(0, 10), (100, 5), (200, 20)];
        assert_eq!(place(&ext, 0, 10), vec![(0, 0, 10)]);
        assert_eq!(
            place(&ext, 8, 10),
            vec![(8, 8, 2), (100, 10, 5), (200, 15, 3)]
        );
        assert_eq!(place(&ext, 15, 20), vec![(200, 15, 20)]);
        assert_eq!(place(&[(0, 7)], 0, 0), vec![]);
    }
}
