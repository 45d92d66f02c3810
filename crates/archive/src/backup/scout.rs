//! Reading the sources' metadata ahead of the walk.
//!
//! Opening a repository derives its key from the password, which is calibrated to take about
//! half a second of one core, and the walk cannot compare anything before that: it needs the
//! parent snapshot's trees. The scout uses that time. Started before the repository is opened
//! ([`Scout::start`]), a thread lists the source directories depth first, in the order the
//! walker enters them, and `lstat`s their entries. When the walker enters a directory it takes
//! the scout's listing of it ([`Scout::take`]), provided the directory's identity and its
//! modification and change times are still those the scout saw (an entry added, removed or
//! renamed since changes them); otherwise it lists the directory itself. An unchanged tree
//! then costs the walker no system call per file.
//!
//! A file's metadata may be a moment older than the walker's own `lstat` would be. That is the
//! metadata of the same name a moment earlier, as if the walk had passed there then: a file
//! that looked unchanged is recorded as it was in the parent snapshot, and a file that is read
//! is described by the `fstat` of the open file, as always. Directories are always `lstat`ed
//! again by the walker, since it opens them.
//!
//! A directory changed less than two seconds before the scout listed it is left to the walker
//! ([`RACY`]): timestamps advance in clock ticks, so a second change in the tick of the first
//! would not show in its times. The snapshot's time is then the scout's start, since the
//! metadata the walker took may date from then.
//!
//! Memory is bounded: the listings held never exceed [`SCOUT_BYTES`] (the scout waits for the
//! walker to take some). The scout stops for good when the walker enters a directory it has not
//! listed (it is behind, or the directory was too deep, too large or unreadable for it), and at
//! the end of the walk; its thread is not waited for. It does not descend where the walker will
//! not: excluded directories, other filesystems under `--one-file-system`, directories holding
//! an `--exclude-if-present` marker below a source, a source that is a symlink; a source inside
//! another is listed once. Without a parent snapshot the backup stops it as soon as it knows:
//! every file is then read, the file readers set the pace, and the listings would only hold
//! memory. Listings are found by the directory's `(dev, ino)`: on a filesystem whose inode
//! numbers are not stable (some FUSE and network filesystems) the times checked must match too.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fs::{Mode, OFlags, Stat};

use super::{BackupOptions, sources};
use crate::exclude::Excludes;
use crate::fsmeta::{self, Meta};

/// Most bytes of listings the scout holds for the walker.
pub const SCOUT_BYTES: usize = 12 << 20;

/// Deepest directory the scout descends into (each level holds one open handle).
const MAX_DEPTH: usize = 48;

/// A directory changed less than this before the scout listed it is listed again by the
/// walker: timestamps advance in clock ticks (milliseconds, seconds on some filesystems), so a
/// second change in the tick of the first would not show in its times (git's "racy" rule).
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

/// A directory's identity and times: a listing is used only while they are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    identity: (u64, u64),
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> Stamp {
        Stamp {
            identity: fsmeta::identity(st),
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }
}

/// A directory's entries as the scout found them, held compactly: the names one after the
/// other in one buffer, and of each `lstat` only what a node records.
pub(crate) struct Listing {
    stamp: Stamp,
    /// The directory changed within [`RACY`] before the scout looked: a change in the same
    /// clock tick after it would not show in its times, so the walker lists it itself.
    racy: bool,
    bytes: usize,
    /// The names, sorted bytewise (as [`fsmeta::list_dir`] gives them), end to end.
    names: Vec<u8>,
    /// Where each name ends in `names`.
    ends: Vec<u32>,
    /// The `lstat` of each name (`None` where it failed: the walker asks again and reports).
    metas: Vec<Option<Meta>>,
}

impl Listing {
    /// Bytes a listing of `names` holds.
    fn estimate(names: &[Vec<u8>]) -> usize {
        128 + names
            .iter()
            .map(|n| n.len() + std::mem::size_of::<u32>() + std::mem::size_of::<Option<Meta>>())
            .sum::<usize>()
    }

