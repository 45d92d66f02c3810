//! Trees: the entries of one directory.
//!
//! A tree is a blob of kind `tree` whose plaintext is the CBOR body `{"v": 1, "nodes": [node...]}`
//! with nodes sorted by the bytes of their names, names unique. A tree's id is the keyed hash of
//! that body, so an unchanged directory always has the same id.
//!
//! Every name is checked on decoding: not empty, not `.` or `..`, without `/` or NUL. A tree that
//! breaks these rules is refused as a whole, so a hostile repository cannot make restore write
//! outside its target.

mod decode;
mod encode;

use crate::{FormatError, Id, Timestamp};

const WHAT: &str = "tree";

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix domain socket.
    Socket,
}

impl NodeKind {
    /// Stable name used in trees.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }

    /// Parses a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "file" => NodeKind::File,
            "dir" => NodeKind::Dir,
            "symlink" => NodeKind::Symlink,
            "fifo" => NodeKind::Fifo,
            "chardev" => NodeKind::CharDevice,
            "blockdev" => NodeKind::BlockDevice,
            "socket" => NodeKind::Socket,
            _ => return None,
        })
    }
}

/// One entry of a directory, with all its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// File name: arbitrary bytes except `/` and NUL, not `.` or `..`, not empty.
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's numeric id.
    pub uid: u32,
    /// Group's numeric id.
    pub gid: u32,
    /// Owner's name at backup time, if known.
    pub user: Option<String>,
    /// Group's name at backup time, if known.
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Status-change time (kept for change detection; cannot be restored).
    pub ctime: Timestamp,
    /// Inode number at backup time.
    pub inode: u64,
    /// Device of the filesystem holding the entry at backup time.
    pub device: u64,
    /// Hard-link count at backup time.
    pub links: u64,
    /// Size in bytes (files: logical size; symlinks: target length).
    pub size: u64,
    /// Files: ids of the data blobs holding the contents, in order.
    pub content: Vec<Id>,
    /// Files with holes: the data extents `(offset, length)` in ascending order; the content
    /// blobs hold these extents concatenated, everything else is a hole. `None`: no holes.
    pub extents: Option<Vec<(u64, u64)>>,
    /// Directories: id of the subtree.
    pub subtree: Option<Id>,
    /// Symlinks: target, as raw bytes.
    pub target: Option<Vec<u8>>,
    /// Devices: the device number (`st_rdev`).
    pub rdev: u64,
    /// Extended attributes, POSIX ACLs included (`system.posix_acl_*`), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// A node of `kind` named `name` with every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::default(),
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            links: 0,
            size: 0,
            content: Vec::new(),
            extents: None,
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Checks that `name` is a single, harmless path component.
pub fn check_name(name: &[u8]) -> Result<(), FormatError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(FormatError::field(
            WHAT,
            "name",
            format!(
                "{:?} is not a valid file name (empty, '.', '..', or contains '/' or NUL)",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok(())
}

/// The entries of one directory, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the nodes by name; fails on a duplicate name.
    pub fn sort_and_check(&mut self) -> Result<(), FormatError> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for w in self.nodes.windows(2) {
            if w[0].name == w[1].name {
                return Err(FormatError::invalid(
                    WHAT,
                    format!(
                        "duplicate entry name {:?}",
                        String::from_utf8_lossy(&w[0].name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The CBOR body (the blob's plaintext). Nodes must already be sorted.
    pub fn encode(&self) -> Vec<u8> {
        encode::encode(&self.nodes)
    }

    /// Decodes and validates a tree body: valid names, strictly ascending (so no duplicates).
    pub fn decode(body: &[u8]) -> Result<Self, FormatError> {
        Ok(Tree {
            nodes: decode::decode(body)?,
        })
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
