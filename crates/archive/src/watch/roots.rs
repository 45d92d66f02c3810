//! The watched paths themselves: whether each is still there, on the filesystem it was on
//! when the watch began, and watched.
//!
//! A watched path that vanishes (deleted, renamed away) or whose filesystem changes (the
//! filesystem below a mount point was unmounted, or one was mounted on it) holds every backup:
//! a snapshot of an empty mount point would look like a good backup, and a retention policy
//! would then forget the snapshots that hold the data. When the path is back as it was, it is
//! watched again and a backup follows.
//!
//! A path that stays on its new filesystem is accepted there once it has been found on the
//! same one for the settling time, unless it is an empty directory then: a filesystem mounted
//! after the watch began (the watch started before `/srv/data` was mounted) is backed up
//! without a restart, while an unmounted mount point (almost always an empty directory) stays
//! held until its filesystem is back or something is written there.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// The other device it was first found on, and when (reset when it changes again).
    moved_since: Option<(u64, Instant)>,
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
    settle: Duration,
}

fn examine(path: &Path) -> std::io::Result<u64> {
    std::fs::symlink_metadata(path).map(|m| m.dev())
}

/// True when `path` is a directory with nothing in it (what an unmounted mount point looks
/// like); false when it cannot be read.
fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

impl Roots {
    /// The watched `paths`; each must exist now (its filesystem is remembered). A path found
    /// on another filesystem for `settle` is accepted there (see the module documentation).
    pub fn new(paths: &[PathBuf], settle: Duration) -> Result<Roots, WatchError> {
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
                moved_since: None,
            });
        }
        Ok(Roots { roots, settle })
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

    /// Examines every path again at `now`; the paths whose state changed.
    pub fn check(&mut self, now: Instant) -> Vec<RootChange> {
        let mut changes = Vec::new();
        for r in &mut self.roots {
            let state = match examine(&r.path) {
                Ok(dev) if dev == r.dev => {
                    r.moved_since = None;
                    RootState::Present
                }
                Ok(found) => match r.moved_since {
                    Some((dev, since))
                        if dev == found
                            && now.saturating_duration_since(since) >= self.settle
                            && !is_empty_dir(&r.path) =>
                    {
                        tracing::warn!(
                            "{} stayed on another filesystem (device {:#x}, was {:#x}): \
                             watching and backing it up there from now on",
                            r.path.display(),
                            found,
                            r.dev
                        );
                        r.dev = found;
                        r.moved_since = None;
                        // Whatever was watched there belongs to the old filesystem.
                        r.armed = false;
                        RootState::Present
                    }
                    Some((dev, _)) if dev == found => RootState::Moved {
                        expected: r.dev,
                        found,
                    },
                    _ => {
                        r.moved_since = Some((found, now));
                        RootState::Moved {
                            expected: r.dev,
                            found,
                        }
                    }
                },
                Err(_) => {
                    r.moved_since = None;
                    RootState::Missing
                }
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

    const SETTLE: Duration = Duration::from_secs(10);

    #[test]
    fn paths_must_exist_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            Roots::new(std::slice::from_ref(&missing), SETTLE),
            Err(WatchError::Stat { path, .. }) if path == missing
        ));
        assert!(matches!(Roots::new(&[], SETTLE), Err(WatchError::Usage(_))));
    }

    #[test]
    fn a_path_that_vanishes_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, b"file").unwrap();
        let mut roots = Roots::new(&[a.clone(), b.clone()], SETTLE).unwrap();
        let now = Instant::now();
        assert_eq!(roots.to_arm(), vec![a.clone(), b.clone()]);
        roots.armed(&a);
        roots.armed(&b);
        assert!(roots.to_arm().is_empty());
        assert!(roots.check(now).is_empty());
        assert!(roots.all_present());

        std::fs::remove_dir(&a).unwrap();
        assert_eq!(
            roots.check(now),
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
        assert!(roots.check(now).is_empty(), "reported once");

        std::fs::create_dir(&a).unwrap();
        assert_eq!(
            roots.check(now),
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
        let mut roots = Roots::new(&[dir.path().to_path_buf()], SETTLE).unwrap();
        let now = Instant::now();
        roots.armed(dir.path());
        // As if the watch had begun on another filesystem (one since unmounted).
        let real = roots.roots[0].dev;
        roots.roots[0].dev = real.wrapping_add(1);
        assert_eq!(
            roots.check(now),
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
        assert_eq!(roots.check(now)[0].state, RootState::Present);
        assert_eq!(roots.to_arm(), vec![dir.path().to_path_buf()]);
    }

    /// As if the watch had begun on another filesystem than the path's (it was mounted since,
    /// or the filesystem that was there at the start is unmounted).
    fn begun_elsewhere(roots: &mut Roots) -> (u64, u64) {
        let real = roots.roots[0].dev;
        let old = real.wrapping_add(1);
        roots.roots[0].dev = old;
        (old, real)
    }

    #[test]
    fn a_path_that_stays_on_another_filesystem_is_accepted_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f"), b"data").unwrap();
        let mut roots = Roots::new(std::slice::from_ref(&root), SETTLE).unwrap();
        roots.armed(&root);
        let (old, real) = begun_elsewhere(&mut roots);
        let t0 = Instant::now();
        let moved = RootState::Moved {
            expected: old,
            found: real,
        };
        assert_eq!(roots.check(t0)[0].state, moved);
        assert!(roots.to_arm().is_empty());
        // Not yet settled: still held, reported once.
        assert!(roots.check(t0 + SETTLE / 2).is_empty());
        assert!(!roots.all_present());
        // Settled: accepted, watched again.
        assert_eq!(roots.check(t0 + SETTLE)[0].state, RootState::Present);
        assert!(roots.all_present());
        assert_eq!(roots.to_arm(), vec![root.clone()]);
        assert_eq!(
            roots.roots[0].dev, real,
            "the new filesystem is the baseline"
        );
        assert!(roots.check(t0 + SETTLE * 3).is_empty());
    }

    #[test]
    fn an_empty_directory_on_another_filesystem_stays_held() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt");
        std::fs::create_dir(&root).unwrap();
        let mut roots = Roots::new(std::slice::from_ref(&root), SETTLE).unwrap();
        roots.armed(&root);
        // The filesystem at the start was unmounted: an empty mount point is left.
        let (old, real) = begun_elsewhere(&mut roots);
        let t0 = Instant::now();
        assert_eq!(
            roots.check(t0)[0].state,
            RootState::Moved {
                expected: old,
                found: real
            }
        );
        assert!(roots.check(t0 + SETTLE * 100).is_empty(), "never accepted");
        assert!(!roots.all_present());
        // Something is written there: accepted at the next examination (the move has settled).
        std::fs::write(root.join("new"), b"x").unwrap();
        assert_eq!(roots.check(t0 + SETTLE * 101)[0].state, RootState::Present);
        // And the old filesystem coming back is a move too.
        roots.roots[0].dev = old;
        assert!(matches!(
            roots.check(t0 + SETTLE * 102)[0].state,
            RootState::Moved { .. }
        ));
        // Back on the filesystem expected: present at once.
        roots.roots[0].dev = real;
        assert_eq!(roots.check(t0 + SETTLE * 102)[0].state, RootState::Present);
    }
}
