//! End-to-end test of `zaibei drill` on a real source tree: a few MB of this workspace's own
//! sources and of `/usr/share/doc`, backed up twice with changes between. The drill must
//! produce the three report forms (table, `--json`, `--html`) with measured figures that
//! agree with what the tree and `snapshots --json` say, record one history entry per drill,
//! judge targets, measure the RPO's worst gap inside its window, keep going when the HTML page
//! cannot be written, and — after one data pack's bytes are flipped — fail with exit code 4
//! and name exactly the files `check --read-data` says are lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use e2e_support::*;
use serde_json::Value;

/// Exit code of a drill that recovered everything but missed a target.
const TARGET_MISSED: i32 = 5;

/// Copies about `budget` bytes of real trees into `dest`: the workspace's `crates/` and
/// packages' documentation from `/usr/share/doc`.
fn copy_real_tree(dest: &Path, budget: u64) {
    fs::create_dir_all(dest).unwrap();
    let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    bash(dest, &format!("cp -a '{crates}' crates"));
    let mut docs: Vec<PathBuf> = fs::read_dir("/usr/share/doc")
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    docs.sort();
    fs::create_dir_all(dest.join("doc")).unwrap();
    for d in docs {
        if tree_stats(dest).1 >= budget {
            break;
        }
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&d)
            .arg(dest.join("doc"))
            .status()
            .unwrap();
        assert!(status.success(), "cp -a {}", d.display());
    }
}

