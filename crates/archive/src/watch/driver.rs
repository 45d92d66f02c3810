//! The watch loop's side of watching: gathers what the notification thread saw, keeps an eye
//! on the watched paths themselves, and says when the next backup is due.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::WatchError;
use super::debounce::{DebounceSettings, Debouncer, Trigger};
use super::events::{Inbox, PathFilter, SAMPLE_PATHS};
use super::notifier::{Notifier, Unwatched};
use super::roots::{RootChange, RootState, Roots};

/// What to watch and when to back up.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The watched paths (absolute, as a backup of them records them).
    pub paths: Vec<PathBuf>,
    /// Paths whose events are ignored (the repository, when it lies below a watched path).
    pub ignored: Vec<PathBuf>,
    /// When backups are due.
    pub timing: DebounceSettings,
    /// How often the watched paths themselves are examined (they are also examined right
    /// before each backup, and as soon as an event says one went away).
    pub root_check: Duration,
}

/// What the watch loop must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A backup is due.
    Backup {
        /// Why, and the changes it covers.
        trigger: Trigger,
        /// Some changed paths, for the logs.
        sample: Vec<PathBuf>,
    },
    /// Some watched paths are gone or on another filesystem: backups are held until they are
    /// back. Every absent path is listed.
    Held(Vec<RootChange>),
    /// Every watched path is back; a backup follows after the quiet period.
    Resumed,
    /// The kernel's limit of watches was reached: changes below some directories are found
    /// only by the periodic rescan (raise `fs.inotify.max_user_watches`).
    LimitReached,
    /// These paths (watched paths, or directories below them, each with everything below it)
    /// could not be watched: their changes are found only by the periodic rescan. Each path is
    /// reported once; a watched path that could not be watched at all is tried again at each
    /// examination.
    Unwatched(Vec<Unwatched>),
}

/// Watches paths and says when to back them up (see the module documentation).
#[derive(Debug)]
pub struct Watch {
    debouncer: Debouncer,
    inbox: Arc<Inbox>,
    notifier: Notifier,
    roots: Roots,
    root_check: Duration,
    next_root_check: Instant,
    sample: Vec<PathBuf>,
    steps: VecDeque<Step>,
    limit_reported: bool,
    /// Paths reported in a [`Step::Unwatched`].
    unwatched_reported: BTreeSet<PathBuf>,
    /// Watched paths whose last arming failed altogether.
    arm_failed: BTreeSet<PathBuf>,
}

impl Watch {
    /// Starts watching `opts.paths` (each must exist). The first backup
    /// ([`super::TriggerReason::Start`]) is due once the paths have been quiet for the quiet
    /// period.
    pub async fn start(opts: WatchOptions) -> Result<Watch, WatchError> {
        opts.timing.check()?;
        if opts.root_check.is_zero() {
            return Err(WatchError::Usage(
                "the interval of examining the watched paths must be longer than 0".into(),
            ));
        }
        // A path on another filesystem is accepted there once two more examinations have
        // found it on the same one.
        let roots = Roots::new(&opts.paths, opts.root_check.saturating_mul(2))?;
        let inbox = Arc::new(Inbox::new(PathFilter::new(
            opts.paths.clone(),
            opts.ignored.clone(),
        )));
        let notifier = Notifier::start(Arc::clone(&inbox))?;
        let now = Instant::now();
        let mut w = Watch {
            debouncer: Debouncer::new(opts.timing, now),
            inbox,
            notifier,
            roots,
            root_check: opts.root_check,
            next_root_check: now + opts.root_check,
            sample: Vec::new(),
            steps: VecDeque::new(),
            limit_reported: false,
            unwatched_reported: BTreeSet::new(),
            arm_failed: BTreeSet::new(),
        };
        w.arm().await;
        Ok(w)
    }

    /// The paths whose events are ignored from now on (replacing the earlier ones).
    pub fn set_ignored(&self, ignored: Vec<PathBuf>) {
        self.inbox.set_ignored(ignored);
    }

