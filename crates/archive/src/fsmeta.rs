//! Reading and writing the metadata of filesystem entries through directory handles.

// `struct stat` field types differ between architectures; the casts below are exact on each.
#![allow(clippy::unnecessary_cast)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, SeekFrom, Stat};
use zaibei_format::{Node, NodeKind, Timestamp};

/// The entry type of a `st_mode`, or `None` for types zaibei does not know.
pub fn kind_of(mode: u32) -> Option<NodeKind> {
    Some(match FileType::from_raw_mode(mode as _) {
        FileType::RegularFile => NodeKind::File,
        FileType::Directory => NodeKind::Dir,
        FileType::Symlink => NodeKind::Symlink,
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharacterDevice => NodeKind::CharDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket => NodeKind::Socket,
        FileType::Unknown => return None,
    })
}

/// The `st_mode` type bits of a node kind.
pub fn file_type_of(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::CharDevice => FileType::CharacterDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// What a node records of an entry's `lstat`: the rest of `struct stat` left out, so that
/// many can be held (the backup's scout holds them for whole directories): 104 bytes against
/// the 144 of `struct stat` on x86-64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Inode number.
    pub inode: u64,
    /// Device holding the entry.
    pub device: u64,
    /// Hard links.
    pub links: u64,
    /// Size in bytes (`st_size`).
    pub size: u64,
    /// Device number of a device node.
    pub rdev: u64,
}

impl Meta {
    /// The fields of `st` a node records.
    pub fn of(st: &Stat) -> Meta {
        Meta {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            mtime: ts(st.st_mtime as i64, st.st_mtime_nsec as u64),
            atime: ts(st.st_atime as i64, st.st_atime_nsec as u64),
            ctime: ts(st.st_ctime as i64, st.st_ctime_nsec as u64),
            inode: st.st_ino as u64,
            device: st.st_dev as u64,
            links: st.st_nlink as u64,
            size: st.st_size as u64,
            rdev: st.st_rdev as u64,
        }
    }

    /// The entry type, or `None` for types zaibei does not know.
    pub fn kind(&self) -> Option<NodeKind> {
        kind_of(self.mode)
    }

    /// `(device, inode)`.
    pub fn identity(&self) -> (u64, u64) {
        (self.device, self.inode)
    }
}

/// Fills a node from `stat` (everything but contents, subtree, target and xattrs).
pub fn node_from_stat(name: Vec<u8>, st: &Stat) -> Option<Node> {
    node_from_meta(name, &Meta::of(st))
}

/// Fills a node from what `lstat` gave (everything but contents, subtree, target and xattrs).
pub fn node_from_meta(name: Vec<u8>, m: &Meta) -> Option<Node> {
    let kind = m.kind()?;
    let mut n = Node::new(name, kind);
    n.mode = m.mode & 0o7777;
    n.uid = m.uid;
    n.gid = m.gid;
    n.mtime = m.mtime;
    n.atime = m.atime;
    n.ctime = m.ctime;
    n.inode = m.inode;
    n.device = m.device;
    n.links = m.links;
    n.size = if kind == NodeKind::Dir { 0 } else { m.size };
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        n.rdev = m.rdev;
    }
    Some(n)
}

fn ts(secs: i64, nanos: u64) -> Timestamp {
    Timestamp::new(secs, nanos.min(999_999_999) as u32).unwrap_or_default()
}

/// `(device, inode)` of a stat.
pub fn identity(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// The entry type of a stat.
pub fn stat_kind(st: &Stat) -> Option<NodeKind> {
    kind_of(st.st_mode as u32)
}

/// The device number of a stat (`st_rdev`).
pub fn stat_rdev(st: &Stat) -> u64 {
    st.st_rdev as u64
}

/// Size of a stat in bytes.
pub fn size_of(st: &Stat) -> u64 {
    st.st_size as u64
}

/// The path `/proc/self/fd/<dirfd>/<name>`: names an entry of an open directory, for the calls
/// that have no `*at` form (extended attributes of non-regular files). Used only with
/// non-following (`l*`) calls, so the final component is never followed.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// `/proc/self/fd/<fd>`: the inode an `O_PATH` handle refers to.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn is_unsupported(e: &rustix::io::Errno) -> bool {
    *e == rustix::io::Errno::OPNOTSUPP || *e == rustix::io::Errno::NODATA
}

/// The operations [`read_xattrs`] needs: size queries and reads of the name list and of values.
struct XattrOps<LQ, L, GQ, G> {
    list_size: LQ,
    list: L,
    value_size: GQ,
    get: G,
}

