//! The watched paths themselves: whether each is still there, on the filesystem it was on
//! when the watch began, and watched.
//!
//! A watched path that vanishes (deleted, renamed away) or whose filesystem changes (the
//! filesystem below a mount point was unmounted) holds every backup: a snapshot of an empty
//! mount point would look like a good backup, and a retention policy would then forget the
//! snapshots that hold the data. When the path is back as it was, it is watched again and a
//! backup follows.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::WatchError;

/// How a watched path was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootState {
    /// There, on its filesystem.
    Present,
    /// Not there (or not examinable).
    Missing,
    /// There, but on another filesystem than at the start (unmounted, or something mounted
    /// on it).
    Moved {
        /// The device it was on at the start.
        expected: u64,
        /// The device it is on now.
        found: u64,
    },
}

#[derive(Debug, Clone)]
struct Root {
    path: PathBuf,
    dev: u64,
    state: RootState,
    armed: bool,
}

/// A change of some watched path's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootChange {
    /// The path.
    pub path: PathBuf,
    /// Its state now.
    pub state: RootState,
}

/// The watched paths.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<Root>,
}

fn examine(path: &Path) -> std::io::Result<u64> {
    std::fs::symlink_metadata(path).map(|m| m.dev())
}

impl Roots {
    /// The watched `paths`; each must exist now (its filesystem is remembered).
    pub fn new(paths: &[PathBuf]) -> Result<Roots, WatchError> {
        if paths.is_empty() {
            return Err(WatchError::Usage(
                "nothing to watch: give at least one path".into(),
            ));
        }
        let mut roots = Vec::new();
        for p in paths {
            let dev = examine(p).map_err(|source| WatchError::Stat {
                path: p.clone(),
                source,
            })?;
            roots.push(Root {
                path: p.clone(),
                dev,
                state: RootState::Present,
                armed: false,
            });
        }
        Ok(Roots { roots })
    }

    /// The paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|r| r.path.clone()).collect()
    }

    /// True when every path is present.
    pub fn all_present(&self) -> bool {
        self.roots.iter().all(|r| r.state == RootState::Present)
    }

    /// The paths that are not present, with their states.
    pub fn absent(&self) -> Vec<RootChange> {
        self.roots
            .iter()
            .filter(|r| r.state != RootState::Present)
            .map(|r| RootChange {
                path: r.path.clone(),
                state: r.state,
            })
            .collect()
    }

    /// Examines every path again; the paths whose state changed.
    pub fn check(&mut self) -> Vec<RootChange> {
        let mut changes = Vec::new();
        for r in &mut self.roots {
            let state = match examine(&r.path) {
                Ok(dev) if dev == r.dev => RootState::Present,
                Ok(found) => RootState::Moved {
                    expected: r.dev,
                    found,
                },
                Err(_) => RootState::Missing,
            };
            if state != r.state {
                if state != RootState::Present {
                    // Its watch is gone or watches another filesystem.
                    r.armed = false;
                }
                r.state = state;
                changes.push(RootChange {
                    path: r.path.clone(),
                    state,
                });
            }
        }
        changes
    }

    /// Records that the watch of `path` is gone (the notification thread saw it leave).
    pub fn lost_watch(&mut self, path: &Path) {
        for r in self.roots.iter_mut().filter(|r| r.path == path) {
            r.armed = false;
        }
    }

    /// Present paths that are not watched.
    pub fn to_arm(&self) -> Vec<PathBuf> {
        self.roots
            .iter()
            .filter(|r| r.state == RootState::Present && !r.armed)
            .map(|r| r.path.clone())
            .collect()
    }

    /// Records that `path` is watched.
    pub fn armed(&mut self, path: &Path) {
        for r in self.roots.iter_mut().filter(|r| r.path == path) {
            r.armed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn paths_must_exist_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            Roots::new(std::slice::from_ref(&missing)),
            Err(WatchError::Stat { path, .. }) if path == missing
        ));
        assert!(matches!(Roots::new(&[]), Err(WatchError::Usage(_))));
    }

    #[test]
    fn a_path_that_vanishes_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, b"file").unwrap();
        let mut roots = Roots::new(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(roots.to_arm(), vec![a.clone(), b.clone()]);
        roots.armed(&a);
        roots.armed(&b);
        assert!(roots.to_arm().is_empty());
        assert!(roots.check().is_empty());
        assert!(roots.all_present());

        std::fs::remove_dir(&a).unwrap();
        assert_eq!(
            roots.check(),
            vec![RootChange {
                path: a.clone(),
                state: RootState::Missing
            }]
        );
        assert!(!roots.all_present());
        assert_eq!(roots.absent().len(), 1);
        assert!(
            roots.to_arm().is_empty(),
            "nothing to watch while it is missing"
        );
        assert!(roots.check().is_empty(), "reported once");

        std::fs::create_dir(&a).unwrap();
        assert_eq!(
            roots.check(),
            vec![RootChange {
                path: a.clone(),
                state: RootState::Present
            }]
        );
        assert!(roots.all_present());
        assert_eq!(roots.to_arm(), vec![a.clone()], "watched again");

        roots.lost_watch(&b);
        assert_eq!(roots.to_arm(), vec![a, b]);
    }

    #[test]
    fn a_path_on_another_filesystem_is_not_present() {
        let dir = tempfile::tempdir().unwrap();
        let mut roots = Roots::new(&[dir.path().to_path_buf()]).unwrap();
        roots.armed(dir.path());
        // As if the watch had begun on another filesystem (one since unmounted).
        let real = roots.roots[0].dev;
        roots.roots[0].dev = real.wrapping_add(1);
        assert_eq!(
            roots.check(),
            vec![RootChange {
                path: dir.path().to_path_buf(),
                state: RootState::Moved {
                    expected: real.wrapping_add(1),
                    found: real
                }
            }]
        );
        assert!(!roots.all_present());
        assert!(roots.to_arm().is_empty());
        roots.roots[0].dev = real;
        assert_eq!(roots.check()[0].state, RootState::Present);
        assert_eq!(roots.to_arm(), vec![dir.path().to_path_buf()]);
    }
}