    /// `None` for a directory whose names do not fit 32-bit offsets.
    fn new(
        stamp: Stamp,
        racy: bool,
        names: &[Vec<u8>],
        metas: Vec<Option<Meta>>,
    ) -> Option<Listing> {
        let total: usize = names.iter().map(Vec::len).sum();
        let bytes = Listing::estimate(names);
        let mut joined = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(names.len());
        for name in names {
            joined.extend_from_slice(name);
            ends.push(u32::try_from(joined.len()).ok()?);
        }
        Some(Listing {
            stamp,
            racy,
            bytes,
            names: joined,
            ends,
            metas,
        })
    }

    /// The names and the `lstat` of each, as the walker keeps them.
    pub fn into_entries(self) -> (Vec<Vec<u8>>, Vec<Option<Meta>>) {
        let mut start = 0;
        let names = self
            .ends
            .iter()
            .map(|&end| {
                let end = end as usize;
                let name = self.names[start..end].to_vec();
                start = end;
                name
            })
            .collect();
        (names, self.metas)
    }
}

#[derive(Default)]
struct State {
    listings: HashMap<(u64, u64), Listing>,
    bytes: usize,
    /// Listings the walker took and used.
    used: u64,
    /// The scout has listed everything it will.
    done: bool,
    /// The scout must stop (walk over, or the walker overtook it).
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when listings are taken or the scout is stopped.
    room: Condvar,
    /// Most bytes of listings held ([`SCOUT_BYTES`]).
    bound: usize,
    /// How recent a change makes a listing racy ([`RACY`]).
    racy: std::time::Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Hands a listing over, waiting while the bound is full; false when the scout must stop.
    fn offer(&self, listing: Option<Listing>) -> bool {
        let Some(listing) = listing.filter(|l| l.bytes <= self.bound) else {
            // One directory larger than the bound: the walker lists it, and overtakes.
            self.lock().stopped = true;
            return false;
        };
        let mut state = self.lock();
        while !state.stopped && state.bytes + listing.bytes > self.bound {
            state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.stopped {
            return false;
        }
        state.bytes += listing.bytes;
        // The same directory twice (a bind mount seen again): the newer listing counts.
        if let Some(old) = state.listings.insert(listing.stamp.identity, listing) {
            state.bytes -= old.bytes;
        }
        true
    }
}

/// The scout of one backup: a thread listing the sources ahead of the walker.
pub struct Scout {
    shared: Arc<Shared>,
    /// When the scout started: the metadata it read may be this old.
    started: zaibei_format::Timestamp,
}

impl std::fmt::Debug for Scout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scout")
    }
}

/// What the scout needs of the backup's options.
struct Plan {
    roots: Vec<PathBuf>,
    excludes: Excludes,
    one_file_system: bool,
    markers: Vec<Vec<u8>>,
}

impl Scout {
    /// Starts scouting the sources of `opts` (before the repository is opened, so that the
    /// scout runs while the key is derived). `None` when the options are not usable (the
    /// backup reports why) or no thread can be started.
    pub fn start(opts: &BackupOptions) -> Option<Arc<Scout>> {
        Scout::start_bounded(opts, SCOUT_BYTES, RACY)
    }

    /// [`Scout::start`], holding at most `bound` bytes of listings, and leaving to the walker
    /// directories changed less than `racy` before it listed them.
    fn start_bounded(
        opts: &BackupOptions,
        bound: usize,
        racy: std::time::Duration,
    ) -> Option<Arc<Scout>> {
        let plan = Plan {
            roots: sources::normalise(&opts.paths).ok()?,
            excludes: Excludes::new(&opts.excludes, &opts.exclude_files).ok()?,
            one_file_system: opts.one_file_system,
            markers: opts.exclude_if_present.clone(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            bound,
            racy,
        });
        let started = zaibei_format::Timestamp::now();
        {
            let shared = Arc::clone(&shared);
            // Not joined: stopping must not wait for a slow or hung filesystem.
            std::thread::Builder::new()
                .name("zaibei-scout".into())
                .spawn(move || {
                    scout(&shared, &plan);
                    shared.lock().done = true;
                    shared.room.notify_all();
                })
                .ok()?;
        }
        Some(Arc::new(Scout { shared, started }))
    }

