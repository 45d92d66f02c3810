//! Tests of the HTML page: escaping and self-containment.

use super::*;
use crate::testdata;

const HOSTILE_HOST: &str = "<script>alert('host')</script>";
const HOSTILE_PATH: &str = "/srv/\"><img src=x onerror=alert(1)>&amp;'";

#[test]
fn escape_covers_markup_and_quotes() {
    assert_eq!(
        escape(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(escape("灾备\u{1b}"), "灾备\\u{1b}");
}

#[test]
fn hostile_names_are_escaped_everywhere() {
    let mut r = testdata::failed_report("repo1", 1_000_000, HOSTILE_PATH);
    r.snapshot.hostname = HOSTILE_HOST.into();
    r.drill_host = HOSTILE_HOST.into();
    r.rpo.group.hostname = HOSTILE_HOST.into();
    r.rpo.group.paths = vec![HOSTILE_PATH.into()];
    r.snapshot.paths = vec![HOSTILE_PATH.into()];
    r.snapshot.tags = vec!["</td><script>".into()];
    r.error = Some("<iframe>".into());
    let page = render(&r, &[]);
    for raw in [
        HOSTILE_HOST,
        HOSTILE_PATH,
        "<script",
        "<img",
        "<iframe",
        "onerror=alert(1)>",
    ] {
        assert!(!page.contains(raw), "{raw:?} is in the page unescaped");
    }
    assert!(page.contains("&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;"));
    assert!(page.contains("/srv/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;&#39;"));
    // The failure's reason is escaped too.
    assert!(page.contains("authentication failed &lt;b&gt;"));
}

#[test]
fn the_page_is_self_contained_with_charts_and_the_level() {
    let past = [
        testdata::report("repo1", 1_000_000, 4.0, "db", "/srv"),
        testdata::failed_report("repo1", 1_100_000, "/srv/x"),
    ];
    let now = testdata::report("repo1", 1_200_000, 6.0, "db", "/srv");
    let page = render(&now, &past);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    for forbidden in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(!page.contains(forbidden), "the page contains {forbidden:?}");
    }
    // Phase bar, RTO chart, RPO chart.
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(page.contains("恢复时间 RTO"));
    assert!(page.contains("Capability level"));
    assert!(page.contains(r#"<span class="level">4</span>"#));
    assert!(page.contains("电子传输及完整设备支持"));
    assert!(page.contains("Past drills (3)"));
    // Three RTO points, and the failed drill in red.
    assert!(page.contains("#c62828"));
    assert!(page.contains("☐"));
    assert!(page.contains("Off-site copies: not measured"));
    assert!(page.contains("窗口 window</td><td>last 7 d 00 h"), "{page}");
    assert!(page.contains("worst gap (in the window)"));
}

#[test]
fn the_page_is_written_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drill.html");
    std::fs::write(&path, "old page").unwrap();
    write_page(&path, "new page").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new page");
    // Only the page is left in the directory: no temporary file.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("drill.html")]);
    // A page that cannot be written is an error, and leaves nothing behind.
    let missing = dir.path().join("no/such/dir/drill.html");
    assert!(matches!(
        write_page(&missing, "x"),
        Err(crate::DrillError::Io { .. })
    ));
    let blocked = dir.path().join("drill.html/inside.html");
    assert!(write_page(&blocked, "x").is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new page");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
