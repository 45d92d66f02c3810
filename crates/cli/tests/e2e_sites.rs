//! Disaster tolerance across sites, end to end with the real binary: a primary on the real S3
//! server of the test setup (reached through a proxy that can cut it off), a replica on a
//! local disk, sync, failover while the primary is cut off, fencing of the old primary once it
//! is back, failback, and every snapshot of both sides restored bit for bit at both sites.
//! Also `copy` between repositories that share no keys (re-encryption across suites).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use e2e_support::*;
use serde_json::Value;
use zaibei_testkit::{FaultPlan, FaultProxy, S3Credentials, S3Target};

/// Runtime whose workers keep the proxy going while the test thread runs the binary.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_proxy(rt: &tokio::runtime::Runtime, target: &S3Target, at: SocketAddr) -> FaultProxy {
    rt.block_on(FaultProxy::start_at(
        at,
        target.addr().unwrap(),
        FaultPlan::default(),
        S3Credentials::from_env(),
    ))
    .unwrap()
}

/// Sets a variable for every run of `env`.
fn set_var(env: &mut Env, name: &str, value: &str) {
    env.extra_env.retain(|(n, _)| n != name);
    env.extra_env
        .push((name.to_owned(), Some(value.to_owned())));
}

/// The JSON a run printed: its whole output (pretty-printed lists), or its last JSON line.
fn json(out: &std::process::Output) -> Value {
    if let Ok(v) = serde_json::from_slice(&out.stdout) {
        return v;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON in the output\n{}", describe(out)));
    serde_json::from_str(line).unwrap()
}

/// Version `n` of the protected tree: each version changes some files and adds one.
fn write_version(src: &Path, n: u64) {
    if n == 1 {
        fs::create_dir_all(src.join("db")).unwrap();
        fs::write(src.join("db/base"), pseudo_random(3 << 20, 7)).unwrap();
        for i in 0..30 {
            fs::write(
                src.join(format!("note{i}.txt")),
                format!("note {i}\n").repeat(i + 1),
            )
            .unwrap();
        }
    }
    fs::write(
        src.join(format!("db/log{n}")),
        pseudo_random(600 << 10, 100 + n),
    )
    .unwrap();
    fs::write(src.join("note0.txt"), format!("version {n}\n")).unwrap();
}

/// Keeps a copy of the tree as backed up, to compare restores with.
fn keep_copy(src: &Path, dst: &Path) {
    let out = tool("cp", &[&"-a", &src, &dst]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Restores every snapshot of `env` and compares each with the version whose time it has.
fn restore_all(env: &Env, versions: &[(String, PathBuf)], label: &str) {
    let list: Value = json(&env.ok(&[&"--json", &"snapshots"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), versions.len(), "{label}: snapshots {list:?}");
    for (time, copy) in versions {
        let snap = list
            .iter()
            .find(|s| s["time"].as_str() == Some(time))
            .unwrap_or_else(|| panic!("{label}: no snapshot taken at {time}: {list:?}"));
        let id = snap["id"].as_str().unwrap();
        let target = env.path(&format!("restore-{label}-{}", &id[..8]));
        env.restore(id, &target, &[]);
        let src = snap["paths"][0].as_str().unwrap();
        assert_rsync_clean(copy, &restored(&target, Path::new(src)));
    }
}

#[test]
fn sites_sync_failover_fencing_failback() {
    let rt = runtime();
    let target = S3Target::from_env().unwrap_or_else(|e| panic!("{e}"));
    let proxy = start_proxy(&rt, &target, "127.0.0.1:0".parse().unwrap());
    let proxy_addr = proxy.addr();
    let a_location = target.location(
        &S3Target::unique_prefix("site-a"),
        Some(&format!("http://{proxy_addr}")),
    );
    let mut vars = s3_vars(&target);
    vars.push(("ZAIBEI_CACHE_DIR".into(), None));
    let mut a = Env::init_at(&a_location, vars.clone(), Vec::new());
    // A cut-off site must be judged unreachable quickly.
    set_var(&mut a, "ZAIBEI_RETRIES", "2");
    set_var(&mut a, "ZAIBEI_IO_TIMEOUT", "10");
    let b_path = a.path("site-b");
    let mut b = Env {
        repo: b_path.clone(),
        dir: scratch(),
        password: a.password.clone(),
        bin: a.bin.clone(),
        extra_env: vars,
        extra_args: Vec::new(),
    };
    set_var(&mut b, "ZAIBEI_RETRIES", "2");
    set_var(&mut b, "ZAIBEI_IO_TIMEOUT", "10");
    b.ok(&[&"init", &"--insecure-test-kdf", &"--from", &a_location]);

    a.ok(&[&"site", &"init", &"--name", &"beijing"]);
    a.ok(&[&"site", &"add", &"--name", &"shanghai", &b_path]);
    // A site that is this repository itself is refused.
    let out = a.expect(1, &[&"site", &"add", &"--name", &"mirror", &a_location]);
    assert!(all_output(&out).contains("itself"), "{}", describe(&out));
    // Deleting is allowed at the primary while every site agrees.
    a.ok(&[&"prune"]);

    let src = a.path("src");
    let mut versions: Vec<(String, PathBuf)> = Vec::new();
    let backup = |env: &Env, n: u64, versions: &mut Vec<(String, PathBuf)>| {
        write_version(&src, n);
        let s = env.backup(&[&src]);
        let copy = a_dir_path(env, n);
        keep_copy(&src, &copy);
        let id = s["snapshot_id"].as_str().unwrap().to_owned();
        let list: Value = json(&env.ok(&[&"--json", &"snapshots"]));
        let time = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()["time"]
            .as_str()
            .unwrap()
            .to_owned();
        versions.push((time, copy));
    };

    // 1. A backup at the primary, synced to the replica.
    backup(&a, 1, &mut versions);
    let sync = json(&a.ok(&[&"--json", &"sync"]));
    let site = &sync["sites"][0];
    assert_eq!(site["site"], "shanghai", "{sync}");
    assert_eq!(site["missing_before"], 1, "{sync}");
    assert_eq!(site["snapshots_copied"], 1, "{sync}");
    assert_eq!(site["missing_after"], 0, "{sync}");
    assert_eq!(b.snapshot_ids(), a.snapshot_ids());
    // Replicas do not delete.
    let out = b.expect(14, &[&"forget", &"--keep-last", &"1"]);
    assert!(
        all_output(&out).contains("replica of beijing"),
        "{}",
        describe(&out)
    );

    // 2. Another backup at the primary that never reaches the replica.
    backup(&a, 2, &mut versions);

    // 3. The primary's site burns down: its store is cut off. The replica takes over.
    rt.block_on(proxy.shutdown());
    let out = a.run(&[&"snapshots"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the cut-off store still answers"
    );
    let fo = json(&b.ok(&[&"--json", &"failover"]));
    assert_eq!(fo["epoch"], 2, "{fo}");
    assert_eq!(fo["unreachable"][0]["site"], "beijing", "{fo}");
    backup(&b, 3, &mut versions);
    // The new primary may delete while the old one is known to be behind it... but only
    // once it can reach it; cut off, it cannot prove anything either.
    let out = b.expect(14, &[&"prune"]);
    assert!(
        all_output(&out).contains("cannot be reached"),
        "{}",
        describe(&out)
    );

    // 4. The old primary comes back. Its clients kept backing up to it; it may not delete.
    let proxy = start_proxy(&rt, &target, proxy_addr);
    backup(&a, 4, &mut versions);
    for args in [
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["key", "passwd", "--insecure-test-kdf"],
    ] {
        let args: Vec<&dyn AsRef<OsStr>> = args.iter().map(|x| x as &dyn AsRef<OsStr>).collect();
        let out = a.expect(14, &args);
        assert!(
            all_output(&out).contains("failed over from"),
            "{}",
            describe(&out)
        );
    }
    let out = a.expect(14, &[&"sync"]);
    assert!(all_output(&out).contains("failback"), "{}", describe(&out));
    assert_eq!(
        a.snapshot_ids().len(),
        3,
        "nothing was deleted at the old primary"
    );
    // Dropping the site that fences it needs an explicit word, and even then the new
    // primary, reachable and ahead, refuses it.
    a.expect(2, &[&"site", &"remove", &"shanghai"]);
    let out = a.expect(14, &[&"site", &"remove", &"shanghai", &"--gone-for-good"]);
    assert!(
        all_output(&out).contains("failed over from"),
        "{}",
        describe(&out)
    );

    // 5. Failback: both sides' snapshots merged into both; the old primary leads again.
    let fb = json(&a.ok(&[&"--json", &"failback"]));
    assert_eq!(fb["epoch"], 3, "{fb}");
    assert_eq!(fb["merged"][0]["snapshots"], 2, "{fb}");
    assert_eq!(fb["merged"][1]["snapshots"], 1, "{fb}");
    let show = json(&a.ok(&[&"--json", &"site", &"show"]));
    assert_eq!(show[0]["role"], "primary", "{show}");
    assert_eq!(show[1]["role"], "replica", "{show}");
    assert_eq!(show[1]["epoch"], 3, "{show}");
    b.expect(14, &[&"forget", &"--keep-last", &"1"]);
    a.ok(&[&"prune"]);

    // 6. Every snapshot of both sides and both periods restores bit for bit at both sites.
    let mut ids_a = a.snapshot_ids();
    let mut ids_b = b.snapshot_ids();
    ids_a.sort();
    ids_b.sort();
    assert_eq!(ids_a, ids_b, "both sites hold the same snapshots");
    restore_all(&a, &versions, "beijing");
    restore_all(&b, &versions, "shanghai");
    a.ok(&[&"check", &"--read-data"]);
    b.ok(&[&"check", &"--read-data"]);

    // 7. Forgets at the primary reach the replica with the next sync; a snapshot taken at the
    // replica itself (never the primary's) is left alone there.
    let first = a.snapshot_ids()[0].clone();
    a.ok(&[&"forget", &first.as_str()]);
    write_version(&src, 5);
    let own = b.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sync = json(&a.ok(&[&"--json", &"sync", &"--prune"]));
    let site = &sync["sites"][0];
    assert_eq!(site["snapshots_forgotten"], 1, "{sync}");
    assert!(
        site["pruned_waiting_packs"].as_u64().unwrap() > 0,
        "prune at the replica condemned what the forgotten snapshot alone used: {sync}"
    );
    let at_b = b.snapshot_ids();
    assert!(
        !at_b.contains(&first),
        "the forget reached the replica: {at_b:?}"
    );
    assert!(
        at_b.contains(&own),
        "the replica's own snapshot stays: {at_b:?}"
    );
    assert_eq!(at_b.len(), 4, "{at_b:?}");
    b.ok(&[&"check"]);

    // 8. A drill at the primary measures the off-site copy: the replica answers, 0 s behind.
    let history = a.path("drills");
    let drill = json(&a.ok(&[&"--json", &"drill", &"--history", &history]));
    let assessment = &drill["assessment"];
    assert_eq!(assessment["offsite_measured"], true, "{drill}");
    assert_eq!(
        assessment["offsite_sites"][0]["name"], "shanghai",
        "{drill}"
    );
    assert_eq!(assessment["offsite_sites"][0]["reachable"], true, "{drill}");
    assert_eq!(assessment["offsite_sites"][0]["lag_seconds"], 0, "{drill}");
    rt.block_on(proxy.shutdown());
}

/// Where the copy of version `n` of the tree is kept.
fn a_dir_path(env: &Env, n: u64) -> PathBuf {
    env.path(&format!("version-{n}"))
}

#[test]
fn copy_reencrypts_between_suites_and_resumes() {
    let intl = Env::init_in_with(scratch(), &["--suite", "intl"]);
    let gm = Env::init();
    let src = intl.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big"), pseudo_random(5 << 20, 3)).unwrap();
    fs::create_dir(src.join("deep")).unwrap();
    fs::write(src.join("deep/small"), b"small file\n").unwrap();
    std::os::unix::fs::symlink("deep/small", src.join("link")).unwrap();
    intl.backup(&[&src]);
    let from: &dyn AsRef<OsStr> = &intl.repo;

    let dry = json(&gm.ok(&[&"--json", &"copy", &"--from", from, &"--dry-run"]));
    assert_eq!(dry["mode"], "reencrypt", "{dry}");
    assert_eq!(dry["copied"].as_array().unwrap().len(), 1, "{dry}");
    assert!(gm.snapshot_ids().is_empty(), "a dry run copies nothing");

    let first = json(&gm.ok(&[&"--json", &"copy", &"--from", from]));
    assert_eq!(first["mode"], "reencrypt", "{first}");
    assert_eq!(first["copied"].as_array().unwrap().len(), 1, "{first}");
    let again = json(&gm.ok(&[&"--json", &"copy", &"--from", from]));
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["already_present"], 1, "{again}");

    let target = gm.path("restored");
    gm.restore("latest", &target, &[]);
    assert_rsync_clean(&src, &restored(&target, &src));
    gm.ok(&[&"check", &"--read-data"]);
}

#[test]
fn copy_moves_packs_between_repositories_sharing_keys() {
    let a = Env::init();
    let b_path = a.path("b");
    let b = Env {
        repo: b_path.clone(),
        dir: scratch(),
        password: a.password.clone(),
        bin: a.bin.clone(),
        extra_env: Vec::new(),
        extra_args: Vec::new(),
    };
    b.ok(&[&"init", &"--insecure-test-kdf", &"--from", &a.repo]);
    let src = a.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("one"), pseudo_random(4 << 20, 11)).unwrap();
    a.backup(&[&src]);
    fs::write(src.join("two"), pseudo_random(2 << 20, 12)).unwrap();
    a.backup(&[&src]);
    let ids = a.snapshot_ids();

    // The first snapshot alone, then everything: the second run copies only what is new.
    let first = json(&b.ok(&[&"--json", &"copy", &"--from", &a.repo, &ids[0].as_str()]));
    assert_eq!(first["mode"], "packs", "{first}");
    assert!(first["packs_whole"].as_u64().unwrap() >= 1, "{first}");
    assert!(first["objects_verified"].as_u64().unwrap() >= 2, "{first}");
    let second = json(&b.ok(&[&"--json", &"copy", &"--from", &a.repo]));
    assert_eq!(second["copied"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["already_present"], 1, "{second}");
    assert_eq!(b.snapshot_ids(), ids, "snapshots keep their ids");

    let target = b.path("restored");
    b.restore(&ids[1], &target, &[]);
    assert_rsync_clean(&src, &restored(&target, &src));
    b.ok(&[&"check", &"--read-data"]);
}

/// Snapshot objects removed at the primary without `forget` (here `rm`; in practice
/// `aws s3 rm`, a lifecycle rule, a rolled-back store) are never mirrored as forgets: every
/// sync keeps them at the replica and reports them, `--copy-back` brings them back, and only
/// a real forget reaches the replica.
#[test]
fn snapshots_removed_at_the_primary_without_forget_stay_at_the_replica() {
    let a = Env::init();
    let b_path = a.path("site-b");
    let b = Env {
        repo: b_path.clone(),
        dir: scratch(),
        password: a.password.clone(),
        bin: a.bin.clone(),
        extra_env: Vec::new(),
        extra_args: Vec::new(),
    };
    b.ok(&[&"init", &"--insecure-test-kdf", &"--from", &a.repo]);
    a.ok(&[&"site", &"init", &"--name", &"one"]);
    a.ok(&[&"site", &"add", &"--name", &"two", &b_path]);
    let src = a.path("src");
    let mut ids = Vec::new();
    for n in 1..=3 {
        write_version(&src, n);
        ids.push(
            a.backup(&[&src])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    a.ok(&[&"sync"]);
    assert_eq!(b.snapshot_ids().len(), 3);

    // Everything under snapshots/ but the newest goes, with no key.
    for id in &ids[..2] {
        fs::remove_file(a.repo.join("snapshots").join(id)).unwrap();
    }
    let mut gone = ids[..2].to_vec();
    gone.sort();
    let sync = json(&a.ok(&[&"--json", &"sync", &"--prune"]));
    let site = &sync["sites"][0];
    assert_eq!(site["snapshots_forgotten"], 0, "{sync}");
    assert_eq!(
        site["missing_at_primary"],
        serde_json::json!(gone),
        "{sync}"
    );
    assert_eq!(b.snapshot_ids().len(), 3, "the replica keeps them");
    b.ok(&[&"check"]);
    // Reported at every sync, with a warning in text mode.
    let out = a.ok(&[&"sync"]);
    assert!(
        all_output(&out).contains("without a forget record"),
        "{}",
        describe(&out)
    );

    // Copied back from the replica.
    let sync = json(&a.ok(&[&"--json", &"sync", &"--copy-back"]));
    assert_eq!(sync["sites"][0]["snapshots_copied_back"], 2, "{sync}");
    assert_eq!(a.snapshot_ids().len(), 3);
    let sync = json(&a.ok(&[&"--json", &"sync"]));
    assert_eq!(
        sync["sites"][0]["missing_at_primary"],
        serde_json::json!([]),
        "{sync}"
    );

    // A forget publishes its record: that one reaches the replica.
    a.ok(&[&"forget", &ids[0].as_str()]);
    let sync = json(&a.ok(&[&"--json", &"sync"]));
    assert_eq!(sync["sites"][0]["snapshots_forgotten"], 1, "{sync}");
    let at_b = b.snapshot_ids();
    assert_eq!(at_b.len(), 2, "{at_b:?}");
    assert!(!at_b.contains(&ids[0]), "{at_b:?}");
    a.ok(&[&"check"]);
    b.ok(&[&"check"]);
}
