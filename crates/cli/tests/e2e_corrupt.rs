//! Corruption tests: random bytes flipped in, truncation of, and deletion of a random object of
//! every kind (data, tree and reference packs, index objects, snapshots, key objects, state
//! objects, the config). After each:
//!
//! - `check --read-data` reports the damage, naming the object;
//! - for every snapshot, `restore` restores everything the damage spared, bit for bit, and
//!   exits non-zero naming exactly the paths that `check` said it affects in that snapshot.
//!
//! Deleting a snapshot, a key that is not in use, or a state object is not damage anyone could
//! see (it is what `forget`, `key remove` and prune do), so those cases are not run. Each run
//! draws its victims at random; ZAIBEI_TEST_SEED repeats a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use e2e_support::*;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    DataPack,
    TreePack,
    RefsPack,
    Index,
    Snapshot,
    Key,
    State,
    Config,
}

/// A repository with three snapshots, a second key and a `condemned` state, kept pristine.
struct Fixture {
    env: Env,
    pristine: PathBuf,
    /// Where the snapshots' source was (the paths inside them start with it).
    src: PathBuf,
    /// Snapshot id and a copy of the source as that snapshot saw it.
    versions: Vec<(String, PathBuf)>,
    /// The key object not in use.
    spare_key: String,
}

fn write_file(path: &Path, len: usize, seed: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, pseudo_random(len, seed)).unwrap();
}

fn fixture() -> Fixture {
    // Small packs, so that a pack holds the data of a few files only.
    let env = Env::init_in_with(scratch(), &["--pack-size", "64K"]);
    let src = env.path("src");
    for i in 0..32u64 {
        let dir = ["a", "b", "b/c", "d"][(i % 4) as usize];
        let len = 500 + (i * 7919 % 90_000) as usize;
        write_file(&src.join(dir).join(format!("f{i:02}")), len, i + 1);
    }
    // A snapshot to forget, so that prune leaves a `condemned` state behind.
    write_file(&env.path("junk/j"), 150_000, 999);
    let junk = env.backup(&[&env.path("junk")]);
    env.ok(&[&"forget", &junk["snapshot_id"].as_str().unwrap()]);
    env.ok(&[&"prune"]);
    assert!(!env.objects("state/condemned").is_empty());

    let mut versions = Vec::new();
    for round in 0..3u64 {
        if round > 0 {
            for i in 0..3 {
                let n = (round * 5 + i * 7) % 32;
                let dir = ["a", "b", "b/c", "d"][(n % 4) as usize];
                write_file(
                    &src.join(dir).join(format!("f{n:02}")),
                    20_000,
                    round * 100 + i,
                );
            }
            write_file(&src.join(format!("e{round}/new")), 70_000, round * 1000);
        }
        let s = env.backup(&[&src]);
        let copy = env.path(&format!("v{round}"));
        bash(
            env.dir.path(),
            &format!("cp -a '{}' '{}'", src.display(), copy.display()),
        );
        versions.push((s["snapshot_id"].as_str().unwrap().to_owned(), copy));
    }
    let pw = env.path("second-pw");
    fs::write(&pw, "second password\n").unwrap();
    env.ok(&[
        &"key",
        &"add",
        &"--new-password-file",
        &pw,
        &"--insecure-test-kdf",
    ]);
    let keys: Value = serde_json::from_slice(&env.ok(&[&"--json", &"key", &"list"]).stdout)
        .expect("key list --json");
    let spare_key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == Value::Bool(false))
        .expect("a key not in use")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let check = summary(&env.ok(&[&"--json", &"check", &"--read-data"]));
    assert_eq!(check["errors"], 0, "{check}");
    let pristine = env.path("pristine");
    bash(
        env.dir.path(),
        &format!("cp -a '{}' '{}'", env.repo.display(), pristine.display()),
    );
    Fixture {
        env,
        pristine,
        src,
        versions,
        spare_key,
    }
}

