//! End-to-end tests of the repository lifecycle: `forget` (retention policies with explained
//! dry runs, removal by id, usage errors; the data stays readable for every kept snapshot)
//! and `check --read-data-subset`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;

use e2e_support::*;
use serde_json::Value;

/// Backs up `src` with the recorded time `time` (UTC); returns the snapshot id.
fn backup_at(env: &Env, src: &std::path::Path, time: &str, tags: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        "--json".into(),
        "backup".into(),
        "--time".into(),
        time.into(),
    ];
    for t in tags {
        args.push("--tag".into());
        args.push((*t).into());
    }
    args.push(src.to_str().unwrap().into());
    let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    let s = summary(&env.ok(&refs));
    s["snapshot_id"].as_str().unwrap().to_owned()
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    let out = env.ok(&[&"--json", &"snapshots"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn forget_by_policy_explains_and_keeps_what_the_rules_say() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // Ten days, two snapshots a day (03:00 and 15:00 UTC); the fourth day's are tagged.
    let mut ids = Vec::new();
    for day in 1..=10 {
        fs::write(src.join("day"), format!("{day}")).unwrap();
        for hour in ["03", "15"] {
            let tags: &[&str] = if day == 4 { &["audit"] } else { &[] };
            ids.push(backup_at(
                &env,
                &src,
                &format!("2026-03-{day:02}T{hour}:00:00Z"),
                tags,
            ));
        }
    }
    let newest = ids.last().unwrap().clone();

    // Dry run: every decision with its reasons, nothing removed.
    let policy = [
        "--keep-last",
        "2",
        "--keep-daily",
        "3",
        "--keep-tag",
        "audit",
    ];
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--json", &"forget", &"--dry-run"];
    for p in &policy {
        args.push(p);
    }
    let out = env.run_with_tz("UTC", &args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"], 0);
    let group = &report["groups"][0];
    let keep: Vec<(&str, Vec<&str>)> = group["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap(),
                i["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    // Newest two (day 10 15:00 and 03:00), the newest of days 10, 9, 8, and both of day 4.
    assert_eq!(keep.len(), 6, "{group}");
    assert_eq!(keep[0], (newest.as_str(), vec!["last", "daily"]));
    assert_eq!(keep[1].1, vec!["last"]);
    assert!(
        keep.iter().filter(|k| k.1 == ["tag audit"]).count() == 2,
        "{group}"
    );
    assert_eq!(group["remove"].as_array().unwrap().len(), 14);
    assert_eq!(snapshot_ids(&env).len(), 20, "a dry run removed snapshots");

    // For real.
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"forget"];
    for p in &policy {
        args.push(p);
    }
    let out = env.run_with_tz("UTC", &args);
    assert_eq!(out.status.code(), Some(code::OK), "{}", describe(&out));
    let left = snapshot_ids(&env);
    assert_eq!(left.len(), 6);
    let kept_ids: Vec<&str> = keep.iter().map(|k| k.0).collect();
    for id in &left {
        assert!(
            kept_ids.contains(&id.as_str()),
            "{id} survived but was not kept"
        );
    }
    // Every kept snapshot still restores (forget removes no data).
    env.ok(&[&"check", &"--read-data"]);
    let day4 = keep.iter().find(|k| k.1 == ["tag audit"]).unwrap().0;
    let target = env.path("restore");
    env.restore(day4, &target, &[]);
    assert_eq!(fs::read(restored(&target, &src).join("day")).unwrap(), b"4");

    // By id; then usage errors.
    env.ok(&[&"forget", &&left[0][..12]]);
    assert_eq!(snapshot_ids(&env).len(), 5);
    env.expect(code::USAGE, &[&"forget"]);
    env.expect(
        code::USAGE,
        &[&"forget", &&left[1][..12], &"--keep-last", &"1"],
    );
    env.expect(
        code::USAGE,
        &[&"forget", &"--keep-last", &"1", &"--group-by", &"colour"],
    );
    let out = env.run(&[&"forget", &"ffffffffffff"]);
    assert_ne!(out.status.code(), Some(code::OK), "{}", describe(&out));
}

/// `check --read-data-subset`: the parts of a partition together read every pack once.
#[test]
fn check_reads_data_in_parts() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6u64 {
        fs::write(src.join(format!("f{i}")), pseudo_random(3 << 20, i)).unwrap();
    }
    env.backup(&[&src]);
    let packs_read = |spec: &str| -> (u64, u64) {
        let out = env.ok(&[&"--json", &"check", &"--read-data-subset", &spec]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
        (num(&v, "packs_read"), num(&v, "packs_total"))
    };
    let (all, total) = packs_read("100%");
    assert_eq!(all, total);
    assert!(total >= 2, "{total} packs: the test needs several");
    let parts: u64 = (1..=3).map(|n| packs_read(&format!("{n}/3")).0).sum();
    assert_eq!(parts, total);
    assert_eq!(packs_read("1%").0, 1);
    env.expect(code::USAGE, &[&"check", &"--read-data-subset", &"0/3"]);
}
