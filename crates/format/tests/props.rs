//! Property tests: every encoder/decoder of the format round-trips, and no decoder panics on
//! arbitrary or mutated input.

use proptest::prelude::*;
use zaibei_crypto::{PasswordKdf, SecretKey, Suite};
use zaibei_format::cbor::{self, Value};
use zaibei_format::pack::{self, PackBlob};
use zaibei_format::sealed::{SealedType, open_object, seal_object};
use zaibei_format::*;

mod reference;

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Nint),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(|entries| {
                // Deduplicate keys by their encoding, as a canonical map must.
                let mut seen = std::collections::BTreeSet::new();
                Value::Map(
                    entries
                        .into_iter()
                        .filter(|(k, _)| seen.insert(cbor::encode(k)))
                        .collect(),
                )
            }),
        ]
    })
}

/// Map keys of the format's schemas, so that generated maps look like real objects.
const SCHEMA_KEYS: &[&str] = &[
    "v",
    "nodes",
    "name",
    "type",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "size",
    "content",
    "target",
    "xattrs",
    "dev",
    "ino",
    "nlink",
    "rdev",
    "packs",
    "blobs",
    "salt",
    "supersedes",
    "tree",
    "trees",
    "data",
    "paths",
    "hostname",
    "username",
    "parent",
    "original",
    "program",
    "summary",
    "generation",
    "previous",
    "kind",
    "time",
    "tags",
    "excludes",
    "mtime",
    "atime",
    "ctime",
    "entries",
    "site",
    "epoch",
    "snapshots",
];

/// CBOR values shaped like the format's objects: maps keyed by schema names (a `v` of 1 most
/// of the time), with arbitrary values below.
fn arb_schema_value() -> impl Strategy<Value = Value> {
    let key = proptest::sample::select(SCHEMA_KEYS).prop_map(|k| Value::Text(k.to_owned()));
    let leaf = prop_oneof![
        (0u64..4).prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Nint),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        proptest::collection::vec(any::<u8>(), 32..=32).prop_map(Value::Bytes),
        ".{0,12}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(5, 96, 8, move |inner| {
        let key = key.clone();
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            (
                proptest::collection::vec((key, inner), 0..10),
                any::<bool>()
            )
                .prop_map(|(entries, versioned)| {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut entries: Vec<(Value, Value)> = entries
                        .into_iter()
                        .filter(|(k, _)| seen.insert(cbor::encode(k)))
                        .collect();
                    if versioned && !seen.contains(&cbor::encode(&Value::Text("v".into()))) {
                        entries.push((Value::Text("v".into()), Value::Uint(1)));
                    }
                    sort_maps(Value::Map(entries))
                }),
        ]
    })
}

fn sort_maps(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(sort_maps).collect()),
        Value::Map(m) => {
            let mut m: Vec<(Value, Value)> = m
                .into_iter()
                .map(|(k, v)| (sort_maps(k), sort_maps(v)))
                .collect();
            m.sort_by_key(|(k, _)| cbor::encode(k));
            Value::Map(m)
        }
        other => other,
    }
}

fn arb_id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

