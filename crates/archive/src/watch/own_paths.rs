//! Paths the watch writes to itself (the repository, the metadata cache, replicas on local
//! disks) and that may lie below a watched path. Their events must be ignored, or every
//! backup would announce the next one and the watch would never rest; and they must be left
//! out of the snapshots, or each snapshot would hold the repository that holds it.

use std::path::{Path, PathBuf};

/// The paths of `candidates` that lie at or below one of `roots`, made canonical (symlinks in
/// them resolved, as the watched paths are). Candidates that do not exist are left out.
pub fn below_roots(candidates: &[PathBuf], roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for c in candidates {
        let Ok(canonical) = std::fs::canonicalize(c) else {
            continue;
        };
        let below = roots
            .iter()
            .any(|r| canonical.starts_with(r) || c.starts_with(r));
        if below && !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    out
}

/// An exclude pattern (gitignore syntax, anchored at `/`) that matches exactly `path` (a
/// backup does not enter an excluded directory, so nothing below it is kept either); `None` when the path is not absolute or not valid UTF-8, which
/// patterns cannot express.
pub fn exclude_pattern(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if !text.starts_with('/') {
        return None;
    }
    let trimmed = text.trim_end_matches('/');
    let mut out = String::with_capacity(trimmed.len() + 8);
    for c in trimmed.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']' | '{' | '}' | '!' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    // Trailing spaces are dropped from gitignore lines unless escaped.
    let spaces = out.len() - out.trim_end_matches(' ').len();
    if spaces > 0 {
        out.truncate(out.len() - spaces);
        for _ in 0..spaces {
            out.push_str("\\ ");
        }
    }
    if out.is_empty() {
        // The root directory itself: excluding it would exclude everything.
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::exclude::Excludes;

    #[test]
    fn candidates_below_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("src");
        let repo = root.join("repo");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // Through a symlink, too.
        let link = dir.path().join("link-to-src");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let got = below_roots(
            &[
                repo.clone(),
                outside,
                link.join("repo"),
                root.join("not-there"),
            ],
            std::slice::from_ref(&root),
        );
        assert_eq!(got, vec![repo]);
    }

    #[test]
    fn patterns_match_exactly_the_path_and_below() {
        let names = [
            "/srv/data/repo",
            "/srv/da*ta/re?po[1]{a,b}",
            "/srv/back\\slash/#hash/!bang",
            "/srv/trailing space ",
            "/srv/灾备/仓库/",
        ];
        for name in names {
            let pattern = exclude_pattern(Path::new(name)).unwrap();
            let ex = Excludes::new(std::slice::from_ref(&pattern), &[]).unwrap();
            let exact = name.trim_end_matches('/');
            assert!(
                ex.is_excluded(exact.as_bytes(), true),
                "{pattern:?} {exact:?}"
            );
            for other in [
                format!("{exact}x"),
                format!("{exact}-other"),
                format!("/else{exact}"),
                "/srv/data/repx".to_owned(),
                "/srv/daXta/rezpo1a".to_owned(),
            ] {
                assert!(
                    !ex.is_excluded(other.as_bytes(), true),
                    "{pattern:?} excludes {other:?}"
                );
            }
        }
        assert_eq!(exclude_pattern(Path::new("relative/path")), None);
        assert_eq!(exclude_pattern(Path::new("/")), None);
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            exclude_pattern(Path::new(std::ffi::OsStr::from_bytes(b"/bad\xff"))),
            None
        );
    }
}
