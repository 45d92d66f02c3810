//! The drill history: one JSON report per drill in a directory per repository, by default
//! `$XDG_DATA_HOME/zaibei/drills/<repository id>/` (or `~/.local/share/zaibei/drills/<id>/`).
//! A file that cannot be read or parsed is skipped with a warning, never fatal: the history
//! feeds charts, and one bad file must not stop a drill.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::DrillError;
use crate::report::{DrillReport, REPORT_VERSION};
use crate::units;

/// The history of one repository's drills.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

/// What [`History::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Readable reports, oldest first.
    pub reports: Vec<DrillReport>,
    /// Files skipped, each with the reason.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// How many drills, and how many of them recovered everything.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.reports.len(),
            self.reports.iter().filter(|r| r.recovered).count(),
        )
    }
}

/// The default history directory of repository `repo_id`, given the values of
/// `XDG_DATA_HOME` and `HOME` (`None` when neither gives an absolute directory).
pub fn default_dir_from(
    repo_id: &str,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| {
        v.map(PathBuf::from)
            .filter(|p| p.is_absolute() && !p.as_os_str().is_empty())
    };
    let base = absolute(xdg_data_home)
        .or_else(|| absolute(home).map(|h| h.join(".local").join("share")))?;
    Some(base.join("zaibei").join("drills").join(repo_id))
}

/// The default history directory of repository `repo_id`, from the environment.
pub fn default_dir(repo_id: &str) -> Option<PathBuf> {
    default_dir_from(
        repo_id,
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

impl History {
    /// The history kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        History { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every report of repository `repo_id`, oldest first. A missing directory is an
    /// empty history; other repositories' reports are left out; unreadable files and reports
    /// of a newer format are skipped with a warning (logged, and listed in the result).
    pub fn load(&self, repo_id: &str) -> Loaded {
        let mut out = Loaded::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                out.warn(format!(
                    "drill history {} cannot be read: {e}",
                    self.dir.display()
                ));
                return out;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
            })
            .collect();
        paths.sort();
        for path in paths {
            let report = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<DrillReport>(&b).map_err(|e| e.to_string()));
            match report {
                Err(e) => out.warn(format!(
                    "skipping drill history file {}: {e}",
                    path.display()
                )),
                Ok(r) if r.version > REPORT_VERSION => out.warn(format!(
                    "skipping drill history file {}: report version {} is newer than this zaibei reads ({REPORT_VERSION})",
                    path.display(),
                    r.version
                )),
                // A directory shared by several repositories (`--history`): not an error.
                Ok(r) if r.repository.id != repo_id => tracing::debug!(
                    "drill history file {} is about repository {}, not {repo_id}",
                    path.display(),
                    r.repository.id
                ),
                Ok(r) => out.reports.push(r),
            }
        }
        out.reports.sort_by(|a, b| {
            let (x, y) = (
                units::parse_seconds(&a.started_at).unwrap_or(f64::MIN),
                units::parse_seconds(&b.started_at).unwrap_or(f64::MIN),
            );
            x.total_cmp(&y).then_with(|| a.drill_id.cmp(&b.drill_id))
        });
        out
    }

    /// Adds a report (`<drill id>.json`, never replacing a file); returns its path.
    pub fn save(&self, report: &DrillReport) -> Result<PathBuf, DrillError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| DrillError::io("creating drill history directory", &self.dir, e))?;
        let body = serde_json::to_vec_pretty(report).map_err(|e| DrillError::Json {
            path: self.dir.clone(),
            source: e,
        })?;
        let safe: String = report
            .drill_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let tmp = self.dir.join(format!(".{safe}.{}.tmp", std::process::id()));
        let mut file =
            fs::File::create(&tmp).map_err(|e| DrillError::io("writing drill history", &tmp, e))?;
        file.write_all(&body)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| DrillError::io("writing drill history", &tmp, e))?;
        drop(file);
        for n in 1..1000 {
            let name = if n == 1 {
                format!("{safe}.json")
            } else {
                format!("{safe}-{n}.json")
            };
            let path = self.dir.join(name);
            // A hard link fails when the name is taken, so no report is ever replaced.
            match fs::hard_link(&tmp, &path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    // The new name is durable only once the directory is.
                    sync_dir(&self.dir)
                        .map_err(|e| DrillError::io("writing drill history", &self.dir, e))?;
                    return Ok(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(DrillError::io("writing drill history", &path, e));
                }
            }
        }
        let _ = fs::remove_file(&tmp);
        Err(DrillError::Internal(format!(
            "no free name for drill report {safe} in {}",
            self.dir.display()
        )))
    }
}

/// Makes the entries of `dir` (names added, renamed or removed) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Loaded {
    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
