//! The drill report: what was restored, how long it took, what failed, the RPO of the
//! snapshot history and the GB/T 20988 assessment. Serialised as JSON (`--json`, the history
//! files); field names are stable, and a change that breaks readers raises [`REPORT_VERSION`].

use serde::{Deserialize, Serialize};

use crate::clock::PhaseTime;
use crate::levels::Element;

/// Version of the report's JSON form.
pub const REPORT_VERSION: u32 = 1;

/// Failures listed one by one in a report (the count is always complete).
pub const MAX_FAILURES_LISTED: usize = 1000;

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// Everything restored and verified, and every given target met.
    Passed,
    /// Everything restored and verified, but an RTO or RPO target was missed.
    TargetsMissed,
    /// Something could not be restored or verified, or the drill stopped on an error.
    Failed,
}

/// One drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Unique name of the drill: start time and snapshot (`20260301T100000.123Z-4f2a9c01`).
    pub drill_id: String,
    /// The program that ran it (`zaibei 0.1.0`).
    pub program: String,
    /// How it ended.
    pub status: DrillStatus,
    /// True when `status` is `passed`.
    pub passed: bool,
    /// True when every entry was restored and verified (the data is usable).
    pub recovered: bool,
    /// The error that stopped the drill before it finished, if any.
    pub error: Option<String>,
    /// When the drill started (RFC 3339, UTC).
    pub started_at: String,
    /// When the report was made (RFC 3339, UTC).
    pub finished_at: String,
    /// The machine the drill ran on.
    pub drill_host: String,
    /// The repository.
    pub repository: RepositoryInfo,
    /// The snapshot restored.
    pub snapshot: SnapshotInfo,
    /// Where it was restored.
    pub scratch: ScratchInfo,
    /// Recovery time: phases and throughput.
    pub rto: RtoMeasure,
    /// What the verification found.
    pub verification: Verification,
    /// Recovery point: the snapshot history of the group.
    pub rpo: RpoMeasure,
    /// The targets given, judged.
    pub targets: Targets,
    /// The GB/T 20988 assessment.
    pub assessment: Assessment,
}

/// The repository drilled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryInfo {
    /// Its random id (hex).
    pub id: String,
    /// Where it is, as given (`/srv/repo`, `s3:https://...`).
    pub location: String,
    /// Its crypto suite (`gm`, `intl`).
    pub suite: String,
}

/// The snapshot a drill restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its id (hex).
    pub id: String,
    /// The first 8 hex digits.
    pub short_id: String,
    /// When its backup started (RFC 3339).
    pub time: String,
    /// The host it backed up.
    pub hostname: String,
    /// The paths it backed up.
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Files in it, by its own summary.
    pub total_files: u64,
    /// Bytes of file contents in it, by its own summary.
    pub total_bytes: u64,
}

/// The scratch space a drill restored into.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScratchInfo {
    /// The directory.
    pub path: String,
    /// True when it was left in place (`--keep`), false when it was removed.
    pub kept: bool,
}

/// The measured recovery time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RtoMeasure {
    /// Seconds from the start of the command until the restore and its verification were
    /// complete: the sum of `phases`.
    pub seconds: f64,
    /// Each phase and how long it took.
    pub phases: Vec<PhaseTime>,
    /// Files written by the restore.
    pub files_restored: u64,
    /// Directories restored.
    pub dirs_restored: u64,
    /// Other entries restored (symlinks, devices, FIFOs, sockets).
    pub others_restored: u64,
    /// Bytes of file contents written.
    pub bytes_restored: u64,
    /// `bytes_restored` per second of the restore phase.
    pub restore_bytes_per_second: f64,
    /// Bytes downloaded from the store from the start until the verification was complete,
    /// when the caller counted them (what tracing failures to their cause read again is in
    /// [`Verification::cause_bytes_downloaded`]).
    pub bytes_downloaded: Option<u64>,
}

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePhase {
    /// The restore could not restore the entry.
    Restore,
    /// The entry was restored but does not match the snapshot.
    Verify,
}

/// Why an entry failed, found by reading what it needs from the repository again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The repository is damaged: a blob or tree the entry needs is missing or fails
    /// authentication.
    RepositoryDamage,
    /// The store could not be reached.
    StoreUnreachable,
    /// The repository holds the entry intact: the scratch side failed (disk full,
    /// permissions, a device node without privileges).
    Local,
    /// Not traced: more failures than are examined one by one, more data than is read again
    /// to trace them, or a failure the restore reported below an entry that failed itself.
    Unknown,
}

