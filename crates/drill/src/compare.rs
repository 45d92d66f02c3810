//! Comparing one restored entry with its node: regular files byte for byte (every data blob
//! hashed again, zeros outside the extents of sparse files), symlinks by target, devices,
//! FIFOs and sockets by type and device number.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use zaibei_format::{Node, NodeKind, PackKind};
use zaibei_repo::IndexedRepository;

/// Bytes of blobs hashed in one call (several at once are faster in the `gm` suite).
const HASH_BATCH: u64 = 16 << 20;

pub(crate) fn errno_text(what: &str, e: rustix::io::Errno) -> String {
    format!("{what}: {}", std::io::Error::from(e))
}

/// Adds `bits` to the owner's permissions of the entry `name` (a restored read-only file or
/// directory, when the drill does not run as root) so that it can be read. Only regular files
/// and directories owned by this process's user are changed; returns whether it was.
pub(crate) fn grant_access(dir: &OwnedFd, name: &[u8], bits: u32) -> bool {
    let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    let kind = FileType::from_raw_mode(st.st_mode);
    if !matches!(kind, FileType::RegularFile | FileType::Directory)
        || st.st_uid != rustix::process::geteuid().as_raw()
    {
        return false;
    }
    let mode = Mode::from_raw_mode((st.st_mode & 0o7777) | bits);
    rustix::fs::chmodat(dir, name, mode, AtFlags::empty()).is_ok()
}

/// Checks a symlink, device, FIFO or socket.
pub(crate) fn check_other(dir: BorrowedFd<'_>, node: &Node) -> Result<(), String> {
    let name = node.name.as_slice();
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| errno_text("restored entry missing", e))?;
    let actual = FileType::from_raw_mode(st.st_mode);
    let expected = match node.kind {
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::CharDevice => FileType::CharacterDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
        NodeKind::File | NodeKind::Dir => return Err("not a special entry".into()),
    };
    if actual != expected {
        return Err(format!(
            "restored as {actual:?}, the snapshot has a {}",
            node.kind.name()
        ));
    }
    match node.kind {
        NodeKind::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())
                .map_err(|e| errno_text("reading the restored symlink", e))?;
            if Some(target.as_bytes()) != node.target.as_deref() {
                return Err("the restored symlink points elsewhere than the snapshot's".into());
            }
        }
        NodeKind::CharDevice | NodeKind::BlockDevice if st.st_rdev != node.rdev => {
            return Err(format!(
                "device number {:#x}, the snapshot has {:#x}",
                st.st_rdev, node.rdev
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Opens a restored file for reading, making it readable first when the restore left it
/// without read permission for its owner. Returns the file and the mode to put back.
fn open_file(dir: &OwnedFd, name: &[u8]) -> Result<(OwnedFd, Option<Mode>), String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok((fd, None)),
        Err(rustix::io::Errno::ACCESS) => {
            let before = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| errno_text("reading the restored file", e))?;
            if !grant_access(dir, name, 0o400) {
                return Err("the restored file cannot be read".into());
            }
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
                .map_err(|e| errno_text("opening the restored file", e))?;
            Ok((fd, Some(Mode::from_raw_mode(before.st_mode & 0o7777))))
        }
        Err(e) => Err(errno_text("restored file missing or unreadable", e)),
    }
}

/// Verifies one file; returns its size.
pub(crate) fn verify_file(
    repo: &IndexedRepository,
    content: &zaibei_format::ContentKeys,
    dir: &OwnedFd,
    node: &Node,
) -> Result<u64, String> {
    let (fd, restore_mode) = open_file(dir, &node.name)?;
    let result = compare(repo, content, fd.as_fd(), node);
    if let Some(mode) = restore_mode {
        let _ = rustix::fs::fchmod(&fd, mode);
    }
    result.map(|()| node.size)
}

