//! End-to-end tests of `repair index` and `repair snapshots` with the real binary: a lost
//! index rebuilt from the packs, then a damaged data pack whose intact blobs are saved and
//! whose lost file is left out of a replacement snapshot, and which prune removes afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use e2e_support::*;

/// Every regular file below `root`, by path relative to it, with its bytes.
fn files_below(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = Vec::new();
    collect(root, &mut all);
    all.into_iter()
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn json(env: &Env, code: i32, args: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--json"];
    all.extend_from_slice(args);
    summary(&env.expect(code, &all))
}

#[test]
fn repair_rebuilds_a_lost_index_and_replaces_a_snapshot_with_damaged_data() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs/deep")).unwrap();
    for i in 0..8u64 {
        fs::write(
            src.join(format!("blob-{i}.bin")),
            pseudo_random(200_000, 7 + i),
        )
        .unwrap();
    }
    fs::write(src.join("big.bin"), pseudo_random(3_000_000, 99)).unwrap();
    for i in 0..5 {
        fs::write(
            src.join(format!("docs/note-{i}.txt")),
            format!("note {i}\n").repeat(100 + i),
        )
        .unwrap();
    }
    fs::write(src.join("docs/deep/leaf"), pseudo_random(50_000, 1234)).unwrap();
    let original = env.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let source = files_below(&src);

    // 1. Every index object lost: check fails, repair index rebuilds it from the packs.
    let index = env.objects("index");
    assert!(!index.is_empty());
    for p in &index {
        fs::remove_file(p).unwrap();
    }
    let broken = env.run(&[&"check"]);
    assert_ne!(
        broken.status.code(),
        Some(code::OK),
        "{}",
        describe(&broken)
    );
    let r = json(&env, code::OK, &[&"repair", &"index"]);
    assert_eq!(r["complete"], true, "{r}");
    assert_eq!(
        num(&r, "packs_indexed"),
        env.objects("data").len() as u64,
        "{r}"
    );
    assert_eq!(num(&r, "packs_added"), num(&r, "packs_indexed"), "{r}");
    let check = json(&env, code::OK, &[&"check", &"--read-data"]);
    assert_eq!(num(&check, "errors"), 0, "{check}");
    let target = env.path("restore-1");
    env.restore(&original, &target, &[]);
    assert_treecmp_clean(&src, &restored(&target, &src), false);

    // 2. A byte flipped in the middle of the largest pack (file data).
    let packs_before = env.objects("data");
    let pack = packs_before
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    fs::write(&pack, &bytes).unwrap();
    let damaged = json(&env, code::DAMAGED, &[&"check", &"--read-data"]);
    assert!(num(&damaged, "errors") > 0, "{damaged}");

    // A dry run changes nothing.
    let dry = json(&env, code::DAMAGED, &[&"repair", &"index", &"--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(env.objects("data"), packs_before);

    // repair index: the intact blobs of the damaged pack go into a new pack; one is lost.
    let r = json(&env, code::DAMAGED, &[&"repair", &"index"]);
    assert_eq!(r["complete"], false, "{r}");
    let d = &r["damaged"][0];
    assert_eq!(r["damaged"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(d["kind"], "data", "{r}");
    assert_eq!(num(d, "lost"), 1, "{r}");
    assert_eq!(num(d, "salvaged"), num(d, "blobs") - 1, "{r}");
    assert!(
        pack.ends_with(d["pack"].as_str().unwrap()),
        "{} is not the damaged pack: {r}",
        pack.display()
    );
    assert!(pack.exists(), "repair deleted the damaged pack");
    let packs_after = env.objects("data");
    assert!(
        packs_before.iter().all(|p| packs_after.contains(p)),
        "a pack was deleted"
    );

    // repair snapshots --forget: a replacement without the damaged file; the original goes.
    let dry = json(
        &env,
        code::OK,
        &[&"repair", &"snapshots", &"--forget", &"--dry-run"],
    );
    assert_eq!(num(&dry, "repaired"), 1, "{dry}");
    assert_eq!(
        env.snapshot_ids(),
        vec![original.clone()],
        "the dry run wrote"
    );
    let s = json(&env, code::OK, &[&"repair", &"snapshots", &"--forget"]);
    assert_eq!(
        (
            num(&s, "repaired"),
            num(&s, "unrepairable"),
            num(&s, "forgotten")
        ),
        (1, 0, 1),
        "{s}"
    );
    let snap = &s["snapshots"][0];
    assert_eq!(snap["id"], original.as_str(), "{s}");
    let replacement = snap["replacement"].as_str().unwrap().to_owned();
    let root = fs::canonicalize(&src).unwrap();
    let removed: Vec<PathBuf> = snap["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            Path::new(r["path"].as_str().unwrap())
                .strip_prefix(&root)
                .unwrap_or_else(|_| panic!("{r} is not below {}", root.display()))
                .to_owned()
        })
        .collect();
    assert_eq!(removed.len(), 1, "one chunk lost, one file left out: {s}");

    let check = json(&env, code::OK, &[&"check", &"--read-data"]);
    assert_eq!(num(&check, "errors"), 0, "{check}");
    assert_eq!(env.snapshot_ids(), vec![replacement.clone()]);
    let listing: serde_json::Value =
        serde_json::from_slice(&env.ok(&[&"--json", &"snapshots"]).stdout).unwrap();
    assert_eq!(
        listing[0]["tags"],
        serde_json::json!(["repaired"]),
        "{listing}"
    );
    assert_eq!(listing[0]["original"], original.as_str(), "{listing}");

    // The replacement restores every file but the damaged one, bit for bit.
    let target = env.path("restore-2");
    env.restore(&replacement, &target, &[]);
    let got = files_below(&restored(&target, &src));
    let mut want = source.clone();
    for r in &removed {
        assert!(
            want.remove(r).is_some(),
            "{} was never backed up",
            r.display()
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "restored {:?}",
        got.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &want {
        assert!(
            got.get(path) == Some(bytes),
            "{} differs after the repair",
            path.display()
        );
    }

    // The damaged pack, left in place by the repair, is a leftover that prune removes.
    let p = json(&env, code::OK, &[&"prune", &"--safety-margin", &"0s"]);
    assert!(!pack.exists(), "prune kept the damaged pack: {p}");
    let check = json(&env, code::OK, &[&"check", &"--read-data"]);
    assert_eq!(
        num(&check, "errors") + num(&check, "warnings"),
        0,
        "{check}"
    );
}
