//! Applying a node's metadata to a restored entry: owner, then mode (chown clears setuid),
//! then extended attributes and ACLs (after chown, which clears file capabilities), then times.
//! Owners are restored by number; as non-root, ownership that cannot be given away is left as
//! it is. Nothing here follows a symlink.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use zaibei_format::{Node, NodeKind, Timestamp};

use crate::fsmeta;

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs as _,
        tv_nsec: t.nanos as _,
    }
}

fn times(node: &Node) -> Timestamps {
    Timestamps {
        last_access: timespec(node.atime),
        last_modification: timespec(node.mtime),
    }
}

fn owner_error_is_fatal(e: rustix::io::Errno) -> bool {
    // Without privileges files cannot be given away; that is expected, not an error.
    e != rustix::io::Errno::PERM || rustix::process::geteuid().is_root()
}

fn with_context(what: &str, e: impl Into<io::Error>) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Extended attributes the restore leaves alone when they are present but not in the snapshot.
fn keep_foreign(name: &[u8]) -> bool {
    name == b"security.selinux"
}

fn sync_xattrs(
    node: &Node,
    list_size: impl Fn() -> rustix::io::Result<usize>,
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    set: impl Fn(&[u8], &[u8]) -> rustix::io::Result<()>,
    remove: impl Fn(&[u8]) -> rustix::io::Result<()>,
) -> io::Result<()> {
    for (name, value) in &node.xattrs {
        set(name, value).map_err(|e| {
            with_context(
                &format!(
                    "setting extended attribute {}",
                    String::from_utf8_lossy(name)
                ),
                e,
            )
        })?;
    }
    let size = match list_size() {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => return Ok(()),
        Err(e) => return Err(with_context("listing extended attributes", e)),
    };
    if size == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; size];
    let n = list(&mut buf).map_err(|e| with_context("listing extended attributes", e))?;
    buf.truncate(n);
    for name in buf.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !keep_foreign(name)
            && node
                .xattrs
                .binary_search_by(|(k, _)| k.as_slice().cmp(name))
                .is_err()
        {
            match remove(name) {
                Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                Err(e) => {
                    return Err(with_context(
                        &format!(
                            "removing extended attribute {}",
                            String::from_utf8_lossy(name)
                        ),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Owner and mode bits a file had when the restore created it, read from the new file: most
/// restored files are created with the owner and mode they must have, and then neither is set
/// again (each would be one more change to the inode for the filesystem to journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AsCreated {
    uid: u32,
    gid: u32,
    /// Permission, setuid, setgid and sticky bits.
    mode: u32,
}

impl AsCreated {
    /// Nothing known: owner and mode are set as for a file that existed.
    pub(crate) const UNKNOWN: AsCreated = AsCreated {
        uid: u32::MAX,
        gid: u32::MAX,
        mode: u32::MAX,
    };

    /// Reads them from the newly created file `fd`.
    pub(crate) fn of(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let st = rustix::fs::fstat(fd)?;
        Ok(AsCreated {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode as u32 & 0o7777,
        })
    }
}

/// Applies metadata to an open regular file or directory. `as_created`, for a file the restore
/// created, says what is right already and need not be set again.
pub(crate) fn apply_to_fd(
    fd: BorrowedFd<'_>,
    node: &Node,
    as_created: Option<AsCreated>,
) -> io::Result<()> {
    let owner_right = as_created.is_some_and(|c| c.uid == node.uid && c.gid == node.gid);
    if !owner_right
        && let Err(e) = rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
        )
        && owner_error_is_fatal(e)
    {
        return Err(with_context("changing owner", e));
    }
    // Changing the owner may clear setuid and setgid bits, but a file is created without them.
    let mode_right = as_created.is_some_and(|c| c.mode == node.mode & 0o7777);
    if !mode_right {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(node.mode as _))
            .map_err(|e| with_context("changing mode", e))?;
    }
    sync_xattrs(
        node,
        || rustix::fs::flistxattr_query(fd),
        |b| rustix::fs::flistxattr(fd, b),
        |n, v| rustix::fs::fsetxattr(fd, n, v, XattrFlags::empty()),
        |n| rustix::fs::fremovexattr(fd, n),
    )?;
    rustix::fs::futimens(fd, &times(node)).map_err(|e| with_context("setting times", e))
}

/// Applies metadata to the symlink, FIFO, device or socket `name` in `dir`, never following it.
pub(crate) fn apply_at(dir: BorrowedFd<'_>, name: &[u8], node: &Node) -> io::Result<()> {
    if let Err(e) = rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    ) && owner_error_is_fatal(e)
    {
        return Err(with_context("changing owner", e));
    }
    if node.kind != NodeKind::Symlink {
        // Linux has no chmod that refuses symlinks everywhere: pin the inode with O_PATH,
        // check it is what we created, and chmod through /proc/self/fd.
        let pinned = fsmeta::open_beneath(dir, name, OFlags::PATH, Mode::empty())?;
        let st = rustix::fs::fstat(&pinned)?;
        if fsmeta::stat_kind(&st) != Some(node.kind) {
            return Err(io::Error::other("entry was replaced while being restored"));
        }
        rustix::fs::chmod(
            fsmeta::proc_fd_path(pinned.as_fd()),
            Mode::from_raw_mode(node.mode as _),
        )
        .map_err(|e| with_context("changing mode", e))?;
    }
    let path = fsmeta::proc_path(dir, name);
    sync_xattrs(
        node,
        || rustix::fs::llistxattr_query(&path),
        |b| rustix::fs::llistxattr(&path, b),
        |n, v| rustix::fs::lsetxattr(&path, n, v, XattrFlags::empty()),
        |n| rustix::fs::lremovexattr(&path, n),
    )?;
    rustix::fs::utimensat(dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| with_context("setting times", e))
}