fn arb_time() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Timestamp { secs: s, nanos: n })
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..255,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn arb_node() -> impl Strategy<Value = Node> {
    let kinds = prop_oneof![
        Just(NodeKind::File),
        Just(NodeKind::Dir),
        Just(NodeKind::Symlink),
        Just(NodeKind::Fifo),
        Just(NodeKind::CharDevice),
        Just(NodeKind::BlockDevice),
        Just(NodeKind::Socket),
    ];
    (
        arb_name(),
        kinds,
        (
            0u32..0o10000,
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(".{0,12}"),
            proptest::option::of(".{0,12}"),
        ),
        (arb_time(), arb_time(), arb_time()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (
            proptest::collection::vec(arb_id(), 0..5),
            arb_id(),
            proptest::collection::vec(any::<u8>(), 0..100),
            any::<u64>(),
        ),
        proptest::collection::btree_map(
            proptest::collection::vec(1u8..=255, 1..20),
            proptest::collection::vec(any::<u8>(), 0..50),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                name,
                kind,
                (mode, uid, gid, user, group),
                (mtime, atime, ctime),
                (ino, dev, nlink, size),
                (content, sub, target, rdev),
                xattrs,
                sparse,
            )| {
                let mut n = Node::new(name, kind);
                n.mode = mode;
                n.uid = uid;
                n.gid = gid;
                n.user = user;
                n.group = group;
                n.mtime = mtime;
                n.atime = atime;
                n.ctime = ctime;
                n.inode = ino;
                n.device = dev;
                n.links = nlink;
                n.size = size;
                n.xattrs = xattrs.into_iter().collect();
                match kind {
                    NodeKind::File => {
                        n.content = content;
                        if sparse && size >= 10 {
                            n.extents = Some(vec![(0, 1), (size / 2, size / 4 + 1)]);
                        }
                    }
                    NodeKind::Dir => n.subtree = Some(sub),
                    NodeKind::Symlink => n.target = Some(target),
                    NodeKind::CharDevice | NodeKind::BlockDevice => n.rdev = rdev,
                    _ => {}
                }
                n
            },
        )
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    proptest::collection::vec(arb_node(), 0..12).prop_map(|nodes| {
        let mut seen = std::collections::BTreeSet::new();
        let mut t = Tree {
            nodes: nodes
                .into_iter()
                .filter(|n| seen.insert(n.name.clone()))
                .collect(),
        };
        t.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        t
    })
}

/// Keys an edit of a tree body may touch: every node field, an unknown one, and (edited in the
/// body's map instead of a node's) the version and the node list.
const TREE_EDIT_KEYS: &[&str] = &[
    "name", "type", "mode", "uid", "gid", "user", "group", "mtime", "atime", "ctime", "ino", "dev",
    "nlink", "size", "content", "extents", "subtree", "target", "rdev", "xattrs", "unknown", "v",
    "nodes",
];

/// Values an edit may put in a field: anything, and things that nearly fit.
fn arb_field_value() -> impl Strategy<Value = Value> {
    let kind = proptest::sample::select(
        &[
            "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket", "door",
        ][..],
    )
    .prop_map(Value::text);
    let uint = prop_oneof![
        0u64..0o10000,
        0o10000u64..0o20000,
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(u64::from(u32::MAX) << 8),
        any::<u64>(),
    ]
    .prop_map(Value::Uint);
    let bytes = proptest::collection::vec(any::<u8>(), 0..34).prop_map(Value::Bytes);
    let id = || arb_id().prop_map(|id| Value::Bytes(id.as_bytes().to_vec()));
    prop_oneof![
        arb_value(),
        kind,
        uint.clone(),
        any::<i64>().prop_map(Value::int),
        prop_oneof![bytes.clone(), id()],
        (id(), uint.clone(), uint.clone(), uint.clone())
            .prop_map(|(i, o, l, r)| Value::Array(vec![i, o, l, r])),
        (any::<i64>(), 0u64..1_100_000_000)
            .prop_map(|(s, n)| Value::Array(vec![Value::int(s), Value::Uint(n)])),
        proptest::collection::vec(prop_oneof![id(), bytes.clone()], 0..3).prop_map(Value::Array),
        proptest::collection::vec(
            (uint.clone(), uint).prop_map(|(o, l)| Value::Array(vec![o, l])),
            0..3
        )
        .prop_map(Value::Array),
        proptest::collection::vec(
            (bytes.clone(), bytes).prop_map(|(k, v)| Value::Array(vec![k, v])),
            0..3
        )
        .prop_map(Value::Array),
    ]
}

/// Removes `key` from a map's entries, then sets it to `value` if there is one.
fn edit_map(entries: &mut Vec<(Value, Value)>, key: &str, value: &Option<Value>) {
    entries.retain(|(k, _)| !matches!(k, Value::Text(t) if t == key));
    if let Some(v) = value {
        entries.push((Value::text(key), v.clone()));
    }
}

/// The items of a map's array field `key`, when it has some.
fn array_field<'a>(entries: &'a mut [(Value, Value)], key: &str) -> Option<&'a mut Vec<Value>> {
    entries.iter_mut().find_map(|(k, v)| match (k, v) {
        (Value::Text(t), Value::Array(items)) if t == key && !items.is_empty() => Some(items),
        _ => None,
    })
}

