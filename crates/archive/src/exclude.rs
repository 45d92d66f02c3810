//! Exclude patterns in gitignore syntax, matched against absolute paths.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::ArchiveError;

/// Compiled exclude patterns. Patterns are anchored at `/`: `/tmp` is only the top-level `tmp`,
/// `*.o` matches at any depth, `cache/` only directories, `!keep` re-includes.
#[derive(Debug, Clone)]
pub struct Excludes {
    matcher: Option<Gitignore>,
}

impl Excludes {
    /// No exclusions.
    pub fn none() -> Self {
        Excludes { matcher: None }
    }

    /// Compiles `patterns` and the patterns of `files` (one per line, `#` comments).
    pub fn new(patterns: &[String], files: &[std::path::PathBuf]) -> Result<Self, ArchiveError> {
        if patterns.is_empty() && files.is_empty() {
            return Ok(Self::none());
        }
        let mut b = GitignoreBuilder::new("/");
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| ArchiveError::Usage(format!("exclude pattern {p:?}: {e}")))?;
        }
        for f in files {
            if let Some(e) = b.add(f) {
                return Err(ArchiveError::Usage(format!(
                    "exclude file {}: {e}",
                    f.display()
                )));
            }
        }
        let gi = b
            .build()
            .map_err(|e| ArchiveError::Usage(format!("exclude patterns: {e}")))?;
        Ok(Excludes { matcher: Some(gi) })
    }

    /// True when the absolute path `path` is excluded.
    pub fn is_excluded(&self, path: &[u8], is_dir: bool) -> bool {
        match &self.matcher {
            None => false,
            Some(gi) => gi
                .matched(Path::new(OsStr::from_bytes(path)), is_dir)
                .is_ignore(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_semantics() {
        let e = Excludes::new(
            &[
                "*.o".into(),
                "/tmp".into(),
                "cache/".into(),
                "!keep.o".into(),
            ],
            &[],
        )
        .unwrap_or_else(|_| Excludes::none());
        assert!(e.is_excluded(b"/src/a.o", false));
        assert!(!e.is_excluded(b"/src/keep.o", false));
        assert!(e.is_excluded(b"/tmp", true));
        assert!(!e.is_excluded(b"/var/tmp", true));
        assert!(e.is_excluded(b"/home/x/cache", true));
        assert!(!e.is_excluded(b"/home/x/cache", false));
        assert!(e.is_excluded(b"/odd\xff/name.o", false));
    }
}