/// One entry that failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// Its path in the snapshot (invalid UTF-8 shown as U+FFFD).
    pub path: String,
    /// Where it failed.
    pub phase: FailurePhase,
    /// Why.
    pub cause: FailureCause,
    /// The message.
    pub reason: String,
}

/// What the verification found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verification {
    /// Regular files (names; hard links count once per name) the snapshot holds, as walked.
    pub files_expected: u64,
    /// Files read back whose size and every blob matched the snapshot.
    pub files_verified: u64,
    /// Bytes of those files.
    pub bytes_verified: u64,
    /// Directories found as directories.
    pub dirs_verified: u64,
    /// Symlinks with the right target, and devices, FIFOs and sockets of the right type.
    pub others_verified: u64,
    /// `bytes_verified` per second of the verify phase.
    pub verify_bytes_per_second: f64,
    /// Entries that failed.
    pub failures_total: u64,
    /// How many of the failures were traced to each cause (they add up to `failures_total`).
    #[serde(default)]
    pub failure_causes: CauseCounts,
    /// True when tracing causes stopped early (more failures than are examined one by one, or
    /// more data than is read again): the failures past that point count as `unknown`, and
    /// damage among them would not show.
    #[serde(default)]
    pub causes_incomplete: bool,
    /// Bytes downloaded from the store to trace failures to their cause, when the caller
    /// counted them (not part of the RTO).
    #[serde(default)]
    pub cause_bytes_downloaded: Option<u64>,
    /// Entries that failed, at most [`MAX_FAILURES_LISTED`].
    pub failures: Vec<Failure>,
}

/// Failures counted by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseCounts {
    /// Traced to damage of the repository.
    pub repository_damage: u64,
    /// The store could not be reached to trace them.
    pub store_unreachable: u64,
    /// The repository holds them intact: the failure was local.
    pub local: u64,
    /// Not traced.
    pub unknown: u64,
}

impl CauseCounts {
    /// Counts one failure of `cause`.
    pub fn add(&mut self, cause: FailureCause) {
        match cause {
            FailureCause::RepositoryDamage => self.repository_damage += 1,
            FailureCause::StoreUnreachable => self.store_unreachable += 1,
            FailureCause::Local => self.local += 1,
            FailureCause::Unknown => self.unknown += 1,
        }
    }
}

/// A snapshot named in the RPO figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Its id (hex).
    pub id: String,
    /// Its time (RFC 3339).
    pub time: String,
}

/// A snapshot of the group that does not count as restorable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotRestorable {
    /// Its id (hex).
    pub id: String,
    /// Its time (RFC 3339).
    pub time: String,
    /// Why.
    pub reason: String,
}

/// The snapshots the RPO is measured over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotGroup {
    /// Host.
    pub hostname: String,
    /// Paths (sorted).
    pub paths: Vec<String>,
    /// The tag filter that narrowed the group (empty: none).
    pub tags: Vec<String>,
}

/// The measured recovery point.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RpoMeasure {
    /// Which snapshots.
    pub group: SnapshotGroup,
    /// Readable snapshots in the group.
    pub snapshots: u64,
    /// Those that count as restorable.
    pub restorable: u64,
    /// Those that do not, and why.
    pub not_restorable: Vec<NotRestorable>,
    /// Snapshot objects of the repository (any group) that could not be read at all.
    pub unreadable_snapshot_objects: u64,
    /// The window of recent history the worst gap is measured over, in seconds before the
    /// drill's start (`--rpo-window`; `None` in reports of zaibei versions that measured the
    /// whole history).
    #[serde(default)]
    pub window_seconds: Option<f64>,
    /// Restorable snapshots taken inside the window.
    #[serde(default)]
    pub restorable_in_window: Option<u64>,
    /// The longest time between two consecutive restorable snapshots whose newer one was
    /// taken inside the window, in seconds (`None` when there is no such pair).
    pub worst_gap_seconds: Option<f64>,
    /// The older snapshot of the worst gap.
    pub worst_gap_from: Option<SnapshotRef>,
    /// The newer snapshot of the worst gap.
    pub worst_gap_to: Option<SnapshotRef>,
    /// The newest restorable snapshot.
    pub newest: Option<SnapshotRef>,
    /// Its age when the drill started, in seconds (0 when its time is in the future).
    pub newest_age_seconds: Option<f64>,
    /// The RPO the history supports: the larger of the worst gap (inside the window) and the
    /// newest age.
    pub rpo_seconds: Option<f64>,
    /// What "restorable" proves and what it does not.
    pub proof: String,
}