/// The stored objects of a kind.
fn victims(f: &Fixture, kind: Kind) -> Vec<PathBuf> {
    let pack_kind = |p: &PathBuf| fs::read(p).unwrap().get(8).copied();
    let env = &f.env;
    match kind {
        Kind::DataPack | Kind::TreePack | Kind::RefsPack => {
            let want = match kind {
                Kind::DataPack => 1,
                Kind::TreePack => 2,
                _ => 3,
            };
            env.objects("data")
                .into_iter()
                .filter(|p| pack_kind(p) == Some(want))
                .collect()
        }
        Kind::Index => env.objects("index"),
        Kind::Snapshot => env.objects("snapshots"),
        Kind::Key => vec![env.repo.join("keys").join(&f.spare_key)],
        Kind::State => env.objects("state/condemned"),
        Kind::Config => vec![env.repo.join("config")],
    }
}

/// Damages `path`; says what was done.
fn damage(path: &Path, how: Damage, rng: &mut Rng) -> String {
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len() as u64;
    match how {
        Damage::Flip => {
            let mut at = Vec::new();
            for _ in 0..1 + rng.next(3) {
                let pos = rng.next(len) as usize;
                bytes[pos] ^= 1 + rng.next(255) as u8;
                at.push(pos);
            }
            fs::write(path, bytes).unwrap();
            format!("flipped bytes at {at:?} of {len}")
        }
        Damage::Truncate => {
            let keep = rng.next(len) as usize;
            bytes.truncate(keep);
            fs::write(path, bytes).unwrap();
            format!("truncated to {keep} of {len} bytes")
        }
        Damage::Delete => {
            fs::remove_file(path).unwrap();
            "deleted".into()
        }
    }
}

/// The object name of a stored file (`data/ab/ab12...`), as zaibei names it.
fn object_name(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Paths `check` says cannot be restored, per snapshot (full hex id).
fn affected_paths(check: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in check["problems"].as_array().unwrap() {
        for path in p["affected"]["paths"].as_array().into_iter().flatten() {
            for snap in path["snapshots"].as_array().unwrap() {
                out.entry(snap.as_str().unwrap().to_owned())
                    .or_default()
                    .insert(path["path"].as_str().unwrap().to_owned());
            }
        }
    }
    out
}

/// Restores every snapshot still listed; asserts that exactly the affected paths fail and that
/// everything else is restored bit for bit.
fn restore_all(f: &Fixture, check: &Value, context: &str) {
    let env = &f.env;
    let affected = affected_paths(check);
    // `snapshots` exits with DAMAGED when a snapshot object is damaged; it lists the rest.
    let out = env.run(&[&"--json", &"snapshots"]);
    let listed: Vec<String> = serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{context}: snapshots --json: {e}\n{}", describe(&out)))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    for (i, (id, copy)) in f.versions.iter().enumerate() {
        if !listed.contains(id) {
            continue;
        }
        let target = env.path(&format!("restore-{i}"));
        let _ = fs::remove_dir_all(&target);
        let out = env.run(&[&"--json", &"restore", id, &"--target", &target]);
        let want = affected.get(id).cloned().unwrap_or_default();
        if want.contains("/") {
            // The snapshot's root tree is lost: nothing can be restored.
            assert_ne!(out.status.code(), Some(code::OK), "{context}");
            note(&format!(
                "  snapshot {}: nothing restorable, as check said",
                &id[..8]
            ));
            continue;
        }
        let expected_code = if want.is_empty() {
            code::OK
        } else {
            code::PARTIAL
        };
        assert_eq!(
            out.status.code(),
            Some(expected_code),
            "{context}: restore of {id}\n{}",
            describe(&out)
        );
        let s = summary(&out);
        let failed: BTreeSet<String> = s["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[0].as_str().unwrap().to_owned())
            .collect();
        assert!(
            failed == want,
            "{context}: snapshot {id}: restore could not restore {failed:?}, check named {want:?}"
        );
        if !failed.is_empty() {
            note(&format!(
                "  snapshot {}: {} paths not restored, as check said",
                &id[..8],
                failed.len()
            ));
        }
        compare_spared(copy, &restored(&target, &f.src), &f.src, &failed, context);
    }
}

/// Asserts that every file of `copy` outside the failed paths is in `target`, byte for byte.
fn compare_spared(copy: &Path, target: &Path, src: &Path, failed: &BTreeSet<String>, ctx: &str) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let snapshot_path = src.join(&rel).to_string_lossy().into_owned();
        // Failed itself, or below a directory that failed (possibly above the source).
        if failed
            .iter()
            .any(|f| snapshot_path == *f || snapshot_path.starts_with(&format!("{f}/")))
        {
            continue;
        }
        let here = copy.join(&rel);
        if here.is_dir() {
            for e in fs::read_dir(&here).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        } else {
            let restored = fs::read(target.join(&rel))
                .unwrap_or_else(|e| panic!("{ctx}: {snapshot_path} was not restored: {e}"));
            assert!(
                restored == fs::read(&here).unwrap(),
                "{ctx}: {snapshot_path} restored with other contents"
            );
        }
    }
}

