//! What a change notification means for the watch, and the inbox that gathers them between
//! two looks of the watch loop.
//!
//! The notification thread of `notify` calls [`Inbox::deliver`] for every event; it only
//! classifies the event, counts it and stamps the time, so the inbox stays the same size
//! however many events arrive while a backup runs, and nothing is ever dropped for lack of
//! room. Which files changed does not matter: every backup walks the whole tree and finds the
//! changes itself from file metadata. Events only say *when* to back up.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};

/// Changed paths kept per batch for the logs.
pub const SAMPLE_PATHS: usize = 8;

/// Watcher errors kept per batch.
const ERRORS_KEPT: usize = 8;

/// Which paths are watched and which of the events below them are ignored.
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    roots: Vec<PathBuf>,
    ignored: Vec<PathBuf>,
}

impl PathFilter {
    /// A filter for the watched `roots` that ignores everything at or below `ignored`.
    pub fn new(roots: Vec<PathBuf>, ignored: Vec<PathBuf>) -> PathFilter {
        PathFilter { roots, ignored }
    }

    /// The watched paths.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The ignored paths.
    pub fn ignored(&self) -> &[PathBuf] {
        &self.ignored
    }

    /// Replaces the ignored paths.
    pub fn set_ignored(&mut self, ignored: Vec<PathBuf>) {
        self.ignored = ignored;
    }

    /// True when events at `path` are ignored.
    pub fn is_ignored(&self, path: &Path) -> bool {
        self.ignored.iter().any(|i| path.starts_with(i))
    }

    fn root(&self, path: &Path) -> Option<&PathBuf> {
        self.roots.iter().find(|r| r.as_path() == path)
    }
}

/// What one event means for the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// Nothing: something was only read, or it happened where the watch does not look
    /// (the repository itself, say).
    Ignored,
    /// Something changed at the event's paths.
    Changed,
    /// Events were lost (the kernel's queue overflowed): only a full walk can tell what
    /// changed.
    Lost,
    /// A watched path itself was removed or renamed away, so its watch is gone.
    RootGone(PathBuf),
}

/// What `event` means under `filter`.
pub fn classify(event: &notify::Event, filter: &PathFilter) -> Meaning {
    if event.need_rescan() {
        return Meaning::Lost;
    }
    match event.kind {
        // Opening, reading and closing after reading change nothing (and the backup itself
        // does all three to every file).
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return Meaning::Ignored,
        _ => {}
    }
    if event.paths.is_empty() {
        // No path to judge by: assume the worst.
        return Meaning::Changed;
    }
    let mut relevant = event.paths.iter().filter(|p| !filter.is_ignored(p));
    let Some(first) = relevant.next() else {
        return Meaning::Ignored;
    };
    let leaves = matches!(
        event.kind,
        EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Any))
    );
    if leaves && let Some(root) = filter.root(first) {
        return Meaning::RootGone(root.clone());
    }
    Meaning::Changed
}

/// What the inbox gathered since it was last emptied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Events that mean a change.
    pub changes: u64,
    /// When the first of them came.
    pub first: Option<Instant>,
    /// When the last of them came.
    pub last: Option<Instant>,
    /// When events were first lost (queue overflow, watcher errors, too many watches).
    pub lost: Option<Instant>,
    /// Watched paths whose watch is gone.
    pub gone: Vec<PathBuf>,
    /// Some of the changed paths (at most [`SAMPLE_PATHS`]), for the logs.
    pub sample: Vec<PathBuf>,
    /// Errors the watcher reported (the first few).
    pub errors: Vec<String>,
    /// The kernel's limit of watches was reached: some directories are not watched.
    pub limit_reached: bool,
}

impl Gathered {
    /// True when nothing was gathered.
    pub fn is_empty(&self) -> bool {
        *self == Gathered::default()
    }

    fn change(&mut self, at: Instant, paths: &[PathBuf], filter: &PathFilter) {
        self.changes += 1;
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        for p in paths.iter().filter(|p| !filter.is_ignored(p)) {
            if self.sample.len() >= SAMPLE_PATHS {
                break;
            }
            if !self.sample.contains(p) {
                self.sample.push(p.clone());
            }
        }
    }

    fn lose(&mut self, at: Instant) {
        self.lost = Some(self.lost.map_or(at, |l| l.min(at)));
    }
}

/// Where the notification thread leaves what it saw, and how the watch loop learns of it.
#[derive(Debug, Default)]
pub struct Inbox {
    filter: RwLock<PathFilter>,
    gathered: Mutex<Gathered>,
    wake: tokio::sync::Notify,
}

