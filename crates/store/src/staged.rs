//! Objects written a piece at a time and published whole, for stores that keep objects as local
//! files.
//!
//! A backup fills each pack blob by blob. Assembled in memory, every open, queued or uploading
//! pack holds its 16 MiB; on a local disk the pack can go straight to its file instead, so that
//! memory holds none of them. A [`StagedObject`] is that file before it has a name: on Linux an
//! unnamed file (`O_TMPFILE`) in the directory it will be published in, which the kernel removes
//! by itself if the process dies before publishing; elsewhere, or on a filesystem without
//! unnamed files, a temporary `.tmp-<random>` file that listings ignore and that is removed when
//! the object is dropped unpublished.
//!
//! Publishing is as crash-safe as [`crate::Store::put`]: the file is fsynced, given its final
//! name, and the directory fsynced; a reader sees the whole object or none.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// An object being written a piece at a time; see the module documentation.
#[derive(Debug)]
pub struct StagedObject {
    file: File,
    /// Where it is staged, for messages: the store's location and the prefix.
    location: String,
    prefix: String,
    /// Its temporary name, when the filesystem has no unnamed files; removed on drop unless
    /// published.
    named: Option<PathBuf>,
    len: u64,
}

impl StagedObject {
    /// A new empty object staged in `dir` (which must exist), below `prefix` of the store at
    /// `location` (for messages).
    pub(crate) fn create(dir: &Path, location: &str, prefix: &str) -> io::Result<Self> {
        // An unnamed file is named later through /proc/self/fd: without /proc (a bare
        // container), a named temporary file instead.
        if !proc_fd_available() {
            return Self::create_named(dir, location, prefix);
        }
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
        {
            Ok(file) => {
                return Ok(StagedObject {
                    file,
                    location: location.to_owned(),
                    prefix: prefix.to_owned(),
                    named: None,
                    len: 0,
                });
            }
            // No unnamed files here (an old kernel, a filesystem without them): a named one.
            Err(e) if !unnamed_files_unsupported(&e) => return Err(e),
            Err(_) => {}
        }
        Self::create_named(dir, location, prefix)
    }

    /// A new empty object under a temporary name in `dir`.
    fn create_named(dir: &Path, location: &str, prefix: &str) -> io::Result<Self> {
        let path = dir.join(format!("{}{}", crate::fs::TEMP_PREFIX, random_suffix()?));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(StagedObject {
            file,
            location: location.to_owned(),
            prefix: prefix.to_owned(),
            named: Some(path),
            len: 0,
        })
    }

    /// Appends `data` (a blocking write).
    pub fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(data).map_err(|e| {
            StoreError::from_io(&e, "put", &self.prefix, &self.location)
                .with_detail(format!("writing a new object below it: {e}"))
        })?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Reads back written bytes from `offset` into `buf`, as many as there are up to its length;
    /// returns how many.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError> {
        use std::os::unix::fs::FileExt;
        let want = usize::try_from(self.len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.file
            .read_exact_at(&mut buf[..want], offset)
            .map_err(|e| {
                StoreError::from_io(&e, "get", &self.prefix, &self.location)
                    .with_detail(format!("reading back a new object below it: {e}"))
            })?;
        Ok(want)
    }

    /// The error for an object that reads back other bytes than were written to it (a caller
    /// that checksums what it wrote found a mismatch), naming the store and the prefix.
    pub fn read_back_mismatch(&self) -> StoreError {
        StoreError::new(
            crate::StoreErrorKind::Other,
            "get",
            self.prefix.as_str(),
            self.location.as_str(),
        )
        .with_detail(format!(
            "a new object of {} bytes below it read back other bytes than were written to it: \
             the disk or the filesystem altered it",
            self.len
        ))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the object durable and gives it the name `path` (on the filesystem it was staged
    /// on, in a directory that exists), replacing an object of that name; then fsyncs the
    /// directory of `path`.
    pub(crate) fn publish(mut self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.file.sync_all()?;
        match self.named.take() {
            Some(tmp) => {
                if let Err(e) = fs::rename(&tmp, path) {
                    self.named = Some(tmp);
                    return Err(e);
                }
            }
            None => self.link_unnamed(dir, path)?,
        }
        File::open(dir)?.sync_all()
    }

    /// Gives the unnamed file the name `path`: linked under a temporary name first when `path`
    /// exists, then renamed over it (link(2) never replaces).
    fn link_unnamed(&mut self, dir: &Path, path: &Path) -> io::Result<()> {
        match self.link_to(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let tmp = dir.join(format!("{}{}", crate::fs::TEMP_PREFIX, random_suffix()?));
                self.link_to(&tmp)?;
                fs::rename(&tmp, path).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            }
            other => other,
        }
    }

    /// `linkat` of the open file through `/proc/self/fd`, which needs no privilege (unlike
    /// `AT_EMPTY_PATH`).
    fn link_to(&self, path: &Path) -> io::Result<()> {
        let proc_path = format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            self.file.as_fd().as_raw_fd()
        });
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(io::Error::from)
    }
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if let Some(tmp) = self.named.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Whether `/proc/self/fd` can name open files (checked once).
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// True for the errors of a kernel or filesystem without `O_TMPFILE`.
fn unnamed_files_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOSYS)
    )
}