fn names_object(check: &Value, object: &str) -> bool {
    check["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["object"].as_str() == Some(object))
}

fn run_case(f: &Fixture, kind: Kind, how: Damage, rng: &mut Rng) {
    let env = &f.env;
    bash(
        env.dir.path(),
        &format!(
            "rm -rf '{0}' && cp -a '{1}' '{0}'",
            env.repo.display(),
            f.pristine.display()
        ),
    );
    let candidates = victims(f, kind);
    assert!(!candidates.is_empty(), "no object of kind {kind:?}");
    let victim = &candidates[rng.next(candidates.len() as u64) as usize];
    let object = object_name(&env.repo, victim);
    let what = damage(victim, how, rng);
    let context = format!("{kind:?}/{how:?}: {object} {what}");
    note(&context);

    if kind == Kind::Config {
        let out = env.run(&[&"snapshots"]);
        if how == Damage::Delete {
            assert_eq!(out.status.code(), Some(code::NO_REPOSITORY), "{context}");
        } else {
            assert_ne!(out.status.code(), Some(code::OK), "{context}");
        }
        assert!(
            all_output(&out).contains("config"),
            "{context}: the error must name the config\n{}",
            describe(&out)
        );
        return;
    }

    let out = env.run(&[&"--json", &"check", &"--read-data"]);
    // Losing an index object that listed only packs no snapshot needs (the forgotten
    // snapshot's, now condemned) costs nothing: check warns about the unindexed packs.
    let harmless = kind == Kind::Index && how == Damage::Delete;
    assert!(
        out.status.code() == Some(code::DAMAGED)
            || (harmless && out.status.code() == Some(code::OK)),
        "{context}: check must find the damage\n{}",
        describe(&out)
    );
    let check = summary(&out);
    match (kind, how) {
        // An index object that is gone cannot be named: its packs are reported unindexed
        // and the blobs only it listed as missing.
        (Kind::Index, Damage::Delete) => assert!(
            check["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["message"].as_str().unwrap().contains("not in any index")),
            "{context}: {check}"
        ),
        _ => assert!(
            names_object(&check, &object),
            "{context}: check does not name {object}: {check}"
        ),
    }
    if kind == Kind::Snapshot {
        let id = victim.file_name().unwrap().to_string_lossy().into_owned();
        let out = env.run(&[&"restore", &id, &"--target", &env.path("r-damaged")]);
        assert_ne!(out.status.code(), Some(code::OK), "{context}");
        assert!(
            all_output(&out).contains(&id[..8]),
            "{context}: restore must name the snapshot\n{}",
            describe(&out)
        );
    }
    restore_all(f, &check, &context);
}

#[test]
fn damage_of_every_kind_is_reported_and_restore_saves_the_rest() {
    let mut rng = Rng::from_env();
    let f = fixture();
    let kinds = [
        Kind::DataPack,
        Kind::TreePack,
        Kind::RefsPack,
        Kind::Index,
        Kind::Snapshot,
        Kind::Key,
        Kind::State,
        Kind::Config,
    ];
    let mut cases = 0;
    for round in 0..2 {
        for kind in kinds {
            for how in [Damage::Flip, Damage::Truncate, Damage::Delete] {
                let invisible = how == Damage::Delete
                    && matches!(kind, Kind::Snapshot | Kind::Key | Kind::State);
                // The config's cases need only one round.
                if invisible || (kind == Kind::Config && round > 0) {
                    continue;
                }
                run_case(&f, kind, how, &mut rng);
                cases += 1;
            }
        }
    }
    note(&format!("{cases} corruption cases"));
}