/// Values close to what field `key` must hold, on both sides of each rule (a blob record for
/// the empty key); mixed with anything at all.
fn near_field_value(key: &'static str) -> BoxedStrategy<Value> {
    let uint = |values: &'static [u64]| proptest::sample::select(values).prop_map(Value::Uint);
    let bytes_of = |lens: &'static [usize]| {
        proptest::sample::select(lens)
            .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n..=n))
            .prop_map(Value::Bytes)
    };
    const U32_EDGES: &[u64] = &[0, 1, 4_294_967_295, 4_294_967_296];
    const NAMES: &[&[u8]] = &[b"", b".", b"..", b"a/b", b"a\0b", b"zzzz", b"0"];
    const XATTR_NAMES: &[&[u8]] = &[b"", b"a", b"b", b"a\0", b"user.x"];
    let near = match key {
        "mode" => prop_oneof![0u64..0o10000, 0o10000u64..0o100000]
            .prop_map(Value::Uint)
            .boxed(),
        "uid" | "gid" => uint(U32_EDGES).boxed(),
        "mtime" | "atime" | "ctime" => (
            prop_oneof![
                any::<u64>().prop_map(Value::Uint),
                any::<u64>().prop_map(Value::Nint),
                Just(Value::Uint(i64::MAX as u64)),
                Just(Value::Uint(i64::MAX as u64 + 1)),
                Just(Value::Nint(i64::MAX as u64)),
            ],
            uint(&[0, 999_999_999, 1_000_000_000, 4_294_967_296]),
            0usize..4,
        )
            .prop_map(|(s, n, len)| {
                Value::Array([s, n, Value::Uint(0), Value::Null][..len].to_vec())
            })
            .boxed(),
        "name" => proptest::sample::select(NAMES)
            .prop_map(|b| Value::Bytes(b.to_vec()))
            .boxed(),
        "type" | "kind" => prop_oneof![
            proptest::sample::select(
                &[
                    "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket", "door"
                ][..]
            )
            .prop_map(Value::text),
            uint(&[0, 1, 2, 3, 4, 255, 256]),
        ]
        .boxed(),
        "content" | "supersedes" => proptest::collection::vec(bytes_of(&[31, 32, 33]), 0..3)
            .prop_map(Value::Array)
            .boxed(),
        "subtree" | "id" | "salt" => bytes_of(&[0, 31, 32, 33]).boxed(),
        "extents" => proptest::collection::vec(
            (
                uint(&[0, 1, 2, 5, 9, 10, u64::MAX]),
                uint(&[0, 1, 2, 5, u64::MAX]),
                1usize..4,
            )
                .prop_map(|(o, l, len)| Value::Array([o, l, Value::Uint(1)][..len].to_vec())),
            0..4,
        )
        .prop_map(Value::Array)
        .boxed(),
        "xattrs" => proptest::collection::vec(
            (proptest::sample::select(XATTR_NAMES), bytes_of(&[0, 3]))
                .prop_map(|(k, v)| Value::Array(vec![Value::Bytes(k.to_vec()), v])),
            0..4,
        )
        .prop_map(Value::Array)
        .boxed(),
        "size" | "ino" | "dev" | "nlink" | "rdev" => uint(&[0, 1, 10, 100, u64::MAX]).boxed(),
        "v" => uint(&[0, 1, 2]).boxed(),
        "" => (
            bytes_of(&[31, 32]),
            uint(&[0, 47, 48, 1000]),
            uint(&[0, 28, 29, 100, u64::MAX]),
            uint(&[0, 5]),
            3usize..6,
        )
            .prop_map(|(id, o, l, r, len)| {
                Value::Array([id, o, l, r, Value::Uint(0)][..len].to_vec())
            })
            .boxed(),
        _ => arb_field_value().boxed(),
    };
    prop_oneof![3 => near, 1 => arb_field_value()].boxed()
}

