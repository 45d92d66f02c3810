//! Encoding a tree body straight into bytes, keys already in canonical order, without building
//! CBOR values and sorting each map's keys (a backup encodes every directory that changed).
//!
//! The bytes are exactly those of the generic path (`cbor::encode` of the map of each node);
//! the format's property tests compare both on arbitrary trees.

use crate::Timestamp;
use crate::cbor::write_head;
use crate::magic::TREE_VERSION;

use super::{Node, NodeKind};

const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

/// The CBOR body `{"v": 1, "nodes": [...]}` of nodes sorted by name.
pub(super) fn encode(nodes: &[Node]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + nodes.iter().map(size_hint).sum::<usize>());
    write_head(&mut out, MAP, 2);
    text(&mut out, "v");
    write_head(&mut out, UINT, TREE_VERSION);
    text(&mut out, "nodes");
    write_head(&mut out, ARRAY, nodes.len() as u64);
    for node in nodes {
        encode_node(&mut out, node);
    }
    out
}

/// About the encoded size of a node, to allocate once.
fn size_hint(n: &Node) -> usize {
    160 + n.name.len() + 34 * n.content.len() + n.target.as_ref().map_or(0, Vec::len)
}

/// One node's map. Canonical order sorts keys by their encoding: shorter keys first, then
/// bytewise.
fn encode_node(out: &mut Vec<u8>, n: &Node) {
    let kind_field = match n.kind {
        NodeKind::File => 1 + usize::from(n.extents.is_some()),
        NodeKind::Dir => usize::from(n.subtree.is_some()),
        NodeKind::Symlink => usize::from(n.target.is_some()),
        NodeKind::CharDevice | NodeKind::BlockDevice => 1,
        NodeKind::Fifo | NodeKind::Socket => 0,
    };
    let entries = 12
        + usize::from(n.user.is_some())
        + usize::from(n.group.is_some())
        + usize::from(!n.xattrs.is_empty())
        + kind_field;
    write_head(out, MAP, entries as u64);
    uint(out, "dev", n.device);
    uint(out, "gid", u64::from(n.gid));
    uint(out, "ino", n.inode);
    uint(out, "uid", u64::from(n.uid));
    uint(out, "mode", u64::from(n.mode));
    text(out, "name");
    bytes(out, &n.name);
    if matches!(n.kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        uint(out, "rdev", n.rdev);
    }
    uint(out, "size", n.size);
    text(out, "type");
    text(out, n.kind.name());
    if let Some(user) = &n.user {
        text(out, "user");
        text(out, user);
    }
    time(out, "atime", n.atime);
    time(out, "ctime", n.ctime);
    if let Some(group) = &n.group {
        text(out, "group");
        text(out, group);
    }
    time(out, "mtime", n.mtime);
    uint(out, "nlink", n.links);
    if let (NodeKind::Symlink, Some(target)) = (n.kind, &n.target) {
        text(out, "target");
        bytes(out, target);
    }
    if !n.xattrs.is_empty() {
        text(out, "xattrs");
        write_head(out, ARRAY, n.xattrs.len() as u64);
        for (name, value) in &n.xattrs {
            write_head(out, ARRAY, 2);
            bytes(out, name);
            bytes(out, value);
        }
    }
    match n.kind {
        NodeKind::File => {
            text(out, "content");
            write_head(out, ARRAY, n.content.len() as u64);
            for id in &n.content {
                bytes(out, id.as_bytes());
            }
            if let Some(extents) = &n.extents {
                text(out, "extents");
                write_head(out, ARRAY, extents.len() as u64);
                for &(offset, length) in extents {
                    write_head(out, ARRAY, 2);
                    write_head(out, UINT, offset);
                    write_head(out, UINT, length);
                }
            }
        }
        NodeKind::Dir => {
            if let Some(subtree) = &n.subtree {
                text(out, "subtree");
                bytes(out, subtree.as_bytes());
            }
        }
        _ => {}
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    write_head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

fn uint(out: &mut Vec<u8>, key: &str, n: u64) {
    text(out, key);
    write_head(out, UINT, n);
}

/// `[seconds, nanoseconds]`, seconds as a signed integer.
fn time(out: &mut Vec<u8>, key: &str, t: Timestamp) {
    text(out, key);
    write_head(out, ARRAY, 2);
    if t.secs >= 0 {
        write_head(out, UINT, t.secs as u64);
    } else {
        write_head(out, NINT, !(t.secs as u64));
    }
    write_head(out, UINT, u64::from(t.nanos));
}
