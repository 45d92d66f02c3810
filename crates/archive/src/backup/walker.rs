//! The directory walk of a backup: depth first with an explicit stack, directory handles
//! instead of paths (so depth beyond PATH_MAX works), and at most [`MAX_OPEN_DIRS`] handles
//! open. When a closed directory is resumed it is reopened through `..` of its child and its
//! device and inode are checked, so a directory moved during the backup is noticed instead of
//! walked in the wrong place.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};
use rustix::fs::{Mode, OFlags};
use zaibei_format::{Id, Node, NodeKind, PackKind, Tree};

use super::Context;
use super::assembler::{FileState, Pending, TreeJob};
use super::files::FileJob;
use super::prefetch::Prefetcher;
use super::sources::SourceNode;
use crate::ArchiveError;
use crate::fsmeta::{self, Meta, Names};
use crate::progress::Counters;

/// Most directory handles the walk keeps open at once.
pub const MAX_OPEN_DIRS: usize = 64;

/// Directories the walker completes before it hands them to the assembler together: the
/// assembler deals with an unchanged directory in a few microseconds and would otherwise
/// sleep and be woken (a system call on each side) for every one.
const TREE_JOBS_AT_ONCE: usize = 32;

struct Frame<'t> {
    fd: Option<OwnedFd>,
    identity: (u64, u64),
    /// Length of the walker's path buffer for this directory.
    path_len: usize,
    entries: Vec<Vec<u8>>,
    /// The scout's `lstat` of each entry, where it listed this directory.
    scanned: Vec<Option<Meta>>,
    next: usize,
    /// For directories on the way to a source: which children lead to sources.
    restrict: Option<&'t SourceNode>,
    parent_tree: Option<Arc<Tree>>,
    /// The id of `parent_tree` (`None` for the root).
    parent_tree_id: Option<Id>,
    /// This directory's node (`None` for the root).
    node: Option<Node>,
    children: Vec<Pending>,
    /// Device of the source this directory belongs to (for `--one-file-system`).
    source_dev: Option<u64>,
}

struct Walker<'c, 'a, 't> {
    ctx: &'c Context<'a>,
    file_tx: &'c Sender<FileJob>,
    tree_tx: &'c Sender<TreeJob>,
    /// Completed directories not yet sent to the assembler (in post-order).
    tree_jobs: Vec<TreeJob>,
    /// Loads the parent snapshot's trees ahead of the walk (when there is a parent).
    prefetch: Option<&'c Prefetcher>,
    names: Names,
    path: Vec<u8>,
    stack: Vec<Frame<'t>>,
    /// Frames below this index have no open handle.
    lowest_open: usize,
    open: usize,
    empty_tree: Option<Id>,
}

/// Walks the sources; returns the receiver of the root tree's id.
pub(crate) fn walk(
    ctx: &Context<'_>,
    trie: &SourceNode,
    parent_tree: Option<Arc<Tree>>,
    prefetch: Option<&Prefetcher>,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<TreeJob>,
) -> Result<Receiver<Id>, ArchiveError> {
    let root = rustix::fs::open(
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("opening", "/".as_ref(), e.into()))?;
    let st = rustix::fs::fstat(&root)
        .map_err(|e| ArchiveError::io("reading", "/".as_ref(), e.into()))?;
    let mut w = Walker {
        ctx,
        file_tx,
        tree_tx,
        tree_jobs: Vec::with_capacity(TREE_JOBS_AT_ONCE),
        prefetch,
        names: Names::default(),
        path: Vec::new(),
        stack: Vec::new(),
        lowest_open: 0,
        open: 1,
        empty_tree: None,
    };
    if let (Some(p), Some(t)) = (prefetch, &parent_tree) {
        p.enter(t);
    }
    w.stack.push(Frame {
        fd: Some(root),
        identity: fsmeta::identity(&st),
        path_len: 0,
        entries: trie.children.keys().cloned().collect(),
        scanned: Vec::new(),
        next: 0,
        restrict: Some(trie),
        parent_tree,
        parent_tree_id: None,
        node: None,
        children: Vec::new(),
        source_dev: None,
    });
    w.run()
}