/// One target judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    /// The target, in seconds.
    pub target_seconds: f64,
    /// The measured figure (`None`: nothing usable was measured, e.g. the restore failed).
    pub measured_seconds: Option<f64>,
    /// True when the measured figure is within the target.
    pub met: bool,
}

/// The targets given (`--rto-target`, `--rpo-target`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// The RTO target.
    pub rto: Option<TargetResult>,
    /// The RPO target.
    pub rpo: Option<TargetResult>,
}

impl Targets {
    /// True when no given target was missed.
    pub fn all_met(&self) -> bool {
        self.rto.is_none_or(|t| t.met) && self.rpo.is_none_or(|t| t.met)
    }
}

/// How a requirement fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Measured and met.
    Met,
    /// Measured and not met.
    NotMet,
    /// zaibei has no measurement for it.
    NotMeasured,
}

/// One requirement of one level judged against the measured figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// The level (1 to 6).
    pub level: u8,
    /// A stable code: `rto`, `rpo`, `full_backup_interval`, `offsite_copy`,
    /// `batch_transfer_to_standby`, `real_time_replication`, `zero_data_loss`.
    pub requirement: String,
    /// The requirement in Chinese.
    pub text_zh: String,
    /// The requirement in English.
    pub text_en: String,
    /// How it fared.
    pub status: CheckStatus,
    /// What was measured, in English.
    pub measured: String,
}

/// Something a level needs that the measured figures do not show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Missing {
    /// The element it belongs to (`None` for the level's RTO and RPO limits).
    pub element: Option<Element>,
    /// A stable code (as in [`Check::requirement`], or `attest` for organisational items).
    pub requirement: String,
    /// Whether it was measured and not met, or is not measured (or is for the operator).
    pub status: CheckStatus,
    /// In Chinese.
    pub text_zh: String,
    /// In English.
    pub text_en: String,
}

/// An organisational requirement for the operator to attest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestItem {
    /// The element.
    pub element: Element,
    /// The element's name in Chinese.
    pub element_zh: String,
    /// The element's name in English.
    pub element_en: String,
    /// The level the requirement is for.
    pub level: u8,
    /// The requirement in Chinese.
    pub requirement_zh: String,
    /// The requirement in English.
    pub requirement_en: String,
    /// What zaibei can show towards it (the drill history, say), if anything.
    pub evidence: Option<String>,
}

/// A site holding a copy of the repository (input from site management).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsiteSite {
    /// The site's name.
    pub name: String,
    /// Where it is (city, data centre).
    pub location: String,
    /// How far its copy is behind this repository, in seconds (`None`: not measured).
    pub lag_seconds: Option<u64>,
    /// Whether it holds the snapshot the drill restored (`None`: not known).
    #[serde(default)]
    pub holds_drilled: Option<bool>,
    /// Whether it could be reached when the facts were gathered.
    pub reachable: bool,
}

/// What is known about copies at other sites. Empty: nothing is known, and the report says
/// "not measured".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsiteFacts {
    /// The sites.
    pub sites: Vec<OffsiteSite>,
}

/// The GB/T 20988 assessment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assessment {
    /// The standard (`GB/T 20988-2025`).
    pub standard: String,
    /// The highest level whose measured requirements are met (0: none); requirements zaibei
    /// cannot measure are listed in `conditions` instead of counting against it.
    pub level: u8,
    /// Its name in Chinese (empty for 0).
    pub level_name_zh: String,
    /// Its name in English (empty for 0).
    pub level_name_en: String,
    /// The highest level whose data-backup requirements are all measured and met.
    pub confirmed_level: u8,
    /// Requirements of `level` that were not measured: the level holds only if they are
    /// true.
    pub conditions: Vec<Check>,
    /// The next level, if there is one.
    pub next_level: Option<u8>,
    /// What the next level needs that is not shown.
    pub missing_for_next: Vec<Missing>,
    /// Every requirement of every level, judged.
    pub checks: Vec<Check>,
    /// The organisational requirements of `level` (level 1 when it is 0), for the operator.
    pub attest: Vec<AttestItem>,
    /// The off-site facts used (`measured` false: none were given).
    pub offsite_measured: bool,
    /// The sites.
    pub offsite_sites: Vec<OffsiteSite>,
    /// Notes on what the figures mean.
    pub notes: Vec<String>,
}
