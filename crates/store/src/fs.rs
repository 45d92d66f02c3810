//! The local-directory store: the embedded default.
//!
//! Each object is a file under the root. `put` writes a temporary file `.tmp-<random>` in the
//! object's directory, fsyncs it, renames it over the final name and fsyncs the directory, so a
//! crash leaves either the old state or the complete object (plus, at worst, a temporary file
//! that listings ignore). New directories are fsynced into their parents. Packs are written to
//! disk as they fill instead ([`crate::StagedObject`]): an unnamed file in `data/`, given its
//! name when complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, StagedObject, Store, StoreError, StoreErrorKind, check_name};

/// Prefix of temporary files; listings skip them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    location: String,
}

impl FsStore {
    /// A store rooted at `root` (which need not exist yet: `put` creates directories). A
    /// relative root is taken relative to the current directory now.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let given = root.into();
        let location = given.display().to_string();
        let root = std::path::absolute(&given).unwrap_or(given);
        FsStore {
            inner: Arc::new(Inner { root, location }),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn blocking<T, F>(&self, op: &'static str, name: &str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        if !check_name(name) {
            return Err(StoreError::new(
                StoreErrorKind::InvalidInput,
                op,
                name,
                &self.inner.location,
            )
            .with_detail("invalid object name"));
        }
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let location = self.inner.location.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                StoreError::new(StoreErrorKind::Other, op, name, location)
                    .with_detail(format!("worker failed: {e}"))
            })?
    }
}

impl Inner {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn io(&self, e: &io::Error, op: &'static str, name: &str) -> StoreError {
        StoreError::from_io(e, op, name, &self.location)
    }

    /// Creates `dir` and any missing parents up to the root, fsyncing each new entry into its
    /// parent.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent()
            && parent != dir
        {
            self.ensure_dir(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent() {
                    sync_dir(parent)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write(
        &self,
        op: &'static str,
        name: &str,
        data: &[u8],
        replace: bool,
    ) -> Result<(), StoreError> {
        let path = self.path(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir).map_err(|e| self.io(&e, op, name))?;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| {
            StoreError::new(StoreErrorKind::Other, op, name, &self.location)
                .with_detail(e.to_string())
        })?;
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(rnd)));
        let result = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            if replace {
                fs::rename(&tmp, &path)?;
            } else {
                // link(2) refuses to replace an existing name: atomic create-if-absent.
                fs::hard_link(&tmp, &path)?;
                fs::remove_file(&tmp)?;
            }
            sync_dir(&dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&e, op, name));
        }
        Ok(())
    }

    fn list_dir(&self, rel: &str, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
        let entries = match fs::read_dir(self.path(rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(fname) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if fname.starts_with('.') {
                continue;
            }
            let child = format!("{rel}/{fname}");
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.list_dir(&child, out)?;
            } else if ft.is_file() {
                let md = entry.metadata()?;
                out.push(ObjectInfo {
                    name: child,
                    size: md.len(),
                    modified: md.modified().ok(),
                });
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl Store for FsStore {
    fn location(&self) -> &str {
        &self.inner.location
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.blocking("put", name, move |s| s.write("put", &n, &data, true))
            .await
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.blocking("put", name, move |s| s.write("put", &n, &data, false))
            .await
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let n = name.to_owned();
        self.blocking("get", name, move |s| {
            fs::read(s.path(&n))
                .map(Bytes::from)
                .map_err(|e| s.io(&e, "get", &n))
        })
        .await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let n = name.to_owned();
        self.blocking("get", name, move |s| {
            let f = File::open(s.path(&n)).map_err(|e| s.io(&e, "get", &n))?;
            let len = f.metadata().map_err(|e| s.io(&e, "get", &n))?.len();
            if range.start > range.end || range.end > len {
                return Err(
                    StoreError::new(StoreErrorKind::InvalidInput, "get", &n, &s.location)
                        .with_detail(format!("range {range:?} outside object of {len} bytes")),
                );
            }
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            f.read_exact_at(&mut buf, range.start)
                .map_err(|e| s.io(&e, "get", &n))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        let n = name.to_owned();
        self.blocking("stat", name, move |s| {
            let md = fs::metadata(s.path(&n)).map_err(|e| s.io(&e, "stat", &n))?;
            if !md.is_file() {
                return Err(StoreError::new(
                    StoreErrorKind::NotFound,
                    "stat",
                    &n,
                    &s.location,
                ));
            }
            Ok(ObjectInfo {
                name: n.clone(),
                size: md.len(),
                modified: md.modified().ok(),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let p = prefix.to_owned();
        self.blocking("list", prefix, move |s| {
            let mut out = Vec::new();
            s.list_dir(&p, &mut out).map_err(|e| s.io(&e, "list", &p))?;
            Ok(out)
        })
        .await
    }

    fn stage(&self, prefix: &str) -> Result<Option<StagedObject>, StoreError> {
        let s = &self.inner;
        if !check_name(prefix) {
            return Err(
                StoreError::new(StoreErrorKind::InvalidInput, "put", prefix, &s.location)
                    .with_detail("invalid object name"),
            );
        }
        let dir = s.path(prefix);
        s.ensure_dir(&dir).map_err(|e| s.io(&e, "put", prefix))?;
        StagedObject::create(&dir, &s.location, prefix)
            .map(Some)
            .map_err(|e| s.io(&e, "put", prefix))
    }

    async fn publish(&self, name: &str, staged: StagedObject) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.blocking("put", name, move |s| {
            let path = s.path(&n);
            let dir = path.parent().unwrap_or(&s.root).to_path_buf();
            s.ensure_dir(&dir).map_err(|e| s.io(&e, "put", &n))?;
            staged.publish(&path).map_err(|e| s.io(&e, "put", &n))
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.blocking("delete", name, move |s| {
            let path = s.path(&n);
            fs::remove_file(&path).map_err(|e| s.io(&e, "delete", &n))?;
            sync_dir(path.parent().unwrap_or(&s.root)).map_err(|e| s.io(&e, "delete", &n))
        })
        .await
    }
}