impl<'t> Walker<'_, '_, 't> {
    fn run(&mut self) -> Result<Receiver<Id>, ArchiveError> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Err(ArchiveError::Internal("walk stack empty".into()));
            };
            if top.next < top.entries.len() {
                let name = std::mem::take(&mut top.entries[top.next]);
                let scanned = top.scanned.get_mut(top.next).and_then(Option::take);
                top.next += 1;
                self.visit(name, scanned)?;
                continue;
            }
            // Directory complete: hand its entries to the assembler.
            let Some(frame) = self.stack.pop() else {
                continue;
            };
            if let (Some(p), Some(t)) = (self.prefetch, &frame.parent_tree) {
                p.leave(t);
            }
            let (tx, rx) = bounded(1);
            self.tree_jobs.push(TreeJob {
                path: self.path.clone(),
                children: frame.children,
                parent: frame.parent_tree_id.zip(frame.parent_tree),
                reply: tx,
            });
            // Nothing waits for the assembler but the end of the walk: the root goes at once.
            if self.tree_jobs.len() >= TREE_JOBS_AT_ONCE || self.stack.is_empty() {
                for job in self.tree_jobs.drain(..) {
                    self.tree_tx
                        .send(job)
                        .map_err(|_| ArchiveError::Internal("tree assembler stopped".into()))?;
                }
            }
            if frame.fd.is_some() {
                self.open -= 1;
            }
            Counters::add(&self.ctx.counters.dirs, 1);
            let depth = self.stack.len();
            let Some(parent) = self.stack.last_mut() else {
                return Ok(rx);
            };
            if parent.fd.is_none() {
                let child_fd = frame
                    .fd
                    .as_ref()
                    .ok_or_else(|| ArchiveError::Internal("child directory closed".into()))?;
                let fd = rustix::fs::openat(
                    child_fd,
                    "..",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    ArchiveError::io(
                        "reopening",
                        bytes_path(&self.path[..parent.path_len]),
                        e.into(),
                    )
                })?;
                let st = rustix::fs::fstat(&fd)
                    .map_err(|e| ArchiveError::io("reading", bytes_path(&self.path), e.into()))?;
                if fsmeta::identity(&st) != parent.identity {
                    return Err(ArchiveError::Internal(format!(
                        "directory {} was moved during the backup; run the backup again",
                        String::from_utf8_lossy(&self.path[..parent.path_len])
                    )));
                }
                parent.fd = Some(fd);
                self.open += 1;
                self.lowest_open = depth - 1;
            }
            let node = frame
                .node
                .ok_or_else(|| ArchiveError::Internal("non-root frame without node".into()))?;
            parent.children.push(Pending::Dir { node, rx });
            self.path.truncate(parent.path_len);
        }
    }

    fn visit(&mut self, name: Vec<u8>, scanned: Option<Meta>) -> Result<(), ArchiveError> {
        let depth = self.stack.len() - 1;
        let frame_path_len = self.stack[depth].path_len;
        self.path.truncate(frame_path_len);
        self.path.push(b'/');
        self.path.extend_from_slice(&name);
        let outcome = self.visit_entry(depth, name, scanned);
        if !matches!(outcome, Ok(true)) {
            self.path.truncate(frame_path_len);
        }
        outcome.map(|_| ())
    }

    /// Handles one entry (`scanned`: the scout's `lstat` of it); returns true when it pushed a
    /// new frame.
    fn visit_entry(
        &mut self,
        depth: usize,
        name: Vec<u8>,
        scanned: Option<Meta>,
    ) -> Result<bool, ArchiveError> {
        let ctx = self.ctx;
        let frame = &self.stack[depth];
        let Some(dir) = frame.fd.as_ref() else {
            return Err(ArchiveError::Internal("visiting a closed directory".into()));
        };
        let dir = dir.as_fd();
        let source = frame.restrict.and_then(|r| r.children.get(&name));
        let selected = frame.restrict.is_none() || source.is_some_and(|s| s.selected);
        let explicit = source.is_some_and(|s| s.selected);
        // A directory is asked again: the walker opens it, and checks it is the one it saw.
        let scanned = scanned.filter(|m| m.kind() != Some(NodeKind::Dir));
        let lstat = || fsmeta::lstat_at(dir, &name).map(|st| Meta::of(&st));
        let meta = match scanned.map_or_else(lstat, Ok) {
            Ok(meta) => meta,
            Err(e) => {
                ctx.skipped
                    .record(&self.path, format!("cannot read metadata: {e}"));
                return Ok(false);
            }
        };
        let Some(mut node) = fsmeta::node_from_meta(name.clone(), &meta) else {
            ctx.skipped.record(&self.path, "unknown file type");
            return Ok(false);
        };
        let is_dir = node.kind == NodeKind::Dir;
        if selected && !explicit && ctx.excludes.is_excluded(&self.path, is_dir) {
            return Ok(false);
        }
        if !selected && !is_dir {
            ctx.skipped.record(
                &self.path,
                "a directory on the way to a backup source is not a directory",
            );
            return Ok(false);
        }
        node.user = self.names.user(node.uid);
        node.group = self.names.group(node.gid);
        // A reference count, not a copy: the parent's node is read in place.
        let parent_tree = frame.parent_tree.clone();
        let parent_node = parent_tree
            .as_deref()
            .and_then(|t| t.find(&name))
            .filter(|p| p.kind == node.kind);
        match node.kind {
            NodeKind::File => {
                self.visit_file(depth, node, parent_node)?;
                Ok(false)
            }
            NodeKind::Dir => {
                let parent_subtree = parent_node.and_then(|p| p.subtree);
                self.visit_dir(
                    depth,
                    node,
                    parent_subtree,
                    &meta,
                    source,
                    selected,
                    explicit,
                )
            }
            NodeKind::Symlink => {
                match fsmeta::readlink_at(dir, &name)
                    .and_then(|t| Ok((t, fsmeta::xattrs_at(dir, &name)?)))
                {
                    Ok((target, xattrs)) => {
                        node.target = Some(target);
                        node.xattrs = xattrs;
                        self.stack[depth].children.push(Pending::Ready(node));
                    }
                    Err(e) => ctx
                        .skipped
                        .record(&self.path, format!("cannot read symlink: {e}")),
                }
                Ok(false)
            }
            _ => {
                match fsmeta::xattrs_at(dir, &name) {
                    Ok(x) => {
                        node.xattrs = x;
                        self.stack[depth].children.push(Pending::Ready(node));
                    }
                    Err(e) => ctx
                        .skipped
                        .record(&self.path, format!("cannot read extended attributes: {e}")),
                }
                Ok(false)
            }
        }
    }

    fn visit_file(
        &mut self,
        depth: usize,
        mut node: Node,
        parent: Option<&Node>,
    ) -> Result<(), ArchiveError> {
        let ctx = self.ctx;
        if let Some(p) = parent
            && !ctx.opts.force
            && unchanged(p, &node)
            && p.content
                .iter()
                .all(|id| ctx.saver.has_blob(PackKind::Data, id))
        {
            // ctime unchanged: contents, mode, owner and xattrs are unchanged too.
            node.content.clone_from(&p.content);
            node.extents.clone_from(&p.extents);
            node.xattrs.clone_from(&p.xattrs);
            self.stack[depth].children.push(Pending::Ready(node));
            return Ok(());
        }
        let frame = &self.stack[depth];
        let Some(dir) = frame.fd.as_ref() else {
            return Err(ArchiveError::Internal("visiting a closed directory".into()));
        };
        let state = if frame
            .parent_tree
            .as_ref()
            .and_then(|t| t.find(&node.name))
            .is_some()
        {
            FileState::Changed
        } else {
            FileState::New
        };
        let fd = match open_noatime(dir.as_fd(), &node.name, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(e) => {
                ctx.skipped.record(&self.path, format!("cannot open: {e}"));
                return Ok(());
            }
        };
        let (tx, rx) = bounded(1);
        self.stack[depth].children.push(Pending::File { rx, state });
        self.file_tx
            .send(FileJob {
                fd,
                node,
                path: self.path.clone(),
                reply: tx,
            })
            .map_err(|_| ArchiveError::Internal("file workers stopped".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_dir(
        &mut self,
        depth: usize,
        mut node: Node,
        parent_subtree: Option<Id>,
        meta: &Meta,
        source: Option<&'t SourceNode>,
        selected: bool,
        explicit: bool,
    ) -> Result<bool, ArchiveError> {
        let ctx = self.ctx;
        let frame = &self.stack[depth];
        let Some(dir) = frame.fd.as_ref() else {
            return Err(ArchiveError::Internal("visiting a closed directory".into()));
        };
        let source_dev = if explicit {
            Some(node.device)
        } else {
            frame.source_dev
        };
        if ctx.opts.one_file_system
            && selected
            && !explicit
            && source_dev.is_some_and(|d| d != node.device)
        {
            // A mount point: keep the directory itself, not what is mounted on it.
            match fsmeta::xattrs_at(dir.as_fd(), &node.name) {
                Ok(x) => node.xattrs = x,
                Err(e) => tracing::debug!("xattrs of mount point: {e}"),
            }
            node.subtree = Some(self.empty_tree()?);
            self.stack[depth].children.push(Pending::Ready(node));
            return Ok(false);
        }
        let fd = match open_noatime(dir.as_fd(), &node.name, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) => {
                ctx.skipped
                    .record(&self.path, format!("cannot open directory: {e}"));
                return Ok(false);
            }
        };
        let fst = rustix::fs::fstat(&fd)
            .map_err(|e| ArchiveError::io("reading", bytes_path(&self.path), e.into()))?;
        if fsmeta::identity(&fst) != meta.identity() {
            ctx.skipped.record(&self.path, "replaced while being read");
            return Ok(false);
        }
        let restrict = if selected { None } else { source };
        let listing = match (restrict, ctx.opts.scout.as_deref()) {
            (None, Some(scout)) => scout.take(&fst),
            _ => None,
        };
        let (entries, scanned) = match (restrict, listing) {
            (Some(s), _) => (s.children.keys().cloned().collect(), Vec::new()),
            (None, Some(listing)) => listing.into_entries(),
            (None, None) => match fsmeta::list_dir(&fd) {
                Ok(e) => (e, Vec::new()),
                Err(e) => {
                    ctx.skipped
                        .record(&self.path, format!("cannot list directory: {e}"));
                    return Ok(false);
                }
            },
        };
        if restrict.is_none()
            && !explicit
            && ctx
                .opts
                .exclude_if_present
                .iter()
                .any(|m| entries.binary_search(m).is_ok())
        {
            return Ok(false);
        }
        node.xattrs = match fsmeta::xattrs_of_fd(fd.as_fd()) {
            Ok(x) => x,
            Err(e) => {
                ctx.skipped
                    .record(&self.path, format!("cannot read extended attributes: {e}"));
                return Ok(false);
            }
        };
        let parent_tree_id = parent_subtree;
        let parent_tree = match parent_tree_id {
            Some(id) => match self.load_parent_tree(&id) {
                Ok(t) => {
                    if let Some(p) = self.prefetch {
                        p.enter(&t);
                    }
                    Some(t)
                }
                Err(e) => {
                    tracing::warn!(
                        "parent tree of {} unusable: {e}",
                        String::from_utf8_lossy(&self.path)
                    );
                    None
                }
            },
            None => None,
        };
        self.stack.push(Frame {
            fd: Some(fd),
            identity: fsmeta::identity(&fst),
            path_len: self.path.len(),
            entries,
            scanned,
            next: 0,
            restrict,
            parent_tree_id: parent_tree_id.filter(|_| parent_tree.is_some()),
            parent_tree,
            node: Some(node),
            children: Vec::new(),
            source_dev,
        });
        self.open += 1;
        while self.open > MAX_OPEN_DIRS && self.lowest_open < self.stack.len() - 1 {
            if self.stack[self.lowest_open].fd.take().is_some() {
                self.open -= 1;
            }
            self.lowest_open += 1;
        }
        Ok(true)
    }

    /// The parent snapshot's tree `id`: the one the prefetch thread loaded (waiting if it is
    /// loading it now), otherwise read here (from the cache if it is there).
    fn load_parent_tree(&self, id: &Id) -> Result<Arc<Tree>, zaibei_repo::RepoError> {
        if let Some(tree) = self.prefetch.and_then(|p| p.take(id)) {
            return Ok(tree);
        }
        self.ctx.runtime.block_on(self.ctx.repo.take_tree(id))
    }

    fn empty_tree(&mut self) -> Result<Id, ArchiveError> {
        if let Some(id) = self.empty_tree {
            return Ok(id);
        }
        let id = self.ctx.saver.save_tree(&Tree::default())?;
        self.empty_tree = Some(id);
        Ok(id)
    }
}

/// The file has not changed since the parent snapshot.
fn unchanged(parent: &Node, now: &Node) -> bool {
    parent.size == now.size
        && parent.mtime == now.mtime
        && parent.ctime == now.ctime
        && parent.inode == now.inode
}

/// Opens with `O_NOATIME` (so reading does not change the source's access times), falling back
/// to a plain open where the caller does not own the file.
fn open_noatime(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    flags: OFlags,
) -> std::io::Result<OwnedFd> {
    match fsmeta::open_beneath(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            fsmeta::open_beneath(dir, name, flags, Mode::empty())
        }
        other => other,
    }
}

fn bytes_path(p: &[u8]) -> &std::path::Path {
    std::path::Path::new(std::ffi::OsStr::from_bytes(p))
}

use std::os::unix::ffi::OsStrExt;