    /// The listing of the directory open as `fd` whose `fstat` is `st`, if the scout listed it
    /// and it has not changed since. When the scout has not got there yet it stops: it is
    /// behind the walker.
    pub(crate) fn take(&self, st: &Stat) -> Option<Listing> {
        let stamp = Stamp::of(st);
        let mut state = self.shared.lock();
        let Some(listing) = state.listings.remove(&stamp.identity) else {
            if !state.done && !state.stopped {
                state.stopped = true;
                drop(state);
                self.shared.room.notify_all();
            }
            return None;
        };
        state.bytes -= listing.bytes;
        let fresh = listing.stamp == stamp && !listing.racy;
        if fresh {
            state.used += 1;
        }
        drop(state);
        self.shared.room.notify_all();
        fresh.then_some(listing)
    }

    /// When the scout started: the backup's metadata may date from then.
    pub fn started(&self) -> zaibei_format::Timestamp {
        self.started
    }

    /// How many listings the walker used.
    pub fn used(&self) -> u64 {
        self.shared.lock().used
    }

    /// True once the scout has listed all it will (or was stopped).
    pub fn finished(&self) -> bool {
        let state = self.shared.lock();
        state.done || state.stopped
    }

    /// Stops the scout and drops the listings not taken. The thread ends after the system
    /// call it is in (it checks between entries), without being waited for.
    pub fn stop(&self) {
        {
            let mut state = self.shared.lock();
            state.stopped = true;
            state.listings = HashMap::new();
            state.bytes = 0;
        }
        self.shared.room.notify_all();
    }
}

