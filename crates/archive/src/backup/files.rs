//! File workers: read a changed file, find its data extents (holes are not read), chunk,
//! hash, and hand each chunk to the saver.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use crossbeam_channel::{Receiver, Sender};
use zaibei_format::{Id, Node, PackKind};

use super::Context;
use crate::ArchiveError;
use crate::fsmeta;
use crate::progress::Counters;

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
    /// Read and stored: the complete node.
    Done(Box<Node>),
    /// Could not be read; it is left out of the snapshot.
    Skipped,
    /// The repository failed: the backup must stop.
    Fatal(ArchiveError),
}

pub(crate) fn run_worker(ctx: &Context<'_>, jobs: Receiver<FileJob>) {
    // The chunker's read buffer, reused for every file this worker reads.
    let mut buf = Vec::new();
    for job in jobs {
        let outcome = match read_file(ctx, &job, &mut buf) {
            Ok(node) => {
                Counters::add(&ctx.counters.files, 1);
                Counters::add(&ctx.counters.bytes_seen, node.size);
                FileOutcome::Done(Box::new(node))
            }
            Err(ReadError::Source(e)) => {
                ctx.skipped.record(&job.path, format!("cannot read: {e}"));
                Counters::add(&ctx.counters.errors, 1);
                FileOutcome::Skipped
            }
            Err(ReadError::Repo(e)) => FileOutcome::Fatal(e),
        };
        // The assembler may be gone after a fatal error elsewhere: nothing left to tell.
        let _ = job.reply.send(outcome);
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

fn read_file(ctx: &Context<'_>, job: &FileJob, buf: &mut Vec<u8>) -> Result<Node, ReadError> {
    let fd = job.fd.as_fd();
    let st = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    // The open file is the truth: it may differ from what lstat saw a moment earlier.
    let mut node = fsmeta::node_from_stat(job.node.name.clone(), &st)
        .ok_or_else(|| io::Error::other("no longer a regular file"))?;
    node.user = job.node.user.clone();
    node.group = job.node.group.clone();
    node.xattrs = fsmeta::xattrs_of_fd(fd)?;
    let extents = fsmeta::data_extents(fd, node.size)?;
    let dense = extents.len() == 1 && extents[0] == (0, node.size);
    let expected: u64 = extents.iter().map(|&(_, l)| l).sum();
    let reader = ExtentReader {
        fd,
        extents: &extents,
        index: 0,
        offset: 0,
    };
    let mut stream = ctx.chunker.stream(reader, buf);
    let mut content = Vec::new();
    let mut stored = 0u64;
    while let Some(chunk) = stream.next_chunk()? {
        let id: Id = ctx
            .saver
            .blob_id(chunk)
            .map_err(|e| ReadError::Repo(e.into()))?;
        ctx.saver
            .save_blob_queued(PackKind::Data, id, chunk)
            .map_err(|e| ReadError::Repo(e.into()))?;
        Counters::add(&ctx.counters.bytes, chunk.len() as u64);
        stored += chunk.len() as u64;
        content.push(id);
    }
    if stored != expected {
        return Err(ReadError::Source(io::Error::other(format!(
            "file shrank while being read ({stored} of {expected} bytes)"
        ))));
    }
    let after = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    if (after.st_mtime, after.st_mtime_nsec, after.st_size)
        != (st.st_mtime, st.st_mtime_nsec, st.st_size)
    {
        tracing::warn!(
            "{} changed while being read; the snapshot holds the bytes read",
            String::from_utf8_lossy(&job.path)
        );
    }
    node.content = content;
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
