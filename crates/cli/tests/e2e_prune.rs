//! End-to-end tests of `prune`: fifty snapshots of a real source tree, half forgotten; the
//! first prune only condemns, the sweep frees the space the forgotten snapshots alone held,
//! and every remaining snapshot checks and restores bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;
use std::path::Path;

use e2e_support::*;

const ROUNDS: u64 = 50;
const UNIQUE: usize = 300_000;

fn data_bytes(env: &Env) -> u64 {
    env.objects("data")
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn prune(env: &Env, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--json", &"prune"];
    for e in extra {
        args.push(e);
    }
    summary(&env.ok(&args))
}

#[test]
fn prune_after_forgetting_half_of_fifty_snapshots_frees_their_space() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // A real source tree: this workspace's crates, unchanged through all rounds.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    bash(
        env.dir.path(),
        &format!("cp -a '{}' src/code", crates.display()),
    );
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        // What only this round has: an incompressible file and a small text file.
        fs::write(
            src.join("round.bin"),
            pseudo_random(UNIQUE, 2 * round + 101),
        )
        .unwrap();
        fs::write(src.join("round.txt"), format!("round {round}\n")).unwrap();
        let s = env.backup(&[&src]);
        ids.push(s["snapshot_id"].as_str().unwrap().to_owned());
    }
    let before = data_bytes(&env);

    // Forget the odd rounds.
    let forgotten: Vec<&String> = ids.iter().skip(1).step_by(2).collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"forget"];
    for id in &forgotten {
        args.push(*id);
    }
    env.ok(&args);

    // Phase one: condemned, nothing deleted, and a dry run of the sweep says what would go.
    let mark = prune(&env, &[]);
    assert_eq!(num(&mark, "deleted_packs"), 0, "{mark}");
    assert!(
        num(&mark, "waiting_packs") >= forgotten.len() as u64,
        "{mark}"
    );
    assert_eq!(data_bytes(&env), before);
    let dry = prune(
        &env,
        &["--dry-run", "--safety-margin", "0s", "--max-unused", "0%"],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(data_bytes(&env), before);

    // Phase two, the margin being zero.
    let sweep = prune(&env, &["--safety-margin", "0s", "--max-unused", "0%"]);
    assert_eq!(
        num(&sweep, "deleted_packs"),
        num(&dry, "deleted_packs"),
        "{sweep}"
    );
    assert_eq!(num(&sweep, "waiting_packs"), 0, "{sweep}");
    let after = data_bytes(&env);
    let freed = before - after;
    assert_eq!(
        freed,
        num(&sweep, "deleted_bytes") - num(&sweep, "repacked_bytes_after")
    );
    // The forgotten rounds' files, plus their trees and pack overhead (a few KiB each).
    let expected = forgotten.len() as u64 * UNIQUE as u64;
    note(&format!(
        "pack data {before} -> {after} bytes: freed {freed}, files unique to the forgotten \
         snapshots {expected}"
    ));
    assert!(
        freed >= expected && freed <= expected + forgotten.len() as u64 * 64 * 1024,
        "freed {freed} bytes, expected about {expected}"
    );
    // Nothing is left to do.
    let idle = prune(&env, &["--safety-margin", "0s", "--max-unused", "0%"]);
    assert_eq!(
        num(&idle, "deleted_packs") + num(&idle, "repacked_packs"),
        0,
        "{idle}"
    );

    // Every remaining snapshot checks and restores bit for bit.
    let check = summary(&env.ok(&[&"--json", &"check", &"--read-data"]));
    assert_eq!(check["errors"], 0, "{check}");
    assert_eq!(env.snapshot_ids().len(), ids.len() - forgotten.len());
    for (round, id) in ids.iter().enumerate().step_by(2) {
        let target = env.path(&format!("restore-{round}"));
        env.restore(id, &target, &[]);
        let got = restored(&target, &src);
        assert!(
            fs::read(got.join("round.bin")).unwrap()
                == pseudo_random(UNIQUE, 2 * round as u64 + 101),
            "round {round}: round.bin differs"
        );
        assert_eq!(
            fs::read_to_string(got.join("round.txt")).unwrap(),
            format!("round {round}\n")
        );
        assert_treecmp_clean(&src.join("code"), &got.join("code"), false);
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn prune_with_the_maintenance_key_alone() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for round in 0..4u64 {
        fs::write(src.join("f"), pseudo_random(100_000, 2 * round + 7)).unwrap();
        ids.push(
            env.backup(&[&src])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    env.ok(&[&"forget", &ids[0], &ids[1]]);
    // A maintenance key: it can prune, but it cannot read file contents.
    let pw = env.path("maint-pw");
    fs::write(&pw, "maintenance password\n").unwrap();
    env.ok(&[
        &"key",
        &"add",
        &"--maintenance-only",
        &"--new-password-file",
        &pw,
        &"--kdf-time",
        &"1",
    ]);
    let mut c = env.command();
    c.env("ZAIBEI_PASSWORD", "maintenance password").args([
        "--json",
        "prune",
        "--safety-margin",
        "0s",
    ]);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let s = summary(&out);
    assert!(num(&s, "deleted_packs") > 0, "{s}");
    let check = summary(&env.ok(&[&"--json", &"check", &"--read-data"]));
    assert_eq!(check["errors"], 0, "{check}");
    let target = env.path("r");
    env.restore(&ids[3], &target, &[]);
    assert!(fs::read(restored(&target, &src).join("f")).unwrap() == pseudo_random(100_000, 13));
}
