//! Exit codes, documented in README.md ("Exit codes").

use zaibei_archive::ArchiveError;
use zaibei_repo::RepoError;

/// Success.
pub const OK: u8 = 0;
/// Any error not listed below.
pub const ERROR: u8 = 1;
/// Wrong usage (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// The command completed, but some entries could not be backed up or restored.
pub const PARTIAL: u8 = 3;
/// The repository is damaged: check found errors, or an object failed authentication.
pub const DAMAGED: u8 = 4;
/// A drill restored and verified everything but missed its --rto-target or --rpo-target.
pub const TARGET_MISSED: u8 = 5;
/// No repository at the location.
pub const NO_REPOSITORY: u8 = 10;
/// Wrong password.
pub const WRONG_PASSWORD: u8 = 12;
/// The repository has a newer format than this zaibei reads.
pub const UNSUPPORTED_VERSION: u8 = 13;
/// A deletion refused by site fencing: this repository is not provably the current primary
/// of its set of sites (a replica, a demoted primary, or a site that cannot reach the others).
pub const FENCED: u8 = 14;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: u8 = 130;
/// Standard output was closed by the reader (`zaibei ls ... | head`): the code a process
/// killed by SIGPIPE reports.
pub const BROKEN_PIPE: u8 = 141;

/// Marker error for Ctrl-C.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// An error that carries its own exit code (usage mistakes found after parsing).
#[derive(Debug)]
pub struct WithCode(pub u8, pub String);

impl std::fmt::Display for WithCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for WithCode {}

fn repo_code(e: &RepoError) -> u8 {
    match e {
        RepoError::NotFound { .. } => NO_REPOSITORY,
        RepoError::WrongPassword { .. } => WRONG_PASSWORD,
        e if e.is_unsupported_version() => UNSUPPORTED_VERSION,
        e if e.is_integrity() => DAMAGED,
        _ => ERROR,
    }
}

/// The exit code for an error.
pub fn code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return BROKEN_PIPE;
        }
        if cause.downcast_ref::<Interrupted>().is_some() {
            return INTERRUPTED;
        }
        if let Some(w) = cause.downcast_ref::<WithCode>() {
            return w.0;
        }
        if let Some(r) = cause.downcast_ref::<RepoError>() {
            return repo_code(r);
        }
        if let Some(a) = cause.downcast_ref::<ArchiveError>() {
            return match a {
                ArchiveError::Repo(r) => repo_code(r),
                ArchiveError::Usage(_) => USAGE,
                _ => ERROR,
            };
        }
    }
    ERROR
}

/// The message for an error: the chain of causes, without repeating itself.
pub fn describe(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if parts.last().is_none_or(|p| !p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
