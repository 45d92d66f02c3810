//! Tests of the drill history.

use super::*;
use crate::testdata;

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temporary directory: {e}"),
    }
}

#[test]
fn reports_round_trip_in_time_order() -> Result<(), DrillError> {
    let dir = tempdir();
    let h = History::new(dir.path().join("drills/repo1"));
    assert!(
        h.load("repo1").reports.is_empty(),
        "a missing directory is empty"
    );
    let late = testdata::report("repo1", 2_000_000, 12.5, "db", "/srv");
    let early = testdata::failed_report("repo1", 1_000_000, "/srv/lost");
    let p1 = h.save(&late)?;
    let p2 = h.save(&early)?;
    assert_ne!(p1, p2);
    let loaded = h.load("repo1");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let ids: Vec<&str> = loaded.reports.iter().map(|r| r.drill_id.as_str()).collect();
    assert_eq!(ids, [early.drill_id.as_str(), late.drill_id.as_str()]);
    assert_eq!(loaded.counts(), (2, 1));
    // Every field survives, failures included.
    let back = &loaded.reports[0];
    assert_eq!(
        serde_json::to_value(back).ok(),
        serde_json::to_value(&early).ok()
    );
    assert_eq!(back.verification.failures[0].path, "/srv/lost");
    Ok(())
}

#[test]
fn saving_the_same_drill_twice_keeps_both() -> Result<(), DrillError> {
    let dir = tempdir();
    let h = History::new(dir.path().to_path_buf());
    let r = testdata::report("repo1", 1_000, 1.0, "db", "/srv");
    let a = h.save(&r)?;
    let b = h.save(&r)?;
    assert_ne!(a, b);
    assert_eq!(h.load("repo1").reports.len(), 2);
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .map_err(|e| DrillError::io("listing", dir.path(), e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
    Ok(())
}

#[test]
fn unreadable_files_are_skipped_with_a_warning() -> Result<(), DrillError> {
    let dir = tempdir();
    let h = History::new(dir.path().to_path_buf());
    h.save(&testdata::report("repo1", 1_000, 1.0, "db", "/srv"))?;
    let write = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, body).map_err(|e| DrillError::io("writing", &p, e))
    };
    write("truncated.json", b"{\"version\": 1, \"drill_id\": ")?;
    write("not-json.json", b"\xff\xfe garbage")?;
    write(
        "other-repo.json",
        &serde_json::to_vec(&testdata::report("repo2", 5, 1.0, "db", "/srv")).unwrap_or_default(),
    )?;
    let mut newer = testdata::report("repo1", 7, 1.0, "db", "/srv");
    newer.version = REPORT_VERSION + 1;
    write(
        "newer.json",
        &serde_json::to_vec(&newer).unwrap_or_default(),
    )?;
    write("notes.txt", b"ignored: not a report")?;
    // A directory named like a report cannot be read as one.
    let d = dir.path().join("dir.json");
    fs::create_dir(&d).map_err(|e| DrillError::io("mkdir", &d, e))?;
    let loaded = h.load("repo1");
    assert_eq!(loaded.reports.len(), 1);
    assert_eq!(loaded.reports[0].repository.id, "repo1");
    // Another repository's report is left out quietly (a shared --history directory).
    assert_eq!(loaded.warnings.len(), 4, "{:#?}", loaded.warnings);
    for name in ["truncated.json", "not-json.json", "newer.json", "dir.json"] {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(name)),
            "no warning names {name}: {:#?}",
            loaded.warnings
        );
    }
    Ok(())
}

#[test]
fn default_directory_follows_xdg_then_home() {
    let id = "abc123";
    assert_eq!(
        default_dir_from(id, Some("/data".into()), Some("/home/u".into())),
        Some(PathBuf::from("/data/zaibei/drills/abc123"))
    );
    assert_eq!(
        default_dir_from(id, None, Some("/home/u".into())),
        Some(PathBuf::from("/home/u/.local/share/zaibei/drills/abc123"))
    );
    // A relative or empty XDG_DATA_HOME is ignored, as the XDG spec says.
    assert_eq!(
        default_dir_from(id, Some("relative".into()), Some("/home/u".into())),
        Some(PathBuf::from("/home/u/.local/share/zaibei/drills/abc123"))
    );
    assert_eq!(
        default_dir_from(id, Some("".into()), Some("/h".into())),
        Some(PathBuf::from("/h/.local/share/zaibei/drills/abc123"))
    );
    assert_eq!(default_dir_from(id, None, None), None);
}
