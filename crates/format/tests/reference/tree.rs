//! The generic decoding path of a tree (`cbor::decode` into values, then the fields one by
//! one, and back): the reference the one-pass decoder and encoder of `Tree` are compared
//! against.

use zaibei_format::FormatError;
use zaibei_format::cbor::{self, Value};
use zaibei_format::fields::{Fields, MapBuilder, id_value, value_to_id, value_to_u64};
use zaibei_format::magic::TREE_VERSION;
use zaibei_format::tree::{self, Node, NodeKind, Tree};

const WHAT: &str = "tree";

/// Encodes a tree body through `cbor::Value` (map keys sorted by `cbor::encode`).
pub fn encode(tree: &Tree) -> Vec<u8> {
    cbor::encode(
        &MapBuilder::new()
            .uint("v", TREE_VERSION)
            .value(
                "nodes",
                Value::Array(tree.nodes.iter().map(node_to_value).collect()),
            )
            .build(),
    )
}

fn node_to_value(node: &Node) -> Value {
    let mut m = MapBuilder::new()
        .bytes("name", &node.name)
        .text("type", node.kind.name())
        .uint("mode", u64::from(node.mode))
        .uint("uid", u64::from(node.uid))
        .uint("gid", u64::from(node.gid))
        .opt("user", node.user.as_deref().map(Value::text))
        .opt("group", node.group.as_deref().map(Value::text))
        .time("mtime", node.mtime)
        .time("atime", node.atime)
        .time("ctime", node.ctime)
        .uint("ino", node.inode)
        .uint("dev", node.device)
        .uint("nlink", node.links)
        .uint("size", node.size);
    match node.kind {
        NodeKind::File => {
            m = m.value(
                "content",
                Value::Array(node.content.iter().map(id_value).collect()),
            );
            if let Some(ext) = &node.extents {
                let v = ext
                    .iter()
                    .map(|&(o, l)| Value::Array(vec![Value::Uint(o), Value::Uint(l)]))
                    .collect();
                m = m.value("extents", Value::Array(v));
            }
        }
        NodeKind::Dir => {
            if let Some(s) = &node.subtree {
                m = m.id("subtree", s);
            }
        }
        NodeKind::Symlink => {
            if let Some(t) = &node.target {
                m = m.bytes("target", t);
            }
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => m = m.uint("rdev", node.rdev),
        NodeKind::Fifo | NodeKind::Socket => {}
    }
    if !node.xattrs.is_empty() {
        let v = node
            .xattrs
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::Bytes(k.clone()), Value::Bytes(v.clone())]))
            .collect();
        m = m.value("xattrs", Value::Array(v));
    }
    m.build()
}

/// Decodes a tree body through `cbor::Value`.
pub fn decode(body: &[u8]) -> Result<Tree, FormatError> {
    let value = cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
    let mut f = Fields::new(WHAT, value)?;
    f.version(TREE_VERSION)?;
    let mut nodes: Vec<Node> = Vec::new();
    for nv in f.array("nodes")? {
        let node = node_from_value(nv)?;
        if let Some(prev) = nodes.last()
            && prev.name >= node.name
        {
            return Err(FormatError::invalid(
                WHAT,
                format!(
                    "entry {:?} is duplicated or out of order",
                    String::from_utf8_lossy(&node.name)
                ),
            ));
        }
        nodes.push(node);
    }
    Ok(Tree { nodes })
}

fn node_from_value(v: Value) -> Result<Node, FormatError> {
    let mut f = Fields::new(WHAT, v)?;
    let name = f.bytes("name")?;
    tree::check_name(&name)?;
    let type_name = f.text("type")?;
    let kind = NodeKind::from_name(&type_name).ok_or_else(|| {
        FormatError::field(WHAT, "type", format!("unknown entry type {type_name:?}"))
    })?;
    let mode = f.u32("mode")?;
    if mode & !0o7777 != 0 {
        return Err(FormatError::field(
            WHAT,
            "mode",
            format!("{mode:o} has bits outside 0o7777"),
        ));
    }
    let mut node = Node {
        mode,
        uid: f.u32("uid")?,
        gid: f.u32("gid")?,
        user: f.opt_text("user")?,
        group: f.opt_text("group")?,
        mtime: f.time("mtime")?,
        atime: f.time("atime")?,
        ctime: f.time("ctime")?,
        inode: f.uint("ino")?,
        device: f.uint("dev")?,
        links: f.uint("nlink")?,
        size: f.uint("size")?,
        ..Node::new(name, kind)
    };
    match kind {
        NodeKind::File => {
            node.content = f
                .array("content")?
                .iter()
                .map(|v| value_to_id(WHAT, "content", v))
                .collect::<Result<_, _>>()?;
            if let Some(v) = f.take("extents") {
                node.extents = Some(decode_extents(v, node.size)?);
            }
        }
        NodeKind::Dir => node.subtree = Some(f.id("subtree")?),
        NodeKind::Symlink => node.target = Some(f.bytes("target")?),
        NodeKind::CharDevice | NodeKind::BlockDevice => node.rdev = f.uint("rdev")?,
        NodeKind::Fifo | NodeKind::Socket => {}
    }
    let mut prev: Option<Vec<u8>> = None;
    for xv in f.opt_array("xattrs")? {
        let Value::Array(pair) = xv else {
            return Err(FormatError::field(WHAT, "xattrs", "entry is not an array"));
        };
        let [Value::Bytes(k), Value::Bytes(v)] = <[Value; 2]>::try_from(pair)
            .map_err(|_| FormatError::field(WHAT, "xattrs", "entry is not a pair"))?
        else {
            return Err(FormatError::field(
                WHAT,
                "xattrs",
                "entry is not a pair of byte strings",
            ));
        };
        if k.is_empty() || k.contains(&0) || prev.as_ref().is_some_and(|p| *p >= k) {
            return Err(FormatError::field(
                WHAT,
                "xattrs",
                "names must be non-empty, without NUL, sorted and unique",
            ));
        }
        prev = Some(k.clone());
        node.xattrs.push((k, v));
    }
    Ok(node)
}

fn decode_extents(v: Value, size: u64) -> Result<Vec<(u64, u64)>, FormatError> {
    let Value::Array(items) = v else {
        return Err(FormatError::field(WHAT, "extents", "not an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut end_prev = 0u64;
    for item in items {
        let Value::Array(pair) = item else {
            return Err(FormatError::field(WHAT, "extents", "entry is not an array"));
        };
        let [o, l] = pair.as_slice() else {
            return Err(FormatError::field(
                WHAT,
                "extents",
                "entry is not [offset, length]",
            ));
        };
        let (o, l) = (
            value_to_u64(WHAT, "extents", o)?,
            value_to_u64(WHAT, "extents", l)?,
        );
        let end = o
            .checked_add(l)
            .filter(|&e| e <= size && l > 0 && o >= end_prev)
            .ok_or_else(|| {
                FormatError::field(
                    WHAT,
                    "extents",
                    "extents must be non-empty, ascending, disjoint and inside the file",
                )
            })?;
        end_prev = end;
        out.push((o, l));
    }
    Ok(out)
}
