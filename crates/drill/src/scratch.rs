//! Scratch space for a drill: a fresh directory (or an empty one the caller names) that is
//! removed afterwards unless it is to be kept.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::DrillError;

/// A directory a drill restores into.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    /// True when the drill created the directory itself (so removing it removes the
    /// directory too, not only what is in it).
    created: bool,
    /// Missing parent directories created along the way, deepest first: removed too, when
    /// they are empty.
    created_parents: Vec<PathBuf>,
    keep: bool,
    done: bool,
}

impl Scratch {
    /// A fresh directory `zaibei-drill-…` below `parent` (the system's temporary directory
    /// when `None`), readable only by its owner.
    pub fn fresh(parent: Option<&Path>, keep: bool) -> Result<Self, DrillError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!(
                "zaibei-drill-{}-{nanos:09}-{n}",
                std::process::id()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(Scratch {
                        path,
                        created: true,
                        created_parents: Vec::new(),
                        keep,
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(DrillError::io("creating scratch directory", &path, e)),
            }
        }
        Err(DrillError::Internal(format!(
            "cannot find a free name for a scratch directory in {}",
            parent.display()
        )))
    }

    /// The directory `path`, created when missing; refused when it holds anything (a drill
    /// must not mix its restore with other files, and removes what it restored).
    pub fn at(path: &Path, keep: bool) -> Result<Self, DrillError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut entries =
                    fs::read_dir(path).map_err(|e| DrillError::io("reading", path, e))?;
                if entries.next().is_some() {
                    return Err(DrillError::Usage(format!(
                        "the drill target {} is not empty; give an empty or missing directory",
                        path.display()
                    )));
                }
                Ok(Scratch {
                    path: path.to_path_buf(),
                    created: false,
                    created_parents: Vec::new(),
                    keep,
                    done: false,
                })
            }
            Ok(_) => Err(DrillError::Usage(format!(
                "the drill target {} is not a directory",
                path.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let created_parents = missing_parents(path);
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| DrillError::io("creating scratch directory", path, e))?;
                Ok(Scratch {
                    path: path.to_path_buf(),
                    created: true,
                    created_parents,
                    keep,
                    done: false,
                })
            }
            Err(e) => Err(DrillError::io("reading", path, e)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it will be kept.
    pub fn keep(&self) -> bool {
        self.keep
    }

    /// Removes what was restored (and the directory, when the drill created it) unless it is
    /// to be kept. Returns whether it was kept.
    pub fn finish(mut self) -> Result<bool, DrillError> {
        self.done = true;
        if self.keep {
            return Ok(true);
        }
        self.remove()?;
        Ok(false)
    }

    fn remove(&self) -> Result<(), DrillError> {
        let result = if self.created {
            remove_all(&self.path)
        } else {
            remove_contents(&self.path)
        };
        result.map_err(|e| DrillError::io("removing scratch directory", &self.path, e))?;
        // Parents this drill created go too, unless something else was put in them since.
        for dir in &self.created_parents {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.done
            && !self.keep
            && let Err(e) = self.remove()
        {
            tracing::warn!("{e}");
        }
    }
}

/// The ancestors of `path` that do not exist, deepest first.
fn missing_parents(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| fs::symlink_metadata(p).is_err_and(|e| e.kind() == io::ErrorKind::NotFound))
        .map(Path::to_path_buf)
        .collect()
}

/// Removes `dir` and everything below it, first making directories writable when the
/// restore left some read-only (a snapshot's read-only directories are restored read-only).
fn remove_all(dir: &Path) -> io::Result<()> {
    if fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    make_dirs_writable(dir);
    fs::remove_dir_all(dir)
}

/// Removes everything below `dir`, leaving `dir`.
fn remove_contents(dir: &Path) -> io::Result<()> {
    make_dirs_writable(dir);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Gives the owner full access to every directory below and including `root`, never
/// following symlinks. Best effort: what cannot be changed is left for the removal to report.
fn make_dirs_writable(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700));
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_scratch_is_removed_even_with_read_only_directories() -> Result<(), DrillError> {
        let parent = tempfile::tempdir().map_err(|e| DrillError::Internal(e.to_string()))?;
        let s = Scratch::fresh(Some(parent.path()), false)?;
        let path = s.path().to_path_buf();
        let ro = path.join("a/b");
        fs::create_dir_all(&ro).map_err(|e| DrillError::io("mkdir", &ro, e))?;
        fs::write(ro.join("f"), b"x").map_err(|e| DrillError::io("write", &ro, e))?;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500))
            .map_err(|e| DrillError::io("chmod", &ro, e))?;
        fs::set_permissions(path.join("a"), fs::Permissions::from_mode(0o000))
            .map_err(|e| DrillError::io("chmod", &ro, e))?;
        assert!(!s.finish()?);
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn kept_scratch_stays_and_dropped_scratch_goes() -> Result<(), DrillError> {
        let parent = tempfile::tempdir().map_err(|e| DrillError::Internal(e.to_string()))?;
        let kept = Scratch::fresh(Some(parent.path()), true)?;
        let kept_path = kept.path().to_path_buf();
        assert!(kept.finish()?);
        assert!(kept_path.is_dir());
        let dropped = Scratch::fresh(Some(parent.path()), false)?;
        let dropped_path = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!dropped_path.exists());
        Ok(())
    }

    #[test]
    fn a_named_target_must_be_empty_and_only_its_contents_go() -> Result<(), DrillError> {
        let parent = tempfile::tempdir().map_err(|e| DrillError::Internal(e.to_string()))?;
        let full = parent.path().join("full");
        fs::create_dir(&full).map_err(|e| DrillError::io("mkdir", &full, e))?;
        fs::write(full.join("x"), b"x").map_err(|e| DrillError::io("write", &full, e))?;
        assert!(matches!(
            Scratch::at(&full, false),
            Err(DrillError::Usage(_))
        ));
        let file = full.join("x");
        assert!(matches!(
            Scratch::at(&file, false),
            Err(DrillError::Usage(_))
        ));

        let empty = parent.path().join("empty");
        fs::create_dir(&empty).map_err(|e| DrillError::io("mkdir", &empty, e))?;
        let s = Scratch::at(&empty, false)?;
        fs::create_dir(empty.join("d")).map_err(|e| DrillError::io("mkdir", &empty, e))?;
        assert!(!s.finish()?);
        assert!(empty.is_dir(), "an existing target directory stays");
        assert_eq!(fs::read_dir(&empty).map(|d| d.count()).ok(), Some(0));

        // Missing parents are created, and removed afterwards; existing ones stay.
        let missing = parent.path().join("new/deeper/still");
        let s = Scratch::at(&missing, false)?;
        assert!(missing.is_dir());
        assert!(!s.finish()?);
        assert!(!missing.exists());
        assert!(
            !parent.path().join("new").exists(),
            "created parents are removed"
        );
        assert!(parent.path().is_dir());
        // ...unless something else was put in them meanwhile, or the scratch is kept.
        let s = Scratch::at(&missing, false)?;
        fs::write(parent.path().join("new/other"), b"x")
            .map_err(|e| DrillError::io("write", &missing, e))?;
        assert!(!s.finish()?);
        assert!(!parent.path().join("new/deeper").exists());
        assert!(parent.path().join("new/other").is_file());
        let kept_at = parent.path().join("kept/deeper");
        let s = Scratch::at(&kept_at, true)?;
        assert!(s.finish()?);
        assert!(kept_at.is_dir());
        Ok(())
    }
}