fn random_suffix() -> io::Result<String> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(rnd))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_published_object_holds_what_was_appended_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StagedObject::create(dir.path(), "t", "data").unwrap();
        s.append(b"hello ").unwrap();
        s.append(b"world").unwrap();
        assert_eq!(s.len(), 11);
        // Nothing visible before publishing (an unnamed file on Linux filesystems with them).
        if s.named.is_none() {
            assert!(entries(dir.path()).is_empty());
        }
        s.publish(&dir.path().join("obj")).unwrap();
        assert_eq!(entries(dir.path()), vec!["obj".to_string()]);
        assert_eq!(fs::read(dir.path().join("obj")).unwrap(), b"hello world");
    }

    #[test]
    fn publishing_replaces_an_object_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("obj"), b"old").unwrap();
        let mut s = StagedObject::create(dir.path(), "t", "data").unwrap();
        s.append(b"new").unwrap();
        s.publish(&dir.path().join("obj")).unwrap();
        assert_eq!(entries(dir.path()), vec!["obj".to_string()]);
        assert_eq!(fs::read(dir.path().join("obj")).unwrap(), b"new");
    }

    #[test]
    fn an_object_is_published_into_another_directory_of_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ab")).unwrap();
        let mut s = StagedObject::create(dir.path(), "t", "data").unwrap();
        s.append(b"pack").unwrap();
        s.publish(&dir.path().join("ab").join("abcd")).unwrap();
        assert_eq!(entries(dir.path()), vec!["ab".to_string()]);
        assert_eq!(fs::read(dir.path().join("ab/abcd")).unwrap(), b"pack");
    }

    #[test]
    fn written_bytes_read_back_unnamed_or_named() {
        let dir = tempfile::tempdir().unwrap();
        for mut s in [
            StagedObject::create(dir.path(), "t", "data").unwrap(),
            StagedObject::create_named(dir.path(), "t", "data").unwrap(),
        ] {
            s.append(b"0123456789").unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(s.read_at(&mut buf, 0).unwrap(), 4);
            assert_eq!(&buf, b"0123");
            // At the end, only what was written.
            assert_eq!(s.read_at(&mut buf, 8).unwrap(), 2);
            assert_eq!(&buf[..2], b"89");
            assert_eq!(s.read_at(&mut buf, 10).unwrap(), 0);
            assert_eq!(s.read_at(&mut buf, 99).unwrap(), 0);
        }
    }

    #[test]
    fn an_object_dropped_unpublished_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StagedObject::create(dir.path(), "t", "data").unwrap();
        s.append(&[7u8; 100_000]).unwrap();
        drop(s);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn without_unnamed_files_a_temporary_name_is_published_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ab")).unwrap();
        let mut s = StagedObject::create_named(dir.path(), "t", "data").unwrap();
        s.append(b"pack").unwrap();
        let names = entries(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().any(|n| n.starts_with(crate::fs::TEMP_PREFIX)));
        s.publish(&dir.path().join("ab").join("abcd")).unwrap();
        assert_eq!(entries(dir.path()), vec!["ab".to_string()]);
        assert_eq!(fs::read(dir.path().join("ab/abcd")).unwrap(), b"pack");

        let mut s = StagedObject::create_named(dir.path(), "t", "data").unwrap();
        s.append(b"half a pack").unwrap();
        drop(s);
        assert_eq!(entries(dir.path()), vec!["ab".to_string()]);
    }
}