/// Compares an open file with its node: type, size, every blob, and zeros outside the
/// extents.
fn compare(
    repo: &IndexedRepository,
    content: &zaibei_format::ContentKeys,
    fd: BorrowedFd<'_>,
    node: &Node,
) -> Result<(), String> {
    let st = rustix::fs::fstat(fd).map_err(|e| errno_text("reading the restored file", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err("the restored entry is not a regular file".into());
    }
    let size = zaibei_archive::fsmeta::size_of(&st);
    if size != node.size {
        return Err(format!(
            "restored size {size} bytes, the snapshot has {}",
            node.size
        ));
    }
    let dense = [(0, node.size)];
    let extents: &[(u64, u64)] = node.extents.as_deref().unwrap_or(&dense);
    let mut lens = Vec::with_capacity(node.content.len());
    for id in &node.content {
        let loc = repo
            .locate(PackKind::Data, id)
            .map_err(|e| format!("{e} (the file's data is missing from the index)"))?;
        lens.push(loc.raw_length);
    }
    let stream: u64 = lens.iter().sum();
    let covered: u64 = extents.iter().map(|e| e.1).sum();
    if stream != covered && node.size > 0 {
        return Err(format!(
            "the snapshot's blobs hold {stream} bytes for {covered} bytes of data extents"
        ));
    }
    // Read and hash the blobs in batches.
    let mut start = 0usize;
    let mut offset = 0u64;
    while start < lens.len() {
        let mut end = start;
        let mut batch_bytes = 0u64;
        while end < lens.len() && (end == start || batch_bytes + lens[end] <= HASH_BATCH) {
            batch_bytes += lens[end];
            end += 1;
        }
        let mut bufs = Vec::with_capacity(end - start);
        for &len in &lens[start..end] {
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| "blob too large")?];
            read_stream(fd, extents, offset, &mut buf)?;
            offset += len;
            bufs.push(buf);
        }
        let slices: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        let ids = content.blob_ids(&slices);
        for (i, (actual, expected)) in ids.iter().zip(&node.content[start..end]).enumerate() {
            if actual != expected {
                return Err(format!(
                    "contents differ from the snapshot (data blob {} of {}, {})",
                    start + i + 1,
                    lens.len(),
                    expected.short()
                ));
            }
        }
        start = end;
    }
    if node.extents.is_some() {
        zeros_outside(fd, extents, node.size)?;
    }
    Ok(())
}

/// Reads `buf.len()` bytes of the content stream from `stream_offset` (the stream is the data
/// extents concatenated).
fn read_stream(
    fd: BorrowedFd<'_>,
    extents: &[(u64, u64)],
    stream_offset: u64,
    buf: &mut [u8],
) -> Result<(), String> {
    let end = stream_offset + buf.len() as u64;
    let mut pos = 0u64;
    for &(file_off, len) in extents {
        let (s, e) = (pos.max(stream_offset), (pos + len).min(end));
        if s < e {
            let at = file_off + (s - pos);
            let into = &mut buf[(s - stream_offset) as usize..(e - stream_offset) as usize];
            read_exact_at(fd, into, at)?;
        }
        pos += len;
        if pos >= end {
            break;
        }
    }
    Ok(())
}

fn read_exact_at(fd: BorrowedFd<'_>, mut buf: &mut [u8], mut at: u64) -> Result<(), String> {
    while !buf.is_empty() {
        let n = rustix::io::pread(fd, &mut *buf, at)
            .map_err(|e| errno_text("reading the restored file", e))?;
        if n == 0 {
            return Err("the restored file ends early".into());
        }
        buf = &mut buf[n..];
        at += n as u64;
    }
    Ok(())
}

/// Checks that whatever the filesystem holds as data outside the snapshot's extents reads as
/// zeros (holes always do).
fn zeros_outside(fd: BorrowedFd<'_>, extents: &[(u64, u64)], size: u64) -> Result<(), String> {
    let allocated = zaibei_archive::fsmeta::data_extents(fd, size)
        .map_err(|e| format!("reading the restored file's holes: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    for (a_off, a_len) in allocated {
        let mut pos = a_off;
        let a_end = a_off + a_len;
        while pos < a_end {
            // The next byte at or after `pos` that lies in no snapshot extent.
            match extents.iter().find(|(o, l)| pos >= *o && pos < o + l) {
                Some((o, l)) => pos = o + l,
                None => {
                    let next = extents
                        .iter()
                        .map(|(o, _)| *o)
                        .filter(|o| *o > pos)
                        .min()
                        .unwrap_or(u64::MAX)
                        .min(a_end);
                    let n = (next - pos).min(buf.len() as u64) as usize;
                    read_exact_at(fd, &mut buf[..n], pos)?;
                    if buf[..n].iter().any(|&b| b != 0) {
                        return Err(format!(
                            "data where the snapshot has a hole (near byte {pos})"
                        ));
                    }
                    pos += n as u64;
                }
            }
        }
    }
    Ok(())
}