/// Regular-file names below `root` and the sum of their sizes (per name, as a drill counts
/// them), not following symlinks.
fn tree_stats(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

/// The report of a `drill --json` run (its summary line, without `message_type`).
fn report(out: &Output) -> Value {
    let mut v = summary(out);
    v.as_object_mut().unwrap().remove("message_type");
    v
}

fn f64_of(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Seconds since 1970 of an RFC 3339 time.
fn seconds(text: &str) -> f64 {
    let ts: jiff::Timestamp = text.parse().unwrap();
    ts.as_second() as f64 + f64::from(ts.subsec_nanosecond()) / 1e9
}

/// The JSON reports in a history directory.
fn history(dir: &Path) -> Vec<Value> {
    let mut v: Vec<Value> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension() == Some(OsStr::new("json")))
                .map(|p| serde_json::from_slice(&fs::read(&p).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a: &Value, b: &Value| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    v
}

/// `zaibei -r REPO ARGS...` with extra environment variables.
fn run_env(env: &Env, vars: &[(&str, &Path)], args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut c = env.command();
    for (k, v) in vars {
        c.env(k, v);
    }
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().unwrap()
}

fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}\n{}", describe(out));
}

#[test]
fn drill_on_a_real_tree_reports_measured_figures_and_finds_damage() {
    let env = Env::init();
    let src = env.path("src");
    timed("drill: copying the real tree", || {
        copy_real_tree(&src, 4 << 20)
    });

    let first = env.backup(&[&src]);
    // Change the tree between the backups: a file changed, one added, one removed.
    let readme = src.join("crates/drill/src/lib.rs");
    let mut text = fs::read(&readme).unwrap();
    text.extend_from_slice(b"// changed between the backups\n");
    fs::write(&readme, text).unwrap();
    fs::write(src.join("added.txt"), pseudo_random(300_000, 7)).unwrap();
    fs::remove_file(src.join("crates/drill/Cargo.toml")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = env.backup(&[&src]);
    let (files, bytes) = tree_stats(&src);
    note(&format!("drill: real tree of {files} files, {bytes} bytes"));

    // The snapshots' times as `snapshots --json` lists them.
    let listed: Value = serde_json::from_slice(&env.ok(&[&"--json", &"snapshots"]).stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let (id1, id2) = (
        first["snapshot_id"].as_str().unwrap(),
        second["snapshot_id"].as_str().unwrap(),
    );
    let time_of = |id: &str| {
        listed
            .iter()
            .find(|s| s["id"] == id)
            .and_then(|s| s["time"].as_str())
            .unwrap()
            .to_owned()
    };
    let (t1, t2) = (time_of(id1), time_of(id2));
    let gap = seconds(&t2) - seconds(&t1);

    // 1. --json.
    let hist = env.path("history");
    let out = timed("drill --json", || {
        env.run(&[&"--json", &"drill", &"--history", &hist])
    });
    expect_code(&out, code::OK, "drill --json");
    let r = report(&out);
    assert_eq!(r["status"], "passed", "{r:#}");
    assert_eq!(r["passed"], true);
    assert_eq!(r["recovered"], true);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["snapshot"]["id"], id2);
    assert_eq!(r["snapshot"]["time"].as_str(), Some(t2.as_str()));
    let v = &r["verification"];
    assert_eq!(num(v, "files_expected"), files, "{v:#}");
    assert_eq!(num(v, "files_verified"), files, "{v:#}");
    assert_eq!(num(v, "bytes_verified"), bytes, "{v:#}");
    assert_eq!(num(v, "failures_total"), 0);
    assert!(num(v, "dirs_verified") > 10, "{v:#}");
    assert!(f64_of(&v["verify_bytes_per_second"], "verify rate") > 0.0);
    // RTO: measured, phase by phase, adding up.
    let rto = &r["rto"];
    let rto_secs = f64_of(&rto["seconds"], "rto");
    assert!(rto_secs > 0.0);
    let phases: Vec<&str> = rto["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["open", "index", "select", "restore", "verify"]);
    let sum: f64 = rto["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| f64_of(&p["seconds"], "phase"))
        .sum();
    assert!((sum - rto_secs).abs() < 1e-6, "{sum} vs {rto_secs}");
    assert!(num(rto, "files_restored") > 0 && num(rto, "files_restored") <= files);
    assert!(num(rto, "bytes_restored") > 0 && num(rto, "bytes_restored") <= bytes);
    assert!(f64_of(&rto["restore_bytes_per_second"], "restore rate") > 0.0);
    assert!(num(rto, "bytes_downloaded") > 0);
    assert_eq!(
        num(v, "cause_bytes_downloaded"),
        0,
        "nothing failed to trace"
    );
    assert_eq!(v["causes_incomplete"], false);
    // RPO: the gap is the difference of the two snapshots' times.
    let rpo = &r["rpo"];
    assert_eq!(f64_of(&rpo["window_seconds"], "window"), 7.0 * 86_400.0);
    assert_eq!(num(rpo, "restorable_in_window"), 2);
    assert_eq!(num(rpo, "snapshots"), 2);
    assert_eq!(num(rpo, "restorable"), 2);
    let worst = f64_of(&rpo["worst_gap_seconds"], "worst gap");
    assert!(
        (worst - gap).abs() < 1e-6,
        "worst gap {worst}, snapshots {gap}"
    );
    assert!(worst >= 1.0, "{worst}");
    assert_eq!(rpo["worst_gap_from"]["id"], id1);
    assert_eq!(rpo["worst_gap_to"]["id"], id2);
    assert_eq!(rpo["newest"]["id"], id2);
    let age = f64_of(&rpo["newest_age_seconds"], "newest age");
    assert!(age >= 0.0);
    assert_eq!(f64_of(&rpo["rpo_seconds"], "rpo"), worst.max(age));
    assert_eq!(rpo["group"]["paths"][0], src.to_str().unwrap());
    // The assessment.
    let a = &r["assessment"];
    assert_eq!(a["standard"], "GB/T 20988-2025");
    let level = num(a, "level");
    assert!(level <= 6);
    assert_eq!(a["offsite_measured"], false);
    assert_eq!(
        num(a, "confirmed_level"),
        0,
        "off-site copies are not measured"
    );
    assert_eq!(a["attest"].as_array().unwrap().len(), 6);
    assert!(!a["missing_for_next"].as_array().unwrap().is_empty());
    assert!(
        a["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["requirement"] == "zero_data_loss" && c["status"] == "not_met")
    );
    // The scratch space is gone; the history holds this report.
    assert_eq!(r["scratch"]["kept"], false);
    assert!(!Path::new(r["scratch"]["path"].as_str().unwrap()).exists());
    let h = history(&hist);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0], r, "the history file is the report");

    // 2. The table and the HTML page.
    let page = env.path("drill.html");
    let out = timed("drill --html", || {
        env.run(&[&"drill", &"--history", &hist, &"--html", &page])
    });
    expect_code(&out, code::OK, "drill --html");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "PASSED",
        "恢复时间 RTO",
        "恢复点 RPO",
        "GB/T 20988-2025",
        "worst gap",
        "window      last 7 d 00 h (2 restorable snapshots in it)",
    ] {
        assert!(text.contains(want), "the table lacks {want:?}:\n{text}");
    }
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "phase bar, RTO and RPO charts"
    );
    assert!(html.contains(&format!(r#"<span class="level">{level}</span>"#)));
    assert!(html.contains("Past drills (2)"));
    assert!(
        html.contains("窗口 window</td><td>last 7 d 00 h"),
        "the page states the window"
    );
    assert!(
        html.contains(&format!("{files} / {files}")),
        "files verified of expected"
    );
    for forbidden in ["<script", "src=", "href=", "url("] {
        assert!(!html.contains(forbidden), "the page holds {forbidden:?}");
    }
    assert_eq!(history(&hist).len(), 2);

    // 3. The default history directory follows XDG_DATA_HOME.
    let xdg = env.path("xdg");
    let out = run_env(&env, &[("XDG_DATA_HOME", &xdg)], &[&"--json", &"drill"]);
    expect_code(&out, code::OK, "drill with XDG_DATA_HOME");
    let repo_id = report(&out)["repository"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(history(&xdg.join("zaibei/drills").join(&repo_id)).len(), 1);

    // 4. A missed target fails the drill with exit code 5, and is recorded.
    let out = env.run(&[
        &"--json",
        &"drill",
        &"--history",
        &hist,
        &"--rto-target",
        &"1ns",
        &"--rpo-target",
        &"100years",
        &"--rpo-window",
        &"1ns",
    ]);
    expect_code(&out, TARGET_MISSED, "drill --rto-target 1ns");
    let r = report(&out);
    assert_eq!(r["status"], "targets_missed");
    assert_eq!(r["recovered"], true);
    assert_eq!(r["targets"]["rto"]["met"], false);
    assert_eq!(r["targets"]["rpo"]["met"], true);
    // Both snapshots are older than the window: no gap in it, the newest age is the RPO.
    assert_eq!(r["rpo"]["worst_gap_seconds"], Value::Null);
    assert_eq!(num(&r["rpo"], "restorable_in_window"), 0);
    assert_eq!(r["rpo"]["rpo_seconds"], r["rpo"]["newest_age_seconds"]);
    assert_eq!(history(&hist).len(), 3);

    // 5. A chosen target: refused when not empty; kept with --keep.
    let busy = env.path("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("x"), b"x").unwrap();
    let out = env.run(&[&"drill", &"--target", &busy, &"--history", &hist]);
    expect_code(&out, code::USAGE, "drill --target NON-EMPTY");
    assert!(all_output(&out).contains("not empty"), "{}", describe(&out));
    let kept = env.path("kept");
    let out = env.run(&[
        &"--json",
        &"drill",
        &id1,
        &"--target",
        &kept,
        &"--keep",
        &"--history",
        &hist,
    ]);
    expect_code(&out, code::OK, "drill ID --keep");
    assert_eq!(report(&out)["snapshot"]["id"], id1);
    assert_eq!(
        fs::read(restored(&kept, &src).join("added.txt")).ok(),
        None,
        "the first snapshot has no added.txt"
    );
    assert!(
        restored(&kept, &src)
            .join("crates/drill/Cargo.toml")
            .is_file()
    );
    assert_eq!(history(&hist).len(), 4);
    // A snapshot named by id must match the filters.
    let out = env.run(&[
        &"drill",
        &id1,
        &"--tag",
        &"no-such-tag",
        &"--history",
        &hist,
    ]);
    expect_code(&out, code::ERROR, "drill ID --tag OTHER");
    assert!(
        all_output(&out).contains("does not match"),
        "{}",
        describe(&out)
    );
    assert_eq!(history(&hist).len(), 4);

    // 6. An HTML page that cannot be written is a warning: the report is printed, recorded,
    // and the exit code is the drill's.
    let nowhere = env.path("no-such-dir").join("drill.html");
    let out = env.run(&[
        &"--json",
        &"drill",
        &"--history",
        &hist,
        &"--html",
        &nowhere,
    ]);
    expect_code(&out, code::OK, "drill --html in a missing directory");
    assert_eq!(report(&out)["status"], "passed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTML report could not be written"),
        "{}",
        describe(&out)
    );
    assert!(!nowhere.exists());
    assert_eq!(history(&hist).len(), 5);

    // 7. Damage: flip bytes in the largest data pack (pack kind byte 1).
    let mut packs: Vec<PathBuf> = env
        .objects("data")
        .into_iter()
        .filter(|p| fs::read(p).unwrap().get(8) == Some(&1))
        .collect();
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = packs.pop().expect("a data pack");
    let mut b = fs::read(&victim).unwrap();
    let mid = b.len() / 2;
    for i in 0..16 {
        b[mid + i * 97] ^= 0x5a;
    }
    fs::write(&victim, b).unwrap();
    let check = env.run(&[&"--json", &"check", &"--read-data"]);
    expect_code(&check, code::DAMAGED, "check --read-data after the damage");
    let mut lost: BTreeSet<String> = BTreeSet::new();
    for p in summary(&check)["problems"].as_array().unwrap() {
        for path in p["affected"]["paths"].as_array().into_iter().flatten() {
            if path["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == id2)
            {
                lost.insert(path["path"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        !lost.is_empty(),
        "check names no lost path\n{}",
        describe(&check)
    );
    note(&format!(
        "drill: {} files lost to the damaged pack",
        lost.len()
    ));

    let bad_page = env.path("damaged.html");
    let out = timed("drill of a damaged repository", || {
        env.run(&[
            &"--json",
            &"drill",
            &"--history",
            &hist,
            &"--html",
            &bad_page,
        ])
    });
    expect_code(&out, code::DAMAGED, "drill of a damaged repository");
    let r = report(&out);
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["recovered"], false);
    assert_eq!(r["passed"], false);
    let failures = r["verification"]["failures"].as_array().unwrap();
    let failed: BTreeSet<String> = failures
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed, lost, "the drill must name exactly the lost files");
    assert_eq!(num(&r["verification"], "failures_total"), lost.len() as u64);
    assert!(
        failures.iter().all(|f| f["cause"] == "repository_damage"),
        "{failures:#?}"
    );
    let v = &r["verification"];
    assert_eq!(
        num(&v["failure_causes"], "repository_damage"),
        lost.len() as u64
    );
    assert_eq!(v["causes_incomplete"], false);
    assert!(
        num(v, "cause_bytes_downloaded") > 0,
        "tracing the failures read their data again: {v:#}"
    );
    assert_eq!(
        num(&r["verification"], "files_verified"),
        files - lost.len() as u64
    );
    assert_eq!(r["rpo"]["not_restorable"][0]["id"], id2);
    assert_eq!(num(&r["assessment"], "level"), 0);
    assert_eq!(history(&hist).len(), 6);
    let html = fs::read_to_string(&bad_page).unwrap();
    assert!(html.contains("FAILED"));
    assert!(html.contains("Past drills (6)"));
    assert!(html.contains("repository damage"));
    let first_lost = lost.iter().next().unwrap();
    assert!(html.contains(&first_lost.replace('&', "&amp;").replace('<', "&lt;")));
    // The table names the failed files too.
    let out = env.run(&[&"drill", &"--history", &hist]);
    expect_code(&out, code::DAMAGED, "drill (table) of a damaged repository");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED") && text.contains("repository damage"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
}