impl Inbox {
    /// An empty inbox judging events with `filter`.
    pub fn new(filter: PathFilter) -> Inbox {
        Inbox {
            filter: RwLock::new(filter),
            gathered: Mutex::new(Gathered::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// A copy of the filter.
    pub fn filter(&self) -> PathFilter {
        self.filter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the ignored paths of the filter.
    pub fn set_ignored(&self, ignored: Vec<PathBuf>) {
        self.filter
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_ignored(ignored);
    }

    /// Takes one event (or error) of the notification thread, seen at `at`.
    pub fn deliver(&self, event: notify::Result<notify::Event>, at: Instant) {
        let filter = self.filter.read().unwrap_or_else(|p| p.into_inner());
        let mut g = self.gathered.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Ok(event) => match classify(&event, &filter) {
                Meaning::Ignored => return,
                Meaning::Changed => g.change(at, &event.paths, &filter),
                Meaning::Lost => g.lose(at),
                Meaning::RootGone(root) => {
                    g.change(at, &event.paths, &filter);
                    if !g.gone.contains(&root) {
                        g.gone.push(root);
                    }
                }
            },
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    g.limit_reached = true;
                }
                if g.errors.len() < ERRORS_KEPT {
                    g.errors.push(e.to_string());
                }
                g.lose(at);
            }
        }
        drop(g);
        drop(filter);
        self.wake.notify_one();
    }

    /// Empties the inbox; what it held.
    pub fn take(&self) -> Gathered {
        std::mem::take(&mut *self.gathered.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until something is delivered (at once when something was delivered since the
    /// last wait ended).
    pub async fn delivered(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use notify::event::{CreateKind, DataChange, Flag, MetadataKind, RemoveKind};

    use super::*;

    fn filter() -> PathFilter {
        PathFilter::new(
            vec!["/data/src".into(), "/etc/hosts".into()],
            vec!["/data/src/repo".into()],
        )
    }

    fn ev(kind: EventKind, paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(kind), |e, p| {
            e.add_path(PathBuf::from(p))
        })
    }

    #[test]
    fn reads_are_ignored_writes_are_changes() {
        let f = filter();
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert_eq!(classify(&ev(kind, &["/data/src/a"]), &f), Meaning::Ignored);
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Create(CreateKind::Folder),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert_eq!(
                classify(&ev(kind, &["/data/src/a"]), &f),
                Meaning::Changed,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn ignored_paths_are_ignored_and_only_below_them() {
        let f = filter();
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            classify(&ev(modify, &["/data/src/repo/data/ab/cd"]), &f),
            Meaning::Ignored
        );
        assert_eq!(
            classify(&ev(modify, &["/data/src/repo"]), &f),
            Meaning::Ignored
        );
        // A sibling whose name merely starts the same is not below it.
        assert_eq!(
            classify(&ev(modify, &["/data/src/repository-notes"]), &f),
            Meaning::Changed
        );
        // A rename out of the repository into the tree is a change.
        assert_eq!(
            classify(
                &ev(
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                    &["/data/src/repo/x", "/data/src/x"]
                ),
                &f
            ),
            Meaning::Changed
        );
    }

    #[test]
    fn overflow_and_pathless_events() {
        let f = filter();
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(classify(&overflow, &f), Meaning::Lost);
        assert_eq!(
            classify(&notify::Event::new(EventKind::Any), &f),
            Meaning::Changed
        );
    }

    #[test]
    fn a_watched_path_that_goes_away() {
        let f = filter();
        assert_eq!(
            classify(
                &ev(EventKind::Remove(RemoveKind::Folder), &["/data/src"]),
                &f
            ),
            Meaning::RootGone("/data/src".into())
        );
        assert_eq!(
            classify(
                &ev(
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    &["/etc/hosts"]
                ),
                &f
            ),
            Meaning::RootGone("/etc/hosts".into())
        );
        // Below a watched path it is an ordinary change.
        assert_eq!(
            classify(
                &ev(EventKind::Remove(RemoveKind::Folder), &["/data/src/sub"]),
                &f
            ),
            Meaning::Changed
        );
    }

    #[test]
    fn the_inbox_counts_stamps_and_samples() {
        let inbox = Inbox::new(filter());
        let t0 = Instant::now();
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        inbox.deliver(
            Ok(ev(modify, &["/data/src/b"])),
            t0 + Duration::from_secs(2),
        );
        inbox.deliver(
            Ok(ev(modify, &["/data/src/a"])),
            t0 + Duration::from_secs(1),
        );
        inbox.deliver(Ok(ev(modify, &["/data/src/repo/x"])), t0);
        inbox.deliver(
            Ok(ev(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                &["/data/src/c"],
            )),
            t0,
        );
        for i in 0..20 {
            inbox.deliver(
                Ok(ev(modify, &[&format!("/data/src/many{i}")])),
                t0 + Duration::from_secs(3),
            );
        }
        let g = inbox.take();
        assert_eq!(g.changes, 22);
        assert_eq!(g.first, Some(t0 + Duration::from_secs(1)));
        assert_eq!(g.last, Some(t0 + Duration::from_secs(3)));
        assert_eq!(g.sample.len(), SAMPLE_PATHS);
        assert_eq!(g.sample[0], PathBuf::from("/data/src/b"));
        assert!(g.lost.is_none() && g.gone.is_empty() && g.errors.is_empty());
        assert!(inbox.take().is_empty(), "taking empties it");

        inbox.deliver(
            Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch)),
            t0,
        );
        inbox.deliver(
            Ok(ev(EventKind::Remove(RemoveKind::Folder), &["/data/src"])),
            t0,
        );
        let g = inbox.take();
        assert!(g.limit_reached);
        assert_eq!(g.lost, Some(t0));
        assert_eq!(g.errors.len(), 1);
        assert_eq!(g.gone, vec![PathBuf::from("/data/src")]);
    }

    #[test]
    fn changing_the_ignored_paths() {
        let inbox = Inbox::new(filter());
        inbox.set_ignored(vec!["/data/src/other".into()]);
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        inbox.deliver(Ok(ev(modify, &["/data/src/other/x"])), Instant::now());
        assert!(inbox.take().is_empty());
        inbox.deliver(Ok(ev(modify, &["/data/src/repo/x"])), Instant::now());
        assert_eq!(inbox.take().changes, 1);
        assert_eq!(
            inbox.filter().ignored(),
            &[PathBuf::from("/data/src/other")]
        );
    }
}
