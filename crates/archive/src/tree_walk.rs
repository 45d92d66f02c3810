//! Walking the trees of a snapshot: every entry below a directory, in sorted depth-first order
//! (a directory comes before its contents), with an explicit stack so that depth is unbounded.
//!
//! ```no_run
//! # async fn f(repo: &zaibei_repo::IndexedRepository, root: zaibei_format::Id) -> Result<(), Box<dyn std::error::Error>> {
//! use zaibei_archive::tree_walk::TreeWalker;
//! let mut walk = TreeWalker::new(repo, repo.load_tree(&root).await?, Vec::new());
//! while let Some(entry) = walk.next().await? {
//!     println!("{}", String::from_utf8_lossy(&entry.path));
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;

use zaibei_format::{Id, Node, NodeKind, Tree};
use zaibei_repo::{IndexedRepository, RepoError};

/// A subtree that could not be loaded. The walk goes on with the entries after it.
#[derive(Debug, thiserror::Error)]
#[error("cannot read directory {}: {source}", String::from_utf8_lossy(.path))]
pub struct WalkError {
    /// Path of the directory whose contents could not be read.
    pub path: Vec<u8>,
    /// Why.
    pub source: RepoError,
}

/// One entry met by a [`TreeWalker`].
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Absolute path inside the snapshot (`/home/a/file`).
    pub path: Vec<u8>,
    /// Depth below the starting directory (its entries have depth 0).
    pub depth: usize,
    tree: Arc<Tree>,
    index: usize,
}

impl WalkEntry {
    /// The entry's node.
    pub fn node(&self) -> &Node {
        &self.tree.nodes[self.index]
    }

    /// The tree holding the entry.
    pub fn tree(&self) -> &Arc<Tree> {
        &self.tree
    }
}

struct Frame {
    tree: Arc<Tree>,
    next: usize,
    prefix: Vec<u8>,
}

/// Yields every entry below a directory in sorted depth-first order.
pub struct TreeWalker<'a> {
    repo: &'a IndexedRepository,
    stack: Vec<Frame>,
    /// The directory yielded last, to descend into on the next call: (subtree, path).
    descend: Option<(Id, Vec<u8>)>,
}

impl<'a> TreeWalker<'a> {
    /// A walk of the entries of `tree`, whose own path is `prefix` (empty for the snapshot's
    /// root, `/home/a` for a directory; no trailing slash).
    pub fn new(repo: &'a IndexedRepository, tree: Arc<Tree>, prefix: Vec<u8>) -> Self {
        TreeWalker {
            repo,
            stack: vec![Frame {
                tree,
                next: 0,
                prefix,
            }],
            descend: None,
        }
    }

    /// Do not descend into the directory returned by the last call to [`TreeWalker::next`].
    pub fn skip_subtree(&mut self) {
        self.descend = None;
    }

    /// The next entry, `None` at the end. An error names a directory whose tree could not be
    /// loaded; calling again goes on with the entries after it.
    pub async fn next(&mut self) -> Result<Option<WalkEntry>, WalkError> {
        if let Some((id, path)) = self.descend.take() {
            match self.repo.load_tree(&id).await {
                Ok(tree) => self.stack.push(Frame {
                    tree,
                    next: 0,
                    prefix: path,
                }),
                Err(source) => return Err(WalkError { path, source }),
            }
        }
        loop {
            let depth = self.stack.len().saturating_sub(1);
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(node) = frame.tree.nodes.get(frame.next) else {
                self.stack.pop();
                continue;
            };
            let index = frame.next;
            frame.next += 1;
            let mut path = Vec::with_capacity(frame.prefix.len() + 1 + node.name.len());
            path.extend_from_slice(&frame.prefix);
            path.push(b'/');
            path.extend_from_slice(&node.name);
            if node.kind == NodeKind::Dir
                && let Some(sub) = node.subtree
            {
                self.descend = Some((sub, path.clone()));
            }
            return Ok(Some(WalkEntry {
                path,
                depth,
                tree: Arc::clone(&frame.tree),
                index,
            }));
        }
    }
}

/// Joins the components of a snapshot path into the form [`TreeWalker::new`] takes: `/a/b`, or
/// empty for the root.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for c in crate::snapshot_path::components(path) {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}