/// Reads every extended attribute (retrying when one grows between size query and read).
/// Sorted by name.
fn read_xattrs<LQ, L, GQ, G>(ops: XattrOps<LQ, L, GQ, G>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>
where
    LQ: Fn() -> rustix::io::Result<usize>,
    L: Fn(&mut [u8]) -> rustix::io::Result<usize>,
    GQ: Fn(&[u8]) -> rustix::io::Result<usize>,
    G: Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
{
    let XattrOps {
        list_size,
        list,
        value_size,
        get,
    } = ops;
    let names = loop {
        let size = match list_size() {
            Ok(n) => n,
            Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match list(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = loop {
            let size = match value_size(name) {
                Ok(n) => n,
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; size];
            match get(name, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(rustix::io::Errno::RANGE) => continue,
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(v) = value {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Extended attributes of an open file or directory.
pub fn xattrs_of_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(XattrOps {
        list_size: || rustix::fs::flistxattr_query(fd),
        list: |buf: &mut [u8]| rustix::fs::flistxattr(fd, buf),
        value_size: |name: &[u8]| rustix::fs::fgetxattr_query(fd, name),
        get: |name: &[u8], buf: &mut [u8]| rustix::fs::fgetxattr(fd, name, buf),
    })
}

/// Extended attributes of the entry `name` of the directory `dir`, without following it.
pub fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = proc_path(dir, name);
    read_xattrs(XattrOps {
        list_size: || rustix::fs::llistxattr_query(&path),
        list: |buf: &mut [u8]| rustix::fs::llistxattr(&path, buf),
        value_size: |name: &[u8]| rustix::fs::lgetxattr_query(&path, name),
        get: |name: &[u8], buf: &mut [u8]| rustix::fs::lgetxattr(&path, name, buf),
    })
}

/// Opens the single component `name` below `dir` without ever following a symlink and without
/// leaving `dir`: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or `openat` with
/// `O_NOFOLLOW` where `openat2` is unavailable. `name` must be one component (no `/`).
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    if name.is_empty() || name.contains(&b'/') || name == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single path component",
        ));
    }
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        dir,
        name,
        flags,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
            Ok(rustix::fs::openat(dir, name, flags, mode)?)
        }
        other => Ok(other?),
    }
}

/// `lstat` of an entry of an open directory.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Reads a symlink's target.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// Names of the entries of a directory (without `.` and `..`), sorted bytewise.
pub fn list_dir(fd: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut dir = rustix::fs::Dir::read_from(fd.as_fd())?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// The data extents of the open file whose `fstat` is `st`: one extent covering the file
/// without asking when the blocks allocated to it hold its size (no room for a hole), else
/// [`data_extents`]. Saves the two `lseek` calls per file that almost every file would make
/// for nothing. A file with blocks preallocated past its end as well as a hole inside may be
/// taken as dense: its hole is then read, and stored, as zeros.
pub fn data_extents_of(
    fd: std::os::fd::BorrowedFd<'_>,
    st: &rustix::fs::Stat,
) -> io::Result<Vec<(u64, u64)>> {
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
    if size > 0 && allocated >= size {
        return Ok(vec![(0, size)]);
    }
    data_extents(fd, size)
}

/// The data extents `(offset, length)` of a file, found with `SEEK_DATA`/`SEEK_HOLE`. A file
/// system without hole reporting gives one extent covering the file.
pub fn data_extents(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) if pos == 0 => return Ok(vec![(0, size)]),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(fd, SeekFrom::Hole(start))
            .map_err(io::Error::from)?
            .min(size);
        if end <= start {
            break;
        }
        out.push((start, end - start));
        pos = end;
    }
    // A file that is one hole has no extents at all.
    Ok(out)
}

/// Caches the names of uids and gids.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    /// The user name of `uid`, if it has one.
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The group name of `gid`, if it has one.
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};
    use std::os::fd::AsFd;

    use super::*;

    type Extents = Vec<(u64, u64)>;

    /// The extents `data_extents_of` gives, and those `data_extents` finds by asking.
    fn extents_both_ways(file: &std::fs::File) -> (Extents, Extents) {
        let st = rustix::fs::fstat(file.as_fd()).unwrap();
        let size = u64::try_from(st.st_size).unwrap();
        (
            data_extents_of(file.as_fd(), &st).unwrap(),
            data_extents(file.as_fd(), size).unwrap(),
        )
    }

    #[test]
    fn a_dense_file_is_one_extent_and_a_sparse_one_is_still_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut dense = std::fs::File::create(dir.path().join("dense")).unwrap();
        dense.write_all(&vec![1u8; 100_000]).unwrap();
        dense.sync_all().unwrap();
        let (quick, asked) = extents_both_ways(&dense);
        assert_eq!(quick, vec![(0, 100_000)]);
        assert_eq!(quick, asked);

        // 8 MiB with 4 KiB of data in the middle: fewer blocks than bytes, so the holes are
        // looked for (and found where the file system keeps them).
        let mut sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        sparse.seek(std::io::SeekFrom::Start(4 << 20)).unwrap();
        sparse.write_all(&[2u8; 4096]).unwrap();
        sparse.sync_all().unwrap();
        let (quick, asked) = extents_both_ways(&sparse);
        assert_eq!(quick, asked);

        let empty = std::fs::File::create(dir.path().join("empty")).unwrap();
        assert_eq!(extents_both_ways(&empty), (vec![], vec![]));
    }
}
