//! Property tests: every encoder/decoder of the format round-trips, and no decoder panics on
//! arbitrary or mutated input.

use proptest::prelude::*;
use zaibei_crypto::{PasswordKdf, SecretKey, Suite};
use zaibei_format::cbor::{self, Value};
use zaibei_format::pack::{self, PackBlob};
use zaibei_format::sealed::{SealedType, open_object, seal_object};
use zaibei_format::*;

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
    fn index_round_trip(suite in arb_suite(), packs in proptest::collection::vec((arb_id(), any::<[u8; 32]>(), proptest::collection::vec((arb_id(), 0u64..1000), 0..10)), 0..5), supersedes in proptest::collection::vec(arb_id(), 0..3)) {
        let packs: Vec<IndexPack> = packs.into_iter().enumerate().map(|(i, (id, salt, blobs))| {
            let mut off = pack::PACK_PREFIX_LEN as u64;
            let blobs: Vec<PackBlob> = blobs.into_iter().map(|(bid, len)| {
                let b = PackBlob { id: bid, offset: off, length: len + 29, raw_length: len };
                off += len + 29;
                b
            }).collect();
            IndexPack { id, kind: PackKind::ALL[i % 3], salt, size: off + 100, blobs }
        }).collect();
        let idx = IndexFile { packs, supersedes };
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
