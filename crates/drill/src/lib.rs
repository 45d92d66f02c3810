//! Disaster-recovery drills for zaibei.
//!
//! A drill proves that a snapshot can be recovered and measures how well the platform does
//! it:
//!
//! 1. The caller starts a [`Stopwatch`] before it opens the repository (deriving the key
//!    from the password is part of a real recovery) and hands the opened repository to
//!    [`run_drill`].
//! 2. The index is loaded, the snapshots are listed and one is picked ([`Selection`]): by
//!    id, or the newest matching the filters.
//! 3. It is restored into scratch space ([`Scratch`]) by the restore engine, then every entry
//!    is verified against the snapshot by a walk of its own (module `verify`):
//!    type, size and every data blob of every file. The RTO is the time from the start until
//!    the verification is complete, reported phase by phase.
//! 4. Entries that failed are traced to their cause by reading what they need from the
//!    repository again, within bounds: damage, an unreachable store, or a local failure.
//! 5. The RPO is measured over the snapshots of the drilled snapshot's host and paths
//!    ([`rpo`]): the worst gap between consecutive restorable snapshots inside a recent
//!    window (older history is thinned by retention), and the age of the newest one.
//! 6. The figures are judged against the capability levels of GB/T 20988 ([`levels`],
//!    [`assess`]), and the [`DrillReport`] is written for people ([`table`]), for scripts
//!    (JSON) and as a self-contained HTML page with charts of past drills ([`html`]); the
//!    [`History`] keeps one JSON report per drill.
//!
//! The crate never builds a tokio runtime; [`run_drill`] runs on the caller's.

pub mod assess;
mod cause;
mod chart;
pub mod clock;
mod compare;
mod error;
#[cfg(test)]
mod fixture;
pub mod history;
pub mod html;
pub mod levels;
pub mod report;
pub mod rpo;
mod run;
mod scratch;
pub mod select;
pub mod table;
#[cfg(test)]
mod testdata;
pub mod units;
mod verify;

pub use clock::{Phase, PhaseTime, Stopwatch};
pub use error::DrillError;
pub use history::History;
pub use report::{DrillReport, DrillStatus, OffsiteFacts, OffsiteSite};
pub use run::{DrillOptions, DrillRun, Observer, Quiet, Verdict, reassess_with_offsite, run_drill};
pub use scratch::Scratch;
pub use select::Selection;
