//! The restore walk: depth first over the snapshot's trees with an explicit stack, creating
//! entries below directory handles it opened itself, at most [`MAX_OPEN_DIRS`] handles open.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel::Sender;
use rustix::fs::{AtFlags, Mode, OFlags};
use zaibei_format::{Node, NodeKind, Tree};

use super::files::{self, FileJob, OpenDir, Queued};
use super::{Includes, Shared, meta};
use crate::ArchiveError;
use crate::exclude::Excludes;
use crate::fsmeta;
use crate::progress::Counters;
use crate::snapshot_path::Located;

/// Most directory handles the restore keeps open at once.
pub const MAX_OPEN_DIRS: usize = 64;

struct Frame {
    fd: Option<Arc<OpenDir>>,
    identity: (u64, u64),
    created: bool,
    /// Name in the parent directory (empty for the target itself).
    name: Vec<u8>,
    /// Metadata to apply when the directory is complete (`None` for the target).
    node: Option<Node>,
    tree: Arc<Tree>,
    next: usize,
    path_len: usize,
    /// The directory itself matched the include patterns (so all below is included).
    included: bool,
}

/// A finished directory whose metadata waits for writers to create the last of its files.
struct Deferred {
    dir: Arc<OpenDir>,
    node: Node,
    /// Its path in the snapshot (for messages).
    path: Vec<u8>,
}

/// Where the first name of a hard-linked inode was restored.
#[derive(Clone)]
struct FirstName {
    /// Components below the target.
    components: Vec<Vec<u8>>,
    /// Its path in the snapshot.
    path: Vec<u8>,
}

struct Walker<'s, 'a> {
    shared: &'s Shared<'a>,
    includes: &'s Includes,
    excludes: &'s Excludes,
    file_tx: Sender<Queued>,
    root: OwnedFd,
    path: Vec<u8>,
    stack: Vec<Frame>,
    open: usize,
    lowest_open: usize,
    /// First restored name of each hard-linked inode.
    links: HashMap<(u64, u64), FirstName>,
    /// Snapshot paths made hard links to each first name (keyed by its snapshot path).
    linked: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// Finished directories waiting for their files, at most a few: only files queued or
    /// being created are pending, and the queue is bounded.
    deferred: Vec<Deferred>,
}

fn io_err(what: &str, e: impl Into<std::io::Error>) -> String {
    format!("{what}: {}", e.into())
}

pub(crate) fn run(
    shared: &Shared<'_>,
    located: Located,
    base: Vec<u8>,
    includes: &Includes,
    excludes: &Excludes,
) -> Result<(), ArchiveError> {
    let target = &shared.opts.target;
    let open_target = || {
        rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("opening target", target, e.into()))
    };
    let root = open_target()?;
    let st = rustix::fs::fstat(&root)
        .map_err(|e| ArchiveError::io("reading target", target, e.into()))?;
    // A directory's contents go into the target, and its metadata onto the target once they
    // are restored; a single entry goes into the target under its name.
    let (root_node, tree, base) = match located {
        Located::Dir(node, tree) => (node, tree, base),
        Located::Entry(node) => {
            let parent_len = base.iter().rposition(|&b| b == b'/').unwrap_or(0);
            (
                None,
                Arc::new(Tree { nodes: vec![node] }),
                base[..parent_len].to_vec(),
            )
        }
    };
    let workers = super::writer_count(shared.opts.workers);
    let (file_tx, file_rx) = crossbeam_channel::bounded::<Queued>(workers * 4);
    // Each file of a batch is an open handle: the batches together stay within a budget well
    // under the usual limit of 1024 open files, however many writers there are.
    let batch_files = (files::BATCHED_OPEN_FILES / workers).clamp(1, super::prefetch::BATCH_FILES);
    std::thread::scope(|scope| -> Result<(), ArchiveError> {
        let mut handles = Vec::new();
        for i in 0..workers {
            let rx = file_rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("zaibei-write-{i}"))
                    .spawn_scoped(scope, move || files::run_worker(shared, rx, batch_files))
                    .map_err(|e| ArchiveError::Internal(format!("starting a worker: {e}")))?,
            );
        }
        drop(file_rx);
        let included = includes.all() || includes.matches(&base, true);
        let mut w = Walker {
            shared,
            includes,
            excludes,
            file_tx,
            root: open_target()?,
            path: base.clone(),
            stack: vec![Frame {
                fd: Some(OpenDir::new(root)),
                identity: fsmeta::identity(&st),
                created: true,
                name: Vec::new(),
                node: root_node,
                tree,
                next: 0,
                path_len: base.len(),
                included,
            }],
            open: 1,
            lowest_open: 0,
            links: HashMap::new(),
            linked: HashMap::new(),
            deferred: Vec::new(),
        };
        let result = w.walk();
        let linked = std::mem::take(&mut w.linked);
        let deferred = std::mem::take(&mut w.deferred);
        drop(w);
        for h in handles {
            let _ = h.join();
        }
        // Every file exists now (or has failed): the last directories get their metadata.
        for d in deferred {
            apply_dir_meta(shared, &d.dir, &d.node, &d.path);
        }
        // A file whose data could not be written is wrong under every name it has.
        shared.failures.extend_to_links(&linked);
        result
    })
}

