//! The paths given to a backup, as a trie of path components.
//!
//! The snapshot's root tree mirrors absolute paths: backing up `/home/a` and `/etc` gives a
//! root with `etc` and `home`, and `home` holding only `a`. Directories on the way to a source
//! are stored with their own metadata but only the selected children.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::ArchiveError;

/// One component of the trie.
#[derive(Debug, Default)]
pub struct SourceNode {
    /// Components below this one that lead to sources.
    pub children: BTreeMap<Vec<u8>, SourceNode>,
    /// True when this path was given as a source (everything below it is backed up).
    pub selected: bool,
}

/// Normalises source paths: absolute, symlinks in the parent directories resolved, the final
/// component kept as given (a symlink given as source is backed up as a symlink).
pub fn normalise(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ArchiveError> {
    let cwd = std::env::current_dir()
        .map_err(|e| ArchiveError::io("reading the current directory", Path::new("."), e))?;
    let mut out = Vec::new();
    for p in paths {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => {
                    clean.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let normalised = match (clean.parent(), clean.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = std::fs::canonicalize(parent)
                    .map_err(|e| ArchiveError::io("resolving source path", parent, e))?;
                parent.join(name)
            }
            _ => clean,
        };
        std::fs::symlink_metadata(&normalised)
            .map_err(|e| ArchiveError::io("reading source", &normalised, e))?;
        out.push(normalised);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Builds the trie of normalised absolute paths.
pub fn build_trie(paths: &[PathBuf]) -> SourceNode {
    let mut root = SourceNode::default();
    for p in paths {
        let mut node = &mut root;
        for c in p.components() {
            if let Component::Normal(n) = c {
                node = node.children.entry(n.as_bytes().to_vec()).or_default();
            }
        }
        node.selected = true;
    }
    // A source inside another source adds nothing.
    fn prune(n: &mut SourceNode) {
        if n.selected {
            n.children.clear();
        }
        n.children.values_mut().for_each(prune);
    }
    prune(&mut root);
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sources_collapse() {
        let t = build_trie(&[
            PathBuf::from("/a/b"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/d"),
        ]);
        let a = &t.children[b"a".as_slice()];
        assert!(!a.selected);
        assert!(a.children[b"b".as_slice()].selected);
        assert!(a.children[b"b".as_slice()].children.is_empty());
        assert!(t.children[b"d".as_slice()].selected);
    }
}
