//! Entries of snapshots as people and scripts see them: `ls -l` lines and JSON objects.

use serde::Serialize;
use zaibei_format::{Node, NodeKind};

use crate::output::{hex_if_not_utf8, path, time, time_short};

/// `drwxr-xr-x`: the type letter and permissions, setuid, setgid and sticky bits included.
pub fn mode_string(kind: NodeKind, mode: u32) -> String {
    let t = match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, set, unset) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S')]
        .into_iter()
        .chain([(0, 0o1000, 't', 'T')])
    {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => set,
            (true, false) => unset,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// A node as scripts see it (`ls --json`, `find --json`).
#[derive(Serialize)]
pub struct NodeJson {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: u32,
    permissions: String,
    uid: u32,
    gid: u32,
    user: Option<String>,
    group: Option<String>,
    size: u64,
    mtime: String,
    atime: String,
    ctime: String,
    inode: u64,
    links: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtree: Option<String>,
    xattrs: Vec<String>,
    content_blobs: usize,
    sparse: bool,
}

impl NodeJson {
    /// The node at `path`.
    pub fn new(p: &[u8], n: &Node) -> Self {
        let device = matches!(n.kind, NodeKind::CharDevice | NodeKind::BlockDevice);
        NodeJson {
            path: path(p),
            path_hex: hex_if_not_utf8(p),
            kind: n.kind.name(),
            mode: n.mode,
            permissions: mode_string(n.kind, n.mode),
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            size: n.size,
            mtime: time(n.mtime),
            atime: time(n.atime),
            ctime: time(n.ctime),
            inode: n.inode,
            links: n.links,
            target: n.target.as_deref().map(crate::output::path),
            target_hex: n.target.as_deref().and_then(hex_if_not_utf8),
            rdev: device.then_some(n.rdev),
            subtree: n.subtree.map(|s| s.to_hex()),
            xattrs: n.xattrs.iter().map(|(k, _)| path(k)).collect(),
            content_blobs: n.content.len(),
            sparse: n.extents.is_some(),
        }
    }
}

/// One `ls -l` line.
pub fn long_line(p: &[u8], n: &Node) -> String {
    let owner = n.user.clone().unwrap_or_else(|| n.uid.to_string());
    let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
    let size = match n.kind {
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            format!(
                "{},{}",
                rustix::fs::major(n.rdev),
                rustix::fs::minor(n.rdev)
            )
        }
        _ => n.size.to_string(),
    };
    let mut line = format!(
        "{} {owner:<8} {group:<8} {size:>10} {} {}",
        mode_string(n.kind, n.mode),
        time_short(n.mtime),
        path(p)
    );
    if let Some(t) = &n.target {
        line.push_str(" -> ");
        line.push_str(&path(t));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::Dir, 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