impl Walker<'_, '_> {
    fn walk(&mut self) -> Result<(), ArchiveError> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(());
            };
            if top.next < top.tree.nodes.len() {
                let node = top.tree.nodes[top.next].clone();
                top.next += 1;
                let len = top.path_len;
                self.path.truncate(len);
                self.path.push(b'/');
                self.path.extend_from_slice(&node.name);
                if !self.visit(node)? {
                    self.path.truncate(len);
                }
                continue;
            }
            let Some(frame) = self.stack.pop() else {
                return Ok(());
            };
            if let (Some(dir), Some(node)) = (frame.fd.as_ref(), frame.node) {
                if dir.has_pending() {
                    self.deferred.push(Deferred {
                        dir: Arc::clone(dir),
                        node,
                        path: self.path.clone(),
                    });
                } else {
                    apply_dir_meta(self.shared, dir, &node, &self.path);
                }
                Counters::add(&self.shared.counters.dirs, 1);
            }
            self.apply_finished_deferred();
            if frame.fd.is_some() {
                self.open -= 1;
            }
            let depth = self.stack.len();
            let Some(parent) = self.stack.last_mut() else {
                return Ok(());
            };
            if parent.created && parent.fd.is_none() {
                let child = frame.fd.as_ref().ok_or_else(|| {
                    ArchiveError::Internal("restore: child directory closed".into())
                })?;
                let fd = rustix::fs::openat(
                    child,
                    "..",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| ArchiveError::Internal(io_err("reopening a restored directory", e)))?;
                let st = rustix::fs::fstat(&fd).map_err(|e| {
                    ArchiveError::Internal(io_err("reading a restored directory", e))
                })?;
                if fsmeta::identity(&st) != parent.identity {
                    return Err(ArchiveError::Internal(
                        "a restored directory was moved during the restore".into(),
                    ));
                }
                parent.fd = Some(OpenDir::new(fd));
                self.open += 1;
                self.lowest_open = depth - 1;
            }
            self.path.truncate(parent.path_len);
        }
    }

    /// Applies the metadata of deferred directories whose files all exist now.
    fn apply_finished_deferred(&mut self) {
        let shared = self.shared;
        self.deferred.retain(|d| {
            if d.dir.has_pending() {
                return true;
            }
            apply_dir_meta(shared, &d.dir, &d.node, &d.path);
            false
        });
    }

    fn outcome(&self, f: impl FnOnce(&mut super::RestoreOutcome)) {
        f(&mut self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner()));
    }

    /// Handles one entry; returns true when it pushed a frame.
    fn visit(&mut self, node: Node) -> Result<bool, ArchiveError> {
        if let Err(e) = zaibei_format::tree::check_name(&node.name) {
            self.shared.failures.record(&self.path, e.to_string());
            return Ok(false);
        }
        let is_dir = node.kind == NodeKind::Dir;
        if self.excludes.is_excluded(&self.path, is_dir) {
            return Ok(false);
        }
        let depth = self.stack.len() - 1;
        let included = self.stack[depth].included || self.includes.matches(&self.path, is_dir);
        if !is_dir {
            if !included {
                return Ok(false);
            }
            if let Err(e) = self.ensure_created(depth) {
                self.shared.failures.record(&self.path, e);
                return Ok(false);
            }
            if let Err(e) = self.restore_entry(depth, node) {
                self.shared.failures.record(&self.path, e);
            }
            return Ok(false);
        }
        let Some(sub) = node.subtree else {
            self.shared
                .failures
                .record(&self.path, "directory without subtree");
            return Ok(false);
        };
        // Kept only while its directory is open, not in the cache (a subtree that occurs
        // twice is decoded twice).
        let tree = match self
            .shared
            .runtime
            .block_on(self.shared.repo.take_tree(&sub))
        {
            Ok(t) => t,
            Err(e) => {
                self.shared
                    .failures
                    .record(&self.path, format!("cannot read its tree: {e}"));
                return Ok(false);
            }
        };
        self.stack.push(Frame {
            fd: None,
            identity: (0, 0),
            created: false,
            name: node.name.clone(),
            node: Some(node),
            tree,
            next: 0,
            path_len: self.path.len(),
            included,
        });
        if included && let Err(e) = self.ensure_created(depth + 1) {
            self.shared.failures.record(&self.path, e);
            self.stack.pop();
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates (or opens) every directory of the stack up to `depth` that does not exist yet.
    fn ensure_created(&mut self, depth: usize) -> Result<(), String> {
        let Some(first) = (0..=depth).find(|&i| !self.stack[i].created) else {
            return Ok(());
        };
        for i in first..=depth {
            let parent = self.stack[i - 1]
                .fd
                .as_ref()
                .ok_or("restore: parent directory closed")?;
            let fd = mkdir_or_open(parent.as_fd(), &self.stack[i].name)?;
            let st = rustix::fs::fstat(&fd).map_err(|e| io_err("reading directory", e))?;
            let f = &mut self.stack[i];
            f.identity = fsmeta::identity(&st);
            f.fd = Some(OpenDir::new(fd));
            f.created = true;
            self.open += 1;
        }
        while self.open > MAX_OPEN_DIRS && self.lowest_open < self.stack.len() - 1 {
            if self.stack[self.lowest_open].fd.take().is_some() {
                self.open -= 1;
            }
            self.lowest_open += 1;
        }
        Ok(())
    }

    fn dir(&self, depth: usize) -> Result<BorrowedFd<'_>, String> {
        self.open_dir(depth).map(|d| d.as_fd())
    }

    fn open_dir(&self, depth: usize) -> Result<&Arc<OpenDir>, String> {
        self.stack[depth]
            .fd
            .as_ref()
            .ok_or_else(|| "restore: directory closed".to_string())
    }

    fn restore_entry(&mut self, depth: usize, node: Node) -> Result<(), String> {
        match node.kind {
            NodeKind::File => self.restore_file(depth, node),
            NodeKind::Symlink => {
                let dir = self.dir(depth)?;
                let target = node.target.as_deref().ok_or("symlink without target")?;
                let keep = match fsmeta::lstat_at(dir, &node.name) {
                    Ok(st) if fsmeta::stat_kind(&st) == Some(NodeKind::Symlink) => {
                        fsmeta::readlink_at(dir, &node.name).ok().as_deref() == Some(target)
                    }
                    Ok(st) => {
                        files::remove_existing(dir, &node.name, &st)?;
                        false
                    }
                    Err(_) => false,
                };
                if !keep {
                    let _ = rustix::fs::unlinkat(dir, node.name.as_slice(), AtFlags::empty());
                    rustix::fs::symlinkat(target, dir, node.name.as_slice())
                        .map_err(|e| io_err("creating symlink", e))?;
                }
                meta::apply_at(dir, &node.name, &node).map_err(|e| e.to_string())?;
                self.outcome(|o| o.others += 1);
                Ok(())
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Socket => {
                let dir = self.dir(depth)?;
                let ft = fsmeta::file_type_of(node.kind);
                let keep = match fsmeta::lstat_at(dir, &node.name) {
                    Ok(st)
                        if fsmeta::stat_kind(&st) == Some(node.kind)
                            && fsmeta::stat_rdev(&st) == node.rdev =>
                    {
                        true
                    }
                    Ok(st) => {
                        files::remove_existing(dir, &node.name, &st)?;
                        false
                    }
                    Err(_) => false,
                };
                if !keep {
                    rustix::fs::mknodat(
                        dir,
                        node.name.as_slice(),
                        ft,
                        Mode::from_raw_mode(0o600),
                        node.rdev as _,
                    )
                    .map_err(|e| io_err(&format!("creating {}", node.kind.name()), e))?;
                }
                meta::apply_at(dir, &node.name, &node).map_err(|e| e.to_string())?;
                self.outcome(|o| o.others += 1);
                Ok(())
            }
            NodeKind::Dir => Err("internal: directory handled as entry".into()),
        }
    }

    /// Queues a file for a writer, which creates it. A file with other names is opened here,
    /// so that those names can be linked to it as the walk meets them.
    fn restore_file(&mut self, depth: usize, node: Node) -> Result<(), String> {
        if node.links <= 1 {
            let job = Queued::create(self.open_dir(depth)?, node, self.path.clone());
            return self
                .file_tx
                .send(job)
                .map_err(|_| "restore workers stopped".to_string());
        }
        let key = (node.device, node.inode);
        if let Some(first) = self.links.get(&key).cloned() {
            match self.link(depth, &node, &first.components) {
                Ok(()) => {
                    self.linked
                        .entry(first.path)
                        .or_default()
                        .push(self.path.clone());
                    self.outcome(|o| o.others += 1);
                    return Ok(());
                }
                Err(e) => tracing::warn!(
                    "hard link of {} not restored as a link ({e}); writing a copy",
                    String::from_utf8_lossy(&self.path)
                ),
            }
        }
        let (fd, created) = files::open_or_create(self.open_dir(depth)?, &node)?;
        let components = self.stack[1..=depth]
            .iter()
            .map(|f| f.name.clone())
            .chain([node.name.clone()])
            .collect();
        self.links.insert(
            key,
            FirstName {
                components,
                path: self.path.clone(),
            },
        );
        self.file_tx
            .send(Queued::Open(FileJob {
                fd,
                node,
                path: self.path.clone(),
                created,
            }))
            .map_err(|_| "restore workers stopped".to_string())
    }

    /// Makes `node` a hard link to the already restored `first` (components below the target).
    fn link(&self, depth: usize, node: &Node, first: &[Vec<u8>]) -> Result<(), String> {
        let (name, parents) = first.split_last().ok_or("empty link path")?;
        let mut dir = rustix::io::fcntl_dupfd_cloexec(&self.root, 0)
            .map_err(|e| io_err("duplicating handle", e))?;
        for c in parents {
            dir = fsmeta::open_beneath(
                dir.as_fd(),
                c,
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .map_err(|e| io_err("opening link source", e))?;
        }
        let here = self.dir(depth)?;
        let source =
            fsmeta::lstat_at(dir.as_fd(), name).map_err(|e| io_err("reading link source", e))?;
        if let Ok(st) = fsmeta::lstat_at(here, &node.name) {
            if fsmeta::identity(&st) == fsmeta::identity(&source) {
                return Ok(());
            }
            files::remove_existing(here, &node.name, &st)?;
        }
        rustix::fs::linkat(
            dir.as_fd(),
            name.as_slice(),
            here,
            node.name.as_slice(),
            AtFlags::empty(),
        )
        .map_err(|e| io_err("creating hard link", e))
    }
}

/// Creates directory `name` in `dir` (or opens it if it exists), replacing a non-directory.
fn mkdir_or_open(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, String> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            let st =
                fsmeta::lstat_at(dir, name).map_err(|e| io_err("reading existing entry", e))?;
            if fsmeta::stat_kind(&st) != Some(NodeKind::Dir) {
                files::remove_existing(dir, name, &st)?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| io_err("creating directory", e))?;
            }
        }
        Err(e) => return Err(io_err("creating directory", e)),
    }
    fsmeta::open_beneath(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| io_err("opening directory", e))
}

/// Applies a finished directory's metadata, counting it or recording why it failed.
fn apply_dir_meta(shared: &Shared<'_>, dir: &OpenDir, node: &Node, path: &[u8]) {
    match meta::apply_to_fd(dir.as_fd(), node, None) {
        Ok(()) => {
            shared
                .outcome
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .dirs += 1
        }
        Err(e) => shared.failures.record(path, e.to_string()),
    }
}