    /// Waits for the next thing to act on. Cancel-safe: nothing is lost when the future is
    /// dropped.
    pub async fn next(&mut self) -> Result<Step, WatchError> {
        loop {
            let now = Instant::now();
            self.absorb(now).await;
            if let Some(step) = self.steps.pop_front() {
                return Ok(step);
            }
            if self.debouncer.deadline().is_some_and(|d| d <= now) {
                // Never back up a path that just vanished or was unmounted.
                self.check_roots(now).await;
                if let Some(step) = self.steps.pop_front() {
                    return Ok(step);
                }
            }
            if let Some(trigger) = self.debouncer.poll(now) {
                let sample = std::mem::take(&mut self.sample);
                return Ok(Step::Backup { trigger, sample });
            }
            let wake = self
                .debouncer
                .deadline()
                .map_or(self.next_root_check, |d| d.min(self.next_root_check));
            tokio::select! {
                () = self.inbox.delivered() => {}
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
    }

    /// The backup of the last [`Step::Backup`] succeeded.
    pub fn succeeded(&mut self) {
        self.debouncer.succeeded(Instant::now());
    }

    /// The backup of `trigger` failed: it is retried later; how much later.
    pub fn failed(&mut self, trigger: Trigger) -> Duration {
        self.debouncer.failed(Instant::now(), trigger)
    }

    /// True while backups are held because a watched path is absent.
    pub fn is_held(&self) -> bool {
        self.debouncer.is_held()
    }

    async fn absorb(&mut self, now: Instant) {
        let g = self.inbox.take();
        if g.changes > 0
            && let (Some(first), Some(last)) = (g.first, g.last)
        {
            self.debouncer.changes(first, last, g.changes);
            for p in g.sample {
                if self.sample.len() < SAMPLE_PATHS && !self.sample.contains(&p) {
                    self.sample.push(p);
                }
            }
        }
        for e in &g.errors {
            tracing::warn!("change notification: {e}");
        }
        if let Some(at) = g.lost {
            tracing::info!(
                "change notifications were lost; the next backup finds the changes by walking everything"
            );
            self.debouncer.overflow(at);
        }
        if g.limit_reached && !self.limit_reported {
            self.limit_reported = true;
            self.steps.push_back(Step::LimitReached);
        }
        for root in &g.gone {
            self.roots.lost_watch(root);
        }
        if !g.gone.is_empty() || now >= self.next_root_check {
            self.check_roots(now).await;
        }
    }

    async fn check_roots(&mut self, now: Instant) {
        self.next_root_check = now + self.root_check;
        let changes = self.roots.check(now);
        if changes.iter().any(|c| c.state != RootState::Present) && !self.roots.all_present() {
            self.debouncer.hold();
            self.steps.push_back(Step::Held(self.roots.absent()));
        }
        self.arm().await;
        if self.roots.all_present() && self.debouncer.is_held() {
            self.debouncer.release(Instant::now());
            self.steps.push_back(Step::Resumed);
        }
    }

    /// Watches every present path that is not watched. A directory below one that cannot be
    /// watched is left out (reported once); a path that cannot be watched at all is tried
    /// again at the next examination, reported once and without a backup each time (the
    /// rescan covers it meanwhile).
    async fn arm(&mut self) {
        let mut unwatched = Vec::new();
        for path in self.roots.to_arm() {
            match self.notifier.arm(path.clone()).await {
                Ok(skipped) => {
                    self.roots.armed(&path);
                    if self.arm_failed.remove(&path) {
                        // Whatever happened while it was not watched is unknown.
                        self.debouncer.overflow(Instant::now());
                    }
                    unwatched.extend(skipped);
                }
                Err(WatchError::Arm { source, .. })
                    if matches!(source.kind, notify::ErrorKind::MaxFilesWatch) =>
                {
                    // Partly watched; what is not is found by the rescans.
                    self.roots.armed(&path);
                    self.debouncer.overflow(Instant::now());
                    if !self.limit_reported {
                        self.limit_reported = true;
                        self.steps.push_back(Step::LimitReached);
                    }
                }
                Err(e) => {
                    self.arm_failed.insert(path.clone());
                    unwatched.push(Unwatched {
                        error: match &e {
                            WatchError::Arm { source, .. } => source.to_string(),
                            other => other.to_string(),
                        },
                        path,
                    });
                }
            }
        }
        unwatched.retain(|u| self.unwatched_reported.insert(u.path.clone()));
        if !unwatched.is_empty() {
            self.steps.push_back(Step::Unwatched(unwatched));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::super::TriggerReason;
    use super::*;

    /// A bound that only catches a hung watch; nothing is asserted about time.
    const HANG: Duration = Duration::from_secs(120);

    fn opts(root: &Path) -> WatchOptions {
        WatchOptions {
            paths: vec![root.to_path_buf()],
            ignored: Vec::new(),
            timing: DebounceSettings {
                quiet: Duration::from_millis(50),
                max_delay: Duration::from_secs(5),
                rescan: None,
                ..DebounceSettings::default()
            },
            root_check: Duration::from_millis(50),
        }
    }

    async fn next(w: &mut Watch) -> Step {
        tokio::time::timeout(HANG, w.next())
            .await
            .expect("the watch hung")
            .unwrap()
    }

    /// The next backup step whose sample holds `path`, skipping earlier ones.
    async fn backup_with(w: &mut Watch, path: &Path) -> Trigger {
        loop {
            match next(w).await {
                Step::Backup { trigger, sample } => {
                    w.succeeded();
                    if sample.iter().any(|p| p == path) {
                        return trigger;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("src");
        std::fs::create_dir(&root).unwrap();
        (dir, root)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_then_changes_new_directories_and_ignored_paths() {
        let (_dir, root) = root();
        let repo = root.join("repo");
        std::fs::create_dir(&repo).unwrap();
        let mut o = opts(&root);
        o.ignored = vec![repo.clone()];
        let mut w = Watch::start(o).await.unwrap();
        match next(&mut w).await {
            Step::Backup { trigger, .. } => assert_eq!(trigger.reason, TriggerReason::Start),
            other => panic!("unexpected {other:?}"),
        }
        w.succeeded();

        // A write in the ignored directory, then one beside it.
        std::fs::write(repo.join("pack"), b"ignored").unwrap();
        std::fs::write(root.join("a"), b"hello").unwrap();
        let t = backup_with(&mut w, &root.join("a")).await;
        assert!(t.changes >= 1);
        assert!(matches!(
            t.reason,
            TriggerReason::Quiet | TriggerReason::MaxDelay
        ));

        // A new directory, then a file inside it: the directory is watched too.
        std::fs::create_dir(root.join("new")).unwrap();
        backup_with(&mut w, &root.join("new")).await;
        std::fs::write(root.join("new/inner"), b"x").unwrap();
        backup_with(&mut w, &root.join("new/inner")).await;

        // Writes in the ignored directory never show among the changes.
        std::fs::write(repo.join("pack2"), b"ignored").unwrap();
        std::fs::write(root.join("b"), b"b").unwrap();
        loop {
            match next(&mut w).await {
                Step::Backup { sample, .. } => {
                    w.succeeded();
                    assert!(sample.iter().all(|p| !p.starts_with(&repo)), "{sample:?}");
                    if sample.contains(&root.join("b")) {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_vanished_path_holds_backups_until_it_is_back() {
        let (_dir, root) = root();
        std::fs::write(root.join("f"), b"1").unwrap();
        let mut w = Watch::start(opts(&root)).await.unwrap();
        assert!(matches!(next(&mut w).await, Step::Backup { .. }));
        w.succeeded();

        std::fs::remove_dir_all(&root).unwrap();
        match next(&mut w).await {
            Step::Held(absent) => {
                assert_eq!(absent.len(), 1);
                assert_eq!(absent[0].path, root);
                assert_eq!(absent[0].state, RootState::Missing);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(w.is_held());

        std::fs::create_dir(&root).unwrap();
        assert_eq!(next(&mut w).await, Step::Resumed);
        match next(&mut w).await {
            Step::Backup { trigger, .. } => assert_eq!(trigger.reason, TriggerReason::Resumed),
            other => panic!("unexpected {other:?}"),
        }
        w.succeeded();
        // Watched again.
        std::fs::write(root.join("g"), b"2").unwrap();
        backup_with(&mut w, &root.join("g")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_backup_is_retried() {
        let (_dir, root) = root();
        let mut o = opts(&root);
        o.timing.retry_first = Duration::from_millis(20);
        o.timing.retry_max = Duration::from_millis(40);
        let mut w = Watch::start(o).await.unwrap();
        let Step::Backup { trigger, .. } = next(&mut w).await else {
            panic!("no start backup");
        };
        assert_eq!(w.failed(trigger), Duration::from_millis(20));
        let Step::Backup { trigger, .. } = next(&mut w).await else {
            panic!("no retry");
        };
        assert_eq!(trigger.reason, TriggerReason::Retry);
        assert_eq!(trigger.failures, 1);
        w.succeeded();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_that_cannot_be_watched_is_left_out_once() {
        let (_dir, root) = root();
        // Many directories, so that some come after the refused one in any walk order.
        for i in 0..20 {
            std::fs::create_dir_all(root.join(format!("d{i}/sub"))).unwrap();
        }
        let locked = root.join("d7");
        super::super::notifier::REFUSED
            .lock()
            .unwrap()
            .push(locked.clone());
        let mut w = Watch::start(opts(&root)).await.unwrap();
        match next(&mut w).await {
            Step::Unwatched(u) => {
                assert_eq!(u.len(), 1, "{u:?}");
                assert_eq!(u[0].path, locked);
            }
            other => panic!("unexpected {other:?}"),
        }
        match next(&mut w).await {
            Step::Backup { trigger, .. } => assert_eq!(trigger.reason, TriggerReason::Start),
            other => panic!("unexpected {other:?}"),
        }
        w.succeeded();
        // The rest is watched, deep directories and new ones included.
        for i in (0..20).filter(|i| *i != 7) {
            let f = root.join(format!("d{i}/sub/f"));
            std::fs::write(&f, b"x").unwrap();
            let t = backup_with(&mut w, &f).await;
            assert_ne!(t.reason, TriggerReason::Overflow, "{t:?}");
        }
        std::fs::create_dir(root.join("d3/new")).unwrap();
        backup_with(&mut w, &root.join("d3/new")).await;
        std::fs::write(root.join("d3/new/g"), b"y").unwrap();
        backup_with(&mut w, &root.join("d3/new/g")).await;
        // Many examinations later (every 50 ms): no backup without a change, no new report.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), w.next())
                .await
                .is_err(),
            "the watch is settled"
        );
        super::super::notifier::REFUSED
            .lock()
            .unwrap()
            .retain(|p| p != &locked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_path_that_cannot_be_watched_at_all_backs_up_only_once() {
        let (_dir, root) = root();
        super::super::notifier::REFUSED
            .lock()
            .unwrap()
            .push(root.clone());
        let mut w = Watch::start(opts(&root)).await.unwrap();
        match next(&mut w).await {
            Step::Unwatched(u) => assert_eq!(u[0].path, root),
            other => panic!("unexpected {other:?}"),
        }
        match next(&mut w).await {
            Step::Backup { trigger, .. } => assert_eq!(trigger.reason, TriggerReason::Start),
            other => panic!("unexpected {other:?}"),
        }
        w.succeeded();
        // Tried again every 50 ms: neither a backup nor a report each time.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), w.next())
                .await
                .is_err(),
            "the failures repeat nothing"
        );
        // Once it can be watched: one backup (what happened meanwhile is unknown).
        super::super::notifier::REFUSED
            .lock()
            .unwrap()
            .retain(|p| p != &root);
        match next(&mut w).await {
            Step::Backup { trigger, .. } => assert_eq!(trigger.reason, TriggerReason::Overflow),
            other => panic!("unexpected {other:?}"),
        }
        w.succeeded();
        std::fs::write(root.join("a"), b"1").unwrap();
        backup_with(&mut w, &root.join("a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settings_and_paths_are_checked() {
        let (_dir, root) = root();
        let mut o = opts(&root);
        o.timing.max_delay = Duration::from_millis(10);
        assert!(matches!(Watch::start(o).await, Err(WatchError::Usage(_))));
        let o = opts(&root.join("missing"));
        assert!(matches!(
            Watch::start(o).await,
            Err(WatchError::Stat { .. })
        ));
    }
}
