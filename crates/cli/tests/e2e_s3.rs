//! End-to-end tests of the `zaibei` binary on object storage: the repository suite (backup,
//! unchanged re-backup, restore compared with independent tools, `check --read-data`, two
//! backups at once from two processes) on S3 and, for comparison, on a local directory; the
//! metadata cache; S3 behind a proxy that injects network faults; and S3 behind a proxy that
//! enforces an append-only policy (ransomware protection).
//!
//! They need an S3 server and fail, never skip, without one: `scripts/test` starts Garage
//! and exports `ZAIBEI_TEST_S3_ENDPOINT`, `ZAIBEI_TEST_S3_BUCKET`, `ZAIBEI_TEST_S3_REGION`,
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Like the other end-to-end tests they run
//! as root and need rsync, getfattr, getfacl and python3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use e2e_support::*;
use serde_json::Value;
use zaibei_testkit::{FaultCounts, FaultPlan, FaultProxy, S3Target};

/// The S3 server of the tests; fails (never skips) when none is configured.
fn s3_target() -> S3Target {
    S3Target::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// Sets (`Some`) or removes (`None`) a variable in the environment of `env`'s runs.
fn set_var(env: &mut Env, name: &str, value: Option<String>) {
    env.extra_env.retain(|(n, _)| n != name);
    env.extra_env.push((name.to_owned(), value));
}

/// A new repository on S3 at a fresh prefix, reached directly or through `proxy`, with a
/// metadata cache in the scratch directory (`cache`).
fn s3_env(target: &S3Target, label: &str, proxy: Option<&FaultProxy>, extra_args: &[&str]) -> Env {
    let endpoint = proxy.map(|p| format!("http://{}", p.addr()));
    let location = target.location(&S3Target::unique_prefix(label), endpoint.as_deref());
    let mut vars = s3_vars(target);
    // init uses no cache; the scratch directory for it exists only once init ran.
    vars.push(("ZAIBEI_CACHE_DIR".into(), None));
    let mut env = Env::init_at(
        &location,
        vars,
        extra_args.iter().map(|&a| a.to_owned()).collect(),
    );
    let cache = env.path("cache").to_str().unwrap().to_owned();
    set_var(&mut env, "ZAIBEI_CACHE_DIR", Some(cache.clone()));
    note(&format!("repository {location}, cache {cache}"));
    env
}

/// A multi-thread runtime whose workers keep a [`FaultProxy`] going while the test thread
/// runs the binary synchronously.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A field of the `storage` object of a backup summary.
fn storage(summary: &Value, field: &str) -> u64 {
    summary["storage"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no storage.{field}: {summary}"))
}

/// Every comparison of `src` and its restored copy `dst` that does not depend on access
/// times: rsync (contents by checksum, hard links, ACLs, xattrs, sparseness, modes,
/// owners, modification times, devices, symlinks) and the independent walker.
fn assert_same_tree(src: &Path, dst: &Path) {
    assert_rsync_clean(src, dst);
    assert_treecmp_clean(src, dst, false);
}

/// A small source tree for the concurrent backups: content shared with the generated tree
/// (deduplicated against it), content shared by the two concurrent backups (both may upload
/// it at the same time), content of its own, and some directories and small files.
fn side_tree(root: &Path, seed: u64) {
    fs::create_dir(root).unwrap();
    fs::write(
        root.join("same-as-random-12m"),
        pseudo_random(12 << 20, 0x5eed),
    )
    .unwrap();
    fs::write(root.join("shared-new"), pseudo_random(3 << 20, 0xabc)).unwrap();
    fs::write(root.join("own"), pseudo_random(2 << 20, seed)).unwrap();
    for d in 0..4 {
        let dir = root.join(format!("dir{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..25 {
            fs::write(
                dir.join(format!("file{f}")),
                format!("{seed} {d} {f}\n").repeat(f + 1),
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink("dir0/file0", root.join("link")).unwrap();
}

/// Starts `zaibei -r REPO --json backup PATH` without waiting for it.
fn spawn_backup(env: &Env, path: &Path) -> std::process::Child {
    env.command()
        .args([OsStr::new("--json"), OsStr::new("backup"), path.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting zaibei")
}

// ---------------------------------------------------------------------------------------
// 1. The repository suite, on S3 and on a local directory.
// ---------------------------------------------------------------------------------------

/// Backup, unchanged re-backup, restore compared with independent tools, `check
/// --read-data`, then two backups at once from two processes. `remote`: the repository is
/// on object storage, where the metadata cache (`ZAIBEI_CACHE_DIR`) is used.
fn repository_suite(env: &Env, what: &str, remote: bool) {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let info = build_tree(&src);
    let src_stat = stat_dump(&src);

    let first = timed(&format!("{what}: backup of the generated tree"), || {
        env.backup(&[&src])
    });
    assert_eq!(num(&first, "files_new"), info.file_names, "{first}");
    assert!(storage(&first, "bytes_up") > 12 << 20, "{first}");

    // An unchanged tree is not read again.
    let second = timed(&format!("{what}: unchanged backup"), || env.backup(&[&src]));
    assert_eq!(num(&second, "bytes_read"), 0, "{second}");
    assert_eq!(
        num(&second, "files_unmodified"),
        info.file_names,
        "{second}"
    );
    assert_eq!(second["parent"], first["snapshot_id"], "{second}");
    let mut expected_snapshots = 2;

    if remote {
        // The metadata cache: the first backup left the index and the tree packs it wrote
        // in the cache, so the unchanged backup downloads hardly anything; without the cache
        // it must download the index and the parent's trees.
        let no_cache = summary(&env.ok(&[&"--json", &"--no-cache", &"backup", &src]));
        assert_eq!(num(&no_cache, "bytes_read"), 0, "{no_cache}");
        expected_snapshots += 1;
        let (cached_down, uncached_down) = (
            storage(&second, "bytes_down"),
            storage(&no_cache, "bytes_down"),
        );
        note(&format!(
            "{what}: unchanged backup downloaded {cached_down} bytes in {} gets with the \
             cache, {uncached_down} bytes in {} gets without",
            storage(&second, "gets"),
            storage(&no_cache, "gets")
        ));
        assert!(
            cached_down * 3 < uncached_down,
            "the metadata cache saves little: {cached_down} bytes downloaded with it, \
             {uncached_down} without\nwith: {second}\nwithout: {no_cache}"
        );
        assert!(
            storage(&second, "gets") < storage(&no_cache, "gets"),
            "with: {second}\nwithout: {no_cache}"
        );
        let cache = env.path("cache");
        assert!(
            cache.is_dir() && fs::read_dir(&cache).unwrap().next().is_some(),
            "no metadata cache in {}",
            cache.display()
        );
    }

    let target = env.path("restore");
    let s = timed(&format!("{what}: restore"), || {
        env.restore("latest", &target, &[])
    });
    assert_eq!(num(&s, "files_restored"), info.file_inodes, "{s}");
    let dst = restored(&target, &src);
    // Stat dumps first: rsync reads the files and changes their access times.
    assert_metadata_matches(&src_stat, &src, &dst);
    assert_sparse(&dst);
    assert_same_tree(&src, &dst);
    timed(&format!("{what}: check --read-data"), || {
        env.ok(&[&"check", &"--read-data"])
    });

    // Two backups at once, from two processes, of two trees that share new content.
    let (a, b) = (env.path("side-a"), env.path("side-b"));
    side_tree(&a, 1);
    side_tree(&b, 2);
    let (ca, cb) = (spawn_backup(env, &a), spawn_backup(env, &b));
    let (oa, ob) = timed(&format!("{what}: two concurrent backups"), || {
        (
            ca.wait_with_output().unwrap(),
            cb.wait_with_output().unwrap(),
        )
    });
    let mut ids = Vec::new();
    for (out, path) in [(&oa, &a), (&ob, &b)] {
        assert!(
            out.status.success(),
            "concurrent backup of {} failed\n{}",
            path.display(),
            describe(out)
        );
        let s = summary(out);
        assert_eq!(num(&s, "skipped"), 0, "{s}");
        assert_eq!(num(&s, "files_new"), 103, "{s}");
        ids.push(s["snapshot_id"].as_str().unwrap().to_owned());
    }
    expected_snapshots += 2;
    let listed = env.snapshot_ids();
    assert_eq!(listed.len(), expected_snapshots, "{listed:?}");
    for id in &ids {
        assert!(listed.contains(id), "snapshot {id} not listed: {listed:?}");
    }
    for (id, path) in ids.iter().zip([&a, &b]) {
        let t = env.path(&format!("restore-{}", &id[..8]));
        env.restore(id, &t, &[]);
        assert_same_tree(path, &restored(&t, path));
    }
    timed(
        &format!("{what}: check --read-data after the concurrent backups"),
        || env.ok(&[&"check", &"--read-data"]),
    );
    // Forget one of them; prune marks, then sweeps; the other stays whole.
    env.ok(&[&"forget", &ids[0]]);
    let mark = summary(&env.ok(&[&"--json", &"prune"]));
    assert_eq!(num(&mark, "deleted_packs"), 0, "{mark}");
    assert!(num(&mark, "waiting_packs") > 0, "{mark}");
    let sweep = timed(&format!("{what}: prune sweep"), || {
        summary(&env.ok(&[&"--json", &"prune", &"--safety-margin", &"0s"]))
    });
    assert!(
        num(&sweep, "deleted_packs") >= num(&mark, "waiting_packs"),
        "{sweep}"
    );
    env.ok(&[&"check", &"--read-data"]);
    let t = env.path("restore-after-prune");
    env.restore(&ids[1], &t, &[]);
    assert_same_tree(&b, &restored(&t, &b));
}

#[test]
fn repository_suite_on_s3() {
    let target = s3_target();
    let env = s3_env(&target, "e2e-suite", None, &[]);
    repository_suite(&env, "s3", true);
}

#[test]
fn repository_suite_on_a_local_directory() {
    let env = Env::init();
    repository_suite(&env, "fs", false);
}

// ---------------------------------------------------------------------------------------
// 2. Network faults between zaibei and S3.
// ---------------------------------------------------------------------------------------

/// Options of every run through the faulty proxy: give up on a silent request after 2 s
/// (a stall lasts 3 s) and try each request up to 12 times.
const FAULT_OPTIONS: &[&str] = &["--io-timeout", "2", "--retries", "12"];

/// Checks how a command run under faults ended: either it succeeded (true), or it failed
/// cleanly (false): a non-zero exit, no panic, and a message that names the failed store
/// operation, its object and the repository.
fn under_faults(what: &str, out: &Output) -> bool {
    let text = all_output(out);
    assert!(
        !text.contains("panicked") && out.status.code() != Some(101),
        "{what} panicked under faults\n{}",
        describe(out)
    );
    assert!(
        out.status.code().is_some(),
        "{what} was killed by a signal under faults\n{}",
        describe(out)
    );
    if out.status.success() {
        note(&format!("under faults, {what} succeeded"));
        return true;
    }
    // Store errors read `OPERATION "OBJECT" on LOCATION: …`.
    assert!(
        text.contains("\" on s3:http://"),
        "{what} failed under faults without naming the store operation and object\n{}",
        describe(out)
    );
    note(&format!(
        "under faults, {what} failed cleanly (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    false
}

/// Copies a tree with rsync (an independent tool), keeping everything zaibei keeps.
fn copy_tree(src: &Path, dst: &Path) {
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    tool("rsync", &[&"-aHAXS", &s, &dst]);
}

/// Changes the generated tree below `root` for a second snapshot: a file rewritten, one
/// removed, new files and a new directory. Everything changed gets times in the past: rsync
/// does not set a copied directory's time that differs from the source's by less than a
/// second, so a copy made right after the change would not be exact.
fn modify_tree(root: &Path) {
    let mut changed = vec![root.join("random-300k"), root.join("new-dir")];
    fs::write(&changed[0], pseudo_random(300 << 10, 8)).unwrap();
    fs::remove_file(root.join("text-2m")).unwrap();
    fs::create_dir(&changed[1]).unwrap();
    changed.push(root.join("new-dir/random-3m"));
    fs::write(changed.last().unwrap(), pseudo_random(3 << 20, 9)).unwrap();
    for i in 0..40 {
        changed.push(root.join(format!("new-dir/small-{i}")));
        fs::write(
            changed.last().unwrap(),
            format!("new small file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    // Files before their directories, the root last.
    changed.reverse();
    changed.push(root.to_owned());
    for (k, path) in (0i64..).zip(&changed) {
        set_times(
            path,
            ts(FUTURE_ATIME + k, 1),
            ts(1_700_000_000 + k * 61, k * 1_000_003),
        );
    }
}

#[test]
fn s3_survives_network_faults() {
    let target = s3_target();
    let rt = runtime();
    let proxy = rt
        .block_on(FaultProxy::start(
            target.addr().unwrap(),
            FaultPlan::default(),
        ))
        .unwrap();
    let env = s3_env(&target, "e2e-faults", Some(&proxy), FAULT_OPTIONS);

    // Snapshot A, without faults; a copy of the source as it was.
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let a = env.backup(&[&src]);
    let a_id = a["snapshot_id"].as_str().unwrap().to_owned();
    let expect_a = env.path("expect-a");
    copy_tree(&src, &expect_a);
    modify_tree(&src);
    let expect_b = env.path("expect-b");
    copy_tree(&src, &expect_b);
    let before = proxy.counts();

    proxy.set_plan(FaultPlan {
        reset: 0.03,
        stall: 0.01,
        stall_for: Duration::from_secs(3),
        unavailable: 0.05,
        truncate: 0.03,
        // Faults early in the sequence, where the backup's requests are; another seed
        // (e.g. to look for trouble in a loop) from ZAIBEI_E2E_FAULT_SEED.
        seed: std::env::var("ZAIBEI_E2E_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(215),
        ..FaultPlan::default()
    });
    let mut b_id = None;
    let out = timed("under faults: backup B", || {
        env.run(&[&"--json", &"backup", &src])
    });
    if under_faults("backup of the modified tree", &out) {
        let s = summary(&out);
        assert_eq!(num(&s, "skipped"), 0, "{s}");
        note(&format!("under faults, backup B: storage {}", s["storage"]));
        b_id = Some(s["snapshot_id"].as_str().unwrap().to_owned());
    }
    let target_a = env.path("restore-a-faults");
    let out = timed("under faults: restore A", || {
        env.run(&[&"--json", &"restore", &a_id, &"--target", &target_a])
    });
    if under_faults("restore of snapshot A", &out) {
        let s = summary(&out);
        assert_eq!(s["errors"], Value::Array(Vec::new()), "{s}");
        assert_same_tree(&expect_a, &restored(&target_a, &src));
    }
    let out = timed("under faults: check --read-data", || {
        env.run(&[&"check", &"--read-data"])
    });
    under_faults("check --read-data", &out);
    // Which request meets which fault depends on the order requests arrive in; should a
    // kind not have fired yet, more checks under faults give it the chance (each of them,
    // too, must succeed or fail cleanly).
    let fired = |c: FaultCounts| [c.reset, c.stall, c.unavailable, c.truncate];
    for round in 1..=6 {
        if fired(proxy.counts()).iter().all(|&n| n > 0) {
            break;
        }
        let out = timed(
            &format!("under faults: extra check --read-data {round}"),
            || env.run(&[&"check", &"--read-data"]),
        );
        under_faults("check --read-data", &out);
    }

    let during = proxy.counts();
    proxy.set_plan(FaultPlan::default());
    let faults = FaultCounts {
        requests: during.requests - before.requests,
        ..during
    };
    eprintln!("fault proxy counts under faults: {faults}");
    note(&format!("fault proxy counts under faults: {faults}"));
    for (kind, n) in ["resets", "stalls", "503 answers", "truncated bodies"]
        .into_iter()
        .zip(fired(faults))
    {
        assert!(n >= 1, "no {kind} were injected: {faults}");
    }

    // Without faults, the repository is sound and every snapshot restores exactly.
    timed("after faults: check --read-data", || {
        env.ok(&[&"check", &"--read-data"])
    });
    let listed = env.snapshot_ids();
    assert!(listed.contains(&a_id), "{listed:?}");
    if let Some(b) = &b_id {
        assert!(listed.contains(b), "{listed:?}");
    }
    // A backup that failed may still have recorded its snapshot: it must be complete.
    let others: Vec<&String> = listed.iter().filter(|id| **id != a_id).collect();
    assert!(others.len() <= 1, "{listed:?}");
    let target_a = env.path("restore-a");
    env.restore(&a_id, &target_a, &[]);
    assert_same_tree(&expect_a, &restored(&target_a, &src));
    for b in others {
        let target_b = env.path("restore-b");
        env.restore(b, &target_b, &[]);
        assert_same_tree(&expect_b, &restored(&target_b, &src));
    }
    rt.block_on(proxy.shutdown());
}

// ---------------------------------------------------------------------------------------
// 3. Append-only storage (ransomware protection).
// ---------------------------------------------------------------------------------------

/// Behind storage that refuses deletes and overwrites (as object lock or write-only
/// credentials would), everything that only adds objects works, and removing an object
/// fails loudly and leaves it in place: `forget` and `prune` fail the same way without losing
/// anything.
#[test]
fn s3_append_only_storage_allows_backups_and_refuses_deletes() {
    let target = s3_target();
    let rt = runtime();
    let proxy = rt
        .block_on(FaultProxy::start_with_credentials(
            target.addr().unwrap(),
            FaultPlan {
                deny_delete: true,
                deny_overwrite: true,
                ..FaultPlan::default()
            },
            Some(target.credentials.clone()),
        ))
        .unwrap();
    // Credentials through the options this time, none in the environment.
    let secret = scratch();
    let secret_file = secret.path().join("secret");
    fs::write(
        &secret_file,
        format!("{}\n", target.credentials.secret_access_key),
    )
    .unwrap();
    let mut env = s3_env(
        &target,
        "e2e-append-only",
        Some(&proxy),
        &[
            "--access-key-id",
            &target.credentials.access_key_id,
            "--secret-access-key-file",
            secret_file.to_str().unwrap(),
            "--s3-region",
            &target.credentials.region,
        ],
    );
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        set_var(&mut env, name, None);
    }

    let src = env.path("src");
    side_tree(&src, 3);
    let first = env.backup(&[&src]);
    assert_eq!(num(&first, "files_new"), 103, "{first}");
    fs::write(src.join("dir1/added"), pseudo_random(1 << 20, 4)).unwrap();
    set_times(
        &src.join("dir1/added"),
        ts(FUTURE_ATIME, 3),
        ts(1_700_000_000, 5),
    );
    set_times(&src.join("dir1"), ts(FUTURE_ATIME, 4), ts(1_700_000_100, 6));
    let second = env.backup(&[&src]);
    assert_eq!(num(&second, "files_new"), 1, "{second}");
    assert_eq!(second["parent"], first["snapshot_id"], "{second}");
    env.ok(&[&"check", &"--read-data"]);
    let dst = env.path("restore");
    env.restore("latest", &dst, &[]);
    assert_same_tree(&src, &restored(&dst, &src));
    assert_eq!(
        proxy.counts().denied,
        0,
        "backups, check and restore tried to delete or overwrite: {}",
        proxy.counts()
    );

    // A new key is a new object: allowed.
    let new_password = env.path("new-password");
    fs::write(&new_password, "second password\n").unwrap();
    let out = env.ok(&[
        &"--json",
        &"key",
        &"add",
        &"--insecure-test-kdf",
        &"--new-password-file",
        &new_password,
    ]);
    let added: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "key")
        .unwrap_or_else(|| panic!("no key line\n{}", describe(&out)));
    let added = added["id"].as_str().unwrap().to_owned();
    let key_ids = |env: &Env| -> Vec<String> {
        let out = env.ok(&[&"--json", &"key", &"list"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("key list --json: {e}\n{}", describe(&out)));
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let keys = key_ids(&env);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&added), "{keys:?}");

    // Removing it is a delete: refused by the storage, and said so.
    let out = env.run(&[&"key", &"remove", &added]);
    let text = all_output(&out);
    assert!(
        !out.status.success() && !text.contains("panicked"),
        "key remove should fail on append-only storage\n{}",
        describe(&out)
    );
    let lower = text.to_lowercase();
    assert!(
        lower.contains("denied") || lower.contains("permission"),
        "key remove failed without saying that permission was denied\n{}",
        describe(&out)
    );
    note(&format!(
        "key remove on append-only storage: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    let counts = proxy.counts();
    eprintln!("append-only proxy counts: {counts}");
    assert!(counts.denied >= 1, "{counts}");
    assert_eq!(key_ids(&env), keys, "the key is gone or keys changed");
    // The added key still opens the repository.
    env.password = "second password".into();
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");

    // forget deletes snapshot objects: refused by the storage, said so, nothing lost.
    for args in [
        vec!["forget", ids[0].as_str()],
        vec!["forget", "--keep-last", "1"],
    ] {
        let argv: Vec<&dyn AsRef<OsStr>> = args.iter().map(|a| a as &dyn AsRef<OsStr>).collect();
        let out = env.run(&argv);
        let text = all_output(&out).to_lowercase();
        assert!(
            !out.status.success()
                && !text.contains("panicked")
                && text.contains("permission denied"),
            "forget should fail clearly on append-only storage\n{}",
            describe(&out)
        );
    }
    assert_eq!(env.snapshot_ids().len(), 2, "forget removed a snapshot");
    // prune deletes nothing that is in use, and where it would delete the storage refuses.
    let out = env.run(&[&"prune", &"--safety-margin", &"0s", &"--max-unused", &"0%"]);
    let text = all_output(&out).to_lowercase();
    assert!(
        !text.contains("panicked") && (out.status.success() || text.contains("permission denied")),
        "prune on append-only storage\n{}",
        describe(&out)
    );
    env.ok(&[&"check", &"--read-data"]);
    assert_eq!(env.snapshot_ids().len(), 2, "prune removed a snapshot");
    rt.block_on(proxy.shutdown());
}

/// Credentials from an AWS profile file (`--s3-profile`), with none in the environment; a
/// wrong secret is refused with a clear message.
#[test]
fn s3_credentials_from_a_profile_file() {
    let target = s3_target();
    let mut env = s3_env(&target, "e2e-profile", None, &[]);
    let home = scratch();
    let aws = home.path().join(".aws");
    fs::create_dir_all(&aws).unwrap();
    let c = &target.credentials;
    fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
             [zaibei-dr]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            c.access_key_id, c.secret_access_key
        ),
    )
    .unwrap();
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        set_var(&mut env, name, None);
    }
    set_var(
        &mut env,
        "HOME",
        Some(home.path().to_str().unwrap().to_owned()),
    );
    set_var(&mut env, "AWS_SHARED_CREDENTIALS_FILE", None);
    set_var(&mut env, "AWS_CONFIG_FILE", None);

    let src = env.path("src");
    side_tree(&src, 5);
    let out = env.run(&[&"--s3-profile", &"zaibei-dr", &"--json", &"backup", &src]);
    assert_eq!(out.status.code(), Some(code::OK), "{}", describe(&out));

    // The default profile's key is refused: a clear error, not damage, not a hang.
    let out = env.run(&[&"snapshots"]);
    assert_eq!(out.status.code(), Some(code::ERROR), "{}", describe(&out));
    let text = all_output(&out);
    assert!(
        text.contains("permission denied")
            || text.contains("PermissionDenied")
            || text.contains("403"),
        "{text}"
    );
}
