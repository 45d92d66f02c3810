//! Paths inside snapshots: `/home/a/file` resolved through the trees.

use std::sync::Arc;

use zaibei_format::{Id, Node, NodeKind, Tree};
use zaibei_repo::IndexedRepository;

use crate::ArchiveError;

/// What a path inside a snapshot names.
#[derive(Debug, Clone)]
pub enum Located {
    /// A directory: its node (`None` for the root) and its tree.
    Dir(Option<Node>, Arc<Tree>),
    /// Any other entry.
    Entry(Node),
}

/// Splits a snapshot path into components (empty and `.` components are dropped).
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// Resolves `path` (absolute inside the snapshot, `/` for the root) from the root tree `root`.
pub async fn locate(
    repo: &IndexedRepository,
    root: &Id,
    path: &[u8],
) -> Result<Located, ArchiveError> {
    let mut tree = repo.load_tree(root).await?;
    let mut node: Option<Node> = None;
    let parts = components(path);
    for (i, part) in parts.iter().enumerate() {
        let Some(n) = tree.find(part).cloned() else {
            return Err(ArchiveError::Usage(format!(
                "{} is not in the snapshot",
                String::from_utf8_lossy(path)
            )));
        };
        if n.kind == NodeKind::Dir {
            let sub = n
                .subtree
                .ok_or_else(|| ArchiveError::Internal("directory without subtree".into()))?;
            tree = repo.load_tree(&sub).await?;
            node = Some(n);
        } else if i + 1 == parts.len() {
            return Ok(Located::Entry(n));
        } else {
            return Err(ArchiveError::Usage(format!(
                "{} is not a directory in the snapshot",
                String::from_utf8_lossy(part)
            )));
        }
    }
    Ok(Located::Dir(node, tree))
}

/// Splits `SNAPSHOT:PATH` into the snapshot and the path (default `/`).
pub fn split_spec(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((s, p)) if !p.is_empty() => (s, p),
        Some((s, _)) => (s, "/"),
        None => (spec, "/"),
    }
}