impl Drop for Scout {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory being descended: its handle and the subdirectories left to visit.
struct Level {
    fd: OwnedFd,
    path_len: usize,
    subdirs: std::vec::IntoIter<Vec<u8>>,
}

/// Lists each source directory and its subdirectories, depth first, names in order. A source
/// inside another is listed with it, and a source that is a symlink is not followed (the
/// walker stores the link).
fn scout(shared: &Shared, plan: &Plan) {
    let mut path = Vec::new();
    let mut listed: Vec<&Path> = Vec::new();
    for root in &plan.roots {
        if listed.iter().any(|l| root.starts_with(l)) {
            continue;
        }
        listed.push(root);
        let root_bytes = std::os::unix::ffi::OsStrExt::as_bytes(root.as_os_str());
        let Ok(fd) = open_dir(None, root_bytes) else {
            // Not a directory (a file given as a source), or unreadable: the walker sees.
            continue;
        };
        path.clear();
        path.extend_from_slice(root_bytes);
        if !scout_tree(shared, plan, fd, &mut path) {
            return;
        }
    }
}

/// Lists the tree below the directory open as `fd` (whose path is `path`); false when the
/// scout must stop.
fn scout_tree(shared: &Shared, plan: &Plan, fd: OwnedFd, path: &mut Vec<u8>) -> bool {
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return true;
    };
    #[allow(clippy::unnecessary_cast)]
    let device = st.st_dev as u64;
    // The walker applies `--exclude-if-present` below a source, not to the source itself.
    let Some(subdirs) = list(shared, plan, &fd, &st, path, device, false) else {
        return false;
    };
    let mut stack = vec![Level {
        fd,
        path_len: path.len(),
        subdirs: subdirs.into_iter(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.subdirs.next() else {
            stack.pop();
            continue;
        };
        path.truncate(level.path_len);
        path.push(b'/');
        path.extend_from_slice(&name);
        let Ok(child) = open_dir(Some(&level.fd), &name) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&child) else {
            continue;
        };
        let Some(subdirs) = list(shared, plan, &child, &st, path, device, true) else {
            return false;
        };
        let subdirs = if stack.len() < MAX_DEPTH {
            subdirs
        } else {
            Vec::new()
        };
        stack.push(Level {
            fd: child,
            path_len: path.len(),
            subdirs: subdirs.into_iter(),
        });
    }
    true
}

/// Lists one directory and hands the listing over; returns the subdirectories to descend
/// into, or `None` when the scout must stop.
fn list(
    shared: &Shared,
    plan: &Plan,
    fd: &OwnedFd,
    st: &Stat,
    path: &mut Vec<u8>,
    device: u64,
    markers: bool,
) -> Option<Vec<Vec<u8>>> {
    if shared.stopped() {
        return None;
    }
    // Before listing: a change after this instant shows in the directory's times.
    let looked = std::time::SystemTime::now();
    let Ok(names) = fsmeta::list_dir(fd) else {
        return Some(Vec::new());
    };
    // A directory too large to hold: the walker lists it, and overtakes.
    if Listing::estimate(&names) > shared.bound {
        shared.lock().stopped = true;
        return None;
    }
    let mut metas: Vec<Option<Meta>> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if i % 256 == 255 && shared.stopped() {
            return None;
        }
        metas.push(
            fsmeta::lstat_at(fd.as_fd(), name)
                .ok()
                .map(|st| Meta::of(&st)),
        );
    }
    let marked = markers && plan.markers.iter().any(|m| names.binary_search(m).is_ok());
    let mut subdirs = Vec::new();
    if !marked {
        let len = path.len();
        for (name, meta) in names.iter().zip(&metas) {
            let Some(meta) = meta else { continue };
            if meta.kind() != Some(zaibei_format::NodeKind::Dir)
                || (plan.one_file_system && meta.device != device)
            {
                continue;
            }
            path.truncate(len);
            path.push(b'/');
            path.extend_from_slice(name);
            if !plan.excludes.is_excluded(path, true) {
                subdirs.push(name.clone());
            }
        }
        path.truncate(len);
    }
    let stamp = Stamp::of(st);
    let racy = [stamp.mtime, stamp.ctime].iter().any(|&(secs, nanos)| {
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(secs.max(0).unsigned_abs())
            + std::time::Duration::from_nanos(nanos.max(0).unsigned_abs());
        looked
            .duration_since(time)
            .map_or(true, |age| age < shared.racy)
    });
    shared
        .offer(Listing::new(stamp, racy, &names, metas))
        .then_some(subdirs)
}

/// Opens a directory without changing its access time where the caller may.
fn open_dir(at: Option<&OwnedFd>, name: &[u8]) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let open = |flags: OFlags| match at {
        Some(dir) => fsmeta::open_beneath(dir.as_fd(), name, flags, Mode::empty()),
        // A source that is a symlink is stored as one: not followed.
        None => Ok(rustix::fs::open(
            std::ffi::OsStr::from_bytes(name),
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        )?),
    };
    match open(flags | OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => open(flags),
        other => other,
    }
}