/// Applies edits (a field removed, or set) to the decoded body of a tree: to one node, or to
/// every node when no index is given.
fn edit_tree_body(
    body: Value,
    edits: &[(Option<prop::sample::Index>, &'static str, Option<Value>)],
) -> Value {
    let Value::Map(mut top) = body else {
        return body;
    };
    for (at, key, value) in edits {
        if matches!(*key, "v" | "nodes") {
            edit_map(&mut top, key, value);
            continue;
        }
        if let Some(nodes) = array_field(&mut top, "nodes") {
            let len = nodes.len();
            for (i, node) in nodes.iter_mut().enumerate() {
                if let Value::Map(entries) = node
                    && at.is_none_or(|at| at.index(len) == i)
                {
                    edit_map(entries, key, value);
                }
            }
        }
    }
    sort_maps(Value::Map(top))
}

/// The one-pass and the generic decoding of the same body agree: both accept it and give the
/// same object, or both refuse it (with `same_error`, in the same words).
fn same_decoding<T: PartialEq + std::fmt::Debug>(
    fast: Result<T, FormatError>,
    generic: Result<T, FormatError>,
    same_error: bool,
) -> Result<(), TestCaseError> {
    match (fast, generic) {
        (Ok(fast), Ok(generic)) => prop_assert_eq!(fast, generic),
        (Err(fast), Err(generic)) => {
            if same_error {
                prop_assert_eq!(fast.to_string(), generic.to_string());
            }
        }
        (fast, generic) => prop_assert!(
            false,
            "one pass: {:?}; generic: {:?}",
            fast.map(|_| ()),
            generic.map(|_| ())
        ),
    }
    Ok(())
}

fn same_tree_decoding(body: &[u8], same_error: bool) -> Result<(), TestCaseError> {
    same_decoding(
        Tree::decode(body),
        reference::tree::decode(body),
        same_error,
    )
}

fn arb_index() -> impl Strategy<Value = IndexFile> {
    (
        proptest::collection::vec(
            (
                arb_id(),
                any::<[u8; 32]>(),
                proptest::collection::vec((arb_id(), 0u64..1000), 0..10),
            ),
            0..5,
        ),
        proptest::collection::vec(arb_id(), 0..3),
    )
        .prop_map(|(packs, supersedes)| {
            let packs = packs
                .into_iter()
                .enumerate()
                .map(|(i, (id, salt, blobs))| {
                    let mut off = pack::PACK_PREFIX_LEN as u64;
                    let blobs: Vec<PackBlob> = blobs
                        .into_iter()
                        .map(|(bid, len)| {
                            let b = PackBlob {
                                id: bid,
                                offset: off,
                                length: len + 29,
                                raw_length: len,
                            };
                            off += len + 29;
                            b
                        })
                        .collect();
                    IndexPack {
                        id,
                        kind: PackKind::ALL[i % 3],
                        salt,
                        size: off + 100,
                        blobs,
                    }
                })
                .collect();
            IndexFile { packs, supersedes }
        })
}

/// Where an edit of an index body applies: the body's map, a pack's map, or a blob record
/// (replaced whole; the key is then unused).
const INDEX_EDITS: &[(u8, &str)] = &[
    (0, "v"),
    (0, "packs"),
    (0, "supersedes"),
    (0, "unknown"),
    (1, "id"),
    (1, "kind"),
    (1, "salt"),
    (1, "size"),
    (1, "blobs"),
    (1, "unknown"),
    (2, ""),
];

/// Applies edits to the decoded body of an index object.
fn edit_index_body(
    body: Value,
    edits: &[(prop::sample::Index, (u8, &'static str), Option<Value>)],
) -> Value {
    let Value::Map(mut top) = body else {
        return body;
    };
    for (at, (level, key), value) in edits {
        if *level == 0 {
            edit_map(&mut top, key, value);
            continue;
        }
        let Some(packs) = array_field(&mut top, "packs") else {
            continue;
        };
        let i = at.index(packs.len());
        let Value::Map(pack) = &mut packs[i] else {
            continue;
        };
        if *level == 1 {
            edit_map(pack, key, value);
        } else if let Some(blobs) = array_field(pack, "blobs") {
            let j = at.index(blobs.len());
            match value {
                Some(v) => blobs[j] = v.clone(),
                None => {
                    blobs.remove(j);
                }
            }
        }
    }
    sort_maps(Value::Map(top))
}

fn same_index_decoding(body: &[u8], same_error: bool) -> Result<(), TestCaseError> {
    same_decoding(
        IndexFile::decode_body(body),
        reference::index::decode(body),
        same_error,
    )
}

fn maint(suite: Suite) -> MaintenanceKeys {
    MaintenanceKeys::new(suite, SecretKey::from_bytes([7; 32]))
}

fn arb_suite() -> impl Strategy<Value = Suite> {
    prop_oneof![Just(Suite::Gm), Just(Suite::Intl)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn cbor_round_trip(v in arb_value()) {
        let bytes = cbor::encode(&v);
        let back = cbor::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &sort_maps(v));
        prop_assert_eq!(cbor::encode(&back), bytes);
    }

    #[test]
    fn cbor_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(v) = cbor::decode(&bytes) {
            // Whatever the strict decoder accepts is canonical: it re-encodes to the same bytes.
            prop_assert_eq!(cbor::encode(&v), bytes);
        }
    }

    #[test]
    fn tree_round_trip(t in arb_tree()) {
        let body = t.encode();
        let back = Tree::decode(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.encode(), body);
        let refs = TreeRefs::of_tree(&t);
        prop_assert_eq!(TreeRefs::decode(&refs.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?, refs);
    }

    #[test]
    fn tree_decode_mutations_never_panic(t in arb_tree(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = t.encode();
        let i = pos.index(body.len());
        body[i] = byte;
        let _ = Tree::decode(&body);
        let _ = TreeRefs::decode(&body);
        let _ = Snapshot::decode_body(&body);
        let _ = IndexFile::decode_body(&body);
        let _ = StateObject::decode_body(&body);
        let _ = KeyFile::decode(&body);
        let _ = RepoConfig::decode(&body);
    }

    /// Well-formed CBOR of any shape reaches the schema checks of every body decoder (random
    /// bytes rarely get past the CBOR layer): none of them panics.
    #[test]
    fn arbitrary_cbor_bodies_never_panic(v in prop_oneof![arb_value(), arb_schema_value()]) {
        let _ = zaibei_format::Condemned::from_value(v.clone());
        let _ = zaibei_format::SiteRecord::from_value(v.clone());
        let _ = zaibei_format::SyncedRecord::from_value(v.clone());
        let _ = zaibei_format::ForgottenRecord::from_value(v.clone());
        let bytes = cbor::encode(&v);
        let _ = Tree::decode(&bytes);
        let _ = TreeRefs::decode(&bytes);
        let _ = Snapshot::decode_body(&bytes);
        let _ = IndexFile::decode_body(&bytes);
        let _ = StateObject::decode_body(&bytes);
    }

    #[test]
    fn site_records_round_trip(
        names in proptest::collection::btree_set("[A-Za-z0-9._-]{1,64}", 1..6),
        primary_is_me in any::<bool>(),
        epoch in any::<u64>(),
        locations in proptest::collection::vec(".{0,40}", 6),
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let me = names[0].clone();
        let peers: Vec<zaibei_format::SitePeer> = names[1..]
            .iter()
            .zip(&locations)
            .map(|(n, l)| zaibei_format::SitePeer { name: n.clone(), location: l.clone() })
            .collect();
        let (role, primary) = if primary_is_me || peers.is_empty() {
            (zaibei_format::SiteRole::Primary, me.clone())
        } else {
            (zaibei_format::SiteRole::Replica, peers[0].name.clone())
        };
        let r = zaibei_format::SiteRecord { name: me, role, epoch, primary, peers };
        let bytes = cbor::encode(&r.to_value());
        let back = zaibei_format::SiteRecord::from_value(cbor::decode(&bytes).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn synced_records_round_trip(ids in proptest::collection::btree_set(arb_id(), 0..30), epoch in any::<u64>()) {
        let r = zaibei_format::SyncedRecord {
            primary: "dc-1".into(),
            epoch,
            snapshots: ids.into_iter().collect(),
        };
        let bytes = cbor::encode(&r.to_value());
        let back = zaibei_format::SyncedRecord::from_value(cbor::decode(&bytes).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn forgotten_records_round_trip(
        batches in proptest::collection::vec(
            (
                proptest::option::of("[A-Za-z0-9._-]{1,64}"),
                0u64..4,
                arb_time(),
                proptest::collection::vec(arb_id(), 0..12),
            ),
            0..10,
        ),
    ) {
        let mut r = zaibei_format::ForgottenRecord::default();
        for (site, epoch, time, ids) in &batches {
            r.add(site.as_deref(), *epoch, *time, ids);
        }
        let bytes = cbor::encode(&r.to_value());
        let back = zaibei_format::ForgottenRecord::from_value(cbor::decode(&bytes).unwrap()).unwrap();
        prop_assert_eq!(&back, &r);
        // Every id added is found under its site at its epoch, and under no other site.
        for (site, epoch, _, ids) in &batches {
            if let Some(site) = site {
                let by = back.forgotten_by(site, *epoch);
                for id in ids {
                    prop_assert!(by.contains(id));
                }
            }
        }
        prop_assert!(back.forgotten_by("not a site", u64::MAX).is_empty());
    }

    #[test]
    fn condemned_round_trip(margin in any::<u64>(), packs in proptest::collection::btree_map(arb_id(), (1u8..=3, any::<u64>(), any::<u64>()), 0..20)) {
        let c = zaibei_format::Condemned {
            margin,
            packs: packs
                .into_iter()
                .map(|(id, (k, size, since))| zaibei_format::CondemnedPack {
                    id,
                    kind: PackKind::from_byte(k).unwrap(),
                    size,
                    since,
                })
                .collect(),
        };
        let bytes = cbor::encode(&c.to_value());
        let back = zaibei_format::Condemned::from_value(cbor::decode(&bytes).unwrap()).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = maint(Suite::Gm);
        let _ = Tree::decode(&bytes);
        let _ = TreeRefs::decode(&bytes);
        let _ = Snapshot::decode_body(&bytes);
        let _ = IndexFile::decode_body(&bytes);
        let _ = StateObject::decode_body(&bytes);
        let _ = KeyFile::decode(&bytes);
        let _ = RepoConfig::decode(&bytes);
        let _ = pack::decode_pack_prefix(&bytes);
        let _ = pack::decode_pack_trailer(&bytes, bytes.len() as u64);
        let _ = pack::decode_pack_header(&k, &bytes, &bytes, 1000);
        let _ = open_object(&k, SealedType::Index, &bytes);
        let _ = blob::open_blob(&k.refs_pack_aead(&[0; 32]), PackKind::Refs, &Id::default(), &bytes, 10);
        let _ = zaibei_format::state::parse_state_name(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn snapshot_round_trip(
        time in arb_time(), tree in arb_id(), parent in proptest::option::of(arb_id()),
        original in proptest::option::of(arb_id()),
        paths in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..4),
        tags in proptest::collection::vec("[a-z]{1,8}", 0..4), n in any::<u64>(), suite in arb_suite(),
        skipped in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..30), ".{0,30}"), 0..3),
    ) {
        let s = Snapshot {
            time, tree, paths, hostname: "h".into(), username: "u".into(), uid: 1, gid: 2, tags, parent,
            program: "zaibei test".into(), excludes: vec!["*.tmp".into()],
            summary: SnapshotSummary { start: time, end: time, files_new: n, bytes_read: n / 2, skipped_count: skipped.len() as u64, skipped, ..Default::default() },
            original,
        };
        let k = maint(suite);
        let sealed = s.seal(&k).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Snapshot::open(&k, &sealed).map_err(|e| TestCaseError::fail(e.to_string()))?, s.clone());
        // `original` is encoded only when present: without it the body is what writers
        // before the field wrote, and with it, removing the key gives that body back.
        let body = cbor::decode(&s.encode_body()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Value::Map(entries) = body else { return Err(TestCaseError::fail("not a map")) };
        let key = Value::Text("original".into());
        let found = entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        prop_assert_eq!(found, original.map(|o| Value::Bytes(o.0.to_vec())));
        let older = cbor::encode(&Value::Map(entries.into_iter().filter(|(k, _)| *k != key).collect()));
        let back = Snapshot::decode_body(&older).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, Snapshot { original: None, ..s });
    }

    #[test]
    fn index_round_trip(suite in arb_suite(), idx in arb_index()) {
        let k = maint(suite);
        let sealed = idx.seal(&k).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(IndexFile::open(&k, &sealed).map_err(|e| TestCaseError::fail(e.to_string()))?, idx);
    }

    #[test]
    fn sealed_objects_detect_any_flip(suite in arb_suite(), body in proptest::collection::vec(any::<u8>(), 0..500), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = maint(suite);
        let mut sealed = seal_object(&k, SealedType::State, &body, 3).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(open_object(&k, SealedType::State, &sealed).map_err(|e| TestCaseError::fail(e.to_string()))?, body);
        prop_assert!(open_object(&k, SealedType::Snapshot, &sealed).is_err());
        let i = pos.index(sealed.len());
        sealed[i] ^= 1 << bit;
        prop_assert!(open_object(&k, SealedType::State, &sealed).is_err());
    }

    #[test]
    fn blob_round_trip_and_binding(suite in arb_suite(), payload in proptest::collection::vec(any::<u8>(), 0..5000), repetitive in any::<bool>(), id in arb_id(), other in arb_id()) {
        let payload = if repetitive { payload.iter().cycle().take(payload.len() * 8).copied().collect() } else { payload };
        let k = maint(suite);
        let aead = k.refs_pack_aead(&[1; 32]);
        let stored = blob::seal_blob(&aead, PackKind::Refs, &id, &payload, 3).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(blob::open_blob(&aead, PackKind::Refs, &id, &stored, payload.len() as u64).map_err(|e| TestCaseError::fail(e.to_string()))?, payload.clone());
        prop_assert!(blob::open_blob(&aead, PackKind::Data, &id, &stored, payload.len() as u64).is_err());
        if other != id {
            prop_assert!(blob::open_blob(&aead, PackKind::Refs, &other, &stored, payload.len() as u64).is_err());
        }
        prop_assert!(blob::open_blob(&aead, PackKind::Refs, &id, &stored, payload.len() as u64 + 1).is_err());
    }

    #[test]
    fn pack_footer_round_trip(suite in arb_suite(), lens in proptest::collection::vec(29u64..500, 0..20)) {
        let k = maint(suite);
        let salt = [3u8; 32];
        let prefix = pack::encode_pack_prefix(PackKind::Tree, &salt);
        let mut off = pack::PACK_PREFIX_LEN as u64;
        let blobs: Vec<PackBlob> = lens.iter().enumerate().map(|(i, &l)| {
            let b = PackBlob { id: Id([i as u8; 32]), offset: off, length: l, raw_length: l * 2 };
            off += l;
            b
        }).collect();
        let footer = pack::encode_pack_footer(&k, &prefix, &blobs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(footer.len() <= pack::pack_footer_len_bound(blobs.len()));
        let pack_len = off + footer.len() as u64;
        let trailer = &footer[footer.len() - pack::PACK_TRAILER_LEN..];
        let range = pack::decode_pack_trailer(trailer, pack_len).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let start = (range.start - off) as usize;
        let end = (range.end - off) as usize;
        let back = pack::decode_pack_header(&k, &prefix, &footer[start..end], pack_len).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, blobs);
    }

    #[test]
    fn pack_footer_fits_its_bound_with_the_largest_integers(suite in arb_suite(), n in 0usize..40, id in arb_id()) {
        let k = maint(suite);
        let prefix = pack::encode_pack_prefix(PackKind::Data, &[4u8; 32]);
        let blobs: Vec<PackBlob> = (0..n).map(|_| PackBlob { id, offset: u64::MAX, length: u64::MAX, raw_length: u64::MAX }).collect();
        let footer = pack::encode_pack_footer(&k, &prefix, &blobs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(footer.len() <= pack::pack_footer_len_bound(n), "{} > {}", footer.len(), pack::pack_footer_len_bound(n));
    }

    #[test]
    fn state_names_round_trip(generation in any::<u64>(), id in arb_id()) {
        let s = StateObject { kind: "condemned".into(), generation, previous: None, time: Timestamp::default(), body: Value::Null };
        let name = s.object_name(&id);
        let file = name.rsplit('/').next().unwrap_or_default();
        prop_assert_eq!(state::parse_state_name(file), Some((generation, id)));
    }
}

// The one-pass decoders against the generic path: many cases, as each edit hits one field.
proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, .. ProptestConfig::default() })]

    /// The direct encoder writes exactly the bytes of the generic path, also for nodes holding
    /// fields their kind does not use (which neither writes).
    #[test]
    fn tree_encoder_matches_the_generic_path(
        t in arb_tree(),
        stray in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..5, arb_id()), 0..4),
    ) {
        let mut t = t;
        for (at, field, id) in stray {
            if t.nodes.is_empty() {
                break;
            }
            let i = at.index(t.nodes.len());
            let n = &mut t.nodes[i];
            match field {
                0 => n.content = vec![id],
                1 => n.subtree = Some(id),
                2 => n.target = Some(id.as_bytes().to_vec()),
                3 => n.rdev = 7,
                _ => n.extents = Some(vec![(0, 1)]),
            }
        }
        prop_assert_eq!(t.encode(), reference::tree::encode(&t));
    }

    /// Edited node fields (removed, retyped, out of range, unknown) are accepted or refused by
    /// the one-pass decoder exactly as by the generic path; one edit gives the same error.
    #[test]
    fn tree_decoder_matches_the_generic_path(
        t in arb_tree(),
        edits in proptest::collection::vec(
            (
                proptest::option::of(any::<prop::sample::Index>()),
                proptest::sample::select(TREE_EDIT_KEYS),
            )
                .prop_flat_map(|(at, key)| {
                    (Just(at), Just(key), proptest::option::weighted(0.85, near_field_value(key)))
                }),
            0..4,
        ),
    ) {
        let body = cbor::decode(&t.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let edited = cbor::encode(&edit_tree_body(body, &edits));
        same_tree_decoding(&edited, edits.len() <= 1)?;
    }

    /// Edited index fields and blob records: both decoders agree; one edit, same error.
    #[test]
    fn index_decoder_matches_the_generic_path(
        idx in arb_index(),
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), proptest::sample::select(INDEX_EDITS))
                .prop_flat_map(|(at, edit)| {
                    (Just(at), Just(edit), proptest::option::weighted(0.85, near_field_value(edit.1)))
                }),
            0..4,
        ),
        pos in any::<prop::sample::Index>(),
        byte in proptest::option::of(any::<u8>()),
    ) {
        let body = cbor::decode(&idx.encode_body()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let edited = cbor::encode(&edit_index_body(body, &edits));
        same_index_decoding(&edited, edits.len() <= 1)?;
        if let Some(byte) = byte {
            let mut broken = edited;
            let i = pos.index(broken.len());
            broken[i] = byte;
            same_index_decoding(&broken, false)?;
        }
    }

    /// Bytes of a tree changed, inserted or removed: both decoders agree.
    #[test]
    fn tree_decoder_matches_the_generic_path_on_broken_bytes(
        t in arb_tree(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let mut body = t.encode();
        let i = pos.index(body.len());
        match how {
            0 => body[i] = byte,
            1 => body.insert(i, byte),
            _ => {
                body.remove(i);
            }
        }
        same_tree_decoding(&body, false)?;
    }

    /// Well-formed CBOR of any shape: both decoders agree.
    #[test]
    fn tree_decoder_matches_the_generic_path_on_any_cbor(
        v in prop_oneof![arb_value(), arb_schema_value()],
    ) {
        same_tree_decoding(&cbor::encode(&v), false)?;
        same_index_decoding(&cbor::encode(&v), false)?;
    }
}

#[test]
fn config_and_key_round_trip_for_both_suites() {
    for suite in [Suite::Gm, Suite::Intl] {
        let master = SecretKey::from_bytes([9; 32]);
        let keys = RepoKeys::from_master(suite, &master);
        let content = keys.content("test").unwrap();
        let (cfg, seed) = RepoConfig::create(
            content,
            keys.maintenance(),
            ChunkerParams::default(),
            3,
            16 << 20,
        )
        .unwrap();
        let back = RepoConfig::decode(&cfg.encode()).unwrap();
        assert_eq!(back, cfg);
        back.verify(keys.maintenance()).unwrap();
        assert_eq!(back.chunker_seed(content).unwrap(), seed);
        // Any change of a MACed field is detected.
        let mut altered = back.clone();
        altered.zstd_level = 0;
        assert!(altered.verify(keys.maintenance()).is_err());
        // Another repository's key does not verify it.
        let other = RepoKeys::from_master(suite, &SecretKey::from_bytes([8; 32]));
        assert!(back.verify(other.maintenance()).is_err());

        let kdf = PasswordKdf::insecure_for_tests(suite);
        let kf = KeyFile::wrap(
            cfg.id,
            suite,
            KeyScope::Full,
            kdf,
            b"pw",
            &master,
            "host".into(),
            "me".into(),
        )
        .unwrap();
        let kb = KeyFile::decode(&kf.encode()).unwrap();
        assert_eq!(kb, kf);
        assert_eq!(kb.unwrap_secret(b"pw").unwrap(), master);
        let err = kb.unwrap_secret(b"wrong").unwrap_err();
        assert!(err.is_authentication_failure(), "{err}");
        // Maintenance-only key gives no content key.
        let mk = RepoKeys::from_maintenance(suite, keys.maintenance().root().clone());
        assert!(mk.content("restore").is_err());
        mk.maintenance();
        back.verify(mk.maintenance()).unwrap();
    }
}

#[test]
fn hostile_tree_names_are_refused() {
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", b"/"] {
        // The encoder does not validate names: the decoder must refuse them.
        let body = Tree {
            nodes: vec![Node::new(bad.to_vec(), NodeKind::Fifo)],
        }
        .encode();
        assert!(Tree::decode(&body).is_err(), "name {bad:?} accepted");
    }
    let a = Node::new(b"same".to_vec(), NodeKind::Fifo);
    let dup = Tree {
        nodes: vec![a.clone(), a],
    }
    .encode();
    assert!(Tree::decode(&dup).is_err(), "duplicate names accepted");
    let unsorted = Tree {
        nodes: vec![
            Node::new(b"b".to_vec(), NodeKind::Fifo),
            Node::new(b"a".to_vec(), NodeKind::Fifo),
        ],
    }
    .encode();
    assert!(Tree::decode(&unsorted).is_err(), "unsorted names accepted");
}

#[test]
fn newer_versions_are_refused_with_a_clear_error() {
    let body = cbor::encode(
        &fields::MapBuilder::new()
            .uint("v", 2)
            .value("nodes", Value::Array(vec![]))
            .build(),
    );
    let err = Tree::decode(&body).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let mut cfg_bytes = magic::CONFIG_MAGIC.to_vec();
    cfg_bytes[7] = 2;
    let err = RepoConfig::decode(&cfg_bytes).unwrap_err();
    assert!(err.to_string().contains("upgrade zaibei"), "{err}");
}

/// A pack header whose blobs leave a gap, overlap, run into the header or stop short of it is
/// refused, naming the problem.
#[test]
fn pack_headers_whose_blobs_do_not_tile_are_refused() {
    let k = maint(Suite::Gm);
    let prefix = pack::encode_pack_prefix(PackKind::Data, &[5u8; 32]);
    let start = pack::PACK_PREFIX_LEN as u64;
    let blob = |i: u8, offset: u64| PackBlob {
        id: Id([i; 32]),
        offset,
        length: 100,
        raw_length: 50,
    };
    // (blobs, bytes of blob area the pack really has, expected words of the error)
    let cases = [
        (vec![blob(1, start), blob(2, start + 100)], 200, None),
        (vec![blob(1, start), blob(2, start + 101)], 201, Some("gap")),
        (
            vec![blob(1, start), blob(2, start + 99)],
            199,
            Some("overlaps"),
        ),
        (
            vec![blob(1, start), blob(2, start + 100)],
            150,
            Some("past the blob area"),
        ),
        (
            vec![blob(1, start), blob(2, start + 100)],
            250,
            Some("the header starts at"),
        ),
    ];
    for (blobs, area, expected) in cases {
        let footer = pack::encode_pack_footer(&k, &prefix, &blobs).unwrap();
        let header = &footer[..footer.len() - pack::PACK_TRAILER_LEN];
        let pack_len = start + area + footer.len() as u64;
        let got = pack::decode_pack_header(&k, &prefix, header, pack_len);
        match expected {
            None => assert_eq!(got.unwrap(), blobs),
            Some(words) => {
                let err = got.unwrap_err().to_string();
                assert!(err.contains(words), "{err:?} does not say {words:?}");
            }
        }
    }
}