use std::os::unix::ffi::OsStrExt;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;

    /// `dirs` directories of `files` files each, and one excluded directory.
    fn tree(root: &Path, dirs: usize, files: usize) {
        for d in 0..dirs {
            let dir = root.join(format!("d{d:02}"));
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            for f in 0..files {
                std::fs::write(dir.join(format!("f{f:02}")), vec![b'x'; f]).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("skip.tmp/inner")).unwrap();
    }

    fn opts(root: &Path) -> BackupOptions {
        BackupOptions {
            paths: vec![root.to_path_buf()],
            excludes: vec!["*.tmp".into()],
            ..Default::default()
        }
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waited for {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn take_dir(scout: &Scout, path: &Path) -> Option<Listing> {
        let fd = open_dir(None, path.as_os_str().as_bytes()).unwrap();
        scout.take(&rustix::fs::fstat(&fd).unwrap())
    }

    #[test]
    fn listings_hold_the_names_and_lstat_of_each_directory_and_skip_excluded_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        tree(&root, 3, 5);
        let scout = Scout::start_bounded(&opts(&root), SCOUT_BYTES, Duration::ZERO).unwrap();
        wait_until("the scout", || scout.finished());
        let (names, metas) = take_dir(&scout, &root).unwrap().into_entries();
        let fd = open_dir(None, root.as_os_str().as_bytes()).unwrap();
        assert_eq!(names, fsmeta::list_dir(&fd).unwrap());
        for (name, meta) in names.iter().zip(&metas) {
            let st = fsmeta::lstat_at(fd.as_fd(), name).unwrap();
            assert_eq!(*meta, Some(Meta::of(&st)));
        }
        let (names, _) = take_dir(&scout, &root.join("d01")).unwrap().into_entries();
        assert_eq!(names.len(), 6);
        assert!(take_dir(&scout, &root.join("d02/sub")).is_some());
        // The excluded directory itself is listed in its parent, but not descended into.
        assert!(take_dir(&scout, &root.join("skip.tmp")).is_none());
        assert_eq!(scout.used(), 3);
    }

    #[test]
    fn a_directory_changed_since_its_listing_is_listed_again_by_the_walker() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        tree(&root, 2, 3);
        let scout = Scout::start_bounded(&opts(&root), SCOUT_BYTES, Duration::ZERO).unwrap();
        wait_until("the scout", || scout.finished());
        // Let the clock move on, so the directory's times change.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(root.join("d00/new"), b"new").unwrap();
        assert!(take_dir(&scout, &root.join("d00")).is_none());
        assert!(take_dir(&scout, &root.join("d01")).is_some());
        assert_eq!(scout.used(), 1);
    }

    #[test]
    fn the_listings_held_stay_within_the_bound_and_the_walker_overtaking_stops_the_scout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        tree(&root, 6, 20);
        // Room for about two listings of a directory of twenty files.
        let one = Listing::estimate(&vec![b"f00".to_vec(); 21]);
        let scout = Scout::start_bounded(&opts(&root), 2 * one + one / 2, Duration::ZERO).unwrap();
        let held = || scout.shared.lock().listings.len();
        wait_until("the bound", || held() >= 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(scout.shared.lock().bytes <= 2 * one + one / 2);
        assert!(!scout.finished(), "the scout waits for room");
        // The walker takes them in its order: each take makes room for the next listing.
        for d in ["", "d00", "d00/sub", "d01", "d01/sub", "d02"] {
            let path = root.join(d);
            wait_until(d, || {
                let st = rustix::fs::stat(&path).unwrap();
                scout
                    .shared
                    .lock()
                    .listings
                    .contains_key(&fsmeta::identity(&st))
            });
            assert!(take_dir(&scout, &path).is_some(), "{d}");
        }
        // The walker gets ahead of the scout: the scout stops, and lets go of what it held.
        assert!(take_dir(&scout, &root.join("d05/sub")).is_none());
        assert!(scout.finished());
        scout.stop();
        assert_eq!(scout.shared.lock().bytes, 0);
        assert_eq!(scout.used(), 6);
    }

    #[test]
    fn a_directory_changed_just_before_its_listing_is_left_to_the_walker() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        tree(&root, 1, 2);
        let scout = Scout::start(&opts(&root)).unwrap();
        wait_until("the scout", || scout.finished());
        // Every directory was just made: none of its listings is used, and the scout does not
        // take that for being overtaken.
        assert!(take_dir(&scout, &root).is_none());
        assert!(take_dir(&scout, &root.join("d00")).is_none());
        assert!(!scout.shared.lock().stopped);
        assert_eq!(scout.used(), 0);
    }
}
